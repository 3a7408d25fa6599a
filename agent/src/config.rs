//! The agent's configuration: flags, `CROSSPOD_*` env vars and a TOML file, in that order of
//! precedence, over defaults that match the multi-pod guide.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

/// OVS datapath the agent asks for when it creates bridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatapathType {
    /// The kernel datapath (production nodes with the openvswitch module).
    System,
    /// The userspace datapath (labs and machines without the kernel module).
    Netdev,
}

impl DatapathType {
    /// The value OVSDB's `Bridge.datapath_type` column takes.
    pub fn as_ovsdb(self) -> &'static str {
        match self {
            DatapathType::System => "system",
            DatapathType::Netdev => "netdev",
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// crosspod-agent: makes one node's Open vSwitch and Linux match the controller's desired state.
#[derive(Debug, Clone, Parser)]
#[command(name = "crosspod-agent", version)]
pub struct AgentConfig {
    /// TOML file whose keys are the long flag names (pod = "RegionOne", bridge-mappings = "...").
    #[arg(long, env = "CROSSPOD_AGENT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Pod (region name) this node belongs to, as created through /v1.0/pods.
    #[arg(long, env = "CROSSPOD_POD")]
    pub pod: String,

    /// Node name reported to the controller; ports bound here get it as `binding:host_id`.
    #[arg(long, env = "CROSSPOD_NODE")]
    pub node: String,

    /// Base URL of the controller's Tricircle-side API, where the agent API lives.
    #[arg(
        long,
        env = "CROSSPOD_CONTROLLER_URL",
        default_value = "http://127.0.0.1:19999"
    )]
    pub controller_url: String,

    /// Token with role `agent` (see the controller's tokens file).
    #[arg(long, env = "CROSSPOD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// File holding the token, for units that keep secrets out of the command line.
    #[arg(long, env = "CROSSPOD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// This node's client certificate (PEM, its subject names the node): the agent then
    /// speaks mutual TLS to the controller's agent listener (`https://HOST:19998`).
    #[arg(long, env = "CROSSPOD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "CROSSPOD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// The CA that signed the controller's certificate (PEM); no other is trusted.
    #[arg(long, env = "CROSSPOD_CA")]
    pub ca: Option<PathBuf>,

    /// physnet:bridge pairs, as OVS_BRIDGE_MAPPINGS in the guide.
    #[arg(
        long,
        env = "CROSSPOD_BRIDGE_MAPPINGS",
        default_value = "bridge:br-vlan,extern:br-ext"
    )]
    pub bridge_mappings: String,

    /// bridge:device pairs: the uplink each bridge trunks cross-pod VLANs on.
    #[arg(
        long,
        env = "CROSSPOD_UPLINKS",
        default_value = "br-vlan:eth1,br-ext:eth2"
    )]
    pub uplinks: String,

    /// This node's tunnel endpoint for VxLAN (Neutron's `local_ip`): sent in the registration so
    /// peers tunnel to it, and the source of this node's tunnels. Unset: the node carries no
    /// VxLAN segment (a desired state with some is reported as an error).
    #[arg(long, env = "CROSSPOD_LOCAL_IP")]
    pub local_ip: Option<std::net::IpAddr>,

    /// The bridge the agent creates for VxLAN tunnels (patched to the segments' bridge), owned
    /// by the agent: created while the node has tunnels, deleted when it has none.
    #[arg(long, env = "CROSSPOD_TUNNEL_BRIDGE", default_value = "br-tun")]
    pub tunnel_bridge: String,

    /// Datapath type for bridges the agent creates.
    #[arg(
        long,
        env = "CROSSPOD_DATAPATH_TYPE",
        value_enum,
        default_value = "system"
    )]
    pub datapath_type: DatapathType,

    /// OVSDB remote of this node's ovsdb-server.
    #[arg(
        long,
        env = "CROSSPOD_OVSDB",
        default_value = "unix:/var/run/openvswitch/db.sock"
    )]
    pub ovsdb: String,

    /// Directory holding ovs-vswitchd's per-bridge OpenFlow sockets (`<bridge>.mgmt`), where
    /// the firewall programs security groups; empty: the directory of a `unix:` `--ovsdb`
    /// socket, else /var/run/openvswitch.
    #[arg(long, env = "CROSSPOD_OVS_RUNDIR", default_value = "")]
    pub ovs_rundir: String,

    /// Network namespace where this node's ovs-vswitchd and uplinks live (empty: the root
    /// namespace, as in production; the lab names one per node).
    #[arg(long, env = "CROSSPOD_NODE_NETNS", default_value = "")]
    pub node_netns: String,

    /// Prefix for the namespaces the agent creates (router instances), so several lab nodes can
    /// share one machine.
    #[arg(long, env = "CROSSPOD_NETNS_PREFIX", default_value = "")]
    pub netns_prefix: String,

    /// Seconds between connectivity probe rounds (probes also run after every change).
    #[arg(long, env = "CROSSPOD_PROBE_INTERVAL", default_value_t = 30)]
    pub probe_interval: u64,

    /// Apply one revision of the desired state and exit (debugging).
    #[arg(long, env = "CROSSPOD_ONCE")]
    pub once: bool,

    /// Standalone mode: take the desired state (a `NodeDesiredState` JSON) from this file
    /// instead of the controller; re-read when it changes. For debugging, and for running a
    /// node's data plane without a controller.
    #[arg(long, env = "CROSSPOD_DESIRED_FILE")]
    pub desired_file: Option<PathBuf>,

    /// Standalone mode: append every status report that differs from the last one to this
    /// file, one JSON line each with the Unix time in milliseconds (`{"at_ms":…,"report":…}`),
    /// where a controller would have received it.
    #[arg(long, env = "CROSSPOD_REPORT_FILE")]
    pub report_file: Option<PathBuf>,

    /// Address of the Prometheus `/metrics` endpoint; empty disables it.
    #[arg(long, env = "CROSSPOD_METRICS_BIND", default_value = "127.0.0.1:19801")]
    pub metrics_bind: String,

    /// Log format.
    #[arg(long, env = "CROSSPOD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Longest interval, in seconds, between two unsolicited IPv6 router advertisements of a
    /// leg (MaxRtrAdvInterval; the shortest is a third of it). RFC 4861's 600 s default is too
    /// slow for a lab; solicitations are answered at once anyway.
    #[arg(long, env = "CROSSPOD_RA_MAX_INTERVAL", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(3..=1800))]
    pub ra_max_interval: u64,
}

/// This node's TLS credential as read from its files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The node's certificate then its key (PEM).
    pub identity: Vec<u8>,
    /// The CA that signed the controller's certificate (PEM).
    pub ca: Vec<u8>,
}

/// Errors reading the configuration; each names the file or the option at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config file {path}: key `{key}` is not an option of crosspod-agent")]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {path}: key `{key}` must be a string, number or boolean")]
    BadValue { path: PathBuf, key: String },
    #[error("option --{option}: {message}")]
    Invalid {
        option: &'static str,
        message: String,
    },
    #[error(transparent)]
    Clap(#[from] clap::Error),
}

impl AgentConfig {
    /// Where the bridges' OpenFlow management sockets are (see `--ovs-rundir`).
    pub fn rundir(&self) -> PathBuf {
        if !self.ovs_rundir.is_empty() {
            return PathBuf::from(&self.ovs_rundir);
        }
        self.ovsdb
            .strip_prefix("unix:")
            .and_then(|p| std::path::Path::new(p).parent())
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/var/run/openvswitch"))
    }

    /// Parses flags and env, then fills whatever neither set from the `--config` TOML file.
    pub fn load_from<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        // First pass ignores missing required options: they may come from the file.
        let cmd = Self::command().ignore_errors(true);
        let first = cmd.try_get_matches_from(args.clone())?;
        let file = first.get_one::<PathBuf>("config").cloned();
        let mut full = args;
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let table: BTreeMap<String, toml::Value> =
                toml::from_str(&text).map_err(|source| ConfigError::Toml {
                    path: path.clone(),
                    source,
                })?;
            let known: Vec<String> = Self::command()
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect();
            for (key, value) in table {
                if !known.contains(&key) || key == "config" {
                    return Err(ConfigError::UnknownKey { path, key });
                }
                let id = key.replace('-', "_");
                let from_user = matches!(
                    first.value_source(&id),
                    Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable)
                );
                if from_user {
                    continue;
                }
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(true) => {
                        full.push(format!("--{key}").into());
                        continue;
                    }
                    toml::Value::Boolean(false) => continue,
                    _ => return Err(ConfigError::BadValue { path, key }),
                };
                full.push(format!("--{key}={text}").into());
            }
        }
        let matches = Self::command().try_get_matches_from(full)?;
        let cfg = Self::from_arg_matches(&matches)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mapped = self.bridge_map()?;
        self.uplink_map()?;
        if self.tunnel_bridge.is_empty() || mapped.values().any(|b| *b == self.tunnel_bridge) {
            return Err(ConfigError::Invalid {
                option: "tunnel-bridge",
                message: format!(
                    "{:?} must be a bridge of its own, not empty nor one of --bridge-mappings",
                    self.tunnel_bridge
                ),
            });
        }
        let tls = [&self.tls_cert, &self.tls_key, &self.ca]
            .iter()
            .filter(|o| o.is_some())
            .count();
        if tls != 0 && tls != 3 {
            return Err(ConfigError::Invalid {
                option: "tls-cert",
                message: "--tls-cert, --tls-key and --ca go together".into(),
            });
        }
        if tls == 0
            && self.token.is_none()
            && self.token_file.is_none()
            && self.desired_file.is_none()
        {
            return Err(ConfigError::Invalid {
                option: "token",
                message: "a credential is needed: --tls-cert/--tls-key/--ca (this node's certificate) or a node-bound --token/--token-file (or --once --desired-file FILE to run without the controller)".into(),
            });
        }
        Ok(())
    }

    /// physnet -> bridge, from `--bridge-mappings`.
    pub fn bridge_map(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        parse_pairs(&self.bridge_mappings, "bridge-mappings")
    }

    /// bridge -> uplink device, from `--uplinks`.
    pub fn uplink_map(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        parse_pairs(&self.uplinks, "uplinks")
    }

    /// The TLS identity and the trusted CA, when configured.
    pub fn resolve_tls(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.ca) else {
            return Ok(None);
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })
        };
        let mut identity = read(cert)?;
        identity.push(b'\n');
        identity.extend(read(key)?);
        Ok(Some(TlsFiles {
            identity,
            ca: read(ca)?,
        }))
    }

    /// The token, read from `--token-file` when given there.
    pub fn resolve_token(&self) -> Result<String, ConfigError> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let path = self.token_file.clone().unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(text.trim().to_string())
    }
}

/// Parses `a:b,c:d` (whitespace allowed, empty allowed) into a map, refusing duplicates.
pub fn parse_pairs(s: &str, option: &'static str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item.split_once(':').ok_or_else(|| ConfigError::Invalid {
            option,
            message: format!("`{item}` is not of the form name:value"),
        })?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() || v.contains(':') {
            return Err(ConfigError::Invalid {
                option,
                message: format!("`{item}` is not of the form name:value"),
            });
        }
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ConfigError::Invalid {
                option,
                message: format!("`{k}` is given twice"),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<AgentConfig, ConfigError> {
        let mut v = vec!["crosspod-agent"];
        v.extend_from_slice(args);
        AgentConfig::load_from(v)
    }

    #[test]
    fn defaults_match_the_guide() {
        let c = load(&["--pod", "RegionOne", "--node", "n1", "--token", "t"]).unwrap();
        assert_eq!(c.controller_url, "http://127.0.0.1:19999");
        let b = c.bridge_map().unwrap();
        assert_eq!(b["bridge"], "br-vlan");
        assert_eq!(b["extern"], "br-ext");
        assert_eq!(c.uplink_map().unwrap()["br-vlan"], "eth1");
        assert_eq!(c.datapath_type, DatapathType::System);
    }

    #[test]
    fn file_fills_what_flags_leave_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("agent.toml");
        std::fs::write(
            &f,
            "pod = \"RegionTwo\"\nnode = \"file-node\"\ntoken = \"x\"\ndatapath-type = \"netdev\"\nonce = true\n",
        )
        .unwrap();
        let c = load(&["--config", f.to_str().unwrap(), "--node", "flag-node"]).unwrap();
        assert_eq!(c.pod, "RegionTwo");
        assert_eq!(c.node, "flag-node");
        assert_eq!(c.datapath_type, DatapathType::Netdev);
        assert!(c.once);
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("agent.toml");
        std::fs::write(
            &f,
            "pod = \"R\"\nnode = \"n\"\ntoken = \"t\"\nbridge_map = \"x\"\n",
        )
        .unwrap();
        let e = load(&["--config", f.to_str().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("bridge_map"), "{e}");
    }

    #[test]
    fn bad_mappings_are_refused_with_the_option_named() {
        let e = load(&[
            "--pod",
            "R",
            "--node",
            "n",
            "--token",
            "t",
            "--bridge-mappings",
            "bridge",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--bridge-mappings"), "{e}");
        let e = load(&[
            "--pod",
            "R",
            "--node",
            "n",
            "--token",
            "t",
            "--uplinks",
            "a:b,a:c",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
    }

    #[test]
    fn local_ip_and_tunnel_bridge_come_from_flags_env_or_file() {
        let c = load(&["--pod", "R", "--node", "n", "--token", "t"]).unwrap();
        assert_eq!(c.local_ip, None);
        assert_eq!(c.tunnel_bridge, "br-tun");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("agent.toml");
        std::fs::write(
            &f,
            "pod = \"R\"\nnode = \"n\"\ntoken = \"t\"\nlocal-ip = \"192.168.50.2\"\ntunnel-bridge = \"br-vx\"\n",
        )
        .unwrap();
        let c = load(&["--config", f.to_str().unwrap()]).unwrap();
        assert_eq!(c.local_ip, Some("192.168.50.2".parse().unwrap()));
        assert_eq!(c.tunnel_bridge, "br-vx");
        let e = load(&[
            "--pod",
            "R",
            "--node",
            "n",
            "--token",
            "t",
            "--local-ip",
            "192.168.50",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--local-ip"), "{e}");
        let e = load(&[
            "--pod",
            "R",
            "--node",
            "n",
            "--token",
            "t",
            "--tunnel-bridge",
            "br-vlan",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--tunnel-bridge"), "{e}");
    }

    #[test]
    fn a_token_is_required() {
        let e = load(&["--pod", "R", "--node", "n"]).unwrap_err();
        assert!(e.to_string().contains("--token"), "{e}");
    }
}
