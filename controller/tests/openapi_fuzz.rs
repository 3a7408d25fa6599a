//! A small fuzzer driven by the controller's own /openapi.json: every writable property of
//! every request body gets wrong-typed and odd values; the answer must be a Neutron-shaped
//! 4xx or a success, never a 5xx.
mod common;

use common::*;
use serde_json::{json, Value};

fn odd_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(0),
        json!(-1),
        json!(1.5),
        json!(99999999999i64),
        json!(""),
        json!("x"),
        json!("10.0.0.0/33"),
        json!("00000000-0000-0000-0000-000000000000"),
        json!("x".repeat(300)),
        json!("€".repeat(300)),
        json!("fa:16:3e:00:00:01"),
        json!("::1"),
        json!("\u{0000}\u{ffff}'\";--"),
        json!(true),
        json!([]),
        json!([1, "a", null]),
        json!([{"start": "1.1.1.1"}]),
        json!({}),
        json!({"a": {"b": [1]}}),
    ]
}

fn schema<'a>(doc: &'a Value, body_schema: &'a Value) -> &'a Value {
    // {"type": "object", "properties": {"network": {"$ref": "#/components/schemas/X"}}} or a direct $ref
    let inner = body_schema["properties"]
        .as_object()
        .and_then(|p| p.values().next())
        .unwrap_or(body_schema);
    let r = inner["$ref"]
        .as_str()
        .or_else(|| body_schema["$ref"].as_str());
    match r {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            let s = &doc["components"]["schemas"][name];
            // PodCreate wraps once more.
            if s["properties"]["pod"].is_object() {
                &s["properties"]["pod"]
            } else {
                s
            }
        }
        None => inner,
    }
}

#[test]
fn openapi_driven_fuzz_never_5xx() {
    let c = Controller::start();
    let (_, doc) = c.n("GET", "/openapi.json", None, None);
    // Objects to aim PUTs at, and valid parents for creates.
    let (_, n) = c.n(
        "POST",
        "/v2.0/networks",
        Some(ADMIN),
        Some(&json!({"network": {"name": "fz"}})),
    );
    let nid = n["network"]["id"].as_str().unwrap().to_string();
    let (_, s) = c.n(
        "POST",
        "/v2.0/subnets",
        Some(ADMIN),
        Some(&json!({"subnet": {"network_id": nid, "cidr": "10.99.0.0/24"}})),
    );
    let sid = s["subnet"]["id"].as_str().unwrap().to_string();
    let (_, p) = c.n(
        "POST",
        "/v2.0/ports",
        Some(ADMIN),
        Some(&json!({"port": {"network_id": nid}})),
    );
    let pid = p["port"]["id"].as_str().unwrap().to_string();
    let (_, sc) = c.n(
        "POST",
        "/v2.0/address-scopes",
        Some(ADMIN),
        Some(&json!({"address_scope": {"name": "fz", "ip_version": 4}})),
    );
    let scid = sc["address_scope"]["id"].as_str().unwrap().to_string();
    let (_, sp) = c.n(
        "POST",
        "/v2.0/subnetpools",
        Some(ADMIN),
        Some(&json!({"subnetpool": {"name": "fz", "prefixes": ["10.97.0.0/16"], "address_scope_id": scid}})),
    );
    let spid = sp["subnetpool"]["id"].as_str().unwrap().to_string();
    let (_, sg) = c.n(
        "POST",
        "/v2.0/security-groups",
        Some(ADMIN),
        Some(&json!({"security_group": {"name": "fz"}})),
    );
    let sgid = sg["security_group"]["id"].as_str().unwrap().to_string();
    let mut sent = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put"] {
            let Some(op) = item.get(method) else { continue };
            let body_schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if body_schema.is_null() {
                continue; // no body (PUT .../tags/{tag}, a job's redo, a refused write)
            }
            let s = schema(&doc, body_schema);
            // A body is `{key: {...}}` (Neutron's resources, the pod) unless its schema is
            // the body itself (`{"tags": [...]}`).
            let key = match body_schema["required"][0].as_str() {
                Some(k) => Some(k.to_string()),
                None if path.starts_with("/v1.0/pods") => Some("pod".to_string()),
                None => None,
            };
            let props = s["properties"].as_object().expect("properties");
            let (real_path, base): (String, Value) = match (path.as_str(), method) {
                (p, _) if p.contains("/tags") => {
                    let id = match p.split('/').nth(2) {
                        Some("networks") => &nid,
                        Some("subnets") => &sid,
                        Some("ports") => &pid,
                        Some("subnetpools") => &spid,
                        Some("security-groups") => &sgid,
                        _ => "{id}",
                    };
                    (p.replace("{id}", id), json!({}))
                }
                ("/v2.0/networks/{id}", _) => (format!("/v2.0/networks/{nid}"), json!({})),
                ("/v2.0/subnets/{id}", _) => (format!("/v2.0/subnets/{sid}"), json!({})),
                ("/v2.0/ports/{id}", _) => (format!("/v2.0/ports/{pid}"), json!({})),
                ("/v2.0/subnetpools/{id}", _) => (format!("/v2.0/subnetpools/{spid}"), json!({})),
                ("/v2.0/subnetpools/{id}/add_prefixes", _)
                | ("/v2.0/subnetpools/{id}/remove_prefixes", _) => {
                    (path.replace("{id}", &spid), json!({}))
                }
                ("/v2.0/address-scopes/{id}", _) => {
                    (format!("/v2.0/address-scopes/{scid}"), json!({}))
                }
                ("/v2.0/subnetpools", _) => (
                    path.clone(),
                    json!({"name": "fz2", "prefixes": ["10.96.0.0/16"]}),
                ),
                ("/v2.0/address-scopes", _) => (path.clone(), json!({"ip_version": 6})),
                ("/v2.0/security-groups/{id}", _) => {
                    (format!("/v2.0/security-groups/{sgid}"), json!({}))
                }
                ("/v2.0/security-group-rules", _) => (
                    path.clone(),
                    json!({"security_group_id": sgid, "direction": "ingress"}),
                ),
                ("/v2.0/subnets", _) => (
                    path.clone(),
                    json!({"network_id": nid, "cidr": "10.98.0.0/24"}),
                ),
                ("/v2.0/ports", _) => (path.clone(), json!({"network_id": nid})),
                ("/v1.0/pods", _) => (
                    path.clone(),
                    json!({"region_name": "FuzzRegion", "az_name": "fz"}),
                ),
                ("/v1.0/jobs", _) => (
                    path.clone(),
                    json!({"type": "router_setup", "project_id": "demo", "resource": {"router_id": pid}}),
                ),
                _ => (path.clone(), json!({})),
            };
            let target = if path.starts_with("/v1.0") {
                c.tricircle
            } else {
                c.neutron
            };
            for prop in props.keys() {
                for v in odd_values() {
                    let mut b = base.clone();
                    b[prop.as_str()] = v.clone();
                    // Tag lists and the prefix actions take their body unwrapped.
                    let body = match &key {
                        Some(k) if !path.ends_with("_prefixes") => json!({ k.as_str(): b }),
                        _ => b,
                    };
                    let verb = method.to_uppercase();
                    let (status, resp) = request(
                        target,
                        &verb,
                        &real_path,
                        Some(ADMIN),
                        Some(body.to_string().as_bytes()),
                    );
                    sent += 1;
                    assert!(status < 500, "{verb} {real_path} {body} -> {status} {resp}");
                    if status >= 400 {
                        assert!(
                            resp["NeutronError"]["message"].is_string(),
                            "{verb} {real_path} {body}: not Neutron-shaped: {resp}"
                        );
                    }
                    // Keep the pool of names free for later cases.
                    if status == 200 && path == "/v1.0/pods" {
                        let id = resp["pod"]["pod_id"].as_str().unwrap();
                        request(
                            target,
                            "DELETE",
                            &format!("/v1.0/pods/{id}"),
                            Some(ADMIN),
                            None,
                        );
                    }
                    if status == 201 {
                        let (k, v) = resp.as_object().unwrap().iter().next().unwrap();
                        let id = v["id"].as_str().unwrap();
                        let coll = match k.as_str() {
                            "address_scope" => "address-scopes".to_string(),
                            "security_group" => "security-groups".to_string(),
                            "security_group_rule" => "security-group-rules".to_string(),
                            k => format!("{k}s"),
                        };
                        let (s, _) =
                            c.n("DELETE", &format!("/v2.0/{coll}/{id}"), Some(ADMIN), None);
                        assert!(s == 204 || s == 409, "cleanup of {k} {id}: {s}");
                    }
                }
            }
        }
    }
    assert!(
        sent > 300,
        "the fuzzer covered the schemas ({sent} requests)"
    );
    assert!(!c.log_has_5xx());
}

#[test]
fn query_strings_and_paths_never_5xx() {
    let c = Controller::start();
    let (_, doc) = c.n("GET", "/openapi.json", None, None);
    let odd = [
        "",
        "x",
        "-1",
        "0",
        "99999999999999999999",
        "True",
        "none",
        "%00",
        "%E2%82%AC",
        "a%3Db",
        "ip_address%3D",
        "10.0.0.0%2F8",
    ];
    let mut sent = 0;
    for coll in [
        "networks",
        "subnets",
        "ports",
        "subnetpools",
        "address-scopes",
        "security-groups",
        "security-group-rules",
    ] {
        let (_, n) = c.n(
            "POST",
            "/v2.0/networks",
            Some(ADMIN),
            Some(&json!({"network": {}})),
        );
        assert!(n["network"]["id"].is_string());
        let params: Vec<String> = doc["paths"][format!("/v2.0/{coll}")]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        for p in &params {
            for v in odd {
                let path = format!("/v2.0/{coll}?{p}={v}&{p}={v}");
                let (s, body) = c.n("GET", &path, Some(ADMIN), None);
                sent += 1;
                assert!(s < 500, "GET {path} -> {s} {body}");
                assert!(
                    s == 200 || body["NeutronError"].is_object(),
                    "GET {path} -> {s} {body}"
                );
            }
        }
        for id in [
            "x",
            "%2F",
            "..",
            "00000000-0000-0000-0000-000000000000",
            &"f".repeat(300),
        ] {
            for m in ["GET", "PUT", "DELETE", "POST", "PATCH"] {
                let (s, body) = c.n(m, &format!("/v2.0/{coll}/{id}"), Some(ADMIN), None);
                sent += 1;
                assert!(
                    (400..500).contains(&s),
                    "{m} /v2.0/{coll}/{id} -> {s} {body}"
                );
            }
        }
    }
    assert!(sent > 500, "{sent}");
    assert!(!c.log_has_5xx());
}
