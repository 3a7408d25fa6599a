//! Which allocations the plan needs that the store lacks, and which the store holds in vain.
//! The controller allocates and releases them in one transaction, then plans.

use std::collections::{BTreeMap, BTreeSet};

use crate::change::Change;
use crate::fxhash::FxSet;
use crate::index::ScopeIndex;
use crate::snapshot::{NetworkType, Snapshot};
use crate::topology::{Placement, Topology};

/// One allocation, by what it is for. Variants are ordered so that sorting puts a project's
/// bridge network before the bridge IPs taken from it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AllocationKey {
    /// A bridge network (VLAN on the bridge physnet + a /24 of `bridge_cidr`) for a project.
    BridgeNetwork {
        /// Project id.
        project_id: String,
    },
    /// The pod-local tag of a project's VxLAN bridge network in one pod (where one of its
    /// non-local routers has an instance).
    BridgeTag {
        /// Project id.
        project_id: String,
        /// Pod of the instances.
        pod: String,
    },
    /// A bridge IP (from the project's bridge network) for one router instance.
    BridgeIp {
        /// Router id.
        router_id: String,
        /// Pod of the instance.
        pod: String,
    },
    /// A leg IP on a stretched network's subnet for an instance outside the network's first pod.
    LegIp {
        /// Router id.
        router_id: String,
        /// Pod of the instance.
        pod: String,
        /// Subnet the IP comes from.
        subnet_id: String,
    },
    /// A pod-local VLAN tag for a `local` network in its pod, or for a `vxlan` network in each
    /// pod where it is present.
    LocalTag {
        /// Network id.
        network_id: String,
        /// The network's pod.
        pod: String,
    },
    /// The address of a (network, pod)'s `network:dhcp` port on one DHCP-enabled subnet: the
    /// port is made with its first address and loses it with its last.
    DhcpIp {
        /// Network id.
        network_id: String,
        /// Pod of the DHCP server.
        pod: String,
        /// Subnet the address comes from.
        subnet_id: String,
    },
    /// The node a router's instance in a pod is placed on, kept so the instance stays there
    /// (sticky placement): rewritten when the instance moves (failover, failback).
    RouterNode {
        /// Router id.
        router_id: String,
        /// Pod of the instance.
        pod: String,
        /// The node hosting it.
        node: String,
    },
    /// The node a network's DHCP server in a pod is placed on (sticky, as [`Self::RouterNode`]).
    DhcpNode {
        /// Network id.
        network_id: String,
        /// Pod of the server.
        pod: String,
        /// The node running it.
        node: String,
    },
}

impl AllocationKey {
    /// The variant's name, a label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            AllocationKey::BridgeNetwork { .. } => "bridge_network",
            AllocationKey::BridgeTag { .. } => "bridge_tag",
            AllocationKey::BridgeIp { .. } => "bridge_ip",
            AllocationKey::LegIp { .. } => "leg_ip",
            AllocationKey::LocalTag { .. } => "local_tag",
            AllocationKey::DhcpIp { .. } => "dhcp_ip",
            AllocationKey::RouterNode { .. } => "router_node",
            AllocationKey::DhcpNode { .. } => "dhcp_node",
        }
    }
}

/// What to allocate and what to release, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationPlan {
    /// Needed and missing.
    pub allocate: Vec<AllocationKey>,
    /// Held but no longer needed.
    pub release: Vec<AllocationKey>,
}

impl AllocationPlan {
    /// Whether the store already holds exactly what the plan needs.
    pub fn is_empty(&self) -> bool {
        self.allocate.is_empty() && self.release.is_empty()
    }
}

/// Every allocation the current snapshot needs (present or not), sorted.
pub fn needed_allocations(snap: &Snapshot) -> BTreeSet<AllocationKey> {
    let t = Topology::build(snap);
    needed(&t)
}

pub(crate) fn needed(t: &Topology<'_>) -> BTreeSet<AllocationKey> {
    let mut out = BTreeSet::new();
    for r in &t.router_list {
        if !t.is_distributed(&r.id) {
            continue;
        }
        out.insert(AllocationKey::BridgeNetwork {
            project_id: r.project_id.clone(),
        });
        let Some(inst) = t.instances.get(r.id.as_str()) else {
            continue;
        };
        let vxlan_bridge = t.bridge_is_vxlan(&r.project_id);
        for pod in inst.keys() {
            out.insert(AllocationKey::BridgeIp {
                router_id: r.id.clone(),
                pod: pod.to_string(),
            });
            if vxlan_bridge {
                out.insert(AllocationKey::BridgeTag {
                    project_id: r.project_id.clone(),
                    pod: pod.to_string(),
                });
            }
        }
        for i in t
            .interfaces_by_router
            .get(r.id.as_str())
            .into_iter()
            .flatten()
        {
            let Some(s) = t.subnets.get(i.subnet_id.as_str()) else {
                continue;
            };
            if !matches!(
                t.placement.get(s.network_id.as_str()),
                Some(Placement::Stretched(_))
            ) {
                continue;
            }
            let home = t.home_pod_for(&r.id, &s.network_id);
            for pod in t.presence.get(s.network_id.as_str()).into_iter().flatten() {
                if inst.contains_key(pod) && Some(*pod) != home {
                    out.insert(AllocationKey::LegIp {
                        router_id: r.id.clone(),
                        pod: pod.to_string(),
                        subnet_id: s.id.clone(),
                    });
                }
            }
        }
    }
    for n in &t.net_list {
        if n.network_type == NetworkType::Vxlan {
            for pod in t.presence.get(n.id.as_str()).into_iter().flatten() {
                out.insert(AllocationKey::LocalTag {
                    network_id: n.id.clone(),
                    pod: pod.to_string(),
                });
            }
            continue;
        }
        if n.network_type != NetworkType::Local || n.external {
            continue;
        }
        if let Some(Placement::Local(pod)) = t.placement.get(n.id.as_str()) {
            out.insert(AllocationKey::LocalTag {
                network_id: n.id.clone(),
                pod: pod.to_string(),
            });
        }
    }
    for r in &t.router_list {
        for (pod, node) in t.instances.get(r.id.as_str()).into_iter().flatten() {
            out.insert(AllocationKey::RouterNode {
                router_id: r.id.clone(),
                pod: pod.to_string(),
                node: node.to_string(),
            });
        }
    }
    for (node, nets) in &t.dhcp_by_node {
        let Some(pod) = t.node_pod(node) else {
            continue;
        };
        for net in nets {
            out.insert(AllocationKey::DhcpNode {
                network_id: net.to_string(),
                pod: pod.to_string(),
                node: node.to_string(),
            });
        }
    }
    for (net, pod, subnets) in crate::dhcp::needed(t) {
        for s in subnets {
            out.insert(AllocationKey::DhcpIp {
                network_id: net.id.clone(),
                pod: pod.to_string(),
                subnet_id: s.id.clone(),
            });
        }
    }
    out
}

/// What the controller must allocate (missing) and may release (held in vain), e.g. the
/// project's bridge network once its last non-local router is gone.
pub fn required_allocations(snap: &Snapshot) -> AllocationPlan {
    let t = Topology::build(snap);
    diff(snap, &needed(&t), None)
}

/// [`required_allocations`] for one change from `old` to `new`, indexing only the projects
/// the change concerns (the whole snapshot for pod, node, shared or external network changes)
/// and of the open networks those they use, as [`crate::replan`] does: an open network the
/// projects do not use needs before what it needs after. Equals the full answer when `old`
/// had exactly the allocations it needed.
pub fn required_allocations_for_change(
    old: &Snapshot,
    new: &Snapshot,
    change: &Change,
) -> AllocationPlan {
    judged((old, None), (new, None), change)
}

/// [`required_allocations_for_change`] through each snapshot's [`ScopeIndex`] (kept by the
/// caller for exactly that snapshot): the same answer, the scope gathered by lookups.
pub fn required_allocations_for_change_indexed(
    old: (&Snapshot, &ScopeIndex),
    new: (&Snapshot, &ScopeIndex),
    change: &Change,
) -> AllocationPlan {
    judged((old.0, Some(old.1)), (new.0, Some(new.1)), change)
}

fn judged(
    old: (&Snapshot, Option<&ScopeIndex>),
    new: (&Snapshot, Option<&ScopeIndex>),
    change: &Change,
) -> AllocationPlan {
    match crate::incremental::scoped_pair(old, new, change) {
        Some(p) => judge(new.0, &p.scope, &p.old, &p.new),
        None => required_allocations(new.0),
    }
}

/// What `t_new` needs against what `new` holds, releasing only what belongs to the scope's
/// projects and to the routers and networks either side indexes.
fn judge(
    new: &Snapshot,
    scope: &FxSet<&str>,
    t_old: &Topology<'_>,
    t_new: &Topology<'_>,
) -> AllocationPlan {
    let mut routers: FxSet<&str> = FxSet::default();
    let mut networks: FxSet<&str> = FxSet::default();
    for t in [t_old, t_new] {
        routers.extend(t.router_list.iter().map(|r| r.id.as_str()));
        networks.extend(t.net_list.iter().map(|n| n.id.as_str()));
    }
    let owners = Owners {
        projects: scope,
        routers: &routers,
        networks: &networks,
    };
    diff(new, &needed(t_new), Some(&owners))
}

/// Whose allocations a scoped judgement may release: those of its projects, routers and
/// networks, looked up by owner (not every allocation of the cloud scanned and tested).
struct Owners<'s> {
    projects: &'s FxSet<&'s str>,
    routers: &'s FxSet<&'s str>,
    networks: &'s FxSet<&'s str>,
}

/// The entries of an allocation map keyed by owner: all of them, or those of `ids`.
fn entries<'m, X>(
    m: &'m BTreeMap<String, X>,
    ids: Option<&FxSet<&str>>,
) -> Vec<(&'m String, &'m X)> {
    match ids {
        None => m.iter().collect(),
        Some(ids) => ids.iter().filter_map(|id| m.get_key_value(*id)).collect(),
    }
}

/// Needed minus held = allocate; held (by `owners`, or by anyone) minus needed = release.
fn diff(
    snap: &Snapshot,
    need: &BTreeSet<AllocationKey>,
    owners: Option<&Owners>,
) -> AllocationPlan {
    let projects = owners.map(|o| o.projects);
    let routers = owners.map(|o| o.routers);
    let networks = owners.map(|o| o.networks);
    let a = &snap.allocations;
    let held = |k: &AllocationKey| -> bool {
        match k {
            AllocationKey::BridgeNetwork { project_id } => {
                a.bridge_networks.contains_key(project_id)
            }
            AllocationKey::BridgeTag { project_id, pod } => a.bridge_tag(project_id, pod).is_some(),
            AllocationKey::BridgeIp { router_id, pod } => a.bridge_ip(router_id, pod).is_some(),
            AllocationKey::LegIp {
                router_id,
                pod,
                subnet_id,
            } => a.leg_ip(router_id, pod, subnet_id).is_some(),
            AllocationKey::LocalTag { network_id, pod } => a.local_tag(network_id, pod).is_some(),
            AllocationKey::DhcpIp {
                network_id,
                pod,
                subnet_id,
            } => a.dhcp_ip(network_id, pod, subnet_id).is_some(),
            AllocationKey::RouterNode {
                router_id,
                pod,
                node,
            } => a.router_node(router_id, pod) == Some(node.as_str()),
            AllocationKey::DhcpNode {
                network_id,
                pod,
                node,
            } => a.dhcp_node(network_id, pod) == Some(node.as_str()),
        }
    };
    let allocate = need.iter().filter(|k| !held(k)).cloned().collect();
    let mut release = Vec::new();
    for (p, _) in entries(&a.bridge_networks, projects) {
        let k = AllocationKey::BridgeNetwork {
            project_id: p.clone(),
        };
        if !need.contains(&k) {
            release.push(k);
        }
    }
    for (p, pods) in entries(&a.bridge_tags, projects) {
        for pod in pods.keys() {
            let k = AllocationKey::BridgeTag {
                project_id: p.clone(),
                pod: pod.clone(),
            };
            if !need.contains(&k) {
                release.push(k);
            }
        }
    }
    for (r, pods) in entries(&a.bridge_ips, routers) {
        for pod in pods.keys() {
            let k = AllocationKey::BridgeIp {
                router_id: r.clone(),
                pod: pod.clone(),
            };
            if !need.contains(&k) {
                release.push(k);
            }
        }
    }
    for (r, pods) in entries(&a.leg_ips, routers) {
        for (pod, subs) in pods {
            for s in subs.keys() {
                let k = AllocationKey::LegIp {
                    router_id: r.clone(),
                    pod: pod.clone(),
                    subnet_id: s.clone(),
                };
                if !need.contains(&k) {
                    release.push(k);
                }
            }
        }
    }
    for (n, pods) in entries(&a.local_tags, networks) {
        for pod in pods.keys() {
            let k = AllocationKey::LocalTag {
                network_id: n.clone(),
                pod: pod.clone(),
            };
            if !need.contains(&k) {
                release.push(k);
            }
        }
    }
    for (n, pods) in entries(&a.dhcp_ports, networks) {
        for (pod, port) in pods {
            for s in port.ips.keys() {
                let k = AllocationKey::DhcpIp {
                    network_id: n.clone(),
                    pod: pod.clone(),
                    subnet_id: s.clone(),
                };
                if !need.contains(&k) {
                    release.push(k);
                }
            }
        }
    }
    for (r, pods) in entries(&a.router_nodes, routers) {
        for (pod, node) in pods {
            let k = AllocationKey::RouterNode {
                router_id: r.clone(),
                pod: pod.clone(),
                node: node.clone(),
            };
            if !need.contains(&k) {
                release.push(k);
            }
        }
    }
    for (n, pods) in entries(&a.dhcp_nodes, networks) {
        for (pod, node) in pods {
            let k = AllocationKey::DhcpNode {
                network_id: n.clone(),
                pod: pod.clone(),
                node: node.clone(),
            };
            if !need.contains(&k) {
                release.push(k);
            }
        }
    }
    release.sort();
    AllocationPlan { allocate, release }
}
