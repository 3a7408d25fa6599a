//! VxLAN (issue 19): `provider:network_type vxlan` networks through the real `openstack` CLI
//! (VNI from `--vni-ranges` or chosen, taken 409, exhaustion 409 naming the range, MTU 1450,
//! VNI given back with the network), provider attributes refused to members of any project,
//! and a VxLAN bridge network in the desired state agents read (tunnels, peers, tags, MTU),
//! on SQLite and PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::guide::{agent, desired, ok, pods};
use common::{openstack, openstack_json, Controller, Opts, PgDb, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

fn os(c: &Controller, args: &[&str]) -> Value {
    openstack_json(c, ADMIN, args)
}

/// Register `node` in `pod` with br-vlan (and br-ext with `ext`) and a tunnel IP.
fn register(c: &Controller, node: &str, pod: &str, ext: bool, local_ip: Option<&str>) {
    let (maps, ups) = if ext {
        (
            json!({"bridge": "br-vlan", "extern": "br-ext"}),
            json!(["bridge", "extern"]),
        )
    } else {
        (json!({"bridge": "br-vlan"}), json!(["bridge"]))
    };
    let mut body = json!({"pod": pod, "node": node, "bridge_mappings": maps, "uplinks": ups});
    if let Some(ip) = local_ip {
        body["local_ip"] = json!(ip);
    }
    ok(
        c.t("POST", "/v1.0/agents", Some(&agent(node)), Some(&body)),
        "register",
    );
}

fn cli_vxlan_networks(database: Option<&str>) {
    let c = Controller::start_opts(&Opts {
        database,
        extra: &["--vni-ranges", "1001:1002"],
        ..Opts::default()
    });
    pods(&c);
    let a = os(
        &c,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "vx-a",
        ],
    );
    assert_eq!(a["provider:network_type"], "vxlan");
    assert_eq!(a["provider:segmentation_id"], 1001);
    assert_eq!(a["provider:physical_network"], Value::Null);
    assert_eq!(a["mtu"], 1450);
    let shown = os(&c, &["network", "show", "vx-a"]);
    assert_eq!(shown["provider:segmentation_id"], 1001);
    assert_eq!(shown["provider:network_type"], "vxlan");
    assert_eq!(shown["mtu"], 1450);
    // A VNI outside the ranges is anyone's to choose once; inside them it is taken from the pool.
    let b = os(
        &c,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            "70000",
            "vx-b",
        ],
    );
    assert_eq!(b["provider:segmentation_id"], 70000);
    let (done, _, err) = openstack(
        &c,
        ADMIN,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            "70000",
            "vx-b2",
        ],
    );
    assert!(
        !done && err.contains("70000") && err.contains("in use"),
        "{err}"
    );
    let chosen = os(
        &c,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "--provider-segment",
            "1002",
            "vx-c",
        ],
    );
    assert_eq!(chosen["provider:segmentation_id"], 1002);
    // 1001:1002 is all taken: 409 naming the range.
    let (status, body) = c.n(
        "POST",
        "/v2.0/networks",
        Some(ADMIN),
        Some(&json!({"network": {"name": "vx-d", "provider:network_type": "vxlan"}})),
    );
    assert_eq!(status, 409, "{body}");
    let msg = body["NeutronError"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("1001:1002"), "{body}");
    let (done, _, err) = openstack(
        &c,
        ADMIN,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "vx-d",
        ],
    );
    assert!(!done && err.contains("1001:1002"), "{err}");
    // Bad input: a physnet, a VNI out of 24 bits, an MTU the tunnels cannot carry.
    for (body, what) in [
        (
            json!({"network": {"provider:network_type": "vxlan", "provider:physical_network": "bridge"}}),
            "provider:physical_network",
        ),
        (
            json!({"network": {"provider:network_type": "vxlan", "provider:segmentation_id": 16777216}}),
            "provider:segmentation_id",
        ),
        (
            json!({"network": {"provider:network_type": "vxlan", "provider:segmentation_id": 3000, "mtu": 1500}}),
            "mtu",
        ),
    ] {
        let (status, b) = c.n("POST", "/v2.0/networks", Some(ADMIN), Some(&body));
        assert_eq!(status, 400, "{body}: {b}");
        assert!(
            b["NeutronError"]["message"]
                .as_str()
                .unwrap()
                .contains(what),
            "{b}"
        );
    }
    // Deleting a network gives its VNI back.
    let (done, _, err) = openstack(&c, ADMIN, &["network", "delete", "vx-a"]);
    assert!(done, "{err}");
    let again = os(
        &c,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vxlan",
            "vx-e",
        ],
    );
    assert_eq!(again["provider:segmentation_id"], 1001);
    // Other types keep the underlay's MTU.
    let v = os(&c, &["network", "create", "plain"]);
    assert_eq!(v["mtu"], 1500);
    assert!(!c.log_has_5xx());
}

#[test]
fn vxlan_networks_with_the_real_cli_sqlite() {
    cli_vxlan_networks(None);
}

#[test]
fn vxlan_networks_with_the_real_cli_postgres() {
    let db = PgDb::create();
    cli_vxlan_networks(Some(&db.url));
}

#[test]
fn members_of_any_project_cannot_set_vxlan_provider_attributes() {
    let c = Controller::start_with(None, &["--tenant-network-types", "vxlan"]);
    pods(&c);
    for (token, owner) in [(DEMO, None), (OTHER, None), (OTHER, Some("demo"))] {
        for extra in [
            json!({"provider:network_type": "vxlan"}),
            json!({"provider:network_type": "vxlan", "provider:segmentation_id": 1500}),
            json!({"provider:segmentation_id": 1500}),
        ] {
            let mut body = json!({"name": "n"});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            if let Some(p) = owner {
                body["project_id"] = json!(p);
            }
            let (status, b) = c.n(
                "POST",
                "/v2.0/networks",
                Some(token),
                Some(&json!({ "network": body })),
            );
            assert_eq!(status, 403, "{token} {body}: {b}");
        }
    }
    // Without provider attributes a member gets the default type, vxlan, and does not see
    // the provider attributes; the other project does not see the network at all.
    let n = ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(DEMO),
            Some(&json!({"network": {"name": "mine"}})),
        ),
        "member network",
    );
    assert_eq!(n["network"]["mtu"], 1450);
    assert!(n["network"].get("provider:network_type").is_none(), "{n}");
    let id = n["network"]["id"].as_str().unwrap();
    let (status, _) = c.n("GET", &format!("/v2.0/networks/{id}"), Some(OTHER), None);
    assert_eq!(status, 404);
    let admin = ok(
        c.n("GET", &format!("/v2.0/networks/{id}"), Some(ADMIN), None),
        "admin show",
    );
    assert_eq!(admin["network"]["provider:network_type"], "vxlan");
    assert_eq!(admin["network"]["provider:segmentation_id"], 1001);
    // The member cannot delete the other's network either (404: it is hidden).
    let (status, _) = c.n("DELETE", &format!("/v2.0/networks/{id}"), Some(OTHER), None);
    assert_eq!(status, 404);
}

/// `node`'s published state (the document agents apply).
fn state(c: &Controller, node: &str) -> Value {
    desired(c, node)["state"].clone()
}

/// Poll `node`'s published state until `pred` holds (15 s).
fn wait_state(c: &Controller, node: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let d = state(c, node);
        if pred(&d) {
            return d;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "{what}: {d:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn demo_net(c: &Controller, name: &str, cidr: &str) -> String {
    let n = ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(DEMO),
            Some(&json!({"network": {"name": name}})),
        ),
        "network",
    );
    let id = n["network"]["id"].as_str().unwrap().to_string();
    ok(
        c.n(
            "POST",
            "/v2.0/subnets",
            Some(DEMO),
            Some(&json!({"subnet": {"network_id": id, "ip_version": 4, "cidr": cidr}})),
        ),
        "subnet",
    );
    id
}

fn vm(c: &Controller, net: &str, host: &str) -> String {
    let p = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(DEMO),
            Some(&json!({"port": {"network_id": net, "device_owner": "compute:nova"}})),
        ),
        "port",
    );
    let id = p["port"]["id"].as_str().unwrap().to_string();
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/ports/{id}"),
            Some(ADMIN),
            Some(&json!({"port": {"binding:host_id": host}})),
        ),
        "bind",
    );
    id
}

fn vni_of(c: &Controller, net: &str) -> u64 {
    let n = ok(
        c.n("GET", &format!("/v2.0/networks/{net}"), Some(ADMIN), None),
        "network",
    );
    n["network"]["provider:segmentation_id"].as_u64().unwrap()
}

/// VNI → the tunnel IPs of the nodes whose state carries it, and each node's view.
fn segments(states: &BTreeMap<&str, Value>) -> BTreeMap<u64, BTreeSet<String>> {
    let mut out: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for st in states.values() {
        let Some(t) = st.get("tunnels") else {
            continue;
        };
        for vni in t["segments"].as_object().unwrap().keys() {
            out.entry(vni.parse().unwrap())
                .or_default()
                .insert(t["local_ip"].as_str().unwrap().to_string());
        }
    }
    out
}

fn assert_peers_consistent(states: &BTreeMap<&str, Value>) {
    let carriers = segments(states);
    for (node, st) in states {
        let Some(t) = st.get("tunnels") else {
            continue;
        };
        let me = t["local_ip"].as_str().unwrap();
        for (vni, seg) in t["segments"].as_object().unwrap() {
            let mut want = carriers[&vni.parse::<u64>().unwrap()].clone();
            want.remove(me);
            let got: BTreeSet<String> = seg["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            assert_eq!(got, want, "{node}: peers of {vni}");
            let tag = seg["tag"].as_u64().unwrap();
            for b in st["bridges"].as_object().unwrap().values() {
                assert!(
                    !b["trunks"].as_array().unwrap().contains(&json!(tag)),
                    "{node}: VxLAN tag {tag} trunked: {b}"
                );
            }
        }
    }
}

fn bridge_vxlan_desired_state(database: Option<&str>) {
    let c = Controller::start_opts(&Opts {
        database,
        extra: &[
            "--bridge-network-type",
            "vxlan",
            "--tenant-network-types",
            "vxlan",
            "--full-pass-interval",
            "2",
        ],
        ..Opts::default()
    });
    pods(&c);
    register(&c, "node1", "RegionOne", false, Some("192.168.50.1"));
    register(&c, "node3", "RegionOne", false, Some("192.168.50.3"));
    register(&c, "node2", "RegionTwo", true, Some("192.168.50.2"));
    let net1 = demo_net(&c, "net1", "10.0.1.0/24");
    let net2 = demo_net(&c, "net2", "10.0.2.0/24");
    let vm1 = vm(&c, &net1, "node1");
    let vm2 = vm(&c, &net1, "node2");
    let _vm3 = vm(&c, &net2, "node3");
    let r = ok(
        c.n(
            "POST",
            "/v2.0/routers",
            Some(DEMO),
            Some(&json!({"router": {"name": "r"}})),
        ),
        "router",
    );
    let rid = r["router"]["id"].as_str().unwrap().to_string();
    for net in [&net1, &net2] {
        let sub = ok(
            c.n("GET", &format!("/v2.0/networks/{net}"), Some(DEMO), None),
            "net",
        )["network"]["subnets"][0]
            .as_str()
            .unwrap()
            .to_string();
        ok(
            c.n(
                "PUT",
                &format!("/v2.0/routers/{rid}/add_router_interface"),
                Some(DEMO),
                Some(&json!({"subnet_id": sub})),
            ),
            "interface",
        );
    }
    let (v1, v2) = (vni_of(&c, &net1), vni_of(&c, &net2));
    assert_eq!((v1, v2), (1001, 1002));
    // The project's bridge network is a VxLAN network of its own VNI.
    let nets = ok(
        c.n(
            "GET",
            "/v2.0/networks?name=bridge-net-demo",
            Some(ADMIN),
            None,
        ),
        "bridge net",
    );
    let bridge = &nets["networks"][0];
    assert_eq!(bridge["provider:network_type"], "vxlan", "{nets}");
    assert_eq!(bridge["mtu"], 1450);
    let bvni = bridge["provider:segmentation_id"].as_u64().unwrap();
    assert_eq!(bvni, 1003);
    let nodes = ["node1", "node2", "node3"];
    let states = || -> BTreeMap<&str, Value> { nodes.iter().map(|n| (*n, state(&c, n))).collect() };
    // Wait until both instances have their bridge legs (one per pod).
    let t0 = Instant::now();
    let st = loop {
        let st = states();
        let legs = st
            .values()
            .filter_map(|s| s["routers"].get(&rid))
            .flat_map(|r| r["legs"].as_array().unwrap().iter())
            .filter(|l| l["kind"] == "bridge")
            .count();
        if legs == 2 && st["node1"]["ports"].get(&vm1).is_some() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{st:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_peers_consistent(&st);
    // The incremental picture (bridge VNI, its per-pod tags, tunnels) equals a full pass's.
    let r = ok(c.t("POST", "/v1.0/resync", Some(ADMIN), None), "resync");
    assert_eq!(r["resync"]["drift"], false, "drift: {r}");
    let carriers = segments(&st);
    assert!(carriers[&v1].contains("192.168.50.1") && carriers[&v1].contains("192.168.50.2"));
    assert_eq!(
        carriers[&bvni].len(),
        2,
        "one instance per pod: {carriers:?}"
    );
    let n1 = &st["node1"]["tunnels"];
    assert_eq!(n1["local_ip"], "192.168.50.1");
    assert_eq!(n1["bridge"], "br-vlan");
    let seg1 = &n1["segments"][v1.to_string()];
    assert_eq!(seg1["network_id"], json!(net1));
    assert_eq!(st["node1"]["ports"][&vm1]["tag"], seg1["tag"]);
    for (node, s) in &st {
        let Some(inst) = s["routers"].get(&rid) else {
            continue;
        };
        for leg in inst["legs"].as_array().unwrap() {
            assert_eq!(leg["mtu"], 1450, "{node}: {leg}");
            if leg["kind"] == "bridge" {
                let seg = &s["tunnels"]["segments"][bvni.to_string()];
                assert_eq!(seg["project_id"], "demo");
                assert_eq!(leg["tag"], seg["tag"], "{node}");
            }
        }
    }
    // node2 moves its tunnel endpoint: the others' peers follow.
    register(&c, "node2", "RegionTwo", true, Some("192.168.60.2"));
    let d = wait_state(&c, "node1", "node2's new tunnel IP", |d| {
        d["tunnels"]["segments"][v1.to_string()]["peers"]
            .as_array()
            .is_some_and(|p| p.contains(&json!("192.168.60.2")))
    });
    assert!(!d["tunnels"]["segments"][v1.to_string()]["peers"]
        .as_array()
        .unwrap()
        .contains(&json!("192.168.50.2")));
    assert_peers_consistent(&states());
    // A node without a tunnel IP carries no VxLAN: the port bound there stays out.
    let (status, _) = c.t(
        "POST",
        "/v1.0/agents",
        Some(&agent("node9")),
        Some(&json!({"pod": "RegionTwo", "node": "node9", "bridge_mappings": {"bridge": "br-vlan"}, "uplinks": ["bridge"]})),
    );
    assert!((200..300).contains(&status));
    let p9 = vm(&c, &net2, "node9");
    // Binding it brought net2 to RegionTwo: the router's instance there (node2) gets its leg.
    wait_state(&c, "node2", "net2 leg in RegionTwo", |d| {
        d["routers"][&rid]["legs"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["network_id"] == json!(net2)))
    });
    let d9 = state(&c, "node9");
    assert!(d9["ports"].get(&p9).is_none(), "{d9}");
    assert!(d9.get("tunnels").is_none(), "{d9}");
    // The VM goes: the last port of net1 in RegionTwo takes node2 out of node1's peers.
    let (status, _) = c.n("DELETE", &format!("/v2.0/ports/{vm2}"), Some(DEMO), None);
    assert_eq!(status, 204);
    wait_state(&c, "node1", "node2 leaves net1's peers", |d| {
        d["tunnels"]["segments"][v1.to_string()]["peers"]
            .as_array()
            .is_none_or(|p| !p.contains(&json!("192.168.60.2")))
    });
    assert!(state(&c, "node2")["tunnels"]["segments"]
        .get(v1.to_string())
        .is_none());
    assert_peers_consistent(&states());
    let r = ok(c.t("POST", "/v1.0/resync", Some(ADMIN), None), "resync");
    assert_eq!(r["resync"]["drift"], false, "drift: {r}");
    assert!(!c.log_has_5xx());
}

#[test]
fn bridge_vni_and_tunnels_reach_the_agents_sqlite() {
    bridge_vxlan_desired_state(None);
}

#[test]
fn bridge_vni_and_tunnels_reach_the_agents_postgres() {
    let db = PgDb::create();
    bridge_vxlan_desired_state(Some(&db.url));
}
