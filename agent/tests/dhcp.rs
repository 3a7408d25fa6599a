//! The agent's DHCP server with real packets: a node namespace with its own OVS, the agent
//! daemon serving a network's DHCP from `<prefix>qdhcp-<network id>`, and VMs (namespaces
//! plugged into br-vlan) running a real client, busybox `udhcpc` with the lab's script
//! (scripts/udhcpc-vm.sh). Needs root, Open vSwitch and udhcpc (scripts/install-deps.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{free_port, metrics, wait_for, Node};
use plumbing::{netns, Netns, VethEnd, VethSpec};
use serde_json::{json, Value};

const NET: &str = "5a1c0e2e-1484-4fdb-8e00-0000000000d1";
const SCRIPT: &str = include_str!("../../scripts/udhcpc-vm.sh");
const MAC1: &str = "fa:16:3e:00:00:11";
const MAC2: &str = "fa:16:3e:00:00:12";

fn state(tag: &str, dns: &str, with_dhcp: bool) -> Value {
    let dhcp = if with_dhcp {
        json!({NET: {
            "network_id": NET, "port_id": "dhcp-port", "namespace": format!("qdhcp-{NET}"),
            "bridge": "br-vlan", "tag": 101, "mac": "fa:16:3e:00:00:02",
            "ns_ifname": format!("ns-{tag}"), "ovs_ifname": format!("td-{tag}"),
            "mtu": 1400, "lease_seconds": 120,
            "subnets": [{"subnet_id": "s1", "cidr": "10.0.1.0/24", "server_address": "10.0.1.2",
                         "router": "10.0.1.1", "dns_nameservers": [dns],
                         "host_routes": [{"destination": "10.0.2.0/24", "nexthop": "10.0.1.254"}]}],
            "hosts": [{"mac": MAC1, "ip": "10.0.1.11", "subnet_id": "s1", "port_id": "port-vm1",
                       "hostname": "vm1"}]
        }})
    } else {
        json!({})
    };
    json!({
        "node": "n1", "pod": "RegionOne", "revision": 3,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": true, "trunks": []}},
        "ports": {
            "port-vm1": {"bridge": "br-vlan", "tag": 101, "network_id": NET, "mac": MAC1,
                         "fixed_ips": ["10.0.1.11"]},
            "port-vm2": {"bridge": "br-vlan", "tag": 101, "network_id": NET, "mac": MAC2,
                         "fixed_ips": ["10.0.1.12"]}
        },
        "dhcp": dhcp
    })
}

/// A VM namespace with an unconfigured `eth0` (MAC `mac`) plugged into br-vlan as `iface_id`,
/// and its own `/etc/netns/<ns>/resolv.conf` (removed on drop).
struct Vm {
    ns: String,
    etc: PathBuf,
    log: PathBuf,
}

impl Vm {
    fn new(node: &Node, name: &str, tap: &str, mac: &str, iface_id: &str) -> Vm {
        let ns = format!("{}{name}", node.prefix);
        netns::create(&ns).unwrap();
        let mut a = VethEnd::new("eth0", Netns::named(ns.clone()));
        a.mac = plumbing::link::parse_mac(mac);
        plumbing::link::create_veth(&VethSpec {
            a,
            b: VethEnd::new(tap, Netns::named(node.ns.clone())),
            owner: "test-vm".into(),
        })
        .unwrap();
        node.plug(tap, iface_id);
        let etc = PathBuf::from(format!("/etc/netns/{ns}"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), "").unwrap();
        let log = node.dir_path().join(format!("{name}.dhcp.log"));
        Vm { ns, etc, log }
    }

    fn udhcpc(&self, script: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "udhcpc", "-i", "eth0", "-s"])
            .arg(script)
            .args(["-O", "staticroutes", "-O", "mtu"])
            .args(args)
            .env("CROSSPOD_DHCP_LOG", &self.log)
            .stdout(std::fs::File::create(self.log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(self.log.with_extension("err")).unwrap());
        c
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn ip(&self, args: &[&str]) -> String {
        common::ip_in(&self.ns, args)
    }

    fn resolv(&self) -> String {
        std::fs::read_to_string(self.etc.join("resolv.conf")).unwrap_or_default()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// A client process killed on drop.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Client {
    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, sig) };
    }
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(&format!("{name}{{network_id=\"{NET}\"}}")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn vms_get_their_lease_by_dhcp_changes_reach_them_on_renewal_and_restarts_keep_serving() {
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    let node = Node::start();
    let tag = format!("{}", std::process::id() % 100_000);
    let uplink = format!("up{tag}");
    node.uplink(&uplink);
    let script = node.dir_path().join("udhcpc-vm.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dhcp_ns = format!("{}qdhcp-{NET}", node.prefix);
    let dhcp_port = format!("td-{tag}");

    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut agent = node.agent_daemon(
        &state(&tag, "10.0.0.53", true),
        &uplink,
        &["--metrics-bind", &bind],
    );
    let got = node.wait_vsctl(
        &["get", "port", &dhcp_port, "tag"],
        "101",
        Duration::from_secs(30),
    );
    assert_eq!(
        got,
        "101",
        "DHCP port not tagged; agent log:\n{}",
        agent.log()
    );
    assert!(netns::exists(&dhcp_ns));
    assert_eq!(
        node.vsctl(&["get", "port", &dhcp_port, "external_ids:crosspod-owner"]),
        "agent"
    );
    wait_for("the DHCP server to listen", Duration::from_secs(20), || {
        metrics(port).contains("crosspod_agent_dhcp_servers 1")
    });

    let vm1 = Vm::new(&node, "vm1", &format!("t1{tag}"), MAC1, "port-vm1");
    let vm2 = Vm::new(&node, "vm2", &format!("t2{tag}"), MAC2, "port-vm2");
    for t in [format!("t1{tag}"), format!("t2{tag}")] {
        let got = node.wait_vsctl(&["get", "port", &t, "tag"], "101", Duration::from_secs(20));
        assert_eq!(got, "101", "agent log:\n{}", agent.log());
    }

    // vm1: a lease with address, mask, default route, the host route and MTU.
    let pid = node.dir_path().join("vm1.pid");
    let c1 = Client(
        vm1.udhcpc(&script, &["-f", "-t", "10", "-T", "1", "-p"])
            .arg(&pid)
            .spawn()
            .expect("udhcpc (apt-get install udhcpc)"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !vm1.events().iter().any(|e| e.starts_with("bound")) {
        assert!(
            Instant::now() < deadline,
            "no lease for vm1: {:?}\nudhcpc: {}\n{}\nagent log:\n{}",
            vm1.events(),
            std::fs::read_to_string(vm1.log.with_extension("out")).unwrap_or_default(),
            std::fs::read_to_string(vm1.log.with_extension("err")).unwrap_or_default(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let bound = vm1
        .events()
        .into_iter()
        .find(|e| e.starts_with("bound"))
        .unwrap();
    assert!(bound.contains("ip=10.0.1.11/24"), "{bound}");
    assert!(bound.contains("serverid=10.0.1.2"), "{bound}");
    assert!(bound.contains("lease=120"), "{bound}");
    let addrs = vm1.ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("inet 10.0.1.11/24"), "{addrs}");
    assert!(addrs.contains("mtu 1400"), "{addrs}");
    let routes = vm1.ip(&["-4", "route"]);
    assert!(routes.contains("default via 10.0.1.1"), "{routes}");
    assert!(routes.contains("10.0.2.0/24 via 10.0.1.254"), "{routes}");
    assert_eq!(vm1.resolv(), "nameserver 10.0.0.53\n");
    assert!(
        common::ping(&vm1.ns, "10.0.1.2"),
        "vm1 cannot reach the DHCP port"
    );

    // vm2: its MAC is not among the hosts: no lease, the client gives up.
    let started = Instant::now();
    let st = vm2
        .udhcpc(&script, &["-n", "-q", "-t", "2", "-T", "1"])
        .status()
        .unwrap();
    assert!(!st.success(), "vm2 got a lease: {:?}", vm2.events());
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!vm2.events().iter().any(|e| e.starts_with("bound")));
    assert!(!vm2.ip(&["-4", "addr"]).contains("10.0.1."));
    let m = metrics(port);
    assert!(metric(&m, "crosspod_agent_dhcp_ignored_total") >= 2, "{m}");
    assert!(metric(&m, "crosspod_agent_dhcp_offers_total") >= 1, "{m}");
    assert!(metric(&m, "crosspod_agent_dhcp_acks_total") >= 1, "{m}");

    // A changed dns_nameservers reaches vm1 at its next renewal (forced with SIGUSR1).
    node.write_desired(&state(&tag, "10.0.0.54", true));
    let renewed = |vm: &Vm, dns: &str, before: usize| {
        vm.events()
            .iter()
            .skip(before)
            .any(|e| e.starts_with("renew") && e.contains(&format!("dns={dns}")))
    };
    let before = vm1.events().len();
    wait_for(
        "the new DNS server on renewal",
        Duration::from_secs(30),
        || {
            c1.signal(libc::SIGUSR1);
            std::thread::sleep(Duration::from_millis(700));
            renewed(&vm1, "10.0.0.54", before)
        },
    );
    assert_eq!(vm1.resolv(), "nameserver 10.0.0.54\n");

    // Agent restart: a pass with nothing changed writes nothing, and renewals are answered.
    agent.kill9();
    let (once, ok) = node.agent_once(&state(&tag, "10.0.0.54", true), &uplink);
    assert!(ok, "{once}");
    assert_eq!(once["linux_changes"], 0, "{once}");
    assert_eq!(once["ovs_changes"], 0, "{once}");
    let port2 = free_port();
    let bind2 = format!("127.0.0.1:{port2}");
    let agent2 = node.agent_daemon(
        &state(&tag, "10.0.0.54", true),
        &uplink,
        &["--metrics-bind", &bind2],
    );
    let before = vm1.events().len();
    wait_for(
        "a renewal after the restart",
        Duration::from_secs(30),
        || {
            c1.signal(libc::SIGUSR1);
            std::thread::sleep(Duration::from_millis(700));
            renewed(&vm1, "10.0.0.54", before)
        },
    );
    assert!(metric(&metrics(port2), "crosspod_agent_dhcp_acks_total") >= 1);
    assert!(vm1.ip(&["-4", "addr"]).contains("inet 10.0.1.11/24"));

    // The server leaves the desired state: its namespace and OVS port go.
    node.write_desired(&state(&tag, "10.0.0.54", false));
    wait_for("the DHCP namespace to go", Duration::from_secs(20), || {
        !netns::exists(&dhcp_ns)
    });
    let got = node.wait_vsctl(&["list-ports", "br-vlan"], "", Duration::from_secs(1));
    let gone = node.wait_vsctl(
        &["--if-exists", "get", "port", &dhcp_port, "name"],
        "",
        Duration::from_secs(20),
    );
    assert_eq!(
        gone,
        "",
        "DHCP port still on br-vlan: {got}\n{}",
        agent2.log()
    );
    wait_for("the server to stop", Duration::from_secs(10), || {
        metrics(port2).contains("crosspod_agent_dhcp_servers 0")
    });

    drop(c1);
    drop(agent2);
    drop(vm1);
    drop(vm2);
    drop(node);
    assert_eq!(
        std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        host_resolv,
        "the host's /etc/resolv.conf changed"
    );
}
