//! Floating IPs: an address of an external network (held by a `network:floatingip` port, so
//! IPAM keeps it unique), associated with a port of the same project; only that project's
//! router with a gateway on that network and an interface on the port's subnet may serve it.
//! Choosing the address is an admin's right (Neutron's policy).

use std::net::IpAddr;

use crate::auth::Identity;
use crate::core::Core;
use crate::error::{DomainError, ErrorClass, StoreError};
use crate::naming::OWNER_FLOATINGIP;
use crate::realize::{self, Intent};
use crate::service::policy::{self, Target};
use crate::store::l3::FloatingIp;
use crate::store::{FixedIpRequest, NewPort};

/// A floating IP the caller owns (404 otherwise).
pub async fn load_own(core: &Core, who: &Identity, id: &str) -> Result<FloatingIp, DomainError> {
    let f = core.store.get_floatingip(id).await?;
    if !policy::visible(who, &f.project_id) {
        return Err(DomainError::not_found(
            "Floating IP",
            "FloatingIPNotFound",
            id,
        ));
    }
    Ok(f)
}

/// Resolves an association: the port (visible to the caller), its fixed IP, and the planner's
/// rules (same project, a serving router).
fn associate(
    intent: &Intent,
    who: &Identity,
    f: &mut FloatingIp,
    port_id: Option<String>,
    fixed: Option<String>,
) -> Result<(), DomainError> {
    let Some(pid) = port_id else {
        f.port_id = None;
        f.fixed_ip_address = None;
        return Ok(());
    };
    let port = intent
        .ports
        .get(&pid)
        .ok_or_else(|| DomainError::not_found("Port", "PortNotFound", &pid))?;
    if !policy::visible(who, &port.project_id) {
        return Err(DomainError::not_found("Port", "PortNotFound", &pid));
    }
    let fixed_ip = match fixed {
        Some(a) => {
            let ip: std::net::IpAddr = a.parse().map_err(|_| {
                DomainError::invalid_input(
                    "fixed_ip_address",
                    format!("'{a}' is not an IP address"),
                )
            })?;
            if !port.fixed_ips.iter().any(|x| x.ip_address == ip) {
                return Err(DomainError::bad_request(format!(
                    "Bad floatingip request: port {pid} does not have fixed IP {ip}"
                )));
            }
            ip
        }
        None => port
            .fixed_ips
            .iter()
            .find(|x| x.ip_address.is_ipv4())
            .map(|x| x.ip_address)
            .ok_or_else(|| {
                DomainError::bad_request(format!(
                    "Bad floatingip request: port {pid} has no IPv4 fixed IP"
                ))
            })?,
    };
    let candidate = planner::FloatingIp {
        id: f.id.clone(),
        project_id: f.project_id.clone(),
        floating_network_id: f.floating_network_id.clone(),
        floating_ip_address: f.floating_ip_address.parse().map_err(|_| {
            DomainError::internal(format!("stored floating IP {} is not an address", f.id))
        })?,
        port_id: Some(pid.clone()),
        fixed_ip_address: Some(fixed_ip),
    };
    if let Err(e) = planner::validate_floating_ip(&intent.snapshot, &candidate) {
        return Err(match e {
            planner::ValidationError::FloatingIpUnreachable { .. } => DomainError::new(
                ErrorClass::NotFound,
                "ExternalGatewayForFloatingIPNotFound",
                e.to_string(),
            ),
            other => DomainError::bad_request(other.to_string()),
        });
    }
    // One floating IP per fixed IP.
    for other in intent.floatingips.values() {
        if other.id != f.id
            && other.port_id.as_deref() == Some(pid.as_str())
            && other.fixed_ip_address.as_deref() == Some(fixed_ip.to_string().as_str())
        {
            return Err(DomainError::conflict(
                "FloatingIPPortAlreadyAssociated",
                format!(
                    "Cannot associate floating IP {} with port {pid} ({fixed_ip}): floating IP {} already has it",
                    f.floating_ip_address, other.floating_ip_address
                ),
            ));
        }
    }
    f.port_id = Some(pid);
    f.fixed_ip_address = Some(fixed_ip.to_string());
    Ok(())
}

/// What a floating IP create asks for.
#[derive(Debug, Clone)]
pub struct Create {
    /// Owner.
    pub project_id: String,
    /// External network.
    pub network_id: String,
    /// A chosen address (admin).
    pub address: Option<IpAddr>,
    /// A subnet of the external network to take it from.
    pub subnet_id: Option<String>,
    /// Port to associate.
    pub port_id: Option<String>,
    /// Fixed IP of that port.
    pub fixed_ip: Option<String>,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
}

/// Create a floating IP (its address port first, removed again if the row and its tags
/// cannot be written).
pub async fn create(
    core: &Core,
    who: &Identity,
    c: Create,
) -> Result<(FloatingIp, std::sync::Arc<Intent>), DomainError> {
    let t = Target::owned_by(&c.project_id);
    policy::enforce(who, "create_floatingip", &t)?;
    if c.project_id != who.project_id {
        policy::enforce(who, "create_floatingip:project_id", &t)?;
    }
    if c.address.is_some() {
        policy::enforce(who, "create_floatingip:floating_ip_address", &t)?;
    }
    super::tags::check_create(who, crate::store::Tagged::FloatingIp, &t, &c.tags)?;
    let net = core.store.get_network(&c.network_id).await?;
    if !net.external {
        return Err(DomainError::bad_request(format!(
            "Bad floatingip request: network {} is not a valid external network",
            c.network_id
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut f = FloatingIp {
        id: id.clone(),
        project_id: c.project_id,
        floating_network_id: c.network_id.clone(),
        floating_port_id: String::new(),
        // Checked before an address is taken: nothing to undo on refusal.
        floating_ip_address: "0.0.0.0".into(),
        port_id: None,
        fixed_ip_address: None,
        description: c.description,
        created_at: String::new(),
        updated_at: String::new(),
        revision_number: 1,
    };
    let intent = core.realizer.intent(core).await?;
    associate(&intent, who, &mut f, c.port_id, c.fixed_ip)?;
    let port = core
        .store
        .create_port(&NewPort {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: String::new(),
            network_id: c.network_id,
            name: String::new(),
            description: format!("floating IP {id}"),
            admin_state_up: true,
            mac_address: None,
            device_id: id.clone(),
            device_owner: OWNER_FLOATINGIP.into(),
            host_id: String::new(),
            port_security_enabled: Some(false),
            fixed_ips: (c.subnet_id.is_some() || c.address.is_some()).then(|| {
                vec![FixedIpRequest {
                    subnet_id: c.subnet_id,
                    ip_address: c.address,
                }]
            }),
        })
        .await?;
    let addr = port
        .fixed_ips
        .first()
        .map(|x| x.ip_address.to_string())
        .ok_or_else(|| DomainError::internal("floating IP port got no address"))?;
    f.floating_port_id = port.id.clone();
    f.floating_ip_address = addr;
    let f = match core.store.create_floatingip_tagged(&f, &c.tags).await {
        Ok(f) => f,
        Err(e) => {
            // Give the address back; the realizer would collect it otherwise.
            let _ = core.store.delete_port(&port.id).await;
            return Err(e.into());
        }
    };
    // The intent read above still holds every port and router the job and the rendering
    // look at (the new floating IP's own port is not among them).
    queue_for(core, &intent, &f).await?;
    tracing::info!(floatingip = %f.id, address = %f.floating_ip_address, port = ?f.port_id, "floating IP created");
    Ok((f, intent))
}

/// What a floating IP update changes: `port` `None` = leave the association, `Some(None)` =
/// disassociate.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Association.
    pub port: Option<Option<String>>,
    /// Fixed IP of the new port.
    pub fixed_ip: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// Update a floating IP the caller owns.
pub async fn update(
    core: &Core,
    who: &Identity,
    id: &str,
    u: &Update,
    if_match: Option<i64>,
) -> Result<(FloatingIp, std::sync::Arc<Intent>), DomainError> {
    super::with_retry(if_match, || async {
        let mut f = load_own(core, who, id).await?;
        policy::enforce(who, "update_floatingip", &Target::owned_by(&f.project_id))?;
        super::check_if_match(if_match, f.revision_number)?;
        let before = f.clone();
        if let Some(d) = &u.description {
            f.description = d.clone();
        }
        let intent = core.realizer.intent(core).await?;
        if let Some(port) = &u.port {
            associate(&intent, who, &mut f, port.clone(), u.fixed_ip.clone())?;
        }
        let f = core.store.update_floatingip(&f).await?;
        queue_for(core, &intent, &before).await?;
        queue_for(core, &intent, &f).await?;
        Ok((f, intent))
    })
    .await
}

/// Delete a floating IP the caller owns, and its address port.
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let f = load_own(core, who, id).await?;
    policy::enforce(who, "delete_floatingip", &Target::owned_by(&f.project_id))?;
    core.store.delete_floatingip(&f.id).await?;
    match core.store.delete_port(&f.floating_port_id).await {
        Ok(()) => {}
        Err(StoreError::Rule(a)) if a.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let intent = core.realizer.intent(core).await?;
    queue_for(core, &intent, &f).await?;
    Ok(())
}

/// Queues the job of the router serving `f` (if any).
async fn queue_for(core: &Core, intent: &Intent, f: &FloatingIp) -> Result<(), DomainError> {
    let Some(pid) = &f.port_id else {
        return Ok(());
    };
    if let Some(r) = intent
        .ports
        .get(pid)
        .and_then(|p| realize::serving_router(intent, &f.floating_network_id, p))
    {
        let project = intent
            .routers
            .get(&r)
            .map(|x| x.project_id.clone())
            .unwrap_or_default();
        core.store
            .queue_job(crate::store::jobs::JobType::RouterSetup, &r, &project)
            .await?;
    }
    Ok(())
}
