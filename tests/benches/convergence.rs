//! Convergence benchmark (not a timed test): `cargo bench -p e2e`. On a real lab (two pods,
//! controller, agents, OVS), the time from the `router add subnet` API call (the openstack
//! CLI's PUT add_router_interface) to the first successful cross-pod ping, over 20 runs; also
//! the removal's time to the first failed ping (pings wait 0.2 s for an answer, so that is the
//! resolution). Prints a table with p50/p95. Needs root and a
//! built workspace (`cargo build --workspace --bins`).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    // Benches run from target/release/deps; the lab binaries may only be built in debug.
    for p in [
        dir.join(name),
        dir.parent().unwrap().join("debug").join(name),
    ] {
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} is not built: run `cargo build --workspace --bins`");
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn ping(ns: &str, ip: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W0.2", ip])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn until(ns: &str, ip: &str, want: bool) -> Duration {
    let t0 = Instant::now();
    while ping(ns, ip) != want {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no convergence in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn main() {
    let crosspod = bin("crosspod");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let prefix = format!("cb{}-", std::process::id() % 10_000);
    let (t, n) = e2e::free_port_pair();
    run(Command::new(&crosspod)
        .args(["lab", "up", "--dir"])
        .arg(&dir)
        .args([
            "--prefix",
            &prefix,
            "--tricircle-port",
            &t.to_string(),
            "--neutron-port",
            &n.to_string(),
        ]));
    let down = || {
        let _ = Command::new(&crosspod)
            .args(["lab", "down", "--dir"])
            .arg(&dir)
            .output();
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let guide = Command::new("bash")
            .arg(e2e::workspace_root().join("scripts/guide.sh"))
            .env("CROSSPOD", &crosspod)
            .env("CROSSPOD_LAB_DIR", &dir)
            .env("CROSSPOD_TRICIRCLE_URL", format!("http://127.0.0.1:{t}"))
            .env("VM1", format!("{prefix}vm1"))
            .env("VM2", format!("{prefix}vm2"))
            .output()
            .unwrap();
        assert!(
            guide.status.success(),
            "{}",
            String::from_utf8_lossy(&guide.stdout)
        );
        let out = String::from_utf8_lossy(&guide.stdout).to_string();
        let vm2 = out
            .lines()
            .find_map(|l| l.strip_prefix("VM2_IP="))
            .unwrap()
            .to_string();
        let env = run(Command::new(&crosspod)
            .args(["lab", "env", "--dir"])
            .arg(&dir));
        let token = env
            .lines()
            .find_map(|l| l.strip_prefix("export OS_TOKEN="))
            .unwrap()
            .trim_matches('\'')
            .to_string();
        let os = |args: &[&str]| {
            run(Command::new("/var/lib/crosspod/venv/bin/openstack")
                .args([
                    "--os-auth-type",
                    "admin_token",
                    "--os-endpoint",
                    &format!("http://127.0.0.1:{n}"),
                    "--os-token",
                    &token,
                ])
                .args(args))
        };
        let vm1 = format!("{prefix}vm1");
        let router = os(&["router", "show", "router", "-f", "value", "-c", "id"]);
        let subnet2 = os(&["subnet", "show", "subnet2", "-f", "value", "-c", "id"]);
        let put = |action: &str| {
            run(Command::new("curl")
                .args([
                    "-sS",
                    "--fail-with-body",
                    "-X",
                    "PUT",
                    "-H",
                    "Content-Type: application/json",
                    "-H",
                ])
                .arg(format!("X-Auth-Token: {token}"))
                .arg(format!(
                    "http://127.0.0.1:{n}/v2.0/routers/{router}/{action}"
                ))
                .args(["-d", &format!("{{\"subnet_id\": \"{subnet2}\"}}")]));
        };
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            let t0 = Instant::now();
            put("remove_router_interface");
            let api = t0.elapsed();
            remove.push(api + until(&vm1, &vm2, false));
            // From the API call (as the CLI's PUT add_router_interface) to the first ping.
            let t0 = Instant::now();
            put("add_router_interface");
            let api = t0.elapsed();
            add.push(api + until(&vm1, &vm2, true));
        }
        println!(
            "| {:<52} | {:>4} | {:>8} | {:>8} |",
            "lab convergence (real controller, agents, OVS)", "runs", "p50 ms", "p95 ms"
        );
        println!(
            "|{}|{}|{}|{}|",
            "-".repeat(54),
            "-".repeat(6),
            "-".repeat(10),
            "-".repeat(10)
        );
        println!(
            "| {:<52} | {:>4} | {:>8.0} | {:>8.0} |",
            "PUT add_router_interface -> first cross-pod ping",
            20,
            pct(&mut add, 0.5),
            pct(&mut add, 0.95)
        );
        println!(
            "| {:<52} | {:>4} | {:>8.0} | {:>8.0} |",
            "PUT remove_router_interface -> first failed ping",
            20,
            pct(&mut remove, 0.5),
            pct(&mut remove, 0.95)
        );
    }));
    down();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
