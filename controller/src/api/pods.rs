//! The Tricircle pod API on its own listener: `/v1.0/pods` (admin only); `/v1.0/jobs`
//! ([`super::jobs`]), `/v1.0/routings` ([`super::routings`]) and the agent API
//! ([`super::agents`]) are routed from here.
//!
//! `POST {"pod": {"region_name", "az_name"?, "pod_az_name"?, "dc_name"?}}`: region names are
//! unique; a pod with an empty `az_name` is the central pod and there is at most one.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::neutron::Body;
use super::{dispatch, json as respond, method_not_allowed, no_content, App, Ctx};
use crate::error::DomainError;
use crate::service::policy;
use crate::store::Pod;

/// axum fallback for the Tricircle listener.
pub async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    dispatch("tricircle", app, req, route).await
}

/// A pod as Tricircle shows it.
pub fn render(p: &Pod) -> Value {
    json!({"pod_id": p.pod_id, "region_name": p.region_name, "az_name": p.az_name, "pod_az_name": p.pod_az_name, "dc_name": p.dc_name})
}

async fn route(app: Arc<App>, ctx: Ctx) -> Result<Response, DomainError> {
    let segs = ctx.segs();
    match segs.as_slice() {
        [] => match ctx.method {
            Method::GET => Ok(respond(
                StatusCode::OK,
                &json!({"versions": [{"id": "v1.0", "status": "CURRENT", "links": [{"href": format!("{}/v1.0/", ctx.base_url()), "rel": "self"}]}]}),
            )),
            _ => Err(method_not_allowed(&ctx)),
        },
        ["openapi"] => Ok(respond(StatusCode::OK, &crate::api::openapi::document())),
        ["metrics"] => {
            let mut extra = String::from(
                "# HELP crosspod_controller_jobs Jobs by state (SUCCESS: the job log).\n# TYPE crosspod_controller_jobs gauge\n",
            );
            for (s, n) in app.store.job_counts().await? {
                extra.push_str(&format!(
                    "crosspod_controller_jobs{{status=\"{}\"}} {n}\n",
                    s.as_str()
                ));
            }
            let body = app.metrics.render(&extra);
            Ok(axum::response::IntoResponse::into_response((
                StatusCode::OK,
                [(
                    axum::http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                body,
            )))
        }
        ["v1.0", "pods", rest @ ..] => {
            let who = ctx.identity(&app).await?;
            policy::enforce(&who, "pods", &policy::Target::default())?;
            match (rest, &ctx.method) {
                ([], &Method::GET) => {
                    let pods: Vec<Value> =
                        app.store.list_pods().await?.iter().map(render).collect();
                    Ok(respond(StatusCode::OK, &json!({"pods": pods})))
                }
                ([], &Method::POST) => {
                    let mut b = Body::new(ctx.resource_body("pod")?);
                    let region_name = b.string("region_name")?.unwrap_or_default();
                    let az_name = b.string("az_name")?.unwrap_or_default();
                    let pod_az_name = b.string("pod_az_name")?.unwrap_or_default();
                    let dc_name = b.string("dc_name")?.unwrap_or_default();
                    b.finish()?;
                    if region_name.trim().is_empty() {
                        return Err(DomainError::new(
                            crate::error::ErrorClass::Unprocessable,
                            "InvalidInput",
                            "Invalid input for region_name. Reason: region_name is required.",
                        ));
                    }
                    let pod = Pod {
                        pod_id: uuid::Uuid::new_v4().to_string(),
                        region_name,
                        az_name,
                        pod_az_name,
                        dc_name,
                    };
                    let pod = app.store.create_pod(&pod).await?;
                    tracing::info!(pod = %pod.pod_id, region = %pod.region_name, az = %pod.az_name, "pod created");
                    Ok(respond(StatusCode::OK, &json!({"pod": render(&pod)})))
                }
                ([id], &Method::GET) => Ok(respond(
                    StatusCode::OK,
                    &json!({"pod": render(&app.store.get_pod(id).await?)}),
                )),
                ([id], &Method::DELETE) => {
                    app.store.delete_pod(id).await?;
                    Ok(no_content())
                }
                ([], _) | ([_], _) => Err(method_not_allowed(&ctx)),
                _ => Err(DomainError::no_route(&ctx.path)),
            }
        }
        ["v1.0", "jobs", rest @ ..] => super::jobs::handle(&app, &ctx, rest).await,
        ["v1.0", "routings", rest @ ..] => super::routings::handle(&app, &ctx, rest).await,
        ["v1.0", rest @ ..] => super::agents::handle(&app, &ctx, rest).await,
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}
