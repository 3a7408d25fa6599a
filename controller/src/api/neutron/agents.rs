//! `/v2.0/agents` (the `agent` extension): crosspod's node agents as Neutron shows its
//! agents, so `openstack network agent list` tells which nodes are alive. Admin only.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::query::ListQuery;
use super::{op, Op};
use crate::api::{json as respond, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::service::agents;
use crate::store::l3::AgentRow;

/// Attributes of an agent (filterable and sortable).
pub const ATTRS: &[&str] = &[
    "id",
    "agent_type",
    "binary",
    "host",
    "availability_zone",
    "alive",
    "admin_state_up",
    "topic",
    "configurations",
    "created_at",
    "started_at",
    "heartbeat_timestamp",
    "description",
];

/// An agent as Neutron shows it; alive while it reported within [`agents::AGENT_DOWN_TIME`].
pub fn render(a: &AgentRow, az: &str) -> Value {
    json!({
        "id": agents::agent_id(&a.node),
        "agent_type": "Open vSwitch agent",
        "binary": "crosspod-agent",
        "host": a.node,
        "availability_zone": az,
        "alive": agents::alive(a),
        "admin_state_up": a.admin_state_up,
        "topic": "N/A",
        "configurations": {
            "pod": a.pod,
            "bridge_mappings": a.registration.bridge_mappings,
            "revision_applied": a.revision_applied,
        },
        "created_at": a.registered_at,
        "started_at": a.registered_at,
        "heartbeat_timestamp": a.last_report_at.clone().unwrap_or_else(|| a.registered_at.clone()),
        "description": a.description,
        "resources_synced": null,
    })
}

/// `{"agent": {...}}` with only `description` and `admin_state_up`: everything else an agent
/// shows is what the node reports, read-only as in Neutron.
fn parse_update(ctx: &Ctx) -> Result<agents::AgentUpdate, DomainError> {
    let body = ctx.resource_body("agent")?;
    let mut u = agents::AgentUpdate::default();
    for (k, v) in &body {
        match (k.as_str(), v) {
            ("description", Value::String(s)) => u.description = Some(s.clone()),
            ("description", Value::Null) => u.description = Some(String::new()),
            ("admin_state_up", Value::Bool(b)) => u.admin_state_up = Some(*b),
            ("description" | "admin_state_up", _) => {
                return Err(DomainError::invalid_input(k, format!("invalid value {v}")))
            }
            _ => {
                return Err(DomainError::bad_request(format!(
                    "Cannot update read-only attribute {k}"
                )))
            }
        }
    }
    Ok(u)
}

pub(crate) async fn handle(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    rest: &[&str],
) -> Result<Response, DomainError> {
    let listed = agents::list(app, who).await?;
    let find = |id: &str| {
        listed
            .iter()
            .find(|(a, _)| agents::agent_id(&a.node) == id)
            .cloned()
            .ok_or_else(|| DomainError::not_found("Agent", "AgentNotFound", id))
    };
    match op(ctx, rest)? {
        Op::List => {
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let items = listed.iter().map(|(a, az)| render(a, az)).collect();
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "agents")?,
            ))
        }
        Op::Show(id) => {
            let (a, az) = find(id)?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(&a, &az), "agent"),
            ))
        }
        Op::Delete(id) => {
            let (a, _) = find(id)?;
            agents::delete(app, who, &a.node).await?;
            app.realizer.kick();
            Ok(no_content())
        }
        Op::Update(id) => {
            let (a, _) = find(id)?;
            let u = parse_update(ctx)?;
            let row = agents::update(app, who, &a.node, &u).await?;
            let az = listed
                .iter()
                .find(|(l, _)| l.node == row.node)
                .map(|(_, az)| az.clone())
                .unwrap_or_default();
            Ok(respond(
                StatusCode::OK,
                &json!({"agent": render(&row, &az)}),
            ))
        }
        Op::Create => Err(crate::api::method_not_allowed(ctx)),
    }
}
