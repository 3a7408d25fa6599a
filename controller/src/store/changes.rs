//! The change log: every write transaction appends the objects it touched (kind + id) to the
//! `changes` table in the same transaction, so the log is exactly as durable as the change.
//! Realizers (in this process and in every other controller on the same database) tail it and
//! re-read only those objects, instead of re-reading the whole store per change.
//!
//! On PostgreSQL the commit also sends `NOTIFY crosspod_changes` (delivered at commit), so
//! other controllers wake at once; in-process, a watch channel wakes the local realizer.
//! Sequence numbers may commit out of order on PostgreSQL (two transactions take 10 and 11,
//! 11 commits first): [`Cursor`] remembers such holes for a while and reads them again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{col_i, col_s, Backend, Store, WriteTx};
use crate::error::StoreError;

/// The PostgreSQL notification channel of the change log.
pub const CHANNEL: &str = "crosspod_changes";

/// The channel an agent's status report is announced on (PostgreSQL), at its commit: what
/// other controllers' failover watchers and realization waits wake on.
pub const REPORTS_CHANNEL: &str = "crosspod_reports";

/// How long a hole in the sequence is waited for (a transaction that took a sequence number
/// and has not committed yet) before it is taken for a rollback.
pub const HOLE_PATIENCE: Duration = Duration::from_secs(30);

/// Migration 4: the change log, and the log position each published node state comes from.
pub const CHANGES_MIGRATION: &str = r#"
CREATE TABLE changes (
    seq {SERIAL},
    kind TEXT NOT NULL,
    object_id TEXT NOT NULL,
    at TEXT NOT NULL
);
ALTER TABLE node_states ADD COLUMN source_seq BIGINT NOT NULL DEFAULT 0
"#;

/// What kind of object a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// A network row (its subnets and local tags go with it when it is deleted).
    Network,
    /// A subnet row.
    Subnet,
    /// A port row or its addresses.
    Port,
    /// A router row.
    Router,
    /// A floating IP row.
    FloatingIp,
    /// A project's bridge /24 (`bridge_allocations`).
    Project,
    /// A registered node.
    Node,
    /// A pod.
    Pod,
    /// The pod-local tags of a network.
    LocalTag,
    /// A security group or its rules (membership changes are the port's).
    SecurityGroup,
    /// The sticky placements of one router's instances or one network's DHCP servers (id
    /// `router:<id>` or `dhcp:<network>`).
    Placement,
}

impl ChangeKind {
    /// The name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Network => "network",
            ChangeKind::Subnet => "subnet",
            ChangeKind::Port => "port",
            ChangeKind::Router => "router",
            ChangeKind::FloatingIp => "floatingip",
            ChangeKind::Project => "project",
            ChangeKind::Node => "node",
            ChangeKind::Pod => "pod",
            ChangeKind::LocalTag => "local_tag",
            ChangeKind::SecurityGroup => "security_group",
            ChangeKind::Placement => "placement",
        }
    }

    /// The kind stored under `s`.
    pub fn parse(s: &str) -> Option<ChangeKind> {
        Some(match s {
            "network" => ChangeKind::Network,
            "subnet" => ChangeKind::Subnet,
            "port" => ChangeKind::Port,
            "router" => ChangeKind::Router,
            "floatingip" => ChangeKind::FloatingIp,
            "project" => ChangeKind::Project,
            "node" => ChangeKind::Node,
            "pod" => ChangeKind::Pod,
            "local_tag" => ChangeKind::LocalTag,
            "security_group" => ChangeKind::SecurityGroup,
            "placement" => ChangeKind::Placement,
            _ => return None,
        })
    }
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    /// Position in the log.
    pub seq: i64,
    /// What was touched.
    pub kind: ChangeKind,
    /// Its id (node name for nodes, project id for projects, network id for local tags).
    pub object_id: String,
}

/// A reader's position in the log: everything up to `last` is read except the `holes`.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    last: i64,
    holes: BTreeMap<i64, Instant>,
}

impl Cursor {
    /// A cursor after `seq`.
    pub fn at(seq: i64) -> Cursor {
        Cursor {
            last: seq,
            holes: BTreeMap::new(),
        }
    }

    /// The highest position read.
    pub fn last(&self) -> i64 {
        self.last
    }

    /// Where the next read starts (the oldest hole still waited for, else `last`).
    fn from(&mut self) -> i64 {
        let now = Instant::now();
        self.holes
            .retain(|_, since| now.duration_since(*since) < HOLE_PATIENCE);
        self.holes
            .keys()
            .next()
            .map(|h| h - 1)
            .unwrap_or(self.last)
            .min(self.last)
    }

    /// Keep the rows not read yet and move past them.
    fn advance(&mut self, rows: Vec<ChangeRow>) -> Vec<ChangeRow> {
        let mut fresh = Vec::new();
        for r in rows {
            if r.seq > self.last {
                let now = Instant::now();
                for missing in self.last + 1..r.seq {
                    self.holes.insert(missing, now);
                }
                self.last = r.seq;
                fresh.push(r);
            } else if self.holes.remove(&r.seq).is_some() {
                fresh.push(r);
            }
        }
        fresh
    }
}

impl WriteTx<'_> {
    /// On PostgreSQL, announce `channel` to other controllers' listeners at this
    /// transaction's commit (nothing on SQLite: one controller only).
    pub(crate) async fn notify(&mut self, channel: &str, what: &str) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(channel.to_string())
                .execute(&mut *self.tx)
                .await
                .map_err(StoreError::db(what.to_string()))?;
        }
        Ok(())
    }

    /// Record that this transaction touched `kind`/`id` (written at commit).
    pub(crate) fn touch(&mut self, kind: ChangeKind, id: &str) {
        if !self
            .touched
            .iter()
            .any(|(k, i)| *k == kind && i.as_str() == id)
        {
            self.touched.push((kind, id.to_string()));
        }
    }

    /// Append the touched objects to the log (inside the transaction).
    pub(crate) async fn write_changes(&mut self) -> Result<(), StoreError> {
        if self.touched.is_empty() {
            return Ok(());
        }
        let at = super::now();
        for (kind, id) in std::mem::take(&mut self.touched) {
            sqlx::query("INSERT INTO changes (kind, object_id, at) VALUES ($1, $2, $3)")
                .bind(kind.as_str())
                .bind(id.clone())
                .bind(at.clone())
                .execute(&mut *self.tx)
                .await
                .map_err(StoreError::db(format!(
                    "logging the change of {} {id}",
                    kind.as_str()
                )))?;
        }
        self.notify(CHANNEL, "notifying the change log").await?;
        self.logged = true;
        Ok(())
    }
}

impl Store {
    /// The last position of the log (0 when empty).
    pub async fn last_change_seq(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM changes")
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::db("reading the end of the change log"))?;
        col_i(&row, "m")
    }

    /// The entries `cursor` has not read yet, oldest first; moves the cursor past them.
    pub async fn read_changes(&self, cursor: &mut Cursor) -> Result<Vec<ChangeRow>, StoreError> {
        let from = cursor.from();
        let rows = sqlx::query(
            "SELECT seq, kind, object_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT 10000",
        )
        .bind(from)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::db("reading the change log"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let kind = col_s(r, "kind")?;
            let Some(kind) = ChangeKind::parse(&kind) else {
                tracing::warn!(kind, "unknown kind in the change log; skipped");
                continue;
            };
            out.push(ChangeRow {
                seq: col_i(r, "seq")?,
                kind,
                object_id: col_s(r, "object_id")?,
            });
        }
        Ok(cursor.advance(out))
    }

    /// Forget entries older than `age` (every reader re-reads the whole store at start and
    /// periodically, so the log only needs to cover the time between).
    pub async fn prune_changes(&self, age: Duration) -> Result<u64, StoreError> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(age.as_secs());
        let r = sqlx::query("DELETE FROM changes WHERE at < $1")
            .bind(super::format_utc(secs))
            .execute(self.pool())
            .await
            .map_err(StoreError::db("pruning the change log"))?;
        Ok(r.rows_affected())
    }

    /// A receiver that changes after every commit in this process that logged a change.
    pub fn local_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64) -> ChangeRow {
        ChangeRow {
            seq,
            kind: ChangeKind::Port,
            object_id: format!("p{seq}"),
        }
    }

    #[test]
    fn a_cursor_reads_holes_when_they_commit_later() {
        let mut c = Cursor::at(9);
        let got = c.advance(vec![row(10), row(12)]);
        assert_eq!(got.len(), 2);
        assert_eq!(c.last(), 12);
        // 11 committed late: the next read starts before it and returns it once.
        assert_eq!(c.from(), 10);
        let got = c.advance(vec![row(11), row(12)]);
        assert_eq!(got, vec![row(11)]);
        assert_eq!(c.from(), 12);
        assert!(c.advance(vec![row(12)]).is_empty());
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            ChangeKind::Network,
            ChangeKind::Subnet,
            ChangeKind::Port,
            ChangeKind::Router,
            ChangeKind::FloatingIp,
            ChangeKind::Project,
            ChangeKind::Node,
            ChangeKind::Pod,
            ChangeKind::LocalTag,
            ChangeKind::SecurityGroup,
            ChangeKind::Placement,
        ] {
            assert_eq!(ChangeKind::parse(k.as_str()), Some(k));
        }
    }
}
