//! Router advertisement benchmark (not a timed test): `cargo bench -p agent --bench ra`.
//! Prints a table.
//!
//! The real `crosspod-agent` daemon (desired state from a file, ovsdb-server without
//! ovs-vswitchd) with N router legs (default 1,000, `CROSSPOD_RA_BENCH_N`; ten legs per router
//! namespace) first without `ipv6_ra`, then with it on every leg: the time until every leg has
//! sent its first advertisement (after duplicate address detection), the agent's RSS and
//! threads before and after (the cost of an advertising leg: one socket and one task), the
//! processes it started (none: no radvd), then the time until every leg has sent its final
//! advertisement when `ipv6_ra` goes.
//!
//! Needs root and ovsdb-server (scripts/install-deps.sh).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ovs::sandbox::{Sandbox, SandboxOptions};
use plumbing::netns;
use serde_json::{json, Value};

mod support;
use support::{children, row, status_kb, Cleanup};

const LEGS_PER_ROUTER: usize = 10;

fn router_id(r: usize) -> String {
    format!("0f6e3d2e-1484-4fdb-8e00-{r:012}")
}

fn state(n: usize, tag: &str, ra: bool, revision: u64) -> Value {
    let mut routers = serde_json::Map::new();
    for r in 0..n.div_ceil(LEGS_PER_ROUTER) {
        let id = router_id(r);
        let legs: Vec<Value> = (r * LEGS_PER_ROUTER..((r + 1) * LEGS_PER_ROUTER).min(n))
            .map(|i| {
                let mut leg = json!({
                    "kind": "internal", "bridge": "br-vlan", "tag": 1 + i,
                    "address": format!("fd00:{i:x}::1/64"),
                    "mac": format!("fa:16:3e:a0:{:02x}:{:02x}", i >> 8, i & 0xff),
                    "ns_ifname": format!("qr{i}"), "ovs_ifname": format!("v{tag}r{i}"),
                    "network_id": format!("net-{i}"), "subnet_id": format!("s-{i}")
                });
                if ra {
                    leg["ipv6_ra"] = json!({
                        "prefixes": [{"prefix": format!("fd00:{i:x}::/64"),
                                      "autonomous": true, "on_link": true}],
                        "other_config": false, "managed": false, "router_lifetime": 1800,
                        "mtu": 1450, "dns_servers": ["fd00::53"]
                    });
                }
                leg
            })
            .collect();
        routers.insert(
            id.clone(),
            json!({"router_id": id, "project_id": "p1", "namespace": format!("qrouter-{id}"),
                   "legs": legs, "routes": []}),
        );
    }
    json!({"node": "n1", "pod": "RegionOne", "revision": revision,
           "bridges": {"br-vlan": {"physnet": "bridge", "uplink": false, "trunks": []}},
           "routers": routers})
}

fn metrics(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Sum of a metric over its labels; how many label sets have a value of at least 1.
fn metric(body: &str, name: &str) -> (u64, usize) {
    let vals: Vec<u64> = body
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (vals.iter().sum(), vals.iter().filter(|v| **v > 0).count())
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
    t0.elapsed()
}

fn main() {
    let n: usize = std::env::var("CROSSPOD_RA_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tag = format!("{}", std::process::id() % 1000);
    let prefix = format!("cpr{tag}-");
    let node = format!("{prefix}node");
    netns::create(&node).expect("creating the node namespace (needs root)");
    let mut clean = Cleanup {
        prefix: prefix.clone(),
        procs: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    let sb = Sandbox::start(SandboxOptions {
        vswitchd: false,
        netns: Some(node.clone()),
        clustered: false,
    })
    .expect("ovsdb-server");
    let file = clean.dir.path().join("desired.json");
    let write = |v: &Value| {
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(v).unwrap()).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write(&state(n, &tag, false, 1));
    let agent = Command::new(env!("CARGO_BIN_EXE_crosspod-agent"))
        .args(["--pod", "RegionOne", "--node", "n1", "--desired-file"])
        .arg(&file)
        .args(["--ovsdb", &sb.db_arg(), "--node-netns", &node])
        .args(["--netns-prefix", &prefix])
        .args(["--bridge-mappings", "bridge:br-vlan"])
        .args(["--datapath-type", "netdev"])
        .args(["--metrics-bind", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(clean.dir.path().join("agent.log")).unwrap())
        .spawn()
        .expect("crosspod-agent");
    let pid = agent.id();
    clean.procs.push(agent);
    let routers = n.div_ceil(LEGS_PER_ROUTER);
    let legs_up = wait("the legs", Duration::from_secs(900), || {
        metric(&metrics(port), "crosspod_agent_desired_revision").0 >= 1
            && netns::list_prefixed(&format!("{prefix}qrouter-"))
                .map(|l| l.len())
                .unwrap_or(0)
                == routers
            && metric(&metrics(port), "crosspod_agent_reconcile_passes_total").0 >= 1
    });
    // Let the first pass settle (every leg made) before measuring.
    std::thread::sleep(Duration::from_secs(3));
    let rss0 = status_kb(pid, "VmRSS:");
    let thr0 = status_kb(pid, "Threads:");
    let kids0 = children(pid);

    println!("| {:<66} | {:>22} |", "what", "value");
    println!("|{}|{}|", "-".repeat(68), "-".repeat(24));
    row(
        &format!("{n} legs in {routers} router namespaces, made in (s)"),
        format!("{:.1}", legs_up.as_secs_f64()),
    );

    // Every leg starts advertising.
    write(&state(n, &tag, true, 2));
    let t0 = Instant::now();
    wait(
        "every leg's first advertisement",
        Duration::from_secs(900),
        || {
            metric(&metrics(port), "crosspod_agent_router_advertisements_total").1 >= routers
                && metric(&metrics(port), "crosspod_agent_ra_legs").0 as usize == n
                && metric(&metrics(port), "crosspod_agent_router_advertisements_total").0 as usize
                    >= n
        },
    );
    let all = t0.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let rss1 = status_kb(pid, "VmRSS:");
    let thr1 = status_kb(pid, "Threads:");
    let kids1 = children(pid);
    let sent = metric(&metrics(port), "crosspod_agent_router_advertisements_total").0;
    row(
        &format!("time until {n} legs have advertised (s)"),
        format!("{:.2}", all.as_secs_f64()),
    );
    row(
        "advertisements sent so far (initial burst: 3 per leg)",
        sent.to_string(),
    );
    row(
        "agent RSS, legs not advertising (MiB)",
        format!("{:.1}", rss0 as f64 / 1024.0),
    );
    row(
        &format!("agent RSS, {n} legs advertising (MiB)"),
        format!("{:.1}", rss1 as f64 / 1024.0),
    );
    row(
        "agent RSS added per advertising leg (KiB)",
        format!("{:.1}", (rss1 as f64 - rss0 as f64) / n as f64),
    );
    row("agent threads before / after", format!("{thr0} / {thr1}"));
    row(
        "agent child processes before / after",
        format!("{kids0} / {kids1}"),
    );

    let errors = metric(
        &metrics(port),
        "crosspod_agent_router_advertisement_errors_total",
    )
    .0;
    row("advertisements that could not be sent", errors.to_string());
    if errors > 0 {
        // A failed leg's socket is reopened at the next pass (the resync, within 60 s).
        let sent0 = metric(&metrics(port), "crosspod_agent_router_advertisements_total").0;
        std::thread::sleep(Duration::from_secs(70));
        let m = metrics(port);
        row(
            "after a resync: new send errors / advertisements sent",
            format!(
                "{} / {}",
                metric(&m, "crosspod_agent_router_advertisement_errors_total").0 - errors,
                metric(&m, "crosspod_agent_router_advertisements_total").0 - sent0
            ),
        );
    }

    // `ipv6_ra` goes: a final advertisement per leg.
    let before = metric(&metrics(port), "crosspod_agent_router_advertisements_total").0;
    write(&state(n, &tag, false, 3));
    let t1 = Instant::now();
    wait("every leg to stop", Duration::from_secs(120), || {
        let m = metrics(port);
        metric(&m, "crosspod_agent_ra_legs").0 == 0
            && metric(&m, "crosspod_agent_router_advertisements_total").0 >= before + n as u64
    });
    row(
        &format!("time until {n} final advertisements are sent (s)"),
        format!("{:.2}", t1.elapsed().as_secs_f64()),
    );
    drop(sb);
    drop(clean);
}
