//! Interface names that cannot collide.
//!
//! A leg's names are Neutron's: a 3-byte prefix and the first 11 characters of an id
//! ([`wire::names::ifname`]). Two ids sharing those characters would get one name, and the
//! agent would plug both legs into one interface. So the names one node gets are assigned
//! together: OVS-side names across the whole node, namespace-side names per namespace.
//!
//! Stability (the agent is level-triggered, so a name that changes between plans is a veth
//! torn down and rebuilt): a name depends only on the ids that want the same Neutron name in
//! the same space, never on unrelated objects. Of those, the lowest id keeps the Neutron name;
//! every other one gets an alternate: the first [`STEM`] bytes of the Neutron name and hex
//! digits of a hash of its prefix and id (a further attempt number only if that is taken).
//! So an id is renamed only when a colliding id that sorts before it appears (it moves to its
//! alternate) or disappears (it moves back). For UUIDs an alternate can never equal a Neutron
//! name (it has a hex digit where a UUID's name has its first `-`), and server-made UUIDs
//! share 11 characters once in about 10^12 pairs.

use std::collections::BTreeMap;

use wire::names::{ifname, stable_hash, MAX_IFNAME};

use crate::fxhash::FxSet;

/// Bytes of the Neutron name an alternate keeps. The incremental planner relies on it: two
/// names that may depend on each other share their first `STEM` bytes (or one is a prefix of
/// the other).
pub(crate) const STEM: usize = 10;

/// Names for `wanted` (prefix, id) pairs, in the same order, unique among themselves.
pub(crate) fn assign(wanted: &[(&str, &str)]) -> Vec<String> {
    let mut names: Vec<String> = wanted.iter().map(|(p, id)| ifname(p, id)).collect();
    let mut seen: FxSet<&str> = FxSet::default();
    if names.iter().all(|n| seen.insert(n.as_str())) {
        return names; // the common case: nothing shared
    }
    // Neutron name → indexes wanting it, lowest id first.
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        groups.entry(n.clone()).or_default().push(i);
    }
    let mut taken: FxSet<String> = groups.keys().cloned().collect();
    for (base, mut members) in groups {
        if members.len() < 2 {
            continue;
        }
        members.sort_by(|a, b| (wanted[*a].1, *a).cmp(&(wanted[*b].1, *b)));
        for &i in &members[1..] {
            let (prefix, id) = wanted[i];
            let mut attempt = 0u32;
            let name = loop {
                let cand = alternate(&base, prefix, id, attempt);
                if taken.insert(cand.clone()) {
                    break cand;
                }
                attempt += 1;
            };
            names[i] = name;
        }
    }
    names
}

/// The first [`STEM`] bytes of `base` (on a character boundary).
pub(crate) fn stem(name: &str) -> &str {
    let mut end = name.len().min(STEM);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// `stem(base)` filled up to [`MAX_IFNAME`] bytes with hex digits of a hash of (prefix, id,
/// attempt).
fn alternate(base: &str, prefix: &str, id: &str, attempt: u32) -> String {
    let mut out = stem(base).to_string();
    let h = stable_hash(&[prefix, id, &attempt.to_string()]);
    let hex = format!("{h:016x}");
    let fill = MAX_IFNAME - out.len();
    out.push_str(&hex[..fill]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0f6e3d2e-1484-4fdb-8e00-000000000001";
    const B: &str = "0f6e3d2e-14aa-4fdb-8e00-000000000002";
    const C: &str = "7c1d0a55-0000-4fdb-8e00-000000000003";

    #[test]
    fn distinct_ids_keep_neutron_names() {
        let n = assign(&[("vr-", A), ("vr-", C), ("vb-", A)]);
        assert_eq!(
            n,
            vec!["vr-0f6e3d2e-14", "vr-7c1d0a55-00", "vb-0f6e3d2e-14"]
        );
    }

    #[test]
    fn shared_prefix_gets_a_stable_alternate_for_the_higher_id() {
        let n = assign(&[("vr-", B), ("vr-", A)]);
        assert_eq!(n[1], "vr-0f6e3d2e-14", "the lowest id keeps Neutron's name");
        assert_ne!(n[0], n[1]);
        assert_eq!(n[0].len(), MAX_IFNAME);
        assert!(n[0].starts_with("vr-0f6e3d2"));
        assert_eq!(stem(&n[0]), stem(&n[1]));
        // Same input, same names, whatever the order; an unrelated id changes nothing.
        assert_eq!(
            assign(&[("vr-", A), ("vr-", B)]),
            vec![n[1].clone(), n[0].clone()]
        );
        assert_eq!(assign(&[("vr-", C), ("vr-", B), ("vr-", A)])[1..], n[..]);
    }

    #[test]
    fn many_ids_on_one_neutron_name_stay_unique_and_short() {
        let ids: Vec<String> = (0..500).map(|i| format!("{A}-{i}")).collect();
        let wanted: Vec<(&str, &str)> = ids.iter().map(|i| ("qr-", i.as_str())).collect();
        let n = assign(&wanted);
        let set: std::collections::BTreeSet<&String> = n.iter().collect();
        assert_eq!(set.len(), n.len());
        assert!(n
            .iter()
            .all(|x| x.len() <= MAX_IFNAME && x.starts_with("qr-")));
    }

    #[test]
    fn short_and_multibyte_ids() {
        let n = assign(&[("qg-", "r1"), ("qg-", "r1")]);
        assert_eq!(n[0], "qg-r1");
        assert!(n[1].starts_with("qg-r1") && n[1].len() == MAX_IFNAME);
        let e = "éééééééééééé";
        let n = assign(&[("qb-", e), ("qb-", &format!("{e}x"))]);
        assert_ne!(n[0], n[1]);
        assert!(n.iter().all(|x| x.len() <= MAX_IFNAME));
    }
}
