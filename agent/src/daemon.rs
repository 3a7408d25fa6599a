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
use crate::intent::{NodeContext, NodeIntent};
use crate::metrics::AgentMetrics;
use crate::reconciler::{reconcile_once, LinuxBackend, OvsBackend, PassOutcome};
use crate::sd_notify::Notifier;
use crate::validate::{validate, AgentIdentity};

/// How long one watch long-poll waits on the controller.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// Full resync even when nothing signalled a change (level-triggered safety net).
const RESYNC: Duration = Duration::from_secs(60);
/// How long to wait for the first desired state before telling systemd READY anyway.
const READY_WITHOUT_STATE: Duration = Duration::from_secs(60);
/// Quiet time after an OVSDB change before reconciling, so a burst of plugs is one pass.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Timing knobs of the loop.
#[derive(Debug, Clone)]
pub struct LoopTiming {
    /// Seconds between probe rounds.
    pub probe_interval: Duration,
    /// Full resync period.
    pub resync: Duration,
}

impl Default for LoopTiming {
    fn default() -> Self {
        LoopTiming {
            probe_interval: Duration::from_secs(30),
            resync: RESYNC,
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
    errors.extend(pass.port_errors.values().cloned());
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
pub async fn watch_file(
    path: std::path::PathBuf,
    tx: watch::Sender<Option<Arc<NodeDesiredState>>>,
) {
    let mut last: Option<NodeDesiredState> = None;
    loop {
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
        }
    }

    /// One full pass for `state`: reconcile, probe if asked, and the report to send.
    pub async fn apply(
        &self,
        state: &NodeDesiredState,
        probe: bool,
        last_probes: &mut Vec<ProbeResult>,
    ) -> (PassOutcome, StatusReport) {
        let intent = NodeIntent::from_desired(state, &self.ctx);
        let started = Instant::now();
        let pass = reconcile_once(&intent, &self.ovs, &self.linux).await;
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
        if probe || pass.ovs_changes > 0 {
            *last_probes = self.linux.probe(&intent).await;
            self.metrics.record_probes(last_probes);
        }
        let report = status_report(&self.node, state, &intent, &pass, last_probes);
        (pass, report)
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
        // The last document seen (valid or not), the last valid one (what passes reconcile to)
        // and why the latest was refused, if it was.
        let mut seen: Option<Arc<NodeDesiredState>> = None;
        let mut in_force: Option<Arc<NodeDesiredState>> = None;
        let mut refused: Vec<String> = Vec::new();
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
                _ = self.ovs.changed() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    run_pass = true;
                }
                _ = resync.tick() => run_pass = true,
                _ = probe_tick.tick() => probe_now = true,
                _ = watchdog.tick() => self.notifier.watchdog_ping(),
            }
            if !run_pass && !probe_now {
                continue;
            }
            let doc = desired.borrow_and_update().clone();
            if let Some(doc) = doc {
                if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &doc)) {
                    seen = Some(doc.clone());
                    match self.check(&doc) {
                        Ok(()) => {
                            in_force = Some(doc);
                            refused.clear();
                        }
                        Err(errors) => refused = errors,
                    }
                }
            }
            let Some(state) = in_force.clone() else {
                if !refused.is_empty() {
                    let report = self.refused_report(refused.clone());
                    self.send_report(report, &mut last_report).await;
                }
                continue;
            };
            let (pass, mut report) = self.apply(&state, probe_now, &mut probes).await;
            report.errors.splice(0..0, refused.iter().cloned());
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
