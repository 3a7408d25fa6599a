//! The planner's input: plain structs the controller fills from its store.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

/// Everything the planner looks at, copied out of the controller's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Physnet that carries the per-project bridge networks (`bridge` in the guide).
    pub bridge_physnet: String,
    /// Physnet whose bridge holds `local` networks (they have no physnet of their own).
    pub local_physnet: String,
    /// Pods (regions).
    pub pods: Vec<Pod>,
    /// Registered nodes.
    pub nodes: Vec<Node>,
    /// Networks, tenant and external.
    pub networks: Vec<Network>,
    /// Subnets.
    pub subnets: Vec<Subnet>,
    /// Ports, in creation order: a `local` network without hints lives where its first bound
    /// port (in this order) is.
    pub ports: Vec<Port>,
    /// Routers.
    pub routers: Vec<Router>,
    /// Router interfaces (one per attached subnet).
    pub router_interfaces: Vec<RouterInterface>,
    /// Floating IPs.
    pub floating_ips: Vec<FloatingIp>,
    /// Allocations the controller keeps (see [`crate::required_allocations`]).
    pub allocations: Allocations,
    /// Where an external network without availability-zone hints lives (Tricircle's
    /// `default_region_for_external_network`); `None`: nowhere until hinted.
    pub default_external_region: Option<String>,
    /// Lease time the DHCP servers hand out, in seconds (the controller's
    /// `--dhcp-lease-duration`).
    pub dhcp_lease_seconds: u32,
    /// Security groups by id (see [`crate::security`](crate)).
    pub security_groups: BTreeMap<String, SecurityGroup>,
    /// Port security of the ports that have it on, by port id; a port missing here has
    /// `port_security_enabled` false (everything passes).
    pub port_security: BTreeMap<String, PortSecurity>,
    /// Whether a project's bridge network is a VxLAN segment (`--bridge-network-type vxlan`)
    /// when it has none yet; an allocated one keeps its own type (see [`BridgeNetwork::vni`]).
    pub bridge_vxlan: bool,
    /// The underlay's MTU (Neutron's `global_physnet_mtu`): a router leg on a network whose
    /// MTU is below it gets that MTU set.
    pub global_physnet_mtu: u16,
    /// Whether a router instance or DHCP server that moved off a lost node moves back to its
    /// top candidate once that node is alive again (the controller's `--failback`); without
    /// it, an instance stays where it moved.
    pub failback: bool,
    /// The BFD sessions' transmit/receive interval in milliseconds (`--bfd-interval-ms`).
    pub liveness_interval_ms: u32,
    /// The BFD detect multiplier (`--bfd-multiplier`).
    pub liveness_multiplier: u8,
    /// The pool of IPv6 bridge prefixes (`--bridge-cidr-v6`); `None`: bridge networks are
    /// IPv4 only and IPv6 subnets are not routed across pods. A project's bridge /64 is derived
    /// from its IPv4 bridge /24 (the /24's index in the pool's low bits), and an instance's
    /// IPv6 bridge address from its IPv4 one (same host number): nothing more to allocate or
    /// keep consistent, e.g. `100.0.5.2` ↔ `fd64:0:0:5::2` with the default pools.
    pub bridge_cidr_v6: Option<ipnet::Ipv6Net>,
}

/// Default BFD interval: with the multiplier, detection in 1.5 s.
pub const DEFAULT_LIVENESS_INTERVAL_MS: u32 = 500;
/// The BFD detect multiplier (OVS's BFD has it fixed at 3).
pub const DEFAULT_LIVENESS_MULTIPLIER: u8 = 3;

/// Neutron's default `global_physnet_mtu`.
pub const DEFAULT_GLOBAL_PHYSNET_MTU: u16 = 1500;
/// What VxLAN over IPv4 adds to a frame (outer IP 20 + UDP 8 + VxLAN 8 + inner Ethernet 14):
/// a VxLAN network's MTU is `global_physnet_mtu` minus this, as Neutron computes it.
pub const VXLAN_OVERHEAD: u16 = 50;

/// Neutron's default `dhcp_lease_duration`: one day.
pub const DEFAULT_DHCP_LEASE_SECONDS: u32 = 86400;

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            bridge_physnet: "bridge".into(),
            local_physnet: "bridge".into(),
            pods: Vec::new(),
            nodes: Vec::new(),
            networks: Vec::new(),
            subnets: Vec::new(),
            ports: Vec::new(),
            routers: Vec::new(),
            router_interfaces: Vec::new(),
            floating_ips: Vec::new(),
            allocations: Allocations::default(),
            default_external_region: None,
            dhcp_lease_seconds: DEFAULT_DHCP_LEASE_SECONDS,
            security_groups: BTreeMap::new(),
            port_security: BTreeMap::new(),
            bridge_vxlan: false,
            global_physnet_mtu: DEFAULT_GLOBAL_PHYSNET_MTU,
            failback: false,
            liveness_interval_ms: DEFAULT_LIVENESS_INTERVAL_MS,
            liveness_multiplier: DEFAULT_LIVENESS_MULTIPLIER,
            bridge_cidr_v6: None,
        }
    }
}

/// A security group: its project and its rules (sorted by id, normalised).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityGroup {
    /// Owner project (a rule's remote group is always of the same project).
    pub project_id: String,
    /// Rules, sorted by id.
    pub rules: Vec<wire::SecurityGroupRule>,
}

/// What a port with port security is allowed and filtered by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSecurity {
    /// Security group ids, sorted.
    pub security_groups: Vec<String>,
    /// `allowed_address_pairs`: address or prefix, and MAC (`None`: the port's own).
    pub allowed_address_pairs: Vec<(IpNet, Option<String>)>,
}

/// A pod: one region, optionally in an availability zone. AZ hints may name either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pod {
    /// Region name (the pod's name).
    pub region_name: String,
    /// Availability zone name, if any.
    pub az_name: Option<String>,
}

/// A node as it registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Node name (= `binding:host_id` of ports plugged there).
    pub name: String,
    /// Region name of its pod.
    pub pod: String,
    /// physnet → OVS bridge.
    pub bridge_mappings: BTreeMap<String, String>,
    /// Physnets with an uplink on this node.
    pub uplinks: BTreeSet<String>,
    /// The node's tunnel endpoint (`local_ip`); a node without one carries no VxLAN segment.
    pub local_ip: Option<IpAddr>,
    /// Judged lost by the controller from its pod peers' liveness reports: it is no candidate
    /// for any router instance or DHCP server until judged alive again.
    pub lost: bool,
}

/// Neutron `provider:network_type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetworkType {
    /// Never leaves its pod; gets a pod-local VLAN tag.
    #[default]
    Local,
    /// A VLAN on a physnet: may stretch across pods.
    Vlan,
    /// Untagged on a physnet.
    Flat,
    /// A VxLAN segment (VNI in [`Network::vni`]): may stretch across pods over tunnels; on a
    /// node it sits on the `local` physnet's bridge with a pod-local tag.
    Vxlan,
}

/// A network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// Id.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Type.
    pub network_type: NetworkType,
    /// `provider:physical_network` (vlan and flat).
    pub physnet: Option<String>,
    /// `provider:segmentation_id` (vlan).
    pub segmentation_id: Option<u16>,
    /// `provider:segmentation_id` of a vxlan network: its VNI.
    pub vni: Option<u32>,
    /// `router:external`.
    pub external: bool,
    /// `availability_zone_hints`: region or AZ names.
    pub az_hints: Vec<String>,
    /// `shared`.
    pub shared: bool,
    /// The network's MTU (handed out by its DHCP servers), if known.
    pub mtu: Option<u16>,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// Id.
    pub id: String,
    /// Network id.
    pub network_id: String,
    /// CIDR.
    pub cidr: IpNet,
    /// Gateway IP.
    pub gateway_ip: Option<IpAddr>,
    /// 4 or 6.
    pub ip_version: u8,
    /// `enable_dhcp`: the network's DHCP servers serve this subnet.
    pub enable_dhcp: bool,
    /// `dns_nameservers`, in the subnet's order (DHCP option 6).
    pub dns_nameservers: Vec<IpAddr>,
    /// `host_routes`, in the subnet's order (DHCP option 121).
    pub host_routes: Vec<UserRoute>,
    /// `ipv6_ra_mode` (IPv6 only): what the router's legs on this subnet advertise; `None`:
    /// they send no router advertisements.
    pub ipv6_ra_mode: Option<wire::Ipv6AddressMode>,
    /// `ipv6_address_mode` (IPv6 only): how VMs get addresses; `dhcpv6-*` makes the network's
    /// DHCP servers serve the subnet over DHCPv6.
    pub ipv6_address_mode: Option<wire::Ipv6AddressMode>,
}

impl Default for Subnet {
    /// An IPv4 subnet without DHCP; tests fill in what they need.
    fn default() -> Self {
        Subnet {
            id: String::new(),
            network_id: String::new(),
            cidr: IpNet::V4(Default::default()),
            gateway_ip: None,
            ip_version: 4,
            enable_dhcp: false,
            dns_nameservers: Vec::new(),
            host_routes: Vec::new(),
            ipv6_ra_mode: None,
            ipv6_address_mode: None,
        }
    }
}

/// One fixed IP of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedIp {
    /// Subnet id.
    pub subnet_id: String,
    /// Address.
    pub ip_address: IpAddr,
}

/// A port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Port {
    /// Id (= iface-id).
    pub id: String,
    /// Network id.
    pub network_id: String,
    /// Owner project.
    pub project_id: String,
    /// MAC.
    pub mac: String,
    /// Fixed IPs.
    pub fixed_ips: Vec<FixedIp>,
    /// `device_owner`; ports owned by `network:*` are the planner's own legs, not VM ports.
    pub device_owner: String,
    /// `device_id`.
    pub device_id: String,
    /// `binding:host_id`: the node the port is bound to.
    pub binding_host: Option<String>,
    /// Host name handed out by DHCP (option 12), when the controller knows one.
    pub hostname: Option<String>,
}

impl Port {
    /// Whether this is a VM (or other compute) port the agents plug, not a router or FIP port.
    pub fn is_vm_port(&self) -> bool {
        !self.device_owner.starts_with("network:")
    }
}

/// `external_gateway_info` of a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalGateway {
    /// External network id.
    pub network_id: String,
    /// SNAT the router's subnets out of the gateway.
    pub enable_snat: bool,
    /// The gateway port's IPs on the external subnet.
    pub external_fixed_ips: Vec<FixedIp>,
}

/// A user route of a router (`routes` attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRoute {
    /// Destination.
    pub destination: IpNet,
    /// Next hop; installed on instances that have it on a connected leg.
    pub nexthop: IpAddr,
}

/// A router.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Router {
    /// Id.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// `availability_zone_hints`: exactly one region makes the router local.
    pub az_hints: Vec<String>,
    /// External gateway, when set.
    pub external_gateway: Option<ExternalGateway>,
    /// User routes.
    pub routes: Vec<UserRoute>,
}

/// A router interface: the router's port on a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterInterface {
    /// Router id.
    pub router_id: String,
    /// Subnet id.
    pub subnet_id: String,
    /// The interface port's id.
    pub port_id: String,
    /// The interface port's IP (normally the subnet gateway).
    pub ip_address: IpAddr,
    /// The interface port's MAC.
    pub mac: String,
}

/// A floating IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatingIp {
    /// Id.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// External network it comes from.
    pub floating_network_id: String,
    /// The floating address.
    pub floating_ip_address: IpAddr,
    /// Associated port.
    pub port_id: Option<String>,
    /// Fixed IP of the port it maps to (default: the port's first fixed IP).
    pub fixed_ip_address: Option<IpAddr>,
}

/// A project's bridge network: one VLAN on the bridge physnet (or one VxLAN VNI) and one /24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeNetwork {
    /// VLAN on [`Snapshot::bridge_physnet`] (unused when `vni` is set).
    pub vlan: u16,
    /// CIDR from `bridge_cidr`.
    pub cidr: IpNet,
    /// The VNI of a VxLAN bridge network: its legs then sit on the `local` physnet's bridge
    /// with a per-(project, pod) tag ([`Allocations::bridge_tags`]).
    pub vni: Option<u32>,
}

/// device_owner of a router's gateway port: the port that backs its gateway leg.
pub const OWNER_ROUTER_GATEWAY: &str = "network:router_gateway";

/// A port the controller created for an allocation (a bridge IP or a leg IP): its address and
/// its MAC, which the store keeps unique, so the leg it backs cannot share a MAC with another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedPort {
    /// The allocated address.
    pub ip: IpAddr,
    /// The port's MAC, used as the leg's MAC.
    pub mac: String,
}

/// device_owner of a network's DHCP port (one per network and pod).
pub const OWNER_DHCP: &str = "network:dhcp";

/// The `network:dhcp` port of one (network, pod): its id, MAC and one address per
/// DHCP-enabled subnet, reserved by the controller so the pods' servers never collide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpPort {
    /// The port's id (names the server's interfaces).
    pub port_id: String,
    /// The port's MAC: the server's interface MAC.
    pub mac: String,
    /// subnet → the port's address on it.
    pub ips: BTreeMap<String, IpAddr>,
}

/// Allocations kept by the controller (uniqueness enforced by its database). Nested maps so
/// lookups need no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocations {
    /// project → bridge network.
    pub bridge_networks: BTreeMap<String, BridgeNetwork>,
    /// router → pod → bridge IP port of that instance.
    pub bridge_ips: BTreeMap<String, BTreeMap<String, AllocatedPort>>,
    /// router → pod → subnet → leg IP port, for stretched networks in pods other than the first.
    pub leg_ips: BTreeMap<String, BTreeMap<String, BTreeMap<String, AllocatedPort>>>,
    /// network → pod → pod-local VLAN tag, for `local` and `vxlan` networks.
    pub local_tags: BTreeMap<String, BTreeMap<String, u16>>,
    /// project → pod → pod-local tag of the project's VxLAN bridge network.
    pub bridge_tags: BTreeMap<String, BTreeMap<String, u16>>,
    /// network → pod → its DHCP port.
    pub dhcp_ports: BTreeMap<String, BTreeMap<String, DhcpPort>>,
    /// router → pod → the node its instance there was placed on (sticky placement).
    pub router_nodes: BTreeMap<String, BTreeMap<String, String>>,
    /// network → pod → the node its DHCP server there was placed on (sticky placement).
    pub dhcp_nodes: BTreeMap<String, BTreeMap<String, String>>,
}

impl Allocations {
    /// Bridge IP of (router, pod).
    pub fn bridge_ip(&self, router: &str, pod: &str) -> Option<IpAddr> {
        self.bridge_port(router, pod).map(|p| p.ip)
    }
    /// Bridge IP port of (router, pod): address and MAC of the bridge leg.
    pub fn bridge_port(&self, router: &str, pod: &str) -> Option<&AllocatedPort> {
        self.bridge_ips.get(router)?.get(pod)
    }
    /// Leg IP of (router, pod, subnet).
    pub fn leg_ip(&self, router: &str, pod: &str, subnet: &str) -> Option<IpAddr> {
        self.leg_port(router, pod, subnet).map(|p| p.ip)
    }
    /// Leg IP port of (router, pod, subnet): address and MAC of a non-primary leg.
    pub fn leg_port(&self, router: &str, pod: &str, subnet: &str) -> Option<&AllocatedPort> {
        self.leg_ips.get(router)?.get(pod)?.get(subnet)
    }
    /// Local tag of (network, pod).
    pub fn local_tag(&self, network: &str, pod: &str) -> Option<u16> {
        self.local_tags.get(network)?.get(pod).copied()
    }
    /// Record a bridge IP port.
    pub fn set_bridge_ip(&mut self, router: &str, pod: &str, ip: IpAddr, mac: &str) {
        self.bridge_ips
            .entry(router.to_string())
            .or_default()
            .insert(
                pod.to_string(),
                AllocatedPort {
                    ip,
                    mac: mac.to_string(),
                },
            );
    }
    /// Record a leg IP port.
    pub fn set_leg_ip(&mut self, router: &str, pod: &str, subnet: &str, ip: IpAddr, mac: &str) {
        self.leg_ips
            .entry(router.to_string())
            .or_default()
            .entry(pod.to_string())
            .or_default()
            .insert(
                subnet.to_string(),
                AllocatedPort {
                    ip,
                    mac: mac.to_string(),
                },
            );
    }
    /// The DHCP port of (network, pod).
    pub fn dhcp_port(&self, network: &str, pod: &str) -> Option<&DhcpPort> {
        self.dhcp_ports.get(network)?.get(pod)
    }
    /// The DHCP port's address of (network, pod) on `subnet`.
    pub fn dhcp_ip(&self, network: &str, pod: &str, subnet: &str) -> Option<IpAddr> {
        self.dhcp_port(network, pod)?.ips.get(subnet).copied()
    }
    /// Record the DHCP port of (network, pod) with its addresses (an empty set removes it).
    pub fn set_dhcp_port(&mut self, network: &str, pod: &str, port: Option<DhcpPort>) {
        match port.filter(|p| !p.ips.is_empty()) {
            Some(p) => {
                self.dhcp_ports
                    .entry(network.to_string())
                    .or_default()
                    .insert(pod.to_string(), p);
            }
            None => {
                if let Some(m) = self.dhcp_ports.get_mut(network) {
                    m.remove(pod);
                    if m.is_empty() {
                        self.dhcp_ports.remove(network);
                    }
                }
            }
        }
    }
    /// Pod-local tag of a project's VxLAN bridge network in a pod.
    pub fn bridge_tag(&self, project: &str, pod: &str) -> Option<u16> {
        self.bridge_tags.get(project)?.get(pod).copied()
    }
    /// Record a bridge tag.
    pub fn set_bridge_tag(&mut self, project: &str, pod: &str, tag: u16) {
        self.bridge_tags
            .entry(project.to_string())
            .or_default()
            .insert(pod.to_string(), tag);
    }
    /// The node held for router `router`'s instance in `pod`.
    pub fn router_node(&self, router: &str, pod: &str) -> Option<&str> {
        self.router_nodes.get(router)?.get(pod).map(String::as_str)
    }
    /// The node held for network `network`'s DHCP server in `pod`.
    pub fn dhcp_node(&self, network: &str, pod: &str) -> Option<&str> {
        self.dhcp_nodes.get(network)?.get(pod).map(String::as_str)
    }
    /// Record (`Some`) or forget (`None`) the node held for a router instance.
    pub fn set_router_node(&mut self, router: &str, pod: &str, node: Option<&str>) {
        set_nested(&mut self.router_nodes, router, pod, node);
    }
    /// Record (`Some`) or forget (`None`) the node held for a DHCP server.
    pub fn set_dhcp_node(&mut self, network: &str, pod: &str, node: Option<&str>) {
        set_nested(&mut self.dhcp_nodes, network, pod, node);
    }
    /// Record a local tag.
    pub fn set_local_tag(&mut self, network: &str, pod: &str, tag: u16) {
        self.local_tags
            .entry(network.to_string())
            .or_default()
            .insert(pod.to_string(), tag);
    }
}

fn set_nested(
    m: &mut BTreeMap<String, BTreeMap<String, String>>,
    id: &str,
    pod: &str,
    node: Option<&str>,
) {
    match node {
        Some(n) => {
            m.entry(id.to_string())
                .or_default()
                .insert(pod.to_string(), n.to_string());
        }
        None => {
            if let Some(p) = m.get_mut(id) {
                p.remove(pod);
                if p.is_empty() {
                    m.remove(id);
                }
            }
        }
    }
}

impl From<&wire::NodeRegistration> for Node {
    /// A registered node as the planner sees it.
    fn from(r: &wire::NodeRegistration) -> Self {
        Node {
            name: r.node.clone(),
            pod: r.pod.clone(),
            bridge_mappings: r.bridge_mappings.clone(),
            uplinks: r.uplinks.clone(),
            local_ip: r.local_ip,
            lost: false,
        }
    }
}
