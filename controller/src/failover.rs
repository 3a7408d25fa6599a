//! Router failover's decision: which nodes are lost, judged from their pod peers' liveness
//! reports (BFD sessions run by ovs-vswitchd, sent in the agents' status reports), never from
//! the agents' long-polls or report times alone (an agent that crashed or lost its controller
//! link while its data plane answers is not lost). The rule is in `docs/architecture.md`,
//! "Failover"; [`judge`] is it.
//!
//! A node judged lost waits `--failover-hold-ms` (so a cut-off node has fenced itself), then
//! one transaction flips its `lost` flag only if it is not already set and logs the change
//! ([`crate::store::Store::set_node_lost`]): a second controller making the same decision
//! flips nothing. The realizer then re-plans every node, with the lost node no candidate, and
//! the moved instances' placements are rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::Core;
use crate::store::l3::AgentRow;

/// Shortest wait between two rounds woken by a deadline (a hold or a settling window ending).
pub const RECHECK: Duration = Duration::from_millis(100);

/// Longest wait between two rounds with nothing woken the watcher: a safety net only. Reports
/// wake it (recorded here, or by another controller through PostgreSQL's NOTIFY), and a hold
/// or a settling window ending wakes it at that moment; reading every node's report ten
/// times a second instead cost 2-3% of a core at 500 nodes with nothing happening (issue 22).
pub const IDLE_RECHECK: Duration = Duration::from_secs(10);

/// What the reports say about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A peer sees it up and it is not fenced.
    Alive,
    /// It fenced itself, or peers see it down, none up, and it does not see all of its
    /// peers down while unfenced.
    Lost,
    /// It and its peers see each other down and nobody fenced: nobody can tell from the
    /// reports which side is cut off, so nothing moves.
    Partition,
    /// Nothing to judge from (no liveness peers, no reports naming it): keep what was decided.
    Unknown,
}

/// Judge `node` from the last reports of its pod's nodes (`pod`, itself included). Views of
/// peers that are lost or fenced do not count: their reports are stale or cut off. Nor does a
/// "down" from a peer in `settling` (alive again only just): its BFD sessions are still coming
/// back up, and "down" from it means "not re-established yet", not "lost" (its "up" counts).
pub fn judge(node: &AgentRow, pod: &[&AgentRow], settling: &BTreeSet<&str>) -> Verdict {
    if node.registration.local_ip.is_none() {
        return Verdict::Unknown;
    }
    let own = node.report.as_ref();
    if own.is_some_and(|r| r.fenced) {
        return Verdict::Lost;
    }
    let (mut up, mut down) = (false, false);
    for p in pod {
        if p.node == node.node || p.lost || p.registration.local_ip.is_none() {
            continue;
        }
        let Some(r) = p.report.as_ref().filter(|r| !r.fenced) else {
            continue;
        };
        match r.peers.iter().find(|v| v.node == node.node) {
            Some(v) if v.up => up = true,
            // A settling node's "down" may mean "not re-established yet"; its "up" is
            // evidence like anyone's.
            Some(_) if !settling.contains(p.node.as_str()) => down = true,
            _ => {}
        }
    }
    if up {
        return Verdict::Alive;
    }
    if !down {
        return Verdict::Unknown;
    }
    let sees_all_down = own.is_some_and(|r| !r.peers.is_empty() && r.peers.iter().all(|v| !v.up));
    if sees_all_down {
        Verdict::Partition
    } else {
        Verdict::Lost
    }
}

/// The watcher's memory between rounds (per controller: the decision itself is in the store).
#[derive(Default)]
struct Watch {
    /// Node → when this controller first saw it judged lost (the hold and the duration start).
    down_since: BTreeMap<String, Instant>,
    /// Nodes in a partition now (logged and counted once per episode).
    partitioned: BTreeSet<String>,
}

/// Watch the reports and decide, until the process ends.
pub async fn watch(core: Arc<Core>) {
    let mut reports = core.reports.subscribe();
    let mut w = Watch::default();
    loop {
        let wait = match round(&core, &mut w).await {
            Ok(next) => next.map_or(IDLE_RECHECK, |d| d.clamp(RECHECK, IDLE_RECHECK)),
            Err(e) => {
                tracing::warn!(error = %e, "judging node liveness failed; will retry");
                RECHECK
            }
        };
        tokio::select! {
            _ = reports.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One judgement of every node; returns how long until a verdict may change with no new
/// report (a hold ends, a settling window closes), if one may.
async fn round(
    core: &Arc<Core>,
    w: &mut Watch,
) -> Result<Option<Duration>, crate::error::StoreError> {
    let agents = core.store.list_agents().await?;
    let mut by_pod: BTreeMap<&str, Vec<&AgentRow>> = BTreeMap::new();
    for a in &agents {
        by_pod.entry(a.pod.as_str()).or_default().push(a);
    }
    let hold = core.config.failover.hold;
    // A node alive again less than this long ago: its sessions to its peers may still be
    // re-establishing (OVS brings a down session back at its slow rate, about 1 s).
    let settle = 2 * core.config.failover.detection() + Duration::from_secs(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let settle_secs = settle.as_secs().max(1);
    let mut next: Option<Duration> = None;
    let mut soon = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));
    let mut settling: BTreeSet<&str> = BTreeSet::new();
    for a in agents.iter().filter(|a| !a.lost) {
        let Some(t) = crate::store::parse_utc(&a.lost_changed_at) else {
            continue;
        };
        if now.saturating_sub(t) <= settle_secs {
            settling.insert(a.node.as_str());
            // Its window closes once `now - t` exceeds it (whole seconds).
            soon(Duration::from_secs(
                (t + settle_secs + 1).saturating_sub(now),
            ));
        }
    }
    for a in &agents {
        let verdict = judge(a, &by_pod[a.pod.as_str()], &settling);
        if verdict == Verdict::Partition {
            if w.partitioned.insert(a.node.clone()) {
                tracing::warn!(node = %a.node, pod = %a.pod, "node and peers see each other down, nobody fenced: a partition; nothing moves");
                core.metrics.record_partition(&a.pod);
            }
        } else {
            w.partitioned.remove(&a.node);
        }
        match verdict {
            Verdict::Lost if !a.lost => {
                let since = *w.down_since.entry(a.node.clone()).or_insert_with(|| {
                    tracing::info!(node = %a.node, pod = %a.pod, hold_ms = hold.as_millis() as u64, "node seen lost; holding before moving its instances");
                    Instant::now()
                });
                if since.elapsed() < hold {
                    soon(hold - since.elapsed());
                    continue;
                }
                if core.store.set_node_lost(&a.node, true).await? {
                    tracing::warn!(node = %a.node, pod = %a.pod, "node lost: its router instances and DHCP servers move");
                    if let Err(e) = core.realizer.run(&**core).await {
                        tracing::warn!(error = %e.message, "publishing the failover failed; the realizer retries");
                    }
                    core.metrics.record_failover(&a.pod, since.elapsed());
                }
                w.down_since.remove(&a.node);
            }
            Verdict::Alive if a.lost => {
                w.down_since.remove(&a.node);
                if core.store.set_node_lost(&a.node, false).await? {
                    tracing::info!(node = %a.node, pod = %a.pod, "node alive again");
                    core.realizer.kick();
                }
            }
            Verdict::Lost => {}
            _ => {
                w.down_since.remove(&a.node);
            }
        }
    }
    w.down_since
        .retain(|n, _| agents.iter().any(|a| &a.node == n));
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, ip: Option<&str>, peers: &[(&str, bool)], fenced: bool) -> AgentRow {
        AgentRow {
            node: node.into(),
            pod: "P".into(),
            registration: wire::NodeRegistration {
                node: node.into(),
                pod: "P".into(),
                local_ip: ip.map(|i| i.parse().unwrap()),
                ..Default::default()
            },
            registered_by: String::new(),
            registered_at: String::new(),
            last_report_at: None,
            revision_applied: 0,
            report: Some(wire::StatusReport {
                node: node.into(),
                peers: peers
                    .iter()
                    .map(|(n, up)| wire::PeerLiveness {
                        node: n.to_string(),
                        up: *up,
                    })
                    .collect(),
                fenced,
                ..Default::default()
            }),
            description: String::new(),
            admin_state_up: true,
            lost: false,
            lost_changed_at: String::new(),
        }
    }

    #[test]
    fn the_decision_table() {
        let none = BTreeSet::new();
        let ip = Some("192.0.2.1");
        // a powered off: its last report still says b and c up; b and c see it down.
        let a = row("a", ip, &[("b", true), ("c", true)], false);
        let b = row("b", ip, &[("a", false), ("c", true)], false);
        let c = row("c", ip, &[("a", false), ("b", true)], false);
        assert_eq!(judge(&a, &[&a, &b, &c], &none), Verdict::Lost);
        assert_eq!(judge(&b, &[&a, &b, &c], &none), Verdict::Alive);
        // One peer still sees it up: not lost.
        let c_up = row("c", ip, &[("a", true), ("b", true)], false);
        assert_eq!(judge(&a, &[&a, &b, &c_up], &none), Verdict::Alive);
        // Two nodes seeing each other down, nobody fenced: a partition.
        let x = row("x", ip, &[("y", false)], false);
        let y = row("y", ip, &[("x", false)], false);
        assert_eq!(judge(&x, &[&x, &y], &none), Verdict::Partition);
        // The cut-off one fenced itself: it is lost, and its views count for nothing.
        let xf = row("x", ip, &[("y", false)], true);
        assert_eq!(judge(&xf, &[&xf, &y], &none), Verdict::Lost);
        assert_eq!(judge(&y, &[&xf, &y], &none), Verdict::Unknown);
        // No views at all (agent never reported, no peers): nothing to judge.
        let lone = row("l", ip, &[], false);
        assert_eq!(judge(&lone, &[&lone], &none), Verdict::Unknown);
        // No tunnel endpoint: no liveness, never judged.
        let plain = row("p", None, &[], true);
        assert_eq!(judge(&plain, &[&plain, &b], &none), Verdict::Unknown);
        // A lost peer's stale "a is up" does not count.
        let mut b_lost = row("b", ip, &[("a", true)], false);
        b_lost.lost = true;
        assert_eq!(judge(&a, &[&a, &b_lost, &c], &none), Verdict::Lost);
        // x came back a moment ago: its session to y is not up again yet, while y already
        // sees x. x's "y is down" is not a loss of y (it would flap the instance back).
        let x_back = row("x", ip, &[("y", false)], false);
        let y_sees = row("y", ip, &[("x", true)], false);
        assert_eq!(judge(&y_sees, &[&x_back, &y_sees], &none), Verdict::Lost);
        let settling = BTreeSet::from(["x"]);
        assert_eq!(
            judge(&y_sees, &[&x_back, &y_sees], &settling),
            Verdict::Unknown
        );
        assert_eq!(
            judge(&x_back, &[&x_back, &y_sees], &settling),
            Verdict::Alive
        );
        // A settling node's "up" still counts: it keeps a third node alive that another peer
        // sees down.
        let x_sees_z = row("x", ip, &[("y", true), ("z", true)], false);
        let y_not_z = row("y", ip, &[("x", true), ("z", false)], false);
        let z = row("z", ip, &[("x", true), ("y", false)], false);
        assert_eq!(
            judge(&z, &[&x_sees_z, &y_not_z, &z], &settling),
            Verdict::Alive
        );
    }
}
