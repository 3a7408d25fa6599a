//! The Linux side of a node through the `plumbing` crate: one namespace per router instance
//! (`<prefix>qrouter-<router id>`), veth legs with one end in it and the other in the node
//! namespace (where the node's ovs-vswitchd runs), addresses, forwarding, owned routes and the
//! crosspod nftables table; probes from inside the namespaces. DHCP servers get a namespace
//! each too (`<prefix>qdhcp-<network id>`, one veth, one address per subnet) and then a socket
//! in it ([`crate::dhcp`]). Router legs with `ipv6_ra` get a router advertisement task
//! ([`crate::ra`]); router namespaces forward IPv6 as well as IPv4. A dual-stack leg's IPv6
//! addresses (`extra_addresses`) and IPv6 routes (`::/0` included) are synced, owned and
//! announced (unsolicited neighbour advertisements) as the IPv4 ones are.
//!
//! Netlink and namespace work is blocking and switches namespaces on its own threads
//! (`plumbing::netns::run_in`), so it runs under `spawn_blocking`, never on a tokio worker.
//! Every step reads first and writes only the difference; the count of writes is returned so a
//! restart with nothing changed can be shown to change nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use plumbing::{netns, Changed, Handle, NatSpec, Netns, ProbeOptions, Route, VethEnd, VethSpec};
use wire::names::{DHCP_NS_PREFIX, ROUTER_NS_PREFIX};

use crate::dhcp::{DhcpCounters, DhcpIntent, DhcpService, NsState};
use crate::intent::{NodeIntent, RouterIntent};
use crate::ra::{RaCounters, RaService, RaTiming};
use crate::reconciler::{Announce, LinuxBackend, RouterSync};

/// Router instances synced in parallel.
const SYNC_WORKERS: usize = 4;
/// Gratuitous ARP rounds when a router leg comes up, and the gap between them.
pub const GARP_COUNT: u32 = 3;
/// See [`GARP_COUNT`].
pub const GARP_GAP: Duration = Duration::from_millis(100);

/// Alias owner tag on the veths the agent creates (`crosspod:agent`).
pub const LINK_OWNER: &str = "agent";

/// Errors of the Linux side that concern the whole node (per-router errors are reported per
/// router instead).
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    #[error("listing network namespaces: {0}")]
    List(#[source] plumbing::Error),
    #[error("the Linux worker thread failed: {0}")]
    Join(String),
}

/// The node's Linux networking.
#[derive(Debug, Clone)]
pub struct NetnsBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where the node-side veth ends go (the node's ovs-vswitchd namespace).
    node_netns: Netns,
    /// Namespace prefix of this agent's router instances.
    prefix: String,
    probe: ProbeOptions,
    /// The node's DHCP servers (sockets and tasks).
    dhcp: DhcpService,
    /// The node's advertising router legs (sockets and tasks).
    ra: RaService,
}

impl NetnsBackend {
    /// `node_netns` empty means the agent's own namespace (production nodes).
    pub fn new(node_netns: &str, prefix: &str) -> Self {
        Self::with_dhcp_counters(node_netns, prefix, DhcpCounters::default())
    }

    /// As [`NetnsBackend::new`], counting DHCP traffic into `counters` (the agent's metrics).
    pub fn with_dhcp_counters(node_netns: &str, prefix: &str, counters: DhcpCounters) -> Self {
        let node_netns = if node_netns.is_empty() {
            Netns::Current
        } else {
            Netns::named(node_netns)
        };
        NetnsBackend {
            inner: Arc::new(Inner {
                node_netns,
                prefix: prefix.to_string(),
                probe: ProbeOptions {
                    timeout: Duration::from_millis(500),
                    retries: 1,
                },
                dhcp: DhcpService::new(counters),
                ra: RaService::default(),
            }),
        }
    }

    /// The namespaces this agent owns that exist now (router instances and DHCP servers).
    pub fn owned_namespaces(&self) -> Result<Vec<String>, LinuxError> {
        let routers = format!("{}{ROUTER_NS_PREFIX}", self.inner.prefix);
        let dhcp = format!("{}{DHCP_NS_PREFIX}", self.inner.prefix);
        Ok(netns::list()
            .map_err(LinuxError::List)?
            .into_iter()
            .filter(|n| n.starts_with(&routers) || n.starts_with(&dhcp))
            .collect())
    }

    /// How many DHCP servers are listening now.
    pub fn dhcp_serving(&self) -> usize {
        self.inner.dhcp.serving()
    }

    /// Counts router advertisements into `counters` (the agent's metrics) and sends them at
    /// `timing`, for the legs that start advertising from now on.
    pub fn configure_ra(&self, counters: RaCounters, timing: RaTiming) {
        self.inner.ra.configure(counters, timing);
    }

    /// How many router legs send router advertisements now.
    pub fn ra_advertising(&self) -> usize {
        self.inner.ra.advertising()
    }
}

fn delete_owned_links(ns: &str) -> usize {
    let res = (|| -> Result<usize, plumbing::Error> {
        let mut h = Handle::new(&Netns::named(ns))?;
        let mut n = 0;
        for link in h.owned_links()? {
            if h.delete_link(&link.name, false)? {
                n += 1;
            }
        }
        Ok(n)
    })();
    res.unwrap_or_else(|e| {
        tracing::warn!(netns = %ns, error = %e, "deleting the legs of a stale router namespace");
        0
    })
}

/// One namespace to sync.
enum Job<'a> {
    Router(&'a String, &'a RouterIntent),
    Dhcp(&'a String, &'a DhcpIntent),
}

/// One veth of an owned namespace (a router leg, or a DHCP server's interface).
struct Leg<'a> {
    /// The end inside the namespace.
    ns_ifname: &'a str,
    /// The end in the node namespace (plugged into OVS by the OVS side).
    node_ifname: &'a str,
    /// MAC of the inside end.
    mac: &'a str,
    /// Addresses of the inside end.
    addrs: &'a [IpNet],
    /// MTU of both ends (`None`: left as the kernel made it).
    mtu: Option<u16>,
    /// Whether the inside end is up (false: a fenced router's leg, nothing answers on it).
    up: bool,
}

/// What syncing one namespace gave.
enum Done {
    /// Namespace, error, whether a leg or the namespace was (re)made, the legs that came up.
    Router(String, Option<String>, bool, Vec<Announce>),
    Dhcp(String, NsState, Option<String>),
}

fn count(c: Changed) -> usize {
    usize::from(c.changed())
}

impl Inner {
    fn sync_all(
        &self,
        intent: &NodeIntent,
        owned: Vec<String>,
        rt: &tokio::runtime::Handle,
    ) -> RouterSync {
        let mut out = RouterSync::default();
        // Final router advertisements first, while the legs they leave by still exist.
        self.ra.retire(&intent.ra);
        for ns in owned {
            if !intent.routers.contains_key(&ns) && !intent.dhcp.contains_key(&ns) {
                // Delete the legs first: namespace teardown is asynchronous in the kernel, and
                // the node-side ends must be gone when the pass ends.
                out.changes += delete_owned_links(&ns);
                match netns::delete(&ns) {
                    Ok(true) => {
                        tracing::info!(netns = %ns, "removed namespace no longer wanted");
                        out.changes += 1;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(netns = %ns, error = %e, "removing stale router namespace")
                    }
                }
            }
        }
        // Router instances and DHCP namespaces are independent: a few workers in parallel
        // hide the latency of the `nft` runs and netlink round trips (each worker switches
        // namespaces on its own).
        let jobs: Vec<Job> = intent
            .routers
            .iter()
            .map(|(ns, r)| Job::Router(ns, r))
            .chain(intent.dhcp.iter().map(|(ns, d)| Job::Dhcp(ns, d)))
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results = std::sync::Mutex::new(Vec::with_capacity(jobs.len()));
        std::thread::scope(|scope| {
            for _ in 0..SYNC_WORKERS.min(jobs.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else {
                        return;
                    };
                    let mut changes = 0;
                    let done = match job {
                        Job::Router(ns, r) => {
                            let mut came_up = Vec::new();
                            let res = self.sync_router(
                                ns,
                                r,
                                intent.fenced,
                                &mut changes,
                                &mut came_up,
                            );
                            if let Err(e) = &res {
                                tracing::warn!(netns = %ns, router_id = %r.router_id, error = %e, "router instance not in place");
                            }
                            let remade = *res.as_ref().unwrap_or(&true);
                            Done::Router(
                                (*ns).clone(),
                                res.err().map(|e| e.to_string()),
                                remade,
                                came_up,
                            )
                        }
                        Job::Dhcp(ns, d) => match self.sync_dhcp_ns(ns, d, &mut changes) {
                            Ok(remade) => Done::Dhcp(
                                (*ns).clone(),
                                if remade { NsState::Remade } else { NsState::Ready },
                                None,
                            ),
                            Err(e) => {
                                tracing::warn!(netns = %ns, network_id = %d.network_id, error = %e, "DHCP namespace not in place");
                                Done::Dhcp((*ns).clone(), NsState::Failed, Some(e.to_string()))
                            }
                        },
                    };
                    results.lock().expect("results lock").push((changes, done));
                });
            }
        });
        let mut dhcp_state = std::collections::BTreeMap::new();
        let mut remade_routers = std::collections::BTreeSet::new();
        for (changes, done) in results.into_inner().expect("results lock") {
            out.changes += changes;
            match done {
                Done::Router(ns, err, remade, came_up) => {
                    if remade {
                        remade_routers.insert(ns.clone());
                    }
                    out.came_up.extend(came_up);
                    out.routers.insert(ns, err);
                }
                Done::Dhcp(ns, state, err) => {
                    dhcp_state.insert(ns.clone(), state);
                    out.dhcp.insert(ns, err);
                }
            }
        }
        // Sockets last: they need the namespace and its interface.
        for (ns, err) in self.dhcp.sync(&intent.dhcp, &dhcp_state, rt) {
            out.dhcp.insert(ns, Some(err));
        }
        for (ns, err) in self.ra.sync(&intent.ra, &remade_routers, rt) {
            if let Some(slot @ None) = out.routers.get_mut(&ns) {
                *slot = Some(err);
            }
        }
        out
    }

    /// A DHCP server's namespace, veth and addresses; `Ok(true)` when the namespace or the
    /// veth was (re)made, so the socket must be reopened.
    fn sync_dhcp_ns(
        &self,
        ns_name: &str,
        d: &DhcpIntent,
        changes: &mut usize,
    ) -> Result<bool, plumbing::Error> {
        let mut remade = false;
        if netns::create(ns_name)? {
            *changes += 1;
            remade = true;
        }
        let ns = Netns::named(ns_name);
        let mut h = Handle::new(&ns)?;
        let leg = Leg {
            ns_ifname: &d.ns_ifname,
            node_ifname: &d.node_ifname,
            mac: &d.mac,
            addrs: &d.addrs,
            mtu: d.config.mtu,
            up: true,
        };
        remade |= self.sync_legs(&ns, &mut h, &[leg], changes)?;
        // The DHCP port is a host on its network: it must not take the router's advertisements
        // (a SLAAC address and a default route of its own), as Neutron's DHCP agent sets too.
        let key = format!("net.ipv6.conf.{}.accept_ra", d.ns_ifname);
        *changes += usize::from(plumbing::sysctl::set(&ns, &key, "0")?);
        if d.config6.is_some() {
            // IPv6 UDP may not go out with checksum 0 as DHCPv4 does (see plumbing::ethtool).
            let off = plumbing::ethtool::set_tx_checksum(&ns, &d.ns_ifname, false)?;
            *changes += usize::from(off);
        }
        Ok(remade)
    }

    /// Makes exactly `legs` the owned links of namespace `ns` (reached through `h`): each a
    /// veth with its MAC and addresses inside and its peer in the node namespace; owned links
    /// not among them go (their peers with them). Returns whether a veth was (re)made.
    fn sync_legs(
        &self,
        ns: &Netns,
        h: &mut Handle,
        legs: &[Leg<'_>],
        changes: &mut usize,
    ) -> Result<bool, plumbing::Error> {
        let mut remade = false;
        for leg in legs {
            let mut a = VethEnd::new(leg.ns_ifname.to_string(), ns.clone());
            a.mac = plumbing::link::parse_mac(leg.mac);
            a.mtu = leg.mtu.map(u32::from);
            let mut b = VethEnd::new(leg.node_ifname.to_string(), self.node_netns.clone());
            b.mtu = a.mtu;
            let spec = VethSpec {
                a,
                b,
                owner: LINK_OWNER.to_string(),
            };
            if plumbing::link::ensure_veth_admin(&spec, leg.up)?.changed() {
                *changes += 1;
                remade = true;
            }
            if leg.addrs.iter().any(|a| a.addr().is_ipv6()) {
                // The kernel flushes a link's IPv6 addresses when it goes down (IPv4 ones
                // stay); a fenced router's legs are down: keep them, as IPv4 keeps its own, so
                // fencing and its end write nothing for them and they answer at once when up.
                let key = format!("net.ipv6.conf.{}.keep_addr_on_down", leg.ns_ifname);
                *changes += usize::from(plumbing::sysctl::set(ns, &key, "1")?);
            }
            // IPv6 addresses go in without duplicate address detection (IFA_F_NODAD, see
            // plumbing::addr): the planner makes them unique, and routes via them and probes
            // from them work at once instead of after DAD's 1-2 s.
            *changes += count(h.sync_addresses(leg.ns_ifname, leg.addrs)?);
        }
        for link in h.owned_links()? {
            if !legs.iter().any(|l| l.ns_ifname == link.name) && h.delete_link(&link.name, false)? {
                *changes += 1;
            }
        }
        Ok(remade)
    }

    fn sync_router(
        &self,
        ns_name: &str,
        r: &RouterIntent,
        fenced: bool,
        changes: &mut usize,
        came_up: &mut Vec<Announce>,
    ) -> Result<bool, plumbing::Error> {
        let mut remade = false;
        if netns::create(ns_name)? {
            *changes += 1;
            remade = true;
        }
        let ns = Netns::named(ns_name);
        let forwarding = plumbing::sysctl::set_forwarding(&ns, true, true)?;
        *changes += usize::from(forwarding);
        // ARP answered only on the leg holding the address, from that leg's address (Neutron's
        // l3 agent sets the same): two legs on one network (an IPv4 and an IPv6 subnet's
        // interfaces) would otherwise both answer for the IPv4 gateway, and a VM that cached
        // the IPv6 leg's MAC loses its gateway when that interface is removed.
        for (key, value) in [
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
        ] {
            *changes += usize::from(plumbing::sysctl::set(&ns, key, value)?);
        }
        let mut h = Handle::new(&ns)?;
        if let Some(lo) = h.link("lo")? {
            if !lo.up {
                h.set_link("lo").force().up().apply()?;
                *changes += 1;
            }
        }
        // Legs removed from the router: their owned links go (the peer goes with them).
        let legs: Vec<Leg<'_>> = r
            .legs
            .iter()
            .map(|l| Leg {
                ns_ifname: &l.ns_ifname,
                node_ifname: &l.node_ifname,
                mac: &l.mac,
                addrs: &l.addrs,
                mtu: l.mtu,
                up: !fenced,
            })
            .collect();
        // Legs not up before this pass and up after it (created, or unfenced) are announced.
        let mut was_up = Vec::with_capacity(legs.len());
        for l in &legs {
            was_up.push(h.link(l.ns_ifname)?.is_some_and(|k| k.up));
        }
        remade |= self.sync_legs(&ns, &mut h, &legs, changes)?;
        if !fenced {
            for (l, was) in r.legs.iter().zip(was_up) {
                let mut addrs: Vec<Ipv4Addr> = Vec::new();
                let mut addrs6: Vec<Ipv6Addr> = Vec::new();
                for a in &l.addrs {
                    match a.addr() {
                        IpAddr::V4(v4) => addrs.push(v4),
                        IpAddr::V6(v6) => addrs6.push(v6),
                    }
                }
                if !was && (!addrs.is_empty() || !addrs6.is_empty()) {
                    came_up.push(Announce {
                        netns: ns_name.to_string(),
                        ifname: l.ns_ifname.clone(),
                        node_ifname: l.node_ifname.clone(),
                        addrs,
                        addrs6,
                    });
                }
            }
        }
        let routes: Vec<Route> = r
            .routes
            .iter()
            .map(|(dst, via)| Route::new(*dst).via(*via))
            .collect();
        let rs = h.sync_routes(&routes)?;
        *changes += rs.added.len() + rs.replaced.len() + rs.removed.len();
        let nat = nat_spec(r);
        let c = if nat.snat.is_empty() && nat.floating.is_empty() {
            plumbing::nat::remove(&ns)?
        } else {
            plumbing::nat::apply(&ns, &nat)?
        };
        *changes += count(c);
        Ok(remade)
    }

    fn probe_all(&self, intent: &NodeIntent) -> Vec<wire::ProbeResult> {
        let mut out = Vec::new();
        for (ns, r) in &intent.routers {
            let netns = Netns::named(ns.clone());
            for t in &r.probe_targets {
                // The leg whose subnet holds the target (not a floating IP's host route).
                let leg = r.legs.iter().find(|l| {
                    l.addrs
                        .iter()
                        .any(|a| a.prefix_len() < a.max_prefix_len() && a.contains(&t.address))
                });
                let Some(leg) = leg else {
                    out.push(unreachable(&r.router_id, t.address));
                    continue;
                };
                out.push(self.probe_one(&netns, &leg.ns_ifname, t.address, &r.router_id));
            }
        }
        out
    }

    /// ARP then ICMP echo for an IPv4 target; neighbour discovery then ICMPv6 echo for an IPv6
    /// one. Reachable only when both answer.
    fn probe_one(
        &self,
        ns: &Netns,
        ifname: &str,
        target: IpAddr,
        router_id: &str,
    ) -> wire::ProbeResult {
        let neighbour = match target {
            IpAddr::V4(v4) => plumbing::probe::arp(ns, ifname, v4, &self.probe),
            IpAddr::V6(v6) => plumbing::probe::nd(ns, ifname, v6, &self.probe),
        };
        if !matches!(&neighbour, Ok(r) if r.ok()) {
            tracing::debug!(netns = %ns, %target, result = ?neighbour, "ARP/ND probe unanswered");
            return unreachable(router_id, target);
        }
        match plumbing::probe::icmp(ns, ifname, target, &self.probe) {
            Ok(r) if r.ok() => wire::ProbeResult {
                router_id: router_id.to_string(),
                target,
                reachable: true,
                latency_us: r.rtt.map(|d| d.as_micros() as u64),
            },
            other => {
                tracing::debug!(netns = %ns, %target, result = ?other, "ICMP probe unanswered");
                unreachable(router_id, target)
            }
        }
    }
}

fn unreachable(router_id: &str, target: IpAddr) -> wire::ProbeResult {
    wire::ProbeResult {
        router_id: router_id.to_string(),
        target,
        reachable: false,
        latency_us: None,
    }
}

/// The nftables spec of a router instance (IPv4 only; IPv6 needs no NAT).
pub fn nat_spec(r: &RouterIntent) -> NatSpec {
    let v4 = |n: &IpNet| match n {
        IpNet::V4(n) => Some(*n),
        IpNet::V6(_) => None,
    };
    let mut spec = NatSpec::default();
    for s in &r.nat.snat {
        let IpAddr::V4(to) = s.to else { continue };
        let sources: Vec<Ipv4Net> = s.sources.iter().filter_map(v4).collect();
        if !sources.is_empty() {
            spec.snat.push(plumbing::Snat {
                sources,
                out_ifname: s.out_ifname.clone(),
                to,
            });
        }
    }
    for f in &r.nat.floating {
        if let (IpAddr::V4(floating_ip), IpAddr::V4(fixed_ip)) = (f.floating_ip, f.fixed_ip) {
            spec.floating.push(plumbing::FloatingIp {
                floating_ip,
                fixed_ip,
                out_ifname: f.out_ifname.clone(),
            });
        }
    }
    spec
}

impl LinuxBackend for NetnsBackend {
    type Error = LinuxError;

    async fn sync_routers(&self, intent: &NodeIntent) -> Result<RouterSync, LinuxError> {
        let owned = self.owned_namespaces()?;
        let inner = self.inner.clone();
        let intent = intent.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || inner.sync_all(&intent, owned, &rt))
            .await
            .map_err(|e| LinuxError::Join(e.to_string()))
    }

    async fn probe(&self, intent: &NodeIntent) -> Vec<wire::ProbeResult> {
        let inner = self.inner.clone();
        let intent = intent.clone();
        tokio::task::spawn_blocking(move || inner.probe_all(&intent))
            .await
            .unwrap_or_default()
    }

    fn announce(&self, legs: Vec<Announce>) {
        if legs.is_empty() {
            return;
        }
        // One thread per leg: the rounds of every leg go out together.
        for a in legs {
            std::thread::spawn(move || {
                let ns = Netns::named(a.netns.clone());
                if !a.addrs6.is_empty() {
                    // IPv6's gratuitous ARP, on a thread of its own so both go out together.
                    let (ns, a) = (ns.clone(), a.clone());
                    std::thread::spawn(move || {
                        match plumbing::probe::unsolicited_na(
                            &ns, &a.ifname, &a.addrs6, GARP_COUNT, GARP_GAP,
                        ) {
                            Ok(n) => {
                                tracing::info!(netns = %a.netns, leg = %a.ifname, addrs = ?a.addrs6, packets = n, "unsolicited neighbour advertisements sent")
                            }
                            Err(e) => {
                                tracing::warn!(netns = %a.netns, leg = %a.ifname, error = %e, "unsolicited neighbour advertisements failed")
                            }
                        }
                    });
                }
                if a.addrs.is_empty() {
                    return;
                }
                match plumbing::probe::gratuitous_arp(
                    &ns, &a.ifname, &a.addrs, GARP_COUNT, GARP_GAP,
                ) {
                    Ok(n) => {
                        tracing::info!(netns = %a.netns, leg = %a.ifname, addrs = ?a.addrs, frames = n, "gratuitous ARP sent")
                    }
                    Err(e) => {
                        tracing::warn!(netns = %a.netns, leg = %a.ifname, error = %e, "gratuitous ARP failed")
                    }
                }
            });
        }
    }

    fn ifname_of(&self, ip: IpAddr) -> Option<String> {
        let mut h = Handle::new(&self.inner.node_netns).ok()?;
        let index = h
            .addresses()
            .ok()?
            .into_iter()
            .find(|a| a.net.addr() == ip)?
            .index;
        h.links()
            .ok()?
            .into_iter()
            .find(|l| l.index == index)
            .map(|l| l.name)
    }
}
