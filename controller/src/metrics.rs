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
    published: Counter,
    passes: Family<Labels, Counter>,
    changes_read: Counter,
    replanned: Counter,
    drift: Counter,
    job_seconds: Family<Labels, Histogram, fn() -> Histogram>,
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
        ControllerMetrics {
            registry,
            job_seconds,
            requests,
            request_seconds,
            realize_runs,
            realize_seconds,
            published,
            passes,
            changes_read,
            replanned,
            drift,
        }
    }

    /// Records what one realization pass did.
    pub fn record_pass(&self, r: &crate::realize::PassReport) {
        self.passes
            .get_or_create(&vec![(
                "kind".into(),
                if r.full { "full" } else { "incremental" }.into(),
            )])
            .inc();
        self.changes_read.inc_by(r.changes as u64);
        self.replanned.inc_by(r.replanned as u64);
        if r.drift {
            self.drift.inc();
        }
    }

    /// Records one API request. `path` is reduced to a route template (ids become `{id}`).
    pub fn record_request(&self, api: &str, method: &str, path: &str, status: u16, took: Duration) {
        let route = route_template(path);
        self.requests
            .get_or_create(&vec![
                ("api".into(), api.into()),
                ("method".into(), method.into()),
                ("route".into(), route.clone()),
                ("status".into(), status.to_string()),
            ])
            .inc();
        self.request_seconds
            .get_or_create(&vec![("api".into(), api.into()), ("route".into(), route)])
            .observe(took.as_secs_f64());
    }

    /// Records one realization run.
    pub fn record_realize(&self, ok: bool, took: Duration, published: usize) {
        self.realize_runs
            .get_or_create(&vec![(
                "outcome".into(),
                if ok { "ok" } else { "error" }.into(),
            )])
            .inc();
        self.realize_seconds.observe(took.as_secs_f64());
        self.published.inc_by(published as u64);
    }

    /// Records a job that finished (`outcome` SUCCESS or FAIL) after `took`.
    pub fn record_job(&self, kind: &str, outcome: &str, took: Duration) {
        self.job_seconds
            .get_or_create(&vec![
                ("type".into(), kind.into()),
                ("outcome".into(), outcome.into()),
            ])
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

/// `/v2.0/ports/3f…/x` → `/v2.0/ports/{id}/x`: segments that look like ids (UUIDs, numbers,
/// addresses) become `{id}` so the label set stays small.
pub fn route_template(path: &str) -> String {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let idlike = uuid::Uuid::parse_str(s).is_ok()
                || s.parse::<u64>().is_ok()
                || s.parse::<std::net::IpAddr>().is_ok()
                || (s.len() > 20 && s.chars().any(|c| c.is_ascii_digit()));
            if idlike {
                "{id}".to_string()
            } else {
                s.to_string()
            }
        })
        .collect();
    format!("/{}", segs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_hide_ids_and_metrics_render() {
        assert_eq!(
            route_template("/v2.0/ports/3f0c9a1e-6b2d-4a8e-9c1f-000000000001"),
            "/v2.0/ports/{id}"
        );
        assert_eq!(
            route_template("/v1.0/agents/node1/desired"),
            "/v1.0/agents/node1/desired"
        );
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
