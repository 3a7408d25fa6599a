//! The in-memory replica a monitor keeps: whole updates are applied to a copy and published
//! at once through a `watch` of `Arc<Snapshot>`, so a reader never sees half an update.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ops::{Condition, RowData};
use crate::schema::DatabaseSchema;
use crate::value::{decode_err, Value};

/// The txn id a `monitor_cond_since` sends when it has seen nothing.
pub const ZERO_TXN: Uuid = Uuid::nil();

/// One replicated row: only the monitored columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The row's `_uuid`.
    pub uuid: Uuid,
    /// Monitored columns.
    pub columns: RowData,
}

impl Row {
    /// A column's value.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.columns.get(column)
    }

    /// A scalar or optional string column.
    pub fn get_str(&self, column: &str) -> Option<&str> {
        self.get(column).and_then(Value::as_str)
    }

    /// A scalar or optional integer column.
    pub fn get_i64(&self, column: &str) -> Option<i64> {
        self.get(column).and_then(Value::as_i64)
    }

    /// A string key of a string map column (`external_ids`, `options`).
    pub fn map_str(&self, column: &str, key: &str) -> Option<&str> {
        self.get(column)?.map_get(key)?.as_str()
    }
}

/// Rows of one table by UUID.
pub type TableRows = BTreeMap<Uuid, Arc<Row>>;

/// What happened to one row in an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// New row.
    Insert,
    /// Some columns changed.
    Modify,
    /// Row gone.
    Delete,
}

/// One row change of the update that produced a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    /// Table.
    pub table: String,
    /// Row.
    pub uuid: Uuid,
    /// Kind.
    pub kind: ChangeKind,
}

/// A consistent view of the monitored tables after a whole update.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Increases by one per published update; a gap means updates were coalesced.
    pub seq: u64,
    /// The last transaction id the server reported (`None` if it reports none, e.g. a
    /// standalone database, or before the first reply).
    pub last_txn_id: Option<Uuid>,
    /// True when this snapshot replaced the whole replica (first sync or a resume the server
    /// could not serve as a diff); `changes` is then empty.
    pub reset: bool,
    /// Row changes of the update that produced this snapshot.
    pub changes: Arc<Vec<RowChange>>,
    /// Monitored tables.
    pub tables: BTreeMap<String, Arc<TableRows>>,
}

impl Snapshot {
    /// Rows of a table (empty if not monitored).
    pub fn rows(&self, table: &str) -> impl Iterator<Item = &Arc<Row>> {
        self.tables.get(table).into_iter().flat_map(|t| t.values())
    }

    /// One row by UUID.
    pub fn row(&self, table: &str, uuid: &Uuid) -> Option<&Arc<Row>> {
        self.tables.get(table)?.get(uuid)
    }

    /// Rows whose string `column` equals `value` (linear scan).
    pub fn find_by_str<'a>(
        &'a self,
        table: &str,
        column: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Row>> + 'a {
        self.rows(table)
            .filter(move |r| r.get_str(column) == Some(value))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

/// What to monitor in one table: the columns (only these are replicated) and an optional
/// server-side condition.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorRequest {
    /// Table.
    pub table: String,
    /// Columns replicated; empty means every column.
    pub columns: Vec<String>,
    /// Server-side filter (`monitor_cond` `where`); empty means all rows.
    pub conditions: Vec<Condition>,
}

impl MonitorRequest {
    /// All rows of `table`, only `columns`.
    pub fn new(table: &str, columns: &[&str]) -> Self {
        MonitorRequest {
            table: table.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            conditions: Vec::new(),
        }
    }
}

/// Shared state of one monitor, updated by the connection's reader in message order.
pub(crate) struct MonitorShared {
    pub(crate) id: String,
    pub(crate) db: String,
    pub(crate) schema: Arc<DatabaseSchema>,
    pub(crate) requests: Vec<MonitorRequest>,
    pub(crate) tx: watch::Sender<Arc<Snapshot>>,
}

impl MonitorShared {
    /// The third parameter of `monitor_cond(_since)`.
    pub(crate) fn requests_json(&self) -> Json {
        let mut o = serde_json::Map::new();
        for r in &self.requests {
            let mut req = serde_json::Map::new();
            if !r.columns.is_empty() {
                req.insert("columns".into(), json!(r.columns));
            }
            if !r.conditions.is_empty() {
                req.insert(
                    "where".into(),
                    Json::Array(r.conditions.iter().map(Condition::to_json).collect()),
                );
            }
            o.insert(r.table.clone(), json!([Json::Object(req)]));
        }
        Json::Object(o)
    }

    /// The last txn id seen, to resume from.
    pub(crate) fn last_txn_id(&self) -> Uuid {
        self.tx.borrow().last_txn_id.unwrap_or(ZERO_TXN)
    }

    /// Applies `table-updates2` (RFC 7047 extension) on top of the current snapshot, or on an
    /// empty one when `reset`, and publishes the result in one step.
    ///
    /// Everything that can fail (decoding, a modify of an unknown row) is done first; the
    /// snapshot is then changed in place under the watch's lock, copying a table or row only
    /// when a reader still holds the previous snapshot (copy on write), so an update costs
    /// what it changes, not the size of the replica.
    pub(crate) fn apply(&self, updates: &Json, txn_id: Option<Uuid>, reset: bool) -> Result<()> {
        let preps = self.prepare(updates, reset)?;
        let txn_id = txn_id.filter(|u| !u.is_nil());
        if reset {
            let cur_seq = self.tx.borrow().seq;
            let mut next = Snapshot {
                seq: cur_seq + 1,
                last_txn_id: txn_id,
                reset: true,
                changes: Arc::new(Vec::new()),
                tables: self
                    .requests
                    .iter()
                    .map(|r| (r.table.clone(), Arc::new(TableRows::new())))
                    .collect(),
            };
            apply_preps(&mut next, preps);
            tracing::debug!(db = %self.db, monitor = %self.id, seq = next.seq, "replica replaced");
            self.tx.send_replace(Arc::new(next));
            return Ok(());
        }
        self.tx.send_modify(|cur| {
            let snap = Arc::make_mut(cur);
            snap.seq += 1;
            snap.reset = false;
            if txn_id.is_some() {
                snap.last_txn_id = txn_id;
            }
            let changes = apply_preps(snap, preps);
            snap.changes = Arc::new(changes);
            tracing::trace!(db = %self.db, monitor = %self.id, seq = snap.seq, changes = snap.changes.len(), "replica updated");
        });
        Ok(())
    }

    /// Decodes an update into changes that cannot fail to apply.
    fn prepare(&self, updates: &Json, reset: bool) -> Result<Vec<Prep>> {
        let obj = updates
            .as_object()
            .ok_or_else(|| decode_err("table-updates2", format!("not an object: {updates}")))?;
        let cur = self.tx.borrow();
        let mut preps = Vec::new();
        for (table, rows) in obj {
            let rows = rows
                .as_object()
                .ok_or_else(|| decode_err("table-update2", format!("{table}: not an object")))?;
            for (uuid_s, ru) in rows {
                let uuid = Uuid::parse_str(uuid_s)
                    .map_err(|e| decode_err("row uuid", format!("{table} {uuid_s}: {e}")))?;
                let (kind, body) = ru
                    .as_object()
                    .and_then(|o| o.iter().next())
                    .ok_or_else(|| decode_err("row-update2", format!("{table} {uuid_s}: {ru}")))?;
                let body_obj = || {
                    body.as_object().ok_or_else(|| {
                        decode_err("row-update2", format!("{table} {uuid_s} {kind}: {body}"))
                    })
                };
                let prep = match kind.as_str() {
                    "initial" | "insert" => {
                        let mut columns =
                            crate::ops::decode_row(Some(&self.schema), table, body_obj()?)?;
                        self.fill_defaults(table, &mut columns);
                        Prep::Put {
                            table: table.clone(),
                            uuid,
                            columns,
                            announce: !reset,
                        }
                    }
                    "modify" => {
                        if reset || cur.row(table, &uuid).is_none() {
                            return Err(Error::Decode {
                                what: "row-update2 modify".into(),
                                reason: format!("{table} {uuid}: row not in replica"),
                            });
                        }
                        let mut diffs = Vec::new();
                        for (col, diff) in body_obj()? {
                            let ty = self.schema.column_type_ref(table, col).ok_or_else(|| {
                                decode_err(
                                    "row-update2",
                                    format!("{table}.{col}: column not in schema"),
                                )
                            })?;
                            let value = ty.decode(diff)?;
                            diffs.push(ColumnDiff {
                                column: col.clone(),
                                replace: ty.max == Some(1),
                                value,
                            });
                        }
                        Prep::Modify {
                            table: table.clone(),
                            uuid,
                            diffs,
                        }
                    }
                    "delete" => Prep::Delete {
                        table: table.clone(),
                        uuid,
                    },
                    other => {
                        return Err(decode_err(
                            "row-update2",
                            format!("{table} {uuid}: unknown kind {other}"),
                        ))
                    }
                };
                preps.push(prep);
            }
        }
        Ok(preps)
    }

    /// Inserts leave out columns holding their default value: put the defaults back so a
    /// reader can compare every monitored column.
    fn fill_defaults(&self, table: &str, row: &mut RowData) {
        let Some(ts) = self.schema.tables.get(table) else {
            return;
        };
        let wanted: Vec<&String> = match self.requests.iter().find(|r| r.table == table) {
            Some(r) if !r.columns.is_empty() => r.columns.iter().collect(),
            _ => ts.columns.keys().collect(),
        };
        for c in wanted {
            if row.contains_key(c) {
                continue;
            }
            if let Some(cs) = ts.columns.get(c) {
                row.insert(c.clone(), cs.ty.default_value());
            }
        }
    }
}

/// One decoded row update.
enum Prep {
    Put {
        table: String,
        uuid: Uuid,
        columns: RowData,
        announce: bool,
    },
    Modify {
        table: String,
        uuid: Uuid,
        diffs: Vec<ColumnDiff>,
    },
    Delete {
        table: String,
        uuid: Uuid,
    },
}

/// One column of a `modify`.
struct ColumnDiff {
    column: String,
    /// ovsdb-server sends the new value, not a diff, for columns of at most one element.
    replace: bool,
    value: Value,
}

/// Applies decoded updates (copy on write through the `Arc`s) and returns the row changes.
fn apply_preps(snap: &mut Snapshot, preps: Vec<Prep>) -> Vec<RowChange> {
    let mut changes = Vec::new();
    for p in preps {
        match p {
            Prep::Put {
                table,
                uuid,
                columns,
                announce,
            } => {
                let t = Arc::make_mut(snap.tables.entry(table.clone()).or_default());
                t.insert(uuid, Arc::new(Row { uuid, columns }));
                if announce {
                    changes.push(RowChange {
                        table,
                        uuid,
                        kind: ChangeKind::Insert,
                    });
                }
            }
            Prep::Modify { table, uuid, diffs } => {
                let t = Arc::make_mut(snap.tables.entry(table.clone()).or_default());
                if let Some(r) = t.get_mut(&uuid) {
                    let row = Arc::make_mut(r);
                    for d in diffs {
                        apply_column_diff(row, d);
                    }
                    changes.push(RowChange {
                        table,
                        uuid,
                        kind: ChangeKind::Modify,
                    });
                }
            }
            Prep::Delete { table, uuid } => {
                if let Some(t) = snap.tables.get_mut(&table) {
                    if t.contains_key(&uuid) {
                        Arc::make_mut(t).remove(&uuid);
                    }
                }
                changes.push(RowChange {
                    table,
                    uuid,
                    kind: ChangeKind::Delete,
                });
            }
        }
    }
    changes
}

/// `modify` semantics: at-most-one-element columns are replaced, sets toggle the listed
/// elements, maps insert new keys, delete keys given with their current value and replace
/// the others.
fn apply_column_diff(row: &mut Row, d: ColumnDiff) {
    if d.replace {
        row.columns.insert(d.column, d.value);
        return;
    }
    let slot = row
        .columns
        .entry(d.column)
        .or_insert_with(|| match &d.value {
            Value::Map(_) => Value::Map(Default::default()),
            _ => Value::Set(BTreeSet::new()),
        });
    match (slot, d.value) {
        (Value::Map(old), Value::Map(dm)) => {
            for (k, v) in dm {
                if old.get(&k) == Some(&v) {
                    old.remove(&k);
                } else {
                    old.insert(k, v);
                }
            }
        }
        (Value::Set(old), Value::Set(ds)) => {
            for a in ds {
                if !old.remove(&a) {
                    old.insert(a);
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A handle on a monitor's replica: read the current snapshot or wait for changes.
#[derive(Clone)]
pub struct Replica {
    pub(crate) shared: Arc<MonitorShared>,
}

impl Replica {
    /// The current consistent snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.tx.borrow().clone()
    }

    /// A receiver that wakes on every published snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.tx.subscribe()
    }

    /// Waits until `pred` holds for a snapshot, or `timeout` passes (then returns the last
    /// snapshot as the error value, so a test can say what it saw).
    pub async fn wait_for<F>(
        &self,
        timeout: std::time::Duration,
        mut pred: F,
    ) -> std::result::Result<Arc<Snapshot>, Arc<Snapshot>>
    where
        F: FnMut(&Snapshot) -> bool,
    {
        let mut rx = self.subscribe();
        let fut = async {
            loop {
                let s = rx.borrow_and_update().clone();
                if pred(&s) {
                    return s;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| self.snapshot())
    }

    /// The monitor's database.
    pub fn db(&self) -> &str {
        &self.shared.db
    }
}
