//! The DHCPv6 answers of one network's server (RFC 8415), as a pure function of its
//! configuration, a request and the address it came from. Like DHCPv4: static leases only,
//! always the port's fixed IP, so two servers hearing one Solicit never disagree.
//!
//! - `dhcpv6-stateless` subnets: Information-Request is answered (DNS servers, option 23)
//!   for any client of the network, as the router advertisements are heard by all of them.
//! - `dhcpv6-stateful` subnets: Solicit (Advertise, or Reply with Rapid Commit when the client
//!   asks for it), Request, Renew, Rebind, Confirm, Release, Decline, with an IA_NA holding the
//!   port's fixed IPs. The client is its MAC, read from its DUID (DUID-LL or DUID-LLT) or, when
//!   the DUID holds none, from the EUI-64 link-local address it sends from; a MAC not among the
//!   hosts gets nothing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, Message, MessageType, OptionCode, Status, StatusCode, IANA,
};
use ipnet::{IpNet, Ipv6Net};
use wire::Ipv6AddressMode;

use super::proto::parse_mac;

/// What one server hands out over DHCPv6.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Server6Config {
    /// Network id (the metrics label).
    pub network_id: String,
    /// The server's DUID: DUID-LL of the DHCP port's MAC (stable across restarts and nodes
    /// serving the same port).
    pub duid: Vec<u8>,
    /// Valid and preferred lifetime of the leased addresses; T1 and T2 are 1/2 and 4/5 of it
    /// (RFC 8415 §21.4's recommendation).
    pub lease_seconds: u32,
    /// Option 23: the IPv6 DNS servers of the served subnets.
    pub dns: Vec<Ipv6Addr>,
    /// The `dhcpv6-stateful` subnets (on-link for Confirm).
    pub stateful: Vec<Ipv6Net>,
    /// By client MAC: its fixed IPs on the stateful subnets.
    pub hosts: BTreeMap<[u8; 6], Vec<Ipv6Addr>>,
}

/// The DUID-LL (RFC 8415 §11.4) of an Ethernet MAC.
pub fn duid_ll(mac: [u8; 6]) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(&mac);
    d
}

impl Server6Config {
    /// The DHCPv6 side of a server of the desired state; `None` when none of its subnets is
    /// `dhcpv6-stateless` or `dhcpv6-stateful`.
    pub fn from_wire(s: &wire::DhcpServer) -> Option<Server6Config> {
        let mac = parse_mac(&s.mac.to_ascii_lowercase())?;
        let mut cfg = Server6Config {
            network_id: s.network_id.clone(),
            duid: duid_ll(mac),
            lease_seconds: s.lease_seconds.max(60),
            ..Server6Config::default()
        };
        let mut stateful_ids = Vec::new();
        let mut any = false;
        for sn in &s.subnets {
            let IpNet::V6(cidr) = sn.cidr else { continue };
            let Some(mode) = sn.ipv6_address_mode else {
                continue;
            };
            if mode == Ipv6AddressMode::Slaac {
                continue;
            }
            any = true;
            for d in &sn.dns_nameservers {
                if let IpAddr::V6(d) = d {
                    if !cfg.dns.contains(d) {
                        cfg.dns.push(*d);
                    }
                }
            }
            if mode == Ipv6AddressMode::Dhcpv6Stateful {
                cfg.stateful.push(cidr.trunc());
                stateful_ids.push(sn.subnet_id.as_str());
            }
        }
        for h in &s.hosts {
            let (Some(mac), IpAddr::V6(ip)) = (parse_mac(&h.mac.to_ascii_lowercase()), h.ip) else {
                continue;
            };
            if stateful_ids.contains(&h.subnet_id.as_str()) {
                cfg.hosts.entry(mac).or_default().push(ip);
            }
        }
        any.then_some(cfg)
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict6 {
    /// Send `msg` back to the client (its address, port 546).
    Reply(Box<Message>),
    /// A Release or Decline: answered, logged, the static lease stays.
    Noted(Box<Message>),
    /// No answer, and why (logged at debug).
    Ignore(&'static str),
}

/// The client's MAC: from its DUID-LLT or DUID-LL with hardware type Ethernet, else from the
/// EUI-64 link-local address it sent from.
pub fn client_mac(duid: &[u8], src: &Ipv6Addr) -> Option<[u8; 6]> {
    let ether = |hw: &[u8], mac: &[u8]| -> Option<[u8; 6]> {
        (hw == [0, 1] && mac.len() == 6).then(|| mac.try_into().expect("6 bytes"))
    };
    let from_duid = match duid {
        [0, 1, h0, h1, _, _, _, _, mac @ ..] => ether(&[*h0, *h1], mac),
        [0, 3, h0, h1, mac @ ..] => ether(&[*h0, *h1], mac),
        _ => None,
    };
    from_duid.or_else(|| {
        (src.segments()[0] & 0xffc0 == 0xfe80)
            .then(|| plumbing::icmp6::mac_of_eui64(src))
            .flatten()
    })
}

fn client_id(req: &Message) -> Option<&[u8]> {
    match req.opts().get(OptionCode::ClientId) {
        Some(DhcpOption::ClientId(d)) if !d.is_empty() => Some(d),
        _ => None,
    }
}

fn server_id(req: &Message) -> Option<&[u8]> {
    match req.opts().get(OptionCode::ServerId) {
        Some(DhcpOption::ServerId(d)) => Some(d),
        _ => None,
    }
}

fn ianas(req: &Message) -> Vec<&IANA> {
    req.opts()
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(ia),
            _ => None,
        })
        .collect()
}

fn status(status: Status, msg: &str) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status,
        msg: msg.to_string(),
    })
}

/// The answer to one request from `src`.
pub fn respond6(cfg: &Server6Config, req: &Message, src: &Ipv6Addr) -> Verdict6 {
    let kind = req.msg_type();
    let Some(duid) = client_id(req) else {
        if kind == MessageType::InformationRequest {
            // An Information-Request may come without a Client Identifier (RFC 8415 §18.2.6).
            return info_reply(cfg, req, None);
        }
        return Verdict6::Ignore("no client identifier");
    };
    let sid = server_id(req);
    let ours = sid == Some(cfg.duid.as_slice());
    match kind {
        MessageType::InformationRequest => {
            if sid.is_some() && !ours {
                return Verdict6::Ignore("another server's Information-Request");
            }
            info_reply(cfg, req, Some(duid))
        }
        MessageType::Solicit | MessageType::Rebind | MessageType::Confirm if sid.is_some() => {
            Verdict6::Ignore("a server identifier where none may be")
        }
        MessageType::Request | MessageType::Renew | MessageType::Release | MessageType::Decline
            if !ours =>
        {
            Verdict6::Ignore("another server's request")
        }
        MessageType::Solicit
        | MessageType::Request
        | MessageType::Renew
        | MessageType::Rebind
        | MessageType::Confirm
        | MessageType::Release
        | MessageType::Decline => {
            let Some(mac) = client_mac(duid, src) else {
                return Verdict6::Ignore("client MAC unknown (no DUID-LL/LLT, no EUI-64 source)");
            };
            let Some(ips) = cfg.hosts.get(&mac) else {
                return Verdict6::Ignore("MAC not among the hosts");
            };
            lease_reply(cfg, req, duid, ips)
        }
        _ => Verdict6::Ignore("not a client message this server answers"),
    }
}

fn reply_to(cfg: &Server6Config, req: &Message, kind: MessageType, duid: Option<&[u8]>) -> Message {
    let mut m = Message::new_with_id(kind, req.xid());
    let o = m.opts_mut();
    o.insert(DhcpOption::ServerId(cfg.duid.clone()));
    if let Some(d) = duid {
        o.insert(DhcpOption::ClientId(d.to_vec()));
    }
    m
}

fn info_reply(cfg: &Server6Config, req: &Message, duid: Option<&[u8]>) -> Verdict6 {
    let mut m = reply_to(cfg, req, MessageType::Reply, duid);
    if !cfg.dns.is_empty() {
        m.opts_mut()
            .insert(DhcpOption::DomainNameServers(cfg.dns.clone()));
    }
    Verdict6::Reply(Box::new(m))
}

fn lease_reply(cfg: &Server6Config, req: &Message, duid: &[u8], ips: &[Ipv6Addr]) -> Verdict6 {
    let kind = req.msg_type();
    match kind {
        MessageType::Release | MessageType::Decline => {
            let mut m = reply_to(cfg, req, MessageType::Reply, Some(duid));
            m.opts_mut().insert(status(
                Status::Success,
                "the address is the port's fixed IP and stays",
            ));
            return Verdict6::Noted(Box::new(m));
        }
        MessageType::Confirm => {
            let addrs: Vec<Ipv6Addr> = ianas(req)
                .iter()
                .flat_map(|ia| ia.opts.iter())
                .filter_map(|o| match o {
                    DhcpOption::IAAddr(a) => Some(a.addr),
                    _ => None,
                })
                .collect();
            if addrs.is_empty() {
                return Verdict6::Ignore("Confirm without addresses");
            }
            let on_link = addrs
                .iter()
                .all(|a| cfg.stateful.iter().any(|n| n.contains(a)));
            let mut m = reply_to(cfg, req, MessageType::Reply, Some(duid));
            m.opts_mut().insert(if on_link {
                status(Status::Success, "on link")
            } else {
                status(Status::NotOnLink, "not on this link")
            });
            return Verdict6::Reply(Box::new(m));
        }
        _ => {}
    }
    let asked = ianas(req);
    if asked.is_empty() {
        return Verdict6::Ignore("no IA_NA asked for");
    }
    let rapid = kind == MessageType::Solicit && req.opts().get(OptionCode::RapidCommit).is_some();
    let out_kind = if kind == MessageType::Solicit && !rapid {
        MessageType::Advertise
    } else {
        MessageType::Reply
    };
    let mut m = reply_to(cfg, req, out_kind, Some(duid));
    let life = cfg.lease_seconds;
    for (i, ia) in asked.iter().enumerate() {
        let mut opts = DhcpOptions::new();
        // Every address of the port goes into the first IA_NA; further ones get none.
        if i == 0 {
            for ip in ips {
                opts.insert(DhcpOption::IAAddr(IAAddr {
                    addr: *ip,
                    preferred_life: life,
                    valid_life: life,
                    opts: DhcpOptions::new(),
                }));
            }
        } else {
            opts.insert(status(
                Status::NoAddrsAvail,
                "the port's addresses are in the first IA_NA",
            ));
        }
        m.opts_mut().insert(DhcpOption::IANA(IANA {
            id: ia.id,
            t1: life / 2,
            t2: life / 5 * 4,
            opts,
        }));
    }
    if rapid {
        m.opts_mut().insert(DhcpOption::RapidCommit);
    }
    if out_kind == MessageType::Advertise {
        // The highest preference: the client takes this advertisement without waiting for
        // others (RFC 8415 §18.2.1), as no other server may lease the port's address.
        m.opts_mut().insert(DhcpOption::Preference(255));
    }
    if !cfg.dns.is_empty() {
        m.opts_mut()
            .insert(DhcpOption::DomainNameServers(cfg.dns.clone()));
    }
    Verdict6::Reply(Box::new(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::{Decodable, Encodable};
    use serde_json::json;

    const MAC1: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 0x11];

    fn server(mode: &str) -> wire::DhcpServer {
        serde_json::from_value(json!({
            "network_id": "n1", "port_id": "dp", "namespace": "qdhcp-n1", "bridge": "br",
            "tag": 101, "mac": "fa:16:3e:00:00:02", "ns_ifname": "ns-1", "ovs_ifname": "td-1",
            "lease_seconds": 600,
            "subnets": [
                {"subnet_id": "s4", "cidr": "10.0.1.0/24", "server_address": "10.0.1.2",
                 "dns_nameservers": ["10.0.0.53"]},
                {"subnet_id": "s6", "cidr": "fd00:1::/64", "server_address": "fd00:1::2",
                 "dns_nameservers": ["fd00::53", "10.0.0.53"], "ipv6_address_mode": mode}
            ],
            "hosts": [
                {"mac": "fa:16:3e:00:00:11", "ip": "fd00:1::11", "subnet_id": "s6", "port_id": "p1"},
                {"mac": "fa:16:3e:00:00:11", "ip": "10.0.1.11", "subnet_id": "s4", "port_id": "p1"}
            ]
        }))
        .unwrap()
    }

    fn msg(kind: MessageType, duid: Option<Vec<u8>>, sid: Option<Vec<u8>>, ia: bool) -> Message {
        let mut m = Message::new_with_id(kind, [1, 2, 3]);
        if let Some(d) = duid {
            m.opts_mut().insert(DhcpOption::ClientId(d));
        }
        if let Some(s) = sid {
            m.opts_mut().insert(DhcpOption::ServerId(s));
        }
        if ia {
            m.opts_mut().insert(DhcpOption::IANA(IANA {
                id: 7,
                t1: 0,
                t2: 0,
                opts: DhcpOptions::new(),
            }));
        }
        // Through the wire format, as the server sees it.
        Message::from_bytes(&m.to_vec().unwrap()).unwrap()
    }

    fn duid_llt(mac: [u8; 6]) -> Vec<u8> {
        let mut d = vec![0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d];
        d.extend_from_slice(&mac);
        d
    }

    fn leased(v: &Verdict6) -> (MessageType, Vec<Ipv6Addr>, bool) {
        let Verdict6::Reply(m) = v else {
            panic!("no reply: {v:?}")
        };
        let mut ips = Vec::new();
        for o in m.opts().iter() {
            if let DhcpOption::IANA(ia) = o {
                assert_eq!(ia.id, 7);
                assert_eq!((ia.t1, ia.t2), (300, 480));
                for a in ia.opts.iter() {
                    if let DhcpOption::IAAddr(a) = a {
                        ips.push(a.addr);
                    }
                }
            }
        }
        let rapid = m.opts().get(OptionCode::RapidCommit).is_some();
        (m.msg_type(), ips, rapid)
    }

    #[test]
    fn stateful_leases_the_fixed_ip_to_the_known_mac_only() {
        let cfg = Server6Config::from_wire(&server("dhcpv6-stateful")).unwrap();
        assert_eq!(cfg.dns, vec!["fd00::53".parse::<Ipv6Addr>().unwrap()]);
        let ll = plumbing::icmp6::eui64_link_local(MAC1);
        let fixed: Ipv6Addr = "fd00:1::11".parse().unwrap();
        let sid = cfg.duid.clone();
        for duid in [duid_ll(MAC1), duid_llt(MAC1)] {
            let r = respond6(
                &cfg,
                &msg(MessageType::Solicit, Some(duid.clone()), None, true),
                &ll,
            );
            assert_eq!(leased(&r), (MessageType::Advertise, vec![fixed], false));
            let mut rapid = msg(MessageType::Solicit, Some(duid.clone()), None, true);
            rapid.opts_mut().insert(DhcpOption::RapidCommit);
            assert_eq!(
                leased(&respond6(&cfg, &rapid, &ll)),
                (MessageType::Reply, vec![fixed], true)
            );
            for k in [MessageType::Request, MessageType::Renew] {
                let r = respond6(
                    &cfg,
                    &msg(k, Some(duid.clone()), Some(sid.clone()), true),
                    &ll,
                );
                assert_eq!(leased(&r), (MessageType::Reply, vec![fixed], false));
                // Another server's Request or Renew is not ours to answer.
                let r = respond6(
                    &cfg,
                    &msg(
                        k,
                        Some(duid.clone()),
                        Some(vec![0, 3, 0, 1, 1, 2, 3, 4, 5, 6]),
                        true,
                    ),
                    &ll,
                );
                assert!(matches!(r, Verdict6::Ignore(_)), "{r:?}");
            }
            let r = respond6(
                &cfg,
                &msg(MessageType::Rebind, Some(duid.clone()), None, true),
                &ll,
            );
            assert_eq!(leased(&r), (MessageType::Reply, vec![fixed], false));
        }
        // A DUID-EN carries no MAC: the EUI-64 source address tells it.
        let en = vec![0, 2, 0, 0, 0, 9, 1, 2, 3];
        let r = respond6(
            &cfg,
            &msg(MessageType::Solicit, Some(en.clone()), None, true),
            &ll,
        );
        assert_eq!(leased(&r).1, vec![fixed]);
        let other = "fe80::1234".parse().unwrap();
        let r = respond6(
            &cfg,
            &msg(MessageType::Solicit, Some(en), None, true),
            &other,
        );
        assert!(matches!(r, Verdict6::Ignore(_)), "{r:?}");
        // An unknown MAC gets nothing.
        let stranger = [0xfa, 0x16, 0x3e, 0, 0, 0x99];
        let r = respond6(
            &cfg,
            &msg(MessageType::Solicit, Some(duid_ll(stranger)), None, true),
            &ll,
        );
        assert!(matches!(r, Verdict6::Ignore(_)), "{r:?}");
        // Release: acknowledged, the lease stays.
        let r = respond6(
            &cfg,
            &msg(MessageType::Release, Some(duid_ll(MAC1)), Some(sid), true),
            &ll,
        );
        assert!(matches!(r, Verdict6::Noted(_)), "{r:?}");
    }

    #[test]
    fn confirm_says_whether_the_address_is_on_link() {
        let cfg = Server6Config::from_wire(&server("dhcpv6-stateful")).unwrap();
        let ll = plumbing::icmp6::eui64_link_local(MAC1);
        let confirm = |addr: &str| {
            let mut m = Message::new_with_id(MessageType::Confirm, [1, 2, 3]);
            m.opts_mut().insert(DhcpOption::ClientId(duid_ll(MAC1)));
            let mut opts = DhcpOptions::new();
            opts.insert(DhcpOption::IAAddr(IAAddr {
                addr: addr.parse().unwrap(),
                preferred_life: 0,
                valid_life: 0,
                opts: DhcpOptions::new(),
            }));
            m.opts_mut().insert(DhcpOption::IANA(IANA {
                id: 7,
                t1: 0,
                t2: 0,
                opts,
            }));
            let Verdict6::Reply(r) = respond6(&cfg, &m, &ll) else {
                panic!()
            };
            match r.opts().get(OptionCode::StatusCode) {
                Some(DhcpOption::StatusCode(s)) => s.status,
                o => panic!("{o:?}"),
            }
        };
        assert_eq!(confirm("fd00:1::11"), Status::Success);
        assert_eq!(confirm("fd00:9::11"), Status::NotOnLink);
    }

    #[test]
    fn stateless_answers_information_requests_and_leases_nothing() {
        let cfg = Server6Config::from_wire(&server("dhcpv6-stateless")).unwrap();
        assert!(cfg.hosts.is_empty());
        let ll: Ipv6Addr = "fe80::99".parse().unwrap();
        let r = respond6(
            &cfg,
            &msg(
                MessageType::InformationRequest,
                Some(vec![0, 2, 1]),
                None,
                false,
            ),
            &ll,
        );
        let Verdict6::Reply(m) = r else {
            panic!("{r:?}")
        };
        assert_eq!(m.msg_type(), MessageType::Reply);
        assert_eq!(
            m.opts().get(OptionCode::DomainNameServers),
            Some(&DhcpOption::DomainNameServers(vec!["fd00::53"
                .parse()
                .unwrap()]))
        );
        assert!(m.opts().get(OptionCode::IANA).is_none());
        let r = respond6(
            &cfg,
            &msg(MessageType::Solicit, Some(duid_ll(MAC1)), None, true),
            &ll,
        );
        assert!(matches!(r, Verdict6::Ignore(_)), "{r:?}");
        // SLAAC and IPv4-only servers have no DHCPv6 side.
        assert!(Server6Config::from_wire(&server("slaac")).is_none());
    }
}
