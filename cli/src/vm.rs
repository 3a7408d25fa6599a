//! `crosspod vm`: the Nova stand-in of the lab. A VM is a namespace whose `eth0` has the
//! Neutron port's MAC and address and a default route via the subnet's gateway; the other end
//! of its veth sits in the region's node namespace, plugged into br-vlan with
//! `external_ids:iface-id=<port id>` as os-vif does, untagged: tagging is the agent's job.
//! Each booted VM is recorded in `<lab dir>/vms/<name>.json`.
//!
//! A VM gets its address either statically (written into the namespace, as before DHCP) or by
//! DHCP: busybox `udhcpc` runs inside the namespace with the lab's script
//! (`scripts/udhcpc-vm.sh`), which applies address, default route, option 121 routes and MTU,
//! and writes the VM's own `/etc/netns/<vm>/resolv.conf` (made before the client starts, so
//! `ip netns exec` bind-mounts it and the host's `/etc/resolv.conf` is never written). The
//! client goes on running to renew; its pid, script and log files sit in the lab's `vms/`
//! directory and go with `vm delete` and `lab down`.
//!
//! Every fixed IP of the port is configured (dual-stack and IPv6-only ports). IPv6 follows
//! the subnet's `ipv6_address_mode`, as a cloud image would: `slaac` and `dhcpv6-stateless`
//! take the router's advertisements (the kernel forms the EUI-64 address the API shows),
//! `dhcpv6-stateful` runs ISC `dhclient -6` in the namespace (the address by DHCPv6, the
//! default route from the advertisements), and a subnet without a mode gets the address
//! written with `::/0` via its gateway. `--static` writes every address itself.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use plumbing::route::Route;
use plumbing::{Handle, Netns, VethEnd, VethSpec};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http;
use crate::lab::daemons::Daemon;
use crate::lab::state::{LabState, Layout};
use crate::ovsdb::Ovsdb;

/// The bridge VM ports are plugged into.
pub const VM_BRIDGE: &str = "br-vlan";
/// The VM-side interface name.
pub const VM_IF: &str = "eth0";

/// A booted lab VM, as recorded in the lab directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    /// VM name (also its namespace).
    pub name: String,
    /// Region (pod) it was booted in.
    pub region: String,
    /// Node it runs on (`node1`, `node2`).
    pub node: String,
    /// The node's namespace.
    pub node_netns: String,
    /// The node's OVSDB remote.
    pub ovsdb: String,
    /// Neutron port id.
    pub port_id: String,
    /// Port MAC.
    pub mac: String,
    /// Address and prefix on eth0.
    pub address: IpNet,
    /// Default gateway, if the subnet has one.
    pub gateway: Option<IpAddr>,
    /// Network id.
    pub network_id: String,
    /// The node-side interface (`tap` + port id prefix).
    pub tap: String,
    /// The VM's device id sent to Neutron.
    pub device_id: String,
    /// Whether `vm boot` created the namespace (always, unless the record is partial).
    pub created_netns: bool,
    /// Whether the address came by DHCP (a `udhcpc` runs in the namespace to renew it).
    #[serde(default)]
    pub dhcp: bool,
    /// Every address of the VM (one per fixed IP of the port) and how it was configured;
    /// empty in records written before dual-stack VMs (then `address` is the only one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<VmAddress>,
    /// Whether a DHCPv6 client (`dhclient -6`) runs in the namespace.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dhcp6: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl VmRecord {
    /// Every address of the VM: the recorded list, or `address` alone for an old record.
    pub fn all_addresses(&self) -> Vec<VmAddress> {
        if !self.addresses.is_empty() {
            return self.addresses.clone();
        }
        vec![VmAddress {
            address: self.address,
            gateway: self.gateway,
            how: if self.dhcp {
                AddrHow::Dhcp
            } else {
                AddrHow::Static
            },
            subnet_id: String::new(),
        }]
    }
}

/// How one address of a VM is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddrHow {
    /// Written into the namespace by `vm boot` (with the default route via the gateway).
    Static,
    /// IPv4 DHCP (`udhcpc`).
    Dhcp,
    /// IPv6 SLAAC from the router's advertisements.
    Slaac,
    /// SLAAC; other configuration by DHCPv6 (not asked for by the lab VM).
    Dhcpv6Stateless,
    /// DHCPv6 (`dhclient -6`); default route from the router's advertisements.
    Dhcpv6Stateful,
}

impl AddrHow {
    /// Whether the VM's kernel must take router advertisements for it.
    pub fn takes_ra(self) -> bool {
        matches!(
            self,
            AddrHow::Slaac | AddrHow::Dhcpv6Stateless | AddrHow::Dhcpv6Stateful
        )
    }

    /// Neutron's word for it (`static` for an address written by hand).
    pub fn as_str(self) -> &'static str {
        match self {
            AddrHow::Static => "static",
            AddrHow::Dhcp => "dhcp",
            AddrHow::Slaac => "slaac",
            AddrHow::Dhcpv6Stateless => "dhcpv6-stateless",
            AddrHow::Dhcpv6Stateful => "dhcpv6-stateful",
        }
    }
}

/// One address of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmAddress {
    /// Address and the subnet's prefix length.
    pub address: IpNet,
    /// The subnet's gateway (a static address's default route goes there).
    pub gateway: Option<IpAddr>,
    /// How it is configured.
    pub how: AddrHow,
    /// The subnet it is on.
    #[serde(default)]
    pub subnet_id: String,
}

/// What `vm boot` needs to know of a port's subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetView {
    /// Subnet id.
    pub id: String,
    /// CIDR.
    pub cidr: IpNet,
    /// Gateway.
    pub gateway: Option<IpAddr>,
    /// `enable_dhcp`.
    pub enable_dhcp: bool,
    /// `ipv6_address_mode`, when set.
    pub ipv6_address_mode: Option<String>,
}

impl SubnetView {
    /// Reads Neutron's subnet object.
    pub fn from_json(v: &Value) -> Result<SubnetView> {
        Ok(SubnetView {
            id: v["id"].as_str().unwrap_or_default().to_string(),
            cidr: v["cidr"]
                .as_str()
                .context("subnet without cidr")?
                .parse()
                .context("subnet cidr unreadable")?,
            gateway: v["gateway_ip"].as_str().and_then(|g| g.parse().ok()),
            enable_dhcp: v["enable_dhcp"].as_bool().unwrap_or(true),
            ipv6_address_mode: v["ipv6_address_mode"].as_str().map(str::to_string),
        })
    }
}

/// How each fixed IP of a port is configured in the VM, by `mode` and its subnet: IPv4 by
/// DHCP (only the first IPv4 address: one `udhcpc` holds one lease) or statically, IPv6 by
/// the subnet's `ipv6_address_mode` (none: static), everything static with `--static`.
pub fn plan_addresses(fixed: &[(IpAddr, SubnetView)], mode: AddressMode) -> Result<Vec<VmAddress>> {
    let mut out = Vec::new();
    let mut v4_dhcp_taken = false;
    for (ip, s) in fixed {
        let how = match (ip, mode) {
            (_, AddressMode::Static) => AddrHow::Static,
            (IpAddr::V4(_), AddressMode::Dhcp) if !v4_dhcp_taken => AddrHow::Dhcp,
            (IpAddr::V4(_), AddressMode::Auto) if !v4_dhcp_taken && s.enable_dhcp => {
                AddrHow::Dhcp
            }
            (IpAddr::V4(_), _) => AddrHow::Static,
            (IpAddr::V6(_), _) => match s.ipv6_address_mode.as_deref() {
                None => AddrHow::Static,
                Some("slaac") => AddrHow::Slaac,
                Some("dhcpv6-stateless") => AddrHow::Dhcpv6Stateless,
                Some("dhcpv6-stateful") => AddrHow::Dhcpv6Stateful,
                Some(other) => bail!(
                    "subnet {} has ipv6_address_mode {other:?}, which `vm boot` does not know; use --static to write the address",
                    s.id
                ),
            },
        };
        if how == AddrHow::Dhcp {
            v4_dhcp_taken = true;
        }
        if ip.is_ipv4() != s.cidr.addr().is_ipv4() {
            bail!("fixed IP {ip} is not of its subnet {}'s family", s.id);
        }
        out.push(VmAddress {
            address: IpNet::new(*ip, s.cidr.prefix_len()).context("address/prefix")?,
            gateway: s.gateway,
            how,
            subnet_id: s.id.clone(),
        });
    }
    Ok(out)
}

/// How `vm boot` gives the VM its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressMode {
    /// DHCP when the port's subnet is IPv4 with `enable_dhcp` (the controller then serves it
    /// in every pod the network reaches); otherwise static.
    #[default]
    Auto,
    /// Written into the namespace by `vm boot`.
    Static,
    /// By DHCP; no lease is an error.
    Dhcp,
}

/// The lab VMs' DHCP client script (one copy for the CLI and the agent's tests).
const UDHCPC_SCRIPT: &str = include_str!("../../scripts/udhcpc-vm.sh");
/// How long `vm boot` waits for a lease: `udhcpc -t 15 -T 2`, then it gives up. A network's
/// DHCP server in a pod starts only once a port there is bound (the node's agent reports the
/// VM's interface, the controller places the server, the agent makes its namespace): 10 s was
/// seen running out on two loaded cores, so 30.
const DHCP_TRIES: &str = "15";
const DHCP_TIMEOUT_S: &str = "2";

/// The files of a VM's DHCP client in the lab's `vms/` directory, and its resolv.conf dir.
struct DhcpFiles {
    script: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    events: PathBuf,
    netns_etc: PathBuf,
}

impl DhcpFiles {
    fn of(vms_dir: &Path, name: &str) -> DhcpFiles {
        DhcpFiles {
            script: vms_dir.join(format!("{name}.udhcpc.sh")),
            pid: vms_dir.join(format!("{name}.udhcpc.pid")),
            log: vms_dir.join(format!("{name}.udhcpc.log")),
            events: vms_dir.join(format!("{name}.dhcp-events")),
            netns_etc: PathBuf::from(format!("/etc/netns/{name}")),
        }
    }

    /// The client as a lab daemon: its pid is trusted only while its command line names this
    /// VM's script, so a recycled pid is never signalled.
    fn client(&self, name: &str) -> Daemon {
        Daemon {
            name: format!("udhcpc@{name}"),
            pidfile: self.pid.clone(),
            log: self.log.clone(),
            marker: self.script.display().to_string(),
        }
    }

    /// Stops the client (SIGTERM, then SIGKILL) and removes the files.
    fn remove(&self, name: &str) {
        stop_client(
            name,
            &self.client(name),
            &[&self.script, &self.pid, &self.log, &self.events],
            "DHCP client",
        );
        if self.netns_etc.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.netns_etc) {
                tracing::warn!(vm = name, dir = %self.netns_etc.display(), error = %e, "removing the VM's /etc/netns directory");
            }
        }
    }
}

/// Runs udhcpc in the VM namespace until it has a lease (then it stays in the background to
/// renew); checks the lease is the port's address.
fn dhcp_lease(name: &str, vms_dir: &Path, want: IpNet) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let f = DhcpFiles::of(vms_dir, name);
    std::fs::create_dir_all(vms_dir).context("creating the lab's vms directory")?;
    std::fs::write(&f.script, UDHCPC_SCRIPT)
        .with_context(|| format!("writing {}", f.script.display()))?;
    std::fs::set_permissions(&f.script, std::fs::Permissions::from_mode(0o755))?;
    std::fs::create_dir_all(&f.netns_etc)
        .with_context(|| format!("creating {}", f.netns_etc.display()))?;
    std::fs::write(f.netns_etc.join("resolv.conf"), "")
        .with_context(|| format!("writing {}/resolv.conf", f.netns_etc.display()))?;
    let log =
        std::fs::File::create(&f.log).with_context(|| format!("creating {}", f.log.display()))?;
    // Without -f, udhcpc stays in the foreground until it has a lease, then forks to the
    // background (rewriting the pid file) to renew; -n: no lease after the tries is exit 1.
    let st = std::process::Command::new("ip")
        .args(["netns", "exec", name, "udhcpc", "-i", VM_IF, "-n"])
        .args([
            "-t",
            DHCP_TRIES,
            "-T",
            DHCP_TIMEOUT_S,
            "-O",
            "staticroutes",
            "-O",
            "mtu",
        ])
        .arg("-s")
        .arg(&f.script)
        .arg("-p")
        .arg(&f.pid)
        .env("CROSSPOD_DHCP_LOG", &f.events)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running udhcpc (scripts/install-deps.sh installs it)")?;
    if !st.success() {
        bail!(
            "no DHCP lease for {name} within {}x{}s (is a DHCP server serving the network? the client's log: {}); use --static to boot without DHCP",
            DHCP_TRIES,
            DHCP_TIMEOUT_S,
            f.log.display()
        );
    }
    // The client forks to the background after its lease and the child rewrites the pid
    // file: wait for that, so `vm delete` finds the process that renews.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let client = f.client(name);
    loop {
        if client.alive() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "the DHCP client of {name} did not stay in the background to renew (log: {})",
                f.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = Handle::new(&Netns::named(name))?.link_addresses(VM_IF)?;
    if !got.contains(&want) {
        bail!("the DHCP lease of {name} gave {got:?}, not the port's {want}");
    }
    Ok(())
}

/// How long `vm boot` waits for the kernel to configure IPv6 from router advertisements
/// (the VM solicits every second; routers also advertise unsolicited).
pub const RA_WAIT: Duration = Duration::from_secs(15);
/// How long `vm boot` waits for a DHCPv6 lease.
pub const DHCP6_WAIT: Duration = Duration::from_secs(15);

/// The VM's own script for `dhclient -6`: applies only the leased address, with the subnet's
/// prefix length baked in (DHCPv6 hands out a bare address; the on-link prefix and the
/// default route come from the router's advertisements), and never writes resolv.conf.
fn dhclient6_script(prefix_len: u8) -> String {
    format!(
        r#"#!/bin/sh
# dhclient -6 script of a crosspod lab VM (`crosspod vm boot`, dhcpv6-stateful subnets).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
plen={prefix_len}
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
    if [ -n "${{old_ip6_address:-}}" ] && [ "$old_ip6_address" != "$new_ip6_address" ]; then
        ip -6 addr del "$old_ip6_address/$plen" dev "$interface" 2>/dev/null
    fi
    [ -n "${{new_ip6_address:-}}" ] && ip -6 addr replace "$new_ip6_address/$plen" dev "$interface" nodad
    ;;
EXPIRE6|RELEASE6|STOP6)
    [ -n "${{old_ip6_address:-}}" ] && ip -6 addr del "$old_ip6_address/$plen" dev "$interface" 2>/dev/null
    ;;
esac
exit 0
"#
    )
}

/// The files of a VM's DHCPv6 client in the lab's `vms/` directory.
struct Dhcp6Files {
    script: PathBuf,
    pid: PathBuf,
    leases: PathBuf,
    conf: PathBuf,
    log: PathBuf,
}

impl Dhcp6Files {
    fn of(vms_dir: &Path, name: &str) -> Dhcp6Files {
        Dhcp6Files {
            script: vms_dir.join(format!("{name}.dhclient6.sh")),
            pid: vms_dir.join(format!("{name}.dhclient6.pid")),
            leases: vms_dir.join(format!("{name}.dhclient6.leases")),
            conf: vms_dir.join(format!("{name}.dhclient6.conf")),
            log: vms_dir.join(format!("{name}.dhclient6.log")),
        }
    }

    /// The client as a lab daemon (trusted only while its command line names this VM's
    /// script).
    fn client(&self, name: &str) -> Daemon {
        Daemon {
            name: format!("dhclient6@{name}"),
            pidfile: self.pid.clone(),
            log: self.log.clone(),
            marker: self.script.display().to_string(),
        }
    }

    /// Stops the client (SIGTERM, then SIGKILL) and removes the files.
    fn remove(&self, name: &str) {
        stop_client(
            name,
            &self.client(name),
            &[&self.script, &self.pid, &self.leases, &self.conf, &self.log],
            "DHCPv6 client",
        );
    }
}

/// Stops a VM's DHCP or DHCPv6 client (SIGTERM, then SIGKILL) and removes its files; files
/// already gone are fine, other failures are logged (cleanup goes on).
fn stop_client(name: &str, client: &Daemon, files: &[&PathBuf], what: &str) {
    if let Err(e) = client.stop(Duration::from_secs(2)) {
        tracing::warn!(vm = name, error = %e, "stopping the {what}");
    }
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(vm = name, file = %f.display(), error = %e, "removing a {what} file")
            }
        }
    }
}

/// An IPv6 address of a VM's `eth0` as the kernel holds it (`/proc/net/if_inet6`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelAddr6 {
    /// Address and prefix length.
    pub net: IpNet,
    /// Still doing duplicate address detection (not usable yet).
    pub tentative: bool,
}

/// Parses `/proc/net/if_inet6` for the addresses of `ifname`.
fn parse_if_inet6(text: &str, ifname: &str) -> Vec<KernelAddr6> {
    const IFA_F_TENTATIVE: u32 = 0x40;
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 6 || f[5] != ifname || f[0].len() != 32 {
                return None;
            }
            let bits = u128::from_str_radix(f[0], 16).ok()?;
            let plen = u8::from_str_radix(f[2], 16).ok()?;
            let flags = u32::from_str_radix(f[4], 16).ok()?;
            Some(KernelAddr6 {
                net: IpNet::new(IpAddr::V6(bits.into()), plen).ok()?,
                tentative: flags & IFA_F_TENTATIVE != 0,
            })
        })
        .collect()
}

/// The IPv6 addresses of `ifname` in namespace `ns`.
pub fn kernel_addrs6(ns: &str, ifname: &str) -> Result<Vec<KernelAddr6>> {
    let text = plumbing::netns::run_in(&Netns::named(ns), || {
        // /proc/net follows the process, not the thread that entered the namespace.
        std::fs::read_to_string("/proc/thread-self/net/if_inet6")
    })?;
    match text {
        Ok(t) => Ok(parse_if_inet6(&t, ifname)),
        // No IPv6 address at all in the namespace yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading /proc/net/if_inet6 in {ns}")),
    }
}

/// Whether namespace `ns` has an IPv6 default route (from a router advertisement or static).
pub fn has_default_v6(ns: &str) -> Result<bool> {
    let any: IpNet = "::/0".parse().expect("valid");
    Ok(Handle::new(&Netns::named(ns))?
        .routes()?
        .iter()
        .any(|r| r.dst == any && r.table == plumbing::route::MAIN_TABLE && r.unicast))
}

/// Makes new interfaces of VM namespace `ns` take router advertisements (`accept_ra=2`,
/// `autoconf=1`, soliciting every second) or ignore them (a VM whose IPv6 addresses are all
/// written by hand), before `eth0` exists, so the kernel solicits as soon as the link is up.
pub fn set_ra_defaults(ns: &str, take_ra: bool) -> Result<()> {
    let n = Netns::named(ns);
    let (ra, auto) = if take_ra { ("2", "1") } else { ("0", "0") };
    for (k, v) in [
        ("net.ipv6.conf.default.accept_ra", ra),
        ("net.ipv6.conf.default.autoconf", auto),
        ("net.ipv6.conf.default.router_solicitation_interval", "1"),
    ] {
        plumbing::sysctl::set(&n, k, v).with_context(|| format!("sysctl {k}={v} in {ns}"))?;
    }
    Ok(())
}

/// Sets them on `ifname` itself too, so they hold whatever the namespace's defaults were when
/// the interface appeared.
fn set_ra_on(ns: &str, ifname: &str, take_ra: bool) -> Result<()> {
    let n = Netns::named(ns);
    let (ra, auto) = if take_ra { ("2", "1") } else { ("0", "0") };
    for (k, v) in [
        (format!("net.ipv6.conf.{ifname}.accept_ra"), ra),
        (format!("net.ipv6.conf.{ifname}.autoconf"), auto),
    ] {
        plumbing::sysctl::set(&n, &k, v).with_context(|| format!("sysctl {k}={v} in {ns}"))?;
    }
    Ok(())
}

/// Waits until `ns`'s `eth0` holds every address in `want` (not tentative) and, when
/// `need_default`, an IPv6 default route; the error says what the kernel has instead.
pub fn wait_v6(
    ns: &str,
    want: &[IpNet],
    need_default: bool,
    timeout: Duration,
    what: &str,
) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let have = kernel_addrs6(ns, VM_IF)?;
        let ready = |w: &IpNet| {
            have.iter().any(|a| {
                a.net.addr() == w.addr() && a.net.prefix_len() == w.prefix_len() && !a.tentative
            })
        };
        let addrs_ok = want.iter().all(ready);
        let default_ok = !need_default || has_default_v6(ns)?;
        if addrs_ok && default_ok {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            let missing: Vec<String> = want
                .iter()
                .filter(|w| !ready(w))
                .map(|w| w.to_string())
                .collect();
            let shown: Vec<String> = have
                .iter()
                .map(|a| format!("{}{}", a.net, if a.tentative { " (tentative)" } else { "" }))
                .collect();
            bail!(
                "{ns} got no IPv6 configuration by {what} within {}s: missing address(es) {missing:?}{}; {VM_IF} has {shown:?}. Is a router instance advertising on this network (the subnet's ipv6_ra_mode set, a router interface on it, the pod's agent running)? `--static` writes the addresses instead",
                timeout.as_secs(),
                if default_ok { "" } else { " and no IPv6 default route" },
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `eth0`'s link-local address to finish duplicate address detection (a DHCPv6
/// client cannot bind before).
fn wait_link_local(ns: &str, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let have = kernel_addrs6(ns, VM_IF)?;
        if have.iter().any(|a| {
            matches!(a.net.addr(), IpAddr::V6(v) if v.segments()[0] == 0xfe80) && !a.tentative
        }) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "{VM_IF} of {ns} has no usable IPv6 link-local address after {}s ({have:?})",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `dhclient -6` in the VM namespace (in the background, to renew) and waits until
/// the kernel holds `want`; on failure the client and its files are removed again.
pub fn dhcp6_lease(name: &str, vms_dir: &Path, want: IpNet, timeout: Duration) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let f = Dhcp6Files::of(vms_dir, name);
    let run = || -> Result<()> {
        std::fs::create_dir_all(vms_dir).context("creating the lab's vms directory")?;
        std::fs::write(&f.script, dhclient6_script(want.prefix_len()))
            .with_context(|| format!("writing {}", f.script.display()))?;
        std::fs::set_permissions(&f.script, std::fs::Permissions::from_mode(0o755))?;
        // Not the host's /etc/dhcp/dhclient.conf: the lab VM asks for an address only.
        std::fs::write(&f.conf, "# crosspod lab VM: the defaults\n")
            .with_context(|| format!("writing {}", f.conf.display()))?;
        wait_link_local(name, Duration::from_secs(5))?;
        let log = std::fs::File::create(&f.log)
            .with_context(|| format!("creating {}", f.log.display()))?;
        // -nw: to the background at once (the wait is ours, bounded); -D LL: the DUID carries
        // the port's MAC, which DHCPv6 servers such as crosspod's agent key leases by.
        let st = std::process::Command::new("ip")
            .args(["netns", "exec", name, "dhclient", "-6", "-nw", "-D", "LL"])
            .arg("-sf")
            .arg(&f.script)
            .arg("-pf")
            .arg(&f.pid)
            .arg("-lf")
            .arg(&f.leases)
            .arg("-cf")
            .arg(&f.conf)
            .arg(VM_IF)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("running dhclient (isc-dhcp-client; scripts/install-deps.sh installs it)")?;
        if !st.success() {
            bail!(
                "dhclient -6 for {name} failed to start ({st}): {}",
                std::fs::read_to_string(&f.log).unwrap_or_default().trim()
            );
        }
        wait_v6(name, &[want], false, timeout, "DHCPv6").map_err(|e| {
            anyhow!(
                "{e:#} (dhclient's log: {}; is a DHCPv6 server serving the subnet?)",
                f.log.display()
            )
        })?;
        if !f.client(name).alive() {
            bail!(
                "the DHCPv6 client of {name} did not stay in the background to renew (log: {})",
                f.log.display()
            );
        }
        Ok(())
    };
    let r = run();
    if r.is_err() {
        f.remove(name);
    }
    r
}

/// Where the Neutron API is and who calls it.
#[derive(Debug, Clone)]
pub struct Api {
    /// Base URL, e.g. `http://127.0.0.1:20001`.
    pub endpoint: String,
    /// `X-Auth-Token`.
    pub token: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.trim_end_matches('/'))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let r = http::request(
            method,
            &self.url(path),
            Some(&self.token),
            body,
            Duration::from_secs(15),
        )
        .with_context(|| {
            format!(
                "is the controller running? (`crosspod lab status`; OS_ENDPOINT={})",
                self.endpoint
            )
        })?;
        let v = r.json().unwrap_or(Value::String(r.body.clone()));
        Ok((r.status, v))
    }

    fn expect(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, v) = self.call(method, path, body)?;
        if !(200..300).contains(&status) {
            let msg = v
                .pointer("/NeutronError/message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            bail!("{method} {} answered {status}: {msg}", self.url(path));
        }
        Ok(v)
    }

    /// Resolves a network name or id to its id.
    pub fn network_id(&self, net: &str) -> Result<String> {
        if uuid::Uuid::parse_str(net).is_ok() {
            let (status, v) = self.call("GET", &format!("/v2.0/networks/{net}"), None)?;
            if status == 200 {
                if let Some(id) = v.pointer("/network/id").and_then(Value::as_str) {
                    return Ok(id.to_string());
                }
            }
        }
        let v = self.expect("GET", &format!("/v2.0/networks?name={}", encode(net)), None)?;
        let ids: Vec<String> = v["networks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|n| n["name"] == net)
                    .filter_map(|n| n["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        match ids.len() {
            1 => Ok(ids[0].clone()),
            0 => bail!("no network named or with id {net:?} is visible with this token (`openstack network list`)"),
            n => bail!("{n} networks are named {net:?}; pass the network id instead"),
        }
    }
}

/// `%`-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn record_path(layout: &Layout, name: &str) -> PathBuf {
    layout.vms_dir().join(format!("{name}.json"))
}

/// Every VM recorded in the lab directory.
pub fn records(layout: &Layout) -> Result<Vec<VmRecord>> {
    let rd = match std::fs::read_dir(layout.vms_dir()) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context("reading the lab's vms directory"),
    };
    let mut v = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        v.push(serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?);
    }
    v.sort_by(|a: &VmRecord, b| a.name.cmp(&b.name));
    Ok(v)
}

fn save_record(layout: &Layout, r: &VmRecord) -> Result<()> {
    std::fs::create_dir_all(layout.vms_dir()).context("creating the lab's vms directory")?;
    let p = record_path(layout, &r.name);
    std::fs::write(
        &p,
        serde_json::to_string_pretty(r).expect("record serializes"),
    )
    .with_context(|| format!("writing {}", p.display()))
}

/// Checks a VM name: a valid namespace name, free, and not already a lab VM.
pub fn check_name_free(layout: &Layout, name: &str) -> Result<()> {
    plumbing::netns::validate_name(name).map_err(|e| anyhow!("VM name: {e}"))?;
    if name.starts_with('.') || name.len() > 64 {
        bail!("VM name {name:?} must not start with '.' and be at most 64 bytes");
    }
    if record_path(layout, name).exists() {
        bail!("a lab VM named {name} exists already (`crosspod vm list`); delete it first or choose another name");
    }
    if plumbing::netns::exists(name) {
        bail!("a network namespace named {name} exists already; choose another VM name (nothing was changed)");
    }
    Ok(())
}

/// What a VM is plugged with (from a Neutron port).
#[derive(Debug, Clone)]
pub struct PlugSpec {
    /// Port id (the OVS iface-id).
    pub port_id: String,
    /// Port MAC.
    pub mac: String,
    /// Every address and how it is configured; `plug` writes the static ones (and a default
    /// route per family via the first static address's gateway) and sets the namespace up to
    /// take router advertisements when an IPv6 address comes from them.
    pub addresses: Vec<VmAddress>,
}

impl PlugSpec {
    fn takes_ra(&self) -> bool {
        self.addresses.iter().any(|a| a.how.takes_ra())
    }

    fn has_v6(&self) -> bool {
        self.addresses.iter().any(|a| a.address.addr().is_ipv6())
    }
}

/// The node-side interface name for a port: `tap` + 11 characters of its id (as Nova).
pub fn tap_name(port_id: &str) -> String {
    let id: String = port_id.chars().take(11).collect();
    format!("tap{id}")
}

/// Creates the VM namespace and its veth and plugs it into the node's br-vlan. On failure,
/// whatever was made is removed again.
pub fn plug(name: &str, node_netns: &str, db: &Ovsdb, p: &PlugSpec, device_id: &str) -> Result<()> {
    let mac = plumbing::link::parse_mac(&p.mac)
        .with_context(|| format!("port {} has an unreadable MAC {:?}", p.port_id, p.mac))?;
    let tap = tap_name(&p.port_id);
    if !plumbing::netns::create(name).with_context(|| format!("creating namespace {name}"))? {
        bail!("namespace {name} appeared meanwhile; nothing was changed");
    }
    let result = (|| -> Result<()> {
        // Before eth0 exists: it comes up taking (or ignoring) router advertisements.
        if p.has_v6() {
            set_ra_defaults(name, p.takes_ra())?;
        }
        let mut vm_end = VethEnd::new(VM_IF, Netns::named(name));
        vm_end.mac = Some(mac);
        plumbing::link::create_veth(&VethSpec {
            a: vm_end,
            b: VethEnd::new(&tap, Netns::named(node_netns)),
            owner: format!("vm-{name}"),
        })
        .with_context(|| format!("creating the veth of {name} ({VM_IF} <-> {tap}@{node_netns})"))?;
        // A VM's kernel leaves TCP/UDP checksums to the NIC (a veth "offloads" them); the
        // userspace datapath forwards them unfilled and its conntrack drops them as invalid,
        // so security groups would drop every TCP/UDP packet. A real VM's virtio NIC with a
        // hypervisor fills them; here the VM computes them itself.
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", name, "ethtool", "-K", VM_IF, "tx", "off"])
            .output()
            .with_context(|| {
                format!("running ethtool in {name} (scripts/install-deps.sh installs it)")
            })?;
        if !out.status.success() {
            bail!(
                "turning checksum offload off on {VM_IF}@{name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if p.has_v6() {
            set_ra_on(name, VM_IF, p.takes_ra())?;
        }
        let mut h = Handle::new(&Netns::named(name))?;
        let mut routed = (false, false);
        for a in p.addresses.iter().filter(|a| a.how == AddrHow::Static) {
            h.add_address(VM_IF, a.address)
                .with_context(|| format!("giving {} to {VM_IF}@{name}", a.address))?;
            let Some(gw) = a.gateway else { continue };
            let (any, done): (IpNet, &mut bool) = match gw {
                IpAddr::V4(_) => ("0.0.0.0/0".parse().expect("valid"), &mut routed.0),
                IpAddr::V6(_) => ("::/0".parse().expect("valid"), &mut routed.1),
            };
            if !*done {
                h.add_route(&Route::new(any).via(gw))
                    .with_context(|| format!("default route via {gw} in {name}"))?;
                *done = true;
            }
        }
        let mut port = ovs::vswitch::PortSpec::new(&tap);
        port.iface_external_ids = [
            ("iface-id", p.port_id.as_str()),
            ("attached-mac", p.mac.as_str()),
            ("iface-status", "active"),
            ("vm-uuid", device_id),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        db.ensure_port(VM_BRIDGE, &port)
            .with_context(|| format!("plugging {tap} into {VM_BRIDGE} of {node_netns}"))?;
        db.wait_attached(&tap)?;
        Ok(())
    })();
    if let Err(e) = result {
        unplug(name, node_netns, db.remote(), &tap);
        return Err(e);
    }
    Ok(())
}

/// Stops a VM's DHCP clients (IPv4 and IPv6) and removes their files and `/etc/netns/<vm>` (nothing to do for a
/// static VM).
pub fn remove_dhcp_client(vms_dir: &Path, name: &str) {
    DhcpFiles::of(vms_dir, name).remove(name);
    let f6 = Dhcp6Files::of(vms_dir, name);
    if f6.pid.exists() || f6.script.exists() {
        f6.remove(name);
    }
}

/// Removes the OVS port, the veth and the namespace of a VM (each step best effort, so a
/// half-made VM goes away too).
pub fn unplug(name: &str, node_netns: &str, ovsdb: &str, tap: &str) {
    if let Err(e) = Ovsdb::connect(ovsdb).and_then(|db| db.remove_port(tap)) {
        tracing::warn!(vm = name, tap, error = %e, "removing the OVS port failed");
    }
    if plumbing::netns::exists(node_netns) {
        match Handle::new(&Netns::named(node_netns)) {
            Ok(mut h) => {
                if let Err(e) = h.delete_link(tap, false) {
                    tracing::warn!(vm = name, tap, error = %e, "deleting the veth failed");
                }
            }
            Err(e) => tracing::warn!(vm = name, error = %e, "opening the node namespace failed"),
        }
    }
    if let Err(e) = plumbing::netns::delete(name) {
        tracing::warn!(vm = name, error = %e, "deleting the VM namespace failed");
    }
}

/// `crosspod vm boot`.
pub fn boot(
    dir: &Path,
    api: &Api,
    region: &str,
    node: Option<&str>,
    network: &str,
    name: &str,
    mode: AddressMode,
) -> Result<VmRecord> {
    let st = LabState::require(dir)?;
    let _lock = crate::lab::lock_dir(dir)?;
    let layout = st.layout();
    let node = match node {
        None => st.node_for_region(region).with_context(|| {
            let mut known: Vec<&str> = st.nodes.iter().map(|n| n.region.as_str()).collect();
            known.dedup();
            format!("no lab node serves region {region:?}; the lab has {known:?}")
        })?,
        Some(want) => {
            let n = st.nodes.iter().find(|n| n.name == want).with_context(|| {
                let known: Vec<&str> = st.nodes.iter().map(|n| n.name.as_str()).collect();
                format!("the lab has no node {want:?}; its nodes are {known:?}")
            })?;
            if n.region != region {
                bail!(
                    "node {want} serves {}, not {region}; pick one of {:?}",
                    n.region,
                    st.nodes
                        .iter()
                        .filter(|n| n.region == region)
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                );
            }
            n
        }
    };
    check_name_free(&layout, name)?;
    let remote = layout.ovsdb_remote(&node.name);
    let db = Ovsdb::connect(&remote).with_context(|| {
        format!(
            "the OVSDB of {} does not answer; is the lab up? (`crosspod lab status`)",
            node.name
        )
    })?;
    let network_id = api.network_id(network)?;
    let device_id = uuid::Uuid::new_v4().to_string();
    crate::output::progress(format!("creating a port on network {network} for {name}"));
    let v = api.expect(
        "POST",
        "/v2.0/ports",
        Some(&json!({"port": {
            "network_id": network_id,
            "name": name,
            "admin_state_up": true,
            "device_id": device_id,
            "device_owner": format!("compute:{}", node.az),
        }})),
    )?;
    let port = &v["port"];
    let port_id = port["id"]
        .as_str()
        .context("the port the API created has no id")?
        .to_string();
    let made = (|| -> Result<VmRecord> {
        let mac = port["mac_address"]
            .as_str()
            .context("the port has no mac_address")?
            .to_string();
        let fixed_ips = port["fixed_ips"].as_array().cloned().unwrap_or_default();
        if fixed_ips.is_empty() {
            bail!("the port has no fixed IP: does the network have a subnet?");
        }
        let mut fixed = Vec::new();
        for ip in &fixed_ips {
            let addr: IpAddr = ip["ip_address"]
                .as_str()
                .context("fixed IP without ip_address")?
                .parse()
                .context("fixed IP unreadable")?;
            let subnet_id = ip["subnet_id"]
                .as_str()
                .context("fixed IP without subnet_id")?;
            let sv = api.expect("GET", &format!("/v2.0/subnets/{subnet_id}"), None)?;
            fixed.push((addr, SubnetView::from_json(&sv["subnet"])?));
        }
        let addresses = plan_addresses(&fixed, mode)?;
        // The record's `address`: the first IPv4 address (as before), else the first one.
        let primary = addresses
            .iter()
            .find(|a| a.address.addr().is_ipv4())
            .unwrap_or(&addresses[0])
            .clone();
        let dhcp = addresses.iter().any(|a| a.how == AddrHow::Dhcp);
        let spec = PlugSpec {
            port_id: port_id.clone(),
            mac: mac.clone(),
            addresses: addresses.clone(),
        };
        let shown: Vec<String> = addresses
            .iter()
            .map(|a| format!("{} {}", a.address, a.how.as_str()))
            .collect();
        crate::output::progress(format!(
            "plugging {name} ({}, {mac}) into br-vlan of {}",
            shown.join(", "),
            node.name
        ));
        plug(name, &node.netns, &db, &spec, &device_id)?;
        let configured = (|| -> Result<bool> {
            if let Some(a) = addresses.iter().find(|a| a.how == AddrHow::Dhcp) {
                crate::output::progress(format!("{name}: waiting for a DHCP lease"));
                dhcp_lease(name, &layout.vms_dir(), a.address)?;
            }
            let by_ra: Vec<IpNet> = addresses
                .iter()
                .filter(|a| matches!(a.how, AddrHow::Slaac | AddrHow::Dhcpv6Stateless))
                .map(|a| a.address)
                .collect();
            if spec.takes_ra() {
                crate::output::progress(format!(
                    "{name}: waiting for router advertisements (SLAAC {by_ra:?}, a default route)"
                ));
                // Not fatal: a VM on a network without an advertising router yet (the guide
                // boots VMs before it makes the router) is what a cloud has too; the router's
                // first advertisements (three at once, then periodic) configure it later.
                if let Err(e) = wait_v6(name, &by_ra, true, RA_WAIT, "router advertisement") {
                    crate::output::progress(format!(
                        "{name}: warning: {e:#}; booted anyway: its kernel takes the address and route when a router advertises"
                    ));
                }
            }
            let mut dhcp6 = false;
            if let Some(a) = addresses.iter().find(|a| a.how == AddrHow::Dhcpv6Stateful) {
                crate::output::progress(format!("{name}: waiting for a DHCPv6 lease"));
                dhcp6_lease(name, &layout.vms_dir(), a.address, DHCP6_WAIT)?;
                dhcp6 = true;
            }
            Ok(dhcp6)
        })();
        let dhcp6 = match configured {
            Ok(d) => d,
            Err(e) => {
                remove_dhcp_client(&layout.vms_dir(), name);
                unplug(name, &node.netns, &remote, &tap_name(&port_id));
                return Err(e);
            }
        };
        let rec = VmRecord {
            name: name.to_string(),
            region: region.to_string(),
            node: node.name.clone(),
            node_netns: node.netns.clone(),
            ovsdb: remote.clone(),
            port_id: port_id.clone(),
            mac,
            address: primary.address,
            gateway: primary.gateway,
            network_id: network_id.clone(),
            tap: tap_name(&port_id),
            device_id: device_id.clone(),
            created_netns: true,
            dhcp,
            addresses,
            dhcp6,
        };
        if let Err(e) = save_record(&layout, &rec) {
            remove_dhcp_client(&layout.vms_dir(), name);
            unplug(name, &node.netns, &remote, &rec.tap);
            return Err(e);
        }
        Ok(rec)
    })();
    if made.is_err() {
        let _ = api.call("DELETE", &format!("/v2.0/ports/{port_id}"), None);
    }
    made
}

/// Waits until the VM's port is ACTIVE (bound by the node's agent). The VM stays as it is
/// when the wait times out: the error says where to look.
pub fn wait_active(api: &Api, rec: &VmRecord, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::from("unknown");
    loop {
        let v = api.expect("GET", &format!("/v2.0/ports/{}", rec.port_id), None)?;
        if let Some(s) = v.pointer("/port/status").and_then(Value::as_str) {
            if s == "ACTIVE" {
                return Ok(());
            }
            last = s.to_string();
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "port {} of VM {} is still {last} after {}s: the agent of {} has not bound it (see `crosspod lab status` and the agent's log in the lab directory); the VM is left as it is",
                rec.port_id,
                rec.name,
                timeout.as_secs(),
                rec.node
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `crosspod vm delete`: unplug, delete the namespace, delete the port.
pub fn delete(dir: &Path, api: Option<&Api>, name: &str) -> Result<VmRecord> {
    let st = LabState::require(dir)?;
    let _lock = crate::lab::lock_dir(dir)?;
    let layout = st.layout();
    let p = record_path(&layout, name);
    let text = std::fs::read_to_string(&p).map_err(|_| {
        anyhow!(
            "no lab VM named {name} in {} (`crosspod vm list`)",
            dir.display()
        )
    })?;
    let rec: VmRecord =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
    remove_dhcp_client(&layout.vms_dir(), &rec.name);
    unplug(&rec.name, &rec.node_netns, &rec.ovsdb, &rec.tap);
    if let Some(api) = api {
        let (status, v) = api.call("DELETE", &format!("/v2.0/ports/{}", rec.port_id), None)?;
        if !(200..300).contains(&status) && status != 404 {
            bail!(
                "VM {name} is unplugged but deleting its port {} answered {status}: {v}",
                rec.port_id
            );
        }
    }
    std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
    Ok(rec)
}

/// One row of `crosspod vm list`.
#[derive(Debug, Clone, Serialize)]
pub struct VmView {
    /// The record.
    #[serde(flatten)]
    pub record: VmRecord,
    /// Whether the namespace exists.
    pub netns_present: bool,
    /// The OVS tag of its port (set by the agent), if any.
    pub tag: Option<String>,
    /// Neutron port status, when the API was reachable.
    pub port_status: Option<String>,
}

/// `crosspod vm list`.
pub fn list(dir: &Path, api: Option<&Api>) -> Result<Vec<VmView>> {
    let st = LabState::require(dir)?;
    let mut out = Vec::new();
    for r in records(&st.layout())? {
        let tag = Ovsdb::connect(&r.ovsdb)
            .ok()
            .and_then(|db| db.port_tag(&r.tap))
            .map(|t| t.to_string());
        let port_status = api.and_then(|a| {
            a.call("GET", &format!("/v2.0/ports/{}", r.port_id), None)
                .ok()
                .and_then(|(s, v)| {
                    if s == 404 {
                        Some("DELETED".to_string())
                    } else {
                        v.pointer("/port/status")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    }
                })
        });
        out.push(VmView {
            netns_present: plumbing::netns::exists(&r.name),
            record: r,
            tag,
            port_status,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_in_an_interface_name() {
        let t = tap_name("3f2a1b4c-5d6e-4f70-8192-a3b4c5d6e7f8");
        assert_eq!(t, "tap3f2a1b4c-5d");
        assert!(t.len() <= 15);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("net 1/a"), "net%201%2Fa");
        assert_eq!(encode("net1"), "net1");
    }

    fn subnet(id: &str, cidr: &str, dhcp: bool, mode: Option<&str>) -> SubnetView {
        let cidr: IpNet = cidr.parse().unwrap();
        SubnetView {
            id: id.into(),
            gateway: Some(match cidr {
                IpNet::V4(n) => IpAddr::V4(n.hosts().next().unwrap()),
                IpNet::V6(n) => IpAddr::V6((u128::from(n.network()) + 1).into()),
            }),
            cidr,
            enable_dhcp: dhcp,
            ipv6_address_mode: mode.map(str::to_string),
        }
    }

    fn hows(v: &[VmAddress]) -> Vec<(String, AddrHow)> {
        v.iter().map(|a| (a.address.to_string(), a.how)).collect()
    }

    #[test]
    fn every_fixed_ip_is_planned_by_family_and_mode() {
        let fixed = vec![
            (
                "10.0.1.5".parse().unwrap(),
                subnet("s4", "10.0.1.0/24", true, None),
            ),
            (
                "10.0.9.5".parse().unwrap(),
                subnet("s4b", "10.0.9.0/24", true, None),
            ),
            (
                "fd00:1::f816:3eff:fe00:1".parse().unwrap(),
                subnet("s6", "fd00:1::/64", true, Some("slaac")),
            ),
            (
                "fd00:2::7".parse().unwrap(),
                subnet("s6b", "fd00:2::/64", true, Some("dhcpv6-stateful")),
            ),
            (
                "fd00:3::7".parse().unwrap(),
                subnet("s6c", "fd00:3::/64", true, None),
            ),
            (
                "fd00:4::f816:3eff:fe00:1".parse().unwrap(),
                subnet("s6d", "fd00:4::/64", false, Some("dhcpv6-stateless")),
            ),
        ];
        let auto = plan_addresses(&fixed, AddressMode::Auto).unwrap();
        assert_eq!(
            hows(&auto),
            vec![
                ("10.0.1.5/24".into(), AddrHow::Dhcp),
                // One udhcpc holds one lease: a second IPv4 address is written.
                ("10.0.9.5/24".into(), AddrHow::Static),
                ("fd00:1::f816:3eff:fe00:1/64".into(), AddrHow::Slaac),
                ("fd00:2::7/64".into(), AddrHow::Dhcpv6Stateful),
                ("fd00:3::7/64".into(), AddrHow::Static),
                (
                    "fd00:4::f816:3eff:fe00:1/64".into(),
                    AddrHow::Dhcpv6Stateless
                ),
            ]
        );
        assert_eq!(auto[2].subnet_id, "s6");
        assert_eq!(auto[4].gateway, Some("fd00:3::1".parse().unwrap()));
        // --static writes everything.
        let st = plan_addresses(&fixed, AddressMode::Static).unwrap();
        assert!(st.iter().all(|a| a.how == AddrHow::Static), "{st:?}");
        // IPv4 without DHCP on the subnet: static unless --dhcp.
        let nodhcp = vec![(
            "10.0.1.5".parse().unwrap(),
            subnet("s4", "10.0.1.0/24", false, None),
        )];
        assert_eq!(
            plan_addresses(&nodhcp, AddressMode::Auto).unwrap()[0].how,
            AddrHow::Static
        );
        assert_eq!(
            plan_addresses(&nodhcp, AddressMode::Dhcp).unwrap()[0].how,
            AddrHow::Dhcp
        );
        // An unknown mode is an error naming it, not a silent static address.
        let odd = vec![(
            "fd00:1::5".parse().unwrap(),
            subnet("s6", "fd00:1::/64", true, Some("magic")),
        )];
        let e = plan_addresses(&odd, AddressMode::Auto)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"magic\"") && e.contains("--static"), "{e}");
        // A fixed IP of the other family than its subnet is refused.
        let bad = vec![(
            "fd00:1::5".parse().unwrap(),
            subnet("s4", "10.0.1.0/24", true, None),
        )];
        assert!(plan_addresses(&bad, AddressMode::Auto).is_err());
    }

    #[test]
    fn old_records_read_with_their_one_address() {
        let old = r#"{"name":"vm1","region":"RegionOne","node":"node1","node_netns":"node1",
            "ovsdb":"unix:/x","port_id":"p","mac":"fa:16:3e:00:00:01","address":"10.0.1.5/24",
            "gateway":"10.0.1.1","network_id":"n","tap":"tapp","device_id":"d",
            "created_netns":true,"dhcp":true}"#;
        let r: VmRecord = serde_json::from_str(old).unwrap();
        assert!(r.addresses.is_empty() && !r.dhcp6);
        let all = r.all_addresses();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].address, "10.0.1.5/24".parse::<IpNet>().unwrap());
        assert_eq!(all[0].how, AddrHow::Dhcp);
        // A new record round-trips with its addresses, spelled as Neutron spells the modes.
        let mut n = r.clone();
        n.addresses = vec![VmAddress {
            address: "fd00:1::5/64".parse().unwrap(),
            gateway: None,
            how: AddrHow::Dhcpv6Stateful,
            subnet_id: "s".into(),
        }];
        n.dhcp6 = true;
        let text = serde_json::to_string(&n).unwrap();
        assert!(text.contains("\"dhcpv6-stateful\""), "{text}");
        assert_eq!(serde_json::from_str::<VmRecord>(&text).unwrap(), n);
    }

    #[test]
    fn if_inet6_lines_give_addresses_and_tentative_flags() {
        let text = "fd000099000000000000000000000050 02 40 00 c0     eth0\n\
                    fe80000000000000f8163efffe123456 02 40 20 80     eth0\n\
                    00000000000000000000000000000001 01 80 10 80       lo\n";
        let got = parse_if_inet6(text, "eth0");
        assert_eq!(
            got,
            vec![
                KernelAddr6 {
                    net: "fd00:99::50/64".parse().unwrap(),
                    tentative: true
                },
                KernelAddr6 {
                    net: "fe80::f816:3eff:fe12:3456/64".parse().unwrap(),
                    tentative: false
                },
            ]
        );
    }

    /// Root tests against the real kernel: a VM namespace and a "router" namespace joined by a
    /// veth, dnsmasq in the router sending real router advertisements (and serving DHCPv6).
    mod kernel {
        use super::super::*;
        use std::process::Command;
        use std::sync::atomic::{AtomicU32, Ordering};

        static N: AtomicU32 = AtomicU32::new(0);

        fn sh(args: &[&str]) {
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        fn require_root() {
            // SAFETY: geteuid has no preconditions.
            assert_eq!(
                unsafe { libc::geteuid() },
                0,
                "these tests need root (namespaces)"
            );
        }

        /// A VM namespace (`eth0`, MAC fa:16:3e:12:34:56, set up the way `plug` does) cabled to a
        /// router namespace (`r0` with `<prefix>::1/64`); everything goes on drop.
        struct Pair {
            vm: String,
            router: String,
            dir: tempfile::TempDir,
            dnsmasq: Option<std::process::Child>,
        }

        impl Pair {
            fn new(prefix: &str, take_ra: bool) -> Pair {
                require_root();
                let n = N.fetch_add(1, Ordering::SeqCst);
                let tag = format!("v6u{}x{n}", std::process::id() % 100_000);
                let p = Pair {
                    vm: format!("{tag}v"),
                    router: format!("{tag}r"),
                    dir: tempfile::tempdir().unwrap(),
                    dnsmasq: None,
                };
                for ns in [&p.vm, &p.router] {
                    plumbing::netns::create(ns).unwrap();
                }
                set_ra_defaults(&p.vm, take_ra).unwrap();
                sh(&[
                    "ip",
                    "link",
                    "add",
                    "eth0",
                    "netns",
                    &p.vm,
                    "address",
                    "fa:16:3e:12:34:56",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "r0",
                    "netns",
                    &p.router,
                ]);
                set_ra_on(&p.vm, VM_IF, take_ra).unwrap();
                sh(&[
                    "ip",
                    "-n",
                    &p.router,
                    "addr",
                    "add",
                    &format!("{prefix}::1/64"),
                    "dev",
                    "r0",
                    "nodad",
                ]);
                sh(&["ip", "-n", &p.router, "link", "set", "r0", "up"]);
                sh(&["ip", "-n", &p.vm, "link", "set", "eth0", "up"]);
                p
            }

            /// dnsmasq advertising every 2 s with `range` (`<prefix>::,ra-only,64` for SLAAC,
            /// a DHCPv6 range for stateful).
            fn advertise(&mut self, range: &str) {
                let d = self.dir.path();
                let child = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &self.router,
                        "dnsmasq",
                        "--keep-in-foreground",
                        "--conf-file=/dev/null",
                        "--port=0",
                        "--interface=r0",
                        "--bind-interfaces",
                        "--enable-ra",
                        "--ra-param=r0,2",
                    ])
                    .arg(format!("--dhcp-range={range}"))
                    .arg(format!("--pid-file={}", d.join("dnsmasq.pid").display()))
                    .arg(format!("--dhcp-leasefile={}", d.join("leases").display()))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("dnsmasq (scripts/install-deps.sh installs it)");
                self.dnsmasq = Some(child);
            }

            fn sysctl(&self, key: &str) -> String {
                plumbing::sysctl::get(&Netns::named(&self.vm), key).unwrap()
            }
        }

        impl Drop for Pair {
            fn drop(&mut self) {
                if let Some(c) = &mut self.dnsmasq {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                remove_dhcp_client(self.dir.path(), &self.vm);
                for ns in [&self.vm, &self.router] {
                    let _ = plumbing::netns::delete(ns);
                }
            }
        }

        #[test]
        fn a_slaac_vm_takes_the_advertised_prefix_and_default_route() {
            let mut p = Pair::new("fd00:99", true);
            assert_eq!(p.sysctl("net.ipv6.conf.eth0.accept_ra"), "2");
            assert_eq!(p.sysctl("net.ipv6.conf.eth0.autoconf"), "1");
            p.advertise("fd00:99::,ra-only,64");
            // EUI-64 of fa:16:3e:12:34:56, what the API shows for a slaac port.
            let want: IpNet = "fd00:99::f816:3eff:fe12:3456/64".parse().unwrap();
            wait_v6(&p.vm, &[want], true, RA_WAIT, "router advertisement").unwrap();
            assert!(has_default_v6(&p.vm).unwrap());
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &p.vm,
                    "ping",
                    "-6",
                    "-c1",
                    "-W2",
                    "fd00:99::1",
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }

        #[test]
        fn without_advertisements_the_wait_fails_saying_what_is_missing() {
            let p = Pair::new("fd00:98", true);
            let want: IpNet = "fd00:98::f816:3eff:fe12:3456/64".parse().unwrap();
            let t = std::time::Instant::now();
            let e = wait_v6(
                &p.vm,
                &[want],
                true,
                Duration::from_secs(2),
                "router advertisement",
            )
            .unwrap_err()
            .to_string();
            assert!(t.elapsed() < Duration::from_secs(4), "the wait is bounded");
            assert!(
                e.contains("no IPv6 configuration by router advertisement within 2s"),
                "{e}"
            );
            assert!(e.contains("fd00:98::f816:3eff:fe12:3456/64"), "{e}");
            assert!(
                e.contains("no IPv6 default route") && e.contains("--static"),
                "{e}"
            );
        }

        #[test]
        fn a_static_vm_ignores_advertisements() {
            let mut p = Pair::new("fd00:97", false);
            assert_eq!(p.sysctl("net.ipv6.conf.eth0.accept_ra"), "0");
            assert_eq!(p.sysctl("net.ipv6.conf.eth0.autoconf"), "0");
            p.advertise("fd00:97::,ra-only,64");
            std::thread::sleep(Duration::from_secs(3));
            let have = kernel_addrs6(&p.vm, VM_IF).unwrap();
            assert!(
                have.iter()
                    .all(|a| !a.net.to_string().starts_with("fd00:97")),
                "{have:?}"
            );
            assert!(!has_default_v6(&p.vm).unwrap());
        }

        #[test]
        fn a_stateful_vm_gets_its_address_from_dhclient_and_the_client_goes_with_it() {
            let mut p = Pair::new("fd00:96", true);
            p.advertise("fd00:96::50,fd00:96::50,64,120");
            let want: IpNet = "fd00:96::50/64".parse().unwrap();
            let vms = p.dir.path().to_path_buf();
            dhcp6_lease(&p.vm, &vms, want, DHCP6_WAIT).unwrap();
            let f = Dhcp6Files::of(&vms, &p.vm);
            assert!(f.client(&p.vm).alive(), "dhclient -6 runs on to renew");
            let have = kernel_addrs6(&p.vm, VM_IF).unwrap();
            assert!(have.iter().any(|a| a.net == want), "{have:?}");
            remove_dhcp_client(&vms, &p.vm);
            assert!(!f.client(&p.vm).alive());
            for file in [&f.script, &f.pid, &f.leases, &f.conf, &f.log] {
                assert!(!file.exists(), "{} left", file.display());
            }
        }

        #[test]
        fn no_dhcpv6_server_fails_clearly_and_leaves_no_client() {
            let p = Pair::new("fd00:95", true);
            let vms = p.dir.path().to_path_buf();
            let want: IpNet = "fd00:95::50/64".parse().unwrap();
            let e = dhcp6_lease(&p.vm, &vms, want, Duration::from_secs(2))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("by DHCPv6 within 2s") && e.contains("DHCPv6 server"),
                "{e}"
            );
            let f = Dhcp6Files::of(&vms, &p.vm);
            assert!(!f.pid.exists() && !f.script.exists());
            let dhclients: Vec<_> = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains(&*f.script.to_string_lossy()))
                        .unwrap_or(false)
                })
                .collect();
            assert!(dhclients.is_empty(), "a dhclient is left");
        }
    }
}
