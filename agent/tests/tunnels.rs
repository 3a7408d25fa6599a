//! VxLAN between nodes for real: three nodes (each a namespace with its own ovsdb-server and
//! ovs-vswitchd, userspace datapath) on an underlay switch (a fourth OVS), tunnel endpoints on
//! `br-phy` as in `shared/lab-recipe.md`, VMs as namespaces, the agent binary run with
//! `--once` against desired-state files. Node A shares VNI 1001 with B and VNI 1002 with C;
//! B and C share nothing.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ping, underlay, underlay_switch, ChildGuard, Node, ROUTER};
use plumbing::{Handle, Netns};
use serde_json::{json, Value};

const A: &str = "192.168.50.1";
const B: &str = "192.168.50.2";
const C: &str = "192.168.50.3";

fn port(tag: u16, mac: &str, ip: &str) -> Value {
    json!({"bridge": "br-vlan", "tag": tag, "network_id": format!("net{tag}"), "mac": mac,
           "fixed_ips": [ip]})
}

fn seg(tag: u16, peers: &[&str]) -> Value {
    json!({"tag": tag, "network_id": "n", "peers": peers})
}

fn state(rev: u64, local: &str, ports: Value, segments: Option<Value>, routers: Value) -> Value {
    let mut s = json!({
        "node": "n1", "pod": "RegionOne", "revision": rev,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": false, "trunks": []}},
        "ports": ports, "routers": routers
    });
    if let Some(segments) = segments {
        s["tunnels"] = json!({"local_ip": local, "bridge": "br-vlan", "segments": segments});
    }
    s
}

/// Router on A with a leg on segment 1001 (tag 7), MTU 1450.
fn router() -> Value {
    json!({ROUTER: {
        "router_id": ROUTER, "project_id": "p1", "namespace": format!("qrouter-{ROUTER}"),
        "legs": [{"kind": "internal", "bridge": "br-vlan", "tag": 7, "address": "10.0.1.254/24",
                  "mac": "fa:16:3e:00:07:fe", "ns_ifname": "qr-vx", "ovs_ifname": "vr-vx",
                  "network_id": "net7", "subnet_id": "s7", "mtu": 1450}],
        "routes": []
    }})
}

fn state_a(rev: u64, with_c: bool) -> Value {
    let mut ports = json!({"pa1": port(7, "fa:16:3e:00:0a:01", "10.0.1.1")});
    let mut segs = json!({"1001": seg(7, &[B])});
    if with_c {
        ports["pa2"] = port(8, "fa:16:3e:00:0a:02", "10.0.2.1");
        segs["1002"] = seg(8, &[C]);
    }
    state(rev, A, ports, Some(segs), router())
}

fn state_b() -> Value {
    let ports = json!({"pb1": port(5, "fa:16:3e:00:0b:01", "10.0.1.2")});
    state(1, B, ports, Some(json!({"1001": seg(5, &[A])})), json!({}))
}

fn state_c(with_tunnels: bool) -> Value {
    let ports = json!({"pc1": port(9, "fa:16:3e:00:0c:01", "10.0.2.3")});
    let segs = with_tunnels.then(|| json!({"1002": seg(9, &[A])}));
    state(1, C, ports, segs, json!({}))
}

fn once(node: &Node, st: &Value, ip: &str) -> Value {
    let (summary, ok) = node.agent_once_with(st, "eth1", &["--local-ip", ip]);
    assert!(ok, "agent pass failed: {summary:#}");
    summary
}

fn ports_of(node: &Node, bridge: &str) -> Vec<String> {
    let mut p: Vec<String> = node
        .vsctl(&["list-ports", bridge])
        .lines()
        .map(str::to_string)
        .collect();
    p.sort();
    p
}

fn dump_flows(node: &Node, bridge: &str, filter: &str) -> String {
    let out = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow14", "dump-flows"])
        .arg(format!(
            "unix:{}",
            node.sb().dir().join(format!("{bridge}.mgmt")).display()
        ))
        .args((!filter.is_empty()).then_some(filter))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn mtu(ns: &str, ifname: &str) -> u32 {
    Handle::new(&Netns::named(ns.to_string()))
        .unwrap()
        .link(ifname)
        .unwrap()
        .unwrap_or_else(|| panic!("{ifname} in {ns}"))
        .mtu
}

/// `tcpdump` of VxLAN on a node's underlay port, line-buffered.
fn capture(node: &Node) -> std::process::Child {
    let child = Command::new("ip")
        .args(["netns", "exec", &node.ns, "tcpdump", "-l", "-n", "-i", "u0"])
        .args(["udp", "port", "4789"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1500));
    child
}

fn captured(mut child: std::process::Child) -> String {
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    out
}

#[test]
fn vxlan_segments_cross_nodes_only_to_their_peers() {
    let sw = underlay_switch();
    let (a, b, c) = (Node::start(), Node::start(), Node::start());
    underlay(&sw, &a, 1, A);
    underlay(&sw, &b, 2, B);
    underlay(&sw, &c, 3, C);
    a.vm(
        "vm1",
        "tapa1",
        "10.0.1.1/24",
        "10.0.1.254",
        "fa:16:3e:00:0a:01",
    );
    a.vm(
        "vm2",
        "tapa2",
        "10.0.2.1/24",
        "10.0.2.254",
        "fa:16:3e:00:0a:02",
    );
    b.vm(
        "vm1",
        "tapb1",
        "10.0.1.2/24",
        "10.0.1.254",
        "fa:16:3e:00:0b:01",
    );
    c.vm(
        "vm1",
        "tapc1",
        "10.0.2.3/24",
        "10.0.2.254",
        "fa:16:3e:00:0c:01",
    );
    a.plug("tapa1", "pa1");
    a.plug("tapa2", "pa2");
    b.plug("tapb1", "pb1");
    c.plug("tapc1", "pc1");

    once(&a, &state_a(1, true), A);
    once(&b, &state_b(), B);
    once(&c, &state_c(true), C);

    // One VxLAN port per peer, and none to a node that shares nothing.
    assert_eq!(
        ports_of(&a, "br-tun"),
        ["patch-int", "vx-c0a83202", "vx-c0a83203"]
    );
    assert_eq!(ports_of(&b, "br-tun"), ["patch-int", "vx-c0a83201"]);
    assert_eq!(ports_of(&c, "br-tun"), ["patch-int", "vx-c0a83201"]);
    assert_eq!(
        a.vsctl(&["get", "interface", "vx-c0a83203", "type", "options"]),
        "vxlan\n{key=flow, local_ip=\"192.168.50.1\", remote_ip=\"192.168.50.3\"}"
    );
    assert_eq!(a.vsctl(&["get", "port", "patch-tun", "trunks"]), "[7, 8]");
    assert_eq!(b.vsctl(&["get", "port", "patch-tun", "trunks"]), "[5]");
    assert_eq!(
        a.vsctl(&["get", "bridge", "br-tun", "fail_mode", "external_ids"]),
        "secure\n{crosspod-owner=agent}"
    );

    let (vm_a1, vm_a2) = (format!("{}vm1", a.prefix), format!("{}vm2", a.prefix));
    let (vm_b, vm_c) = (format!("{}vm1", b.prefix), format!("{}vm1", c.prefix));
    let (cap_b, cap_c) = (capture(&b), capture(&c));
    let cap_b = ChildGuardOwned(Some(cap_b));
    let cap_c = ChildGuardOwned(Some(cap_c));
    assert!(ping(&vm_a1, "10.0.1.2"), "A → B over VNI 1001");
    assert!(ping(&vm_b, "10.0.1.254"), "B → the router leg on A");
    // Broadcast on 1001 (ARP for an address nobody has) is replicated to B only.
    assert!(!ping(&vm_a1, "10.0.1.99"));
    assert!(ping(&vm_a2, "10.0.2.3"), "A → C over VNI 1002");
    assert!(ping(&vm_c, "10.0.2.1"), "C → A over VNI 1002");
    let (seen_b, seen_c) = (cap_b.finish(), cap_c.finish());
    assert!(
        seen_b.contains("VXLAN, flags [I] (0x08), vni 1001"),
        "{seen_b}"
    );
    assert!(!seen_b.contains("vni 1002"), "{seen_b}");
    assert!(seen_c.contains("vni 1002"), "{seen_c}");
    assert!(
        !seen_c.contains("vni 1001"),
        "C got packets of a segment it does not have:\n{seen_c}"
    );
    // B learned where A's MAC is: a learned flow, in the cookie space no diff deletes.
    let learned = dump_flows(&b, "br-tun", "cookie=0x6372000000000000/-1");
    assert!(learned.contains("dl_dst=fa:16:3e:00:0a:01"), "{learned}");

    // The leg's MTU, on both ends.
    let rns = common::router_ns(&a);
    assert_eq!(mtu(&rns, "qr-vx"), 1450);
    assert_eq!(mtu(&a.ns, "vr-vx"), 1450);

    // Restart with nothing changed: no write of any kind.
    for (node, st, ip) in [
        (&a, state_a(1, true), A),
        (&b, state_b(), B),
        (&c, state_c(true), C),
    ] {
        let s = once(node, &st, ip);
        for k in [
            "ovs_changes",
            "linux_changes",
            "flows_added",
            "flows_deleted",
            "ovsdb_write_transactions",
        ] {
            assert_eq!(s[k], 0, "{k} on restart: {s:#}");
        }
    }
    assert!(!dump_flows(&b, "br-tun", "cookie=0x6372000000000000/-1").is_empty());

    // A no longer shares 1002 with C: the port to C and its flows go, 1001 still works.
    let s = once(&a, &state_a(2, false), A);
    assert!(s["flows_deleted"].as_u64().unwrap() > 0, "{s:#}");
    assert_eq!(ports_of(&a, "br-tun"), ["patch-int", "vx-c0a83202"]);
    assert_eq!(a.vsctl(&["get", "port", "patch-tun", "trunks"]), "[7]");
    let flows = dump_flows(&a, "br-tun", "");
    assert!(
        !flows.contains("0x3ea") && !flows.contains("dl_vlan=8"),
        "{flows}"
    );
    assert!(ping(&vm_a1, "10.0.1.2"));
    assert!(!ping(&vm_a2, "10.0.2.3"));

    // No tunnels at all on C: its tunnel bridge goes, the VMs' bridge stays.
    let s = once(&c, &state_c(false), C);
    assert!(s["ovs_changes"].as_u64().unwrap() > 0, "{s:#}");
    let bridges = c.vsctl(&["list-br"]);
    assert!(!bridges.contains("br-tun"), "{bridges}");
    assert!(!ports_of(&c, "br-vlan").contains(&"patch-tun".to_string()));
    assert!(bridges.contains("br-vlan"), "{bridges}");
}

#[test]
fn tunnels_without_the_right_local_ip_are_a_reported_error_and_the_rest_applies() {
    let node = Node::start();
    let st = state(
        1,
        A,
        json!({}),
        Some(json!({"1001": seg(7, &[B])})),
        json!({}),
    );
    let (s, ok) = node.agent_once_with(&st, "eth1", &[]);
    assert!(!ok);
    let errors = s["report"]["errors"].to_string();
    assert!(errors.contains("--local-ip"), "{s:#}");
    assert!(
        node.vsctl(&["list-br"]).contains("br-vlan"),
        "the rest applied"
    );
    assert!(!node.vsctl(&["list-br"]).contains("br-tun"));
    let (s, ok) = node.agent_once_with(&st, "eth1", &["--local-ip", C]);
    assert!(!ok);
    let errors = s["report"]["errors"].to_string();
    assert!(errors.contains(C) && errors.contains(A), "{s:#}");
}

/// Kills a capture on drop (a failed assertion still ends tcpdump).
struct ChildGuardOwned(Option<std::process::Child>);

impl ChildGuardOwned {
    fn finish(mut self) -> String {
        captured(self.0.take().unwrap())
    }
}

impl Drop for ChildGuardOwned {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = ChildGuard(&mut c);
        }
    }
}

fn tunnel_flows(node: &Node) -> usize {
    if !node.sb().dir().join("br-tun.mgmt").exists() {
        return 0;
    }
    dump_flows(
        node,
        "br-tun",
        "cookie=0x6371000000000000/0xffff000000000000",
    )
    .lines()
    .filter(|l| l.contains("cookie=0x6371"))
    .count()
}

#[test]
fn the_daemon_rewrites_the_tunnel_flows_after_ovs_vswitchd_restarts() {
    let node = Node::start();
    let st = state(
        1,
        A,
        json!({}),
        Some(json!({"1001": seg(7, &[B, C]), "1002": seg(8, &[C])})),
        json!({}),
    );
    let agent = node.agent_daemon(&st, "eth1", &["--local-ip", A, "--metrics-bind", ""]);
    let wait = |want: &dyn Fn(usize) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let n = tunnel_flows(&node);
            if want(n) || std::time::Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // 5 defaults, 4 for the patch port and learning, 2 floods, 3 (peer, VNI), 2 classify.
    let n = wait(&|n| n == 16);
    assert_eq!(n, 16, "{}", agent.log());
    node.sb().stop_vswitchd().unwrap();
    node.sb().start_vswitchd().unwrap();
    let back = wait(&|m| m == n);
    assert_eq!(back, n, "tunnel flows not restored: {}", agent.log());
    assert_eq!(
        ports_of(&node, "br-tun"),
        ["patch-int", "vx-c0a83202", "vx-c0a83203"]
    );
}

/// Scale: 100 VxLAN segments shared with 19 peers (a 20-node cloud where every node has every
/// network), one node, the real agent. Run with `--ignored --nocapture` to see the timings.
#[test]
#[ignore = "measurement: cargo test -p agent --test tunnels -- --ignored --nocapture"]
fn a_hundred_segments_with_nineteen_peers() {
    let node = Node::start();
    let peers: Vec<String> = (2..=20).map(|i| format!("192.168.50.{i}")).collect();
    let peer_refs: Vec<&str> = peers.iter().map(String::as_str).collect();
    let mut segs = serde_json::Map::new();
    for i in 0..100u16 {
        segs.insert((5001 + u32::from(i)).to_string(), seg(100 + i, &peer_refs));
    }
    let st = state(1, A, json!({}), Some(Value::Object(segs)), json!({}));
    let t = std::time::Instant::now();
    let first = once(&node, &st, A);
    let first_t = t.elapsed();
    let t = std::time::Instant::now();
    let again = once(&node, &st, A);
    let again_t = t.elapsed();
    let ports = ports_of(&node, "br-tun");
    assert_eq!(ports.len(), 19 + 1, "{ports:?}");
    // 5 defaults + 4 (patch, learning) + 100 floods + 100 × 19 (peer, VNI) + 19 classify.
    assert_eq!(first["flows_desired"], 2028, "{first:#}");
    assert_eq!(tunnel_flows(&node), 2028);
    assert_eq!(again["flows_added"], 0);
    assert_eq!(again["ovsdb_write_transactions"], 0);
    eprintln!(
        "100 segments x 19 peers: first pass {first_t:?} ({} OVS changes, {} flows), \
         restart pass {again_t:?} (0 writes)",
        first["ovs_changes"], first["flows_added"]
    );
}
