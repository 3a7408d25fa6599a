//! `ovs-vsctl` against one lab OVSDB. The `ovs` crate's OVSDB client is not there yet; this
//! small wrapper is what the lab and `crosspod vm` use until it is (replace with
//! `ovs::Client` transactions when it lands).

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::lab::daemons::run;

/// One OVSDB, reached by `ovs-vsctl --db=<remote>`.
#[derive(Debug, Clone)]
pub struct Vsctl {
    remote: String,
}

impl Vsctl {
    /// The OVSDB at `remote` (`unix:/path/db.sock`).
    pub fn new(remote: impl Into<String>) -> Vsctl {
        Vsctl {
            remote: remote.into(),
        }
    }

    /// The OVSDB whose socket is `sock`.
    pub fn unix(sock: &Path) -> Vsctl {
        Vsctl::new(format!("unix:{}", sock.display()))
    }

    /// The remote string.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    fn command(&self, no_wait: bool) -> Command {
        let mut c = Command::new("ovs-vsctl");
        c.arg(format!("--db={}", self.remote)).arg("--timeout=20");
        if no_wait {
            c.arg("--no-wait");
        }
        c
    }

    /// Runs `ovs-vsctl ARGS` and waits for ovs-vswitchd to apply the change.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        run(
            self.command(false).args(args),
            &format!("ovs-vsctl on {}", self.remote),
        )
    }

    /// Runs `ovs-vsctl --no-wait ARGS` (database only; for when no vswitchd runs yet).
    pub fn run_no_wait(&self, args: &[&str]) -> Result<String> {
        run(
            self.command(true).args(args),
            &format!("ovs-vsctl on {}", self.remote),
        )
    }

    /// Whether the database answers.
    pub fn answers(&self) -> bool {
        self.run_no_wait(&["show"]).is_ok()
    }

    /// Names of the bridges.
    pub fn bridges(&self) -> Result<Vec<String>> {
        Ok(self
            .run_no_wait(&["list-br"])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// The bridge a port is on, if any.
    pub fn port_bridge(&self, port: &str) -> Option<String> {
        self.run_no_wait(&["port-to-br", port])
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Creates a userspace-datapath bridge unless it exists; returns whether it was created.
    pub fn ensure_netdev_bridge(&self, bridge: &str) -> Result<bool> {
        if self.bridges()?.iter().any(|b| b == bridge) {
            return Ok(false);
        }
        self.run(&[
            "--may-exist",
            "add-br",
            bridge,
            "--",
            "set",
            "bridge",
            bridge,
            "datapath_type=netdev",
        ])?;
        Ok(true)
    }

    /// Adds `port` to `bridge` unless it is already there; returns whether it was added.
    pub fn ensure_port(&self, bridge: &str, port: &str, extra: &[&str]) -> Result<bool> {
        if self.port_bridge(port).as_deref() == Some(bridge) {
            return Ok(false);
        }
        let mut args = vec!["--may-exist", "add-port", bridge, port];
        args.extend_from_slice(extra);
        self.run(&args)?;
        Ok(true)
    }

    /// One column of a record (`get Port tap1 tag`), trimmed; `None` when absent or empty.
    pub fn get(&self, table: &str, record: &str, column: &str) -> Option<String> {
        let v = self
            .run_no_wait(&["--if-exists", "get", table, record, column])
            .ok()?;
        let v = v.trim().trim_matches('"').to_string();
        (!v.is_empty() && v != "[]").then_some(v)
    }
}
