//! `/v2.0/subnetpools`, with `add_prefixes` / `remove_prefixes` (`subnetpool-prefix-ops`);
//! their tags are served by [`super::tags`] (`/v2.0/subnetpools/{id}/tags`).

use axum::http::{Method, StatusCode};
use axum::response::Response;
use ipnet::IpNet;
use serde_json::{json, Value};

use super::query::ListQuery;
use super::{check_id, op, uuid_field, Body, Op};
use crate::api::{json as respond, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::service::subnetpools::{self, Bounds, Update};
use crate::store::{SubnetPool, Tagged};

/// Attributes of a subnet pool (filterable and sortable).
pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "tenant_id",
    "project_id",
    "prefixes",
    "default_prefixlen",
    "min_prefixlen",
    "max_prefixlen",
    "default_quota",
    "is_default",
    "shared",
    "address_scope_id",
    "ip_version",
    "description",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];

/// A subnet pool as Neutron shows it (the prefix lengths as strings, as Neutron renders
/// them), with its tags.
pub fn render(p: &SubnetPool, tags: &[String]) -> Value {
    json!({
        "id": p.id, "name": p.name, "tenant_id": p.project_id, "project_id": p.project_id,
        "prefixes": p.prefixes.iter().map(IpNet::to_string).collect::<Vec<_>>(),
        "default_prefixlen": p.default_prefixlen.to_string(),
        "min_prefixlen": p.min_prefixlen.to_string(),
        "max_prefixlen": p.max_prefixlen.to_string(),
        "default_quota": p.default_quota, "is_default": p.is_default, "shared": p.shared,
        "address_scope_id": p.address_scope_id, "ip_version": p.ip_version,
        "description": p.description, "tags": tags,
        "created_at": p.created_at, "updated_at": p.updated_at,
        "revision_number": p.revision_number,
    })
}

fn check(id: &str) -> Result<(), DomainError> {
    check_id(id, "Subnet pool", "SubnetPoolNotFound")
}

/// A list of CIDRs (`prefixes`): Neutron's `type:subnet_list` (no duplicates).
fn prefix_list(field: &str, v: Value) -> Result<Vec<IpNet>, DomainError> {
    let Value::Array(items) = v else {
        return Err(DomainError::invalid_input(
            field,
            format!("'{v}' is not a list"),
        ));
    };
    let mut out: Vec<IpNet> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for it in &items {
        let Some(text) = it.as_str() else {
            return Err(DomainError::invalid_input(
                field,
                format!("'{it}' is not a valid IP subnet"),
            ));
        };
        if seen.contains(&text) {
            return Err(DomainError::invalid_input(
                field,
                format!("Duplicate items in the list: '{text}'"),
            ));
        }
        seen.push(text);
        let net: IpNet = text.parse().map_err(|_| {
            DomainError::invalid_input(field, format!("'{text}' is not a valid IP subnet"))
        })?;
        out.push(net);
    }
    Ok(out)
}

/// A prefix length: a non-negative integer (or its string).
fn prefixlen(b: &mut Body, key: &str) -> Result<Option<i64>, DomainError> {
    match b.int(key)? {
        Some(n) if n < 0 => Err(DomainError::invalid_input(
            key,
            format!("'{n}' should be non-negative"),
        )),
        other => Ok(other),
    }
}

/// `default_quota`: a non-negative integer, or null (no quota).
fn quota(b: &mut Body) -> Result<Option<Option<i64>>, DomainError> {
    if !b.has("default_quota") {
        return Ok(None);
    }
    match b.int("default_quota")? {
        Some(n) if n < 0 => Err(DomainError::invalid_input(
            "default_quota",
            format!("'{n}' should be non-negative"),
        )),
        other => Ok(Some(other)),
    }
}

/// `address_scope_id`: a UUID, or null (none).
fn scope(b: &mut Body) -> Result<Option<Option<String>>, DomainError> {
    match b.raw("address_scope_id") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(uuid_field("address_scope_id", &s)?))),
        Some(v) => Err(DomainError::invalid_input(
            "address_scope_id",
            format!("'{v}' is not a valid UUID"),
        )),
    }
}

/// `name`: Neutron's `not_empty_name_string`.
fn name(b: &mut Body) -> Result<Option<String>, DomainError> {
    let n = b.string("name")?;
    if let Some(n) = &n {
        if n.trim().is_empty() {
            return Err(DomainError::invalid_input(
                "name",
                format!("'{n}' Blank strings are not permitted"),
            ));
        }
    }
    Ok(n)
}

fn bounds(b: &mut Body) -> Result<Bounds, DomainError> {
    Ok(Bounds {
        min: prefixlen(b, "min_prefixlen")?,
        max: prefixlen(b, "max_prefixlen")?,
        default: prefixlen(b, "default_prefixlen")?,
    })
}

fn required(attr: &str) -> DomainError {
    DomainError::bad_request(format!(
        "Failed to parse request. Required attribute '{attr}' not specified"
    ))
}

pub(crate) async fn handle(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    rest: &[&str],
) -> Result<Response, DomainError> {
    if let [id, action] = rest {
        if !matches!(*action, "add_prefixes" | "remove_prefixes") {
            return Err(DomainError::no_route(&ctx.path));
        }
        if ctx.method != Method::PUT {
            return Err(crate::api::method_not_allowed(ctx));
        }
        check(id)?;
        let prefixes = prefix_ops_body(ctx)?;
        let p = if *action == "add_prefixes" {
            subnetpools::add_prefixes(app, who, id, &prefixes).await?
        } else {
            subnetpools::remove_prefixes(app, who, id, &prefixes).await?
        };
        let list: Vec<String> = p.prefixes.iter().map(IpNet::to_string).collect();
        return Ok(respond(StatusCode::OK, &json!({"prefixes": list})));
    }
    match op(ctx, rest)? {
        Op::List => {
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let tags = super::tags::all(app, Tagged::SubnetPool).await?;
            let items = subnetpools::list(app, who)
                .await?
                .iter()
                .map(|p| render(p, tags.get(&p.id)))
                .collect();
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "subnetpools")?,
            ))
        }
        Op::Show(id) => {
            check(id)?;
            let p = subnetpools::load_visible(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let tags = super::tags::of(app, Tagged::SubnetPool, &p.id).await?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(&p, &tags), "subnetpool"),
            ))
        }
        Op::Create => {
            let mut b = Body::new(ctx.resource_body("subnetpool")?);
            let project_id = b.owner(who, "subnetpool")?;
            let name = name(&mut b)?.ok_or_else(|| required("name"))?;
            let prefixes = match b.raw("prefixes") {
                Some(v) => prefix_list("prefixes", v)?,
                None => return Err(required("prefixes")),
            };
            let bounds = bounds(&mut b)?;
            let default_quota = quota(&mut b)?.flatten();
            let is_default = b.boolean("is_default")?.unwrap_or(false);
            let shared = b.boolean("shared")?.unwrap_or(false);
            let address_scope_id = scope(&mut b)?.flatten();
            let description = b.string("description")?.unwrap_or_default();
            let tags = super::tags::create_tags(&mut b)?.unwrap_or_default();
            b.finish()?;
            let p = SubnetPool {
                id: uuid::Uuid::new_v4().to_string(),
                project_id,
                name,
                description,
                ip_version: 0,
                prefixes,
                default_prefixlen: 0,
                min_prefixlen: 0,
                max_prefixlen: 0,
                default_quota,
                is_default,
                shared,
                address_scope_id,
                created_at: String::new(),
                updated_at: String::new(),
                revision_number: 1,
            };
            let p = subnetpools::create(app, who, p, bounds, &tags).await?;
            let tags = super::tags::of(app, Tagged::SubnetPool, &p.id).await?;
            Ok(respond(
                StatusCode::CREATED,
                &json!({"subnetpool": render(&p, &tags)}),
            ))
        }
        Op::Update(id) => {
            check(id)?;
            let mut b = Body::new(ctx.resource_body("subnetpool")?);
            let u = Update {
                name: name(&mut b)?,
                description: b.string("description")?,
                prefixes: match b.raw("prefixes") {
                    Some(v) => Some(prefix_list("prefixes", v)?),
                    None => None,
                },
                bounds: bounds(&mut b)?,
                default_quota: quota(&mut b)?,
                is_default: b.boolean("is_default")?,
                address_scope_id: scope(&mut b)?,
            };
            for ro in ["id", "ip_version", "shared", "project_id", "tenant_id"] {
                if b.has(ro) {
                    return Err(DomainError::bad_request(format!(
                        "Cannot update read-only attribute {ro}"
                    )));
                }
            }
            super::tags::refuse_in_update(&b, "subnetpools")?;
            b.finish()?;
            let p = subnetpools::update(app, who, id, super::if_match(ctx)?, &u).await?;
            let tags = super::tags::of(app, Tagged::SubnetPool, &p.id).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"subnetpool": render(&p, &tags)}),
            ))
        }
        Op::Delete(id) => {
            check(id)?;
            subnetpools::delete(app, who, id).await?;
            Ok(no_content())
        }
    }
}

/// The body of `add_prefixes` / `remove_prefixes`: `{"prefixes": [CIDR, ...]}`, not empty.
fn prefix_ops_body(ctx: &Ctx) -> Result<Vec<IpNet>, DomainError> {
    let invalid = || DomainError::bad_request("Request body contains invalid data");
    let v: Value = serde_json::from_slice(&ctx.body).map_err(|_| invalid())?;
    let Value::Object(m) = v else {
        return Err(invalid());
    };
    let mut b = Body::new(m);
    let prefixes = match b.raw("prefixes") {
        Some(Value::Array(a)) if !a.is_empty() => prefix_list("prefixes", Value::Array(a))?,
        _ => return Err(invalid()),
    };
    b.finish()?;
    Ok(prefixes)
}
