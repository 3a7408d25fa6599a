//! Convergence benchmark (not a timed test): `cargo bench -p e2e`. On a real lab (two pods,
//! controller, agents, OVS), the time from the `router add subnet` API call (the openstack
//! CLI's PUT add_router_interface) to the first successful cross-pod ping, over 20 runs; also
//! the removal's time to the first failed ping (pings wait 0.2 s for an answer, so that is the
//! resolution). Prints a table with p50/p95. Needs root and a
//! built workspace (`cargo build --workspace --bins`).

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::lab::{ping, Lab};

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

fn until(ns: &str, ip: &str, want: bool) -> Duration {
    let t0 = Instant::now();
    while ping(ns, ip, "0.2") != want {
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
    let lab = Lab::up("cb");
    let played = lab.play_guide("guide");
    let vm1 = lab.ns("vm1");
    let vm2 = played.vm2_ip.clone();
    let router = lab.os(
        &lab.admin,
        &["router", "show", "router", "-f", "value", "-c", "id"],
    );
    let subnet2 = lab.os(
        &lab.admin,
        &["subnet", "show", "subnet2", "-f", "value", "-c", "id"],
    );
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
            .arg(format!("X-Auth-Token: {}", lab.admin))
            .arg(format!(
                "http://127.0.0.1:{}/v2.0/routers/{router}/{action}",
                lab.neutron
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
}
