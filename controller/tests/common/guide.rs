//! The guide's requests as the controller tests send them: pods, nodes registered as agents,
//! networks with a subnet, VM ports bound to a node, the external network (step 10 verbatim).

use serde_json::{json, Value};

use super::{Controller, ADMIN, DEMO};

/// An agent token bound to no node (role `agent`): refused by every node endpoint.
pub const AGENT: &str = "agenttok";

/// Nodes every test controller has a node-bound agent token for ([`agent`]).
pub const AGENT_NODES: &[&str] = &["node1", "node2", "node3", "node9"];

/// The node-bound agent token of `node` (one of [`AGENT_NODES`]).
pub fn agent(node: &str) -> String {
    format!("agenttok-{node}")
}

/// The body of a 2xx answer; anything else fails the test naming `what`.
pub fn ok(r: (u16, Value), what: &str) -> Value {
    assert!((200..300).contains(&r.0), "{what}: {} {}", r.0, r.1);
    r.1
}

/// The guide's three pods: CentralRegion, RegionOne (az1), RegionTwo (az2).
pub fn pods(c: &Controller) {
    for b in [
        json!({"pod": {"region_name": "CentralRegion"}}),
        json!({"pod": {"region_name": "RegionOne", "az_name": "az1"}}),
        json!({"pod": {"region_name": "RegionTwo", "az_name": "az2"}}),
    ] {
        ok(c.t("POST", "/v1.0/pods", Some(ADMIN), Some(&b)), "pod");
    }
}

/// Registers `node` in `pod` (with br-ext when `ext`) with `token`; the raw answer.
pub fn register(c: &Controller, token: &str, node: &str, pod: &str, ext: bool) -> (u16, Value) {
    let (maps, ups) = if ext {
        (
            json!({"bridge": "br-vlan", "extern": "br-ext"}),
            json!(["bridge", "extern"]),
        )
    } else {
        (json!({"bridge": "br-vlan"}), json!(["bridge"]))
    };
    c.t(
        "POST",
        "/v1.0/agents",
        Some(token),
        Some(&json!({"pod": pod, "node": node, "bridge_mappings": maps, "uplinks": ups})),
    )
}

/// The node's published state, at once (`since=0`).
pub fn desired(c: &Controller, node: &str) -> Value {
    ok(
        c.t(
            "GET",
            &format!("/v1.0/agents/{node}/desired?since=0"),
            Some(&agent(node)),
            None,
        ),
        "desired",
    )
}

/// A project network with one subnet: (network id, subnet id).
pub fn net_subnet(c: &Controller, name: &str, cidr: &str) -> (String, String) {
    net_subnet_as(c, DEMO, name, cidr)
}

/// [`net_subnet`] as the project of `token`.
pub fn net_subnet_as(c: &Controller, token: &str, name: &str, cidr: &str) -> (String, String) {
    let n = ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(token),
            Some(&json!({"network": {"name": name}})),
        ),
        "network",
    );
    let nid = n["network"]["id"].as_str().unwrap().to_string();
    let s = ok(
        c.n("POST", "/v2.0/subnets", Some(token), Some(&json!({"subnet": {"network_id": nid, "ip_version": 4, "cidr": cidr, "name": format!("s-{name}")}}))),
        "subnet",
    );
    (nid, s["subnet"]["id"].as_str().unwrap().to_string())
}

/// A VM port on `net`, bound to `host` by the admin: (port id, its IP).
pub fn vm_port(c: &Controller, net: &str, host: &str) -> (String, String) {
    let p = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(DEMO),
            Some(&json!({"port": {"network_id": net, "device_owner": "compute:nova"}})),
        ),
        "port",
    );
    let id = p["port"]["id"].as_str().unwrap().to_string();
    let ip = p["port"]["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/ports/{id}"),
            Some(ADMIN),
            Some(&json!({"port": {"binding:host_id": host}})),
        ),
        "bind",
    );
    (id, ip)
}

/// The guide's step 10: ext-net (VLAN on extern, in RegionTwo) and its subnet.
pub fn ext_net(c: &Controller) -> String {
    // The guide's step 10, verbatim.
    let n = ok(
        c.n("POST", "/v2.0/networks", Some(ADMIN), Some(&serde_json::from_str::<Value>(r#"{"network": {"name": "ext-net", "admin_state_up": true, "router:external": true,  "provider:network_type": "vlan", "provider:physical_network": "extern", "availability_zone_hints": ["RegionTwo"]}}"#).unwrap())),
        "ext-net",
    );
    let id = n["network"]["id"].as_str().unwrap().to_string();
    ok(c.n("POST", "/v2.0/subnets", Some(ADMIN), Some(&json!({"subnet": {"network_id": id, "ip_version": 4, "cidr": "163.3.124.0/24", "enable_dhcp": false, "name": "ext-subnet"}}))), "ext-subnet");
    id
}
