//! The reconcile pass, shaped like kube-runtime's: observe → diff against the intent → act →
//! report, level-triggered. The OVS and Linux sides sit behind small traits so the pass is the
//! same for every node; the real implementations are in [`crate::ovsdb_backend`] and
//! [`crate::linux_backend`].

use std::collections::BTreeMap;
use std::future::Future;

use crate::intent::NodeIntent;
use crate::ovs_plan::{self, ObservedOvs, OvsChange};

/// Access to this node's OVSDB.
pub trait OvsBackend: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;
    /// The Bridge/Port/Interface rows the diff needs.
    fn observe(&self) -> impl Future<Output = Result<ObservedOvs, Self::Error>> + Send;
    /// Applies all changes in one transaction.
    fn apply(&self, changes: &[OvsChange]) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Resolves when OVSDB changed (a VM plugged, a server restart) since the last call.
    fn changed(&self) -> impl Future<Output = ()> + Send;
}

/// Access to this node's Linux networking (router namespaces, veths, addresses, routes, NAT).
pub trait LinuxBackend: Send + Sync {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Makes the router instances exactly `intent.routers` (namespace name → intent) and the
    /// DHCP servers exactly `intent.dhcp`, and removes the owned ones no longer wanted; returns, per namespace, the error that kept it from
    /// being ready. Everything else is still applied.
    fn sync_routers(
        &self,
        intent: &NodeIntent,
    ) -> impl Future<Output = Result<RouterSync, Self::Error>> + Send;
    /// Probes every router instance's targets (ARP then ICMP echo) from inside its namespace.
    fn probe(&self, intent: &NodeIntent) -> impl Future<Output = Vec<wire::ProbeResult>> + Send;
    /// Sends gratuitous ARP (and unsolicited neighbour advertisements for IPv6 addresses) for
    /// legs that came up (in the background: the call returns at once).
    fn announce(&self, _legs: Vec<Announce>) {}
    /// The node interface holding `ip` (the tunnel endpoint), for the fencing rule's links.
    fn ifname_of(&self, _ip: std::net::IpAddr) -> Option<String> {
        None
    }
}

/// A router leg that came up in a pass (created, or unfenced): its addresses are announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// Router namespace.
    pub netns: String,
    /// The leg inside it.
    pub ifname: String,
    /// The leg's node-side end (its OVS port must be in place before announcing).
    pub node_ifname: String,
    /// IPv4 addresses of the leg (on the gateway leg: the gateway address and floating IPs).
    pub addrs: Vec<std::net::Ipv4Addr>,
    /// IPv6 addresses of the leg (a dual-stack leg's): unsolicited neighbour advertisements.
    pub addrs6: Vec<std::net::Ipv6Addr>,
}

/// What the Linux side did in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterSync {
    /// Router namespace → error, or None when ready.
    pub routers: BTreeMap<String, Option<String>>,
    /// DHCP namespace → error, or None when serving.
    pub dhcp: BTreeMap<String, Option<String>>,
    /// Kernel objects created, changed or removed (0 when everything already matched).
    pub changes: usize,
    /// Router legs that came up in this pass (to announce once the OVS side is in place).
    pub came_up: Vec<Announce>,
}

/// What one reconcile pass did, for the status report and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// OVSDB changes made (0 when nothing changed).
    pub ovs_changes: usize,
    /// Kernel changes made (namespaces, links, addresses, routes, sysctls, NAT tables).
    pub linux_changes: usize,
    /// iface-id → OVS port name of every VM interface seen on this node.
    pub plugged: BTreeMap<String, String>,
    /// Router namespace → error, or None when ready.
    pub routers: BTreeMap<String, Option<String>>,
    /// DHCP namespace → error, or None when serving.
    pub dhcp: BTreeMap<String, Option<String>>,
    /// Set when the OVS side could not be applied.
    pub ovs_error: Option<String>,
    /// Owned ports and uplinks whose device ovs-vswitchd could not open.
    pub port_errors: BTreeMap<String, String>,
    /// Firewall flows written (added or replaced) and deleted; 0 when nothing changed.
    pub flows_added: usize,
    /// Firewall flows deleted (only ever crosspod's).
    pub flows_deleted: usize,
    /// Firewall flows the bridges must hold.
    pub flows_desired: usize,
    /// Bridges whose firewall flows could not be read or written.
    pub flow_errors: Vec<String>,
    /// Where the pass's time went (for the phase metrics).
    pub phases: PassPhases,
    /// Router legs that came up in this pass.
    pub came_up: Vec<Announce>,
}

/// Wall time of the phases of one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassPhases {
    /// The Linux half (namespaces, veths, addresses, routes, NAT, DHCP).
    pub linux: std::time::Duration,
    /// Reading the OVSDB replica and computing the diff.
    pub ovs_diff: std::time::Duration,
    /// The OVSDB transaction, until the replica shows it (zero when nothing was written).
    pub ovs_write: std::time::Duration,
}

impl PassOutcome {
    /// Whether everything in the intent is in place.
    pub fn complete(&self) -> bool {
        self.ovs_error.is_none()
            && self.flow_errors.is_empty()
            && self.routers.values().all(Option::is_none)
            && self.dhcp.values().all(Option::is_none)
    }
}

/// The firewall step after the OVS side: the flows of security groups and port security, from
/// `state` and the port numbers in the OVSDB replica (see [`crate::firewall`]).
pub async fn reconcile_firewall<O: OvsBackend>(
    state: &wire::NodeDesiredState,
    ovs: &O,
    firewall: &crate::firewall::Firewall,
    out: &mut PassOutcome,
) {
    let observed = match ovs.observe().await {
        Ok(o) => o,
        Err(e) => {
            out.flow_errors.push(format!("firewall: {e}"));
            return;
        }
    };
    let (state, fw) = (state.clone(), firewall.clone());
    match tokio::task::spawn_blocking(move || fw.reconcile(&state, &observed)).await {
        Ok(r) => {
            out.flows_added = r.added;
            out.flows_deleted = r.deleted;
            out.flows_desired = r.desired;
            out.flow_errors = r.errors;
        }
        Err(e) => out.flow_errors.push(format!("firewall task: {e}")),
    }
}

/// One level-triggered pass. Router namespaces and their veths come first, since the OVS ports
/// of router legs name devices that must exist; a failure on one side is reported and the other
/// side is still applied.
pub async fn reconcile_once<O: OvsBackend, L: LinuxBackend>(
    intent: &NodeIntent,
    ovs: &O,
    linux: &L,
) -> PassOutcome {
    let mut out = PassOutcome::default();
    let t = std::time::Instant::now();
    let linux_result = linux.sync_routers(intent).await;
    out.phases.linux = t.elapsed();
    match linux_result {
        Ok(r) => {
            out.routers = r.routers;
            out.dhcp = r.dhcp;
            out.linux_changes = r.changes;
            out.came_up = r.came_up;
        }
        Err(e) => {
            for ns in intent.routers.keys() {
                out.routers.insert(ns.clone(), Some(e.to_string()));
            }
            for ns in intent.dhcp.keys() {
                out.dhcp.insert(ns.clone(), Some(e.to_string()));
            }
        }
    }
    let t = std::time::Instant::now();
    let desired = intent.ovs();
    match ovs.observe().await {
        Ok(observed) => {
            let changes = ovs_plan::diff(&desired, &observed);
            out.plugged = ovs_plan::plugged_iface_ids(&observed);
            out.port_errors = ovs_plan::port_errors(&desired, &observed);
            out.phases.ovs_diff = t.elapsed();
            let t = std::time::Instant::now();
            if !changes.is_empty() {
                tracing::info!(
                    revision = intent.revision,
                    changes = changes.len(),
                    "applying OVS changes"
                );
                match ovs.apply(&changes).await {
                    Ok(()) => out.ovs_changes = changes.len(),
                    Err(e) => out.ovs_error = Some(e.to_string()),
                }
                out.phases.ovs_write = t.elapsed();
            }
        }
        Err(e) => out.ovs_error = Some(e.to_string()),
    }
    out
}
