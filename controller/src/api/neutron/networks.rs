//! `/v2.0/networks`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::query::ListQuery;
use super::{check_id, op, Body, Op};
use crate::api::{json as respond, no_content, App, Ctx};
use crate::auth::Identity;
use crate::config::NetworkType;
use crate::error::DomainError;
use crate::service::{networks, policy};
use crate::store::{Network, NewNetwork, Scope, Segment, SegmentRequest, Tagged};

/// Attributes of a network (filterable and sortable).
pub const ATTRS: &[&str] = &[
    "id",
    "name",
    "tenant_id",
    "project_id",
    "admin_state_up",
    "status",
    "subnets",
    "shared",
    "mtu",
    "availability_zone_hints",
    "availability_zones",
    "router:external",
    "description",
    "port_security_enabled",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "l2_adjacency",
];

/// A network as Neutron shows it (provider attributes to admins only), with its tags.
pub fn render(n: &Network, who: &Identity, tags: &[String]) -> Value {
    let mut v = json!({
        "id": n.id, "name": n.name, "tenant_id": n.project_id, "project_id": n.project_id,
        "admin_state_up": n.admin_state_up, "status": n.status, "subnets": n.subnets,
        "shared": n.shared, "mtu": n.mtu, "availability_zone_hints": n.az_hints,
        "availability_zones": n.az_hints, "ipv4_address_scope": n.ipv4_address_scope, "ipv6_address_scope": n.ipv6_address_scope,
        "router:external": n.external, "description": n.description,
        "port_security_enabled": n.port_security_enabled, "tags": tags,
        "created_at": n.created_at, "updated_at": n.updated_at,
        "revision_number": n.revision_number, "l2_adjacency": true,
    });
    if who.is_admin() {
        let (t, p, s) = match &n.segment {
            Segment::Local => ("local", None, None),
            Segment::Vlan { physnet, id } => ("vlan", Some(physnet.clone()), Some(i64::from(*id))),
            Segment::Flat { physnet } => ("flat", Some(physnet.clone()), None),
            Segment::Vxlan { vni } => ("vxlan", None, Some(i64::from(*vni))),
        };
        v["provider:network_type"] = json!(t);
        v["provider:physical_network"] = json!(p);
        v["provider:segmentation_id"] = json!(s);
    }
    v
}

/// A network the caller may see (404 for a malformed id, as for an unknown one).
pub async fn load_visible(app: &App, who: &Identity, id: &str) -> Result<Network, DomainError> {
    check_id(id, "Network", "NetworkNotFound")?;
    networks::load_visible(app, who, id).await
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
            let tags = super::tags::all(app, Tagged::Network).await?;
            let items = app
                .store
                .list_networks(&scope)
                .await?
                .iter()
                .map(|n| render(n, who, tags.get(&n.id)))
                .collect();
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "networks")?,
            ))
        }
        Op::Show(id) => {
            let n = load_visible(app, who, id).await?;
            let q = ListQuery::parse(&ctx.query, ATTRS)?;
            let tags = super::tags::of(app, Tagged::Network, &n.id).await?;
            Ok(respond(
                StatusCode::OK,
                &q.show_body(render(&n, who, &tags), "network"),
            ))
        }
        Op::Create => {
            let (new, asks, tags) =
                parse_create(app, who, Body::new(ctx.resource_body("network")?))?;
            let n = networks::create(app, who, &new, asks, &tags).await?;
            let tags = super::tags::of(app, Tagged::Network, &n.id).await?;
            Ok(respond(
                StatusCode::CREATED,
                &json!({"network": render(&n, who, &tags)}),
            ))
        }
        Op::Update(id) => {
            check_id(id, "Network", "NetworkNotFound")?;
            let mut b = Body::new(ctx.resource_body("network")?);
            let u = networks::Update {
                name: b.string("name")?,
                description: b.string("description")?,
                admin_state_up: b.boolean("admin_state_up")?,
                shared: b.boolean("shared")?,
                external: b.boolean("router:external")?,
                mtu: b.int("mtu")?.map(check_mtu).transpose()?,
                port_security_enabled: b.boolean("port_security_enabled")?,
            };
            for ro in [
                "provider:network_type",
                "provider:physical_network",
                "provider:segmentation_id",
                "availability_zone_hints",
                "id",
                "project_id",
                "tenant_id",
                "status",
                "subnets",
            ] {
                if b.has(ro) {
                    return Err(DomainError::bad_request(format!(
                        "Cannot update read-only attribute {ro}"
                    )));
                }
            }
            super::tags::refuse_in_update(&b, "networks")?;
            b.finish()?;
            let n = networks::update(app, who, id, &u, super::if_match(ctx)?).await?;
            let tags = super::tags::of(app, Tagged::Network, &n.id).await?;
            Ok(respond(
                StatusCode::OK,
                &json!({"network": render(&n, who, &tags)}),
            ))
        }
        Op::Delete(id) => {
            check_id(id, "Network", "NetworkNotFound")?;
            networks::delete(app, who, id).await?;
            Ok(no_content())
        }
    }
}

fn check_mtu(v: i64) -> Result<i64, DomainError> {
    if !(68..=65535).contains(&v) {
        return Err(DomainError::invalid_input(
            "mtu",
            format!("{v} is not in 68..65535"),
        ));
    }
    Ok(v)
}

fn parse_create(
    app: &App,
    who: &Identity,
    mut b: Body,
) -> Result<(NewNetwork, networks::CreateAsks, Vec<String>), DomainError> {
    let project_id = b.owner(who, "network")?;
    let chosen_id = b.string("id")?;
    let id = match &chosen_id {
        Some(v) => super::uuid_field("id", v)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let name = b.string("name")?.unwrap_or_default();
    let description = b.string("description")?.unwrap_or_default();
    let admin_state_up = b.boolean("admin_state_up")?.unwrap_or(true);
    let shared = b.boolean("shared")?.unwrap_or(false);
    let external = b.boolean("router:external")?.unwrap_or(false);
    let mtu = b.int("mtu")?.map(check_mtu).transpose()?;
    let port_security_enabled = b.boolean("port_security_enabled")?.unwrap_or(true);
    let az_hints = b
        .string_list("availability_zone_hints")?
        .unwrap_or_default();
    let ntype = b.string("provider:network_type")?;
    let physnet = b.string("provider:physical_network")?;
    let seg = b.int("provider:segmentation_id")?;
    b.null_only("qos_policy_id")?;
    b.null_only("dns_domain")?;
    let tags = super::tags::create_tags(&mut b)?.unwrap_or_default();
    if let Some(Value::Bool(false)) | Some(Value::Null) | None = b.raw("is_default") {
    } else {
        return Err(DomainError::invalid_input(
            "is_default",
            "default external networks are not supported",
        ));
    }
    b.finish()?;
    let asks = networks::CreateAsks {
        id: chosen_id.is_some(),
        provider: ntype.is_some() || physnet.is_some() || seg.is_some(),
    };
    if asks.provider {
        // Before validating provider values: a member learns nothing of the physnets.
        policy::enforce(
            who,
            "create_network:provider:network_type",
            &policy::Target::owned_by(&project_id),
        )?;
    }
    let ranges = &app.config.network_vlan_ranges;
    let segment = match ntype.as_deref() {
        None => {
            if physnet.is_some() || seg.is_some() {
                return Err(DomainError::invalid_input(
                    "provider:network_type",
                    "required when provider:physical_network or provider:segmentation_id is given",
                ));
            }
            match app.config.tenant_network_types[0] {
                NetworkType::Local => SegmentRequest::Local,
                NetworkType::Vlan => SegmentRequest::Vlan {
                    physnet: None,
                    id: None,
                },
                NetworkType::Flat => {
                    return Err(DomainError::invalid_input(
                        "provider:network_type",
                        "the default tenant network type flat needs provider:physical_network",
                    ))
                }
                NetworkType::Vxlan => SegmentRequest::Vxlan { id: None },
            }
        }
        Some("vxlan") => {
            if physnet.is_some() {
                return Err(DomainError::invalid_input(
                    "provider:physical_network",
                    "a vxlan network has no physical network",
                ));
            }
            let id = match seg {
                None => None,
                Some(v) if (1..=i64::from(crate::vlan_pool::MAX_VNI)).contains(&v) => {
                    Some(v as u32)
                }
                Some(v) => {
                    return Err(DomainError::invalid_input(
                        "provider:segmentation_id",
                        format!("{v} is not a VxLAN VNI (1..16777215)"),
                    ))
                }
            };
            SegmentRequest::Vxlan { id }
        }
        Some("local") => {
            if physnet.is_some() || seg.is_some() {
                return Err(DomainError::invalid_input(
                    "provider:physical_network",
                    "a local network has no physical network or segmentation id",
                ));
            }
            SegmentRequest::Local
        }
        Some("flat") => {
            if seg.is_some() {
                return Err(DomainError::invalid_input(
                    "provider:segmentation_id",
                    "a flat network has no segmentation id",
                ));
            }
            let Some(p) = physnet else {
                return Err(DomainError::invalid_input(
                    "provider:physical_network",
                    "required for a flat network",
                ));
            };
            SegmentRequest::Flat { physnet: p }
        }
        Some("vlan") => {
            if let Some(p) = &physnet {
                if !ranges.has_physnet(p) {
                    return Err(DomainError::invalid_input(
                        "provider:physical_network",
                        format!("'{p}' is not a physical network of network_vlan_ranges"),
                    ));
                }
            }
            let id = match seg {
                None => None,
                Some(v) => {
                    let Some(p) = &physnet else {
                        return Err(DomainError::invalid_input(
                            "provider:physical_network",
                            "required with provider:segmentation_id",
                        ));
                    };
                    if !(1..=4094).contains(&v) {
                        return Err(DomainError::invalid_input(
                            "provider:segmentation_id",
                            format!("{v} is not a VLAN ID (1..4094)"),
                        ));
                    }
                    if let Some((lo, hi)) = ranges.range(p) {
                        if v < i64::from(lo) || v > i64::from(hi) {
                            return Err(DomainError::invalid_input(
                                "provider:segmentation_id",
                                format!(
                                    "{v} is outside the range {lo}:{hi} of physical network {p}"
                                ),
                            ));
                        }
                    }
                    Some(v as u16)
                }
            };
            SegmentRequest::Vlan { physnet, id }
        }
        Some(other) => {
            return Err(DomainError::invalid_input(
                "provider:network_type",
                format!("'{other}' is not one of local, vlan, flat, vxlan"),
            ))
        }
    };
    if let SegmentRequest::Vlan { physnet: None, .. } = segment {
        if ranges.physnets_with_ranges().next().is_none() {
            return Err(DomainError::invalid_input(
                "provider:network_type",
                "no physical network has a VLAN range",
            ));
        }
    }
    // Neutron's MTU: the underlay's, less the VxLAN overhead on a VxLAN network; a larger
    // one asked for could not cross the tunnels.
    let global = i64::from(app.config.global_physnet_mtu);
    let max = match segment {
        SegmentRequest::Vxlan { .. } => global - i64::from(planner::VXLAN_OVERHEAD),
        _ => global,
    };
    let mtu = match mtu {
        None => max,
        Some(v) if matches!(segment, SegmentRequest::Vxlan { .. }) && v > max => {
            return Err(DomainError::invalid_input(
                "mtu",
                format!("Requested MTU is too big, maximum is {max}"),
            ))
        }
        Some(v) => v,
    };
    Ok((
        NewNetwork {
            id,
            project_id,
            name,
            description,
            admin_state_up,
            shared,
            external,
            mtu,
            port_security_enabled,
            segment,
            az_hints,
        },
        asks,
        tags,
    ))
}
