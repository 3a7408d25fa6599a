//! One `crosspod-agent` per lab node, in the root namespace, told where its node lives:
//! `--node-netns` (the node's namespace, where its OVS and uplinks are), `--netns-prefix`
//! (router namespaces it creates), its node's OVSDB socket, the userspace datapath, and a
//! Prometheus port of its own so two agents never collide, and (when the agent has the flag)
//! `--local-ip`, the node's tunnel IP on the underlay.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use super::daemons::{Daemon, Started};
use super::state::{LabState, NodeSpec};
use crate::http;

/// `--ovsdb=unix:<lab>/<node>/db.sock`: on the command line, it also identifies the agent.
fn ovsdb_arg(st: &LabState, node: &NodeSpec) -> String {
    format!("--ovsdb={}", st.layout().ovsdb_remote(&node.name))
}

/// The agent daemon of `node`.
pub fn daemon(st: &LabState, node: &NodeSpec) -> Daemon {
    let dir = st.layout().agents_dir();
    Daemon {
        name: format!("agent@{}", node.name),
        pidfile: dir.join(format!("{}.pid", node.name)),
        log: dir.join(format!("{}.log", node.name)),
        marker: ovsdb_arg(st, node),
    }
}

/// The namespace prefix the agent of `node` uses for its router namespaces.
pub fn netns_prefix(node: &NodeSpec) -> String {
    format!("{}-", node.netns)
}

/// The agent's command line; `local_ip`: the agent understands `--local-ip`.
pub fn command(st: &LabState, node: &NodeSpec, bin: &Path, local_ip: bool) -> Command {
    let pki = st.layout().pki_dir();
    let cert = crate::pki::files(&pki, &node.name);
    let mut c = Command::new(bin);
    c.arg(format!("--pod={}", node.region))
        .arg(format!("--node={}", node.name))
        .arg(format!(
            "--controller-url=https://127.0.0.1:{}",
            st.agent_port
        ))
        .arg(format!("--tls-cert={}", cert.cert.display()))
        .arg(format!("--tls-key={}", cert.key.display()))
        .arg(format!("--ca={}", pki.join(crate::pki::CA_CERT).display()))
        .arg(format!("--bridge-mappings={}", node.bridge_mappings))
        .arg(format!("--uplinks={}", node.uplinks))
        .arg("--datapath-type=netdev")
        .arg(ovsdb_arg(st, node))
        .arg(format!("--node-netns={}", node.netns))
        .arg(format!("--netns-prefix={}", netns_prefix(node)))
        .arg(format!("--metrics-bind=127.0.0.1:{}", node.metrics_port))
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1");
    if let (true, Some(ip)) = (local_ip, node.tunnel_ip) {
        c.arg(format!("--local-ip={ip}"));
    }
    c
}

/// Whether the agent binary has `--local-ip` (older agents have no tunnels).
pub fn has_local_ip(bin: &Path) -> bool {
    super::daemons::help_mentions(bin, "--local-ip")
}

/// Starts the agent of `node`. `Ok(None)` when it runs, `Ok(Some(why))` when it does not.
pub fn start(st: &LabState, node: &NodeSpec, bin: &Path, local_ip: bool) -> Result<Option<String>> {
    let d = daemon(st, node);
    if !bin.exists() {
        return Ok(Some(format!(
            "binary {} not found (build it with `cargo build -p agent`, or pass --agent-bin / CROSSPOD_AGENT_BIN)",
            bin.display()
        )));
    }
    match d.spawn(
        command(st, node, bin, local_ip),
        Duration::from_millis(1000),
    )? {
        Started::Running(pid) => {
            tracing::info!(pid, node = %node.name, "agent started");
            Ok(None)
        }
        Started::Exited(why) => Ok(Some(format!(
            "{why}; last log lines ({}):\n{}",
            d.log.display(),
            d.log_tail(5)
        ))),
    }
}

/// Whether the agent's metrics endpoint answers.
pub fn metrics_answer(node: &NodeSpec) -> bool {
    http::request(
        "GET",
        &format!("http://127.0.0.1:{}/metrics", node.metrics_port),
        None,
        None,
        Duration::from_secs(2),
    )
    .is_ok_and(|r| r.ok())
}
