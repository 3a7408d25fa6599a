//! Raw ICMPv6 sockets opened inside a namespace and bound to one of its interfaces: how the
//! agent sends router advertisements from every advertising router leg without a process
//! (radvd) per router. As with [`crate::udp`], only the creation switches namespace.

use std::net::{Ipv6Addr, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Error, Result};
use crate::netns::{self, Netns};

/// ICMPv6 type of a router solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a router advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// All-nodes multicast (where unsolicited advertisements go).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ICMPv6 type of a neighbour solicitation.
pub const NEIGHBOUR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a neighbour advertisement.
pub const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// All-routers multicast (where solicitations go).
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// A raw ICMPv6 socket on one interface of a namespace, and what its users need to know about
/// that interface.
#[derive(Debug)]
pub struct Icmp6Socket {
    /// The socket (non-blocking; usable from any thread).
    pub socket: Socket,
    /// Index of the interface inside the namespace (the scope of link-local addresses).
    pub ifindex: u32,
    /// The interface's link-local address when it has one already (the kernel makes it when
    /// the link comes up; it stays tentative for the duplicate address detection).
    pub link_local: Option<Ipv6Addr>,
}

/// The EUI-64 link-local address the kernel derives from `mac` (`addr_gen_mode` 0).
pub fn eui64_link_local(mac: [u8; 6]) -> Ipv6Addr {
    let iid = eui64_interface_id(mac);
    let mut b = [0u8; 16];
    b[0] = 0xfe;
    b[1] = 0x80;
    b[8..].copy_from_slice(&iid);
    Ipv6Addr::from(b)
}

/// The modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A): what SLAAC hosts
/// append to a /64 prefix.
pub fn eui64_interface_id(mac: [u8; 6]) -> [u8; 8] {
    [
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1): where neighbour
/// solicitations for it go.
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let b = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, b[13], b[14], b[15],
    ])
}

/// A neighbour solicitation for `target` from an interface with MAC `mac` (source link-layer
/// address option); checksum 0, filled by the kernel on raw ICMPv6 sockets.
pub fn neighbour_solicitation(target: &Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut p = vec![NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&target.octets());
    p.extend_from_slice(&[1, 1]);
    p.extend_from_slice(&mac);
    p
}

/// A neighbour advertisement of `target` at `mac` (target link-layer address option) with the
/// override flag, and the router flag when `router`: sent unsolicited to all nodes, it makes
/// every neighbour with an entry for `target` repoint it at `mac` at once (RFC 4861 §7.2.6).
pub fn unsolicited_advertisement(target: &Ipv6Addr, mac: [u8; 6], router: bool) -> Vec<u8> {
    let flags = 0x20 | if router { 0x80 } else { 0 };
    let mut p = vec![NEIGHBOUR_ADVERTISEMENT, 0, 0, 0, flags, 0, 0, 0];
    p.extend_from_slice(&target.octets());
    p.extend_from_slice(&[2, 1]);
    p.extend_from_slice(&mac);
    p
}

/// When `pkt` (an ICMPv6 message as a raw socket reads it) is a neighbour advertisement of
/// `target`: the MAC of its target link-layer address option, if it has one (`Some(None)`
/// when it has none).
pub fn advertised_mac(pkt: &[u8], target: &Ipv6Addr) -> Option<Option<[u8; 6]>> {
    if pkt.len() < 24 || pkt[0] != NEIGHBOUR_ADVERTISEMENT || pkt[1] != 0 {
        return None;
    }
    if pkt[8..24] != target.octets() {
        return None;
    }
    let mut opts = &pkt[24..];
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            break;
        }
        if opts[0] == 2 && len >= 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            return Some(Some(m));
        }
        opts = &opts[len..];
    }
    Some(None)
}

/// The MAC an EUI-64 interface identifier was made from, when `addr`'s low 64 bits are one.
pub fn mac_of_eui64(addr: &Ipv6Addr) -> Option<[u8; 6]> {
    let b = addr.octets();
    (b[11] == 0xff && b[12] == 0xfe).then(|| [b[8] ^ 0x02, b[9], b[10], b[13], b[14], b[15]])
}

/// Opens a non-blocking raw ICMPv6 socket inside `ns`, bound to the device `ifname`
/// (`SO_BINDTODEVICE`), with unicast and multicast hop limits 255 (RFC 4861 §6.1: neighbour
/// discovery packets with another hop limit are dropped), no multicast loopback, and an
/// ICMPv6 filter passing only the types in `accept`. The socket is not bound to an address:
/// bind it to the link-local one once duplicate address detection is over.
pub fn open_in(ns: &Netns, ifname: &str, accept: &[u8]) -> Result<Icmp6Socket> {
    crate::link::validate_ifname(ifname)?;
    let name = ns.display_name().to_string();
    let dev = ifname.to_string();
    let accept = accept.to_vec();
    let socket = netns::run_in(ns, move || -> std::io::Result<Socket> {
        let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        s.bind_device(Some(dev.as_bytes()))?;
        s.set_multicast_hops_v6(255)?;
        s.set_unicast_hops_v6(255)?;
        s.set_multicast_loop_v6(false)?;
        set_filter(&s, &accept)?;
        s.set_nonblocking(true)?;
        Ok(s)
    })?
    .map_err(|source| Error::Netns {
        op: "open a raw ICMPv6 socket bound to a device inside",
        ns: name,
        source,
    })?;
    let mut h = crate::Handle::new(ns)?;
    let ifindex = h.link_index(ifname)?;
    let link_local = h.link_addresses(ifname)?.into_iter().find_map(|a| match a {
        ipnet::IpNet::V6(n) if n.addr().segments()[0] & 0xffc0 == 0xfe80 => Some(n.addr()),
        _ => None,
    });
    Ok(Icmp6Socket {
        socket,
        ifindex,
        link_local,
    })
}

/// Binds `s` to the link-local `addr` of interface `ifindex`. Fails with `EADDRNOTAVAIL` while
/// the address is tentative (duplicate address detection, about a second after the link came
/// up): callers retry.
pub fn bind_link_local(s: &Socket, addr: Ipv6Addr, ifindex: u32) -> std::io::Result<()> {
    s.bind(&SocketAddrV6::new(addr, 0, 0, ifindex).into())
}

/// `ICMP6_FILTER`: block every type but `accept` (the kernel then wakes the reader only for
/// those).
pub fn set_filter(s: &Socket, accept: &[u8]) -> std::io::Result<()> {
    // struct icmp6_filter { uint32_t data[8]; }: a set bit blocks the type.
    let mut data = [u32::MAX; 8];
    for t in accept {
        data[usize::from(*t >> 5)] &= !(1u32 << (t & 31));
    }
    const ICMP6_FILTER: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a 32-byte filter as the kernel expects.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            data.as_ptr().cast(),
            std::mem::size_of_val(&data) as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64_round_trips() {
        let mac = [0xfa, 0x16, 0x3e, 0x00, 0x01, 0x01];
        let ll = eui64_link_local(mac);
        assert_eq!(ll, "fe80::f816:3eff:fe00:101".parse::<Ipv6Addr>().unwrap());
        assert_eq!(mac_of_eui64(&ll), Some(mac));
        assert_eq!(mac_of_eui64(&"fe80::1".parse().unwrap()), None);
    }

    #[test]
    fn neighbour_discovery_messages() {
        let t: Ipv6Addr = "fd64:0:0:5::2".parse().unwrap();
        assert_eq!(
            solicited_node(&t),
            "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap()
        );
        let mac = [0xfa, 0x16, 0x3e, 0, 1, 2];
        let ns = neighbour_solicitation(&t, mac);
        assert_eq!((ns[0], ns.len()), (135, 32));
        assert_eq!(&ns[8..24], &t.octets());
        assert_eq!(&ns[24..], &[1, 1, 0xfa, 0x16, 0x3e, 0, 1, 2]);
        let na = unsolicited_advertisement(&t, mac, true);
        assert_eq!(
            (na[0], na[4]),
            (136, 0xa0),
            "router and override, not solicited"
        );
        assert_eq!(advertised_mac(&na, &t), Some(Some(mac)));
        assert_eq!(advertised_mac(&na, &"fd64::9".parse().unwrap()), None);
        assert_eq!(advertised_mac(&na[..24], &t), Some(None));
        assert_eq!(advertised_mac(&ns, &t), None, "a solicitation is no answer");
        assert_eq!(unsolicited_advertisement(&t, mac, false)[4], 0x20);
    }
}
