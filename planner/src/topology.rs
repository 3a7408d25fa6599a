//! Indexes over a snapshot and the facts every rule needs: where each network is present, where
//! each router has instances, which node hosts each instance, which nodes share each L2 segment.
//! Built once in O(n log n); everything else is lookups.

use std::collections::{BTreeMap, BTreeSet};

use crate::fxhash::{FxMap, FxSet, StrSet};
use std::net::IpAddr;

use crate::snapshot::*;

/// Where a network may live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement<'a> {
    /// Lives in exactly this pod.
    Local(&'a str),
    /// A local network whose pod is not known yet (no hints, no bound port, no allocation).
    Unplaced,
    /// May stretch to these pods (`None`: every pod).
    Stretched(Option<BTreeSet<&'a str>>),
    /// An external network living in this pod.
    External(&'a str),
    /// An external network whose hints do not name exactly one pod.
    ExternalUnplaced,
}

/// Indexes and derived facts over one snapshot.
pub(crate) struct Topology<'a> {
    pub snap: &'a Snapshot,
    /// The objects indexed: all of the snapshot, or those of a scope of projects.
    pub net_list: Vec<&'a Network>,
    pub port_list: Vec<&'a Port>,
    pub router_list: Vec<&'a Router>,
    pub fip_list: Vec<&'a FloatingIp>,
    pub pods: BTreeSet<&'a str>,
    /// AZ hint name → regions it names.
    hint_regions: FxMap<&'a str, BTreeSet<&'a str>>,
    pub nodes: FxMap<&'a str, &'a Node>,
    pub nodes_by_pod: FxMap<&'a str, Vec<&'a Node>>,
    pub networks: FxMap<&'a str, &'a Network>,
    pub subnets: FxMap<&'a str, &'a Subnet>,
    pub subnets_by_network: FxMap<&'a str, Vec<&'a Subnet>>,
    pub ports: FxMap<&'a str, &'a Port>,
    /// Bound VM ports by host node.
    pub ports_by_host: FxMap<&'a str, Vec<&'a Port>>,
    /// VM ports by network.
    pub ports_by_network: FxMap<&'a str, Vec<&'a Port>>,
    /// Gateway ports by router (`device_id`): the ports that back gateway legs.
    pub gateway_ports: FxMap<&'a str, Vec<&'a Port>>,
    pub routers: FxMap<&'a str, &'a Router>,
    pub routers_by_project: FxMap<&'a str, Vec<&'a Router>>,
    /// Interfaces by router, sorted by port id.
    pub interfaces_by_router: FxMap<&'a str, Vec<&'a RouterInterface>>,
    /// Router ids by network (through their interfaces), sorted.
    pub routers_by_network: FxMap<&'a str, BTreeSet<&'a str>>,
    /// Router ids by subnet, sorted.
    pub routers_by_subnet: FxMap<&'a str, BTreeSet<&'a str>>,
    pub placement: FxMap<&'a str, Placement<'a>>,
    /// Pods where each network is present.
    pub presence: FxMap<&'a str, BTreeSet<&'a str>>,
    /// Local routers' pod.
    pub router_local_pod: FxMap<&'a str, &'a str>,
    /// Pod of each router instance → hosting node.
    pub instances: FxMap<&'a str, BTreeMap<&'a str, &'a str>>,
    /// Node → router ids it hosts, sorted.
    pub instances_by_node: FxMap<&'a str, BTreeSet<&'a str>>,
    /// Pod of the router's gateway (the external network's pod).
    pub gateway_pod: FxMap<&'a str, &'a str>,
    /// Floating IPs a router serves, by router.
    pub fips_by_router: FxMap<&'a str, Vec<(&'a FloatingIp, IpAddr)>>,
    /// Nodes where each network has a port or a router leg.
    pub network_nodes: FxMap<&'a str, BTreeSet<&'a str>>,
    /// Nodes hosting an instance of one of the project's non-local routers.
    pub project_bridge_nodes: FxMap<&'a str, BTreeSet<&'a str>>,
    /// Node → networks whose DHCP server (of the node's pod) it runs (see `dhcp.rs`).
    pub dhcp_by_node: FxMap<&'a str, Vec<&'a str>>,
    /// Security group indexes over the whole snapshot, built as far as asked for.
    pub security: std::cell::OnceCell<crate::security::Index>,
    /// The snapshot's kept index, when built with one: security groups then index only the
    /// projects they are asked about (see [`crate::security`]).
    pub scope_index: Option<&'a crate::index::ScopeIndex>,
}

/// The objects a topology indexes, each list in snapshot order.
struct Lists<'a> {
    networks: Vec<&'a Network>,
    subnets: Vec<&'a Subnet>,
    ports: Vec<&'a Port>,
    routers: Vec<&'a Router>,
    interfaces: Vec<&'a RouterInterface>,
    floating_ips: Vec<&'a FloatingIp>,
}

/// A router to judge in place of the snapshot's (see [`Topology::build_with`]).
#[derive(Clone, Copy)]
pub(crate) struct RouterOverride<'a> {
    /// The router as it would be stored.
    pub router: &'a Router,
    /// One more interface of it, as `add_router_interface` would store it.
    pub extra_interface: Option<&'a crate::snapshot::RouterInterface>,
}

impl<'a> Topology<'a> {
    /// Index all of `snap`.
    pub fn build(snap: &'a Snapshot) -> Self {
        Self::build_scoped(snap, None)
    }

    /// Index only what the projects in `scope` can see: their networks, routers and floating
    /// IPs, every external and shared network with all of its VM ports, and the routers of
    /// other projects attached to those. Every fact about an object of the scope is the same as
    /// in the full index (they depend on nothing else), at the cost of linear scans only.
    ///
    /// Of an external or shared network's other ports (gateway, floating IP, DHCP ports), only
    /// those of the routers indexed are: the rules read ports by network only for VM ports, and
    /// a router's own ports by router. An external network holds a gateway port for every
    /// router of the cloud; indexing them all made every scope as large as the cloud's routers.
    pub fn build_scoped(snap: &'a Snapshot, scope: Option<&FxSet<&str>>) -> Self {
        Self::build_with(snap, scope, None, None)
    }

    /// [`Self::build_scoped`] keeping only the open networks in `used` (see
    /// [`crate::scope::open_networks_used`]): for patching nodes with the scope's
    /// contribution, never for planning a node whole.
    pub fn build_for_patch(snap: &'a Snapshot, scope: &FxSet<&str>, used: &FxSet<&str>) -> Self {
        Self::build_with(snap, Some(scope), None, Some(used))
    }

    /// [`Self::build_scoped`] with `over`'s router in place of the snapshot's router of that id
    /// (or added, last) and its extra interface added last: the snapshot as the controller
    /// would store it, judged without copying it.
    pub(crate) fn build_with(
        snap: &'a Snapshot,
        scope: Option<&FxSet<&str>>,
        over: Option<RouterOverride<'a>>,
        used_open: Option<&FxSet<&str>>,
    ) -> Self {
        // The scans below ask these sets about every object of the snapshot; a scope's sets
        // are small, so their misses are cheap (see `StrSet`).
        let scope_set = scope.map(|s| StrSet::new(s.iter().copied()));
        let replaced = over.as_ref().map(|o| o.router.id.as_str());
        let not_replaced = |r: &&'a Router| Some(r.id.as_str()) != replaced;
        let extra = over.as_ref().and_then(|o| o.extra_interface);
        let in_scope = |p: &str| match &scope_set {
            None => true,
            Some(s) => s.contains(p),
        };
        let net_list: Vec<&'a Network> = snap
            .networks
            .iter()
            .filter(|n| {
                in_scope(&n.project_id)
                    || ((n.external || n.shared)
                        && used_open.is_none_or(|u| u.contains(n.id.as_str())))
            })
            .collect();
        let lists = match scope {
            None => Lists {
                networks: net_list,
                ports: snap.ports.iter().collect(),
                routers: snap
                    .routers
                    .iter()
                    .filter(not_replaced)
                    .chain(over.as_ref().map(|o| o.router))
                    .collect(),
                interfaces: snap.router_interfaces.iter().chain(extra).collect(),
                subnets: snap.subnets.iter().collect(),
                floating_ips: snap.floating_ips.iter().collect(),
            },
            Some(_) => {
                let kept = StrSet::new(net_list.iter().map(|n| n.id.as_str()));
                let subnets: Vec<&'a Subnet> = snap
                    .subnets
                    .iter()
                    .filter(|s| kept.contains(s.network_id.as_str()))
                    .collect();
                let shared_nets = StrSet::new(
                    net_list
                        .iter()
                        .filter(|n| n.shared || n.external)
                        .map(|n| n.id.as_str()),
                );
                let shared_subnets = StrSet::new(
                    subnets
                        .iter()
                        .filter(|s| shared_nets.contains(s.network_id.as_str()))
                        .map(|s| s.id.as_str()),
                );
                let routers_kept = StrSet::new(
                    snap.router_interfaces
                        .iter()
                        .chain(extra)
                        .filter(|i| shared_subnets.contains(i.subnet_id.as_str()))
                        .map(|i| i.router_id.as_str()),
                );
                let routers: Vec<&'a Router> = snap
                    .routers
                    .iter()
                    .filter(not_replaced)
                    .chain(over.as_ref().map(|o| o.router))
                    .filter(|r| in_scope(&r.project_id) || routers_kept.contains(r.id.as_str()))
                    .collect();
                let rids = StrSet::new(routers.iter().map(|r| r.id.as_str()));
                let ports = snap
                    .ports
                    .iter()
                    .filter(|p| {
                        let n = p.network_id.as_str();
                        kept.contains(n)
                            && (p.is_vm_port()
                                || !shared_nets.contains(n)
                                || rids.contains(p.device_id.as_str()))
                    })
                    .collect();
                let interfaces = snap
                    .router_interfaces
                    .iter()
                    .chain(extra)
                    .filter(|i| rids.contains(i.router_id.as_str()))
                    .collect();
                Lists {
                    networks: net_list,
                    subnets,
                    ports,
                    routers,
                    interfaces,
                    floating_ips: snap
                        .floating_ips
                        .iter()
                        .filter(|f| in_scope(&f.project_id))
                        .collect(),
                }
            }
        };
        Self::from_lists(snap, lists)
    }

    /// Index only the projects in `scope`, as [`Self::build_scoped`] does, gathering their
    /// objects through `index` (built or kept for `snap`) instead of scanning the cloud.
    pub fn build_indexed(
        snap: &'a Snapshot,
        index: &'a crate::index::ScopeIndex,
        scope: &FxSet<&str>,
        used_open: Option<&FxSet<&str>>,
    ) -> Self {
        Self::build_indexed_with(snap, index, scope, used_open, None)
    }

    /// [`Self::build_indexed`] with `over`'s router in place of the snapshot's (last, as
    /// [`Self::build_with`] puts it) and its extra interface added last. The router's project
    /// must be in `scope`.
    pub(crate) fn build_indexed_with(
        snap: &'a Snapshot,
        index: &'a crate::index::ScopeIndex,
        scope: &FxSet<&str>,
        used_open: Option<&FxSet<&str>>,
        over: Option<RouterOverride<'a>>,
    ) -> Self {
        let sel = index.select(snap, scope.iter().copied(), used_open);
        fn pick<'a, T>(v: &'a [T], at: &[u32]) -> Vec<&'a T> {
            at.iter().filter_map(|&i| v.get(i as usize)).collect()
        }
        let mut routers = pick(&snap.routers, &sel.routers);
        let mut interfaces = pick(&snap.router_interfaces, &sel.interfaces);
        if let Some(o) = over {
            routers.retain(|r| r.id != o.router.id);
            routers.push(o.router);
            interfaces.extend(o.extra_interface);
        }
        let mut t = Self::from_lists(
            snap,
            Lists {
                networks: pick(&snap.networks, &sel.networks),
                subnets: pick(&snap.subnets, &sel.subnets),
                ports: pick(&snap.ports, &sel.ports),
                routers,
                interfaces,
                floating_ips: pick(&snap.floating_ips, &sel.floating_ips),
            },
        );
        t.scope_index = Some(index);
        t
    }

    fn from_lists(snap: &'a Snapshot, lists: Lists<'a>) -> Self {
        let Lists {
            networks,
            subnets,
            ports,
            routers,
            interfaces,
            floating_ips,
        } = lists;
        let (t_nets, t_subs, t_ports, t_routers) =
            (networks.len(), subnets.len(), ports.len(), routers.len());
        let mut t = Topology {
            snap,
            net_list: networks,
            port_list: ports,
            router_list: routers,
            fip_list: floating_ips,
            pods: BTreeSet::new(),
            hint_regions: FxMap::default(),
            nodes: FxMap::with_capacity_and_hasher(snap.nodes.len(), Default::default()),
            nodes_by_pod: FxMap::default(),
            networks: FxMap::with_capacity_and_hasher(t_nets, Default::default()),
            subnets: FxMap::with_capacity_and_hasher(t_subs, Default::default()),
            subnets_by_network: FxMap::with_capacity_and_hasher(t_nets, Default::default()),
            ports: FxMap::with_capacity_and_hasher(t_ports, Default::default()),
            ports_by_host: FxMap::default(),
            ports_by_network: FxMap::with_capacity_and_hasher(t_nets, Default::default()),
            gateway_ports: FxMap::default(),
            routers: FxMap::with_capacity_and_hasher(t_routers, Default::default()),
            routers_by_project: FxMap::default(),
            interfaces_by_router: FxMap::with_capacity_and_hasher(t_routers, Default::default()),
            routers_by_network: FxMap::default(),
            routers_by_subnet: FxMap::default(),
            placement: FxMap::with_capacity_and_hasher(t_nets, Default::default()),
            presence: FxMap::with_capacity_and_hasher(t_nets, Default::default()),
            router_local_pod: FxMap::default(),
            instances: FxMap::with_capacity_and_hasher(t_routers, Default::default()),
            instances_by_node: FxMap::default(),
            gateway_pod: FxMap::default(),
            fips_by_router: FxMap::default(),
            network_nodes: FxMap::with_capacity_and_hasher(t_nets, Default::default()),
            project_bridge_nodes: FxMap::default(),
            dhcp_by_node: FxMap::default(),
            security: std::cell::OnceCell::new(),
            scope_index: None,
        };
        for p in &snap.pods {
            t.pods.insert(&p.region_name);
            t.hint_regions
                .entry(&p.region_name)
                .or_default()
                .insert(&p.region_name);
            if let Some(az) = &p.az_name {
                t.hint_regions.entry(az).or_default().insert(&p.region_name);
            }
        }
        for n in &snap.nodes {
            t.nodes.insert(&n.name, n);
            t.nodes_by_pod.entry(&n.pod).or_default().push(n);
        }
        for v in t.nodes_by_pod.values_mut() {
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }
        for n in t.net_list.clone() {
            t.networks.insert(&n.id, n);
        }
        for s in subnets {
            t.subnets.insert(&s.id, s);
            t.subnets_by_network
                .entry(&s.network_id)
                .or_default()
                .push(s);
        }
        for p in t.port_list.clone() {
            t.ports.insert(&p.id, p);
            if p.device_owner == OWNER_ROUTER_GATEWAY {
                t.gateway_ports.entry(&p.device_id).or_default().push(p);
            }
            if !p.is_vm_port() {
                continue;
            }
            t.ports_by_network.entry(&p.network_id).or_default().push(p);
            if let Some(h) = &p.binding_host {
                t.ports_by_host.entry(h).or_default().push(p);
            }
        }
        for r in t.router_list.clone() {
            t.routers.insert(&r.id, r);
            t.routers_by_project
                .entry(&r.project_id)
                .or_default()
                .push(r);
            if let Some(pod) = t.single_region(&r.az_hints) {
                t.router_local_pod.insert(&r.id, pod);
            }
        }
        for v in t.routers_by_project.values_mut() {
            v.sort_by(|a, b| a.id.cmp(&b.id));
        }
        for i in interfaces {
            t.interfaces_by_router
                .entry(&i.router_id)
                .or_default()
                .push(i);
            t.routers_by_subnet
                .entry(&i.subnet_id)
                .or_default()
                .insert(&i.router_id);
            if let Some(s) = t.subnets.get(i.subnet_id.as_str()) {
                t.routers_by_network
                    .entry(&s.network_id)
                    .or_default()
                    .insert(&i.router_id);
            }
        }
        for v in t.interfaces_by_router.values_mut() {
            v.sort_by(|a, b| a.port_id.cmp(&b.port_id));
        }
        t.place_networks();
        t.place_routers();
        t.index_floating_ips();
        t.index_segments();
        t.place_dhcp();
        t
    }

    /// The regions a list of AZ hints names (unknown hints name nothing).
    pub fn hint_pods(&self, hints: &'a [String]) -> BTreeSet<&'a str> {
        let mut out = BTreeSet::new();
        for h in hints {
            if let Some(rs) = self.hint_regions.get(h.as_str()) {
                out.extend(rs.iter().copied());
            }
        }
        out
    }

    /// Whether a hint names no known pod.
    pub fn unknown_hint<'b>(&self, hints: &'b [String]) -> Option<&'b str> {
        hints
            .iter()
            .find(|h| !self.hint_regions.contains_key(h.as_str()))
            .map(|h| h.as_str())
    }

    /// The one region the hints name, if they name exactly one.
    pub fn single_region(&self, hints: &'a [String]) -> Option<&'a str> {
        if hints.is_empty() {
            return None;
        }
        let pods = self.hint_pods(hints);
        if pods.len() == 1 {
            pods.into_iter().next()
        } else {
            None
        }
    }

    /// Pod of a node.
    pub fn node_pod(&self, node: &str) -> Option<&'a str> {
        self.nodes.get(node).map(|n| n.pod.as_str())
    }

    /// The physnet a network's ports and legs sit on.
    pub fn physnet_of(&self, net: &'a Network) -> &'a str {
        match (&net.physnet, net.network_type) {
            (Some(p), NetworkType::Vlan | NetworkType::Flat) => p,
            _ => &self.snap.local_physnet,
        }
    }

    /// The VLAN tag of a network in a pod: `Some(None)` for flat (untagged), `None` when unknown.
    pub fn net_tag(&self, net: &Network, pod: &str) -> Option<Option<u16>> {
        match net.network_type {
            NetworkType::Flat => Some(None),
            NetworkType::Vlan => net.segmentation_id.map(Some),
            NetworkType::Local | NetworkType::Vxlan => {
                self.snap.allocations.local_tag(&net.id, pod).map(Some)
            }
        }
    }

    /// Whether the project's bridge network is (or will be) a VxLAN segment: an allocated one
    /// keeps its type, else the configured type decides.
    pub fn bridge_is_vxlan(&self, project: &str) -> bool {
        match self.snap.allocations.bridge_networks.get(project) {
            Some(b) => b.vni.is_some(),
            None => self.snap.bridge_vxlan,
        }
    }

    /// The project's bridge segment in a pod: physnet, tag and VNI (`None` for a VLAN bridge);
    /// `None` while its network (or its VxLAN tag in the pod) is not allocated.
    pub fn bridge_segment(&self, project: &str, pod: &str) -> Option<(&'a str, u16, Option<u32>)> {
        let snap = self.snap;
        let bn = snap.allocations.bridge_networks.get(project)?;
        match bn.vni {
            None => Some((snap.bridge_physnet.as_str(), bn.vlan, None)),
            Some(vni) => Some((
                snap.local_physnet.as_str(),
                snap.allocations.bridge_tag(project, pod)?,
                Some(vni),
            )),
        }
    }

    fn place_networks(&mut self) {
        let snap = self.snap;
        // The pod of the first bound VM port of each network, in snapshot (creation) order.
        let mut first_pod: FxMap<&'a str, &'a str> = FxMap::default();
        let mut bound_pods: FxMap<&'a str, BTreeSet<&'a str>> = FxMap::default();
        for p in self.port_list.clone() {
            if !p.is_vm_port() {
                continue;
            }
            let Some(pod) = p.binding_host.as_deref().and_then(|h| self.node_pod(h)) else {
                continue;
            };
            first_pod.entry(&p.network_id).or_insert(pod);
            bound_pods.entry(&p.network_id).or_default().insert(pod);
        }
        for net in self.net_list.clone() {
            let hinted = self.single_region(&net.az_hints);
            let placement = if net.external {
                // Tricircle's `default_region_for_external_network`: an external network
                // created without hints lives in the default region.
                let home = if net.az_hints.is_empty() {
                    snap.default_external_region
                        .as_ref()
                        .and_then(|r| self.single_region(std::slice::from_ref(r)))
                } else {
                    hinted
                };
                match home {
                    Some(p) => Placement::External(p),
                    None => Placement::ExternalUnplaced,
                }
            } else if net.network_type == NetworkType::Local || hinted.is_some() {
                let home = hinted
                    .or_else(|| {
                        snap.allocations
                            .local_tags
                            .get(&net.id)
                            .and_then(|m| m.keys().next())
                            .and_then(|p| self.pods.get(p.as_str()).copied())
                    })
                    .or_else(|| first_pod.get(net.id.as_str()).copied())
                    .or_else(|| self.local_router_pod_of(&net.id));
                match home {
                    Some(p) => Placement::Local(p),
                    None => Placement::Unplaced,
                }
            } else if net.az_hints.is_empty() {
                Placement::Stretched(None)
            } else {
                Placement::Stretched(Some(self.hint_pods(&net.az_hints)))
            };
            let presence: BTreeSet<&'a str> = match &placement {
                Placement::Local(p) | Placement::External(p) => BTreeSet::from([*p]),
                Placement::Unplaced | Placement::ExternalUnplaced => BTreeSet::new(),
                Placement::Stretched(allowed) => {
                    let mut s: BTreeSet<&'a str> =
                        bound_pods.get(net.id.as_str()).cloned().unwrap_or_default();
                    if let Some(rs) = self.routers_by_network.get(net.id.as_str()) {
                        for r in rs {
                            if let Some(p) = self.router_local_pod.get(r) {
                                s.insert(p);
                            }
                        }
                    }
                    if let Some(allowed) = allowed {
                        s.retain(|p| allowed.contains(p));
                    }
                    s
                }
            };
            self.presence.insert(&net.id, presence);
            self.placement.insert(&net.id, placement);
        }
    }

    /// The pod of the lowest local router attached to a network, if any.
    fn local_router_pod_of(&self, net: &str) -> Option<&'a str> {
        self.routers_by_network
            .get(net)?
            .iter()
            .find_map(|r| self.router_local_pod.get(r).copied())
    }

    /// Whether a router is non-local (has instances in several pods and a bridge leg).
    pub fn is_distributed(&self, router: &str) -> bool {
        !self.router_local_pod.contains_key(router)
    }

    fn place_routers(&mut self) {
        for r in self.router_list.clone() {
            let ifaces = self
                .interfaces_by_router
                .get(r.id.as_str())
                .map(|v| v.as_slice())
                .unwrap_or_default();
            let gw_pod = r.external_gateway.as_ref().and_then(|g| {
                match self.placement.get(g.network_id.as_str()) {
                    Some(Placement::External(p)) => Some(*p),
                    _ => None,
                }
            });
            if let Some(p) = gw_pod {
                self.gateway_pod.insert(&r.id, p);
            }
            let mut pods: BTreeSet<&'a str> = BTreeSet::new();
            if let Some(lp) = self.router_local_pod.get(r.id.as_str()) {
                if !ifaces.is_empty() || r.external_gateway.is_some() {
                    pods.insert(lp);
                }
            } else {
                for i in ifaces {
                    if let Some(s) = self.subnets.get(i.subnet_id.as_str()) {
                        if let Some(pr) = self.presence.get(s.network_id.as_str()) {
                            pods.extend(pr.iter().copied());
                        }
                    }
                }
                pods.extend(gw_pod);
            }
            let mut placed = BTreeMap::new();
            for pod in pods {
                if !self.pods.contains(pod) {
                    continue;
                }
                let needs = self.router_needs(r, pod);
                let held = self.snap.allocations.router_node(&r.id, pod);
                if let Some(node) = self.choose(pod, &r.id, &needs, held) {
                    placed.insert(pod, node);
                    self.instances_by_node
                        .entry(node)
                        .or_default()
                        .insert(&r.id);
                }
            }
            self.instances.insert(&r.id, placed);
        }
    }

    /// What an instance of router `r` in `pod` needs of its node: the physnets of its legs
    /// (the bridge network's, its networks' present in the pod, the external network's when
    /// its gateway is here), those whose segments leave the node (uplinks), and whether one of
    /// them is a VxLAN segment (then the node needs a `local_ip`).
    pub(crate) fn router_needs(&self, r: &Router, pod: &str) -> Needs<'a> {
        let snap = self.snap;
        let mut needs = Needs::default();
        if self.is_distributed(&r.id) {
            if self.bridge_is_vxlan(&r.project_id) {
                needs.physnets.insert(&snap.local_physnet);
                needs.vxlan = true;
            } else {
                needs.physnets.insert(&snap.bridge_physnet);
                needs.uplinks.insert(&snap.bridge_physnet);
            }
        }
        let ifaces = self
            .interfaces_by_router
            .get(r.id.as_str())
            .map(|v| v.as_slice())
            .unwrap_or_default();
        for i in ifaces {
            let Some(s) = self.subnets.get(i.subnet_id.as_str()) else {
                continue;
            };
            let Some(net) = self.networks.get(s.network_id.as_str()) else {
                continue;
            };
            if self
                .presence
                .get(net.id.as_str())
                .is_some_and(|p| p.contains(pod))
            {
                needs.add_network(self, net);
            }
        }
        if self.gateway_pod.get(r.id.as_str()).copied() == Some(pod) {
            if let Some(ext) = r
                .external_gateway
                .as_ref()
                .and_then(|g| self.networks.get(g.network_id.as_str()))
            {
                needs.add_network(self, ext);
            }
        }
        needs
    }

    /// The nodes of `pod` that may host what `needs` describes, best first: nodes without a
    /// `local_ip` are left out when a VxLAN segment is needed; then the most needed physnets
    /// mapped, the most needed uplinks, and among equals the highest rendezvous weight of
    /// (`key`, node), so instances spread over equal nodes, stay put when unrelated things
    /// change, and a lost node moves only its own.
    /// Lost nodes are left out.
    pub(crate) fn rank(&self, pod: &str, key: &str, needs: &Needs<'_>) -> Vec<&'a str> {
        self.scored(pod, key, needs, false)
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    }

    /// The node for what `needs` describes in `pod`: the node `held` for it (its sticky
    /// placement) while that node is alive and as fit as the best (same physnets and uplinks),
    /// unless failback is on and it is not the top candidate; else the top alive candidate.
    pub(crate) fn choose(
        &self,
        pod: &str,
        key: &str,
        needs: &Needs<'_>,
        held: Option<&str>,
    ) -> Option<&'a str> {
        let ranked = self.scored(pod, key, needs, false);
        let (top_score, top) = *ranked.first()?;
        let Some(held) = held else {
            return Some(top);
        };
        if self.snap.failback {
            // The top candidate of all, lost or not: the instance returns once it is alive.
            return Some(top);
        }
        ranked
            .iter()
            .find(|(score, n)| *n == held && (score.0, score.1) == (top_score.0, top_score.1))
            .map(|(_, n)| *n)
            .or(Some(top))
    }

    /// The top candidate of `pod` counting lost nodes too: where the instance would be with
    /// every node alive (an instance elsewhere has moved).
    pub(crate) fn home(&self, pod: &str, key: &str, needs: &Needs<'_>) -> Option<&'a str> {
        self.scored(pod, key, needs, true).first().map(|(_, n)| *n)
    }

    fn scored(
        &self,
        pod: &str,
        key: &str,
        needs: &Needs<'_>,
        with_lost: bool,
    ) -> Vec<((usize, usize, u64), &'a str)> {
        let Some(nodes) = self.nodes_by_pod.get(pod) else {
            return Vec::new();
        };
        let mut ranked: Vec<((usize, usize, u64), &'a Node)> = nodes
            .iter()
            .copied()
            .filter(|n| with_lost || !n.lost)
            .filter(|n| !needs.vxlan || n.local_ip.is_some())
            .map(|n| {
                let mapped = needs
                    .physnets
                    .iter()
                    .filter(|p| n.bridge_mappings.contains_key(**p))
                    .count();
                let uplinks = needs
                    .uplinks
                    .iter()
                    .filter(|p| n.uplinks.contains(**p) && n.bridge_mappings.contains_key(**p))
                    .count();
                ((mapped, uplinks, rendezvous(key, &n.name)), n)
            })
            .collect();
        ranked.sort_by(|(a, na), (b, nb)| b.cmp(a).then_with(|| na.name.cmp(&nb.name)));
        ranked
            .into_iter()
            .map(|(s, n)| (s, n.name.as_str()))
            .collect()
    }

    /// The router that serves a floating IP and the fixed IP it maps to, or why none does.
    pub fn fip_target(&self, fip: &'a FloatingIp) -> Result<Option<(&'a str, IpAddr)>, FipProblem> {
        let Some(port_id) = fip.port_id.as_deref() else {
            return Ok(None);
        };
        let Some(port) = self.ports.get(port_id) else {
            return Err(FipProblem::NoPort);
        };
        if port.project_id != fip.project_id {
            return Err(FipProblem::ForeignPort);
        }
        let fixed = match fip.fixed_ip_address {
            Some(ip) => port.fixed_ips.iter().find(|f| f.ip_address == ip),
            None => port.fixed_ips.iter().find(|f| f.ip_address.is_ipv4()),
        };
        let Some(fixed) = fixed else {
            return Err(FipProblem::NoFixedIp);
        };
        let router = self
            .routers_by_subnet
            .get(fixed.subnet_id.as_str())
            .and_then(|rs| {
                rs.iter().copied().find(|r| {
                    self.routers.get(r).is_some_and(|r| {
                        r.project_id == fip.project_id
                            && r.external_gateway
                                .as_ref()
                                .is_some_and(|g| g.network_id == fip.floating_network_id)
                    })
                })
            });
        match router {
            Some(r) => Ok(Some((r, fixed.ip_address))),
            None => Err(FipProblem::Unreachable),
        }
    }

    fn index_floating_ips(&mut self) {
        for fip in self.fip_list.clone() {
            if let Ok(Some((r, ip))) = self.fip_target(fip) {
                self.fips_by_router.entry(r).or_default().push((fip, ip));
            }
        }
    }

    /// The pod whose instance holds a subnet's network for a router (lowest present pod).
    pub fn home_pod_for(&self, router: &str, net: &str) -> Option<&'a str> {
        let inst = self.instances.get(router)?;
        self.presence
            .get(net)?
            .iter()
            .copied()
            .find(|p| inst.contains_key(p))
    }

    fn index_segments(&mut self) {
        for p in self.port_list.clone() {
            if !p.is_vm_port() {
                continue;
            }
            if let Some(h) = p.binding_host.as_deref() {
                if let Some(node) = self.nodes.get(h) {
                    if node.local_ip.is_none() && self.is_vxlan(&p.network_id) {
                        continue; // cannot carry the segment: the port stays out (DOWN)
                    }
                    self.network_nodes
                        .entry(&p.network_id)
                        .or_default()
                        .insert(&node.name);
                }
            }
        }
        for r in self.router_list.clone() {
            let Some(inst) = self.instances.get(r.id.as_str()) else {
                continue;
            };
            if self.is_distributed(&r.id) {
                self.project_bridge_nodes
                    .entry(&r.project_id)
                    .or_default()
                    .extend(inst.values().copied());
            }
            for i in self
                .interfaces_by_router
                .get(r.id.as_str())
                .map(|v| v.as_slice())
                .unwrap_or_default()
            {
                let Some(s) = self.subnets.get(i.subnet_id.as_str()) else {
                    continue;
                };
                let Some(pr) = self.presence.get(s.network_id.as_str()) else {
                    continue;
                };
                for (pod, node) in inst {
                    if pr.contains(pod) {
                        self.network_nodes
                            .entry(&s.network_id)
                            .or_default()
                            .insert(node);
                    }
                }
            }
            if let (Some(g), Some(gp)) = (&r.external_gateway, self.gateway_pod.get(r.id.as_str()))
            {
                if let Some(node) = inst.get(gp) {
                    self.network_nodes
                        .entry(&g.network_id)
                        .or_default()
                        .insert(node);
                }
            }
        }
    }

    /// Whether a network is a VxLAN segment.
    pub fn is_vxlan(&self, net: &str) -> bool {
        self.networks
            .get(net)
            .is_some_and(|n| n.network_type == NetworkType::Vxlan)
    }

    /// Whether the index holds routers of projects outside `scope` (attached to a shared or
    /// external network of the scope): their facts could depend on the scope, so incremental
    /// planning falls back to the full index.
    pub fn has_foreign_routers(&self, scope: &FxSet<&str>) -> bool {
        self.router_list
            .iter()
            .any(|r| !scope.contains(r.project_id.as_str()))
    }

    /// Nodes hosting instances of any router of a project.
    pub fn project_instance_nodes(&self, project: &str) -> BTreeSet<&'a str> {
        let mut out = BTreeSet::new();
        for r in self.routers_by_project.get(project).into_iter().flatten() {
            if let Some(inst) = self.instances.get(r.id.as_str()) {
                out.extend(inst.values().copied());
            }
        }
        out
    }
}

/// What a router instance or DHCP server needs of its node (see [`Topology::rank`]).
#[derive(Debug, Default)]
pub(crate) struct Needs<'a> {
    /// Physnets it has legs on.
    pub physnets: BTreeSet<&'a str>,
    /// Physnets whose segments leave the node (VLAN and flat ones).
    pub uplinks: BTreeSet<&'a str>,
    /// Whether one of its segments is VxLAN.
    pub vxlan: bool,
}

impl<'a> Needs<'a> {
    /// Add the needs of a leg on `net`.
    pub fn add_network(&mut self, t: &Topology<'a>, net: &'a Network) {
        let physnet = t.physnet_of(net);
        self.physnets.insert(physnet);
        match net.network_type {
            NetworkType::Vxlan => self.vxlan = true,
            NetworkType::Vlan | NetworkType::Flat => {
                self.uplinks.insert(physnet);
            }
            NetworkType::Local => {}
        }
    }
}

/// Rendezvous (highest-random-weight) weight of `node` for `key`: FNV-1a over both, then a
/// SplitMix64 finaliser; fixed so every controller and release agrees.
pub(crate) fn rendezvous(key: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0xff]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Why a floating IP cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FipProblem {
    NoPort,
    ForeignPort,
    NoFixedIp,
    Unreachable,
}
