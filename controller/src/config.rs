//! Controller configuration: flags > `CROSSPOD_*` environment > `--config` TOML file > defaults.
//!
//! Every flag is an `Option` in [`Args`] so that "not given" is distinguishable from "given the
//! default"; [`Args::resolve`] then fills what is missing from the TOML file (whose keys are the
//! long flag names, e.g. `tricircle-port = 19999`) and finally from the guide's defaults.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::store::QuotaDefaults;
use crate::vlan_pool::{VlanRanges, VniRanges};

/// Failure to build a [`Config`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML or has unknown keys.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: toml::de::Error,
    },
    /// A value is syntactically valid but not acceptable.
    #[error("invalid value for {key}: {detail}")]
    Invalid {
        /// The option's long name.
        key: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Network types a tenant may get without provider attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    /// Exists in one pod only, no segment.
    Local,
    /// A VLAN on a physical network, may stretch across pods.
    Vlan,
    /// Untagged on a physical network.
    Flat,
    /// A VxLAN segment (VNI from `--vni-ranges`), may stretch across pods over tunnels.
    Vxlan,
}

impl NetworkType {
    /// Neutron's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Local => "local",
            NetworkType::Vlan => "vlan",
            NetworkType::Flat => "flat",
            NetworkType::Vxlan => "vxlan",
        }
    }
    /// Parse Neutron's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "local" => Some(NetworkType::Local),
            "vlan" => Some(NetworkType::Vlan),
            "flat" => Some(NetworkType::Flat),
            "vxlan" => Some(NetworkType::Vxlan),
            _ => None,
        }
    }
}

/// What carries the per-project bridge networks (Tricircle's `bridge_network_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BridgeNetworkType {
    /// A VLAN from the bridge physnet's range (pods share a VLAN trunk).
    Vlan,
    /// A VNI from `--vni-ranges` (pods share IP reachability between tunnel endpoints).
    Vxlan,
}

impl BridgeNetworkType {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeNetworkType::Vlan => "vlan",
            BridgeNetworkType::Vxlan => "vxlan",
        }
    }
}

/// How people's requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuthStrategy {
    /// `X-Auth-Token` looked up in the tokens file.
    Tokens,
    /// `X-Auth-Token` validated by Keystone (`GET /v3/auth/tokens`); the tokens file, if
    /// present, still authenticates agents' node-bound tokens (and nothing else).
    Keystone,
}

impl AuthStrategy {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStrategy::Tokens => "tokens",
            AuthStrategy::Keystone => "keystone",
        }
    }
}

/// Command line of `crosspod-controller`.
#[derive(Debug, Default, Parser, Deserialize)]
#[command(
    name = "crosspod-controller",
    version,
    about = "crosspod controller: Neutron v2.0 and Tricircle pod APIs"
)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Args {
    /// TOML file whose keys are the long flag names (flags and env override it).
    #[arg(long, env = "CROSSPOD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the resolved configuration (as a TOML file would hold it) and exit.
    #[arg(long, env = "CROSSPOD_PRINT_CONFIG")]
    #[serde(skip)]
    pub print_config: bool,
    /// Address both APIs listen on [default: 0.0.0.0].
    #[arg(long, env = "CROSSPOD_BIND")]
    pub bind: Option<IpAddr>,
    /// Port of the Tricircle API (/v1.0/pods) [default: 19999].
    #[arg(long, env = "CROSSPOD_TRICIRCLE_PORT")]
    pub tricircle_port: Option<u16>,
    /// Port of the Neutron v2.0 API [default: 20001].
    #[arg(long, env = "CROSSPOD_NEUTRON_PORT")]
    pub neutron_port: Option<u16>,
    /// Store URL: sqlite:///path (default sqlite:///var/lib/crosspod/controller.db) or postgres://...
    #[arg(long, env = "CROSSPOD_DATABASE")]
    pub database: Option<String>,
    /// Tokens file: `TOKEN PROJECT ROLES` per line [default: /etc/crosspod/tokens].
    #[arg(long, env = "CROSSPOD_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// VLAN ranges per physnet, as the guide [default: bridge:2001:3000,extern:3001:4000].
    #[arg(long, env = "CROSSPOD_NETWORK_VLAN_RANGES")]
    pub network_vlan_ranges: Option<String>,
    /// Pool of per-project bridge /24s [default: 100.0.0.0/9].
    #[arg(long, env = "CROSSPOD_BRIDGE_CIDR")]
    pub bridge_cidr: Option<ipnet::Ipv4Net>,
    /// Pool of per-project bridge IPv6 /64s, derived from the IPv4 /24s (the nth /24 of
    /// --bridge-cidr is the nth /64 here); `none`: bridges are IPv4 only and IPv6 is not
    /// routed across pods [default: fd64::/48].
    #[arg(long, env = "CROSSPOD_BRIDGE_CIDR_V6")]
    pub bridge_cidr_v6: Option<String>,
    /// Pod-local VLAN tags of `local` networks, `LO:HI` on the bridge physnet, minus its
    /// bridge range [default: 100:4000].
    #[arg(long, env = "CROSSPOD_LOCAL_VLAN_RANGE")]
    pub local_vlan_range: Option<String>,
    /// Where an external network created without availability-zone hints lives (Tricircle's
    /// `default_region_for_external_network`); empty: nowhere until hinted [default: RegionOne].
    #[arg(long, env = "CROSSPOD_DEFAULT_REGION_FOR_EXTERNAL_NETWORK")]
    pub default_region_for_external_network: Option<String>,
    /// What carries the per-project bridge networks: vlan (a VLAN of the bridge physnet's
    /// range) or vxlan (a VNI of --vni-ranges) [default: vxlan when --network-vlan-ranges
    /// has no range for the bridge physnet, else vlan].
    #[arg(long, env = "CROSSPOD_BRIDGE_NETWORK_TYPE")]
    pub bridge_network_type: Option<BridgeNetworkType>,
    /// VxLAN VNIs the controller allocates (Neutron's `vni_ranges`): comma-separated `LO:HI`,
    /// each within 1..16777215 [default: 1001:2000].
    #[arg(long, env = "CROSSPOD_VNI_RANGES")]
    pub vni_ranges: Option<String>,
    /// MTU of the underlay (Neutron's `global_physnet_mtu`): vlan, flat and local networks get
    /// it, VxLAN ones 50 bytes less [default: 1500].
    #[arg(long, env = "CROSSPOD_GLOBAL_PHYSNET_MTU")]
    pub global_physnet_mtu: Option<u16>,
    /// Tenant network types, first is the default for networks without provider attributes [default: local,vlan].
    #[arg(long, env = "CROSSPOD_TENANT_NETWORK_TYPES", value_delimiter = ',')]
    pub tenant_network_types: Option<Vec<NetworkType>>,
    /// Seconds between full realization passes (whole store re-read, drift check) [default: 60].
    #[arg(long, env = "CROSSPOD_FULL_PASS_INTERVAL")]
    pub full_pass_interval: Option<u64>,
    /// Lease time the DHCP servers hand out, in seconds (Neutron's `dhcp_lease_duration`)
    /// [default: 86400].
    #[arg(long, env = "CROSSPOD_DHCP_LEASE_DURATION")]
    pub dhcp_lease_duration: Option<u32>,
    /// Interval of the BFD sessions between a pod's nodes, in milliseconds: a node is seen
    /// down after interval × multiplier without packets [default: 500].
    #[arg(long, env = "CROSSPOD_BFD_INTERVAL_MS")]
    pub bfd_interval_ms: Option<u32>,
    /// BFD detect multiplier; OVS's BFD has it fixed at 3, so only 3 is accepted [default: 3].
    #[arg(long, env = "CROSSPOD_BFD_MULTIPLIER")]
    pub bfd_multiplier: Option<u8>,
    /// Milliseconds to wait after a node is judged lost before moving its router instances,
    /// so a cut-off node has withdrawn them first [default: 300].
    #[arg(long, env = "CROSSPOD_FAILOVER_HOLD_MS")]
    pub failover_hold_ms: Option<u64>,
    /// Move an instance back to its first candidate once that node is alive again (without
    /// it, an instance stays where it moved) [default: false].
    #[arg(long, env = "CROSSPOD_FAILBACK", num_args = 0..=1, default_missing_value = "true")]
    pub failback: Option<bool>,
    /// Milliseconds between change-log reads when nothing woke the realizer (changes made by
    /// another process on SQLite; PostgreSQL wakes it by NOTIFY) [default: 1000].
    #[arg(long, env = "CROSSPOD_CHANGE_LOG_POLL_MS")]
    pub change_log_poll_ms: Option<u64>,
    /// Log format [default: text].
    #[arg(long, env = "CROSSPOD_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Networks per project without a quota of its own, -1 = unlimited [default: 100].
    #[arg(long, env = "CROSSPOD_QUOTA_NETWORK", allow_negative_numbers = true)]
    pub quota_network: Option<i64>,
    /// Subnets per project without a quota of its own, -1 = unlimited [default: 100].
    #[arg(long, env = "CROSSPOD_QUOTA_SUBNET", allow_negative_numbers = true)]
    pub quota_subnet: Option<i64>,
    /// Ports per project without a quota of its own, -1 = unlimited [default: 500].
    #[arg(long, env = "CROSSPOD_QUOTA_PORT", allow_negative_numbers = true)]
    pub quota_port: Option<i64>,
    /// Routers per project without a quota of its own, -1 = unlimited [default: 10].
    #[arg(long, env = "CROSSPOD_QUOTA_ROUTER", allow_negative_numbers = true)]
    pub quota_router: Option<i64>,
    /// Floating IPs per project without a quota of its own, -1 = unlimited [default: 50].
    #[arg(long, env = "CROSSPOD_QUOTA_FLOATINGIP", allow_negative_numbers = true)]
    pub quota_floatingip: Option<i64>,
    /// Seconds a client may take to send a request's headers once it started [default: 10].
    #[arg(long, env = "CROSSPOD_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Seconds a client may take to send a request's body after its headers [default: 30].
    #[arg(long, env = "CROSSPOD_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,
    /// Seconds a keep-alive connection may sit with no request before it is closed (a
    /// long-poll in progress is not idle) [default: 60].
    #[arg(long, env = "CROSSPOD_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Concurrent `desired` long-polls per node; more get 429 [default: 4].
    #[arg(long, env = "CROSSPOD_LONG_POLLS_PER_NODE")]
    pub long_polls_per_node: Option<u64>,
    /// Concurrent `/realized` waits per project; more get 429 [default: 16].
    #[arg(long, env = "CROSSPOD_LONG_POLLS_PER_PROJECT")]
    pub long_polls_per_project: Option<u64>,
    /// Port of the agent listener (mutual TLS only) [default: 19998].
    #[arg(long, env = "CROSSPOD_AGENT_PORT")]
    pub agent_port: Option<u16>,
    /// The agent listener's server certificate chain (PEM); with --agent-tls-key and
    /// --agent-ca it serves the agent API over mutual TLS.
    #[arg(long, env = "CROSSPOD_AGENT_TLS_CERT")]
    pub agent_tls_cert: Option<PathBuf>,
    /// The agent listener's private key (PEM).
    #[arg(long, env = "CROSSPOD_AGENT_TLS_KEY")]
    pub agent_tls_key: Option<PathBuf>,
    /// The CA whose certificates name agents' nodes (PEM).
    #[arg(long, env = "CROSSPOD_AGENT_CA")]
    pub agent_ca: Option<PathBuf>,
    /// Serve the Neutron and Tricircle APIs over TLS with this certificate chain (PEM).
    #[arg(long, env = "CROSSPOD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "CROSSPOD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Who authenticates people's tokens: the tokens file or Keystone [default: tokens].
    #[arg(long, env = "CROSSPOD_AUTH_STRATEGY")]
    pub auth_strategy: Option<AuthStrategy>,
    /// Keystone's URL, with or without `/v3` (e.g. http://keystone:5000/v3).
    #[arg(long, env = "CROSSPOD_KEYSTONE_URL")]
    pub keystone_url: Option<String>,
    /// crosspod's own Keystone user (it needs the `service` role to validate tokens).
    #[arg(long, env = "CROSSPOD_KEYSTONE_USERNAME")]
    pub keystone_username: Option<String>,
    /// The password of --keystone-username (better: --keystone-password-file or the env var).
    #[arg(long, env = "CROSSPOD_KEYSTONE_PASSWORD", hide_env_values = true)]
    pub keystone_password: Option<String>,
    /// A file whose first line is the password of --keystone-username.
    #[arg(long, env = "CROSSPOD_KEYSTONE_PASSWORD_FILE")]
    pub keystone_password_file: Option<PathBuf>,
    /// The project crosspod's service token is scoped to [default: service].
    #[arg(long, env = "CROSSPOD_KEYSTONE_PROJECT")]
    pub keystone_project: Option<String>,
    /// Domain name of --keystone-username [default: Default].
    #[arg(long, env = "CROSSPOD_KEYSTONE_USER_DOMAIN")]
    pub keystone_user_domain: Option<String>,
    /// Domain name of --keystone-project [default: Default].
    #[arg(long, env = "CROSSPOD_KEYSTONE_PROJECT_DOMAIN")]
    pub keystone_project_domain: Option<String>,
    /// Seconds a validated token is trusted without asking Keystone again (never past its
    /// expires_at); a revoked token is refused at most this long after; 0: ask every time
    /// [default: 60].
    #[arg(long, env = "CROSSPOD_KEYSTONE_CACHE_SECS")]
    pub keystone_cache_secs: Option<u64>,
    /// Most validated tokens kept in the cache [default: 10000].
    #[arg(long, env = "CROSSPOD_KEYSTONE_CACHE_SIZE")]
    pub keystone_cache_size: Option<u64>,
    /// CA bundle (PEM) trusted for an https Keystone URL [default: none, http only].
    #[arg(long, env = "CROSSPOD_KEYSTONE_CA")]
    pub keystone_ca: Option<PathBuf>,
    /// Seconds a Keystone request may take before the API answers 503 [default: 5].
    #[arg(long, env = "CROSSPOD_KEYSTONE_TIMEOUT")]
    pub keystone_timeout: Option<u64>,
}

/// Where crosspod's Keystone service password comes from (kept for `--print-config`,
/// which names the file but never prints a password).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Given as a value (flag, environment or TOML).
    Value(String),
    /// Read from this file (its first line).
    File(PathBuf, String),
}

impl Secret {
    /// The password itself.
    pub fn expose(&self) -> &str {
        match self {
            Secret::Value(v) | Secret::File(_, v) => v,
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::File(p, _) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

/// Keystone as the authentication backend ([`AuthStrategy::Keystone`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoneConfig {
    /// Base URL ending in `/v3`.
    pub url: String,
    /// crosspod's service user.
    pub username: String,
    /// Its password.
    pub password: Secret,
    /// The project of the service token.
    pub project: String,
    /// Domain name of the user.
    pub user_domain: String,
    /// Domain name of the project.
    pub project_domain: String,
    /// How long a validated token is trusted (zero: not cached).
    pub cache_ttl: std::time::Duration,
    /// Most cached tokens.
    pub cache_size: usize,
    /// CA bundle for an https URL.
    pub ca: Option<PathBuf>,
    /// Timeout of each Keystone request.
    pub timeout: std::time::Duration,
}

/// Certificate, key and client CA of the agent listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTls {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
    /// CA of agents' client certificates.
    pub ca: PathBuf,
}

/// Certificate and key of the user APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTls {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Key.
    pub key: PathBuf,
}

/// Router failover settings (see `docs/architecture.md`, "Failover").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverConfig {
    /// BFD interval between a pod's nodes, in milliseconds.
    pub interval_ms: u32,
    /// BFD detect multiplier (3: OVS's).
    pub multiplier: u8,
    /// How long a node judged lost waits before its instances move.
    pub hold: std::time::Duration,
    /// Whether instances move back to their first candidate when it returns.
    pub failback: bool,
}

impl FailoverConfig {
    /// How long a peer takes to see a node down: interval × multiplier.
    pub fn detection(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.interval_ms) * u64::from(self.multiplier))
    }
}

/// Neutron's default `dhcp_lease_duration`: one day.
pub const DEFAULT_DHCP_LEASE_DURATION: u32 = 86400;

/// The resolved configuration the controller runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address of both APIs.
    pub bind: IpAddr,
    /// Tricircle API port (0 = any free port).
    pub tricircle_port: u16,
    /// Neutron API port (0 = any free port).
    pub neutron_port: u16,
    /// Store URL.
    pub database: String,
    /// Tokens file path.
    pub tokens_file: PathBuf,
    /// Parsed `network_vlan_ranges`.
    pub network_vlan_ranges: VlanRanges,
    /// Bridge network pool.
    pub bridge_cidr: ipnet::Ipv4Net,
    /// IPv6 bridge pool (`None`: no IPv6 on the bridges); holds at least as many /64s as
    /// `bridge_cidr` holds /24s.
    pub bridge_cidr_v6: Option<ipnet::Ipv6Net>,
    /// Pod-local VLAN tags (inclusive).
    pub local_vlan_range: (u16, u16),
    /// Region of external networks without hints (`None`: unplaced until hinted).
    pub default_external_region: Option<String>,
    /// Tenant network types (non-empty; first is the default).
    pub tenant_network_types: Vec<NetworkType>,
    /// What carries the per-project bridge networks.
    pub bridge_network_type: BridgeNetworkType,
    /// VNIs allocated to VxLAN networks.
    pub vni_ranges: VniRanges,
    /// The underlay's MTU.
    pub global_physnet_mtu: u16,
    /// Time between full realization passes.
    pub full_pass_interval: std::time::Duration,
    /// Lease time of the DHCP servers, in seconds.
    pub dhcp_lease_duration: u32,
    /// Time between change-log reads when nothing woke the realizer.
    pub change_log_poll: std::time::Duration,
    /// Router failover: BFD timing, hold before a move, failback.
    pub failover: FailoverConfig,
    /// Log format.
    pub log_format: LogFormat,
    /// Default quotas (Neutron's `quota_network`, ...).
    pub quotas: QuotaDefaults,
    /// How long a started request head may take (slow-header clients are cut off).
    pub header_timeout: std::time::Duration,
    /// How long a request body may take after its head (408 after that).
    pub body_timeout: std::time::Duration,
    /// How long a connection may wait for its next request.
    pub idle_timeout: std::time::Duration,
    /// Concurrent `desired` long-polls per node.
    pub long_polls_per_node: usize,
    /// Concurrent `/realized` waits per project.
    pub long_polls_per_project: usize,
    /// Port of the agent listener.
    pub agent_port: u16,
    /// The agent listener's TLS material (no agent listener without it).
    pub agent_tls: Option<AgentTls>,
    /// TLS of the Neutron and Tricircle listeners (plain HTTP without it).
    pub tls: Option<UserTls>,
    /// Keystone, when it authenticates people (`--auth-strategy keystone`).
    pub keystone: Option<KeystoneConfig>,
}

/// Default store URL.
pub const DEFAULT_DATABASE: &str = "sqlite:///var/lib/crosspod/controller.db";
/// Default IPv6 bridge pool: 65536 /64s, one for each /24 a /8 of `--bridge-cidr` could hold.
pub const DEFAULT_BRIDGE_CIDR_V6: &str = "fd64::/48";

/// `--bridge-cidr-v6`: `none`, or an IPv6 prefix of at most /64 with at least as many /64s as
/// `v4` has /24s (a project's bridge /64 is derived from its /24's index, so each must fit).
fn bridge_v6(text: &str, v4: ipnet::Ipv4Net) -> Result<Option<ipnet::Ipv6Net>, ConfigError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let invalid = |detail: String| ConfigError::Invalid {
        key: "bridge-cidr-v6",
        detail,
    };
    let net: ipnet::Ipv6Net = text
        .parse()
        .map_err(|_| invalid(format!("{text:?} is not an IPv6 prefix (or none)")))?;
    if net.prefix_len() > 64 {
        return Err(invalid(format!(
            "{net} is longer than /64: it holds no /64 for a bridge"
        )));
    }
    let v6_bits = 64 - u32::from(net.prefix_len());
    let v4_bits = 24u32.saturating_sub(u32::from(v4.prefix_len()));
    if v6_bits < v4_bits {
        return Err(invalid(format!(
            "{net} holds 2^{v6_bits} /64s, fewer than the 2^{v4_bits} /24s of --bridge-cidr {v4}: give --bridge-cidr-v6 a shorter prefix (at most /{}) or --bridge-cidr a longer one",
            64 - v4_bits
        )));
    }
    Ok(Some(net.trunc()))
}

/// Default VNI ranges (Neutron's example `vni_ranges`).
pub const DEFAULT_VNI_RANGES: &str = "1001:2000";
/// Default VLAN ranges (the guide's).
pub const DEFAULT_VLAN_RANGES: &str = "bridge:2001:3000,extern:3001:4000";

impl Args {
    /// Merge flags/env (already in `self`) over the `--config` file over defaults.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => Args::default(),
        };
        let keystone = keystone(&self, &file)?;
        let ranges_text = self
            .network_vlan_ranges
            .or(file.network_vlan_ranges)
            .unwrap_or_else(|| DEFAULT_VLAN_RANGES.to_string());
        let network_vlan_ranges =
            VlanRanges::parse(&ranges_text).map_err(|e| ConfigError::Invalid {
                key: "network-vlan-ranges",
                detail: e.to_string(),
            })?;
        let tenant_network_types = self
            .tenant_network_types
            .or(file.tenant_network_types)
            .unwrap_or_else(|| vec![NetworkType::Local, NetworkType::Vlan]);
        if tenant_network_types.is_empty() {
            return Err(ConfigError::Invalid {
                key: "tenant-network-types",
                detail: "at least one type is needed".into(),
            });
        }
        let bridge_network_type = self
            .bridge_network_type
            .or(file.bridge_network_type)
            .unwrap_or(
                if network_vlan_ranges
                    .range(crate::naming::BRIDGE_PHYSNET)
                    .is_some()
                {
                    BridgeNetworkType::Vlan
                } else {
                    BridgeNetworkType::Vxlan
                },
            );
        let vni_ranges = VniRanges::parse(
            self.vni_ranges
                .or(file.vni_ranges)
                .as_deref()
                .unwrap_or(DEFAULT_VNI_RANGES),
        )
        .map_err(|e| ConfigError::Invalid {
            key: "vni-ranges",
            detail: e.to_string(),
        })?;
        let global_physnet_mtu = self
            .global_physnet_mtu
            .or(file.global_physnet_mtu)
            .unwrap_or(1500);
        if global_physnet_mtu < 576 {
            return Err(ConfigError::Invalid {
                key: "global-physnet-mtu",
                detail: format!("{global_physnet_mtu} is below 576"),
            });
        }
        let bridge_cidr: ipnet::Ipv4Net = self
            .bridge_cidr
            .or(file.bridge_cidr)
            .unwrap_or_else(|| "100.0.0.0/9".parse().expect("valid default"));
        let bridge_cidr_v6 = bridge_v6(
            self.bridge_cidr_v6
                .or(file.bridge_cidr_v6)
                .as_deref()
                .unwrap_or(DEFAULT_BRIDGE_CIDR_V6),
            bridge_cidr,
        )?;
        let neutron = QuotaDefaults::default();
        let quotas = QuotaDefaults {
            network: quota("quota-network", self.quota_network.or(file.quota_network))?
                .unwrap_or(neutron.network),
            subnet: quota("quota-subnet", self.quota_subnet.or(file.quota_subnet))?
                .unwrap_or(neutron.subnet),
            port: quota("quota-port", self.quota_port.or(file.quota_port))?.unwrap_or(neutron.port),
            router: quota("quota-router", self.quota_router.or(file.quota_router))?
                .unwrap_or(neutron.router),
            floatingip: quota(
                "quota-floatingip",
                self.quota_floatingip.or(file.quota_floatingip),
            )?
            .unwrap_or(neutron.floatingip),
            ..neutron
        };
        Ok(Config {
            keystone,
            quotas,
            bind: self
                .bind
                .or(file.bind)
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            tricircle_port: self.tricircle_port.or(file.tricircle_port).unwrap_or(19999),
            neutron_port: self.neutron_port.or(file.neutron_port).unwrap_or(20001),
            database: self
                .database
                .or(file.database)
                .unwrap_or_else(|| DEFAULT_DATABASE.to_string()),
            tokens_file: self
                .tokens_file
                .or(file.tokens_file)
                .unwrap_or_else(|| PathBuf::from("/etc/crosspod/tokens")),
            network_vlan_ranges,
            bridge_cidr,
            bridge_cidr_v6,
            local_vlan_range: vlan_range(
                "local-vlan-range",
                self.local_vlan_range
                    .or(file.local_vlan_range)
                    .as_deref()
                    .unwrap_or("100:4000"),
            )?,
            default_external_region: match self
                .default_region_for_external_network
                .or(file.default_region_for_external_network)
            {
                None => Some("RegionOne".to_string()),
                Some(r) if r.trim().is_empty() => None,
                Some(r) => Some(r.trim().to_string()),
            },
            tenant_network_types,
            bridge_network_type,
            vni_ranges,
            global_physnet_mtu,
            full_pass_interval: std::time::Duration::from_secs(
                positive(
                    "full-pass-interval",
                    self.full_pass_interval.or(file.full_pass_interval),
                )?
                .unwrap_or(60),
            ),
            dhcp_lease_duration: positive(
                "dhcp-lease-duration",
                self.dhcp_lease_duration
                    .or(file.dhcp_lease_duration)
                    .map(u64::from),
            )?
            .map_or(DEFAULT_DHCP_LEASE_DURATION, |v| v as u32),
            change_log_poll: std::time::Duration::from_millis(
                positive(
                    "change-log-poll-ms",
                    self.change_log_poll_ms.or(file.change_log_poll_ms),
                )?
                .unwrap_or(1000),
            ),
            failover: {
                let interval_ms = positive(
                    "bfd-interval-ms",
                    self.bfd_interval_ms.or(file.bfd_interval_ms).map(u64::from),
                )?
                .map_or(planner::DEFAULT_LIVENESS_INTERVAL_MS, |v| v as u32);
                let multiplier = self
                    .bfd_multiplier
                    .or(file.bfd_multiplier)
                    .unwrap_or(planner::DEFAULT_LIVENESS_MULTIPLIER);
                if multiplier != planner::DEFAULT_LIVENESS_MULTIPLIER {
                    return Err(ConfigError::Invalid {
                        key: "bfd-multiplier",
                        detail: format!("{multiplier}: OVS's BFD detect multiplier is fixed at 3"),
                    });
                }
                FailoverConfig {
                    interval_ms,
                    multiplier,
                    hold: std::time::Duration::from_millis(
                        self.failover_hold_ms
                            .or(file.failover_hold_ms)
                            .unwrap_or(300),
                    ),
                    failback: self.failback.or(file.failback).unwrap_or(false),
                }
            },
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            header_timeout: secs(
                "header-timeout",
                self.header_timeout.or(file.header_timeout),
                10,
            )?,
            body_timeout: secs("body-timeout", self.body_timeout.or(file.body_timeout), 30)?,
            idle_timeout: secs("idle-timeout", self.idle_timeout.or(file.idle_timeout), 60)?,
            long_polls_per_node: positive(
                "long-polls-per-node",
                self.long_polls_per_node.or(file.long_polls_per_node),
            )?
            .unwrap_or(4) as usize,
            long_polls_per_project: positive(
                "long-polls-per-project",
                self.long_polls_per_project.or(file.long_polls_per_project),
            )?
            .unwrap_or(16) as usize,
            agent_port: self.agent_port.or(file.agent_port).unwrap_or(19998),
            agent_tls: match (
                self.agent_tls_cert.or(file.agent_tls_cert),
                self.agent_tls_key.or(file.agent_tls_key),
                self.agent_ca.or(file.agent_ca),
            ) {
                (None, None, None) => None,
                (Some(cert), Some(key), Some(ca)) => Some(AgentTls { cert, key, ca }),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "agent-tls-cert",
                        detail: "--agent-tls-cert, --agent-tls-key and --agent-ca go together"
                            .into(),
                    })
                }
            },
            tls: match (
                self.tls_cert.or(file.tls_cert),
                self.tls_key.or(file.tls_key),
            ) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some(UserTls { cert, key }),
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "tls-cert",
                        detail: "--tls-cert and --tls-key go together".into(),
                    })
                }
            },
        })
    }
}

impl Config {
    /// The configuration as a TOML file (keys are the long flag names) that resolves to it.
    pub fn to_toml(&self) -> String {
        let types: Vec<String> = self
            .tenant_network_types
            .iter()
            .map(|t| format!("{:?}", t.as_str()))
            .collect();
        format!(
            "bind = {:?}\ntricircle-port = {}\nneutron-port = {}\ndatabase = {:?}\ntokens-file = {:?}\nnetwork-vlan-ranges = {:?}\nbridge-cidr = {:?}\nbridge-cidr-v6 = {:?}\nlocal-vlan-range = \"{}:{}\"\ndefault-region-for-external-network = {:?}\ntenant-network-types = [{}]\nbridge-network-type = {:?}\nvni-ranges = {:?}\nglobal-physnet-mtu = {}\nfull-pass-interval = {}\ndhcp-lease-duration = {}\nbfd-interval-ms = {}\nbfd-multiplier = {}\nfailover-hold-ms = {}\nfailback = {}\nchange-log-poll-ms = {}\nlog-format = {:?}\nquota-network = {}\nquota-subnet = {}\nquota-port = {}\nquota-router = {}\nquota-floatingip = {}\nheader-timeout = {}\nbody-timeout = {}\nidle-timeout = {}\nlong-polls-per-node = {}\nlong-polls-per-project = {}\nagent-port = {}\n{}",
            self.bind.to_string(),
            self.tricircle_port,
            self.neutron_port,
            self.database,
            self.tokens_file.display().to_string(),
            self.network_vlan_ranges.to_string(),
            self.bridge_cidr.to_string(),
            self.bridge_cidr_v6
                .map_or_else(|| "none".to_string(), |n| n.to_string()),
            self.local_vlan_range.0,
            self.local_vlan_range.1,
            self.default_external_region.clone().unwrap_or_default(),
            types.join(", "),
            self.bridge_network_type.as_str(),
            self.vni_ranges.to_string(),
            self.global_physnet_mtu,
            self.full_pass_interval.as_secs(),
            self.dhcp_lease_duration,
            self.failover.interval_ms,
            self.failover.multiplier,
            self.failover.hold.as_millis(),
            self.failover.failback,
            self.change_log_poll.as_millis(),
            match self.log_format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
            self.quotas.network,
            self.quotas.subnet,
            self.quotas.port,
            self.quotas.router,
            self.quotas.floatingip,
            self.header_timeout.as_secs(),
            self.body_timeout.as_secs(),
            self.idle_timeout.as_secs(),
            self.long_polls_per_node,
            self.long_polls_per_project,
            self.agent_port,
            {
                let mut extra = String::new();
                if let Some(a) = &self.agent_tls {
                    extra.push_str(&format!(
                        "agent-tls-cert = {:?}\nagent-tls-key = {:?}\nagent-ca = {:?}\n",
                        a.cert.display().to_string(),
                        a.key.display().to_string(),
                        a.ca.display().to_string()
                    ));
                }
                if let Some(t) = &self.tls {
                    extra.push_str(&format!(
                        "tls-cert = {:?}\ntls-key = {:?}\n",
                        t.cert.display().to_string(),
                        t.key.display().to_string()
                    ));
                }
                match &self.keystone {
                    None => extra.push_str("auth-strategy = \"tokens\"\n"),
                    Some(k) => {
                        extra.push_str(&format!(
                            "auth-strategy = \"keystone\"\nkeystone-url = {:?}\nkeystone-username = {:?}\nkeystone-project = {:?}\nkeystone-user-domain = {:?}\nkeystone-project-domain = {:?}\nkeystone-cache-secs = {}\nkeystone-cache-size = {}\nkeystone-timeout = {}\n",
                            k.url,
                            k.username,
                            k.project,
                            k.user_domain,
                            k.project_domain,
                            k.cache_ttl.as_secs(),
                            k.cache_size,
                            k.timeout.as_secs()
                        ));
                        match &k.password {
                            Secret::File(p, _) => extra.push_str(&format!(
                                "keystone-password-file = {:?}\n",
                                p.display().to_string()
                            )),
                            Secret::Value(_) => extra.push_str(
                                "# keystone-password is set (not printed)\n",
                            ),
                        }
                        if let Some(ca) = &k.ca {
                            extra.push_str(&format!(
                                "keystone-ca = {:?}\n",
                                ca.display().to_string()
                            ));
                        }
                    }
                }
                extra
            },
        )
    }
}

/// The Keystone settings when `--auth-strategy keystone`; each missing one named.
fn keystone(flags: &Args, file: &Args) -> Result<Option<KeystoneConfig>, ConfigError> {
    let strategy = flags
        .auth_strategy
        .or(file.auth_strategy)
        .unwrap_or(AuthStrategy::Tokens);
    if strategy == AuthStrategy::Tokens {
        return Ok(None);
    }
    let pick = |a: &Option<String>, b: &Option<String>| {
        a.clone()
            .or_else(|| b.clone())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let need = |key: &'static str, v: Option<String>| {
        v.ok_or_else(|| ConfigError::Invalid {
            key,
            detail: "required with --auth-strategy keystone".into(),
        })
    };
    let url = need(
        "keystone-url",
        pick(&flags.keystone_url, &file.keystone_url),
    )?;
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            key: "keystone-url",
            detail: format!("'{url}' is not an http:// or https:// URL"),
        });
    }
    let url = if base.ends_with("/v3") {
        base.to_string()
    } else {
        format!("{base}/v3")
    };
    let password = match (
        flags.keystone_password.clone(),
        flags
            .keystone_password_file
            .clone()
            .or(file.keystone_password_file.clone()),
    ) {
        (Some(p), _) => Secret::Value(p),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let line = text.lines().next().unwrap_or("").to_string();
            if line.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "keystone-password-file",
                    detail: format!("{} holds no password on its first line", path.display()),
                });
            }
            Secret::File(path, line)
        }
        (None, None) => Secret::Value(need(
            "keystone-password",
            file.keystone_password.clone().filter(|p| !p.is_empty()),
        )?),
    };
    let cache_secs = flags
        .keystone_cache_secs
        .or(file.keystone_cache_secs)
        .unwrap_or(60);
    Ok(Some(KeystoneConfig {
        url,
        username: need(
            "keystone-username",
            pick(&flags.keystone_username, &file.keystone_username),
        )?,
        password,
        project: pick(&flags.keystone_project, &file.keystone_project)
            .unwrap_or_else(|| "service".into()),
        user_domain: pick(&flags.keystone_user_domain, &file.keystone_user_domain)
            .unwrap_or_else(|| "Default".into()),
        project_domain: pick(
            &flags.keystone_project_domain,
            &file.keystone_project_domain,
        )
        .unwrap_or_else(|| "Default".into()),
        cache_ttl: std::time::Duration::from_secs(cache_secs),
        cache_size: positive(
            "keystone-cache-size",
            flags.keystone_cache_size.or(file.keystone_cache_size),
        )?
        .unwrap_or(10_000) as usize,
        ca: flags.keystone_ca.clone().or(file.keystone_ca.clone()),
        timeout: secs(
            "keystone-timeout",
            flags.keystone_timeout.or(file.keystone_timeout),
            5,
        )?,
    }))
}

/// `LO:HI`, VLAN IDs 1..=4094, `LO <= HI`.
fn vlan_range(key: &'static str, text: &str) -> Result<(u16, u16), ConfigError> {
    let bad = |detail: String| ConfigError::Invalid { key, detail };
    let (lo, hi) = text
        .split_once(':')
        .ok_or_else(|| bad(format!("'{text}' is not LO:HI")))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u16>()
            .ok()
            .filter(|v| (1..=4094).contains(v))
            .ok_or_else(|| bad(format!("'{v}' is not a VLAN ID (1..4094)")))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo > hi {
        return Err(bad(format!("{lo} is above {hi}")));
    }
    Ok((lo, hi))
}

fn positive(key: &'static str, v: Option<u64>) -> Result<Option<u64>, ConfigError> {
    match v {
        Some(0) => Err(ConfigError::Invalid {
            key,
            detail: "must be at least 1".into(),
        }),
        other => Ok(other),
    }
}

/// A quota value: -1 (unlimited) or more.
fn quota(key: &'static str, v: Option<i64>) -> Result<Option<i64>, ConfigError> {
    match v {
        Some(n) if n < -1 => Err(ConfigError::Invalid {
            key,
            detail: format!("{n} is below -1 (-1 means unlimited)"),
        }),
        other => Ok(other),
    }
}

/// A timeout in whole seconds (at least 1), or its default.
fn secs(
    key: &'static str,
    v: Option<u64>,
    default: u64,
) -> Result<std::time::Duration, ConfigError> {
    Ok(std::time::Duration::from_secs(
        positive(key, v)?.unwrap_or(default),
    ))
}

fn load_file(path: &Path) -> Result<Args, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_guides() {
        let c = Args::parse_from(["x"]).resolve().unwrap();
        assert_eq!(c.tricircle_port, 19999);
        assert_eq!(c.neutron_port, 20001);
        assert_eq!(c.database, DEFAULT_DATABASE);
        assert_eq!(c.tenant_network_types[0], NetworkType::Local);
        assert_eq!(c.network_vlan_ranges.range("extern"), Some((3001, 4000)));
        assert_eq!(c.quotas, QuotaDefaults::default());
        assert_eq!(c.quotas.port, 500);
    }

    #[test]
    fn vxlan_settings_default_validate_and_print() {
        let c = Args::parse_from(["x"]).resolve().unwrap();
        assert_eq!(
            c.bridge_network_type,
            BridgeNetworkType::Vlan,
            "bridge has a range"
        );
        assert_eq!(c.vni_ranges.to_string(), "1001:2000");
        assert_eq!(c.global_physnet_mtu, 1500);
        let c = Args::parse_from(["x", "--network-vlan-ranges", "extern:3001:4000"])
            .resolve()
            .unwrap();
        assert_eq!(
            c.bridge_network_type,
            BridgeNetworkType::Vxlan,
            "no bridge range"
        );
        let c = Args::parse_from([
            "x",
            "--bridge-network-type",
            "vxlan",
            "--vni-ranges",
            "5:9,100:200",
            "--global-physnet-mtu",
            "9000",
            "--tenant-network-types",
            "vxlan,local",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.tenant_network_types[0], NetworkType::Vxlan);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, c.to_toml()).unwrap();
        let again = Args::parse_from(["x", "--config", f.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(again.bridge_network_type, BridgeNetworkType::Vxlan);
        assert_eq!(again.vni_ranges, c.vni_ranges);
        assert_eq!(again.global_physnet_mtu, 9000);
        assert_eq!(again.tenant_network_types, c.tenant_network_types);
        for bad in [
            &["x", "--vni-ranges", "0:10"][..],
            &["x", "--vni-ranges", "1:16777216"],
            &["x", "--vni-ranges", "10:5"],
            &["x", "--global-physnet-mtu", "100"],
        ] {
            let e = Args::parse_from(bad.iter().copied()).resolve().unwrap_err();
            assert!(e.to_string().contains(&bad[1][2..]), "{bad:?}: {e}");
        }
    }

    #[test]
    fn failover_settings_default_validate_and_print() {
        let c = Args::parse_from(["x"]).resolve().unwrap();
        assert_eq!(c.failover.interval_ms, 500);
        assert_eq!(c.failover.multiplier, 3);
        assert_eq!(
            c.failover.detection(),
            std::time::Duration::from_millis(1500),
            "the issue wants at most 2 s by default"
        );
        assert_eq!(c.failover.hold, std::time::Duration::from_millis(300));
        assert!(!c.failover.failback);
        let c = Args::parse_from([
            "x",
            "--bfd-interval-ms",
            "200",
            "--failover-hold-ms",
            "50",
            "--failback",
        ])
        .resolve()
        .unwrap();
        assert!(c.failover.failback);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, c.to_toml()).unwrap();
        let again = Args::parse_from(["x", "--config", f.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(again.failover, c.failover);
        for bad in [
            &["x", "--bfd-multiplier", "5"][..],
            &["x", "--bfd-interval-ms", "0"],
        ] {
            let e = Args::parse_from(bad.iter().copied()).resolve().unwrap_err();
            assert!(e.to_string().contains(&bad[1][2..]), "{bad:?}: {e}");
        }
    }

    #[test]
    fn quota_defaults_from_flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "quota-network = 7\nquota-port = 9\n").unwrap();
        let c = Args::parse_from(["x", "--config", f.to_str().unwrap(), "--quota-port", "-1"])
            .resolve()
            .unwrap();
        assert_eq!(c.quotas.network, 7);
        assert_eq!(c.quotas.port, -1);
        assert_eq!(c.quotas.router, 10);
        let e = Args::parse_from(["x", "--quota-router", "-2"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("quota-router"), "{e}");
    }

    #[test]
    fn flags_beat_file_and_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "neutron-port = 1234\ntricircle-port = 4321\ntenant-network-types = [\"vlan\"]\n",
        )
        .unwrap();
        let c = Args::parse_from(["x", "--config", f.to_str().unwrap(), "--neutron-port", "9"])
            .resolve()
            .unwrap();
        assert_eq!(c.neutron_port, 9);
        assert_eq!(c.tricircle_port, 4321);
        assert_eq!(c.tenant_network_types, vec![NetworkType::Vlan]);
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "neutron-prot = 1\n").unwrap();
        let e = Args::parse_from(["x", "--config", f.to_str().unwrap()])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("neutron-prot"), "{e}");
    }

    #[test]
    fn keystone_needs_its_settings_and_never_prints_the_password() {
        let c = Args::parse_from(["x"]).resolve().unwrap();
        assert!(c.keystone.is_none(), "tokens is the default strategy");
        assert!(c.to_toml().contains("auth-strategy = \"tokens\""));
        let e = Args::parse_from(["x", "--auth-strategy", "keystone"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("keystone-url"), "{e}");
        let e = Args::parse_from([
            "x",
            "--auth-strategy",
            "keystone",
            "--keystone-url",
            "http://k:5000",
            "--keystone-username",
            "crosspod",
        ])
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("keystone-password"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\nignored\n").unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            format!(
                "auth-strategy = \"keystone\"\nkeystone-url = \"http://k:5000/\"\nkeystone-username = \"crosspod\"\nkeystone-password-file = {:?}\nkeystone-cache-secs = 0\n",
                pw.display().to_string()
            ),
        )
        .unwrap();
        let c = Args::parse_from(["x", "--config", f.to_str().unwrap()])
            .resolve()
            .unwrap();
        let k = c.keystone.clone().unwrap();
        assert_eq!(k.url, "http://k:5000/v3");
        assert_eq!(k.password.expose(), "s3cret");
        assert_eq!(
            (k.project.as_str(), k.user_domain.as_str()),
            ("service", "Default")
        );
        assert!(k.cache_ttl.is_zero());
        assert_eq!(k.cache_size, 10_000);
        let printed = c.to_toml();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(!format!("{c:?}").contains("s3cret"));
        // What --print-config prints resolves to the same settings.
        let again = dir.path().join("again.toml");
        std::fs::write(&again, &printed).unwrap();
        let c2 = Args::parse_from(["x", "--config", again.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(c2.keystone, c.keystone);
        let e = Args::parse_from([
            "x",
            "--auth-strategy",
            "keystone",
            "--keystone-url",
            "k:5000",
            "--keystone-username",
            "u",
            "--keystone-password",
            "p",
        ])
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("not an http"), "{e}");
    }
}
