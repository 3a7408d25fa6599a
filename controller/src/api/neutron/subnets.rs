//! `/v2.0/subnets`.

use std::net::IpAddr;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::query::ListQuery;
use super::{check_id, op, uuid_field, Body, Op};
use crate::api::{json as respond, no_content, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::ipam::{self, Pool};
use crate::service::subnets::{self, NewSubnet, PoolChoice};
use crate::store::{HostRoute, Scope, Subnet, Tagged};

/// Attributes of a subnet.
pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "tenant_id",
    "project_id",
    "network_id",
    "ip_version",
    "subnetpool_id",
    "enable_dhcp",
    "ipv6_ra_mode",
    "ipv6_address_mode",
    "gateway_ip",
    "cidr",
    "allocation_pools",
    "host_routes",
    "dns_nameservers",
    "description",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
];

/// A subnet as Neutron shows it, with its tags.
pub fn render(s: &Subnet, tags: &[String]) -> Value {
    json!({
        "id": s.id, "name": s.name, "tenant_id": s.project_id, "project_id": s.project_id,
        "network_id": s.network_id, "ip_version": s.ip_version, "subnetpool_id": s.subnetpool_id,
        "enable_dhcp": s.enable_dhcp,
        "ipv6_ra_mode": s.ipv6_ra_mode.map(ipam::ipv6_mode_name),
        "ipv6_address_mode": s.ipv6_address_mode.map(ipam::ipv6_mode_name),
        "gateway_ip": s.gateway_ip.map(|g| g.to_string()), "cidr": s.cidr.to_string(),
        "allocation_pools": s.allocation_pools.iter().map(|p| json!({"start": p.start.to_string(), "end": p.end.to_string()})).collect::<Vec<_>>(),
        "host_routes": s.host_routes, "dns_nameservers": s.dns_nameservers,
        "description": s.description, "tags": tags,
        "created_at": s.created_at, "updated_at": s.updated_at,
        "revision_number": s.revision_number,
    })
}

async fn load_visible_subnet(app: &App, who: &Identity, id: &str) -> Result<Subnet, DomainError> {
    check_id(id, "Subnet", "SubnetNotFound")?;
    subnets::load_visible(app, who, id).await
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
            let tags = super::tags::all(app, Tagged::Subnet).await?;
            let items = app
                .store
                .list_subnets(&scope)
                .await?
                .iter()
                .map(|s| render(s, tags.get(&s.id)))
                .collect();
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "subnets")?,
            ))
        }
        Op::Show(id) => {
            let s = load_visible_subnet(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let tags = super::tags::of(app, Tagged::Subnet, &s.id).await?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(&s, &tags), "subnet"),
            ))
        }
        Op::Create => {
            let (req, tags) = parse_create(who, Body::new(ctx.resource_body("subnet")?))?;
            let s = subnets::create(app, who, req, &tags).await?;
            let tags = super::tags::of(app, Tagged::Subnet, &s.id).await?;
            Ok(respond(
                StatusCode::CREATED,
                &json!({"subnet": render(&s, &tags)}),
            ))
        }
        Op::Update(id) => {
            check_id(id, "Subnet", "SubnetNotFound")?;
            let mut b = Body::new(ctx.resource_body("subnet")?);
            let name = b.string("name")?;
            let description = b.string("description")?;
            let enable_dhcp = b.boolean("enable_dhcp")?;
            let gateway_ip = b.raw("gateway_ip");
            let pools = pools(&mut b)?;
            let dns = dns(&mut b)?;
            let routes = routes(&mut b)?;
            for ro in [
                "cidr",
                "network_id",
                "ip_version",
                "id",
                "project_id",
                "tenant_id",
                "subnetpool_id",
                "prefixlen",
                "use_default_subnetpool",
                "ipv6_ra_mode",
                "ipv6_address_mode",
            ] {
                if b.has(ro) {
                    return Err(DomainError::bad_request(format!(
                        "Cannot update read-only attribute {ro}"
                    )));
                }
            }
            super::tags::refuse_in_update(&b, "subnets")?;
            b.finish()?;
            let s = subnets::update(app, who, id, super::if_match(ctx)?, |s| {
                if let Some(v) = &name {
                    s.name = v.clone();
                }
                if let Some(v) = &description {
                    s.description = v.clone();
                }
                if let Some(v) = enable_dhcp {
                    s.enable_dhcp = v;
                }
                if let Some(g) = &gateway_ip {
                    s.gateway_ip = gateway(Some(g.clone()), &s.cidr)?;
                }
                if let Some(p) = &pools {
                    s.allocation_pools = p.clone();
                }
                if let Some(d) = &dns {
                    s.dns_nameservers = d.clone();
                }
                if let Some(r) = &routes {
                    s.host_routes = r.clone();
                }
                Ok(())
            })
            .await?;
            let tags = super::tags::of(app, Tagged::Subnet, &s.id).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"subnet": render(&s, &tags)}),
            ))
        }
        Op::Delete(id) => {
            check_id(id, "Subnet", "SubnetNotFound")?;
            subnets::delete(app, who, id).await?;
            Ok(no_content())
        }
    }
}

fn gateway(v: Option<Value>, cidr: &ipnet::IpNet) -> Result<Option<IpAddr>, DomainError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(g)) => {
            let ip = ipam::parse_ip("gateway_ip", &g)?;
            ipam::check_gateway(cidr, ip)?;
            Ok(Some(ip))
        }
        Some(v) => Err(DomainError::invalid_input(
            "gateway_ip",
            format!("'{v}' is not a valid IP address"),
        )),
    }
}

fn pools(b: &mut Body) -> Result<Option<Vec<Pool>>, DomainError> {
    let Some(v) = b.raw("allocation_pools") else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(DomainError::invalid_input(
            "allocation_pools",
            format!("'{v}' is not a list"),
        ));
    };
    let mut out = Vec::new();
    for it in items {
        let (Some(s), Some(e)) = (
            it.get("start").and_then(Value::as_str),
            it.get("end").and_then(Value::as_str),
        ) else {
            return Err(DomainError::invalid_input(
                "allocation_pools",
                format!("'{it}' is not {{\"start\": IP, \"end\": IP}}"),
            ));
        };
        if it.as_object().map(|o| o.len()) != Some(2) {
            return Err(DomainError::invalid_input(
                "allocation_pools",
                format!("'{it}' has keys other than start and end"),
            ));
        }
        let start = ipam::parse_ip("allocation_pools.start", s)?;
        let end = ipam::parse_ip("allocation_pools.end", e)?;
        if start.is_ipv4() != end.is_ipv4() {
            return Err(DomainError::invalid_input(
                "allocation_pools",
                format!("{s}-{e} mixes IP versions"),
            ));
        }
        out.push(Pool { start, end });
    }
    Ok(Some(out))
}

fn dns(b: &mut Body) -> Result<Option<Vec<String>>, DomainError> {
    let Some(list) = b.string_list("dns_nameservers")? else {
        return Ok(None);
    };
    let mut out: Vec<String> = Vec::new();
    for d in list {
        let ip = ipam::parse_ip("dns_nameservers", &d)?.to_string();
        if out.contains(&ip) {
            return Err(DomainError::invalid_input(
                "dns_nameservers",
                format!("duplicate nameserver '{d}'"),
            ));
        }
        out.push(ip);
    }
    Ok(Some(out))
}

fn routes(b: &mut Body) -> Result<Option<Vec<HostRoute>>, DomainError> {
    let Some(v) = b.raw("host_routes") else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(DomainError::invalid_input(
            "host_routes",
            format!("'{v}' is not a list"),
        ));
    };
    let mut out = Vec::new();
    for it in items {
        let (Some(d), Some(n)) = (
            it.get("destination").and_then(Value::as_str),
            it.get("nexthop").and_then(Value::as_str),
        ) else {
            return Err(DomainError::invalid_input(
                "host_routes",
                format!("'{it}' is not {{\"destination\": CIDR, \"nexthop\": IP}}"),
            ));
        };
        let dest: ipnet::IpNet = d.parse().map_err(|_| {
            DomainError::invalid_input(
                "host_routes.destination",
                format!("'{d}' is not a valid IP subnet"),
            )
        })?;
        let hop = ipam::parse_ip("host_routes.nexthop", n)?;
        out.push(HostRoute {
            destination: dest.to_string(),
            nexthop: hop.to_string(),
        });
    }
    Ok(Some(out))
}

/// `ipv6_ra_mode` / `ipv6_address_mode`: one of Neutron's IPv6 modes, or null.
fn ipv6_mode(b: &mut Body, key: &str) -> Result<Option<wire::Ipv6AddressMode>, DomainError> {
    match b.raw(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(ipam::parse_ipv6_mode)
            .map(Some)
            .ok_or_else(|| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                let valid: Vec<String> =
                    ipam::IPV6_MODES.iter().map(|m| format!("'{m}'")).collect();
                DomainError::invalid_input(
                    key,
                    format!("'{text}' is not in [{}]", valid.join(", ")),
                )
            }),
    }
}

/// Neutron's `BadRequest` on subnets.
fn bad_subnet(msg: &str) -> DomainError {
    crate::store::subnetpools::bad("BadRequest", format!("Bad subnets request: {msg}."))
}

fn parse_create(who: &Identity, mut b: Body) -> Result<(NewSubnet, Vec<String>), DomainError> {
    let project_id = b.owner(who, "subnet")?;
    let Some(network_id) = b.string("network_id")? else {
        return Err(DomainError::invalid_input(
            "network_id",
            "network_id is required",
        ));
    };
    let network_id = uuid_field("network_id", &network_id)?;
    let cidr_text = match b.raw("cidr") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c),
        Some(v) => {
            return Err(DomainError::invalid_input(
                "cidr",
                format!("'{v}' is not a valid IP subnet"),
            ))
        }
    };
    let prefixlen = match b.int("prefixlen")? {
        None => None,
        Some(n) if (0..=128).contains(&n) => Some(n as u8),
        Some(n) => {
            return Err(DomainError::invalid_input(
                "prefixlen",
                format!("'{n}' is not a prefix length (0 to 128)"),
            ))
        }
    };
    let subnetpool_id = match b.raw("subnetpool_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p == "prefix_delegation" => {
            return Err(DomainError::invalid_input(
                "subnetpool_id",
                "IPv6 prefix delegation is not supported",
            ))
        }
        Some(Value::String(p)) => Some(uuid_field("subnetpool_id", &p)?),
        Some(v) => {
            return Err(DomainError::invalid_input(
                "subnetpool_id",
                format!("'{v}' is not a valid UUID"),
            ))
        }
    };
    let use_default = b.boolean("use_default_subnetpool")?.unwrap_or(false);
    let pool = match (subnetpool_id, use_default) {
        (Some(_), true) => {
            return Err(bad_subnet(
                "subnetpool_id and use_default_subnetpool cannot both be specified",
            ))
        }
        (Some(id), false) => PoolChoice::Pool(id),
        (None, true) => PoolChoice::Default,
        (None, false) => PoolChoice::None,
    };
    if cidr_text.is_some() && prefixlen.is_some() {
        return Err(bad_subnet(
            "cidr and prefixlen must not be supplied together",
        ));
    }
    if cidr_text.is_none() && pool == PoolChoice::None {
        return Err(bad_subnet(
            "a subnetpool must be specified in the absence of a cidr",
        ));
    }
    let asked_version = b.int("ip_version")?;
    if let Some(v) = asked_version.filter(|v| *v != 4 && *v != 6) {
        return Err(DomainError::invalid_input(
            "ip_version",
            format!("{v} is not 4 or 6"),
        ));
    }
    let (cidr, ip_version, gateway_ip, allocation_pools, gateway) = match &cidr_text {
        Some(text) => {
            let cidr = ipam::parse_cidr("cidr", text)?;
            let family = if cidr.addr().is_ipv4() { 4 } else { 6 };
            let ip_version = asked_version.unwrap_or(family);
            if ip_version != family {
                return Err(DomainError::invalid_input(
                    "ip_version",
                    format!("cidr {cidr} is not an IPv{ip_version} subnet"),
                ));
            }
            let gateway_ip = if b.has("gateway_ip") {
                gateway(b.raw("gateway_ip"), &cidr)?
            } else {
                Some(ipam::default_gateway(&cidr))
            };
            let allocation_pools = match pools(&mut b)? {
                Some(p) => {
                    ipam::validate_pools(&cidr, &p, gateway_ip)?;
                    p
                }
                None => ipam::default_pools(&cidr, gateway_ip),
            };
            (cidr, ip_version, gateway_ip, allocation_pools, None)
        }
        None => {
            // The pool's allocation fills these in.
            if b.raw("allocation_pools").is_some_and(|v| !v.is_null()) {
                return Err(bad_subnet(
                    "allocation_pools allowed only for specific subnet requests",
                ));
            }
            let gateway = match b.raw("gateway_ip") {
                None => None,
                Some(Value::Null) => Some(None),
                Some(Value::String(g)) => Some(Some(ipam::parse_ip("gateway_ip", &g)?)),
                Some(v) => {
                    return Err(DomainError::invalid_input(
                        "gateway_ip",
                        format!("'{v}' is not a valid IP address"),
                    ))
                }
            };
            let placeholder: ipnet::IpNet = if asked_version == Some(6) {
                "::/0".parse()
            } else {
                "0.0.0.0/0".parse()
            }
            .map_err(|_| DomainError::internal("placeholder CIDR"))?;
            (
                placeholder,
                asked_version.unwrap_or(4),
                None,
                Vec::new(),
                gateway,
            )
        }
    };
    let name = b.string("name")?.unwrap_or_default();
    let description = b.string("description")?.unwrap_or_default();
    let enable_dhcp = b.boolean("enable_dhcp")?.unwrap_or(true);
    let dns_nameservers = dns(&mut b)?.unwrap_or_default();
    let host_routes = routes(&mut b)?.unwrap_or_default();
    let ipv6_ra_mode = ipv6_mode(&mut b, "ipv6_ra_mode")?;
    let ipv6_address_mode = ipv6_mode(&mut b, "ipv6_address_mode")?;
    b.null_only("segment_id")?;
    if let Some(v) = b.string_list("service_types")? {
        if !v.is_empty() {
            return Err(DomainError::invalid_input(
                "service_types",
                "service types are not supported",
            ));
        }
    }
    let tags = super::tags::create_tags(&mut b)?.unwrap_or_default();
    b.finish()?;
    let ts = String::new();
    let req = NewSubnet {
        subnet: Subnet {
            id: uuid::Uuid::new_v4().to_string(),
            project_id,
            network_id,
            name,
            description,
            ip_version,
            cidr,
            gateway_ip,
            allocation_pools,
            enable_dhcp,
            dns_nameservers,
            host_routes,
            subnetpool_id: None,
            ipv6_ra_mode,
            ipv6_address_mode,
            created_at: ts.clone(),
            updated_at: ts,
            revision_number: 1,
        },
        cidr_given: cidr_text.is_some(),
        pool,
        prefixlen,
        ip_version: asked_version,
        gateway,
    };
    Ok((req, tags))
}
