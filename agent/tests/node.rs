//! The agent binary on a real lab node: a namespace with its own ovsdb-server and
//! ovs-vswitchd (userspace datapath), an uplink device, a router instance and a VM that pings
//! its router through OVS. Driven with `--once --desired-file`, so the data plane is tested
//! without the controller. Needs root and Open vSwitch (installed by scripts/install-deps.sh).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ovs::sandbox::{Sandbox, SandboxOptions};
use plumbing::{netns, Handle, Netns, ProbeOptions, Route, VethEnd, VethSpec};
use serde_json::{json, Value};

static N: AtomicU32 = AtomicU32::new(0);

/// A node namespace with OVS, plus the namespaces the test makes around it; all removed on drop.
struct Node {
    prefix: String,
    ns: String,
    sandbox: Option<Sandbox>,
    dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        let prefix = format!(
            "cpn{}x{}-",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let ns = format!("{prefix}node");
        netns::create(&ns).unwrap_or_else(|e| panic!("creating {ns} (needs root): {e}"));
        let mut node = Node {
            prefix,
            ns: ns.clone(),
            sandbox: None,
            dir: tempfile::tempdir().unwrap(),
        };
        let sb = Sandbox::start(SandboxOptions {
            vswitchd: true,
            netns: Some(ns),
            clustered: false,
        })
        .unwrap_or_else(|e| panic!("starting ovsdb-server/ovs-vswitchd: {e}"));
        node.sandbox = Some(sb);
        node
    }

    fn sb(&self) -> &Sandbox {
        self.sandbox.as_ref().unwrap()
    }

    fn vsctl(&self, args: &[&str]) -> String {
        self.sb()
            .vsctl(args)
            .unwrap_or_else(|e| panic!("ovs-vsctl {args:?}: {e}"))
            .trim()
            .to_string()
    }

    /// A namespace `name` with `eth0` (address, default route) whose peer `tap` is in the node.
    fn vm(&self, name: &str, tap: &str, addr: &str, gw: &str, mac: &str) {
        let vm_ns = format!("{}{name}", self.prefix);
        netns::create(&vm_ns).unwrap();
        let mut a = VethEnd::new("eth0", Netns::named(vm_ns.clone()));
        a.mac = plumbing::link::parse_mac(mac);
        plumbing::link::create_veth(&VethSpec {
            a,
            b: VethEnd::new(tap, Netns::named(self.ns.clone())),
            owner: "test-vm".into(),
        })
        .unwrap();
        let mut h = Handle::new(&Netns::named(vm_ns)).unwrap();
        h.add_address("eth0", addr.parse().unwrap()).unwrap();
        h.add_route(&Route::new("0.0.0.0/0".parse().unwrap()).via(gw.parse().unwrap()))
            .unwrap();
    }

    /// Runs `crosspod-agent --once` on `state`; returns the JSON summary and whether it succeeded.
    fn agent_once(&self, state: &Value, uplink: &str) -> (Value, bool) {
        let file = self.dir.path().join("desired.json");
        std::fs::write(&file, serde_json::to_vec(state).unwrap()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_crosspod-agent"))
            .args(["--pod", "RegionOne", "--node", "n1", "--once"])
            .arg("--desired-file")
            .arg(&file)
            .args(["--ovsdb", &self.sb().db_arg()])
            .args(["--node-netns", &self.ns, "--netns-prefix", &self.prefix])
            .args(["--bridge-mappings", "bridge:br-vlan"])
            .args(["--uplinks", &format!("br-vlan:{uplink}")])
            .args(["--datapath-type", "netdev", "--metrics-bind", ""])
            .output()
            .expect("running crosspod-agent");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
            panic!(
                "agent printed no summary; stdout={stdout} stderr={}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (summary, out.status.success())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.sandbox.take());
        if let Ok(all) = netns::list() {
            for n in all.into_iter().filter(|n| n.starts_with(&self.prefix)) {
                let _ = netns::delete(&n);
            }
        }
    }
}

fn desired(prefix_tag: &str, with_router: bool) -> Value {
    let routers = if with_router {
        json!({"r1": {
            "router_id": "r1", "project_id": "p1", "namespace": "qrouter-r1",
            "legs": [
                {"kind": "internal", "bridge": "br-vlan", "tag": 101, "address": "10.0.1.1/24",
                 "mac": "fa:16:3e:00:01:01", "ns_ifname": format!("qr-{prefix_tag}"),
                 "ovs_ifname": format!("vr-{prefix_tag}"), "network_id": "net1", "subnet_id": "s1"},
                {"kind": "bridge", "bridge": "br-vlan", "tag": 2001, "address": "100.0.0.2/24",
                 "mac": "fa:16:3e:00:01:02", "ns_ifname": format!("qb-{prefix_tag}"),
                 "ovs_ifname": format!("vb-{prefix_tag}")}
            ],
            "routes": [{"destination": "10.0.2.0/24", "nexthop": "100.0.0.3"}]
        }})
    } else {
        json!({})
    };
    json!({
        "node": "n1", "pod": "RegionOne", "revision": 3,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": true, "trunks": [2001]}},
        "ports": {"port-vm1": {"bridge": "br-vlan", "tag": 101, "network_id": "net1",
                               "mac": "fa:16:3e:00:00:11", "fixed_ips": ["10.0.1.11"]}},
        "routers": routers
    })
}

fn ping(ns: &str, target: &str) -> bool {
    let opts = ProbeOptions {
        timeout: Duration::from_millis(700),
        retries: 6,
    };
    plumbing::probe::icmp(
        &Netns::named(ns.to_string()),
        "eth0",
        target.parse().unwrap(),
        &opts,
    )
    .map(|r| r.ok())
    .unwrap_or(false)
}

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

    let state = desired(&tag, true);
    let (first, ok) = node.agent_once(&state, &uplink);
    assert!(ok, "first pass failed: {first}");
    assert!(first["ovs_changes"].as_u64().unwrap() >= 4, "{first}");
    assert!(first["linux_changes"].as_u64().unwrap() >= 4, "{first}");
    assert_eq!(
        node.vsctl(&["get", "bridge", "br-vlan", "datapath_type"]),
        "netdev"
    );
    assert_eq!(node.vsctl(&["get", "port", &uplink, "trunks"]), "[2001]");
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
    let router_ns = format!("{}qrouter-r1", node.prefix);
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
    node.vsctl(&[
        "add-port",
        "br-vlan",
        &tap1,
        "--",
        "set",
        "interface",
        &tap1,
        "external_ids:iface-id=port-vm1",
    ]);
    node.vsctl(&[
        "add-port",
        "br-vlan",
        &tap2,
        "--",
        "set",
        "interface",
        &tap2,
        "external_ids:iface-id=port-unknown",
    ]);
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
    assert!(netns::exists(&format!("{}qrouter-r1", node.prefix)));
    assert_eq!(last["report"]["routers"][0]["state"], "ready", "{last}");
}
