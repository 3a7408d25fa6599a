//! `/v1.0/jobs` on the Tricircle listener, in Tricircle's shapes (the rules are
//! [`crate::service::jobs`]'s):
//!
//! - `GET /v1.0/jobs` and `/v1.0/jobs/detail`: `{"jobs": [...], "jobs_links": [next]}`,
//!   filters `project_id`, `type`, `status` (any case), `limit`, `marker`;
//! - `GET /v1.0/jobs/schemas`: `{"schemas": [{"type", "resource": [keys]}]}`;
//! - `GET /v1.0/jobs/{id}`: `{"job": ...}`, active or from the log;
//! - `POST /v1.0/jobs` `{"job": {"type", "project_id", "resource"}}`: 202 `{"job": ...}`;
//! - `PUT /v1.0/jobs/{id}` (no body): redo, `{"job": ...}`;
//! - `DELETE /v1.0/jobs/{id}`: 200 `{}`.
//!
//! A job renders as Tricircle's (`id`, `project_id`, `type`, `timestamp`, `status`,
//! `resource` keyed by the type's resource keys) plus crosspod's `attempts` and `last_error`.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{json as respond, method_not_allowed, App, Ctx};
use crate::error::DomainError;
use crate::service::jobs;
use crate::store::jobs::Job;

/// A job as Tricircle shows it.
pub fn render(j: &Job) -> Value {
    let resource: Map<String, Value> = j
        .kind
        .resource_keys()
        .iter()
        .zip(j.resource_id.split('#'))
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"id": j.id, "project_id": j.project_id, "type": j.kind.as_str(), "timestamp": j.timestamp,
           "status": j.status.as_str(), "resource": resource, "attempts": j.attempts, "last_error": j.last_error})
}

/// The `rel: next` link of an admin list: Tricircle's relative form, with the filters kept.
pub fn next_link(path: &str, q: &crate::service::admin_query::AdminQuery, marker: &str) -> Value {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("limit", &q.limit.to_string());
    s.append_pair("marker", marker);
    for (k, v) in &q.filters {
        s.append_pair(k, v);
    }
    json!([{"rel": "next", "href": format!("{path}?{}", s.finish())}])
}

/// Routes under `/v1.0/jobs` (`rest` is what follows `jobs`).
pub async fn handle(app: &App, ctx: &Ctx, rest: &[&str]) -> Result<Response, DomainError> {
    let who = ctx.identity(app).await?;
    match (rest, &ctx.method) {
        ([], &Method::GET) | (["detail"], &Method::GET) => {
            let page = jobs::list(app, &who, &ctx.query).await?;
            let mut body = json!({"jobs": page.jobs.iter().map(render).collect::<Vec<_>>()});
            if let Some(m) = &page.next {
                body["jobs_links"] = next_link("/v1.0/jobs", &page.query, m);
            }
            Ok(respond(StatusCode::OK, &body))
        }
        (["schemas"], &Method::GET) => {
            let schemas: Vec<Value> = jobs::schemas(&who)?
                .into_iter()
                .map(|(t, keys)| json!({"type": t.as_str(), "resource": keys}))
                .collect();
            Ok(respond(StatusCode::OK, &json!({"schemas": schemas})))
        }
        ([], &Method::POST) => {
            // Policy before the body, so a member learns nothing from its validation.
            crate::service::policy::enforce(
                &who,
                "admin_api:jobs:create",
                &crate::service::policy::Target::default(),
            )?;
            let body = ctx.resource_body("job")?;
            let j = jobs::create(app, &who, &body).await?;
            Ok(respond(StatusCode::ACCEPTED, &json!({"job": render(&j)})))
        }
        ([id], &Method::GET) => Ok(respond(
            StatusCode::OK,
            &json!({"job": render(&jobs::show(app, &who, id).await?)}),
        )),
        ([id], &Method::PUT) => Ok(respond(
            StatusCode::OK,
            &json!({"job": render(&jobs::redo(app, &who, id).await?)}),
        )),
        ([id], &Method::DELETE) => {
            jobs::delete(app, &who, id).await?;
            Ok(respond(StatusCode::OK, &json!({})))
        }
        ([], _) | ([_], _) => Err(method_not_allowed(ctx)),
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}
