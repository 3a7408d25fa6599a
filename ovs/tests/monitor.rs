//! The monitor replica against a real ovsdb-server: changes made from outside with
//! ovs-vsctl, read-your-writes, and resync after the server restarts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ovs::sandbox::SandboxOptions;
use ovs::vswitch::{self, View, DB};
use ovs::{ChangeKind, MonitorRequest, Snapshot};

const T: Duration = Duration::from_secs(10);

fn bridge_names(s: &Snapshot) -> Vec<String> {
    let mut v: Vec<String> = s
        .rows("Bridge")
        .filter_map(|r| r.get_str("name").map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Every port a bridge references is in the replica: a torn update would break this.
fn consistent(s: &Snapshot) -> Result<(), String> {
    for b in s.rows("Bridge") {
        for p in b.get("ports").map(|v| v.as_set()).unwrap_or_default() {
            let u = p.as_uuid().unwrap();
            if s.row("Port", &u).is_none() {
                return Err(format!(
                    "seq {}: bridge {:?} references missing port {u}",
                    s.seq,
                    b.get_str("name")
                ));
            }
        }
    }
    Ok(())
}

/// Watches every published snapshot and records the first inconsistency.
fn watch_consistency(r: &ovs::Replica) -> tokio::task::JoinHandle<Result<u64, String>> {
    let mut rx = r.subscribe();
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let s: Arc<Snapshot> = rx.borrow_and_update().clone();
            consistent(&s)?;
            seen += 1;
            if rx.changed().await.is_err() {
                return Ok(seen);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_follows_ovs_vsctl() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let r = vswitch::monitor(&c).await.unwrap();
    let checker = watch_consistency(&r);
    assert!(bridge_names(&r.snapshot()).is_empty());

    sb.vsctl(&[
        "add-br",
        "br-o",
        "--",
        "set",
        "bridge",
        "br-o",
        "external_ids:owner=x",
    ])
    .unwrap();
    let s = r
        .wait_for(T, |s| bridge_names(s) == ["br-o"])
        .await
        .unwrap_or_else(|s| panic!("bridge insert not seen: {:?}", bridge_names(&s)));
    let b = s
        .find_by_str("Bridge", "name", "br-o")
        .next()
        .unwrap()
        .clone();
    assert_eq!(b.map_str("external_ids", "owner"), Some("x"));
    assert!(
        b.get("stp_enable").is_none(),
        "only the requested columns are replicated"
    );
    assert!(
        s.changes
            .iter()
            .any(|c| c.table == "Bridge" && c.kind == ChangeKind::Insert)
            || s.reset
    );

    sb.vsctl(&[
        "add-port",
        "br-o",
        "vm1",
        "tag=101",
        "--",
        "set",
        "interface",
        "vm1",
        "external_ids:iface-id=port-1",
        "type=internal",
    ])
    .unwrap();
    let s = r
        .wait_for(T, |s| {
            !vswitch::find_interfaces_by_iface_id(s, "port-1").is_empty()
        })
        .await
        .expect("interface with iface-id seen");
    let v = View::new(s);
    assert_eq!(v.bridge_of_port("vm1"), Some("br-o"));
    assert_eq!(v.port("vm1").unwrap().get_i64("tag"), Some(101));
    assert_eq!(
        v.interface("vm1").unwrap().get_str("type"),
        Some("internal")
    );

    // Modify: set diff (tag), map diff (external_ids replace + delete), trunks set.
    sb.vsctl(&["set", "port", "vm1", "tag=202", "trunks=1,2,3"])
        .unwrap();
    sb.vsctl(&[
        "set",
        "interface",
        "vm1",
        "external_ids:iface-id=port-2",
        "external_ids:x=y",
    ])
    .unwrap();
    sb.vsctl(&["remove", "interface", "vm1", "external_ids", "x"])
        .unwrap();
    sb.vsctl(&["remove", "bridge", "br-o", "external_ids", "owner"])
        .unwrap();
    let s = r
        .wait_for(T, |s| {
            let v = View::new(Arc::new(s.clone()));
            v.port("vm1").and_then(|p| p.get_i64("tag")) == Some(202)
                && v.interfaces_by_iface_id("port-2").len() == 1
                && v.interface("vm1")
                    .and_then(|i| i.map_str("external_ids", "x"))
                    .is_none()
                && v.bridge("br-o")
                    .and_then(|b| b.map_str("external_ids", "owner"))
                    .is_none()
        })
        .await
        .unwrap_or_else(|s| panic!("modify not seen: {:?}", s.rows("Port").collect::<Vec<_>>()));
    let p = View::new(s).port("vm1").unwrap().clone();
    assert_eq!(p.get("trunks").unwrap().as_set().len(), 3);

    sb.vsctl(&["clear", "port", "vm1", "tag"]).unwrap();
    r.wait_for(T, |s| {
        s.find_by_str("Port", "name", "vm1")
            .next()
            .is_some_and(|p| p.get("tag") == Some(&ovs::Value::empty_set()))
    })
    .await
    .expect("tag cleared");
    sb.vsctl(&["del-port", "br-o", "vm1"]).unwrap();
    r.wait_for(T, |s| {
        s.find_by_str("Port", "name", "vm1").next().is_none()
            && s.find_by_str("Interface", "name", "vm1").next().is_none()
    })
    .await
    .expect("port delete seen");
    sb.vsctl(&["del-br", "br-o"]).unwrap();
    r.wait_for(T, |s| bridge_names(s).is_empty())
        .await
        .expect("bridge delete seen");
    drop(r);
    c.close();
    drop(c);
    checker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_are_in_the_replica_when_transact_returns() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let r = vswitch::monitor(&c).await.unwrap();
    let mut txn = vswitch::TxnBuilder::new();
    txn.add_bridge(&vswitch::BridgeSpec::new("br-rw"));
    let res = txn.commit(&c).await.unwrap();
    let bridge_uuid = res[2].uuid().unwrap();
    // ovsdb-server flushes monitor updates before the transact reply, and the reader
    // applies messages in order.
    assert!(r.snapshot().row("Bridge", &bridge_uuid).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_monitor_only_matching_rows() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let mut req = MonitorRequest::new("Bridge", &["name"]);
    req.conditions = vec![ovs::Condition::eq("name", "br-yes")];
    let r = c.monitor(DB, vec![req]).await.unwrap();
    sb.vsctl(&["add-br", "br-no", "--", "add-br", "br-yes"])
        .unwrap();
    r.wait_for(T, |s| bridge_names(s) == ["br-yes"])
        .await
        .expect("only br-yes");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(bridge_names(&r.snapshot()), ["br-yes"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_last_txn_id() {
    // Only clustered databases report txn ids; keep the db file across the restart.
    let sb = common::sandbox(SandboxOptions {
        clustered: true,
        ..Default::default()
    });
    let c = common::client(&sb).await;
    let r = vswitch::monitor(&c).await.unwrap();
    let checker = watch_consistency(&r);
    sb.vsctl(&["add-br", "br-1", "--", "add-port", "br-1", "p1"])
        .unwrap();
    let s = r
        .wait_for(T, |s| bridge_names(s) == ["br-1"])
        .await
        .expect("br-1 seen");
    let txn = s.last_txn_id.expect("clustered db reports txn ids");
    assert_eq!(c.counters().monitor_full_syncs, 1);

    sb.restart_ovsdb().unwrap();
    // The client notices, reconnects with backoff and resumes the monitor (a reconnection
    // is counted when the session opens; wait for the monitor's answer too).
    let deadline = tokio::time::Instant::now() + T;
    while {
        let k = c.counters();
        k.reconnects < 1 || k.monitor_resumes_found + k.monitor_full_syncs < 2
    } {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconnect: {:?}\n{}",
            c.counters(),
            sb.ovsdb_log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let k = c.counters();
    assert_eq!(
        k.monitor_resumes_found, 1,
        "server found our last txn id {txn}: {k:?}"
    );
    assert_eq!(k.monitor_full_syncs, 1, "no full resync: {k:?}");
    let s = r.snapshot();
    assert!(!s.reset);
    assert_eq!(s.last_txn_id, Some(txn));
    assert_eq!(bridge_names(&s), ["br-1"]);

    // And it keeps following.
    sb.vsctl(&["add-br", "br-2"]).unwrap();
    let s = r
        .wait_for(T, |s| bridge_names(s) == ["br-1", "br-2"])
        .await
        .expect("br-2 after reconnect");
    assert_ne!(s.last_txn_id, Some(txn));
    c.echo().await.unwrap();
    drop(r);
    drop(c);
    tokio::time::sleep(Duration::from_millis(50)).await;
    checker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_while_down_converge_after_restart() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let r = vswitch::monitor(&c).await.unwrap();
    let mut rx = r.subscribe();
    sb.vsctl(&["add-br", "br-a", "--", "add-port", "br-a", "pa"])
        .unwrap();
    r.wait_for(T, |s| bridge_names(s) == ["br-a"])
        .await
        .expect("br-a");

    sb.stop_ovsdb().unwrap();
    // Requests while the server is down fail after the timeout instead of hanging.
    let mut cfg = common::config(&sb);
    cfg.request_timeout = Duration::from_millis(300);
    // Change the database file offline (standalone dbs allow it), then restart.
    let out = std::process::Command::new("ovsdb-tool")
        .args(["transact", sb.db_file().to_str().unwrap()])
        .arg(r#"["Open_vSwitch",{"op":"delete","table":"Bridge","where":[]},{"op":"update","table":"Open_vSwitch","where":[],"row":{"bridges":["set",[]]}}]"#)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ovsdb-tool transact: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sb.start_ovsdb().unwrap();
    sb.vsctl(&[
        "add-br", "br-b", "--", "add-port", "br-b", "pb1", "--", "add-port", "br-b", "pb2",
    ])
    .unwrap();

    let s = r
        .wait_for(T, |s| {
            bridge_names(s) == ["br-b"] && s.rows("Port").count() == 3
        })
        .await
        .unwrap_or_else(|s| panic!("not converged: {:?} {:?}", bridge_names(&s), c.counters()));
    // The counters are bumped right after the resync publishes: wait for them too.
    let deadline = tokio::time::Instant::now() + T;
    while {
        let k = c.counters();
        k.reconnects < 1 || k.monitor_full_syncs < 2
    } {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconnect and full resync counted: {:?}",
            c.counters()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.row("Port", &uuid::Uuid::nil()).is_none());
    // Every snapshot published was whole: no port of br-a is left dangling, and never a
    // bridge without its ports.
    loop {
        let s = rx.borrow_and_update().clone();
        consistent(&s).unwrap();
        if s.seq >= r.snapshot().seq {
            break;
        }
        if tokio::time::timeout(Duration::from_millis(100), rx.changed())
            .await
            .is_err()
        {
            break;
        }
    }
    assert!(s.rows("Port").all(|p| p.get_str("name") != Some("pa")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_before_the_server_then_cancel() {
    let sb = common::ovsdb();
    sb.stop_ovsdb().unwrap();
    // The client starts with no server and connects once it appears.
    let c = ovs::Client::start(common::config(&sb));
    assert!(!c.is_connected());
    let sb2 = &sb;
    let starter = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sb2.start_ovsdb().unwrap();
    };
    let (r, ()) = tokio::join!(vswitch::monitor(&c), starter);
    let r = r.expect("monitor once the server is up");
    assert!(c.is_connected());
    assert_eq!(c.counters().reconnects, 0);
    sb.vsctl(&["add-br", "br-s"]).unwrap();
    r.wait_for(T, |s| bridge_names(s) == ["br-s"])
        .await
        .expect("br-s");
    c.monitor_cancel(&r).await.unwrap();
    let seq = r.snapshot().seq;
    sb.vsctl(&["add-br", "br-t"]).unwrap();
    c.echo().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.snapshot().seq, seq, "no updates after cancel");
    // Closed clients fail fast.
    c.close();
    assert!(matches!(c.echo().await, Err(ovs::Error::Closed { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_stay_whole_under_concurrent_writers() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let r = vswitch::monitor(&c).await.unwrap();
    let checker = watch_consistency(&r);
    let writer = common::client(&sb).await;
    let mut t = vswitch::TxnBuilder::new();
    t.add_bridge(&vswitch::BridgeSpec::new("br-c"));
    t.commit(&writer).await.unwrap();
    let mut tasks = Vec::new();
    for b in 0..20 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut t = vswitch::TxnBuilder::new();
            for i in 0..10 {
                t.add_port("br-c", &vswitch::PortSpec::new(&format!("c{b}-{i}")));
            }
            t.commit(&w).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Remove them again in one go, by bridge.
    let view = View::new(
        r.wait_for(T, |s| s.rows("Port").count() == 201)
            .await
            .expect("201 ports"),
    );
    let mut t = vswitch::TxnBuilder::new();
    for p in view.ports_of_bridge("br-c") {
        if p != "br-c" {
            t.remove_port(&view, &p);
        }
    }
    t.commit(&writer).await.unwrap();
    r.wait_for(T, |s| s.rows("Port").count() == 1)
        .await
        .expect("ports gone");
    drop(r);
    c.close();
    drop(c);
    let seen = tokio::time::timeout(T, checker)
        .await
        .expect("checker ends")
        .unwrap();
    assert!(seen.unwrap() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_snapshot_never_changes() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let r = vswitch::monitor(&c).await.unwrap();
    sb.vsctl(&["add-br", "br-h", "--", "add-port", "br-h", "h1", "tag=1"])
        .unwrap();
    let old = r
        .wait_for(T, |s| s.find_by_str("Port", "name", "h1").next().is_some())
        .await
        .expect("h1");
    let old_port = old
        .find_by_str("Port", "name", "h1")
        .next()
        .unwrap()
        .clone();
    sb.vsctl(&["set", "port", "h1", "tag=2", "--", "add-port", "br-h", "h2"])
        .unwrap();
    let new = r
        .wait_for(T, |s| s.find_by_str("Port", "name", "h2").next().is_some())
        .await
        .expect("h2");
    // The update was applied copy-on-write: the old snapshot and row are untouched.
    assert_eq!(
        old.find_by_str("Port", "name", "h1")
            .next()
            .unwrap()
            .get_i64("tag"),
        Some(1)
    );
    assert_eq!(old_port.get_i64("tag"), Some(1));
    assert!(old.find_by_str("Port", "name", "h2").next().is_none());
    assert_eq!(
        new.find_by_str("Port", "name", "h1")
            .next()
            .unwrap()
            .get_i64("tag"),
        Some(2)
    );
    assert!(new.seq > old.seq);
    let b = new.find_by_str("Bridge", "name", "br-h").next().unwrap();
    assert_eq!(b.get("ports").unwrap().as_set().len(), 3);
    let ob = old.find_by_str("Bridge", "name", "br-h").next().unwrap();
    assert_eq!(ob.get("ports").unwrap().as_set().len(), 2);
}
