//! One JSON-RPC session: a reader task (framing, replies, echo, monitor updates, inactivity
//! probe) and a writer task, with any number of requests in flight matched by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::framing::JsonSplitter;
use crate::replica::MonitorShared;
use crate::transport::Endpoint;

/// The largest message buffer a session keeps between requests.
const SPARE_MAX: usize = 16 << 20;

/// Monitors by their JSON-RPC monitor id, shared with every connection's reader.
pub(crate) type Monitors = Arc<Mutex<HashMap<String, Arc<MonitorShared>>>>;

/// Which monitor request a pending reply belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum MonitorKind {
    Cond,
    CondSince,
}

/// A reply's `result` still as text: the message and where the result lies in it. The reader
/// only finds its bounds (no JSON tree built); the caller parses what it needs, a `transact`
/// its uuids, counts and errors, straight into typed values.
pub(crate) struct RawResult {
    msg: String,
    range: std::ops::Range<usize>,
}

impl RawResult {
    /// The result's JSON text.
    pub(crate) fn text(&self) -> &str {
        &self.msg[self.range.clone()]
    }

    /// The result as a JSON tree, for callers that want one.
    pub(crate) fn to_json(&self, method: &str) -> Result<Json> {
        serde_json::from_str(self.text()).map_err(|e| Error::BadReply {
            method: method.to_string(),
            reason: format!("result is not JSON: {e}"),
        })
    }
}

/// One JSON-RPC message as far as the reader must understand it: a request's method and
/// params (echo, monitor updates: small, or needed as a tree anyway), a reply's id and error,
/// and the bounds of a reply's result, which is skipped over, not built.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Json,
    #[serde(default, borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    params: Option<Json>,
    /// `Some` whenever the member is there, even as `null`.
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present_json")]
    error: Option<Json>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn present_json<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

/// At most 200 characters of `text`, for error messages.
pub(crate) fn excerpt(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Where a request's reply arrives.
pub(crate) type ReplyRx = oneshot::Receiver<Result<RawResult>>;

/// What to do with a reply.
pub(crate) enum Pending {
    /// Hand the result to a waiting caller.
    Call(oneshot::Sender<Result<RawResult>>),
    /// Apply a monitor reply to the replica in the reader, before any later update, then
    /// report to the caller (found, for `monitor_cond_since`).
    Monitor {
        mon: Arc<MonitorShared>,
        kind: MonitorKind,
        done: oneshot::Sender<Result<bool>>,
    },
}

struct PendingTable {
    /// `None` once the reader has exited: no reply can arrive any more.
    map: Option<HashMap<u64, (String, Pending)>>,
}

/// Connection-level settings.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub(crate) endpoint: Endpoint,
    pub(crate) connect_timeout: Duration,
    pub(crate) inactivity_probe: Option<Duration>,
}

/// A live session. Dropping it stops its tasks.
pub(crate) struct Conn {
    endpoint: String,
    next_id: AtomicU64,
    pending: Arc<Mutex<PendingTable>>,
    /// Requests are written by their caller under this lock, straight to the socket: a hop
    /// through a writer task cost a thread wakeup per request (a third of a small
    /// transaction's time on two busy cores). The reader's own messages (echo replies and
    /// probes) go through the writer task, which takes the same lock.
    writer: Arc<tokio::sync::Mutex<Writer>>,
    /// A message buffer kept from one request to the next: a large transaction's message is
    /// past malloc's mmap threshold, so a fresh one was mapped, page-faulted in and unmapped
    /// for every request.
    spare: Mutex<Vec<u8>>,
    close_tx: Arc<watch::Sender<Option<String>>>,
    closed: watch::Receiver<Option<String>>,
    tasks: Vec<JoinHandle<()>>,
}

type Writer = tokio::io::WriteHalf<Box<dyn crate::transport::Stream>>;

/// Ends the session if a request's write is abandoned half way (its future dropped): the
/// stream would otherwise carry half a message.
struct WriteGuard<'a> {
    close: &'a watch::Sender<Option<String>>,
    done: bool,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.close.send_if_modified(|c| {
                set_once(
                    c,
                    "a request was cancelled in the middle of its write".into(),
                )
            });
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Conn {
    /// Connects and starts the reader and writer.
    pub(crate) async fn open(cfg: &ConnConfig, monitors: Monitors) -> Result<Conn> {
        let stream = cfg.endpoint.connect(cfg.connect_timeout).await?;
        let endpoint = cfg.endpoint.to_string();
        let (rd, wr) = tokio::io::split(stream);
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let (close_tx, close_rx) = watch::channel(None::<String>);
        let close_tx = Arc::new(close_tx);
        let pending = Arc::new(Mutex::new(PendingTable {
            map: Some(HashMap::new()),
        }));
        let wr = Arc::new(tokio::sync::Mutex::new(wr));
        let writer = tokio::spawn(writer_loop(
            wr.clone(),
            out_rx,
            close_tx.clone(),
            endpoint.clone(),
        ));
        let reader = tokio::spawn(
            Reader {
                endpoint: endpoint.clone(),
                pending: pending.clone(),
                out: out_tx.clone(),
                monitors,
                close_tx: close_tx.clone(),
                close_rx: close_rx.clone(),
                probe: cfg.inactivity_probe,
            }
            .run(rd),
        );
        tracing::debug!(endpoint = %endpoint, "ovsdb connected");
        Ok(Conn {
            endpoint,
            next_id: AtomicU64::new(1),
            pending,
            writer: wr,
            spare: Mutex::default(),
            close_tx,
            closed: close_rx,
            tasks: vec![writer, reader],
        })
    }

    /// The peer, for messages.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Why the session ended, if it has.
    pub(crate) fn closed_reason(&self) -> Option<String> {
        self.closed.borrow().clone()
    }

    /// Resolves when the session has ended, with the reason.
    pub(crate) async fn wait_closed(&self) -> String {
        let mut rx = self.closed.clone();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return "connection tasks ended".to_string();
            }
        }
    }

    fn register(&self, method: &str, p: Pending) -> Result<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut t = self.pending.lock().expect("pending lock");
        match t.map.as_mut() {
            Some(m) => {
                m.insert(id, (method.to_string(), p));
                Ok(id)
            }
            None => Err(Error::Disconnected {
                endpoint: self.endpoint.clone(),
                reason: self
                    .closed_reason()
                    .unwrap_or_else(|| "session ended".into()),
            }),
        }
    }

    fn unregister(&self, id: u64) {
        if let Some(m) = self.pending.lock().expect("pending lock").map.as_mut() {
            m.remove(&id);
        }
    }

    async fn send<P: serde::Serialize + ?Sized>(
        &self,
        id: u64,
        method: &str,
        params: &P,
        size_hint: usize,
    ) -> Result<()> {
        // Written by hand so the params are serialised in place, not copied first; sized up
        // front, since a large message grown by doubling is reallocated (and, past malloc's
        // mmap threshold, page-faulted in) again and again.
        let mut msg = std::mem::take(&mut *self.spare.lock().expect("spare lock"));
        msg.clear();
        msg.reserve(size_hint.max(256));
        msg.extend_from_slice(b"{\"id\":");
        msg.extend_from_slice(id.to_string().as_bytes());
        msg.extend_from_slice(b",\"method\":");
        serde_json::to_writer(&mut msg, method).expect("a string always serialises");
        msg.extend_from_slice(b",\"params\":");
        serde_json::to_writer(&mut msg, params).expect("JSON values always serialise");
        msg.push(b'}');
        if let Some(reason) = self.closed_reason() {
            return Err(Error::Disconnected {
                endpoint: self.endpoint.clone(),
                reason,
            });
        }
        let mut w = self.writer.lock().await;
        let mut guard = WriteGuard {
            close: &self.close_tx,
            done: false,
        };
        let r = w.write_all(&msg).await;
        guard.done = true;
        drop(w);
        // Kept for the next request unless a bigger one is kept already (or it is huge).
        let mut spare = self.spare.lock().expect("spare lock");
        if msg.capacity() > spare.capacity() && msg.capacity() <= SPARE_MAX {
            *spare = msg;
        }
        drop(spare);
        r.map_err(|e| {
            tracing::warn!(endpoint = %self.endpoint, error = %e, "ovsdb write failed");
            self.close_tx
                .send_if_modified(|c| set_once(c, format!("write failed: {e}")));
            Error::Disconnected {
                endpoint: self.endpoint.clone(),
                reason: format!("write failed: {e}"),
            }
        })
    }

    /// Sends a request and waits for its result.
    pub(crate) async fn call(&self, method: &str, params: Json, timeout: Duration) -> Result<Json> {
        self.call_with(method, &params, 256, timeout)
            .await?
            .to_json(method)
    }

    /// Sends a request whose params serialise themselves (no JSON tree built first) and waits
    /// for its result, as text; `size_hint` is the expected message size in bytes.
    pub(crate) async fn call_with<P: serde::Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
        size_hint: usize,
        timeout: Duration,
    ) -> Result<RawResult> {
        let (id, rx) = self.request(method, params, size_hint).await?;
        self.response(id, method, rx, timeout).await
    }

    /// Writes a request; its reply comes through `rx` (see [`Conn::response`]). Between the
    /// two the caller may do other work while the server does its own.
    pub(crate) async fn request<P: serde::Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
        size_hint: usize,
    ) -> Result<(u64, ReplyRx)> {
        let (tx, rx) = oneshot::channel();
        let id = self.register(method, Pending::Call(tx))?;
        self.send(id, method, params, size_hint).await?;
        Ok((id, rx))
    }

    /// Waits for the reply of a request sent with [`Conn::request`].
    pub(crate) async fn response(
        &self,
        id: u64,
        method: &str,
        rx: ReplyRx,
        timeout: Duration,
    ) -> Result<RawResult> {
        self.finish(id, method, rx, timeout).await
    }

    /// Sends a monitor request whose reply the reader applies to `mon`'s replica.
    pub(crate) async fn monitor(
        &self,
        mon: Arc<MonitorShared>,
        kind: MonitorKind,
        timeout: Duration,
    ) -> Result<bool> {
        let (method, params) = match kind {
            MonitorKind::Cond => ("monitor_cond", json!([mon.db, mon.id, mon.requests_json()])),
            MonitorKind::CondSince => (
                "monitor_cond_since",
                json!([
                    mon.db,
                    mon.id,
                    mon.requests_json(),
                    mon.last_txn_id().to_string()
                ]),
            ),
        };
        let (tx, rx) = oneshot::channel();
        let id = self.register(
            method,
            Pending::Monitor {
                mon,
                kind,
                done: tx,
            },
        )?;
        self.send(id, method, &params, 256).await?;
        self.finish(id, method, rx, timeout).await
    }

    async fn finish<T>(
        &self,
        id: u64,
        method: &str,
        rx: oneshot::Receiver<Result<T>>,
        timeout: Duration,
    ) -> Result<T> {
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Disconnected {
                endpoint: self.endpoint.clone(),
                reason: self
                    .closed_reason()
                    .unwrap_or_else(|| "session ended".into()),
            }),
            Err(_) => {
                self.unregister(id);
                Err(Error::Timeout {
                    endpoint: self.endpoint.clone(),
                    method: method.to_string(),
                    timeout,
                })
            }
        }
    }
}

async fn writer_loop(
    wr: Arc<tokio::sync::Mutex<Writer>>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    close: Arc<watch::Sender<Option<String>>>,
    endpoint: String,
) {
    while let Some(mut buf) = rx.recv().await {
        // Coalesce whatever else is queued into one write (a lone message is written as it
        // is, not copied).
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = wr.lock().await.write_all(&buf).await {
            tracing::warn!(endpoint = %endpoint, error = %e, "ovsdb write failed");
            close.send_if_modified(|c| set_once(c, format!("write failed: {e}")));
            return;
        }
    }
}

fn set_once(slot: &mut Option<String>, reason: String) -> bool {
    if slot.is_none() {
        *slot = Some(reason);
        true
    } else {
        false
    }
}

struct Reader {
    endpoint: String,
    pending: Arc<Mutex<PendingTable>>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    monitors: Monitors,
    close_tx: Arc<watch::Sender<Option<String>>>,
    close_rx: watch::Receiver<Option<String>>,
    probe: Option<Duration>,
}

impl Reader {
    async fn run(mut self, mut rd: tokio::io::ReadHalf<Box<dyn crate::transport::Stream>>) {
        let reason = self.read_loop(&mut rd).await;
        tracing::info!(endpoint = %self.endpoint, reason = %reason, "ovsdb session ended");
        self.close_tx
            .send_if_modified(|c| set_once(c, reason.clone()));
        let reason = self.close_rx.borrow().clone().unwrap_or(reason);
        let drained = self.pending.lock().expect("pending lock").map.take();
        for (_, (_, p)) in drained.into_iter().flatten() {
            let err = || Error::Disconnected {
                endpoint: self.endpoint.clone(),
                reason: reason.clone(),
            };
            match p {
                Pending::Call(tx) => {
                    let _ = tx.send(Err(err()));
                }
                Pending::Monitor { done, .. } => {
                    let _ = done.send(Err(err()));
                }
            }
        }
    }

    async fn read_loop(
        &mut self,
        rd: &mut tokio::io::ReadHalf<Box<dyn crate::transport::Stream>>,
    ) -> String {
        let mut splitter = JsonSplitter::new();
        // A 1000-port transaction's reply (about 120 KB) in one read: one syscall and no
        // second readiness wait per reply.
        let mut buf = vec![0u8; 256 * 1024];
        let mut probe_sent = false;
        let mut close_rx = self.close_rx.clone();
        loop {
            let n = tokio::select! {
                r = rd.read(&mut buf) => r,
                _ = close_rx.changed() => {
                    return close_rx.borrow().clone().unwrap_or_else(|| "closed".into());
                }
                _ = sleep_or_forever(self.probe) => {
                    if probe_sent {
                        return format!(
                            "no message for {:?} after an echo probe: server presumed dead",
                            self.probe.unwrap_or_default() * 2
                        );
                    }
                    tracing::debug!(endpoint = %self.endpoint, "inactivity probe: sending echo");
                    let _ = self.out.send(br#"{"id":"echo","method":"echo","params":[]}"#.to_vec());
                    probe_sent = true;
                    continue;
                }
            };
            let n = match n {
                Ok(0) => {
                    return if splitter.has_partial() {
                        "peer closed in the middle of a message".to_string()
                    } else {
                        "peer closed the connection".to_string()
                    }
                }
                Ok(n) => n,
                Err(e) => return format!("read failed: {e}"),
            };
            probe_sent = false;
            let msgs = match splitter.push(&buf[..n]) {
                Ok(m) => m,
                Err(e) => return format!("bad framing: {e}"),
            };
            for m in msgs {
                let text = match String::from_utf8(m) {
                    Ok(t) => t,
                    Err(e) => return format!("invalid JSON message: not UTF-8: {e}"),
                };
                if let Err(reason) = self.handle(text) {
                    return reason;
                }
            }
        }
    }

    /// Handles one message; `Err` ends the session.
    fn handle(&mut self, text: String) -> std::result::Result<(), String> {
        let msg: Envelope = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                return Err(format!(
                    "invalid JSON-RPC message ({e}): {}",
                    excerpt(&text)
                ))
            }
        };
        let id = msg.id;
        if let Some(method) = msg.method.as_deref() {
            let params = msg.params.unwrap_or(Json::Null);
            match method {
                "echo" => {
                    let reply = json!({"id": id, "result": params, "error": null});
                    let _ = self
                        .out
                        .send(serde_json::to_vec(&reply).expect("serialise"));
                }
                "update2" | "update3" => self.on_update(method, &params)?,
                "locked" | "stolen" => {
                    tracing::info!(endpoint = %self.endpoint, method, params = %params, "ovsdb lock notification");
                }
                other => {
                    tracing::debug!(endpoint = %self.endpoint, method = other, "ignoring unknown request");
                    if !id.is_null() {
                        let reply = json!({"id": id, "result": null, "error": "unknown method"});
                        let _ = self
                            .out
                            .send(serde_json::to_vec(&reply).expect("serialise"));
                    }
                }
            }
            return Ok(());
        }
        if msg.result.is_none() && msg.error.is_none() {
            return Err(format!(
                "message is neither request nor reply: {}",
                excerpt(&text)
            ));
        }
        let Some(id) = id.as_u64() else {
            // Replies to our echo probes carry a string id; nothing waits on them.
            return Ok(());
        };
        let entry = self
            .pending
            .lock()
            .expect("pending lock")
            .map
            .as_mut()
            .and_then(|m| m.remove(&id));
        let Some((method, p)) = entry else {
            tracing::debug!(endpoint = %self.endpoint, id, "reply to a request nobody waits for");
            return Ok(());
        };
        let range = msg.result.map(|r| {
            // The raw value borrows from `text`: its offset there.
            let start = r.get().as_ptr() as usize - text.as_ptr() as usize;
            start..start + r.get().len()
        });
        let result: Result<RawResult> = match msg.error.filter(|e| !e.is_null()) {
            Some(e) => Err(Error::Rpc {
                endpoint: self.endpoint.clone(),
                method: method.clone(),
                error: e,
            }),
            // The message moves to the caller as it is: nothing copied, nothing built.
            None => Ok(match range {
                Some(range) => RawResult { msg: text, range },
                None => RawResult {
                    msg: "null".into(),
                    range: 0..4,
                },
            }),
        };
        match p {
            Pending::Call(tx) => {
                let _ = tx.send(result);
            }
            Pending::Monitor { mon, kind, done } => {
                let r = result
                    .and_then(|res| res.to_json(&method))
                    .and_then(|res| apply_monitor_reply(&mon, kind, &res));
                if let Err(e) = &r {
                    tracing::warn!(endpoint = %self.endpoint, monitor = %mon.id, error = %e, "monitor request failed");
                }
                let _ = done.send(r);
            }
        }
        Ok(())
    }

    fn on_update(&self, method: &str, params: &Json) -> std::result::Result<(), String> {
        let p = params.as_array().ok_or("update params are not an array")?;
        let mon_id = p.first().and_then(Json::as_str).unwrap_or_default();
        let Some(mon) = self
            .monitors
            .lock()
            .expect("monitors lock")
            .get(mon_id)
            .cloned()
        else {
            tracing::debug!(endpoint = %self.endpoint, monitor = mon_id, "update for an unknown monitor");
            return Ok(());
        };
        let (txn, updates) = match (method, p.len()) {
            ("update3", 3) => (p[1].as_str().and_then(|s| Uuid::parse_str(s).ok()), &p[2]),
            ("update2", 2) => (None, &p[1]),
            _ => return Err(format!("{method} with {} params", p.len())),
        };
        // A replica that cannot follow the stream any more must resync: end the session.
        mon.apply(updates, txn, false)
            .map_err(|e| format!("applying {method} to monitor {mon_id}: {e}"))
    }
}

fn apply_monitor_reply(mon: &MonitorShared, kind: MonitorKind, res: &Json) -> Result<bool> {
    let bad = |reason: String| Error::BadReply {
        method: "monitor_cond_since".into(),
        reason,
    };
    match kind {
        MonitorKind::Cond => {
            mon.apply(res, None, true)?;
            Ok(false)
        }
        MonitorKind::CondSince => {
            let a = res
                .as_array()
                .filter(|a| a.len() == 3)
                .ok_or_else(|| bad(format!("expected [found, txn, updates]: {res}")))?;
            let found = a[0]
                .as_bool()
                .ok_or_else(|| bad(format!("found is not a boolean: {}", a[0])))?;
            let txn = a[1]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| bad(format!("bad last-txn-id: {}", a[1])))?;
            // found: the diff since our txn id; otherwise the whole contents, replacing ours.
            mon.apply(&a[2], Some(txn), !found)?;
            Ok(found)
        }
    }
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
