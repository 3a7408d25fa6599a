//! The guide's scenario as snapshot-building steps, and a small allocator standing in for the
//! controller's store (sequential, lowest free value first, as a database allocator would).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use planner::*;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub fn pods() -> Vec<Pod> {
    vec![
        Pod {
            region_name: "CentralRegion".into(),
            az_name: None,
        },
        Pod {
            region_name: "RegionOne".into(),
            az_name: Some("az1".into()),
        },
        Pod {
            region_name: "RegionTwo".into(),
            az_name: Some("az2".into()),
        },
    ]
}

pub fn node(name: &str, pod: &str, maps: &[(&str, &str)]) -> Node {
    Node {
        name: name.into(),
        pod: pod.into(),
        bridge_mappings: maps
            .iter()
            .map(|(p, b)| (p.to_string(), b.to_string()))
            .collect(),
        uplinks: maps.iter().map(|(p, _)| p.to_string()).collect(),
        local_ip: None,
        lost: false,
    }
}

/// A node with a tunnel endpoint.
pub fn vx_node(name: &str, pod: &str, maps: &[(&str, &str)], local_ip: &str) -> Node {
    Node {
        local_ip: Some(ip(local_ip)),
        ..node(name, pod, maps)
    }
}

/// A VxLAN tenant network (MTU 1450 as the controller stores it).
pub fn add_vxlan_net(s: &mut Snapshot, project: &str, id: &str, vni: u32, cidr: &str) {
    s.networks.push(Network {
        id: id.into(),
        project_id: project.into(),
        network_type: NetworkType::Vxlan,
        vni: Some(vni),
        mtu: Some(1450),
        ..Default::default()
    });
    add_subnet(s, id, cidr);
}

/// Pods and the guide's two nodes: node1 in RegionOne (bridge:br-vlan), node2 in RegionTwo
/// (bridge:br-vlan, extern:br-ext).
pub fn base() -> Snapshot {
    Snapshot {
        pods: pods(),
        nodes: vec![
            node("node1", "RegionOne", &[("bridge", "br-vlan")]),
            node(
                "node2",
                "RegionTwo",
                &[("bridge", "br-vlan"), ("extern", "br-ext")],
            ),
        ],
        ..Default::default()
    }
}

pub fn add_local_net(s: &mut Snapshot, project: &str, id: &str, cidr: &str) {
    s.networks.push(Network {
        id: id.into(),
        project_id: project.into(),
        network_type: NetworkType::Local,
        ..Default::default()
    });
    add_subnet(s, id, cidr);
}

pub fn add_vlan_net(
    s: &mut Snapshot,
    project: &str,
    id: &str,
    seg: u16,
    hints: &[&str],
    cidr: &str,
) {
    s.networks.push(Network {
        id: id.into(),
        project_id: project.into(),
        network_type: NetworkType::Vlan,
        physnet: Some("bridge".into()),
        segmentation_id: Some(seg),
        az_hints: hints.iter().map(|h| h.to_string()).collect(),
        ..Default::default()
    });
    add_subnet(s, id, cidr);
}

/// A shared VLAN network of `admin` on physnet `bridge`, with one subnet.
pub fn add_shared_vlan_net(s: &mut Snapshot, id: &str, seg: u16, cidr: &str) {
    s.networks.push(Network {
        id: id.into(),
        project_id: "admin".into(),
        network_type: NetworkType::Vlan,
        physnet: Some("bridge".into()),
        segmentation_id: Some(seg),
        shared: true,
        ..Default::default()
    });
    add_subnet(s, id, cidr);
}

/// Subnet id is `sub-<network id>`; gateway `.1`.
pub fn add_subnet(s: &mut Snapshot, network: &str, cidr: &str) {
    add_subnet_dhcp(s, network, cidr, false);
}

/// [`add_subnet`] with `enable_dhcp` as given.
pub fn add_subnet_dhcp(s: &mut Snapshot, network: &str, cidr: &str, dhcp: bool) {
    let cidr = net(cidr);
    let gw = match cidr.network() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) + 1)),
        v6 => v6,
    };
    s.subnets.push(Subnet {
        id: format!("sub-{network}"),
        network_id: network.into(),
        cidr,
        gateway_ip: Some(gw),
        enable_dhcp: dhcp,
        ..Default::default()
    });
}

/// The guide's ext-net: vlan on `extern`, VLAN 3001, hints [RegionTwo], 163.3.124.0/24.
pub fn add_ext_net(s: &mut Snapshot) {
    add_ext_net_in(s, "RegionTwo");
}

/// The guide's ext-net, hosted by `region`.
pub fn add_ext_net_in(s: &mut Snapshot, region: &str) {
    s.networks.push(Network {
        id: "ext-net".into(),
        project_id: "admin".into(),
        network_type: NetworkType::Vlan,
        physnet: Some("extern".into()),
        segmentation_id: Some(3001),
        external: true,
        az_hints: vec![region.into()],
        ..Default::default()
    });
    add_subnet(s, "ext-net", "163.3.124.0/24");
}

pub fn add_vm(s: &mut Snapshot, project: &str, id: &str, network: &str, addr: &str, host: &str) {
    s.ports.push(Port {
        id: id.into(),
        network_id: network.into(),
        project_id: project.into(),
        mac: format!("fa:16:3e:00:00:{:02x}", s.ports.len() + 1),
        fixed_ips: vec![FixedIp {
            subnet_id: format!("sub-{network}"),
            ip_address: ip(addr),
        }],
        device_owner: "compute:nova".into(),
        device_id: format!("vm-{id}"),
        binding_host: Some(host.into()),
        hostname: None,
    });
}

pub fn add_router(s: &mut Snapshot, project: &str, id: &str, hints: &[&str]) {
    s.routers.push(Router {
        id: id.into(),
        project_id: project.into(),
        az_hints: hints.iter().map(|h| h.to_string()).collect(),
        ..Default::default()
    });
}

/// Attach `network`'s subnet with the subnet's gateway IP; the interface port id is
/// `<router>-<network>`.
pub fn add_iface(s: &mut Snapshot, router: &str, network: &str) {
    let sub = s
        .subnets
        .iter()
        .find(|x| x.network_id == network)
        .unwrap()
        .clone();
    s.router_interfaces.push(RouterInterface {
        router_id: router.into(),
        subnet_id: sub.id.clone(),
        port_id: format!("{router}-{network}"),
        ip_address: sub.gateway_ip.unwrap(),
        mac: format!("fa:16:3e:aa:00:{:02x}", s.router_interfaces.len() + 1),
    });
}

pub fn remove_iface(s: &mut Snapshot, router: &str, network: &str) {
    let sub = format!("sub-{network}");
    s.router_interfaces
        .retain(|i| !(i.router_id == router && i.subnet_id == sub));
}

/// Set the router's gateway on ext-net, with its gateway port (id `gw-<router>`) as the
/// controller keeps it: the port backs the gateway leg.
pub fn set_gateway(s: &mut Snapshot, router: &str, gw_ip: &str) {
    s.ports
        .retain(|p| !(p.device_owner == OWNER_ROUTER_GATEWAY && p.device_id == router));
    let mac = fresh_mac(s, 0xcc);
    s.ports.push(Port {
        id: format!("gw-{router}"),
        network_id: "ext-net".into(),
        project_id: String::new(),
        mac,
        fixed_ips: vec![FixedIp {
            subnet_id: "sub-ext-net".into(),
            ip_address: ip(gw_ip),
        }],
        device_owner: OWNER_ROUTER_GATEWAY.into(),
        device_id: router.into(),
        binding_host: None,
        hostname: None,
    });
    let r = s.routers.iter_mut().find(|r| r.id == router).unwrap();
    r.external_gateway = Some(ExternalGateway {
        network_id: "ext-net".into(),
        enable_snat: true,
        external_fixed_ips: vec![FixedIp {
            subnet_id: "sub-ext-net".into(),
            ip_address: ip(gw_ip),
        }],
    });
}

pub fn add_fip(s: &mut Snapshot, project: &str, id: &str, addr: &str, port: &str) {
    s.floating_ips.push(FloatingIp {
        id: id.into(),
        project_id: project.into(),
        floating_network_id: "ext-net".into(),
        floating_ip_address: ip(addr),
        port_id: Some(port.into()),
        fixed_ip_address: None,
    });
}

/// Clear a router's gateway and delete its gateway port.
pub fn clear_gateway(s: &mut Snapshot, router: &str) {
    s.ports
        .retain(|p| !(p.device_owner == OWNER_ROUTER_GATEWAY && p.device_id == router));
    s.routers
        .iter_mut()
        .find(|r| r.id == router)
        .unwrap()
        .external_gateway = None;
}

/// Every MAC the snapshot holds: ports, interfaces and allocated ports.
pub fn macs(s: &Snapshot) -> BTreeSet<String> {
    let a = &s.allocations;
    s.ports
        .iter()
        .map(|p| p.mac.clone())
        .chain(s.router_interfaces.iter().map(|i| i.mac.clone()))
        .chain(
            a.bridge_ips
                .values()
                .flat_map(|m| m.values().map(|p| p.mac.clone())),
        )
        .chain(
            a.leg_ips
                .values()
                .flat_map(|m| m.values().flat_map(|m| m.values().map(|p| p.mac.clone()))),
        )
        .chain(
            a.dhcp_ports
                .values()
                .flat_map(|m| m.values().map(|p| p.mac.clone())),
        )
        .collect()
}

/// The lowest `fa:16:3e:<space>:xx:xx` MAC the snapshot does not hold, as a store keeping MACs
/// unique would give.
pub fn fresh_mac(s: &Snapshot, space: u8) -> String {
    let used = macs(s);
    (0..=0xffffu32)
        .map(|n| format!("fa:16:3e:{space:02x}:{:02x}:{:02x}", n >> 8, n & 0xff))
        .find(|m| !used.contains(m))
        .unwrap()
}

fn nth_host(cidr: IpNet, n: u32) -> IpAddr {
    match cidr.network() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) + n)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) + u128::from(n))),
    }
}

/// Add an IPv6 subnet (id `sub6-<network id>`, gateway `::1`) with its modes and DHCP flag.
pub fn add_subnet_v6(
    s: &mut Snapshot,
    network: &str,
    cidr: &str,
    ra: Option<wire::Ipv6AddressMode>,
    address: Option<wire::Ipv6AddressMode>,
    dhcp: bool,
) {
    let cidr = net(cidr);
    s.subnets.push(Subnet {
        id: format!("sub6-{network}"),
        network_id: network.into(),
        cidr,
        gateway_ip: Some(nth_host(cidr, 1)),
        ip_version: 6,
        enable_dhcp: dhcp,
        ipv6_ra_mode: ra,
        ipv6_address_mode: address,
        ..Default::default()
    });
}

/// Attach subnet `subnet` at its gateway IP; the interface port id is `<router>-<subnet>`.
pub fn add_iface_subnet(s: &mut Snapshot, router: &str, subnet: &str) {
    let sub = s.subnets.iter().find(|x| x.id == subnet).unwrap().clone();
    s.router_interfaces.push(RouterInterface {
        router_id: router.into(),
        subnet_id: sub.id.clone(),
        port_id: format!("{router}-{subnet}"),
        ip_address: sub.gateway_ip.unwrap(),
        mac: format!("fa:16:3e:aa:01:{:02x}", s.router_interfaces.len() + 1),
    });
}

/// Give port `port` a further fixed IP on `subnet`.
pub fn add_fixed_ip(s: &mut Snapshot, port: &str, subnet: &str, addr: &str) {
    let p = s.ports.iter_mut().find(|p| p.id == port).unwrap();
    p.fixed_ips.push(FixedIp {
        subnet_id: subnet.into(),
        ip_address: ip(addr),
    });
}

/// Give router `router`'s gateway a further fixed IP on ext-net's IPv6 subnet `sub6-ext-net`
/// (on its gateway port too).
pub fn add_gateway_v6(s: &mut Snapshot, router: &str, addr: &str) {
    let f = FixedIp {
        subnet_id: "sub6-ext-net".into(),
        ip_address: ip(addr),
    };
    s.ports
        .iter_mut()
        .find(|p| p.device_owner == OWNER_ROUTER_GATEWAY && p.device_id == router)
        .unwrap()
        .fixed_ips
        .push(f.clone());
    s.routers
        .iter_mut()
        .find(|r| r.id == router)
        .unwrap()
        .external_gateway
        .as_mut()
        .unwrap()
        .external_fixed_ips
        .push(f);
}

/// Do what the controller does after each change: release what is no longer needed, then
/// allocate what is missing (lowest free value first). Returns the plan it applied.
pub fn settle(s: &mut Snapshot) -> AllocationPlan {
    let plan = required_allocations(s);
    let a = &mut s.allocations;
    for k in &plan.release {
        match k {
            AllocationKey::BridgeNetwork { project_id } => {
                a.bridge_networks.remove(project_id);
            }
            AllocationKey::BridgeIp { router_id, pod } => {
                a.bridge_ips.get_mut(router_id).unwrap().remove(pod);
            }
            AllocationKey::LegIp {
                router_id,
                pod,
                subnet_id,
            } => {
                a.leg_ips
                    .get_mut(router_id)
                    .unwrap()
                    .get_mut(pod)
                    .unwrap()
                    .remove(subnet_id);
            }
            AllocationKey::LocalTag { network_id, pod } => {
                a.local_tags.get_mut(network_id).unwrap().remove(pod);
            }
            AllocationKey::BridgeTag { project_id, pod } => {
                a.bridge_tags.get_mut(project_id).unwrap().remove(pod);
            }
            AllocationKey::DhcpIp {
                network_id,
                pod,
                subnet_id,
            } => {
                let mut p = a.dhcp_port(network_id, pod).unwrap().clone();
                p.ips.remove(subnet_id);
                a.set_dhcp_port(network_id, pod, Some(p));
            }
            AllocationKey::RouterNode { router_id, pod, .. } => {
                a.set_router_node(router_id, pod, None)
            }
            AllocationKey::DhcpNode {
                network_id, pod, ..
            } => a.set_dhcp_node(network_id, pod, None),
        }
    }
    a.bridge_ips.retain(|_, m| !m.is_empty());
    a.local_tags.retain(|_, m| !m.is_empty());
    a.bridge_tags.retain(|_, m| !m.is_empty());
    let bridge_vxlan = s.bridge_vxlan;
    let tenant_vnis: BTreeSet<u32> = s.networks.iter().filter_map(|n| n.vni).collect();
    let projects: BTreeMap<String, String> = s
        .routers
        .iter()
        .map(|r| (r.id.clone(), r.project_id.clone()))
        .collect();
    let subnets: BTreeMap<String, IpNet> =
        s.subnets.iter().map(|x| (x.id.clone(), x.cidr)).collect();
    let mut used_macs = macs(s);
    let mut mac = move || {
        let m = (0..=0xffffu32)
            .map(|n| format!("fa:16:3e:b0:{:02x}:{:02x}", n >> 8, n & 0xff))
            .find(|m| !used_macs.contains(m))
            .unwrap();
        used_macs.insert(m.clone());
        m
    };
    let a = &mut s.allocations;
    for k in &plan.allocate {
        match k {
            AllocationKey::BridgeNetwork { project_id } => {
                let vlans: BTreeSet<u16> = a.bridge_networks.values().map(|b| b.vlan).collect();
                let vlan = (2001..=3000).find(|v| !vlans.contains(v)).unwrap();
                let cidrs: BTreeSet<IpNet> = a.bridge_networks.values().map(|b| b.cidr).collect();
                let cidr = (0..=255u32)
                    .map(|k| net(&format!("100.0.{k}.0/24")))
                    .find(|c| !cidrs.contains(c))
                    .unwrap();
                let vnis: BTreeSet<u32> = a
                    .bridge_networks
                    .values()
                    .filter_map(|b| b.vni)
                    .chain(tenant_vnis.iter().copied())
                    .collect();
                let vni = bridge_vxlan.then(|| (5001..).find(|v| !vnis.contains(v)).unwrap());
                a.bridge_networks
                    .insert(project_id.clone(), BridgeNetwork { vlan, cidr, vni });
            }
            AllocationKey::BridgeIp { router_id, pod } => {
                let project = &projects[router_id];
                let bn = a.bridge_networks[project];
                let used: BTreeSet<IpAddr> = a
                    .bridge_ips
                    .iter()
                    .filter(|(r, _)| projects.get(*r) == Some(project))
                    .flat_map(|(_, m)| m.values().map(|p| p.ip))
                    .collect();
                let addr = (2..255)
                    .map(|n| nth_host(bn.cidr, n))
                    .find(|x| !used.contains(x))
                    .unwrap();
                a.set_bridge_ip(router_id, pod, addr, &mac());
            }
            AllocationKey::LegIp {
                router_id,
                pod,
                subnet_id,
            } => {
                let cidr = subnets[subnet_id];
                let used: BTreeSet<IpAddr> = a
                    .leg_ips
                    .values()
                    .flat_map(|m| m.values())
                    .filter_map(|m| m.get(subnet_id).map(|p| p.ip))
                    .collect();
                let addr = (0..50)
                    .map(|n| nth_host(cidr, 250 - n))
                    .find(|x| !used.contains(x))
                    .unwrap();
                a.set_leg_ip(router_id, pod, subnet_id, addr, &mac());
            }
            AllocationKey::LocalTag { network_id, pod } => {
                let used: BTreeSet<u16> = a
                    .local_tags
                    .values()
                    .chain(a.bridge_tags.values())
                    .flat_map(|m| m.values().copied())
                    .collect();
                let tag = (101..=2000).find(|t| !used.contains(t)).unwrap();
                a.set_local_tag(network_id, pod, tag);
            }
            AllocationKey::BridgeTag { project_id, pod } => {
                let used: BTreeSet<u16> = a
                    .local_tags
                    .values()
                    .chain(a.bridge_tags.values())
                    .flat_map(|m| m.values().copied())
                    .collect();
                let tag = (101..=2000).find(|t| !used.contains(t)).unwrap();
                a.set_bridge_tag(project_id, pod, tag);
            }
            AllocationKey::DhcpIp {
                network_id,
                pod,
                subnet_id,
            } => {
                let cidr = subnets[subnet_id];
                let used: BTreeSet<IpAddr> = a
                    .dhcp_ports
                    .values()
                    .flat_map(|m| m.values())
                    .filter_map(|p| p.ips.get(subnet_id).copied())
                    .collect();
                let addr = (2..50)
                    .map(|n| nth_host(cidr, n))
                    .find(|x| !used.contains(x))
                    .unwrap();
                let mut p =
                    a.dhcp_port(network_id, pod)
                        .cloned()
                        .unwrap_or_else(|| planner::DhcpPort {
                            port_id: format!("dhcp-{pod}-{network_id}"),
                            mac: mac(),
                            ips: BTreeMap::new(),
                        });
                p.ips.insert(subnet_id.clone(), addr);
                a.set_dhcp_port(network_id, pod, Some(p));
            }
            AllocationKey::RouterNode { .. } | AllocationKey::DhcpNode { .. } => {}
        }
    }
    hold_placements(s);
    assert!(
        required_allocations(s).is_empty(),
        "one settle round must be enough: {:?}",
        required_allocations(s)
    );
    plan
}

/// The guide's scenario in the guide's order, settled after every step.
pub fn guide() -> Snapshot {
    let mut s = base();
    add_local_net(&mut s, "demo", "net1", "10.0.1.0/24");
    add_local_net(&mut s, "demo", "net2", "10.0.2.0/24");
    add_vm(&mut s, "demo", "vm1", "net1", "10.0.1.11", "node1");
    add_vm(&mut s, "demo", "vm2", "net2", "10.0.2.12", "node2");
    settle(&mut s);
    add_ext_net(&mut s);
    add_router(&mut s, "demo", "router", &[]);
    add_iface(&mut s, "router", "net1");
    settle(&mut s);
    add_iface(&mut s, "router", "net2");
    settle(&mut s);
    set_gateway(&mut s, "router", "163.3.124.10");
    settle(&mut s);
    add_fip(&mut s, "demo", "fip1", "163.3.124.20", "vm1");
    settle(&mut s);
    s
}

/// Check the guide's shape on any settled snapshot, whatever order built it: bridge legs,
/// cross routes via the other instance's bridge IP, default routes, NAT on RegionTwo only.
pub fn assert_guide_shape(s: &Snapshot, with_fip: bool) {
    assert!(validate(s).is_empty(), "{:?}", validate(s));
    let plans = plan_all(s);
    let bn = s.allocations.bridge_networks["demo"];
    let b1 = s.allocations.bridge_ip("router", "RegionOne").unwrap();
    let b2 = s.allocations.bridge_ip("router", "RegionTwo").unwrap();
    assert_ne!(b1, b2);
    let r1 = &plans["node1"].routers["router"];
    let r2 = &plans["node2"].routers["router"];
    let bl1 = r1.leg(wire::LegKind::Bridge).unwrap();
    assert_eq!((bl1.tag, bl1.address.addr()), (Some(bn.vlan), b1));
    assert_eq!(r2.leg(wire::LegKind::Bridge).unwrap().tag, Some(bn.vlan));
    assert_eq!(r1.route_to(&net("10.0.2.0/24")), Some(b2));
    assert_eq!(r2.route_to(&net("10.0.1.0/24")), Some(b1));
    assert_eq!(r1.default_route(), Some(b2));
    assert_eq!(r2.default_route(), Some(ip("163.3.124.1")));
    assert_eq!(r1.routes.len(), 2, "{:?}", r1.routes);
    assert_eq!(r2.routes.len(), 2, "{:?}", r2.routes);
    assert!(r1.leg(wire::LegKind::Gateway).is_none());
    let g = r2.leg(wire::LegKind::Gateway).unwrap();
    assert_eq!(
        (g.bridge.as_str(), g.tag, g.address),
        ("br-ext", Some(3001), net("163.3.124.10/24"))
    );
    assert!(r1.nat.snat.is_empty() && r1.nat.floating.is_empty());
    assert_eq!(r2.nat.snat.len(), 1);
    assert_eq!(
        r2.nat.snat[0].sources,
        vec![net("10.0.1.0/24"), net("10.0.2.0/24")]
    );
    assert_eq!(r2.nat.snat[0].to, ip("163.3.124.10"));
    assert_eq!(r2.nat.snat[0].out_ifname, g.ns_ifname);
    if with_fip {
        assert_eq!(r2.nat.floating.len(), 1);
        assert_eq!(r2.nat.floating[0].floating_ip, ip("163.3.124.20"));
        assert_eq!(r2.nat.floating[0].fixed_ip, ip("10.0.1.11"));
    }
    assert_eq!(
        plans["node1"].bridges["br-vlan"].trunks,
        BTreeSet::from([bn.vlan])
    );
    assert_eq!(
        plans["node2"].bridges["br-vlan"].trunks,
        BTreeSet::from([bn.vlan])
    );
    assert_eq!(
        plans["node2"].bridges["br-ext"].trunks,
        BTreeSet::from([3001])
    );
}

/// Record the sticky placements the snapshot needs (a DHCP server is placed only once its
/// port has an address, so after the other allocations), as the controller does.
pub fn hold_placements(s: &mut Snapshot) {
    let plan = required_allocations(s);
    let a = &mut s.allocations;
    for k in plan.release.iter().chain(plan.allocate.iter()) {
        match k {
            AllocationKey::RouterNode { router_id, pod, .. } => {
                a.set_router_node(router_id, pod, None)
            }
            AllocationKey::DhcpNode {
                network_id, pod, ..
            } => a.set_dhcp_node(network_id, pod, None),
            _ => {}
        }
    }
    for k in &plan.allocate {
        match k {
            AllocationKey::RouterNode {
                router_id,
                pod,
                node,
            } => a.set_router_node(router_id, pod, Some(node)),
            AllocationKey::DhcpNode {
                network_id,
                pod,
                node,
            } => a.set_dhcp_node(network_id, pod, Some(node)),
            _ => {}
        }
    }
}

/// The keys other than sticky placements (which follow every instance and server).
pub fn without_placements(keys: &[AllocationKey]) -> Vec<AllocationKey> {
    keys.iter()
        .filter(|k| {
            !matches!(
                k,
                AllocationKey::RouterNode { .. } | AllocationKey::DhcpNode { .. }
            )
        })
        .cloned()
        .collect()
}

/// The allocations `change` needs judged on its scope, scanning and through indexes built for
/// each snapshot, both equal to the full judgement (`old` held exactly what it needed).
pub fn assert_scoped_allocations(name: &str, old: &Snapshot, new: &Snapshot, change: &Change) {
    let full = required_allocations(new);
    assert_eq!(
        required_allocations_for_change(old, new, change),
        full,
        "{name}: scoped allocations differ"
    );
    assert_eq!(
        required_allocations_for_change_indexed(
            (old, &ScopeIndex::build(old)),
            (new, &ScopeIndex::build(new)),
            change
        ),
        full,
        "{name}: indexed scoped allocations differ"
    );
}

/// `replan`, checking that `replan_indexed` (through indexes built for each snapshot) gives
/// the same.
pub fn replan_both(
    name: &str,
    old: &Snapshot,
    new: &Snapshot,
    prev: &BTreeMap<String, NodeDesiredState>,
    change: &Change,
) -> BTreeMap<String, NodeDesiredState> {
    let got = replan(old, new, prev, change);
    let indexed = replan_indexed(
        (old, &ScopeIndex::build(old)),
        (new, &ScopeIndex::build(new)),
        prev,
        change,
    );
    assert_eq!(indexed, got, "{name}: replan_indexed differs from replan");
    got
}
