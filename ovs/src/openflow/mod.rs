//! OpenFlow access to a bridge's management socket (`<rundir>/<bridge>.mgmt`), for the
//! agent's firewall.
//!
//! - Reads: [`OfConn`], a small binary OpenFlow 1.4 client (hello/version negotiation, echo,
//!   barrier, flow-stats multipart filtered by cookie and mask, decoding only the cookies).
//! - Writes, as a first step: [`OfctlBridge::apply_bundle`] feeds `ovs-ofctl --bundle
//!   add-flows` on stdin (each line an `add`, or a `delete` of one exact cookie), so a change
//!   set is one OpenFlow 1.4 bundle, applied atomically or not at all. Encoding flow matches and
//!   Nicira actions (ct, conjunction, resubmit, load/move) in binary is left for later.
//!
//! The flow model and the diff live with the caller; nothing here deletes a flow not selected
//! by an exact cookie.

mod conn;
mod ofctl;

pub use conn::{OfConn, OfError, OFP14};
pub use ofctl::{DumpedFlow, FlowMod, OfctlBridge, OfctlError};
