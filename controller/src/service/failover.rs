//! Router failover's read side: where each instance of a router runs, its standbys, and
//! whether (and since when) it moved off the node it would have with every node alive.

use serde::Serialize;

use crate::auth::Identity;
use crate::core::Core;
use crate::error::DomainError;
use crate::service::policy;
use crate::store::failover::PlacementKind;

/// One instance of a router, as `GET /v1.0/routers/{id}/placement` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstancePlacement {
    /// Pod of the instance.
    pub pod: String,
    /// The node running it.
    pub node: String,
    /// The alive nodes that would take it, in order.
    pub standbys: Vec<String>,
    /// Where it runs with every node alive (its top candidate).
    pub home: Option<String>,
    /// Whether it runs elsewhere than `home` (it failed over and did not fail back).
    pub moved: bool,
    /// When it came to `node` (`None` when not moved, or not recorded yet).
    pub moved_at: Option<String>,
    /// Whether `node` is judged lost (for a moment, until the move is published).
    pub node_lost: bool,
}

/// The placement of every instance of router `id` (admin only: it names nodes).
pub async fn placement(
    core: &Core,
    who: &Identity,
    id: &str,
) -> Result<Vec<InstancePlacement>, DomainError> {
    policy::enforce(who, "get_router_placement", &policy::Target::default())?;
    core.store.get_router(id).await?;
    let intent = core.realizer.intent_read(core).await?;
    let rows = core.store.placements_of(PlacementKind::Router, id).await?;
    let lost: std::collections::BTreeSet<&str> = intent
        .snapshot
        .nodes
        .iter()
        .filter(|n| n.lost)
        .map(|n| n.name.as_str())
        .collect();
    let planner = planner::Planner::new(&intent.snapshot);
    Ok(planner
        .placement(id)
        .into_iter()
        .map(|p| {
            let moved = p.home.as_deref().is_some_and(|h| h != p.active);
            let moved_at = rows
                .get(&p.pod)
                .filter(|r| moved && r.node == p.active)
                .map(|r| r.since.clone());
            InstancePlacement {
                node_lost: lost.contains(p.active.as_str()),
                pod: p.pod,
                node: p.active,
                standbys: p.standbys,
                home: p.home,
                moved,
                moved_at,
            }
        })
        .collect())
}
