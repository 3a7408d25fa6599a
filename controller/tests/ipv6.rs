//! IPv6 in the Neutron API (issue #21, the controller's half): subnets with `ipv6_ra_mode` /
//! `ipv6_address_mode` through the real `openstack` CLI (shown, filterable, immutable),
//! Neutron's validation rules with their statuses and messages, EUI-64 fixed IPs on `slaac`
//! and `dhcpv6-stateless` subnets (computed here independently of the controller's code),
//! following a MAC change, added to existing ports by a later subnet (all or nothing), a
//! dual-stack gateway port, policy with two projects' tokens, and `--bridge-cidr-v6`; on
//! SQLite and PostgreSQL.

mod common;

use std::net::Ipv6Addr;
use std::process::Command;

use common::guide::{ext_net, ok, pods};
use common::{openstack, openstack_json, Controller, Opts, PgDb, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

/// The modified EUI-64 address of `mac` in the /64 `prefix` (RFC 4291 appendix A), written
/// out here rather than taken from `wire::eui64`, so the test checks the controller's use.
fn eui64(prefix: &str, mac: &str) -> String {
    let net: Ipv6Addr = prefix.split('/').next().unwrap().parse().unwrap();
    let m: Vec<u16> = mac
        .split(':')
        .map(|h| u16::from_str_radix(h, 16).unwrap())
        .collect();
    let s = net.segments();
    Ipv6Addr::new(
        s[0],
        s[1],
        s[2],
        s[3],
        ((m[0] ^ 0x02) << 8) | m[1],
        (m[2] << 8) | 0xff,
        0xfe00 | m[3],
        (m[4] << 8) | m[5],
    )
    .to_string()
}

#[test]
fn eui64_of_neutrons_example() {
    assert_eq!(
        eui64("2001:db8::/64", "fa:16:3e:00:00:11"),
        "2001:db8::f816:3eff:fe00:11"
    );
}

fn post(c: &Controller, token: &str, what: &str, body: Value) -> (u16, Value) {
    c.n(
        "POST",
        &format!("/v2.0/{what}s"),
        Some(token),
        Some(&json!({ what: body })),
    )
}

fn created(c: &Controller, token: &str, what: &str, body: Value) -> Value {
    ok(post(c, token, what, body), what)[what].clone()
}

fn net(c: &Controller, token: &str, name: &str) -> String {
    created(c, token, "network", json!({"name": name}))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn port(c: &Controller, id: &str) -> Value {
    ok(
        c.n("GET", &format!("/v2.0/ports/{id}"), Some(ADMIN), None),
        "port",
    )["port"]
        .clone()
}

/// The port's fixed IPs as (subnet id, address), sorted.
fn ips(p: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = p["fixed_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["subnet_id"].as_str().unwrap().to_string(),
                f["ip_address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

fn pair(s: &str, ip: &str) -> (String, String) {
    (s.to_string(), ip.to_string())
}

/// The real CLI creates slaac, stateless and stateful subnets; ports get EUI-64 addresses on
/// the first two, pool addresses on the last; explicit addresses on automatic subnets are
/// refused; a MAC change moves the address; a later subnet addresses existing ports.
fn cli_and_addresses(database: Option<&str>) {
    let c = Controller::start_opts(&Opts {
        database,
        ..Opts::default()
    });
    pods(&c);
    let cli = |args: &[&str]| openstack_json(&c, DEMO, args);
    let n = cli(&["network", "create", "v6-net"]);
    let nid = n["id"].as_str().unwrap().to_string();
    let slaac = cli(&[
        "subnet",
        "create",
        "--network",
        "v6-net",
        "--ip-version",
        "6",
        "--ipv6-ra-mode",
        "slaac",
        "--ipv6-address-mode",
        "slaac",
        "--subnet-range",
        "2001:db8:1::/64",
        "s-slaac",
    ]);
    assert_eq!(slaac["ipv6_ra_mode"], "slaac", "{slaac}");
    assert_eq!(slaac["ipv6_address_mode"], "slaac");
    assert_eq!(slaac["ip_version"], 6);
    let stateless = cli(&[
        "subnet",
        "create",
        "--network",
        "v6-net",
        "--ip-version",
        "6",
        "--ipv6-ra-mode",
        "dhcpv6-stateless",
        "--ipv6-address-mode",
        "dhcpv6-stateless",
        "--subnet-range",
        "2001:db8:2::/64",
        "s-stateless",
    ]);
    assert_eq!(stateless["ipv6_address_mode"], "dhcpv6-stateless");
    let sn = cli(&["network", "create", "v6-stateful"]);
    let stateful = cli(&[
        "subnet",
        "create",
        "--network",
        "v6-stateful",
        "--ip-version",
        "6",
        "--ipv6-ra-mode",
        "dhcpv6-stateful",
        "--ipv6-address-mode",
        "dhcpv6-stateful",
        "--subnet-range",
        "2001:db8:3::/64",
        "--allocation-pool",
        "start=2001:db8:3::10,end=2001:db8:3::20",
        "s-stateful",
    ]);
    assert_eq!(stateful["ipv6_ra_mode"], "dhcpv6-stateful");
    // Only the address mode (the RAs come from elsewhere), as Neutron allows.
    let only_addr = cli(&[
        "subnet",
        "create",
        "--network",
        "v6-stateful",
        "--ip-version",
        "6",
        "--ipv6-address-mode",
        "slaac",
        "--subnet-range",
        "2001:db8:4::/64",
        "s-only-addr",
    ]);
    assert_eq!(only_addr["ipv6_ra_mode"], Value::Null, "{only_addr}");
    assert_eq!(only_addr["ipv6_address_mode"], "slaac");
    // Shown again (read back from the store) and null on IPv4 subnets.
    let shown = cli(&["subnet", "show", "s-slaac"]);
    assert_eq!(shown["ipv6_ra_mode"], "slaac");
    let v4 = cli(&[
        "subnet",
        "create",
        "--network",
        "v6-stateful",
        "--subnet-range",
        "10.9.0.0/24",
        "s-v4",
    ]);
    assert_eq!(v4["ipv6_ra_mode"], Value::Null);
    assert_eq!(v4["ipv6_address_mode"], Value::Null);
    // Filterable as any attribute.
    let l = ok(
        c.n(
            "GET",
            "/v2.0/subnets?ipv6_address_mode=dhcpv6-stateless&ipv6_address_mode=dhcpv6-stateful",
            Some(DEMO),
            None,
        ),
        "filter",
    );
    let mut names: Vec<&str> = l["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["s-stateful", "s-stateless"]);
    let l = ok(
        c.n("GET", "/v2.0/subnets?ipv6_ra_mode=slaac", Some(DEMO), None),
        "filter",
    );
    assert_eq!(l["subnets"].as_array().unwrap().len(), 1, "{l}");

    let (slaac_id, stateless_id) = (
        slaac["id"].as_str().unwrap().to_string(),
        stateless["id"].as_str().unwrap().to_string(),
    );
    // A port on the slaac+stateless network: its EUI-64 address on both (an IPv6-only network).
    let mac = "fa:16:3e:00:00:11";
    let p = cli(&[
        "port",
        "create",
        "--network",
        "v6-net",
        "--mac-address",
        mac,
        "p1",
    ]);
    let pid = p["id"].as_str().unwrap().to_string();
    let want = sorted(vec![
        pair(&slaac_id, &eui64("2001:db8:1::/64", mac)),
        pair(&stateless_id, &eui64("2001:db8:2::/64", mac)),
    ]);
    assert_eq!(ips(&port(&c, &pid)), want);
    // Naming only the subnet is fine (the EUI-64 address again), as is naming that address.
    let p2 = created(
        &c,
        DEMO,
        "port",
        json!({"network_id": nid, "mac_address": "fa:16:3e:00:00:22", "fixed_ips": [{"subnet_id": slaac_id}, {"ip_address": eui64("2001:db8:2::/64", "fa:16:3e:00:00:22")}]}),
    );
    assert_eq!(
        ips(&p2),
        sorted(vec![
            pair(&slaac_id, &eui64("2001:db8:1::/64", "fa:16:3e:00:00:22")),
            pair(
                &stateless_id,
                &eui64("2001:db8:2::/64", "fa:16:3e:00:00:22")
            ),
        ])
    );
    // Any other address there is Neutron's AllocationOnAutoAddressSubnet (400).
    let (status, b) = post(
        &c,
        DEMO,
        "port",
        json!({"network_id": nid, "fixed_ips": [{"subnet_id": slaac_id, "ip_address": "2001:db8:1::5"}]}),
    );
    assert_eq!(status, 400, "{b}");
    assert_eq!(b["NeutronError"]["type"], "InvalidInput");
    assert_eq!(
        b["NeutronError"]["message"],
        format!("IPv6 address 2001:db8:1::5 cannot be directly assigned to a port on subnet {slaac_id} as the subnet is configured for automatic addresses")
    );
    let (ok_cli, _, err) = openstack(
        &c,
        DEMO,
        &[
            "port",
            "create",
            "--network",
            "v6-net",
            "--fixed-ip",
            "ip-address=2001:db8:2::9",
            "p-bad",
        ],
    );
    assert!(
        !ok_cli && err.contains("cannot be directly assigned"),
        "{err}"
    );
    // The same on update.
    let (status, b) = c.n(
        "PUT",
        &format!("/v2.0/ports/{pid}"),
        Some(DEMO),
        Some(&json!({"port": {"fixed_ips": [{"ip_address": "2001:db8:1::77"}]}})),
    );
    assert_eq!(status, 400, "{b}");
    assert_eq!(
        ips(&port(&c, &pid)),
        want,
        "unchanged by the refused update"
    );

    // A MAC change (admin, unbound port) moves the EUI-64 addresses.
    let mac2 = "fa:16:3e:ab:cd:ef";
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/ports/{pid}"),
            Some(ADMIN),
            Some(&json!({"port": {"mac_address": mac2}})),
        ),
        "mac update",
    );
    assert_eq!(
        ips(&port(&c, &pid)),
        sorted(vec![
            pair(&slaac_id, &eui64("2001:db8:1::/64", mac2)),
            pair(&stateless_id, &eui64("2001:db8:2::/64", mac2)),
        ])
    );
    let shown = cli(&["port", "show", &pid]);
    let shown_ips = serde_json::to_string(&shown["fixed_ips"]).unwrap();
    assert!(
        shown_ips.contains(&eui64("2001:db8:1::/64", mac2)),
        "{shown_ips}"
    );

    // Stateful (and no-mode) subnets keep pool allocation; a dual-stack port gets one address
    // of each version without asking, plus its EUI-64 one on the address-mode-only subnet.
    let sp = cli(&[
        "port",
        "create",
        "--network",
        "v6-stateful",
        "--mac-address",
        "fa:16:3e:00:00:33",
        "p-stateful",
    ]);
    let got = ips(&port(&c, sp["id"].as_str().unwrap()));
    assert_eq!(got.len(), 3, "{got:?}");
    let by = |sid: &Value| {
        got.iter()
            .find(|(s, _)| s == sid.as_str().unwrap())
            .map(|(_, ip)| ip.clone())
            .unwrap_or_else(|| panic!("no address on {sid}: {got:?}"))
    };
    assert_eq!(
        by(&stateful["id"]),
        "2001:db8:3::10",
        "the pool's first address"
    );
    assert_eq!(by(&v4["id"]), "10.9.0.2");
    assert_eq!(
        by(&only_addr["id"]),
        eui64("2001:db8:4::/64", "fa:16:3e:00:00:33")
    );
    let _ = sn;

    // A subnet created later on a network with ports: every port gets its EUI-64 address.
    let later = cli(&["network", "create", "later"]);
    let later_id = later["id"].as_str().unwrap().to_string();
    let l4 = cli(&[
        "subnet",
        "create",
        "--network",
        "later",
        "--subnet-range",
        "10.8.0.0/24",
        "l4",
    ]);
    let lp1 = cli(&[
        "port",
        "create",
        "--network",
        "later",
        "--mac-address",
        "fa:16:3e:10:00:01",
        "lp1",
    ]);
    let lp2 = cli(&[
        "port",
        "create",
        "--network",
        "later",
        "--mac-address",
        "fa:16:3e:10:00:02",
        "lp2",
    ]);
    // ... all or nothing: a slaac subnet whose gateway is lp2's EUI-64 address is 409, and
    // neither port nor the network changed.
    let clash = eui64("2001:db8:9::/64", "fa:16:3e:10:00:02");
    let (status, b) = post(
        &c,
        DEMO,
        "subnet",
        json!({"network_id": later_id, "ip_version": 6, "cidr": "2001:db8:9::/64", "gateway_ip": clash, "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}),
    );
    assert_eq!(status, 409, "{b}");
    assert!(
        b["NeutronError"]["message"]
            .as_str()
            .unwrap()
            .contains(&clash),
        "{b}"
    );
    let subs = ok(
        c.n(
            "GET",
            &format!("/v2.0/subnets?network_id={later_id}"),
            Some(DEMO),
            None,
        ),
        "list",
    );
    assert_eq!(
        subs["subnets"].as_array().unwrap().len(),
        1,
        "no half-made subnet: {subs}"
    );
    for p in [&lp1, &lp2] {
        assert_eq!(ips(&port(&c, p["id"].as_str().unwrap())).len(), 1);
    }
    let l6 = cli(&[
        "subnet",
        "create",
        "--network",
        "later",
        "--ip-version",
        "6",
        "--ipv6-ra-mode",
        "slaac",
        "--ipv6-address-mode",
        "slaac",
        "--subnet-range",
        "2001:db8:8::/64",
        "l6",
    ]);
    for (p, m) in [(&lp1, "fa:16:3e:10:00:01"), (&lp2, "fa:16:3e:10:00:02")] {
        let got = ips(&port(&c, p["id"].as_str().unwrap()));
        assert_eq!(
            got,
            sorted(vec![
                pair(l4["id"].as_str().unwrap(), &ips(p)[0].1),
                pair(l6["id"].as_str().unwrap(), &eui64("2001:db8:8::/64", m)),
            ])
        );
    }
    // Deleting the slaac subnet takes the EUI-64 addresses with it (Neutron does), the
    // ports keep their IPv4 address.
    let (ok_cli, _, err) = openstack(&c, DEMO, &["subnet", "delete", "l6"]);
    assert!(ok_cli, "{err}");
    for p in [&lp1, &lp2] {
        assert_eq!(ips(&port(&c, p["id"].as_str().unwrap())), ips(p));
    }
    assert!(!c.log_has_5xx());
}

#[test]
fn cli_slaac_stateless_stateful_and_eui64_sqlite() {
    cli_and_addresses(None);
}

#[test]
fn cli_slaac_stateless_stateful_and_eui64_postgres() {
    let db = PgDb::create();
    cli_and_addresses(Some(&db.url));
}

fn assert_400(r: (u16, Value), msg: &str) {
    assert_eq!(r.0, 400, "{msg}: {}", r.1);
    assert_eq!(r.1["NeutronError"]["type"], "InvalidInput", "{}", r.1);
    assert_eq!(r.1["NeutronError"]["message"], msg, "{}", r.1);
}

/// Each of Neutron's rules, with its status and message.
#[test]
fn validation_rules_as_neutron() {
    let c = Controller::start();
    pods(&c);
    let nid = net(&c, DEMO, "rules");
    let sub = |extra: Value| {
        let mut b = json!({"network_id": nid});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        post(&c, DEMO, "subnet", b)
    };
    assert_400(
        sub(json!({"ip_version": 4, "cidr": "10.1.0.0/24", "ipv6_ra_mode": "slaac"})),
        "Invalid input for operation: ipv6_ra_mode is not valid when ip_version is 4.",
    );
    assert_400(
        sub(
            json!({"ip_version": 4, "cidr": "10.1.0.0/24", "ipv6_address_mode": "dhcpv6-stateful"}),
        ),
        "Invalid input for operation: ipv6_address_mode is not valid when ip_version is 4.",
    );
    assert_400(
        sub(json!({"ip_version": 6, "cidr": "2001:db8::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "dhcpv6-stateful"})),
        "Invalid input for operation: ipv6_ra_mode set to 'slaac' with ipv6_address_mode set to 'dhcpv6-stateful' is not valid. If both attributes are set, they must be the same value.",
    );
    assert_400(
        sub(json!({"ip_version": 6, "cidr": "2001:db8::/64", "ipv6_ra_mode": "slaac", "enable_dhcp": false})),
        "Invalid input for operation: ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False.",
    );
    assert_400(
        sub(json!({"ip_version": 6, "cidr": "2001:db8::/80", "ipv6_address_mode": "dhcpv6-stateless"})),
        "Invalid input for operation: Invalid CIDR 2001:db8::/80 for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64.",
    );
    assert_400(
        sub(json!({"ip_version": 6, "cidr": "2001:db8::/64", "ipv6_ra_mode": "SLAAC"})),
        "Invalid input for ipv6_ra_mode. Reason: 'SLAAC' is not in ['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac'].",
    );
    let (status, _) =
        sub(json!({"ip_version": 6, "cidr": "2001:db8::/64", "ipv6_address_mode": 6}));
    assert_eq!(status, 400);
    // Stateful needs no /64; null is unset.
    let s = ok(
        sub(
            json!({"ip_version": 6, "cidr": "2001:db8:0:1::/80", "ipv6_ra_mode": "dhcpv6-stateful", "ipv6_address_mode": null}),
        ),
        "stateful /80",
    );
    assert_eq!(s["subnet"]["ipv6_ra_mode"], "dhcpv6-stateful");
    assert_eq!(s["subnet"]["ipv6_address_mode"], Value::Null);
    let s = ok(
        sub(json!({"ip_version": 6, "cidr": "2001:db8::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"})),
        "slaac",
    )["subnet"]
        .clone();
    let sid = s["id"].as_str().unwrap();
    // Immutable, as Neutron (allow_put False), and DHCP stays on while a mode is set.
    for (k, v) in [
        ("ipv6_ra_mode", json!("slaac")),
        ("ipv6_address_mode", json!(null)),
    ] {
        let (status, b) = c.n(
            "PUT",
            &format!("/v2.0/subnets/{sid}"),
            Some(DEMO),
            Some(&json!({"subnet": {k: v}})),
        );
        assert_eq!(status, 400, "{b}");
        assert_eq!(
            b["NeutronError"]["message"],
            format!("Cannot update read-only attribute {k}")
        );
    }
    assert_400(
        c.n(
            "PUT",
            &format!("/v2.0/subnets/{sid}"),
            Some(DEMO),
            Some(&json!({"subnet": {"enable_dhcp": false}})),
        ),
        "Invalid input for operation: Cannot disable enable_dhcp with ipv6 attributes set.",
    );
    ok(
        c.n(
            "PUT",
            &format!("/v2.0/subnets/{sid}"),
            Some(DEMO),
            Some(&json!({"subnet": {"name": "renamed"}})),
        ),
        "other attributes still change",
    );
    // From a subnet pool: fine with a /64, refused when the prefix it would get is not.
    let pool = created(
        &c,
        DEMO,
        "subnetpool",
        json!({"name": "v6pool", "prefixes": ["2001:db8:100::/48"], "default_prefixlen": 64}),
    );
    let pid = pool["id"].as_str().unwrap();
    let n2 = net(&c, DEMO, "pooled");
    let s = created(
        &c,
        DEMO,
        "subnet",
        json!({"network_id": n2, "ip_version": 6, "subnetpool_id": pid, "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}),
    );
    assert_eq!(s["cidr"], "2001:db8:100::/64");
    assert_eq!(s["ipv6_address_mode"], "slaac");
    assert_400(
        post(&c, DEMO, "subnet", json!({"network_id": n2, "ip_version": 6, "subnetpool_id": pid, "prefixlen": 80, "ipv6_address_mode": "slaac"})),
        "Invalid input for operation: Invalid CIDR /80 for IPv6 address mode. OpenStack uses the EUI-64 address format, which requires the prefix to be /64.",
    );
    assert!(!c.log_has_5xx());
}

/// Another project's member can neither see nor change DEMO's IPv6 subnet, nor address
/// ports on it; DEMO can.
#[test]
fn another_projects_member_cannot_touch_a_v6_subnet() {
    let c = Controller::start();
    pods(&c);
    let nid = net(&c, DEMO, "mine");
    let s = created(
        &c,
        DEMO,
        "subnet",
        json!({"network_id": nid, "ip_version": 6, "cidr": "2001:db8:5::/64", "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}),
    );
    let sid = s["id"].as_str().unwrap();
    let path = format!("/v2.0/subnets/{sid}");
    assert_eq!(c.n("GET", &path, Some(OTHER), None).0, 404);
    let l = ok(
        c.n("GET", "/v2.0/subnets?ipv6_ra_mode=slaac", Some(OTHER), None),
        "list",
    );
    assert_eq!(l["subnets"], json!([]), "{l}");
    assert_eq!(
        c.n(
            "PUT",
            &path,
            Some(OTHER),
            Some(&json!({"subnet": {"name": "x"}}))
        )
        .0,
        404
    );
    assert_eq!(c.n("DELETE", &path, Some(OTHER), None).0, 404);
    // Neither a subnet nor a port on DEMO's network, as itself or naming DEMO's project.
    let (status, b) = post(
        &c,
        OTHER,
        "subnet",
        json!({"network_id": nid, "ip_version": 6, "cidr": "2001:db8:6::/64", "ipv6_address_mode": "slaac"}),
    );
    assert!(status == 404 || status == 403, "{status} {b}");
    let (status, b) = post(
        &c,
        OTHER,
        "subnet",
        json!({"network_id": nid, "project_id": "demo", "ip_version": 6, "cidr": "2001:db8:6::/64", "ipv6_address_mode": "slaac"}),
    );
    assert!(status == 404 || status == 403, "{status} {b}");
    let (status, b) = post(
        &c,
        OTHER,
        "port",
        json!({"network_id": nid, "fixed_ips": [{"subnet_id": sid}]}),
    );
    assert!(status == 404 || status == 403, "{status} {b}");
    // The subnet is as it was, and DEMO still owns everything on it.
    let shown = ok(c.n("GET", &path, Some(DEMO), None), "show")["subnet"].clone();
    assert_eq!(shown["name"], s["name"]);
    assert_eq!(shown["revision_number"], s["revision_number"]);
    let p = created(
        &c,
        DEMO,
        "port",
        json!({"network_id": nid, "mac_address": "fa:16:3e:55:00:01"}),
    );
    assert_eq!(
        ips(&p),
        vec![pair(sid, &eui64("2001:db8:5::/64", "fa:16:3e:55:00:01"))]
    );
    let pp = format!("/v2.0/ports/{}", p["id"].as_str().unwrap());
    assert_eq!(c.n("GET", &pp, Some(OTHER), None).0, 404);
    assert_eq!(
        c.n(
            "PUT",
            &pp,
            Some(OTHER),
            Some(&json!({"port": {"fixed_ips": [{"subnet_id": sid}]}}))
        )
        .0,
        404
    );
}

/// A router's gateway on an external network with an IPv4 and an IPv6 subnet gets one fixed
/// IP on each (Neutron does); a floating IP stays IPv4.
fn dual_stack_gateway(database: Option<&str>) {
    let c = Controller::start_opts(&Opts {
        database,
        ..Opts::default()
    });
    pods(&c);
    let ext = ext_net(&c);
    let v6 = created(
        &c,
        ADMIN,
        "subnet",
        json!({"network_id": ext, "ip_version": 6, "cidr": "2001:db8:ee::/64", "name": "ext-v6"}),
    );
    let r = created(
        &c,
        DEMO,
        "router",
        json!({"name": "r", "external_gateway_info": {"network_id": ext}}),
    );
    let rid = r["id"].as_str().unwrap();
    let gw = r["external_gateway_info"]["external_fixed_ips"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(gw.len(), 2, "{r}");
    let v6_ip = gw
        .iter()
        .find(|f| f["subnet_id"] == v6["id"])
        .unwrap_or_else(|| panic!("no IPv6 gateway address: {r}"));
    // From the pools (a /64 is drawn at random), not the subnet's gateway.
    let a: std::net::Ipv6Addr = v6_ip["ip_address"].as_str().unwrap().parse().unwrap();
    assert_eq!(a.segments()[..4], [0x2001, 0xdb8, 0xee, 0], "{r}");
    assert_ne!(a.to_string(), "2001:db8:ee::1", "{r}");
    assert!(gw
        .iter()
        .any(|f| f["ip_address"].as_str().unwrap().starts_with("163.3.124.")));
    let shown = ok(
        c.n("GET", &format!("/v2.0/routers/{rid}"), Some(DEMO), None),
        "router",
    )["router"]
        .clone();
    assert_eq!(
        shown["external_gateway_info"]["external_fixed_ips"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let f = created(&c, DEMO, "floatingip", json!({"floating_network_id": ext}));
    assert!(
        f["floating_ip_address"]
            .as_str()
            .unwrap()
            .starts_with("163.3.124."),
        "{f}"
    );
    let fp = ok(
        c.n(
            "GET",
            &format!("/v2.0/ports?device_id={}", f["id"].as_str().unwrap()),
            Some(ADMIN),
            None,
        ),
        "fip port",
    );
    assert_eq!(
        ips(&fp["ports"][0]).len(),
        1,
        "a floating IP's port is IPv4 only: {fp}"
    );
    assert!(!c.log_has_5xx());
}

#[test]
fn dual_stack_gateway_port_sqlite() {
    dual_stack_gateway(None);
}

#[test]
fn dual_stack_gateway_port_postgres() {
    let db = PgDb::create();
    dual_stack_gateway(Some(&db.url));
}

fn print_config(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crosspod-controller"));
    cmd.arg("--print-config").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CROSSPOD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run crosspod-controller");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `--bridge-cidr-v6`: default fd64::/48, `none` disables it, env and TOML as other flags,
/// refused when not IPv6, longer than /64, or smaller (in /64s) than --bridge-cidr (in /24s).
#[test]
fn bridge_cidr_v6_flag() {
    let get = |args: &[&str], env: &[(&str, &str)]| -> String {
        let (ok, out, err) = print_config(args, env);
        assert!(ok, "{args:?} {env:?}: {err}");
        let t: toml::Table = toml::from_str(&out).unwrap();
        t["bridge-cidr-v6"].as_str().unwrap().to_string()
    };
    assert_eq!(get(&[], &[]), "fd64::/48");
    assert_eq!(get(&["--bridge-cidr-v6", "none"], &[]), "none");
    assert_eq!(
        get(&[], &[("CROSSPOD_BRIDGE_CIDR_V6", "fd00:1::/40")]),
        "fd00:1::/40"
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        "bridge-cidr-v6 = \"fd00:2::/48\"\nbridge-cidr = \"100.64.0.0/16\"\n",
    )
    .unwrap();
    assert_eq!(get(&["--config", f.to_str().unwrap()], &[]), "fd00:2::/48");
    // Exactly enough: a /16 has 256 /24s, a /56 256 /64s.
    assert_eq!(
        get(
            &[
                "--bridge-cidr",
                "100.64.0.0/16",
                "--bridge-cidr-v6",
                "fd00::/56"
            ],
            &[]
        ),
        "fd00::/56"
    );
    for (args, needle) in [
        (
            vec!["--bridge-cidr-v6", "10.0.0.0/8"],
            "is not an IPv6 prefix",
        ),
        (vec!["--bridge-cidr-v6", "fd00::/65"], "longer than /64"),
        (
            vec!["--bridge-cidr-v6", "fd00::/56"],
            "--bridge-cidr 100.0.0.0/9",
        ),
        (
            vec![
                "--bridge-cidr",
                "100.64.0.0/16",
                "--bridge-cidr-v6",
                "fd00::/57",
            ],
            "fewer than the 2^8 /24s",
        ),
    ] {
        let (ok, _, err) = print_config(&args, &[]);
        assert!(!ok, "{args:?} accepted");
        assert!(
            err.contains("bridge-cidr-v6") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    // The controller itself refuses to start with it.
    let early = Controller::try_start(&Opts {
        extra: &["--bridge-cidr-v6", "fd00::/60"],
        ..Opts::default()
    });
    let Err(e) = early else {
        panic!("started with a too small --bridge-cidr-v6")
    };
    assert!(e.log.join("\n").contains("--bridge-cidr"), "{:?}", e.log);
}
