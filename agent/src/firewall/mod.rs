//! Security groups and port security enforced in Open vSwitch with conntrack.
//!
//! [`flows`] compiles the desired state (ports with [`wire::PortSecurity`], the node's
//! [`wire::SecurityGroup`]s) and the OVS port numbers into the flows each bridge must hold;
//! [`Firewall::reconcile`] makes each bridge hold exactly those among the flows carrying
//! crosspod's cookie: it dumps them (filtered by cookie), and writes only the difference as one
//! atomic bundle. A flow's cookie is crosspod's bits plus a hash of the flow, so an unchanged
//! flow is never rewritten, a pass with nothing changed writes nothing, an ovs-vswitchd restart
//! (which loses every flow) gets them all back, and only crosspod's flows are ever deleted.

pub mod flows;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ovs::openflow::{FlowMod, OfctlBridge};
use wire::NodeDesiredState;

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
/// `want` (cookie → flow text). Deletes name exact cookies, all of them crosspod's.
pub fn diff(want: &BTreeMap<u64, String>, have: &BTreeSet<u64>) -> Vec<FlowMod> {
    let mut mods: Vec<FlowMod> = have
        .iter()
        .filter(|c| !want.contains_key(c) && **c & COOKIE_MASK == COOKIE_BASE)
        .map(|c| FlowMod::DeleteCookie(*c))
        .collect();
    mods.extend(
        want.iter()
            .filter(|(c, _)| !have.contains(c))
            .map(|(c, f)| FlowMod::Add {
                cookie: *c,
                flow: f.clone(),
            }),
    );
    mods
}

/// The firewall step of the agent: where the bridges' management sockets are, and which flow
/// of each programmed bridge tells whether ovs-vswitchd still has them.
#[derive(Debug, Clone)]
pub struct Firewall {
    rundir: PathBuf,
    /// bridge → cookie of one flow it must hold (table 60's NORMAL): gone means ovs-vswitchd
    /// restarted (or someone flushed the bridge) and every flow must be written again.
    sentinels: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// The flow whose presence [`Firewall::flows_lost`] checks on each programmed bridge.
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
            rundir: rundir.into(),
            sentinels: Arc::default(),
        }
    }

    /// Whether a bridge programmed by the last pass lost its flows (ovs-vswitchd restarted: it
    /// keeps no flows, and OVSDB may not change at all). One exact-cookie dump per bridge, which
    /// ovs-vswitchd answers from its cookie index: cheap enough for a timer of a few seconds.
    /// Blocking.
    pub fn flows_lost(&self) -> bool {
        let sentinels = self.sentinels.lock().expect("sentinels").clone();
        sentinels.iter().any(|(bridge, cookie)| {
            !matches!(
                OfctlBridge::new(&self.rundir, bridge).dump_flows(*cookie, u64::MAX),
                Ok(f) if !f.is_empty()
            )
        })
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
            {
                let mut s = self.sentinels.lock().expect("sentinels");
                if want.contains_key(&sentinel()) {
                    s.insert(bridge.clone(), sentinel());
                } else {
                    s.remove(bridge.as_str());
                }
            }
            let of = OfctlBridge::new(&self.rundir, bridge);
            if want.is_empty() && !of.has_socket() {
                continue;
            }
            let have: BTreeSet<u64> = match of.dump_flows(COOKIE_BASE, COOKIE_MASK) {
                Ok(f) => f.into_iter().map(|f| f.cookie).collect(),
                Err(e) => {
                    out.errors.push(format!("firewall on {bridge}: {e}"));
                    continue;
                }
            };
            let mods = diff(&want, &have);
            if mods.is_empty() {
                continue;
            }
            let deletes = mods
                .iter()
                .filter(|m| matches!(m, FlowMod::DeleteCookie(_)))
                .count();
            tracing::info!(
                bridge = %bridge,
                add = mods.len() - deletes,
                delete = deletes,
                "applying firewall flows"
            );
            match of.apply_bundle(&mods) {
                Ok(()) => {
                    out.added += mods.len() - deletes;
                    out.deleted += deletes;
                }
                Err(e) => out.errors.push(format!("firewall on {bridge}: {e}")),
            }
        }
        out
    }
}
