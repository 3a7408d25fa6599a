//! `crosspod lab`: two pods on one machine. Nodes are namespaces with their own OVS, cables
//! are veth pairs, `ext` is the upstream network, and the controller and one agent per node
//! run as detached daemons. Everything made is recorded in the lab directory's state file
//! before it is made, so `lab down` undoes exactly that, even after a half-failed `up`.

pub mod agents;
pub mod cables;
pub mod controller;
pub mod daemons;
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
use cables::{ensure_cable, CableEnd};
use state::{validate_prefix, LabState, Layout, NodeSpec, UpstreamSpec, STATE_VERSION};
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

fn new_state(o: &UpOptions, created_dir: bool) -> Result<LabState> {
    let mut taken = vec![o.tricircle_port, o.neutron_port];
    let mut node = |name: &str, region: &str, az: &str, maps: &str, uplinks: &str| -> Result<_> {
        let metrics_port = free_port(&taken)?;
        taken.push(metrics_port);
        Ok(NodeSpec {
            name: name.into(),
            netns: format!("{}{name}", o.prefix),
            region: region.into(),
            az: az.into(),
            bridge_mappings: maps.into(),
            uplinks: uplinks.into(),
            metrics_port,
        })
    };
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
        nodes: vec![
            node(
                "node1",
                "RegionOne",
                "az1",
                "bridge:br-vlan,extern:br-ext",
                "br-vlan:eth1,br-ext:eth2",
            )?,
            node(
                "node2",
                "RegionTwo",
                "az2",
                "bridge:br-vlan,extern:br-ext",
                "br-vlan:eth1,br-ext:eth2",
            )?,
        ],
        upstream: UpstreamSpec {
            gateway: o.upstream_gateway,
            vlan: o.upstream_vlan,
        },
        region_one_upstream: Some(UpstreamSpec {
            gateway: o.region_one_upstream_gateway,
            vlan: o.region_one_upstream_vlan,
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
    let mut rep = UpReport::default();
    // Validate before any change: every namespace name must be free.
    let check_free = || -> Result<()> {
        for inst in state::OVS_INSTANCES {
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
            let same = st.prefix == o.prefix
                && st.tricircle_port == o.tricircle_port
                && st.neutron_port == o.neutron_port
                && st.upstream.gateway == o.upstream_gateway
                && st.upstream.vlan == o.upstream_vlan
                && st.region_one_upstream.as_ref().is_none_or(|u| {
                    u.gateway == o.region_one_upstream_gateway
                        && u.vlan == o.region_one_upstream_vlan
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

    // Namespaces.
    for inst in state::OVS_INSTANCES {
        let ns = st.netns_of(inst);
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

    // One OVS per instance.
    let switches: Vec<Switch> = state::OVS_INSTANCES
        .iter()
        .map(|i| Switch::new(&layout, i, &st.netns_of(i)))
        .collect();
    for sw in &switches {
        for d in sw.ensure_running()? {
            progress(format!("{d} started in {}", sw.netns));
            rep.changes.push(d);
        }
    }
    let (n1, n2, ext) = (&switches[0], &switches[1], &switches[2]);
    let (v1, v2, vx) = (n1.connect()?, n2.connect()?, ext.connect()?);

    // Bridges.
    for (sw, vs, br) in [
        (n1, &v1, "br-vlan"),
        (n1, &v1, "br-ext"),
        (n2, &v2, "br-vlan"),
        (n2, &v2, "br-ext"),
        (ext, &vx, upstream::UPSTREAM_BRIDGE),
    ] {
        if vs.ensure_netdev_bridge(br)? {
            progress(format!("bridge {br} on {}", sw.instance));
            rep.changes.push(format!("bridge {br}@{}", sw.instance));
        }
    }

    // eth1: node1 br-vlan <-> node2 br-vlan.
    if ensure_cable(
        &CableEnd {
            netns: &n1.netns,
            ifname: "eth1",
            bridge: Some((&v1, "br-vlan")),
            tag: None,
        },
        &CableEnd {
            netns: &n2.netns,
            ifname: "eth1",
            bridge: Some((&v2, "br-vlan")),
            tag: None,
        },
    )? {
        progress("cable eth1 node1 <-> node2 (br-vlan)");
        rep.changes.push("cable eth1".into());
    }
    // eth2: node2 br-ext <-> ext br-up (trunk on both sides).
    if ensure_cable(
        &CableEnd {
            netns: &n2.netns,
            ifname: "eth2",
            bridge: Some((&v2, "br-ext")),
            tag: None,
        },
        &CableEnd {
            netns: &ext.netns,
            ifname: "eth2",
            bridge: Some((&vx, upstream::UPSTREAM_BRIDGE)),
            tag: None,
        },
    )? {
        progress("cable eth2 node2 (br-ext) <-> ext");
        rep.changes.push("cable eth2".into());
    }
    if upstream::ensure_upstream(
        &ext.netns,
        &vx,
        &st.upstream,
        upstream::LEG_PORT,
        upstream::LEG_IF,
    )? {
        progress(format!(
            "upstream router {} on VLAN {} in {}",
            st.upstream.gateway, st.upstream.vlan, ext.netns
        ));
        rep.changes.push("upstream router".into());
    }
    // RegionOne's own way out: node1 br-ext <-> ext br-up (eth3 there), and a second leg.
    if let Some(up1) = st.region_one_upstream.clone() {
        if ensure_cable(
            &CableEnd {
                netns: &n1.netns,
                ifname: "eth2",
                bridge: Some((&v1, "br-ext")),
                tag: None,
            },
            &CableEnd {
                netns: &ext.netns,
                ifname: upstream::REGION_ONE_CABLE,
                bridge: Some((&vx, upstream::UPSTREAM_BRIDGE)),
                tag: None,
            },
        )? {
            progress("cable eth2 node1 (br-ext) <-> ext");
            rep.changes.push("cable eth2 of node1".into());
        }
        if upstream::ensure_upstream(
            &ext.netns,
            &vx,
            &up1,
            upstream::REGION_ONE_LEG_PORT,
            upstream::REGION_ONE_LEG_IF,
        )? {
            progress(format!(
                "RegionOne's upstream router {} on VLAN {} in {}",
                up1.gateway, up1.vlan, ext.netns
            ));
            rep.changes.push("RegionOne's upstream router".into());
        }
    }

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
        // Agents, each on a metrics port of its own (re-picked if someone took it).
        for i in 0..st.nodes.len() {
            let d = agents::daemon(&st, &st.nodes[i]);
            if d.alive() {
                continue;
            }
            if !port_free(st.nodes[i].metrics_port) {
                let mut taken = vec![st.tricircle_port, st.neutron_port];
                taken.extend(st.nodes.iter().map(|n| n.metrics_port));
                st.nodes[i].metrics_port = free_port(&taken)?;
                st.save()?;
            }
            let node = &st.nodes[i];
            progress(format!("starting the agent of {}", node.name));
            match agents::start(&st, node, &o.agent_bin)? {
                None => rep.changes.push(d.name.clone()),
                Some(why) => rep.not_running.push((d.name.clone(), why)),
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
    for inst in state::OVS_INSTANCES {
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
    remove_files(&layout, st.created_dir)?;
    Ok(rep)
}

fn remove_files(layout: &Layout, created_dir: bool) -> Result<()> {
    for p in layout.owned_paths() {
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
    for node in &st.nodes {
        out.push_str(&format!(
            "export CROSSPOD_OVSDB_{}={}\n",
            node.name,
            shell_quote(&st.layout().ovsdb_remote(&node.name))
        ));
        // Each node's own credential, to act as that node by hand
        // (`curl --cacert $CROSSPOD_CA --cert $CROSSPOD_AGENT_CERT_node1 --key ...`).
        let f = crate::pki::files(&pki_dir, &node.name);
        out.push_str(&format!(
            "export CROSSPOD_AGENT_CERT_{}={}\nexport CROSSPOD_AGENT_KEY_{}={}\n",
            node.name,
            shell_quote(&f.cert.display().to_string()),
            node.name,
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
