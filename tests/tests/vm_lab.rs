//! The lab on real virtual machines (issue #16): `vagrant/vmlab.sh` builds the node image and
//! boots node1, node2 and ext with QEMU; `vagrant/play-guide.sh` plays the guide from the host;
//! then the node-level faults a real deployment sees, each checked under systemd on the kernel
//! datapath: the agent restarted with nothing changed, node2 rebooted, Open vSwitch stopped,
//! started and restarted under the agent, the agent's watchdog. Teardown (`vmlab.sh down`) runs
//! even when an assertion fails.
//!
//! With TCG (KVM guests hang on these machines) it takes 3-7 minutes, plus ~2 minutes for QEMU
//! and the Debian image on a fresh machine: within CI's budget, so `scripts/test.sh` runs it
//! last (CROSSPOD_VM_LAB=1, the debug binaries; `--no-vms` skips it, `--vms-only` runs only
//! it). A plain `cargo test` leaves it `#[ignore]`d; run with `--ignored` but without
//! CROSSPOD_VM_LAB=1, it fails saying so rather than passing without having booted anything.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::workspace_root;

/// A running VM lab in its own run directory; `vmlab.sh down` on drop, after printing the
/// consoles and journals when the test is failing.
struct VmLab {
    script: PathBuf,
    run: PathBuf,
    env: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl VmLab {
    fn cmd(&self) -> Command {
        let mut c = Command::new("bash");
        c.arg(&self.script)
            .env("CROSSPOD_VMLAB_DIR", &self.run)
            .env("CROSSPOD_BIN_DIR", bin_dir());
        c
    }

    /// Runs a shell command on a node; returns (success, stdout+stderr).
    fn try_on(&self, node: &str, cmd: &str) -> (bool, String) {
        let o = self
            .cmd()
            .args(["ssh", node, cmd])
            .output()
            .expect("running vmlab.sh ssh");
        (o.status.success(), text(&o))
    }

    /// Runs a shell command on a node and returns its stdout; fails the test if it fails.
    fn on(&self, node: &str, cmd: &str) -> String {
        let o = self
            .cmd()
            .args(["ssh", node, cmd])
            .output()
            .expect("running vmlab.sh ssh");
        assert!(o.status.success(), "on {node}: {cmd}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `systemctl show UNIT -p PROP --value` on a node.
    fn prop(&self, node: &str, unit: &str, prop: &str) -> String {
        self.on(node, &format!("systemctl show {unit} -p {prop} --value"))
    }

    /// Waits until `cmd` succeeds on `node` (checked every second, on the node itself).
    fn wait_on(&self, node: &str, cmd: &str, secs: u64) -> Duration {
        let t0 = Instant::now();
        let (ok, out) = self.try_on(
            node,
            &format!("for i in $(seq {secs}); do ( {cmd} ) >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1"),
        );
        assert!(
            ok,
            "on {node}: `{cmd}` did not succeed within {secs} s: {out}"
        );
        t0.elapsed()
    }

    fn ping_from_vm(&self, node: &str, vm: &str, ip: &str, secs: u64) -> Duration {
        self.wait_on(node, &format!("ip netns exec {vm} ping -c1 -W1 {ip}"), secs)
    }

    /// The agent's counters on a node, from its metrics endpoint.
    fn agent_metric(&self, node: &str, name: &str) -> f64 {
        let body = self.on(node, "curl -sf http://127.0.0.1:19801/metrics");
        metric(&body, name).unwrap_or_else(|| panic!("{name} not in {node}'s metrics:\n{body}"))
    }

    fn diagnostics(&self) {
        for n in ["node1", "node2", "ext"] {
            if let Ok(t) = std::fs::read_to_string(self.run.join(format!("{n}.console"))) {
                let tail: Vec<&str> = t.lines().rev().take(40).collect();
                eprintln!("--- {n} console (last 40 lines)");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
            let (_, j) = self.try_on(
                n,
                "journalctl --no-pager -n 60 -u crosspod-agent -u crosspod-controller -u openvswitch-switch -u ovs-vswitchd -u ovsdb-server -u crosspod-provision",
            );
            eprintln!("--- {n} journal\n{j}");
        }
    }
}

impl Drop for VmLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.diagnostics();
        }
        let o = self.cmd().arg("down").output();
        if let Ok(o) = o {
            eprintln!("vmlab down: {}", text(&o).trim());
        }
    }
}

/// The value of a Prometheus sample without labels (`name value`).
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Where the binaries put into the image are: CROSSPOD_BIN_DIR (scripts/test.sh: target/debug,
/// stripped in the image), else target/release.
fn bin_dir() -> PathBuf {
    std::env::var_os("CROSSPOD_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release"))
}

fn get<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("play-guide.sh printed no {key}:\n{out}"))
        .trim()
}

#[test]
fn metric_reads_unlabelled_samples_only() {
    let body = "# HELP x\ncrosspod_agent_ovsdb_changes_total 0\n\
                crosspod_agent_kernel_changes_total 12\n\
                crosspod_agent_reconcile_passes_total{outcome=\"ok\"} 3\n";
    assert_eq!(
        metric(body, "crosspod_agent_ovsdb_changes_total"),
        Some(0.0)
    );
    assert_eq!(
        metric(body, "crosspod_agent_kernel_changes_total"),
        Some(12.0)
    );
    assert_eq!(metric(body, "crosspod_agent_reconcile_passes_total"), None);
    assert_eq!(metric(body, "crosspod_agent_ovsdb_changes"), None);
}

#[test]
#[ignore = "boots three QEMU VMs under TCG (3-7 min): scripts/test.sh runs it with CROSSPOD_VM_LAB=1"]
fn vm_lab_guide_reboot_and_ovs_restarts_under_systemd() {
    assert_eq!(
        std::env::var("CROSSPOD_VM_LAB").as_deref(),
        Ok("1"),
        "the VM lab test runs only when selected: `scripts/test.sh` (or `--vms-only`), or \
         CROSSPOD_VM_LAB=1 with the binaries built (CROSSPOD_BIN_DIR, target/release by default)"
    );
    for b in ["crosspod", "crosspod-agent", "crosspod-controller"] {
        assert!(
            bin_dir().join(b).is_file(),
            "{} is missing: cargo build --release --bins (or set CROSSPOD_BIN_DIR)",
            bin_dir().join(b).display()
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("vmlab")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut lab = VmLab {
        script: workspace_root().join("vagrant/vmlab.sh"),
        run: tmp.path().join("run"),
        env: Vec::new(),
        _tmp: tmp,
    };
    let t_start = Instant::now();

    // Image (cached by content), PKI, seeds, boot, first-boot provisioning, the API.
    let up = lab.cmd().arg("up").output().expect("vmlab.sh up");
    assert!(up.status.success(), "vmlab.sh up failed: {}", text(&up));
    let t_up = t_start.elapsed();
    eprintln!("vmlab up: {:.0} s\n{}", t_up.as_secs_f64(), text(&up));
    let env = lab.cmd().arg("env").output().unwrap();
    assert!(env.status.success(), "{}", text(&env));
    lab.env = String::from_utf8_lossy(&env.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect();
    let status = lab.cmd().arg("status").output().unwrap();
    assert!(status.status.success(), "{}", text(&status));

    // The guide, from the host: pods, networks, VMs, router, gateway, floating IP, pings.
    let t0 = Instant::now();
    let guide = Command::new("bash")
        .arg(workspace_root().join("vagrant/play-guide.sh"))
        .envs(lab.env.iter().map(|(k, v)| (k, v)))
        .env("GUIDE_WAIT", "240")
        .output()
        .expect("running play-guide.sh");
    let out = text(&guide);
    assert!(guide.status.success(), "play-guide.sh failed:\n{out}");
    let t_guide = t0.elapsed();
    eprintln!("{out}");
    eprintln!(
        "guide on VMs: {:.0} s; from nothing to the guide's pings: {:.0} s",
        t_guide.as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
    let vm1_ip = get(&out, "VM1_IP=").to_string();
    let vm2_ip = get(&out, "VM2_IP=").to_string();
    let fip = get(&out, "FLOATING_IP=").to_string();
    let vm2 = out
        .lines()
        .find_map(|l| l.strip_prefix("VM=vm2 "))
        .expect("play-guide.sh printed vm2's plug line")
        .to_string();
    let plug: Vec<&str> = vm2.split_whitespace().collect();
    assert_eq!(plug.len(), 5, "node port mac address gateway: {vm2}");
    let replug_vm2 = format!(
        "crosspod-plug-vm vm2 {} {} {} {}",
        plug[1], plug[2], plug[3], plug[4]
    );

    // Real services: Type=notify units with a watchdog, active, READY given.
    for (node, unit) in [
        ("node1", "crosspod-controller"),
        ("node1", "crosspod-agent"),
        ("node2", "crosspod-agent"),
    ] {
        assert_eq!(lab.prop(node, unit, "Type"), "notify", "{node} {unit}");
        assert_eq!(lab.prop(node, unit, "WatchdogUSec"), "30s", "{node} {unit}");
        assert_eq!(
            lab.prop(node, unit, "ActiveState"),
            "active",
            "{node} {unit}"
        );
        assert_eq!(lab.prop(node, unit, "SubState"), "running", "{node} {unit}");
    }
    // The kernel datapath on both nodes: openvswitch.ko loaded, bridges of type system, the
    // uplink in the kernel's datapath.
    for node in ["node1", "node2"] {
        assert!(lab.on(node, "lsmod").contains("openvswitch"), "{node}");
        assert_eq!(
            lab.on(node, "ovs-vsctl get bridge br-vlan datapath_type"),
            "system",
            "{node}"
        );
        let dp = lab.on(node, "ovs-dpctl show");
        assert!(
            dp.contains("system@ovs-system") && dp.contains("eth2"),
            "{node}: {dp}"
        );
    }
    // 802.1Q on the provider NIC: vm1 -> vm2 crosses eth2 tagged with a bridge VLAN
    // (tcpdump on node2 while vm1 pings from node1).
    let dump = std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            lab.try_on(
                "node1",
                &format!("ip netns exec vm1 ping -c 8 -i 0.5 -W 1 {vm2_ip}"),
            )
        });
        let dump = lab.try_on(
            "node2",
            "timeout 60 tcpdump -c 2 -nn -e -i eth2 'vlan and icmp' 2>&1",
        );
        let _ = pinger.join();
        dump
    });
    assert!(
        dump.0 && dump.1.contains("802.1Q") && dump.1.contains("vlan 2"),
        "no 802.1Q-tagged ICMP on node2's eth2: {}",
        dump.1
    );

    // The agent restarted with nothing changed: READY (systemctl returns once the first full
    // reconcile is done), then zero OVSDB and zero kernel changes in its fresh counters.
    let pid_before = lab.prop("node1", "crosspod-agent", "MainPID");
    lab.on("node1", "systemctl restart crosspod-agent");
    assert_ne!(lab.prop("node1", "crosspod-agent", "MainPID"), pid_before);
    assert_eq!(lab.prop("node1", "crosspod-agent", "ActiveState"), "active");
    assert!(lab.agent_metric("node1", "crosspod_agent_desired_revision") > 0.0);
    assert_eq!(
        lab.agent_metric("node1", "crosspod_agent_ovsdb_changes_total"),
        0.0,
        "a restarted agent with nothing changed wrote to OVSDB"
    );
    assert_eq!(
        lab.agent_metric("node1", "crosspod_agent_kernel_changes_total"),
        0.0,
        "a restarted agent with nothing changed touched the kernel"
    );
    lab.ping_from_vm("node1", "vm1", &vm2_ip, 30);

    // node2 rebooted: systemd brings OVS and the agent back by themselves; the VM is re-plugged
    // as Nova would on the host's boot (namespaces do not survive a reboot); pings resume.
    let t0 = Instant::now();
    let rb = lab.cmd().args(["reboot", "node2"]).output().unwrap();
    assert!(rb.status.success(), "reboot node2: {}", text(&rb));
    lab.wait_on(
        "node2",
        "systemctl is-active crosspod-agent openvswitch-switch",
        300,
    );
    assert_eq!(
        lab.prop("node2", "crosspod-agent", "NRestarts"),
        "0",
        "the agent came back at boot, not by restarts"
    );
    lab.on("node2", &replug_vm2);
    let back = lab.ping_from_vm("node1", "vm1", &vm2_ip, 300);
    lab.ping_from_vm("node2", "vm2", &vm1_ip, 120);
    lab.wait_on("ext", &format!("ping -c1 -W1 {fip}"), 300);
    eprintln!(
        "node2 reboot: pings back {:.0} s after the reboot started ({:.0} s after the re-plug)",
        t0.elapsed().as_secs_f64(),
        back.as_secs_f64()
    );

    // Open vSwitch stopped then started under a running agent (the case where the old
    // Requires= left the agent stopped), then restarted: the agent keeps running, the ports
    // come back into the kernel datapath, pings resume.
    let agent_pid = lab.prop("node2", "crosspod-agent", "MainPID");
    lab.on("node2", "systemctl stop openvswitch-switch");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        lab.prop("node2", "crosspod-agent", "ActiveState"),
        "active",
        "stopping OVS stopped the agent"
    );
    lab.on("node2", "systemctl start openvswitch-switch");
    lab.ping_from_vm("node1", "vm1", &vm2_ip, 300);
    lab.on("node2", "systemctl restart openvswitch-switch");
    let t0 = Instant::now();
    lab.ping_from_vm("node1", "vm1", &vm2_ip, 300);
    lab.wait_on("ext", &format!("ping -c1 -W1 {fip}"), 300);
    eprintln!(
        "OVS restart on node2: pings back in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(lab.prop("node2", "crosspod-agent", "ActiveState"), "active");
    assert_eq!(
        lab.prop("node2", "crosspod-agent", "MainPID"),
        agent_pid,
        "the agent rode out the OVS restarts (reconnected) instead of being restarted"
    );
    let tap = format!("tap{}", &plug[1][..11]);
    let dp = lab.on("node2", "ovs-dpctl show");
    assert!(
        dp.contains(&tap) && dp.contains("eth2") && dp.contains("eth3"),
        "ports missing from node2's datapath after the OVS restart: {dp}"
    );

    // The watchdog for real: a frozen agent stops pinging systemd, which kills and restarts it.
    let frozen = lab.prop("node1", "crosspod-agent", "MainPID");
    lab.on("node1", &format!("kill -STOP {frozen}"));
    let t0 = Instant::now();
    lab.wait_on(
        "node1",
        &format!(
            "[ \"$(systemctl show crosspod-agent -p MainPID --value)\" != {frozen} ] && \
             systemctl is-active crosspod-agent"
        ),
        180,
    );
    let journal = lab.on(
        "node1",
        "journalctl -u crosspod-agent --no-pager -n 200 | grep -i watchdog || true",
    );
    assert!(
        journal.contains("Watchdog timeout"),
        "the agent came back but not through its watchdog: {journal}"
    );
    eprintln!(
        "watchdog: frozen agent replaced after {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    lab.ping_from_vm("node1", "vm1", &vm2_ip, 60);
    eprintln!(
        "vm lab test: {:.0} s in all (up {:.0} s, guide {:.0} s)",
        t_start.elapsed().as_secs_f64(),
        t_up.as_secs_f64(),
        t_guide.as_secs_f64()
    );
}
