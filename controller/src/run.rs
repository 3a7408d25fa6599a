//! The controller's background work: realization passes (after every local commit, on
//! another controller's NOTIFY, on a kick, or every poll interval) and the jobs that follow
//! them. It drives the realizer and the jobs; neither knows about it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::Core;

/// The background task: a pass whenever this process committed a change, another controller
/// notified one (PostgreSQL), the realizer was kicked, or the configured poll interval passed
/// (`--change-log-poll-ms`); then the jobs.
pub async fn background(core: Arc<Core>) {
    let mut local = core.store.local_changes();
    if core.store.backend() == crate::store::Backend::Postgres {
        tokio::spawn(listen(core.clone()));
    }
    tokio::spawn(crate::failover::watch(core.clone()));
    let mut reports = core.reports.subscribe();
    let mut last_jobs = Instant::now() - Duration::from_secs(1);
    // RUNNING jobs are judged when something they wait for may have happened (a pass that
    // read changes or published, a report recorded, a job that moved), else every
    // RUNNING_RECHECK; see jobs::advance.
    let mut judge = true;
    let mut last_judged = Instant::now();
    loop {
        match core.realizer.pass(&*core, false).await {
            Err(e) => tracing::warn!(error = %e.message, "realization failed; will retry"),
            // A full pass is where a crash between a router's write and its job's queueing
            // is noticed: queue those jobs again.
            Ok(r) if r.full => {
                judge = true;
                if let Err(e) = crate::jobs::requeue_unrealized(&core).await {
                    tracing::warn!(error = %e.message, "re-queueing jobs of unrealized routers failed");
                }
            }
            Ok(r) => judge |= r.changes > 0 || r.published > 0,
        }
        if last_jobs.elapsed() >= Duration::from_millis(500) {
            last_jobs = Instant::now();
            let judge_now = judge || last_judged.elapsed() >= crate::jobs::RUNNING_RECHECK;
            match crate::jobs::advance(&core, judge_now).await {
                Ok(a) => {
                    if a.judged || judge_now {
                        last_judged = Instant::now();
                    }
                    // A job that moved may take its next step at once (NEW -> RUNNING -> done).
                    judge = a.moved;
                }
                Err(e) => tracing::warn!(error = %e.message, "advancing jobs failed; will retry"),
            }
        }
        tokio::select! {
            _ = core.realizer.kicked() => {}
            _ = local.changed() => {}
            _ = reports.changed() => judge = true,
            _ = tokio::time::sleep(core.config.change_log_poll) => {}
        }
    }
}

/// Wake the realizer on every change another controller commits, and whoever waits on
/// agent reports on every report another controller records (PostgreSQL LISTEN).
async fn listen(core: Arc<Core>) {
    use crate::store::changes::{CHANNEL, REPORTS_CHANNEL};
    let mut backoff = Duration::from_millis(100);
    loop {
        let res = async {
            let mut l = sqlx::postgres::PgListener::connect(&core.config.database).await?;
            l.listen_all([CHANNEL, REPORTS_CHANNEL]).await?;
            tracing::info!("listening for other controllers' changes and reports");
            loop {
                let n = l.recv().await?;
                if n.channel() == REPORTS_CHANNEL {
                    core.report_recorded();
                } else {
                    core.realizer.kick();
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "listening for changes failed; reconnecting");
        }
        // Catch up on whatever was missed while not listening.
        core.realizer.kick();
        core.report_recorded();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
