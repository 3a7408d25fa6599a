//! Address scopes and subnet pools, and the allocation of a subnet's CIDR from its pool.
//!
//! The rules that must hold under concurrency are checked inside the write's transaction,
//! after a lock on the row they depend on (an update of the row to itself, which PostgreSQL
//! holds until commit and SQLite's single writer gives for free):
//! - a subnet's CIDR is chosen under its pool's row lock, so two allocations from one pool
//!   never overlap (the later one re-reads what the earlier one committed);
//! - a pool's prefixes are checked against the other pools of its address scope under the
//!   scope's row lock, so two pools of one scope never overlap;
//! - "one default pool per IP version" is a partial unique index.

use ipnet::IpNet;
use sqlx::any::AnyRow;

use super::{
    col_b, col_i, col_oi, col_os, col_s, now, retrying, AddressScope, PrefixRequest, Scope, Store,
    Subnet, SubnetPool, WriteTx,
};
use crate::error::{DomainError, ErrorClass, StoreError};
use crate::ipam;

/// Migration 8: address scopes, subnet pools (one default per IP version, a partial unique
/// index) and the pool a subnet was allocated from (a pool with subnets cannot be deleted:
/// the foreign key backs the check).
pub const SUBNETPOOLS_MIGRATION: &str = r#"
CREATE TABLE address_scopes (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    ip_version BIGINT NOT NULL,
    shared BIGINT NOT NULL DEFAULT 0,
    revision_number BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX address_scopes_project ON address_scopes (project_id);
CREATE TABLE subnetpools (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    ip_version BIGINT NOT NULL,
    prefixes TEXT NOT NULL,
    default_prefixlen BIGINT NOT NULL,
    min_prefixlen BIGINT NOT NULL,
    max_prefixlen BIGINT NOT NULL,
    default_quota BIGINT,
    is_default BIGINT NOT NULL DEFAULT 0,
    shared BIGINT NOT NULL DEFAULT 0,
    address_scope_id TEXT REFERENCES address_scopes (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision_number BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX subnetpools_project ON subnetpools (project_id);
CREATE INDEX subnetpools_address_scope ON subnetpools (address_scope_id);
CREATE UNIQUE INDEX subnetpools_one_default ON subnetpools (ip_version) WHERE is_default = 1;
ALTER TABLE subnets ADD COLUMN subnetpool_id TEXT REFERENCES subnetpools (id);
CREATE INDEX subnets_subnetpool ON subnets (subnetpool_id)
"#;

/// 404 for an address scope.
pub fn scope_not_found(id: &str) -> DomainError {
    DomainError::not_found("Address scope", "AddressScopeNotFound", id)
}

/// 404 for a subnet pool.
pub fn pool_not_found(id: &str) -> DomainError {
    DomainError::not_found("Subnet pool", "SubnetPoolNotFound", id)
}

/// Neutron's error when a second default pool of an IP version is asked for.
pub fn default_exists() -> DomainError {
    DomainError::invalid_input(
        "is_default",
        "A default subnetpool for this IP family has already been set. Only one default may exist per IP family",
    )
}

/// Neutron's `SubnetAllocationError` (a 500 in Neutron, where the exception has no HTTP
/// class; crosspod answers 409 as for every exhausted pool, and changes nothing).
pub fn allocation_error(reason: impl std::fmt::Display) -> DomainError {
    DomainError::conflict(
        "SubnetAllocationError",
        format!("Failed to allocate subnet: {reason}."),
    )
}

/// A 400 with Neutron's exception name.
pub fn bad(kind: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::new(ErrorClass::BadRequest, kind, message)
}

/// Neutron's `BadRequest` for a subnet asking a pool of the other IP version.
pub fn version_mismatch(asked: i64, pool: i64) -> DomainError {
    bad(
        "BadRequest",
        format!(
            "Bad subnets request: Cannot allocate IPv{asked} subnet from IPv{pool} subnet pool."
        ),
    )
}

fn scope_affinity_error() -> DomainError {
    bad(
        "NetworkAddressScopeAffinityError",
        "Subnets of the same address family hosted on the same network must all participate in the same address scope.",
    )
}

fn scope_from_row(r: &AnyRow) -> Result<AddressScope, StoreError> {
    Ok(AddressScope {
        id: col_s(r, "id")?,
        project_id: col_s(r, "project_id")?,
        name: col_s(r, "name")?,
        ip_version: col_i(r, "ip_version")?,
        shared: col_b(r, "shared")?,
        revision_number: col_i(r, "revision_number")?,
    })
}

fn prefixes_json(p: &[IpNet]) -> String {
    let v: Vec<String> = p.iter().map(IpNet::to_string).collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

fn pool_from_row(r: &AnyRow) -> Result<SubnetPool, StoreError> {
    let id = col_s(r, "id")?;
    let corrupt = |column: &'static str, detail: String| StoreError::Corrupt {
        column,
        object: format!("subnet pool {id}"),
        detail,
    };
    let texts: Vec<String> = super::col_json(r, "prefixes")?;
    let prefixes = texts
        .iter()
        .map(|t| t.parse::<IpNet>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt("prefixes", e.to_string()))?;
    let len = |column: &'static str| -> Result<u8, StoreError> {
        let v = col_i(r, column)?;
        u8::try_from(v).map_err(|_| corrupt(column, format!("{v} is not a prefix length")))
    };
    Ok(SubnetPool {
        project_id: col_s(r, "project_id")?,
        name: col_s(r, "name")?,
        description: col_s(r, "description")?,
        ip_version: col_i(r, "ip_version")?,
        prefixes,
        default_prefixlen: len("default_prefixlen")?,
        min_prefixlen: len("min_prefixlen")?,
        max_prefixlen: len("max_prefixlen")?,
        default_quota: col_oi(r, "default_quota")?,
        is_default: col_b(r, "is_default")?,
        shared: col_b(r, "shared")?,
        address_scope_id: col_os(r, "address_scope_id")?,
        created_at: col_s(r, "created_at")?,
        updated_at: col_s(r, "updated_at")?,
        revision_number: col_i(r, "revision_number")?,
        id,
    })
}

/// Lock `table`'s row `id` until commit (an update of the row to itself); false when there
/// is no such row.
async fn lock_row(w: &mut WriteTx<'_>, table: &str, id: &str) -> Result<bool, StoreError> {
    let sql = format!("UPDATE {table} SET revision_number = revision_number WHERE id = $1");
    let r = sqlx::query(&sql)
        .bind(id.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("locking {table} {id}")))?;
    Ok(r.rows_affected() == 1)
}

/// CIDRs of the subnets allocated from pool `id`, with their projects.
async fn allocations(w: &mut WriteTx<'_>, id: &str) -> Result<Vec<(IpNet, String)>, StoreError> {
    let rows = sqlx::query("SELECT cidr, project_id FROM subnets WHERE subnetpool_id = $1")
        .bind(id.to_string())
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("reading the subnets of pool {id}")))?;
    rows.iter()
        .map(|r| {
            let cidr = col_s(r, "cidr")?;
            let net = cidr.parse::<IpNet>().map_err(|e| StoreError::Corrupt {
                column: "cidr",
                object: format!("a subnet of pool {id}"),
                detail: e.to_string(),
            })?;
            Ok((net, col_s(r, "project_id")?))
        })
        .collect()
}

/// The pool's address scope rules, under the scope's row lock: the scope exists, is of the
/// pool's IP version, and no other pool of it overlaps the pool's prefixes.
async fn check_scope(w: &mut WriteTx<'_>, p: &SubnetPool) -> Result<(), StoreError> {
    let Some(scope_id) = &p.address_scope_id else {
        return Ok(());
    };
    if !lock_row(w, "address_scopes", scope_id).await? {
        return Err(scope_not_found(scope_id).into());
    }
    let row = sqlx::query("SELECT ip_version FROM address_scopes WHERE id = $1")
        .bind(scope_id.clone())
        .fetch_one(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("reading address scope {scope_id}")))?;
    let version = col_i(&row, "ip_version")?;
    if version != p.ip_version {
        return Err(bad(
            "IllegalSubnetPoolIpVersionAssociationToAddressScope",
            format!(
                "Illegal subnetpool association: subnetpool {} cannot associate with address scope {scope_id} because subnetpool ip_version is not {version}.",
                p.id
            ),
        )
        .into());
    }
    let rows = sqlx::query("SELECT * FROM subnetpools WHERE address_scope_id = $1 AND id <> $2")
        .bind(scope_id.clone())
        .bind(p.id.clone())
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!(
            "reading the pools of address scope {scope_id}"
        )))?;
    for r in &rows {
        let other = pool_from_row(r)?;
        if ipam::intersects(&other.prefixes, &p.prefixes) {
            tracing::info!(pool = %p.id, other = %other.id, scope = %scope_id, "prefixes overlap in an address scope");
            return Err(DomainError::conflict(
                "AddressScopePrefixConflict",
                "Failed to associate address scope: subnetpools within an address scope must have unique prefixes.",
            )
            .into());
        }
    }
    Ok(())
}

/// "One default pool per IP version", with Neutron's message (the index backs it up).
async fn check_default(w: &mut WriteTx<'_>, p: &SubnetPool) -> Result<(), StoreError> {
    if !p.is_default {
        return Ok(());
    }
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM subnetpools WHERE is_default = 1 AND ip_version = $1 AND id <> $2",
    )
    .bind(p.ip_version)
    .bind(p.id.clone())
    .fetch_one(&mut *w.tx)
    .await
    .map_err(StoreError::db("reading the default subnet pools"))?;
    if col_i(&row, "n")? > 0 {
        return Err(default_exists().into());
    }
    Ok(())
}

/// Neutron's rules for one more subnet on a network (`_validate_network_subnetpools`): the
/// subnets of one IP version on a network come from one pool, or, when their pools have an
/// address scope, from pools of that one scope. `existing` are the network's subnets with
/// their pools' address scopes.
pub fn check_network_affinity(
    new: &Subnet,
    new_scope: Option<&str>,
    existing: &[(Subnet, Option<String>)],
) -> Result<(), DomainError> {
    let network_scope = existing
        .iter()
        .filter(|(s, _)| s.ip_version == new.ip_version)
        .find_map(|(_, scope)| scope.as_deref());
    let scope_error = scope_affinity_error;
    let pool_error = || {
        bad(
            "NetworkSubnetPoolAffinityError",
            "Subnets hosted on the same network must be allocated from the same subnet pool.",
        )
    };
    if let (Some(scope), Some(_)) = (network_scope, &new.subnetpool_id) {
        if new_scope != Some(scope) {
            return Err(scope_error());
        }
    }
    for (s, _) in existing {
        if s.ip_version != new.ip_version {
            continue;
        }
        let mismatch = match &new.subnetpool_id {
            Some(pool) => s.subnetpool_id.as_ref() != Some(pool) && network_scope.is_none(),
            None => s.subnetpool_id.is_some(),
        };
        if mismatch {
            return Err(pool_error());
        }
    }
    Ok(())
}

/// Inside a subnet's create transaction (after its network's lock): lock its pool, check
/// the pool's rules for it (prefix bounds, the project's quota of the pool) and, for
/// `Some(req)`, choose its CIDR, gateway and allocation pools; for `None`, check that its own
/// CIDR is free in the pool. Returns the pool's address scope.
pub(crate) async fn allocate_in(
    w: &mut WriteTx<'_>,
    s: &mut Subnet,
    req: Option<PrefixRequest>,
) -> Result<Option<String>, StoreError> {
    let Some(pool_id) = s.subnetpool_id.clone() else {
        return Ok(None);
    };
    if !lock_row(w, "subnetpools", &pool_id).await? {
        return Err(pool_not_found(&pool_id).into());
    }
    let row = sqlx::query("SELECT * FROM subnetpools WHERE id = $1")
        .bind(pool_id.clone())
        .fetch_one(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("reading subnet pool {pool_id}")))?;
    let pool = pool_from_row(&row)?;
    if s.ip_version != pool.ip_version {
        return Err(version_mismatch(s.ip_version, pool.ip_version).into());
    }
    let prefixlen = req.map(|r| r.prefixlen).unwrap_or(s.cidr.prefix_len());
    if prefixlen > pool.max_prefixlen {
        return Err(bad(
            "MaxPrefixSubnetAllocationError",
            format!(
                "Unable to allocate subnet with prefix length {prefixlen}, maximum allowed prefix is {}.",
                pool.max_prefixlen
            ),
        )
        .into());
    }
    if prefixlen < pool.min_prefixlen {
        return Err(bad(
            "MinPrefixSubnetAllocationError",
            format!(
                "Unable to allocate subnet with prefix length {prefixlen}, minimum allowed prefix is {}.",
                pool.min_prefixlen
            ),
        )
        .into());
    }
    let taken = allocations(w, &pool_id).await?;
    if let Some(quota) = pool.default_quota.filter(|q| *q > 0) {
        let used: f64 = taken
            .iter()
            .filter(|(_, project)| *project == s.project_id)
            .map(|(net, _)| ipam::quota_units(net))
            .sum();
        let want = ipam::prefix_quota_units(pool.ip_version == 4, prefixlen);
        if used + want > quota as f64 {
            tracing::info!(pool = %pool_id, project = %s.project_id, used, want, quota, "subnet pool quota exceeded");
            return Err(DomainError::conflict(
                "SubnetPoolQuotaExceeded",
                "Per-project subnet pool prefix quota exceeded.",
            )
            .into());
        }
    }
    let taken: Vec<IpNet> = taken.into_iter().map(|(n, _)| n).collect();
    let free = ipam::subtract(&pool.prefixes, &taken);
    match req {
        Some(req) => {
            let Some(cidr) = ipam::pick_prefix(&free, req.prefixlen) else {
                tracing::info!(pool = %pool_id, prefixlen = req.prefixlen, "subnet pool exhausted");
                return Err(allocation_error(format!(
                    "Insufficient prefix space to allocate subnet size /{}",
                    req.prefixlen
                ))
                .into());
            };
            let gateway = req.gateway.then(|| ipam::default_gateway(&cidr));
            s.cidr = cidr;
            s.gateway_ip = gateway;
            s.allocation_pools = ipam::default_pools(&cidr, gateway);
        }
        None => {
            if !free.iter().any(|b| b.contains(&s.cidr)) {
                return Err(allocation_error(
                    "Cannot allocate requested subnet from the available set of prefixes",
                )
                .into());
            }
        }
    }
    Ok(pool.address_scope_id)
}

/// Turns the partial unique index's violation into Neutron's "one default" error.
fn default_violation(op: String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        let err = StoreError::db(op)(e);
        if err.is_unique_violation() {
            default_exists().into()
        } else {
            err
        }
    }
}

impl Store {
    /// Create an address scope.
    pub async fn create_address_scope(&self, a: &AddressScope) -> Result<AddressScope, StoreError> {
        let mut w = self.begin_write().await?;
        sqlx::query("INSERT INTO address_scopes (id, project_id, name, ip_version, shared, revision_number) VALUES ($1, $2, $3, $4, $5, 1)")
            .bind(a.id.clone())
            .bind(a.project_id.clone())
            .bind(a.name.clone())
            .bind(a.ip_version)
            .bind(i64::from(a.shared))
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("inserting address scope {}", a.id)))?;
        w.commit().await?;
        tracing::info!(scope = %a.id, project = %a.project_id, ip_version = a.ip_version, "address scope created");
        self.get_address_scope(&a.id).await
    }

    /// One address scope (no visibility check).
    pub async fn get_address_scope(&self, id: &str) -> Result<AddressScope, StoreError> {
        let row = sqlx::query("SELECT * FROM address_scopes WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading address scope {id}")))?;
        match row {
            Some(r) => scope_from_row(&r),
            None => Err(scope_not_found(id).into()),
        }
    }

    /// Address scopes visible in `scope` (own and shared ones for a project).
    pub async fn list_address_scopes(
        &self,
        scope: &Scope,
    ) -> Result<Vec<AddressScope>, StoreError> {
        let rows = match &scope.project_id {
            Some(p) => {
                sqlx::query("SELECT * FROM address_scopes WHERE project_id = $1 OR shared = 1")
                    .bind(p.clone())
                    .fetch_all(self.pool())
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM address_scopes")
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(StoreError::db("listing address scopes"))?;
        rows.iter().map(scope_from_row).collect()
    }

    /// Write the name and sharing of `a`, conditioned on its revision.
    pub async fn update_address_scope(&self, a: &AddressScope) -> Result<AddressScope, StoreError> {
        let mut w = self.begin_write().await?;
        let r = sqlx::query("UPDATE address_scopes SET name = $1, shared = $2, revision_number = revision_number + 1 WHERE id = $3 AND revision_number = $4")
            .bind(a.name.clone())
            .bind(i64::from(a.shared))
            .bind(a.id.clone())
            .bind(a.revision_number)
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("updating address scope {}", a.id)))?;
        if r.rows_affected() == 0 {
            return Err(super::missed_update(
                &mut w,
                "address_scopes",
                &a.id,
                scope_not_found(&a.id),
            )
            .await);
        }
        w.commit().await?;
        self.get_address_scope(&a.id).await
    }

    /// Delete an address scope; 409 `AddressScopeInUse` while a pool is in it.
    pub async fn delete_address_scope(&self, id: &str) -> Result<(), StoreError> {
        let in_use = || {
            DomainError::conflict(
                "AddressScopeInUse",
                format!("Unable to complete operation on address scope {id}. There are one or more subnet pools in use on the address scope."),
            )
        };
        self.delete_unreferenced(
            ("address_scopes", "address scope"),
            ("subnetpools", "address_scope_id", "pools"),
            id,
            || scope_not_found(id),
            in_use,
        )
        .await?;
        tracing::info!(scope = id, "address scope deleted");
        Ok(())
    }

    /// Create a subnet pool (validated by the caller: prefixes compact and of one version,
    /// prefix bounds), checking its address scope and the one default per IP version.
    pub async fn create_subnetpool(&self, p: &SubnetPool) -> Result<SubnetPool, StoreError> {
        self.create_subnetpool_tagged(p, &[]).await
    }

    /// [`Store::create_subnetpool`] with its tags, in the same transaction.
    pub async fn create_subnetpool_tagged(
        &self,
        p: &SubnetPool,
        tags: &[String],
    ) -> Result<SubnetPool, StoreError> {
        retrying!(self.create_subnetpool_once(p, tags))
    }

    async fn create_subnetpool_once(
        &self,
        p: &SubnetPool,
        tags: &[String],
    ) -> Result<SubnetPool, StoreError> {
        let mut w = self.begin_write().await?;
        check_scope(&mut w, p).await?;
        check_default(&mut w, p).await?;
        let ts = now();
        sqlx::query("INSERT INTO subnetpools (id, project_id, name, description, ip_version, prefixes, default_prefixlen, min_prefixlen, max_prefixlen, default_quota, is_default, shared, address_scope_id, created_at, updated_at, revision_number) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, 1)")
            .bind(p.id.clone())
            .bind(p.project_id.clone())
            .bind(p.name.clone())
            .bind(p.description.clone())
            .bind(p.ip_version)
            .bind(prefixes_json(&p.prefixes))
            .bind(i64::from(p.default_prefixlen))
            .bind(i64::from(p.min_prefixlen))
            .bind(i64::from(p.max_prefixlen))
            .bind(p.default_quota)
            .bind(i64::from(p.is_default))
            .bind(i64::from(p.shared))
            .bind(p.address_scope_id.clone())
            .bind(ts)
            .execute(&mut *w.tx)
            .await
            .map_err(default_violation(format!("inserting subnet pool {}", p.id)))?;
        super::tags::insert_tags(&mut w, super::Tagged::SubnetPool, &p.id, tags).await?;
        w.commit().await?;
        tracing::info!(pool = %p.id, project = %p.project_id, prefixes = ?p.prefixes, tags = tags.len(), "subnet pool created");
        self.get_subnetpool(&p.id).await
    }

    /// One subnet pool (no visibility check).
    pub async fn get_subnetpool(&self, id: &str) -> Result<SubnetPool, StoreError> {
        let row = sqlx::query("SELECT * FROM subnetpools WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading subnet pool {id}")))?;
        match row {
            Some(r) => pool_from_row(&r),
            None => Err(pool_not_found(id).into()),
        }
    }

    /// Subnet pools visible in `scope` (own and shared ones for a project).
    pub async fn list_subnetpools(&self, scope: &Scope) -> Result<Vec<SubnetPool>, StoreError> {
        let rows = match &scope.project_id {
            Some(p) => {
                sqlx::query("SELECT * FROM subnetpools WHERE project_id = $1 OR shared = 1")
                    .bind(p.clone())
                    .fetch_all(self.pool())
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM subnetpools")
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(StoreError::db("listing subnet pools"))?;
        rows.iter().map(pool_from_row).collect()
    }

    /// The default pool of `ip_version`, if one is set.
    pub async fn default_subnetpool(
        &self,
        ip_version: i64,
    ) -> Result<Option<SubnetPool>, StoreError> {
        let row = sqlx::query("SELECT * FROM subnetpools WHERE is_default = 1 AND ip_version = $1")
            .bind(ip_version)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db("reading the default subnet pool"))?;
        row.as_ref().map(pool_from_row).transpose()
    }

    /// Write `p` (conditioned on its revision): the subnets allocated from it must stay
    /// inside its prefixes, its address scope's rules hold, and one default per IP version.
    pub async fn update_subnetpool(&self, p: &SubnetPool) -> Result<SubnetPool, StoreError> {
        retrying!(self.update_subnetpool_once(p))
    }

    async fn update_subnetpool_once(&self, p: &SubnetPool) -> Result<SubnetPool, StoreError> {
        let mut w = self.begin_write().await?;
        let old_scope = sqlx::query("SELECT address_scope_id FROM subnetpools WHERE id = $1")
            .bind(p.id.clone())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("reading subnet pool {}", p.id)))?;
        let old_scope = match old_scope {
            Some(r) => col_os(&r, "address_scope_id")?,
            None => return Err(pool_not_found(&p.id).into()),
        };
        // The write first: it locks the row, so what is checked below cannot change under it.
        let r = sqlx::query("UPDATE subnetpools SET name = $1, description = $2, prefixes = $3, default_prefixlen = $4, min_prefixlen = $5, max_prefixlen = $6, default_quota = $7, is_default = $8, address_scope_id = $9, updated_at = $10, revision_number = revision_number + 1 WHERE id = $11 AND revision_number = $12")
            .bind(p.name.clone())
            .bind(p.description.clone())
            .bind(prefixes_json(&p.prefixes))
            .bind(i64::from(p.default_prefixlen))
            .bind(i64::from(p.min_prefixlen))
            .bind(i64::from(p.max_prefixlen))
            .bind(p.default_quota)
            .bind(i64::from(p.is_default))
            .bind(p.address_scope_id.clone())
            .bind(now())
            .bind(p.id.clone())
            .bind(p.revision_number)
            .execute(&mut *w.tx)
            .await
            .map_err(default_violation(format!("updating subnet pool {}", p.id)))?;
        if r.rows_affected() == 0 {
            return Err(
                super::missed_update(&mut w, "subnetpools", &p.id, pool_not_found(&p.id)).await,
            );
        }
        let taken: Vec<IpNet> = allocations(&mut w, &p.id)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if !ipam::is_subset(&taken, &p.prefixes) {
            return Err(bad(
                "IllegalSubnetPoolPrefixUpdate",
                "Illegal update to prefixes: One or more the prefixes to be removed is in use by a subnet.",
            )
            .into());
        }
        check_scope(&mut w, p).await?;
        check_default(&mut w, p).await?;
        if old_scope != p.address_scope_id {
            self.check_rescope(&mut w, p).await?;
        }
        w.commit().await?;
        tracing::info!(pool = %p.id, prefixes = ?p.prefixes, "subnet pool updated");
        self.get_subnetpool(&p.id).await
    }

    /// Neutron's `_check_subnetpool_address_scope_network_affinity`: moving a pool to another
    /// scope must not leave a network with subnets of one IP version in two scopes.
    async fn check_rescope(&self, w: &mut WriteTx<'_>, p: &SubnetPool) -> Result<(), StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM subnets s WHERE s.ip_version = $1 AND (s.subnetpool_id IS NULL OR s.subnetpool_id <> $2) AND s.network_id IN (SELECT network_id FROM subnets WHERE subnetpool_id = $2)")
            .bind(p.ip_version)
            .bind(p.id.clone())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("checking the networks of pool {}", p.id)))?;
        if col_i(&row, "n")? > 0 {
            return Err(scope_affinity_error().into());
        }
        Ok(())
    }

    /// Delete a subnet pool; refused (Neutron's 400 `SubnetPoolDeleteError`) while a subnet
    /// holds a prefix of it.
    pub async fn delete_subnetpool(&self, id: &str) -> Result<(), StoreError> {
        let in_use = || {
            DomainError::new(
                ErrorClass::BadRequest,
                "SubnetPoolDeleteError",
                "Unable to delete subnet pool: Subnet pool has existing allocations.",
            )
        };
        self.delete_unreferenced(
            ("subnetpools", "subnet pool"),
            ("subnets", "subnetpool_id", "subnets"),
            id,
            || pool_not_found(id),
            in_use,
        )
        .await?;
        tracing::info!(pool = id, "subnet pool deleted");
        Ok(())
    }
    /// Delete row `id` of `table` (named `what` in errors) unless a row of `user` still names
    /// it in `column`: under the row's lock, `in_use()` when one does, and also when a
    /// concurrent insert makes the delete hit the foreign key; `not_found()` when it is gone.
    async fn delete_unreferenced(
        &self,
        (table, what): (&str, &str),
        (user, column, users): (&str, &str, &str),
        id: &str,
        not_found: impl Fn() -> DomainError,
        in_use: impl Fn() -> DomainError,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        if !lock_row(&mut w, table, id).await? {
            return Err(not_found().into());
        }
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM {user} WHERE {column} = $1"
        ))
        .bind(id.to_string())
        .fetch_one(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!(
            "counting the {users} of {what} {id}"
        )))?;
        if col_i(&row, "n")? > 0 {
            return Err(in_use().into());
        }
        sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(|e| {
                let err = StoreError::db(format!("deleting {what} {id}"))(e);
                if err.is_foreign_key_violation() {
                    in_use().into()
                } else {
                    err
                }
            })?;
        w.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(ip_version: i64, pool: Option<&str>) -> Subnet {
        let cidr: IpNet = if ip_version == 4 {
            "10.0.0.0/24".parse().unwrap()
        } else {
            "fd00::/64".parse().unwrap()
        };
        Subnet {
            id: "s".into(),
            project_id: "p".into(),
            network_id: "n".into(),
            name: String::new(),
            description: String::new(),
            ip_version,
            cidr,
            gateway_ip: None,
            allocation_pools: Vec::new(),
            enable_dhcp: false,
            dns_nameservers: Vec::new(),
            host_routes: Vec::new(),
            subnetpool_id: pool.map(str::to_string),
            ipv6_ra_mode: None,
            ipv6_address_mode: None,
            created_at: String::new(),
            updated_at: String::new(),
            revision_number: 1,
        }
    }

    #[test]
    fn one_pool_or_one_scope_per_family_on_a_network() {
        let from_a = (subnet(4, Some("a")), None);
        let plain = (subnet(4, None), None);
        let v6_plain = (subnet(6, None), None);
        // Same pool, or the first subnet, or another family: fine.
        assert!(
            check_network_affinity(&subnet(4, Some("a")), None, std::slice::from_ref(&from_a))
                .is_ok()
        );
        assert!(check_network_affinity(&subnet(4, Some("b")), None, &[]).is_ok());
        assert!(check_network_affinity(&subnet(4, Some("b")), None, &[v6_plain]).is_ok());
        // Another pool, or no pool next to a pool's subnet, or a pool next to a plain one.
        for (new, existing) in [
            (subnet(4, Some("b")), from_a.clone()),
            (subnet(4, None), from_a.clone()),
            (subnet(4, Some("a")), plain),
        ] {
            let e = check_network_affinity(&new, None, &[existing]).unwrap_err();
            assert!(e.message.contains("same subnet pool"), "{e:?}");
        }
        // With scopes: any pool of the network's scope, none of another.
        let scoped = (subnet(4, Some("a")), Some("S".to_string()));
        assert!(check_network_affinity(
            &subnet(4, Some("b")),
            Some("S"),
            std::slice::from_ref(&scoped)
        )
        .is_ok());
        let e = check_network_affinity(
            &subnet(4, Some("b")),
            Some("T"),
            std::slice::from_ref(&scoped),
        )
        .unwrap_err();
        assert!(e.message.contains("same address scope"), "{e:?}");
        assert!(check_network_affinity(&subnet(4, Some("b")), None, &[scoped]).is_err());
    }
}
