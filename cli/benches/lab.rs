//! How long the lab's commands take on this machine, end to end through the `crosspod`
//! binary (root, real namespaces and OVS): cold `lab up` (network only), the idempotent
//! second `up`, `status`, `down`, and with the controller binary next to `crosspod`, a VM
//! boot/delete cycle. Prints a table; run with `cargo bench -p crosspod-cli`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn crosspod() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crosspod"))
}

fn run(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().expect("crosspod runs");
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

struct Down(PathBuf);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = crosspod()
            .args(["lab", "down", "--dir"])
            .arg(&self.0)
            .output();
    }
}

fn row(name: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        println!(
            "| {name:<34} | {:>4} | {:>9} | {:>9} | {:>9} |",
            0, "-", "-", "-"
        );
        return;
    }
    v.sort();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!(
        "| {name:<34} | {:>4} | {:>9} | {:>9} | {:>9} |",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the lab benchmark needs root (namespaces, OVS); nothing measured");
        std::process::exit(1);
    }
    let prefix = format!("b{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(format!("crosspod-bench-{prefix}"));
    let _down = Down(dir.clone());
    let lab = |args: &[&str]| {
        let mut c = crosspod();
        c.arg("lab").args(args).arg("--dir").arg(&dir);
        c
    };
    let up = || {
        let mut c = lab(&["up", "--no-daemons", "--prefix", &prefix]);
        c.args(["--neutron-port", "1", "--tricircle-port", "2"]);
        c
    };
    let (mut cold, mut warm, mut status, mut down) = (vec![], vec![], vec![], vec![]);
    for _ in 0..RUNS {
        cold.push(run(&mut up()));
        warm.push(run(&mut up()));
        let t = Instant::now();
        let _ = lab(&["status"]).output();
        status.push(t.elapsed());
        down.push(run(&mut lab(&["down"])));
    }

    // VM boot/delete through the real controller, when it is built next to crosspod.
    // Next to crosspod, or in the debug profile's directory (benches build in release).
    let here = Path::new(env!("CARGO_BIN_EXE_crosspod")).parent().unwrap();
    let ctl = [
        here.join("crosspod-controller"),
        here.join("../debug/crosspod-controller"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| here.join("crosspod-controller"));
    let (mut boot, mut delete) = (vec![], vec![]);
    let mut vm_note = "";
    if ctl.exists() {
        let (tp, np) = (free_port(), free_port());
        let mut c = lab(&["up", "--prefix", &prefix, "--agent-bin", "/nonexistent"]);
        c.args([
            "--tricircle-port",
            &tp.to_string(),
            "--neutron-port",
            &np.to_string(),
        ]);
        c.arg("--controller-bin").arg(&ctl);
        run(&mut c);
        let env = String::from_utf8(lab(&["env"]).output().unwrap().stdout).unwrap();
        let token = env
            .lines()
            .find_map(|l| l.strip_prefix("export OS_TOKEN="))
            .unwrap()
            .to_string();
        let endpoint = format!("http://127.0.0.1:{np}");
        let api = |method: &str, path: &str, body: &str| {
            let out = Command::new("curl")
                .args(["-sS", "-f", "-X", method, &format!("{endpoint}{path}")])
                .args(["-H", "Content-Type: application/json"])
                .args(["-H", &format!("X-Auth-Token: {token}"), "-d", body])
                .output()
                .expect("curl runs");
            assert!(out.status.success(), "{method} {path}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let net = api("POST", "/v2.0/networks", r#"{"network": {"name": "bnet"}}"#);
        let net: serde_json::Value = serde_json::from_str(&net).unwrap();
        let net_id = net["network"]["id"].as_str().unwrap().to_string();
        api(
            "POST",
            "/v2.0/subnets",
            &format!(
                r#"{{"subnet": {{"network_id": "{net_id}", "cidr": "10.7.0.0/24", "ip_version": 4}}}}"#
            ),
        );
        let vm = format!("{prefix}vm");
        let vmc = |args: &[&str]| {
            let mut c = crosspod();
            c.arg("vm").args(args).arg("--dir").arg(&dir);
            c.env("OS_TOKEN", &token).env("OS_ENDPOINT", &endpoint);
            c
        };
        for _ in 0..RUNS {
            boot.push(run(&mut vmc(&[
                "boot",
                "--region",
                "RegionOne",
                "--network",
                "bnet",
                &vm,
            ])));
            delete.push(run(&mut vmc(&["delete", &vm])));
        }
        run(&mut lab(&["down"]));
    } else {
        vm_note = " (no controller binary)";
    }

    println!("\ncrosspod lab benchmark ({RUNS} runs each, wall time of the whole command)\n");
    println!(
        "| {:<34} | {:>4} | {:>9} | {:>9} | {:>9} |",
        "operation", "runs", "min ms", "median ms", "max ms"
    );
    println!(
        "|{:-<36}|{:-<6}|{:-<11}|{:-<11}|{:-<11}|",
        "", "", "", "", ""
    );
    row("lab up (network, cold)", cold);
    row("lab up (second run, no change)", warm);
    row("lab status", status);
    row("lab down", down);
    row(&format!("vm boot{vm_note}"), boot);
    row(&format!("vm delete{vm_note}"), delete);
}
