//! The guide's "How to play" (steps 5 to 15) end to end, as the README's main command plays it:
//! `crosspod lab up` (two pods as namespaces, each node with its own OVS, the real controller
//! and agents), then scripts/guide.sh (the guide's curl commands, the real openstack CLI,
//! `crosspod vm`), with real pings across the pods, to the upstream router and from the
//! external network to the floating IP; in the guide's order and in two others. Then the probe
//! matrix, and an interface removal that withdraws the route.
//! Needs root, Open vSwitch, curl, jq and the openstack venv (scripts/install-deps.sh).

use std::process::Command;
use std::time::Duration;

use e2e::lab::{ping, wait_ping, Lab};

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
    let lab = Lab::up(tag);
    let played = lab.play_guide(order);
    let (vm1, vm2) = (lab.ns("vm1"), lab.ns("vm2"));

    // What guide.sh waited for, checked again from here.
    assert!(
        ping(&lab.ns("ext"), &played.floating_ip, "1"),
        "ext -> floating IP"
    );
    assert!(ping(&vm1, "163.3.124.1", "1"), "vm1 -> upstream router");
    assert!(ping(&vm2, "163.3.124.1", "1"), "vm2 -> upstream router");
    assert!(ping(&vm2, &played.vm1_ip, "1"), "vm2 -> vm1");

    // The probe matrix from real packets: every pair answers, the external network reaches
    // the floating IP.
    let probe = Command::new(&lab.crosspod)
        .args(["probe", "--json", "--dir"])
        .arg(&lab.dir)
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
    assert!(
        ping(&vm1, &played.vm2_ip, "1"),
        "vm1 -> vm2 before the removal"
    );
    lab.os(
        &lab.admin,
        &["router", "remove", "subnet", "router", "subnet2"],
    );
    assert!(
        wait_ping(&vm1, &played.vm2_ip, false, Duration::from_secs(30)),
        "vm1 still reaches vm2 after subnet2 left the router\n{}",
        lab.logs()
    );
}
