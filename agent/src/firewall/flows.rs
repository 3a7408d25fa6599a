//! The flow compiler: a node's desired state and the OVS port numbers → the flows each bridge
//! must hold. Pure; modelled on Neutron's OVS firewall driver
//! (`neutron/agent/linux/openvswitch_firewall/firewall.py`): registers carry the port being
//! filtered and its conntrack zone, egress is anti-spoofed before conntrack, rules are written
//! once for new connections (committed) and once for established ones (so removing a rule
//! leaves an established connection matching nothing: it is marked in conntrack and dropped),
//! and remote-group rules are conjunctions whose member side is one flow per member address.
//!
//! Tables (all flows carry crosspod's cookie; OVS's own `priority=0 actions=NORMAL` in table 0
//! stays and is only reached on bridges with no secured port):
//!
//! | table | what |
//! | --- | --- |
//! | 0 | classify: a secured VM port → reg5 = its ofport, reg6 = zone, reg7 = network key, table 71; any other access port → reg7 = its tag's key; tagged frames from trunks → reg7 from the VLAN; then table 60 |
//! | 60 | dispatch: to a secured port (reg7 + dl_dst) → reg5/reg6 of that port, VLAN popped, table 81; anything else NORMAL |
//! | 71 | egress anti-spoofing: ARP, ND, DHCP client only from the port's sources; no DHCP server / RA; IP from allowed sources → 72 |
//! | 72 | egress conntrack lookup in the port's zone |
//! | 73 | egress rules |
//! | 81 | ingress: ARP, ND, DHCP replies pass; IP → conntrack lookup |
//! | 82 | ingress rules, accepted traffic output to reg5 |

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use wire::{Direction, EtherType, PortSecurity, SecurityGroup, SecurityGroupRule};

use crate::flowsync::fnv1a;

/// Cookie bits that mark a flow as the firewall's (the top 16 bits, "cp"; see
/// [`crate::flowsync`] for the other spaces).
pub const COOKIE_BASE: u64 = crate::flowsync::FIREWALL;
/// Mask selecting [`COOKIE_BASE`]: the only flows the firewall ever dumps or deletes.
pub const COOKIE_MASK: u64 = crate::flowsync::SPACE_MASK;

/// Classification.
pub const T_CLASSIFY: u8 = 0;
/// Dispatch to a secured port or NORMAL.
pub const T_DISPATCH: u8 = 60;
/// Egress anti-spoofing.
pub const T_EGRESS: u8 = 71;
/// Egress conntrack lookup.
pub const T_EGRESS_CT: u8 = 72;
/// Egress rules.
pub const T_EGRESS_RULES: u8 = 73;
/// Ingress base (ARP/ND/DHCP, conntrack lookup).
pub const T_INGRESS: u8 = 81;
/// Ingress rules.
pub const T_INGRESS_RULES: u8 = 82;

/// Bit 16 of reg7: "a network key is set" (so a flat network's VLAN 0 is not "unset").
const NET_KEY: u32 = 0x1_0000;
const ZONE: &str = "NXM_NX_REG6[0..15]";
/// ct_mark of a connection whose allowing rule was removed: every further packet is dropped.
const CT_MARK_DEAD: u32 = 1;

/// A secured VM port as the compiler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecuredPort {
    /// OpenFlow port number.
    pub ofport: u32,
    /// VLAN tag on the bridge (0 for flat).
    pub tag: u16,
    /// The port's MAC.
    pub mac: String,
    /// What the controller says it may send and which groups filter it.
    pub security: PortSecurity,
}

/// One bridge's inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeInput {
    /// Secured VM ports by port id.
    pub secured: BTreeMap<String, SecuredPort>,
    /// Every other access port on the bridge: ofport → tag.
    pub access: BTreeMap<u32, u16>,
}

/// A flow: where it sits (table, priority, match) and what it does.
pub type FlowKey = (u8, u16, String);

/// The flows of one bridge, by (table, priority, match) → actions. A match with several
/// `conjunction` actions (one per clause it belongs to) holds them all, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowSet {
    /// The flows.
    pub flows: BTreeMap<FlowKey, String>,
}

impl FlowSet {
    fn add(&mut self, table: u8, priority: u16, m: impl Into<String>, actions: impl Into<String>) {
        let actions = actions.into();
        let key = (table, priority, m.into());
        match self.flows.get_mut(&key) {
            Some(existing) if *existing == actions => {}
            Some(existing)
                if existing.starts_with("conjunction(") && actions.starts_with("conjunction(") =>
            {
                let mut all: BTreeSet<&str> = existing
                    .split("),")
                    .map(|s| s.trim_end_matches(')'))
                    .collect();
                all.extend(actions.split("),").map(|s| s.trim_end_matches(')')));
                *existing = all
                    .into_iter()
                    .map(|s| format!("{s})"))
                    .collect::<Vec<_>>()
                    .join(",");
            }
            Some(existing) => {
                tracing::warn!(flow = ?key, kept = %existing, dropped = %actions, "two flows with one match");
            }
            None => {
                self.flows.insert(key, actions);
            }
        }
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Each flow as `ovs-ofctl` text (without cookie) and its cookie: crosspod's bits plus 48
    /// bits of a hash of the text, so equal cookies mean equal flows and a diff needs no parsing
    /// of OVS's spelling.
    pub fn with_cookies(&self) -> BTreeMap<u64, String> {
        self.flows
            .iter()
            .map(|((t, p, m), a)| {
                let text = if m.is_empty() {
                    format!("table={t},priority={p} actions={a}")
                } else {
                    format!("table={t},priority={p},{m} actions={a}")
                };
                (cookie_of(&text), text)
            })
            .collect()
    }
}

/// crosspod's cookie for a flow's text.
pub fn cookie_of(text: &str) -> u64 {
    crate::flowsync::cookie_of(COOKIE_BASE, text)
}

/// The IPv6 link-local address (EUI-64) of `mac`, if it parses.
pub fn link_local(mac: &str) -> Option<Ipv6Addr> {
    wire::eui64::link_local(mac)
}

/// `[min, max]` as (value, mask) pairs, the fewest that cover it exactly (Neutron's
/// `port_rule_masking`).
pub fn port_masks(min: u16, max: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(min), u32::from(max));
    while lo <= hi {
        let mut size: u32 = if lo == 0 {
            0x1_0000
        } else {
            lo & lo.wrapping_neg()
        };
        while lo + size - 1 > hi {
            size /= 2;
        }
        out.push((lo as u16, (!(size - 1) & 0xffff) as u16));
        lo += size;
    }
    out
}

fn net_key(tag: u16) -> u32 {
    NET_KEY | u32::from(tag & 0xfff)
}

fn eth_of(net: &IpNet) -> EtherType {
    match net {
        IpNet::V4(_) => EtherType::IPv4,
        IpNet::V6(_) => EtherType::IPv6,
    }
}

fn l3(e: EtherType) -> &'static str {
    match e {
        EtherType::IPv4 => "ip",
        EtherType::IPv6 => "ipv6",
    }
}

fn src_field(e: EtherType) -> &'static str {
    match e {
        EtherType::IPv4 => "nw_src",
        EtherType::IPv6 => "ipv6_src",
    }
}

fn dst_field(e: EtherType) -> &'static str {
    match e {
        EtherType::IPv4 => "nw_dst",
        EtherType::IPv6 => "ipv6_dst",
    }
}

/// `10.0.0.1/32` → `10.0.0.1`, so a host and its /32 are one flow.
fn net_text(n: &IpNet) -> String {
    if n.prefix_len() == n.max_prefix_len() {
        n.addr().to_string()
    } else {
        n.trunc().to_string()
    }
}

fn conj_id(group: &str, dir: Direction, e: EtherType) -> u32 {
    let text = format!("{group}/{dir:?}/{e:?}");
    // Even ids for new connections, odd for established ones.
    ((fnv1a(text.as_bytes()) as u32) & 0x7fff_fffe).max(2)
}

/// The match of a rule's protocol and ports, or several (a port range as masks); `None` when
/// the rule can never match this ether type.
fn rule_matches(r: &SecurityGroupRule) -> Option<Vec<String>> {
    let e = r.ethertype;
    let mut base = l3(e).to_string();
    if let Some(prefix) = &r.remote_ip_prefix {
        if r.remote_group_id.is_none() {
            if eth_of(prefix) != e {
                return None;
            }
            let f = match r.direction {
                Direction::Ingress => src_field(e),
                Direction::Egress => dst_field(e),
            };
            base.push_str(&format!(",{f}={}", net_text(prefix)));
        }
    }
    let proto = match (r.protocol, e) {
        (Some(1), EtherType::IPv6) => Some(58),
        (p, _) => p,
    };
    let Some(proto) = proto else {
        return Some(vec![base]);
    };
    base.push_str(&format!(",nw_proto={proto}"));
    match proto {
        6 | 17 | 132 => match (r.port_range_min, r.port_range_max) {
            (Some(lo), hi) => {
                let hi = hi.unwrap_or(lo);
                if hi < lo {
                    return None;
                }
                Some(
                    port_masks(lo, hi)
                        .into_iter()
                        .map(|(v, m)| {
                            if m == 0xffff {
                                format!("{base},tp_dst={v}")
                            } else {
                                format!("{base},tp_dst={v:#x}/{m:#x}")
                            }
                        })
                        .collect(),
                )
            }
            _ => Some(vec![base]),
        },
        // ICMP of the other family (IPv4 with ICMPv6) and a type or code above 255 match
        // nothing (OVS would refuse such a flow, and with it the bridge's whole bundle).
        1 | 58 => {
            if (proto == 1) != (e == EtherType::IPv4) {
                return None;
            }
            let mut m = base;
            if let Some(t) = r.port_range_min {
                m.push_str(&format!(",icmp_type={}", u8::try_from(t).ok()?));
                if let Some(c) = r.port_range_max {
                    m.push_str(&format!(",icmp_code={}", u8::try_from(c).ok()?));
                }
            }
            Some(vec![m])
        }
        _ => Some(vec![base]),
    }
}

const NEW: &str = "ct_state=+new-est+trk";
const EST: &str = "ct_state=+est-rel-rpl+trk";

fn accept(dir: Direction, commit: bool) -> String {
    let then = match dir {
        Direction::Egress => format!("resubmit(,{T_DISPATCH})"),
        Direction::Ingress => "output:NXM_NX_REG5[]".to_string(),
    };
    if commit {
        format!("ct(commit,zone={ZONE}),{then}")
    } else {
        then
    }
}

/// The flows of one bridge. Empty when no secured port is plugged into it: such a bridge is
/// left to OVS's own NORMAL flow.
pub fn compile(input: &BridgeInput, groups: &BTreeMap<String, SecurityGroup>) -> FlowSet {
    let mut fs = FlowSet::default();
    if input.secured.is_empty() {
        return fs;
    }
    base_flows(&mut fs);
    // Classification of everything that is not a secured port.
    for (ofport, tag) in &input.access {
        fs.add(
            T_CLASSIFY,
            90,
            format!("in_port={ofport}"),
            format!(
                "load:{:#x}->NXM_NX_REG7[],resubmit(,{T_DISPATCH})",
                net_key(*tag)
            ),
        );
    }
    // Member addresses of remote groups, once per (group, direction, ether type) in use.
    let mut remote: BTreeSet<(String, Direction, EtherType)> = BTreeSet::new();
    for p in input.secured.values() {
        port_flows(&mut fs, p);
        for gid in &p.security.security_groups {
            let Some(g) = groups.get(gid) else { continue };
            for r in &g.rules {
                rule_flows(&mut fs, p, r, &mut remote);
            }
        }
    }
    for (gid, dir, e) in &remote {
        let id = conj_id(gid, *dir, *e);
        let (table, field) = match dir {
            Direction::Egress => (T_EGRESS_RULES, dst_field(*e)),
            Direction::Ingress => (T_INGRESS_RULES, src_field(*e)),
        };
        fs.add(
            table,
            71,
            format!("conj_id={id},{}", l3(*e)),
            accept(*dir, true),
        );
        fs.add(
            table,
            71,
            format!("conj_id={},{}", id + 1, l3(*e)),
            accept(*dir, false),
        );
        if let Some(g) = groups.get(gid) {
            for m in g.members.iter().filter(|m| eth_of(m) == *e) {
                fs.add(
                    table,
                    71,
                    format!("{},{field}={}", l3(*e), net_text(m)),
                    format!("conjunction({id},2/2),conjunction({},2/2)", id + 1),
                );
            }
        }
    }
    fs
}

/// Flows shared by every secured port of a bridge.
fn base_flows(fs: &mut FlowSet) {
    // Frames not from a listed port: their network is their VLAN (untagged = flat).
    fs.add(
        T_CLASSIFY,
        1,
        "vlan_tci=0x1000/0x1000",
        format!("move:NXM_OF_VLAN_TCI[0..11]->NXM_NX_REG7[0..11],load:0x1->NXM_NX_REG7[16],resubmit(,{T_DISPATCH})"),
    );
    fs.add(
        T_CLASSIFY,
        1,
        "vlan_tci=0x0000/0x1000",
        format!("load:{NET_KEY:#x}->NXM_NX_REG7[],resubmit(,{T_DISPATCH})"),
    );
    fs.add(T_DISPATCH, 0, "", "NORMAL");
    // Egress: never a DHCP server or a router from a VM.
    fs.add(T_EGRESS, 100, "udp,tp_src=67", "drop");
    fs.add(T_EGRESS, 100, "udp6,tp_src=547", "drop");
    fs.add(T_EGRESS, 100, "icmp6,icmp_type=134", "drop");
    fs.add(T_EGRESS, 0, "", "drop");
    for e in [EtherType::IPv4, EtherType::IPv6] {
        fs.add(
            T_EGRESS_CT,
            10,
            l3(e),
            format!("ct(table={T_EGRESS_RULES},zone={ZONE})"),
        );
        fs.add(
            T_INGRESS,
            90,
            l3(e),
            format!("ct(table={T_INGRESS_RULES},zone={ZONE})"),
        );
    }
    fs.add(T_EGRESS_CT, 0, "", "drop");
    // Ingress: ARP, ND/MLD, router advertisements and DHCP replies reach the port (spoofing
    // is stopped at the sender: no VM may send an RA or a DHCP answer). RAs as Neutron's OVS
    // firewall allows them: a stretched network's router instances advertise unicast to the
    // VMs of their own pod, and a unicast RA is not a reply conntrack would pass.
    fs.add(T_INGRESS, 100, "arp", "output:NXM_NX_REG5[]");
    for t in [130, 131, 132, 134, 135, 136, 143] {
        fs.add(
            T_INGRESS,
            100,
            format!("icmp6,icmp_type={t}"),
            "output:NXM_NX_REG5[]",
        );
    }
    fs.add(
        T_INGRESS,
        95,
        "udp,tp_src=67,tp_dst=68",
        "output:NXM_NX_REG5[]",
    );
    fs.add(
        T_INGRESS,
        95,
        "udp6,tp_src=547,tp_dst=546",
        "output:NXM_NX_REG5[]",
    );
    fs.add(T_INGRESS, 0, "", "drop");
    for (table, dir) in [
        (T_EGRESS_RULES, Direction::Egress),
        (T_INGRESS_RULES, Direction::Ingress),
    ] {
        fs.add(table, 100, "ct_state=+inv+trk", "drop");
        fs.add(table, 100, format!("ct_mark={CT_MARK_DEAD:#x}"), "drop");
        fs.add(table, 90, "ct_state=+est+rpl+trk", accept(dir, false));
        fs.add(table, 90, "ct_state=+rel+trk", accept(dir, false));
        // An established connection no rule allows any more: marked dead, so its replies
        // (and every later packet) are dropped too.
        for e in [EtherType::IPv4, EtherType::IPv6] {
            fs.add(
                table,
                40,
                format!("{EST},{}", l3(e)),
                format!("ct(commit,zone={ZONE},exec(set_field:{CT_MARK_DEAD:#x}->ct_mark))"),
            );
        }
        fs.add(table, 0, "", "drop");
    }
}

/// Classification, dispatch and anti-spoofing of one secured port.
/// `mac` in OVS's spelling (lower case, six octets), or `None`.
fn mac_text(mac: &str) -> Option<String> {
    let octets: Vec<u8> = mac
        .split(':')
        .map(|x| {
            (x.len() == 2)
                .then(|| u8::from_str_radix(x, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    (octets.len() == 6).then(|| mac.to_lowercase())
}

fn port_flows(fs: &mut FlowSet, p: &SecuredPort) {
    // A malformed MAC would make OVS refuse the bridge's whole bundle: such a port or pair gets
    // no flows (the port then sends nothing), and the rest of the bridge is still programmed.
    let Some(own_mac) = mac_text(&p.mac) else {
        tracing::warn!(mac = %p.mac, ofport = p.ofport, "secured port with a malformed MAC: no flows");
        return;
    };
    let o = p.ofport;
    let key = net_key(p.tag);
    let zone = p.security.ct_zone;
    fs.add(
        T_CLASSIFY,
        100,
        format!("in_port={o}"),
        format!(
            "load:{o:#x}->NXM_NX_REG5[],load:{zone:#x}->NXM_NX_REG6[],load:{key:#x}->NXM_NX_REG7[],resubmit(,{T_EGRESS})"
        ),
    );
    let to_dispatch = format!("resubmit(,{T_DISPATCH})");
    let to_ct = format!("resubmit(,{T_EGRESS_CT})");
    // (MAC, source) pairs; every MAC also sends from its link-local address.
    let mut sources: BTreeSet<(String, IpNet)> = p
        .security
        .allowed
        .iter()
        .filter_map(|a| Some((mac_text(&a.mac)?, a.ip.trunc())))
        .collect();
    let macs: BTreeSet<String> = sources
        .iter()
        .map(|(m, _)| m.clone())
        .chain([own_mac])
        .collect();
    // Traffic to the port: its MAC and the MACs of its allowed address pairs, on its network.
    let to_port =
        format!("load:{o:#x}->NXM_NX_REG5[],load:{zone:#x}->NXM_NX_REG6[],resubmit(,{T_INGRESS})");
    for mac in &macs {
        fs.add(
            T_DISPATCH,
            90,
            format!("reg7={key:#x},vlan_tci=0x1000/0x1000,dl_dst={mac}"),
            format!("strip_vlan,{to_port}"),
        );
        fs.add(
            T_DISPATCH,
            90,
            format!("reg7={key:#x},vlan_tci=0x0000/0x1000,dl_dst={mac}"),
            to_port.clone(),
        );
    }
    for mac in &macs {
        if let Some(ll) = link_local(mac) {
            sources.insert((mac.clone(), IpNet::from(IpAddr::V6(ll))));
        }
        let r = format!("reg5={o:#x},dl_src={mac}");
        // DHCP discovery before the port has an address; DAD and MLD from the unspecified address.
        fs.add(
            T_EGRESS,
            95,
            format!("{r},udp,nw_src=0.0.0.0,tp_src=68,tp_dst=67"),
            to_dispatch.clone(),
        );
        for t in [130, 131, 132, 135, 143] {
            fs.add(
                T_EGRESS,
                95,
                format!("{r},icmp6,ipv6_src=::,icmp_type={t}"),
                to_dispatch.clone(),
            );
        }
        fs.add(
            T_EGRESS,
            95,
            format!("{r},icmp6,icmp_type=133"),
            to_dispatch.clone(),
        );
    }
    for (mac, net) in &sources {
        let r = format!("reg5={o:#x},dl_src={mac}");
        let n = net_text(net);
        match net {
            IpNet::V4(_) => {
                fs.add(
                    T_EGRESS,
                    95,
                    format!("{r},arp,arp_sha={mac},arp_spa={n}"),
                    to_dispatch.clone(),
                );
                fs.add(
                    T_EGRESS,
                    95,
                    format!("{r},udp,nw_src={n},tp_src=68,tp_dst=67"),
                    to_dispatch.clone(),
                );
                fs.add(T_EGRESS, 65, format!("{r},ip,nw_src={n}"), to_ct.clone());
            }
            IpNet::V6(_) => {
                for t in [130, 131, 132, 135, 143] {
                    fs.add(
                        T_EGRESS,
                        95,
                        format!("{r},icmp6,ipv6_src={n},icmp_type={t}"),
                        to_dispatch.clone(),
                    );
                }
                fs.add(
                    T_EGRESS,
                    95,
                    format!("{r},icmp6,icmp_type=136,nd_target={n}"),
                    to_dispatch.clone(),
                );
                fs.add(
                    T_EGRESS,
                    95,
                    format!("{r},udp6,ipv6_src={n},tp_src=546,tp_dst=547"),
                    to_dispatch.clone(),
                );
                fs.add(
                    T_EGRESS,
                    65,
                    format!("{r},ipv6,ipv6_src={n}"),
                    to_ct.clone(),
                );
            }
        }
    }
}

/// The flows of one rule on one port: a new-connection flow (commit) and an established one.
fn rule_flows(
    fs: &mut FlowSet,
    p: &SecuredPort,
    r: &SecurityGroupRule,
    remote: &mut BTreeSet<(String, Direction, EtherType)>,
) {
    let Some(matches) = rule_matches(r) else {
        return;
    };
    let table = match r.direction {
        Direction::Egress => T_EGRESS_RULES,
        Direction::Ingress => T_INGRESS_RULES,
    };
    let port = format!("reg5={:#x}", p.ofport);
    for m in matches {
        match &r.remote_group_id {
            None => {
                fs.add(
                    table,
                    70,
                    format!("{port},{NEW},{m}"),
                    accept(r.direction, true),
                );
                fs.add(
                    table,
                    70,
                    format!("{port},{EST},{m}"),
                    accept(r.direction, false),
                );
            }
            Some(g) => {
                let id = conj_id(g, r.direction, r.ethertype);
                remote.insert((g.clone(), r.direction, r.ethertype));
                fs.add(
                    table,
                    71,
                    format!("{port},{NEW},{m}"),
                    format!("conjunction({id},1/2)"),
                );
                fs.add(
                    table,
                    71,
                    format!("{port},{EST},{m}"),
                    format!("conjunction({},1/2)", id + 1),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_become_the_fewest_masks() {
        assert_eq!(port_masks(22, 22), vec![(22, 0xffff)]);
        assert_eq!(port_masks(0, 65535), vec![(0, 0)]);
        assert_eq!(port_masks(80, 81), vec![(80, 0xfffe)]);
        assert_eq!(port_masks(1, 3), vec![(1, 0xffff), (2, 0xfffe)]);
        // Every port in [1000, 1999] is covered once and nothing else is.
        let masks = port_masks(1000, 1999);
        for port in 0..=u16::MAX {
            let hits = masks.iter().filter(|(v, m)| port & m == *v).count();
            assert_eq!(
                hits,
                usize::from((1000..=1999).contains(&port)),
                "port {port}"
            );
        }
    }

    #[test]
    fn an_allowed_pair_with_its_own_mac_sends_and_receives_with_it() {
        let input = BridgeInput {
            secured: [(
                "p".to_string(),
                SecuredPort {
                    ofport: 4,
                    tag: 9,
                    mac: "fa:16:3e:00:00:01".into(),
                    security: PortSecurity {
                        allowed: vec![
                            wire::AllowedAddress {
                                mac: "fa:16:3e:00:00:01".into(),
                                ip: "10.0.0.1/32".parse().unwrap(),
                            },
                            wire::AllowedAddress {
                                mac: "FA:16:3E:00:00:99".into(),
                                ip: "10.0.0.99/32".parse().unwrap(),
                            },
                        ],
                        security_groups: vec![],
                        ct_zone: 5,
                    },
                },
            )]
            .into(),
            access: BTreeMap::new(),
        };
        let fs = compile(&input, &BTreeMap::new());
        let has = |t: u8, needle: &str| {
            fs.flows
                .keys()
                .any(|(table, _, m)| *table == t && m.contains(needle))
        };
        assert!(has(
            T_DISPATCH,
            "reg7=0x10009,vlan_tci=0x0000/0x1000,dl_dst=fa:16:3e:00:00:99"
        ));
        assert!(has(T_DISPATCH, "dl_dst=fa:16:3e:00:00:01"));
        assert!(has(
            T_EGRESS,
            "dl_src=fa:16:3e:00:00:99,arp,arp_sha=fa:16:3e:00:00:99,arp_spa=10.0.0.99"
        ));
        // The pair's IP is not allowed from the port's own MAC, nor the port's IP from the pair's.
        assert!(!has(
            T_EGRESS,
            "dl_src=fa:16:3e:00:00:01,ip,nw_src=10.0.0.99"
        ));
        assert!(!has(
            T_EGRESS,
            "dl_src=fa:16:3e:00:00:99,ip,nw_src=10.0.0.1"
        ));
        // No groups: nothing but the shared base flows in the rule tables.
        assert!(!fs
            .flows
            .keys()
            .any(|(t, p, _)| *t == T_INGRESS_RULES && *p == 70));
    }

    #[test]
    fn inputs_ovs_would_refuse_give_no_flow_instead_of_a_failed_bundle() {
        let rule = |json: serde_json::Value| -> SecurityGroupRule {
            let mut base =
                serde_json::json!({"id": "r", "direction": "ingress", "ethertype": "IPv4"});
            base.as_object_mut()
                .unwrap()
                .extend(json.as_object().unwrap().clone());
            serde_json::from_value(base).unwrap()
        };
        // ICMPv6 type on an IPv4 rule, an ICMP type above 255: never match.
        assert_eq!(
            rule_matches(&rule(
                serde_json::json!({"protocol": 58, "port_range_min": 128})
            )),
            None
        );
        assert_eq!(
            rule_matches(&rule(
                serde_json::json!({"protocol": 1, "port_range_min": 300})
            )),
            None
        );
        assert_eq!(
            rule_matches(&rule(
                serde_json::json!({"protocol": 1, "port_range_min": 8, "port_range_max": 0})
            )),
            Some(vec!["ip,nw_proto=1,icmp_type=8,icmp_code=0".to_string()])
        );
        assert_eq!(
            mac_text("FA:16:3E:00:00:01").as_deref(),
            Some("fa:16:3e:00:00:01")
        );
        for bad in [
            "fa:16:3e:00:00",
            "fa:16:3e:00:00:1",
            "zz:16:3e:00:00:01",
            "fa:16:3e:00:00:01,x",
        ] {
            assert_eq!(mac_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn link_local_is_eui64() {
        assert_eq!(
            link_local("fa:16:3e:00:00:11").unwrap().to_string(),
            "fe80::f816:3eff:fe00:11"
        );
    }
}
