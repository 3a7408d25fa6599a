//! Table tests of the networking rules: stretched networks, projects, order of operations,
//! removal, floating IPs, validation.

mod common;

use std::collections::BTreeSet;

use common::*;
use planner::*;
use wire::LegKind;

/// net3: VLAN 2100 on `bridge`, no hints (may stretch), VMs in both pods, on the guide's router.
#[test]
fn stretched_vlan_network_is_connected_in_each_pod_without_bridge_routes() {
    let mut s = guide();
    add_vlan_net(&mut s, "demo", "net3", 2100, &[], "10.0.3.0/24");
    add_vm(&mut s, "demo", "vm3a", "net3", "10.0.3.11", "node1");
    add_vm(&mut s, "demo", "vm3b", "net3", "10.0.3.12", "node2");
    add_iface(&mut s, "router", "net3");
    let applied = settle(&mut s);
    assert_eq!(
        applied.allocate,
        vec![AllocationKey::LegIp {
            router_id: "router".into(),
            pod: "RegionTwo".into(),
            subnet_id: "sub-net3".into(),
        }]
    );
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    let plans = plan_all(&s);
    // Same VLAN in both pods, and it is trunked on both uplinks; local tags are not.
    assert_eq!(plans["node1"].ports["vm3a"].tag, Some(2100));
    assert_eq!(plans["node2"].ports["vm3b"].tag, Some(2100));
    assert_eq!(
        plans["node1"].bridges["br-vlan"].trunks,
        BTreeSet::from([2001, 2100])
    );
    assert_eq!(
        plans["node2"].bridges["br-vlan"].trunks,
        BTreeSet::from([2001, 2100])
    );
    let r1 = &plans["node1"].routers["router"];
    let r2 = &plans["node2"].routers["router"];
    let leg = |r: &wire::RouterInstance| {
        r.legs
            .iter()
            .find(|l| l.network_id.as_deref() == Some("net3"))
            .cloned()
            .unwrap()
    };
    let (l1, l2) = (leg(r1), leg(r2));
    // First pod keeps the interface's gateway IP; the other gets its own leg IP and MAC.
    assert_eq!(l1.address, net("10.0.3.1/24"));
    assert_eq!(l2.address, net("10.0.3.250/24"));
    assert_ne!(l1.mac, l2.mac);
    assert_eq!((l1.tag, l2.tag), (Some(2100), Some(2100)));
    // Never through the bridge.
    assert_eq!(r1.route_to(&net("10.0.3.0/24")), None);
    assert_eq!(r2.route_to(&net("10.0.3.0/24")), None);
    // SNAT covers it on the gateway instance.
    assert_eq!(
        r2.nat.snat[0].sources,
        vec![net("10.0.1.0/24"), net("10.0.2.0/24"), net("10.0.3.0/24")]
    );
}

/// A VLAN network hinted to az1 only stays in RegionOne: RegionTwo reaches it over the bridge.
#[test]
fn vlan_network_hinted_to_one_az_is_local_and_routed_over_the_bridge() {
    let mut s = guide();
    add_vlan_net(&mut s, "demo", "net4", 2200, &["az1"], "10.0.4.0/24");
    add_vm(&mut s, "demo", "vm4", "net4", "10.0.4.11", "node1");
    add_iface(&mut s, "router", "net4");
    settle(&mut s);
    let plans = plan_all(&s);
    let b1 = s.allocations.bridge_ip("router", "RegionOne").unwrap();
    assert_eq!(
        plans["node2"].routers["router"].route_to(&net("10.0.4.0/24")),
        Some(b1)
    );
    // Only node1 has it: not trunked.
    assert!(!plans["node1"].bridges["br-vlan"].trunks.contains(&2200));
    // A port on it bound in RegionTwo is refused.
    add_vm(&mut s, "demo", "vm4b", "net4", "10.0.4.12", "node2");
    let errs = validate_port(&s, "vm4b");
    assert!(
        matches!(&errs[..], [ValidationError::PortOutsideNetwork { pod, .. }] if pod == "RegionTwo"),
        "{errs:?}"
    );
    assert!(!plan_all(&s)["node2"].ports.contains_key("vm4b"));
}

#[test]
fn two_projects_with_overlapping_cidrs_stay_apart() {
    let mut s = base();
    for p in ["alpha", "beta"] {
        add_local_net(&mut s, p, &format!("{p}-net1"), "10.0.1.0/24");
        add_local_net(&mut s, p, &format!("{p}-net2"), "10.0.2.0/24");
        add_vm(
            &mut s,
            p,
            &format!("{p}-vm1"),
            &format!("{p}-net1"),
            "10.0.1.11",
            "node1",
        );
        add_vm(
            &mut s,
            p,
            &format!("{p}-vm2"),
            &format!("{p}-net2"),
            "10.0.2.12",
            "node2",
        );
        add_router(&mut s, p, &format!("{p}-r"), &[]);
        add_iface(&mut s, &format!("{p}-r"), &format!("{p}-net1"));
        add_iface(&mut s, &format!("{p}-r"), &format!("{p}-net2"));
    }
    settle(&mut s);
    assert!(validate(&s).is_empty());
    let a = s.allocations.bridge_networks["alpha"];
    let b = s.allocations.bridge_networks["beta"];
    assert_ne!(a.vlan, b.vlan);
    assert_ne!(a.cidr, b.cidr);
    let plans = plan_all(&s);
    for (p, bn) in [("alpha", a), ("beta", b)] {
        for node in ["node1", "node2"] {
            let r = &plans[node].routers[&format!("{p}-r")];
            assert_eq!(r.leg(LegKind::Bridge).unwrap().tag, Some(bn.vlan));
            // Every next hop is in the project's own bridge CIDR, and probes stay in it.
            assert_eq!(r.routes.len(), 1, "{:?}", r.routes);
            for route in &r.routes {
                assert!(bn.cidr.contains(&route.nexthop), "{p} {route:?}");
            }
            assert_eq!(r.probe_targets.len(), 1);
            assert!(bn.cidr.contains(&r.probe_targets[0].address));
        }
    }
    // Distinct pod-local tags for the same CIDR in different projects.
    let n1 = &plans["node1"];
    assert_ne!(n1.ports["alpha-vm1"].tag, n1.ports["beta-vm1"].tag);
    assert_eq!(
        n1.bridges["br-vlan"].trunks,
        BTreeSet::from([a.vlan, b.vlan])
    );
}

#[test]
fn gateway_before_interfaces_gives_the_same_result() {
    let mut s = base();
    add_local_net(&mut s, "demo", "net1", "10.0.1.0/24");
    add_local_net(&mut s, "demo", "net2", "10.0.2.0/24");
    add_vm(&mut s, "demo", "vm1", "net1", "10.0.1.11", "node1");
    add_vm(&mut s, "demo", "vm2", "net2", "10.0.2.12", "node2");
    add_ext_net(&mut s);
    add_router(&mut s, "demo", "router", &[]);
    settle(&mut s);
    set_gateway(&mut s, "router", "163.3.124.10");
    settle(&mut s);
    // Gateway only: one instance, in RegionTwo, default route out, nothing to SNAT yet.
    let plans = plan_all(&s);
    assert!(plans["node1"].routers.is_empty());
    let r2 = &plans["node2"].routers["router"];
    assert_eq!(r2.default_route(), Some(ip("163.3.124.1")));
    assert!(r2.nat.snat.is_empty());
    add_iface(&mut s, "router", "net2");
    settle(&mut s);
    add_iface(&mut s, "router", "net1");
    settle(&mut s);
    add_fip(&mut s, "demo", "fip1", "163.3.124.20", "vm1");
    settle(&mut s);
    assert_guide_shape(&s, true);
}

#[test]
fn external_network_created_after_interfaces() {
    let mut s = base();
    add_local_net(&mut s, "demo", "net1", "10.0.1.0/24");
    add_local_net(&mut s, "demo", "net2", "10.0.2.0/24");
    add_vm(&mut s, "demo", "vm1", "net1", "10.0.1.11", "node1");
    add_vm(&mut s, "demo", "vm2", "net2", "10.0.2.12", "node2");
    add_router(&mut s, "demo", "router", &[]);
    add_iface(&mut s, "router", "net1");
    add_iface(&mut s, "router", "net2");
    settle(&mut s);
    let before = plan_all(&s);
    assert!(before["node2"].routers["router"].default_route().is_none());
    assert!(before["node1"].routers["router"].default_route().is_none());
    add_ext_net(&mut s);
    set_gateway(&mut s, "router", "163.3.124.10");
    settle(&mut s);
    assert_guide_shape(&s, false);
}

#[test]
fn interface_removal_withdraws_routes_and_the_instance() {
    let mut s = guide();
    s.floating_ips.clear();
    remove_iface(&mut s, "router", "net1");
    let applied = settle(&mut s);
    assert_eq!(
        without_placements(&applied.release),
        vec![AllocationKey::BridgeIp {
            router_id: "router".into(),
            pod: "RegionOne".into(),
        }]
    );
    let plans = plan_all(&s);
    assert!(plans["node1"].routers.is_empty());
    let r2 = &plans["node2"].routers["router"];
    assert_eq!(r2.route_to(&net("10.0.1.0/24")), None);
    assert_eq!(r2.routes.len(), 1);
    assert_eq!(r2.nat.snat[0].sources, vec![net("10.0.2.0/24")]);
    assert!(r2
        .probe_targets
        .iter()
        .all(|p| p.kind == wire::ProbeKind::ExternalGateway));
    // The bridge VLAN is no longer shared with another node: not trunked.
    assert!(plans["node1"].bridges["br-vlan"].trunks.is_empty());
    assert!(plans["node2"].bridges["br-vlan"].trunks.is_empty());
}

#[test]
fn router_deletion_releases_everything_and_affects_both_nodes() {
    let old = guide();
    let mut s = old.clone();
    s.floating_ips.clear();
    s.router_interfaces.retain(|i| i.router_id != "router");
    s.routers.retain(|r| r.id != "router");
    let mut touched = affected_nodes(&old, &Change::Router("router".into()));
    touched.extend(affected_nodes(&s, &Change::Router("router".into())));
    assert_eq!(touched, BTreeSet::from(["node1".into(), "node2".into()]));
    let applied = settle(&mut s);
    assert!(applied.release.contains(&AllocationKey::BridgeNetwork {
        project_id: "demo".into()
    }));
    assert_eq!(
        without_placements(&applied.release).len(),
        3,
        "{:?}",
        applied.release
    );
    assert!(s.allocations.bridge_networks.is_empty());
    let plans = plan_all(&s);
    for p in plans.values() {
        assert!(p.routers.is_empty());
        assert!(p.bridges.values().all(|b| b.trunks.is_empty()));
    }
    // VMs keep their ports and tags.
    assert_eq!(plans["node1"].ports["vm1"].tag, Some(101));
}

#[test]
fn floating_ip_on_vm_in_gateway_pod_and_non_gateway_pod() {
    let mut s = guide();
    add_fip(&mut s, "demo", "fip2", "163.3.124.21", "vm2");
    settle(&mut s);
    let plans = plan_all(&s);
    let r2 = &plans["node2"].routers["router"];
    let fl: Vec<_> = r2
        .nat
        .floating
        .iter()
        .map(|f| (f.floating_ip, f.fixed_ip))
        .collect();
    assert_eq!(
        fl,
        vec![
            (ip("163.3.124.20"), ip("10.0.1.11")),
            (ip("163.3.124.21"), ip("10.0.2.12")),
        ]
    );
    // vm1's traffic is carried over the bridge: RegionTwo routes net1 to RegionOne's bridge IP,
    // and RegionOne's instance has no NAT of its own.
    let b1 = s.allocations.bridge_ip("router", "RegionOne").unwrap();
    assert_eq!(r2.route_to(&net("10.0.1.0/24")), Some(b1));
    assert!(plans["node1"].routers["router"].nat.floating.is_empty());
    // Disassociating fip1 only touches the gateway node.
    assert_eq!(
        affected_nodes(&s, &Change::FloatingIp("fip1".into())),
        BTreeSet::from(["node2".to_string()])
    );
}

#[test]
fn floating_ip_on_another_projects_port_is_refused() {
    let mut s = guide();
    add_local_net(&mut s, "eve", "eve-net", "10.9.0.0/24");
    add_vm(&mut s, "eve", "eve-vm", "eve-net", "10.9.0.5", "node1");
    settle(&mut s);
    let fip = FloatingIp {
        id: "fip-x".into(),
        project_id: "demo".into(),
        floating_network_id: "ext-net".into(),
        floating_ip_address: ip("163.3.124.30"),
        port_id: Some("eve-vm".into()),
        fixed_ip_address: None,
    };
    let err = validate_floating_ip(&s, &fip).unwrap_err();
    assert!(
        matches!(&err, ValidationError::FloatingIpForeignPort { port_project, fip_project, .. }
            if port_project == "eve" && fip_project == "demo"),
        "{err:?}"
    );
    assert!(err.to_string().contains("eve-vm"));
    // Eve's own FIP on her port has no router of hers to serve it.
    let mut own = fip.clone();
    own.project_id = "eve".into();
    assert!(matches!(
        validate_floating_ip(&s, &own),
        Err(ValidationError::FloatingIpUnreachable { .. })
    ));
    // Even if stored, the planner never serves it.
    s.floating_ips.push(fip);
    let plans = plan_all(&s);
    assert_eq!(plans["node2"].routers["router"].nat.floating.len(), 1);
    assert_eq!(validate(&s).len(), 1);
}

#[test]
fn local_router_and_a_network_of_another_pod_cannot_meet() {
    let mut s = guide();
    add_router(&mut s, "demo", "r-local", &["RegionOne"]);
    add_iface(&mut s, "r-local", "net2");
    let errs = validate_router(&s, "r-local");
    assert!(
        matches!(&errs[..], [ValidationError::RouterNetworkApart { router_pod, network_id, .. }]
            if router_pod == "RegionOne" && network_id == "net2"),
        "{errs:?}"
    );
    // A gateway in RegionTwo cannot meet it either.
    remove_iface(&mut s, "r-local", "net2");
    add_iface(&mut s, "r-local", "net1");
    set_gateway(&mut s, "r-local", "163.3.124.11");
    let errs = validate_router(&s, "r-local");
    assert!(
        matches!(&errs[..], [ValidationError::GatewayApart { network_pod, .. }] if network_pod == "RegionTwo"),
        "{errs:?}"
    );
}

#[test]
fn local_router_needs_no_bridge_network() {
    let mut s = base();
    add_local_net(&mut s, "solo", "n1", "10.1.0.0/24");
    add_vm(&mut s, "solo", "v1", "n1", "10.1.0.5", "node1");
    add_router(&mut s, "solo", "rl", &["az1"]);
    add_iface(&mut s, "rl", "n1");
    let applied = settle(&mut s);
    assert_eq!(
        without_placements(&applied.allocate),
        vec![AllocationKey::LocalTag {
            network_id: "n1".into(),
            pod: "RegionOne".into()
        }]
    );
    let plans = plan_all(&s);
    let r = &plans["node1"].routers["rl"];
    assert_eq!(r.legs.len(), 1);
    assert_eq!(r.legs[0].kind, LegKind::Internal);
    assert!(plans["node2"].routers.is_empty());
}

#[test]
fn required_allocations_and_releases_follow_the_routers() {
    let mut s = guide();
    assert!(required_allocations(&s).is_empty());
    // A second non-local router of the same project shares the bridge network.
    add_router(&mut s, "demo", "router2", &[]);
    add_iface(&mut s, "router2", "net2");
    let plan = required_allocations(&s);
    assert_eq!(
        without_placements(&plan.allocate),
        vec![AllocationKey::BridgeIp {
            router_id: "router2".into(),
            pod: "RegionTwo".into()
        }]
    );
    assert!(plan.release.is_empty());
    // A router of a new project needs its own bridge network first (sorted first).
    add_router(&mut s, "other", "r3", &[]);
    let plan = required_allocations(&s);
    assert_eq!(
        plan.allocate[0],
        AllocationKey::BridgeNetwork {
            project_id: "other".into()
        }
    );
    settle(&mut s);
    // router2's instance probes the project's other instances.
    let plans = plan_all(&s);
    assert_eq!(plans["node2"].routers["router2"].probe_targets.len(), 2);
    // Deleting the last non-local router of "other" releases its bridge network.
    s.routers.retain(|r| r.id != "r3");
    assert_eq!(
        required_allocations(&s).release,
        vec![AllocationKey::BridgeNetwork {
            project_id: "other".into()
        }]
    );
}

#[test]
fn instance_goes_to_the_node_with_the_needed_mappings_then_the_rendezvous_order() {
    let mut s = guide();
    // RegionTwo gets a node sorting before node2 but without the extern mapping.
    s.nodes
        .push(node("node0", "RegionTwo", &[("bridge", "br-vlan")]));
    let plans = plan_all(&s);
    assert!(plans["node0"].routers.is_empty());
    assert!(plans["node2"].routers.contains_key("router"));
    assert_eq!(
        Planner::new(&s).candidates("RegionTwo", "router"),
        ["node2", "node0"]
    );
    // A RegionOne twin with the same mappings: the rendezvous order of the router decides.
    s.nodes
        .push(node("node0b", "RegionOne", &[("bridge", "br-vlan")]));
    let order = Planner::new(&s).candidates("RegionOne", "router");
    assert_eq!(order.len(), 2);
    let (host, other) = (order[0], order[1]);
    let plans = plan_all(&s);
    assert!(plans[host].routers.contains_key("router"));
    assert!(plans[other].routers.is_empty());
    // vm1 stays on node1; net1 spans two nodes of the pod when the instance went to node0b:
    // its local tag is trunked there.
    if host == "node0b" {
        assert_eq!(
            plans["node1"].bridges["br-vlan"].trunks,
            BTreeSet::from([101])
        );
    }
}

#[test]
fn incremental_replan_matches_full_plan_on_every_change() {
    let old = guide();
    let mut s = old.clone();
    add_vm(&mut s, "demo", "vm5", "net2", "10.0.2.13", "node2");
    settle(&mut s);
    let change = Change::Port("vm5".into());
    let mut touched = affected_nodes(&old, &change);
    touched.extend(affected_nodes(&s, &change));
    assert!(touched.contains("node2"));
    let full_old = plan_all(&old);
    let full_new = plan_all(&s);
    let part = plan_nodes(&s, touched.iter().map(String::as_str));
    for (name, state) in &full_new {
        match part.get(name) {
            Some(p) => assert_eq!(p, state),
            None => assert!(
                state.same_content(&full_old[name]),
                "{name} changed but not re-planned"
            ),
        }
    }
    assert!(!full_new["node2"].same_content(&full_old["node2"]));
}

#[test]
fn registration_converts_to_a_planner_node() {
    let reg = wire::NodeRegistration {
        pod: "RegionTwo".into(),
        node: "node2".into(),
        bridge_mappings: [("extern".to_string(), "br-ext".to_string())].into(),
        uplinks: ["extern".to_string()].into(),
        local_ip: None,
    };
    let n = Node::from(&reg);
    assert_eq!(n, node("node2", "RegionTwo", &[("extern", "br-ext")]));
}

#[test]
fn plan_does_not_depend_on_the_order_of_the_snapshot_lists() {
    let mut s = guide();
    add_vlan_net(&mut s, "demo", "net3", 2100, &[], "10.0.3.0/24");
    add_vm(&mut s, "demo", "vm3a", "net3", "10.0.3.11", "node1");
    add_vm(&mut s, "demo", "vm3b", "net3", "10.0.3.12", "node2");
    add_iface(&mut s, "router", "net3");
    add_fip(&mut s, "demo", "fip2", "163.3.124.21", "vm2");
    settle(&mut s);
    let want = plan_all(&s);
    let mut r = s.clone();
    r.pods.reverse();
    r.nodes.reverse();
    r.networks.reverse();
    r.subnets.reverse();
    r.routers.reverse();
    r.router_interfaces.reverse();
    r.floating_ips.reverse();
    assert_eq!(plan_all(&r), want);
    assert_eq!(
        serde_json::to_vec(&plan_all(&r)).unwrap(),
        serde_json::to_vec(&want).unwrap()
    );
}

#[test]
fn flat_external_network_is_untagged() {
    let mut s = guide();
    let ext = s.networks.iter_mut().find(|n| n.id == "ext-net").unwrap();
    ext.network_type = NetworkType::Flat;
    ext.segmentation_id = None;
    settle(&mut s);
    let plans = plan_all(&s);
    let g = plans["node2"].routers["router"]
        .leg(LegKind::Gateway)
        .unwrap()
        .clone();
    assert_eq!((g.bridge.as_str(), g.tag), ("br-ext", None));
    let b = &plans["node2"].bridges["br-ext"];
    assert!(b.untagged);
    assert!(b.trunks.is_empty());
    assert!(!plans["node2"].bridges["br-vlan"].untagged);
}

/// `validate_router_change` answers what `validate_router` answers on a copy of the snapshot
/// with the router replaced (or added, last) and the extra interface added, last — the copy
/// the controller made before every router write.
#[test]
fn validate_router_change_answers_as_a_changed_copy_would() {
    fn copy_with(s: &Snapshot, r: &Router, extra: Option<&RouterInterface>) -> Snapshot {
        let mut c = s.clone();
        c.routers.retain(|x| x.id != r.id);
        c.routers.push(r.clone());
        c.router_interfaces.extend(extra.cloned());
        c
    }
    let iface = |s: &Snapshot, router: &str, network: &str| -> RouterInterface {
        let mut c = s.clone();
        add_iface(&mut c, router, network);
        c.router_interfaces.pop().unwrap()
    };
    let mut s = guide();
    add_router(&mut s, "demo", "r-local", &["RegionOne"]);
    add_iface(&mut s, "r-local", "net1");
    let mut shared = s.clone();
    shared
        .networks
        .iter_mut()
        .find(|n| n.id == "net2")
        .unwrap()
        .shared = true;
    let base = |s: &Snapshot, id: &str| s.routers.iter().find(|r| r.id == id).unwrap().clone();
    let mut cases: Vec<(&str, Snapshot, Router, Option<RouterInterface>)> = Vec::new();
    // A local router meeting a network of the other pod: refused.
    cases.push((
        "apart",
        s.clone(),
        base(&s, "r-local"),
        Some(iface(&s, "r-local", "net2")),
    ));
    // The same on a shared network (the whole snapshot is the scope).
    cases.push((
        "apart, shared",
        shared.clone(),
        base(&shared, "r-local"),
        Some(iface(&shared, "r-local", "net2")),
    ));
    // Re-hinted to the other pod: its own network is apart now.
    let mut moved = base(&s, "r-local");
    moved.az_hints = vec!["RegionTwo".into()];
    cases.push(("re-hinted", s.clone(), moved, None));
    // A hint naming no pod.
    let mut unknown = base(&s, "r-local");
    unknown.az_hints = vec!["nowhere".into()];
    cases.push(("unknown hint", s.clone(), unknown, None));
    // A new router (not in the snapshot), hinted, with a first interface: fine.
    let fresh = Router {
        id: "r-new".into(),
        project_id: "demo".into(),
        az_hints: vec!["RegionOne".into()],
        ..Default::default()
    };
    cases.push((
        "new",
        s.clone(),
        fresh.clone(),
        Some(iface(&s, "r-new", "net1")),
    ));
    // The guide's router gaining a gateway on the external network.
    let mut gw = base(&s, "router");
    gw.external_gateway = Some(ExternalGateway {
        network_id: "ext-net".into(),
        enable_snat: true,
        external_fixed_ips: Vec::new(),
    });
    cases.push(("gateway", s.clone(), gw, None));
    // Another project's routers, which use the external network only through this change:
    // hinted to the other pod than the external network's (refused), and not hinted (fine).
    for (name, hints) in [
        ("gateway apart, new project", vec!["RegionOne".to_string()]),
        ("gateway, new project", vec![]),
    ] {
        let mut other = s.clone();
        add_router(&mut other, "other", "r-other", &[]);
        let mut r = base(&other, "r-other");
        r.az_hints = hints;
        r.external_gateway = Some(ExternalGateway {
            network_id: "ext-net".into(),
            enable_snat: true,
            external_fixed_ips: Vec::new(),
        });
        cases.push((name, other, r, None));
    }
    let mut refused = 0;
    for (name, snap, r, extra) in &cases {
        let got = validate_router_change(snap, r, extra.as_ref());
        let want = validate_router(&copy_with(snap, r, extra.as_ref()), &r.id);
        assert_eq!(got, want, "{name}");
        let indexed =
            validate_router_change_indexed(snap, &ScopeIndex::build(snap), r, extra.as_ref());
        assert_eq!(indexed, want, "{name}: through the index");
        refused += usize::from(!got.is_empty());
    }
    assert!(refused >= 3, "the cases include refusals: {refused}");
}
