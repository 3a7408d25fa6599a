//! The agent's own view of what one node must look like, built from the controller's desired
//! state and the agent's configuration (uplink devices, datapath type, namespace prefix). The
//! OVS and Linux appliers read only this.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ovs_plan::{DesiredBridge, DesiredOvs, DesiredPort};

/// `external_ids` key naming the router a leg belongs to.
pub const ROUTER_KEY: &str = "crosspod-router";

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
}

/// One router instance: a namespace with veth legs plugged into the node's bridges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterIntent {
    pub router_id: String,
    pub legs: Vec<LegIntent>,
    /// Routes other than the connected ones: destination → next hop.
    pub routes: BTreeMap<IpNet, IpAddr>,
    pub nat: NatIntent,
}

/// One leg: `ns_ifname` inside the router namespace, `node_ifname` on `bridge` with `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegIntent {
    pub ns_ifname: String,
    pub node_ifname: String,
    pub bridge: String,
    pub tag: u16,
    pub mac: String,
    pub addrs: Vec<IpNet>,
}

/// NAT on a router instance (only the gateway instance has any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatIntent {
    /// SNAT: sources in these subnets leaving `out_ifname` become `to`.
    pub snat: Vec<(BTreeSet<IpNet>, String, IpAddr)>,
    /// Floating IPs: (floating, fixed, gateway leg name).
    pub floating: Vec<(IpAddr, IpAddr, String)>,
}

impl NodeIntent {
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
                    },
                );
            }
        }
        DesiredOvs {
            bridges: self.bridges.clone(),
            owned_ports,
            vm_tags: self.vm_tags.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_legs_become_owned_tagged_ports() {
        let mut n = NodeIntent::default();
        n.routers.insert(
            "node1-qrouter-r1".into(),
            RouterIntent {
                router_id: "r1".into(),
                legs: vec![LegIntent {
                    ns_ifname: "qr-0123456789a".into(),
                    node_ifname: "tr-0123456789a".into(),
                    bridge: "br-vlan".into(),
                    tag: 101,
                    mac: "fa:16:3e:00:00:01".into(),
                    addrs: vec!["10.0.1.1/24".parse().unwrap()],
                }],
                routes: BTreeMap::new(),
                nat: NatIntent::default(),
            },
        );
        let o = n.ovs();
        let p = &o.owned_ports["tr-0123456789a"];
        assert_eq!(p.tag, Some(101));
        assert_eq!(p.external_ids[ROUTER_KEY], "r1");
    }
}
