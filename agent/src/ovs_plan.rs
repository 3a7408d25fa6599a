//! What the agent wants Open vSwitch to look like, what it saw there, and the difference as a
//! list of changes. Pure: no OVSDB here, so the level-triggered logic is tested on its own and
//! "nothing changed" is provably "no change".
//!
//! Ownership: ports the agent creates carry `external_ids:crosspod-owner=agent`; only those are
//! ever deleted. VM ports belong to whoever plugged them (Nova, `crosspod vm`): the agent only
//! sets their `tag`. Uplinks are given to the agent by its configuration: it creates them if
//! missing and owns their `trunks`. Bridges the agent creates for itself (the tunnel bridge)
//! carry the same mark on the Bridge row, are created in `fail_mode=secure` (no NORMAL flow:
//! only the agent's flows forward), and are deleted, with their ports, when no longer wanted.

use std::collections::{BTreeMap, BTreeSet};

/// `external_ids` key marking ports the agent created.
pub const OWNER_KEY: &str = "crosspod-owner";
/// `external_ids` value of [`OWNER_KEY`].
pub const OWNER_VALUE: &str = "agent";
/// VLAN where unknown VM interfaces are parked: OVS drops it everywhere (as neutron's dead VLAN).
pub const DEAD_VLAN: u16 = 4095;

/// The OVS side of one node's desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredOvs {
    /// Bridges by name.
    pub bridges: BTreeMap<String, DesiredBridge>,
    /// Ports the agent creates and owns (router legs), by port name.
    pub owned_ports: BTreeMap<String, DesiredPort>,
    /// VM interfaces: `iface-id` → (bridge, VLAN tag).
    pub vm_tags: BTreeMap<String, (String, u16)>,
    /// Bridges of `bridges` the agent owns (created marked, deleted when not wanted).
    pub owned_bridges: BTreeSet<String>,
}

/// One bridge and its uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBridge {
    pub datapath_type: String,
    /// Uplink device and the VLANs it must trunk (exactly those).
    pub uplink: Option<(String, BTreeSet<u16>)>,
}

/// A port the agent owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredPort {
    pub bridge: String,
    pub tag: Option<u16>,
    /// VLANs a trunk port carries (never empty for a trunk: empty is an access port or "all").
    pub trunks: BTreeSet<u16>,
    /// The interface's `options` (a patch port's peer, a VxLAN port's endpoints).
    pub options: BTreeMap<String, String>,
    /// Interface type ("" for a plain system device such as a veth end).
    pub iface_type: String,
    /// external_ids besides the ownership mark.
    pub external_ids: BTreeMap<String, String>,
    /// The interface's `bfd` column (a tunnel port's liveness session); empty: no BFD.
    pub bfd: BTreeMap<String, String>,
}

/// What the agent read from OVSDB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservedOvs {
    pub bridges: BTreeMap<String, ObservedBridge>,
    /// Ports by name.
    pub ports: BTreeMap<String, ObservedPort>,
    /// Bridges carrying the agent's ownership mark.
    pub owned_bridges: BTreeSet<String>,
    /// Non-empty `options` of the ports' (first) interfaces, by port name.
    pub options: BTreeMap<String, BTreeMap<String, String>>,
    /// Non-empty `bfd` configuration of the ports' (first) interfaces, by port name.
    pub bfd: BTreeMap<String, BTreeMap<String, String>>,
    /// What ovs-vswitchd says of the ports' (first) interfaces, by port name: type, carrier
    /// and BFD session (liveness and fencing read these).
    pub ifaces: BTreeMap<String, IfaceStatus>,
}

/// The status columns of an interface, as ovs-vswitchd fills them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceStatus {
    /// `type` ("" for a system device, "internal", "vxlan", "patch", ...).
    pub iface_type: String,
    /// `link_state`: `Some(true)` up, `Some(false)` down, `None` not reported.
    pub link_up: Option<bool>,
    /// `bfd_status` (`state`, `forwarding`, `remote_state`, `flap_count`, ...).
    pub bfd_status: BTreeMap<String, String>,
}

/// A bridge row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedBridge {
    pub datapath_type: String,
}

/// A port row with its (first) interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedPort {
    pub bridge: String,
    pub tag: Option<u16>,
    pub trunks: BTreeSet<u16>,
    pub external_ids: BTreeMap<String, String>,
    /// The interface's `external_ids:iface-id`, if any.
    pub iface_id: Option<String>,
    /// The interface's `error` column: why ovs-vswitchd could not open the device.
    pub iface_error: Option<String>,
    /// The interface's OpenFlow port number, once ovs-vswitchd has assigned one (the firewall
    /// matches on it).
    pub ofport: Option<u32>,
}

impl ObservedPort {
    fn owned(&self) -> bool {
        self.external_ids.get(OWNER_KEY).map(String::as_str) == Some(OWNER_VALUE)
    }
}

/// One change to make in OVSDB. All of one reconcile go in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OvsChange {
    CreateBridge {
        name: String,
        datapath_type: String,
        /// Marked as the agent's, in `fail_mode=secure`.
        owned: bool,
    },
    /// Deletes an owned bridge (its ports go with it).
    DeleteBridge {
        bridge: String,
    },
    SetDatapathType {
        bridge: String,
        datapath_type: String,
    },
    /// Adds a port with one interface of the same name.
    AddPort {
        bridge: String,
        name: String,
        tag: Option<u16>,
        trunks: BTreeSet<u16>,
        iface_type: String,
        external_ids: BTreeMap<String, String>,
        /// The interface's `options`.
        options: BTreeMap<String, String>,
    },
    SetTag {
        port: String,
        tag: Option<u16>,
    },
    SetTrunks {
        port: String,
        trunks: BTreeSet<u16>,
    },
    SetExternalIds {
        port: String,
        external_ids: BTreeMap<String, String>,
    },
    DeletePort {
        bridge: String,
        port: String,
    },
    /// Sets the `options` of the port's interface (same name as the port).
    SetOptions {
        port: String,
        options: BTreeMap<String, String>,
    },
    /// Sets the `bfd` column of the port's interface (same name as the port).
    SetBfd {
        port: String,
        bfd: BTreeMap<String, String>,
    },
}

/// An uplink that trunks nothing must not have an empty `trunks` (OVS reads that as "all
/// VLANs"): it trunks only the dead VLAN.
pub fn uplink_trunks(wanted: &BTreeSet<u16>) -> BTreeSet<u16> {
    if wanted.is_empty() {
        BTreeSet::from([DEAD_VLAN])
    } else {
        wanted.clone()
    }
}

/// The changes that turn `observed` into `desired`, touching only what the agent owns.
pub fn diff(desired: &DesiredOvs, observed: &ObservedOvs) -> Vec<OvsChange> {
    let mut out = Vec::new();
    for (name, want) in &desired.bridges {
        match observed.bridges.get(name) {
            None => out.push(OvsChange::CreateBridge {
                name: name.clone(),
                datapath_type: want.datapath_type.clone(),
                owned: desired.owned_bridges.contains(name),
            }),
            Some(have) if have.datapath_type != want.datapath_type => {
                out.push(OvsChange::SetDatapathType {
                    bridge: name.clone(),
                    datapath_type: want.datapath_type.clone(),
                })
            }
            Some(_) => {}
        }
        if let Some((dev, trunks)) = &want.uplink {
            let trunks = uplink_trunks(trunks);
            match observed.ports.get(dev) {
                None => out.push(OvsChange::AddPort {
                    bridge: name.clone(),
                    name: dev.clone(),
                    tag: None,
                    trunks,
                    iface_type: String::new(),
                    external_ids: owner_ids(&BTreeMap::new()),
                    options: BTreeMap::new(),
                }),
                Some(p) if p.trunks != trunks || p.tag.is_some() => {
                    if p.tag.is_some() {
                        out.push(OvsChange::SetTag {
                            port: dev.clone(),
                            tag: None,
                        });
                    }
                    if p.trunks != trunks {
                        out.push(OvsChange::SetTrunks {
                            port: dev.clone(),
                            trunks,
                        });
                    }
                }
                Some(_) => {}
            }
        }
    }
    for (name, want) in &desired.owned_ports {
        let ids = owner_ids(&want.external_ids);
        match observed.ports.get(name) {
            Some(have) if have.bridge == want.bridge => {
                if have.tag != want.tag {
                    out.push(OvsChange::SetTag {
                        port: name.clone(),
                        tag: want.tag,
                    });
                }
                if have.trunks != want.trunks {
                    out.push(OvsChange::SetTrunks {
                        port: name.clone(),
                        trunks: want.trunks.clone(),
                    });
                }
                if have.external_ids != ids {
                    out.push(OvsChange::SetExternalIds {
                        port: name.clone(),
                        external_ids: ids,
                    });
                }
                let no_options = BTreeMap::new();
                if *observed.options.get(name).unwrap_or(&no_options) != want.options {
                    out.push(OvsChange::SetOptions {
                        port: name.clone(),
                        options: want.options.clone(),
                    });
                }
                if *observed.bfd.get(name).unwrap_or(&no_options) != want.bfd {
                    out.push(OvsChange::SetBfd {
                        port: name.clone(),
                        bfd: want.bfd.clone(),
                    });
                }
            }
            other => {
                if let Some(have) = other {
                    // Same name on another bridge: move it, but only if it is ours.
                    if !have.owned() {
                        continue;
                    }
                    out.push(OvsChange::DeletePort {
                        bridge: have.bridge.clone(),
                        port: name.clone(),
                    });
                }
                out.push(OvsChange::AddPort {
                    bridge: want.bridge.clone(),
                    name: name.clone(),
                    tag: want.tag,
                    trunks: want.trunks.clone(),
                    iface_type: want.iface_type.clone(),
                    external_ids: ids,
                    options: want.options.clone(),
                });
                if !want.bfd.is_empty() {
                    // Same transaction: the interface row inserted just before.
                    out.push(OvsChange::SetBfd {
                        port: name.clone(),
                        bfd: want.bfd.clone(),
                    });
                }
            }
        }
    }
    let uplinks: BTreeSet<&str> = desired
        .bridges
        .values()
        .filter_map(|b| b.uplink.as_ref().map(|(d, _)| d.as_str()))
        .collect();
    let unwanted_bridges: BTreeSet<&String> = observed
        .owned_bridges
        .iter()
        .filter(|b| !desired.bridges.contains_key(*b))
        .collect();
    for b in &unwanted_bridges {
        out.push(OvsChange::DeleteBridge {
            bridge: b.to_string(),
        });
    }
    for (name, have) in &observed.ports {
        if have.owned() {
            if !desired.owned_ports.contains_key(name)
                && !uplinks.contains(name.as_str())
                && !unwanted_bridges.contains(&have.bridge)
            {
                out.push(OvsChange::DeletePort {
                    bridge: have.bridge.clone(),
                    port: name.clone(),
                });
            }
            continue;
        }
        // A VM interface: tag it with its network's VLAN, or park it.
        if let Some(iface_id) = &have.iface_id {
            let want = match desired.vm_tags.get(iface_id) {
                Some((bridge, tag)) if *bridge == have.bridge => Some(*tag),
                _ => Some(DEAD_VLAN),
            };
            if have.tag != want {
                out.push(OvsChange::SetTag {
                    port: name.clone(),
                    tag: want,
                });
            }
        }
    }
    out
}

fn owner_ids(extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut ids = extra.clone();
    ids.insert(OWNER_KEY.into(), OWNER_VALUE.into());
    ids
}

/// iface-ids plugged into this node's bridges (bound or parked), for the status report.
pub fn plugged_iface_ids(observed: &ObservedOvs) -> BTreeMap<String, String> {
    observed
        .ports
        .iter()
        .filter(|(_, p)| !p.owned())
        .filter_map(|(name, p)| p.iface_id.clone().map(|id| (id, name.clone())))
        .collect()
}

/// Ports the agent owns or was given (uplinks) whose interface ovs-vswitchd could not open:
/// port name → the error, for the status report.
pub fn port_errors(desired: &DesiredOvs, observed: &ObservedOvs) -> BTreeMap<String, String> {
    let uplinks: BTreeSet<&str> = desired
        .bridges
        .values()
        .filter_map(|b| b.uplink.as_ref().map(|(d, _)| d.as_str()))
        .collect();
    observed
        .ports
        .iter()
        .filter(|(name, p)| p.owned() || uplinks.contains(name.as_str()))
        .filter_map(|(name, p)| {
            p.iface_error
                .as_ref()
                .map(|e| (name.clone(), format!("port {name} on {}: {e}", p.bridge)))
        })
        .collect()
}

/// Applies `changes` to an observed state, as OVSDB would: the reconcile tests use it to check
/// that a second diff after applying the first is empty.
pub fn apply(observed: &mut ObservedOvs, changes: &[OvsChange]) {
    for c in changes {
        match c {
            OvsChange::CreateBridge {
                name,
                datapath_type,
                owned,
            } => {
                observed.bridges.insert(
                    name.clone(),
                    ObservedBridge {
                        datapath_type: datapath_type.clone(),
                    },
                );
                if *owned {
                    observed.owned_bridges.insert(name.clone());
                }
            }
            OvsChange::DeleteBridge { bridge } => {
                observed.bridges.remove(bridge);
                observed.owned_bridges.remove(bridge);
                let gone: Vec<String> = observed
                    .ports
                    .iter()
                    .filter(|(_, p)| p.bridge == *bridge)
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in gone {
                    observed.ports.remove(&n);
                    observed.options.remove(&n);
                    observed.bfd.remove(&n);
                }
            }
            OvsChange::SetDatapathType {
                bridge: name,
                datapath_type,
            } => {
                observed.bridges.insert(
                    name.clone(),
                    ObservedBridge {
                        datapath_type: datapath_type.clone(),
                    },
                );
            }
            OvsChange::AddPort {
                bridge,
                name,
                tag,
                trunks,
                external_ids,
                options,
                ..
            } => {
                if options.is_empty() {
                    observed.options.remove(name);
                } else {
                    observed.options.insert(name.clone(), options.clone());
                }
                observed.ports.insert(
                    name.clone(),
                    ObservedPort {
                        bridge: bridge.clone(),
                        tag: *tag,
                        trunks: trunks.clone(),
                        external_ids: external_ids.clone(),
                        iface_id: None,
                        iface_error: None,
                        ofport: None,
                    },
                );
            }
            OvsChange::SetTag { port, tag } => {
                if let Some(p) = observed.ports.get_mut(port) {
                    p.tag = *tag;
                }
            }
            OvsChange::SetTrunks { port, trunks } => {
                if let Some(p) = observed.ports.get_mut(port) {
                    p.trunks = trunks.clone();
                }
            }
            OvsChange::SetExternalIds { port, external_ids } => {
                if let Some(p) = observed.ports.get_mut(port) {
                    p.external_ids = external_ids.clone();
                }
            }
            OvsChange::DeletePort { port, .. } => {
                observed.ports.remove(port);
                observed.options.remove(port);
                observed.bfd.remove(port);
            }
            OvsChange::SetOptions { port, options } => {
                if options.is_empty() {
                    observed.options.remove(port);
                } else {
                    observed.options.insert(port.clone(), options.clone());
                }
            }
            OvsChange::SetBfd { port, bfd } => {
                if bfd.is_empty() {
                    observed.bfd.remove(port);
                } else {
                    observed.bfd.insert(port.clone(), bfd.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredOvs {
        let mut d = DesiredOvs::default();
        d.bridges.insert(
            "br-vlan".into(),
            DesiredBridge {
                datapath_type: "netdev".into(),
                uplink: Some(("eth1".into(), BTreeSet::from([2001]))),
            },
        );
        d.owned_ports.insert(
            "tr-0123456789a".into(),
            DesiredPort {
                bridge: "br-vlan".into(),
                tag: Some(101),
                iface_type: String::new(),
                external_ids: BTreeMap::from([("crosspod-router".into(), "r1".into())]),
                ..Default::default()
            },
        );
        d.vm_tags.insert("port-1".into(), ("br-vlan".into(), 101));
        d
    }

    fn vm_port(iface: &str) -> ObservedPort {
        ObservedPort {
            bridge: "br-vlan".into(),
            tag: None,
            trunks: BTreeSet::new(),
            external_ids: BTreeMap::new(),
            iface_id: Some(iface.into()),
            iface_error: None,
            ofport: None,
        }
    }

    #[test]
    fn from_empty_creates_everything_then_converges() {
        let d = desired();
        let mut obs = ObservedOvs::default();
        obs.ports.insert("tap1".into(), vm_port("port-1"));
        obs.ports.insert("tap2".into(), vm_port("port-unknown"));
        let changes = diff(&d, &obs);
        assert!(changes.contains(&OvsChange::CreateBridge {
            name: "br-vlan".into(),
            datapath_type: "netdev".into(),
            owned: false,
        }));
        assert!(changes.contains(&OvsChange::SetTag {
            port: "tap1".into(),
            tag: Some(101)
        }));
        assert!(changes.contains(&OvsChange::SetTag {
            port: "tap2".into(),
            tag: Some(DEAD_VLAN)
        }));
        apply(&mut obs, &changes);
        assert_eq!(diff(&d, &obs), vec![], "second pass must be a no-op");
    }

    #[test]
    fn bfd_is_set_with_the_new_port_and_then_only_when_it_differs() {
        let mut d = desired();
        let bfd = BTreeMap::from([
            ("enable".to_string(), "true".to_string()),
            ("min_tx".to_string(), "100".to_string()),
            ("min_rx".to_string(), "100".to_string()),
        ]);
        d.owned_ports.insert(
            "vx-c0a83202".into(),
            DesiredPort {
                bridge: "br-vlan".into(),
                iface_type: "vxlan".into(),
                bfd: bfd.clone(),
                ..Default::default()
            },
        );
        let mut obs = ObservedOvs::default();
        let changes = diff(&d, &obs);
        let add = changes
            .iter()
            .position(|c| matches!(c, OvsChange::AddPort { name, .. } if name == "vx-c0a83202"))
            .unwrap();
        assert_eq!(
            changes[add + 1],
            OvsChange::SetBfd {
                port: "vx-c0a83202".into(),
                bfd: bfd.clone()
            },
            "in the same transaction, right after the insert"
        );
        apply(&mut obs, &changes);
        assert_eq!(diff(&d, &obs), vec![], "second pass must be a no-op");
        // Another interval: only the bfd column changes.
        d.owned_ports
            .get_mut("vx-c0a83202")
            .unwrap()
            .bfd
            .insert("min_tx".into(), "300".into());
        let c = diff(&d, &obs);
        assert!(
            matches!(&c[..], [OvsChange::SetBfd { port, bfd }] if port == "vx-c0a83202" && bfd["min_tx"] == "300"),
            "{c:?}"
        );
    }

    #[test]
    fn foreign_ports_are_never_deleted_and_owned_leftovers_are() {
        let d = desired();
        let mut obs = ObservedOvs::default();
        obs.bridges.insert(
            "br-vlan".into(),
            ObservedBridge {
                datapath_type: "netdev".into(),
            },
        );
        let mut foreign = vm_port("x");
        foreign.iface_id = None;
        obs.ports.insert("someone-else".into(), foreign);
        let mut stale = vm_port("x");
        stale.iface_id = None;
        stale.external_ids = owner_ids(&BTreeMap::new());
        obs.ports.insert("tr-stale".into(), stale);
        let changes = diff(&d, &obs);
        assert!(changes.contains(&OvsChange::DeletePort {
            bridge: "br-vlan".into(),
            port: "tr-stale".into()
        }));
        assert!(!changes
            .iter()
            .any(|c| matches!(c, OvsChange::DeletePort { port, .. } if port == "someone-else")));
    }

    #[test]
    fn an_uplink_with_nothing_to_carry_trunks_only_the_dead_vlan() {
        let mut d = desired();
        d.bridges.get_mut("br-vlan").unwrap().uplink = Some(("eth1".into(), BTreeSet::new()));
        let mut obs = ObservedOvs::default();
        let c = diff(&d, &obs);
        apply(&mut obs, &c);
        assert_eq!(obs.ports["eth1"].trunks, BTreeSet::from([DEAD_VLAN]));
    }

    #[test]
    fn trunks_follow_the_desired_set_exactly() {
        let d = desired();
        let mut obs = ObservedOvs::default();
        let c = diff(&d, &obs);
        apply(&mut obs, &c);
        let mut d2 = d.clone();
        d2.bridges.get_mut("br-vlan").unwrap().uplink =
            Some(("eth1".into(), BTreeSet::from([2001, 2002])));
        assert_eq!(
            diff(&d2, &obs),
            vec![OvsChange::SetTrunks {
                port: "eth1".into(),
                trunks: BTreeSet::from([2001, 2002])
            }]
        );
    }

    #[test]
    fn a_vm_whose_network_leaves_the_node_is_parked() {
        let mut d = desired();
        let mut obs = ObservedOvs::default();
        obs.ports.insert("tap1".into(), vm_port("port-1"));
        let c = diff(&d, &obs);
        apply(&mut obs, &c);
        assert_eq!(obs.ports["tap1"].tag, Some(101));
        d.vm_tags.clear();
        let c = diff(&d, &obs);
        apply(&mut obs, &c);
        assert_eq!(obs.ports["tap1"].tag, Some(DEAD_VLAN));
        assert_eq!(plugged_iface_ids(&obs)["port-1"], "tap1");
    }

    #[test]
    fn an_owned_bridge_is_created_marked_converges_and_goes_with_its_ports() {
        let mut d = desired();
        d.bridges.insert(
            "br-tun".into(),
            DesiredBridge {
                datapath_type: "netdev".into(),
                uplink: None,
            },
        );
        d.owned_bridges.insert("br-tun".into());
        d.owned_ports.insert(
            "vx-c0a83202".into(),
            DesiredPort {
                bridge: "br-tun".into(),
                iface_type: "vxlan".into(),
                options: BTreeMap::from([("remote_ip".into(), "192.168.50.2".into())]),
                ..Default::default()
            },
        );
        d.owned_ports.insert(
            "patch-tun".into(),
            DesiredPort {
                bridge: "br-vlan".into(),
                trunks: BTreeSet::from([7, 8]),
                iface_type: "patch".into(),
                ..Default::default()
            },
        );
        let mut obs = ObservedOvs::default();
        let c = diff(&d, &obs);
        assert!(c.contains(&OvsChange::CreateBridge {
            name: "br-tun".into(),
            datapath_type: "netdev".into(),
            owned: true
        }));
        apply(&mut obs, &c);
        assert_eq!(diff(&d, &obs), vec![], "second pass must be a no-op");
        assert_eq!(obs.ports["patch-tun"].trunks, BTreeSet::from([7, 8]));
        // A changed option is set in place, not by re-adding the port.
        let mut d2 = d.clone();
        d2.owned_ports.get_mut("vx-c0a83202").unwrap().options =
            BTreeMap::from([("remote_ip".into(), "192.168.50.9".into())]);
        assert!(
            matches!(&diff(&d2, &obs)[..], [OvsChange::SetOptions { port, .. }] if port == "vx-c0a83202")
        );
        // Not wanted any more: the bridge goes (its ports with it, no separate delete).
        let mut d3 = desired();
        d3.owned_ports.remove("patch-tun");
        let c = diff(&d3, &obs);
        assert!(c.contains(&OvsChange::DeleteBridge {
            bridge: "br-tun".into()
        }));
        assert!(!c
            .iter()
            .any(|x| matches!(x, OvsChange::DeletePort { port, .. } if port == "vx-c0a83202")));
        apply(&mut obs, &c);
        assert!(!obs.bridges.contains_key("br-tun"));
        assert_eq!(diff(&d3, &obs), vec![]);
        // A bridge of the same name without the mark is never deleted.
        obs.bridges.insert(
            "br-other".into(),
            ObservedBridge {
                datapath_type: "netdev".into(),
            },
        );
        assert_eq!(diff(&d3, &obs), vec![]);
    }
}
