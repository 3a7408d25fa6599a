//! Quotas as Neutron's `quotasv2` and `quota_details` extensions: who may read and change a
//! project's limits (Neutron's default policies `get_quota`: admin or the project itself;
//! `update_quota`, `delete_quota`: admin) and what a limit may be (an integer, -1 or more).
//! The limits are enforced by the store, in each create's own transaction.

use serde_json::Value;

use crate::auth::Identity;
use crate::core::Core;
use crate::error::DomainError;
use crate::store::QuotaResource;

/// One resource's limit and what the project uses of it (`/quotas/{project}/details`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDetail {
    /// The resource.
    pub resource: QuotaResource,
    /// Objects the quota counts now.
    pub used: i64,
    /// The limit (-1 = unlimited).
    pub limit: i64,
}

/// The largest limit Neutron accepts (its `DB_INTEGER_MAX_VALUE`).
pub const MAX_LIMIT: i64 = 2_147_483_647;

/// A project's limits, every resource (its own where set, else the defaults).
pub type Limits = Vec<(QuotaResource, i64)>;

/// Neutron's `get_quota`: an admin, or a member for its own project.
fn may_read(who: &Identity, project: &str) -> Result<(), DomainError> {
    super::policy::enforce(who, "get_quota", &super::policy::Target::owned_by(project))
}

fn admin_only(who: &Identity, action: &str) -> Result<(), DomainError> {
    super::policy::enforce(who, action, &super::policy::Target::default())
}

fn check_project(project: &str) -> Result<(), DomainError> {
    if project.is_empty() || project.len() > 255 {
        return Err(DomainError::invalid_input(
            "project_id",
            format!("'{}' is not a valid project id", project.escape_debug()),
        ));
    }
    Ok(())
}

/// Every project with limits of its own (admin only; Neutron lists only those).
pub async fn list(core: &Core, who: &Identity) -> Result<Vec<(String, Limits)>, DomainError> {
    admin_only(who, "get_quota")?;
    Ok(core.store.list_quotas().await?)
}

/// A project's limits.
pub async fn show(core: &Core, who: &Identity, project: &str) -> Result<Limits, DomainError> {
    check_project(project)?;
    may_read(who, project)?;
    Ok(core.store.quota_limits(project).await?)
}

/// The limits a project without its own gets.
pub fn defaults(core: &Core, who: &Identity, project: &str) -> Result<Limits, DomainError> {
    check_project(project)?;
    may_read(who, project)?;
    Ok(core.store.quota_defaults().all())
}

/// A project's limits with what it uses of each.
pub async fn details(
    core: &Core,
    who: &Identity,
    project: &str,
) -> Result<Vec<QuotaDetail>, DomainError> {
    check_project(project)?;
    may_read(who, project)?;
    let limits = core.store.quota_limits(project).await?;
    let used = core.store.quota_usage(project).await?;
    Ok(limits
        .into_iter()
        .map(|(resource, limit)| QuotaDetail {
            resource,
            limit,
            used: used
                .iter()
                .find(|(r, _)| *r == resource)
                .map(|(_, n)| *n)
                .unwrap_or(0),
        })
        .collect())
}

/// Parse the attributes of an update (`{"network": 5, ...}`): every key a known resource
/// (`force`, which Neutron uses to allow a limit below the current use, is accepted: crosspod
/// never refuses a lower limit; what exists stays and new creates are refused), every value
/// an integer (or its string) from -1 to [`MAX_LIMIT`].
pub fn parse_limits(
    attrs: serde_json::Map<String, Value>,
) -> Result<Vec<(QuotaResource, i64)>, DomainError> {
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for (key, v) in attrs {
        if key == "force" {
            let boolean = match &v {
                Value::Bool(_) => true,
                Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "false"),
                Value::Number(n) => matches!(n.as_i64(), Some(0 | 1)),
                _ => false,
            };
            if !boolean {
                return Err(DomainError::invalid_input(
                    "force",
                    format!("'{v}' is not a valid boolean value"),
                ));
            }
            continue;
        }
        let Some(r) = QuotaResource::parse(&key) else {
            unknown.push(key);
            continue;
        };
        let n = match &v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        }
        .ok_or_else(|| DomainError::invalid_input(&key, format!("'{v}' is not an integer")))?;
        if n < -1 {
            return Err(DomainError::invalid_input(
                &key,
                format!("'{n}' is too small - must be at least '-1'"),
            ));
        }
        if n > MAX_LIMIT {
            return Err(DomainError::invalid_input(
                &key,
                format!("'{n}' is too large - must be no larger than '{MAX_LIMIT}'"),
            ));
        }
        out.push((r, n));
    }
    if !unknown.is_empty() {
        return Err(DomainError::bad_request(format!(
            "Unrecognized attribute(s) '{}'",
            unknown.join(", ")
        )));
    }
    Ok(out)
}

/// Set some of a project's limits (admin only); the project's limits after.
pub async fn update(
    core: &Core,
    who: &Identity,
    project: &str,
    limits: &[(QuotaResource, i64)],
) -> Result<Limits, DomainError> {
    check_project(project)?;
    admin_only(who, "update_quota")?;
    core.store.set_quotas(project, limits).await?;
    Ok(core.store.quota_limits(project).await?)
}

/// Back to the defaults (admin only); 404 `TenantQuotaNotFound` as Neutron's when the
/// project had no limits of its own.
pub async fn reset(core: &Core, who: &Identity, project: &str) -> Result<(), DomainError> {
    check_project(project)?;
    admin_only(who, "delete_quota")?;
    if core.store.delete_quotas(project).await? == 0 {
        return Err(DomainError::new(
            crate::error::ErrorClass::NotFound,
            "TenantQuotaNotFound",
            format!("Quota for tenant {project} could not be found."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn limits_are_integers_of_minus_one_or_more() {
        let l = parse_limits(attrs(json!({"network": 5, "port": "-1", "force": true}))).unwrap();
        assert!(l.contains(&(QuotaResource::Network, 5)));
        assert!(l.contains(&(QuotaResource::Port, -1)));
        let e = parse_limits(attrs(json!({"router": -2}))).unwrap_err();
        assert_eq!(e.kind, "InvalidInput");
        assert!(e.message.contains("router"), "{}", e.message);
        assert!(parse_limits(attrs(json!({"router": MAX_LIMIT}))).is_ok());
        assert!(parse_limits(attrs(json!({"router": MAX_LIMIT + 1}))).is_err());
        let e = parse_limits(attrs(json!({"subnet": 1.5}))).unwrap_err();
        assert_eq!(e.kind, "InvalidInput");
        let e = parse_limits(attrs(json!({"volumes": 3}))).unwrap_err();
        assert_eq!(e.class, crate::error::ErrorClass::BadRequest);
        assert!(e.message.contains("volumes"), "{}", e.message);
    }

    #[test]
    fn members_read_only_their_own() {
        let member = Identity {
            project_id: "demo".into(),
            roles: vec![crate::auth::Role::Member],
            node: None,
        };
        assert!(may_read(&member, "demo").is_ok());
        assert_eq!(
            may_read(&member, "other").unwrap_err().kind,
            "PolicyNotAuthorized"
        );
        assert!(admin_only(&member, "update_quota").is_err());
    }
}
