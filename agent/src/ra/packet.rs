//! Router advertisements and solicitations on the wire (RFC 4861 §4.1, §4.2, §4.6; RFC 8106
//! §5.1), as pure functions: what one leg advertises is built once per configuration and sent
//! as is. The ICMPv6 checksum is left 0: the kernel fills it for raw ICMPv6 sockets.

use std::net::Ipv6Addr;

use wire::RouterAdvertisement;

/// Valid lifetime of advertised prefixes (Neutron's `ra_valid_lifetime` default, seconds).
pub const VALID_LIFETIME: u32 = 86_400;
/// Preferred lifetime of advertised prefixes (Neutron's `ra_preferred_lifetime` default).
pub const PREFERRED_LIFETIME: u32 = 14_400;
/// Valid lifetime left to a withdrawn prefix: the two hours a host keeps an unauthenticated
/// prefix anyway (RFC 4862 §5.5.3 e), with its addresses deprecated at once.
pub const WITHDRAWN_VALID_LIFETIME: u32 = 7_200;
/// Hop limit hosts are told to use.
pub const CUR_HOP_LIMIT: u8 = 64;

const OPT_SOURCE_LL: u8 = 1;
const OPT_PREFIX: u8 = 3;
const OPT_MTU: u8 = 5;
const OPT_RDNSS: u8 = 25;

/// The bytes of one router advertisement of `ra` from the interface with MAC `mac`.
/// `rdnss_lifetime` is the lifetime of the DNS servers (RFC 8106 wants at least three
/// maximum intervals between advertisements). With `withdraw`, the final advertisement
/// (RFC 4861 §6.2.5): router lifetime 0, prefixes deprecated, DNS servers expired.
pub fn advertisement(
    ra: &RouterAdvertisement,
    mac: [u8; 6],
    rdnss_lifetime: u32,
    withdraw: bool,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + 32 * ra.prefixes.len());
    p.extend_from_slice(&[134, 0, 0, 0, CUR_HOP_LIMIT]);
    let flags = if ra.managed { 0x80 } else { 0 } | if ra.other_config { 0x40 } else { 0 };
    p.push(flags);
    let lifetime = if withdraw { 0 } else { ra.router_lifetime };
    p.extend_from_slice(&lifetime.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // reachable time: unspecified
    p.extend_from_slice(&0u32.to_be_bytes()); // retrans timer: unspecified
    p.extend_from_slice(&[OPT_SOURCE_LL, 1]);
    p.extend_from_slice(&mac);
    if let Some(mtu) = ra.mtu {
        p.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
        p.extend_from_slice(&u32::from(mtu).to_be_bytes());
    }
    for pfx in &ra.prefixes {
        let (valid, preferred) = if withdraw {
            (WITHDRAWN_VALID_LIFETIME, 0)
        } else {
            (VALID_LIFETIME, PREFERRED_LIFETIME)
        };
        p.extend_from_slice(&[OPT_PREFIX, 4, pfx.prefix.prefix_len()]);
        let f = if pfx.on_link { 0x80 } else { 0 } | if pfx.autonomous { 0x40 } else { 0 };
        p.push(f);
        p.extend_from_slice(&valid.to_be_bytes());
        p.extend_from_slice(&preferred.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&pfx.prefix.trunc().addr().octets());
    }
    if !ra.dns_servers.is_empty() {
        let len = 1 + 2 * ra.dns_servers.len();
        p.extend_from_slice(&[OPT_RDNSS, len as u8, 0, 0]);
        let l = if withdraw { 0 } else { rdnss_lifetime };
        p.extend_from_slice(&l.to_be_bytes());
        for d in &ra.dns_servers {
            p.extend_from_slice(&d.octets());
        }
    }
    p
}

/// Whether `pkt` (an ICMPv6 message as a raw socket reads it, from `src`) is a router
/// solicitation that deserves an answer (RFC 4861 §6.1.1: code 0, at least 8 bytes, options
/// of non-zero length, no source link-layer address option from the unspecified address).
/// The hop limit of 255 is checked by the caller when it can see it.
pub fn is_solicitation(pkt: &[u8], src: &Ipv6Addr) -> bool {
    if pkt.len() < 8 || pkt[0] != 133 || pkt[1] != 0 {
        return false;
    }
    let mut opts = &pkt[8..];
    while !opts.is_empty() {
        if opts.len() < 2 || opts[1] == 0 {
            return false;
        }
        let len = usize::from(opts[1]) * 8;
        if len > opts.len() {
            return false;
        }
        if opts[0] == OPT_SOURCE_LL && src.is_unspecified() {
            return false;
        }
        opts = &opts[len..];
    }
    true
}

/// The MAC of a router solicitation's source link-layer address option, if it has one.
pub fn solicitation_source_mac(pkt: &[u8]) -> Option<[u8; 6]> {
    let mut opts = pkt.get(8..)?;
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == OPT_SOURCE_LL {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            return Some(m);
        }
        opts = &opts[len..];
    }
    None
}

/// Whether the host that sent a solicitation (from `src`, `pkt`) is one of `clients` (MACs):
/// by its source link-layer address option, or else by the MAC inside its EUI-64 link-local
/// source address. `None` clients: everyone is.
pub fn from_client(
    clients: Option<&std::collections::BTreeSet<String>>,
    src: &Ipv6Addr,
    pkt: &[u8],
) -> bool {
    let Some(clients) = clients else {
        return true;
    };
    let Some(mac) = solicitation_source_mac(pkt).or_else(|| plumbing::icmp6::mac_of_eui64(src))
    else {
        return false;
    };
    clients
        .iter()
        .any(|c| wire::eui64::parse_mac(c) == Some(mac))
}

/// Where the periodic (and final) advertisements of `ra` go: all nodes (`None`), or each
/// client's EUI-64 link-local address (unreadable MACs are skipped; validation refuses them).
pub fn destinations(ra: &RouterAdvertisement) -> Vec<Ipv6Addr> {
    match &ra.clients {
        None => vec![plumbing::icmp6::ALL_NODES],
        Some(macs) => macs
            .iter()
            .filter_map(|m| wire::eui64::link_local(m))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::RaPrefix;

    fn ra() -> RouterAdvertisement {
        RouterAdvertisement {
            prefixes: vec![RaPrefix {
                prefix: "fd00:1::/64".parse().unwrap(),
                autonomous: true,
                on_link: true,
            }],
            managed: false,
            other_config: true,
            router_lifetime: 1800,
            mtu: Some(1450),
            dns_servers: vec!["fd00::53".parse().unwrap()],
            clients: None,
        }
    }

    const MAC: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 1, 1];

    #[test]
    fn an_advertisement_carries_flags_lifetime_and_every_option() {
        let p = advertisement(&ra(), MAC, 90, false);
        // header 16, SLLA 8, MTU 8, PIO 32, RDNSS 24
        assert_eq!(p.len(), 16 + 8 + 8 + 32 + 24);
        assert_eq!(&p[..8], &[134, 0, 0, 0, 64, 0x40, 0x07, 0x08]);
        assert_eq!(&p[16..24], &[1, 1, 0xfa, 0x16, 0x3e, 0, 1, 1]);
        assert_eq!(&p[24..32], &[5, 1, 0, 0, 0, 0, 0x05, 0xaa]);
        assert_eq!(&p[32..36], &[3, 4, 64, 0xc0]);
        assert_eq!(
            u32::from_be_bytes(p[36..40].try_into().unwrap()),
            VALID_LIFETIME
        );
        assert_eq!(
            u32::from_be_bytes(p[40..44].try_into().unwrap()),
            PREFERRED_LIFETIME
        );
        assert_eq!(&p[48..56], &[0xfd, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&p[64..72], &[25, 3, 0, 0, 0, 0, 0, 90]);
        assert_eq!(p[87], 0x53);
        let mut m = ra();
        m.managed = true;
        m.mtu = None;
        m.dns_servers.clear();
        let p = advertisement(&m, MAC, 90, false);
        assert_eq!(p[5], 0xc0);
        assert_eq!(p.len(), 16 + 8 + 32);
    }

    #[test]
    fn the_final_advertisement_withdraws_the_router_and_deprecates_prefixes() {
        let p = advertisement(&ra(), MAC, 90, true);
        assert_eq!(&p[6..8], &[0, 0]);
        assert_eq!(
            u32::from_be_bytes(p[36..40].try_into().unwrap()),
            WITHDRAWN_VALID_LIFETIME
        );
        assert_eq!(u32::from_be_bytes(p[40..44].try_into().unwrap()), 0);
        assert_eq!(u32::from_be_bytes(p[68..72].try_into().unwrap()), 0);
    }

    #[test]
    fn solicitations_are_validated() {
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let rs = [133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 3, 4, 5, 6];
        assert!(is_solicitation(&rs, &ll));
        assert!(!is_solicitation(&rs, &Ipv6Addr::UNSPECIFIED));
        assert!(is_solicitation(&rs[..8], &Ipv6Addr::UNSPECIFIED));
        assert!(!is_solicitation(&[133, 1, 0, 0, 0, 0, 0, 0], &ll));
        assert!(!is_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0], &ll));
        let zero_len = [133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        assert!(!is_solicitation(&zero_len, &ll));
        assert!(!is_solicitation(&rs[..12], &ll));
    }

    #[test]
    fn clients_get_unicast_advertisements_and_only_their_solicitations_count() {
        let mut r = ra();
        assert_eq!(destinations(&r), vec![plumbing::icmp6::ALL_NODES]);
        r.clients = Some(
            [
                "FA:16:3E:00:00:11".to_string(),
                "fa:16:3e:00:00:12".to_string(),
            ]
            .into(),
        );
        assert_eq!(
            destinations(&r),
            vec![
                "fe80::f816:3eff:fe00:11".parse::<Ipv6Addr>().unwrap(),
                "fe80::f816:3eff:fe00:12".parse().unwrap()
            ]
        );
        let ll11: Ipv6Addr = "fe80::f816:3eff:fe00:11".parse().unwrap();
        let ll13: Ipv6Addr = "fe80::f816:3eff:fe00:13".parse().unwrap();
        let bare = [133, 0, 0, 0, 0, 0, 0, 0];
        let mut with_sll = bare.to_vec();
        with_sll.extend_from_slice(&[1, 1, 0xfa, 0x16, 0x3e, 0, 0, 0x13]);
        assert_eq!(
            solicitation_source_mac(&with_sll),
            Some([0xfa, 0x16, 0x3e, 0, 0, 0x13])
        );
        assert!(from_client(r.clients.as_ref(), &ll11, &bare));
        assert!(!from_client(r.clients.as_ref(), &ll13, &bare));
        // The option wins over the address (a stable-privacy link-local says nothing).
        assert!(!from_client(r.clients.as_ref(), &ll11, &with_sll));
        assert!(!from_client(
            r.clients.as_ref(),
            &"fe80::1".parse().unwrap(),
            &bare
        ));
        assert!(from_client(None, &ll13, &with_sll));
    }
}
