//! The cost of mutual TLS on the agent's long-poll path, against plain HTTP in the same run:
//! one controller serving the agent API both ways (a node-bound token on the Tricircle port,
//! a node certificate on the agent listener). Measured:
//! - change → watcher answered: a parked `desired?since=R` long-poll on a kept-alive
//!   connection, a VM port bound to the node through the Neutron API, until the poll answers
//!   with the new state (the path every change takes to an agent);
//! - fresh connection + state read: a new client's first `desired?since=0` (TCP, and for TLS
//!   the handshake with client authentication) — what an agent pays at start or reconnect.

use std::time::{Duration, Instant};

use controller::config::{AgentTls, Config, LogFormat, NetworkType};
use controller::store::quotas::QuotaDefaults;
use controller::vlan_pool::VlanRanges;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use serde_json::{json, Value};

const ADMIN: &str = "bench-admin";
const AGENT: &str = "bench-agent-node1";
const ROUNDS: usize = 60;
const FRESH: usize = 40;

fn pctl(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

struct Pki {
    ca_pem: String,
    server: (String, String),
    node1: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "bench CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).expect("ca");
    let issue = |names: Vec<String>, cn: &str, eku| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        let c = p.signed_by(&key, &ca, &ca_key).expect("sign");
        (c.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca.pem(),
        server: issue(
            vec!["127.0.0.1".into()],
            "controller",
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        node1: issue(
            vec!["node1".into()],
            "node1",
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    }
}

fn tls_client(pki: &Pki) -> reqwest::Client {
    let mut identity = pki.node1.0.clone().into_bytes();
    identity.extend(pki.node1.1.as_bytes());
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"))
        .identity(reqwest::Identity::from_pem(&identity).expect("identity"))
        .build()
        .expect("client")
}

async fn send(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = c.request(method, &url);
    if let Some(t) = token {
        r = r.header("X-Auth-Token", t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let tokens = w(
        "tokens",
        &format!("{ADMIN} admin admin\n{AGENT} crosspod-agents agent node1\n"),
    );
    let config = Config {
        bind: [127, 0, 0, 1].into(),
        tricircle_port: 0,
        neutron_port: 0,
        database: format!("sqlite://{}", dir.path().join("bench.db").display()),
        tokens_file: tokens,
        network_vlan_ranges: VlanRanges::parse("bridge:2001:3000,extern:3001:4000").expect("r"),
        bridge_cidr: "100.0.0.0/9".parse().expect("cidr"),
        bridge_cidr_v6: Some("fd64::/48".parse().expect("cidr")),
        local_vlan_range: (100, 4000),
        default_external_region: Some("RegionOne".into()),
        tenant_network_types: vec![NetworkType::Vlan],
        bridge_network_type: controller::config::BridgeNetworkType::Vlan,
        vni_ranges: Default::default(),
        global_physnet_mtu: 1500,
        full_pass_interval: Duration::from_secs(60),
        dhcp_lease_duration: controller::config::DEFAULT_DHCP_LEASE_DURATION,
        change_log_poll: Duration::from_secs(1),
        failover: controller::config::FailoverConfig {
            interval_ms: 500,
            multiplier: 3,
            hold: std::time::Duration::from_millis(300),
            failback: false,
        },
        log_format: LogFormat::Text,
        quotas: QuotaDefaults::default(),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        long_polls_per_node: 4,
        long_polls_per_project: 16,
        agent_port: 0,
        agent_tls: Some(AgentTls {
            cert: w("server.pem", &pki.server.0),
            key: w("server.key", &pki.server.1),
            ca: w("ca.pem", &pki.ca_pem),
        }),
        tls: None,
        keystone: None,
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let running = controller::api::start(config).await.expect("start");
        let n = format!("http://{}", running.neutron_addr);
        let t = format!("http://{}", running.tricircle_addr);
        let a = format!("https://{}", running.agent_addr.expect("agent listener"));
        let plain = reqwest::Client::new();
        let tls = tls_client(&pki);
        use reqwest::Method;
        for (region, az) in [("RegionOne", "az1"), ("RegionTwo", "az2")] {
            let (s, v) = send(&plain, Method::POST, format!("{t}/v1.0/pods"), Some(ADMIN),
                Some(json!({"pod": {"region_name": region, "az_name": az}}))).await;
            assert_eq!(s, 200, "{v}");
        }
        let (s, v) = send(&plain, Method::POST, format!("{t}/v1.0/agents"), Some(AGENT),
            Some(json!({"pod": "RegionOne", "node": "node1", "bridge_mappings": {"bridge": "br-vlan"}, "uplinks": ["bridge"]}))).await;
        assert_eq!(s, 200, "{v}");
        let (_, net) = send(&plain, Method::POST, format!("{n}/v2.0/networks"), Some(ADMIN),
            Some(json!({"network": {"name": "bench"}}))).await;
        let net = net["network"]["id"].as_str().expect("net").to_string();
        let (s, v) = send(&plain, Method::POST, format!("{n}/v2.0/subnets"), Some(ADMIN),
            Some(json!({"subnet": {"network_id": net, "cidr": "10.0.0.0/16", "ip_version": 4}}))).await;
        assert_eq!(s, 201, "{v}");

        let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
        for (mode, client, base, token) in [
            ("plain HTTP, node token", &plain, t.as_str(), Some(AGENT)),
            ("mutual TLS, node certificate", &tls, a.as_str(), None),
        ] {
            let mut took = Vec::new();
            for _ in 0..ROUNDS {
                let (_, st) = send(client, Method::GET,
                    format!("{base}/v1.0/agents/node1/desired?since=0"), token, None).await;
                let rev = st["revision"].as_u64().expect("revision");
                let url = format!("{base}/v1.0/agents/node1/desired?since={rev}&timeout=30");
                let c = client.clone();
                let tok = token.map(str::to_string);
                let watch = tokio::spawn(async move {
                    let (s, v) = send(&c, Method::GET, url, tok.as_deref(), None).await;
                    (s, v, Instant::now())
                });
                tokio::time::sleep(Duration::from_millis(30)).await;
                let t0 = Instant::now();
                let (s, v) = send(&plain, Method::POST, format!("{n}/v2.0/ports"), Some(ADMIN),
                    Some(json!({"port": {"network_id": net, "binding:host_id": "node1", "device_owner": "compute:nova"}}))).await;
                assert_eq!(s, 201, "{v}");
                let (s, v, at) = watch.await.expect("watch");
                assert_eq!(s, 200, "{v}");
                assert!(v["revision"].as_u64() > Some(rev));
                took.push(at.duration_since(t0).as_secs_f64() * 1000.0);
            }
            rows.push((format!("change -> watcher answered, {mode}"), took));
            let mut fresh = Vec::new();
            for _ in 0..FRESH {
                let c = if token.is_some() { reqwest::Client::new() } else { tls_client(&pki) };
                let t0 = Instant::now();
                let (s, _) = send(&c, Method::GET,
                    format!("{base}/v1.0/agents/node1/desired?since=0"), token, None).await;
                assert_eq!(s, 200);
                fresh.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            rows.push((format!("fresh connection + state read, {mode}"), fresh));
        }
        println!("\n{:<62} | {:>4} | {:>8} | {:>8}", "path", "n", "p50 ms", "p95 ms");
        println!("{}", "-".repeat(92));
        for (what, mut v) in rows {
            let n = v.len();
            let (p50, p95) = (pctl(&mut v, 0.5), pctl(&mut v, 0.95));
            println!("{what:<62} | {n:>4} | {p50:>8.2} | {p95:>8.2}");
        }
    });
}
