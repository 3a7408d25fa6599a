//! A lab of 3 pods × 2 nodes with the real controller and agents: every pod created from the
//! lab's shape, every node's agent registered in its pod, a VM booted on a pod's second node
//! (`vm boot --node`) plugged there and bound by that node's agent, and a node of another pod
//! refused.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::lab::Lab;

fn agents(lab: &Lab) -> Vec<(String, String)> {
    let o = Command::new("curl")
        .args(["-sS", "--fail-with-body"])
        .arg(format!("http://127.0.0.1:{}/v1.0/agents", lab.tricircle))
        .args(["-H", &format!("X-Auth-Token: {}", lab.admin)])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let mut out: Vec<(String, String)> = v["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["node"].as_str().unwrap_or_default().to_string(),
                a["pod"]
                    .as_str()
                    .or_else(|| a["region_name"].as_str())
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_three_by_two_lab_registers_every_node_and_boots_on_a_chosen_node() {
    let lab = Lab::up_with("ls", &["--pods", "3", "--nodes-per-pod", "2"]);
    let nodes = lab.nodes();
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["node1-1", "node1-2", "node2-1", "node2-2", "node3-1", "node3-2"]
    );
    assert_eq!(
        lab.pods(),
        [
            ("RegionOne".to_string(), "az1".to_string()),
            ("RegionTwo".into(), "az2".into()),
            ("RegionThree".into(), "az3".into())
        ]
    );
    lab.create_pods();
    let deadline = Instant::now() + Duration::from_secs(60);
    let want: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    loop {
        let have: Vec<String> = agents(&lab).into_iter().map(|a| a.0).collect();
        if have == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agents registered: {have:?}, want {want:?}\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    lab.os(
        &lab.admin,
        &[
            "network",
            "create",
            "--availability-zone-hint",
            "RegionThree",
            "net3",
        ],
    );
    lab.os(
        &lab.admin,
        &[
            "subnet",
            "create",
            "--network",
            "net3",
            "--subnet-range",
            "10.0.3.0/24",
            "--no-dhcp",
            "sub3",
        ],
    );
    let vm = lab.ns("vm");
    let out = lab.crosspod(
        &[
            "vm",
            "boot",
            "--region",
            "RegionThree",
            "--node",
            "node3-2",
            "--network",
            "net3",
            "--wait",
            "60",
            &vm,
        ],
        None,
    );
    assert!(out.contains("on node3-2 (RegionThree)"), "{out}");
    // Plugged into node3-2's br-vlan (not node3-1's), and bound by node3-2's agent (ACTIVE).
    let ports = |node: &str| {
        let o = Command::new("ovs-vsctl")
            .arg(format!(
                "--db=unix:{}",
                lab.dir.join(node).join("db.sock").display()
            ))
            .args(["list-ports", "br-vlan"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(ports("node3-2").contains("tap"), "{}", ports("node3-2"));
    assert!(!ports("node3-1").contains("tap"), "{}", ports("node3-1"));
    let list = lab.crosspod(&["vm", "list"], None);
    assert!(
        list.lines()
            .any(|l| l.contains(&vm) && l.contains("node3-2") && l.contains("ACTIVE")),
        "{list}"
    );

    // A node of another pod is refused, naming the pod's own nodes.
    let o = Command::new(&lab.crosspod)
        .args(["vm", "boot", "--region", "RegionThree", "--node", "node1-2"])
        .args(["--network", "net3", &lab.ns("vmx"), "--dir"])
        .arg(&lab.dir)
        .env("OS_ENDPOINT", format!("http://127.0.0.1:{}", lab.neutron))
        .env("OS_TOKEN", &lab.admin)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("serves RegionOne") && err.contains("node3-1"),
        "{err}"
    );
    lab.crosspod(&["vm", "delete", &vm], None);
}
