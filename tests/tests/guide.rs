//! The guide's "How to play" (steps 5 to 15) end to end, as the README's main command plays it:
//! `crosspod lab up` (two pods as namespaces, each node with its own OVS, the real controller
//! and agents), then scripts/guide.sh (the guide's curl commands, the real openstack CLI,
//! `crosspod vm`), with real pings across the pods, to the upstream router and from the
//! external network to the floating IP. Then an interface removal withdraws the route.
//! Needs root, Open vSwitch, curl, jq and the openstack venv (scripts/install-deps.sh).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{free_port_pair, require_tool, workspace_binary, workspace_root};

struct Lab<'a> {
    crosspod: &'a Path,
    dir: &'a Path,
}

impl Drop for Lab<'_> {
    fn drop(&mut self) {
        let out = Command::new(self.crosspod)
            .args(["lab", "down", "--dir"])
            .arg(self.dir)
            .output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("lab down: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

fn ping(netns: &str, target: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", netns, "ping", "-c1", "-W1", target])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn wait_ping(netns: &str, target: &str, want: bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ping(netns, target) == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_guide_plays_end_to_end_with_real_packets() {
    play_guide("guide", "g");
}

#[test]
fn gateway_first_order_plays_the_same() {
    play_guide("gateway-first", "h");
}

#[test]
fn external_network_after_the_interfaces_plays_the_same() {
    play_guide("ext-last", "x");
}

fn play_guide(order: &str, tag: &str) {
    require_tool("curl", "apt-get install curl (scripts/install-deps.sh)");
    require_tool("jq", "apt-get install jq (scripts/install-deps.sh)");
    let openstack = Path::new("/var/lib/crosspod/venv/bin/openstack");
    assert!(
        openstack.is_file(),
        "the openstack CLI venv is missing: run scripts/install-deps.sh"
    );
    let crosspod = workspace_binary("crosspod");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let prefix = format!("{tag}{}-", std::process::id() % 100_000);
    let (tport, nport) = free_port_pair();
    let _lab = Lab {
        crosspod: &crosspod,
        dir: &dir,
    };
    let up = Command::new(&crosspod)
        .args(["lab", "up", "--dir"])
        .arg(&dir)
        .args(["--prefix", &prefix])
        .args(["--tricircle-port", &tport.to_string()])
        .args(["--neutron-port", &nport.to_string()])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "lab up failed:\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );

    let vm1 = format!("{prefix}vm1");
    let vm2 = format!("{prefix}vm2");
    let guide = Command::new("bash")
        .arg(workspace_root().join("scripts/guide.sh"))
        .env("CROSSPOD", &crosspod)
        .env("CROSSPOD_LAB_DIR", &dir)
        .env(
            "CROSSPOD_TRICIRCLE_URL",
            format!("http://127.0.0.1:{tport}"),
        )
        .env("OPENSTACK", openstack)
        .env("VM1", &vm1)
        .env("VM2", &vm2)
        .env("GUIDE_WAIT", "90")
        .env("GUIDE_ORDER", order)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&guide.stdout).to_string();
    let err = String::from_utf8_lossy(&guide.stderr).to_string();
    let logs = || {
        let mut s = String::new();
        for f in ["controller.log", "agent-node1.log", "agent-node2.log"] {
            for p in [dir.join(f), dir.join("logs").join(f)] {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    let tail: Vec<&str> = t.lines().rev().take(40).collect();
                    s.push_str(&format!("--- {}\n", p.display()));
                    for l in tail.into_iter().rev() {
                        s.push_str(l);
                        s.push('\n');
                    }
                }
            }
        }
        s
    };
    assert!(
        guide.status.success(),
        "guide.sh failed:\n{out}\n{err}\n{}",
        logs()
    );
    let fip = out
        .lines()
        .find_map(|l| l.strip_prefix("FLOATING_IP="))
        .expect("guide.sh prints the floating IP")
        .trim()
        .to_string();

    // What guide.sh waited for, checked again from here.
    let ext = format!("{prefix}ext");
    assert!(ping(&ext, &fip), "ext -> floating IP {fip}");
    assert!(ping(&vm1, "163.3.124.1"), "vm1 -> upstream router");
    assert!(ping(&vm2, "163.3.124.1"), "vm2 -> upstream router");

    // The probe matrix from real packets: every pair answers, the external network reaches
    // the floating IP, and the agents' router-instance probes reached their peers.
    let probe = Command::new(&crosspod)
        .args(["probe", "--json", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap_or_else(|e| {
        panic!(
            "probe printed no JSON ({e}): {}",
            String::from_utf8_lossy(&probe.stderr)
        )
    });
    assert!(probe.status.success(), "a pair did not answer: {m}");
    let cells = m["cells"].as_array().unwrap();
    assert!(
        cells
            .iter()
            .any(|c| c["from"] == "ext" && c["reachable"] == true),
        "{m}"
    );
    assert!(cells.len() >= 5, "{m}");

    // Removing subnet2 from the router withdraws the cross-pod route: vm1 no longer reaches vm2.
    let vm2_ip = out
        .lines()
        .find_map(|l| l.strip_prefix("VM2_IP="))
        .expect("guide.sh prints vm2's address")
        .trim()
        .to_string();
    assert!(ping(&vm1, &vm2_ip), "vm1 -> vm2 before the removal");
    let rm = Command::new(openstack)
        .args(["router", "remove", "subnet", "router", "subnet2"])
        .env("OS_AUTH_TYPE", "admin_token")
        .env("OS_ENDPOINT", format!("http://127.0.0.1:{nport}"))
        .env("OS_TOKEN", admin_token(&crosspod, &dir))
        .output()
        .unwrap();
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    assert!(
        wait_ping(&vm1, &vm2_ip, false, Duration::from_secs(30)),
        "vm1 still reaches vm2 after subnet2 left the router\n{}",
        logs()
    );
}

fn admin_token(crosspod: &Path, dir: &Path) -> String {
    let env = Command::new(crosspod)
        .args(["lab", "env", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&env.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("export OS_TOKEN="))
        .expect("lab env exports OS_TOKEN")
        .trim_matches('\'')
        .to_string()
}
