//! Networks: visibility (own, shared, external), creation and update rules, and the
//! availability-zone hints that must name a pod.

use crate::auth::Identity;
use crate::core::Core;
use crate::error::DomainError;
use crate::service::policy::{self, Target};
use crate::store::{Network, NewNetwork, Segment};

/// Whether `who` may see the network (Neutron: own, shared or external).
pub fn visible(n: &Network, who: &Identity) -> bool {
    policy::visible(who, &n.project_id) || n.shared || n.external
}

/// A network the caller may see (404 otherwise, as Neutron hides foreign ones).
pub async fn load_visible(core: &Core, who: &Identity, id: &str) -> Result<Network, DomainError> {
    let n = core.store.get_network(id).await?;
    if !visible(&n, who) {
        return Err(DomainError::not_found("Network", "NetworkNotFound", id));
    }
    Ok(n)
}

/// Check `availability_zone_hints` against the pods: each must name a pod's region or AZ.
pub async fn check_hints(core: &Core, hints: &[String]) -> Result<(), DomainError> {
    if hints.is_empty() {
        return Ok(());
    }
    let pods = core.store.list_pods().await?;
    for h in hints {
        if !pods
            .iter()
            .any(|p| p.region_name == *h || (!p.az_name.is_empty() && p.az_name == *h))
        {
            return Err(DomainError::invalid_input(
                "availability_zone_hints",
                format!("'{h}' is not the region_name or az_name of any pod"),
            ));
        }
    }
    Ok(())
}

/// What a create request asked for beyond the defaults (each is its own policy).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateAsks {
    /// A chosen id.
    pub id: bool,
    /// Any `provider:*` attribute.
    pub provider: bool,
}

/// Create a network (with its `tags`) after the policy's checks.
pub async fn create(
    core: &Core,
    who: &Identity,
    new: &NewNetwork,
    asks: CreateAsks,
    tags: &[String],
) -> Result<Network, DomainError> {
    let t = Target::owned_by(&new.project_id);
    policy::enforce(who, "create_network", &t)?;
    if new.project_id != who.project_id {
        policy::enforce(who, "create_network:project_id", &t)?;
    }
    if asks.id {
        policy::enforce(who, "create_network:id", &t)?;
    }
    if new.shared {
        policy::enforce(who, "create_network:shared", &t)?;
    }
    if new.external {
        policy::enforce(who, "create_network:router:external", &t)?;
    }
    if asks.provider {
        policy::enforce(who, "create_network:provider:network_type", &t)?;
    }
    super::tags::check_create(who, crate::store::Tagged::Network, &t, tags)?;
    check_hints(core, &new.az_hints).await?;
    let n = core
        .store
        .create_network_tagged(new, &core.config.network_vlan_ranges, tags)
        .await?;
    if n.segment == Segment::Local {
        // A local network placed in a pod needs a pod-local VLAN now: made before the answer,
        // or the network goes again and the request is refused.
        if let Err(e) = local_tag_allocated(core, &n.id).await {
            if let Err(undo) = core.store.delete_network(&n.id).await {
                tracing::warn!(network = %n.id, error = %undo, "undoing a network whose pod-local VLAN failed");
            }
            return Err(e);
        }
    }
    Ok(n)
}

/// 409 naming the pool when a pod-local VLAN the network needs could not be allocated.
async fn local_tag_allocated(core: &Core, network_id: &str) -> Result<(), DomainError> {
    let intent = core.realizer.intent(core).await?;
    let failed = core.realizer.needed_failure(&intent, |k| {
        matches!(k, planner::AllocationKey::LocalTag { network_id: id, .. } if id == network_id)
    });
    super::allocation_refused(&format!("network {network_id}"), failed)
}

/// The attributes an update may change (`None` = leave as is).
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Admin state.
    pub admin_state_up: Option<bool>,
    /// Shared (admin).
    pub shared: Option<bool>,
    /// `router:external` (admin).
    pub external: Option<bool>,
    /// MTU (checked by the caller's parser).
    pub mtu: Option<i64>,
    /// Default port security.
    pub port_security_enabled: Option<bool>,
}

/// Update only the given attributes of a network the caller owns.
pub async fn update(
    core: &Core,
    who: &Identity,
    id: &str,
    u: &Update,
    if_match: Option<i64>,
) -> Result<Network, DomainError> {
    super::with_retry(if_match, || async {
        let mut n = load_visible(core, who, id).await?;
        let t = Target::owned_by(&n.project_id);
        policy::enforce(who, "update_network", &t)?;
        super::check_if_match(if_match, n.revision_number)?;
        if let Some(v) = &u.name {
            n.name = v.clone();
        }
        if let Some(v) = &u.description {
            n.description = v.clone();
        }
        if let Some(v) = u.admin_state_up {
            n.admin_state_up = v;
        }
        if let Some(v) = u.shared {
            if v != n.shared {
                policy::enforce(who, "update_network:shared", &t)?;
            }
            n.shared = v;
        }
        if let Some(v) = u.external {
            if v != n.external {
                policy::enforce(who, "update_network:router:external", &t)?;
            }
            n.external = v;
        }
        if let Some(v) = u.mtu {
            n.mtu = v;
        }
        if let Some(v) = u.port_security_enabled {
            n.port_security_enabled = v;
        }
        Ok(core.store.update_network(&n).await?)
    })
    .await
}

/// Delete a network the caller owns.
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let n = load_visible(core, who, id).await?;
    policy::enforce(who, "delete_network", &Target::owned_by(&n.project_id))?;
    Ok(core.store.delete_network(id).await?)
}

/// How many addresses a subnet has (its allocation pools) and how many are taken.
#[derive(Debug, Clone, PartialEq)]
pub struct SubnetAvailability {
    /// The subnet.
    pub subnet: crate::store::Subnet,
    /// Addresses in its allocation pools (saturating).
    pub total_ips: u128,
    /// Addresses allocated in it (the gateway's router port included).
    pub used_ips: i64,
}

/// `network-ip-availability` of every network (admin: `get_network_ip_availability`).
pub async fn ip_availability(
    core: &Core,
    who: &Identity,
) -> Result<Vec<(Network, Vec<SubnetAvailability>)>, DomainError> {
    // A collection is filtered by policy, not refused (Neutron's way): a caller without
    // `get_network_ip_availability` sees none, and a show of one answers 404.
    if !policy::allows(who, "get_network_ip_availability", &Target::default()) {
        return Ok(Vec::new());
    }
    let all = crate::store::Scope::default();
    let used = core.store.used_ips_per_subnet().await?;
    let subnets = core.store.list_subnets(&all).await?;
    Ok(core
        .store
        .list_networks(&all)
        .await?
        .into_iter()
        .map(|n| {
            let mine = subnets
                .iter()
                .filter(|s| s.network_id == n.id)
                .map(|s| SubnetAvailability {
                    total_ips: crate::ipam::pools_size(&s.allocation_pools),
                    used_ips: used.get(&s.id).copied().unwrap_or(0),
                    subnet: s.clone(),
                })
                .collect();
            (n, mine)
        })
        .collect())
}
