//! Router advertisements (RFC 4861), sent natively by the agent from every router leg whose
//! desired state has `ipv6_ra`: one tokio task per advertising leg, owning one raw ICMPv6
//! socket opened in the router namespace, bound to the leg and to its link-local address, hop
//! limit 255.
//!
//! Why not radvd, as Neutron does: radvd is a process per router with a configuration file
//! that must be rewritten and the process signalled on every change; here an advertising leg
//! costs one socket and one task (no thread, no process), a changed configuration is swapped in
//! place and advertised at once, and the model is the one of the DHCP server ([`crate::dhcp`]),
//! so one agent serves 1,000 legs the same way it serves one.
//!
//! What a leg does: three advertisements about a second apart when it starts (or its
//! configuration changes), then one at a random interval between the minimum (a third of the
//! maximum) and the maximum (`--ra-max-interval`, 30 s by default: RFC 4861's 600 s is too slow
//! for a lab whose VMs come and go); an answer to each router solicitation, unicast to the
//! soliciting address (multicast, at most every 3 s, when it has none yet). When `ipv6_ra` or
//! the leg leaves the desired state, a final advertisement with router lifetime 0 goes out
//! before the socket closes and the leg is removed (RFC 4861 §6.2.5), so hosts drop their
//! default route through it at once instead of after the router lifetime.
//!
//! A leg of a network stretched across pods advertises to its `clients` only (the hosts its
//! pod serves): every round (and the final advertisement) goes unicast to each client's
//! EUI-64 link-local address (the kernel resolves it to the client's MAC by neighbour
//! discovery), and solicitations from other hosts are ignored, so each pod's VMs take their
//! own pod's instance as default router, the one DHCPv4 gives them.

pub mod packet;

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use plumbing::icmp6;
use plumbing::Netns;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::time::Instant;

/// RFC 4861 MAX_INITIAL_RTR_ADVERTISEMENTS.
pub const INITIAL_ADVERTISEMENTS: u32 = 3;
/// RFC 4861 MIN_DELAY_BETWEEN_RAS: the least time between two multicast advertisements.
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// The default `--ra-max-interval`.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(30);

/// One advertising leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaIntent {
    /// The router (log and metrics label).
    pub router_id: String,
    /// The leg's MAC (the source link-layer address option).
    pub mac: String,
    /// What the leg advertises.
    pub advert: wire::RouterAdvertisement,
}

/// How often legs advertise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaTiming {
    /// MaxRtrAdvInterval; MinRtrAdvInterval is a third of it (RFC 4861 §6.2.1's default).
    pub max_interval: Duration,
}

impl Default for RaTiming {
    fn default() -> Self {
        RaTiming {
            max_interval: DEFAULT_MAX_INTERVAL,
        }
    }
}

impl RaTiming {
    fn min_interval(&self) -> Duration {
        self.max_interval / 3
    }

    /// RDNSS lifetime: three maximum intervals (RFC 8106 §5.1's lower bound), at least 60 s.
    fn rdnss_lifetime(&self) -> u32 {
        (self.max_interval.as_secs() as u32)
            .saturating_mul(3)
            .max(60)
    }
}

type Labels = Vec<(String, String)>;

/// Router advertisement counters (`router_id` label).
#[derive(Debug, Clone, Default)]
pub struct RaCounters {
    /// Advertisements sent (periodic, solicited, final).
    pub sent: Family<Labels, Counter>,
    /// Router solicitations answered.
    pub solicitations: Family<Labels, Counter>,
    /// Advertisements that could not be sent.
    pub errors: Family<Labels, Counter>,
    /// Legs advertising now.
    pub advertising: Gauge,
}

impl RaCounters {
    /// Registers the counters in the agent's registry.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "router_advertisements",
            "IPv6 router advertisements sent",
            self.sent.clone(),
        );
        r.register(
            "router_solicitations",
            "IPv6 router solicitations answered",
            self.solicitations.clone(),
        );
        r.register(
            "router_advertisement_errors",
            "IPv6 router advertisements that could not be sent",
            self.errors.clone(),
        );
        r.register(
            "ra_legs",
            "Router legs sending IPv6 router advertisements",
            self.advertising.clone(),
        );
    }
}

/// The socket of one leg, shared by its task and by the step that sends the final
/// advertisement.
#[derive(Debug)]
struct Leg {
    socket: socket2::Socket,
    ifindex: u32,
    mac: [u8; 6],
    /// Set once the socket is bound to the leg's link-local address (after DAD).
    bound: std::sync::atomic::AtomicBool,
}

impl AsRawFd for Leg {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Leg {
    /// Sends `pkt` to each of `to` (link-scoped addresses on this leg); returns the packets
    /// sent, or the error of a multicast send (unicast failures are counted, not fatal: one
    /// client that cannot be reached must not silence the others).
    fn send_all(&self, pkt: &[u8], to: &[Ipv6Addr], errors: &Counter) -> std::io::Result<u64> {
        let mut sent = 0;
        for dst in to {
            let addr: socket2::SockAddr = SocketAddrV6::new(*dst, 0, 0, self.ifindex).into();
            match self.socket.send_to(pkt, &addr) {
                Ok(_) => sent += 1,
                Err(e) if dst.is_multicast() => return Err(e),
                Err(e) => {
                    errors.inc();
                    tracing::debug!(ifindex = self.ifindex, to = %dst, error = %e, "unicast router advertisement not sent");
                }
            }
        }
        Ok(sent)
    }
}

#[derive(Debug)]
struct Running {
    leg: Arc<Leg>,
    config: Arc<RwLock<RaIntent>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The advertising legs of this node, by (router namespace, leg interface).
#[derive(Debug, Default)]
pub struct RaService {
    running: Mutex<BTreeMap<(String, String), Running>>,
    settings: Mutex<(RaCounters, RaTiming)>,
}

/// The key of one leg: its router namespace and its interface in it.
pub type LegKey = (String, String);

impl RaService {
    /// Counts into `counters` and advertises at `timing` (legs started afterwards).
    pub fn configure(&self, counters: RaCounters, timing: RaTiming) {
        *self.settings.lock().expect("ra settings") = (counters, timing);
    }

    /// Sends the final advertisement of every running leg that is not in `wanted`, then
    /// stops it. Call before the legs and namespaces no longer wanted are removed, so the
    /// final advertisement still has a link to leave by.
    pub fn retire(&self, wanted: &BTreeMap<LegKey, RaIntent>) {
        let mut running = self.running.lock().expect("ra lock");
        let gone: Vec<LegKey> = running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        let (counters, timing) = self.settings.lock().expect("ra settings").clone();
        for k in gone {
            let Some(r) = running.remove(&k) else {
                continue;
            };
            r.task.abort();
            let cfg = r.config.read().expect("ra config").clone();
            if r.leg.bound.load(std::sync::atomic::Ordering::SeqCst) {
                let pkt =
                    packet::advertisement(&cfg.advert, r.leg.mac, timing.rdnss_lifetime(), true);
                let errors = counters
                    .errors
                    .get_or_create(&labels(&cfg.router_id))
                    .clone();
                match r
                    .leg
                    .send_all(&pkt, &packet::destinations(&cfg.advert), &errors)
                {
                    Ok(n) => {
                        counters
                            .sent
                            .get_or_create(&labels(&cfg.router_id))
                            .inc_by(n);
                        tracing::info!(netns = %k.0, ifname = %k.1, router_id = %cfg.router_id, "final router advertisement sent (router lifetime 0)");
                    }
                    Err(e) => {
                        tracing::warn!(netns = %k.0, ifname = %k.1, error = %e, "sending the final router advertisement failed")
                    }
                }
            }
            tracing::info!(netns = %k.0, ifname = %k.1, "router advertisements stopped");
        }
        counters.advertising.set(running.len() as i64);
    }

    /// Makes the advertising legs exactly `wanted`: stops (after a final advertisement, see
    /// [`RaService::retire`]) the unwanted ones, silently drops those whose router namespace
    /// was remade this pass (`remade`: their socket names a link that is gone), swaps the
    /// configuration of the others, and opens the missing ones (blocking: call from a blocking
    /// thread, with the runtime's handle for the tasks). Returns the error of each router
    /// namespace one of whose legs could not start.
    pub fn sync(
        &self,
        wanted: &BTreeMap<LegKey, RaIntent>,
        remade: &std::collections::BTreeSet<String>,
        rt: &tokio::runtime::Handle,
    ) -> BTreeMap<String, String> {
        self.retire(wanted);
        let (counters, timing) = self.settings.lock().expect("ra settings").clone();
        let mut errors = BTreeMap::new();
        let mut running = self.running.lock().expect("ra lock");
        running.retain(|k, r| {
            // A new MAC is a new source link-layer address and link-local address: restart.
            let same_mac = wanted.get(k).is_some_and(|w| {
                crate::dhcp::proto::parse_mac(&w.mac.to_ascii_lowercase()) == Some(r.leg.mac)
            });
            let keep = same_mac && !remade.contains(&k.0) && !r.task.is_finished();
            if !keep {
                tracing::info!(netns = %k.0, ifname = %k.1, "router advertisements restarting (leg remade or its MAC changed)");
            }
            keep
        });
        for (k, w) in wanted {
            if let Some(r) = running.get(k) {
                let mut cur = r.config.write().expect("ra config");
                if *cur != *w {
                    tracing::info!(netns = %k.0, ifname = %k.1, router_id = %w.router_id, "router advertisement changed; advertising it now");
                    *cur = w.clone();
                    r.changed.notify_one();
                }
                continue;
            }
            let Some(mac) = crate::dhcp::proto::parse_mac(&w.mac.to_ascii_lowercase()) else {
                errors.insert(
                    k.0.clone(),
                    format!("leg {}: unreadable MAC {:?}", k.1, w.mac),
                );
                continue;
            };
            let ns = Netns::named(k.0.clone());
            let s = match icmp6::open_in(&ns, &k.1, &[icmp6::ROUTER_SOLICITATION]) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(netns = %k.0, ifname = %k.1, error = %e, "cannot send router advertisements");
                    errors.insert(
                        k.0.clone(),
                        format!("router advertisements on {}: {e}", k.1),
                    );
                    continue;
                }
            };
            let link_local = s.link_local.unwrap_or_else(|| icmp6::eui64_link_local(mac));
            let leg = Arc::new(Leg {
                socket: s.socket,
                ifindex: s.ifindex,
                mac,
                bound: false.into(),
            });
            let config = Arc::new(RwLock::new(w.clone()));
            let changed = Arc::new(Notify::new());
            let task = rt.spawn(advertise(
                k.clone(),
                leg.clone(),
                link_local,
                config.clone(),
                changed.clone(),
                counters.clone(),
                timing,
            ));
            tracing::info!(netns = %k.0, ifname = %k.1, router_id = %w.router_id, %link_local, "router advertisements starting");
            running.insert(
                k.clone(),
                Running {
                    leg,
                    config,
                    changed,
                    task,
                },
            );
        }
        counters.advertising.set(running.len() as i64);
        errors
    }

    /// How many legs advertise now.
    pub fn advertising(&self) -> usize {
        self.running.lock().expect("ra lock").len()
    }
}

fn labels(router_id: &str) -> Labels {
    vec![("router_id".to_string(), router_id.to_string())]
}

/// A small xorshift: the jitter of the intervals needs no cryptographic randomness.
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter((t ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    /// A duration uniformly in `[lo, hi]` (millisecond steps).
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(if span == 0 { 0 } else { self.0 % (span + 1) })
    }
}

/// One leg's advertisements until the task is aborted.
async fn advertise(
    key: LegKey,
    leg: Arc<Leg>,
    link_local: Ipv6Addr,
    config: Arc<RwLock<RaIntent>>,
    changed: Arc<Notify>,
    counters: RaCounters,
    timing: RaTiming,
) {
    let (ns, ifname) = (&key.0, &key.1);
    // The link-local address is tentative for about a second after the leg came up (duplicate
    // address detection); advertisements must come from it (RFC 4861 §4.2).
    let mut waited = Duration::ZERO;
    loop {
        match icmp6::bind_link_local(&leg.socket, link_local, leg.ifindex) {
            Ok(()) => break,
            Err(e) => {
                if waited >= Duration::from_secs(10) && waited.as_millis() % 10_000 < 200 {
                    tracing::warn!(netns = %ns, %ifname, %link_local, error = %e, "the leg's link-local address is still not usable");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                waited += Duration::from_millis(200);
            }
        }
    }
    leg.bound.store(true, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the descriptor belongs to `leg.socket`, which the Arc handed to the AsyncFd keeps
    // open until the AsyncFd (and with it the registration) is dropped.
    let fd = match unsafe {
        AsyncFd::register_with_interest(leg.clone(), tokio::io::Interest::READABLE)
    } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(netns = %ns, %ifname, error = %e, "registering the router advertisement socket");
            return;
        }
    };
    let mut jitter = Jitter::new(u64::from(leg.ifindex) ^ u64::from(leg.mac[5]));
    let mut initial_left = INITIAL_ADVERTISEMENTS;
    let mut next = Instant::now();
    let mut last_multicast: Option<Instant> = None;
    let mut buf = [0u8; 1500];
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                let cfg = config.read().expect("ra config").clone();
                let pkt = packet::advertisement(&cfg.advert, leg.mac, timing.rdnss_lifetime(), false);
                let errors = counters.errors.get_or_create(&labels(&cfg.router_id)).clone();
                match leg.send_all(&pkt, &packet::destinations(&cfg.advert), &errors) {
                    Ok(n) => {
                        counters.sent.get_or_create(&labels(&cfg.router_id)).inc_by(n);
                        tracing::debug!(netns = %ns, %ifname, packets = n, "router advertisement sent");
                    }
                    Err(e) => {
                        // Seen on a node making a thousand legs at once: a socket whose every
                        // send fails (EINVAL) while a new one on the same leg works. The task
                        // ends; the next reconcile pass (at most a resync period away) opens a
                        // new socket for the leg.
                        counters.errors.get_or_create(&labels(&cfg.router_id)).inc();
                        tracing::warn!(netns = %ns, %ifname, ifindex = leg.ifindex, %link_local, error = %e, "sending a router advertisement failed; reopening the leg's socket at the next pass");
                        return;
                    }
                }
                last_multicast = Some(Instant::now());
                next = Instant::now() + if initial_left > 1 {
                    initial_left -= 1;
                    jitter.between(Duration::from_millis(700), Duration::from_millis(1300))
                } else {
                    initial_left = 0;
                    jitter.between(timing.min_interval(), timing.max_interval)
                };
            }
            _ = changed.notified() => {
                initial_left = INITIAL_ADVERTISEMENTS;
                next = earliest_multicast(last_multicast);
            }
            r = fd.readable() => {
                let Ok(mut guard) = r else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                // Drain what is queued; answer each valid solicitation.
                loop {
                    // SAFETY: u8 and MaybeUninit<u8> have the same layout; the buffer is
                    // initialised and the kernel only writes bytes into it.
                    let uninit = unsafe {
                        &mut *(&mut buf[..] as *mut [u8] as *mut [std::mem::MaybeUninit<u8>])
                    };
                    let (n, from) = match leg.socket.recv_from(uninit) {
                        Ok(x) => x,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(netns = %ns, %ifname, error = %e, "reading a router solicitation");
                            guard.clear_ready();
                            break;
                        }
                    };
                    let Some(src) = from.as_socket_ipv6() else { continue };
                    if !packet::is_solicitation(&buf[..n], src.ip()) {
                        continue;
                    }
                    let cfg = config.read().expect("ra config").clone();
                    if !src.ip().is_unspecified()
                        && !packet::from_client(cfg.advert.clients.as_ref(), src.ip(), &buf[..n])
                    {
                        // Another pod's host on a stretched network: its own pod's instance
                        // is its router.
                        tracing::debug!(netns = %ns, %ifname, from = %src.ip(), "router solicitation from a host this leg does not serve; ignored");
                        continue;
                    }
                    counters.solicitations.get_or_create(&labels(&cfg.router_id)).inc();
                    if src.ip().is_unspecified() {
                        // No address to answer to: the next round (multicast, or unicast to
                        // every client), rate limited.
                        let at = earliest_multicast(last_multicast);
                        if at < next {
                            next = at;
                        }
                        continue;
                    }
                    let pkt = packet::advertisement(&cfg.advert, leg.mac, timing.rdnss_lifetime(), false);
                    let to = SocketAddrV6::new(*src.ip(), 0, 0, leg.ifindex);
                    match leg.socket.send_to(&pkt, &to.into()) {
                        Ok(_) => {
                            counters.sent.get_or_create(&labels(&cfg.router_id)).inc();
                            tracing::debug!(netns = %ns, %ifname, to = %src.ip(), "solicited router advertisement sent");
                        }
                        Err(e) => tracing::debug!(netns = %ns, %ifname, to = %src.ip(), error = %e, "answering a router solicitation failed"),
                    }
                }
            }
        }
    }
}

/// When the next multicast advertisement may go (RFC 4861 MIN_DELAY_BETWEEN_RAS).
fn earliest_multicast(last: Option<Instant>) -> Instant {
    let now = Instant::now();
    match last {
        Some(t) if t + MIN_DELAY_BETWEEN_RAS > now => t + MIN_DELAY_BETWEEN_RAS,
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_stay_between_the_minimum_and_the_maximum() {
        let t = RaTiming::default();
        assert_eq!(t.min_interval(), Duration::from_secs(10));
        assert_eq!(t.rdnss_lifetime(), 90);
        let mut j = Jitter::new(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            let d = j.between(t.min_interval(), t.max_interval);
            assert!(d >= t.min_interval() && d <= t.max_interval, "{d:?}");
            seen.insert(d.as_secs());
        }
        assert!(seen.len() > 10, "not random: {seen:?}");
    }

    #[test]
    fn multicast_answers_are_rate_limited() {
        let now = Instant::now();
        assert!(earliest_multicast(None) <= Instant::now());
        let at = earliest_multicast(Some(now));
        assert!(at >= now + Duration::from_millis(2900));
        assert!(earliest_multicast(Some(now - Duration::from_secs(5))) <= Instant::now());
    }
}
