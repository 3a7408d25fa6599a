//! IP address management for subnets: CIDR, gateway and allocation pools validation, and
//! the choice of candidate addresses. Pure functions; the store inserts the chosen address
//! under a `(network_id, ip_address)` primary key so no address ever has two owners.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::DomainError;

/// An inclusive range of addresses in a subnet, as Neutron's `allocation_pools` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// First address.
    pub start: IpAddr,
    /// Last address.
    pub end: IpAddr,
}

impl Pool {
    /// Number of addresses in the pool.
    pub fn size(&self) -> u128 {
        // Saturating: a pool of all of IPv6 has 2^128 addresses, one more than u128 holds.
        (to_u128(self.end).saturating_sub(to_u128(self.start))).saturating_add(1)
    }
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let v = to_u128(ip);
        same_family(ip, self.start) && v >= to_u128(self.start) && v <= to_u128(self.end)
    }
}

/// Address as an integer (IPv4 in the low 32 bits).
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((v as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(v.into()),
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Parse a CIDR as Neutron does: the address must be the network address (`10.0.0.5/24` is refused).
pub fn parse_cidr(field: &str, text: &str) -> Result<IpNet, DomainError> {
    let net: IpNet = text.parse().map_err(|_| {
        DomainError::invalid_input(field, format!("'{text}' is not a valid IP subnet"))
    })?;
    if net.network() != net.addr() {
        return Err(DomainError::invalid_input(
            field,
            format!(
                "'{text}' isn't a recognized IP subnet cidr, '{}' is recommended",
                net.trunc()
            ),
        ));
    }
    let min_host_bits = if net.addr().is_ipv4() { 2 } else { 1 };
    if net.max_prefix_len() - net.prefix_len() < min_host_bits {
        return Err(DomainError::invalid_input(
            field,
            format!("subnet {text} is too small to hold any host"),
        ));
    }
    Ok(net)
}

/// Parse an IP address field.
pub fn parse_ip(field: &str, text: &str) -> Result<IpAddr, DomainError> {
    text.parse().map_err(|_| {
        DomainError::invalid_input(field, format!("'{text}' is not a valid IP address"))
    })
}

/// First and last host addresses Neutron may hand out in `net`.
fn host_bounds(net: &IpNet) -> (u128, u128) {
    let first = to_u128(net.network());
    let last = to_u128(net.broadcast());
    match net {
        // IPv4: skip network and broadcast.
        IpNet::V4(_) => (first + 1, last - 1),
        // IPv6: skip the subnet-router anycast address only.
        IpNet::V6(_) => (first + 1, last),
    }
}

/// Whether `ip` is a usable host address of `net`.
pub fn is_host(net: &IpNet, ip: IpAddr) -> bool {
    if !same_family(ip, net.addr()) || !net.contains(&ip) {
        return false;
    }
    let (lo, hi) = host_bounds(net);
    let v = to_u128(ip);
    v >= lo && v <= hi
}

/// The default gateway: the first host address.
pub fn default_gateway(net: &IpNet) -> IpAddr {
    from_u128(host_bounds(net).0, net.addr())
}

/// Default pools: every host address except the gateway.
pub fn default_pools(net: &IpNet, gateway: Option<IpAddr>) -> Vec<Pool> {
    let (lo, hi) = host_bounds(net);
    let like = net.addr();
    let mk = |a: u128, b: u128| Pool {
        start: from_u128(a, like),
        end: from_u128(b, like),
    };
    match gateway.map(to_u128) {
        Some(g) if g >= lo && g <= hi => {
            let mut v = Vec::new();
            if g > lo {
                v.push(mk(lo, g - 1));
            }
            if g < hi {
                v.push(mk(g + 1, hi));
            }
            v
        }
        _ => vec![mk(lo, hi)],
    }
}

/// Validate user-given pools against the subnet and gateway (Neutron's rules: inside the
/// CIDR, start <= end, no overlap, gateway not inside a pool).
pub fn validate_pools(
    net: &IpNet,
    pools: &[Pool],
    gateway: Option<IpAddr>,
) -> Result<(), DomainError> {
    for p in pools {
        for ip in [p.start, p.end] {
            if !is_host(net, ip) {
                return Err(DomainError::invalid_input(
                    "allocation_pools",
                    format!(
                        "the allocation pool {}-{} spans beyond the subnet cidr {net}",
                        p.start, p.end
                    ),
                ));
            }
        }
        if to_u128(p.start) > to_u128(p.end) {
            return Err(DomainError::invalid_input(
                "allocation_pools",
                format!(
                    "the allocation pool start {} is after its end {}",
                    p.start, p.end
                ),
            ));
        }
        if let Some(g) = gateway {
            if p.contains(g) {
                return Err(DomainError::conflict(
                    "GatewayConflictWithAllocationPools",
                    format!(
                        "Gateway ip {g} conflicts with allocation pool {}-{}",
                        p.start, p.end
                    ),
                ));
            }
        }
    }
    let mut sorted: Vec<&Pool> = pools.iter().collect();
    sorted.sort_by_key(|p| to_u128(p.start));
    for w in sorted.windows(2) {
        if to_u128(w[1].start) <= to_u128(w[0].end) {
            return Err(DomainError::invalid_input(
                "allocation_pools",
                format!(
                    "found overlapping allocation pools: {}-{} and {}-{}",
                    w[0].start, w[0].end, w[1].start, w[1].end
                ),
            ));
        }
    }
    Ok(())
}

/// Whether two subnets overlap.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    same_family(a.addr(), b.addr()) && (a.contains(&b.network()) || b.contains(&a.network()))
}

/// Total number of addresses in the pools.
pub fn pools_size(pools: &[Pool]) -> u128 {
    pools
        .iter()
        .map(Pool::size)
        .fold(0u128, u128::saturating_add)
}

/// Pools up to this size are scanned for the lowest free address; larger ones get random
/// candidates (a /16 or an IPv6 /64 is too large to list).
pub const SCAN_LIMIT: u128 = 4096;

/// Lowest free addresses of small pools, in order (at most `max`).
pub fn lowest_free(pools: &[Pool], taken: &HashSet<IpAddr>, max: usize) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for p in pools {
        let (lo, hi) = (to_u128(p.start), to_u128(p.end));
        // Inclusive and without `+ 1` past `hi`: a pool ending at the last IPv6 address
        // must stop there, not wrap around to `::`.
        for v in lo..=hi {
            let ip = from_u128(v, p.start);
            if !taken.contains(&ip) {
                out.push(ip);
                if out.len() >= max {
                    return out;
                }
            }
        }
    }
    out
}

/// A uniformly random address from the pools, driven by `entropy`.
pub fn random_in(pools: &[Pool], entropy: u128) -> Option<IpAddr> {
    let total = pools_size(pools);
    if total == 0 {
        return None;
    }
    let mut k = entropy % total;
    for p in pools {
        if k < p.size() {
            return Some(from_u128(to_u128(p.start) + k, p.start));
        }
        k -= p.size();
    }
    None
}

/// Whether `gateway` may be the gateway of `cidr` (Neutron's rules): of the subnet's IP
/// version; outside the subnet (a router elsewhere) or a host address of it, never its
/// network or broadcast address.
pub fn check_gateway(cidr: &IpNet, gateway: IpAddr) -> Result<(), DomainError> {
    if gateway.is_ipv4() != cidr.addr().is_ipv4() {
        return Err(DomainError::invalid_input(
            "gateway_ip",
            format!("gateway {gateway} is not of the IP version of subnet {cidr}"),
        ));
    }
    if cidr.contains(&gateway) && !is_host(cidr, gateway) {
        return Err(DomainError::invalid_input(
            "gateway_ip",
            format!("gateway {gateway} is the network or broadcast address of subnet {cidr}"),
        ));
    }
    Ok(())
}

/// The fewest host bits a subnet of `ip_version` needs to hold any host (as [`parse_cidr`]
/// demands): IPv4 loses its network and broadcast addresses, IPv6 its anycast one.
pub fn min_host_bits(ip_version: i64) -> u8 {
    if ip_version == 4 {
        2
    } else {
        1
    }
}

// Subnet pools: prefix sets, the way Neutron's `netaddr.IPSet` treats them. A set is a
// list of CIDRs; the functions below never need it to be compact, and return compact ones.
// They work on sorted, merged address ranges, so a pool with thousands of subnets costs
// O(n log n), not a split per allocation.

fn sort_key(n: &IpNet) -> (bool, u128, u8) {
    (n.addr().is_ipv6(), to_u128(n.network()), n.prefix_len())
}

/// An inclusive address range of one family (IPv6 when `.0`).
type Range = (bool, u128, u128);

/// The set's addresses as sorted, merged (overlapping or adjacent) ranges.
fn ranges(set: &[IpNet]) -> Vec<Range> {
    let mut r: Vec<Range> = set
        .iter()
        .map(|n| {
            (
                n.addr().is_ipv6(),
                to_u128(n.network()),
                to_u128(n.broadcast()),
            )
        })
        .collect();
    r.sort();
    let mut out: Vec<Range> = Vec::with_capacity(r.len());
    for (v6, lo, hi) in r {
        match out.last_mut() {
            Some((lv6, _, lhi)) if *lv6 == v6 && lo <= lhi.saturating_add(1) => {
                *lhi = (*lhi).max(hi);
            }
            _ => out.push((v6, lo, hi)),
        }
    }
    out
}

/// The last address of the block of `2^host_bits` addresses at `lo` (aligned to its size).
fn block_end(lo: u128, host_bits: u32) -> u128 {
    if host_bits >= 128 {
        u128::MAX
    } else {
        lo | ((1u128 << host_bits) - 1)
    }
}

/// The fewest CIDRs covering exactly the range, in address order.
fn range_cidrs((v6, mut lo, hi): Range, out: &mut Vec<IpNet>) {
    let bits: u32 = if v6 { 128 } else { 32 };
    let like = if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    };
    loop {
        // The largest block aligned at `lo` that ends at or before `hi`.
        let mut host_bits = lo.trailing_zeros().min(bits);
        while host_bits > 0 && block_end(lo, host_bits) > hi {
            host_bits -= 1;
        }
        let prefix = u8::try_from(bits - host_bits).unwrap_or(0);
        if let Ok(n) = IpNet::new(from_u128(lo, like), prefix) {
            out.push(n);
        }
        let end = block_end(lo, host_bits);
        if end >= hi {
            return;
        }
        lo = end + 1;
    }
}

fn cidrs(r: &[Range]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for x in r {
        range_cidrs(*x, &mut out);
    }
    out
}

/// The smallest list of CIDRs covering `prefixes` (host bits cleared, overlapping and
/// adjacent ones merged), IPv4 first, in address order: Neutron's `IPSet.compact()`, which
/// is how a subnet pool stores its prefixes.
pub fn compact(prefixes: &[IpNet]) -> Vec<IpNet> {
    cidrs(&ranges(prefixes))
}

/// The addresses of `set` that are in none of `remove`, compacted.
pub fn subtract(set: &[IpNet], remove: &[IpNet]) -> Vec<IpNet> {
    let remove = ranges(remove);
    let mut out: Vec<Range> = Vec::new();
    for (v6, lo, hi) in ranges(set) {
        // The removals that may overlap [lo, hi]: disjoint and sorted, so from the first
        // one ending at or after `lo` until one starts after `hi`.
        let first = remove.partition_point(|r| (r.0, r.2) < (v6, lo));
        let mut start = Some(lo);
        for &(rv6, rlo, rhi) in &remove[first..] {
            let Some(from) = start else { break };
            if rv6 != v6 || rlo > hi {
                break;
            }
            if rlo > from {
                out.push((v6, from, rlo - 1));
            }
            start = (rhi < hi).then(|| rhi + 1);
        }
        if let Some(from) = start {
            out.push((v6, from, hi));
        }
    }
    cidrs(&out)
}

/// Whether some address is in both sets.
pub fn intersects(a: &[IpNet], b: &[IpNet]) -> bool {
    a.iter().any(|x| b.iter().any(|y| overlaps(x, y)))
}

/// Whether every address of `a` is in `b`.
pub fn is_subset(a: &[IpNet], b: &[IpNet]) -> bool {
    subtract(a, b).is_empty()
}

/// Neutron's choice of a new subnet of `prefixlen` from the free blocks of a pool: the
/// smallest block that holds one (the least fragmenting), the lowest of equals, and the first
/// subnet of that block. `None` when no block is large enough.
pub fn pick_prefix(free: &[IpNet], prefixlen: u8) -> Option<IpNet> {
    free.iter()
        .filter(|b| b.prefix_len() <= prefixlen && prefixlen <= b.max_prefix_len())
        .min_by_key(|b| (std::cmp::Reverse(b.prefix_len()), sort_key(b)))
        .and_then(|b| IpNet::new(b.network(), prefixlen).ok())
}

/// What a subnet costs against a pool's `default_quota`: its addresses (IPv4) or its /64s
/// (IPv6), as Neutron counts them (a fraction for an IPv6 subnet smaller than a /64).
pub fn quota_units(net: &IpNet) -> f64 {
    prefix_quota_units(net.addr().is_ipv4(), net.prefix_len())
}

/// [`quota_units`] of a subnet of `prefixlen` (IPv4 when `v4`).
pub fn prefix_quota_units(v4: bool, prefixlen: u8) -> f64 {
    let unit: i32 = if v4 { 32 } else { 64 };
    2f64.powi(unit - i32::from(prefixlen))
}

/// Neutron's IPv6 modes, as `ipv6_ra_mode` and `ipv6_address_mode` name them.
pub const IPV6_MODES: &[&str] = &["dhcpv6-stateful", "dhcpv6-stateless", "slaac"];

/// The wire name of an IPv6 mode (`slaac`, `dhcpv6-stateful`, `dhcpv6-stateless`).
pub fn ipv6_mode_name(m: wire::Ipv6AddressMode) -> &'static str {
    match m {
        wire::Ipv6AddressMode::Slaac => "slaac",
        wire::Ipv6AddressMode::Dhcpv6Stateful => "dhcpv6-stateful",
        wire::Ipv6AddressMode::Dhcpv6Stateless => "dhcpv6-stateless",
    }
}

/// An IPv6 mode from its wire name; `None` for anything else.
pub fn parse_ipv6_mode(s: &str) -> Option<wire::Ipv6AddressMode> {
    match s {
        "slaac" => Some(wire::Ipv6AddressMode::Slaac),
        "dhcpv6-stateful" => Some(wire::Ipv6AddressMode::Dhcpv6Stateful),
        "dhcpv6-stateless" => Some(wire::Ipv6AddressMode::Dhcpv6Stateless),
        _ => None,
    }
}

/// Neutron's `is_auto_address_subnet`: either mode is `slaac` or `dhcpv6-stateless`, so hosts
/// form their own (EUI-64) addresses and the port's fixed IP there is that address, not one
/// from the pools.
pub fn is_auto_address(
    ra_mode: Option<wire::Ipv6AddressMode>,
    address_mode: Option<wire::Ipv6AddressMode>,
) -> bool {
    let auto = |m: Option<wire::Ipv6AddressMode>| {
        matches!(
            m,
            Some(wire::Ipv6AddressMode::Slaac | wire::Ipv6AddressMode::Dhcpv6Stateless)
        )
    };
    auto(address_mode) || auto(ra_mode)
}

/// The EUI-64 address of `mac` in `cidr` (an IPv6 prefix of at most /64); `None` otherwise.
pub fn eui64(cidr: &IpNet, mac: &str) -> Option<IpAddr> {
    match cidr {
        IpNet::V6(n) => wire::eui64::address(*n, mac).map(IpAddr::V6),
        IpNet::V4(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_for_a_slash_24() {
        let net = parse_cidr("cidr", "10.0.1.0/24").unwrap();
        let gw = default_gateway(&net);
        assert_eq!(gw, ip("10.0.1.1"));
        let pools = default_pools(&net, Some(gw));
        assert_eq!(
            pools,
            vec![Pool {
                start: ip("10.0.1.2"),
                end: ip("10.0.1.254")
            }]
        );
        assert_eq!(pools_size(&pools), 253);
        let mid = default_pools(&net, Some(ip("10.0.1.100")));
        assert_eq!(mid.len(), 2);
        assert_eq!(mid[0].end, ip("10.0.1.99"));
        assert_eq!(mid[1].start, ip("10.0.1.101"));
    }

    #[test]
    fn cidr_must_be_a_network_address() {
        assert!(parse_cidr("cidr", "10.0.1.5/24")
            .unwrap_err()
            .message
            .contains("10.0.1.0/24"));
        assert!(parse_cidr("cidr", "banana")
            .unwrap_err()
            .message
            .contains("cidr"));
        assert!(parse_cidr("cidr", "10.0.0.0/31").is_err());
        assert!(parse_cidr("cidr", "fd00::/64").is_ok());
    }

    #[test]
    fn pools_are_checked() {
        let net = parse_cidr("cidr", "10.0.0.0/24").unwrap();
        let p = |a: &str, b: &str| Pool {
            start: ip(a),
            end: ip(b),
        };
        assert!(validate_pools(&net, &[p("10.0.0.2", "10.0.0.9")], Some(ip("10.0.0.1"))).is_ok());
        assert!(validate_pools(&net, &[p("10.0.0.2", "10.0.1.9")], None).is_err());
        assert!(validate_pools(&net, &[p("10.0.0.9", "10.0.0.2")], None).is_err());
        assert!(validate_pools(
            &net,
            &[p("10.0.0.2", "10.0.0.9"), p("10.0.0.5", "10.0.0.20")],
            None
        )
        .is_err());
        let e =
            validate_pools(&net, &[p("10.0.0.1", "10.0.0.9")], Some(ip("10.0.0.1"))).unwrap_err();
        assert_eq!(e.class, crate::error::ErrorClass::Conflict);
    }

    #[test]
    fn overlap_detection() {
        let a = parse_cidr("c", "10.0.0.0/16").unwrap();
        let b = parse_cidr("c", "10.0.5.0/24").unwrap();
        let c = parse_cidr("c", "10.1.0.0/24").unwrap();
        assert!(overlaps(&a, &b) && overlaps(&b, &a));
        assert!(!overlaps(&a, &c));
    }

    #[test]
    fn a_full_pool_at_the_end_of_the_address_space_stays_full() {
        let net: IpNet = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"
            .parse()
            .unwrap();
        let pools = default_pools(&net, Some(default_gateway(&net)));
        let taken: HashSet<IpAddr> = pools
            .iter()
            .flat_map(|p| lowest_free(std::slice::from_ref(p), &HashSet::new(), 64))
            .collect();
        assert_eq!(taken.len() as u128, pools_size(&pools));
        assert!(taken.contains(&ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(lowest_free(&pools, &taken, 16).is_empty(), "no wrap to ::");
        let all = Pool {
            start: ip("::"),
            end: ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        };
        assert_eq!(all.size(), u128::MAX);
        assert!(random_in(&[all], 12345).is_some());
    }

    #[test]
    fn candidates() {
        let pools = vec![Pool {
            start: ip("10.0.0.2"),
            end: ip("10.0.0.4"),
        }];
        let taken: HashSet<IpAddr> = [ip("10.0.0.2")].into_iter().collect();
        assert_eq!(
            lowest_free(&pools, &taken, 5),
            vec![ip("10.0.0.3"), ip("10.0.0.4")]
        );
        for e in 0..10 {
            assert!(pools[0].contains(random_in(&pools, e).unwrap()));
        }
    }
    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn prefix_sets_compact_like_neutron() {
        assert_eq!(
            compact(&nets(&["10.101.0.0/24", "10.100.0.0/24"])),
            nets(&["10.100.0.0/24", "10.101.0.0/24"]),
            "not adjacent in a mergeable way: kept apart, sorted"
        );
        assert_eq!(
            compact(&nets(&[
                "10.0.1.0/24",
                "10.0.0.0/24",
                "10.0.0.5/25",
                "fd00::/64"
            ])),
            nets(&["10.0.0.0/23", "fd00::/64"])
        );
    }

    #[test]
    fn subtracting_splits_blocks() {
        let free = subtract(&nets(&["10.0.0.0/24"]), &nets(&["10.0.0.64/26"]));
        assert_eq!(free, nets(&["10.0.0.0/26", "10.0.0.128/25"]));
        assert!(subtract(&nets(&["10.0.0.0/24"]), &nets(&["10.0.0.0/16"])).is_empty());
        assert_eq!(
            subtract(
                &nets(&["10.0.0.0/24", "fd00::/120"]),
                &nets(&["fd00::/121"])
            ),
            nets(&["10.0.0.0/24", "fd00::80/121"])
        );
        assert!(is_subset(&nets(&["10.0.0.0/25"]), &nets(&["10.0.0.0/24"])));
        assert!(!is_subset(&nets(&["10.0.0.0/23"]), &nets(&["10.0.0.0/24"])));
        assert!(intersects(
            &nets(&["10.0.0.0/23"]),
            &nets(&["10.0.1.128/25"])
        ));
        assert!(!intersects(
            &nets(&["10.0.0.0/24"]),
            &nets(&["10.0.1.0/24", "::/0"])
        ));
    }

    #[test]
    fn picks_the_smallest_fitting_block_first() {
        let free = nets(&["10.0.0.0/24", "10.1.0.0/26", "10.2.0.0/25"]);
        assert_eq!(pick_prefix(&free, 26), Some("10.1.0.0/26".parse().unwrap()));
        assert_eq!(pick_prefix(&free, 25), Some("10.2.0.0/25".parse().unwrap()));
        assert_eq!(pick_prefix(&free, 23), None);
        assert_eq!(pick_prefix(&free, 33), None);
        let v6 = nets(&["2001:db8::/48"]);
        assert_eq!(pick_prefix(&v6, 64), Some("2001:db8::/64".parse().unwrap()));
        assert_eq!(quota_units(&"10.0.0.0/24".parse().unwrap()), 256.0);
        assert_eq!(quota_units(&"2001:db8::/62".parse().unwrap()), 4.0);
    }

    #[test]
    fn ipv6_modes() {
        for name in IPV6_MODES {
            assert_eq!(ipv6_mode_name(parse_ipv6_mode(name).unwrap()), *name);
        }
        assert!(parse_ipv6_mode("SLAAC").is_none());
        use wire::Ipv6AddressMode::*;
        assert!(is_auto_address(Some(Slaac), None));
        assert!(is_auto_address(None, Some(Dhcpv6Stateless)));
        assert!(!is_auto_address(Some(Dhcpv6Stateful), Some(Dhcpv6Stateful)));
        assert!(!is_auto_address(None, None));
        let net: IpNet = "2001:db8::/64".parse().unwrap();
        assert_eq!(
            eui64(&net, "fa:16:3e:00:00:11"),
            Some(ip("2001:db8::f816:3eff:fe00:11"))
        );
        assert_eq!(
            eui64(&"10.0.0.0/24".parse().unwrap(), "fa:16:3e:00:00:11"),
            None
        );
    }
    /// Random prefixes inside 10.0.0.0/22: `subtract` and `compact` agree with a bitmap of
    /// the 1024 addresses, and `compact` with ipnet's own aggregation.
    #[test]
    fn prefix_sets_agree_with_a_bitmap() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let base = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
        let mut random_set = |n: usize| -> Vec<IpNet> {
            (0..n)
                .map(|_| {
                    let len = 22 + (next() % 11) as u8;
                    let addr = base + (next() % 1024) as u32;
                    IpNet::new(IpAddr::V4(addr.into()), len).unwrap().trunc()
                })
                .collect()
        };
        let bitmap = |set: &[IpNet]| -> Vec<bool> {
            (0..1024u32)
                .map(|i| {
                    let a = IpAddr::V4((base + i).into());
                    set.iter().any(|n| n.contains(&a))
                })
                .collect()
        };
        for _ in 0..300 {
            let (set, remove) = (random_set(6), random_set(6));
            let got = subtract(&set, &remove);
            let want: Vec<bool> = bitmap(&set)
                .iter()
                .zip(bitmap(&remove))
                .map(|(a, b)| *a && !b)
                .collect();
            assert_eq!(bitmap(&got), want, "{set:?} - {remove:?} = {got:?}");
            assert_eq!(compact(&got), got, "the result is compact");
            let mut agg = IpNet::aggregate(&set);
            agg.sort_by_key(sort_key);
            assert_eq!(compact(&set), agg, "{set:?}");
        }
        let all: IpNet = "::/0".parse().unwrap();
        assert_eq!(compact(&[all, "fd00::/8".parse().unwrap()]), vec![all]);
        assert_eq!(
            subtract(&[all], &["::/1".parse().unwrap()]),
            vec!["8000::/1".parse::<IpNet>().unwrap()]
        );
    }
}
