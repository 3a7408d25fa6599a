//! Wire types shared by the controller, the agent and the CLI.
//!
//! Two families live here:
//! - [`state`]: the desired state of one node ([`NodeDesiredState`]), computed by the planner and
//!   served by the controller; the agent makes the node match it.
//! - [`agent_api`]: the messages an agent exchanges with the controller (registration, watch,
//!   status reports).
//!
//! Every collection is sorted (`BTreeMap`/`BTreeSet` or a `Vec` kept in a documented order) so a
//! state serializes to the same bytes every time: the controller compares old and new documents
//! and bumps a node's revision only when its state really changed.

pub mod agent_api;
pub mod eui64;
pub mod names;
pub mod state;

pub use agent_api::*;
pub use state::*;
