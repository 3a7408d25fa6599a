//! Ports: who may create one where and with what (Neutron's `create_port:*` policies),
//! `DeviceIDNotOwnedByTenant`, and the ports crosspod's routers and floating IPs own, which
//! the port API can neither make nor delete.

use crate::auth::Identity;
use crate::core::Core;
use crate::error::DomainError;
use crate::naming::{
    OWNER_BRIDGE_IP, OWNER_DHCP, OWNER_FLOATINGIP, OWNER_GATEWAY, OWNER_INTERFACE, OWNER_LEG,
};
use crate::service::networks;
use crate::service::policy::{self, Target};
use crate::service::security_groups;
use crate::store::{AddressPair, FixedIpRequest, Network, NewPort, Port};

/// What a port create or update names about port security (`None` = not named).
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// `security_groups`.
    pub security_groups: Option<Vec<String>>,
    /// `allowed_address_pairs` (already validated in shape).
    pub allowed_address_pairs: Option<Vec<AddressPair>>,
}

fn security_needs_port_security() -> DomainError {
    DomainError::new(
        crate::error::ErrorClass::BadRequest,
        "PortSecurityAndIPRequiredForSecurityGroups",
        "Port security must be enabled and port must have an IP address in order to use security groups.",
    )
}

fn pairs_need_port_security() -> DomainError {
    DomainError::conflict(
        "AddressPairAndPortSecurityRequired",
        "Port Security must be enabled in order to have allowed address pairs on a port.",
    )
}

/// Device owners of the ports the router and floating-IP APIs and the realizer make: never
/// through the port API (a router interface exists only through `add_router_interface`; a
/// DHCP port only as the realizer's, one per network and pod, so it never counts in a quota).
pub const MANAGED_OWNERS: &[&str] = &[
    OWNER_INTERFACE,
    OWNER_GATEWAY,
    OWNER_FLOATINGIP,
    OWNER_LEG,
    OWNER_BRIDGE_IP,
    OWNER_DHCP,
];

/// Whether `device_owner` is Neutron's "network device" (only the network's owner sets one).
fn is_network_device(device_owner: &str) -> bool {
    device_owner.starts_with("network:")
}

fn target<'a>(owner: &'a str, net: &'a Network) -> Target<'a> {
    Target {
        project_id: owner,
        network_owner: Some(&net.project_id),
        network_shared: net.shared,
    }
}

/// A port the caller may see: its own, or one on a network it owns (Neutron's policy).
pub async fn load_visible(core: &Core, who: &Identity, id: &str) -> Result<Port, DomainError> {
    let p = core.store.get_port(id).await?;
    if !policy::visible(who, &p.project_id) {
        let net = core.store.get_network(&p.network_id).await?;
        if !policy::visible(who, &net.project_id) {
            return Err(DomainError::not_found("Port", "PortNotFound", id));
        }
    }
    Ok(p)
}

/// Refuse a `device_id` naming another project's router (Neutron's `DeviceIDNotOwnedByTenant`).
async fn check_device_id(core: &Core, who: &Identity, device_id: &str) -> Result<(), DomainError> {
    if device_id.is_empty() || who.is_admin() {
        return Ok(());
    }
    match core.store.get_router(device_id).await {
        Ok(r) if r.project_id != who.project_id => Err(DomainError::conflict(
            "DeviceIDNotOwnedByTenant",
            format!(
                "The following device_id {device_id} is not owned by your tenant or matches another tenants router."
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if matches!(&e, crate::error::StoreError::Rule(d) if d.is_not_found()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn check_device_owner(
    who: &Identity,
    action: &str,
    device_owner: &str,
    t: &Target,
) -> Result<(), DomainError> {
    // Who may name a network device at all first (a foreign member: 403), then which ones
    // only crosspod makes (400 even for the admin).
    if is_network_device(device_owner) {
        policy::enforce(who, &format!("{action}:device_owner"), t)?;
    }
    if MANAGED_OWNERS.contains(&device_owner) {
        return Err(DomainError::invalid_input(
            "device_owner",
            format!(
                "'{device_owner}' ports are made by the router and floating IP APIs (add_router_interface, external_gateway_info, floatingips) or, for DHCP, by crosspod itself, not the port API"
            ),
        ));
    }
    Ok(())
}

fn check_fixed_ips(
    who: &Identity,
    action: &str,
    ips: &[FixedIpRequest],
    t: &Target,
) -> Result<(), DomainError> {
    if ips.iter().any(|f| f.ip_address.is_some()) {
        policy::enforce(who, &format!("{action}:fixed_ips:ip_address"), t)?;
    }
    if ips.iter().any(|f| f.subnet_id.is_some()) {
        policy::enforce(who, &format!("{action}:fixed_ips:subnet_id"), t)?;
    }
    Ok(())
}

/// Create a port (with its `tags`) after the policy's checks on the network and each
/// attribute asked for.
pub async fn create(
    core: &Core,
    who: &Identity,
    new: &NewPort,
    tags: &[String],
) -> Result<Port, DomainError> {
    create_secured(core, who, new, tags, &Security::default()).await
}

/// [`create`] with security groups and allowed address pairs: a port with port security
/// (its own flag, else its network's) and no groups named is put in its project's default
/// group, except `network:*` ports; one without port security may have neither.
pub async fn create_secured(
    core: &Core,
    who: &Identity,
    new: &NewPort,
    tags: &[String],
    sec: &Security,
) -> Result<Port, DomainError> {
    let net = networks::load_visible(core, who, &new.network_id).await?;
    let t = target(&new.project_id, &net);
    if new.project_id != who.project_id {
        policy::enforce(who, "create_port:project_id", &t)?;
    }
    policy::enforce(who, "create_port", &t)?;
    if new.mac_address.is_some() {
        policy::enforce(who, "create_port:mac_address", &t)?;
    }
    if new.port_security_enabled.is_some() {
        policy::enforce(who, "create_port:port_security_enabled", &t)?;
    }
    if !new.host_id.is_empty() {
        policy::enforce(who, "create_port:binding:host_id", &t)?;
        super::agents::check_bindable(core, &new.host_id).await?;
    }
    check_device_id(core, who, &new.device_id).await?;
    check_device_owner(who, "create_port", &new.device_owner, &t)?;
    check_fixed_ips(
        who,
        "create_port",
        new.fixed_ips.as_deref().unwrap_or(&[]),
        &t,
    )?;
    super::tags::check_create(who, crate::store::Tagged::Port, &t, tags)?;
    let port_security = new
        .port_security_enabled
        .unwrap_or(net.port_security_enabled);
    let pairs = sec.allowed_address_pairs.clone().unwrap_or_default();
    let groups = match &sec.security_groups {
        Some(ids) => {
            if !port_security && !ids.is_empty() {
                return Err(security_needs_port_security());
            }
            security_groups::resolve_for_port(core, who, &new.project_id, ids).await?
        }
        None if port_security && !is_network_device(&new.device_owner) => {
            vec![security_groups::ensure_default(core, &new.project_id).await?]
        }
        None => Vec::new(),
    };
    if !port_security && !pairs.is_empty() {
        return Err(pairs_need_port_security());
    }
    let p = core
        .store
        .create_port_secured(new, tags, &groups, &pairs)
        .await?;
    tracing::info!(port = %p.id, network = %p.network_id, mac = %p.mac_address, "port created");
    Ok(p)
}

/// The attributes a port update may change (`None` = leave as is).
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Admin state.
    pub admin_state_up: Option<bool>,
    /// Device id.
    pub device_id: Option<String>,
    /// Device owner.
    pub device_owner: Option<String>,
    /// `binding:host_id` (admin).
    pub host_id: Option<String>,
    /// Port security (network owner).
    pub port_security_enabled: Option<bool>,
    /// MAC address, normalised (admin, and only while the port is unbound).
    pub mac_address: Option<String>,
    /// New fixed IPs (replace the current ones).
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
    /// New security groups and allowed address pairs.
    pub security: Security,
}

/// Update only the given attributes of a port the caller may manage.
pub async fn update(
    core: &Core,
    who: &Identity,
    id: &str,
    u: &Update,
    if_match: Option<i64>,
) -> Result<Port, DomainError> {
    super::with_retry(if_match, || async {
        let mut p = load_visible(core, who, id).await?;
        let net = core.store.get_network(&p.network_id).await?;
        let t = target(&p.project_id, &net);
        policy::enforce(who, "update_port", &t)?;
        super::check_if_match(if_match, p.revision_number)?;
        if MANAGED_OWNERS.contains(&p.device_owner.as_str())
            && (u.device_owner.is_some() || u.device_id.is_some() || u.fixed_ips.is_some())
        {
            return Err(DomainError::conflict(
                "PortInUse",
                format!(
                    "Port {id} is a {} port: its device and addresses follow its router or floating IP",
                    p.device_owner
                ),
            ));
        }
        if let Some(v) = &u.name {
            p.name = v.clone();
        }
        if let Some(v) = &u.description {
            p.description = v.clone();
        }
        if let Some(v) = u.admin_state_up {
            p.admin_state_up = v;
        }
        if let Some(v) = &u.device_id {
            if *v != p.device_id {
                check_device_id(core, who, v).await?;
            }
            p.device_id = v.clone();
        }
        if let Some(v) = &u.device_owner {
            if *v != p.device_owner {
                check_device_owner(who, "update_port", v, &t)?;
            }
            p.device_owner = v.clone();
        }
        if let Some(v) = &u.host_id {
            policy::enforce(who, "update_port:binding:host_id", &t)?;
            if *v != p.host_id {
                super::agents::check_bindable(core, v).await?;
            }
            p.host_id = v.clone();
        }
        if let Some(v) = u.port_security_enabled {
            if v != p.port_security_enabled {
                policy::enforce(who, "update_port:port_security_enabled", &t)?;
            }
            p.port_security_enabled = v;
        }
        if let Some(m) = &u.mac_address {
            if *m != p.mac_address {
                policy::enforce(who, "update_port:mac_address", &t)?;
                if !p.host_id.is_empty() {
                    return Err(DomainError::conflict(
                        "PortBound",
                        format!(
                            "Unable to complete operation on port {id}: the MAC address of a bound port (host {}) cannot change",
                            p.host_id
                        ),
                    ));
                }
            }
        }
        if let Some(ips) = &u.fixed_ips {
            check_fixed_ips(who, "update_port", ips, &t)?;
        }
        let groups = match &u.security.security_groups {
            Some(ids) => Some(security_groups::resolve_for_port(core, who, &p.project_id, ids).await?),
            None => None,
        };
        let pairs = u.security.allowed_address_pairs.clone();
        if !p.port_security_enabled {
            if groups.as_ref().unwrap_or(&p.security_groups).iter().next().is_some() {
                return Err(if groups.as_ref().is_some_and(|g| !g.is_empty()) {
                    security_needs_port_security()
                } else {
                    DomainError::conflict(
                        "PortSecurityPortHasSecurityGroup",
                        "Port has security group associated. Cannot disable port security or ip address until security group is removed",
                    )
                });
            }
            if !pairs.as_ref().unwrap_or(&p.allowed_address_pairs).is_empty() {
                return Err(pairs_need_port_security());
            }
        }
        let mac = u.mac_address.as_deref().filter(|m| *m != p.mac_address);
        Ok(core
            .store
            .update_port_secured(&p, u.fixed_ips.as_deref(), mac, groups.as_deref(), pairs.as_deref())
            .await?)
    })
    .await
}

/// Delete a port the caller may manage; the ports routers and floating IPs own are 409.
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let p = load_visible(core, who, id).await?;
    let net = core.store.get_network(&p.network_id).await?;
    policy::enforce(who, "delete_port", &target(&p.project_id, &net))?;
    if MANAGED_OWNERS.contains(&p.device_owner.as_str()) {
        return Err(DomainError::conflict(
            "ServicePortInUse",
            format!(
                "Port {id} cannot be deleted directly via the port API: has device owner {}.",
                p.device_owner
            ),
        ));
    }
    Ok(core.store.delete_port(id).await?)
}
