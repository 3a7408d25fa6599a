//! VxLAN: the tunnel bridge, its ports and its flows, from the desired state's
//! [`wire::Tunnels`].
//!
//! The segments' VM ports, router legs and DHCP legs sit on the integration bridge
//! (`Tunnels.bridge`) with a node-local VLAN tag each. The agent owns a tunnel bridge
//! (`--tunnel-bridge`, `br-tun`, created in `fail_mode=secure`) patched to the integration
//! bridge (`patch-tun` there, trunking exactly the segments' tags; `patch-int` here), holding
//! one VxLAN port per peer, and maps tags to VNIs in OpenFlow, as Neutron's OVS agent lays out
//! its `br-tun`:
//!
//! | table | what |
//! | --- | --- |
//! | 0 | from `patch-int` → 2; from a tunnel port → 4; anything else dropped |
//! | 2 | unicast → 20, broadcast/multicast → 22 |
//! | 4 | `in_port`=a peer of segment VNI, `tun_id`=VNI → push the segment's tag, 10; else drop |
//! | 10 | learn (into 20: tag + source MAC → strip VLAN, set the VNI, out the tunnel port it came in on, hard timeout 300 s), output to `patch-int` |
//! | 20 | learned unicast; miss → 22 |
//! | 22 | per segment tag: strip VLAN, set `tun_id`, output to each of *that segment's* peers (head-end replication); else drop |
//!
//! **Per-peer ports, not one `remote_ip=flow` port:** each peer is a port of its own
//! (`vx-` + the peer's IPv4 in hex), so `ovs-vsctl show` lists who this node tunnels to, each
//! tunnel has its own counters, BFD can run per tunnel for failover (#20), and flows name ports
//! instead of setting `tun_dst` per output. A peer sharing no segment has no port: the node
//! never sends to, nor accepts from, a node it shares nothing with. The VNI stays in the flow
//! (`options:key=flow`), so one port carries every segment shared with its peer.
//!
//! Flows are kept by [`crate::flowsync`] in the [`TUNNEL`] cookie space; learned flows carry
//! [`LEARNED`], which no diff dumps or deletes (they are flushed when the tunnel flows change,
//! so none points at a port that went).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ovs::openflow::FlowMod;
use wire::TunnelSegment;

use crate::flowsync::{cookie_of, FlowSync, LEARNED, TUNNEL};
use crate::ovs_plan::{DesiredBridge, DesiredOvs, DesiredPort, ObservedOvs};
use crate::reconciler::{OvsBackend, PassOutcome};

/// The tunnel bridge's patch port (peer of [`PATCH_TUN`]).
pub const PATCH_INT: &str = "patch-int";
/// The integration bridge's patch port to the tunnel bridge.
pub const PATCH_TUN: &str = "patch-tun";
/// `external_ids` key of a tunnel port: the peer's address.
pub const PEER_KEY: &str = "crosspod-peer";
/// Default name of the tunnel bridge.
pub const DEFAULT_BRIDGE: &str = "br-tun";
/// How long a learned MAC → tunnel entry lives (Neutron's default `l2pop`-less aging).
pub const LEARN_TIMEOUT: u32 = 300;

/// Classification.
pub const T_CLASSIFY: u8 = 0;
/// From the integration bridge: unicast or flood.
pub const T_FROM_PATCH: u8 = 2;
/// From a tunnel: VNI → tag.
pub const T_FROM_TUNNEL: u8 = 4;
/// Learning, then out to the integration bridge.
pub const T_LEARN: u8 = 10;
/// Learned unicast.
pub const T_UNICAST: u8 = 20;
/// Head-end replication.
pub const T_FLOOD: u8 = 22;

/// The tunnel port's name for `peer`: `vx-` and the IPv4 in hex (`vx-c0a83202`), or for IPv6
/// `vx6-` and 11 hex digits of a hash of the address: stable, at most 15 bytes.
pub fn port_name(peer: IpAddr) -> String {
    match peer {
        IpAddr::V4(a) => format!("vx-{:08x}", u32::from(a)),
        IpAddr::V6(a) => format!(
            "vx6-{:011x}",
            crate::flowsync::fnv1a(&a.octets()) & 0xfff_ffff_ffff
        ),
    }
}

/// The node's VxLAN side as the agent applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelIntent {
    /// The tunnel bridge (the agent's).
    pub bridge: String,
    /// The integration bridge the segments' ports are on.
    pub int_bridge: String,
    /// Datapath type of the tunnel bridge.
    pub datapath_type: String,
    /// This node's tunnel endpoint.
    pub local_ip: IpAddr,
    /// Segments by VNI.
    pub segments: BTreeMap<u32, TunnelSegment>,
    /// Liveness peers (router failover, [`crate::liveness`]): node name → tunnel endpoint. Each
    /// gets a tunnel port with BFD on it, with or without a segment.
    pub liveness: BTreeMap<String, IpAddr>,
    /// BFD `min_tx`/`min_rx` of the liveness ports, in milliseconds.
    pub bfd_interval_ms: u32,
}

/// Builds the tunnel intent from the desired state's tunnels and liveness and this agent's
/// configuration; a state this node cannot carry (no `--local-ip`, another one, the tunnel
/// bridge named as the integration bridge) is a problem for the status report, and no tunnel
/// is set up. Liveness alone (no segment) still makes the tunnel bridge, for its BFD ports.
pub fn intent(
    tunnels: Option<&wire::Tunnels>,
    liveness: Option<&wire::Liveness>,
    local_ip: Option<IpAddr>,
    bridge: &str,
    datapath_type: &str,
    problems: &mut Vec<String>,
) -> Option<TunnelIntent> {
    let liveness = liveness.filter(|l| !l.peers.is_empty());
    let Some(t) = tunnels else {
        let l = liveness?;
        let Some(local) = local_ip else {
            problems.push(
                "the desired state has liveness peers but this agent has no --local-ip; \
                 BFD sessions not set up"
                    .to_string(),
            );
            return None;
        };
        let mut out = TunnelIntent {
            bridge: bridge.to_string(),
            int_bridge: String::new(),
            datapath_type: datapath_type.to_string(),
            local_ip: local,
            segments: BTreeMap::new(),
            liveness: BTreeMap::new(),
            bfd_interval_ms: 0,
        };
        out.set_liveness(l, problems);
        return Some(out);
    };
    match local_ip {
        None => {
            problems.push(format!(
                "the desired state has VxLAN segments with tunnel endpoint {} but this agent has \
                 no --local-ip; tunnels not set up",
                t.local_ip
            ));
            return None;
        }
        Some(ip) if ip != t.local_ip => {
            problems.push(format!(
                "the desired state's tunnel endpoint is {} but this agent's --local-ip is {ip}; \
                 tunnels not set up",
                t.local_ip
            ));
            return None;
        }
        Some(_) => {}
    }
    if t.bridge == bridge {
        problems.push(format!(
            "the VxLAN segments' bridge {} is also --tunnel-bridge; tunnels not set up",
            t.bridge
        ));
        return None;
    }
    let mut out = TunnelIntent {
        bridge: bridge.to_string(),
        int_bridge: t.bridge.clone(),
        datapath_type: datapath_type.to_string(),
        local_ip: t.local_ip,
        segments: t.segments.clone(),
        liveness: BTreeMap::new(),
        bfd_interval_ms: 0,
    };
    if let Some(l) = liveness {
        out.set_liveness(l, problems);
    }
    Some(out)
}

/// OVS's BFD detect multiplier (fixed in ovs-vswitchd, not configurable).
pub const OVS_BFD_MULTIPLIER: u8 = 3;

impl TunnelIntent {
    /// Takes the liveness peers, checking what OVS's BFD can do: a multiplier other than
    /// [`OVS_BFD_MULTIPLIER`] is reported (sessions run with OVS's), a zero interval sets up no
    /// session, and this node's own endpoint is never its peer.
    fn set_liveness(&mut self, l: &wire::Liveness, problems: &mut Vec<String>) {
        if l.interval_ms == 0 {
            problems.push("liveness interval_ms is 0; BFD sessions not set up".to_string());
            return;
        }
        if l.multiplier != OVS_BFD_MULTIPLIER {
            problems.push(format!(
                "liveness multiplier {} is not supported: OVS's BFD detect multiplier is fixed \
                 at {OVS_BFD_MULTIPLIER}; sessions detect a loss after {} ms",
                l.multiplier,
                u64::from(l.interval_ms) * u64::from(OVS_BFD_MULTIPLIER)
            ));
        }
        for (node, ip) in &l.peers {
            if *ip == self.local_ip {
                problems.push(format!(
                    "liveness peer {node} has this node's own tunnel endpoint {ip}; ignored"
                ));
                continue;
            }
            self.liveness.insert(node.clone(), *ip);
        }
        self.bfd_interval_ms = l.interval_ms;
    }

    /// Every peer of every segment and every liveness peer (those get a tunnel port, no other).
    pub fn peers(&self) -> BTreeSet<IpAddr> {
        self.segments
            .values()
            .flat_map(|s| s.peers.iter().copied())
            .chain(self.liveness.values().copied())
            .collect()
    }

    /// The `bfd` column of the tunnel port towards `peer`: BFD on for liveness peers.
    pub fn bfd(&self, peer: IpAddr) -> BTreeMap<String, String> {
        if !self.liveness.values().any(|p| *p == peer) {
            return BTreeMap::new();
        }
        let ms = self.bfd_interval_ms.to_string();
        BTreeMap::from([
            ("enable".to_string(), "true".to_string()),
            ("min_tx".to_string(), ms.clone()),
            ("min_rx".to_string(), ms),
        ])
    }

    /// Adds the tunnel bridge (owned), the patch pair (only while there is a segment: a trunk
    /// with no VLAN would carry all) and the per-peer VxLAN ports to `out`.
    pub fn add_ovs(&self, out: &mut DesiredOvs) {
        out.bridges.insert(
            self.bridge.clone(),
            DesiredBridge {
                datapath_type: self.datapath_type.clone(),
                uplink: None,
            },
        );
        out.owned_bridges.insert(self.bridge.clone());
        if !self.int_bridge.is_empty() {
            out.bridges
                .entry(self.int_bridge.clone())
                .or_insert_with(|| DesiredBridge {
                    datapath_type: self.datapath_type.clone(),
                    uplink: None,
                });
        }
        let tags: BTreeSet<u16> = self.segments.values().map(|s| s.tag).collect();
        if !tags.is_empty() {
            out.owned_ports.insert(
                PATCH_TUN.into(),
                DesiredPort {
                    bridge: self.int_bridge.clone(),
                    trunks: tags,
                    iface_type: "patch".into(),
                    options: BTreeMap::from([("peer".to_string(), PATCH_INT.to_string())]),
                    ..Default::default()
                },
            );
            out.owned_ports.insert(
                PATCH_INT.into(),
                DesiredPort {
                    bridge: self.bridge.clone(),
                    iface_type: "patch".into(),
                    options: BTreeMap::from([("peer".to_string(), PATCH_TUN.to_string())]),
                    ..Default::default()
                },
            );
        }
        for peer in self.peers() {
            out.owned_ports.insert(
                port_name(peer),
                DesiredPort {
                    bridge: self.bridge.clone(),
                    iface_type: "vxlan".into(),
                    options: BTreeMap::from([
                        ("remote_ip".to_string(), peer.to_string()),
                        ("local_ip".to_string(), self.local_ip.to_string()),
                        ("key".to_string(), "flow".to_string()),
                    ]),
                    external_ids: BTreeMap::from([(PEER_KEY.to_string(), peer.to_string())]),
                    bfd: self.bfd(peer),
                    ..Default::default()
                },
            );
        }
    }

    /// The ports the flows need and their OpenFlow numbers on the tunnel bridge (`None` while
    /// ovs-vswitchd has not given one yet).
    fn ofports(&self, observed: &ObservedOvs) -> BTreeMap<String, Option<u32>> {
        let mut names: Vec<String> = self.peers().into_iter().map(port_name).collect();
        if !self.segments.is_empty() {
            names.push(PATCH_INT.to_string());
        }
        names
            .into_iter()
            .map(|n| {
                let of = observed
                    .ports
                    .get(&n)
                    .filter(|p| p.bridge == self.bridge)
                    .and_then(|p| p.ofport);
                (n, of)
            })
            .collect()
    }

    /// The tunnel bridge's flows (text without cookie), given the ports' OpenFlow numbers. A
    /// port with no number yet is left out (and its flows come on a later pass).
    pub fn flows(&self, ofports: &BTreeMap<String, u32>) -> Vec<String> {
        let mut f = vec![
            format!("table={T_CLASSIFY},priority=0 actions=drop"),
            format!("table={T_FROM_PATCH},priority=0 actions=drop"),
            format!("table={T_FROM_TUNNEL},priority=0 actions=drop"),
            format!("table={T_UNICAST},priority=0 actions=resubmit(,{T_FLOOD})"),
            format!("table={T_FLOOD},priority=0 actions=drop"),
        ];
        let Some(patch) = ofports.get(PATCH_INT) else {
            return f;
        };
        f.push(format!(
            "table={T_CLASSIFY},priority=1,in_port={patch} actions=resubmit(,{T_FROM_PATCH})"
        ));
        f.push(format!(
            "table={T_FROM_PATCH},priority=1,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 \
             actions=resubmit(,{T_UNICAST})"
        ));
        f.push(format!(
            "table={T_FROM_PATCH},priority=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 \
             actions=resubmit(,{T_FLOOD})"
        ));
        f.push(format!(
            "table={T_LEARN},priority=1 actions=learn(table={T_UNICAST},cookie={LEARNED:#x},\
             priority=1,hard_timeout={LEARN_TIMEOUT},NXM_OF_VLAN_TCI[0..11],\
             NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],\
             load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:{patch}"
        ));
        let mut from_tunnels = BTreeSet::new();
        for (vni, s) in &self.segments {
            let ports: Vec<u32> = s
                .peers
                .iter()
                .filter_map(|p| ofports.get(&port_name(*p)).copied())
                .collect();
            if ports.is_empty() {
                continue;
            }
            let outputs: Vec<String> = ports.iter().map(|p| format!("output:{p}")).collect();
            f.push(format!(
                "table={T_FLOOD},priority=1,dl_vlan={} actions=strip_vlan,set_tunnel:{vni},{}",
                s.tag,
                outputs.join(",")
            ));
            for p in ports {
                from_tunnels.insert(p);
                f.push(format!(
                    "table={T_FROM_TUNNEL},priority=1,in_port={p},tun_id={vni} \
                     actions=mod_vlan_vid:{},resubmit(,{T_LEARN})",
                    s.tag
                ));
            }
        }
        for p in from_tunnels {
            f.push(format!(
                "table={T_CLASSIFY},priority=1,in_port={p} actions=resubmit(,{T_FROM_TUNNEL})"
            ));
        }
        f
    }
}

/// The flow whose presence tells that ovs-vswitchd still holds the tunnel bridge's flows.
fn sentinel() -> u64 {
    cookie_of(
        TUNNEL,
        &format!("table={T_CLASSIFY},priority=0 actions=drop"),
    )
}

/// How long the step waits for ovs-vswitchd to number ports the OVS side just created.
const OFPORT_WAIT: Duration = Duration::from_secs(3);

/// The tunnel step after the OVS side: makes the tunnel bridge hold exactly its flows (in the
/// [`TUNNEL`] space; nothing when `intent` is `None`: the bridge went with the OVS side).
/// Counts into the pass's flow counters and errors.
pub async fn reconcile_flows<O: OvsBackend>(
    intent: Option<&TunnelIntent>,
    ovs: &O,
    flows: &FlowSync,
    out: &mut PassOutcome,
) {
    let Some(t) = intent else {
        flows.retain_sentinels(TUNNEL, &BTreeSet::new());
        return;
    };
    // Ports made by this pass get their OpenFlow number from ovs-vswitchd shortly after.
    let deadline = tokio::time::Instant::now() + OFPORT_WAIT;
    let numbered = loop {
        let observed = match ovs.observe().await {
            Ok(o) => o,
            Err(e) => {
                out.flow_errors.push(format!("tunnels: {e}"));
                return;
            }
        };
        let ofports = t.ofports(&observed);
        if ofports.values().all(Option::is_some) || tokio::time::Instant::now() >= deadline {
            break ofports;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut ofports = BTreeMap::new();
    for (name, of) in numbered {
        match of {
            Some(n) => {
                ofports.insert(name, n);
            }
            None => out.flow_errors.push(format!(
                "tunnel bridge {}: port {name} has no OpenFlow port number yet",
                t.bridge
            )),
        }
    }
    let want: BTreeMap<u64, String> = t
        .flows(&ofports)
        .into_iter()
        .map(|f| (cookie_of(TUNNEL, &f), f))
        .collect();
    out.flows_desired += want.len();
    flows.retain_sentinels(TUNNEL, &BTreeSet::from([t.bridge.clone()]));
    flows.set_sentinel(TUNNEL, &t.bridge, Some(sentinel()));
    let (fs, bridge) = (flows.clone(), t.bridge.clone());
    let r = tokio::task::spawn_blocking(move || {
        let r = fs.sync(TUNNEL, &bridge, &want)?;
        if r.added + r.deleted > 0 {
            // Ports or segments changed: learned entries may name a port that went.
            fs.bridge(&bridge)
                .apply_bundle(&[FlowMod::DeleteCookie(LEARNED)])
                .map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(r)
    })
    .await;
    match r {
        Ok(Ok(r)) => {
            out.flows_added += r.added;
            out.flows_deleted += r.deleted;
        }
        Ok(Err(e)) => out
            .flow_errors
            .push(format!("tunnel bridge {}: {e}", t.bridge)),
        Err(e) => out.flow_errors.push(format!("tunnel task: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Tunnels;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn seg(tag: u16, peers: &[&str]) -> TunnelSegment {
        TunnelSegment {
            tag,
            network_id: Some(format!("net{tag}")),
            project_id: None,
            peers: peers.iter().map(|p| ip(p)).collect(),
        }
    }

    fn tunnels() -> Tunnels {
        Tunnels {
            local_ip: ip("192.168.50.1"),
            bridge: "br-vlan".into(),
            segments: BTreeMap::from([
                (1001, seg(7, &["192.168.50.2", "192.168.50.3"])),
                (1002, seg(8, &["192.168.50.3"])),
            ]),
        }
    }

    fn ti() -> TunnelIntent {
        let mut p = Vec::new();
        let t = intent(
            Some(&tunnels()),
            None,
            Some(ip("192.168.50.1")),
            "br-tun",
            "netdev",
            &mut p,
        );
        assert!(p.is_empty(), "{p:?}");
        t.unwrap()
    }

    #[test]
    fn port_names_are_stable_and_fit_an_interface_name() {
        assert_eq!(port_name(ip("192.168.50.2")), "vx-c0a83202");
        let v6 = port_name(ip("fd00::2"));
        assert_eq!(v6, port_name(ip("fd00::2")));
        assert_ne!(v6, port_name(ip("fd00::3")));
        assert!(v6.len() <= 15 && v6.starts_with("vx6-"), "{v6}");
    }

    #[test]
    fn a_missing_or_different_local_ip_is_a_problem_and_sets_nothing_up() {
        let mut p = Vec::new();
        assert!(intent(Some(&tunnels()), None, None, "br-tun", "netdev", &mut p).is_none());
        assert!(p[0].contains("--local-ip"), "{p:?}");
        let mut p = Vec::new();
        let other = Some(ip("192.168.50.9"));
        assert!(intent(Some(&tunnels()), None, other, "br-tun", "netdev", &mut p).is_none());
        assert!(
            p[0].contains("192.168.50.9") && p[0].contains("192.168.50.1"),
            "{p:?}"
        );
        let mut p = Vec::new();
        assert!(intent(None, None, None, "br-tun", "netdev", &mut p).is_none());
        assert!(p.is_empty(), "no tunnels, no local IP needed");
    }

    #[test]
    fn one_port_per_peer_and_the_patch_trunks_exactly_the_tags() {
        let mut d = DesiredOvs::default();
        ti().add_ovs(&mut d);
        assert!(d.owned_bridges.contains("br-tun"));
        let vx: Vec<&String> = d
            .owned_ports
            .keys()
            .filter(|k| k.starts_with("vx-"))
            .collect();
        assert_eq!(vx, ["vx-c0a83202", "vx-c0a83203"]);
        let p = &d.owned_ports["vx-c0a83203"];
        assert_eq!(p.iface_type, "vxlan");
        assert_eq!(p.options["remote_ip"], "192.168.50.3");
        assert_eq!(p.options["local_ip"], "192.168.50.1");
        assert_eq!(p.options["key"], "flow");
        assert_eq!(d.owned_ports[PATCH_TUN].bridge, "br-vlan");
        assert_eq!(d.owned_ports[PATCH_TUN].trunks, BTreeSet::from([7, 8]));
        // No segment: the bridge stays, no patch (an empty trunks is "all VLANs"), no port.
        let mut empty = ti();
        empty.segments.clear();
        let mut d = DesiredOvs::default();
        empty.add_ovs(&mut d);
        assert!(d.bridges.contains_key("br-tun"));
        assert!(d.owned_ports.is_empty(), "{:?}", d.owned_ports);
    }

    fn liveness(peers: &[(&str, &str)], multiplier: u8) -> wire::Liveness {
        wire::Liveness {
            peers: peers.iter().map(|(n, p)| (n.to_string(), ip(p))).collect(),
            interval_ms: 200,
            multiplier,
        }
    }

    #[test]
    fn liveness_peers_get_a_bfd_port_with_or_without_a_segment() {
        // Alongside segments: the union of peers; BFD only on the liveness peers' ports.
        let mut p = Vec::new();
        let l = liveness(&[("n2", "192.168.50.2"), ("n4", "192.168.50.4")], 3);
        let t = intent(
            Some(&tunnels()),
            Some(&l),
            Some(ip("192.168.50.1")),
            "br-tun",
            "netdev",
            &mut p,
        )
        .unwrap();
        assert!(p.is_empty(), "{p:?}");
        let mut d = DesiredOvs::default();
        t.add_ovs(&mut d);
        let vx: Vec<&str> = d
            .owned_ports
            .keys()
            .filter(|k| k.starts_with("vx-"))
            .map(String::as_str)
            .collect();
        assert_eq!(vx, ["vx-c0a83202", "vx-c0a83203", "vx-c0a83204"]);
        assert_eq!(d.owned_ports["vx-c0a83204"].bfd["min_rx"], "200");
        assert_eq!(d.owned_ports["vx-c0a83202"].bfd["enable"], "true");
        assert!(
            d.owned_ports["vx-c0a83203"].bfd.is_empty(),
            "no liveness peer"
        );
        // The liveness-only peer has no segment flow.
        let of = BTreeMap::from([
            (PATCH_INT.to_string(), 1),
            ("vx-c0a83202".to_string(), 2),
            ("vx-c0a83203".to_string(), 3),
            ("vx-c0a83204".to_string(), 4),
        ]);
        assert!(!t
            .flows(&of)
            .iter()
            .any(|f| f.contains("in_port=4") || f.contains("output:4")));

        // Liveness alone: the tunnel bridge and the BFD ports, no patch, no VMs' bridge.
        let mut p = Vec::new();
        let t = intent(
            None,
            Some(&l),
            Some(ip("192.168.50.1")),
            "br-tun",
            "netdev",
            &mut p,
        )
        .unwrap();
        let mut d = DesiredOvs::default();
        t.add_ovs(&mut d);
        assert_eq!(d.bridges.keys().collect::<Vec<_>>(), ["br-tun"]);
        assert_eq!(
            d.owned_ports.keys().collect::<Vec<_>>(),
            ["vx-c0a83202", "vx-c0a83204"]
        );
        // No --local-ip: a problem, nothing set up.
        let mut p = Vec::new();
        assert!(intent(None, Some(&l), None, "br-tun", "netdev", &mut p).is_none());
        assert!(p[0].contains("--local-ip"), "{p:?}");
        // No peers: nothing at all.
        let mut p = Vec::new();
        assert!(intent(
            None,
            Some(&liveness(&[], 3)),
            None,
            "br-tun",
            "netdev",
            &mut p
        )
        .is_none());
        assert!(p.is_empty());
    }

    #[test]
    fn a_multiplier_ovs_cannot_run_and_a_self_peer_are_reported() {
        let mut p = Vec::new();
        let l = liveness(&[("me", "192.168.50.1"), ("n2", "192.168.50.2")], 5);
        let t = intent(
            None,
            Some(&l),
            Some(ip("192.168.50.1")),
            "br-tun",
            "netdev",
            &mut p,
        )
        .unwrap();
        let all = p.join("\n");
        assert!(
            all.contains("multiplier 5") && all.contains("600 ms"),
            "{all}"
        );
        assert!(all.contains("liveness peer me"), "{all}");
        assert_eq!(t.liveness.keys().collect::<Vec<_>>(), ["n2"]);
    }

    #[test]
    fn flooding_goes_only_to_the_segments_peers() {
        let of = BTreeMap::from([
            (PATCH_INT.to_string(), 1),
            ("vx-c0a83202".to_string(), 2),
            ("vx-c0a83203".to_string(), 3),
        ]);
        let f = ti().flows(&of);
        let flood = |tag: u16| {
            f.iter()
                .find(|x| x.starts_with(&format!("table=22,priority=1,dl_vlan={tag} ")))
                .unwrap()
                .clone()
        };
        assert!(
            flood(7).ends_with("set_tunnel:1001,output:2,output:3"),
            "{}",
            flood(7)
        );
        assert!(
            flood(8).ends_with("set_tunnel:1002,output:3"),
            "{}",
            flood(8)
        );
        // Peer 2 may only send VNI 1001.
        assert!(f.iter().any(|x| x.contains("in_port=2,tun_id=1001 ")));
        assert!(!f.iter().any(|x| x.contains("in_port=2,tun_id=1002")));
        // Same input, same flows (cookies are stable).
        assert_eq!(f, ti().flows(&of));
        // A port not numbered yet is left out, not guessed.
        let mut partial = of.clone();
        partial.remove("vx-c0a83203");
        let g = ti().flows(&partial);
        assert!(!g.iter().any(|x| x.contains("output:3")), "{g:#?}");
        assert!(
            g.iter().all(|x| !x.contains("dl_vlan=8 ")),
            "segment without numbered peers: no flood flow"
        );
    }
}
