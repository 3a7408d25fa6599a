//! Keystone for `crosspod lab up --keystone`: Keystone and uWSGI from their venv, SQLite and
//! fernet keys in `<lab>/keystone/`, served on 127.0.0.1 by a detached uWSGI (pid file, log,
//! stopped by `lab down`). Bootstrapped with `admin`, projects and users `demo` and `other`
//! (role member), `reader` (role reader on demo), crosspod's service user `crosspod` (role
//! service on project `service`), and the `network` service pointing at the lab's Neutron API.
//! Every user's password is the lab's, in `<lab>/keystone/password`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::daemons::{Daemon, Started};
use super::state::LabState;
use crate::keystone::{Creds, Session};

/// crosspod's own Keystone user.
pub const SERVICE_USER: &str = "crosspod";
/// The project of crosspod's service token.
pub const SERVICE_PROJECT: &str = "service";
/// Users the lab makes: (project, user, role).
pub const USERS: &[(&str, &str, &str)] = &[
    ("demo", "demo", "member"),
    ("other", "other", "member"),
    ("demo", "reader", "reader"),
    (SERVICE_PROJECT, SERVICE_USER, "service"),
];

/// The Keystone daemon of the lab (its uWSGI master).
pub fn daemon(st: &LabState) -> Daemon {
    let d = st.layout().keystone_dir();
    Daemon {
        name: "keystone".into(),
        pidfile: d.join("uwsgi.pid"),
        log: d.join("keystone-uwsgi.log"),
        marker: d.display().to_string(),
    }
}

/// `http://127.0.0.1:PORT/v3`.
pub fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/v3")
}

/// The file holding the lab's Keystone password (every lab user's, crosspod's too).
pub fn password_file(st: &LabState) -> PathBuf {
    st.layout().keystone_dir().join("password")
}

/// The lab's Keystone password.
pub fn password(st: &LabState) -> Result<String> {
    let f = password_file(st);
    Ok(std::fs::read_to_string(&f)
        .with_context(|| format!("reading {}", f.display()))?
        .trim()
        .to_string())
}

/// Credentials of the lab's `admin` on project `admin`.
pub fn admin_creds(st: &LabState, port: u16) -> Result<Creds> {
    Ok(Creds {
        auth_url: url(port),
        username: "admin".into(),
        password: password(st)?,
        project: "admin".into(),
        user_domain: "Default".into(),
        project_domain: "Default".into(),
    })
}

fn manage(venv: &Path, conf: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(venv.join("bin/keystone-manage"))
        .arg("--config-file")
        .arg(conf)
        .args(args)
        .output()
        .with_context(|| format!("running {}/bin/keystone-manage", venv.display()))?;
    if !out.status.success() {
        bail!(
            "keystone-manage {} failed: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    Ok(())
}

/// Makes (once), starts (when not running) and bootstraps the lab's Keystone; what changed.
pub fn ensure(st: &LabState, port: u16, venv: &Path) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    for bin in ["keystone-manage", "uwsgi"] {
        if !venv.join("bin").join(bin).exists() {
            bail!(
                "{}/bin/{bin} is missing: scripts/install-deps.sh installs Keystone (or pass --keystone-venv / CROSSPOD_KEYSTONE_VENV)",
                venv.display()
            );
        }
    }
    let dir = st.layout().keystone_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let conf = dir.join("keystone.conf");
    if !dir.join("bootstrapped").exists() {
        let pw = uuid::Uuid::new_v4().simple().to_string();
        let pwf = password_file(st);
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&pwf)
                .with_context(|| format!("writing {}", pwf.display()))?;
            writeln!(f, "{pw}")?;
        }
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nlog_file = {d}/keystone.log\n[database]\nconnection = sqlite:///{d}/keystone.db\n\
                 [token]\nprovider = fernet\n[fernet_tokens]\nkey_repository = {d}/fernet\n\
                 [credential]\nkey_repository = {d}/cred\n"
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        crate::output::progress("setting Keystone up (database, fernet keys, bootstrap)");
        manage(venv, &conf, &["db_sync"])?;
        for step in ["fernet_setup", "credential_setup"] {
            manage(
                venv,
                &conf,
                &[step, "--keystone-user", "root", "--keystone-group", "root"],
            )?;
        }
        manage(
            venv,
            &conf,
            &[
                "bootstrap",
                "--bootstrap-password",
                &pw,
                "--bootstrap-public-url",
                &format!("{}/", url(port)),
                "--bootstrap-region-id",
                "RegionOne",
            ],
        )?;
        std::fs::write(dir.join("bootstrapped"), "")?;
        changes.push("keystone set up".into());
    }
    let d = daemon(st);
    if !d.alive() {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!("127.0.0.1:{port} (Keystone's port in this lab) is taken by another process");
        }
        let mut cmd = Command::new(venv.join("bin/uwsgi"));
        cmd.arg(format!("--chdir={}", dir.display()))
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(["--module", "keystone.wsgi.api:application"])
            .args([
                "--master",
                "--processes",
                "1",
                "--threads",
                "4",
                "--die-on-term",
            ])
            // uWSGI's HTTP router closes each connection after one answer without saying so.
            .args(["--add-header", "Connection: close"])
            .env("OS_KEYSTONE_CONFIG_FILES", &conf);
        crate::output::progress(format!("starting Keystone on 127.0.0.1:{port}"));
        if let Started::Exited(why) = d.spawn(cmd, Duration::from_millis(300))? {
            bail!("Keystone (uwsgi) {why}; see {}", d.log.display());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while crate::http::request("GET", &url(port), None, None, Duration::from_secs(2))
            .map(|r| r.status != 200)
            .unwrap_or(true)
        {
            if Instant::now() > deadline || !d.alive() {
                bail!(
                    "Keystone does not answer on {}; see {}",
                    url(port),
                    d.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        changes.push("keystone".into());
    }
    // Users, grants and the catalog entry: each made only when missing.
    let s = Session::password(&admin_creds(st, port)?)?;
    let pw = password(st)?;
    for (project, user, role) in USERS {
        let (pid, made_p) = s.ensure_project(project)?;
        let (uid, made_u) = s.ensure_user(user, &pw)?;
        let granted = s.ensure_grant(&pid, &uid, role)?;
        if made_p || made_u || granted {
            changes.push(format!("keystone {user} ({role} on {project})"));
        }
    }
    for c in s.register_network("neutron", &st.api_url(st.neutron_port), "RegionOne")? {
        changes.push(format!("keystone catalog: {c}"));
    }
    Ok(changes)
}

/// The controller's flags for the lab's Keystone.
pub fn controller_flags(st: &LabState, port: u16) -> Vec<String> {
    vec![
        "--auth-strategy=keystone".into(),
        format!("--keystone-url={}", url(port)),
        format!("--keystone-username={SERVICE_USER}"),
        format!("--keystone-password-file={}", password_file(st).display()),
        format!("--keystone-project={SERVICE_PROJECT}"),
    ]
}
