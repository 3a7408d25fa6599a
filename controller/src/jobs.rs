//! Jobs, as Tricircle's `/v1.0/jobs`: one persistent job per router and kind of work a change
//! asked for (`router_setup` for interfaces, gateway and floating IPs, `configure_route` for
//! extra routes; [`JobType`]). The latest request for a router wins and bursts collapse into
//! one NEW job ([`crate::store::Store::queue_job`]). A job is RUNNING while the nodes it
//! touches catch up, SUCCESS when every node reports the router ready at a revision that holds
//! the change — it then moves to the job log, as Tricircle's `AsyncJobLog` — and FAIL when an
//! agent reports the router failed or the nodes do not catch up in time; failed jobs are
//! retried with capped backoff. Jobs live in the store, so a controller killed mid-job
//! resumes it at start.
//!
//! A pass reads only the jobs still to do ([`crate::store::Store::active_jobs`]): finished
//! jobs are in the log and failed jobs out of attempts are filtered by the query, so an idle
//! controller reads one empty result per pass however many jobs it has run.

use std::time::Duration;

use crate::core::Core;
use crate::error::DomainError;
use crate::store::jobs::{Job, JobState, JobType};

/// How long a job may stay RUNNING before it fails (and is retried).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// Retries of a failed job, with backoff 2^attempt seconds capped at a minute.
pub const MAX_ATTEMPTS: i64 = 8;

fn age_secs(ts: &str) -> u64 {
    // An unreadable timestamp counts as old: the job times out rather than hangs.
    crate::store::age_secs(ts).unwrap_or(u64::MAX)
}

/// Moves `job` to `status`; a job a new request re-queued meanwhile is left to the next pass.
async fn set(
    core: &Core,
    job: &Job,
    status: JobState,
    attempts: i64,
    error: Option<&str>,
) -> Result<bool, DomainError> {
    let moved = core.store.set_job(job, status, attempts, error).await?;
    if !moved {
        tracing::debug!(job = %job.id, "job re-queued while it was judged; left for the next pass");
    }
    Ok(moved)
}

fn record(core: &Core, job: &Job, status: JobState, took: Duration) {
    core.metrics
        .record_job(job.kind.as_str(), status.as_str(), took);
}

/// How often RUNNING jobs are judged with nothing to say they could have moved (a report
/// another controller recorded whose NOTIFY was missed): the safety net of [`advance`]'s
/// event-driven judging.
pub const RUNNING_RECHECK: Duration = Duration::from_secs(10);

/// What [`advance`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Advanced {
    /// A job changed state (the next step may be due at once).
    pub moved: bool,
    /// RUNNING jobs were judged against the nodes' reports.
    pub judged: bool,
}

/// Moves every unfinished job one step. NEW jobs start and failed ones are retried on every
/// call (time alone decides, one small query). RUNNING jobs — every node's report read and
/// each router judged — only when `judge` says something they wait for may have happened (a
/// report recorded, a publication), or one of them is past its timeout: judging them every
/// poll was what an idle controller with a large cloud spent its CPU on (issue 22).
pub async fn advance(core: &Core, judge: bool) -> Result<Advanced, DomainError> {
    let mut done = Advanced::default();
    let jobs = core.store.active_jobs(MAX_ATTEMPTS).await?;
    if jobs.is_empty() {
        return Ok(done);
    }
    let judge = judge
        || jobs.iter().any(|j| {
            j.status == JobState::Running && age_secs(&j.timestamp) > JOB_TIMEOUT.as_secs()
        });
    let running = jobs.iter().any(|j| j.status == JobState::Running);
    // Every node's report, read once for all the jobs.
    let reports = if judge && running {
        done.judged = true;
        Some(crate::realize::Reports::load(core).await?)
    } else {
        None
    };
    for job in jobs {
        match job.status {
            JobState::New => {
                done.moved |= set(core, &job, JobState::Running, job.attempts + 1, None).await?;
            }
            JobState::Running => {
                let Some(reports) = &reports else { continue };
                if core.store.get_router(&job.resource_id).await.is_err() {
                    // The router is gone: nothing left to realize.
                    done.moved |= set(core, &job, JobState::Success, job.attempts, None).await?;
                    continue;
                }
                let took = Duration::from_secs(age_secs(&job.timestamp).min(86_400));
                // The intent is held only for this (synchronous) judgement: a realizer pass
                // that changes it while a reader holds it must copy it whole (milliseconds
                // on a large cloud), so it is never held across the store's awaits.
                let intent = core.realizer.current_intent().await;
                let state = crate::realize::router_state(
                    core,
                    reports,
                    intent.as_deref(),
                    &job.resource_id,
                );
                drop(intent);
                match state {
                    Ok(true) => {
                        if set(core, &job, JobState::Success, job.attempts, None).await? {
                            done.moved = true;
                            record(core, &job, JobState::Success, took);
                            tracing::info!(job = %job.id, kind = job.kind.as_str(), router = %job.resource_id, "job done");
                        }
                    }
                    Ok(false) if age_secs(&job.timestamp) > JOB_TIMEOUT.as_secs() => {
                        let why = "nodes did not apply the change in time";
                        if set(core, &job, JobState::Fail, job.attempts, Some(why)).await? {
                            done.moved = true;
                            record(core, &job, JobState::Fail, JOB_TIMEOUT);
                        }
                    }
                    Ok(false) => {}
                    Err(reason) => {
                        tracing::warn!(job = %job.id, router = %job.resource_id, %reason, "job failed");
                        if set(core, &job, JobState::Fail, job.attempts, Some(&reason)).await? {
                            done.moved = true;
                            record(core, &job, JobState::Fail, took);
                        }
                    }
                }
            }
            JobState::Fail if job.attempts < MAX_ATTEMPTS => {
                let backoff = (1u64 << job.attempts.clamp(0, 6)).min(60);
                if age_secs(&job.timestamp) >= backoff {
                    let (attempts, last) = (job.attempts + 1, job.last_error.as_deref());
                    if set(core, &job, JobState::Running, attempts, last).await? {
                        done.moved = true;
                        core.realizer.kick();
                    }
                }
            }
            _ => {}
        }
    }
    Ok(done)
}

/// Routers whose change is not realized everywhere and that have no job to say so: a
/// controller killed between a router's write and its job's queueing leaves exactly this
/// (their last job is in the log as SUCCESS, or they never had one). Queued again
/// (`router_setup`), so `/v1.0/jobs` tells the truth. Run on full passes.
///
/// The realizer's intent is held only while the routers are judged, never across the
/// store's writes: a pass that changes an intent a reader still holds copies it whole.
pub async fn requeue_unrealized(core: &Core) -> Result<usize, DomainError> {
    let pending: std::collections::HashSet<String> = core
        .store
        .pending_jobs()
        .await?
        .into_iter()
        .map(|j| j.resource_id)
        .collect();
    let reports = crate::realize::Reports::load(core).await?;
    let Some(intent) = core.realizer.current_intent().await else {
        return Ok(0);
    };
    let unrealized: Vec<(String, String)> = intent
        .routers
        .values()
        .filter(|r| !pending.contains(&r.id))
        .filter(|r| reports.router(&core.realizer.hub, &r.id) == Ok(false))
        .map(|r| (r.id.clone(), r.project_id.clone()))
        .collect();
    drop(intent);
    for (id, project) in &unrealized {
        core.store
            .queue_job(JobType::RouterSetup, id, project)
            .await?;
        tracing::info!(router = %id, "queued a job for a router not realized everywhere");
    }
    Ok(unrealized.len())
}
