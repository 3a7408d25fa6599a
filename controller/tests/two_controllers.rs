//! Two real controller processes on one PostgreSQL database serve the same state (a watcher on
//! one is woken by a change made through the other, by NOTIFY), and
//! concurrent creates fired at both never allocate a VLAN, IP or MAC twice, with no 500s.
mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use serde_json::json;

#[test]
fn two_controllers_one_postgres_no_duplicate_allocations() {
    let db = PgDb::create();
    let flags = [
        "--network-vlan-ranges",
        "bridge:100:139",
        "--tenant-network-types",
        "vlan",
    ];
    // Started at the same time on a fresh database: the migrations race and must not clash.
    let (a, b) = std::thread::scope(|s| {
        let ta = s.spawn(|| Controller::start_with(Some(&db.url), &flags));
        let tb = s.spawn(|| Controller::start_with(Some(&db.url), &flags));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let (a, b) = (Arc::new(a), Arc::new(b));
    // Shared state: created on A, seen on B.
    let (s, v) = a.n(
        "POST",
        "/v2.0/networks",
        Some(DEMO),
        Some(&json!({"network": {"name": "shared-state"}})),
    );
    assert_eq!(s, 201, "{v}");
    let nid = v["network"]["id"].as_str().unwrap().to_string();
    let (s, _) = b.n("GET", &format!("/v2.0/networks/{nid}"), Some(DEMO), None);
    assert_eq!(s, 200, "B sees A's network");
    let (s, v) = b.n(
        "POST",
        "/v2.0/subnets",
        Some(DEMO),
        Some(&json!({"subnet": {"network_id": nid, "cidr": "10.50.0.0/24", "ip_version": 4}})),
    );
    assert_eq!(s, 201, "{v}");

    // Concurrent ports (IP + MAC) and networks (VLAN) through both controllers.
    let mut threads = Vec::new();
    for i in 0..8 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let nid = nid.clone();
        threads.push(std::thread::spawn(move || {
            let mut out = Vec::new();
            for _ in 0..6 {
                out.push((
                    "port",
                    c.n(
                        "POST",
                        "/v2.0/ports",
                        Some(DEMO),
                        Some(&json!({"port": {"network_id": nid}})),
                    ),
                ));
            }
            for _ in 0..4 {
                out.push((
                    "network",
                    c.n(
                        "POST",
                        "/v2.0/networks",
                        Some(DEMO),
                        Some(&json!({"network": {}})),
                    ),
                ));
            }
            out
        }));
    }
    let mut ips = HashSet::new();
    let mut macs = HashSet::new();
    let mut vlans = HashSet::new();
    let mut nets = 0;
    for t in threads {
        for (kind, (s, v)) in t.join().unwrap() {
            assert_eq!(s, 201, "{kind} create under concurrency: {v}");
            if kind == "port" {
                assert!(
                    ips.insert(
                        v["port"]["fixed_ips"][0]["ip_address"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    ),
                    "duplicate IP {v}"
                );
                assert!(
                    macs.insert(v["port"]["mac_address"].as_str().unwrap().to_string()),
                    "duplicate MAC {v}"
                );
            } else {
                nets += 1;
            }
        }
    }
    assert_eq!(ips.len(), 48);
    // VLANs as the admin sees them from either controller.
    let (_, v) = b.n("GET", "/v2.0/networks", Some(ADMIN), None);
    for n in v["networks"].as_array().unwrap() {
        let seg = n["provider:segmentation_id"]
            .as_i64()
            .expect("vlan network");
        assert!(vlans.insert(seg), "duplicate VLAN {seg}");
        assert!((100..=139).contains(&seg));
    }
    assert_eq!(vlans.len(), nets + 1);
    let (_, v) = a.n("GET", "/v2.0/ports", Some(ADMIN), None);
    assert_eq!(
        v["ports"].as_array().unwrap().len(),
        48,
        "A sees every port made through B"
    );
    assert!(!a.log_has_5xx() && !b.log_has_5xx(), "no 500s");
    drop(a);
    drop(b);
    drop(db);
}

/// An agent long-polling controller B is answered when the change is made through controller
/// A: B learns it from PostgreSQL NOTIFY on the change log (B is told to poll the log only
/// hourly and never to re-read everything, so nothing else could wake it), re-plans, and both
/// controllers then serve the same revision and content.
#[test]
fn a_watcher_on_one_controller_sees_changes_made_through_the_other() {
    let db = PgDb::create();
    let a = Controller::start_with(Some(&db.url), &[]);
    let b = Controller::start_with(
        Some(&db.url),
        &[
            "--change-log-poll-ms",
            "3600000",
            "--full-pass-interval",
            "3600",
        ],
    );
    for body in [
        json!({"pod": {"region_name": "CentralRegion"}}),
        json!({"pod": {"region_name": "RegionOne", "az_name": "az1"}}),
    ] {
        let (s, v) = a.t("POST", "/v1.0/pods", Some(ADMIN), Some(&body));
        assert_eq!(s, 200, "{v}");
    }
    let reg = json!({"pod": "RegionOne", "node": "node1",
        "bridge_mappings": {"bridge": "br-vlan"}, "uplinks": ["bridge"]});
    let (s, v) = a.t("POST", "/v1.0/agents", Some(ADMIN), Some(&reg));
    assert_eq!(s, 200, "{v}");
    let (s, first) = b.t("GET", "/v1.0/agents/node1/desired", Some(ADMIN), None);
    assert_eq!(s, 200, "{first}");
    let rev = first["revision"].as_u64().expect("revision");
    let tricircle = b.tricircle;
    let waiter = std::thread::spawn(move || {
        request(
            tricircle,
            "GET",
            &format!("/v1.0/agents/node1/desired?since={rev}&timeout=30"),
            Some(ADMIN),
            None,
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (s, v) = a.n(
        "POST",
        "/v2.0/networks",
        Some(DEMO),
        Some(&json!({"network": {"name": "n1"}})),
    );
    assert_eq!(s, 201, "{v}");
    let nid = v["network"]["id"].as_str().unwrap().to_string();
    let (s, v) = a.n(
        "POST",
        "/v2.0/subnets",
        Some(DEMO),
        Some(&json!({"subnet": {"network_id": nid, "cidr": "10.60.0.0/24", "ip_version": 4}})),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = a.n(
        "POST",
        "/v2.0/ports",
        Some(ADMIN),
        Some(
            &json!({"port": {"network_id": nid, "project_id": "demo", "binding:host_id": "node1"}}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    let port = v["port"]["id"].as_str().unwrap().to_string();
    let (s, got) = waiter.join().unwrap();
    assert_eq!(s, 200, "B's watcher was not woken: {got}");
    let new_rev = got["revision"].as_u64().unwrap();
    assert!(new_rev > rev, "{got}");
    // The answer may be the first of several revisions (network, then port): wait on B until
    // the port is there, then A and B agree.
    let mut since = new_rev;
    let mut state = got;
    while !state["state"]["ports"][&port].is_object() {
        let (s, next) = b.t(
            "GET",
            &format!("/v1.0/agents/node1/desired?since={since}&timeout=20"),
            Some(ADMIN),
            None,
        );
        assert_eq!(s, 200, "B never served the port: {state}");
        since = next["revision"].as_u64().unwrap();
        state = next;
    }
    // A publishes from its own reading of the log; once it has caught up, both serve the
    // same revision and content.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, on_a) = a.t("GET", "/v1.0/agents/node1/desired", Some(ADMIN), None);
        assert_eq!(s, 200);
        let (s, on_b) = b.t("GET", "/v1.0/agents/node1/desired", Some(ADMIN), None);
        assert_eq!(s, 200);
        if on_a == on_b && on_b["state"]["ports"][&port].is_object() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the controllers disagree: A {on_a}\nB {on_b}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!a.log_has_5xx() && !b.log_has_5xx());
}
