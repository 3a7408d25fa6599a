//! Tenant trust in the data plane (issue 13): with the guide's topology in place for the admin
//! project (scripts/guide.sh: net1 in RegionOne, net2 in RegionTwo, a router with both
//! interfaces and a gateway on ext-net, vm1, vm2, a floating IP), a member of project `other`
//! tries through the real API to take the upstream router's address, to plug into the admin's
//! router and to reach the admin's VMs from a VM of its own. Each refusal is checked where it
//! matters: addresses on the namespaces' interfaces, ARP/neighbour entries on both sides of the
//! external network, the admin router's legs, and real pings (with the admin's VMs still
//! reaching each other as the positive control). controller/tests/tenant_trust.rs checks the
//! same attacks at the API level. Real controller, agents, OVS and namespaces; needs root.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::lab::{ping, wait_ping, Lab};
use serde_json::{json, Value};

/// The upstream router's address (the `ext` namespace holds it).
const UPSTREAM: &str = "163.3.124.1";

/// One Neutron/Tricircle API call through curl: (status, body as JSON, or Null when empty).
fn api(port: u16, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-X", method, "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .args(["-H", "Content-Type: application/json", "-H"])
        .arg(format!("X-Auth-Token: {token}"));
    if let Some(b) = body {
        c.args(["-d", &b.to_string()]);
    }
    let o = c.output().expect("running curl");
    assert!(
        o.status.success(),
        "curl {method} {path}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, status) = out.rsplit_once('\n').expect("curl printed the status");
    let v = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
    };
    (status.trim().parse().expect("a status code"), v)
}

/// A call that must answer 2xx; its body.
fn ok(lab: &Lab, method: &str, path: &str, token: &str, body: Option<&Value>) -> Value {
    let (s, v) = api(lab.neutron, method, path, token, body);
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

fn neutron_type(v: &Value) -> &str {
    v["NeutronError"]["type"].as_str().unwrap_or_default()
}

/// Waits until every node hosting `router` applied the latest desired state (the realization
/// barrier: each node's applied revision is at least the published one, router ready).
fn realized(lab: &Lab, token: &str, router: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = api(
            lab.tricircle,
            "GET",
            &format!("/v1.0/routers/{router}/realized?timeout=10"),
            token,
            None,
        );
        assert_eq!(s, 200, "realized {router}: {v}");
        assert!(v["error"].is_null(), "router {router} failed: {v}");
        if v["realized"] == true {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "router {router} not realized after 60 s: {v}\n{}",
            lab.logs()
        );
    }
}

/// Waits until an instance of `router` holds `addr` (the effect of the caller's last change,
/// seen in the data plane), then until the router is realized on every node (so the other
/// nodes have applied the same change). Returns the namespace holding `addr` and the time.
fn settled(lab: &Lab, token: &str, router: &str, addr: &str) -> (String, Duration) {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(30);
    let ns = loop {
        if let Some(n) = router_namespaces(lab, router)
            .into_iter()
            .find(|n| !holders(n, addr).is_empty())
        {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no instance of {router} holds {addr} after 30 s\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    realized(lab, token, router);
    (ns, t.elapsed())
}

/// `ip [-n NS] ARGS`'s stdout (NS empty: the root namespace). A namespace an agent is creating
/// this very moment is listed before it can be entered (its file exists before its mount, as
/// with `ip netns add`): that is waited out, for up to 2 s; one removed since it was listed
/// holds nothing.
fn ip(ns: &str, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut c = Command::new("ip");
        if !ns.is_empty() {
            c.args(["-n", ns]);
        }
        let o = c.args(args).output().expect("running ip");
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).to_string();
        }
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        if !ns.is_empty() && !std::path::Path::new("/run/netns").join(ns).exists() {
            // Gone between the listing and this call (an instance torn down): it holds
            // nothing any more.
            return String::new();
        }
        let entering = err.contains("setting the network namespace");
        assert!(
            entering && Instant::now() < deadline,
            "ip -n {ns} {args:?}: {err}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// This lab's namespaces (by prefix), plus the root namespace as "".
fn lab_namespaces(lab: &Lab) -> Vec<String> {
    let mut v: Vec<String> = ip("", &["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&lab.prefix))
        .map(str::to_string)
        .collect();
    v.push(String::new());
    v
}

/// The namespaces of `router`'s instances (`<prefix><node>-qrouter-<id>`).
fn router_namespaces(lab: &Lab, router: &str) -> Vec<String> {
    lab_namespaces(lab)
        .into_iter()
        .filter(|n| n.ends_with(&format!("qrouter-{router}")))
        .collect()
}

/// Interfaces of `ns` holding IPv4 `addr`, as (name, MAC).
fn holders(ns: &str, addr: &str) -> Vec<(String, String)> {
    let needle = format!("inet {addr}/");
    ip(ns, &["-o", "-4", "addr", "show"])
        .lines()
        .filter(|l| l.contains(&needle))
        .map(|l| {
            let dev = l.split_whitespace().nth(1).unwrap().to_string();
            (dev.clone(), mac(ns, &dev))
        })
        .collect()
}

/// The MAC of `dev` in `ns`.
fn mac(ns: &str, dev: &str) -> String {
    let out = ip(ns, &["-o", "link", "show", "dev", dev]);
    let mut words = out.split_whitespace();
    words
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("{dev} in {ns} has no MAC: {out}"))
        .to_string()
}

/// The link-layer address `ns` has resolved for `addr`, if any.
fn neighbour(ns: &str, addr: &str) -> Option<String> {
    let out = ip(ns, &["neigh", "show", "to", addr]);
    let mut words = out.split_whitespace();
    words
        .find(|w| *w == "lladdr")
        .and_then(|_| words.next())
        .map(str::to_string)
}

/// Every interface of `ns` with its addresses, sorted: what a leg added or removed changes.
fn legs(ns: &str) -> Vec<String> {
    let mut v: Vec<String> = ip(ns, &["-o", "addr", "show"])
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {}", w[1], w[2], w[3])
        })
        .collect();
    v.extend(
        ip(ns, &["-o", "link", "show"])
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string()),
    );
    v.sort();
    v
}

/// Boots a lab VM: (namespace, address, port id).
fn vm(lab: &Lab, token: &str, region: &str, net: &str, name: &str) -> (String, String, String) {
    let name = lab.ns(name);
    lab.crosspod(
        &["vm", "boot", "--region", region, "--network", net, &name],
        Some(token),
    );
    let list: Value =
        serde_json::from_str(&lab.crosspod(&["--json", "vm", "list"], Some(token))).unwrap();
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"));
    let addr = me["address"].as_str().unwrap().split('/').next().unwrap();
    let port = me["port_id"].as_str().unwrap();
    (name.clone(), addr.to_string(), port.to_string())
}

fn id(v: &Value, kind: &str) -> String {
    v[kind]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no {kind} id in {v}"))
        .to_string()
}

/// `ip route` in a VM namespace (for the member's own routes).
fn vm_route(ns: &str, args: &[&str]) {
    ip(ns, &[&["route"][..], args].concat());
}

#[test]
fn a_member_cannot_reach_or_hijack_another_projects_traffic() {
    let t0 = Instant::now();
    let lab = Lab::up("t");
    let admin = lab.admin.clone();
    let played = lab.play_guide("guide");
    eprintln!("lab up and guide played: {:?}", t0.elapsed());
    let (vm1, vm2, ext) = (lab.ns("vm1"), lab.ns("vm2"), lab.ns("ext"));

    let find = |path: &str, kind: &str| -> String {
        let v = ok(&lab, "GET", path, &admin, None);
        assert_eq!(v[kind].as_array().map(Vec::len), Some(1), "{path}: {v}");
        v[kind][0]["id"].as_str().unwrap().to_string()
    };
    let victim = find("/v2.0/routers?name=router", "routers");
    let ext_net = find("/v2.0/networks?name=ext-net", "networks");
    let victim_router = ok(
        &lab,
        "GET",
        &format!("/v2.0/routers/{victim}"),
        &admin,
        None,
    );
    let victim_gw = victim_router["router"]["external_gateway_info"]["external_fixed_ips"][0]
        ["ip_address"]
        .as_str()
        .unwrap_or_else(|| panic!("the admin router has no gateway address: {victim_router}"))
        .to_string();
    let victim_ns = router_namespaces(&lab, &victim);
    assert_eq!(
        victim_ns.len(),
        2,
        "the admin router has an instance in each pod: {victim_ns:?}"
    );
    let victim_gw_ns = victim_ns
        .iter()
        .find(|n| !holders(n, &victim_gw).is_empty())
        .unwrap_or_else(|| panic!("no instance of {victim} holds {victim_gw}: {victim_ns:?}"))
        .clone();
    let victim_gw_mac = holders(&victim_gw_ns, &victim_gw)[0].1.clone();
    let upstream = holders(&ext, UPSTREAM);
    assert_eq!(
        upstream.len(),
        1,
        "{ext} holds {UPSTREAM} once: {upstream:?}"
    );
    let upstream_mac = upstream[0].1.clone();

    // The member of a second project builds its own network, router and VM in RegionOne.
    let member = lab.crosspod(&["lab", "token", "--project", "other"], None);
    let onet = id(
        &ok(
            &lab,
            "POST",
            "/v2.0/networks",
            &member,
            Some(&json!({"network": {"name": "trust-onet"}})),
        ),
        "network",
    );
    let osub = id(
        &ok(
            &lab,
            "POST",
            "/v2.0/subnets",
            &member,
            Some(&json!({"subnet": {"name": "trust-osub", "network_id": onet,
                "cidr": "10.9.0.0/24", "ip_version": 4}})),
        ),
        "subnet",
    );
    let orouter = id(
        &ok(
            &lab,
            "POST",
            "/v2.0/routers",
            &member,
            Some(&json!({"router": {"name": "trust-orouter"}})),
        ),
        "router",
    );
    let (ovm, _ovm_ip, ovm_port) = vm(&lab, &member, "RegionOne", &onet, "o1");

    // What the member may do: a gateway with an address the controller picks. The member's
    // router then has a real leg on the external network, next to the admin's.
    let v = ok(
        &lab,
        "PUT",
        &format!("/v2.0/routers/{orouter}"),
        &member,
        Some(&json!({"router": {"external_gateway_info": {"network_id": ext_net}}})),
    );
    let member_gw = v["router"]["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap_or_else(|| panic!("no gateway address: {v}"))
        .to_string();
    assert_ne!(member_gw, UPSTREAM);
    let (member_gw_ns, _) = settled(&lab, &member, &orouter, &member_gw);
    let member_gw_mac = holders(&member_gw_ns, &member_gw)[0].1.clone();
    assert_ne!(member_gw_mac, victim_gw_mac);

    // 1. The upstream router's address: admin-only on a gateway and on a floating IP.
    let (s, v) = api(
        lab.neutron,
        "PUT",
        &format!("/v2.0/routers/{orouter}"),
        &member,
        Some(
            &json!({"router": {"external_gateway_info": {"network_id": ext_net,
            "external_fixed_ips": [{"ip_address": UPSTREAM}]}}}),
        ),
    );
    assert_eq!(s, 403, "gateway with the upstream address: {v}");
    assert_eq!(neutron_type(&v), "PolicyNotAuthorized", "{v}");
    let (s, v) = api(
        lab.neutron,
        "POST",
        "/v2.0/floatingips",
        &member,
        Some(&json!({"floatingip": {"floating_network_id": ext_net,
            "floating_ip_address": UPSTREAM}})),
    );
    assert_eq!(s, 403, "floating IP at the upstream address: {v}");
    assert_eq!(neutron_type(&v), "PolicyNotAuthorized", "{v}");
    // Barrier: a later change of the member's own (its interface on its own subnet) in place
    // on every node; whatever the refused calls might have changed is applied by then too.
    ok(
        &lab,
        "PUT",
        &format!("/v2.0/routers/{orouter}/add_router_interface"),
        &member,
        Some(&json!({"subnet_id": osub})),
    );
    settled(&lab, &member, &orouter, "10.9.0.1");
    let v = ok(
        &lab,
        "GET",
        &format!("/v2.0/routers/{orouter}"),
        &member,
        None,
    );
    assert_eq!(
        v["router"]["external_gateway_info"]["external_fixed_ips"][0]["ip_address"],
        member_gw.as_str(),
        "the member's gateway address is unchanged: {v}"
    );
    assert_eq!(
        holders(&member_gw_ns, &member_gw).len(),
        1,
        "{member_gw_ns} still holds {member_gw}"
    );
    // Data plane: only `ext` holds the upstream address, in any namespace of this lab.
    let held: Vec<String> = lab_namespaces(&lab)
        .into_iter()
        .filter(|n| !holders(n, UPSTREAM).is_empty())
        .collect();
    assert_eq!(held, vec![ext.clone()], "namespaces holding {UPSTREAM}");
    // Fresh ARP on both sides of the external network: the admin's traffic still goes to the
    // upstream router, and the upstream router answers the admin's router, not the member's.
    ip(&ext, &["neigh", "flush", "all"]);
    ip(&victim_gw_ns, &["neigh", "flush", "all"]);
    assert!(
        wait_ping(&vm1, UPSTREAM, true, Duration::from_secs(10)),
        "vm1 -> {UPSTREAM}\n{}",
        lab.logs()
    );
    assert!(ping(&vm2, UPSTREAM, "1"), "vm2 -> {UPSTREAM}");
    assert_eq!(
        neighbour(&victim_gw_ns, UPSTREAM).as_deref(),
        Some(upstream_mac.as_str()),
        "the admin router resolves {UPSTREAM} to {ext}'s interface ({upstream_mac}), \
         not the member's gateway ({member_gw_mac})"
    );
    assert_eq!(
        neighbour(&ext, &victim_gw).as_deref(),
        Some(victim_gw_mac.as_str()),
        "{ext} resolves the admin router's gateway {victim_gw} to the admin router"
    );
    // The admin's floating IP (vm1's traffic leaves with it) is the admin router's too.
    let fip_mac = victim_ns
        .iter()
        .find_map(|n| holders(n, &played.floating_ip).pop())
        .unwrap_or_else(|| panic!("no instance of {victim} holds {}", played.floating_ip))
        .1;
    assert_eq!(
        neighbour(&ext, &played.floating_ip).as_deref(),
        Some(fip_mac.as_str()),
        "{ext} resolves the admin's floating IP {} to the admin router",
        played.floating_ip
    );
    eprintln!("1. upstream address: {:?}", t0.elapsed());

    // 2. Plugging into the admin's router: refused, and the router gains no leg.
    // The admin router's ports as "owner network address" (its interfaces, bridge IPs and
    // gateway), as the admin sees them.
    let ports_of = |router: &str| -> Vec<String> {
        let v = ok(
            &lab,
            "GET",
            &format!("/v2.0/ports?device_id={router}"),
            &admin,
            None,
        );
        let mut ports: Vec<String> = v["ports"]
            .as_array()
            .unwrap_or_else(|| panic!("no ports in {v}"))
            .iter()
            .map(|p| {
                format!(
                    "{} {} {}",
                    p["device_owner"], p["network_id"], p["fixed_ips"][0]["ip_address"]
                )
            })
            .collect();
        ports.sort();
        ports
    };
    let api_before = ports_of(&victim);
    let legs_before: Vec<Vec<String>> = victim_ns.iter().map(|n| legs(n)).collect();
    for owner in ["network:router_interface", ""] {
        let (s, v) = api(
            lab.neutron,
            "POST",
            "/v2.0/ports",
            &member,
            Some(&json!({"port": {"network_id": onet, "device_owner": owner,
                "device_id": victim}})),
        );
        assert_eq!(s, 409, "a port on {victim} with owner {owner:?}: {v}");
        assert_eq!(neutron_type(&v), "DeviceIDNotOwnedByTenant", "{v}");
    }
    // Nor by turning its VM's port (bound on node1, where the admin router has an instance)
    // into a port of the admin's router: 409 DeviceIDNotOwnedByTenant, with or without
    // the interface owner (the device is judged first, as on create).
    for (body, want) in [
        (json!({"device_id": victim}), 409),
        (
            json!({"device_owner": "network:router_interface", "device_id": victim}),
            409,
        ),
    ] {
        let (s, v) = api(
            lab.neutron,
            "PUT",
            &format!("/v2.0/ports/{ovm_port}"),
            &member,
            Some(&json!({ "port": body })),
        );
        assert_eq!(s, want, "the member's VM port onto {victim} ({body}): {v}");
        if want == 409 {
            assert_eq!(neutron_type(&v), "DeviceIDNotOwnedByTenant", "{v}");
        }
    }
    // Barrier: an extra route of the member's own router, in place on every node.
    ok(
        &lab,
        "PUT",
        &format!("/v2.0/routers/{orouter}"),
        &member,
        Some(&json!({"router": {"routes": [{"destination": "10.8.0.0/24",
            "nexthop": "10.9.0.254"}]}})),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !router_namespaces(&lab, &orouter)
        .iter()
        .any(|n| ip(n, &["-4", "route", "show"]).contains("10.8.0.0/24 via 10.9.0.254"))
    {
        assert!(
            Instant::now() < deadline,
            "the member's extra route is not in place after 30 s\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    realized(&lab, &member, &orouter);
    realized(&lab, &admin, &victim);
    let api_after = ports_of(&victim);
    assert_eq!(api_before, api_after, "the admin router's ports");
    assert!(
        api_after.iter().all(|p| !p.contains(&onet)),
        "{api_after:?}"
    );
    let legs_after: Vec<Vec<String>> = victim_ns.iter().map(|n| legs(n)).collect();
    assert_eq!(
        legs_before, legs_after,
        "the admin router's namespaces {victim_ns:?} changed"
    );
    for n in &victim_ns {
        assert!(
            !ip(n, &["-o", "-4", "addr", "show"]).contains("inet 10.9.0."),
            "{n} has an address on the member's network"
        );
    }
    eprintln!("2. plugging in: {:?}", t0.elapsed());

    // 3. From the member's VM to the admin's VMs. Positive controls first: the member's VM
    // works (its router, and the upstream through its own SNAT), and the admin's VMs reach
    // each other.
    assert!(
        wait_ping(&ovm, "10.9.0.1", true, Duration::from_secs(30)),
        "the member's VM reaches its router\n{}",
        lab.logs()
    );
    assert!(
        wait_ping(&ovm, UPSTREAM, true, Duration::from_secs(30)),
        "the member's VM reaches {UPSTREAM}\n{}",
        lab.logs()
    );
    // The member's router knows no route to the admin's subnets (only its default).
    for n in router_namespaces(&lab, &orouter) {
        let routes = ip(&n, &["-4", "route", "show"]);
        for cidr in ["10.0.1.0/24", "10.0.2.0/24"] {
            assert!(!routes.contains(cidr), "{n} routes {cidr}:\n{routes}");
        }
    }
    let victims = [played.vm1_ip.as_str(), played.vm2_ip.as_str()];
    let unreachable = |how: &str| {
        for t in victims {
            assert!(!ping(&ovm, t, "1"), "{how}: the member's VM reaches {t}");
        }
    };
    // Its default route (via its own router, then its own gateway).
    unreachable("default route");
    // A static route via its own router.
    vm_route(&ovm, &["add", "10.0.0.0/16", "via", "10.9.0.1"]);
    unreachable("static route via its own router");
    // On-link: straight onto its own segment, as if the admin's VMs were next to it.
    vm_route(&ovm, &["del", "10.0.0.0/16"]);
    vm_route(&ovm, &["add", "10.0.0.0/16", "dev", "eth0"]);
    unreachable("on-link route");
    vm_route(&ovm, &["del", "10.0.0.0/16"]);
    assert!(ping(&vm1, &played.vm2_ip, "1"), "vm1 -> vm2");
    assert!(ping(&vm2, &played.vm1_ip, "1"), "vm2 -> vm1");
    assert!(
        ping(&ext, &played.floating_ip, "1"),
        "ext -> the admin's floating IP"
    );
    eprintln!("3. reaching the admin's VMs: {:?}", t0.elapsed());
}
