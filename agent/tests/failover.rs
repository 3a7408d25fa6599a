//! Router failover, the agent's half, for real: nodes (each a namespace with its own
//! ovsdb-server and ovs-vswitchd, userspace datapath) on an underlay switch, tunnel endpoints on
//! `br-phy` as in `shared/lab-recipe.md` (the fixture of `tunnels.rs`), agent daemons in
//! standalone mode writing their status reports to `--report-file`. BFD runs in ovs-vswitchd
//! on the per-peer VxLAN ports; the agent reads `bfd_status`, reports peers at once, fences its
//! router instances when cut off, and announces legs that come up with gratuitous ARP.

mod common;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{AgentProcess, Capture, Node, ROUTER};
use plumbing::{Handle, Netns};
use serde_json::{json, Value};

const A: &str = "192.168.50.1";
const B: &str = "192.168.50.2";
const C: &str = "192.168.50.3";
/// BFD interval of the tests (OVS's multiplier is 3: a loss is seen after 300 ms).
const INTERVAL_MS: u64 = 100;

/// The common underlay, plus the uplink `eth1` of `br-vlan` (far end in a namespace of its
/// own), whose carrier is one of the node's data-plane links.
fn underlay(sw: &Node, node: &Node, n: u8, ip: &str) {
    common::underlay(sw, node, n, ip);
    node.uplink("eth1");
}

fn ip_in(ns: &str, args: &[&str]) {
    let st = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "ip -n {ns} {args:?}");
}

fn switch() -> Node {
    common::underlay_switch()
}

/// A node's state: liveness towards `peers` (name, IP), optionally the router on tag 7.
fn state(rev: u64, peers: &[(&str, &str)], with_router: bool) -> Value {
    let ports = if with_router {
        json!({"pa1": {"bridge": "br-vlan", "tag": 7, "network_id": "net7",
                       "mac": "fa:16:3e:00:0a:01", "fixed_ips": ["10.0.1.5"]}})
    } else {
        json!({})
    };
    let peers: serde_json::Map<String, Value> = peers
        .iter()
        .map(|(n, ip)| (n.to_string(), json!(ip)))
        .collect();
    let routers = if with_router {
        json!({ROUTER: {
            "router_id": ROUTER, "project_id": "p1", "namespace": format!("qrouter-{ROUTER}"),
            "legs": [{"kind": "internal", "bridge": "br-vlan", "tag": 7, "address": "10.0.1.254/24",
                      "mac": "fa:16:3e:00:07:fe", "ns_ifname": "qr-fo", "ovs_ifname": "vr-fo",
                      "network_id": "net7", "subnet_id": "s7"},
                     {"kind": "gateway", "bridge": "br-vlan", "tag": 8, "address": "172.24.4.5/24",
                      "mac": "fa:16:3e:00:08:fe", "ns_ifname": "qg-fo", "ovs_ifname": "vg-fo",
                      "network_id": "ext", "subnet_id": "s8"}],
            "routes": [],
            "nat": {"snat": [], "floating": [{"floating_ip": "172.24.4.10", "fixed_ip": "10.0.1.5",
                      "out_ifname": "qg-fo", "floatingip_id": "f1", "port_id": "pa1"}]}
        }})
    } else {
        json!({})
    };
    json!({
        "node": "n1", "pod": "RegionOne", "revision": rev,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": true, "trunks": [7, 8]}},
        "ports": ports, "routers": routers,
        "liveness": {"peers": peers, "interval_ms": INTERVAL_MS, "multiplier": 3}
    })
}

struct Running {
    agent: AgentProcess,
    reports: std::path::PathBuf,
}

fn daemon(node: &Node, st: &Value, ip: &str) -> Running {
    daemon_with_metrics(node, st, ip, "")
}

fn daemon_with_metrics(node: &Node, st: &Value, ip: &str, metrics: &str) -> Running {
    let reports = node.dir_path().join("reports.jsonl");
    let _ = std::fs::remove_file(&reports);
    let agent = node.agent_daemon(
        st,
        "eth1",
        &[
            "--local-ip",
            ip,
            "--metrics-bind",
            metrics,
            "--report-file",
            reports.to_str().unwrap(),
        ],
    );
    Running { agent, reports }
}

/// `GET /metrics` of an agent.
fn metrics(addr: &str) -> String {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

impl Running {
    /// Every report written so far: (Unix ms, report).
    fn reports(&self) -> Vec<(u64, Value)> {
        std::fs::read_to_string(&self.reports)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| (v["at_ms"].as_u64().unwrap(), v["report"].clone()))
            .collect()
    }

    /// The first report after `since_ms` satisfying `f`, waiting up to `timeout`.
    fn wait_report(
        &self,
        since_ms: u64,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> (u64, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self
                .reports()
                .into_iter()
                .find(|(at, r)| *at >= since_ms && f(r))
            {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no such report; reports: {:#?}\nlog:\n{}",
                self.reports(),
                self.agent.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn peers_are(r: &Value, want: &[(&str, bool)]) -> bool {
    let want: Vec<Value> = want
        .iter()
        .map(|(n, up)| json!({"node": n, "up": up}))
        .collect();
    r["peers"] == json!(want)
}

fn bfd_state(node: &Node, peer_ip: &str) -> String {
    let port = format!(
        "vx-{:08x}",
        u32::from(peer_ip.parse::<std::net::Ipv4Addr>().unwrap())
    );
    node.sb()
        .vsctl(&["get", "interface", &port, "bfd_status:state"])
        .map(|s| s.trim().trim_matches('"').to_string())
        .unwrap_or_default()
}

fn wait_bfd(node: &Node, peer_ip: &str, want: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let s = bfd_state(node, peer_ip);
        if s == want || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bfd_sees_a_lost_node_at_once_and_an_agent_crash_moves_nothing() {
    let sw = switch();
    let (a, b) = (Node::start(), Node::start());
    underlay(&sw, &a, 1, A);
    underlay(&sw, &b, 2, B);
    let ra = daemon(&a, &state(1, &[("node-b", B)], false), A);
    let mut rb = daemon(&b, &state(1, &[("node-a", A)], false), B);

    // A tunnel port per liveness peer, no segment, BFD on it at the state's interval.
    assert_eq!(
        wait_bfd(&a, B, "up", Duration::from_secs(10)),
        "up",
        "{}",
        ra.agent.log()
    );
    assert_eq!(wait_bfd(&b, A, "up", Duration::from_secs(5)), "up");
    let bfd = a.vsctl(&["get", "interface", "vx-c0a83202", "bfd"]);
    assert_eq!(bfd, "{enable=\"true\", min_rx=\"100\", min_tx=\"100\"}");
    // `bfd/show` once the sessions have settled on the state's interval (OVS starts them slow).
    let deadline = Instant::now() + Duration::from_secs(10);
    let show = loop {
        let out = Command::new("ovs-appctl")
            .arg("-t")
            .arg(a.sb().dir().join("vswitchd.ctl"))
            .arg("bfd/show")
            .output()
            .unwrap();
        let show = String::from_utf8_lossy(&out.stdout).to_string();
        if (show.contains("Remote Session State: up")
            && show.contains("Remote Minimum TX Interval: 100ms"))
            || Instant::now() > deadline
        {
            break show;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        show.contains("Local Session State: up")
            && show.contains("Remote Session State: up")
            && show.contains("Detect Multiplier: 3")
            && show.contains("Local Minimum TX Interval: 100ms")
            && show.contains("Remote Minimum TX Interval: 100ms"),
        "{show}"
    );
    ra.wait_report(0, Duration::from_secs(5), |r| {
        peers_are(r, &[("node-b", true)]) && r["fenced"] == json!(false)
    });

    // B's agent crashes: its ovs-vswitchd still answers, A sees nothing.
    rb.agent.kill9();
    let t0 = now_ms();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bfd_state(&a, B), "up");
    assert!(
        ra.reports()
            .iter()
            .all(|(at, r)| *at < t0 || peers_are(r, &[("node-b", true)])),
        "{:#?}",
        ra.reports()
    );

    // B is lost (its ovs-vswitchd gone): A reports it down within 3 intervals and slack.
    let t0 = now_ms();
    b.sb().stop_vswitchd().unwrap();
    let (at, r) = ra.wait_report(t0, Duration::from_secs(5), |r| {
        peers_are(r, &[("node-b", false)])
    });
    let detect = at - t0;
    eprintln!("MEASURE detection (vswitchd killed -> report): {detect} ms");
    assert!(detect < INTERVAL_MS * 3 + 700, "detection took {detect} ms");
    // One peer lost, own links up: the lost one is the peer, A keeps serving.
    assert_eq!(r["fenced"], json!(false), "{r:#}");
    drop(rb);
}

/// `tcpdump` of ARP (with link-level headers) on `ifname` in `ns`, line-buffered.
/// Gratuitous ARPs for `addr` in a capture (sender and target both `addr`).
fn garps(capture: &str, addr: &str) -> usize {
    capture
        .lines()
        .filter(|l| l.contains(&format!("who-has {addr} tell {addr}")))
        .count()
}

/// Whether `target` answers ARP from the VM.
fn arp_answers(vm_ns: &str, target: &str) -> bool {
    plumbing::probe::arp(
        &Netns::named(vm_ns.to_string()),
        "eth0",
        target.parse().unwrap(),
        &plumbing::ProbeOptions {
            timeout: Duration::from_millis(300),
            retries: 1,
        },
    )
    .map(|r| r.ok())
    .unwrap_or(false)
}

fn link_up(ns: &str, ifname: &str) -> bool {
    Handle::new(&Netns::named(ns.to_string()))
        .unwrap()
        .link(ifname)
        .unwrap()
        .unwrap_or_else(|| panic!("{ifname} in {ns}"))
        .up
}

fn assert_restart_writes_nothing(node: &Node, st: &Value, ip: &str) {
    let (s, _) = node.agent_once_with(st, "eth1", &["--local-ip", ip]);
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

#[test]
fn a_node_cut_off_fences_its_routers_and_mended_takes_them_back_with_garp() {
    let sw = switch();
    let (a, b) = (Node::start(), Node::start());
    underlay(&sw, &a, 1, A);
    underlay(&sw, &b, 2, B);
    a.vm(
        "vm1",
        "tapa1",
        "10.0.1.5/24",
        "10.0.1.254",
        "fa:16:3e:00:0a:01",
    );
    a.plug("tapa1", "pa1");
    let vm = format!("{}vm1", a.prefix);
    let far = format!("{}far", a.prefix);
    let st_a = state(1, &[("node-b", B)], true);
    let _rb = daemon(&b, &state(1, &[("node-a", A)], false), B);

    // The instance is created: 3 gratuitous ARPs per leg address (and the floating IP), on the
    // bridge's uplink (both VLANs) and at the VM.
    let on_uplink = Capture::start(&far, "eth1", &["-e", "arp"]);
    let at_vm = Capture::start(&vm, "eth0", &["-e", "arp"]);
    let mut ra = daemon(&a, &st_a, A);
    ra.wait_report(0, Duration::from_secs(10), |r| {
        peers_are(r, &[("node-b", true)])
            && r["fenced"] == json!(false)
            && r["routers"][0]["state"] == json!("ready")
    });
    std::thread::sleep(Duration::from_millis(500));
    let (up_cap, vm_cap) = (on_uplink.finish(), at_vm.finish());
    assert_eq!(garps(&up_cap, "10.0.1.254"), 3, "{up_cap}");
    // The gateway leg: its address and the floating IP.
    assert_eq!(garps(&up_cap, "172.24.4.5"), 3, "{up_cap}");
    assert_eq!(garps(&up_cap, "172.24.4.10"), 3, "{up_cap}");
    assert!(
        up_cap.contains("vlan 7") && up_cap.contains("vlan 8"),
        "{up_cap}"
    );
    assert_eq!(garps(&vm_cap, "10.0.1.254"), 3, "{vm_cap}");
    assert_eq!(garps(&vm_cap, "172.24.4.5"), 0, "another VLAN: {vm_cap}");
    assert!(arp_answers(&vm, "10.0.1.254"));

    // A's cables are cut (underlay and uplink, at the far ends): its only peer is down and it
    // has no carrier: it fences (legs down, nothing answers) and says so.
    let t0 = now_ms();
    ip_in(&sw.ns, &["link", "set", "s1", "down"]);
    ip_in(&far, &["link", "set", "eth1", "down"]);
    let (at, r) = ra.wait_report(t0, Duration::from_secs(5), |r| r["fenced"] == json!(true));
    eprintln!(
        "MEASURE fence (cables cut -> fenced report): {} ms",
        at - t0
    );
    assert!(peers_are(&r, &[("node-b", false)]), "{r:#}");
    let rns = common::router_ns(&a);
    assert!(!link_up(&rns, "qr-fo") && !link_up(&rns, "qg-fo"));
    assert!(!arp_answers(&vm, "10.0.1.254"), "a fenced leg answered ARP");
    // B, whose links are up, lost its one peer but is not fenced.
    // (Its report is checked in the other test; here: its legs would stay.)

    // An agent restarted while fenced computes the same and writes nothing.
    ra.agent.kill9();
    assert_restart_writes_nothing(&a, &st_a, A);
    assert!(!link_up(&rns, "qr-fo"));
    let mut ra = daemon(&a, &st_a, A);
    ra.wait_report(0, Duration::from_secs(10), |r| r["fenced"] == json!(true));

    // Mended: the peer answers again, the legs come back and are announced.
    let at_vm = Capture::start(&vm, "eth0", &["-e", "arp"]);
    let t0 = now_ms();
    ip_in(&sw.ns, &["link", "set", "s1", "up"]);
    ip_in(&far, &["link", "set", "eth1", "up"]);
    let (at, _) = ra.wait_report(t0, Duration::from_secs(10), |r| {
        r["fenced"] == json!(false) && peers_are(r, &[("node-b", true)])
    });
    eprintln!(
        "MEASURE unfence (cables mended -> unfenced report): {} ms",
        at - t0
    );
    assert!(link_up(&rns, "qr-fo") && link_up(&rns, "qg-fo"));
    std::thread::sleep(Duration::from_millis(500));
    let vm_cap = at_vm.finish();
    assert_eq!(garps(&vm_cap, "10.0.1.254"), 3, "{vm_cap}");
    assert!(arp_answers(&vm, "10.0.1.254"));

    // Restart with nothing changed: zero writes.
    ra.agent.kill9();
    assert_restart_writes_nothing(&a, &st_a, A);
}

#[test]
fn with_two_peers_losing_both_fences_and_one_back_unfences() {
    let sw = switch();
    let (a, b, c) = (Node::start(), Node::start(), Node::start());
    underlay(&sw, &a, 1, A);
    underlay(&sw, &b, 2, B);
    underlay(&sw, &c, 3, C);
    let st_a = state(1, &[("node-b", B), ("node-c", C)], true);
    let maddr = format!("127.0.0.1:{}", common::free_port());
    let ra = daemon_with_metrics(&a, &st_a, A, &maddr);
    let _rb = daemon(&b, &state(1, &[("node-a", A), ("node-c", C)], false), B);
    let _rc = daemon(&c, &state(1, &[("node-a", A), ("node-b", B)], false), C);
    ra.wait_report(0, Duration::from_secs(10), |r| {
        peers_are(r, &[("node-b", true), ("node-c", true)]) && r["fenced"] == json!(false)
    });
    let rns = common::router_ns(&a);
    assert!(link_up(&rns, "qr-fo"));

    // One peer lost: A still has the other, nothing fences.
    let t0 = now_ms();
    b.sb().stop_vswitchd().unwrap();
    ra.wait_report(t0, Duration::from_secs(5), |r| {
        peers_are(r, &[("node-b", false), ("node-c", true)])
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(ra.reports().last().unwrap().1["fenced"] == json!(false));
    assert!(link_up(&rns, "qr-fo"));

    // Both lost, A's own links up: A is the odd one out and fences.
    let t0 = now_ms();
    c.sb().stop_vswitchd().unwrap();
    let (at, _) = ra.wait_report(t0, Duration::from_secs(5), |r| {
        peers_are(r, &[("node-b", false), ("node-c", false)]) && r["fenced"] == json!(true)
    });
    eprintln!(
        "MEASURE fence with two peers lost (last vswitchd killed -> fenced report): {} ms",
        at - t0
    );
    assert!(!link_up(&rns, "qr-fo") && !link_up(&rns, "qg-fo"));
    let m = metrics(&maddr);
    assert!(m.contains("crosspod_agent_fenced 1"), "{m}");
    assert!(
        m.contains("crosspod_agent_liveness_peer_up{peer=\"node-c\"} 0"),
        "{m}"
    );

    // C comes back: A unfences.
    let t0 = now_ms();
    c.sb().start_vswitchd().unwrap();
    // `exit --cleanup` took br-phy's tap (and its address) with it, as a reboot would.
    let mut h = Handle::new(&Netns::named(c.ns.clone())).unwrap();
    for _ in 0..100 {
        if h.link("br-phy").unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ip_in(
        &c.ns,
        &["addr", "replace", &format!("{C}/24"), "dev", "br-phy"],
    );
    ip_in(&c.ns, &["link", "set", "br-phy", "up"]);
    ra.wait_report(t0, Duration::from_secs(10), |r| {
        peers_are(r, &[("node-b", false), ("node-c", true)]) && r["fenced"] == json!(false)
    });
    assert!(link_up(&rns, "qr-fo"));
    let m = metrics(&maddr);
    assert!(m.contains("crosspod_agent_fenced 0"), "{m}");
    assert!(
        m.contains("crosspod_agent_liveness_peer_up{peer=\"node-c\"} 1"),
        "{m}"
    );
}
