//! Router failover, the node's half: what its BFD sessions say of the pod's other nodes, and
//! whether it must withdraw (fence) its router instances.
//!
//! The sessions are OVS's BFD on the per-peer tunnel ports ([`crate::tunnel`]): ovs-vswitchd
//! sends and answers them, so they go on while the agent restarts, and the agent only reads
//! `Interface.bfd_status` from its OVSDB replica (a change there wakes the loop, which reports
//! at once). Everything here is computed from what OVSDB shows now (level-triggered): a
//! restarted agent reaches the same answer and, when it already holds, writes nothing.
//!
//! The fencing rule is [`wire::Liveness`]'s: every peer down, and either at least two peers
//! (the node is the odd one out) or its own data-plane links without carrier (its cables are
//! cut). A peer whose session is not `up` — including one not established yet — counts as
//! down: a node never serves an address it cannot prove it still owns alone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use wire::PeerLiveness;

use crate::ovs_plan::ObservedOvs;
use crate::tunnel::{port_name, TunnelIntent};

/// What the node's liveness sessions say now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivenessView {
    /// One entry per liveness peer, sorted by node.
    pub peers: Vec<PeerLiveness>,
    /// The node's data-plane links (uplinks, the tunnel endpoint's devices) → carrier.
    pub links: BTreeMap<String, bool>,
    /// Whether the node must withdraw its router instances.
    pub fenced: bool,
}

/// Whether the BFD session of `port` is up (state `up` and forwarding).
pub fn session_up(observed: &ObservedOvs, port: &str) -> bool {
    observed.ifaces.get(port).is_some_and(|i| {
        i.bfd_status.get("state").map(String::as_str) == Some("up")
            && i.bfd_status.get("forwarding").map(String::as_str) != Some("false")
    })
}

/// The node's data-plane links and their carrier, from OVSDB's `link_state`: the uplink devices
/// and the tunnel endpoint's devices. `endpoint` is the interface holding the local IP: when it
/// is an OVS bridge's own port (the lab recipe's `br-phy`), the bridge's system devices are the
/// links; when it is a system device on a bridge, that device. A link OVS reports nothing about
/// is left out (unknown is not "down").
pub fn data_plane_links(
    observed: &ObservedOvs,
    uplinks: &[String],
    endpoint: Option<&str>,
) -> BTreeMap<String, bool> {
    let mut names: Vec<String> = uplinks.to_vec();
    if let Some(ep) = endpoint {
        if observed.bridges.contains_key(ep) {
            names.extend(
                observed
                    .ports
                    .iter()
                    .filter(|(n, p)| p.bridge == ep && n.as_str() != ep)
                    .filter(|(n, _)| {
                        observed
                            .ifaces
                            .get(*n)
                            .is_some_and(|i| i.iface_type.is_empty())
                    })
                    .map(|(n, _)| n.clone()),
            );
        } else {
            names.push(ep.to_string());
        }
    }
    names
        .into_iter()
        .filter_map(|n| {
            let up = observed.ifaces.get(&n)?.link_up?;
            Some((n, up))
        })
        .collect()
}

/// The fencing rule (see the module doc): never without peers.
pub fn must_fence(peers: &[PeerLiveness], links: &BTreeMap<String, bool>) -> bool {
    if peers.is_empty() || peers.iter().any(|p| p.up) {
        return false;
    }
    peers.len() >= 2 || (!links.is_empty() && links.values().all(|up| !up))
}

/// The view for the tunnel intent's liveness peers (none without a tunnel intent: a node that
/// could not set its sessions up has no peers and is never fenced).
pub fn view(
    tunnels: Option<&TunnelIntent>,
    observed: &ObservedOvs,
    uplinks: &[String],
    endpoint: Option<&str>,
) -> LivenessView {
    let Some(t) = tunnels.filter(|t| !t.liveness.is_empty()) else {
        return LivenessView::default();
    };
    let peers: Vec<PeerLiveness> = t
        .liveness
        .iter()
        .map(|(node, ip)| PeerLiveness {
            node: node.clone(),
            up: session_up(observed, &port_name(*ip)),
        })
        .collect();
    let links = data_plane_links(observed, uplinks, endpoint);
    let fenced = must_fence(&peers, &links);
    LivenessView {
        peers,
        links,
        fenced,
    }
}

/// The tunnel endpoint's address of `tunnels`, when there are liveness peers.
pub fn endpoint_ip(tunnels: Option<&TunnelIntent>) -> Option<IpAddr> {
    tunnels
        .filter(|t| !t.liveness.is_empty())
        .map(|t| t.local_ip)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ovs_plan::{IfaceStatus, ObservedBridge, ObservedPort};

    fn peer(node: &str, up: bool) -> PeerLiveness {
        PeerLiveness {
            node: node.into(),
            up,
        }
    }

    fn links(l: &[(&str, bool)]) -> BTreeMap<String, bool> {
        l.iter().map(|(n, u)| (n.to_string(), *u)).collect()
    }

    #[test]
    fn the_fencing_rule() {
        let up = links(&[("eth1", true), ("u0", true)]);
        let cut = links(&[("eth1", false), ("u0", false)]);
        // No peers: never.
        assert!(!must_fence(&[], &cut));
        // One peer down, own links up: the peer is the one lost, not this node.
        assert!(!must_fence(&[peer("b", false)], &up));
        // One peer down and own cables cut: this node is the one cut off.
        assert!(must_fence(&[peer("b", false)], &cut));
        // Only some links down: still has a cable.
        let half = links(&[("eth1", false), ("u0", true)]);
        assert!(!must_fence(&[peer("b", false)], &half));
        // Unknown links: not proof of a cut.
        assert!(!must_fence(&[peer("b", false)], &BTreeMap::new()));
        // Two peers, both down: the odd one out, whatever its links say.
        assert!(must_fence(&[peer("b", false), peer("c", false)], &up));
        // One answers: no fence.
        assert!(!must_fence(&[peer("b", true), peer("c", false)], &cut));
    }

    fn port(bridge: &str) -> ObservedPort {
        ObservedPort {
            bridge: bridge.into(),
            tag: None,
            trunks: BTreeSet::new(),
            external_ids: BTreeMap::new(),
            iface_id: None,
            iface_error: None,
            ofport: Some(1),
        }
    }

    fn iface(t: &str, up: Option<bool>, bfd: &[(&str, &str)]) -> IfaceStatus {
        IfaceStatus {
            iface_type: t.into(),
            link_up: up,
            bfd_status: bfd
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn links_are_the_uplinks_and_the_endpoint_bridges_devices() {
        let mut o = ObservedOvs::default();
        for b in ["br-phy", "br-vlan"] {
            o.bridges.insert(
                b.into(),
                ObservedBridge {
                    datapath_type: "netdev".into(),
                },
            );
        }
        for (n, b, t, up) in [
            ("br-phy", "br-phy", "internal", Some(true)),
            ("u0", "br-phy", "", Some(false)),
            ("eth1", "br-vlan", "", Some(true)),
            ("vr-1", "br-vlan", "", None),
        ] {
            o.ports.insert(n.into(), port(b));
            o.ifaces.insert(n.into(), iface(t, up, &[]));
        }
        let l = data_plane_links(&o, &["eth1".into()], Some("br-phy"));
        assert_eq!(l, links(&[("eth1", true), ("u0", false)]));
        let l = data_plane_links(&o, &[], Some("u0"));
        assert_eq!(l, links(&[("u0", false)]));
        assert!(data_plane_links(&o, &["gone".into()], None).is_empty());
    }

    #[test]
    fn a_session_is_up_only_when_bfd_says_so() {
        let mut o = ObservedOvs::default();
        o.ifaces.insert(
            "vx-1".into(),
            iface("vxlan", None, &[("state", "up"), ("forwarding", "true")]),
        );
        o.ifaces.insert(
            "vx-2".into(),
            iface("vxlan", None, &[("state", "init"), ("forwarding", "false")]),
        );
        o.ifaces.insert("vx-3".into(), iface("vxlan", None, &[]));
        assert!(session_up(&o, "vx-1"));
        assert!(!session_up(&o, "vx-2"));
        assert!(!session_up(&o, "vx-3"), "not established yet is not up");
        assert!(!session_up(&o, "vx-4"));
    }
}
