//! Probes from inside a namespace out of a given interface: ARP request/reply over a pnet
//! datalink channel (IPv6: neighbour solicitation and advertisement over a raw ICMPv6 socket,
//! [`nd`]), ICMP echo over a raw socket bound to the interface (packets built and
//! parsed with pnet), and TCP connect. Each attempt has a timeout; attempts are retried; the
//! result is structured (ok / timeout / failed) with the measured round-trip time.
//!
//! Every probe runs on a dedicated thread inside the namespace, so it can be called from any
//! thread (from async code, through `spawn_blocking`).

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use pnet_datalink::{Channel, Config, NetworkInterface};
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmp::echo_reply::EchoReplyPacket;
use pnet_packet::icmp::echo_request::MutableEchoRequestPacket;
use pnet_packet::icmp::{IcmpPacket, IcmpTypes};
use pnet_packet::icmpv6::echo_reply::EchoReplyPacket as Icmpv6EchoReplyPacket;
use pnet_packet::icmpv6::echo_request::MutableEchoRequestPacket as Icmpv6EchoRequestPacket;
use pnet_packet::icmpv6::Icmpv6Types;
use pnet_packet::ipv4::Ipv4Packet;
use pnet_packet::{MutablePacket, Packet};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{Error, Result};
use crate::link::{validate_ifname, Mac};
use crate::netns::{run_in, Netns};

/// How long to wait per attempt and how often to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Wait for an answer this long per attempt.
    pub timeout: Duration,
    /// Extra attempts after the first one times out.
    pub retries: u32,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(1),
            retries: 2,
        }
    }
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeStatus {
    /// An answer came back.
    Ok,
    /// Every attempt timed out.
    Timeout,
    /// A definite negative answer (connection refused, no route to host...).
    Failed(String),
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Ok, timeout or failed.
    pub status: ProbeStatus,
    /// Round-trip time of the answered attempt.
    pub rtt: Option<Duration>,
    /// Attempts made.
    pub attempts: u32,
    /// For ARP: the MAC that answered.
    pub mac: Option<Mac>,
}

impl ProbeResult {
    /// Whether the target answered.
    pub fn ok(&self) -> bool {
        self.status == ProbeStatus::Ok
    }

    fn answered(rtt: Duration, attempts: u32, mac: Option<Mac>) -> ProbeResult {
        ProbeResult {
            status: ProbeStatus::Ok,
            rtt: Some(rtt),
            attempts,
            mac,
        }
    }

    fn negative(status: ProbeStatus, attempts: u32) -> ProbeResult {
        ProbeResult {
            status,
            rtt: None,
            attempts,
            mac: None,
        }
    }
}

fn setup_err(
    kind: &'static str,
    target: impl ToString,
    ifname: &str,
    ns: &Netns,
) -> impl Fn(String) -> Error {
    let target = target.to_string();
    let ifname = ifname.to_string();
    let ns = ns.display_name().to_string();
    move |detail| Error::Probe {
        kind,
        target: target.clone(),
        ifname: ifname.clone(),
        ns: ns.clone(),
        detail,
    }
}

fn find_interface(name: &str) -> Option<NetworkInterface> {
    pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
}

/// ARP request for `target` out of `ifname` in `ns`; ok when `target` replies (its MAC is
/// returned). The sender address is the interface's first IPv4 address.
pub fn arp(ns: &Netns, ifname: &str, target: Ipv4Addr, opts: &ProbeOptions) -> Result<ProbeResult> {
    validate_ifname(ifname)?;
    let err = setup_err("arp", target, ifname, ns);
    run_in(ns, || -> Result<ProbeResult> {
        let iface = find_interface(ifname).ok_or_else(|| err("no such interface".into()))?;
        let src_mac = iface
            .mac
            .ok_or_else(|| err("interface has no MAC".into()))?;
        let src_ip = iface
            .ips
            .iter()
            .find_map(|n| match n.ip() {
                IpAddr::V4(v4) => Some(v4),
                _ => None,
            })
            .ok_or_else(|| err("interface has no IPv4 address".into()))?;
        let config = Config {
            read_timeout: Some(Duration::from_millis(20)),
            ..Config::default()
        };
        let (mut tx, mut rx) = match pnet_datalink::channel(&iface, config) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => return Err(err("unexpected channel type".into())),
            Err(e) => return Err(err(format!("opening a datalink channel: {e}"))),
        };
        let mut frame = [0u8; 42];
        {
            let mut eth = MutableEthernetPacket::new(&mut frame).expect("42 bytes");
            eth.set_destination(pnet_datalink::MacAddr::broadcast());
            eth.set_source(src_mac);
            eth.set_ethertype(EtherTypes::Arp);
            let mut a = MutableArpPacket::new(eth.payload_mut()).expect("28 bytes");
            a.set_hardware_type(ArpHardwareTypes::Ethernet);
            a.set_protocol_type(EtherTypes::Ipv4);
            a.set_hw_addr_len(6);
            a.set_proto_addr_len(4);
            a.set_operation(ArpOperations::Request);
            a.set_sender_hw_addr(src_mac);
            a.set_sender_proto_addr(src_ip);
            a.set_target_hw_addr(pnet_datalink::MacAddr::zero());
            a.set_target_proto_addr(target);
        }
        let attempts = opts.retries + 1;
        for attempt in 1..=attempts {
            let sent = Instant::now();
            match tx.send_to(&frame, None) {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    return Ok(ProbeResult::negative(
                        ProbeStatus::Failed(e.to_string()),
                        attempt,
                    ))
                }
                None => return Err(err("datalink sender refused the frame".into())),
            }
            while sent.elapsed() < opts.timeout {
                let data = match rx.next() {
                    Ok(d) => d,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(err(format!("reading frames: {e}"))),
                };
                let Some(eth) = EthernetPacket::new(data) else {
                    continue;
                };
                if eth.get_ethertype() != EtherTypes::Arp {
                    continue;
                }
                let Some(reply) = ArpPacket::new(eth.payload()) else {
                    continue;
                };
                if reply.get_operation() == ArpOperations::Reply
                    && reply.get_sender_proto_addr() == target
                {
                    let m = reply.get_sender_hw_addr();
                    return Ok(ProbeResult::answered(
                        sent.elapsed(),
                        attempt,
                        Some([m.0, m.1, m.2, m.3, m.4, m.5]),
                    ));
                }
            }
        }
        Ok(ProbeResult::negative(ProbeStatus::Timeout, attempts))
    })?
}

static ICMP_ID: AtomicU16 = AtomicU16::new(0);

fn is_wait(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::Interrupted
    )
}

/// Builds an echo request (ICMPv4 type 8 with its checksum, or ICMPv6 type 128 whose checksum
/// the kernel fills in).
fn echo_request(v6: bool, ident: u16, seq: u16) -> [u8; 24] {
    let mut pkt = [0u8; 8 + 16];
    if v6 {
        let mut req = Icmpv6EchoRequestPacket::new(&mut pkt).expect("24 bytes");
        req.set_icmpv6_type(Icmpv6Types::EchoRequest);
        req.set_identifier(ident);
        req.set_sequence_number(seq);
        req.set_payload(b"crosspod-probe!!");
    } else {
        let mut req = MutableEchoRequestPacket::new(&mut pkt).expect("24 bytes");
        req.set_icmp_type(IcmpTypes::EchoRequest);
        req.set_identifier(ident);
        req.set_sequence_number(seq);
        req.set_payload(b"crosspod-probe!!");
        let sum = pnet_packet::util::checksum(req.packet(), 1);
        req.set_checksum(sum);
    }
    pkt
}

/// Whether `data` (what a raw socket returned, from `from`) is the echo reply to (ident, seq).
fn is_our_reply(
    v6: bool,
    target: IpAddr,
    from: Option<IpAddr>,
    data: &[u8],
    ident: u16,
    seq: u16,
) -> bool {
    if v6 {
        // ICMPv6 raw sockets return the ICMPv6 message only.
        if from != Some(target) {
            return false;
        }
        let Some(reply) = Icmpv6EchoReplyPacket::new(data) else {
            return false;
        };
        reply.get_icmpv6_type() == Icmpv6Types::EchoReply
            && reply.get_identifier() == ident
            && reply.get_sequence_number() == seq
    } else {
        // ICMPv4 raw sockets return the IP header too.
        let Some(ip) = Ipv4Packet::new(data) else {
            return false;
        };
        if IpAddr::V4(ip.get_source()) != target {
            return false;
        }
        let hl = (ip.get_header_length() as usize * 4).min(data.len());
        let Some(icmp) = IcmpPacket::new(&data[hl..]) else {
            return false;
        };
        if icmp.get_icmp_type() != IcmpTypes::EchoReply {
            return false;
        }
        let Some(reply) = EchoReplyPacket::new(icmp.packet()) else {
            return false;
        };
        reply.get_identifier() == ident && reply.get_sequence_number() == seq
    }
}

/// ICMP echo (v4 or v6) to `target` out of `ifname` in `ns`, over a raw socket bound to the
/// interface; ok with the round-trip time when the matching echo reply comes back. Replies
/// already queued when the attempt's time is up still count (a starved thread does not turn an
/// answer into a timeout).
pub fn icmp(ns: &Netns, ifname: &str, target: IpAddr, opts: &ProbeOptions) -> Result<ProbeResult> {
    validate_ifname(ifname)?;
    let err = setup_err("icmp", target, ifname, ns);
    let ident = (std::process::id() as u16)
        .wrapping_mul(31)
        .wrapping_add(ICMP_ID.fetch_add(1, Ordering::Relaxed));
    let v6 = target.is_ipv6();
    run_in(ns, || -> Result<ProbeResult> {
        let sock = if v6 {
            Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        } else {
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        }
        .map_err(|e| err(format!("raw ICMP socket: {e}")))?;
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| err(format!("binding to the interface: {e}")))?;
        let dest = match target {
            IpAddr::V4(a) => SockAddr::from(SocketAddrV4::new(a, 0)),
            IpAddr::V6(a) => {
                let cname = std::ffi::CString::new(ifname).expect("validated name");
                // SAFETY: valid C string.
                let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
                SockAddr::from(SocketAddrV6::new(a, 0, 0, index))
            }
        };
        let attempts = opts.retries + 1;
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        for attempt in 1..=attempts {
            let seq = attempt as u16;
            let pkt = echo_request(v6, ident, seq);
            let sent = Instant::now();
            if let Err(e) = sock.send_to(&pkt, &dest) {
                return Ok(ProbeResult::negative(
                    ProbeStatus::Failed(e.to_string()),
                    attempt,
                ));
            }
            loop {
                let left = opts.timeout.saturating_sub(sent.elapsed());
                sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .map_err(|e| err(format!("setting the timeout: {e}")))?;
                let (n, from) = match sock.recv_from(&mut buf) {
                    Ok((n, from)) => (n, from.as_socket().map(|a| a.ip())),
                    Err(e) if is_wait(&e) => {
                        if left.is_zero() {
                            break;
                        }
                        continue;
                    }
                    Err(e) => {
                        return Ok(ProbeResult::negative(
                            ProbeStatus::Failed(e.to_string()),
                            attempt,
                        ))
                    }
                };
                // SAFETY: recv_from initialised the first n bytes.
                let data = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n) };
                if is_our_reply(v6, target, from, data, ident, seq) {
                    return Ok(ProbeResult::answered(sent.elapsed(), attempt, None));
                }
                if sent.elapsed() > opts.timeout * 2 {
                    break; // a busy socket: stop reading other traffic
                }
            }
        }
        Ok(ProbeResult::negative(ProbeStatus::Timeout, attempts))
    })?
}

/// TCP connect to `target` from `ns`, optionally bound to `ifname`; ok with the time the
/// handshake took. A refusal is a definite [`ProbeStatus::Failed`] and is not retried.
pub fn tcp(
    ns: &Netns,
    ifname: Option<&str>,
    target: SocketAddr,
    opts: &ProbeOptions,
) -> Result<ProbeResult> {
    if let Some(i) = ifname {
        validate_ifname(i)?;
    }
    let err = setup_err("tcp", target, ifname.unwrap_or(""), ns);
    run_in(ns, || -> Result<ProbeResult> {
        let attempts = opts.retries + 1;
        for attempt in 1..=attempts {
            let sock = Socket::new(
                Domain::for_address(target),
                Type::STREAM,
                Some(Protocol::TCP),
            )
            .map_err(|e| err(format!("socket: {e}")))?;
            if let Some(i) = ifname {
                sock.bind_device(Some(i.as_bytes()))
                    .map_err(|e| err(format!("binding to the interface: {e}")))?;
            }
            let start = Instant::now();
            match sock.connect_timeout(&SockAddr::from(target), opts.timeout) {
                Ok(()) => return Ok(ProbeResult::answered(start.elapsed(), attempt, None)),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    return Ok(ProbeResult::negative(
                        ProbeStatus::Failed(e.to_string()),
                        attempt,
                    ))
                }
            }
        }
        Ok(ProbeResult::negative(ProbeStatus::Timeout, attempts))
    })?
}

/// Gratuitous ARP: announces `addrs` out of `ifname` in `ns`, `count` rounds `gap` apart (a
/// broadcast ARP request with sender and target both the address, as `arping -U` sends), so
/// switches and neighbours learn at once that the addresses now live behind this interface's
/// MAC (router failover's takeover). Returns the frames sent.
pub fn gratuitous_arp(
    ns: &Netns,
    ifname: &str,
    addrs: &[Ipv4Addr],
    count: u32,
    gap: Duration,
) -> Result<u32> {
    validate_ifname(ifname)?;
    let err = setup_err("garp", format!("{addrs:?}"), ifname, ns);
    run_in(ns, || -> Result<u32> {
        let iface = find_interface(ifname).ok_or_else(|| err("no such interface".into()))?;
        let src_mac = iface
            .mac
            .ok_or_else(|| err("interface has no MAC".into()))?;
        let (mut tx, _rx) = match pnet_datalink::channel(&iface, Config::default()) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => return Err(err("unexpected channel type".into())),
            Err(e) => return Err(err(format!("opening a datalink channel: {e}"))),
        };
        let frames: Vec<[u8; 42]> = addrs
            .iter()
            .map(|addr| {
                let mut frame = [0u8; 42];
                let mut eth = MutableEthernetPacket::new(&mut frame).expect("42 bytes");
                eth.set_destination(pnet_datalink::MacAddr::broadcast());
                eth.set_source(src_mac);
                eth.set_ethertype(EtherTypes::Arp);
                let mut a = MutableArpPacket::new(eth.payload_mut()).expect("28 bytes");
                a.set_hardware_type(ArpHardwareTypes::Ethernet);
                a.set_protocol_type(EtherTypes::Ipv4);
                a.set_hw_addr_len(6);
                a.set_proto_addr_len(4);
                a.set_operation(ArpOperations::Request);
                a.set_sender_hw_addr(src_mac);
                a.set_sender_proto_addr(*addr);
                a.set_target_hw_addr(pnet_datalink::MacAddr::zero());
                a.set_target_proto_addr(*addr);
                frame
            })
            .collect();
        let mut sent = 0;
        for round in 0..count {
            if round > 0 {
                std::thread::sleep(gap);
            }
            for f in &frames {
                match tx.send_to(f, None) {
                    Some(Ok(())) => sent += 1,
                    Some(Err(e)) => return Err(err(format!("sending: {e}"))),
                    None => return Err(err("datalink sender refused the frame".into())),
                }
            }
        }
        Ok(sent)
    })?
}

/// A raw ICMPv6 socket bound to `ifname` with hop limits 255 (neighbour discovery packets with
/// another hop limit are dropped, RFC 4861 §7.1) passing only `accept`; call inside the
/// namespace. Returns the socket and the interface's index and MAC.
fn nd_socket(ifname: &str, accept: &[u8]) -> std::result::Result<(Socket, u32, [u8; 6]), String> {
    let iface = find_interface(ifname).ok_or("no such interface")?;
    let m = iface.mac.ok_or("interface has no MAC")?;
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
        .map_err(|e| format!("raw ICMPv6 socket: {e}"))?;
    s.bind_device(Some(ifname.as_bytes()))
        .map_err(|e| format!("binding to the interface: {e}"))?;
    s.set_multicast_hops_v6(255)
        .and_then(|()| s.set_unicast_hops_v6(255))
        .and_then(|()| s.set_multicast_loop_v6(false))
        .and_then(|()| crate::icmp6::set_filter(&s, accept))
        .map_err(|e| format!("socket options: {e}"))?;
    Ok((s, iface.index, [m.0, m.1, m.2, m.3, m.4, m.5]))
}

/// Neighbour discovery, IPv6's ARP: a neighbour solicitation for `target` (to its
/// solicited-node multicast address) out of `ifname` in `ns`; ok when a neighbour
/// advertisement of `target` comes back (the MAC of its target link-layer option is returned).
/// The source address is whichever the kernel picks on the interface (the router legs'
/// addresses are usable at once: they are added without duplicate address detection).
pub fn nd(ns: &Netns, ifname: &str, target: Ipv6Addr, opts: &ProbeOptions) -> Result<ProbeResult> {
    validate_ifname(ifname)?;
    let err = setup_err("nd", target, ifname, ns);
    run_in(ns, || -> Result<ProbeResult> {
        let (sock, index, mac) =
            nd_socket(ifname, &[crate::icmp6::NEIGHBOUR_ADVERTISEMENT]).map_err(&err)?;
        let pkt = crate::icmp6::neighbour_solicitation(&target, mac);
        let dest = SockAddr::from(SocketAddrV6::new(
            crate::icmp6::solicited_node(&target),
            0,
            0,
            index,
        ));
        let attempts = opts.retries + 1;
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        for attempt in 1..=attempts {
            let sent = Instant::now();
            if let Err(e) = sock.send_to(&pkt, &dest) {
                return Ok(ProbeResult::negative(
                    ProbeStatus::Failed(e.to_string()),
                    attempt,
                ));
            }
            loop {
                let left = opts.timeout.saturating_sub(sent.elapsed());
                if left.is_zero() {
                    break;
                }
                sock.set_read_timeout(Some(left))
                    .map_err(|e| err(format!("setting the timeout: {e}")))?;
                let n = match sock.recv_from(&mut buf) {
                    Ok((n, _)) => n,
                    Err(e) if is_wait(&e) => continue,
                    Err(e) => {
                        return Ok(ProbeResult::negative(
                            ProbeStatus::Failed(e.to_string()),
                            attempt,
                        ))
                    }
                };
                // SAFETY: recv_from initialised the first n bytes.
                let data = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n) };
                if let Some(m) = crate::icmp6::advertised_mac(data, &target) {
                    return Ok(ProbeResult::answered(sent.elapsed(), attempt, m));
                }
            }
        }
        Ok(ProbeResult::negative(ProbeStatus::Timeout, attempts))
    })?
}

/// Unsolicited neighbour advertisements, IPv6's gratuitous ARP: announces `addrs` out of
/// `ifname` in `ns` to all nodes, `count` rounds `gap` apart, with the override flag (and the
/// router flag: these are router legs), so neighbours holding an entry for an address repoint
/// it at this interface's MAC at once (router failover's takeover). Returns the packets sent.
pub fn unsolicited_na(
    ns: &Netns,
    ifname: &str,
    addrs: &[Ipv6Addr],
    count: u32,
    gap: Duration,
) -> Result<u32> {
    validate_ifname(ifname)?;
    let err = setup_err("unsolicited-na", format!("{addrs:?}"), ifname, ns);
    run_in(ns, || -> Result<u32> {
        let (sock, index, mac) = nd_socket(ifname, &[]).map_err(&err)?;
        let dest = SockAddr::from(SocketAddrV6::new(crate::icmp6::ALL_NODES, 0, 0, index));
        let pkts: Vec<Vec<u8>> = addrs
            .iter()
            .map(|a| crate::icmp6::unsolicited_advertisement(a, mac, true))
            .collect();
        let mut sent = 0;
        for round in 0..count {
            if round > 0 {
                std::thread::sleep(gap);
            }
            for p in &pkts {
                sock.send_to(p, &dest)
                    .map_err(|e| err(format!("sending: {e}")))?;
                sent += 1;
            }
        }
        Ok(sent)
    })?
}
