//! Prometheus metrics of the controller, served at `GET /metrics` on the Tricircle port:
//! API requests by API, method, route and status with their latency; realization runs by
//! outcome with their duration and the node states they published; jobs by state (read at
//! scrape time).

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Every metric the controller exports.
pub struct ControllerMetrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    realize_runs: Family<Labels, Counter>,
    realize_seconds: Histogram,
    allocations: Family<Labels, Counter>,
    intent_copies: Counter,
    published: Counter,
    passes: Family<Labels, Counter>,
    changes_read: Counter,
    replanned: Counter,
    drift: Counter,
    job_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    failovers: Family<Labels, Counter>,
    failover_seconds: Histogram,
    partitions: Family<Labels, Counter>,
}

fn latency_buckets() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0].into_iter())
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    /// Count a failover in `pod` that took `took` from the first down report to the
    /// published revisions.
    pub fn record_failover(&self, pod: &str, took: Duration) {
        self.failovers
            .get_or_create(&vec![("pod".into(), pod.into())])
            .inc();
        self.failover_seconds.observe(took.as_secs_f64());
    }

    /// Count a partition nobody can judge from the reports, in `pod`.
    pub fn record_partition(&self, pod: &str) {
        self.partitions
            .get_or_create(&vec![("pod".into(), pod.into())])
            .inc();
    }

    /// Registers every metric under the `crosspod_controller` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("crosspod_controller");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "api_requests",
            "API requests by api, method, route and status",
            requests.clone(),
        );
        let request_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_buckets);
        registry.register(
            "api_request_duration_seconds",
            "API request latency by api and route",
            request_seconds.clone(),
        );
        let realize_runs = Family::<Labels, Counter>::default();
        registry.register(
            "realize_runs",
            "Realization runs by outcome",
            realize_runs.clone(),
        );
        let realize_seconds = latency_buckets();
        registry.register(
            "realize_duration_seconds",
            "Duration of a realization run",
            realize_seconds.clone(),
        );
        let allocations = Family::<Labels, Counter>::default();
        registry.register(
            "allocations",
            "Allocations and releases the realizer made, by action, kind and outcome",
            allocations.clone(),
        );
        let intent_copies = Counter::default();
        registry.register(
            "intent_copies",
            "Realization passes that copied the whole intent because a reader still held it",
            intent_copies.clone(),
        );
        let published = Counter::default();
        registry.register(
            "node_states_published",
            "Node desired states published (revision bumps)",
            published.clone(),
        );
        let passes = Family::<Labels, Counter>::default();
        registry.register(
            "realize_passes",
            "Realization passes by kind (full: whole store re-read; incremental: change log)",
            passes.clone(),
        );
        let changes_read = Counter::default();
        registry.register(
            "change_log_entries_read",
            "Change-log entries the realizer processed",
            changes_read.clone(),
        );
        let replanned = Counter::default();
        registry.register(
            "nodes_replanned",
            "Node states re-planned (full passes re-plan every node)",
            replanned.clone(),
        );
        let drift = Counter::default();
        registry.register(
            "realize_drift",
            "Full passes that found the incremental picture different from the store (a bug)",
            drift.clone(),
        );
        let job_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_buckets);
        registry.register(
            "job_duration_seconds",
            "Time from a job's start to SUCCESS or FAIL, by type and outcome",
            job_seconds.clone(),
        );
        let failovers = Family::<Labels, Counter>::default();
        registry.register(
            "failovers",
            "Nodes judged lost whose router instances and DHCP servers moved, by pod",
            failovers.clone(),
        );
        let failover_seconds =
            Histogram::new([0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0].into_iter());
        registry.register(
            "failover_duration_seconds",
            "From the first report of a node down to its moved instances' revisions published",
            failover_seconds.clone(),
        );
        let partitions = Family::<Labels, Counter>::default();
        registry.register(
            "partitions_seen",
            "Times a node and its peers saw each other down with nobody fenced (nothing moves), by pod",
            partitions.clone(),
        );
        ControllerMetrics {
            failovers,
            failover_seconds,
            partitions,
            registry,
            job_seconds,
            requests,
            request_seconds,
            realize_runs,
            realize_seconds,
            allocations,
            intent_copies,
            published,
            passes,
            changes_read,
            replanned,
            drift,
        }
    }

    /// Records what one realization pass did.
    pub fn record_pass(&self, full: bool, changes: usize, replanned: usize, drift: bool) {
        self.passes
            .get_or_create(&labels(&[(
                "kind",
                if full { "full" } else { "incremental" },
            )]))
            .inc();
        self.changes_read.inc_by(changes as u64);
        self.replanned.inc_by(replanned as u64);
        if drift {
            self.drift.inc();
        }
    }

    /// Records one API request. `route` is the matched route template
    /// (the HTTP layer's route template), never the raw path, so the label set is bounded.
    pub fn record_request(
        &self,
        api: &str,
        method: &str,
        route: &str,
        status: u16,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&labels(&[
                ("api", api),
                ("method", method),
                ("route", route),
                ("status", &status.to_string()),
            ]))
            .inc();
        self.request_seconds
            .get_or_create(&labels(&[("api", api), ("route", route)]))
            .observe(took.as_secs_f64());
    }

    /// Records one realization run.
    pub fn record_realize(&self, ok: bool, took: Duration, published: usize) {
        self.realize_runs
            .get_or_create(&labels(&[("outcome", if ok { "ok" } else { "error" })]))
            .inc();
        self.realize_seconds.observe(took.as_secs_f64());
        self.published.inc_by(published as u64);
    }

    /// Records a pass that had to copy the intent (a reader held it while it changed).
    pub fn record_intent_copy(&self) {
        self.intent_copies.inc();
    }

    /// How many times passes copied the intent (see [`Self::record_intent_copy`]).
    pub fn intent_copies(&self) -> u64 {
        self.intent_copies.get()
    }

    /// Records one allocation or release (`action`) of `kind` and whether it succeeded: a
    /// settled controller makes none, so this standing still says the store is caught up.
    pub fn record_allocation(&self, action: &str, kind: &str, ok: bool) {
        self.allocations
            .get_or_create(&labels(&[
                ("action", action),
                ("kind", kind),
                ("outcome", if ok { "ok" } else { "error" }),
            ]))
            .inc();
    }

    /// Records a job that finished (`outcome` SUCCESS or FAIL) after `took`.
    pub fn record_job(&self, kind: &str, outcome: &str, took: Duration) {
        self.job_seconds
            .get_or_create(&labels(&[("type", kind), ("outcome", outcome)]))
            .observe(took.as_secs_f64());
    }

    /// The text exposition, with `extra` lines (gauges read at scrape time) appended.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        // `encode` ends with "# EOF"; keep it last.
        let body = out
            .trim_end()
            .strip_suffix("# EOF")
            .unwrap_or(&out)
            .to_string();
        format!("{body}{extra}# EOF\n")
    }
}

/// A label set with every value escaped: `prometheus-client`'s text encoder writes label
/// values as given, so a `"`, `\` or newline in one would break the exposition.
fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), escape_label_value(v)))
        .collect()
}

/// Escape a label value for the Prometheus/OpenMetrics text format: `\` → `\\`,
/// `"` → `\"`, newline → `\n`; everything else is kept.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_backslash_quote_and_newline() {
        assert_eq!(escape_label_value("plain/{id}"), "plain/{id}");
        assert_eq!(escape_label_value(r#"a"b"#), r#"a\"b"#);
        assert_eq!(escape_label_value(r"a\b"), r"a\\b");
        assert_eq!(escape_label_value("a\nb"), r"a\nb");
        assert_eq!(escape_label_value("\\\"\n"), r#"\\\"\n"#);
        let m = ControllerMetrics::new();
        m.record_job("x\"y\nz\\", "FAIL", Duration::from_millis(1));
        let text = m.render("");
        assert!(
            text.contains(r#"type="x\"y\nz\\",outcome="FAIL""#),
            "{text}"
        );
        assert!(!text.contains("x\"y\n"), "{text}");
    }

    #[test]
    fn metrics_render() {
        let m = ControllerMetrics::new();
        m.record_request(
            "neutron",
            "GET",
            "/v2.0/networks",
            200,
            Duration::from_millis(2),
        );
        m.record_realize(true, Duration::from_millis(3), 2);
        m.record_job("router", "SUCCESS", Duration::from_millis(800));
        let text = m.render("crosspod_controller_jobs{status=\"NEW\"} 1\n");
        assert!(text.contains(r#"crosspod_controller_api_requests_total{api="neutron",method="GET",route="/v2.0/networks",status="200"} 1"#), "{text}");
        assert!(
            text.contains("crosspod_controller_node_states_published_total 2"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
        assert!(
            text.contains(r#"crosspod_controller_job_duration_seconds_count{type="router",outcome="SUCCESS"} 1"#),
            "{text}"
        );
        assert!(text.contains("jobs{status=\"NEW\"} 1"));
    }
}
