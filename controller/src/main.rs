//! crosspod-controller: the Tricircle pod API and the Neutron v2.0 API in one process.
use anyhow::Context;
use clap::Parser;
use controller::config::{Args, LogFormat};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let print = args.print_config;
    let config = args.resolve().context("configuration")?;
    if print {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("CROSSPOD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Json => sub.json().init(),
        LogFormat::Text => sub.init(),
    }
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async {
        let running = controller::api::start(config).await?;
        notify("READY=1");
        spawn_watchdog();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = running.wait() => r.context("serving")?,
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
        Ok(())
    })
}

/// Send a state line to systemd (Type=notify) when started by it.
fn notify(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        if let Ok(s) = std::os::unix::net::UnixDatagram::unbound() {
            if let Err(e) = s.send_to(state.as_bytes(), &path) {
                tracing::warn!(error = %e, state, "sd_notify failed");
            }
        }
    }
}

/// The unit has `WatchdogSec=`: ping at half the interval systemd asks for, from the
/// runtime, so a wedged runtime stops the pings and gets the service restarted.
fn spawn_watchdog() {
    let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let every =
        std::time::Duration::from_micros(usec / 2).max(std::time::Duration::from_millis(100));
    tokio::spawn(async move {
        let mut t = tokio::time::interval(every);
        loop {
            t.tick().await;
            notify("WATCHDOG=1");
        }
    });
}
