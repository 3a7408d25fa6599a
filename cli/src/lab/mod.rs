//! `crosspod lab`: pods of nodes on one machine (`--pods N --nodes-per-pod M`, the guide's two
//! pods of one node by default). Nodes are namespaces with their own OVS, cables are veth
//! pairs, switches (each pod's provider switch, the core switch joining them for a VLAN bridge
//! network, the underlay for VxLAN, `ext` for the upstream networks) are OVS instances in
//! namespaces of their own, and the controller and one agent per node run as detached daemons. Everything made is recorded in the lab directory's state file
//! before it is made, so `lab down` undoes exactly that, even after a half-failed `up`.

pub mod agents;
pub mod cables;
pub mod controller;
pub mod daemons;
pub mod faults;
pub mod keystone;
pub mod state;
pub mod status;
pub mod switch;
pub mod tokens;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;

use crate::output::progress;
use crate::ovsdb::Ovsdb;
use cables::{ensure_cable, CableEnd};
use state::{
    validate_prefix, BridgeNetworkType, LabState, Layout, NodeSpec, UpstreamSpec, STATE_VERSION,
};
use switch::Switch;

/// What `lab up` is asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Lab directory.
    pub dir: PathBuf,
    /// Prefix of namespace names.
    pub prefix: String,
    /// Tricircle API port.
    pub tricircle_port: u16,
    /// Neutron API port.
    pub neutron_port: u16,
    /// Agent listener port (0 = a free one).
    pub agent_port: u16,
    /// Serve the user APIs over TLS.
    pub tls: bool,
    /// Upstream router address/prefix.
    pub upstream_gateway: IpNet,
    /// External VLAN on eth2 (0 = untagged).
    pub upstream_vlan: u16,
    /// RegionOne's upstream router address/prefix (node1's eth2).
    pub region_one_upstream_gateway: IpNet,
    /// RegionOne's external VLAN on node1's eth2 (0 = untagged).
    pub region_one_upstream_vlan: u16,
    /// The upstream router's IPv6 address/prefix (gw0).
    pub upstream_gateway_v6: IpNet,
    /// RegionOne's upstream router's IPv6 address/prefix (gw1).
    pub region_one_upstream_gateway_v6: IpNet,
    /// Controller binary.
    pub controller_bin: PathBuf,
    /// Agent binary.
    pub agent_bin: PathBuf,
    /// Do not start the controller and agents (network only).
    pub no_daemons: bool,
    /// Run a Keystone of the lab's own and authenticate people with it.
    pub keystone: bool,
    /// The venv holding Keystone and uWSGI.
    pub keystone_venv: PathBuf,
    /// Number of pods.
    pub pods: u32,
    /// Nodes per pod.
    pub nodes_per_pod: u32,
    /// How the bridge network crosses pods (and the controller's `--bridge-network-type`).
    pub bridge_network_type: BridgeNetworkType,
}

/// The default location of a sibling binary (`crosspod-controller` next to `crosspod`).
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A free TCP port on 127.0.0.1 (the kernel's choice), other than those in `avoid`: a port
/// just released (say, the one picked for the controller) may be handed out again at once.
fn free_port(avoid: &[u16]) -> Result<u16> {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        let port = l.local_addr()?.port();
        if !avoid.contains(&port) {
            return Ok(port);
        }
    }
    bail!("no free TCP port on 127.0.0.1 outside {avoid:?}")
}

/// Whether `port` can be bound on 127.0.0.1 right now.
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Pods whose nodes have an uplink to `ext`: RegionOne (its own upstream, Tricircle's
/// multi-gateway) and RegionTwo (the guide's external network).
const EXTERNAL_PODS: u32 = 2;

/// The underlay's /24: node `n` (global index from 1) holds `.n`.
const UNDERLAY_NET: [u8; 3] = [192, 168, 50];

fn new_state(o: &UpOptions, created_dir: bool) -> Result<LabState> {
    let mut taken = vec![o.tricircle_port, o.neutron_port];
    let mut nodes = Vec::new();
    for k in 1..=o.pods {
        for j in 1..=o.nodes_per_pod {
            let name = state::node_name(o.pods, o.nodes_per_pod, k, j);
            let index = (k - 1) * o.nodes_per_pod + j;
            let metrics_port = free_port(&taken)?;
            taken.push(metrics_port);
            let external = k <= EXTERNAL_PODS;
            nodes.push(NodeSpec {
                netns: format!("{}{name}", o.prefix),
                name,
                region: state::region_name(k),
                az: format!("az{k}"),
                bridge_mappings: if external {
                    "bridge:br-vlan,extern:br-ext"
                } else {
                    "bridge:br-vlan"
                }
                .into(),
                uplinks: if external {
                    "br-vlan:eth1,br-ext:eth2"
                } else {
                    "br-vlan:eth1"
                }
                .into(),
                metrics_port,
                pod: k,
                tunnel_ip: Some(std::net::Ipv4Addr::new(
                    UNDERLAY_NET[0],
                    UNDERLAY_NET[1],
                    UNDERLAY_NET[2],
                    index as u8,
                )),
                powered_off: false,
                cut: false,
            });
        }
    }
    Ok(LabState {
        version: STATE_VERSION,
        dir: o.dir.clone(),
        prefix: o.prefix.clone(),
        created_dir,
        tricircle_port: o.tricircle_port,
        neutron_port: o.neutron_port,
        agent_port: 0,
        tls: o.tls,
        keystone_port: None,
        pods: o.pods,
        nodes_per_pod: o.nodes_per_pod,
        bridge_network_type: o.bridge_network_type,
        switches: state::switches_of(o.pods, o.nodes_per_pod, o.bridge_network_type),
        nodes,
        upstream: UpstreamSpec {
            gateway: o.upstream_gateway,
            vlan: o.upstream_vlan,
            gateway_v6: Some(o.upstream_gateway_v6),
        },
        region_one_upstream: Some(UpstreamSpec {
            gateway: o.region_one_upstream_gateway,
            vlan: o.region_one_upstream_vlan,
            gateway_v6: Some(o.region_one_upstream_gateway_v6),
        }),
        namespaces: Vec::new(),
    })
}

/// Takes the lab directory's lock (`.lock`, flock) so that concurrent `lab up`/`down`/`vm`
/// commands on one lab run one after the other. Released when the file is dropped.
pub fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join(state::LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock {}", path.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("locking {}", path.display()));
    }
    Ok(f)
}

/// Result of `lab up`.
#[derive(Debug, Default)]
pub struct UpReport {
    /// What was created or started, in order.
    pub changes: Vec<String>,
    /// Processes that are not running, with why.
    pub not_running: Vec<(String, String)>,
}

/// Fails, before any change, when the OVS programs or schema the lab runs are missing.
fn check_prerequisites() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = ["ovsdb-tool", "ovsdb-server", "ovs-vswitchd"]
        .into_iter()
        .filter(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} not found on PATH: install Open vSwitch (`apt-get install openvswitch-switch`; the service itself is not needed)",
            missing.join(", ")
        );
    }
    if !Path::new(switch::SCHEMA).exists() {
        bail!(
            "the OVS schema {} is missing: install openvswitch-common",
            switch::SCHEMA
        );
    }
    Ok(())
}

/// Namespaces, OVS instances, bridges, cables, the underlay's tunnel IPs and the upstream
/// routers of the lab `st` (each made only when missing; the state file records namespaces
/// before they are made).
fn build_network(st: &mut LabState, layout: &Layout, rep: &mut UpReport) -> Result<()> {
    // Namespaces.
    for inst in st.switches.clone() {
        let ns = st.netns_of(&inst);
        if !plumbing::netns::exists(&ns) {
            if !st.namespaces.contains(&ns) {
                st.namespaces.push(ns.clone());
            }
            st.save()?;
            plumbing::netns::create(&ns).with_context(|| format!("creating namespace {ns}"))?;
            progress(format!("namespace {ns} created"));
            rep.changes.push(format!("namespace {ns}"));
        } else if !st.namespaces.contains(&ns) {
            bail!("namespace {ns} exists but this lab did not create it; remove it or use another --prefix");
        }
    }

    // One OVS per instance, started a few at a time (each start waits for its daemons).
    // A powered-off node (`lab node stop`) stays off: none of its daemons, bridges, cables
    // or addresses are touched. A cut node's cables stay cut (making them would bring their
    // far ends back up).
    let off = |name: &str| st.nodes.iter().any(|n| n.name == name && n.powered_off);
    let keep_cables = |n: &NodeSpec| n.powered_off || n.cut;
    let live: Vec<String> = st.switches.iter().filter(|i| !off(i)).cloned().collect();
    let switches: Vec<Switch> = live
        .iter()
        .map(|i| Switch::new(layout, i, &st.netns_of(i)))
        .collect();
    let started: Vec<Result<Vec<String>>> = std::thread::scope(|s| {
        let mut out = Vec::new();
        for chunk in switches.chunks(8) {
            let hs: Vec<_> = chunk
                .iter()
                .map(|sw| s.spawn(move || sw.ensure_running()))
                .collect();
            out.extend(
                hs.into_iter()
                    .map(|h| h.join().expect("switch start thread")),
            );
        }
        out
    });
    for (sw, r) in switches.iter().zip(started) {
        for d in r? {
            progress(format!("{d} started in {}", sw.netns));
            rep.changes.push(d);
        }
    }
    let dbs: Vec<Ovsdb> = switches
        .iter()
        .map(Switch::connect)
        .collect::<Result<_>>()?;
    let sw = |name: &str| -> (&Switch, &Ovsdb) {
        let i = live
            .iter()
            .position(|s| s == name)
            .expect("a running switch of the lab");
        (&switches[i], &dbs[i])
    };

    // Bridges.
    let mut bridges: Vec<(&str, &str)> = Vec::new();
    for n in st.nodes.iter().filter(|n| !n.powered_off) {
        bridges.push((&n.name, "br-vlan"));
        if n.pod <= EXTERNAL_PODS {
            bridges.push((&n.name, "br-ext"));
        }
        bridges.push((&n.name, PHY_BRIDGE));
    }
    bridges.push((state::EXT_SWITCH, upstream::UPSTREAM_BRIDGE));
    let pod_switches: Vec<String> = (1..=st.pods).map(state::pod_switch).collect();
    for p in &pod_switches {
        bridges.push((p, POD_BRIDGE));
    }
    let vlan_bridge = st.bridge_network_type == BridgeNetworkType::Vlan;
    if vlan_bridge {
        bridges.push((state::CORE_SWITCH, CORE_BRIDGE));
    }
    bridges.push((state::UNDERLAY_SWITCH, UNDERLAY_BRIDGE));
    for (inst, br) in bridges {
        if sw(inst).1.ensure_netdev_bridge(br)? {
            progress(format!("bridge {br} on {inst}"));
            rep.changes.push(format!("bridge {br}@{inst}"));
        }
    }

    // eth1: every node's br-vlan <-> its pod's provider switch.
    for n in st.nodes.iter().filter(|n| !keep_cables(n)) {
        let (nsw, ndb) = sw(&n.name);
        let (psw, pdb) = sw(&pod_switches[n.pod as usize - 1]);
        if ensure_cable(
            &CableEnd::trunk(&nsw.netns, "eth1", ndb, "br-vlan"),
            &CableEnd::trunk(&psw.netns, &n.name, pdb, POD_BRIDGE),
        )? {
            progress(format!("cable eth1 {} <-> {}", n.name, psw.instance));
            rep.changes.push(format!("cable eth1 of {}", n.name));
        }
    }
    // The core: each pod switch's `core` port <-> the core switch's `pod<k>`, both trunking
    // only the bridge physnet's VLANs, so pod-local VLANs never leave their pod.
    if vlan_bridge {
        let trunks: Vec<u16> = state::BRIDGE_VLANS.collect();
        let (csw, cdb) = sw(state::CORE_SWITCH);
        for p in &pod_switches {
            let (psw, pdb) = sw(p);
            if ensure_cable(
                &CableEnd {
                    trunks: &trunks,
                    ..CableEnd::trunk(&psw.netns, state::CORE_SWITCH, pdb, POD_BRIDGE)
                },
                &CableEnd {
                    trunks: &trunks,
                    ..CableEnd::trunk(&csw.netns, p, cdb, CORE_BRIDGE)
                },
            )? {
                progress(format!(
                    "cable {p} <-> core (VLANs {:?})",
                    state::BRIDGE_VLANS
                ));
                rep.changes.push(format!("cable {p}-core"));
            }
        }
    }
    // The underlay: every node's eth3 on its br-phy <-> the underlay switch; br-phy holds the
    // node's tunnel IP (OVS routes tunnel packets by the kernel's routes of the node).
    let (usw, udb) = sw(state::UNDERLAY_SWITCH);
    for n in st.nodes.iter().filter(|n| !n.powered_off) {
        let (nsw, ndb) = sw(&n.name);
        if !n.cut
            && ensure_cable(
                &CableEnd::trunk(&nsw.netns, UNDERLAY_IF, ndb, PHY_BRIDGE),
                &CableEnd::trunk(&usw.netns, &n.name, udb, UNDERLAY_BRIDGE),
            )?
        {
            progress(format!("cable {UNDERLAY_IF} {} <-> underlay", n.name));
            rep.changes
                .push(format!("cable {UNDERLAY_IF} of {}", n.name));
        }
        if let Some(ip) = n.tunnel_ip {
            no_arp_flux(&nsw.netns)?;
            if ensure_tunnel_ip(&nsw.netns, ip)? {
                progress(format!("tunnel IP {ip} on {PHY_BRIDGE} of {}", n.name));
                rep.changes.push(format!("tunnel IP of {}", n.name));
            }
        }
    }
    // eth2: every node of RegionOne and RegionTwo <-> ext (trunks on both sides).
    let (esw, edb) = sw(state::EXT_SWITCH);
    for n in st
        .nodes
        .iter()
        .filter(|n| n.pod <= EXTERNAL_PODS && !keep_cables(n))
    {
        let (nsw, ndb) = sw(&n.name);
        let ext_port = upstream::ext_port_of(&n.name);
        if ensure_cable(
            &CableEnd::trunk(&nsw.netns, "eth2", ndb, "br-ext"),
            &CableEnd::trunk(&esw.netns, &ext_port, edb, upstream::UPSTREAM_BRIDGE),
        )? {
            progress(format!("cable eth2 {} (br-ext) <-> ext", n.name));
            rep.changes.push(format!("cable eth2 of {}", n.name));
        }
    }
    if upstream::ensure_upstream(
        &esw.netns,
        edb,
        &st.upstream,
        upstream::LEG_PORT,
        upstream::LEG_IF,
    )? {
        progress(format!(
            "upstream router {} on VLAN {} in {}",
            st.upstream.gateway, st.upstream.vlan, esw.netns
        ));
        rep.changes.push("upstream router".into());
    }
    if let Some(up1) = st.region_one_upstream.clone() {
        if upstream::ensure_upstream(
            &esw.netns,
            edb,
            &up1,
            upstream::REGION_ONE_LEG_PORT,
            upstream::REGION_ONE_LEG_IF,
        )? {
            progress(format!(
                "RegionOne's upstream router {} on VLAN {} in {}",
                up1.gateway, up1.vlan, esw.netns
            ));
            rep.changes.push("RegionOne's upstream router".into());
        }
    }
    Ok(())
}

/// The node bridge holding the tunnel endpoint (named as in OVS's userspace-tunnel docs).
pub const PHY_BRIDGE: &str = "br-phy";
/// A node's underlay interface (on br-phy).
pub const UNDERLAY_IF: &str = "eth3";
/// The bridge of a pod's provider switch.
pub const POD_BRIDGE: &str = "br-pod";
/// The bridge of the core switch.
pub const CORE_BRIDGE: &str = "br-core";
/// The bridge of the underlay switch.
pub const UNDERLAY_BRIDGE: &str = "br-ul";

/// Makes the node's kernel answer ARP for its tunnel IP only on br-phy (`arp_ignore=1`).
/// By default Linux answers on every interface, and the node's cables are kernel interfaces
/// too (OVS's userspace datapath reads them with packet sockets): the node would answer for
/// its tunnel IP with eth3's MAC as well as br-phy's, two answers for one address, which is
/// just what failover tests look for.
fn no_arp_flux(netns: &str) -> Result<()> {
    daemons::run(
        daemons::command_in(netns, "sysctl")?.args(["-qw", "net.ipv4.conf.all.arp_ignore=1"]),
        &format!("setting arp_ignore in {netns}"),
    )?;
    Ok(())
}

/// Gives the node's br-phy (the bridge's internal interface, which ovs-vswitchd makes in the
/// node namespace) the tunnel IP /24 and brings it up. Returns whether anything changed.
fn ensure_tunnel_ip(netns: &str, ip: std::net::Ipv4Addr) -> Result<bool> {
    let net = IpNet::new(ip.into(), 24).expect("a /24");
    let mut h = plumbing::Handle::new(&plumbing::Netns::named(netns))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let link = loop {
        if let Some(l) = h.link(PHY_BRIDGE)? {
            break l;
        }
        if std::time::Instant::now() > deadline {
            bail!("ovs-vswitchd made no {PHY_BRIDGE} interface in {netns} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut changed = false;
    // Marked as the lab's (like its cables) so that crosspod's address calls accept it.
    if !link.up || !link.owned() {
        h.set_link(PHY_BRIDGE)
            .force()
            .owner(cables::LAB_OWNER)
            .up()
            .apply()
            .with_context(|| format!("bringing {PHY_BRIDGE} up in {netns}"))?;
        changed = true;
    }
    if !h.link_addresses(PHY_BRIDGE)?.contains(&net) {
        h.replace_address(PHY_BRIDGE, net)
            .with_context(|| format!("giving {net} to {PHY_BRIDGE}@{netns}"))?;
        changed = true;
    }
    Ok(changed)
}

/// `crosspod lab up`.
pub fn up(o: &UpOptions) -> Result<UpReport> {
    validate_prefix(&o.prefix)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("lab up creates namespaces, veths and OVS daemons: run it as root");
    }
    check_prerequisites()?;
    for (flag, vlan) in [
        ("--upstream-vlan", o.upstream_vlan),
        ("--region-one-upstream-vlan", o.region_one_upstream_vlan),
    ] {
        if vlan > 4094 {
            bail!("{flag} {vlan} is not a VLAN id (0..=4094; 0 = untagged)");
        }
    }
    if o.upstream_gateway
        .trunc()
        .contains(&o.region_one_upstream_gateway.addr())
        || o.region_one_upstream_gateway
            .trunc()
            .contains(&o.upstream_gateway.addr())
    {
        bail!(
            "--upstream-gateway {} and --region-one-upstream-gateway {} overlap: each pod's external network needs a subnet of its own",
            o.upstream_gateway,
            o.region_one_upstream_gateway
        );
    }
    if !(1..=state::MAX_PODS).contains(&o.pods) {
        bail!(
            "--pods {} is out of range (1..={})",
            o.pods,
            state::MAX_PODS
        );
    }
    if o.nodes_per_pod == 0 || o.pods * o.nodes_per_pod > state::MAX_NODES {
        bail!(
            "--nodes-per-pod {} with --pods {} makes {} nodes; a lab has 1..={} (one tunnel IP each in 192.168.50.0/24)",
            o.nodes_per_pod,
            o.pods,
            o.pods * o.nodes_per_pod,
            state::MAX_NODES
        );
    }
    let mut rep = UpReport::default();
    let want_switches = state::switches_of(o.pods, o.nodes_per_pod, o.bridge_network_type);
    // Validate before any change: every namespace name must be free.
    let check_free = || -> Result<()> {
        for inst in &want_switches {
            let ns = format!("{}{inst}", o.prefix);
            if plumbing::netns::exists(&ns) {
                bail!(
                    "namespace {ns} exists and is not part of a lab in {}; remove it (`ip netns del {ns}`) or choose another --prefix",
                    o.dir.display()
                );
            }
        }
        Ok(())
    };
    let existed = o.dir.exists();
    if !existed {
        check_free()?;
        std::fs::create_dir_all(&o.dir)
            .with_context(|| format!("creating lab directory {}", o.dir.display()))?;
    }
    let _lock = lock_dir(&o.dir)?;
    let mut st = match LabState::load(&o.dir)? {
        Some(st) => {
            if st.version != STATE_VERSION
                || st.pods != o.pods
                || st.nodes_per_pod != o.nodes_per_pod
                || st.bridge_network_type != o.bridge_network_type
            {
                bail!(
                    "the lab in {} has another shape ({} pods × {} nodes, {} bridge network{}) than asked for ({} × {}, {}); run `crosspod lab down --dir {}` first",
                    o.dir.display(),
                    st.pods,
                    st.nodes_per_pod,
                    st.bridge_network_type,
                    if st.version == STATE_VERSION { "" } else { ", made by an older crosspod" },
                    o.pods,
                    o.nodes_per_pod,
                    o.bridge_network_type,
                    o.dir.display()
                );
            }
            let same = st.prefix == o.prefix
                && st.tricircle_port == o.tricircle_port
                && st.neutron_port == o.neutron_port
                && st.upstream.gateway == o.upstream_gateway
                && st.upstream.vlan == o.upstream_vlan
                && st
                    .upstream
                    .gateway_v6
                    .is_none_or(|g| g == o.upstream_gateway_v6)
                && st.region_one_upstream.as_ref().is_none_or(|u| {
                    u.gateway == o.region_one_upstream_gateway
                        && u.vlan == o.region_one_upstream_vlan
                        && u.gateway_v6
                            .is_none_or(|g| g == o.region_one_upstream_gateway_v6)
                })
                && st.tls == o.tls
                && st.keystone_port.is_some() == o.keystone;
            if !same {
                bail!(
                    "the lab in {} was brought up with other options (prefix {:?}, ports {}/{}, upstream {} vlan {}, tls {}, keystone {}); run `crosspod lab down --dir {}` first",
                    o.dir.display(), st.prefix, st.tricircle_port, st.neutron_port,
                    st.upstream.gateway, st.upstream.vlan, st.tls, st.keystone_port.is_some(), o.dir.display()
                );
            }
            st
        }
        None => {
            check_free()?;
            let st = new_state(o, !existed)?;
            st.save()?;
            rep.changes
                .push(format!("lab directory {}", o.dir.display()));
            st
        }
    };
    // A lab made before IPv6: its upstream routers get their IPv6 addresses now.
    if st.upstream.gateway_v6.is_none() {
        st.upstream.gateway_v6 = Some(o.upstream_gateway_v6);
        st.save()?;
    }
    if let Some(u) = st
        .region_one_upstream
        .as_mut()
        .filter(|u| u.gateway_v6.is_none())
    {
        u.gateway_v6 = Some(o.region_one_upstream_gateway_v6);
        st.save()?;
    }
    if st.agent_port == 0 || (o.agent_port != 0 && st.agent_port != o.agent_port) {
        st.agent_port = if o.agent_port != 0 {
            o.agent_port
        } else {
            let mut taken = vec![st.tricircle_port, st.neutron_port];
            taken.extend(st.nodes.iter().map(|n| n.metrics_port));
            free_port(&taken)?
        };
        st.save()?;
    }
    if o.keystone && st.keystone_port.is_none() {
        let mut taken = vec![st.tricircle_port, st.neutron_port, st.agent_port];
        taken.extend(st.nodes.iter().map(|n| n.metrics_port));
        st.keystone_port = Some(free_port(&taken)?);
        st.save()?;
    }
    let layout = st.layout();
    if st.tls {
        crate::http::trust(&layout.pki_dir().join(crate::pki::CA_CERT));
    }

    build_network(&mut st, &layout, &mut rep)?;

    // The agent channel's PKI: a CA, the controller's server certificate, one client
    // certificate per node (its subject is the node the agent speaks for).
    let pki_dir = layout.pki_dir();
    if crate::pki::init(&pki_dir)? {
        rep.changes.push("lab CA".into());
    }
    let controller_cert = crate::pki::files(&pki_dir, CONTROLLER_CERT);
    if !controller_cert.cert.exists() {
        crate::pki::issue(
            &pki_dir,
            &crate::pki::Subject::Server {
                name: CONTROLLER_CERT,
                sans: &["127.0.0.1".into(), "localhost".into()],
            },
        )?;
        rep.changes.push("controller certificate".into());
    }
    for node in &st.nodes {
        if !crate::pki::files(&pki_dir, &node.name).cert.exists() {
            crate::pki::issue(&pki_dir, &crate::pki::Subject::Node(&node.name))?;
            rep.changes.push(format!("certificate of {}", node.name));
        }
    }

    // Tokens: an admin token for the user.
    let tf = layout.tokens_file();
    let lines = tokens::read(&tf)?;
    if tokens::find(&lines, tokens::ADMIN_PROJECT, "admin").is_none() {
        tokens::append(&tf, tokens::ADMIN_PROJECT, &["admin".into()])?;
        rep.changes.push("admin token".into());
    }
    if !o.no_daemons {
        // Keystone before the controller, which asks it about every new token.
        if let Some(port) = st.keystone_port {
            rep.changes
                .extend(keystone::ensure(&st, port, &o.keystone_venv)?);
        }
        // Controller.
        let c = controller::daemon(&st);
        if c.alive() {
            if !controller::neutron_answers(&st) {
                rep.not_running.push((
                    c.name.clone(),
                    format!(
                        "runs but does not answer on 127.0.0.1:{}; see {}",
                        st.neutron_port,
                        c.log.display()
                    ),
                ));
            }
        } else {
            progress(format!(
                "starting the controller on 127.0.0.1:{} (Tricircle) and :{} (Neutron)",
                st.tricircle_port, st.neutron_port
            ));
            match controller::start(&st, &o.controller_bin, Duration::from_secs(15))? {
                None => rep.changes.push("controller".into()),
                Some(why) => rep.not_running.push((c.name.clone(), why)),
            }
        }
        // Agents, each on a metrics port of its own (re-picked if someone took it), started
        // together (each start waits a moment to see the agent stay up).
        let local_ip = o.agent_bin.exists() && agents::has_local_ip(&o.agent_bin);
        let mut to_start = Vec::new();
        for i in 0..st.nodes.len() {
            // A powered-off node's agent stays off with it (`lab node start` brings both).
            if st.nodes[i].powered_off || agents::daemon(&st, &st.nodes[i]).alive() {
                continue;
            }
            if !port_free(st.nodes[i].metrics_port) {
                let mut taken = vec![st.tricircle_port, st.neutron_port];
                taken.extend(st.nodes.iter().map(|n| n.metrics_port));
                st.nodes[i].metrics_port = free_port(&taken)?;
                st.save()?;
            }
            to_start.push(i);
        }
        let st_ref = &st;
        let results: Vec<(String, Result<Option<String>>)> = std::thread::scope(|s| {
            let hs: Vec<_> = to_start
                .iter()
                .map(|&i| {
                    let node = &st_ref.nodes[i];
                    progress(format!("starting the agent of {}", node.name));
                    let bin = &o.agent_bin;
                    s.spawn(move || {
                        (
                            agents::daemon(st_ref, node).name,
                            agents::start(st_ref, node, bin, local_ip),
                        )
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("agent start thread"))
                .collect()
        });
        for (name, r) in results {
            match r? {
                None => rep.changes.push(name),
                Some(why) => rep.not_running.push((name, why)),
            }
        }
    }
    st.save()?;
    Ok(rep)
}

/// Result of `lab down`.
#[derive(Debug, Default)]
pub struct DownReport {
    /// What was removed or stopped.
    pub removed: Vec<String>,
    /// Whether there was a lab at all.
    pub found: bool,
}

/// `crosspod lab down`: stops every daemon, deletes every namespace and file the lab made.
pub fn down(dir: &Path) -> Result<DownReport> {
    let mut rep = DownReport::default();
    if LabState::load(dir)?.is_none() {
        return Ok(rep);
    }
    let _lock = lock_dir(dir)?;
    let Some(st) = LabState::load(dir)? else {
        return Ok(rep);
    };
    rep.found = true;
    let layout = st.layout();

    // Lab VMs first (their namespaces were made by `crosspod vm boot`).
    for vm in crate::vm::records(&layout)? {
        crate::vm::remove_dhcp_client(&layout.vms_dir(), &vm.name);
        if vm.created_netns && plumbing::netns::delete(&vm.name)? {
            rep.removed.push(format!("vm namespace {}", vm.name));
        }
    }
    for node in &st.nodes {
        let d = agents::daemon(&st, node);
        if d.stop(Duration::from_secs(5))? {
            rep.removed.push(d.name.clone());
        }
    }
    let c = controller::daemon(&st);
    if c.stop(Duration::from_secs(5))? {
        rep.removed.push(c.name.clone());
    }
    let k = keystone::daemon(&st);
    if k.stop(Duration::from_secs(5))? {
        rep.removed.push(k.name.clone());
    }
    for inst in &st.switches {
        let sw = Switch::new(&layout, inst, &st.netns_of(inst));
        rep.removed.extend(sw.stop()?);
    }
    // Router namespaces the lab's agents made (`<node netns>-...`).
    for ns in plumbing::netns::list()? {
        if st
            .nodes
            .iter()
            .any(|n| ns.starts_with(&agents::netns_prefix(n)))
        {
            plumbing::netns::delete(&ns)?;
            rep.removed.push(format!("namespace {ns}"));
        }
    }
    for ns in st.namespaces.iter().rev() {
        if plumbing::netns::delete(ns).with_context(|| format!("deleting namespace {ns}"))? {
            rep.removed.push(format!("namespace {ns}"));
        }
    }
    remove_files(&layout, &st.switches, st.created_dir)?;
    Ok(rep)
}

fn remove_files(layout: &Layout, switches: &[String], created_dir: bool) -> Result<()> {
    for p in layout.owned_paths(switches) {
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    if created_dir {
        match std::fs::remove_dir(&layout.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "removing lab directory {} (files not made by the lab are left)",
                        layout.dir.display()
                    )
                })
            }
        }
    }
    Ok(())
}

/// Name of the controller's server certificate in the lab's PKI directory.
pub const CONTROLLER_CERT: &str = "controller";

/// `crosspod lab env`: shell exports for the openstack CLI, the guide's `$token`, and each
/// node's OVSDB socket.
pub fn env(dir: &Path) -> Result<String> {
    let st = LabState::require(dir)?;
    if let Some(port) = st.keystone_port {
        return env_keystone(&st, dir, port);
    }
    let lines = tokens::read(&st.layout().tokens_file())?;
    let token = tokens::find(&lines, tokens::ADMIN_PROJECT, "admin").with_context(|| {
        format!(
            "no admin token in {}; run `crosspod lab up --dir {}`",
            st.layout().tokens_file().display(),
            dir.display()
        )
    })?;
    let mut out = String::new();
    out.push_str("export OS_AUTH_TYPE=admin_token\n");
    out.push_str(&format!(
        "export OS_ENDPOINT={}\n",
        st.api_url(st.neutron_port)
    ));
    if st.tls {
        out.push_str(&format!(
            "export OS_CACERT={}\n",
            shell_quote(
                &st.layout()
                    .pki_dir()
                    .join(crate::pki::CA_CERT)
                    .display()
                    .to_string()
            )
        ));
    } else {
        out.push_str("unset OS_CACERT\n");
    }
    out.push_str(&format!("export OS_TOKEN={token}\n"));
    out.push_str(&format!("export token={token}\n"));
    out.push_str("unset OS_REGION_NAME OS_CLOUD OS_AUTH_URL\n");
    env_lab(&st, dir, &mut out);
    Ok(out)
}

/// The exports of every lab: its directory, the agent listener and each node's OVSDB
/// socket and credential.
fn env_lab(st: &LabState, dir: &Path, out: &mut String) {
    out.push_str(&format!(
        "export CROSSPOD_LAB_DIR={}\n",
        shell_quote(&dir.display().to_string())
    ));
    out.push_str(&format!(
        "export CROSSPOD_AGENT_URL=https://127.0.0.1:{}\n",
        st.agent_port
    ));
    let pki_dir = st.layout().pki_dir();
    out.push_str(&format!(
        "export CROSSPOD_CA={}\n",
        shell_quote(&pki_dir.join(crate::pki::CA_CERT).display().to_string())
    ));
    // The lab's shape: `node:region:az` per node, pod by pod.
    out.push_str(&format!(
        "export CROSSPOD_LAB_NODES={}\n",
        shell_quote(
            &st.nodes
                .iter()
                .map(|n| format!("{}:{}:{}", n.name, n.region, n.az))
                .collect::<Vec<_>>()
                .join(" ")
        )
    ));
    for node in &st.nodes {
        // A shell variable name: `node1-2` becomes `node1_2`.
        let var = node.name.replace('-', "_");
        out.push_str(&format!(
            "export CROSSPOD_OVSDB_{var}={}\n",
            shell_quote(&st.layout().ovsdb_remote(&node.name))
        ));
        // Each node's own credential, to act as that node by hand
        // (`curl --cacert $CROSSPOD_CA --cert $CROSSPOD_AGENT_CERT_node1 --key ...`).
        let f = crate::pki::files(&pki_dir, &node.name);
        out.push_str(&format!(
            "export CROSSPOD_AGENT_CERT_{var}={}\nexport CROSSPOD_AGENT_KEY_{var}={}\n",
            shell_quote(&f.cert.display().to_string()),
            shell_quote(&f.key.display().to_string())
        ));
    }
}

/// `lab env` of a lab with Keystone: plain password auth as the lab's `admin` (the catalog
/// gives the Neutron endpoint), a fresh admin token as the guide's `$token`, and the other
/// lab users' names for `OS_USERNAME=demo` and the like.
fn env_keystone(st: &LabState, dir: &Path, port: u16) -> Result<String> {
    let creds = keystone::admin_creds(st, port)?;
    let session = crate::keystone::Session::password(&creds).with_context(|| {
        format!(
            "the lab's Keystone does not answer; run `crosspod lab up --keystone --dir {}`",
            dir.display()
        )
    })?;
    let mut out = String::new();
    out.push_str("unset OS_TOKEN OS_ENDPOINT OS_CLOUD OS_CACERT OS_SYSTEM_SCOPE\n");
    for (k, v) in [
        ("OS_AUTH_TYPE", "password".to_string()),
        ("OS_AUTH_URL", keystone::url(port)),
        ("OS_IDENTITY_API_VERSION", "3".into()),
        ("OS_USERNAME", "admin".into()),
        ("OS_PASSWORD", creds.password.clone()),
        ("OS_PROJECT_NAME", "admin".into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
        ("OS_REGION_NAME", "RegionOne".into()),
        ("OS_INTERFACE", "public".into()),
        ("token", session.token().to_string()),
        (
            "CROSSPOD_LAB_USERS",
            keystone::USERS
                .iter()
                .filter(|u| u.1 != keystone::SERVICE_USER)
                .map(|u| format!("{}:{}@{}", u.1, u.2, u.0))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ] {
        out.push_str(&format!("export {k}={}\n", shell_quote(&v)));
    }
    if st.tls {
        out.push_str(&format!(
            "export OS_CACERT={}\n",
            shell_quote(
                &st.layout()
                    .pki_dir()
                    .join(crate::pki::CA_CERT)
                    .display()
                    .to_string()
            )
        ));
    }
    env_lab(st, dir, &mut out);
    Ok(out)
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/:._-+=".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `crosspod lab token --project NAME`: appends and returns a new token.
pub fn token(dir: &Path, project: &str, roles: &[String]) -> Result<String> {
    let st = LabState::require(dir)?;
    if st.keystone_port.is_some() && roles.iter().any(|r| r != "agent") {
        bail!(
            "the lab in {} authenticates people with Keystone: a tokens-file token would be refused; use `crosspod lab env` (password auth, `$token`; users {})",
            dir.display(),
            keystone::USERS
                .iter()
                .filter(|u| u.1 != keystone::SERVICE_USER)
                .map(|u| u.1)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    tokens::append(&st.layout().tokens_file(), project, roles)
}
