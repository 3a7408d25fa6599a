//! Jobs, as Tricircle's `/v1.0/jobs`: one persistent job per router that a change touched
//! (interfaces, gateway, floating IPs, port bindings). The latest request for a router wins and
//! bursts collapse into one NEW job ([`crate::store::Store::queue_job`]). A job is RUNNING
//! while the nodes it touches catch up, SUCCESS when every node reports the router ready at a
//! revision that holds the change, FAIL when an agent reports the router failed or the nodes
//! do not catch up in time; failed jobs are retried with capped backoff. Jobs live in the
//! store, so a controller killed mid-job resumes it at start.

use std::time::Duration;

use crate::core::Core;
use crate::error::DomainError;
use crate::store::l3::JobState;

/// How long a job may stay RUNNING before it fails (and is retried).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// Retries of a failed job, with backoff 2^attempt seconds capped at a minute.
pub const MAX_ATTEMPTS: i64 = 8;

fn age_secs(ts: &str) -> u64 {
    // An unreadable timestamp counts as old: the job times out rather than hangs.
    crate::store::age_secs(ts).unwrap_or(u64::MAX)
}

/// Moves every unfinished job one step.
pub async fn advance(core: &Core) -> Result<(), DomainError> {
    let jobs = core.store.list_jobs().await?;
    if jobs.iter().all(|j| {
        j.status == JobState::Success || (j.status == JobState::Fail && j.attempts >= MAX_ATTEMPTS)
    }) {
        return Ok(());
    }
    // Every node's report, read once for all the jobs.
    let reports = crate::realize::Reports::load(core).await?;
    let intent = core.realizer.current_intent().await;
    for job in jobs {
        match job.status {
            JobState::New => {
                core.store
                    .set_job(&job.id, JobState::Running, job.attempts + 1, None)
                    .await?;
            }
            JobState::Running => {
                if core.store.get_router(&job.resource_id).await.is_err() {
                    // The router is gone: nothing left to realize.
                    core.store
                        .set_job(&job.id, JobState::Success, job.attempts, None)
                        .await?;
                    continue;
                }
                match crate::realize::router_state(
                    core,
                    &reports,
                    intent.as_deref(),
                    &job.resource_id,
                ) {
                    Ok(true) => {
                        core.store
                            .set_job(&job.id, JobState::Success, job.attempts, None)
                            .await?;
                        core.metrics.record_job(
                            &job.kind,
                            JobState::Success.as_str(),
                            Duration::from_secs(age_secs(&job.timestamp).min(86_400)),
                        );
                        tracing::info!(job = %job.id, router = %job.resource_id, "job done");
                    }
                    Ok(false) if age_secs(&job.timestamp) > JOB_TIMEOUT.as_secs() => {
                        core.metrics
                            .record_job(&job.kind, JobState::Fail.as_str(), JOB_TIMEOUT);
                        core.store
                            .set_job(
                                &job.id,
                                JobState::Fail,
                                job.attempts,
                                Some("nodes did not apply the change in time"),
                            )
                            .await?;
                    }
                    Ok(false) => {}
                    Err(reason) => {
                        tracing::warn!(job = %job.id, router = %job.resource_id, %reason, "job failed");
                        core.metrics.record_job(
                            &job.kind,
                            JobState::Fail.as_str(),
                            Duration::from_secs(age_secs(&job.timestamp).min(86_400)),
                        );
                        core.store
                            .set_job(&job.id, JobState::Fail, job.attempts, Some(&reason))
                            .await?;
                    }
                }
            }
            JobState::Fail if job.attempts < MAX_ATTEMPTS => {
                let backoff = (1u64 << job.attempts.clamp(0, 6)).min(60);
                if age_secs(&job.timestamp) >= backoff {
                    core.store
                        .set_job(
                            &job.id,
                            JobState::Running,
                            job.attempts + 1,
                            job.last_error.as_deref(),
                        )
                        .await?;
                    core.realizer.kick();
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Routers whose change is not realized everywhere but whose job says SUCCESS (or that have
/// none): a controller killed between a router's write and its job's queueing leaves exactly
/// this. Queued again, so `/v1.0/jobs` tells the truth. Run on full passes.
pub async fn requeue_unrealized(
    core: &Core,
    intent: &crate::realize::Intent,
) -> Result<usize, DomainError> {
    let jobs = core.store.list_jobs().await?;
    let reports = crate::realize::Reports::load(core).await?;
    let mut n = 0;
    for r in intent.routers.values() {
        let job = jobs
            .iter()
            .find(|j| j.kind == "router" && j.resource_id == r.id);
        if job.is_some_and(|j| j.status != JobState::Success) {
            continue;
        }
        if reports.router(&core.realizer.hub, &r.id) == Ok(false) {
            core.store.queue_job("router", &r.id, &r.project_id).await?;
            tracing::info!(router = %r.id, "queued a job for a router not realized everywhere");
            n += 1;
        }
    }
    Ok(n)
}
