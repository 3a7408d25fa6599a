//! The lab's state file (`state.json` in the lab directory): what `lab up` was asked for and
//! what it made, written before each change so `lab down` can undo a half-finished `up`, and
//! the file layout of the lab directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Name of the state file inside the lab directory.
pub const STATE_FILE: &str = "state.json";

/// The lock file serialising commands on one lab.
pub const LOCK_FILE: &str = ".lock";

/// Current state format.
pub const STATE_VERSION: u32 = 1;

/// Longest namespace/interface prefix: `<prefix>node1` must fit in 15 bytes.
pub const PREFIX_MAX: usize = 10;

/// One simulated node (a pod's compute/network node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Short name: `node1`, `node2` (also the OVS subdirectory and the agent's node name).
    pub name: String,
    /// The namespace holding the node's OVS and uplinks (`<prefix>node1`).
    pub netns: String,
    /// Pod / region served by the node.
    pub region: String,
    /// Availability zone of the pod.
    pub az: String,
    /// physnet:bridge mappings the node's agent gets.
    pub bridge_mappings: String,
    /// bridge:uplink pairs the node's agent gets.
    pub uplinks: String,
    /// Port of the agent's Prometheus endpoint on 127.0.0.1.
    pub metrics_port: u16,
}

/// The upstream (external) router in the `ext` namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamSpec {
    /// The router's address and prefix (default 163.3.124.1/24).
    pub gateway: IpNet,
    /// The VLAN the external network uses on eth2 (0: untagged, for a flat network).
    pub vlan: u16,
}

/// The lab as asked for and as made so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// Format version.
    pub version: u32,
    /// Lab directory.
    pub dir: PathBuf,
    /// Prefix of every namespace the lab creates.
    pub prefix: String,
    /// Whether `lab up` created the directory (then `lab down` removes it).
    pub created_dir: bool,
    /// Tricircle API port of the controller on 127.0.0.1.
    pub tricircle_port: u16,
    /// Neutron API port of the controller on 127.0.0.1.
    pub neutron_port: u16,
    /// The controller's agent listener (mutual TLS) on 127.0.0.1 (0 in a state written
    /// before it existed: picked at the next `lab up`).
    #[serde(default)]
    pub agent_port: u16,
    /// Whether the Neutron and Tricircle APIs speak TLS (`lab up --tls`), with the
    /// controller's certificate from the lab's CA.
    #[serde(default)]
    pub tls: bool,
    /// The port of the lab's Keystone (`lab up --keystone`); the controller then
    /// authenticates people with it.
    #[serde(default)]
    pub keystone_port: Option<u16>,
    /// The simulated nodes.
    pub nodes: Vec<NodeSpec>,
    /// The upstream router of RegionTwo's external network (eth2 of node2).
    pub upstream: UpstreamSpec,
    /// RegionOne's own upstream (eth2 of node1), for topologies with an external network in
    /// each pod (Tricircle's multi-gateway); `None` in labs made before it existed.
    #[serde(default)]
    pub region_one_upstream: Option<UpstreamSpec>,
    /// Namespaces this lab created, in creation order (only these are deleted by `down`).
    pub namespaces: Vec<String>,
}

/// The three OVS instances of the lab: two nodes and the upstream switch.
pub const OVS_INSTANCES: [&str; 3] = ["node1", "node2", "ext"];

impl LabState {
    /// The namespace of an OVS instance (`node1`, `node2`, `ext`).
    pub fn netns_of(&self, instance: &str) -> String {
        format!("{}{instance}", self.prefix)
    }

    /// The node serving `region` (case-sensitive, as pod names are).
    pub fn node_for_region(&self, region: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.region == region)
    }

    /// Layout of the lab directory.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.dir)
    }

    /// Reads the state file of `dir`; `None` when there is no lab there.
    pub fn load(dir: &Path) -> Result<Option<LabState>> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let st: LabState = serde_json::from_str(&text)
            .with_context(|| format!("parsing lab state {}", path.display()))?;
        if st.version != STATE_VERSION {
            bail!(
                "lab state {} has format version {}, this crosspod reads {}",
                path.display(),
                st.version,
                STATE_VERSION
            );
        }
        if st.tls {
            crate::http::trust(&st.layout().pki_dir().join(crate::pki::CA_CERT));
        }
        Ok(Some(st))
    }

    /// The URL of a user API on `port` (https with `lab up --tls`).
    pub fn api_url(&self, port: u16) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// Reads the state of `dir`, failing with advice when there is no lab.
    pub fn require(dir: &Path) -> Result<LabState> {
        LabState::load(dir)?.with_context(|| {
            format!(
                "no lab in {} (no {STATE_FILE}); run `crosspod lab up --dir {}` first",
                dir.display(),
                dir.display()
            )
        })
    }

    /// Writes the state file atomically (temp file + rename).
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("state serializes");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// Checks a prefix: short enough for `<prefix>node1` to be an interface-sized name, and made
/// only of characters safe in namespace and interface names.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > PREFIX_MAX {
        bail!(
            "--prefix {prefix:?} is {} bytes; at most {PREFIX_MAX} so that \"{prefix}node1\" fits Linux's 15-byte names",
            prefix.len()
        );
    }
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        bail!("--prefix {prefix:?} may only hold ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Where everything lives in the lab directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The lab directory.
    pub dir: PathBuf,
}

impl Layout {
    /// The layout of `dir`.
    pub fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_path_buf(),
        }
    }
    /// Directory of one OVS instance (db, sockets, pid files, logs, OVS_RUNDIR).
    pub fn ovs_dir(&self, instance: &str) -> PathBuf {
        self.dir.join(instance)
    }
    /// The OVSDB socket of an instance.
    pub fn db_sock(&self, instance: &str) -> PathBuf {
        self.ovs_dir(instance).join("db.sock")
    }
    /// The OVSDB remote of an instance, as `ovs-vsctl --db` and the agent take it.
    pub fn ovsdb_remote(&self, instance: &str) -> String {
        format!("unix:{}", self.db_sock(instance).display())
    }
    /// The controller's directory (SQLite database, log, pid file).
    pub fn controller_dir(&self) -> PathBuf {
        self.dir.join("controller")
    }
    /// The agents' directory (logs, pid files).
    pub fn agents_dir(&self) -> PathBuf {
        self.dir.join("agents")
    }
    /// The tokens file the controller reads (`TOKEN PROJECT ROLES` per line).
    pub fn tokens_file(&self) -> PathBuf {
        self.dir.join("tokens")
    }
    /// The lab's CA and the certificates it issued (controller, one per node).
    pub fn pki_dir(&self) -> PathBuf {
        self.dir.join("pki")
    }
    /// Records of booted lab VMs.
    pub fn vms_dir(&self) -> PathBuf {
        self.dir.join("vms")
    }
    /// The lab's Keystone (`lab up --keystone`): config, database, keys, log, password.
    pub fn keystone_dir(&self) -> PathBuf {
        self.dir.join("keystone")
    }
    /// Everything in the lab directory the lab may create, for `lab down`.
    pub fn owned_paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = OVS_INSTANCES.iter().map(|i| self.ovs_dir(i)).collect();
        v.extend([
            self.controller_dir(),
            self.agents_dir(),
            self.vms_dir(),
            self.keystone_dir(),
            self.pki_dir(),
            self.tokens_file(),
            self.dir.join("agent.token"),
            self.dir.join(format!(".{STATE_FILE}.tmp")),
            self.dir.join(STATE_FILE),
            self.dir.join(LOCK_FILE),
        ]);
        // Every node's agent token file.
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            v.extend(rd.flatten().map(|e| e.path()).filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("agent-") && n.ends_with(".token"))
            }));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_for_length_and_characters() {
        validate_prefix("").unwrap();
        validate_prefix("t123456-a").unwrap();
        let e = validate_prefix("waytoolongpx").unwrap_err().to_string();
        assert!(e.contains("15-byte"), "{e}");
        assert!(validate_prefix("a/b").is_err());
        assert!(validate_prefix("a b").is_err());
    }
}
