//! The agent and a controller that goes away: on the lab, with VMs tagged and routers in
//! place, the controller is killed; the data plane stays as it is (pings keep crossing), and
//! when the controller comes back (`crosspod lab up` restarts it on the same database) the
//! agents resume: a change made then reaches the nodes. Needs root.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{free_port_pair, workspace_binary, workspace_root};

fn ping(ns: &str, ip: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W1", ip])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

struct Down<'a>(&'a Path, &'a Path);
impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = Command::new(self.0)
            .args(["lab", "down", "--dir"])
            .arg(self.1)
            .output();
    }
}

#[test]
fn the_data_plane_survives_a_dead_controller_and_the_agents_resume() {
    let crosspod = workspace_binary("crosspod");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let prefix = format!("k{}-", std::process::id() % 10_000);
    let (t, n) = free_port_pair();
    let up = |what: &str| {
        let o = Command::new(&crosspod)
            .args(["lab", "up", "--dir"])
            .arg(&dir)
            .args(["--prefix", &prefix, "--tricircle-port", &t.to_string()])
            .args(["--neutron-port", &n.to_string()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "lab up ({what}): {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    up("first");
    let _down = Down(&crosspod, &dir);
    let guide = Command::new("bash")
        .arg(workspace_root().join("scripts/guide.sh"))
        .env("CROSSPOD", &crosspod)
        .env("CROSSPOD_LAB_DIR", &dir)
        .env("CROSSPOD_TRICIRCLE_URL", format!("http://127.0.0.1:{t}"))
        .env("VM1", format!("{prefix}vm1"))
        .env("VM2", format!("{prefix}vm2"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&guide.stdout).to_string();
    assert!(
        guide.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&guide.stderr)
    );
    let vm2 = out
        .lines()
        .find_map(|l| l.strip_prefix("VM2_IP="))
        .unwrap()
        .trim()
        .to_string();
    let vm1 = format!("{prefix}vm1");

    // Kill the controller hard.
    let pidfile = dir.join("controller").join("controller.pid");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        ping(&vm1, &vm2),
        "the data plane is left as it is while the controller is down"
    );
    let log = std::fs::read_to_string(dir.join("agents").join("node1.log")).unwrap_or_default();
    assert!(
        !log.contains("removed router instance"),
        "nothing torn down: {log}"
    );

    // Back: a VM booted now is tagged by its node's agent (the watch resumed).
    up("controller back");
    let env = Command::new(&crosspod)
        .args(["lab", "env", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let env = String::from_utf8_lossy(&env.stdout).to_string();
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("export OS_TOKEN="))
        .unwrap()
        .trim_matches('\'')
        .to_string();
    let vm3 = format!("{prefix}vm3");
    let o = Command::new(&crosspod)
        .args([
            "vm",
            "boot",
            "--region",
            "RegionTwo",
            "--network",
            "net2",
            &vm3,
            "--dir",
        ])
        .arg(&dir)
        .env("OS_ENDPOINT", format!("http://127.0.0.1:{n}"))
        .env("OS_TOKEN", &token)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = Command::new(&crosspod)
        .args(["--json", "vm", "list", "--dir"])
        .arg(&dir)
        .env("OS_ENDPOINT", format!("http://127.0.0.1:{n}"))
        .env("OS_TOKEN", &token)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let ip3 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == vm3.as_str())
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ping(&vm1, &ip3) {
        assert!(
            Instant::now() < deadline,
            "the agents did not resume after the controller came back"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
