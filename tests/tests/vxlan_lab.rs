//! VxLAN between pods and pods of several nodes, end to end in a lab of 3 pods × 2 nodes whose
//! pods share nothing but the underlay (`--bridge-network-type vxlan`): the guide's topology
//! over a VxLAN bridge network (the VNI seen on the underlay by tcpdump), a stretched VxLAN
//! tenant network with VMs in three pods, a VM on a pod's second node reaching its router and
//! the other pods, tunnel ports only towards the nodes that share a segment, and a pod's
//! tunnels for a network gone with its last VM there.
//! Real controller, agents, OVS (userspace datapath), namespaces and the openstack CLI. Needs root.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::lab::{ping, wait_ping, Lab, LabNode};

/// `ovs-vsctl` against a lab node's OVSDB.
fn vsctl(lab: &Lab, node: &str, args: &[&str]) -> String {
    let o = Command::new("ovs-vsctl")
        .arg(format!(
            "--db=unix:{}",
            lab.dir.join(node).join("db.sock").display()
        ))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The remote tunnel endpoints of a node's VxLAN ports.
fn tunnel_peers(lab: &Lab, node: &str) -> BTreeSet<String> {
    vsctl(
        lab,
        node,
        &[
            "--bare",
            "--columns=options",
            "find",
            "Interface",
            "type=vxlan",
        ],
    )
    .split([',', '{', '}', ' ', '\n'])
    .filter_map(|kv| kv.strip_prefix("remote_ip="))
    .map(|v| v.trim_matches('"').to_string())
    .collect()
}

/// Flows of a node's tunnel bridge that match or set `vni`.
fn vni_flows(lab: &Lab, node: &str, vni: u64) -> usize {
    let o = Command::new("ovs-ofctl")
        .args(["-O", "OpenFlow14", "dump-flows"])
        .arg(format!(
            "unix:{}",
            lab.dir.join(node).join("br-tun.mgmt").display()
        ))
        .output()
        .unwrap();
    let needle = format!("tun_id={vni:#x}");
    let set = format!("set_field:{vni:#x}->tun_id");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains(&needle) || l.contains(&set))
        .count()
}

/// Waits until a node's tunnel peers are exactly `want`.
fn wait_peers(lab: &Lab, node: &str, want: &BTreeSet<String>) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = tunnel_peers(lab, node);
        if &got == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// VxLAN headers seen on the underlay switch (every node's cable end) while `from` pings `to`.
fn vxlan_seen(lab: &Lab, from: &str, to: &str) -> String {
    let dump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("underlay"),
            "timeout",
            "8",
            "tcpdump",
            "-p",
            "-c2",
            "-nvi",
            "any",
            // VxLAN with a non-zero VNI: not the BFD sessions between a pod's nodes (VNI 0).
            "udp port 4789 and (udp[12:4] & 0xffffff00) != 0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..4 {
        ping(from, to, "1");
    }
    let out = dump.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn node<'a>(nodes: &'a [LabNode], name: &str) -> &'a LabNode {
    nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("the lab has no node {name}: {nodes:?}"))
}

fn ip_of(lab: &Lab, vm: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", &lab.ns(vm), "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("{vm} has no IPv4 address: {text}"))
        .to_string()
}

/// Creates one pod with the Tricircle API (the guide creates the first two).
fn create_pod(lab: &Lab, region: &str, az: &str) {
    let o = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-X", "POST"])
        .arg(format!("http://127.0.0.1:{}/v1.0/pods", lab.tricircle))
        .args(["-H", "Content-Type: application/json", "-H"])
        .arg(format!("X-Auth-Token: {}", lab.admin))
        .args([
            "-d",
            &format!(r#"{{"pod": {{"region_name": "{region}", "az_name": "{az}"}}}}"#),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn vxlan_across_three_pods_of_two_nodes() {
    let lab = Lab::up_with(
        "vx",
        &[
            "--pods",
            "3",
            "--nodes-per-pod",
            "2",
            "--bridge-network-type",
            "vxlan",
        ],
    );
    let nodes = lab.nodes();
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    let tip = |name: &str| {
        node(&nodes, name)
            .tunnel_ip
            .clone()
            .unwrap_or_else(|| panic!("{name} has no tunnel IP"))
    };

    // The guide, as written, over a VxLAN bridge network: vm1 on node1-1, vm2 on node2-1.
    let played = lab.play_guide("guide");
    create_pod(&lab, "RegionThree", "az3");
    let vm1 = lab.ns("vm1");
    assert!(
        wait_ping(&vm1, &played.vm2_ip, true, Duration::from_secs(30)),
        "vm1 -> vm2 across the VxLAN bridge\n{}",
        lab.logs()
    );
    let seen = vxlan_seen(&lab, &vm1, &played.vm2_ip);
    assert!(
        seen.contains("VXLAN") && seen.contains("vni"),
        "the bridge network's traffic is VxLAN on the underlay:\n{seen}"
    );
    // No VLAN trunk joins the pods (the lab's provider switches are not connected): the
    // bridge VLAN range never appears on node1-1's provider uplink for this traffic.

    // A VM on RegionOne's second node, on net1: reaches its router and the other pod, whichever
    // node of the pod holds the router instance.
    lab.crosspod(
        &[
            "vm",
            "boot",
            "--region",
            "RegionOne",
            "--node",
            "node1-2",
            "--network",
            "net1",
            "--wait",
            "60",
            &lab.ns("vm3"),
        ],
        None,
    );
    let vm3 = lab.ns("vm3");
    assert!(
        wait_ping(&vm3, "10.0.1.1", true, Duration::from_secs(30)),
        "vm3 (node1-2) -> its router\n{}",
        lab.logs()
    );
    assert!(
        wait_ping(&vm3, &played.vm2_ip, true, Duration::from_secs(30)),
        "vm3 (node1-2) -> vm2 in RegionTwo\n{}",
        lab.logs()
    );
    assert!(ping(&vm3, &played.vm1_ip, "2"), "vm3 -> vm1 inside the pod");

    // A stretched VxLAN tenant network, no DHCP, VMs on three nodes of three pods.
    let admin = lab.admin.clone();
    let os = |args: &[&str]| lab.os(&admin, args);
    os(&[
        "network",
        "create",
        "--provider-network-type",
        "vxlan",
        "vx-net",
    ]);
    let shown = os(&["network", "show", "vx-net", "-f", "json"]);
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["provider:network_type"], "vxlan", "{shown}");
    assert_eq!(v["mtu"], 1450, "{shown}");
    let vni = v["provider:segmentation_id"].as_u64().expect("a VNI");
    os(&[
        "subnet",
        "create",
        "--network",
        "vx-net",
        "--subnet-range",
        "10.0.9.0/24",
        "--no-dhcp",
        "vx-sub",
    ]);
    for (vm, region, on) in [
        ("s1", "RegionOne", "node1-2"),
        ("s2", "RegionTwo", "node2-2"),
        ("s3", "RegionThree", "node3-1"),
    ] {
        lab.crosspod(
            &[
                "vm",
                "boot",
                "--region",
                region,
                "--node",
                on,
                "--network",
                "vx-net",
                "--static",
                "--wait",
                "60",
                &lab.ns(vm),
            ],
            None,
        );
    }
    let ips: Vec<(String, String)> = ["s1", "s2", "s3"]
        .iter()
        .map(|v| (lab.ns(v), ip_of(&lab, v)))
        .collect();
    for (from, _) in &ips {
        for (to_ns, to) in &ips {
            if from != to_ns {
                assert!(
                    wait_ping(from, to, true, Duration::from_secs(30)),
                    "{from} -> {to} on the stretched VxLAN network\n{}",
                    lab.logs()
                );
            }
        }
    }
    let seen = vxlan_seen(&lab, &ips[2].0, &ips[0].1);
    assert!(
        seen.contains(&format!("vni {vni}")),
        "the tenant network's VNI {vni} on the underlay:\n{seen}"
    );

    // Tunnel ports only towards nodes sharing a segment, plus the node's own pod peer (its BFD
    // session for failover, a port without segment flows): node3-1 carries only vx-net, shared
    // with node1-2 and node2-2; node3-2 carries nothing, so its only port is to node3-1 and its
    // tunnel bridge has no flow for the VNI.
    let want: BTreeSet<String> = [tip("node1-2"), tip("node2-2"), tip("node3-2")].into();
    assert_eq!(wait_peers(&lab, "node3-1", &want), want);
    let want: BTreeSet<String> = [tip("node3-1")].into();
    assert_eq!(
        wait_peers(&lab, "node3-2", &want),
        want,
        "a node sharing no VxLAN segment has no tunnel port but its pod peer's"
    );
    assert!(
        vni_flows(&lab, "node3-1", vni) > 0,
        "node3-1 carries VNI {vni}"
    );
    assert_eq!(
        vni_flows(&lab, "node3-2", vni),
        0,
        "node3-2 has no flow for VNI {vni}"
    );

    // The last VM of vx-net in RegionTwo goes: node2-2's tunnel for it goes everywhere.
    lab.crosspod(&["vm", "delete", &lab.ns("s2")], None);
    let want: BTreeSet<String> = [tip("node1-2"), tip("node3-2")].into();
    assert_eq!(wait_peers(&lab, "node3-1", &want), want);
    assert!(ping(&ips[0].0, &ips[2].1, "2"), "s1 -> s3 still");
}
