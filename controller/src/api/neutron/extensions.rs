//! `/v2.0/extensions`: exactly what this controller serves, so clients never try an API that
//! is not there and never see an attribute of an extension they were not told about.
//! `controller/tests/tags.rs` walks every list and show and checks each attribute against
//! this list (an attribute of an extension not listed here is dropped from the rendering).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::api::{json as respond, method_not_allowed, Ctx};
use crate::error::DomainError;

/// (alias, name, description) of every supported extension.
pub const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("availability_zone", "Availability Zone", "The availability zone extension."),
    ("network_availability_zone", "Network Availability Zone", "Availability zone support for network."),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway"),
    ("l3-ha", "HA Router extension", "Adds HA capability to routers. crosspod routers show ha false: one gateway instance per router until router failover lands; ha true is refused."),
    ("router_availability_zone", "Router Availability Zone", "Availability zone support for router."),
    ("l2_adjacency", "L2 Adjacency", "Display L2 Adjacency for Neutron Networks."),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("extraroute-atomic", "Atomically add/remove extra routes", "Edit extra routes of a router on server side by atomically adding/removing extra routes"),
    ("fip-port-details", "Floating IP Port Details Extension", "Add port_details attribute to Floating IP resource"),
    ("agent", "agent", "The agent management extension."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("port-security", "Port Security", "Provides port security"),
    ("security-group", "security-group", "The security groups extension."),
    ("stateful-security-group", "Stateful security group", "Indicates if the security group is stateful or not"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
    ("network-ip-availability", "Network IP Availability", "Provides IP availability data for each network and subnet."),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a network resource."),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources."),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes."),
    ("standard-attr-tag", "Tag support for resources with standard attribute: network, subnet, port, router, floatingip, subnetpool", "Enables to set tag on resources with standard attribute."),
    ("tag-creation", "Tag creation extension", "Allow to create multiple tags for a resource"),
    ("tag-ports-during-bulk-creation", "Tag Ports During Bulk Creation", "Allow to tag ports during bulk creation"),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("filter-validation", "Filter parameters validation", "Provides validation on filter parameters."),
    ("quotas", "Quota management support", "Expose functions for quotas management per project"),
    ("quota_details", "Quota details management support", "Expose functions for quotas usage statistics per project"),
    ("revision-if-match", "If-Match constraints based on revision_number", "Extension indicating that If-Match based on revision_number is supported."),
    ("subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool"),
    ("address-scope", "Address scope", "Address scopes extension."),
    ("default-subnetpools", "Default Subnetpools", "Provides ability to mark and use a subnetpool as the default."),
    ("subnetpool-prefix-ops", "Subnet Pool Prefix Operations", "Provides support for adjusting the prefix list of subnet pools"),
];

fn ext(alias: &str, name: &str, desc: &str) -> Value {
    json!({"alias": alias, "name": name, "description": desc, "updated": "2026-01-01T00:00:00-00:00", "links": []})
}

pub(crate) fn handle(ctx: &Ctx, rest: &[&str]) -> Result<Response, DomainError> {
    if ctx.method != axum::http::Method::GET {
        return Err(method_not_allowed(ctx));
    }
    match rest {
        ["extensions"] => {
            let all: Vec<Value> = EXTENSIONS.iter().map(|(a, n, d)| ext(a, n, d)).collect();
            Ok(respond(StatusCode::OK, &json!({"extensions": all})))
        }
        ["extensions", alias] => match EXTENSIONS.iter().find(|(a, _, _)| a == alias) {
            Some((a, n, d)) => Ok(respond(StatusCode::OK, &json!({"extension": ext(a, n, d)}))),
            None => Err(DomainError::new(
                crate::error::ErrorClass::NotFound,
                "ExtensionNotFound",
                format!("Extension with alias {alias} does not exist"),
            )),
        },
        _ => Err(DomainError::no_route(&ctx.path)),
    }
}
