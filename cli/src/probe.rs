//! `crosspod probe`: the lab's connectivity matrix from real packets. Sources are the lab VMs
//! of every node of every pod (ICMP out of their `eth0`) and the external network (the leg in
//! `ext` of the upstream router whose network holds the target);
//! targets are the VMs, the upstream router and the floating IPs the controller has bound.
//! IPv6 pairs are cells of their own: a VM with an IPv6 address is also the target `<vm> v6`
//! (further ones `<vm> <address>`), the upstream's IPv6 address `upstream <address>`, and each
//! VM probes the targets of the families it has an address of (others stay `·`).
//! Router instances' own probes (bridge IPs of the other instances, the external gateway) come
//! from every node's agent's reports through the controller.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use plumbing::{Netns, ProbeOptions};
use serde::Serialize;
use serde_json::Value;

use crate::http;
use crate::lab::state::LabState;
use crate::lab::tokens;
use crate::lab::upstream::{LEG_IF, REGION_ONE_LEG_IF};
use crate::vm;

/// One cell of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Source (VM name or `ext`).
    pub from: String,
    /// Target label.
    pub to: String,
    /// Target address.
    pub address: IpAddr,
    /// Answered?
    pub reachable: bool,
    /// Round-trip time in milliseconds.
    pub rtt_ms: Option<f64>,
}

/// A probe reported by an agent from a router instance.
#[derive(Debug, Clone, Serialize)]
pub struct RouterProbe {
    /// Node that reported it.
    pub node: String,
    /// Router id.
    pub router_id: String,
    /// Probed address.
    pub target: String,
    /// Answered?
    pub reachable: bool,
    /// Round-trip time in microseconds.
    pub latency_us: Option<u64>,
}

/// The whole matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// Row labels, in order.
    pub sources: Vec<String>,
    /// Column labels, in order.
    pub targets: Vec<String>,
    /// Every probed pair.
    pub cells: Vec<Cell>,
    /// The agents' router-instance probes.
    pub routers: Vec<RouterProbe>,
}

impl Matrix {
    /// Whether every probed pair answered.
    pub fn all_reachable(&self) -> bool {
        self.cells.iter().all(|c| c.reachable)
    }
}

fn admin_token(st: &LabState) -> Option<String> {
    let lines = tokens::read(&st.layout().tokens_file()).ok()?;
    tokens::find(&lines, tokens::ADMIN_PROJECT, "admin")
}

fn get(url: &str, token: &str) -> Option<Value> {
    let r = http::request("GET", url, Some(token), None, Duration::from_secs(5)).ok()?;
    if r.ok() {
        r.json().ok()
    } else {
        None
    }
}

/// Probes every pair (in parallel) and collects the agents' reports.
pub fn run(dir: &Path) -> Result<Matrix> {
    let st = LabState::require(dir)?;
    let vms = vm::records(&st.layout())?;
    let token = admin_token(&st);
    // Targets: VMs (every address), the upstream router (IPv4 and IPv6), bound floating IPs.
    let mut targets: Vec<(String, IpAddr)> = Vec::new();
    // Which VM a target label belongs to (a VM does not probe itself).
    let mut owner_of: std::collections::HashMap<String, String> = Default::default();
    for v in &vms {
        for (label, addr) in vm_targets(v) {
            owner_of.insert(label.clone(), v.name.clone());
            targets.push((label, addr));
        }
    }
    targets.push((
        format!("upstream {}", st.upstream.gateway.addr()),
        st.upstream.gateway.addr(),
    ));
    if let Some(g6) = st.upstream.gateway_v6 {
        targets.push((format!("upstream {}", g6.addr()), g6.addr()));
    }
    let mut fips: Vec<(String, IpAddr)> = Vec::new();
    let mut routers = Vec::new();
    if let Some(t) = &token {
        let neutron = st.api_url(st.neutron_port);
        if let Some(v) = get(&format!("{neutron}/v2.0/floatingips"), t) {
            for f in v["floatingips"].as_array().into_iter().flatten() {
                let (Some(addr), Some(port)) =
                    (f["floating_ip_address"].as_str(), f["port_id"].as_str())
                else {
                    continue;
                };
                let owner = vms
                    .iter()
                    .find(|v| v.port_id == port)
                    .map(|v| v.name.clone())
                    .unwrap_or_else(|| port.chars().take(8).collect());
                if let Ok(ip) = addr.parse() {
                    fips.push((format!("fip {addr} ({owner})"), ip));
                }
            }
        }
        let tricircle = st.api_url(st.tricircle_port);
        if let Some(v) = get(&format!("{tricircle}/v1.0/agents"), t) {
            for a in v["agents"].as_array().into_iter().flatten() {
                let node = a["node"].as_str().unwrap_or_default().to_string();
                let probes = a
                    .pointer("/status/probes")
                    .or_else(|| a.get("probes"))
                    .and_then(Value::as_array);
                for p in probes.into_iter().flatten() {
                    routers.push(RouterProbe {
                        node: node.clone(),
                        router_id: p["router_id"].as_str().unwrap_or_default().to_string(),
                        target: p["target"].as_str().unwrap_or_default().to_string(),
                        reachable: p["reachable"].as_bool().unwrap_or(false),
                        latency_us: p["latency_us"].as_u64(),
                    });
                }
            }
        }
    }
    targets.extend(fips.iter().cloned());
    // Sources: each VM out of eth0 to every other target; ext out of the upstream leg to
    // the floating IPs.
    let mut jobs: Vec<(String, String, String, String, IpAddr)> = Vec::new();
    for v in &vms {
        let (has4, has6) = families(v);
        for (label, addr) in &targets {
            if owner_of.get(label) == Some(&v.name) || label.starts_with("fip ") {
                continue;
            }
            if (addr.is_ipv4() && !has4) || (addr.is_ipv6() && !has6) {
                continue;
            }
            jobs.push((
                v.name.clone(),
                v.name.clone(),
                vm::VM_IF.to_string(),
                label.clone(),
                *addr,
            ));
        }
    }
    let ext_ns = st.netns_of("ext");
    for (label, addr) in &fips {
        // From the upstream router whose network holds the floating IP (RegionOne's own for
        // its external network, RegionTwo's otherwise).
        let leg = match &st.region_one_upstream {
            Some(u) if u.gateway.trunc().contains(addr) => REGION_ONE_LEG_IF,
            _ => LEG_IF,
        };
        jobs.push((
            "ext".into(),
            ext_ns.clone(),
            leg.to_string(),
            label.clone(),
            *addr,
        ));
    }
    let opts = ProbeOptions {
        timeout: Duration::from_millis(800),
        retries: 1,
    };
    let cells: Vec<Cell> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(from, ns, ifname, to, addr)| {
                s.spawn(move || {
                    let r = plumbing::probe::icmp(&Netns::named(ns.clone()), ifname, *addr, &opts);
                    let (reachable, rtt_ms) = match r {
                        Ok(r) if r.ok() => (true, r.rtt.map(|d| d.as_secs_f64() * 1000.0)),
                        _ => (false, None),
                    };
                    Cell {
                        from: from.clone(),
                        to: to.clone(),
                        address: *addr,
                        reachable,
                        rtt_ms,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread"))
            .collect()
    });
    let mut sources: Vec<String> = vms.iter().map(|v| v.name.clone()).collect();
    if !fips.is_empty() {
        sources.push("ext".into());
    }
    Ok(Matrix {
        sources,
        targets: targets.into_iter().map(|(l, _)| l).collect(),
        cells,
        routers,
    })
}

/// A VM's targets: its first IPv4 address as `<vm>`, its first IPv6 address as `<vm> v6`,
/// any further address as `<vm> <address>`.
pub fn vm_targets(v: &vm::VmRecord) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let (mut v4, mut v6) = (false, false);
    for a in v.all_addresses() {
        let ip = a.address.addr();
        let label = match ip {
            IpAddr::V4(_) if !v4 => {
                v4 = true;
                v.name.clone()
            }
            IpAddr::V6(_) if !v6 => {
                v6 = true;
                format!("{} v6", v.name)
            }
            _ => format!("{} {ip}", v.name),
        };
        out.push((label, ip));
    }
    out
}

/// Whether a VM has an IPv4 and an IPv6 address.
fn families(v: &vm::VmRecord) -> (bool, bool) {
    let a = v.all_addresses();
    (
        a.iter().any(|a| a.address.addr().is_ipv4()),
        a.iter().any(|a| a.address.addr().is_ipv6()),
    )
}

/// The matrix as rows for `output::table`: one row per source, one column per target.
pub fn rows(m: &Matrix) -> (Vec<String>, Vec<Vec<String>>) {
    let mut headers = vec!["from \\ to".to_string()];
    headers.extend(m.targets.iter().cloned());
    let rows = m
        .sources
        .iter()
        .map(|s| {
            let mut r = vec![s.clone()];
            for t in &m.targets {
                let cell = m.cells.iter().find(|c| &c.from == s && &c.to == t);
                r.push(match cell {
                    None => "·".into(),
                    Some(c) if c.reachable => {
                        format!("ok {:.2} ms", c.rtt_ms.unwrap_or_default())
                    }
                    Some(_) => "NO ANSWER".into(),
                });
            }
            r
        })
        .collect();
    (headers, rows)
}
