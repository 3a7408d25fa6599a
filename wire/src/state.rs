//! The desired state of one node.
//!
//! JSON shape (abridged):
//! ```json
//! {"node": "node1", "pod": "RegionOne", "revision": 7,
//!  "bridges": {"br-vlan": {"physnet": "bridge", "uplink": true, "trunks": [2001], "untagged": false}},
//!  "ports": {"<port id>": {"bridge": "br-vlan", "tag": 101, "network_id": "...", "mac": "...",
//!                          "fixed_ips": ["10.0.1.11"]}},
//!  "routers": {"<router id>": {"router_id": "...", "project_id": "...", "namespace": "qrouter-...",
//!              "legs": [{"kind": "bridge", "bridge": "br-vlan", "tag": 2001, "address": "100.0.0.2/24",
//!                        "mac": "fa:16:3e:..", "ns_ifname": "qb-...", "ovs_ifname": "vb-...",
//!                        "network_id": null, "subnet_id": null}],
//!              "routes": [{"destination": "10.0.2.0/24", "nexthop": "100.0.0.3"}],
//!              "nat": {"snat": [...], "floating": [...]},
//!              "probe_targets": [{"address": "100.0.0.3", "kind": "bridge_instance", "label": "..."}]}}}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Everything one node must look like. The controller sets `revision`; the planner leaves it 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDesiredState {
    /// Node name, as the agent registered it.
    pub node: String,
    /// The pod (region name) the node belongs to.
    pub pod: String,
    /// Revision of this document; bumped by the controller when the content changes.
    #[serde(default)]
    pub revision: u64,
    /// OVS bridges by bridge name.
    #[serde(default)]
    pub bridges: BTreeMap<String, BridgeState>,
    /// VM port bindings by port id (= the OVS `external_ids:iface-id`).
    #[serde(default)]
    pub ports: BTreeMap<String, PortBinding>,
    /// Router instances hosted on this node, by router id.
    #[serde(default)]
    pub routers: BTreeMap<String, RouterInstance>,
    /// DHCP servers this node runs, by network id: one per (network, pod), on the node of the
    /// pod the planner chose, each answering only the ports that pod serves.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dhcp: BTreeMap<String, DhcpServer>,
    /// Security groups the node enforces, by group id: those of its bound ports, and those the
    /// rules of these groups name as `remote_group_id` (for their members).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// The VxLAN segments this node carries over tunnels; `None` when it carries none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnels: Option<Tunnels>,
    /// Liveness sessions with the other nodes of the pod (router failover); `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Liveness>,
}

impl NodeDesiredState {
    /// Whether two states differ in anything but the revision (the controller's bump test).
    pub fn same_content(&self, other: &NodeDesiredState) -> bool {
        self.node == other.node
            && self.pod == other.pod
            && self.bridges == other.bridges
            && self.ports == other.ports
            && self.routers == other.routers
            && self.dhcp == other.dhcp
            && self.security_groups == other.security_groups
            && self.tunnels == other.tunnels
            && self.liveness == other.liveness
    }
}

/// A node's VxLAN side. The segments' VM ports, router legs and DHCP legs sit on `bridge` with a
/// node-local VLAN tag each (as pod-local networks do); the agent patches `bridge` to a tunnel
/// bridge of its own that holds one VxLAN port per peer and maps each tag to its VNI. A peer
/// gets a tunnel port only while it shares a segment with this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnels {
    /// This node's tunnel endpoint: the `local_ip` its agent registered.
    pub local_ip: IpAddr,
    /// The bridge the segments' ports and legs are plugged into (the `local` physnet's bridge).
    pub bridge: String,
    /// Segments by VNI.
    #[serde(default)]
    pub segments: BTreeMap<u32, TunnelSegment>,
}

/// The BFD sessions a node keeps with the other nodes of its pod over the tunnel network, one
/// per peer, run by ovs-vswitchd (so they keep answering while the agent restarts): what the
/// controller decides router failover from, and what tells a cut-off node to withdraw.
///
/// A node withdraws (fences) its router instances — their legs down, nothing answered — when
/// every peer is down and either it has at least two peers or its own data-plane links have no
/// carrier; it brings them back when a peer answers again and the instances are still its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    /// The pod's other nodes that have a tunnel endpoint: node name → its `local_ip`.
    #[serde(default)]
    pub peers: BTreeMap<String, IpAddr>,
    /// BFD transmit and receive interval, in milliseconds.
    pub interval_ms: u32,
    /// BFD detect multiplier: a peer is down after `interval_ms * multiplier` without packets.
    pub multiplier: u8,
}

/// One VxLAN segment on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelSegment {
    /// The segment's VLAN tag on [`Tunnels::bridge`] on this node (never trunked on an uplink).
    pub tag: u16,
    /// The tenant network; `None` for the project's bridge network.
    #[serde(default)]
    pub network_id: Option<String>,
    /// The project of a bridge network segment (`None` for a tenant network).
    #[serde(default)]
    pub project_id: Option<String>,
    /// Tunnel endpoints of the other nodes that have this segment, sorted: broadcast and
    /// unknown unicast are replicated to exactly these (head-end replication), no flooding
    /// to every node.
    #[serde(default)]
    pub peers: BTreeSet<IpAddr>,
}

/// One OVS bridge and what its uplink must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeState {
    /// The physical network this bridge serves (`bridge`, `extern`, ...).
    pub physnet: String,
    /// Whether the node registered an uplink for this physnet.
    #[serde(default)]
    pub uplink: bool,
    /// VLANs the uplink trunks: exactly the VLAN segments this node shares with other nodes
    /// (bridge VLANs, stretched networks, external, pod-local networks on several nodes of the
    /// pod); VxLAN segments' tags are never trunked.
    #[serde(default)]
    pub trunks: BTreeSet<u16>,
    /// Whether untagged (flat) traffic must also pass the uplink.
    #[serde(default)]
    pub untagged: bool,
}

/// A VM port this node must plug: the interface with `external_ids:iface-id = port id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// OVS bridge the port sits on.
    pub bridge: String,
    /// VLAN tag of the port's network on this node; `None` for a flat network (untagged).
    pub tag: Option<u16>,
    /// Network id.
    pub network_id: String,
    /// The port's MAC address.
    pub mac: String,
    /// Fixed IPs of the port.
    #[serde(default)]
    pub fixed_ips: Vec<IpAddr>,
    /// Port security to enforce; `None` when the port has `port_security_enabled` false (all
    /// traffic passes, as in Neutron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<PortSecurity>,
}

/// What a port with port security may send and which groups filter it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSecurity {
    /// (MAC, address or prefix) pairs the port may send from: its MAC with each fixed IP, then
    /// its `allowed_address_pairs`; sorted. IPv6 link-local from the MAC is implied.
    #[serde(default)]
    pub allowed: Vec<AllowedAddress>,
    /// Security group ids, sorted; empty means nothing is allowed in or out beyond
    /// anti-spoofed ARP/ND (Neutron's behaviour for a port with no groups).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Conntrack zone of the port's network on this node: unique per network on the node and
    /// stable while the network stays there, so two projects reusing one CIDR never share
    /// conntrack entries.
    pub ct_zone: u16,
}

/// A source a port may use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AllowedAddress {
    /// Source MAC.
    pub mac: String,
    /// Source address or prefix.
    pub ip: IpNet,
}

/// One security group as a node needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// Rules, sorted by rule id.
    #[serde(default)]
    pub rules: Vec<SecurityGroupRule>,
    /// Addresses of every port in the group, in every pod (fixed IPs and allowed address pairs):
    /// what a rule with this group as `remote_group_id` matches. Filled only for groups some
    /// rule on this node names as its remote group.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub members: BTreeSet<IpNet>,
}

/// Traffic direction of a rule, seen from the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Into the VM.
    Ingress,
    /// Out of the VM.
    Egress,
}

/// Neutron's `ethertype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EtherType {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
}

/// A security group rule, normalised: protocol as a number, ports as a range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    /// Rule id (the flows of a rule carry it, so removing it removes exactly its flows).
    pub id: String,
    /// Direction.
    pub direction: Direction,
    /// Ether type.
    pub ethertype: EtherType,
    /// IP protocol number; `None` for any.
    #[serde(default)]
    pub protocol: Option<u8>,
    /// TCP/UDP/SCTP: lowest port; ICMP: the type.
    #[serde(default)]
    pub port_range_min: Option<u16>,
    /// TCP/UDP/SCTP: highest port; ICMP: the code.
    #[serde(default)]
    pub port_range_max: Option<u16>,
    /// Remote prefix; `None` with no remote group means any.
    #[serde(default)]
    pub remote_ip_prefix: Option<IpNet>,
    /// Remote group: its [`SecurityGroup::members`] on this node.
    #[serde(default)]
    pub remote_group_id: Option<String>,
}

/// The DHCP server of one network in one pod: a namespace with one leg on the network, holding
/// the network's `network:dhcp` port (one IP per DHCP-enabled subnet, reserved by the
/// controller so the servers of different pods never collide).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpServer {
    /// Network id.
    pub network_id: String,
    /// The `network:dhcp` port's id.
    pub port_id: String,
    /// Namespace name without the agent's lab prefix: `qdhcp-<network id>`.
    pub namespace: String,
    /// OVS bridge the node-side end is plugged into.
    pub bridge: String,
    /// VLAN tag of the node-side end; `None` for a flat network.
    pub tag: Option<u16>,
    /// MAC of the namespace-side end (the DHCP port's MAC).
    pub mac: String,
    /// Interface name inside the namespace (`ns-` + 11 characters of the port id).
    pub ns_ifname: String,
    /// Interface name of the node-side end (`tap` + 11 characters of the port id).
    pub ovs_ifname: String,
    /// The network's MTU (option 26), if set.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Lease time handed out, in seconds.
    pub lease_seconds: u32,
    /// DHCP-enabled subnets of the network, sorted by subnet id: IPv4 ones, and IPv6 ones whose
    /// address mode is `dhcpv6-stateless` or `dhcpv6-stateful`.
    #[serde(default)]
    pub subnets: Vec<DhcpSubnet>,
    /// Static leases: the ports this server answers (bound in this pod; unbound ones in the
    /// network's primary pod), sorted by (MAC, address). Any other MAC gets no answer.
    #[serde(default)]
    pub hosts: Vec<DhcpHost>,
}

/// What a DHCP server hands out for one subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpSubnet {
    /// Subnet id.
    pub subnet_id: String,
    /// CIDR (the mask, option 1).
    pub cidr: IpNet,
    /// The DHCP port's address on this subnet (server identifier, option 54).
    pub server_address: IpAddr,
    /// Router (option 3): this pod's router leg on the subnet when the router has an instance
    /// here, else the subnet's `gateway_ip`; `None` when `gateway_ip` is null.
    #[serde(default)]
    pub router: Option<IpAddr>,
    /// DNS servers (option 6), in the subnet's order.
    #[serde(default)]
    pub dns_nameservers: Vec<IpAddr>,
    /// Host routes (option 121, with the default route added by the server when `router` is
    /// set), in the subnet's order.
    #[serde(default)]
    pub host_routes: Vec<Route>,
    /// For an IPv6 subnet, what DHCPv6 serves (`None` for IPv4): stateless answers
    /// Information-Request only, stateful also leases the port's fixed IP (IA_NA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address_mode: Option<Ipv6AddressMode>,
}

/// One static lease.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DhcpHost {
    /// Client MAC.
    pub mac: String,
    /// The port's fixed IP on one of the server's subnets.
    pub ip: IpAddr,
    /// Subnet of `ip`.
    pub subnet_id: String,
    /// Port id.
    pub port_id: String,
    /// Host name (option 12), if the port has one.
    #[serde(default)]
    pub hostname: Option<String>,
}

/// One router instance: a namespace holding the legs of one router in one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterInstance {
    /// Router id.
    pub router_id: String,
    /// Owner project.
    pub project_id: String,
    /// Namespace name without the agent's lab prefix: `qrouter-<router id>`.
    pub namespace: String,
    /// Legs sorted by (`kind`, `ns_ifname`).
    #[serde(default)]
    pub legs: Vec<RouterLeg>,
    /// Routes beyond the connected ones, sorted by destination; the default route is the entry
    /// for `0.0.0.0/0`.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// NAT on this instance (only the gateway instance has any).
    #[serde(default)]
    pub nat: Nat,
    /// Addresses this instance probes, sorted by address.
    #[serde(default)]
    pub probe_targets: Vec<ProbeTarget>,
}

impl RouterInstance {
    /// The default route's next hop, if any.
    pub fn default_route(&self) -> Option<IpAddr> {
        self.routes
            .iter()
            .find(|r| r.destination.prefix_len() == 0)
            .map(|r| r.nexthop)
    }

    /// The next hop for exactly `destination`, if routed.
    pub fn route_to(&self, destination: &IpNet) -> Option<IpAddr> {
        self.routes
            .iter()
            .find(|r| &r.destination == destination)
            .map(|r| r.nexthop)
    }

    /// The first leg of a kind (the bridge and gateway legs are unique per instance).
    pub fn leg(&self, kind: LegKind) -> Option<&RouterLeg> {
        self.legs.iter().find(|l| l.kind == kind)
    }
}

/// What a leg connects the router to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegKind {
    /// A tenant subnet (Neutron's `qr-` port).
    Internal,
    /// The project's bridge network (cross-pod east-west).
    Bridge,
    /// The external network (Neutron's `qg-` port).
    Gateway,
}

/// One veth leg: `ns_ifname` inside the router namespace, `ovs_ifname` plugged into `bridge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterLeg {
    /// What the leg connects to.
    pub kind: LegKind,
    /// OVS bridge the node-side end is plugged into.
    pub bridge: String,
    /// VLAN tag of the node-side end; `None` for a flat network.
    pub tag: Option<u16>,
    /// Address and prefix inside the namespace.
    pub address: IpNet,
    /// MAC of the namespace-side end.
    pub mac: String,
    /// Interface name inside the namespace (<= 15 bytes).
    pub ns_ifname: String,
    /// Interface name of the node-side end (<= 15 bytes).
    pub ovs_ifname: String,
    /// Network the leg is on (`None` for the bridge leg).
    #[serde(default)]
    pub network_id: Option<String>,
    /// Subnet the address comes from (`None` for the bridge leg).
    #[serde(default)]
    pub subnet_id: Option<String>,
    /// MTU of both ends of the leg: the network's MTU when it is below the underlay's (a VxLAN
    /// network: 1450 on a 1500 underlay); `None` leaves the kernel's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Router advertisements this leg sends: an internal leg on an IPv6 subnet whose
    /// `ipv6_ra_mode` is set; `None` sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_ra: Option<RouterAdvertisement>,
    /// Further addresses on the namespace side, sorted: a dual-stack bridge leg's IPv6 bridge
    /// address (`address` stays the IPv4 one), a gateway leg's addresses on the external
    /// network's other subnets (its IPv6 address beside the IPv4 one). Neighbour
    /// advertisements and probes cover them as they cover `address`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_addresses: Vec<IpNet>,
}

impl RouterLeg {
    /// Every address of the leg: `address`, then `extra_addresses`.
    pub fn addresses(&self) -> impl Iterator<Item = &IpNet> {
        std::iter::once(&self.address).chain(self.extra_addresses.iter())
    }
}

/// What a router leg advertises (RFC 4861 router advertisements, sent from the leg's
/// link-local address, periodically and in answer to router solicitations).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterAdvertisement {
    /// Prefix information options, sorted by prefix.
    #[serde(default)]
    pub prefixes: Vec<RaPrefix>,
    /// M flag: addresses come from DHCPv6 (`dhcpv6-stateful`).
    #[serde(default)]
    pub managed: bool,
    /// O flag: other configuration comes from DHCPv6 (`dhcpv6-stateless`, `dhcpv6-stateful`).
    #[serde(default)]
    pub other_config: bool,
    /// Router lifetime in seconds; 0 means "not a default router" (an instance of a stretched
    /// network that is not its pod's gateway).
    pub router_lifetime: u16,
    /// MTU option, when the network's MTU is known.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Recursive DNS servers (RFC 8106 option 25): the subnet's IPv6 `dns_nameservers`.
    #[serde(default)]
    pub dns_servers: Vec<Ipv6Addr>,
    /// Who the advertisements are for. `None`: everyone on the link (periodic RAs to ff02::1,
    /// every router solicitation answered) — a network that lives in one pod. `Some(macs)`:
    /// only these hosts, sorted — the ports a stretched network's instance serves in its own
    /// pod: periodic RAs go unicast to each host's EUI-64 link-local address at its MAC, and
    /// solicitations from anyone else are not answered. A stretched network is one link
    /// across pods; this keeps each pod's VMs on their own pod's instance as default router,
    /// the one DHCPv4 hands them, so IPv4 and IPv6 leave by the same router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<BTreeSet<String>>,
}

/// One prefix information option.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RaPrefix {
    /// The prefix (a /64 for SLAAC).
    pub prefix: Ipv6Net,
    /// A flag: hosts form addresses from it by SLAAC (`slaac`, `dhcpv6-stateless`).
    pub autonomous: bool,
    /// L flag: the prefix is on-link.
    pub on_link: bool,
}

/// Neutron's `ipv6_address_mode`: how a VM on an IPv6 subnet gets its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv6AddressMode {
    /// From router advertisements (EUI-64 from the MAC); no DHCPv6.
    Slaac,
    /// Address by SLAAC, DNS and the like by DHCPv6 (Information-Request).
    Dhcpv6Stateless,
    /// Address and the rest by DHCPv6 (IA_NA, the port's fixed IP).
    Dhcpv6Stateful,
}

/// A static route in the router namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0` for the default route).
    pub destination: IpNet,
    /// Next hop on a connected leg.
    pub nexthop: IpAddr,
}

/// NAT rules of a router instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nat {
    /// Source NAT for the router's subnets leaving the gateway leg; sorted.
    #[serde(default)]
    pub snat: Vec<SnatRule>,
    /// Floating IPs (1:1 DNAT and SNAT); sorted by floating IP.
    #[serde(default)]
    pub floating: Vec<FloatingRule>,
}

/// `oifname out_ifname ip saddr {sources} snat to to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SnatRule {
    /// Source subnets, sorted.
    pub sources: Vec<IpNet>,
    /// The gateway leg's namespace-side interface.
    pub out_ifname: String,
    /// The gateway IP sources are translated to.
    pub to: IpAddr,
}

/// A floating IP: DNAT `floating_ip -> fixed_ip` and SNAT back out of `out_ifname`. The agent
/// also puts `floating_ip/32` on the gateway leg so the instance answers ARP for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FloatingRule {
    /// The floating IP (from the external subnet).
    pub floating_ip: IpAddr,
    /// The VM's fixed IP it maps to.
    pub fixed_ip: IpAddr,
    /// The gateway leg's namespace-side interface.
    pub out_ifname: String,
    /// Floating IP id.
    pub floatingip_id: String,
    /// Port id the floating IP is bound to.
    pub port_id: String,
}

/// What a probe target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// A bridge address (IPv4, or IPv6 on a dual-stack bridge) of another instance of the
    /// same project.
    BridgeInstance,
    /// The external network's gateway.
    ExternalGateway,
}

/// An address a router instance probes: ARP + ICMP echo for IPv4, neighbour discovery +
/// ICMPv6 echo for IPv6.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProbeTarget {
    /// Address to probe.
    pub address: IpAddr,
    /// What it is.
    pub kind: ProbeKind,
    /// Human label: `<router id>@<pod>` or `external:<network id>`.
    pub label: String,
}
