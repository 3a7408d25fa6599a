//! Building each node's desired state from the topology.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use wire::names::{ifname, router_namespace};
use wire::{
    BridgeState, FloatingRule, LegKind, Liveness, Nat, NodeDesiredState, PortBinding, ProbeKind,
    ProbeTarget, Route, RouterInstance, RouterLeg, SnatRule, TunnelSegment, Tunnels,
};

use crate::names;
use crate::snapshot::*;
use crate::topology::{Placement, Topology};

/// What a leg's names derive from: the namespace-side and OVS-side prefixes and the id.
struct LegSource<'a> {
    ns_prefix: &'static str,
    ovs_prefix: &'static str,
    id: &'a str,
}

/// One L2 segment a node takes part in, to decide what its uplinks trunk.
enum Segment<'a> {
    Network(&'a str),
    ProjectBridge(&'a str),
}

/// Plan one node (which must exist in the topology).
pub(crate) fn plan_node(t: &Topology<'_>, node: &Node) -> NodeDesiredState {
    let pod = node.pod.as_str();
    let mut state = NodeDesiredState {
        node: node.name.clone(),
        pod: node.pod.clone(),
        ..Default::default()
    };
    // physnet → (tag, segment) used on this node
    let mut used: Vec<(&str, Option<u16>, Segment<'_>)> = Vec::new();

    for port in t
        .ports_by_host
        .get(node.name.as_str())
        .into_iter()
        .flatten()
    {
        let Some(net) = t.networks.get(port.network_id.as_str()) else {
            continue;
        };
        if !t
            .presence
            .get(net.id.as_str())
            .is_some_and(|p| p.contains(pod))
        {
            continue; // bound outside where the network may be: refused by validation
        }
        if net.network_type == NetworkType::Vxlan && node.local_ip.is_none() {
            // No tunnel endpoint: the node cannot carry the segment (the port shows DOWN).
            continue;
        }
        if !is_unicast_mac(&port.mac) {
            // Neutron accepts a multicast MAC on a port; no NIC can take one, and the agent
            // refuses a state holding one: the port stays out of the data plane (DOWN).
            continue;
        }
        let physnet = t.physnet_of(net);
        let (Some(bridge), Some(tag)) = (node.bridge_mappings.get(physnet), t.net_tag(net, pod))
        else {
            continue;
        };
        used.push((physnet, tag, Segment::Network(&net.id)));
        state.ports.insert(
            port.id.clone(),
            PortBinding {
                bridge: bridge.clone(),
                tag,
                network_id: net.id.clone(),
                mac: port.mac.clone(),
                fixed_ips: port.fixed_ips.iter().map(|f| f.ip_address).collect(),
                security: crate::security::port_security(t, port, node, bridge, tag),
            },
        );
    }

    let mut ovs_sources: Vec<(&str, &str)> = Vec::new();
    for rid in t
        .instances_by_node
        .get(node.name.as_str())
        .into_iter()
        .flatten()
    {
        let Some(router) = t.routers.get(rid) else {
            continue;
        };
        let (inst, sources) = plan_instance(t, router, node, &mut used);
        ovs_sources.extend(sources.into_iter().map(|s| (s.ovs_prefix, s.id)));
        state.routers.insert(router.id.clone(), inst);
    }
    for (server, physnet, tag, net) in crate::dhcp::plan_servers(t, node) {
        used.push((physnet, tag, Segment::Network(net)));
        state.dhcp.insert(server.network_id.clone(), server);
    }

    // OVS port names are node-wide: assign them together (routers in id order, legs in order).
    let ovs = names::assign(&ovs_sources);
    for (leg, name) in state
        .routers
        .values_mut()
        .flat_map(|r| r.legs.iter_mut())
        .zip(ovs)
    {
        leg.ovs_ifname = name;
    }

    for (physnet, bridge) in &node.bridge_mappings {
        state.bridges.insert(
            bridge.clone(),
            BridgeState {
                physnet: physnet.clone(),
                uplink: node.uplinks.contains(physnet),
                trunks: BTreeSet::new(),
                untagged: false,
            },
        );
    }
    let mut segments: BTreeMap<u32, TunnelSegment> = BTreeMap::new();
    for (physnet, tag, seg) in used {
        if let Some((vni, mut segment)) = tunnel_segment(t, &seg) {
            // VxLAN: carried over tunnels to the nodes sharing it, never trunked.
            if let Some(tag) = tag {
                segment.tag = tag;
                segments.entry(vni).or_insert(segment);
            }
            continue;
        }
        let shared = match seg {
            Segment::Network(n) => {
                t.networks.get(n).is_some_and(|n| n.external)
                    || t.network_nodes.get(n).is_some_and(|s| s.len() > 1)
            }
            Segment::ProjectBridge(p) => t.project_bridge_nodes.get(p).is_some_and(|s| s.len() > 1),
        };
        if !shared {
            continue;
        }
        let Some(b) = node
            .bridge_mappings
            .get(physnet)
            .and_then(|b| state.bridges.get_mut(b))
        else {
            continue;
        };
        match tag {
            Some(tag) => {
                b.trunks.insert(tag);
            }
            None => b.untagged = true,
        }
    }
    if let (Some(local_ip), Some(bridge), false) = (
        node.local_ip,
        node.bridge_mappings.get(&t.snap.local_physnet),
        segments.is_empty(),
    ) {
        for s in segments.values_mut() {
            let others = match (&s.network_id, &s.project_id) {
                (Some(n), _) => t.network_nodes.get(n.as_str()),
                (None, Some(p)) => t.project_bridge_nodes.get(p.as_str()),
                (None, None) => None,
            };
            s.peers = others
                .into_iter()
                .flatten()
                .filter(|n| **n != node.name)
                .filter_map(|n| t.nodes.get(n).and_then(|n| n.local_ip))
                .filter(|ip| *ip != local_ip)
                .collect();
        }
        state.tunnels = Some(Tunnels {
            local_ip,
            bridge: bridge.clone(),
            segments,
        });
    }
    state.liveness = liveness(t, node);
    crate::security::fill_groups(t, &mut state);
    state
}

/// The BFD sessions of a node with a tunnel endpoint: one per other node of its pod that has
/// one (lost ones too, so they are seen coming back); `None` when there is none.
fn liveness(t: &Topology<'_>, node: &Node) -> Option<Liveness> {
    node.local_ip?;
    let peers: BTreeMap<String, IpAddr> = t
        .nodes_by_pod
        .get(node.pod.as_str())?
        .iter()
        .filter(|n| n.name != node.name)
        .filter_map(|n| n.local_ip.map(|ip| (n.name.clone(), ip)))
        .collect();
    if peers.is_empty() {
        return None;
    }
    Some(Liveness {
        peers,
        interval_ms: t.snap.liveness_interval_ms,
        multiplier: t.snap.liveness_multiplier,
    })
}

/// The VNI and (tag-less, peer-less) tunnel segment of a VxLAN segment; `None` for others.
fn tunnel_segment(t: &Topology<'_>, seg: &Segment<'_>) -> Option<(u32, TunnelSegment)> {
    match seg {
        Segment::Network(n) => {
            let net = t.networks.get(n)?;
            if net.network_type != NetworkType::Vxlan {
                return None;
            }
            Some((
                net.vni?,
                TunnelSegment {
                    network_id: Some(net.id.clone()),
                    ..Default::default()
                },
            ))
        }
        Segment::ProjectBridge(p) => {
            let vni = t.snap.allocations.bridge_networks.get(*p)?.vni?;
            Some((
                vni,
                TunnelSegment {
                    project_id: Some(p.to_string()),
                    ..Default::default()
                },
            ))
        }
    }
}

/// The MTU a leg on `net` sets: the network's when below the underlay's (a VxLAN network's
/// is `global_physnet_mtu` - 50 when the store knows none), else `None`.
fn leg_mtu(t: &Topology<'_>, net: &Network) -> Option<u16> {
    let global = t.snap.global_physnet_mtu;
    net.mtu
        .or_else(|| {
            (net.network_type == NetworkType::Vxlan).then(|| global.saturating_sub(VXLAN_OVERHEAD))
        })
        .filter(|m| *m < global)
}

/// Whether a leg of router `rid` holds the Neutron OVS-side name (not an alternate given for a
/// collision): bridge and gateway legs are named after the router, an internal leg after its
/// port, like its namespace-side name (which only an alternate of one of them breaks).
pub(crate) fn has_neutron_ovs_name(rid: &str, leg: &RouterLeg) -> bool {
    match leg.kind {
        LegKind::Bridge => leg.ovs_ifname == ifname("vb-", rid),
        LegKind::Gateway => leg.ovs_ifname == ifname("vg-", rid),
        LegKind::Internal => {
            leg.ovs_ifname.starts_with("vr-")
                && leg.ns_ifname.starts_with("qr-")
                && leg.ovs_ifname.get(3..) == leg.ns_ifname.get(3..)
        }
    }
}

fn with_prefix(ip: IpAddr, cidr: &IpNet) -> Option<IpNet> {
    IpNet::new(ip, cidr.prefix_len()).ok()
}

/// One router instance, and what each of its legs' names derive from (aligned with its legs).
/// Namespace-side names are made unique here; OVS-side ones by the caller, node-wide.
fn plan_instance<'a>(
    t: &Topology<'a>,
    router: &'a Router,
    node: &Node,
    used: &mut Vec<(&'a str, Option<u16>, Segment<'a>)>,
) -> (RouterInstance, Vec<LegSource<'a>>) {
    let snap = t.snap;
    let pod: &str = &node.pod;
    let rid = router.id.as_str();
    let distributed = t.is_distributed(rid);
    let ifaces = t
        .interfaces_by_router
        .get(rid)
        .map(|v| v.as_slice())
        .unwrap_or_default();
    let mut inst = RouterInstance {
        router_id: router.id.clone(),
        project_id: router.project_id.clone(),
        namespace: router_namespace(rid),
        ..Default::default()
    };
    let mut routes: BTreeMap<IpNet, IpAddr> = BTreeMap::new();
    let mut sources: Vec<LegSource<'a>> = Vec::new();

    // Bridge leg: its MAC is its bridge IP port's.
    let bridge_net = snap.allocations.bridge_networks.get(&router.project_id);
    let my_bridge_port = if distributed {
        snap.allocations.bridge_port(rid, pod)
    } else {
        None
    };
    let my_bridge_ip = my_bridge_port.map(|p| p.ip);
    let bridge_seg = t.bridge_segment(&router.project_id, pod);
    if let (Some(bn), Some(bp), Some((physnet, tag, vni))) =
        (bridge_net, my_bridge_port, bridge_seg)
    {
        if let (Some(address), Some(br)) = (
            with_prefix(bp.ip, &bn.cidr),
            node.bridge_mappings.get(physnet),
        ) {
            used.push((
                physnet,
                Some(tag),
                Segment::ProjectBridge(&router.project_id),
            ));
            let global = snap.global_physnet_mtu;
            // A dual-stack bridge: the IPv6 address derived from the IPv4 one.
            let extra_addresses: Vec<IpNet> = snap
                .bridge_cidr_v6
                .and_then(|pool| crate::ipv6::bridge_v6(pool, bn.cidr, bp.ip))
                .map(IpNet::V6)
                .into_iter()
                .collect();
            inst.legs.push(RouterLeg {
                kind: LegKind::Bridge,
                bridge: br.clone(),
                tag: Some(tag),
                address,
                mac: bp.mac.clone(),
                ns_ifname: ifname("qb-", rid),
                ovs_ifname: ifname("vb-", rid),
                network_id: None,
                subnet_id: None,
                mtu: vni
                    .map(|_| global.saturating_sub(VXLAN_OVERHEAD))
                    .filter(|m| *m < global),
                ipv6_ra: None,
                extra_addresses,
            });
            sources.push(LegSource {
                ns_prefix: "qb-",
                ovs_prefix: "vb-",
                id: rid,
            });
        }
    }
    let has_bridge_leg = !inst.legs.is_empty();
    let has_bridge_v6 = inst.legs.iter().any(|l| !l.extra_addresses.is_empty());
    let peer_bridge_ip = |p: &str| -> Option<IpAddr> {
        if has_bridge_leg {
            snap.allocations.bridge_ip(rid, p)
        } else {
            None
        }
    };
    // The IPv6 bridge address of this router's instance in a pod (a dual-stack bridge only).
    let peer_bridge_v6 = |p: &str| -> Option<IpAddr> {
        if has_bridge_v6 {
            crate::ipv6::instance_bridge_v6(snap, &router.project_id, rid, p)
                .map(|n| IpAddr::V6(n.addr()))
        } else {
            None
        }
    };
    // The bridge address of the instance in a pod, of `v4`'s family.
    let peer_bridge = |p: &str, v4: bool| -> Option<IpAddr> {
        if v4 {
            peer_bridge_ip(p)
        } else {
            peer_bridge_v6(p)
        }
    };

    // Internal legs, and routes to subnets that live in other pods.
    let mut router_cidrs: BTreeSet<IpNet> = BTreeSet::new();
    for i in ifaces {
        let Some(s) = t.subnets.get(i.subnet_id.as_str()) else {
            continue;
        };
        let Some(net) = t.networks.get(s.network_id.as_str()) else {
            continue;
        };
        router_cidrs.insert(s.cidr.trunc());
        let present_here = t
            .presence
            .get(net.id.as_str())
            .is_some_and(|p| p.contains(pod));
        if !present_here {
            // Via the home instance's bridge address of the subnet's family (none for IPv6
            // without a dual-stack bridge).
            let v4 = s.cidr.addr().is_ipv4();
            if let Some(nh) = t
                .home_pod_for(rid, &net.id)
                .and_then(|p| peer_bridge(p, v4))
            {
                routes.insert(s.cidr.trunc(), nh);
            }
            continue;
        }
        let physnet = t.physnet_of(net);
        let (Some(br), Some(tag)) = (node.bridge_mappings.get(physnet), t.net_tag(net, pod)) else {
            continue;
        };
        let stretched = matches!(
            t.placement.get(net.id.as_str()),
            Some(Placement::Stretched(_))
        );
        let primary = !stretched || t.home_pod_for(rid, &net.id) == Some(pod);
        // The interface port backs the primary leg, the leg IP port every other one.
        let backing = if primary {
            Some((i.ip_address, &i.mac))
        } else {
            snap.allocations
                .leg_port(rid, pod, &s.id)
                .map(|p| (p.ip, &p.mac))
        };
        let Some((address, mac)) =
            backing.and_then(|(ip, mac)| Some((with_prefix(ip, &s.cidr)?, mac.clone())))
        else {
            continue;
        };
        used.push((physnet, tag, Segment::Network(&net.id)));
        let ipv6_ra = crate::ipv6::advertisement(t, s, net, pod, address.addr());
        inst.legs.push(RouterLeg {
            kind: LegKind::Internal,
            bridge: br.clone(),
            tag,
            address,
            mac,
            ns_ifname: ifname("qr-", &i.port_id),
            ovs_ifname: ifname("vr-", &i.port_id),
            network_id: Some(net.id.clone()),
            subnet_id: Some(s.id.clone()),
            mtu: leg_mtu(t, net),
            ipv6_ra,
            extra_addresses: Vec::new(),
        });
        sources.push(LegSource {
            ns_prefix: "qr-",
            ovs_prefix: "vr-",
            id: &i.port_id,
        });
    }

    // Gateway leg, default route, NAT.
    let gw_pod = t.gateway_pod.get(rid).copied();
    if let (Some(gw), Some(gp)) = (&router.external_gateway, gw_pod) {
        if gp == pod {
            if plan_gateway(
                t,
                router,
                gw,
                node,
                &router_cidrs,
                &mut inst,
                &mut routes,
                used,
            ) {
                sources.push(LegSource {
                    ns_prefix: "qg-",
                    ovs_prefix: "vg-",
                    id: rid,
                });
            }
        } else {
            if let Some(nh) = peer_bridge_ip(gp) {
                routes.insert(default_for(nh), nh);
            }
            // IPv6 leaves by the gateway instance too (routed, no NAT) when the gateway has
            // an IPv6 address.
            let gw_has_v6 = gw.external_fixed_ips.iter().any(|f| f.ip_address.is_ipv6());
            if let (true, Some(nh)) = (gw_has_v6, peer_bridge_v6(gp)) {
                routes.insert(default_for(nh), nh);
            }
        }
    }

    // User routes whose next hop is on a connected leg.
    for ur in &router.routes {
        if inst
            .legs
            .iter()
            .any(|l| l.addresses().any(|a| a.contains(&ur.nexthop)))
        {
            routes.entry(ur.destination.trunc()).or_insert(ur.nexthop);
        }
    }
    inst.routes = routes
        .into_iter()
        .map(|(destination, nexthop)| Route {
            destination,
            nexthop,
        })
        .collect();

    // Probe targets: the project's other instances' bridge addresses (IPv4, and IPv6 on a
    // dual-stack bridge).
    if has_bridge_leg {
        let mut seen = BTreeSet::new();
        for r2 in t
            .routers_by_project
            .get(router.project_id.as_str())
            .into_iter()
            .flatten()
        {
            if !t.is_distributed(&r2.id) {
                continue;
            }
            for p2 in t
                .instances
                .get(r2.id.as_str())
                .into_iter()
                .flat_map(|m| m.keys())
            {
                if r2.id == router.id && *p2 == pod {
                    continue;
                }
                if let Some(ip) = snap.allocations.bridge_ip(&r2.id, p2) {
                    if Some(ip) != my_bridge_ip && seen.insert(ip) {
                        inst.probe_targets.push(ProbeTarget {
                            address: ip,
                            kind: ProbeKind::BridgeInstance,
                            label: format!("{}@{}", r2.id, p2),
                        });
                        let v6 = has_bridge_v6
                            .then(|| {
                                crate::ipv6::instance_bridge_v6(snap, &r2.project_id, &r2.id, p2)
                            })
                            .flatten();
                        if let Some(v6) = v6 {
                            inst.probe_targets.push(ProbeTarget {
                                address: IpAddr::V6(v6.addr()),
                                kind: ProbeKind::BridgeInstance,
                                label: format!("{}@{}", r2.id, p2),
                            });
                        }
                    }
                }
            }
        }
    }
    inst.probe_targets.sort();

    // Namespace-side names are per namespace (only `qr-` ones can share a Neutron name: two
    // interfaces of this router). The gateway leg's name is its prefix's only one, so NAT rules
    // naming it stay right.
    let wanted: Vec<(&str, &str)> = sources.iter().map(|s| (s.ns_prefix, s.id)).collect();
    for (leg, name) in inst.legs.iter_mut().zip(names::assign(&wanted)) {
        leg.ns_ifname = name;
    }
    let mut paired: Vec<(RouterLeg, LegSource<'a>)> = std::mem::take(&mut inst.legs)
        .into_iter()
        .zip(sources)
        .collect();
    paired.sort_by(|(a, _), (b, _)| (a.kind, &a.ns_ifname).cmp(&(b.kind, &b.ns_ifname)));
    let (legs, sources) = paired.into_iter().unzip();
    inst.legs = legs;
    (inst, sources)
}

fn default_for(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(_) => "0.0.0.0/0".parse().expect("literal"),
        IpAddr::V6(_) => "::/0".parse().expect("literal"),
    }
}

/// Plan the gateway leg, default routes and NAT; whether the leg was added. The leg is the
/// router's gateway port on the external network holding the chosen address (its first IPv4
/// fixed IP, else its first IPv6 one), with its MAC; no such port, no leg. Its IPv6 fixed IPs
/// besides are the leg's extra addresses, each subnet's gateway the default route of its
/// family: IPv6 is routed out as it is, only IPv4 is source-NATed.
#[allow(clippy::too_many_arguments)]
fn plan_gateway<'a>(
    t: &Topology<'a>,
    router: &'a Router,
    gw: &'a ExternalGateway,
    node: &Node,
    router_cidrs: &BTreeSet<IpNet>,
    inst: &mut RouterInstance,
    routes: &mut BTreeMap<IpNet, IpAddr>,
    used: &mut Vec<(&'a str, Option<u16>, Segment<'a>)>,
) -> bool {
    let rid = router.id.as_str();
    let Some(ext) = t.networks.get(gw.network_id.as_str()) else {
        return false;
    };
    let physnet = t.physnet_of(ext);
    let (Some(br), Some(tag)) = (node.bridge_mappings.get(physnet), t.net_tag(ext, &node.pod))
    else {
        return false;
    };
    let Some(fixed) = gw
        .external_fixed_ips
        .iter()
        .find(|f| f.ip_address.is_ipv4())
        .or_else(|| {
            gw.external_fixed_ips
                .iter()
                .find(|f| f.ip_address.is_ipv6())
        })
    else {
        return false;
    };
    // The external subnet a fixed IP is on (its own, else the one holding the address).
    let subnet_of = |f: &FixedIp| -> Option<&'a Subnet> {
        t.subnets.get(f.subnet_id.as_str()).copied().or_else(|| {
            t.subnets_by_network
                .get(ext.id.as_str())
                .and_then(|v| v.iter().copied().find(|s| s.cidr.contains(&f.ip_address)))
        })
    };
    let Some(sub) = subnet_of(fixed) else {
        return false;
    };
    let Some(address) = with_prefix(fixed.ip_address, &sub.cidr) else {
        return false;
    };
    let Some(port) = t
        .gateway_ports
        .get(rid)
        .into_iter()
        .flatten()
        .filter(|p| {
            p.network_id == ext.id && p.fixed_ips.iter().any(|f| f.ip_address == fixed.ip_address)
        })
        .min_by(|a, b| a.id.cmp(&b.id))
    else {
        return false;
    };
    // The gateway port's IPv6 addresses besides the chosen one, with their subnets.
    let mut extra: Vec<(IpNet, &'a Subnet)> = gw
        .external_fixed_ips
        .iter()
        .filter(|f| f.ip_address.is_ipv6() && f.ip_address != fixed.ip_address)
        .filter_map(|f| {
            let s = subnet_of(f)?;
            Some((with_prefix(f.ip_address, &s.cidr)?, s))
        })
        .collect();
    extra.sort_by_key(|a| a.0);
    extra.dedup_by(|a, b| a.0 == b.0);
    let out = ifname("qg-", rid);
    used.push((physnet, tag, Segment::Network(&ext.id)));
    inst.legs.push(RouterLeg {
        kind: LegKind::Gateway,
        bridge: br.clone(),
        tag,
        address,
        mac: port.mac.clone(),
        ns_ifname: out.clone(),
        ovs_ifname: ifname("vg-", rid),
        network_id: Some(ext.id.clone()),
        subnet_id: Some(sub.id.clone()),
        mtu: leg_mtu(t, ext),
        ipv6_ra: None,
        extra_addresses: extra.iter().map(|(a, _)| *a).collect(),
    });
    for s in std::iter::once(sub).chain(extra.iter().map(|(_, s)| *s)) {
        let Some(gip) = s.gateway_ip else {
            continue;
        };
        if routes.contains_key(&default_for(gip)) {
            continue; // the first address of a family picks its default route
        }
        routes.insert(default_for(gip), gip);
        inst.probe_targets.push(ProbeTarget {
            address: gip,
            kind: ProbeKind::ExternalGateway,
            label: format!("external:{}", ext.id),
        });
    }
    let mut nat = Nat::default();
    if gw.enable_snat && fixed.ip_address.is_ipv4() {
        let sources: Vec<IpNet> = router_cidrs
            .iter()
            .filter(|c| c.addr().is_ipv4())
            .copied()
            .collect();
        if !sources.is_empty() {
            nat.snat.push(SnatRule {
                sources,
                out_ifname: out.clone(),
                to: fixed.ip_address,
            });
        }
    }
    for (fip, fixed_ip) in t.fips_by_router.get(rid).into_iter().flatten() {
        if !(fip.floating_ip_address.is_ipv4() && fixed_ip.is_ipv4()) {
            continue; // floating IPs are IPv4 NAT; IPv6 is routed
        }
        nat.floating.push(FloatingRule {
            floating_ip: fip.floating_ip_address,
            fixed_ip: *fixed_ip,
            out_ifname: out.clone(),
            floatingip_id: fip.id.clone(),
            port_id: fip.port_id.clone().unwrap_or_default(),
        });
    }
    nat.floating.sort();
    inst.nat = nat;
    true
}

/// Whether `mac` (`aa:bb:...`) is unicast: the group bit of its first octet is clear. The
/// controller's API asks the same question of a router interface's port.
pub fn is_unicast_mac(mac: &str) -> bool {
    mac.get(..2)
        .and_then(|o| u8::from_str_radix(o, 16).ok())
        .is_some_and(|o| o & 1 == 0)
}
