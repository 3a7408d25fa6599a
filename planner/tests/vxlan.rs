//! VxLAN segments and pods of several nodes: per-node tags on the `local` physnet's bridge,
//! tunnel peers bounded by the nodes sharing a segment, leg MTUs, router placement spread by
//! rendezvous hashing, and incremental planning equal to full planning.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::*;
use planner::*;

const PODS: usize = 3;

/// Node `k` of pod `p`: `r<p>-<k>`, tunnel IP 192.168.50.<10p+k+1>; node 0 also maps extern.
fn node_name(p: usize, k: usize) -> String {
    format!("r{p}-{k}")
}

fn node_ip(p: usize, k: usize) -> IpAddr {
    ip(&format!("192.168.50.{}", 10 * p + k + 1))
}

/// 3 pods x 2 nodes with tunnel IPs, a VxLAN bridge network per project, and per project a
/// stretched VxLAN network with VMs in two pods, a local network and a router over both.
fn vx_cloud() -> Snapshot {
    let mut s = Snapshot {
        bridge_vxlan: true,
        ..Default::default()
    };
    for p in 0..PODS {
        s.pods.push(Pod {
            region_name: format!("R{p}"),
            az_name: Some(format!("az{p}")),
        });
        for k in 0..2 {
            let mut maps = vec![("bridge", "br-vlan")];
            if k == 0 {
                maps.push(("extern", "br-ext"));
            }
            s.nodes.push(vx_node(
                &node_name(p, k),
                &format!("R{p}"),
                &maps,
                &node_ip(p, k).to_string(),
            ));
        }
    }
    add_ext_net_in(&mut s, "R0");
    for pr in 0..4usize {
        let p = format!("p{pr}");
        let vx = format!("{p}-vx");
        add_vxlan_net(&mut s, &p, &vx, 1001 + pr as u32, "10.1.0.0/24");
        add_vm(
            &mut s,
            &p,
            &format!("{vx}-a"),
            &vx,
            "10.1.0.5",
            &node_name(pr % PODS, 1),
        );
        add_vm(
            &mut s,
            &p,
            &format!("{vx}-b"),
            &vx,
            "10.1.0.6",
            &node_name((pr + 1) % PODS, pr % 2),
        );
        let loc = format!("{p}-loc");
        add_local_net(&mut s, &p, &loc, "10.2.0.0/24");
        add_vm(
            &mut s,
            &p,
            &format!("{loc}-a"),
            &loc,
            "10.2.0.5",
            &node_name(pr % PODS, 0),
        );
        let r = format!("{p}-r");
        add_router(&mut s, &p, &r, &[]);
        add_iface(&mut s, &r, &vx);
        add_iface(&mut s, &r, &loc);
        if pr == 0 {
            set_gateway(&mut s, &r, "163.3.124.10");
        }
    }
    settle(&mut s);
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    s
}

/// Every node's segments: VNI → nodes whose state carries it.
fn carriers(plans: &BTreeMap<String, NodeDesiredState>) -> BTreeMap<u32, BTreeSet<IpAddr>> {
    let mut out: BTreeMap<u32, BTreeSet<IpAddr>> = BTreeMap::new();
    for st in plans.values() {
        if let Some(t) = &st.tunnels {
            for vni in t.segments.keys() {
                out.entry(*vni).or_default().insert(t.local_ip);
            }
        }
    }
    out
}

/// Peers are exactly the other carriers of each segment, and tags are never trunked.
fn assert_peers_bounded(plans: &BTreeMap<String, NodeDesiredState>) {
    let by_vni = carriers(plans);
    for (name, st) in plans {
        let Some(t) = &st.tunnels else {
            continue;
        };
        assert!(!t.segments.is_empty(), "{name}: tunnels without segments");
        for (vni, seg) in &t.segments {
            let mut want = by_vni[vni].clone();
            want.remove(&t.local_ip);
            assert_eq!(seg.peers, want, "{name}: peers of VNI {vni}");
            for b in st.bridges.values() {
                assert!(
                    !b.trunks.contains(&seg.tag),
                    "{name}: VxLAN tag {} trunked",
                    seg.tag
                );
            }
        }
    }
}

#[test]
fn tunnel_peers_are_the_nodes_sharing_each_segment() {
    let s = vx_cloud();
    let plans = plan_all(&s);
    assert_peers_bounded(&plans);
    // p0-vx: VMs on r0-1 and r1-0, its router instances in R0 and R1 (on whichever node).
    let vx0 = carriers(&plans)[&1001].clone();
    assert!(vx0.contains(&node_ip(0, 1)) && vx0.contains(&node_ip(1, 0)));
    assert!(
        !vx0.iter()
            .any(|i| *i == node_ip(2, 0) || *i == node_ip(2, 1)),
        "R2 has nothing of p0-vx: {vx0:?}"
    );
    // A node of R2 carries p1-vx (a VM on r2-1) but not p0-vx: no entry, not a peer.
    let r21 = plans["r2-1"].tunnels.as_ref().unwrap();
    assert!(!r21.segments.contains_key(&1001));
    assert_eq!(r21.local_ip, node_ip(2, 1));
    assert_eq!(r21.bridge, "br-vlan");
    // VM ports sit on the local physnet's bridge with the pod's tag of the network.
    let port = &plans["r0-1"].ports["p0-vx-a"];
    assert_eq!(port.bridge, "br-vlan");
    assert_eq!(Some(port.tag), Some(s.allocations.local_tag("p0-vx", "R0")));
    let seg = &plans["r0-1"].tunnels.as_ref().unwrap().segments[&1001];
    assert_eq!(Some(seg.tag), port.tag);
    assert_eq!(seg.network_id.as_deref(), Some("p0-vx"));
    // The project's bridge is a VxLAN segment too (project_id set, no network).
    let bridge_vni = s.allocations.bridge_networks["p0"].vni.unwrap();
    let holders: Vec<&String> = plans
        .iter()
        .filter(|(_, st)| {
            st.tunnels
                .as_ref()
                .is_some_and(|t| t.segments.contains_key(&bridge_vni))
        })
        .map(|(n, _)| n)
        .collect();
    assert_eq!(holders.len(), 2, "one per pod of p0-r: {holders:?}");
    for n in holders {
        let t = plans[n].tunnels.as_ref().unwrap();
        let seg = &t.segments[&bridge_vni];
        assert_eq!(seg.project_id.as_deref(), Some("p0"));
        assert_eq!(seg.network_id, None);
        assert_eq!(seg.peers.len(), 1);
        let leg = plans[n].routers["p0-r"].leg(wire::LegKind::Bridge).unwrap();
        assert_eq!((leg.tag, leg.mtu), (Some(seg.tag), Some(1450)));
    }
}

#[test]
fn leg_mtu_is_set_below_the_underlay_only() {
    let s = vx_cloud();
    let plans = plan_all(&s);
    let mut seen = 0;
    for st in plans.values() {
        for r in st.routers.values() {
            for l in &r.legs {
                let want = match l.network_id.as_deref() {
                    Some(n) if n.ends_with("-vx") => Some(1450),
                    None => Some(1450), // the VxLAN bridge leg
                    _ => None,
                };
                assert_eq!(l.mtu, want, "{:?}", l);
                seen += 1;
            }
        }
    }
    assert!(seen > 10);
    // With a 9000 underlay the VxLAN networks the controller makes have 8950.
    let mut jumbo = s.clone();
    jumbo.global_physnet_mtu = 9000;
    for n in &mut jumbo.networks {
        if n.network_type == NetworkType::Vxlan {
            n.mtu = Some(8950);
        }
    }
    let plans = plan_all(&jumbo);
    let leg = plans
        .values()
        .flat_map(|st| st.routers.values())
        .flat_map(|r| r.legs.iter())
        .find(|l| l.kind == wire::LegKind::Bridge)
        .unwrap();
    assert_eq!(leg.mtu, Some(8950));
}

#[test]
fn removing_the_last_port_on_a_node_removes_it_from_the_peers() {
    let old = vx_cloud();
    let mut new = old.clone();
    // p2-vx has VMs on r2-1 and r0-0; r2-1 has nothing else of p2-vx unless p2-r lives there.
    new.ports.retain(|p| p.id != "p2-vx-a");
    settle(&mut new);
    let before = plan_all(&old);
    let after = plan_all(&new);
    assert_peers_bounded(&after);
    let gone = node_ip(2, 1);
    let r2_holds_router = after["r2-1"].routers.contains_key("p2-r");
    assert!(before["r2-1"]
        .tunnels
        .as_ref()
        .unwrap()
        .segments
        .contains_key(&1003));
    if !r2_holds_router {
        assert!(after["r2-1"]
            .tunnels
            .as_ref()
            .is_none_or(|t| !t.segments.contains_key(&1003)));
        for st in after.values() {
            if let Some(seg) = st.tunnels.as_ref().and_then(|t| t.segments.get(&1003)) {
                assert!(!seg.peers.contains(&gone), "{}: {:?}", st.node, seg.peers);
            }
        }
    }
    // The incremental path agrees, including the other nodes' peers.
    check(
        "remove last port",
        &old,
        &new,
        Change::Port("p2-vx-a".into()),
    );
}

#[test]
fn a_node_without_local_ip_carries_no_vxlan() {
    let mut s = vx_cloud();
    for n in &mut s.nodes {
        if n.name == "r1-1" || n.pod == "R2" {
            n.local_ip = None;
        }
    }
    add_vm(&mut s, "p0", "p0-vx-c", "p0-vx", "10.1.0.7", "r1-1");
    settle(&mut s);
    let plans = plan_all(&s);
    assert_peers_bounded(&plans);
    assert!(!plans["r1-1"].ports.contains_key("p0-vx-c"), "stays DOWN");
    assert!(plans["r1-1"].tunnels.is_none());
    // R2 has no node with a tunnel IP: no instance of a router with a VxLAN segment there.
    for n in ["r2-0", "r2-1"] {
        assert!(
            plans[n].routers.is_empty(),
            "{n}: {:?}",
            plans[n].routers.keys()
        );
        assert!(plans[n].tunnels.is_none());
    }
    let p = Planner::new(&s);
    assert_eq!(p.candidates("R1", "p0-r"), ["r1-0"]);
    assert!(p.candidates("R2", "p1-r").is_empty());
    // Its local (VLAN-tagged) network still works there.
    assert!(plans["r2-0"].ports.contains_key("p2-loc-a"));
}

#[test]
fn local_networks_on_two_nodes_of_a_pod_are_trunked_there_only() {
    let mut s = vx_cloud();
    add_vm(&mut s, "p0", "p0-loc-b", "p0-loc", "10.2.0.6", "r0-1");
    settle(&mut s);
    let plans = plan_all(&s);
    let tag = s.allocations.local_tag("p0-loc", "R0").unwrap();
    for n in ["r0-0", "r0-1"] {
        assert!(
            plans[n].bridges["br-vlan"].trunks.contains(&tag),
            "{n}: {:?}",
            plans[n].bridges
        );
    }
    for p in 1..PODS {
        for k in 0..2 {
            let n = node_name(p, k);
            assert!(
                plans[&n]
                    .ports
                    .values()
                    .all(|port| port.network_id != "p0-loc"),
                "{n}"
            );
        }
    }
    // Tags of VxLAN segments never are (checked for every node).
    assert_peers_bounded(&plans);
}

/// Many routers in one pod of two equal nodes: instances spread, adding a router moves none,
/// losing a node moves only its own.
#[test]
fn placement_spreads_over_the_pods_nodes_and_is_stable() {
    let mut s = Snapshot {
        bridge_vxlan: true,
        ..Default::default()
    };
    for p in 0..2 {
        s.pods.push(Pod {
            region_name: format!("R{p}"),
            az_name: None,
        });
        for k in 0..2 {
            s.nodes.push(vx_node(
                &node_name(p, k),
                &format!("R{p}"),
                &[("bridge", "br-vlan")],
                &node_ip(p, k).to_string(),
            ));
        }
    }
    let n = 60;
    for i in 0..n {
        let p = format!("t{i}");
        let net = format!("{p}-vx");
        add_vxlan_net(&mut s, &p, &net, 1001 + i, "10.1.0.0/24");
        add_vm(&mut s, &p, &format!("{p}-vm"), &net, "10.1.0.5", "r0-0");
        add_vm(&mut s, &p, &format!("{p}-vm2"), &net, "10.1.0.6", "r1-0");
        add_router(&mut s, &p, &format!("{p}-r"), &[]);
        add_iface(&mut s, &format!("{p}-r"), &net);
    }
    settle(&mut s);
    let hosts = |s: &Snapshot| -> BTreeMap<String, String> {
        let plans = plan_all(s);
        let mut out = BTreeMap::new();
        for (node, st) in &plans {
            for r in st.routers.keys() {
                if st.pod == "R0" {
                    out.insert(r.clone(), node.clone());
                }
            }
        }
        out
    };
    let before = hosts(&s);
    assert_eq!(before.len(), n as usize);
    let on0 = before.values().filter(|h| *h == "r0-0").count();
    assert!(
        (15..=45).contains(&on0),
        "{on0} of {n} instances on r0-0: not spread"
    );
    // The order is the candidate list's.
    let p = Planner::new(&s);
    for (r, h) in &before {
        assert_eq!(p.candidates("R0", r)[0], h.as_str());
        assert_eq!(p.candidates("R0", r).len(), 2);
    }
    // Another router: nobody else moves.
    let mut more = s.clone();
    add_vxlan_net(&mut more, "new", "new-vx", 5000, "10.1.0.0/24");
    add_vm(&mut more, "new", "new-vm", "new-vx", "10.1.0.5", "r0-1");
    add_router(&mut more, "new", "new-r", &[]);
    add_iface(&mut more, "new-r", "new-vx");
    settle(&mut more);
    let after = hosts(&more);
    for (r, h) in &before {
        assert_eq!(&after[r], h, "{r} moved when an unrelated router came");
    }
    // r0-1 goes: only its instances move, all to r0-0.
    let mut lost = s.clone();
    lost.nodes.retain(|n| n.name != "r0-1");
    lost.ports
        .retain(|p| p.binding_host.as_deref() != Some("r0-1"));
    settle(&mut lost);
    let after = hosts(&lost);
    for (r, h) in &before {
        assert_eq!(after[r], "r0-0");
        if h == "r0-0" {
            assert_eq!(&after[r], h);
        }
    }
}

fn check(name: &str, old: &Snapshot, new: &Snapshot, change: Change) {
    let prev = plan_all(old);
    let want = plan_all(new);
    let got = replan(old, new, &prev, &change);
    let mut touched = affected_nodes(old, &change);
    touched.extend(affected_nodes(new, &change));
    let scoped = plan_nodes(new, touched.iter().map(String::as_str));
    for (node, state) in &want {
        match got.get(node) {
            Some(g) => assert_eq!(g, state, "{name}: replan of {node} differs from plan_all"),
            None => assert_eq!(
                &prev[node], state,
                "{name}: {node} changed but replan left it out"
            ),
        }
        match scoped.get(node) {
            Some(g) => assert_eq!(g, state, "{name}: plan_nodes of {node} differs"),
            None => assert_eq!(
                &prev[node], state,
                "{name}: {node} changed but not affected"
            ),
        }
    }
}

fn mutate(name: &str, change: Change, f: impl Fn(&mut Snapshot)) {
    for dhcp in [false, true] {
        let name = format!("{name} (dhcp: {dhcp})");
        let mut old = vx_cloud();
        if dhcp {
            for sub in old.subnets.iter_mut().filter(|x| x.network_id != "ext-net") {
                sub.enable_dhcp = true;
            }
            settle(&mut old);
        }
        let mut new = old.clone();
        f(&mut new);
        assert_scoped_allocations(&name, &old, &new, &change);
        settle(&mut new);
        assert_peers_bounded(&plan_all(&new));
        check(&name, &old, &new, change.clone());
    }
}

#[test]
fn vxlan_changes_replan_like_full() {
    mutate(
        "vm joins a segment on a new node",
        Change::Port("p1-vx-c".into()),
        |s| {
            add_vm(s, "p1", "p1-vx-c", "p1-vx", "10.1.0.7", "r2-0");
        },
    );
    mutate("vm leaves", Change::Port("p3-vx-b".into()), |s| {
        s.ports.retain(|p| p.id != "p3-vx-b");
    });
    mutate("vm moves", Change::Port("p0-vx-a".into()), |s| {
        s.ports
            .iter_mut()
            .find(|p| p.id == "p0-vx-a")
            .unwrap()
            .binding_host = Some("r2-1".into());
    });
    mutate("iface removed", Change::Router("p1-r".into()), |s| {
        remove_iface(s, "p1-r", "p1-vx")
    });
    mutate("router gone", Change::Router("p2-r".into()), |s| {
        s.router_interfaces.retain(|i| i.router_id != "p2-r");
        s.routers.retain(|r| r.id != "p2-r");
    });
    mutate(
        "new vxlan network and router",
        Change::Router("q-r".into()),
        |s| {
            add_vxlan_net(s, "q", "q-vx", 4242, "10.5.0.0/24");
            add_vm(s, "q", "q-vm", "q-vx", "10.5.0.5", "r1-1");
            add_vm(s, "q", "q-vm2", "q-vx", "10.5.0.6", "r2-1");
            add_router(s, "q", "q-r", &[]);
            add_iface(s, "q-r", "q-vx");
        },
    );
    mutate(
        "node's tunnel IP changes",
        Change::Node("r1-0".into()),
        |s| {
            s.nodes
                .iter_mut()
                .find(|n| n.name == "r1-0")
                .unwrap()
                .local_ip = Some(ip("192.168.60.1"));
        },
    );
    mutate("node joins", Change::Node("r1-2".into()), |s| {
        s.nodes.push(vx_node(
            "r1-2",
            "R1",
            &[("bridge", "br-vlan")],
            "192.168.50.99",
        ));
        add_vm(s, "p0", "p0-vx-z", "p0-vx", "10.1.0.9", "r1-2");
    });
}
