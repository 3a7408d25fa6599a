//! The DHCPv4 answers of one network's server, as a pure function of its configuration and a
//! request: static leases only (a MAC not in the desired state's `hosts` gets nothing), always
//! the port's fixed IP, so two servers hearing one DISCOVER can never disagree.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use dhcproto::v4::{
    DhcpOption, DhcpOptions, Flags, HType, Message, MessageType, Opcode, OptionCode,
};
use ipnet::{IpNet, Ipv4Net};

/// What one server hands out, parsed once from [`wire::DhcpServer`] (IPv4 only; IPv6 subnets
/// and unreadable MACs are left out: the validation refuses documents with the latter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// Network id (the metrics label).
    pub network_id: String,
    /// Option 26.
    pub mtu: Option<u16>,
    /// Option 51; T1 and T2 are derived (1/2 and 7/8, as RFC 2131 suggests).
    pub lease_seconds: u32,
    /// By subnet id.
    pub subnets: BTreeMap<String, SubnetConfig>,
    /// By client MAC: its leases, in the document's order.
    pub hosts: BTreeMap<[u8; 6], Vec<Lease>>,
}

/// Per-subnet options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetConfig {
    /// The subnet (option 1 is its mask).
    pub cidr: Ipv4Net,
    /// Option 54: the server's own address on the subnet.
    pub server: Ipv4Addr,
    /// Option 3.
    pub router: Option<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 121 (the default route via `router` is added when the option is sent).
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
}

/// One static lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The port's fixed IP.
    pub ip: Ipv4Addr,
    /// Its subnet (a key of [`ServerConfig::subnets`]).
    pub subnet_id: String,
    /// Option 12.
    pub hostname: Option<String>,
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn v4(ip: &IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    }
}

impl ServerConfig {
    /// The server's configuration from the desired state.
    pub fn from_wire(s: &wire::DhcpServer) -> ServerConfig {
        let mut subnets = BTreeMap::new();
        for sn in &s.subnets {
            let (IpNet::V4(cidr), Some(server)) = (sn.cidr, v4(&sn.server_address)) else {
                continue;
            };
            let routes = sn
                .host_routes
                .iter()
                .filter_map(|r| match (r.destination, v4(&r.nexthop)) {
                    (IpNet::V4(d), Some(via)) => Some((d.trunc(), via)),
                    _ => None,
                })
                .collect();
            subnets.insert(
                sn.subnet_id.clone(),
                SubnetConfig {
                    cidr: cidr.trunc(),
                    server,
                    router: sn.router.as_ref().and_then(v4),
                    dns: sn.dns_nameservers.iter().filter_map(v4).collect(),
                    routes,
                },
            );
        }
        let mut hosts: BTreeMap<[u8; 6], Vec<Lease>> = BTreeMap::new();
        for h in &s.hosts {
            let (Some(mac), Some(ip)) = (parse_mac(&h.mac.to_ascii_lowercase()), v4(&h.ip)) else {
                continue;
            };
            if !subnets.contains_key(&h.subnet_id) {
                continue;
            }
            hosts.entry(mac).or_default().push(Lease {
                ip,
                subnet_id: h.subnet_id.clone(),
                hostname: h.hostname.clone(),
            });
        }
        ServerConfig {
            network_id: s.network_id.clone(),
            mtu: s.mtu,
            lease_seconds: s.lease_seconds.max(60),
            subnets,
            hosts,
        }
    }
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// `255.255.255.255:68` out of the server's interface (the client has no address yet).
    Broadcast,
    /// `ciaddr:68` (renewals, INFORM).
    Unicast(Ipv4Addr),
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Send `msg` to `to`; `kind` is OFFER, ACK or NAK.
    Reply {
        /// The answer.
        msg: Box<Message>,
        /// Where to.
        to: Destination,
        /// Its message type.
        kind: MessageType,
    },
    /// A RELEASE or DECLINE: logged, the static lease stays.
    Noted(MessageType),
    /// No answer, and why (logged at debug).
    Ignore(&'static str),
}

/// The answer to one request.
pub fn respond(cfg: &ServerConfig, req: &Message) -> Verdict {
    if req.opcode() != Opcode::BootRequest {
        return Verdict::Ignore("not a BOOTREQUEST");
    }
    if req.htype() != HType::Eth || req.hlen() != 6 {
        return Verdict::Ignore("not an Ethernet client");
    }
    if req.giaddr() != Ipv4Addr::UNSPECIFIED {
        return Verdict::Ignore("relayed requests are not served");
    }
    let Some(kind) = req.opts().msg_type() else {
        return Verdict::Ignore("no DHCP message type (BOOTP)");
    };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.chaddr()[..6]);
    let Some(leases) = cfg.hosts.get(&mac) else {
        return Verdict::Ignore("MAC not among the network's ports");
    };
    let requested = match req.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server_id = match req.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    let ciaddr = req.ciaddr();
    let find = |ip: Ipv4Addr| leases.iter().find(|l| l.ip == ip);
    match kind {
        MessageType::Discover => {
            let lease = requested.and_then(find).unwrap_or(&leases[0]);
            reply(cfg, req, lease, MessageType::Offer)
        }
        MessageType::Request => {
            if let Some(sid) = server_id {
                if !cfg.subnets.values().any(|s| s.server == sid) {
                    return Verdict::Ignore("REQUEST for another server");
                }
            }
            let asked = requested.or_else(|| (ciaddr != Ipv4Addr::UNSPECIFIED).then_some(ciaddr));
            let Some(asked) = asked else {
                return Verdict::Ignore("REQUEST without an address");
            };
            match find(asked) {
                Some(lease) => reply(cfg, req, lease, MessageType::Ack),
                None => nak(cfg, req, &leases[0]),
            }
        }
        MessageType::Inform => {
            let lease = find(ciaddr).unwrap_or(&leases[0]);
            let mut v = reply(cfg, req, lease, MessageType::Ack);
            if let Verdict::Reply { msg, .. } = &mut v {
                // RFC 2131 4.3.5: no yiaddr and no lease time in the answer to an INFORM.
                msg.set_yiaddr(Ipv4Addr::UNSPECIFIED);
                for code in [
                    OptionCode::AddressLeaseTime,
                    OptionCode::Renewal,
                    OptionCode::Rebinding,
                ] {
                    msg.opts_mut().remove(code);
                }
            }
            v
        }
        MessageType::Release | MessageType::Decline => Verdict::Noted(kind),
        _ => Verdict::Ignore("message type a server does not answer"),
    }
}

fn base(req: &Message, kind: MessageType, server: Ipv4Addr) -> Message {
    let mut m = Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &req.chaddr()[..6],
    );
    m.set_opcode(Opcode::BootReply);
    m.set_flags(req.flags());
    let mut opts = DhcpOptions::default();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(server));
    m.set_opts(opts);
    m
}

fn nak(cfg: &ServerConfig, req: &Message, lease: &Lease) -> Verdict {
    let Some(sn) = cfg.subnets.get(&lease.subnet_id) else {
        return Verdict::Ignore("lease on an unknown subnet");
    };
    let mut m = base(req, MessageType::Nak, sn.server);
    m.set_flags(Flags::default().set_broadcast());
    Verdict::Reply {
        msg: Box::new(m),
        to: Destination::Broadcast,
        kind: MessageType::Nak,
    }
}

fn reply(cfg: &ServerConfig, req: &Message, lease: &Lease, kind: MessageType) -> Verdict {
    let Some(sn) = cfg.subnets.get(&lease.subnet_id) else {
        return Verdict::Ignore("lease on an unknown subnet");
    };
    let mut m = base(req, kind, sn.server);
    m.set_yiaddr(lease.ip);
    m.set_ciaddr(req.ciaddr());
    let requested: Option<Vec<OptionCode>> = match req.opts().get(OptionCode::ParameterRequestList)
    {
        Some(DhcpOption::ParameterRequestList(l)) => Some(l.clone()),
        _ => None,
    };
    let asked = |c: OptionCode| requested.as_ref().is_none_or(|l| l.contains(&c));
    let lease_s = cfg.lease_seconds;
    let o = m.opts_mut();
    o.insert(DhcpOption::AddressLeaseTime(lease_s));
    o.insert(DhcpOption::Renewal(lease_s / 2));
    o.insert(DhcpOption::Rebinding(lease_s / 8 * 7));
    o.insert(DhcpOption::SubnetMask(sn.cidr.netmask()));
    if sn.cidr.prefix_len() < 31 {
        o.insert(DhcpOption::BroadcastAddr(sn.cidr.broadcast()));
    }
    if let Some(r) = sn.router {
        o.insert(DhcpOption::Router(vec![r]));
    }
    if !sn.dns.is_empty() {
        o.insert(DhcpOption::DomainNameServer(sn.dns.clone()));
    }
    if let Some(h) = &lease.hostname {
        o.insert(DhcpOption::Hostname(h.clone()));
    }
    if let Some(mtu) = cfg.mtu {
        o.insert(DhcpOption::InterfaceMtu(mtu));
    }
    // RFC 3442: a client that gets option 121 ignores option 3, so the default route goes in
    // too. Sent only when asked for (as the RFC says servers should).
    if asked(OptionCode::ClasslessStaticRoute) && (!sn.routes.is_empty()) {
        let mut routes = sn.routes.clone();
        if let Some(r) = sn.router {
            if !routes.iter().any(|(d, _)| d.prefix_len() == 0) {
                routes.push((Ipv4Net::default(), r));
            }
        }
        o.insert(DhcpOption::ClasslessStaticRoute(routes));
    }
    let to = if req.ciaddr() != Ipv4Addr::UNSPECIFIED {
        Destination::Unicast(req.ciaddr())
    } else {
        Destination::Broadcast
    };
    Verdict::Reply {
        msg: Box::new(m),
        to,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::{Decodable, Encodable};

    const MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x11];

    fn cfg() -> ServerConfig {
        let s: wire::DhcpServer = serde_json::from_value(serde_json::json!({
            "network_id": "n1", "port_id": "p", "namespace": "qdhcp-n1", "bridge": "br-vlan",
            "tag": 101, "mac": "fa:16:3e:00:00:02", "ns_ifname": "ns-p", "ovs_ifname": "tapp",
            "mtu": 1400, "lease_seconds": 600,
            "subnets": [{"subnet_id": "s1", "cidr": "10.0.1.0/24", "server_address": "10.0.1.2",
                         "router": "10.0.1.1", "dns_nameservers": ["10.0.0.53"],
                         "host_routes": [{"destination": "10.0.2.0/24", "nexthop": "10.0.1.254"}]}],
            "hosts": [{"mac": "FA:16:3E:00:00:11", "ip": "10.0.1.11", "subnet_id": "s1",
                       "port_id": "vm1", "hostname": "vm1"}]
        }))
        .unwrap();
        ServerConfig::from_wire(&s)
    }

    fn request(kind: MessageType, mac: [u8; 6], extra: &[DhcpOption]) -> Message {
        let mut m = Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac,
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in extra {
            m.opts_mut().insert(o.clone());
        }
        // Through the wire format, as the server sees it.
        Message::from_bytes(&m.to_vec().unwrap()).unwrap()
    }

    fn reply_of(v: Verdict) -> (Message, Destination, MessageType) {
        match v {
            Verdict::Reply { msg, to, kind } => (*msg, to, kind),
            other => panic!("no reply: {other:?}"),
        }
    }

    #[test]
    fn discover_gets_the_fixed_ip_and_every_option() {
        let prl = DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::ClasslessStaticRoute,
        ]);
        let (m, to, kind) = reply_of(respond(
            &cfg(),
            &request(MessageType::Discover, MAC, &[prl]),
        ));
        assert_eq!(kind, MessageType::Offer);
        assert_eq!(to, Destination::Broadcast);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 1, 11));
        assert_eq!(m.xid(), 7);
        let o = m.opts();
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask([255, 255, 255, 0].into()))
        );
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier([10, 0, 1, 2].into()))
        );
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1400))
        );
        assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(300)));
        assert_eq!(
            o.get(OptionCode::Rebinding),
            Some(&DhcpOption::Rebinding(525))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("vm1".into()))
        );
        assert_eq!(
            o.get(OptionCode::ClasslessStaticRoute),
            Some(&DhcpOption::ClasslessStaticRoute(vec![
                ("10.0.2.0/24".parse().unwrap(), [10, 0, 1, 254].into()),
                ("0.0.0.0/0".parse().unwrap(), [10, 0, 1, 1].into()),
            ]))
        );
    }

    #[test]
    fn classless_routes_only_when_asked() {
        let prl = DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask]);
        let (m, _, _) = reply_of(respond(
            &cfg(),
            &request(MessageType::Discover, MAC, &[prl]),
        ));
        assert!(m.opts().get(OptionCode::ClasslessStaticRoute).is_none());
        assert!(m.opts().get(OptionCode::Router).is_some());
    }

    #[test]
    fn request_for_the_fixed_ip_is_acked_anything_else_nakked() {
        let ok = request(
            MessageType::Request,
            MAC,
            &[
                DhcpOption::RequestedIpAddress([10, 0, 1, 11].into()),
                DhcpOption::ServerIdentifier([10, 0, 1, 2].into()),
            ],
        );
        let (m, _, kind) = reply_of(respond(&cfg(), &ok));
        assert_eq!(kind, MessageType::Ack);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 0, 1, 11));
        let wrong = request(
            MessageType::Request,
            MAC,
            &[DhcpOption::RequestedIpAddress([10, 0, 1, 99].into())],
        );
        let (m, to, kind) = reply_of(respond(&cfg(), &wrong));
        assert_eq!(kind, MessageType::Nak);
        assert_eq!(to, Destination::Broadcast);
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        let other_server = request(
            MessageType::Request,
            MAC,
            &[
                DhcpOption::RequestedIpAddress([10, 0, 1, 11].into()),
                DhcpOption::ServerIdentifier([10, 0, 1, 3].into()),
            ],
        );
        assert!(matches!(respond(&cfg(), &other_server), Verdict::Ignore(_)));
    }

    #[test]
    fn renewal_is_unicast_to_the_client() {
        let mut r = request(MessageType::Request, MAC, &[]);
        r.set_ciaddr(Ipv4Addr::new(10, 0, 1, 11));
        let (m, to, kind) = reply_of(respond(&cfg(), &r));
        assert_eq!(kind, MessageType::Ack);
        assert_eq!(to, Destination::Unicast(Ipv4Addr::new(10, 0, 1, 11)));
        assert_eq!(m.ciaddr(), Ipv4Addr::new(10, 0, 1, 11));
    }

    #[test]
    fn inform_has_options_but_no_lease() {
        let mut r = request(MessageType::Inform, MAC, &[]);
        r.set_ciaddr(Ipv4Addr::new(10, 0, 1, 11));
        let (m, to, kind) = reply_of(respond(&cfg(), &r));
        assert_eq!(kind, MessageType::Ack);
        assert_eq!(to, Destination::Unicast(Ipv4Addr::new(10, 0, 1, 11)));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
        assert!(m.opts().get(OptionCode::DomainNameServer).is_some());
    }

    #[test]
    fn unknown_macs_release_and_decline_get_no_answer() {
        let other = [0xfa, 0x16, 0x3e, 0, 0, 0x99];
        assert!(matches!(
            respond(&cfg(), &request(MessageType::Discover, other, &[])),
            Verdict::Ignore(_)
        ));
        assert_eq!(
            respond(&cfg(), &request(MessageType::Release, MAC, &[])),
            Verdict::Noted(MessageType::Release)
        );
        assert_eq!(
            respond(&cfg(), &request(MessageType::Decline, MAC, &[])),
            Verdict::Noted(MessageType::Decline)
        );
    }
}
