//! Neutron quotas on the real controller binary: the edge of each resource (N creates pass,
//! the next is 409 `OverQuota`, another project is unaffected), who may read and change
//! limits, details and defaults, crosspod's own objects (bridge networks, leg and bridge-IP
//! ports, gateway and floating-IP ports) never counted; and on PostgreSQL, two controllers
//! racing at the edge never pass it, and racing associations never give one fixed IP two
//! floating IPs (a store constraint).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::guide::{agent, ext_net, net_subnet, ok, pods, register, vm_port, AGENT};
use common::{openstack_bin, Controller, PgDb, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

fn set_quota(c: &Controller, project: &str, q: Value) -> Value {
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/quotas/{project}"),
            Some(ADMIN),
            Some(&json!({ "quota": q })),
        ),
        "set quota",
    )
}

fn assert_over_quota(r: (u16, Value), resource: &str) {
    assert_eq!(r.0, 409, "{resource} past the quota: {}", r.1);
    assert_eq!(r.1["NeutronError"]["type"], "OverQuota", "{}", r.1);
    assert_eq!(
        r.1["NeutronError"]["message"],
        format!("Quota exceeded for resources: ['{resource}']."),
        "{}",
        r.1
    );
}

fn post(c: &Controller, token: &str, coll: &str, key: &str, body: Value) -> (u16, Value) {
    c.n(
        "POST",
        &format!("/v2.0/{coll}"),
        Some(token),
        Some(&json!({ key: body })),
    )
}

fn id(v: &Value, key: &str) -> String {
    v[key]["id"].as_str().unwrap().to_string()
}

fn add_agent_token(c: &Controller) {
    let path = c.tokens_file();
    let mut t = std::fs::read_to_string(&path).unwrap();
    t.push_str(&format!("{AGENT} service agent\n"));
    // A later mtime than the first read, so the controller re-reads it.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&path, t).unwrap();
}

#[test]
fn each_resource_stops_at_its_quota_and_only_for_its_project() {
    let c = Controller::start();
    pods(&c);
    let ext = ext_net(&c);
    let q = set_quota(
        &c,
        "demo",
        json!({"network": 2, "subnet": 2, "port": 3, "router": 1, "floatingip": 1}),
    );
    assert_eq!(
        q["quota"],
        json!({"network": 2, "subnet": 2, "port": 3, "router": 1, "floatingip": 1,
               "security_group": 10, "security_group_rule": 100})
    );

    // Networks: 2 pass, the third is refused; OTHER (defaults) is not limited by DEMO's.
    let n1 = id(
        &ok(post(&c, DEMO, "networks", "network", json!({})), "net"),
        "network",
    );
    let n2 = id(
        &ok(post(&c, DEMO, "networks", "network", json!({})), "net"),
        "network",
    );
    assert_over_quota(post(&c, DEMO, "networks", "network", json!({})), "network");
    for _ in 0..3 {
        ok(
            post(&c, OTHER, "networks", "network", json!({})),
            "other net",
        );
    }
    // Subnets.
    for (n, cidr) in [(&n1, "10.1.0.0/24"), (&n2, "10.2.0.0/24")] {
        ok(
            post(
                &c,
                DEMO,
                "subnets",
                "subnet",
                json!({"network_id": n, "ip_version": 4, "cidr": cidr}),
            ),
            "subnet",
        );
    }
    assert_over_quota(
        post(
            &c,
            DEMO,
            "subnets",
            "subnet",
            json!({"network_id": n1, "ip_version": 4, "cidr": "10.3.0.0/24"}),
        ),
        "subnet",
    );
    // Ports.
    for _ in 0..3 {
        ok(
            post(&c, DEMO, "ports", "port", json!({"network_id": n1})),
            "port",
        );
    }
    assert_over_quota(
        post(&c, DEMO, "ports", "port", json!({"network_id": n1})),
        "port",
    );
    // An admin creating for DEMO is held to DEMO's quota too.
    assert_over_quota(
        post(
            &c,
            ADMIN,
            "ports",
            "port",
            json!({"network_id": n1, "project_id": "demo"}),
        ),
        "port",
    );
    // Routers.
    ok(post(&c, DEMO, "routers", "router", json!({})), "router");
    assert_over_quota(post(&c, DEMO, "routers", "router", json!({})), "router");
    ok(
        post(&c, OTHER, "routers", "router", json!({})),
        "other router",
    );
    ok(
        post(&c, OTHER, "routers", "router", json!({})),
        "other router",
    );
    // Floating IPs: the refused one leaves no address taken on the external network.
    ok(
        post(
            &c,
            DEMO,
            "floatingips",
            "floatingip",
            json!({"floating_network_id": ext}),
        ),
        "fip",
    );
    assert_over_quota(
        post(
            &c,
            DEMO,
            "floatingips",
            "floatingip",
            json!({"floating_network_id": ext}),
        ),
        "floatingip",
    );
    let ext_ports = ok(
        c.n(
            "GET",
            &format!("/v2.0/ports?network_id={ext}"),
            Some(ADMIN),
            None,
        ),
        "ext ports",
    );
    assert_eq!(
        ext_ports["ports"].as_array().unwrap().len(),
        1,
        "only the one floating IP holds an address: {ext_ports}"
    );
    ok(
        post(
            &c,
            OTHER,
            "floatingips",
            "floatingip",
            json!({"floating_network_id": ext}),
        ),
        "other fip",
    );

    // Details: used and limit per resource.
    let d = ok(
        c.n("GET", "/v2.0/quotas/demo/details", Some(DEMO), None),
        "details",
    );
    for (r, used, limit) in [
        ("network", 2, 2),
        ("subnet", 2, 2),
        ("port", 3, 3),
        ("router", 1, 1),
        ("floatingip", 1, 1),
    ] {
        assert_eq!(
            d["quota"][r],
            json!({"used": used, "limit": limit, "reserved": 0}),
            "{r}: {d}"
        );
    }
    let d = ok(
        c.n("GET", "/v2.0/quotas/other/details", Some(OTHER), None),
        "other details",
    );
    assert_eq!(
        d["quota"]["network"],
        json!({"used": 3, "limit": 100, "reserved": 0})
    );
    assert_eq!(
        d["quota"]["router"],
        json!({"used": 2, "limit": 10, "reserved": 0})
    );

    // The list holds projects with limits of their own only.
    let l = ok(c.n("GET", "/v2.0/quotas", Some(ADMIN), None), "list");
    let projects: Vec<&str> = l["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["project_id"].as_str().unwrap())
        .collect();
    assert_eq!(projects, vec!["demo"], "{l}");
    assert_eq!(l["quotas"][0]["port"], 3);

    // Raising the limit lets the next create through; DELETE goes back to the defaults.
    set_quota(&c, "demo", json!({"network": 3}));
    ok(
        post(&c, DEMO, "networks", "network", json!({})),
        "net after raise",
    );
    let (s, _) = c.n("DELETE", "/v2.0/quotas/demo", Some(ADMIN), None);
    assert_eq!(s, 204);
    // As Neutron: nothing of its own left to delete is 404.
    let (s, v) = c.n("DELETE", "/v2.0/quotas/demo", Some(ADMIN), None);
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["NeutronError"]["type"], "TenantQuotaNotFound");
    let q = ok(c.n("GET", "/v2.0/quotas/demo", Some(DEMO), None), "show");
    let defaults = json!({"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
               "security_group": 10, "security_group_rule": 100});
    assert_eq!(q["quota"], defaults);
    let q = ok(
        c.n("GET", "/v2.0/quotas/demo/default", Some(DEMO), None),
        "default",
    );
    assert_eq!(q["quota"], defaults);
    ok(
        post(&c, DEMO, "routers", "router", json!({})),
        "router after reset",
    );
    let l = ok(c.n("GET", "/v2.0/quotas", Some(ADMIN), None), "list");
    assert_eq!(l["quotas"], json!([]), "{l}");
    assert!(!c.log_has_5xx());
}

#[test]
fn members_read_their_own_quota_and_change_none() {
    let c = Controller::start();
    let (s, v) = c.n("GET", "/v2.0/quotas/demo", Some(DEMO), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["quota"]["port"], 500);
    for (method, path) in [
        ("GET", "/v2.0/quotas/other"),
        ("GET", "/v2.0/quotas/other/details"),
        ("GET", "/v2.0/quotas/other/default"),
        ("GET", "/v2.0/quotas"),
        ("DELETE", "/v2.0/quotas/demo"),
    ] {
        let (s, v) = c.n(method, path, Some(DEMO), None);
        assert_eq!(s, 403, "{method} {path}: {v}");
        assert_eq!(v["NeutronError"]["type"], "PolicyNotAuthorized", "{v}");
    }
    for project in ["demo", "other"] {
        let (s, v) = c.n(
            "PUT",
            &format!("/v2.0/quotas/{project}"),
            Some(DEMO),
            Some(&json!({"quota": {"network": 1000}})),
        );
        assert_eq!(s, 403, "member PUT {project}: {v}");
    }
    // Bad values and unknown resources: 400, nothing changed.
    for bad in [
        json!({"quota": {"network": -2}}),
        json!({"quota": {"network": "many"}}),
        json!({"quota": {"network": 1.5}}),
        json!({"quota": {"network": 2_147_483_648u64}}),
        json!({"quota": {"network": null}}),
        json!({"quota": {"volumes": 3}}),
        json!({"quota": {"network": 3, "cores": 3}}),
        json!({"quotas": {"network": 3}}),
    ] {
        let (s, v) = c.n("PUT", "/v2.0/quotas/demo", Some(ADMIN), Some(&bad));
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let (s, v) = c.n("GET", "/v2.0/quotas/demo", Some(ADMIN), None);
    assert_eq!((s, &v["quota"]["network"]), (200, &json!(100)), "{v}");
    // -1 is unlimited; a string integer is accepted as Neutron converts it.
    let v = set_quota(&c, "demo", json!({"network": -1, "router": "4"}));
    assert_eq!(v["quota"]["network"], -1);
    assert_eq!(v["quota"]["router"], 4);
    let (s, _) = c.n("POST", "/v2.0/quotas/demo", Some(ADMIN), Some(&json!({})));
    assert_eq!(s, 405);
    let (s, _) = c.n("GET", "/v2.0/quotas", None, None);
    assert_eq!(s, 401);
    // The extensions the CLI and SDK look for.
    let e = ok(c.n("GET", "/v2.0/extensions", Some(DEMO), None), "ext");
    let aliases: Vec<&str> = e["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["alias"].as_str().unwrap())
        .collect();
    for a in ["quotas", "quota_details", "revision-if-match"] {
        assert!(aliases.contains(&a), "{a} missing from {aliases:?}");
    }
    assert!(!c.log_has_5xx());
}

#[test]
fn configured_default_quotas_apply_to_projects_without_their_own() {
    let c = Controller::start_opts(&common::Opts {
        extra: &["--quota-network", "1"],
        env: &[("CROSSPOD_QUOTA_ROUTER", "0")],
        ..Default::default()
    });
    ok(post(&c, DEMO, "networks", "network", json!({})), "net");
    assert_over_quota(post(&c, DEMO, "networks", "network", json!({})), "network");
    assert_over_quota(post(&c, DEMO, "routers", "router", json!({})), "router");
    let q = ok(
        c.n("GET", "/v2.0/quotas/demo/default", Some(DEMO), None),
        "default",
    );
    assert_eq!(q["quota"]["network"], 1);
    assert_eq!(q["quota"]["router"], 0);
    assert_eq!(q["quota"]["port"], 500);
}

/// Ports of a network by device_owner, as the admin sees them.
fn owners(c: &Controller) -> HashMap<String, Vec<String>> {
    let ports = ok(c.n("GET", "/v2.0/ports", Some(ADMIN), None), "ports");
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for p in ports["ports"].as_array().unwrap() {
        out.entry(p["device_owner"].as_str().unwrap().to_string())
            .or_default()
            .push(p["project_id"].as_str().unwrap().to_string());
    }
    out
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn crosspods_own_objects_never_count_nor_fail_on_a_tenants_quota() {
    // VLAN tenant networks stretch to every pod they have ports in, so a router on one gets a
    // leg port (in DEMO's project) in the pod that is not its home.
    let c = Controller::start_with(None, &["--tenant-network-types", "vlan"]);
    add_agent_token(&c);
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(&c, &agent("node2"), "node2", "RegionTwo", true),
        "node2",
    );
    // The bridge project may create nothing, yet its bridge network, subnet and IPs appear.
    set_quota(
        &c,
        "crosspod-bridge",
        json!({"network": 0, "subnet": 0, "port": 0}),
    );
    // DEMO: 2 VM ports + 2 interfaces on a stretched and a second network.
    set_quota(
        &c,
        "demo",
        json!({"network": 2, "subnet": 2, "port": 5, "router": 1, "floatingip": 1}),
    );
    let (net1, sub1) = net_subnet(&c, "net1", "10.0.1.0/24");
    let (net2, sub2) = net_subnet(&c, "net2", "10.0.2.0/24");
    let (vm1, _) = vm_port(&c, &net1, "node1");
    vm_port(&c, &net1, "node2");
    let router = id(
        &ok(
            post(&c, DEMO, "routers", "router", json!({"name": "r"})),
            "router",
        ),
        "router",
    );
    let iface = |sub: &str| {
        c.n(
            "PUT",
            &format!("/v2.0/routers/{router}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sub})),
        )
    };
    ok(iface(&sub1), "interface 1");
    let ext = ext_net(&c);
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{router}"),
            Some(DEMO),
            Some(&json!({"router": {"external_gateway_info": {"network_id": ext}}})),
        ),
        "gateway",
    );
    wait_for("the leg and bridge-IP ports", || {
        let o = owners(&c);
        o.contains_key("network:router_leg") && o.contains_key("network:router_bridge")
    });
    let o = owners(&c);
    assert!(
        o["network:router_leg"].iter().all(|p| p == "demo"),
        "legs are in the router's project: {o:?}"
    );
    assert!(
        o["network:router_bridge"]
            .iter()
            .all(|p| p == "crosspod-bridge"),
        "{o:?}"
    );
    let nets = ok(c.n("GET", "/v2.0/networks", Some(ADMIN), None), "nets");
    assert!(
        nets["networks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["project_id"] == "crosspod-bridge"),
        "the bridge network exists despite its project's quota of 0: {nets}"
    );
    // DEMO has made 3 ports (2 VMs, 1 interface); legs exist in its project but do not count.
    let d = ok(
        c.n("GET", "/v2.0/quotas/demo/details", Some(DEMO), None),
        "details",
    );
    assert_eq!(d["quota"]["port"]["used"], 3, "{d} {o:?}");
    assert_eq!(d["quota"]["network"]["used"], 2, "{d}");
    // The fifth and last port DEMO may have: the second interface still fits.
    ok(
        post(&c, DEMO, "ports", "port", json!({"network_id": net2})),
        "port 4",
    );
    ok(iface(&sub2), "interface 2 at the edge of the port quota");
    assert_over_quota(
        post(&c, DEMO, "ports", "port", json!({"network_id": net2})),
        "port",
    );
    // The gateway port and a floating IP's port are crosspod's: the floating IP fits.
    ok(
        post(
            &c,
            DEMO,
            "floatingips",
            "floatingip",
            json!({"floating_network_id": ext, "port_id": vm1}),
        ),
        "floating IP",
    );
    let d = ok(
        c.n("GET", "/v2.0/quotas/demo/details", Some(DEMO), None),
        "details",
    );
    assert_eq!(
        d["quota"]["port"],
        json!({"used": 5, "limit": 5, "reserved": 0})
    );
    assert_eq!(d["quota"]["floatingip"]["used"], 1);
    assert!(!c.log_has_5xx());
}

/// openstacksdk (what the CLI uses underneath) reads, sets and resets quotas with
/// admin_token auth. The CLI's own `openstack quota show|set PROJECT` first resolves the
/// project through Keystone v3, which crosspod does not serve.
#[test]
fn openstacksdk_manages_quotas() {
    let c = Controller::start();
    let python = openstack_bin().with_file_name("python");
    let script = format!(
        r#"
import json, openstack
conn = openstack.connect(auth_type='admin_token', auth={{'endpoint': '{url}', 'token': '{ADMIN}'}}, network_endpoint_override='{url}')
out = {{}}
q = conn.network.update_quota('demo', networks=5, ports=7)
out['update'] = [q.networks, q.ports, q.routers]
q = conn.network.get_quota('demo')
out['get'] = [q.networks, q.subnets, q.ports, q.routers, q.floating_ips]
out['details'] = conn.network.get_quota('demo', details=True).networks
out['default'] = conn.network.get_quota_default('demo').networks
out['list'] = [[x.project_id, x.networks] for x in conn.network.quotas()]
conn.network.delete_quota('demo')
out['after_delete'] = conn.network.get_quota('demo').networks
print(json.dumps(out))
"#,
        url = c.neutron_url()
    );
    let o = std::process::Command::new(python)
        .args(["-c", &script])
        .env("HOME", c.dir.path())
        .output()
        .expect("run python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["update"], json!([5, 7, 10]));
    assert_eq!(v["get"], json!([5, 100, 7, 10, 50]));
    assert_eq!(v["details"], json!({"used": 0, "limit": 5, "reserved": 0}));
    assert_eq!(v["default"], 100);
    assert_eq!(v["list"], json!([["demo", 5]]));
    assert_eq!(v["after_delete"], 100);
}

fn start_two(db: &PgDb, flags: &[&str]) -> (Arc<Controller>, Arc<Controller>) {
    let (a, b) = std::thread::scope(|s| {
        let ta = s.spawn(|| Controller::start_with(Some(&db.url), flags));
        let tb = s.spawn(|| Controller::start_with(Some(&db.url), flags));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    (Arc::new(a), Arc::new(b))
}

/// 20 clients, half through each controller, each firing `per_client` requests from `req`;
/// the statuses and bodies.
fn race(
    a: &Arc<Controller>,
    b: &Arc<Controller>,
    per_client: usize,
    req: impl Fn(&Controller, usize) -> (u16, Value) + Send + Sync + 'static,
) -> Vec<(u16, Value)> {
    let req = Arc::new(req);
    let barrier = Arc::new(std::sync::Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (req, barrier) = (req.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..per_client)
                    .map(|k| req(&c, i * per_client + k))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

fn tally(results: &[(u16, Value)]) -> HashMap<(u16, String), usize> {
    let mut m = HashMap::new();
    for (s, v) in results {
        let kind = v["NeutronError"]["type"].as_str().unwrap_or("").to_string();
        *m.entry((*s, kind)).or_insert(0) += 1;
    }
    m
}

#[test]
fn two_controllers_on_postgres_never_pass_the_quota_edge() {
    let db = PgDb::create();
    let (a, b) = start_two(&db, &[]);
    let net = id(
        &ok(
            post(&a, DEMO, "networks", "network", json!({"name": "n"})),
            "net",
        ),
        "network",
    );
    ok(
        post(
            &b,
            DEMO,
            "subnets",
            "subnet",
            json!({"network_id": net, "ip_version": 4, "cidr": "10.60.0.0/24"}),
        ),
        "subnet",
    );
    set_quota(&b, "demo", json!({"port": 10, "network": 6}));

    // Ports: 20 clients x 2 at a limit of 10.
    let n = net.clone();
    let t0 = Instant::now();
    let results = race(&a, &b, 2, move |c, _| {
        post(c, DEMO, "ports", "port", json!({"network_id": n}))
    });
    let ports_ms = t0.elapsed().as_millis();
    let t = tally(&results);
    eprintln!("ports race ({ports_ms} ms): {t:?}");
    assert_eq!(t.get(&(201, String::new())), Some(&10), "{t:?}");
    assert_eq!(t.get(&(409, "OverQuota".into())), Some(&30), "{t:?}");
    let listed = ok(a.n("GET", "/v2.0/ports", Some(DEMO), None), "ports");
    assert_eq!(listed["ports"].as_array().unwrap().len(), 10);

    // Networks: one exists, 5 more fit under 6.
    let results = race(&a, &b, 1, |c, _| {
        post(c, DEMO, "networks", "network", json!({}))
    });
    let t = tally(&results);
    eprintln!("networks race: {t:?}");
    assert_eq!(t.get(&(201, String::new())), Some(&5), "{t:?}");
    assert_eq!(t.get(&(409, "OverQuota".into())), Some(&15), "{t:?}");
    let listed = ok(b.n("GET", "/v2.0/networks", Some(DEMO), None), "nets");
    assert_eq!(listed["networks"].as_array().unwrap().len(), 6);
    let d = ok(
        a.n("GET", "/v2.0/quotas/demo/details", Some(DEMO), None),
        "details",
    );
    assert_eq!(
        d["quota"]["port"],
        json!({"used": 10, "limit": 10, "reserved": 0})
    );
    assert!(!a.log_has_5xx() && !b.log_has_5xx());
}

#[test]
fn two_controllers_on_postgres_never_give_one_fixed_ip_two_floating_ips() {
    let db = PgDb::create();
    let (a, b) = start_two(&db, &[]);
    pods(&a);
    let (net, sub) = net_subnet(&a, "net1", "10.0.1.0/24");
    let vm = id(
        &ok(
            post(&b, DEMO, "ports", "port", json!({"network_id": net})),
            "vm port",
        ),
        "port",
    );
    let router = id(
        &ok(post(&a, DEMO, "routers", "router", json!({})), "router"),
        "router",
    );
    ok(
        b.n(
            "PUT",
            &format!("/v2.0/routers/{router}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sub})),
        ),
        "interface",
    );
    let ext = ext_net(&a);
    ok(
        a.n(
            "PUT",
            &format!("/v2.0/routers/{router}"),
            Some(DEMO),
            Some(&json!({"router": {"external_gateway_info": {"network_id": ext}}})),
        ),
        "gateway",
    );
    let fips: Vec<String> = (0..5)
        .map(|i| {
            let c = if i % 2 == 0 { &a } else { &b };
            id(
                &ok(
                    post(
                        c,
                        DEMO,
                        "floatingips",
                        "floatingip",
                        json!({"floating_network_id": ext}),
                    ),
                    "fip",
                ),
                "floatingip",
            )
        })
        .collect();
    let fips = Arc::new(fips);
    let (f2, vm2) = (fips.clone(), vm.clone());
    let t0 = Instant::now();
    let results = race(&a, &b, 1, move |c, i| {
        c.n(
            "PUT",
            &format!("/v2.0/floatingips/{}", f2[i % f2.len()]),
            Some(DEMO),
            Some(&json!({"floatingip": {"port_id": vm2}})),
        )
    });
    let race_ms = t0.elapsed().as_millis();
    let t = tally(&results);
    let by_constraint: usize = [&a, &b]
        .iter()
        .map(|c| {
            c.log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("fixed IP already has a floating IP"))
                .count()
        })
        .sum();
    eprintln!(
        "association race ({race_ms} ms): {t:?}; refused by the store's index: {by_constraint}"
    );
    for (s, kind) in t.keys() {
        assert!(
            *s == 200 || (*s == 409 && kind == "FloatingIPPortAlreadyAssociated"),
            "{t:?}"
        );
    }
    assert!(t.contains_key(&(200, String::new())), "{t:?}");
    let listed = ok(a.n("GET", "/v2.0/floatingips", Some(DEMO), None), "fips");
    let holding: Vec<&Value> = listed["floatingips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["port_id"] == json!(vm))
        .collect();
    assert_eq!(holding.len(), 1, "one floating IP per fixed IP: {listed}");
    // A later attempt with another floating IP is refused naming the port and the fixed IP.
    let holder = holding[0]["id"].as_str().unwrap();
    let other = fips.iter().find(|f| *f != holder).unwrap();
    let (s, v) = b.n(
        "PUT",
        &format!("/v2.0/floatingips/{other}"),
        Some(DEMO),
        Some(&json!({"floatingip": {"port_id": vm}})),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["NeutronError"]["type"], "FloatingIPPortAlreadyAssociated");
    assert!(
        v["NeutronError"]["message"].as_str().unwrap().contains(&vm),
        "{v}"
    );
    assert!(!a.log_has_5xx() && !b.log_has_5xx());
}

/// A database an older version left with two floating IPs on one fixed IP: migration 5 keeps
/// the association of the lowest id, clears the other, and from then on the index refuses it.
#[test]
fn migration_5_clears_duplicate_associations_before_enforcing_them() {
    use controller::store::Store;
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        Store::connect(&url).await.unwrap().close().await;
        // Back to the schema of migration 4, with a duplicate association.
        let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for sql in [
            "PRAGMA foreign_keys = OFF",
            "DROP INDEX floatingips_one_per_fixed_ip",
            "DROP INDEX ports_project_owner",
            "DROP INDEX subnets_project",
            "DROP INDEX floatingips_project",
            "DROP TABLE quotas",
            "DELETE FROM schema_migrations WHERE version = 5",
            "INSERT INTO floatingips (id, project_id, floating_network_id, floating_port_id, floating_ip_address, port_id, fixed_ip_address, created_at, updated_at) VALUES ('a', 'demo', 'ext', 'pa', '163.3.124.10', 'vm', '10.0.0.5', 't', 't')",
            "INSERT INTO floatingips (id, project_id, floating_network_id, floating_port_id, floating_ip_address, port_id, fixed_ip_address, created_at, updated_at) VALUES ('b', 'demo', 'ext', 'pb', '163.3.124.11', 'vm', '10.0.0.5', 't', 't')",
            "INSERT INTO floatingips (id, project_id, floating_network_id, floating_port_id, floating_ip_address, port_id, fixed_ip_address, created_at, updated_at) VALUES ('c', 'demo', 'ext', 'pc', '163.3.124.12', 'vm', '10.0.0.6', 't', 't')",
        ] {
            sqlx::query(sql).execute(&mut raw).await.unwrap();
        }
        raw.close().await.unwrap();
        let store = Store::connect(&url).await.unwrap();
        let fips = store.list_floatingips(None).await.unwrap();
        let held: Vec<(&str, Option<&str>)> = fips
            .iter()
            .map(|f| (f.id.as_str(), f.port_id.as_deref()))
            .collect();
        assert_eq!(
            held,
            vec![("a", Some("vm")), ("b", None), ("c", Some("vm"))],
            "the lowest id keeps 10.0.0.5; 10.0.0.6 is untouched"
        );
        let mut b = fips[1].clone();
        b.port_id = Some("vm".into());
        b.fixed_ip_address = Some("10.0.0.5".into());
        let e = store.update_floatingip(&b).await.unwrap_err();
        let e = controller::error::DomainError::from(e);
        assert_eq!(e.kind, "FloatingIPPortAlreadyAssociated", "{e}");
        assert!(
            e.message.contains("vm") && e.message.contains("10.0.0.5"),
            "{e}"
        );
        store.close().await;
    });
}

/// A router interface is a port of the router's project: at a full port quota it is refused
/// (409) and the router keeps no half-made interface. (api/neutron/routers.rs still renames
/// every conflict of the interface port `IpAddressInUse`; the message names the quota.)
#[test]
fn a_router_interface_past_the_port_quota_is_refused() {
    let c = Controller::start();
    let (_, sub) = net_subnet(&c, "net1", "10.0.1.0/24");
    let router = id(
        &ok(post(&c, DEMO, "routers", "router", json!({})), "router"),
        "router",
    );
    set_quota(&c, "demo", json!({"port": 0}));
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/routers/{router}/add_router_interface"),
        Some(DEMO),
        Some(&json!({"subnet_id": sub})),
    );
    eprintln!("interface past the port quota: {s} {v}");
    assert_eq!(s, 409, "{v}");
    assert!(
        v["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("Quota exceeded for resources: ['port']."),
        "{v}"
    );
    let ports = ok(c.n("GET", "/v2.0/ports", Some(DEMO), None), "ports");
    assert_eq!(ports["ports"], json!([]), "{ports}");
}
