//! Tags (`standard-attr-tag`, issue 15) and "advertise exactly what is served":
//!
//! - the store part on SQLite and PostgreSQL (CROSSPOD_TEST_PG_URL; fails if unset): tags
//!   written with their resource, revision bumps, the 50-tag limit under concurrency (two
//!   controllers' stores on PostgreSQL), tags deleted with their resource on every path;
//! - the real `openstack` CLI: `--tag`, `--no-tag`, `unset --tag`, `--tags`/`--any-tags`/
//!   `--not-tags`/`--not-any-tags` on networks, subnets, ports, routers and floating IPs;
//! - raw HTTP for the paths the CLI does not use, bad tags (400), and a member of another
//!   project attacking tags (404 for what it cannot see, 403 for what it can);
//! - every attribute of every list and show belongs to an advertised extension, and every
//!   advertised extension is shown to be served.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::guide::{agent, ext_net, net_subnet, ok, pods, register, vm_port};
use common::{openstack, openstack_json, Controller, ADMIN, DEMO, OTHER};
use controller::error::StoreError;
use controller::store::l3::Router;
use controller::store::*;
use controller::vlan_pool::VlanRanges;
use serde_json::{json, Value};

// ---------------------------------------------------------------- the store, both backends

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn status(e: StoreError) -> (u16, &'static str) {
    match e {
        StoreError::Rule(a) => (controller::api::error::status_of(a.class).as_u16(), a.kind),
        other => panic!("expected a domain error, got {other}"),
    }
}

fn new_net(project: &str) -> NewNetwork {
    NewNetwork {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: project.into(),
        name: "n".into(),
        description: String::new(),
        admin_state_up: true,
        shared: false,
        external: false,
        mtu: 1500,
        port_security_enabled: true,
        segment: SegmentRequest::Local,
        az_hints: vec![],
    }
}

fn new_subnet(network_id: &str, cidr: &str) -> Subnet {
    let cidr: ipnet::IpNet = cidr.parse().unwrap();
    let gw = controller::ipam::default_gateway(&cidr);
    Subnet {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: "p".into(),
        network_id: network_id.into(),
        name: String::new(),
        description: String::new(),
        ip_version: 4,
        cidr,
        gateway_ip: Some(gw),
        allocation_pools: controller::ipam::default_pools(&cidr, Some(gw)),
        enable_dhcp: true,
        dns_nameservers: vec![],
        host_routes: vec![],
        subnetpool_id: None,
        ipv6_ra_mode: None,
        ipv6_address_mode: None,
        created_at: String::new(),
        updated_at: String::new(),
        revision_number: 1,
    }
}

fn new_port(network_id: &str) -> NewPort {
    NewPort {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: "p".into(),
        network_id: network_id.into(),
        name: String::new(),
        description: String::new(),
        admin_state_up: true,
        mac_address: None,
        device_id: String::new(),
        device_owner: String::new(),
        host_id: String::new(),
        port_security_enabled: None,
        fixed_ips: None,
    }
}

async fn tag_rows(s: &Store) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS c FROM tags")
        .fetch_one(s.pool())
        .await
        .unwrap()
        .try_get::<i64, _>("c")
        .unwrap()
}

async fn revision(s: &Store, id: &str) -> (i64, String) {
    let n = s.get_network(id).await.unwrap();
    (n.revision_number, n.updated_at)
}

/// Tags written with their resource, each change a revision (and a change-log entry), a
/// change that changes nothing no revision, the limit, and tags gone with their resource.
async fn store_suite(s: &Store) {
    let ranges = VlanRanges::default();
    let n = s
        .create_network_tagged(&new_net("p"), &ranges, &strs(&["red", "blue", "red"]))
        .await
        .unwrap();
    assert_eq!(
        s.tags_of(Tagged::Network, &n.id).await.unwrap(),
        ["blue", "red"]
    );
    assert_eq!(
        n.revision_number, 1,
        "tags on create are part of the create"
    );
    let kind = Tagged::Network;

    // Adding a tag it has changes nothing, not even the revision.
    let t = s
        .change_tags(kind, &n.id, TagChange::Add(&strs(&["red"])))
        .await
        .unwrap();
    assert_eq!(t, ["blue", "red"]);
    assert_eq!(revision(s, &n.id).await.0, 1);

    let seq = s.last_change_seq().await.unwrap();
    let t = s
        .change_tags(kind, &n.id, TagChange::Add(&strs(&["green"])))
        .await
        .unwrap();
    assert_eq!(t, ["blue", "green", "red"]);
    assert_eq!(revision(s, &n.id).await.0, 2, "a tag change is a revision");
    assert!(
        s.last_change_seq().await.unwrap() > seq,
        "and logged, so the realizer's row keeps equal to the store's"
    );

    let t = s
        .change_tags(kind, &n.id, TagChange::Replace(&strs(&["x"])))
        .await
        .unwrap();
    assert_eq!(t, ["x"]);
    assert_eq!(revision(s, &n.id).await.0, 3);
    assert_eq!(
        status(
            s.change_tags(kind, &n.id, TagChange::Remove("nope"))
                .await
                .unwrap_err()
        ),
        (404, "TagNotFound")
    );
    assert_eq!(
        revision(s, &n.id).await.0,
        3,
        "a refused change is no revision"
    );
    assert!(s
        .change_tags(kind, &n.id, TagChange::Remove("x"))
        .await
        .unwrap()
        .is_empty());
    s.change_tags(kind, &n.id, TagChange::Clear).await.unwrap();
    assert_eq!(
        revision(s, &n.id).await.0,
        4,
        "clearing no tags changes nothing"
    );

    // At most 50, whichever way they come.
    let fifty: Vec<String> = (0..50).map(|i| format!("t{i:02}")).collect();
    let mut fifty_one = fifty.clone();
    fifty_one.push("t50".into());
    assert_eq!(
        status(
            s.change_tags(kind, &n.id, TagChange::Replace(&fifty_one))
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    assert!(s.tags_of(kind, &n.id).await.unwrap().is_empty());
    s.change_tags(kind, &n.id, TagChange::Replace(&fifty))
        .await
        .unwrap();
    assert_eq!(
        status(
            s.change_tags(kind, &n.id, TagChange::Add(&strs(&["one-more"])))
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    assert_eq!(s.tags_of(kind, &n.id).await.unwrap(), fifty);

    // Unknown resources are their own 404.
    let nobody = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        status(
            s.change_tags(kind, &nobody, TagChange::Clear)
                .await
                .unwrap_err()
        ),
        (404, "NetworkNotFound")
    );
    assert_eq!(
        status(
            s.change_tags(Tagged::Router, &nobody, TagChange::Clear)
                .await
                .unwrap_err()
        ),
        (404, "RouterNotFound")
    );

    // Tags go with their resource, on every path that deletes it.
    let sub = s
        .create_subnet_tagged(&new_subnet(&n.id, "10.1.0.0/24"), &strs(&["s"]))
        .await
        .unwrap();
    let port = s
        .create_port_tagged(&new_port(&n.id), &strs(&["p1", "p2"]))
        .await
        .unwrap();
    let router = s
        .create_router_tagged(
            &Router {
                id: uuid::Uuid::new_v4().to_string(),
                project_id: "p".into(),
                name: "r".into(),
                description: String::new(),
                admin_state_up: true,
                az_hints: vec![],
                gateway: None,
                routes: vec![],
                created_at: String::new(),
                updated_at: String::new(),
                revision_number: 1,
            },
            None,
            &strs(&["r"]),
        )
        .await
        .unwrap();
    assert_eq!(tag_rows(s).await, 50 + 1 + 2 + 1);
    let by_id = s.tags_by_id(Tagged::Port).await.unwrap();
    assert_eq!(by_id.get(&port.id).unwrap(), &strs(&["p1", "p2"]));
    assert_eq!(by_id.len(), 1);
    s.delete_port(&port.id).await.unwrap();
    assert!(s.tags_of(Tagged::Port, &port.id).await.unwrap().is_empty());
    s.delete_router(&router.id).await.unwrap();
    assert_eq!(tag_rows(s).await, 50 + 1);
    s.delete_network(&n.id).await.unwrap();
    assert_eq!(tag_rows(s).await, 0, "the network's and its subnet's");
    assert!(s.tags_of(Tagged::Subnet, &sub.id).await.unwrap().is_empty());
    // A network made again with the same id (an admin may choose it) starts untagged.
    let again = s
        .create_network(
            &NewNetwork {
                id: n.id.clone(),
                ..new_net("p")
            },
            &ranges,
        )
        .await
        .unwrap();
    assert!(s.tags_of(kind, &again.id).await.unwrap().is_empty());

    // The constraints themselves: no tag of a resource that is not there, and no row whose
    // type, id and foreign key disagree.
    let fk = sqlx::query("INSERT INTO tags (resource_type, resource_id, tag, port_id) VALUES ('port', 'gone', 't', 'gone')")
        .execute(s.pool())
        .await
        .expect_err("foreign keys are enforced");
    assert!(StoreError::db("t")(fk).is_foreign_key_violation());
    let mixed = format!("INSERT INTO tags (resource_type, resource_id, tag, network_id) VALUES ('port', '{0}', 't', '{0}')", again.id);
    sqlx::query(&mixed)
        .execute(s.pool())
        .await
        .expect_err("a port's tag cannot hang on a network");
    let two = format!("INSERT INTO tags (resource_type, resource_id, tag, network_id, subnet_id) VALUES ('network', '{0}', 't', '{0}', NULL)", again.id);
    sqlx::query(&two)
        .execute(s.pool())
        .await
        .expect("the CHECKs accept a well-formed row");
    assert_eq!(s.tags_of(kind, &again.id).await.unwrap(), ["t"]);
}

/// Sixty tags added at once, one per request, from every store: exactly fifty get in, the
/// others are 400, and the revision counts exactly the fifty.
async fn limit_race_suite(stores: Vec<Arc<Store>>) {
    let n = stores[0]
        .create_network(&new_net("p"), &VlanRanges::default())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = stores[i % stores.len()].clone();
        let id = n.id.clone();
        tasks.push(tokio::spawn(async move {
            let t = [format!("t{i:02}")];
            s.change_tags(Tagged::Network, &id, TagChange::Add(&t))
                .await
                .map_err(status)
        }));
    }
    let mut added = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => added += 1,
            Err(e) => assert_eq!(e.0, 400, "{e:?}"),
        }
    }
    assert_eq!(added, 50);
    assert_eq!(
        stores[0]
            .tags_of(Tagged::Network, &n.id)
            .await
            .unwrap()
            .len(),
        50
    );
    assert_eq!(revision(&stores[0], &n.id).await.0, 51);
}

async fn sqlite_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    (dir, Store::connect(&url).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tags() {
    let (_dir, s) = sqlite_store().await;
    store_suite(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_tags() {
    let db = common::PgDb::create();
    let s = Store::connect(&db.url).await.unwrap();
    assert_eq!(s.backend(), Backend::Postgres);
    store_suite(&s).await;
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tag_limit_race() {
    let (_dir, s) = sqlite_store().await;
    limit_race_suite(vec![Arc::new(s)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_tag_limit_race_two_stores() {
    let db = common::PgDb::create();
    let a = Arc::new(Store::connect(&db.url).await.unwrap());
    let b = Arc::new(Store::connect(&db.url).await.unwrap());
    limit_race_suite(vec![a.clone(), b.clone()]).await;
    a.close().await;
    b.close().await;
}

// ---------------------------------------------------------------- the API

fn get(c: &Controller, token: &str, path: &str) -> Value {
    ok(c.n("GET", path, Some(token), None), path)
}

fn create(c: &Controller, token: &str, coll: &str, body: Value) -> Value {
    let key = coll.trim_end_matches('s');
    let v = ok(
        c.n(
            "POST",
            &format!("/v2.0/{coll}"),
            Some(token),
            Some(&json!({ key: body })),
        ),
        coll,
    );
    v[key].clone()
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id in {v}"))
        .to_string()
}

/// A 4xx in Neutron's shape with `status` and `kind`; returns the message.
fn refused(r: (u16, Value), status: u16, kind: &str, what: &str) -> String {
    assert_eq!(r.0, status, "{what}: {}", r.1);
    assert_eq!(r.1["NeutronError"]["type"], kind, "{what}: {}", r.1);
    r.1["NeutronError"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not Neutron-shaped: {}", r.1))
        .to_string()
}

/// The pods, two nodes, the external network and a floating IP's worth of topology.
fn world(c: &Controller) -> String {
    pods(c);
    ok(
        register(c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(c, &agent("node2"), "node2", "RegionTwo", true),
        "node2",
    );
    ext_net(c)
}

fn os(c: &Controller, token: &str, args: &[&str]) -> Value {
    openstack_json(c, token, args)
}

fn os_ok(c: &Controller, token: &str, args: &[&str]) {
    let (okay, _, err) = openstack(c, token, args);
    assert!(okay, "openstack {args:?}: {err}");
}

fn sorted_tags(v: &Value) -> Vec<String> {
    let mut t: Vec<String> = v["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("tags in {v}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

/// Ids a CLI list printed.
fn listed(c: &Controller, token: &str, args: &[&str]) -> BTreeSet<String> {
    os(c, token, args)
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["ID"].as_str().unwrap().to_string())
        .collect()
}

/// One resource's tags through the CLI: created with `--tag`, `set --tag`, `unset --tag`,
/// the four list filters, `set --no-tag`; each change one revision.
fn cli_round(c: &Controller, what: &[&str], id: &str, other_id: &str) {
    let show = |c: &Controller| {
        let mut a = what.to_vec();
        a.extend(["show", id]);
        os(c, DEMO, &a)
    };
    let run = |args: &[&str]| {
        let mut a = what.to_vec();
        a.extend_from_slice(args);
        os_ok(c, DEMO, &a);
    };
    let list = |filter: &[&str]| {
        let mut a = what.to_vec();
        a.push("list");
        a.extend_from_slice(filter);
        listed(c, DEMO, &a)
    };
    let v = show(c);
    assert_eq!(
        sorted_tags(&v),
        ["blue", "red"],
        "{what:?} created with --tag: {v}"
    );
    let rev = v["revision_number"].as_i64().unwrap();
    run(&["set", "--tag", "green", id]);
    let v = show(c);
    assert_eq!(sorted_tags(&v), ["blue", "green", "red"], "{v}");
    assert_eq!(v["revision_number"].as_i64().unwrap(), rev + 1, "{v}");
    run(&["unset", "--tag", "red", id]);
    assert_eq!(sorted_tags(&show(c)), ["blue", "green"]);
    let (me, other) = (id.to_string(), other_id.to_string());
    let only = |ids: BTreeSet<String>, has: bool, filter: &str| {
        assert_eq!(ids.contains(&me), has, "{what:?} list {filter}: {ids:?}");
        assert!(
            !ids.contains(&other),
            "{what:?} list {filter}: the untagged one: {ids:?}"
        );
    };
    only(list(&["--tags", "blue,green"]), true, "--tags blue,green");
    only(list(&["--tags", "blue,red"]), false, "--tags blue,red");
    only(
        list(&["--any-tags", "red,green"]),
        true,
        "--any-tags red,green",
    );
    let not = list(&["--not-tags", "blue,green"]);
    assert!(!not.contains(&me) && not.contains(&other), "{not:?}");
    let not_any = list(&["--not-any-tags", "red,nope"]);
    assert!(
        not_any.contains(&me) && not_any.contains(&other),
        "{not_any:?}"
    );
    run(&["set", "--no-tag", id]);
    assert!(sorted_tags(&show(c)).is_empty());
}

#[test]
fn tags_through_the_openstack_cli() {
    let c = Controller::start();
    let ext = world(&c);
    let tag = ["--tag", "red", "--tag", "blue"];
    let mk = |args: &[&str], tagged: bool| -> String {
        let mut a = args.to_vec();
        if tagged {
            a.extend(tag);
        }
        id_of(&os(&c, DEMO, &a))
    };
    let net = mk(&["network", "create", "tnet"], true);
    let net2 = mk(&["network", "create", "plain"], false);
    let sub = mk(
        &[
            "subnet",
            "create",
            "--network",
            "tnet",
            "--subnet-range",
            "10.9.0.0/24",
            "tsub",
        ],
        true,
    );
    let sub2 = mk(
        &[
            "subnet",
            "create",
            "--network",
            "plain",
            "--subnet-range",
            "10.8.0.0/24",
            "psub",
        ],
        false,
    );
    // The CLI sends a port's tags in its POST (it checks tag-ports-during-bulk-creation):
    // one revision, no separate PUT.
    let port = os(
        &c,
        DEMO,
        &[
            "port",
            "create",
            "--network",
            "tnet",
            "--tag",
            "red",
            "--tag",
            "blue",
            "tport",
        ],
    );
    assert_eq!(
        port["revision_number"], 1,
        "tags came with the create: {port}"
    );
    let port = id_of(&port);
    let port2 = mk(&["port", "create", "--network", "tnet", "pport"], false);
    let router = mk(&["router", "create", "trouter"], true);
    let router2 = mk(&["router", "create", "prouter"], false);
    let fip = mk(&["floating", "ip", "create", &ext], true);
    let fip2 = mk(&["floating", "ip", "create", &ext], false);

    cli_round(&c, &["network"], &net, &net2);
    cli_round(&c, &["subnet"], &sub, &sub2);
    cli_round(&c, &["port"], &port, &port2);
    cli_round(&c, &["router"], &router, &router2);
    cli_round(&c, &["floating", "ip"], &fip, &fip2);
    assert!(!c.log_has_5xx());
}

#[test]
fn tag_paths_bodies_filters_and_bad_tags_over_http() {
    let c = Controller::start();
    let ext = world(&c);
    // Tags in every create body, as one revision.
    let net = create(
        &c,
        DEMO,
        "networks",
        json!({"name": "n", "tags": ["b", "a"]}),
    );
    assert_eq!(sorted_tags(&net), ["a", "b"]);
    assert_eq!(net["revision_number"], 1);
    let nid = id_of(&net);
    let sub = create(
        &c,
        DEMO,
        "subnets",
        json!({"network_id": nid, "cidr": "10.3.0.0/24", "tags": ["s"]}),
    );
    let port = create(&c, DEMO, "ports", json!({"network_id": nid, "tags": ["p"]}));
    let router = create(&c, DEMO, "routers", json!({"name": "r", "tags": ["r"]}));
    let fip = create(
        &c,
        DEMO,
        "floatingips",
        json!({"floating_network_id": ext, "tags": ["f"]}),
    );
    for (coll, v, t) in [
        ("subnets", &sub, "s"),
        ("ports", &port, "p"),
        ("routers", &router, "r"),
        ("floatingips", &fip, "f"),
    ] {
        assert_eq!(sorted_tags(v), [t], "{coll} create: {v}");
        let id = id_of(v);
        let key = coll.trim_end_matches('s');
        let shown = get(&c, DEMO, &format!("/v2.0/{coll}/{id}"));
        assert_eq!(sorted_tags(&shown[key]), [t], "{coll} show");
        let listed = get(&c, DEMO, &format!("/v2.0/{coll}?tags={t}"));
        assert_eq!(
            listed[coll].as_array().unwrap().len(),
            1,
            "{coll}?tags={t}: {listed}"
        );
        assert_eq!(listed[coll][0]["id"], id.as_str());
        // Not through an update body: that is what .../tags is for (Neutron: allow_put False).
        let m = refused(
            c.n(
                "PUT",
                &format!("/v2.0/{coll}/{id}"),
                Some(DEMO),
                Some(&json!({ key: {"tags": ["x"]} })),
            ),
            400,
            "HTTPBadRequest",
            "tags in an update",
        );
        assert!(m.contains("/tags"), "{m}");
    }

    // The sub-resource, each status as Neutron's.
    let base = format!("/v2.0/networks/{nid}/tags");
    let rev = |c: &Controller| {
        get(c, DEMO, &format!("/v2.0/networks/{nid}"))["network"]["revision_number"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(get(&c, DEMO, &base), json!({"tags": ["a", "b"]}));
    let r0 = rev(&c);
    assert_eq!(c.n("PUT", &format!("{base}/red"), Some(DEMO), None).0, 201);
    assert_eq!(
        c.n("PUT", &format!("{base}/red"), Some(DEMO), None).0,
        201,
        "idempotent"
    );
    assert_eq!(rev(&c), r0 + 1, "adding a tag it has is no revision");
    assert_eq!(c.n("GET", &format!("{base}/red"), Some(DEMO), None).0, 204);
    refused(
        c.n("GET", &format!("{base}/blue"), Some(DEMO), None),
        404,
        "TagNotFound",
        "absent tag",
    );
    // A tag with a slash and a space travels percent-encoded in the path.
    assert_eq!(
        c.n("PUT", &format!("{base}/a%2Fb%20c"), Some(DEMO), None).0,
        201
    );
    assert!(get(&c, DEMO, &base)["tags"].to_string().contains("a/b c"));
    assert_eq!(
        c.n("GET", &format!("{base}/a%2Fb%20c"), Some(DEMO), None).0,
        204
    );
    let v = ok(
        c.n(
            "POST",
            &base,
            Some(DEMO),
            Some(&json!({"tags": ["x", "y"]})),
        ),
        "POST tags",
    );
    assert_eq!(
        v["tags"],
        json!(["a", "a/b c", "b", "red", "x", "y"]),
        "added to what it had"
    );
    let v = ok(
        c.n("PUT", &base, Some(DEMO), Some(&json!({"tags": ["only"]}))),
        "PUT tags",
    );
    assert_eq!(v, json!({"tags": ["only"]}));
    let shown = get(&c, DEMO, &format!("/v2.0/networks/{nid}"))["network"].clone();
    assert_eq!(shown["tags"], json!(["only"]));
    assert_eq!(shown["revision_number"].as_i64().unwrap(), r0 + 4);
    assert_eq!(
        c.n("DELETE", &format!("{base}/only"), Some(DEMO), None).0,
        204
    );
    refused(
        c.n("DELETE", &format!("{base}/only"), Some(DEMO), None),
        404,
        "TagNotFound",
        "twice",
    );
    ok(
        c.n("PUT", &base, Some(DEMO), Some(&json!({"tags": ["p", "q"]}))),
        "PUT",
    );
    assert_eq!(c.n("DELETE", &base, Some(DEMO), None).0, 204);
    assert_eq!(get(&c, DEMO, &base), json!({"tags": []}));
    refused(
        c.n("PATCH", &base, Some(DEMO), None),
        405,
        "HTTPMethodNotAllowed",
        "PATCH",
    );
    refused(
        c.n("POST", &format!("{base}/x"), Some(DEMO), None),
        405,
        "HTTPMethodNotAllowed",
        "POST tag",
    );
    refused(
        c.n("GET", &format!("{base}/x/y"), Some(DEMO), None),
        404,
        "HTTPNotFound",
        "deeper",
    );
    let nobody = uuid::Uuid::new_v4();
    refused(
        c.n(
            "GET",
            &format!("/v2.0/networks/{nobody}/tags"),
            Some(DEMO),
            None,
        ),
        404,
        "NetworkNotFound",
        "unknown",
    );
    refused(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{nobody}/tags/x"),
            Some(DEMO),
            None,
        ),
        404,
        "RouterNotFound",
        "unknown",
    );
    refused(
        c.n("GET", "/v2.0/ports/not-a-uuid/tags", Some(DEMO), None),
        404,
        "PortNotFound",
        "malformed",
    );

    // Bad tags and bodies: 400, nothing changed.
    ok(
        c.n("PUT", &base, Some(DEMO), Some(&json!({"tags": ["keep"]}))),
        "PUT",
    );
    let r1 = rev(&c);
    let long = "x".repeat(256);
    let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    for (body, what) in [
        (json!({}), "no tags"),
        (json!({"tags": null}), "null"),
        (json!({"tags": "red"}), "not a list"),
        (json!({"tags": [1]}), "not strings"),
        (json!({"tags": [""]}), "empty tag"),
        (json!({"tags": ["a,b"]}), "comma"),
        (json!({"tags": [long]}), "256 characters"),
        (json!({"tags": ["a", "a"]}), "duplicates"),
        (json!({"tags": many}), "51 tags"),
        (json!({"tags": [], "more": 1}), "unknown key"),
        (json!(["a"]), "a bare list"),
    ] {
        for m in ["PUT", "POST"] {
            let r = c.n(m, &base, Some(DEMO), Some(&body));
            assert_eq!(r.0, 400, "{m} {what}: {}", r.1);
            assert!(
                r.1["NeutronError"]["message"].is_string(),
                "{what}: {}",
                r.1
            );
        }
    }
    let (s, v) = common::request(c.neutron, "PUT", &base, Some(DEMO), Some(b"{not json"));
    assert_eq!(s, 400, "{v}");
    for t in ["a,b", &"y".repeat(256)] {
        refused(
            c.n("PUT", &format!("{base}/{t}"), Some(DEMO), None),
            400,
            "InvalidInput",
            t,
        );
    }
    refused(
        c.n("PUT", &format!("{base}/%FF"), Some(DEMO), None),
        400,
        "InvalidInput",
        "not UTF-8",
    );
    let m = refused(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(DEMO),
            Some(&json!({"network": {"tags": ["a,b"]}})),
        ),
        400,
        "InvalidInput",
        "create with a bad tag",
    );
    assert!(m.contains("a,b"), "{m}");
    assert_eq!(rev(&c), r1, "nothing changed");
    assert_eq!(get(&c, DEMO, &base), json!({"tags": ["keep"]}));
    // The limit counts what it has: 49 more fit, the 51st does not.
    let more: Vec<String> = (0..49).map(|i| format!("m{i:02}")).collect();
    ok(
        c.n("POST", &base, Some(DEMO), Some(&json!({ "tags": more }))),
        "49 more",
    );
    let m = refused(
        c.n("PUT", &format!("{base}/one-too-many"), Some(DEMO), None),
        400,
        "BadRequest",
        "51st",
    );
    assert!(m.contains("50"), "{m}");

    // Filters on lists: AND, OR, NOT, through pages.
    ok(
        c.n(
            "PUT",
            &base,
            Some(DEMO),
            Some(&json!({"tags": ["red", "blue"]})),
        ),
        "PUT",
    );
    let mut nets = Vec::new();
    for (i, tags) in [
        json!(["red"]),
        json!(["blue"]),
        json!(["red", "blue"]),
        json!([]),
    ]
    .iter()
    .enumerate()
    {
        nets.push(id_of(&create(
            &c,
            DEMO,
            "networks",
            json!({"name": format!("f{i}"), "tags": tags}),
        )));
    }
    let names = |q: &str| -> BTreeSet<String> {
        get(&c, DEMO, &format!("/v2.0/networks?{q}"))["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .filter(|n| n.starts_with('f') || n == "n")
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(names("tags=red,blue"), set(&["f2", "n"]));
    assert_eq!(names("tags=red&tags=blue"), set(&["f2", "n"]));
    assert_eq!(names("tags-any=red,blue"), set(&["f0", "f1", "f2", "n"]));
    assert_eq!(names("not-tags=red,blue"), set(&["f0", "f1", "f3"]));
    assert_eq!(names("not-tags-any=red"), set(&["f1", "f3"]));
    assert_eq!(names("tags=red&not-tags-any=blue"), set(&["f0"]));
    let page = get(
        &c,
        DEMO,
        "/v2.0/networks?tags-any=red&limit=1&sort_key=name",
    );
    assert_eq!(page["networks"].as_array().unwrap().len(), 1);
    let next = page["networks_links"][0]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        next.contains("tags-any=red"),
        "the filter goes on in the link: {next}"
    );
    // Not a filter of resources without tags.
    refused(
        c.n("GET", "/v2.0/availability_zones?tags=red", Some(DEMO), None),
        400,
        "HTTPBadRequest",
        "az",
    );
    assert!(!c.log_has_5xx());
}

#[test]
fn a_member_cannot_touch_another_projects_tags() {
    let c = Controller::start();
    let ext = world(&c);
    // demo's objects, each tagged.
    let (net, sub) = net_subnet(&c, "net1", "10.0.1.0/24");
    let (port, _) = vm_port(&c, &net, "node1");
    let router = id_of(&create(
        &c,
        DEMO,
        "routers",
        json!({"name": "R", "external_gateway_info": {"network_id": ext}}),
    ));
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{router}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sub})),
        ),
        "interface",
    );
    let fip = id_of(&create(
        &c,
        DEMO,
        "floatingips",
        json!({"floating_network_id": ext, "port_id": port}),
    ));
    let demo_objs = [
        ("networks", net.clone()),
        ("subnets", sub.clone()),
        ("ports", port.clone()),
        ("routers", router.clone()),
        ("floatingips", fip.clone()),
    ];
    // The admin's shared network and its subnet, tagged.
    let shared = id_of(&create(
        &c,
        ADMIN,
        "networks",
        json!({"name": "shared", "shared": true, "tags": ["victim", "keep"]}),
    ));
    let shared_sub = id_of(&create(
        &c,
        ADMIN,
        "subnets",
        json!({"network_id": shared, "cidr": "10.50.0.0/24", "tags": ["victim", "keep"]}),
    ));
    for (coll, id) in &demo_objs {
        ok(
            c.n(
                "PUT",
                &format!("/v2.0/{coll}/{id}/tags"),
                Some(DEMO),
                Some(&json!({"tags": ["victim", "keep"]})),
            ),
            coll,
        );
    }
    // A port of other's on demo's network (the admin makes it), for the network owner's rule.
    let theirs = id_of(&create(
        &c,
        ADMIN,
        "ports",
        json!({"network_id": net, "project_id": "other", "tags": ["t"]}),
    ));
    let before: BTreeMap<String, Value> = demo_objs
        .iter()
        .map(|(coll, id)| {
            let key = coll.trim_end_matches('s');
            (
                format!("{coll}/{id}"),
                get(&c, ADMIN, &format!("/v2.0/{coll}/{id}"))[key].clone(),
            )
        })
        .collect();

    // What other cannot see: 404 for every operation, the object's own 404.
    for (coll, id) in &demo_objs {
        let b = format!("/v2.0/{coll}/{id}/tags");
        for (m, p, body) in [
            ("GET", b.clone(), None),
            ("PUT", b.clone(), Some(json!({"tags": ["pwned"]}))),
            ("POST", b.clone(), Some(json!({"tags": ["pwned"]}))),
            ("DELETE", b.clone(), None),
            ("GET", format!("{b}/victim"), None),
            ("PUT", format!("{b}/pwned"), None),
            ("DELETE", format!("{b}/victim"), None),
        ] {
            let (s, v) = c.n(m, &p, Some(OTHER), body.as_ref());
            assert_eq!(s, 404, "other: {m} {p}: {v}");
            assert!(
                v["NeutronError"]["type"]
                    .as_str()
                    .unwrap()
                    .ends_with("NotFound"),
                "{v}"
            );
            assert!(!v.to_string().contains("victim"), "{v}");
        }
        let listed = get(&c, OTHER, &format!("/v2.0/{coll}?tags=victim"));
        assert!(
            !listed.to_string().contains(id.as_str()),
            "{coll} listed to other by tag: {listed}"
        );
    }
    // What other can see but not change: the shared network and its subnet answer 403
    // naming Neutron's rule; reading is allowed.
    for (coll, id, res) in [
        ("networks", &shared, "network"),
        ("subnets", &shared_sub, "subnet"),
    ] {
        let b = format!("/v2.0/{coll}/{id}/tags");
        assert_eq!(get(&c, OTHER, &b), json!({"tags": ["keep", "victim"]}));
        assert_eq!(c.n("GET", &format!("{b}/victim"), Some(OTHER), None).0, 204);
        for (m, p, body, rule) in [
            ("PUT", b.clone(), Some(json!({"tags": ["pwned"]})), "update"),
            (
                "POST",
                b.clone(),
                Some(json!({"tags": ["pwned"]})),
                "create",
            ),
            ("DELETE", b.clone(), None, "delete"),
            ("PUT", format!("{b}/pwned"), None, "update"),
            ("DELETE", format!("{b}/victim"), None, "delete"),
        ] {
            let msg = refused(
                c.n(m, &p, Some(OTHER), body.as_ref()),
                403,
                "PolicyNotAuthorized",
                &p,
            );
            assert!(
                msg.contains(&format!("({rule}_{res}:tags)")),
                "{m} {p}: {msg}"
            );
        }
        assert_eq!(get(&c, ADMIN, &b), json!({"tags": ["keep", "victim"]}));
    }
    // Nor create its own things on them with tags it may not give: a port of its own on the
    // shared network may carry tags (create_port:tags is the port owner's).
    let mine = create(
        &c,
        OTHER,
        "ports",
        json!({"network_id": shared, "tags": ["mine"]}),
    );
    assert_eq!(mine["tags"], json!(["mine"]));

    // A port of other's on demo's network: demo (the network's owner) may read and remove its
    // tags but not set them (Neutron: delete_port:tags includes the network owner,
    // update_port:tags does not); other, its owner, may.
    let b = format!("/v2.0/ports/{theirs}/tags");
    assert_eq!(get(&c, DEMO, &b), json!({"tags": ["t"]}));
    let msg = refused(
        c.n("PUT", &b, Some(DEMO), Some(&json!({"tags": ["x"]}))),
        403,
        "PolicyNotAuthorized",
        "demo sets",
    );
    assert!(msg.contains("update_port:tags"), "{msg}");
    assert_eq!(c.n("DELETE", &format!("{b}/t"), Some(DEMO), None).0, 204);
    ok(
        c.n("PUT", &b, Some(OTHER), Some(&json!({"tags": ["x"]}))),
        "owner sets",
    );

    // Nothing of demo's changed, revision and updated_at included.
    for (coll, id) in &demo_objs {
        let key = coll.trim_end_matches('s');
        let now = get(&c, ADMIN, &format!("/v2.0/{coll}/{id}"))[key].clone();
        let mut was = before[&format!("{coll}/{id}")].clone();
        let mut is = now.clone();
        for v in [&mut was, &mut is] {
            v.as_object_mut().unwrap().remove("status");
        }
        assert_eq!(was, is, "{coll} {id} changed");
        assert_eq!(now["tags"], json!(["keep", "victim"]));
    }
    // The admin may tag anyone's.
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{router}/tags/admin-was-here"),
            Some(ADMIN),
            None,
        ),
        "admin",
    );
    assert_eq!(
        get(&c, DEMO, &format!("/v2.0/routers/{router}/tags"))["tags"],
        json!(["admin-was-here", "keep", "victim"])
    );
    assert!(!c.log_has_5xx());
}

// ---------------------------------------------------------------- the extensions audit

const CORE: &str = "(core)";

/// Which extension each attribute of each collection belongs to (`*`: every taggable
/// collection, Neutron's standard attributes). Attributes of extensions crosspod does not
/// serve are listed too, so a failure names the extension.
const FIELDS: &[(&str, &str, &str)] = &[
    ("*", "project_id", "project-id"),
    ("*", "description", "standard-attr-description"),
    ("*", "tags", "standard-attr-tag"),
    ("*", "created_at", "standard-attr-timestamp"),
    ("*", "updated_at", "standard-attr-timestamp"),
    ("*", "revision_number", "standard-attr-revisions"),
    ("networks", "id", CORE),
    ("networks", "name", CORE),
    ("networks", "subnets", CORE),
    ("networks", "admin_state_up", CORE),
    ("networks", "status", CORE),
    ("networks", "tenant_id", CORE),
    ("networks", "shared", CORE),
    ("networks", "mtu", "net-mtu"),
    (
        "networks",
        "availability_zone_hints",
        "network_availability_zone",
    ),
    (
        "networks",
        "availability_zones",
        "network_availability_zone",
    ),
    ("networks", "router:external", "external-net"),
    ("networks", "port_security_enabled", "port-security"),
    ("networks", "provider:network_type", "provider"),
    ("networks", "provider:physical_network", "provider"),
    ("networks", "provider:segmentation_id", "provider"),
    ("networks", "l2_adjacency", "l2_adjacency"),
    ("networks", "ipv4_address_scope", "address-scope"),
    ("networks", "ipv6_address_scope", "address-scope"),
    ("networks", "is_default", "auto-allocated-topology"),
    ("networks", "dns_domain", "dns-integration"),
    ("networks", "qos_policy_id", "qos"),
    ("networks", "segments", "multi-provider"),
    ("subnets", "id", CORE),
    ("subnets", "name", CORE),
    ("subnets", "ip_version", CORE),
    ("subnets", "network_id", CORE),
    ("subnets", "subnetpool_id", CORE),
    ("subnets", "cidr", CORE),
    ("subnets", "gateway_ip", CORE),
    ("subnets", "allocation_pools", CORE),
    ("subnets", "dns_nameservers", CORE),
    ("subnets", "host_routes", CORE),
    ("subnets", "tenant_id", CORE),
    ("subnets", "enable_dhcp", CORE),
    ("subnets", "ipv6_ra_mode", CORE),
    ("subnets", "ipv6_address_mode", CORE),
    ("subnets", "service_types", "subnet-service-types"),
    ("subnets", "segment_id", "segment"),
    ("ports", "id", CORE),
    ("ports", "name", CORE),
    ("ports", "network_id", CORE),
    ("ports", "admin_state_up", CORE),
    ("ports", "mac_address", CORE),
    ("ports", "fixed_ips", CORE),
    ("ports", "device_id", CORE),
    ("ports", "device_owner", CORE),
    ("ports", "tenant_id", CORE),
    ("ports", "status", CORE),
    ("ports", "port_security_enabled", "port-security"),
    ("ports", "binding:host_id", "binding"),
    ("ports", "binding:vnic_type", "binding"),
    ("ports", "binding:profile", "binding"),
    ("ports", "binding:vif_type", "binding"),
    ("ports", "binding:vif_details", "binding"),
    ("ports", "allowed_address_pairs", "allowed-address-pairs"),
    ("ports", "extra_dhcp_opts", "extra_dhcp_opt"),
    ("ports", "security_groups", "security-group"),
    ("ports", "dns_name", "dns-integration"),
    ("ports", "qos_policy_id", "qos"),
    ("routers", "id", "router"),
    ("routers", "name", "router"),
    ("routers", "admin_state_up", "router"),
    ("routers", "status", "router"),
    ("routers", "tenant_id", "router"),
    ("routers", "external_gateway_info", "router"),
    ("routers", "external_gateway_info.network_id", "router"),
    (
        "routers",
        "external_gateway_info.external_fixed_ips",
        "router",
    ),
    (
        "routers",
        "external_gateway_info.enable_snat",
        "ext-gw-mode",
    ),
    ("routers", "routes", "extraroute"),
    (
        "routers",
        "availability_zone_hints",
        "router_availability_zone",
    ),
    ("routers", "availability_zones", "router_availability_zone"),
    ("routers", "distributed", "dvr"),
    ("routers", "ha", "l3-ha"),
    ("routers", "flavor_id", "l3-flavors"),
    ("floatingips", "id", "router"),
    ("floatingips", "floating_ip_address", "router"),
    ("floatingips", "floating_network_id", "router"),
    ("floatingips", "router_id", "router"),
    ("floatingips", "port_id", "router"),
    ("floatingips", "fixed_ip_address", "router"),
    ("floatingips", "tenant_id", "router"),
    ("floatingips", "status", "router"),
    ("floatingips", "port_details", "fip-port-details"),
    ("floatingips", "dns_domain", "dns-integration"),
    ("floatingips", "dns_name", "dns-integration"),
    ("floatingips", "qos_policy_id", "qos-fip"),
    (
        "floatingips",
        "port_forwardings",
        "expose-port-forwarding-in-fip",
    ),
];

fn owner_of(coll: &str, field: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .find(|(c, f, _)| (*c == coll || *c == "*") && *f == field)
        .map(|(_, _, a)| *a)
}

#[test]
fn extensions_advertise_exactly_the_fields_and_paths_served() {
    let c = Controller::start();
    let ext = world(&c);
    let (net, sub) = net_subnet(&c, "net1", "10.0.1.0/24");
    let (port, _) = vm_port(&c, &net, "node1");
    let router = id_of(&create(
        &c,
        DEMO,
        "routers",
        json!({"name": "R", "external_gateway_info": {"network_id": ext}, "tags": ["t"]}),
    ));
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/routers/{router}/add_router_interface"),
            Some(DEMO),
            Some(&json!({"subnet_id": sub})),
        ),
        "interface",
    );
    create(
        &c,
        DEMO,
        "floatingips",
        json!({"floating_network_id": ext, "port_id": port, "tags": ["t"]}),
    );
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/networks/{net}/tags/t"),
            Some(DEMO),
            None,
        ),
        "tag",
    );

    let exts = get(&c, DEMO, "/v2.0/extensions");
    let advertised: Vec<String> = exts["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = advertised.iter().collect();
    assert_eq!(
        unique.len(),
        advertised.len(),
        "an alias twice: {advertised:?}"
    );
    for a in [
        "standard-attr-tag",
        "tag-creation",
        "tag-ports-during-bulk-creation",
    ] {
        assert!(advertised.iter().any(|x| x == a), "{a} advertised");
        assert_eq!(
            get(&c, DEMO, &format!("/v2.0/extensions/{a}"))["extension"]["alias"],
            a
        );
    }
    let is_advertised = |a: &str| a == CORE || advertised.iter().any(|x| x == a);

    // Every attribute of every list and show, as the admin and as a member.
    let mut seen: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut objects = 0;
    for token in [ADMIN, DEMO] {
        for coll in ["networks", "subnets", "ports", "routers", "floatingips"] {
            let key = coll.trim_end_matches('s');
            let list = get(&c, token, &format!("/v2.0/{coll}"));
            let mut items: Vec<Value> = list[coll].as_array().unwrap().clone();
            for o in list[coll].as_array().unwrap() {
                let id = o["id"].as_str().unwrap();
                items.push(get(&c, token, &format!("/v2.0/{coll}/{id}"))[key].clone());
            }
            for o in &items {
                objects += 1;
                let mut fields: Vec<(String, &Value)> = Vec::new();
                for (k, v) in o.as_object().unwrap() {
                    fields.push((k.clone(), v));
                    if k == "external_gateway_info" {
                        for (n, nv) in v.as_object().into_iter().flatten() {
                            fields.push((format!("{k}.{n}"), nv));
                        }
                    }
                }
                for (f, _) in fields {
                    match owner_of(coll, &f) {
                        None => problems.push(format!("{coll}.{f}: in no extension of the table")),
                        Some(a) if !is_advertised(a) => problems.push(format!(
                            "{coll}.{f} belongs to {a}, which /v2.0/extensions does not list"
                        )),
                        Some(a) => {
                            seen.entry(a).or_default().insert(format!("{coll}.{f}"));
                        }
                    }
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(objects > 20, "{objects}");

    // Every advertised extension is served: its attributes appeared above, or its paths and
    // behaviour answer here.
    let rev = get(&c, DEMO, &format!("/v2.0/networks/{net}"))["network"]["revision_number"]
        .as_i64()
        .unwrap();
    let fid = get(&c, DEMO, "/v2.0/floatingips")["floatingips"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A default pool (admin), a subnet taken from it by `use_default_subnetpool`, a prefix
    // added to it.
    let pool = create(
        &c,
        ADMIN,
        "subnetpools",
        json!({"name": "audit-pool", "prefixes": ["10.240.0.0/16"], "default_prefixlen": 24,
               "is_default": true, "shared": true}),
    );
    let pool_id = pool["id"].as_str().unwrap().to_string();
    // On networks of their own: a network's IPv4 subnets come from one pool (or none).
    let pnet = create(&c, DEMO, "networks", json!({"name": "audit-pool-net"}))["id"].clone();
    let dnet = create(&c, DEMO, "networks", json!({"name": "audit-default-net"}))["id"].clone();
    let probes: Vec<(&str, bool)> = vec![
        ("subnet_allocation", c.n("POST", "/v2.0/subnets", Some(DEMO), Some(&json!({"subnet": {"network_id": pnet, "ip_version": 4, "subnetpool_id": pool_id, "prefixlen": 26}}))).0 == 201),
        ("default-subnetpools", c.n("POST", "/v2.0/subnets", Some(DEMO), Some(&json!({"subnet": {"network_id": dnet, "ip_version": 4, "use_default_subnetpool": true}}))).0 == 201),
        ("subnetpool-prefix-ops", c.n("PUT", &format!("/v2.0/subnetpools/{pool_id}/add_prefixes"), Some(ADMIN), Some(&json!({"prefixes": ["10.241.0.0/16"]}))).0 == 200),
        ("availability_zone", c.n("GET", "/v2.0/availability_zones", Some(DEMO), None).0 == 200),
        ("agent", c.n("GET", "/v2.0/agents", Some(ADMIN), None).0 == 200),
        ("network-ip-availability", c.n("GET", &format!("/v2.0/network-ip-availabilities/{net}"), Some(ADMIN), None).0 == 200),
        ("quotas", c.n("GET", "/v2.0/quotas/demo", Some(DEMO), None).0 == 200),
        ("quota_details", c.n("GET", "/v2.0/quotas/demo/details", Some(DEMO), None).0 == 200),
        ("pagination", get(&c, DEMO, "/v2.0/networks?limit=1")["networks_links"].is_array()),
        ("sorting", {
            let v = get(&c, ADMIN, "/v2.0/networks?sort_key=name&sort_dir=desc");
            let names: Vec<&str> = v["networks"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
            names.windows(2).all(|w| w[0] >= w[1]) && names.len() > 1
        }),
        ("filter-validation", c.n("GET", "/v2.0/networks?colour=red", Some(DEMO), None).0 == 400),
        ("revision-if-match", common::request_raw(
            c.neutron, "PUT", &format!("/v2.0/networks/{net}"), Some(DEMO),
            Some(json!({"network": {"name": "x"}}).to_string().as_bytes()),
            &[("If-Match", &format!("revision_number={}", rev + 7))],
        ).0 == 412),
        ("net-mtu-writable", c.n("PUT", &format!("/v2.0/networks/{net}"), Some(DEMO), Some(&json!({"network": {"mtu": 1400}}))).0 == 200),
        ("extraroute-atomic", c.n("PUT", &format!("/v2.0/routers/{router}/add_extraroutes"), Some(DEMO), Some(&json!({"router": {"routes": [{"destination": "192.168.9.0/24", "nexthop": "10.0.1.9"}]}}))).0 == 200),
        ("stateful-security-group", get(&c, DEMO, "/v2.0/security-groups")["security_groups"][0]["stateful"] == json!(true)),
        ("tag-creation", c.n("POST", &format!("/v2.0/floatingips/{fid}/tags"), Some(DEMO), Some(&json!({"tags": ["more"]}))).0 == 200),
        ("tag-ports-during-bulk-creation", create(&c, DEMO, "ports", json!({"network_id": net, "tags": ["x"]}))["tags"] == json!(["x"])),
    ];
    let mut unproven = Vec::new();
    for a in &advertised {
        let by_field = seen.contains_key(a.as_str());
        let by_probe = probes.iter().find(|(p, _)| p == a);
        match by_probe {
            Some((_, true)) => {}
            Some((_, false)) => unproven.push(format!("{a}: its probe failed")),
            None if by_field => {}
            None => unproven.push(format!(
                "{a}: advertised, but no attribute or probe shows it served"
            )),
        }
    }
    assert!(
        unproven.is_empty(),
        "{unproven:#?}\nattributes seen: {seen:#?}"
    );
    assert!(!c.log_has_5xx());
}
