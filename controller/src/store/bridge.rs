//! Per-project bridge subnets: one /24 of `bridge_cidr` for each project that needs an
//! east-west bridge network (DESIGN.md, "East-west L3"). The table's keys make the /24
//! unique and the allocation idempotent per project.

use std::collections::HashSet;

use ipnet::Ipv4Net;

use super::{col_s, entropy, now, retrying, Store};
use crate::error::{DomainError, StoreError};

impl Store {
    /// The bridge /24 of `project_id`, allocating the lowest free one on first use.
    /// 409 when `pool` has no free /24 left.
    pub async fn bridge_subnet(
        &self,
        project_id: &str,
        pool: Ipv4Net,
    ) -> Result<Ipv4Net, StoreError> {
        retrying!(self.bridge_subnet_once(project_id, pool))
    }

    async fn bridge_subnet_once(
        &self,
        project_id: &str,
        pool: Ipv4Net,
    ) -> Result<Ipv4Net, StoreError> {
        let corrupt = |c: String| StoreError::Corrupt {
            column: "cidr",
            object: format!("bridge allocation of {project_id}"),
            detail: format!("{c:?} is not an IPv4 CIDR"),
        };
        if let Some(c) = self.bridge_subnet_of(project_id).await? {
            return Ok(c);
        }
        let slices: Vec<Ipv4Net> = if pool.prefix_len() <= 24 {
            pool.subnets(24).map(|s| s.collect()).unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut w = self.begin_write().await?;
        for attempt in 0..64u32 {
            let rows = sqlx::query("SELECT cidr FROM bridge_allocations")
                .fetch_all(&mut *w.tx)
                .await
                .map_err(StoreError::db("reading bridge allocations"))?;
            let taken: HashSet<String> =
                rows.iter().filter_map(|r| col_s(r, "cidr").ok()).collect();
            let free: Vec<&Ipv4Net> = slices
                .iter()
                .filter(|s| !taken.contains(&s.to_string()))
                .take(16)
                .collect();
            let Some(pick) = (if attempt == 0 {
                free.first()
            } else {
                free.get((entropy() % free.len().max(1) as u128) as usize)
            }) else {
                return Err(DomainError::conflict(
                    "BridgeSubnetsExhausted",
                    format!("No /24 is left in bridge_cidr {pool} for project {project_id}'s bridge network"),
                )
                .into());
            };
            let r = sqlx::query("INSERT INTO bridge_allocations (project_id, cidr, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(project_id.to_string())
                .bind(pick.to_string())
                .bind(now())
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("claiming bridge subnet {pick}")))?;
            if r.rows_affected() == 1 {
                let got = **pick;
                w.touch(super::changes::ChangeKind::Project, project_id);
                w.commit().await?;
                tracing::info!(project = project_id, cidr = %got, "bridge subnet allocated");
                return Ok(got);
            }
            // Lost a race: either this project got one meanwhile, or the /24 went to another.
            let mine = sqlx::query("SELECT cidr FROM bridge_allocations WHERE project_id = $1")
                .bind(project_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await
                .map_err(StoreError::db("reading bridge allocation"))?;
            if let Some(r) = mine {
                let c = col_s(&r, "cidr")?;
                return c.parse().map_err(|_| corrupt(c));
            }
        }
        Err(DomainError::conflict(
            "BridgeSubnetsExhausted",
            "too much contention allocating a bridge subnet, retry",
        )
        .into())
    }

    /// Every project's bridge /24.
    pub async fn list_bridge_subnets(&self) -> Result<Vec<(String, Ipv4Net)>, StoreError> {
        let rows = sqlx::query("SELECT project_id, cidr FROM bridge_allocations")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db("listing bridge subnets"))?;
        rows.iter()
            .map(|r| {
                let (p, c) = (col_s(r, "project_id")?, col_s(r, "cidr")?);
                let net = c.parse().map_err(|_| StoreError::Corrupt {
                    column: "cidr",
                    object: format!("bridge allocation of {p}"),
                    detail: format!("{c:?} is not an IPv4 CIDR"),
                })?;
                Ok((p, net))
            })
            .collect()
    }

    /// The bridge /24 of a project, if it has one.
    pub async fn bridge_subnet_of(&self, project_id: &str) -> Result<Option<Ipv4Net>, StoreError> {
        let row = sqlx::query("SELECT cidr FROM bridge_allocations WHERE project_id = $1")
            .bind(project_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::db(format!(
                "reading the bridge subnet of {project_id}"
            )))?;
        match row {
            Some(r) => {
                let c = col_s(&r, "cidr")?;
                c.parse().map(Some).map_err(|_| StoreError::Corrupt {
                    column: "cidr",
                    object: format!("bridge allocation of {project_id}"),
                    detail: format!("{c:?} is not an IPv4 CIDR"),
                })
            }
            None => Ok(None),
        }
    }

    /// Give a project's bridge /24 back (when its last non-local router goes).
    pub async fn release_bridge_subnet(&self, project_id: &str) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        sqlx::query("DELETE FROM bridge_allocations WHERE project_id = $1")
            .bind(project_id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "releasing the bridge subnet of {project_id}"
            )))?;
        w.touch(super::changes::ChangeKind::Project, project_id);
        w.commit().await
    }
}
