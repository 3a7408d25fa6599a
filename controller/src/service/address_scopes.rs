//! Address scopes (Neutron's `address-scope` extension): visible to their project and, when
//! shared, to every project; only an admin shares one, and a shared one stays shared
//! (projects' pools may depend on it).

use crate::auth::Identity;
use crate::core::Core;
use crate::error::{DomainError, ErrorClass};
use crate::service::policy::{self, Target};
use crate::store::subnetpools::scope_not_found;
use crate::store::{AddressScope, Scope};

/// Whether `who` may see the scope: its own, or a shared one.
pub fn visible(a: &AddressScope, who: &Identity) -> bool {
    policy::visible(who, &a.project_id) || a.shared
}

/// An address scope the caller may see (404 otherwise, as Neutron hides foreign ones).
pub async fn load_visible(
    core: &Core,
    who: &Identity,
    id: &str,
) -> Result<AddressScope, DomainError> {
    let a = core.store.get_address_scope(id).await?;
    if !visible(&a, who) {
        return Err(scope_not_found(id));
    }
    Ok(a)
}

/// The scopes the caller may see.
pub async fn list(core: &Core, who: &Identity) -> Result<Vec<AddressScope>, DomainError> {
    let scope = Scope {
        project_id: (!who.is_admin()).then(|| who.project_id.clone()),
    };
    Ok(core.store.list_address_scopes(&scope).await?)
}

/// Create a scope after the policy's checks (another project's, or a shared one: admin).
pub async fn create(
    core: &Core,
    who: &Identity,
    a: &AddressScope,
) -> Result<AddressScope, DomainError> {
    let t = Target::owned_by(&a.project_id);
    policy::enforce(who, "create_address_scope", &t)?;
    if a.project_id != who.project_id {
        policy::enforce(who, "create_address_scope:project_id", &t)?;
    }
    if a.shared {
        policy::enforce(who, "create_address_scope:shared", &t)?;
    }
    Ok(core.store.create_address_scope(a).await?)
}

/// What an update request names.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// New name.
    pub name: Option<String>,
    /// New sharing (admin only; `false` on a shared scope is refused).
    pub shared: Option<bool>,
}

/// Update a scope the caller owns.
pub async fn update(
    core: &Core,
    who: &Identity,
    id: &str,
    u: &Update,
) -> Result<AddressScope, DomainError> {
    super::with_retry(None, || async {
        let mut a = load_visible(core, who, id).await?;
        let t = Target::owned_by(&a.project_id);
        policy::enforce(who, "update_address_scope", &t)?;
        if let Some(shared) = u.shared {
            policy::enforce(who, "update_address_scope:shared", &t)?;
            if a.shared && !shared {
                return Err(DomainError::new(
                    ErrorClass::BadRequest,
                    "AddressScopeUpdateError",
                    format!(
                        "Unable to update address scope {id} : Shared address scope can't be unshared."
                    ),
                ));
            }
            a.shared = shared;
        }
        if let Some(n) = &u.name {
            a.name = n.clone();
        }
        Ok(core.store.update_address_scope(&a).await?)
    })
    .await
}

/// Delete a scope the caller owns (409 while a pool is in it).
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let a = load_visible(core, who, id).await?;
    policy::enforce(
        who,
        "delete_address_scope",
        &Target::owned_by(&a.project_id),
    )?;
    Ok(core.store.delete_address_scope(id).await?)
}
