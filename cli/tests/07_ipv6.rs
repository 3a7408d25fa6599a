//! IPv6 in the lab (issue #21, the lab's half), against the real controller without agents:
//! `vm boot` of dual-stack and IPv6-only ports (every fixed IP configured, a subnet without an
//! address mode written statically with `::/0` via its gateway), the upstream's IPv6 address
//! and forwarding, and `lab upstream-routes` keeping exactly its own routes in `ext`. (SLAAC
//! and DHCPv6 against real router advertisements and a real DHCPv6 server are the root unit
//! tests of `cli/src/vm.rs`: the controller of this tree refuses address modes on subnets.)

mod common;

use std::process::Command;

use common::*;

fn subnet6(lab: &Lab, net: &str, name: &str, cidr: &str) -> String {
    ok(&mut lab.openstack(
        None,
        &[
            "subnet",
            "create",
            "--network",
            net,
            "--ip-version",
            "6",
            "--subnet-range",
            cidr,
            name,
            "-f",
            "value",
            "-c",
            "id",
        ],
    ))
    .trim()
    .to_string()
}

fn sysctl(ns: &str, key: &str) -> String {
    ok(&mut in_ns(ns, &["sysctl", "-n", key]))
        .trim()
        .to_string()
}

#[test]
fn dual_stack_and_ipv6_only_vms_get_every_address() {
    require_root_and_tools();
    require_openstack();
    let lab = Lab::new();
    lab.up_with_controller();
    // Dual stack: IPv4 without DHCP (no agent serves it here) and IPv6 without a mode.
    ok(&mut lab.openstack(None, &["network", "create", "ds"]));
    ok(&mut lab.openstack(
        None,
        &[
            "subnet",
            "create",
            "--network",
            "ds",
            "--subnet-range",
            "10.0.1.0/24",
            "--no-dhcp",
            "ds4",
        ],
    ));
    subnet6(&lab, "ds", "ds6", "fd00:1::/64");
    let vm = format!("{}d", lab.prefix);
    let _g = TestNs(vm.clone());
    let out = ok(&mut lab.vm(&[
        "boot",
        "--region",
        "RegionOne",
        "--network",
        "ds",
        &vm,
        "--json",
    ]));
    let rec: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Every fixed IP the controller gave the port is the VM's (this tree's controller gives a
    // dual-stack port its IPv4 address only; with Neutron's one address per IPv6 subnet the
    // record and the namespace hold those too).
    let port = ok(&mut lab.openstack(
        None,
        &[
            "port",
            "show",
            rec["port_id"].as_str().unwrap(),
            "-f",
            "json",
        ],
    ));
    let port: serde_json::Value = serde_json::from_str(&port).unwrap();
    let fixed: Vec<String> = port["fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["ip_address"].as_str().unwrap().to_string())
        .collect();
    let addrs = rec["addresses"].as_array().unwrap();
    assert_eq!(addrs.len(), fixed.len(), "{rec} {port}");
    let shown = ok(Command::new("ip").args(["-n", &vm, "-o", "addr", "show", "eth0"]));
    for (a, ip) in addrs.iter().zip(&fixed) {
        let a = a["address"].as_str().unwrap();
        assert_eq!(a.split('/').next().unwrap(), ip.as_str());
        assert!(shown.contains(a), "{a} not on eth0: {shown}");
    }
    let v4 = addrs
        .iter()
        .find(|a| a["address"].as_str().unwrap().starts_with("10.0.1."))
        .unwrap();
    assert_eq!(v4["how"], "static");
    // The record's `address` stays the IPv4 one (old readers of the record keep working).
    assert_eq!(rec["address"], v4["address"]);
    let r4 = ok(Command::new("ip").args(["-n", &vm, "route", "show", "default"]));
    assert!(r4.contains("via 10.0.1.1"), "{r4}");
    if let Some(v6) = addrs
        .iter()
        .find(|a| a["address"].as_str().unwrap().starts_with("fd00:1::"))
    {
        assert_eq!(v6["how"], "static");
        let r6 = ok(Command::new("ip").args(["-n", &vm, "-6", "route", "show", "default"]));
        assert!(r6.contains("via fd00:1::1"), "{r6}");
    }
    // `vm list` shows the addresses.
    let table = ok(&mut lab.vm(&["list"]));
    assert!(table.contains(v4["address"].as_str().unwrap()), "{table}");

    // IPv6 only: the record's address is the IPv6 one, and two VMs on one tag ping -6.
    ok(&mut lab.openstack(None, &["network", "create", "v6only"]));
    subnet6(&lab, "v6only", "v6only-s", "fd00:2::/64");
    let (a, b) = (format!("{}a", lab.prefix), format!("{}b", lab.prefix));
    let (_ga, _gb) = (TestNs(a.clone()), TestNs(b.clone()));
    let boot = |n: &str| -> serde_json::Value {
        let out = ok(&mut lab.vm(&[
            "boot",
            "--region",
            "RegionOne",
            "--network",
            "v6only",
            n,
            "--json",
        ]));
        serde_json::from_str(&out).unwrap()
    };
    let (ra, rb) = (boot(&a), boot(&b));
    let ab = rb["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(ab.starts_with("fd00:2::"), "{rb}");
    assert_eq!(ra["addresses"].as_array().unwrap().len(), 1);
    assert_eq!(ra["addresses"][0]["how"], "static");
    let shown = ok(Command::new("ip").args(["-n", &a, "-6", "-o", "addr", "show", "eth0"]));
    assert!(shown.contains(ra["address"].as_str().unwrap()), "{shown}");
    let r6 = ok(Command::new("ip").args(["-n", &a, "-6", "route", "show", "default"]));
    assert!(r6.contains("via fd00:2::1"), "{r6}");
    // Addresses written by hand: the VM ignores router advertisements.
    assert_eq!(sysctl(&a, "net.ipv6.conf.eth0.accept_ra"), "0");
    assert_eq!(sysctl(&a, "net.ipv6.conf.eth0.autoconf"), "0");
    let table = ok(&mut lab.vm(&["list"]));
    assert!(table.contains(rb["address"].as_str().unwrap()), "{table}");
    // No agent runs: tag both ports alike by hand, as the agent would.
    for r in [&ra, &rb] {
        lab.vsctl(
            "node1",
            &["set", "Port", r["tap"].as_str().unwrap(), "tag=42"],
        );
    }
    let ping = output(&mut in_ns(&a, &["ping", "-6", "-c", "1", "-W", "3", &ab]));
    assert!(ping.status.success(), "{ping:?}");

    // The probe matrix: IPv6 pairs are cells of their own; a VM probes only the families it
    // has (no router here: the upstream does not answer, so the exit status is 3).
    let mut probe = crosspod();
    probe
        .args(["probe", "--json", "--dir"])
        .arg(&lab.dir)
        .env_remove("CROSSPOD_LAB_DIR");
    let out = output(&mut probe);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cell = |from: &str, to: &str| {
        m["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["from"] == from && c["to"] == to)
            .cloned()
    };
    let b6 = format!("{b} v6");
    let ab_cell = cell(&a, &b6).unwrap_or_else(|| panic!("no {a} -> {b6} cell: {m}"));
    assert_eq!(ab_cell["reachable"], true, "{ab_cell}");
    assert_eq!(ab_cell["address"], ab.as_str());
    assert!(m["targets"].to_string().contains(&b6), "{m}");
    let up6 = cell(&a, "upstream 2001:db8:124::1").expect("an IPv6 cell to the upstream");
    assert_eq!(up6["reachable"], false);
    assert!(
        cell(&a, "upstream 163.3.124.1").is_none(),
        "an IPv6-only VM probed IPv4"
    );
    assert!(
        cell(&vm, &b6).is_none() || addrs.len() > 1,
        "an IPv4-only VM probed IPv6"
    );
    assert!(cell(&vm, "upstream 163.3.124.1").is_some());

    ok(&mut lab.vm(&["delete", &a]));
    ok(&mut lab.vm(&["delete", &b]));
    ok(&mut lab.vm(&["delete", &vm]));
    assert!(!namespaces().contains(&vm));
}

/// Routes in `ext` as `ip -6 route` shows them, one per line.
fn ext_routes(lab: &Lab) -> String {
    ok(Command::new("ip").args(["-n", &lab.ns("ext"), "-6", "route", "show"]))
}

#[test]
fn the_upstream_holds_ipv6_forwards_it_and_routes_exactly_the_projects_subnets() {
    require_root_and_tools();
    require_openstack();
    let lab = Lab::new();
    lab.up_with_controller();
    let ext = lab.ns("ext");
    let gw0 = ok(Command::new("ip").args(["-n", &ext, "-6", "-o", "addr", "show", "gw0"]));
    assert!(gw0.contains("2001:db8:124::1/64"), "{gw0}");
    let gw1 = ok(Command::new("ip").args(["-n", &ext, "-6", "-o", "addr", "show", "gw1"]));
    assert!(gw1.contains("2001:db8:125::1/64"), "{gw1}");
    assert_eq!(sysctl(&ext, "net.ipv6.conf.all.forwarding"), "1");
    // A second `up` changes nothing.
    let again = ok(&mut lab.up_cmd(
        &require_controller(),
        std::path::Path::new("/nonexistent/crosspod-agent"),
    ));
    assert!(again.contains("nothing changed"), "{again}");

    // What is not the upstream-routes' own: an operator's route, and an owned IPv4 route.
    ok(Command::new("ip").args([
        "-n",
        &ext,
        "-6",
        "route",
        "add",
        "2001:db8:ff::/64",
        "via",
        "2001:db8:124::99",
        "proto",
        "static",
    ]));
    // A stale route of its own (a router gone) and one with an old next hop.
    ok(Command::new("ip").args([
        "-n",
        &ext,
        "-6",
        "route",
        "add",
        "fd00:77::/64",
        "via",
        "2001:db8:124::77",
        "proto",
        "203",
    ]));

    let routes = |args: &[&str]| -> serde_json::Value {
        let mut c = lab.cmd(&["upstream-routes", "--json"]);
        c.args(args);
        serde_json::from_str(&ok(&mut c)).unwrap()
    };
    // No router has an IPv6 gateway yet: the stale route goes, the operator's stays.
    let rep = routes(&[]);
    assert_eq!(rep["routes"], serde_json::json!([]), "{rep}");
    assert!(
        rep["changes"].to_string().contains("removed fd00:77::/64"),
        "{rep}"
    );
    let shown = ext_routes(&lab);
    assert!(!shown.contains("fd00:77::"), "{shown}");
    assert!(
        shown.contains("2001:db8:ff::/64 via 2001:db8:124::99 dev gw0 proto static"),
        "{shown}"
    );
    let rep = routes(&[]);
    assert_eq!(
        rep["changes"],
        serde_json::json!([]),
        "a second run changes nothing: {rep}"
    );

    // A router whose gateway is on a dual-stack external network, with an IPv6 and an IPv4
    // interface: the IPv6 subnet is routed via the gateway's IPv6 address.
    let token = lab.env_var("OS_TOKEN");
    for (region, az) in [("RegionOne", "az1"), ("RegionTwo", "az2")] {
        ok(Command::new("curl").args([
            "-sS",
            "-f",
            "-X",
            "POST",
            &format!("http://127.0.0.1:{}/v1.0/pods", lab.tricircle_port),
            "-H",
            "Content-Type: application/json",
            "-H",
            &format!("X-Auth-Token: {token}"),
            "-d",
            &format!(r#"{{"pod": {{"region_name": "{region}", "az_name": "{az}"}}}}"#),
        ]));
    }
    ok(&mut lab.openstack(
        None,
        &[
            "network",
            "create",
            "--external",
            "--provider-network-type",
            "vlan",
            "--provider-physical-network",
            "extern",
            "--availability-zone-hint",
            "RegionTwo",
            "ext-net",
        ],
    ));
    ok(&mut lab.openstack(
        None,
        &[
            "subnet",
            "create",
            "--network",
            "ext-net",
            "--subnet-range",
            "163.3.124.0/24",
            "--no-dhcp",
            "--gateway",
            "163.3.124.1",
            "ext4",
        ],
    ));
    let ext6 = ok(&mut lab.openstack(
        None,
        &[
            "subnet",
            "create",
            "--network",
            "ext-net",
            "--ip-version",
            "6",
            "--subnet-range",
            "2001:db8:124::/64",
            "--no-dhcp",
            "--gateway",
            "2001:db8:124::1",
            "ext6",
            "-f",
            "value",
            "-c",
            "id",
        ],
    ))
    .trim()
    .to_string();
    ok(&mut lab.openstack(None, &["network", "create", "tn"]));
    let s6 = subnet6(&lab, "tn", "tn6", "fd00:5::/64");
    ok(&mut lab.openstack(
        None,
        &[
            "subnet",
            "create",
            "--network",
            "tn",
            "--subnet-range",
            "10.0.5.0/24",
            "tn4",
        ],
    ));
    ok(&mut lab.openstack(None, &["router", "create", "r"]));
    // Both external subnets asked for by the admin (this tree's controller gives a gateway
    // its first subnet's address only unless asked).
    ok(&mut lab.openstack(
        None,
        &[
            "router",
            "set",
            "--external-gateway",
            "ext-net",
            "--fixed-ip",
            "subnet=ext4",
            "--fixed-ip",
            "subnet=ext6",
            "r",
        ],
    ));
    ok(&mut lab.openstack(None, &["router", "add", "subnet", "r", &s6]));
    ok(&mut lab.openstack(None, &["router", "add", "subnet", "r", "tn4"]));
    let router: serde_json::Value = serde_json::from_str(&ok(
        &mut lab.openstack(None, &["router", "show", "r", "-f", "json"])
    ))
    .unwrap();
    let gw6 = router["external_gateway_info"]["external_fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subnet_id"] == ext6.as_str())
        .unwrap_or_else(|| {
            panic!("the gateway has no fixed IP on the IPv6 external subnet: {router}")
        })["ip_address"]
        .as_str()
        .unwrap()
        .to_string();

    let rep = routes(&[]);
    assert_eq!(
        rep["routes"],
        serde_json::json!([["fd00:5::/64", gw6]]),
        "{rep}"
    );
    let shown = ext_routes(&lab);
    assert!(
        shown.contains(&format!("fd00:5::/64 via {gw6} dev gw0 proto 203")),
        "{shown}"
    );
    assert!(!shown.contains("10.0.5."), "{shown}");
    // The next hop moved by hand is put back (replaced, not duplicated).
    ok(Command::new("ip").args([
        "-n",
        &ext,
        "-6",
        "route",
        "replace",
        "fd00:5::/64",
        "via",
        "2001:db8:124::55",
        "proto",
        "203",
    ]));
    let rep = routes(&[]);
    assert!(
        rep["changes"].to_string().contains("replaced fd00:5::/64"),
        "{rep}"
    );
    assert!(ext_routes(&lab).contains(&format!("fd00:5::/64 via {gw6}")));

    // The interface removed: its route goes; the operator's route is still there.
    ok(&mut lab.openstack(None, &["router", "remove", "subnet", "r", &s6]));
    let rep = routes(&[]);
    assert_eq!(rep["routes"], serde_json::json!([]), "{rep}");
    let shown = ext_routes(&lab);
    assert!(!shown.contains("fd00:5::"), "{shown}");
    assert!(shown.contains("2001:db8:ff::/64"), "{shown}");
}
