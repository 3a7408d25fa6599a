//! OVSDB (RFC 7047) client for crosspod.
//!
//! - [`Client`]: JSON-RPC over unix or TCP, many requests in flight, `transact` checked
//!   against the schema, echo keepalives, reconnect with capped backoff.
//! - [`Client::monitor`] returns a [`Replica`]: the monitored columns kept in memory from
//!   `monitor_cond_since` (resumed from the last txn id seen), published as whole snapshots.
//! - [`vswitch`]: the Open_vSwitch schema in crosspod's terms (bridges, ports, interfaces),
//!   batched into one transaction per change set.
//! - [`openflow`]: a bridge's flows through its management socket (cookie-filtered dumps,
//!   atomic bundles), for the agent's firewall.
//! - [`sandbox`]: a throwaway ovsdb-server (and ovs-vswitchd) for tests.

#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod framing;
pub mod openflow;
pub mod ops;
pub mod replica;
mod rpc;
pub mod sandbox;
pub mod schema;
pub mod transport;
pub mod value;
pub mod vswitch;

pub use client::{Client, ClientConfig, Counters};
pub use error::{Error, OpFailure, Result};
pub use ops::{
    Condition, Function, Mutation, Mutator, Name, OpResult, Operation, RowData, RowValues,
};
pub use replica::{ChangeKind, MonitorRequest, Replica, Row, RowChange, Snapshot};
pub use schema::DatabaseSchema;
pub use transport::Endpoint;
pub use value::{Atom, Value};
