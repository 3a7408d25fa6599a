//! Incremental planning equals full planning: for a varied cloud and a list of changes,
//! `replan` (patching the previous states) and `affected_nodes` + `plan_nodes` give exactly
//! `plan_all` on every node, and nodes left out did not change.

mod common;

use std::collections::BTreeMap;

use common::*;
use planner::*;

const PODS: usize = 5;

/// [`cloud_with`] without DHCP nor IPv6.
fn cloud() -> Snapshot {
    cloud_with(false, false)
}

/// 5 pods x 2 nodes (the second node of each pod also maps `extern`), 12 projects with local,
/// hinted and stretched networks, non-local and local routers, gateways, floating IPs, and a
/// shared network used by several projects.
/// With `dhcp`, every tenant subnet has DHCP on (a server per network and pod).
/// With `v6`, the cloud is dual-stack: an IPv6 bridge pool, an IPv6 subnet on every tenant
/// network (modes cycling through slaac, dhcpv6-stateless, dhcpv6-stateful and none; the
/// routers attached to all but the `n1` ones), VMs with IPv6 addresses, and ext-net with an
/// IPv6 subnet where the gateways get an address.
fn cloud_with(dhcp: bool, v6: bool) -> Snapshot {
    let mut s = Snapshot::default();
    for p in 0..PODS {
        s.pods.push(Pod {
            region_name: format!("R{p}"),
            az_name: Some(format!("az{p}")),
        });
        s.nodes.push(node(
            &format!("r{p}-a"),
            &format!("R{p}"),
            &[("bridge", "br-vlan")],
        ));
        s.nodes.push(node(
            &format!("r{p}-b"),
            &format!("R{p}"),
            &[("bridge", "br-vlan"), ("extern", "br-ext")],
        ));
    }
    add_ext_net_in(&mut s, "R0");
    add_shared_vlan_net(&mut s, "shared", 2900, "192.168.0.0/24");
    // A provider network with a port on every node that no project's router or port uses:
    // re-plans of the projects leave it out (see `open_networks_used`), and must still leave
    // its ports and trunks on every node as they were.
    add_shared_vlan_net(&mut s, "fleet", 2950, "192.168.8.0/24");
    for (k, n) in s.nodes.clone().iter().enumerate() {
        add_vm(
            &mut s,
            "admin",
            &format!("fleet-{}", n.name),
            "fleet",
            &format!("192.168.8.{}", 10 + k),
            &n.name,
        );
    }
    for pr in 0..12usize {
        let p = format!("p{pr}");
        let host = |k: usize| format!("r{}-{}", k % PODS, ["b", "a", "a"][k % 3]);
        let r = format!("{p}-r");
        add_router(&mut s, &p, &r, if pr % 4 == 3 { &["R1"] } else { &[] });
        for k in 0..3usize {
            let n = format!("{p}-n{k}");
            let cidr = format!("10.{k}.0.0/24");
            if pr % 4 == 3 {
                // local router in R1: its networks are hinted there
                add_vlan_net(&mut s, &p, &n, 2300 + (pr * 3 + k) as u16, &["az1"], &cidr);
                add_vm(
                    &mut s,
                    &p,
                    &format!("{n}-vm"),
                    &n,
                    &format!("10.{k}.0.5"),
                    "r1-a",
                );
            } else if k == 2 {
                add_vlan_net(&mut s, &p, &n, 2100 + pr as u16, &[], &cidr);
                add_vm(
                    &mut s,
                    &p,
                    &format!("{n}-vm"),
                    &n,
                    &format!("10.{k}.0.5"),
                    &host(pr),
                );
                add_vm(
                    &mut s,
                    &p,
                    &format!("{n}-vm2"),
                    &n,
                    &format!("10.{k}.0.6"),
                    &host(pr + 2),
                );
            } else {
                add_local_net(&mut s, &p, &n, &cidr);
                add_vm(
                    &mut s,
                    &p,
                    &format!("{n}-vm"),
                    &n,
                    &format!("10.{k}.0.5"),
                    &host(pr + k),
                );
            }
            add_iface(&mut s, &r, &n);
        }
        if pr.is_multiple_of(2) {
            add_vm(
                &mut s,
                &p,
                &format!("{p}-shared-vm"),
                "shared",
                &format!("192.168.0.{}", 10 + pr),
                &host(pr + 1),
            );
        }
        if pr % 4 != 3 && pr.is_multiple_of(3) {
            set_gateway(&mut s, &r, &format!("163.3.124.{}", 10 + pr));
            add_fip(
                &mut s,
                &p,
                &format!("{p}-fip"),
                &format!("163.3.124.{}", 100 + pr),
                &format!("{p}-n0-vm"),
            );
        }
    }
    if v6 {
        add_ipv6(&mut s);
    }
    if dhcp {
        for sub in s.subnets.iter_mut().filter(|x| x.network_id != "ext-net") {
            sub.enable_dhcp = true;
        }
    }
    settle(&mut s);
    assert!(validate(&s).is_empty(), "{:?}", validate(&s));
    s
}

/// Make [`cloud_with`]'s cloud dual-stack (see there).
fn add_ipv6(s: &mut Snapshot) {
    use wire::Ipv6AddressMode as M;
    s.bridge_cidr_v6 = Some("fd64::/48".parse().unwrap());
    let modes = [
        Some(M::Slaac),
        Some(M::Dhcpv6Stateless),
        Some(M::Dhcpv6Stateful),
        None,
    ];
    add_subnet_v6(s, "ext-net", "2001:db8:124::/64", None, None, false);
    add_subnet_v6(s, "shared", "fd00:ffff::/64", modes[0], modes[0], false);
    for pr in 0..12usize {
        for k in 0..3usize {
            let n = format!("p{pr}-n{k}");
            let mode = modes[(pr + k) % modes.len()];
            add_subnet_v6(s, &n, &format!("fd00:{pr}:{k}::/64"), mode, mode, false);
            if k != 1 {
                add_iface_subnet(s, &format!("p{pr}-r"), &format!("sub6-{n}"));
            }
        }
    }
    let v6_subnets: std::collections::BTreeMap<String, ipnet::IpNet> = s
        .subnets
        .iter()
        .filter(|x| x.ip_version == 6)
        .map(|x| (x.network_id.clone(), x.cidr))
        .collect();
    for (i, p) in s.ports.iter_mut().enumerate() {
        let Some(ipnet::IpNet::V6(cidr)) = v6_subnets.get(&p.network_id) else {
            continue;
        };
        if !p.is_vm_port() {
            continue;
        }
        let addr = u128::from(cidr.network()) + 0x100 + i as u128;
        p.fixed_ips.push(FixedIp {
            subnet_id: format!("sub6-{}", p.network_id),
            ip_address: std::net::IpAddr::V6(addr.into()),
        });
    }
    let gateways: Vec<(String, String)> = s
        .routers
        .iter()
        .filter(|r| r.external_gateway.is_some())
        .map(|r| (r.id.clone(), r.project_id.clone()))
        .collect();
    for (r, p) in gateways {
        let n: usize = p[1..].parse().unwrap();
        add_gateway_v6(s, &r, &format!("2001:db8:124::{}", 10 + n));
    }
}

fn check(name: &str, old: &Snapshot, new: &Snapshot, change: Change) {
    let prev = plan_all(old);
    let want = plan_all(new);
    let got = replan_both(name, old, new, &prev, &change);
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

/// Applies `f` to the cloud without and with DHCP, IPv4 only and dual-stack; scoped
/// allocations and re-planning must equal the full answers on each.
fn mutate(name: &str, change: Change, f: impl Fn(&mut Snapshot)) {
    mutate_on(name, change, &[false, true], f)
}

/// [`mutate`] on the dual-stack clouds only (the change is about their IPv6 parts).
fn mutate_v6(name: &str, change: Change, f: impl Fn(&mut Snapshot)) {
    mutate_on(name, change, &[true], f)
}

fn mutate_on(name: &str, change: Change, v6s: &[bool], f: impl Fn(&mut Snapshot)) {
    for (dhcp, v6) in [false, true]
        .into_iter()
        .flat_map(|d| v6s.iter().map(move |v| (d, *v)))
    {
        let name = format!("{name} (dhcp: {dhcp}, v6: {v6})");
        let old = cloud_with(dhcp, v6);
        let mut new = old.clone();
        f(&mut new);
        assert_scoped_allocations(&name, &old, &new, &change);
        settle(&mut new);
        check(&name, &old, &new, change.clone());
    }
}

#[test]
fn dhcp_changes_replan_like_full() {
    assert!(
        plan_all(&cloud_with(true, false))
            .values()
            .map(|s| s.dhcp.len())
            .sum::<usize>()
            > 30,
        "the DHCP cloud runs servers"
    );
    let sub = |s: &mut Snapshot, id: &str| -> Subnet {
        s.subnets.iter().find(|x| x.id == id).unwrap().clone()
    };
    mutate("dhcp off", Change::Subnet("sub-p1-n2".into()), |s| {
        let mut x = sub(s, "sub-p1-n2");
        x.enable_dhcp = false;
        s.subnets.retain(|y| y.id != x.id);
        s.subnets.push(x);
        s.subnets.sort_by(|a, b| a.id.cmp(&b.id));
    });
    mutate("dhcp on", Change::Subnet("sub-p5-n0".into()), |s| {
        s.subnets
            .iter_mut()
            .find(|x| x.id == "sub-p5-n0")
            .unwrap()
            .enable_dhcp = true;
    });
    mutate("dns and routes", Change::Subnet("sub-p2-n2".into()), |s| {
        let x = s.subnets.iter_mut().find(|x| x.id == "sub-p2-n2").unwrap();
        x.dns_nameservers = vec![ip("10.9.9.9")];
        x.host_routes = vec![UserRoute {
            destination: net("10.8.0.0/16"),
            nexthop: ip("10.2.0.254"),
        }];
        x.gateway_ip = None;
    });
    mutate(
        "second dhcp subnet",
        Change::Subnet("sub2-p4-n2".into()),
        |s| {
            s.subnets.push(Subnet {
                id: "sub2-p4-n2".into(),
                network_id: "p4-n2".into(),
                cidr: net("10.7.0.0/24"),
                gateway_ip: Some(ip("10.7.0.1")),
                enable_dhcp: true,
                ..Default::default()
            });
        },
    );
    mutate("mtu", Change::Network("p5-n2".into()), |s| {
        s.networks.iter_mut().find(|n| n.id == "p5-n2").unwrap().mtu = Some(1400);
    });
    mutate(
        "new vm in a new pod",
        Change::Port("p1-n2-vm9".into()),
        |s| {
            add_vm(s, "p1", "p1-n2-vm9", "p1-n2", "10.2.0.99", "r4-a");
        },
    );
    mutate("unbound vm", Change::Port("p1-n2-vm8".into()), |s| {
        add_vm(s, "p1", "p1-n2-vm8", "p1-n2", "10.2.0.98", "r4-a");
        s.ports.last_mut().unwrap().binding_host = None;
    });
    mutate(
        "vm on a node of its own",
        Change::Port("p0-n0-vm7".into()),
        |s| {
            // Local network in R0 with a VM on r0-b: the server there runs on r0-a.
            add_vm(s, "p0", "p0-n0-vm7", "p0-n0", "10.0.0.97", "r0-b");
        },
    );
}

#[test]
fn interface_changes_replan_like_full() {
    mutate("remove local iface", Change::Router("p0-r".into()), |s| {
        remove_iface(s, "p0-r", "p0-n1")
    });
    mutate(
        "remove stretched iface",
        Change::Router("p1-r".into()),
        |s| remove_iface(s, "p1-r", "p1-n2"),
    );
    mutate("add iface on new net", Change::Router("p2-r".into()), |s| {
        add_local_net(s, "p2", "p2-n9", "10.9.0.0/24");
        add_vm(s, "p2", "p2-n9-vm", "p2-n9", "10.9.0.5", "r4-a");
        add_iface(s, "p2-r", "p2-n9");
    });
    mutate("local router iface", Change::Router("p3-r".into()), |s| {
        remove_iface(s, "p3-r", "p3-n0")
    });
}

#[test]
fn gateway_and_router_changes_replan_like_full() {
    mutate("set gateway", Change::Router("p1-r".into()), |s| {
        set_gateway(s, "p1-r", "163.3.124.61")
    });
    mutate("clear gateway", Change::Router("p0-r".into()), |s| {
        s.floating_ips.retain(|f| f.id != "p0-fip");
        clear_gateway(s, "p0-r");
    });
    // ext-net is used by p1 only after: the re-plan indexes it on both sides.
    mutate(
        "gateway on a router without one",
        Change::Router("p1-r".into()),
        |s| {
            set_gateway(s, "p1-r", "163.3.124.61");
        },
    );
    mutate("delete router", Change::Router("p4-r".into()), |s| {
        s.router_interfaces.retain(|i| i.router_id != "p4-r");
        s.routers.retain(|r| r.id != "p4-r");
    });
    mutate("new project router", Change::Router("q-r".into()), |s| {
        add_local_net(s, "q", "q-n", "10.0.0.0/24");
        add_vm(s, "q", "q-vm", "q-n", "10.0.0.5", "r2-b");
        add_router(s, "q", "q-r", &[]);
        add_iface(s, "q-r", "q-n");
    });
}

#[test]
fn port_and_floating_ip_changes_replan_like_full() {
    mutate(
        "move stretched port",
        Change::Port("p5-n2-vm".into()),
        |s| {
            s.ports
                .iter_mut()
                .find(|p| p.id == "p5-n2-vm")
                .unwrap()
                .binding_host = Some("r3-b".into());
        },
    );
    mutate("unbind local port", Change::Port("p6-n0-vm".into()), |s| {
        s.ports
            .iter_mut()
            .find(|p| p.id == "p6-n0-vm")
            .unwrap()
            .binding_host = None;
    });
    mutate("delete port", Change::Port("p1-n2-vm2".into()), |s| {
        s.ports.retain(|p| p.id != "p1-n2-vm2");
    });
    mutate(
        "port on shared net",
        Change::Port("p2-shared-vm".into()),
        |s| {
            s.ports
                .iter_mut()
                .find(|p| p.id == "p2-shared-vm")
                .unwrap()
                .binding_host = Some("r0-a".into());
        },
    );
    mutate("delete fip", Change::FloatingIp("p6-fip".into()), |s| {
        s.floating_ips.retain(|f| f.id != "p6-fip");
    });
    mutate("new fip", Change::FloatingIp("p0-fip2".into()), |s| {
        add_fip(s, "p0", "p0-fip2", "163.3.124.200", "p0-n2-vm");
    });
}

#[test]
fn node_changes_fall_back_to_full() {
    mutate("new node", Change::Node("r1-0".into()), |s| {
        s.nodes.push(node(
            "r1-0",
            "R1",
            &[("bridge", "br-vlan"), ("extern", "br-ext")],
        ));
    });
    // A change that changes nothing: every node it concerns keeps its state, so none is
    // returned (the realizer has nothing to compare or publish).
    let old = cloud();
    let prev: BTreeMap<_, _> = plan_all(&old);
    assert!(!affected_nodes(&old, &Change::Router("p0-r".into())).is_empty());
    assert!(replan(&old, &old, &prev, &Change::Router("p0-r".into())).is_empty());
}

#[test]
fn ipv6_changes_replan_like_full() {
    use wire::Ipv6AddressMode as M;
    let plans = plan_all(&cloud_with(true, true));
    let legs = plans
        .values()
        .flat_map(|s| s.routers.values())
        .flat_map(|r| r.legs.iter());
    assert!(legs.clone().filter(|l| l.ipv6_ra.is_some()).count() > 10);
    assert!(legs
        .clone()
        .any(|l| l.ipv6_ra.as_ref().is_some_and(|ra| ra.clients.is_some())));
    assert!(legs.clone().any(|l| !l.extra_addresses.is_empty()));
    assert!(plans
        .values()
        .flat_map(|s| s.dhcp.values())
        .flat_map(|d| d.subnets.iter())
        .any(|x| x.ipv6_address_mode == Some(M::Dhcpv6Stateful)));
    assert!(plans
        .values()
        .flat_map(|s| s.routers.values())
        .any(|r| r
            .routes
            .iter()
            .any(|x| x.destination.addr().is_ipv6() && x.destination.prefix_len() == 64)));
    let set_modes = |s: &mut Snapshot, id: &str, m: Option<M>| {
        let x = s.subnets.iter_mut().find(|x| x.id == id).unwrap();
        x.ipv6_ra_mode = m;
        x.ipv6_address_mode = m;
    };
    mutate_v6(
        "ra mode stateful",
        Change::Subnet("sub6-p1-n2".into()),
        |s| set_modes(s, "sub6-p1-n2", Some(M::Dhcpv6Stateful)),
    );
    mutate_v6("modes off", Change::Subnet("sub6-p2-n0".into()), |s| {
        set_modes(s, "sub6-p2-n0", None)
    });
    mutate_v6("v6 dns", Change::Subnet("sub6-p5-n2".into()), |s| {
        s.subnets
            .iter_mut()
            .find(|x| x.id == "sub6-p5-n2")
            .unwrap()
            .dns_nameservers = vec![ip("fd00::53")];
    });
    mutate_v6(
        "remove stretched v6 iface",
        Change::Router("p1-r".into()),
        |s| {
            s.router_interfaces
                .retain(|i| !(i.router_id == "p1-r" && i.subnet_id == "sub6-p1-n2"))
        },
    );
    mutate_v6(
        "remove local v6 iface",
        Change::Router("p4-r".into()),
        |s| {
            s.router_interfaces
                .retain(|i| !(i.router_id == "p4-r" && i.subnet_id == "sub6-p4-n0"))
        },
    );
    mutate_v6("attach v6 subnet", Change::Router("p5-r".into()), |s| {
        add_iface_subnet(s, "p5-r", "sub6-p5-n1")
    });
    mutate_v6(
        "drop v6 gateway address",
        Change::Router("p6-r".into()),
        |s| {
            for p in &mut s.ports {
                if p.device_id == "p6-r" && p.device_owner == OWNER_ROUTER_GATEWAY {
                    p.fixed_ips.retain(|f| f.ip_address.is_ipv4());
                }
            }
            let r = s.routers.iter_mut().find(|r| r.id == "p6-r").unwrap();
            r.external_gateway
                .as_mut()
                .unwrap()
                .external_fixed_ips
                .retain(|f| f.ip_address.is_ipv4());
        },
    );
    mutate_v6(
        "v6 vm on stretched net",
        Change::Port("p2-n2-vm9".into()),
        |s| {
            add_vm(s, "p2", "p2-n2-vm9", "p2-n2", "10.2.0.99", "r3-a");
            add_fixed_ip(s, "p2-n2-vm9", "sub6-p2-n2", "fd00:2:2::99");
        },
    );
}

/// The cloud with its id-keyed lists sorted by id, as the controller keeps them (the index's
/// upserts binary-search them).
fn sorted_cloud() -> Snapshot {
    let mut s = cloud_with(true, true);
    s.networks.sort_by(|a, b| a.id.cmp(&b.id));
    s.subnets.sort_by(|a, b| a.id.cmp(&b.id));
    s.routers.sort_by(|a, b| a.id.cmp(&b.id));
    s.floating_ips.sort_by(|a, b| a.id.cmp(&b.id));
    s
}

#[test]
fn scope_index_edits_equal_a_rebuild() {
    let mut s = sorted_cloud();
    let mut ix = ScopeIndex::build(&s);
    let old = s.clone();
    let old_ix = ix.clone();
    let step = |name: &str, s: &Snapshot, ix: &ScopeIndex| {
        assert_eq!(
            *ix,
            ScopeIndex::build(s),
            "after {name}: index differs from a rebuild"
        );
    };
    // Networks: one removed from the middle, one inserted before it, one turned shared (its
    // key moves from its project to everyone's), one re-projected.
    let mid = s.networks[s.networks.len() / 2].clone();
    ix.upsert_network(&mut s, &mid.id.clone(), None);
    step("removing a network", &s, &ix);
    let fresh = Network {
        id: format!("{}-new", &s.networks[1].id),
        project_id: "p3".into(),
        ..s.networks[1].clone()
    };
    ix.upsert_network(&mut s, &fresh.id.clone(), Some(fresh));
    step("inserting a network", &s, &ix);
    let mut shared = s.networks[3].clone();
    shared.shared = !shared.shared;
    ix.upsert_network(&mut s, &shared.id.clone(), Some(shared));
    step("sharing a network", &s, &ix);
    ix.upsert_network(&mut s, "no-such-network", None);
    step("removing a missing network", &s, &ix);
    // Subnets, routers and floating IPs: first, last and middle.
    for at in [0, s.subnets.len() - 1, s.subnets.len() / 3] {
        let sub = s.subnets[at].clone();
        ix.upsert_subnet(&mut s, &sub.id, None);
        step("removing a subnet", &s, &ix);
        let moved = Subnet {
            network_id: s.networks[0].id.clone(),
            ..sub.clone()
        };
        ix.upsert_subnet(&mut s, &sub.id, Some(moved));
        step("inserting a subnet", &s, &ix);
    }
    for at in [0, s.routers.len() - 1, s.routers.len() / 2] {
        let r = s.routers[at].clone();
        let other = Router {
            project_id: "p7".into(),
            ..r.clone()
        };
        ix.upsert_router(&mut s, &r.id, Some(other));
        step("re-projecting a router", &s, &ix);
        ix.upsert_router(&mut s, &r.id, None);
        step("removing a router", &s, &ix);
        ix.upsert_router(&mut s, &r.id, Some(r.clone()));
        step("inserting a router", &s, &ix);
    }
    for at in [0, s.floating_ips.len() - 1] {
        let f = s.floating_ips[at].clone();
        ix.upsert_floating_ip(&mut s, &f.id, None);
        step("removing a floating IP", &s, &ix);
        ix.upsert_floating_ip(&mut s, &f.id, Some(f.clone()));
        step("inserting a floating IP", &s, &ix);
    }
    // Ports and interfaces: removed and inserted again elsewhere in creation order.
    for at in [0, s.ports.len() - 1, s.ports.len() / 2, 5] {
        let p = s.ports[at].clone();
        ix.remove_port(&mut s, &p.id);
        step("removing a port", &s, &ix);
        let to = (at * 7 + 3) % (s.ports.len() + 1);
        ix.insert_port(&mut s, to, p);
        step("inserting a port", &s, &ix);
    }
    // A port replaced in place by a later state of it: bound elsewhere, then turned into
    // another network's router port (its VM-port groups to the others), then back.
    for at in [0, s.ports.len() / 3, s.ports.len() - 1] {
        let p = s.ports[at].clone();
        let moved = Port {
            binding_host: Some("r1-b".into()),
            ..p.clone()
        };
        assert_eq!(ix.replace_port(&mut s, at, moved), Some(p.clone()));
        step("re-binding a port in place", &s, &ix);
        let router_port = Port {
            network_id: s.networks[0].id.clone(),
            device_owner: "network:router_interface".into(),
            device_id: s.routers[1].id.clone(),
            project_id: "p2".into(),
            ..p.clone()
        };
        ix.replace_port(&mut s, at, router_port);
        step("turning a port into a router's in place", &s, &ix);
        ix.replace_port(&mut s, at, p.clone());
        step("turning it back in place", &s, &ix);
        let elsewhere = (at + 1) % s.ports.len();
        assert_eq!(
            ix.replace_port(&mut s, elsewhere, p),
            None,
            "another port's place"
        );
        step("a replace at another port's place", &s, &ix);
    }
    for at in [
        0,
        s.router_interfaces.len() - 1,
        s.router_interfaces.len() / 2,
    ] {
        let i = s.router_interfaces[at].clone();
        ix.remove_interfaces_of_port(&mut s, &i.port_id);
        step("removing an interface", &s, &ix);
        let to = (at * 5 + 1) % (s.router_interfaces.len() + 1);
        ix.insert_interface(&mut s, to, i);
        step("inserting an interface", &s, &ix);
    }
    // The edited snapshot re-plans through its kept index as through a fresh one.
    let prev = plan_all(&old);
    for c in [
        Change::Router(s.routers[2].id.clone()),
        Change::Network(s.networks[2].id.clone()),
        Change::Port(s.ports[7].id.clone()),
    ] {
        assert_eq!(
            replan_indexed((&old, &old_ix), (&s, &ix), &prev, &c),
            replan(&old, &s, &prev, &c),
            "{c:?}: replan through the kept index differs"
        );
    }
}
