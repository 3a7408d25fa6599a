//! Shared test support: root and tool checks that fail loudly, unique names, and a lab guard
//! that brings its lab down (and sweeps anything with its prefix) even when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails the test unless it runs as root with the tools the lab needs.
pub fn require_root_and_tools() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "these tests need root (namespaces, veth, OVS): run `cargo test -p crosspod-cli` as root"
    );
    for tool in [
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovsdb-tool",
        "ip",
        "ping",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is not on PATH: install openvswitch-switch, iproute2 and iputils-ping"
        );
    }
    assert!(
        Path::new("/usr/share/openvswitch/vswitch.ovsschema").exists(),
        "the OVS schema /usr/share/openvswitch/vswitch.ovsschema is missing: install openvswitch-common"
    );
}

/// A unique short tag: `c<pid mod 100000>x<nn>` (at most 9 bytes, a valid prefix). The
/// fixed width keeps one tag from being a prefix of another (`x1` vs `x10`).
pub fn unique_tag() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst) % 100;
    format!("c{}x{n:02}", std::process::id() % 100_000)
}

/// The crosspod binary under test.
pub fn crosspod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crosspod"))
}

/// Runs a command and returns its output (not checking the status).
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two controller ports for one lab, below the kernel's ephemeral range (so no port the lab
/// or another test picks with bind(0) can land on them) and distinct per process and lab.
pub fn controller_ports() -> (u16, u16) {
    static N: AtomicU32 = AtomicU32::new(0);
    for _ in 0..50 {
        let n = N.fetch_add(1, Ordering::SeqCst) % 10;
        let base = 21_000 + (std::process::id() % 500) as u16 * 20 + n as u16 * 2;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(base) && free(base + 1) {
            return (base, base + 1);
        }
    }
    panic!("no free pair of controller ports in this test process's range");
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Names of all network namespaces.
pub fn namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of live processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            == Some("Z")
        {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) {
            v.push(pid);
        }
    }
    v
}

/// Where the controller binary is: CROSSPOD_CONTROLLER_BIN, or next to the crosspod binary
/// (where `cargo test --workspace` builds it).
pub fn controller_bin() -> PathBuf {
    bin_near("CROSSPOD_CONTROLLER_BIN", "crosspod-controller")
}

/// Where the agent binary is (as [`controller_bin`]).
pub fn agent_bin() -> PathBuf {
    bin_near("CROSSPOD_AGENT_BIN", "crosspod-agent")
}

fn bin_near(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_BIN_EXE_crosspod"))
        .parent()
        .unwrap()
        .join(name)
}

/// Fails unless the controller binary exists, saying how to build it.
pub fn require_controller() -> PathBuf {
    let p = controller_bin();
    assert!(
        p.exists(),
        "controller binary {} is missing: build it with `cargo build -p controller` into the same target dir, or set CROSSPOD_CONTROLLER_BIN",
        p.display()
    );
    p
}

/// A lab owned by one test: unique prefix, directory and ports; always brought down.
pub struct Lab {
    /// Namespace prefix.
    pub prefix: String,
    /// Lab directory.
    pub dir: PathBuf,
    /// Tricircle port.
    pub tricircle_port: u16,
    /// Neutron port.
    pub neutron_port: u16,
}

impl Lab {
    /// A fresh lab description (nothing is created yet).
    pub fn new() -> Lab {
        let prefix = unique_tag();
        let dir = std::env::temp_dir().join(format!("crosspod-cli-{prefix}"));
        let (tricircle_port, neutron_port) = controller_ports();
        Lab {
            prefix,
            dir,
            tricircle_port,
            neutron_port,
        }
    }

    /// `crosspod lab <args> --dir DIR`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = crosspod();
        c.arg("lab").args(args).arg("--dir").arg(&self.dir);
        c.env_remove("CROSSPOD_LAB_DIR");
        c
    }

    /// `crosspod lab up` with this lab's prefix and ports, and the given binaries.
    pub fn up_cmd(&self, controller: &Path, agent: &Path) -> Command {
        let mut c = self.cmd(&["up"]);
        c.arg("--prefix")
            .arg(&self.prefix)
            .arg("--tricircle-port")
            .arg(self.tricircle_port.to_string())
            .arg("--neutron-port")
            .arg(self.neutron_port.to_string())
            .arg("--controller-bin")
            .arg(controller)
            .arg("--agent-bin")
            .arg(agent);
        c
    }

    /// `crosspod vm <args> --dir DIR` with the lab's env exported.
    pub fn vm(&self, args: &[&str]) -> Command {
        let mut c = crosspod();
        c.arg("vm").args(args).arg("--dir").arg(&self.dir);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c
    }

    /// The variables `crosspod lab env` exports.
    pub fn env(&self) -> Vec<(String, String)> {
        let text = ok(&mut self.cmd(&["env"]));
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect()
    }

    /// The value of one exported variable.
    pub fn env_var(&self, key: &str) -> String {
        self.env()
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("lab env has no {key}"))
            .1
    }

    /// Namespace of an instance (`node1`, `node2`, `ext`).
    pub fn ns(&self, inst: &str) -> String {
        format!("{}{inst}", self.prefix)
    }

    /// OVSDB remote of an instance.
    pub fn db(&self, inst: &str) -> String {
        format!("unix:{}", self.dir.join(inst).join("db.sock").display())
    }

    /// `ovs-vsctl --db=<inst>` with args; returns stdout.
    pub fn vsctl(&self, inst: &str, args: &[&str]) -> String {
        ok(Command::new("ovs-vsctl")
            .arg(format!("--db={}", self.db(inst)))
            .arg("--timeout=20")
            .args(args))
    }

    /// Namespaces that carry this lab's prefix.
    pub fn leftover_namespaces(&self) -> Vec<String> {
        namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&self.prefix))
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.cmd(&["down"]).output();
        // Sweep whatever a failed test or a bug left: only things carrying this lab's
        // unique prefix or directory.
        for pid in processes_mentioning(&format!("{}/", self.dir.display())) {
            // SAFETY: kill(2) on a process whose command line names this test's directory.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for ns in self.leftover_namespaces() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A namespace made by a test (a test leg or a squatter), deleted on drop.
pub struct TestNs(pub String);

impl TestNs {
    /// Creates it with `ip netns add`.
    pub fn create(name: &str) -> TestNs {
        ok(Command::new("ip").args(["netns", "add", name]));
        TestNs(name.to_string())
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Runs a command inside a namespace (`ip netns exec`).
pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// The real openstack CLI of this machine (in `$CROSSPOD_VENV`, default /var/lib/crosspod/venv).
pub fn openstack_bin() -> PathBuf {
    let venv = std::env::var_os("CROSSPOD_VENV").unwrap_or_else(|| "/var/lib/crosspod/venv".into());
    Path::new(&venv).join("bin").join("openstack")
}

/// Fails unless the openstack CLI is installed.
pub fn require_openstack() {
    let bin = openstack_bin();
    assert!(
        bin.exists(),
        "the openstack CLI is missing at {}: install python-openstackclient in that venv (scripts/install-deps.sh)",
        bin.display()
    );
}

impl Lab {
    /// Brings the lab up with the real controller and no agents (tests tag VM ports by hand,
    /// which a running agent would fight), asserting the controller runs.
    pub fn up_with_controller(&self) -> String {
        let ctl = require_controller();
        let out = ok(&mut self.up_cmd(&ctl, Path::new("/nonexistent/crosspod-agent")));
        assert!(
            !out.contains("WARNING: controller"),
            "the controller did not come up:\n{out}"
        );
        out
    }

    /// `openstack ARGS` with the lab's env (admin token unless `token` is given).
    pub fn openstack(&self, token: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new(openstack_bin());
        for (k, v) in self.env() {
            c.env(k, v);
        }
        if let Some(t) = token {
            c.env("OS_TOKEN", t);
        }
        c.env_remove("OS_CLOUD")
            .env_remove("OS_AUTH_URL")
            .args(args);
        c
    }

    /// Creates a network with one subnet through the openstack CLI; returns the network id.
    pub fn network(&self, name: &str, cidr: &str) -> String {
        let id = ok(&mut self.openstack(
            None,
            &["network", "create", name, "-f", "value", "-c", "id"],
        ));
        ok(&mut self.openstack(
            None,
            &[
                "subnet",
                "create",
                "--network",
                name,
                "--subnet-range",
                cidr,
                &format!("{name}-subnet"),
                "-f",
                "value",
                "-c",
                "id",
            ],
        ));
        id.trim().to_string()
    }
}

/// A test host on `node`'s br-vlan: a namespace `<prefix>h<i>` with `10.99.0.<i>/24` on a veth
/// whose other end (`th<i>`) is an access port of VLAN `tag`.
pub fn host(lab: &Lab, node: &str, i: u8, tag: u16) -> TestNs {
    let ns = TestNs::create(&format!("{}h{i}", lab.prefix));
    let port = format!("th{i}");
    ok(Command::new("ip").args([
        "link",
        "add",
        "eth0",
        "netns",
        &ns.0,
        "type",
        "veth",
        "peer",
        "name",
        &port,
        "netns",
        &lab.ns(node),
    ]));
    ok(Command::new("ip").args(["-n", &ns.0, "link", "set", "eth0", "up"]));
    ok(Command::new("ip").args(["-n", &lab.ns(node), "link", "set", &port, "up"]));
    ok(Command::new("ip").args([
        "-n",
        &ns.0,
        "addr",
        "add",
        &format!("10.99.0.{i}/24"),
        "dev",
        "eth0",
    ]));
    lab.vsctl(node, &["add-port", "br-vlan", &port, &format!("tag={tag}")]);
    ns
}
