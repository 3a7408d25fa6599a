//! Security groups and port security enforced in Open vSwitch with conntrack.
//!
//! [`flows`] compiles the desired state (ports with [`wire::PortSecurity`], the node's
//! [`wire::SecurityGroup`]s) and the OVS port numbers into the flows each bridge must hold;
//! [`Firewall::reconcile`] makes each bridge hold exactly those among the flows carrying
//! the firewall's cookie: it dumps them (filtered by cookie), and writes only the difference as
//! one atomic bundle ([`crate::flowsync`], shared with the tunnel bridge). A flow's cookie is
//! the firewall's bits plus a hash of the flow, so an unchanged
//! flow is never rewritten, a pass with nothing changed writes nothing, an ovs-vswitchd restart
//! (which loses every flow) gets them all back, and only crosspod's flows are ever deleted.

pub mod flows;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ovs::openflow::FlowMod;
use wire::NodeDesiredState;

use crate::flowsync::FlowSync;

use crate::ovs_plan::ObservedOvs;
pub use flows::{compile, BridgeInput, FlowSet, SecuredPort, COOKIE_BASE, COOKIE_MASK};

/// What one firewall step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallOutcome {
    /// Flows the bridges must hold (crosspod's).
    pub desired: usize,
    /// Flows written (added or replaced).
    pub added: usize,
    /// Flows deleted.
    pub deleted: usize,
    /// Secured ports not plugged yet (no ofport): nothing enforced for them yet.
    pub waiting: Vec<String>,
    /// Bridges that could not be read or written, with the reason.
    pub errors: Vec<String>,
}

impl FirewallOutcome {
    /// Flow writes of the step (what a restart with nothing changed must keep at zero).
    pub fn changes(&self) -> usize {
        self.added + self.deleted
    }
}

/// The per-bridge inputs of the compiler: secured ports with their ofport (by `iface-id` in the
/// OVSDB replica), every other port's tag. A secured port whose interface is on another bridge
/// than the desired one is skipped until the OVS side has moved it.
pub fn inputs(
    state: &NodeDesiredState,
    observed: &ObservedOvs,
) -> (BTreeMap<String, BridgeInput>, Vec<String>) {
    let mut out: BTreeMap<String, BridgeInput> = BTreeMap::new();
    let mut waiting = Vec::new();
    let mut secured_ofports: BTreeSet<(String, u32)> = BTreeSet::new();
    let by_iface: BTreeMap<&str, (&str, Option<u32>)> = observed
        .ports
        .values()
        .filter_map(|p| Some((p.iface_id.as_deref()?, (p.bridge.as_str(), p.ofport))))
        .collect();
    for (id, p) in &state.ports {
        let Some(sec) = &p.security else { continue };
        match by_iface.get(id.as_str()) {
            Some((bridge, Some(ofport))) if *bridge == p.bridge => {
                secured_ofports.insert((p.bridge.clone(), *ofport));
                out.entry(p.bridge.clone()).or_default().secured.insert(
                    id.clone(),
                    SecuredPort {
                        ofport: *ofport,
                        tag: p.tag.unwrap_or(crate::intent::UNTAGGED),
                        mac: p.mac.to_lowercase(),
                        security: sec.clone(),
                    },
                );
            }
            _ => waiting.push(id.clone()),
        }
    }
    for p in observed.ports.values() {
        let (Some(ofport), Some(tag)) = (p.ofport, p.tag) else {
            continue;
        };
        if secured_ofports.contains(&(p.bridge.clone(), ofport)) {
            continue;
        }
        if let Some(b) = out.get_mut(&p.bridge) {
            b.access.insert(ofport, tag);
        }
    }
    (out, waiting)
}

/// The flows every bridge must hold (bridges without a secured port hold none).
pub fn desired_flows(
    state: &NodeDesiredState,
    observed: &ObservedOvs,
) -> (BTreeMap<String, FlowSet>, Vec<String>) {
    let (inputs, waiting) = inputs(state, observed);
    let flows = inputs
        .iter()
        .map(|(b, i)| (b.clone(), compile(i, &state.security_groups)))
        .collect();
    (flows, waiting)
}

/// The adds and deletes that turn `have` (cookies of crosspod's flows on a bridge) into
/// `want` (cookie → flow text). Deletes name exact cookies, all of them the firewall's.
pub fn diff(want: &BTreeMap<u64, String>, have: &BTreeSet<u64>) -> Vec<FlowMod> {
    crate::flowsync::diff(COOKIE_BASE, want, have)
}

/// The firewall step of the agent: the shared flow writer (management sockets, sentinels).
#[derive(Debug, Clone)]
pub struct Firewall {
    flows: FlowSync,
}

/// The flow whose presence [`Firewall::flows_lost`] checks on each programmed bridge (table
/// 60's NORMAL): gone means ovs-vswitchd restarted (or someone flushed the bridge) and every
/// flow must be written again.
fn sentinel() -> u64 {
    flows::cookie_of(&format!(
        "table={},priority=0 actions=NORMAL",
        flows::T_DISPATCH
    ))
}

impl Firewall {
    /// Bridges' OpenFlow sockets are `<rundir>/<bridge>.mgmt`.
    pub fn new(rundir: impl Into<PathBuf>) -> Self {
        Firewall {
            flows: FlowSync::new(rundir),
        }
    }

    /// The flow writer, shared with the tunnel bridge's step (one sentinel check for both).
    pub fn flow_sync(&self) -> &FlowSync {
        &self.flows
    }

    /// Whether a bridge programmed by the last pass (by the firewall or the tunnel step) lost
    /// its flows; see [`FlowSync::flows_lost`]. Blocking.
    pub fn flows_lost(&self) -> bool {
        self.flows.flows_lost()
    }

    /// Makes every bridge of the node hold exactly its desired flows among crosspod's. Blocking
    /// (runs `ovs-ofctl`): call it from a blocking task.
    pub fn reconcile(&self, state: &NodeDesiredState, observed: &ObservedOvs) -> FirewallOutcome {
        let (wanted, waiting) = desired_flows(state, observed);
        let mut out = FirewallOutcome {
            waiting,
            ..FirewallOutcome::default()
        };
        let bridges: BTreeSet<&String> = observed
            .bridges
            .keys()
            .chain(state.bridges.keys())
            .chain(wanted.keys())
            .collect();
        for bridge in bridges {
            let empty = FlowSet::default();
            let want = wanted.get(bridge).unwrap_or(&empty).with_cookies();
            out.desired += want.len();
            let s = want.contains_key(&sentinel()).then(sentinel);
            self.flows.set_sentinel(COOKIE_BASE, bridge, s);
            match self.flows.sync(COOKIE_BASE, bridge, &want) {
                Ok(r) => {
                    out.added += r.added;
                    out.deleted += r.deleted;
                }
                Err(e) => out.errors.push(format!("firewall on {bridge}: {e}")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovs_plan::{ObservedBridge, ObservedPort};
    use serde_json::json;

    fn observed(ports: &[(&str, &str, Option<u32>, u16)]) -> ObservedOvs {
        let mut o = ObservedOvs::default();
        o.bridges.insert(
            "br".into(),
            ObservedBridge {
                datapath_type: "netdev".into(),
            },
        );
        for (name, iface, ofport, tag) in ports {
            o.ports.insert(
                name.to_string(),
                ObservedPort {
                    bridge: "br".into(),
                    tag: Some(*tag),
                    trunks: Default::default(),
                    external_ids: Default::default(),
                    iface_id: (!iface.is_empty()).then(|| iface.to_string()),
                    iface_error: None,
                    ofport: *ofport,
                },
            );
        }
        o
    }

    fn state(members: &[&str], rules: serde_json::Value, vm2_secured: bool) -> NodeDesiredState {
        let sec = |ip: &str, mac: &str| {
            json!({"allowed": [{"mac": mac, "ip": format!("{ip}/32")}],
                   "security_groups": ["g", "h"], "ct_zone": 3})
        };
        let mut vm2 = json!({"bridge": "br", "tag": 7, "network_id": "n", "mac": "fa:16:3e:00:00:02",
                             "fixed_ips": ["10.0.0.2"]});
        if vm2_secured {
            vm2["security"] = sec("10.0.0.2", "fa:16:3e:00:00:02");
        }
        let members: Vec<String> = members.iter().map(|m| format!("{m}/32")).collect();
        serde_json::from_value(json!({
            "node": "n1", "pod": "p", "revision": 1,
            "bridges": {"br": {"physnet": "x", "uplink": false, "trunks": []}},
            "ports": {
                "vm1": {"bridge": "br", "tag": 7, "network_id": "n", "mac": "fa:16:3e:00:00:01",
                        "fixed_ips": ["10.0.0.1"], "security": sec("10.0.0.1", "fa:16:3e:00:00:01")},
                "vm2": vm2,
                "vm3": {"bridge": "br", "tag": 7, "network_id": "n", "mac": "fa:16:3e:00:00:03",
                        "fixed_ips": ["10.0.0.3"], "security": sec("10.0.0.3", "fa:16:3e:00:00:03")}
            },
            "security_groups": {
                "g": {"rules": rules, "members": members.clone()},
                "h": {"rules": [{"id": "h1", "direction": "ingress", "ethertype": "IPv4",
                                 "remote_group_id": "h"}], "members": members}
            }
        }))
        .unwrap()
    }

    fn rules(with_ssh: bool) -> serde_json::Value {
        let mut r = vec![
            json!({"id": "a", "direction": "egress", "ethertype": "IPv4"}),
            json!({"id": "b", "direction": "ingress", "ethertype": "IPv4", "remote_group_id": "g"}),
            json!({"id": "c", "direction": "ingress", "ethertype": "IPv4", "protocol": 17,
                   "port_range_min": 5000, "port_range_max": 5100}),
        ];
        if with_ssh {
            r.push(
                json!({"id": "d", "direction": "ingress", "ethertype": "IPv4", "protocol": 6,
                          "port_range_min": 22, "port_range_max": 22,
                          "remote_ip_prefix": "192.168.0.0/16"}),
            );
        }
        json!(r)
    }

    fn obs() -> ObservedOvs {
        observed(&[
            ("tap1", "vm1", Some(1), 7),
            ("tap2", "vm2", Some(2), 7),
            ("tap3", "vm3", None, 7),
            ("qr-x", "", Some(9), 7),
        ])
    }

    fn cookies(st: &NodeDesiredState) -> BTreeMap<u64, String> {
        desired_flows(st, &obs()).0["br"].with_cookies()
    }

    fn changed(a: &BTreeMap<u64, String>, b: &BTreeMap<u64, String>) -> Vec<String> {
        let (ka, kb): (BTreeSet<_>, BTreeSet<_>) = (a.keys().collect(), b.keys().collect());
        ka.symmetric_difference(&kb)
            .map(|c| a.get(*c).or(b.get(*c)).unwrap().clone())
            .collect()
    }

    #[test]
    fn ports_are_filtered_only_when_secured_and_plugged() {
        let st = state(&["10.0.0.1"], rules(true), false);
        let (inputs, waiting) = inputs(&st, &obs());
        let br = &inputs["br"];
        assert_eq!(br.secured.keys().collect::<Vec<_>>(), ["vm1"]);
        assert_eq!(waiting, ["vm3"], "secured but no ofport yet");
        // vm2 (security off) and the router leg are classified by their tag, not filtered.
        assert_eq!(br.access, BTreeMap::from([(2, 7), (9, 7)]));
        // No secured port on a bridge: no flows at all (OVS's NORMAL flow does everything).
        let mut none = st.clone();
        for p in none.ports.values_mut() {
            p.security = None;
        }
        assert!(desired_flows(&none, &obs()).0.is_empty());
    }

    #[test]
    fn the_same_state_gives_the_same_flows_and_a_member_touches_one_flow_per_direction_used() {
        let a = cookies(&state(&["10.0.0.1", "10.0.0.2"], rules(true), true));
        assert_eq!(
            a,
            cookies(&state(&["10.0.0.1", "10.0.0.2"], rules(true), true))
        );
        let b = cookies(&state(
            &["10.0.0.1", "10.0.0.2", "10.0.0.9"],
            rules(true),
            true,
        ));
        let d = changed(&a, &b);
        // Groups g and h both have 10.0.0.9 now: one member flow holding both conjunctions.
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].contains("nw_src=10.0.0.9"), "{d:?}");
        assert_eq!(d[0].matches("conjunction(").count(), 4, "{d:?}");
        // Conjunction actions of several groups are merged in a stable order.
        let member = a.values().find(|f| f.contains("nw_src=10.0.0.1 ")).unwrap();
        let mut sorted: Vec<&str> = member
            .split("actions=")
            .nth(1)
            .unwrap()
            .split("),")
            .collect();
        let before = sorted.clone();
        sorted.sort();
        assert_eq!(sorted, before);
    }

    #[test]
    fn removing_a_rule_changes_only_its_flows() {
        let a = cookies(&state(&["10.0.0.1"], rules(true), true));
        let b = cookies(&state(&["10.0.0.1"], rules(false), true));
        let d = changed(&a, &b);
        // Rule d on two secured ports, new and established: 4 flows, all of them tcp/22 from
        // 192.168.0.0/16, all gone.
        assert_eq!(d.len(), 4, "{d:#?}");
        assert!(d.iter().all(|f| f.contains("nw_src=192.168.0.0/16")
            && f.contains("tp_dst=22")
            && a.values().any(|x| x == f)));
    }

    #[test]
    fn the_diff_deletes_only_crosspods_cookies() {
        let want: BTreeMap<u64, String> = [(
            COOKIE_BASE | 1,
            "table=0,priority=1 actions=drop".to_string(),
        )]
        .into();
        let have: BTreeSet<u64> = [COOKIE_BASE | 2, 0x1234, 0, COOKIE_BASE | 1].into();
        let mods = diff(&want, &have);
        assert_eq!(mods, vec![FlowMod::DeleteCookie(COOKIE_BASE | 2)]);
        let mods = diff(&want, &BTreeSet::new());
        assert!(matches!(&mods[..], [FlowMod::Add { cookie, .. }] if *cookie == COOKIE_BASE | 1));
    }

    #[test]
    fn rules_of_the_wrong_family_or_an_empty_range_match_nothing() {
        let r = json!([
            {"id": "x", "direction": "ingress", "ethertype": "IPv4", "remote_ip_prefix": "2001:db8::/64"},
            {"id": "y", "direction": "ingress", "ethertype": "IPv4", "protocol": 6,
             "port_range_min": 90, "port_range_max": 80}
        ]);
        let f = cookies(&state(&[], r, false));
        assert!(
            !f.values()
                .any(|x| x.contains("2001:db8::/64") || x.contains("nw_proto=6")),
            "{f:#?}"
        );
    }
}
