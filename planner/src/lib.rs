//! The planner: a pure function from a store snapshot to every node's desired state.
//!
//! The controller:
//! 1. builds a [`Snapshot`] of its store (plus the proposed change) and calls [`validate`] (or
//!    the targeted [`validate_router_change_indexed`], [`validate_floating_ip`],
//!    [`validate_port`]); errors become 400/409;
//! 2. calls [`required_allocations`] (per change [`required_allocations_for_change_indexed`])
//!    and allocates/releases in one transaction;
//! 3. calls [`plan_all`] (at start), then per change [`replan_indexed`] (old and new snapshot
//!    each with the [`ScopeIndex`] it keeps beside it, the states it serves now; [`replan`]
//!    answers the same by scanning) — or [`affected_nodes`] on both snapshots and
//!    [`plan_nodes`] — and bumps the revision of each node whose state changed.
//!
//! The rules are Tricircle's (see `shared/DESIGN.md`, "Networking rules"). No I/O here: every
//! output is a deterministic function of the snapshot (sorted collections, stable names/MACs).

mod alloc;
mod change;
mod dhcp;
mod error;
mod fxhash;
mod incremental;
mod index;
mod ipv6;
mod names;
mod plan;
mod scope;
mod security;
mod snapshot;
mod topology;
mod validate;

use std::collections::{BTreeMap, BTreeSet};

use fxhash::FxSet;

pub use alloc::{
    needed_allocations, required_allocations, required_allocations_for_change,
    required_allocations_for_change_indexed, AllocationKey, AllocationPlan,
};
pub use change::{affected_nodes, Change};
pub use error::ValidationError;
pub use incremental::{replan, replan_indexed};
pub use index::ScopeIndex;
pub use ipv6::{bridge_v6, RA_ROUTER_LIFETIME};
pub use plan::is_unicast_mac;
pub use security::ct_zone;
pub use snapshot::*;
pub use validate::{
    validate, validate_floating_ip, validate_port, validate_router, validate_router_change,
    validate_router_change_indexed,
};
pub use wire::NodeDesiredState;

use topology::Topology;

/// Where one instance of a router runs (see [`Planner::placement`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePlacement {
    /// Pod of the instance.
    pub pod: String,
    /// The node hosting it.
    pub active: String,
    /// The alive candidates that would take it, in order.
    pub standbys: Vec<String>,
    /// The top candidate counting lost nodes: where it would run with every node alive.
    pub home: Option<String>,
}

/// The desired state of every registered node, by node name.
pub fn plan_all(snap: &Snapshot) -> BTreeMap<String, NodeDesiredState> {
    let t = Topology::build(snap);
    snap.nodes
        .iter()
        .map(|n| (n.name.clone(), plan::plan_node(&t, n)))
        .collect()
}

/// The desired state of the named nodes (unknown names are skipped: the node is gone). Indexes
/// only the projects present in those nodes' pods, so its cost follows the change, not the
/// cloud.
pub fn plan_nodes<'n, I>(snap: &Snapshot, nodes: I) -> BTreeMap<String, NodeDesiredState>
where
    I: IntoIterator<Item = &'n str>,
{
    let nodes: FxSet<&str> = nodes.into_iter().collect();
    let scope = scope::for_nodes(snap, &nodes);
    let t = Topology::build_scoped(snap, Some(&scope));
    nodes
        .into_iter()
        .filter_map(|name| {
            t.nodes
                .get(name)
                .map(|n| (n.name.clone(), plan::plan_node(&t, n)))
        })
        .collect()
}

/// A planner over one snapshot, indexed once: for a controller that asks several questions
/// (validation, affected nodes, plans) about the same snapshot.
pub struct Planner<'a> {
    t: Topology<'a>,
}

impl<'a> Planner<'a> {
    /// Index `snap` (O(n log n)).
    pub fn new(snap: &'a Snapshot) -> Self {
        Planner {
            t: Topology::build(snap),
        }
    }

    /// Nodes `change` may affect on this snapshot (see [`affected_nodes`]).
    pub fn affected_nodes(&self, change: &Change) -> BTreeSet<String> {
        change::affected(&self.t, change)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Plan the named nodes.
    pub fn plan_nodes<'n, I>(&self, nodes: I) -> BTreeMap<String, NodeDesiredState>
    where
        I: IntoIterator<Item = &'n str>,
    {
        nodes
            .into_iter()
            .filter_map(|name| {
                self.t
                    .nodes
                    .get(name)
                    .map(|n| (n.name.clone(), plan::plan_node(&self.t, n)))
            })
            .collect()
    }

    /// Plan one node.
    pub fn plan_node(&self, name: &str) -> Option<NodeDesiredState> {
        self.t.nodes.get(name).map(|n| plan::plan_node(&self.t, n))
    }

    /// The nodes of `pod` that may host `router`'s instance there, best first: the first
    /// hosts it, the rest are its standbys in order (nodes lacking a `local_ip` are left out
    /// when the instance has a VxLAN segment). Empty for an unknown router or pod.
    pub fn candidates(&self, pod: &str, router: &str) -> Vec<&'a str> {
        let Some(r) = self.t.routers.get(router) else {
            return Vec::new();
        };
        let needs = self.t.router_needs(r, pod);
        self.t.rank(pod, router, &needs)
    }

    /// Where each instance of `router` runs, by pod: the active node, its standbys in order
    /// (the alive candidates after it), and the node it would be on with every node alive
    /// (`home`; the instance has moved when that differs). Empty for an unknown router.
    pub fn placement(&self, router: &str) -> Vec<InstancePlacement> {
        let Some(r) = self.t.routers.get(router) else {
            return Vec::new();
        };
        let Some(inst) = self.t.instances.get(router) else {
            return Vec::new();
        };
        inst.iter()
            .map(|(pod, active)| {
                let needs = self.t.router_needs(r, pod);
                InstancePlacement {
                    pod: pod.to_string(),
                    active: active.to_string(),
                    standbys: self
                        .t
                        .rank(pod, router, &needs)
                        .into_iter()
                        .filter(|n| n != active)
                        .map(str::to_string)
                        .collect(),
                    home: self.t.home(pod, router, &needs).map(str::to_string),
                }
            })
            .collect()
    }

    /// Allocations needed by this snapshot.
    pub fn needed_allocations(&self) -> BTreeSet<AllocationKey> {
        alloc::needed(&self.t)
    }
}
