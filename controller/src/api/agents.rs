//! The agent API, on the Tricircle listener (and alone on the agent listener).
//!
//! - `POST /v1.0/agents` ([`wire::NodeRegistration`]): 404 while the pod does not exist (the
//!   agent waits and retries), else the node is (re-)registered.
//! - `GET /v1.0/agents/{node}/desired?since=R&timeout=S`: the node's state at once when its
//!   revision differs from R (0 = send now), else a long-poll of up to S seconds (cap 60), then
//!   204. An agent token reads only the nodes it registered.
//! - `PUT /v1.0/agents/{node}/status` ([`wire::StatusReport`]): ports reported ACTIVE become
//!   ACTIVE (and bound to the node if unbound); a port seen on a node but not bound anywhere is
//!   bound there (the binding is learned, as Neutron does from the iface-id).
//! - `GET /v1.0/agents` (admin): every node with its revisions, errors and probes.
//! - `GET /v1.0/routers/{id}/realized?timeout=S`: waits for the realization barrier, woken by
//!   publications and agent reports (another controller's reach it through PostgreSQL's
//!   NOTIFY; re-checked every [`REALIZED_RECHECK`] in case one was missed). At most `long-polls-per-project` waits per project and
//!   `long-polls-per-node` `desired` polls per node run at once; more get 429.
//! - `POST /v1.0/resync` (admin): a full realization pass now; answers what it did and whether
//!   the incremental picture had drifted from the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::{json as respond, json_bytes, no_content, App, Ctx};
use crate::auth::{Identity, Role};
use crate::error::DomainError;
use crate::realize;
use crate::service::{agents, policy};

/// Longest long-poll.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How often a `/realized` wait re-reads the reports with nothing woken it: a safety net for
/// a report another controller recorded whose NOTIFY was missed (its listener reconnecting).
pub const REALIZED_RECHECK: Duration = Duration::from_secs(2);

fn parse_json<T: serde::de::DeserializeOwned>(ctx: &Ctx, what: &str) -> Result<T, DomainError> {
    serde_json::from_slice(&ctx.body)
        .map_err(|e| DomainError::bad_request(format!("Malformed {what} in request body: {e}")))
}

fn query_u64(ctx: &Ctx, key: &str) -> Result<Option<u64>, DomainError> {
    match ctx.query.iter().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, v)) => v.parse().map(Some).map_err(|_| {
            DomainError::invalid_input(key, format!("'{v}' is not a non-negative integer"))
        }),
    }
}

/// Routes under `/v1.0/agents`, `/v1.0/resync` and `/v1.0/routers`.
pub async fn handle(app: &App, ctx: &Ctx, segs: &[&str]) -> Result<Response, DomainError> {
    let who = ctx.identity(app).await?;
    handle_as(app, ctx, segs, &who).await
}

/// Project of the identities agents' client certificates give (a certificate names a node,
/// not a project).
pub const AGENT_CERT_PROJECT: &str = "crosspod-agents";

/// axum handler of the agent listener (mutual TLS): the client certificate is the agent's
/// identity; only the agent's own endpoints are served there.
pub async fn handle_listener(State(app): State<Arc<App>>, req: Request) -> Response {
    super::dispatch("agent", app, req, route_listener).await
}

async fn route_listener(app: Arc<App>, ctx: Ctx) -> Result<Response, DomainError> {
    let Some(node) = ctx.peer_node.clone() else {
        return Err(DomainError::unauthorized(
            "the agent listener needs a client certificate naming the node",
        ));
    };
    let who = Identity {
        project_id: AGENT_CERT_PROJECT.into(),
        roles: vec![Role::Agent],
        node: Some(node),
    };
    let segs = ctx.segs();
    match segs.as_slice() {
        ["v1.0", rest @ ..]
            if matches!(
                (rest, &ctx.method),
                (["agents"], &Method::POST)
                    | (["agents", _, "desired"], &Method::GET)
                    | (["agents", _, "status"], &Method::PUT)
            ) =>
        {
            handle_as(&app, &ctx, rest, &who).await
        }
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}

async fn handle_as(
    app: &App,
    ctx: &Ctx,
    segs: &[&str],
    who: &Identity,
) -> Result<Response, DomainError> {
    match (segs, &ctx.method) {
        (["agents"], &Method::POST) => {
            let reg: wire::NodeRegistration = parse_json(ctx, "registration")?;
            agents::register(app, who, &reg).await?;
            app.realizer.run(app).await?;
            Ok(respond(StatusCode::OK, &json!({"agent": reg})))
        }
        (["agents", node], &Method::DELETE) => {
            agents::delete(app, who, node).await?;
            app.realizer.kick();
            Ok(no_content())
        }
        (["agents"], &Method::GET) => {
            policy::enforce(who, "list_agents", &policy::Target::default())?;
            let mut out = Vec::new();
            for a in app.store.list_agents().await? {
                let desired = app
                    .store
                    .node_state(&a.node)
                    .await?
                    .map(|(r, _)| r)
                    .unwrap_or(0);
                out.push(json!({
                    "node": a.node, "pod": a.pod, "registration": a.registration,
                    "registered_at": a.registered_at, "last_report_at": a.last_report_at,
                    "revision_desired": desired, "revision_applied": a.revision_applied,
                    "in_sync": a.revision_applied == desired,
                    "errors": a.report.as_ref().map(|r| r.errors.clone()).unwrap_or_default(),
                    "probes": a.report.as_ref().map(|r| r.probes.clone()).unwrap_or_default(),
                    "routers": a.report.as_ref().map(|r| r.routers.clone()).unwrap_or_default(),
                }));
            }
            Ok(respond(StatusCode::OK, &json!({"agents": out})))
        }
        (["agents", node, "desired"], &Method::GET) => {
            agents::load_node(app, who, node).await?;
            let since = query_u64(ctx, "since")?.unwrap_or(0);
            let wait = Duration::from_secs(query_u64(ctx, "timeout")?.unwrap_or(30)).min(MAX_WAIT);
            let deadline = Instant::now() + wait;
            // Served from memory: the realizer records each publication in its node hub and
            // wakes only the watchers of the nodes it changed.
            let mut rx = app.realizer.hub.subscribe(node);
            // Only a poll that would wait takes a place: answers at once are never refused.
            let answers_now = since == 0
                || wait.is_zero()
                || rx.borrow().as_ref().is_some_and(|p| p.revision != since);
            let _slot = if answers_now {
                None
            } else {
                Some(app.long_polls.acquire(
                    format!("desired:{node}"),
                    app.config.long_polls_per_node,
                    &format!("node {node}"),
                )?)
            };
            if rx.borrow().is_none() {
                // Not known here yet (just started): what the store has.
                match app.store.node_state(node).await? {
                    Some((rev, content)) => app.realizer.hub.set(node, rev as u64, &content)?,
                    None => app.realizer.kick(),
                }
            }
            loop {
                let cur = rx.borrow_and_update().clone();
                if let Some(p) = cur {
                    if p.revision != since || since == 0 {
                        return Ok(json_bytes(StatusCode::OK, p.body.to_vec()));
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(no_content());
                }
                if tokio::time::timeout(left, rx.changed()).await.is_err() {
                    return Ok(no_content());
                }
            }
        }
        (["agents", node, "status"], &Method::PUT) => {
            let report: wire::StatusReport = parse_json(ctx, "status report")?;
            let rebind = agents::report(app, who, node, &report).await?;
            app.report_recorded();
            if rebind {
                app.realizer.kick();
            }
            Ok(no_content())
        }
        (["resync"], &Method::POST) => {
            // A full realization pass now: re-read the store, re-plan every node, publish the
            // differences, and say whether the incremental picture had drifted.
            policy::enforce(who, "resync", &policy::Target::default())?;
            let report = app.realizer.run_full(app).await?;
            Ok(respond(StatusCode::OK, &json!({"resync": report})))
        }
        (["routers", id, "placement"], &Method::GET) => {
            let instances = crate::service::failover::placement(app, who, id).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"placement": {"router_id": id, "instances": instances}}),
            ))
        }
        (["routers", id, "realized"], &Method::GET) => {
            let r = app.store.get_router(id).await?;
            if !who.owns(&r.project_id) {
                return Err(DomainError::not_found("Router", "RouterNotFound", id));
            }
            let wait = Duration::from_secs(query_u64(ctx, "timeout")?.unwrap_or(0)).min(MAX_WAIT);
            let deadline = Instant::now() + wait;
            let _slot = if wait.is_zero() {
                None
            } else {
                Some(app.long_polls.acquire(
                    format!("realized:{}", who.project_id),
                    app.config.long_polls_per_project,
                    &format!("project {}", who.project_id),
                )?)
            };
            // Woken by a publication (the hub) or a report this controller recorded; the
            // receivers are taken before the first read so no change falls in between.
            let mut published = app.realizer.hub.subscribe_any();
            let mut reports = app.reports.subscribe();
            loop {
                published.borrow_and_update();
                reports.borrow_and_update();
                let state = realize::router_realized(app, id).await?;
                let done = !matches!(state, Ok(false));
                let left = deadline.saturating_duration_since(Instant::now());
                if done || left.is_zero() {
                    let (realized, error) = match state {
                        Ok(b) => (b, None),
                        Err(e) => (false, Some(e)),
                    };
                    return Ok(respond(
                        StatusCode::OK,
                        &json!({"router_id": id, "realized": realized, "error": error}),
                    ));
                }
                tokio::select! {
                    _ = published.changed() => {}
                    _ = reports.changed() => {}
                    _ = tokio::time::sleep(left.min(REALIZED_RECHECK)) => {}
                }
            }
        }
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}
