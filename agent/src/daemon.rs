//! The agent's main loop: register (waiting while the pod does not exist), watch the node's
//! desired state, and reconcile whenever the desired state, OVSDB or a resync timer says so.
//! Level-triggered: every pass compares the whole intent with what is there, so a missed event
//! costs one resync period, never correctness. With no desired state yet (controller down at
//! start) it changes nothing: the data plane is left as it is.
//!
//! Every document, from the controller or from `--desired-file`, is validated as a whole
//! ([`crate::validate`]) when the loop first sees it, before any change: a refused one changes
//! nothing, its reasons are logged and reported as errors, and passes keep reconciling to the
//! last valid document.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wire::{
    NodeDesiredState, NodeRegistration, PortState, PortStatus, ProbeResult, RouterState,
    RouterStatus, StatusReport, WatchResponse,
};

use crate::controller_client::{Backoff, ClientError, ControllerClient};
use crate::firewall::Firewall;
use crate::intent::{NodeContext, NodeIntent};
use crate::metrics::AgentMetrics;
use crate::reconciler::{
    reconcile_firewall, reconcile_once, LinuxBackend, OvsBackend, PassOutcome,
};
use crate::sd_notify::Notifier;
use crate::validate::{validate, AgentIdentity};

/// How long one watch long-poll waits on the controller.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// Full resync even when nothing signalled a change (level-triggered safety net).
const RESYNC: Duration = Duration::from_secs(60);
/// How long to wait for the first desired state before telling systemd READY anyway.
const READY_WITHOUT_STATE: Duration = Duration::from_secs(60);
/// How often the firewall checks that ovs-vswitchd still holds its flows.
const FLOWS_CHECK: Duration = Duration::from_secs(2);
/// Quiet time after an OVSDB change before reconciling, so a burst of plugs is one pass.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Timing knobs of the loop.
#[derive(Debug, Clone)]
pub struct LoopTiming {
    /// Seconds between probe rounds.
    pub probe_interval: Duration,
    /// Full resync period.
    pub resync: Duration,
    /// Tag known VM interfaces as soon as OVSDB shows them ([`crate::bind`]); off, a plug
    /// waits for the debounce and the full pass (the benchmark's "before").
    pub fast_bind: bool,
}

impl Default for LoopTiming {
    fn default() -> Self {
        LoopTiming {
            probe_interval: Duration::from_secs(30),
            resync: RESYNC,
            fast_bind: true,
        }
    }
}

/// Builds the status report for the controller from a pass.
pub fn status_report(
    node: &str,
    state: &NodeDesiredState,
    intent: &NodeIntent,
    pass: &PassOutcome,
    probes: &[ProbeResult],
) -> StatusReport {
    let mut ports: Vec<PortStatus> = state
        .ports
        .keys()
        .map(|id| PortStatus {
            port_id: id.clone(),
            status: if pass.plugged.contains_key(id) && pass.ovs_error.is_none() {
                PortState::Active
            } else {
                PortState::Down
            },
            host: node.to_string(),
        })
        .collect();
    // Interfaces plugged here with an iface-id the controller has not placed on this node:
    // reported DOWN with this host, so the controller can learn the binding (as Neutron does
    // when Nova did not set `binding:host_id`).
    ports.extend(
        pass.plugged
            .keys()
            .filter(|id| !state.ports.contains_key(*id))
            .map(|id| PortStatus {
                port_id: id.clone(),
                status: PortState::Down,
                host: node.to_string(),
            }),
    );
    // The `network:dhcp` port of each server that runs: ACTIVE, bound here (as Neutron shows a
    // DHCP port its agent serves). One that failed is not reported (an unbound port reported
    // DOWN would be learned as a VM port's binding).
    ports.extend(intent.dhcp.iter().filter_map(|(ns, d)| {
        let srv = state.dhcp.get(&d.network_id)?;
        let up = matches!(pass.dhcp.get(ns), Some(None)) && pass.ovs_error.is_none();
        up.then(|| PortStatus {
            port_id: srv.port_id.clone(),
            status: PortState::Active,
            host: node.to_string(),
        })
    }));
    ports.sort_by(|a, b| a.port_id.cmp(&b.port_id));
    let mut routers: Vec<RouterStatus> = intent
        .routers
        .iter()
        .map(|(ns, r)| {
            let err = pass.routers.get(ns).cloned().flatten();
            RouterStatus {
                router_id: r.router_id.clone(),
                state: if err.is_none() && pass.ovs_error.is_none() {
                    RouterState::Ready
                } else {
                    RouterState::Failed
                },
                error: err.or_else(|| pass.ovs_error.clone()),
            }
        })
        .collect();
    routers.sort_by(|a, b| a.router_id.cmp(&b.router_id));
    let mut errors = intent.problems.clone();
    for (ns, d) in &intent.dhcp {
        if let Some(Some(e)) = pass.dhcp.get(ns) {
            errors.push(format!("DHCP server of network {}: {e}", d.network_id));
        }
    }
    errors.extend(pass.port_errors.values().cloned());
    errors.extend(pass.flow_errors.iter().cloned());
    if let Some(e) = &pass.ovs_error {
        errors.push(format!("OVSDB: {e}"));
    }
    StatusReport {
        node: node.to_string(),
        revision_applied: state.revision,
        ports,
        routers,
        probes: probes.to_vec(),
        errors,
        ..Default::default()
    }
}

/// Registers until the controller accepts: 404 (pod not created yet) and an unreachable
/// controller are waited out with capped backoff.
pub async fn register(client: &ControllerClient, reg: &NodeRegistration) {
    let mut backoff = Backoff::new(Duration::from_secs(10));
    loop {
        match client.register::<_, serde_json::Value>(reg).await {
            Ok(_) => {
                tracing::info!(pod = %reg.pod, node = %reg.node, "registered with the controller");
                return;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                if e.is_not_found() {
                    tracing::info!(pod = %reg.pod, retry_in = ?delay, "pod does not exist yet; waiting for it");
                } else {
                    tracing::warn!(error = %e, retry_in = ?delay, "registration failed");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Long-polls the node's desired state forever and publishes every new revision on `tx`.
/// Re-registers when the controller no longer knows the node.
pub async fn watch_desired(
    client: ControllerClient,
    reg: NodeRegistration,
    tx: watch::Sender<Option<Arc<NodeDesiredState>>>,
) {
    register(&client, &reg).await;
    let mut since = 0u64;
    let mut backoff = Backoff::new(Duration::from_secs(10));
    loop {
        match client.watch::<WatchResponse>(since, WATCH_WAIT).await {
            Ok(Some(w)) => {
                backoff.reset();
                since = w.revision;
                tracing::debug!(revision = w.revision, "new desired state");
                if tx.send(Some(Arc::new(w.state))).is_err() {
                    return;
                }
            }
            Ok(None) => backoff.reset(),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "watching the desired state failed; data plane left as it is");
                tokio::time::sleep(delay).await;
                if matches!(&e, ClientError::Status { status: 404, .. }) {
                    register(&client, &reg).await;
                    since = 0;
                }
            }
        }
    }
}

/// Errors reading a desired-state file (standalone mode).
#[derive(Debug, thiserror::Error)]
pub enum DesiredFileError {
    #[error("reading the desired state {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("parsing the desired state {path}: {source}")]
    Parse {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
}

/// Reads a `NodeDesiredState` JSON file.
pub fn read_desired_file(path: &std::path::Path) -> Result<NodeDesiredState, DesiredFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| DesiredFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| DesiredFileError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Standalone mode: publishes the file's state at start and whenever its content changes
/// (polled twice a second; an unreadable file is logged and the last good state kept; a
/// readable but invalid one is refused by the loop, which keeps the last valid state).
/// A poll reads and parses the file only when its size, mtime or inode moved (a settled
/// node's 1000-port document was parsed twice a second for nothing), and at least every 30 s
/// whatever they say.
pub async fn watch_file(
    path: std::path::PathBuf,
    tx: watch::Sender<Option<Arc<NodeDesiredState>>>,
) {
    use std::os::unix::fs::MetadataExt;
    const FORCE_EVERY: u32 = 60;
    let mut last: Option<NodeDesiredState> = None;
    let mut last_meta: Option<(u64, i64, i64, u64)> = None;
    let mut polls = 0u32;
    loop {
        let meta = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
        polls += 1;
        if meta.is_some() && meta == last_meta && polls < FORCE_EVERY {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        polls = 0;
        last_meta = meta;
        match read_desired_file(&path) {
            Ok(s) if last.as_ref() != Some(&s) => {
                last = Some(s.clone());
                if tx.send(Some(Arc::new(s))).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "desired-state file unusable; keeping the last good state")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The documents the loop tracks: the last seen (valid or not), the last valid one (what
/// passes reconcile to), why the latest was refused, if it was, and the OVS side of the one in
/// force as the fast path needs it (computed once per document).
#[derive(Default)]
pub struct Docs {
    seen: Option<Arc<NodeDesiredState>>,
    in_force: Option<Arc<NodeDesiredState>>,
    refused: Vec<String>,
    bind_cache: Option<(Arc<NodeDesiredState>, crate::ovs_plan::DesiredOvs)>,
}

/// One node's agent: the backends and everything the loop needs.
pub struct Agent<O, L> {
    /// Node name, as registered.
    pub node: String,
    /// Pod the node belongs to, as registered: a desired state for another pod is refused.
    pub pod: String,
    /// How the desired state maps onto this node.
    pub ctx: NodeContext,
    /// OVSDB side.
    pub ovs: O,
    /// Linux side.
    pub linux: L,
    /// Where status goes; `None` for `--once --desired-file`.
    pub client: Option<ControllerClient>,
    /// systemd notifications.
    pub notifier: Notifier,
    /// Loop timing.
    pub timing: LoopTiming,
    /// Exported metrics.
    pub metrics: Arc<AgentMetrics>,
    /// Security groups in OpenFlow; `None` leaves the bridges' flows alone.
    pub firewall: Option<Firewall>,
    /// Standalone mode's report sink (`--report-file`): reports appended as JSON lines.
    pub report_file: Option<std::path::PathBuf>,
    /// Whether the node is fenced and has not yet had its revision confirmed by the controller
    /// since (see [`stay_fenced`]).
    pub fence_held: std::sync::atomic::AtomicBool,
}

/// Whether a node stays fenced: while its liveness says so, and, once its peers answer again,
/// until the controller confirms the revision it holds is current — a node cut off from its
/// controller too must not bring back instances that moved while it was away (with no
/// controller, as in standalone mode, there is nothing to wait for).
pub fn stay_fenced(fenced_now: bool, held: bool, confirmed: Option<bool>) -> bool {
    fenced_now || (held && confirmed == Some(false))
}

impl<O: OvsBackend, L: LinuxBackend> Agent<O, L> {
    /// What a desired state must agree with: this agent's node, pod and uplink devices.
    pub fn identity(&self) -> AgentIdentity {
        AgentIdentity {
            node: self.node.clone(),
            pod: self.pod.clone(),
            uplink_devices: self.ctx.uplinks.values().cloned().collect(),
        }
    }

    /// Validates `state` as a whole before anything of it is applied. When refused, every broken
    /// rule is logged and returned as a line for the status report's errors.
    pub fn check(&self, state: &NodeDesiredState) -> Result<(), Vec<String>> {
        validate(state, &self.identity()).map_err(|errors| {
            self.metrics.refused.inc();
            tracing::warn!(
                revision = state.revision,
                errors = errors.len(),
                "desired state refused; nothing of it applied, the last valid state stays in force"
            );
            errors
                .iter()
                .map(|e| {
                    tracing::warn!(revision = state.revision, error = %e, "desired state refused");
                    format!("desired state revision {} refused: {e}", state.revision)
                })
                .collect()
        })
    }

    /// The report when no valid state was ever in force: nothing applied, only the refusal.
    pub fn refused_report(&self, errors: Vec<String>) -> StatusReport {
        StatusReport {
            node: self.node.clone(),
            revision_applied: 0,
            ports: Vec::new(),
            routers: Vec::new(),
            probes: Vec::new(),
            errors,
            ..Default::default()
        }
    }

    /// One full pass for `state`: reconcile, probe if asked, and the report to send. `state`
    /// must have passed [`Agent::check`]: `run` and `--once` apply nothing else.
    pub async fn apply(
        &self,
        state: &NodeDesiredState,
        probe: bool,
        last_probes: &mut Vec<ProbeResult>,
    ) -> (PassOutcome, StatusReport) {
        let mut intent = NodeIntent::from_desired(state, &self.ctx);
        let started = Instant::now();
        let mut live = self.liveness(&intent).await;
        use std::sync::atomic::Ordering::SeqCst;
        let held = self.fence_held.load(SeqCst);
        let confirmed = match (&self.client, held && !live.fenced) {
            (Some(c), true) => Some(matches!(
                c.watch::<WatchResponse>(state.revision, Duration::ZERO)
                    .await,
                Ok(None)
            )),
            _ => None,
        };
        live.fenced = stay_fenced(live.fenced, held, confirmed);
        if held && !live.fenced {
            tracing::info!(
                revision = state.revision,
                "peers answer and the controller confirms the revision: unfenced"
            );
        }
        self.fence_held.store(live.fenced, SeqCst);
        intent.fenced = live.fenced;
        let mut pass = reconcile_once(&intent, &self.ovs, &self.linux).await;
        if let Some(fw) = &self.firewall {
            reconcile_firewall(state, &self.ovs, fw, &mut pass).await;
            crate::tunnel::reconcile_flows(
                intent.tunnels.as_ref(),
                &self.ovs,
                fw.flow_sync(),
                &mut pass,
            )
            .await;
            self.metrics
                .record_flows(pass.flows_added, pass.flows_deleted, pass.flows_desired);
        }
        let outcome = if pass.ovs_error.is_some() {
            "ovs_error"
        } else if pass.complete() && intent.problems.is_empty() {
            "ok"
        } else {
            "partial"
        };
        self.metrics.record_pass(
            outcome,
            started.elapsed(),
            pass.ovs_changes,
            pass.linux_changes,
            state.revision,
        );
        self.metrics.record_phase("linux", pass.phases.linux);
        self.metrics.record_phase("ovs_diff", pass.phases.ovs_diff);
        if pass.ovs_changes > 0 {
            self.metrics
                .record_phase("ovs_write", pass.phases.ovs_write);
        }
        if probe || pass.ovs_changes > 0 {
            *last_probes = self.linux.probe(&intent).await;
            self.metrics.record_probes(last_probes);
        }
        self.announce(std::mem::take(&mut pass.came_up)).await;
        let mut report = status_report(&self.node, state, &intent, &pass, last_probes);
        self.metrics.record_liveness(&live.peers, live.fenced);
        report.peers = live.peers;
        report.fenced = live.fenced;
        (pass, report)
    }

    /// The liveness sessions and the fencing decision, from the OVSDB replica as it is now.
    async fn liveness(&self, intent: &NodeIntent) -> crate::liveness::LivenessView {
        let tunnels = intent.tunnels.as_ref();
        if tunnels.is_none_or(|t| t.liveness.is_empty()) {
            return Default::default();
        }
        let Ok(observed) = self.ovs.observe().await else {
            return Default::default();
        };
        let endpoint =
            crate::liveness::endpoint_ip(tunnels).and_then(|ip| self.linux.ifname_of(ip));
        let uplinks: Vec<String> = self.ctx.uplinks.values().cloned().collect();
        let view = crate::liveness::view(tunnels, &observed, &uplinks, endpoint.as_deref());
        if view.fenced && !intent.routers.is_empty() {
            tracing::warn!(peers = ?view.peers, links = ?view.links, "cut off: router instances fenced (legs down)");
        }
        view
    }

    /// Announces legs that came up once their node-side ends are in OVS (numbered by
    /// ovs-vswitchd, bounded wait), so the first gratuitous ARP is not lost on a port that is
    /// not attached yet.
    async fn announce(&self, legs: Vec<crate::reconciler::Announce>) {
        if legs.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let attached = match self.ovs.observe().await {
                Ok(o) => legs.iter().all(|l| {
                    o.ports
                        .get(&l.node_ifname)
                        .is_some_and(|p| p.ofport.is_some())
                }),
                Err(_) => false,
            };
            if attached || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.linux.announce(legs);
    }

    /// Takes the newest document from `desired` if the loop has not seen it yet: validated,
    /// it becomes the one in force (else its refusal is kept for the report). Returns true when
    /// there was a new one.
    pub fn take_latest(
        &self,
        desired: &mut watch::Receiver<Option<Arc<NodeDesiredState>>>,
        docs: &mut Docs,
    ) -> bool {
        let doc = desired.borrow_and_update().clone();
        let Some(doc) = doc else {
            return false;
        };
        if docs.seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &doc)) {
            return false;
        }
        docs.seen = Some(doc.clone());
        match self.check(&doc) {
            Ok(()) => {
                docs.in_force = Some(doc);
                docs.refused.clear();
            }
            Err(errors) => docs.refused = errors,
        }
        true
    }

    /// One step of the binding fast path as the loop runs it on an OVSDB change: the newest
    /// document first (so a tag is never written from a revision older than one the agent has
    /// received), then [`Agent::fast_bind`]. Returns whether a new document was taken and how
    /// many interfaces were tagged; `woke` is when the change was noticed.
    pub async fn bind_now(
        &self,
        desired: &mut watch::Receiver<Option<Arc<NodeDesiredState>>>,
        docs: &mut Docs,
        woke: Instant,
    ) -> (bool, usize) {
        let new_doc = self.take_latest(desired, docs);
        (new_doc, self.fast_bind(docs, woke).await)
    }

    /// The binding fast path ([`crate::bind`]): tags, in one transaction, the VM interfaces
    /// whose iface-id is a port of the state in force, right after OVSDB showed them. Returns
    /// how many it tagged. The caller has taken the newest document first, so a tag is never
    /// written from a revision older than one the agent has received.
    pub async fn fast_bind(&self, docs: &mut Docs, woke: Instant) -> usize {
        let Some(state) = docs.in_force.clone() else {
            return 0;
        };
        if !docs
            .bind_cache
            .as_ref()
            .is_some_and(|(s, _)| Arc::ptr_eq(s, &state))
        {
            let ovs = NodeIntent::from_desired(&state, &self.ctx).ovs();
            docs.bind_cache = Some((state.clone(), ovs));
        }
        let Some((_, desired)) = docs.bind_cache.as_ref() else {
            return 0;
        };
        let Ok(observed) = self.ovs.observe().await else {
            return 0;
        };
        let step = crate::bind::plan(desired, &state, &observed, self.firewall.is_some());
        let changes = step.changes;
        if changes.is_empty() {
            return 0;
        }
        // A secured port's filter before its tag: the flows the pass will want once these
        // tags are in, so the pass after writes none.
        if let (true, Some(fw)) = (step.flows_first, self.firewall.clone()) {
            let mut after = observed.clone();
            crate::ovs_plan::apply(&mut after, &changes);
            let st = state.clone();
            match tokio::task::spawn_blocking(move || fw.reconcile(&st, &after)).await {
                Ok(r) if r.errors.is_empty() => {
                    self.metrics.record_flows(r.added, r.deleted, r.desired);
                }
                Ok(r) => {
                    tracing::warn!(errors = ?r.errors, "fast path: firewall flows failed; no tags written, the pass retries");
                    return 0;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fast path: firewall task failed; the pass retries");
                    return 0;
                }
            }
        }
        match self.ovs.apply(&changes).await {
            Ok(()) => {
                let took = woke.elapsed();
                self.metrics.record_fast_bind(changes.len(), took);
                tracing::info!(
                    revision = state.revision,
                    ports = changes.len(),
                    took_us = took.as_micros() as u64,
                    "fast path: VM interfaces tagged"
                );
                changes.len()
            }
            Err(e) => {
                // The full pass follows and retries (and reports) the same changes.
                tracing::warn!(error = %e, "fast path: tagging failed; the pass retries");
                0
            }
        }
    }

    /// The reconcile loop proper: runs until `shutdown` resolves.
    pub async fn run(
        &self,
        mut desired: watch::Receiver<Option<Arc<NodeDesiredState>>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut ready_sent = false;
        let mut probes: Vec<ProbeResult> = Vec::new();
        let mut last_report: Option<StatusReport> = None;
        let mut resync = tokio::time::interval(self.timing.resync);
        let mut probe_tick = tokio::time::interval(self.timing.probe_interval);
        let mut flows_tick = tokio::time::interval(FLOWS_CHECK);
        let watchdog_every = self
            .notifier
            .watchdog_interval()
            .unwrap_or(Duration::from_secs(3600));
        let mut watchdog = tokio::time::interval(watchdog_every);
        let mut probe_now = false;
        // Without a desired state (pod not created yet, controller down) the agent is still
        // up and leaves the data plane as it is: tell systemd so after a while, rather than
        // being killed for a start timeout and restarted in a loop.
        let ready_anyway = tokio::time::sleep(READY_WITHOUT_STATE);
        tokio::pin!(ready_anyway);
        let mut docs = Docs::default();
        loop {
            let mut run_pass = false;
            tokio::select! {
                _ = &mut ready_anyway, if !ready_sent => {
                    tracing::info!("no desired state yet; reporting ready, data plane left as it is");
                    self.notifier.ready();
                    self.notifier.notify("STATUS=waiting for the controller (no desired state yet)");
                    ready_sent = true;
                    continue;
                }
                _ = &mut shutdown => {
                    tracing::info!("shutting down; data plane left as it is");
                    self.notifier.notify("STOPPING=1");
                    return;
                }
                r = desired.changed() => {
                    if r.is_err() { return; }
                    run_pass = true;
                    probe_now = true;
                }
                _ = self.ovs.changed(), if !self.timing.fast_bind => {
                    let woke = Instant::now();
                    tokio::time::sleep(DEBOUNCE).await;
                    self.metrics.record_phase("debounce", woke.elapsed());
                    run_pass = true;
                }
                _ = self.ovs.changed(), if self.timing.fast_bind => {
                    // Bind at once what can be bound, then let a burst settle for the full
                    // pass; every change inside the window is bound at once too. A newer
                    // document is taken first (and gets its probes, as from the branch above).
                    let woke = Instant::now();
                    let until = tokio::time::Instant::now() + DEBOUNCE;
                    let mut at = woke;
                    loop {
                        let (new_doc, tagged) = self.bind_now(&mut desired, &mut docs, at).await;
                        if new_doc || tagged > 0 {
                            probe_now = true;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            _ = self.ovs.changed() => at = Instant::now(),
                        }
                    }
                    self.metrics.record_phase("debounce", woke.elapsed());
                    run_pass = true;
                }
                _ = resync.tick() => run_pass = true,
                _ = flows_tick.tick(), if self.firewall.is_some() => {
                    let fw = self.firewall.clone().expect("firewall");
                    if tokio::task::spawn_blocking(move || fw.flows_lost()).await.unwrap_or(false) {
                        tracing::warn!("firewall flows missing (ovs-vswitchd restarted?); reconciling");
                        run_pass = true;
                    }
                }
                _ = probe_tick.tick() => probe_now = true,
                _ = watchdog.tick() => self.notifier.watchdog_ping(),
            }
            if !run_pass && !probe_now {
                continue;
            }
            // A document that arrived during the debounce is new here: probe it as well.
            if self.take_latest(&mut desired, &mut docs) {
                probe_now = true;
            }
            let Some(state) = docs.in_force.clone() else {
                if !docs.refused.is_empty() {
                    let report = self.refused_report(docs.refused.clone());
                    self.send_report(report, &mut last_report).await;
                }
                continue;
            };
            let (pass, mut report) = self.apply(&state, probe_now, &mut probes).await;
            report.errors.splice(0..0, docs.refused.iter().cloned());
            probe_now = false;
            if !ready_sent && pass.ovs_error.is_none() {
                self.notifier.ready();
                ready_sent = true;
            }
            self.notifier.notify(&format!(
                "STATUS=revision {} applied, {} OVS changes, {} errors",
                state.revision,
                pass.ovs_changes,
                report.errors.len()
            ));
            self.send_report(report, &mut last_report).await;
        }
    }

    /// Sends `report` to the controller unless it is the one last sent.
    async fn send_report(&self, report: StatusReport, last_report: &mut Option<StatusReport>) {
        if let (Some(path), None) = (&self.report_file, &self.client) {
            if last_report.as_ref() != Some(&report) {
                let at_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let line = serde_json::json!({"at_ms": at_ms, "report": &report});
                let r = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| {
                        use std::io::Write;
                        writeln!(f, "{line}")
                    });
                match r {
                    Ok(()) => *last_report = Some(report),
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "writing the report file failed")
                    }
                }
            }
            return;
        }
        if let Some(c) = &self.client {
            if last_report.as_ref() != Some(&report) {
                match c.report(&report).await {
                    Ok(()) => *last_report = Some(report),
                    Err(e) => tracing::warn!(error = %e, "status report failed; will retry"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The controller path end to end in-process: `watch_desired` long-polls a fake controller
    //! (plain HTTP on loopback), `Agent::run` reconciles through fake backends that record what
    //! each pass was asked to do, and the status reports the controller receives are checked.

    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wire::{BridgeState, LegKind, RouterInstance, RouterLeg};

    use super::*;
    use crate::ovs_plan::{ObservedOvs, OvsChange};
    use crate::reconciler::RouterSync;

    const R: &str = "0f6e3d2e-1484-4fdb-8e00-000000000001";

    #[derive(Default)]
    struct Seen {
        intents: Vec<NodeIntent>,
        ovs_applies: Vec<Vec<OvsChange>>,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<Seen>>);

    impl OvsBackend for Fake {
        type Error = std::io::Error;
        async fn observe(&self) -> Result<ObservedOvs, std::io::Error> {
            Ok(ObservedOvs::default())
        }
        async fn apply(&self, changes: &[OvsChange]) -> Result<(), std::io::Error> {
            self.0.lock().unwrap().ovs_applies.push(changes.to_vec());
            Ok(())
        }
        async fn changed(&self) {
            std::future::pending::<()>().await;
        }
    }

    impl LinuxBackend for Fake {
        type Error = std::io::Error;
        async fn sync_routers(&self, intent: &NodeIntent) -> Result<RouterSync, std::io::Error> {
            self.0.lock().unwrap().intents.push(intent.clone());
            Ok(RouterSync {
                routers: intent.routers.keys().map(|k| (k.clone(), None)).collect(),
                ..Default::default()
            })
        }
        async fn probe(&self, _: &NodeIntent) -> Vec<ProbeResult> {
            Vec::new()
        }
    }

    /// The fake controller: serves `docs` to watches, records status reports.
    #[derive(Default)]
    struct Controller {
        docs: Vec<NodeDesiredState>,
        reports: Vec<StatusReport>,
    }

    async fn serve(listener: tokio::net::TcpListener, ctl: Arc<Mutex<Controller>>) {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let ctl = ctl.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = &buf[head_end..];
                let line = head.lines().next().unwrap_or_default().to_string();
                let (status, answer) = if line.starts_with("PUT ") && line.contains("/status") {
                    let report: StatusReport = serde_json::from_slice(body).unwrap();
                    ctl.lock().unwrap().reports.push(report);
                    ("200 OK", "{}".to_string())
                } else if line.starts_with("GET ") && line.contains("/desired?since=") {
                    let since: u64 = line
                        .split("since=")
                        .nth(1)
                        .and_then(|s| s.split('&').next())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let next = ctl
                        .lock()
                        .unwrap()
                        .docs
                        .iter()
                        .find(|d| d.revision > since)
                        .cloned();
                    match next {
                        Some(state) => (
                            "200 OK",
                            serde_json::to_string(&WatchResponse {
                                revision: state.revision,
                                state,
                            })
                            .unwrap(),
                        ),
                        None => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            ("204 No Content", String::new())
                        }
                    }
                } else {
                    ("200 OK", "{}".to_string())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    }

    fn valid(revision: u64) -> NodeDesiredState {
        let mut s = NodeDesiredState {
            node: "n1".into(),
            pod: "RegionOne".into(),
            revision,
            ..Default::default()
        };
        s.bridges.insert(
            "br-vlan".into(),
            BridgeState {
                physnet: "bridge".into(),
                ..Default::default()
            },
        );
        s.routers.insert(
            R.into(),
            RouterInstance {
                router_id: R.into(),
                project_id: "p".into(),
                namespace: format!("qrouter-{R}"),
                legs: vec![RouterLeg {
                    kind: LegKind::Internal,
                    bridge: "br-vlan".into(),
                    tag: Some(101),
                    address: "10.0.1.1/24".parse().unwrap(),
                    mac: "fa:16:3e:00:00:01".into(),
                    ns_ifname: "qr-1".into(),
                    ovs_ifname: "vr-1".into(),
                    network_id: None,
                    subnet_id: None,
                    mtu: None,
                    ipv6_ra: None,
                    extra_addresses: Vec::new(),
                }],
                ..Default::default()
            },
        );
        s
    }

    /// The valid state with a dead-VLAN leg in a namespace that is not the router's.
    fn invalid(revision: u64) -> NodeDesiredState {
        let mut s = valid(revision);
        let r = s.routers.get_mut(R).unwrap();
        r.legs[0].tag = Some(4095);
        r.namespace = "far".into();
        s
    }

    struct Running {
        ctl: Arc<Mutex<Controller>>,
        seen: Fake,
        metrics: Arc<AgentMetrics>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            for t in &self.tasks {
                t.abort();
            }
        }
    }

    async fn start(first: NodeDesiredState) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let ctl = Arc::new(Mutex::new(Controller {
            docs: vec![first],
            reports: Vec::new(),
        }));
        let seen = Fake::default();
        let metrics = Arc::new(AgentMetrics::new());
        let client = ControllerClient::new(&url, "n1", "t");
        let agent = Agent {
            node: "n1".into(),
            pod: "RegionOne".into(),
            ctx: NodeContext::default(),
            ovs: seen.clone(),
            linux: seen.clone(),
            client: Some(client.clone()),
            notifier: Notifier::from_env(),
            timing: LoopTiming {
                probe_interval: Duration::from_secs(3600),
                resync: Duration::from_millis(100),
                ..LoopTiming::default()
            },
            metrics: metrics.clone(),
            firewall: None,
            report_file: None,
            fence_held: Default::default(),
        };
        let reg = NodeRegistration {
            pod: "RegionOne".into(),
            node: "n1".into(),
            bridge_mappings: Default::default(),
            uplinks: Default::default(),
            local_ip: None,
        };
        let (tx, rx) = watch::channel(None);
        let tasks = vec![
            tokio::spawn(serve(listener, ctl.clone())),
            tokio::spawn(watch_desired(client, reg, tx)),
            tokio::spawn(async move { agent.run(rx, std::future::pending()).await }),
        ];
        Running {
            ctl,
            seen,
            metrics,
            tasks,
        }
    }

    impl Running {
        /// Waits for a report that satisfies `f`; panics with the reports seen after 10 s.
        async fn report(&self, f: impl Fn(&StatusReport) -> bool) -> StatusReport {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(r) = self.ctl.lock().unwrap().reports.iter().rev().find(|r| f(r)) {
                    return r.clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "no such report: {:?}",
                    self.ctl.lock().unwrap().reports
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        fn passes(&self) -> usize {
            self.seen.0.lock().unwrap().intents.len()
        }
    }

    #[tokio::test]
    async fn a_refused_state_is_reported_and_the_last_valid_one_stays_in_force() {
        let run = start(valid(1)).await;
        let ok = run
            .report(|r| r.revision_applied == 1 && r.errors.is_empty())
            .await;
        assert_eq!(ok.routers.len(), 1);
        let good = NodeIntent::from_desired(&valid(1), &NodeContext::default());

        run.ctl.lock().unwrap().docs.push(invalid(2));
        let refused = run
            .report(|r| r.errors.iter().any(|e| e.contains("revision 2 refused")))
            .await;
        assert_eq!(refused.revision_applied, 1, "{refused:?}");
        let errors = refused.errors.join("\n");
        assert!(errors.contains("VLAN 4095"), "{errors}");
        assert!(errors.contains("namespace \"far\""), "{errors}");
        assert_eq!(refused.routers.len(), 1, "the valid router is reported");
        // Passes go on (resync), always with the last valid state.
        let before = run.passes();
        let deadline = Instant::now() + Duration::from_secs(10);
        while run.passes() < before + 3 {
            assert!(Instant::now() < deadline, "the loop stopped reconciling");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        {
            let seen = run.seen.0.lock().unwrap();
            for intent in &seen.intents {
                assert_eq!(intent.routers, good.routers);
                assert_eq!(intent.revision, 1);
            }
            let tags: Vec<&OvsChange> = seen
                .ovs_applies
                .iter()
                .flatten()
                .filter(|c| {
                    matches!(
                        c,
                        OvsChange::AddPort {
                            tag: Some(4095),
                            ..
                        }
                    )
                })
                .collect();
            assert!(tags.is_empty(), "{tags:?}");
        }
        assert_eq!(run.metrics.refused.get(), 1);

        // The next valid revision is taken and the refusal is gone from the report.
        run.ctl.lock().unwrap().docs.push(valid(3));
        run.report(|r| r.revision_applied == 3 && r.errors.is_empty())
            .await;
    }

    #[tokio::test]
    async fn a_refused_first_state_changes_nothing_and_is_reported() {
        let run = start(invalid(1)).await;
        let r = run
            .report(|r| r.errors.iter().any(|e| e.contains("revision 1 refused")))
            .await;
        assert_eq!(r.revision_applied, 0, "{r:?}");
        assert!(r.routers.is_empty() && r.ports.is_empty(), "{r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = run.seen.0.lock().unwrap();
        assert!(
            seen.intents.is_empty(),
            "no pass may run: {:?}",
            seen.intents
        );
        assert!(seen.ovs_applies.is_empty());
    }

    #[test]
    fn a_fenced_node_unfences_only_on_a_confirmed_revision() {
        // Cut off now: fenced, whatever the controller says.
        assert!(super::stay_fenced(true, false, None));
        assert!(super::stay_fenced(true, true, Some(true)));
        // Peers answer again but the controller did not confirm the revision: stay fenced.
        assert!(super::stay_fenced(false, true, Some(false)));
        // Confirmed, or no controller at all (standalone): unfenced.
        assert!(!super::stay_fenced(false, true, Some(true)));
        assert!(!super::stay_fenced(false, true, None));
        // Never fenced: nothing held.
        assert!(!super::stay_fenced(false, false, None));
    }
}
