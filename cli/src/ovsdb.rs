//! One lab OVSDB through the `ovs` crate's client: a monitor replica to read from, and
//! `vswitch::TxnBuilder` change sets committed as single transactions that also bump
//! `next_cfg`, so the CLI can wait (as `ovs-vsctl` does) until ovs-vswitchd has applied them.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use ovs::vswitch::{self, BridgeSpec, PortSpec, TxnBuilder, View};
use ovs::{Client, ClientConfig, Condition, Endpoint, Mutation, Mutator, Operation, Replica};
use ovs::{RowValues, Snapshot, Value};

/// How long to wait for the server and for ovs-vswitchd.
const WAIT: Duration = Duration::from_secs(20);

/// A connection to one OVSDB with its replica of the switch tables.
pub struct Ovsdb {
    rt: tokio::runtime::Runtime,
    client: Client,
    replica: Replica,
    remote: String,
}

impl Ovsdb {
    /// Connects to `remote` (`unix:/path/db.sock`) and waits for the first snapshot.
    pub fn connect(remote: &str) -> Result<Ovsdb> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the OVSDB client runtime")?;
        let (client, replica) = rt
            .block_on(async {
                let mut cfg = ClientConfig::new(Endpoint::parse(remote)?);
                cfg.reconnect = false;
                cfg.inactivity_probe = None;
                cfg.request_timeout = WAIT;
                let client = Client::connect(cfg).await?;
                let replica = vswitch::monitor(&client).await?;
                Ok::<_, ovs::Error>((client, replica))
            })
            .with_context(|| format!("connecting to OVSDB {remote}"))?;
        Ok(Ovsdb {
            rt,
            client,
            replica,
            remote: remote.to_string(),
        })
    }

    /// The remote string.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Name indexes over the current snapshot.
    pub fn view(&self) -> View {
        View::new(self.replica.snapshot())
    }

    /// Creates the root `Open_vSwitch` row when there is none (`ovs-vsctl init`).
    pub fn init(&self) -> Result<bool> {
        if self
            .replica
            .snapshot()
            .rows("Open_vSwitch")
            .next()
            .is_some()
        {
            return Ok(false);
        }
        let mut txn = TxnBuilder::new();
        txn.op(Operation::Insert {
            table: "Open_vSwitch".into(),
            row: RowValues::new(),
            uuid_name: None,
            uuid: None,
        });
        self.rt
            .block_on(txn.commit(&self.client))
            .with_context(|| format!("initialising OVSDB {}", self.remote))?;
        self.rt
            .block_on(
                self.replica
                    .wait_for(WAIT, |s| s.rows("Open_vSwitch").next().is_some()),
            )
            .map_err(|_| anyhow!("OVSDB {}: the root row did not appear", self.remote))?;
        Ok(true)
    }

    /// Commits `txn` when it writes anything, and waits until the replica shows it and, with
    /// `wait_vswitchd`, until ovs-vswitchd has applied it. Returns whether it wrote.
    pub fn apply(&self, mut txn: TxnBuilder, wait_vswitchd: bool, what: &str) -> Result<bool> {
        if !txn.has_writes() {
            return Ok(false);
        }
        let snap = self.replica.snapshot();
        let root = snap.rows("Open_vSwitch").next().cloned().with_context(|| {
            format!(
                "OVSDB {} has no Open_vSwitch row (not initialised)",
                self.remote
            )
        })?;
        let next = root.get_i64("next_cfg").unwrap_or(0) + 1;
        txn.op(Operation::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![Condition::uuid(root.uuid)],
            mutations: vec![Mutation::new("next_cfg", Mutator::Add, Value::from(1i64))],
        });
        self.rt
            .block_on(txn.commit(&self.client))
            .with_context(|| format!("{what} on OVSDB {}", self.remote))?;
        let done = |s: &Snapshot| {
            s.rows("Open_vSwitch").next().is_some_and(|r| {
                r.get_i64("next_cfg").unwrap_or(0) >= next
                    && (!wait_vswitchd || r.get_i64("cur_cfg").unwrap_or(0) >= next)
            })
        };
        self.rt
            .block_on(self.replica.wait_for(WAIT, done))
            .map_err(|_| {
                anyhow!(
                    "{what} on OVSDB {}: ovs-vswitchd did not apply it within {}s (is it running? `crosspod lab status`)",
                    self.remote,
                    WAIT.as_secs()
                )
            })?;
        Ok(true)
    }

    /// Makes a userspace-datapath bridge exist; returns whether it was created or changed.
    pub fn ensure_netdev_bridge(&self, bridge: &str) -> Result<bool> {
        let mut spec = BridgeSpec::new(bridge);
        spec.datapath_type = Some("netdev".into());
        let mut txn = TxnBuilder::new();
        txn.ensure_bridge(&self.view(), &spec);
        self.apply(txn, true, &format!("creating bridge {bridge}"))
    }

    /// Makes `spec` exist on `bridge` (only what differs is written); returns whether it wrote.
    pub fn ensure_port(&self, bridge: &str, spec: &PortSpec) -> Result<bool> {
        let mut txn = TxnBuilder::new();
        txn.ensure_port(&self.view(), bridge, spec);
        self.apply(txn, true, &format!("plugging {} into {bridge}", spec.name))
    }

    /// Removes port `name` wherever it is, without waiting for ovs-vswitchd (it may be gone).
    pub fn remove_port(&self, name: &str) -> Result<bool> {
        let mut txn = TxnBuilder::new();
        txn.remove_port(&self.view(), name);
        self.apply(txn, false, &format!("removing port {name}"))
    }

    /// Waits until ovs-vswitchd has attached interface `name` (it has an OpenFlow port
    /// number), so traffic flows when the CLI returns; fails with the interface's error.
    pub fn wait_attached(&self, name: &str) -> Result<()> {
        let attached = |s: &Snapshot| {
            s.rows("Interface").any(|r| {
                r.get_str("name") == Some(name)
                    && r.get("ofport")
                        .and_then(|v| v.as_set().iter().find_map(|a| a.as_i64()))
                        .is_some_and(|p| p > 0)
            })
        };
        match self.rt.block_on(self.replica.wait_for(WAIT, attached)) {
            Ok(_) => Ok(()),
            Err(last) => {
                let error = last
                    .rows("Interface")
                    .find(|r| r.get_str("name") == Some(name))
                    .and_then(|r| r.get("error").map(|e| format!("{e:?}")))
                    .unwrap_or_else(|| "no such interface".into());
                Err(anyhow!(
                    "ovs-vswitchd of {} did not attach {name} within {}s (error: {error})",
                    self.remote,
                    WAIT.as_secs()
                ))
            }
        }
    }

    /// The VLAN tag of port `name`, if it has one.
    pub fn port_tag(&self, name: &str) -> Option<i64> {
        self.view()
            .port(name)?
            .get("tag")
            .and_then(|v| v.as_set().iter().find_map(|a| a.as_i64()))
    }
}

impl std::fmt::Debug for Ovsdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ovsdb")
            .field("remote", &self.remote)
            .finish()
    }
}

impl Drop for Ovsdb {
    fn drop(&mut self) {
        self.client.close();
    }
}
