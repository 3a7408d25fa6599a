//! The agent's native DHCPv4 server (issue 17): one `<prefix>qdhcp-<network id>` namespace per
//! served network (made by [`crate::linux_backend`] like a router instance), one UDP socket in
//! it bound to `:67` on the DHCP port's interface, and one tokio task per socket. At rest there
//! is no thread and no process per network: 1,000 networks are 1,000 sockets and tasks.
//!
//! The answers are a pure function ([`proto::respond`]) of the request and the server's
//! configuration, which is swapped in place when the desired state changes, so new options and
//! hosts take effect at the next request without touching the socket.
//!
//! A network with `dhcpv6-stateless` or `dhcpv6-stateful` subnets also gets DHCPv6
//! ([`proto6`]): a second socket in the same namespace on `[::]:547`, member of
//! `ff02::1:2` on the interface, and a second task, the same model. The namespace's interface
//! computes its own checksums (see [`plumbing::ethtool`]).

pub mod proto;
pub mod proto6;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dhcproto::v4::{Message, MessageType};
use dhcproto::{Decodable, Encodable};
use ipnet::IpNet;
use plumbing::Netns;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use proto::ServerConfig;
use proto::{respond, Destination, Verdict};
pub use proto6::Server6Config;
use proto6::{respond6, Verdict6};

/// The server port (clients answer from 68).
pub const SERVER_PORT: u16 = 67;
/// The client port.
pub const CLIENT_PORT: u16 = 68;
/// The DHCPv6 server port (clients answer from 546).
pub const SERVER6_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// BOOTP's minimum message size; some clients drop shorter replies.
const MIN_REPLY: usize = 300;

/// One network's DHCP server on this node, as the Linux side and the socket need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpIntent {
    /// Network id.
    pub network_id: String,
    /// Interface inside the namespace (the DHCP port's MAC, one address per subnet).
    pub ns_ifname: String,
    /// Interface on the node, plugged into `bridge` (owned by the agent).
    pub node_ifname: String,
    /// OVS bridge.
    pub bridge: String,
    /// VLAN tag ([`crate::intent::UNTAGGED`] for flat).
    pub tag: u16,
    /// MAC of the namespace-side end.
    pub mac: String,
    /// `server_address/prefix` per subnet (IPv4 and IPv6).
    pub addrs: Vec<IpNet>,
    /// What the server answers.
    pub config: ServerConfig,
    /// What it answers over DHCPv6; `None` when no subnet is `dhcpv6-*`.
    pub config6: Option<Server6Config>,
}

impl DhcpIntent {
    /// The intent of one server of the desired state.
    pub fn from_wire(s: &wire::DhcpServer) -> DhcpIntent {
        let addrs = s
            .subnets
            .iter()
            .filter(|sn| sn.server_address.is_ipv4() == sn.cidr.addr().is_ipv4())
            .filter_map(|sn| IpNet::new(sn.server_address, sn.cidr.prefix_len()).ok())
            .collect();
        DhcpIntent {
            network_id: s.network_id.clone(),
            ns_ifname: s.ns_ifname.clone(),
            node_ifname: s.ovs_ifname.clone(),
            bridge: s.bridge.clone(),
            tag: s.tag.unwrap_or(crate::intent::UNTAGGED),
            mac: s.mac.clone(),
            addrs,
            config: ServerConfig::from_wire(s),
            config6: Server6Config::from_wire(s),
        }
    }
}

type Labels = Vec<(String, String)>;

/// DHCP counters per network (`network_id` label).
#[derive(Debug, Clone, Default)]
pub struct DhcpCounters {
    /// Requests received from known and unknown clients.
    pub requests: Family<Labels, Counter>,
    /// OFFERs sent.
    pub offers: Family<Labels, Counter>,
    /// ACKs sent (REQUEST, renewal, rebinding, INFORM).
    pub acks: Family<Labels, Counter>,
    /// NAKs sent.
    pub naks: Family<Labels, Counter>,
    /// Requests left unanswered (unknown MAC, another server's, unreadable).
    pub ignored: Family<Labels, Counter>,
    /// Servers with an open socket.
    pub servers: Gauge,
}

impl DhcpCounters {
    /// Registers the counters in the agent's registry.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "dhcp_requests",
            "DHCP requests received",
            self.requests.clone(),
        );
        r.register("dhcp_offers", "DHCPOFFERs sent", self.offers.clone());
        r.register("dhcp_acks", "DHCPACKs sent", self.acks.clone());
        r.register("dhcp_naks", "DHCPNAKs sent", self.naks.clone());
        r.register(
            "dhcp_ignored",
            "DHCP requests not answered (unknown MAC, another server's, unreadable)",
            self.ignored.clone(),
        );
        r.register(
            "dhcp_servers",
            "DHCP servers listening on this node",
            self.servers.clone(),
        );
    }
}

/// The running servers of this node, by namespace name.
#[derive(Debug, Default)]
pub struct DhcpService {
    running: Mutex<BTreeMap<String, Running>>,
    counters: DhcpCounters,
}

#[derive(Debug)]
struct Running {
    ifname: String,
    config: Arc<RwLock<Arc<ServerConfig>>>,
    task: tokio::task::JoinHandle<()>,
    /// The DHCPv6 side, when the network has `dhcpv6-*` subnets.
    v6: Option<Running6>,
}

#[derive(Debug)]
struct Running6 {
    config: Arc<RwLock<Arc<Server6Config>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // The tasks own the sockets: aborting them closes the sockets.
        self.task.abort();
        if let Some(v6) = &self.v6 {
            v6.task.abort();
        }
    }
}

/// What the Linux side found for one wanted server before the socket step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsState {
    /// Namespace and interface in place, unchanged this pass.
    Ready,
    /// In place, but the namespace or the veth was (re)made this pass: an old socket is bound
    /// to an interface that no longer exists and must be reopened.
    Remade,
    /// Not in place (the error is reported by the Linux side).
    Failed,
}

impl DhcpService {
    /// A service counting into `counters`.
    pub fn new(counters: DhcpCounters) -> DhcpService {
        DhcpService {
            running: Mutex::default(),
            counters,
        }
    }

    /// Makes the running servers exactly the wanted ones whose namespace is in place: opens
    /// the missing sockets (blocking: call from a blocking thread, with the runtime's handle
    /// for the tasks), swaps the configuration of the others, stops the rest. Returns the
    /// error of each server whose socket could not be opened.
    pub fn sync(
        &self,
        wanted: &BTreeMap<String, DhcpIntent>,
        state: &BTreeMap<String, NsState>,
        rt: &tokio::runtime::Handle,
    ) -> BTreeMap<String, String> {
        let mut errors = BTreeMap::new();
        let mut running = self.running.lock().expect("dhcp lock");
        running.retain(|ns, r| {
            let keep = wanted
                .get(ns)
                .is_some_and(|w| w.ns_ifname == r.ifname && w.config6.is_some() == r.v6.is_some())
                && state.get(ns) == Some(&NsState::Ready)
                && !r.task.is_finished()
                && !r.v6.as_ref().is_some_and(|v6| v6.task.is_finished());
            if !keep {
                tracing::info!(netns = %ns, "DHCP server stopped");
            }
            keep
        });
        for (ns, w) in wanted {
            if let Some(r) = running.get(ns) {
                let mut cur = r.config.write().expect("dhcp config lock");
                if **cur != w.config {
                    tracing::info!(netns = %ns, network_id = %w.network_id, "DHCP options or hosts changed; in force for the next request");
                    *cur = Arc::new(w.config.clone());
                }
                drop(cur);
                if let (Some(v6), Some(want)) = (&r.v6, &w.config6) {
                    let mut cur = v6.config.write().expect("dhcpv6 config lock");
                    if **cur != *want {
                        tracing::info!(netns = %ns, network_id = %w.network_id, "DHCPv6 options or hosts changed; in force for the next request");
                        *cur = Arc::new(want.clone());
                    }
                }
                continue;
            }
            if !matches!(state.get(ns), Some(NsState::Ready | NsState::Remade)) {
                continue;
            }
            let sock = match plumbing::udp::bind_in(
                &Netns::named(ns.clone()),
                &w.ns_ifname,
                SERVER_PORT,
                true,
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(netns = %ns, error = %e, "DHCP server cannot listen");
                    errors.insert(ns.clone(), e.to_string());
                    continue;
                }
            };
            let sock = {
                let _g = rt.enter();
                match tokio::net::UdpSocket::from_std(sock) {
                    Ok(s) => s,
                    Err(e) => {
                        errors.insert(ns.clone(), format!("registering the DHCP socket: {e}"));
                        continue;
                    }
                }
            };
            let v6 = match &w.config6 {
                None => None,
                Some(c6) => match open6(ns, w, rt) {
                    Ok(sock) => {
                        let config = Arc::new(RwLock::new(Arc::new(c6.clone())));
                        let task = rt.spawn(serve6(
                            ns.clone(),
                            sock,
                            config.clone(),
                            self.counters.clone(),
                        ));
                        tracing::info!(netns = %ns, network_id = %w.network_id, ifname = %w.ns_ifname, "DHCPv6 server listening");
                        Some(Running6 { config, task })
                    }
                    Err(e) => {
                        tracing::warn!(netns = %ns, error = %e, "DHCPv6 server cannot listen");
                        errors.insert(ns.clone(), e);
                        continue;
                    }
                },
            };
            let config = Arc::new(RwLock::new(Arc::new(w.config.clone())));
            let task = rt.spawn(serve(
                ns.clone(),
                sock,
                config.clone(),
                self.counters.clone(),
            ));
            tracing::info!(netns = %ns, network_id = %w.network_id, ifname = %w.ns_ifname, "DHCP server listening");
            running.insert(
                ns.clone(),
                Running {
                    ifname: w.ns_ifname.clone(),
                    config,
                    task,
                    v6,
                },
            );
        }
        self.counters.servers.set(running.len() as i64);
        errors
    }

    /// How many servers are listening.
    pub fn serving(&self) -> usize {
        self.running.lock().expect("dhcp lock").len()
    }
}

/// The DHCPv6 socket of one server, registered with the runtime.
fn open6(
    ns: &str,
    w: &DhcpIntent,
    rt: &tokio::runtime::Handle,
) -> Result<tokio::net::UdpSocket, String> {
    let sock = plumbing::udp::bind6_in(
        &Netns::named(ns.to_string()),
        &w.ns_ifname,
        SERVER6_PORT,
        ALL_DHCP_SERVERS,
    )
    .map_err(|e| e.to_string())?;
    let _g = rt.enter();
    tokio::net::UdpSocket::from_std(sock).map_err(|e| format!("registering the DHCPv6 socket: {e}"))
}

/// Answers one server's DHCPv6 requests until the task is aborted.
async fn serve6(
    ns: String,
    sock: tokio::net::UdpSocket,
    config: Arc<RwLock<Arc<Server6Config>>>,
    counters: DhcpCounters,
) {
    use dhcproto::v6;
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(netns = %ns, error = %e, "DHCPv6 receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let SocketAddr::V6(peer) = peer else { continue };
        let cfg = config.read().expect("dhcpv6 config lock").clone();
        let labels = vec![("network_id".to_string(), cfg.network_id.clone())];
        counters.requests.get_or_create(&labels).inc();
        let req = match v6::Message::from_bytes(&buf[..n]) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(netns = %ns, %peer, error = %e, "unreadable DHCPv6 packet");
                counters.ignored.get_or_create(&labels).inc();
                continue;
            }
        };
        let kind = req.msg_type();
        let (msg, noted) = match respond6(&cfg, &req, peer.ip()) {
            Verdict6::Reply(m) => (m, false),
            Verdict6::Noted(m) => (m, true),
            Verdict6::Ignore(why) => {
                tracing::debug!(netns = %ns, %peer, ?kind, why, "DHCPv6 request ignored");
                counters.ignored.get_or_create(&labels).inc();
                continue;
            }
        };
        if noted {
            tracing::info!(netns = %ns, %peer, ?kind, "client released or declined its address; the static lease stays");
        }
        let bytes = match msg.to_vec() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(netns = %ns, error = %e, "encoding a DHCPv6 reply");
                continue;
            }
        };
        match sock.send_to(&bytes, peer).await {
            Ok(_) => {
                tracing::debug!(netns = %ns, %peer, ?kind, reply = ?msg.msg_type(), "DHCPv6 reply sent");
                if msg.msg_type() == v6::MessageType::Advertise {
                    counters.offers.get_or_create(&labels).inc();
                } else {
                    counters.acks.get_or_create(&labels).inc();
                }
            }
            Err(e) => {
                tracing::warn!(netns = %ns, %peer, error = %e, "sending a DHCPv6 reply failed")
            }
        }
    }
}

/// Answers one server's requests until the task is aborted.
async fn serve(
    ns: String,
    sock: tokio::net::UdpSocket,
    config: Arc<RwLock<Arc<ServerConfig>>>,
    counters: DhcpCounters,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(netns = %ns, error = %e, "DHCP receive failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let cfg = config.read().expect("dhcp config lock").clone();
        let labels = vec![("network_id".to_string(), cfg.network_id.clone())];
        counters.requests.get_or_create(&labels).inc();
        let req = match Message::from_bytes(&buf[..n]) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(netns = %ns, %peer, error = %e, "unreadable DHCP packet");
                counters.ignored.get_or_create(&labels).inc();
                continue;
            }
        };
        let mac = proto_mac(&req);
        match respond(&cfg, &req) {
            Verdict::Reply { msg, to, kind } => {
                let mut bytes = match msg.to_vec() {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(netns = %ns, error = %e, "encoding a DHCP reply");
                        continue;
                    }
                };
                if bytes.len() < MIN_REPLY {
                    bytes.resize(MIN_REPLY, 0);
                }
                let dest = match to {
                    Destination::Broadcast => Ipv4Addr::BROADCAST,
                    Destination::Unicast(ip) => ip,
                };
                match sock
                    .send_to(&bytes, SocketAddrV4::new(dest, CLIENT_PORT))
                    .await
                {
                    Ok(_) => {
                        tracing::debug!(netns = %ns, %mac, ?kind, yiaddr = %msg.yiaddr(), %dest, "DHCP reply sent");
                        match kind {
                            MessageType::Offer => counters.offers.get_or_create(&labels).inc(),
                            MessageType::Nak => counters.naks.get_or_create(&labels).inc(),
                            _ => counters.acks.get_or_create(&labels).inc(),
                        };
                    }
                    Err(e) => {
                        tracing::warn!(netns = %ns, %mac, %dest, error = %e, "sending a DHCP reply failed")
                    }
                }
            }
            Verdict::Noted(kind) => {
                tracing::info!(netns = %ns, %mac, ?kind, "client released or declined its address; the static lease stays");
            }
            Verdict::Ignore(why) => {
                tracing::debug!(netns = %ns, %mac, why, "DHCP request ignored");
                counters.ignored.get_or_create(&labels).inc();
            }
        }
    }
}

fn proto_mac(m: &Message) -> String {
    m.chaddr()
        .iter()
        .take(usize::from(m.hlen()).min(16))
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
