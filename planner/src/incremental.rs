//! Re-planning after one change without re-indexing the cloud: only the projects the change
//! concerns are indexed (before and after), and each affected node's previous state is patched:
//! their old contributions out, their new ones in.

use std::collections::{BTreeMap, BTreeSet};

use wire::NodeDesiredState;

use crate::change::{affected, Change};
use crate::fxhash::FxSet;
use crate::index::ScopeIndex;
use crate::names::stem;
use crate::plan::{has_neutron_ovs_name, plan_node};
use crate::scope;
use crate::snapshot::Snapshot;
use crate::topology::Topology;

/// New desired states of the nodes `change` affects, going from `old` to `new`.
///
/// `previous` must hold the states planned from `old` (what the controller serves now); a node
/// missing there is planned from scratch. Nodes not in the result are unchanged. Relies on what
/// the controller guarantees: VLAN tags on one physnet are unique per node (no two segments
/// share a tag on a bridge), and only one flat network per physnet.
pub fn replan(
    old: &Snapshot,
    new: &Snapshot,
    previous: &BTreeMap<String, NodeDesiredState>,
    change: &Change,
) -> BTreeMap<String, NodeDesiredState> {
    replan_with((old, None), (new, None), previous, change)
}

/// [`replan`] with each snapshot's [`ScopeIndex`] (kept by the caller for exactly that
/// snapshot): the change's projects are gathered by lookups, not by scanning the cloud. Gives
/// what [`replan`] gives.
pub fn replan_indexed(
    old: (&Snapshot, &ScopeIndex),
    new: (&Snapshot, &ScopeIndex),
    previous: &BTreeMap<String, NodeDesiredState>,
    change: &Change,
) -> BTreeMap<String, NodeDesiredState> {
    replan_with((old.0, Some(old.1)), (new.0, Some(new.1)), previous, change)
}

/// The projects a change concerns (before and after) and both sides' topologies of them.
pub(crate) struct ScopedPair<'a> {
    /// The projects.
    pub scope: FxSet<&'a str>,
    /// Before the change.
    pub old: Topology<'a>,
    /// After it.
    pub new: Topology<'a>,
}

/// The topologies of the projects `change` concerns in `old` and `new`, each keeping of the
/// open (shared or external) networks only those the projects use before or after (the same
/// set on both sides, so an open network's own contribution is in both or in neither); `None`
/// when the change concerns the whole cloud. Through each side's [`ScopeIndex`] when given.
pub(crate) fn scoped_pair<'a>(
    (old, old_index): (&'a Snapshot, Option<&'a ScopeIndex>),
    (new, new_index): (&'a Snapshot, Option<&'a ScopeIndex>),
    change: &Change,
) -> Option<ScopedPair<'a>> {
    let (Some(mut scope), Some(s_new)) = (
        scope::for_change_indexed(old, old_index, change),
        scope::for_change_indexed(new, new_index, change),
    ) else {
        return None;
    };
    scope.extend(s_new);
    let mut used = match old_index {
        Some(ix) => ix.open_networks_used(old, scope.iter().copied()),
        None => scope::open_networks_used(old, &scope),
    };
    used.extend(match new_index {
        Some(ix) => ix.open_networks_used(new, scope.iter().copied()),
        None => scope::open_networks_used(new, &scope),
    });
    let build = |snap: &'a Snapshot, index: Option<&'a ScopeIndex>| match index {
        Some(ix) => Topology::build_indexed(snap, ix, &scope, Some(&used)),
        None => Topology::build_for_patch(snap, &scope, &used),
    };
    let (t_old, t_new) = (build(old, old_index), build(new, new_index));
    Some(ScopedPair {
        scope,
        old: t_old,
        new: t_new,
    })
}

fn replan_with<'a>(
    (old, old_index): (&'a Snapshot, Option<&'a ScopeIndex>),
    (new, new_index): (&'a Snapshot, Option<&'a ScopeIndex>),
    previous: &BTreeMap<String, NodeDesiredState>,
    change: &Change,
) -> BTreeMap<String, NodeDesiredState> {
    let Some(ScopedPair {
        scope: scope_set,
        old: t_old,
        new: t_new,
    }) = scoped_pair((old, old_index), (new, new_index), change)
    else {
        return full(old, new, change);
    };
    if t_old.has_foreign_routers(&scope_set) || t_new.has_foreign_routers(&scope_set) {
        return full(old, new, change);
    }
    let mut nodes: BTreeSet<&str> = affected(&t_old, change);
    nodes.extend(affected(&t_new, change));
    let mut out = BTreeMap::new();
    let mut fresh: Vec<&str> = Vec::new();
    for name in nodes {
        let Some(node) = t_new.nodes.get(name) else {
            continue; // the node is gone
        };
        let (Some(prev), Some(old_node)) = (previous.get(name), t_old.nodes.get(name)) else {
            fresh.push(name);
            continue;
        };
        if old_node != node {
            fresh.push(name);
            continue;
        }
        let was = plan_node(&t_old, old_node);
        let now = plan_node(&t_new, node);
        if was == now
            && prev.liveness == now.liveness
            && crate::security::groups_for(&t_new, &prev.ports) == prev.security_groups
        {
            // The scope gives this node what it gave before and its groups are as they were:
            // `prev` is its state still (most nodes a change concerns), no copy to make.
            continue;
        }
        let mut patched = patch(prev, &was, &now);
        // The groups a node needs follow from its ports' groups and the whole snapshot's
        // groups and members: derived again, not patched.
        crate::security::fill_groups(&t_new, &mut patched);
        if names_entangled(&patched, &was, &now) {
            // Names outside the scope may depend on names in it: plan the node whole.
            fresh.push(name);
            continue;
        }
        out.insert(name.to_string(), patched);
    }
    if !fresh.is_empty() {
        out.extend(crate::plan_nodes(new, fresh));
    }
    out
}

/// Whether the OVS-side names the scope planned (`was`, `now`) and those of routers outside
/// it (still in `patched`) may disagree with planning the node whole: the scoped plan assigned
/// names without seeing the others (see [`names`](crate::names)). Namespace-side names are
/// per router, and a router is always wholly in or out of the scope.
///
/// Exact but cheap: an outside leg holding its Neutron name keeps it unless an id of the
/// scope wants the same name, and then the scope gave that name too (a duplicate). An outside
/// leg holding an alternate may have to move (back) when a scope id sharing its first
/// [`STEM`](crate::names::STEM) bytes comes or goes. Server-made UUIDs practically never
/// share those, so this almost never falls back.
fn names_entangled(
    patched: &NodeDesiredState,
    was: &NodeDesiredState,
    now: &NodeDesiredState,
) -> bool {
    let mut seen: FxSet<&str> = FxSet::default();
    if !patched
        .routers
        .values()
        .flat_map(|r| r.legs.iter())
        .all(|l| seen.insert(l.ovs_ifname.as_str()))
    {
        return true;
    }
    let alternates: Vec<&str> = patched
        .routers
        .iter()
        .filter(|(id, _)| !now.routers.contains_key(*id))
        .flat_map(|(id, r)| {
            r.legs
                .iter()
                .filter(move |l| !has_neutron_ovs_name(id, l))
                .map(|l| l.ovs_ifname.as_str())
        })
        .collect();
    if alternates.is_empty() {
        return false;
    }
    // Two names are related when they agree on their first min(STEM, lengths) bytes: one's
    // stem is a prefix of the other's.
    let touched: FxSet<&str> = was
        .routers
        .values()
        .chain(now.routers.values())
        .flat_map(|r| r.legs.iter().map(|l| stem(&l.ovs_ifname)))
        .collect();
    alternates.iter().any(|u| {
        let u = stem(u);
        touched.iter().any(|t| u.starts_with(t) || t.starts_with(u))
    })
}

fn full(old: &Snapshot, new: &Snapshot, change: &Change) -> BTreeMap<String, NodeDesiredState> {
    let mut nodes = crate::affected_nodes(old, change);
    nodes.extend(crate::affected_nodes(new, change));
    crate::plan_nodes(new, nodes.iter().map(String::as_str))
}

/// `prev - was + now`, where `was`/`now` are the scope's contributions before and after.
fn patch(
    prev: &NodeDesiredState,
    was: &NodeDesiredState,
    now: &NodeDesiredState,
) -> NodeDesiredState {
    let mut s = prev.clone();
    for id in was.ports.keys() {
        s.ports.remove(id);
    }
    for id in was.routers.keys() {
        s.routers.remove(id);
    }
    for id in was.dhcp.keys() {
        s.dhcp.remove(id);
    }
    for (name, b) in &was.bridges {
        if let Some(sb) = s.bridges.get_mut(name) {
            sb.trunks.retain(|t| !b.trunks.contains(t));
            if b.untagged {
                sb.untagged = false;
            }
        }
    }
    s.ports
        .extend(now.ports.iter().map(|(k, v)| (k.clone(), v.clone())));
    s.routers
        .extend(now.routers.iter().map(|(k, v)| (k.clone(), v.clone())));
    s.dhcp
        .extend(now.dhcp.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (name, b) in &now.bridges {
        let sb = s.bridges.entry(name.clone()).or_insert_with(|| b.clone());
        sb.trunks.extend(b.trunks.iter().copied());
        sb.untagged |= b.untagged;
    }
    // Tunnel segments are keyed by VNI, each of one network or one project's bridge: wholly
    // in the scope or wholly out of it.
    let mut segments = s.tunnels.take().map(|t| t.segments).unwrap_or_default();
    for vni in was.tunnels.iter().flat_map(|t| t.segments.keys()) {
        segments.remove(vni);
    }
    if let Some(t) = &now.tunnels {
        segments.extend(t.segments.iter().map(|(k, v)| (*k, v.clone())));
    }
    let endpoint = now
        .tunnels
        .as_ref()
        .or(prev.tunnels.as_ref())
        .or(was.tunnels.as_ref());
    if let (Some(e), false) = (endpoint, segments.is_empty()) {
        s.tunnels = Some(wire::Tunnels {
            local_ip: e.local_ip,
            bridge: e.bridge.clone(),
            segments,
        });
    }
    // The liveness sessions follow from the pod's nodes alone, never from a scope.
    s.liveness = now.liveness.clone();
    // A segment the scope shares with projects outside it (an external network's gateway legs)
    // stays trunked while anything outside the scope still uses it on this bridge.
    for (name, b) in &was.bridges {
        let dropped: Vec<Option<u16>> = b
            .trunks
            .iter()
            .map(|t| Some(*t))
            .chain(b.untagged.then_some(None))
            .filter(|t| match t {
                Some(v) => !s.bridges.get(name).is_some_and(|x| x.trunks.contains(v)),
                None => !s.bridges.get(name).is_some_and(|x| x.untagged),
            })
            .collect();
        for tag in dropped {
            let used = s
                .routers
                .iter()
                .filter(|(id, _)| !now.routers.contains_key(*id))
                .flat_map(|(_, r)| r.legs.iter())
                .any(|l| &l.bridge == name && l.tag == tag)
                || s.ports
                    .iter()
                    .filter(|(id, _)| !now.ports.contains_key(*id))
                    .any(|(_, p)| &p.bridge == name && p.tag == tag)
                || s.dhcp
                    .iter()
                    .filter(|(id, _)| !now.dhcp.contains_key(*id))
                    .any(|(_, d)| &d.bridge == name && d.tag == tag);
            if let (true, Some(sb)) = (used, s.bridges.get_mut(name)) {
                match tag {
                    Some(v) => {
                        sb.trunks.insert(v);
                    }
                    None => sb.untagged = true,
                }
            }
        }
    }
    s
}
