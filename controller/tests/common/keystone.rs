//! A throwaway real Keystone for tests: Keystone and uWSGI from the venv of
//! `CROSSPOD_KEYSTONE_VENV` (default /var/lib/crosspod/keystone-venv, made by
//! scripts/install-deps.sh), SQLite and fernet keys in a temp dir, served on a free port of
//! 127.0.0.1. The uWSGI processes run in a process group of their own, killed by its id on
//! Drop (even when the test fails), so several tests can each run one in parallel.
//!
//! Self-contained (std, serde_json, tempfile) so that the CLI's tests include it too.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Password of every user this helper makes (and of `admin`).
pub const PASSWORD: &str = "secret";
/// crosspod's own service user (role `service` on project `service`).
pub const SERVICE_USER: &str = "crosspod";

/// The venv holding `keystone-manage` and `uwsgi`; panics with a clear message when missing.
pub fn venv() -> PathBuf {
    let v = std::env::var("CROSSPOD_KEYSTONE_VENV")
        .unwrap_or_else(|_| "/var/lib/crosspod/keystone-venv".into());
    let v = PathBuf::from(v);
    assert!(
        v.join("bin/keystone-manage").exists() && v.join("bin/uwsgi").exists(),
        "Keystone is missing at {} (scripts/install-deps.sh installs it; or set CROSSPOD_KEYSTONE_VENV)",
        v.display()
    );
    v
}

/// A running Keystone (killed, with its whole process group, on Drop).
pub struct Keystone {
    /// Its files (config, database, keys, log).
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: std::net::SocketAddr,
    child: Option<Child>,
}

/// A free port on 127.0.0.1 (the kernel's choice).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An HTTP answer: status, headers (lower-case names), JSON body.
pub type Answer = (u16, Vec<(String, String)>, Value);

/// One HTTP/1.1 request; returns status, headers (lower-case names) and JSON body.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let hdrs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut raw = buf[end + 4..].to_vec();
    if hdrs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut b = &raw[..];
        while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(String::from_utf8_lossy(&b[..p]).trim(), 16).unwrap_or(0);
            if n == 0 || b.len() < p + 2 + n {
                break;
            }
            out.extend_from_slice(&b[p + 2..p + 2 + n]);
            b = &b[(p + 4 + n).min(b.len())..];
        }
        raw = out;
    }
    let v = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into()))
    };
    Ok((status, hdrs, v))
}

impl Keystone {
    /// Keystone with tokens valid one hour.
    pub fn start() -> Keystone {
        Self::start_with(3600)
    }

    /// Keystone whose tokens expire after `expiration_s` seconds (`[token] expiration`),
    /// bootstrapped (`admin`/[`PASSWORD`] on project `admin`) with crosspod's service user.
    pub fn start_with(expiration_s: u64) -> Keystone {
        let v = venv();
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let port = free_port();
        let conf = d.join("keystone.conf");
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nlog_file = {d}/keystone.log\n[database]\nconnection = sqlite:///{d}/keystone.db\n\
                 [token]\nprovider = fernet\nexpiration = {expiration_s}\n\
                 [fernet_tokens]\nkey_repository = {d}/fernet\n[credential]\nkey_repository = {d}/cred\n\
                 [identity]\npassword_hash_rounds = 4\n",
                d = d.display()
            ),
        )
        .expect("write keystone.conf");
        let manage = |args: &[&str]| {
            run(
                Command::new(v.join("bin/keystone-manage"))
                    .arg("--config-file")
                    .arg(&conf)
                    .args(args),
                &format!("keystone-manage {}", args[0]),
            )
        };
        manage(&["db_sync"]);
        manage(&[
            "fernet_setup",
            "--keystone-user",
            "root",
            "--keystone-group",
            "root",
        ]);
        manage(&[
            "credential_setup",
            "--keystone-user",
            "root",
            "--keystone-group",
            "root",
        ]);
        let public = format!("http://127.0.0.1:{port}/v3/");
        manage(&[
            "bootstrap",
            "--bootstrap-password",
            PASSWORD,
            "--bootstrap-public-url",
            &public,
            "--bootstrap-region-id",
            "RegionOne",
        ]);
        let mut ks = Keystone {
            addr: ([127, 0, 0, 1], port).into(),
            child: None,
            dir,
        };
        ks.serve();
        ks.ensure_user("service", SERVICE_USER, "service");
        ks
    }

    /// Start uWSGI (again, after [`Keystone::kill`]) on the same port and files.
    pub fn serve(&mut self) {
        let v = venv();
        let d = self.dir.path();
        let mut cmd = Command::new(v.join("bin/uwsgi"));
        cmd.args(["--http", &self.addr.to_string()])
            .args(["--module", "keystone.wsgi.api:application"])
            .args(["--master", "--processes", "1", "--threads", "4"])
            // uWSGI's HTTP router closes every connection after its answer without saying
            // so; clients that reuse it (requests, hyper) then fail now and then.
            .args(["--add-header", "Connection: close"])
            .arg("--logto")
            .arg(d.join("uwsgi.log"))
            .env("OS_KEYSTONE_CONFIG_FILES", d.join("keystone.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.child = Some(cmd.spawn().expect("spawn uwsgi"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _, _)) = http(self.addr, "GET", "/v3", &[], None) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Keystone did not answer on {} within 60 s; uwsgi log:\n{}",
                self.addr,
                std::fs::read_to_string(d.join("uwsgi.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGKILL every uWSGI process (the whole group) and reap the master.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `http://127.0.0.1:PORT/v3`.
    pub fn url(&self) -> String {
        format!("http://{}/v3", self.addr)
    }

    /// A project-scoped token by password (`POST /v3/auth/tokens`).
    pub fn token(&self, user: &str, project: &str) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
        let (st, h, v) = http(
            self.addr,
            "POST",
            "/v3/auth/tokens?nocatalog",
            &[],
            Some(&body),
        )
        .expect("Keystone answers");
        assert_eq!(st, 201, "token for {user} on {project}: {v}");
        h.into_iter()
            .find(|(k, _)| k == "x-subject-token")
            .map(|(_, v)| v)
            .expect("X-Subject-Token")
    }

    /// An admin call; panics unless Keystone answers.
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let t = self.token("admin", "admin");
        let (s, _, v) =
            http(self.addr, method, path, &[("X-Auth-Token", &t)], body).expect("Keystone answers");
        (s, v)
    }

    /// The id of the object named `name` in `/v3/{coll}` (projects, users, roles, services).
    pub fn id_of(&self, coll: &str, name: &str) -> Option<String> {
        let (s, v) = self.admin("GET", &format!("/v3/{coll}?name={name}"), None);
        assert_eq!(s, 200, "{coll}?name={name}: {v}");
        v[coll][0]["id"].as_str().map(str::to_string)
    }

    /// Project, user (password [`PASSWORD`]) and the user's `role` on it, made if missing.
    pub fn ensure_user(&self, project: &str, user: &str, role: &str) -> String {
        let pid = match self.id_of("projects", project) {
            Some(id) => id,
            None => {
                let (s, v) = self.admin(
                    "POST",
                    "/v3/projects",
                    Some(&json!({"project": {"name": project, "domain_id": "default"}})),
                );
                assert_eq!(s, 201, "create project {project}: {v}");
                v["project"]["id"].as_str().unwrap().to_string()
            }
        };
        let uid = match self.id_of("users", user) {
            Some(id) => id,
            None => {
                let (s, v) = self.admin(
                    "POST",
                    "/v3/users",
                    Some(&json!({"user": {"name": user, "password": PASSWORD, "domain_id": "default"}})),
                );
                assert_eq!(s, 201, "create user {user}: {v}");
                v["user"]["id"].as_str().unwrap().to_string()
            }
        };
        let rid = match self.id_of("roles", role) {
            Some(id) => id,
            None => {
                let (s, v) =
                    self.admin("POST", "/v3/roles", Some(&json!({"role": {"name": role}})));
                assert_eq!(s, 201, "create role {role}: {v}");
                v["role"]["id"].as_str().unwrap().to_string()
            }
        };
        let (s, v) = self.admin(
            "PUT",
            &format!("/v3/projects/{pid}/users/{uid}/roles/{rid}"),
            None,
        );
        assert_eq!(s, 204, "grant {role} to {user} on {project}: {v}");
        pid
    }

    /// The `network` service with public/internal/admin endpoints at `neutron_url`.
    pub fn register_network(&self, neutron_url: &str) {
        let (s, v) = self.admin(
            "POST",
            "/v3/services",
            Some(&json!({"service": {"name": "neutron", "type": "network"}})),
        );
        assert_eq!(s, 201, "{v}");
        let sid = v["service"]["id"].as_str().unwrap().to_string();
        for iface in ["public", "internal", "admin"] {
            let (s, v) = self.admin(
                "POST",
                "/v3/endpoints",
                Some(&json!({"endpoint": {"service_id": sid, "interface": iface,
                    "url": neutron_url, "region_id": "RegionOne"}})),
            );
            assert_eq!(s, 201, "{v}");
        }
    }

    /// Revoke `token` (`DELETE /v3/auth/tokens`).
    pub fn revoke(&self, token: &str) {
        let admin = self.token("admin", "admin");
        let (s, _, v) = http(
            self.addr,
            "DELETE",
            "/v3/auth/tokens",
            &[("X-Auth-Token", &admin), ("X-Subject-Token", token)],
            None,
        )
        .expect("Keystone answers");
        assert_eq!(s, 204, "revoke: {v}");
    }

    /// The controller's flags for this Keystone (`--keystone-cache-secs` left to the caller).
    pub fn controller_flags(&self) -> Vec<String> {
        vec![
            "--auth-strategy=keystone".into(),
            format!("--keystone-url={}", self.url()),
            format!("--keystone-username={SERVICE_USER}"),
            format!("--keystone-password={PASSWORD}"),
            "--keystone-project=service".into(),
        ]
    }

    /// The `openstack` CLI (venv of CROSSPOD_VENV) with plain password auth as `user` on
    /// `project`: the catalog gives the endpoint. Returns (success, stdout, stderr).
    pub fn openstack(
        &self,
        home: &Path,
        user: &str,
        project: &str,
        args: &[&str],
    ) -> (bool, String, String) {
        let venv =
            std::env::var("CROSSPOD_VENV").unwrap_or_else(|_| "/var/lib/crosspod/venv".into());
        let out = Command::new(Path::new(&venv).join("bin/openstack"))
            .args(args)
            .env_remove("OS_CLOUD")
            .env_remove("OS_TOKEN")
            .env_remove("OS_ENDPOINT")
            .env_remove("OS_AUTH_TYPE")
            .env("OS_AUTH_URL", self.url())
            .env("OS_IDENTITY_API_VERSION", "3")
            .env("OS_USERNAME", user)
            .env("OS_PASSWORD", PASSWORD)
            .env("OS_PROJECT_NAME", project)
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_REGION_NAME", "RegionOne")
            .env("HOME", home)
            .output()
            .expect("run openstack");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        self.kill();
    }
}
