//! Quotas: per-project limits on tenant-owned networks, subnets, ports, routers and floating
//! IPs, enforced inside the create's own transaction so that two controllers on one database
//! cannot both pass the edge.
//!
//! On PostgreSQL every check first takes a transaction-scoped advisory lock per
//! (project, resource), so concurrent creates of one project's ports serialise on it and each
//! counts what the previous one committed (READ COMMITTED reads a fresh snapshot per
//! statement). On SQLite writers are already serialised (one writer per process; another
//! process's commit between our count and our insert fails ours with SQLITE_BUSY_SNAPSHOT,
//! which the create retries).
//!
//! Objects crosspod makes for itself never count and are never refused: anything of the
//! bridge project, ports without a project (gateway and floating-IP ports), and the leg and
//! bridge-IP ports of router instances.

use super::{col_i, col_s, Backend, Store, WriteTx};
use crate::error::{DomainError, StoreError};
use crate::naming::{BRIDGE_OWNER, OWNER_BRIDGE_IP, OWNER_DHCP, OWNER_LEG};

/// Migration 5: the limits table, "one floating IP per fixed IP" as a constraint (after
/// disassociating any duplicates an older version let through, keeping the lowest id), and
/// the indexes the quota counts read (a port count reads `(project_id, device_owner)` only).
pub const QUOTAS_MIGRATION: &str = r#"
CREATE TABLE quotas (
    project_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, resource)
);
UPDATE floatingips SET port_id = NULL, fixed_ip_address = NULL
    WHERE port_id IS NOT NULL AND id NOT IN (
        SELECT MIN(id) FROM floatingips WHERE port_id IS NOT NULL GROUP BY port_id, fixed_ip_address
    );
CREATE UNIQUE INDEX floatingips_one_per_fixed_ip ON floatingips (port_id, fixed_ip_address) WHERE port_id IS NOT NULL;
CREATE INDEX ports_project_owner ON ports (project_id, device_owner);
CREATE INDEX subnets_project ON subnets (project_id);
CREATE INDEX floatingips_project ON floatingips (project_id)
"#;

/// The name of the unique index behind "one floating IP per fixed IP".
pub(crate) const FIP_FIXED_IP_INDEX: &str = "floatingips_one_per_fixed_ip";

/// A resource with a quota, named as Neutron's quota API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaResource {
    /// Networks.
    Network,
    /// Subnets.
    Subnet,
    /// Ports (crosspod's own leg and bridge-IP ports excluded).
    Port,
    /// Routers.
    Router,
    /// Floating IPs.
    FloatingIp,
    /// Security groups (the default group is made regardless).
    SecurityGroup,
    /// Security group rules.
    SecurityGroupRule,
}

impl QuotaResource {
    /// Every resource, in the order Neutron's answers list them.
    pub const ALL: [QuotaResource; 7] = [
        QuotaResource::Network,
        QuotaResource::Subnet,
        QuotaResource::Port,
        QuotaResource::Router,
        QuotaResource::FloatingIp,
        QuotaResource::SecurityGroup,
        QuotaResource::SecurityGroupRule,
    ];

    /// Neutron's name (`network`, ..., `floatingip`).
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaResource::Network => "network",
            QuotaResource::Subnet => "subnet",
            QuotaResource::Port => "port",
            QuotaResource::Router => "router",
            QuotaResource::FloatingIp => "floatingip",
            QuotaResource::SecurityGroup => "security_group",
            QuotaResource::SecurityGroupRule => "security_group_rule",
        }
    }

    /// Parse Neutron's name.
    pub fn parse(s: &str) -> Option<QuotaResource> {
        QuotaResource::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Counts the project's objects of this kind that the quota applies to.
    fn count_sql(self) -> &'static str {
        match self {
            QuotaResource::Network => "SELECT COUNT(*) AS n FROM networks WHERE project_id = $1",
            QuotaResource::Subnet => "SELECT COUNT(*) AS n FROM subnets WHERE project_id = $1",
            QuotaResource::Port => "SELECT COUNT(*) AS n FROM ports WHERE project_id = $1 AND device_owner <> 'network:router_leg' AND device_owner <> 'network:router_bridge' AND device_owner <> 'network:dhcp'",
            QuotaResource::Router => "SELECT COUNT(*) AS n FROM routers WHERE project_id = $1",
            QuotaResource::FloatingIp => {
                "SELECT COUNT(*) AS n FROM floatingips WHERE project_id = $1"
            }
            QuotaResource::SecurityGroup => {
                "SELECT COUNT(*) AS n FROM security_groups WHERE project_id = $1"
            }
            QuotaResource::SecurityGroupRule => {
                "SELECT COUNT(*) AS n FROM security_group_rules WHERE project_id = $1"
            }
        }
    }
}

impl std::fmt::Display for QuotaResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits of projects without their own (`-1` = unlimited); Neutron's defaults unless
/// configured (`--quota-network`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDefaults {
    /// Networks per project.
    pub network: i64,
    /// Subnets per project.
    pub subnet: i64,
    /// Ports per project.
    pub port: i64,
    /// Routers per project.
    pub router: i64,
    /// Floating IPs per project.
    pub floatingip: i64,
    /// Security groups per project.
    pub security_group: i64,
    /// Security group rules per project.
    pub security_group_rule: i64,
}

impl Default for QuotaDefaults {
    fn default() -> Self {
        QuotaDefaults {
            network: 100,
            subnet: 100,
            port: 500,
            router: 10,
            floatingip: 50,
            security_group: 10,
            security_group_rule: 100,
        }
    }
}

impl QuotaDefaults {
    /// The default limit of `r`.
    pub fn get(&self, r: QuotaResource) -> i64 {
        match r {
            QuotaResource::Network => self.network,
            QuotaResource::Subnet => self.subnet,
            QuotaResource::Port => self.port,
            QuotaResource::Router => self.router,
            QuotaResource::FloatingIp => self.floatingip,
            QuotaResource::SecurityGroup => self.security_group,
            QuotaResource::SecurityGroupRule => self.security_group_rule,
        }
    }

    /// Every resource with its default limit.
    pub fn all(&self) -> Vec<(QuotaResource, i64)> {
        QuotaResource::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .collect()
    }
}

/// Whether an object of `project` (a port: with `device_owner`) is crosspod's own and so
/// neither counted nor refused.
pub fn is_internal(project: &str, device_owner: Option<&str>) -> bool {
    project.is_empty()
        || project == BRIDGE_OWNER
        || matches!(
            device_owner,
            Some(OWNER_LEG) | Some(OWNER_BRIDGE_IP) | Some(OWNER_DHCP)
        )
}

/// The advisory-lock key of (project, resource): stable across processes and versions.
fn lock_key(project: &str, r: QuotaResource) -> i64 {
    wire::names::stable_hash(&["crosspod-quota", project, r.as_str()]) as i64
}

/// Refuse one more `r` for `project` when it would exceed the project's limit (409
/// `OverQuota`). Call it first in the create's transaction, before any row lock, so the
/// advisory lock never waits while holding one.
pub(crate) async fn check(
    w: &mut WriteTx<'_>,
    defaults: &QuotaDefaults,
    project: &str,
    device_owner: Option<&str>,
    r: QuotaResource,
) -> Result<(), StoreError> {
    if is_internal(project, device_owner) {
        return Ok(());
    }
    if w.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(project, r))
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "locking the {r} quota of {project}"
            )))?;
    }
    let row = sqlx::query("SELECT hard_limit FROM quotas WHERE project_id = $1 AND resource = $2")
        .bind(project.to_string())
        .bind(r.as_str().to_string())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!(
            "reading the {r} quota of {project}"
        )))?;
    let limit = match row {
        Some(row) => col_i(&row, "hard_limit")?,
        None => defaults.get(r),
    };
    if limit < 0 {
        return Ok(());
    }
    let used = count(&mut *w.tx, project, r).await?;
    if used + 1 > limit {
        tracing::info!(project, resource = %r, used, limit, "over quota");
        return Err(DomainError::conflict(
            "OverQuota",
            format!("Quota exceeded for resources: ['{r}']."),
        )
        .into());
    }
    Ok(())
}

async fn count<'e, E>(exec: E, project: &str, r: QuotaResource) -> Result<i64, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(r.count_sql())
        .bind(project.to_string())
        .fetch_one(exec)
        .await
        .map_err(StoreError::db(format!("counting the {r}s of {project}")))?;
    col_i(&row, "n")
}

impl Store {
    /// The limits projects without their own get.
    pub fn quota_defaults(&self) -> QuotaDefaults {
        self.quota_defaults
    }

    /// The same store with other default limits (from the configuration).
    pub fn with_quota_defaults(mut self, defaults: QuotaDefaults) -> Store {
        self.quota_defaults = defaults;
        self
    }

    /// The limits a project has set (only those that differ from the defaults' source: rows).
    async fn quota_rows(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<(String, QuotaResource, i64)>, StoreError> {
        let rows = match project {
            Some(p) => {
                sqlx::query("SELECT project_id, resource, hard_limit FROM quotas WHERE project_id = $1 ORDER BY project_id, resource")
                    .bind(p.to_string())
                    .fetch_all(self.pool())
                    .await
            }
            None => {
                sqlx::query("SELECT project_id, resource, hard_limit FROM quotas ORDER BY project_id, resource")
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(StoreError::db("reading quotas"))?;
        let mut out = Vec::new();
        for row in &rows {
            let name = col_s(row, "resource")?;
            let Some(r) = QuotaResource::parse(&name) else {
                // A resource this version does not know (written by a newer one): ignore.
                tracing::debug!(resource = %name, "unknown quota resource in the store");
                continue;
            };
            out.push((col_s(row, "project_id")?, r, col_i(row, "hard_limit")?));
        }
        Ok(out)
    }

    /// A project's effective limits (its own where set, else the defaults).
    pub async fn quota_limits(
        &self,
        project: &str,
    ) -> Result<Vec<(QuotaResource, i64)>, StoreError> {
        let own = self.quota_rows(Some(project)).await?;
        Ok(QuotaResource::ALL
            .into_iter()
            .map(|r| {
                let limit = own
                    .iter()
                    .find(|(_, x, _)| *x == r)
                    .map(|(_, _, l)| *l)
                    .unwrap_or_else(|| self.quota_defaults.get(r));
                (r, limit)
            })
            .collect())
    }

    /// Every project that has limits of its own, with its effective limits.
    pub async fn list_quotas(
        &self,
    ) -> Result<Vec<(String, Vec<(QuotaResource, i64)>)>, StoreError> {
        let rows = self.quota_rows(None).await?;
        let mut projects: Vec<String> = rows.iter().map(|(p, _, _)| p.clone()).collect();
        projects.dedup();
        Ok(projects
            .into_iter()
            .map(|p| {
                let limits = QuotaResource::ALL
                    .into_iter()
                    .map(|r| {
                        let l = rows
                            .iter()
                            .find(|(q, x, _)| *q == p && *x == r)
                            .map(|(_, _, l)| *l)
                            .unwrap_or_else(|| self.quota_defaults.get(r));
                        (r, l)
                    })
                    .collect();
                (p, limits)
            })
            .collect())
    }

    /// Set some of a project's limits (the others keep their value).
    pub async fn set_quotas(
        &self,
        project: &str,
        limits: &[(QuotaResource, i64)],
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        for (r, l) in limits {
            sqlx::query("INSERT INTO quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3) ON CONFLICT (project_id, resource) DO UPDATE SET hard_limit = excluded.hard_limit")
                .bind(project.to_string())
                .bind(r.as_str().to_string())
                .bind(*l)
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("setting the {r} quota of {project}")))?;
        }
        w.commit().await?;
        tracing::info!(project, ?limits, "quotas set");
        Ok(())
    }

    /// Forget a project's own limits (back to the defaults); how many there were.
    pub async fn delete_quotas(&self, project: &str) -> Result<u64, StoreError> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM quotas WHERE project_id = $1")
            .bind(project.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("deleting the quotas of {project}")))?
            .rows_affected();
        w.commit().await?;
        tracing::info!(project, limits = n, "quotas reset to the defaults");
        Ok(n)
    }

    /// How many of each resource the project uses (what its quotas count).
    pub async fn quota_usage(
        &self,
        project: &str,
    ) -> Result<Vec<(QuotaResource, i64)>, StoreError> {
        let mut out = Vec::new();
        for r in QuotaResource::ALL {
            let n = if is_internal(project, None) {
                0
            } else {
                count(self.pool(), project, r).await?
            };
            out.push((r, n));
        }
        Ok(out)
    }
}
