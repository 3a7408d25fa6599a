//! Labs of other shapes than the guide's (`--pods N --nodes-per-pod M`) on real namespaces and
//! OVS, without daemons: names, the provider switches (pod-local VLANs stay in their pod; the
//! bridge range crosses the core in a VLAN-bridge lab and nowhere in a VxLAN-bridge lab, seen
//! with tcpdump on the other pod's node), the underlay, and `lab down` leaving nothing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const NO_BIN: &str = "/nonexistent/crosspod-test-binary";

/// `lab up` of `lab` with extra arguments, no daemons' binaries.
fn up(lab: &Lab, extra: &[&str]) -> String {
    let mut c = lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN));
    c.args(extra);
    ok(&mut c)
}

fn retag(lab: &Lab, node: &str, i: u8, tag: u16) {
    lab.vsctl(
        node,
        &["set", "port", &format!("th{i}"), &format!("tag={tag}")],
    );
}

fn pings(ns: &str, target: &str) -> bool {
    output(&mut in_ns(ns, &["ping", "-c", "2", "-W", "2", target]))
        .status
        .success()
}

/// Frames of VLAN `vlan` from or about host 1 (10.99.0.1: its ARP requests, its pings) seen on
/// `eth1` of each of `nodes` while `act` runs (tcpdump in the node's namespace; the userspace
/// datapath leaves the 802.1Q header in the frame). Other hosts' own chatter (IPv6 DAD, router
/// solicitations) is not counted: it is theirs, not host 1's crossing.
fn frames_on_eth1(lab: &Lab, nodes: &[&str], vlan: u16, act: impl FnOnce()) -> Vec<usize> {
    let children: Vec<_> = nodes
        .iter()
        .map(|n| {
            in_ns(
                &lab.ns(n),
                &[
                    "timeout",
                    "7",
                    "tcpdump",
                    "-l",
                    "-nn",
                    "-e",
                    "-i",
                    "eth1",
                    "vlan",
                    &vlan.to_string(),
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump runs")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    act();
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(&format!("vlan {vlan}")) && l.contains("10.99.0.1"))
                .count()
        })
        .collect()
}

/// Links of the root namespace the lab would have made (its cables carry `crosspod:lab`).
fn lab_links_in_root() -> Vec<String> {
    let out = ok(Command::new("ip").args(["-d", "-o", "link", "show"]));
    out.lines()
        .filter(|l| l.contains("alias crosspod:lab"))
        .map(String::from)
        .collect()
}

#[test]
fn a_three_by_two_lab_is_named_cabled_isolated_and_goes_down_leaving_nothing() {
    require_root_and_tools();
    let lab = Lab::new();
    let out = up(&lab, &["--pods", "3", "--nodes-per-pod", "2"]);
    let nodes = [
        "node1-1", "node1-2", "node2-1", "node2-2", "node3-1", "node3-2",
    ];
    for n in nodes {
        assert!(
            out.contains(&format!("WARNING: agent@{n} is not running")),
            "{n}: {out}"
        );
    }
    for inst in nodes
        .iter()
        .chain(&["ext", "pod1", "pod2", "pod3", "core", "underlay"])
    {
        assert!(namespaces().contains(&lab.ns(inst)), "no namespace {inst}");
    }
    // Pods spelled out as the guide names them, nodes listed pod by pod.
    assert_eq!(
        lab.env_var("CROSSPOD_LAB_NODES"),
        "node1-1:RegionOne:az1 node1-2:RegionOne:az1 node2-1:RegionTwo:az2 \
         node2-2:RegionTwo:az2 node3-1:RegionThree:az3 node3-2:RegionThree:az3"
    );
    assert_eq!(lab.env_var("CROSSPOD_OVSDB_node3_2"), lab.db("node3-2"));
    // RegionOne's and RegionTwo's nodes each have an eth2 into ext; RegionThree has no br-ext.
    for n in ["node1-1", "node1-2", "node2-1", "node2-2"] {
        assert_eq!(lab.vsctl(n, &["port-to-br", "eth2"]).trim(), "br-ext");
        assert_eq!(lab.vsctl("ext", &["port-to-br", n]).trim(), "br-up");
    }
    for n in ["node3-1", "node3-2"] {
        assert_eq!(
            lab.vsctl(n, &["list-br"]).lines().collect::<Vec<_>>(),
            vec!["br-phy", "br-vlan"]
        );
    }
    // Each node's eth1 lands on its pod's switch; each pod switch's `core` port on the core,
    // trunking only the bridge range.
    for (n, pod) in [("node1-2", "pod1"), ("node3-1", "pod3")] {
        assert_eq!(lab.vsctl(pod, &["port-to-br", n]).trim(), "br-pod");
        let link = ok(Command::new("ip").args(["-n", &lab.ns(n), "-o", "link", "show", "eth1"]));
        assert!(
            link.contains(&format!("link-netns {}", lab.ns(pod))),
            "{link}"
        );
    }
    let trunks = lab.vsctl("core", &["get", "port", "pod2", "trunks"]);
    assert!(
        trunks.starts_with("[2001, 2002,") && trunks.trim().ends_with("3000]"),
        "{trunks}"
    );

    // A pod-local VLAN (150) crosses between the nodes of pod 1 and never reaches pod 2.
    let a = host(&lab, "node1-1", 1, 150);
    let b = host(&lab, "node1-2", 2, 150);
    let c = host(&lab, "node2-1", 3, 150);
    let seen = frames_on_eth1(&lab, &["node1-2", "node2-1", "node2-2"], 150, || {
        assert!(pings(&a.0, "10.99.0.2"), "VLAN 150 does not cross pod 1");
        assert!(!pings(&a.0, "10.99.0.3"), "VLAN 150 left pod 1");
    });
    assert!(seen[0] > 0, "no VLAN 150 frame on node1-2's eth1: {seen:?}");
    assert_eq!(seen[1..], [0, 0], "VLAN 150 frames reached pod 2: {seen:?}");

    // A bridge VLAN (2001) crosses the core into pod 2.
    for (node, i) in [("node1-1", 1), ("node1-2", 2), ("node2-1", 3)] {
        retag(&lab, node, i, 2001);
    }
    let seen = frames_on_eth1(&lab, &["node2-1", "node3-1"], 2001, || {
        assert!(
            pings(&a.0, "10.99.0.3"),
            "VLAN 2001 does not cross the core"
        );
    });
    assert!(
        seen[0] > 0,
        "no VLAN 2001 frame on node2-1's eth1: {seen:?}"
    );
    drop((b, c));

    // The underlay: node1-1 reaches node3-2's tunnel IP (192.168.50.6, node 6 of 6).
    let addr =
        ok(Command::new("ip").args(["-n", &lab.ns("node3-2"), "-o", "addr", "show", "br-phy"]));
    assert!(addr.contains("192.168.50.6/24"), "{addr}");
    ok(&mut in_ns(
        &lab.ns("node1-1"),
        &["ping", "-c", "2", "-W", "3", "192.168.50.6"],
    ));

    // Another shape on the same directory is refused, naming the way out.
    let mut other = lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN));
    let o = output(&mut other);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("3 pods × 2 nodes") && err.contains("lab down"),
        "{err}"
    );
    // The same shape again changes nothing.
    let again = up(&lab, &["--pods", "3", "--nodes-per-pod", "2"]);
    assert!(again.contains("nothing changed"), "{again}");

    drop(a);
    let dir = format!("{}/", lab.dir.display());
    assert_eq!(processes_mentioning(&dir).len(), 2 * 12, "12 OVS instances");
    ok(&mut lab.cmd(&["down"]));
    assert!(
        lab.leftover_namespaces().is_empty(),
        "{:?}",
        lab.leftover_namespaces()
    );
    assert!(processes_mentioning(&dir).is_empty(), "daemons survived");
    assert!(!lab.dir.exists(), "lab directory left behind");
    assert!(lab_links_in_root().is_empty(), "{:?}", lab_links_in_root());
}

#[test]
fn a_vxlan_bridge_lab_joins_pods_only_by_the_underlay() {
    require_root_and_tools();
    let lab = Lab::new();
    up(
        &lab,
        &["--nodes-per-pod", "2", "--bridge-network-type", "vxlan"],
    );
    assert!(
        !namespaces().contains(&lab.ns("core")),
        "a VxLAN-bridge lab has no core switch"
    );
    // Even the bridge range stays in its pod: no VLAN trunk between pods.
    let a = host(&lab, "node1-1", 1, 2001);
    let b = host(&lab, "node1-2", 2, 2001);
    let c = host(&lab, "node2-1", 3, 2001);
    let seen = frames_on_eth1(&lab, &["node1-2", "node2-1", "node2-2"], 2001, || {
        assert!(pings(&a.0, "10.99.0.2"), "VLAN 2001 does not cross pod 1");
        assert!(!pings(&a.0, "10.99.0.3"), "VLAN 2001 crossed to pod 2");
    });
    assert!(seen[0] > 0, "{seen:?}");
    assert_eq!(
        seen[1..],
        [0, 0],
        "VLAN 2001 frames reached pod 2: {seen:?}"
    );
    // The underlay joins every node: node1-1 to node2-2 (192.168.50.4).
    ok(&mut in_ns(
        &lab.ns("node1-1"),
        &["ping", "-c", "2", "-W", "3", "192.168.50.4"],
    ));
    drop((a, b, c));
    ok(&mut lab.cmd(&["down"]));
    assert!(lab.leftover_namespaces().is_empty());
}

#[test]
fn shapes_out_of_range_are_refused_before_any_change() {
    let lab = Lab::new();
    for (args, needle) in [
        (vec!["--pods", "0"], "--pods 0"),
        (vec!["--pods", "100"], "--pods 100"),
        (vec!["--pods", "30", "--nodes-per-pod", "9"], "270 nodes"),
        (vec!["--bridge-network-type", "gre"], "vlan or vxlan"),
    ] {
        let mut c = lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN));
        c.args(&args);
        let o = output(&mut c);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!lab.dir.exists(), "{args:?} made the lab directory");
    }
}

/// A stand-in daemon: `--help` prints `help`, otherwise it runs until terminated (agent) or
/// exits at once (controller).
fn stand_in(dir: &Path, name: &str, help: &str, stays: bool) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    let run = if stays {
        "trap 'exit 0' TERM; while :; do sleep 0.2; done"
    } else {
        "exit 1"
    };
    std::fs::write(
        &p,
        format!("#!/bin/sh\nif [ \"$1\" = --help ]; then echo '{help}'; exit 0; fi\n{run}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn tunnel_ip_and_bridge_type_reach_only_daemons_that_have_the_flags() {
    require_root_and_tools();
    let bins = tempfile::tempdir().unwrap();
    for newer in [true, false] {
        let (agent, controller) = if newer {
            (
                stand_in(bins.path(), "agent-new", "  --local-ip <IP>", true),
                stand_in(bins.path(), "ctl-new", "  --bridge-network-type <T>", false),
            )
        } else {
            (
                stand_in(bins.path(), "agent-old", "  --pod <POD>", true),
                stand_in(bins.path(), "ctl-old", "  --neutron-port <P>", false),
            )
        };
        let lab = Lab::new();
        let mut c = lab.up_cmd(&controller, &agent);
        c.args(["--pods", "3", "--bridge-network-type", "vxlan"]);
        let out = ok(&mut c);
        assert!(out.contains("WARNING: controller is not running"), "{out}");
        // Each daemon's log starts with its command line.
        let log = |f: &str| std::fs::read_to_string(lab.dir.join(f)).unwrap();
        let ctl = log("controller/controller.log");
        assert_eq!(
            ctl.contains("--bridge-network-type=vxlan"),
            newer,
            "newer {newer}: {ctl}"
        );
        for (node, ip) in [("node1-1", "192.168.50.1"), ("node3-1", "192.168.50.3")] {
            let a = log(&format!("agents/{node}.log"));
            assert_eq!(
                a.contains(&format!("--local-ip={ip}")),
                newer,
                "newer {newer}: {a}"
            );
            // RegionThree has no external network: no br-ext mapping, no eth2 uplink.
            assert_eq!(
                a.contains("--uplinks=br-vlan:eth1,br-ext:eth2"),
                node == "node1-1",
                "{a}"
            );
        }
        ok(&mut lab.cmd(&["down"]));
        assert!(processes_mentioning(&format!("{}/", lab.dir.display())).is_empty());
    }
}
