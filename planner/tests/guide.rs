//! The guide's scenario: two pods, local networks net1 (RegionOne, vm1) and net2 (RegionTwo,
//! vm2), ext-net on RegionTwo, one router with both interfaces and the gateway, and a floating
//! IP on vm1 (which lives in the pod without the gateway).

mod common;

use std::collections::BTreeSet;

use common::*;
use planner::*;
use wire::{LegKind, ProbeKind};

#[test]
fn guide_plan_has_exact_legs_tags_routes_and_nat() {
    let s = guide();
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    let plans = plan_all(&s);
    assert_eq!(
        plans.keys().cloned().collect::<Vec<_>>(),
        vec!["node1", "node2"]
    );
    let n1 = &plans["node1"];
    let n2 = &plans["node2"];

    // VM ports: pod-local tags on br-vlan.
    assert_eq!(n1.ports["vm1"].bridge, "br-vlan");
    assert_eq!(n1.ports["vm1"].tag, Some(101));
    assert_eq!(n2.ports["vm2"].tag, Some(102));
    assert_eq!(n1.ports.len(), 1);
    assert_eq!(n2.ports.len(), 1);

    // Uplinks trunk only the bridge VLAN (and the external VLAN on br-ext), never 101/102.
    assert_eq!(n1.bridges["br-vlan"].trunks, BTreeSet::from([2001]));
    assert!(n1.bridges["br-vlan"].uplink);
    assert_eq!(n2.bridges["br-vlan"].trunks, BTreeSet::from([2001]));
    assert_eq!(n2.bridges["br-ext"].trunks, BTreeSet::from([3001]));
    assert_eq!(n2.bridges["br-ext"].physnet, "extern");

    // RegionOne instance.
    let r1 = &n1.routers["router"];
    assert_eq!(r1.namespace, "qrouter-router");
    let kinds: Vec<_> = r1
        .legs
        .iter()
        .map(|l| (l.kind, l.bridge.as_str(), l.tag, l.address))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (LegKind::Internal, "br-vlan", Some(101), net("10.0.1.1/24")),
            (LegKind::Bridge, "br-vlan", Some(2001), net("100.0.0.2/24")),
        ]
    );
    assert_eq!(r1.legs[0].ns_ifname, "qr-router-net1");
    assert_eq!(r1.legs[0].ovs_ifname, "vr-router-net1");
    assert_eq!(r1.legs[1].ns_ifname, "qb-router");
    for l in &r1.legs {
        assert!(l.ns_ifname.len() <= 15 && l.ovs_ifname.len() <= 15);
    }
    let routes: Vec<_> = r1
        .routes
        .iter()
        .map(|r| (r.destination, r.nexthop))
        .collect();
    assert_eq!(
        routes,
        vec![
            (net("0.0.0.0/0"), ip("100.0.0.3")),
            (net("10.0.2.0/24"), ip("100.0.0.3")),
        ]
    );
    assert!(r1.nat.snat.is_empty() && r1.nat.floating.is_empty());
    assert_eq!(r1.probe_targets.len(), 1);
    assert_eq!(r1.probe_targets[0].address, ip("100.0.0.3"));
    assert_eq!(r1.probe_targets[0].kind, ProbeKind::BridgeInstance);

    // RegionTwo instance: gateway, SNAT, DNAT for vm1's floating IP.
    let r2 = &n2.routers["router"];
    let kinds: Vec<_> = r2
        .legs
        .iter()
        .map(|l| (l.kind, l.bridge.as_str(), l.tag, l.address))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (LegKind::Internal, "br-vlan", Some(102), net("10.0.2.1/24")),
            (LegKind::Bridge, "br-vlan", Some(2001), net("100.0.0.3/24")),
            (
                LegKind::Gateway,
                "br-ext",
                Some(3001),
                net("163.3.124.10/24")
            ),
        ]
    );
    let routes: Vec<_> = r2
        .routes
        .iter()
        .map(|r| (r.destination, r.nexthop))
        .collect();
    assert_eq!(
        routes,
        vec![
            (net("0.0.0.0/0"), ip("163.3.124.1")),
            (net("10.0.1.0/24"), ip("100.0.0.2")),
        ]
    );
    assert_eq!(r2.nat.snat.len(), 1);
    assert_eq!(
        r2.nat.snat[0].sources,
        vec![net("10.0.1.0/24"), net("10.0.2.0/24")]
    );
    assert_eq!(r2.nat.snat[0].out_ifname, "qg-router");
    assert_eq!(r2.nat.snat[0].to, ip("163.3.124.10"));
    assert_eq!(r2.nat.floating.len(), 1);
    let f = &r2.nat.floating[0];
    assert_eq!(
        (
            f.floating_ip,
            f.fixed_ip,
            f.out_ifname.as_str(),
            f.port_id.as_str()
        ),
        (ip("163.3.124.20"), ip("10.0.1.11"), "qg-router", "vm1")
    );
    let probes: Vec<_> = r2
        .probe_targets
        .iter()
        .map(|p| (p.address, p.kind))
        .collect();
    assert_eq!(
        probes,
        vec![
            (ip("100.0.0.2"), ProbeKind::BridgeInstance),
            (ip("163.3.124.1"), ProbeKind::ExternalGateway),
        ]
    );
    // MACs differ between the two instances' bridge legs.
    assert_ne!(r1.legs[1].mac, r2.legs[1].mac);
    assert_guide_shape(&s, true);
}

#[test]
fn plans_are_deterministic_and_incremental_matches_full() {
    let s = guide();
    let a = plan_all(&s);
    let b = plan_all(&s);
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    let one = plan_nodes(&s, ["node2", "ghost"]);
    assert_eq!(one.len(), 1);
    assert_eq!(one["node2"], a["node2"]);
    let p = Planner::new(&s);
    assert_eq!(p.plan_node("node1").unwrap(), a["node1"]);
}

#[test]
fn central_region_without_nodes_gets_nothing_and_validates() {
    let s = guide();
    let plans = plan_all(&s);
    assert!(plans.values().all(|p| p.pod != "CentralRegion"));
    assert!(validate(&s).is_empty());
    assert!(required_allocations(&s).is_empty());
}
