//! Failure injection in a lab of one pod of two nodes with the real controller and agents
//! (issue #20's failure model), measured the way the failover tests will measure it: a
//! [`Pinger`] across the underlay sees a gap as long as the cut, an ARP probe sees exactly one
//! answer for a node's address and none while that node is powered off. Needs root.

use std::time::Duration;

use e2e::lab::{arp_answerers, wait_ping, Lab, Pinger};

#[test]
fn a_cut_shows_as_a_ping_gap_as_long_as_the_cut_and_a_stopped_node_answers_no_arp() {
    let lab = Lab::up_with("flt", &["--pods", "1", "--nodes-per-pod", "2"]);
    lab.create_pods();
    let n1 = lab.ns("node1-1");
    let n2 = lab.ns("node1-2");
    assert!(
        wait_ping(&n1, "192.168.50.2", true, Duration::from_secs(10)),
        "node1-1 reaches node1-2 on the underlay\n{}",
        lab.logs()
    );

    // The gap a client sees: at least the cut, and not much more (ping every 100 ms).
    let cut = Duration::from_secs(2);
    let p = Pinger::start(&n1, "192.168.50.2");
    std::thread::sleep(Duration::from_secs(1));
    lab.node_cut("node1-1");
    std::thread::sleep(cut);
    lab.node_mend("node1-1");
    std::thread::sleep(Duration::from_millis(1500));
    let r = p.stop();
    let gap = r.gap();
    assert!(
        gap >= cut,
        "gap {gap:?} shorter than the cut {cut:?}: {r:?}"
    );
    assert!(
        gap < cut + Duration::from_secs(1),
        "gap {gap:?} for a {cut:?} cut: {r:?}"
    );
    assert!(
        r.tail_silence() < Duration::from_millis(500),
        "no replies after mend: {r:?}"
    );
    assert!(r.replies.len() > 15, "{r:?}");
    assert_eq!(r.duplicates, 0);
    eprintln!(
        "cut {cut:?}: longest gap {gap:?} over {} replies",
        r.replies.len()
    );

    // One MAC answers for node1-1's tunnel IP; none while it is powered off; one again after.
    let one = arp_answerers(&n2, "br-phy", "192.168.50.1", 2);
    assert_eq!(one.len(), 1, "{one:?}");
    lab.node_stop("node1-1");
    let none = arp_answerers(&n2, "br-phy", "192.168.50.1", 2);
    assert!(none.is_empty(), "a powered-off node answers ARP: {none:?}");
    lab.node_start("node1-1");
    assert!(wait_ping(
        &n2,
        "192.168.50.1",
        true,
        Duration::from_secs(10)
    ));
    let back = arp_answerers(&n2, "br-phy", "192.168.50.1", 2);
    assert_eq!(back, one, "another MAC after start");

    // kill-agent and `lab up`: the agent is back, the data plane never went.
    let p = Pinger::start(&n1, "192.168.50.2");
    lab.kill_agent("node1-1");
    lab.bring_up();
    std::thread::sleep(Duration::from_secs(1));
    let r = p.stop();
    assert!(
        r.gap() < Duration::from_millis(500),
        "an agent restart cost {:?}",
        r.gap()
    );
}
