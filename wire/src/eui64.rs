//! Modified EUI-64 addresses (RFC 4291 appendix A): what a SLAAC host makes of a /64 and its
//! MAC. The controller shows these as the fixed IPs of ports on `slaac` and
//! `dhcpv6-stateless` subnets (as Neutron does), the planner and the agent derive hosts'
//! link-local addresses from MACs with them.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

/// Parse `aa:bb:cc:dd:ee:ff` (case-insensitive); `None` when it is not six hex octets.
pub fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = mac.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The modified EUI-64 interface identifier of `mac`: the universal/local bit flipped and
/// `ff:fe` in the middle.
pub fn interface_id(mac: [u8; 6]) -> [u8; 8] {
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

/// The address a SLAAC host with `mac` forms in `prefix` (the prefix's first 64 bits, then
/// the interface identifier); `None` for a malformed MAC or a prefix longer than /64.
pub fn address(prefix: Ipv6Net, mac: &str) -> Option<Ipv6Addr> {
    if prefix.prefix_len() > 64 {
        return None;
    }
    let mac = parse_mac(mac)?;
    let mut b = prefix.network().octets();
    b[8..].copy_from_slice(&interface_id(mac));
    Some(Ipv6Addr::from(b))
}

/// The link-local address (`fe80::/64`) of a host with `mac`.
pub fn link_local(mac: &str) -> Option<Ipv6Addr> {
    address("fe80::/64".parse().expect("literal"), mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutron_example() {
        // Neutron's own doc example: fa:16:3e:00:00:11 in 2001:db8::/64.
        assert_eq!(
            address("2001:db8::/64".parse().unwrap(), "fa:16:3e:00:00:11").unwrap(),
            "2001:db8::f816:3eff:fe00:11".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            link_local("FA:16:3E:00:00:11").unwrap(),
            "fe80::f816:3eff:fe00:11".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn refuses_bad_input() {
        assert!(parse_mac("fa:16:3e:00:00").is_none());
        assert!(parse_mac("fa:16:3e:00:00:11:22").is_none());
        assert!(parse_mac("fa:16:3e:00:00:1").is_none());
        assert!(parse_mac("fa:16:3e:00:00:zz").is_none());
        assert!(address("2001:db8::/80".parse().unwrap(), "fa:16:3e:00:00:11").is_none());
    }
}
