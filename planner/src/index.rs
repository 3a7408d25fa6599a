//! A persistent index of a snapshot by project and network, so a scoped re-plan gathers its
//! projects' objects by lookups instead of scanning the cloud (issue 22).
//!
//! It holds positions into the snapshot's vectors, so it is only right for the snapshot it
//! was built or edited with. It is never stored inside a [`Snapshot`] (a hand-edited snapshot
//! would silently leave it stale): the owner keeps the two side by side and changes the
//! indexed vectors only through the methods here, which edit vector and index together. The
//! controller's full pass compares it with one built from scratch (its drift check).

use crate::fxhash::{FxMap, FxSet};
use crate::snapshot::{FloatingIp, Network, Port, Router, RouterInterface, Snapshot, Subnet};

/// Positions of one vector's elements grouped by a key, each group in ascending order
/// (snapshot order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Groups(FxMap<String, Vec<u32>>);

impl Groups {
    fn add(&mut self, key: &str, pos: usize) {
        let pos = pos as u32;
        let v = match self.0.get_mut(key) {
            Some(v) => v,
            None => self.0.entry(key.to_string()).or_default(),
        };
        if let Err(i) = v.binary_search(&pos) {
            v.insert(i, pos);
        }
    }

    fn remove(&mut self, key: &str, pos: usize) {
        let pos = pos as u32;
        if let Some(v) = self.0.get_mut(key) {
            if let Ok(i) = v.binary_search(&pos) {
                v.remove(i);
            }
            if v.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// An element was inserted at `pos`: those at or after it moved one up.
    fn opened(&mut self, pos: usize) {
        let pos = pos as u32;
        for v in self.0.values_mut() {
            let from = v.partition_point(|p| *p < pos);
            for p in &mut v[from..] {
                *p += 1;
            }
        }
    }

    /// The element at `pos` was removed (and already taken out of its group): those after it
    /// moved one down.
    fn closed(&mut self, pos: usize) {
        let pos = pos as u32;
        for v in self.0.values_mut() {
            let from = v.partition_point(|p| *p <= pos);
            for p in &mut v[from..] {
                *p -= 1;
            }
        }
    }

    fn get(&self, key: &str) -> &[u32] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// The snapshot's networks, subnets, ports, routers, router interfaces and floating IPs by
/// the keys a scope asks for (see [`crate::replan_indexed`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeIndex {
    /// Networks everyone may use (shared or external) under "", the others by project.
    networks: Groups,
    subnets_by_network: Groups,
    /// VM ports by network and by project.
    vm_ports_by_network: Groups,
    vm_ports_by_project: Groups,
    /// The other ports (router, floating IP, DHCP) by network, by device and by project.
    other_ports_by_network: Groups,
    other_ports_by_device: Groups,
    other_ports_by_project: Groups,
    routers_by_project: Groups,
    interfaces_by_subnet: Groups,
    interfaces_by_router: Groups,
    floating_ips_by_project: Groups,
}

/// The key of a network in [`ScopeIndex::networks`].
fn network_key(n: &Network) -> &str {
    if n.shared || n.external {
        ""
    } else {
        &n.project_id
    }
}

/// The positions of a scope's objects (see [`ScopeIndex::select`]), each list ascending.
pub(crate) struct Selection {
    pub networks: Vec<u32>,
    pub subnets: Vec<u32>,
    pub ports: Vec<u32>,
    pub routers: Vec<u32>,
    pub interfaces: Vec<u32>,
    pub floating_ips: Vec<u32>,
}

/// The elements of `v` at `positions`. Read with `get`: a slip in keeping the index must not
/// take the controller down (the full pass's drift check finds and corrects it).
fn at<'s, 'p, T>(v: &'s [T], positions: &'p [u32]) -> impl Iterator<Item = &'s T> + use<'s, 'p, T> {
    positions.iter().filter_map(|&i| v.get(i as usize))
}

/// Merge sorted position lists into one sorted list without duplicates.
fn union<'a>(lists: impl IntoIterator<Item = &'a [u32]>) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for l in lists {
        out.extend_from_slice(l);
    }
    out.sort_unstable();
    out.dedup();
    out
}

impl ScopeIndex {
    /// Index all of `snap`.
    pub fn build(snap: &Snapshot) -> Self {
        let mut ix = ScopeIndex::default();
        for (i, n) in snap.networks.iter().enumerate() {
            ix.networks.add(network_key(n), i);
        }
        for (i, s) in snap.subnets.iter().enumerate() {
            ix.subnets_by_network.add(&s.network_id, i);
        }
        for (i, p) in snap.ports.iter().enumerate() {
            ix.add_port(p, i);
        }
        for (i, r) in snap.routers.iter().enumerate() {
            ix.routers_by_project.add(&r.project_id, i);
        }
        for (i, r) in snap.router_interfaces.iter().enumerate() {
            ix.add_interface(r, i);
        }
        for (i, f) in snap.floating_ips.iter().enumerate() {
            ix.floating_ips_by_project.add(&f.project_id, i);
        }
        ix
    }

    fn add_port(&mut self, p: &Port, pos: usize) {
        if p.is_vm_port() {
            self.vm_ports_by_network.add(&p.network_id, pos);
            self.vm_ports_by_project.add(&p.project_id, pos);
        } else {
            self.other_ports_by_network.add(&p.network_id, pos);
            self.other_ports_by_device.add(&p.device_id, pos);
            self.other_ports_by_project.add(&p.project_id, pos);
        }
    }

    /// Take the port `p` at `pos` out of its groups. Only the groups it is in hold `pos`:
    /// removing it from the others does nothing.
    fn forget_port(&mut self, p: &Port, pos: usize) {
        self.vm_ports_by_network.remove(&p.network_id, pos);
        self.vm_ports_by_project.remove(&p.project_id, pos);
        self.other_ports_by_network.remove(&p.network_id, pos);
        self.other_ports_by_device.remove(&p.device_id, pos);
        self.other_ports_by_project.remove(&p.project_id, pos);
    }

    fn port_groups(&mut self) -> [&mut Groups; 5] {
        [
            &mut self.vm_ports_by_network,
            &mut self.vm_ports_by_project,
            &mut self.other_ports_by_network,
            &mut self.other_ports_by_device,
            &mut self.other_ports_by_project,
        ]
    }

    /// Positions of every port of `project` (VM ports, then the others): where its security
    /// groups' members are (see [`crate::security`]).
    pub(crate) fn ports_of_project(&self, project: &str) -> impl Iterator<Item = usize> + '_ {
        self.vm_ports_by_project
            .get(project)
            .iter()
            .chain(self.other_ports_by_project.get(project))
            .map(|&i| i as usize)
    }

    fn add_interface(&mut self, r: &RouterInterface, pos: usize) {
        self.interfaces_by_subnet.add(&r.subnet_id, pos);
        self.interfaces_by_router.add(&r.router_id, pos);
    }

    /// What [`crate::topology::Topology::build_scoped`] keeps for the `projects`: the same
    /// objects in the same order as its scans. With `used`, only the open (shared or external)
    /// networks it names are kept, as [`crate::topology::Topology::build_for_patch`] does (see
    /// [`crate::scope::open_networks_used`]).
    pub(crate) fn select<'s>(
        &self,
        snap: &Snapshot,
        projects: impl Iterator<Item = &'s str> + Clone,
        used: Option<&FxSet<&str>>,
    ) -> Selection {
        let open_kept: Vec<u32> = match used {
            None => self.networks.get("").to_vec(),
            Some(u) => self
                .networks
                .get("")
                .iter()
                .copied()
                .filter(|&i| at(&snap.networks, &[i]).any(|n| u.contains(n.id.as_str())))
                .collect(),
        };
        let networks = union(
            std::iter::once(open_kept.as_slice())
                .chain(projects.clone().map(|p| self.networks.get(p))),
        );
        let net_ids = || at(&snap.networks, &networks).map(|n| n.id.as_str());
        let subnets = union(net_ids().map(|n| self.subnets_by_network.get(n)));
        let open: FxSet<&str> = at(&snap.networks, self.networks.get(""))
            .map(|n| n.id.as_str())
            .collect();
        // Routers of other projects attached to a shared or external network's subnets.
        let attached: Vec<u32> = at(&snap.networks, &open_kept)
            .flat_map(|n| at(&snap.subnets, self.subnets_by_network.get(&n.id)))
            .flat_map(|s| {
                at(
                    &snap.router_interfaces,
                    self.interfaces_by_subnet.get(&s.id),
                )
            })
            .filter_map(|i| {
                crate::scope::position_by_id(&snap.routers, &i.router_id, |r| &r.id)
                    .map(|p| p as u32)
            })
            .collect();
        let routers = union(
            projects
                .clone()
                .map(|p| self.routers_by_project.get(p))
                .chain(std::iter::once(attached.as_slice())),
        );
        let interfaces =
            union(at(&snap.routers, &routers).map(|r| self.interfaces_by_router.get(&r.id)));
        // VM ports of every network kept; the others of the project's networks, and of the
        // open networks only those of the routers kept (see `Topology::build_scoped`).
        let kept: FxSet<&str> = net_ids().collect();
        let router_ports: Vec<u32> = at(&snap.routers, &routers)
            .flat_map(|r| self.other_ports_by_device.get(&r.id))
            .copied()
            .filter(|&i| at(&snap.ports, &[i]).any(|p| kept.contains(p.network_id.as_str())))
            .collect();
        let ports = union(
            net_ids()
                .map(|n| self.vm_ports_by_network.get(n))
                .chain(
                    net_ids()
                        .filter(|n| !open.contains(n))
                        .map(|n| self.other_ports_by_network.get(n)),
                )
                .chain(std::iter::once(router_ports.as_slice())),
        );
        let floating_ips = union(projects.map(|p| self.floating_ips_by_project.get(p)));
        Selection {
            networks,
            subnets,
            ports,
            routers,
            interfaces,
            floating_ips,
        }
    }

    /// The open (shared or external) networks the projects use (see
    /// [`crate::scope::open_networks_used`], which finds the same by scanning).
    pub(crate) fn open_networks_used<'s>(
        &self,
        snap: &'s Snapshot,
        projects: impl Iterator<Item = &'s str> + Clone,
    ) -> FxSet<&'s str> {
        let open = |id: &str| {
            crate::scope::by_id(&snap.networks, id, |n| &n.id)
                .is_some_and(|n| n.shared || n.external)
        };
        let mut used: FxSet<&'s str> = FxSet::default();
        let mut add = |id: &'s str| {
            if !used.contains(id) && open(id) {
                used.insert(id);
            }
        };
        for p in projects.clone() {
            for n in at(&snap.networks, self.networks.get("")) {
                if n.project_id == p {
                    add(&n.id);
                }
            }
            for port in at(&snap.ports, self.vm_ports_by_project.get(p)) {
                add(&port.network_id);
            }
            for r in at(&snap.routers, self.routers_by_project.get(p)) {
                if let Some(g) = &r.external_gateway {
                    add(&g.network_id);
                }
                for i in self.interfaces_of(snap, &r.id) {
                    if let Some(s) = crate::scope::by_id(&snap.subnets, &i.subnet_id, |s| &s.id) {
                        add(&s.network_id);
                    }
                }
            }
            for f in at(&snap.floating_ips, self.floating_ips_by_project.get(p)) {
                add(&f.floating_network_id);
            }
        }
        used
    }

    /// The interfaces of the router `id`, in snapshot order.
    pub(crate) fn interfaces_of<'s>(
        &self,
        snap: &'s Snapshot,
        id: &str,
    ) -> impl Iterator<Item = &'s RouterInterface> + use<'s, '_> {
        at(&snap.router_interfaces, self.interfaces_by_router.get(id))
    }

    /// Insert, replace or (`None`) remove the network `id` of `snap.networks` (sorted by id).
    pub fn upsert_network(&mut self, snap: &mut Snapshot, id: &str, item: Option<Network>) {
        upsert_sorted(
            &mut snap.networks,
            id,
            |n| &n.id,
            item,
            &mut self.networks,
            network_key,
        );
    }

    /// Insert, replace or remove the subnet `id` of `snap.subnets` (sorted by id).
    pub fn upsert_subnet(&mut self, snap: &mut Snapshot, id: &str, item: Option<Subnet>) {
        let g = &mut self.subnets_by_network;
        upsert_sorted(&mut snap.subnets, id, |s| &s.id, item, g, |s| &s.network_id);
    }

    /// Insert, replace or remove the router `id` of `snap.routers` (sorted by id).
    pub fn upsert_router(&mut self, snap: &mut Snapshot, id: &str, item: Option<Router>) {
        let g = &mut self.routers_by_project;
        upsert_sorted(&mut snap.routers, id, |r| &r.id, item, g, |r| &r.project_id);
    }

    /// Insert, replace or remove the floating IP `id` of `snap.floating_ips` (sorted by id).
    pub fn upsert_floating_ip(&mut self, snap: &mut Snapshot, id: &str, item: Option<FloatingIp>) {
        let g = &mut self.floating_ips_by_project;
        upsert_sorted(
            &mut snap.floating_ips,
            id,
            |f| &f.id,
            item,
            g,
            |f| &f.project_id,
        );
    }

    /// Remove the port `id` from `snap.ports` (kept in creation order by its owner).
    pub fn remove_port(&mut self, snap: &mut Snapshot, id: &str) {
        if let Some(pos) = snap.ports.iter().position(|p| p.id == id) {
            let p = snap.ports.remove(pos);
            self.forget_port(&p, pos);
            for g in self.port_groups() {
                g.closed(pos);
            }
        }
    }

    /// Replace the port at `pos` with `port`, a later state of it (its place in creation order
    /// is the same): no element moves, so nothing shifts, unlike a remove and an insert, which
    /// each move the rest of the cloud's ports. Returns the port replaced; `None` (and nothing
    /// done) when `pos` holds another port.
    pub fn replace_port(&mut self, snap: &mut Snapshot, pos: usize, port: Port) -> Option<Port> {
        let old = snap.ports.get(pos).filter(|p| p.id == port.id)?;
        self.forget_port(old, pos);
        self.add_port(&port, pos);
        Some(std::mem::replace(&mut snap.ports[pos], port))
    }

    /// Insert `port` into `snap.ports` at `pos` (its place in creation order).
    pub fn insert_port(&mut self, snap: &mut Snapshot, pos: usize, port: Port) {
        for g in self.port_groups() {
            g.opened(pos);
        }
        self.add_port(&port, pos);
        snap.ports.insert(pos, port);
    }

    /// Remove the interfaces the port `port_id` backs from `snap.router_interfaces`.
    pub fn remove_interfaces_of_port(&mut self, snap: &mut Snapshot, port_id: &str) {
        while let Some(pos) = snap
            .router_interfaces
            .iter()
            .position(|i| i.port_id == port_id)
        {
            let r = snap.router_interfaces.remove(pos);
            self.interfaces_by_subnet.remove(&r.subnet_id, pos);
            self.interfaces_by_router.remove(&r.router_id, pos);
            self.interfaces_by_subnet.closed(pos);
            self.interfaces_by_router.closed(pos);
        }
    }

    /// Insert `iface` into `snap.router_interfaces` at `pos`.
    pub fn insert_interface(&mut self, snap: &mut Snapshot, pos: usize, iface: RouterInterface) {
        self.interfaces_by_subnet.opened(pos);
        self.interfaces_by_router.opened(pos);
        self.add_interface(&iface, pos);
        snap.router_interfaces.insert(pos, iface);
    }
}

/// Replace the element `id` of a vector sorted by id and its position in `groups` (under
/// `group`'s key).
fn upsert_sorted<T>(
    v: &mut Vec<T>,
    id: &str,
    key: impl Fn(&T) -> &String,
    item: Option<T>,
    groups: &mut Groups,
    group: impl Fn(&T) -> &str,
) {
    match (v.binary_search_by(|x| key(x).as_str().cmp(id)), item) {
        (Ok(i), Some(item)) => {
            groups.remove(group(&v[i]), i);
            groups.add(group(&item), i);
            v[i] = item;
        }
        (Ok(i), None) => {
            let old = v.remove(i);
            groups.remove(group(&old), i);
            groups.closed(i);
        }
        (Err(i), Some(item)) => {
            groups.opened(i);
            groups.add(group(&item), i);
            v.insert(i, item);
        }
        (Err(_), None) => {}
    }
}
