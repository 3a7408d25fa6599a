//! A small fast hasher for the planner's string-keyed indexes (the Firefox/rustc "Fx" hash).
//! Keys come from the controller's own store, so hash flooding is not a concern here, and
//! SipHash was the largest single cost of indexing.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fx hasher state.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `HashMap` with the Fx hasher.
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
/// `HashSet` with the Fx hasher.
pub(crate) type FxSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// A set of ids asked "does it hold this one?" for every object of a snapshot (the scoped
/// scans): most answers are no, and a scope names a handful of ids. Up to [`StrSet::SMALL`]
/// entries it compares a word of the first and last bytes (and the length) before the bytes, which is
/// several times cheaper per miss than hashing the whole id; larger sets hash.
pub(crate) struct StrSet<'a> {
    small: Vec<(u64, &'a str)>,
    big: Option<FxSet<&'a str>>,
}

impl<'a> StrSet<'a> {
    /// Beyond this many entries a hash set is faster.
    const SMALL: usize = 24;

    /// The set of `items` (duplicates are fine).
    pub(crate) fn new<I: IntoIterator<Item = &'a str>>(items: I) -> Self {
        let mut small: Vec<(u64, &'a str)> = Vec::new();
        let mut big: Option<FxSet<&'a str>> = None;
        for s in items {
            match &mut big {
                Some(b) => {
                    b.insert(s);
                }
                None => {
                    if !small.iter().any(|(_, x)| *x == s) {
                        small.push((prefix(s), s));
                    }
                    if small.len() > Self::SMALL {
                        big = Some(small.drain(..).map(|(_, x)| x).collect());
                    }
                }
            }
        }
        StrSet { small, big }
    }

    /// Whether `s` is in the set.
    #[inline]
    pub(crate) fn contains(&self, s: &str) -> bool {
        match &self.big {
            Some(b) => b.contains(s),
            None => {
                let k = prefix(s);
                self.small.iter().any(|(p, x)| *p == k && *x == s)
            }
        }
    }
}

/// A word of `s`'s first and last 8 bytes and its length (shorter ids zero-padded): ids that
/// share a prefix (`router-0001`, `router-0002`) still differ in it. Whole-word loads, no
/// copy: this runs once per object a scan asks about.
#[inline]
fn prefix(s: &str) -> u64 {
    let b = s.as_bytes();
    let n = b.len();
    if n >= 8 {
        let head = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let t = &b[n - 8..];
        let tail = u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]);
        head ^ tail.rotate_left(29) ^ ((n as u64) << 56)
    } else {
        let mut w = 0u64;
        for (i, c) in b.iter().enumerate() {
            w |= u64::from(*c) << (8 * i);
        }
        w ^ ((n as u64) << 56)
    }
}

#[cfg(test)]
mod tests {
    use super::StrSet;

    #[test]
    fn small_and_big_sets_answer_alike() {
        let ids: Vec<String> = (0..100)
            .map(|i| format!("net-{i:04}-same-prefix"))
            .collect();
        for n in [0, 1, 5, 24, 25, 60] {
            let set = StrSet::new(ids[..n].iter().map(String::as_str));
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(set.contains(id), i < n, "{n} entries, id {id}");
            }
            assert!(!set.contains("net-0"), "a prefix of an id is not the id");
            assert!(!set.contains(""), "the empty id");
        }
    }
}
