//! The agent's Linux side on real namespaces: router instances are created with their legs,
//! addresses, routes and NAT; a second pass changes nothing; legs and routers that go away are
//! removed; nothing outside the agent's prefix is touched. Needs root.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use agent::intent::{LegIntent, NodeIntent, RouterIntent};
use agent::linux_backend::NetnsBackend;
use agent::reconciler::LinuxBackend;
use plumbing::{netns, Handle, Netns};
use wire::LegKind;

static N: AtomicU32 = AtomicU32::new(0);

/// Deletes every namespace starting with its prefix, even when the test fails.
struct Lab {
    prefix: String,
    node: String,
}

impl Lab {
    fn new() -> Lab {
        assert!(
            nix_is_root(),
            "this test needs root (network namespaces); run it as root, as scripts/test.sh does"
        );
        let prefix = format!(
            "cpa{}x{}-",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let node = format!("{prefix}node");
        netns::create(&node).expect("create node namespace");
        Lab { prefix, node }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(all) = netns::list() {
            for n in all.into_iter().filter(|n| n.starts_with(&self.prefix)) {
                let _ = netns::delete(&n);
            }
        }
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn leg(kind: LegKind, ns_if: &str, node_if: &str, addr: &str) -> LegIntent {
    LegIntent {
        kind,
        ns_ifname: ns_if.into(),
        node_ifname: node_if.into(),
        bridge: "br-vlan".into(),
        tag: 101,
        mac: "fa:16:3e:12:34:56".into(),
        addrs: vec![addr.parse().unwrap()],
        mtu: None,
    }
}

fn router(id: &str, tag: &str) -> RouterIntent {
    let mut gw = leg(
        LegKind::Gateway,
        &format!("qg-{tag}"),
        &format!("vg-{tag}"),
        "163.3.124.10/24",
    );
    gw.mac = "fa:16:3e:00:00:0a".into();
    gw.addrs.push("163.3.124.20/32".parse().unwrap());
    RouterIntent {
        router_id: id.into(),
        legs: vec![
            leg(
                LegKind::Internal,
                &format!("qr-{tag}"),
                &format!("vr-{tag}"),
                "10.0.2.1/24",
            ),
            leg(
                LegKind::Bridge,
                &format!("qb-{tag}"),
                &format!("vb-{tag}"),
                "100.0.0.3/24",
            ),
            gw,
        ],
        routes: BTreeMap::from([
            ("10.0.1.0/24".parse().unwrap(), "100.0.0.2".parse().unwrap()),
            ("0.0.0.0/0".parse().unwrap(), "163.3.124.1".parse().unwrap()),
        ]),
        nat: wire::Nat {
            snat: vec![wire::SnatRule {
                sources: vec![
                    "10.0.1.0/24".parse().unwrap(),
                    "10.0.2.0/24".parse().unwrap(),
                ],
                out_ifname: format!("qg-{tag}"),
                to: "163.3.124.10".parse().unwrap(),
            }],
            floating: vec![wire::FloatingRule {
                floating_ip: "163.3.124.20".parse().unwrap(),
                fixed_ip: "10.0.1.11".parse().unwrap(),
                out_ifname: format!("qg-{tag}"),
                floatingip_id: "f1".into(),
                port_id: "p1".into(),
            }],
        },
        probe_targets: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_instances_converge_and_a_second_pass_changes_nothing() {
    let lab = Lab::new();
    let tag = format!(
        "{}",
        N.fetch_add(1, Ordering::SeqCst) + std::process::id() * 100
    );
    let tag = &tag[tag.len().saturating_sub(6)..];
    let backend = NetnsBackend::new(&lab.node, &lab.prefix);
    let ns_name = format!("{}qrouter-r1", lab.prefix);
    let mut intent = NodeIntent::default();
    intent.routers.insert(ns_name.clone(), router("r1", tag));

    // A namespace outside the prefix and a foreign link in the node namespace: never touched.
    let foreign_ns = format!("{}other", lab.prefix.trim_end_matches('-'));
    netns::create(&foreign_ns).unwrap();
    let _foreign_guard = ForeignNs(foreign_ns.clone());

    let first = backend.sync_routers(&intent).await.unwrap();
    assert_eq!(first.routers[&ns_name], None, "router not ready: {first:?}");
    assert!(
        first.changes > 5,
        "first pass must create things: {first:?}"
    );

    let ns = Netns::named(ns_name.clone());
    let mut h = Handle::new(&ns).unwrap();
    let qg = format!("qg-{tag}");
    let mut addrs = h.link_addresses(&qg).unwrap();
    addrs.retain(|a| a.addr().is_ipv4());
    assert_eq!(
        addrs,
        vec![
            "163.3.124.10/24".parse().unwrap(),
            "163.3.124.20/32".parse().unwrap()
        ]
    );
    let link = h.link(&qg).unwrap().expect("gateway leg exists");
    assert_eq!(
        plumbing::link::format_mac(&link.mac.unwrap()),
        "fa:16:3e:00:00:0a"
    );
    let routes = h.owned_routes().unwrap();
    let dsts: Vec<String> = routes.iter().map(|r| r.dst.to_string()).collect();
    assert!(dsts.contains(&"10.0.1.0/24".to_string()), "{dsts:?}");
    assert!(dsts.contains(&"0.0.0.0/0".to_string()), "{dsts:?}");
    assert_eq!(
        plumbing::sysctl::get(&ns, "net.ipv4.ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    let nat = plumbing::nat::current(&ns)
        .unwrap()
        .expect("NAT table present");
    let rules = serde_json::to_string(&nat.1).unwrap();
    assert!(rules.contains("163.3.124.20"), "{rules}");
    let mut node = Handle::new(&Netns::named(lab.node.clone())).unwrap();
    assert!(
        node.link(&format!("vb-{tag}")).unwrap().is_some(),
        "node end of the bridge leg"
    );

    let second = backend.sync_routers(&intent).await.unwrap();
    assert_eq!(
        second.changes, 0,
        "second pass must change nothing: {second:?}"
    );

    // A leg removed: its veth (both ends) goes, the rest stays.
    let mut smaller = intent.clone();
    let r = smaller.routers.get_mut(&ns_name).unwrap();
    r.legs.retain(|l| l.kind != LegKind::Internal);
    let third = backend.sync_routers(&smaller).await.unwrap();
    assert!(third.changes >= 1);
    assert!(h.link(&format!("qr-{tag}")).unwrap().is_none());
    assert!(
        node.link(&format!("vr-{tag}")).unwrap().is_none(),
        "peer gone with the leg"
    );
    assert!(h.link(&qg).unwrap().is_some());

    // The router removed: its namespace goes; the foreign namespace stays.
    drop(h);
    let gone = backend.sync_routers(&NodeIntent::default()).await.unwrap();
    assert!(gone.changes >= 1);
    assert!(!netns::exists(&ns_name));
    assert!(netns::exists(&foreign_ns));
    assert!(node.link(&format!("vb-{tag}")).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_router_fails_alone_and_the_others_are_applied() {
    let lab = Lab::new();
    let backend = NetnsBackend::new(&lab.node, &lab.prefix);
    let good = format!("{}qrouter-good", lab.prefix);
    let bad = format!("{}qrouter-bad", lab.prefix);
    let mut intent = NodeIntent::default();
    let t = format!("{}", std::process::id() % 100000);
    intent
        .routers
        .insert(good.clone(), router("good", &format!("a{t}")));
    let mut b = router("bad", &format!("b{t}"));
    b.legs[0].ns_ifname = "a-name-longer-than-15".into();
    intent.routers.insert(bad.clone(), b);
    let out = backend.sync_routers(&intent).await.unwrap();
    assert_eq!(out.routers[&good], None);
    let err = out.routers[&bad]
        .clone()
        .expect("bad router reports an error");
    assert!(err.contains("a-name-longer-than-15"), "{err}");
}

struct ForeignNs(String);
impl Drop for ForeignNs {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}
