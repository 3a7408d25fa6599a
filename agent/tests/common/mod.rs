//! Shared helpers of the agent's node tests: a node namespace with its own ovsdb-server and
//! ovs-vswitchd, VMs, the agent binary in one-pass or daemon mode; everything removed on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ovs::sandbox::{Sandbox, SandboxOptions};
use plumbing::{netns, Handle, Netns, ProbeOptions, Route, VethEnd, VethSpec};
use serde_json::{json, Value};

static N: AtomicU32 = AtomicU32::new(0);

/// A node namespace with OVS, plus the namespaces the test makes around it; all removed on drop.
pub struct Node {
    pub prefix: String,
    pub ns: String,
    sandbox: Option<Sandbox>,
    dir: tempfile::TempDir,
}

impl Node {
    pub fn start() -> Node {
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

    pub fn sb(&self) -> &Sandbox {
        self.sandbox.as_ref().unwrap()
    }

    pub fn vsctl(&self, args: &[&str]) -> String {
        self.sb()
            .vsctl(args)
            .unwrap_or_else(|e| panic!("ovs-vsctl {args:?}: {e}"))
            .trim()
            .to_string()
    }

    /// A namespace `name` with `eth0` (address, default route) whose peer `tap` is in the node.
    pub fn vm(&self, name: &str, tap: &str, addr: &str, gw: &str, mac: &str) {
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
    pub fn agent_once(&self, state: &Value, uplink: &str) -> (Value, bool) {
        self.agent_once_with(state, uplink, &[])
    }

    /// [`Node::agent_once`] with extra flags (`--local-ip`, say).
    pub fn agent_once_with(&self, state: &Value, uplink: &str, extra: &[&str]) -> (Value, bool) {
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
            .args(extra)
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

/// The router of [`desired`]: a UUID, as the agent accepts only `qrouter-<uuid>` namespaces.
pub const ROUTER: &str = "0f6e3d2e-1484-4fdb-8e00-000000000001";

/// The namespace of [`ROUTER`] on `node`.
pub fn router_ns(node: &Node) -> String {
    format!("{}qrouter-{ROUTER}", node.prefix)
}

pub fn desired(prefix_tag: &str, with_router: bool) -> Value {
    let routers = if with_router {
        json!({ROUTER: {
            "router_id": ROUTER, "project_id": "p1", "namespace": format!("qrouter-{ROUTER}"),
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

pub fn ping(ns: &str, target: &str) -> bool {
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

impl Node {
    /// Writes the desired-state file the daemon-mode agent watches.
    pub fn write_desired(&self, state: &Value) -> PathBuf {
        let file = self.dir.path().join("desired-daemon.json");
        let tmp = self.dir.path().join("desired-daemon.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(state).unwrap()).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        file
    }

    /// Starts `crosspod-agent` as a daemon in standalone mode (desired state from a file).
    pub fn agent_daemon(&self, state: &Value, uplink: &str, extra: &[&str]) -> AgentProcess {
        let file = self.write_desired(state);
        let log = self.dir.path().join("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_crosspod-agent"))
            .args(["--pod", "RegionOne", "--node", "n1"])
            .arg("--desired-file")
            .arg(&file)
            .args(["--ovsdb", &self.sb().db_arg()])
            .args(["--node-netns", &self.ns, "--netns-prefix", &self.prefix])
            .args(["--bridge-mappings", "bridge:br-vlan"])
            .args(["--uplinks", &format!("br-vlan:{uplink}")])
            .args(["--datapath-type", "netdev"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting crosspod-agent");
        AgentProcess { child, log }
    }

    /// Polls `ovs-vsctl ARGS` until its output equals `want` (or `timeout`); returns the last output.
    pub fn wait_vsctl(&self, args: &[&str], want: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self
                .sb()
                .vsctl(args)
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            if got == want || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Plugs `tap` into br-vlan with `external_ids:iface-id` (as Nova/os-vif would).
    pub fn plug(&self, tap: &str, iface_id: &str) {
        self.vsctl(&[
            "add-port",
            "br-vlan",
            tap,
            "--",
            "set",
            "interface",
            tap,
            &format!("external_ids:iface-id={iface_id}"),
        ]);
    }

    /// An uplink veth in the node whose far end sits in a namespace of its own.
    pub fn uplink(&self, name: &str) {
        let far = format!("{}far", self.prefix);
        netns::create(&far).unwrap();
        plumbing::link::create_veth(&VethSpec {
            a: VethEnd::new(name, Netns::named(self.ns.clone())),
            b: VethEnd::new("eth1", Netns::named(far)),
            owner: "test-cable".into(),
        })
        .unwrap();
    }
}

/// A running agent daemon, killed on drop.
pub struct AgentProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl AgentProcess {
    /// SIGKILL, no chance to clean up (the crash case).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The agent's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Kills a child process on drop.
pub struct ChildGuard<'a>(pub &'a mut Child);

impl Drop for ChildGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Node {
    /// The node's temp dir (files of the test).
    pub fn dir_path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OVS of its own with bridge `br-u`: the underlay switch the nodes' `br-phy` are cabled to
/// (the lab recipe's "VxLAN in the userspace datapath").
pub fn underlay_switch() -> Node {
    let sw = Node::start();
    sw.vsctl(&[
        "add-br",
        "br-u",
        "--",
        "set",
        "bridge",
        "br-u",
        "datapath_type=netdev",
    ]);
    sw
}

/// Plugs `node` into the underlay switch (`u0` in the node, `s<n>` on the switch), puts `ip` on
/// its `br-phy`, and makes the VMs' bridge `br-vlan` as a node's configuration has it.
pub fn underlay(sw: &Node, node: &Node, n: u8, ip: &str) {
    plumbing::link::create_veth(&VethSpec {
        a: VethEnd::new("u0", Netns::named(node.ns.clone())),
        b: VethEnd::new(format!("s{n}"), Netns::named(sw.ns.clone())),
        owner: "test-underlay".into(),
    })
    .unwrap();
    sw.vsctl(&["add-port", "br-u", &format!("s{n}")]);
    node.vsctl(&[
        "add-br",
        "br-phy",
        "--",
        "set",
        "bridge",
        "br-phy",
        "datapath_type=netdev",
        "--",
        "add-port",
        "br-phy",
        "u0",
    ]);
    let mut h = Handle::new(&Netns::named(node.ns.clone())).unwrap();
    for _ in 0..100 {
        if h.link("br-phy").unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // OVS made br-phy, not crosspod: plumbing would refuse it; plain `ip` as the recipe does.
    for args in [
        vec!["addr", "add", &format!("{ip}/24"), "dev", "br-phy"],
        vec!["link", "set", "br-phy", "up"],
    ] {
        let st = Command::new("ip")
            .args(["-n", &node.ns])
            .args(&args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    }
    // The VMs' bridge, as the node's configuration has it before any VM is plugged.
    node.vsctl(&[
        "add-br",
        "br-vlan",
        "--",
        "set",
        "bridge",
        "br-vlan",
        "datapath_type=netdev",
    ]);
}

/// Polls `f` every 100 ms until it holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /metrics` of an agent's endpoint on 127.0.0.1:`port`, empty when it does not answer.
pub fn metrics(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut out);
    out
}

/// tcpdump on `ifname` in `ns` for the length of a test step (`tcpdump_args`: options and the
/// filter, e.g. `["-e", "arp"]`); killed on drop even when the test fails.
pub struct Capture(Option<Child>);

impl Capture {
    /// Starts the capture and gives tcpdump 1.5 s to attach.
    pub fn start(ns: &str, ifname: &str, tcpdump_args: &[&str]) -> Capture {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "tcpdump", "-l", "-n", "-i", ifname])
            .args(tcpdump_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump");
        std::thread::sleep(Duration::from_millis(1500));
        Capture(Some(child))
    }

    /// Waits 0.5 s for the last packets, stops tcpdump and returns what it printed.
    pub fn finish(mut self) -> String {
        use std::io::Read;
        std::thread::sleep(Duration::from_millis(500));
        let mut child = self.0.take().expect("a running capture");
        let _ = child.kill();
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut out)
            .expect("tcpdump's output");
        let _ = child.wait();
        out
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A VM namespace taking router advertisements (accept_ra=2, autoconf) with `eth0` (MAC `mac`, checksums computed by itself) plugged into br-vlan.
pub struct SlaacVm {
    /// Its namespace.
    pub ns: String,
}

impl SlaacVm {
    /// Makes the namespace `<node prefix><name>` and plugs it into the node as `tap` with
    /// `iface_id`.
    pub fn new(node: &Node, name: &str, tap: &str, mac_s: &str, iface_id: &str) -> SlaacVm {
        let ns = format!("{}{name}", node.prefix);
        plumbing::netns::create(&ns).unwrap();
        let vm = Netns::named(ns.clone());
        // As a VM with `accept_ra=2` / autoconf on: the defaults of a fresh namespace are copied
        // into the interface when it is made.
        plumbing::sysctl::set(&vm, "net.ipv6.conf.default.accept_ra", "2").unwrap();
        plumbing::sysctl::set(&vm, "net.ipv6.conf.default.autoconf", "1").unwrap();
        let mut a = VethEnd::new("eth0", vm);
        a.mac = Some(plumbing::link::parse_mac(mac_s).expect("a MAC"));
        plumbing::link::create_veth(&VethSpec {
            a,
            b: VethEnd::new(tap, Netns::named(node.ns.clone())),
            owner: "test-vm".into(),
        })
        .unwrap();
        let vm = Netns::named(ns.clone());
        plumbing::sysctl::set(&vm, "net.ipv6.conf.eth0.accept_ra", "2").unwrap();
        plumbing::sysctl::set(&vm, "net.ipv6.conf.eth0.autoconf", "1").unwrap();
        let st = Command::new("ip")
            .args(["netns", "exec", &ns, "ethtool", "-K", "eth0", "tx", "off"])
            .output()
            .expect("ethtool (scripts/install-deps.sh)");
        assert!(st.status.success(), "{st:?}");
        node.plug(tap, iface_id);
        SlaacVm { ns }
    }

    /// `ip -n <vm> ARGS`'s output.
    pub fn ip(&self, args: &[&str]) -> String {
        ip_in(&self.ns, args)
    }

    /// Waits until eth0's link-local address is past duplicate address detection.
    pub fn wait_link_local(&self) {
        wait_for(
            "the VM's link-local address",
            Duration::from_secs(15),
            || {
                let a = self.ip(&["-6", "addr", "show", "dev", "eth0", "scope", "link"]);
                a.contains("fe80::") && !a.contains("tentative")
            },
        );
    }

    /// `ip -6 route show default`.
    pub fn default_route(&self) -> String {
        self.ip(&["-6", "route", "show", "default"])
    }
}

/// `ip -n <ns> ARGS`'s output (empty when it fails).
pub fn ip_in(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}
