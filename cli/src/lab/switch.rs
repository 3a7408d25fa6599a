//! One OVS instance of the lab (node1, node2, ext): its own ovsdb-server and ovs-vswitchd
//! running inside the instance's namespace, with database, sockets, pid files and logs in
//! `<lab dir>/<instance>/`. `OVS_RUNDIR` points there too, so the bridges' management sockets
//! of two nodes never collide in /var/run/openvswitch.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::daemons::{command_in, run, run_bounded, wait_for_path, Daemon};
use super::state::Layout;
use crate::ovsdb::Ovsdb;

/// The OVS schema shipped with openvswitch-common.
pub const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// The OVS daemons of one instance.
#[derive(Debug, Clone)]
pub struct Switch {
    /// Instance name (`node1`, `node2`, `ext`).
    pub instance: String,
    /// Namespace the daemons run in.
    pub netns: String,
    /// Its directory.
    pub dir: PathBuf,
}

impl Switch {
    /// The instance `instance` of the lab laid out as `layout`, in namespace `netns`.
    pub fn new(layout: &Layout, instance: &str, netns: &str) -> Switch {
        Switch {
            instance: instance.to_string(),
            netns: netns.to_string(),
            dir: layout.ovs_dir(instance),
        }
    }

    /// The database socket.
    pub fn db_sock(&self) -> PathBuf {
        self.dir.join("db.sock")
    }

    /// The OVSDB remote of this instance.
    pub fn remote(&self) -> String {
        format!("unix:{}", self.db_sock().display())
    }

    /// A client of this instance's OVSDB.
    pub fn connect(&self) -> Result<Ovsdb> {
        Ovsdb::connect(&self.remote())
    }

    fn marker(&self) -> String {
        self.dir.display().to_string()
    }

    /// The ovsdb-server daemon.
    pub fn ovsdb(&self) -> Daemon {
        Daemon {
            name: format!("ovsdb-server@{}", self.instance),
            pidfile: self.dir.join("ovsdb-server.pid"),
            log: self.dir.join("ovsdb-server.log"),
            marker: self.marker(),
        }
    }

    /// The ovs-vswitchd daemon.
    pub fn vswitchd(&self) -> Daemon {
        Daemon {
            name: format!("ovs-vswitchd@{}", self.instance),
            pidfile: self.dir.join("ovs-vswitchd.pid"),
            log: self.dir.join("ovs-vswitchd.log"),
            marker: self.marker(),
        }
    }

    fn with_ovs_env(&self, cmd: &mut std::process::Command) {
        cmd.env("OVS_RUNDIR", &self.dir)
            .env("OVS_LOGDIR", &self.dir)
            .env("OVS_DBDIR", &self.dir);
    }

    /// Makes both daemons run (creating the database on first use). Returns what it started.
    pub fn ensure_running(&self) -> Result<Vec<String>> {
        let mut started = Vec::new();
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let db = self.dir.join("conf.db");
        if !db.exists() {
            run(
                std::process::Command::new("ovsdb-tool")
                    .arg("create")
                    .arg(&db)
                    .arg(SCHEMA),
                &format!("creating the OVS database of {}", self.instance),
            )?;
        }
        let ovsdb = self.ovsdb();
        if !ovsdb.alive() {
            let _ = std::fs::remove_file(self.db_sock());
            let mut cmd = command_in(&self.netns, "ovsdb-server")?;
            self.with_ovs_env(&mut cmd);
            cmd.arg(&db)
                .arg(format!("--remote=punix:{}", self.db_sock().display()))
                .arg(format!("--pidfile={}", ovsdb.pidfile.display()))
                .arg(format!("--log-file={}", ovsdb.log.display()))
                .arg(format!(
                    "--unixctl={}",
                    self.dir.join("ovsdb-server.ctl").display()
                ))
                .arg("--detach");
            run(&mut cmd, &format!("starting {}", ovsdb.name))?;
            if !wait_for_path(&self.db_sock(), Duration::from_secs(10)) {
                bail!(
                    "{} started but its socket {} did not appear; see {}",
                    ovsdb.name,
                    self.db_sock().display(),
                    ovsdb.log.display()
                );
            }
            self.connect()?.init()?;
            started.push(ovsdb.name.clone());
        }
        let vswitchd = self.vswitchd();
        if !vswitchd.alive() {
            let mut cmd = command_in(&self.netns, "ovs-vswitchd")?;
            self.with_ovs_env(&mut cmd);
            cmd.arg(format!("unix:{}", self.db_sock().display()))
                .arg(format!("--pidfile={}", vswitchd.pidfile.display()))
                .arg(format!("--log-file={}", vswitchd.log.display()))
                .arg(format!(
                    "--unixctl={}",
                    self.dir.join("ovs-vswitchd.ctl").display()
                ))
                .arg("--detach");
            // Returns once ready; without its database it would wait for ever.
            run_bounded(
                &mut cmd,
                &format!("starting {}", vswitchd.name),
                Duration::from_secs(60),
                &vswitchd.log,
            )?;
            started.push(vswitchd.name.clone());
        }
        Ok(started)
    }

    /// Stops vswitchd, then ovsdb-server. Returns the names of the daemons that were running.
    pub fn stop(&self) -> Result<Vec<String>> {
        let mut stopped = Vec::new();
        for d in [self.vswitchd(), self.ovsdb()] {
            if d.stop(Duration::from_secs(5))? {
                stopped.push(d.name.clone());
            }
        }
        Ok(stopped)
    }
}
