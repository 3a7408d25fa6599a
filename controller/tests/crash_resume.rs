//! A controller killed in the middle of its work resumes it on start (issue 5). The real
//! binary on one SQLite file kept in a temp dir of its own, so the file outlives every process:
//! - SIGKILL while a router job is RUNNING: the next process finishes the same job once the
//!   nodes report, and leaves the published states as they were (nothing re-allocated, no
//!   revision going backwards);
//! - the failpoint `realize:allocate=2` aborts the process half-way through a router's
//!   allocations: the next process finishes them, and the nodes end with the state a run
//!   without any crash gives (no duplicate bridge network);
//! - `realize:publish=1` aborts after the allocations, before publishing: the next process
//!   publishes.
//!
//! The agents' part is played over HTTP, as in `l3.rs`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::guide::{agent, desired, ext_net, net_subnet, ok, pods, register, vm_port};
use common::{Controller, Opts, ADMIN, DEMO};
use serde_json::{json, Value};

const AGENT_TOKEN_LINE: &str = "agenttok service agent";
const SIGKILL: i32 = 9;
const SIGABRT: i32 = 6;

/// An SQLite file in a temp dir of its own, so it outlives the controllers that use it.
struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
    url: String,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().expect("temp dir for the database");
        let path = dir.path().join("controller.db");
        let url = format!("sqlite://{}", path.display());
        Db {
            _dir: dir,
            path,
            url,
        }
    }
}

fn opts<'a>(db: &'a Db, env: &'a [(&'a str, &'a str)]) -> Opts<'a> {
    Opts {
        database: Some(&db.url),
        env,
        tokens: &[AGENT_TOKEN_LINE],
        ..Opts::default()
    }
}

/// A controller on `db`, armed with `failpoints` if given.
fn start(db: &Db, failpoints: Option<&str>) -> Controller {
    let env: Vec<(&str, &str)> = failpoints
        .map(|f| ("CROSSPOD_FAILPOINTS", f))
        .into_iter()
        .collect();
    Controller::start_opts(&opts(db, &env))
}

fn log_tail(c: &Controller) -> String {
    let log = c.log.lock().unwrap();
    log.iter()
        .skip(log.len().saturating_sub(30))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// One request that does not panic when the controller is gone: `Err` when nothing answered.
fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\nX-Auth-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{method} {path}: write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("{method} {path}: read: {e}"))?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no answer ({} bytes)", buf.len()))?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line in {head:?}"))?;
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "chunked answers are not expected from the controller: {head}"
    );
    let raw = &buf[end + 4..];
    let v = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into()))
    };
    Ok((status, v))
}

/// What the guide builds before the router: pods, two nodes, net1 in RegionOne and net2 in
/// RegionTwo with a VM port each, the external network in RegionTwo.
struct Setup {
    subnet1: String,
    subnet2: String,
    ext: String,
}

fn setup(c: &Controller) -> Setup {
    pods(c);
    ok(
        register(c, &agent("node1"), "node1", "RegionOne", false),
        "register",
    );
    ok(
        register(c, &agent("node2"), "node2", "RegionTwo", true),
        "register",
    );
    let (net1, subnet1) = net_subnet(c, "net1", "10.0.1.0/24");
    let (net2, subnet2) = net_subnet(c, "net2", "10.0.2.0/24");
    vm_port(c, &net1, "node1");
    vm_port(c, &net2, "node2");
    let ext = ext_net(c);
    Setup {
        subnet1,
        subnet2,
        ext,
    }
}

/// The guide's router part, one request each, in the guide's order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    Router,
    Iface1,
    Iface2,
    Gateway,
}

/// Does `step`; `Err` only when the controller did not answer (it is gone). Any answer but
/// success fails the test.
fn do_step(
    c: &Controller,
    s: &Setup,
    router: &mut Option<String>,
    step: Step,
) -> Result<(), String> {
    let rid = || {
        router
            .clone()
            .expect("the router exists before its other steps")
    };
    let (status, body) = match step {
        Step::Router => try_request(
            c.neutron,
            "POST",
            "/v2.0/routers",
            DEMO,
            Some(&json!({"router": {"name": "router"}})),
        )?,
        Step::Iface1 | Step::Iface2 => {
            let subnet = if step == Step::Iface1 {
                &s.subnet1
            } else {
                &s.subnet2
            };
            try_request(
                c.neutron,
                "PUT",
                &format!("/v2.0/routers/{}/add_router_interface", rid()),
                DEMO,
                Some(&json!({"subnet_id": subnet})),
            )?
        }
        Step::Gateway => try_request(
            c.neutron,
            "PUT",
            &format!("/v2.0/routers/{}", rid()),
            DEMO,
            Some(&json!({"router": {"external_gateway_info": {"network_id": s.ext}}})),
        )?,
    };
    assert!(
        (200..300).contains(&status),
        "{step:?}: {status} {body}\nlog:\n{}",
        log_tail(c)
    );
    if step == Step::Router {
        *router = Some(body["router"]["id"].as_str().unwrap().to_string());
    }
    Ok(())
}

/// Does every step of the router part that the store does not show done yet (what an operator
/// does after a crash: look, then redo what is missing); returns the router id.
fn complete_router(c: &Controller, s: &Setup) -> String {
    let list = ok(
        c.n("GET", "/v2.0/routers?name=router", Some(DEMO), None),
        "routers",
    );
    let found = list["routers"].as_array().unwrap();
    assert!(found.len() <= 1, "one router named router: {list}");
    let mut router = found.first().map(|r| r["id"].as_str().unwrap().to_string());
    if router.is_none() {
        do_step(c, s, &mut router, Step::Router).unwrap();
    }
    let id = router.clone().unwrap();
    let ports = ok(c.n("GET", "/v2.0/ports", Some(DEMO), None), "ports");
    let on_subnet = |subnet: &str| {
        ports["ports"].as_array().unwrap().iter().any(|p| {
            p["device_id"] == json!(id)
                && p["device_owner"] == "network:router_interface"
                && p["fixed_ips"][0]["subnet_id"] == json!(subnet)
        })
    };
    for (step, subnet) in [(Step::Iface1, &s.subnet1), (Step::Iface2, &s.subnet2)] {
        if !on_subnet(subnet) {
            do_step(c, s, &mut router, step).unwrap();
        }
    }
    let r = ok(
        c.n("GET", &format!("/v2.0/routers/{id}"), Some(DEMO), None),
        "router",
    );
    if !r["router"]["external_gateway_info"].is_object() {
        do_step(c, s, &mut router, Step::Gateway).unwrap();
    }
    id
}

fn leg<'a>(inst: &'a Value, kind: &str) -> Option<&'a Value> {
    inst["legs"].as_array()?.iter().find(|l| l["kind"] == kind)
}

fn has_route(inst: &Value, dest: &str) -> bool {
    inst["routes"]
        .as_array()
        .is_some_and(|rs| rs.iter().any(|r| r["destination"] == dest))
}

/// Completed realization runs so far (from `/metrics`).
fn realize_runs(c: &Controller) -> u64 {
    metric_sum(c, "crosspod_controller_realize_runs_total{")
}

/// The sum of every series of a counter (its name and `{`) in the controller's metrics.
fn metric_sum(c: &Controller, series: &str) -> u64 {
    let (s, body) = common::request_raw(c.tricircle, "GET", "/metrics", None, None, &[]);
    assert_eq!(s, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until the store is caught up: whatever it held is allocated and published. Runs
/// are awaited until three in a row made no allocation or release (allocations chain — a
/// network's pod-local tag, then its DHCP server's sticky placement on a node — and on a
/// loaded machine a chain can outlast any fixed number of runs).
fn quiesce(c: &Controller) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let allocations = metric_sum(c, "crosspod_controller_allocations_total{");
        let target = realize_runs(c) + 3;
        while realize_runs(c) < target {
            assert!(
                Instant::now() < deadline,
                "the realizer did not settle in 30 s; log:\n{}",
                log_tail(c)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if metric_sum(c, "crosspod_controller_allocations_total{") == allocations {
            return;
        }
    }
}

/// The published (revision, state) of both nodes once they show the whole router part: an
/// instance per pod with its bridge leg, the cross-pod routes, the gateway in RegionTwo.
fn settled(c: &Controller, router: &str) -> [(u64, Value); 2] {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d1 = desired(c, "node1");
        let d2 = desired(c, "node2");
        let i1 = &d1["state"]["routers"][router];
        let i2 = &d2["state"]["routers"][router];
        let done = leg(i1, "bridge").is_some()
            && leg(i2, "bridge").is_some()
            && leg(i2, "gateway").is_some()
            && has_route(i1, "10.0.2.0/24")
            && has_route(i1, "0.0.0.0/0")
            && has_route(i2, "10.0.1.0/24");
        if done {
            break;
        }
        if Instant::now() >= deadline {
            let r = c.n("GET", &format!("/v2.0/routers/{router}"), Some(ADMIN), None);
            let ports = c.n("GET", "/v2.0/ports", Some(ADMIN), None);
            panic!(
                "the router part never reached the nodes:\n{d1}\n{d2}\nrouter: {r:?}\nports: {ports:?}\nlog:\n{}",
                log_tail(c)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    quiesce(c);
    ["node1", "node2"].map(|n| {
        let d = desired(c, n);
        (d["revision"].as_u64().unwrap(), d["state"].clone())
    })
}

/// Every network, subnet and port an admin sees: (id, name, fixed IPs, MAC, owner), sorted.
fn inventory(c: &Controller) -> Vec<Value> {
    let mut out = Vec::new();
    for (path, key) in [
        ("/v2.0/networks", "networks"),
        ("/v2.0/subnets", "subnets"),
        ("/v2.0/ports", "ports"),
    ] {
        let v = ok(c.n("GET", path, Some(ADMIN), None), path);
        for o in v[key].as_array().unwrap() {
            out.push(json!([
                key,
                o["id"],
                o["name"],
                o["cidr"],
                o["fixed_ips"],
                o["mac_address"],
                o["device_owner"],
                o["device_id"]
            ]));
        }
    }
    out.sort_by_key(|v| v.to_string());
    out
}

/// Names for the ids and MACs in a node state that two runs of the same steps pick
/// differently (UUIDs, random port MACs, which every leg uses, interface names derived from
/// ids): each
/// becomes the name of what it is. Longest first, so an id goes before its 11-character
/// prefix (interface names).
fn labels(c: &Controller) -> Vec<(String, String)> {
    let mut names = BTreeMap::new();
    let list = |path: &str, key: &str| -> Vec<Value> {
        ok(c.n("GET", path, Some(ADMIN), None), path)[key]
            .as_array()
            .unwrap()
            .clone()
    };
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    let mut net_name = BTreeMap::new();
    for n in list("/v2.0/networks", "networks") {
        let name = n["name"].as_str().unwrap().to_string();
        net_name.insert(id(&n), name.clone());
        names.insert(id(&n), format!("net:{name}"));
    }
    let subnets = list("/v2.0/subnets", "subnets");
    for s in &subnets {
        names.insert(id(s), format!("subnet:{}", s["name"].as_str().unwrap()));
    }
    for r in list("/v2.0/routers", "routers") {
        let (rid, label) = (id(&r), format!("router:{}", r["name"].as_str().unwrap()));
        names.insert(rid, label);
    }
    for p in list("/v2.0/ports", "ports") {
        let label = format!(
            "{}:{}:{}",
            p["device_owner"].as_str().unwrap(),
            net_name[p["network_id"].as_str().unwrap()],
            p["name"].as_str().unwrap()
        );
        names.insert(id(&p), format!("port:{label}"));
        names.insert(
            p["mac_address"].as_str().unwrap().to_string(),
            format!("mac:{label}"),
        );
    }
    // Security groups (random ids, rules ordered by them) by project, name and content.
    let mut group_name = BTreeMap::new();
    for g in list("/v2.0/security-groups", "security_groups") {
        let label = format!(
            "{}:{}",
            g["project_id"].as_str().unwrap(),
            g["name"].as_str().unwrap()
        );
        group_name.insert(id(&g), label.clone());
        names.insert(id(&g), format!("sg:{label}"));
    }
    for r in list("/v2.0/security-group-rules", "security_group_rules") {
        let remote = r["remote_group_id"]
            .as_str()
            .map(|g| group_name[g].clone())
            .unwrap_or_default();
        let label = format!(
            "rule:{}:{}:{}:{}:{}:{}:{}:{}",
            group_name[r["security_group_id"].as_str().unwrap()],
            r["direction"],
            r["ethertype"],
            r["protocol"],
            r["port_range_min"],
            r["port_range_max"],
            r["remote_ip_prefix"],
            remote
        );
        names.insert(id(&r), label);
    }
    let prefixes: Vec<(String, String)> = names
        .iter()
        .filter(|(k, _)| k.len() == 36)
        .map(|(k, v)| (wire::names::ifname("", k), format!("<{v}>")))
        .collect();
    names.extend(prefixes);
    let mut out: Vec<(String, String)> = names.into_iter().collect();
    out.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    out
}

fn relabel_str(s: &str, names: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (id, label) in names {
        if out.contains(id.as_str()) {
            out = out.replace(id.as_str(), label);
        }
    }
    out
}

fn relabel(v: &Value, names: &[(String, String)]) -> Value {
    match v {
        Value::String(s) => Value::String(relabel_str(s, names)),
        Value::Array(a) => Value::Array(a.iter().map(|x| relabel(x, names)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| *k != "revision")
                .map(|(k, x)| (relabel_str(k, names), relabel(x, names)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Both nodes' states with ids and MACs named, for comparing two databases.
fn named_states(c: &Controller, states: &[(u64, Value); 2]) -> Vec<Value> {
    let names = labels(c);
    states
        .iter()
        .map(|(_, s)| {
            let mut v = relabel(s, &names);
            // Rules come ordered by their (random) ids: order them by their labels.
            for g in v["security_groups"]
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
            {
                if let Some(rules) = g["rules"].as_array_mut() {
                    rules.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                }
            }
            v
        })
        .collect()
}

/// The router's job (from `/v1.0/jobs`: its active job, else its latest in the log).
fn job(c: &Controller, router: &str) -> Value {
    let jobs = ok(c.t("GET", "/v1.0/jobs", Some(ADMIN), None), "jobs");
    jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["resource"]["router_id"] == json!(router))
        .cloned()
        .unwrap_or_else(|| panic!("no job for router {router}: {jobs}"))
}

/// Plays the agents: each node reports its published revision applied with the router
/// ready, until the router's job is SUCCESS; returns the job.
fn report_until_success(c: &Controller, router: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for n in ["node1", "node2"] {
            let rev = desired(c, n)["revision"].as_u64().unwrap();
            let report = json!({"node": n, "revision_applied": rev, "ports": [],
                "routers": [{"router_id": router, "state": "ready"}], "probes": [], "errors": []});
            let (s, b) = c.t(
                "PUT",
                &format!("/v1.0/agents/{n}/status"),
                Some(&agent(n)),
                Some(&report),
            );
            assert_eq!(s, 204, "status report of {n}: {b}");
        }
        let j = job(c, router);
        if j["status"] == "SUCCESS" {
            let r = ok(
                c.n("GET", &format!("/v2.0/routers/{router}"), Some(DEMO), None),
                "router",
            );
            assert_eq!(r["router"]["status"], "ACTIVE", "{r}");
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "the job never succeeded: {j}\nlog:\n{}",
            log_tail(c)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Bridge networks of project demo an admin sees.
fn bridge_networks(c: &Controller) -> Vec<Value> {
    let nets = ok(c.n("GET", "/v2.0/networks", Some(ADMIN), None), "networks");
    nets["networks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["name"].as_str().unwrap_or("").starts_with("bridge-net-"))
        .cloned()
        .collect()
}

fn assert_aborted(status: Option<ExitStatus>, what: &str, log: &[String]) {
    let status = status.unwrap_or_else(|| {
        panic!(
            "{what}: the controller did not exit; log:\n{}",
            log.join("\n")
        )
    });
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "{what}: expected an abort by the failpoint, got {status:?}; log:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("failpoint reached")),
        "{what}: the log does not say which failpoint fired:\n{}",
        log.join("\n")
    );
}

/// The router part on a fresh database without any crash: the states to compare with.
/// The control run in its own thread, joined when dropped: a failing test unwinds through it
/// and waits for the control run to stop its controller, instead of the process exiting with
/// that controller still running (it outlived every failed run before).
struct ControlRun(Option<std::thread::JoinHandle<Vec<Value>>>);

impl ControlRun {
    fn spawn() -> Self {
        ControlRun(Some(std::thread::spawn(control_run)))
    }

    fn join(mut self) -> Vec<Value> {
        self.0
            .take()
            .expect("joined once")
            .join()
            .expect("control run")
    }
}

impl Drop for ControlRun {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

fn control_run() -> Vec<Value> {
    let c = Controller::start_opts(&Opts {
        tokens: &[AGENT_TOKEN_LINE],
        ..Opts::default()
    });
    let s = setup(&c);
    quiesce(&c);
    let router = complete_router(&c, &s);
    let states = settled(&c, &router);
    named_states(&c, &states)
}

#[test]
fn a_controller_killed_while_a_job_runs_finishes_the_same_job_after_restart() {
    let db = Db::new();
    let mut first = start(&db, None);
    let s = setup(&first);
    let router = complete_router(&first, &s);
    let before = settled(&first, &router);
    // The nodes have not reported: the job waits for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let job_before = loop {
        let j = job(&first, &router);
        if j["status"] == "RUNNING" {
            break j;
        }
        assert_eq!(j["status"], "NEW", "{j}");
        assert!(Instant::now() < deadline, "the job never ran: {j}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let inv_before = inventory(&first);
    let status = first.kill9();
    assert_eq!(status.signal(), Some(SIGKILL), "{status:?}");
    drop(first);

    let second = start(&db, None);
    // Its first realization runs see the same intent: nothing to allocate, nothing to publish.
    quiesce(&second);
    let after = settled(&second, &router);
    for (n, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b.0, a.0, "node{}: the revision moved", n + 1);
        assert_eq!(b.1, a.1, "node{}: the published state changed", n + 1);
    }
    assert_eq!(
        inv_before,
        inventory(&second),
        "networks, subnets or ports changed: something was re-allocated"
    );
    let j = job(&second, &router);
    assert_eq!(j["id"], job_before["id"], "{j}");
    assert_eq!(j["status"], "RUNNING", "still waiting for the nodes: {j}");

    let done = report_until_success(&second, &router);
    assert_eq!(
        done["id"], job_before["id"],
        "the same job finished: {done}"
    );
    for (n, (was, _)) in before.iter().enumerate() {
        let rev = desired(&second, &format!("node{}", n + 1))["revision"]
            .as_u64()
            .unwrap();
        assert!(
            rev >= *was,
            "node{}: revision went back {was} -> {rev}",
            n + 1
        );
    }
    assert!(!second.log_has_5xx(), "{}", log_tail(&second));
}

/// The database after the setup (converged, published) and the router's creation and
/// interfaces played on a controller armed with `realize:allocate=2`, which aborts half-way
/// through the router's allocations (the first is the bridge network, the second a bridge IP).
/// The gateway is set after the restart, so the abort lands in the interfaces' allocations
/// (a crash between the gateway's two writes has its own test at the end).
fn crash_mid_allocation() -> (Db, Setup) {
    let db = Db::new();
    let first = start(&db, None);
    let s = setup(&first);
    quiesce(&first);
    drop(first);

    let mut armed = start(&db, Some("realize:allocate=2"));
    let mut router = None;
    let mut answered = Vec::new();
    let mut lost = String::new();
    for step in [Step::Router, Step::Iface1, Step::Iface2] {
        match do_step(&armed, &s, &mut router, step) {
            Ok(()) => answered.push(step),
            // The process aborted under the request: expected, the steps stop here.
            Err(e) => {
                lost = e;
                break;
            }
        }
    }
    // The second allocation needs an interface, so the router's creation was answered (the
    // interface's answer may be lost if a periodic run crashes before it is written).
    assert!(
        answered.starts_with(&[Step::Router]),
        "the controller died before the router was created: {answered:?} ({lost})\nlog:\n{}",
        armed.log.lock().unwrap().join("\n")
    );
    let status = armed.wait_exit(Duration::from_secs(30));
    let log = armed.log.lock().unwrap().clone();
    assert_aborted(status, "realize:allocate=2", &log);
    (db, s)
}

/// After the crash mid-allocation, a restart alone finishes the router's allocations: node1's
/// state holds the router instance with its bridge leg before any further request.
fn assert_allocations_finished(c: &Controller) -> String {
    quiesce(c);
    let list = ok(
        c.n("GET", "/v2.0/routers?name=router", Some(DEMO), None),
        "routers",
    );
    let router = list["routers"][0]["id"].as_str().unwrap().to_string();
    let d1 = desired(c, "node1");
    let i1 = &d1["state"]["routers"][&router];
    assert!(
        leg(i1, "bridge").is_some(),
        "the restart did not finish the bridge IP of node1's instance: {d1}\nlog:\n{}",
        log_tail(c)
    );
    router
}

/// The end of both crash tests: finish the router part, compare with a run that never
/// crashed, one bridge network, and the job runs to SUCCESS.
fn finish_and_compare(c: &Controller, s: &Setup, control: &[Value]) {
    let router = complete_router(c, s);
    let states = settled(c, &router);
    let named = named_states(c, &states);
    assert_eq!(
        named[0], control[0],
        "node1's state differs from the run without a crash"
    );
    assert_eq!(
        named[1], control[1],
        "node2's state differs from the run without a crash"
    );
    let bridges = bridge_networks(c);
    assert_eq!(bridges.len(), 1, "one bridge network: {bridges:?}");
    assert_eq!(bridges[0]["name"], "bridge-net-demo");
    report_until_success(c, &router);
    assert!(!c.log_has_5xx(), "{}", log_tail(c));
}

#[test]
fn a_controller_aborted_mid_allocation_finishes_the_allocations_on_restart() {
    let control = ControlRun::spawn();
    let (db, s) = crash_mid_allocation();
    let resumed = start(&db, None);
    assert_allocations_finished(&resumed);
    finish_and_compare(&resumed, &s, &control.join());
}

/// Reads what a dead controller left in the SQLite file: (bridge IP ports, node states).
fn left_in_db(db: &Db) -> (i64, Vec<(String, i64, String)>) {
    use sqlx::{Connection, Row};
    let url = format!("sqlite://{}", db.path.display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut conn = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("open the database file");
            let bridge_ips: i64 = sqlx::query(
                "SELECT count(*) AS n FROM ports WHERE device_owner = 'network:router_bridge'",
            )
            .fetch_one(&mut conn)
            .await
            .expect("count bridge IP ports")
            .get("n");
            let states =
                sqlx::query("SELECT node, revision, content FROM node_states ORDER BY node")
                    .fetch_all(&mut conn)
                    .await
                    .expect("read node states")
                    .iter()
                    .map(|r| (r.get("node"), r.get("revision"), r.get("content")))
                    .collect();
            conn.close().await.ok();
            (bridge_ips, states)
        })
}

#[test]
fn a_controller_aborted_after_allocating_publishes_on_restart() {
    let control = ControlRun::spawn();
    let (db, s) = crash_mid_allocation();
    let (ips_before, states_before) = left_in_db(&db);
    // The next process finishes the allocations at start, then aborts before publishing.
    let env = [("CROSSPOD_FAILPOINTS", "realize:publish=1")];
    let (status, log) = match Controller::try_start(&opts(&db, &env)) {
        Err(early) => (early.status, early.log),
        Ok(mut c) => {
            let status = c.wait_exit(Duration::from_secs(30));
            let log = c.log.lock().unwrap().clone();
            (status, log)
        }
    };
    assert_aborted(status, "realize:publish=1", &log);
    let (ips_after, states_after) = left_in_db(&db);
    assert!(
        ips_after > ips_before,
        "the aborted run allocated bridge IPs first ({ips_before} -> {ips_after})"
    );
    assert_eq!(states_before, states_after, "nothing was published");

    let resumed = start(&db, None);
    let router = assert_allocations_finished(&resumed);
    assert!(
        resumed
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("published a new desired state")),
        "the restart published"
    );
    let _ = router;
    finish_and_compare(&resumed, &s, &control.join());
}

/// Sets `router`'s gateway in the store as `PUT /v2.0/routers/{id}` does in its first write,
/// without the gateway port of its second: what a controller that dies between the two leaves.
fn gateway_row_without_port(db: &Db, router: &str, ext: &str) {
    use sqlx::Connection;
    let url = format!("sqlite://{}", db.path.display());
    let gateway = json!({"network_id": ext, "enable_snat": true, "requested_ips": []}).to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut conn = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("open the database file");
            let r = sqlx::query("UPDATE routers SET gateway = $1 WHERE id = $2")
                .bind(gateway)
                .bind(router.to_string())
                .execute(&mut conn)
                .await
                .expect("set the gateway column");
            assert_eq!(r.rows_affected(), 1);
            conn.close().await.ok();
        });
}

/// `PUT /v2.0/routers/{id}` with `external_gateway_info` writes the router row, then creates
/// the gateway port. A controller killed between the two leaves a router whose gateway the API
/// shows but that has no gateway port (reproduced by writing the row directly): the next
/// process's realizer creates the missing port and the gateway leg reaches the gateway pod.
#[test]
fn a_gateway_written_without_its_port_is_finished_on_restart() {
    let db = Db::new();
    let mut first = start(&db, None);
    let s = setup(&first);
    let mut router = None;
    for step in [Step::Router, Step::Iface1, Step::Iface2] {
        do_step(&first, &s, &mut router, step).unwrap();
    }
    let router = router.unwrap();
    quiesce(&first);
    first.kill9();
    drop(first);
    gateway_row_without_port(&db, &router, &s.ext);
    let resumed = start(&db, None);
    settled(&resumed, &router);
}

/// A controller killed between an interface's removal and the queueing of its router's job
/// (failpoint `api:interface_job`) leaves the job saying SUCCESS for a change the nodes have
/// not applied; the next process's full pass queues it again, and it succeeds only once the
/// agents report the new revision.
#[test]
fn a_job_lost_between_the_write_and_its_queueing_is_queued_again_on_restart() {
    let db = Db::new();
    let first = start(&db, None);
    let s = setup(&first);
    let mut router = None;
    for step in [Step::Router, Step::Iface1, Step::Iface2, Step::Gateway] {
        do_step(&first, &s, &mut router, step).unwrap();
    }
    let router = router.unwrap();
    let done = report_until_success(&first, &router);
    drop(first);

    let mut armed = start(&db, Some("api:interface_job"));
    let r = try_request(
        armed.neutron,
        "PUT",
        &format!("/v2.0/routers/{router}/remove_router_interface"),
        DEMO,
        Some(&json!({"subnet_id": s.subnet2})),
    );
    assert!(
        r.is_err(),
        "the controller answered instead of aborting: {r:?}"
    );
    let status = armed.wait_exit(Duration::from_secs(10));
    let log = armed.log.lock().unwrap().clone();
    assert_aborted(status, "api:interface_job", &log);
    drop(armed);

    let second = start(&db, None);
    quiesce(&second);
    let j = job(&second, &router);
    assert_ne!(
        j["status"],
        "SUCCESS",
        "the job must not claim a change the nodes have not applied: {j}\nlog:\n{}",
        log_tail(&second)
    );
    // The finished job stays in the log, as Tricircle's; the re-queued one is a new job.
    assert_ne!(j["id"], done["id"], "{j}");
    let logged = ok(
        second.t(
            "GET",
            &format!("/v1.0/jobs/{}", done["id"].as_str().unwrap()),
            Some(ADMIN),
            None,
        ),
        "the finished job",
    );
    assert_eq!(logged["job"]["status"], "SUCCESS", "{logged}");
    let d1 = desired(&second, "node1");
    assert!(
        !has_route(&d1["state"]["routers"][&router], "10.0.2.0/24"),
        "the interface's route is withdrawn: {d1}"
    );
    let j = report_until_success(&second, &router);
    assert_eq!(j["status"], "SUCCESS");
}
