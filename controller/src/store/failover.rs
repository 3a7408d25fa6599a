//! Router failover's rows: each node's `lost` flag (on its agent row, flipped by a
//! conditional update so two controllers making the same decision move things once) and the
//! sticky placements of router instances and DHCP servers (`placements`, the planner's
//! `RouterNode`/`DhcpNode` allocations). The nodes' liveness reports themselves are the
//! agents' last status reports (`agents.report`).

use std::collections::BTreeMap;

use super::changes::ChangeKind;
use super::{col_s, now, retrying, Store};
use crate::error::StoreError;

/// Migration 16: a node's `lost` flag and when it last flipped.
pub(crate) const LOST_MIGRATION: &str = r#"
ALTER TABLE agents ADD COLUMN lost BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN lost_changed_at TEXT NOT NULL DEFAULT ''
"#;

/// Migration 17: sticky placements, one row per (kind, object, pod); `since` is when the
/// object came to its current node.
pub(crate) const PLACEMENTS_MIGRATION: &str = r#"
CREATE TABLE placements (
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    pod TEXT NOT NULL,
    node TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (kind, object_id, pod)
)
"#;

/// What a placement places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlacementKind {
    /// A router's instance in a pod.
    Router,
    /// A network's DHCP server in a pod.
    Dhcp,
}

impl PlacementKind {
    /// Its name in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementKind::Router => "router",
            PlacementKind::Dhcp => "dhcp",
        }
    }

    /// The change-log id of an object's placements (`router:<id>`, `dhcp:<network>`).
    pub fn log_id(self, object_id: &str) -> String {
        format!("{}:{object_id}", self.as_str())
    }

    /// Split a change-log id back.
    pub fn parse_log_id(id: &str) -> Option<(PlacementKind, &str)> {
        let (k, rest) = id.split_once(':')?;
        let kind = match k {
            "router" => PlacementKind::Router,
            "dhcp" => PlacementKind::Dhcp,
            _ => return None,
        };
        Some((kind, rest))
    }
}

/// One placement row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRow {
    /// What it places.
    pub kind: PlacementKind,
    /// Router or network id.
    pub object_id: String,
    /// Pod.
    pub pod: String,
    /// The node.
    pub node: String,
    /// When it came to this node.
    pub since: String,
}

fn placement_from_row(r: &sqlx::any::AnyRow) -> Result<Option<PlacementRow>, StoreError> {
    let kind = match col_s(r, "kind")?.as_str() {
        "router" => PlacementKind::Router,
        "dhcp" => PlacementKind::Dhcp,
        _ => return Ok(None),
    };
    Ok(Some(PlacementRow {
        kind,
        object_id: col_s(r, "object_id")?,
        pod: col_s(r, "pod")?,
        node: col_s(r, "node")?,
        since: col_s(r, "since")?,
    }))
}

impl Store {
    /// Flip a node's `lost` flag to `lost` if it is not so already, logging the node as
    /// changed, in one transaction; whether this call flipped it (false: unknown node, or
    /// already so — another controller decided first).
    pub async fn set_node_lost(&self, node: &str, lost: bool) -> Result<bool, StoreError> {
        retrying!(self.set_node_lost_once(node, lost))
    }

    async fn set_node_lost_once(&self, node: &str, lost: bool) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE agents SET lost = $1, lost_changed_at = $2 WHERE node = $3 AND lost = $4",
        )
        .bind(i64::from(lost))
        .bind(now())
        .bind(node.to_string())
        .bind(i64::from(!lost))
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("judging node {node}")))?;
        let flipped = r.rows_affected() == 1;
        if flipped {
            w.touch(ChangeKind::Node, node);
        }
        w.commit().await?;
        Ok(flipped)
    }

    /// Place `object_id`'s (kind) instance in `pod` on `node` (a no-op when it is there).
    pub async fn hold_placement(
        &self,
        kind: PlacementKind,
        object_id: &str,
        pod: &str,
        node: &str,
    ) -> Result<(), StoreError> {
        retrying!(self.hold_placement_once(kind, object_id, pod, node))
    }

    async fn hold_placement_once(
        &self,
        kind: PlacementKind,
        object_id: &str,
        pod: &str,
        node: &str,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        let r = sqlx::query(
            "INSERT INTO placements (kind, object_id, pod, node, since) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, object_id, pod) DO UPDATE SET node = $4, since = $5 WHERE placements.node <> $4",
        )
        .bind(kind.as_str())
        .bind(object_id.to_string())
        .bind(pod.to_string())
        .bind(node.to_string())
        .bind(now())
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("placing {object_id} in {pod}")))?;
        if r.rows_affected() > 0 {
            w.touch(ChangeKind::Placement, &kind.log_id(object_id));
        }
        w.commit().await
    }

    /// Forget the placement of `object_id` in `pod` if it is still on `node` (a move
    /// rewrites the row first: then this is a no-op).
    pub async fn release_placement(
        &self,
        kind: PlacementKind,
        object_id: &str,
        pod: &str,
        node: &str,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        let r = sqlx::query(
            "DELETE FROM placements WHERE kind = $1 AND object_id = $2 AND pod = $3 AND node = $4",
        )
        .bind(kind.as_str())
        .bind(object_id.to_string())
        .bind(pod.to_string())
        .bind(node.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!(
            "releasing the placement of {object_id}"
        )))?;
        if r.rows_affected() > 0 {
            w.touch(ChangeKind::Placement, &kind.log_id(object_id));
        }
        w.commit().await
    }

    /// Every placement.
    pub async fn list_placements(&self) -> Result<Vec<PlacementRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM placements ORDER BY kind, object_id, pod")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db("listing placements"))?;
        let mut out = Vec::new();
        for r in &rows {
            out.extend(placement_from_row(r)?);
        }
        Ok(out)
    }

    /// One object's placements: pod → row.
    pub async fn placements_of(
        &self,
        kind: PlacementKind,
        object_id: &str,
    ) -> Result<BTreeMap<String, PlacementRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM placements WHERE kind = $1 AND object_id = $2")
            .bind(kind.as_str())
            .bind(object_id.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db(format!(
                "reading the placements of {object_id}"
            )))?;
        let mut out = BTreeMap::new();
        for r in &rows {
            if let Some(p) = placement_from_row(r)? {
                out.insert(p.pod.clone(), p);
            }
        }
        Ok(out)
    }
}
