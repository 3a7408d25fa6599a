//! The upstream side of eth2: the `ext` namespace runs a third OVS because the kernel here
//! cannot untag VLANs (no 8021q, no VLAN filtering). eth2 arrives on ext's bridge as a trunk;
//! a veth pair with both ends in `ext` gives the upstream router its leg: `gwp` on the bridge
//! with the external VLAN as tag, `gw0` holding the router's address (163.3.124.1/24).

use anyhow::{Context, Result};
use plumbing::{Handle, Netns};

use super::cables::{ensure_cable, CableEnd};
use super::state::UpstreamSpec;
use crate::ovsdb::Ovsdb;

/// The bridge in `ext` that eth2 lands on.
pub const UPSTREAM_BRIDGE: &str = "br-up";
/// The router leg's bridge-side end.
pub const LEG_PORT: &str = "gwp";
/// The router leg's address-holding end.
pub const LEG_IF: &str = "gw0";

/// Makes the upstream bridge and router leg exist in namespace `netns` (whose OVS is reached
/// through `db`). Returns whether anything changed.
pub fn ensure_upstream(netns: &str, db: &Ovsdb, spec: &UpstreamSpec) -> Result<bool> {
    let mut changed = db.ensure_netdev_bridge(UPSTREAM_BRIDGE)?;
    changed |= ensure_cable(
        &CableEnd {
            netns,
            ifname: LEG_PORT,
            bridge: Some((db, UPSTREAM_BRIDGE)),
            tag: (spec.vlan != 0).then_some(spec.vlan),
        },
        &CableEnd {
            netns,
            ifname: LEG_IF,
            bridge: None,
            tag: None,
        },
    )?;
    let mut h = Handle::new(&Netns::named(netns))?;
    let have = h.link_addresses(LEG_IF)?;
    if !have.contains(&spec.gateway) {
        h.replace_address(LEG_IF, spec.gateway)
            .with_context(|| format!("giving {} to {LEG_IF}@{netns}", spec.gateway))?;
        changed = true;
    }
    Ok(changed)
}
