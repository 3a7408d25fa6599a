//! Neutron API semantics over HTTP: version documents, extensions, OpenAPI, auth and
//! projects, filters, fields, sorting, pagination, VLAN exhaustion.
mod common;

use common::*;
use serde_json::{json, Value};

fn create(c: &Controller, token: &str, coll: &str, key: &str, body: Value) -> Value {
    let (s, v) = c.n(
        "POST",
        &format!("/v2.0/{coll}"),
        Some(token),
        Some(&json!({key: body})),
    );
    assert_eq!(s, 201, "create {key}: {v}");
    v[key].clone()
}

#[test]
fn documents_extensions_and_openapi() {
    let c = Controller::start();
    let (s, v) = c.n("GET", "/", None, None);
    assert_eq!(s, 200);
    assert_eq!(v["versions"][0]["id"], "v2.0");
    assert!(v["versions"][0]["links"][0]["href"]
        .as_str()
        .unwrap()
        .ends_with("/v2.0/"));
    let (s, v) = c.n("GET", "/v2.0/", None, None);
    assert_eq!(s, 200);
    let collections: Vec<&str> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["collection"].as_str().unwrap())
        .collect();
    assert_eq!(
        collections,
        [
            "networks",
            "subnets",
            "ports",
            "routers",
            "floatingips",
            "subnetpools",
            "address-scopes",
            "security-groups",
            "security-group-rules"
        ]
    );
    let (s, v) = c.n("GET", "/v2.0/extensions", Some(DEMO), None);
    assert_eq!(s, 200);
    let aliases: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap())
        .collect();
    for a in [
        "provider",
        "external-net",
        "availability_zone",
        "router",
        "subnet_allocation",
        "address-scope",
        "default-subnetpools",
        "subnetpool-prefix-ops",
        "security-group",
        "allowed-address-pairs",
    ] {
        assert!(aliases.contains(&a), "{a} listed");
    }
    assert!(!aliases.contains(&"qos"), "not implemented, not listed");
    let (s, _) = c.n("GET", "/v2.0/extensions/provider", Some(DEMO), None);
    assert_eq!(s, 200);
    let (s, v) = c.n("GET", "/v2.0/extensions/qos", Some(DEMO), None);
    assert_eq!(s, 404);
    assert_eq!(v["NeutronError"]["type"], "ExtensionNotFound");
    for addr in [c.neutron, c.tricircle] {
        let (s, v) = request(addr, "GET", "/openapi.json", None, None);
        assert_eq!(s, 200);
        assert_eq!(v["openapi"], "3.0.3");
        for p in [
            "/v2.0/networks",
            "/v2.0/subnets/{id}",
            "/v2.0/ports",
            "/v1.0/pods",
        ] {
            assert!(v["paths"][p].is_object(), "openapi has {p}");
        }
    }
    let (s, v) = c.n("GET", "/v2.0/routerz", Some(DEMO), None);
    assert_eq!(s, 404);
    assert_eq!(v["NeutronError"]["type"], "HTTPNotFound");
    let (s, _) = c.n("PATCH", "/v2.0/networks", Some(DEMO), None);
    assert_eq!(s, 405);
}

#[test]
fn auth_projects_and_token_reload() {
    let c = Controller::start();
    let (s, v) = c.n("GET", "/v2.0/networks", None, None);
    assert_eq!(s, 401);
    assert!(v["NeutronError"]["message"].is_string());
    let (s, _) = c.n("GET", "/v2.0/networks", Some("bogus"), None);
    assert_eq!(s, 401);
    // A token appended at run time works without a restart.
    let mut f = std::fs::read_to_string(c.tokens_file()).unwrap();
    f.push_str("latetok late member\n");
    std::fs::write(c.tokens_file(), f).unwrap();
    let (s, _) = c.n("GET", "/v2.0/networks", Some("latetok"), None);
    assert_eq!(s, 200, "appended token accepted");

    let net = create(&c, DEMO, "networks", "network", json!({"name": "d"}));
    assert!(
        net.get("provider:network_type").is_none(),
        "provider attributes are admin-only"
    );
    let id = net["id"].as_str().unwrap();
    // Another project: 404 on show/update/delete; admin sees it.
    for (m, b) in [
        ("GET", None),
        ("PUT", Some(json!({"network": {"name": "z"}}))),
        ("DELETE", None),
    ] {
        let (s, _) = c.n(m, &format!("/v2.0/networks/{id}"), Some(OTHER), b.as_ref());
        assert_eq!(s, 404, "{m} by another project");
    }
    let (s, v) = c.n("GET", &format!("/v2.0/networks/{id}"), Some(ADMIN), None);
    assert_eq!(s, 200);
    assert_eq!(
        v["network"]["provider:network_type"], "local",
        "first tenant type is the default"
    );
    // Member doing admin things: 403.
    for body in [
        json!({"name": "s", "shared": true}),
        json!({"name": "e", "router:external": true}),
        json!({"name": "p", "provider:network_type": "local"}),
        json!({"name": "o", "project_id": "other"}),
    ] {
        let (s, v) = c.n(
            "POST",
            "/v2.0/networks",
            Some(DEMO),
            Some(&json!({"network": body})),
        );
        assert_eq!(s, 403, "{body}: {v}");
        assert_eq!(v["NeutronError"]["type"], "PolicyNotAuthorized");
    }
    // Admin creates for another project; that project sees it as its own.
    let n = create(
        &c,
        ADMIN,
        "networks",
        "network",
        json!({"name": "for-other", "tenant_id": "other"}),
    );
    assert_eq!(n["project_id"], "other");
    let (_, v) = c.n("GET", "/v2.0/networks", Some(OTHER), None);
    assert_eq!(v["networks"].as_array().unwrap().len(), 1);
    // Shared: visible, usable for ports, but not updatable by others.
    let shared = create(
        &c,
        ADMIN,
        "networks",
        "network",
        json!({"name": "sh", "shared": true}),
    );
    let sid = shared["id"].as_str().unwrap();
    let (s, _) = c.n("GET", &format!("/v2.0/networks/{sid}"), Some(OTHER), None);
    assert_eq!(s, 200);
    let (s, _) = c.n(
        "PUT",
        &format!("/v2.0/networks/{sid}"),
        Some(OTHER),
        Some(&json!({"network": {"name": "mine"}})),
    );
    assert_eq!(s, 403);
    // Ports of other projects stay hidden even to shared-network users.
    create(
        &c,
        ADMIN,
        "subnets",
        "subnet",
        json!({"network_id": sid, "cidr": "10.3.0.0/24", "ip_version": 4}),
    );
    let p = create(&c, DEMO, "ports", "port", json!({"network_id": sid}));
    assert!(p.get("binding:host_id").is_none());
    let (s, _) = c.n(
        "GET",
        &format!("/v2.0/ports/{}", p["id"].as_str().unwrap()),
        Some(OTHER),
        None,
    );
    assert_eq!(s, 404);
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/networks/{sid}"),
        Some(ADMIN),
        Some(&json!({"network": {"shared": false}})),
    );
    assert_eq!(s, 409, "cannot unshare while other projects use it: {v}");
    // The network's owner sees ports of others on it.
    let net_owner_tok = "netowner";
    let mut f = std::fs::read_to_string(c.tokens_file()).unwrap();
    f.push_str(&format!("{net_owner_tok} owner member\n"));
    std::fs::write(c.tokens_file(), f).unwrap();
    let own = create(
        &c,
        net_owner_tok,
        "networks",
        "network",
        json!({"name": "owned"}),
    );
    let (s, _) = c.n(
        "PUT",
        &format!("/v2.0/networks/{}", own["id"].as_str().unwrap()),
        Some(ADMIN),
        Some(&json!({"network": {"shared": true}})),
    );
    assert_eq!(s, 200);
    create(
        &c,
        ADMIN,
        "subnets",
        "subnet",
        json!({"network_id": own["id"], "cidr": "10.4.0.0/24", "tenant_id": "owner"}),
    );
    let guest = create(&c, OTHER, "ports", "port", json!({"network_id": own["id"]}));
    let (s, v) = c.n("GET", "/v2.0/ports", Some(net_owner_tok), None);
    assert_eq!(s, 200);
    assert_eq!(
        v["ports"].as_array().unwrap().len(),
        1,
        "network owner sees the guest port: {v}"
    );
    let (s, _) = c.n(
        "GET",
        &format!("/v2.0/ports/{}", guest["id"].as_str().unwrap()),
        Some(net_owner_tok),
        None,
    );
    assert_eq!(s, 200);
    let (_, v) = c.n("GET", "/v2.0/ports", Some(DEMO), None);
    assert_eq!(
        v["ports"].as_array().unwrap().len(),
        1,
        "DEMO sees only its own port"
    );
    let (s, _) = c.n(
        "PUT",
        &format!("/v2.0/ports/{}", p["id"].as_str().unwrap()),
        Some(DEMO),
        Some(&json!({"port": {"binding:host_id": "node1"}})),
    );
    assert_eq!(s, 403, "binding is admin-only");
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/ports/{}", p["id"].as_str().unwrap()),
        Some(ADMIN),
        Some(&json!({"port": {"binding:host_id": "node1"}})),
    );
    assert_eq!(s, 200);
    assert_eq!(v["port"]["binding:host_id"], "node1");
    assert!(!c.log_has_5xx());
}

#[test]
fn filters_fields_sorting_pagination() {
    let c = Controller::start();
    let mut ids = Vec::new();
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let n = create(
            &c,
            DEMO,
            "networks",
            "network",
            json!({"name": name, "admin_state_up": i % 2 == 0, "mtu": 1400 + i}),
        );
        ids.push(n["id"].as_str().unwrap().to_string());
    }
    let get = |q: &str| {
        let (s, v) = c.n("GET", &format!("/v2.0/networks?{q}"), Some(DEMO), None);
        assert_eq!(s, 200, "{q}: {v}");
        v
    };
    let names = |v: &Value| -> Vec<String> {
        v["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&get("name=b")), ["b"]);
    let mut or = names(&get("name=b&name=d"));
    or.sort();
    assert_eq!(or, ["b", "d"], "repeated params are OR");
    assert_eq!(names(&get(&format!("id={}", ids[2]))), ["c"]);
    assert_eq!(
        names(&get("admin_state_up=False&sort_key=name&sort_dir=asc")),
        ["b", "d"]
    );
    assert_eq!(names(&get("mtu=1404")), ["e"]);
    let v = get("fields=id&fields=name&name=a");
    assert_eq!(
        v["networks"][0].as_object().unwrap().len(),
        2,
        "fields projection"
    );
    assert_eq!(
        names(&get("sort_key=name&sort_dir=desc")),
        ["e", "d", "c", "b", "a"]
    );
    // Pagination: follow next links to the end, then a previous link back.
    let mut seen = Vec::new();
    let mut url = "/v2.0/networks?limit=2&sort_key=name&sort_dir=asc".to_string();
    let mut last_page = Value::Null;
    for _ in 0..5 {
        let (s, v) = c.n("GET", &url, Some(DEMO), None);
        assert_eq!(s, 200);
        seen.extend(names(&v));
        let next = v["networks_links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
            .cloned();
        last_page = v;
        match next {
            Some(l) => {
                let href = l["href"].as_str().unwrap();
                url = href[href.find("/v2.0").unwrap()..].to_string();
            }
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let prev = last_page["networks_links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "previous")
        .expect("previous link")
        .clone();
    let href = prev["href"].as_str().unwrap();
    let (_, v) = c.n(
        "GET",
        &href[href.find("/v2.0").unwrap()..],
        Some(DEMO),
        None,
    );
    assert_eq!(names(&v), ["c", "d"]);
    let (s, v) = c.n("GET", "/v2.0/networks?colour=red", Some(DEMO), None);
    assert_eq!(s, 400);
    assert!(v["NeutronError"]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let (s, _) = c.n(
        "GET",
        "/v2.0/networks?marker=00000000-0000-0000-0000-000000000000&limit=1",
        Some(DEMO),
        None,
    );
    assert_eq!(s, 400);
    // Port filters on fixed IPs and device.
    let sub = create(
        &c,
        DEMO,
        "subnets",
        "subnet",
        json!({"network_id": ids[0], "cidr": "10.1.0.0/24", "ip_version": 4}),
    );
    let p = create(
        &c,
        DEMO,
        "ports",
        "port",
        json!({"network_id": ids[0], "device_id": "vm1", "device_owner": "compute:nova"}),
    );
    create(&c, DEMO, "ports", "port", json!({"network_id": ids[0]}));
    let ip = p["fixed_ips"][0]["ip_address"].as_str().unwrap();
    let (_, v) = c.n(
        "GET",
        &format!("/v2.0/ports?fixed_ips=ip_address%3D{ip}"),
        Some(DEMO),
        None,
    );
    assert_eq!(v["ports"].as_array().unwrap().len(), 1);
    let (_, v) = c.n("GET", "/v2.0/ports?device_id=vm1", Some(DEMO), None);
    assert_eq!(v["ports"][0]["id"], p["id"]);
    let (_, v) = c.n(
        "GET",
        &format!(
            "/v2.0/ports?network_id={}&fixed_ips=subnet_id%3D{}",
            ids[0],
            sub["id"].as_str().unwrap()
        ),
        Some(DEMO),
        None,
    );
    assert_eq!(v["ports"].as_array().unwrap().len(), 2);
    // The plain list (typed fast path) equals the generic path (sorted by id), for a
    // member and for an admin (who also gets the binding attributes).
    for tok in [DEMO, ADMIN] {
        let (_, plain) = c.n("GET", "/v2.0/ports", Some(tok), None);
        let (_, generic) = c.n(
            "GET",
            "/v2.0/ports?sort_key=id&sort_dir=asc",
            Some(tok),
            None,
        );
        assert_eq!(plain["ports"].as_array().unwrap().len(), 2);
        assert_eq!(
            plain["ports"], generic["ports"],
            "fast path and generic path agree for {tok}"
        );
        let (_, one) = c.n(
            "GET",
            &format!("/v2.0/ports/{}", p["id"].as_str().unwrap()),
            Some(tok),
            None,
        );
        assert!(plain["ports"].as_array().unwrap().contains(&one["port"]));
        assert_eq!(one["port"].get("binding:host_id").is_some(), tok == ADMIN);
    }
    let (_, v) = c.n(
        "GET",
        &format!("/v2.0/subnets?network_id={}", ids[0]),
        Some(DEMO),
        None,
    );
    assert_eq!(v["subnets"].as_array().unwrap().len(), 1);
}

#[test]
fn vlan_exhaustion_is_409_naming_the_physnet_and_changes_nothing() {
    let c = Controller::start_with(
        None,
        &[
            "--network-vlan-ranges",
            "bridge:2001:2002",
            "--tenant-network-types",
            "vlan,local",
        ],
    );
    let a = create(&c, DEMO, "networks", "network", json!({"name": "a"}));
    let b = create(&c, DEMO, "networks", "network", json!({"name": "b"}));
    let (_, va) = c.n(
        "GET",
        &format!("/v2.0/networks/{}", a["id"].as_str().unwrap()),
        Some(ADMIN),
        None,
    );
    let (_, vb) = c.n(
        "GET",
        &format!("/v2.0/networks/{}", b["id"].as_str().unwrap()),
        Some(ADMIN),
        None,
    );
    assert_eq!(va["network"]["provider:segmentation_id"], 2001);
    assert_eq!(vb["network"]["provider:segmentation_id"], 2002);
    let (s, v) = c.n(
        "POST",
        "/v2.0/networks",
        Some(DEMO),
        Some(&json!({"network": {"name": "c"}})),
    );
    assert_eq!(s, 409);
    assert!(
        v["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("bridge"),
        "{v}"
    );
    let (_, v) = c.n("GET", "/v2.0/networks", Some(DEMO), None);
    assert_eq!(
        v["networks"].as_array().unwrap().len(),
        2,
        "nothing half-made"
    );
    let (s, v) = c.n("POST", "/v2.0/networks", Some(ADMIN), Some(&json!({"network": {"provider:network_type": "vlan", "provider:physical_network": "bridge", "provider:segmentation_id": 2001}})));
    assert_eq!(s, 409, "VLAN taken: {v}");
    let (s, v) = c.n("POST", "/v2.0/networks", Some(ADMIN), Some(&json!({"network": {"provider:network_type": "vlan", "provider:physical_network": "bridge", "provider:segmentation_id": 2500}})));
    assert_eq!(s, 400, "outside the range: {v}");
    let (s, _) = c.n(
        "DELETE",
        &format!("/v2.0/networks/{}", a["id"].as_str().unwrap()),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 204);
    let (s, _) = c.n(
        "POST",
        "/v2.0/networks",
        Some(DEMO),
        Some(&json!({"network": {"name": "c"}})),
    );
    assert_eq!(s, 201, "released VLAN is reused");
}

#[test]
fn ipv6_subnets_and_fixed_ip_updates() {
    let c = Controller::start();
    let n = create(&c, DEMO, "networks", "network", json!({"name": "dual"}));
    let nid = n["id"].as_str().unwrap();
    let v4 = create(
        &c,
        DEMO,
        "subnets",
        "subnet",
        json!({"network_id": nid, "cidr": "10.6.0.0/28", "ip_version": 4}),
    );
    let v6 = create(
        &c,
        DEMO,
        "subnets",
        "subnet",
        json!({"network_id": nid, "cidr": "fd00:6::/64", "ip_version": 6}),
    );
    assert_eq!(v6["gateway_ip"], "fd00:6::1");
    assert_eq!(v6["allocation_pools"][0]["start"], "fd00:6::2");
    // Default: one address of each IP version, as Neutron; explicit: the subnets named.
    let p = create(&c, DEMO, "ports", "port", json!({"network_id": nid}));
    assert_eq!(p["fixed_ips"].as_array().unwrap().len(), 2, "{p}");
    let v4_fixed = p["fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["subnet_id"] == v4["id"])
        .expect("an IPv4 address")
        .clone();
    assert!(p["fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["subnet_id"] == v6["id"]));
    let pid = p["id"].as_str().unwrap();
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/ports/{pid}"),
        Some(DEMO),
        Some(&json!({"port": {"fixed_ips": [{"subnet_id": v4["id"]}, {"subnet_id": v6["id"]}]}})),
    );
    assert_eq!(s, 200, "{v}");
    let ips = v["port"]["fixed_ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2);
    let six: std::net::Ipv6Addr = ips.iter().find(|i| i["subnet_id"] == v6["id"]).unwrap()
        ["ip_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        six.segments()[..4],
        [0xfd00, 6, 0, 0],
        "address inside fd00:6::/64"
    );
    assert!(
        v["port"]["revision_number"].as_i64().unwrap() > p["revision_number"].as_i64().unwrap()
    );
    // The released v4 address can be taken explicitly by another port.
    let old = v4_fixed["ip_address"].as_str().unwrap();
    let new_v4 = ips.iter().find(|i| i["subnet_id"] == v4["id"]).unwrap()["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    if new_v4 != old {
        create(
            &c,
            DEMO,
            "ports",
            "port",
            json!({"network_id": nid, "fixed_ips": [{"ip_address": old}]}),
        );
    }
    let (s, _) = c.n(
        "POST",
        "/v2.0/ports",
        Some(DEMO),
        Some(&json!({"port": {"network_id": nid, "fixed_ips": [{"ip_address": new_v4}]}})),
    );
    assert_eq!(s, 409, "held address refused");
    // Subnet in use cannot be deleted; after deleting the port it can.
    let (s, _) = c.n(
        "DELETE",
        &format!("/v2.0/subnets/{}", v6["id"].as_str().unwrap()),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 409);
    let (s, _) = c.n("DELETE", &format!("/v2.0/ports/{pid}"), Some(DEMO), None);
    assert_eq!(s, 204);
    let (s, _) = c.n(
        "DELETE",
        &format!("/v2.0/subnets/{}", v6["id"].as_str().unwrap()),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 204);
    assert!(!c.log_has_5xx());
}
