//! `ovs-ofctl` as an OpenFlow 1.4 client of one bridge.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What went wrong running `ovs-ofctl`; each variant names the bridge's socket.
#[derive(Debug, thiserror::Error)]
pub enum OfctlError {
    /// `ovs-ofctl` could not be started.
    #[error("running ovs-ofctl for {target}: {source}")]
    Spawn {
        /// The management socket.
        target: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bridge has no management socket (ovs-vswitchd has not opened it yet, or is down).
    #[error("no OpenFlow management socket at {0} (bridge not in ovs-vswitchd yet?)")]
    NoSocket(String),
    /// `ovs-ofctl` failed; `stderr` is its message (a bad flow, a rejected bundle).
    #[error("ovs-ofctl {what} on {target} failed: {stderr}")]
    Failed {
        /// The subcommand.
        what: &'static str,
        /// The management socket.
        target: String,
        /// What ovs-ofctl said.
        stderr: String,
    },
}

/// One flow as `dump-flows` printed it, with its cookie parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedFlow {
    /// The flow's cookie.
    pub cookie: u64,
    /// The whole line as printed (match and actions, OVS's canonical spelling).
    pub text: String,
}

/// One change of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowMod {
    /// Adds `flow` (text in `ovs-ofctl` syntax: `table=..,priority=..,MATCH actions=..`) with
    /// `cookie`. An existing flow with the same table, priority and match is replaced.
    Add {
        /// Cookie to set.
        cookie: u64,
        /// The flow without its cookie.
        flow: String,
    },
    /// Deletes every flow whose cookie is exactly `cookie` (full mask): callers make cookies
    /// unique per flow, so this removes one flow and never one of someone else's.
    DeleteCookie(u64),
}

/// The OpenFlow side of one bridge, reached through its management socket.
#[derive(Debug, Clone)]
pub struct OfctlBridge {
    bridge: String,
    socket: PathBuf,
    binary: String,
}

impl OfctlBridge {
    /// The bridge `bridge` whose ovs-vswitchd keeps its sockets in `rundir`.
    pub fn new(rundir: &Path, bridge: &str) -> Self {
        OfctlBridge {
            bridge: bridge.to_string(),
            socket: rundir.join(format!("{bridge}.mgmt")),
            binary: "ovs-ofctl".into(),
        }
    }

    /// The bridge name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The `unix:` target ovs-ofctl is given.
    pub fn target(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// The management socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the management socket exists (ovs-vswitchd has the bridge).
    pub fn has_socket(&self) -> bool {
        self.socket.exists()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.args(["-O", "OpenFlow14"]);
        c
    }

    /// The flows whose cookie matches `cookie` under `mask` (OpenFlow cookie filtering: the
    /// switch selects them, other flows are not even sent).
    pub fn dump_flows(&self, cookie: u64, mask: u64) -> Result<Vec<DumpedFlow>, OfctlError> {
        if !self.has_socket() {
            return Err(OfctlError::NoSocket(self.socket.display().to_string()));
        }
        let out = self
            .command()
            .args(["dump-flows", "--no-stats"])
            .arg(self.target())
            .arg(format!("cookie={cookie:#x}/{mask:#x}"))
            .output()
            .map_err(|source| OfctlError::Spawn {
                target: self.target(),
                source,
            })?;
        if !out.status.success() {
            return Err(OfctlError::Failed {
                what: "dump-flows",
                target: self.target(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(parse_dumped)
            .collect())
    }

    /// Applies `mods` as one bundle: all or nothing. Deletions are written before additions,
    /// so a flow replaced by one with a new cookie is not removed again by its old cookie.
    pub fn apply_bundle(&self, mods: &[FlowMod]) -> Result<(), OfctlError> {
        if mods.is_empty() {
            return Ok(());
        }
        let mut text = String::with_capacity(mods.len() * 120);
        for m in mods
            .iter()
            .filter(|m| matches!(m, FlowMod::DeleteCookie(_)))
        {
            if let FlowMod::DeleteCookie(c) = m {
                text.push_str(&format!("delete cookie={c:#x}/-1\n"));
            }
        }
        for m in mods {
            if let FlowMod::Add { cookie, flow } = m {
                text.push_str(&format!("add cookie={cookie:#x},{flow}\n"));
            }
        }
        let mut child = self
            .command()
            .args(["--bundle", "add-flows"])
            .arg(self.target())
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| OfctlError::Spawn {
                target: self.target(),
                source,
            })?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A write error means ovs-ofctl exited early; its stderr says why.
        let _ = stdin.write_all(text.as_bytes());
        drop(stdin);
        let out = child
            .wait_with_output()
            .map_err(|source| OfctlError::Spawn {
                target: self.target(),
                source,
            })?;
        if !out.status.success() {
            return Err(OfctlError::Failed {
                what: "--bundle add-flows",
                target: self.target(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// ` cookie=0x63.., table=71, priority=95,... actions=...` → its cookie and text.
fn parse_dumped(line: &str) -> Option<DumpedFlow> {
    let line = line.trim();
    let rest = line.strip_prefix("cookie=")?;
    let end = rest.find([',', ' ']).unwrap_or(rest.len());
    let hex = rest[..end].trim_start_matches("0x");
    let cookie = u64::from_str_radix(hex, 16).ok()?;
    Some(DumpedFlow {
        cookie,
        text: line.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumped_lines_give_their_cookie_and_others_are_skipped() {
        let f = parse_dumped(
            " cookie=0x6370000000000009, table=60, priority=90,reg7=0x10065 actions=drop",
        )
        .unwrap();
        assert_eq!(f.cookie, 0x6370000000000009);
        assert!(parse_dumped(" priority=0 actions=NORMAL").is_none());
        assert!(parse_dumped("NXST_FLOW reply (xid=0x4):").is_none());
    }
}
