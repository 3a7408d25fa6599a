//! Faults the agent survives, each on a real node (own ovsdb-server and ovs-vswitchd in a
//! namespace) with the agent binary running as a daemon in standalone mode (desired state from
//! a file): ovsdb-server restarted, ovs-vswitchd restarted, the agent killed mid-apply, the
//! controller unreachable. Needs root and Open vSwitch.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{desired, free_port, ping, Node};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn ovsdb_server_restart_reconnects_and_reconverges() {
    let node = Node::start();
    let tag = format!("o{}", std::process::id() % 100_000);
    let uplink = format!("up{tag}");
    node.uplink(&uplink);
    let agent = node.agent_daemon(&desired(&tag, true), &uplink, &["--metrics-bind", ""]);
    let leg = format!("vr-{tag}");
    assert_eq!(
        node.wait_vsctl(&["get", "port", &leg, "tag"], "101", WAIT),
        "101",
        "agent log:\n{}",
        agent.log()
    );

    node.sb().restart_ovsdb().expect("restarting ovsdb-server");
    // A VM plugged after the restart is only tagged if the agent reconnected and its monitor
    // resumed.
    let tap = format!("t{tag}");
    node.vm("vm1", &tap, "10.0.1.11/24", "10.0.1.1", "fa:16:3e:00:00:11");
    node.plug(&tap, "port-vm1");
    assert_eq!(
        node.wait_vsctl(&["get", "port", &tap, "tag"], "101", WAIT),
        "101",
        "agent log:\n{}",
        agent.log()
    );
    let ports: Vec<String> = node
        .vsctl(&["list-ports", "br-vlan"])
        .lines()
        .map(str::to_string)
        .collect();
    let unique: BTreeSet<&String> = ports.iter().collect();
    assert_eq!(unique.len(), ports.len(), "duplicate ports: {ports:?}");
    assert!(ping(&format!("{}vm1", node.prefix), "10.0.1.1"));
}

#[test]
fn ovs_vswitchd_restart_brings_the_ports_back() {
    let node = Node::start();
    let tag = format!("v{}", std::process::id() % 100_000);
    let uplink = format!("up{tag}");
    node.uplink(&uplink);
    let _agent = node.agent_daemon(&desired(&tag, true), &uplink, &["--metrics-bind", ""]);
    let tap = format!("t{tag}");
    node.vm("vm1", &tap, "10.0.1.11/24", "10.0.1.1", "fa:16:3e:00:00:11");
    // Plug only once the agent made the bridge.
    assert_eq!(
        node.wait_vsctl(
            &["get", "bridge", "br-vlan", "datapath_type"],
            "netdev",
            WAIT
        ),
        "netdev"
    );
    node.plug(&tap, "port-vm1");
    assert_eq!(
        node.wait_vsctl(&["get", "port", &tap, "tag"], "101", WAIT),
        "101"
    );
    let vm = format!("{}vm1", node.prefix);
    assert!(ping(&vm, "10.0.1.1"), "before the restart");
    node.sb().stop_vswitchd().unwrap();
    assert!(!ping(&vm, "10.0.1.1"), "no switch, no packets");
    node.sb().start_vswitchd().unwrap();
    let deadline = Instant::now() + WAIT;
    while !ping(&vm, "10.0.1.1") {
        assert!(
            Instant::now() < deadline,
            "ports did not come back after the restart"
        );
    }
}

#[test]
fn an_agent_killed_mid_apply_converges_without_duplicates_or_orphans() {
    let node = Node::start();
    let tag = format!("k{}", std::process::id() % 100_000);
    let uplink = format!("up{tag}");
    node.uplink(&uplink);
    let state = desired(&tag, true);
    // Kill it at several points of its first pass.
    for delay_ms in [5u64, 40, 120] {
        let mut agent = node.agent_daemon(&state, &uplink, &["--metrics-bind", ""]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        agent.kill9();
    }
    let (first, ok) = node.agent_once(&state, &uplink);
    assert!(ok, "pass after the crashes failed: {first}");
    let (second, ok) = node.agent_once(&state, &uplink);
    assert!(ok, "{second}");
    assert_eq!(second["ovs_changes"], 0, "{second}");
    assert_eq!(second["linux_changes"], 0, "{second}");
    let ports: Vec<String> = node
        .vsctl(&["list-ports", "br-vlan"])
        .lines()
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = [uplink.clone(), format!("vr-{tag}"), format!("vb-{tag}")]
        .into_iter()
        .collect();
    assert_eq!(
        ports.iter().cloned().collect::<BTreeSet<_>>(),
        want,
        "{ports:?}"
    );
    assert_eq!(ports.len(), want.len(), "duplicates: {ports:?}");
    let routers: Vec<String> =
        plumbing::netns::list_prefixed(&format!("{}qrouter-", node.prefix)).unwrap();
    assert_eq!(routers.len(), 1, "{routers:?}");
}

#[test]
fn an_unreachable_controller_leaves_the_data_plane_as_it_is() {
    let node = Node::start();
    let tag = format!("c{}", std::process::id() % 100_000);
    let uplink = format!("up{tag}");
    node.uplink(&uplink);
    let (applied, ok) = node.agent_once(&desired(&tag, true), &uplink);
    assert!(ok, "{applied}");
    let before = node.vsctl(&["--format=json", "list", "port"]);
    // Nothing listens on the controller port: the agent must wait, retry and change nothing.
    let metrics = format!("127.0.0.1:{}", free_port());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let log = node.dir_path().join("agent-nocontroller.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crosspod-agent"))
        .args(["--pod", "RegionOne", "--node", "n1", "--token", "t"])
        .args(["--controller-url", &dead])
        .args(["--ovsdb", &node.sb().db_arg()])
        .args(["--node-netns", &node.ns, "--netns-prefix", &node.prefix])
        .args(["--bridge-mappings", "bridge:br-vlan"])
        .args(["--uplinks", &format!("br-vlan:{uplink}")])
        .args(["--datapath-type", "netdev", "--metrics-bind", &metrics])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let guard = common::ChildGuard(&mut child);
    std::thread::sleep(Duration::from_secs(3));
    let body = reqwest_free_get(&metrics);
    assert!(
        body.contains("crosspod_agent_ovsdb_changes_total 0"),
        "no OVSDB change without a controller: {body}"
    );
    assert!(
        !body.contains("crosspod_agent_reconcile_passes_total{"),
        "no pass ran: {body}"
    );
    assert_eq!(node.vsctl(&["--format=json", "list", "port"]), before);
    assert!(plumbing::netns::exists(&common::router_ns(&node)));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("registration failed"),
        "retries are logged: {text}"
    );
    drop(guard);
}

/// GET /metrics with a plain socket (the test needs no HTTP client).
fn reqwest_free_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint up");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
