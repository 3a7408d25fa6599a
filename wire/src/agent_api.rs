//! Messages between an agent and the controller.
//!
//! - `POST` registration: [`NodeRegistration`].
//! - watch (long-poll, resumable by revision): [`WatchResponse`].
//! - `POST` status: [`StatusReport`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::state::NodeDesiredState;

/// An agent announcing its node: where it is and which physnets it can reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    /// Pod (region name) of the node.
    pub pod: String,
    /// Node name (unique in the deployment).
    pub node: String,
    /// physnet → OVS bridge, as `bridge_mappings` (`bridge:br-vlan,extern:br-ext`).
    #[serde(default)]
    pub bridge_mappings: BTreeMap<String, String>,
    /// Physnets whose bridge has an uplink on this node.
    #[serde(default)]
    pub uplinks: BTreeSet<String>,
    /// The node's tunnel endpoint for VxLAN (Neutron's `local_ip`); `None`: the node carries
    /// no VxLAN segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ip: Option<IpAddr>,
}

/// The answer to a watch: the node's current revision and state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    /// Revision of `state` (same as `state.revision`).
    pub revision: u64,
    /// The node's desired state.
    pub state: NodeDesiredState,
}

/// Status of a VM port as the agent sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PortState {
    /// Plugged and tagged.
    Active,
    /// Not plugged (or parked).
    Down,
}

/// One port's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// Port id (iface-id).
    pub port_id: String,
    /// ACTIVE or DOWN.
    pub status: PortState,
    /// `binding:host_id`: the node the port is plugged on.
    pub host: String,
}

/// Whether a router instance is in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouterState {
    /// Namespace, legs, routes and NAT match the desired state.
    Ready,
    /// Applying failed; see `error`.
    Failed,
}

/// One router instance's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterStatus {
    /// Router id.
    pub router_id: String,
    /// Ready or failed.
    pub state: RouterState,
    /// What failed, when `state` is failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One probe result from a router instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Router instance that probed.
    pub router_id: String,
    /// Probed address.
    pub target: IpAddr,
    /// Whether ARP and ICMP got answers.
    pub reachable: bool,
    /// Round-trip time in microseconds when reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
}

/// What an agent reports after applying a revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Reporting node.
    pub node: String,
    /// The revision now applied on the node.
    pub revision_applied: u64,
    /// Port statuses, sorted by port id.
    #[serde(default)]
    pub ports: Vec<PortStatus>,
    /// Router instance statuses, sorted by router id.
    #[serde(default)]
    pub routers: Vec<RouterStatus>,
    /// Probe results.
    #[serde(default)]
    pub probes: Vec<ProbeResult>,
    /// Node-level problems that kept part of the desired state from being applied (a missing
    /// uplink device, OVSDB unreachable); empty when everything is in place.
    #[serde(default)]
    pub errors: Vec<String>,
    /// The pod's other nodes as this node's BFD sessions see them, sorted by node (the peers of
    /// the state's `liveness`). Sent again whenever one changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerLiveness>,
    /// Whether this node has withdrawn its router instances because it is cut off (see
    /// [`crate::Liveness`]): their legs stay down until a peer answers again.
    #[serde(default)]
    pub fenced: bool,
}

/// One peer's BFD session state as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerLiveness {
    /// Peer node name.
    pub node: String,
    /// Whether the session is up.
    pub up: bool,
}
