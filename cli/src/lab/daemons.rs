//! Daemons supervised by pid file: each lab process (ovsdb-server, ovs-vswitchd, controller,
//! agents) is detached from the CLI and found again through its pid file in the lab
//! directory. A pid is only trusted when the process's command line mentions the lab
//! directory, so a recycled pid is never signalled.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A daemon of the lab, known by its pid file.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// Name shown to the user (`ovsdb-server@node1`, `controller`, `agent@node2`).
    pub name: String,
    /// Its pid file.
    pub pidfile: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// A string its command line must contain for the pid to be trusted (the lab directory).
    pub marker: String,
}

/// What became of a daemon started with [`Daemon::spawn`].
#[derive(Debug)]
pub enum Started {
    /// Running after the settle time.
    Running(i32),
    /// Exited at once (status), or could not be executed (error text).
    Exited(String),
}

impl Daemon {
    /// The pid in the pid file, if any.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The pid when the process is alive (not a zombie) and is this daemon.
    pub fn alive_pid(&self) -> Option<i32> {
        let pid = self.pid()?;
        process_matches(pid, &self.marker).then_some(pid)
    }

    /// Whether the daemon runs.
    pub fn alive(&self) -> bool {
        self.alive_pid().is_some()
    }

    /// Starts `cmd` detached (own session, stdin closed, output to the log), writes the pid
    /// file, and waits `settle` to see whether it exits at once.
    pub fn spawn(&self, mut cmd: Command, settle: Duration) -> Result<Started> {
        if let Some(parent) = self.log.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening log {}", self.log.display()))?;
        // The exact command line heads its output, for whoever reads the log after a failure.
        {
            use std::io::Write;
            let args: Vec<String> = std::iter::once(cmd.get_program())
                .chain(cmd.get_args())
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            writeln!(log, "crosspod lab: starting {}", args.join(" "))
                .with_context(|| format!("writing log {}", self.log.display()))?;
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log fd")?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe; it detaches the child from our terminal and
        // process group so it outlives the CLI and ignores its Ctrl-C.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Ok(Started::Exited(format!(
                    "could not run {:?}: {e}",
                    cmd.get_program()
                )))
            }
        };
        let pid = child.id() as i32;
        std::fs::write(&self.pidfile, format!("{pid}\n"))
            .with_context(|| format!("writing pid file {}", self.pidfile.display()))?;
        let deadline = Instant::now() + settle;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().context("waiting for the child")? {
                let _ = std::fs::remove_file(&self.pidfile);
                return Ok(Started::Exited(describe(status)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Started::Running(pid))
    }

    /// Stops the daemon: SIGTERM, then SIGKILL after `grace`. Returns whether it was running.
    /// The pid file is removed either way.
    pub fn stop(&self, grace: Duration) -> Result<bool> {
        let Some(pid) = self.alive_pid() else {
            let _ = std::fs::remove_file(&self.pidfile);
            return Ok(false);
        };
        signal(pid, libc::SIGTERM);
        if !wait_gone(pid, &self.marker, grace) {
            signal(pid, libc::SIGKILL);
            if !wait_gone(pid, &self.marker, Duration::from_secs(5)) {
                bail!("{} (pid {pid}) survived SIGKILL", self.name);
            }
        }
        let _ = std::fs::remove_file(&self.pidfile);
        Ok(true)
    }

    /// Kills the daemon at once (SIGKILL: no clean-up of its own, as when a machine loses
    /// power or a process crashes). Returns whether it was running. The pid file is removed.
    pub fn kill(&self) -> Result<bool> {
        let Some(pid) = self.alive_pid() else {
            let _ = std::fs::remove_file(&self.pidfile);
            return Ok(false);
        };
        signal(pid, libc::SIGKILL);
        if !wait_gone(pid, &self.marker, Duration::from_secs(5)) {
            bail!("{} (pid {pid}) survived SIGKILL", self.name);
        }
        let _ = std::fs::remove_file(&self.pidfile);
        Ok(true)
    }

    /// The last `n` lines of the log, for error reports.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited at once with status {c}"),
        (None, Some(s)) => format!("killed at once by signal {s}"),
        _ => "exited at once".to_string(),
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a pid we checked belongs to the lab.
    unsafe { libc::kill(pid, sig) };
}

fn wait_gone(pid: i32, marker: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !process_matches(pid, marker) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Whether `pid` is a live (non-zombie) process whose command line contains `marker`.
pub fn process_matches(pid: i32, marker: &str) -> bool {
    if pid <= 0 {
        return false;
    }
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    // The state follows the parenthesised command name, which may itself hold spaces.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("");
    if state == "Z" || state == "X" {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    cmdline.contains(marker)
}

/// A command whose child joins network namespace `netns` between fork and exec (the CLI's
/// own threads never change namespace).
pub fn command_in(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
    let fd = plumbing::Netns::named(netns)
        .open()
        .with_context(|| format!("opening namespace {netns}"))?;
    let mut cmd = Command::new(program);
    // SAFETY: setns is async-signal-safe; `fd` is moved into the closure and stays open
    // until exec (it is close-on-exec).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Runs a command to completion, failing with its stderr when it fails.
pub fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: could not run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{what}: {:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`run`] for a command that may never finish: an OVS daemon started with `--detach` returns
/// only once it is ready, and an ovs-vswitchd whose database is gone waits for it forever.
/// Past `timeout` the command is killed and this fails naming `what` and `log`.
pub fn run_bounded(cmd: &mut Command, what: &str, timeout: Duration, log: &Path) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{what}: could not run {:?}", cmd.get_program()))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the child")? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            bail!(
                "{what}: {:?} failed ({status}): {}",
                cmd.get_program(),
                err.trim()
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what}: not ready within {timeout:?} (killed); see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `path` exists (a socket a daemon creates), up to `timeout`.
pub fn wait_for_path(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod bounded_tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn run_bounded_passes_finishes_fails_and_times_out() {
        let log = std::path::Path::new("/dev/null");
        super::run_bounded(
            &mut Command::new("true"),
            "true",
            Duration::from_secs(5),
            log,
        )
        .expect("true finishes");
        let e = super::run_bounded(
            &mut Command::new("false"),
            "false",
            Duration::from_secs(5),
            log,
        )
        .expect_err("false fails");
        assert!(e.to_string().contains("failed"), "{e}");
        let t = Instant::now();
        let e = super::run_bounded(
            Command::new("sleep").arg("30"),
            "a sleeper",
            Duration::from_millis(300),
            log,
        )
        .expect_err("the sleeper is cut off");
        assert!(e.to_string().contains("not ready within"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_is_found_in_help_on_either_stream_and_only_as_a_whole_word() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let out = bin("out", "echo '      --local-ip <LOCAL_IP>'");
        let err = bin(
            "err",
            "echo 'Error: usage' >&2; echo '  --local-ip=IP' >&2; exit 2",
        );
        let old = bin("old", "echo '  --local-ip-file <F>'; echo '  --pod <POD>'");
        assert!(help_mentions(&out, "--local-ip"));
        assert!(help_mentions(&err, "--local-ip"));
        assert!(!help_mentions(&old, "--local-ip"));
        assert!(!help_mentions(&dir.path().join("missing"), "--local-ip"));
    }

    #[test]
    fn a_spawned_daemon_is_found_by_pid_file_and_stopped() {
        struct TempDir(PathBuf);
        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = std::env::temp_dir().join(format!("crosspod-daemon-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = TempDir(dir.clone());
        let marker = dir.display().to_string();
        let d = Daemon {
            name: "sleeper".into(),
            pidfile: dir.join("sleep.pid"),
            log: dir.join("sleep.log"),
            marker: marker.clone(),
        };
        // `tail -f <dir>/watched`: runs until killed, with the marker on its command line.
        std::fs::write(dir.join("watched"), "").unwrap();
        let mut cmd = Command::new("tail");
        cmd.arg("-f").arg(dir.join("watched"));
        let started = d.spawn(cmd, Duration::from_millis(200)).unwrap();
        struct Stop<'a>(&'a Daemon);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                let _ = self.0.stop(Duration::from_secs(1));
            }
        }
        let _guard = Stop(&d);
        let pid = match started {
            Started::Running(p) => p,
            Started::Exited(e) => panic!("sleeper exited: {e}"),
        };
        assert_eq!(d.alive_pid(), Some(pid));
        assert!(d.stop(Duration::from_secs(5)).unwrap());
        assert!(!d.alive());
        assert!(
            !d.stop(Duration::from_secs(1)).unwrap(),
            "second stop is a no-op"
        );

        let failing = Daemon {
            name: "false".into(),
            pidfile: dir.join("false.pid"),
            log: dir.join("false.log"),
            marker,
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo broken >&2; exit 3"]);
        match failing.spawn(cmd, Duration::from_millis(500)).unwrap() {
            Started::Exited(why) => assert!(why.contains("status 3"), "{why}"),
            Started::Running(p) => panic!("should have exited, runs as {p}"),
        }
        assert!(failing.log_tail(5).contains("broken"));
        assert!(!failing.pidfile.exists());
    }
}

/// Whether `bin --help` names `flag`: the lab passes flags that newer daemons understand
/// (`--local-ip`, `--bridge-network-type`) only to binaries that have them, so it drives
/// both older and newer builds. Both output streams are read: a daemon may print its help
/// as an error, on stderr.
pub fn help_mentions(bin: &std::path::Path, flag: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .env("RUST_BACKTRACE", "0")
        .output()
        .is_ok_and(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[')
                .any(|w| w == flag)
        })
}
