//! Subnets.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::{
    col_b, col_i, col_json, col_os, col_s, now, retrying, PrefixRequest, Scope, Store, Subnet,
};
use crate::error::{DomainError, StoreError};
use crate::ipam::{self, Pool};

#[derive(Serialize, Deserialize)]
struct PoolJson {
    start: IpAddr,
    end: IpAddr,
}

fn pools_json(p: &[Pool]) -> String {
    let v: Vec<PoolJson> = p
        .iter()
        .map(|p| PoolJson {
            start: p.start,
            end: p.end,
        })
        .collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn subnet_from_row(r: &AnyRow) -> Result<Subnet, StoreError> {
    let id = col_s(r, "id")?;
    let corrupt = |column: &'static str, detail: String| StoreError::Corrupt {
        column,
        object: format!("subnet {id}"),
        detail,
    };
    let cidr: IpNet = col_s(r, "cidr")?
        .parse()
        .map_err(|e: ipnet::AddrParseError| corrupt("cidr", e.to_string()))?;
    let gateway_ip = match col_os(r, "gateway_ip")? {
        Some(g) => Some(
            g.parse::<IpAddr>()
                .map_err(|e| corrupt("gateway_ip", e.to_string()))?,
        ),
        None => None,
    };
    let pools: Vec<PoolJson> = col_json(r, "allocation_pools")?;
    let mode = |column: &'static str| -> Result<Option<wire::Ipv6AddressMode>, StoreError> {
        match col_os(r, column)? {
            None => Ok(None),
            Some(m) => ipam::parse_ipv6_mode(&m)
                .map(Some)
                .ok_or_else(|| corrupt(column, format!("{m:?} is not an IPv6 mode"))),
        }
    };
    Ok(Subnet {
        ipv6_ra_mode: mode("ipv6_ra_mode")?,
        ipv6_address_mode: mode("ipv6_address_mode")?,
        project_id: col_s(r, "project_id")?,
        network_id: col_s(r, "network_id")?,
        name: col_s(r, "name")?,
        description: col_s(r, "description")?,
        ip_version: col_i(r, "ip_version")?,
        cidr,
        gateway_ip,
        allocation_pools: pools
            .into_iter()
            .map(|p| Pool {
                start: p.start,
                end: p.end,
            })
            .collect(),
        enable_dhcp: col_b(r, "enable_dhcp")?,
        dns_nameservers: col_json(r, "dns_nameservers")?,
        host_routes: col_json(r, "host_routes")?,
        subnetpool_id: col_os(r, "subnetpool_id")?,
        created_at: col_s(r, "created_at")?,
        updated_at: col_s(r, "updated_at")?,
        revision_number: col_i(r, "revision_number")?,
        id,
    })
}

impl Store {
    /// Create a subnet (already validated by the caller: CIDR, gateway, pools). Refuses a
    /// CIDR overlapping another subnet of the network; the network row is updated first so
    /// concurrent subnet creations on one network serialise on it. With a `subnetpool_id`,
    /// its CIDR must be free in that pool.
    pub async fn create_subnet(&self, s: &Subnet) -> Result<Subnet, StoreError> {
        self.create_subnet_tagged(s, &[]).await
    }

    /// [`Store::create_subnet`] with its tags, in the same transaction.
    pub async fn create_subnet_tagged(
        &self,
        s: &Subnet,
        tags: &[String],
    ) -> Result<Subnet, StoreError> {
        retrying!(self.create_subnet_once(s, None, tags))
    }

    /// Create a subnet (with its tags) whose CIDR, gateway and allocation pools are chosen
    /// from its `subnetpool_id` as `req` asks (its own `cidr` and pools are ignored), in the
    /// same transaction, under the pool's lock: concurrent allocations from one pool never
    /// overlap.
    pub async fn allocate_subnet(
        &self,
        s: &Subnet,
        req: PrefixRequest,
        tags: &[String],
    ) -> Result<Subnet, StoreError> {
        retrying!(self.create_subnet_once(s, Some(req), tags))
    }

    async fn create_subnet_once(
        &self,
        s: &Subnet,
        req: Option<PrefixRequest>,
        tags: &[String],
    ) -> Result<Subnet, StoreError> {
        let mut s = s.clone();
        let mut w = self.begin_write().await?;
        super::quotas::check(
            &mut w,
            &self.quota_defaults,
            &s.project_id,
            None,
            super::QuotaResource::Subnet,
        )
        .await?;
        let ts = now();
        let r = sqlx::query("UPDATE networks SET revision_number = revision_number + 1, updated_at = $1 WHERE id = $2")
            .bind(ts.clone())
            .bind(s.network_id.clone())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("locking network {}", s.network_id)))?;
        if r.rows_affected() == 0 {
            return Err(DomainError::not_found("Network", "NetworkNotFound", &s.network_id).into());
        }
        let scope = super::subnetpools::allocate_in(&mut w, &mut s, req).await?;
        let others = sqlx::query("SELECT s.*, p.address_scope_id AS pool_scope FROM subnets s LEFT JOIN subnetpools p ON p.id = s.subnetpool_id WHERE s.network_id = $1")
            .bind(s.network_id.clone())
            .fetch_all(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "reading subnets of network {}",
                s.network_id
            )))?;
        let others = others
            .iter()
            .map(|r| Ok((subnet_from_row(r)?, col_os(r, "pool_scope")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        for (o, _) in &others {
            if ipam::overlaps(&o.cidr, &s.cidr) {
                return Err(DomainError::invalid_input(
                    "cidr",
                    format!(
                        "requested subnet with cidr {} for network {} overlaps with subnet {} ({})",
                        s.cidr, s.network_id, o.id, o.cidr
                    ),
                )
                .into());
            }
        }
        super::subnetpools::check_network_affinity(&s, scope.as_deref(), &others)?;
        sqlx::query(
            "INSERT INTO subnets (id, project_id, network_id, name, description, ip_version, cidr, gateway_ip, allocation_pools, enable_dhcp, dns_nameservers, host_routes, subnetpool_id, created_at, updated_at, revision_number, ipv6_ra_mode, ipv6_address_mode) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, 1, $15, $16)",
        )
        .bind(s.id.clone())
        .bind(s.project_id.clone())
        .bind(s.network_id.clone())
        .bind(s.name.clone())
        .bind(s.description.clone())
        .bind(s.ip_version)
        .bind(s.cidr.to_string())
        .bind(s.gateway_ip.map(|g| g.to_string()))
        .bind(pools_json(&s.allocation_pools))
        .bind(i64::from(s.enable_dhcp))
        .bind(serde_json::to_string(&s.dns_nameservers).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&s.host_routes).unwrap_or_else(|_| "[]".into()))
        .bind(s.subnetpool_id.clone())
        .bind(ts)
        .bind(s.ipv6_ra_mode.map(|m| ipam::ipv6_mode_name(m).to_string()))
        .bind(s.ipv6_address_mode.map(|m| ipam::ipv6_mode_name(m).to_string()))
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("inserting subnet {}", s.id)))?;
        if ipam::is_auto_address(s.ipv6_ra_mode, s.ipv6_address_mode) {
            // As Neutron: the network's ports get their EUI-64 address on the new subnet,
            // in this transaction (a collision fails the subnet, not half the ports).
            super::ports::add_auto_addresses(&mut w, &s).await?;
        }
        super::tags::insert_tags(&mut w, super::Tagged::Subnet, &s.id, tags).await?;
        w.touch(super::changes::ChangeKind::Subnet, &s.id);
        w.commit().await?;
        tracing::info!(subnet = %s.id, network = %s.network_id, cidr = %s.cidr, pool = ?s.subnetpool_id, "subnet created");
        self.get_subnet(&s.id).await
    }

    /// One subnet (no visibility check).
    pub async fn get_subnet(&self, id: &str) -> Result<Subnet, StoreError> {
        let row = sqlx::query("SELECT * FROM subnets WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::db(format!("reading subnet {id}")))?;
        match row {
            Some(r) => subnet_from_row(&r),
            None => Err(DomainError::not_found("Subnet", "SubnetNotFound", id).into()),
        }
    }

    /// Addresses allocated per subnet (subnets without any are absent).
    pub async fn used_ips_per_subnet(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT subnet_id, COUNT(*) AS used FROM ip_allocations GROUP BY subnet_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::db("counting allocated addresses per subnet"))?;
        rows.iter()
            .map(|r| Ok((super::col_s(r, "subnet_id")?, super::col_i(r, "used")?)))
            .collect()
    }

    /// Subnets of one network, oldest first.
    pub async fn subnets_of_network(&self, network_id: &str) -> Result<Vec<Subnet>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM subnets WHERE network_id = $1 ORDER BY created_at, id")
                .bind(network_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::db(format!(
                    "reading subnets of network {network_id}"
                )))?;
        rows.iter().map(subnet_from_row).collect()
    }

    /// Subnets visible in `scope` (own, or on shared/external networks).
    pub async fn list_subnets(&self, scope: &Scope) -> Result<Vec<Subnet>, StoreError> {
        let rows = match &scope.project_id {
            Some(p) => sqlx::query("SELECT s.* FROM subnets s JOIN networks n ON n.id = s.network_id WHERE s.project_id = $1 OR n.shared = 1 OR n.external = 1")
                .bind(p.clone())
                .fetch_all(&self.pool)
                .await,
            None => sqlx::query("SELECT * FROM subnets").fetch_all(&self.pool).await,
        }
        .map_err(StoreError::db("listing subnets"))?;
        rows.iter().map(subnet_from_row).collect()
    }

    /// Write the mutable attributes of `s` (name, description, gateway, pools, DHCP flag,
    /// DNS servers, host routes), bumping the revision.
    pub async fn update_subnet(&self, s: &Subnet) -> Result<Subnet, StoreError> {
        let mut w = self.begin_write().await?;
        if let Some(g) = s.gateway_ip {
            let used = sqlx::query(
                "SELECT port_id FROM ip_allocations WHERE network_id = $1 AND ip_address = $2",
            )
            .bind(s.network_id.clone())
            .bind(g.to_string())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "checking gateway of subnet {}",
                s.id
            )))?;
            let old = sqlx::query("SELECT gateway_ip FROM subnets WHERE id = $1")
                .bind(s.id.clone())
                .fetch_optional(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("reading subnet {}", s.id)))?;
            let old_gw = old
                .as_ref()
                .map(|r| col_os(r, "gateway_ip"))
                .transpose()?
                .flatten();
            if used.is_some() && old_gw.as_deref() != Some(g.to_string().as_str()) {
                return Err(DomainError::conflict(
                    "GatewayIpInUse",
                    format!(
                        "Gateway ip {g} is already in use by a port of network {}",
                        s.network_id
                    ),
                )
                .into());
            }
        }
        let r = sqlx::query(
            "UPDATE subnets SET name = $1, description = $2, gateway_ip = $3, allocation_pools = $4, enable_dhcp = $5, dns_nameservers = $6, host_routes = $7, updated_at = $8, revision_number = revision_number + 1 WHERE id = $9 AND revision_number = $10",
        )
        .bind(s.name.clone())
        .bind(s.description.clone())
        .bind(s.gateway_ip.map(|g| g.to_string()))
        .bind(pools_json(&s.allocation_pools))
        .bind(i64::from(s.enable_dhcp))
        .bind(serde_json::to_string(&s.dns_nameservers).unwrap_or_else(|_| "[]".into()))
        .bind(serde_json::to_string(&s.host_routes).unwrap_or_else(|_| "[]".into()))
        .bind(now())
        .bind(s.id.clone())
            .bind(s.revision_number)
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("updating subnet {}", s.id)))?;
        if r.rows_affected() == 0 {
            return Err(super::missed_update(
                &mut w,
                "subnets",
                &s.id,
                DomainError::not_found("Subnet", "SubnetNotFound", &s.id),
            )
            .await);
        }
        w.touch(super::changes::ChangeKind::Subnet, &s.id);
        w.commit().await?;
        self.get_subnet(&s.id).await
    }

    /// Delete a subnet; 409 while a port holds an address in it (DHCP ports give theirs up).
    pub async fn delete_subnet(&self, id: &str) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        super::dhcp::release_subnet(&mut w, id).await?;
        // As Neutron: the EUI-64 addresses the subnet gave ports go with it.
        super::ports::drop_auto_addresses(&mut w, id).await?;
        let used = sqlx::query("SELECT COUNT(*) AS c FROM ip_allocations WHERE subnet_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("counting addresses of subnet {id}")))?;
        if col_i(&used, "c")? > 0 {
            return Err(DomainError::conflict(
                "SubnetInUse",
                format!("Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."),
            )
            .into());
        }
        let r = sqlx::query("DELETE FROM subnets WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(|e| {
                let err = StoreError::db(format!("deleting subnet {id}"))(e);
                if err.is_foreign_key_violation() {
                    DomainError::conflict(
                        "SubnetInUse",
                        format!("Unable to complete operation on subnet {id}: it is in use."),
                    )
                    .into()
                } else {
                    err
                }
            })?;
        if r.rows_affected() == 0 {
            return Err(DomainError::not_found("Subnet", "SubnetNotFound", id).into());
        }
        w.touch(super::changes::ChangeKind::Subnet, id);
        w.commit().await?;
        tracing::info!(subnet = id, "subnet deleted");
        Ok(())
    }
}
