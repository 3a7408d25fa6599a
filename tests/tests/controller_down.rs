//! The agent and a controller that goes away: on the lab, with VMs tagged and routers in
//! place, the controller is killed; the data plane stays as it is (pings keep crossing), and
//! when the controller comes back (`crosspod lab up` restarts it on the same database) the
//! agents resume: a change made then reaches the nodes. Needs root.

use std::process::Command;
use std::time::Duration;

use e2e::lab::{ping, wait_ping, Lab};

#[test]
fn the_data_plane_survives_a_dead_controller_and_the_agents_resume() {
    let lab = Lab::up("k");
    let played = lab.play_guide("guide");
    let vm1 = lab.ns("vm1");

    // Kill the controller hard.
    let pidfile = lab.dir.join("controller").join("controller.pid");
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
        ping(&vm1, &played.vm2_ip, "1"),
        "the data plane is left as it is while the controller is down"
    );
    let log = std::fs::read_to_string(lab.dir.join("agents").join("node1.log")).unwrap_or_default();
    assert!(
        !log.contains("removed router instance"),
        "nothing torn down: {log}"
    );

    // Back: a VM booted now is reached (its node's agent tagged it: the watch resumed).
    lab.bring_up();
    let vm3 = lab.ns("vm3");
    lab.crosspod(
        &[
            "vm",
            "boot",
            "--region",
            "RegionTwo",
            "--network",
            "net2",
            &vm3,
        ],
        None,
    );
    let list: serde_json::Value =
        serde_json::from_str(&lab.crosspod(&["--json", "vm", "list"], None)).unwrap();
    let ip3 = list
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
    assert!(
        wait_ping(&vm1, &ip3, true, Duration::from_secs(60)),
        "the agents did not resume after the controller came back\n{}",
        lab.logs()
    );
}
