//! Tricircle's resource routings (`/v1.0/routings`, `tricircle/api/controllers/routing.py`),
//! read-only and admin only: one entry per resource and pod it is realized in.
//!
//! Tricircle kept a table mapping each central ("top") resource to the copy it created in a
//! pod's local Neutron ("bottom"). crosspod has no local Neutron: it realizes every resource
//! itself, so its routings are derived from what it tells the nodes of each pod to do — the
//! published desired states — and never stored or written:
//!
//! - `network`, `subnet`: a pod where a node has a VM port or a router leg on it;
//! - `router`: each pod hosting an instance of it (`qrouter-<id>` on one of its nodes);
//! - `port`: a VM port where it is bound; a router's interface, gateway, bridge-IP and per-pod
//!   leg ports where the leg they back is (every leg's MAC is its port's); a floating IP's
//!   port where its NAT is.
//!
//! `bottom_id` is the top id (the same object in the pod); `created_at`/`updated_at` are the
//! resource's. Ids are stable integers, a hash of (resource type, top id, pod id), so a marker
//! keeps its place across requests; the list is sorted by id, descending, as Tricircle's.

use std::collections::{BTreeMap, HashMap};

use super::admin_query::{self, AdminQuery};
use super::policy::{self, Target};
use crate::auth::Identity;
use crate::core::Core;
use crate::error::{DomainError, ErrorClass};
use crate::realize::{Intent, NodeHub};
use crate::store::Port;

/// Filters `/v1.0/routings` supports (Tricircle's `SUPPORTED_FILTERS`).
pub const FILTERS: &[&str] = &[
    "id",
    "top_id",
    "bottom_id",
    "pod_id",
    "project_id",
    "resource_type",
    "created_at",
    "updated_at",
];

/// One routing, in Tricircle's fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Routing {
    /// Stable id ([`routing_id`]).
    pub id: i64,
    /// The resource.
    pub top_id: String,
    /// The resource as the pod holds it (the same id in crosspod).
    pub bottom_id: String,
    /// The pod.
    pub pod_id: String,
    /// The resource's project.
    pub project_id: String,
    /// `network`, `subnet`, `router` or `port`.
    pub resource_type: &'static str,
    /// The resource's creation time.
    pub created_at: String,
    /// The resource's last update.
    pub updated_at: String,
}

/// One page of routings.
#[derive(Debug, Clone)]
pub struct Page {
    /// The routings, by id descending.
    pub routings: Vec<Routing>,
    /// The query as understood (for the next link).
    pub query: AdminQuery,
    /// The marker of the next page, when there is one.
    pub next: Option<i64>,
}

/// The id of the routing of `top_id` (of `resource_type`) in pod `pod_id`: 53 bits of a
/// stable hash, so JSON parsers of every language read it exactly.
pub fn routing_id(resource_type: &str, top_id: &str, pod_id: &str) -> i64 {
    let mut z = wire::names::stable_hash(&["routing", resource_type, top_id, pod_id]);
    // splitmix64's finalizer: FNV-1a's high bits mix poorly on inputs that differ at the end.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as i64
}

/// Collects routings, one per (type, resource, pod).
struct Collector<'a> {
    intent: &'a Intent,
    out: BTreeMap<i64, Routing>,
}

impl<'a> Collector<'a> {
    fn add(&mut self, kind: &'static str, id: &str, pod_id: &str) {
        let i = self.intent;
        let (project, created, updated) = match kind {
            "network" => match i.networks.get(id) {
                Some(n) => (&n.project_id, &n.created_at, &n.updated_at),
                None => return,
            },
            "subnet" => match i.subnets.get(id) {
                Some(s) => (&s.project_id, &s.created_at, &s.updated_at),
                None => return,
            },
            "router" => match i.routers.get(id) {
                Some(r) => (&r.project_id, &r.created_at, &r.updated_at),
                None => return,
            },
            _ => match i.ports.get(id) {
                Some(p) => (&p.project_id, &p.created_at, &p.updated_at),
                None => return,
            },
        };
        let rid = routing_id(kind, id, pod_id);
        if let Some(old) = self.out.get(&rid) {
            if (old.resource_type, old.top_id.as_str(), old.pod_id.as_str()) != (kind, id, pod_id) {
                tracing::warn!(id = rid, first = %old.top_id, second = %id, "two routings hash to one id; the second is not listed");
            }
            return;
        }
        self.out.insert(
            rid,
            Routing {
                id: rid,
                top_id: id.to_string(),
                bottom_id: id.to_string(),
                pod_id: pod_id.to_string(),
                project_id: project.clone(),
                resource_type: kind,
                created_at: created.clone(),
                updated_at: updated.clone(),
            },
        );
    }

    /// A port with its network and the subnets of its addresses.
    fn add_port(&mut self, p: &Port, pod_id: &str) {
        self.add("port", &p.id, pod_id);
        self.add("network", &p.network_id, pod_id);
        for f in &p.fixed_ips {
            self.add("subnet", &f.subnet_id, pod_id);
        }
    }
}

/// Every routing of `intent` as published to the nodes in `hub`, by id.
pub fn derive(intent: &Intent, hub: &NodeHub) -> Result<BTreeMap<i64, Routing>, DomainError> {
    let by_mac: HashMap<&str, &Port> = intent
        .ports
        .values()
        .map(|p| (p.mac_address.as_str(), p))
        .collect();
    let mut c = Collector {
        intent,
        out: BTreeMap::new(),
    };
    for (node, region) in intent.nodes() {
        let (Some(pod), Some(published)) = (intent.pod(region), hub.current(node)) else {
            continue;
        };
        let pod_id = pod.pod_id.as_str();
        let state: wire::NodeDesiredState =
            serde_json::from_str(&published.content).map_err(|e| {
                DomainError::internal(format!("published state of {node} unreadable: {e}"))
            })?;
        for (port_id, b) in &state.ports {
            match intent.ports.get(port_id) {
                Some(p) => c.add_port(p, pod_id),
                None => c.add("network", &b.network_id, pod_id),
            }
        }
        for (router_id, inst) in &state.routers {
            c.add("router", router_id, pod_id);
            for leg in &inst.legs {
                if let Some(p) = by_mac.get(leg.mac.as_str()) {
                    c.add_port(p, pod_id);
                }
                if let Some(n) = &leg.network_id {
                    c.add("network", n, pod_id);
                }
                if let Some(s) = &leg.subnet_id {
                    c.add("subnet", s, pod_id);
                }
            }
            for f in &inst.nat.floating {
                if let Some(p) = intent
                    .floatingips
                    .get(&f.floatingip_id)
                    .and_then(|fip| intent.ports.get(&fip.floating_port_id))
                {
                    c.add("port", &p.id, pod_id);
                }
            }
        }
    }
    Ok(c.out)
}

fn matches(r: &Routing, filters: &BTreeMap<String, String>, id: Option<i64>) -> bool {
    id.is_none_or(|i| r.id == i)
        && filters.iter().all(|(k, v)| match k.as_str() {
            "id" => true,
            "top_id" => r.top_id == *v,
            "bottom_id" => r.bottom_id == *v,
            "pod_id" => r.pod_id == *v,
            "project_id" => r.project_id == *v,
            "resource_type" => r.resource_type == v,
            "created_at" => r.created_at == *v,
            "updated_at" => r.updated_at == *v,
            _ => false,
        })
}

fn integer(what: &str, v: &str) -> Result<i64, DomainError> {
    v.trim().parse().map_err(|_| {
        DomainError::bad_request(format!(
            "{what} should be an integer or a valid literal for int() rather than '{v}'"
        ))
    })
}

async fn current(core: &Core) -> Result<BTreeMap<i64, Routing>, DomainError> {
    let intent = core.realizer.intent_read(core).await?;
    derive(&intent, &core.realizer.hub)
}

/// `GET /v1.0/routings`: filtered, newest id first, `limit` per page after `marker` (an id;
/// one whose resource has gone since still marks its place).
pub async fn list(
    core: &Core,
    who: &Identity,
    params: &[(String, String)],
) -> Result<Page, DomainError> {
    policy::enforce(who, "admin_api:routings:list", &Target::default())?;
    let query = admin_query::parse(params, FILTERS)?;
    let marker = query
        .marker
        .as_deref()
        .map(|m| integer("Marker", m))
        .transpose()?;
    let id = query
        .filters
        .get("id")
        .map(|v| integer("Id", v))
        .transpose()?;
    let all = current(core).await?;
    let mut routings: Vec<Routing> = all
        .into_values()
        .rev()
        .filter(|r| marker.is_none_or(|m| r.id < m))
        .filter(|r| matches(r, &query.filters, id))
        .take(query.limit + 1)
        .collect();
    let next = if routings.len() > query.limit {
        routings.truncate(query.limit);
        routings.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Page {
        routings,
        query,
        next,
    })
}

/// `GET /v1.0/routings/{id}`.
pub async fn show(core: &Core, who: &Identity, id: &str) -> Result<Routing, DomainError> {
    policy::enforce(who, "admin_api:routings:show", &Target::default())?;
    let not_found = || DomainError::not_found("Resource routing", "ResourceNotFound", id);
    let n: i64 = id.trim().parse().map_err(|_| not_found())?;
    current(core).await?.remove(&n).ok_or_else(not_found)
}

/// `POST`, `PUT` and `DELETE` on routings: refused by policy for non-admins, and with 405 for
/// admins, since here a routing is where crosspod realizes a resource, not a record to edit.
pub fn refuse_write(who: &Identity, action: &str) -> DomainError {
    if let Err(e) = policy::enforce(who, action, &Target::default()) {
        return e;
    }
    DomainError::new(
        ErrorClass::MethodNotAllowed,
        "HTTPMethodNotAllowed",
        "Resource routings are read-only here: crosspod derives them from where it realizes each \
         network, subnet, router and port; change those resources instead",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_distinct_and_exact_in_json() {
        let a = routing_id("network", "n1", "p1");
        assert_eq!(a, routing_id("network", "n1", "p1"));
        assert_ne!(a, routing_id("subnet", "n1", "p1"));
        assert_ne!(a, routing_id("network", "n1", "p2"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            let id = routing_id("port", &format!("00000000-0000-0000-0000-{i:012}"), "pod");
            assert!((0..1i64 << 53).contains(&id));
            assert!(seen.insert(id), "collision at {i}");
        }
    }
}
