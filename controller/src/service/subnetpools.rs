//! Subnet pools (Neutron's `subnet_allocation`, `default-subnetpools` and
//! `subnetpool-prefix-ops`): visible to their project and, when shared, to every project;
//! only an admin shares a pool or makes it a default. Their prefix rules are Neutron's
//! `SubnetPoolReader`: one IP version, compact prefixes, bounds `min <= default <= max <=`
//! the address length; prefixes only grow on update, and shrink only through
//! `remove_prefixes`, never under a subnet.

use ipnet::IpNet;

use crate::auth::Identity;
use crate::core::Core;
use crate::error::DomainError;
use crate::ipam;
use crate::service::address_scopes;
use crate::service::policy::{self, Target};
use crate::store::subnetpools::{bad, pool_not_found};
use crate::store::{Scope, SubnetPool};

/// Whether `who` may see the pool: its own, or a shared one.
pub fn visible(p: &SubnetPool, who: &Identity) -> bool {
    policy::visible(who, &p.project_id) || p.shared
}

/// A pool the caller may see (404 otherwise, as Neutron hides foreign ones).
pub async fn load_visible(
    core: &Core,
    who: &Identity,
    id: &str,
) -> Result<SubnetPool, DomainError> {
    let p = core.store.get_subnetpool(id).await?;
    if !visible(&p, who) {
        return Err(pool_not_found(id));
    }
    Ok(p)
}

/// The pools the caller may see.
pub async fn list(core: &Core, who: &Identity) -> Result<Vec<SubnetPool>, DomainError> {
    let scope = Scope {
        project_id: (!who.is_admin()).then(|| who.project_id.clone()),
    };
    Ok(core.store.list_subnetpools(&scope).await?)
}

/// Prefix bounds as a request gives them (absent: the pool's, or Neutron's defaults).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    /// `min_prefixlen`.
    pub min: Option<i64>,
    /// `max_prefixlen`.
    pub max: Option<i64>,
    /// `default_prefixlen`.
    pub default: Option<i64>,
}

fn illegal_bounds(kind: &str, len: i64, base_kind: &str, base: i64) -> DomainError {
    bad(
        "IllegalSubnetPoolPrefixBounds",
        format!("Illegal prefix bounds: {kind}={len}, {base_kind}={base}."),
    )
}

/// Neutron's `SubnetPoolReader`: sets `p`'s IP version from its prefixes (compacting them)
/// and its bounds from `b` (absent ones keep `p`'s, on a new pool Neutron's defaults: /8 or
/// /64 at least, the address length at most, the minimum by default), and checks them.
pub fn read_pool(p: &mut SubnetPool, b: Bounds, new: bool) -> Result<(), DomainError> {
    let Some(first) = p.prefixes.first() else {
        return Err(bad(
            "EmptySubnetPoolPrefixList",
            "Empty subnet pool prefix list.",
        ));
    };
    let v4 = first.addr().is_ipv4();
    if p.prefixes.iter().any(|x| x.addr().is_ipv4() != v4) {
        return Err(bad(
            "PrefixVersionMismatch",
            "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
        ));
    }
    if !new && (p.ip_version == 4) != v4 {
        return Err(bad(
            "PrefixVersionMismatch",
            "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.",
        ));
    }
    p.ip_version = if v4 { 4 } else { 6 };
    p.prefixes = ipam::compact(&p.prefixes);
    let bits: i64 = if v4 { 32 } else { 128 };
    let (old_min, old_max, old_default) = if new {
        (if v4 { 8 } else { 64 }, bits, None)
    } else {
        (
            i64::from(p.min_prefixlen),
            i64::from(p.max_prefixlen),
            Some(i64::from(p.default_prefixlen)),
        )
    };
    let min = b.min.unwrap_or(old_min);
    let max = b.max.unwrap_or(old_max);
    let default = b.default.or(old_default).unwrap_or(min);
    if min > max {
        return Err(illegal_bounds("min_prefixlen", min, "max_prefixlen", max));
    }
    if max > bits {
        return Err(illegal_bounds("max_prefixlen", max, "ip_version_max", bits));
    }
    if default < min {
        return Err(illegal_bounds(
            "default_prefixlen",
            default,
            "min_prefixlen",
            min,
        ));
    }
    if default > max {
        return Err(illegal_bounds(
            "default_prefixlen",
            default,
            "max_prefixlen",
            max,
        ));
    }
    // 0 <= min <= default <= max <= 128 (the API refuses negative ones): each fits a u8.
    let len = |v: i64| u8::try_from(v).unwrap_or(u8::MAX);
    p.min_prefixlen = len(min);
    p.max_prefixlen = len(max);
    p.default_prefixlen = len(default);
    Ok(())
}

/// Create a pool, with its tags, after the policy's checks (another project's, a shared or a
/// default one: admin; tags: `create_subnetpool:tags`) and the prefix rules; its address
/// scope must be one the caller may see.
pub async fn create(
    core: &Core,
    who: &Identity,
    mut p: SubnetPool,
    b: Bounds,
    tags: &[String],
) -> Result<SubnetPool, DomainError> {
    let t = Target::owned_by(&p.project_id);
    policy::enforce(who, "create_subnetpool", &t)?;
    if p.project_id != who.project_id {
        policy::enforce(who, "create_subnetpool:project_id", &t)?;
    }
    if p.shared {
        policy::enforce(who, "create_subnetpool:shared", &t)?;
    }
    if p.is_default {
        policy::enforce(who, "create_subnetpool:is_default", &t)?;
    }
    super::tags::check_create(who, crate::store::Tagged::SubnetPool, &t, tags)?;
    read_pool(&mut p, b, true)?;
    if let Some(scope) = &p.address_scope_id {
        address_scopes::load_visible(core, who, scope).await?;
    }
    Ok(core.store.create_subnetpool_tagged(&p, tags).await?)
}

/// What an update request names.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New prefixes (a superset of the current ones).
    pub prefixes: Option<Vec<IpNet>>,
    /// New bounds.
    pub bounds: Bounds,
    /// New quota (`Some(None)`: none).
    pub default_quota: Option<Option<i64>>,
    /// New default flag (admin only).
    pub is_default: Option<bool>,
    /// New address scope (`Some(None)`: none).
    pub address_scope_id: Option<Option<String>>,
}

/// Neutron's `_check_subnetpool_update_allowed`: a pool in a scope another project shares
/// with the caller is not the caller's to change.
async fn check_update_allowed(
    core: &Core,
    who: &Identity,
    p: &SubnetPool,
) -> Result<(), DomainError> {
    let Some(scope) = &p.address_scope_id else {
        return Ok(());
    };
    let a = address_scopes::load_visible(core, who, scope).await?;
    if !policy::visible(who, &a.project_id) {
        return Err(bad(
            "IllegalSubnetPoolUpdate",
            format!(
                "Illegal subnetpool update : subnetpool {} cannot be updated when associated with shared address scope {scope}.",
                p.id
            ),
        ));
    }
    Ok(())
}

/// Update a pool the caller owns.
pub async fn update(
    core: &Core,
    who: &Identity,
    id: &str,
    if_match: Option<i64>,
    u: &Update,
) -> Result<SubnetPool, DomainError> {
    super::with_retry(if_match, || async {
        let mut p = load_visible(core, who, id).await?;
        let t = Target::owned_by(&p.project_id);
        policy::enforce(who, "update_subnetpool", &t)?;
        if u.is_default.is_some() {
            policy::enforce(who, "update_subnetpool:is_default", &t)?;
        }
        super::check_if_match(if_match, p.revision_number)?;
        check_update_allowed(core, who, &p).await?;
        if let Some(prefixes) = &u.prefixes {
            if !ipam::is_subset(&p.prefixes, prefixes) {
                return Err(bad(
                    "IllegalSubnetPoolPrefixUpdate",
                    "Illegal update to prefixes: Existing prefixes must be a subset of the new prefixes.",
                ));
            }
            p.prefixes = prefixes.clone();
        }
        if let Some(v) = &u.name {
            p.name = v.clone();
        }
        if let Some(v) = &u.description {
            p.description = v.clone();
        }
        if let Some(v) = u.default_quota {
            p.default_quota = v;
        }
        if let Some(v) = u.is_default {
            p.is_default = v;
        }
        if let Some(v) = &u.address_scope_id {
            if let Some(scope) = v {
                address_scopes::load_visible(core, who, scope).await?;
            }
            p.address_scope_id = v.clone();
        }
        read_pool(&mut p, u.bounds, false)?;
        Ok(core.store.update_subnetpool(&p).await?)
    })
    .await
}

/// `add_prefixes`: the pool's prefixes with `add` merged in (as an update of the prefixes).
pub async fn add_prefixes(
    core: &Core,
    who: &Identity,
    id: &str,
    add: &[IpNet],
) -> Result<SubnetPool, DomainError> {
    super::with_retry(None, || async {
        let mut p = load_visible(core, who, id).await?;
        policy::enforce(who, "add_prefixes", &Target::owned_by(&p.project_id))?;
        check_update_allowed(core, who, &p).await?;
        p.prefixes.extend_from_slice(add);
        read_pool(&mut p, Bounds::default(), false)?;
        Ok(core.store.update_subnetpool(&p).await?)
    })
    .await
}

/// `remove_prefixes`: the pool without `remove` (refused where a subnet holds a part of it).
pub async fn remove_prefixes(
    core: &Core,
    who: &Identity,
    id: &str,
    remove: &[IpNet],
) -> Result<SubnetPool, DomainError> {
    super::with_retry(None, || async {
        let mut p = load_visible(core, who, id).await?;
        policy::enforce(who, "remove_prefixes", &Target::owned_by(&p.project_id))?;
        if !ipam::intersects(&p.prefixes, remove) {
            return Ok(p);
        }
        p.prefixes = ipam::subtract(&p.prefixes, remove);
        Ok(core.store.update_subnetpool(&p).await?)
    })
    .await
}

/// Delete a pool the caller owns (refused while a subnet holds a prefix of it).
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    let p = load_visible(core, who, id).await?;
    policy::enforce(who, "delete_subnetpool", &Target::owned_by(&p.project_id))?;
    Ok(core.store.delete_subnetpool(id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(prefixes: &[&str]) -> SubnetPool {
        SubnetPool {
            id: "p".into(),
            project_id: "a".into(),
            name: "n".into(),
            description: String::new(),
            ip_version: 0,
            prefixes: prefixes.iter().map(|s| s.parse().unwrap()).collect(),
            default_prefixlen: 0,
            min_prefixlen: 0,
            max_prefixlen: 0,
            default_quota: None,
            is_default: false,
            shared: false,
            address_scope_id: None,
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 1,
        }
    }

    #[test]
    fn the_reader_sets_neutrons_defaults_and_checks_bounds() {
        let mut p = pool(&["10.0.1.0/24", "10.0.0.0/24"]);
        read_pool(&mut p, Bounds::default(), true).unwrap();
        assert_eq!(
            (
                p.ip_version,
                p.min_prefixlen,
                p.default_prefixlen,
                p.max_prefixlen
            ),
            (4, 8, 8, 32)
        );
        assert_eq!(p.prefixes, vec!["10.0.0.0/23".parse::<IpNet>().unwrap()]);
        let mut p = pool(&["fd00::/48"]);
        read_pool(
            &mut p,
            Bounds {
                default: Some(64),
                ..Bounds::default()
            },
            true,
        )
        .unwrap();
        assert_eq!(
            (p.ip_version, p.min_prefixlen, p.max_prefixlen),
            (6, 64, 128)
        );
        for (prefixes, b, kind, text) in [
            (
                vec![],
                Bounds::default(),
                "EmptySubnetPoolPrefixList",
                "Empty",
            ),
            (
                vec!["10.0.0.0/8", "fd00::/8"],
                Bounds::default(),
                "PrefixVersionMismatch",
                "mix",
            ),
            (
                vec!["10.0.0.0/8"],
                Bounds {
                    min: Some(24),
                    max: Some(16),
                    default: None,
                },
                "IllegalSubnetPoolPrefixBounds",
                "min_prefixlen=24, max_prefixlen=16",
            ),
            (
                vec!["10.0.0.0/8"],
                Bounds {
                    max: Some(33),
                    ..Bounds::default()
                },
                "IllegalSubnetPoolPrefixBounds",
                "max_prefixlen=33, ip_version_max=32",
            ),
            (
                vec!["10.0.0.0/8"],
                Bounds {
                    min: Some(16),
                    default: Some(12),
                    max: None,
                },
                "IllegalSubnetPoolPrefixBounds",
                "default_prefixlen=12, min_prefixlen=16",
            ),
        ] {
            let mut p = pool(&prefixes);
            let e = read_pool(&mut p, b, true).unwrap_err();
            assert_eq!(e.kind, kind, "{e:?}");
            assert!(e.message.contains(text), "{e:?}");
        }
        // An update keeps the pool's bounds and may not change its IP version.
        let mut p = pool(&["10.0.0.0/16"]);
        read_pool(
            &mut p,
            Bounds {
                default: Some(24),
                ..Bounds::default()
            },
            true,
        )
        .unwrap();
        let e = read_pool(
            &mut p,
            Bounds {
                max: Some(20),
                ..Bounds::default()
            },
            false,
        )
        .unwrap_err();
        assert!(
            e.message.contains("default_prefixlen=24, max_prefixlen=20"),
            "{e:?}"
        );
        p.prefixes = vec!["fd00::/64".parse().unwrap()];
        assert!(read_pool(&mut p, Bounds::default(), false).is_err());
    }
}
