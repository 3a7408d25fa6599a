//! Networks and their segments (VLAN/flat allocations).

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;

use super::{
    col_b, col_i, col_json, col_oi, col_os, col_s, entropy, now, retrying, Network, NewNetwork,
    Scope, Segment, SegmentRequest, Store, WriteTx,
};
use crate::error::{DomainError, StoreError};
use crate::vlan_pool::{pick_free, pick_free_vni, VlanRanges, VniRanges, MAX_VNI};

pub(crate) fn network_from_row(r: &AnyRow) -> Result<Network, StoreError> {
    let ntype = col_s(r, "network_type")?;
    let physnet = col_os(r, "physical_network")?;
    let seg = col_oi(r, "segmentation_id")?;
    let id = col_s(r, "id")?;
    let segment = match (ntype.as_str(), physnet, seg) {
        ("local", _, _) => Segment::Local,
        ("vlan", Some(physnet), Some(v)) => Segment::Vlan {
            physnet,
            id: v as u16,
        },
        ("flat", Some(physnet), _) => Segment::Flat { physnet },
        ("vxlan", _, Some(v)) if (1..=i64::from(MAX_VNI)).contains(&v) => {
            Segment::Vxlan { vni: v as u32 }
        }
        (other, _, _) => {
            return Err(StoreError::Corrupt {
                column: "network_type",
                object: format!("network {id}"),
                detail: format!("type {other:?} without its segment"),
            })
        }
    };
    Ok(Network {
        project_id: col_s(r, "project_id")?,
        name: col_s(r, "name")?,
        description: col_s(r, "description")?,
        admin_state_up: col_b(r, "admin_state_up")?,
        status: col_s(r, "status")?,
        shared: col_b(r, "shared")?,
        external: col_b(r, "external")?,
        mtu: col_i(r, "mtu")?,
        port_security_enabled: col_b(r, "port_security_enabled")?,
        segment,
        az_hints: col_json(r, "az_hints")?,
        created_at: col_s(r, "created_at")?,
        updated_at: col_s(r, "updated_at")?,
        revision_number: col_i(r, "revision_number")?,
        subnets: Vec::new(),
        ipv4_address_scope: None,
        ipv6_address_scope: None,
        id,
    })
}

/// A network's subnets with what their pools say of the network's address scopes.
const SUBNET_IDS: &str = "SELECT s.id, s.network_id, s.ip_version, p.address_scope_id FROM subnets s LEFT JOIN subnetpools p ON p.id = s.subnetpool_id";

/// Adds one row of [`SUBNET_IDS`] to its network: the subnet's id, and its pool's address
/// scope as the network's scope of that IP version (Neutron's `ipv4_address_scope`).
fn add_subnet(n: &mut Network, r: &AnyRow) -> Result<(), StoreError> {
    n.subnets.push(col_s(r, "id")?);
    if let Some(scope) = col_os(r, "address_scope_id")? {
        match col_i(r, "ip_version")? {
            4 => n.ipv4_address_scope = Some(scope),
            _ => n.ipv6_address_scope = Some(scope),
        }
    }
    Ok(())
}

/// Try to claim (physnet, id); false if someone holds it.
async fn claim_segment(
    w: &mut WriteTx<'_>,
    physnet: &str,
    id: i64,
    network_id: &str,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT INTO segment_allocations (physical_network, segmentation_id, network_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(physnet.to_string())
    .bind(id)
    .bind(network_id.to_string())
    .execute(&mut *w.tx)
    .await
    .map_err(StoreError::db(format!("claiming segment {physnet}:{id}")))?;
    Ok(r.rows_affected() == 1)
}

/// Try to claim VNI `vni`; false if a network holds it.
async fn claim_vni(w: &mut WriteTx<'_>, vni: u32, network_id: &str) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT INTO vni_allocations (vni, network_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(i64::from(vni))
    .bind(network_id.to_string())
    .execute(&mut *w.tx)
    .await
    .map_err(StoreError::db(format!("claiming VNI {vni}")))?;
    Ok(r.rows_affected() == 1)
}

/// Allocate the lowest free VNI of the first range with room; `None` when all are exhausted.
async fn allocate_vni(
    w: &mut WriteTx<'_>,
    ranges: &VniRanges,
    network_id: &str,
) -> Result<Option<u32>, StoreError> {
    for &(lo, hi) in ranges.ranges() {
        for attempt in 0..64u32 {
            let rows = sqlx::query("SELECT vni FROM vni_allocations WHERE vni >= $1 AND vni <= $2")
                .bind(i64::from(lo))
                .bind(i64::from(hi))
                .fetch_all(&mut *w.tx)
                .await
                .map_err(StoreError::db("reading VNIs"))?;
            let taken: HashSet<u32> = rows
                .iter()
                .filter_map(|r| col_i(r, "vni").ok())
                .map(|v| v as u32)
                .collect();
            let Some(v) = pick_free_vni(lo, hi, &taken, attempt, entropy() as u64) else {
                break; // this range is full: the next one
            };
            if claim_vni(w, v, network_id).await? {
                return Ok(Some(v));
            }
            tracing::debug!(vni = v, attempt, "VNI taken concurrently, trying another");
        }
    }
    Ok(None)
}

/// Allocate a free VLAN on `physnet` within its range; None when the range is exhausted.
async fn allocate_vlan(
    w: &mut WriteTx<'_>,
    physnet: &str,
    lo: u16,
    hi: u16,
    network_id: &str,
) -> Result<Option<u16>, StoreError> {
    for attempt in 0..64u32 {
        let rows = sqlx::query(
            "SELECT segmentation_id FROM segment_allocations WHERE physical_network = $1 AND segmentation_id >= $2 AND segmentation_id <= $3",
        )
        .bind(physnet.to_string())
        .bind(i64::from(lo))
        .bind(i64::from(hi))
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("reading VLANs of {physnet}")))?;
        let taken: HashSet<u16> = rows
            .iter()
            .filter_map(|r| col_i(r, "segmentation_id").ok())
            .map(|v| v as u16)
            .collect();
        let Some(v) = pick_free(lo, hi, &taken, attempt, entropy() as u64) else {
            return Ok(None);
        };
        if claim_segment(w, physnet, i64::from(v), network_id).await? {
            return Ok(Some(v));
        }
        tracing::debug!(
            physnet,
            vlan = v,
            attempt,
            "VLAN taken concurrently, trying another"
        );
    }
    Err(DomainError::conflict(
        "NoNetworkAvailable",
        format!(
            "Unable to allocate a VLAN on physical network {physnet}: too much contention, retry"
        ),
    )
    .into())
}

impl Store {
    /// Use `ranges` for the VNIs of VxLAN networks created without one (default 1001:2000).
    pub fn with_vni_ranges(mut self, ranges: VniRanges) -> Store {
        self.vni_ranges = ranges;
        self
    }

    /// The VNIs VxLAN networks are given.
    pub fn vni_ranges(&self) -> &VniRanges {
        &self.vni_ranges
    }

    /// Create a network and allocate its segment in one transaction (409 and nothing
    /// changed when the VLAN range is exhausted or the requested segment is taken).
    pub async fn create_network(
        &self,
        n: &NewNetwork,
        ranges: &VlanRanges,
    ) -> Result<Network, StoreError> {
        self.create_network_tagged(n, ranges, &[]).await
    }

    /// [`Store::create_network`] with its tags, in the same transaction.
    pub async fn create_network_tagged(
        &self,
        n: &NewNetwork,
        ranges: &VlanRanges,
        tags: &[String],
    ) -> Result<Network, StoreError> {
        retrying!(self.create_network_once(n, ranges, tags))
    }

    async fn create_network_once(
        &self,
        n: &NewNetwork,
        ranges: &VlanRanges,
        tags: &[String],
    ) -> Result<Network, StoreError> {
        let mut w = self.begin_write().await?;
        super::quotas::check(
            &mut w,
            &self.quota_defaults,
            &n.project_id,
            None,
            super::QuotaResource::Network,
        )
        .await?;
        let ts = now();
        let ntype = match n.segment {
            SegmentRequest::Local => "local",
            SegmentRequest::Vlan { .. } => "vlan",
            SegmentRequest::Flat { .. } => "flat",
            SegmentRequest::Vxlan { .. } => "vxlan",
        };
        sqlx::query(
            "INSERT INTO networks (id, project_id, name, description, admin_state_up, status, shared, external, mtu, port_security_enabled, network_type, az_hints, created_at, updated_at, revision_number) VALUES ($1, $2, $3, $4, $5, 'ACTIVE', $6, $7, $8, $9, $10, $11, $12, $12, 1)",
        )
        .bind(n.id.clone())
        .bind(n.project_id.clone())
        .bind(n.name.clone())
        .bind(n.description.clone())
        .bind(i64::from(n.admin_state_up))
        .bind(i64::from(n.shared))
        .bind(i64::from(n.external))
        .bind(n.mtu)
        .bind(i64::from(n.port_security_enabled))
        .bind(ntype.to_string())
        .bind(serde_json::to_string(&n.az_hints).unwrap_or_else(|_| "[]".into()))
        .bind(ts.clone())
        .execute(&mut *w.tx)
        .await
        .map_err(|e| {
            let err = StoreError::db(format!("inserting network {}", n.id))(e);
            if err.is_unique_violation() {
                DomainError::conflict("NetworkExists", format!("Network {} already exists", n.id)).into()
            } else {
                err
            }
        })?;
        let (physnet, seg): (Option<String>, Option<i64>) = match &n.segment {
            SegmentRequest::Local => (None, None),
            SegmentRequest::Vxlan { id: Some(v) } => {
                if !claim_vni(&mut w, *v, &n.id).await? {
                    return Err(DomainError::conflict(
                        "TunnelIdInUse",
                        format!("Unable to create the network. The tunnel ID {v} is in use."),
                    )
                    .into());
                }
                (None, Some(i64::from(*v)))
            }
            SegmentRequest::Vxlan { id: None } => match allocate_vni(&mut w, &self.vni_ranges, &n.id).await? {
                Some(v) => (None, Some(i64::from(v))),
                None => {
                    return Err(DomainError::conflict(
                        "NoNetworkAvailable",
                        format!(
                            "Unable to create the network. No tenant network is available for allocation: VxLAN vni_ranges {} are exhausted.",
                            self.vni_ranges
                        ),
                    )
                    .into())
                }
            },
            SegmentRequest::Flat { physnet } => {
                if !claim_segment(&mut w, physnet, 0, &n.id).await? {
                    return Err(DomainError::conflict(
                        "FlatNetworkInUse",
                        format!("Unable to create the flat network. Physical network {physnet} is in use."),
                    )
                    .into());
                }
                (Some(physnet.clone()), None)
            }
            SegmentRequest::Vlan {
                physnet: Some(p),
                id: Some(v),
            } => {
                if !claim_segment(&mut w, p, i64::from(*v), &n.id).await? {
                    return Err(DomainError::conflict(
                        "VlanIdInUse",
                        format!("Unable to create the network. The VLAN {v} on physical network {p} is in use."),
                    )
                    .into());
                }
                (Some(p.clone()), Some(i64::from(*v)))
            }
            SegmentRequest::Vlan {
                physnet: Some(p),
                id: None,
            } => {
                let Some((lo, hi)) = ranges.range(p) else {
                    return Err(DomainError::invalid_input(
                        "provider:physical_network",
                        format!("physical network {p} has no VLAN range in network_vlan_ranges, give provider:segmentation_id"),
                    )
                    .into());
                };
                match allocate_vlan(&mut w, p, lo, hi, &n.id).await? {
                    Some(v) => (Some(p.clone()), Some(i64::from(v))),
                    None => {
                        return Err(DomainError::conflict(
                            "NoNetworkAvailable",
                            format!("Unable to create the network. No VLAN is available on physical network {p} (range {lo}:{hi} is exhausted)."),
                        )
                        .into())
                    }
                }
            }
            SegmentRequest::Vlan { physnet: None, .. } => {
                let mut got = None;
                let mut tried = Vec::new();
                for (p, lo, hi) in ranges.physnets_with_ranges() {
                    tried.push(p.to_string());
                    if let Some(v) = allocate_vlan(&mut w, p, lo, hi, &n.id).await? {
                        got = Some((p.to_string(), v));
                        break;
                    }
                }
                match got {
                    Some((p, v)) => (Some(p), Some(i64::from(v))),
                    None => {
                        return Err(DomainError::conflict(
                            "NoNetworkAvailable",
                            format!("Unable to create the network. No VLAN is available on physical networks {}.", tried.join(", ")),
                        )
                        .into())
                    }
                }
            }
        };
        if physnet.is_some() || seg.is_some() {
            sqlx::query(
                "UPDATE networks SET physical_network = $1, segmentation_id = $2 WHERE id = $3",
            )
            .bind(physnet)
            .bind(seg)
            .bind(n.id.clone())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "recording the segment of network {}",
                n.id
            )))?;
        }
        let row = sqlx::query("SELECT * FROM networks WHERE id = $1")
            .bind(n.id.clone())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("reading network {}", n.id)))?;
        let net = network_from_row(&row)?;
        super::tags::insert_tags(&mut w, super::Tagged::Network, &net.id, tags).await?;
        w.touch(super::changes::ChangeKind::Network, &net.id);
        w.commit().await?;
        tracing::info!(network = %net.id, segment = ?net.segment, "network created");
        Ok(net)
    }

    /// One network (no visibility check), with its subnet ids.
    pub async fn get_network(&self, id: &str) -> Result<Network, StoreError> {
        let row = sqlx::query("SELECT * FROM networks WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::db(format!("reading network {id}")))?;
        let Some(row) = row else {
            return Err(DomainError::not_found("Network", "NetworkNotFound", id).into());
        };
        let mut net = network_from_row(&row)?;
        let subs = sqlx::query(&format!(
            "{SUBNET_IDS} WHERE s.network_id = $1 ORDER BY s.created_at, s.id"
        ))
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db(format!("reading subnets of network {id}")))?;
        for r in &subs {
            add_subnet(&mut net, r)?;
        }
        Ok(net)
    }

    /// Networks visible in `scope` (own, shared and external ones for a project).
    pub async fn list_networks(&self, scope: &Scope) -> Result<Vec<Network>, StoreError> {
        let (rows, subs) = match &scope.project_id {
            Some(p) => (
                sqlx::query("SELECT * FROM networks WHERE project_id = $1 OR shared = 1 OR external = 1")
                    .bind(p.clone())
                    .fetch_all(&self.pool)
                    .await,
                sqlx::query(&format!("{SUBNET_IDS} JOIN networks n ON n.id = s.network_id WHERE n.project_id = $1 OR n.shared = 1 OR n.external = 1 ORDER BY s.created_at, s.id"))
                    .bind(p.clone())
                    .fetch_all(&self.pool)
                    .await,
            ),
            None => (
                sqlx::query("SELECT * FROM networks").fetch_all(&self.pool).await,
                sqlx::query(&format!("{SUBNET_IDS} ORDER BY s.created_at, s.id"))
                    .fetch_all(&self.pool)
                    .await,
            ),
        };
        let rows = rows.map_err(StoreError::db("listing networks"))?;
        let subs = subs.map_err(StoreError::db("listing subnet ids"))?;
        let mut by_net: HashMap<String, Vec<&AnyRow>> = HashMap::new();
        for s in &subs {
            by_net.entry(col_s(s, "network_id")?).or_default().push(s);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut n = network_from_row(r)?;
            for s in by_net.remove(&n.id).unwrap_or_default() {
                add_subnet(&mut n, s)?;
            }
            out.push(n);
        }
        Ok(out)
    }

    /// Write the mutable attributes of `n` (name, description, admin state, shared,
    /// external, mtu, port security), bumping the revision. Unsharing is refused while
    /// other projects have ports on it.
    pub async fn update_network(&self, n: &Network) -> Result<Network, StoreError> {
        let mut w = self.begin_write().await?;
        if !n.shared {
            let others = sqlx::query(
                "SELECT COUNT(*) AS c FROM ports WHERE network_id = $1 AND project_id <> $2",
            )
            .bind(n.id.clone())
            .bind(n.project_id.clone())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "counting foreign ports of network {}",
                n.id
            )))?;
            if col_i(&others, "c")? > 0 {
                return Err(DomainError::conflict(
                    "InvalidSharedSetting",
                    format!("Unable to reconfigure sharing settings for network {}. Multiple tenants are using it.", n.id),
                )
                .into());
            }
        }
        let r = sqlx::query(
            "UPDATE networks SET name = $1, description = $2, admin_state_up = $3, shared = $4, external = $5, mtu = $6, port_security_enabled = $7, updated_at = $8, revision_number = revision_number + 1 WHERE id = $9 AND revision_number = $10",
        )
        .bind(n.name.clone())
        .bind(n.description.clone())
        .bind(i64::from(n.admin_state_up))
        .bind(i64::from(n.shared))
        .bind(i64::from(n.external))
        .bind(n.mtu)
        .bind(i64::from(n.port_security_enabled))
        .bind(now())
        .bind(n.id.clone())
            .bind(n.revision_number)
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("updating network {}", n.id)))?;
        if r.rows_affected() == 0 {
            return Err(super::missed_update(
                &mut w,
                "networks",
                &n.id,
                DomainError::not_found("Network", "NetworkNotFound", &n.id),
            )
            .await);
        }
        w.touch(super::changes::ChangeKind::Network, &n.id);
        w.commit().await?;
        self.get_network(&n.id).await
    }

    /// Delete a network with its subnets and segment; 409 while it has ports (its DHCP ports
    /// go with it).
    pub async fn delete_network(&self, id: &str) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        super::dhcp::release_network(&mut w, id).await?;
        let ports = sqlx::query("SELECT COUNT(*) AS c FROM ports WHERE network_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("counting ports of network {id}")))?;
        let count = col_i(&ports, "c")?;
        if count > 0 {
            return Err(DomainError::conflict(
                "NetworkInUse",
                format!("Unable to complete operation on network {id}. There are {count} ports on this network."),
            )
            .into());
        }
        let r = sqlx::query("DELETE FROM networks WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(|e| {
                let err = StoreError::db(format!("deleting network {id}"))(e);
                if err.is_foreign_key_violation() {
                    DomainError::conflict(
                        "NetworkInUse",
                        format!("Unable to complete operation on network {id}. It is in use."),
                    )
                    .into()
                } else {
                    err
                }
            })?;
        if r.rows_affected() == 0 {
            return Err(DomainError::not_found("Network", "NetworkNotFound", id).into());
        }
        w.touch(super::changes::ChangeKind::Network, id);
        w.commit().await?;
        tracing::info!(network = id, "network deleted");
        Ok(())
    }
}
