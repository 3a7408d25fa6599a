//! IPv6 across pods (issue #21): the derived IPv6 bridge addresses and the router
//! advertisements of internal legs.
//!
//! Bridge IPv6 is derived, never allocated: a project's bridge /64 is the n-th /64 of
//! [`Snapshot::bridge_cidr_v6`] where n is the low bits of its IPv4 bridge /24's network
//! address shifted right by 8, and an instance's IPv6 bridge address is that /64 plus the host
//! number of its IPv4 bridge address. The controller checks at start that the IPv6 pool has at
//! least as many /64s as the IPv4 pool has /24s, so two projects never share a /64.
//!
//! Router advertisements: a leg on an IPv6 subnet advertises only when the subnet's
//! `ipv6_ra_mode` is set. A subnet with an `ipv6_address_mode` but no `ipv6_ra_mode` is
//! Neutron's "an external router advertises" case: crosspod's legs stay silent on it.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use wire::{Ipv6AddressMode, RaPrefix, RouterAdvertisement};

use crate::snapshot::{Network, Snapshot, Subnet};
use crate::topology::{Placement, Topology};

/// Router lifetime (seconds) advertised by the leg that is its pod's default router: Neutron's
/// radvd default (3 × `MaxRtrAdvInterval` of 600 s).
pub const RA_ROUTER_LIFETIME: u16 = 1800;

/// The IPv6 bridge address (with its /64) of the instance whose IPv4 bridge address is
/// `instance_v4` in the project bridge network `bridge_cidr_v4`, out of the IPv6 pool `pool`:
/// e.g. `100.0.5.2` in `100.0.5.0/24` ↔ `fd64:0:0:5::2/64` in `fd64::/48`. `None` when the
/// inputs do not fit (an IPv6 address, an address outside the bridge network, a pool longer
/// than /64).
pub fn bridge_v6(pool: Ipv6Net, bridge_cidr_v4: IpNet, instance_v4: IpAddr) -> Option<Ipv6Net> {
    let (IpNet::V4(bridge), IpAddr::V4(addr)) = (bridge_cidr_v4, instance_v4) else {
        return None;
    };
    if pool.prefix_len() > 64 || !bridge.contains(&addr) {
        return None;
    }
    let bits = 64 - u32::from(pool.prefix_len());
    let mask: u128 = if bits == 0 { 0 } else { (1u128 << bits) - 1 };
    let n = u128::from(u32::from(bridge.network()) >> 8) & mask;
    let host = u128::from(u32::from(addr) - u32::from(bridge.network()));
    let base = u128::from(pool.trunc().network());
    Ipv6Net::new(Ipv6Addr::from(base | (n << 64) | host), 64).ok()
}

/// The IPv6 bridge address of router `rid`'s instance in `pod`, when the snapshot has an IPv6
/// bridge pool and the instance a bridge IP.
pub(crate) fn instance_bridge_v6(
    snap: &Snapshot,
    project: &str,
    rid: &str,
    pod: &str,
) -> Option<Ipv6Net> {
    let pool = snap.bridge_cidr_v6?;
    let bn = snap.allocations.bridge_networks.get(project)?;
    bridge_v6(pool, bn.cidr, snap.allocations.bridge_ip(rid, pod)?)
}

/// What the leg at `address` on IPv6 subnet `s` of network `net` in `pod` advertises; `None`
/// for an IPv4 subnet or one without `ipv6_ra_mode`.
///
/// The leg is a default router (lifetime [`RA_ROUTER_LIFETIME`]) exactly when it is what the
/// pod's DHCP servers hand out as router for the subnet ([`crate::dhcp::router_for`]); on a
/// stretched network each pod's instance advertises unicast to the VM ports that pod serves
/// only, so IPv4 and IPv6 leave a pod by the same router.
pub(crate) fn advertisement(
    t: &Topology<'_>,
    s: &Subnet,
    net: &Network,
    pod: &str,
    address: IpAddr,
) -> Option<RouterAdvertisement> {
    let IpNet::V6(prefix) = s.cidr else {
        return None;
    };
    let mode = s.ipv6_ra_mode?;
    let router = crate::dhcp::router_for(t, s, net, pod) == Some(address);
    let stretched = matches!(
        t.placement.get(net.id.as_str()),
        Some(Placement::Stretched(_))
    );
    let clients = stretched.then(|| {
        t.ports_by_network
            .get(net.id.as_str())
            .into_iter()
            .flatten()
            .filter(|p| wire::eui64::parse_mac(&p.mac).is_some())
            .filter(|p| crate::plan::is_unicast_mac(&p.mac))
            .filter(|p| crate::dhcp::serving_pod(t, p, &net.id) == Some(pod))
            .map(|p| p.mac.to_ascii_lowercase())
            .collect::<BTreeSet<String>>()
    });
    Some(RouterAdvertisement {
        prefixes: vec![RaPrefix {
            prefix: prefix.trunc(),
            autonomous: matches!(
                mode,
                Ipv6AddressMode::Slaac | Ipv6AddressMode::Dhcpv6Stateless
            ),
            on_link: true,
        }],
        managed: mode == Ipv6AddressMode::Dhcpv6Stateful,
        other_config: matches!(
            mode,
            Ipv6AddressMode::Dhcpv6Stateless | Ipv6AddressMode::Dhcpv6Stateful
        ),
        router_lifetime: if router { RA_ROUTER_LIFETIME } else { 0 },
        mtu: net.mtu,
        dns_servers: s
            .dns_nameservers
            .iter()
            .filter_map(|d| match d {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .collect(),
        clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    #[test]
    fn bridge_v6_follows_the_v4_bridge() {
        let pool = v6("fd64::/48");
        let got = bridge_v6(
            pool,
            "100.0.5.0/24".parse().unwrap(),
            "100.0.5.2".parse().unwrap(),
        );
        assert_eq!(got, Some(v6("fd64:0:0:5::2/64")));
        // The /9's first and last /24: index 0 and 0x7fff (the pool's 16 bits hold the 15).
        assert_eq!(
            bridge_v6(
                pool,
                "100.0.0.0/24".parse().unwrap(),
                "100.0.0.254".parse().unwrap()
            ),
            Some(v6("fd64::fe/64"))
        );
        assert_eq!(
            bridge_v6(
                pool,
                "100.127.255.0/24".parse().unwrap(),
                "100.127.255.3".parse().unwrap()
            ),
            Some(v6("fd64:0:0:7fff::3/64"))
        );
        // Only the pool's bits of the index are used: a /56 pool has 8 of them.
        assert_eq!(
            bridge_v6(
                v6("fd64:0:0:100::/56"),
                "100.0.5.0/24".parse().unwrap(),
                "100.0.5.9".parse().unwrap()
            ),
            Some(v6("fd64:0:0:105::9/64"))
        );
        // A sloppy pool (host bits set) is read as its network.
        assert_eq!(
            bridge_v6(
                v6("fd64::1/48"),
                "100.0.5.0/24".parse().unwrap(),
                "100.0.5.2".parse().unwrap()
            ),
            Some(v6("fd64:0:0:5::2/64"))
        );
    }

    #[test]
    fn bridge_v6_refuses_what_does_not_fit() {
        let pool = v6("fd64::/48");
        let b: IpNet = "100.0.5.0/24".parse().unwrap();
        assert_eq!(bridge_v6(pool, b, "100.0.6.2".parse().unwrap()), None);
        assert_eq!(bridge_v6(pool, b, "fd00::2".parse().unwrap()), None);
        assert_eq!(
            bridge_v6(
                pool,
                "fd00::/64".parse().unwrap(),
                "100.0.5.2".parse().unwrap()
            ),
            None
        );
        assert_eq!(
            bridge_v6(v6("fd64::/80"), b, "100.0.5.2".parse().unwrap()),
            None
        );
        // A /64 pool has room for one bridge network only: index bits all dropped.
        assert_eq!(
            bridge_v6(v6("fd64::/64"), b, "100.0.5.2".parse().unwrap()),
            Some(v6("fd64::2/64"))
        );
    }
}
