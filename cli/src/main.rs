//! crosspod: the operator's command line. `crosspod lab` brings pods of nodes up on one
//! machine (namespaces with their own OVS, provider switches, an underlay, an upstream
//! network, the controller and one agent per node); `crosspod vm` boots lab VMs (namespaces plugged like Nova/os-vif does).

mod http;
mod keystone;
mod lab;
mod output;
mod ovsdb;
mod pki;
mod probe;
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use serde_json::json;

use output::{progress, table};

#[derive(Debug, Parser)]
#[command(
    name = "crosspod",
    version,
    about = "crosspod: cross-pod networking for Open vSwitch clouds"
)]
struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true, env = "CROSSPOD_JSON")]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Pods of nodes on one machine: nodes and switches as namespaces, controller and agents
    /// as daemons.
    Lab(LabArgs),
    /// Lab VMs (the Nova stand-in): namespaces plugged into a node's br-vlan.
    Vm(VmArgs),
    /// The lab's connectivity matrix from real packets (VMs, upstream router, floating IPs),
    /// and the router instances' probes reported by the agents. Exit status 3 when a pair
    /// does not answer.
    Probe(ProbeArgs),
    /// A CA for crosspod's control traffic: node certificates for agents, a server
    /// certificate for the controller.
    Pki(PkiArgs),
    /// Keystone: register crosspod in the catalog.
    Keystone(KeystoneArgs),
    /// Shell completions: `crosspod completions bash > /etc/bash_completion.d/crosspod`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
struct PkiArgs {
    /// Directory of the CA and the certificates it issues.
    #[arg(
        long,
        env = "CROSSPOD_PKI_DIR",
        default_value = "/etc/crosspod/pki",
        global = true
    )]
    dir: PathBuf,
    #[command(subcommand)]
    cmd: PkiCmd,
}

#[derive(Debug, Subcommand)]
enum PkiCmd {
    /// Make the CA (`ca.pem`, `ca.key`) unless it exists.
    Init,
    /// Issue a node's client certificate (`--node NAME`) or the controller's server
    /// certificate (`--server NAME --san HOST_OR_IP ...`), as `NAME.pem` and `NAME.key`.
    Issue {
        /// The node the agent speaks for (the certificate's subject).
        #[arg(long, conflicts_with = "server", required_unless_present = "server")]
        node: Option<String>,
        /// A server certificate's name.
        #[arg(long)]
        server: Option<String>,
        /// DNS names and IP addresses of the server (repeat or comma-separate).
        #[arg(long, value_delimiter = ',', requires = "server")]
        san: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct KeystoneArgs {
    #[command(subcommand)]
    cmd: KeystoneCmd,
}

#[derive(Debug, Subcommand)]
enum KeystoneCmd {
    /// Create the `network` service and its public, internal and admin endpoints pointing at
    /// the controller's Neutron URL (idempotent: a second run changes nothing; endpoints
    /// pointing elsewhere are moved). Authenticates like the openstack CLI (OS_* variables),
    /// as a user allowed to change the catalog (admin).
    Register {
        /// The controller's Neutron API URL, as clients reach it (http://controller:20001).
        #[arg(long)]
        url: String,
        /// The service's name.
        #[arg(long, default_value = "neutron")]
        name: String,
        /// Region of the endpoints.
        #[arg(long, env = "OS_REGION_NAME", default_value = "RegionOne")]
        region: String,
        #[command(flatten)]
        auth: OsAuth,
    },
}

/// Password authentication to Keystone, named as the openstack CLI names it.
#[derive(Debug, Args)]
struct OsAuth {
    /// Keystone's URL.
    #[arg(long, env = "OS_AUTH_URL")]
    os_auth_url: String,
    /// User name.
    #[arg(long, env = "OS_USERNAME")]
    os_username: String,
    /// Password.
    #[arg(long, env = "OS_PASSWORD", hide_env_values = true)]
    os_password: String,
    /// Project name.
    #[arg(long, env = "OS_PROJECT_NAME")]
    os_project_name: String,
    /// Domain name of the user.
    #[arg(long, env = "OS_USER_DOMAIN_NAME", default_value = "Default")]
    os_user_domain_name: String,
    /// Domain name of the project.
    #[arg(long, env = "OS_PROJECT_DOMAIN_NAME", default_value = "Default")]
    os_project_domain_name: String,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// Lab directory.
    #[arg(
        long,
        env = "CROSSPOD_LAB_DIR",
        default_value = "/var/lib/crosspod/lab"
    )]
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct LabArgs {
    /// Lab directory (state, OVS databases and sockets, logs, tokens).
    #[arg(
        long,
        global = true,
        env = "CROSSPOD_LAB_DIR",
        default_value = "/var/lib/crosspod/lab"
    )]
    dir: PathBuf,
    #[command(subcommand)]
    cmd: LabCmd,
}

#[derive(Debug, Subcommand)]
enum LabCmd {
    /// Bring the lab up (idempotent: a second run changes nothing).
    Up(UpArgs),
    /// Remove every namespace, process, cable and file the lab made (safe to run twice).
    Down,
    /// Shell exports for the openstack CLI and the guide's curl commands: eval "$(crosspod lab env)".
    Env,
    /// Print a new token for a project (appended to the lab's tokens file).
    Token {
        /// Project the token acts as.
        #[arg(long)]
        project: String,
        /// Roles, comma-separated among admin, member, reader, agent.
        #[arg(long, default_value = "member", value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Namespaces, daemons and APIs of the lab, up or down (exit status 3 when any is down).
    Status,
    /// Inject a failure into one node, or repair it (router failover's failure model).
    Node {
        #[command(subcommand)]
        cmd: NodeCmd,
    },
    /// Make the upstream's IPv6 routes to the projects' subnets exactly what the API says:
    /// `<subnet> via <router's external IPv6 address>` for every router with an IPv6
    /// external gateway and every IPv6 subnet on its interfaces (IPv6 leaves without NAT, so
    /// the upstream must route the projects' prefixes back). Adds, replaces and removes only
    /// its own routes (protocol 203). Reads the API with the lab's admin token.
    UpstreamRoutes,
}

#[derive(Debug, Subcommand)]
enum NodeCmd {
    /// Power the node off: kill its agent, ovs-vswitchd and ovsdb-server (SIGKILL), delete its
    /// agent's router/DHCP namespaces and its VMs; its cables stay, carrying nothing.
    Stop {
        /// The node (`node1`, `node2-1`, ...).
        node: String,
    },
    /// Power the node on: its OVS, bridges, tunnel IP and agent as `lab up` makes them (VMs
    /// are not rebooted).
    Start {
        /// The node.
        node: String,
        /// The agent binary [default: crosspod-agent next to this program].
        #[arg(long, env = "CROSSPOD_AGENT_BIN")]
        agent_bin: Option<PathBuf>,
    },
    /// Cut the node's cables (their far ends down: the node sees no carrier); its daemons
    /// keep running.
    Cut {
        /// The node.
        node: String,
    },
    /// Bring the node's cut cables back up.
    Mend {
        /// The node.
        node: String,
    },
    /// Kill only the node's agent (SIGKILL); `lab up` restarts it.
    KillAgent {
        /// The node.
        node: String,
    },
}

#[derive(Debug, Args)]
struct UpArgs {
    /// Prefix for every namespace name (at most 10 bytes), so several labs can coexist.
    #[arg(long, env = "CROSSPOD_LAB_PREFIX", default_value = "")]
    prefix: String,
    /// Port of the controller's Tricircle API on 127.0.0.1.
    #[arg(long, env = "CROSSPOD_TRICIRCLE_PORT", default_value_t = 19999)]
    tricircle_port: u16,
    /// Port of the controller's Neutron API on 127.0.0.1.
    #[arg(long, env = "CROSSPOD_NEUTRON_PORT", default_value_t = 20001)]
    neutron_port: u16,
    /// Port of the controller's agent listener (mutual TLS) on 127.0.0.1; 0 picks a free one
    /// (`lab env` tells it as CROSSPOD_AGENT_URL).
    #[arg(long, env = "CROSSPOD_AGENT_PORT", default_value_t = 0)]
    agent_port: u16,
    /// Serve the Neutron and Tricircle APIs over TLS too (the controller's certificate from
    /// the lab's CA; `lab env` sets OS_CACERT).
    #[arg(long, env = "CROSSPOD_LAB_TLS")]
    tls: bool,
    /// Upstream router address on the external network, with prefix.
    #[arg(
        long,
        env = "CROSSPOD_UPSTREAM_GATEWAY",
        default_value = "163.3.124.1/24"
    )]
    upstream_gateway: IpNet,
    /// VLAN of the external network on eth2 (0: untagged, for a flat external network).
    #[arg(long, env = "CROSSPOD_UPSTREAM_VLAN", default_value_t = 3001)]
    upstream_vlan: u16,
    /// RegionOne's own upstream router (node1's eth2), for an external network in each pod
    /// (Tricircle's multi-gateway topology).
    #[arg(
        long,
        env = "CROSSPOD_REGION_ONE_UPSTREAM_GATEWAY",
        default_value = "163.3.125.1/24"
    )]
    region_one_upstream_gateway: IpNet,
    /// VLAN of RegionOne's external network on node1's eth2 (0: untagged).
    #[arg(
        long,
        env = "CROSSPOD_REGION_ONE_UPSTREAM_VLAN",
        default_value_t = 3002
    )]
    region_one_upstream_vlan: u16,
    /// The upstream router's IPv6 address (gw0) on the external network's IPv6 subnet.
    #[arg(
        long,
        env = "CROSSPOD_UPSTREAM_GATEWAY_V6",
        default_value = "2001:db8:124::1/64"
    )]
    upstream_gateway_v6: IpNet,
    /// RegionOne's upstream router's IPv6 address (gw1).
    #[arg(
        long,
        env = "CROSSPOD_REGION_ONE_UPSTREAM_GATEWAY_V6",
        default_value = "2001:db8:125::1/64"
    )]
    region_one_upstream_gateway_v6: IpNet,
    /// The controller binary [default: crosspod-controller next to this program].
    #[arg(long, env = "CROSSPOD_CONTROLLER_BIN")]
    controller_bin: Option<PathBuf>,
    /// The agent binary [default: crosspod-agent next to this program].
    #[arg(long, env = "CROSSPOD_AGENT_BIN")]
    agent_bin: Option<PathBuf>,
    /// Build the network only; start neither the controller nor the agents.
    #[arg(long)]
    no_daemons: bool,
    /// Run a Keystone of the lab's own (users admin, demo, other, reader; `lab env` gives
    /// password auth) and authenticate people with it; agents keep their certificates.
    #[arg(long, env = "CROSSPOD_LAB_KEYSTONE")]
    keystone: bool,
    /// The venv holding Keystone and uWSGI (scripts/install-deps.sh makes it).
    #[arg(
        long,
        env = "CROSSPOD_KEYSTONE_VENV",
        default_value = "/var/lib/crosspod/keystone-venv"
    )]
    keystone_venv: PathBuf,
    /// Number of pods: RegionOne/az1, RegionTwo/az2, RegionThree/az3, ...
    #[arg(long, env = "CROSSPOD_LAB_PODS", default_value_t = 2)]
    pods: u32,
    /// Nodes in each pod (named node1, node2 in the default 2×1 lab, node<pod>-<n> otherwise).
    #[arg(long, env = "CROSSPOD_LAB_NODES_PER_POD", default_value_t = 1)]
    nodes_per_pod: u32,
    /// How the bridge network crosses pods: vlan (the pods' provider switches joined by a
    /// core switch trunking VLANs 2001-3000) or vxlan (pods share only the underlay). Passed
    /// to the controller when it has the flag.
    #[arg(long, env = "CROSSPOD_BRIDGE_NETWORK_TYPE", default_value = "vlan")]
    bridge_network_type: lab::state::BridgeNetworkType,
}

#[derive(Debug, Args)]
struct VmArgs {
    /// Lab directory.
    #[arg(
        long,
        global = true,
        env = "CROSSPOD_LAB_DIR",
        default_value = "/var/lib/crosspod/lab"
    )]
    dir: PathBuf,
    /// Neutron endpoint [default: the lab controller's].
    #[arg(long, global = true, env = "OS_ENDPOINT")]
    os_endpoint: Option<String>,
    /// Token; its project owns the port, as with the openstack CLI.
    #[arg(long, global = true, env = "OS_TOKEN", hide_env_values = true)]
    os_token: Option<String>,
    #[command(subcommand)]
    cmd: VmCmd,
}

#[derive(Debug, Subcommand)]
enum VmCmd {
    /// Create a port and a VM namespace plugged into the region's node.
    Boot {
        /// Region (pod) to boot in: RegionOne, RegionTwo, ...
        #[arg(long)]
        region: String,
        /// The node of the region to plug into [default: the region's first node].
        #[arg(long)]
        node: Option<String>,
        /// Network name or id.
        #[arg(long)]
        network: String,
        /// VM name (also the namespace name).
        name: String,
        /// Wait up to this many seconds for the agent to bind the port (status ACTIVE), as
        /// Nova waits for vif-plugged; 0 returns right after plugging.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Write every address of the port into the namespace (no DHCP client, no router
        /// advertisements), with default routes via the subnets' gateways.
        #[arg(long = "static", conflicts_with = "dhcp")]
        static_addr: bool,
        /// Get the address by DHCP even when the subnet has DHCP off; no lease is an error.
        /// Default: DHCP when the subnet is IPv4 with enable_dhcp, else static; IPv6 addresses
        /// follow the subnet's ipv6_address_mode (slaac / dhcpv6-stateless: router
        /// advertisements, dhcpv6-stateful: dhclient -6, none: static).
        #[arg(long)]
        dhcp: bool,
    },
    /// Unplug the VM, delete its namespace and its port.
    Delete {
        /// VM name.
        name: String,
    },
    /// The lab's VMs.
    List,
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`crosspod lab status | head`), as command-line tools do.
    // SAFETY: resetting a signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CROSSPOD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crosspod: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_pki(p: PkiArgs) -> Result<ExitCode> {
    match p.cmd {
        PkiCmd::Init => {
            if pki::init(&p.dir)? {
                println!("CA made: {}", p.dir.join(pki::CA_CERT).display());
            } else {
                println!("CA kept: {}", p.dir.join(pki::CA_CERT).display());
            }
        }
        PkiCmd::Issue { node, server, san } => {
            let subject = match (&node, &server) {
                (Some(n), _) => pki::Subject::Node(n),
                (None, Some(s)) => pki::Subject::Server {
                    name: s,
                    sans: &san,
                },
                (None, None) => anyhow::bail!("--node or --server is needed"),
            };
            let out = pki::issue(&p.dir, &subject)?;
            println!("{}\n{}", out.cert.display(), out.key.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Lab(l) => run_lab(l, cli.json),
        Cmd::Vm(v) => run_vm(v, cli.json),
        Cmd::Probe(p) => run_probe(p, cli.json),
        Cmd::Pki(p) => run_pki(p),
        Cmd::Keystone(k) => run_keystone(k, cli.json),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "crosspod",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_keystone(k: KeystoneArgs, as_json: bool) -> Result<ExitCode> {
    match k.cmd {
        KeystoneCmd::Register {
            url,
            name,
            region,
            auth,
        } => {
            let s = keystone::Session::password(&keystone::Creds {
                auth_url: auth.os_auth_url,
                username: auth.os_username,
                password: auth.os_password,
                project: auth.os_project_name,
                user_domain: auth.os_user_domain_name,
                project_domain: auth.os_project_domain_name,
            })?;
            let changes = s.register_network(&name, &url, &region)?;
            if as_json {
                output::json(&json!({"changed": !changes.is_empty(), "changes": changes}));
            } else if changes.is_empty() {
                println!(
                    "{name} (network) at {url} in {region}: already registered, nothing changed"
                );
            } else {
                println!(
                    "{name} (network) at {url} in {region}: {}",
                    changes.join(", ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_lab(l: LabArgs, as_json: bool) -> Result<ExitCode> {
    let dir = absolute(&l.dir)?;
    match l.cmd {
        LabCmd::Up(u) => {
            let o = lab::UpOptions {
                dir: dir.clone(),
                prefix: u.prefix,
                tricircle_port: u.tricircle_port,
                neutron_port: u.neutron_port,
                agent_port: u.agent_port,
                tls: u.tls,
                upstream_gateway: u.upstream_gateway,
                upstream_vlan: u.upstream_vlan,
                region_one_upstream_gateway: u.region_one_upstream_gateway,
                region_one_upstream_vlan: u.region_one_upstream_vlan,
                upstream_gateway_v6: u.upstream_gateway_v6,
                region_one_upstream_gateway_v6: u.region_one_upstream_gateway_v6,
                controller_bin: u
                    .controller_bin
                    .unwrap_or_else(|| lab::sibling_binary("crosspod-controller")),
                agent_bin: u
                    .agent_bin
                    .unwrap_or_else(|| lab::sibling_binary("crosspod-agent")),
                no_daemons: u.no_daemons,
                keystone: u.keystone,
                keystone_venv: u.keystone_venv,
                pods: u.pods,
                nodes_per_pod: u.nodes_per_pod,
                bridge_network_type: u.bridge_network_type,
            };
            progress(format!("bringing the lab up in {}", dir.display()));
            let rep = lab::up(&o).with_context(|| {
                format!(
                    "lab up failed; what was made is recorded, `crosspod lab down --dir {}` removes it",
                    dir.display()
                )
            })?;
            if as_json {
                let nr: Vec<_> = rep
                    .not_running
                    .iter()
                    .map(|(n, w)| json!({"name": n, "why": w}))
                    .collect();
                output::json(&json!({
                    "dir": dir, "changed": !rep.changes.is_empty(),
                    "changes": rep.changes, "not_running": nr,
                }));
            } else {
                if rep.changes.is_empty() {
                    println!("lab is up in {}; nothing changed", dir.display());
                } else {
                    println!(
                        "lab is up in {} ({} changes: {})",
                        dir.display(),
                        rep.changes.len(),
                        rep.changes.join(", ")
                    );
                }
                for (name, why) in &rep.not_running {
                    println!("WARNING: {name} is not running: {why}");
                }
                println!("next: eval \"$(crosspod lab env --dir {})\"", dir.display());
                if !o.no_daemons {
                    println!(
                    "then create the pods as the guide's step 5 does (the agents wait for them), e.g.\n  curl -X POST http://127.0.0.1:{}/v1.0/pods -H \"Content-Type: application/json\" -H \"X-Auth-Token: $token\" -d '{{\"pod\": {{\"region_name\": \"RegionOne\", \"az_name\": \"az1\"}}}}'",
                    o.tricircle_port
                );
                }
            }
        }
        LabCmd::Down => {
            let rep = lab::down(&dir)?;
            if as_json {
                output::json(&json!({"found": rep.found, "removed": rep.removed}));
            } else if !rep.found {
                println!("no lab in {}; nothing to do", dir.display());
            } else {
                for r in &rep.removed {
                    progress(format!("removed {r}"));
                }
                println!("lab in {} is down", dir.display());
            }
        }
        LabCmd::Env => {
            let text = lab::env(&dir)?;
            if as_json {
                let vars: serde_json::Map<String, serde_json::Value> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("export "))
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), json!(v.trim_matches('\''))))
                    .collect();
                output::json(&serde_json::Value::Object(vars));
            } else {
                print!("{text}");
            }
        }
        LabCmd::Token { project, roles } => {
            let t = lab::token(&dir, &project, &roles)?;
            if as_json {
                output::json(&json!({"token": t, "project": project, "roles": roles}));
            } else {
                println!("{t}");
            }
        }
        LabCmd::Status => {
            if !lab::status::status(&dir, as_json)? {
                return Ok(ExitCode::from(3));
            }
        }
        LabCmd::UpstreamRoutes => {
            let rep = lab::upstream::sync_from_api(&dir)?;
            if as_json {
                output::json(&serde_json::to_value(&rep)?);
            } else {
                for (dst, via) in &rep.routes {
                    println!("{dst} via {via}");
                }
                if rep.changes.is_empty() {
                    println!("upstream routes: {} (nothing changed)", rep.routes.len());
                } else {
                    println!(
                        "upstream routes: {} ({})",
                        rep.routes.len(),
                        rep.changes.join(", ")
                    );
                }
            }
        }
        LabCmd::Node { cmd } => {
            use lab::faults::NodeAction;
            let (node, action, agent_bin) = match cmd {
                NodeCmd::Stop { node } => (node, NodeAction::Stop, None),
                NodeCmd::Start { node, agent_bin } => (node, NodeAction::Start, agent_bin),
                NodeCmd::Cut { node } => (node, NodeAction::Cut, None),
                NodeCmd::Mend { node } => (node, NodeAction::Mend, None),
                NodeCmd::KillAgent { node } => (node, NodeAction::KillAgent, None),
            };
            let agent_bin = agent_bin.unwrap_or_else(|| lab::sibling_binary("crosspod-agent"));
            let rep = lab::faults::node(&dir, &node, action, &agent_bin)?;
            if as_json {
                let nr: Vec<_> = rep
                    .not_running
                    .iter()
                    .map(|(n, w)| json!({"name": n, "why": w}))
                    .collect();
                output::json(&json!({
                    "node": node, "changed": !rep.changes.is_empty(),
                    "changes": rep.changes, "not_running": nr,
                }));
            } else {
                let what = match action {
                    NodeAction::Stop => "powered off",
                    NodeAction::Start => "powered on",
                    NodeAction::Cut => "cut off (its cables down)",
                    NodeAction::Mend => "cabled again",
                    NodeAction::KillAgent => "without its agent",
                };
                if rep.changes.is_empty() {
                    println!("{node} is {what}; nothing changed");
                } else {
                    println!(
                        "{node} is {what} ({} changes: {})",
                        rep.changes.len(),
                        rep.changes.join(", ")
                    );
                }
                for (name, why) in &rep.not_running {
                    println!("WARNING: {name} is not running: {why}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_probe(p: ProbeArgs, as_json: bool) -> Result<ExitCode> {
    let dir = absolute(&p.dir)?;
    progress("probing (ICMP from each VM and from the external network)");
    let m = probe::run(&dir)?;
    if as_json {
        output::json(&serde_json::to_value(&m)?);
    } else {
        let (headers, rows) = probe::rows(&m);
        let h: Vec<&str> = headers.iter().map(String::as_str).collect();
        table(&h, &rows);
        if !m.routers.is_empty() {
            println!();
            let rows: Vec<Vec<String>> = m
                .routers
                .iter()
                .map(|r| {
                    vec![
                        r.node.clone(),
                        r.router_id.chars().take(8).collect(),
                        r.target.clone(),
                        if r.reachable {
                            "ok".into()
                        } else {
                            "NO ANSWER".into()
                        },
                        r.latency_us
                            .map(|us| format!("{:.2} ms", us as f64 / 1000.0))
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["node", "router", "probes", "result", "rtt"], &rows);
        }
    }
    Ok(if m.all_reachable() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("reading the current directory")?
            .join(p))
    }
}

fn api_of(v: &VmArgs, dir: &std::path::Path) -> Result<Option<vm::Api>> {
    let Some(token) = v.os_token.clone() else {
        return Ok(None);
    };
    let endpoint = match &v.os_endpoint {
        Some(e) => e.clone(),
        None => {
            let st = lab::state::LabState::require(dir)?;
            st.api_url(st.neutron_port)
        }
    };
    Ok(Some(vm::Api { endpoint, token }))
}

fn run_vm(v: VmArgs, as_json: bool) -> Result<ExitCode> {
    let dir = absolute(&v.dir)?;
    let api = api_of(&v, &dir)?;
    let need_api = || {
        api.clone().context(
            "no token: set OS_TOKEN (eval \"$(crosspod lab env)\", or `crosspod lab token --project NAME`) or pass --os-token",
        )
    };
    match &v.cmd {
        VmCmd::Boot {
            region,
            node,
            network,
            name,
            wait,
            static_addr,
            dhcp,
        } => {
            let api = need_api()?;
            let mode = match (static_addr, dhcp) {
                (true, _) => vm::AddressMode::Static,
                (_, true) => vm::AddressMode::Dhcp,
                _ => vm::AddressMode::Auto,
            };
            let r = vm::boot(&dir, &api, region, node.as_deref(), network, name, mode)?;
            if *wait > 0 {
                progress(format!(
                    "waiting up to {wait}s for the agent of {} to bind port {}",
                    r.node, r.port_id
                ));
                vm::wait_active(&api, &r, std::time::Duration::from_secs(*wait))?;
            }
            if as_json {
                output::json(&serde_json::to_value(&r)?);
            } else {
                let addrs: Vec<String> = r
                    .all_addresses()
                    .iter()
                    .map(|a| match a.how {
                        vm::AddrHow::Static => a.address.to_string(),
                        vm::AddrHow::Dhcp => format!("{} by DHCP", a.address),
                        h => format!("{} by {}", a.address, h.as_str()),
                    })
                    .collect();
                println!(
                    "vm {} booted on {} ({}): {} {} port {} (tagging is the agent's job)",
                    r.name,
                    r.node,
                    r.region,
                    addrs.join(", "),
                    r.mac,
                    r.port_id,
                );
            }
        }
        VmCmd::Delete { name } => {
            let api = need_api()?;
            let r = vm::delete(&dir, Some(&api), name)?;
            if as_json {
                output::json(&json!({"deleted": r.name, "port_id": r.port_id}));
            } else {
                println!("vm {} deleted (port {})", r.name, r.port_id);
            }
        }
        VmCmd::List => {
            let views = vm::list(&dir, api.as_ref())?;
            if as_json {
                output::json(&serde_json::to_value(&views)?);
            } else {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|w| {
                        vec![
                            w.record.name.clone(),
                            w.record.region.clone(),
                            w.record.node.clone(),
                            w.record
                                .all_addresses()
                                .iter()
                                .map(|a| a.address.to_string())
                                .collect::<Vec<_>>()
                                .join(","),
                            w.record.mac.clone(),
                            w.record.port_id.clone(),
                            w.tag.clone().unwrap_or_else(|| "-".into()),
                            w.port_status.clone().unwrap_or_else(|| "?".into()),
                            if w.netns_present { "yes" } else { "MISSING" }.into(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "NAME", "REGION", "NODE", "ADDRESS", "MAC", "PORT", "TAG", "STATUS",
                        "NETNS",
                    ],
                    &rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
