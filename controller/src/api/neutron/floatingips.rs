//! `/v2.0/floatingips`: an address of an external network (held by a `network:floatingip`
//! port, so IPAM keeps it unique), associated with a port through `port_id`. Only the owner
//! project's router with a gateway on that network and an interface on the port's subnet may
//! serve it (the planner's rule).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::query::ListQuery;
use super::{check_id, op, Body, Op};
use crate::api::{json as respond, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::realize::{self, Intent};
use crate::service::floatingips;
use crate::store::l3::FloatingIp;
use crate::store::Tagged;

/// Attributes of a floating IP (filterable and sortable).
pub const ATTRS: &[&str] = &[
    "id",
    "tenant_id",
    "project_id",
    "floating_network_id",
    "floating_ip_address",
    "fixed_ip_address",
    "port_id",
    "router_id",
    "status",
    "description",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
    "port_details",
];

/// A floating IP as Neutron shows it, with its tags.
pub fn render(f: &FloatingIp, intent: &Intent, tags: &[String]) -> Value {
    let router = f.port_id.as_ref().and_then(|pid| {
        intent
            .ports
            .get(pid)
            .and_then(|p| realize::serving_router(intent, &f.floating_network_id, p))
    });
    // `fip-port-details`: the associated port as Neutron summarises it.
    let port_details = f
        .port_id
        .as_ref()
        .and_then(|pid| intent.ports.get(pid))
        .map(|p| {
            json!({"name": p.name, "network_id": p.network_id, "mac_address": p.mac_address,
                   "admin_state_up": p.admin_state_up, "status": p.status,
                   "device_id": p.device_id, "device_owner": p.device_owner})
        });
    let status = if f.port_id.is_some() && router.is_some() {
        "ACTIVE"
    } else {
        "DOWN"
    };
    json!({
        "id": f.id, "tenant_id": f.project_id, "project_id": f.project_id,
        "floating_network_id": f.floating_network_id, "floating_ip_address": f.floating_ip_address,
        "fixed_ip_address": f.fixed_ip_address, "port_id": f.port_id, "router_id": router,
        "status": status, "description": f.description, "tags": tags,
        "created_at": f.created_at, "updated_at": f.updated_at, "revision_number": f.revision_number,
        "port_details": port_details,
    })
}

fn optional_string(b: &mut Body, key: &str) -> Result<Option<Option<String>>, DomainError> {
    match b.raw(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s))),
        Some(_) => Err(DomainError::invalid_input(key, "must be a string or null")),
    }
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
            let project = (!who.is_admin()).then(|| who.project_id.clone());
            let intent = app.realizer.intent_read(app).await?;
            let tags = super::tags::all(app, Tagged::FloatingIp).await?;
            let items = app
                .store
                .list_floatingips(project.as_deref())
                .await?
                .iter()
                .map(|f| render(f, &intent, tags.get(&f.id)))
                .collect();
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "floatingips")?,
            ))
        }
        Op::Show(id) => {
            check_id(id, "Floating IP", "FloatingIPNotFound")?;
            let f = floatingips::load_own(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let intent = app.realizer.intent_read(app).await?;
            let tags = super::tags::of(app, Tagged::FloatingIp, &f.id).await?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(&f, &intent, &tags), "floatingip"),
            ))
        }
        Op::Create => {
            let mut b = Body::new(ctx.resource_body("floatingip")?);
            let project_id = b.owner(who, "floatingip")?;
            let net_id = b
                .string("floating_network_id")?
                .ok_or_else(|| DomainError::bad_request("floating_network_id is required"))?;
            let network_id = super::uuid_field("floating_network_id", &net_id)?;
            let address = match b.string("floating_ip_address")? {
                None => None,
                Some(a) => Some(a.parse().map_err(|_| {
                    DomainError::invalid_input(
                        "floating_ip_address",
                        format!("'{a}' is not an IP address"),
                    )
                })?),
            };
            let subnet_id = b.string("subnet_id")?;
            let port_id = optional_string(&mut b, "port_id")?.flatten();
            let fixed_ip = optional_string(&mut b, "fixed_ip_address")?.flatten();
            let description = b.string("description")?.unwrap_or_default();
            let tags = super::tags::create_tags(&mut b)?.unwrap_or_default();
            b.null_only("qos_policy_id")?;
            // dns-integration is not served: only its neutral values are accepted.
            for k in ["dns_domain", "dns_name"] {
                if let Some(v) = b.string(k)? {
                    if !v.is_empty() {
                        return Err(DomainError::invalid_input(
                            k,
                            "DNS integration is not supported; only '' is accepted",
                        ));
                    }
                }
            }
            b.finish()?;
            let (f, intent) = floatingips::create(
                app,
                who,
                floatingips::Create {
                    project_id,
                    network_id,
                    address,
                    subnet_id,
                    port_id,
                    fixed_ip,
                    description,
                    tags,
                },
            )
            .await?;
            let tags = super::tags::of(app, Tagged::FloatingIp, &f.id).await?;
            Ok(respond(
                StatusCode::CREATED,
                &json!({"floatingip": render(&f, &intent, &tags)}),
            ))
        }
        Op::Update(id) => {
            check_id(id, "Floating IP", "FloatingIPNotFound")?;
            let mut b = Body::new(ctx.resource_body("floatingip")?);
            let u = floatingips::Update {
                port: optional_string(&mut b, "port_id")?,
                fixed_ip: optional_string(&mut b, "fixed_ip_address")?.flatten(),
                description: b.string("description")?,
            };
            super::tags::refuse_in_update(&b, "floatingips")?;
            b.finish()?;
            let (f, intent) = floatingips::update(app, who, id, &u, super::if_match(ctx)?).await?;
            let tags = super::tags::of(app, Tagged::FloatingIp, &f.id).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"floatingip": render(&f, &intent, &tags)}),
            ))
        }
        Op::Delete(id) => {
            check_id(id, "Floating IP", "FloatingIPNotFound")?;
            floatingips::delete(app, who, id).await?;
            Ok(no_content())
        }
    }
}
