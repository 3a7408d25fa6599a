//! Validation of a desired state as a whole, before anything on the node changes.
//!
//! The agent trusts nothing it is sent: a document that names another node, takes over a
//! namespace that is not a router's, asks for a VLAN OVS would reject halfway through a
//! transaction, or makes two interfaces overwrite each other must change nothing. [`validate`]
//! is pure (no I/O), so the daemon can check a document before its first write, and returns every
//! problem at once so the report names them all.
//!
//! What is not checked here, because the document does not carry it: the subnets of VM ports'
//! fixed IPs, and whether an interface name is taken by a device the agent does not own. A bridge
//! whose uplink device is missing is not a validation failure either: it stays a reported,
//! partial problem ([`crate::intent::NodeIntent::problems`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use wire::names::{DHCP_NS_PREFIX, MAX_IFNAME, ROUTER_NS_PREFIX};
use wire::{DhcpServer, LegKind, NodeDesiredState, RouterInstance, RouterLeg};

/// Who this agent is and what its configuration gives it: what a document must agree with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentIdentity {
    /// The node name the agent runs as (`--node`).
    pub node: String,
    /// The pod the node belongs to (`--pod`).
    pub pod: String,
    /// Uplink devices from `--uplinks`: OVS ports the agent manages, so no leg may take the name.
    pub uplink_devices: BTreeSet<String>,
}

/// One broken rule, naming the rule and the object that breaks it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The document is for another node.
    #[error("node: the document is for node {got:?}, this agent is node {want:?}")]
    WrongNode { got: String, want: String },
    /// The document puts the node in another pod.
    #[error("pod: the document puts the node in pod {got:?}, it belongs to pod {want:?}")]
    WrongPod { got: String, want: String },
    /// A router's id is not a UUID, or differs from the key it is filed under.
    #[error("router {key:?}: router_id {router_id:?} must be a UUID equal to its key")]
    BadRouterId { key: String, router_id: String },
    /// A router's namespace is not `qrouter-<router id>`.
    #[error("router {router}: namespace {namespace:?} is not {ROUTER_NS_PREFIX}<router id>")]
    BadNamespace { router: String, namespace: String },
    /// A VLAN tag or trunk outside 1–4094 (0 and 4095 are the agent's own: untagged, dead VLAN).
    #[error("{object}: VLAN {vlan} is outside 1-4094")]
    BadVlan { object: String, vlan: u16 },
    /// An interface name Linux or OVS would not take as is.
    #[error("{object}: interface name {name:?} is invalid: {reason}")]
    BadIfname {
        object: String,
        name: String,
        reason: &'static str,
    },
    /// Two objects want one interface name where names must be unique.
    #[error("{object}: interface name {name:?} is also used by {other}")]
    DuplicateIfname {
        object: String,
        name: String,
        other: String,
    },
    /// A port or leg on a bridge the document does not have.
    #[error("{object}: bridge {bridge:?} is not one of the document's bridges")]
    UnknownBridge { object: String, bridge: String },
    /// More than one bridge or gateway leg on one router instance.
    #[error("router {router}: {count} {kind:?} legs, at most one allowed")]
    DuplicateLegKind {
        router: String,
        kind: LegKind,
        count: usize,
    },
    /// A leg's address is not a usable host address of its subnet (the address's own prefix).
    #[error("{object}: address {address} is not a host address of its subnet: {reason}")]
    BadLegAddress {
        object: String,
        address: IpNet,
        reason: String,
    },
    /// Router advertisements a leg could not send as asked (RFC 4861 / RFC 8106 limits).
    #[error("{object}: router advertisement: {reason}")]
    BadRouterAdvertisement { object: String, reason: String },
    /// A route the kernel would refuse or that could not be forwarded from a connected leg.
    #[error("router {router}: route {destination} via {nexthop}: {reason}")]
    BadRoute {
        router: String,
        destination: IpNet,
        nexthop: IpAddr,
        reason: String,
    },
    /// A SNAT or floating-IP rule that does not fit the router's gateway leg.
    #[error("router {router}: {rule}: {reason}")]
    BadNat {
        router: String,
        rule: String,
        reason: String,
    },
    /// A MAC that is not a unicast Ethernet address in `xx:xx:xx:xx:xx:xx` form.
    #[error("{object}: MAC {mac:?} is not a unicast Ethernet address")]
    BadMac { object: String, mac: String },
    /// A DHCP server the agent would not run as is (its namespace, network id, addresses or
    /// leases).
    #[error("DHCP server {key:?}: {reason}")]
    BadDhcp { key: String, reason: String },
    /// Two legs or ports with one MAC.
    #[error("{object}: MAC {mac} is also used by {other}")]
    DuplicateMac {
        object: String,
        mac: String,
        other: String,
    },
    /// An MTU below IPv4's minimum (68): the kernel would refuse it on the veth.
    #[error("{object}: MTU {mtu} is below 68")]
    BadMtu { object: String, mtu: u16 },
    /// A VxLAN segment the agent would not set up as is.
    #[error("VxLAN segment {vni}: {reason}")]
    BadTunnel { vni: u32, reason: String },
}

/// Checks `state` as a whole against the rules and this agent's identity; `Err` holds every
/// broken rule (in document order), and then nothing of the document may be applied.
pub fn validate(state: &NodeDesiredState, me: &AgentIdentity) -> Result<(), Vec<ValidationError>> {
    let mut v = Validator {
        errors: Vec::new(),
        ovs_names: BTreeMap::new(),
        macs: BTreeMap::new(),
    };
    if state.node != me.node {
        v.errors.push(ValidationError::WrongNode {
            got: state.node.clone(),
            want: me.node.clone(),
        });
    }
    if state.pod != me.pod {
        v.errors.push(ValidationError::WrongPod {
            got: state.pod.clone(),
            want: me.pod.clone(),
        });
    }
    for dev in &me.uplink_devices {
        v.ovs_names
            .insert(dev.clone(), format!("uplink device {dev}"));
    }
    for (name, b) in &state.bridges {
        let object = format!("bridge {name}");
        v.ifname(&object, name);
        v.ovs_name(&object, name);
        for t in &b.trunks {
            v.vlan(&object, Some(*t));
        }
    }
    for (id, p) in &state.ports {
        let object = format!("port {id}");
        v.bridge(state, &object, &p.bridge);
        v.vlan(&object, p.tag);
        v.mac(&object, &p.mac);
    }
    for (key, r) in &state.routers {
        v.router(state, key, r);
    }
    for (key, d) in &state.dhcp {
        v.dhcp(state, key, d);
    }
    for (key, r) in &state.routers {
        for l in &r.legs {
            v.mtu(&format!("router {key}: leg {}", l.ns_ifname), l.mtu);
        }
    }
    for (key, d) in &state.dhcp {
        v.mtu(&format!("DHCP server {key:?}"), d.mtu);
    }
    if let Some(t) = &state.tunnels {
        v.tunnels(state, t);
    }
    if v.errors.is_empty() {
        Ok(())
    } else {
        Err(v.errors)
    }
}

struct Validator {
    errors: Vec<ValidationError>,
    /// Names in the node namespace / OVS (bridges, uplinks, node-side leg ends) → who has it.
    ovs_names: BTreeMap<String, String>,
    /// Normalised MAC → who has it.
    macs: BTreeMap<[u8; 6], String>,
}

impl Validator {
    fn vlan(&mut self, object: &str, tag: Option<u16>) {
        if let Some(vlan) = tag.filter(|t| !(1..=4094).contains(t)) {
            self.errors.push(ValidationError::BadVlan {
                object: object.to_string(),
                vlan,
            });
        }
    }

    fn bridge(&mut self, state: &NodeDesiredState, object: &str, bridge: &str) {
        if !state.bridges.contains_key(bridge) {
            self.errors.push(ValidationError::UnknownBridge {
                object: object.to_string(),
                bridge: bridge.to_string(),
            });
        }
    }

    /// Whether the name is valid; records the error when not.
    fn ifname(&mut self, object: &str, name: &str) -> bool {
        match ifname_problem(name) {
            None => true,
            Some(reason) => {
                self.errors.push(ValidationError::BadIfname {
                    object: object.to_string(),
                    name: name.to_string(),
                    reason,
                });
                false
            }
        }
    }

    fn ovs_name(&mut self, object: &str, name: &str) {
        if let Some(other) = self.ovs_names.get(name) {
            self.errors.push(ValidationError::DuplicateIfname {
                object: object.to_string(),
                name: name.to_string(),
                other: other.clone(),
            });
        } else {
            self.ovs_names.insert(name.to_string(), object.to_string());
        }
    }

    fn mtu(&mut self, object: &str, mtu: Option<u16>) {
        if let Some(mtu) = mtu.filter(|m| *m < 68) {
            self.errors.push(ValidationError::BadMtu {
                object: object.to_string(),
                mtu,
            });
        }
    }

    /// The segments' bridge exists; each tag is a VLAN of its own, not trunked on the bridge's
    /// uplink (it would leak the segment); no node is its own peer; the tunnel ports' names
    /// are taken by nothing else.
    fn tunnels(&mut self, state: &NodeDesiredState, t: &wire::Tunnels) {
        self.bridge(state, "tunnels", &t.bridge);
        let trunked = state
            .bridges
            .get(&t.bridge)
            .map(|b| b.trunks.clone())
            .unwrap_or_default();
        let mut tags: BTreeMap<u16, u32> = BTreeMap::new();
        for (vni, s) in &t.segments {
            let object = format!("VxLAN segment {vni}");
            if !(1..=0x00ff_ffff).contains(vni) {
                self.errors.push(ValidationError::BadTunnel {
                    vni: *vni,
                    reason: "a VNI is 1 to 16777215".into(),
                });
            }
            self.vlan(&object, Some(s.tag));
            if let Some(other) = tags.insert(s.tag, *vni) {
                self.errors.push(ValidationError::BadTunnel {
                    vni: *vni,
                    reason: format!("tag {} is also segment {other}'s", s.tag),
                });
            }
            if trunked.contains(&s.tag) {
                self.errors.push(ValidationError::BadTunnel {
                    vni: *vni,
                    reason: format!("tag {} is trunked on {}'s uplink", s.tag, t.bridge),
                });
            }
            if s.peers.contains(&t.local_ip) {
                self.errors.push(ValidationError::BadTunnel {
                    vni: *vni,
                    reason: format!("this node's own endpoint {} is a peer", t.local_ip),
                });
            }
        }
        let peers: BTreeSet<IpAddr> = t
            .segments
            .values()
            .flat_map(|s| s.peers.iter().copied())
            .collect();
        for p in peers {
            self.ovs_name(&format!("tunnel to {p}"), &crate::tunnel::port_name(p));
        }
        if !t.segments.is_empty() {
            self.ovs_name("tunnel patch port", crate::tunnel::PATCH_TUN);
            self.ovs_name("tunnel patch port", crate::tunnel::PATCH_INT);
        }
    }

    fn mac(&mut self, object: &str, mac: &str) {
        let Some(bytes) = parse_unicast_mac(mac) else {
            self.errors.push(ValidationError::BadMac {
                object: object.to_string(),
                mac: mac.to_string(),
            });
            return;
        };
        if let Some(other) = self.macs.get(&bytes) {
            self.errors.push(ValidationError::DuplicateMac {
                object: object.to_string(),
                mac: mac.to_string(),
                other: other.clone(),
            });
        } else {
            self.macs.insert(bytes, object.to_string());
        }
    }

    /// A DHCP server: its namespace is `qdhcp-<network id>` (a UUID, so no path or other
    /// agent's namespace), its interfaces and MAC are valid and unique, every server address is
    /// a host address of its subnet, and every lease has a MAC and an address on a served subnet.
    fn dhcp(&mut self, state: &NodeDesiredState, key: &str, d: &DhcpServer) {
        let mut bad = |reason: String| {
            self.errors.push(ValidationError::BadDhcp {
                key: key.to_string(),
                reason,
            })
        };
        if d.network_id != key || !is_uuid(&d.network_id) {
            bad(format!(
                "network_id {:?} must be a UUID equal to its key",
                d.network_id
            ));
        }
        if d.namespace != format!("{DHCP_NS_PREFIX}{key}") {
            bad(format!(
                "namespace {:?} is not {DHCP_NS_PREFIX}<network id>",
                d.namespace
            ));
        }
        for sn in &d.subnets {
            let net = IpNet::new(sn.server_address, sn.cidr.prefix_len()).ok();
            match net {
                Some(n) if n.trunc() == sn.cidr.trunc() => {
                    if let Some(reason) = host_address_problem(&n) {
                        bad(format!(
                            "subnet {}: server address {n}: {reason}",
                            sn.subnet_id
                        ));
                    }
                }
                _ => bad(format!(
                    "subnet {}: server address {} is not in {}",
                    sn.subnet_id, sn.server_address, sn.cidr
                )),
            }
        }
        for h in &d.hosts {
            if parse_unicast_mac(&h.mac.to_ascii_lowercase()).is_none() {
                bad(format!(
                    "host {}: MAC {:?} is not unicast",
                    h.port_id, h.mac
                ));
            }
            match d.subnets.iter().find(|s| s.subnet_id == h.subnet_id) {
                Some(sn) if sn.cidr.contains(&h.ip) => {}
                _ => bad(format!(
                    "host {}: address {} is not on a served subnet ({})",
                    h.port_id, h.ip, h.subnet_id
                )),
            }
        }
        let object = format!("DHCP server {key}");
        self.bridge(state, &object, &d.bridge);
        self.vlan(&object, d.tag);
        if self.ifname(&object, &d.ns_ifname) && d.ns_ifname == "lo" {
            self.errors.push(ValidationError::DuplicateIfname {
                object: object.clone(),
                name: d.ns_ifname.clone(),
                other: "the loopback device".into(),
            });
        }
        if self.ifname(&object, &d.ovs_ifname) {
            self.ovs_name(&object, &d.ovs_ifname);
        }
        self.mac(&object, &d.mac);
    }

    fn router(&mut self, state: &NodeDesiredState, key: &str, r: &RouterInstance) {
        if r.router_id != key || !is_uuid(&r.router_id) {
            self.errors.push(ValidationError::BadRouterId {
                key: key.to_string(),
                router_id: r.router_id.clone(),
            });
        }
        if r.namespace != format!("{ROUTER_NS_PREFIX}{key}") {
            self.errors.push(ValidationError::BadNamespace {
                router: key.to_string(),
                namespace: r.namespace.clone(),
            });
        }
        for kind in [LegKind::Bridge, LegKind::Gateway] {
            let count = r.legs.iter().filter(|l| l.kind == kind).count();
            if count > 1 {
                self.errors.push(ValidationError::DuplicateLegKind {
                    router: key.to_string(),
                    kind,
                    count,
                });
            }
        }
        // Names inside the router namespace; `lo` is there already.
        let mut ns_names: BTreeMap<&str, String> =
            BTreeMap::from([("lo", "the loopback device".to_string())]);
        let mut own_addrs: BTreeMap<IpAddr, String> = BTreeMap::new();
        for leg in &r.legs {
            let object = format!("router {key} leg {}", leg.ns_ifname);
            self.bridge(state, &object, &leg.bridge);
            self.vlan(&object, leg.tag);
            if self.ifname(&object, &leg.ns_ifname) {
                if let Some(other) = ns_names.get(leg.ns_ifname.as_str()) {
                    self.errors.push(ValidationError::DuplicateIfname {
                        object: object.clone(),
                        name: leg.ns_ifname.clone(),
                        other: other.clone(),
                    });
                } else {
                    ns_names.insert(&leg.ns_ifname, object.clone());
                }
            }
            if self.ifname(&object, &leg.ovs_ifname) {
                self.ovs_name(&object, &leg.ovs_ifname);
            }
            self.mac(&object, &leg.mac);
            if let Some(reason) = leg.ipv6_ra.as_ref().and_then(ra_problem) {
                self.errors.push(ValidationError::BadRouterAdvertisement {
                    object: object.clone(),
                    reason,
                });
            }
            for (i, a) in leg.addresses().enumerate() {
                let reason = host_address_problem(a).or_else(|| {
                    if i > 0 {
                        extra_address_problem(leg, a)
                    } else {
                        None
                    }
                });
                if let Some(reason) = reason {
                    self.errors.push(ValidationError::BadLegAddress {
                        object: object.clone(),
                        address: *a,
                        reason,
                    });
                } else if let Some(other) = own_addrs.get(&a.addr()) {
                    self.errors.push(ValidationError::BadLegAddress {
                        object: object.clone(),
                        address: *a,
                        reason: format!("the address is also on {other}"),
                    });
                } else {
                    own_addrs.insert(a.addr(), object.clone());
                }
            }
        }
        self.routes(key, r, &own_addrs);
        self.nat(key, r, &own_addrs);
    }

    fn routes(&mut self, key: &str, r: &RouterInstance, own: &BTreeMap<IpAddr, String>) {
        let mut seen = BTreeSet::new();
        for rt in &r.routes {
            let reason = if rt.destination != rt.destination.trunc() {
                Some("the destination has host bits set".to_string())
            } else if !seen.insert(rt.destination) {
                Some("a second route to the same destination".to_string())
            } else if rt.destination.addr().is_ipv4() != rt.nexthop.is_ipv4() {
                Some("the next hop is of another address family".to_string())
            } else if let Some(leg) = own.get(&rt.nexthop) {
                Some(format!("the next hop is the router's own address on {leg}"))
            } else if !r.legs.iter().any(|l| on_link(l, rt.nexthop)) {
                Some("the next hop is not on a connected leg of this router".to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                self.errors.push(ValidationError::BadRoute {
                    router: key.to_string(),
                    destination: rt.destination,
                    nexthop: rt.nexthop,
                    reason,
                });
            }
        }
    }

    fn nat(&mut self, key: &str, r: &RouterInstance, own: &BTreeMap<IpAddr, String>) {
        let gw = r.leg(LegKind::Gateway);
        let push = |errors: &mut Vec<ValidationError>, rule: String, reason: String| {
            errors.push(ValidationError::BadNat {
                router: key.to_string(),
                rule,
                reason,
            })
        };
        for s in &r.nat.snat {
            let rule = format!("snat to {}", s.to);
            let Some(gw) = gw else {
                push(
                    &mut self.errors,
                    rule,
                    "the router has no gateway leg".into(),
                );
                continue;
            };
            if s.out_ifname != gw.ns_ifname {
                push(
                    &mut self.errors,
                    rule.clone(),
                    format!(
                        "leaves by {:?}, the gateway leg is {:?}",
                        s.out_ifname, gw.ns_ifname
                    ),
                );
            }
            if s.to != gw.address.addr() {
                push(
                    &mut self.errors,
                    rule.clone(),
                    format!("is not the gateway leg's address {}", gw.address.addr()),
                );
            }
            for src in &s.sources {
                if *src != src.trunc() {
                    push(
                        &mut self.errors,
                        rule.clone(),
                        format!("source {src} has host bits set"),
                    );
                }
            }
        }
        let mut seen = BTreeSet::new();
        for f in &r.nat.floating {
            let rule = format!("floating IP {}", f.floating_ip);
            let Some(gw) = gw else {
                push(
                    &mut self.errors,
                    rule,
                    "the router has no gateway leg".into(),
                );
                continue;
            };
            let reason = if f.out_ifname != gw.ns_ifname {
                Some(format!(
                    "leaves by {:?}, the gateway leg is {:?}",
                    f.out_ifname, gw.ns_ifname
                ))
            } else if !seen.insert(f.floating_ip) {
                Some("listed twice".to_string())
            } else if f.floating_ip.is_ipv4() != gw.address.addr().is_ipv4() {
                Some("is not of the gateway leg's address family".to_string())
            } else if let Some(problem) = floating_problem(gw, f.floating_ip) {
                Some(problem)
            } else if let Some(leg) = own.get(&f.floating_ip) {
                Some(format!("is the router's own address on {leg}"))
            } else if f.fixed_ip.is_ipv4() != f.floating_ip.is_ipv4() {
                Some(format!("fixed IP {} is of another family", f.fixed_ip))
            } else if gw.address.contains(&f.fixed_ip) || own.contains_key(&f.fixed_ip) {
                Some(format!(
                    "fixed IP {} is on the external side or the router itself",
                    f.fixed_ip
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                push(&mut self.errors, rule, reason);
            }
        }
    }
}

/// Why a floating IP cannot sit on the gateway leg `gw`. It may come from another subnet of the
/// external network than the leg's (the document does not carry those), but when it is inside
/// the leg's subnet it must be a host address of it.
/// Prefixes and DNS servers one advertisement may carry: with them it stays far below the IPv6
/// minimum MTU (1280), and hosts use at most three DNS servers anyway.
pub const MAX_RA_PREFIXES: usize = 16;
/// See [`MAX_RA_PREFIXES`].
pub const MAX_RA_DNS_SERVERS: usize = 8;

fn ra_problem(ra: &wire::RouterAdvertisement) -> Option<String> {
    if let Some(mtu) = ra.mtu {
        if mtu < 1280 {
            return Some(format!("MTU {mtu} is below IPv6's minimum of 1280"));
        }
    }
    if ra.prefixes.len() > MAX_RA_PREFIXES {
        return Some(format!(
            "{} prefixes; at most {MAX_RA_PREFIXES}",
            ra.prefixes.len()
        ));
    }
    if ra.dns_servers.len() > MAX_RA_DNS_SERVERS {
        return Some(format!(
            "{} DNS servers; at most {MAX_RA_DNS_SERVERS}",
            ra.dns_servers.len()
        ));
    }
    if let Some(bad) = ra
        .clients
        .iter()
        .flatten()
        .find(|m| parse_unicast_mac(m).is_none())
    {
        return Some(format!("client {bad:?} is not a unicast MAC"));
    }
    ra.prefixes
        .iter()
        .find(|p| p.autonomous && p.prefix.prefix_len() != 64)
        .map(|p| {
            format!(
                "autonomous prefix {} is not a /64 (SLAAC needs one)",
                p.prefix
            )
        })
}

fn floating_problem(gw: &RouterLeg, ip: IpAddr) -> Option<String> {
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Some("is not a unicast address".into());
    }
    if !gw.address.contains(&ip) {
        return None;
    }
    let inside = IpNet::new(ip, gw.address.prefix_len()).ok()?;
    host_address_problem(&inside).map(|r| {
        format!(
            "inside the gateway leg's subnet {}: {r}",
            gw.address.trunc()
        )
    })
}

/// Whether `ip` is reachable directly through `leg` (inside the subnet of one of its
/// addresses: an IPv6 next hop is on a dual-stack leg's IPv6 subnet).
fn on_link(leg: &RouterLeg, ip: IpAddr) -> bool {
    leg.addresses()
        .any(|a| a.prefix_len() < a.max_prefix_len() && a.contains(&ip))
}

/// Why `a`, one of `leg`'s `extra_addresses`, cannot sit beside its address, or `None`. A
/// link-local address is the kernel's own on every leg; a bridge leg is dual-stack (one
/// address of each family, the IPv6 one derived from the IPv4 one), so its extra address is
/// one, of the other family; only a gateway leg has further addresses of the same family (the
/// external network's other subnets).
fn extra_address_problem(leg: &RouterLeg, a: &IpNet) -> Option<String> {
    if let IpNet::V6(n) = a {
        if n.addr().segments()[0] & 0xffc0 == 0xfe80 {
            return Some("a link-local address is the kernel's, not the agent's".into());
        }
    }
    match leg.kind {
        LegKind::Bridge if a.addr().is_ipv4() == leg.address.addr().is_ipv4() => Some(format!(
            "a bridge leg's extra address must be of the other family than {}",
            leg.address
        )),
        LegKind::Bridge if leg.extra_addresses.len() > 1 => {
            Some("a bridge leg has one address of each family".into())
        }
        _ => None,
    }
}

/// Why `name` is not a valid Linux interface name (as the kernel's `dev_valid_name`, plus `%`,
/// which rtnetlink expands as a template, and control characters), or `None`.
pub fn ifname_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_IFNAME {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not names")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '%' || c.is_whitespace() || c.is_control())
    {
        Some("contains '/', ':', '%', whitespace or a control character")
    } else {
        None
    }
}

/// Why `a` is not a usable host address of its own subnet, or `None`.
fn host_address_problem(a: &IpNet) -> Option<String> {
    let ip = a.addr();
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Some("not a unicast address".into());
    }
    if a.prefix_len() == a.max_prefix_len() {
        return Some(format!(
            "/{} leaves the leg without a subnet",
            a.prefix_len()
        ));
    }
    // /31 (RFC 3021) and /127 have no network or broadcast address to avoid.
    if a.max_prefix_len() - a.prefix_len() >= 2 {
        if ip == a.network() {
            return Some("it is the subnet's network address".into());
        }
        if a.addr().is_ipv4() && ip == a.broadcast() {
            return Some("it is the subnet's broadcast address".into());
        }
    }
    None
}

/// A canonical (hyphenated) UUID, as the controller gives every router.
fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// Six hex octets separated by `:`, not multicast (nor broadcast) and not all zero.
fn parse_unicast_mac(s: &str) -> Option<[u8; 6]> {
    wire::eui64::parse_mac(s).filter(|mac| mac[0] & 1 == 0 && *mac != [0; 6])
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{
        BridgeState, FloatingRule, Nat, PortBinding, Route, RouterInstance, RouterLeg, SnatRule,
    };

    const R1: &str = "0f6e3d2e-1484-4fdb-8e00-000000000001";
    const R2: &str = "0f6e3d2e-1484-4fdb-8e00-000000000002";

    fn me() -> AgentIdentity {
        AgentIdentity {
            node: "node2".into(),
            pod: "RegionTwo".into(),
            uplink_devices: ["eth1".to_string()].into(),
        }
    }

    fn leg(kind: LegKind, n: &str, tag: Option<u16>, addr: &str, mac: &str) -> RouterLeg {
        RouterLeg {
            kind,
            bridge: if kind == LegKind::Gateway {
                "br-ext"
            } else {
                "br-vlan"
            }
            .into(),
            tag,
            address: addr.parse().unwrap(),
            mac: mac.into(),
            ns_ifname: format!("q{n}"),
            ovs_ifname: format!("v{n}"),
            network_id: None,
            subnet_id: None,
            mtu: None,
            ipv6_ra: None,
            extra_addresses: Vec::new(),
        }
    }

    fn router(id: &str, n: &str, third_octet: u8) -> RouterInstance {
        RouterInstance {
            router_id: id.into(),
            project_id: "p".into(),
            namespace: format!("qrouter-{id}"),
            legs: vec![
                leg(
                    LegKind::Internal,
                    &format!("r-{n}"),
                    Some(101),
                    &format!("10.0.{third_octet}.1/24"),
                    &format!("fa:16:3e:00:{third_octet:02x}:01"),
                ),
                leg(
                    LegKind::Bridge,
                    &format!("b-{n}"),
                    Some(2001),
                    &format!("100.0.0.{}/24", third_octet + 1),
                    &format!("fa:16:3e:00:{third_octet:02x}:02"),
                ),
            ],
            routes: vec![Route {
                destination: "10.0.9.0/24".parse().unwrap(),
                nexthop: "100.0.0.9".parse().unwrap(),
            }],
            ..Default::default()
        }
    }

    /// A valid document: two routers, one with a gateway leg, SNAT and a floating IP.
    fn ok() -> NodeDesiredState {
        let mut s = NodeDesiredState {
            node: "node2".into(),
            pod: "RegionTwo".into(),
            revision: 4,
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
            "port-1".into(),
            PortBinding {
                bridge: "br-vlan".into(),
                tag: Some(101),
                network_id: "n1".into(),
                mac: "fa:16:3e:00:00:11".into(),
                fixed_ips: vec!["10.0.1.11".parse().unwrap()],
                security: None,
            },
        );
        let mut r1 = router(R1, "1", 1);
        r1.legs.push(leg(
            LegKind::Gateway,
            "g-1",
            None,
            "163.3.124.5/24",
            "fa:16:3e:00:01:03",
        ));
        r1.routes.push(Route {
            destination: "0.0.0.0/0".parse().unwrap(),
            nexthop: "163.3.124.1".parse().unwrap(),
        });
        r1.nat = Nat {
            snat: vec![SnatRule {
                sources: vec!["10.0.1.0/24".parse().unwrap()],
                out_ifname: "qg-1".into(),
                to: "163.3.124.5".parse().unwrap(),
            }],
            floating: vec![FloatingRule {
                floating_ip: "163.3.124.7".parse().unwrap(),
                fixed_ip: "10.0.1.11".parse().unwrap(),
                out_ifname: "qg-1".into(),
                floatingip_id: "f1".into(),
                port_id: "port-1".into(),
            }],
        };
        s.routers.insert(R1.into(), r1);
        s.routers.insert(R2.into(), router(R2, "2", 2));
        s
    }

    fn r1(s: &mut NodeDesiredState) -> &mut RouterInstance {
        s.routers.get_mut(R1).unwrap()
    }

    type Edit = fn(&mut NodeDesiredState);
    type Check = fn(&ValidationError) -> bool;

    /// (rule, invalid edit, valid twin edit, the error the invalid edit must give).
    fn cases() -> Vec<(&'static str, Edit, Edit, Check)> {
        vec![
            (
                "node is the agent's own",
                |s| s.node = "node1".into(),
                |s| s.node = "node2".into(),
                |e| matches!(e, ValidationError::WrongNode { got, .. } if got == "node1"),
            ),
            (
                "pod is the agent's own",
                |s| s.pod = "RegionOne".into(),
                |s| s.pod = "RegionTwo".into(),
                |e| matches!(e, ValidationError::WrongPod { got, .. } if got == "RegionOne"),
            ),
            (
                "namespace is qrouter-<router id>",
                |s| r1(s).namespace = "node1".into(),
                |s| r1(s).namespace = format!("qrouter-{R1}"),
                |e| matches!(e, ValidationError::BadNamespace { namespace, .. } if namespace == "node1"),
            ),
            (
                "namespace has no path in it",
                |s| r1(s).namespace = format!("qrouter-{R1}/../x"),
                |_| {},
                |e| matches!(e, ValidationError::BadNamespace { .. }),
            ),
            (
                "router id is a UUID",
                |s| {
                    let mut r = s.routers.remove(R1).unwrap();
                    r.router_id = "r1".into();
                    r.namespace = "qrouter-r1".into();
                    s.routers.insert("r1".into(), r);
                },
                |s| {
                    let mut r = s.routers.remove(R1).unwrap();
                    let id = "0f6e3d2e-1484-4fdb-8e00-00000000000a";
                    r.router_id = id.into();
                    r.namespace = format!("qrouter-{id}");
                    s.routers.insert(id.into(), r);
                },
                |e| matches!(e, ValidationError::BadRouterId { router_id, .. } if router_id == "r1"),
            ),
            (
                "router id equals its key",
                |s| r1(s).router_id = R2.into(),
                |s| r1(s).router_id = R1.into(),
                |e| matches!(e, ValidationError::BadRouterId { router_id, .. } if router_id == R2),
            ),
            (
                "port VLAN within 1-4094 (4095 is the agent's dead VLAN)",
                |s| s.ports.get_mut("port-1").unwrap().tag = Some(4095),
                |s| s.ports.get_mut("port-1").unwrap().tag = Some(4094),
                |e| matches!(e, ValidationError::BadVlan { vlan: 4095, .. }),
            ),
            (
                "leg VLAN within 1-4094 (0 is the agent's untagged)",
                |s| r1(s).legs[0].tag = Some(0),
                |s| r1(s).legs[0].tag = Some(1),
                |e| matches!(e, ValidationError::BadVlan { vlan: 0, .. }),
            ),
            (
                "trunk VLAN within 1-4094",
                |s| {
                    s.bridges.get_mut("br-vlan").unwrap().trunks.insert(4095);
                },
                |s| {
                    s.bridges.get_mut("br-vlan").unwrap().trunks.insert(4094);
                },
                |e| matches!(e, ValidationError::BadVlan { vlan: 4095, object } if object == "bridge br-vlan"),
            ),
            (
                "interface name at most 15 bytes",
                |s| r1(s).legs[0].ns_ifname = "qr-0123456789abc".into(),
                |s| r1(s).legs[0].ns_ifname = "qr-0123456789ab".into(),
                |e| matches!(e, ValidationError::BadIfname { name, .. } if name.len() == 16),
            ),
            (
                "interface name is a valid Linux name",
                |s| r1(s).legs[0].ovs_ifname = "vr/x".into(),
                |s| r1(s).legs[0].ovs_ifname = "vr-x".into(),
                |e| matches!(e, ValidationError::BadIfname { name, .. } if name == "vr/x"),
            ),
            (
                "bridge name is a valid Linux name",
                |s| {
                    let b = s.bridges.remove("br-ext").unwrap();
                    s.bridges.insert("br ext".into(), b);
                    r1(s).legs[2].bridge = "br ext".into();
                },
                |s| {
                    let b = s.bridges.remove("br-ext").unwrap();
                    s.bridges.insert("br-ext2".into(), b);
                    r1(s).legs[2].bridge = "br-ext2".into();
                },
                |e| matches!(e, ValidationError::BadIfname { name, .. } if name == "br ext"),
            ),
            (
                "node-side names unique across routers",
                |s| s.routers.get_mut(R2).unwrap().legs[0].ovs_ifname = "vr-1".into(),
                |s| s.routers.get_mut(R2).unwrap().legs[0].ovs_ifname = "vr-3".into(),
                |e| matches!(e, ValidationError::DuplicateIfname { name, .. } if name == "vr-1"),
            ),
            (
                "node-side names do not take an uplink's name",
                |s| r1(s).legs[0].ovs_ifname = "eth1".into(),
                |s| r1(s).legs[0].ovs_ifname = "eth9".into(),
                |e| matches!(e, ValidationError::DuplicateIfname { other, .. } if other == "uplink device eth1"),
            ),
            (
                "node-side names do not take a bridge's name",
                |s| r1(s).legs[0].ovs_ifname = "br-vlan".into(),
                |s| r1(s).legs[0].ovs_ifname = "br-vlan0".into(),
                |e| matches!(e, ValidationError::DuplicateIfname { other, .. } if other == "bridge br-vlan"),
            ),
            (
                "namespace-side names unique in one namespace",
                |s| r1(s).legs[1].ns_ifname = "qr-1".into(),
                |s| s.routers.get_mut(R2).unwrap().legs[0].ns_ifname = "qr-1".into(),
                |e| matches!(e, ValidationError::DuplicateIfname { name, .. } if name == "qr-1"),
            ),
            (
                "namespace-side names are not lo",
                |s| r1(s).legs[0].ns_ifname = "lo".into(),
                |s| r1(s).legs[0].ns_ifname = "lo0".into(),
                |e| matches!(e, ValidationError::DuplicateIfname { name, .. } if name == "lo"),
            ),
            (
                "ports and legs on the document's bridges",
                |s| s.ports.get_mut("port-1").unwrap().bridge = "br-int".into(),
                |s| s.ports.get_mut("port-1").unwrap().bridge = "br-ext".into(),
                |e| matches!(e, ValidationError::UnknownBridge { bridge, .. } if bridge == "br-int"),
            ),
            (
                "at most one gateway leg",
                |s| {
                    let mut l = r1(s).legs[2].clone();
                    l.ns_ifname = "qg-9".into();
                    l.ovs_ifname = "vg-9".into();
                    l.mac = "fa:16:3e:00:09:09".into();
                    l.address = "163.3.124.9/24".parse().unwrap();
                    r1(s).legs.push(l);
                },
                |s| {
                    let mut l = r1(s).legs[0].clone();
                    l.ns_ifname = "qr-9".into();
                    l.ovs_ifname = "vr-9".into();
                    l.mac = "fa:16:3e:00:09:09".into();
                    l.address = "10.0.99.1/24".parse().unwrap();
                    r1(s).legs.push(l);
                },
                |e| {
                    matches!(
                        e,
                        ValidationError::DuplicateLegKind {
                            kind: LegKind::Gateway,
                            count: 2,
                            ..
                        }
                    )
                },
            ),
            (
                "leg address inside its subnet (not the network address)",
                |s| r1(s).legs[0].address = "10.0.1.0/24".parse().unwrap(),
                |s| r1(s).legs[0].address = "10.0.1.254/24".parse().unwrap(),
                |e| matches!(e, ValidationError::BadLegAddress { reason, .. } if reason.contains("network")),
            ),
            (
                "leg address inside its subnet (not the broadcast address)",
                |s| r1(s).legs[0].address = "10.0.1.255/24".parse().unwrap(),
                |s| r1(s).legs[0].address = "10.0.1.255/16".parse().unwrap(),
                |e| matches!(e, ValidationError::BadLegAddress { reason, .. } if reason.contains("broadcast")),
            ),
            (
                "leg has a subnet (not /32)",
                |s| r1(s).legs[0].address = "10.0.1.1/32".parse().unwrap(),
                |s| r1(s).legs[0].address = "10.0.1.1/31".parse().unwrap(),
                |e| matches!(e, ValidationError::BadLegAddress { .. }),
            ),
            (
                "leg addresses distinct within a router",
                |s| r1(s).legs[0].address = "100.0.0.2/16".parse().unwrap(),
                |s| r1(s).legs[0].address = "100.1.0.2/16".parse().unwrap(),
                |e| matches!(e, ValidationError::BadLegAddress { reason, .. } if reason.contains("also on")),
            ),
            (
                "a bridge leg's extra address is of the other family",
                |s| r1(s).legs[1].extra_addresses = vec!["100.0.1.2/24".parse().unwrap()],
                |s| r1(s).legs[1].extra_addresses = vec!["fd64:0:0:1::2/64".parse().unwrap()],
                |e| matches!(e, ValidationError::BadLegAddress { reason, .. } if reason.contains("other family")),
            ),
            (
                "a bridge leg has one extra address",
                |s| {
                    r1(s).legs[1].extra_addresses = vec![
                        "fd64:0:0:1::2/64".parse().unwrap(),
                        "fd64:0:0:2::2/64".parse().unwrap(),
                    ]
                },
                // A gateway leg may have several (the external network's other subnets).
                |s| {
                    r1(s).legs[2].extra_addresses = vec![
                        "2001:db8:1::5/64".parse().unwrap(),
                        "2001:db8:2::5/64".parse().unwrap(),
                    ]
                },
                |e| matches!(e, ValidationError::BadLegAddress { reason, .. } if reason.contains("one address of each")),
            ),
            (
                "an extra address is a host address of its subnet",
                |s| r1(s).legs[1].extra_addresses = vec!["fd64:0:0:1::/64".parse().unwrap()],
                |s| r1(s).legs[1].extra_addresses = vec!["fd64:0:0:1::1/64".parse().unwrap()],
                |e| matches!(e, ValidationError::BadLegAddress { reason, .. } if reason.contains("network address")),
            ),
            (
                "an extra address is not link-local",
                |s| r1(s).legs[2].extra_addresses = vec!["fe80::5/64".parse().unwrap()],
                |s| r1(s).legs[2].extra_addresses = vec!["2001:db8::5/64".parse().unwrap()],
                |e| matches!(e, ValidationError::BadLegAddress { reason, .. } if reason.contains("link-local")),
            ),
            (
                "extra addresses distinct across the legs of a router",
                |s| {
                    r1(s).legs[1].extra_addresses = vec!["fd64:0:0:1::2/64".parse().unwrap()];
                    r1(s).legs[2].extra_addresses = vec!["fd64:0:0:1::2/64".parse().unwrap()];
                },
                |s| {
                    r1(s).legs[1].extra_addresses = vec!["fd64:0:0:1::2/64".parse().unwrap()];
                    r1(s).legs[2].extra_addresses = vec!["fd64:0:0:1::3/64".parse().unwrap()];
                },
                |e| matches!(e, ValidationError::BadLegAddress { reason, .. } if reason.contains("also on")),
            ),
            (
                "an IPv6 route's next hop on a leg's IPv6 subnet",
                |s| {
                    r1(s).routes.push(Route {
                        destination: "::/0".parse().unwrap(),
                        nexthop: "2001:db8::1".parse().unwrap(),
                    })
                },
                |s| {
                    r1(s).legs[2].extra_addresses = vec!["2001:db8::5/64".parse().unwrap()];
                    r1(s).routes.push(Route {
                        destination: "::/0".parse().unwrap(),
                        nexthop: "2001:db8::1".parse().unwrap(),
                    })
                },
                |e| matches!(e, ValidationError::BadRoute { reason, .. } if reason.contains("connected")),
            ),
            (
                "an IPv6 route's next hop is not the router's own extra address",
                |s| {
                    r1(s).legs[1].extra_addresses = vec!["fd64:0:0:1::2/64".parse().unwrap()];
                    r1(s).routes.push(Route {
                        destination: "fd00:9::/64".parse().unwrap(),
                        nexthop: "fd64:0:0:1::2".parse().unwrap(),
                    })
                },
                |s| {
                    r1(s).legs[1].extra_addresses = vec!["fd64:0:0:1::2/64".parse().unwrap()];
                    r1(s).routes.push(Route {
                        destination: "fd00:9::/64".parse().unwrap(),
                        nexthop: "fd64:0:0:1::3".parse().unwrap(),
                    })
                },
                |e| matches!(e, ValidationError::BadRoute { reason, .. } if reason.contains("own address")),
            ),
            (
                "route next hop on a connected leg",
                |s| r1(s).routes[0].nexthop = "100.0.1.9".parse().unwrap(),
                |s| r1(s).routes[0].nexthop = "100.0.0.254".parse().unwrap(),
                |e| matches!(e, ValidationError::BadRoute { reason, .. } if reason.contains("connected")),
            ),
            (
                "route next hop on a leg of the same router",
                // 10.0.2.0/24 is router 2's leg, not router 1's.
                |s| r1(s).routes[0].nexthop = "10.0.2.7".parse().unwrap(),
                |s| s.routers.get_mut(R2).unwrap().routes[0].nexthop = "10.0.2.7".parse().unwrap(),
                |e| matches!(e, ValidationError::BadRoute { router, .. } if router == R1),
            ),
            (
                "route next hop is not the router's own address",
                |s| r1(s).routes[0].nexthop = "100.0.0.2".parse().unwrap(),
                |s| r1(s).routes[0].nexthop = "100.0.0.3".parse().unwrap(),
                |e| matches!(e, ValidationError::BadRoute { reason, .. } if reason.contains("own address")),
            ),
            (
                "route destination without host bits",
                |s| r1(s).routes[0].destination = "10.0.9.1/24".parse().unwrap(),
                |s| r1(s).routes[0].destination = "10.0.9.1/32".parse().unwrap(),
                |e| matches!(e, ValidationError::BadRoute { reason, .. } if reason.contains("host bits")),
            ),
            (
                "one route per destination",
                |s| {
                    let mut rt = r1(s).routes[0].clone();
                    rt.nexthop = "100.0.0.8".parse().unwrap();
                    r1(s).routes.push(rt);
                },
                |s| {
                    let mut rt = r1(s).routes[0].clone();
                    rt.destination = "10.0.8.0/24".parse().unwrap();
                    r1(s).routes.push(rt);
                },
                |e| matches!(e, ValidationError::BadRoute { reason, .. } if reason.contains("same destination")),
            ),
            (
                "SNAT to the gateway leg's address",
                |s| r1(s).nat.snat[0].to = "163.3.124.6".parse().unwrap(),
                |s| r1(s).nat.snat[0].to = "163.3.124.5".parse().unwrap(),
                |e| matches!(e, ValidationError::BadNat { reason, .. } if reason.contains("gateway leg's address")),
            ),
            (
                "SNAT leaves by the gateway leg",
                |s| r1(s).nat.snat[0].out_ifname = "qb-1".into(),
                |s| r1(s).nat.snat[0].out_ifname = "qg-1".into(),
                |e| matches!(e, ValidationError::BadNat { reason, .. } if reason.contains("qb-1")),
            ),
            (
                "NAT needs a gateway leg",
                |s| {
                    let nat = r1(s).nat.clone();
                    s.routers.get_mut(R2).unwrap().nat = nat;
                },
                |s| {
                    let r2 = s.routers.get_mut(R2).unwrap();
                    r2.legs.push(leg(
                        LegKind::Gateway,
                        "g-2",
                        None,
                        "163.3.124.6/24",
                        "fa:16:3e:00:02:03",
                    ));
                    r2.nat.snat = vec![SnatRule {
                        sources: vec!["10.0.2.0/24".parse().unwrap()],
                        out_ifname: "qg-2".into(),
                        to: "163.3.124.6".parse().unwrap(),
                    }];
                },
                |e| matches!(e, ValidationError::BadNat { router, reason, .. } if router == R2 && reason.contains("no gateway leg")),
            ),
            (
                "floating IP a host address of the gateway subnet when inside it",
                |s| r1(s).nat.floating[0].floating_ip = "163.3.124.255".parse().unwrap(),
                // Another subnet of the external network: the document cannot tell; allowed.
                |s| r1(s).nat.floating[0].floating_ip = "163.3.125.7".parse().unwrap(),
                |e| matches!(e, ValidationError::BadNat { reason, .. } if reason.contains("broadcast")),
            ),
            (
                "floating IP is not the router's own address",
                |s| r1(s).nat.floating[0].floating_ip = "163.3.124.5".parse().unwrap(),
                |s| r1(s).nat.floating[0].floating_ip = "163.3.124.8".parse().unwrap(),
                |e| matches!(e, ValidationError::BadNat { reason, .. } if reason.contains("own address")),
            ),
            (
                "floating IP's fixed IP is not on the external side",
                |s| r1(s).nat.floating[0].fixed_ip = "163.3.124.20".parse().unwrap(),
                |s| r1(s).nat.floating[0].fixed_ip = "10.0.9.20".parse().unwrap(),
                |e| matches!(e, ValidationError::BadNat { reason, .. } if reason.contains("external side")),
            ),
            (
                "MAC is a unicast Ethernet address",
                |s| r1(s).legs[0].mac = "ff:ff:ff:ff:ff:ff".into(),
                |s| r1(s).legs[0].mac = "FA:16:3E:AA:BB:CC".into(),
                |e| matches!(e, ValidationError::BadMac { mac, .. } if mac == "ff:ff:ff:ff:ff:ff"),
            ),
            (
                "no two legs with one MAC (across routers, any case)",
                |s| s.routers.get_mut(R2).unwrap().legs[0].mac = "FA:16:3E:00:01:01".into(),
                |s| s.routers.get_mut(R2).unwrap().legs[0].mac = "fa:16:3e:00:01:0a".into(),
                |e| matches!(e, ValidationError::DuplicateMac { .. }),
            ),
            (
                "an advertised MTU is at least 1280",
                |s| {
                    r1(s).legs[0].ipv6_ra = Some(wire::RouterAdvertisement {
                        mtu: Some(1200),
                        ..Default::default()
                    })
                },
                |s| {
                    r1(s).legs[0].ipv6_ra = Some(wire::RouterAdvertisement {
                        mtu: Some(1280),
                        ..Default::default()
                    })
                },
                |e| matches!(e, ValidationError::BadRouterAdvertisement { reason, .. } if reason.contains("1280")),
            ),
            (
                "an advertisement's clients are unicast MACs",
                |s| {
                    r1(s).legs[0].ipv6_ra = Some(wire::RouterAdvertisement {
                        clients: Some(
                            ["fa:16:3e:00:00:11".into(), "33:33:00:00:00:01".into()].into(),
                        ),
                        ..Default::default()
                    })
                },
                |s| {
                    r1(s).legs[0].ipv6_ra = Some(wire::RouterAdvertisement {
                        clients: Some(
                            ["fa:16:3e:00:00:11".into(), "FA:16:3E:00:00:12".into()].into(),
                        ),
                        ..Default::default()
                    })
                },
                |e| matches!(e, ValidationError::BadRouterAdvertisement { reason, .. } if reason.contains("33:33")),
            ),
            (
                "an autonomous prefix is a /64",
                |s| {
                    r1(s).legs[0].ipv6_ra = Some(wire::RouterAdvertisement {
                        prefixes: vec![wire::RaPrefix {
                            prefix: "fd00:1::/56".parse().unwrap(),
                            autonomous: true,
                            on_link: true,
                        }],
                        ..Default::default()
                    })
                },
                |s| {
                    r1(s).legs[0].ipv6_ra = Some(wire::RouterAdvertisement {
                        prefixes: vec![wire::RaPrefix {
                            prefix: "fd00:1::/56".parse().unwrap(),
                            autonomous: false,
                            on_link: true,
                        }],
                        ..Default::default()
                    })
                },
                |e| matches!(e, ValidationError::BadRouterAdvertisement { reason, .. } if reason.contains("/64")),
            ),
            (
                "no leg and port with one MAC",
                |s| s.ports.get_mut("port-1").unwrap().mac = "fa:16:3e:00:01:02".into(),
                |s| s.ports.get_mut("port-1").unwrap().mac = "fa:16:3e:00:01:12".into(),
                |e| matches!(e, ValidationError::DuplicateMac { object, .. } if object.contains("port-1") || object.contains("leg")),
            ),
        ]
    }

    #[test]
    fn the_base_document_is_valid() {
        assert_eq!(validate(&ok(), &me()), Ok(()));
    }

    #[test]
    fn every_rule_refuses_its_invalid_case_and_accepts_its_valid_twin() {
        for (rule, invalid, twin, check) in cases() {
            let mut bad = ok();
            invalid(&mut bad);
            let errs = validate(&bad, &me()).expect_err(rule);
            assert!(
                errs.iter().any(check),
                "{rule}: not the expected error: {errs:?}"
            );
            // Every error names its rule and object in its message.
            assert!(errs.iter().all(|e| !e.to_string().is_empty()));
            let mut good = ok();
            twin(&mut good);
            assert_eq!(validate(&good, &me()), Ok(()), "{rule}: valid twin refused");
        }
    }

    #[test]
    fn a_missing_uplink_is_not_a_validation_failure() {
        let mut s = ok();
        s.bridges.get_mut("br-ext").unwrap().uplink = true;
        let no_uplinks = AgentIdentity {
            uplink_devices: BTreeSet::new(),
            ..me()
        };
        assert_eq!(validate(&s, &no_uplinks), Ok(()));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut s = ok();
        s.node = "node1".into();
        s.ports.get_mut("port-1").unwrap().tag = Some(5000);
        r1(&mut s).namespace = "default".into();
        let errs = validate(&s, &me()).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(
            errs[0].to_string(),
            "node: the document is for node \"node1\", this agent is node \"node2\""
        );
    }

    #[test]
    fn flat_networks_are_untagged_not_vlan_0() {
        let mut s = ok();
        s.ports.get_mut("port-1").unwrap().tag = None;
        r1(&mut s).legs[0].tag = None;
        assert_eq!(validate(&s, &me()), Ok(()));
    }

    #[test]
    fn ifname_rules_follow_the_kernel() {
        for good in ["qr-0f6e3d2e-14", "a", "vé-1", "x.y_z-0"] {
            assert_eq!(ifname_problem(good), None, "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a:b",
            "a/b",
            "eth%d",
            "a\tb",
            "0123456789abcdef",
        ] {
            assert!(ifname_problem(bad).is_some(), "{bad:?}");
        }
    }

    const NET: &str = "5a1c0e2e-1484-4fdb-8e00-0000000000d1";

    fn with_dhcp() -> NodeDesiredState {
        let mut s = ok();
        let d: DhcpServer = serde_json::from_value(serde_json::json!({
            "network_id": NET, "port_id": "dp", "namespace": format!("qdhcp-{NET}"),
            "bridge": "br-vlan", "tag": 101, "mac": "fa:16:3e:00:00:d1",
            "ns_ifname": "ns-d1", "ovs_ifname": "tapd1", "lease_seconds": 600,
            "subnets": [{"subnet_id": "s1", "cidr": "10.0.1.0/24", "server_address": "10.0.1.2"}],
            "hosts": [{"mac": "fa:16:3e:00:00:11", "ip": "10.0.1.11", "subnet_id": "s1",
                       "port_id": "port-1"}]
        }))
        .unwrap();
        s.dhcp.insert(NET.into(), d);
        s
    }

    fn dhcp_errors(f: impl FnOnce(&mut DhcpServer)) -> Vec<ValidationError> {
        let mut s = with_dhcp();
        f(s.dhcp.get_mut(NET).unwrap());
        validate(&s, &me()).err().unwrap_or_default()
    }

    #[test]
    fn dhcp_servers_are_checked_before_any_change() {
        assert_eq!(validate(&with_dhcp(), &me()), Ok(()));
        let bad = |e: &[ValidationError], needle: &str| {
            assert!(
                e.iter().any(|e| e.to_string().contains(needle)),
                "{needle:?} not in {e:?}"
            )
        };
        // The namespace is exactly qdhcp-<network id>: no other agent's or a path.
        bad(
            &dhcp_errors(|d| d.namespace = "qrouter-x".into()),
            "namespace",
        );
        bad(
            &dhcp_errors(|d| d.namespace = format!("qdhcp-{NET}/../../x")),
            "namespace",
        );
        bad(&dhcp_errors(|d| d.network_id = "n1".into()), "UUID");
        bad(
            &dhcp_errors(|d| d.subnets[0].server_address = "10.0.2.2".parse().unwrap()),
            "not in 10.0.1.0/24",
        );
        bad(
            &dhcp_errors(|d| d.subnets[0].server_address = "10.0.1.255".parse().unwrap()),
            "broadcast",
        );
        bad(
            &dhcp_errors(|d| d.hosts[0].ip = "10.0.9.11".parse().unwrap()),
            "not on a served subnet",
        );
        bad(
            &dhcp_errors(|d| d.hosts[0].mac = "ff:ff:ff:ff:ff:ff".into()),
            "unicast",
        );
        bad(&dhcp_errors(|d| d.tag = Some(4095)), "VLAN 4095");
        bad(&dhcp_errors(|d| d.bridge = "br-x".into()), "br-x");
        bad(&dhcp_errors(|d| d.ns_ifname = "lo".into()), "loopback");
        bad(
            &dhcp_errors(|d| d.ovs_ifname = "br-vlan".into()),
            "also used",
        );
        // The DHCP port's MAC is one more MAC on the node: a router leg's is refused.
        bad(
            &dhcp_errors(|d| d.mac = "fa:16:3e:00:01:01".into()),
            "also used",
        );
    }

    fn with_tunnels() -> NodeDesiredState {
        let mut s = ok();
        s.tunnels = Some(
            serde_json::from_value(serde_json::json!({
                "local_ip": "192.168.50.1", "bridge": "br-vlan",
                "segments": {"1001": {"tag": 7, "peers": ["192.168.50.2", "192.168.50.3"]},
                             "1002": {"tag": 8, "peers": ["192.168.50.3"]}}
            }))
            .unwrap(),
        );
        s
    }

    fn seg(s: &mut NodeDesiredState, vni: u32) -> &mut wire::TunnelSegment {
        s.tunnels.as_mut().unwrap().segments.get_mut(&vni).unwrap()
    }

    fn tunnel_errors(f: impl FnOnce(&mut NodeDesiredState)) -> String {
        let mut s = with_tunnels();
        f(&mut s);
        let e = validate(&s, &me()).err().unwrap_or_default();
        e.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn tunnels_and_mtus_are_checked_before_any_change() {
        assert_eq!(validate(&with_tunnels(), &me()), Ok(()));
        let e = tunnel_errors(|s| seg(s, 1002).tag = 7);
        assert!(e.contains("tag 7 is also segment 1001's"), "{e}");
        let e = tunnel_errors(|s| seg(s, 1001).tag = 4095);
        assert!(e.contains("VLAN 4095"), "{e}");
        let e = tunnel_errors(|s| {
            s.bridges.get_mut("br-vlan").unwrap().trunks.insert(8);
        });
        assert!(e.contains("tag 8 is trunked on br-vlan's uplink"), "{e}");
        let e = tunnel_errors(|s| {
            seg(s, 1002).peers.insert("192.168.50.1".parse().unwrap());
        });
        assert!(e.contains("own endpoint 192.168.50.1 is a peer"), "{e}");
        let e = tunnel_errors(|s| s.tunnels.as_mut().unwrap().bridge = "br-x".into());
        assert!(e.contains("br-x"), "{e}");
        let e = tunnel_errors(|s| r1(s).legs[0].ovs_ifname = "vx-c0a83203".into());
        assert!(e.contains("also used"), "{e}");
        let e = tunnel_errors(|s| r1(s).legs[0].mtu = Some(60));
        assert!(e.contains("MTU 60 is below 68"), "{e}");
        let e = tunnel_errors(|s| r1(s).legs[0].mtu = Some(1450));
        assert!(e.is_empty(), "{e}");
    }
}
