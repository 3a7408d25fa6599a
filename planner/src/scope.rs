//! Which projects a question is about, found with linear scans (no index), so that incremental
//! planning indexes only those projects instead of the whole cloud.

use crate::fxhash::FxSet;

use crate::change::Change;
use crate::index::ScopeIndex;
use crate::snapshot::{RouterInterface, Snapshot};

/// Every project that may have a port, a network or a router instance on the given nodes: the
/// projects present anywhere in those nodes' pods (ports bound there, networks and routers
/// hinted there, local tags allocated there, routers with a gateway on an external network
/// there). A superset is fine: it only costs indexing.
pub(crate) fn for_nodes<'a>(snap: &'a Snapshot, nodes: &FxSet<&str>) -> FxSet<&'a str> {
    let pods: FxSet<&str> = snap
        .nodes
        .iter()
        .filter(|n| nodes.contains(n.name.as_str()))
        .map(|n| n.pod.as_str())
        .collect();
    let mut hint_names: FxSet<&str> = FxSet::default();
    for p in &snap.pods {
        if pods.contains(p.region_name.as_str()) {
            hint_names.insert(&p.region_name);
            if let Some(az) = &p.az_name {
                hint_names.insert(az);
            }
        }
    }
    // Hints naming an AZ may name other pods too; that only widens the scope.
    let hinted = |hints: &[String]| hints.iter().any(|h| hint_names.contains(h.as_str()));
    let pod_nodes: FxSet<&str> = snap
        .nodes
        .iter()
        .filter(|n| pods.contains(n.pod.as_str()))
        .map(|n| n.name.as_str())
        .collect();
    let mut scope: FxSet<&'a str> = FxSet::default();
    let mut nets: FxSet<&str> = FxSet::default();
    for p in &snap.ports {
        if p.binding_host
            .as_deref()
            .is_some_and(|h| pod_nodes.contains(h))
        {
            scope.insert(&p.project_id);
            nets.insert(&p.network_id);
        }
    }
    for (net, by_pod) in &snap.allocations.local_tags {
        if by_pod.keys().any(|p| pods.contains(p.as_str())) {
            nets.insert(net);
        }
    }
    // A network's DHCP server runs in a pod whether or not a port of it is bound there.
    for (net, by_pod) in &snap.allocations.dhcp_ports {
        if by_pod.keys().any(|p| pods.contains(p.as_str())) {
            nets.insert(net);
        }
    }
    let mut ext_nets: FxSet<&str> = FxSet::default();
    for n in &snap.networks {
        let h = hinted(&n.az_hints);
        if h && n.external {
            ext_nets.insert(&n.id);
        }
        if h || nets.contains(n.id.as_str()) {
            scope.insert(&n.project_id);
        }
    }
    for r in &snap.routers {
        if hinted(&r.az_hints)
            || r.external_gateway
                .as_ref()
                .is_some_and(|g| ext_nets.contains(g.network_id.as_str()))
        {
            scope.insert(&r.project_id);
        }
    }
    scope
}

/// The projects a change concerns, or `None` when it concerns everything (pods, nodes, shared
/// and external networks).
pub(crate) fn for_change<'a>(snap: &'a Snapshot, change: &Change) -> Option<FxSet<&'a str>> {
    for_change_indexed(snap, None, change)
}

/// [`for_change`], looking a router's interfaces up in `index` (kept for `snap`) when given.
pub(crate) fn for_change_indexed<'a>(
    snap: &'a Snapshot,
    index: Option<&ScopeIndex>,
    change: &Change,
) -> Option<FxSet<&'a str>> {
    let mut scope: FxSet<&'a str> = FxSet::default();
    match change {
        Change::Node(_) | Change::Pod(_) => return None,
        Change::Network(id) => network(snap, id, &mut scope)?,
        Change::Subnet(id) => {
            if let Some(s) = by_id(&snap.subnets, id, |s| &s.id) {
                network(snap, &s.network_id, &mut scope)?;
            }
        }
        Change::Port(id) => {
            if let Some(p) = snap.ports.iter().find(|p| &p.id == id) {
                scope.insert(&p.project_id);
                network(snap, &p.network_id, &mut scope)?;
            }
            for f in &snap.floating_ips {
                if f.port_id.as_deref() == Some(id.as_str()) {
                    scope.insert(&f.project_id);
                }
            }
        }
        Change::Router(id) => {
            if let Some(r) = by_id(&snap.routers, id, |r| &r.id) {
                scope.insert(&r.project_id);
            }
            // Attached to a shared network: other projects' routers may depend on it.
            let interfaces: Box<dyn Iterator<Item = &RouterInterface>> = match index {
                Some(ix) => Box::new(ix.interfaces_of(snap, id)),
                None => Box::new(snap.router_interfaces.iter().filter(|i| &i.router_id == id)),
            };
            let shared = interfaces
                .filter_map(|i| by_id(&snap.subnets, &i.subnet_id, |s| &s.id))
                .filter_map(|s| by_id(&snap.networks, &s.network_id, |n| &n.id))
                .any(|n| n.shared || n.external);
            if shared {
                return None;
            }
        }
        Change::FloatingIp(id) => {
            if let Some(f) = by_id(&snap.floating_ips, id, |f| &f.id) {
                scope.insert(&f.project_id);
            }
        }
        // A group, its rules, its remote groups and their member ports are of one project.
        Change::SecurityGroup(id) => {
            if let Some(g) = snap.security_groups.get(id) {
                scope.insert(&g.project_id);
            }
        }
        Change::Project(id) => {
            if let Some(p) = snap
                .routers
                .iter()
                .map(|r| r.project_id.as_str())
                .chain(snap.networks.iter().map(|n| n.project_id.as_str()))
                .find(|p| p == id)
            {
                scope.insert(p);
            }
        }
    }
    Some(scope)
}

/// Add a network's project; `None` for a shared or external network (everyone can use it).
fn network<'a>(snap: &'a Snapshot, id: &str, scope: &mut FxSet<&'a str>) -> Option<()> {
    if let Some(n) = by_id(&snap.networks, id, |n| &n.id) {
        if n.shared || n.external {
            return None;
        }
        scope.insert(&n.project_id);
    }
    Some(())
}

/// The element `id` of a list the controller keeps sorted by id (networks, subnets, routers,
/// floating IPs): a binary search, then a scan when that misses, so a snapshot built in
/// another order (tests build them by hand) is still answered right.
pub(crate) fn by_id<'a, T>(v: &'a [T], id: &str, key: impl Fn(&T) -> &String) -> Option<&'a T> {
    position_by_id(v, id, key).map(|i| &v[i])
}

/// The position of the element `id` (see [`by_id`]).
pub(crate) fn position_by_id<T>(v: &[T], id: &str, key: impl Fn(&T) -> &String) -> Option<usize> {
    if let Ok(i) = v.binary_search_by(|x| key(x).as_str().cmp(id)) {
        return Some(i);
    }
    v.iter().position(|x| key(x) == id)
}

/// The open (shared or external) networks the projects in `scope` use: their own, those their
/// VM ports are on, those their routers' gateways and interfaces are on, and those their
/// floating IPs come from. A re-plan patches nodes with what the scope contributes, so an open
/// network the scope does not use contributes the same before and after and need not be
/// indexed: a shared network with a port on every node (a provider network) otherwise made
/// every scope as large as that network.
pub(crate) fn open_networks_used<'a>(snap: &'a Snapshot, scope: &FxSet<&str>) -> FxSet<&'a str> {
    let open: FxSet<&str> = snap
        .networks
        .iter()
        .filter(|n| n.shared || n.external)
        .map(|n| n.id.as_str())
        .collect();
    let mut used: FxSet<&'a str> = FxSet::default();
    let mut add = |id: &'a str| {
        if open.contains(id) {
            used.insert(id);
        }
    };
    for n in &snap.networks {
        if scope.contains(n.project_id.as_str()) {
            add(&n.id);
        }
    }
    for p in &snap.ports {
        if p.is_vm_port() && scope.contains(p.project_id.as_str()) {
            add(&p.network_id);
        }
    }
    let mut routers: FxSet<&str> = FxSet::default();
    for r in &snap.routers {
        if scope.contains(r.project_id.as_str()) {
            routers.insert(&r.id);
            if let Some(g) = &r.external_gateway {
                add(&g.network_id);
            }
        }
    }
    for i in &snap.router_interfaces {
        if routers.contains(i.router_id.as_str()) {
            if let Some(s) = by_id(&snap.subnets, &i.subnet_id, |s| &s.id) {
                add(&s.network_id);
            }
        }
    }
    for f in &snap.floating_ips {
        if scope.contains(f.project_id.as_str()) {
            add(&f.floating_network_id);
        }
    }
    used
}
