//! `/v2.0/quotas`: parse and render only; the rules are in [`crate::service::quotas`].

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::api::{json as respond, method_not_allowed, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::service::quotas::{self as service, Limits};

fn limits_object(limits: &Limits) -> Map<String, Value> {
    limits
        .iter()
        .map(|(r, l)| (r.as_str().to_string(), json!(l)))
        .collect()
}

pub(crate) async fn handle(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    rest: &[&str],
) -> Result<Response, DomainError> {
    let core = &app.core;
    match (rest, &ctx.method) {
        ([], &Method::GET) => {
            let quotas: Vec<Value> = service::list(core, who)
                .await?
                .iter()
                .map(|(project, limits)| {
                    let mut o = limits_object(limits);
                    o.insert("project_id".into(), json!(project));
                    o.insert("tenant_id".into(), json!(project));
                    Value::Object(o)
                })
                .collect();
            Ok(respond(StatusCode::OK, &json!({"quotas": quotas})))
        }
        ([project], &Method::GET) => {
            let limits = service::show(core, who, project).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"quota": limits_object(&limits)}),
            ))
        }
        ([project], &Method::PUT) => {
            let limits = service::parse_limits(ctx.resource_body("quota")?)?;
            let limits = service::update(core, who, project, &limits).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"quota": limits_object(&limits)}),
            ))
        }
        ([project], &Method::DELETE) => {
            service::reset(core, who, project).await?;
            Ok(no_content())
        }
        ([project, "details"], &Method::GET) => {
            let details: Map<String, Value> = service::details(core, who, project)
                .await?
                .iter()
                .map(|d| {
                    (
                        d.resource.as_str().to_string(),
                        json!({"used": d.used, "limit": d.limit, "reserved": 0}),
                    )
                })
                .collect();
            Ok(respond(StatusCode::OK, &json!({"quota": details})))
        }
        ([project, "default"], &Method::GET) => {
            let limits = service::defaults(core, who, project)?;
            Ok(respond(
                StatusCode::OK,
                &json!({"quota": limits_object(&limits)}),
            ))
        }
        ([], _) | ([_], _) | ([_, "details" | "default"], _) => Err(method_not_allowed(ctx)),
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}
