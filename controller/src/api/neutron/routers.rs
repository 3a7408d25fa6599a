//! `/v2.0/routers`, with `add_router_interface` / `remove_router_interface`, the external
//! gateway and user routes (extraroute). Interfaces and the gateway are real ports
//! (`network:router_interface` / `network:router_gateway`, device_id = the router); the
//! cross-pod rules are the planner's, checked on the intent with the change applied.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::query::ListQuery;
use super::{check_id, op, Body, Op};
use crate::api::{json as respond, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::realize::{self, Intent};
use crate::service::routers;
use crate::store::l3::{GatewayInfo, RouteEntry, Router};
use crate::store::{Port, Tagged};

/// Attributes of a router (filterable and sortable).
pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "tenant_id",
    "project_id",
    "admin_state_up",
    "status",
    "external_gateway_info",
    "routes",
    "availability_zone_hints",
    "availability_zones",
    "description",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];

/// A router as Neutron shows it, with its tags; `status` is ACTIVE once every node it
/// touches runs it. `intent` and `reports`, when the caller has them, save reading them per
/// router.
pub async fn render(
    app: &App,
    r: &Router,
    tags: &[String],
    intent: Option<&Intent>,
    reports: Option<&realize::Reports>,
) -> Result<Value, DomainError> {
    let read;
    let intent = match intent {
        Some(i) => i,
        None => {
            read = app.realizer.intent_read(app).await?;
            &*read
        }
    };
    let gateway = match &r.gateway {
        None => Value::Null,
        Some(g) => {
            let ips: Vec<Value> = intent
                .gateway_port(&r.id)
                .map(|p| {
                    p.fixed_ips
                        .iter()
                        .map(|f| json!({"subnet_id": f.subnet_id, "ip_address": f.ip_address.to_string()}))
                        .collect()
                })
                .unwrap_or_default();
            json!({"network_id": g.network_id, "enable_snat": g.enable_snat, "external_fixed_ips": ips})
        }
    };
    let realized = match reports {
        Some(rep) => realize::router_state(app, rep, Some(intent), &r.id),
        None => realize::router_state(
            app,
            &realize::Reports::load(app).await?,
            Some(intent),
            &r.id,
        ),
    };
    // As Neutron: ACTIVE once accepted; ERROR when it cannot be realized (an allocation or an
    // agent failed). Whether the nodes caught up is the realization barrier's to tell
    // (`/v1.0/routers/{id}/realized`, jobs), not the status's.
    let status = match realized {
        Ok(_) => "ACTIVE",
        Err(_) => "ERROR",
    };
    Ok(json!({
        "id": r.id, "name": r.name, "description": r.description,
        "tenant_id": r.project_id, "project_id": r.project_id,
        "admin_state_up": r.admin_state_up, "status": status,
        "external_gateway_info": gateway,
        "ha": false,
        "routes": r.routes.iter().map(|x| json!({"destination": x.destination, "nexthop": x.nexthop})).collect::<Vec<_>>(),
        "availability_zone_hints": r.az_hints, "availability_zones": r.az_hints,
        "tags": tags,
        "created_at": r.created_at, "updated_at": r.updated_at, "revision_number": r.revision_number,
    }))
}

async fn load_own(app: &App, who: &Identity, id: &str) -> Result<Router, DomainError> {
    check_id(id, "Router", "RouterNotFound")?;
    routers::load_own(app, who, id).await
}

fn parse_routes(v: Value) -> Result<Vec<RouteEntry>, DomainError> {
    let Value::Array(items) = v else {
        return Err(DomainError::invalid_input("routes", "must be a list"));
    };
    let mut out = Vec::new();
    for i in items {
        let d = i["destination"].as_str().unwrap_or_default();
        let n = i["nexthop"].as_str().unwrap_or_default();
        let dest: ipnet::IpNet = d.parse().map_err(|_| {
            DomainError::invalid_input("routes", format!("destination '{d}' is not a CIDR"))
        })?;
        let hop: std::net::IpAddr = n.parse().map_err(|_| {
            DomainError::invalid_input("routes", format!("nexthop '{n}' is not an IP address"))
        })?;
        if dest.addr().is_ipv4() != hop.is_ipv4() {
            return Err(DomainError::invalid_input(
                "routes",
                format!("destination {dest} and nexthop {hop} are of different IP versions"),
            ));
        }
        out.push(RouteEntry {
            destination: dest.trunc().to_string(),
            nexthop: hop.to_string(),
        });
    }
    Ok(out)
}

/// Parses `external_gateway_info`: `None` = not given, `Some(None)` = clear.
fn parse_gateway(v: Value) -> Result<Option<GatewayInfo>, DomainError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) if m.is_empty() => Ok(None),
        Value::Object(mut m) => {
            let network_id = match m.remove("network_id") {
                Some(Value::String(s)) => s,
                _ => {
                    return Err(DomainError::invalid_input(
                        "external_gateway_info",
                        "network_id is required",
                    ))
                }
            };
            let enable_snat = match m.remove("enable_snat") {
                None | Some(Value::Null) => true,
                Some(v) => super::to_bool(&v).ok_or_else(|| {
                    DomainError::invalid_input(
                        "external_gateway_info",
                        "enable_snat is not a boolean",
                    )
                })?,
            };
            let requested_ips = match m.remove("external_fixed_ips") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a,
                Some(_) => {
                    return Err(DomainError::invalid_input(
                        "external_gateway_info",
                        "external_fixed_ips must be a list",
                    ))
                }
            };
            if let Some(k) = m.keys().next() {
                return Err(DomainError::invalid_input(
                    "external_gateway_info",
                    format!("unknown key '{k}'"),
                ));
            }
            Ok(Some(GatewayInfo {
                network_id,
                enable_snat,
                requested_ips,
            }))
        }
        _ => Err(DomainError::invalid_input(
            "external_gateway_info",
            "must be an object",
        )),
    }
}

pub(crate) async fn handle(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    rest: &[&str],
) -> Result<Response, DomainError> {
    if let [id, action] = rest {
        if ctx.method != Method::PUT {
            return Err(crate::api::method_not_allowed(ctx));
        }
        return match *action {
            "add_router_interface" => add_interface(app, ctx, who, id).await,
            "remove_router_interface" => remove_interface(app, ctx, who, id).await,
            "add_extraroutes" | "remove_extraroutes" => {
                check_id(id, "Router", "RouterNotFound")?;
                let mut b = Body::new(ctx.resource_body("router")?);
                let routes = match b.raw("routes") {
                    Some(v) => parse_routes(v)?,
                    None => return Err(DomainError::invalid_input("routes", "routes is required")),
                };
                b.finish()?;
                let add = *action == "add_extraroutes";
                let r = routers::change_routes(app, who, id, &routes, add).await?;
                let tags = super::tags::of(app, Tagged::Router, &r.id).await?;
                let v = render(app, &r, &tags, None, None).await?;
                Ok(respond(StatusCode::OK, &json!({"router": v})))
            }
            _ => Err(DomainError::no_route(&ctx.path)),
        };
    }
    match op(ctx, rest)? {
        Op::List => {
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let project = (!who.is_admin()).then(|| who.project_id.clone());
            let intent = app.realizer.intent_read(app).await?;
            let reports = realize::Reports::load(app).await?;
            let tags = super::tags::all(app, Tagged::Router).await?;
            let mut items = Vec::new();
            for r in app.store.list_routers(project.as_deref()).await? {
                items.push(render(app, &r, tags.get(&r.id), Some(&intent), Some(&reports)).await?);
            }
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "routers")?,
            ))
        }
        Op::Show(id) => {
            let r = load_own(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let tags = super::tags::of(app, Tagged::Router, &r.id).await?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(app, &r, &tags, None, None).await?, "router"),
            ))
        }
        Op::Create => {
            let mut b = Body::new(ctx.resource_body("router")?);
            let project_id = b.owner(who, "router")?;
            let name = b.string("name")?.unwrap_or_default();
            let description = b.string("description")?.unwrap_or_default();
            let admin_state_up = b.boolean("admin_state_up")?.unwrap_or(true);
            let az_hints = b
                .string_list("availability_zone_hints")?
                .unwrap_or_default();
            let gateway = match b.raw("external_gateway_info") {
                None => None,
                Some(v) => parse_gateway(v)?,
            };
            let routes = match b.raw("routes") {
                None | Some(Value::Null) => Vec::new(),
                Some(v) => parse_routes(v)?,
            };
            for k in ["distributed", "ha"] {
                if let Some(v) = b.boolean(k)? {
                    if v {
                        return Err(DomainError::invalid_input(
                            k,
                            "crosspod routers are neither distributed (dvr) nor HA (a router has one gateway instance)",
                        ));
                    }
                }
            }
            b.null_only("flavor_id")?;
            let tags = super::tags::create_tags(&mut b)?.unwrap_or_default();
            b.finish()?;
            let r = routers::create(
                app,
                who,
                routers::Create {
                    project_id,
                    name,
                    description,
                    admin_state_up,
                    az_hints,
                    gateway,
                    routes,
                    tags,
                },
            )
            .await?;
            let tags = super::tags::of(app, Tagged::Router, &r.id).await?;
            let v = render(app, &r, &tags, None, None).await?;
            Ok(respond(StatusCode::CREATED, &json!({"router": v})))
        }
        Op::Update(id) => {
            check_id(id, "Router", "RouterNotFound")?;
            let mut b = Body::new(ctx.resource_body("router")?);
            let u = routers::Update {
                name: b.string("name")?,
                description: b.string("description")?,
                admin_state_up: b.boolean("admin_state_up")?,
                gateway: b
                    .raw("external_gateway_info")
                    .map(parse_gateway)
                    .transpose()?,
                routes: b
                    .raw("routes")
                    .map(|v| match v {
                        Value::Null => Ok(Vec::new()),
                        v => parse_routes(v),
                    })
                    .transpose()?,
            };
            if b.has("availability_zone_hints") {
                return Err(DomainError::bad_request(
                    "Cannot update read-only attribute availability_zone_hints",
                ));
            }
            super::tags::refuse_in_update(&b, "routers")?;
            b.finish()?;
            let r = routers::update(app, who, id, &u, super::if_match(ctx)?).await?;
            let tags = super::tags::of(app, Tagged::Router, &r.id).await?;
            let v = render(app, &r, &tags, None, None).await?;
            Ok(respond(StatusCode::OK, &json!({"router": v})))
        }
        Op::Delete(id) => {
            check_id(id, "Router", "RouterNotFound")?;
            routers::delete(app, who, id).await?;
            Ok(no_content())
        }
    }
}

fn interface_info(r: &Router, p: &Port) -> Value {
    let subnet_ids: Vec<&str> = p.fixed_ips.iter().map(|f| f.subnet_id.as_str()).collect();
    json!({
        "id": r.id, "tenant_id": r.project_id, "project_id": r.project_id,
        "port_id": p.id, "network_id": p.network_id,
        "subnet_id": subnet_ids.first().copied().unwrap_or_default(), "subnet_ids": subnet_ids,
    })
}

fn interface_body(ctx: &Ctx) -> Result<(Option<String>, Option<String>), DomainError> {
    let v: Value = serde_json::from_slice(&ctx.body)
        .map_err(|e| DomainError::bad_request(format!("Malformed JSON in request body: {e}")))?;
    let Value::Object(m) = v else {
        return Err(DomainError::bad_request(
            "body must be {\"subnet_id\": ...} or {\"port_id\": ...}",
        ));
    };
    let get = |m: &Map<String, Value>, k: &str| -> Result<Option<String>, DomainError> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => super::uuid_field(k, s).map(Some),
            Some(_) => Err(DomainError::invalid_input(k, "must be a string")),
        }
    };
    let subnet = get(&m, "subnet_id")?;
    let port = get(&m, "port_id")?;
    match (&subnet, &port) {
        (None, None) => Err(DomainError::bad_request(
            "Bad router request: either subnet_id or port_id must be specified",
        )),
        (Some(_), Some(_)) => Err(DomainError::bad_request(
            "Bad router request: cannot specify both subnet_id and port_id",
        )),
        _ => Ok((subnet, port)),
    }
}

fn interface_ref(ctx: &Ctx) -> Result<routers::InterfaceRef, DomainError> {
    Ok(match interface_body(ctx)? {
        (Some(sid), _) => routers::InterfaceRef::Subnet(sid),
        (None, Some(pid)) => routers::InterfaceRef::Port(pid),
        (None, None) => {
            return Err(DomainError::bad_request(
                "Bad router request: either subnet_id or port_id must be specified",
            ))
        }
    })
}

async fn add_interface(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    id: &str,
) -> Result<Response, DomainError> {
    check_id(id, "Router", "RouterNotFound")?;
    let i = routers::add_interface(app, who, id, interface_ref(ctx)?).await?;
    Ok(respond(StatusCode::OK, &interface_info(&i.router, &i.port)))
}

async fn remove_interface(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    id: &str,
) -> Result<Response, DomainError> {
    check_id(id, "Router", "RouterNotFound")?;
    let i = routers::remove_interface(app, who, id, interface_ref(ctx)?).await?;
    Ok(respond(StatusCode::OK, &interface_info(&i.router, &i.port)))
}
