//! The upstream side of the nodes' eth2: the `ext` namespace runs an OVS of its own because the
//! kernel here cannot untag VLANs (no 8021q, no VLAN filtering). Every eth2 of RegionOne's and
//! RegionTwo's nodes arrives on ext's bridge as a trunk (named after the node; in the guide's
//! two-node lab node2's is `eth2` and node1's `eth3`, as before); a veth pair with both ends in `ext` gives
//! each upstream its leg: `gwp` on the bridge with RegionTwo's external VLAN as tag, `gw0`
//! holding that router's address (163.3.124.1/24); `gw1p`/`gw1` the same for RegionOne's own
//! external network (163.3.125.1/24 on VLAN 3002), used when each pod has its own gateway.

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
/// RegionOne's upstream leg: bridge-side end.
pub const REGION_ONE_LEG_PORT: &str = "gw1p";
/// RegionOne's upstream leg: address-holding end.
pub const REGION_ONE_LEG_IF: &str = "gw1";
/// Where a node's eth2 lands in `ext`: `eth2` for the guide's node2, `eth3` for its node1 (the
/// names of the two-node lab), the node's name for every other node.
pub fn ext_port_of(node: &str) -> String {
    match node {
        "node2" => "eth2".into(),
        "node1" => "eth3".into(),
        other => other.into(),
    }
}

/// Makes the upstream bridge and one router leg (`leg_port` on the bridge, `leg_if` holding the
/// address) exist in namespace `netns` (whose OVS is reached through `db`). Returns whether
/// anything changed.
pub fn ensure_upstream(
    netns: &str,
    db: &Ovsdb,
    spec: &UpstreamSpec,
    leg_port: &str,
    leg_if: &str,
) -> Result<bool> {
    let mut changed = db.ensure_netdev_bridge(UPSTREAM_BRIDGE)?;
    changed |= ensure_cable(
        &CableEnd {
            netns,
            ifname: leg_port,
            bridge: Some((db, UPSTREAM_BRIDGE)),
            tag: (spec.vlan != 0).then_some(spec.vlan),
            trunks: &[],
        },
        &CableEnd::bare(netns, leg_if),
    )?;
    let mut h = Handle::new(&Netns::named(netns))?;
    let have = h.link_addresses(leg_if)?;
    if !have.contains(&spec.gateway) {
        h.replace_address(leg_if, spec.gateway)
            .with_context(|| format!("giving {} to {leg_if}@{netns}", spec.gateway))?;
        changed = true;
    }
    Ok(changed)
}
