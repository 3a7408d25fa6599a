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

/// Current state format (2: pods × nodes, provider switches, underlay). Version 1 (the fixed
/// two-node lab) is still read, so an older lab can be inspected and brought down.
pub const STATE_VERSION: u32 = 2;

/// The fixed two-node lab of state version 1.
pub const STATE_VERSION_TWO_NODES: u32 = 1;

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
    /// The pod's number (1 = RegionOne); 0 in a version-1 state.
    #[serde(default)]
    pub pod: u32,
    /// The node's tunnel endpoint on the underlay (`192.168.50.<global index>`), held by its
    /// `br-phy`; `None` in a version-1 state.
    #[serde(default)]
    pub tunnel_ip: Option<std::net::Ipv4Addr>,
    /// Powered off by `lab node stop` (its daemons, router/DHCP namespaces and VMs gone) until
    /// `lab node start`; `lab up` leaves it off.
    #[serde(default, skip_serializing_if = "is_false")]
    pub powered_off: bool,
    /// Cables cut by `lab node cut` (the far ends down) until `lab node mend`; `lab up` leaves
    /// them cut.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cut: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The upstream (external) router in the `ext` namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamSpec {
    /// The router's address and prefix (default 163.3.124.1/24).
    pub gateway: IpNet,
    /// The VLAN the external network uses on eth2 (0: untagged, for a flat network).
    pub vlan: u16,
    /// The router's IPv6 address on the external network's IPv6 subnet (default
    /// 2001:db8:124::1/64); `None` in labs made before IPv6 (the next `lab up` adds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_v6: Option<IpNet>,
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
    /// Number of pods (RegionOne, RegionTwo, ...).
    #[serde(default = "two")]
    pub pods: u32,
    /// Nodes in each pod.
    #[serde(default = "one")]
    pub nodes_per_pod: u32,
    /// How pods share the bridge network: a VLAN trunk between the pods' provider switches,
    /// or VxLAN over the underlay only.
    #[serde(default)]
    pub bridge_network_type: BridgeNetworkType,
    /// The OVS instances (each a namespace with its own daemons), in creation order.
    #[serde(default = "two_node_switches")]
    pub switches: Vec<String>,
    /// The simulated nodes, pod by pod.
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

fn two() -> u32 {
    2
}

fn one() -> u32 {
    1
}

/// The OVS instances of a version-1 lab: two nodes and the upstream switch.
fn two_node_switches() -> Vec<String> {
    ["node1", "node2", "ext"].map(String::from).to_vec()
}

/// How the pods' bridge network travels between pods (`--bridge-network-type`, as the
/// controller's flag of the same name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeNetworkType {
    /// The pods' provider switches are joined by a core switch trunking the bridge range.
    #[default]
    Vlan,
    /// The pods share nothing but the underlay.
    Vxlan,
}

impl std::fmt::Display for BridgeNetworkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BridgeNetworkType::Vlan => "vlan",
            BridgeNetworkType::Vxlan => "vxlan",
        })
    }
}

impl std::str::FromStr for BridgeNetworkType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "vlan" => Ok(BridgeNetworkType::Vlan),
            "vxlan" => Ok(BridgeNetworkType::Vxlan),
            _ => Err(format!(
                "{s:?} is not a bridge network type (vlan or vxlan)"
            )),
        }
    }
}

/// The VLANs of the bridge physnet (the controller's default `bridge:2001:3000`): the only
/// ones the core switch carries between pods.
pub const BRIDGE_VLANS: std::ops::RangeInclusive<u16> = 2001..=3000;

/// Most pods a lab may have (pod names are spelled out up to NinetyNine).
pub const MAX_PODS: u32 = 99;

/// Most nodes a lab may have: each needs a tunnel IP in 192.168.50.0/24.
pub const MAX_NODES: u32 = 254;

const ONES: [&str; 20] = [
    "",
    "One",
    "Two",
    "Three",
    "Four",
    "Five",
    "Six",
    "Seven",
    "Eight",
    "Nine",
    "Ten",
    "Eleven",
    "Twelve",
    "Thirteen",
    "Fourteen",
    "Fifteen",
    "Sixteen",
    "Seventeen",
    "Eighteen",
    "Nineteen",
];
const TENS: [&str; 10] = [
    "", "", "Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety",
];

/// `n` spelled out in English, capitalised and joined (`21` -> `TwentyOne`), for 1..=99.
pub fn spell(n: u32) -> String {
    match n {
        1..=19 => ONES[n as usize].to_string(),
        20..=99 => format!("{}{}", TENS[(n / 10) as usize], ONES[(n % 10) as usize]),
        _ => n.to_string(),
    }
}

/// The region of pod `k` as the guide names pods: RegionOne, RegionTwo, RegionThree, ...
pub fn region_name(k: u32) -> String {
    format!("Region{}", spell(k))
}

/// The name of node `j` of pod `k`: `node1`/`node2` in the guide's two pods of one node each
/// (so the guide and its tests read unchanged), `node<k>-<j>` in every other shape.
pub fn node_name(pods: u32, nodes_per_pod: u32, k: u32, j: u32) -> String {
    if pods == 2 && nodes_per_pod == 1 {
        format!("node{k}")
    } else {
        format!("node{k}-{j}")
    }
}

/// The provider switch of pod `k`.
pub fn pod_switch(k: u32) -> String {
    format!("pod{k}")
}

/// The core switch joining the pods' provider switches (VLAN bridge network only).
pub const CORE_SWITCH: &str = "core";

/// The underlay switch every node's tunnel endpoint is cabled to.
pub const UNDERLAY_SWITCH: &str = "underlay";

/// The upstream switch (external networks).
pub const EXT_SWITCH: &str = "ext";

/// The OVS instances of a lab of this shape, in the order `lab up` makes them.
pub fn switches_of(pods: u32, nodes_per_pod: u32, bridge: BridgeNetworkType) -> Vec<String> {
    let mut v = Vec::new();
    for k in 1..=pods {
        for j in 1..=nodes_per_pod {
            v.push(node_name(pods, nodes_per_pod, k, j));
        }
    }
    v.push(EXT_SWITCH.to_string());
    v.extend((1..=pods).map(pod_switch));
    if bridge == BridgeNetworkType::Vlan {
        v.push(CORE_SWITCH.to_string());
    }
    v.push(UNDERLAY_SWITCH.to_string());
    v
}

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
        if st.version != STATE_VERSION && st.version != STATE_VERSION_TWO_NODES {
            bail!(
                "lab state {} has format version {}, this crosspod reads {} and {}",
                path.display(),
                st.version,
                STATE_VERSION_TWO_NODES,
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
    /// Everything in the lab directory the lab may create, for `lab down` (`switches`: the
    /// lab's OVS instances).
    pub fn owned_paths(&self, switches: &[String]) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = switches.iter().map(|i| self.ovs_dir(i)).collect();
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
    fn pods_are_spelled_out_and_nodes_named_by_shape() {
        let names: Vec<String> = (1..=21).map(region_name).collect();
        assert_eq!(names[0], "RegionOne");
        assert_eq!(names[2], "RegionThree");
        assert_eq!(names[12], "RegionThirteen");
        assert_eq!(names[19], "RegionTwenty");
        assert_eq!(names[20], "RegionTwentyOne");
        assert_eq!(region_name(99), "RegionNinetyNine");
        assert_eq!(node_name(2, 1, 2, 1), "node2");
        assert_eq!(node_name(3, 1, 3, 1), "node3-1");
        assert_eq!(node_name(2, 2, 1, 2), "node1-2");
        assert_eq!(
            switches_of(2, 1, BridgeNetworkType::Vlan),
            ["node1", "node2", "ext", "pod1", "pod2", "core", "underlay"]
        );
        assert!(!switches_of(3, 2, BridgeNetworkType::Vxlan).contains(&"core".to_string()));
    }

    #[test]
    fn a_version_one_state_reads_as_the_two_node_lab() {
        let v1 = r#"{"version": 1, "dir": "/x", "prefix": "p", "created_dir": true,
            "tricircle_port": 1, "neutron_port": 2, "nodes": [],
            "upstream": {"gateway": "163.3.124.1/24", "vlan": 3001}, "namespaces": []}"#;
        let st: LabState = serde_json::from_str(v1).unwrap();
        assert_eq!((st.pods, st.nodes_per_pod), (2, 1));
        assert_eq!(st.bridge_network_type, BridgeNetworkType::Vlan);
        assert_eq!(st.switches, ["node1", "node2", "ext"]);
    }

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
