//! Stored records and creation requests, independent of the API's JSON.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ipam::Pool;

/// A pod (Tricircle): a region/AZ with its own nodes. The central pod has an empty `az_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// UUID.
    pub pod_id: String,
    /// Region name, unique.
    pub region_name: String,
    /// Availability zone ("" for the central pod).
    pub az_name: String,
    /// AZ name inside the pod.
    pub pod_az_name: String,
    /// Data centre name.
    pub dc_name: String,
}

/// How a network is carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// In one pod only, no segment.
    Local,
    /// VLAN `id` on `physnet`.
    Vlan {
        /// Physical network.
        physnet: String,
        /// VLAN ID.
        id: u16,
    },
    /// Untagged on `physnet`.
    Flat {
        /// Physical network.
        physnet: String,
    },
    /// A VxLAN segment: VNI `vni` (no physical network).
    Vxlan {
        /// The VNI.
        vni: u32,
    },
}

/// What segment a new network asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentRequest {
    /// `local`.
    Local,
    /// `vlan`, physnet and id optional (allocated from `network_vlan_ranges`).
    Vlan {
        /// Requested physnet.
        physnet: Option<String>,
        /// Requested VLAN.
        id: Option<u16>,
    },
    /// `flat` on a physnet (one flat network per physnet).
    Flat {
        /// Physnet.
        physnet: String,
    },
    /// `vxlan`, the VNI optional (allocated from `vni_ranges`).
    Vxlan {
        /// Requested VNI.
        id: Option<u32>,
    },
}

/// A network.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Admin state.
    pub admin_state_up: bool,
    /// Status (`ACTIVE`).
    pub status: String,
    /// Visible to every project.
    pub shared: bool,
    /// `router:external`.
    pub external: bool,
    /// MTU.
    pub mtu: i64,
    /// Default port security of its ports.
    pub port_security_enabled: bool,
    /// The segment.
    pub segment: Segment,
    /// `availability_zone_hints` (pod region or AZ names).
    pub az_hints: Vec<String>,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Revision, bumped on every change.
    pub revision_number: i64,
    /// Subnet ids (filled on read).
    pub subnets: Vec<String>,
    /// The address scope of its IPv4 subnets' pool, if any (filled on read).
    pub ipv4_address_scope: Option<String>,
    /// The address scope of its IPv6 subnets' pool, if any (filled on read).
    pub ipv6_address_scope: Option<String>,
}

/// Input of [`crate::store::Store::create_network`].
#[derive(Debug, Clone)]
pub struct NewNetwork {
    /// UUID chosen by the caller.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Admin state.
    pub admin_state_up: bool,
    /// Shared.
    pub shared: bool,
    /// `router:external`.
    pub external: bool,
    /// MTU.
    pub mtu: i64,
    /// Port security default.
    pub port_security_enabled: bool,
    /// Segment wanted.
    pub segment: SegmentRequest,
    /// AZ hints (already checked against pods).
    pub az_hints: Vec<String>,
}

/// A static route of a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    /// Destination CIDR.
    pub destination: String,
    /// Next hop.
    pub nexthop: String,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq)]
pub struct Subnet {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Network.
    pub network_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// 4 or 6.
    pub ip_version: i64,
    /// CIDR.
    pub cidr: IpNet,
    /// Gateway, if any.
    pub gateway_ip: Option<IpAddr>,
    /// Allocation pools.
    pub allocation_pools: Vec<Pool>,
    /// DHCP flag (recorded; crosspod serves no DHCP).
    pub enable_dhcp: bool,
    /// DNS servers.
    pub dns_nameservers: Vec<String>,
    /// Host routes.
    pub host_routes: Vec<HostRoute>,
    /// The subnet pool its CIDR was allocated from, if any.
    pub subnetpool_id: Option<String>,
    /// Neutron's `ipv6_ra_mode` (IPv6 only, immutable): what the router's legs advertise.
    pub ipv6_ra_mode: Option<wire::Ipv6AddressMode>,
    /// Neutron's `ipv6_address_mode` (IPv6 only, immutable): `slaac` and `dhcpv6-stateless`
    /// give every port its EUI-64 address here instead of one from the pools.
    pub ipv6_address_mode: Option<wire::Ipv6AddressMode>,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Revision.
    pub revision_number: i64,
}

/// How a subnet without a CIDR of its own gets one from its pool
/// ([`crate::store::Store::allocate_subnet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixRequest {
    /// The prefix length wanted.
    pub prefixlen: u8,
    /// Whether the subnet gets a gateway (its first host address); `gateway_ip: null` asks
    /// for none.
    pub gateway: bool,
}

/// An address scope: pools in one scope never overlap, so their addresses may be routed
/// between networks without NAT (Neutron's `address-scope` extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressScope {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// 4 or 6.
    pub ip_version: i64,
    /// Usable by every project (only an admin shares one; it cannot be unshared).
    pub shared: bool,
    /// Revision (not shown: address scopes have no standard attributes in Neutron; it
    /// conditions updates).
    pub revision_number: i64,
}

/// A subnet pool: prefixes subnets are allocated from (Neutron's `subnet_allocation`).
#[derive(Debug, Clone, PartialEq)]
pub struct SubnetPool {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// 4 or 6 (that of its prefixes).
    pub ip_version: i64,
    /// The prefixes, compact ([`crate::ipam::compact`]).
    pub prefixes: Vec<IpNet>,
    /// Prefix length of a subnet that asks for none.
    pub default_prefixlen: u8,
    /// Shortest prefix a subnet may have.
    pub min_prefixlen: u8,
    /// Longest prefix a subnet may have.
    pub max_prefixlen: u8,
    /// Addresses (IPv4) or /64s (IPv6) each project may take from the pool; `None` (or 0,
    /// as in Neutron) is no limit.
    pub default_quota: Option<i64>,
    /// The pool `use_default_subnetpool` picks (one per IP version).
    pub is_default: bool,
    /// Usable by every project (set by an admin at creation only).
    pub shared: bool,
    /// Its address scope.
    pub address_scope_id: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Revision.
    pub revision_number: i64,
}

/// A fixed IP of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedIp {
    /// Subnet.
    pub subnet_id: String,
    /// Address.
    pub ip_address: IpAddr,
}

/// A requested fixed IP (`{"subnet_id"?, "ip_address"?}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedIpRequest {
    /// Subnet wanted.
    pub subnet_id: Option<String>,
    /// Address wanted.
    pub ip_address: Option<IpAddr>,
}

impl From<&FixedIp> for FixedIpRequest {
    /// The same address again (what an update keeping it asks for).
    fn from(f: &FixedIp) -> Self {
        FixedIpRequest {
            subnet_id: Some(f.subnet_id.clone()),
            ip_address: Some(f.ip_address),
        }
    }
}

/// A port.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Network.
    pub network_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Admin state.
    pub admin_state_up: bool,
    /// `DOWN` until an agent binds it.
    pub status: String,
    /// MAC.
    pub mac_address: String,
    /// Device (VM or router) id.
    pub device_id: String,
    /// Device owner (`compute:nova`, `network:router_interface`, ...).
    pub device_owner: String,
    /// `binding:host_id`.
    pub host_id: String,
    /// Port security.
    pub port_security_enabled: bool,
    /// Fixed IPs.
    pub fixed_ips: Vec<FixedIp>,
    /// Security group ids, sorted (empty without port security).
    pub security_groups: Vec<String>,
    /// Allowed address pairs (empty without port security).
    pub allowed_address_pairs: Vec<AddressPair>,
    /// The router this port is an interface of: only `add_router_interface` makes one (the
    /// `router_ports` relation), never a port's own `device_owner`/`device_id`.
    pub interface_of: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last update time.
    pub updated_at: String,
    /// Revision.
    pub revision_number: i64,
}

impl Port {
    /// Whether this port is an interface of `router` (by the store's relation).
    pub fn is_interface_of(&self, router: &str) -> bool {
        self.interface_of.as_deref() == Some(router)
    }
}

/// Input of [`crate::store::Store::create_port`].
#[derive(Debug, Clone)]
pub struct NewPort {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Network.
    pub network_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Admin state.
    pub admin_state_up: bool,
    /// Requested MAC (else allocated).
    pub mac_address: Option<String>,
    /// Device id.
    pub device_id: String,
    /// Device owner.
    pub device_owner: String,
    /// `binding:host_id`.
    pub host_id: String,
    /// Port security (else the network's).
    pub port_security_enabled: Option<bool>,
    /// Requested fixed IPs (None = one address from the first subnet with room).
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
}

/// Which rows a list returns (visibility is decided by the store's queries).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Restrict to this project (plus shared/external networks for networks and subnets).
    pub project_id: Option<String>,
}

/// One of a port's `allowed_address_pairs`: another address (or prefix) it may send from,
/// with its own MAC or, when `mac_address` is absent, the port's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AddressPair {
    /// Address or CIDR, as normalised by the API.
    pub ip_address: String,
    /// MAC; `None` means the port's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}
