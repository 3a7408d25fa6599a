//! DHCP on the real controller binary (SQLite and PostgreSQL): every (network, pod) where the
//! network is present gets one `network:dhcp` port with one address per DHCP-enabled IPv4
//! subnet (distinct from every other port's), released when the last DHCP subnet goes or DHCP
//! is disabled, crosspod's own (a user can neither delete, move nor make one; no quota counts
//! it), never in the way of deleting a subnet or a network; the published state of the pod's chosen node carries the server (per-pod router on
//! a stretched network, hosts split by pod, options, lease time from the flag); another
//! project's member can neither see nor delete it (also through the `openstack` CLI).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::guide::{agent, desired, net_subnet, ok, pods, register, vm_port};
use common::{openstack, openstack_json, Controller, Opts, PgDb, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

/// Polls `f` until it answers `Some`, for up to 30 s; fails naming `what`.
fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The DHCP ports of `net`, as the admin lists them, by pod (from the device id).
fn dhcp_ports(c: &Controller, net: &str) -> BTreeMap<String, Value> {
    let all = ok(
        c.n(
            "GET",
            &format!("/v2.0/ports?network_id={net}&device_owner=network:dhcp"),
            Some(ADMIN),
            None,
        ),
        "dhcp ports",
    );
    all["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let dev = p["device_id"].as_str().unwrap();
            let pod = dev
                .strip_prefix("dhcp-")
                .and_then(|d| d.strip_suffix(&format!("-{net}")))
                .unwrap_or_else(|| panic!("device id {dev} is not dhcp-<pod>-<network>"));
            (pod.to_string(), p.clone())
        })
        .collect()
}

/// subnet id → address of a port.
fn ips(p: &Value) -> BTreeMap<String, String> {
    p["fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["subnet_id"].as_str().unwrap().to_string(),
                f["ip_address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits until the DHCP ports of `net` are exactly one per pod in `pods`, each holding an
/// address on exactly `subnets`; returns them by pod.
fn wait_dhcp_ports(
    c: &Controller,
    net: &str,
    pods: &[&str],
    subnets: &[&str],
) -> BTreeMap<String, Value> {
    let want_pods: BTreeSet<String> = pods.iter().map(|p| p.to_string()).collect();
    let want_subs: BTreeSet<String> = subnets.iter().map(|s| s.to_string()).collect();
    wait(
        &format!("DHCP ports of {net} in {pods:?} on {subnets:?}"),
        || {
            let p = dhcp_ports(c, net);
            let ok = p.keys().cloned().collect::<BTreeSet<_>>() == want_pods
                && p.values()
                    .all(|p| ips(p).keys().cloned().collect::<BTreeSet<_>>() == want_subs);
            ok.then_some(p)
        },
    )
}

fn subnet(c: &Controller, net: &str, cidr: &str, dhcp: bool) -> String {
    ok(
        c.n(
            "POST",
            "/v2.0/subnets",
            Some(DEMO),
            Some(
                &json!({"subnet": {"network_id": net, "ip_version": 4, "cidr": cidr,
                "enable_dhcp": dhcp}}),
            ),
        ),
        "subnet",
    )["subnet"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn update_subnet(c: &Controller, id: &str, body: Value) {
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/subnets/{id}"),
            Some(DEMO),
            Some(&json!({ "subnet": body })),
        ),
        "update subnet",
    );
}

/// The DHCP server of `net` in `node`'s published state, once it satisfies `pred`.
fn server(c: &Controller, node: &str, net: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait(&format!("{node}'s DHCP server of {net}"), || {
        let d = desired(c, node);
        let s = d["state"]["dhcp"][net].clone();
        (!s.is_null() && pred(&s)).then_some(s)
    })
}

/// The DHCP server of `net` on whichever of `nodes` (one pod's) runs it, once it satisfies
/// `pred`: (node, server). Among equal nodes the planner's rendezvous order of the network
/// picks the node.
fn server_in(
    c: &Controller,
    nodes: &[&'static str],
    net: &str,
    pred: impl Fn(&Value) -> bool,
) -> (&'static str, Value) {
    wait(
        &format!("a DHCP server of {net} on one of {nodes:?}"),
        || {
            nodes.iter().find_map(|node| {
                let d = desired(c, node);
                let s = d["state"]["dhcp"][net].clone();
                (!s.is_null() && pred(&s)).then_some((*node, s))
            })
        },
    )
}

fn sub_of<'a>(server: &'a Value, subnet: &str) -> &'a Value {
    server["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subnet_id"] == subnet)
        .unwrap_or_else(|| panic!("no subnet {subnet} in {server}"))
}

fn host_ports(server: &Value) -> BTreeSet<String> {
    server["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["port_id"].as_str().unwrap().to_string())
        .collect()
}

/// A VM port of demo with an address on `subnet`, bound to `host` by the admin when given.
fn vm_on(c: &Controller, net: &str, subnet: &str, host: Option<&str>) -> String {
    let p = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(DEMO),
            Some(
                &json!({"port": {"network_id": net, "device_owner": "compute:nova",
                "fixed_ips": [{"subnet_id": subnet}]}}),
            ),
        ),
        "port",
    );
    let id = p["port"]["id"].as_str().unwrap().to_string();
    if let Some(h) = host {
        ok(
            c.n(
                "PUT",
                &format!("/v2.0/ports/{id}"),
                Some(ADMIN),
                Some(&json!({"port": {"binding:host_id": h}})),
            ),
            "bind",
        );
    }
    id
}

fn assert_no_drift(c: &Controller) {
    let r = ok(c.t("POST", "/v1.0/resync", Some(ADMIN), None), "resync");
    assert_eq!(r["resync"]["drift"], false, "drift: {r}");
}

fn scenario(db: Option<&str>) {
    let c = Controller::start_opts(&Opts {
        database: db,
        ..Opts::default()
    });
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(&c, &agent("node2"), "node2", "RegionTwo", false),
        "node2",
    );
    ok(
        register(&c, &agent("node3"), "node3", "RegionOne", false),
        "node3",
    );

    // A stretched VLAN network of demo with two DHCP subnets and one without DHCP.
    let n = ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(ADMIN),
            Some(
                &json!({"network": {"name": "net3", "project_id": "demo", "mtu": 1450,
                "provider:network_type": "vlan", "provider:physical_network": "bridge"}}),
            ),
        ),
        "net3",
    );
    let net3 = n["network"]["id"].as_str().unwrap().to_string();
    let vlan = n["network"]["provider:segmentation_id"].as_u64().unwrap();
    let sa = subnet(&c, &net3, "10.0.3.0/24", true);
    let sb = subnet(&c, &net3, "10.0.4.0/24", true);
    let sn = subnet(&c, &net3, "10.0.5.0/24", false);
    // Addresses on `sa` (without fixed IPs, the store takes the first subnet by creation
    // time, which may be `sn`: created in the same second, their order is by id).
    let (vm1, vm2) = (
        vm_on(&c, &net3, &sa, Some("node1")),
        vm_on(&c, &net3, &sa, Some("node2")),
    );
    // Unbound: served by the primary pod (RegionOne, the lowest present).
    let vm3 = vm_on(&c, &net3, &sa, None);

    let ports = wait_dhcp_ports(&c, &net3, &["RegionOne", "RegionTwo"], &[&sa, &sb]);
    // Every address on the network is held once: the DHCP ports' never collide with each
    // other's or a VM's.
    let all = ok(
        c.n(
            "GET",
            &format!("/v2.0/ports?network_id={net3}"),
            Some(ADMIN),
            None,
        ),
        "ports",
    );
    let mut seen = BTreeSet::new();
    for p in all["ports"].as_array().unwrap() {
        for ip in ips(p).values() {
            assert!(seen.insert(ip.clone()), "{ip} held twice: {all}");
        }
    }
    for p in ports.values() {
        assert_eq!(p["project_id"], "demo", "{p}");
        assert_eq!(p["binding:host_id"], "", "a DHCP port is not bound: {p}");
    }

    // The real CLI lists them for the network's owner, and not for another project.
    let listed = openstack_json(
        &c,
        DEMO,
        &[
            "port",
            "list",
            "--device-owner",
            "network:dhcp",
            "--network",
            &net3,
        ],
    );
    let listed: BTreeSet<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ID"].as_str().unwrap().to_string())
        .collect();
    let ids: BTreeSet<String> = ports
        .values()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids);
    let theirs = openstack_json(
        &c,
        OTHER,
        &["port", "list", "--device-owner", "network:dhcp"],
    );
    assert_eq!(theirs, json!([]), "another project sees demo's DHCP ports");
    for id in &ids {
        let (s, _) = c.n("GET", &format!("/v2.0/ports/{id}"), Some(OTHER), None);
        assert_eq!(s, 404, "another project's member reads a DHCP port");
        let (s, _) = c.n("DELETE", &format!("/v2.0/ports/{id}"), Some(OTHER), None);
        assert_eq!(s, 404, "another project's member deletes a DHCP port");
        let (ok_cli, _, err) = openstack(&c, OTHER, &["port", "delete", id]);
        assert!(!ok_cli, "the CLI deleted another project's DHCP port");
        assert!(
            err.contains("No Port found") || err.contains("404"),
            "{err}"
        );
    }

    // Each pod's chosen node (RegionOne: node1 or node3, by the rendezvous order) runs the
    // server: its own port, the network's MTU, the default lease, the DHCP subnets only, hosts
    // split by pod.
    let (r1, s1) = server_in(&c, &["node1", "node3"], &net3, |s| {
        s["subnets"].as_array().unwrap().len() == 2
    });
    let s2 = server(&c, "node2", &net3, |s| {
        s["subnets"].as_array().unwrap().len() == 2
    });
    let other = if r1 == "node1" { "node3" } else { "node1" };
    assert!(desired(&c, other)["state"]["dhcp"].get(&net3).is_none());
    for (s, pod) in [(&s1, "RegionOne"), (&s2, "RegionTwo")] {
        let port = &ports[pod];
        assert_eq!(s["port_id"], port["id"]);
        assert_eq!(s["mac"], port["mac_address"]);
        assert_eq!(s["namespace"], format!("qdhcp-{net3}"));
        let pid = port["id"].as_str().unwrap();
        assert_eq!(s["ns_ifname"], format!("ns-{}", &pid[..11]));
        assert_eq!(s["ovs_ifname"], format!("tap{}", &pid[..11]));
        assert_eq!(s["bridge"], "br-vlan");
        assert_eq!(s["tag"], vlan);
        assert_eq!(s["mtu"], 1450);
        assert_eq!(s["lease_seconds"], 86400);
        let addrs = ips(port);
        for sub in [&sa, &sb] {
            assert_eq!(sub_of(s, sub)["server_address"], addrs[sub.as_str()]);
        }
        assert_eq!(
            sub_of(s, &sa)["router"],
            "10.0.3.1",
            "no router yet: the gateway"
        );
    }
    assert!(
        !s1.to_string().contains(&sn),
        "a subnet without DHCP is served: {s1}"
    );
    assert_eq!(
        host_ports(&s1),
        BTreeSet::from([vm1.clone(), vm3.clone()]),
        "{s1}"
    );
    assert_eq!(host_ports(&s2), BTreeSet::from([vm2.clone()]), "{s2}");

    // A router on 10.0.3.0/24: RegionTwo's VMs get their own pod's leg as router.
    let r = ok(
        c.n(
            "POST",
            "/v2.0/routers",
            Some(DEMO),
            Some(&json!({"router": {"name": "r"}})),
        ),
        "router",
    )["router"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{r}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sa})),
        ),
        "interface",
    );
    let leg = wait("RegionTwo's leg IP", || {
        let all = ok(
            c.n(
                "GET",
                &format!("/v2.0/ports?device_id={r}&device_owner=network:router_leg"),
                Some(ADMIN),
                None,
            ),
            "legs",
        );
        all["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "RegionTwo")
            .map(|p| ips(p)[&sa].clone())
    });
    assert_ne!(leg, "10.0.3.1");
    server(&c, "node2", &net3, |s| {
        sub_of(s, &sa)["router"] == leg.as_str()
    });
    let s1 = server(&c, r1, &net3, |_| true);
    assert_eq!(
        sub_of(&s1, &sa)["router"],
        "10.0.3.1",
        "the home pod: the interface"
    );
    assert_eq!(
        sub_of(&s1, &sb)["router"],
        "10.0.4.1",
        "no router: the gateway"
    );

    // Options follow the subnet; no gateway, no router option.
    update_subnet(
        &c,
        &sb,
        json!({"dns_nameservers": ["10.9.9.9", "10.9.9.8"], "gateway_ip": null,
            "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.4.254"}]}),
    );
    for node in [r1, "node2"] {
        let s = server(&c, node, &net3, |s| {
            sub_of(s, &sb)["dns_nameservers"] == json!(["10.9.9.9", "10.9.9.8"])
        });
        let b = sub_of(&s, &sb);
        assert!(b["router"].is_null(), "{b}");
        assert_eq!(
            b["host_routes"],
            json!([{"destination": "192.168.0.0/16", "nexthop": "10.0.4.254"}])
        );
    }

    // DHCP off on one subnet: the ports give its addresses back; off on the last: the ports
    // go, and the servers with them.
    update_subnet(&c, &sb, json!({"enable_dhcp": false}));
    wait_dhcp_ports(&c, &net3, &["RegionOne", "RegionTwo"], &[&sa]);
    update_subnet(&c, &sa, json!({"enable_dhcp": false}));
    wait_dhcp_ports(&c, &net3, &[], &[]);
    for node in [r1, "node2"] {
        wait(&format!("{node} without a DHCP server"), || {
            desired(&c, node)["state"]["dhcp"]
                .get(&net3)
                .is_none()
                .then_some(())
        });
    }
    update_subnet(&c, &sa, json!({"enable_dhcp": true}));
    let ports = wait_dhcp_ports(&c, &net3, &["RegionOne", "RegionTwo"], &[&sa]);

    // The DHCP port is crosspod's, like a router's ports: its owner can neither delete it
    // (409, as Neutron answers for a router interface), nor move its device or addresses,
    // nor make another one.
    let id = ports["RegionTwo"]["id"].as_str().unwrap().to_string();
    let (s, b) = c.n("DELETE", &format!("/v2.0/ports/{id}"), Some(DEMO), None);
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["NeutronError"]["type"], "ServicePortInUse", "{b}");
    let (s, b) = c.n(
        "PUT",
        &format!("/v2.0/ports/{id}"),
        Some(DEMO),
        Some(&json!({"port": {"fixed_ips": [{"subnet_id": sa}]}})),
    );
    assert_eq!(s, 409, "{b}");
    let (s, b) = c.n(
        "POST",
        "/v2.0/ports",
        Some(DEMO),
        Some(&json!({"port": {"network_id": net3, "device_owner": "network:dhcp"}})),
    );
    assert_eq!(s, 400, "{b}");
    let (ok_cli, _, err) = openstack(&c, DEMO, &["port", "delete", &id]);
    assert!(!ok_cli, "the CLI deleted a DHCP port");
    assert!(
        err.contains("409") || err.contains("cannot be deleted"),
        "{err}"
    );
    let again = wait_dhcp_ports(&c, &net3, &["RegionOne", "RegionTwo"], &[&sa]);
    assert_eq!(again["RegionTwo"], ports["RegionTwo"]);

    // A pod-local network whose only VM is on node3: when RegionOne's server runs on node1,
    // node1 shares the local VLAN with node3, so both trunk it.
    let (netl, subl) = net_subnet(&c, "netl", "10.0.7.0/24");
    let (vml, _) = vm_port(&c, &netl, "node3");
    wait_dhcp_ports(&c, &netl, &["RegionOne"], &[&subl]);
    let (rl, sl) = server_in(&c, &["node1", "node3"], &netl, |s| {
        !s["hosts"].as_array().unwrap().is_empty()
    });
    assert_eq!(host_ports(&sl), BTreeSet::from([vml.clone()]));
    let tag = sl["tag"].as_u64().unwrap();
    let sharing: &[&str] = if rl == "node1" {
        &["node1", "node3"]
    } else {
        &[]
    };
    if sharing.is_empty() {
        // Server and VM on node3: the local VLAN stays on the node.
        let trunks = desired(&c, "node3")["state"]["bridges"]["br-vlan"]["trunks"].clone();
        assert!(
            !trunks.as_array().unwrap().contains(&json!(tag)),
            "{trunks}"
        );
    }
    for node in sharing.iter().copied() {
        wait(&format!("{node} trunks the local VLAN {tag}"), || {
            desired(&c, node)["state"]["bridges"]["br-vlan"]["trunks"]
                .as_array()
                .unwrap()
                .contains(&json!(tag))
                .then_some(())
        });
    }
    assert_no_drift(&c);

    // Deleting the subnet and network a DHCP port is on: not held up by it (Neutron's way).
    let (s, b) = c.n("DELETE", &format!("/v2.0/ports/{vml}"), Some(DEMO), None);
    assert_eq!(s, 204, "{b}");
    let (s, b) = c.n("DELETE", &format!("/v2.0/subnets/{subl}"), Some(DEMO), None);
    assert_eq!(s, 204, "deleting a subnet with a DHCP address: {b}");
    let (s, b) = c.n(
        "DELETE",
        &format!("/v2.0/networks/{netl}"),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 204, "deleting a network with a DHCP port: {b}");
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{r}/remove_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sa})),
        ),
        "remove interface",
    );
    for p in [&vm1, &vm2, &vm3] {
        let (s, _) = c.n("DELETE", &format!("/v2.0/ports/{p}"), Some(DEMO), None);
        assert_eq!(s, 204);
    }
    let (s, b) = c.n(
        "DELETE",
        &format!("/v2.0/networks/{net3}"),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 204, "deleting net3: {b}");
    assert_no_drift(&c);
    let leftover = ok(
        c.n(
            "GET",
            "/v2.0/ports?device_owner=network:dhcp",
            Some(ADMIN),
            None,
        ),
        "ports",
    );
    assert_eq!(leftover["ports"], json!([]));
    assert!(!c.log_has_5xx());
}

#[test]
fn dhcp_ports_and_servers_on_sqlite() {
    scenario(None);
}

#[test]
fn dhcp_ports_and_servers_on_postgresql() {
    let db = PgDb::create();
    scenario(Some(&db.url));
}

#[test]
fn the_lease_duration_is_a_flag_and_must_be_positive() {
    let c = Controller::start_with(None, &["--dhcp-lease-duration", "600"]);
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    let (net, _) = net_subnet(&c, "n", "10.0.1.0/24");
    vm_port(&c, &net, "node1");
    let s = server(&c, "node1", &net, |_| true);
    assert_eq!(s["lease_seconds"], 600);
    let bad = Controller::try_start(&Opts {
        extra: &["--dhcp-lease-duration", "0"],
        ..Opts::default()
    });
    assert!(bad.is_err(), "a zero lease time was accepted");
}

/// Tricircle's multi-gateway topology through the API: net1 in RegionOne behind local router
/// R1, net2 in RegionTwo behind R2, R3 joining both at other addresses. Each pod's DHCP
/// server hands its subnet a route to the other's via R3; the subnets' own `host_routes`
/// (what the user set, what the API shows) stay as they are.
#[test]
fn an_east_west_router_adds_host_routes_and_keeps_the_users() {
    let c = Controller::start();
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(&c, &agent("node2"), "node2", "RegionTwo", false),
        "node2",
    );
    let router = |name: &str, hints: Value| -> String {
        ok(
            c.n(
                "POST",
                "/v2.0/routers",
                Some(DEMO),
                Some(&json!({"router": {"name": name, "availability_zone_hints": hints}})),
            ),
            "router",
        )["router"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let attach = |r: &str, body: Value| {
        ok(
            c.n(
                "PUT",
                &format!("/v2.0/routers/{r}/add_router_interface"),
                Some(DEMO),
                Some(&body),
            ),
            "interface",
        );
    };
    let mut nets = Vec::new();
    let mut r3_ports = Vec::new();
    for (name, cidr, node, pod, addr) in [
        ("net1", "10.0.1.0/24", "node1", "RegionOne", "10.0.1.10"),
        ("net2", "10.0.2.0/24", "node2", "RegionTwo", "10.0.2.10"),
    ] {
        let (net, sub) = net_subnet(&c, name, cidr);
        // R3's port first: the VM's address is drawn at random.
        let p = ok(
            c.n(
                "POST",
                "/v2.0/ports",
                Some(DEMO),
                Some(&json!({"port": {"network_id": net,
                    "fixed_ips": [{"subnet_id": sub, "ip_address": addr}]}})),
            ),
            "r3 port",
        );
        r3_ports.push(p["port"]["id"].clone());
        vm_port(&c, &net, node);
        let r = router(&format!("r-{name}"), json!([pod]));
        attach(&r, json!({"subnet_id": sub}));
        nets.push((net, sub));
    }
    let r3 = router("r3", json!([]));
    for p in r3_ports {
        attach(&r3, json!({ "port_id": p }));
    }
    let (net1, sub1) = &nets[0];
    let (net2, _) = &nets[1];
    let want1 = json!([{"destination": "10.0.2.0/24", "nexthop": "10.0.1.10"}]);
    let want2 = json!([{"destination": "10.0.1.0/24", "nexthop": "10.0.2.10"}]);
    server(&c, "node1", net1, |s| {
        s["subnets"][0]["host_routes"] == want1
    });
    server(&c, "node2", net2, |s| {
        s["subnets"][0]["host_routes"] == want2
    });

    let user = json!([{"destination": "192.168.0.0/16", "nexthop": "10.0.1.254"}]);
    update_subnet(&c, sub1, json!({ "host_routes": user }));
    let both = json!([{"destination": "192.168.0.0/16", "nexthop": "10.0.1.254"},
        {"destination": "10.0.2.0/24", "nexthop": "10.0.1.10"}]);
    server(&c, "node1", net1, |s| {
        s["subnets"][0]["host_routes"] == both
    });
    let shown = ok(
        c.n("GET", &format!("/v2.0/subnets/{sub1}"), Some(DEMO), None),
        "subnet",
    );
    assert_eq!(
        shown["subnet"]["host_routes"], user,
        "the user's routes are untouched"
    );
    assert_no_drift(&c);
    assert!(!c.log_has_5xx());
}

/// A project at its port quota still gets its DHCP port, which, like every port crosspod makes
/// for itself, does not count in the project's usage; the quota still holds for its own.
#[test]
fn a_project_at_its_port_quota_still_gets_dhcp() {
    let c = Controller::start();
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        c.n(
            "PUT",
            "/v2.0/quotas/demo",
            Some(ADMIN),
            Some(&json!({"quota": {"port": 1}})),
        ),
        "quota",
    );
    let (net, sub) = net_subnet(&c, "n", "10.0.1.0/24");
    vm_port(&c, &net, "node1");
    wait_dhcp_ports(&c, &net, &["RegionOne"], &[&sub]);
    let d = ok(
        c.n("GET", "/v2.0/quotas/demo/details", Some(DEMO), None),
        "details",
    );
    assert_eq!(d["quota"]["port"]["used"], 1, "{d}");
    let (s, b) = c.n(
        "POST",
        "/v2.0/ports",
        Some(DEMO),
        Some(&json!({"port": {"network_id": net}})),
    );
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["NeutronError"]["type"], "OverQuota", "{b}");
}
