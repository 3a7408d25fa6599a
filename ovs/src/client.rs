//! The client callers hold: requests on the current session, a supervisor that reconnects
//! with capped exponential backoff and resumes every monitor from the last txn id it saw,
//! and operation counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::ops::{parse_results, OpResult, Operation, Sent};
use crate::replica::{MonitorRequest, MonitorShared, Replica, Snapshot};
use crate::rpc::{Conn, ConnConfig, MonitorKind, Monitors};
use crate::schema::DatabaseSchema;
use crate::transport::Endpoint;

/// How to reach the server and how patient to be.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server.
    pub endpoint: Endpoint,
    /// How long one request may wait for its reply (including waiting for a reconnect).
    pub request_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Send an echo after this long without a message, and drop the session after twice
    /// this long; `None` disables the probe.
    pub inactivity_probe: Option<Duration>,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Reconnect after the session drops (otherwise the client stays closed).
    pub reconnect: bool,
}

impl ClientConfig {
    /// Defaults: 30 s requests, 5 s connect, 5 s probe, backoff 100 ms doubling to 8 s.
    pub fn new(endpoint: Endpoint) -> Self {
        ClientConfig {
            endpoint,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            inactivity_probe: Some(Duration::from_secs(5)),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(8),
            reconnect: true,
        }
    }
}

/// Operation counts since the client was created: what the agent reports to prove a restart
/// with nothing to change wrote nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `transact` requests sent.
    pub transactions: u64,
    /// Of those, transactions holding at least one insert, update, mutate or delete.
    pub write_transactions: u64,
    /// Operations sent in all transactions.
    pub operations: u64,
    /// Rows inserted plus rows the server reported as matched by update, mutate and delete.
    pub rows_changed: u64,
    /// Transactions the server rejected.
    pub failed_transactions: u64,
    /// Sessions opened after the first.
    pub reconnects: u64,
    /// Monitor (re)subscriptions the server answered with a diff since our last txn id.
    pub monitor_resumes_found: u64,
    /// Monitor (re)subscriptions that replaced the whole replica.
    pub monitor_full_syncs: u64,
}

#[derive(Default)]
struct AtomicCounters {
    transactions: AtomicU64,
    write_transactions: AtomicU64,
    operations: AtomicU64,
    rows_changed: AtomicU64,
    failed_transactions: AtomicU64,
    reconnects: AtomicU64,
    monitor_resumes_found: AtomicU64,
    monitor_full_syncs: AtomicU64,
}

/// The state callers and the supervisor share.
struct Shared {
    config: ClientConfig,
    endpoint: String,
    conn: watch::Sender<Option<Arc<Conn>>>,
    closed: AtomicBool,
    monitors: Monitors,
    schemas: Mutex<HashMap<String, Arc<DatabaseSchema>>>,
    counters: AtomicCounters,
    next_monitor: AtomicU64,
    since_supported: AtomicBool,
}

struct Inner {
    shared: Arc<Shared>,
    supervisor: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.supervisor.abort();
        self.shared.conn.send_replace(None);
    }
}

/// An OVSDB client. Cheap to clone; the session and its reconnects end when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects to `endpoint` with default settings.
    pub async fn connect_to(endpoint: &str) -> Result<Client> {
        Client::connect(ClientConfig::new(Endpoint::parse(endpoint)?)).await
    }

    /// Opens the first session (failing if the server is not there) and starts the
    /// supervisor that reconnects later.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let monitors: Monitors = Arc::default();
        let conn = Conn::open(&conn_config(&config), monitors.clone()).await?;
        Ok(Client::with_session(config, monitors, Some(Arc::new(conn))))
    }

    /// Returns at once and connects in the background with backoff (for a daemon that may
    /// start before its ovsdb-server). Requests wait up to the request timeout for a session.
    pub fn start(config: ClientConfig) -> Client {
        Client::with_session(config, Arc::default(), None)
    }

    fn with_session(config: ClientConfig, monitors: Monitors, conn: Option<Arc<Conn>>) -> Client {
        let shared = Arc::new(Shared {
            endpoint: config.endpoint.to_string(),
            config,
            conn: watch::Sender::new(conn),
            closed: AtomicBool::new(false),
            monitors,
            schemas: Mutex::default(),
            counters: AtomicCounters::default(),
            next_monitor: AtomicU64::new(1),
            since_supported: AtomicBool::new(true),
        });
        let supervisor = tokio::spawn(supervise(shared.clone()));
        Client {
            inner: Arc::new(Inner { shared, supervisor }),
        }
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The server this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.shared().endpoint
    }

    /// True while a session is up.
    pub fn is_connected(&self) -> bool {
        self.shared()
            .conn
            .borrow()
            .as_ref()
            .is_some_and(|c| c.closed_reason().is_none())
    }

    /// The current session, waiting up to the request timeout for a reconnect.
    async fn session(&self) -> Result<Arc<Conn>> {
        let s = self.shared();
        let mut rx = s.conn.subscribe();
        let wait = async {
            loop {
                if s.closed.load(Ordering::Relaxed) {
                    return Err(Error::Closed {
                        endpoint: s.endpoint.clone(),
                    });
                }
                if let Some(c) = rx.borrow_and_update().as_ref() {
                    if c.closed_reason().is_none() {
                        return Ok(c.clone());
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(Error::Closed {
                        endpoint: s.endpoint.clone(),
                    });
                }
            }
        };
        match tokio::time::timeout(s.config.request_timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(Error::Disconnected {
                endpoint: s.endpoint.clone(),
                reason: format!(
                    "not connected, no session within {:?}",
                    s.config.request_timeout
                ),
            }),
        }
    }

    /// Sends any JSON-RPC request and returns its result.
    pub async fn call(&self, method: &str, params: Json) -> Result<Json> {
        let conn = self.session().await?;
        conn.call(method, params, self.shared().config.request_timeout)
            .await
    }

    /// `echo`: a round trip that proves the session is alive.
    pub async fn echo(&self) -> Result<()> {
        let r = self.call("echo", json!(["crosspod"])).await?;
        if r != json!(["crosspod"]) {
            return Err(Error::BadReply {
                method: "echo".into(),
                reason: format!("echo returned {r}"),
            });
        }
        Ok(())
    }

    /// `list_dbs`.
    pub async fn list_dbs(&self) -> Result<Vec<String>> {
        let r = self.call("list_dbs", json!([])).await?;
        r.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Json::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .ok_or_else(|| Error::BadReply {
                method: "list_dbs".into(),
                reason: format!("not an array: {r}"),
            })
    }

    /// `get_schema`, parsed and cached for the life of the client.
    pub async fn get_schema(&self, db: &str) -> Result<Arc<DatabaseSchema>> {
        if let Some(s) = self.shared().schemas.lock().expect("schemas lock").get(db) {
            return Ok(s.clone());
        }
        let r = self.call("get_schema", json!([db])).await?;
        let s = Arc::new(DatabaseSchema::from_json(&r)?);
        self.shared()
            .schemas
            .lock()
            .expect("schemas lock")
            .insert(db.to_string(), s.clone());
        Ok(s)
    }

    /// `transact`: checks every op against the schema, sends them as one transaction and
    /// returns one result per op, or the first failure (which op, table, columns, and the
    /// server's error and details).
    pub async fn transact(&self, db: &str, ops: &[Operation]) -> Result<Vec<OpResult>> {
        let schema = self.before_transact(db, ops).await?;
        let started = std::time::Instant::now();
        let res = match self.send_transact(db, ops).await {
            Ok((conn, id, rx)) => {
                conn.response(id, "transact", rx, self.shared().config.request_timeout)
                    .await
            }
            Err(e) => Err(e),
        };
        let parsed = res.and_then(|r| parse_results(db, ops, r.text(), Some(&schema)));
        self.after_transact(db, ops.len(), started, parsed)
    }

    /// [`Client::transact`] taking the operations: once they are sent, their values are
    /// dropped while the server works (what the reply's parsing needs is kept), instead of
    /// after the reply, on the caller's time. What [`crate::vswitch::TxnBuilder::commit`] uses.
    pub async fn transact_owned(&self, db: &str, ops: Vec<Operation>) -> Result<Vec<OpResult>> {
        let schema = self.before_transact(db, &ops).await?;
        let started = std::time::Instant::now();
        let n = ops.len();
        let (res, sent) = match self.send_transact(db, &ops).await {
            Ok((conn, id, rx)) => {
                let sent: Vec<Sent> = ops.into_iter().map(Sent::from).collect();
                let r = conn
                    .response(id, "transact", rx, self.shared().config.request_timeout)
                    .await;
                (r, sent)
            }
            Err(e) => (Err(e), Vec::new()),
        };
        let parsed = res.and_then(|r| parse_results(db, &sent, r.text(), Some(&schema)));
        self.after_transact(db, n, started, parsed)
    }

    /// The schema check and the counters of a transaction about to be sent.
    async fn before_transact(&self, db: &str, ops: &[Operation]) -> Result<Arc<DatabaseSchema>> {
        let schema = self.get_schema(db).await?;
        for (i, op) in ops.iter().enumerate() {
            op.check(i, &schema)?;
        }
        let c = &self.shared().counters;
        c.transactions.fetch_add(1, Ordering::Relaxed);
        c.operations.fetch_add(ops.len() as u64, Ordering::Relaxed);
        if ops.iter().any(Operation::is_write) {
            c.write_transactions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(schema)
    }

    /// Writes a `transact` request; the reply is awaited with [`Conn::response`].
    async fn send_transact(
        &self,
        db: &str,
        ops: &[Operation],
    ) -> Result<(Arc<Conn>, u64, crate::rpc::ReplyRx)> {
        let conn = self.session().await?;
        // Serialised straight into the message (about 200 bytes per Open_vSwitch op).
        let params = crate::ops::TransactParams { db, ops };
        let (id, rx) = conn
            .request("transact", &params, 200 * ops.len() + 64)
            .await?;
        Ok((conn, id, rx))
    }

    /// Counts a transaction's outcome.
    fn after_transact(
        &self,
        db: &str,
        ops: usize,
        started: std::time::Instant,
        parsed: Result<Vec<OpResult>>,
    ) -> Result<Vec<OpResult>> {
        let c = &self.shared().counters;
        match &parsed {
            Ok(results) => {
                let rows: u64 = results
                    .iter()
                    .map(|r| match r {
                        OpResult::Insert(_) => 1,
                        OpResult::Count(n) => *n,
                        _ => 0,
                    })
                    .sum();
                c.rows_changed.fetch_add(rows, Ordering::Relaxed);
                tracing::trace!(
                    db,
                    ops,
                    rows,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "transact ok"
                );
            }
            Err(e) => {
                c.failed_transactions.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(db, ops, error = %e, "transact failed");
            }
        }
        parsed
    }

    /// `lock`: true if this session now holds the lock (false: queued behind another owner).
    /// Locks belong to a session and are lost on reconnect.
    pub async fn lock(&self, name: &str) -> Result<bool> {
        let r = self.call("lock", json!([name])).await?;
        r.get("locked")
            .and_then(Json::as_bool)
            .ok_or_else(|| Error::BadReply {
                method: "lock".into(),
                reason: format!("no locked field: {r}"),
            })
    }

    /// `unlock`.
    pub async fn unlock(&self, name: &str) -> Result<()> {
        self.call("unlock", json!([name])).await.map(|_| ())
    }

    /// Starts a monitor on `db` replicating only the requested tables and columns; returns
    /// once the initial contents are in the replica. The monitor is resumed on every
    /// reconnect (`monitor_cond_since` from the last txn id seen, when the server has it).
    pub async fn monitor(&self, db: &str, requests: Vec<MonitorRequest>) -> Result<Replica> {
        let schema = self.get_schema(db).await?;
        for r in &requests {
            let ts = schema.tables.get(&r.table).ok_or_else(|| Error::Schema {
                index: 0,
                op: "monitor",
                table: r.table.clone(),
                column: String::new(),
                reason: format!("no such table in {db}"),
            })?;
            for c in &r.columns {
                if !ts.columns.contains_key(c) && c != "_version" {
                    return Err(Error::Schema {
                        index: 0,
                        op: "monitor",
                        table: r.table.clone(),
                        column: c.clone(),
                        reason: "no such column".into(),
                    });
                }
            }
        }
        let s = self.shared();
        let id = format!(
            "crosspod-{}",
            s.next_monitor.fetch_add(1, Ordering::Relaxed)
        );
        let mon = Arc::new(MonitorShared {
            id: id.clone(),
            db: db.to_string(),
            schema,
            requests,
            tx: watch::Sender::new(Arc::new(Snapshot::default())),
        });
        s.monitors
            .lock()
            .expect("monitors lock")
            .insert(id.clone(), mon.clone());
        let conn = self.session().await?;
        if let Err(e) = subscribe(s, &conn, mon.clone()).await {
            s.monitors.lock().expect("monitors lock").remove(&id);
            return Err(e);
        }
        Ok(Replica { shared: mon })
    }

    /// Stops a monitor: the server stops sending updates and the replica stays as it was.
    pub async fn monitor_cancel(&self, replica: &Replica) -> Result<()> {
        let id = replica.shared.id.clone();
        let removed = self
            .shared()
            .monitors
            .lock()
            .expect("monitors lock")
            .remove(&id);
        if removed.is_none() {
            return Ok(());
        }
        self.call("monitor_cancel", json!([id])).await.map(|_| ())
    }

    /// Operation counts so far.
    pub fn counters(&self) -> Counters {
        let c = &self.shared().counters;
        Counters {
            transactions: c.transactions.load(Ordering::Relaxed),
            write_transactions: c.write_transactions.load(Ordering::Relaxed),
            operations: c.operations.load(Ordering::Relaxed),
            rows_changed: c.rows_changed.load(Ordering::Relaxed),
            failed_transactions: c.failed_transactions.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            monitor_resumes_found: c.monitor_resumes_found.load(Ordering::Relaxed),
            monitor_full_syncs: c.monitor_full_syncs.load(Ordering::Relaxed),
        }
    }

    /// Stops reconnecting and closes the session; later requests fail with `Closed`.
    pub fn close(&self) {
        let s = self.shared();
        s.closed.store(true, Ordering::Relaxed);
        self.inner.supervisor.abort();
        s.conn.send_replace(None);
    }
}

fn conn_config(c: &ClientConfig) -> ConnConfig {
    ConnConfig {
        endpoint: c.endpoint.clone(),
        connect_timeout: c.connect_timeout,
        inactivity_probe: c.inactivity_probe,
    }
}

/// (Re)subscribes one monitor on a session: `monitor_cond_since` from its last txn id, or
/// `monitor_cond` (full replacement) when the server lacks it.
async fn subscribe(s: &Shared, conn: &Conn, mon: Arc<MonitorShared>) -> Result<()> {
    let timeout = s.config.request_timeout;
    if s.since_supported.load(Ordering::Relaxed) {
        let last = mon.last_txn_id();
        match conn
            .monitor(mon.clone(), MonitorKind::CondSince, timeout)
            .await
        {
            Ok(found) => {
                if found {
                    s.counters
                        .monitor_resumes_found
                        .fetch_add(1, Ordering::Relaxed);
                } else {
                    s.counters
                        .monitor_full_syncs
                        .fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(endpoint = %s.endpoint, monitor = %mon.id, last_txn_id = %last, found, "monitor_cond_since synced");
                return Ok(());
            }
            Err(Error::Rpc { error, .. }) if error.to_string().contains("unknown method") => {
                tracing::info!(endpoint = %s.endpoint, "server has no monitor_cond_since; using monitor_cond");
                s.since_supported.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    conn.monitor(mon, MonitorKind::Cond, timeout).await?;
    s.counters
        .monitor_full_syncs
        .fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Waits for the session to end, then reconnects with capped exponential backoff and
/// resubscribes every monitor before publishing the new session to callers.
async fn supervise(s: Arc<Shared>) {
    let mut first = true;
    loop {
        let current = s.conn.borrow().clone();
        if let Some(conn) = current {
            first = false;
            let reason = conn.wait_closed().await;
            drop(conn);
            if !s.config.reconnect || s.closed.load(Ordering::Relaxed) {
                tracing::info!(endpoint = %s.endpoint, reason = %reason, "ovsdb session ended; not reconnecting");
                return;
            }
            tracing::warn!(endpoint = %s.endpoint, reason = %reason, "ovsdb session lost; reconnecting");
        } else if !first || s.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut delay = if first {
            Duration::ZERO
        } else {
            s.config.backoff_initial
        };
        let new = loop {
            tokio::time::sleep(delay).await;
            delay = delay.max(s.config.backoff_initial);
            match reopen(&s, !first).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::info!(endpoint = %s.endpoint, error = %e, retry_in_ms = delay.as_millis() as u64, "ovsdb reconnect failed");
                    delay = (delay * 2).min(s.config.backoff_max);
                }
            }
        };
        first = false;
        s.conn.send_replace(Some(Arc::new(new)));
    }
}

/// Opens a session and resubscribes every monitor. A reconnection is counted as soon as the
/// session is open, before the monitors' replies publish anything: whoever sees the state
/// of the new session sees the count too.
async fn reopen(s: &Shared, reconnect: bool) -> Result<Conn> {
    let conn = Conn::open(&conn_config(&s.config), s.monitors.clone()).await?;
    if reconnect {
        s.counters.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    let mons: Vec<_> = s
        .monitors
        .lock()
        .expect("monitors lock")
        .values()
        .cloned()
        .collect();
    for m in mons {
        subscribe(s, &conn, m).await?;
    }
    tracing::info!(endpoint = %conn.endpoint(), "ovsdb session re-established");
    Ok(conn)
}
