//! The guide's own curl commands (step 5 pods, step 10 external network), verbatim, with the
//! real `curl`, plus the pod API's error cases, and Tricircle's admin API reference
//! (`/v1.0/jobs`, `/v1.0/routings`; the multi-pod guide itself has no jobs command) written
//! the guide's way: `curl ... -H "X-Auth-Token: $token"`.
mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn curl(args: &[&str]) -> Value {
    let out = Command::new("curl")
        .arg("-sS")
        .args(args)
        .output()
        .expect("curl is needed for this test (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "curl output not JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn guide_step5_pods_and_step10_external_network() {
    let c = Controller::start();
    let token = ADMIN;
    let pods = format!("{}/v1.0/pods", c.tricircle_url());
    let auth = format!("X-Auth-Token: {token}");
    let central = curl(&[
        "-X",
        "POST",
        &pods,
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        r#"{"pod": {"region_name":  "CentralRegion"}}"#,
    ]);
    let one = curl(&[
        "-X",
        "POST",
        &pods,
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        r#"{"pod": {"region_name":  "RegionOne", "az_name": "az1"}}"#,
    ]);
    let two = curl(&[
        "-X",
        "POST",
        &pods,
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        r#"{"pod": {"region_name":  "RegionTwo", "az_name": "az2"}}"#,
    ]);
    assert_eq!(central["pod"]["region_name"], "CentralRegion");
    assert_eq!(central["pod"]["az_name"], "");
    assert_eq!(one["pod"]["az_name"], "az1");
    assert_eq!(two["pod"]["region_name"], "RegionTwo");
    assert!(uuid::Uuid::parse_str(two["pod"]["pod_id"].as_str().unwrap()).is_ok());
    let list = curl(&[&pods, "-H", &auth]);
    assert_eq!(list["pods"].as_array().unwrap().len(), 3);

    let (s, azs) = c.n(
        "GET",
        "/v2.0/availability_zones?resource=network",
        Some(DEMO),
        None,
    );
    assert_eq!(s, 200);
    let names: Vec<&str> = azs["availability_zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for n in ["az1", "az2", "RegionOne", "RegionTwo", "CentralRegion"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }

    let nets = format!("{}/v2.0/networks", c.neutron_url());
    let ext = curl(&[
        "-X",
        "POST",
        &nets,
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        r#"{"network": {"name": "ext-net", "admin_state_up": true, "router:external": true,  "provider:network_type": "vlan", "provider:physical_network": "extern", "availability_zone_hints": ["RegionTwo"]}}"#,
    ]);
    let n = &ext["network"];
    assert_eq!(n["name"], "ext-net");
    assert_eq!(n["router:external"], true);
    assert_eq!(n["provider:network_type"], "vlan");
    assert_eq!(n["provider:physical_network"], "extern");
    assert_eq!(
        n["provider:segmentation_id"], 3001,
        "first VLAN of extern:3001:4000"
    );
    assert_eq!(n["availability_zone_hints"], json!(["RegionTwo"]));

    // Step 10's subnet and step 6's networks, with the openstack CLI as the neutron CLI's heir.
    let ext_sub = openstack_json(
        &c,
        ADMIN,
        &[
            "subnet",
            "create",
            "--network",
            "ext-net",
            "--subnet-range",
            "163.3.124.0/24",
            "--no-dhcp",
            "ext-subnet",
        ],
    );
    assert_eq!(ext_sub["enable_dhcp"], false);
    assert_eq!(ext_sub["gateway_ip"], "163.3.124.1");
    for (net, cidr) in [("net1", "10.0.1.0/24"), ("net2", "10.0.2.0/24")] {
        let n = openstack_json(&c, ADMIN, &["network", "create", net]);
        assert_eq!(
            n["provider:network_type"], "local",
            "Tricircle's default tenant type"
        );
        let s = openstack_json(
            &c,
            ADMIN,
            &[
                "subnet",
                "create",
                "--network",
                net,
                "--subnet-range",
                cidr,
                &format!("{net}-sub"),
            ],
        );
        assert_eq!(s["cidr"], cidr);
    }

    // The pod hosting ext-net cannot go; an unknown hint is refused.
    let two_id = two["pod"]["pod_id"].as_str().unwrap();
    let (s, body) = c.t("DELETE", &format!("/v1.0/pods/{two_id}"), Some(ADMIN), None);
    assert_eq!(s, 409, "{body}");
    let (s, body) = c.n(
        "POST",
        "/v2.0/networks",
        Some(ADMIN),
        Some(&json!({"network": {"name": "x", "availability_zone_hints": ["RegionNine"]}})),
    );
    assert_eq!(s, 400);
    assert!(body["NeutronError"]["message"]
        .as_str()
        .unwrap()
        .contains("RegionNine"));
    let (s, _) = c.n(
        "POST",
        "/v2.0/networks",
        Some(ADMIN),
        Some(&json!({"network": {"name": "y", "availability_zone_hints": ["az1"]}})),
    );
    assert_eq!(s, 201, "an az_name is a valid hint");
}

#[test]
fn pod_api_errors() {
    let c = Controller::start();
    let body = |v: Value| Some(v);
    let (s, _) = c.t(
        "POST",
        "/v1.0/pods",
        Some(ADMIN),
        body(json!({"pod": {"region_name": "R1", "az_name": "az1"}})).as_ref(),
    );
    assert_eq!(s, 200);
    let (s, _) = c.t(
        "POST",
        "/v1.0/pods",
        Some(ADMIN),
        body(json!({"pod": {"region_name": "R1", "az_name": "az7"}})).as_ref(),
    );
    assert_eq!(s, 409, "duplicate region");
    let (s, _) = c.t(
        "POST",
        "/v1.0/pods",
        Some(ADMIN),
        body(json!({"pod": {"region_name": "C"}})).as_ref(),
    );
    assert_eq!(s, 200);
    let (s, b) = c.t(
        "POST",
        "/v1.0/pods",
        Some(ADMIN),
        body(json!({"pod": {"region_name": "C2"}})).as_ref(),
    );
    assert_eq!(s, 409, "second central pod: {b}");
    let (s, _) = c.t(
        "POST",
        "/v1.0/pods",
        Some(ADMIN),
        body(json!({"pods": {"region_name": "X"}})).as_ref(),
    );
    assert_eq!(s, 400, "missing pod body");
    let (s, b) = c.t(
        "POST",
        "/v1.0/pods",
        Some(ADMIN),
        body(json!({"pod": {"az_name": "az3"}})).as_ref(),
    );
    assert_eq!(s, 422, "missing region_name: {b}");
    assert!(b["NeutronError"]["message"]
        .as_str()
        .unwrap()
        .contains("region_name"));
    let (s, _) = c.t(
        "POST",
        "/v1.0/pods",
        Some(DEMO),
        body(json!({"pod": {"region_name": "M"}})).as_ref(),
    );
    assert_eq!(s, 403, "admin only");
    let (s, _) = c.t("GET", "/v1.0/pods", None, None);
    assert_eq!(s, 401);
    let (s, _) = c.t(
        "GET",
        "/v1.0/pods/00000000-0000-0000-0000-000000000000",
        Some(ADMIN),
        None,
    );
    assert_eq!(s, 404);
    let (s, _) = c.t("DELETE", "/v1.0/pods/nope", Some(ADMIN), None);
    assert_eq!(s, 404);
    let (s, list) = c.t("GET", "/v1.0/pods", Some(ADMIN), None);
    assert_eq!(s, 200);
    let pods = list["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 2);
    let id = pods[0]["pod_id"].as_str().unwrap();
    let (s, one) = c.t("GET", &format!("/v1.0/pods/{id}"), Some(ADMIN), None);
    assert_eq!((s, &one["pod"]["pod_id"]), (200, &json!(id)));
    let (s, _) = c.t("DELETE", &format!("/v1.0/pods/{id}"), Some(ADMIN), None);
    assert_eq!(s, 204);
    let (s, _) = c.t("GET", &format!("/v1.0/pods/{id}"), Some(ADMIN), None);
    assert_eq!(s, 404);
    let (s, _) = c.t("PUT", "/v1.0/pods", Some(ADMIN), None);
    assert_eq!(s, 405);
    assert!(!c.log_has_5xx());
}

#[test]
fn admin_api_jobs_and_routings_with_curl() {
    let c = Controller::start();
    let auth = format!("X-Auth-Token: {ADMIN}");
    let base = c.tricircle_url();
    guide::pods(&c);
    guide::ok(
        guide::register(&c, &guide::agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    let (net1, sub1) = guide::net_subnet(&c, "net1", "10.0.1.0/24");
    guide::vm_port(&c, &net1, "node1");
    let r = guide::ok(
        c.n(
            "POST",
            "/v2.0/routers",
            Some(DEMO),
            Some(&json!({"router": {"name": "router"}})),
        ),
        "router",
    )["router"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    guide::ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{r}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sub1})),
        ),
        "interface",
    );

    let jobs = curl(&[&format!("{base}/v1.0/jobs"), "-H", &auth]);
    let j = &jobs["jobs"][0];
    assert_eq!(j["type"], "router_setup", "{jobs}");
    assert_eq!(j["resource"]["router_id"], r.as_str());
    let schemas = curl(&[&format!("{base}/v1.0/jobs/schemas"), "-H", &auth]);
    assert_eq!(schemas["schemas"][0]["resource"], json!(["router_id"]));
    let body = format!(
        r#"{{"job": {{"type": "router_setup", "project_id": "demo", "resource": {{"router_id": "{r}"}}}}}}"#
    );
    let posted = curl(&[
        "-X",
        "POST",
        &format!("{base}/v1.0/jobs"),
        "-H",
        "Content-Type: application/json",
        "-H",
        &auth,
        "-d",
        &body,
    ]);
    assert_eq!(posted["job"]["status"], "NEW", "{posted}");
    let id = posted["job"]["id"].as_str().unwrap();
    let one = curl(&[&format!("{base}/v1.0/jobs/{id}"), "-H", &auth]);
    assert_eq!(one["job"]["id"], id);
    let filtered = curl(&[
        &format!("{base}/v1.0/jobs?type=router_setup&limit=1"),
        "-H",
        &auth,
    ]);
    assert_eq!(filtered["jobs"].as_array().unwrap().len(), 1, "{filtered}");
    let refused = curl(&[
        &format!("{base}/v1.0/jobs"),
        "-H",
        &format!("X-Auth-Token: {DEMO}"),
    ]);
    assert_eq!(refused["NeutronError"]["type"], "PolicyNotAuthorized");

    // GET /v1.0/routings?limit=2, then the next link as given.
    let page = curl(&[&format!("{base}/v1.0/routings?limit=2"), "-H", &auth]);
    assert_eq!(page["routings"].as_array().unwrap().len(), 2, "{page}");
    let next = page["routings_links"][0]["href"].as_str().unwrap();
    let page2 = curl(&[&format!("{base}{next}"), "-H", &auth]);
    let first: Vec<i64> = page["routings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    assert!(page2["routings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["id"].as_i64().unwrap() < first[1]));
    let routers = curl(&[
        &format!("{base}/v1.0/routings?resource_type=router"),
        "-H",
        &auth,
    ]);
    assert_eq!(routers["routings"][0]["top_id"], r.as_str(), "{routers}");
    assert!(!c.log_has_5xx());
}
