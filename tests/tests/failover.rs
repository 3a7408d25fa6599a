//! Router failover in a pod of two nodes, end to end (issue #20's failure model): in a lab of
//! 2 pods × 2 nodes playing the guide, vm1 in RegionOne pings the upstream router through the
//! router's gateway instance in RegionTwo (across the bridge network, then out), while the
//! RegionTwo node holding that instance:
//! - loses its agent (killed): nothing moves and no reply is lost;
//! - loses the controller (killed): nothing moves and no reply is lost;
//! - is cut off in the data plane (its cables down, its agent still running): the standby takes
//!   over, the cut node withdraws, and ARP from the upstream side never gets two answers for
//!   the gateway address (nor ping a `DUP!`); mended, it stays standby (no flap back);
//! - is powered off (daemons killed, namespaces gone): the instance moves back to the other
//!   node and traffic resumes; started again, nothing flaps.
//!
//! Real controller, agents, OVS (BFD in ovs-vswitchd), namespaces, the openstack CLI. Root.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::lab::{Lab, Pinger};

/// Waits until the instance of `router` in `pod` runs on `want`.
fn wait_active(lab: &Lab, router: &str, pod: &str, want: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (node, _) = lab.placement(router, pod);
        if node == want || Instant::now() > deadline {
            return node;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// ARP requests for `addr` from the upstream's leg for `secs` seconds: (probes sent, replies
/// received). More replies than probes means two nodes answer for the address.
fn arp_probe(lab: &Lab, addr: &str, secs: u32) -> (usize, usize) {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("ext"),
            "arping",
            "-b",
            "-s",
            "0.0.0.0",
        ])
        .args(["-I", "gw0", "-w", &secs.to_string(), addr])
        .output()
        .expect("arping (iputils-arping, scripts/install-deps.sh)");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let num = |key: &str| {
        out.lines()
            .find_map(|l| {
                let l = l.trim();
                l.strip_prefix(key)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .unwrap_or(0)
    };
    (num("Sent"), num("Received"))
}

fn assert_single_answer(lab: &Lab, addr: &str, when: &str) {
    let (sent, received) = arp_probe(lab, addr, 3);
    assert!(
        received <= sent,
        "{when}: {received} ARP answers to {sent} probes for {addr}: two nodes answer for it\n{}",
        lab.logs()
    );
}

/// The path watched: `vm` pinging `target` through `router`'s gateway instance.
struct Path<'a> {
    lab: &'a Lab,
    vm: String,
    target: &'a str,
    router: String,
    gateway_ip: String,
}

impl Path<'_> {
    /// Pings through `fault` (and `lab up` after it): no reply lost, the instance stays on
    /// `active`.
    fn nothing_moves(&self, active: &str, what: &str, fault: impl FnOnce()) {
        let p = Pinger::start(&self.vm, self.target);
        std::thread::sleep(Duration::from_secs(1));
        fault();
        std::thread::sleep(Duration::from_secs(4));
        self.lab.bring_up();
        std::thread::sleep(Duration::from_secs(2));
        let r = p.stop();
        assert!(
            r.gap() < Duration::from_millis(800) && r.tail_silence() < Duration::from_secs(1),
            "{what}: no reply may be lost: {r:?}\n{}",
            self.lab.logs()
        );
        assert_eq!(
            self.lab.placement(&self.router, "RegionTwo").0,
            active,
            "{what}: nothing moves"
        );
    }

    /// Pings through `fault`: the instance moves to `to`, one node answers ARP for the gateway
    /// address right after, and traffic resumes with no `DUP!`.
    fn fails_over(&self, to: &str, what: &str, fault: impl FnOnce()) {
        let p = Pinger::start(&self.vm, self.target);
        std::thread::sleep(Duration::from_secs(1));
        fault();
        let now = wait_active(
            self.lab,
            &self.router,
            "RegionTwo",
            to,
            Duration::from_secs(20),
        );
        assert_eq!(
            now,
            to,
            "{what}: the standby takes over\n{}",
            self.lab.logs()
        );
        assert_single_answer(self.lab, &self.gateway_ip, &format!("{what}: right after"));
        std::thread::sleep(Duration::from_secs(2));
        let r = p.stop();
        assert!(
            r.tail_silence() < Duration::from_secs(1) && r.duplicates == 0,
            "{what}: traffic resumes through the standby, never answered twice: {r:?}\n{}",
            self.lab.logs()
        );
        eprintln!("{what}: failover gap {:?}", r.gap());
    }
}

#[test]
fn router_failover_in_the_gateway_pod() {
    let lab = Lab::up_with("fo", &["--pods", "2", "--nodes-per-pod", "2"]);
    let played = lab.play_guide("guide");
    let admin = lab.admin.clone();
    let router = lab
        .os(
            &admin,
            &["router", "show", "router", "-f", "value", "-c", "id"],
        )
        .trim()
        .to_string();
    let info = lab.os(
        &admin,
        &[
            "router",
            "show",
            "router",
            "-f",
            "json",
            "-c",
            "external_gateway_info",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    let gateway_ip = v["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap_or_else(|| panic!("the router has a gateway address: {info}"))
        .to_string();
    let (first, standbys) = lab.placement(&router, "RegionTwo");
    assert_eq!(
        standbys.len(),
        1,
        "one standby in a pod of two: {standbys:?}"
    );
    let second = standbys[0].clone();
    let path = Path {
        lab: &lab,
        vm: lab.ns("vm1"),
        target: "163.3.124.1",
        router: router.clone(),
        gateway_ip: gateway_ip.clone(),
    };

    // The agent of the active node is killed: BFD is ovs-vswitchd's, nothing moves, nothing
    // is lost; `lab up` restarts the agent, which re-adopts what it owns.
    path.nothing_moves(&first, "agent killed", || {
        lab.kill_agent(&first);
    });
    // The controller is killed: nothing moves, nothing is lost; `lab up` brings it back.
    path.nothing_moves(&first, "controller killed", || {
        let pidfile = lab.dir.join("controller").join("controller.pid");
        let pid = std::fs::read_to_string(pidfile).unwrap();
        assert!(Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap()
            .success());
    });

    // The active node is cut off in the data plane: the standby takes over, the cut node
    // withdraws, and nobody sees two answers for the gateway address, during or after.
    path.fails_over(&second, "cut", || {
        lab.node_cut(&first);
    });
    lab.node_mend(&first);
    std::thread::sleep(Duration::from_secs(4));
    assert_single_answer(&lab, &gateway_ip, "after the cut node is mended");
    assert_single_answer(&lab, &played.floating_ip, "the floating IP after the mend");
    assert_eq!(
        lab.placement(&router, "RegionTwo").0,
        second,
        "mended: no flap back\n{}\n{}",
        lab.placement_json(&router),
        lab.logs()
    );

    // The node now active is powered off: the instance moves back to the first node; started
    // again, nothing flaps.
    path.fails_over(&first, "node lost", || {
        lab.node_stop(&second);
    });
    lab.node_start(&second);
    std::thread::sleep(Duration::from_secs(5));
    assert_single_answer(&lab, &gateway_ip, "after the lost node came back");
    assert_eq!(
        lab.placement(&router, "RegionTwo").0,
        first,
        "the lost node came back: no flap back"
    );
}
