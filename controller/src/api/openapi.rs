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
    let s = |t: &str| json!({"type": t});
    let uuid = json!({"type": "string", "format": "uuid"});
    let nullable_uuid = json!({"type": "string", "format": "uuid", "nullable": true});
    let gateway = json!({"type": "object", "nullable": true, "additionalProperties": false, "properties": {
        "network_id": uuid, "enable_snat": s("boolean"),
        "external_fixed_ips": {"type": "array", "items": {"type": "object", "properties": {"subnet_id": uuid, "ip_address": {"type": "string", "format": "ip"}}}}}});
    let quota = json!({"type": "object", "additionalProperties": false, "properties": {
        "network": s("integer"), "subnet": s("integer"), "port": s("integer"), "router": s("integer"),
        "floatingip": s("integer"), "force": s("boolean")}});
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
                "delete": {"summary": "Decommission a node (admin)", "responses": {"204": {"description": "deleted"}, "401": err(), "403": err(), "404": err()}}},
            "/v2.0/network-ip-availabilities": {"get": admin_get("Addresses in the pools and taken, per network and subnet (admin)")},
            "/v2.0/network-ip-availabilities/{id}": {"parameters": [id_param()], "get": admin_get("One network's IP availability (admin)")},
            "/v2.0/subnetpools": pools, "/v2.0/subnetpools/{id}": pool,
            "/v2.0/subnetpools/{id}/add_prefixes": {"parameters": [id_param()], "put": prefix_op("Add prefixes to a subnet pool (subnetpool-prefix-ops)")},
            "/v2.0/subnetpools/{id}/remove_prefixes": {"parameters": [id_param()], "put": prefix_op("Remove prefixes no subnet uses from a subnet pool (subnetpool-prefix-ops)")},
            "/v2.0/address-scopes": scopes, "/v2.0/address-scopes/{id}": scope
    });
    let quota_get =
        || json!({"responses": {"200": ok(json!({"type": "object"})), "401": err(), "403": err()}});
    let str_list = json!({"type": "array", "items": {"type": "string"}});
    let pools = json!({"type": "array", "items": {"type": "object", "required": ["start", "end"], "properties": {"start": {"type": "string", "format": "ip"}, "end": {"type": "string", "format": "ip"}}, "additionalProperties": false}});
    let routes = json!({"type": "array", "items": {"type": "object", "required": ["destination", "nexthop"], "properties": {"destination": s("string"), "nexthop": s("string")}}});
    let fixed = json!({"type": "array", "items": {"type": "object", "properties": {"subnet_id": {"type": "string", "format": "uuid"}, "ip_address": {"type": "string", "format": "ip"}}, "additionalProperties": false}});
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
                    "project_id": s("string"), "tenant_id": s("string")}},
                "NetworkUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "admin_state_up": s("boolean"), "shared": s("boolean"),
                    "router:external": s("boolean"), "mtu": {"type": "integer"}, "port_security_enabled": s("boolean")}},
                "SubnetCreate": {"type": "object", "required": ["network_id"], "description": "cidr, or a subnet pool (subnetpool_id or use_default_subnetpool) with an optional prefixlen", "additionalProperties": false, "properties": {
                    "network_id": {"type": "string", "format": "uuid"}, "cidr": s("string"), "ip_version": {"type": "integer", "enum": [4, 6]},
                    "subnetpool_id": {"type": "string", "format": "uuid", "nullable": true}, "prefixlen": {"type": "integer", "minimum": 0, "maximum": 128},
                    "use_default_subnetpool": s("boolean"),
                    "name": s("string"), "description": s("string"), "gateway_ip": {"type": "string", "nullable": true},
                    "allocation_pools": pools, "enable_dhcp": s("boolean"), "dns_nameservers": str_list, "host_routes": routes,
                    "project_id": s("string"), "tenant_id": s("string")}},
                "SubnetUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "gateway_ip": {"type": "string", "nullable": true},
                    "allocation_pools": pools, "enable_dhcp": s("boolean"), "dns_nameservers": str_list, "host_routes": routes}},
                "PortCreate": {"type": "object", "required": ["network_id"], "additionalProperties": false, "properties": {
                    "network_id": {"type": "string", "format": "uuid"}, "name": s("string"), "description": s("string"),
                    "admin_state_up": s("boolean"), "mac_address": s("string"), "fixed_ips": fixed, "device_id": s("string"),
                    "device_owner": s("string"), "binding:host_id": s("string"), "port_security_enabled": s("boolean"),
                    "security_groups": {"type": "array", "maxItems": 0}, "project_id": s("string"), "tenant_id": s("string")}},
                "PortUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "admin_state_up": s("boolean"), "fixed_ips": fixed,
                    "device_id": s("string"), "device_owner": s("string"), "binding:host_id": s("string"),
                    "port_security_enabled": s("boolean"), "security_groups": {"type": "array", "maxItems": 0}}},
                "RouterCreate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "admin_state_up": s("boolean"),
                    "external_gateway_info": gateway, "routes": routes, "availability_zone_hints": str_list,
                    "distributed": s("boolean"), "ha": s("boolean"), "flavor_id": {"type": "string", "nullable": true},
                    "tags": str_list, "project_id": s("string"), "tenant_id": s("string")}},
                "RouterUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "admin_state_up": s("boolean"),
                    "external_gateway_info": gateway, "routes": {"type": "array", "nullable": true, "items": routes["items"]}, "tags": str_list}},
                "RouterRoutes": {"type": "object", "required": ["routes"], "additionalProperties": false, "properties": {"routes": routes}},
                "RouterInterface": {"type": "object", "description": "exactly one of subnet_id and port_id", "additionalProperties": false, "properties": {
                    "subnet_id": uuid, "port_id": uuid}},
                "FloatingIpCreate": {"type": "object", "required": ["floating_network_id"], "additionalProperties": false, "properties": {
                    "floating_network_id": uuid, "floating_ip_address": {"type": "string", "format": "ip"}, "subnet_id": uuid,
                    "port_id": nullable_uuid, "fixed_ip_address": {"type": "string", "format": "ip", "nullable": true},
                    "description": s("string"), "tags": str_list, "qos_policy_id": {"type": "string", "nullable": true},
                    "dns_domain": s("string"), "dns_name": s("string"), "project_id": s("string"), "tenant_id": s("string")}},
                "FloatingIpUpdate": {"type": "object", "additionalProperties": false, "properties": {
                    "port_id": nullable_uuid, "fixed_ip_address": {"type": "string", "format": "ip", "nullable": true},
                    "description": s("string"), "tags": str_list}},
                "QuotaUpdate": quota,
                "SubnetPoolCreate": {"type": "object", "required": ["name", "prefixes"], "additionalProperties": false, "properties": {
                    "name": s("string"), "description": s("string"), "prefixes": str_list,
                    "default_prefixlen": {"type": "integer", "minimum": 0}, "min_prefixlen": {"type": "integer", "minimum": 0},
                    "max_prefixlen": {"type": "integer", "minimum": 0}, "default_quota": {"type": "integer", "minimum": 0, "nullable": true},
                    "is_default": s("boolean"), "shared": s("boolean"), "address_scope_id": nullable_uuid,
                    "project_id": s("string"), "tenant_id": s("string")}},
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
    }
    doc
}
