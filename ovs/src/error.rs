//! The crate's one error type: every variant says what failed and on what.

use std::time::Duration;

/// Everything that can go wrong talking to an OVSDB server or running a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The transport could not be opened.
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        /// Where we tried to connect.
        endpoint: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("i/o on {endpoint}: {source}")]
    Io {
        /// The peer.
        endpoint: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The peer sent bytes that are not a JSON-RPC message.
    #[error("protocol error from {endpoint}: {reason}")]
    Protocol {
        /// The peer.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
    /// The connection went away (closed by the peer, or declared dead) while a request was pending.
    #[error("connection to {endpoint} lost: {reason}")]
    Disconnected {
        /// The peer.
        endpoint: String,
        /// Why it is considered gone.
        reason: String,
    },
    /// A request got no answer in time.
    #[error("{method} to {endpoint} got no reply within {timeout:?}")]
    Timeout {
        /// The peer.
        endpoint: String,
        /// The JSON-RPC method.
        method: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The server answered a request with a JSON-RPC error.
    #[error("{method} on {endpoint} failed: {error}")]
    Rpc {
        /// The peer.
        endpoint: String,
        /// The JSON-RPC method.
        method: String,
        /// The server's error object.
        error: serde_json::Value,
    },
    /// The server's reply did not have the shape RFC 7047 gives it.
    #[error("unexpected reply to {method}: {reason}")]
    BadReply {
        /// The JSON-RPC method.
        method: String,
        /// What was wrong.
        reason: String,
    },
    /// A value or schema document could not be decoded.
    #[error("decoding {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// An operation was refused before sending because it does not fit the schema.
    #[error("op {index} ({op}) on table {table}, column {column}: {reason}")]
    Schema {
        /// Index of the operation in the transaction.
        index: usize,
        /// Kind of the operation (`insert`, `update`, ...).
        op: &'static str,
        /// Table the operation names.
        table: String,
        /// Column at fault (empty if the table itself is unknown).
        column: String,
        /// What does not fit.
        reason: String,
    },
    /// The server rejected one operation of a transaction (or the commit as a whole).
    #[error("{0}")]
    OpFailed(Box<OpFailure>),
    /// The client was shut down.
    #[error("client for {endpoint} is closed")]
    Closed {
        /// The peer.
        endpoint: String,
    },
    /// The test sandbox could not be set up or driven.
    #[error("sandbox {what}: {reason}")]
    Sandbox {
        /// The step that failed.
        what: String,
        /// Why.
        reason: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which operation of a transaction failed, on what, and what the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpFailure {
    /// Database name.
    pub db: String,
    /// Index of the failed operation; equal to the number of ops for a commit-time error.
    pub index: usize,
    /// Kind of the failed operation (`commit` for a commit-time error).
    pub op: &'static str,
    /// Table the failed operation names (empty for ops without one).
    pub table: String,
    /// Columns the failed operation touched, comma separated.
    pub columns: String,
    /// The server's `error` string (e.g. `constraint violation`, `timed out`).
    pub error: String,
    /// The server's `details`, when given.
    pub details: Option<String>,
}

impl std::fmt::Display for OpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "transaction on {}: op {} ({}) on table {} [{}] failed: {}",
            self.db, self.index, self.op, self.table, self.columns, self.error
        )?;
        if let Some(d) = &self.details {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}
