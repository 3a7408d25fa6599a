//! `/openapi.json`: an OpenAPI 3 description of both APIs (served on both ports), detailed
//! enough for a fuzzer: every path, method, body schema and status code.

use serde_json::{json, Value};

fn err() -> Value {
    json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NeutronError"}}}})
}

fn ok(schema: Value) -> Value {
    json!({"description": "ok", "content": {"application/json": {"schema": schema}}})
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}})
}

fn collection(
    single: &str,
    plural: &str,
    create_schema: &str,
    update_schema: &str,
    filters: &[&str],
) -> (Value, Value) {
    let mut params: Vec<Value> = filters
        .iter()
        .map(|f| json!({"name": f, "in": "query", "required": false, "schema": {"type": "string"}}))
        .collect();
    if filters.contains(&"tags") {
        // `tags` above, and the other tag filters: comma-separated tags.
        for f in &crate::api::neutron::query::TagFilters::NAMES[1..] {
            params.push(
                json!({"name": f, "in": "query", "required": false, "schema": {"type": "string"}}),
            );
        }
    }
    for (n, t) in [
        ("fields", "string"),
        ("limit", "integer"),
        ("marker", "string"),
        ("page_reverse", "boolean"),
        ("sort_key", "string"),
    ] {
        params.push(json!({"name": n, "in": "query", "required": false, "schema": {"type": t}}));
    }
    params.push(json!({"name": "sort_dir", "in": "query", "required": false, "schema": {"type": "string", "enum": ["asc", "desc"]}}));
    let errs = |codes: &[&str]| {
        let mut m = serde_json::Map::new();
        for c in codes {
            m.insert(c.to_string(), err());
        }
        m
    };
    let wrap = |s: &str| json!({"type": "object", "required": [single], "properties": {single: {"$ref": format!("#/components/schemas/{s}")}}, "additionalProperties": false});
    let mut list_resp = errs(&["400", "401"]);
    list_resp.insert("200".into(), ok(json!({"type": "object", "properties": {plural: {"type": "array", "items": {"type": "object"}}}})));
    let mut create_resp = errs(&["400", "401", "403", "404", "409", "413"]);
    create_resp.insert("201".into(), ok(json!({"type": "object"})));
    let mut show_resp = errs(&["401", "404"]);
    show_resp.insert("200".into(), ok(json!({"type": "object"})));
    let mut upd_resp = errs(&["400", "401", "403", "404", "409", "413"]);
    upd_resp.insert("200".into(), ok(json!({"type": "object"})));
    let mut del_resp = errs(&["401", "403", "404", "409"]);
    del_resp.insert("204".into(), json!({"description": "deleted"}));
    (
        json!({
            "get": {"summary": format!("List {plural}"), "parameters": params, "responses": list_resp},
            "post": {"summary": format!("Create a {single}"), "requestBody": {"required": true, "content": {"application/json": {"schema": wrap(create_schema)}}}, "responses": create_resp},
        }),
        json!({
            "parameters": [id_param()],
            "get": {"summary": format!("Show a {single}"), "responses": show_resp},
            "put": {"summary": format!("Update a {single}"), "requestBody": {"required": true, "content": {"application/json": {"schema": wrap(update_schema)}}}, "responses": upd_resp},
            "delete": {"summary": format!("Delete a {single}"), "responses": del_resp},
        }),
    )
}

/// `/v2.0/{collection}/{id}/tags` and `.../tags/{tag}` (`standard-attr-tag`).
fn tag_paths(collection: &str) -> [(String, Value); 2] {
    let body = json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Tags"}}}});
    let tags_ok = ok(
        json!({"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}),
    );
    let tag_param = json!({"name": "tag", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 255}});
    [
        (
            format!("/v2.0/{collection}/{{id}}/tags"),
            json!({
                "parameters": [id_param()],
                "get": {"summary": format!("The tags of one of the {collection}"), "responses": {"200": tags_ok, "401": err(), "403": err(), "404": err()}},
                "put": {"summary": "Replace every tag", "requestBody": body, "responses": {"200": tags_ok, "400": err(), "401": err(), "403": err(), "404": err()}},
                "post": {"summary": "Add tags (tag-creation)", "requestBody": body, "responses": {"200": tags_ok, "400": err(), "401": err(), "403": err(), "404": err()}},
                "delete": {"summary": "Remove every tag", "responses": {"204": {"description": "removed"}, "401": err(), "403": err(), "404": err()}},
            }),
        ),
        (
            format!("/v2.0/{collection}/{{id}}/tags/{{tag}}"),
            json!({
                "parameters": [id_param(), tag_param],
                "get": {"summary": "Whether it has the tag", "responses": {"204": {"description": "it has"}, "400": err(), "401": err(), "403": err(), "404": err()}},
                "put": {"summary": "Add the tag", "responses": {"201": {"description": "added"}, "400": err(), "401": err(), "403": err(), "404": err()}},
                "delete": {"summary": "Remove the tag", "responses": {"204": {"description": "removed"}, "400": err(), "401": err(), "403": err(), "404": err()}},
            }),
        ),
    ]
}

/// The OpenAPI document.
pub fn document() -> Value {
    let (nets, net) = collection(
        "network",
        "networks",
        "NetworkCreate",
        "NetworkUpdate",
        crate::api::neutron::networks::ATTRS,
    );
    let (subs, sub) = collection(
        "subnet",
        "subnets",
        "SubnetCreate",
        "SubnetUpdate",
        crate::api::neutron::subnets::ATTRS,
    );
    let (ports, port) = collection(
        "port",
        "ports",
        "PortCreate",
        "PortUpdate",
        crate::api::neutron::ports::ATTRS,
    );
    let (routers, router) = collection(
        "router",
        "routers",
        "RouterCreate",
        "RouterUpdate",
        crate::api::neutron::routers::ATTRS,
    );
    let (fips, fip) = collection(
        "floatingip",
        "floatingips",
        "FloatingIpCreate",
        "FloatingIpUpdate",
        crate::api::neutron::floatingips::ATTRS,
    );
    let (pools, pool) = collection(
        "subnetpool",
        "subnetpools",
        "SubnetPoolCreate",
        "SubnetPoolUpdate",
        crate::api::neutron::subnetpools::ATTRS,
    );
    let (scopes, scope) = collection(
        "address_scope",
        "address_scopes",
        "AddressScopeCreate",
        "AddressScopeUpdate",
        crate::api::neutron::address_scopes::ATTRS,
    );
    let (groups, group) = collection(
        "security_group",
        "security_groups",
        "SecurityGroupCreate",
        "SecurityGroupUpdate",
        crate::api::neutron::security_groups::GROUP_ATTRS,
    );
    let (rules, mut rule) = collection(
        "security_group_rule",
        "security_group_rules",
        "SecurityGroupRuleCreate",
        "SecurityGroupRuleCreate",
        crate::api::neutron::security_groups::RULE_ATTRS,
    );
    // Rules cannot be updated (Neutron's neither).
    if let Some(o) = rule.as_object_mut() {
        o.remove("put");
    }
    let s = |t: &str| json!({"type": t});
    let uuid = json!({"type": "string", "format": "uuid"});
    let nullable_uuid = json!({"type": "string", "format": "uuid", "nullable": true});
    let gateway = json!({"type": "object", "nullable": true, "additionalProperties": false, "properties": {
        "network_id": uuid, "enable_snat": s("boolean"),
        "external_fixed_ips": {"type": "array", "items": {"type": "object", "properties": {"subnet_id": uuid, "ip_address": {"type": "string", "format": "ip"}}}}}});
    let quota = json!({"type": "object", "additionalProperties": false, "properties": {
        "network": s("integer"), "subnet": s("integer"), "port": s("integer"), "router": s("integer"),
        "floatingip": s("integer"), "security_group": s("integer"),
        "security_group_rule": s("integer"), "force": s("boolean")}});
    let project_param =
        json!({"name": "project_id", "in": "path", "required": true, "schema": s("string")});
    let action = |summary: &str| {
        json!({"summary": summary, "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RouterInterface"}}}},
               "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err(), "404": err(), "409": err()}})
    };
    let routes_action = |summary: &str| {
        json!({"summary": summary, "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["router"], "additionalProperties": false, "properties": {"router": {"$ref": "#/components/schemas/RouterRoutes"}}}}}},
               "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err(), "404": err(), "412": err()}})
    };
    let prefix_op = |summary: &str| {
        json!({"summary": summary, "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubnetPoolPrefixes"}}}},
               "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err(), "404": err()}})
    };
    let admin_get = |summary: &str| json!({"summary": summary, "responses": {"200": ok(json!({"type": "object"})), "401": err(), "403": err(), "404": err()}});
    // Apart from the document below: one json! of it all exceeds the macro recursion limit.
    let more_paths = json!({
            "/v2.0/routers/{id}/add_extraroutes": {"parameters": [id_param()], "put": routes_action("Add extra routes to a router (extraroute-atomic)")},
            "/v2.0/routers/{id}/remove_extraroutes": {"parameters": [id_param()], "put": routes_action("Remove extra routes from a router (extraroute-atomic)")},
            "/v2.0/agents": {"get": admin_get("Node agents with their liveness (admin)")},
            "/v2.0/agents/{id}": {"parameters": [id_param()], "get": admin_get("One node agent (admin)"),
                "put": {"summary": "Describe a node's agent or disable it for new port bindings (admin)",
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["agent"], "additionalProperties": false,
                            "properties": {"agent": {"type": "object", "additionalProperties": false, "properties": {"description": s("string"), "admin_state_up": s("boolean")}}}}}}},
                        "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err(), "404": err()}},
                "delete": {"summary": "Decommission a node (admin)", "responses": {"204": {"description": "deleted"}, "401": err(), "403": err(), "404": err()}}},
            "/v2.0/network-ip-availabilities": {"get": admin_get("Addresses in the pools and taken, per network and subnet (admin)")},
            "/v2.0/network-ip-availabilities/{id}": {"parameters": [id_param()], "get": admin_get("One network's IP availability (admin)")},
            "/v2.0/subnetpools": pools, "/v2.0/subnetpools/{id}": pool,
            "/v2.0/subnetpools/{id}/add_prefixes": {"parameters": [id_param()], "put": prefix_op("Add prefixes to a subnet pool (subnetpool-prefix-ops)")},
            "/v2.0/subnetpools/{id}/remove_prefixes": {"parameters": [id_param()], "put": prefix_op("Remove prefixes no subnet uses from a subnet pool (subnetpool-prefix-ops)")},
            "/v2.0/address-scopes": scopes, "/v2.0/address-scopes/{id}": scope,
            "/v2.0/security-groups": groups, "/v2.0/security-groups/{id}": group,
            "/v2.0/security-group-rules": rules, "/v2.0/security-group-rules/{id}": rule
    });
    let quota_get =
        || json!({"responses": {"200": ok(json!({"type": "object"})), "401": err(), "403": err()}});
    let str_list = json!({"type": "array", "items": {"type": "string"}});
    let tags = json!({"type": "array", "maxItems": 50, "uniqueItems": true, "items": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^,]*$"}});
    let pools = json!({"type": "array", "items": {"type": "object", "required": ["start", "end"], "properties": {"start": {"type": "string", "format": "ip"}, "end": {"type": "string", "format": "ip"}}, "additionalProperties": false}});
    let routes = json!({"type": "array", "items": {"type": "object", "required": ["destination", "nexthop"], "properties": {"destination": s("string"), "nexthop": s("string")}}});
    let fixed = json!({"type": "array", "items": {"type": "object", "properties": {"subnet_id": {"type": "string", "format": "uuid"}, "ip_address": {"type": "string", "format": "ip"}}, "additionalProperties": false}});
    let pairs = json!({"type": "array", "maxItems": 10, "items": {"type": "object", "required": ["ip_address"], "additionalProperties": false,
        "properties": {"ip_address": s("string"), "mac_address": s("string")}}});
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "crosspod controller (Neutron v2.0 on port 20001, Tricircle pods on port 19999)", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
            "schemas": {
                "NeutronError": {"type": "object", "properties": {"NeutronError": {"type": "object", "properties": {"type": s("string"), "message": s("string"), "detail": s("string")}}}},
                "NetworkCreate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "admin_state_up": s("boolean"), "shared": s("boolean"),
                    "router:external": s("boolean"), "mtu": {"type": "integer", "minimum": 68, "maximum": 65535},
                    "port_security_enabled": s("boolean"), "availability_zone_hints": str_list,
                    "provider:network_type": {"type": "string", "enum": ["local", "vlan", "flat"]},
                    "provider:physical_network": s("string"), "provider:segmentation_id": {"type": "integer", "minimum": 1, "maximum": 4094},
                    "tags": tags, "project_id": s("string"), "tenant_id": s("string")}},
                "NetworkUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "admin_state_up": s("boolean"), "shared": s("boolean"),
                    "router:external": s("boolean"), "mtu": {"type": "integer"}, "port_security_enabled": s("boolean")}},
                "SubnetCreate": {"type": "object", "required": ["network_id"], "description": "cidr, or a subnet pool (subnetpool_id or use_default_subnetpool) with an optional prefixlen", "additionalProperties": false, "properties": {
                    "network_id": {"type": "string", "format": "uuid"}, "cidr": s("string"), "ip_version": {"type": "integer", "enum": [4, 6]},
                    "subnetpool_id": {"type": "string", "format": "uuid", "nullable": true}, "prefixlen": {"type": "integer", "minimum": 0, "maximum": 128},
                    "use_default_subnetpool": s("boolean"),
                    "name": s("string"), "description": s("string"), "gateway_ip": {"type": "string", "nullable": true},
                    "allocation_pools": pools, "enable_dhcp": s("boolean"), "dns_nameservers": str_list, "host_routes": routes,
                    "ipv6_ra_mode": {"type": "string", "enum": ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"], "nullable": true, "description": "IPv6 only; immutable"},
                    "ipv6_address_mode": {"type": "string", "enum": ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"], "nullable": true, "description": "IPv6 only; immutable; slaac and dhcpv6-stateless give ports their EUI-64 address"},
                    "tags": tags, "project_id": s("string"), "tenant_id": s("string")}},
                "SubnetUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "gateway_ip": {"type": "string", "nullable": true},
                    "allocation_pools": pools, "enable_dhcp": s("boolean"), "dns_nameservers": str_list, "host_routes": routes}},
                "PortCreate": {"type": "object", "required": ["network_id"], "additionalProperties": false, "properties": {
                    "network_id": {"type": "string", "format": "uuid"}, "name": s("string"), "description": s("string"),
                    "admin_state_up": s("boolean"), "mac_address": s("string"), "fixed_ips": fixed, "device_id": s("string"),
                    "device_owner": s("string"), "binding:host_id": s("string"), "port_security_enabled": s("boolean"),
                    "security_groups": {"type": "array", "items": uuid}, "allowed_address_pairs": pairs.clone(),
                    "tags": tags, "project_id": s("string"), "tenant_id": s("string")}},
                "PortUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "admin_state_up": s("boolean"), "fixed_ips": fixed,
                    "device_id": s("string"), "device_owner": s("string"), "binding:host_id": s("string"),
                    "port_security_enabled": s("boolean"), "security_groups": {"type": "array", "items": uuid},
                    "allowed_address_pairs": pairs}},
                "RouterCreate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "admin_state_up": s("boolean"),
                    "external_gateway_info": gateway, "routes": routes, "availability_zone_hints": str_list,
                    "distributed": s("boolean"), "ha": s("boolean"), "flavor_id": {"type": "string", "nullable": true},
                    "tags": tags, "project_id": s("string"), "tenant_id": s("string")}},
                "RouterUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "admin_state_up": s("boolean"),
                    "external_gateway_info": gateway, "routes": {"type": "array", "nullable": true, "items": routes["items"]}}},
                "RouterRoutes": {"type": "object", "required": ["routes"], "additionalProperties": false, "properties": {"routes": routes}},
                "RouterInterface": {"type": "object", "description": "exactly one of subnet_id and port_id", "additionalProperties": false, "properties": {
                    "subnet_id": uuid, "port_id": uuid}},
                "FloatingIpCreate": {"type": "object", "required": ["floating_network_id"], "additionalProperties": false, "properties": {
                    "floating_network_id": uuid, "floating_ip_address": {"type": "string", "format": "ip"}, "subnet_id": uuid,
                    "port_id": nullable_uuid, "fixed_ip_address": {"type": "string", "format": "ip", "nullable": true},
                    "description": s("string"), "tags": tags, "qos_policy_id": {"type": "string", "nullable": true},
                    "dns_domain": {"type": "string", "maxLength": 0}, "dns_name": {"type": "string", "maxLength": 0}, "project_id": s("string"), "tenant_id": s("string")}},
                "FloatingIpUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "port_id": nullable_uuid, "fixed_ip_address": {"type": "string", "format": "ip", "nullable": true},
                    "description": s("string")}},
                "Tags": {"type": "object", "description": "{\"tags\": [...]}; tags is required", "additionalProperties": false, "properties": {"tags": tags}},
                "QuotaUpdate": quota,
                "SubnetPoolCreate": {"type": "object", "required": ["name", "prefixes"], "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "prefixes": str_list,
                    "default_prefixlen": {"type": "integer", "minimum": 0}, "min_prefixlen": {"type": "integer", "minimum": 0},
                    "max_prefixlen": {"type": "integer", "minimum": 0}, "default_quota": {"type": "integer", "minimum": 0, "nullable": true},
                    "is_default": s("boolean"), "shared": s("boolean"), "address_scope_id": nullable_uuid,
                    "tags": tags, "project_id": s("string"), "tenant_id": s("string")}},
                "SubnetPoolUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "prefixes": str_list,
                    "default_prefixlen": {"type": "integer", "minimum": 0}, "min_prefixlen": {"type": "integer", "minimum": 0},
                    "max_prefixlen": {"type": "integer", "minimum": 0}, "default_quota": {"type": "integer", "minimum": 0, "nullable": true},
                    "is_default": s("boolean"), "address_scope_id": nullable_uuid}},
                "SubnetPoolPrefixes": {"type": "object", "required": ["prefixes"], "additionalProperties": false, "properties": {"prefixes": str_list}},
                "AddressScopeCreate": {"type": "object", "required": ["ip_version"], "additionalProperties": false, "properties": {
                    "name": s("string"), "ip_version": {"type": "integer", "enum": [4, 6]}, "shared": s("boolean"),
                    "project_id": s("string"), "tenant_id": s("string")}},
                "AddressScopeUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "shared": s("boolean")}},
                "PodCreate": {"type": "object", "required": ["pod"], "properties": {"pod": {"type": "object", "required": ["region_name"], "additionalProperties": false, "properties": {
                    "region_name": s("string"), "az_name": s("string"), "pod_az_name": s("string"), "dc_name": s("string")}}}}
            }
        },
        "security": [{"token": []}],
        "paths": {
            "/": {"get": {"summary": "Version document", "security": [], "responses": {"200": ok(json!({"type": "object"}))}}},
            "/v2.0/extensions": {"get": {"summary": "Supported extensions", "responses": {"200": ok(json!({"type": "object"})), "401": err()}}},
            "/v2.0/extensions/{alias}": {"get": {"parameters": [{"name": "alias", "in": "path", "required": true, "schema": s("string")}], "responses": {"200": ok(json!({"type": "object"})), "404": err()}}},
            "/v2.0/availability_zones": {"get": {"summary": "Pods' availability zones and regions (what availability_zone_hints may name)", "parameters": [{"name": "resource", "in": "query", "schema": s("string")}, {"name": "name", "in": "query", "schema": s("string")}], "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err()}}},
            "/v2.0/networks": nets, "/v2.0/networks/{id}": net,
            "/v2.0/subnets": subs, "/v2.0/subnets/{id}": sub,
            "/v2.0/ports": ports, "/v2.0/ports/{id}": port,
            "/v2.0/routers": routers, "/v2.0/routers/{id}": router,
            "/v2.0/routers/{id}/add_router_interface": {"parameters": [id_param()], "put": action("Add an interface (a subnet, or a port of the router's project) to a router")},
            "/v2.0/routers/{id}/remove_router_interface": {"parameters": [id_param()], "put": action("Remove an interface from a router")},
            "/v2.0/floatingips": fips, "/v2.0/floatingips/{id}": fip,
            "/v2.0/quotas": {"get": {"summary": "List projects' non-default quotas (admin)", "responses": {"200": ok(json!({"type": "object"})), "401": err(), "403": err()}}},
            "/v2.0/quotas/{project_id}": {"parameters": [project_param],
                "get": {"summary": "A project's quota (admin or the project itself)", "responses": quota_get()["responses"]},
                "put": {"summary": "Set a project's quota (admin)", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["quota"], "properties": {"quota": {"$ref": "#/components/schemas/QuotaUpdate"}}, "additionalProperties": false}}}},
                        "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err()}},
                "delete": {"summary": "Reset a project's quota to the defaults (admin)", "responses": {"204": {"description": "reset"}, "401": err(), "403": err()}}},
            "/v2.0/quotas/{project_id}/details": {"parameters": [project_param], "get": quota_get()},
            "/v2.0/quotas/{project_id}/default": {"parameters": [project_param], "get": quota_get()},
            "/v1.0/pods": {
                "get": {"summary": "List pods (Tricircle API, port 19999)", "responses": {"200": ok(json!({"type": "object"})), "401": err(), "403": err()}},
                "post": {"summary": "Create a pod (Tricircle API, port 19999)", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PodCreate"}}}},
                         "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err(), "409": err(), "413": err(), "422": err()}}},
            "/v1.0/pods/{id}": {"parameters": [id_param()],
                "get": {"responses": {"200": ok(json!({"type": "object"})), "401": err(), "403": err(), "404": err()}},
                "delete": {"responses": {"204": {"description": "deleted"}, "401": err(), "403": err(), "404": err(), "409": err()}}}
        }
    });
    if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), more_paths) {
        paths.extend(more);
        for c in crate::store::Tagged::ALL {
            paths.extend(tag_paths(c.collection()));
        }
    }
    if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), tricircle_admin()) {
        paths.extend(more);
    }
    let job_types: Vec<&str> = crate::store::jobs::JobType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    doc["components"]["schemas"]["SecurityGroupCreate"] = json!({"type": "object", "additionalProperties": false, "properties": {
        "name": s("string"), "description": s("string"), "stateful": {"type": "boolean", "enum": [true]},
        "project_id": s("string"), "tenant_id": s("string")}});
    doc["components"]["schemas"]["SecurityGroupUpdate"] = json!({"type": "object", "additionalProperties": false, "properties": {
        "name": s("string"), "description": s("string")}});
    doc["components"]["schemas"]["SecurityGroupRuleCreate"] = json!({"type": "object", "required": ["security_group_id", "direction"], "additionalProperties": false, "properties": {
        "security_group_id": uuid, "direction": {"type": "string", "enum": ["ingress", "egress"]},
        "ethertype": {"type": "string", "enum": ["IPv4", "IPv6"]}, "protocol": {"type": "string", "nullable": true},
        "port_range_min": {"type": "integer", "nullable": true, "minimum": 0, "maximum": 65535},
        "port_range_max": {"type": "integer", "nullable": true, "minimum": 0, "maximum": 65535},
        "remote_ip_prefix": {"type": "string", "nullable": true}, "remote_group_id": nullable_uuid,
        "description": s("string"), "project_id": s("string"), "tenant_id": s("string")}});
    doc["components"]["schemas"]["JobCreate"] = json!({"type": "object", "required": ["type", "project_id", "resource"], "additionalProperties": false, "properties": {
        "type": {"type": "string", "enum": job_types}, "project_id": s("string"),
        "resource": {"type": "object", "required": ["router_id"], "additionalProperties": false, "properties": {"router_id": uuid}}}});
    doc
}

/// `/v1.0/jobs` and `/v1.0/routings` (Tricircle's admin API, port 19999, admin only).
fn tricircle_admin() -> Value {
    let q = |name: &str, t: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": t}});
    let job_params = json!([
        q("project_id", "string"),
        q("type", "string"),
        q("status", "string"),
        q("limit", "integer"),
        q("marker", "string")
    ]);
    let mut routing_params: Vec<Value> = crate::service::routings::FILTERS
        .iter()
        .map(|f| q(f, if *f == "id" { "integer" } else { "string" }))
        .collect();
    routing_params.push(q("limit", "integer"));
    routing_params.push(q("marker", "integer"));
    let get = |summary: &str, params: Value| {
        json!({"summary": summary, "parameters": params,
        "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err()}})
    };
    let refused = |summary: &str| json!({"summary": summary, "responses": {"401": err(), "403": err(), "405": err()}});
    let int_id =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}});
    json!({
        "/v1.0/jobs": {
            "get": get("List jobs: active first, then the log (Tricircle API, port 19999)", job_params.clone()),
            "post": {"summary": "Queue a job for a resource, re-syncing it (Tricircle API, port 19999)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["job"], "additionalProperties": false, "properties": {"job": {"$ref": "#/components/schemas/JobCreate"}}}}}},
                "responses": {"202": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err(), "404": err(), "413": err()}}},
        "/v1.0/jobs/detail": {"get": get("List jobs (as /v1.0/jobs)", job_params)},
        "/v1.0/jobs/schemas": {"get": get("Job types and the keys of their resource", json!([]))},
        "/v1.0/jobs/{id}": {"parameters": [id_param()],
            "get": {"summary": "One job, active or from the log", "responses": {"200": ok(json!({"type": "object"})), "401": err(), "403": err(), "404": err()}},
            "put": {"summary": "Redo a NEW or FAIL job now (no body)", "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err(), "404": err()}},
            "delete": {"summary": "Delete a NEW or FAIL job", "responses": {"200": ok(json!({"type": "object"})), "400": err(), "401": err(), "403": err(), "404": err()}}},
        "/v1.0/routers/{id}/placement": {"parameters": [id_param()],
            "get": {"summary": "Where each instance of a router runs, its standbys, and whether it moved (admin)", "responses": {"200": ok(json!({"type": "object"})), "401": err(), "403": err(), "404": err()}}},
        "/v1.0/routings": {
            "get": get("Where each network, subnet, router and port is realized, by pod (derived, read-only)", Value::Array(routing_params)),
            "post": refused("Refused: routings are derived (405)")},
        "/v1.0/routings/{id}": {"parameters": [int_id],
            "get": {"summary": "One routing", "responses": {"200": ok(json!({"type": "object"})), "401": err(), "403": err(), "404": err()}},
            "put": refused("Refused: routings are derived (405)"),
            "delete": refused("Refused: routings are derived (405)")}
    })
}
