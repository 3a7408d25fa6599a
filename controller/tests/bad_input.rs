//! Bad input never gives a 500 or a half-made resource: 4xx with a message naming the field.
mod common;

use common::*;
use serde_json::{json, Value};

fn expect_4xx(c: &Controller, method: &str, path: &str, body: &[u8], want: u16, mention: &str) {
    let (s, raw) = request_raw(c.neutron, method, path, Some(ADMIN), Some(body), &[]);
    let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    assert_eq!(
        s,
        want,
        "{method} {path} {}: {}",
        String::from_utf8_lossy(&body[..body.len().min(200)]),
        String::from_utf8_lossy(&raw)
    );
    let msg = v["NeutronError"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("Neutron-shaped error expected: {v}"));
    assert!(
        msg.contains(mention),
        "message {msg:?} should mention {mention:?}"
    );
}

fn count(c: &Controller, coll: &str) -> usize {
    let (_, v) = c.n("GET", &format!("/v2.0/{coll}"), Some(ADMIN), None);
    v[coll].as_array().unwrap().len()
}

#[test]
fn malformed_bodies_and_bad_values() {
    let c = Controller::start();
    let (_, net) = c.n(
        "POST",
        "/v2.0/networks",
        Some(ADMIN),
        Some(&json!({"network": {"name": "ok"}})),
    );
    let nid = net["network"]["id"].as_str().unwrap().to_string();
    let (_, sub) = c.n(
        "POST",
        "/v2.0/subnets",
        Some(ADMIN),
        Some(&json!({"subnet": {"network_id": nid, "cidr": "10.2.0.0/24", "ip_version": 4}})),
    );
    let sid = sub["subnet"]["id"].as_str().unwrap().to_string();
    let n0 = count(&c, "networks");
    let (np, sp) = (
        format!("/v2.0/networks/{nid}"),
        format!("/v2.0/subnets/{sid}"),
    );
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("POST", "/v2.0/networks", "{\"network\": {".into(), 400, "Malformed JSON"),
        ("POST", "/v2.0/networks", "".into(), 400, "body required"),
        ("POST", "/v2.0/networks", "[1,2]".into(), 400, "JSON object"),
        ("POST", "/v2.0/networks", "{\"network\": 5}".into(), 400, "network"),
        ("POST", "/v2.0/networks", "{\"net\": {}}".into(), 400, "net"),
        ("POST", "/v2.0/networks", json!({"network": {"name": 5}}).to_string(), 400, "name"),
        ("POST", "/v2.0/networks", json!({"network": {"admin_state_up": "maybe"}}).to_string(), 400, "admin_state_up"),
        ("POST", "/v2.0/networks", json!({"network": {"mtu": "big"}}).to_string(), 400, "mtu"),
        ("POST", "/v2.0/networks", json!({"network": {"mtu": 10}}).to_string(), 400, "mtu"),
        ("POST", "/v2.0/networks", json!({"network": {"colour": "red"}}).to_string(), 400, "colour"),
        ("POST", "/v2.0/networks", json!({"network": {"availability_zone_hints": "az1"}}).to_string(), 400, "availability_zone_hints"),
        ("POST", "/v2.0/networks", json!({"network": {"provider:network_type": "geneve"}}).to_string(), 400, "provider:network_type"),
        ("POST", "/v2.0/networks", json!({"network": {"provider:network_type": "vlan", "provider:physical_network": "nowhere"}}).to_string(), 400, "provider:physical_network"),
        ("POST", "/v2.0/networks", json!({"network": {"provider:network_type": "vlan", "provider:segmentation_id": 5000, "provider:physical_network": "bridge"}}).to_string(), 400, "provider:segmentation_id"),
        ("POST", "/v2.0/networks", json!({"network": {"provider:network_type": "flat"}}).to_string(), 400, "provider:physical_network"),
        ("POST", "/v2.0/networks", json!({"network": {"name": "x".repeat(300)}}).to_string(), 400, "name"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": nid, "cidr": "10.0.0.300/24"}}).to_string(), 400, "cidr"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": nid, "cidr": "10.9.0.5/24"}}).to_string(), 400, "cidr"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": nid, "cidr": "10.2.0.0/16"}}).to_string(), 400, "overlaps"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": nid, "cidr": "10.8.0.0/24", "ip_version": 6}}).to_string(), 400, "ip_version"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": nid, "cidr": "10.8.0.0/24", "gateway_ip": "10.8.0.255"}}).to_string(), 400, "gateway_ip"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": nid, "cidr": "10.8.0.0/24", "gateway_ip": "banana"}}).to_string(), 400, "gateway_ip"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": nid, "cidr": "10.8.0.0/24", "allocation_pools": [{"start": "10.8.0.9", "end": "10.8.0.2"}]}}).to_string(), 400, "allocation_pools"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": nid, "cidr": "10.8.0.0/24", "allocation_pools": [{"start": "10.8.0.1", "end": "10.8.0.20"}]}}).to_string(), 409, "Gateway"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": nid, "cidr": "10.8.0.0/24", "dns_nameservers": ["x"]}}).to_string(), 400, "dns_nameservers"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": "not-a-uuid", "cidr": "10.8.0.0/24"}}).to_string(), 400, "network_id"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"network_id": "00000000-0000-0000-0000-000000000000", "cidr": "10.8.0.0/24"}}).to_string(), 404, "00000000"),
        ("POST", "/v2.0/subnets", json!({"subnet": {"cidr": "10.8.0.0/24"}}).to_string(), 400, "network_id"),
        ("POST", "/v2.0/ports", json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": "10.2.0.999"}]}}).to_string(), 400, "fixed_ips[0].ip_address"),
        ("POST", "/v2.0/ports", json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": "10.77.0.5"}]}}).to_string(), 400, "fixed_ips[0]"),
        ("POST", "/v2.0/ports", json!({"port": {"network_id": nid, "fixed_ips": [{"subnet_id": "nope"}]}}).to_string(), 400, "subnet_id"),
        ("POST", "/v2.0/ports", json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": "10.2.0.1"}]}}).to_string(), 409, "gateway"),
        ("POST", "/v2.0/ports", json!({"port": {"network_id": nid, "fixed_ips": "10.2.0.5"}}).to_string(), 400, "fixed_ips"),
        ("POST", "/v2.0/ports", json!({"port": {"network_id": nid, "mac_address": "zz:zz"}}).to_string(), 400, "mac_address"),
        ("POST", "/v2.0/ports", json!({"port": {"network_id": nid, "security_groups": ["default"]}}).to_string(), 400, "security_groups"),
        ("POST", "/v2.0/ports", json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": "10.2.0.5"}, {"ip_address": "10.2.0.5"}]}}).to_string(), 409, "10.2.0.5"),
        ("PUT", &np, json!({"network": {"provider:segmentation_id": 7}}).to_string(), 400, "provider:segmentation_id"),
        ("PUT", &sp, json!({"subnet": {"cidr": "10.4.0.0/24"}}).to_string(), 400, "cidr"),
        ("PUT", &sp, json!({"subnet": {"gateway_ip": "10.2.0.50"}}).to_string(), 409, "Gateway"),
    ];
    for (m, p, b, s, w) in &cases {
        expect_4xx(&c, m, p, b.as_bytes(), *s, w);
    }
    assert_eq!(count(&c, "networks"), n0, "no half-made networks");
    assert_eq!(count(&c, "subnets"), 1, "no half-made subnets");
    assert_eq!(count(&c, "ports"), 0, "no half-made ports");
    // Bad ids in paths are 404 naming the id.
    for p in [
        "/v2.0/networks/xyz",
        "/v2.0/subnets/1234",
        "/v2.0/ports/00000000-0000-0000-0000-000000000000",
    ] {
        let (s, v) = c.n("GET", p, Some(ADMIN), None);
        assert_eq!(s, 404, "{p}");
        assert!(v["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains(p.rsplit('/').next().unwrap()));
    }
    assert!(!c.log_has_5xx(), "no 500s");
}

#[test]
fn huge_bodies_are_413() {
    let c = Controller::start();
    let big = format!(
        "{{\"network\": {{\"name\": \"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let (s, raw) = request_raw(
        c.neutron,
        "POST",
        "/v2.0/networks",
        Some(ADMIN),
        Some(big.as_bytes()),
        &[],
    );
    assert_eq!(s, 413, "{}", String::from_utf8_lossy(&raw));
    let v: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(v["NeutronError"]["type"], "RequestEntityTooLarge");
    let (s, _) = request_raw(
        c.tricircle,
        "POST",
        "/v1.0/pods",
        Some(ADMIN),
        Some(big.as_bytes()),
        &[],
    );
    assert_eq!(s, 413);
    let (_, v) = c.n("GET", "/v2.0/networks", Some(ADMIN), None);
    assert_eq!(v["networks"].as_array().unwrap().len(), 0);
    // Pods: wrong types and unknown fields.
    for body in [
        json!({"pod": {"region_name": 7}}),
        json!({"pod": {"region_name": "R", "colour": "x"}}),
        json!({"pod": []}),
    ] {
        let (s, v) = c.t("POST", "/v1.0/pods", Some(ADMIN), Some(&body));
        assert_eq!(s, 400, "{body}: {v}");
    }
    assert!(!c.log_has_5xx());
}
