//! A throwaway ovsdb-server (and optionally ovs-vswitchd) in a temp dir, for tests of this
//! crate, the agent and the lab. Everything it starts is killed by pid file and its
//! directory removed on drop, even when the test panics.
//!
//! The daemons get `OVS_RUNDIR`/`OVS_LOGDIR`/`OVS_DBDIR` pointing at the temp dir, so several
//! sandboxes never share a socket. Bridges of a vswitchd in the root namespace are real
//! (tap) devices there: give them names unique to the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::transport::Endpoint;

/// Where the Debian package installs the Open_vSwitch schema.
pub const VSWITCH_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique in this machine for this process's tests: `<prefix><pid%100000><n>`, cut
/// to 15 bytes (interface names).
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut s = format!("{prefix}{}x{n}", std::process::id() % 100_000);
    s.truncate(15);
    s
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Also start ovs-vswitchd (bridges then need `datapath_type=netdev` here).
    pub vswitchd: bool,
    /// Run the daemons inside this existing named network namespace (`ip netns exec`).
    pub netns: Option<String>,
    /// Create a one-server clustered database instead of a standalone one. Only clustered
    /// databases report real txn ids, so only they let `monitor_cond_since` resume with a
    /// diff (found = true) after a restart.
    pub clustered: bool,
}

/// A running sandbox. See the module docs.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
    opts: SandboxOptions,
}

fn sandbox_err(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Sandbox {
        what: what.into(),
        reason: reason.into(),
    }
}

fn find_binary(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Checks that the binaries and schema a sandbox needs are installed; the error names what
/// is missing and how to get it.
pub fn check_prerequisites(opts: &SandboxOptions) -> Result<()> {
    let mut need = vec!["ovsdb-server", "ovsdb-tool", "ovs-vsctl"];
    if opts.vswitchd {
        need.push("ovs-vswitchd");
    }
    if opts.netns.is_some() {
        need.push("ip");
    }
    let missing: Vec<_> = need
        .into_iter()
        .filter(|b| find_binary(b).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(sandbox_err(
            "prerequisites",
            format!(
                "missing {} (apt-get install openvswitch-switch iproute2)",
                missing.join(", ")
            ),
        ));
    }
    if !Path::new(VSWITCH_SCHEMA).is_file() {
        return Err(sandbox_err(
            "prerequisites",
            format!("missing {VSWITCH_SCHEMA} (apt-get install openvswitch-switch)"),
        ));
    }
    if (opts.netns.is_some() || opts.vswitchd) && unsafe { libc::geteuid() } != 0 {
        return Err(sandbox_err(
            "prerequisites",
            "ovs-vswitchd and network namespaces need root; run the tests as root",
        ));
    }
    Ok(())
}

impl Sandbox {
    /// Creates the database and starts the daemons (blocking; takes tens of milliseconds).
    pub fn start(opts: SandboxOptions) -> Result<Sandbox> {
        check_prerequisites(&opts)?;
        let dir = tempfile::Builder::new()
            .prefix("ovs-sb-")
            .tempdir_in("/tmp")
            .map_err(|e| sandbox_err("temp dir", e.to_string()))?;
        let sb = Sandbox { dir, opts };
        let db = sb.db_file();
        let schema = VSWITCH_SCHEMA;
        if sb.opts.clustered {
            let raft = format!("unix:{}", sb.dir.path().join("raft.sock").display());
            sb.run(
                "ovsdb-tool create-cluster",
                &["ovsdb-tool", "create-cluster", path_str(&db), schema, &raft],
                false,
            )?;
        } else {
            sb.run(
                "ovsdb-tool create",
                &["ovsdb-tool", "create", path_str(&db), schema],
                false,
            )?;
        }
        sb.start_ovsdb()?;
        sb.vsctl(&["--no-wait", "init"])?;
        if sb.opts.vswitchd {
            sb.start_vswitchd()?;
        }
        tracing::debug!(dir = %sb.dir.path().display(), vswitchd = sb.opts.vswitchd, "sandbox up");
        Ok(sb)
    }

    /// The sandbox directory (db, sockets, pid and log files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database file (kept across [`Sandbox::restart_ovsdb`]).
    pub fn db_file(&self) -> PathBuf {
        self.dir.path().join("conf.db")
    }

    /// The server's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("db.sock")
    }

    /// The endpoint to give [`crate::Client`].
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.socket())
    }

    /// `unix:<socket>`, the form `ovs-vsctl --db=` takes.
    pub fn db_arg(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// The namespace the daemons run in, if any.
    pub fn netns(&self) -> Option<&str> {
        self.opts.netns.as_deref()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a command (inside the namespace when `in_netns`), with the sandbox's OVS dirs.
    fn run(&self, what: &str, argv: &[&str], in_netns: bool) -> Result<String> {
        let mut full: Vec<&str> = Vec::new();
        if in_netns {
            if let Some(ns) = &self.opts.netns {
                full.extend(["ip", "netns", "exec", ns.as_str()]);
            }
        }
        full.extend(argv);
        let d = self.dir.path();
        let out = Command::new(full[0])
            .args(&full[1..])
            .env("OVS_RUNDIR", d)
            .env("OVS_LOGDIR", d)
            .env("OVS_DBDIR", d)
            .output()
            .map_err(|e| sandbox_err(what, format!("spawning {}: {e}", full[0])))?;
        if !out.status.success() {
            return Err(sandbox_err(
                what,
                format!(
                    "`{}` failed ({}): {}",
                    full.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `ovs-vsctl --db=unix:<socket> ARGS` (add `--no-wait` yourself when no vswitchd
    /// runs and the command would wait for it) and returns its stdout.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        let db = format!("--db={}", self.db_arg());
        let mut argv = vec!["ovs-vsctl", db.as_str(), "--timeout=20"];
        if !self.opts.vswitchd && !args.contains(&"--no-wait") {
            argv.push("--no-wait");
        }
        argv.extend(args);
        self.run(&format!("ovs-vsctl {}", args.join(" ")), &argv, false)
    }

    /// Starts ovsdb-server on the existing database file.
    pub fn start_ovsdb(&self) -> Result<()> {
        let remote = format!("--remote=punix:{}", self.socket().display());
        let pid = format!("--pidfile={}", self.file("ovsdb.pid").display());
        let log = format!("--log-file={}", self.file("ovsdb.log").display());
        let ctl = format!("--unixctl={}", self.file("ovsdb.ctl").display());
        let db = self.db_file();
        self.run(
            "start ovsdb-server",
            &[
                "ovsdb-server",
                path_str(&db),
                &remote,
                &pid,
                "--detach",
                &log,
                &ctl,
            ],
            true,
        )?;
        Ok(())
    }

    /// Kills ovsdb-server (SIGTERM, then SIGKILL after 3 s) and waits for it to exit.
    pub fn stop_ovsdb(&self) -> Result<()> {
        kill_pidfile(&self.file("ovsdb.pid"))
    }

    /// Stops and starts ovsdb-server on the same database file.
    pub fn restart_ovsdb(&self) -> Result<()> {
        self.stop_ovsdb()?;
        self.start_ovsdb()
    }

    /// Starts ovs-vswitchd against the sandbox database.
    pub fn start_vswitchd(&self) -> Result<()> {
        let db = self.db_arg();
        let pid = format!("--pidfile={}", self.file("vswitchd.pid").display());
        let log = format!("--log-file={}", self.file("vswitchd.log").display());
        let ctl = format!("--unixctl={}", self.file("vswitchd.ctl").display());
        self.run(
            "start ovs-vswitchd",
            &["ovs-vswitchd", &db, &pid, "--detach", &log, &ctl],
            true,
        )?;
        Ok(())
    }

    /// Stops ovs-vswitchd with `exit --cleanup`, so the datapath and its devices (persistent
    /// taps of the netdev datapath) go with it, then makes sure the process is gone.
    pub fn stop_vswitchd(&self) -> Result<()> {
        let pidfile = self.file("vswitchd.pid");
        if !pidfile.exists() {
            return Ok(());
        }
        let pid = read_pid(&pidfile)?;
        let ctl = self.file("vswitchd.ctl");
        if let Err(e) = self.run(
            "ovs-vswitchd exit --cleanup",
            &[
                "ovs-appctl",
                "-t",
                path_str(&ctl),
                "--timeout=5",
                "exit",
                "--cleanup",
            ],
            false,
        ) {
            tracing::warn!(error = %e, "vswitchd did not exit cleanly; killing it");
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !process_gone(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        kill_pidfile(&pidfile)
    }

    /// Makes ovsdb-server also listen on TCP at 127.0.0.1 (a free port) and returns that
    /// endpoint.
    pub fn add_tcp_remote(&self) -> Result<Endpoint> {
        let ctl = self.file("ovsdb.ctl");
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| sandbox_err("pick a tcp port", e.to_string()))?
                .port();
            self.run(
                "ovsdb-server/add-remote",
                &[
                    "ovs-appctl",
                    "-t",
                    path_str(&ctl),
                    "ovsdb-server/add-remote",
                    &format!("ptcp:{port}:127.0.0.1"),
                ],
                false,
            )?;
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                let probe = match &self.opts.netns {
                    // Inside a namespace the port is not reachable from here; trust the server.
                    Some(_) => return Ok(Endpoint::Tcp(format!("127.0.0.1:{port}"))),
                    None => std::net::TcpStream::connect(("127.0.0.1", port)),
                };
                match probe {
                    Ok(_) => return Ok(Endpoint::Tcp(format!("127.0.0.1:{port}"))),
                    Err(e) => last = e.to_string(),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(sandbox_err("listen on tcp", last))
    }

    /// The last `n` lines of the ovsdb-server log, for failure messages.
    pub fn ovsdb_log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(self.file("ovsdb.log")).unwrap_or_default();
        let lines: Vec<_> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // vswitchd first, while ovsdb-server still answers it.
        if let Err(e) = self.stop_vswitchd() {
            tracing::warn!(dir = %self.dir.path().display(), error = %e, "sandbox cleanup");
        }
        if let Err(e) = self.stop_ovsdb() {
            tracing::warn!(dir = %self.dir.path().display(), error = %e, "sandbox cleanup");
        }
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn process_gone(pid: i32) -> bool {
    // A zombie (parent not reaping) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => true,
    }
}

fn read_pid(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| sandbox_err("read pid file", format!("{}: {e}", path.display())))?;
    text.trim()
        .parse()
        .map_err(|e| sandbox_err("read pid file", format!("{}: {e}", path.display())))
}

/// Kills the process named in a pid file, if the file exists, and waits until it is gone.
fn kill_pidfile(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let pid = read_pid(path)?;
    if pid <= 1 {
        return Err(sandbox_err(
            "read pid file",
            format!("{}: pid {pid}", path.display()),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    // SAFETY: kill(2) with a pid read from our own daemon's pid file.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut killed = false;
    // Until it is really gone: a daemon restarted on the same files must not find the old
    // one still holding their locks (on a loaded machine dying takes a while).
    while !process_gone(pid) {
        if !killed && Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        if Instant::now() > deadline + Duration::from_secs(10) {
            return Err(sandbox_err(
                "stop",
                format!("pid {pid} ({}) survived SIGKILL for 10 s", path.display()),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}
