//! The incremental realizer against a fresh read of the store, on random sequences of API
//! changes (real controller binary, SQLite): networks local and stretched, VM ports bound,
//! moved and deleted, routers with interfaces, gateways, routes, floating IPs associated and
//! moved, nodes registered late, deletions in every order. Every few steps `POST
//! /v1.0/resync` runs a full pass, which compares the picture patched from the change log with
//! a full re-read and the states planned incrementally with a full re-plan: any difference is
//! drift and fails the test, naming the seed and the steps so far.

mod common;

use common::{Controller, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

/// xorshift64*: a deterministic sequence per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }
}

#[derive(Clone)]
struct Net {
    id: String,
    subnet: String,
    cidr_third: u32,
    project: &'static str,
}

struct World {
    nets: Vec<Net>,
    ports: Vec<(String, &'static str)>,
    routers: Vec<(String, &'static str)>,
    attached: Vec<(String, String, u32)>,
    fips: Vec<String>,
    gateways: Vec<String>,
    ext: String,
    counter: u32,
    node3: bool,
    steps: Vec<String>,
}

fn token(project: &str) -> &'static str {
    if project == "demo" {
        DEMO
    } else {
        OTHER
    }
}

fn field(v: &Value, obj: &str) -> String {
    v[obj]["id"].as_str().unwrap_or_default().to_string()
}

fn setup(c: &Controller) -> World {
    for b in [
        json!({"pod": {"region_name": "CentralRegion"}}),
        json!({"pod": {"region_name": "RegionOne", "az_name": "az1"}}),
        json!({"pod": {"region_name": "RegionTwo", "az_name": "az2"}}),
    ] {
        assert_eq!(c.t("POST", "/v1.0/pods", Some(ADMIN), Some(&b)).0, 200);
    }
    for (node, pod, ext) in [("node1", "RegionOne", false), ("node2", "RegionTwo", true)] {
        register(c, node, pod, ext);
    }
    let (s, n) = c.n(
        "POST",
        "/v2.0/networks",
        Some(ADMIN),
        Some(
            &json!({"network": {"name": "ext-net", "router:external": true,
            "provider:network_type": "vlan", "provider:physical_network": "extern",
            "availability_zone_hints": ["RegionTwo"]}}),
        ),
    );
    assert_eq!(s, 201, "{n}");
    let ext = field(&n, "network");
    let (s, v) = c.n(
        "POST",
        "/v2.0/subnets",
        Some(ADMIN),
        Some(&json!({"subnet": {"network_id": ext, "ip_version": 4, "cidr": "163.3.124.0/24", "enable_dhcp": false}})),
    );
    assert_eq!(s, 201, "{v}");
    World {
        nets: Vec::new(),
        ports: Vec::new(),
        routers: Vec::new(),
        attached: Vec::new(),
        fips: Vec::new(),
        gateways: Vec::new(),
        ext,
        counter: 0,
        node3: false,
        steps: Vec::new(),
    }
}

fn register(c: &Controller, node: &str, pod: &str, ext: bool) {
    let (maps, ups) = if ext {
        (
            json!({"bridge": "br-vlan", "extern": "br-ext"}),
            json!(["bridge", "extern"]),
        )
    } else {
        (json!({"bridge": "br-vlan"}), json!(["bridge"]))
    };
    let (s, v) = c.t(
        "POST",
        "/v1.0/agents",
        Some(ADMIN),
        Some(&json!({"pod": pod, "node": node, "bridge_mappings": maps, "uplinks": ups})),
    );
    assert_eq!(s, 200, "{v}");
}

/// One random change; returns (what, status).
fn step(c: &Controller, w: &mut World, r: &mut Rng) -> (String, u16) {
    let project: &'static str = if r.below(3) == 0 { "other" } else { "demo" };
    let nodes: &[&str] = if w.node3 {
        &["node1", "node2", "node3"]
    } else {
        &["node1", "node2"]
    };
    match r.below(15) {
        0 | 1 => {
            w.counter += 1;
            let third = w.counter;
            let body = match r.below(3) {
                0 => json!({"network": {"name": format!("n{third}")}}),
                1 => json!({"network": {"name": format!("n{third}"),
                    "availability_zone_hints": [if r.below(2) == 0 { "RegionOne" } else { "RegionTwo" }]}}),
                _ => json!({"network": {"name": format!("n{third}"), "project_id": project,
                    "provider:network_type": "vlan", "provider:physical_network": "bridge"}}),
            };
            let tok = if body["network"]["project_id"].is_string() {
                ADMIN
            } else {
                token(project)
            };
            let (s, n) = c.n("POST", "/v2.0/networks", Some(tok), Some(&body));
            if s != 201 {
                return (format!("create network {body}"), s);
            }
            let id = field(&n, "network");
            let (s, sub) = c.n(
                "POST",
                "/v2.0/subnets",
                Some(token(project)),
                Some(&json!({"subnet": {"network_id": id, "ip_version": 4,
                    "cidr": format!("10.{third}.0.0/24")}})),
            );
            if s == 201 {
                w.nets.push(Net {
                    id: id.clone(),
                    subnet: field(&sub, "subnet"),
                    cidr_third: third,
                    project,
                });
            }
            (format!("create network {id} of {project} ({body})"), s)
        }
        2 | 3 => {
            let Some(n) = r.pick(&w.nets).cloned() else {
                return ("no network for a port".into(), 0);
            };
            let host = if r.below(4) == 0 {
                ""
            } else {
                nodes[r.below(nodes.len())]
            };
            let (s, p) = c.n(
                "POST",
                "/v2.0/ports",
                Some(ADMIN),
                Some(
                    &json!({"port": {"network_id": n.id, "project_id": n.project,
                    "device_owner": "compute:nova", "binding:host_id": host}}),
                ),
            );
            if s == 201 {
                w.ports.push((field(&p, "port"), n.project));
            }
            (format!("port on {} bound to {host:?}", n.id), s)
        }
        4 => {
            let Some((p, _)) = r.pick(&w.ports).cloned() else {
                return ("no port to move".into(), 0);
            };
            let host = nodes[r.below(nodes.len())];
            let (s, _) = c.n(
                "PUT",
                &format!("/v2.0/ports/{p}"),
                Some(ADMIN),
                Some(&json!({"port": {"binding:host_id": host}})),
            );
            (format!("move port {p} to {host}"), s)
        }
        5 => {
            if w.ports.is_empty() {
                return ("no port to delete".into(), 0);
            }
            let i = r.below(w.ports.len());
            let (p, _) = w.ports.remove(i);
            let (s, _) = c.n("DELETE", &format!("/v2.0/ports/{p}"), Some(ADMIN), None);
            (format!("delete port {p}"), s)
        }
        6 => {
            let (s, v) = c.n(
                "POST",
                "/v2.0/routers",
                Some(token(project)),
                Some(&json!({"router": {"name": "r"}})),
            );
            if s == 201 {
                w.routers.push((field(&v, "router"), project));
            }
            (format!("create router of {project}"), s)
        }
        7 | 8 => {
            let Some((rid, rp)) = r.pick(&w.routers).cloned() else {
                return ("no router for an interface".into(), 0);
            };
            let mine: Vec<Net> = w.nets.iter().filter(|n| n.project == rp).cloned().collect();
            let Some(n) = r.pick(&mine).cloned() else {
                return ("no subnet for an interface".into(), 0);
            };
            let (s, _) = c.n(
                "PUT",
                &format!("/v2.0/routers/{rid}/add_router_interface"),
                Some(token(rp)),
                Some(&json!({"subnet_id": n.subnet})),
            );
            if s == 200 {
                w.attached
                    .push((rid.clone(), n.subnet.clone(), n.cidr_third));
            }
            (format!("attach {} to {rid}", n.subnet), s)
        }
        9 => {
            if w.attached.is_empty() {
                return ("nothing attached".into(), 0);
            }
            let i = r.below(w.attached.len());
            let (rid, sub, _) = w.attached.remove(i);
            let rp = w
                .routers
                .iter()
                .find(|x| x.0 == rid)
                .map(|x| x.1)
                .unwrap_or("demo");
            let (s, _) = c.n(
                "PUT",
                &format!("/v2.0/routers/{rid}/remove_router_interface"),
                Some(token(rp)),
                Some(&json!({"subnet_id": sub})),
            );
            (format!("detach {sub} from {rid}"), s)
        }
        10 => {
            let Some((rid, rp)) = r.pick(&w.routers).cloned() else {
                return ("no router for a gateway".into(), 0);
            };
            let body = match r.below(3) {
                0 => json!({"router": {"external_gateway_info": {}}}),
                1 => {
                    let hops: Vec<&(String, String, u32)> =
                        w.attached.iter().filter(|a| a.0 == rid).collect();
                    match r.pick(&hops) {
                        Some(a) => {
                            json!({"router": {"routes": [{"destination": format!("192.168.{}.0/24", r.below(200)),
                            "nexthop": format!("10.{}.0.9", a.2)}]}})
                        }
                        None => json!({"router": {"routes": []}}),
                    }
                }
                _ => {
                    json!({"router": {"external_gateway_info": {"network_id": w.ext, "enable_snat": r.below(2) == 0}}})
                }
            };
            let (s, _) = c.n(
                "PUT",
                &format!("/v2.0/routers/{rid}"),
                Some(token(rp)),
                Some(&body),
            );
            if s == 200 {
                let gi = &body["router"]["external_gateway_info"];
                if gi.get("network_id").is_some() {
                    w.gateways.push(rid.clone());
                } else if gi.is_object() {
                    w.gateways.retain(|g| g != &rid);
                }
            }
            (format!("update router {rid}: {body}"), s)
        }
        11 => {
            // Mostly ports a router with a gateway serves (the others are refused).
            let served: Vec<(String, &'static str)> = w
                .ports
                .iter()
                .filter(|_| r.below(4) != 0)
                .filter(|(p, _)| port_served(c, w, p))
                .cloned()
                .collect();
            let Some((p, pp)) = r.pick(&served).or_else(|| r.pick(&w.ports)).cloned() else {
                return ("no port for a floating IP".into(), 0);
            };
            let (s, v) = c.n(
                "POST",
                "/v2.0/floatingips",
                Some(token(pp)),
                Some(&json!({"floatingip": {"floating_network_id": w.ext, "port_id": p}})),
            );
            if s == 201 {
                w.fips.push(field(&v, "floatingip"));
            }
            (
                format!("floating IP for {p}: {}", v["NeutronError"]["message"]),
                s,
            )
        }
        12 => {
            if w.fips.is_empty() {
                return ("no floating IP".into(), 0);
            }
            if r.below(2) == 0 {
                let f = r.pick(&w.fips).cloned().unwrap_or_default();
                let port = match r.pick(&w.ports) {
                    Some((p, _)) if r.below(2) == 0 => json!(p),
                    _ => Value::Null,
                };
                let (s, _) = c.n(
                    "PUT",
                    &format!("/v2.0/floatingips/{f}"),
                    Some(ADMIN),
                    Some(&json!({"floatingip": {"port_id": port}})),
                );
                return (format!("floating IP {f} to port {port}"), s);
            }
            let i = r.below(w.fips.len());
            let f = w.fips.remove(i);
            let (s, _) = c.n(
                "DELETE",
                &format!("/v2.0/floatingips/{f}"),
                Some(ADMIN),
                None,
            );
            (format!("delete floating IP {f}"), s)
        }
        13 => {
            if w.routers.is_empty() {
                return ("no router to delete".into(), 0);
            }
            let i = r.below(w.routers.len());
            let (rid, rp) = w.routers[i].clone();
            let (s, _) = c.n(
                "DELETE",
                &format!("/v2.0/routers/{rid}"),
                Some(token(rp)),
                None,
            );
            if s == 204 {
                w.routers.remove(i);
            }
            (format!("delete router {rid}"), s)
        }
        _ => {
            if !w.node3 {
                w.node3 = true;
                register(c, "node3", "RegionTwo", false);
                return ("register node3".into(), 200);
            }
            if w.nets.is_empty() {
                return ("no network to delete".into(), 0);
            }
            let i = r.below(w.nets.len());
            let n = w.nets[i].clone();
            let (s, _) = c.n(
                "DELETE",
                &format!("/v2.0/networks/{}", n.id),
                Some(ADMIN),
                None,
            );
            if s == 204 {
                w.nets.remove(i);
            }
            (format!("delete network {}", n.id), s)
        }
    }
}

/// Whether a port's subnet is attached to a router with a gateway.
fn port_served(c: &Controller, w: &World, port: &str) -> bool {
    let (s, p) = c.n("GET", &format!("/v2.0/ports/{port}"), Some(ADMIN), None);
    if s != 200 {
        return false;
    }
    let Some(sub) = p["port"]["fixed_ips"][0]["subnet_id"].as_str() else {
        return false;
    };
    w.attached
        .iter()
        .any(|(r, s, _)| s == sub && w.gateways.contains(r))
}

fn assert_no_drift(c: &Controller, seed: u64, w: &World) {
    let (s, r) = c.t("POST", "/v1.0/resync", Some(ADMIN), None);
    assert_eq!(s, 200, "{r}");
    if r["resync"]["drift"] != json!(false) {
        let log = c.log.lock().unwrap();
        let why: Vec<&String> = log.iter().filter(|l| l.contains("drift")).collect();
        panic!(
            "seed {seed}: the incremental picture drifted after:\n{}\n{why:?}",
            w.steps.join("\n")
        );
    }
}

fn run(seed: u64, steps: usize) {
    let c = Controller::start();
    let mut w = setup(&c);
    let mut r = Rng(seed);
    let mut accepted = 0;
    for i in 0..steps {
        let (what, status) = step(&c, &mut w, &mut r);
        assert!(status < 500, "seed {seed} step {i}: {what} -> {status}");
        if (200..300).contains(&status) {
            accepted += 1;
        }
        w.steps.push(format!("{i}: {what} -> {status}"));
        if i % 15 == 14 {
            assert_no_drift(&c, seed, &w);
        }
    }
    assert_no_drift(&c, seed, &w);
    if std::env::var("SHOW_STEPS").is_ok() {
        eprintln!("{}", w.steps.join("\n"));
    }
    assert!(
        accepted >= steps / 3,
        "seed {seed}: only {accepted} of {steps} changes were accepted; the test exercises too little:\n{}",
        w.steps.join("\n")
    );
    assert!(!c.log_has_5xx());
}

#[test]
fn random_changes_seed_1() {
    run(0x9E37_79B9_7F4A_7C15, 120);
}

#[test]
fn random_changes_seed_2() {
    run(0xD1B5_4A32_D192_ED03, 120);
}

#[test]
fn random_changes_seed_3() {
    run(0x2545_F491_4F6C_DD1D, 120);
}
