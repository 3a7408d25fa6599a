//! Subnets: visible with their network, created by the network's owner, changed and deleted
//! by their own.

use crate::auth::Identity;
use crate::core::Core;
use crate::error::DomainError;
use crate::ipam;
use crate::service::networks;
use crate::service::policy::{self, Target};
use crate::store::Subnet;

/// A subnet the caller may see: its own, or one on a network it may see.
pub async fn load_visible(core: &Core, who: &Identity, id: &str) -> Result<Subnet, DomainError> {
    let s = core.store.get_subnet(id).await?;
    if !policy::visible(who, &s.project_id) {
        let n = core.store.get_network(&s.network_id).await?;
        if !networks::visible(&n, who) {
            return Err(DomainError::not_found("Subnet", "SubnetNotFound", id));
        }
    }
    Ok(s)
}

/// Create a subnet (with its `tags`) on a network the caller owns (or as admin).
pub async fn create(
    core: &Core,
    who: &Identity,
    s: &Subnet,
    tags: &[String],
) -> Result<Subnet, DomainError> {
    let net = networks::load_visible(core, who, &s.network_id).await?;
    let t = Target {
        project_id: &s.project_id,
        network_owner: Some(&net.project_id),
        network_shared: net.shared,
    };
    if s.project_id != who.project_id {
        policy::enforce(who, "create_subnet:project_id", &t)?;
    }
    policy::enforce(who, "create_subnet", &t)?;
    super::tags::check_create(who, crate::store::Tagged::Subnet, &t, tags)?;
    Ok(core.store.create_subnet_tagged(s, tags).await?)
}

/// Update a subnet the caller owns: `apply` changes the attributes the request names on the
/// current row (it may run again when a concurrent update wins the race).
pub async fn update(
    core: &Core,
    who: &Identity,
    id: &str,
    if_match: Option<i64>,
    apply: impl Fn(&mut Subnet) -> Result<(), DomainError>,
) -> Result<Subnet, DomainError> {
    super::with_retry(if_match, || async {
        let mut s = load_visible(core, who, id).await?;
        policy::enforce(who, "update_subnet", &Target::owned_by(&s.project_id))?;
        super::check_if_match(if_match, s.revision_number)?;
        apply(&mut s)?;
        ipam::validate_pools(&s.cidr, &s.allocation_pools, s.gateway_ip)?;
        Ok(core.store.update_subnet(&s).await?)
    })
    .await
}

/// Delete a subnet the caller owns.
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let s = load_visible(core, who, id).await?;
    policy::enforce(who, "delete_subnet", &Target::owned_by(&s.project_id))?;
    Ok(core.store.delete_subnet(id).await?)
}
