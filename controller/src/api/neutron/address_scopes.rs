//! `/v2.0/address-scopes` (the collection's JSON key is `address_scopes`, as Neutron's).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::query::ListQuery;
use super::{check_id, op, Body, Op};
use crate::api::{json as respond, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::service::address_scopes;
use crate::store::AddressScope;

/// Attributes of an address scope (filterable and sortable).
pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "tenant_id",
    "project_id",
    "shared",
    "ip_version",
];

/// An address scope as Neutron shows it (no description, timestamps or revision: address
/// scopes have no standard attributes in Neutron).
pub fn render(a: &AddressScope) -> Value {
    json!({
        "id": a.id, "name": a.name, "tenant_id": a.project_id, "project_id": a.project_id,
        "shared": a.shared, "ip_version": a.ip_version,
    })
}

fn check(id: &str) -> Result<(), DomainError> {
    check_id(id, "Address scope", "AddressScopeNotFound")
}

pub(crate) async fn handle(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    rest: &[&str],
) -> Result<Response, DomainError> {
    match op(ctx, rest)? {
        Op::List => {
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let items = address_scopes::list(app, who)
                .await?
                .iter()
                .map(render)
                .collect();
            // Links name the URL's collection, the body Neutron's key.
            let (items, links) = q.apply(items, &ctx.base_url(), "address-scopes")?;
            let mut body = Map::new();
            body.insert("address_scopes".into(), Value::Array(items));
            if let Some(l) = links {
                body.insert("address_scopes_links".into(), Value::Array(l));
            }
            Ok(respond(StatusCode::OK, &Value::Object(body)))
        }
        Op::Show(id) => {
            check(id)?;
            let a = address_scopes::load_visible(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(&a), "address_scope"),
            ))
        }
        Op::Create => {
            let mut b = Body::new(ctx.resource_body("address_scope")?);
            let project_id = b.owner(who, "address_scope")?;
            let name = b.string("name")?.unwrap_or_default();
            let shared = b.boolean("shared")?.unwrap_or(false);
            let ip_version =
                match b.int("ip_version")? {
                    Some(v @ (4 | 6)) => v,
                    Some(v) => {
                        return Err(DomainError::invalid_input(
                            "ip_version",
                            format!("{v} is not in [4, 6]"),
                        ))
                    }
                    None => return Err(DomainError::bad_request(
                        "Failed to parse request. Required attribute 'ip_version' not specified",
                    )),
                };
            b.finish()?;
            let a = AddressScope {
                id: uuid::Uuid::new_v4().to_string(),
                project_id,
                name,
                ip_version,
                shared,
                revision_number: 1,
            };
            let a = address_scopes::create(app, who, &a).await?;
            Ok(respond(
                StatusCode::CREATED,
                &json!({"address_scope": render(&a)}),
            ))
        }
        Op::Update(id) => {
            check(id)?;
            let mut b = Body::new(ctx.resource_body("address_scope")?);
            let u = address_scopes::Update {
                name: b.string("name")?,
                shared: b.boolean("shared")?,
            };
            for ro in ["id", "ip_version", "project_id", "tenant_id"] {
                if b.has(ro) {
                    return Err(DomainError::bad_request(format!(
                        "Cannot update read-only attribute {ro}"
                    )));
                }
            }
            b.finish()?;
            let a = address_scopes::update(app, who, id, &u).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"address_scope": render(&a)}),
            ))
        }
        Op::Delete(id) => {
            check(id)?;
            address_scopes::delete(app, who, id).await?;
            Ok(no_content())
        }
    }
}
