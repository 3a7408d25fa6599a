//! Issue #20's benchmark, as ignored tests that print tables (`cargo test -p e2e --test
//! failover_bench -- --ignored --nocapture`, as root):
//!
//! - `failover_gap_over_20_node_losses`: in a lab of 2 pods × 2 nodes playing the guide, vm1
//!   (RegionOne) pings the upstream router through RegionTwo's gateway while the RegionTwo
//!   node holding the router's instance (from the placement API) is powered off (`lab node
//!   stop`), 20 times; the failover gap (last reply before, first reply after) as p50 and p95.
//! - `probe_cost_at_10_nodes_per_pod`: BFD packets (UDP 3784, bare or inside VxLAN) a node of
//!   a pod of 10 sends and receives on its underlay cable over 10 s, per second.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::lab::{Lab, Pinger};

/// The `q`-quantile of sorted `v` (nearest rank).
fn quantile(v: &[Duration], q: f64) -> Duration {
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

#[test]
#[ignore = "a benchmark, minutes long"]
fn failover_gap_over_20_node_losses() {
    const LOSSES: usize = 20;
    const WINDOW: Duration = Duration::from_secs(20);
    let lab = Lab::up_with("fob", &["--pods", "2", "--nodes-per-pod", "2"]);
    let played = lab.play_guide("guide");
    let vm1 = lab.ns("vm1");
    let upstream = "163.3.124.1";
    let router = lab
        .os(
            &lab.admin,
            &["router", "show", "router", "-f", "value", "-c", "id"],
        )
        .trim()
        .to_string();
    let mut gaps = Vec::new();
    for i in 0..LOSSES {
        let (victim, _) = lab.placement(&router, "RegionTwo");
        let p = Pinger::start(&vm1, upstream);
        std::thread::sleep(Duration::from_secs(2));
        let t = Instant::now();
        lab.node_stop(&victim);
        std::thread::sleep(WINDOW.saturating_sub(t.elapsed()));
        let r = p.stop();
        assert!(
            r.tail_silence() < Duration::from_secs(1) && r.duplicates == 0,
            "loss {i} of {victim}: traffic from vm1 ({}) to {upstream} did not resume within {WINDOW:?}: {r:?}\n{}",
            played.vm1_ip,
            lab.logs()
        );
        gaps.push(r.gap());
        eprintln!("loss {i:2}: {victim} stopped, gap {:?}", r.gap());
        lab.node_start(&victim);
        std::thread::sleep(Duration::from_secs(5));
    }
    gaps.sort();
    println!("| losses | p50 | p95 | max |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| {LOSSES} | {:.2} s | {:.2} s | {:.2} s |",
        quantile(&gaps, 0.5).as_secs_f64(),
        quantile(&gaps, 0.95).as_secs_f64(),
        gaps.last().unwrap().as_secs_f64()
    );
    assert!(
        quantile(&gaps, 0.5) < Duration::from_secs(3),
        "the goal: p50 under 3 s"
    );
}

/// Counts the packets matching `filter` on `ifname` in `netns` for `secs` seconds (tcpdump).
fn count_packets(netns: &str, ifname: &str, filter: &str, secs: u32) -> usize {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "timeout", &secs.to_string()])
        .args(["tcpdump", "-p", "-n", "-l", "-i", ifname, filter])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .expect("running tcpdump");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
#[ignore = "a benchmark: 10 agents; reads 0 until #20's probes exist"]
fn probe_cost_at_10_nodes_per_pod() {
    const SECS: u32 = 10;
    let lab = Lab::up_with("fop", &["--pods", "1", "--nodes-per-pod", "10"]);
    lab.create_pods();
    // Let the agents register and their probes settle.
    std::thread::sleep(Duration::from_secs(10));
    let node = &lab.nodes()[0];
    let ip = node.tunnel_ip.clone().expect("a tunnel IP");
    // BFD control packets: UDP 3784 bare, or inside VxLAN (outer UDP 4789; the inner IP
    // header at udp[30], its protocol at udp[39], the inner UDP destination port at udp[52]).
    let bfd = "(udp dst port 3784 or (udp dst port 4789 and udp[39] = 17 and udp[52:2] = 3784))";
    let sent = count_packets(
        &node.netns,
        "eth3",
        &format!("src host {ip} and {bfd}"),
        SECS,
    );
    let received = count_packets(
        &node.netns,
        "eth3",
        &format!("dst host {ip} and {bfd}"),
        SECS,
    );
    println!("| nodes in the pod | sent pps | received pps |");
    println!("| --- | --- | --- |");
    println!(
        "| 10 | {:.1} | {:.1} |",
        sent as f64 / SECS as f64,
        received as f64 / SECS as f64
    );
}
