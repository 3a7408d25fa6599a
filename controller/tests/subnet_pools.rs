//! Subnet pools and address scopes (Neutron's `subnet_allocation`, `address-scope`,
//! `default-subnetpools`, `subnetpool-prefix-ops`): through the real `openstack` CLI, raw
//! HTTP for Neutron's errors, two projects against each other's pools, and concurrent
//! allocations from one pool on SQLite and on two controllers sharing PostgreSQL.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use common::guide::ok;
use common::{openstack, openstack_json, Controller, PgDb, ADMIN, DEMO, OTHER};
use ipnet::IpNet;
use serde_json::{json, Value};

fn post(c: &Controller, token: &str, coll: &str, key: &str, body: Value) -> (u16, Value) {
    c.n(
        "POST",
        &format!("/v2.0/{coll}"),
        Some(token),
        Some(&json!({ key: body })),
    )
}

fn id(v: &Value, key: &str) -> String {
    v[key]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{key} id in {v}"))
        .to_string()
}

fn network(c: &Controller, token: &str, name: &str) -> String {
    id(
        &ok(
            post(c, token, "networks", "network", json!({ "name": name })),
            "network",
        ),
        "network",
    )
}

fn pool(c: &Controller, token: &str, body: Value) -> String {
    id(
        &ok(post(c, token, "subnetpools", "subnetpool", body), "pool"),
        "subnetpool",
    )
}

fn scope(c: &Controller, token: &str, body: Value) -> String {
    id(
        &ok(
            post(c, token, "address-scopes", "address_scope", body),
            "scope",
        ),
        "address_scope",
    )
}

/// Asserts a Neutron error: status, type and a piece of the message.
fn err(r: (u16, Value), status: u16, kind: &str, text: &str) {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["NeutronError"]["type"], kind, "{}", r.1);
    let msg = r.1["NeutronError"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(text), "{text:?} not in {msg:?}");
}

/// The CLI's failure, with its stderr (which carries Neutron's message).
fn cli_fails(c: &Controller, token: &str, args: &[&str], text: &str) {
    let (success, out, e) = openstack(c, token, args);
    assert!(!success, "openstack {args:?} succeeded: {out}");
    assert!(e.contains(text), "openstack {args:?}: {text:?} not in {e}");
}

fn cidr(v: &Value) -> IpNet {
    v["cidr"].as_str().expect("cidr").parse().expect("a CIDR")
}

#[test]
fn the_cli_manages_scopes_and_pools_and_allocates_subnets_from_them() {
    let c = Controller::start();
    let scope = openstack_json(
        &c,
        DEMO,
        &["address", "scope", "create", "--ip-version", "4", "scope4"],
    );
    assert_eq!(scope["ip_version"], 4);
    assert_eq!(scope["shared"], false);
    assert_eq!(scope["project_id"], "demo");
    let scope_id = scope["id"].as_str().unwrap().to_string();
    let p = openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "pool",
            "create",
            "--pool-prefix",
            "10.100.0.0/16",
            "--pool-prefix",
            "10.101.0.0/24",
            "--default-prefix-length",
            "24",
            "--min-prefix-length",
            "16",
            "--max-prefix-length",
            "28",
            "--address-scope",
            "scope4",
            "pool1",
        ],
    );
    assert_eq!(p["prefixes"], json!(["10.100.0.0/16", "10.101.0.0/24"]));
    assert_eq!(p["ip_version"], 4);
    assert_eq!(p["address_scope_id"], scope_id.as_str());
    assert_eq!(
        (
            &p["min_prefixlen"],
            &p["default_prefixlen"],
            &p["max_prefixlen"]
        ),
        (&json!(16), &json!(24), &json!(28))
    );
    assert_eq!(p["is_default"], false);
    let pool_id = p["id"].as_str().unwrap().to_string();
    // The raw API shows the prefix lengths as Neutron does, as strings.
    let raw = ok(
        c.n(
            "GET",
            &format!("/v2.0/subnetpools/{pool_id}"),
            Some(DEMO),
            None,
        ),
        "pool",
    );
    assert_eq!(raw["subnetpool"]["default_prefixlen"], "24");

    openstack_json(&c, DEMO, &["network", "create", "n1"]);
    // A /26: the smallest free block that holds one is the /24, not the /16.
    let s1 = openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "create",
            "--subnet-pool",
            "pool1",
            "--prefix-length",
            "26",
            "--network",
            "n1",
            "s1",
        ],
    );
    assert_eq!(s1["cidr"], "10.101.0.0/26");
    assert_eq!(s1["gateway_ip"], "10.101.0.1");
    assert_eq!(
        s1["allocation_pools"],
        json!([{"start": "10.101.0.2", "end": "10.101.0.62"}])
    );
    assert_eq!(s1["subnetpool_id"], pool_id.as_str());
    // No prefix length: the pool's default.
    let s2 = openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "create",
            "--subnet-pool",
            "pool1",
            "--network",
            "n1",
            "s2",
        ],
    );
    assert_eq!(s2["cidr"], "10.100.0.0/24");
    // An explicit range inside the pool and free in it.
    let s3 = openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "create",
            "--subnet-pool",
            "pool1",
            "--subnet-range",
            "10.100.1.0/24",
            "--network",
            "n1",
            "s3",
        ],
    );
    assert_eq!(s3["subnetpool_id"], pool_id.as_str());
    openstack_json(&c, DEMO, &["network", "create", "n2"]);
    cli_fails(
        &c,
        DEMO,
        &[
            "subnet",
            "create",
            "--subnet-pool",
            "pool1",
            "--subnet-range",
            "10.100.1.0/25",
            "--network",
            "n2",
            "taken",
        ],
        "Cannot allocate requested subnet from the available set of prefixes",
    );
    cli_fails(
        &c,
        DEMO,
        &[
            "subnet",
            "create",
            "--subnet-pool",
            "pool1",
            "--subnet-range",
            "10.200.0.0/24",
            "--network",
            "n2",
            "outside",
        ],
        "Cannot allocate requested subnet",
    );
    cli_fails(
        &c,
        DEMO,
        &[
            "subnet",
            "create",
            "--subnet-pool",
            "pool1",
            "--prefix-length",
            "30",
            "--network",
            "n2",
            "too-long",
        ],
        "maximum allowed prefix is 28",
    );
    // The network is in the pool's address scope; the pool's subnets list by pool.
    let n1 = openstack_json(&c, DEMO, &["network", "show", "n1"]);
    assert_eq!(n1["ipv4_address_scope"], scope_id.as_str());
    assert_eq!(n1["ipv6_address_scope"], Value::Null);
    let listed = openstack_json(&c, DEMO, &["subnet", "list", "--subnet-pool", "pool1"]);
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");

    // Prefixes grow through `set`; the scope's name changes; the pool stays while in use.
    let (success, _, e) = openstack(
        &c,
        DEMO,
        &[
            "subnet",
            "pool",
            "set",
            "--pool-prefix",
            "10.102.0.0/24",
            "pool1",
        ],
    );
    assert!(success, "{e}");
    let p = openstack_json(&c, DEMO, &["subnet", "pool", "show", "pool1"]);
    assert_eq!(
        p["prefixes"],
        json!(["10.100.0.0/16", "10.101.0.0/24", "10.102.0.0/24"])
    );
    let (success, _, e) = openstack(
        &c,
        DEMO,
        &["address", "scope", "set", "--name", "scope4b", "scope4"],
    );
    assert!(success, "{e}");
    cli_fails(
        &c,
        DEMO,
        &["subnet", "pool", "delete", "pool1"],
        "Subnet pool has existing allocations",
    );
    cli_fails(
        &c,
        DEMO,
        &["address", "scope", "delete", "scope4b"],
        "subnet pools in use on the address scope",
    );

    // IPv6: stored and allocated by the same rules.
    let v6 = openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "pool",
            "create",
            "--pool-prefix",
            "fd00:1::/48",
            "--default-prefix-length",
            "64",
            "v6pool",
        ],
    );
    assert_eq!(v6["ip_version"], 6);
    assert_eq!(
        (&v6["min_prefixlen"], &v6["max_prefixlen"]),
        (&json!(64), &json!(128))
    );
    let s6 = openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "create",
            "--ip-version",
            "6",
            "--subnet-pool",
            "v6pool",
            "--network",
            "n1",
            "s6",
        ],
    );
    assert_eq!(s6["cidr"], "fd00:1::/64");
    assert_eq!(s6["gateway_ip"], "fd00:1::1");

    // The admin's shared default pool serves --use-default-subnet-pool to a member.
    let d = openstack_json(
        &c,
        ADMIN,
        &[
            "subnet",
            "pool",
            "create",
            "--share",
            "--default",
            "--pool-prefix",
            "172.16.0.0/16",
            "--default-prefix-length",
            "26",
            "defpool",
        ],
    );
    assert_eq!(
        (&d["shared"], &d["is_default"]),
        (&json!(true), &json!(true))
    );
    let s4 = openstack_json(
        &c,
        DEMO,
        &[
            "subnet",
            "create",
            "--use-default-subnet-pool",
            "--network",
            "n2",
            "s4",
        ],
    );
    assert_eq!(s4["cidr"], "172.16.0.0/26");
    assert_eq!(s4["subnetpool_id"], d["id"]);

    // Emptied, the pools and the scope go.
    for s in ["s1", "s2", "s3", "s4", "s6"] {
        let (success, _, e) = openstack(&c, DEMO, &["subnet", "delete", s]);
        assert!(success, "{e}");
    }
    for (token, args) in [
        (DEMO, &["subnet", "pool", "delete", "pool1"][..]),
        (DEMO, &["subnet", "pool", "delete", "v6pool"][..]),
        (ADMIN, &["subnet", "pool", "delete", "defpool"][..]),
        (DEMO, &["address", "scope", "delete", "scope4b"][..]),
    ] {
        let (success, _, e) = openstack(&c, token, args);
        assert!(success, "{args:?}: {e}");
    }
    let left = openstack_json(&c, ADMIN, &["subnet", "pool", "list"]);
    assert_eq!(left, json!([]));
    assert!(!c.log_has_5xx());
}

/// openstacksdk's functional tests `test_subnet_pool.py` and `test_address_scope.py` (their
/// setUp, find, get, list, update and tearDown, as a member; not `test_set_tags`), run by the
/// real SDK of the venv against the controller.
const SDK_SCENARIOS: &str = r#"
import sys, openstack
url, token = sys.argv[1], sys.argv[2]
user_cloud = openstack.connection.Connection(
    auth_type="admin_token", auth={"endpoint": url, "token": token},
    network_endpoint_override=url)
net = user_cloud.network

PREFIXES = ["10.100.0.0/24", "10.101.0.0/24"]
pool = net.create_subnet_pool(
    name="sdk-pool", min_prefixlen=8, default_prefixlen=24, max_prefixlen=32,
    default_quota=24, shared=False, prefixes=PREFIXES)
assert pool.name == "sdk-pool", pool
assert net.find_subnet_pool("sdk-pool").id == pool.id
sot = net.get_subnet_pool(pool.id)
assert (sot.minimum_prefix_length, sot.default_prefix_length, sot.maximum_prefix_length) == (8, 24, 32), sot
assert sot.default_quota == 24 and sot.is_shared is False and sot.ip_version == 4, sot
assert sot.prefixes == PREFIXES, sot.prefixes
assert "sdk-pool" in [o.name for o in net.subnet_pools()]
assert net.update_subnet_pool(pool.id, name="sdk-pool-2").name == "sdk-pool-2"
assert net.delete_subnet_pool(pool.id) is None
assert net.find_subnet_pool("sdk-pool-2") is None

scope = net.create_address_scope(ip_version=4, name="sdk-scope", shared=False)
assert scope.name == "sdk-scope", scope
assert net.find_address_scope("sdk-scope").id == scope.id
sot = net.get_address_scope(scope.id)
assert sot.name == "sdk-scope" and sot.is_shared is False and sot.ip_version == 4, sot
assert "sdk-scope" in [o.name for o in net.address_scopes()]
assert net.update_address_scope(scope.id, name="sdk-scope-2").name == "sdk-scope-2"
assert net.delete_address_scope(scope.id) is None
print("sdk scenarios passed")
"#;

#[test]
fn openstacksdks_functional_scenarios_pass_with_the_real_sdk() {
    let c = Controller::start();
    let script = c.dir.path().join("sdk_scenarios.py");
    std::fs::write(&script, SDK_SCENARIOS).expect("write the script");
    let python = common::openstack_bin().with_file_name("python");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(c.neutron_url())
        .arg(DEMO)
        .env("HOME", c.dir.path())
        .env_remove("OS_CLOUD")
        .output()
        .expect("run the venv's python");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("sdk scenarios passed"), "{stdout}");
    assert!(!c.log_has_5xx());
}

#[test]
fn bad_pools_and_requests_get_neutrons_errors() {
    let c = Controller::start();
    let base = || json!({"name": "p", "prefixes": ["10.0.0.0/24"]});
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    // Creation.
    for (body, status, kind, text) in [
        (
            json!({"prefixes": ["10.0.0.0/24"]}),
            400,
            "HTTPBadRequest",
            "Required attribute 'name'",
        ),
        (
            json!({"name": "p"}),
            400,
            "HTTPBadRequest",
            "Required attribute 'prefixes'",
        ),
        (
            with("name", json!("  ")),
            400,
            "InvalidInput",
            "Blank strings are not permitted",
        ),
        (
            with("prefixes", json!([])),
            400,
            "EmptySubnetPoolPrefixList",
            "Empty subnet pool prefix list",
        ),
        (
            with("prefixes", json!(["10.0.0.0/24", "fd00::/64"])),
            400,
            "PrefixVersionMismatch",
            "Cannot mix IPv4 and IPv6",
        ),
        (
            with("prefixes", json!(["10.0.0.0/24", "10.0.0.0/24"])),
            400,
            "InvalidInput",
            "Duplicate items in the list",
        ),
        (
            with("prefixes", json!(["10.0.0.0/33"])),
            400,
            "InvalidInput",
            "is not a valid IP subnet",
        ),
        (
            with("prefixes", json!("10.0.0.0/24")),
            400,
            "InvalidInput",
            "is not a list",
        ),
        (
            with("max_prefixlen", json!(33)),
            400,
            "IllegalSubnetPoolPrefixBounds",
            "max_prefixlen=33, ip_version_max=32",
        ),
        (
            with("min_prefixlen", json!(-1)),
            400,
            "InvalidInput",
            "should be non-negative",
        ),
        (
            with("default_prefixlen", json!(4)),
            400,
            "IllegalSubnetPoolPrefixBounds",
            "default_prefixlen=4, min_prefixlen=8",
        ),
        (
            with("default_quota", json!(-5)),
            400,
            "InvalidInput",
            "should be non-negative",
        ),
        (
            with("address_scope_id", json!("nope")),
            400,
            "InvalidInput",
            "is not a valid UUID",
        ),
        (
            with(
                "address_scope_id",
                json!("00000000-0000-0000-0000-000000000000"),
            ),
            404,
            "AddressScopeNotFound",
            "could not be found",
        ),
        (
            with("colour", json!("red")),
            400,
            "HTTPBadRequest",
            "Unrecognized attribute(s) 'colour'",
        ),
    ] {
        err(
            post(&c, ADMIN, "subnetpools", "subnetpool", body.clone()),
            status,
            kind,
            text,
        );
    }
    err(
        post(
            &c,
            ADMIN,
            "address-scopes",
            "address_scope",
            json!({"name": "s"}),
        ),
        400,
        "HTTPBadRequest",
        "Required attribute 'ip_version'",
    );
    err(
        post(
            &c,
            ADMIN,
            "address-scopes",
            "address_scope",
            json!({"ip_version": 5}),
        ),
        400,
        "InvalidInput",
        "5 is not in [4, 6]",
    );

    // Updates: prefixes only grow; shared is fixed; bounds stay consistent.
    let p = pool(
        &c,
        DEMO,
        json!({"name": "p1", "prefixes": ["10.0.0.0/24"], "default_prefixlen": 26}),
    );
    let path = format!("/v2.0/subnetpools/{p}");
    let put = |b: Value| c.n("PUT", &path, Some(DEMO), Some(&json!({"subnetpool": b})));
    err(
        put(json!({"prefixes": ["10.0.0.0/25"]})),
        400,
        "IllegalSubnetPoolPrefixUpdate",
        "Existing prefixes must be a subset of the new prefixes",
    );
    err(
        put(json!({"shared": true})),
        400,
        "HTTPBadRequest",
        "Cannot update read-only attribute shared",
    );
    err(
        put(json!({"max_prefixlen": 24})),
        400,
        "IllegalSubnetPoolPrefixBounds",
        "default_prefixlen=26, max_prefixlen=24",
    );
    err(
        put(json!({"prefixes": ["10.0.0.0/24", "fd00::/64"]})),
        400,
        "PrefixVersionMismatch",
        "Cannot mix",
    );
    let v = ok(
        put(json!({"prefixes": ["10.0.0.0/24", "10.0.1.0/24"], "name": "p1b"})),
        "grow",
    );
    assert_eq!(
        v["subnetpool"]["prefixes"],
        json!(["10.0.0.0/23"]),
        "compacted as Neutron does"
    );
    assert_eq!(v["subnetpool"]["revision_number"], 2);

    // Prefix operations.
    let op = |action: &str, body: Value| {
        c.n("PUT", &format!("{path}/{action}"), Some(DEMO), Some(&body))
    };
    err(
        op("add_prefixes", json!({"prefixes": []})),
        400,
        "HTTPBadRequest",
        "Request body contains invalid data",
    );
    err(
        op("add_prefixes", json!({})),
        400,
        "HTTPBadRequest",
        "Request body contains invalid data",
    );
    err(
        op("add_prefixes", json!({"prefixes": ["fd00::/64"]})),
        400,
        "PrefixVersionMismatch",
        "Cannot mix",
    );
    assert_eq!(
        c.n("GET", &format!("{path}/add_prefixes"), Some(DEMO), None)
            .0,
        405
    );
    let v = ok(
        op(
            "add_prefixes",
            json!({"prefixes": ["10.0.2.0/24", "192.168.0.0/24"]}),
        ),
        "add",
    );
    assert_eq!(
        v,
        json!({"prefixes": ["10.0.0.0/23", "10.0.2.0/24", "192.168.0.0/24"]})
    );
    let net = network(&c, DEMO, "n");
    let sub = ok(
        post(
            &c,
            DEMO,
            "subnets",
            "subnet",
            json!({"network_id": net, "subnetpool_id": p, "cidr": "192.168.0.64/26"}),
        ),
        "subnet",
    );
    err(
        op("remove_prefixes", json!({"prefixes": ["192.168.0.0/24"]})),
        400,
        "IllegalSubnetPoolPrefixUpdate",
        "in use by a subnet",
    );
    let v = ok(
        op(
            "remove_prefixes",
            json!({"prefixes": ["10.0.1.0/24", "192.168.0.0/26"]}),
        ),
        "remove",
    );
    assert_eq!(
        v,
        json!({"prefixes": ["10.0.0.0/24", "10.0.2.0/24", "192.168.0.64/26", "192.168.0.128/25"]})
    );
    let v = ok(
        op("remove_prefixes", json!({"prefixes": ["172.16.0.0/12"]})),
        "no-op",
    );
    assert_eq!(
        v["prefixes"].as_array().unwrap().len(),
        4,
        "disjoint: nothing removed"
    );
    err(
        c.n("DELETE", &path, Some(DEMO), None),
        400,
        "SubnetPoolDeleteError",
        "Subnet pool has existing allocations",
    );

    // Subnet requests.
    let net2 = network(&c, DEMO, "n2");
    let sub_post = |b: Value| {
        let mut body = json!({"network_id": net2});
        for (k, v) in b.as_object().unwrap() {
            body[k.as_str()] = v.clone();
        }
        post(&c, DEMO, "subnets", "subnet", body)
    };
    err(
        sub_post(json!({"subnetpool_id": p, "cidr": "10.0.0.0/26", "prefixlen": 26})),
        400,
        "BadRequest",
        "cidr and prefixlen must not be supplied together",
    );
    err(
        sub_post(json!({"prefixlen": 26})),
        400,
        "BadRequest",
        "a subnetpool must be specified in the absence of a cidr",
    );
    err(
        sub_post(json!({})),
        400,
        "BadRequest",
        "a subnetpool must be specified in the absence of a cidr",
    );
    err(
        sub_post(json!({"subnetpool_id": p, "use_default_subnetpool": true})),
        400,
        "BadRequest",
        "cannot both be specified",
    );
    err(
        sub_post(
            json!({"subnetpool_id": p, "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.9"}]}),
        ),
        400,
        "BadRequest",
        "allocation_pools allowed only for specific subnet requests",
    );
    err(
        sub_post(json!({"use_default_subnetpool": true, "ip_version": 4})),
        400,
        "BadRequest",
        "No default subnetpool found for IPv4",
    );
    err(
        sub_post(json!({"use_default_subnetpool": true})),
        400,
        "BadRequest",
        "ip_version must be specified",
    );
    err(
        sub_post(json!({"subnetpool_id": p, "ip_version": 6})),
        400,
        "BadRequest",
        "Cannot allocate IPv6 subnet from IPv4 subnet pool",
    );
    err(
        sub_post(json!({"subnetpool_id": p, "prefixlen": 7})),
        400,
        "MinPrefixSubnetAllocationError",
        "minimum allowed prefix is 8",
    );
    err(
        sub_post(json!({"subnetpool_id": p, "prefixlen": 31})),
        400,
        "InvalidInput",
        "too small to hold any host",
    );
    err(
        sub_post(json!({"subnetpool_id": p, "prefixlen": 33})),
        400,
        "MaxPrefixSubnetAllocationError",
        "maximum allowed prefix is 32",
    );
    err(
        sub_post(json!({"subnetpool_id": "00000000-0000-0000-0000-000000000000"})),
        404,
        "SubnetPoolNotFound",
        "could not be found",
    );
    err(
        sub_post(json!({"subnetpool_id": "prefix_delegation"})),
        400,
        "InvalidInput",
        "prefix delegation is not supported",
    );
    // A gateway without a CIDR asks for the prefix around it.
    let g = ok(
        sub_post(json!({"subnetpool_id": p, "gateway_ip": "10.0.2.65", "prefixlen": 26})),
        "by gateway",
    );
    assert_eq!(g["subnet"]["cidr"], "10.0.2.64/26");
    assert_eq!(g["subnet"]["gateway_ip"], "10.0.2.65");
    // gateway_ip null: no gateway, every host in the pools.
    let ng = ok(
        sub_post(json!({"subnetpool_id": p, "gateway_ip": null, "prefixlen": 28})),
        "no gateway",
    );
    assert_eq!(ng["subnet"]["gateway_ip"], Value::Null);
    let first = cidr(&ng["subnet"]).hosts().next().unwrap().to_string();
    assert_eq!(ng["subnet"]["allocation_pools"][0]["start"], first.as_str());
    // Subnet updates cannot move it between pools.
    let sid = id(&g, "subnet");
    err(
        c.n(
            "PUT",
            &format!("/v2.0/subnets/{sid}"),
            Some(DEMO),
            Some(&json!({"subnet": {"subnetpool_id": null}})),
        ),
        400,
        "HTTPBadRequest",
        "Cannot update read-only attribute subnetpool_id",
    );

    // Exhaustion: 409 with Neutron's type, and nothing changed.
    let small = pool(
        &c,
        DEMO,
        json!({"name": "small", "prefixes": ["10.9.0.0/25"], "default_prefixlen": 26}),
    );
    let n3 = network(&c, DEMO, "n3");
    let n4 = network(&c, DEMO, "n4");
    let n5 = network(&c, DEMO, "n5");
    for n in [&n3, &n4] {
        ok(
            post(
                &c,
                DEMO,
                "subnets",
                "subnet",
                json!({"network_id": n, "subnetpool_id": small}),
            ),
            "fill",
        );
    }
    let before = ok(c.n("GET", "/v2.0/subnets", Some(ADMIN), None), "subnets");
    err(
        post(
            &c,
            DEMO,
            "subnets",
            "subnet",
            json!({"network_id": n5, "subnetpool_id": small}),
        ),
        409,
        "SubnetAllocationError",
        "Insufficient prefix space to allocate subnet size /26",
    );
    assert_eq!(
        ok(c.n("GET", "/v2.0/subnets", Some(ADMIN), None), "subnets"),
        before
    );

    // One pool per network and IP version, unless one address scope.
    let other_pool = pool(
        &c,
        DEMO,
        json!({"name": "o", "prefixes": ["10.10.0.0/16"], "default_prefixlen": 24}),
    );
    err(
        post(
            &c,
            DEMO,
            "subnets",
            "subnet",
            json!({"network_id": n3, "subnetpool_id": other_pool}),
        ),
        400,
        "NetworkSubnetPoolAffinityError",
        "must be allocated from the same subnet pool",
    );
    err(
        post(
            &c,
            DEMO,
            "subnets",
            "subnet",
            json!({"network_id": n3, "cidr": "10.77.0.0/24"}),
        ),
        400,
        "NetworkSubnetPoolAffinityError",
        "same subnet pool",
    );

    // Address scopes: the IP version must match, pools of one scope never overlap.
    let s4 = scope(&c, DEMO, json!({"name": "s4", "ip_version": 4}));
    let s6 = scope(&c, DEMO, json!({"name": "s6", "ip_version": 6}));
    err(
        post(
            &c,
            DEMO,
            "subnetpools",
            "subnetpool",
            json!({"name": "x", "prefixes": ["10.20.0.0/16"], "address_scope_id": s6}),
        ),
        400,
        "IllegalSubnetPoolIpVersionAssociationToAddressScope",
        "because subnetpool ip_version is not 6",
    );
    let a = pool(
        &c,
        DEMO,
        json!({"name": "a", "prefixes": ["10.20.0.0/16"], "address_scope_id": s4, "default_prefixlen": 24}),
    );
    err(
        post(
            &c,
            DEMO,
            "subnetpools",
            "subnetpool",
            json!({"name": "b", "prefixes": ["10.20.5.0/24"], "address_scope_id": s4}),
        ),
        409,
        "AddressScopePrefixConflict",
        "subnetpools within an address scope must have unique prefixes",
    );
    let b = pool(
        &c,
        DEMO,
        json!({"name": "b", "prefixes": ["10.21.0.0/16"], "address_scope_id": s4, "default_prefixlen": 24}),
    );
    err(
        c.n(
            "PUT",
            &format!("/v2.0/subnetpools/{b}/add_prefixes"),
            Some(DEMO),
            Some(&json!({"prefixes": ["10.20.128.0/17"]})),
        ),
        409,
        "AddressScopePrefixConflict",
        "unique prefixes",
    );
    // Two pools of one scope may share a network; a pool of no (or another) scope may not.
    let n6 = network(&c, DEMO, "n6");
    for pl in [&a, &b] {
        ok(
            post(
                &c,
                DEMO,
                "subnets",
                "subnet",
                json!({"network_id": n6, "subnetpool_id": pl}),
            ),
            "same scope",
        );
    }
    err(
        post(
            &c,
            DEMO,
            "subnets",
            "subnet",
            json!({"network_id": n6, "subnetpool_id": other_pool}),
        ),
        400,
        "NetworkAddressScopeAffinityError",
        "must all participate in the same address scope",
    );
    // Moving a pool out of the scope would split n6 between scopes.
    err(
        c.n(
            "PUT",
            &format!("/v2.0/subnetpools/{b}"),
            Some(DEMO),
            Some(&json!({"subnetpool": {"address_scope_id": null}})),
        ),
        400,
        "NetworkAddressScopeAffinityError",
        "same address scope",
    );
    let n6v = ok(
        c.n("GET", &format!("/v2.0/networks/{n6}"), Some(DEMO), None),
        "n6",
    );
    assert_eq!(n6v["network"]["ipv4_address_scope"], s4.as_str());
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/address-scopes/{s4}"),
            Some(DEMO),
            None,
        ),
        409,
        "AddressScopeInUse",
        "subnet pools in use",
    );
    // One default per IP version; a shared scope stays shared.
    pool(
        &c,
        ADMIN,
        json!({"name": "d1", "prefixes": ["10.30.0.0/16"], "is_default": true}),
    );
    err(
        post(
            &c,
            ADMIN,
            "subnetpools",
            "subnetpool",
            json!({"name": "d2", "prefixes": ["10.31.0.0/16"], "is_default": true}),
        ),
        400,
        "InvalidInput",
        "A default subnetpool for this IP family has already been set",
    );
    pool(
        &c,
        ADMIN,
        json!({"name": "d6", "prefixes": ["fd00:30::/48"], "is_default": true}),
    );
    let shared = scope(
        &c,
        ADMIN,
        json!({"name": "sh", "ip_version": 4, "shared": true}),
    );
    err(
        c.n(
            "PUT",
            &format!("/v2.0/address-scopes/{shared}"),
            Some(ADMIN),
            Some(&json!({"address_scope": {"shared": false}})),
        ),
        400,
        "AddressScopeUpdateError",
        "Shared address scope can't be unshared",
    );
    err(
        c.n(
            "PUT",
            &format!("/v2.0/address-scopes/{shared}"),
            Some(ADMIN),
            Some(&json!({"address_scope": {"ip_version": 6}})),
        ),
        400,
        "HTTPBadRequest",
        "Cannot update read-only attribute ip_version",
    );
    drop(sub);
    assert!(!c.log_has_5xx());
}

#[test]
fn a_pools_quota_counts_each_projects_addresses() {
    let c = Controller::start();
    // 512 addresses each: two /24s, not three; another project has its own 512.
    let p = pool(
        &c,
        ADMIN,
        json!({"name": "q", "prefixes": ["10.40.0.0/16"], "default_prefixlen": 24, "default_quota": 512, "shared": true}),
    );
    for token in [DEMO, OTHER] {
        for i in 0..2 {
            let n = network(&c, token, &format!("q{i}"));
            ok(
                post(
                    &c,
                    token,
                    "subnets",
                    "subnet",
                    json!({"network_id": n, "subnetpool_id": p}),
                ),
                "in quota",
            );
        }
        let n = network(&c, token, "q-over");
        err(
            post(
                &c,
                token,
                "subnets",
                "subnet",
                json!({"network_id": n, "subnetpool_id": p}),
            ),
            409,
            "SubnetPoolQuotaExceeded",
            "Per-project subnet pool prefix quota exceeded",
        );
        // A smaller one still fits? No: 512 are used.
        err(
            post(
                &c,
                token,
                "subnets",
                "subnet",
                json!({"network_id": n, "subnetpool_id": p, "prefixlen": 30}),
            ),
            409,
            "SubnetPoolQuotaExceeded",
            "quota exceeded",
        );
    }
    // Raising the quota (the pool's owner) lets one more in.
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/subnetpools/{p}"),
            Some(ADMIN),
            Some(&json!({"subnetpool": {"default_quota": 768}})),
        ),
        "raise",
    );
    let n = network(&c, DEMO, "q-more");
    ok(
        post(
            &c,
            DEMO,
            "subnets",
            "subnet",
            json!({"network_id": n, "subnetpool_id": p}),
        ),
        "after raising",
    );
    assert!(!c.log_has_5xx());
}

#[test]
fn a_member_neither_sees_nor_uses_another_projects_pools_and_shares_nothing() {
    let c = Controller::start();
    // demo's private scope and pool, with a subnet from it.
    let ds = scope(&c, DEMO, json!({"name": "demo-scope", "ip_version": 4}));
    let dp = pool(
        &c,
        DEMO,
        json!({"name": "demo-pool", "prefixes": ["10.50.0.0/16"], "default_prefixlen": 24, "address_scope_id": ds}),
    );
    let dn = network(&c, DEMO, "dn");
    let dsub = ok(
        post(
            &c,
            DEMO,
            "subnets",
            "subnet",
            json!({"network_id": dn, "subnetpool_id": dp}),
        ),
        "demo subnet",
    );
    // other: nothing of it is visible or usable.
    let on = network(&c, OTHER, "on");
    for (method, path, body) in [
        ("GET", format!("/v2.0/subnetpools/{dp}"), None),
        (
            "PUT",
            format!("/v2.0/subnetpools/{dp}"),
            Some(json!({"subnetpool": {"name": "pwned"}})),
        ),
        ("DELETE", format!("/v2.0/subnetpools/{dp}"), None),
        (
            "PUT",
            format!("/v2.0/subnetpools/{dp}/add_prefixes"),
            Some(json!({"prefixes": ["10.51.0.0/16"]})),
        ),
        (
            "PUT",
            format!("/v2.0/subnetpools/{dp}/remove_prefixes"),
            Some(json!({"prefixes": ["10.50.0.0/16"]})),
        ),
    ] {
        err(
            c.n(method, &path, Some(OTHER), body.as_ref()),
            404,
            "SubnetPoolNotFound",
            &dp,
        );
    }
    for (method, body) in [
        ("GET", None),
        ("PUT", Some(json!({"address_scope": {"name": "pwned"}}))),
        ("DELETE", None),
    ] {
        err(
            c.n(
                method,
                &format!("/v2.0/address-scopes/{ds}"),
                Some(OTHER),
                body.as_ref(),
            ),
            404,
            "AddressScopeNotFound",
            &ds,
        );
    }
    err(
        post(
            &c,
            OTHER,
            "subnets",
            "subnet",
            json!({"network_id": on, "subnetpool_id": dp}),
        ),
        404,
        "SubnetPoolNotFound",
        &dp,
    );
    err(
        post(
            &c,
            OTHER,
            "subnetpools",
            "subnetpool",
            json!({"name": "x", "prefixes": ["10.60.0.0/16"], "address_scope_id": ds}),
        ),
        404,
        "AddressScopeNotFound",
        &ds,
    );
    for (coll, key) in [
        ("subnetpools", "subnetpools"),
        ("address-scopes", "address_scopes"),
    ] {
        let l = ok(
            c.n("GET", &format!("/v2.0/{coll}"), Some(OTHER), None),
            coll,
        );
        assert_eq!(l[key], json!([]), "{coll} of other");
        let l = ok(
            c.n(
                "GET",
                &format!(
                    "/v2.0/{coll}?id={}",
                    if coll == "subnetpools" { &dp } else { &ds }
                ),
                Some(OTHER),
                None,
            ),
            coll,
        );
        assert_eq!(l[key], json!([]), "{coll} of other filtered by demo's id");
    }
    // The CLI finds nothing by name either.
    cli_fails(
        &c,
        OTHER,
        &["subnet", "pool", "show", "demo-pool"],
        "No SubnetPool found",
    );
    // demo's pool and subnet are as they were.
    let p = ok(
        c.n("GET", &format!("/v2.0/subnetpools/{dp}"), Some(DEMO), None),
        "pool",
    );
    assert_eq!(
        (
            &p["subnetpool"]["name"],
            &p["subnetpool"]["revision_number"]
        ),
        (&json!("demo-pool"), &json!(1))
    );
    assert_eq!(p["subnetpool"]["prefixes"], json!(["10.50.0.0/16"]));
    let s = ok(
        c.n(
            "GET",
            &format!("/v2.0/subnets/{}", id(&dsub, "subnet")),
            Some(DEMO),
            None,
        ),
        "subnet",
    );
    assert_eq!(s["subnet"]["cidr"], "10.50.0.0/24");

    // Only an admin shares or makes a default, for pools and scopes alike.
    for (coll, key, body, rule) in [
        (
            "subnetpools",
            "subnetpool",
            json!({"name": "s", "prefixes": ["10.70.0.0/16"], "shared": true}),
            "create_subnetpool:shared",
        ),
        (
            "subnetpools",
            "subnetpool",
            json!({"name": "d", "prefixes": ["10.70.0.0/16"], "is_default": true}),
            "create_subnetpool:is_default",
        ),
        (
            "subnetpools",
            "subnetpool",
            json!({"name": "o", "prefixes": ["10.70.0.0/16"], "project_id": "demo"}),
            "create_subnetpool:project_id",
        ),
        (
            "address-scopes",
            "address_scope",
            json!({"name": "s", "ip_version": 4, "shared": true}),
            "create_address_scope:shared",
        ),
        (
            "address-scopes",
            "address_scope",
            json!({"name": "o", "ip_version": 4, "tenant_id": "demo"}),
            "create_address_scope:project_id",
        ),
    ] {
        err(
            post(&c, OTHER, coll, key, body),
            403,
            "PolicyNotAuthorized",
            &format!("({rule}) is disallowed by policy"),
        );
    }
    // ... also on its own objects (false included: the attribute is the admin's).
    let op = pool(
        &c,
        OTHER,
        json!({"name": "mine", "prefixes": ["10.70.0.0/16"]}),
    );
    err(
        c.n(
            "PUT",
            &format!("/v2.0/subnetpools/{op}"),
            Some(OTHER),
            Some(&json!({"subnetpool": {"is_default": false}})),
        ),
        403,
        "PolicyNotAuthorized",
        "(update_subnetpool:is_default) is disallowed by policy",
    );
    let os = scope(&c, OTHER, json!({"name": "mine", "ip_version": 4}));
    err(
        c.n(
            "PUT",
            &format!("/v2.0/address-scopes/{os}"),
            Some(OTHER),
            Some(&json!({"address_scope": {"shared": true}})),
        ),
        403,
        "PolicyNotAuthorized",
        "(update_address_scope:shared) is disallowed by policy",
    );
    // The CLI says the same.
    cli_fails(
        &c,
        OTHER,
        &[
            "subnet",
            "pool",
            "create",
            "--share",
            "--pool-prefix",
            "10.80.0.0/16",
            "cli-shared",
        ],
        "disallowed by policy",
    );

    // The admin's shared pool (in its shared scope) serves both projects, never overlapping;
    // they see it but cannot change or delete it.
    let ss = scope(
        &c,
        ADMIN,
        json!({"name": "shared-scope", "ip_version": 4, "shared": true}),
    );
    let sp = pool(
        &c,
        ADMIN,
        json!({"name": "shared-pool", "prefixes": ["10.90.0.0/22"], "default_prefixlen": 24, "shared": true, "address_scope_id": ss}),
    );
    let mut got = Vec::new();
    for (token, name) in [(DEMO, "d1"), (OTHER, "o1"), (DEMO, "d2"), (OTHER, "o2")] {
        let n = network(&c, token, name);
        let s = ok(
            post(
                &c,
                token,
                "subnets",
                "subnet",
                json!({"network_id": n, "subnetpool_id": sp}),
            ),
            "shared pool",
        );
        got.push(cidr(&s["subnet"]));
    }
    got.sort();
    let want: Vec<IpNet> = [
        "10.90.0.0/24",
        "10.90.1.0/24",
        "10.90.2.0/24",
        "10.90.3.0/24",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    assert_eq!(got, want);
    let seen = ok(
        c.n("GET", &format!("/v2.0/subnetpools/{sp}"), Some(OTHER), None),
        "shared",
    );
    assert_eq!(seen["subnetpool"]["shared"], true);
    err(
        c.n(
            "PUT",
            &format!("/v2.0/subnetpools/{sp}"),
            Some(OTHER),
            Some(&json!({"subnetpool": {"name": "pwned"}})),
        ),
        403,
        "PolicyNotAuthorized",
        "(update_subnetpool) is disallowed by policy",
    );
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/subnetpools/{sp}"),
            Some(OTHER),
            None,
        ),
        403,
        "PolicyNotAuthorized",
        "(delete_subnetpool)",
    );
    err(
        c.n(
            "PUT",
            &format!("/v2.0/subnetpools/{sp}/add_prefixes"),
            Some(OTHER),
            Some(&json!({"prefixes": ["10.91.0.0/24"]})),
        ),
        403,
        "PolicyNotAuthorized",
        "(add_prefixes)",
    );
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/address-scopes/{ss}"),
            Some(OTHER),
            None,
        ),
        403,
        "PolicyNotAuthorized",
        "(delete_address_scope)",
    );
    // other may put a pool of its own into the shared scope, but then not change it
    // (Neutron: the scope is not other's).
    let in_shared = pool(
        &c,
        OTHER,
        json!({"name": "mine-in-shared", "prefixes": ["10.92.0.0/24"], "address_scope_id": ss}),
    );
    err(
        c.n(
            "PUT",
            &format!("/v2.0/subnetpools/{in_shared}"),
            Some(OTHER),
            Some(&json!({"subnetpool": {"name": "renamed"}})),
        ),
        400,
        "IllegalSubnetPoolUpdate",
        "cannot be updated when associated with shared address scope",
    );
    // A default pool that is not shared is no member's default.
    pool(
        &c,
        ADMIN,
        json!({"name": "admins-default", "prefixes": ["10.95.0.0/16"], "is_default": true}),
    );
    let n = network(&c, OTHER, "wants-default");
    err(
        post(
            &c,
            OTHER,
            "subnets",
            "subnet",
            json!({"network_id": n, "use_default_subnetpool": true, "ip_version": 4}),
        ),
        400,
        "BadRequest",
        "No default subnetpool found for IPv4",
    );
    assert!(!c.log_has_5xx());
}

/// `clients` threads (alternating between `a` and `b`) each create one subnet from `pool`
/// on a network of their own, all at once; the answers.
fn allocate_all(
    a: &Arc<Controller>,
    b: &Arc<Controller>,
    pool_id: &str,
    clients: usize,
) -> Vec<(u16, Value)> {
    let nets: Vec<(String, &str)> = (0..clients)
        .map(|i| {
            let token = if i % 2 == 0 { DEMO } else { OTHER };
            (network(a, token, &format!("race{i}")), token)
        })
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(clients));
    let threads: Vec<_> = nets
        .into_iter()
        .enumerate()
        .map(|(i, (net, token))| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (barrier, pool_id) = (barrier.clone(), pool_id.to_string());
            std::thread::spawn(move || {
                barrier.wait();
                post(
                    &c,
                    token,
                    "subnets",
                    "subnet",
                    json!({"network_id": net, "subnetpool_id": pool_id}),
                )
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// 40 concurrent /24 requests on a /19 (32 of them): exactly 32 succeed with 32 distinct
/// /24s inside the pool, the other 8 get 409 `SubnetAllocationError`.
fn race_one_pool(a: Arc<Controller>, b: Arc<Controller>, what: &str) {
    let pool_id = pool(
        &a,
        ADMIN,
        json!({"name": "race", "prefixes": ["10.128.0.0/19"], "default_prefixlen": 24, "shared": true}),
    );
    let t0 = Instant::now();
    let results = allocate_all(&a, &b, &pool_id, 40);
    let ms = t0.elapsed().as_millis();
    let mut tally: HashMap<(u16, String), usize> = HashMap::new();
    let mut cidrs: Vec<IpNet> = Vec::new();
    for (s, v) in &results {
        let kind = v["NeutronError"]["type"].as_str().unwrap_or("").to_string();
        *tally.entry((*s, kind)).or_default() += 1;
        if *s == 201 {
            cidrs.push(cidr(&v["subnet"]));
        }
    }
    eprintln!("{what}: 40 allocations from one /19 in {ms} ms: {tally:?}");
    assert_eq!(tally.get(&(201, String::new())), Some(&32), "{tally:?}");
    assert_eq!(
        tally.get(&(409, "SubnetAllocationError".into())),
        Some(&8),
        "{tally:?}"
    );
    let whole: IpNet = "10.128.0.0/19".parse().unwrap();
    for (i, x) in cidrs.iter().enumerate() {
        assert!(whole.contains(x) && x.prefix_len() == 24, "{x}");
        for y in &cidrs[i + 1..] {
            assert!(!x.contains(y) && !y.contains(x), "{x} and {y} overlap");
        }
    }
    // What the store holds agrees with the answers.
    let listed = ok(
        b.n(
            "GET",
            &format!("/v2.0/subnets?subnetpool_id={pool_id}"),
            Some(ADMIN),
            None,
        ),
        "subnets",
    );
    assert_eq!(listed["subnets"].as_array().unwrap().len(), 32);
    assert!(!a.log_has_5xx() && !b.log_has_5xx());
}

#[test]
fn concurrent_allocations_from_one_pool_never_overlap_on_sqlite() {
    let c = Arc::new(Controller::start());
    race_one_pool(c.clone(), c, "SQLite");
}

#[test]
fn two_controllers_on_postgres_never_allocate_one_prefix_twice() {
    let db = PgDb::create();
    let (a, b) = std::thread::scope(|s| {
        let ta = s.spawn(|| Controller::start_with(Some(&db.url), &[]));
        let tb = s.spawn(|| Controller::start_with(Some(&db.url), &[]));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let (a, b) = (Arc::new(a), Arc::new(b));
    race_one_pool(a.clone(), b.clone(), "PostgreSQL, two controllers");
    // Two pools racing into one address scope: exactly one gets the overlapping prefix.
    let s = scope(&a, ADMIN, json!({"name": "race-scope", "ip_version": 4}));
    let barrier = Arc::new(std::sync::Barrier::new(10));
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (barrier, s) = (barrier.clone(), s.clone());
            std::thread::spawn(move || {
                barrier.wait();
                post(
                    &c,
                    ADMIN,
                    "subnetpools",
                    "subnetpool",
                    json!({"name": format!("p{i}"), "prefixes": [format!("10.{}.0.0/16", 200 + i % 2)], "address_scope_id": s}),
                )
                .0
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 201, 409, 409, 409, 409, 409, 409, 409, 409]);
    // And one default per IP version, whoever asks first.
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                let (s, v) = post(
                    &c,
                    ADMIN,
                    "subnetpools",
                    "subnetpool",
                    json!({"name": format!("d{i}"), "prefixes": [format!("10.{}.0.0/16", 210 + i)], "is_default": true}),
                );
                (s, v["NeutronError"]["type"].clone())
            })
        })
        .collect();
    let mut results: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    results.sort_by_key(|r| r.0);
    assert_eq!(results[0], (201, Value::Null), "{results:?}");
    assert!(
        results[1..]
            .iter()
            .all(|r| r == &(400, json!("InvalidInput"))),
        "{results:?}"
    );
    assert!(!a.log_has_5xx() && !b.log_has_5xx());
}
