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
use crate::error::{DomainError, StoreError};
use crate::naming::OWNER_FLOATINGIP;
use crate::realize::{self, Intent};
use crate::store::l3::FloatingIp;
use crate::store::{FixedIpRequest, NewPort};

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
    "dns_domain",
    "dns_name",
    "qos_policy_id",
];

/// A floating IP as Neutron shows it.
pub fn render(f: &FloatingIp, intent: &Intent) -> Value {
    let router = f.port_id.as_ref().and_then(|pid| {
        intent
            .ports
            .get(pid)
            .and_then(|p| realize::serving_router(intent, &f.floating_network_id, p))
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
        "status": status, "description": f.description, "tags": [],
        "created_at": f.created_at, "updated_at": f.updated_at, "revision_number": f.revision_number,
        "port_details": null, "dns_domain": "", "dns_name": "", "qos_policy_id": null,
        "port_forwardings": [],
    })
}

async fn load_own(app: &App, who: &Identity, id: &str) -> Result<FloatingIp, DomainError> {
    check_id(id, "Floating IP", "FloatingIPNotFound")?;
    let f = app.store.get_floatingip(id).await?;
    if !who.owns(&f.project_id) {
        return Err(DomainError::not_found(
            "Floating IP",
            "FloatingIPNotFound",
            id,
        ));
    }
    Ok(f)
}

/// Resolves an association: the port (visible to the caller), its fixed IP, and the planner's
/// rules (same project, a serving router).
fn associate(
    intent: &Intent,
    who: &Identity,
    f: &mut FloatingIp,
    port_id: Option<String>,
    fixed: Option<String>,
) -> Result<(), DomainError> {
    let Some(pid) = port_id else {
        f.port_id = None;
        f.fixed_ip_address = None;
        return Ok(());
    };
    let port = intent
        .ports
        .get(&pid)
        .ok_or_else(|| DomainError::not_found("Port", "PortNotFound", &pid))?;
    if !who.owns(&port.project_id) {
        return Err(DomainError::not_found("Port", "PortNotFound", &pid));
    }
    let fixed_ip = match fixed {
        Some(a) => {
            let ip: std::net::IpAddr = a.parse().map_err(|_| {
                DomainError::invalid_input(
                    "fixed_ip_address",
                    format!("'{a}' is not an IP address"),
                )
            })?;
            if !port.fixed_ips.iter().any(|x| x.ip_address == ip) {
                return Err(DomainError::bad_request(format!(
                    "Bad floatingip request: port {pid} does not have fixed IP {ip}"
                )));
            }
            ip
        }
        None => port
            .fixed_ips
            .iter()
            .find(|x| x.ip_address.is_ipv4())
            .map(|x| x.ip_address)
            .ok_or_else(|| {
                DomainError::bad_request(format!(
                    "Bad floatingip request: port {pid} has no IPv4 fixed IP"
                ))
            })?,
    };
    let candidate = planner::FloatingIp {
        id: f.id.clone(),
        project_id: f.project_id.clone(),
        floating_network_id: f.floating_network_id.clone(),
        floating_ip_address: f.floating_ip_address.parse().map_err(|_| {
            DomainError::internal(format!("stored floating IP {} is not an address", f.id))
        })?,
        port_id: Some(pid.clone()),
        fixed_ip_address: Some(fixed_ip),
    };
    if let Err(e) = planner::validate_floating_ip(&intent.snapshot, &candidate) {
        return Err(match e {
            planner::ValidationError::FloatingIpUnreachable { .. } => DomainError::new(
                crate::error::ErrorClass::NotFound,
                "ExternalGatewayForFloatingIPNotFound",
                e.to_string(),
            ),
            other => DomainError::bad_request(other.to_string()),
        });
    }
    // One floating IP per fixed IP.
    for other in intent.floatingips.values() {
        if other.id != f.id
            && other.port_id.as_deref() == Some(pid.as_str())
            && other.fixed_ip_address.as_deref() == Some(fixed_ip.to_string().as_str())
        {
            return Err(DomainError::conflict(
                "FloatingIPPortAlreadyAssociated",
                format!(
                    "Cannot associate floating IP {} with port {pid} ({fixed_ip}): floating IP {} already has it",
                    f.floating_ip_address, other.floating_ip_address
                ),
            ));
        }
    }
    f.port_id = Some(pid);
    f.fixed_ip_address = Some(fixed_ip.to_string());
    Ok(())
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
            let intent = app.realizer.intent(app).await?;
            let items = app
                .store
                .list_floatingips(project.as_deref())
                .await?
                .iter()
                .map(|f| render(f, &intent))
                .collect();
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "floatingips")?,
            ))
        }
        Op::Show(id) => {
            let f = load_own(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let intent = app.realizer.intent(app).await?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(&f, &intent), "floatingip"),
            ))
        }
        Op::Create => {
            let mut b = Body::new(ctx.resource_body("floatingip")?);
            let project_id = b.owner(who, "floatingip")?;
            let net_id = b
                .string("floating_network_id")?
                .ok_or_else(|| DomainError::bad_request("floating_network_id is required"))?;
            let net_id = super::uuid_field("floating_network_id", &net_id)?;
            let wanted = b.string("floating_ip_address")?;
            let subnet = b.string("subnet_id")?;
            let port_id = optional_string(&mut b, "port_id")?.flatten();
            let fixed = optional_string(&mut b, "fixed_ip_address")?.flatten();
            let description = b.string("description")?.unwrap_or_default();
            let _ = b.raw("tags");
            b.null_only("qos_policy_id")?;
            let _ = b.raw("dns_domain");
            let _ = b.raw("dns_name");
            b.finish()?;
            let net = app.store.get_network(&net_id).await?;
            if !net.external {
                return Err(DomainError::bad_request(format!(
                    "Bad floatingip request: network {net_id} is not a valid external network"
                )));
            }
            let ip = match wanted {
                None => None,
                Some(a) => Some(a.parse().map_err(|_| {
                    DomainError::invalid_input(
                        "floating_ip_address",
                        format!("'{a}' is not an IP address"),
                    )
                })?),
            };
            let id = uuid::Uuid::new_v4().to_string();
            let mut f = FloatingIp {
                id: id.clone(),
                project_id,
                floating_network_id: net_id.clone(),
                floating_port_id: String::new(),
                floating_ip_address: String::new(),
                port_id: None,
                fixed_ip_address: None,
                description,
                created_at: String::new(),
                updated_at: String::new(),
                revision_number: 1,
            };
            // Check the association before taking an address: nothing to undo on refusal.
            f.floating_ip_address = "0.0.0.0".into();
            let intent = app.realizer.intent(app).await?;
            associate(&intent, who, &mut f, port_id.clone(), fixed.clone())?;
            let port = app
                .store
                .create_port(&NewPort {
                    id: uuid::Uuid::new_v4().to_string(),
                    project_id: String::new(),
                    network_id: net_id.clone(),
                    name: String::new(),
                    description: format!("floating IP {id}"),
                    admin_state_up: true,
                    mac_address: None,
                    device_id: id.clone(),
                    device_owner: OWNER_FLOATINGIP.into(),
                    host_id: String::new(),
                    port_security_enabled: Some(false),
                    fixed_ips: (subnet.is_some() || ip.is_some()).then(|| {
                        vec![FixedIpRequest {
                            subnet_id: subnet,
                            ip_address: ip,
                        }]
                    }),
                })
                .await?;
            let addr = port
                .fixed_ips
                .first()
                .map(|x| x.ip_address.to_string())
                .ok_or_else(|| DomainError::internal("floating IP port got no address"))?;
            f.floating_port_id = port.id.clone();
            f.floating_ip_address = addr;
            let f = match app.store.create_floatingip(&f).await {
                Ok(f) => f,
                Err(e) => {
                    // Give the address back; the realizer would collect it otherwise.
                    let _ = app.store.delete_port(&port.id).await;
                    return Err(e.into());
                }
            };
            // The intent read above still holds every port and router the job and the
            // rendering look at (the new floating IP's own port is not among them).
            queue_for(app, &intent, &f).await?;
            tracing::info!(floatingip = %f.id, address = %f.floating_ip_address, port = ?f.port_id, "floating IP created");
            Ok(respond(
                StatusCode::CREATED,
                &json!({"floatingip": render(&f, &intent)}),
            ))
        }
        Op::Update(id) => {
            let mut f = load_own(app, who, id).await?;
            let before = f.clone();
            let mut b = Body::new(ctx.resource_body("floatingip")?);
            let port = optional_string(&mut b, "port_id")?;
            let fixed = optional_string(&mut b, "fixed_ip_address")?.flatten();
            if let Some(d) = b.string("description")? {
                f.description = d;
            }
            let _ = b.raw("tags");
            b.finish()?;
            let intent = app.realizer.intent(app).await?;
            if let Some(port) = port {
                associate(&intent, who, &mut f, port, fixed)?;
            }
            let f = app.store.update_floatingip(&f).await?;
            queue_for(app, &intent, &before).await?;
            queue_for(app, &intent, &f).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"floatingip": render(&f, &intent)}),
            ))
        }
        Op::Delete(id) => {
            let f = load_own(app, who, id).await?;
            app.store.delete_floatingip(&f.id).await?;
            match app.store.delete_port(&f.floating_port_id).await {
                Ok(()) => {}
                Err(StoreError::Rule(a)) if a.class == crate::error::ErrorClass::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            let intent = app.realizer.intent(app).await?;
            queue_for(app, &intent, &f).await?;
            Ok(no_content())
        }
    }
}

/// Queues the job of the router serving `f` (if any).
async fn queue_for(app: &App, intent: &Intent, f: &FloatingIp) -> Result<(), DomainError> {
    let Some(pid) = &f.port_id else {
        return Ok(());
    };
    if let Some(r) = intent
        .ports
        .get(pid)
        .and_then(|p| realize::serving_router(intent, &f.floating_network_id, p))
    {
        let project = intent
            .routers
            .get(&r)
            .map(|x| x.project_id.clone())
            .unwrap_or_default();
        app.store.queue_job("router", &r, &project).await?;
    }
    Ok(())
}
