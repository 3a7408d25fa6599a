//! `/v2.0/ports`.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Value};

use super::query::ListQuery;
use super::{check_id, op, uuid_field, Body, Op};
use crate::api::{json as respond, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::ipam;
use crate::mac;
use crate::service::ports;
use crate::store::{AddressPair, FixedIpRequest, NewPort, Port, Scope, Tagged};

/// Attributes of a port.
pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "network_id",
    "tenant_id",
    "project_id",
    "mac_address",
    "admin_state_up",
    "status",
    "device_id",
    "device_owner",
    "fixed_ips",
    "description",
    "binding:vnic_type",
    "binding:host_id",
    "binding:profile",
    "binding:vif_type",
    "binding:vif_details",
    "port_security_enabled",
    "security_groups",
    "allowed_address_pairs",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];

#[derive(Serialize)]
struct FixedIpView<'a> {
    subnet_id: &'a str,
    ip_address: String,
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
struct PairView<'a> {
    ip_address: &'a str,
    mac_address: &'a str,
}

/// A port as Neutron shows it (binding attributes to admins only). Typed, so a plain list
/// serialises straight to bytes without building a JSON tree per port.
#[derive(Serialize)]
pub struct PortView<'a> {
    id: &'a str,
    name: &'a str,
    network_id: &'a str,
    tenant_id: &'a str,
    project_id: &'a str,
    mac_address: &'a str,
    admin_state_up: bool,
    status: &'a str,
    device_id: &'a str,
    device_owner: &'a str,
    fixed_ips: Vec<FixedIpView<'a>>,
    description: &'a str,
    port_security_enabled: bool,
    security_groups: &'a [String],
    allowed_address_pairs: Vec<PairView<'a>>,
    tags: &'a [String],
    created_at: &'a str,
    updated_at: &'a str,
    revision_number: i64,
    #[serde(rename = "binding:vnic_type", skip_serializing_if = "Option::is_none")]
    vnic_type: Option<&'static str>,
    #[serde(rename = "binding:host_id", skip_serializing_if = "Option::is_none")]
    host_id: Option<&'a str>,
    #[serde(rename = "binding:profile", skip_serializing_if = "Option::is_none")]
    profile: Option<EmptyObject>,
    #[serde(rename = "binding:vif_type", skip_serializing_if = "Option::is_none")]
    vif_type: Option<&'static str>,
    #[serde(
        rename = "binding:vif_details",
        skip_serializing_if = "Option::is_none"
    )]
    vif_details: Option<EmptyObject>,
}

impl<'a> PortView<'a> {
    /// The view of `p` (carrying `tags`) for `who`.
    pub fn new(p: &'a Port, who: &Identity, tags: &'a [String]) -> Self {
        let admin = who.is_admin();
        PortView {
            id: &p.id,
            name: &p.name,
            network_id: &p.network_id,
            tenant_id: &p.project_id,
            project_id: &p.project_id,
            mac_address: &p.mac_address,
            admin_state_up: p.admin_state_up,
            status: &p.status,
            device_id: &p.device_id,
            device_owner: &p.device_owner,
            fixed_ips: p
                .fixed_ips
                .iter()
                .map(|f| FixedIpView {
                    subnet_id: &f.subnet_id,
                    ip_address: f.ip_address.to_string(),
                })
                .collect(),
            description: &p.description,
            port_security_enabled: p.port_security_enabled,
            security_groups: &p.security_groups,
            allowed_address_pairs: p
                .allowed_address_pairs
                .iter()
                .map(|a| PairView {
                    ip_address: &a.ip_address,
                    mac_address: a.mac_address.as_deref().unwrap_or(&p.mac_address),
                })
                .collect(),
            tags,
            created_at: &p.created_at,
            updated_at: &p.updated_at,
            revision_number: p.revision_number,
            vnic_type: admin.then_some("normal"),
            host_id: admin.then_some(p.host_id.as_str()),
            profile: admin.then_some(EmptyObject {}),
            vif_type: admin.then_some(if p.host_id.is_empty() {
                "unbound"
            } else {
                "ovs"
            }),
            vif_details: admin.then_some(EmptyObject {}),
        }
    }
}

/// A port as a JSON value (for filtering, sorting and `fields`).
pub fn render(p: &Port, who: &Identity, tags: &[String]) -> Value {
    serde_json::to_value(PortView::new(p, who, tags)).unwrap_or_default()
}

async fn load_own(app: &App, who: &Identity, id: &str) -> Result<Port, DomainError> {
    check_id(id, "Port", "PortNotFound")?;
    ports::load_visible(app, who, id).await
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
            let scope = Scope {
                project_id: (!who.is_admin()).then(|| who.project_id.clone()),
            };
            // A single network_id filter narrows the query in the database.
            let net = q
                .filters
                .iter()
                .find(|(k, v)| k == "network_id" && v.len() == 1)
                .map(|(_, v)| v[0].clone());
            let mut ports = app.store.list_ports(&scope, net.as_deref()).await?;
            let tags = super::tags::all(app, Tagged::Port).await?;
            let plain = q.fields.is_empty()
                && q.sorts.is_empty()
                && q.limit.is_none()
                && q.marker.is_none()
                && q.tags.is_empty()
                && q.filters
                    .iter()
                    .all(|(k, v)| k == "network_id" && v.len() == 1);
            if plain {
                // The common "list everything" call: straight to bytes, in id order as
                // the generic path would sort.
                #[derive(Serialize)]
                struct List<'a> {
                    ports: Vec<PortView<'a>>,
                }
                ports.sort_by(|a, b| a.id.cmp(&b.id));
                let body = List {
                    ports: ports
                        .iter()
                        .map(|p| PortView::new(p, who, tags.get(&p.id)))
                        .collect(),
                };
                let bytes = serde_json::to_vec(&body)
                    .map_err(|e| DomainError::internal(format!("serialising ports: {e}")))?;
                return Ok(crate::api::json_bytes(StatusCode::OK, bytes));
            }
            let items = ports
                .iter()
                .map(|p| render(p, who, tags.get(&p.id)))
                .collect();
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "ports")?,
            ))
        }
        Op::Show(id) => {
            let p = load_own(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let tags = super::tags::of(app, Tagged::Port, &p.id).await?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(&p, who, &tags), "port"),
            ))
        }
        Op::Create => {
            let (new, tags, sec) = parse_create(who, Body::new(ctx.resource_body("port")?))?;
            let p = ports::create_secured(app, who, &new, &tags, &sec).await?;
            let tags = super::tags::of(app, Tagged::Port, &p.id).await?;
            Ok(respond(
                StatusCode::CREATED,
                &json!({"port": render(&p, who, &tags)}),
            ))
        }
        Op::Update(id) => {
            check_id(id, "Port", "PortNotFound")?;
            let mut b = Body::new(ctx.resource_body("port")?);
            let mut u = ports::Update {
                name: b.string("name")?,
                description: b.string("description")?,
                admin_state_up: b.boolean("admin_state_up")?,
                device_id: b.string("device_id")?,
                device_owner: b.string("device_owner")?,
                host_id: b.string("binding:host_id")?,
                port_security_enabled: b.boolean("port_security_enabled")?,
                mac_address: b
                    .string("mac_address")?
                    .map(|m| parse_mac(&m))
                    .transpose()?,
                fixed_ips: None,
                security: security(&mut b)?,
            };
            common_ignorable(&mut b)?;
            u.fixed_ips = fixed_ips(&mut b)?;
            for ro in ["network_id", "id", "project_id", "tenant_id", "status"] {
                if b.has(ro) {
                    return Err(DomainError::bad_request(format!(
                        "Cannot update read-only attribute {ro}"
                    )));
                }
            }
            super::tags::refuse_in_update(&b, "ports")?;
            b.finish()?;
            let p = ports::update(app, who, id, &u, super::if_match(ctx)?).await?;
            let tags = super::tags::of(app, Tagged::Port, &p.id).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"port": render(&p, who, &tags)}),
            ))
        }
        Op::Delete(id) => {
            check_id(id, "Port", "PortNotFound")?;
            ports::delete(app, who, id).await?;
            Ok(no_content())
        }
    }
}

fn parse_mac(m: &str) -> Result<String, DomainError> {
    mac::parse(m).ok_or_else(|| {
        DomainError::invalid_input("mac_address", format!("'{m}' is not a valid MAC address"))
    })
}

/// Attributes clients send that we accept only with their neutral values.
fn common_ignorable(b: &mut Body) -> Result<(), DomainError> {
    if let Some(v) = b.string("binding:vnic_type")? {
        if v != "normal" {
            return Err(DomainError::invalid_input(
                "binding:vnic_type",
                format!("'{v}' is not supported; only normal"),
            ));
        }
    }
    match b.raw("binding:profile") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) if m.is_empty() => {}
        Some(v) => {
            return Err(DomainError::invalid_input(
                "binding:profile",
                format!("'{v}' is not supported; only {{}}"),
            ))
        }
    }
    b.null_only("qos_policy_id")?;
    Ok(())
}

fn fixed_ips(b: &mut Body) -> Result<Option<Vec<FixedIpRequest>>, DomainError> {
    let Some(v) = b.raw("fixed_ips") else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(DomainError::invalid_input(
            "fixed_ips",
            format!("'{v}' is not a list"),
        ));
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let field = format!("fixed_ips[{i}]");
        let Value::Object(m) = it else {
            return Err(DomainError::invalid_input(
                &field,
                format!("'{it}' is not an object"),
            ));
        };
        if let Some(k) = m.keys().find(|k| *k != "subnet_id" && *k != "ip_address") {
            return Err(DomainError::invalid_input(
                &field,
                format!("unknown key '{k}'"),
            ));
        }
        let subnet_id = match m.get("subnet_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(uuid_field(&format!("{field}.subnet_id"), s)?),
            Some(o) => {
                return Err(DomainError::invalid_input(
                    &format!("{field}.subnet_id"),
                    format!("'{o}' is not a valid UUID"),
                ))
            }
        };
        let ip_address = match m.get("ip_address") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(ipam::parse_ip(&format!("{field}.ip_address"), s)?),
            Some(o) => {
                return Err(DomainError::invalid_input(
                    &format!("{field}.ip_address"),
                    format!("'{o}' is not a valid IP address"),
                ))
            }
        };
        out.push(FixedIpRequest {
            subnet_id,
            ip_address,
        });
    }
    Ok(Some(out))
}

/// Neutron's limit on `allowed_address_pairs` (`max_allowed_address_pair`).
pub const MAX_ADDRESS_PAIRS: usize = 10;

fn pair_error(kind: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::new(crate::error::ErrorClass::BadRequest, kind, message)
}

/// `security_groups` (null is an empty list, as Neutron's converter) and
/// `allowed_address_pairs` (`[{ip_address, mac_address?}]`, address or CIDR, at most 10, no
/// duplicates).
fn security(b: &mut Body) -> Result<ports::Security, DomainError> {
    let security_groups = match b.peek("security_groups") {
        Some(Value::Null) => {
            b.raw("security_groups");
            Some(Vec::new())
        }
        _ => b
            .string_list("security_groups")?
            .map(|l| {
                l.iter()
                    .map(|g| uuid_field("security_groups", g))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?,
    };
    let allowed_address_pairs = match b.raw("allowed_address_pairs") {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => {
            if items.len() > MAX_ADDRESS_PAIRS {
                return Err(pair_error(
                    "AllowedAddressPairExhausted",
                    format!("The number of allowed address pair exceeds the maximum {MAX_ADDRESS_PAIRS}."),
                ));
            }
            let mut out: Vec<AddressPair> = Vec::new();
            for it in &items {
                let Value::Object(m) = it else {
                    return Err(DomainError::invalid_input(
                        "allowed_address_pairs",
                        format!("'{it}' is not a dictionary"),
                    ));
                };
                if let Some(k) = m.keys().find(|k| *k != "ip_address" && *k != "mac_address") {
                    return Err(DomainError::invalid_input(
                        "allowed_address_pairs",
                        format!("Unrecognized attribute(s) '{k}'"),
                    ));
                }
                let ip = match m.get("ip_address") {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => {
                        return Err(pair_error(
                            "AllowedAddressPairsMissingIP",
                            "AllowedAddressPair must contain ip_address",
                        ))
                    }
                    Some(o) => {
                        return Err(DomainError::invalid_input(
                            "allowed_address_pairs",
                            format!("'{o}' is not a valid IP address or CIDR"),
                        ))
                    }
                };
                let valid =
                    ip.parse::<std::net::IpAddr>().is_ok() || ip.parse::<ipnet::IpNet>().is_ok();
                if !valid {
                    return Err(DomainError::invalid_input(
                        "allowed_address_pairs",
                        format!("'{ip}' is neither a valid IP address nor a valid CIDR"),
                    ));
                }
                let mac = match m.get("mac_address") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(mac::parse(s).ok_or_else(|| {
                        DomainError::invalid_input(
                            "allowed_address_pairs",
                            format!("'{s}' is not a valid MAC address"),
                        )
                    })?),
                    Some(o) => {
                        return Err(DomainError::invalid_input(
                            "allowed_address_pairs",
                            format!("'{o}' is not a valid MAC address"),
                        ))
                    }
                };
                let pair = AddressPair {
                    ip_address: ip,
                    mac_address: mac,
                };
                if out.contains(&pair) {
                    return Err(pair_error(
                        "DuplicateAddressPairInRequest",
                        format!(
                            "Request contains duplicate address pair: mac_address {} ip_address {}.",
                            pair.mac_address.as_deref().unwrap_or("None"),
                            pair.ip_address
                        ),
                    ));
                }
                out.push(pair);
            }
            Some(out)
        }
        Some(v) => {
            return Err(DomainError::invalid_input(
                "allowed_address_pairs",
                format!("'{v}' is not a list"),
            ))
        }
    };
    Ok(ports::Security {
        security_groups,
        allowed_address_pairs,
    })
}

fn parse_create(
    who: &Identity,
    mut b: Body,
) -> Result<(NewPort, Vec<String>, ports::Security), DomainError> {
    let project_id = b.owner(who, "port")?;
    let Some(network_id) = b.string("network_id")? else {
        return Err(DomainError::invalid_input(
            "network_id",
            "network_id is required",
        ));
    };
    let network_id = uuid_field("network_id", &network_id)?;
    let name = b.string("name")?.unwrap_or_default();
    let description = b.string("description")?.unwrap_or_default();
    let admin_state_up = b.boolean("admin_state_up")?.unwrap_or(true);
    let mac_address = b
        .string("mac_address")?
        .map(|m| parse_mac(&m))
        .transpose()?;
    let device_id = b.string("device_id")?.unwrap_or_default();
    let device_owner = b.string("device_owner")?.unwrap_or_default();
    let host_id = b.string("binding:host_id")?.unwrap_or_default();
    let port_security_enabled = b.boolean("port_security_enabled")?;
    let sec = security(&mut b)?;
    common_ignorable(&mut b)?;
    let fixed_ips = fixed_ips(&mut b)?;
    let tags = super::tags::create_tags(&mut b)?.unwrap_or_default();
    b.finish()?;
    let port = NewPort {
        id: uuid::Uuid::new_v4().to_string(),
        project_id,
        network_id,
        name,
        description,
        admin_state_up,
        mac_address,
        device_id,
        device_owner,
        host_id,
        port_security_enabled,
        fixed_ips,
    };
    Ok((port, tags, sec))
}
