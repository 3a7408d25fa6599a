//! Tricircle's admin API beyond pods (issue 15): `/v1.0/routings` (derived from where each
//! resource is realized, read-only) and `/v1.0/jobs` in Tricircle's shape (types, filters,
//! pages, detail, schemas, create, redo, delete, the job log), on SQLite and PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::guide::{agent, desired, ext_net, net_subnet, ok, pods, register, vm_port};
use common::{request, Controller, Opts, PgDb, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

/// Long enough that no periodic full pass repairs what a test breaks behind the controller's
/// back: only what the test asks for may.
const NO_FULL_PASS: &[&str] = &["--full-pass-interval", "3600"];

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn iface(c: &Controller, router: &str, subnet: &str) {
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{router}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": subnet})),
        ),
        "add interface",
    );
}

fn router(c: &Controller, body: Value) -> String {
    let r = ok(
        c.n(
            "POST",
            "/v2.0/routers",
            Some(DEMO),
            Some(&json!({ "router": body })),
        ),
        "router",
    );
    r["router"]["id"].as_str().unwrap().to_string()
}

/// Region name → pod id.
fn pod_ids(c: &Controller) -> BTreeMap<String, String> {
    let v = ok(c.t("GET", "/v1.0/pods", Some(ADMIN), None), "pods");
    v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["region_name"].as_str().unwrap().to_string(),
                p["pod_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn the_one(c: &Controller, path: &str, coll: &str) -> Value {
    let v = ok(c.n("GET", path, Some(ADMIN), None), path);
    let a = v[coll].as_array().unwrap();
    assert_eq!(a.len(), 1, "{path}: {v}");
    a[0].clone()
}

/// Every routing (one page of up to 2000).
fn routings(c: &Controller, query: &str) -> Vec<Value> {
    let v = ok(
        c.t("GET", &format!("/v1.0/routings{query}"), Some(ADMIN), None),
        "routings",
    );
    v["routings"].as_array().unwrap().clone()
}

/// (resource_type, top_id, region) of routings.
fn triples(
    list: &[Value],
    regions: &BTreeMap<String, String>,
) -> BTreeSet<(String, String, String)> {
    list.iter()
        .map(|r| {
            let region = regions
                .iter()
                .find(|(_, id)| r["pod_id"] == id.as_str())
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| panic!("a routing in an unknown pod: {r}"));
            (
                r["resource_type"].as_str().unwrap().to_string(),
                r["top_id"].as_str().unwrap().to_string(),
                region,
            )
        })
        .collect()
}

fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}

#[test]
fn routings_list_every_resource_where_it_is_realized_with_filters_and_pages() {
    let c = Controller::start();
    pods(&c);
    let regions = pod_ids(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(&c, &agent("node2"), "node2", "RegionTwo", true),
        "node2",
    );
    let (net1, sub1) = net_subnet(&c, "net1", "10.0.1.0/24");
    let (net2, sub2) = net_subnet(&c, "net2", "10.0.2.0/24");
    // A VLAN network stretched over both pods (VM ports in each), made by the admin for demo.
    let n3 = ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(ADMIN),
            Some(
                &json!({"network": {"name": "net3", "provider:network_type": "vlan",
                "provider:physical_network": "bridge", "project_id": "demo"}}),
            ),
        ),
        "net3",
    );
    let net3 = n3["network"]["id"].as_str().unwrap().to_string();
    let s3 = ok(
        c.n(
            "POST",
            "/v2.0/subnets",
            Some(DEMO),
            Some(&json!({"subnet": {"network_id": net3, "ip_version": 4, "cidr": "10.0.3.0/24"}})),
        ),
        "subnet3",
    );
    let sub3 = s3["subnet"]["id"].as_str().unwrap().to_string();
    let (vm1, _) = vm_port(&c, &net1, "node1");
    let (vm2, _) = vm_port(&c, &net2, "node2");
    let (vm3a, _) = vm_port(&c, &net3, "node1");
    let (vm3b, _) = vm_port(&c, &net3, "node2");
    // A port bound nowhere is realized nowhere.
    let unbound = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(DEMO),
            Some(&json!({"port": {"network_id": net1}})),
        ),
        "unbound port",
    )["port"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ext = ext_net(&c);
    let ext_sub = the_one(&c, &format!("/v2.0/subnets?network_id={ext}"), "subnets")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = router(
        &c,
        json!({"name": "router", "external_gateway_info": {"network_id": ext}}),
    );
    for sub in [&sub1, &sub2, &sub3] {
        iface(&c, &r, sub);
    }
    ok(
        c.n(
            "POST",
            "/v2.0/floatingips",
            Some(DEMO),
            Some(&json!({"floatingip": {"floating_network_id": ext, "port_id": vm1}})),
        ),
        "floating IP",
    );

    // What must be listed: each resource in each pod it is realized in, nothing else.
    let bridge = the_one(&c, "/v2.0/networks?name=bridge-net-demo", "networks");
    let bridge_net = bridge["id"].as_str().unwrap().to_string();
    let bridge_sub = the_one(
        &c,
        &format!("/v2.0/subnets?network_id={bridge_net}"),
        "subnets",
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (one, two) = ("RegionOne", "RegionTwo");
    let mut want: BTreeSet<(String, String, String)> = [
        s("network", &net1, one),
        s("subnet", &sub1, one),
        s("network", &net2, two),
        s("subnet", &sub2, two),
        s("network", &net3, one),
        s("network", &net3, two),
        s("subnet", &sub3, one),
        s("subnet", &sub3, two),
        s("network", &ext, two),
        s("subnet", &ext_sub, two),
        s("network", &bridge_net, one),
        s("network", &bridge_net, two),
        s("subnet", &bridge_sub, one),
        s("subnet", &bridge_sub, two),
        s("router", &r, one),
        s("router", &r, two),
        s("port", &vm1, one),
        s("port", &vm2, two),
        s("port", &vm3a, one),
        s("port", &vm3b, two),
    ]
    .into_iter()
    .collect();
    let router_ports = ok(
        c.n(
            "GET",
            &format!("/v2.0/ports?device_id={r}"),
            Some(ADMIN),
            None,
        ),
        "router ports",
    );
    let mut kinds = BTreeMap::<String, usize>::new();
    for p in router_ports["ports"].as_array().unwrap() {
        let owner = p["device_owner"].as_str().unwrap();
        *kinds.entry(owner.to_string()).or_default() += 1;
        let sub = p["fixed_ips"][0]["subnet_id"].as_str().unwrap();
        let pod = match owner {
            // The interface port backs the leg in the subnet's (home) pod; on the stretched
            // subnet that is the lowest pod with an instance.
            "network:router_interface" if sub == sub2 => two,
            "network:router_interface" => one,
            "network:router_gateway" => two,
            // Bridge-IP and per-pod leg-IP ports are named after their pod.
            _ => p["name"].as_str().unwrap(),
        };
        want.insert(s("port", p["id"].as_str().unwrap(), pod));
    }
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("network:router_bridge".to_string(), 2),
            ("network:router_gateway".to_string(), 1),
            ("network:router_interface".to_string(), 3),
            ("network:router_leg".to_string(), 1),
        ]),
        "{router_ports}"
    );
    let fip_port = the_one(&c, "/v2.0/ports?device_owner=network:floatingip", "ports");
    want.insert(s("port", fip_port["id"].as_str().unwrap(), two));

    let all = wait_for("the routings of the guide", 20, || {
        let all = routings(&c, "");
        (triples(&all, &regions) == want).then_some(all)
    });
    assert!(
        !all.iter().any(|x| x["top_id"] == unbound.as_str()),
        "an unbound port is nowhere"
    );
    assert!(
        !all.iter()
            .any(|x| x["pod_id"] == regions["CentralRegion"].as_str()),
        "nothing is realized in the central pod"
    );
    // Tricircle's fields; ids are integers, unique, listed in descending order.
    let ids: Vec<i64> = all.iter().map(|x| x["id"].as_i64().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted, "unique and descending");
    let vm1_routing = all.iter().find(|x| x["top_id"] == vm1.as_str()).unwrap();
    let keys: BTreeSet<&str> = vm1_routing
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "top_id",
            "bottom_id",
            "pod_id",
            "project_id",
            "resource_type",
            "created_at",
            "updated_at"
        ])
    );
    assert_eq!(vm1_routing["bottom_id"], vm1.as_str());
    assert_eq!(vm1_routing["project_id"], "demo");
    let vm1_port = ok(
        c.n("GET", &format!("/v2.0/ports/{vm1}"), Some(ADMIN), None),
        "vm1",
    );
    assert_eq!(vm1_routing["created_at"], vm1_port["port"]["created_at"]);

    // One routing by id; unknown and non-integer ids are 404.
    let id = vm1_routing["id"].as_i64().unwrap();
    let one_r = ok(
        c.t("GET", &format!("/v1.0/routings/{id}"), Some(ADMIN), None),
        "show",
    );
    assert_eq!(&one_r["routing"], vm1_routing);
    for bad in ["1", "x", "-5"] {
        let (st, v) = c.t("GET", &format!("/v1.0/routings/{bad}"), Some(ADMIN), None);
        assert_eq!(st, 404, "{bad}: {v}");
        assert_eq!(v["NeutronError"]["type"], "ResourceNotFound");
    }

    // Filters, alone and together.
    let routers = routings(&c, "?resource_type=router");
    assert_eq!(
        triples(&routers, &regions),
        [s("router", &r, one), s("router", &r, two)]
            .into_iter()
            .collect()
    );
    let net3_both = routings(&c, &format!("?top_id={net3}"));
    assert_eq!(net3_both.len(), 2, "net3 in both pods: {net3_both:?}");
    let in_one = routings(
        &c,
        &format!("?pod_id={}&resource_type=network", regions[one]),
    );
    assert_eq!(
        triples(&in_one, &regions),
        [
            s("network", &net1, one),
            s("network", &net3, one),
            s("network", &bridge_net, one)
        ]
        .into_iter()
        .collect()
    );
    let bridges = routings(&c, "?project_id=crosspod-bridge&resource_type=subnet");
    assert_eq!(bridges.len(), 2, "{bridges:?}");
    assert_eq!(
        routings(&c, &format!("?id={id}")),
        vec![vm1_routing.clone()]
    );
    assert_eq!(
        routings(
            &c,
            &format!(
                "?bottom_id={vm1}&created_at={}",
                vm1_routing["created_at"].as_str().unwrap()
            )
        )
        .len(),
        1
    );
    assert!(routings(&c, "?resource_type=security_group").is_empty());
    for (q, needle) in [
        ("?colour=red", "Unsupported filter type: colour"),
        ("?id=abc", "Id should be an integer"),
        ("?marker=abc", "Marker should be an integer"),
        ("?limit=ten", "Limit should be an integer"),
    ] {
        let (st, v) = c.t("GET", &format!("/v1.0/routings{q}"), Some(ADMIN), None);
        assert_eq!(st, 400, "{q}: {v}");
        assert!(
            v["NeutronError"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{q}: {v}"
        );
    }

    // Pages of 4, through the next links, give the whole list in order; filters are kept.
    let mut paged = Vec::new();
    let mut path = "/v1.0/routings?limit=4".to_string();
    loop {
        let v = ok(c.t("GET", &path, Some(ADMIN), None), "page");
        let page = v["routings"].as_array().unwrap();
        assert!(page.len() <= 4);
        paged.extend(page.iter().cloned());
        match v["routings_links"][0]["href"].as_str() {
            Some(next) => {
                assert_eq!(v["routings_links"][0]["rel"], "next");
                assert_eq!(page.len(), 4, "a next link only after a full page");
                path = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(paged, all);
    let v = ok(
        c.t(
            "GET",
            "/v1.0/routings?limit=1&resource_type=router",
            Some(ADMIN),
            None,
        ),
        "filtered page",
    );
    let next = v["routings_links"][0]["href"].as_str().unwrap().to_string();
    assert!(
        next.starts_with("/v1.0/routings?") && next.contains("resource_type=router"),
        "{next}"
    );
    let v2 = ok(c.t("GET", &next, Some(ADMIN), None), "second page");
    assert_eq!(v2["routings"].as_array().unwrap().len(), 1);
    assert!(v2["routings_links"].is_null(), "the last page: {v2}");
    assert_eq!(v2["routings"][0]["resource_type"], "router");

    // Routings are derived: no write, for anyone.
    for (m, p) in [
        ("POST", "/v1.0/routings".to_string()),
        ("PUT", format!("/v1.0/routings/{id}")),
        ("DELETE", format!("/v1.0/routings/{id}")),
    ] {
        let body = json!({"routing": {"top_id": vm1, "bottom_id": vm1, "pod_id": regions[one],
            "project_id": "demo", "resource_type": "port"}});
        let (st, v) = c.t(m, &p, Some(ADMIN), Some(&body));
        assert_eq!(st, 405, "{m} {p}: {v}");
        assert!(
            v["NeutronError"]["message"]
                .as_str()
                .unwrap()
                .contains("read-only"),
            "{v}"
        );
        for who in [DEMO, OTHER] {
            let (st, v) = c.t(m, &p, Some(who), Some(&body));
            assert_eq!(st, 403, "{m} {p} as a member: {v}");
        }
    }
    // Members see none of it.
    for who in [DEMO, OTHER] {
        for p in [
            "/v1.0/routings".to_string(),
            "/v1.0/routings?project_id=demo".to_string(),
            format!("/v1.0/routings/{id}"),
        ] {
            let (st, v) = c.t("GET", &p, Some(who), None);
            assert_eq!(st, 403, "{p}: {v}");
            assert!(v["NeutronError"]["message"]
                .as_str()
                .unwrap()
                .contains("admin_api:routings"));
        }
    }
    let (st, _) = c.t("GET", "/v1.0/routings", None, None);
    assert_eq!(st, 401);

    // The realization changes: subnet3 leaves the router. Its interface and leg ports go
    // (net3 stays in both pods with its VM ports), every other routing keeps its id, and a
    // marker whose routing is gone still marks its place.
    let leg_port = router_ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["device_owner"] == "network:router_leg")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let leg_routing = all
        .iter()
        .find(|x| x["top_id"] == leg_port.as_str())
        .unwrap()
        .clone();
    let iface3 = router_ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["device_owner"] == "network:router_interface"
                && p["fixed_ips"][0]["subnet_id"] == sub3.as_str()
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{r}/remove_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sub3})),
        ),
        "remove subnet3",
    );
    let after = wait_for("the routings without subnet3's legs", 20, || {
        let l = routings(&c, "");
        (!l.iter().any(|x| x["top_id"] == leg_port.as_str())).then_some(l)
    });
    let gone: Vec<&Value> = all.iter().filter(|x| !after.contains(x)).collect();
    let gone_ids: BTreeSet<&str> = gone.iter().map(|x| x["top_id"].as_str().unwrap()).collect();
    assert_eq!(
        gone_ids,
        BTreeSet::from([leg_port.as_str(), iface3.as_str()]),
        "{gone:?}"
    );
    assert!(
        after.iter().all(|x| all.contains(x)),
        "every other routing is unchanged"
    );
    let marker = leg_routing["id"].as_i64().unwrap();
    let rest = routings(&c, &format!("?marker={marker}"));
    let want_rest: Vec<Value> = after
        .iter()
        .filter(|x| x["id"].as_i64().unwrap() < marker)
        .cloned()
        .collect();
    assert_eq!(rest, want_rest);
    let (st, _) = c.t(
        "GET",
        &format!("/v1.0/routings/{marker}"),
        Some(ADMIN),
        None,
    );
    assert_eq!(st, 404, "its routing is gone");
    assert!(!c.log_has_5xx());
}

/// The router's jobs as listed.
fn jobs_of(c: &Controller, router: &str, query: &str) -> Vec<Value> {
    let v = ok(
        c.t("GET", &format!("/v1.0/jobs{query}"), Some(ADMIN), None),
        "jobs",
    );
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["resource"]["router_id"] == router)
        .cloned()
        .collect()
}

fn job(c: &Controller, id: &str) -> Value {
    ok(
        c.t("GET", &format!("/v1.0/jobs/{id}"), Some(ADMIN), None),
        "job",
    )["job"]
        .clone()
}

/// Both nodes report their published revision applied, with `router` in `state`.
fn report(c: &Controller, router: &str, state: &str) {
    for n in ["node1", "node2"] {
        let rev = desired(c, n)["revision"].as_u64().unwrap();
        let mut r = json!({"router_id": router, "state": state});
        if state == "failed" {
            r["error"] = json!("namespace could not be created: boom");
        }
        let body = json!({"node": n, "revision_applied": rev, "ports": [], "routers": [r],
            "probes": [], "errors": []});
        let (st, v) = c.t(
            "PUT",
            &format!("/v1.0/agents/{n}/status"),
            Some(&agent(n)),
            Some(&body),
        );
        assert_eq!(st, 204, "{v}");
    }
}

fn err_message(r: (u16, Value), status: u16, needle: &str, what: &str) {
    assert_eq!(r.0, status, "{what}: {}", r.1);
    let m = r.1["NeutronError"]["message"].as_str().unwrap_or_default();
    assert!(m.contains(needle), "{what}: {m:?} lacks {needle:?}");
}

/// Runs `sql` on the controller's database, behind its back.
fn raw_sql(url: &str, sql: &[String]) {
    use sqlx::Connection;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
        for s in sql {
            sqlx::query(s).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    });
}

/// The jobs API, end to end, on the controller `c` whose database is `db`.
fn jobs_scenario(c: &Controller, db: &str) {
    pods(c);
    ok(
        register(c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(c, &agent("node2"), "node2", "RegionTwo", true),
        "node2",
    );
    let (net1, sub1) = net_subnet(c, "net1", "10.0.1.0/24");
    let (net2, sub2) = net_subnet(c, "net2", "10.0.2.0/24");
    vm_port(c, &net1, "node1");
    vm_port(c, &net2, "node2");
    let r = router(c, json!({"name": "router"}));
    assert!(
        jobs_of(c, &r, "").is_empty(),
        "a bare router has nothing to set up"
    );
    iface(c, &r, &sub1);
    iface(c, &r, &sub2);

    // Schemas: crosspod's job types by Tricircle's names, with their resource keys.
    let sch = ok(
        c.t("GET", "/v1.0/jobs/schemas", Some(ADMIN), None),
        "schemas",
    );
    assert_eq!(
        sch,
        json!({"schemas": [{"type": "router_setup", "resource": ["router_id"]},
                           {"type": "configure_route", "resource": ["router_id"]}]})
    );

    // The interfaces' burst is one router_setup job, in Tricircle's shape.
    let setup = jobs_of(c, &r, "");
    assert_eq!(setup.len(), 1, "{setup:?}");
    let setup = setup[0].clone();
    assert_eq!(setup["type"], "router_setup");
    assert_eq!(setup["project_id"], "demo");
    assert_eq!(setup["resource"], json!({"router_id": r}));
    assert!(setup.get("resource_id").is_none(), "{setup}");
    assert!(["NEW", "RUNNING"].contains(&setup["status"].as_str().unwrap()));
    let setup_id = setup["id"].as_str().unwrap().to_string();
    // Extra routes are configure_route.
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{r}/add_extraroutes"),
            Some(DEMO),
            Some(&json!({"router": {"routes": [{"destination": "192.168.9.0/24", "nexthop": "10.0.1.50"}]}})),
        ),
        "extra route",
    );
    let routes = jobs_of(c, &r, "?type=configure_route");
    assert_eq!(routes.len(), 1, "{routes:?}");
    let routes_id = routes[0]["id"].as_str().unwrap().to_string();
    assert_eq!(jobs_of(c, &r, "?type=router_setup").len(), 1);
    assert_eq!(jobs_of(c, &r, "?project_id=demo").len(), 2);
    assert!(jobs_of(c, &r, "?project_id=other").is_empty());
    assert!(
        jobs_of(c, &r, "?type=port_delete").is_empty(),
        "a type crosspod has not"
    );
    assert!(jobs_of(c, &r, "?status=bogus").is_empty());
    let detail = ok(c.t("GET", "/v1.0/jobs/detail", Some(ADMIN), None), "detail");
    let list = ok(c.t("GET", "/v1.0/jobs", Some(ADMIN), None), "list");
    assert_eq!(detail, list);
    err_message(
        c.t("GET", "/v1.0/jobs?colour=red", Some(ADMIN), None),
        400,
        "Unsupported filter type: colour",
        "bad filter",
    );
    err_message(
        c.t("GET", "/v1.0/jobs?limit=x", Some(ADMIN), None),
        400,
        "Limit should be an integer",
        "bad limit",
    );
    err_message(
        c.t("GET", "/v1.0/jobs?marker=nope", Some(ADMIN), None),
        400,
        "Invalid marker: nope",
        "bad marker",
    );
    err_message(
        c.t("GET", "/v1.0/jobs/nope", Some(ADMIN), None),
        404,
        "nope",
        "unknown job",
    );

    // RUNNING once the pass picks them up (any case of the status filter); a running job is
    // neither deleted nor redone.
    wait_for("the jobs running", 10, || {
        (jobs_of(c, &r, "?status=running").len() == 2).then_some(())
    });
    assert_eq!(jobs_of(c, &r, "?status=RUNNING").len(), 2);
    assert!(jobs_of(c, &r, "?status=success").is_empty());
    err_message(
        c.t(
            "DELETE",
            &format!("/v1.0/jobs/{setup_id}"),
            Some(ADMIN),
            None,
        ),
        400,
        "running",
        "delete running",
    );
    err_message(
        c.t("PUT", &format!("/v1.0/jobs/{setup_id}"), Some(ADMIN), None),
        400,
        "running",
        "redo running",
    );

    // The nodes report the router ready: both succeed and move to the log, keeping their ids.
    report(c, &r, "ready");
    wait_for("the jobs done", 15, || {
        (jobs_of(c, &r, "?status=success").len() == 2).then_some(())
    });
    let done: BTreeSet<String> = jobs_of(c, &r, "?status=SUCCESS")
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(done, BTreeSet::from([setup_id.clone(), routes_id.clone()]));
    assert!(jobs_of(c, &r, "?status=running").is_empty());
    assert_eq!(job(c, &setup_id)["status"], "SUCCESS");
    err_message(
        c.t(
            "DELETE",
            &format!("/v1.0/jobs/{setup_id}"),
            Some(ADMIN),
            None,
        ),
        400,
        "from job log",
        "delete logged",
    );
    err_message(
        c.t("PUT", &format!("/v1.0/jobs/{routes_id}"), Some(ADMIN), None),
        400,
        "from job log",
        "redo logged",
    );

    // POST: Tricircle's validation, a missing router is 404, another project's 400, members 403.
    let post = |body: Value| c.t("POST", "/v1.0/jobs", Some(ADMIN), Some(&body));
    let good = json!({"job": {"type": "router_setup", "project_id": "demo", "resource": {"router_id": r}}});
    for (body, status, needle) in [
        (
            json!({"job": {"project_id": "demo", "resource": {"router_id": r}}}),
            400,
            "type isn't provided",
        ),
        (
            json!({"job": {"type": " ", "project_id": "demo", "resource": {"router_id": r}}}),
            400,
            "type can't be empty",
        ),
        (
            json!({"job": {"type": "router_setup", "resource": {"router_id": r}}}),
            400,
            "project_id isn't provided",
        ),
        (
            json!({"job": {"type": "port_delete", "project_id": "demo", "resource": {"router_id": r}}}),
            400,
            "There is no such job type: port_delete",
        ),
        (
            json!({"job": {"type": "router_setup", "project_id": "demo"}}),
            400,
            "resource is not specified",
        ),
        (
            json!({"job": {"type": "router_setup", "project_id": "demo", "resource": {}}}),
            400,
            "not specified: router_id",
        ),
        (
            json!({"job": {"type": "router_setup", "project_id": "demo", "resource": {"router_id": r, "pod_id": "x"}}}),
            400,
            "redundant: pod_id",
        ),
        (
            json!({"job": {"type": "router_setup", "project_id": "demo", "resource": {"router_id": 7}}}),
            400,
            "router_id",
        ),
        (
            json!({"job": {"type": "router_setup", "project_id": "demo", "resource": {"router_id": r}, "extra": 1}}),
            400,
            "extra",
        ),
        (
            json!({"job": {"type": "router_setup", "project_id": "other", "resource": {"router_id": r}}}),
            400,
            "doesn't belong to the project other",
        ),
        (
            json!({"job": {"type": "router_setup", "project_id": "demo", "resource": {"router_id": "00000000-0000-0000-0000-000000000000"}}}),
            404,
            "00000000-0000-0000-0000-000000000000",
        ),
        (json!({"jobs": {}}), 400, "job"),
    ] {
        err_message(post(body.clone()), status, needle, &body.to_string());
    }
    let (st, v) = post(
        json!({"job": {"type": "router_setup", "project_id": "demo", "resource": {"router_id": "00000000-0000-0000-0000-000000000000"}}}),
    );
    assert_eq!(
        (st, v["NeutronError"]["type"].as_str()),
        (404, Some("RouterNotFound"))
    );
    for who in [DEMO, OTHER] {
        let (st, v) = c.t("POST", "/v1.0/jobs", Some(who), Some(&good));
        assert_eq!(st, 403, "{v}");
    }
    assert!(
        jobs_of(c, &r, "?status=new").is_empty(),
        "nothing queued by the refusals"
    );

    // A POSTed job is a new job (the finished one stays in the log) and runs to SUCCESS.
    let (st, v) = post(good.clone());
    assert_eq!(st, 202, "{v}");
    let posted = v["job"].clone();
    assert_eq!(posted["status"], "NEW");
    assert_eq!(posted["type"], "router_setup");
    assert_eq!(posted["resource"], json!({"router_id": r}));
    let posted_id = posted["id"].as_str().unwrap().to_string();
    assert!(!done.contains(&posted_id));
    wait_for("the posted job done", 15, || {
        (job(c, &posted_id)["status"] == "SUCCESS").then_some(())
    });

    // It really re-syncs: a bridge-IP port deleted behind the controller's back (no full
    // pass runs in this test) is made again by a POSTed job, and the node gets its leg.
    let bridge_ports = ok(
        c.n(
            "GET",
            &format!("/v2.0/ports?device_id={r}&device_owner=network:router_bridge&name=RegionOne"),
            Some(ADMIN),
            None,
        ),
        "bridge port",
    );
    let bport = bridge_ports["ports"][0]["id"].as_str().unwrap().to_string();
    raw_sql(
        db,
        &[
            format!("DELETE FROM ip_allocations WHERE port_id = '{bport}'"),
            format!("DELETE FROM ports WHERE id = '{bport}'"),
        ],
    );
    let (st, _) = c.n("GET", &format!("/v2.0/ports/{bport}"), Some(ADMIN), None);
    assert_eq!(st, 404, "the row is gone");
    std::thread::sleep(Duration::from_millis(500));
    let (st, _) = c.n("GET", &format!("/v2.0/ports/{bport}"), Some(ADMIN), None);
    assert_eq!(st, 404, "and nothing but a re-sync brings it back");
    let (st, v) = post(good.clone());
    assert_eq!(st, 202, "{v}");
    let resync_id = v["job"]["id"].as_str().unwrap().to_string();
    let port = wait_for("the bridge-IP port made again", 15, || {
        let (st, v) = c.n("GET", &format!("/v2.0/ports/{bport}"), Some(ADMIN), None);
        (st == 200).then_some(v)
    });
    let mac = port["port"]["mac_address"].as_str().unwrap().to_string();
    wait_for("node1's bridge leg on the new port", 15, || {
        let d = desired(c, "node1");
        let legs = d["state"]["routers"][&r]["legs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        legs.iter()
            .any(|l| l["kind"] == "bridge" && l["mac"] == mac.as_str())
            .then_some(())
    });
    report(c, &r, "ready");
    wait_for("the re-sync job done", 15, || {
        (job(c, &resync_id)["status"] == "SUCCESS").then_some(())
    });

    // An agent fails the router: the job is FAIL with the reason; redo makes it NEW with its
    // attempts reset; a FAIL job can be deleted.
    let (st, v) = post(good.clone());
    assert_eq!(st, 202, "{v}");
    let failing = v["job"]["id"].as_str().unwrap().to_string();
    report(c, &r, "failed");
    let failed = wait_for("the job failed", 15, || {
        let j = job(c, &failing);
        (j["status"] == "FAIL").then_some(j)
    });
    assert!(
        failed["last_error"].as_str().unwrap().contains("boom"),
        "{failed}"
    );
    assert!(failed["attempts"].as_i64().unwrap() >= 1);
    let redone = wait_for("a redo of the failed job", 30, || {
        let (st, v) = c.t("PUT", &format!("/v1.0/jobs/{failing}"), Some(ADMIN), None);
        match st {
            200 => Some(v),
            400 => None, // it was retrying (RUNNING) at that instant
            _ => panic!("redo: {st} {v}"),
        }
    });
    assert_eq!(redone["job"]["id"], failing.as_str());
    assert_eq!(redone["job"]["status"], "NEW");
    assert_eq!(redone["job"]["attempts"], 0);
    assert!(redone["job"]["last_error"].is_null());
    wait_for("a delete of the failed job", 60, || {
        let (st, v) = c.t(
            "DELETE",
            &format!("/v1.0/jobs/{failing}"),
            Some(ADMIN),
            None,
        );
        match st {
            200 => {
                assert_eq!(v, json!({}));
                Some(())
            }
            400 => None,
            _ => panic!("delete: {st} {v}"),
        }
    });
    let (st, _) = c.t("GET", &format!("/v1.0/jobs/{failing}"), Some(ADMIN), None);
    assert_eq!(st, 404, "deleted");
    report(c, &r, "ready");

    // Pages: two more routers with a gateway each (one job each), listed two by two.
    let ext = ext_net(c);
    for name in ["r2", "r3"] {
        router(
            c,
            json!({"name": name, "external_gateway_info": {"network_id": ext}}),
        );
    }
    let all = ok(c.t("GET", "/v1.0/jobs", Some(ADMIN), None), "all")["jobs"]
        .as_array()
        .unwrap()
        .clone();
    assert!(all.len() >= 6, "{all:?}");
    // Active jobs first, then the log.
    let first_logged = all.iter().position(|j| j["status"] == "SUCCESS").unwrap();
    assert!(
        all[first_logged..].iter().all(|j| j["status"] == "SUCCESS"),
        "{all:?}"
    );
    let mut paged = Vec::new();
    let mut path = "/v1.0/jobs?limit=2".to_string();
    loop {
        let v = ok(c.t("GET", &path, Some(ADMIN), None), "page");
        paged.extend(
            v["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].clone()),
        );
        match v["jobs_links"][0]["href"].as_str() {
            Some(next) => path = next.to_string(),
            None => break,
        }
    }
    let ids: Vec<Value> = all.iter().map(|j| j["id"].clone()).collect();
    // A job may change state between pages (and so its place); none is lost or repeated.
    let (a, b): (BTreeSet<String>, BTreeSet<String>) = (
        paged.iter().map(|v| v.to_string()).collect(),
        ids.iter().map(|v| v.to_string()).collect(),
    );
    assert_eq!(a.len(), paged.len(), "no job twice: {paged:?}");
    assert_eq!(a, b);
    let v = ok(
        c.t(
            "GET",
            "/v1.0/jobs?limit=1&status=success",
            Some(ADMIN),
            None,
        ),
        "filtered page",
    );
    assert!(
        v["jobs_links"][0]["href"]
            .as_str()
            .unwrap()
            .contains("status=success"),
        "{v}"
    );

    // /metrics counts the log as SUCCESS.
    let logged = jobs_of(c, &r, "?status=success").len();
    assert!(logged >= 4, "{logged}");
    let (st, body) = common::request_raw(c.tricircle, "GET", "/metrics", None, None, &[]);
    assert_eq!(st, 200);
    let text = String::from_utf8_lossy(&body);
    let line = text
        .lines()
        .find(|l| l.starts_with("crosspod_controller_jobs{status=\"SUCCESS\"}"))
        .unwrap();
    let n: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        n,
        ok(
            c.t("GET", "/v1.0/jobs?status=success", Some(ADMIN), None),
            "s"
        )["jobs"]
            .as_array()
            .unwrap()
            .len()
    );

    // Members are refused every path of the jobs API.
    for who in [DEMO, OTHER] {
        for (m, p) in [
            ("GET", "/v1.0/jobs".to_string()),
            ("GET", "/v1.0/jobs?project_id=demo".to_string()),
            ("GET", "/v1.0/jobs/detail".to_string()),
            ("GET", "/v1.0/jobs/schemas".to_string()),
            ("GET", format!("/v1.0/jobs/{setup_id}")),
            ("PUT", format!("/v1.0/jobs/{setup_id}")),
            ("DELETE", format!("/v1.0/jobs/{setup_id}")),
        ] {
            let (st, v) = c.t(m, &p, Some(who), None);
            assert_eq!(st, 403, "{m} {p}: {v}");
            assert!(
                v["NeutronError"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("admin_api:jobs"),
                "{v}"
            );
        }
    }
    assert_eq!(
        job(c, &setup_id)["status"],
        "SUCCESS",
        "nothing a member did changed it"
    );
    for (m, p) in [
        ("PATCH", "/v1.0/jobs"),
        ("POST", "/v1.0/jobs/schemas"),
        ("DELETE", "/v1.0/jobs"),
    ] {
        let (st, _) = c.t(m, p, Some(ADMIN), None);
        assert_eq!(st, 405, "{m} {p}");
    }
    assert!(!c.log_has_5xx());
}

#[test]
fn jobs_as_tricircle_on_sqlite() {
    let c = Controller::start_opts(&Opts {
        extra: NO_FULL_PASS,
        ..Opts::default()
    });
    let db = format!("sqlite://{}", c.dir.path().join("controller.db").display());
    jobs_scenario(&c, &db);
}

#[test]
fn jobs_as_tricircle_on_postgres() {
    let db = PgDb::create();
    let c = Controller::start_opts(&Opts {
        database: Some(&db.url),
        extra: NO_FULL_PASS,
        ..Opts::default()
    });
    jobs_scenario(&c, &db.url);
    drop(c);
}

/// A database of migration 6 with crosspod's old per-router jobs: migration 9 moves the
/// finished ones to the log (same id, `router_setup`) and keeps the others as `router_setup`.
fn migration_9(url: &str) {
    use controller::store::jobs::{JobFilter, JobState, JobType};
    use controller::store::Store;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        Store::connect(url).await.unwrap().close().await;
    });
    raw_sql(
        url,
        &[
            "DROP TABLE job_logs".to_string(),
            "DROP INDEX jobs_status".to_string(),
            "ALTER TABLE jobs DROP COLUMN version".to_string(),
            "DELETE FROM schema_migrations WHERE version = 9".to_string(),
            "INSERT INTO jobs (id, type, resource_id, project_id, status, timestamp, attempts) VALUES ('j1', 'router', 'r1', 'demo', 'SUCCESS', '2026-01-01T00:00:01Z', 1)".to_string(),
            "INSERT INTO jobs (id, type, resource_id, project_id, status, timestamp, attempts, last_error) VALUES ('j2', 'router', 'r2', 'demo', 'FAIL', '2026-01-01T00:00:02Z', 8, 'boom')".to_string(),
        ],
    );
    rt.block_on(async {
        let store = Store::connect(url).await.unwrap();
        let j1 = store.get_job("j1").await.unwrap();
        assert_eq!(
            (j1.status, j1.kind, j1.attempts),
            (JobState::Success, JobType::RouterSetup, 1)
        );
        let j2 = store.get_job("j2").await.unwrap();
        assert_eq!(
            (j2.status, j2.kind, j2.last_error.as_deref()),
            (JobState::Fail, JobType::RouterSetup, Some("boom"))
        );
        assert!(
            store.active_jobs(8).await.unwrap().is_empty(),
            "j2 is out of attempts"
        );
        assert_eq!(store.pending_jobs().await.unwrap().len(), 1);
        let all = store
            .list_jobs(&JobFilter::default(), None, 10)
            .await
            .unwrap();
        let ids: Vec<&str> = all.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["j2", "j1"], "active first, then the log");
        // The state machine's compare-and-set: a job re-queued after it was read is not
        // finished by the stale read.
        store
            .queue_job(JobType::RouterSetup, "r3", "demo")
            .await
            .unwrap();
        let read = store.active_jobs(8).await.unwrap().pop().unwrap();
        store
            .queue_job(JobType::RouterSetup, "r3", "demo")
            .await
            .unwrap();
        assert!(!store
            .set_job(&read, JobState::Success, 1, None)
            .await
            .unwrap());
        let again = store.active_jobs(8).await.unwrap().pop().unwrap();
        assert_eq!(
            (again.id.as_str(), again.status),
            (read.id.as_str(), JobState::New)
        );
        assert!(store
            .set_job(&again, JobState::Success, 1, None)
            .await
            .unwrap());
        assert!(store.active_jobs(8).await.unwrap().is_empty());
        assert_eq!(
            store.get_job(&read.id).await.unwrap().status,
            JobState::Success
        );
        store.close().await;
    });
}

#[test]
fn migration_9_moves_finished_jobs_to_the_log_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    migration_9(&format!("sqlite://{}", dir.path().join("c.db").display()));
}

#[test]
fn migration_9_moves_finished_jobs_to_the_log_on_postgres() {
    let db = PgDb::create();
    migration_9(&db.url);
}

/// Thousands of finished jobs cost a pass nothing: the background pass reads only active
/// jobs, and a page of the list reads a page.
#[test]
fn a_long_job_log_is_paged_and_not_read_by_the_pass() {
    let c = Controller::start();
    let db = format!("sqlite://{}", c.dir.path().join("controller.db").display());
    let mut sql = vec!["BEGIN".to_string()];
    for i in 0..20_000 {
        sql.push(format!(
            "INSERT INTO job_logs (id, type, resource_id, project_id, timestamp, attempts) VALUES ('log-{i:05}', 'router_setup', 'r{i}', 'demo', '2026-01-01T00:00:00Z', 1)"
        ));
    }
    sql.push("COMMIT".to_string());
    raw_sql(&db, &sql);
    let t = Instant::now();
    let v = ok(c.t("GET", "/v1.0/jobs?limit=3", Some(ADMIN), None), "page");
    let took = t.elapsed();
    let ids: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["log-19999", "log-19998", "log-19997"],
        "ties by id, descending"
    );
    assert!(v["jobs_links"][0]["href"]
        .as_str()
        .unwrap()
        .contains("marker=log-19997"));
    let v = ok(
        c.t(
            "GET",
            "/v1.0/jobs?limit=2&marker=log-00001",
            Some(ADMIN),
            None,
        ),
        "last page",
    );
    assert_eq!(v["jobs"].as_array().unwrap().len(), 1);
    assert!(v["jobs_links"].is_null());
    eprintln!("a page of 3 from 20000 logged jobs: {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // An idle controller with that log: its passes find no active job (the log is never read
    // by them), so its CPU stays where an empty one's is; measured, not asserted, here.
    let cpu = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let before = cpu(c.pid());
    std::thread::sleep(Duration::from_secs(5));
    eprintln!(
        "idle controller with 20000 logged jobs: {} clock ticks of CPU in 5 s",
        cpu(c.pid()) - before
    );
    let _ = request(c.tricircle, "GET", "/", None, None);
    assert!(!c.log_has_5xx());
}
