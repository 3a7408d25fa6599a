//! The port binding fast path with real OVS (ovsdb-server and ovs-vswitchd in a node
//! namespace, VMs as namespaces): a VM whose port is in the desired state is tagged by the fast
//! path and the full pass after it writes nothing; an unknown iface-id is parked on 4095 by the
//! pass as before; a newer revision the loop has received is always the one the fast path
//! tags with; a port with port security bound by the fast path has its filter before its tag.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::controller_client::ControllerClient;
use agent::daemon::{Agent, Docs, LoopTiming};
use agent::firewall::{Firewall, COOKIE_BASE, COOKIE_MASK};
use agent::intent::NodeContext;
use agent::linux_backend::NetnsBackend;
use agent::metrics::AgentMetrics;
use agent::ovsdb_backend::OvsdbBackend;
use agent::reconciler::OvsBackend;
use agent::sd_notify::Notifier;
use common::Node;
use ovs::openflow::OfConn;
use serde_json::{json, Value};
use tokio::sync::watch;
use wire::NodeDesiredState;

fn state(revision: u64, ports: &[(&str, u16)]) -> NodeDesiredState {
    let mut p = serde_json::Map::new();
    for (i, (id, tag)) in ports.iter().enumerate() {
        p.insert(
            id.to_string(),
            json!({"bridge": "br-vlan", "tag": tag, "network_id": format!("net{tag}"),
                   "mac": format!("fa:16:3e:00:00:{:02x}", i + 1), "fixed_ips": []}),
        );
    }
    serde_json::from_value(json!({
        "node": "n1", "pod": "RegionOne", "revision": revision,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": false, "trunks": []}},
        "ports": Value::Object(p), "routers": {}
    }))
    .unwrap()
}

async fn agent(node: &Node) -> Arc<Agent<OvsdbBackend, NetnsBackend>> {
    agent_with(node, None).await
}

async fn agent_with(
    node: &Node,
    firewall: Option<Firewall>,
) -> Arc<Agent<OvsdbBackend, NetnsBackend>> {
    Arc::new(Agent {
        node: "n1".into(),
        pod: "RegionOne".into(),
        ctx: NodeContext {
            datapath_type: "netdev".into(),
            uplinks: Default::default(),
            netns_prefix: node.prefix.clone(),
            local_ip: None,
            tunnel_bridge: "br-tun".into(),
        },
        ovs: OvsdbBackend::connect(&node.sb().db_arg()).await.unwrap(),
        linux: NetnsBackend::new(&node.ns, &node.prefix),
        client: None::<ControllerClient>,
        notifier: Notifier::from_env(),
        timing: LoopTiming::default(),
        metrics: Arc::new(AgentMetrics::new()),
        firewall,
        report_file: None,
        fence_held: Default::default(),
    })
}

/// `crosspod_agent_reconcile_passes_total{outcome="ok"}` from the rendered metrics.
fn passes_ok(m: &AgentMetrics) -> u64 {
    m.render()
        .lines()
        .find_map(|l| l.strip_prefix(r#"crosspod_agent_reconcile_passes_total{outcome="ok"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn tag_of(node: &Node, port: &str) -> String {
    node.vsctl(&["get", "port", port, "tag"])
}

fn plug_no_wait(node: &Node, tap: &str, iface_id: &str) {
    node.vsctl(&[
        "--no-wait",
        "add-port",
        "br-vlan",
        tap,
        "--",
        "set",
        "interface",
        tap,
        &format!("external_ids:iface-id={iface_id}"),
    ]);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_known_port_is_tagged_by_the_fast_path_and_the_pass_after_it_writes_nothing() {
    let node = Node::start();
    rt().block_on(async {
        let a = agent(&node).await;
        let (tx, rx) = watch::channel(Some(Arc::new(state(3, &[("port-vm1", 101)]))));
        let a2 = a.clone();
        let task = tokio::spawn(async move { a2.run(rx, std::future::pending()).await });
        // Settled: the bridge made and a pass that found everything in place.
        until("the first pass", Duration::from_secs(20), || {
            (passes_ok(&a.metrics) >= 1).then_some(())
        })
        .await;
        node.vm(
            "fbvm1",
            "tapfb1",
            "10.0.1.11/24",
            "10.0.1.1",
            "fa:16:3e:00:00:01",
        );
        let writes = a.ovs.counters().write_transactions;
        let passes = passes_ok(&a.metrics);

        let t0 = Instant::now();
        plug_no_wait(&node, "tapfb1", "port-vm1");
        let seen = until("the fast path's tag", Duration::from_secs(10), || {
            (a.metrics.fast_binds.get() == 1).then(Instant::now)
        })
        .await;
        assert_eq!(tag_of(&node, "tapfb1"), "101");
        // The full pass still runs after the debounce, and finds nothing to write.
        until("the pass after the plug", Duration::from_secs(10), || {
            (passes_ok(&a.metrics) > passes).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            a.ovs.counters().write_transactions,
            writes + 1,
            "only the fast path's transaction may be written"
        );
        assert_eq!(a.metrics.fast_binds.get(), 1);
        assert_eq!(tag_of(&node, "tapfb1"), "101");
        eprintln!(
            "plug to fast-path tag (including ovs-vsctl's own time): {:?}",
            seen - t0
        );

        // An unknown iface-id: not the fast path's, parked on the dead VLAN by the pass.
        plug_no_wait(&node, "tapfb2", "port-unknown");
        until(
            "the unknown interface parked",
            Duration::from_secs(10),
            || (tag_of(&node, "tapfb2") == "4095").then_some(()),
        )
        .await;
        assert_eq!(a.metrics.fast_binds.get(), 1, "the fast path never parks");
        task.abort();
        drop(tx);
    });
}

#[test]
fn the_fast_path_tags_with_the_newest_revision_received_not_the_one_in_force() {
    let node = Node::start();
    rt().block_on(async {
        let a = agent(&node).await;
        let (tx, mut rx) = watch::channel(Some(Arc::new(state(3, &[("port-vm2", 102)]))));
        let mut docs = Docs::default();
        // Revision 3 in force, applied by a full pass (bridge made).
        assert!(a.take_latest(&mut rx, &mut docs));
        let st3 = state(3, &[("port-vm2", 102)]);
        let (pass, _) = a.apply(&st3, false, &mut Vec::new()).await;
        assert!(pass.complete(), "{pass:?}");
        // Revision 4 moves the port to VLAN 202; it reaches the agent before its loop has
        // looked at it, and the VM is plugged in between.
        tx.send(Some(Arc::new(state(4, &[("port-vm2", 202)]))))
            .unwrap();
        node.vm(
            "fbvm2",
            "tapfb3",
            "10.0.2.11/24",
            "10.0.2.1",
            "fa:16:3e:00:00:02",
        );
        plug_no_wait(&node, "tapfb3", "port-vm2");
        let obs = &a.ovs;
        let mut seen = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen {
            assert!(Instant::now() < deadline, "the replica never showed tapfb3");
            seen = obs.observe().await.unwrap().ports.contains_key("tapfb3");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let writes = a.ovs.counters().write_transactions;
        let (new_doc, tagged) = a.bind_now(&mut rx, &mut docs, Instant::now()).await;
        assert!(new_doc, "revision 4 must be taken before binding");
        assert_eq!(tagged, 1);
        assert_eq!(tag_of(&node, "tapfb3"), "202");
        assert_eq!(a.ovs.counters().write_transactions, writes + 1);
        // And the pass for revision 4 has nothing left to write for the port.
        let (pass, _) = a
            .apply(&state(4, &[("port-vm2", 202)]), false, &mut Vec::new())
            .await;
        assert_eq!(pass.ovs_changes, 0, "{pass:?}");
        drop(tx);
    });
}

/// `state` with port security on every port, all in one group allowing egress and ingress
/// from its members.
fn secured_state(revision: u64, ports: &[(&str, u16, &str)]) -> NodeDesiredState {
    let mut p = serde_json::Map::new();
    let mut members = Vec::new();
    for (i, (id, tag, ip)) in ports.iter().enumerate() {
        let mac = format!("fa:16:3e:00:01:{:02x}", i + 1);
        members.push(format!("{ip}/32"));
        p.insert(
            id.to_string(),
            json!({"bridge": "br-vlan", "tag": tag, "network_id": format!("net{tag}"),
                   "mac": mac, "fixed_ips": [ip],
                   "security": {"allowed": [{"mac": mac, "ip": format!("{ip}/32")}],
                                "security_groups": ["sg"], "ct_zone": 1 + i}}),
        );
    }
    serde_json::from_value(json!({
        "node": "n1", "pod": "RegionOne", "revision": revision,
        "bridges": {"br-vlan": {"physnet": "bridge", "uplink": false, "trunks": []}},
        "ports": Value::Object(p), "routers": {},
        "security_groups": {"sg": {"rules": [
            {"id": "out", "direction": "egress", "ethertype": "IPv4"},
            {"id": "in", "direction": "ingress", "ethertype": "IPv4", "remote_group_id": "sg"}
        ], "members": members}}
    }))
    .unwrap()
}

#[test]
fn a_secured_port_has_its_flows_when_the_fast_path_tags_it_and_the_pass_after_writes_nothing() {
    let node = Node::start();
    let mgmt = node.sb().dir().join("br-vlan.mgmt");
    rt().block_on(async {
        let st = secured_state(
            5,
            &[("port-s1", 111, "10.0.5.11"), ("port-s2", 111, "10.0.5.12")],
        );
        let a = agent_with(&node, Some(Firewall::new(node.sb().dir()))).await;
        let (tx, rx) = watch::channel(Some(Arc::new(st.clone())));
        let a2 = a.clone();
        let task = tokio::spawn(async move { a2.run(rx, std::future::pending()).await });
        until("the first pass", Duration::from_secs(20), || {
            (passes_ok(&a.metrics) >= 1).then_some(())
        })
        .await;
        // One secured port plugged and filtered by a full pass first: the bridge holds flows.
        node.vm(
            "fbsvm1",
            "tapfs1",
            "10.0.5.11/24",
            "10.0.5.1",
            "fa:16:3e:00:01:01",
        );
        plug_no_wait(&node, "tapfs1", "port-s1");
        until(
            "the first secured port tagged",
            Duration::from_secs(10),
            || (tag_of(&node, "tapfs1") == "111").then_some(()),
        )
        .await;
        let passes = passes_ok(&a.metrics);
        until(
            "the pass after the first plug",
            Duration::from_secs(10),
            || (passes_ok(&a.metrics) > passes).then_some(()),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        node.vm(
            "fbsvm2",
            "tapfs2",
            "10.0.5.12/24",
            "10.0.5.1",
            "fa:16:3e:00:01:02",
        );
        let writes = a.ovs.counters().write_transactions;
        let (binds, added) = (a.metrics.fast_binds.get(), a.metrics.flows_added.get());
        let passes = passes_ok(&a.metrics);

        let t0 = Instant::now();
        plug_no_wait(&node, "tapfs2", "port-s2");
        // Watch the agent's own replica (no process per poll) for the tag; the moment it
        // shows, the bridge must already hold every flow the state wants with that tag.
        let deadline = Instant::now() + Duration::from_secs(10);
        let observed = loop {
            let o = a.ovs.observe().await.unwrap();
            if o.ports.get("tapfs2").is_some_and(|p| p.tag == Some(111)) {
                break o;
            }
            assert!(
                Instant::now() < deadline,
                "the secured port was never tagged"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let tagged = t0.elapsed();
        let have = OfConn::connect(&mgmt, Duration::from_secs(5))
            .unwrap()
            .flow_cookies(COOKIE_BASE, COOKIE_MASK)
            .unwrap();
        let (want, waiting) = agent::firewall::desired_flows(&st, &observed);
        assert!(waiting.is_empty(), "{waiting:?}");
        let want = want["br-vlan"].with_cookies();
        let ofport = observed.ports["tapfs2"].ofport.unwrap();
        assert!(
            want.values()
                .any(|f| f.contains(&format!("in_port={ofport}"))),
            "the state's flows filter the new port: {want:#?}"
        );
        let missing: Vec<&String> = want
            .iter()
            .filter(|(c, _)| !have.contains(c))
            .map(|(_, f)| f)
            .collect();
        assert!(
            missing.is_empty(),
            "tagged before its filter, missing: {missing:#?}"
        );
        eprintln!(
            "secured plug to tag with its filter (including ovs-vsctl's own time): {tagged:?}"
        );
        assert_eq!(
            a.metrics.fast_binds.get(),
            binds + 1,
            "bound by the fast path"
        );
        assert!(
            a.metrics.flows_added.get() > added,
            "the fast path wrote the filter"
        );
        // What the fast path wrote; the pass after it must add and delete nothing.
        let (added, deleted) = (a.metrics.flows_added.get(), a.metrics.flows_deleted.get());

        // The full pass after it writes no row and no flow.
        until("the pass after the plug", Duration::from_secs(10), || {
            (passes_ok(&a.metrics) > passes).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            a.ovs.counters().write_transactions,
            writes + 1,
            "only the fast path's transaction may be written"
        );
        assert_eq!(
            a.metrics.flows_added.get(),
            added,
            "the pass after wrote flows"
        );
        assert_eq!(
            a.metrics.flows_deleted.get(),
            deleted,
            "the pass after deleted flows"
        );
        task.abort();
        drop(tx);
    });
}
