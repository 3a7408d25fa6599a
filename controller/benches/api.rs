//! API throughput: requests/s for network, subnet and port creation and for listing 10,000
//! ports, on SQLite and PostgreSQL (CROSSPOD_TEST_PG_URL; rows skipped with a note if unset).
//! The controller runs in-process on loopback; clients are keep-alive HTTP/1.1 connections.
//!
//! Run: `cargo bench -p controller --bench api`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use controller::config::{Config, LogFormat, NetworkType};
use controller::store::QuotaDefaults;
use controller::vlan_pool::VlanRanges;
use serde_json::{json, Value};

const TOKEN: &str = "benchtok";
const NETWORKS: usize = 200;
const PORTS_TOTAL: usize = 10_000;
const CLIENTS: usize = 4;

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).ok();
        Conn {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
        }
    }

    fn req(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, buf) = self.req_raw(method, path, body);
        let v = if buf.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&buf).unwrap_or(Value::Null)
        };
        (status, v)
    }

    /// The response body unparsed (so big lists measure the server, not the client's JSON).
    fn req_raw(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, Vec<u8>) {
        let b = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nX-Auth-Token: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            b.len()
        );
        self.w.write_all(head.as_bytes()).expect("write");
        self.w.write_all(b.as_bytes()).expect("write");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut buf = vec![0u8; len];
        self.r.read_exact(&mut buf).expect("body");
        (status, buf)
    }
}

struct Row {
    backend: &'static str,
    what: String,
    n: usize,
    secs: f64,
}

/// Run `n` requests split over `clients` connections; returns elapsed seconds.
fn parallel<F>(addr: SocketAddr, n: usize, clients: usize, f: F) -> f64
where
    F: Fn(&mut Conn, usize) + Sync,
{
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let f = &f;
            s.spawn(move || {
                let mut conn = Conn::new(addr);
                let mut i = c;
                while i < n {
                    f(&mut conn, i);
                    i += clients;
                }
            });
        }
    });
    start.elapsed().as_secs_f64()
}

fn run(backend: &'static str, database: String, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{TOKEN} bench admin\n")).expect("tokens");
    let database = if database.is_empty() {
        format!("sqlite://{}", dir.path().join("bench.db").display())
    } else {
        database
    };
    let config = Config {
        bind: [127, 0, 0, 1].into(),
        tricircle_port: 0,
        neutron_port: 0,
        database,
        tokens_file: tokens,
        network_vlan_ranges: VlanRanges::parse("bridge:1:4000").expect("ranges"),
        bridge_cidr: "100.0.0.0/9".parse().expect("cidr"),
        bridge_cidr_v6: Some("fd64::/48".parse().expect("cidr")),
        local_vlan_range: (100, 4000),
        default_external_region: Some("RegionOne".into()),
        tenant_network_types: vec![NetworkType::Vlan],
        bridge_network_type: controller::config::BridgeNetworkType::Vlan,
        vni_ranges: Default::default(),
        global_physnet_mtu: 1500,
        full_pass_interval: std::time::Duration::from_secs(60),
        dhcp_lease_duration: controller::config::DEFAULT_DHCP_LEASE_DURATION,
        change_log_poll: std::time::Duration::from_secs(1),
        failover: controller::config::FailoverConfig {
            interval_ms: 500,
            multiplier: 3,
            hold: std::time::Duration::from_millis(300),
            failback: false,
        },
        log_format: LogFormat::Text,
        // Finite, so every create pays for its quota count as a real deployment's does.
        quotas: QuotaDefaults {
            network: 1_000_000,
            subnet: 1_000_000,
            port: 1_000_000,
            router: 1_000_000,
            floatingip: 1_000_000,
            security_group: 1_000_000,
            security_group_rule: 1_000_000,
        },
        header_timeout: std::time::Duration::from_secs(10),
        body_timeout: std::time::Duration::from_secs(30),
        idle_timeout: std::time::Duration::from_secs(60),
        long_polls_per_node: 4,
        long_polls_per_project: 16,
        agent_port: 0,
        agent_tls: None,
        tls: None,
        keystone: None,
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let running = rt
        .block_on(controller::api::start(config))
        .expect("start controller");
    let addr = running.neutron_addr;

    let net_ids: Vec<String> = {
        let ids = std::sync::Mutex::new(vec![String::new(); NETWORKS]);
        let secs = parallel(addr, NETWORKS, 1, |c, i| {
            let (s, v) = c.req(
                "POST",
                "/v2.0/networks",
                Some(&json!({"network": {"name": format!("n{i}")}})),
            );
            assert_eq!(s, 201, "{v}");
            ids.lock().unwrap()[i] = v["network"]["id"].as_str().unwrap().to_string();
        });
        rows.push(Row {
            backend,
            what: "create network (VLAN), 1 client".into(),
            n: NETWORKS,
            secs,
        });
        ids.into_inner().unwrap()
    };
    let secs = parallel(addr, NETWORKS, 1, |c, i| {
        let body = json!({"subnet": {"network_id": net_ids[i], "cidr": format!("10.{}.{}.0/24", i / 256, i % 256), "ip_version": 4}});
        let (s, v) = c.req("POST", "/v2.0/subnets", Some(&body));
        assert_eq!(s, 201, "{v}");
    });
    rows.push(Row {
        backend,
        what: "create subnet, 1 client".into(),
        n: NETWORKS,
        secs,
    });
    let port = |c: &mut Conn, i: usize| {
        let (s, v) = c.req(
            "POST",
            "/v2.0/ports",
            Some(&json!({"port": {"network_id": net_ids[i % NETWORKS]}})),
        );
        assert_eq!(s, 201, "{v}");
    };
    let first = 1000;
    let secs = parallel(addr, first, 1, port);
    rows.push(Row {
        backend,
        what: "create port, 1 client".into(),
        n: first,
        secs,
    });
    let rest = PORTS_TOTAL - first;
    let secs = parallel(addr, rest, CLIENTS, port);
    rows.push(Row {
        backend,
        what: format!("create port, {CLIENTS} clients"),
        n: rest,
        secs,
    });
    let reps = 5;
    let secs = parallel(addr, reps, 1, |c, _| {
        let (s, body) = c.req_raw("GET", "/v2.0/ports", None);
        assert_eq!(s, 200);
        let key: &[u8] = b"\"mac_address\"";
        let macs = body.windows(key.len()).filter(|w| *w == key).count();
        assert_eq!(macs, PORTS_TOTAL);
    });
    rows.push(Row {
        backend,
        what: format!("list {PORTS_TOTAL} ports"),
        n: reps,
        secs,
    });
    let secs = parallel(addr, 50, 1, |c, _| {
        let (s, v) = c.req("GET", "/v2.0/ports?limit=100&sort_key=id", None);
        assert_eq!(s, 200);
        assert_eq!(v["ports"].as_array().map(Vec::len), Some(100));
    });
    rows.push(Row {
        backend,
        what: format!("list ports limit=100 of {PORTS_TOTAL}"),
        n: 50,
        secs,
    });
    let secs = parallel(addr, 200, CLIENTS, |c, i| {
        let (s, _) = c.req(
            "GET",
            &format!("/v2.0/ports?network_id={}", net_ids[i % NETWORKS]),
            None,
        );
        assert_eq!(s, 200);
    });
    rows.push(Row {
        backend,
        what: format!("list ports ?network_id= (50), {CLIENTS} clients"),
        n: 200,
        secs,
    });
    // Where listing time goes: the store read alone (no HTTP, no JSON).
    let store = &running.app.store;
    let start = Instant::now();
    for _ in 0..reps {
        let ports = rt
            .block_on(store.list_ports(&controller::store::Scope::default(), None))
            .expect("list");
        assert_eq!(ports.len(), PORTS_TOTAL);
    }
    rows.push(Row {
        backend,
        what: format!("store.list_ports ({PORTS_TOTAL}), in-process"),
        n: reps,
        secs: start.elapsed().as_secs_f64(),
    });
    if backend == "sqlite" {
        // And the JSON side: render + filter/sort + serialize, no database.
        let ports = rt
            .block_on(store.list_ports(&controller::store::Scope::default(), None))
            .expect("list");
        let who = controller::auth::Identity {
            project_id: "bench".into(),
            roles: vec![controller::auth::Role::Admin],
            node: None,
        };
        let q = controller::api::neutron::query::ListQuery::parse(
            &[],
            controller::api::neutron::ports::ATTRS,
        )
        .expect("query");
        let start = Instant::now();
        for _ in 0..reps {
            let items: Vec<Value> = ports
                .iter()
                .map(|p| controller::api::neutron::ports::render(p, &who, &[]))
                .collect();
            let (items, _) = q.apply(items, "http://bench", "ports").expect("apply");
            let body = serde_json::to_vec(&json!({ "ports": items })).expect("json");
            assert!(body.len() > PORTS_TOTAL * 100);
        }
        rows.push(Row {
            backend: "-",
            what: format!("render+serialize {PORTS_TOTAL} ports, no DB"),
            n: reps,
            secs: start.elapsed().as_secs_f64(),
        });
    }
    let mut running = running;
    running.abort();
    rt.block_on(running.app.store.close());
    drop(rt);
}

/// Drops the bench database when it goes out of scope, even if the run panics.
struct DropDb(Option<Box<dyn FnOnce()>>);

impl Drop for DropDb {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

fn pg_database(admin_url: &str) -> Option<(String, DropDb)> {
    let name = format!("crosspod_bench_{}", std::process::id());
    let (base, _) = admin_url.rsplit_once('/')?;
    let exec = |url: String, sql: String| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await?;
            sqlx::query(&sql).execute(&mut c).await?;
            c.close().await
        })
    };
    if let Err(e) = exec(admin_url.to_string(), format!("CREATE DATABASE {name}")) {
        eprintln!("cannot create a PostgreSQL bench database on {admin_url}: {e}");
        return None;
    }
    let admin = admin_url.to_string();
    let n2 = name.clone();
    let drop_db: Box<dyn FnOnce()> = Box::new(move || {
        let _ = exec(admin, format!("DROP DATABASE IF EXISTS {n2} WITH (FORCE)"));
    });
    Some((format!("{base}/{name}"), DropDb(Some(drop_db))))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special: both run.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut rows = Vec::new();
    run("sqlite", String::new(), &mut rows);
    let mut pg_note = None;
    match std::env::var("CROSSPOD_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => match pg_database(&url) {
            Some((db, _drop_db)) => run("postgres", db, &mut rows),
            None => {
                pg_note =
                    Some("PostgreSQL rows not measured: could not create a database".to_string())
            }
        },
        _ => {
            pg_note =
                Some("PostgreSQL rows not measured: CROSSPOD_TEST_PG_URL is unset".to_string())
        }
    }
    println!(
        "\n{:<9} | {:<42} | {:>6} | {:>8} | {:>9} | {:>9}",
        "backend", "operation", "n", "seconds", "req/s", "ms/req"
    );
    println!("{}", "-".repeat(96));
    for r in &rows {
        println!(
            "{:<9} | {:<42} | {:>6} | {:>8.2} | {:>9.1} | {:>9.2}",
            r.backend,
            r.what,
            r.n,
            r.secs,
            r.n as f64 / r.secs,
            r.secs * 1000.0 / r.n as f64
        );
    }
    if let Some(n) = pg_note {
        println!("{n}");
    }
}
