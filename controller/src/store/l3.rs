//! Routers, floating IPs, registered nodes (agents), the per-node published desired-state
//! revisions and pod-local VLAN tags: the tables of cross-pod L3 and the agent API (the
//! migration also creates the `jobs` table, whose queries live in [`super::jobs`]).
//!
//! Router interfaces, gateway ports, floating-IP ports, bridge IPs and per-pod leg IPs are real
//! ports (device_owner `network:*`, device_id = the router or floating IP), so their IPs and
//! MACs share the ports' uniqueness constraints; bridge networks are real networks (VLAN from
//! the bridge physnet's pool, the /24 from `bridge_allocations`). Only what has no port-shaped
//! home gets a table here.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::{col_i, col_os, col_s, now, retrying, Store};
use crate::error::{DomainError, StoreError};

/// One node's published state after [`Store::publish_node_states`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The node.
    pub node: String,
    /// Its revision now.
    pub revision: i64,
    /// Its content now (JSON of the state without revision).
    pub content: String,
    /// Whether this call moved it.
    pub moved: bool,
}

/// Moves `node`'s state from revision `rev` to `rev + 1` with `content`, unless the row moved
/// meanwhile or holds a state from a later log position; whether it did.
async fn bump_node_state(
    w: &mut super::WriteTx<'_>,
    node: &str,
    content: &str,
    source_seq: i64,
    rev: i64,
) -> Result<bool, StoreError> {
    let r = sqlx::query("UPDATE node_states SET revision = $1, content = $2, source_seq = $3 WHERE node = $4 AND revision = $5 AND source_seq <= $3")
        .bind(rev + 1)
        .bind(content.to_string())
        .bind(source_seq)
        .bind(node.to_string())
        .bind(rev)
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("publishing the state of node {node}")))?;
    Ok(r.rows_affected() == 1)
}

/// Nodes per batched publish statement: 3 parameters each plus one, far below SQLite's
/// 32,766 and PostgreSQL's 65,535 bind parameters.
const PUBLISH_BATCH: usize = 1000;

/// [`bump_node_state`] for many nodes in one statement per [`PUBLISH_BATCH`] (one round trip
/// instead of one per node): each `(node, content, rev)` moves from `rev` to `rev + 1` under
/// the same conditions. Returns the nodes that moved. `UPDATE ... FROM (VALUES ...)` with
/// `RETURNING`, and VALUES columns named `column1..`, are common to SQLite (3.35+) and
/// PostgreSQL.
async fn bump_node_states(
    w: &mut super::WriteTx<'_>,
    rows: &[(&str, &str, i64)],
    source_seq: i64,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut moved = std::collections::HashSet::with_capacity(rows.len());
    for chunk in rows.chunks(PUBLISH_BATCH) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4))
            .collect();
        let sql = format!(
            "UPDATE node_states SET revision = node_states.revision + 1, content = v.column2, source_seq = $1 \
             FROM (VALUES {}) AS v \
             WHERE node_states.node = v.column1 AND node_states.revision = v.column3 AND node_states.source_seq <= $1 \
             RETURNING node_states.node",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(source_seq);
        for (node, content, rev) in chunk {
            q = q
                .bind(node.to_string())
                .bind(content.to_string())
                .bind(*rev);
        }
        let done = q
            .fetch_all(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "publishing the states of {} nodes",
                chunk.len()
            )))?;
        for r in &done {
            moved.insert(col_s(r, "node")?);
        }
    }
    Ok(moved)
}

/// Migration 3: the tables of this module.
pub const L3_MIGRATION: &str = r#"
CREATE TABLE routers (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    admin_state_up BIGINT NOT NULL,
    az_hints TEXT NOT NULL DEFAULT '[]',
    gateway TEXT,
    routes TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision_number BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX routers_project ON routers (project_id);
CREATE TABLE floatingips (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    floating_network_id TEXT NOT NULL REFERENCES networks (id),
    floating_port_id TEXT NOT NULL,
    floating_ip_address TEXT NOT NULL,
    port_id TEXT,
    fixed_ip_address TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision_number BIGINT NOT NULL DEFAULT 1,
    UNIQUE (floating_network_id, floating_ip_address)
);
CREATE TABLE agents (
    node TEXT PRIMARY KEY,
    pod TEXT NOT NULL,
    registration TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    last_report_at TEXT,
    revision_applied BIGINT NOT NULL DEFAULT 0,
    report TEXT
);
CREATE TABLE node_states (
    node TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    content TEXT NOT NULL
);
CREATE TABLE local_tags (
    network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
    pod TEXT NOT NULL,
    physnet TEXT NOT NULL,
    tag BIGINT NOT NULL,
    PRIMARY KEY (network_id, pod),
    UNIQUE (physnet, pod, tag)
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    status TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (type, resource_id)
)
"#;

/// `external_gateway_info` as stored (the IPs live on the gateway port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// External network.
    pub network_id: String,
    /// SNAT the router's subnets.
    pub enable_snat: bool,
    /// Requested external IPs (`[{"subnet_id"?, "ip_address"?}]`), as given.
    #[serde(default)]
    pub requested_ips: Vec<serde_json::Value>,
}

/// A user route (`routes` attribute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// Destination CIDR.
    pub destination: String,
    /// Next hop.
    pub nexthop: String,
}

/// A router row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Admin state.
    pub admin_state_up: bool,
    /// AZ hints.
    pub az_hints: Vec<String>,
    /// External gateway.
    pub gateway: Option<GatewayInfo>,
    /// User routes.
    pub routes: Vec<RouteEntry>,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
    /// Revision.
    pub revision_number: i64,
}

/// A floating IP row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatingIp {
    /// UUID.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// External network.
    pub floating_network_id: String,
    /// The port holding the address on the external network.
    pub floating_port_id: String,
    /// The address.
    pub floating_ip_address: String,
    /// Associated port.
    pub port_id: Option<String>,
    /// Fixed IP it maps to.
    pub fixed_ip_address: Option<String>,
    /// Description.
    pub description: String,
    /// Created.
    pub created_at: String,
    /// Updated.
    pub updated_at: String,
    /// Revision.
    pub revision_number: i64,
}

/// A registered node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    /// Node name.
    pub node: String,
    /// Pod (region name).
    pub pod: String,
    /// The registration as sent.
    pub registration: wire::NodeRegistration,
    /// Project of the token that registered it.
    pub registered_by: String,
    /// When.
    pub registered_at: String,
    /// Last status report time.
    pub last_report_at: Option<String>,
    /// Revision the node last reported applied.
    pub revision_applied: i64,
    /// The last status report.
    pub report: Option<wire::StatusReport>,
    /// An admin's description (Neutron's agent `description`).
    pub description: String,
    /// False when an admin disabled the node: it takes no new port bindings.
    pub admin_state_up: bool,
    /// Judged lost from its pod peers' liveness reports (router failover).
    pub lost: bool,
    /// When `lost` last flipped (empty: never).
    pub lost_changed_at: String,
}

fn json_col<T: serde::de::DeserializeOwned>(
    r: &AnyRow,
    col: &'static str,
) -> Result<T, StoreError> {
    super::col_json(r, col)
}

fn router_from_row(r: &AnyRow) -> Result<Router, StoreError> {
    let gateway: Option<String> = col_os(r, "gateway")?;
    Ok(Router {
        id: col_s(r, "id")?,
        project_id: col_s(r, "project_id")?,
        name: col_s(r, "name")?,
        description: col_s(r, "description")?,
        admin_state_up: col_i(r, "admin_state_up")? != 0,
        az_hints: json_col(r, "az_hints")?,
        gateway: gateway
            .map(|g| serde_json::from_str(&g))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                column: "gateway",
                object: "router".into(),
                detail: e.to_string(),
            })?,
        routes: json_col(r, "routes")?,
        created_at: col_s(r, "created_at")?,
        updated_at: col_s(r, "updated_at")?,
        revision_number: col_i(r, "revision_number")?,
    })
}

fn fip_from_row(r: &AnyRow) -> Result<FloatingIp, StoreError> {
    Ok(FloatingIp {
        id: col_s(r, "id")?,
        project_id: col_s(r, "project_id")?,
        floating_network_id: col_s(r, "floating_network_id")?,
        floating_port_id: col_s(r, "floating_port_id")?,
        floating_ip_address: col_s(r, "floating_ip_address")?,
        port_id: col_os(r, "port_id")?,
        fixed_ip_address: col_os(r, "fixed_ip_address")?,
        description: col_s(r, "description")?,
        created_at: col_s(r, "created_at")?,
        updated_at: col_s(r, "updated_at")?,
        revision_number: col_i(r, "revision_number")?,
    })
}

fn agent_from_row(r: &AnyRow) -> Result<AgentRow, StoreError> {
    let report: Option<String> = col_os(r, "report")?;
    Ok(AgentRow {
        node: col_s(r, "node")?,
        pod: col_s(r, "pod")?,
        registration: json_col(r, "registration")?,
        registered_by: col_s(r, "registered_by")?,
        registered_at: col_s(r, "registered_at")?,
        last_report_at: col_os(r, "last_report_at")?,
        revision_applied: col_i(r, "revision_applied")?,
        report: report.and_then(|s| serde_json::from_str(&s).ok()),
        description: col_s(r, "description")?,
        admin_state_up: col_i(r, "admin_state_up")? != 0,
        lost: col_i(r, "lost")? != 0,
        lost_changed_at: col_s(r, "lost_changed_at")?,
    })
}

fn js<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Store {
    // ---- routers ----

    /// Insert a router (409 `OverQuota` when the project's router quota is used up).
    pub async fn create_router(&self, r: &Router) -> Result<Router, StoreError> {
        self.create_router_with_gateway(r, None).await
    }

    /// Insert a router and, when given, its gateway port in one transaction: a gateway the
    /// external network cannot give (address taken, not in a subnet) leaves no router behind.
    /// Create a router's gateway port only while the router row still names a gateway on the
    /// port's network, checked under the row's lock in the port's transaction (`None`: not
    /// created). The realizer mends a missing gateway port from an intent that may be a
    /// moment old; this keeps it from re-creating the port of a router just deleted or moved.
    pub async fn create_gateway_port(
        &self,
        router_id: &str,
        p: &super::NewPort,
    ) -> Result<Option<super::Port>, StoreError> {
        retrying!(async {
            let mut w = self.begin_write().await?;
            // An UPDATE that changes nothing takes the row lock on PostgreSQL (waiting for a
            // concurrent delete to commit) and works the same on SQLite.
            sqlx::query("UPDATE routers SET gateway = gateway WHERE id = $1")
                .bind(router_id.to_string())
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("locking router {router_id}")))?;
            let row = sqlx::query("SELECT gateway FROM routers WHERE id = $1")
                .bind(router_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("reading router {router_id}")))?;
            let gateway: Option<GatewayInfo> = match &row {
                Some(r) => col_os(r, "gateway")?.and_then(|g| serde_json::from_str(&g).ok()),
                None => None,
            };
            if gateway.is_none_or(|g| g.network_id != p.network_id) {
                // Ends the transaction now (it changed nothing): a dropped one would hold
                // SQLite's write lock until its rollback runs.
                w.commit().await?;
                return Ok(None);
            }
            super::ports::insert_port(&mut w, &self.quota_defaults, p).await?;
            w.commit().await?;
            self.get_port(&p.id).await.map(Some)
        })
    }

    pub async fn create_router_with_gateway(
        &self,
        r: &Router,
        gateway_port: Option<&super::NewPort>,
    ) -> Result<Router, StoreError> {
        self.create_router_tagged(r, gateway_port, &[]).await
    }

    /// [`Store::create_router_with_gateway`] with the router's tags, in the same transaction.
    pub async fn create_router_tagged(
        &self,
        r: &Router,
        gateway_port: Option<&super::NewPort>,
        tags: &[String],
    ) -> Result<Router, StoreError> {
        let mut w = self.begin_write().await?;
        super::quotas::check(
            &mut w,
            &self.quota_defaults,
            &r.project_id,
            None,
            super::QuotaResource::Router,
        )
        .await?;
        let ts = now();
        sqlx::query("INSERT INTO routers (id, project_id, name, description, admin_state_up, az_hints, gateway, routes, created_at, updated_at, revision_number) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, 1)")
            .bind(r.id.clone())
            .bind(r.project_id.clone())
            .bind(r.name.clone())
            .bind(r.description.clone())
            .bind(i64::from(r.admin_state_up))
            .bind(js(&r.az_hints))
            .bind(r.gateway.as_ref().map(js))
            .bind(js(&r.routes))
            .bind(ts)
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("inserting router {}", r.id)))?;
        if let Some(p) = gateway_port {
            super::ports::insert_port(&mut w, &self.quota_defaults, p).await?;
        }
        super::tags::insert_tags(&mut w, super::Tagged::Router, &r.id, tags).await?;
        w.touch(super::changes::ChangeKind::Router, &r.id);
        w.commit().await?;
        self.get_router(&r.id).await
    }

    /// One router (no visibility check).
    pub async fn get_router(&self, id: &str) -> Result<Router, StoreError> {
        let row = sqlx::query("SELECT * FROM routers WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading router {id}")))?;
        match row {
            Some(r) => router_from_row(&r),
            None => Err(DomainError::not_found("Router", "RouterNotFound", id).into()),
        }
    }

    /// Every router, or a project's.
    pub async fn list_routers(&self, project: Option<&str>) -> Result<Vec<Router>, StoreError> {
        let rows = match project {
            Some(p) => {
                sqlx::query("SELECT * FROM routers WHERE project_id = $1 ORDER BY id")
                    .bind(p.to_string())
                    .fetch_all(self.pool())
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM routers ORDER BY id")
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(StoreError::db("listing routers"))?;
        rows.iter().map(router_from_row).collect()
    }

    /// Write a router's mutable attributes (bumps its revision).
    pub async fn update_router(&self, r: &Router) -> Result<Router, StoreError> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query("UPDATE routers SET name = $1, description = $2, admin_state_up = $3, gateway = $4, routes = $5, updated_at = $6, revision_number = revision_number + 1 WHERE id = $7 AND revision_number = $8")
            .bind(r.name.clone())
            .bind(r.description.clone())
            .bind(i64::from(r.admin_state_up))
            .bind(r.gateway.as_ref().map(js))
            .bind(js(&r.routes))
            .bind(now())
            .bind(r.id.clone())
            .bind(r.revision_number)
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("updating router {}", r.id)))?;
        if n.rows_affected() == 0 {
            return Err(super::missed_update(
                &mut w,
                "routers",
                &r.id,
                DomainError::not_found("Router", "RouterNotFound", &r.id),
            )
            .await);
        }
        w.touch(super::changes::ChangeKind::Router, &r.id);
        w.commit().await?;
        self.get_router(&r.id).await
    }

    /// Delete a router row.
    pub async fn delete_router(&self, id: &str) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        // Its gateway ports go in the same transaction: a realizer pass that still sees the
        // router (and mends a "missing" gateway port) cannot slip between the two.
        let gone = sqlx::query(
            "SELECT id FROM ports WHERE device_id = $1 AND device_owner = 'network:router_gateway'",
        )
        .bind(id.to_string())
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!(
            "reading the gateway ports of router {id}"
        )))?;
        for row in &gone {
            let port = col_s(row, "id")?;
            sqlx::query("DELETE FROM ports WHERE id = $1")
                .bind(port.clone())
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!(
                    "deleting gateway port {port} of router {id}"
                )))?;
            w.touch(super::changes::ChangeKind::Port, &port);
        }
        sqlx::query("DELETE FROM routers WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("deleting router {id}")))?;
        sqlx::query("DELETE FROM jobs WHERE resource_id = $1")
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("deleting the jobs of router {id}")))?;
        w.touch(super::changes::ChangeKind::Router, id);
        w.commit().await
    }

    // ---- floating IPs ----

    /// Insert a floating IP row (its port exists already): 409 `OverQuota` when the project's
    /// floating IP quota is used up, 409 `FloatingIPPortAlreadyAssociated` when its fixed IP
    /// has a floating IP already (a unique index, so concurrent associations cannot both win).
    pub async fn create_floatingip(&self, f: &FloatingIp) -> Result<FloatingIp, StoreError> {
        self.create_floatingip_tagged(f, &[]).await
    }

    /// [`Store::create_floatingip`] with its tags, in the same transaction.
    pub async fn create_floatingip_tagged(
        &self,
        f: &FloatingIp,
        tags: &[String],
    ) -> Result<FloatingIp, StoreError> {
        retrying!(self.create_floatingip_once(f, tags))
    }

    async fn create_floatingip_once(
        &self,
        f: &FloatingIp,
        tags: &[String],
    ) -> Result<FloatingIp, StoreError> {
        let mut w = self.begin_write().await?;
        super::quotas::check(
            &mut w,
            &self.quota_defaults,
            &f.project_id,
            None,
            super::QuotaResource::FloatingIp,
        )
        .await?;
        let inserted = sqlx::query("INSERT INTO floatingips (id, project_id, floating_network_id, floating_port_id, floating_ip_address, port_id, fixed_ip_address, description, created_at, updated_at, revision_number) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, 1)")
            .bind(f.id.clone())
            .bind(f.project_id.clone())
            .bind(f.floating_network_id.clone())
            .bind(f.floating_port_id.clone())
            .bind(f.floating_ip_address.clone())
            .bind(f.port_id.clone())
            .bind(f.fixed_ip_address.clone())
            .bind(f.description.clone())
            .bind(now())
            .execute(&mut *w.tx)
            .await;
        if let Err(e) = inserted {
            drop(w);
            return Err(self
                .fixed_ip_taken(
                    f,
                    StoreError::db(format!("inserting floating IP {}", f.id))(e),
                )
                .await);
        }
        super::tags::insert_tags(&mut w, super::Tagged::FloatingIp, &f.id, tags).await?;
        w.touch(super::changes::ChangeKind::FloatingIp, &f.id);
        w.commit().await?;
        self.get_floatingip(&f.id).await
    }

    /// One floating IP.
    pub async fn get_floatingip(&self, id: &str) -> Result<FloatingIp, StoreError> {
        let row = sqlx::query("SELECT * FROM floatingips WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading floating IP {id}")))?;
        match row {
            Some(r) => fip_from_row(&r),
            None => Err(DomainError::not_found("Floating IP", "FloatingIPNotFound", id).into()),
        }
    }

    /// Every floating IP, or a project's.
    pub async fn list_floatingips(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<FloatingIp>, StoreError> {
        let rows = match project {
            Some(p) => {
                sqlx::query("SELECT * FROM floatingips WHERE project_id = $1 ORDER BY id")
                    .bind(p.to_string())
                    .fetch_all(self.pool())
                    .await
            }
            None => {
                sqlx::query("SELECT * FROM floatingips ORDER BY id")
                    .fetch_all(self.pool())
                    .await
            }
        }
        .map_err(StoreError::db("listing floating IPs"))?;
        rows.iter().map(fip_from_row).collect()
    }

    /// Associate (or, with `None`, disassociate) a floating IP: 409
    /// `FloatingIPPortAlreadyAssociated` when the fixed IP has another floating IP.
    pub async fn update_floatingip(&self, f: &FloatingIp) -> Result<FloatingIp, StoreError> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query("UPDATE floatingips SET port_id = $1, fixed_ip_address = $2, description = $3, updated_at = $4, revision_number = revision_number + 1 WHERE id = $5 AND revision_number = $6")
            .bind(f.port_id.clone())
            .bind(f.fixed_ip_address.clone())
            .bind(f.description.clone())
            .bind(now())
            .bind(f.id.clone())
            .bind(f.revision_number)
            .execute(&mut *w.tx)
            .await;
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                drop(w);
                return Err(self
                    .fixed_ip_taken(
                        f,
                        StoreError::db(format!("updating floating IP {}", f.id))(e),
                    )
                    .await);
            }
        };
        if n.rows_affected() == 0 {
            return Err(super::missed_update(
                &mut w,
                "floatingips",
                &f.id,
                DomainError::not_found("Floating IP", "FloatingIPNotFound", &f.id),
            )
            .await);
        }
        w.touch(super::changes::ChangeKind::FloatingIp, &f.id);
        w.commit().await?;
        self.get_floatingip(&f.id).await
    }

    /// `e` as Neutron's `FloatingIPPortAlreadyAssociated` (naming the port, the fixed IP and,
    /// when it can be read, the floating IP holding it) when it is a violation of the "one
    /// floating IP per fixed IP" index; otherwise `e` unchanged. Called after the failed
    /// transaction is dropped (PostgreSQL refuses statements in an aborted one).
    async fn fixed_ip_taken(&self, f: &FloatingIp, e: StoreError) -> StoreError {
        let StoreError::Db {
            source: sqlx::Error::Database(db),
            ..
        } = &e
        else {
            return e;
        };
        // PostgreSQL names the index; SQLite names the columns.
        let msg = db.message();
        let ours = db.constraint() == Some(super::quotas::FIP_FIXED_IP_INDEX)
            || msg.contains(super::quotas::FIP_FIXED_IP_INDEX)
            || msg.contains("floatingips.port_id, floatingips.fixed_ip_address");
        let (true, Some(port), Some(fixed)) = (ours, &f.port_id, &f.fixed_ip_address) else {
            return e;
        };
        let holder = sqlx::query("SELECT id, floating_ip_address, floating_network_id FROM floatingips WHERE port_id = $1 AND fixed_ip_address = $2")
            .bind(port.clone())
            .bind(fixed.clone())
            .fetch_optional(self.pool())
            .await
            .ok()
            .flatten();
        let message = match holder {
            Some(h) => format!(
                "Cannot associate floating IP {} ({}) with port {port} using fixed IP {fixed}, as that fixed IP already has a floating IP {} ({}) on external network {}.",
                f.floating_ip_address,
                f.id,
                col_s(&h, "floating_ip_address").unwrap_or_default(),
                col_s(&h, "id").unwrap_or_default(),
                col_s(&h, "floating_network_id").unwrap_or_default(),
            ),
            None => format!(
                "Cannot associate floating IP {} ({}) with port {port} using fixed IP {fixed}, as that fixed IP already has a floating IP.",
                f.floating_ip_address, f.id
            ),
        };
        tracing::info!(floatingip = %f.id, port, fixed, "fixed IP already has a floating IP");
        DomainError::conflict("FloatingIPPortAlreadyAssociated", message).into()
    }

    /// Delete a floating IP row.
    pub async fn delete_floatingip(&self, id: &str) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        sqlx::query("DELETE FROM floatingips WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("deleting floating IP {id}")))?;
        w.touch(super::changes::ChangeKind::FloatingIp, id);
        w.commit().await
    }

    /// Floating IPs bound to a port that is gone are disassociated (Neutron does this when
    /// the port is deleted).
    pub async fn disassociate_dangling_floatingips(&self) -> Result<u64, StoreError> {
        let mut w = self.begin_write().await?;
        let dangling = sqlx::query("SELECT id FROM floatingips WHERE port_id IS NOT NULL AND port_id NOT IN (SELECT id FROM ports)")
            .fetch_all(&mut *w.tx)
            .await
            .map_err(StoreError::db("finding floating IPs of deleted ports"))?;
        if dangling.is_empty() {
            return Ok(0);
        }
        for r in &dangling {
            w.touch(super::changes::ChangeKind::FloatingIp, &col_s(r, "id")?);
        }
        let n = sqlx::query("UPDATE floatingips SET port_id = NULL, fixed_ip_address = NULL WHERE port_id IS NOT NULL AND port_id NOT IN (SELECT id FROM ports)")
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db("disassociating floating IPs of deleted ports"))?;
        w.commit().await?;
        Ok(n.rows_affected())
    }

    // ---- agents ----

    /// Register (or re-register) a node.
    /// Forget a node's registration (its published state's row stays, so a later
    /// registration's revisions keep moving forward); whether it was registered.
    pub async fn delete_agent(&self, node: &str) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM agents WHERE node = $1")
            .bind(node.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("deleting node {node}")))?;
        w.touch(super::changes::ChangeKind::Node, node);
        w.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Register a node, or refresh its registration.
    pub async fn register_agent(
        &self,
        reg: &wire::NodeRegistration,
        by: &str,
    ) -> Result<AgentRow, StoreError> {
        retrying!(self.register_agent_once(reg, by))
    }

    async fn register_agent_once(
        &self,
        reg: &wire::NodeRegistration,
        by: &str,
    ) -> Result<AgentRow, StoreError> {
        let mut w = self.begin_write().await?;
        let ts = now();
        sqlx::query("INSERT INTO agents (node, pod, registration, registered_by, registered_at, revision_applied) VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (node) DO UPDATE SET pod = $2, registration = $3, registered_by = $4, registered_at = $5")
            .bind(reg.node.clone())
            .bind(reg.pod.clone())
            .bind(js(reg))
            .bind(by.to_string())
            .bind(ts)
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("registering node {}", reg.node)))?;
        w.touch(super::changes::ChangeKind::Node, &reg.node);
        w.commit().await?;
        self.get_agent(&reg.node)
            .await?
            .ok_or_else(|| DomainError::internal("registered node vanished").into())
    }

    /// One node.
    pub async fn get_agent(&self, node: &str) -> Result<Option<AgentRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM agents WHERE node = $1")
            .bind(node.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading node {node}")))?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Set an agent's admin attributes (each `None` left as it is); `None` when the node is
    /// not registered.
    pub async fn update_agent(
        &self,
        node: &str,
        description: Option<&str>,
        admin_state_up: Option<bool>,
    ) -> Result<Option<AgentRow>, StoreError> {
        let mut w = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE agents SET description = COALESCE($1, description), admin_state_up = COALESCE($2, admin_state_up) WHERE node = $3",
        )
        .bind(description.map(str::to_string))
        .bind(admin_state_up.map(i64::from))
        .bind(node.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("updating node {node}")))?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        w.touch(super::changes::ChangeKind::Node, node);
        w.commit().await?;
        self.get_agent(node).await
    }

    /// Every node.
    pub async fn list_agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM agents ORDER BY node")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db("listing nodes"))?;
        rows.iter().map(agent_from_row).collect()
    }

    /// The registrations and last reports of `nodes` (those registered), ordered by node: one
    /// query, for judging one router without reading every node's report.
    pub async fn agents_of(&self, nodes: &[String]) -> Result<Vec<AgentRow>, StoreError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=nodes.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT * FROM agents WHERE node IN ({}) ORDER BY node",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for n in nodes {
            q = q.bind(n.clone());
        }
        let rows = q
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db(format!(
                "reading nodes {}",
                nodes.join(", ")
            )))?;
        rows.iter().map(agent_from_row).collect()
    }

    /// Store a node's status report.
    pub async fn record_report(&self, report: &wire::StatusReport) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        sqlx::query("UPDATE agents SET last_report_at = $1, revision_applied = $2, report = $3 WHERE node = $4")
            .bind(now())
            .bind(report.revision_applied as i64)
            .bind(js(report))
            .bind(report.node.clone())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("recording the report of {}", report.node)))?;
        // Other controllers' failover watchers and realization waits wake on it.
        w.notify(super::changes::REPORTS_CHANNEL, "notifying a report")
            .await?;
        w.commit().await
    }

    /// A port's status and, when unset, its host (a binding learned from an agent).
    pub async fn set_port_status(
        &self,
        port_id: &str,
        status: &str,
        host: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        if let Some(h) = host {
            let cur = sqlx::query("SELECT host_id FROM ports WHERE id = $1")
                .bind(port_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!(
                    "reading the binding of port {port_id}"
                )))?;
            if cur
                .is_some_and(|r| col_s(&r, "host_id").is_ok_and(|c| c.is_empty() && !h.is_empty()))
            {
                w.touch(super::changes::ChangeKind::Port, port_id);
            }
        }
        let n = match host {
            Some(h) => sqlx::query("UPDATE ports SET status = $1, host_id = $2, updated_at = $3, revision_number = revision_number + 1 WHERE id = $4 AND (status <> $1 OR host_id <> $2) AND (host_id = '' OR host_id = $2)")
                .bind(status.to_string())
                .bind(h.to_string())
                .bind(now())
                .bind(port_id.to_string())
                .execute(&mut *w.tx)
                .await,
            None => sqlx::query("UPDATE ports SET status = $1, updated_at = $2, revision_number = revision_number + 1 WHERE id = $3 AND status <> $1")
                .bind(status.to_string())
                .bind(now())
                .bind(port_id.to_string())
                .execute(&mut *w.tx)
                .await,
        }
        .map_err(StoreError::db(format!("setting the status of port {port_id}")))?;
        w.commit().await?;
        Ok(n.rows_affected() > 0)
    }

    // ---- published node states ----

    /// The published revision and content (state without revision, as JSON) of a node.
    pub async fn node_state(&self, node: &str) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT revision, content FROM node_states WHERE node = $1")
            .bind(node.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading the state of node {node}")))?;
        row.map(|r| Ok((col_i(&r, "revision")?, col_s(&r, "content")?)))
            .transpose()
    }

    /// Publish each node's `content` in one transaction, where it differs from what is
    /// published and what is published does not come from a later position of the change log
    /// (`source_seq`): a controller that is behind never overwrites a newer state. The
    /// revision moves by one per changed node; compare-and-set on the row, so two controllers
    /// publishing the same change bump it once. Returns, per node, the published revision and
    /// content after the call and whether this call moved it.
    ///
    /// `known` is the revision the caller believes is published (from its memory): the nodes
    /// with one are updated by one statement conditioned on it (one round trip for all of
    /// them), without reading the old content back; where the belief is stale it falls back
    /// to reading.
    pub async fn publish_node_states(
        &self,
        states: &[(String, String, Option<i64>)],
        source_seq: i64,
    ) -> Result<Vec<Published>, StoreError> {
        retrying!(self.publish_node_states_once(states, source_seq))
    }

    async fn publish_node_states_once(
        &self,
        states: &[(String, String, Option<i64>)],
        source_seq: i64,
    ) -> Result<Vec<Published>, StoreError> {
        let mut w = self.begin_write().await?;
        let mut out = Vec::with_capacity(states.len());
        // Every node whose published revision the caller knows, in one statement; only the
        // rest (new nodes, stale beliefs, another controller's newer state) are read back.
        let known: Vec<(&str, &str, i64)> = states
            .iter()
            .filter_map(|(n, c, k)| k.map(|rev| (n.as_str(), c.as_str(), rev)))
            .collect();
        let bumped = if known.is_empty() {
            Default::default()
        } else {
            bump_node_states(&mut w, &known, source_seq).await?
        };
        for (node, content, known) in states {
            if let (Some(rev), true) = (known, bumped.contains(node)) {
                out.push(Published {
                    node: node.clone(),
                    revision: rev + 1,
                    content: content.clone(),
                    moved: true,
                });
                continue;
            }
            let cur = sqlx::query(
                "SELECT revision, content, source_seq FROM node_states WHERE node = $1",
            )
            .bind(node.to_string())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("reading the state of node {node}")))?;
            let db = |e| StoreError::db(format!("publishing the state of node {node}"))(e);
            let published = match cur {
                None => {
                    sqlx::query("INSERT INTO node_states (node, revision, content, source_seq) VALUES ($1, 1, $2, $3)")
                        .bind(node.to_string())
                        .bind(content.to_string())
                        .bind(source_seq)
                        .execute(&mut *w.tx)
                        .await
                        .map_err(db)?;
                    Published {
                        node: node.clone(),
                        revision: 1,
                        content: content.clone(),
                        moved: true,
                    }
                }
                Some(row) => {
                    let (rev, old, seq) = (
                        col_i(&row, "revision")?,
                        col_s(&row, "content")?,
                        col_i(&row, "source_seq")?,
                    );
                    if old == *content || seq > source_seq {
                        Published {
                            node: node.clone(),
                            revision: rev,
                            content: old,
                            moved: false,
                        }
                    } else {
                        bump_node_state(&mut w, node, content, source_seq, rev).await?;
                        Published {
                            node: node.clone(),
                            revision: rev + 1,
                            content: content.clone(),
                            moved: true,
                        }
                    }
                }
            };
            out.push(published);
        }
        w.commit().await?;
        Ok(out)
    }

    // ---- local tags ----

    /// Every pod-local tag: (network, pod, tag).
    pub async fn local_tags(&self) -> Result<Vec<(String, String, u16)>, StoreError> {
        let rows = sqlx::query("SELECT network_id, pod, tag FROM local_tags")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db("reading local tags"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    col_s(r, "network_id")?,
                    col_s(r, "pod")?,
                    col_i(r, "tag")? as u16,
                ))
            })
            .collect()
    }

    /// The pod-local tags of one network, by pod.
    pub async fn local_tags_of(&self, network_id: &str) -> Result<Vec<(String, u16)>, StoreError> {
        let rows = sqlx::query("SELECT pod, tag FROM local_tags WHERE network_id = $1")
            .bind(network_id.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db(format!(
                "reading the local tags of {network_id}"
            )))?;
        rows.iter()
            .map(|r| Ok((col_s(r, "pod")?, col_i(r, "tag")? as u16)))
            .collect()
    }

    /// Allocate the lowest free tag of `candidates` for (network, pod) on `physnet`
    /// (idempotent: an existing allocation is kept).
    pub async fn allocate_local_tag(
        &self,
        network_id: &str,
        pod: &str,
        physnet: &str,
        candidates: &[u16],
    ) -> Result<u16, StoreError> {
        for _ in 0..8 {
            let rows = sqlx::query(
                "SELECT network_id, tag FROM local_tags WHERE physnet = $1 AND pod = $2",
            )
            .bind(physnet.to_string())
            .bind(pod.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db("reading local tags"))?;
            let mut taken = std::collections::HashSet::new();
            for r in &rows {
                if col_s(r, "network_id")? == network_id {
                    return Ok(col_i(r, "tag")? as u16);
                }
                taken.insert(col_i(r, "tag")? as u16);
            }
            let Some(tag) = candidates.iter().copied().find(|t| !taken.contains(t)) else {
                return Err(DomainError::conflict(
                    "NoNetworkAvailable",
                    format!("no pod-local VLAN tag left on physnet {physnet} in pod {pod}"),
                )
                .into());
            };
            let mut w = self.begin_write().await?;
            let r = sqlx::query("INSERT INTO local_tags (network_id, pod, physnet, tag) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(network_id.to_string())
                .bind(pod.to_string())
                .bind(physnet.to_string())
                .bind(i64::from(tag))
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("allocating a local tag for {network_id}")))?;
            if r.rows_affected() > 0 {
                w.touch(super::changes::ChangeKind::LocalTag, network_id);
            }
            w.commit().await?;
            if r.rows_affected() > 0 {
                return Ok(tag);
            }
        }
        Err(DomainError::conflict(
            "NoNetworkAvailable",
            "local tag allocation contended; retry",
        )
        .into())
    }

    /// Release a pod-local tag.
    pub async fn release_local_tag(&self, network_id: &str, pod: &str) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        sqlx::query("DELETE FROM local_tags WHERE network_id = $1 AND pod = $2")
            .bind(network_id.to_string())
            .bind(pod.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "releasing the local tag of {network_id}"
            )))?;
        w.touch(super::changes::ChangeKind::LocalTag, network_id);
        w.commit().await
    }
}
