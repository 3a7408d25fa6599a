//! Keeping a bridge's OpenFlow table equal to a desired set of flows, shared by the firewall
//! ([`crate::firewall`]) and the tunnel bridge ([`crate::tunnel`]).
//!
//! Each user owns a cookie space: the top 16 bits of the cookie say whose flow it is
//! ([`FIREWALL`] `0x6370`, [`TUNNEL`] `0x6371`, [`LEARNED`] `0x6372` for what `learn` actions
//! install), the low 48 bits are a hash of the flow's text. Equal cookies mean equal flows, so
//! the diff needs no parsing of OVS's spelling: an unchanged flow is never rewritten, a pass
//! with nothing changed writes nothing, and only flows of the caller's space are ever dumped or
//! deleted (someone else's, the other space's, and learned flows stay). Reads are one
//! cookie-filtered binary OpenFlow dump ([`ovs::openflow::OfConn`]); writes one atomic
//! `ovs-ofctl --bundle`.
//!
//! ovs-vswitchd keeps no flows across a restart, and OVSDB may not change at all then: each
//! programmed bridge has a sentinel flow whose absence [`FlowSync::flows_lost`] detects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ovs::openflow::{FlowMod, OfConn, OfError, OfctlBridge};

/// Mask selecting a cookie space (the top 16 bits).
pub const SPACE_MASK: u64 = 0xffff << 48;
/// The firewall's flows ("cp").
pub const FIREWALL: u64 = 0x6370 << 48;
/// The tunnel bridge's flows.
pub const TUNNEL: u64 = 0x6371 << 48;
/// Flows installed by `learn` actions on the tunnel bridge: in no space a diff dumps, so never
/// deleted by one (they age out by their own timeout).
pub const LEARNED: u64 = 0x6372 << 48;

/// The cookie of a flow's text in the space `base`.
pub fn cookie_of(base: u64, text: &str) -> u64 {
    base | (fnv1a(text.as_bytes()) & !SPACE_MASK)
}

/// FNV-1a, 64 bits: stable across runs and builds (the cookies are compared with what an
/// earlier process wrote).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The adds and deletes that turn `have` (cookies read from a bridge) into `want` (cookie →
/// flow text), in the space `base`: deletes name exact cookies, all of them in that space.
pub fn diff(base: u64, want: &BTreeMap<u64, String>, have: &BTreeSet<u64>) -> Vec<FlowMod> {
    let mut mods: Vec<FlowMod> = have
        .iter()
        .filter(|c| !want.contains_key(c) && **c & SPACE_MASK == base)
        .map(|c| FlowMod::DeleteCookie(*c))
        .collect();
    mods.extend(
        want.iter()
            .filter(|(c, _)| !have.contains(c))
            .map(|(c, f)| FlowMod::Add {
                cookie: *c,
                flow: f.clone(),
            }),
    );
    mods
}

/// How long one OpenFlow read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Cookies of the bridge's flows matching `cookie`/`mask`, over a binary OpenFlow connection.
pub fn cookies(of: &OfctlBridge, cookie: u64, mask: u64) -> Result<Vec<u64>, OfError> {
    OfConn::connect(of.socket(), READ_TIMEOUT)?.flow_cookies(cookie, mask)
}

/// What one sync of one bridge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// Flows written.
    pub added: usize,
    /// Flows deleted.
    pub deleted: usize,
}

/// Where the bridges' management sockets are, and the sentinel flow of each bridge a space
/// programmed. Clones share the sentinels, so one timer checks every user's bridges.
#[derive(Debug, Clone)]
pub struct FlowSync {
    rundir: PathBuf,
    /// (space, bridge) → cookie of one flow the bridge must hold in that space.
    sentinels: Arc<Mutex<BTreeMap<(u64, String), u64>>>,
}

impl FlowSync {
    /// Bridges' OpenFlow sockets are `<rundir>/<bridge>.mgmt`.
    pub fn new(rundir: impl Into<PathBuf>) -> Self {
        FlowSync {
            rundir: rundir.into(),
            sentinels: Arc::default(),
        }
    }

    /// The OpenFlow side of `bridge`.
    pub fn bridge(&self, bridge: &str) -> OfctlBridge {
        OfctlBridge::new(&self.rundir, bridge)
    }

    /// Records the flow of space `base` whose presence on `bridge` tells that ovs-vswitchd
    /// still has the flows (`None`: nothing to watch there).
    pub fn set_sentinel(&self, base: u64, bridge: &str, cookie: Option<u64>) {
        let mut s = self.sentinels.lock().expect("sentinels");
        match cookie {
            Some(c) => s.insert((base, bridge.to_string()), c),
            None => s.remove(&(base, bridge.to_string())),
        };
    }

    /// Forgets the sentinels of space `base` on bridges not in `keep`.
    pub fn retain_sentinels(&self, base: u64, keep: &BTreeSet<String>) {
        self.sentinels
            .lock()
            .expect("sentinels")
            .retain(|(b, bridge), _| *b != base || keep.contains(bridge));
    }

    /// Whether a programmed bridge lost its flows (ovs-vswitchd restarted, or someone flushed
    /// the bridge). One exact-cookie dump per bridge and space, which ovs-vswitchd answers
    /// from its cookie index: cheap enough for a timer of a few seconds. Blocking.
    pub fn flows_lost(&self) -> bool {
        let sentinels = self.sentinels.lock().expect("sentinels").clone();
        sentinels.iter().any(|((_, bridge), cookie)| {
            !matches!(
                cookies(&self.bridge(bridge), *cookie, u64::MAX),
                Ok(f) if !f.is_empty()
            )
        })
    }

    /// Makes `bridge` hold exactly `want` among the flows of space `base`: one cookie dump,
    /// then one bundle with the difference (none when nothing changed). A bridge without a
    /// management socket and nothing wanted is left alone. Blocking (runs `ovs-ofctl`).
    pub fn sync(
        &self,
        base: u64,
        bridge: &str,
        want: &BTreeMap<u64, String>,
    ) -> Result<Synced, String> {
        let of = self.bridge(bridge);
        if want.is_empty() && !of.has_socket() {
            return Ok(Synced::default());
        }
        let have: BTreeSet<u64> = cookies(&of, base, SPACE_MASK)
            .map_err(|e| e.to_string())?
            .into_iter()
            .collect();
        let mods = diff(base, want, &have);
        if mods.is_empty() {
            return Ok(Synced::default());
        }
        let deleted = mods
            .iter()
            .filter(|m| matches!(m, FlowMod::DeleteCookie(_)))
            .count();
        tracing::info!(
            bridge = %bridge,
            space = format!("{:#06x}", base >> 48),
            add = mods.len() - deleted,
            delete = deleted,
            "applying flows"
        );
        of.apply_bundle(&mods).map_err(|e| e.to_string())?;
        Ok(Synced {
            added: mods.len() - deleted,
            deleted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_deletes_only_its_own_space() {
        let want: BTreeMap<u64, String> =
            [(TUNNEL | 1, "table=0,priority=1 actions=drop".to_string())].into();
        let have: BTreeSet<u64> = [TUNNEL | 2, FIREWALL | 2, LEARNED, 0x1234, 0, TUNNEL | 1].into();
        assert_eq!(
            diff(TUNNEL, &want, &have),
            vec![FlowMod::DeleteCookie(TUNNEL | 2)]
        );
        let mods = diff(TUNNEL, &want, &BTreeSet::new());
        assert!(matches!(&mods[..], [FlowMod::Add { cookie, .. }] if *cookie == TUNNEL | 1));
    }

    #[test]
    fn cookies_are_stable_and_in_their_space() {
        let a = cookie_of(TUNNEL, "table=0,priority=0 actions=drop");
        assert_eq!(a, cookie_of(TUNNEL, "table=0,priority=0 actions=drop"));
        assert_eq!(a & SPACE_MASK, TUNNEL);
        assert_ne!(a & !SPACE_MASK, cookie_of(TUNNEL, "x") & !SPACE_MASK);
    }
}
