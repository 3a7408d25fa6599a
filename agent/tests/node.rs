//! The agent binary on a real lab node: a namespace with its own ovsdb-server and
//! ovs-vswitchd (userspace datapath), an uplink device, a router instance and a VM that pings
//! its router through OVS. Driven with `--once --desired-file`, so the data plane is tested
//! without the controller. Needs root and Open vSwitch (installed by scripts/install-deps.sh).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{desired, ping, Node};
use plumbing::{netns, Netns, VethEnd, VethSpec};
use serde_json::Value;

#[test]
fn a_node_converges_its_vm_pings_the_router_and_a_restart_writes_nothing() {
    let node = Node::start();
    let tag = format!("{}", std::process::id() % 100_000);
    // The uplink: a veth whose far end sits in another namespace (the "cable").
    let far = format!("{}far", node.prefix);
    netns::create(&far).unwrap();
    let uplink = format!("up{tag}");
    plumbing::link::create_veth(&VethSpec {
        a: VethEnd::new(uplink.clone(), Netns::named(node.ns.clone())),
        b: VethEnd::new("eth1", Netns::named(far.clone())),
        owner: "test-cable".into(),
    })
    .unwrap();

    // First the uplink carries nothing (dead VLAN only); then VLAN 2001: a trunks-only
    // change ovs-vswitchd must pick up.
    let mut idle = desired(&tag, true);
    idle["bridges"]["br-vlan"]["trunks"] = serde_json::json!([]);
    let (_, ok) = node.agent_once(&idle, &uplink);
    assert!(ok);
    assert_eq!(node.vsctl(&["get", "port", &uplink, "trunks"]), "[4095]");
    let state = desired(&tag, true);
    let (first, ok) = node.agent_once(&state, &uplink);
    assert!(ok, "first pass failed: {first}");
    assert_eq!(first["ovs_changes"], 1, "only the trunks change: {first}");
    assert_eq!(first["linux_changes"], 0, "{first}");
    assert_eq!(
        node.vsctl(&["get", "bridge", "br-vlan", "datapath_type"]),
        "netdev"
    );
    assert_eq!(node.vsctl(&["get", "port", &uplink, "trunks"]), "[2001]");
    // ovs-vswitchd itself must run with it, not only the database: VLAN 2001 arriving on the
    // uplink is forwarded, VLAN 2002 is not.
    let trace = |vlan: u16| {
        let out = std::process::Command::new("ovs-appctl")
            .arg("-t")
            .arg(node.sb().dir().join("vswitchd.ctl"))
            .args(["ofproto/trace", "br-vlan"])
            .arg(format!(
                "in_port={uplink},dl_vlan={vlan},dl_dst=ff:ff:ff:ff:ff:ff,arp"
            ))
            .output()
            .expect("ovs-appctl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut accepted = trace(2001);
    while accepted.trim_end().ends_with("Datapath actions: drop")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        accepted = trace(2001);
    }
    assert!(
        !accepted.trim_end().ends_with("Datapath actions: drop"),
        "vswitchd drops the trunked VLAN:\n{accepted}"
    );
    assert!(trace(2002).trim_end().ends_with("Datapath actions: drop"));
    assert_eq!(
        node.vsctl(&["get", "port", &format!("vr-{tag}"), "tag"]),
        "101"
    );
    assert_eq!(
        node.vsctl(&["get", "port", &format!("vb-{tag}"), "tag"]),
        "2001"
    );
    assert_eq!(
        node.vsctl(&[
            "get",
            "port",
            &format!("vb-{tag}"),
            "external_ids:crosspod-owner"
        ]),
        "agent"
    );
    let router_ns = common::router_ns(&node);
    assert!(netns::exists(&router_ns));

    // Someone (Nova, `crosspod vm`) plugs two VMs: one the controller knows, one it does not.
    let tap1 = format!("t1{tag}");
    let tap2 = format!("t2{tag}");
    node.vm(
        "vm1",
        &tap1,
        "10.0.1.11/24",
        "10.0.1.1",
        "fa:16:3e:00:00:11",
    );
    node.vm(
        "vm2",
        &tap2,
        "10.0.1.12/24",
        "10.0.1.1",
        "fa:16:3e:00:00:12",
    );
    node.plug(&tap1, "port-vm1");
    node.plug(&tap2, "port-unknown");
    let (second, ok) = node.agent_once(&state, &uplink);
    assert!(ok, "second pass failed: {second}");
    assert_eq!(node.vsctl(&["get", "port", &tap1, "tag"]), "101");
    assert_eq!(
        node.vsctl(&["get", "port", &tap2, "tag"]),
        "4095",
        "unknown iface-id parked"
    );
    let ports = &second["report"]["ports"];
    assert_eq!(ports[0]["port_id"], "port-unknown", "{ports}");
    assert_eq!(
        ports[0]["status"], "DOWN",
        "seen here, not placed here: {ports}"
    );
    assert_eq!(ports[0]["host"], "n1");
    assert_eq!(ports[1]["port_id"], "port-vm1");
    assert_eq!(ports[1]["status"], "ACTIVE");

    // Real packets: vm1 reaches its router through OVS on VLAN 101; the parked vm2 does not.
    let vm1 = format!("{}vm1", node.prefix);
    let vm2 = format!("{}vm2", node.prefix);
    assert!(
        ping(&vm1, "10.0.1.1"),
        "vm1 must reach its gateway 10.0.1.1"
    );
    assert!(
        !ping(&vm2, "10.0.1.1"),
        "a parked VM must not reach anything"
    );

    // A restart with nothing changed: zero OVSDB writes and zero kernel changes.
    let (third, ok) = node.agent_once(&state, &uplink);
    assert!(ok, "third pass failed: {third}");
    assert_eq!(third["ovs_changes"], 0, "{third}");
    assert_eq!(third["linux_changes"], 0, "{third}");
    assert_eq!(third["ovsdb_write_transactions"], 0, "{third}");

    // The router goes away: its namespace and its OVS ports go; the VM ports stay.
    let (fourth, ok) = node.agent_once(&desired(&tag, false), &uplink);
    assert!(ok, "fourth pass failed: {fourth}");
    assert!(!netns::exists(&router_ns));
    let ports = node.vsctl(&["list-ports", "br-vlan"]);
    assert!(!ports.contains(&format!("vr-{tag}")), "{ports}");
    assert!(ports.contains(&tap1) && ports.contains(&tap2), "{ports}");
    assert!(!Path::new(&format!("/run/netns/{router_ns}")).exists());
}

#[test]
fn a_missing_uplink_device_is_reported_and_the_rest_applied() {
    let node = Node::start();
    let tag = format!("m{}", std::process::id() % 100_000);
    let state = desired(&tag, true);
    let _ = node.agent_once(&state, "nodev0");
    // ovs-vswitchd fills Interface.error asynchronously: the next pass sees and reports it.
    let mut last = Value::Null;
    for _ in 0..20 {
        let (summary, ok) = node.agent_once(&state, "nodev0");
        if !ok {
            last = summary;
            break;
        }
        last = summary;
        std::thread::sleep(Duration::from_millis(250));
    }
    let errors = last["report"]["errors"].to_string();
    assert!(
        errors.contains("nodev0"),
        "the missing uplink must be reported: {last}"
    );
    // Everything else is in place.
    assert_eq!(
        node.vsctl(&["get", "port", &format!("vb-{tag}"), "tag"]),
        "2001"
    );
    assert!(netns::exists(&common::router_ns(&node)));
    assert_eq!(last["report"]["routers"][0]["state"], "ready", "{last}");
}

#[test]
fn the_daemon_says_ready_to_systemd_after_its_first_reconcile_and_pings_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let node = Node::start();
    let tag = format!("s{}", std::process::id() % 100_000);
    let sock_path = node.dir_path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let file = node.write_desired(&desired(&tag, true));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crosspod-agent"))
        .args(["--pod", "RegionOne", "--node", "n1", "--desired-file"])
        .arg(&file)
        .args(["--ovsdb", &node.sb().db_arg()])
        .args(["--node-netns", &node.ns, "--netns-prefix", &node.prefix])
        .args(["--bridge-mappings", "bridge:br-vlan", "--uplinks", ""])
        .args(["--datapath-type", "netdev", "--metrics-bind", ""])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = common::ChildGuard(&mut child);
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !(seen.iter().any(|m: &String| m == "READY=1")
        && seen.iter().any(|m: &String| m == "WATCHDOG=1"))
    {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no READY/WATCHDOG within 20 s ({e}); got {seen:?}"));
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    // READY only once the state is in place.
    assert_eq!(
        node.vsctl(&["get", "port", &format!("vb-{tag}"), "tag"]),
        "2001"
    );
    assert!(netns::exists(&common::router_ns(&node)));
}
