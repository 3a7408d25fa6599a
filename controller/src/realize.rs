//! Realization: from the store to every node's published desired state.
//!
//! The [`Realizer`] keeps the intent in memory ([`Intent`]) and tails the store's change log
//! (`store::changes`): each entry names one object; the realizer re-reads only that object,
//! patches its intent, allocates and releases what the change needs (bridge networks, bridge
//! IPs, per-pod leg IPs, pod-local tags — each idempotent and keyed, so a crash mid-run is
//! finished by the next run), re-plans only the nodes the change concerns
//! ([`planner::replan`]) and publishes those whose content changed (the node's revision moves
//! by one) in one transaction, waking only those nodes' watchers ([`NodeHub`]).
//!
//! Level-triggered underneath: at start and every [`FULL_PASS_EVERY`] it re-reads the whole
//! store (collecting what a crash left behind), re-plans every node and publishes the
//! differences — and compares the result with its incremental picture, counting any drift.
//! With several controllers on one database, each tails the same log (woken by PostgreSQL
//! NOTIFY) and publishing is compare-and-set on the content and the log position, so a
//! controller that is behind never overwrites a newer state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use planner::{AllocationKey, Change};
use tokio::sync::{watch, Mutex, Notify};

use crate::config::Config;
use crate::error::{DomainError, StoreError};
pub use crate::intent::Intent;
use crate::intent::Patch;
use crate::ipam;
use crate::metrics::ControllerMetrics;
use crate::naming::*;
use crate::store::changes::{ChangeKind, Cursor};
use crate::store::failover::PlacementKind;
use crate::store::Store;
use crate::store::{FixedIpRequest, NewNetwork, NewPort, Port, SegmentRequest, Subnet};

/// What the realizer works with. The controller's `Core` provides it; the realizer knows
/// nothing of who holds it (no import of the layers above).
pub trait Deps: Send + Sync {
    /// The store.
    fn store(&self) -> &Store;
    /// The configuration (VLAN ranges, bridge CIDR, intervals).
    fn config(&self) -> &Config;
    /// Where passes and allocations are counted.
    fn metrics(&self) -> &ControllerMetrics;
    /// The realizer itself (its failures and node hub).
    fn realizer(&self) -> &Realizer;
}

/// How often the realizer re-reads the whole store (the level-triggered backstop).
pub const FULL_PASS_EVERY: Duration = Duration::from_secs(60);
/// How long the change log keeps entries.
pub const LOG_RETENTION: Duration = Duration::from_secs(600);
/// Change-log entries beyond which one full pass replaces the incremental one.
pub const BACKLOG_FOR_FULL: usize = 2000;
/// How long a reader waits for the background realizer to catch up before answering from
/// what it holds.
const READ_CATCH_UP: Duration = Duration::from_secs(2);
/// Rounds of "read the log, allocate" per incremental pass (allocations log changes too).
const MAX_ROUNDS: usize = 4;

/// A node's published state as the agent API serves it.
#[derive(Debug)]
pub struct PublishedState {
    /// Its revision.
    pub revision: u64,
    /// The stored content (the state without revision, as JSON).
    pub content: String,
    /// The body of the watch answer (`wire::WatchResponse` as JSON), built once.
    pub body: Arc<[u8]>,
    /// The routers it holds an instance of (for the realization barrier).
    pub routers: BTreeSet<String>,
}

/// Every node's published state, one watch channel per node: a publication wakes only the
/// watchers of the nodes it changed.
#[derive(Default)]
pub struct NodeHub {
    nodes: std::sync::Mutex<HashMap<String, watch::Sender<Option<Arc<PublishedState>>>>>,
    /// Bumped on every publication of any node (for waits that span nodes, `/realized`).
    any: watch::Sender<u64>,
}

impl NodeHub {
    fn sender(&self, node: &str) -> watch::Sender<Option<Arc<PublishedState>>> {
        let mut m = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(node.to_string())
            .or_insert_with(|| watch::Sender::new(None))
            .clone()
    }

    /// A receiver of `node`'s published state (`None` until this controller knows it).
    pub fn subscribe(&self, node: &str) -> watch::Receiver<Option<Arc<PublishedState>>> {
        self.sender(node).subscribe()
    }

    /// A receiver that changes whenever any node's published state does.
    pub fn subscribe_any(&self) -> watch::Receiver<u64> {
        self.any.subscribe()
    }

    /// The nodes whose published state (as this controller saw it) holds an instance of
    /// `router_id`, sorted.
    pub fn nodes_with_router(&self, router_id: &str) -> Vec<String> {
        let m = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = m
            .iter()
            .filter(|(_, tx)| {
                tx.borrow()
                    .as_ref()
                    .is_some_and(|p| p.routers.contains(router_id))
            })
            .map(|(n, _)| n.clone())
            .collect();
        out.sort();
        out
    }

    /// What this controller last saw published for `node`.
    pub fn current(&self, node: &str) -> Option<Arc<PublishedState>> {
        self.sender(node).borrow().clone()
    }

    /// Record what is published for `node` (parsed from the stored content); wakes its
    /// watchers when the revision moved.
    pub fn set(&self, node: &str, revision: u64, content: &str) -> Result<(), DomainError> {
        if self.is_current(node, revision, content) {
            return Ok(());
        }
        let state: wire::NodeDesiredState = serde_json::from_str(content).map_err(|e| {
            DomainError::internal(format!("stored state of {node} unreadable: {e}"))
        })?;
        self.set_state(node, revision, content.to_string(), &state)
    }

    /// Revisions only move forward: a reader that fetched the store before a publication must
    /// not put the older state back.
    fn is_current(&self, node: &str, revision: u64, content: &str) -> bool {
        self.sender(node).borrow().as_ref().is_some_and(|p| {
            p.revision > revision || (p.revision == revision && p.content == content)
        })
    }

    /// Record a state this controller holds already parsed.
    fn set_state(
        &self,
        node: &str,
        revision: u64,
        content: String,
        state: &wire::NodeDesiredState,
    ) -> Result<(), DomainError> {
        if self.is_current(node, revision, &content) {
            return Ok(());
        }
        let routers = state.routers.keys().cloned().collect();
        let body = match watch_body(revision, &content) {
            Some(b) => b,
            None => {
                let mut state = state.clone();
                state.revision = revision;
                serde_json::to_vec(&wire::WatchResponse { revision, state }).map_err(|e| {
                    DomainError::internal(format!("serialising the state of {node}: {e}"))
                })?
            }
        };
        self.sender(node)
            .send_replace(Some(Arc::new(PublishedState {
                revision,
                content,
                body: body.into(),
                routers,
            })));
        self.any.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }
}

/// The watch answer for a state stored as `content` (serialised as the planner leaves it,
/// revision 0), published at `revision`: exactly what serialising `WatchResponse { revision,
/// state }` gives, spliced from the content instead of serialising a large state again.
/// `None` when the content does not hold revision 0 where the state's own field is.
fn watch_body(revision: u64, content: &str) -> Option<Vec<u8>> {
    const KEY: &str = "\"revision\":";
    // The state's own field comes right after its `node` and `pod` strings, whose quotes are
    // escaped: the key's first occurrence is the field, never text inside a string.
    let at = content.find(KEY)?;
    let end = at + KEY.len() + 1;
    if content.as_bytes().get(end - 1) != Some(&b'0')
        || !matches!(content.as_bytes().get(end), Some(b',' | b'}'))
    {
        return None;
    }
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(format!("{{\"revision\":{revision},\"state\":").as_bytes());
    out.extend_from_slice(&content.as_bytes()[..at]);
    out.extend_from_slice(format!("\"revision\":{revision}").as_bytes());
    out.extend_from_slice(&content.as_bytes()[end..]);
    out.push(b'}');
    Some(out)
}

/// The realizer's memory: the intent before and after the changes being processed (the
/// planner re-plans from the pair), the states it planned, and its position in the log.
#[derive(Default)]
struct Model {
    /// Shared with API requests that read it ([`Realizer::intent`]); copied on write only
    /// while one still holds it.
    new: Option<Arc<Intent>>,
    old: Option<Intent>,
    planned: BTreeMap<String, wire::NodeDesiredState>,
    cursor: Cursor,
    last_full: Option<Instant>,
    /// When the change log last moved under this model (`None`: not seen yet).
    log_moved: Option<Instant>,
    /// The log position a full pass found settled at: nothing to collect, mend, allocate or
    /// correct, run at least [`ORPHAN_GRACE`] after the log reached it. While the log stays
    /// there the periodic full pass is skipped: it could only find the same, and on a large
    /// cloud it is most of an idle controller's CPU (issue 22).
    settled_at: Option<i64>,
}

/// Young floating-IP ports are left alone by the garbage collection for a minute
/// ([`is_recent`]): a full pass counts as settled only once they would have been judged.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);

/// The realizer: the in-memory model, the node hub watchers wait on, and the kick of the
/// background task.
pub struct Realizer {
    kick: Notify,
    /// The change-log position the last successful pass caught up to (readers wait on it).
    applied: watch::Sender<i64>,
    /// Allocations that failed on their last attempt, with why (a pool exhausted, say): the
    /// services answer a request that needs one with that error instead of a silent 2xx.
    failures: std::sync::Mutex<BTreeMap<AllocationKey, DomainError>>,
    model: Mutex<Model>,
    /// Published states by node.
    pub hub: NodeHub,
    full_every: Duration,
}

impl Default for Realizer {
    fn default() -> Self {
        Self::new()
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    /// A full pass (everything re-read) rather than an incremental one.
    pub full: bool,
    /// Change-log entries read.
    pub changes: usize,
    /// Nodes re-planned.
    pub replanned: usize,
    /// Node states whose revision moved.
    pub published: usize,
    /// Incremental picture and full re-read disagreed (a bug; counted, then corrected).
    pub drift: bool,
}

impl Realizer {
    /// A realizer with nothing run yet.
    pub fn new() -> Self {
        Self::with_full_pass_every(FULL_PASS_EVERY)
    }

    /// A realizer that re-reads the whole store every `every`.
    pub fn with_full_pass_every(every: Duration) -> Self {
        Realizer {
            kick: Notify::new(),
            failures: std::sync::Mutex::new(BTreeMap::new()),
            applied: watch::Sender::new(i64::MIN),
            model: Mutex::new(Model::default()),
            hub: NodeHub::default(),
            full_every: every,
        }
    }

    fn record_failure(&self, key: &AllocationKey, e: DomainError) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.insert(key.clone(), e);
    }

    /// Forget a failure; whether there was one.
    fn clear_failure(&self, key: &AllocationKey) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.remove(key).is_some()
    }

    /// The allocations whose last attempt failed and that `keep` selects, with why.
    pub fn failures(
        &self,
        keep: impl Fn(&AllocationKey) -> bool,
    ) -> Vec<(AllocationKey, DomainError)> {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    }

    /// Resolves at the next [`Realizer::kick`] (what the background task waits on).
    pub async fn kicked(&self) {
        self.kick.notified().await
    }

    /// The first allocation `intent` needs now and `keep` selects whose last attempt failed,
    /// with the pool's error. A failure recorded for an earlier state (a router since
    /// deleted) does not count.
    pub fn needed_failure(
        &self,
        intent: &Intent,
        keep: impl Fn(&AllocationKey) -> bool,
    ) -> Option<(AllocationKey, DomainError)> {
        // Failures are rare: judge the intent's needs (a whole topology) only when one is
        // recorded for this object, not on every router a list renders or a job checks.
        let failed = self.failures(keep);
        if failed.is_empty() {
            return None;
        }
        let needed = planner::needed_allocations(&intent.snapshot);
        failed.into_iter().find(|(k, _)| needed.contains(k))
    }

    /// Why router `router_id` cannot be realized as `intent` asks: the first failed
    /// allocation it needs (its project's bridge network, its bridge and leg IPs, its
    /// networks' pod-local VLANs).
    pub fn router_failure(
        &self,
        intent: &Intent,
        router_id: &str,
    ) -> Option<(AllocationKey, DomainError)> {
        let r = intent.routers.get(router_id)?;
        let networks: Vec<&str> = intent
            .ports_of(router_id)
            .map(|p| p.network_id.as_str())
            .collect();
        self.needed_failure(intent, |k| match k {
            AllocationKey::BridgeNetwork { project_id }
            | AllocationKey::BridgeTag { project_id, .. } => *project_id == r.project_id,
            AllocationKey::BridgeIp { router_id: id, .. }
            | AllocationKey::LegIp { router_id: id, .. } => id == router_id,
            AllocationKey::LocalTag { network_id, .. } => networks.contains(&network_id.as_str()),
            AllocationKey::DhcpIp { .. }
            | AllocationKey::RouterNode { .. }
            | AllocationKey::DhcpNode { .. } => false,
        })
    }

    /// Ask the background task for a run (cheap; bursts collapse into one run).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Runs now (serialised with the background task): incremental, or full at start and
    /// when one is due. Returns how many node states were published.
    pub async fn run(&self, core: &dyn Deps) -> Result<usize, DomainError> {
        self.pass(core, false).await.map(|r| r.published)
    }

    /// The intent this realizer holds now, without catching up (`None` before the first pass).
    pub async fn current_intent(&self) -> Option<Arc<Intent>> {
        self.model.lock().await.new.clone()
    }

    /// The intent as of now: the change log is caught up first, so a request sees its own
    /// writes. Cheap to hold (shared, not copied); the realizer copies it only if it must
    /// change it while a request still holds it.
    pub async fn intent(&self, core: &dyn Deps) -> Result<Arc<Intent>, DomainError> {
        self.pass(core, false).await?;
        let m = self.model.lock().await;
        m.new
            .clone()
            .ok_or_else(|| DomainError::internal("the realizer has no intent loaded"))
    }

    /// Runs a full pass now (re-read everything, compare with the incremental picture).
    pub async fn run_full(&self, core: &dyn Deps) -> Result<PassReport, DomainError> {
        self.pass(core, true).await
    }

    /// One pass, full when asked, at start, or when due.
    pub async fn pass(&self, core: &dyn Deps, full: bool) -> Result<PassReport, DomainError> {
        let mut m = self.model.lock().await;
        let started = Instant::now();
        let due = m.new.is_none() || m.last_full.is_none_or(|t| t.elapsed() >= self.full_every);
        // Nothing was written since a full pass found everything settled: the periodic one
        // would find the same (a write anywhere, by any controller, moves the log).
        let settled = m.new.is_some() && m.settled_at == Some(m.cursor.last());
        let before = m.cursor.last();
        let res = if full || (due && !settled) {
            self.full(core, &mut m).await
        } else {
            match self.incremental(core, &mut m).await {
                // A backlog (bulk changes, a controller that was partitioned): re-reading
                // everything once is cheaper than patching it object by object.
                Ok(None) => self.full(core, &mut m).await,
                Ok(Some(r)) => Ok(r),
                Err(e) => Err(e),
            }
        };
        if res.is_err() {
            // Whatever the model holds may be half patched: start over from the store.
            *m = Model::default();
        } else if m.log_moved.is_none() || m.cursor.last() != before {
            m.log_moved = Some(Instant::now());
        }
        let published = res.as_ref().map(|r| r.published).unwrap_or(0);
        core.metrics()
            .record_realize(res.is_ok(), started.elapsed(), published);
        if let Ok(r) = &res {
            core.metrics()
                .record_pass(r.full, r.changes, r.replanned, r.drift);
            self.applied.send_replace(m.cursor.last());
        }
        res
    }

    /// The intent for a reader (a GET): waits, briefly, for the background task to catch up
    /// to the change log as of now — a reader sees its own writes — but never runs a pass
    /// itself. 503 while the first pass has not loaded anything.
    pub async fn intent_read(&self, core: &dyn Deps) -> Result<Arc<Intent>, DomainError> {
        let target = core.store().last_change_seq().await?;
        let mut rx = self.applied.subscribe();
        if *rx.borrow_and_update() < target {
            self.kick();
            let deadline = tokio::time::Instant::now() + READ_CATCH_UP;
            while *rx.borrow_and_update() < target {
                if tokio::time::timeout_at(deadline, rx.changed())
                    .await
                    .is_err()
                {
                    tracing::debug!(target, "a reader waited for the realizer in vain; answering from its current intent");
                    break;
                }
            }
        }
        self.current_intent().await.ok_or_else(|| {
            DomainError::new(
                crate::error::ErrorClass::Unavailable,
                "ServiceUnavailable",
                "the controller is still loading its intent; retry",
            )
        })
    }

    async fn full(&self, core: &dyn Deps, m: &mut Model) -> Result<PassReport, DomainError> {
        let mut report = PassReport {
            full: true,
            ..PassReport::default()
        };
        // Catch up first, so the incremental picture can be compared with a fresh read.
        if m.new.is_some() {
            if let Some(r) = self.incremental(core, m).await? {
                report.published += r.published;
                report.changes += r.changes;
            }
        }
        let Settled { seq, intent, quiet } = settle(core).await?;
        let quiet = quiet && m.cursor.last() == seq;
        let states = planner::plan_all(&intent.snapshot);
        if let (true, Some(known)) = (quiet, m.new.as_deref()) {
            let differs = known.snapshot != intent.snapshot;
            // The kept index is checked with the snapshot: a wrong one would re-plan wrong.
            let index_differs = known.index != intent.index;
            let nodes: Vec<&String> = states
                .iter()
                .filter(|(n, s)| m.planned.get(*n) != Some(*s))
                .map(|(n, _)| n)
                .chain(m.planned.keys().filter(|n| !states.contains_key(*n)))
                .collect();
            if differs || index_differs || !nodes.is_empty() {
                report.drift = true;
                tracing::error!(
                    intent_differs = differs,
                    index_differs,
                    nodes = ?nodes,
                    "the incremental picture drifted from the store; corrected from a full read"
                );
            }
        }
        report.replanned = states.len();
        report.published += self.publish(core, &states, seq).await?;
        let clean = quiet
            && !report.drift
            && report.published == 0
            && m.cursor.last() == seq
            && m.log_moved.is_some_and(|t| t.elapsed() >= ORPHAN_GRACE);
        m.settled_at = clean.then_some(seq);
        m.planned = states;
        m.old = Some(intent.clone());
        m.new = Some(Arc::new(intent));
        m.cursor = Cursor::at(seq);
        m.last_full = Some(Instant::now());
        if let Err(e) = core.store().prune_changes(LOG_RETENTION).await {
            tracing::warn!(error = %e, "pruning the change log failed");
        }
        Ok(report)
    }

    /// `Ok(None)`: the log holds more than [`BACKLOG_FOR_FULL`] entries; do a full pass.
    async fn incremental(
        &self,
        core: &dyn Deps,
        m: &mut Model,
    ) -> Result<Option<PassReport>, DomainError> {
        let store = &core.store();
        let mut report = PassReport::default();
        let mut patches: Vec<Patch> = Vec::new();
        let mut changes: Vec<Change> = Vec::new();
        let mut seen: HashSet<Change> = HashSet::new();
        let (Some(shared), Some(old)) = (m.new.as_mut(), m.old.as_ref()) else {
            return Ok(Some(report));
        };
        for round in 0..MAX_ROUNDS {
            let rows = store.read_changes(&mut m.cursor).await?;
            if rows.is_empty() {
                break;
            }
            if round == 0 && rows.len() > BACKLOG_FOR_FULL {
                tracing::info!(
                    entries = rows.len(),
                    "change-log backlog: a full pass instead"
                );
                return Ok(None);
            }
            // Copy-on-write, once there is something to apply: a reader still holding the
            // intent makes this a whole copy (what the metric counts), so readers hold it
            // only for synchronous work, never across awaits.
            if Arc::strong_count(shared) > 1 {
                core.metrics().record_intent_copy();
            }
            let new = Arc::make_mut(shared);
            report.changes += rows.len();
            let mut done: HashSet<(ChangeKind, &str)> = HashSet::new();
            // Unique within the round (allocations are judged again on each round's changes,
            // since a later round may hold a later state of the same object) and overall (for
            // re-planning, once at the end).
            let mut round_changes: Vec<Change> = Vec::new();
            let mut round_seen: HashSet<Change> = HashSet::new();
            let mut routes_only: HashSet<String> = HashSet::new();
            let mut deleted_ports = false;
            for row in &rows {
                if !done.insert((row.kind, row.object_id.as_str())) {
                    continue;
                }
                let patch = Intent::refresh(store, row).await?;
                deleted_ports |= matches!(&patch, Patch::Port(_, None));
                // A router row whose planner view did not change (a rename) needs nothing; one
                // whose routes alone changed needs a re-plan but no allocation.
                let router_before = match &patch {
                    Patch::Router(id, _) => Some((id.clone(), new.planner_router(id).cloned())),
                    _ => None,
                };
                let applied = new.apply(&patch);
                patches.push(patch);
                if let Some((id, before)) = router_before {
                    let after = new.planner_router(&id);
                    if before.as_ref() == after {
                        continue;
                    }
                    if let (Some(b), Some(a)) = (before.as_ref(), after) {
                        let same_but_routes = (planner::Router {
                            routes: a.routes.clone(),
                            ..b.clone()
                        }) == *a;
                        if same_but_routes {
                            routes_only.insert(id);
                        }
                    }
                }
                for c in applied {
                    if round_seen.insert(c.clone()) {
                        round_changes.push(c);
                    }
                }
            }
            for c in &round_changes {
                if seen.insert(c.clone()) {
                    changes.push(c.clone());
                }
            }
            // The last round's changes are judged for allocations too (a DHCP port made in
            // round 3 needs its server placed): what those allocations log is read by the
            // next pass. Skipping them left the allocation to the next full pass, a minute on.
            // What a crash (or this change) left behind on the touched devices.
            let candidates: Vec<Port> = round_changes
                .iter()
                .filter_map(|c| match c {
                    Change::Router(id) | Change::FloatingIp(id) => Some(id),
                    _ => None,
                })
                .flat_map(|d| new.ports_of(d).cloned().collect::<Vec<_>>())
                .collect();
            let mut wrote = collect_garbage(core, new, candidates.iter()).await?;
            let routers: Vec<String> = round_changes
                .iter()
                .filter_map(|c| match c {
                    Change::Router(id) => Some(id.clone()),
                    _ => None,
                })
                .collect();
            wrote += mend_gateways(core, new, routers.iter()).await;
            if deleted_ports {
                wrote += store.disassociate_dangling_floatingips().await? as usize;
            }
            // What the changes need allocated or released.
            let mut plan = planner::AllocationPlan::default();
            let mut keys: BTreeSet<AllocationKey> = BTreeSet::new();
            // Routes only: unless something else touched the router this round (its ports).
            for c in &round_changes {
                if let Change::Router(id) = c {
                    if routes_only.contains(id)
                        && !patches.iter().any(
                            |p| matches!(p, Patch::Port(_, Some(port)) if &port.device_id == id),
                        )
                    {
                        continue;
                    }
                }
                let p = if matches!(c, Change::Node(_) | Change::Pod(_)) {
                    planner::required_allocations(&new.snapshot)
                } else {
                    planner::required_allocations_for_change_indexed(
                        (&old.snapshot, &old.index),
                        (&new.snapshot, &new.index),
                        c,
                    )
                };
                for k in p.allocate {
                    if keys.insert(k.clone()) {
                        plan.allocate.push(k);
                    }
                }
                for k in p.release {
                    if keys.insert(k.clone()) {
                        plan.release.push(k);
                    }
                }
            }
            plan.release.sort();
            if !plan.is_empty() {
                tracing::debug!(round, plan = ?plan, "allocations of an incremental pass");
            }
            allocate_and_release(core, &plan, new).await;
            if wrote == 0 && plan.is_empty() {
                // This pass wrote nothing of its own: another round would only find what
                // others wrote since, which the pass they kick reads (a store round trip
                // saved on every change).
                break;
            }
        }
        if changes.is_empty() {
            // Nothing the planner sees (a port's status, say): nothing to re-plan.
            if let Some(old) = m.old.as_mut() {
                for p in &patches {
                    old.apply(p);
                }
            }
            return Ok(Some(report));
        }
        let new = m.new.as_ref().expect("model loaded");
        let old = m.old.as_ref().expect("model loaded");
        let mut touched: BTreeMap<String, wire::NodeDesiredState> = BTreeMap::new();
        if changes
            .iter()
            .any(|c| matches!(c, Change::Node(_) | Change::Pod(_)))
        {
            let all = planner::plan_all(&new.snapshot);
            m.planned.retain(|n, _| all.contains_key(n));
            for (n, s) in &all {
                if m.planned.get(n) != Some(s) {
                    touched.insert(n.clone(), s.clone());
                }
            }
            m.planned = all;
        } else {
            for c in &changes {
                let replanned = planner::replan_indexed(
                    (&old.snapshot, &old.index),
                    (&new.snapshot, &new.index),
                    &m.planned,
                    c,
                );
                for (n, s) in replanned {
                    if m.planned.get(&n) != Some(&s) {
                        m.planned.insert(n.clone(), s.clone());
                        touched.insert(n, s);
                    }
                }
            }
        }
        report.replanned = touched.len();
        report.published = self.publish(core, &touched, m.cursor.last()).await?;
        tracing::debug!(
            changes = ?changes,
            replanned = ?touched.keys().collect::<Vec<_>>(),
            published = report.published,
            "incremental pass"
        );
        if let Some(old) = m.old.as_mut() {
            for p in &patches {
                old.apply(p);
            }
        }
        Ok(Some(report))
    }

    /// Publish the states whose content differs from what this controller knows is published,
    /// in one transaction; returns how many revisions moved.
    async fn publish(
        &self,
        core: &dyn Deps,
        states: &BTreeMap<String, wire::NodeDesiredState>,
        seq: i64,
    ) -> Result<usize, DomainError> {
        let mut batch = Vec::new();
        for (node, state) in states {
            let content = serde_json::to_string(state).map_err(|e| {
                DomainError::internal(format!("serialising the state of {node}: {e}"))
            })?;
            let known = self.hub.current(node);
            if known.as_ref().is_some_and(|p| p.content == content) {
                continue;
            }
            batch.push((node.clone(), content, known.map(|p| p.revision as i64)));
        }
        if batch.is_empty() {
            return Ok(0);
        }
        crate::failpoint::hit("realize:publish");
        let done = core.store().publish_node_states(&batch, seq).await?;
        let mut moved = 0;
        for p in done {
            if p.moved {
                moved += 1;
                tracing::info!(node = %p.node, revision = p.revision, "published a new desired state");
            }
            match states.get(&p.node).filter(|_| p.moved) {
                // What this controller planned went in: no need to parse it back.
                Some(state) => self
                    .hub
                    .set_state(&p.node, p.revision as u64, p.content, state)?,
                None => self.hub.set(&p.node, p.revision as u64, &p.content)?,
            }
        }
        Ok(moved)
    }
}

async fn allocate_and_release(core: &dyn Deps, plan: &planner::AllocationPlan, intent: &Intent) {
    for key in &plan.allocate {
        let res = allocate(core, key, intent).await;
        core.metrics()
            .record_allocation("allocate", key.kind(), res.is_ok());
        match res {
            Err(e) => {
                tracing::warn!(?key, error = %e, "allocation failed");
                core.realizer().record_failure(key, DomainError::from(e));
                mark_ports(core, intent, key, "ERROR").await;
            }
            Ok(()) => {
                if core.realizer().clear_failure(key) {
                    mark_ports(core, intent, key, "DOWN").await;
                }
            }
        }
    }
    // Release IPs before the networks they come from.
    for key in plan.release.iter().rev() {
        core.realizer().clear_failure(key);
        let res = release(core, key).await;
        core.metrics()
            .record_allocation("release", key.kind(), res.is_ok());
        if let Err(e) = res {
            tracing::warn!(?key, error = %e, "release failed");
        }
    }
}

/// A pod-local VLAN is what a port bound in that pod needs to carry traffic: while it cannot
/// be allocated, those ports are `ERROR` (Neutron resources have no reason field; the
/// controller's log and `/v1.0/agents` say why), and `DOWN` again once it is (the agent then
/// reports them ACTIVE).
async fn mark_ports(core: &dyn Deps, intent: &Intent, key: &AllocationKey, status: &str) {
    let AllocationKey::LocalTag { network_id, pod } = key else {
        return;
    };
    for p in intent.ports.values() {
        let in_pod = intent.node_pod(&p.host_id) == Some(pod.as_str());
        if p.network_id != *network_id || !in_pod {
            continue;
        }
        match core.store().set_port_status(&p.id, status, None).await {
            Ok(_) => {
                tracing::info!(port = %p.id, status, network = %network_id, %pod, "port status follows its pod-local VLAN")
            }
            Err(e) => tracing::warn!(port = %p.id, error = %e, "setting a port's status failed"),
        }
    }
}

/// Reads the whole intent from the store (what a full pass starts from).
pub async fn read_intent(core: &dyn Deps) -> Result<Intent, StoreError> {
    load_intent(core).await
}

/// The state of `node` as the store holds it, with its revision filled in.
pub async fn published_state(
    core: &dyn Deps,
    node: &str,
) -> Result<Option<(u64, wire::NodeDesiredState)>, DomainError> {
    let Some((rev, content)) = core.store().node_state(node).await? else {
        return Ok(None);
    };
    let mut state: wire::NodeDesiredState = serde_json::from_str(&content)
        .map_err(|e| DomainError::internal(format!("stored state of {node} unreadable: {e}")))?;
    state.revision = rev as u64;
    Ok(Some((rev as u64, state)))
}

/// One full pass outside the realizer (re-read everything, collect, allocate, plan every node,
/// publish the differences): what a non-incremental controller pays per change. The realizer
/// does this at start and periodically; benchmarks compare it with the incremental pass.
pub async fn realize(core: &dyn Deps) -> Result<usize, DomainError> {
    let Settled { seq, intent, .. } = settle(core).await?;
    let states = planner::plan_all(&intent.snapshot);
    let mut batch = Vec::new();
    for (node, state) in &states {
        let content = serde_json::to_string(state)
            .map_err(|e| DomainError::internal(format!("serialising the state of {node}: {e}")))?;
        batch.push((node.clone(), content, None));
    }
    let done = core.store().publish_node_states(&batch, seq).await?;
    Ok(done.iter().filter(|p| p.moved).count())
}

/// The whole intent from the store, with what the configuration adds to the planner's view.
async fn load_intent(core: &dyn Deps) -> Result<Intent, StoreError> {
    let mut i = Intent::load(core.store()).await?;
    i.snapshot.default_external_region = core.config().default_external_region.clone();
    i.snapshot.dhcp_lease_seconds = core.config().dhcp_lease_duration;
    i.snapshot.bridge_vxlan =
        core.config().bridge_network_type == crate::config::BridgeNetworkType::Vxlan;
    i.snapshot.global_physnet_mtu = core.config().global_physnet_mtu;
    let f = &core.config().failover;
    i.snapshot.failback = f.failback;
    i.snapshot.liveness_interval_ms = f.interval_ms;
    i.snapshot.liveness_multiplier = f.multiplier;
    i.snapshot.bridge_cidr_v6 = core.config().bridge_cidr_v6;
    Ok(i)
}

/// A fresh read of the store with what a crash left mended and what the plan needs allocated.
struct Settled {
    /// The log position the intent includes everything up to.
    seq: i64,
    intent: Intent,
    /// Nothing was collected, mended or allocated and the log did not move during the read:
    /// the intent is comparable with an incremental picture caught up to `seq`.
    quiet: bool,
}

async fn settle(core: &dyn Deps) -> Result<Settled, DomainError> {
    let store = &core.store();
    // The log position is read before each load: what commits after it is replayed by the
    // next incremental pass (harmless: every patch is idempotent), what committed before is
    // in the load — including this pass's own allocations, never replayed.
    let mut seq = store.last_change_seq().await?;
    let mut intent = load_intent(core).await?;
    let mut quiet = store.last_change_seq().await? == seq;
    let fixed = collect_garbage(core, &intent, intent.ports.values()).await?
        + store.disassociate_dangling_floatingips().await? as usize
        + mend_gateways(core, &intent, intent.routers.keys()).await;
    if fixed > 0 {
        quiet = false;
        seq = store.last_change_seq().await?;
        intent = load_intent(core).await?;
    }
    let plan = planner::required_allocations(&intent.snapshot);
    if !plan.is_empty() {
        quiet = false;
        allocate_and_release(core, &plan, &intent).await;
        seq = store.last_change_seq().await?;
        intent = load_intent(core).await?;
    }
    Ok(Settled { seq, intent, quiet })
}

/// A derived-id port made already (by another controller, or an earlier pass) is done; any
/// other conflict — no address left in the subnet, say — is a failure to report, not a
/// success to pretend.
fn ignore_exists(r: Result<Port, StoreError>) -> Result<(), StoreError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_unique_violation() => Ok(()),
        Err(StoreError::Rule(a)) if a.kind == "PortExists" => Ok(()),
        Err(e) => Err(e),
    }
}

fn ignore_missing(r: Result<(), StoreError>) -> Result<(), StoreError> {
    match r {
        Err(StoreError::Rule(a)) if a.class == crate::error::ErrorClass::NotFound => Ok(()),
        other => other,
    }
}

async fn allocate(core: &dyn Deps, key: &AllocationKey, intent: &Intent) -> Result<(), StoreError> {
    crate::failpoint::hit("realize:allocate");
    let store = &core.store();
    match key {
        AllocationKey::BridgeNetwork { project_id } => {
            let net_id = bridge_network_id(project_id);
            let config = core.config();
            let (segment, mtu) = match config.bridge_network_type {
                crate::config::BridgeNetworkType::Vlan => (
                    SegmentRequest::Vlan {
                        physnet: Some(BRIDGE_PHYSNET.into()),
                        id: None,
                    },
                    i64::from(config.global_physnet_mtu),
                ),
                crate::config::BridgeNetworkType::Vxlan => (
                    SegmentRequest::Vxlan { id: None },
                    i64::from(
                        config
                            .global_physnet_mtu
                            .saturating_sub(planner::VXLAN_OVERHEAD),
                    ),
                ),
            };
            if let Err(e) = store.get_network(&net_id).await {
                if !matches!(&e, StoreError::Rule(a) if a.class == crate::error::ErrorClass::NotFound)
                {
                    return Err(e);
                }
                let r = store
                    .create_network(
                        &NewNetwork {
                            id: net_id.clone(),
                            project_id: BRIDGE_OWNER.into(),
                            name: format!("bridge-net-{project_id}"),
                            description: format!(
                                "crosspod east-west bridge network of project {project_id}"
                            ),
                            admin_state_up: true,
                            shared: false,
                            external: false,
                            mtu,
                            port_security_enabled: false,
                            segment,
                            az_hints: Vec::new(),
                        },
                        &core.config().network_vlan_ranges,
                    )
                    .await;
                match r {
                    Ok(_) => {}
                    // Made by another controller (or an earlier pass) in the meantime.
                    Err(e) if e.is_unique_violation() => {}
                    Err(StoreError::Rule(a)) if a.kind == "NetworkExists" => {}
                    Err(e) => return Err(e),
                }
            }
            let cidr = store
                .bridge_subnet(project_id, core.config().bridge_cidr)
                .await?;
            let sid = bridge_subnet_id(project_id);
            if store.get_subnet(&sid).await.is_err() {
                let net = IpNet::V4(cidr);
                let r = store
                    .create_subnet(&Subnet {
                        id: sid,
                        project_id: BRIDGE_OWNER.into(),
                        network_id: net_id,
                        name: format!("bridge-subnet-{project_id}"),
                        description: String::new(),
                        ip_version: 4,
                        cidr: net,
                        gateway_ip: None,
                        allocation_pools: ipam::default_pools(&net, None),
                        enable_dhcp: false,
                        dns_nameservers: Vec::new(),
                        host_routes: Vec::new(),
                        subnetpool_id: None,
                        ipv6_ra_mode: None,
                        ipv6_address_mode: None,
                        created_at: String::new(),
                        updated_at: String::new(),
                        revision_number: 1,
                    })
                    .await;
                match r {
                    Ok(_) => {}
                    Err(e) if e.is_unique_violation() => {}
                    Err(StoreError::Rule(a)) if a.class == crate::error::ErrorClass::BadRequest => {
                        // Overlap with itself: created concurrently by another controller.
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        AllocationKey::BridgeIp { router_id, pod } => {
            let Some(router) = intent.routers.get(router_id) else {
                return Ok(());
            };
            ignore_exists(
                store
                    .create_port(&NewPort {
                        id: bridge_ip_port_id(router_id, pod),
                        project_id: BRIDGE_OWNER.into(),
                        network_id: bridge_network_id(&router.project_id),
                        name: pod.clone(),
                        description: format!("bridge IP of router {router_id} in pod {pod}"),
                        admin_state_up: true,
                        mac_address: None,
                        device_id: router_id.clone(),
                        device_owner: OWNER_BRIDGE_IP.into(),
                        host_id: String::new(),
                        port_security_enabled: Some(false),
                        fixed_ips: None,
                    })
                    .await,
            )
        }
        AllocationKey::LegIp {
            router_id,
            pod,
            subnet_id,
        } => {
            let (Some(router), Some(subnet)) =
                (intent.routers.get(router_id), intent.subnets.get(subnet_id))
            else {
                return Ok(());
            };
            ignore_exists(
                store
                    .create_port(&NewPort {
                        id: leg_port_id(router_id, pod, subnet_id),
                        project_id: router.project_id.clone(),
                        network_id: subnet.network_id.clone(),
                        name: pod.clone(),
                        description: format!(
                            "gateway of router {router_id} on subnet {subnet_id} in pod {pod}"
                        ),
                        admin_state_up: true,
                        mac_address: None,
                        device_id: router_id.clone(),
                        device_owner: OWNER_LEG.into(),
                        host_id: String::new(),
                        port_security_enabled: Some(false),
                        fixed_ips: Some(vec![FixedIpRequest {
                            subnet_id: Some(subnet_id.clone()),
                            ip_address: None,
                        }]),
                    })
                    .await,
            )
        }
        AllocationKey::DhcpIp {
            network_id,
            pod,
            subnet_id,
        } => allocate_dhcp_ip(core, intent, network_id, pod, subnet_id).await,
        AllocationKey::LocalTag { network_id, pod } => {
            allocate_local_tag(core, network_id, pod).await
        }
        // The tag of a VxLAN bridge network in a pod is a local tag of its network's row.
        AllocationKey::BridgeTag { project_id, pod } => {
            allocate_local_tag(core, &bridge_network_id(project_id), pod).await
        }
        AllocationKey::RouterNode {
            router_id,
            pod,
            node,
        } => {
            store
                .hold_placement(PlacementKind::Router, router_id, pod, node)
                .await
        }
        AllocationKey::DhcpNode {
            network_id,
            pod,
            node,
        } => {
            store
                .hold_placement(PlacementKind::Dhcp, network_id, pod, node)
                .await
        }
    }
}

/// A pod-local tag on the bridge physnet for `network_id` in `pod`, outside the bridge
/// physnet's VLAN range.
async fn allocate_local_tag(
    core: &dyn Deps,
    network_id: &str,
    pod: &str,
) -> Result<(), StoreError> {
    let reserved = core.config().network_vlan_ranges.range(BRIDGE_PHYSNET);
    let (lo, hi) = core.config().local_vlan_range;
    let candidates: Vec<u16> = (lo..=hi)
        .filter(|t| !reserved.is_some_and(|(lo, hi)| (lo..=hi).contains(t)))
        .collect();
    core.store()
        .allocate_local_tag(network_id, pod, BRIDGE_PHYSNET, &candidates)
        .await
        .map(|_| ())
}

async fn release(core: &dyn Deps, key: &AllocationKey) -> Result<(), StoreError> {
    let store = &core.store();
    match key {
        AllocationKey::BridgeNetwork { project_id } => {
            ignore_missing(store.delete_subnet(&bridge_subnet_id(project_id)).await)?;
            ignore_missing(store.delete_network(&bridge_network_id(project_id)).await)?;
            store.release_bridge_subnet(project_id).await
        }
        AllocationKey::BridgeIp { router_id, pod } => {
            ignore_missing(store.delete_port(&bridge_ip_port_id(router_id, pod)).await)
        }
        AllocationKey::LegIp {
            router_id,
            pod,
            subnet_id,
        } => ignore_missing(
            store
                .delete_port(&leg_port_id(router_id, pod, subnet_id))
                .await,
        ),
        AllocationKey::LocalTag { network_id, pod } => {
            store.release_local_tag(network_id, pod).await
        }
        AllocationKey::BridgeTag { project_id, pod } => {
            store
                .release_local_tag(&bridge_network_id(project_id), pod)
                .await
        }
        AllocationKey::DhcpIp {
            network_id,
            pod,
            subnet_id,
        } => release_dhcp_ip(core, network_id, pod, subnet_id).await,
        AllocationKey::RouterNode {
            router_id,
            pod,
            node,
        } => {
            store
                .release_placement(PlacementKind::Router, router_id, pod, node)
                .await
        }
        AllocationKey::DhcpNode {
            network_id,
            pod,
            node,
        } => {
            store
                .release_placement(PlacementKind::Dhcp, network_id, pod, node)
                .await
        }
    }
}

/// Give the DHCP port of (network, pod) an address on `subnet_id`: create the port (owned by
/// the network's project, `network:dhcp`, under its derived id) with it, or add it to the
/// port's addresses, read fresh from the store (several keys of one port in one pass).
async fn allocate_dhcp_ip(
    core: &dyn Deps,
    intent: &Intent,
    network_id: &str,
    pod: &str,
    subnet_id: &str,
) -> Result<(), StoreError> {
    let store = core.store();
    let Some(net) = intent.networks.get(network_id) else {
        return Ok(());
    };
    let id = dhcp_port_id(network_id, pod);
    let want = FixedIpRequest {
        subnet_id: Some(subnet_id.to_string()),
        ip_address: None,
    };
    match store.get_port(&id).await {
        Ok(p) => {
            if p.fixed_ips.iter().any(|f| f.subnet_id == subnet_id) {
                return Ok(());
            }
            let mut ips: Vec<FixedIpRequest> = p.fixed_ips.iter().map(Into::into).collect();
            ips.push(want);
            store.update_port(&p, Some(&ips)).await.map(|_| ())
        }
        Err(StoreError::Rule(a)) if a.class == crate::error::ErrorClass::NotFound => ignore_exists(
            store
                .create_port(&NewPort {
                    id: id.clone(),
                    project_id: net.project_id.clone(),
                    network_id: network_id.to_string(),
                    name: String::new(),
                    description: format!("DHCP server of network {network_id} in pod {pod}"),
                    admin_state_up: true,
                    mac_address: None,
                    device_id: dhcp_device_id(network_id, pod),
                    device_owner: OWNER_DHCP.into(),
                    host_id: String::new(),
                    port_security_enabled: Some(false),
                    fixed_ips: Some(vec![want]),
                })
                .await,
        ),
        Err(e) => Err(e),
    }
}

/// Take the DHCP port of (network, pod) its address on `subnet_id`; the port goes with its
/// last address.
async fn release_dhcp_ip(
    core: &dyn Deps,
    network_id: &str,
    pod: &str,
    subnet_id: &str,
) -> Result<(), StoreError> {
    let store = core.store();
    let id = dhcp_port_id(network_id, pod);
    let p = match store.get_port(&id).await {
        Ok(p) => p,
        Err(StoreError::Rule(a)) if a.class == crate::error::ErrorClass::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let keep: Vec<FixedIpRequest> = p
        .fixed_ips
        .iter()
        .filter(|f| f.subnet_id != subnet_id)
        .map(Into::into)
        .collect();
    if keep.is_empty() {
        return ignore_missing(store.delete_port(&id).await);
    }
    if keep.len() == p.fixed_ips.len() {
        return Ok(());
    }
    store.update_port(&p, Some(&keep)).await.map(|_| ())
}

/// The gateway port a router's row asks for (IPs as requested, else the first free one),
/// under an id derived from the router and network, so the API and a realizer mending a
/// crash cannot both create one.
pub fn gateway_port_request(r: &crate::store::l3::Router) -> Result<Option<NewPort>, DomainError> {
    let Some(g) = &r.gateway else {
        return Ok(None);
    };
    let fixed_ips = if g.requested_ips.is_empty() {
        None
    } else {
        Some(
            g.requested_ips
                .iter()
                .map(|v| {
                    Ok(FixedIpRequest {
                        subnet_id: v["subnet_id"].as_str().map(str::to_string),
                        ip_address: match v["ip_address"].as_str() {
                            None => None,
                            Some(s) => Some(s.parse().map_err(|_| {
                                DomainError::invalid_input(
                                    "external_fixed_ips",
                                    format!("'{s}' is not an IP address"),
                                )
                            })?),
                        },
                    })
                })
                .collect::<Result<Vec<_>, DomainError>>()?,
        )
    };
    Ok(Some(NewPort {
        id: derived_id(&["gateway", &r.id, &g.network_id]),
        project_id: String::new(),
        network_id: g.network_id.clone(),
        name: String::new(),
        description: format!("gateway of router {}", r.id),
        admin_state_up: true,
        mac_address: None,
        device_id: r.id.clone(),
        device_owner: OWNER_GATEWAY.into(),
        host_id: String::new(),
        port_security_enabled: Some(false),
        fixed_ips,
    }))
}

/// Makes a router's gateway port match its row: deletes a port on another network (or with
/// other addresses than the row now asks for), creates the missing one. True when it created
/// one (not when the port was there already or the row no longer names that gateway).
pub async fn ensure_gateway_port(
    core: &dyn Deps,
    r: &crate::store::l3::Router,
    existing: Option<&Port>,
) -> Result<bool, DomainError> {
    if let Some(p) = existing {
        let wanted = gateway_port_request(r)?;
        let keep = wanted.as_ref().is_some_and(|w| {
            w.network_id == p.network_id
                && w.fixed_ips.as_ref().is_none_or(|ips| {
                    ips.iter().all(|f| {
                        p.fixed_ips.iter().any(|have| {
                            f.subnet_id.as_ref().is_none_or(|s| *s == have.subnet_id)
                                && f.ip_address.is_none_or(|a| a == have.ip_address)
                        })
                    })
                })
        });
        if keep {
            return Ok(false);
        }
        ignore_missing(core.store().delete_port(&p.id).await)?;
    }
    let Some(port) = gateway_port_request(r)? else {
        return Ok(false);
    };
    match core.store().create_gateway_port(&r.id, &port).await {
        Err(e) if e.is_unique_violation() => Ok(false),
        Err(StoreError::Rule(e))
            if e.class == crate::error::ErrorClass::Conflict && e.kind == "PortExists" =>
        {
            Ok(false)
        }
        other => other.map(|p| p.is_some()).map_err(DomainError::from),
    }
}

/// Routers whose row names a gateway but whose gateway port is missing (a crash between the
/// two writes): create it.
async fn mend_gateways<'a>(
    core: &dyn Deps,
    intent: &Intent,
    routers: impl Iterator<Item = &'a String>,
) -> usize {
    let mut n = 0;
    for id in routers {
        let Some(r) = intent.routers.get(id) else {
            continue;
        };
        let Some(g) = &r.gateway else {
            continue;
        };
        if intent
            .ports_of(id)
            .any(|p| p.device_owner == OWNER_GATEWAY && p.network_id == g.network_id)
        {
            continue;
        }
        match ensure_gateway_port(core, r, None).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(router = %id, network = %g.network_id, "created a missing gateway port");
                n += 1;
            }
            Err(e) => {
                tracing::warn!(router = %id, error = %e.message, "creating a missing gateway port failed")
            }
        }
    }
    n
}

/// Ports the API's multi-step changes may leave behind after a crash: gateway ports of routers
/// without a gateway, floating-IP ports without their floating IP, interface/leg/bridge ports
/// of deleted routers. Removed here so every change is resumable. `candidates` are the ports
/// to judge (all of them on a full pass, the touched devices' ones on an incremental pass).
async fn collect_garbage<'a>(
    core: &dyn Deps,
    intent: &Intent,
    candidates: impl Iterator<Item = &'a Port>,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for p in candidates {
        let orphan = match p.device_owner.as_str() {
            OWNER_GATEWAY => intent.routers.get(&p.device_id).is_none_or(|r| {
                r.gateway
                    .as_ref()
                    .is_none_or(|g| g.network_id != p.network_id)
            }),
            OWNER_FLOATINGIP => !intent.floatingips.contains_key(&p.device_id),
            OWNER_INTERFACE | OWNER_LEG | OWNER_BRIDGE_IP => {
                !p.device_id.is_empty() && !intent.routers.contains_key(&p.device_id)
            }
            _ => false,
        };
        // A floating-IP port is created just before its row: leave young ones alone.
        let young = p.device_owner == OWNER_FLOATINGIP && is_recent(&p.created_at);
        if orphan && !young {
            ignore_missing(core.store().delete_port(&p.id).await)?;
            tracing::info!(port = %p.id, owner = %p.device_owner, device = %p.device_id, "removed an orphaned port");
            n += 1;
        }
    }
    Ok(n)
}

/// Created less than a minute ago (an unreadable timestamp counts as old).
fn is_recent(ts: &str) -> bool {
    crate::store::age_secs(ts).is_some_and(|a| a < 60)
}

/// What every node reports, read once to judge the realization of several routers.
pub struct Reports {
    agents: Vec<crate::store::l3::AgentRow>,
}

impl Reports {
    /// Read every node's registration and last report.
    pub async fn load(core: &dyn Deps) -> Result<Reports, DomainError> {
        Ok(Reports {
            agents: core.store().list_agents().await?,
        })
    }

    /// The registrations and reports of the nodes holding an instance of `router_id`: all
    /// that [`Self::router`] reads for that router (a few nodes, not every node's report).
    pub async fn load_for_router(core: &dyn Deps, router_id: &str) -> Result<Reports, DomainError> {
        let nodes = core.realizer().hub.nodes_with_router(router_id);
        Ok(Reports {
            agents: core.store().agents_of(&nodes).await?,
        })
    }

    /// Whether a router is in place everywhere: every node whose published state holds one of
    /// its instances has applied that revision and reports the instance ready. `Err` carries
    /// an agent's failure.
    pub fn router(&self, hub: &NodeHub, router_id: &str) -> Result<bool, String> {
        for a in &self.agents {
            let Some(published) = hub.current(&a.node) else {
                continue;
            };
            if !published.routers.contains(router_id) {
                continue;
            }
            let Some(report) = &a.report else {
                return Ok(false);
            };
            let mine = report.routers.iter().find(|r| r.router_id == router_id);
            if let Some(r) = mine {
                if r.state == wire::RouterState::Failed {
                    return Err(format!(
                        "node {}: {}",
                        a.node,
                        r.error.clone().unwrap_or_default()
                    ));
                }
            }
            let ready = report.revision_applied >= published.revision
                && mine.is_some_and(|r| r.state == wire::RouterState::Ready);
            if !ready {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Whether one router is in place everywhere (see [`Reports::router`]); `Err` carries why
/// not when it cannot be (an allocation it needs failed, or an agent failed it).
pub async fn router_realized(
    core: &dyn Deps,
    router_id: &str,
) -> Result<Result<bool, String>, DomainError> {
    let reports = Reports::load_for_router(core, router_id).await?;
    let intent = core.realizer().current_intent().await;
    Ok(router_state(core, &reports, intent.as_deref(), router_id))
}

/// [`Reports::router`], after the realizer's own verdict: a router whose needed allocation
/// failed is `Err` with the pool's reason, whatever the agents say.
pub fn router_state(
    core: &dyn Deps,
    reports: &Reports,
    intent: Option<&Intent>,
    router_id: &str,
) -> Result<bool, String> {
    if let Some((key, e)) = intent.and_then(|i| core.realizer().router_failure(i, router_id)) {
        return Err(format!("could not allocate {key:?}: {}", e.message));
    }
    reports.router(&core.realizer().hub, router_id)
}

/// The gateway IP of a project's router for a port, as the planner would serve it: used by
/// the floating IP API to name the router.
pub fn serving_router(intent: &Intent, fip_network: &str, port: &Port) -> Option<String> {
    let subnets: Vec<&str> = port
        .fixed_ips
        .iter()
        .map(|f| f.subnet_id.as_str())
        .collect();
    intent
        .routers
        .values()
        .filter(|r| r.project_id == port.project_id)
        .filter(|r| {
            r.gateway
                .as_ref()
                .is_some_and(|g| g.network_id == fip_network)
        })
        .find(|r| {
            intent.ports.values().any(|p| {
                p.device_owner == OWNER_INTERFACE
                    && p.device_id == r.id
                    && p.fixed_ips
                        .iter()
                        .any(|f| subnets.contains(&f.subnet_id.as_str()))
            })
        })
        .map(|r| r.id.clone())
}

#[cfg(test)]
mod tests {
    use super::watch_body;

    fn state(node: &str) -> wire::NodeDesiredState {
        let mut s = wire::NodeDesiredState {
            node: node.into(),
            pod: "Region\"revision\":0,One".into(),
            ..Default::default()
        };
        // A map key that reads like the field, later in the document.
        s.routers.insert("revision".into(), Default::default());
        s
    }

    #[test]
    fn the_spliced_watch_body_is_what_serialising_gives() {
        for node in ["node1", "we\"ird\"revision\":0,", "\"revision\":0"] {
            let planned = state(node);
            let content = serde_json::to_string(&planned).unwrap();
            let mut published = planned.clone();
            published.revision = 42;
            let want = serde_json::to_vec(&wire::WatchResponse {
                revision: 42,
                state: published,
            })
            .unwrap();
            assert_eq!(
                watch_body(42, &content).map(String::from_utf8),
                Some(Ok(String::from_utf8(want).unwrap())),
                "node {node:?}"
            );
        }
    }

    #[test]
    fn a_content_with_another_revision_is_not_spliced() {
        let mut s = state("node1");
        s.revision = 3;
        assert_eq!(watch_body(4, &serde_json::to_string(&s).unwrap()), None);
    }
}
