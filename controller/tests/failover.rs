//! Router failover (issue 20), controller half: nodes registered through the agent API with
//! a `local_ip`, status reports posted with `peers`/`fenced` as an agent sends them, and the
//! decision table — a node peers see down is lost and its router instance moves after the
//! hold; an agent gone while its peers see it up moves nothing; a partition (both sides see
//! each other down, nobody fenced) moves nothing; a fenced node is lost; a node back is not
//! moved back unless `--failback`. The placement API (admin only, two projects' members
//! refused), on SQLite and PostgreSQL, and two controllers on one PostgreSQL racing the same
//! decision: one move, one revision bump per node.

mod common;

use std::time::{Duration, Instant};

use common::guide::{agent, desired, ext_net, ok, pods};
use common::{Controller, Opts, PgDb, ADMIN, DEMO, OTHER};
use serde_json::{json, Value};

const NODES: [&str; 3] = ["fo-g0", "fo-g1", "fo-g2"];

/// The nodes' agent tokens (node-bound, as an agent's own).
const TOKENS: &[&str] = &[
    "agenttok-fo-g0 crosspod-agents agent fo-g0",
    "agenttok-fo-g1 crosspod-agents agent fo-g1",
    "agenttok-fo-g2 crosspod-agents agent fo-g2",
];

fn register(c: &Controller, node: &str, ip: &str) {
    let body = json!({"pod": "RegionTwo", "node": node, "local_ip": ip,
        "bridge_mappings": {"bridge": "br-vlan", "extern": "br-ext"},
        "uplinks": ["bridge", "extern"]});
    ok(
        c.t("POST", "/v1.0/agents", Some(&agent(node)), Some(&body)),
        "register",
    );
}

/// What an agent sends: its applied revision, its BFD view of `peers`, and `fenced`.
fn report(c: &Controller, node: &str, peers: &[(&str, bool)], fenced: bool) {
    let rev = desired(c, node)["revision"].as_u64().unwrap_or(0);
    let body = json!({"node": node, "revision_applied": rev,
        "peers": peers.iter().map(|(n, up)| json!({"node": n, "up": up})).collect::<Vec<_>>(),
        "fenced": fenced});
    let (s, v) = c.t(
        "PUT",
        &format!("/v1.0/agents/{node}/status"),
        Some(&agent(node)),
        Some(&body),
    );
    assert_eq!(s, 204, "report of {node}: {v}");
}

/// `node` reports (unfenced) every peer up but `down`.
fn sees_down(c: &Controller, node: &str, down: &str) {
    let peers: Vec<(&str, bool)> = others(node).into_iter().map(|n| (n, n != down)).collect();
    report(c, node, &peers, false);
}

/// Every node reports every other up.
fn all_up(c: &Controller) {
    for n in NODES {
        let peers: Vec<(&str, bool)> = NODES
            .iter()
            .filter(|p| **p != n)
            .map(|p| (*p, true))
            .collect();
        report(c, n, &peers, false);
    }
}

/// A gateway-only router pinned to RegionTwo (where ext-net lives); its id.
fn setup(c: &Controller) -> String {
    pods(c);
    for (k, n) in NODES.iter().enumerate() {
        register(c, n, &format!("192.168.77.{}", k + 1));
    }
    let ext = ext_net(c);
    let r = ok(
        c.n(
            "POST",
            "/v2.0/routers",
            Some(DEMO),
            Some(
                &json!({"router": {"name": "fo-r", "availability_zone_hints": ["az2"],
                "external_gateway_info": {"network_id": ext}}}),
            ),
        ),
        "router",
    );
    r["router"]["id"].as_str().unwrap().to_string()
}

fn placement(c: &Controller, router: &str) -> Value {
    let v = ok(
        c.t(
            "GET",
            &format!("/v1.0/routers/{router}/placement"),
            Some(ADMIN),
            None,
        ),
        "placement",
    );
    let inst = v["placement"]["instances"].as_array().unwrap().clone();
    assert_eq!(inst.len(), 1, "{v}");
    assert_eq!(inst[0]["pod"], "RegionTwo");
    inst[0].clone()
}

/// The nodes whose published state holds the router.
fn hosts(c: &Controller, router: &str) -> Vec<String> {
    NODES
        .iter()
        .filter(|n| desired(c, n)["state"]["routers"].get(router).is_some())
        .map(|n| n.to_string())
        .collect()
}

/// Waits until the router runs on `node` alone (state and placement agree).
fn wait_on(c: &Controller, router: &str, node: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let h = hosts(c, router);
        let p = placement(c, router);
        if h == [node] && p["node"] == node {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "router not moved to {node}: hosts {h:?}, placement {p}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stays on `node` for `d`.
fn stays_on(c: &Controller, router: &str, node: &str, d: Duration, why: &str) {
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        assert_eq!(hosts(c, router), [node], "{why}");
        assert_eq!(placement(c, router)["node"], node, "{why}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(c: &Controller, prefix: &str) -> f64 {
    let (s, body) = common::request_raw(c.tricircle, "GET", "/metrics", None, None, &[]);
    assert_eq!(s, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A controller on `db` holding `hold_ms` before it moves a lost node's instances.
fn on_postgres(db: &PgDb, hold_ms: &str) -> Controller {
    Controller::start_opts(&Opts {
        database: Some(&db.url),
        extra: &["--failover-hold-ms", hold_ms],
        tokens: TOKENS,
        ..Opts::default()
    })
}

fn others(n: &str) -> Vec<&'static str> {
    NODES.iter().copied().filter(|p| *p != n).collect()
}

fn decision_table(database: Option<&str>) {
    let c = Controller::start_opts(&Opts {
        database,
        extra: &["--failover-hold-ms", "1000"],
        tokens: TOKENS,
        ..Opts::default()
    });
    let router = setup(&c);
    all_up(&c);
    let p = placement(&c, &router);
    let first = p["node"].as_str().unwrap().to_string();
    let standbys: Vec<String> = p["standbys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(standbys.len(), 2, "{p}");
    assert_eq!(p["moved"], false, "{p}");
    assert_eq!(p["home"], first.as_str());
    assert_eq!(hosts(&c, &router), [first.as_str()]);
    // Every node keeps BFD sessions with the two others.
    let live = &desired(&c, &first)["state"]["liveness"];
    assert_eq!(live["interval_ms"], 500, "{live}");
    assert_eq!(live["multiplier"], 3);
    assert_eq!(live["peers"].as_object().unwrap().len(), 2, "{live}");

    // The placement is admin's: members of two projects are refused, whoever owns it.
    for tok in [DEMO, OTHER] {
        let (s, v) = c.t(
            "GET",
            &format!("/v1.0/routers/{router}/placement"),
            Some(tok),
            None,
        );
        assert_eq!(s, 403, "{v}");
        assert!(v["NeutronError"]["message"].is_string(), "{v}");
    }
    let (s, v) = c.t("GET", "/v1.0/routers/nope/placement", Some(ADMIN), None);
    assert_eq!(s, 404, "{v}");

    // Agent gone (it reports nothing more), its BFD still answering: nothing moves.
    for p in others(&first) {
        let peers: Vec<(&str, bool)> = others(p).into_iter().map(|n| (n, true)).collect();
        report(&c, p, &peers, false);
    }
    stays_on(
        &c,
        &router,
        &first,
        Duration::from_millis(1500),
        "agent gone, BFD up",
    );

    // Lost: both peers see it down (its own last report still says they are up). Not before
    // the hold; then the first standby takes the instance.
    let t0 = Instant::now();
    for p in others(&first) {
        sees_down(&c, p, &first);
    }
    stays_on(
        &c,
        &router,
        &first,
        Duration::from_millis(500),
        "inside the hold",
    );
    wait_on(&c, &router, &standbys[0], Duration::from_secs(10));
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "moved before the hold"
    );
    let p = placement(&c, &router);
    assert_eq!(p["moved"], true, "{p}");
    assert!(p["moved_at"].is_string(), "{p}");
    assert_eq!(p["home"], first.as_str());
    assert_eq!(
        p["standbys"],
        json!([standbys[1]]),
        "a lost node is no standby: {p}"
    );
    assert_eq!(metric(&c, "crosspod_controller_failovers_total{"), 1.0);
    assert_eq!(
        metric(&c, "crosspod_controller_failover_duration_seconds_count"),
        1.0
    );

    // Back: a peer sees it up; the instance stays where it moved (no failback by default).
    all_up(&c);
    stays_on(
        &c,
        &router,
        &standbys[0],
        Duration::from_millis(1500),
        "no failback",
    );
    let p = placement(&c, &router);
    assert_eq!(
        p["standbys"].as_array().unwrap().len(),
        2,
        "back as a standby: {p}"
    );

    // Partition: the active node sees both peers down, they see it down, nobody fenced.
    let active = standbys[0].clone();
    for p in others(&active) {
        sees_down(&c, p, &active);
    }
    let cut: Vec<(&str, bool)> = others(&active).into_iter().map(|n| (n, false)).collect();
    report(&c, &active, &cut, false);
    stays_on(
        &c,
        &router,
        &active,
        Duration::from_millis(2000),
        "a partition moves nothing",
    );
    assert!(metric(&c, "crosspod_controller_partitions_seen_total{") >= 1.0);

    // The active node fences itself: it is lost, the next candidate takes over.
    report(&c, &active, &cut, true);
    let next = placement(&c, &router)["standbys"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(next, active);
    wait_on(&c, &router, &next, Duration::from_secs(10));
    assert_eq!(metric(&c, "crosspod_controller_failovers_total{"), 2.0);
    assert!(!c.log_has_5xx());
}

#[test]
fn decision_table_sqlite() {
    decision_table(None);
}

#[test]
fn decision_table_postgres() {
    let db = PgDb::create();
    decision_table(Some(&db.url));
}

#[test]
fn failback_moves_the_instance_home_when_asked() {
    let c = Controller::start_opts(&Opts {
        extra: &["--failover-hold-ms", "100", "--failback", "true"],
        tokens: TOKENS,
        ..Opts::default()
    });
    let router = setup(&c);
    all_up(&c);
    let p = placement(&c, &router);
    let first = p["node"].as_str().unwrap().to_string();
    let standby = p["standbys"][0].as_str().unwrap().to_string();
    for p in others(&first) {
        sees_down(&c, p, &first);
    }
    wait_on(&c, &router, &standby, Duration::from_secs(10));
    all_up(&c);
    wait_on(&c, &router, &first, Duration::from_secs(10));
    assert_eq!(placement(&c, &router)["moved"], false);
}

#[test]
fn bfd_multiplier_other_than_three_is_refused() {
    let r = Controller::try_start(&Opts {
        extra: &["--bfd-multiplier", "5"],
        tokens: TOKENS,
        ..Opts::default()
    });
    let Err(e) = r else {
        panic!("a controller started with --bfd-multiplier 5");
    };
    let text = e.log.join("\n");
    assert!(
        text.contains("bfd-multiplier") && text.contains('3'),
        "{text}"
    );
}

#[test]
fn two_controllers_on_one_postgres_move_an_instance_once() {
    let db = PgDb::create();
    let a = on_postgres(&db, "200");
    let router = setup(&a);
    let b = on_postgres(&db, "200");
    all_up(&a);
    let p = placement(&a, &router);
    let first = p["node"].as_str().unwrap().to_string();
    let standby = p["standbys"][0].as_str().unwrap().to_string();
    wait_on(&b, &router, &first, Duration::from_secs(10));
    let revs = |c: &Controller| -> Vec<u64> {
        NODES
            .iter()
            .map(|n| desired(c, n)["revision"].as_u64().unwrap())
            .collect()
    };
    let before = revs(&a);
    // Each peer reports to a different controller; both watchers judge the same reports.
    let peers = others(&first);
    for (c, p) in [(&a, peers[0]), (&b, peers[1])] {
        sees_down(c, p, &first);
    }
    wait_on(&a, &router, &standby, Duration::from_secs(10));
    wait_on(&b, &router, &standby, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1000));
    let after = revs(&a);
    assert_eq!(after, revs(&b), "both controllers serve the same revisions");
    for (k, n) in NODES.iter().enumerate() {
        let want = u64::from(*n == first || *n == standby);
        assert_eq!(
            after[k] - before[k],
            want,
            "revision bumps of {n}: {before:?} → {after:?}"
        );
    }
    let moves = metric(&a, "crosspod_controller_failovers_total{")
        + metric(&b, "crosspod_controller_failovers_total{");
    assert_eq!(moves, 1.0, "one controller decided");
}

/// Reports another controller records wake this one's failover watcher (PostgreSQL's NOTIFY):
/// the watcher does not poll the reports. Only `a` may decide here (`b` holds for a minute)
/// and every report goes to `b`; `a` moves the instance well before its 10 s safety-net
/// recheck would have it.
#[test]
fn reports_recorded_by_another_controller_wake_the_watcher() {
    let db = PgDb::create();
    let a = on_postgres(&db, "200");
    let router = setup(&a);
    let b = on_postgres(&db, "60000");
    all_up(&b);
    let p = placement(&a, &router);
    let first = p["node"].as_str().unwrap().to_string();
    let standby = p["standbys"][0].as_str().unwrap().to_string();
    // Both watchers have judged the all-up reports and sleep.
    std::thread::sleep(Duration::from_millis(500));
    for peer in others(&first) {
        sees_down(&b, peer, &first);
    }
    wait_on(&a, &router, &standby, Duration::from_secs(4));
    assert_eq!(metric(&a, "crosspod_controller_failovers_total{"), 1.0);
    assert_eq!(metric(&b, "crosspod_controller_failovers_total{"), 0.0);
}
