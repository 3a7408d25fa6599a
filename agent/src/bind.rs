//! The port binding fast path: a VM interface whose `iface-id` is a port of the desired state
//! in force is tagged as soon as OVSDB shows it, in one small transaction, without waiting for
//! the debounce, the Linux half of the pass or the controller.
//!
//! It writes exactly what the full pass would write for those ports (the same rule as
//! [`crate::ovs_plan::diff`]), so the pass that follows finds nothing more to do for them.
//! Everything else (unknown iface-ids parked on the dead VLAN, owned ports, uplinks) stays
//! the full pass's job.
//!
//! With the firewall on, a port with port security is never tagged without its filter: the
//! fast path writes the bridge's flows first (as the pass would compute them once the tags
//! are in), then the tags; a secured port whose interface has no OpenFlow port number yet
//! (ovs-vswitchd has not added it) waits for the next OVSDB change, which brings the number.

use std::collections::BTreeSet;

use wire::NodeDesiredState;

use crate::ovs_plan::{DesiredOvs, ObservedOvs, OvsChange};

/// What one fast-path step writes: the tags, and whether the firewall's flows must be written
/// before them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastBind {
    /// The tags to write.
    pub changes: Vec<OvsChange>,
    /// Some tag lands on a bridge with secured ports: its flows depend on the tags (a secured
    /// port's filter, the other ports' classification), so they go first.
    pub flows_first: bool,
    /// Secured ports left for a later step (no OpenFlow port number yet: no filter possible).
    pub deferred: Vec<String>,
}

/// [`bind_changes`] with the firewall's order: secured ports without an ofport deferred, and
/// whether the flows must be written before the tags (`firewall` false: never).
pub fn plan(
    desired: &DesiredOvs,
    state: &NodeDesiredState,
    observed: &ObservedOvs,
    firewall: bool,
) -> FastBind {
    let changes = bind_changes(desired, observed);
    if !firewall {
        return FastBind {
            changes,
            ..FastBind::default()
        };
    }
    let secured_bridges: BTreeSet<&str> = state
        .ports
        .values()
        .filter(|p| p.security.is_some())
        .map(|p| p.bridge.as_str())
        .collect();
    let mut out = FastBind::default();
    for c in changes {
        let OvsChange::SetTag { port, .. } = &c else {
            continue;
        };
        let Some(p) = observed.ports.get(port) else {
            continue;
        };
        let secured = p
            .iface_id
            .as_ref()
            .and_then(|id| state.ports.get(id))
            .is_some_and(|d| d.security.is_some());
        if secured && p.ofport.is_none() {
            out.deferred.push(port.clone());
            continue;
        }
        out.flows_first |= secured_bridges.contains(p.bridge.as_str());
        out.changes.push(c);
    }
    out
}

/// The tag changes that bind VM interfaces whose iface-id the desired state places on the
/// bridge they are plugged into: one `SetTag` per port whose tag is not already right.
pub fn bind_changes(desired: &DesiredOvs, observed: &ObservedOvs) -> Vec<OvsChange> {
    observed
        .ports
        .iter()
        .filter(|(_, p)| {
            p.external_ids
                .get(crate::ovs_plan::OWNER_KEY)
                .map(String::as_str)
                != Some(crate::ovs_plan::OWNER_VALUE)
        })
        .filter_map(|(name, p)| {
            let (bridge, tag) = desired.vm_tags.get(p.iface_id.as_ref()?)?;
            (*bridge == p.bridge && p.tag != Some(*tag)).then(|| OvsChange::SetTag {
                port: name.clone(),
                tag: Some(*tag),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::ovs_plan::{diff, ObservedPort, DEAD_VLAN, OWNER_KEY, OWNER_VALUE};

    fn port(bridge: &str, tag: Option<u16>, iface_id: Option<&str>, owned: bool) -> ObservedPort {
        ObservedPort {
            bridge: bridge.into(),
            tag,
            trunks: BTreeSet::new(),
            external_ids: if owned {
                BTreeMap::from([(OWNER_KEY.to_string(), OWNER_VALUE.to_string())])
            } else {
                BTreeMap::new()
            },
            iface_id: iface_id.map(str::to_string),
            iface_error: None,
            ofport: None,
        }
    }

    #[test]
    fn binds_known_ports_only_and_agrees_with_the_full_diff() {
        let desired = DesiredOvs {
            vm_tags: BTreeMap::from([
                ("a".to_string(), ("br-vlan".to_string(), 101)),
                ("b".to_string(), ("br-vlan".to_string(), 102)),
                ("c".to_string(), ("br-other".to_string(), 103)),
                ("owned".to_string(), ("br-vlan".to_string(), 104)),
            ]),
            ..Default::default()
        };
        let mut observed = ObservedOvs::default();
        observed
            .ports
            .insert("tap-a".into(), port("br-vlan", None, Some("a"), false));
        // Already right: nothing to write.
        observed
            .ports
            .insert("tap-b".into(), port("br-vlan", Some(102), Some("b"), false));
        // Plugged into another bridge than the state's: left to the pass (parked there).
        observed
            .ports
            .insert("tap-c".into(), port("br-vlan", None, Some("c"), false));
        // Unknown iface-id: left to the pass (parked there).
        observed
            .ports
            .insert("tap-x".into(), port("br-vlan", None, Some("x"), false));
        // No iface-id, or owned by the agent: never touched here.
        observed
            .ports
            .insert("tap-n".into(), port("br-vlan", None, None, false));
        observed
            .ports
            .insert("vr-o".into(), port("br-vlan", None, Some("owned"), true));
        let fast = bind_changes(&desired, &observed);
        assert_eq!(
            fast,
            vec![OvsChange::SetTag {
                port: "tap-a".into(),
                tag: Some(101)
            }]
        );
        // Every fast change is one the full diff makes too, and after it the full diff has
        // nothing left for the bound port.
        let full = diff(&desired, &observed);
        assert!(fast.iter().all(|c| full.contains(c)), "{full:?}");
        crate::ovs_plan::apply(&mut observed, &fast);
        let after = diff(&desired, &observed);
        assert!(
            after
                .iter()
                .all(|c| !matches!(c, OvsChange::SetTag { port, .. } if port == "tap-a")),
            "{after:?}"
        );
        assert!(after.contains(&OvsChange::SetTag {
            port: "tap-x".into(),
            tag: Some(DEAD_VLAN)
        }));
        assert!(bind_changes(&desired, &observed).is_empty());
    }

    /// With the firewall, a secured port without an ofport waits (no filter possible yet), a
    /// tag on a bridge holding secured ports asks for the flows first, and a bridge without
    /// any leaves the flows alone; without the firewall everything is tagged as before.
    #[test]
    fn secured_ports_wait_for_their_ofport_and_their_flows_go_first() {
        let sec = serde_json::json!({"allowed": [], "security_groups": [], "ct_zone": 1});
        let state: NodeDesiredState = serde_json::from_value(serde_json::json!({
            "node": "n1", "pod": "p", "revision": 1,
            "bridges": {"br-vlan": {"physnet": "x", "uplink": false, "trunks": []},
                        "br-other": {"physnet": "y", "uplink": false, "trunks": []}},
            "ports": {
                "s1": {"bridge": "br-vlan", "tag": 101, "network_id": "n", "mac": "fa:16:3e:00:00:01",
                       "fixed_ips": [], "security": sec},
                "s2": {"bridge": "br-vlan", "tag": 101, "network_id": "n", "mac": "fa:16:3e:00:00:02",
                       "fixed_ips": [], "security": sec},
                "open": {"bridge": "br-vlan", "tag": 101, "network_id": "n", "mac": "fa:16:3e:00:00:03",
                         "fixed_ips": []},
                "far": {"bridge": "br-other", "tag": 102, "network_id": "n", "mac": "fa:16:3e:00:00:04",
                        "fixed_ips": []}
            },
            "routers": {}
        }))
        .unwrap();
        let desired = DesiredOvs {
            vm_tags: state
                .ports
                .iter()
                .map(|(id, p)| (id.clone(), (p.bridge.clone(), p.tag.unwrap())))
                .collect(),
            ..Default::default()
        };
        let plugged = |ports: &[(&str, &str, &str, Option<u32>)]| {
            let mut o = ObservedOvs::default();
            for (tap, bridge, id, ofport) in ports {
                let mut p = port(bridge, None, Some(id), false);
                p.ofport = *ofport;
                o.ports.insert(tap.to_string(), p);
            }
            o
        };
        let tag = |port: &str, t: u16| OvsChange::SetTag {
            port: port.into(),
            tag: Some(t),
        };
        // s1 has its ofport, s2 not yet: s1 bound with its flows first, s2 waits.
        let o = plugged(&[
            ("t1", "br-vlan", "s1", Some(1)),
            ("t2", "br-vlan", "s2", None),
        ]);
        let p = plan(&desired, &state, &o, true);
        assert_eq!(p.changes, vec![tag("t1", 101)]);
        assert!(p.flows_first);
        assert_eq!(p.deferred, ["t2"]);
        // An open port on a bridge with secured ports: its classification flow goes first too.
        let o = plugged(&[("t3", "br-vlan", "open", None)]);
        let p = plan(&desired, &state, &o, true);
        assert_eq!((p.changes.len(), p.flows_first), (1, true));
        // A bridge without secured ports: no flows to write.
        let o = plugged(&[("t4", "br-other", "far", None)]);
        let p = plan(&desired, &state, &o, true);
        assert_eq!(p.changes, vec![tag("t4", 102)]);
        assert!(!p.flows_first);
        // Without the firewall: the tags alone, nothing deferred.
        let o = plugged(&[("t2", "br-vlan", "s2", None)]);
        let p = plan(&desired, &state, &o, false);
        assert_eq!(p.changes, vec![tag("t2", 101)]);
        assert!(!p.flows_first && p.deferred.is_empty());
    }
}
