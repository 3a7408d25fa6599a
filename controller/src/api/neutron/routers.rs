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
use crate::error::{DomainError, StoreError};
use crate::naming::{OWNER_GATEWAY, OWNER_INTERFACE};
use crate::realize::{self, Intent};
use crate::store::l3::{GatewayInfo, RouteEntry, Router};
use crate::store::{FixedIpRequest, NewPort, Port};

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
    "distributed",
    "ha",
    "flavor_id",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];

/// A router as Neutron shows it; `status` is ACTIVE once every node it touches runs it.
/// `intent` and `reports`, when the caller has them, save reading them per router.
pub async fn render(
    app: &App,
    r: &Router,
    intent: Option<&Intent>,
    reports: Option<&realize::Reports>,
) -> Result<Value, DomainError> {
    let gateway = match &r.gateway {
        None => Value::Null,
        Some(g) => {
            let ips: Vec<Value> = match intent {
                Some(i) => i
                    .ports
                    .values()
                    .filter(|p| p.device_owner == OWNER_GATEWAY && p.device_id == r.id)
                    .flat_map(|p| p.fixed_ips.iter())
                    .map(|f| json!({"subnet_id": f.subnet_id, "ip_address": f.ip_address.to_string()}))
                    .collect(),
                None => gateway_port(app, &r.id)
                    .await?
                    .map(|p| {
                        p.fixed_ips
                            .iter()
                            .map(|f| json!({"subnet_id": f.subnet_id, "ip_address": f.ip_address.to_string()}))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            json!({"network_id": g.network_id, "enable_snat": g.enable_snat, "external_fixed_ips": ips})
        }
    };
    let realized = match reports {
        Some(rep) => rep.router(&app.realizer.hub, &r.id),
        None => realize::router_realized(app, &r.id).await?,
    };
    let status = match realized {
        Ok(true) => "ACTIVE",
        Ok(false) => "BUILD",
        Err(_) => "ERROR",
    };
    Ok(json!({
        "id": r.id, "name": r.name, "description": r.description,
        "tenant_id": r.project_id, "project_id": r.project_id,
        "admin_state_up": r.admin_state_up, "status": status,
        "external_gateway_info": gateway,
        "routes": r.routes.iter().map(|x| json!({"destination": x.destination, "nexthop": x.nexthop})).collect::<Vec<_>>(),
        "availability_zone_hints": r.az_hints, "availability_zones": r.az_hints,
        "distributed": false, "ha": false, "flavor_id": null, "tags": [],
        "created_at": r.created_at, "updated_at": r.updated_at, "revision_number": r.revision_number,
    }))
}

async fn gateway_port(app: &App, router: &str) -> Result<Option<Port>, DomainError> {
    let intent = app.realizer.intent(app).await?;
    let p = intent
        .ports_of(router)
        .find(|p| p.device_owner == OWNER_GATEWAY)
        .cloned();
    Ok(p)
}

async fn load_own(app: &App, who: &Identity, id: &str) -> Result<Router, DomainError> {
    check_id(id, "Router", "RouterNotFound")?;
    let r = app.store.get_router(id).await?;
    if !who.owns(&r.project_id) {
        return Err(DomainError::not_found("Router", "RouterNotFound", id));
    }
    Ok(r)
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

fn validation(errors: Vec<planner::ValidationError>) -> Result<(), DomainError> {
    match errors.into_iter().next() {
        None => Ok(()),
        Some(e) => Err(DomainError::bad_request(e.to_string())),
    }
}

/// Checks the planner's rules for `router` on the intent with the router replaced.
async fn check_router(
    app: &App,
    r: &Router,
    extra: Option<planner::RouterInterface>,
) -> Result<(), DomainError> {
    let intent = app.realizer.intent(app).await?;
    // Nothing the rules look at changes (a rename, new routes): judge the snapshot as it is
    // rather than a copy of it (a copy costs milliseconds on a big cloud).
    let same = intent.planner_router(&r.id).is_some_and(|cur| {
        cur.project_id == r.project_id
            && cur.az_hints == r.az_hints
            && match (&cur.external_gateway, &r.gateway) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.network_id == b.network_id && a.enable_snat == b.enable_snat
                }
                _ => false,
            }
    });
    if extra.is_none() && same {
        return validation(planner::validate_router(&intent.snapshot, &r.id));
    }
    let mut snapshot = intent.snapshot.clone();
    drop(intent);
    let snap = &mut snapshot;
    snap.routers.retain(|x| x.id != r.id);
    snap.routers.push(planner::Router {
        id: r.id.clone(),
        project_id: r.project_id.clone(),
        az_hints: r.az_hints.clone(),
        external_gateway: r.gateway.as_ref().map(|g| planner::ExternalGateway {
            network_id: g.network_id.clone(),
            enable_snat: g.enable_snat,
            external_fixed_ips: Vec::new(),
        }),
        routes: Vec::new(),
    });
    if let Some(i) = extra {
        snap.router_interfaces.push(i);
    }
    validation(planner::validate_router(snap, &r.id))
}

/// Deletes a gateway port unless it is gone already: once the router row no longer wants it,
/// the realizer collects it too (it is how a crash between the two writes is mended).
async fn delete_if_present(app: &App, port: &str) -> Result<(), DomainError> {
    match app.store.delete_port(port).await {
        Err(StoreError::Rule(a)) if a.class == crate::error::ErrorClass::NotFound => Ok(()),
        other => other.map_err(DomainError::from),
    }
}

/// Makes the gateway port match `r.gateway` (the realizer does the same after a crash).
async fn sync_gateway_port(app: &App, r: &Router) -> Result<(), DomainError> {
    let existing = gateway_port(app, &r.id).await?;
    realize::ensure_gateway_port(app, r, existing.as_ref()).await
}

async fn check_gateway_network(app: &App, g: &GatewayInfo) -> Result<(), DomainError> {
    let net = app
        .store
        .get_network(&g.network_id)
        .await
        .map_err(|e| match e {
            StoreError::Rule(a) if a.class == crate::error::ErrorClass::NotFound => {
                DomainError::not_found("Network", "NetworkNotFound", &g.network_id)
            }
            other => other.into(),
        })?;
    if !net.external {
        return Err(DomainError::bad_request(format!(
            "Bad router request: network {} is not an external network",
            g.network_id
        )));
    }
    Ok(())
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
            _ => Err(DomainError::no_route(&ctx.path)),
        };
    }
    match op(ctx, rest)? {
        Op::List => {
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let project = (!who.is_admin()).then(|| who.project_id.clone());
            let intent = app.realizer.intent(app).await?;
            let reports = realize::Reports::load(app).await?;
            let mut items = Vec::new();
            for r in app.store.list_routers(project.as_deref()).await? {
                items.push(render(app, &r, Some(&intent), Some(&reports)).await?);
            }
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "routers")?,
            ))
        }
        Op::Show(id) => {
            let r = load_own(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(app, &r, None, None).await?, "router"),
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
            super::networks::check_hints(app, &az_hints).await?;
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
                            "crosspod routers are neither distributed nor HA",
                        ));
                    }
                }
            }
            b.null_only("flavor_id")?;
            let _ = b.raw("tags");
            b.finish()?;
            if let Some(g) = &gateway {
                check_gateway_network(app, g).await?;
            }
            let mut r = Router {
                id: uuid::Uuid::new_v4().to_string(),
                project_id,
                name,
                description,
                admin_state_up,
                az_hints,
                gateway,
                routes,
                created_at: String::new(),
                updated_at: String::new(),
                revision_number: 1,
            };
            check_router(app, &r, None).await?;
            r = app.store.create_router(&r).await?;
            sync_gateway_port(app, &r).await?;
            app.store.queue_job("router", &r.id, &r.project_id).await?;
            tracing::info!(router = %r.id, project = %r.project_id, "router created");
            let v = render(app, &r, None, None).await?;
            Ok(respond(StatusCode::CREATED, &json!({"router": v})))
        }
        Op::Update(id) => {
            let mut r = load_own(app, who, id).await?;
            let mut b = Body::new(ctx.resource_body("router")?);
            if let Some(v) = b.string("name")? {
                r.name = v;
            }
            if let Some(v) = b.string("description")? {
                r.description = v;
            }
            if let Some(v) = b.boolean("admin_state_up")? {
                r.admin_state_up = v;
            }
            if let Some(v) = b.raw("external_gateway_info") {
                r.gateway = parse_gateway(v)?;
            }
            if let Some(v) = b.raw("routes") {
                r.routes = match v {
                    Value::Null => Vec::new(),
                    v => parse_routes(v)?,
                };
            }
            if b.has("availability_zone_hints") {
                return Err(DomainError::bad_request(
                    "Cannot update read-only attribute availability_zone_hints",
                ));
            }
            let _ = b.raw("tags");
            b.finish()?;
            if let Some(g) = &r.gateway {
                check_gateway_network(app, g).await?;
            }
            check_router(app, &r, None).await?;
            let r = app.store.update_router(&r).await?;
            sync_gateway_port(app, &r).await?;
            app.store.queue_job("router", &r.id, &r.project_id).await?;
            let v = render(app, &r, None, None).await?;
            Ok(respond(StatusCode::OK, &json!({"router": v})))
        }
        Op::Delete(id) => {
            let r = load_own(app, who, id).await?;
            let ports = app
                .store
                .list_ports(&crate::store::Scope::default(), None)
                .await?;
            if let Some(p) = ports
                .iter()
                .find(|p| p.device_owner == OWNER_INTERFACE && p.device_id == r.id)
            {
                return Err(DomainError::conflict(
                    "RouterInUse",
                    format!("Router {} still has ports (interface port {}): remove its interfaces first", r.id, p.id),
                ));
            }
            for p in ports
                .iter()
                .filter(|p| p.device_owner == OWNER_GATEWAY && p.device_id == r.id)
            {
                delete_if_present(app, &p.id).await?;
            }
            app.store.delete_router(&r.id).await?;
            tracing::info!(router = %r.id, "router deleted");
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

async fn add_interface(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    id: &str,
) -> Result<Response, DomainError> {
    let r = load_own(app, who, id).await?;
    let (subnet_id, port_id) = interface_body(ctx)?;
    let intent = app.realizer.intent(app).await?;
    let port = match (subnet_id, port_id) {
        (Some(sid), _) => {
            let s = intent
                .subnets
                .get(&sid)
                .ok_or_else(|| DomainError::not_found("Subnet", "SubnetNotFound", &sid))?;
            let net = intent.networks.get(&s.network_id).ok_or_else(|| {
                DomainError::not_found("Network", "NetworkNotFound", &s.network_id)
            })?;
            if !who.owns(&s.project_id) && !net.shared {
                return Err(DomainError::not_found("Subnet", "SubnetNotFound", &sid));
            }
            if net.external {
                return Err(DomainError::bad_request(format!(
                    "Bad router request: subnet {sid} is on external network {}; use the gateway",
                    net.id
                )));
            }
            if intent.ports.values().any(|p| {
                p.device_owner == OWNER_INTERFACE
                    && p.device_id == r.id
                    && p.fixed_ips.iter().any(|f| f.subnet_id == sid)
            }) {
                return Err(DomainError::bad_request(format!(
                    "Bad router request: router {} already has a port on subnet {sid}",
                    r.id
                )));
            }
            let Some(gw) = s.gateway_ip else {
                return Err(DomainError::bad_request(format!(
                    "Bad router request: subnet {sid} has no gateway IP"
                )));
            };
            let mac = String::new();
            check_router(
                app,
                &r,
                Some(planner::RouterInterface {
                    router_id: r.id.clone(),
                    subnet_id: sid.clone(),
                    port_id: "pending".into(),
                    ip_address: gw,
                    mac,
                }),
            )
            .await?;
            app.store
                .create_port(&NewPort {
                    id: uuid::Uuid::new_v4().to_string(),
                    project_id: r.project_id.clone(),
                    network_id: s.network_id.clone(),
                    name: String::new(),
                    description: format!("interface of router {} on subnet {sid}", r.id),
                    admin_state_up: true,
                    mac_address: None,
                    device_id: r.id.clone(),
                    device_owner: OWNER_INTERFACE.into(),
                    host_id: String::new(),
                    port_security_enabled: Some(false),
                    fixed_ips: Some(vec![FixedIpRequest {
                        subnet_id: Some(sid.clone()),
                        ip_address: Some(gw),
                    }]),
                })
                .await
                .map_err(|e| match e {
                    StoreError::Rule(a) if a.class == crate::error::ErrorClass::Conflict => {
                        DomainError::conflict(
                            "IpAddressInUse",
                            format!(
                            "the gateway IP {gw} of subnet {sid} is in use (another router?): {}",
                            a.message
                        ),
                        )
                    }
                    other => other.into(),
                })?
        }
        (None, Some(pid)) => {
            let mut p = intent
                .ports
                .get(&pid)
                .cloned()
                .ok_or_else(|| DomainError::not_found("Port", "PortNotFound", &pid))?;
            if !who.owns(&p.project_id) {
                return Err(DomainError::not_found("Port", "PortNotFound", &pid));
            }
            if !p.device_owner.is_empty() || !p.device_id.is_empty() {
                return Err(DomainError::conflict(
                    "PortInUse",
                    format!("port {pid} is in use by {} {}", p.device_owner, p.device_id),
                ));
            }
            let Some(f) = p.fixed_ips.first().cloned() else {
                return Err(DomainError::bad_request(format!(
                    "Bad router request: port {pid} has no fixed IP"
                )));
            };
            check_router(
                app,
                &r,
                Some(planner::RouterInterface {
                    router_id: r.id.clone(),
                    subnet_id: f.subnet_id.clone(),
                    port_id: pid.clone(),
                    ip_address: f.ip_address,
                    mac: p.mac_address.clone(),
                }),
            )
            .await?;
            p.device_owner = OWNER_INTERFACE.into();
            p.device_id = r.id.clone();
            app.store.update_port(&p, None).await?
        }
        (None, None) => unreachable!("interface_body requires one"),
    };
    crate::failpoint::hit("api:interface_job");
    app.store.queue_job("router", &r.id, &r.project_id).await?;
    tracing::info!(router = %r.id, port = %port.id, "router interface added");
    Ok(respond(StatusCode::OK, &interface_info(&r, &port)))
}

async fn remove_interface(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    id: &str,
) -> Result<Response, DomainError> {
    let r = load_own(app, who, id).await?;
    let (subnet_id, port_id) = interface_body(ctx)?;
    let ports = app
        .store
        .list_ports(&crate::store::Scope::default(), None)
        .await?;
    let found = ports.into_iter().find(|p| {
        p.device_owner == OWNER_INTERFACE
            && p.device_id == r.id
            && match (&subnet_id, &port_id) {
                (_, Some(pid)) => &p.id == pid,
                (Some(sid), None) => p.fixed_ips.iter().any(|f| &f.subnet_id == sid),
                (None, None) => false,
            }
    });
    let Some(p) = found else {
        return Err(match (subnet_id, port_id) {
            (_, Some(pid)) => DomainError::not_found(
                "Router interface",
                "RouterInterfaceNotFound",
                &format!("{pid} on router {}", r.id),
            ),
            (Some(sid), _) => DomainError::not_found(
                "Router interface",
                "RouterInterfaceNotFoundForSubnet",
                &format!("{sid} on router {}", r.id),
            ),
            _ => DomainError::bad_request("either subnet_id or port_id must be specified"),
        });
    };
    app.store.delete_port(&p.id).await?;
    crate::failpoint::hit("api:interface_job");
    app.store.queue_job("router", &r.id, &r.project_id).await?;
    tracing::info!(router = %r.id, port = %p.id, "router interface removed");
    Ok(respond(StatusCode::OK, &interface_info(&r, &p)))
}
