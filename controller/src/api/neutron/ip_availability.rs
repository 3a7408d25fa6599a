//! `/v2.0/network-ip-availabilities` (`network-ip-availability`): per network and subnet, the
//! addresses in the allocation pools and those taken. Admin only, as Neutron's.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::query::ListQuery;
use super::{op, Op};
use crate::api::{json as respond, App, Ctx};
use crate::auth::Identity;
use crate::error::DomainError;
use crate::service::networks::{self, SubnetAvailability};
use crate::store::Network;

/// Attributes (filterable and sortable).
pub const ATTRS: &[&str] = &[
    "network_id",
    "network_name",
    "tenant_id",
    "project_id",
    "total_ips",
    "used_ips",
    "subnet_ip_availability",
    "ip_version",
];

/// A count as an integer: an IPv6 pool larger than u64 (beyond a /64) saturates.
fn count(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn render(n: &Network, subnets: &[SubnetAvailability]) -> Value {
    let total: u128 = subnets
        .iter()
        .map(|s| s.total_ips)
        .fold(0, u128::saturating_add);
    let used: i64 = subnets.iter().map(|s| s.used_ips).sum();
    json!({
        "network_id": n.id, "network_name": n.name,
        "tenant_id": n.project_id, "project_id": n.project_id,
        "total_ips": count(total), "used_ips": used,
        "subnet_ip_availability": subnets.iter().map(|s| json!({
            "subnet_id": s.subnet.id, "subnet_name": s.subnet.name,
            "cidr": s.subnet.cidr.to_string(), "ip_version": s.subnet.ip_version,
            "total_ips": count(s.total_ips), "used_ips": s.used_ips,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) async fn handle(
    app: &App,
    ctx: &Ctx,
    who: &Identity,
    rest: &[&str],
) -> Result<Response, DomainError> {
    let all = networks::ip_availability(app, who).await?;
    match op(ctx, rest)? {
        Op::List => {
            // `ip_version` filters the subnets, as Neutron's does.
            let mut q = ListQuery::parse(&ctx.query, ATTRS)?;
            let version = ctx
                .query
                .iter()
                .find(|(k, _)| k == "ip_version")
                .and_then(|(_, v)| v.parse::<i64>().ok());
            q.filters.retain(|(k, _)| k != "ip_version");
            let items = all
                .iter()
                .map(|(n, subs)| {
                    let subs: Vec<SubnetAvailability> = subs
                        .iter()
                        .filter(|s| version.is_none_or(|v| s.subnet.ip_version == v))
                        .cloned()
                        .collect();
                    render(n, &subs)
                })
                .collect();
            Ok(respond(
                StatusCode::OK,
                &q.page_body(items, &ctx.base_url(), "network_ip_availabilities")?,
            ))
        }
        Op::Show(id) => {
            let (n, subs) = all
                .iter()
                .find(|(n, _)| n.id == *id)
                .ok_or_else(|| DomainError::not_found("Network", "NetworkNotFound", id))?;
            Ok(respond(
                StatusCode::OK,
                &json!({"network_ip_availability": render(n, subs)}),
            ))
        }
        _ => Err(crate::api::method_not_allowed(ctx)),
    }
}
