//! `--auth-strategy keystone` against a real Keystone (common/keystone.rs): the `openstack`
//! CLI with plain password auth finds crosspod in the catalog; a reader reads but every write
//! on every resource type is 403; another project's member gets 404; revoked and expired
//! tokens are refused within the cache bound; Keystone down is 503, never 401 nor open
//! access; agents' node-bound tokens from the tokens file keep working.
mod common;

use std::time::{Duration, Instant};

use common::guide::{agent, register};
use common::keystone::Keystone;
use common::*;
use serde_json::{json, Value};

fn start(ks: &Keystone, cache_secs: u64) -> Controller {
    let mut flags = ks.controller_flags();
    flags.push(format!("--keystone-cache-secs={cache_secs}"));
    let extra: Vec<&str> = flags.iter().map(String::as_str).collect();
    Controller::start_opts(&Opts {
        extra: &extra,
        ..Opts::default()
    })
}

/// The body of a 2xx answer, else fail naming `what`.
fn ok(r: (u16, Value), what: &str) -> Value {
    assert!((200..300).contains(&r.0), "{what}: {} {}", r.0, r.1);
    r.1
}

/// The id of `{key: {id}}`.
fn id(v: &Value, key: &str) -> String {
    v[key]["id"].as_str().expect("id").to_string()
}

/// A 403 in Neutron's shape naming the policy `action`.
fn refused(c: &Controller, token: &str, method: &str, path: &str, body: Value, action: &str) {
    let b = if body.is_null() { None } else { Some(&body) };
    let (s, v) = c.n(method, path, Some(token), b);
    assert_eq!(s, 403, "{method} {path} as a reader: {v}");
    assert_eq!(v["NeutronError"]["type"], "PolicyNotAuthorized", "{v}");
    let msg = v["NeutronError"]["message"].as_str().unwrap_or_default();
    assert_eq!(
        msg,
        format!("({action}) is disallowed by policy"),
        "{method} {path}"
    );
}

fn status(c: &Controller, token: &str, path: &str) -> (u16, Value) {
    c.n("GET", path, Some(token), None)
}

#[test]
fn member_reader_other_project_and_admin_through_keystone() {
    let ks = Keystone::start();
    let demo = ks.ensure_user("demo", "demo", "member");
    let other = ks.ensure_user("other", "other", "member");
    ks.ensure_user("demo", "demo-reader", "reader");
    ks.ensure_user("demo", "demo-nobody", "heat_stack_owner");
    let c = start(&ks, 60);
    ks.register_network(&c.neutron_url());
    let home = c.dir.path();

    // A member with plain password auth: the CLI finds the network endpoint in the catalog.
    let (okay, out, err) = ks.openstack(
        home,
        "demo",
        "demo",
        &["network", "create", "-f", "json", "knet"],
    );
    assert!(okay, "member's network create: {err}");
    let net: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        net["project_id"],
        demo.as_str(),
        "owned by the Keystone project id"
    );
    let net_id = net["id"].as_str().unwrap().to_string();

    // The reader lists it but cannot create one.
    let (okay, out, err) = ks.openstack(
        home,
        "demo-reader",
        "demo",
        &["network", "list", "-f", "json"],
    );
    assert!(okay, "reader's list: {err}");
    assert!(
        out.contains(&net_id),
        "reader sees its project's network: {out}"
    );
    let (okay, _, err) = ks.openstack(home, "demo-reader", "demo", &["network", "create", "rnet"]);
    assert!(!okay, "a reader created a network");
    assert!(
        err.contains("(create_network) is disallowed by policy"),
        "{err}"
    );

    // Objects of every type for the reader to attack: the member's (demo's) own.
    let member = ks.token("demo", "demo");
    let admin = ks.token("admin", "admin");
    for region in [("RegionOne", "az1"), ("RegionTwo", "az2")] {
        ok(
            c.t(
                "POST",
                "/v1.0/pods",
                Some(&admin),
                Some(&json!({"pod": {"region_name": region.0, "az_name": region.1}})),
            ),
            "pod by the Keystone admin",
        );
    }
    let ext = ok(c.n("POST", "/v2.0/networks", Some(&admin), Some(&json!({"network": {"name": "ext-net", "router:external": true, "provider:network_type": "vlan", "provider:physical_network": "extern", "availability_zone_hints": ["RegionTwo"]}}))), "ext-net");
    let ext_id = id(&ext, "network");
    ok(c.n("POST", "/v2.0/subnets", Some(&admin), Some(&json!({"subnet": {"network_id": ext_id, "ip_version": 4, "cidr": "163.3.124.0/24", "enable_dhcp": false}}))), "ext-subnet");
    let sub = ok(
        c.n(
            "POST",
            "/v2.0/subnets",
            Some(&member),
            Some(
                &json!({"subnet": {"network_id": net_id, "ip_version": 4, "cidr": "10.0.1.0/24"}}),
            ),
        ),
        "subnet",
    );
    let sub_id = id(&sub, "subnet");
    let port = ok(
        c.n(
            "POST",
            "/v2.0/ports",
            Some(&member),
            Some(&json!({"port": {"network_id": net_id}})),
        ),
        "port",
    );
    let port_id = id(&port, "port");
    let router = ok(
        c.n(
            "POST",
            "/v2.0/routers",
            Some(&member),
            Some(&json!({"router": {"name": "r"}})),
        ),
        "router",
    );
    let router_id = id(&router, "router");
    let fip = ok(
        c.n(
            "POST",
            "/v2.0/floatingips",
            Some(&member),
            Some(&json!({"floatingip": {"floating_network_id": ext_id}})),
        ),
        "floating IP",
    );
    let fip_id = id(&fip, "floatingip");

    // The reader reads each of them...
    let reader = ks.token("demo-reader", "demo");
    for (path, what) in [
        (format!("/v2.0/networks/{net_id}"), "network"),
        (format!("/v2.0/subnets/{sub_id}"), "subnet"),
        (format!("/v2.0/ports/{port_id}"), "port"),
        (format!("/v2.0/routers/{router_id}"), "router"),
        (format!("/v2.0/floatingips/{fip_id}"), "floatingip"),
        (format!("/v2.0/quotas/{demo}"), "quota"),
    ] {
        let v = ok(status(&c, &reader, &path), &format!("reader reads {path}"));
        if what != "quota" {
            assert_eq!(v[what]["project_id"], demo.as_str(), "{v}");
        }
    }
    // ... and writes none of them.
    let r = reader.as_str();
    refused(
        &c,
        r,
        "POST",
        "/v2.0/networks",
        json!({"network": {"name": "x"}}),
        "create_network",
    );
    refused(
        &c,
        r,
        "PUT",
        &format!("/v2.0/networks/{net_id}"),
        json!({"network": {"name": "y"}}),
        "update_network",
    );
    refused(
        &c,
        r,
        "DELETE",
        &format!("/v2.0/networks/{net_id}"),
        Value::Null,
        "delete_network",
    );
    refused(
        &c,
        r,
        "POST",
        "/v2.0/subnets",
        json!({"subnet": {"network_id": net_id, "ip_version": 4, "cidr": "10.0.2.0/24"}}),
        "create_subnet",
    );
    refused(
        &c,
        r,
        "PUT",
        &format!("/v2.0/subnets/{sub_id}"),
        json!({"subnet": {"name": "y"}}),
        "update_subnet",
    );
    refused(
        &c,
        r,
        "DELETE",
        &format!("/v2.0/subnets/{sub_id}"),
        Value::Null,
        "delete_subnet",
    );
    refused(
        &c,
        r,
        "POST",
        "/v2.0/ports",
        json!({"port": {"network_id": net_id}}),
        "create_port",
    );
    refused(
        &c,
        r,
        "PUT",
        &format!("/v2.0/ports/{port_id}"),
        json!({"port": {"name": "y"}}),
        "update_port",
    );
    refused(
        &c,
        r,
        "DELETE",
        &format!("/v2.0/ports/{port_id}"),
        Value::Null,
        "delete_port",
    );
    refused(
        &c,
        r,
        "POST",
        "/v2.0/routers",
        json!({"router": {"name": "x"}}),
        "create_router",
    );
    refused(
        &c,
        r,
        "PUT",
        &format!("/v2.0/routers/{router_id}"),
        json!({"router": {"name": "y"}}),
        "update_router",
    );
    refused(
        &c,
        r,
        "PUT",
        &format!("/v2.0/routers/{router_id}/add_router_interface"),
        json!({"subnet_id": sub_id}),
        "add_router_interface",
    );
    refused(
        &c,
        r,
        "PUT",
        &format!("/v2.0/routers/{router_id}/remove_router_interface"),
        json!({"subnet_id": sub_id}),
        "remove_router_interface",
    );
    refused(
        &c,
        r,
        "PUT",
        &format!("/v2.0/routers/{router_id}/add_extraroutes"),
        json!({"router": {"routes": [{"destination": "10.9.0.0/24", "nexthop": "10.0.1.9"}]}}),
        "update_router",
    );
    refused(
        &c,
        r,
        "DELETE",
        &format!("/v2.0/routers/{router_id}"),
        Value::Null,
        "delete_router",
    );
    refused(
        &c,
        r,
        "POST",
        "/v2.0/floatingips",
        json!({"floatingip": {"floating_network_id": ext_id}}),
        "create_floatingip",
    );
    refused(
        &c,
        r,
        "PUT",
        &format!("/v2.0/floatingips/{fip_id}"),
        json!({"floatingip": {"port_id": port_id}}),
        "update_floatingip",
    );
    refused(
        &c,
        r,
        "DELETE",
        &format!("/v2.0/floatingips/{fip_id}"),
        Value::Null,
        "delete_floatingip",
    );
    refused(
        &c,
        r,
        "PUT",
        &format!("/v2.0/quotas/{demo}"),
        json!({"quota": {"network": 5}}),
        "update_quota",
    );
    refused(
        &c,
        r,
        "DELETE",
        &format!("/v2.0/quotas/{demo}"),
        Value::Null,
        "delete_quota",
    );
    // Nothing changed: the member's objects are all there, untouched.
    let n = ok(
        status(&c, &member, &format!("/v2.0/networks/{net_id}")),
        "network",
    );
    assert_eq!(n["network"]["name"], "knet");
    let nets = ok(status(&c, &member, "/v2.0/networks"), "list");
    assert_eq!(
        nets["networks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["project_id"] == demo.as_str())
            .count(),
        1
    );

    // The member of another project: demo's network is not there for it (404), not even to
    // change or delete, and its list does not show it.
    let o = ks.token("other", "other");
    for (method, body) in [
        ("GET", Value::Null),
        ("PUT", json!({"network": {"name": "mine"}})),
        ("DELETE", Value::Null),
    ] {
        let b = if body.is_null() { None } else { Some(&body) };
        let (s, v) = c.n(method, &format!("/v2.0/networks/{net_id}"), Some(&o), b);
        assert_eq!(s, 404, "{method} of demo's network by other: {v}");
        assert_eq!(v["NeutronError"]["type"], "NetworkNotFound");
    }
    let (s, v) = c.n(
        "PUT",
        &format!("/v2.0/routers/{router_id}/add_router_interface"),
        Some(&o),
        Some(&json!({"subnet_id": sub_id})),
    );
    assert_eq!(s, 404, "other adds an interface to demo's router: {v}");
    let listed = ok(status(&c, &o, "/v2.0/networks"), "other's list");
    assert!(!listed.to_string().contains(&net_id), "{listed}");
    let (okay, _, err) = ks.openstack(home, "other", "other", &["network", "show", &net_id]);
    assert!(!okay && err.contains("No Network found"), "{err}");
    let (okay, out, err) = ks.openstack(
        home,
        "other",
        "other",
        &["network", "create", "-f", "json", "onet"],
    );
    assert!(okay, "{err}");
    assert!(out.contains(&other), "other's network is other's: {out}");

    // The Keystone admin sees both projects' networks.
    let all = ok(status(&c, &admin, "/v2.0/networks"), "admin's list");
    let owners: Vec<&str> = all["networks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["project_id"].as_str())
        .collect();
    assert!(
        owners.contains(&demo.as_str()) && owners.contains(&other.as_str()),
        "{owners:?}"
    );

    // A token with none of admin/member/reader: 403. Garbage: 401.
    let nobody = ks.token("demo-nobody", "demo");
    let (s, v) = status(&c, &nobody, "/v2.0/networks");
    assert_eq!(s, 403, "{v}");
    assert!(
        v["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains("none of the roles"),
        "{v}"
    );
    let (s, v) = status(&c, "gAAAAAnot-a-token", "/v2.0/networks");
    assert_eq!(
        (s, v["NeutronError"]["type"].as_str()),
        (401, Some("NotAuthenticated")),
        "{v}"
    );

    // The tokens file: an agent's node-bound token still registers its node; a person's
    // line (admintok, role admin) does not get around Keystone.
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "agent registers with its tokens-file token",
    );
    let (s, v) = status(&c, ADMIN, "/v2.0/networks");
    assert_eq!(s, 401, "a tokens-file admin line bypassed Keystone: {v}");
    let (s, _) = c.t("GET", "/v1.0/pods", Some(ADMIN), None);
    assert_eq!(s, 401);
    let (s, v) = status(&c, &agent("node1"), "/v2.0/networks");
    assert_eq!(s, 200, "{v}");
    assert!(
        !v.to_string().contains(&net_id),
        "an agent token sees no project's own network: {v}"
    );

    // crosspod's own service token revoked (its user's password set again revokes every
    // token of the user): the next validation gets 401 for it, renews it once, and goes on.
    let uid = ks.id_of("users", common::keystone::SERVICE_USER).unwrap();
    let (s, v) = ks.admin(
        "PATCH",
        &format!("/v3/users/{uid}"),
        Some(&json!({"user": {"password": common::keystone::PASSWORD}})),
    );
    assert_eq!(s, 200, "{v}");
    std::thread::sleep(Duration::from_millis(1100)); // revocations have 1 s granularity
    let fresh = ks.token("demo", "demo");
    ok(
        status(&c, &fresh, "/v2.0/networks"),
        "validated with a renewed service token",
    );
    assert!(
        !c.log_has_5xx(),
        "no 5xx: {:?}",
        c.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("\"status\":5"))
            .collect::<Vec<_>>()
    );
}

/// Polls `GET /v2.0/networks` with `token` until it is refused (401); the time it took.
fn until_refused(c: &Controller, token: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let (s, v) = status(c, token, "/v2.0/networks");
        match s {
            401 => return t0.elapsed(),
            200 => {}
            _ => panic!("unexpected {s}: {v}"),
        }
        assert!(
            t0.elapsed() < limit,
            "still accepted after {:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn revoked_and_expired_tokens_are_refused_within_the_cache_bound() {
    const EXPIRATION: u64 = 12;
    const CACHE: u64 = 3;
    let ks = Keystone::start_with(EXPIRATION);
    ks.ensure_user("demo", "demo", "member");
    let short = start(&ks, CACHE);
    // A cache far longer than the tokens live: only expires_at bounds it.
    let long = start(&ks, 600);

    // Revoked: refused by `short` within its cache bound, while `long` still trusts its copy.
    let t = ks.token("demo", "demo");
    let issued = Instant::now();
    ok(status(&short, &t, "/v2.0/networks"), "fresh token");
    ok(status(&long, &t, "/v2.0/networks"), "fresh token");
    ks.revoke(&t);
    let (s, _) = status(&long, &t, "/v2.0/networks");
    assert_eq!(
        s, 200,
        "the long cache answers from its copy until the token's expiry"
    );
    let took = until_refused(&short, &t, Duration::from_secs(CACHE + 3));
    assert!(
        took <= Duration::from_secs(CACHE + 1),
        "revocation seen after {took:?}"
    );
    // Refused tokens are not cached as valid: refused again, by Keystone.
    assert_eq!(status(&short, &t, "/v2.0/networks").0, 401);

    // Expired: `long` (cache 600 s) refuses it once its expires_at passes, not 600 s later.
    let t2 = ks.token("demo", "demo");
    let t2_issued = Instant::now();
    ok(status(&long, &t2, "/v2.0/networks"), "fresh token");
    let left = Duration::from_secs(EXPIRATION).saturating_sub(t2_issued.elapsed());
    let took = until_refused(&long, &t2, left + Duration::from_secs(5));
    assert!(
        t2_issued.elapsed() >= Duration::from_secs(EXPIRATION - 1),
        "refused before its expiry ({took:?})"
    );
    let (s, _) = status(&short, &t2, "/v2.0/networks");
    assert_eq!(s, 401, "expired on the other controller too");

    // Both controllers' own service tokens (same lifetime) were renewed meanwhile: new
    // tokens still validate well past the first service token's expiry.
    assert!(issued.elapsed() > Duration::from_secs(EXPIRATION));
    let t3 = ks.token("demo", "demo");
    ok(
        status(&short, &t3, "/v2.0/networks"),
        "after the first service token expired",
    );
    ok(
        status(&long, &t3, "/v2.0/networks"),
        "after the first service token expired",
    );
    assert!(!short.log_has_5xx() && !long.log_has_5xx());
}

#[test]
fn keystone_down_gives_503_for_uncached_tokens_and_recovers() {
    let mut ks = Keystone::start();
    ks.ensure_user("demo", "demo", "member");
    let c = start(&ks, 60);
    let cached = ks.token("demo", "demo");
    let uncached = ks.token("demo", "demo");
    ok(
        status(&c, &cached, "/v2.0/networks"),
        "validated while Keystone is up",
    );
    ks.kill();
    // A token validated before still works from the cache (reads and writes).
    ok(
        status(&c, &cached, "/v2.0/networks"),
        "cached token while Keystone is down",
    );
    ok(
        c.n(
            "POST",
            "/v2.0/networks",
            Some(&cached),
            Some(&json!({"network": {"name": "n"}})),
        ),
        "write with a cached token",
    );
    // Anything else is 503 in Neutron's shape: neither 401 for everyone nor open access.
    for t in [uncached.as_str(), "garbage"] {
        for (api, (s, v)) in [
            ("neutron", c.n("GET", "/v2.0/networks", Some(t), None)),
            (
                "neutron write",
                c.n(
                    "POST",
                    "/v2.0/networks",
                    Some(t),
                    Some(&json!({"network": {"name": "x"}})),
                ),
            ),
            ("tricircle", c.t("GET", "/v1.0/pods", Some(t), None)),
        ] {
            assert_eq!(s, 503, "{api} with Keystone down: {v}");
            assert_eq!(v["NeutronError"]["type"], "ServiceUnavailable", "{v}");
            assert!(
                v["NeutronError"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Keystone is unreachable"),
                "{v}"
            );
        }
    }
    // No token at all is still 401: nothing to ask Keystone about.
    assert_eq!(c.n("GET", "/v2.0/networks", None, None).0, 401);
    // Keystone back: the same token validates.
    ks.serve();
    let v = ok(
        status(&c, &uncached, "/v2.0/networks"),
        "after Keystone is back",
    );
    assert_eq!(
        v["networks"].as_array().unwrap().len(),
        1,
        "only the network written with the cached token: {v}"
    );
}

/// Validation cost: the same authenticated GET with the cache (60 s) and without it (0),
/// and with the tokens file, for reference. Prints the numbers (`--nocapture`).
#[test]
fn validation_cost_with_and_without_the_cache() {
    const N: u32 = 100;
    let ks = Keystone::start();
    ks.ensure_user("demo", "demo", "member");
    let cached = start(&ks, 60);
    let uncached = start(&ks, 0);
    let tokens = Controller::start();
    let t = ks.token("demo", "demo");
    let time = |c: &Controller, token: &str| {
        ok(status(c, token, "/v2.0/networks"), "warm-up");
        let t0 = Instant::now();
        for _ in 0..N {
            assert_eq!(status(c, token, "/v2.0/networks").0, 200);
        }
        t0.elapsed() / N
    };
    let with_cache = time(&cached, &t);
    let without = time(&uncached, &t);
    let file = time(&tokens, DEMO);
    eprintln!(
        "GET /v2.0/networks, mean of {N}: keystone cached {with_cache:?}, keystone uncached {without:?}, tokens file {file:?}"
    );
    assert!(
        with_cache < without,
        "the cache saves the Keystone round trip: {with_cache:?} vs {without:?}"
    );
}
