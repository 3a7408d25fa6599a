//! IPv6 across pods from the agent, with real packets: two nodes (each a namespace with its own
//! OVS and agent) cabled uplink to uplink, router A on node A and router B on node B joined by
//! a dual-stack "bridge" network (VLAN 2001: 100.0.5.0/24 and fd64:0:0:5::/64, the IPv6 bridge
//! addresses derived from the IPv4 ones as the planner does), each with an IPv6 internal
//! network of its own behind it.
//!
//! - The bridge legs carry their IPv6 address (`extra_addresses`) beside the IPv4 one, and
//!   the IPv6 routes (A: fd00:2::/64 via B's bridge address; B: `::/0` via A's) carry a VM's
//!   `ping -6` from behind A to one behind B; removing A's route stops it.
//! - A's internal leg advertises to its `clients` only: the listed VM takes SLAAC and its
//!   default route from the unicast advertisements, the other VM on the same network never
//!   gets one, and its router solicitations are not answered.
//! - A restart with nothing changed writes nothing; A's IPv6 probe of B's bridge address is
//!   reported reachable with a latency, and unreachable once B's leg is down.
//! - A bridge leg coming up sends unsolicited neighbour advertisements (override flag) of its
//!   IPv6 address, seen on the peer's leg.
//!
//! Needs root, Open vSwitch, ethtool and tcpdump.

mod common;

use std::net::SocketAddrV6;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{wait_for, Capture, Node, SlaacVm as Vm};
use plumbing::{icmp6, netns, sysctl, Netns, VethEnd, VethSpec};
use serde_json::{json, Value};

const RA_ID: &str = "0f6e3d2e-1484-4fdb-8e00-0000000006a1";
const RB_ID: &str = "0f6e3d2e-1484-4fdb-8e00-0000000006b1";
const NET_A: &str = "5a1c0e2e-1484-4fdb-8e00-0000000006a6";
const NET_B: &str = "5a1c0e2e-1484-4fdb-8e00-0000000006b6";
const LEG_A_MAC: &str = "fa:16:3e:00:06:a1";
const LEG_A_LL: &str = "fe80::f816:3eff:fe00:6a1";
const LEG_B_LL: &str = "fe80::f816:3eff:fe00:6b1";
/// The VM on A's network that A advertises to.
const MAC1: &str = "fa:16:3e:00:06:11";
/// The VM behind B.
const MAC2: &str = "fa:16:3e:00:06:12";
/// A VM on A's network that A does not serve (another pod's host on a stretched network).
const MAC3: &str = "fa:16:3e:00:06:13";
const VM1_SLAAC: &str = "fd00:a::f816:3eff:fe00:611";
const VM2_SLAAC: &str = "fd00:b::f816:3eff:fe00:612";
const A_BRIDGE6: &str = "fd64:0:0:5::1";
const B_BRIDGE6: &str = "fd64:0:0:5::2";

/// The agent daemon on `node`, its metrics on a free port (several agents run at once).
fn daemon(node: &Node, st: &Value, uplink: &str) -> common::AgentProcess {
    let bind = format!("127.0.0.1:{}", common::free_port());
    node.agent_daemon(
        st,
        uplink,
        &["--metrics-bind", &bind, "--ra-max-interval", "30"],
    )
}

fn mac(s: &str) -> [u8; 6] {
    plumbing::link::parse_mac(s).unwrap()
}

fn advert(prefix: &str, clients: Option<&[&str]>) -> Value {
    let mut a = json!({"prefixes": [{"prefix": prefix, "autonomous": true, "on_link": true}],
           "managed": false, "other_config": false, "router_lifetime": 1800});
    if let Some(c) = clients {
        a["clients"] = json!(c);
    }
    a
}

/// One node's document: its router (`side` "a" or "b") with an IPv6 internal leg and a
/// dual-stack bridge leg, its VM ports; `routes` and `probes` as given.
fn state(tag: &str, side: &str, with_router: bool, routes: Value, probes: Value) -> Value {
    let (rid, net, vlan, n, leg_mac, prefix) = if side == "a" {
        (RA_ID, NET_A, 101, 1, LEG_A_MAC, "fd00:a::/64")
    } else {
        (RB_ID, NET_B, 102, 2, "fa:16:3e:00:06:b1", "fd00:b::/64")
    };
    let clients: Option<&[&str]> = if side == "a" { Some(&[MAC1]) } else { None };
    let internal = json!({"kind": "internal", "bridge": "br-vlan", "tag": vlan,
        "address": format!("{}1/64", &prefix[..prefix.len() - 3]), "mac": leg_mac,
        "ns_ifname": format!("qr{side}{tag}"), "ovs_ifname": format!("vr{side}{tag}"),
        "network_id": net, "subnet_id": format!("s6{side}"),
        "ipv6_ra": advert(prefix, clients)});
    let bridge = json!({"kind": "bridge", "bridge": "br-vlan", "tag": 2001,
        "address": format!("100.0.5.{n}/24"),
        "extra_addresses": [format!("fd64:0:0:5::{n}/64")],
        "mac": format!("fa:16:3e:00:06:b{}", n + 1),
        "ns_ifname": format!("qb{side}{tag}"), "ovs_ifname": format!("vb{side}{tag}")});
    let routers = if with_router {
        json!({rid: {"router_id": rid, "project_id": "p1", "namespace": format!("qrouter-{rid}"),
            "legs": [internal, bridge], "routes": routes, "probe_targets": probes}})
    } else {
        json!({})
    };
    let ports = if side == "a" {
        json!({"port-vm1": {"bridge": "br-vlan", "tag": vlan, "network_id": net, "mac": MAC1,
                            "fixed_ips": [VM1_SLAAC]},
               "port-vm3": {"bridge": "br-vlan", "tag": vlan, "network_id": net, "mac": MAC3,
                            "fixed_ips": []}})
    } else {
        json!({"port-vm2": {"bridge": "br-vlan", "tag": vlan, "network_id": net, "mac": MAC2,
                            "fixed_ips": [VM2_SLAAC]}})
    };
    json!({
        "node": "n1", "pod": "RegionOne", "revision": 3,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": true, "trunks": [2001]}},
        "ports": ports, "routers": routers
    })
}

fn state_a(tag: &str, with_route: bool) -> Value {
    let routes = if with_route {
        json!([{"destination": "fd00:b::/64", "nexthop": B_BRIDGE6}])
    } else {
        json!([])
    };
    state(
        tag,
        "a",
        true,
        routes,
        json!([{"address": B_BRIDGE6, "kind": "bridge_instance", "label": "b@RegionTwo"}]),
    )
}

fn state_b(tag: &str) -> Value {
    state(
        tag,
        "b",
        true,
        json!([{"destination": "::/0", "nexthop": A_BRIDGE6}]),
        json!([{"address": A_BRIDGE6, "kind": "bridge_instance", "label": "a@RegionOne"}]),
    )
}

/// A router solicitation from eth0's link-local address; the answer, if one comes within
/// `wait`.
fn solicit_from(vm: &Vm, vm_mac: [u8; 6], wait: Duration) -> Option<Vec<u8>> {
    let s = icmp6::open_in(&Netns::named(vm.ns.clone()), "eth0", &[134]).unwrap();
    icmp6::bind_link_local(&s.socket, s.link_local.unwrap(), s.ifindex).unwrap();
    s.socket.set_nonblocking(false).unwrap();
    s.socket.set_read_timeout(Some(wait)).unwrap();
    let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    rs.extend_from_slice(&vm_mac);
    let to = SocketAddrV6::new(icmp6::ALL_ROUTERS, 0, 0, s.ifindex);
    s.socket.send_to(&rs, &to.into()).unwrap();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
    let (n, _) = s.socket.recv_from(&mut buf).ok()?;
    // SAFETY: recv_from initialised the first n bytes.
    Some(
        buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect(),
    )
}

/// `ping -6` from `vm` to `target`, a few tries.
fn ping6(vm: &Vm, target: &str, tries: u32) -> bool {
    let opts = plumbing::ProbeOptions {
        timeout: Duration::from_millis(700),
        retries: tries,
    };
    plumbing::probe::icmp(
        &Netns::named(vm.ns.clone()),
        "eth0",
        target.parse().unwrap(),
        &opts,
    )
    .map(|r| r.ok())
    .unwrap_or(false)
}

/// `tcpdump -v` of ICMPv6 on `ifname` in `ns`, line-buffered.
/// Unsolicited neighbour advertisements (override, not solicited) of `target` in a capture.
fn unsolicited_nas(capture: &str, target: &str) -> usize {
    capture
        .lines()
        .filter(|l| {
            l.contains("neighbor advertisement")
                && l.contains(&format!("tgt is {target},"))
                && l.contains("override")
                && !l.contains("solicited")
        })
        .count()
}

fn probe_of<'a>(summary: &'a Value, target: &str) -> &'a Value {
    summary["report"]["probes"]
        .as_array()
        .unwrap_or_else(|| panic!("no probes: {summary:#}"))
        .iter()
        .find(|p| p["target"] == target)
        .unwrap_or_else(|| panic!("no probe of {target}: {summary:#}"))
}

#[test]
fn dual_stack_bridge_legs_route_ipv6_between_pods_and_advertise_only_to_their_clients() {
    let (a, b) = (Node::start(), Node::start());
    let tag = format!("{}", std::process::id() % 10_000);
    // The cable: A's uplink to B's uplink (VLAN 2001 trunked on both).
    let (up_a, up_b) = (format!("ua{tag}"), format!("ub{tag}"));
    plumbing::link::create_veth(&VethSpec {
        a: VethEnd::new(up_a.clone(), Netns::named(a.ns.clone())),
        b: VethEnd::new(up_b.clone(), Netns::named(b.ns.clone())),
        owner: "test-cable".into(),
    })
    .unwrap();
    let ns_a = format!("{}qrouter-{RA_ID}", a.prefix);
    let ns_b = format!("{}qrouter-{RB_ID}", b.prefix);

    let mut agent_a = daemon(&a, &state_a(&tag, true), &up_a);
    let mut agent_b = daemon(&b, &state_b(&tag), &up_b);
    for (n, ag) in [(&a, &agent_a), (&b, &agent_b)] {
        let got = n.wait_vsctl(&["list-br"], "br-vlan", Duration::from_secs(30));
        assert_eq!(got, "br-vlan", "no br-vlan; agent log:\n{}", ag.log());
    }
    let vm1 = Vm::new(&a, "vm1", &format!("t1{tag}"), MAC1, "port-vm1");
    let vm3 = Vm::new(&a, "vm3", &format!("t3{tag}"), MAC3, "port-vm3");
    let vm2 = Vm::new(&b, "vm2", &format!("t2{tag}"), MAC2, "port-vm2");

    // The bridge legs are dual-stack: the IPv6 address beside the IPv4 one, usable at once
    // (no duplicate address detection), kept when the link goes down.
    wait_for("A's bridge leg", Duration::from_secs(30), || {
        netns::exists(&ns_a)
            && Command::new("ip")
                .args([
                    "-n",
                    &ns_a,
                    "-6",
                    "addr",
                    "show",
                    "dev",
                    &format!("qba{tag}"),
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("fd64:0:0:5::1/64"))
                .unwrap_or(false)
    });
    let out = Command::new("ip")
        .args(["-n", &ns_a, "addr", "show", "dev", &format!("qba{tag}")])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(addrs.contains("inet 100.0.5.1/24"), "{addrs}");
    assert!(
        addrs.contains("fd64:0:0:5::1/64 scope global nodad"),
        "{addrs}"
    );
    assert!(
        !addrs.contains("fd64:0:0:5::1/64 scope global tentative"),
        "{addrs}"
    );
    assert_eq!(
        sysctl::get(
            &Netns::named(ns_a.clone()),
            &format!("net.ipv6.conf.qba{tag}.keep_addr_on_down")
        )
        .unwrap(),
        "1"
    );
    let routes = Command::new("ip")
        .args(["-n", &ns_b, "-6", "route", "show", "default"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).to_string();
    assert!(
        routes.contains(&format!("default via {A_BRIDGE6} dev qbb{tag} proto 203")),
        "B's ::/0, owned: {routes}"
    );

    // Router advertisements: vm1 (a client) takes SLAAC and the default route from A's
    // unicast advertisements; vm2 from B's multicast ones.
    let t0 = Instant::now();
    wait_for("vm1's default route via A", Duration::from_secs(30), || {
        vm1.default_route()
            .contains(&format!("via {LEG_A_LL} dev eth0"))
    });
    eprintln!(
        "MEASURE vm1 default route from unicast RAs after {:?}",
        t0.elapsed()
    );
    wait_for("vm1's SLAAC address", Duration::from_secs(10), || {
        vm1.ip(&["-6", "addr", "show", "dev", "eth0"])
            .contains(&format!("{VM1_SLAAC}/64"))
    });
    wait_for("vm2's default route via B", Duration::from_secs(30), || {
        vm2.default_route()
            .contains(&format!("via {LEG_B_LL} dev eth0"))
    });
    wait_for(
        "vm2's SLAAC address past DAD",
        Duration::from_secs(10),
        || {
            let a = vm2.ip(&["-6", "addr", "show", "dev", "eth0"]);
            a.contains(&format!("{VM2_SLAAC}/64")) && !a.contains("tentative")
        },
    );

    // Across the dual-stack bridge network: vm1 -> A -> fd64::2 (B) -> vm2, back by B's ::/0.
    assert!(
        ping6(&vm1, VM2_SLAAC, 10),
        "vm1 cannot reach vm2 over IPv6\nA routes: {}\nagent A log:\n{}",
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-n", &ns_a, "-6", "route"])
                .output()
                .unwrap()
                .stdout
        ),
        agent_a.log()
    );

    // vm3 is on the same network but not a client: nothing, even when it asks.
    vm3.wait_link_local();
    assert_eq!(
        solicit_from(&vm3, mac(MAC3), Duration::from_secs(3)),
        None,
        "a host A does not serve got an answer"
    );
    let ra = solicit_from(&vm1, mac(MAC1), Duration::from_secs(3))
        .expect("the client's solicitation is answered");
    assert_eq!((ra[0], u16::from_be_bytes([ra[6], ra[7]])), (134, 1800));
    assert!(vm3.default_route().is_empty(), "{}", vm3.default_route());
    assert!(
        !vm3.ip(&["-6", "addr", "show", "dev", "eth0"])
            .contains("fd00:a::"),
        "vm3 took SLAAC: {}",
        vm3.ip(&["-6", "addr"])
    );

    // A restart with nothing changed writes nothing; A's IPv6 probe of B's bridge address
    // (neighbour discovery, then ICMPv6 echo) is reported reachable.
    agent_a.kill9();
    let (once, ok) = a.agent_once(&state_a(&tag, true), &up_a);
    assert!(ok, "{once:#}");
    assert_eq!(once["linux_changes"], 0, "{once:#}");
    assert_eq!(once["ovs_changes"], 0, "{once:#}");
    let p = probe_of(&once, B_BRIDGE6);
    assert_eq!(p["reachable"], true, "{once:#}");
    assert!(p["latency_us"].as_u64().is_some(), "{p}");
    eprintln!(
        "MEASURE IPv6 probe of B's bridge address: {} us",
        p["latency_us"]
    );

    // A's route removed: vm1 no longer reaches vm2; owned routes only are touched (the
    // kernel's connected fd64:0:0:5::/64 stays).
    let (once, ok) = a.agent_once(&state_a(&tag, false), &up_a);
    assert!(ok, "{once:#}");
    assert_eq!(once["linux_changes"], 1, "{once:#}");
    assert!(
        !ping6(&vm1, VM2_SLAAC, 2),
        "vm2 still reached without the route"
    );
    let routes = Command::new("ip")
        .args(["-n", &ns_a, "-6", "route"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).to_string();
    assert!(!routes.contains("fd00:b::/64"), "{routes}");
    assert!(routes.contains("fd64:0:0:5::/64 dev"), "{routes}");
    // And back.
    let mut agent_a = daemon(&a, &state_a(&tag, true), &up_a);
    wait_for("vm2 reached again", Duration::from_secs(20), || {
        ping6(&vm1, VM2_SLAAC, 1)
    });

    // Failover's announcement: A's bridge leg comes up again (the router leaves the node and
    // comes back) and announces its IPv6 address with unsolicited neighbour advertisements,
    // seen on B's bridge leg across the cable.
    let cap = Capture::start(&ns_b, &format!("qbb{tag}"), &["-v", "icmp6"]);
    a.write_desired(&state(&tag, "a", false, json!([]), json!([])));
    wait_for("A's router to go", Duration::from_secs(20), || {
        !netns::exists(&ns_a)
    });
    a.write_desired(&state_a(&tag, true));
    wait_for("A's router back", Duration::from_secs(20), || {
        ping6(&vm1, VM2_SLAAC, 1)
    });
    std::thread::sleep(Duration::from_millis(500));
    let captured = cap.finish();
    assert_eq!(
        unsolicited_nas(&captured, A_BRIDGE6),
        3,
        "{captured}\nagent A log:\n{}",
        agent_a.log()
    );
    assert!(
        captured.contains(&format!("tgt is {A_BRIDGE6}, Flags [router, override]")),
        "{captured}"
    );

    // B's bridge leg down (B's agent stopped, so nothing brings it back): A's probe reports
    // B's bridge address unreachable.
    agent_a.kill9();
    agent_b.kill9();
    let st = Command::new("ip")
        .args(["-n", &ns_b, "link", "set", &format!("qbb{tag}"), "down"])
        .status()
        .unwrap();
    assert!(st.success());
    // keep_addr_on_down: the IPv6 address stays while the leg is down, as the IPv4 one does.
    let kept = Command::new("ip")
        .args(["-n", &ns_b, "addr", "show", "dev", &format!("qbb{tag}")])
        .output()
        .unwrap();
    let kept = String::from_utf8_lossy(&kept.stdout).to_string();
    assert!(
        kept.contains("fd64:0:0:5::2/64") && kept.contains("100.0.5.2/24"),
        "{kept}"
    );
    let (once, _) = a.agent_once(&state_a(&tag, true), &up_a);
    let p = probe_of(&once, B_BRIDGE6);
    assert_eq!(p["reachable"], false, "{once:#}");
    assert_eq!(once["linux_changes"], 0, "{once:#}");
    // B's agent brings its leg back, with its IPv6 address (kept while down): reachable.
    let (once_b, ok) = b.agent_once(&state_b(&tag), &up_b);
    assert!(ok, "{once_b:#}");
    assert!(once_b["linux_changes"].as_u64() >= Some(1), "{once_b:#}");
    let addrs = Command::new("ip")
        .args([
            "-n",
            &ns_b,
            "-6",
            "addr",
            "show",
            "dev",
            &format!("qbb{tag}"),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&addrs.stdout).contains("fd64:0:0:5::2/64"),
        "{}",
        String::from_utf8_lossy(&addrs.stdout)
    );
    let (once, _) = a.agent_once(&state_a(&tag, true), &up_a);
    assert_eq!(probe_of(&once, B_BRIDGE6)["reachable"], true, "{once:#}");
}
