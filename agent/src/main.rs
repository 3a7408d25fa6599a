//! crosspod-agent binary: configuration, logging, then the reconcile loop.
use agent::config::{AgentConfig, LogFormat};

fn main() -> anyhow::Result<()> {
    let cfg = AgentConfig::load_from(std::env::args_os())?;
    init_logging(cfg.log_format);
    tracing::info!(pod = %cfg.pod, node = %cfg.node, "crosspod-agent configured");
    anyhow::bail!("crosspod-agent: the reconcile loop is not implemented yet")
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
