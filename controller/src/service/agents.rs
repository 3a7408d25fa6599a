//! The agent API's rules: an agent speaks only for its own node (its credential names it:
//! a TLS client certificate's subject, or a node-bound token). A node's pod and bridge
//! mappings change only by an admin (decommission, then register again); a report may not
//! claim a revision beyond the one published; bindings learned from a report only move an
//! unbound port to the reporting node.

use crate::auth::Identity;
use crate::core::Core;
use crate::error::{DomainError, ErrorClass};
use crate::service::policy::{self, Target};
use crate::store::l3::AgentRow;

/// `Ok` when `who` may act for `node`: an admin, or an agent credential naming exactly it.
pub fn authorize_node(who: &Identity, node: &str) -> Result<(), DomainError> {
    policy::enforce(who, "agent", &Target::default())?;
    if who.is_admin() || who.node.as_deref() == Some(node) {
        return Ok(());
    }
    tracing::warn!(project = %who.project_id, credential_node = ?who.node, node, "an agent credential tried to act for another node");
    Err(DomainError::new(
        ErrorClass::Forbidden,
        "PolicyNotAuthorized",
        match &who.node {
            Some(own) => format!("this credential speaks for node {own}, not {node}"),
            None => "this agent credential is bound to no node: issue a node certificate or a node-bound token".into(),
        },
    ))
}

/// The registered node `node`, after [`authorize_node`].
pub async fn load_node(core: &Core, who: &Identity, node: &str) -> Result<AgentRow, DomainError> {
    authorize_node(who, node)?;
    core.store
        .get_agent(node)
        .await?
        .ok_or_else(|| DomainError::not_found("Node", "AgentNotFound", node))
}

/// Register (or re-register, as every agent does at start) a node.
pub async fn register(
    core: &Core,
    who: &Identity,
    reg: &wire::NodeRegistration,
) -> Result<(), DomainError> {
    if reg.node.trim().is_empty() || reg.pod.trim().is_empty() {
        return Err(DomainError::bad_request(
            "registration needs a node and a pod",
        ));
    }
    authorize_node(who, &reg.node)?;
    if !core
        .store
        .list_pods()
        .await?
        .iter()
        .any(|p| p.region_name == reg.pod)
    {
        return Err(DomainError::not_found("Pod", "PodNotFound", &reg.pod));
    }
    if let Some(existing) = core.store.get_agent(&reg.node).await? {
        let moved = existing.registration.pod != reg.pod
            || existing.registration.bridge_mappings != reg.bridge_mappings;
        if moved && !who.is_admin() {
            return Err(DomainError::conflict(
                "AgentExists",
                format!(
                    "node {} is registered in pod {} with bridge mappings {:?}; only an admin changes those: DELETE /v1.0/agents/{} then register again",
                    reg.node, existing.registration.pod, existing.registration.bridge_mappings, reg.node
                ),
            ));
        }
    }
    core.store.register_agent(reg, &who.project_id).await?;
    tracing::info!(node = %reg.node, pod = %reg.pod, "node registered");
    Ok(())
}

/// Decommission a node (admin): its registration and published state go; ports bound to it
/// stay bound, as Neutron's do when an agent is deleted.
pub async fn delete(core: &Core, who: &Identity, node: &str) -> Result<(), DomainError> {
    policy::enforce(who, "delete_agent", &Target::default())?;
    if !core.store.delete_agent(node).await? {
        return Err(DomainError::not_found("Node", "AgentNotFound", node));
    }
    tracing::info!(node, "node decommissioned");
    Ok(())
}

/// Record a node's report; returns whether a port's binding was learned (a re-plan is due).
pub async fn report(
    core: &Core,
    who: &Identity,
    node: &str,
    report: &wire::StatusReport,
) -> Result<bool, DomainError> {
    load_node(core, who, node).await?;
    if report.node != node {
        return Err(DomainError::bad_request(format!(
            "status report names node {} but was sent for {node}",
            report.node
        )));
    }
    let published = core
        .store
        .node_state(node)
        .await?
        .map(|(r, _)| r as u64)
        .unwrap_or(0);
    if report.revision_applied > published {
        return Err(DomainError::bad_request(format!(
            "status report of node {node} claims revision {} but revision {published} is the latest published",
            report.revision_applied
        )));
    }
    if let Some(p) = report.ports.iter().find(|p| p.host != node) {
        return Err(DomainError::bad_request(format!(
            "status report of node {node} names port {} on host {}: a node reports only its own ports",
            p.port_id, p.host
        )));
    }
    core.store.record_report(report).await?;
    let mut rebind = false;
    for p in &report.ports {
        let r = match p.status {
            // Bound here, or unbound (then learned here); never a port bound elsewhere.
            wire::PortState::Active => {
                core.store
                    .set_port_status(&p.port_id, "ACTIVE", Some(node))
                    .await
            }
            wire::PortState::Down => match core.store.get_port(&p.port_id).await {
                // Seen here but not placed anywhere: learn the binding.
                Ok(port) if port.host_id.is_empty() => {
                    rebind = true;
                    core.store
                        .set_port_status(&p.port_id, "DOWN", Some(node))
                        .await
                }
                // ERROR (no pod-local VLAN) is the realizer's to lift.
                Ok(port) if port.host_id == node && port.status != "ERROR" => {
                    core.store.set_port_status(&p.port_id, "DOWN", None).await
                }
                _ => Ok(false),
            },
        };
        if let Err(e) = r {
            tracing::debug!(port = %p.port_id, error = %e, "port status not recorded");
        }
    }
    Ok(rebind)
}

/// Seconds without a report after which a node's agent counts as down (Neutron's
/// `agent_down_time`; agents report after every change and every probe round).
pub const AGENT_DOWN_TIME: u64 = 75;

/// The id Neutron's agents API shows for a node's agent (stable, derived from the node).
pub fn agent_id(node: &str) -> String {
    crate::naming::derived_id(&["agent", node])
}

/// Whether the node's agent reported within [`AGENT_DOWN_TIME`].
pub fn alive(a: &AgentRow) -> bool {
    a.last_report_at
        .as_deref()
        .and_then(crate::store::age_secs)
        .is_some_and(|age| age <= AGENT_DOWN_TIME)
}

/// Every registered node with its pod's availability zone. As Neutron filters a collection
/// by policy rather than refusing it, a caller without `get_agent` gets an empty list.
pub async fn list(core: &Core, who: &Identity) -> Result<Vec<(AgentRow, String)>, DomainError> {
    if !policy::allows(who, "get_agent", &Target::default()) {
        return Ok(Vec::new());
    }
    let pods = core.store.list_pods().await?;
    Ok(core
        .store
        .list_agents()
        .await?
        .into_iter()
        .map(|a| {
            let az = pods
                .iter()
                .find(|p| p.region_name == a.pod)
                .map(|p| p.az_name.clone())
                .unwrap_or_default();
            (a, az)
        })
        .collect())
}

/// What an admin may change on an agent.
#[derive(Debug, Default)]
pub struct AgentUpdate {
    /// New description.
    pub description: Option<String>,
    /// Enable or disable the node for new port bindings.
    pub admin_state_up: Option<bool>,
}

/// Change an agent's description or admin state (`update_agent`, admin). Callers who may not
/// see agents get 404, as for any object they may not see.
pub async fn update(
    core: &Core,
    who: &Identity,
    node: &str,
    u: &AgentUpdate,
) -> Result<AgentRow, DomainError> {
    policy::enforce(who, "update_agent", &Target::default())?;
    let row = core
        .store
        .update_agent(node, u.description.as_deref(), u.admin_state_up)
        .await?
        .ok_or_else(|| DomainError::not_found("Agent", "AgentNotFound", node))?;
    tracing::info!(node, admin_state_up = row.admin_state_up, "agent updated");
    Ok(row)
}

/// A port may be bound to `host` unless an admin disabled that node's agent (a node being
/// drained takes no new ports; ports already bound there stay). Unregistered hosts are
/// allowed: a port may be bound before its node's agent first registers.
pub async fn check_bindable(core: &Core, host: &str) -> Result<(), DomainError> {
    if host.is_empty() {
        return Ok(());
    }
    match core.store.get_agent(host).await? {
        Some(a) if !a.admin_state_up => Err(DomainError::new(
            crate::error::ErrorClass::Conflict,
            "AgentDisabled",
            format!(
                "Unable to bind a port to host {host}: its agent is disabled (admin_state_up false)"
            ),
        )),
        _ => Ok(()),
    }
}
