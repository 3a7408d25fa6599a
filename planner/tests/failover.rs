//! Router failover in the planner: liveness sessions only between a pod's nodes with tunnel
//! endpoints, sticky placement of router instances and DHCP servers (kept while their node is
//! alive, the next alive candidate on loss, no failback unless asked), and incremental
//! planning equal to full planning with a node lost and back.

mod common;

use common::*;
use planner::*;

/// Pod R0 with three tunnel nodes (`g0..g2`, all map `extern`) and one without a tunnel
/// endpoint (`plain`), pod R1 with one tunnel node; per project a VxLAN network with a VM in
/// each pod and DHCP, a local network in R0, and a router over both with its gateway in R0.
fn cloud() -> Snapshot {
    let mut s = Snapshot {
        bridge_vxlan: true,
        ..Default::default()
    };
    for (r, az) in [("R0", "az0"), ("R1", "az1")] {
        s.pods.push(Pod {
            region_name: r.into(),
            az_name: Some(az.into()),
        });
    }
    for k in 0..3 {
        s.nodes.push(vx_node(
            &format!("g{k}"),
            "R0",
            &[("bridge", "br-vlan"), ("extern", "br-ext")],
            &format!("192.168.50.{}", 11 + k),
        ));
    }
    s.nodes.push(node(
        "plain",
        "R0",
        &[("bridge", "br-vlan"), ("extern", "br-ext")],
    ));
    s.nodes.push(vx_node(
        "h0",
        "R1",
        &[("bridge", "br-vlan")],
        "192.168.50.21",
    ));
    add_ext_net_in(&mut s, "R0");
    for pr in 0..4u32 {
        let p = format!("p{pr}");
        let vx = format!("{p}-vx");
        add_vxlan_net(&mut s, &p, &vx, 1001 + pr, "10.1.0.0/24");
        for sub in s.subnets.iter_mut().filter(|x| x.network_id == vx) {
            sub.enable_dhcp = true;
        }
        add_vm(&mut s, &p, &format!("{vx}-a"), &vx, "10.1.0.5", "g0");
        add_vm(&mut s, &p, &format!("{vx}-b"), &vx, "10.1.0.6", "h0");
        let r = format!("{p}-r");
        add_router(&mut s, &p, &r, &[]);
        add_iface(&mut s, &r, &vx);
        set_gateway(&mut s, &r, &format!("163.3.124.{}", 10 + pr));
    }
    settle(&mut s);
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    s
}

fn set_lost(s: &mut Snapshot, node: &str, lost: bool) {
    s.nodes.iter_mut().find(|n| n.name == node).unwrap().lost = lost;
}

/// The node hosting router `r`'s instance in R0, per the plans.
fn host(plans: &std::collections::BTreeMap<String, NodeDesiredState>, r: &str) -> String {
    let hosts: Vec<&String> = plans
        .iter()
        .filter(|(_, st)| st.pod == "R0" && st.routers.contains_key(r))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(hosts.len(), 1, "{r} in R0 on {hosts:?}");
    hosts[0].clone()
}

/// A change to node `name` planned both ways: incremental must equal full.
fn check_replan(old: &Snapshot, new: &Snapshot, name: &str) {
    let prev = plan_all(old);
    let want = plan_all(new);
    let got = replan(old, new, &prev, &Change::Node(name.into()));
    for (n, st) in &want {
        assert_eq!(got.get(n).unwrap_or(&prev[n]), st, "replan of {n}");
    }
}

#[test]
fn liveness_peers_only_between_tunnel_nodes_of_pods_with_two() {
    let s = cloud();
    let plans = plan_all(&s);
    let l = plans["g0"].liveness.as_ref().expect("g0 has peers");
    assert_eq!(
        l.peers.keys().map(String::as_str).collect::<Vec<_>>(),
        ["g1", "g2"],
        "the other tunnel nodes of R0, sorted; not `plain` (no local_ip), not R1's"
    );
    assert_eq!(l.peers["g1"], ip("192.168.50.12"));
    assert_eq!((l.interval_ms, l.multiplier), (500, 3));
    assert!(plans["plain"].liveness.is_none(), "no tunnel endpoint");
    assert!(plans["h0"].liveness.is_none(), "alone in R1 with one");
    // A lost node keeps its sessions and stays a peer, so it is seen coming back.
    let mut lost = s.clone();
    set_lost(&mut lost, "g1", true);
    let p = plan_all(&lost);
    assert!(p["g0"].liveness.as_ref().unwrap().peers.contains_key("g1"));
    assert!(p["g1"].liveness.is_some());
    let custom = Snapshot {
        liveness_interval_ms: 300,
        ..s
    };
    assert_eq!(
        plan_all(&custom)["g2"]
            .liveness
            .as_ref()
            .unwrap()
            .interval_ms,
        300
    );
}

#[test]
fn sticky_placement_moves_on_loss_and_stays_moved() {
    let s = cloud();
    let plans = plan_all(&s);
    let planner = Planner::new(&s);
    for pr in 0..4 {
        let r = format!("p{pr}-r");
        let cands = planner.candidates("R0", &r);
        let first = host(&plans, &r);
        assert_eq!(first, cands[0], "{r}: placed on its top candidate");
        assert_eq!(s.allocations.router_node(&r, "R0"), Some(first.as_str()));
        let pl = planner.placement(&r);
        let r0 = pl.iter().find(|p| p.pod == "R0").unwrap();
        assert_eq!(r0.active, first);
        assert_eq!(r0.standbys, cands[1..].to_vec());
        assert_eq!(r0.home.as_deref(), Some(first.as_str()));

        // Its node is lost: the next alive candidate takes it, as a rewritten allocation.
        let mut lost = s.clone();
        set_lost(&mut lost, &first, true);
        assert!(
            !Planner::new(&lost)
                .candidates("R0", &r)
                .contains(&first.as_str()),
            "a lost node is no candidate"
        );
        let alloc = required_allocations(&lost);
        let key = |node: &str| AllocationKey::RouterNode {
            router_id: r.clone(),
            pod: "R0".into(),
            node: node.into(),
        };
        assert!(alloc.allocate.contains(&key(cands[1])), "{alloc:?}");
        assert!(alloc.release.contains(&key(&first)), "{alloc:?}");
        let lost_plans = plan_all(&lost);
        assert_eq!(host(&lost_plans, &r), cands[1]);
        assert!(!lost_plans[&first].routers.contains_key(&r));
        check_replan(&s, &lost, &first);
        let mut moved = lost.clone();
        hold_placements(&mut moved);
        assert!(required_allocations(&moved).is_empty());
        let pl = Planner::new(&moved).placement(&r);
        let r0 = pl.iter().find(|p| p.pod == "R0").unwrap();
        assert_eq!(r0.active, cands[1]);
        assert_eq!(r0.home.as_deref(), Some(first.as_str()), "it moved");
        assert!(!r0.standbys.contains(&first), "a lost node is no standby");

        // Back: it stays where it moved (no failback by default) ...
        let mut back = moved.clone();
        set_lost(&mut back, &first, false);
        assert!(required_allocations(&back).is_empty());
        assert_eq!(host(&plan_all(&back), &r), cands[1], "no flap back");
        check_replan(&moved, &back, &first);
        // ... unless failback is asked for.
        let fb = Snapshot {
            failback: true,
            ..back.clone()
        };
        assert_eq!(host(&plan_all(&fb), &r), first, "failback");
        assert!(required_allocations(&fb).allocate.contains(&key(&first)));
        check_replan(
            &Snapshot {
                failback: true,
                ..moved.clone()
            },
            &fb,
            &first,
        );
    }
}

#[test]
fn dhcp_servers_move_with_their_node_and_stay() {
    let s = cloud();
    let plans = plan_all(&s);
    let server = |plans: &std::collections::BTreeMap<String, NodeDesiredState>| -> Vec<String> {
        plans
            .iter()
            .filter(|(_, st)| st.pod == "R0" && st.dhcp.keys().any(|k| k.contains("p0-vx")))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let first = server(&plans);
    assert_eq!(first.len(), 1, "one DHCP server of p0-vx in R0: {first:?}");
    let first = first[0].clone();
    assert_eq!(s.allocations.dhcp_node("p0-vx", "R0"), Some(first.as_str()));
    let mut lost = s.clone();
    set_lost(&mut lost, &first, true);
    let now = server(&plan_all(&lost));
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], first, "moved off the lost node");
    check_replan(&s, &lost, &first);
    hold_placements(&mut lost);
    let mut back = lost.clone();
    set_lost(&mut back, &first, false);
    assert_eq!(
        server(&plan_all(&back)),
        now,
        "stays after the node is back"
    );
}

#[test]
fn a_node_joining_does_not_take_placed_instances() {
    let s = cloud();
    let before = plan_all(&s);
    let mut grown = s.clone();
    // Whatever its rendezvous weight, a new equally fit node takes nothing already placed.
    for k in 3..8 {
        grown.nodes.push(vx_node(
            &format!("g{k}"),
            "R0",
            &[("bridge", "br-vlan"), ("extern", "br-ext")],
            &format!("192.168.50.{}", 11 + k),
        ));
    }
    let after = plan_all(&grown);
    for pr in 0..4 {
        let r = format!("p{pr}-r");
        assert_eq!(host(&before, &r), host(&after, &r), "{r} stayed");
    }
    assert!(
        required_allocations(&grown)
            .allocate
            .iter()
            .all(|k| !matches!(k, AllocationKey::RouterNode { .. })),
        "no placement rewritten"
    );
}
