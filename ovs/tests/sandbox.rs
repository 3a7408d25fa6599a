//! The sandbox itself: daemons really run, restart keeps the database, drop cleans up.

mod common;

use std::path::Path;

use ovs::sandbox::SandboxOptions;

fn pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn restart_keeps_the_db_and_drop_cleans_up() {
    let sb = common::sandbox(SandboxOptions {
        vswitchd: true,
        ..Default::default()
    });
    let dir = sb.dir().to_path_buf();
    let br = ovs::sandbox::unique_name("sbt");
    sb.vsctl(&[
        "add-br",
        &br,
        "--",
        "set",
        "bridge",
        &br,
        "datapath_type=netdev",
    ])
    .unwrap();
    let db_pid = pid(&dir.join("ovsdb.pid"));
    let vs_pid = pid(&dir.join("vswitchd.pid"));
    assert!(alive(db_pid) && alive(vs_pid));

    sb.restart_ovsdb().unwrap();
    assert!(!alive(db_pid), "old ovsdb-server still running");
    assert_eq!(
        sb.vsctl(&["list-br"]).unwrap().trim(),
        br,
        "db kept across restart"
    );

    let db_pid = pid(&dir.join("ovsdb.pid"));
    drop(sb);
    assert!(!alive(db_pid), "ovsdb-server survived drop");
    assert!(!alive(vs_pid), "ovs-vswitchd survived drop");
    assert!(!dir.exists(), "{} not removed", dir.display());
    // vswitchd ran in the root namespace here: its bridge device must be gone with it.
    let out = std::process::Command::new("ip")
        .args(["link", "show", &br])
        .output()
        .unwrap();
    assert!(!out.status.success(), "bridge device {br} left behind");
}

#[test]
fn drop_on_panic_still_cleans_up() {
    let mut dir = None;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sb = common::ovsdb();
        dir = Some((sb.dir().to_path_buf(), pid(&sb.dir().join("ovsdb.pid"))));
        panic!("test failure inside");
    }));
    assert!(r.is_err());
    let (dir, p) = dir.unwrap();
    assert!(!alive(p));
    assert!(!dir.exists());
}

#[test]
fn missing_netns_is_a_clear_error() {
    let e = ovs::sandbox::Sandbox::start(SandboxOptions {
        netns: Some("crosspod-no-such-ns".into()),
        ..Default::default()
    })
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("start ovsdb-server") && msg.contains("crosspod-no-such-ns"),
        "{msg}"
    );
}
