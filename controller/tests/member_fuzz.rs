//! The OpenAPI-driven fuzz as a member of another project (issue 13): project `demo` (the
//! victim) and the admin own a topology; project `other` (the attacker) aims every path and
//! method of `/openapi.json` at their objects, with their ids in path parameters and in every
//! body field that takes an id, plus odd values. Asserted, as `other` only:
//!
//! 1. never a 5xx nor a dropped connection, and every 4xx is Neutron-shaped;
//! 2. no object of another project in any successful answer: none of demo's ids, addresses or
//!    MACs, and of the admin's objects only the shared and external networks and their subnets,
//!    and the shared subnet pool and address scope;
//! 3. nothing of demo's or the admin's changed: a dump made by the admin before and after is
//!    equal (see [`dump`] for what is compared), and no port or floating IP `other` made on a
//!    network it does not own holds an address `other` asked for.
//!
//! Deterministic: a fixed order (the document's paths are sorted), no randomness.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::guide::{agent, ext_net, net_subnet, ok, pods, register, vm_port};
use common::{request, Controller, Opts, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

/// Ids of a created object (`{"network": {"id": ..}}` → id).
fn id_of(v: &Value, key: &str) -> String {
    v[key]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{key} id in {v}"))
        .to_string()
}

fn create(c: &Controller, token: &str, coll: &str, key: &str, body: Value) -> String {
    let v = ok(
        c.n(
            "POST",
            &format!("/v2.0/{coll}"),
            Some(token),
            Some(&json!({ key: body })),
        ),
        key,
    );
    id_of(&v, key)
}

/// What the attacker aims at and what it may and may not see.
struct World {
    /// Ids of demo's and the admin's objects (every collection, crosspod's own included).
    foreign_ids: Vec<String>,
    /// Of those, what `other` may see: the shared and external networks and their subnets,
    /// the shared subnet pool and address scope.
    allowed_ids: BTreeSet<String>,
    /// Fixed IPs, floating IP addresses and MACs of demo's and the admin's ports and floating IPs.
    foreign_addrs: BTreeSet<String>,
    /// Addresses `other` asks for in bodies (none may end up held by `other` on a network
    /// `other` does not own).
    chosen: Vec<String>,
    demo_net: String,
    demo_sub: String,
    demo_port: String,
    demo_router: String,
    demo_fip: String,
    ext: String,
    ext_sub: String,
    shared: String,
    shared_sub: String,
    other_net: String,
    other_sub: String,
    other_port: String,
    other_router: String,
    other_fip: String,
    other_pool: String,
    other_scope: String,
    other_sg: String,
}

/// The collections compared and scanned: (URL path, JSON key of the list).
const COLLECTIONS: &[(&str, &str)] = &[
    ("networks", "networks"),
    ("subnets", "subnets"),
    ("ports", "ports"),
    ("routers", "routers"),
    ("floatingips", "floatingips"),
    ("subnetpools", "subnetpools"),
    ("address-scopes", "address_scopes"),
    ("security-groups", "security_groups"),
    ("security-group-rules", "security_group_rules"),
];

/// The URL collection of a created object's key (`address_scope` → `address-scopes`).
fn collection_of(key: &str) -> String {
    match key {
        "address_scope" => "address-scopes".into(),
        "security_group" => "security-groups".into(),
        "security_group_rule" => "security-group-rules".into(),
        k => format!("{k}s"),
    }
}

fn setup(c: &Controller) -> World {
    pods(c);
    ok(
        register(c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(c, &agent("node2"), "node2", "RegionTwo", true),
        "node2",
    );
    // The admin's: the external network, a shared network, a private network with a port.
    let ext = ext_net(c);
    let ext_sub = ok(
        c.n(
            "GET",
            &format!("/v2.0/subnets?network_id={ext}"),
            Some(ADMIN),
            None,
        ),
        "ext subnet",
    )["subnets"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shared = create(
        c,
        ADMIN,
        "networks",
        "network",
        json!({"name": "shared", "shared": true}),
    );
    let shared_sub = create(
        c,
        ADMIN,
        "subnets",
        "subnet",
        json!({"network_id": shared, "cidr": "10.50.0.0/24"}),
    );
    create(
        c,
        ADMIN,
        "ports",
        "port",
        json!({"network_id": shared, "name": "admin-on-shared"}),
    );
    let admin_net = create(
        c,
        ADMIN,
        "networks",
        "network",
        json!({"name": "admin-private"}),
    );
    create(
        c,
        ADMIN,
        "subnets",
        "subnet",
        json!({"network_id": admin_net, "cidr": "10.60.0.0/24"}),
    );
    create(
        c,
        ADMIN,
        "ports",
        "port",
        json!({"network_id": admin_net, "name": "admin-private"}),
    );
    // demo's: net1 with a VM port, a router with a gateway and an interface, a floating IP.
    let (demo_net, demo_sub) = net_subnet(c, "net1", "10.0.1.0/24");
    let (demo_port, _) = vm_port(c, &demo_net, "node1");
    let demo_router = create(
        c,
        DEMO,
        "routers",
        "router",
        json!({"name": "R", "external_gateway_info": {"network_id": ext}}),
    );
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{demo_router}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": demo_sub})),
        ),
        "interface",
    );
    let demo_fip = create(
        c,
        DEMO,
        "floatingips",
        "floatingip",
        json!({"floating_network_id": ext, "port_id": demo_port}),
    );
    // Tags on demo's and the admin's objects, for the attacker to aim at.
    for (path, token) in [
        (format!("networks/{demo_net}"), DEMO),
        (format!("subnets/{demo_sub}"), DEMO),
        (format!("ports/{demo_port}"), DEMO),
        (format!("routers/{demo_router}"), DEMO),
        (format!("floatingips/{demo_fip}"), DEMO),
        (format!("networks/{shared}"), ADMIN),
        (format!("subnets/{shared_sub}"), ADMIN),
        (format!("networks/{admin_net}"), ADMIN),
    ] {
        ok(
            c.n(
                "PUT",
                &format!("/v2.0/{path}/tags"),
                Some(token),
                Some(&json!({"tags": ["victim", "keep"]})),
            ),
            "tags",
        );
    }
    // other's own: a network, subnet, port, router and floating IP to aim updates at.
    let other_net = create(c, OTHER, "networks", "network", json!({"name": "mine"}));
    let other_sub = create(
        c,
        OTHER,
        "subnets",
        "subnet",
        json!({"network_id": other_net, "cidr": "10.0.9.0/24"}),
    );
    let other_port = create(
        c,
        OTHER,
        "ports",
        "port",
        json!({"network_id": shared, "name": "mine-on-shared"}),
    );
    let other_router = create(c, OTHER, "routers", "router", json!({"name": "mine"}));
    let other_fip = create(
        c,
        OTHER,
        "floatingips",
        "floatingip",
        json!({"floating_network_id": ext}),
    );
    // Subnet pools and address scopes: the admin's shared ones, demo's private ones with a
    // subnet allocated from its pool, and other's own.
    let shared_scope = create(
        c,
        ADMIN,
        "address-scopes",
        "address_scope",
        json!({"name": "shared-scope", "ip_version": 4, "shared": true}),
    );
    create(
        c,
        ADMIN,
        "subnetpools",
        "subnetpool",
        json!({"name": "shared-pool", "prefixes": ["10.210.0.0/16"], "default_prefixlen": 24,
               "shared": true, "address_scope_id": shared_scope, "tags": ["victim", "keep"]}),
    );
    let demo_scope = create(
        c,
        DEMO,
        "address-scopes",
        "address_scope",
        json!({"name": "demo-scope", "ip_version": 4}),
    );
    let demo_pool = create(
        c,
        DEMO,
        "subnetpools",
        "subnetpool",
        json!({"name": "demo-pool", "prefixes": ["10.220.0.0/16"], "default_prefixlen": 24,
               "address_scope_id": demo_scope, "tags": ["victim", "keep"]}),
    );
    let demo_pool_net = create(c, DEMO, "networks", "network", json!({"name": "pooled"}));
    create(
        c,
        DEMO,
        "subnets",
        "subnet",
        json!({"network_id": demo_pool_net, "subnetpool_id": demo_pool}),
    );
    let other_scope = create(
        c,
        OTHER,
        "address-scopes",
        "address_scope",
        json!({"name": "mine", "ip_version": 4}),
    );
    let other_pool = create(
        c,
        OTHER,
        "subnetpools",
        "subnetpool",
        json!({"name": "mine", "prefixes": ["10.230.0.0/16"]}),
    );
    // Security groups: demo's (its default one came with its port) with a rule naming
    // another of demo's as remote, and other's own.
    let demo_sg = create(
        c,
        DEMO,
        "security-groups",
        "security_group",
        json!({"name": "demo-web"}),
    );
    create(
        c,
        DEMO,
        "security-group-rules",
        "security_group_rule",
        json!({"security_group_id": demo_sg, "direction": "ingress", "protocol": "tcp",
               "port_range_min": 80, "port_range_max": 80}),
    );
    let other_sg = create(
        c,
        OTHER,
        "security-groups",
        "security_group",
        json!({"name": "mine"}),
    );

    // Everything that exists now and is not other's is foreign. A floating IP's port has no
    // project (as in Neutron): it is its floating IP's.
    let others_fips = ok(c.n("GET", "/v2.0/floatingips", Some(OTHER), None), "fips");
    let others_fips: Vec<&str> = others_fips["floatingips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    let mut foreign_ids = Vec::new();
    let mut allowed_ids = BTreeSet::new();
    let mut foreign_addrs = BTreeSet::new();
    for (coll, key) in COLLECTIONS {
        let v = ok(
            c.n("GET", &format!("/v2.0/{coll}"), Some(ADMIN), None),
            coll,
        );
        for o in v[key].as_array().unwrap() {
            if o["project_id"] == "other"
                || others_fips.contains(&o["device_id"].as_str().unwrap_or("-"))
            {
                continue;
            }
            let id = o["id"].as_str().unwrap().to_string();
            let open = match *coll {
                "networks" => o["shared"] == true || o["router:external"] == true,
                "subnets" => o["network_id"] == shared || o["network_id"] == ext,
                "subnetpools" | "address-scopes" => o["shared"] == true,
                _ => false,
            };
            if open {
                allowed_ids.insert(id.clone());
            }
            foreign_ids.push(id);
            for f in o["fixed_ips"].as_array().into_iter().flatten() {
                foreign_addrs.insert(f["ip_address"].as_str().unwrap().to_string());
            }
            for k in ["mac_address", "floating_ip_address"] {
                if let Some(a) = o[k].as_str() {
                    foreign_addrs.insert(a.to_string());
                }
            }
        }
    }
    assert!(foreign_ids.len() >= 20, "{foreign_ids:?}");
    assert!(foreign_ids.contains(&demo_pool) && foreign_ids.contains(&demo_scope));
    assert_eq!(allowed_ids.len(), 6, "{allowed_ids:?}");
    // Addresses the attacker asks for: the upstream's, free ones high in the shared and
    // external pools (nobody gets them by allocation in this test), and demo's own.
    let mut chosen: Vec<String> = ["163.3.124.1", "163.3.124.250", "10.50.0.1", "10.50.0.200"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    chosen.extend(foreign_addrs.iter().filter(|a| !a.contains(':')).cloned());
    World {
        foreign_ids,
        allowed_ids,
        foreign_addrs,
        chosen,
        demo_net,
        demo_sub,
        demo_port,
        demo_router,
        demo_fip,
        ext,
        ext_sub,
        shared,
        shared_sub,
        other_net,
        other_sub,
        other_port,
        other_router,
        other_fip,
        other_pool,
        other_scope,
        other_sg,
    }
}

/// What the admin sees of demo's and the admin's objects (and crosspod's own), for the
/// before/after comparison. Objects of project `other` are left out (what `other` makes of
/// its own is allowed, on a shared network too). Compared: every attribute as rendered
/// (ids, names, fixed_ips, MACs, device_owner/device_id, gateway info, routes, allocation
/// pools, revision_number, updated_at...) except `status` of routers and ports, which the
/// realizer moves (BUILD/ACTIVE/DOWN) on its own as agents report, without any request.
fn dump(c: &Controller) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (coll, key) in COLLECTIONS {
        let v = ok(
            c.n("GET", &format!("/v2.0/{coll}"), Some(ADMIN), None),
            coll,
        );
        for o in v[key].as_array().unwrap() {
            if o["project_id"] == "other" {
                continue;
            }
            let mut o = o.clone();
            if matches!(*coll, "routers" | "ports") {
                o.as_object_mut().unwrap().remove("status");
            }
            out.insert(format!("{coll}/{}", o["id"].as_str().unwrap()), o);
        }
    }
    for p in [
        "/v2.0/quotas",
        "/v2.0/quotas/demo",
        "/v2.0/quotas/demo/details",
        "/v2.0/quotas/admin/details",
    ] {
        out.insert(p.to_string(), ok(c.n("GET", p, Some(ADMIN), None), p));
    }
    out
}

fn odd_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(-1),
        json!(""),
        json!("x".repeat(300)),
        json!("00000000-0000-0000-0000-000000000000"),
        json!("\u{0000}'\";--"),
        json!(true),
        json!([{"subnet_id": null}]),
        json!({}),
    ]
}

/// Keys whose values are free text or the caller's own input (a `device_id` may name any
/// string that is not another project's router) or describe a pool, not an object.
const UNSCANNED: &[&str] = &[
    "name",
    "description",
    "device_id",
    "start",
    "end",
    "gateway_ip",
    "cidr",
];

/// Leaks in a successful answer: foreign objects, ids, addresses and MACs.
fn leaks(w: &World, v: &Value, key: Option<&str>, out: &mut Vec<String>) {
    if key.is_some_and(|k| UNSCANNED.contains(&k)) {
        return;
    }
    match v {
        Value::Object(m) => {
            if let (Some(id), Some(p)) = (m.get("id").and_then(Value::as_str), m.get("project_id"))
            {
                if p != "other" && !w.allowed_ids.contains(id) {
                    out.push(format!("an object of project {p}: {id}"));
                }
            }
            for (k, x) in m {
                leaks(w, x, Some(k), out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| leaks(w, x, key, out)),
        Value::String(s) => {
            for id in &w.foreign_ids {
                if s.contains(id.as_str()) && !w.allowed_ids.contains(id) {
                    out.push(format!("{key:?}: {s} names {id}"));
                }
            }
            if w.foreign_addrs.contains(&s.to_ascii_lowercase()) {
                out.push(format!("{key:?}: a foreign address {s}"));
            }
        }
        _ => {}
    }
}

/// Values for one property: foreign (and own, and odd) ids into id fields, chosen addresses
/// into address fields, odd values everywhere.
fn values_for(w: &World, prop: &str) -> Vec<Value> {
    let ids = || w.foreign_ids.iter().map(|i| json!(i)).collect::<Vec<_>>();
    let ips = || w.chosen.iter().map(|a| json!(a)).collect::<Vec<_>>();
    let mut v = match prop {
        "network_id"
        | "subnet_id"
        | "port_id"
        | "device_id"
        | "floating_network_id"
        | "subnetpool_id"
        | "address_scope_id"
        | "security_group_id"
        | "remote_group_id" => ids(),
        "security_groups" => w.foreign_ids.iter().map(|i| json!([i])).collect(),
        "fixed_ips" => {
            let mut v: Vec<Value> = w
                .foreign_ids
                .iter()
                .map(|i| json!([{ "subnet_id": i }]))
                .collect();
            v.extend(w.chosen.iter().map(|a| json!([{ "ip_address": a }])));
            v.push(json!([{"subnet_id": w.shared_sub, "ip_address": "10.50.0.200"}]));
            v.push(json!([{"subnet_id": w.shared_sub}]));
            v.push(json!([{"subnet_id": w.demo_sub, "ip_address": "10.0.1.200"}]));
            v
        }
        "external_gateway_info" => {
            let mut v: Vec<Value> = w
                .foreign_ids
                .iter()
                .map(|i| json!({ "network_id": i }))
                .collect();
            v.extend(
                w.chosen.iter().map(
                    |a| json!({"network_id": w.ext, "external_fixed_ips": [{"ip_address": a}]}),
                ),
            );
            v.push(json!({"network_id": w.ext, "external_fixed_ips": [{"subnet_id": w.ext_sub}]}));
            v.push(json!({"network_id": w.ext, "external_fixed_ips": [{"subnet_id": w.demo_sub}]}));
            v
        }
        "floating_ip_address" | "fixed_ip_address" | "ip_address" | "mac_address" => {
            let mut v = ips();
            v.extend(w.foreign_addrs.iter().map(|a| json!(a)));
            v
        }
        "routes" => w
            .chosen
            .iter()
            .map(|a| json!([{"destination": "0.0.0.0/0", "nexthop": a}]))
            .collect(),
        "project_id" | "tenant_id" => vec![json!("demo"), json!("admin"), json!("crosspod-bridge")],
        "tags" => vec![
            json!(["mine", "a/b"]),
            json!(["a,b"]),
            json!([""]),
            json!(["x", "x"]),
        ],
        "device_owner" => vec![
            json!("network:router_interface"),
            json!("network:router_gateway"),
            json!("network:floatingip"),
            json!("network:dhcp"),
            json!("compute:nova"),
        ],
        _ => Vec::new(),
    };
    v.extend(odd_values());
    v
}

/// Sends one request as `other`; a dropped connection or a non-HTTP answer fails, naming it.
fn send(c: &Controller, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let raw = body.map(|b| b.to_string().into_bytes());
    let (addr, m, p) = (c.neutron, method.to_string(), path.to_string());
    std::panic::catch_unwind(move || request(addr, &m, &p, Some(OTHER), raw.as_deref()))
        .unwrap_or_else(|_| panic!("{method} {path} {body:?}: no HTTP answer"))
}

#[derive(Default)]
struct Tally {
    sent: usize,
    statuses: BTreeMap<u16, usize>,
}

/// Sends, checks 1 and 2 on the answer, and removes what a create made (keeping other's
/// quota free for the next cases); returns the answer.
fn probe(
    c: &Controller,
    w: &World,
    t: &mut Tally,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let (s, v) = send(c, method, path, body);
    t.sent += 1;
    *t.statuses.entry(s).or_default() += 1;
    assert!(s < 500, "{method} {path} {body:?} -> {s} {v}");
    if s >= 400 {
        assert!(
            v["NeutronError"]["message"].is_string(),
            "{method} {path} {body:?}: not Neutron-shaped: {s} {v}"
        );
        return (s, v);
    }
    let mut found = Vec::new();
    leaks(w, &v, None, &mut found);
    assert!(
        found.is_empty(),
        "{method} {path} {body:?} -> {s}: another project's data: {found:?}\n{v}"
    );
    // An address other asked for on a network it does not own must not be what it got.
    if method != "GET" && s < 300 {
        if let Some(obj) = v.as_object().and_then(|m| m.values().next()) {
            let net = obj["network_id"]
                .as_str()
                .or(obj["floating_network_id"].as_str())
                .unwrap_or_default();
            if net != w.other_net {
                let asked = body.map(|b| b.to_string()).unwrap_or_default();
                for a in &w.chosen {
                    let held = obj.to_string().contains(&format!("\"{a}\""));
                    assert!(
                        !(held && asked.contains(&format!("\"{a}\""))),
                        "{method} {path} {asked} -> {s}: other chose {a} on a network it does not own: {v}"
                    );
                }
            }
        }
    }
    if method == "POST" && s == 201 {
        let (k, o) = v.as_object().unwrap().iter().next().unwrap();
        let id = o["id"].as_str().unwrap();
        let (d, dv) = c.n(
            "DELETE",
            &format!("/v2.0/{}/{id}", collection_of(k)),
            Some(OTHER),
            None,
        );
        assert!(d == 204 || d == 409, "cleanup of {k} {id}: {d} {dv}");
    }
    (s, v)
}

/// The request body's properties and the key wrapping them, from the document.
fn body_props(doc: &Value, op: &Value) -> Option<(Option<String>, Vec<String>)> {
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    if schema.is_null() {
        return None;
    }
    let resolve = |s: &Value| -> Value {
        match s["$ref"].as_str() {
            Some(r) => doc["components"]["schemas"][r.rsplit('/').next().unwrap()].clone(),
            None => s.clone(),
        }
    };
    let key = schema["required"][0].as_str().map(str::to_string);
    let inner = match &key {
        Some(k) => resolve(&schema["properties"][k.as_str()]),
        None => resolve(schema),
    };
    let props = inner["properties"].as_object()?.keys().cloned().collect();
    Some((key, props))
}

#[test]
fn a_member_fuzzing_every_path_sees_and_changes_nothing_of_another_project() {
    let started = std::time::Instant::now();
    let c = Controller::start_opts(&Opts {
        tokens: &["agenttok service agent"],
        ..Opts::default()
    });
    let w = setup(&c);
    let before = dump(&c);
    for k in [
        format!("networks/{}", w.demo_net),
        format!("subnets/{}", w.demo_sub),
        format!("ports/{}", w.demo_port),
        format!("routers/{}", w.demo_router),
        format!("floatingips/{}", w.demo_fip),
        format!("networks/{}", w.shared),
    ] {
        assert!(before.contains_key(&k), "the dump holds {k}");
    }
    let (_, doc) = c.n("GET", "/openapi.json", None, None);
    for p in [
        "/v2.0/routers/{id}/add_extraroutes",
        "/v2.0/routers/{id}/remove_extraroutes",
        "/v2.0/agents/{id}",
        "/v2.0/network-ip-availabilities/{id}",
        "/v2.0/quotas/{project_id}",
        "/v2.0/networks/{id}/tags",
        "/v2.0/floatingips/{id}/tags/{tag}",
        "/v2.0/subnetpools/{id}/add_prefixes",
        "/v2.0/subnetpools/{id}/tags/{tag}",
        "/v2.0/address-scopes/{id}",
    ] {
        assert!(doc["paths"][p].is_object(), "the document describes {p}");
    }
    let mut t = Tally::default();
    let mut ops = 0;

    for (path, item) in doc["paths"].as_object().unwrap() {
        if path.starts_with("/v1.0/") {
            // Tricircle's admin API (pods, jobs, routings): every path and method is refused
            // to a member, aimed at demo's objects or not, before anything is read or parsed.
            for method in ["get", "post", "put", "delete"] {
                if item.get(method).is_none() {
                    continue;
                }
                ops += 1;
                let verb = method.to_uppercase();
                let mut targets: Vec<String> = w.foreign_ids.clone();
                targets.push("1".into());
                if !path.contains("{id}") {
                    targets = vec![String::new()];
                }
                for target in &targets {
                    let p = path.replace("{id}", target);
                    let body = json!({"job": {"type": "router_setup", "project_id": "demo",
                        "resource": {"router_id": w.demo_router}}});
                    let raw = (verb == "POST").then(|| body.to_string().into_bytes());
                    let queries = if verb == "GET" && !path.contains('{') {
                        vec![
                            String::new(),
                            "?project_id=demo".into(),
                            format!("?top_id={}", w.demo_net),
                        ]
                    } else {
                        vec![String::new()]
                    };
                    for q in queries {
                        let full = format!("{p}{q}");
                        let (s, v) =
                            request(c.tricircle, &verb, &full, Some(OTHER), raw.as_deref());
                        t.sent += 1;
                        *t.statuses.entry(s).or_default() += 1;
                        assert_eq!(s, 403, "{verb} {full} as a member: {v}");
                        assert!(
                            v["NeutronError"]["message"].is_string(),
                            "{verb} {full}: {v}"
                        );
                    }
                }
            }
            continue;
        }
        if !path.starts_with("/v2.0/") {
            continue;
        }
        for method in ["get", "post", "put", "delete"] {
            let Some(op) = item.get(method) else { continue };
            ops += 1;
            let verb = method.to_uppercase();
            let coll = path.split('/').nth(2).unwrap();
            let props = body_props(&doc, op);
            // (a) The operation on every foreign object (and project), with a plausible body.
            let targets: Vec<String> = if path.contains("{project_id}") {
                ["demo", "admin", "crosspod-bridge", ""]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else if path.contains("{id}") {
                w.foreign_ids.clone()
            } else {
                vec![String::new()]
            };
            for target in &targets {
                let p = path
                    .replace("{id}", target)
                    .replace("{project_id}", target)
                    .replace("{alias}", "router")
                    .replace("{tag}", "victim");
                let bodies: Vec<Value> = match (&props, coll) {
                    (None, _) => vec![Value::Null],
                    (Some((None, _)), _) if path.ends_with("/tags") => {
                        vec![json!({"tags": ["pwned"]}), json!({"tags": []})]
                    }
                    (Some(_), _) if path.ends_with("_interface") => vec![
                        json!({"subnet_id": w.other_sub}),
                        json!({"subnet_id": w.demo_sub}),
                        json!({"port_id": w.demo_port}),
                        json!({"port_id": w.other_port}),
                    ],
                    (Some((Some(k), _)), _) if path.ends_with("_extraroutes") => vec![
                        json!({ k: {"routes": [{"destination": "192.168.66.0/24", "nexthop": "10.0.1.5"}]}}),
                        json!({ k: {"routes": []}}),
                    ],
                    (Some((Some(k), _)), "quotas") => {
                        vec![json!({ k: {"network": 0, "port": 1000}})]
                    }
                    (Some(_), _) if path.ends_with("_prefixes") => {
                        vec![json!({"prefixes": ["10.220.0.0/16", "10.240.0.0/24"]})]
                    }
                    (Some((Some(k), _)), "subnetpools" | "address-scopes") if verb == "PUT" => {
                        vec![json!({ k: {"name": "pwned"}})]
                    }
                    (Some((Some(k), _)), _) if verb == "PUT" => {
                        vec![json!({ k: {"name": "pwned", "admin_state_up": false}})]
                    }
                    _ => vec![Value::Null], // a create has no target; fuzzed in (b)
                };
                for b in &bodies {
                    if verb == "POST" && !path.contains("{id}") {
                        continue;
                    }
                    let body = (!b.is_null()).then_some(b);
                    probe(&c, &w, &mut t, &verb, &p, body);
                }
                // Lists filtered by foreign ids must not find them either.
                if verb == "GET" && !path.contains('{') && coll != "quotas" {
                    for f in [
                        "id",
                        "network_id",
                        "device_id",
                        "port_id",
                        "router_id",
                        "floating_network_id",
                    ] {
                        for id in [&w.demo_net, &w.demo_router, &w.demo_port, &w.demo_fip] {
                            probe(&c, &w, &mut t, "GET", &format!("{path}?{f}={id}"), None);
                        }
                    }
                    probe(
                        &c,
                        &w,
                        &mut t,
                        "GET",
                        &format!("{path}?fixed_ips=subnet_id%3D{}", w.demo_sub),
                        None,
                    );
                }
            }
            // (b) Body fuzz: each property with ids and odd values, on other's own objects
            // (updates, router actions) or as a create next to foreign objects.
            if verb != "POST" && verb != "PUT" {
                continue;
            }
            let Some((key, props)) = props else { continue };
            let own = match coll {
                "networks" => &w.other_net,
                "subnets" => &w.other_sub,
                "ports" => &w.other_port,
                "routers" => &w.other_router,
                "floatingips" => &w.other_fip,
                "subnetpools" => &w.other_pool,
                "address-scopes" => &w.other_scope,
                "security-groups" => &w.other_sg,
                _ => "demo",
            };
            let real = path.replace("{id}", own).replace("{project_id}", own);
            let base = match (coll, verb.as_str()) {
                _ if path.contains("/tags") => json!({}),
                ("subnets", "POST") => json!({"network_id": w.other_net, "cidr": "10.77.0.0/24"}),
                ("ports", "POST") => json!({"network_id": w.shared}),
                ("floatingips", "POST") => json!({"floating_network_id": w.ext}),
                ("subnetpools", "POST") => json!({"name": "fz", "prefixes": ["10.88.0.0/16"]}),
                ("address-scopes", "POST") => json!({"ip_version": 4}),
                ("security-group-rules", "POST") => {
                    json!({"security_group_id": w.other_sg, "direction": "ingress"})
                }
                _ => json!({}),
            };
            for prop in &props {
                for v in values_for(&w, prop) {
                    let mut b = base.clone();
                    b[prop.as_str()] = v;
                    let body = match &key {
                        Some(k) => json!({ k.as_str(): b }),
                        None => b,
                    };
                    probe(&c, &w, &mut t, &verb, &real, Some(&body));
                }
            }
        }
    }
    // Undo what the actions may have plugged into other's router, then the final lists.
    probe(
        &c,
        &w,
        &mut t,
        "PUT",
        &format!("/v2.0/routers/{}/remove_router_interface", w.other_router),
        Some(&json!({"subnet_id": w.other_sub})),
    );
    for (coll, _) in COLLECTIONS {
        probe(&c, &w, &mut t, "GET", &format!("/v2.0/{coll}"), None);
    }

    // 3. Nothing of demo's or the admin's changed.
    let after = dump(&c);
    for (k, v) in &before {
        assert_eq!(Some(v), after.get(k), "{k} changed (before, after)");
    }
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(new.is_empty(), "objects not of other's appeared: {new:?}");
    // Nothing other holds on a network it does not own is an address it chose.
    let ports = ok(c.n("GET", "/v2.0/ports", Some(ADMIN), None), "ports");
    for p in ports["ports"].as_array().unwrap() {
        if p["project_id"] != "other" || p["network_id"] == w.other_net.as_str() {
            continue;
        }
        for f in p["fixed_ips"].as_array().unwrap() {
            let a = f["ip_address"].as_str().unwrap();
            assert!(
                !w.chosen.iter().any(|x| x == a),
                "other holds the chosen {a} on a network it does not own: {p}"
            );
        }
    }
    assert!(!c.log_has_5xx());
    eprintln!(
        "member fuzz: {ops} operations, {} requests as other, statuses {:?}, {:?}",
        t.sent,
        t.statuses,
        started.elapsed()
    );
    assert!(ops >= 25, "every Neutron path and method ({ops})");
    assert!(t.sent > 500, "{}", t.sent);
}
