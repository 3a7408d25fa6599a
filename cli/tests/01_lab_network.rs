//! `crosspod lab up/down` on real namespaces and OVS, without the controller: the network
//! part is built even when the daemons' binaries are missing, a second `up` changes nothing,
//! and `down` leaves nothing behind, even after a half-failed `up`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const NO_BIN: &str = "/nonexistent/crosspod-test-binary";

/// The OVS instances of the default lab: two nodes, the upstream, the two pods' provider
/// switches, the core joining them, the underlay.
const LAB_SWITCHES: [&str; 7] = ["node1", "node2", "ext", "pod1", "pod2", "core", "underlay"];

#[test]
fn lab_up_builds_nodes_cables_and_upstream_and_reports_missing_daemons() {
    require_root_and_tools();
    let lab = Lab::new();
    let out = ok(&mut lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN)));
    assert!(
        out.contains("WARNING: controller is not running"),
        "missing controller not reported:\n{out}"
    );
    assert!(out.contains("WARNING: agent@node1 is not running"), "{out}");
    assert!(out.contains("WARNING: agent@node2 is not running"), "{out}");

    for inst in LAB_SWITCHES {
        assert!(
            namespaces().contains(&lab.ns(inst)),
            "namespace {} missing",
            lab.ns(inst)
        );
        // Each instance's own ovsdb-server answers on its own socket.
        lab.vsctl(inst, &["show"]);
    }
    // Each pod has its own way out (Tricircle's multi-gateway topology needs it).
    for node in ["node1", "node2"] {
        assert_eq!(
            lab.vsctl(node, &["list-br"]).lines().collect::<Vec<_>>(),
            vec!["br-ext", "br-phy", "br-vlan"]
        );
        assert_eq!(lab.vsctl(node, &["port-to-br", "eth2"]).trim(), "br-ext");
    }
    for node in ["node1", "node2"] {
        assert_eq!(lab.vsctl(node, &["port-to-br", "eth1"]).trim(), "br-vlan");
        let link = ok(Command::new("ip").args(["-n", &lab.ns(node), "-o", "link", "show", "eth1"]));
        assert!(link.contains("state UP"), "eth1 not up in {node}: {link}");
        // eth1 goes to the pod's provider switch (pod1, pod2), which the core switch joins.
        assert!(
            link.contains(&format!(
                "link-netns {}",
                lab.ns(if node == "node1" { "pod1" } else { "pod2" })
            )),
            "eth1 of {node} not cabled to its pod's switch: {link}"
        );
    }
    assert_eq!(lab.vsctl("node2", &["port-to-br", "eth2"]).trim(), "br-ext");
    // The guide's ovs-vswitchd of each node runs inside the node namespace.
    let env = lab.env();
    for node in ["node1", "node2"] {
        let key = format!("CROSSPOD_OVSDB_{node}");
        let v = &env.iter().find(|(k, _)| *k == key).unwrap().1;
        assert_eq!(v, &lab.db(node));
    }

    // A test leg on node2's br-ext with the external VLAN reaches the upstream router.
    let leg = TestNs::create(&format!("{}leg", lab.prefix));
    ok(Command::new("ip").args([
        "link",
        "add",
        "tleg0",
        "netns",
        &leg.0,
        "type",
        "veth",
        "peer",
        "name",
        "tlegp",
        "netns",
        &lab.ns("node2"),
    ]));
    ok(Command::new("ip").args(["-n", &leg.0, "link", "set", "tleg0", "up"]));
    ok(Command::new("ip").args(["-n", &lab.ns("node2"), "link", "set", "tlegp", "up"]));
    ok(Command::new("ip").args([
        "-n",
        &leg.0,
        "addr",
        "add",
        "163.3.124.77/24",
        "dev",
        "tleg0",
    ]));
    lab.vsctl("node2", &["add-port", "br-ext", "tlegp", "tag=3001"]);
    ok(&mut in_ns(
        &leg.0,
        &["ping", "-c", "2", "-W", "3", "163.3.124.1"],
    ));
    let neigh = ok(Command::new("ip").args(["-n", &leg.0, "neigh", "show", "163.3.124.1"]));
    assert!(
        neigh.contains("lladdr"),
        "no ARP entry for the upstream router: {neigh}"
    );

    // On another VLAN the upstream router is not reachable: the tag matters.
    lab.vsctl("node2", &["set", "port", "tlegp", "tag=3002"]);
    ok(Command::new("ip").args(["-n", &leg.0, "neigh", "flush", "all"]));
    let st = output(&mut in_ns(
        &leg.0,
        &["ping", "-c", "1", "-W", "1", "163.3.124.1"],
    ));
    assert!(
        !st.status.success(),
        "upstream router answered on the wrong VLAN"
    );

    // RegionOne's upstream (163.3.125.1 on VLAN 3002) is reached through node1's eth2, not
    // through node2's: the same test leg moved to node1's br-ext.
    lab.vsctl("node2", &["del-port", "br-ext", "tlegp"]);
    ok(Command::new("ip").args([
        "-n",
        &lab.ns("node2"),
        "link",
        "set",
        "tlegp",
        "netns",
        &lab.ns("node1"),
    ]));
    ok(Command::new("ip").args(["-n", &lab.ns("node1"), "link", "set", "tlegp", "up"]));
    ok(Command::new("ip").args([
        "-n",
        &leg.0,
        "addr",
        "add",
        "163.3.125.77/24",
        "dev",
        "tleg0",
    ]));
    lab.vsctl("node1", &["add-port", "br-ext", "tlegp", "tag=3002"]);
    ok(&mut in_ns(
        &leg.0,
        &["ping", "-c", "2", "-W", "3", "163.3.125.1"],
    ));
}

#[test]
fn second_lab_up_changes_nothing_and_says_so() {
    require_root_and_tools();
    let lab = Lab::new();
    ok(&mut lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN)));
    let status1 = output(&mut lab.cmd(&["status", "--json"]));
    let tokens1 = std::fs::read_to_string(lab.dir.join("tokens")).unwrap();
    let out = ok(&mut lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN)));
    assert!(
        out.contains("nothing changed"),
        "second up changed something:\n{out}"
    );
    let status2 = output(&mut lab.cmd(&["status", "--json"]));
    assert_eq!(
        String::from_utf8_lossy(&status1.stdout),
        String::from_utf8_lossy(&status2.stdout),
        "daemons or namespaces changed on the second up"
    );
    assert_eq!(
        tokens1,
        std::fs::read_to_string(lab.dir.join("tokens")).unwrap()
    );

    // A different prefix on the same directory is refused, with advice.
    let mut other = lab.cmd(&["up"]);
    other.args([
        "--prefix",
        "zzother",
        "--controller-bin",
        NO_BIN,
        "--agent-bin",
        NO_BIN,
    ]);
    let o = output(&mut other);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("lab down"),
        "{o:?}"
    );
}

#[test]
fn lab_down_leaves_no_namespace_process_or_file_and_is_safe_twice() {
    require_root_and_tools();
    let lab = Lab::new();
    ok(&mut lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN)));
    let dir = format!("{}/", lab.dir.display());
    assert_eq!(
        processes_mentioning(&dir).len(),
        2 * LAB_SWITCHES.len(),
        "one ovsdb-server and one ovs-vswitchd per OVS instance expected"
    );
    // A router namespace as the node1 agent would make it goes with the lab; a namespace that
    // merely shares the prefix does not.
    let _router = TestNs::create(&format!("{}-qrouter-x", lab.ns("node1")));
    let bystander = TestNs::create(&format!("{}node1x", lab.prefix));
    ok(&mut lab.cmd(&["down"]));
    assert!(
        namespaces().contains(&bystander.0),
        "down removed a namespace it did not make"
    );
    drop(bystander);
    assert!(
        lab.leftover_namespaces().is_empty(),
        "{:?}",
        lab.leftover_namespaces()
    );
    assert!(
        processes_mentioning(&dir).is_empty(),
        "daemons survived lab down"
    );
    assert!(!lab.dir.exists(), "lab directory left behind");
    let again = ok(&mut lab.cmd(&["down"]));
    assert!(again.contains("nothing to do"), "{again}");
}

#[test]
fn lab_down_cleans_up_after_a_half_failed_up() {
    require_root_and_tools();
    let lab = Lab::new();
    // A PATH where ovs-vswitchd fails: namespaces and the first ovsdb-server get made, then
    // `up` stops with an error.
    let bin = std::env::temp_dir().join(format!("crosspod-cli-bin-{}", lab.prefix));
    std::fs::create_dir_all(&bin).unwrap();
    struct RmDir(std::path::PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _bin_guard = RmDir(bin.clone());
    for tool in ["ovsdb-server", "ovsdb-tool", "ovs-vsctl"] {
        let real = ok(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
        std::os::unix::fs::symlink(real.trim(), bin.join(tool)).unwrap();
    }
    std::fs::write(
        bin.join("ovs-vswitchd"),
        "#!/bin/sh\necho broken vswitchd >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bin.join("ovs-vswitchd"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    let out = output(
        lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN))
            .env("PATH", &bin),
    );
    assert!(!out.status.success(), "up should have failed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lab down"), "no advice in: {err}");
    assert!(
        err.contains("ovs-vswitchd"),
        "failing step not named: {err}"
    );
    assert!(
        namespaces().contains(&lab.ns("node1")),
        "up failed before making anything"
    );
    let dir = format!("{}/", lab.dir.display());
    assert!(
        !processes_mentioning(&dir).is_empty(),
        "ovsdb-server should run"
    );

    ok(&mut lab.cmd(&["down"]));
    assert!(
        lab.leftover_namespaces().is_empty(),
        "{:?}",
        lab.leftover_namespaces()
    );
    assert!(processes_mentioning(&dir).is_empty());
    assert!(!lab.dir.exists());
}

#[test]
fn a_namespace_that_is_not_the_labs_stops_up_before_any_change() {
    require_root_and_tools();
    let lab = Lab::new();
    let squatter = TestNs::create(&lab.ns("node2"));
    let out = output(&mut lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN)));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&squatter.0) && err.contains("--prefix"),
        "{err}"
    );
    assert!(
        !namespaces().contains(&lab.ns("node1")),
        "up changed things before failing"
    );
    assert!(!lab.dir.exists(), "up created its directory before failing");
    // `down` without a lab does nothing, and leaves the squatter alone.
    ok(&mut lab.cmd(&["down"]));
    assert!(namespaces().contains(&squatter.0));
}

#[test]
fn missing_open_vswitch_is_reported_before_any_change() {
    require_root_and_tools();
    let lab = Lab::new();
    let out = output(
        lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN))
            .env("PATH", "/nonexistent"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("openvswitch-switch") && err.contains("ovs-vswitchd"),
        "{err}"
    );
    assert!(lab.leftover_namespaces().is_empty());
    assert!(!lab.dir.exists());
}

#[test]
fn bad_prefix_is_refused_with_the_limit_named() {
    let lab = Lab::new();
    let mut c = lab.cmd(&["up"]);
    c.args(["--prefix", "muchtoolongprefix"]);
    let out = output(&mut c);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("15-byte"));
    assert!(!lab.dir.exists());
}

#[test]
fn lab_up_repairs_a_lab_whose_daemons_died_and_namespaces_vanished() {
    require_root_and_tools();
    let lab = Lab::new();
    ok(&mut lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN)));
    // What a reboot does: every daemon gone, /run/netns emptied; the lab directory stays.
    for inst in LAB_SWITCHES {
        for d in ["ovsdb-server", "ovs-vswitchd"] {
            let pid = std::fs::read_to_string(lab.dir.join(inst).join(format!("{d}.pid"))).unwrap();
            ok(Command::new("kill").args(["-9", pid.trim()]));
        }
    }
    for inst in LAB_SWITCHES {
        ok(Command::new("ip").args(["netns", "del", &lab.ns(inst)]));
    }
    let out = ok(&mut lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN)));
    assert!(
        out.contains("cable eth1") && out.contains("upstream router"),
        "{out}"
    );
    // Every cable end is up again (ovs-vswitchd reopening a device must not leave it down).
    for (inst, ifname) in [
        ("node1", "eth1"),
        ("node2", "eth1"),
        ("node1", "eth2"),
        ("node2", "eth2"),
        ("ext", "eth2"),
        ("ext", "eth3"),
        ("ext", "gwp"),
        ("ext", "gw1p"),
    ] {
        let link = ok(Command::new("ip").args(["-n", &lab.ns(inst), "-o", "link", "show", ifname]));
        assert!(
            link.contains("state UP"),
            "{ifname}@{inst} not up after repair: {link}"
        );
    }
    assert_eq!(lab.vsctl("node2", &["port-to-br", "eth2"]).trim(), "br-ext");
    let addr = ok(Command::new("ip").args(["-n", &lab.ns("ext"), "-o", "addr", "show", "gw0"]));
    assert!(addr.contains("163.3.124.1/24"), "{addr}");
    let addr = ok(Command::new("ip").args(["-n", &lab.ns("ext"), "-o", "addr", "show", "gw1"]));
    assert!(addr.contains("163.3.125.1/24"), "{addr}");
    let again = ok(&mut lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN)));
    assert!(again.contains("nothing changed"), "{again}");
}

#[test]
fn two_concurrent_lab_ups_make_one_lab() {
    require_root_and_tools();
    let lab = Lab::new();
    let mut c1 = lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN));
    let mut c2 = lab.up_cmd(Path::new(NO_BIN), Path::new(NO_BIN));
    let h1 = c1.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let h2 = c2.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let (o1, o2) = (
        h1.wait_with_output().unwrap(),
        h2.wait_with_output().unwrap(),
    );
    assert!(o1.status.success() && o2.status.success(), "{o1:?}\n{o2:?}");
    let (s1, s2) = (
        String::from_utf8_lossy(&o1.stdout),
        String::from_utf8_lossy(&o2.stdout),
    );
    assert!(
        s1.contains("nothing changed") != s2.contains("nothing changed"),
        "exactly one up should have found the work done:\n{s1}\n{s2}"
    );
    let dir = format!("{}/", lab.dir.display());
    assert_eq!(
        processes_mentioning(&dir).len(),
        2 * LAB_SWITCHES.len(),
        "daemons started twice"
    );
}
