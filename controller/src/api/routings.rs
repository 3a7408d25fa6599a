//! `/v1.0/routings` on the Tricircle listener, in Tricircle's shapes (derived and read-only:
//! see [`crate::service::routings`]):
//!
//! - `GET /v1.0/routings`: `{"routings": [...], "routings_links": [next]}`, filters `id`,
//!   `top_id`, `bottom_id`, `pod_id`, `project_id`, `resource_type`, `created_at`,
//!   `updated_at`, `limit`, `marker` (an id);
//! - `GET /v1.0/routings/{id}`: `{"routing": ...}`;
//! - `POST`, `PUT`, `DELETE`: 405 for an admin (403 for anyone else).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::{json as respond, method_not_allowed, App, Ctx};
use crate::error::DomainError;
use crate::service::routings;

/// Routes under `/v1.0/routings` (`rest` is what follows `routings`).
pub async fn handle(app: &App, ctx: &Ctx, rest: &[&str]) -> Result<Response, DomainError> {
    let who = ctx.identity(app).await?;
    match (rest, &ctx.method) {
        ([], &Method::GET) => {
            let page = routings::list(app, &who, &ctx.query).await?;
            let mut body = json!({"routings": page.routings});
            if let Some(m) = page.next {
                body["routings_links"] =
                    super::jobs::next_link("/v1.0/routings", &page.query, &m.to_string());
            }
            Ok(respond(StatusCode::OK, &body))
        }
        ([id], &Method::GET) => Ok(respond(
            StatusCode::OK,
            &json!({"routing": routings::show(app, &who, id).await?}),
        )),
        ([], &Method::POST) => Err(routings::refuse_write(&who, "admin_api:routings:create")),
        ([_], &Method::PUT) => Err(routings::refuse_write(&who, "admin_api:routings:put")),
        ([_], &Method::DELETE) => Err(routings::refuse_write(&who, "admin_api:routings:delete")),
        ([], _) | ([_], _) => Err(method_not_allowed(ctx)),
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}
