//! The controller's core: the store, the configuration, the realizer and the metrics. The
//! domain services (`service`), the realizer and the jobs work on a [`Core`]; the HTTP layer
//! (`api`) wraps it with authentication and transport concerns and is the only layer that
//! knows about HTTP.

use std::sync::Arc;

use crate::config::Config;
use crate::error::StoreError;
use crate::metrics::ControllerMetrics;
use crate::realize::Realizer;
use crate::store::Store;

/// What every layer below HTTP shares.
pub struct Core {
    /// The store.
    pub store: Store,
    /// Configuration.
    pub config: Config,
    /// Publishes node states; kicked after every write.
    pub realizer: Realizer,
    /// Prometheus metrics.
    pub metrics: ControllerMetrics,
    /// Bumped after every agent status report this controller records (and, on PostgreSQL,
    /// on every one another controller announces), so realization waits (`/realized`), the
    /// failover watcher and the jobs wake on reports instead of polling the store.
    pub reports: tokio::sync::watch::Sender<u64>,
}

impl Core {
    /// Wake whoever waits on agent reports ([`Core::reports`]).
    pub fn report_recorded(&self) {
        self.reports.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Core {
    /// Open (and migrate) the store named by the configuration.
    pub async fn open(config: Config) -> Result<Arc<Core>, StoreError> {
        let store = Store::connect(&config.database)
            .await?
            .with_quota_defaults(config.quotas)
            .with_vni_ranges(config.vni_ranges.clone());
        tracing::info!(backend = ?store.backend(), "store ready");
        Ok(Arc::new(Core {
            store,
            realizer: Realizer::with_full_pass_every(config.full_pass_interval),
            metrics: ControllerMetrics::new(),
            reports: tokio::sync::watch::Sender::new(0),
            config,
        }))
    }
}

impl crate::realize::Deps for Core {
    fn store(&self) -> &Store {
        &self.store
    }
    fn config(&self) -> &Config {
        &self.config
    }
    fn metrics(&self) -> &ControllerMetrics {
        &self.metrics
    }
    fn realizer(&self) -> &Realizer {
        &self.realizer
    }
}
