//! The Open_vSwitch layer against a real ovsdb-server and ovs-vswitchd (userspace datapath)
//! running in a namespace of their own.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use ovs::sandbox::{unique_name, SandboxOptions};
use ovs::vswitch::{self, BridgeSpec, PortSpec, TxnBuilder, View};

const T: Duration = Duration::from_secs(15);

/// A named network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = unique_name("ovst");
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| panic!("FAIL: cannot run `ip` (apt-get install iproute2): {e}"));
        assert!(
            out.status.success(),
            "FAIL: `ip netns add {name}` needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_is_one_transaction_then_nothing() {
    let ns = Netns::new();
    let sb = common::sandbox(SandboxOptions {
        vswitchd: true,
        netns: Some(ns.0.clone()),
        ..Default::default()
    });
    let c = common::client(&sb).await;
    let r = vswitch::monitor(&c).await.unwrap();

    let br = BridgeSpec {
        name: "br-vlan".into(),
        datapath_type: Some("netdev".into()),
        fail_mode: Some("standalone".into()),
        external_ids: map(&[("crosspod", "owned")]),
    };
    let tap = PortSpec {
        name: "tap1".into(),
        iface_type: Some("internal".into()),
        tag: Some(101),
        iface_external_ids: map(&[("iface-id", "port-1")]),
        ..Default::default()
    };
    let uplink = PortSpec {
        name: "up1".into(),
        iface_type: Some("internal".into()),
        trunks: vec![2001, 2002],
        external_ids: map(&[("crosspod", "uplink")]),
        ..Default::default()
    };
    let specs = [&tap, &uplink];

    let view = View::new(r.snapshot());
    let mut txn = TxnBuilder::new();
    txn.ensure_bridge(&view, &br);
    for p in specs {
        txn.ensure_port(&view, "br-vlan", p);
    }
    let before = c.counters();
    txn.commit(&c).await.unwrap();
    let after = c.counters();
    assert_eq!(
        after.transactions - before.transactions,
        1,
        "one round trip"
    );
    assert_eq!(after.write_transactions - before.write_transactions, 1);

    // ovs-vswitchd picks the ports up (ofport assigned) and the tap exists in the namespace.
    let s = r
        .wait_for(T, |s| {
            let v = View::new(std::sync::Arc::new(s.clone()));
            ["br-vlan", "tap1", "up1"].iter().all(|n| {
                v.interface(n)
                    .and_then(|i| i.get_i64("ofport"))
                    .is_some_and(|o| o > 0)
            })
        })
        .await
        .unwrap_or_else(|s| {
            panic!(
                "vswitchd did not attach the ports: {:?}",
                s.rows("Interface").collect::<Vec<_>>()
            )
        });
    let out = Command::new("ip")
        .args(["-n", &ns.0, "link", "show", "tap1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tap1 not created by vswitchd in {}: {}",
        ns.0,
        String::from_utf8_lossy(&out.stderr)
    );
    let ifs = vswitch::find_interfaces_by_iface_id(&s, "port-1");
    assert_eq!(ifs.len(), 1);
    assert_eq!(ifs[0].get_str("name"), Some("tap1"));
    assert_eq!(
        sb.vsctl(&["get", "port", "up1", "trunks"]).unwrap().trim(),
        "[2001, 2002]"
    );
    assert_eq!(
        sb.vsctl(&["get", "bridge", "br-vlan", "datapath_type"])
            .unwrap()
            .trim(),
        "netdev"
    );

    // Nothing changed: nothing to send, no round trip at all.
    let view = View::new(r.snapshot());
    let mut txn = TxnBuilder::new();
    txn.ensure_bridge(&view, &br);
    for p in specs {
        txn.ensure_port(&view, "br-vlan", p);
    }
    assert!(txn.is_empty(), "unexpected ops: {:?}", txn.ops());
    let before = c.counters();
    txn.commit(&c).await.unwrap();
    assert_eq!(
        c.counters(),
        before,
        "zero OVSDB writes when nothing changed"
    );

    // Keys owned by others survive; a retag is one update.
    sb.vsctl(&[
        "set",
        "interface",
        "tap1",
        "external_ids:attached-mac=aa:bb",
    ])
    .unwrap();
    r.wait_for(T, |s| {
        s.find_by_str("Interface", "name", "tap1")
            .next()
            .and_then(|i| i.map_str("external_ids", "attached-mac"))
            .is_some()
    })
    .await
    .unwrap();
    let mut tap2 = tap.clone();
    tap2.tag = Some(102);
    let view = View::new(r.snapshot());
    let mut txn = TxnBuilder::new();
    txn.ensure_port(&view, "br-vlan", &tap2);
    assert_eq!(txn.ops().len(), 1, "{:?}", txn.ops());
    txn.commit(&c).await.unwrap();
    assert_eq!(
        sb.vsctl(&["get", "port", "tap1", "tag"]).unwrap().trim(),
        "102"
    );
    assert_eq!(
        sb.vsctl(&["get", "interface", "tap1", "external_ids:attached-mac"])
            .unwrap()
            .trim(),
        "\"aa:bb\""
    );

    // Remove the uplink.
    let view = View::new(r.snapshot());
    let mut txn = TxnBuilder::new();
    txn.remove_port(&view, "up1")
        .remove_port(&view, "not-there");
    assert_eq!(txn.ops().len(), 1);
    txn.commit(&c).await.unwrap();
    let ports = sb.vsctl(&["list-ports", "br-vlan"]).unwrap();
    assert_eq!(ports.trim(), "tap1");
    r.wait_for(T, |s| {
        s.find_by_str("Interface", "name", "up1").next().is_none()
    })
    .await
    .expect("up1 gone from the replica");

    // Remove the bridge: ports and interfaces go with it.
    let view = View::new(r.snapshot());
    let mut txn = TxnBuilder::new();
    txn.remove_bridge(&view, "br-vlan")
        .remove_bridge(&view, "not-there");
    assert_eq!(txn.ops().len(), 1);
    txn.commit(&c).await.unwrap();
    r.wait_for(T, |s| {
        s.rows("Bridge").count() == 0 && s.rows("Interface").count() == 0
    })
    .await
    .expect("bridge and its interfaces gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_builder_batches_ports_and_retags() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let mut txn = TxnBuilder::new();
    txn.add_bridge(&BridgeSpec::new("br0"));
    for i in 0..50u16 {
        let mut p = PortSpec::new(&format!("p{i}"));
        p.tag = Some(100 + i);
        p.iface_external_ids = map(&[("iface-id", &format!("id-{i}"))]);
        txn.add_port("br0", &p);
    }
    txn.commit(&c).await.unwrap();
    let mut txn = TxnBuilder::new();
    for i in 0..50u16 {
        txn.set_tag(&format!("p{i}"), Some(1000 + i));
    }
    txn.set_trunks("p0", &[5, 6]);
    txn.set_tag("p1", None);
    txn.commit(&c).await.unwrap();
    let k = c.counters();
    assert_eq!(k.transactions, 2);
    // bridge: 4 rows; 50 ports: interface + port each, and one merged `ports` mutate.
    assert_eq!(k.rows_changed, 4 + 50 * 2 + 1 + 52, "{k:?}");
    assert_eq!(k.operations, 4 + 50 * 2 + 1 + 52, "{k:?}");
    assert_eq!(
        sb.vsctl(&["list-ports", "br0"]).unwrap().lines().count(),
        50
    );
    assert_eq!(
        sb.vsctl(&["get", "port", "p49", "tag"]).unwrap().trim(),
        "1049"
    );
    assert_eq!(
        sb.vsctl(&["get", "port", "p1", "tag"]).unwrap().trim(),
        "[]"
    );
    assert_eq!(
        sb.vsctl(&["get", "port", "p0", "trunks"]).unwrap().trim(),
        "[5, 6]"
    );
    assert_eq!(
        sb.vsctl(&["get", "interface", "p7", "external_ids:iface-id"])
            .unwrap()
            .trim(),
        "id-7"
    );
}

/// Ports of two bridges added interleaved in one transaction each join their own bridge's
/// single `ports` mutate, and several ports removed from one bridge in one transaction all go:
/// the builder collects a mutate's ports and puts them into its set when the transaction is
/// read or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blind_builder_merges_each_bridges_ports() {
    let sb = common::ovsdb();
    let c = common::client(&sb).await;
    let r = vswitch::monitor(&c).await.unwrap();
    let mut txn = TxnBuilder::new();
    txn.add_bridge(&BridgeSpec::new("br0"));
    txn.add_bridge(&BridgeSpec::new("br1"));
    for i in 0..20 {
        let br = if i % 3 == 0 { "br1" } else { "br0" };
        txn.add_port(br, &PortSpec::new(&format!("{br}-p{i}")));
    }
    // Two bridges' inserts (4 rows and the Open_vSwitch mutate each), 20 ports (2 rows each)
    // and one `ports` mutate per bridge, each holding all of its ports.
    let ops = txn.ops();
    assert_eq!(ops.len(), 2 * 4 + 20 * 2 + 2, "{ops:?}");
    txn.commit(&c).await.unwrap();
    let ports = |br: &str| -> Vec<String> {
        let mut v: Vec<String> = sb
            .vsctl(&["list-ports", br])
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let want = |br: &str, keep: &dyn Fn(usize) -> bool| -> Vec<String> {
        let mut v: Vec<String> = (0..20)
            .filter(|i| keep(*i))
            .map(|i| format!("{br}-p{i}"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ports("br0"), want("br0", &|i| i % 3 != 0));
    assert_eq!(ports("br1"), want("br1", &|i| i % 3 == 0));

    r.wait_for(T, |s| {
        View::new(std::sync::Arc::new(s.clone()))
            .port("br0-p19")
            .is_some()
    })
    .await
    .expect("replica sees the ports");
    let view = View::new(r.snapshot());
    let mut txn = TxnBuilder::new();
    for i in [1, 2, 4, 5] {
        txn.remove_port(&view, &format!("br0-p{i}"));
    }
    txn.remove_port(&view, "br1-p3");
    assert_eq!(txn.ops().len(), 2, "one delete mutate per bridge");
    txn.commit(&c).await.unwrap();
    assert_eq!(
        ports("br0"),
        want("br0", &|i| i % 3 != 0 && ![1, 2, 4, 5].contains(&i))
    );
    assert_eq!(ports("br1"), want("br1", &|i| i % 3 == 0 && i != 3));
}
