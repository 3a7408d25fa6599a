//! The controller as a lab daemon: `crosspod-controller` on 127.0.0.1 with the lab's ports,
//! its SQLite database and log in `<lab dir>/controller/`, and the lab's tokens file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::daemons::{Daemon, Started};
use super::state::LabState;
use crate::http;

/// The controller daemon of the lab.
pub fn daemon(st: &LabState) -> Daemon {
    let l = st.layout();
    Daemon {
        name: "controller".into(),
        pidfile: l.controller_dir().join("controller.pid"),
        log: l.controller_dir().join("controller.log"),
        marker: tokens_arg(st),
    }
}

/// `--tokens-file=<lab>/tokens`: on the command line, it also identifies the process.
fn tokens_arg(st: &LabState) -> String {
    format!("--tokens-file={}", st.layout().tokens_file().display())
}

/// The controller's command line.
pub fn command(st: &LabState, bin: &Path) -> Command {
    let l = st.layout();
    let pki = l.pki_dir();
    let server = crate::pki::files(&pki, super::CONTROLLER_CERT);
    let mut c = Command::new(bin);
    c.arg("--bind=127.0.0.1")
        .arg(format!("--tricircle-port={}", st.tricircle_port))
        .arg(format!("--neutron-port={}", st.neutron_port))
        .arg(format!(
            "--database=sqlite://{}",
            l.controller_dir().join("controller.db").display()
        ))
        .arg(tokens_arg(st))
        .arg(format!("--agent-port={}", st.agent_port))
        .arg(format!("--agent-tls-cert={}", server.cert.display()))
        .arg(format!("--agent-tls-key={}", server.key.display()))
        .arg(format!(
            "--agent-ca={}",
            pki.join(crate::pki::CA_CERT).display()
        ))
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1");
    if st.tls {
        c.arg(format!("--tls-cert={}", server.cert.display()))
            .arg(format!("--tls-key={}", server.key.display()));
    }
    if let Some(port) = st.keystone_port {
        c.args(super::keystone::controller_flags(st, port));
    }
    if super::daemons::help_mentions(bin, "--bridge-network-type") {
        c.arg(format!("--bridge-network-type={}", st.bridge_network_type));
    }
    c
}

/// Starts the controller and waits (up to `wait`) for its Neutron API to answer. Returns
/// `Ok(None)` when it runs and answers, `Ok(Some(why))` when it is not running or not
/// answering.
pub fn start(st: &LabState, bin: &Path, wait: Duration) -> Result<Option<String>> {
    let d = daemon(st);
    std::fs::create_dir_all(st.layout().controller_dir()).context("creating controller dir")?;
    if !bin.exists() {
        return Ok(Some(format!(
            "binary {} not found (build it with `cargo build -p controller`, or pass --controller-bin / CROSSPOD_CONTROLLER_BIN)",
            bin.display()
        )));
    }
    for (port, flag) in [
        (st.tricircle_port, "--tricircle-port"),
        (st.neutron_port, "--neutron-port"),
        (st.agent_port, "--agent-port"),
    ] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Ok(Some(format!(
                "127.0.0.1:{port} is taken by another process (not this lab's controller); free it or bring the lab up with another {flag}"
            )));
        }
    }
    match d.spawn(command(st, bin), Duration::from_millis(300))? {
        Started::Exited(why) => Ok(Some(format!(
            "{why}; last log lines ({}):\n{}",
            d.log.display(),
            d.log_tail(5)
        ))),
        Started::Running(pid) => {
            tracing::info!(pid, "controller started");
            let deadline = Instant::now() + wait;
            loop {
                if neutron_answers(st) {
                    return Ok(None);
                }
                if !d.alive() {
                    return Ok(Some(format!(
                        "exited during start-up; last log lines ({}):\n{}",
                        d.log.display(),
                        d.log_tail(5)
                    )));
                }
                if Instant::now() >= deadline {
                    return Ok(Some(format!(
                        "runs but its Neutron API on 127.0.0.1:{} does not answer; see {}",
                        st.neutron_port,
                        d.log.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Whether the Neutron API answers HTTP on its port (any status).
pub fn neutron_answers(st: &LabState) -> bool {
    http::request(
        "GET",
        &format!("{}/", st.api_url(st.neutron_port)),
        None,
        None,
        Duration::from_secs(2),
    )
    .is_ok()
}

/// Whether the Tricircle API answers HTTP on its port (any status).
pub fn tricircle_answers(st: &LabState) -> bool {
    http::request(
        "GET",
        &format!("{}/", st.api_url(st.tricircle_port)),
        None,
        None,
        Duration::from_secs(2),
    )
    .is_ok()
}
