//! Transaction operations (RFC 7047 section 5.2), their JSON form, their schema check, and
//! the per-operation results.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value as Json};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::schema::DatabaseSchema;
use crate::value::Value;

/// A row as read from the server (select results, replicas, `wait` rows): column name to
/// value.
pub type RowData = BTreeMap<String, Value>;

/// A table or column name in an operation: the names this crate and its callers write are
/// literals, borrowed for free instead of allocated once per operation.
pub type Name = Cow<'static, str>;

/// The column values an `insert` or `update` writes, in the order given.
///
/// A short vector, not a map: a written row holds a few columns, and a 1,000-port
/// transaction builds 2,000 of them; one `BTreeMap` node (about 720 bytes) and one owned key
/// per column were half the cost of building such a transaction (issue 22). Setting a column
/// twice keeps the last value, as a map would.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowValues(Vec<(Name, Value)>);

impl RowValues {
    /// No columns.
    pub fn new() -> Self {
        Self::default()
    }

    /// No columns yet, room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// Sets `column`, replacing (and returning) an earlier value of it.
    pub fn insert(&mut self, column: impl Into<Name>, value: impl Into<Value>) -> Option<Value> {
        let column = column.into();
        let value = value.into();
        match self.0.iter_mut().find(|(c, _)| *c == column) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.0.push((column, value));
                None
            }
        }
    }

    /// The value written to `column`, if any.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.0.iter().find(|(c, _)| c == column).map(|(_, v)| v)
    }

    /// Columns and values, in the order set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(c, v)| (&**c, v))
    }

    /// The column names, in the order set.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(c, _)| &**c)
    }

    /// Number of columns set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no column is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<Name>, V: Into<Value>> FromIterator<(K, V)> for RowValues {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(items: I) -> Self {
        let mut row = RowValues::new();
        for (k, v) in items {
            row.insert(k, v);
        }
        row
    }
}

impl<K: Into<Name>, V: Into<Value>, const N: usize> From<[(K, V); N]> for RowValues {
    fn from(items: [(K, V); N]) -> Self {
        let mut row = RowValues::with_capacity(N);
        for (k, v) in items {
            row.insert(k, v);
        }
        row
    }
}

impl From<RowData> for RowValues {
    fn from(row: RowData) -> Self {
        RowValues(row.into_iter().map(|(k, v)| (Name::Owned(k), v)).collect())
    }
}

/// A JSON object, columns in the order set.
impl serde::Serialize for RowValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (c, v) in &self.0 {
            m.serialize_entry(&**c, v)?;
        }
        m.end()
    }
}

/// A condition's comparison function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `includes`
    Includes,
    /// `excludes`
    Excludes,
}

impl Function {
    fn as_str(self) -> &'static str {
        match self {
            Function::Eq => "==",
            Function::Ne => "!=",
            Function::Lt => "<",
            Function::Le => "<=",
            Function::Gt => ">",
            Function::Ge => ">=",
            Function::Includes => "includes",
            Function::Excludes => "excludes",
        }
    }
}

/// One clause of a `where`: `[column, function, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Column name (`_uuid` allowed).
    pub column: String,
    /// Comparison.
    pub function: Function,
    /// Right-hand side.
    pub value: Value,
}

impl Condition {
    /// `column == value`.
    pub fn eq(column: &str, value: impl Into<Value>) -> Self {
        Condition {
            column: column.to_string(),
            function: Function::Eq,
            value: value.into(),
        }
    }

    /// `_uuid == uuid`.
    pub fn uuid(uuid: Uuid) -> Self {
        Condition::eq("_uuid", uuid)
    }

    /// Any comparison.
    pub fn new(column: &str, function: Function, value: impl Into<Value>) -> Self {
        Condition {
            column: column.to_string(),
            function,
            value: value.into(),
        }
    }

    pub(crate) fn to_json(&self) -> Json {
        json!([self.column, self.function.as_str(), self.value.to_json()])
    }
}

/// A mutator (RFC 7047 section 5.1, `<mutator>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutator {
    /// `+=` on integers/reals.
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// `/=`
    Div,
    /// `%=`
    Mod,
    /// `insert` into a set or map.
    Insert,
    /// `delete` from a set or map (a set of keys deletes map entries by key).
    Delete,
}

impl Mutator {
    fn as_str(self) -> &'static str {
        match self {
            Mutator::Add => "+=",
            Mutator::Sub => "-=",
            Mutator::Mul => "*=",
            Mutator::Div => "/=",
            Mutator::Mod => "%=",
            Mutator::Insert => "insert",
            Mutator::Delete => "delete",
        }
    }
}

/// One mutation: `[column, mutator, value]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    /// Column name.
    pub column: String,
    /// What to do.
    pub mutator: Mutator,
    /// Operand.
    pub value: Value,
}

impl Mutation {
    /// Any mutation.
    pub fn new(column: &str, mutator: Mutator, value: impl Into<Value>) -> Self {
        Mutation {
            column: column.to_string(),
            mutator,
            value: value.into(),
        }
    }
}

/// One transaction operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Insert a row, optionally naming it for later ops and choosing its UUID.
    Insert {
        /// Table.
        table: Name,
        /// Column values.
        row: RowValues,
        /// `uuid-name` for `named-uuid` references later in the transaction.
        uuid_name: Option<String>,
        /// Explicit `uuid` (OVSDB 2.x extension; ovsdb-server accepts it).
        uuid: Option<Uuid>,
    },
    /// Select rows.
    Select {
        /// Table.
        table: Name,
        /// Conditions (all must hold).
        conditions: Vec<Condition>,
        /// Columns to return; `None` returns all.
        columns: Option<Vec<String>>,
    },
    /// Update columns of matching rows.
    Update {
        /// Table.
        table: Name,
        /// Conditions.
        conditions: Vec<Condition>,
        /// New values.
        row: RowValues,
    },
    /// Mutate columns of matching rows.
    Mutate {
        /// Table.
        table: Name,
        /// Conditions.
        conditions: Vec<Condition>,
        /// Mutations.
        mutations: Vec<Mutation>,
    },
    /// Delete matching rows.
    Delete {
        /// Table.
        table: Name,
        /// Conditions.
        conditions: Vec<Condition>,
    },
    /// Wait until the matching rows' columns equal (or differ from) `rows`.
    Wait {
        /// Table.
        table: Name,
        /// Conditions.
        conditions: Vec<Condition>,
        /// Columns compared.
        columns: Vec<String>,
        /// `true` waits for `==`, `false` for `!=`.
        until_equal: bool,
        /// Expected rows (projections on `columns`).
        rows: Vec<RowData>,
        /// Milliseconds before the server gives up with `timed out`; `None` waits forever.
        timeout_ms: Option<u64>,
    },
    /// Commit, optionally durably.
    Commit {
        /// Wait for the disk write.
        durable: bool,
    },
    /// Abort the transaction (always an error result).
    Abort,
    /// A comment for the server log.
    Comment(String),
    /// Require that this session holds the named lock.
    Assert {
        /// Lock name.
        lock: String,
    },
}

impl Operation {
    /// The RFC name of the operation.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Insert { .. } => "insert",
            Operation::Select { .. } => "select",
            Operation::Update { .. } => "update",
            Operation::Mutate { .. } => "mutate",
            Operation::Delete { .. } => "delete",
            Operation::Wait { .. } => "wait",
            Operation::Commit { .. } => "commit",
            Operation::Abort => "abort",
            Operation::Comment(_) => "comment",
            Operation::Assert { .. } => "assert",
        }
    }

    /// The table named by the operation, if any.
    pub fn table(&self) -> Option<&str> {
        match self {
            Operation::Insert { table, .. }
            | Operation::Select { table, .. }
            | Operation::Update { table, .. }
            | Operation::Mutate { table, .. }
            | Operation::Delete { table, .. }
            | Operation::Wait { table, .. } => Some(table),
            _ => None,
        }
    }

    /// True for operations that can change the database.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Operation::Insert { .. }
                | Operation::Update { .. }
                | Operation::Mutate { .. }
                | Operation::Delete { .. }
        )
    }

    /// The columns the operation names (for error reports).
    pub fn columns(&self) -> Vec<String> {
        match self {
            Operation::Insert { row, .. } | Operation::Update { row, .. } => {
                row.columns().map(str::to_string).collect()
            }
            Operation::Mutate { mutations, .. } => {
                mutations.iter().map(|m| m.column.clone()).collect()
            }
            Operation::Select { columns, .. } => columns.clone().unwrap_or_default(),
            Operation::Wait { columns, .. } => columns.clone(),
            _ => Vec::new(),
        }
    }

    /// The JSON form sent in `transact`.
    pub fn to_json(&self) -> Json {
        fn row_json<'a>(row: impl Iterator<Item = (&'a str, &'a Value)>) -> Json {
            Json::Object(
                row.map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect::<Map<_, _>>(),
            )
        }
        fn where_json(c: &[Condition]) -> Json {
            Json::Array(c.iter().map(Condition::to_json).collect())
        }
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
                uuid,
            } => {
                let mut o = json!({"op": "insert", "table": table, "row": row_json(row.iter())});
                if let Some(n) = uuid_name {
                    o["uuid-name"] = json!(n);
                }
                if let Some(u) = uuid {
                    o["uuid"] = json!(u.to_string());
                }
                o
            }
            Operation::Select {
                table,
                conditions,
                columns,
            } => {
                let mut o =
                    json!({"op": "select", "table": table, "where": where_json(conditions)});
                if let Some(c) = columns {
                    o["columns"] = json!(c);
                }
                o
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                json!({"op": "update", "table": table, "where": where_json(conditions), "row": row_json(row.iter())})
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => json!({
                "op": "mutate", "table": table, "where": where_json(conditions),
                "mutations": mutations.iter().map(|m| json!([m.column, m.mutator.as_str(), m.value.to_json()])).collect::<Vec<_>>()
            }),
            Operation::Delete { table, conditions } => {
                json!({"op": "delete", "table": table, "where": where_json(conditions)})
            }
            Operation::Wait {
                table,
                conditions,
                columns,
                until_equal,
                rows,
                timeout_ms,
            } => {
                let mut o = json!({
                    "op": "wait", "table": table, "where": where_json(conditions), "columns": columns,
                    "until": if *until_equal { "==" } else { "!=" },
                    "rows": rows.iter().map(|r| row_json(r.iter().map(|(k, v)| (k.as_str(), v)))).collect::<Vec<_>>(),
                });
                if let Some(t) = timeout_ms {
                    o["timeout"] = json!(t);
                }
                o
            }
            Operation::Commit { durable } => json!({"op": "commit", "durable": durable}),
            Operation::Abort => json!({"op": "abort"}),
            Operation::Comment(c) => json!({"op": "comment", "comment": c}),
            Operation::Assert { lock } => json!({"op": "assert", "lock": lock}),
        }
    }

    /// Checks table and column names and value types against the schema.
    pub fn check(&self, index: usize, schema: &DatabaseSchema) -> Result<()> {
        let Some(table) = self.table() else {
            return Ok(());
        };
        let err = |column: &str, reason: String| Error::Schema {
            index,
            op: self.kind(),
            table: table.to_string(),
            column: column.to_string(),
            reason,
        };
        let ts = schema
            .tables
            .get(table)
            .ok_or_else(|| err("", format!("no such table in {}", schema.name)))?;
        // Borrowed from the schema, not copied: thousands of lookups per large transaction.
        let column = |c: &str| {
            ts.column_type_ref(c)
                .ok_or_else(|| err(c, "no such column".to_string()))
        };
        let check_where = |conds: &[Condition]| -> Result<()> {
            for c in conds {
                let ty = column(&c.column)?;
                match c.function {
                    Function::Includes | Function::Excludes => {}
                    _ if ty.is_scalar() => {
                        ty.check(&c.value).map_err(|r| err(&c.column, r))?;
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        let check_row =
            |row: &mut dyn Iterator<Item = (&str, &Value)>, writing: bool| -> Result<()> {
                for (c, v) in row {
                    let ty = column(c)?;
                    if writing {
                        if c.starts_with('_') {
                            return Err(err(c, "read-only column".into()));
                        }
                        if matches!(self, Operation::Update { .. })
                            && ts.columns.get(c).is_some_and(|cs| !cs.mutable)
                        {
                            return Err(err(c, "column is immutable".into()));
                        }
                    }
                    ty.check(v).map_err(|r| err(c, r))?;
                }
                Ok(())
            };
        match self {
            Operation::Insert { row, .. } => check_row(&mut row.iter(), true),
            Operation::Update {
                row, conditions, ..
            } => {
                check_where(conditions)?;
                check_row(&mut row.iter(), true)
            }
            Operation::Select {
                conditions,
                columns,
                ..
            } => {
                check_where(conditions)?;
                for c in columns.iter().flatten() {
                    column(c)?;
                }
                Ok(())
            }
            Operation::Delete { conditions, .. } => check_where(conditions),
            Operation::Wait {
                conditions,
                columns,
                rows,
                ..
            } => {
                check_where(conditions)?;
                for c in columns {
                    column(c)?;
                }
                for r in rows {
                    check_row(&mut r.iter().map(|(k, v)| (k.as_str(), v)), false)?;
                }
                Ok(())
            }
            Operation::Mutate {
                conditions,
                mutations,
                ..
            } => {
                check_where(conditions)?;
                for m in mutations {
                    let ty = column(&m.column)?;
                    if m.column.starts_with('_')
                        || ts.columns.get(&m.column).is_some_and(|cs| !cs.mutable)
                    {
                        return Err(err(&m.column, "column cannot be mutated".into()));
                    }
                    match m.mutator {
                        Mutator::Insert | Mutator::Delete => {
                            if ty.is_scalar() {
                                return Err(err(
                                    &m.column,
                                    format!("{} needs a set or map column", m.mutator.as_str()),
                                ));
                            }
                            // The operand's element types must fit; its size need not.
                            let mut relaxed = ty.clone();
                            relaxed.min = 0;
                            relaxed.max = None;
                            if ty.is_map() && m.mutator == Mutator::Delete {
                                if let Value::Set(keys) = &m.value {
                                    for k in keys {
                                        ty.key.check(k).map_err(|r| err(&m.column, r))?;
                                    }
                                    continue;
                                }
                            }
                            relaxed.check(&m.value).map_err(|r| err(&m.column, r))?;
                        }
                        _ => {
                            if ty.is_map() {
                                return Err(err(&m.column, "arithmetic on a map column".into()));
                            }
                            let mut base = ty.key.clone();
                            // Range limits apply to the result, not the operand.
                            base.min_integer = None;
                            base.max_integer = None;
                            match &m.value {
                                Value::Atom(a) => base.check(a).map_err(|r| err(&m.column, r))?,
                                _ => {
                                    return Err(err(
                                        &m.column,
                                        "arithmetic operand must be one atom".into(),
                                    ))
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// `[column, function, value]`, as [`Condition`]'s JSON form.
impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.column, self.function.as_str(), &self.value).serialize(s)
    }
}

/// `[column, mutator, value]`.
impl serde::Serialize for Mutation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.column, self.mutator.as_str(), &self.value).serialize(s)
    }
}

/// The same JSON as [`Operation::to_json`], written straight to the serializer: what
/// `transact` sends, without an intermediate `serde_json::Value` tree per operation.
impl serde::Serialize for Operation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("op", self.kind())?;
        match self {
            Operation::Insert {
                table,
                row,
                uuid_name,
                uuid,
            } => {
                m.serialize_entry("table", table)?;
                m.serialize_entry("row", row)?;
                if let Some(n) = uuid_name {
                    m.serialize_entry("uuid-name", n)?;
                }
                if let Some(u) = uuid {
                    let mut buf = Uuid::encode_buffer();
                    m.serialize_entry("uuid", &*u.hyphenated().encode_lower(&mut buf))?;
                }
            }
            Operation::Select {
                table,
                conditions,
                columns,
            } => {
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
                if let Some(c) = columns {
                    m.serialize_entry("columns", c)?;
                }
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
                m.serialize_entry("row", row)?;
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => {
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
                m.serialize_entry("mutations", mutations)?;
            }
            Operation::Delete { table, conditions } => {
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
            }
            Operation::Wait {
                table,
                conditions,
                columns,
                until_equal,
                rows,
                timeout_ms,
            } => {
                m.serialize_entry("table", table)?;
                m.serialize_entry("where", conditions)?;
                m.serialize_entry("columns", columns)?;
                m.serialize_entry("until", if *until_equal { "==" } else { "!=" })?;
                m.serialize_entry("rows", rows)?;
                if let Some(t) = timeout_ms {
                    m.serialize_entry("timeout", t)?;
                }
            }
            Operation::Commit { durable } => m.serialize_entry("durable", durable)?,
            Operation::Abort => {}
            Operation::Comment(c) => m.serialize_entry("comment", c)?,
            Operation::Assert { lock } => m.serialize_entry("lock", lock)?,
        }
        m.end()
    }
}

/// The `params` of a `transact`: `[db, op, op, ...]`, serialised in place.
pub(crate) struct TransactParams<'a> {
    pub(crate) db: &'a str,
    pub(crate) ops: &'a [Operation],
}

impl serde::Serialize for TransactParams<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut q = s.serialize_seq(Some(self.ops.len() + 1))?;
        q.serialize_element(self.db)?;
        for op in self.ops {
            q.serialize_element(op)?;
        }
        q.end()
    }
}

/// The result of one successful operation.
#[derive(Debug, Clone, PartialEq)]
pub enum OpResult {
    /// `insert`: the new row's UUID.
    Insert(Uuid),
    /// `select`: the rows, undecoded column values normalised through the schema when known.
    Select(Vec<RowData>),
    /// `update`, `mutate`, `delete`: rows matched.
    Count(u64),
    /// Anything else (`wait`, `commit`, `comment`, `assert`): nothing to report.
    Empty,
}

impl OpResult {
    /// The UUID of an insert.
    pub fn uuid(&self) -> Option<Uuid> {
        match self {
            OpResult::Insert(u) => Some(*u),
            _ => None,
        }
    }

    /// The row count of an update, mutate or delete.
    pub fn count(&self) -> Option<u64> {
        match self {
            OpResult::Count(n) => Some(*n),
            _ => None,
        }
    }

    /// The rows of a select.
    pub fn rows(&self) -> &[RowData] {
        match self {
            OpResult::Select(r) => r,
            _ => &[],
        }
    }
}

/// Decodes one row object of a select or update through the schema when possible.
pub(crate) fn decode_row(
    schema: Option<&DatabaseSchema>,
    table: &str,
    obj: &Map<String, Json>,
) -> Result<RowData> {
    let mut row = RowData::new();
    for (c, v) in obj {
        let val = match schema.and_then(|s| s.column_type_ref(table, c)) {
            Some(ty) => ty
                .decode(v)
                .map_err(|e| crate::value::decode_err(&format!("{table}.{c}"), e.to_string()))?,
            None => Value::from_json(v)?,
        };
        row.insert(c.clone(), val);
    }
    Ok(row)
}

/// What parsing a `transact` reply needs of each operation sent.
pub(crate) trait OpInfo {
    /// `insert`, `select`, ...
    fn kind(&self) -> &'static str;
    /// The table, if the op names one.
    fn table(&self) -> Option<&str>;
    /// The columns it names, comma separated (for an error report).
    fn columns_text(&self) -> String;
}

impl OpInfo for Operation {
    fn kind(&self) -> &'static str {
        Operation::kind(self)
    }
    fn table(&self) -> Option<&str> {
        Operation::table(self)
    }
    fn columns_text(&self) -> String {
        self.columns().join(",")
    }
}

/// An operation once sent: only what its result and an error report need. Made while the
/// server works, so the operation's values are freed then, not after the reply.
pub(crate) struct Sent {
    kind: &'static str,
    table: Option<Name>,
    columns: String,
}

impl From<Operation> for Sent {
    fn from(op: Operation) -> Sent {
        let kind = op.kind();
        let columns = op.columns().join(",");
        let table = match op {
            Operation::Insert { table, .. }
            | Operation::Select { table, .. }
            | Operation::Update { table, .. }
            | Operation::Mutate { table, .. }
            | Operation::Delete { table, .. }
            | Operation::Wait { table, .. } => Some(table),
            _ => None,
        };
        Sent {
            kind,
            table,
            columns,
        }
    }
}

impl OpInfo for Sent {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }
    fn columns_text(&self) -> String {
        self.columns.clone()
    }
}

/// Parses a `transact` reply's result (its JSON text) for `ops`: what [`crate::Client::transact`]
/// does with a reply, public for benchmarks and for callers holding a reply themselves.
pub fn parse_transact_result(
    db: &str,
    ops: &[Operation],
    result: &str,
    schema: Option<&DatabaseSchema>,
) -> Result<Vec<OpResult>> {
    parse_results(db, ops, result, schema)
}

/// One element of a `transact` result, fields kept as text until an op needs them: only an
/// insert's uuid, a count, a select's rows or an error is ever decoded.
#[derive(serde::Deserialize)]
struct OpReply<'a> {
    #[serde(default, borrow)]
    uuid: Option<&'a RawValue>,
    #[serde(default, borrow)]
    count: Option<&'a RawValue>,
    #[serde(default, borrow)]
    rows: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    details: Option<&'a RawValue>,
}

/// The result array, read into a vector sized for `expected` elements up front: grown by
/// doubling, a 2,000-op reply's vector was reallocated a dozen times, past malloc's mmap
/// threshold, on the caller's time after the reply.
fn replies(result: &str, expected: usize) -> serde_json::Result<Vec<Option<OpReply<'_>>>> {
    use serde::de::{DeserializeSeed, SeqAccess, Visitor};
    struct Sized(usize);
    impl<'de> Visitor<'de> for Sized {
        type Value = Vec<Option<OpReply<'de>>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of operation results")
        }
        fn visit_seq<A: SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(self.0);
            while let Some(r) = seq.next_element()? {
                v.push(r);
            }
            Ok(v)
        }
    }
    impl<'de> DeserializeSeed<'de> for Sized {
        type Value = Vec<Option<OpReply<'de>>>;
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }
    let mut de = serde_json::Deserializer::from_str(result);
    let v = Sized(expected).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// `["uuid","<uuid>"]`: the exact spelling ovsdb-server writes is cut out directly, anything
/// else (spaces, escapes) goes through the JSON parser.
fn insert_uuid(raw: &RawValue) -> Option<Uuid> {
    let t = raw.get();
    if let Some(u) = t
        .strip_prefix("[\"uuid\",\"")
        .and_then(|r| r.strip_suffix("\"]"))
    {
        if let Ok(u) = Uuid::try_parse(u) {
            return Some(u);
        }
    }
    let (tag, u): (std::borrow::Cow<str>, std::borrow::Cow<str>) = serde_json::from_str(t).ok()?;
    (tag == "uuid").then(|| Uuid::try_parse(&u).ok()).flatten()
}

/// Turns the `transact` result array (its JSON text) into per-op results, or the first
/// failure. Parsed straight into typed values: no JSON tree of the whole reply is built.
pub(crate) fn parse_results<O: OpInfo>(
    db: &str,
    ops: &[O],
    result: &str,
    schema: Option<&DatabaseSchema>,
) -> Result<Vec<OpResult>> {
    let bad = |reason: String| Error::BadReply {
        method: "transact".into(),
        reason,
    };
    // RFC 7047: `null` for an op not attempted after an earlier one failed.
    let arr = replies(result, ops.len() + 1).map_err(|e| {
        bad(format!(
            "result is not an array of operation results ({e}): {}",
            crate::rpc::excerpt(result)
        ))
    })?;
    // The first error wins; a result longer than the ops carries a commit-time error.
    for (i, r) in arr.iter().enumerate() {
        let Some((e, r)) = r
            .as_ref()
            .and_then(|r| Some((r.error.filter(|e| e.get() != "null")?, r)))
        else {
            continue;
        };
        let op = ops.get(i);
        let e: Json = serde_json::from_str(e.get()).unwrap_or(Json::Null);
        let details = r
            .details
            .and_then(|d| serde_json::from_str::<Json>(d.get()).ok())
            .and_then(|d| d.as_str().map(str::to_string));
        return Err(Error::OpFailed(Box::new(crate::error::OpFailure {
            db: db.to_string(),
            index: i,
            op: op.map(OpInfo::kind).unwrap_or("commit"),
            table: op.and_then(OpInfo::table).unwrap_or_default().to_string(),
            columns: op.map(OpInfo::columns_text).unwrap_or_default(),
            error: e
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string()),
            details,
        })));
    }
    if arr.len() < ops.len() {
        return Err(bad(format!("{} results for {} ops", arr.len(), ops.len())));
    }
    let shown = |r: &Option<OpReply>| match r {
        None => "null".to_string(),
        Some(r) => {
            let f = |n: &str, v: Option<&RawValue>| {
                v.map(|v| format!("{n}: {}", crate::rpc::excerpt(v.get())))
            };
            let parts: Vec<String> = [f("uuid", r.uuid), f("count", r.count), f("rows", r.rows)]
                .into_iter()
                .flatten()
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    };
    let mut out = Vec::with_capacity(ops.len());
    for (i, (op, r)) in ops.iter().zip(&arr).enumerate() {
        out.push(match op.kind() {
            "insert" => OpResult::Insert(
                r.as_ref()
                    .and_then(|r| r.uuid)
                    .and_then(insert_uuid)
                    .ok_or_else(|| {
                        bad(format!("op {i}: insert result without uuid: {}", shown(r)))
                    })?,
            ),
            "select" => {
                let rows: Vec<Map<String, Json>> = r
                    .as_ref()
                    .and_then(|r| r.rows)
                    .ok_or_else(|| bad(format!("op {i}: select result without rows: {}", shown(r))))
                    .and_then(|rows| {
                        serde_json::from_str(rows.get()).map_err(|e| {
                            bad(format!(
                                "op {i}: select rows are not objects ({e}): {}",
                                crate::rpc::excerpt(rows.get())
                            ))
                        })
                    })?;
                let table = op.table().unwrap_or_default();
                OpResult::Select(
                    rows.iter()
                        .map(|row| decode_row(schema, table, row))
                        .collect::<Result<_>>()?,
                )
            }
            kind @ ("update" | "mutate" | "delete") => OpResult::Count(
                r.as_ref()
                    .and_then(|r| r.count)
                    .and_then(|c| c.get().parse::<u64>().ok())
                    .ok_or_else(|| {
                        bad(format!("op {i}: {kind} result without count: {}", shown(r)))
                    })?,
            ),
            _ => OpResult::Empty,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Atom;

    /// A written row keeps its columns in the order set, a column set twice keeps its last
    /// value (in its first place), and it is sent as a JSON object in that order.
    #[test]
    fn row_values_replace_in_place_and_keep_order() {
        let mut row = RowValues::from([("name", Value::from("p1")), ("tag", Value::from(5i64))]);
        row.insert(String::from("trunks"), Value::empty_set());
        assert_eq!(row.insert("tag", 7i64), Some(Value::from(5i64)));
        assert_eq!(row.len(), 3);
        assert_eq!(row.get("tag"), Some(&Value::from(7i64)));
        assert_eq!(row.get("nope"), None);
        assert_eq!(row.columns().collect::<Vec<_>>(), ["name", "tag", "trunks"]);
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"name":"p1","tag":7,"trunks":["set",[]]}"#
        );
        let twice: RowValues = [("a", 1i64), ("b", 2), ("a", 3)].into_iter().collect();
        assert_eq!(serde_json::to_string(&twice).unwrap(), r#"{"a":3,"b":2}"#);
        assert!(RowValues::new().is_empty());
    }

    /// The serializer writes exactly the JSON of `to_json` for every kind of operation and
    /// value, so the fast path sends what the schema check and the tests were written against.
    #[test]
    fn serialize_is_to_json() {
        let u = Uuid::parse_str("0f6e3d2e-1484-4fdb-8e00-000000000001").unwrap();
        let row = RowData::from([
            ("name".to_string(), Value::from("p1")),
            ("tag".to_string(), Value::set([101i64])),
            ("trunks".to_string(), Value::empty_set()),
            ("ofport".to_string(), Value::Atom(Atom::Real(1.5))),
            ("up".to_string(), Value::Atom(Atom::Boolean(true))),
            ("ref".to_string(), Value::Atom(Atom::Uuid(u))),
            (
                "iface".to_string(),
                Value::set([Atom::NamedUuid("i1".into())]),
            ),
            (
                "external_ids".to_string(),
                Value::string_map([("iface-id", "a\"b\\c"), ("k", "ü")]),
            ),
        ]);
        let ops = vec![
            Operation::Insert {
                table: "Port".into(),
                row: row.clone().into(),
                uuid_name: Some("p1".into()),
                uuid: Some(u),
            },
            Operation::Insert {
                table: "Port".into(),
                row: RowValues::new(),
                uuid_name: None,
                uuid: None,
            },
            Operation::Select {
                table: "Port".into(),
                conditions: vec![Condition::eq("name", "p1"), Condition::uuid(u)],
                columns: Some(vec!["name".into(), "tag".into()]),
            },
            Operation::Select {
                table: "Port".into(),
                conditions: vec![],
                columns: None,
            },
            Operation::Update {
                table: "Port".into(),
                conditions: vec![Condition::new("tag", Function::Ge, 5i64)],
                row: row.into(),
            },
            Operation::Mutate {
                table: "Bridge".into(),
                conditions: vec![Condition::eq("name", "br0")],
                mutations: vec![
                    Mutation::new("ports", Mutator::Insert, Value::set([Atom::Uuid(u)])),
                    Mutation::new("n", Mutator::Add, Value::from(1i64)),
                ],
            },
            Operation::Delete {
                table: "Port".into(),
                conditions: vec![Condition::new("name", Function::Ne, "x")],
            },
            Operation::Wait {
                table: "Port".into(),
                conditions: vec![],
                columns: vec!["name".into()],
                until_equal: false,
                rows: vec![RowData::from([("name".to_string(), Value::from("p"))])],
                timeout_ms: Some(10),
            },
            Operation::Commit { durable: true },
            Operation::Abort,
            Operation::Comment("c \"q\"".into()),
            Operation::Assert { lock: "l".into() },
        ];
        for op in &ops {
            assert_eq!(serde_json::to_value(op).unwrap(), op.to_json(), "{op:?}");
        }
        let params = serde_json::to_value(TransactParams {
            db: "Open_vSwitch",
            ops: &ops,
        })
        .unwrap();
        let mut want = vec![json!("Open_vSwitch")];
        want.extend(ops.iter().map(Operation::to_json));
        assert_eq!(params, Json::Array(want));
    }

    fn txn() -> Vec<Operation> {
        vec![
            Operation::Insert {
                table: "Port".into(),
                row: RowValues::from([("name", Value::from("p1"))]),
                uuid_name: Some("p1".into()),
                uuid: None,
            },
            Operation::Mutate {
                table: "Bridge".into(),
                conditions: vec![Condition::eq("name", "br0")],
                mutations: vec![Mutation::new(
                    "ports",
                    Mutator::Insert,
                    Value::set([Atom::NamedUuid("p1".into())]),
                )],
            },
            Operation::Select {
                table: "Port".into(),
                conditions: vec![],
                columns: Some(vec!["name".into(), "tag".into()]),
            },
            Operation::Comment("c".into()),
        ]
    }

    const U: &str = "0f6e3d2e-1484-4fdb-8e00-000000000001";

    fn parse(text: &str) -> Result<Vec<OpResult>> {
        parse_results("Open_vSwitch", &txn(), text, None)
    }

    fn bad_reply(r: Result<Vec<OpResult>>) -> String {
        match r {
            Err(Error::BadReply { method, reason }) => {
                assert_eq!(method, "transact");
                reason
            }
            other => panic!("expected a bad reply, got {other:?}"),
        }
    }

    fn op_failed(r: Result<Vec<OpResult>>) -> crate::error::OpFailure {
        match r {
            Err(Error::OpFailed(f)) => *f,
            other => panic!("expected an op failure, got {other:?}"),
        }
    }

    /// The typed parser gives what ovsdb-server's replies mean: a uuid per insert, a count,
    /// rows, nothing for a comment; fields it does not need (or knows) are skipped unread,
    /// and a spelling with spaces parses like the compact one.
    #[test]
    fn typed_results() {
        let u = Uuid::parse_str(U).unwrap();
        let compact = format!(
            r#"[{{"uuid":["uuid","{U}"]}},{{"count":1}},{{"rows":[{{"name":"p1","tag":["set",[]]}},{{"name":"p2","tag":7}}]}},{{}}]"#
        );
        let spaced = format!(
            r#" [ {{ "uuid" : [ "uuid" , "{U}" ] , "x": {{"deep": [1, "]"]}} }}, {{"count": 1, "error": null}}, {{"rows": [{{"name": "p1", "tag": ["set", []]}}, {{"name": "p2", "tag": 7}}]}}, {{"details": 5}} ] "#
        );
        for text in [compact, spaced] {
            let r = parse(&text).unwrap();
            assert_eq!(r[0], OpResult::Insert(u), "{text}");
            assert_eq!(r[1], OpResult::Count(1));
            assert_eq!(r[2].rows().len(), 2);
            assert_eq!(r[2].rows()[1]["tag"], Value::from(7i64));
            assert_eq!(r[3], OpResult::Empty);
        }
        // An escaped uuid string is still a uuid (the JSON parser path).
        let esc = U.replacen('0', "\\u0030", 1);
        let r = parse(&format!(
            r#"[{{"uuid":["uuid","{esc}"]}},{{"count":0}},{{"rows":[]}},{{}}]"#
        ))
        .unwrap();
        assert_eq!(r[0].uuid(), Some(u));
        assert_eq!(r[1].count(), Some(0));
    }

    /// The first error wins, with the op it belongs to; ops after it are `null` (RFC 7047) or
    /// missing; an error past the last op is the commit's.
    #[test]
    fn errors_and_partial_results() {
        let f = op_failed(parse(
            r#"[{"uuid":["uuid","0f6e3d2e-1484-4fdb-8e00-000000000001"]},{"error":"constraint violation","details":"tag 5000 out of range"},null,null]"#,
        ));
        assert_eq!((f.index, f.op, f.table.as_str()), (1, "mutate", "Bridge"));
        assert_eq!(f.columns, "ports");
        assert_eq!(f.error, "constraint violation");
        assert_eq!(f.details.as_deref(), Some("tag 5000 out of range"));
        // Truncated after the failure (what ovsdb-server sends).
        let f = op_failed(parse(r#"[{"error":"referential integrity violation"}]"#));
        assert_eq!((f.index, f.op), (0, "insert"));
        assert_eq!(f.details, None);
        // A commit-time error follows the last op's result.
        let f = op_failed(parse(&format!(
            r#"[{{"uuid":["uuid","{U}"]}},{{"count":1}},{{"rows":[]}},{{}},{{"error":"timed out","details":{{"x":1}}}}]"#
        )));
        assert_eq!((f.index, f.op, f.table.as_str()), (4, "commit", ""));
        assert_eq!(f.details, None, "non-string details are dropped");
        // A non-string error is kept as its JSON text.
        let f = op_failed(parse(r#"[{"error":{"code":7}}]"#));
        assert_eq!(f.error, r#"{"code":7}"#);
    }

    /// Replies that are not what RFC 7047 says: a clear `BadReply` naming the op and showing
    /// what came, never a panic.
    #[test]
    fn odd_replies() {
        let ok_tail = r#"{"count":1},{"rows":[]},{}"#;
        let cases: Vec<(String, &str)> = vec![
            ("{}".into(), "not an array"),
            ("\"x\"".into(), "not an array"),
            ("[1,2,3,4]".into(), "not an array of operation results"),
            (
                format!(r#"[{{"count":1}},{ok_tail}]"#),
                "op 0: insert result without uuid: {count: 1}",
            ),
            (
                format!(r#"[null,{ok_tail}]"#),
                "op 0: insert result without uuid: null",
            ),
            (
                format!(r#"[{{"uuid":["named-uuid","p1"]}},{ok_tail}]"#),
                "op 0: insert result without uuid",
            ),
            (
                format!(r#"[{{"uuid":["uuid","not-a-uuid"]}},{ok_tail}]"#),
                "insert result without uuid",
            ),
            (
                format!(r#"[{{"uuid":"{U}"}},{ok_tail}]"#),
                "insert result without uuid",
            ),
            (
                format!(r#"[{{"uuid":["uuid","{U}"]}},{{"count":-1}},{{"rows":[]}},{{}}]"#),
                "op 1: mutate result without count: {count: -1}",
            ),
            (
                format!(r#"[{{"uuid":["uuid","{U}"]}},{{"count":"1"}},{{"rows":[]}},{{}}]"#),
                "op 1: mutate result without count",
            ),
            (
                format!(r#"[{{"uuid":["uuid","{U}"]}},{{"count":1}},{{}},{{}}]"#),
                "op 2: select result without rows",
            ),
            (
                format!(r#"[{{"uuid":["uuid","{U}"]}},{{"count":1}},{{"rows":[1]}},{{}}]"#),
                "op 2: select rows are not objects",
            ),
            (
                format!(r#"[{{"uuid":["uuid","{U}"]}},{{"count":1}}]"#),
                "2 results for 4 ops",
            ),
            ("[]".into(), "0 results for 4 ops"),
        ];
        for (text, want) in cases {
            let reason = bad_reply(parse(&text));
            assert!(reason.contains(want), "{text}: {reason}");
        }
        // Invalid JSON inside is an error too, not a partial result.
        let reason = bad_reply(parse(&format!(
            r#"[{{"uuid":["uuid","{U}"]}},{{"count":1}},{{"rows":[}}]"#
        )));
        assert!(
            reason.contains("not an array of operation results"),
            "{reason}"
        );
        // A long odd reply is cut in the message.
        let long = format!("{{\"x\":\"{}\"}}", "y".repeat(10_000));
        assert!(bad_reply(parse(&long)).len() < 600);
    }

    /// The ops as kept while the server works parse a reply exactly like the ops themselves.
    #[test]
    fn sent_ops_parse_like_the_ops() {
        let sent: Vec<Sent> = txn().into_iter().map(Sent::from).collect();
        for text in [
            format!(r#"[{{"uuid":["uuid","{U}"]}},{{"count":3}},{{"rows":[{{"name":"p1"}}]}},{{}}]"#),
            r#"[{"uuid":["uuid","0f6e3d2e-1484-4fdb-8e00-000000000001"]},{"error":"e","details":"d"}]"#.into(),
            r#"[{},{"count":1},{"rows":[]},{}]"#.into(),
        ] {
            let a = format!("{:?}", parse(&text));
            let b = format!("{:?}", parse_results("Open_vSwitch", &sent, &text, None));
            assert_eq!(a, b, "{text}");
        }
        let f = op_failed(parse_results(
            "Open_vSwitch",
            &sent,
            r#"[{},{"error":"e"}]"#,
            None,
        ));
        assert_eq!(
            (f.op, f.table.as_str(), f.columns.as_str()),
            ("mutate", "Bridge", "ports")
        );
    }
}
