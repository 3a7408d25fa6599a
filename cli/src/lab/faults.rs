//! `crosspod lab node stop|start|cut|mend|kill-agent NODE`: the failures of router failover's
//! failure model (issue #20), injected into one node of a lab.
//!
//! - **stop** (power off): the node's agent, ovs-vswitchd and ovsdb-server are killed (SIGKILL:
//!   a machine losing power cleans nothing up), the namespaces its agent made (router and DHCP
//!   namespaces, `<node netns>-...`) and the VMs plugged into it are deleted. The node's own
//!   namespace and its cables stay, as a powered-off machine keeps its cables, but with no
//!   vswitchd they carry nothing. **start** brings the daemons back as `lab up` would (VMs are
//!   not rebooted).
//! - **cut**: the far ends of the node's cables (its provider switch port, its underlay port,
//!   its `ext` port) go down, so the node sees no carrier, while its daemons keep running;
//!   **mend** brings them back up.
//! - **kill-agent**: only the agent, SIGKILL; `lab up` restarts it.
//!
//! Each is idempotent and recorded in the state file (`powered_off`, `cut`) before it acts,
//! so `lab status` shows the node, `lab up` leaves it as it is, and `lab down` still removes
//! everything.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::state::{self, LabState, NodeSpec, STATE_VERSION};
use super::switch::Switch;
use super::{agents, controller, upstream, EXTERNAL_PODS};

/// A failure (or its repair) to inject into one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// Power off: daemons killed, the agent's namespaces and the node's VMs deleted.
    Stop,
    /// Power on: daemons started again (VMs are not rebooted).
    Start,
    /// The node's cables down at their far ends; its daemons keep running.
    Cut,
    /// The node's cables back up.
    Mend,
    /// Only the agent killed (SIGKILL).
    KillAgent,
}

/// What a node action did.
#[derive(Debug, Default)]
pub struct NodeReport {
    /// What was killed, deleted, started, cut or mended, in order (empty: nothing to do).
    pub changes: Vec<String>,
    /// Processes that should run but do not, with why (after `start`).
    pub not_running: Vec<(String, String)>,
}

/// Applies `action` to node `name` of the lab in `dir`. `agent_bin` is the agent `start`
/// runs (only when the lab's controller runs: a network-only lab gets no agent).
pub fn node(dir: &Path, name: &str, action: NodeAction, agent_bin: &Path) -> Result<NodeReport> {
    let mut st = LabState::require(dir)?;
    let _lock = super::lock_dir(dir)?;
    // Read again under the lock: another command may have changed it.
    st = LabState::load(dir)?.unwrap_or(st);
    let i = node_index(&st, name)?;
    let mut rep = NodeReport::default();
    match action {
        NodeAction::Stop => stop(&mut st, i, &mut rep)?,
        NodeAction::Start => start(&mut st, i, agent_bin, &mut rep)?,
        NodeAction::Cut => set_cables(&mut st, i, false, &mut rep)?,
        NodeAction::Mend => set_cables(&mut st, i, true, &mut rep)?,
        NodeAction::KillAgent => {
            let d = agents::daemon(&st, &st.nodes[i]);
            if d.kill()? {
                rep.changes.push(format!("{} killed", d.name));
            }
        }
    }
    Ok(rep)
}

/// The index of node `name`, or an error naming the lab's nodes.
fn node_index(st: &LabState, name: &str) -> Result<usize> {
    st.nodes
        .iter()
        .position(|n| n.name == name)
        .with_context(|| {
            format!(
                "no node {name:?} in the lab in {}; its nodes are {}",
                st.dir.display(),
                st.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn stop(st: &mut LabState, i: usize, rep: &mut NodeReport) -> Result<()> {
    if !st.nodes[i].powered_off {
        st.nodes[i].powered_off = true;
        st.save()?;
    }
    let node = st.nodes[i].clone();
    let layout = st.layout();
    // The agent first, so it never sees its data plane go.
    let d = agents::daemon(st, &node);
    if d.kill()? {
        rep.changes.push(format!("{} killed", d.name));
    }
    let sw = Switch::new(&layout, &node.name, &node.netns);
    for d in [sw.vswitchd(), sw.ovsdb()] {
        if d.kill()? {
            rep.changes.push(format!("{} killed", d.name));
        }
    }
    // A machine without power has no link: its NICs (the near ends of its cables) go down,
    // so the switches see no carrier either. `start` makes the cables again, up.
    if st.version == STATE_VERSION {
        let mut h = plumbing::Handle::new(&plumbing::Netns::named(&node.netns))
            .with_context(|| format!("opening namespace {}", node.netns))?;
        for ifname in near_ends(&node) {
            if h.link(ifname)?.is_some_and(|l| l.up) {
                h.set_link(ifname)
                    .force()
                    .down()
                    .apply()
                    .with_context(|| format!("setting {ifname}@{} down", node.netns))?;
                rep.changes.push(format!("{ifname}@{} down", node.netns));
            }
        }
    }
    // The VMs plugged into the node (their records stay: they are not rebooted on start).
    for vm in crate::vm::records(&layout)?
        .into_iter()
        .filter(|v| v.node == node.name)
    {
        crate::vm::remove_dhcp_client(&layout.vms_dir(), &vm.name);
        if vm.created_netns && plumbing::netns::delete(&vm.name)? {
            rep.changes
                .push(format!("vm namespace {} deleted", vm.name));
        }
    }
    // The router and DHCP namespaces the node's agent made.
    let prefix = agents::netns_prefix(&node);
    for ns in plumbing::netns::list()? {
        if ns.starts_with(&prefix) {
            plumbing::netns::delete(&ns).with_context(|| format!("deleting namespace {ns}"))?;
            rep.changes.push(format!("namespace {ns} deleted"));
        }
    }
    Ok(())
}

fn start(st: &mut LabState, i: usize, agent_bin: &Path, rep: &mut NodeReport) -> Result<()> {
    if st.nodes[i].powered_off {
        st.nodes[i].powered_off = false;
        st.save()?;
    }
    // The network as `lab up` makes it (idempotent: only this node's OVS, bridges, cables
    // and tunnel IP are missing).
    let layout = st.layout();
    let mut up = super::UpReport::default();
    super::build_network(st, &layout, &mut up)?;
    rep.changes.extend(up.changes);
    // A cut node's cables were left alone: bring its own ends up (the far ends stay down
    // until `mend`).
    if st.nodes[i].cut {
        let node = st.nodes[i].clone();
        let mut h = plumbing::Handle::new(&plumbing::Netns::named(&node.netns))
            .with_context(|| format!("opening namespace {}", node.netns))?;
        for ifname in near_ends(&node) {
            if h.link(ifname)?.is_some_and(|l| !l.up) {
                h.set_link(ifname)
                    .force()
                    .up()
                    .apply()
                    .with_context(|| format!("setting {ifname}@{} up", node.netns))?;
                rep.changes.push(format!("{ifname}@{} up", node.netns));
            }
        }
    }
    // The agent, when the lab runs daemons at all.
    if !controller::daemon(st).alive() {
        return Ok(());
    }
    let d = agents::daemon(st, &st.nodes[i]);
    if d.alive() {
        return Ok(());
    }
    if !super::port_free(st.nodes[i].metrics_port) {
        let mut taken = vec![st.tricircle_port, st.neutron_port, st.agent_port];
        taken.extend(st.nodes.iter().map(|n| n.metrics_port));
        st.nodes[i].metrics_port = super::free_port(&taken)?;
        st.save()?;
    }
    let local_ip = agent_bin.exists() && agents::has_local_ip(agent_bin);
    match agents::start(st, &st.nodes[i], agent_bin, local_ip)? {
        None => rep.changes.push(format!("{} started", d.name)),
        Some(why) => rep.not_running.push((d.name, why)),
    }
    Ok(())
}

/// The far ends of a node's cables, `(namespace, interface)`: its port on the pod's provider
/// switch, on the underlay switch and (external pods) on `ext`.
pub fn far_ends(st: &LabState, node: &NodeSpec) -> Vec<(String, String)> {
    let mut v = vec![
        (st.netns_of(&state::pod_switch(node.pod)), node.name.clone()),
        (st.netns_of(state::UNDERLAY_SWITCH), node.name.clone()),
    ];
    if node.pod <= EXTERNAL_PODS {
        v.push((
            st.netns_of(state::EXT_SWITCH),
            upstream::ext_port_of(&node.name),
        ));
    }
    v
}

/// The node's ends of its cables: eth1 (provider), eth3 (underlay), eth2 (external pods).
fn near_ends(node: &NodeSpec) -> Vec<&'static str> {
    let mut v = vec!["eth1", super::UNDERLAY_IF];
    if node.pod <= EXTERNAL_PODS {
        v.push("eth2");
    }
    v
}

/// Cuts (`up` false) or mends the node's cables at their far ends.
fn set_cables(st: &mut LabState, i: usize, up: bool, rep: &mut NodeReport) -> Result<()> {
    if st.version != STATE_VERSION {
        bail!(
            "the lab in {} was made by an older crosspod (no provider switches); run `crosspod lab down` and `lab up` first",
            st.dir.display()
        );
    }
    if !up && !st.nodes[i].cut {
        st.nodes[i].cut = true;
        st.save()?;
    }
    let node = st.nodes[i].clone();
    for (ns, ifname) in far_ends(st, &node) {
        let mut h = plumbing::Handle::new(&plumbing::Netns::named(&ns))
            .with_context(|| format!("opening namespace {ns}"))?;
        let link = h.link(&ifname)?.with_context(|| {
            format!(
                "{} has no cable {ifname} in {ns}; run `crosspod lab up` first",
                node.name
            )
        })?;
        if link.up != up {
            let req = h.set_link(&ifname).force();
            if up { req.up() } else { req.down() }
                .apply()
                .with_context(|| format!("setting {ifname}@{ns} {}", updown(up)))?;
            rep.changes.push(format!("{ifname}@{ns} {}", updown(up)));
        }
    }
    if up && st.nodes[i].cut {
        st.nodes[i].cut = false;
        st.save()?;
    }
    Ok(())
}

fn updown(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}
