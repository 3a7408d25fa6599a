//! Security groups and port security on a real node: ovsdb-server + ovs-vswitchd (userspace
//! datapath, conntrack in ovs-vswitchd) per test, VMs as namespaces plugged into br-vlan, the
//! agent run with `--once` on hand-written desired states, real packets (ICMP, TCP, raw ARP
//! frames) between the VMs. Needs root and Open vSwitch.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use agent::firewall::{COOKIE_BASE, COOKIE_MASK};
use common::{ping, Node};
use ovs::openflow::OfConn;
use serde_json::{json, Value};

const PY: &str = "/usr/bin/python3";
const MAC1: &str = "fa:16:3e:00:00:11";
const MAC2: &str = "fa:16:3e:00:00:12";

fn vm_ns(node: &Node, name: &str) -> String {
    format!("{}{name}", node.prefix)
}

fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// Echo server on `port` in `ns`, killed on drop.
struct Bg(std::process::Child);
impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SERVER: &str = r#"
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
def serve(c):
    while True:
        d = c.recv(100)
        if not d: return
        c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

const CONNECT: &str = r#"
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.sendall(b"x"); print(s.recv(10).decode())
except Exception as e:
    print("fail", e); sys.exit(1)
"#;

const CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print("connected", flush=True)
for line in sys.stdin:
    s.sendall(line.strip().encode())
    try:
        d = s.recv(100); print("ok" if d else "closed", flush=True)
    except socket.timeout:
        print("timeout", flush=True)
"#;

const ARP_SEND: &str = r#"
import socket, sys
def mac(m): return bytes.fromhex(m.replace(":", ""))
dev, eth_src, sha, spa, dst, tpa = sys.argv[1:7]
f = mac(dst) + mac(eth_src) + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x02" \
    + mac(sha) + socket.inet_aton(spa) + mac(dst) + socket.inet_aton(tpa)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((dev, 0))
for _ in range(3): s.send(f)
"#;

const ARP_COUNT: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)); s.bind((sys.argv[1], 0))
s.settimeout(0.2)
want = socket.inet_aton(sys.argv[2]); end = time.time() + float(sys.argv[3]); n = 0
print("ready", flush=True)
while time.time() < end:
    try: d = s.recv(200)
    except socket.timeout: continue
    if d[12:14] == b"\x08\x06" and d[28:32] == want: n += 1
print(n, flush=True)
"#;

/// Turns off TX checksum offload on `eth0` (ETHTOOL_STXCSUM through SIOCETHTOOL): a veth
/// otherwise hands ovs-vswitchd's userspace datapath TCP segments with partial checksums, which
/// its conntrack marks invalid (a kernel datapath or a real VM's tap does not have this).
/// Setting `other_config:userspace-tso-enable=true` before ovs-vswitchd starts fixes it on the
/// switch side instead (tried: TCP then passes with offload on); this test does not restart
/// vswitchd for that.
const TX_CSUM_OFF: &str = r#"
import array, fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ev = array.array("B", struct.pack("II", 0x17, 0))
ifr = struct.pack("16sP", b"eth0", ev.buffer_info()[0]) + bytes(16)
fcntl.ioctl(s.fileno(), 0x8946, ifr)
"#;

fn tx_csum_off(ns: &str) {
    let o = in_ns(ns, &[PY, "-c", TX_CSUM_OFF]);
    assert!(o.status.success(), "{o:?}");
}

const UDP_COUNT: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(0.2); end = time.time() + float(sys.argv[2]); n = 0
print("ready", flush=True)
while time.time() < end:
    try: s.recv(100); n += 1
    except socket.timeout: pass
print(n, flush=True)
"#;

const UDP_SEND: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
for _ in range(3): s.sendto(b"offer", (sys.argv[3], int(sys.argv[4])))
"#;

/// ICMPv6 of type argv[1] to ff02::1 on eth0 (an RA: 134, an echo request: 128).
const ICMP6_ALL_NODES: &str = r#"
import socket, struct, sys
t = int(sys.argv[1])
body = struct.pack("!BBHBBHII", t, 0, 0, 64, 0, 0, 0, 0) if t == 134 else struct.pack("!BBHHH", t, 0, 0, 1, 1)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
for _ in range(3): s.sendto(body, ("ff02::1", 0, 0, socket.if_nametoindex("eth0")))
"#;

/// A counter of `ns`'s /proc/net/snmp6.
fn snmp6(ns: &str, name: &str) -> u64 {
    let out = String::from_utf8(in_ns(ns, &["cat", "/proc/net/snmp6"]).stdout).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("{name} not in snmp6"))
}

/// UDP datagrams from `src_port` in `from` that reach port 68 in `to`.
fn udp_seen(from: &str, src: &str, src_port: u16, to: &str, dst: &str) -> u64 {
    let mut c = Command::new("ip")
        .args(["netns", "exec", to, PY, "-c", UDP_COUNT, "68", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let o = in_ns(
        from,
        &[PY, "-c", UDP_SEND, src, &src_port.to_string(), dst, "68"],
    );
    assert!(o.status.success(), "{o:?}");
    line.clear();
    r.read_line(&mut line).unwrap();
    c.wait().unwrap();
    line.trim().parse().unwrap()
}

fn server(ns: &str, port: u16) -> Bg {
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns, PY, "-c", SERVER, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    Bg(c)
}

fn tcp_ok(ns: &str, ip: &str, port: u16) -> bool {
    in_ns(ns, &[PY, "-c", CONNECT, ip, &port.to_string()])
        .status
        .success()
}

/// ICMP echo requests received in `ns` so far (its /proc/net/snmp).
fn in_echos(ns: &str) -> u64 {
    let out = String::from_utf8(in_ns(ns, &["cat", "/proc/net/snmp"]).stdout).unwrap();
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("Icmp:")).collect();
    let names: Vec<&str> = lines[0].split_whitespace().collect();
    let vals: Vec<&str> = lines[1].split_whitespace().collect();
    let i = names.iter().position(|n| *n == "InEchos").unwrap();
    vals[i].parse().unwrap()
}

fn port(tag: u16, mac: &str, ips: &[&str], sec: Option<(&[&str], u16)>) -> Value {
    let mut p = json!({"bridge": "br-vlan", "tag": tag, "network_id": format!("net{tag}"),
                       "mac": mac, "fixed_ips": ips});
    if let Some((groups, zone)) = sec {
        let allowed: Vec<Value> = ips
            .iter()
            .map(|ip| {
                let plen = if ip.contains(':') { 128 } else { 32 };
                json!({"mac": mac, "ip": format!("{ip}/{plen}")})
            })
            .collect();
        p["security"] = json!({"allowed": allowed, "security_groups": groups, "ct_zone": zone});
    }
    p
}

fn rule(id: &str, dir: &str, eth: &str) -> Value {
    json!({"id": id, "direction": dir, "ethertype": eth})
}

/// Neutron's default group: all egress, ingress from members of the group (IPv4 and IPv6).
fn default_group(members: &[&str]) -> Value {
    let mut i4 = rule("d-in4", "ingress", "IPv4");
    i4["remote_group_id"] = json!("default");
    let mut i6 = rule("d-in6", "ingress", "IPv6");
    i6["remote_group_id"] = json!("default");
    let members: Vec<String> = members
        .iter()
        .map(|m| {
            if m.contains(':') {
                format!("{m}/128")
            } else {
                format!("{m}/32")
            }
        })
        .collect();
    json!({"rules": [i4, i6, rule("d-out4", "egress", "IPv4"), rule("d-out6", "egress", "IPv6")],
           "members": members})
}

fn state(revision: u64, ports: Value, groups: Value) -> Value {
    json!({
        "node": "n1", "pod": "RegionOne", "revision": revision,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": false, "trunks": []}},
        "ports": ports, "routers": {}, "security_groups": groups
    })
}

/// One agent pass; when it wrote flows, waits for ovs-vswitchd to revalidate its cached
/// datapath flows (asynchronous, milliseconds; see the established-connection test).
fn once(node: &Node, st: &Value) -> Value {
    let (summary, ok) = node.agent_once(st, "none0");
    assert!(ok, "agent pass failed: {summary}");
    let wrote = summary["flows_added"].as_u64().unwrap_or(0)
        + summary["flows_deleted"].as_u64().unwrap_or(0);
    if wrote > 0 {
        std::thread::sleep(Duration::from_millis(600));
    }
    summary
}

/// Two VMs on one network (tag 101, zone 1), plugged and with a first pass applied.
fn two_vms(node: &Node) -> (String, String) {
    once(node, &state(0, json!({}), json!({}))); // the bridge
    node.vm("vm1", "tfw1", "10.0.1.11/24", "10.0.1.1", MAC1);
    node.vm("vm2", "tfw2", "10.0.1.12/24", "10.0.1.1", MAC2);
    node.plug("tfw1", "port-vm1");
    node.plug("tfw2", "port-vm2");
    let (a, b) = (vm_ns(node, "vm1"), vm_ns(node, "vm2"));
    tx_csum_off(&a);
    tx_csum_off(&b);
    (a, b)
}

fn web_group(extra_rules: &[Value]) -> Value {
    let mut tcp = rule("w-tcp8080", "ingress", "IPv4");
    tcp["protocol"] = json!(6);
    tcp["port_range_min"] = json!(8080);
    tcp["port_range_max"] = json!(8080);
    let mut rules = vec![rule("w-out4", "egress", "IPv4"), tcp];
    rules.extend(extra_rules.iter().cloned());
    json!({"rules": rules})
}

fn icmp_rule() -> Value {
    let mut r = rule("w-icmp", "ingress", "IPv4");
    r["protocol"] = json!(1);
    r
}

#[test]
fn rules_open_exactly_what_they_allow_and_a_restart_writes_no_flow() {
    let node = Node::start();
    let (vm1, vm2) = two_vms(&node);
    let members = ["10.0.1.11", "10.0.1.12"];
    // Default group on both: they talk (the ingress rule is a remote-group conjunction).
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11"], Some((&["default"], 1))),
        "port-vm2": port(101, MAC2, &["10.0.1.12"], Some((&["default"], 1))),
    });
    // Someone else's flow (another cookie) on the bridge: never touched by the agent.
    let foreign = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow14", "add-flow"])
        .arg(format!("unix:{}", mgmt(&node).display()))
        .arg("cookie=0x1234,table=99,priority=7,ip,nw_dst=192.0.2.1 actions=drop")
        .status()
        .unwrap();
    assert!(foreign.success());
    let s1 = state(1, ports, json!({"default": default_group(&members)}));
    let first = once(&node, &s1);
    assert!(first["flows_added"].as_u64().unwrap() > 0, "{first}");
    // The binary OpenFlow client reads the same cookies as ovs-ofctl prints, and only ours.
    let mut of = OfConn::connect(&mgmt(&node), Duration::from_secs(5)).unwrap();
    of.echo().unwrap();
    of.barrier().unwrap();
    let mut binary = of.flow_cookies(COOKIE_BASE, COOKIE_MASK).unwrap();
    binary.sort();
    let mut text: Vec<u64> = dump_flows(&node)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cookie=0x6370"))
        .map(|l| u64::from_str_radix(&format!("6370{}", &l[..12]), 16).unwrap())
        .collect();
    text.sort();
    assert_eq!(binary, text);
    assert_eq!(
        binary.len() as u64,
        first["flows_desired"].as_u64().unwrap()
    );
    assert_eq!(of.flow_cookies(0x1234, u64::MAX).unwrap(), [0x1234]);
    assert!(ping(&vm1, "10.0.1.12"), "default group: vm1 → vm2");
    assert!(ping(&vm2, "10.0.1.11"), "default group: vm2 → vm1");
    let _s8080 = server(&vm2, 8080);
    let _s9090 = server(&vm2, 9090);
    let ok = tcp_ok(&vm1, "10.0.1.12", 9090);
    if !ok {
        let out = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow14", "dump-flows"])
            .arg(format!(
                "unix:{}",
                node.sb().dir().join("br-vlan.mgmt").display()
            ))
            .output()
            .unwrap();
        eprintln!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            conntrack(&node)
        );
    }
    assert!(ok, "default group allows any port from members");

    // A restart with nothing changed writes no flow.
    let again = once(&node, &s1);
    assert_eq!(again["flows_added"], 0, "{again}");
    assert_eq!(again["flows_deleted"], 0, "{again}");
    assert_eq!(again["flows_desired"], first["flows_desired"]);

    // vm2 in "web": TCP 8080 and ICMP in, nothing else.
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11"], Some((&["default"], 1))),
        "port-vm2": port(101, MAC2, &["10.0.1.12"], Some((&["web"], 1))),
    });
    let groups = json!({"default": default_group(&members), "web": web_group(&[icmp_rule()])});
    let s2 = state(2, ports.clone(), groups);
    let second = once(&node, &s2);
    assert!(second["flows_deleted"].as_u64().unwrap() > 0, "{second}");
    assert!(tcp_ok(&vm1, "10.0.1.12", 8080), "the TCP rule opens 8080");
    assert!(!tcp_ok(&vm1, "10.0.1.12", 9090), "and only 8080");
    assert!(ping(&vm1, "10.0.1.12"), "ICMP rule");
    // vm2 itself may still start connections (egress rule), its replies come back.
    let _s7070 = server(&vm1, 7070);
    assert!(tcp_ok(&vm2, "10.0.1.11", 7070));

    // Without the ICMP rule, no ping.
    let s3 = state(
        3,
        ports,
        json!({"default": default_group(&members), "web": web_group(&[])}),
    );
    once(&node, &s3);
    assert!(!ping(&vm1, "10.0.1.12"), "ICMP rule removed");
    assert!(tcp_ok(&vm1, "10.0.1.12", 8080));

    // Port security off on vm2: everything passes, the other port stays filtered.
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11"], Some((&["default"], 1))),
        "port-vm2": port(101, MAC2, &["10.0.1.12"], None),
    });
    once(
        &node,
        &state(4, ports, json!({"default": default_group(&members)})),
    );
    assert!(
        tcp_ok(&vm1, "10.0.1.12", 9090),
        "security None passes everything"
    );
    assert!(ping(&vm1, "10.0.1.12"));

    // No secured port left: every crosspod flow is gone, OVS's NORMAL flow stays.
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11"], None),
        "port-vm2": port(101, MAC2, &["10.0.1.12"], None),
    });
    let last = once(&node, &state(5, ports, json!({})));
    assert_eq!(last["flows_desired"], 0, "{last}");
    let flows = dump_flows(&node);
    assert!(!flows.contains("cookie=0x6370"), "{flows}");
    assert!(
        flows.contains("cookie=0x1234"),
        "someone else's flow deleted: {flows}"
    );
    assert!(flows.contains("actions=NORMAL"), "{flows}");
    assert!(ping(&vm1, "10.0.1.12"));
}

fn mgmt(node: &Node) -> std::path::PathBuf {
    node.sb().dir().join("br-vlan.mgmt")
}

fn dump_flows(node: &Node) -> String {
    let out = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow14", "dump-flows", "--no-stats"])
        .arg(format!(
            "unix:{}",
            node.sb().dir().join("br-vlan.mgmt").display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Starts the ARP counter in `ns`, runs `send`, returns how many ARP frames claiming `spa` came in.
fn arp_seen(ns: &str, spa: &str, send: impl FnOnce()) -> u64 {
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns, PY, "-c", ARP_COUNT, "eth0", spa, "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    send();
    line.clear();
    r.read_line(&mut line).unwrap();
    c.wait().unwrap();
    line.trim().parse().unwrap()
}

fn arp_reply(ns: &str, eth_src: &str, sha: &str, spa: &str) {
    let out = in_ns(
        ns,
        &[
            PY,
            "-c",
            ARP_SEND,
            "eth0",
            eth_src,
            sha,
            spa,
            MAC2,
            "10.0.1.12",
        ],
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn spoofed_sources_and_arp_replies_are_dropped_and_ipv6_nd_works() {
    let node = Node::start();
    let (vm1, vm2) = two_vms(&node);
    for (ns, a) in [(&vm1, "2001:db8::11/64"), (&vm2, "2001:db8::12/64")] {
        let o = in_ns(ns, &["ip", "addr", "add", a, "dev", "eth0", "nodad"]);
        assert!(o.status.success(), "{o:?}");
    }
    let members = ["10.0.1.11", "10.0.1.12", "2001:db8::11", "2001:db8::12"];
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11", "2001:db8::11"], Some((&["default"], 1))),
        "port-vm2": port(101, MAC2, &["10.0.1.12", "2001:db8::12"], Some((&["default"], 1))),
    });
    once(
        &node,
        &state(1, ports, json!({"default": default_group(&members)})),
    );
    assert!(ping(&vm1, "10.0.1.12"));

    // A source address the port does not own: vm2 never sees the echo requests.
    let o = in_ns(&vm1, &["ip", "addr", "add", "10.0.1.99/32", "dev", "eth0"]);
    assert!(o.status.success());
    let before = in_echos(&vm2);
    let o = in_ns(
        &vm1,
        &["ping", "-c", "3", "-W", "1", "-I", "10.0.1.99", "10.0.1.12"],
    );
    assert!(!o.status.success());
    assert_eq!(
        in_echos(&vm2),
        before,
        "spoofed-source echo requests reached vm2"
    );
    let o = in_ns(&vm1, &["ping", "-c", "2", "-W", "1", "10.0.1.12"]);
    assert!(o.status.success(), "the port's own address still works");
    assert!(in_echos(&vm2) >= before + 2, "the counter counts");

    // ARP replies: the port's own (MAC, IP) reaches vm2; a claim on another address, or from
    // another MAC, does not.
    let own = arp_seen(&vm2, "10.0.1.11", || {
        arp_reply(&vm1, MAC1, MAC1, "10.0.1.11")
    });
    assert!(own >= 3, "vm1's own ARP reply not seen ({own})");
    let gw = arp_seen(&vm2, "10.0.1.1", || arp_reply(&vm1, MAC1, MAC1, "10.0.1.1"));
    assert_eq!(gw, 0, "spoofed ARP reply (gateway's address) reached vm2");
    let other_mac = arp_seen(&vm2, "10.0.1.11", || {
        arp_reply(&vm1, "fa:16:3e:00:00:99", "fa:16:3e:00:00:99", "10.0.1.11")
    });
    assert_eq!(other_mac, 0, "ARP reply from a foreign MAC reached vm2");

    // No DHCP server on a VM: UDP from port 67 is dropped, the same datagrams from another port
    // pass (the default group lets members in).
    assert_eq!(udp_seen(&vm1, "10.0.1.11", 6767, &vm2, "10.0.1.12"), 3);
    assert_eq!(
        udp_seen(&vm1, "10.0.1.11", 67, &vm2, "10.0.1.12"),
        0,
        "DHCP server traffic from a VM"
    );
    // No router advertisement from a VM; other ICMPv6 to all nodes passes.
    let (ra, echo) = (
        snmp6(&vm2, "Icmp6InRouterAdvertisements"),
        snmp6(&vm2, "Icmp6InEchos"),
    );
    for t in ["134", "128"] {
        let o = in_ns(&vm1, &[PY, "-c", ICMP6_ALL_NODES, t]);
        assert!(o.status.success(), "{o:?}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        snmp6(&vm2, "Icmp6InEchos") >= echo + 3,
        "the control did not arrive"
    );
    assert_eq!(
        snmp6(&vm2, "Icmp6InRouterAdvertisements"),
        ra,
        "RA from a VM arrived"
    );

    // IPv6: neighbour discovery (NS to the solicited-node group, NA back) and ping.
    let o = in_ns(&vm1, &["ping", "-6", "-c", "3", "-W", "2", "2001:db8::12"]);
    assert!(o.status.success(), "IPv6 ping with port security: {o:?}");
    let neigh = String::from_utf8(in_ns(&vm1, &["ip", "-6", "neigh"]).stdout).unwrap();
    assert!(
        neigh.contains(&format!("2001:db8::12 dev eth0 lladdr {MAC2}")),
        "{neigh}"
    );
}

fn send(
    client: &mut std::process::Child,
    out: &mut BufReader<std::process::ChildStdout>,
    what: &str,
) -> String {
    writeln!(client.stdin.as_mut().unwrap(), "{what}").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim().to_string()
}

#[test]
fn an_established_connection_survives_unrelated_changes_and_ends_with_its_rule() {
    let node = Node::start();
    let (vm1, vm2) = two_vms(&node);
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11"], Some((&["default"], 1))),
        "port-vm2": port(101, MAC2, &["10.0.1.12"], Some((&["web"], 1))),
    });
    let members = ["10.0.1.11", "10.0.1.12"];
    let with = |extra: &[Value], tcp: bool| {
        let mut web = web_group(extra);
        if !tcp {
            web["rules"]
                .as_array_mut()
                .unwrap()
                .retain(|r| r["id"] != "w-tcp8080");
        }
        json!({"default": default_group(&members), "web": web})
    };
    once(&node, &state(1, ports.clone(), with(&[], true)));
    let _srv = server(&vm2, 8080);
    let mut client = Command::new("ip")
        .args(["netns", "exec", &vm1, PY, "-c", CLIENT, "10.0.1.12", "8080"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected");
    assert_eq!(send(&mut client, &mut out, "a"), "ok");

    // An unrelated rule added (UDP 53), then removed: the connection carries on.
    let mut udp = rule("w-dns", "ingress", "IPv4");
    udp["protocol"] = json!(17);
    udp["port_range_min"] = json!(53);
    udp["port_range_max"] = json!(53);
    let changed = once(&node, &state(2, ports.clone(), with(&[udp.clone()], true)));
    assert!(changed["flows_added"].as_u64().unwrap() > 0);
    assert_eq!(
        changed["flows_deleted"], 0,
        "an added rule deletes nothing: {changed}"
    );
    assert_eq!(send(&mut client, &mut out, "b"), "ok", "unrelated change");
    once(&node, &state(3, ports.clone(), with(&[], true)));
    assert_eq!(send(&mut client, &mut out, "c"), "ok", "unrelated removal");

    // The only rule allowing it removed: the next packet is dropped.
    once(&node, &state(4, ports.clone(), with(&[], false)));
    // ovs-vswitchd revalidates its cached datapath flows asynchronously after a table change
    // (milliseconds; bounded by the revalidator's 500 ms period): a packet inside that window
    // may still use the old decision, as with Neutron's OVS firewall. `once` waits it out.
    assert_eq!(
        send(&mut client, &mut out, "d"),
        "timeout",
        "connection outlived its rule"
    );
    // The rule back: a new connection works (the old one stays dead).
    once(&node, &state(5, ports, with(&[], true)));
    assert!(tcp_ok(&vm1, "10.0.1.12", 8080));
    let _ = client.kill();
    let _ = client.wait();
}

fn conntrack(node: &Node) -> String {
    let out = Command::new("ovs-appctl")
        .arg("-t")
        .arg(node.sb().dir().join("vswitchd.ctl"))
        .arg("dpctl/dump-conntrack")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn one_cidr_on_two_networks_keeps_two_conntrack_zones_and_flows_return_after_vswitchd_restart() {
    let node = Node::start();
    let (a1, _a2) = two_vms(&node);
    let mac_b1 = "fa:16:3e:00:01:11";
    let mac_b2 = "fa:16:3e:00:01:12";
    node.vm("vmb1", "tfwb1", "10.0.1.11/24", "10.0.1.1", mac_b1);
    node.vm("vmb2", "tfwb2", "10.0.1.12/24", "10.0.1.1", mac_b2);
    node.plug("tfwb1", "port-b1");
    node.plug("tfwb2", "port-b2");
    let b1 = vm_ns(&node, "vmb1");
    let members = ["10.0.1.11", "10.0.1.12"];
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11"], Some((&["default"], 1))),
        "port-vm2": port(101, MAC2, &["10.0.1.12"], Some((&["default"], 1))),
        "port-b1": port(102, mac_b1, &["10.0.1.11"], Some((&["gb"], 2))),
        "port-b2": port(102, mac_b2, &["10.0.1.12"], Some((&["gb"], 2))),
    });
    let mut gb = default_group(&members);
    for r in gb["rules"].as_array_mut().unwrap() {
        if r["remote_group_id"] == "default" {
            r["remote_group_id"] = json!("gb");
        }
    }
    let st = state(
        1,
        ports,
        json!({"default": default_group(&members), "gb": gb}),
    );
    let first = once(&node, &st);
    assert!(ping(&a1, "10.0.1.12"));
    assert!(ping(&b1, "10.0.1.12"));
    let ct = conntrack(&node);
    let icmp: Vec<&str> = ct
        .lines()
        .filter(|l| l.contains("icmp,orig=(src=10.0.1.11,dst=10.0.1.12"))
        .collect();
    assert!(
        icmp.iter().any(|l| l.contains("zone=1")) && icmp.iter().any(|l| l.contains("zone=2")),
        "one conntrack entry per network zone expected:\n{ct}"
    );

    // ovs-vswitchd restarted: it comes back without flows; the next pass writes them all.
    node.sb().stop_vswitchd().unwrap();
    node.sb().start_vswitchd().unwrap();
    let mut back = Value::Null;
    for _ in 0..50 {
        let (s, ok) = node.agent_once(&st, "none0");
        if ok && s["flows_added"].as_u64().unwrap_or(0) > 0 {
            back = s;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        back["flows_added"], first["flows_desired"],
        "every flow re-added after the restart: {back}"
    );
    assert_eq!(back["flows_deleted"], 0);
    assert!(ping(&a1, "10.0.1.12"));
    assert!(ping(&b1, "10.0.1.12"));
}

fn our_flows(node: &Node) -> usize {
    dump_flows(node)
        .lines()
        .filter(|l| l.contains("cookie=0x6370"))
        .count()
}

fn wait_flows(node: &Node, pred: impl Fn(usize) -> bool, timeout: Duration) -> usize {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let n = our_flows(node);
        if pred(n) || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_daemon_puts_the_flows_back_after_an_ovs_vswitchd_restart() {
    let node = Node::start();
    let (vm1, vm2) = two_vms(&node);
    let members = ["10.0.1.11", "10.0.1.12"];
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11"], Some((&["default"], 1))),
        "port-vm2": port(101, MAC2, &["10.0.1.12"], Some((&["web"], 1))),
    });
    let st = state(
        1,
        ports,
        json!({"default": default_group(&members), "web": web_group(&[])}),
    );
    let agent = node.agent_daemon(&st, "none0", &["--metrics-bind", ""]);
    let n = wait_flows(&node, |n| n > 0, Duration::from_secs(20));
    assert!(n > 0, "no flows from the daemon: {}", agent.log());
    // Let the daemon settle (it may still be adding), then note the count.
    std::thread::sleep(Duration::from_secs(1));
    let n = our_flows(&node);
    let _srv = server(&vm2, 9090);
    assert!(
        !tcp_ok(&vm1, "10.0.1.12", 9090),
        "filtered before the restart"
    );

    node.sb().stop_vswitchd().unwrap();
    node.sb().start_vswitchd().unwrap();
    // Nothing in OVSDB needs to change: the daemon notices its flows are gone.
    let back = wait_flows(&node, |m| m == n, Duration::from_secs(20));
    assert_eq!(back, n, "flows not restored: {}", agent.log());
    assert!(!ping(&vm1, "10.0.1.12"), "no ICMP rule on web");
    assert!(
        !tcp_ok(&vm1, "10.0.1.12", 9090),
        "filtered after the restart"
    );
    assert!(
        agent.log().contains("firewall flows missing"),
        "restored by the flows check, not by chance: {}",
        agent.log()
    );
    let _s8080 = server(&vm2, 8080);
    assert!(
        tcp_ok(&vm1, "10.0.1.12", 8080),
        "the rule's port works after the restart"
    );
}

/// Sends three ICMP echo requests inside VLAN `vlan` out of `dev` (raw frames: this kernel has
/// no 802.1Q devices), from `src` to `dst` at `dst_mac`.
const TAGGED_PING: &str = r#"
import socket, struct, sys
dev, vlan, src, dst, dst_mac = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((dev, 0))
for seq in range(3):
    icmp = struct.pack("!BBHHH", 8, 0, 0, 77, seq) + b"crosspod"
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, 1, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("fa163e000050") \
        + struct.pack("!HH", 0x8100, vlan) + b"\x08\x00"
    s.send(eth + ip + icmp)
"#;

#[test]
fn tagged_traffic_from_the_uplink_is_filtered_by_rules_and_remote_group_membership() {
    let node = Node::start();
    let (_vm1, vm2) = two_vms(&node);
    let uplink = format!("fwup{}", std::process::id() % 10_000);
    node.uplink(&uplink);
    let far = format!("{}far", node.prefix);
    let members = ["10.0.1.11", "10.0.1.12"];
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11"], Some((&["default"], 1))),
        "port-vm2": port(101, MAC2, &["10.0.1.12"], Some((&["web"], 1))),
    });
    let with_uplink = |mut st: Value| {
        st["bridges"]["br-vlan"] = json!({"physnet": "bridge", "uplink": true, "trunks": [101]});
        st
    };
    let pass = |st: &Value| {
        let (s, ok) = node.agent_once(st, &uplink);
        assert!(ok, "{s}");
        std::thread::sleep(Duration::from_millis(600));
    };
    let echoes_from_uplink = |vlan: &str| {
        let before = in_echos(&vm2);
        let o = in_ns(
            &far,
            &[
                PY,
                "-c",
                TAGGED_PING,
                "eth1",
                vlan,
                "10.0.1.50",
                "10.0.1.12",
                MAC2,
            ],
        );
        assert!(o.status.success(), "{o:?}");
        std::thread::sleep(Duration::from_millis(500));
        in_echos(&vm2) - before
    };
    // web with ICMP: the tagged echo requests are dispatched to vm2 (VLAN popped) and pass.
    pass(&with_uplink(state(
        1,
        ports.clone(),
        json!({"default": default_group(&members), "web": web_group(&[icmp_rule()])}),
    )));
    assert_eq!(
        echoes_from_uplink("101"),
        3,
        "tagged ICMP allowed by the rule"
    );
    assert_eq!(
        echoes_from_uplink("102"),
        0,
        "another VLAN is another network"
    );
    // web without ICMP: the same frames are dropped at vm2's ingress.
    pass(&with_uplink(state(
        2,
        ports,
        json!({"default": default_group(&members), "web": web_group(&[])}),
    )));
    assert_eq!(echoes_from_uplink("101"), 0, "tagged ICMP without a rule");

    // vm2 in the default group: only members get in. 10.0.1.50 (a VM of another node, say)
    // joins the group: one flow written, and its traffic passes; it leaves: blocked again.
    let ports = json!({
        "port-vm1": port(101, MAC1, &["10.0.1.11"], Some((&["default"], 1))),
        "port-vm2": port(101, MAC2, &["10.0.1.12"], Some((&["default"], 1))),
    });
    let st = |rev: u64, members: &[&str]| {
        with_uplink(state(
            rev,
            ports.clone(),
            json!({"default": default_group(members)}),
        ))
    };
    pass(&st(3, &members));
    assert_eq!(echoes_from_uplink("101"), 0, "not a member");
    let (joined, ok) = node.agent_once(&st(4, &["10.0.1.11", "10.0.1.12", "10.0.1.50"]), &uplink);
    assert!(ok, "{joined}");
    assert_eq!(joined["flows_added"], 1, "one member, one flow: {joined}");
    assert_eq!(joined["flows_deleted"], 0, "{joined}");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(echoes_from_uplink("101"), 3, "a member");
    pass(&st(5, &members));
    assert_eq!(echoes_from_uplink("101"), 0, "removed from the group");
}
