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
use crate::service::subnets;
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
        "network_id": s.network_id, "ip_version": s.ip_version, "subnetpool_id": null,
        "enable_dhcp": s.enable_dhcp, "ipv6_ra_mode": null, "ipv6_address_mode": null,
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
            let (s, tags) = parse_create(who, Body::new(ctx.resource_body("subnet")?))?;
            let s = subnets::create(app, who, &s, &tags).await?;
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
            // As Neutron: a gateway outside the subnet is allowed (a router elsewhere); inside
            // it, the network and broadcast addresses are not.
            if ip.is_ipv4() != cidr.addr().is_ipv4() {
                return Err(DomainError::invalid_input(
                    "gateway_ip",
                    format!("gateway {ip} is not of the IP version of subnet {cidr}"),
                ));
            }
            if cidr.contains(&ip) && !ipam::is_host(cidr, ip) {
                return Err(DomainError::invalid_input(
                    "gateway_ip",
                    format!("gateway {ip} is the network or broadcast address of subnet {cidr}"),
                ));
            }
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

fn parse_create(who: &Identity, mut b: Body) -> Result<(Subnet, Vec<String>), DomainError> {
    let project_id = b.owner(who, "subnet")?;
    let Some(network_id) = b.string("network_id")? else {
        return Err(DomainError::invalid_input(
            "network_id",
            "network_id is required",
        ));
    };
    let network_id = uuid_field("network_id", &network_id)?;
    let Some(cidr_text) = b.string("cidr")? else {
        return Err(DomainError::invalid_input(
            "cidr",
            "cidr is required (subnet pools are not supported)",
        ));
    };
    let cidr = ipam::parse_cidr("cidr", &cidr_text)?;
    let family = if cidr.addr().is_ipv4() { 4 } else { 6 };
    let ip_version = b.int("ip_version")?.unwrap_or(family);
    if ip_version != 4 && ip_version != 6 {
        return Err(DomainError::invalid_input(
            "ip_version",
            format!("{ip_version} is not 4 or 6"),
        ));
    }
    if ip_version != family {
        return Err(DomainError::invalid_input(
            "ip_version",
            format!("cidr {cidr} is not an IPv{ip_version} subnet"),
        ));
    }
    let name = b.string("name")?.unwrap_or_default();
    let description = b.string("description")?.unwrap_or_default();
    let enable_dhcp = b.boolean("enable_dhcp")?.unwrap_or(true);
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
    let dns_nameservers = dns(&mut b)?.unwrap_or_default();
    let host_routes = routes(&mut b)?.unwrap_or_default();
    for k in [
        "subnetpool_id",
        "ipv6_ra_mode",
        "ipv6_address_mode",
        "segment_id",
        "prefixlen",
    ] {
        b.null_only(k)?;
    }
    if let Some(v) = b.boolean("use_default_subnet_pool")? {
        if v {
            return Err(DomainError::invalid_input(
                "use_default_subnet_pool",
                "subnet pools are not supported",
            ));
        }
    }
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
    let subnet = Subnet {
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
        created_at: ts.clone(),
        updated_at: ts,
        revision_number: 1,
    };
    Ok((subnet, tags))
}
