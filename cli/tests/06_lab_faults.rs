//! Failure injection in a lab of one pod of two nodes (router failover's failure model, issue
//! #20), on real namespaces and OVS: `lab node stop` kills a node's daemons and deletes its
//! agent's namespaces and VMs, `start` brings it back; `cut` takes its cables' carrier away
//! (traffic across the pod switch stops) while its daemons run, `mend` gives it back;
//! `kill-agent` kills only the agent and `lab up` restarts it; `lab status` shows each, and
//! `lab down` leaves nothing.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const NO_BIN: &str = "/nonexistent/crosspod-test-binary";
const ONE_POD_TWO_NODES: [&str; 4] = ["--pods", "1", "--nodes-per-pod", "2"];

fn pings(ns: &str, target: &str) -> bool {
    output(&mut in_ns(ns, &["ping", "-c", "2", "-W", "1", target]))
        .status
        .success()
}

/// Pings until it succeeds (OVS takes a moment to open re-made ports), up to 10 s.
fn pings_soon(ns: &str, target: &str) -> bool {
    (0..10).any(|_| pings(ns, target))
}

/// `ip -br link` of a namespace: `name state <flags>` per link.
fn links(ns: &str) -> String {
    ok(Command::new("ip").args(["-n", ns, "-br", "link"]))
}

/// Whether `ifname` in `ns` has no carrier (its peer down).
fn no_carrier(ns: &str, ifname: &str) -> bool {
    links(ns)
        .lines()
        .find(|l| {
            l.split_whitespace()
                .next()
                .and_then(|n| n.split('@').next())
                == Some(ifname)
        })
        .unwrap_or_else(|| panic!("no {ifname} in {ns}:\n{}", links(ns)))
        .contains("NO-CARRIER")
}

/// The `lab status --json` item named `name`: (ok, detail).
fn status_item(lab: &Lab, name: &str) -> (bool, String) {
    let out = output(&mut lab.cmd(&["status", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no status item {name}: {v}"))
        .clone();
    (
        item["ok"].as_bool().unwrap(),
        item["detail"].as_str().unwrap_or("").to_string(),
    )
}

/// Pids of the OVS daemons of one lab instance.
fn ovs_pids(lab: &Lab, inst: &str) -> Vec<i32> {
    processes_mentioning(&format!("{}/{inst}/", lab.dir.display()))
        .into_iter()
        .filter(|p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            comm.starts_with("ovsdb-server") || comm.starts_with("ovs-vswitchd")
        })
        .collect()
}

#[test]
fn cut_takes_the_carrier_and_traffic_away_and_stop_kills_the_node_until_start() {
    require_root_and_tools();
    let lab = Lab::new();
    let mut up = lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN));
    up.args(ONE_POD_TWO_NODES).arg("--no-daemons");
    ok(&mut up);
    let h1 = host(&lab, "node1-1", 1, 100);
    let h2 = host(&lab, "node1-2", 2, 100);
    assert!(
        pings_soon(&h1.0, "10.99.0.2"),
        "hosts on two nodes of the pod ping"
    );
    let ovs1 = ovs_pids(&lab, "node1-1");
    assert_eq!(ovs1.len(), 2, "ovsdb-server and ovs-vswitchd of node1-1");

    // An unknown node: a clear error naming the lab's nodes, nothing changed.
    let out = output(&mut lab.cmd(&["node", "cut", "node9-9"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node9-9") && err.contains("node1-1, node1-2"),
        "{err}"
    );

    // Cut: the node sees no carrier on eth1 and eth3, the hosts no longer reach each other
    // across the pod switch, the node's daemons keep running; status says so; twice is once.
    let n1 = lab.ns("node1-1");
    assert!(!no_carrier(&n1, "eth1") && !no_carrier(&n1, "eth3"));
    ok(&mut lab.cmd(&["node", "cut", "node1-1"]));
    assert!(no_carrier(&n1, "eth1"), "{}", links(&n1));
    assert!(no_carrier(&n1, "eth3"), "{}", links(&n1));
    assert!(
        !pings(&h1.0, "10.99.0.2"),
        "a cut node's traffic crosses the pod switch"
    );
    assert_eq!(
        ovs_pids(&lab, "node1-1"),
        ovs1,
        "cut keeps the node's daemons"
    );
    let (good, detail) = status_item(&lab, "node1-1");
    assert!(!good && detail.contains("cables cut"), "{detail}");
    assert_eq!(output(&mut lab.cmd(&["status"])).status.code(), Some(3));
    let again = ok(&mut lab.cmd(&["node", "cut", "node1-1"]));
    assert!(again.contains("nothing changed"), "{again}");
    // `lab up` leaves a cut node cut.
    let mut up = lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN));
    up.args(ONE_POD_TWO_NODES).arg("--no-daemons");
    ok(&mut up);
    assert!(no_carrier(&n1, "eth1"), "lab up mended a cut node");

    // Mend: carrier and traffic back.
    ok(&mut lab.cmd(&["node", "mend", "node1-1"]));
    assert!(
        !no_carrier(&n1, "eth1") && !no_carrier(&n1, "eth3"),
        "{}",
        links(&n1)
    );
    assert!(pings_soon(&h1.0, "10.99.0.2"), "traffic is back after mend");
    assert!(status_item(&lab, "node1-1").0);

    // Stop: the node's daemons are gone, and the namespaces its agent made (here a stand-in
    // router namespace with its prefix); its own namespace stays, its cables carry nothing.
    let router_ns = TestNs::create(&format!("{n1}-qrouter-x"));
    let other_ns = lab.ns("node1-2-qrouter-y");
    let _other = TestNs::create(&other_ns);
    ok(&mut lab.cmd(&["node", "stop", "node1-1"]));
    assert!(
        ovs_pids(&lab, "node1-1").is_empty(),
        "node1-1's OVS survived stop"
    );
    assert_eq!(
        ovs_pids(&lab, "node1-2").len(),
        2,
        "the other node is untouched"
    );
    let names = namespaces();
    assert!(
        !names.contains(&router_ns.0),
        "the agent's namespace survived"
    );
    assert!(
        names.contains(&other_ns),
        "another node's namespace was deleted"
    );
    assert!(names.contains(&n1), "the node's own namespace stays");
    assert!(!pings(&h2.0, "10.99.0.1"), "a powered-off node forwards");
    assert!(
        no_carrier(&lab.ns("pod1"), "node1-1"),
        "the pod switch sees link from a powered-off node:\n{}",
        links(&lab.ns("pod1"))
    );
    let (good, detail) = status_item(&lab, "node1-1");
    assert!(!good && detail.contains("powered off"), "{detail}");
    assert!(!status_item(&lab, "ovs-vswitchd@node1-1").0);
    assert!(ok(&mut lab.cmd(&["node", "stop", "node1-1"])).contains("nothing changed"));
    // `lab up` leaves a powered-off node off.
    let mut up = lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN));
    up.args(ONE_POD_TWO_NODES).arg("--no-daemons");
    ok(&mut up);
    assert!(
        ovs_pids(&lab, "node1-1").is_empty(),
        "lab up powered a stopped node on"
    );

    // Start: OVS back (with its ports, so the host on it), tunnel IP back, status clean.
    ok(&mut lab.cmd(&["node", "start", "node1-1"]));
    assert_eq!(ovs_pids(&lab, "node1-1").len(), 2);
    assert!(
        pings_soon(&h2.0, "10.99.0.1"),
        "traffic is back after start"
    );
    assert!(
        pings_soon(&n1, "192.168.50.2"),
        "the underlay is back after start"
    );
    assert!(status_item(&lab, "node1-1").0);
    assert!(ok(&mut lab.cmd(&["node", "start", "node1-1"])).contains("nothing changed"));

    // Stopped and cut at once, then down: nothing of the lab is left.
    ok(&mut lab.cmd(&["node", "cut", "node1-2"]));
    ok(&mut lab.cmd(&["node", "stop", "node1-1"]));
    drop((h1, h2));
    ok(&mut lab.cmd(&["down"]));
    assert!(
        lab.leftover_namespaces().is_empty(),
        "{:?}",
        lab.leftover_namespaces()
    );
    assert!(processes_mentioning(&format!("{}/", lab.dir.display())).is_empty());
    assert!(!lab.dir.exists());
}

#[test]
fn kill_agent_kills_only_the_agent_and_stop_start_take_the_agent_and_vms_with_them() {
    require_root_and_tools();
    require_openstack();
    let agent = agent_bin();
    assert!(agent.exists(), "build the agent: cargo build -p agent");
    let lab = Lab::new();
    let mut up = lab.up_cmd(&require_controller(), &agent);
    up.args(ONE_POD_TWO_NODES);
    let out = ok(&mut up);
    assert!(!out.contains("WARNING"), "{out}");
    let agent_pid = |node: &str| -> Option<i32> {
        let (up, detail) = status_item(&lab, &format!("agent@{node}"));
        up.then(|| detail.trim_start_matches("pid ").parse().unwrap())
    };
    let a1 = agent_pid("node1-1").expect("agent@node1-1 runs");
    let ovs1 = ovs_pids(&lab, "node1-1");

    // kill-agent: only the agent is gone; `lab up` restarts it.
    let out = ok(&mut lab.cmd(&["node", "kill-agent", "node1-1"]));
    assert!(out.contains("agent@node1-1 killed"), "{out}");
    assert_eq!(agent_pid("node1-1"), None);
    assert!(!processes_mentioning(&format!("{}/", lab.dir.display())).contains(&a1));
    assert_eq!(ovs_pids(&lab, "node1-1"), ovs1, "kill-agent touched OVS");
    assert!(agent_pid("node1-2").is_some(), "the other agent was killed");
    assert!(
        status_item(&lab, "node1-1").0,
        "an agent crash is no node failure"
    );
    assert!(ok(&mut lab.cmd(&["node", "kill-agent", "node1-1"])).contains("nothing changed"));
    let mut up = lab.up_cmd(&require_controller(), &agent);
    up.args(ONE_POD_TWO_NODES);
    ok(&mut up);
    let a1b = agent_pid("node1-1").expect("lab up restarted the agent");
    assert_ne!(a1, a1b);

    // A VM on node1-2 goes with its node; start brings the agent back, not the VM.
    lab.network("net1", "10.0.1.0/24");
    let vm = format!("{}vm1", lab.prefix);
    let _vm_guard = TestNs(vm.clone());
    ok(&mut lab.vm(&[
        "boot",
        "--static",
        "--region",
        "RegionOne",
        "--node",
        "node1-2",
        "--network",
        "net1",
        &vm,
    ]));
    assert!(namespaces().contains(&vm));
    let out = ok(&mut lab.cmd(&["node", "stop", "node1-2"]));
    assert!(out.contains("agent@node1-2 killed"), "{out}");
    assert!(
        !namespaces().contains(&vm),
        "the VM survived its node's power-off"
    );
    assert_eq!(agent_pid("node1-2"), None);
    assert!(agent_pid("node1-1").is_some());
    let out = ok(&mut lab.cmd(&["node", "start", "node1-2"]));
    assert!(out.contains("agent@node1-2 started"), "{out}");
    assert!(agent_pid("node1-2").is_some());
    assert!(!namespaces().contains(&vm), "start rebooted the VM");

    ok(&mut lab.cmd(&["down"]));
    assert!(
        lab.leftover_namespaces().is_empty(),
        "{:?}",
        lab.leftover_namespaces()
    );
    assert!(processes_mentioning(&format!("{}/", lab.dir.display())).is_empty());
}
