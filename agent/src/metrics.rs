//! Prometheus metrics of the agent and the tiny HTTP endpoint that serves them (`GET /metrics`).
//! The endpoint is deliberately minimal (one route, HTTP/1.0 semantics, connection closed after
//! each answer): Prometheus is its only client.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Labels = Vec<(String, String)>;

/// Every metric the agent exports.
pub struct AgentMetrics {
    registry: Registry,
    /// Reconcile passes by outcome (`ok`, `partial`, `ovs_error`).
    pub passes: Family<Labels, Counter>,
    /// Duration of reconcile passes.
    pub pass_seconds: Histogram,
    /// OVSDB changes applied.
    pub ovs_changes: Counter,
    /// Kernel changes made (namespaces, links, addresses, routes, sysctls, NAT tables).
    pub netlink_changes: Counter,
    /// Desired-state revision last applied.
    pub revision: Gauge,
    /// Desired states refused by validation (nothing of them applied).
    pub refused: Counter,
    /// Probe reachability (1/0) by router and target.
    pub probe_up: Family<Labels, Gauge>,
    /// Probe round-trip time in microseconds by router and target.
    pub probe_rtt_us: Family<Labels, Gauge>,
    /// DHCP requests, replies and ignored requests per network.
    pub dhcp: crate::dhcp::DhcpCounters,
    /// IPv6 router advertisements sent and solicitations answered, per router.
    pub ra: crate::ra::RaCounters,
    /// Firewall flows written (added or replaced).
    pub flows_added: Counter,
    /// Firewall flows deleted.
    pub flows_deleted: Counter,
    /// Firewall flows the bridges must hold.
    pub flows_desired: Gauge,
    /// Where a pass's time goes, by phase: `debounce` (first OVSDB wakeup to the pass),
    /// `linux`, `ovs_diff`, `ovs_write` (transaction until the replica shows it).
    pub phase_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// VM interfaces tagged by the binding fast path (before the full pass).
    pub fast_binds: Counter,
    /// From an OVSDB wakeup to the fast path's tags written (only wakeups that wrote).
    pub fast_bind_seconds: Histogram,
    /// Liveness: each peer's BFD session (1 up, 0 down), by peer node.
    pub peer_up: Family<Labels, Gauge>,
    /// 1 while the node is fenced (its router legs down, see [`crate::liveness`]).
    pub fenced: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(
        [
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0, 5.0,
        ]
        .into_iter(),
    )
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Registers every metric under the `crosspod_agent` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("crosspod_agent");
        let passes = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_passes",
            "Reconcile passes by outcome",
            passes.clone(),
        );
        let pass_seconds =
            Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0].into_iter());
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile pass",
            pass_seconds.clone(),
        );
        let ovs_changes = Counter::default();
        registry.register(
            "ovsdb_changes",
            "OVSDB changes applied by the agent",
            ovs_changes.clone(),
        );
        let netlink_changes = Counter::default();
        registry.register(
            "kernel_changes",
            "Kernel objects created, changed or removed (netlink, sysctl, nftables)",
            netlink_changes.clone(),
        );
        let revision = Gauge::default();
        registry.register(
            "desired_revision",
            "Revision of the desired state last applied",
            revision.clone(),
        );
        let refused = Counter::default();
        registry.register(
            "desired_states_refused",
            "Desired states refused by validation; the last valid one stays in force",
            refused.clone(),
        );
        let probe_up = Family::<Labels, Gauge>::default();
        registry.register(
            "probe_reachable",
            "Whether a probe target answered (1) or not (0)",
            probe_up.clone(),
        );
        let probe_rtt_us = Family::<Labels, Gauge>::default();
        registry.register(
            "probe_rtt_microseconds",
            "Round-trip time of the last successful probe",
            probe_rtt_us.clone(),
        );
        let dhcp = crate::dhcp::DhcpCounters::default();
        dhcp.register(&mut registry);
        let ra = crate::ra::RaCounters::default();
        ra.register(&mut registry);
        let flows_added = Counter::default();
        registry.register(
            "openflow_flows_added",
            "Firewall flows written (added or replaced) by the agent",
            flows_added.clone(),
        );
        let flows_deleted = Counter::default();
        registry.register(
            "openflow_flows_deleted",
            "Firewall flows deleted by the agent (only crosspod's cookie)",
            flows_deleted.clone(),
        );
        let flows_desired = Gauge::default();
        registry.register(
            "openflow_flows_desired",
            "Firewall flows the node's bridges must hold",
            flows_desired.clone(),
        );
        let phase_seconds = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "reconcile_phase_seconds",
            "Where a reconcile pass's time goes, by phase",
            phase_seconds.clone(),
        );
        let fast_binds = Counter::default();
        registry.register(
            "fast_binds",
            "VM interfaces tagged by the binding fast path, before the full pass",
            fast_binds.clone(),
        );
        let fast_bind_seconds = latency_histogram();
        registry.register(
            "fast_bind_duration_seconds",
            "From an OVSDB change to the fast path's tags written",
            fast_bind_seconds.clone(),
        );
        let peer_up = Family::<Labels, Gauge>::default();
        registry.register(
            "liveness_peer_up",
            "BFD session to each peer node of the pod (1 up, 0 down)",
            peer_up.clone(),
        );
        let fenced = Gauge::default();
        registry.register(
            "fenced",
            "1 while the node has withdrawn its router instances (cut off)",
            fenced.clone(),
        );
        AgentMetrics {
            registry,
            peer_up,
            fenced,
            phase_seconds,
            fast_binds,
            fast_bind_seconds,
            dhcp,
            ra,
            flows_added,
            flows_deleted,
            flows_desired,
            passes,
            pass_seconds,
            ovs_changes,
            netlink_changes,
            revision,
            refused,
            probe_up,
            probe_rtt_us,
        }
    }

    /// Records one pass.
    pub fn record_pass(
        &self,
        outcome: &str,
        took: Duration,
        ovs_changes: usize,
        kernel_changes: usize,
        revision: u64,
    ) {
        self.passes
            .get_or_create(&vec![("outcome".into(), outcome.into())])
            .inc();
        self.pass_seconds.observe(took.as_secs_f64());
        self.ovs_changes.inc_by(ovs_changes as u64);
        self.netlink_changes.inc_by(kernel_changes as u64);
        self.revision.set(revision as i64);
    }

    /// Records the time of one phase of a pass (see [`AgentMetrics::phase_seconds`]).
    pub fn record_phase(&self, phase: &str, took: Duration) {
        self.phase_seconds
            .get_or_create(&vec![("phase".into(), phase.into())])
            .observe(took.as_secs_f64());
    }

    /// Records one fast-path write of `ports` tags, `took` after the OVSDB wakeup.
    pub fn record_fast_bind(&self, ports: usize, took: Duration) {
        self.fast_binds.inc_by(ports as u64);
        self.fast_bind_seconds.observe(took.as_secs_f64());
    }

    /// Records one firewall step.
    pub fn record_flows(&self, added: usize, deleted: usize, desired: usize) {
        self.flows_added.inc_by(added as u64);
        self.flows_deleted.inc_by(deleted as u64);
        self.flows_desired.set(desired as i64);
    }

    /// Records what the liveness sessions say and whether the node is fenced.
    pub fn record_liveness(&self, peers: &[wire::PeerLiveness], fenced: bool) {
        self.peer_up.clear();
        for p in peers {
            self.peer_up
                .get_or_create(&vec![("peer".to_string(), p.node.clone())])
                .set(i64::from(p.up));
        }
        self.fenced.set(i64::from(fenced));
    }

    /// Records a probe round.
    pub fn record_probes(&self, probes: &[wire::ProbeResult]) {
        self.probe_up.clear();
        self.probe_rtt_us.clear();
        for p in probes {
            let labels = vec![
                ("router_id".to_string(), p.router_id.clone()),
                ("target".to_string(), p.target.to_string()),
            ];
            self.probe_up
                .get_or_create(&labels)
                .set(i64::from(p.reachable));
            if let Some(us) = p.latency_us {
                self.probe_rtt_us.get_or_create(&labels).set(us as i64);
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<AgentMetrics>) {
    loop {
        let Ok((mut sock, peer)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read until the end of the request head (or 4 KiB, or 5 s).
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let first = head.lines().next().unwrap_or_default();
            let (status, ctype, body) = if first.starts_with("GET /metrics ") {
                (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.render(),
                )
            } else {
                tracing::debug!(%peer, request = %first, "metrics: unknown request");
                (
                    "404 Not Found",
                    "text/plain",
                    "only GET /metrics here\n".into(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_are_served_over_http() {
        let m = Arc::new(AgentMetrics::new());
        m.record_pass("ok", Duration::from_millis(3), 5, 4, 7);
        m.record_probes(&[wire::ProbeResult {
            router_id: "r1".into(),
            target: "100.0.0.3".parse().unwrap(),
            reachable: true,
            latency_us: Some(250),
        }]);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, m));
        let body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("crosspod_agent_ovsdb_changes_total 5"),
            "{body}"
        );
        assert!(body.contains("crosspod_agent_desired_revision 7"), "{body}");
        assert!(
            body.contains("crosspod_agent_kernel_changes_total 4"),
            "{body}"
        );
        assert!(
            body.contains(
                r#"crosspod_agent_probe_rtt_microseconds{router_id="r1",target="100.0.0.3"} 250"#
            ),
            "{body}"
        );
        let r = reqwest::get(format!("http://{addr}/other")).await.unwrap();
        assert_eq!(r.status(), 404);
        server.abort();
    }
}
