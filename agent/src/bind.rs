//! The port binding fast path: a VM interface whose `iface-id` is a port of the desired state
//! in force is tagged as soon as OVSDB shows it, in one small transaction, without waiting for
//! the debounce, the Linux half of the pass or the controller.
//!
//! It writes exactly what the full pass would write for those ports (the same rule as
//! [`crate::ovs_plan::diff`]), so the pass that follows finds nothing more to do for them.
//! Everything else (unknown iface-ids parked on the dead VLAN, owned ports, uplinks) stays
//! the full pass's job.

use crate::ovs_plan::{DesiredOvs, ObservedOvs, OvsChange};

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
}
