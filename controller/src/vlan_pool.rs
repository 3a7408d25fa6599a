//! `network_vlan_ranges` (the guide's `physnet:min:max,...` format) and the choice of a free VLAN.
//!
//! The store keeps one row per allocated (physnet, VLAN) under a primary key, so uniqueness is
//! the database's job; this module only parses the ranges and proposes candidates.

use std::collections::HashSet;

/// A `network_vlan_ranges` value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum VlanRangeError {
    /// An entry is not `physnet:min:max` or `physnet`.
    #[error("entry {entry:?} is not physnet:min:max")]
    Syntax {
        /// The entry.
        entry: String,
    },
    /// A bound is not a VLAN ID in 1..=4094 or min > max.
    #[error("entry {entry:?}: VLAN range must be within 1..4094 with min <= max")]
    Bounds {
        /// The entry.
        entry: String,
    },
    /// The same physnet is given twice.
    #[error("physnet {physnet:?} appears twice")]
    Duplicate {
        /// The physnet.
        physnet: String,
    },
}

/// Parsed ranges, in the order given (the first physnet with room serves default VLAN networks).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VlanRanges {
    entries: Vec<(String, Option<(u16, u16)>)>,
}

impl VlanRanges {
    /// Parse `bridge:2001:3000,extern:3001:4000` (a bare `physnet` allows provider VLANs only).
    pub fn parse(text: &str) -> Result<Self, VlanRangeError> {
        let mut entries: Vec<(String, Option<(u16, u16)>)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let parts: Vec<&str> = entry.split(':').collect();
            let (name, range) = match parts.as_slice() {
                [name] => (*name, None),
                [name, lo, hi] => {
                    let lo: u16 = lo.parse().map_err(|_| VlanRangeError::Bounds {
                        entry: entry.into(),
                    })?;
                    let hi: u16 = hi.parse().map_err(|_| VlanRangeError::Bounds {
                        entry: entry.into(),
                    })?;
                    if lo == 0 || hi > 4094 || lo > hi {
                        return Err(VlanRangeError::Bounds {
                            entry: entry.into(),
                        });
                    }
                    (*name, Some((lo, hi)))
                }
                _ => {
                    return Err(VlanRangeError::Syntax {
                        entry: entry.into(),
                    })
                }
            };
            if name.is_empty() {
                return Err(VlanRangeError::Syntax {
                    entry: entry.into(),
                });
            }
            if entries.iter().any(|(n, _)| n == name) {
                return Err(VlanRangeError::Duplicate {
                    physnet: name.into(),
                });
            }
            entries.push((name.to_string(), range));
        }
        Ok(VlanRanges { entries })
    }

    /// The range of a physnet, if it has one.
    pub fn range(&self, physnet: &str) -> Option<(u16, u16)> {
        self.entries
            .iter()
            .find(|(n, _)| n == physnet)
            .and_then(|(_, r)| *r)
    }

    /// Whether the physnet is configured at all.
    pub fn has_physnet(&self, physnet: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == physnet)
    }

    /// Physnets with a range, in configuration order.
    pub fn physnets_with_ranges(&self) -> impl Iterator<Item = (&str, u16, u16)> {
        self.entries
            .iter()
            .filter_map(|(n, r)| r.map(|(lo, hi)| (n.as_str(), lo, hi)))
    }
}

impl std::fmt::Display for VlanRanges {
    /// The guide's format again (`bridge:2001:3000,extern:3001:4000`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|(n, r)| match r {
                Some((lo, hi)) => format!("{n}:{lo}:{hi}"),
                None => n.clone(),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The highest VNI (24 bits).
pub const MAX_VNI: u32 = 16_777_215;

/// A `vni_ranges` value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum VniRangeError {
    /// An entry is not `LO:HI` with 1 <= LO <= HI <= 16777215.
    #[error("entry {entry:?} is not LO:HI with 1 <= LO <= HI <= 16777215")]
    Entry {
        /// The entry.
        entry: String,
    },
    /// No entry at all.
    #[error("at least one LO:HI range is needed")]
    Empty,
    /// Two ranges overlap.
    #[error("ranges {a} and {b} overlap")]
    Overlap {
        /// One range.
        a: String,
        /// The other.
        b: String,
    },
}

/// Neutron's `vni_ranges` (`1001:2000,5000:5999`): the VNIs the controller hands out, in the
/// order given (the lowest free VNI of the first range with room is taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VniRanges {
    ranges: Vec<(u32, u32)>,
}

impl Default for VniRanges {
    /// Neutron's example `1001:2000`.
    fn default() -> Self {
        VniRanges {
            ranges: vec![(1001, 2000)],
        }
    }
}

impl VniRanges {
    /// Parse a comma-separated `LO:HI` list.
    pub fn parse(text: &str) -> Result<Self, VniRangeError> {
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || VniRangeError::Entry {
                entry: entry.to_string(),
            };
            let (lo, hi) = entry.split_once(':').ok_or_else(bad)?;
            let lo: u32 = lo.trim().parse().map_err(|_| bad())?;
            let hi: u32 = hi.trim().parse().map_err(|_| bad())?;
            if lo == 0 || hi > MAX_VNI || lo > hi {
                return Err(bad());
            }
            if let Some((a, b)) = ranges.iter().find(|(a, b)| lo <= *b && *a <= hi) {
                return Err(VniRangeError::Overlap {
                    a: format!("{a}:{b}"),
                    b: format!("{lo}:{hi}"),
                });
            }
            ranges.push((lo, hi));
        }
        if ranges.is_empty() {
            return Err(VniRangeError::Empty);
        }
        Ok(VniRanges { ranges })
    }

    /// The ranges, in the order given.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// Whether `vni` is in one of the ranges (then it is reserved from the pool).
    pub fn contains(&self, vni: u32) -> bool {
        self.ranges
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&vni))
    }
}

impl std::fmt::Display for VniRanges {
    /// `LO:HI,LO:HI` again.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|(lo, hi)| format!("{lo}:{hi}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Pick a free VNI in `lo..=hi` (sorted `taken`): the lowest on `attempt` 0, later one of the
/// first few free ones using `entropy` (as [`pick_free`]).
pub fn pick_free_vni(
    lo: u32,
    hi: u32,
    taken: &HashSet<u32>,
    attempt: u32,
    entropy: u64,
) -> Option<u32> {
    let mut free = (lo..=hi).filter(|v| !taken.contains(v));
    if attempt == 0 {
        return free.next();
    }
    let window: Vec<u32> = free.take(32).collect();
    if window.is_empty() {
        None
    } else {
        Some(window[(entropy % window.len() as u64) as usize])
    }
}

/// Pick a free VLAN in `lo..=hi`. `attempt` 0 takes the lowest free one (predictable for
/// operators); later attempts (after losing a race to another controller) pick among the
/// first few free ones using `entropy`, to spread concurrent allocators apart.
pub fn pick_free(
    lo: u16,
    hi: u16,
    taken: &HashSet<u16>,
    attempt: u32,
    entropy: u64,
) -> Option<u16> {
    let mut free = (lo..=hi).filter(|v| !taken.contains(v));
    if attempt == 0 {
        return free.next();
    }
    let window: Vec<u16> = free.take(32).collect();
    if window.is_empty() {
        None
    } else {
        Some(window[(entropy % window.len() as u64) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_guides_ranges() {
        let r = VlanRanges::parse("bridge:2001:3000,extern:3001:4000").unwrap();
        assert_eq!(r.range("bridge"), Some((2001, 3000)));
        assert_eq!(r.range("extern"), Some((3001, 4000)));
        assert_eq!(r.range("other"), None);
        let names: Vec<_> = r.physnets_with_ranges().map(|p| p.0).collect();
        assert_eq!(names, ["bridge", "extern"]);
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            "a:1",
            "a:0:5",
            "a:5:4",
            "a:1:4095",
            "a:x:3",
            ":1:2",
            "a:1:2,a:3:4",
        ] {
            assert!(VlanRanges::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(VlanRanges::parse("physnet1")
            .unwrap()
            .has_physnet("physnet1"));
    }

    #[test]
    fn vni_ranges_parse_and_refuse() {
        let r = VniRanges::parse("1001:2000, 5000:5000").unwrap();
        assert_eq!(r.ranges(), &[(1001, 2000), (5000, 5000)]);
        assert_eq!(r.to_string(), "1001:2000,5000:5000");
        assert!(r.contains(5000) && r.contains(1001) && !r.contains(2001));
        for bad in ["", "0:5", "5:4", "1:16777216", "a:b", "7", "1:10,5:20"] {
            assert!(VniRanges::parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(VniRanges::parse("1:16777215").is_ok());
        let taken: HashSet<u32> = [1001, 1002].into_iter().collect();
        assert_eq!(pick_free_vni(1001, 1003, &taken, 0, 0), Some(1003));
        let full: HashSet<u32> = (1001..=1003).collect();
        assert_eq!(pick_free_vni(1001, 1003, &full, 0, 0), None);
    }

    #[test]
    fn picks_lowest_then_spreads() {
        let taken: HashSet<u16> = [10, 11].into_iter().collect();
        assert_eq!(pick_free(10, 20, &taken, 0, 0), Some(12));
        let v = pick_free(10, 20, &taken, 3, 12345).unwrap();
        assert!((12..=20).contains(&v));
        let full: HashSet<u16> = (10..=20).collect();
        assert_eq!(pick_free(10, 20, &full, 0, 0), None);
    }
}
