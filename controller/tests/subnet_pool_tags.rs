//! Tags of subnet pools (Neutron's `standard-attr-tag` covers `subnetpools`), end to end:
//!
//! - the store on SQLite and PostgreSQL (CROSSPOD_TEST_PG_URL; fails if unset): tags written
//!   with the pool, each change one revision (and `updated_at`), the 50-tag limit, tags gone
//!   with their pool, the constraints of the rebuilt table;
//! - migration 12 on a database left at migration 11 with tags on every other kind: the
//!   table is rebuilt, every tag kept, the indexes there, the constraints and cascades whole;
//! - the real `openstack` CLI: `subnet pool create --tag`, `set --tag`, `unset --tag`,
//!   `set --no-tag`, `list --tags/--any-tags/--not-tags/--not-any-tags`;
//! - raw HTTP for the seven tag paths, tags in a create body, bad input (400) and unknown
//!   pools (404);
//! - a member of another project against demo's private pool (404 for everything) and the
//!   admin's shared pool (reads, 403 on every change naming Neutron's rule); a reader of the
//!   owning project reads but does not change.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::guide::ok;
use common::{openstack, openstack_json, Controller, Opts, PgDb, ADMIN, DEMO, OTHER};
use controller::error::StoreError;
use controller::store::*;
use controller::vlan_pool::VlanRanges;
use serde_json::{json, Value};
use sqlx::{Connection, Row};

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

fn new_pool(prefix: &str) -> SubnetPool {
    SubnetPool {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: "p".into(),
        name: "pool".into(),
        description: String::new(),
        ip_version: 4,
        prefixes: vec![prefix.parse().unwrap()],
        default_prefixlen: 24,
        min_prefixlen: 8,
        max_prefixlen: 32,
        default_quota: None,
        is_default: false,
        shared: false,
        address_scope_id: None,
        created_at: String::new(),
        updated_at: String::new(),
        revision_number: 1,
    }
}

fn new_net() -> NewNetwork {
    NewNetwork {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: "p".into(),
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

async fn exec(s: &Store, sql: &str) {
    sqlx::query(sql)
        .execute(s.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn count(s: &Store, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(s.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .try_get::<i64, _>(0)
        .unwrap()
}

/// A pool's tags through the store: with the create, each change a revision and a new
/// `updated_at` (not logged for the realizer, which holds no pools), a change that changes
/// nothing no revision, the limit, its own 404, gone with the pool, and the constraints.
async fn pool_suite(s: &Store) {
    let p = s
        .create_subnetpool_tagged(&new_pool("10.100.0.0/16"), &strs(&["red", "blue", "red"]))
        .await
        .unwrap();
    let kind = Tagged::SubnetPool;
    assert_eq!(s.tags_of(kind, &p.id).await.unwrap(), ["blue", "red"]);
    assert_eq!(
        p.revision_number, 1,
        "tags on create are part of the create"
    );
    let plain = s
        .create_subnetpool(&new_pool("10.101.0.0/16"))
        .await
        .unwrap();
    assert!(s.tags_of(kind, &plain.id).await.unwrap().is_empty());

    let t = s
        .change_tags(kind, &p.id, TagChange::Add(&strs(&["red"])))
        .await
        .unwrap();
    assert_eq!(t, ["blue", "red"]);
    assert_eq!(s.get_subnetpool(&p.id).await.unwrap().revision_number, 1);

    exec(
        s,
        &format!(
            "UPDATE subnetpools SET updated_at = '2000-01-01T00:00:00Z' WHERE id = '{}'",
            p.id
        ),
    )
    .await;
    let seq = s.last_change_seq().await.unwrap();
    let t = s
        .change_tags(kind, &p.id, TagChange::Add(&strs(&["green"])))
        .await
        .unwrap();
    assert_eq!(t, ["blue", "green", "red"]);
    let now = s.get_subnetpool(&p.id).await.unwrap();
    assert_eq!(now.revision_number, 2, "a tag change is a revision");
    assert_ne!(now.updated_at, "2000-01-01T00:00:00Z", "and an update");
    assert_eq!(
        s.last_change_seq().await.unwrap(),
        seq,
        "the realizer holds no pools: nothing for it in the change log"
    );
    let t = s
        .change_tags(kind, &p.id, TagChange::Replace(&strs(&["x"])))
        .await
        .unwrap();
    assert_eq!(t, ["x"]);
    assert_eq!(
        status(
            s.change_tags(kind, &p.id, TagChange::Remove("nope"))
                .await
                .unwrap_err()
        ),
        (404, "TagNotFound")
    );
    assert_eq!(s.get_subnetpool(&p.id).await.unwrap().revision_number, 3);
    s.change_tags(kind, &p.id, TagChange::Remove("x"))
        .await
        .unwrap();
    s.change_tags(kind, &p.id, TagChange::Clear).await.unwrap();
    assert_eq!(
        s.get_subnetpool(&p.id).await.unwrap().revision_number,
        4,
        "clearing no tags changes nothing"
    );

    let fifty: Vec<String> = (0..50).map(|i| format!("t{i:02}")).collect();
    s.change_tags(kind, &p.id, TagChange::Replace(&fifty))
        .await
        .unwrap();
    assert_eq!(
        status(
            s.change_tags(kind, &p.id, TagChange::Add(&strs(&["one-more"])))
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    assert_eq!(s.tags_of(kind, &p.id).await.unwrap(), fifty);

    let nobody = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        status(
            s.change_tags(kind, &nobody, TagChange::Clear)
                .await
                .unwrap_err()
        ),
        (404, "SubnetPoolNotFound")
    );
    assert!(
        s.create_subnetpool_tagged(
            &SubnetPool {
                id: p.id.clone(),
                ..new_pool("10.102.0.0/16")
            },
            &strs(&["dup"])
        )
        .await
        .is_err(),
        "a pool's id twice"
    );
    assert_eq!(
        s.tags_of(kind, &p.id).await.unwrap(),
        fifty,
        "the refused create tagged nothing"
    );

    // Only pools in the pools' map; a network of the same id would be apart.
    s.change_tags(kind, &plain.id, TagChange::Add(&strs(&["p"])))
        .await
        .unwrap();
    let by_id = s.tags_by_id(kind).await.unwrap();
    assert_eq!(by_id[&plain.id], ["p"]);
    assert_eq!(by_id[&p.id], fifty);
    assert!(!s
        .tags_by_id(Tagged::Network)
        .await
        .unwrap()
        .contains_key(&plain.id));

    // The constraints: no tag of a pool that is not there, no row whose type, id and
    // foreign key disagree.
    let fk = sqlx::query("INSERT INTO tags (resource_type, resource_id, tag, subnetpool_id) VALUES ('subnetpool', 'gone', 't', 'gone')")
        .execute(s.pool())
        .await
        .expect_err("foreign keys are enforced");
    assert!(StoreError::db("t")(fk).is_foreign_key_violation());
    let n = s
        .create_network(&new_net(), &VlanRanges::default())
        .await
        .unwrap();
    for bad in [
        format!("INSERT INTO tags (resource_type, resource_id, tag, network_id) VALUES ('subnetpool', '{0}', 't', '{0}')", n.id),
        format!("INSERT INTO tags (resource_type, resource_id, tag, subnetpool_id) VALUES ('network', '{0}', 't', '{0}')", plain.id),
        format!("INSERT INTO tags (resource_type, resource_id, tag, subnetpool_id) VALUES ('subnetpool', '{0}', 't', '{1}')", plain.id, p.id),
        format!("INSERT INTO tags (resource_type, resource_id, tag, network_id, subnetpool_id) VALUES ('subnetpool', '{0}', 't', '{1}', '{0}')", plain.id, n.id),
    ] {
        sqlx::query(&bad)
            .execute(s.pool())
            .await
            .expect_err(&bad);
    }
    exec(
        s,
        &format!("INSERT INTO tags (resource_type, resource_id, tag, subnetpool_id) VALUES ('subnetpool', '{0}', 'raw', '{0}')", plain.id),
    )
    .await;
    assert_eq!(s.tags_of(kind, &plain.id).await.unwrap(), ["p", "raw"]);

    // Tags go with their pool.
    let rows_of = |id: &str| format!("SELECT COUNT(*) FROM tags WHERE resource_id = '{id}'");
    s.delete_subnetpool(&p.id).await.unwrap();
    assert!(s.tags_of(kind, &p.id).await.unwrap().is_empty());
    assert_eq!(count(s, &rows_of(&p.id)).await, 0);
    assert_eq!(count(s, &rows_of(&plain.id)).await, 2);
    s.delete_subnetpool(&plain.id).await.unwrap();
    assert_eq!(count(s, &rows_of(&plain.id)).await, 0);
    // A pool made again with a deleted one's id starts untagged.
    let again = s
        .create_subnetpool(&SubnetPool {
            id: p.id.clone(),
            ..new_pool("10.103.0.0/16")
        })
        .await
        .unwrap();
    assert!(s.tags_of(kind, &again.id).await.unwrap().is_empty());
    s.delete_subnetpool(&again.id).await.unwrap();
    s.delete_network(&n.id).await.unwrap();
}

async fn sqlite_store(dir: &tempfile::TempDir) -> (String, Store) {
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let s = Store::connect(&url).await.unwrap();
    (url, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_subnet_pool_tags() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = sqlite_store(&dir).await;
    pool_suite(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_subnet_pool_tags() {
    let db = PgDb::create();
    let s = Store::connect(&db.url).await.unwrap();
    assert_eq!(s.backend(), Backend::Postgres);
    pool_suite(&s).await;
    s.close().await;
}

/// Every tag of every kind, by kind.
async fn all_tags(s: &Store) -> Vec<HashMap<String, Vec<String>>> {
    let mut out = Vec::new();
    for k in Tagged::ALL {
        out.push(s.tags_by_id(k).await.unwrap());
    }
    out
}

/// The `tags` indexes by name.
async fn tag_indexes(s: &Store) -> BTreeSet<String> {
    let sql = match s.backend() {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tags'"
        }
        Backend::Postgres => {
            "SELECT CAST(indexname AS TEXT) AS name FROM pg_indexes WHERE tablename = 'tags'"
        }
    };
    sqlx::query(sql)
        .fetch_all(s.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>("name").unwrap())
        .collect()
}

/// A database left at migration 11 (the tags table of migration 7) holding tags of a network,
/// a subnet, a port and a router: opening it applies migration 12, which keeps every tag,
/// leaves no table behind, makes the indexes again, and tags pools from then on; opening it
/// once more changes nothing.
async fn migration_12(url: &str) {
    let s = Store::connect(url).await.unwrap();
    let ranges = VlanRanges::default();
    let n = s
        .create_network_tagged(&new_net(), &ranges, &strs(&["a", "b"]))
        .await
        .unwrap();
    let cidr: ipnet::IpNet = "10.7.0.0/24".parse().unwrap();
    let gw = controller::ipam::default_gateway(&cidr);
    let sub = s
        .create_subnet_tagged(
            &Subnet {
                id: uuid::Uuid::new_v4().to_string(),
                project_id: "p".into(),
                network_id: n.id.clone(),
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
            },
            &strs(&["s"]),
        )
        .await
        .unwrap();
    let port = s
        .create_port_tagged(
            &NewPort {
                id: uuid::Uuid::new_v4().to_string(),
                project_id: "p".into(),
                network_id: n.id.clone(),
                name: String::new(),
                description: String::new(),
                admin_state_up: true,
                mac_address: None,
                device_id: String::new(),
                device_owner: String::new(),
                host_id: String::new(),
                port_security_enabled: None,
                fixed_ips: None,
            },
            &strs(&["p1", "p2"]),
        )
        .await
        .unwrap();
    let router = s
        .create_router_tagged(
            &controller::store::l3::Router {
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
    let pool = s
        .create_subnetpool(&new_pool("10.200.0.0/16"))
        .await
        .unwrap();
    let before = all_tags(&s).await;
    s.close().await;
    // Back to migration 11 on one connection of its own: migration 7's table with these rows.
    let mut raw = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut revert = vec![
        "CREATE TABLE tags_keep AS SELECT resource_type, resource_id, tag, network_id, subnet_id, port_id, router_id, floatingip_id FROM tags",
        "DROP TABLE tags",
    ];
    revert.extend(
        controller::store::tags::TAGS_MIGRATION
            .split(';')
            .map(str::trim)
            .filter(|x| !x.is_empty()),
    );
    revert.extend([
        "INSERT INTO tags (resource_type, resource_id, tag, network_id, subnet_id, port_id, router_id, floatingip_id) SELECT * FROM tags_keep",
        "DROP TABLE tags_keep",
        "DELETE FROM schema_migrations WHERE version = 12",
    ]);
    for sql in revert {
        sqlx::query(sql)
            .execute(&mut raw)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert!(
        sqlx::query("SELECT subnetpool_id FROM tags")
            .fetch_all(&mut raw)
            .await
            .is_err(),
        "at migration 11 the table has no subnetpool_id"
    );
    let n_rows: i64 = sqlx::query("SELECT COUNT(*) FROM tags")
        .fetch_one(&mut raw)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(n_rows, 6);
    raw.close().await.unwrap();

    let s = Store::connect(url).await.unwrap();
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM schema_migrations WHERE version = 12"
        )
        .await,
        1
    );
    assert_eq!(all_tags(&s).await, before, "every tag kept");
    assert_eq!(
        s.tags_of(Tagged::Port, &port.id).await.unwrap(),
        ["p1", "p2"]
    );
    let ix = tag_indexes(&s).await;
    for name in [
        "tags_network",
        "tags_subnet",
        "tags_port",
        "tags_router",
        "tags_floatingip",
        "tags_subnetpool",
    ] {
        assert!(ix.contains(name), "index {name}: {ix:?}");
    }
    assert!(
        sqlx::query("SELECT 1 FROM tags_new")
            .fetch_all(s.pool())
            .await
            .is_err(),
        "no table left behind"
    );
    // Pools take tags now; the old kinds' constraints and cascades are whole.
    s.change_tags(
        Tagged::SubnetPool,
        &pool.id,
        TagChange::Add(&strs(&["new"])),
    )
    .await
    .unwrap();
    assert_eq!(
        s.tags_of(Tagged::SubnetPool, &pool.id).await.unwrap(),
        ["new"]
    );
    let mixed = format!("INSERT INTO tags (resource_type, resource_id, tag, network_id) VALUES ('port', '{0}', 't', '{0}')", n.id);
    sqlx::query(&mixed)
        .execute(s.pool())
        .await
        .expect_err("a port's tag cannot hang on a network");
    s.delete_port(&port.id).await.unwrap();
    s.delete_router(&router.id).await.unwrap();
    assert!(s.tags_of(Tagged::Port, &port.id).await.unwrap().is_empty());
    assert!(s
        .tags_of(Tagged::Router, &router.id)
        .await
        .unwrap()
        .is_empty());
    s.delete_network(&n.id).await.unwrap();
    assert!(s.tags_of(Tagged::Subnet, &sub.id).await.unwrap().is_empty());
    assert_eq!(
        count(&s, "SELECT COUNT(*) FROM tags").await,
        1,
        "the pool's"
    );
    let after = all_tags(&s).await;
    s.close().await;

    // Once applied, never again.
    let s = Store::connect(url).await.unwrap();
    assert_eq!(all_tags(&s).await, after);
    pool_suite(&s).await;
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migration_12_keeps_tags() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    migration_12(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_migration_12_keeps_tags() {
    let db = PgDb::create();
    migration_12(&db.url).await;
}

// ---------------------------------------------------------------- the API

fn get(c: &Controller, token: &str, path: &str) -> Value {
    ok(c.n("GET", path, Some(token), None), path)
}

fn create_pool(c: &Controller, token: &str, body: Value) -> Value {
    ok(
        c.n(
            "POST",
            "/v2.0/subnetpools",
            Some(token),
            Some(&json!({ "subnetpool": body })),
        ),
        "subnetpool",
    )["subnetpool"]
        .clone()
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

fn os_ok(c: &Controller, token: &str, args: &[&str]) {
    let (okay, _, err) = openstack(c, token, args);
    assert!(okay, "openstack {args:?}: {err}");
}

#[test]
fn subnet_pool_tags_through_the_openstack_cli() {
    let c = Controller::start();
    let tagged = openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "pool",
            "create",
            "--pool-prefix",
            "10.100.0.0/16",
            "--tag",
            "red",
            "--tag",
            "blue",
            "tpool",
        ],
    );
    let id = id_of(&tagged);
    let plain = id_of(&openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "pool",
            "create",
            "--pool-prefix",
            "10.101.0.0/16",
            "ppool",
        ],
    ));
    let show = |c: &Controller| openstack_json(c, DEMO, &["subnet", "pool", "show", &id]);
    let v = show(&c);
    assert_eq!(sorted_tags(&v), ["blue", "red"], "created with --tag: {v}");
    let rev = v["revision_number"].as_i64().unwrap();
    os_ok(&c, DEMO, &["subnet", "pool", "set", "--tag", "green", &id]);
    let v = show(&c);
    assert_eq!(sorted_tags(&v), ["blue", "green", "red"], "{v}");
    assert_eq!(v["revision_number"].as_i64().unwrap(), rev + 1, "{v}");
    os_ok(&c, DEMO, &["subnet", "pool", "unset", "--tag", "red", &id]);
    assert_eq!(sorted_tags(&show(&c)), ["blue", "green"]);
    // Through the API as the CLI sees it: GET .../tags.
    assert_eq!(
        get(&c, DEMO, &format!("/v2.0/subnetpools/{id}/tags")),
        json!({"tags": ["blue", "green"]})
    );
    let list = |filter: &[&str]| -> BTreeSet<String> {
        let mut a = vec!["subnet", "pool", "list"];
        a.extend_from_slice(filter);
        openstack_json(&c, DEMO, &a)
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["ID"].as_str().unwrap().to_string())
            .collect()
    };
    let both: BTreeSet<String> = [id.clone(), plain.clone()].into();
    let only: BTreeSet<String> = [id.clone()].into();
    let other: BTreeSet<String> = [plain.clone()].into();
    assert_eq!(list(&[]), both);
    assert_eq!(list(&["--tags", "blue,green"]), only);
    assert!(list(&["--tags", "blue,red"]).is_empty());
    assert_eq!(list(&["--any-tags", "red,green"]), only);
    assert_eq!(list(&["--not-tags", "blue,green"]), other);
    assert_eq!(list(&["--not-tags", "blue,red"]), both);
    assert_eq!(list(&["--not-any-tags", "green"]), other);
    assert_eq!(list(&["--not-any-tags", "red,nope"]), both);
    // The list shows each pool's own tags.
    let long = openstack_json(&c, DEMO, &["subnet", "pool", "list", "--long"]);
    let row = long
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["ID"] == id.as_str())
        .unwrap_or_else(|| panic!("{long}"));
    assert_eq!(
        sorted_tags(&json!({"tags": row["Tags"]})),
        ["blue", "green"]
    );
    os_ok(&c, DEMO, &["subnet", "pool", "set", "--no-tag", &id]);
    assert!(sorted_tags(&show(&c)).is_empty());
    // A pool goes with its tags.
    os_ok(&c, DEMO, &["subnet", "pool", "set", "--tag", "x", &id]);
    os_ok(&c, DEMO, &["subnet", "pool", "delete", &id]);
    refused(
        c.n(
            "GET",
            &format!("/v2.0/subnetpools/{id}/tags"),
            Some(DEMO),
            None,
        ),
        404,
        "SubnetPoolNotFound",
        "deleted pool",
    );
    assert!(!c.log_has_5xx());
}

#[test]
fn subnet_pool_tag_paths_bodies_filters_and_bad_tags_over_http() {
    let c = Controller::start();
    let pool = create_pool(
        &c,
        DEMO,
        json!({"name": "p", "prefixes": ["10.10.0.0/16"], "tags": ["b", "a"]}),
    );
    assert_eq!(sorted_tags(&pool), ["a", "b"], "{pool}");
    assert_eq!(pool["revision_number"], 1, "tags came with the create");
    let pid = id_of(&pool);
    let shown = get(&c, DEMO, &format!("/v2.0/subnetpools/{pid}"));
    assert_eq!(shown["subnetpool"]["tags"], json!(["a", "b"]));
    // Not through an update body (Neutron: allow_put False).
    let m = refused(
        c.n(
            "PUT",
            &format!("/v2.0/subnetpools/{pid}"),
            Some(DEMO),
            Some(&json!({"subnetpool": {"tags": ["x"]}})),
        ),
        400,
        "HTTPBadRequest",
        "tags in an update",
    );
    assert!(m.contains("/v2.0/subnetpools/{id}/tags"), "{m}");

    let base = format!("/v2.0/subnetpools/{pid}/tags");
    let rev = |c: &Controller| {
        get(c, DEMO, &format!("/v2.0/subnetpools/{pid}"))["subnetpool"]["revision_number"]
            .as_i64()
            .unwrap()
    };
    // The seven paths, each status as Neutron's.
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
    assert_eq!(
        c.n("PUT", &format!("{base}/a%2Fb%20c"), Some(DEMO), None).0,
        201
    );
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
    assert_eq!(v["tags"], json!(["a", "a/b c", "b", "red", "x", "y"]));
    let v = ok(
        c.n("PUT", &base, Some(DEMO), Some(&json!({"tags": ["only"]}))),
        "PUT tags",
    );
    assert_eq!(v, json!({"tags": ["only"]}));
    let shown = get(&c, DEMO, &format!("/v2.0/subnetpools/{pid}"))["subnetpool"].clone();
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
    for (m, p) in [
        ("GET", format!("/v2.0/subnetpools/{nobody}/tags")),
        ("PUT", format!("/v2.0/subnetpools/{nobody}/tags/x")),
        ("DELETE", format!("/v2.0/subnetpools/{nobody}/tags")),
        ("GET", "/v2.0/subnetpools/not-a-uuid/tags".to_string()),
    ] {
        refused(c.n(m, &p, Some(DEMO), None), 404, "SubnetPoolNotFound", &p);
    }

    // Bad tags and bodies: 400, nothing changed.
    ok(
        c.n("PUT", &base, Some(DEMO), Some(&json!({"tags": ["keep"]}))),
        "PUT",
    );
    let r1 = rev(&c);
    let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    for (body, what) in [
        (json!({}), "no tags"),
        (json!({"tags": "red"}), "not a list"),
        (json!({"tags": [1]}), "not strings"),
        (json!({"tags": [""]}), "empty tag"),
        (json!({"tags": ["a,b"]}), "comma"),
        (json!({"tags": ["x".repeat(256)]}), "256 characters"),
        (json!({"tags": ["a", "a"]}), "duplicates"),
        (json!({"tags": many}), "51 tags"),
        (json!({"tags": [], "more": 1}), "unknown key"),
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
    refused(
        c.n("PUT", &format!("{base}/a,b"), Some(DEMO), None),
        400,
        "InvalidInput",
        "comma in the path",
    );
    for (body, what) in [
        (json!({"tags": ["a,b"]}), "comma"),
        (json!({"tags": ["a", "a"]}), "duplicates"),
        (json!({"tags": "a"}), "not a list"),
    ] {
        let mut b = json!({"name": "bad", "prefixes": ["10.11.0.0/16"]});
        b["tags"] = body["tags"].clone();
        let r = c.n(
            "POST",
            "/v2.0/subnetpools",
            Some(DEMO),
            Some(&json!({ "subnetpool": b })),
        );
        assert_eq!(r.0, 400, "create with {what}: {}", r.1);
    }
    assert_eq!(rev(&c), r1, "nothing changed");
    assert_eq!(get(&c, DEMO, &base), json!({"tags": ["keep"]}));
    let names: Vec<Value> = get(&c, DEMO, "/v2.0/subnetpools")["subnetpools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("p")], "no pool made by a refused create");

    // Filters on the list: AND, OR, NOT, through pages.
    ok(
        c.n(
            "PUT",
            &base,
            Some(DEMO),
            Some(&json!({"tags": ["red", "blue"]})),
        ),
        "PUT",
    );
    for (i, tags) in [
        json!(["red"]),
        json!(["blue"]),
        json!(["red", "blue"]),
        json!([]),
    ]
    .iter()
    .enumerate()
    {
        create_pool(
            &c,
            DEMO,
            json!({"name": format!("f{i}"), "prefixes": [format!("10.{}.0.0/16", 20 + i)], "tags": tags}),
        );
    }
    let names = |q: &str| -> BTreeSet<String> {
        get(&c, DEMO, &format!("/v2.0/subnetpools?{q}"))["subnetpools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(names("tags=red,blue"), set(&["f2", "p"]));
    assert_eq!(names("tags=red&tags=blue"), set(&["f2", "p"]));
    assert_eq!(names("tags-any=red,blue"), set(&["f0", "f1", "f2", "p"]));
    assert_eq!(names("not-tags=red,blue"), set(&["f0", "f1", "f3"]));
    assert_eq!(names("not-tags-any=red"), set(&["f1", "f3"]));
    assert_eq!(names("tags=red&not-tags-any=blue"), set(&["f0"]));
    let page = get(
        &c,
        DEMO,
        "/v2.0/subnetpools?tags-any=red&limit=1&sort_key=name",
    );
    assert_eq!(page["subnetpools"].as_array().unwrap().len(), 1);
    assert_eq!(page["subnetpools"][0]["name"], "f0");
    let next = page["subnetpools_links"][0]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(next.contains("tags-any=red"), "the filter goes on: {next}");

    // The tag paths and the create body are in the OpenAPI document.
    let (_, doc) = c.n("GET", "/openapi.json", None, None);
    for p in [
        "/v2.0/subnetpools/{id}/tags",
        "/v2.0/subnetpools/{id}/tags/{tag}",
    ] {
        assert!(doc["paths"][p].is_object(), "the document describes {p}");
    }
    assert!(doc["components"]["schemas"]["SubnetPoolCreate"]["properties"]["tags"].is_object());
    let ext = get(&c, DEMO, "/v2.0/extensions/standard-attr-tag");
    assert!(
        ext["extension"]["name"]
            .as_str()
            .unwrap()
            .contains("subnetpool"),
        "{ext}"
    );
    assert!(!c.log_has_5xx());
}

const READER: &str = "demoreadertok";

#[test]
fn a_member_cannot_touch_another_projects_subnet_pool_tags() {
    let c = Controller::start_opts(&Opts {
        tokens: &["demoreadertok demo reader"],
        ..Opts::default()
    });
    let private = id_of(&create_pool(
        &c,
        DEMO,
        json!({"name": "demo-pool", "prefixes": ["10.30.0.0/16"], "tags": ["victim", "keep"]}),
    ));
    let shared = id_of(&create_pool(
        &c,
        ADMIN,
        json!({"name": "shared-pool", "prefixes": ["10.40.0.0/16"], "shared": true,
               "tags": ["victim", "keep"]}),
    ));
    let snapshot = |c: &Controller| -> Vec<Value> {
        [&private, &shared]
            .iter()
            .map(|id| get(c, ADMIN, &format!("/v2.0/subnetpools/{id}"))["subnetpool"].clone())
            .collect()
    };
    let before = snapshot(&c);

    // demo's private pool: other cannot see it, so every path is the pool's 404.
    let b = format!("/v2.0/subnetpools/{private}/tags");
    for (m, p, body) in [
        ("GET", b.clone(), None),
        ("PUT", b.clone(), Some(json!({"tags": ["pwned"]}))),
        ("POST", b.clone(), Some(json!({"tags": ["pwned"]}))),
        ("DELETE", b.clone(), None),
        ("GET", format!("{b}/victim"), None),
        ("PUT", format!("{b}/pwned"), None),
        ("DELETE", format!("{b}/victim"), None),
    ] {
        let msg = refused(
            c.n(m, &p, Some(OTHER), body.as_ref()),
            404,
            "SubnetPoolNotFound",
            &format!("other {m} {p}"),
        );
        assert!(!msg.contains("victim"), "{msg}");
    }
    for q in ["tags=victim", "tags-any=victim,keep", "not-tags=nope"] {
        let listed = get(&c, OTHER, &format!("/v2.0/subnetpools?{q}"));
        assert!(
            !listed.to_string().contains(private.as_str()),
            "listed to other by {q}: {listed}"
        );
    }
    let (okay, _, _) = openstack(
        &c,
        OTHER,
        &["subnet", "pool", "set", "--tag", "pwned", &private],
    );
    assert!(!okay, "the CLI as other");

    // The admin's shared pool: other reads its tags, every change is 403 naming the rule.
    let b = format!("/v2.0/subnetpools/{shared}/tags");
    assert_eq!(get(&c, OTHER, &b), json!({"tags": ["keep", "victim"]}));
    assert_eq!(c.n("GET", &format!("{b}/victim"), Some(OTHER), None).0, 204);
    let listed = get(&c, OTHER, "/v2.0/subnetpools?tags=victim");
    assert_eq!(
        listed["subnetpools"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    assert_eq!(listed["subnetpools"][0]["id"], shared.as_str());
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
            &format!("other {m} {p}"),
        );
        assert!(
            msg.contains(&format!("({rule}_subnetpool:tags)")),
            "{m} {p}: {msg}"
        );
    }
    let (okay, _, err) = openstack(
        &c,
        OTHER,
        &["subnet", "pool", "unset", "--tag", "victim", &shared],
    );
    assert!(!okay, "the CLI as other: {err}");

    // demo's reader reads demo's pool's tags, changes none.
    let b = format!("/v2.0/subnetpools/{private}/tags");
    assert_eq!(get(&c, READER, &b), json!({"tags": ["keep", "victim"]}));
    for (m, p, body) in [
        ("PUT", b.clone(), Some(json!({"tags": ["pwned"]}))),
        ("POST", b.clone(), Some(json!({"tags": ["pwned"]}))),
        ("DELETE", format!("{b}/victim"), None),
    ] {
        refused(
            c.n(m, &p, Some(READER), body.as_ref()),
            403,
            "PolicyNotAuthorized",
            &format!("reader {m} {p}"),
        );
    }
    let r = c.n(
        "POST",
        "/v2.0/subnetpools",
        Some(READER),
        Some(&json!({"subnetpool": {"name": "r", "prefixes": ["10.50.0.0/16"], "tags": ["t"]}})),
    );
    assert_eq!(r.0, 403, "a reader creates nothing: {}", r.1);

    // Nothing changed, revision and updated_at included.
    assert_eq!(snapshot(&c), before);

    // other's own pool takes tags, in its create and after.
    let mine = create_pool(
        &c,
        OTHER,
        json!({"name": "mine", "prefixes": ["10.60.0.0/16"], "tags": ["mine"]}),
    );
    assert_eq!(mine["tags"], json!(["mine"]));
    os_ok(
        &c,
        OTHER,
        &["subnet", "pool", "set", "--tag", "more", &id_of(&mine)],
    );
    assert_eq!(
        get(
            &c,
            OTHER,
            &format!("/v2.0/subnetpools/{}/tags", id_of(&mine))
        ),
        json!({"tags": ["mine", "more"]})
    );
    // The owner and the admin may change the others.
    assert_eq!(
        c.n(
            "DELETE",
            &format!("/v2.0/subnetpools/{private}/tags/victim"),
            Some(DEMO),
            None
        )
        .0,
        204
    );
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/subnetpools/{private}/tags/admin-was-here"),
            Some(ADMIN),
            None,
        ),
        "admin",
    );
    assert_eq!(
        get(&c, DEMO, &format!("/v2.0/subnetpools/{private}/tags")),
        json!({"tags": ["admin-was-here", "keep"]})
    );
    assert!(!c.log_has_5xx());
}
