//! The lab's cables: veth pairs whose ends are created directly in the two namespaces they
//! join (no temporary names in the root namespace), marked `crosspod:lab`, and plugged into
//! the bridges at each end. Each node's `eth1` joins its br-vlan to its pod's provider switch
//! (`pod<k>`), whose `core` port joins the core switch (VLAN bridge network only, trunking the
//! bridge range); each node's `eth3` joins its br-phy to the underlay switch; the external pods'
//! nodes' `eth2` join their br-ext to the upstream switch in `ext`.

use anyhow::{Context, Result};
use plumbing::{Netns, VethEnd, VethSpec};

use ovs::vswitch::PortSpec;

use crate::ovsdb::Ovsdb;

/// The owner tag of every link the lab itself makes.
pub const LAB_OWNER: &str = "lab";

/// One end of a cable: a namespace, the interface name there, and the bridge it plugs into.
#[derive(Debug, Clone)]
pub struct CableEnd<'a> {
    /// Namespace.
    pub netns: &'a str,
    /// Interface name inside it.
    pub ifname: &'a str,
    /// Bridge (and its OVSDB) the end is plugged into, if any.
    pub bridge: Option<(&'a Ovsdb, &'a str)>,
    /// Access VLAN of the port (`None`: a trunk).
    pub tag: Option<u16>,
    /// VLANs a trunk carries (empty: all).
    pub trunks: &'a [u16],
}

impl<'a> CableEnd<'a> {
    /// An end plugged into `bridge` as a trunk of every VLAN.
    pub fn trunk(netns: &'a str, ifname: &'a str, db: &'a Ovsdb, bridge: &'a str) -> Self {
        CableEnd {
            netns,
            ifname,
            bridge: Some((db, bridge)),
            tag: None,
            trunks: &[],
        }
    }

    /// An end left unplugged (it holds an address).
    pub fn bare(netns: &'a str, ifname: &'a str) -> Self {
        CableEnd {
            netns,
            ifname,
            bridge: None,
            tag: None,
            trunks: &[],
        }
    }
}

/// Makes the cable exist, up, and plugged at both ends. Returns whether anything changed.
pub fn ensure_cable(a: &CableEnd<'_>, b: &CableEnd<'_>) -> Result<bool> {
    let spec = VethSpec {
        a: VethEnd::new(a.ifname, Netns::named(a.netns)),
        b: VethEnd::new(b.ifname, Netns::named(b.netns)),
        owner: LAB_OWNER.to_string(),
    };
    let mut changed = plumbing::link::ensure_veth(&spec)
        .with_context(|| {
            format!(
                "cable {}@{} <-> {}@{}",
                a.ifname, a.netns, b.ifname, b.netns
            )
        })?
        .changed();
    for end in [a, b] {
        if let Some((db, bridge)) = end.bridge {
            let mut port = PortSpec::new(end.ifname);
            port.tag = end.tag;
            port.trunks = end.trunks.to_vec();
            changed |= db
                .ensure_port(bridge, &port)
                .with_context(|| format!("plugging {}@{} into {bridge}", end.ifname, end.netns))?;
        }
    }
    // Once ovs-vswitchd has new ends open, check them again: when the port was already in
    // OVSDB (a lab repaired after a reboot), ovs-vswitchd opens the new device while it is
    // still being set up and may write back its stale flags (link down).
    if changed {
        for end in [a, b] {
            if let Some((db, _)) = end.bridge {
                db.wait_attached(end.ifname)?;
            }
        }
        changed |= plumbing::link::ensure_veth(&spec)
            .with_context(|| {
                format!(
                    "cable {}@{} <-> {}@{} after plugging",
                    a.ifname, a.netns, b.ifname, b.netns
                )
            })?
            .changed();
    }
    Ok(changed)
}
