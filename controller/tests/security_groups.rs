//! Security groups and port security on the real controller binary (SQLite and PostgreSQL):
//! Neutron's shapes and default group, rule validation with Neutron's error types, ports'
//! `security_groups` / `port_security_enabled` / `allowed_address_pairs`, quotas, the policy
//! with two projects' tokens, the real `openstack` CLI, and the node's desired state (port
//! security, rules, remote-group members across pods) kept right by the incremental realizer.

mod common;

use std::time::{Duration, Instant};

use common::guide::{agent, desired, net_subnet, net_subnet_as, ok, pods, register};
use common::{openstack, openstack_json, Controller, Opts, PgDb, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

fn post(c: &Controller, token: &str, coll: &str, key: &str, body: Value) -> (u16, Value) {
    c.n(
        "POST",
        &format!("/v2.0/{coll}"),
        Some(token),
        Some(&json!({ key: body })),
    )
}

fn put(c: &Controller, token: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    c.n("PUT", path, Some(token), Some(&json!({ key: body })))
}

/// Assert the status and Neutron's error type (any type when `kind` is empty).
fn err(r: (u16, Value), status: u16, kind: &str) -> Value {
    assert_eq!(r.0, status, "expected {status} {kind}: {}", r.1);
    if !kind.is_empty() {
        assert_eq!(r.1["NeutronError"]["type"], kind, "{}", r.1);
    }
    r.1
}

fn rule(c: &Controller, token: &str, body: Value) -> (u16, Value) {
    post(
        c,
        token,
        "security-group-rules",
        "security_group_rule",
        body,
    )
}

fn group(c: &Controller, token: &str, name: &str) -> Value {
    ok(
        post(
            c,
            token,
            "security-groups",
            "security_group",
            json!({"name": name}),
        ),
        "group",
    )["security_group"]
        .clone()
}

fn default_group(c: &Controller, token: &str) -> Value {
    let l = ok(
        c.n(
            "GET",
            "/v2.0/security-groups?name=default",
            Some(token),
            None,
        ),
        "list",
    );
    let g = l["security_groups"].as_array().unwrap();
    assert_eq!(g.len(), 1, "one default group: {l}");
    g[0].clone()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// The API on one database: shapes, the default group, rules, ports, quotas.
fn api(c: &Controller) {
    // The first list makes the default group, with Neutron's four rules; the second finds it.
    let d = default_group(c, DEMO);
    let did = id(&d);
    assert_eq!(default_group(c, DEMO)["id"], d["id"]);
    assert_eq!(d["stateful"], true);
    let rules = d["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4, "{d}");
    for eth in ["IPv4", "IPv6"] {
        assert!(rules.iter().any(|r| r["direction"] == "egress"
            && r["ethertype"] == eth
            && r["remote_group_id"].is_null()
            && r["protocol"].is_null()));
        assert!(rules.iter().any(|r| r["direction"] == "ingress"
            && r["ethertype"] == eth
            && r["remote_group_id"] == d["id"]));
    }

    // A new group starts with the two egress rules.
    let web = group(c, DEMO, "web");
    let wid = id(&web);
    assert_eq!(web["security_group_rules"].as_array().unwrap().len(), 2);
    assert_eq!(web["project_id"], "demo");

    // Rules: created, duplicates refused naming the first, protocol by number is the same.
    let ssh = ok(
        rule(c, DEMO, json!({"security_group_id": wid, "direction": "ingress", "protocol": "TCP", "port_range_min": 22, "port_range_max": 22})),
        "ssh",
    )["security_group_rule"]
        .clone();
    assert_eq!(ssh["protocol"], "tcp");
    assert_eq!(ssh["ethertype"], "IPv4");
    let dup = err(
        rule(
            c,
            DEMO,
            json!({"security_group_id": wid, "direction": "ingress", "protocol": "6", "port_range_min": 22, "port_range_max": 22}),
        ),
        409,
        "SecurityGroupRuleExists",
    );
    assert!(
        dup["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains(ssh["id"].as_str().unwrap()),
        "{dup}"
    );
    let pfx = ok(
        rule(
            c,
            DEMO,
            json!({"security_group_id": wid, "direction": "ingress", "protocol": "icmp", "port_range_min": 8, "port_range_max": 0, "remote_ip_prefix": "10.1.2.3/16"}),
        ),
        "icmp",
    );
    assert_eq!(
        pfx["security_group_rule"]["remote_ip_prefix"],
        "10.1.2.3/16"
    );
    assert_eq!(pfx["security_group_rule"]["normalized_cidr"], "10.1.0.0/16");
    // The same network is the same rule.
    err(
        rule(
            c,
            DEMO,
            json!({"security_group_id": wid, "direction": "ingress", "protocol": "icmp", "port_range_min": 8, "port_range_max": 0, "remote_ip_prefix": "10.1.0.0/16"}),
        ),
        409,
        "SecurityGroupRuleExists",
    );
    let shown = ok(
        c.n(
            "GET",
            &format!("/v2.0/security-groups/{wid}"),
            Some(DEMO),
            None,
        ),
        "show",
    );
    assert_eq!(
        shown["security_group"]["security_group_rules"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Bad input: Neutron's types and statuses.
    let base = |extra: Value| {
        let mut b = json!({"security_group_id": wid, "direction": "ingress"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, status, kind) in [
        (
            json!({"protocol": "tcp", "port_range_min": 80, "port_range_max": 22}),
            400,
            "SecurityGroupInvalidPortRange",
        ),
        (
            json!({"protocol": "tcp", "port_range_min": 0, "port_range_max": 22}),
            400,
            "SecurityGroupInvalidPortValue",
        ),
        (
            json!({"protocol": "udp", "port_range_min": 1, "port_range_max": 70000}),
            400,
            "SecurityGroupInvalidPortValue",
        ),
        (
            json!({"port_range_min": 1, "port_range_max": 2}),
            400,
            "SecurityGroupProtocolRequiredWithPorts",
        ),
        (
            json!({"protocol": "gre", "port_range_min": 1, "port_range_max": 2}),
            400,
            "SecurityGroupInvalidProtocolForPort",
        ),
        (
            json!({"protocol": "icmp", "port_range_min": 8, "port_range_max": 256}),
            400,
            "SecurityGroupInvalidIcmpValue",
        ),
        (
            json!({"protocol": "icmp", "port_range_max": 0}),
            400,
            "SecurityGroupMissingIcmpType",
        ),
        (
            json!({"protocol": "bogus"}),
            400,
            "SecurityGroupRuleInvalidProtocol",
        ),
        (
            json!({"protocol": "300"}),
            400,
            "SecurityGroupRuleInvalidProtocol",
        ),
        (
            json!({"protocol": "ipv6-icmp", "ethertype": "IPv4"}),
            400,
            "SecurityGroupEthertypeConflictWithProtocol",
        ),
        (
            json!({"ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}),
            400,
            "SecurityGroupRuleParameterConflict",
        ),
        (
            json!({"ethertype": "IPX"}),
            400,
            "SecurityGroupRuleInvalidEtherType",
        ),
        (
            json!({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": did}),
            400,
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
        ),
        (json!({"remote_ip_prefix": "not-a-prefix"}), 400, ""),
        (json!({"direction": "sideways"}), 400, ""),
        (json!({"bogus": 1}), 400, ""),
        (
            json!({"remote_group_id": "3f1e7a40-0000-4000-8000-000000000000"}),
            404,
            "SecurityGroupNotFound",
        ),
    ] {
        let r = rule(c, DEMO, base(body.clone()));
        assert_eq!(r.0, status, "{body}: {}", r.1);
        if !kind.is_empty() {
            assert_eq!(r.1["NeutronError"]["type"], kind, "{body}: {}", r.1);
        }
    }
    err(rule(c, DEMO, json!({"direction": "ingress"})), 400, "");
    err(
        rule(
            c,
            DEMO,
            json!({"security_group_id": "3f1e7a40-0000-4000-8000-000000000000", "direction": "ingress"}),
        ),
        404,
        "SecurityGroupNotFound",
    );

    // The default group: not renamed, not deleted (admins excepted), and only one.
    err(
        put(
            c,
            DEMO,
            &format!("/v2.0/security-groups/{did}"),
            "security_group",
            json!({"name": "x"}),
        ),
        409,
        "SecurityGroupCannotUpdateDefault",
    );
    ok(
        put(
            c,
            DEMO,
            &format!("/v2.0/security-groups/{did}"),
            "security_group",
            json!({"description": "mine"}),
        ),
        "describe default",
    );
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/security-groups/{did}"),
            Some(DEMO),
            None,
        ),
        409,
        "SecurityGroupCannotRemoveDefault",
    );
    err(
        post(
            c,
            DEMO,
            "security-groups",
            "security_group",
            json!({"name": "default"}),
        ),
        409,
        "SecurityGroupDefaultAlreadyExists",
    );
    err(
        post(
            c,
            DEMO,
            "security-groups",
            "security_group",
            json!({"stateful": false}),
        ),
        400,
        "",
    );
    let renamed = ok(
        put(
            c,
            DEMO,
            &format!("/v2.0/security-groups/{wid}"),
            "security_group",
            json!({"name": "www"}),
        ),
        "rename",
    );
    assert_eq!(renamed["security_group"]["name"], "www");

    // Ports: the default group when none is named, the network's port security inherited.
    let (net, _) = net_subnet(c, "sgnet", "10.40.0.0/24");
    let p = ok(
        post(c, DEMO, "ports", "port", json!({"network_id": net})),
        "port",
    )["port"]
        .clone();
    assert_eq!(p["security_groups"], json!([did]));
    assert_eq!(p["port_security_enabled"], true);
    assert_eq!(p["allowed_address_pairs"], json!([]));
    let pid = id(&p);
    let p2 = ok(
        post(c, DEMO, "ports", "port", json!({"network_id": net, "security_groups": [wid, did],
            "allowed_address_pairs": [{"ip_address": "10.40.0.200"}, {"ip_address": "10.40.1.0/24", "mac_address": "fa:16:3e:aa:bb:cc"}]})),
        "port in two groups",
    )["port"]
        .clone();
    let mut want = vec![wid.clone(), did.clone()];
    want.sort();
    assert_eq!(p2["security_groups"], json!(want));
    assert_eq!(
        p2["allowed_address_pairs"],
        json!([{"ip_address": "10.40.0.200", "mac_address": p2["mac_address"]}, {"ip_address": "10.40.1.0/24", "mac_address": "fa:16:3e:aa:bb:cc"}])
    );
    let p2id = id(&p2);
    // A group with ports is in use; so is the default one, even for the admin.
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/security-groups/{wid}"),
            Some(DEMO),
            None,
        ),
        409,
        "SecurityGroupInUse",
    );
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/security-groups/{did}"),
            Some(ADMIN),
            None,
        ),
        409,
        "SecurityGroupInUse",
    );
    // Port security off: no groups, no pairs.
    err(
        post(
            c,
            DEMO,
            "ports",
            "port",
            json!({"network_id": net, "port_security_enabled": false, "security_groups": [wid]}),
        ),
        400,
        "PortSecurityAndIPRequiredForSecurityGroups",
    );
    err(
        post(
            c,
            DEMO,
            "ports",
            "port",
            json!({"network_id": net, "port_security_enabled": false, "allowed_address_pairs": [{"ip_address": "10.40.0.9"}]}),
        ),
        409,
        "AddressPairAndPortSecurityRequired",
    );
    let off = ok(
        post(
            c,
            DEMO,
            "ports",
            "port",
            json!({"network_id": net, "port_security_enabled": false}),
        ),
        "port without port security",
    )["port"]
        .clone();
    assert_eq!(off["security_groups"], json!([]));
    err(
        put(
            c,
            DEMO,
            &format!("/v2.0/ports/{pid}"),
            "port",
            json!({"port_security_enabled": false}),
        ),
        409,
        "PortSecurityPortHasSecurityGroup",
    );
    err(
        put(
            c,
            DEMO,
            &format!("/v2.0/ports/{p2id}"),
            "port",
            json!({"port_security_enabled": false, "security_groups": []}),
        ),
        409,
        "AddressPairAndPortSecurityRequired",
    );
    let cleared = ok(
        put(
            c,
            DEMO,
            &format!("/v2.0/ports/{pid}"),
            "port",
            json!({"port_security_enabled": false, "security_groups": []}),
        ),
        "disable with groups cleared",
    );
    assert_eq!(cleared["port"]["security_groups"], json!([]));
    assert_eq!(cleared["port"]["port_security_enabled"], false);
    // `port set --no-security-group` is a PUT of [].
    let none = ok(
        put(
            c,
            DEMO,
            &format!("/v2.0/ports/{p2id}"),
            "port",
            json!({"security_groups": [], "allowed_address_pairs": []}),
        ),
        "no groups",
    );
    assert_eq!(none["port"]["security_groups"], json!([]));
    assert_eq!(none["port"]["allowed_address_pairs"], json!([]));
    ok(
        c.n(
            "DELETE",
            &format!("/v2.0/security-groups/{wid}"),
            Some(DEMO),
            None,
        ),
        "delete unused group",
    );
    // Address pairs: Neutron's checks.
    let pairs = |v: Value| {
        post(
            c,
            DEMO,
            "ports",
            "port",
            json!({"network_id": net, "allowed_address_pairs": v}),
        )
    };
    err(
        pairs(json!([{"mac_address": "fa:16:3e:00:00:01"}])),
        400,
        "AllowedAddressPairsMissingIP",
    );
    err(
        pairs(json!([{"ip_address": "10.0.0.1"}, {"ip_address": "10.0.0.1"}])),
        400,
        "DuplicateAddressPairInRequest",
    );
    err(
        pairs(json!((0..11)
            .map(|i| json!({"ip_address": format!("10.0.0.{i}")}))
            .collect::<Vec<_>>())),
        400,
        "AllowedAddressPairExhausted",
    );
    assert_eq!(pairs(json!([{"ip_address": "nope"}])).0, 400);
    assert_eq!(
        pairs(json!([{"ip_address": "10.0.0.1", "mac_address": "zz"}])).0,
        400
    );
    assert_eq!(pairs(json!([{"ip_address": "10.0.0.1", "what": 1}])).0, 400);
    // A network without port security gives its ports none; a network:* port gets no group.
    let n2 = ok(
        post(
            c,
            DEMO,
            "networks",
            "network",
            json!({"port_security_enabled": false}),
        ),
        "net",
    )["network"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let inherited = ok(
        post(c, DEMO, "ports", "port", json!({"network_id": n2})),
        "port",
    )["port"]
        .clone();
    assert_eq!(inherited["port_security_enabled"], false);
    assert_eq!(inherited["security_groups"], json!([]));
    // (network:dhcp and the router owners are crosspod's own; OVN's metadata owner is free.)
    let infra = ok(
        post(
            c,
            DEMO,
            "ports",
            "port",
            json!({"network_id": net, "device_owner": "network:distributed"}),
        ),
        "network:distributed port",
    )["port"]
        .clone();
    assert_eq!(infra["security_groups"], json!([]));

    // Rules: show, list filtered, delete.
    let rid = ssh["id"].as_str().unwrap();
    let (s, _) = c.n(
        "GET",
        &format!("/v2.0/security-group-rules/{rid}"),
        Some(DEMO),
        None,
    );
    assert_eq!(s, 404, "the rule went with its group");
    let ping = ok(
        rule(
            c,
            DEMO,
            json!({"security_group_id": did, "direction": "ingress", "protocol": "icmp"}),
        ),
        "ping",
    )["security_group_rule"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let l = ok(
        c.n(
            "GET",
            &format!("/v2.0/security-group-rules?security_group_id={did}&protocol=icmp"),
            Some(DEMO),
            None,
        ),
        "rules",
    );
    assert_eq!(
        l["security_group_rules"].as_array().unwrap().len(),
        1,
        "{l}"
    );
    assert_eq!(l["security_group_rules"][0]["belongs_to_default_sg"], true);
    assert_eq!(
        c.n(
            "PUT",
            &format!("/v2.0/security-group-rules/{ping}"),
            Some(DEMO),
            Some(&json!({"security_group_rule": {}}))
        )
        .0,
        405
    );
    assert_eq!(
        c.n(
            "DELETE",
            &format!("/v2.0/security-group-rules/{ping}"),
            Some(DEMO),
            None
        )
        .0,
        204
    );
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/security-group-rules/{ping}"),
            Some(DEMO),
            None,
        ),
        404,
        "SecurityGroupRuleNotFound",
    );

    // Quotas: Neutron's defaults, and the edge.
    let q = ok(c.n("GET", "/v2.0/quotas/demo", Some(DEMO), None), "quota");
    assert_eq!(q["quota"]["security_group"], 10);
    assert_eq!(q["quota"]["security_group_rule"], 100);
    ok(
        put(
            c,
            ADMIN,
            "/v2.0/quotas/demo",
            "quota",
            json!({"security_group": 2, "security_group_rule": 8}),
        ),
        "set quota",
    );
    let g3 = group(c, DEMO, "g3"); // default + g3 = 2
    err(
        post(
            c,
            DEMO,
            "security-groups",
            "security_group",
            json!({"name": "g4"}),
        ),
        409,
        "OverQuota",
    );
    // default (4) + g3 (2) = 6 rules: two more pass, the third does not.
    for port in [80, 443] {
        ok(
            rule(
                c,
                DEMO,
                json!({"security_group_id": g3["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": port, "port_range_max": port}),
            ),
            "rule under quota",
        );
    }
    let over = err(
        rule(
            c,
            DEMO,
            json!({"security_group_id": g3["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 8080, "port_range_max": 8080}),
        ),
        409,
        "OverQuota",
    );
    assert_eq!(
        over["NeutronError"]["message"],
        "Quota exceeded for resources: ['security_group_rule']."
    );
    // Another project is not limited by demo's.
    group(c, OTHER, "o1");
    let details = ok(
        c.n("GET", "/v2.0/quotas/demo/details", Some(DEMO), None),
        "details",
    );
    assert_eq!(details["quota"]["security_group"]["used"], 2, "{details}");
    assert_eq!(
        details["quota"]["security_group_rule"]["used"], 8,
        "{details}"
    );
}

#[test]
fn api_on_sqlite() {
    let c = Controller::start();
    api(&c);
    assert!(!c.log_has_5xx());
}

#[test]
fn api_on_postgres() {
    let db = PgDb::create();
    let c = Controller::start_with(Some(&db.url), &[]);
    api(&c);
    assert!(!c.log_has_5xx());
}

/// Many first requests of one project at once, on PostgreSQL with a connection each: one
/// default group.
#[test]
fn concurrent_first_use_makes_one_default_group_on_postgres() {
    let db = PgDb::create();
    let c = Controller::start_opts(&Opts {
        database: Some(&db.url),
        tokens: &["racetok race member"],
        ..Opts::default()
    });
    let (net, _) = net_subnet(&c, "shared", "10.50.0.0/24");
    ok(
        put(
            &c,
            ADMIN,
            &format!("/v2.0/networks/{net}"),
            "network",
            json!({"shared": true}),
        ),
        "share",
    );
    std::thread::scope(|s| {
        for i in 0..8 {
            let c = &c;
            let net = net.clone();
            s.spawn(move || {
                if i % 2 == 0 {
                    ok(
                        c.n("GET", "/v2.0/security-groups", Some("racetok"), None),
                        "list",
                    );
                } else {
                    ok(
                        post(c, "racetok", "ports", "port", json!({"network_id": net})),
                        "port",
                    );
                }
            });
        }
    });
    let d = default_group(&c, "racetok");
    let ports = ok(c.n("GET", "/v2.0/ports", Some("racetok"), None), "ports");
    for p in ports["ports"].as_array().unwrap() {
        if p["project_id"] == "race" {
            assert_eq!(p["security_groups"], json!([d["id"]]), "{p}");
        }
    }
    assert!(!c.log_has_5xx());
}

/// Member of project B (other) against A's (demo) groups, rules and ports.
#[test]
fn another_project_can_neither_see_nor_use_a_group() {
    let c = Controller::start();
    let a_default = default_group(&c, DEMO);
    let a = group(&c, DEMO, "a-web");
    let aid = id(&a);
    let a_rule = a["security_group_rules"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b_default = default_group(&c, OTHER);
    assert_ne!(a_default["id"], b_default["id"]);
    let b = group(&c, OTHER, "b-web");
    let bid = id(&b);

    // Not visible: show, list, rules.
    for path in [
        format!("/v2.0/security-groups/{aid}"),
        format!("/v2.0/security-group-rules/{a_rule}"),
    ] {
        assert_eq!(c.n("GET", &path, Some(OTHER), None).0, 404, "{path}");
    }
    let l = ok(
        c.n("GET", "/v2.0/security-groups", Some(OTHER), None),
        "list",
    );
    assert!(
        l["security_groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["project_id"] == "other"),
        "{l}"
    );
    let l = ok(
        c.n("GET", "/v2.0/security-group-rules", Some(OTHER), None),
        "rules",
    );
    assert!(
        l["security_group_rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["project_id"] == "other"),
        "{l}"
    );
    // Not changed or deleted.
    err(
        put(
            &c,
            OTHER,
            &format!("/v2.0/security-groups/{aid}"),
            "security_group",
            json!({"name": "mine"}),
        ),
        404,
        "SecurityGroupNotFound",
    );
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/security-groups/{aid}"),
            Some(OTHER),
            None,
        ),
        404,
        "SecurityGroupNotFound",
    );
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/security-group-rules/{a_rule}"),
            Some(OTHER),
            None,
        ),
        404,
        "SecurityGroupRuleNotFound",
    );
    // No rule in A's group, and A's group is not B's remote group.
    err(
        rule(
            &c,
            OTHER,
            json!({"security_group_id": aid, "direction": "ingress"}),
        ),
        404,
        "SecurityGroupNotFound",
    );
    err(
        rule(
            &c,
            OTHER,
            json!({"security_group_id": bid, "direction": "ingress", "remote_group_id": aid}),
        ),
        404,
        "SecurityGroupNotFound",
    );
    // Not even the admin makes a rule naming another project's group as remote.
    err(
        rule(
            &c,
            ADMIN,
            json!({"security_group_id": bid, "direction": "ingress", "remote_group_id": aid}),
        ),
        404,
        "SecurityGroupNotFound",
    );
    // B's port cannot be put in A's group, on create or update.
    let (bnet, _) = net_subnet_as(&c, OTHER, "bnet", "10.60.0.0/24");
    err(
        post(
            &c,
            OTHER,
            "ports",
            "port",
            json!({"network_id": bnet, "security_groups": [aid]}),
        ),
        404,
        "SecurityGroupNotFound",
    );
    let bp = ok(
        post(&c, OTHER, "ports", "port", json!({"network_id": bnet})),
        "b port",
    )["port"]
        .clone();
    assert_eq!(bp["security_groups"], json!([b_default["id"]]));
    err(
        put(
            &c,
            OTHER,
            &format!("/v2.0/ports/{}", id(&bp)),
            "port",
            json!({"security_groups": [aid]}),
        ),
        404,
        "SecurityGroupNotFound",
    );
    // Nor may the admin put B's port in A's group (a group serves its own project's ports).
    err(
        put(
            &c,
            ADMIN,
            &format!("/v2.0/ports/{}", id(&bp)),
            "port",
            json!({"security_groups": [aid]}),
        ),
        404,
        "SecurityGroupNotFound",
    );
    // A member may not create a group for another project.
    err(
        post(
            &c,
            OTHER,
            "security-groups",
            "security_group",
            json!({"name": "x", "project_id": "demo"}),
        ),
        403,
        "PolicyNotAuthorized",
    );
    // Nor tagged by B; A's tags show on A's group.
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/security-groups/{aid}/tags"),
            Some(DEMO),
            Some(&json!({"tags": ["blue"]})),
        ),
        "tag",
    );
    err(
        c.n(
            "PUT",
            &format!("/v2.0/security-groups/{aid}/tags/red"),
            Some(OTHER),
            None,
        ),
        404,
        "SecurityGroupNotFound",
    );
    err(
        c.n(
            "DELETE",
            &format!("/v2.0/security-groups/{aid}/tags"),
            Some(OTHER),
            None,
        ),
        404,
        "SecurityGroupNotFound",
    );
    let l = ok(
        c.n("GET", "/v2.0/security-groups?tags=blue", Some(DEMO), None),
        "by tag",
    );
    assert_eq!(l["security_groups"].as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l["security_groups"][0]["tags"], json!(["blue"]));
    let l = ok(
        c.n("GET", "/v2.0/security-groups?tags=blue", Some(OTHER), None),
        "by tag",
    );
    assert_eq!(l["security_groups"], json!([]), "{l}");
    // A's group is intact.
    let a2 = ok(
        c.n(
            "GET",
            &format!("/v2.0/security-groups/{aid}"),
            Some(DEMO),
            None,
        ),
        "a",
    )["security_group"]
        .clone();
    assert_eq!(a2["name"], "a-web");
    assert_eq!(a2["tags"], json!(["blue"]));
    assert_eq!(a2["security_group_rules"], a["security_group_rules"]);
    assert!(!c.log_has_5xx());
}

/// Poll the node's published state until `pred` holds (10 s).
fn wait_state(c: &Controller, node: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let d = desired(c, node);
        if pred(&d) {
            return d;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}: {d:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn bind(c: &Controller, port: &str, host: &str) {
    ok(
        put(
            c,
            ADMIN,
            &format!("/v2.0/ports/{port}"),
            "port",
            json!({"binding:host_id": host}),
        ),
        "bind",
    );
}

fn state_of(d: &Value) -> &Value {
    if d.get("state").is_some() {
        &d["state"]
    } else {
        d
    }
}

/// The node's desired state: port security of its ports, its groups' rules, and the members of
/// remote groups from another pod, following membership changes.
#[test]
fn desired_state_holds_port_security_rules_and_remote_members() {
    let c = Controller::start();
    pods(&c);
    ok(
        register(&c, &agent("node1"), "node1", "RegionOne", false),
        "node1",
    );
    ok(
        register(&c, &agent("node2"), "node2", "RegionTwo", true),
        "node2",
    );
    let (n1, _) = net_subnet(&c, "n1", "10.70.1.0/24");
    let (n2, _) = net_subnet(&c, "n2", "10.70.2.0/24");
    let web = group(&c, DEMO, "web");
    let app = group(&c, DEMO, "app");
    let (wid, appid) = (id(&web), id(&app));
    let r = ok(
        rule(&c, DEMO, json!({"security_group_id": wid, "direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "remote_group_id": appid})),
        "rule",
    )["security_group_rule"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let icmp6 = ok(
        rule(
            &c,
            DEMO,
            json!({"security_group_id": wid, "direction": "ingress", "ethertype": "IPv6", "protocol": "icmp"}),
        ),
        "icmp6",
    )["security_group_rule"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = ok(
        post(
            &c,
            DEMO,
            "ports",
            "port",
            json!({"network_id": n1, "security_groups": [wid], "device_owner": "compute:nova"}),
        ),
        "a",
    )["port"]
        .clone();
    let b = ok(
        post(
            &c,
            DEMO,
            "ports",
            "port",
            json!({"network_id": n2, "security_groups": [appid], "device_owner": "compute:nova"}),
        ),
        "b",
    )["port"]
        .clone();
    let off = ok(post(&c, DEMO, "ports", "port", json!({"network_id": n1, "port_security_enabled": false, "device_owner": "compute:nova"})), "off")["port"].clone();
    let (aid, bid) = (id(&a), id(&b));
    bind(&c, &aid, "node1");
    bind(&c, &bid, "node2");
    bind(&c, &id(&off), "node1");
    let a_ip = a["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();
    let b_ip = b["fixed_ips"][0]["ip_address"]
        .as_str()
        .unwrap()
        .to_string();

    let d = wait_state(&c, "node1", "a's security and app's members", |d| {
        let s = state_of(d);
        s["ports"][&aid]["security"].is_object()
            && s["security_groups"][&appid]["members"] == json!([format!("{b_ip}/32")])
    });
    let s = state_of(&d);
    let sec = &s["ports"][&aid]["security"];
    assert_eq!(
        sec["allowed"],
        json!([{"mac": a["mac_address"], "ip": format!("{a_ip}/32")}]),
        "{s:#}"
    );
    assert_eq!(sec["security_groups"], json!([wid]));
    let zone = sec["ct_zone"].as_u64().unwrap();
    assert!(zone > 0, "{sec}");
    assert!(
        s["ports"][id(&off)].get("security").is_none(),
        "port security off: {s:#}"
    );
    // web's rules (its two egress rules, the remote-group one and ICMPv6), app's members only.
    let rules = s["security_groups"][&wid]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 4, "{s:#}");
    let r6 = rules.iter().find(|x| x["id"] == icmp6.as_str()).unwrap();
    assert_eq!(r6["protocol"], 58, "icmp in an IPv6 rule is ICMPv6: {r6}");
    assert_eq!(r6["ethertype"], "IPv6");
    let r80 = rules.iter().find(|x| x["id"] == r.as_str()).unwrap();
    assert_eq!(r80["protocol"], 6);
    assert_eq!(r80["port_range_min"], 80);
    assert_eq!(r80["direction"], "ingress");
    assert_eq!(r80["ethertype"], "IPv4");
    assert_eq!(r80["remote_group_id"], appid.as_str());
    assert!(
        s["security_groups"][&appid]
            .get("rules")
            .is_none_or(|r| r == &json!([])),
        "{s:#}"
    );
    // Two networks on node1 have two zones.
    let (n3, _) = net_subnet(&c, "n3", "10.70.3.0/24");
    let a3 = ok(
        post(
            &c,
            DEMO,
            "ports",
            "port",
            json!({"network_id": n3, "device_owner": "compute:nova"}),
        ),
        "a3",
    )["port"]
        .clone();
    bind(&c, &id(&a3), "node1");
    let d = wait_state(&c, "node1", "a3", |d| {
        state_of(d)["ports"][id(&a3)]["security"].is_object()
    });
    assert_ne!(
        state_of(&d)["ports"][id(&a3)]["security"]["ct_zone"]
            .as_u64()
            .unwrap(),
        zone
    );

    // A membership change in RegionTwo re-plans node1: an address pair, then b leaving app.
    ok(
        put(
            &c,
            DEMO,
            &format!("/v2.0/ports/{bid}"),
            "port",
            json!({"allowed_address_pairs": [{"ip_address": "10.99.0.0/24"}]}),
        ),
        "pair",
    );
    wait_state(&c, "node1", "pair as a member", |d| {
        state_of(d)["security_groups"][&appid]["members"]
            == json!([format!("{b_ip}/32"), "10.99.0.0/24"])
    });
    let d2 = desired(&c, "node2");
    assert_eq!(
        state_of(&d2)["ports"][&bid]["security"]["allowed"],
        json!([{"mac": b["mac_address"], "ip": format!("{b_ip}/32")}, {"mac": b["mac_address"], "ip": "10.99.0.0/24"}])
    );
    ok(
        put(
            &c,
            DEMO,
            &format!("/v2.0/ports/{bid}"),
            "port",
            json!({"security_groups": []}),
        ),
        "leave",
    );
    wait_state(&c, "node1", "no members", |d| {
        state_of(d)["security_groups"][&appid]["members"]
            .as_array()
            .is_none_or(|m| m.is_empty())
    });
    // A rule change reaches the node; deleting the remote group takes its rule along.
    ok(
        c.n(
            "DELETE",
            &format!("/v2.0/security-groups/{appid}"),
            Some(DEMO),
            None,
        ),
        "delete app",
    );
    wait_state(&c, "node1", "app gone", |d| {
        let s = state_of(d);
        s["security_groups"].get(&appid).is_none()
            && s["security_groups"][&wid]["rules"]
                .as_array()
                .map(|r| r.len())
                == Some(3)
    });
    // The incremental picture equals a full one.
    let (s, r) = c.t("POST", "/v1.0/resync", Some(ADMIN), None);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["resync"]["drift"], json!(false), "{r}");
    assert!(!c.log_has_5xx());
}

/// The real `openstack` CLI: groups and rules, a port in a group, `--no-security-group`.
#[test]
fn openstack_cli_round_trip() {
    let c = Controller::start();
    let g = openstack_json(
        &c,
        DEMO,
        &[
            "security",
            "group",
            "create",
            "web",
            "--description",
            "web servers",
        ],
    );
    assert_eq!(g["name"], "web");
    let gid = g["id"].as_str().unwrap().to_string();
    let r = openstack_json(
        &c,
        DEMO,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "tcp",
            "--dst-port",
            "22",
            "--ingress",
            "web",
        ],
    );
    assert_eq!(r["port_range_min"], 22);
    assert_eq!(r["port_range_max"], 22);
    let r2 = openstack_json(
        &c,
        DEMO,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "icmp",
            "--remote-group",
            "default",
            "web",
        ],
    );
    assert_eq!(r2["protocol"], "icmp");
    let (okd, _, errs) = openstack(
        &c,
        DEMO,
        &[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "tcp",
            "--dst-port",
            "22",
            "--ingress",
            "web",
        ],
    );
    assert!(!okd, "a duplicate rule is refused");
    assert!(errs.contains("already exists"), "{errs}");
    let l = openstack_json(&c, DEMO, &["security", "group", "rule", "list", "web"]);
    assert_eq!(l.as_array().unwrap().len(), 4, "{l}");
    let l = openstack_json(&c, DEMO, &["security", "group", "list"]);
    assert_eq!(l.as_array().unwrap().len(), 2, "default and web: {l}");
    let (net, _) = net_subnet(&c, "clinet", "10.80.0.0/24");
    let p = openstack_json(
        &c,
        DEMO,
        &[
            "port",
            "create",
            "--network",
            &net,
            "--security-group",
            "web",
            "p1",
        ],
    );
    assert_eq!(p["security_group_ids"], json!([gid]), "{p}");
    let (okd, _, errs) = openstack(&c, DEMO, &["security", "group", "delete", "web"]);
    assert!(!okd && errs.contains("in use"), "{errs}");
    let (okd, _, errs) = openstack(&c, DEMO, &["port", "set", "--no-security-group", "p1"]);
    assert!(okd, "{errs}");
    let p = openstack_json(&c, DEMO, &["port", "show", "p1"]);
    assert_eq!(p["security_group_ids"], json!([]), "{p}");
    let (okd, _, errs) = openstack(
        &c,
        DEMO,
        &[
            "port",
            "set",
            "--allowed-address",
            "ip-address=10.80.0.250",
            "p1",
        ],
    );
    assert!(okd, "{errs}");
    let p = openstack_json(&c, DEMO, &["port", "show", "p1"]);
    assert_eq!(
        p["allowed_address_pairs"][0]["ip_address"], "10.80.0.250",
        "{p}"
    );
    let rid = r["id"].as_str().unwrap();
    let (okd, _, errs) = openstack(&c, DEMO, &["security", "group", "rule", "delete", rid]);
    assert!(okd, "{errs}");
    let (okd, _, errs) = openstack(&c, DEMO, &["security", "group", "delete", "web"]);
    assert!(okd, "{errs}");
    let (okd, _, _) = openstack(&c, OTHER, &["security", "group", "show", &gid]);
    assert!(!okd);
    assert!(!c.log_has_5xx());
}
