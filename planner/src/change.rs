//! Incremental planning: which nodes a change can affect.

use std::collections::BTreeSet;

use crate::snapshot::Snapshot;
use crate::topology::Topology;

/// A change the controller made (or is about to make), by the object it touched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    /// A network's attributes (hints, segmentation, external).
    Network(String),
    /// A subnet (CIDR, gateway).
    Subnet(String),
    /// A port created, deleted, (un)bound or changed.
    Port(String),
    /// A router created, deleted, its interfaces, gateway or routes changed.
    Router(String),
    /// A floating IP created, deleted, (dis)associated.
    FloatingIp(String),
    /// A project's allocations (bridge network) changed.
    Project(String),
    /// A node registered, changed its mappings or went away.
    Node(String),
    /// A pod was added, changed or removed.
    Pod(String),
    /// A security group created, deleted, or its rules changed (membership is the port's).
    SecurityGroup(String),
}

/// The nodes whose desired state `change` may alter, judged on `snap`. Call it on the snapshot
/// before AND after the change and re-plan the union: a deleted router is only visible before,
/// a new one only after.
pub fn affected_nodes(snap: &Snapshot, change: &Change) -> BTreeSet<String> {
    let scope = crate::scope::for_change(snap, change);
    let t = Topology::build_scoped(snap, scope.as_ref());
    affected(&t, change)
        .into_iter()
        .map(str::to_string)
        .collect()
}

pub(crate) fn affected<'a>(t: &Topology<'a>, change: &Change) -> BTreeSet<&'a str> {
    let mut out: BTreeSet<&'a str> = BTreeSet::new();
    match change {
        Change::Network(id) => network(t, id, &mut out),
        Change::Subnet(id) => {
            if let Some(s) = t.subnets.get(id.as_str()) {
                network(t, &s.network_id, &mut out);
            }
        }
        Change::Port(id) => {
            if let Some(p) = t.ports.get(id.as_str()) {
                if let Some(h) = p.binding_host.as_deref().and_then(|h| t.nodes.get(h)) {
                    out.insert(&h.name);
                }
                network(t, &p.network_id, &mut out);
                for f in &t.fip_list {
                    if f.port_id.as_deref() == Some(id.as_str()) {
                        out.extend(t.project_instance_nodes(&f.project_id));
                    }
                }
            }
            // Its addresses are members of its groups wherever a rule names them.
            crate::security::membership_nodes(t, id, &mut out);
        }
        Change::SecurityGroup(id) => crate::security::group_nodes(t, id, &mut out),
        Change::Router(id) => {
            if let Some(r) = t.routers.get(id.as_str()) {
                out.extend(t.project_instance_nodes(&r.project_id));
                for i in t
                    .interfaces_by_router
                    .get(id.as_str())
                    .into_iter()
                    .flatten()
                {
                    if let Some(s) = t.subnets.get(i.subnet_id.as_str()) {
                        if let Some(n) = t.network_nodes.get(s.network_id.as_str()) {
                            out.extend(n.iter().copied());
                        }
                    }
                }
            }
        }
        Change::FloatingIp(id) => {
            if let Some(f) = t.fip_list.iter().find(|f| &f.id == id) {
                match t.fip_target(f) {
                    Ok(Some((r, _))) => {
                        if let (Some(inst), Some(gp)) = (t.instances.get(r), t.gateway_pod.get(r)) {
                            out.extend(inst.get(gp).copied());
                        }
                    }
                    _ => out.extend(t.project_instance_nodes(&f.project_id)),
                }
            }
        }
        Change::Project(id) => out.extend(t.project_instance_nodes(id)),
        Change::Node(_) | Change::Pod(_) => out.extend(t.nodes.keys().copied()),
    }
    out
}

fn network<'a>(t: &Topology<'a>, id: &str, out: &mut BTreeSet<&'a str>) {
    if let Some(n) = t.network_nodes.get(id) {
        out.extend(n.iter().copied());
    }
    for r in t.routers_by_network.get(id).into_iter().flatten() {
        if let Some(r) = t.routers.get(r) {
            out.extend(t.project_instance_nodes(&r.project_id));
        }
        // DHCP servers of the router's other networks hand out routes to this one.
        for i in t.interfaces_by_router.get(r).into_iter().flatten() {
            if let Some(n) = t
                .subnets
                .get(i.subnet_id.as_str())
                .and_then(|s| t.network_nodes.get(s.network_id.as_str()))
            {
                out.extend(n.iter().copied());
            }
        }
    }
    if t.networks.get(id).is_some_and(|n| n.external) {
        for r in &t.router_list {
            if r.external_gateway
                .as_ref()
                .is_some_and(|g| g.network_id == id)
            {
                out.extend(t.project_instance_nodes(&r.project_id));
            }
        }
    }
}
