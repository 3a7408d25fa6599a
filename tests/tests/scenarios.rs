//! More of the lab end to end (issue "The lab, the main job..."): cross-pod L2 on a stretched
//! VLAN network (the VLAN tag seen on eth1), two projects with overlapping CIDRs kept apart,
//! interface removal and re-adding, and deleting everything leaving nothing behind. Real
//! controller, agents, OVS, namespaces and openstack CLI. Needs root.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::lab::{ping, wait_ping, Lab};

fn eventually(ns: &str, target: &str, want: bool) -> bool {
    wait_ping(ns, target, want, Duration::from_secs(60))
}

fn vm(lab: &Lab, token: &str, region: &str, net: &str, name: &str) -> String {
    let name = lab.ns(name);
    lab.crosspod(
        &["vm", "boot", "--region", region, "--network", net, &name],
        Some(token),
    );
    let list: serde_json::Value =
        serde_json::from_str(&lab.crosspod(&["--json", "vm", "list"], Some(token))).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn tcpdump_tag(node_ns: &str, vid: &str, from: &str, to: &str) -> bool {
    let dump = Command::new("ip")
        .args([
            "netns", "exec", node_ns, "timeout", "8", "tcpdump", "-p", "-c1", "-nei", "eth1",
        ])
        .args(["vlan", vid, "and", "icmp"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..5 {
        ping(from, to, "1");
    }
    let out = dump.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("vlan {vid}"))
}

#[test]
fn stretched_l2_overlapping_projects_readding_and_a_clean_teardown() {
    let lab = Lab::up("s");
    lab.create_pods();
    let admin = lab.admin.clone();
    // Cross-pod L2: one VLAN network with a VM in each pod.
    lab.os(
        &admin,
        &[
            "network",
            "create",
            "--provider-network-type",
            "vlan",
            "--provider-physical-network",
            "bridge",
            "stretch",
            "-f",
            "value",
            "-c",
            "id",
        ],
    );
    lab.os(
        &admin,
        &[
            "subnet",
            "create",
            "--network",
            "stretch",
            "--subnet-range",
            "10.5.0.0/24",
            "stretch-sub",
            "-f",
            "value",
            "-c",
            "id",
        ],
    );
    let vid = lab.os(
        &admin,
        &[
            "network",
            "show",
            "stretch",
            "-f",
            "value",
            "-c",
            "provider:segmentation_id",
        ],
    );
    let s1 = vm(&lab, &admin, "RegionOne", "stretch", "s1");
    let s2 = vm(&lab, &admin, "RegionTwo", "stretch", "s2");
    let _ = s1;
    assert!(
        eventually(&lab.ns("s1"), &s2, true),
        "stretched L2 across pods"
    );
    assert!(
        tcpdump_tag(&lab.ns("node1"), &vid, &lab.ns("s1"), &s2),
        "VLAN {vid} seen on eth1"
    );

    // Two projects, same CIDRs, each with a cross-pod router.
    let member = lab
        .crosspod(&["lab", "token", "--project", "demo2"], None)
        .trim()
        .to_string();
    let mut vms = Vec::new();
    for (who, tok) in [("a", admin.as_str()), ("b", member.as_str())] {
        for (n, cidr) in [("1", "10.0.1.0/24"), ("2", "10.0.2.0/24")] {
            lab.os(
                tok,
                &[
                    "network",
                    "create",
                    &format!("{who}net{n}"),
                    "-f",
                    "value",
                    "-c",
                    "id",
                ],
            );
            lab.os(
                tok,
                &[
                    "subnet",
                    "create",
                    "--network",
                    &format!("{who}net{n}"),
                    "--subnet-range",
                    cidr,
                    &format!("{who}sub{n}"),
                    "-f",
                    "value",
                    "-c",
                    "id",
                ],
            );
        }
        let v1 = vm(
            &lab,
            tok,
            "RegionOne",
            &format!("{who}net1"),
            &format!("{who}1"),
        );
        let v2 = vm(
            &lab,
            tok,
            "RegionTwo",
            &format!("{who}net2"),
            &format!("{who}2"),
        );
        lab.os(
            tok,
            &[
                "router",
                "create",
                &format!("{who}r"),
                "-f",
                "value",
                "-c",
                "id",
            ],
        );
        lab.os(
            tok,
            &[
                "router",
                "add",
                "subnet",
                &format!("{who}r"),
                &format!("{who}sub1"),
            ],
        );
        lab.os(
            tok,
            &[
                "router",
                "add",
                "subnet",
                &format!("{who}r"),
                &format!("{who}sub2"),
            ],
        );
        vms.push((who, tok.to_string(), v1, v2));
    }
    for (who, _, _, v2) in &vms {
        assert!(
            eventually(&lab.ns(&format!("{who}1")), v2, true),
            "project {who}: vm1 -> vm2 across pods"
        );
    }
    // Project b gets one more VM on its net2: an address project a's identical subnet lacks.
    let extra = vm(&lab, &member, "RegionTwo", "bnet2", "b3");
    assert!(
        eventually(&lab.ns("b1"), &extra, true),
        "b reaches its own new VM"
    );
    assert!(
        !ping(&lab.ns("a1"), &extra, "1"),
        "a must not reach b's VM through overlapping CIDRs"
    );

    // Interface removal withdraws the route; re-adding restores it.
    lab.os(&admin, &["router", "remove", "subnet", "ar", "asub2"]);
    assert!(
        eventually(&lab.ns("a1"), &vms[0].3, false),
        "removal withdraws"
    );
    assert!(
        ping(&lab.ns("b1"), &vms[1].3, "1"),
        "the other project is untouched"
    );
    lab.os(&admin, &["router", "add", "subnet", "ar", "asub2"]);
    assert!(
        eventually(&lab.ns("a1"), &vms[0].3, true),
        "re-adding restores"
    );

    // Delete everything: no router or DHCP namespace, no agent-made OVS port, no VM left.
    for (who, tok, _, _) in &vms {
        lab.os(
            tok,
            &[
                "router",
                "remove",
                "subnet",
                &format!("{who}r"),
                &format!("{who}sub1"),
            ],
        );
        lab.os(
            tok,
            &[
                "router",
                "remove",
                "subnet",
                &format!("{who}r"),
                &format!("{who}sub2"),
            ],
        );
        lab.os(tok, &["router", "delete", &format!("{who}r")]);
    }
    for (name, tok) in [
        ("s1", &admin),
        ("s2", &admin),
        ("a1", &admin),
        ("a2", &admin),
        ("b1", &member),
        ("b2", &member),
        ("b3", &member),
    ] {
        lab.crosspod(&["vm", "delete", &lab.ns(name)], Some(tok));
    }
    // The networks last: each keeps its DHCP server in every pod it reached until it goes.
    lab.os(&admin, &["network", "delete", "stretch"]);
    for (who, tok, _, _) in &vms {
        for n in [1, 2] {
            lab.os(tok, &["network", "delete", &format!("{who}net{n}")]);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nss = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .to_string();
        let routers: Vec<&str> = nss
            .lines()
            .filter(|l| {
                l.starts_with(&lab.prefix) && (l.contains("qrouter-") || l.contains("qdhcp-"))
            })
            .collect();
        let mut leftovers = Vec::new();
        for node in ["node1", "node2"] {
            let sock = lab.dir.join(node).join("db.sock");
            let ports = Command::new("ovs-vsctl")
                .arg(format!("--db=unix:{}", sock.display()))
                .args([
                    "--format=csv",
                    "--no-headings",
                    "--columns=name",
                    "find",
                    "port",
                    "external_ids:crosspod-owner=agent",
                ])
                .output()
                .unwrap();
            let p = String::from_utf8_lossy(&ports.stdout).trim().to_string();
            if !p.is_empty() {
                leftovers.push(format!("{node}: {p}"));
            }
        }
        if routers.is_empty() && leftovers.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: namespaces {routers:?}, OVS ports {leftovers:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(!Path::new(&format!("/run/netns/{}", lab.ns("s1"))).exists());
}
