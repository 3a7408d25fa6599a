//! crosspod-agent binary: configuration, logging, the OVSDB and Linux backends, then either one
//! pass (`--once`) or the reconcile loop.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use agent::config::{AgentConfig, ConfigError, LogFormat};
use agent::controller_client::{Backoff, ControllerClient};
use agent::daemon::{self, Agent, LoopTiming};
use agent::intent::NodeContext;
use agent::linux_backend::NetnsBackend;
use agent::metrics::AgentMetrics;
use agent::ovsdb_backend::OvsdbBackend;
use agent::sd_notify::Notifier;
use anyhow::Context;
use wire::{NodeDesiredState, NodeRegistration, WatchResponse};

fn main() -> anyhow::Result<()> {
    let cfg = match AgentConfig::load_from(std::env::args_os()) {
        Ok(cfg) => cfg,
        // `--help` and `--version` print to stdout and exit 0; a usage error exits 2, as clap
        // does for every other binary.
        Err(ConfigError::Clap(e)) => e.exit(),
        Err(e) => return Err(e.into()),
    };
    init_logging(cfg.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(run(cfg))
}

async fn run(cfg: AgentConfig) -> anyhow::Result<()> {
    tracing::info!(pod = %cfg.pod, node = %cfg.node, ovsdb = %cfg.ovsdb, "crosspod-agent starting");
    let ctx = NodeContext {
        datapath_type: cfg.datapath_type.as_ovsdb().to_string(),
        uplinks: cfg.uplink_map()?,
        netns_prefix: cfg.netns_prefix.clone(),
        local_ip: cfg.local_ip,
        tunnel_bridge: cfg.tunnel_bridge.clone(),
    };
    let metrics = Arc::new(AgentMetrics::new());
    if !cfg.metrics_bind.is_empty() {
        let l = tokio::net::TcpListener::bind(&cfg.metrics_bind)
            .await
            .with_context(|| format!("binding the metrics endpoint on {}", cfg.metrics_bind))?;
        tokio::spawn(agent::metrics::serve(l, metrics.clone()));
    }
    let ovs = connect_ovsdb(&cfg).await?;
    let linux =
        NetnsBackend::with_dhcp_counters(&cfg.node_netns, &cfg.netns_prefix, metrics.dhcp.clone());
    linux.configure_ra(
        metrics.ra.clone(),
        agent::ra::RaTiming {
            max_interval: Duration::from_secs(cfg.ra_max_interval),
        },
    );
    let client = if cfg.desired_file.is_some() {
        None
    } else {
        Some(match cfg.resolve_tls()? {
            Some(t) => {
                ControllerClient::with_tls(&cfg.controller_url, &cfg.node, &t.identity, &t.ca)?
            }
            None => ControllerClient::new(&cfg.controller_url, &cfg.node, &cfg.resolve_token()?),
        })
    };
    let agent = Agent {
        node: cfg.node.clone(),
        pod: cfg.pod.clone(),
        ctx,
        ovs,
        linux,
        client: client.clone(),
        notifier: Notifier::from_env(),
        timing: LoopTiming {
            probe_interval: Duration::from_secs(cfg.probe_interval.max(1)),
            ..LoopTiming::default()
        },
        metrics,
        firewall: Some(agent::firewall::Firewall::new(cfg.rundir())),
        report_file: cfg.report_file.clone(),
        fence_held: Default::default(),
    };
    let reg = registration(&cfg)?;
    if cfg.once {
        return once(&cfg, &agent, reg).await;
    }
    let (tx, rx) = tokio::sync::watch::channel(None);
    match (&cfg.desired_file, client) {
        (Some(path), _) => {
            tokio::spawn(daemon::watch_file(path.clone(), tx));
        }
        (None, Some(client)) => {
            tokio::spawn(daemon::watch_desired(client, reg, tx));
        }
        (None, None) => unreachable!("a controller client exists without --desired-file"),
    }
    agent.run(rx, shutdown_signal()).await;
    Ok(())
}

/// Connects to OVSDB, waiting with backoff while it is not up (in `--once`: fails at once).
async fn connect_ovsdb(cfg: &AgentConfig) -> anyhow::Result<OvsdbBackend> {
    let mut backoff = Backoff::new(Duration::from_secs(10));
    loop {
        match OvsdbBackend::connect(&cfg.ovsdb).await {
            Ok(b) => return Ok(b),
            Err(e) if !cfg.once => {
                let d = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?d, "OVSDB not reachable yet");
                tokio::time::sleep(d).await;
            }
            Err(e) => return Err(e).context("connecting to OVSDB"),
        }
    }
}

fn registration(cfg: &AgentConfig) -> anyhow::Result<NodeRegistration> {
    let mappings = cfg.bridge_map()?;
    let uplinks = cfg.uplink_map()?;
    let with_uplink: BTreeSet<String> = mappings
        .iter()
        .filter(|(_, bridge)| uplinks.contains_key(*bridge))
        .map(|(physnet, _)| physnet.clone())
        .collect();
    Ok(NodeRegistration {
        pod: cfg.pod.clone(),
        node: cfg.node.clone(),
        bridge_mappings: mappings,
        uplinks: with_uplink,
        local_ip: cfg.local_ip,
    })
}

/// One pass: the desired state from `--desired-file` or the controller's current revision.
/// Prints a JSON summary (changes made, OVSDB writes, the status report) and fails when the
/// state could not be fully applied.
async fn once(
    cfg: &AgentConfig,
    agent: &Agent<OvsdbBackend, NetnsBackend>,
    reg: NodeRegistration,
) -> anyhow::Result<()> {
    let state: NodeDesiredState = match &cfg.desired_file {
        Some(path) => daemon::read_desired_file(path)?,
        None => {
            let c = agent
                .client
                .as_ref()
                .expect("client without --desired-file");
            c.register::<_, serde_json::Value>(&reg)
                .await
                .context("registering with the controller")?;
            c.watch::<WatchResponse>(0, Duration::from_secs(0))
                .await
                .context("fetching the desired state")?
                .context("the controller has no desired state for this node yet")?
                .state
        }
    };
    // Validated as a whole before anything changes: a refused document touches nothing.
    if let Err(errors) = agent.check(&state) {
        let report = agent.refused_report(errors);
        if let Some(c) = &agent.client {
            c.report(&report).await.context("reporting status")?;
        }
        let counters = agent.ovs.counters();
        let summary = serde_json::json!({
            "revision": state.revision,
            "refused": true,
            "ovs_changes": 0,
            "linux_changes": 0,
            "ovsdb_write_transactions": counters.write_transactions,
            "ovsdb_transactions": counters.transactions,
            "report": report,
        });
        println!("{summary}");
        anyhow::bail!(
            "revision {} refused, nothing applied: {:?}",
            state.revision,
            report.errors
        );
    }
    let mut probes = Vec::new();
    let (pass, report) = agent.apply(&state, true, &mut probes).await;
    if let Some(c) = &agent.client {
        c.report(&report).await.context("reporting status")?;
    }
    let counters = agent.ovs.counters();
    let summary = serde_json::json!({
        "revision": state.revision,
        "refused": false,
        "ovs_changes": pass.ovs_changes,
        "linux_changes": pass.linux_changes,
        "flows_added": pass.flows_added,
        "flows_deleted": pass.flows_deleted,
        "flows_desired": pass.flows_desired,
        "ovsdb_write_transactions": counters.write_transactions,
        "ovsdb_transactions": counters.transactions,
        "report": report,
    });
    println!("{summary}");
    if !report.errors.is_empty() || !pass.complete() {
        anyhow::bail!(
            "revision {} not fully applied: {:?}",
            state.revision,
            report.errors
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
