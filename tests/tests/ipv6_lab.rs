//! IPv6 across pods in the lab (issue "IPv6 across pods"): the guide's topology dual-stack —
//! a SLAAC subnet per pod on one distributed router, its external network with an IPv6
//! subnet — with VMs configured by the router's own advertisements (a real kernel taking the
//! RA in the VM namespace), ping6 east-west across pods over the dual-stack bridge network and
//! north-south to the upstream without NAT (the upstream routes the project prefixes back by
//! the static routes `crosspod lab upstream-routes` sets up); a `dhcpv6-stateful` subnet with a
//! real DHCPv6 client; an IPv6-only network; removing an interface withdraws its route.
//! Real controller, agents, OVS, namespaces and openstack CLI. Needs root.

use std::net::Ipv6Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::lab::{ping, wait_ping, Lab};

const UPSTREAM_V6: &str = "2001:db8:124::1";

fn sh(ns: &str, args: &[&str]) -> String {
    let o = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The global IPv6 addresses of a VM's eth0 (what its kernel holds, however it got them).
fn v6_addrs(vm: &str) -> Vec<Ipv6Addr> {
    sh(
        vm,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
        ],
    )
    .lines()
    .filter_map(|l| {
        l.split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)?
            .split('/')
            .next()?
            .parse()
            .ok()
    })
    .collect()
}

/// The IPv6 fixed IPs the API shows for a VM's port.
fn api_v6(lab: &Lab, vm: &str) -> Vec<Ipv6Addr> {
    let list = lab.crosspod(&["vm", "list", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let port = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == vm)
        .unwrap_or_else(|| panic!("vm list has no {vm}: {list}"))["port_id"]
        .as_str()
        .unwrap()
        .to_string();
    let p: serde_json::Value =
        serde_json::from_str(&lab.os(&lab.admin, &["port", "show", &port, "-f", "json"])).unwrap();
    p["fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["ip_address"].as_str()?.parse().ok())
        .collect()
}

/// The EUI-64 address of `mac` in `prefix` (a /64), computed here independently.
fn eui64(prefix: &str, mac: &str) -> Ipv6Addr {
    let p: Ipv6Addr = prefix.split('/').next().unwrap().parse().unwrap();
    let m: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let mut o = p.octets();
    o[8..].copy_from_slice(&[m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    Ipv6Addr::from(o)
}

fn mac_of(vm: &str) -> String {
    sh(vm, &["cat", "/sys/class/net/eth0/address"])
        .trim()
        .to_string()
}

fn one_v6_in(lab: &Lab, vm: &str, prefix: &str) -> Ipv6Addr {
    // Every prefix here is a /64: same first 64 bits.
    let net: Ipv6Addr = prefix.split('/').next().unwrap().parse().unwrap();
    let want: Vec<Ipv6Addr> = api_v6(lab, vm)
        .into_iter()
        .filter(|a| a.segments()[..4] == net.segments()[..4])
        .collect();
    assert_eq!(want.len(), 1, "{vm}: the API shows {want:?} in {prefix}");
    want[0]
}

/// The guide's external network in RegionTwo (VLAN 3001 on `extern`), dual-stack: 163.3.124.0/24
/// and 2001:db8:124::/64 with the lab upstream's address as gateway.
fn dual_stack_ext_net(lab: &Lab) {
    lab.external_network(
        "ext-net",
        "RegionTwo",
        "3001",
        "163.3.124.0/24",
        None,
        "ext-subnet",
    );
    lab.os(
        &lab.admin,
        &[
            "subnet",
            "create",
            "--network",
            "ext-net",
            "--no-dhcp",
            "--ip-version",
            "6",
            "--subnet-range",
            "2001:db8:124::/64",
            "--gateway",
            UPSTREAM_V6,
            "ext-subnet-v6",
        ],
    );
}

/// An IPv6 subnet `name` of `net` on `range`, addresses and advertisements by SLAAC.
fn slaac_subnet(lab: &Lab, net: &str, range: &str, name: &str) {
    lab.os(
        &lab.admin,
        &[
            "subnet",
            "create",
            "--network",
            net,
            "--ip-version",
            "6",
            "--ipv6-ra-mode",
            "slaac",
            "--ipv6-address-mode",
            "slaac",
            "--subnet-range",
            range,
            name,
        ],
    );
}

#[test]
fn the_guide_dual_stack_slaac_dhcpv6_and_ipv6_only_across_pods() {
    let lab = Lab::up("v6");
    lab.create_pods();
    let admin = lab.admin.clone();
    let os = |args: &[&str]| lab.os(&admin, args);

    // The guide's networks, each with an IPv6 SLAAC subnet beside its IPv4 one.
    for (net, v4, v6) in [
        ("net1", "10.0.1.0/24", "fd00:1::/64"),
        ("net2", "10.0.2.0/24", "fd00:2::/64"),
    ] {
        os(&["network", "create", net]);
        os(&[
            "subnet",
            "create",
            "--network",
            net,
            "--subnet-range",
            v4,
            &format!("{net}-v4"),
        ]);
        slaac_subnet(&lab, net, v6, &format!("{net}-v6"));
    }
    // A stateful DHCPv6 network (RegionOne) and an IPv6-only one (RegionTwo).
    os(&["network", "create", "net3"]);
    os(&[
        "subnet",
        "create",
        "--network",
        "net3",
        "--ip-version",
        "6",
        "--ipv6-ra-mode",
        "dhcpv6-stateful",
        "--ipv6-address-mode",
        "dhcpv6-stateful",
        "--subnet-range",
        "fd00:3::/64",
        "net3-v6",
    ]);
    os(&["network", "create", "net4"]);
    slaac_subnet(&lab, "net4", "fd00:4::/64", "net4-v6");
    // The external network, dual-stack.
    dual_stack_ext_net(&lab);
    os(&["router", "create", "router"]);
    // net4's interface comes after its VM booted (as the guide makes routers after VMs).
    for s in ["net1-v4", "net1-v6", "net2-v4", "net2-v6", "net3-v6"] {
        os(&["router", "add", "subnet", "router", s]);
    }
    os(&["router", "set", "--external-gateway", "ext-net", "router"]);
    let (vm1, vm2, vm3, vm4) = (lab.ns("vm1"), lab.ns("vm2"), lab.ns("vm3"), lab.ns("vm4"));
    for (vm, region, net) in [
        (&vm1, "RegionOne", "net1"),
        (&vm2, "RegionTwo", "net2"),
        (&vm3, "RegionOne", "net3"),
        (&vm4, "RegionTwo", "net4"),
    ] {
        lab.crosspod(
            &["vm", "boot", "--region", region, "--network", net, vm],
            Some(&admin),
        );
    }

    // Let ICMPv6 in from anywhere (the default group admits only its members), so the upstream
    // can ping the VMs' own addresses: proof that nothing is translated.
    let port1: serde_json::Value =
        serde_json::from_str(&lab.crosspod(&["vm", "list", "--json"], None)).unwrap();
    let port1 = port1
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == vm1.as_str())
        .unwrap()["port_id"]
        .as_str()
        .unwrap()
        .to_string();
    let p1: serde_json::Value =
        serde_json::from_str(&os(&["port", "show", &port1, "-f", "json"])).unwrap();
    let sg = p1["security_group_ids"][0].as_str().unwrap().to_string();
    os(&[
        "security",
        "group",
        "rule",
        "create",
        "--ingress",
        "--ethertype",
        "IPv6",
        "--protocol",
        "ipv6-icmp",
        &sg,
    ]);

    // vm4 booted with no router advertising on net4 (a warning, not a failure); the
    // interface's first advertisements configure it now.
    os(&["router", "add", "subnet", "router", "net4-v6"]);

    // SLAAC from the router's own advertisements: the kernel formed exactly the EUI-64 address
    // the API shows, and its default route is the router leg's link-local, learned by RA.
    let a1 = one_v6_in(&lab, &vm1, "fd00:1::/64");
    let a2 = one_v6_in(&lab, &vm2, "fd00:2::/64");
    let a4 = one_v6_in(&lab, &vm4, "fd00:4::/64");
    assert_eq!(a1, eui64("fd00:1::/64", &mac_of(&vm1)));
    assert_eq!(a2, eui64("fd00:2::/64", &mac_of(&vm2)));
    assert_eq!(a4, eui64("fd00:4::/64", &mac_of(&vm4)));
    for (vm, a) in [(&vm1, a1), (&vm2, a2), (&vm4, a4)] {
        until(&format!("{vm} holding {a}"), 30, || {
            v6_addrs(vm).contains(&a).then_some(())
        });
        let r = until(&format!("{vm}'s RA default route"), 30, || {
            let r = sh(vm, &["ip", "-6", "route", "show", "default"]);
            r.contains("proto ra").then_some(r)
        });
        assert!(r.contains("via fe80::"), "{vm}: {r}");
    }
    // The stateful network: a real DHCPv6 client got exactly the port's fixed IP.
    let a3 = one_v6_in(&lab, &vm3, "fd00:3::/64");
    until(&format!("vm3 holding {a3} by DHCPv6"), 30, || {
        v6_addrs(&vm3).contains(&a3).then_some(())
    });
    // The IPv6-only VM has no IPv4 at all.
    assert!(
        sh(&vm4, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
            .trim()
            .is_empty(),
        "vm4 has IPv4"
    );

    // East-west across pods, over the dual-stack bridge network.
    let (s1, s2, s3, s4) = (
        a1.to_string(),
        a2.to_string(),
        a3.to_string(),
        a4.to_string(),
    );
    for (from, to) in [
        (&vm1, &s2),
        (&vm2, &s1),
        (&vm3, &s2),
        (&vm4, &s1),
        (&vm1, &s4),
        (&vm4, &s3),
    ] {
        assert!(
            wait_ping(from, to, true, Duration::from_secs(60)),
            "{from} cannot reach {to}\n{}",
            lab.logs()
        );
    }

    // North-south without NAT: out from both pods, and in from the upstream to the VMs' own
    // addresses once the upstream routes the project prefixes to the gateway instance.
    lab.crosspod(&["lab", "upstream-routes"], None);
    let ext = lab.ns("ext");
    for vm in [&vm1, &vm2, &vm4] {
        assert!(
            wait_ping(vm, UPSTREAM_V6, true, Duration::from_secs(30)),
            "{vm} cannot reach the upstream {UPSTREAM_V6}\n{}",
            lab.logs()
        );
    }
    for a in [&s1, &s2, &s3, &s4] {
        assert!(
            wait_ping(&ext, a, true, Duration::from_secs(30)),
            "the upstream cannot reach {a}: translated or not routed\n{}",
            sh(&ext, &["ip", "-6", "route"])
        );
    }

    // The probe matrix covers the IPv6 pairs (`<vm> v6` columns), all answering (exit 0).
    let m = until("a green probe matrix", 60, || {
        let o = Command::new(&lab.crosspod)
            .args(["probe", "--dir"])
            .arg(&lab.dir)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        o.status.success().then_some(out)
    });
    for col in [
        format!("{vm1} v6"),
        format!("{vm2} v6"),
        format!("{vm3} v6"),
        format!("{vm4} v6"),
        format!("upstream {UPSTREAM_V6}"),
    ] {
        assert!(
            m.contains(&col),
            "the probe matrix has no {col} column:\n{m}"
        );
    }

    // Two legs on net2 (its IPv4 and IPv6 interfaces) in one router namespace: only the
    // IPv4 one answers ARP for the IPv4 gateway (else vm2 may cache the IPv6 leg's MAC and
    // lose its gateway when that interface goes).
    let arp = Command::new("ip")
        .args([
            "netns", "exec", &vm2, "arping", "-I", "eth0", "-c", "4", "10.0.2.1",
        ])
        .output()
        .unwrap();
    let macs = e2e::lab::parse_arping(&String::from_utf8_lossy(&arp.stdout));
    assert_eq!(macs.len(), 1, "ARP answers for 10.0.2.1 from {macs:?}");

    // Removing net2's IPv6 interface withdraws its route: vm1 no longer reaches vm2 over IPv6,
    // IPv4 still crosses.
    os(&["router", "remove", "subnet", "router", "net2-v6"]);
    assert!(
        wait_ping(&vm1, &s2, false, Duration::from_secs(30)),
        "vm1 still reaches {s2} after its interface was removed"
    );
    let v4_2 = sh(&vm2, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    let v4_2 = v4_2
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        ping(&vm1, &v4_2, "3"),
        "IPv4 vm1 -> vm2 broke too\n{}\n{}",
        sh(&vm1, &["ip", "route"]),
        lab.logs()
    );
    assert!(ping(&vm4, &s1, "3"), "vm4 -> vm1 broke");
}

/// The global addresses of a router namespace (`ip -6 addr`, link-local included).
fn ns_addrs(ns: &str, family: &str) -> String {
    sh(ns, &["ip", family, "-o", "addr", "show"])
}

fn default_via(vm: &str, family: &str) -> Option<String> {
    let r = sh(vm, &["ip", family, "route", "show", "default"]);
    r.split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .map(str::to_string)
}

#[test]
fn a_stretched_dual_stack_network_leaves_each_pod_by_its_own_instance_for_both_families() {
    let lab = Lab::up("v6s");
    lab.create_pods();
    let admin = lab.admin.clone();
    let os = |args: &[&str]| lab.os(&admin, args);
    dual_stack_ext_net(&lab);
    // One network stretched over both pods (a VLAN on the bridge physnet), dual-stack.
    os(&[
        "network",
        "create",
        "--provider-network-type",
        "vlan",
        "--provider-physical-network",
        "bridge",
        "sn",
    ]);
    os(&[
        "subnet",
        "create",
        "--network",
        "sn",
        "--subnet-range",
        "10.7.0.0/24",
        "sn-v4",
    ]);
    slaac_subnet(&lab, "sn", "fd00:7::/64", "sn-v6");
    os(&["router", "create", "r"]);
    os(&["router", "add", "subnet", "r", "sn-v4"]);
    os(&["router", "add", "subnet", "r", "sn-v6"]);
    os(&["router", "set", "--external-gateway", "ext-net", "r"]);
    let rid = os(&["router", "show", "r", "-f", "value", "-c", "id"])
        .trim()
        .to_string();

    let (vma, vmb) = (lab.ns("vma"), lab.ns("vmb"));
    for (vm, region) in [(&vma, "RegionOne"), (&vmb, "RegionTwo")] {
        lab.crosspod(
            &["vm", "boot", "--region", region, "--network", "sn", vm],
            Some(&admin),
        );
    }
    // Each VM's IPv4 gateway (DHCP option 3) and IPv6 default router (the RA it took) are
    // both legs of its own pod's router instance: v4 and v6 leave by the same router.
    for (vm, node) in [(&vma, "node1"), (&vmb, "node2")] {
        let ns = lab.ns(&format!("{node}-qrouter-{rid}"));
        let gw4 = until(&format!("{vm}'s IPv4 default route"), 30, || {
            default_via(vm, "-4")
        });
        let gw6 = until(&format!("{vm}'s IPv6 default route"), 30, || {
            default_via(vm, "-6")
        });
        assert!(
            ns_addrs(&ns, "-4").contains(&format!(" {gw4}/")),
            "{vm}'s IPv4 gateway {gw4} is not on {node}'s instance"
        );
        assert!(
            gw6.starts_with("fe80::") && ns_addrs(&ns, "-6").contains(&format!(" {gw6}/")),
            "{vm}'s IPv6 router {gw6} is not a leg of {node}'s instance:\n{}",
            ns_addrs(&ns, "-6")
        );
    }
    let aa = one_v6_in(&lab, &vma, "fd00:7::/64").to_string();
    let ab = one_v6_in(&lab, &vmb, "fd00:7::/64").to_string();
    until("vma's SLAAC address", 30, || {
        v6_addrs(&vma)
            .iter()
            .any(|a| a.to_string() == aa)
            .then_some(())
    });
    assert!(
        wait_ping(&vma, &ab, true, Duration::from_secs(30)),
        "vma cannot reach vmb at {ab} on the stretched network"
    );
    lab.crosspod(&["lab", "upstream-routes"], None);
    for vm in [&vma, &vmb] {
        assert!(
            wait_ping(vm, UPSTREAM_V6, true, Duration::from_secs(30)),
            "{vm} cannot reach the upstream\n{}",
            lab.logs()
        );
    }
}
