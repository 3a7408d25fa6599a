//! `/v2.0/security-groups` and `/v2.0/security-group-rules` (JSON keys `security_groups`,
//! `security_group_rules`, as Neutron's): groups show their rules embedded.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::query::ListQuery;
use super::{check_id, op, uuid_field, Body, Op};
use crate::api::{json as respond, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::service::security_groups::{self as sg, RuleRequest};
use crate::store::{NewSecurityGroup, SecurityGroup, SecurityGroupRule, Tagged};

/// Attributes of a group (filterable and sortable).
pub const GROUP_ATTRS: &[&str] = &[
    "id",
    "name",
    "description",
    "tenant_id",
    "project_id",
    "stateful",
    "shared",
    "security_group_rules",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];

/// Attributes of a rule.
pub const RULE_ATTRS: &[&str] = &[
    "id",
    "tenant_id",
    "project_id",
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "remote_address_group_id",
    "normalized_cidr",
    "description",
    "belongs_to_default_sg",
    "created_at",
    "updated_at",
    "revision_number",
];

/// The network of a rule's prefix (`10.1.0.0/16` for `10.1.2.3/16`).
fn normalized_cidr(r: &SecurityGroupRule) -> Option<String> {
    let p: ipnet::IpNet = r.remote_ip_prefix.as_deref()?.parse().ok()?;
    Some(p.trunc().to_string())
}

/// A rule as Neutron shows it.
pub fn render_rule(r: &SecurityGroupRule, default_group: bool) -> Value {
    json!({
        "id": r.id, "tenant_id": r.project_id, "project_id": r.project_id,
        "security_group_id": r.security_group_id, "direction": r.direction,
        "ethertype": r.ethertype, "protocol": r.protocol,
        "port_range_min": r.port_range_min, "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix, "remote_group_id": r.remote_group_id,
        "remote_address_group_id": null, "normalized_cidr": normalized_cidr(r),
        "description": r.description, "belongs_to_default_sg": default_group,
        "created_at": r.created_at, "updated_at": r.updated_at,
        "revision_number": r.revision_number,
    })
}

/// A group as Neutron shows it, rules embedded.
pub fn render_group(g: &SecurityGroup, tags: &[String]) -> Value {
    json!({
        "id": g.id, "name": g.name, "description": g.description,
        "tenant_id": g.project_id, "project_id": g.project_id,
        "stateful": g.stateful, "shared": false, "tags": tags,
        "security_group_rules": g.rules.iter().map(|r| render_rule(r, g.is_default)).collect::<Vec<_>>(),
        "created_at": g.created_at, "updated_at": g.updated_at,
        "revision_number": g.revision_number,
    })
}

fn list_body(items: Vec<Value>, links: Option<Vec<Value>>, key: &str) -> Value {
    let mut body = Map::new();
    body.insert(key.into(), Value::Array(items));
    if let Some(l) = links {
        body.insert(format!("{key}_links"), Value::Array(l));
    }
    Value::Object(body)
}

fn check_group(id: &str) -> Result<(), DomainError> {
    check_id(id, "Security group", "SecurityGroupNotFound")
}

fn check_rule(id: &str) -> Result<(), DomainError> {
    check_id(id, "Security group rule", "SecurityGroupRuleNotFound")
}

/// `/v2.0/security-groups[/{id}]`.
pub(crate) async fn handle_groups(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    rest: &[&str],
) -> Result<Response, DomainError> {
    match op(ctx, rest)? {
        Op::List => {
            let q = ListQuery::parse(&ctx.query, GROUP_ATTRS)?;
            let tags = super::tags::all(app, Tagged::SecurityGroup).await?;
            let items = sg::list(app, who)
                .await?
                .iter()
                .map(|g| render_group(g, tags.get(&g.id)))
                .collect();
            let (items, links) = q.apply(items, &ctx.base_url(), "security-groups")?;
            Ok(respond(
                StatusCode::OK,
                &list_body(items, links, "security_groups"),
            ))
        }
        Op::Show(id) => {
            check_group(id)?;
            let g = sg::load_visible(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, GROUP_ATTRS)?;
            let tags = super::tags::of(app, Tagged::SecurityGroup, &g.id).await?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render_group(&g, &tags), "security_group"),
            ))
        }
        Op::Create => {
            let mut b = Body::new(ctx.resource_body("security_group")?);
            let project_id = b.owner(who, "security_group")?;
            let name = b.string("name")?.unwrap_or_default();
            let description = b.string("description")?.unwrap_or_default();
            if let Some(false) = b.boolean("stateful")? {
                return Err(DomainError::invalid_input(
                    "stateful",
                    "stateless security groups are not supported; crosspod enforces with conntrack",
                ));
            }
            if let Some(t) = b.raw("tags") {
                if t != json!([]) && t != Value::Null {
                    return Err(DomainError::invalid_input(
                        "tags",
                        "give a security group its tags after creating it (PUT /v2.0/security-groups/{id}/tags)",
                    ));
                }
            }
            b.finish()?;
            let g = NewSecurityGroup {
                id: uuid::Uuid::new_v4().to_string(),
                project_id,
                name,
                description,
            };
            let g = sg::create(app, who, &g).await?;
            Ok(respond(
                StatusCode::CREATED,
                &json!({"security_group": render_group(&g, &[])}),
            ))
        }
        Op::Update(id) => {
            check_group(id)?;
            let mut b = Body::new(ctx.resource_body("security_group")?);
            let u = sg::Update {
                name: b.string("name")?,
                description: b.string("description")?,
            };
            if let Some(false) = b.boolean("stateful")? {
                return Err(DomainError::invalid_input(
                    "stateful",
                    "stateless security groups are not supported",
                ));
            }
            for ro in ["id", "project_id", "tenant_id", "security_group_rules"] {
                if b.has(ro) {
                    return Err(DomainError::bad_request(format!(
                        "Cannot update read-only attribute {ro}"
                    )));
                }
            }
            super::tags::refuse_in_update(&b, "security-groups")?;
            b.finish()?;
            let g = sg::update(app, who, id, &u, super::if_match(ctx)?).await?;
            let tags = super::tags::of(app, Tagged::SecurityGroup, &g.id).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"security_group": render_group(&g, &tags)}),
            ))
        }
        Op::Delete(id) => {
            check_group(id)?;
            sg::delete(app, who, id).await?;
            Ok(no_content())
        }
    }
}

fn port_value(b: &mut Body, key: &str) -> Result<Option<i64>, DomainError> {
    match b.int(key) {
        Ok(v) => Ok(v),
        Err(_) => Err(DomainError::new(
            crate::error::ErrorClass::BadRequest,
            "SecurityGroupInvalidPortValue",
            format!("Invalid value for port {key}"),
        )),
    }
}

/// `/v2.0/security-group-rules[/{id}]` (rules cannot be updated, as in Neutron, except their
/// description, which crosspod does not offer).
pub(crate) async fn handle_rules(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    rest: &[&str],
) -> Result<Response, DomainError> {
    match op(ctx, rest)? {
        Op::List => {
            let q = ListQuery::parse(&ctx.query, RULE_ATTRS)?;
            let defaults: std::collections::BTreeSet<String> = sg::list(app, who)
                .await?
                .into_iter()
                .filter(|g| g.is_default)
                .map(|g| g.id)
                .collect();
            let items = sg::list_rules(app, who)
                .await?
                .iter()
                .map(|r| render_rule(r, defaults.contains(&r.security_group_id)))
                .collect();
            let (items, links) = q.apply(items, &ctx.base_url(), "security-group-rules")?;
            Ok(respond(
                StatusCode::OK,
                &list_body(items, links, "security_group_rules"),
            ))
        }
        Op::Show(id) => {
            check_rule(id)?;
            let r = sg::load_rule(app, who, id).await?;
            let default = app
                .store
                .get_security_group(&r.security_group_id)
                .await
                .map(|g| g.is_default)
                .unwrap_or(false);
            let q = ListQuery::parse(&ctx.query, RULE_ATTRS)?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render_rule(&r, default), "security_group_rule"),
            ))
        }
        Op::Create => {
            let mut b = Body::new(ctx.resource_body("security_group_rule")?);
            let owner = if b.has("project_id") || b.has("tenant_id") {
                Some(b.owner(who, "security_group_rule")?)
            } else {
                None
            };
            let Some(group) = b.string("security_group_id")? else {
                return Err(DomainError::bad_request(
                    "Failed to parse request. Required attribute 'security_group_id' not specified",
                ));
            };
            let Some(direction) = b.string("direction")? else {
                return Err(DomainError::bad_request(
                    "Failed to parse request. Required attribute 'direction' not specified",
                ));
            };
            let security_group_id = uuid_field("security_group_id", &group)?;
            let protocol = match b.raw("protocol") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(o) => {
                    return Err(DomainError::invalid_input(
                        "protocol",
                        format!("'{o}' is not a valid protocol"),
                    ))
                }
            };
            let remote_group_id = match b.string("remote_group_id")? {
                Some(r) => Some(uuid_field("remote_group_id", &r)?),
                None => None,
            };
            b.null_only("remote_address_group_id")?;
            let req = RuleRequest {
                project_id: owner,
                security_group_id,
                direction,
                ethertype: b.string("ethertype")?,
                protocol,
                port_range_min: port_value(&mut b, "port_range_min")?,
                port_range_max: port_value(&mut b, "port_range_max")?,
                remote_ip_prefix: match b.raw("remote_ip_prefix") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s),
                    Some(o) => {
                        return Err(DomainError::invalid_input(
                            "remote_ip_prefix",
                            format!("'{o}' is not a valid IP prefix"),
                        ))
                    }
                },
                remote_group_id,
                description: b.string("description")?.unwrap_or_default(),
            };
            b.finish()?;
            let r = sg::create_rule(app, who, &req).await?;
            let default = app
                .store
                .get_security_group(&r.security_group_id)
                .await
                .map(|g| g.is_default)
                .unwrap_or(false);
            Ok(respond(
                StatusCode::CREATED,
                &json!({"security_group_rule": render_rule(&r, default)}),
            ))
        }
        Op::Update(_) => Err(crate::api::method_not_allowed(ctx)),
        Op::Delete(id) => {
            check_rule(id)?;
            sg::delete_rule(app, who, id).await?;
            Ok(no_content())
        }
    }
}
