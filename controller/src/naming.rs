//! Names crosspod gives what it creates: device owners of the ports it makes, the owner of
//! bridge networks, and ids derived from what they belong to (so every controller names the
//! same allocation the same way and a primary key makes a concurrent duplicate impossible).

/// Project that owns the bridge networks (hidden from members, visible to admins).
pub const BRIDGE_OWNER: &str = "crosspod-bridge";
/// device_owner of router interface ports.
pub const OWNER_INTERFACE: &str = "network:router_interface";
/// device_owner of router gateway ports.
pub const OWNER_GATEWAY: &str = "network:router_gateway";
/// device_owner of floating IP ports.
pub const OWNER_FLOATINGIP: &str = "network:floatingip";
/// device_owner of bridge IP ports (one per router instance).
pub const OWNER_BRIDGE_IP: &str = "network:router_bridge";
/// device_owner of per-pod leg IP ports on stretched networks.
pub const OWNER_LEG: &str = "network:router_leg";
/// The physnet of bridge networks and of local networks' tags.
pub const BRIDGE_PHYSNET: &str = "bridge";

/// A UUID derived from `parts`, so every controller names the same allocation the same way and
/// the primary key makes a concurrent duplicate impossible.
pub fn derived_id(parts: &[&str]) -> String {
    let a = wire::names::stable_hash(parts);
    let mut salted: Vec<&str> = parts.to_vec();
    salted.push("crosspod-salt");
    let b = wire::names::stable_hash(&salted);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The bridge network of a project, by its derived id.
pub fn bridge_network_id(project: &str) -> String {
    derived_id(&["bridge-network", project])
}

/// The bridge subnet of a project, by its derived id.
pub fn bridge_subnet_id(project: &str) -> String {
    derived_id(&["bridge-subnet", project])
}

/// The port holding a router instance's bridge IP in a pod.
pub fn bridge_ip_port_id(router: &str, pod: &str) -> String {
    derived_id(&["bridge-ip", router, pod])
}

/// The port holding a router instance's gateway IP on a stretched subnet in a pod.
pub fn leg_port_id(router: &str, pod: &str, subnet: &str) -> String {
    derived_id(&["leg-ip", router, pod, subnet])
}

/// device_owner of a network's DHCP port (one per network and pod), as Neutron's DHCP agent
/// names it.
pub const OWNER_DHCP: &str = "network:dhcp";

/// The DHCP port of a network in a pod, by its derived id.
pub fn dhcp_port_id(network: &str, pod: &str) -> String {
    derived_id(&["dhcp-port", network, pod])
}

/// The device id of a network's DHCP port in a pod: `dhcp-<pod>-<network id>` (Neutron's DHCP
/// agent uses `dhcp<host uuid>-<network id>`; a crosspod server belongs to a pod, not a host).
pub fn dhcp_device_id(network: &str, pod: &str) -> String {
    format!("dhcp-{pod}-{network}")
}

/// The pod a DHCP port's device id names (see [`dhcp_device_id`]).
pub fn dhcp_device_pod<'a>(device_id: &'a str, network: &str) -> Option<&'a str> {
    device_id
        .strip_prefix("dhcp-")?
        .strip_suffix(network)?
        .strip_suffix('-')
        .filter(|p| !p.is_empty())
}
