//! Validation errors: changes the controller must refuse (400/409) before storing them.

use thiserror::Error;

/// A rule of cross-pod networking the snapshot breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// A floating IP associated with a port of another project.
    #[error("floating IP {floatingip_id} (project {fip_project}) cannot be associated with port {port_id} of project {port_project}")]
    FloatingIpForeignPort {
        /// Floating IP id.
        floatingip_id: String,
        /// Port id.
        port_id: String,
        /// Floating IP's project.
        fip_project: String,
        /// Port's project.
        port_project: String,
    },
    /// No router of the owner project links the port's subnet to the floating IP's network.
    #[error("floating IP {floatingip_id}: external network {network_id} is not reachable from port {port_id} (no router of the project with a gateway on it and an interface on the port's subnet)")]
    FloatingIpUnreachable {
        /// Floating IP id.
        floatingip_id: String,
        /// Port id.
        port_id: String,
        /// External network id.
        network_id: String,
    },
    /// A floating IP names a port that does not exist or has no usable fixed IP.
    #[error(
        "floating IP {floatingip_id}: port {port_id} does not exist or has no matching fixed IP"
    )]
    FloatingIpBadPort {
        /// Floating IP id.
        floatingip_id: String,
        /// Port id.
        port_id: String,
    },
    /// A local router attached to a network that cannot be present in the router's pod.
    #[error("router {router_id} is local to pod {router_pod} but network {network_id} cannot be present there (it lives in {network_pods})")]
    RouterNetworkApart {
        /// Router id.
        router_id: String,
        /// The router's pod.
        router_pod: String,
        /// Network id.
        network_id: String,
        /// Where the network may live, comma-separated.
        network_pods: String,
    },
    /// A local router whose gateway network lives in another pod.
    #[error("router {router_id} is local to pod {router_pod} but its external network {network_id} lives in pod {network_pod}")]
    GatewayApart {
        /// Router id.
        router_id: String,
        /// The router's pod.
        router_pod: String,
        /// External network id.
        network_id: String,
        /// The external network's pod.
        network_pod: String,
    },
    /// A router gateway on a network that is not external, or an external network without a pod.
    #[error("router {router_id}: gateway network {network_id} is not an external network placed in exactly one pod")]
    BadGatewayNetwork {
        /// Router id.
        router_id: String,
        /// Network id.
        network_id: String,
    },
    /// An external network whose AZ hints do not name exactly one pod.
    #[error("external network {network_id} must name exactly one pod in availability_zone_hints")]
    ExternalNetworkUnplaced {
        /// Network id.
        network_id: String,
    },
    /// AZ hints naming no known pod.
    #[error("{kind} {id}: availability zone hint {hint} names no pod")]
    UnknownHint {
        /// `network` or `router`.
        kind: &'static str,
        /// Resource id.
        id: String,
        /// The hint.
        hint: String,
    },
    /// A port bound in a pod its network cannot reach.
    #[error("port {port_id} bound on {host} in pod {pod}, but network {network_id} cannot be present there")]
    PortOutsideNetwork {
        /// Port id.
        port_id: String,
        /// Host.
        host: String,
        /// The host's pod.
        pod: String,
        /// Network id.
        network_id: String,
    },
}
