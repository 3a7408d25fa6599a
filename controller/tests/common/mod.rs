//! Test harness: the real `crosspod-controller` binary on free ports with a temp SQLite (or
//! a throwaway PostgreSQL database), a temp tokens file, a tiny HTTP client, and the real
//! `openstack` CLI. Everything is removed on Drop, even when a test fails.
#![allow(dead_code)]

pub mod guide;
pub mod keystone;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique across parallel tests and processes.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Tokens every test controller accepts.
pub const ADMIN: &str = "admintok";
pub const DEMO: &str = "demotok";
pub const OTHER: &str = "othertok";

/// How to start a controller ([`Controller::start_opts`]).
#[derive(Default, Clone, Copy)]
pub struct Opts<'a> {
    /// Database URL; None = a temp SQLite file in the controller's own dir.
    pub database: Option<&'a str>,
    /// Extra command-line flags.
    pub extra: &'a [&'a str],
    /// Extra environment of the process (e.g. `CROSSPOD_FAILPOINTS`).
    pub env: &'a [(&'a str, &'a str)],
    /// Extra lines of the tokens file (`TOKEN PROJECT ROLES`).
    pub tokens: &'a [&'a str],
}

/// A controller process that ended before it listened.
#[derive(Debug)]
pub struct Early {
    /// Its exit status (None if it could not be reaped).
    pub status: Option<ExitStatus>,
    /// Its log lines.
    pub log: Vec<String>,
}

/// A running controller process (killed on Drop).
pub struct Controller {
    child: Child,
    pub neutron: SocketAddr,
    pub tricircle: SocketAddr,
    /// The agent listener (mutual TLS), when started with `--agent-tls-*`.
    pub agent: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Controller {
    /// Start on a fresh SQLite file.
    pub fn start() -> Controller {
        Self::start_with(None, &[])
    }

    /// Start with a database URL (None = temp SQLite) and extra flags.
    pub fn start_with(database: Option<&str>, extra: &[&str]) -> Controller {
        Self::start_opts(&Opts {
            database,
            extra,
            ..Opts::default()
        })
    }

    /// Start with [`Opts`]; panics (with the log) when the process does not come up.
    pub fn start_opts(opts: &Opts) -> Controller {
        Self::try_start(opts).unwrap_or_else(|e| {
            panic!(
                "controller did not start (exit: {:?}); log:\n{}",
                e.status,
                e.log.join("\n")
            )
        })
    }

    /// Start with [`Opts`]; `Err` when the process exits (or stays silent for a minute) before
    /// it listens, e.g. a failpoint that fires at start.
    pub fn try_start(opts: &Opts) -> Result<Controller, Early> {
        let Opts {
            database,
            extra,
            env,
            tokens: extra_tokens,
        } = *opts;
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens");
        std::fs::write(
            &tokens,
            format!(
                "# test tokens\n{ADMIN} admin admin\n{DEMO} demo member\n{OTHER} other member\n{}{}",
                guide::AGENT_NODES
                    .iter()
                    .map(|n| format!("{} crosspod-agents agent {n}\n", guide::agent(n)))
                    .collect::<String>(),
                extra_tokens
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            ),
        )
        .expect("write tokens");
        let db = match database {
            Some(u) => u.to_string(),
            None => format!("sqlite://{}", dir.path().join("controller.db").display()),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_crosspod-controller"))
            .args([
                "--bind",
                "127.0.0.1",
                "--neutron-port",
                "0",
                "--tricircle-port",
                "0",
                "--log-format",
                "json",
            ])
            .arg("--database")
            .arg(&db)
            .arg("--tokens-file")
            .arg(&tokens)
            .args(extra)
            .env_remove("CROSSPOD_CONFIG")
            .env("CROSSPOD_LOG", "info,sqlx=warn")
            .env_remove("CROSSPOD_FAILPOINTS")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crosspod-controller");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("APIs listening") {
                    let _ = tx.send(line.clone());
                }
                log2.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(e) => {
                // Disconnected: stderr closed, the process is exiting; Timeout: kill it.
                if matches!(e, mpsc::RecvTimeoutError::Timeout) {
                    let _ = child.kill();
                }
                let status = child.wait().ok();
                let log = log.lock().unwrap().clone();
                return Err(Early { status, log });
            }
        };
        let v: Value = serde_json::from_str(&line).expect("json log line");
        let addr = |k: &str| {
            v["fields"][k]
                .as_str()
                .expect("addr field")
                .parse()
                .expect("addr")
        };
        Ok(Controller {
            neutron: addr("neutron_addr"),
            tricircle: addr("tricircle_addr"),
            agent: v["fields"]["agent_addr"]
                .as_str()
                .filter(|a| !a.is_empty())
                .map(|a| a.parse().expect("agent addr")),
            child,
            dir,
            log,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the process (no shutdown path runs) and reap it.
    pub fn kill9(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL the controller");
        self.child.wait().expect("reap the controller")
    }

    /// Waits up to `timeout` for the process to exit on its own; None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("poll the controller") {
                return Some(s);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The tokens file path.
    pub fn tokens_file(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// Neutron endpoint URL.
    pub fn neutron_url(&self) -> String {
        format!("http://{}", self.neutron)
    }

    /// Tricircle endpoint URL.
    pub fn tricircle_url(&self) -> String {
        format!("http://{}", self.tricircle)
    }

    /// Request against the Neutron API.
    pub fn n(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        request(
            self.neutron,
            method,
            path,
            token,
            body.map(|b| b.to_string().into_bytes()).as_deref(),
        )
    }

    /// Request against the Tricircle API.
    pub fn t(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        request(
            self.tricircle,
            method,
            path,
            token,
            body.map(|b| b.to_string().into_bytes()).as_deref(),
        )
    }

    /// Whether any log line reports a 5xx.
    pub fn log_has_5xx(&self) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("\"status\":5"))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request (Connection: close); returns status and parsed JSON (Null if empty).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let (status, raw) = request_raw(addr, method, path, token, body, &[]);
    let v = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into()))
    };
    (status, v)
}

/// Raw request with extra headers; returns status and body bytes.
pub fn request_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(t) = token {
        req.push_str(&format!("X-Auth-Token: {t}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or(&[]);
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    // The server may answer (413) before reading a huge body; ignore write errors then.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&buf[..text_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .expect("status")
        .parse()
        .expect("status code");
    let mut body = buf[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..p]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < p + 2 + n {
            break;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + n]);
        b = &b[(p + 4 + n).min(b.len())..];
    }
    out
}

/// The `openstack` CLI of the venv (CROSSPOD_VENV or /var/lib/crosspod/venv); panics with a
/// clear message when it is missing.
pub fn openstack_bin() -> PathBuf {
    let venv = std::env::var("CROSSPOD_VENV").unwrap_or_else(|_| "/var/lib/crosspod/venv".into());
    let p = Path::new(&venv).join("bin/openstack");
    assert!(
        p.exists(),
        "the openstack CLI is missing at {} (install python-openstackclient in the venv, scripts/install-deps.sh, or set CROSSPOD_VENV)",
        p.display()
    );
    p
}

/// Run `openstack` against the controller with a token; returns (success, stdout, stderr).
pub fn openstack(c: &Controller, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(openstack_bin())
        .args([
            "--os-auth-type",
            "admin_token",
            "--os-endpoint",
            &c.neutron_url(),
            "--os-token",
            token,
        ])
        .args(args)
        .env_remove("OS_CLOUD")
        .env("HOME", c.dir.path())
        .output()
        .expect("run openstack");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `openstack ... -f json` and parse the output; panics with stderr on failure.
pub fn openstack_json(c: &Controller, token: &str, args: &[&str]) -> Value {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["-f", "json"]);
    let (ok, out, err) = openstack(c, token, &a);
    assert!(
        ok,
        "openstack {args:?} failed:\n{err}\ncontroller log tail:\n{}",
        c.log
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("openstack {args:?} printed non-JSON ({e}): {out}"))
}

/// A throwaway PostgreSQL database on the server of CROSSPOD_TEST_PG_URL, dropped on Drop.
pub struct PgDb {
    pub url: String,
    admin_url: String,
    name: String,
}

/// The PostgreSQL server URL for tests; panics with a clear message when unset.
pub fn pg_url() -> String {
    std::env::var("CROSSPOD_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("CROSSPOD_TEST_PG_URL is not set: these tests need PostgreSQL (scripts/test.sh starts one; by hand: . scripts/lib/pg.sh; pg_throwaway_start /tmp/pg 55433)")
    })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

async fn pg_exec(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::query(sql).execute(&mut c).await?;
    c.close().await
}

impl PgDb {
    /// Create a uniquely named database.
    pub fn create() -> PgDb {
        let admin_url = pg_url();
        let name = unique("crosspod_t");
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("PG URL has a database path");
        let url = format!("{base}/{name}");
        let sql = format!("CREATE DATABASE {name}");
        let u = admin_url.clone();
        std::thread::spawn(move || block_on(pg_exec(&u, &sql)))
            .join()
            .expect("thread")
            .unwrap_or_else(|e| panic!("creating PostgreSQL database {name} on {admin_url}: {e}"));
        PgDb {
            url,
            admin_url,
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let u = self.admin_url.clone();
        let _ = std::thread::spawn(move || block_on(pg_exec(&u, &sql))).join();
    }
}
