//! OpenFlow access to a bridge, for the agent's firewall.
//!
//! This first step drives `ovs-ofctl` over the bridge's management socket
//! (`<rundir>/<bridge>.mgmt`) rather than speaking the binary protocol: flows are read with
//! `dump-flows --no-stats` filtered by a cookie and mask, and written as one OpenFlow 1.4
//! bundle (`--bundle add-flows` fed on stdin, each line an `add` or a `delete`), so a change set
//! is applied atomically or not at all. The flow model and the diff live with the caller; this
//! module only moves text, and refuses to delete anything not selected by an exact cookie.

mod ofctl;

pub use ofctl::{DumpedFlow, FlowMod, OfctlBridge, OfctlError};
