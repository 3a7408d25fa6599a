//! Agent benchmark (not a timed test): `cargo bench -p agent`. Prints a table.
//!
//! 0. validation of a 5000-port, 1000-router desired state as a whole (pure CPU);
//! 1. 1000 VM interfaces plugged at once (one OVSDB transaction, as a burst of Nova plugs):
//!    time until the agent's loop has tagged them all — against `ovs-vsctl set port` per port
//!    (sample of 100, extrapolated) and one chained `ovs-vsctl` call, in the same run;
//!    The lab (1b): ovsdb-server and ovs-vswitchd (userspace datapath), the loop with the
//!    binding fast path off (as before) and on: single plugs (p50), 1000 plugs by one chained
//!    `ovs-vsctl --no-wait` until all are tagged (best of 3), the agent's share of that (from
//!    the rows reaching a replica to the last tag), the mean time of each pass phase, against
//!    the floor (one chained `ovs-vsctl` setting the same 1000 tags) on the same database, and
//!    the whole against the plug command's own time;
//!    `CROSSPOD_BENCH_LAB_GUARD=3` fails the bench when the agent's share exceeds 3x the floor;
//!    `CROSSPOD_BENCH_ONLY=lab` runs only this row with the fast path (what CI's guard runs).
//!    Idle (1c): the real daemon settled on 1000 ports and 20 routers, nothing changing: CPU
//!    and thread wakeups over 20 s;
//! 2. 100 router instances with 3 legs each from nothing: time to converge (namespaces, 300
//!    veth pairs, addresses, routes, NAT, 300 OVS ports);
//! 3. the restart with nothing changed: time of one full no-op pass (and the writes it made);
//! 4. peak RSS of the real `crosspod-agent --once` on the 100-router state.
//!
//! Apart from the lab and idle rows, ovsdb-server runs without ovs-vswitchd (OVSDB work only; the data path is
//! tested in tests/). Needs root.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::controller_client::ControllerClient;
use agent::daemon::{Agent, LoopTiming};
use agent::intent::{NodeContext, NodeIntent};
use agent::linux_backend::NetnsBackend;
use agent::metrics::AgentMetrics;
use agent::ovsdb_backend::OvsdbBackend;
use agent::reconciler::reconcile_once;
use agent::sd_notify::Notifier;
use ovs::sandbox::{Sandbox, SandboxOptions};
use ovs::{Atom, Client, Condition, Mutation, Mutator, Operation, RowValues, Value};
use serde_json::json;

fn state(ports: usize, routers: usize, tag_prefix: &str) -> serde_json::Value {
    let mut p = serde_json::Map::new();
    for i in 0..ports {
        p.insert(
            format!("port-{i}"),
            json!({"bridge": "br-vlan", "tag": 100 + (i % 50), "network_id": format!("n{}", i % 50),
                   "mac": format!("fa:16:3e:a0:{:02x}:{:02x}", i >> 8, i & 0xff), "fixed_ips": []}),
        );
    }
    let mut r = serde_json::Map::new();
    for i in 0..routers {
        // Valid for the agent's validation: UUID router ids, one MAC per leg, NAT on the gateway leg.
        let id = format!("00000000-0000-4000-8000-{i:012}");
        let mac = |k: u8| format!("fa:16:3e:0{k}:{:02x}:{:02x}", i >> 8, i & 0xff);
        let t = format!("{tag_prefix}{i}");
        r.insert(id.clone(), json!({
            "router_id": id, "project_id": "p", "namespace": format!("qrouter-{id}"),
            "legs": [
                {"kind": "internal", "bridge": "br-vlan", "tag": 100 + i, "address": format!("10.{}.{}.1/24", i / 250, i % 250),
                 "mac": mac(1), "ns_ifname": format!("qr-{t}"), "ovs_ifname": format!("vr-{t}")},
                {"kind": "internal", "bridge": "br-vlan", "tag": 1100 + i, "address": format!("10.{}.{}.1/24", 100 + i / 250, i % 250),
                 "mac": mac(2), "ns_ifname": format!("qs-{t}"), "ovs_ifname": format!("vs-{t}")},
                {"kind": "gateway", "bridge": "br-vlan", "tag": 2001, "address": format!("100.0.{}.{}/16", i / 250, 2 + i % 250),
                 "mac": mac(3), "ns_ifname": format!("qb-{t}"), "ovs_ifname": format!("vb-{t}")}
            ],
            "routes": [{"destination": "172.16.0.0/16", "nexthop": "100.0.0.1"}],
            "nat": {"snat": [{"sources": [format!("10.{}.{}.0/24", i / 250, i % 250)], "out_ifname": format!("qb-{t}"), "to": format!("100.0.{}.{}", i / 250, 2 + i % 250)}], "floating": []}
        }));
    }
    json!({"node": "n1", "pod": "RegionOne", "revision": 1,
           "bridges": {"br-vlan": {"physnet": "bridge", "uplink": false, "trunks": []}},
           "ports": p, "routers": r})
}

fn plug_ops(n: usize) -> Vec<Operation> {
    plug_range(0..n, "tap")
}

/// Interfaces `<tap><i>` with `iface-id=port-<i>` for `i` in `range`, plugged into br-vlan.
fn plug_range(range: std::ops::Range<usize>, tap: &str) -> Vec<Operation> {
    let mut ops = Vec::new();
    let mut names = Vec::new();
    for i in range {
        let (ifn, pn) = (format!("i{i}"), format!("p{i}"));
        ops.push(Operation::Insert {
            table: "Interface".into(),
            row: RowValues::from([
                ("name", Value::from(format!("{tap}{i}"))),
                (
                    "external_ids",
                    Value::string_map([("iface-id", format!("port-{i}"))]),
                ),
            ]),
            uuid_name: Some(ifn.clone()),
            uuid: None,
        });
        ops.push(Operation::Insert {
            table: "Port".into(),
            row: RowValues::from([
                ("name", Value::from(format!("{tap}{i}"))),
                ("interfaces", Value::Atom(Atom::NamedUuid(ifn))),
            ]),
            uuid_name: Some(pn.clone()),
            uuid: None,
        });
        names.push(Atom::NamedUuid(pn));
    }
    ops.push(Operation::Mutate {
        table: "Bridge".into(),
        conditions: vec![Condition::eq("name", "br-vlan")],
        mutations: vec![Mutation::new(
            "ports",
            Mutator::Insert,
            Value::Set(names.into_iter().collect()),
        )],
    });
    ops
}

fn row(name: &str, n: String, total: Duration, per: &str) {
    println!(
        "| {name:<58} | {n:>6} | {:>10.1} | {per:>14} |",
        total.as_secs_f64() * 1000.0
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let prefix = format!("cpb{}-", std::process::id() % 100_000);
    println!(
        "| {:<58} | {:>6} | {:>10} | {:>14} |",
        "what", "n", "ms", "rate"
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(60),
        "-".repeat(8),
        "-".repeat(12),
        "-".repeat(16)
    );

    if std::env::var("CROSSPOD_BENCH_ONLY").is_ok_and(|v| v == "lab") {
        lab_row(&prefix, true).await;
        return;
    }

    // 0. Validation of a large state as a whole (pure, before any change): 5000 ports and 1000
    //    router instances with 3 legs, a route and SNAT each.
    let big: wire::NodeDesiredState = serde_json::from_value(state(5000, 1000, "v")).unwrap();
    let me = agent::validate::AgentIdentity {
        node: "n1".into(),
        pod: "RegionOne".into(),
        uplink_devices: Default::default(),
    };
    agent::validate::validate(&big, &me).expect("the bench state is valid");
    let runs = 20;
    let t0 = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(agent::validate::validate(&big, &me)).unwrap();
    }
    let took = t0.elapsed() / runs;
    row(
        "validate: 5000 ports + 1000 routers (3 legs each)",
        "1".into(),
        took,
        "per document",
    );

    // 1. 1000 plugged VM interfaces.
    let sb = Sandbox::start(SandboxOptions::default()).expect("ovsdb-server sandbox");
    let ctx = NodeContext {
        datapath_type: "netdev".into(),
        uplinks: BTreeMap::new(),
        netns_prefix: prefix.clone(),
        ..Default::default()
    };
    let st: wire::NodeDesiredState = serde_json::from_value(state(1000, 0, "x")).unwrap();
    let agent = Arc::new(Agent {
        node: "n1".into(),
        pod: "RegionOne".into(),
        ctx: ctx.clone(),
        ovs: OvsdbBackend::connect(&sb.db_arg()).await.unwrap(),
        linux: NetnsBackend::new("", &prefix),
        client: None::<ControllerClient>,
        notifier: Notifier::from_env(),
        timing: LoopTiming::default(),
        metrics: Arc::new(AgentMetrics::new()),
        firewall: None,
        report_file: None,
        fence_held: Default::default(),
    });
    let (tx, rx) = tokio::sync::watch::channel(Some(Arc::new(st.clone())));
    let a2 = agent.clone();
    let loop_task = tokio::spawn(async move { a2.run(rx, std::future::pending()).await });
    // Wait for the bridge, then plug 1000 ports in one transaction and time the tagging.
    let client = Client::connect_to(&sb.db_arg()).await.unwrap();
    let replica = ovs::vswitch::monitor(&client).await.unwrap();
    replica
        .wait_for(Duration::from_secs(10), |s| s.rows("Bridge").count() == 1)
        .await
        .expect("agent creates br-vlan");
    let t0 = Instant::now();
    client
        .transact("Open_vSwitch", &plug_ops(1000))
        .await
        .unwrap();
    replica
        .wait_for(Duration::from_secs(60), |s| {
            s.rows("Port")
                .filter(|p| {
                    p.get_str("name").is_some_and(|n| n.starts_with("tap"))
                        && p.get_i64("tag").is_some()
                })
                .count()
                == 1000
        })
        .await
        .expect("all 1000 tagged");
    let took = t0.elapsed();
    row(
        "crosspod agent: 1000 plugged interfaces tagged (loop)",
        "1000".into(),
        took,
        &format!("{:.0} ports/s", 1000.0 / took.as_secs_f64()),
    );
    loop_task.abort();
    drop(tx);

    // Peers: ovs-vsctl retagging the same ports.
    let t0 = Instant::now();
    for i in 0..100 {
        sb.vsctl(&["set", "port", &format!("tap{i}"), "tag=7"])
            .unwrap();
    }
    let per = t0.elapsed() / 100;
    row(
        "ovs-vsctl set port tag, one call per port (100, x10)",
        "1000".into(),
        per * 1000,
        &format!("{:.0} ports/s", 1.0 / per.as_secs_f64()),
    );
    let mut args: Vec<String> = Vec::new();
    for i in 0..1000 {
        if i > 0 {
            args.push("--".into());
        }
        args.extend([
            "set".into(),
            "port".into(),
            format!("tap{i}"),
            "tag=8".into(),
        ]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    sb.vsctl(&argv).unwrap();
    let took = t0.elapsed();
    row(
        "ovs-vsctl one chained call for 1000 ports",
        "1000".into(),
        took,
        &format!("{:.0} ports/s", 1000.0 / took.as_secs_f64()),
    );
    drop(agent);
    drop(sb);

    // 1b. The lab: ovsdb-server AND ovs-vswitchd (userspace datapath) in a namespace of their
    //     own, the agent's loop with the fast path off (the loop as it was) and on.
    for fast in [false, true] {
        lab_row(&prefix, fast).await;
    }

    // 1c. Idle cost of the settled real daemon.
    idle_row(&prefix);

    // 2./3. 100 routers x 3 legs from nothing, then the no-op pass.
    let sb = Sandbox::start(SandboxOptions::default()).expect("ovsdb-server sandbox");
    let node_ns = format!("{prefix}node");
    plumbing::netns::create(&node_ns).unwrap();
    let st: wire::NodeDesiredState = serde_json::from_value(state(0, 100, "b")).unwrap();
    let ctx = NodeContext {
        netns_prefix: prefix.clone(),
        ..ctx
    };
    let intent = NodeIntent::from_desired(&st, &ctx);
    let ovs = OvsdbBackend::connect(&sb.db_arg()).await.unwrap();
    let linux = NetnsBackend::new(&node_ns, &prefix);
    let t0 = Instant::now();
    let pass = reconcile_once(&intent, &ovs, &linux).await;
    let took = t0.elapsed();
    assert!(pass.complete(), "{pass:?}");
    row(
        "100 routers x 3 legs from nothing (ns, veths, addrs, NAT, OVS)",
        "100".into(),
        took,
        &format!("{:.0} routers/s", 100.0 / took.as_secs_f64()),
    );
    // The no-op pass with the NAT table read by forking `nft` per namespace (the peer), then
    // in-process through libnftables (the default); best of three each.
    for (label, binary) in [
        ("nft binary per namespace", true),
        ("libnftables in-process", false),
    ] {
        plumbing::nftlib::force_binary(binary);
        let writes_before = ovs.counters().write_transactions;
        let mut best = Duration::MAX;
        let mut changes = 0;
        for _ in 0..3 {
            let t0 = Instant::now();
            let pass = reconcile_once(&intent, &ovs, &linux).await;
            best = best.min(t0.elapsed());
            changes += pass.linux_changes;
        }
        row(
            &format!(
                "no-op pass, 100 routers, NAT via {label} ({changes} kernel, {} OVSDB writes)",
                ovs.counters().write_transactions - writes_before
            ),
            "100".into(),
            best,
            "-",
        );
    }

    // 4. Peak RSS of the real binary on the same state (a no-op pass over 100 routers).
    let file = sb.dir().join("desired.json");
    std::fs::write(&file, serde_json::to_vec(&st).unwrap()).unwrap();
    let t0 = Instant::now();
    // Reaped by wait4 below, which also gives its rusage.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_crosspod-agent"))
        .args([
            "--pod",
            "RegionOne",
            "--node",
            "n1",
            "--once",
            "--metrics-bind",
            "",
        ])
        .arg("--desired-file")
        .arg(&file)
        .args(["--ovsdb", &sb.db_arg(), "--node-netns", &node_ns])
        .args([
            "--netns-prefix",
            &prefix,
            "--bridge-mappings",
            "bridge:br-vlan",
        ])
        .args(["--uplinks", "", "--datapath-type", "netdev"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting on our own child with valid out-pointers.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let took = t0.elapsed();
    row(
        &format!(
            "crosspod-agent --once, 100 routers: peak RSS {} MB",
            usage.ru_maxrss / 1024
        ),
        "1".into(),
        took,
        "-",
    );

    // Clean up the namespaces.
    for n in plumbing::netns::list_prefixed(&prefix).unwrap_or_default() {
        let _ = plumbing::netns::delete(&n);
    }
}

/// `name{labels} value` lines of the agent's metrics whose name starts with `metric`.
fn metric_lines(m: &AgentMetrics, metric: &str) -> Vec<(String, f64)> {
    m.render()
        .lines()
        .filter(|l| l.starts_with(metric))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Mean of a histogram (by its `_sum` and `_count` lines) for one label set, in ms.
fn mean_ms(m: &AgentMetrics, metric: &str, labels: &str) -> Option<(f64, f64)> {
    let lines = metric_lines(m, metric);
    let get = |suffix: &str| {
        lines
            .iter()
            .find(|(k, _)| *k == format!("{metric}_{suffix}{labels}"))
            .map(|(_, v)| *v)
    };
    let (sum, count) = (get("sum")?, get("count")?);
    (count > 0.0).then(|| (sum / count * 1000.0, count))
}

/// The lab row: 1,000 VM interfaces plugged with one chained `ovs-vsctl --no-wait` (iface-ids
/// of ports in the agent's desired state, as the controller places them), timed from the
/// start of that command until every Port row carries its tag; single plugs one after another
/// (from the plug's transaction to the tag seen); the floor is one chained `ovs-vsctl
/// --no-wait` setting the same 1,000 tags, in the same run, with the agent stopped. The
/// controller is not in the loop: the ports are in the desired state already, and with the
/// fast path tagging needs nothing from it (its only part is the status report after).
/// The interfaces' devices do not exist (vswitchd records the error): creating 1,000 veths is
/// the host's cost, not the binding's.
async fn lab_row(prefix: &str, fast: bool) {
    // Declared before the sandbox, so dropped after it (its daemons live in the namespace).
    let ns = BenchNs::create(format!("{prefix}lab{}", u8::from(fast)));
    let ns = ns.0.as_str();
    let sb = Sandbox::start(SandboxOptions {
        vswitchd: true,
        netns: Some(ns.to_string()),
        clustered: false,
    })
    .expect("ovsdb-server + ovs-vswitchd sandbox");
    const SINGLE: usize = 30;
    const ROUNDS: usize = 3;
    let st: wire::NodeDesiredState =
        serde_json::from_value(state(1000 * ROUNDS + SINGLE, 0, "l")).unwrap();
    let metrics = Arc::new(AgentMetrics::new());
    let agent = Arc::new(Agent {
        node: "n1".into(),
        pod: "RegionOne".into(),
        ctx: NodeContext {
            datapath_type: "netdev".into(),
            uplinks: BTreeMap::new(),
            netns_prefix: prefix.to_string(),
            ..Default::default()
        },
        ovs: OvsdbBackend::connect(&sb.db_arg()).await.unwrap(),
        linux: NetnsBackend::new(ns, prefix),
        client: None::<ControllerClient>,
        notifier: Notifier::from_env(),
        timing: LoopTiming {
            fast_bind: fast,
            ..LoopTiming::default()
        },
        metrics: metrics.clone(),
        firewall: None,
        report_file: None,
        fence_held: Default::default(),
    });
    let (tx, rx) = tokio::sync::watch::channel(Some(Arc::new(st)));
    let a2 = agent.clone();
    let loop_task = tokio::spawn(async move { a2.run(rx, std::future::pending()).await });
    let client = Client::connect_to(&sb.db_arg()).await.unwrap();
    let replica = ovs::vswitch::monitor(&client).await.unwrap();
    replica
        .wait_for(Duration::from_secs(20), |s| s.rows("Bridge").count() == 1)
        .await
        .expect("agent creates br-vlan");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tagged = |s: &ovs::Snapshot, tap: &str, n: usize| {
        s.rows("Port")
            .filter(|p| {
                p.get_str("name").is_some_and(|x| x.starts_with(tap)) && p.get_i64("tag").is_some()
            })
            .count()
            == n
    };
    // Single plugs, one after another.
    let mut single = Vec::new();
    for i in 1000 * ROUNDS..1000 * ROUNDS + SINGLE {
        let t0 = Instant::now();
        client
            .transact("Open_vSwitch", &plug_range(i..i + 1, "one"))
            .await
            .unwrap();
        let name = format!("one{i}");
        replica
            .wait_for(Duration::from_secs(10), |s| {
                s.rows("Port")
                    .any(|p| p.get_str("name") == Some(name.as_str()) && p.get_i64("tag").is_some())
            })
            .await
            .expect("single plug tagged");
        single.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    single.sort();
    let mode = if fast { "fast path" } else { "no fast path" };
    row(
        &format!(
            "lab, {mode}: one plug tagged, p50 (max {:.1} ms)",
            single[SINGLE - 1].as_secs_f64() * 1e3
        ),
        SINGLE.to_string(),
        single[SINGLE / 2],
        "-",
    );
    // 1000 plugs in one chained ovs-vsctl, three rounds on fresh ports (best of three).
    let (mut lab, mut share, mut cmd_done, mut rows_seen, mut floor) = (
        Duration::MAX,
        Duration::MAX,
        Duration::ZERO,
        Duration::ZERO,
        Duration::MAX,
    );
    for round in 0..ROUNDS {
        let tap = format!("t{round}x");
        let mut args: Vec<String> = vec!["--no-wait".into()];
        for i in 0..1000 {
            if i > 0 {
                args.push("--".into());
            }
            args.extend([
                "add-port".into(),
                "br-vlan".into(),
                format!("{tap}{i}"),
                "--".into(),
                "set".into(),
                "interface".into(),
                format!("{tap}{i}"),
                format!("external_ids:iface-id=port-{}", round * 1000 + i),
            ]);
        }
        let db = sb.db_arg();
        let t0 = Instant::now();
        // The command runs on its own thread; meanwhile the replica notes when its rows appear.
        let cmd = tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("ovs-vsctl")
                .arg(format!("--db={db}"))
                .args(&args)
                .output()
                .expect("ovs-vsctl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Instant::now()
        });
        replica
            .wait_for(Duration::from_secs(60), |s| {
                s.rows("Interface")
                    .filter(|i| i.get_str("name").is_some_and(|n| n.starts_with(&tap)))
                    .count()
                    == 1000
            })
            .await
            .expect("1000 plugged");
        let seen = t0.elapsed();
        replica
            .wait_for(Duration::from_secs(60), |s| tagged(s, &tap, 1000))
            .await
            .expect("all 1000 tagged");
        let took = t0.elapsed();
        let done = cmd.await.unwrap() - t0;
        share = share.min(took.saturating_sub(seen));
        if took < lab {
            (lab, cmd_done, rows_seen) = (took, done, seen);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The floor on the same database: one chained ovs-vsctl setting these 1000 tags (the
        // agent sets them back afterwards, outside the measurement).
        let mut args: Vec<String> = vec!["--no-wait".into()];
        for i in 0..1000 {
            if i > 0 {
                args.push("--".into());
            }
            args.extend([
                "set".into(),
                "port".into(),
                format!("{tap}{i}"),
                format!("tag={}", 3000 + round),
            ]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let t0 = Instant::now();
        sb.vsctl(&argv).unwrap();
        floor = floor.min(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Unplugged again, so every round (and its floor) sees the same database.
        let mut args: Vec<String> = vec!["--no-wait".into()];
        for i in 0..1000 {
            if i > 0 {
                args.push("--".into());
            }
            args.extend(["del-port".into(), "br-vlan".into(), format!("{tap}{i}")]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        sb.vsctl(&argv).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    loop_task.abort();
    drop(tx);
    row(
        &format!("lab, {mode}: 1000 plugs (1 chained ovs-vsctl) tagged, best of {ROUNDS}"),
        "1000".into(),
        lab,
        &format!("{:.2}x floor", lab.as_secs_f64() / floor.as_secs_f64()),
    );
    row(
        &format!("lab, {mode}: agent's share (rows seen -> all tagged), best"),
        "1000".into(),
        share,
        &format!("{:.2}x floor", share.as_secs_f64() / floor.as_secs_f64()),
    );
    println!(
        "|   lab, {mode}: the plug command alone took {:.1} ms ({:.2}x the floor; its rows reached the replica at {:.1} ms)",
        cmd_done.as_secs_f64() * 1e3,
        cmd_done.as_secs_f64() / floor.as_secs_f64(),
        rows_seen.as_secs_f64() * 1e3,
    );
    // The same best round against the plug command's own time: what binding adds to plugging.
    // (ovs-vsctl spends most of that command before its transaction reaches ovsdb-server, so
    // no agent could bring the row above under 2x the tag-setting floor.)
    row(
        &format!("lab, {mode}: 1000 plugs tagged, against the plug command"),
        "1000".into(),
        lab,
        &format!("{:.2}x command", lab.as_secs_f64() / cmd_done.as_secs_f64()),
    );
    row(
        "lab floor: ovs-vsctl one chained call setting the 1000 tags",
        "1000".into(),
        floor,
        &format!("best of {ROUNDS}"),
    );
    let mut phases = Vec::new();
    for phase in ["debounce", "linux", "ovs_diff", "ovs_write"] {
        if let Some((ms, n)) = mean_ms(
            &metrics,
            "crosspod_agent_reconcile_phase_seconds",
            &format!("{{phase=\"{phase}\"}}"),
        ) {
            phases.push(format!("{phase} {ms:.2} ms (n={n})"));
        }
    }
    if let Some((ms, n)) = mean_ms(&metrics, "crosspod_agent_fast_bind_duration_seconds", "") {
        phases.push(format!("fast-path write {ms:.2} ms (n={n})"));
    }
    println!(
        "|   lab, {mode}: mean per pass phase: {}",
        phases.join(", ")
    );
    if std::env::var("CROSSPOD_BENCH_LAB_GUARD").is_ok() && fast {
        // The guard: a ratio, never an absolute time; on the agent's share, since the plug
        // command's own time is ovs-vsctl's.
        let ratio = share.as_secs_f64() / floor.as_secs_f64();
        let limit: f64 = std::env::var("CROSSPOD_BENCH_LAB_GUARD")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3.0);
        assert!(
            ratio <= limit,
            "lab: the agent's share is {ratio:.2}x the chained ovs-vsctl floor, above the guard's {limit}x"
        );
    }
    drop(agent);
    drop(sb);
}

/// A namespace a row made, deleted when dropped: a failing row (the guard's panic included)
/// leaves none behind.
struct BenchNs(String);

impl BenchNs {
    fn create(name: String) -> BenchNs {
        plumbing::netns::create(&name).unwrap();
        BenchNs(name)
    }
}

impl Drop for BenchNs {
    fn drop(&mut self) {
        let _ = plumbing::netns::delete(&self.0);
    }
}

/// CPU ticks (user + system) and context switches (voluntary + not) of process `pid`, all
/// threads.
fn proc_usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let mut switches = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for l in status.lines() {
            if let Some(v) = l
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    (ticks, switches)
}

/// `GET /metrics` of an agent, as text.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The idle row: the real `crosspod-agent` daemon settled on 1000 ports and 20 routers (with
/// ovs-vswitchd), nothing changing: its CPU and thread wakeups over 20 s, and the passes it ran.
/// Standalone mode (desired state from a file): the controller's long-poll, answered 204 every
/// 30 s, is not in it.
fn idle_row(prefix: &str) {
    let ns = format!("{prefix}idle");
    plumbing::netns::create(&ns).unwrap();
    let sb = Sandbox::start(SandboxOptions {
        vswitchd: true,
        netns: Some(ns.clone()),
        clustered: false,
    })
    .expect("ovsdb-server + ovs-vswitchd sandbox");
    let st: wire::NodeDesiredState = serde_json::from_value(state(1000, 20, "i")).unwrap();
    let file = sb.dir().join("desired.json");
    std::fs::write(&file, serde_json::to_vec(&st).unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crosspod-agent"))
        .args([
            "--pod",
            "RegionOne",
            "--node",
            "n1",
            "--metrics-bind",
            &addr,
        ])
        .arg("--desired-file")
        .arg(&file)
        .args(["--ovsdb", &sb.db_arg(), "--node-netns", &ns])
        .args([
            "--netns-prefix",
            prefix,
            "--bridge-mappings",
            "bridge:br-vlan",
        ])
        .args(["--uplinks", "", "--datapath-type", "netdev"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(
        &scrape(&addr),
        "crosspod_agent_reconcile_passes_total{outcome=\"ok\"}",
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "the idle agent never settled");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    let window = Duration::from_secs(20);
    let before = scrape(&addr);
    let (t0, s0) = proc_usage(child.id());
    std::thread::sleep(window);
    let (t1, s1) = proc_usage(child.id());
    let after = scrape(&addr);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (t1 - t0) as f64 / hz / window.as_secs_f64() * 100.0;
    let passes = metric(&after, "crosspod_agent_reconcile_passes_total")
        - metric(&before, "crosspod_agent_reconcile_passes_total");
    let writes = metric(&after, "crosspod_agent_ovsdb_changes_total")
        - metric(&before, "crosspod_agent_ovsdb_changes_total");
    row(
        &format!("idle: settled daemon, 1000 ports + 20 routers, {passes} passes, {writes} writes"),
        "20 s".into(),
        window,
        &format!(
            "{cpu:.2}% cpu, {:.1} wakeups/s",
            (s1 - s0) as f64 / window.as_secs_f64()
        ),
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(sb);
    for n in plumbing::netns::list_prefixed(prefix).unwrap_or_default() {
        if n.starts_with(&format!("{prefix}idle")) || n.contains("qrouter-") {
            let _ = plumbing::netns::delete(&n);
        }
    }
}
