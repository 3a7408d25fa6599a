//! Port security in a node's desired state: each VM port's allowed sources, groups and
//! conntrack zone ([`port_security`]), and the groups the node enforces with the members of
//! the remote groups their rules name ([`fill_groups`]).
//!
//! `NodeDesiredState::security_groups` is a pure function of the node's port bindings and the
//! snapshot's groups and members, so the incremental planner derives it again after patching
//! the ports instead of patching it: full and incremental plans agree by construction.
//! Groups of bound ports carry their rules; a group that is only some rule's remote group
//! carries its members and no rules (nothing on the node is filtered by it).
//!
//! A rule's remote group is always of the rule's project (the controller refuses others), so a
//! change to a group, its rules or a member port concerns one project: the incremental scope.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use ipnet::IpNet;
use wire::{AllowedAddress, NodeDesiredState, PortSecurity};

use crate::fxhash::FxMap;
use crate::snapshot::{Node, Port};
use crate::topology::Topology;

/// Indexes of the snapshot's security groups (not the scope's: members live in every pod),
/// built as far as they are asked for. Owned, so the topology stays covariant in its lifetime.
///
/// A group's members are ports of the group's project: the controller refuses another
/// project's group on a port, and the lookups here go through the group's project, so a port
/// naming a foreign group (which the API cannot store) is nobody's member either way.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Remote group → the groups whose rules name it (groups are few: one scan).
    referrers: std::cell::OnceCell<FxMap<String, BTreeSet<String>>>,
    /// Project → its ports by group, built on the first question about one of its groups:
    /// from the topology's [`ScopeIndex`] when it has one (the project's ports only), else
    /// for every project in one scan of the snapshot's ports.
    projects: std::cell::RefCell<FxMap<String, Rc<ProjectIndex>>>,
    /// Whether that one scan was made.
    scanned: std::cell::Cell<bool>,
    /// Members of the remote groups asked for so far (each node naming a group reuses them).
    members: std::cell::RefCell<FxMap<String, BTreeSet<IpNet>>>,
}

/// One project's ports with port security, by group.
#[derive(Debug, Default)]
struct ProjectIndex {
    /// Group → positions in `snap.ports` of the ports in it.
    ports_by_group: FxMap<String, Vec<usize>>,
    /// Group → nodes where a bound VM port in it may be planned.
    nodes_by_group: FxMap<String, BTreeSet<String>>,
}

impl ProjectIndex {
    fn add(&mut self, i: usize, p: &Port, sec: &crate::snapshot::PortSecurity) {
        for g in &sec.security_groups {
            self.ports_by_group.entry(g.clone()).or_default().push(i);
            if let (true, Some(h)) = (p.is_vm_port(), &p.binding_host) {
                self.nodes_by_group
                    .entry(g.clone())
                    .or_default()
                    .insert(h.clone());
            }
        }
    }
}

fn index<'t>(t: &'t Topology<'_>) -> &'t Index {
    t.security.get_or_init(Index::default)
}

fn referrers<'t>(t: &'t Topology<'_>) -> &'t FxMap<String, BTreeSet<String>> {
    index(t).referrers.get_or_init(|| {
        let mut out: FxMap<String, BTreeSet<String>> = FxMap::default();
        for (gid, g) in &t.snap.security_groups {
            for r in &g.rules {
                if let Some(remote) = &r.remote_group_id {
                    out.entry(remote.clone()).or_default().insert(gid.clone());
                }
            }
        }
        out
    })
}

/// The index of the project owning group `g` (`None` when `g` does not exist).
fn group_index(t: &Topology<'_>, g: &str) -> Option<Rc<ProjectIndex>> {
    let snap = t.snap;
    let project = snap.security_groups.get(g)?.project_id.as_str();
    let ix = index(t);
    if let Some(pi) = ix.projects.borrow().get(project) {
        return Some(Rc::clone(pi));
    }
    let mut projects = ix.projects.borrow_mut();
    match t.scope_index {
        Some(scope) => {
            let mut pi = ProjectIndex::default();
            for i in scope.ports_of_project(project) {
                let Some(p) = snap.ports.get(i) else { continue };
                if let Some(sec) = snap.port_security.get(&p.id) {
                    pi.add(i, p, sec);
                }
            }
            // Snapshot order, as the scan gives (VM ports came first above).
            for v in pi.ports_by_group.values_mut() {
                v.sort_unstable();
            }
            projects.insert(project.to_string(), Rc::new(pi));
        }
        None if !ix.scanned.get() => {
            ix.scanned.set(true);
            let mut all: FxMap<&str, ProjectIndex> = FxMap::default();
            if !snap.port_security.is_empty() {
                for (i, p) in snap.ports.iter().enumerate() {
                    if let Some(sec) = snap.port_security.get(&p.id) {
                        all.entry(p.project_id.as_str()).or_default().add(i, p, sec);
                    }
                }
            }
            projects.extend(all.into_iter().map(|(k, v)| (k.to_string(), Rc::new(v))));
        }
        None => {}
    }
    Some(Rc::clone(projects.entry(project.to_string()).or_default()))
}

/// The conntrack zone of a network on a node: `(i << 12) | tag`, where `i` is the position of
/// the network's OVS bridge among the node's bridges (sorted by name) and `tag` its VLAN tag on
/// that bridge, 4095 for the flat network (VLAN 4095 is never a network's). A bridge carries
/// each VLAN tag once and at most one flat network, so two networks on one node never share a
/// zone (for up to 16 bridges), the zone is never 0 (the default zone), and it stays the same
/// while the node's bridge mappings and the network's tag do.
pub fn ct_zone(bridge_mappings: &BTreeMap<String, String>, bridge: &str, tag: Option<u16>) -> u16 {
    let bridges: BTreeSet<&str> = bridge_mappings.values().map(String::as_str).collect();
    let i = bridges.iter().position(|b| *b == bridge).unwrap_or(0) as u16;
    ((i & 0xf) << 12) | (tag.unwrap_or(4095) & 0xfff)
}

/// The port security of a VM port bound on `node` (on `bridge` with `tag`); `None` when the
/// port has port security off.
pub(crate) fn port_security(
    t: &Topology<'_>,
    port: &Port,
    node: &Node,
    bridge: &str,
    tag: Option<u16>,
) -> Option<PortSecurity> {
    let sec = t.snap.port_security.get(&port.id)?;
    let mut allowed: Vec<AllowedAddress> = port
        .fixed_ips
        .iter()
        .map(|f| AllowedAddress {
            mac: port.mac.clone(),
            ip: IpNet::from(f.ip_address),
        })
        .chain(
            sec.allowed_address_pairs
                .iter()
                .map(|(ip, mac)| AllowedAddress {
                    mac: mac.clone().unwrap_or_else(|| port.mac.clone()),
                    ip: *ip,
                }),
        )
        .collect();
    allowed.sort();
    allowed.dedup();
    let mut security_groups: Vec<String> = sec
        .security_groups
        .iter()
        .filter(|g| t.snap.security_groups.contains_key(*g))
        .cloned()
        .collect();
    security_groups.sort();
    security_groups.dedup();
    Some(PortSecurity {
        allowed,
        security_groups,
        ct_zone: ct_zone(&node.bridge_mappings, bridge, tag),
    })
}

/// The addresses of every port in group `g`: fixed IPs as host prefixes, and allowed pairs
/// (computed once per topology).
fn members(t: &Topology<'_>, g: &str) -> BTreeSet<IpNet> {
    let ix = index(t);
    if let Some(m) = ix.members.borrow().get(g) {
        return m.clone();
    }
    let m = compute_members(t, g);
    ix.members.borrow_mut().insert(g.to_string(), m.clone());
    m
}

fn compute_members(t: &Topology<'_>, g: &str) -> BTreeSet<IpNet> {
    let mut out = BTreeSet::new();
    let Some(pi) = group_index(t, g) else {
        return out;
    };
    let ports = pi.ports_by_group.get(g).into_iter().flatten();
    for p in ports.filter_map(|i| t.snap.ports.get(*i)) {
        out.extend(p.fixed_ips.iter().map(|f| IpNet::from(f.ip_address)));
        if let Some(sec) = t.snap.port_security.get(&p.id) {
            out.extend(sec.allowed_address_pairs.iter().map(|(ip, _)| *ip));
        }
    }
    out
}

/// Derive `state.security_groups` from its ports' groups: each group with its rules, and each
/// remote group a rule names with its members.
pub(crate) fn fill_groups(t: &Topology<'_>, state: &mut NodeDesiredState) {
    state.security_groups = groups_for(t, &state.ports);
}

/// The groups (rules, and members of the remote groups those rules name) that `ports` need.
pub(crate) fn groups_for(
    t: &Topology<'_>,
    ports: &BTreeMap<String, wire::PortBinding>,
) -> BTreeMap<String, wire::SecurityGroup> {
    let mut groups: BTreeMap<String, wire::SecurityGroup> = BTreeMap::new();
    let mut remotes: BTreeSet<&str> = BTreeSet::new();
    for b in ports.values() {
        for g in b.security.iter().flat_map(|s| s.security_groups.iter()) {
            let Some(sg) = t.snap.security_groups.get(g) else {
                continue;
            };
            if groups.contains_key(g) {
                continue;
            }
            remotes.extend(sg.rules.iter().filter_map(|r| r.remote_group_id.as_deref()));
            groups.insert(
                g.clone(),
                wire::SecurityGroup {
                    rules: sg.rules.clone(),
                    members: BTreeSet::new(),
                },
            );
        }
    }
    for r in remotes {
        if !t.snap.security_groups.contains_key(r) {
            continue;
        }
        let m = members(t, r);
        groups.entry(r.to_string()).or_default().members = m;
    }
    groups
}

fn extend_nodes<'a>(t: &Topology<'a>, g: &str, out: &mut BTreeSet<&'a str>) {
    let Some(pi) = group_index(t, g) else {
        return;
    };
    for n in pi.nodes_by_group.get(g).into_iter().flatten() {
        if let Some((name, _)) = t.nodes.get_key_value(n.as_str()) {
            out.insert(name);
        }
    }
}

/// Nodes a change of group `g` (its rules, or its existence) may affect: those with a port in
/// it, and those with a port in a group whose rules name it.
pub(crate) fn group_nodes<'a>(t: &Topology<'a>, g: &str, out: &mut BTreeSet<&'a str>) {
    extend_nodes(t, g, out);
    if let Some(refs) = referrers(t).get(g) {
        for r in refs {
            extend_nodes(t, r, out);
        }
    }
}

/// Nodes where port `id`'s addresses are remote-group members: those with a port in a group
/// whose rules name one of the port's groups.
pub(crate) fn membership_nodes<'a>(t: &Topology<'a>, id: &str, out: &mut BTreeSet<&'a str>) {
    let Some(sec) = t.snap.port_security.get(id) else {
        return;
    };
    let refs = referrers(t);
    for g in &sec.security_groups {
        for r in refs.get(g).into_iter().flatten() {
            extend_nodes(t, r, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_zones_are_unique_per_network_on_a_node() {
        let mappings: BTreeMap<String, String> = [
            ("bridge", "br-vlan"),
            ("extern", "br-ext"),
            ("phys2", "br-phys2"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        // Every (bridge, tag) a node can hold: VLANs 1..=4094 and the flat one per bridge.
        let mut seen = BTreeSet::new();
        for b in ["br-vlan", "br-ext", "br-phys2"] {
            for tag in (1..=4094).map(Some).chain([None]) {
                let z = ct_zone(&mappings, b, tag);
                assert_ne!(z, 0, "zone 0 is the default zone");
                assert!(seen.insert(z), "zone {z} of {b}/{tag:?} taken twice");
            }
        }
        // Stable: another physnet added after (by bridge name) leaves earlier bridges' zones.
        let mut more = mappings.clone();
        more.insert("zz".into(), "br-zz".into());
        assert_eq!(
            ct_zone(&mappings, "br-vlan", Some(7)),
            ct_zone(&more, "br-vlan", Some(7))
        );
    }
}
