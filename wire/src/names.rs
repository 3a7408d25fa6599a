//! Names derived from ids, shared so the planner, the agent and the lab agree. (Legs take
//! their MACs from the ports backing them, never from ids: a hash of ids can collide.)

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// How many characters of an id go into an interface name (Neutron's `qr-` + 11).
pub const ID_CHARS: usize = 11;

/// Prefix of router namespaces, before the router id (the agent may add a lab prefix in front).
pub const ROUTER_NS_PREFIX: &str = "qrouter-";

/// The namespace of a router instance: `qrouter-<router id>`, as Neutron names it.
pub fn router_namespace(router_id: &str) -> String {
    format!("{ROUTER_NS_PREFIX}{router_id}")
}

/// Prefix of DHCP namespaces, before the network id (the agent may add a lab prefix in front).
pub const DHCP_NS_PREFIX: &str = "qdhcp-";

/// The namespace of a network's DHCP server: `qdhcp-<network id>`, as Neutron names it.
pub fn dhcp_namespace(network_id: &str) -> String {
    format!("{DHCP_NS_PREFIX}{network_id}")
}

/// An interface name: a 3-byte prefix such as `qr-` and the first 11 bytes of `id` (as Neutron
/// does), cut on a character boundary so the result is at most [`MAX_IFNAME`] bytes.
pub fn ifname(prefix: &str, id: &str) -> String {
    let mut out = String::with_capacity(MAX_IFNAME);
    out.push_str(prefix);
    for c in id.chars().take(ID_CHARS) {
        if out.len() + c.len_utf8() > MAX_IFNAME {
            break;
        }
        out.push(c);
    }
    out
}

/// 64-bit FNV-1a: a hash that is stable across Rust versions and machines, unlike `DefaultHasher`.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.as_bytes().iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_is_cut_to_15_bytes() {
        assert_eq!(
            ifname("qr-", "0f6e3d2e-1484-4fdb-8e00-000000000001"),
            "qr-0f6e3d2e-14"
        );
        assert_eq!(ifname("qg-", "r1"), "qg-r1");
        assert!(ifname("qb-", "ééééééééééééé").len() <= MAX_IFNAME);
    }
}
