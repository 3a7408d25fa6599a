//! Routers, floating IPs and the agent API on the real controller binary: the guide's scenario
//! gives each node the state DESIGN.md describes (in either order of steps), the long-poll
//! answers on change and 204 on timeout, status reports make ports ACTIVE and teach bindings,
//! agents see only their nodes, foreign floating IPs are refused, jobs finish (resuming after
//! a kill -9 is in `crash_resume.rs`), and the openstack CLI's router and floating ip commands
//! work.

mod common;

use std::time::{Duration, Instant};

use common::guide::{
    agent, desired, ext_net, net_subnet, net_subnet_as, ok, pods, register, vm_port, AGENT,
};
use common::{openstack, openstack_json, Controller, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

const AGENT2: &str = "agenttok2";

fn add_agent_tokens(c: &Controller) {
    let path = c.tokens_file();
    let mut t = std::fs::read_to_string(&path).unwrap();
    t.push_str(&format!("{AGENT} service agent\n{AGENT2} service2 agent\n"));
    // A later mtime than the first read, so the controller re-reads it.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&path, t).unwrap();
}

/// A full realization pass finds nothing the incremental passes missed: the in-memory picture
/// patched from the change log equals a fresh read of the store, and so do the planned states.
fn assert_no_drift(c: &Controller) {
    let r = ok(c.t("POST", "/v1.0/resync", Some(ADMIN), None), "resync");
    assert_eq!(r["resync"]["full"], true, "{r}");
    assert_eq!(
        r["resync"]["drift"],
        false,
        "the incremental picture drifted from the store: {r}\n{}",
        c.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("drift"))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (s, _) = c.t("POST", "/v1.0/resync", Some(DEMO), None);
    assert_eq!(s, 403, "resync is admin only");
}

struct Guide {
    subnet1: String,
    subnet2: String,
    vm1: String,
    vm1_ip: String,
    ext: String,
    router: String,
}

fn iface(c: &Controller, router: &str, subnet: &str) {
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{router}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": subnet})),
        ),
        "add interface",
    );
}

fn gateway(c: &Controller, router: &str, ext: &str) {
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{router}"),
            Some(DEMO),
            Some(&json!({"router": {"external_gateway_info": {"network_id": ext}}})),
        ),
        "gateway",
    );
}

/// Plays the guide's steps; `gateway_first` sets the gateway before the interfaces and creates
/// the external network last but one (the order Tricircle could not take).
fn play(c: &Controller, gateway_first: bool) -> Guide {
    add_agent_tokens(c);
    pods(c);
    ok(
        register(c, &agent("node1"), "node1", "RegionOne", false),
        "register node1",
    );
    ok(
        register(c, &agent("node2"), "node2", "RegionTwo", true),
        "register node2",
    );
    let (net1, subnet1) = net_subnet(c, "net1", "10.0.1.0/24");
    let (net2, subnet2) = net_subnet(c, "net2", "10.0.2.0/24");
    let (vm1, vm1_ip) = vm_port(c, &net1, "node1");
    vm_port(c, &net2, "node2");
    let r = ok(
        c.n(
            "POST",
            "/v2.0/routers",
            Some(DEMO),
            Some(&json!({"router": {"name": "router"}})),
        ),
        "router",
    );
    let router = r["router"]["id"].as_str().unwrap().to_string();
    let ext;
    if gateway_first {
        ext = ext_net(c);
        gateway(c, &router, &ext);
        iface(c, &router, &subnet1);
        iface(c, &router, &subnet2);
    } else {
        iface(c, &router, &subnet1);
        iface(c, &router, &subnet2);
        ext = ext_net(c);
        gateway(c, &router, &ext);
    }
    let f = ok(
        c.n(
            "POST",
            "/v2.0/floatingips",
            Some(DEMO),
            Some(&json!({"floatingip": {"floating_network_id": ext, "port_id": vm1}})),
        ),
        "floating IP",
    );
    assert_eq!(f["floatingip"]["router_id"], json!(router), "{f}");
    Guide {
        subnet1,
        subnet2,
        vm1,
        vm1_ip,
        ext,
        router,
    }
}

fn leg<'a>(inst: &'a Value, kind: &str) -> &'a Value {
    inst["legs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} leg in {inst}"))
}

fn route(inst: &Value, dest: &str) -> Option<String> {
    inst["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["destination"] == dest)
        .map(|r| r["nexthop"].as_str().unwrap().to_string())
}

fn check_guide(c: &Controller, g: &Guide) {
    // The realizer runs after each write; give it a moment to settle.
    std::thread::sleep(Duration::from_millis(500));
    let d1 = desired(c, "node1");
    let d2 = desired(c, "node2");
    let i1 = &d1["state"]["routers"][&g.router];
    let i2 = &d2["state"]["routers"][&g.router];
    assert!(
        i1.is_object() && i2.is_object(),
        "an instance per pod: {d1} {d2}"
    );
    let bvlan = leg(i1, "bridge")["tag"].as_u64().unwrap();
    assert!(
        (2001..=3000).contains(&bvlan),
        "bridge VLAN from physnet bridge: {bvlan}"
    );
    assert_eq!(
        leg(i2, "bridge")["tag"].as_u64().unwrap(),
        bvlan,
        "same bridge VLAN in every pod"
    );
    for d in [&d1, &d2] {
        let trunks = &d["state"]["bridges"]["br-vlan"]["trunks"];
        assert!(
            trunks.as_array().unwrap().contains(&json!(bvlan)),
            "bridge VLAN trunked: {d}"
        );
    }
    let b1 = leg(i1, "bridge")["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let b2 = leg(i2, "bridge")["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        b1.starts_with("100.") && b2.starts_with("100.") && b1 != b2,
        "{b1} {b2}"
    );
    assert_eq!(leg(i1, "internal")["address"], "10.0.1.1/24");
    assert_eq!(leg(i2, "internal")["address"], "10.0.2.1/24");
    assert_eq!(route(i1, "10.0.2.0/24"), Some(b2.clone()), "{i1}");
    assert_eq!(route(i2, "10.0.1.0/24"), Some(b1.clone()), "{i2}");
    assert_eq!(
        route(i1, "0.0.0.0/0"),
        Some(b2.clone()),
        "RegionOne defaults to RegionTwo's bridge IP: {i1}"
    );
    assert_eq!(route(i2, "0.0.0.0/0"), Some("163.3.124.1".into()), "{i2}");
    let gw = leg(i2, "gateway");
    assert_eq!(gw["bridge"], "br-ext");
    assert_eq!(gw["tag"], 3001, "first VLAN of extern:3001:4000");
    assert!(gw["address"].as_str().unwrap().starts_with("163.3.124."));
    assert!(i1["legs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["kind"] != "gateway"));
    let snat = &i2["nat"]["snat"][0];
    assert_eq!(
        snat["sources"],
        json!(["10.0.1.0/24", "10.0.2.0/24"]),
        "{i2}"
    );
    let fl = &i2["nat"]["floating"][0];
    assert_eq!(fl["fixed_ip"], json!(g.vm1_ip), "{i2}");
    assert_eq!(fl["port_id"], json!(g.vm1));
    assert!(i1["nat"]["floating"]
        .as_array()
        .is_none_or(|a| a.is_empty()));
    assert_eq!(d2["state"]["bridges"]["br-ext"]["trunks"], json!([3001]));
    assert!(
        d1["state"]["bridges"].get("br-ext").is_none(),
        "node1 has no external network"
    );
    assert!(
        d1["state"]["ports"][&g.vm1].is_object(),
        "vm1's port bound on node1"
    );
    let _ = (&g.subnet1, &g.subnet2, &g.ext);
    assert!(!c.log_has_5xx());
    assert_no_drift(c);
}

#[test]
fn the_guide_gives_each_node_its_cross_pod_state() {
    let c = Controller::start();
    let g = play(&c, false);
    check_guide(&c, &g);

    // Removing subnet2 withdraws the route to it.
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{}/remove_router_interface", g.router),
            Some(DEMO),
            Some(&json!({"subnet_id": g.subnet2})),
        ),
        "remove",
    );
    std::thread::sleep(Duration::from_millis(500));
    let d1 = desired(&c, "node1");
    assert_eq!(
        route(&d1["state"]["routers"][&g.router], "10.0.2.0/24"),
        None,
        "{d1}"
    );
    // A router with interfaces cannot be deleted; without them it can, and its instances go.
    let (s, _) = c.n(
        "DELETE",
        &format!("/v2.0/routers/{}", g.router),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 409);
    let fips = ok(c.n("GET", "/v2.0/floatingips", Some(DEMO), None), "fips");
    for f in fips["floatingips"].as_array().unwrap() {
        ok(
            c.n(
                "DELETE",
                &format!("/v2.0/floatingips/{}", f["id"].as_str().unwrap()),
                Some(DEMO),
                None,
            ),
            "delete fip",
        );
    }
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{}/remove_router_interface", g.router),
            Some(DEMO),
            Some(&json!({"subnet_id": g.subnet1})),
        ),
        "remove",
    );
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{}", g.router),
            Some(DEMO),
            Some(&json!({"router": {"external_gateway_info": {}}})),
        ),
        "clear gw",
    );
    let (s, _) = c.n(
        "DELETE",
        &format!("/v2.0/routers/{}", g.router),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 204);
    std::thread::sleep(Duration::from_millis(500));
    for n in ["node1", "node2"] {
        let d = desired(&c, n);
        assert_eq!(d["state"]["routers"], json!({}), "{d}");
    }
    // The project's bridge network is released with its last router (asynchronously: the
    // realizer does it).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let nets = ok(c.n("GET", "/v2.0/networks", Some(ADMIN), None), "networks");
        let left = nets["networks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"].as_str().unwrap_or("").starts_with("bridge-net-"));
        if !left {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bridge network not released: {nets}\n{}",
            c.log.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_no_drift(&c);
}

#[test]
fn gateway_before_interfaces_and_external_network_first_give_the_same_state() {
    let c = Controller::start();
    let g = play(&c, true);
    check_guide(&c, &g);
    assert_no_drift(&c);
}

/// Every leg in the published states takes its MAC from the port backing it, as the admin's
/// port list of the router shows them: the interface port (primary legs), the gateway port,
/// the bridge-IP port of the instance's pod and the leg-IP port (a stretched network outside
/// its home pod). So the store's MAC uniqueness covers every leg; none is derived from ids.
#[test]
fn every_legs_mac_is_its_ports_mac() {
    let c = Controller::start();
    let g = play(&c, false);
    // net3: a VLAN network on `bridge` with VMs in both pods, stretched; RegionOne is the
    // router's home on it, RegionTwo's instance gets a leg-IP port.
    let n = ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(ADMIN),
            Some(&json!({"network": {"name": "net3", "project_id": "demo",
                "provider:network_type": "vlan", "provider:physical_network": "bridge"}})),
        ),
        "net3",
    );
    let net3 = n["network"]["id"].as_str().unwrap().to_string();
    let s = ok(
        c.n(
            "POST",
            "/v2.0/subnets",
            Some(DEMO),
            Some(&json!({"subnet": {"network_id": net3, "ip_version": 4, "cidr": "10.0.3.0/24"}})),
        ),
        "subnet3",
    );
    let sub3 = s["subnet"]["id"].as_str().unwrap().to_string();
    vm_port(&c, &net3, "node1");
    vm_port(&c, &net3, "node2");
    iface(&c, &g.router, &sub3);

    let has_net3 = |node: &str| {
        desired(&c, node)["state"]["routers"][&g.router]["legs"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["network_id"] == json!(net3)))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(has_net3("node1") && has_net3("node2")) {
        assert!(Instant::now() < deadline, "no net3 legs");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ports = ok(
        c.n(
            "GET",
            &format!("/v2.0/ports?device_id={}", g.router),
            Some(ADMIN),
            None,
        ),
        "router's ports",
    )["ports"]
        .as_array()
        .unwrap()
        .clone();
    let mut backed = std::collections::BTreeSet::new();
    for (node, pod) in [("node1", "RegionOne"), ("node2", "RegionTwo")] {
        let d = desired(&c, node);
        let legs = d["state"]["routers"][&g.router]["legs"].as_array().unwrap();
        let mut macs = std::collections::BTreeSet::new();
        for l in legs {
            let addr = l["address"].as_str().unwrap().split('/').next().unwrap();
            let owners: &[&str] = match l["kind"].as_str().unwrap() {
                "bridge" => &["network:router_bridge"],
                "gateway" => &["network:router_gateway"],
                _ => &["network:router_interface", "network:router_leg"],
            };
            let port = ports
                .iter()
                .find(|p| {
                    owners.contains(&p["device_owner"].as_str().unwrap())
                        && p["fixed_ips"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|f| f["ip_address"] == addr)
                        // A bridge-IP or leg-IP port is its pod's.
                        && (p["device_owner"] == "network:router_interface"
                            || p["device_owner"] == "network:router_gateway"
                            || p["name"] == pod)
                })
                .unwrap_or_else(|| panic!("{node}: no port backs {l} among {ports:?}"));
            assert_eq!(l["mac"], port["mac_address"], "{node}: {l} vs {port}");
            assert!(macs.insert(l["mac"].to_string()), "{node}: MAC twice: {d}");
            backed.insert(port["device_owner"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        backed.into_iter().collect::<Vec<_>>(),
        [
            "network:router_bridge",
            "network:router_gateway",
            "network:router_interface",
            "network:router_leg"
        ],
        "every kind of backing port is checked"
    );
    assert!(!c.log_has_5xx());
    assert_no_drift(&c);
}

#[test]
fn the_long_poll_answers_on_change_and_times_out_with_204() {
    let c = Controller::start();
    add_agent_tokens(&c);
    // Before the pod exists the agent is told 404 (and waits).
    assert_eq!(
        register(&c, &agent("node1"), "node1", "RegionOne", false).0,
        404
    );
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "register",
    );
    let rev = desired(&c, "node1")["revision"].as_u64().unwrap();
    let t0 = Instant::now();
    let (s, _) = c.t(
        "GET",
        &format!("/v1.0/agents/node1/desired?since={rev}&timeout=2"),
        Some(&agent("node1")),
        None,
    );
    assert_eq!(s, 204);
    assert!(t0.elapsed() >= Duration::from_millis(1900));
    // A change while waiting answers at once.
    let (net, _) = net_subnet(&c, "net1", "10.0.1.0/24");
    let tricircle = c.tricircle;
    let waiter = std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = common::request(
            tricircle,
            "GET",
            &format!("/v1.0/agents/node1/desired?since={rev}&timeout=30"),
            Some("agenttok-node1"),
            None,
        );
        (r, t0.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    vm_port(&c, &net, "node1");
    let ((s, body), took) = waiter.join().unwrap();
    assert_eq!(s, 200, "{body}\n{}", c.log.lock().unwrap().join("\n"));
    assert!(body["revision"].as_u64().unwrap() > rev);
    assert!(
        took < Duration::from_secs(10),
        "answered on change, not on timeout: {took:?}"
    );
    assert_no_drift(&c);
}

#[test]
fn status_reports_activate_ports_and_teach_bindings_and_agents_see_only_their_nodes() {
    let c = Controller::start();
    add_agent_tokens(&c);
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "register",
    );
    let (net, _) = net_subnet(&c, "net1", "10.0.1.0/24");
    let (bound, _) = vm_port(&c, &net, "node1");
    // A port nobody bound, plugged on node1 (the agent saw its iface-id).
    let p = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(DEMO),
            Some(&json!({"port": {"network_id": net}})),
        ),
        "port",
    );
    let unbound = p["port"]["id"].as_str().unwrap().to_string();
    let report = json!({"node": "node1", "revision_applied": 1,
        "ports": [{"port_id": bound, "status": "ACTIVE", "host": "node1"},
                  {"port_id": unbound, "status": "DOWN", "host": "node1"}],
        "routers": [], "probes": [], "errors": []});
    let (s, b) = c.t(
        "PUT",
        "/v1.0/agents/node1/status",
        Some(&agent("node1")),
        Some(&report),
    );
    assert_eq!(s, 204, "{b}");
    let shown = ok(
        c.n("GET", &format!("/v2.0/ports/{bound}"), Some(ADMIN), None),
        "port",
    );
    assert_eq!(shown["port"]["status"], "ACTIVE");
    let learned = ok(
        c.n("GET", &format!("/v2.0/ports/{unbound}"), Some(ADMIN), None),
        "port",
    );
    assert_eq!(learned["port"]["binding:host_id"], "node1", "{learned}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !desired(&c, "node1")["state"]["ports"][&unbound].is_object() {
        assert!(
            Instant::now() < deadline,
            "the learned port never reached node1's state"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another node's credential does not see node1, nor does an agent token bound to no
    // node; a member may not use the agent API.
    for other in [agent("node2"), AGENT.to_string(), AGENT2.to_string()] {
        let (s, _) = c.t(
            "GET",
            "/v1.0/agents/node1/desired?since=0",
            Some(&other),
            None,
        );
        assert_eq!(s, 403, "{other}");
    }
    let (s, _) = c.t(
        "GET",
        "/v1.0/agents/node1/desired?since=0",
        Some(DEMO),
        None,
    );
    assert_eq!(s, 403);
    let (s, _) = c.t(
        "PUT",
        "/v1.0/agents/node1/status",
        Some(&agent("node1")),
        Some(&json!({"node": "node9"})),
    );
    assert_eq!(s, 400);
    let listed = ok(c.t("GET", "/v1.0/agents", Some(ADMIN), None), "agents");
    assert_eq!(listed["agents"][0]["revision_applied"], 1);
    // A pod whose node still has bound ports cannot be deleted.
    let pods = ok(c.t("GET", "/v1.0/pods", Some(ADMIN), None), "pods");
    let r1 = pods["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["region_name"] == "RegionOne")
        .unwrap()["pod_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, body) = c.t("DELETE", &format!("/v1.0/pods/{r1}"), Some(ADMIN), None);
    assert_eq!(s, 409, "{body}");
    assert!(body.to_string().contains("node1"), "{body}");
    assert_no_drift(&c);
}

#[test]
fn a_floating_ip_on_another_projects_port_is_refused_and_nothing_is_left() {
    let c = Controller::start();
    let g = play(&c, false);
    let (onet, _) = net_subnet_as(&c, OTHER, "o", "10.9.0.0/24");
    let op = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(OTHER),
            Some(&json!({"port": {"network_id": onet}})),
        ),
        "port",
    );
    let oport = op["port"]["id"].as_str().unwrap().to_string();
    let before = ok(c.n("GET", "/v2.0/floatingips", Some(ADMIN), None), "fips")["floatingips"]
        .as_array()
        .unwrap()
        .len();
    let (s, body) = c.n(
        "POST",
        "/v2.0/floatingips",
        Some(DEMO),
        Some(&json!({"floatingip": {"floating_network_id": g.ext, "port_id": oport}})),
    );
    assert!(s == 404 || s == 400, "{s} {body}");
    let (s, body) = c.n("POST", "/v2.0/floatingips", Some(ADMIN), Some(&json!({"floatingip": {"floating_network_id": g.ext, "port_id": oport, "project_id": "demo"}})));
    assert!(
        (400..500).contains(&s),
        "another project's port: {s} {body}"
    );
    let after = ok(c.n("GET", "/v2.0/floatingips", Some(ADMIN), None), "fips")["floatingips"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "no half-made floating IP");
    // A FIP on a non-external network, a bad router request: 400.
    let (s, _) = c.n(
        "POST",
        "/v2.0/floatingips",
        Some(DEMO),
        Some(&json!({"floatingip": {"floating_network_id": onet}})),
    );
    assert!(s == 400 || s == 404);
    let (s, _) = c.n(
        "PUT",
        &format!("/v2.0/routers/{}/add_router_interface", g.router),
        Some(DEMO),
        Some(&json!({})),
    );
    assert_eq!(s, 400);
    let (s, _) = c.n(
        "PUT",
        &format!("/v2.0/routers/{}", g.router),
        Some(DEMO),
        Some(&json!({"router": {"routes": [{"destination": "nope", "nexthop": "10.0.1.5"}]}})),
    );
    assert_eq!(s, 400);
    assert_no_drift(&c);
}

#[test]
fn the_openstack_cli_drives_routers_and_floating_ips() {
    let c = Controller::start();
    add_agent_tokens(&c);
    pods(&c);
    let (net1, _) = net_subnet(&c, "net1", "10.0.1.0/24");
    let (port, _) = vm_port(&c, &net1, "node1");
    ext_net(&c);
    let r = openstack_json(&c, DEMO, &["router", "create", "router"]);
    assert_eq!(r["name"], "router");
    let (okc, _, err) = openstack(&c, DEMO, &["router", "add", "subnet", "router", "s-net1"]);
    assert!(okc, "{err}");
    let (okc, _, err) = openstack(
        &c,
        DEMO,
        &["router", "set", "--external-gateway", "ext-net", "router"],
    );
    assert!(okc, "{err}");
    let shown = openstack_json(&c, DEMO, &["router", "show", "router"]);
    let gw = shown["external_gateway_info"].to_string();
    assert!(gw.contains("163.3.124."), "{shown}");
    let f = openstack_json(&c, DEMO, &["floating", "ip", "create", "ext-net"]);
    let addr = f["floating_ip_address"].as_str().unwrap().to_string();
    let (okc, _, err) = openstack(&c, DEMO, &["floating", "ip", "set", "--port", &port, &addr]);
    assert!(okc, "{err}");
    let f = openstack_json(&c, DEMO, &["floating", "ip", "show", &addr]);
    assert_eq!(f["port_id"], json!(port));
    let (okc, _, err) = openstack(&c, DEMO, &["floating", "ip", "unset", "--port", &addr]);
    assert!(okc, "{err}");
    let (okc, _, err) = openstack(&c, DEMO, &["floating", "ip", "delete", &addr]);
    assert!(okc, "{err}");
    let (okc, _, err) = openstack(
        &c,
        DEMO,
        &["router", "unset", "--external-gateway", "router"],
    );
    assert!(okc, "{err}");
    let (okc, _, err) = openstack(
        &c,
        DEMO,
        &["router", "remove", "subnet", "router", "s-net1"],
    );
    assert!(okc, "{err}");
    let (okc, _, err) = openstack(&c, DEMO, &["router", "delete", "router"]);
    assert!(okc, "{err}");
    let list = openstack_json(&c, DEMO, &["router", "list"]);
    assert_eq!(list, json!([]));
    assert!(!c.log_has_5xx());
    assert_no_drift(&c);
}

#[test]
fn jobs_run_to_success_when_the_nodes_report_and_list_as_tricircle() {
    let c = Controller::start();
    let g = play(&c, false);
    // Play the agents' part: report the published revision with the router ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for n in ["node1", "node2"] {
            let d = desired(&c, n);
            let rev = d["revision"].as_u64().unwrap();
            let report = json!({"node": n, "revision_applied": rev, "ports": [],
                "routers": [{"router_id": g.router, "state": "ready"}], "probes": [], "errors": []});
            assert_eq!(
                c.t(
                    "PUT",
                    &format!("/v1.0/agents/{n}/status"),
                    Some(&agent(n)),
                    Some(&report)
                )
                .0,
                204
            );
        }
        let jobs = ok(c.t("GET", "/v1.0/jobs", Some(ADMIN), None), "jobs");
        let job = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["resource"]["router_id"] == json!(g.router))
            .cloned()
            .expect("a job for the router");
        if job["status"] == "SUCCESS" {
            assert_eq!(job["type"], "router_setup");
            let one = ok(
                c.t(
                    "GET",
                    &format!("/v1.0/jobs/{}", job["id"].as_str().unwrap()),
                    Some(ADMIN),
                    None,
                ),
                "job",
            );
            assert_eq!(one["job"]["status"], "SUCCESS");
            let r = ok(
                c.n(
                    "GET",
                    &format!("/v2.0/routers/{}", g.router),
                    Some(DEMO),
                    None,
                ),
                "router",
            );
            assert_eq!(r["router"]["status"], "ACTIVE", "realized everywhere");
            let realized = ok(
                c.t(
                    "GET",
                    &format!("/v1.0/routers/{}/realized", g.router),
                    Some(DEMO),
                    None,
                ),
                "realized",
            );
            assert_eq!(realized["realized"], true);
            break;
        }
        assert!(Instant::now() < deadline, "job never succeeded: {job}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (s, _) = c.t("GET", "/v1.0/jobs", Some(DEMO), None);
    assert_eq!(s, 403, "jobs are admin only");
    // Prometheus metrics on the Tricircle port: requests by route and status, realization
    // runs, jobs by state.
    let (s, body) = common::request_raw(c.tricircle, "GET", "/metrics", None, None, &[]);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(s, 200, "{text}");
    assert!(
        text.contains(r#"route="/v2.0/routers/{id}/add_router_interface",status="200""#),
        "{text}"
    );
    assert!(
        text.contains(r#"crosspod_controller_jobs{status="SUCCESS"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"crosspod_controller_job_duration_seconds_count{type="router_setup",outcome="SUCCESS"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("crosspod_controller_realize_runs_total{outcome=\"ok\"}"),
        "{text}"
    );
    // One project, one bridge network: allocated once, by kind.
    assert!(
        text.contains(
            r#"crosspod_controller_allocations_total{action="allocate",kind="bridge_network",outcome="ok"} 1"#
        ),
        "{text}"
    );
    assert_no_drift(&c);
}
