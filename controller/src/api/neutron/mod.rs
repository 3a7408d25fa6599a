//! The Neutron v2.0 API (networks, subnets, ports, extensions, version documents).

pub mod address_scopes;
pub mod agents;
pub mod extensions;
pub mod floatingips;
pub mod ip_availability;
pub mod networks;
pub mod ports;
pub mod query;
pub mod quotas;
pub mod routers;
pub mod security_groups;
pub mod subnetpools;
pub mod subnets;
pub mod tags;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{dispatch, json, method_not_allowed, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;

/// axum fallback for the Neutron listener.
pub async fn handle(State(app): State<Arc<App>>, req: Request) -> Response {
    dispatch("neutron", app, req, route).await
}

async fn route(app: Arc<App>, ctx: Ctx) -> Result<Response, DomainError> {
    let segs = ctx.segs();
    match segs.as_slice() {
        [] => match ctx.method {
            Method::GET => Ok(json(StatusCode::OK, &versions(&ctx))),
            _ => Err(method_not_allowed(&ctx)),
        },
        ["openapi"] => match ctx.method {
            Method::GET => Ok(json(StatusCode::OK, &crate::api::openapi::document())),
            _ => Err(method_not_allowed(&ctx)),
        },
        ["v2.0"] => match ctx.method {
            Method::GET => Ok(json(StatusCode::OK, &resources(&ctx))),
            _ => Err(method_not_allowed(&ctx)),
        },
        ["v2.0", rest @ ..] => {
            let who = ctx.identity(&app).await?;
            match rest {
                ["extensions"] | ["extensions", _] => extensions::handle(&ctx, rest),
                [coll @ ("networks" | "subnets" | "ports" | "routers" | "floatingips"
                | "subnetpools" | "security-groups"), id, "tags", tail @ ..] => {
                    let kind = crate::store::Tagged::from_collection(coll)
                        .ok_or_else(|| DomainError::no_route(&ctx.path))?;
                    tags::handle(&app, &ctx, &who, kind, id, tail).await
                }
                ["networks", ..] => networks::handle(&app, &ctx, &who, &rest[1..]).await,
                ["subnets", ..] => subnets::handle(&app, &ctx, &who, &rest[1..]).await,
                ["subnetpools", ..] => subnetpools::handle(&app, &ctx, &who, &rest[1..]).await,
                ["address-scopes", ..] => {
                    address_scopes::handle(&app, &ctx, &who, &rest[1..]).await
                }
                ["ports", ..] => ports::handle(&app, &ctx, &who, &rest[1..]).await,
                ["security-groups", ..] => {
                    security_groups::handle_groups(&app, &ctx, &who, &rest[1..]).await
                }
                ["security-group-rules", ..] => {
                    security_groups::handle_rules(&app, &ctx, &who, &rest[1..]).await
                }
                ["routers", ..] => routers::handle(&app, &ctx, &who, &rest[1..]).await,
                ["floatingips", ..] => floatingips::handle(&app, &ctx, &who, &rest[1..]).await,
                ["quotas", ..] => quotas::handle(&app, &ctx, &who, &rest[1..]).await,
                ["availability_zones"] => availability_zones(&app, &ctx).await,
                ["agents", ..] => agents::handle(&app, &ctx, &who, &rest[1..]).await,
                ["network-ip-availabilities", ..] => {
                    ip_availability::handle(&app, &ctx, &who, &rest[1..]).await
                }
                _ => Err(DomainError::no_route(&ctx.path)),
            }
        }
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}

/// `GET /v2.0/availability_zones`: every pod's AZ (and region) for networks and routers,
/// which is what `availability_zone_hints` may name.
async fn availability_zones(app: &App, ctx: &Ctx) -> Result<Response, DomainError> {
    if ctx.method != Method::GET {
        return Err(method_not_allowed(ctx));
    }
    let q = query::ListQuery::parse(&ctx.query, &["name", "resource", "state"])?;
    let mut names: Vec<String> = Vec::new();
    for p in app.store.list_pods().await? {
        for n in [p.az_name, p.region_name] {
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
    }
    let mut items = Vec::new();
    for n in &names {
        for r in ["network", "router"] {
            items.push(
                json!({"name": n, "resource": r, "state": "available", "id": format!("{n}/{r}")}),
            );
        }
    }
    let (items, _) = q.apply(items, &ctx.base_url(), "availability_zones")?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut i| {
            if let Some(o) = i.as_object_mut() {
                o.remove("id");
            }
            i
        })
        .collect();
    Ok(json(StatusCode::OK, &json!({"availability_zones": items})))
}

fn versions(ctx: &Ctx) -> Value {
    json!({"versions": [{
        "id": "v2.0",
        "status": "CURRENT",
        "links": [{"href": format!("{}/v2.0/", ctx.base_url()), "rel": "self"}]
    }]})
}

fn resources(ctx: &Ctx) -> Value {
    let base = ctx.base_url();
    let r = |name: &str, coll: &str| json!({"name": name, "collection": coll, "links": [{"href": format!("{base}/v2.0/{coll}"), "rel": "self"}]});
    json!({"resources": [r("network", "networks"), r("subnet", "subnets"), r("port", "ports"), r("router", "routers"), r("floatingip", "floatingips"), r("subnetpool", "subnetpools"), r("address_scope", "address-scopes"), r("security_group", "security-groups"), r("security_group_rule", "security-group-rules")]})
}

/// Which object of a collection, and what to do.
pub(crate) enum Op<'a> {
    List,
    Create,
    Show(&'a str),
    Update(&'a str),
    Delete(&'a str),
}

/// Map method + remaining segments to an [`Op`].
pub(crate) fn op<'a>(ctx: &Ctx, rest: &[&'a str]) -> Result<Op<'a>, DomainError> {
    match (rest, &ctx.method) {
        ([], &Method::GET) => Ok(Op::List),
        ([], &Method::POST) => Ok(Op::Create),
        ([id], &Method::GET) => Ok(Op::Show(id)),
        ([id], &Method::PUT) => Ok(Op::Update(id)),
        ([id], &Method::DELETE) => Ok(Op::Delete(id)),
        ([], _) | ([_], _) => Err(method_not_allowed(ctx)),
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}

/// Attribute readers over a request body's map: each removes the key it reads, so what is
/// left at the end is unknown ([`Body::finish`] refuses it, naming the keys).
pub(crate) struct Body {
    map: Map<String, Value>,
}

impl Body {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        Body { map }
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn peek(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    pub(crate) fn raw(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    pub(crate) fn string(&mut self, key: &str) -> Result<Option<String>, DomainError> {
        match self.map.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if s.chars().count() > 255 {
                    let head: String = s.chars().take(16).collect();
                    return Err(DomainError::invalid_input(
                        key,
                        format!("'{head}...' exceeds maximum length of 255"),
                    ));
                }
                Ok(Some(s))
            }
            Some(other) => Err(DomainError::invalid_input(
                key,
                format!("{other} is not a valid string"),
            )),
        }
    }

    /// Neutron's `convert_to_boolean`: true/false, "true"/"false" (any case), 0/1.
    pub(crate) fn boolean(&mut self, key: &str) -> Result<Option<bool>, DomainError> {
        match self.map.remove(key) {
            None => Ok(None),
            Some(v) => to_bool(&v).map(Some).ok_or_else(|| {
                DomainError::invalid_input(key, format!("'{v}' is not a valid boolean value"))
            }),
        }
    }

    pub(crate) fn int(&mut self, key: &str) -> Result<Option<i64>, DomainError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            Some(Value::String(s)) if s.parse::<i64>().is_ok() => Ok(s.parse().ok()),
            Some(other) => Err(DomainError::invalid_input(
                key,
                format!("'{other}' is not an integer"),
            )),
        }
    }

    pub(crate) fn string_list(&mut self, key: &str) -> Result<Option<Vec<String>>, DomainError> {
        match self.map.remove(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(DomainError::invalid_input(
                        key,
                        format!("'{other}' is not a string"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(DomainError::invalid_input(
                key,
                format!("'{other}' is not a list"),
            )),
        }
    }

    /// A key that may only be null/absent (attributes of extensions we do not implement).
    pub(crate) fn null_only(&mut self, key: &str) -> Result<(), DomainError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(()),
            Some(v) => Err(DomainError::invalid_input(
                key,
                format!("'{v}' is not supported; only null is accepted"),
            )),
        }
    }

    /// The owner of a new resource: `project_id`/`tenant_id` (must agree); only admins may
    /// name another project.
    pub(crate) fn owner(&mut self, who: &Identity, what: &str) -> Result<String, DomainError> {
        let p = self.string("project_id")?;
        let t = self.string("tenant_id")?;
        let owner = match (p, t) {
            (Some(p), Some(t)) if p != t => {
                return Err(DomainError::invalid_input(
                    "tenant_id",
                    format!("'{t}' differs from project_id '{p}'"),
                ))
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => who.project_id.clone(),
        };
        if owner.is_empty() {
            return Err(DomainError::invalid_input(
                "project_id",
                "must not be empty",
            ));
        }
        // Naming another project is the policy's `create_<what>:project_id`, judged by the
        // resource's service.
        let _ = what;
        Ok(owner)
    }

    /// Refuse what is left (unknown or read-only attributes).
    pub(crate) fn finish(self) -> Result<(), DomainError> {
        if self.map.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = self.map.keys().map(String::as_str).collect();
        Err(DomainError::bad_request(format!(
            "Unrecognized attribute(s) '{}'",
            keys.join(", ")
        )))
    }
}

/// Neutron's boolean conversion.
pub(crate) fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) if n.as_i64() == Some(0) => Some(false),
        Value::Number(n) if n.as_i64() == Some(1) => Some(true),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Refuse a path id that is not a UUID with a 404 naming it (Neutron answers 404 for any
/// unknown id, and the CLI then looks the name up with `?name=`).
pub(crate) fn check_id(
    id: &str,
    what: &'static str,
    kind: &'static str,
) -> Result<(), DomainError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(DomainError::not_found(what, kind, id));
    }
    Ok(())
}

/// `If-Match: revision_number=N` (Neutron's revision-if-match extension), when sent.
pub(crate) fn if_match(ctx: &Ctx) -> Result<Option<i64>, DomainError> {
    let Some(v) = ctx.headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim();
    text.strip_prefix("revision_number=")
        .and_then(|n| n.trim().parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            DomainError::bad_request(format!(
                "If-Match must be 'revision_number=N', got '{}'",
                text.escape_debug()
            ))
        })
}

/// Validate a UUID given in a body field.
pub(crate) fn uuid_field(field: &str, v: &str) -> Result<String, DomainError> {
    uuid::Uuid::parse_str(v)
        .map(|u| u.to_string())
        .map_err(|_| DomainError::invalid_input(field, format!("'{v}' is not a valid UUID")))
}
