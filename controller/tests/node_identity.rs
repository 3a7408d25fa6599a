//! Node identity (issue 14): an agent credential speaks only for its own node. Each attack
//! a node's credential could try against another node, through the real agent API.

mod common;

use common::guide::{agent, net_subnet, ok, pods, register, vm_port, AGENT};
use common::{Controller, Opts, ADMIN, DEMO};
use serde_json::json;

fn start() -> Controller {
    let c = Controller::start_opts(&Opts {
        // An agent token bound to no node, as every agent shared before.
        tokens: &["agenttok service agent"],
        ..Opts::default()
    });
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(&c, &agent("node2"), "node2", "RegionTwo", true),
        "node2",
    );
    c
}

fn report(node: &str, rev: u64, ports: serde_json::Value) -> serde_json::Value {
    json!({"node": node, "revision_applied": rev, "ports": ports, "routers": [], "probes": [], "errors": []})
}

#[test]
fn a_node_credential_reads_and_reports_only_for_its_node() {
    let c = start();
    let n1 = agent("node1");
    for (method, path, body) in [
        ("GET", "/v1.0/agents/node2/desired?since=0", None),
        (
            "PUT",
            "/v1.0/agents/node2/status",
            Some(report("node2", 1, json!([]))),
        ),
    ] {
        let (s, v) = c.t(method, path, Some(&n1), body.as_ref());
        assert_eq!(s, 403, "{method} {path}: {v}");
    }
    // Nor does an agent token bound to no node reach any node.
    let (s, v) = c.t(
        "GET",
        "/v1.0/agents/node1/desired?since=0",
        Some(AGENT),
        None,
    );
    assert_eq!(s, 403, "{v}");
    // Its own node: yes.
    ok(
        c.t("GET", "/v1.0/agents/node1/desired?since=0", Some(&n1), None),
        "own state",
    );
}

#[test]
fn a_node_cannot_re_register_another_or_move_itself() {
    let c = start();
    let n1 = agent("node1");
    let (s, v) = register(&c, &n1, "node2", "RegionOne", false);
    assert_eq!(s, 403, "re-register node2: {v}");
    // Moving itself into another pod or to other bridge mappings is an admin's change.
    let (s, v) = register(&c, &n1, "node1", "RegionTwo", false);
    assert_eq!(s, 409, "{v}");
    let (s, v) = register(&c, &n1, "node1", "RegionOne", true);
    assert_eq!(s, 409, "other mappings: {v}");
    // Registering again as it was (every agent start) is fine.
    ok(
        register(&c, &n1, "node1", "RegionOne", false),
        "same registration",
    );
    // An admin decommissions it; then it registers anew, elsewhere.
    for who in [n1.as_str(), DEMO] {
        let (s, _) = c.t("DELETE", "/v1.0/agents/node1", Some(who), None);
        assert_eq!(s, 403, "only an admin decommissions");
    }
    let (s, _) = c.t("DELETE", "/v1.0/agents/node1", Some(ADMIN), None);
    assert_eq!(s, 204);
    let (s, _) = c.t("DELETE", "/v1.0/agents/node1", Some(ADMIN), None);
    assert_eq!(s, 404);
    ok(
        register(&c, &n1, "node1", "RegionTwo", false),
        "registered anew",
    );
    let agents = ok(c.t("GET", "/v1.0/agents", Some(ADMIN), None), "agents");
    let node1 = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["node"] == "node1")
        .cloned()
        .unwrap();
    assert_eq!(node1["pod"], "RegionTwo");
}

#[test]
fn a_report_claims_no_future_revision_and_no_other_hosts_ports() {
    let c = start();
    let n1 = agent("node1");
    let (net, _) = net_subnet(&c, "net1", "10.0.1.0/24");
    let (on_node2, _) = vm_port(&c, &net, "node2");
    let rev = common::guide::desired(&c, "node1")["revision"]
        .as_u64()
        .unwrap();
    let (s, v) = c.t(
        "PUT",
        "/v1.0/agents/node1/status",
        Some(&n1),
        Some(&report("node1", rev + 1000, json!([]))),
    );
    assert_eq!(s, 400, "a revision beyond the published one: {v}");
    // A port bound to node2, reported ACTIVE on node1 by node1 (host node1): not moved.
    let (s, v) = c.t(
        "PUT",
        "/v1.0/agents/node1/status",
        Some(&n1),
        Some(&report(
            "node1",
            rev,
            json!([{"port_id": on_node2, "status": "ACTIVE", "host": "node1"}]),
        )),
    );
    assert_eq!(s, 204, "{v}");
    let p = ok(
        c.n("GET", &format!("/v2.0/ports/{on_node2}"), Some(ADMIN), None),
        "port",
    );
    assert_eq!(p["port"]["binding:host_id"], "node2", "{p}");
    assert_ne!(p["port"]["status"], "ACTIVE", "{p}");
    // Naming another host in its own report is refused outright.
    let (s, v) = c.t(
        "PUT",
        "/v1.0/agents/node1/status",
        Some(&n1),
        Some(&report(
            "node1",
            rev,
            json!([{"port_id": on_node2, "status": "ACTIVE", "host": "node2"}]),
        )),
    );
    assert_eq!(s, 400, "{v}");
    // An unbound port seen on node1 is learned there.
    let free = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(DEMO),
            Some(&json!({"port": {"network_id": net}})),
        ),
        "port",
    );
    let free = free["port"]["id"].as_str().unwrap().to_string();
    let (s, _) = c.t(
        "PUT",
        "/v1.0/agents/node1/status",
        Some(&n1),
        Some(&report(
            "node1",
            rev,
            json!([{"port_id": free, "status": "DOWN", "host": "node1"}]),
        )),
    );
    assert_eq!(s, 204);
    let p = ok(
        c.n("GET", &format!("/v2.0/ports/{free}"), Some(ADMIN), None),
        "port",
    );
    assert_eq!(p["port"]["binding:host_id"], "node1", "{p}");
}
