//! The intent as the realizer holds it in memory: the store's rows (ports, routers, floating IPs,
//! networks, subnets, nodes, pods, bridge /24s, local tags) and the [`planner::Snapshot`]
//! derived from them.
//!
//! [`Intent::load`] reads everything; after that, [`Intent::refresh`] re-reads one object the
//! change log names and returns a [`Patch`], and [`Intent::apply`] patches the rows and the
//! snapshot in place — the same derivation per object as the full load, so a patched intent
//! equals a freshly loaded one (the realizer checks this on every periodic full pass).
//! Collections keep a canonical order (ports by creation, everything else by id) so the two
//! are comparable with `==` and the planner sees the same input either way.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::{IpNet, Ipv4Net};
use planner::{Change, Snapshot};

use crate::error::StoreError;
use crate::naming::{
    bridge_network_id, bridge_subnet_id, dhcp_device_pod, dhcp_port_id, BRIDGE_OWNER,
    BRIDGE_PHYSNET, OWNER_BRIDGE_IP, OWNER_DHCP, OWNER_FLOATINGIP, OWNER_GATEWAY, OWNER_INTERFACE,
    OWNER_LEG,
};
use crate::store::changes::{ChangeKind, ChangeRow};
use crate::store::failover::PlacementKind;
use crate::store::l3::{FloatingIp, Router};
use crate::store::{Network, Pod, Port, Scope, SecurityGroup, Segment, Store, Subnet};

/// Everything the planner needs, as rows and as the planner's snapshot.
#[derive(Debug, Clone)]
pub struct Intent {
    /// The planner's snapshot, derived from the rows below.
    pub snapshot: Snapshot,
    /// The snapshot by project and network, for scoped re-plans: kept with it by every edit
    /// of its indexed lists (they change only through the index's methods).
    pub index: planner::ScopeIndex,
    /// Ports by id (all of them).
    pub ports: BTreeMap<String, Port>,
    /// Routers by id.
    pub routers: BTreeMap<String, Router>,
    /// Floating IPs by id.
    pub floatingips: BTreeMap<String, FloatingIp>,
    /// Networks by id.
    pub networks: BTreeMap<String, Network>,
    /// Subnets by id.
    pub subnets: BTreeMap<String, Subnet>,
    /// Registered nodes by name.
    nodes: BTreeMap<String, wire::NodeRegistration>,
    /// Pods by region name.
    pods: BTreeMap<String, Pod>,
    /// Bridge /24 by project.
    bridge_cidrs: BTreeMap<String, Ipv4Net>,
    /// network → pod → pod-local tag.
    local_tags: BTreeMap<String, BTreeMap<String, u16>>,
    /// device id → its ports (router and floating IP ports are found by their device).
    by_device: BTreeMap<String, BTreeSet<String>>,
    /// Security groups by id.
    security_groups: BTreeMap<String, SecurityGroup>,
    /// Nodes judged lost (router failover).
    lost: BTreeSet<String>,
    /// Sticky placements: (kind, router or network) → pod → node.
    placements: BTreeMap<(PlacementKind, String), BTreeMap<String, String>>,
}

/// One object as the store holds it now (`None`: deleted).
#[derive(Debug, Clone)]
pub enum Patch {
    /// A port.
    Port(String, Option<Port>),
    /// A router.
    Router(String, Option<Router>),
    /// A floating IP.
    FloatingIp(String, Option<FloatingIp>),
    /// A network.
    Network(String, Option<Network>),
    /// A subnet.
    Subnet(String, Option<Subnet>),
    /// A project's bridge /24.
    Project(String, Option<Ipv4Net>),
    /// A node's registration and whether it is judged lost.
    Node(String, Option<wire::NodeRegistration>, bool),
    /// The sticky placements of one router's instances or one network's DHCP servers.
    Placement(PlacementKind, String, BTreeMap<String, String>),
    /// Every pod.
    Pods(Vec<Pod>),
    /// The local tags of a network.
    LocalTags(String, BTreeMap<String, u16>),
    /// A security group with its rules.
    SecurityGroup(String, Option<SecurityGroup>),
}

fn missing<T>(r: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::Rule(a)) if a.class == crate::error::ErrorClass::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn port_key(p: &Port) -> (&str, &str) {
    (p.created_at.as_str(), p.id.as_str())
}

/// The project of a bridge network, from its name (`bridge-net-<project>`).
fn bridge_project(n: &Network) -> Option<&str> {
    (n.project_id == BRIDGE_OWNER)
        .then(|| n.name.strip_prefix("bridge-net-"))
        .flatten()
}

fn planner_network(n: &Network) -> planner::Network {
    let (network_type, physnet, segmentation_id) = match &n.segment {
        Segment::Local => (planner::NetworkType::Local, None, None),
        Segment::Vlan { physnet, id } => {
            (planner::NetworkType::Vlan, Some(physnet.clone()), Some(*id))
        }
        Segment::Flat { physnet } => (planner::NetworkType::Flat, Some(physnet.clone()), None),
        Segment::Vxlan { .. } => (planner::NetworkType::Vxlan, None, None),
    };
    let vni = match &n.segment {
        Segment::Vxlan { vni } => Some(*vni),
        _ => None,
    };
    planner::Network {
        id: n.id.clone(),
        project_id: n.project_id.clone(),
        network_type,
        physnet,
        segmentation_id,
        vni,
        external: n.external,
        az_hints: n.az_hints.clone(),
        shared: n.shared,
        mtu: u16::try_from(n.mtu).ok().filter(|m| *m > 0),
    }
}

fn fixed(p: &Port) -> Vec<planner::FixedIp> {
    p.fixed_ips
        .iter()
        .map(|f| planner::FixedIp {
            subnet_id: f.subnet_id.clone(),
            ip_address: f.ip_address,
        })
        .collect()
}

fn planner_port(p: &Port) -> planner::Port {
    planner::Port {
        id: p.id.clone(),
        network_id: p.network_id.clone(),
        project_id: p.project_id.clone(),
        mac: p.mac_address.clone(),
        fixed_ips: fixed(p),
        device_owner: p.device_owner.clone(),
        device_id: p.device_id.clone(),
        binding_host: (!p.host_id.is_empty()).then(|| p.host_id.clone()),
        // The store keeps no `dns_name`: DHCP hands out no host name.
        hostname: None,
    }
}

/// A port's security as the planner sees it; `None` with port security off.
fn planner_port_security(p: &Port) -> Option<planner::PortSecurity> {
    if !p.port_security_enabled || p.project_id == BRIDGE_OWNER {
        return None;
    }
    Some(planner::PortSecurity {
        security_groups: p.security_groups.clone(),
        allowed_address_pairs: p
            .allowed_address_pairs
            .iter()
            .filter_map(|a| {
                let ip: IpNet = a
                    .ip_address
                    .parse()
                    .or_else(|_| a.ip_address.parse::<std::net::IpAddr>().map(IpNet::from))
                    .ok()?;
                Some((ip, a.mac_address.clone()))
            })
            .collect(),
    })
}

/// A group as the planner sees it: rules normalised to the wire's shape (protocol as a
/// number, ranges as u16), by id.
fn planner_group(g: &SecurityGroup) -> planner::SecurityGroup {
    let mut rules: Vec<wire::SecurityGroupRule> = g
        .rules
        .iter()
        .map(|r| wire::SecurityGroupRule {
            id: r.id.clone(),
            direction: if r.direction == "egress" {
                wire::Direction::Egress
            } else {
                wire::Direction::Ingress
            },
            ethertype: if r.ethertype == "IPv6" {
                wire::EtherType::IPv6
            } else {
                wire::EtherType::IPv4
            },
            // `icmp` in an IPv6 rule means ICMPv6, as Neutron's firewalls read it.
            protocol: r
                .protocol
                .as_deref()
                .and_then(crate::store::security_groups::protocol_number)
                .map(|n| {
                    if n == 1 && r.ethertype == "IPv6" {
                        58
                    } else {
                        n
                    }
                }),
            port_range_min: r.port_range_min.and_then(|v| u16::try_from(v).ok()),
            port_range_max: r.port_range_max.and_then(|v| u16::try_from(v).ok()),
            remote_ip_prefix: r
                .remote_ip_prefix
                .as_deref()
                .and_then(|p| p.parse::<IpNet>().ok())
                .map(|p| p.trunc()),
            remote_group_id: r.remote_group_id.clone(),
        })
        .collect();
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    planner::SecurityGroup {
        project_id: g.project_id.clone(),
        rules,
    }
}

fn planner_interface(p: &Port) -> Option<planner::RouterInterface> {
    // An interface by the store's relation only: a port merely naming a router in its
    // device_owner/device_id is not one.
    if p.device_owner != OWNER_INTERFACE
        || p.device_id.is_empty()
        || !p.is_interface_of(&p.device_id)
    {
        return None;
    }
    let f = p.fixed_ips.first()?;
    Some(planner::RouterInterface {
        router_id: p.device_id.clone(),
        subnet_id: f.subnet_id.clone(),
        port_id: p.id.clone(),
        ip_address: f.ip_address,
        mac: p.mac_address.clone(),
    })
}

fn planner_fip(f: &FloatingIp) -> Option<planner::FloatingIp> {
    Some(planner::FloatingIp {
        id: f.id.clone(),
        project_id: f.project_id.clone(),
        floating_network_id: f.floating_network_id.clone(),
        floating_ip_address: f.floating_ip_address.parse().ok()?,
        port_id: f.port_id.clone(),
        fixed_ip_address: f.fixed_ip_address.as_deref().and_then(|a| a.parse().ok()),
    })
}

/// Replace the element `id` of a vector sorted by id.
fn upsert_by_id<T>(v: &mut Vec<T>, id: &str, key: impl Fn(&T) -> &str, item: Option<T>) {
    match (v.binary_search_by(|x| key(x).cmp(id)), item) {
        (Ok(i), Some(item)) => v[i] = item,
        (Ok(i), None) => {
            v.remove(i);
        }
        (Err(i), Some(item)) => v.insert(i, item),
        (Err(_), None) => {}
    }
}

impl Intent {
    /// The pod `node` is registered in.
    pub fn node_pod(&self, node: &str) -> Option<&str> {
        self.nodes.get(node).map(|n| n.pod.as_str())
    }

    /// Every registered node with its pod (region name), by node name.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.nodes.iter().map(|(n, r)| (n.as_str(), r.pod.as_str()))
    }

    /// The pod of region `region`.
    pub fn pod(&self, region: &str) -> Option<&Pod> {
        self.pods.get(region)
    }

    fn empty() -> Intent {
        Intent {
            snapshot: Snapshot {
                bridge_physnet: BRIDGE_PHYSNET.into(),
                local_physnet: BRIDGE_PHYSNET.into(),
                ..Snapshot::default()
            },
            index: planner::ScopeIndex::default(),
            ports: BTreeMap::new(),
            routers: BTreeMap::new(),
            floatingips: BTreeMap::new(),
            networks: BTreeMap::new(),
            subnets: BTreeMap::new(),
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            bridge_cidrs: BTreeMap::new(),
            local_tags: BTreeMap::new(),
            by_device: BTreeMap::new(),
            security_groups: BTreeMap::new(),
            lost: BTreeSet::new(),
            placements: BTreeMap::new(),
        }
    }

    /// Reads the whole intent.
    pub async fn load(store: &Store) -> Result<Intent, StoreError> {
        let all = Scope::default();
        let mut i = Intent::empty();
        i.pods = store
            .list_pods()
            .await?
            .into_iter()
            .map(|p| (p.region_name.clone(), p))
            .collect();
        let agents = store.list_agents().await?;
        i.lost = agents
            .iter()
            .filter(|a| a.lost)
            .map(|a| a.node.clone())
            .collect();
        i.nodes = agents
            .into_iter()
            .map(|a| (a.node.clone(), a.registration))
            .collect();
        for p in store.list_placements().await? {
            i.placements
                .entry((p.kind, p.object_id))
                .or_default()
                .insert(p.pod, p.node);
        }
        i.networks = store
            .list_networks(&all)
            .await?
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        i.subnets = store
            .list_subnets(&all)
            .await?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        i.ports = store
            .list_ports(&all, None)
            .await?
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect();
        i.routers = store
            .list_routers(None)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        i.floatingips = store
            .list_floatingips(None)
            .await?
            .into_iter()
            .map(|f| (f.id.clone(), f))
            .collect();
        i.bridge_cidrs = store.list_bridge_subnets().await?.into_iter().collect();
        i.security_groups = store
            .list_security_groups(&all)
            .await?
            .into_iter()
            .map(|g| (g.id.clone(), g))
            .collect();
        for (net, pod, tag) in store.local_tags().await? {
            i.local_tags.entry(net).or_default().insert(pod, tag);
        }
        for p in i.ports.values() {
            if !p.device_id.is_empty() {
                i.by_device
                    .entry(p.device_id.clone())
                    .or_default()
                    .insert(p.id.clone());
            }
        }
        i.rebuild();
        Ok(i)
    }

    /// Derive the whole snapshot from the rows.
    fn rebuild(&mut self) {
        let s = &mut self.snapshot;
        s.pods = self.pods.values().map(planner_pod).collect();
        s.nodes = self
            .nodes
            .values()
            .map(|r| planner::Node {
                lost: self.lost.contains(&r.node),
                ..planner::Node::from(r)
            })
            .collect();
        s.networks = self
            .networks
            .values()
            .filter(|n| n.project_id != BRIDGE_OWNER)
            .map(planner_network)
            .collect();
        s.subnets = self
            .subnets
            .values()
            .filter(|x| x.project_id != BRIDGE_OWNER)
            .map(planner_subnet)
            .collect();
        let mut ports: Vec<&Port> = self.ports.values().collect();
        ports.sort_by(|a, b| port_key(a).cmp(&port_key(b)));
        s.ports = ports
            .iter()
            .filter(|p| p.project_id != BRIDGE_OWNER)
            .map(|p| planner_port(p))
            .collect();
        s.router_interfaces = ports.iter().filter_map(|p| planner_interface(p)).collect();
        s.floating_ips = self.floatingips.values().filter_map(planner_fip).collect();
        s.port_security = self
            .ports
            .values()
            .filter_map(|p| Some((p.id.clone(), planner_port_security(p)?)))
            .collect();
        s.security_groups = self
            .security_groups
            .values()
            .map(|g| (g.id.clone(), planner_group(g)))
            .collect();
        s.allocations = planner::Allocations::default();
        let ids: Vec<String> = self.routers.keys().cloned().collect();
        self.snapshot.routers.clear();
        // Indexed once the lists are whole (below); until then it indexes nothing.
        self.index = planner::ScopeIndex::default();
        for id in ids {
            self.derive_router(&id);
        }
        for p in self.ports.values() {
            port_allocations(&mut self.snapshot.allocations, p, true);
        }
        let projects: Vec<String> = self
            .networks
            .values()
            .filter_map(bridge_project)
            .map(str::to_string)
            .collect();
        for p in projects {
            self.derive_bridge(&p);
        }
        let nets: Vec<String> = self.local_tags.keys().cloned().collect();
        for n in nets {
            self.derive_local_tags(&n);
        }
        let held: Vec<(PlacementKind, String)> = self.placements.keys().cloned().collect();
        for (kind, id) in held {
            self.derive_placements(kind, &id);
        }
        self.index = planner::ScopeIndex::build(&self.snapshot);
    }

    /// Re-read the object a change-log entry names.
    pub async fn refresh(store: &Store, row: &ChangeRow) -> Result<Patch, StoreError> {
        let id = row.object_id.clone();
        Ok(match row.kind {
            ChangeKind::Port => Patch::Port(id.clone(), missing(store.get_port(&id).await)?),
            ChangeKind::Router => Patch::Router(id.clone(), missing(store.get_router(&id).await)?),
            ChangeKind::FloatingIp => {
                Patch::FloatingIp(id.clone(), missing(store.get_floatingip(&id).await)?)
            }
            ChangeKind::Network => {
                Patch::Network(id.clone(), missing(store.get_network(&id).await)?)
            }
            ChangeKind::Subnet => Patch::Subnet(id.clone(), missing(store.get_subnet(&id).await)?),
            ChangeKind::Project => Patch::Project(id.clone(), store.bridge_subnet_of(&id).await?),
            ChangeKind::Node => {
                let a = store.get_agent(&id).await?;
                let lost = a.as_ref().is_some_and(|a| a.lost);
                Patch::Node(id.clone(), a.map(|a| a.registration), lost)
            }
            ChangeKind::Placement => {
                let Some((kind, object)) = PlacementKind::parse_log_id(&id) else {
                    return Err(crate::error::DomainError::internal(format!(
                        "a placement change names {id}"
                    ))
                    .into());
                };
                let rows = store.placements_of(kind, object).await?;
                Patch::Placement(
                    kind,
                    object.to_string(),
                    rows.into_iter().map(|(pod, r)| (pod, r.node)).collect(),
                )
            }
            ChangeKind::Pod => Patch::Pods(store.list_pods().await?),
            ChangeKind::LocalTag => {
                let tags = store.local_tags_of(&id).await?;
                Patch::LocalTags(id, tags.into_iter().collect())
            }
            ChangeKind::SecurityGroup => {
                Patch::SecurityGroup(id.clone(), missing(store.get_security_group(&id).await)?)
            }
        })
    }

    /// Patch the rows and the snapshot; returns the planner changes to re-plan.
    pub fn apply(&mut self, patch: &Patch) -> Vec<Change> {
        let mut out = Vec::new();
        match patch {
            Patch::Port(id, new) => self.apply_port(id, new.as_ref(), &mut out),
            Patch::Router(id, new) => {
                match new {
                    Some(r) => self.routers.insert(id.clone(), r.clone()),
                    None => self.routers.remove(id),
                };
                self.derive_router(id);
                out.push(Change::Router(id.clone()));
            }
            Patch::FloatingIp(id, new) => {
                match new {
                    Some(f) => self.floatingips.insert(id.clone(), f.clone()),
                    None => self.floatingips.remove(id),
                };
                let item = new.as_ref().and_then(planner_fip);
                self.index.upsert_floating_ip(&mut self.snapshot, id, item);
                out.push(Change::FloatingIp(id.clone()));
            }
            Patch::Network(id, new) => {
                let old = match new {
                    Some(n) => self.networks.insert(id.clone(), n.clone()),
                    None => self.networks.remove(id),
                };
                if new.is_none() {
                    // Its subnets and local tags went with it (ON DELETE CASCADE).
                    let subs: Vec<String> = self
                        .subnets
                        .values()
                        .filter(|s| &s.network_id == id)
                        .map(|s| s.id.clone())
                        .collect();
                    for s in subs {
                        self.apply_subnet(&s, None, &mut out);
                    }
                    self.local_tags.remove(id);
                }
                let bridge = new
                    .as_ref()
                    .or(old.as_ref())
                    .and_then(bridge_project)
                    .map(str::to_string);
                match bridge {
                    Some(project) => {
                        self.derive_bridge(&project);
                        out.push(Change::Project(project));
                    }
                    None => {
                        let item = new
                            .as_ref()
                            .filter(|n| n.project_id != BRIDGE_OWNER)
                            .map(planner_network);
                        self.index.upsert_network(&mut self.snapshot, id, item);
                        self.derive_local_tags(id);
                        out.push(Change::Network(id.clone()));
                    }
                }
            }
            Patch::Subnet(id, new) => self.apply_subnet(id, new.as_ref(), &mut out),
            Patch::Project(project, cidr) => {
                match cidr {
                    Some(c) => self.bridge_cidrs.insert(project.clone(), *c),
                    None => self.bridge_cidrs.remove(project),
                };
                self.derive_bridge(project);
                out.push(Change::Project(project.clone()));
            }
            Patch::Node(name, reg, lost) => {
                match reg {
                    Some(r) => self.nodes.insert(name.clone(), r.clone()),
                    None => self.nodes.remove(name),
                };
                if *lost && reg.is_some() {
                    self.lost.insert(name.clone());
                } else {
                    self.lost.remove(name);
                }
                let item = reg.as_ref().map(|r| planner::Node {
                    lost: *lost,
                    ..planner::Node::from(r)
                });
                upsert_by_id(&mut self.snapshot.nodes, name, |n| &n.name, item);
                out.push(Change::Node(name.clone()));
            }
            Patch::Placement(kind, id, held) => {
                let key = (*kind, id.clone());
                if held.is_empty() {
                    self.placements.remove(&key);
                } else {
                    self.placements.insert(key, held.clone());
                }
                // Nothing to re-plan: the planner wrote what it had already chosen from the
                // same snapshot (a held node is kept only when it is the one it would choose).
                self.derive_placements(*kind, id);
            }
            Patch::Pods(pods) => {
                self.pods = pods
                    .iter()
                    .map(|p| (p.region_name.clone(), p.clone()))
                    .collect();
                self.snapshot.pods = self.pods.values().map(planner_pod).collect();
                out.push(Change::Pod(String::new()));
            }
            Patch::LocalTags(net, tags) => {
                if tags.is_empty() {
                    self.local_tags.remove(net);
                } else {
                    self.local_tags.insert(net.clone(), tags.clone());
                }
                match self
                    .networks
                    .get(net)
                    .and_then(bridge_project)
                    .map(str::to_string)
                {
                    Some(project) => {
                        self.derive_bridge(&project);
                        out.push(Change::Project(project));
                    }
                    None => {
                        self.derive_local_tags(net);
                        out.push(Change::Network(net.clone()));
                    }
                }
            }
            Patch::SecurityGroup(id, new) => {
                match new {
                    Some(g) => {
                        self.security_groups.insert(id.clone(), g.clone());
                        self.snapshot
                            .security_groups
                            .insert(id.clone(), planner_group(g));
                    }
                    None => {
                        self.security_groups.remove(id);
                        self.snapshot.security_groups.remove(id);
                    }
                }
                out.push(Change::SecurityGroup(id.clone()));
            }
        }
        out
    }

    fn apply_subnet(&mut self, id: &str, new: Option<&Subnet>, out: &mut Vec<Change>) {
        let old = match new {
            Some(s) => self.subnets.insert(id.to_string(), s.clone()),
            None => self.subnets.remove(id),
        };
        let Some(any) = new.or(old.as_ref()) else {
            return;
        };
        if any.project_id == BRIDGE_OWNER {
            let project = self
                .networks
                .get(&any.network_id)
                .and_then(bridge_project)
                .map(str::to_string)
                .or_else(|| any.name.strip_prefix("bridge-subnet-").map(str::to_string));
            if let Some(p) = project {
                self.derive_bridge(&p);
                out.push(Change::Project(p));
            }
            return;
        }
        self.index
            .upsert_subnet(&mut self.snapshot, id, new.map(planner_subnet));
        out.push(Change::Subnet(id.to_string()));
    }

    /// Where port `n` belongs in `snapshot.ports` (creation order): the first place whose port
    /// was created after it.
    fn place_of_port(&self, n: &Port) -> usize {
        let key = port_key(n);
        self.snapshot
            .ports
            .partition_point(|p| self.ports.get(&p.id).is_some_and(|x| port_key(x) < key))
    }

    fn apply_port(&mut self, id: &str, new: Option<&Port>, out: &mut Vec<Change>) {
        let old = self.ports.get(id).cloned();
        // A later state of a port the snapshot holds takes its place there (its place in
        // creation order stays): a removal and an insertion each moved every later port of
        // the cloud, most of applying a binding move.
        let in_place = match (&old, new) {
            (Some(o), Some(n))
                if o.project_id != BRIDGE_OWNER
                    && n.project_id != BRIDGE_OWNER
                    && port_key(o) == port_key(n) =>
            {
                let at = self.place_of_port(n);
                self.index
                    .replace_port(&mut self.snapshot, at, planner_port(n))
                    .is_some()
            }
            _ => false,
        };
        // Old contributions out.
        if let Some(o) = &old {
            if !in_place {
                self.index.remove_port(&mut self.snapshot, &o.id);
            }
            self.index
                .remove_interfaces_of_port(&mut self.snapshot, &o.id);
            port_allocations(&mut self.snapshot.allocations, o, false);
            self.snapshot.port_security.remove(&o.id);
            if let Some(set) = self.by_device.get_mut(&o.device_id) {
                set.remove(&o.id);
                if set.is_empty() {
                    self.by_device.remove(&o.device_id);
                }
            }
            self.ports.remove(id);
        }
        // New ones in, at their place in creation order.
        if let Some(n) = new {
            self.ports.insert(id.to_string(), n.clone());
            if !n.device_id.is_empty() {
                self.by_device
                    .entry(n.device_id.clone())
                    .or_default()
                    .insert(n.id.clone());
            }
            let key = port_key(n);
            if n.project_id != BRIDGE_OWNER && !in_place {
                let at = self.place_of_port(n);
                self.index
                    .insert_port(&mut self.snapshot, at, planner_port(n));
            }
            if let Some(iface) = planner_interface(n) {
                let ports = &self.ports;
                let at = self
                    .snapshot
                    .router_interfaces
                    .partition_point(|i| ports.get(&i.port_id).is_some_and(|x| port_key(x) < key));
                self.index.insert_interface(&mut self.snapshot, at, iface);
            }
            port_allocations(&mut self.snapshot.allocations, n, true);
            if let Some(sec) = planner_port_security(n) {
                self.snapshot.port_security.insert(n.id.clone(), sec);
            }
        }
        // Which planner objects that touched.
        let mut devices: BTreeSet<(&str, &str)> = BTreeSet::new();
        for p in old.iter().chain(new) {
            if !p.device_id.is_empty() {
                devices.insert((p.device_owner.as_str(), p.device_id.as_str()));
            }
        }
        let mut plain = false;
        for p in old.iter().chain(new) {
            match p.device_owner.as_str() {
                OWNER_INTERFACE | OWNER_GATEWAY | OWNER_LEG | OWNER_BRIDGE_IP
                    if !p.device_id.is_empty() => {}
                OWNER_FLOATINGIP if !p.device_id.is_empty() => {}
                _ if p.project_id != BRIDGE_OWNER => plain = true,
                _ => {}
            }
        }
        let routers: Vec<String> = devices
            .iter()
            .filter(|(o, _)| {
                matches!(
                    *o,
                    OWNER_INTERFACE | OWNER_GATEWAY | OWNER_LEG | OWNER_BRIDGE_IP
                )
            })
            .map(|(_, d)| d.to_string())
            .collect();
        let fips: Vec<String> = devices
            .iter()
            .filter(|(o, _)| *o == OWNER_FLOATINGIP)
            .map(|(_, d)| d.to_string())
            .collect();
        for r in routers {
            self.derive_router(&r);
            out.push(Change::Router(r));
        }
        for f in fips {
            out.push(Change::FloatingIp(f));
        }
        if plain {
            out.push(Change::Port(id.to_string()));
        }
    }

    /// The gateway port of a router: its oldest port with owner `network:router_gateway` (the
    /// one the planner uses, the API shows and the router service replaces).
    pub fn gateway_port(&self, router: &str) -> Option<&Port> {
        self.by_device
            .get(router)?
            .iter()
            .filter_map(|id| self.ports.get(id))
            .filter(|p| p.device_owner == OWNER_GATEWAY)
            .min_by(|a, b| port_key(a).cmp(&port_key(b)))
    }

    fn derive_router(&mut self, id: &str) {
        let item = self.routers.get(id).map(|r| planner::Router {
            id: r.id.clone(),
            project_id: r.project_id.clone(),
            az_hints: r.az_hints.clone(),
            external_gateway: r.gateway.as_ref().and_then(|g| {
                self.gateway_port(&r.id).map(|p| planner::ExternalGateway {
                    network_id: g.network_id.clone(),
                    enable_snat: g.enable_snat,
                    external_fixed_ips: fixed(p),
                })
            }),
            routes: r
                .routes
                .iter()
                .filter_map(|rt| {
                    Some(planner::UserRoute {
                        destination: rt.destination.parse().ok()?,
                        nexthop: rt.nexthop.parse().ok()?,
                    })
                })
                .collect(),
        });
        self.index.upsert_router(&mut self.snapshot, id, item);
    }

    /// A project's bridge network, when its network, subnet and /24 are all there.
    fn derive_bridge(&mut self, project: &str) {
        let net = self.networks.get(&bridge_network_id(project));
        let whole = match (
            net.map(|n| &n.segment),
            self.bridge_cidrs.get(project),
            self.subnets.contains_key(&bridge_subnet_id(project)),
        ) {
            (Some(Segment::Vlan { id, .. }), Some(cidr), true) => Some(planner::BridgeNetwork {
                vlan: *id,
                cidr: IpNet::V4(*cidr),
                vni: None,
            }),
            (Some(Segment::Vxlan { vni }), Some(cidr), true) => Some(planner::BridgeNetwork {
                vlan: 0,
                cidr: IpNet::V4(*cidr),
                vni: Some(*vni),
            }),
            _ => None,
        };
        let a = &mut self.snapshot.allocations.bridge_networks;
        match whole {
            Some(b) => {
                a.insert(project.to_string(), b);
            }
            None => {
                a.remove(project);
            }
        }
        // Its VxLAN tags per pod are the local tags of the bridge network's row.
        let net_id = bridge_network_id(project);
        let tags = self
            .networks
            .contains_key(&net_id)
            .then(|| self.local_tags.get(&net_id))
            .flatten()
            .cloned()
            .unwrap_or_default();
        let a = &mut self.snapshot.allocations.bridge_tags;
        if tags.is_empty() {
            a.remove(project);
        } else {
            a.insert(project.to_string(), tags);
        }
    }

    /// The planner's view of one object's sticky placements.
    fn derive_placements(&mut self, kind: PlacementKind, id: &str) {
        let a = &mut self.snapshot.allocations;
        let m = match kind {
            PlacementKind::Router => &mut a.router_nodes,
            PlacementKind::Dhcp => &mut a.dhcp_nodes,
        };
        match self.placements.get(&(kind, id.to_string())) {
            Some(held) => {
                m.insert(id.to_string(), held.clone());
            }
            None => {
                m.remove(id);
            }
        }
    }

    fn derive_local_tags(&mut self, net: &str) {
        let a = &mut self.snapshot.allocations.local_tags;
        a.remove(net);
        // A bridge network's tags are its project's (see `derive_bridge`).
        if self
            .networks
            .get(net)
            .is_none_or(|n| bridge_project(n).is_some())
        {
            return;
        }
        if let Some(tags) = self.local_tags.get(net) {
            for (pod, tag) in tags {
                self.snapshot.allocations.set_local_tag(net, pod, *tag);
            }
        }
    }

    /// The planner's view of a router.
    pub fn planner_router(&self, id: &str) -> Option<&planner::Router> {
        let i = self
            .snapshot
            .routers
            .binary_search_by(|r| r.id.as_str().cmp(id))
            .ok()?;
        self.snapshot.routers.get(i)
    }

    /// Ports of a device (router or floating IP).
    pub fn ports_of(&self, device: &str) -> impl Iterator<Item = &Port> {
        self.by_device
            .get(device)
            .into_iter()
            .flatten()
            .filter_map(|id| self.ports.get(id))
    }
}

fn planner_pod(p: &Pod) -> planner::Pod {
    planner::Pod {
        region_name: p.region_name.clone(),
        az_name: (!p.az_name.is_empty()).then(|| p.az_name.clone()),
    }
}

fn planner_subnet(s: &Subnet) -> planner::Subnet {
    planner::Subnet {
        id: s.id.clone(),
        network_id: s.network_id.clone(),
        cidr: s.cidr,
        gateway_ip: s.gateway_ip,
        ip_version: u8::try_from(s.ip_version).unwrap_or(0),
        enable_dhcp: s.enable_dhcp,
        ipv6_ra_mode: s.ipv6_ra_mode,
        ipv6_address_mode: s.ipv6_address_mode,
        // Validated on the way in; anything unreadable is left out rather than guessed.
        dns_nameservers: s
            .dns_nameservers
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect(),
        host_routes: s
            .host_routes
            .iter()
            .filter_map(|r| {
                Some(planner::UserRoute {
                    destination: r.destination.parse().ok()?,
                    nexthop: r.nexthop.parse().ok()?,
                })
            })
            .collect(),
    }
}

/// Add (or remove) the bridge IP / leg IP a port stands for, with the port's MAC: the leg it
/// backs uses it, so the store's MAC uniqueness covers every leg.
fn port_allocations(a: &mut planner::Allocations, p: &Port, add: bool) {
    if p.device_owner == OWNER_DHCP {
        dhcp_allocation(a, p, add);
        return;
    }
    let Some(f) = p.fixed_ips.first() else {
        return;
    };
    match (p.device_owner.as_str(), add) {
        (OWNER_BRIDGE_IP, true) => {
            a.set_bridge_ip(&p.device_id, &p.name, f.ip_address, &p.mac_address)
        }
        (OWNER_BRIDGE_IP, false) => {
            if let Some(m) = a.bridge_ips.get_mut(&p.device_id) {
                m.remove(&p.name);
                if m.is_empty() {
                    a.bridge_ips.remove(&p.device_id);
                }
            }
        }
        (OWNER_LEG, true) => a.set_leg_ip(
            &p.device_id,
            &p.name,
            &f.subnet_id,
            f.ip_address,
            &p.mac_address,
        ),
        (OWNER_LEG, false) => {
            if let Some(pods) = a.leg_ips.get_mut(&p.device_id) {
                if let Some(subs) = pods.get_mut(&p.name) {
                    subs.remove(&f.subnet_id);
                    if subs.is_empty() {
                        pods.remove(&p.name);
                    }
                }
                if pods.is_empty() {
                    a.leg_ips.remove(&p.device_id);
                }
            }
        }
        _ => {}
    }
}

/// A network's DHCP port of a pod: only the one under the derived id of the pod its device id
/// names (a port a user made with that owner is just a port).
fn dhcp_allocation(a: &mut planner::Allocations, p: &Port, add: bool) {
    let Some(pod) = dhcp_device_pod(&p.device_id, &p.network_id) else {
        return;
    };
    if p.id != dhcp_port_id(&p.network_id, pod) {
        return;
    }
    let port = add.then(|| planner::DhcpPort {
        port_id: p.id.clone(),
        mac: p.mac_address.clone(),
        ips: p
            .fixed_ips
            .iter()
            .map(|f| (f.subnet_id.clone(), f.ip_address))
            .collect(),
    });
    a.set_dhcp_port(&p.network_id, pod, port);
}
