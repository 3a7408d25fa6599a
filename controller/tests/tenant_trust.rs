//! Tenant trust (issue 13): each attack a member of a second project could try, through the
//! real API with two projects' tokens. `demo` is the victim (a router with an interface and a
//! gateway on the guide's external network), `other` the attacker.

mod common;

use common::guide::{agent, ext_net, net_subnet, net_subnet_as, ok, pods, register};
use common::{request_raw, Controller, Opts, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

/// The guide's topology for demo: pods, two nodes, ext-net, net1 with a router whose gateway
/// is on ext-net: (router id, ext-net id, net1 id, subnet1 id).
fn victim(c: &Controller) -> (String, String, String, String) {
    pods(c);
    ok(
        register(c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(c, &agent("node2"), "node2", "RegionTwo", true),
        "node2",
    );
    let ext = ext_net(c);
    let (net, sub) = net_subnet(c, "net1", "10.0.1.0/24");
    let r = ok(
        c.n(
            "POST",
            "/v2.0/routers",
            Some(DEMO),
            Some(&json!({"router": {"name": "R", "external_gateway_info": {"network_id": ext}}})),
        ),
        "router",
    );
    let rid = r["router"]["id"].as_str().unwrap().to_string();
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sub})),
        ),
        "interface",
    );
    (rid, ext, net, sub)
}

/// A controller whose tokens file also holds the agent token.
fn start(extra: &[&str]) -> Controller {
    Controller::start_opts(&Opts {
        extra,
        tokens: &["agenttok service agent"],
        ..Opts::default()
    })
}

fn neutron_type(v: &Value) -> &str {
    v["NeutronError"]["type"].as_str().unwrap_or_default()
}

/// The ports of a router, as the admin sees them.
fn router_ports(c: &Controller, router: &str) -> Vec<Value> {
    let v = ok(
        c.n(
            "GET",
            &format!("/v2.0/ports?device_id={router}"),
            Some(ADMIN),
            None,
        ),
        "ports",
    );
    v["ports"].as_array().cloned().unwrap_or_default()
}

fn own_router(c: &Controller, token: &str, body: Value) -> (u16, Value) {
    c.n(
        "POST",
        "/v2.0/routers",
        Some(token),
        Some(&json!({"router": body})),
    )
}

#[test]
fn a_member_cannot_take_the_upstream_address() {
    let c = start(&[]);
    let (_, ext, _, _) = victim(&c);
    // On create and on update, external_fixed_ips is the admin's.
    let gw = json!({"network_id": ext, "external_fixed_ips": [{"ip_address": "163.3.124.1"}]});
    let (s, v) = own_router(
        &c,
        OTHER,
        json!({"name": "evil", "external_gateway_info": gw}),
    );
    assert_eq!(s, 403, "{v}");
    assert_eq!(neutron_type(&v), "PolicyNotAuthorized");
    let r = ok(
        own_router(&c, OTHER, json!({"name": "evil"})),
        "plain router",
    );
    let rid = r["router"]["id"].as_str().unwrap();
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/routers/{rid}"),
        Some(OTHER),
        Some(&json!({"router": {"external_gateway_info": gw}})),
    );
    assert_eq!(s, 403, "{v}");
    // A gateway without a chosen address is fine, and does not get the upstream address.
    let v = ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{rid}"),
            Some(OTHER),
            Some(&json!({"router": {"external_gateway_info": {"network_id": ext}}})),
        ),
        "gateway",
    );
    let ips = &v["router"]["external_gateway_info"]["external_fixed_ips"];
    assert_ne!(ips[0]["ip_address"], "163.3.124.1", "{v}");
    // Choosing a floating IP address is the admin's too.
    let (s, v) = c.n(
        "POST",
        "/v2.0/floatingips",
        Some(OTHER),
        Some(&json!({"floatingip": {"floating_network_id": ext, "floating_ip_address": "163.3.124.1"}})),
    );
    assert_eq!(s, 403, "{v}");
    assert!(
        !c.n("GET", "/v2.0/ports", Some(ADMIN), None)
            .1
            .to_string()
            .contains("\"163.3.124.1\""),
        "nobody holds the upstream address"
    );
    // The admin may choose both.
    let v = ok(
        c.n(
            "POST",
            "/v2.0/floatingips",
            Some(ADMIN),
            Some(&json!({"floatingip": {"floating_network_id": ext, "floating_ip_address": "163.3.124.77"}})),
        ),
        "admin fip",
    );
    assert_eq!(v["floatingip"]["floating_ip_address"], "163.3.124.77");
}

#[test]
fn a_member_cannot_plug_into_another_projects_router() {
    let c = start(&[]);
    let (rid, _, net1, _) = victim(&c);
    let before = router_ports(&c, &rid).len();
    let (onet, _) = net_subnet_as(&c, OTHER, "o", "10.9.0.0/24");
    for owner in ["network:router_interface", "compute:nova", ""] {
        let (s, v) = c.n(
            "POST",
            "/v2.0/ports",
            Some(OTHER),
            Some(&json!({"port": {"network_id": onet, "device_owner": owner, "device_id": rid}})),
        );
        assert_eq!(s, 409, "{owner}: {v}");
        assert_eq!(neutron_type(&v), "DeviceIDNotOwnedByTenant");
    }
    // Nor by updating a port of its own.
    let p = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(OTHER),
            Some(&json!({"port": {"network_id": onet}})),
        ),
        "own port",
    );
    let pid = p["port"]["id"].as_str().unwrap();
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/ports/{pid}"),
        Some(OTHER),
        Some(&json!({"port": {"device_id": rid}})),
    );
    assert_eq!(s, 409, "{v}");
    // Nor with add_router_interface on someone else's router (hidden: 404).
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        Some(OTHER),
        Some(&json!({"port_id": pid})),
    );
    assert_eq!(s, 404, "{v}");
    assert_eq!(
        router_ports(&c, &rid).len(),
        before,
        "the router is unchanged"
    );
    // Even the admin makes interfaces only through add_router_interface.
    let (s, v) = c.n(
        "POST",
        "/v2.0/ports",
        Some(ADMIN),
        Some(&json!({"port": {"network_id": net1, "device_owner": "network:router_interface", "device_id": rid}})),
    );
    assert_eq!(s, 400, "{v}");
    // A router's own ports cannot be deleted through the port API.
    let iface = router_ports(&c, &rid)
        .into_iter()
        .find(|p| p["device_owner"] == "network:router_interface")
        .expect("interface port");
    let (s, v) = c.n(
        "DELETE",
        &format!("/v2.0/ports/{}", iface["id"].as_str().unwrap()),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(neutron_type(&v), "ServicePortInUse");
}

#[test]
fn shared_networks_give_members_a_subnet_not_an_address() {
    let c = start(&[]);
    let _ = victim(&c);
    let n = ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(ADMIN),
            Some(&json!({"network": {"name": "shared", "shared": true}})),
        ),
        "shared net",
    );
    let nid = n["network"]["id"].as_str().unwrap().to_string();
    let s = ok(
        c.n(
            "POST",
            "/v2.0/subnets",
            Some(ADMIN),
            Some(&json!({"subnet": {"network_id": nid, "cidr": "10.50.0.0/24", "ip_version": 4}})),
        ),
        "shared subnet",
    );
    let sid = s["subnet"]["id"].as_str().unwrap().to_string();
    let r = ok(own_router(&c, OTHER, json!({"name": "o"})), "router");
    let rid = r["router"]["id"].as_str().unwrap();
    let (st, v) = c.n(
        "PUT",
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        Some(OTHER),
        Some(&json!({"subnet_id": sid})),
    );
    assert_eq!(st, 400, "another project's shared subnet: {v}");
    for (what, port, action) in [
        (
            "the gateway",
            json!({"network_id": nid, "fixed_ips": [{"ip_address": "10.50.0.1"}]}),
            "create_port:fixed_ips:ip_address",
        ),
        (
            "an address",
            json!({"network_id": nid, "fixed_ips": [{"subnet_id": sid, "ip_address": "10.50.0.9"}]}),
            "create_port:fixed_ips:ip_address",
        ),
        (
            "a MAC",
            json!({"network_id": nid, "mac_address": "fa:16:3e:00:00:01"}),
            "create_port:mac_address",
        ),
        (
            "a network device",
            json!({"network_id": nid, "device_owner": "network:dhcp"}),
            "create_port:device_owner",
        ),
        (
            "no port security",
            json!({"network_id": nid, "port_security_enabled": false}),
            "create_port:port_security_enabled",
        ),
    ] {
        let (st, v) = c.n(
            "POST",
            "/v2.0/ports",
            Some(OTHER),
            Some(&json!({"port": port})),
        );
        assert_eq!(st, 403, "{what}: {v}");
        assert!(v.to_string().contains(action), "{what}: {v}");
    }
    // Naming the subnet alone is allowed, and gets an address from the pool.
    let v = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(OTHER),
            Some(&json!({"port": {"network_id": nid, "fixed_ips": [{"subnet_id": sid}]}})),
        ),
        "subnet only",
    );
    assert_ne!(v["port"]["fixed_ips"][0]["ip_address"], "10.50.0.1");
    // The network's owner may choose.
    ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(ADMIN),
            Some(&json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": "10.50.0.9"}]}})),
        ),
        "owner chooses",
    );
}

#[test]
fn a_router_holds_no_overlapping_subnets_and_routes_need_a_connected_hop() {
    let c = start(&[]);
    let (rid, _, _, _) = victim(&c);
    let (_, sub2) = net_subnet(&c, "net2", "10.0.1.0/25");
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/routers/{rid}/add_router_interface"),
        Some(DEMO),
        Some(&json!({"subnet_id": sub2})),
    );
    assert_eq!(s, 400, "overlapping subnet: {v}");
    let route = |hop: &str| json!({"router": {"routes": [{"destination": "192.168.0.0/24", "nexthop": hop}]}});
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/routers/{rid}"),
        Some(DEMO),
        Some(&route("10.77.0.5")),
    );
    assert_eq!(s, 400, "unconnected next hop: {v}");
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{rid}"),
            Some(DEMO),
            Some(&route("10.0.1.5")),
        ),
        "connected next hop",
    );
    let many: Vec<Value> = (0..31)
        .map(|i| json!({"destination": format!("192.168.{i}.0/24"), "nexthop": "10.0.1.5"}))
        .collect();
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/routers/{rid}"),
        Some(DEMO),
        Some(&json!({"router": {"routes": many}})),
    );
    assert_eq!(s, 400, "31 routes: {v}");
}

#[test]
fn a_bad_gateway_address_leaves_no_router_behind() {
    let c = start(&[]);
    let (_, ext, _, _) = victim(&c);
    let before = ok(c.n("GET", "/v2.0/routers", Some(ADMIN), None), "list")["routers"]
        .as_array()
        .unwrap()
        .len();
    for ip in ["10.1.1.1", "163.3.124.0"] {
        let (s, v) = own_router(
            &c,
            ADMIN,
            json!({"name": "bad", "external_gateway_info": {"network_id": ext, "external_fixed_ips": [{"ip_address": ip}]}}),
        );
        assert_eq!(s, 400, "{ip}: {v}");
    }
    let after = ok(c.n("GET", "/v2.0/routers", Some(ADMIN), None), "list")["routers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "no half-made router");
}

#[test]
fn updates_change_only_what_they_name_and_honour_if_match() {
    let c = start(&[]);
    let (rid, _, _, _) = victim(&c);
    let r = ok(
        c.n("GET", &format!("/v2.0/routers/{rid}"), Some(DEMO), None),
        "show",
    );
    let rev = r["router"]["revision_number"].as_i64().unwrap();
    let put = |rev: i64, name: &str| {
        let body = json!({"router": {"name": name}}).to_string();
        let h = format!("revision_number={rev}");
        request_raw(
            c.neutron,
            "PUT",
            &format!("/v2.0/routers/{rid}"),
            Some(DEMO),
            Some(body.as_bytes()),
            &[("If-Match", h.as_str())],
        )
    };
    assert_eq!(put(rev + 5, "stale").0, 412);
    assert_eq!(put(rev, "fresh").0, 200);
    assert_eq!(put(rev, "again").0, 412, "the revision moved");
    let r = ok(
        c.n("GET", &format!("/v2.0/routers/{rid}"), Some(DEMO), None),
        "show",
    );
    assert_eq!(r["router"]["name"], "fresh");
    assert!(
        r["router"]["external_gateway_info"]["network_id"].is_string(),
        "the gateway is untouched by a rename"
    );
}

#[test]
fn an_exhausted_bridge_pool_is_a_409_and_changes_nothing() {
    // One /24 of bridge addresses: the first project's router takes it.
    let c = start(&["--bridge-cidr", "100.0.0.0/24"]);
    let _ = victim(&c);
    let before = ok(c.n("GET", "/v2.0/routers", Some(ADMIN), None), "list")["routers"]
        .as_array()
        .unwrap()
        .len();
    let (s, v) = own_router(&c, OTHER, json!({"name": "second"}));
    assert_eq!(s, 409, "{v}");
    assert!(v.to_string().contains("bridge"), "names the pool: {v}");
    let after = ok(c.n("GET", "/v2.0/routers", Some(ADMIN), None), "list")["routers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing changed");
    // A router local to one pod needs no bridge network.
    ok(
        own_router(
            &c,
            OTHER,
            json!({"name": "local", "availability_zone_hints": ["RegionOne"]}),
        ),
        "local router",
    );
}

#[test]
fn a_full_ipv6_pool_at_the_end_of_the_space_is_a_409_not_a_wrap() {
    let c = start(&[]);
    let n = ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(DEMO),
            Some(&json!({"network": {"name": "v6"}})),
        ),
        "net",
    );
    let nid = n["network"]["id"].as_str().unwrap().to_string();
    ok(
        c.n("POST", "/v2.0/subnets", Some(DEMO), Some(&json!({"subnet": {"network_id": nid, "ip_version": 6, "cidr": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"}}))),
        "subnet",
    );
    let mut seen = std::collections::HashSet::new();
    let status = loop {
        let (s, v) = c.n(
            "POST",
            "/v2.0/ports",
            Some(DEMO),
            Some(&json!({"port": {"network_id": nid}})),
        );
        if s != 201 {
            break (s, v);
        }
        let ip = v["port"]["fixed_ips"][0]["ip_address"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            ip.starts_with("ffff:"),
            "an address inside the subnet: {ip}"
        );
        assert!(seen.insert(ip), "no address twice");
        assert!(seen.len() <= 14, "the pool holds 14 addresses");
    };
    assert_eq!(seen.len(), 14);
    assert_eq!(status.0, 409, "{}", status.1);
    assert!(!c.log_has_5xx());
}

#[test]
fn an_allocation_that_fails_later_shows_as_router_error_job_fail_and_realized_reason() {
    let c = start(&[]);
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(&c, &agent("node2"), "node2", "RegionTwo", false),
        "node2",
    );
    // A VLAN network that may stretch (no hints), with a /29: gateway .1 and five addresses.
    let n = ok(
        c.n("POST", "/v2.0/networks", Some(ADMIN), Some(&json!({"network": {"name": "small", "project_id": "demo", "provider:network_type": "vlan"}}))),
        "network",
    );
    let net = n["network"]["id"].as_str().unwrap().to_string();
    let s = ok(
        c.n(
            "POST",
            "/v2.0/subnets",
            Some(DEMO),
            Some(&json!({"subnet": {"network_id": net, "cidr": "10.8.0.0/29", "ip_version": 4}})),
        ),
        "subnet",
    );
    let sub = s["subnet"]["id"].as_str().unwrap().to_string();
    let r = ok(own_router(&c, DEMO, json!({"name": "R"})), "router");
    let rid = r["router"]["id"].as_str().unwrap().to_string();
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{rid}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sub})),
        ),
        "interface",
    );
    let mut fillers = Vec::new();
    for _ in 0..5 {
        let p = ok(
            c.n(
                "POST",
                "/v2.0/ports",
                Some(DEMO),
                Some(&json!({"port": {"network_id": net}})),
            ),
            "filler",
        );
        fillers.push(p["port"]["id"].as_str().unwrap().to_string());
    }
    // Binding ports in both pods stretches the network: the second pod's router instance
    // needs a leg IP the full subnet cannot give. The binding itself succeeds; the failure
    // shows where Neutron shows failures.
    for (p, host) in [(&fillers[0], "node1"), (&fillers[1], "node2")] {
        ok(
            c.n(
                "PUT",
                &format!("/v2.0/ports/{p}"),
                Some(ADMIN),
                Some(&json!({"port": {"binding:host_id": host}})),
            ),
            "bind",
        );
    }
    let realized = |timeout: u32| {
        ok(
            c.t(
                "GET",
                &format!("/v1.0/routers/{rid}/realized?timeout={timeout}"),
                Some(DEMO),
                None,
            ),
            "realized",
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let v = loop {
        let v = realized(1);
        if v["error"].is_string() || std::time::Instant::now() > deadline {
            break v;
        }
    };
    let reason = v["error"].as_str().unwrap_or_default().to_string();
    assert_eq!(v["realized"], false, "{v}");
    assert!(
        reason.contains("LegIp"),
        "the reason names the allocation: {v}"
    );
    let r = ok(
        c.n("GET", &format!("/v2.0/routers/{rid}"), Some(DEMO), None),
        "show",
    );
    assert_eq!(r["router"]["status"], "ERROR", "{r}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let job = loop {
        let jobs = ok(c.t("GET", "/v1.0/jobs", Some(ADMIN), None), "jobs");
        let job = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["resource"]["router_id"] == rid.as_str())
            .cloned()
            .unwrap_or_default();
        if job["status"] == "FAIL" || std::time::Instant::now() > deadline {
            break job;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(job["status"], "FAIL", "{job}");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("LegIp"),
        "{job}"
    );
    // An address freed, the allocation succeeds and the reason goes.
    let (s, _) = c.n(
        "DELETE",
        &format!("/v2.0/ports/{}", fillers[4]),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 204);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = realized(1);
        if v["error"].is_null() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failure stays: {v}"
        );
    }
    assert!(!c.log_has_5xx());
}

#[test]
fn an_exhausted_pod_local_vlan_pool_is_a_409_and_changes_nothing() {
    // Two pod-local tags: two local networks placed in RegionOne take them.
    let c = start(&["--local-vlan-range", "100:101"]);
    pods(&c);
    let create = |name: &str| {
        c.n(
            "POST",
            "/v2.0/networks",
            Some(DEMO),
            Some(&json!({"network": {"name": name, "availability_zone_hints": ["RegionOne"]}})),
        )
    };
    ok(create("l1"), "first");
    ok(create("l2"), "second");
    let (s, v) = create("l3");
    assert_eq!(s, 409, "{v}");
    assert!(
        v.to_string().contains("pod-local VLAN"),
        "names the pool: {v}"
    );
    let nets = ok(
        c.n("GET", "/v2.0/networks?name=l3", Some(DEMO), None),
        "list",
    );
    assert_eq!(
        nets["networks"].as_array().unwrap().len(),
        0,
        "nothing made"
    );
    // Another pod has its own tags.
    ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(DEMO),
            Some(&json!({"network": {"name": "r2", "availability_zone_hints": ["RegionTwo"]}})),
        ),
        "other pod",
    );
}

#[test]
fn concurrent_updates_of_different_fields_both_stay() {
    let c = start(&[]);
    let (rid, _, _, _) = victim(&c);
    let path = format!("/v2.0/routers/{rid}");
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..25 {
                ok(
                    c.n(
                        "PUT",
                        &path,
                        Some(DEMO),
                        Some(&json!({"router": {"name": format!("name-{i}")}})),
                    ),
                    "rename",
                );
            }
        });
        s.spawn(|| {
            for i in 0..25 {
                ok(
                    c.n(
                        "PUT",
                        &path,
                        Some(ADMIN),
                        Some(&json!({"router": {"description": format!("desc-{i}")}})),
                    ),
                    "describe",
                );
            }
        });
    });
    let r = ok(c.n("GET", &path, Some(DEMO), None), "show");
    assert_eq!(r["router"]["name"], "name-24", "{r}");
    assert_eq!(r["router"]["description"], "desc-24", "{r}");
    assert!(!c.log_has_5xx());
}

#[test]
fn a_member_reaches_no_admin_view_nor_another_projects_routes() {
    let c = start(&[]);
    let (rid, _, net1, _) = victim(&c);
    let routes = |token| {
        ok(
            c.n("GET", &format!("/v2.0/routers/{rid}"), Some(token), None),
            "router",
        )["router"]["routes"]
            .clone()
    };
    let before = routes(DEMO);
    let body =
        json!({"router": {"routes": [{"destination": "192.168.66.0/24", "nexthop": "10.0.1.5"}]}});
    for action in ["add_extraroutes", "remove_extraroutes"] {
        let (s, v) = c.n(
            "PUT",
            &format!("/v2.0/routers/{rid}/{action}"),
            Some(OTHER),
            Some(&body),
        );
        assert_eq!(s, 404, "{action} on demo's router: {v}");
    }
    assert_eq!(routes(DEMO), before, "demo's routes unchanged");
    // The agents and the IP availability are the admin's view of everyone's objects: a
    // member's list is empty (Neutron filters a collection by policy) and one object is 404.
    let agents = ok(c.n("GET", "/v2.0/agents", Some(ADMIN), None), "agents");
    let agent_id = agents["agents"][0]["id"].as_str().unwrap().to_string();
    for (path, key) in [
        ("/v2.0/agents", "agents"),
        (
            "/v2.0/network-ip-availabilities",
            "network_ip_availabilities",
        ),
    ] {
        for token in [OTHER, DEMO] {
            let (s, v) = c.n("GET", path, Some(token), None);
            assert_eq!(s, 200, "GET {path}: {v}");
            assert_eq!(v[key], json!([]), "a member listed {path}: {v}");
        }
    }
    for (method, path) in [
        ("GET", format!("/v2.0/agents/{agent_id}")),
        ("PUT", format!("/v2.0/agents/{agent_id}")),
        ("DELETE", format!("/v2.0/agents/{agent_id}")),
        ("GET", format!("/v2.0/network-ip-availabilities/{net1}")),
    ] {
        for token in [OTHER, DEMO] {
            let body = json!({"agent": {"admin_state_up": false}});
            let (s, v) = c.n(
                method,
                &path,
                Some(token),
                (method == "PUT").then_some(&body),
            );
            assert_eq!(s, 404, "{method} {path}: {v}");
        }
    }
    let agents_after = ok(c.n("GET", "/v2.0/agents", Some(ADMIN), None), "agents");
    assert_eq!(
        agents_after["agents"].as_array().unwrap().len(),
        agents["agents"].as_array().unwrap().len()
    );
}
