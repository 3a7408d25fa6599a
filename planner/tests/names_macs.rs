//! Legs' MACs are their backing ports' MACs (so the store's MAC uniqueness covers them), and
//! interface names that would collide on a node get distinct, stable names.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use planner::*;
use wire::{LegKind, NodeDesiredState, RouterLeg};

/// The MAC of the port that backs `leg` of `router` on a node of `pod`, from the snapshot.
fn backing_mac(s: &Snapshot, router: &str, pod: &str, leg: &RouterLeg) -> String {
    let a = &s.allocations;
    match leg.kind {
        LegKind::Bridge => {
            let p = a.bridge_port(router, pod).expect("bridge IP port");
            assert_eq!(p.ip, leg.address.addr());
            p.mac.clone()
        }
        LegKind::Gateway => {
            let p = s
                .ports
                .iter()
                .find(|p| {
                    p.device_owner == OWNER_ROUTER_GATEWAY
                        && p.device_id == router
                        && p.fixed_ips
                            .iter()
                            .any(|f| f.ip_address == leg.address.addr())
                })
                .expect("gateway port");
            p.mac.clone()
        }
        LegKind::Internal => {
            let sub = leg.subnet_id.as_deref().unwrap();
            match s.router_interfaces.iter().find(|i| {
                i.router_id == router && i.subnet_id == sub && i.ip_address == leg.address.addr()
            }) {
                Some(i) => i.mac.clone(),
                None => {
                    let p = a.leg_port(router, pod, sub).expect("leg IP port");
                    assert_eq!(p.ip, leg.address.addr());
                    p.mac.clone()
                }
            }
        }
    }
}

/// Every leg of every node: its MAC is its backing port's; no MAC twice on a node.
fn assert_port_macs(s: &Snapshot, plans: &BTreeMap<String, NodeDesiredState>) -> usize {
    let mut legs = 0;
    for (node, st) in plans {
        let mut seen = BTreeSet::new();
        for (rid, r) in &st.routers {
            for l in &r.legs {
                assert_eq!(l.mac, backing_mac(s, rid, &st.pod, l), "{node} {rid} {l:?}");
                assert!(seen.insert(l.mac.clone()), "{node}: MAC {} twice", l.mac);
                legs += 1;
            }
        }
    }
    legs
}

/// The guide plus a stretched network (a non-primary leg in RegionTwo): bridge, interface,
/// leg-IP and gateway legs all carry their ports' MACs.
#[test]
fn every_leg_mac_is_its_backing_ports() {
    let mut s = guide();
    add_vlan_net(&mut s, "demo", "net3", 2100, &[], "10.0.3.0/24");
    add_vm(&mut s, "demo", "vm3a", "net3", "10.0.3.11", "node1");
    add_vm(&mut s, "demo", "vm3b", "net3", "10.0.3.12", "node2");
    add_iface(&mut s, "router", "net3");
    settle(&mut s);
    let plans = plan_all(&s);
    let iface_macs: BTreeSet<&str> = s.router_interfaces.iter().map(|i| i.mac.as_str()).collect();
    let iface_macs = &iface_macs;
    let kinds: BTreeSet<(String, LegKind, bool)> = plans
        .iter()
        .flat_map(|(n, st)| {
            st.routers.values().flat_map(move |r| {
                r.legs.iter().map(move |l| {
                    let primary = iface_macs.contains(l.mac.as_str());
                    (n.clone(), l.kind, primary)
                })
            })
        })
        .collect();
    // Each kind of backing port is exercised: bridge, gateway, interface, leg IP port.
    assert!(kinds.contains(&("node2".into(), LegKind::Gateway, false)));
    assert!(kinds.contains(&("node1".into(), LegKind::Bridge, false)));
    assert!(kinds.contains(&("node1".into(), LegKind::Internal, true)));
    assert!(kinds.contains(&("node2".into(), LegKind::Internal, false)));
    // node1: bridge, net1, net3 (home); node2: bridge, net2, net3 (leg IP), gateway.
    assert_eq!(assert_port_macs(&s, &plans), 7);
}

/// A gateway without its port (not yet created, or deleted) has no leg: nothing to take a MAC
/// from, and no other leg's is borrowed.
#[test]
fn gateway_without_its_port_has_no_leg() {
    let mut s = guide();
    s.ports.retain(|p| p.device_owner != OWNER_ROUTER_GATEWAY);
    let plans = plan_all(&s);
    let r2 = &plans["node2"].routers["router"];
    assert!(r2.leg(LegKind::Gateway).is_none());
    assert!(r2.nat.snat.is_empty());
}

const ROUTERS: usize = 5_000;
const PER_PROJECT: usize = 200;

/// 5,000 non-local routers, 200 per project, each with a gateway on one external network (a
/// /16) and nothing else: all 5,000 instances land on RegionTwo's extern node, each with a
/// bridge leg and a gateway leg. MACs are handed out as the store does: unique per port.
fn many_gateways() -> Snapshot {
    let mut s = base();
    s.networks.push(Network {
        id: "ext-net".into(),
        project_id: "admin".into(),
        network_type: NetworkType::Vlan,
        physnet: Some("extern".into()),
        segmentation_id: Some(3001),
        external: true,
        az_hints: vec!["RegionTwo".into()],
        ..Default::default()
    });
    s.subnets.push(Subnet {
        id: "sub-ext-net".into(),
        network_id: "ext-net".into(),
        cidr: net("163.3.0.0/16"),
        gateway_ip: Some(ip("163.3.0.1")),
        ..Default::default()
    });
    let mut n = 0u32;
    let mut mac = || {
        n += 1;
        format!(
            "fa:16:3e:{:02x}:{:02x}:{:02x}",
            n >> 16,
            (n >> 8) & 0xff,
            n & 0xff
        )
    };
    for i in 0..ROUTERS {
        let rid = format!("{:08x}-{:04x}-4000-8000-{:012x}", i * 7919, i, i);
        let gw = std::net::Ipv4Addr::from(0xa303_0000u32 + 10 + i as u32);
        s.routers.push(Router {
            id: rid.clone(),
            project_id: format!("p{}", i / PER_PROJECT),
            external_gateway: Some(ExternalGateway {
                network_id: "ext-net".into(),
                enable_snat: true,
                external_fixed_ips: vec![FixedIp {
                    subnet_id: "sub-ext-net".into(),
                    ip_address: gw.into(),
                }],
            }),
            ..Default::default()
        });
        s.ports.push(Port {
            id: format!("gw-{rid}"),
            network_id: "ext-net".into(),
            mac: mac(),
            fixed_ips: vec![FixedIp {
                subnet_id: "sub-ext-net".into(),
                ip_address: gw.into(),
            }],
            device_owner: OWNER_ROUTER_GATEWAY.into(),
            device_id: rid,
            ..Default::default()
        });
    }
    let plan = required_allocations(&s);
    let mut next_ip: BTreeMap<String, u32> = BTreeMap::new();
    for k in plan.allocate {
        match k {
            AllocationKey::BridgeNetwork { project_id } => {
                let k = s.allocations.bridge_networks.len();
                s.allocations.bridge_networks.insert(
                    project_id,
                    BridgeNetwork {
                        vlan: 2001 + k as u16,
                        cidr: net(&format!("100.0.{k}.0/24")),
                        vni: None,
                    },
                );
            }
            AllocationKey::BridgeIp { router_id, pod } => {
                let project = s
                    .routers
                    .iter()
                    .find(|r| r.id == router_id)
                    .unwrap()
                    .project_id
                    .clone();
                let cidr = s.allocations.bridge_networks[&project].cidr;
                let h = next_ip.entry(project).or_insert(2);
                let addr = match cidr.network() {
                    std::net::IpAddr::V4(a) => std::net::Ipv4Addr::from(u32::from(a) + *h),
                    _ => unreachable!(),
                };
                *h += 1;
                s.allocations
                    .set_bridge_ip(&router_id, &pod, addr.into(), &mac());
            }
            AllocationKey::RouterNode {
                router_id,
                pod,
                node,
            } => s.allocations.set_router_node(&router_id, &pod, Some(&node)),
            other => panic!("unexpected allocation {other:?}"),
        }
    }
    s
}

/// The 24-bit MAC the planner used to derive from ids (`fa:16:3e` + 24 bits of FNV-1a).
fn old_derived_mac(parts: &[&str]) -> u64 {
    wire::names::stable_hash(parts) & 0xff_ffff
}

#[test]
fn no_two_legs_share_a_mac_with_5000_gateways_on_one_external_network() {
    let s = many_gateways();
    let plans = plan_all(&s);
    let node2 = &plans["node2"];
    assert_eq!(node2.routers.len(), ROUTERS);
    let legs = assert_port_macs(&s, &plans);
    assert_eq!(legs, 2 * ROUTERS, "a bridge and a gateway leg per router");
    // The same legs with the old derived MACs do collide: the test would catch them.
    let mut old = BTreeSet::new();
    let mut dup = 0;
    for rid in node2.routers.keys() {
        for parts in [
            vec![rid.as_str(), "gateway"],
            vec![rid, "RegionTwo", "bridge"],
        ] {
            if !old.insert(old_derived_mac(&parts)) {
                dup += 1;
            }
        }
    }
    assert!(
        dup > 0,
        "the old 24-bit scheme collides here ({dup} duplicates)"
    );
    // And among the gateway legs alone (the 50% at 4,800).
    let gw: BTreeSet<u64> = node2
        .routers
        .keys()
        .map(|r| old_derived_mac(&[r, "gateway"]))
        .collect();
    eprintln!(
        "old scheme: {dup} duplicate MACs among {} legs, {} among {ROUTERS} gateway legs",
        2 * ROUTERS,
        ROUTERS - gw.len()
    );
}

/// Two routers of different projects whose ids share their first 11 characters, both with
/// instances on node2, plus an unrelated one.
const R_LOW: &str = "0f6e3d2e-14aa-4000-8000-000000000001";
const R_HIGH: &str = "0f6e3d2e-14bb-4000-8000-000000000002";
const R_OTHER: &str = "7c1d0a55-0000-4000-8000-000000000003";

fn ovs_names(st: &NodeDesiredState) -> Vec<&str> {
    st.routers
        .values()
        .flat_map(|r| r.legs.iter().map(|l| l.ovs_ifname.as_str()))
        .collect()
}

fn assert_unique_names(plans: &BTreeMap<String, NodeDesiredState>) {
    for (node, st) in plans {
        let all = ovs_names(st);
        let set: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(set.len(), all.len(), "{node}: OVS names {all:?}");
        for r in st.routers.values() {
            let ns: BTreeSet<&str> = r.legs.iter().map(|l| l.ns_ifname.as_str()).collect();
            assert_eq!(
                ns.len(),
                r.legs.len(),
                "{node}: namespace names {:?}",
                r.legs
            );
            assert!(r
                .legs
                .iter()
                .all(|l| l.ns_ifname.len() <= 15 && l.ovs_ifname.len() <= 15));
            if let Some(g) = r.leg(LegKind::Gateway) {
                assert!(r.nat.snat.iter().all(|n| n.out_ifname == g.ns_ifname));
            }
        }
    }
}

/// Project `project`'s router `rid` with one local network in RegionTwo and a gateway.
fn add_project_router(s: &mut Snapshot, project: &str, rid: &str, k: u8, iface_port: &str) {
    let netid = format!("net-{project}");
    add_local_net(s, project, &netid, &format!("10.9.{k}.0/24"));
    add_vm(
        s,
        project,
        &format!("vm-{project}"),
        &netid,
        &format!("10.9.{k}.5"),
        "node2",
    );
    add_router(s, project, rid, &[]);
    add_iface(s, rid, &netid);
    s.router_interfaces.last_mut().unwrap().port_id = iface_port.into();
    set_gateway(s, rid, &format!("163.3.124.{}", 10 + k));
    settle(s);
}

fn with_router(s: &Snapshot, project: &str, rid: &str, k: u8, port: &str) -> Snapshot {
    let mut s = s.clone();
    add_project_router(&mut s, project, rid, k, port);
    s
}

/// Incremental replanning of `change` equals planning from scratch.
fn assert_replan_is_full(old: &Snapshot, new: &Snapshot, change: Change) {
    let prev = plan_all(old);
    let want = plan_all(new);
    let got = replan(old, new, &prev, &change);
    for (node, st) in &want {
        assert_eq!(
            got.get(node).unwrap_or(&prev[node]),
            st,
            "{change:?} on {node}"
        );
    }
}

#[test]
fn routers_sharing_an_id_prefix_get_distinct_stable_names() {
    let mut base = base();
    add_ext_net(&mut base);
    let one = with_router(
        &base,
        "pa",
        R_HIGH,
        1,
        "1b3c5d7e-9f00-4000-8000-00000000000a",
    );
    let both = with_router(&one, "pb", R_LOW, 2, "2b3c5d7e-9f00-4000-8000-00000000000b");
    let plans = plan_all(&both);
    assert_unique_names(&plans);
    let node2 = &plans["node2"];
    let names = |r: &str, k: LegKind| {
        let l = node2.routers[r].leg(k).unwrap();
        (l.ns_ifname.clone(), l.ovs_ifname.clone())
    };
    // The lower id keeps Neutron's names; the other gets an alternate OVS name with the same
    // first 10 bytes. Namespace-side names are per namespace: both keep Neutron's there.
    assert_eq!(
        names(R_LOW, LegKind::Gateway),
        ("qg-0f6e3d2e-14".into(), "vg-0f6e3d2e-14".into())
    );
    assert_eq!(names(R_LOW, LegKind::Bridge).1, "vb-0f6e3d2e-14");
    let (ns, ovs) = names(R_HIGH, LegKind::Gateway);
    assert_eq!(ns, "qg-0f6e3d2e-14");
    assert!(ovs.starts_with("vg-0f6e3d2") && ovs != "vg-0f6e3d2e-14" && ovs.len() == 15);
    let high_bridge = names(R_HIGH, LegKind::Bridge).1;
    assert!(high_bridge.starts_with("vb-0f6e3d2") && high_bridge != "vb-0f6e3d2e-14");

    // Same input, same names, whatever the order of the snapshot's lists.
    assert_eq!(plan_all(&both), plans);
    let mut shuffled = both.clone();
    shuffled.routers.reverse();
    shuffled.ports.reverse();
    shuffled.router_interfaces.reverse();
    assert_eq!(plan_all(&shuffled), plans);

    // An unrelated router renames nothing that exists.
    let three = with_router(
        &both,
        "pc",
        R_OTHER,
        3,
        "3b3c5d7e-9f00-4000-8000-00000000000c",
    );
    let after = plan_all(&three);
    assert_unique_names(&after);
    for (rid, r) in &node2.routers {
        assert_eq!(&after["node2"].routers[rid].legs, &r.legs, "{rid} renamed");
    }
    assert_eq!(
        after["node2"].routers[R_OTHER]
            .leg(LegKind::Gateway)
            .unwrap()
            .ovs_ifname,
        "vg-7c1d0a55-00"
    );

    // A colliding router with a higher id renames nothing that exists either; when the lower
    // one goes, the survivor moves back to Neutron's name.
    let no_high = without_router(&both, R_HIGH);
    let no_low = without_router(&both, R_LOW);
    assert_eq!(
        plan_all(&no_high)["node2"].routers[R_LOW].legs,
        node2.routers[R_LOW].legs
    );
    let survivor = &plan_all(&no_low)["node2"].routers[R_HIGH];
    assert_eq!(
        survivor.leg(LegKind::Gateway).unwrap().ovs_ifname,
        "vg-0f6e3d2e-14"
    );

    // Incremental replanning sees collisions with routers outside the change's project.
    assert_replan_is_full(&no_high, &both, Change::Router(R_HIGH.into()));
    assert_replan_is_full(&no_low, &both, Change::Router(R_LOW.into()));
    assert_replan_is_full(&both, &no_low, Change::Router(R_LOW.into()));
    assert_replan_is_full(&both, &no_high, Change::Router(R_HIGH.into()));
    assert_replan_is_full(
        &without_router(&three, R_OTHER),
        &three,
        Change::Router(R_OTHER.into()),
    );
    let _ = one;
}

/// `s` without router `rid` (its interfaces and gateway port too), settled.
fn without_router(s: &Snapshot, rid: &str) -> Snapshot {
    let mut s = s.clone();
    s.routers.retain(|r| r.id != rid);
    s.router_interfaces.retain(|i| i.router_id != rid);
    s.ports
        .retain(|p| !(p.device_owner == OWNER_ROUTER_GATEWAY && p.device_id == rid));
    settle(&mut s);
    s
}

#[test]
fn interface_ports_sharing_an_id_prefix_get_distinct_names() {
    let mut s = base();
    add_local_net(&mut s, "demo", "na", "10.0.1.0/24");
    add_local_net(&mut s, "demo", "nb", "10.0.2.0/24");
    add_vm(&mut s, "demo", "vma", "na", "10.0.1.5", "node1");
    add_router(&mut s, "demo", "router", &["RegionOne"]);
    add_iface(&mut s, "router", "na");
    add_iface(&mut s, "router", "nb");
    s.router_interfaces[0].port_id = "5a5a5a5a-5a5a-4000-8000-000000000001".into();
    s.router_interfaces[1].port_id = "5a5a5a5a-5a5a-4000-8000-000000000002".into();
    settle(&mut s);
    let plans = plan_all(&s);
    assert_unique_names(&plans);
    let r = &plans["node1"].routers["router"];
    let legs: Vec<(&str, &str, Option<&str>)> = r
        .legs
        .iter()
        .map(|l| {
            (
                l.ns_ifname.as_str(),
                l.ovs_ifname.as_str(),
                l.subnet_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(legs.len(), 2);
    let first = legs.iter().find(|l| l.2 == Some("sub-na")).unwrap();
    assert_eq!((first.0, first.1), ("qr-5a5a5a5a-5a", "vr-5a5a5a5a-5a"));
    let second = legs.iter().find(|l| l.2 == Some("sub-nb")).unwrap();
    assert!(second.0.starts_with("qr-5a5a5a5") && second.0 != first.0);
    assert!(second.1.starts_with("vr-5a5a5a5") && second.1 != first.1);
    assert_eq!(plan_all(&s), plans);
}
