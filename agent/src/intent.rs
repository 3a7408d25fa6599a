//! The agent's own view of what one node must look like, built from the controller's desired
//! state ([`wire::NodeDesiredState`]) and the agent's configuration (uplink devices, datapath
//! type, namespace prefix). The OVS and Linux appliers read only this.
//!
//! Flat (untagged) networks are VLAN 0 here: an OVS access port with `tag=0` sends and receives
//! untagged frames, and an uplink trunking VLAN 0 passes them, so flat and VLAN networks take
//! the same code path.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use wire::{LegKind, NodeDesiredState};

use crate::dhcp::DhcpIntent;
use crate::ovs_plan::{DesiredBridge, DesiredOvs, DesiredPort};
use crate::tunnel::{self, TunnelIntent};

/// `external_ids` key naming the router a leg belongs to.
pub const ROUTER_KEY: &str = "crosspod-router";

/// `external_ids` key naming the network a DHCP port's node-side end serves.
pub const DHCP_KEY: &str = "crosspod-dhcp";

/// VLAN standing for "untagged" (flat networks).
pub const UNTAGGED: u16 = 0;

/// Everything one node must look like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeIntent {
    /// The controller's revision this intent was built from.
    pub revision: u64,
    /// Bridges by name: datapath type and the uplink with the VLANs it trunks.
    pub bridges: BTreeMap<String, DesiredBridge>,
    /// VM ports: iface-id → (bridge, tag).
    pub vm_tags: BTreeMap<String, (String, u16)>,
    /// Router instances by namespace name (prefix included).
    pub routers: BTreeMap<String, RouterIntent>,
    /// DHCP servers by namespace name (prefix included).
    pub dhcp: BTreeMap<String, DhcpIntent>,
    /// Router legs sending IPv6 router advertisements, by (router namespace, leg interface).
    pub ra: BTreeMap<crate::ra::LegKey, crate::ra::RaIntent>,
    /// Problems found while building the intent (a bridge with no configured uplink device,
    /// say): reported to the controller; everything else is still applied.
    pub problems: Vec<String>,
    /// The VxLAN side: tunnel bridge, patch, per-peer ports, flows (`None`: no tunnel bridge).
    pub tunnels: Option<TunnelIntent>,
    /// Router failover: the node is cut off ([`crate::liveness`]), so every router instance's
    /// legs are kept down on the namespace side. Set by the loop from OVSDB, not the state.
    pub fenced: bool,
}

/// One router instance: a namespace with veth legs plugged into the node's bridges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterIntent {
    /// Router id.
    pub router_id: String,
    /// Legs, in the planner's order.
    pub legs: Vec<LegIntent>,
    /// Routes other than the connected ones: destination → next hop.
    pub routes: BTreeMap<IpNet, IpAddr>,
    /// NAT rules (only the gateway instance has any).
    pub nat: wire::Nat,
    /// Addresses to probe from this instance.
    pub probe_targets: Vec<wire::ProbeTarget>,
}

/// One leg: `ns_ifname` inside the router namespace, `node_ifname` on `bridge` with `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegIntent {
    /// What the leg connects to.
    pub kind: LegKind,
    /// Interface inside the router namespace.
    pub ns_ifname: String,
    /// Interface on the node, plugged into `bridge`.
    pub node_ifname: String,
    /// OVS bridge.
    pub bridge: String,
    /// VLAN tag on the bridge ([`UNTAGGED`] for flat).
    pub tag: u16,
    /// MAC of the namespace-side end.
    pub mac: String,
    /// Addresses of the namespace-side end: the leg's address, its `extra_addresses` (a
    /// dual-stack leg's IPv6 one), floating IPs as /32 on the gateway leg.
    pub addrs: Vec<IpNet>,
    /// MTU of both veth ends (a VxLAN network's); `None` leaves the kernel's default.
    pub mtu: Option<u16>,
}

/// How the agent maps the controller's state onto this node.
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    /// `datapath_type` of the bridges the agent creates.
    pub datapath_type: String,
    /// bridge → uplink device, from the agent's configuration.
    pub uplinks: BTreeMap<String, String>,
    /// Prefix put in front of router namespaces (lab nodes share one machine).
    pub netns_prefix: String,
    /// This node's tunnel endpoint (`--local-ip`); VxLAN segments need it.
    pub local_ip: Option<IpAddr>,
    /// The tunnel bridge the agent owns (`--tunnel-bridge`; empty: [`tunnel::DEFAULT_BRIDGE`]).
    pub tunnel_bridge: String,
}

impl NodeIntent {
    /// Builds the intent from the controller's desired state.
    pub fn from_desired(state: &NodeDesiredState, ctx: &NodeContext) -> NodeIntent {
        let mut intent = NodeIntent {
            revision: state.revision,
            ..NodeIntent::default()
        };
        for (name, b) in &state.bridges {
            let uplink = match (b.uplink, ctx.uplinks.get(name)) {
                (true, Some(dev)) => {
                    let mut trunks = b.trunks.clone();
                    if b.untagged {
                        trunks.insert(UNTAGGED);
                    }
                    Some((dev.clone(), trunks))
                }
                (true, None) => {
                    intent.problems.push(format!(
                        "bridge {name} (physnet {}) needs an uplink but none is configured (--uplinks)",
                        b.physnet
                    ));
                    None
                }
                (false, _) => None,
            };
            intent.bridges.insert(
                name.clone(),
                DesiredBridge {
                    datapath_type: ctx.datapath_type.clone(),
                    uplink,
                },
            );
        }
        for (port_id, p) in &state.ports {
            intent.vm_tags.insert(
                port_id.clone(),
                (p.bridge.clone(), p.tag.unwrap_or(UNTAGGED)),
            );
        }
        for r in state.routers.values() {
            let ns = format!("{}{}", ctx.netns_prefix, r.namespace);
            for l in &r.legs {
                if let Some(advert) = &l.ipv6_ra {
                    intent.ra.insert(
                        (ns.clone(), l.ns_ifname.clone()),
                        crate::ra::RaIntent {
                            router_id: r.router_id.clone(),
                            mac: l.mac.clone(),
                            advert: advert.clone(),
                        },
                    );
                }
            }
            let floating: Vec<IpNet> = r
                .nat
                .floating
                .iter()
                .map(|f| IpNet::from(f.floating_ip))
                .collect();
            let legs = r
                .legs
                .iter()
                .map(|l| {
                    // A dual-stack leg's IPv6 address (bridge and gateway legs) sits beside
                    // its IPv4 one.
                    let mut addrs: Vec<IpNet> = l.addresses().copied().collect();
                    if l.kind == LegKind::Gateway {
                        addrs.extend(floating.iter().copied());
                    }
                    LegIntent {
                        kind: l.kind,
                        ns_ifname: l.ns_ifname.clone(),
                        node_ifname: l.ovs_ifname.clone(),
                        bridge: l.bridge.clone(),
                        tag: l.tag.unwrap_or(UNTAGGED),
                        mac: l.mac.clone(),
                        addrs,
                        mtu: l.mtu,
                    }
                })
                .collect();
            intent.routers.insert(
                ns,
                RouterIntent {
                    router_id: r.router_id.clone(),
                    legs,
                    routes: r
                        .routes
                        .iter()
                        .map(|rt| (rt.destination, rt.nexthop))
                        .collect(),
                    nat: r.nat.clone(),
                    probe_targets: r.probe_targets.clone(),
                },
            );
        }
        for d in state.dhcp.values() {
            intent.dhcp.insert(
                format!("{}{}", ctx.netns_prefix, d.namespace),
                DhcpIntent::from_wire(d),
            );
        }
        let tunnel_bridge = if ctx.tunnel_bridge.is_empty() {
            tunnel::DEFAULT_BRIDGE
        } else {
            ctx.tunnel_bridge.as_str()
        };
        intent.tunnels = tunnel::intent(
            state.tunnels.as_ref(),
            state.liveness.as_ref(),
            ctx.local_ip,
            tunnel_bridge,
            &ctx.datapath_type,
            &mut intent.problems,
        );
        intent
    }

    /// The OVS part of the intent: bridges, uplinks, router legs (owned) and VM tags.
    pub fn ovs(&self) -> DesiredOvs {
        let mut owned_ports = BTreeMap::new();
        for r in self.routers.values() {
            for leg in &r.legs {
                owned_ports.insert(
                    leg.node_ifname.clone(),
                    DesiredPort {
                        bridge: leg.bridge.clone(),
                        tag: Some(leg.tag),
                        iface_type: String::new(),
                        external_ids: BTreeMap::from([(
                            ROUTER_KEY.to_string(),
                            r.router_id.clone(),
                        )]),
                        ..Default::default()
                    },
                );
            }
        }
        for d in self.dhcp.values() {
            owned_ports.insert(
                d.node_ifname.clone(),
                DesiredPort {
                    bridge: d.bridge.clone(),
                    tag: Some(d.tag),
                    iface_type: String::new(),
                    external_ids: BTreeMap::from([(DHCP_KEY.to_string(), d.network_id.clone())]),
                    ..Default::default()
                },
            );
        }
        let mut out = DesiredOvs {
            bridges: self.bridges.clone(),
            owned_ports,
            vm_tags: self.vm_tags.clone(),
            owned_bridges: Default::default(),
        };
        if let Some(t) = &self.tunnels {
            t.add_ovs(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use wire::{BridgeState, FloatingRule, Nat, PortBinding, RouterInstance, RouterLeg};

    fn leg(kind: LegKind, ns: &str, node: &str, tag: Option<u16>, addr: &str) -> RouterLeg {
        RouterLeg {
            kind,
            bridge: "br-vlan".into(),
            tag,
            address: addr.parse().unwrap(),
            mac: "fa:16:3e:00:00:01".into(),
            ns_ifname: ns.into(),
            ovs_ifname: node.into(),
            network_id: None,
            subnet_id: None,
            mtu: None,
            ipv6_ra: None,
            extra_addresses: Vec::new(),
        }
    }

    fn state() -> NodeDesiredState {
        let mut s = NodeDesiredState {
            node: "node2".into(),
            pod: "RegionTwo".into(),
            revision: 7,
            ..Default::default()
        };
        s.bridges.insert(
            "br-vlan".into(),
            BridgeState {
                physnet: "bridge".into(),
                uplink: true,
                trunks: [2001].into(),
                untagged: false,
            },
        );
        s.bridges.insert(
            "br-ext".into(),
            BridgeState {
                physnet: "extern".into(),
                uplink: true,
                trunks: [].into(),
                untagged: true,
            },
        );
        s.ports.insert(
            "p1".into(),
            PortBinding {
                bridge: "br-vlan".into(),
                tag: Some(101),
                network_id: "n1".into(),
                mac: "fa:16:3e:00:00:09".into(),
                fixed_ips: vec![],
                security: None,
            },
        );
        s.routers.insert(
            "r1".into(),
            RouterInstance {
                router_id: "r1".into(),
                project_id: "p".into(),
                namespace: "qrouter-r1".into(),
                legs: vec![
                    leg(LegKind::Internal, "qr-a", "vr-a", Some(101), "10.0.2.1/24"),
                    leg(LegKind::Gateway, "qg-r1", "vg-r1", None, "163.3.124.5/24"),
                ],
                routes: vec![wire::Route {
                    destination: "0.0.0.0/0".parse().unwrap(),
                    nexthop: "163.3.124.1".parse().unwrap(),
                }],
                nat: Nat {
                    snat: vec![],
                    floating: vec![FloatingRule {
                        floating_ip: "163.3.124.7".parse().unwrap(),
                        fixed_ip: "10.0.2.11".parse().unwrap(),
                        out_ifname: "qg-r1".into(),
                        floatingip_id: "f1".into(),
                        port_id: "p1".into(),
                    }],
                },
                probe_targets: vec![],
            },
        );
        s
    }

    fn ctx() -> NodeContext {
        NodeContext {
            datapath_type: "netdev".into(),
            uplinks: [("br-vlan".to_string(), "eth1".to_string())].into(),
            netns_prefix: "node2-".into(),
            ..Default::default()
        }
    }

    #[test]
    fn desired_state_maps_onto_the_node() {
        let i = NodeIntent::from_desired(&state(), &ctx());
        assert_eq!(i.revision, 7);
        assert_eq!(
            i.bridges["br-vlan"].uplink,
            Some(("eth1".to_string(), BTreeSet::from([2001])))
        );
        assert_eq!(i.vm_tags["p1"], ("br-vlan".to_string(), 101));
        let r = &i.routers["node2-qrouter-r1"];
        let gw = r.legs.iter().find(|l| l.kind == LegKind::Gateway).unwrap();
        assert_eq!(gw.tag, UNTAGGED, "flat leg is VLAN 0");
        assert_eq!(
            gw.addrs,
            vec![
                "163.3.124.5/24".parse::<IpNet>().unwrap(),
                "163.3.124.7/32".parse().unwrap()
            ],
            "floating IP sits on the gateway leg"
        );
        assert_eq!(r.routes.len(), 1);
        let o = i.ovs();
        assert_eq!(o.owned_ports["vr-a"].tag, Some(101));
        assert_eq!(o.owned_ports["vr-a"].external_ids[ROUTER_KEY], "r1");
    }

    #[test]
    fn dual_stack_legs_carry_their_ipv6_address_and_ipv6_routes() {
        let mut s = state();
        let r = s.routers.get_mut("r1").unwrap();
        r.legs[1].extra_addresses = vec!["2001:db8:1::5/64".parse().unwrap()];
        r.routes.push(wire::Route {
            destination: "::/0".parse().unwrap(),
            nexthop: "2001:db8:1::1".parse().unwrap(),
        });
        let i = NodeIntent::from_desired(&s, &ctx());
        let r = &i.routers["node2-qrouter-r1"];
        assert_eq!(
            r.legs[1].addrs,
            vec![
                "163.3.124.5/24".parse::<IpNet>().unwrap(),
                "2001:db8:1::5/64".parse().unwrap(),
                "163.3.124.7/32".parse().unwrap()
            ]
        );
        assert_eq!(
            r.routes[&"::/0".parse::<IpNet>().unwrap()],
            "2001:db8:1::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_bridge_without_an_uplink_device_is_a_reported_problem() {
        let i = NodeIntent::from_desired(&state(), &ctx());
        assert_eq!(i.bridges["br-ext"].uplink, None);
        assert_eq!(i.problems.len(), 1);
        assert!(i.problems[0].contains("br-ext"), "{}", i.problems[0]);
        let mut c = ctx();
        c.uplinks.insert("br-ext".into(), "eth2".into());
        let i = NodeIntent::from_desired(&state(), &c);
        assert!(i.problems.is_empty());
        assert_eq!(
            i.bridges["br-ext"].uplink,
            Some(("eth2".to_string(), BTreeSet::from([UNTAGGED]))),
            "untagged uplink trunks VLAN 0"
        );
    }
}
