//! Jobs as Tricircle keeps them: the active ones in `jobs` (Tricircle's `async_jobs`: NEW,
//! RUNNING, FAIL) and the finished ones in `job_logs` (Tricircle's `async_job_logs`: SUCCESS).
//!
//! One active row per (type, resource): a request for a resource whose job is pending makes
//! that row NEW again (the latest request wins, bursts collapse into one NEW job). A job that
//! succeeds leaves `jobs` for `job_logs` in the same transaction, keeping its id, so the
//! background pass reads only the jobs still to do, however long the log grows. Every state
//! change is a compare-and-set on the row's `version`: a pass that judged a job before a new
//! request re-queued it cannot mark the new request done.

use sqlx::any::AnyRow;

use super::changes::ChangeKind;
use super::{col_i, col_os, col_s, now, Store};
use crate::error::{DomainError, StoreError};

/// Migration 9: the job log, a version per job for compare-and-set, Tricircle's job types.
/// Jobs finished before it move to the log; crosspod's old per-router type becomes
/// `router_setup`.
pub const JOBS_MIGRATION: &str = r#"
ALTER TABLE jobs ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
CREATE TABLE job_logs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX job_logs_timestamp ON job_logs (timestamp, id);
CREATE INDEX jobs_status ON jobs (status);
INSERT INTO job_logs (id, type, resource_id, project_id, timestamp, attempts)
    SELECT id, CASE WHEN type = 'router' THEN 'router_setup' ELSE type END,
           resource_id, project_id, timestamp, attempts
    FROM jobs WHERE status = 'SUCCESS';
DELETE FROM jobs WHERE status = 'SUCCESS';
UPDATE jobs SET type = 'router_setup' WHERE type = 'router'
"#;

/// The kinds of work crosspod's jobs do, by Tricircle's names
/// (`tricircle/common/constants.py`, `job_resource_map`). Both wait until every node holding
/// an instance of the router has applied the change and reports the instance ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobType {
    /// A router's instances in every pod: interfaces added or removed, gateway set or
    /// cleared, floating IPs (dis)associated (Tricircle's `setup_bottom_router`).
    RouterSetup,
    /// A router's extra routes changed (Tricircle's `configure_route`).
    ConfigureRoute,
}

impl JobType {
    /// Every type, as `/v1.0/jobs/schemas` lists them.
    pub const ALL: [JobType; 2] = [JobType::RouterSetup, JobType::ConfigureRoute];

    /// Tricircle's name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::RouterSetup => "router_setup",
            JobType::ConfigureRoute => "configure_route",
        }
    }

    /// The type named `s`.
    pub fn parse(s: &str) -> Option<JobType> {
        JobType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The keys of the job's `resource` (Tricircle joins several with `#` into its
    /// `resource_id`; crosspod's jobs have one).
    pub fn resource_keys(self) -> &'static [&'static str] {
        match self {
            JobType::RouterSetup | JobType::ConfigureRoute => &["router_id"],
        }
    }
}

/// A job's state, as Tricircle names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobState {
    /// Queued, not started.
    New,
    /// The nodes it touches are catching up.
    Running,
    /// Every node reports the change applied (the job is in the log).
    Success,
    /// An agent failed it or it timed out (retried with backoff).
    Fail,
}

impl JobState {
    /// Every state, in life-cycle order.
    pub const ALL: [JobState; 4] = [
        JobState::New,
        JobState::Running,
        JobState::Success,
        JobState::Fail,
    ];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::New => "NEW",
            JobState::Running => "RUNNING",
            JobState::Success => "SUCCESS",
            JobState::Fail => "FAIL",
        }
    }

    /// From its name, in any case (`?status=success` as Tricircle accepts it).
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|j| j.as_str().eq_ignore_ascii_case(s))
    }
}

/// A job, active or from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// UUID (kept when the job moves to the log).
    pub id: String,
    /// What it does.
    pub kind: JobType,
    /// The resource it realizes (a router).
    pub resource_id: String,
    /// Owner project.
    pub project_id: String,
    /// Where it is; `Success` only for jobs in the log.
    pub status: JobState,
    /// Last state change.
    pub timestamp: String,
    /// Attempts made.
    pub attempts: i64,
    /// Last failure.
    pub last_error: Option<String>,
    /// Bumped on every change of the row (compare-and-set); 0 for logged jobs.
    pub version: i64,
}

/// What `/v1.0/jobs` filters on (each `None` matches all).
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Owner project.
    pub project_id: Option<String>,
    /// Type.
    pub kind: Option<JobType>,
    /// State.
    pub status: Option<JobState>,
}

/// Where a page of jobs starts: after this job in the order of `/v1.0/jobs` (active jobs
/// first, then the log; each newest first, ties by id descending).
#[derive(Debug, Clone)]
pub struct JobMarker {
    /// Whether the marker job is in the log.
    pub logged: bool,
    /// Its timestamp.
    pub timestamp: String,
    /// Its id.
    pub id: String,
}

impl JobMarker {
    /// The position of `job`.
    pub fn of(job: &Job) -> JobMarker {
        JobMarker {
            logged: job.status == JobState::Success,
            timestamp: job.timestamp.clone(),
            id: job.id.clone(),
        }
    }
}

fn corrupt(column: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt {
        column,
        object: "jobs".into(),
        detail,
    }
}

fn job_type(r: &AnyRow) -> Result<JobType, StoreError> {
    let s = col_s(r, "type")?;
    JobType::parse(&s).ok_or_else(|| corrupt("type", format!("{s:?} is not a job type")))
}

fn job_from_row(r: &AnyRow) -> Result<Job, StoreError> {
    let status = col_s(r, "status")?;
    Ok(Job {
        id: col_s(r, "id")?,
        kind: job_type(r)?,
        resource_id: col_s(r, "resource_id")?,
        project_id: col_s(r, "project_id")?,
        status: JobState::parse(&status)
            .ok_or_else(|| corrupt("status", format!("{status:?} is not a job state")))?,
        timestamp: col_s(r, "timestamp")?,
        attempts: col_i(r, "attempts")?,
        last_error: col_os(r, "last_error")?,
        version: col_i(r, "version")?,
    })
}

fn logged_from_row(r: &AnyRow) -> Result<Job, StoreError> {
    Ok(Job {
        id: col_s(r, "id")?,
        kind: job_type(r)?,
        resource_id: col_s(r, "resource_id")?,
        project_id: col_s(r, "project_id")?,
        status: JobState::Success,
        timestamp: col_s(r, "timestamp")?,
        attempts: col_i(r, "attempts")?,
        last_error: None,
        version: 0,
    })
}

/// The upsert that queues a job: a new row, or the resource's pending row made NEW again.
const QUEUE: &str = "INSERT INTO jobs (id, type, resource_id, project_id, status, timestamp, attempts, version) VALUES ($1, $2, $3, $4, 'NEW', $5, 0, 0) ON CONFLICT (type, resource_id) DO UPDATE SET status = 'NEW', project_id = $4, timestamp = $5, attempts = 0, last_error = NULL, version = jobs.version + 1";

/// The WHERE clause and binds of a filtered, positioned page of one table.
fn page_sql(
    table: &str,
    columns: &str,
    f: &JobFilter,
    after: Option<(&str, &str)>,
    limit: usize,
) -> (String, Vec<String>) {
    let mut conds: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    let bind = |v: &str, binds: &mut Vec<String>| {
        binds.push(v.to_string());
        format!("${}", binds.len())
    };
    if let Some(p) = &f.project_id {
        let n = bind(p, &mut binds);
        conds.push(format!("project_id = {n}"));
    }
    if let Some(k) = f.kind {
        let n = bind(k.as_str(), &mut binds);
        conds.push(format!("type = {n}"));
    }
    if let (Some(s), "jobs") = (f.status, table) {
        let n = bind(s.as_str(), &mut binds);
        conds.push(format!("status = {n}"));
    }
    if let Some((ts, id)) = after {
        let t = bind(ts, &mut binds);
        let i = bind(id, &mut binds);
        conds.push(format!(
            "(timestamp < {t} OR (timestamp = {t} AND id < {i}))"
        ));
    }
    let wh = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (
        format!("SELECT {columns} FROM {table}{wh} ORDER BY timestamp DESC, id DESC LIMIT {limit}"),
        binds,
    )
}

impl Store {
    /// Queue (or re-queue) the job of a resource: the latest request wins, bursts collapse
    /// into one NEW job.
    pub async fn queue_job(
        &self,
        kind: JobType,
        resource_id: &str,
        project_id: &str,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        sqlx::query(QUEUE)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(kind.as_str())
            .bind(resource_id.to_string())
            .bind(project_id.to_string())
            .bind(now())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "queueing the {} job of {resource_id}",
                kind.as_str()
            )))?;
        w.commit().await
    }

    /// Queue the job of router `router_id` as an administrator asks for it (`POST
    /// /v1.0/jobs`): the same upsert as [`Store::queue_job`], and in the same transaction the
    /// router, its ports and `also` (the ports the caller's intent holds for it, which the
    /// store may have lost) go into the change log, so the realizer re-reads them from the
    /// store, makes any allocation they miss and re-plans the nodes they touch. Returns the job.
    pub async fn resync_job(
        &self,
        kind: JobType,
        router_id: &str,
        project_id: &str,
        also: &[String],
    ) -> Result<Job, StoreError> {
        let mut w = self.begin_write().await?;
        sqlx::query(QUEUE)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(kind.as_str())
            .bind(router_id.to_string())
            .bind(project_id.to_string())
            .bind(now())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!(
                "queueing the {} job of {router_id}",
                kind.as_str()
            )))?;
        touch_router(&mut w, router_id, also).await?;
        let row = sqlx::query("SELECT * FROM jobs WHERE type = $1 AND resource_id = $2")
            .bind(kind.as_str())
            .bind(router_id.to_string())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("reading the job of {router_id}")))?;
        let job = job_from_row(&row)?;
        w.commit().await?;
        Ok(job)
    }

    /// Redo a NEW or FAIL job now (`PUT /v1.0/jobs/{id}`): NEW again with its attempts reset,
    /// its router re-read as [`Store::resync_job`] does (with `also`). `None` when the job is
    /// not (or no longer) NEW or FAIL.
    pub async fn redo_job(&self, id: &str, also: &[String]) -> Result<Option<Job>, StoreError> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query("UPDATE jobs SET status = 'NEW', attempts = 0, last_error = NULL, timestamp = $1, version = version + 1 WHERE id = $2 AND status IN ('NEW', 'FAIL')")
            .bind(now())
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("redoing job {id}")))?;
        if n.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("reading job {id}")))?;
        let job = job_from_row(&row)?;
        touch_router(&mut w, &job.resource_id, also).await?;
        w.commit().await?;
        Ok(Some(job))
    }

    /// The jobs the background pass moves: NEW, RUNNING, and FAIL with attempts left. The
    /// log is never read here.
    pub async fn active_jobs(&self, max_attempts: i64) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE status IN ('NEW', 'RUNNING') OR (status = 'FAIL' AND attempts < $1) ORDER BY timestamp, id")
            .bind(max_attempts)
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db("listing active jobs"))?;
        rows.iter().map(job_from_row).collect()
    }

    /// Every job not in the log (failed ones out of attempts too).
    pub async fn pending_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query("SELECT * FROM jobs ORDER BY timestamp, id")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db("listing pending jobs"))?;
        rows.iter().map(job_from_row).collect()
    }

    /// Move `job` (as read) to `status`, unless its row changed since it was read (a new
    /// request re-queued it): whether it moved. SUCCESS moves the job to the log, keeping
    /// its id.
    pub async fn set_job(
        &self,
        job: &Job,
        status: JobState,
        attempts: i64,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        let ts = now();
        if status == JobState::Success {
            let n = sqlx::query("DELETE FROM jobs WHERE id = $1 AND version = $2")
                .bind(job.id.clone())
                .bind(job.version)
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("finishing job {}", job.id)))?;
            if n.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("INSERT INTO job_logs (id, type, resource_id, project_id, timestamp, attempts) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(job.id.clone())
                .bind(job.kind.as_str())
                .bind(job.resource_id.clone())
                .bind(job.project_id.clone())
                .bind(ts)
                .bind(attempts)
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("logging job {}", job.id)))?;
        } else {
            let n = sqlx::query("UPDATE jobs SET status = $1, attempts = $2, last_error = $3, timestamp = $4, version = version + 1 WHERE id = $5 AND version = $6")
                .bind(status.as_str())
                .bind(attempts)
                .bind(error.map(str::to_string))
                .bind(ts)
                .bind(job.id.clone())
                .bind(job.version)
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db(format!("updating job {}", job.id)))?;
            if n.rows_affected() == 0 {
                return Ok(false);
            }
        }
        w.commit().await?;
        Ok(true)
    }

    /// One job, active or from the log (404 `ResourceNotFound`).
    pub async fn get_job(&self, id: &str) -> Result<Job, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading job {id}")))?;
        if let Some(r) = row {
            return job_from_row(&r);
        }
        let row = sqlx::query("SELECT * FROM job_logs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::db(format!("reading job {id} from the log")))?;
        match row {
            Some(r) => logged_from_row(&r),
            None => Err(DomainError::not_found("Job", "ResourceNotFound", id).into()),
        }
    }

    /// A page of jobs matching `f`, in `/v1.0/jobs` order (active jobs first, then the log;
    /// newest first), after `marker`.
    pub async fn list_jobs(
        &self,
        f: &JobFilter,
        marker: Option<&JobMarker>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        if !marker.is_some_and(|m| m.logged) {
            let after = marker.map(|m| (m.timestamp.as_str(), m.id.as_str()));
            let (sql, binds) = page_sql("jobs", "*", f, after, limit);
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = q.bind(b);
            }
            let rows = q
                .fetch_all(self.pool())
                .await
                .map_err(StoreError::db("listing jobs"))?;
            for r in &rows {
                out.push(job_from_row(r)?);
            }
        }
        let log_matches = f.status.is_none_or(|s| s == JobState::Success);
        if out.len() < limit && log_matches {
            let after = marker
                .filter(|m| m.logged)
                .map(|m| (m.timestamp.as_str(), m.id.as_str()));
            let (sql, binds) = page_sql("job_logs", "*", f, after, limit - out.len());
            let mut q = sqlx::query(&sql);
            for b in binds {
                q = q.bind(b);
            }
            let rows = q
                .fetch_all(self.pool())
                .await
                .map_err(StoreError::db("listing the job log"))?;
            for r in &rows {
                out.push(logged_from_row(r)?);
            }
        }
        Ok(out)
    }

    /// Delete a job that is not RUNNING and not in the log; whether one was deleted.
    pub async fn delete_job(&self, id: &str) -> Result<bool, StoreError> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM jobs WHERE id = $1 AND status <> 'RUNNING'")
            .bind(id.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db(format!("deleting job {id}")))?;
        w.commit().await?;
        Ok(n.rows_affected() > 0)
    }

    /// How many jobs are in each state (SUCCESS: the log), for `/metrics`.
    pub async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::db("counting jobs"))?;
        let mut out: Vec<(JobState, i64)> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        for r in &rows {
            if let Some(s) = JobState::parse(&col_s(r, "status")?) {
                if let Some(e) = out.iter_mut().find(|(x, _)| *x == s) {
                    e.1 += col_i(r, "n")?;
                }
            }
        }
        let logged = sqlx::query("SELECT COUNT(*) AS n FROM job_logs")
            .fetch_one(self.pool())
            .await
            .map_err(StoreError::db("counting the job log"))?;
        if let Some(e) = out.iter_mut().find(|(x, _)| *x == JobState::Success) {
            e.1 += col_i(&logged, "n")?;
        }
        Ok(out)
    }
}

/// Put router `id`, its ports and the ports `also` into the change log of the transaction `w`.
async fn touch_router(
    w: &mut super::WriteTx<'_>,
    id: &str,
    also: &[String],
) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT id FROM ports WHERE device_id = $1")
        .bind(id.to_string())
        .fetch_all(&mut *w.tx)
        .await
        .map_err(StoreError::db(format!("reading the ports of router {id}")))?;
    w.touch(ChangeKind::Router, id);
    for r in &rows {
        w.touch(ChangeKind::Port, &col_s(r, "id")?);
    }
    for p in also {
        w.touch(ChangeKind::Port, p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in JobType::ALL {
            assert_eq!(JobType::parse(t.as_str()), Some(t));
        }
        assert_eq!(JobType::parse("router"), None);
        assert_eq!(JobState::parse("success"), Some(JobState::Success));
        assert_eq!(JobState::parse("Fail"), Some(JobState::Fail));
        assert_eq!(JobState::parse("done"), None);
    }

    #[test]
    fn a_page_binds_every_filter_in_order() {
        let f = JobFilter {
            project_id: Some("p".into()),
            kind: Some(JobType::RouterSetup),
            status: Some(JobState::Fail),
        };
        let (sql, binds) = page_sql("jobs", "*", &f, Some(("t", "i")), 5);
        assert_eq!(
            sql,
            "SELECT * FROM jobs WHERE project_id = $1 AND type = $2 AND status = $3 AND (timestamp < $4 OR (timestamp = $4 AND id < $5)) ORDER BY timestamp DESC, id DESC LIMIT 5"
        );
        assert_eq!(binds, ["p", "router_setup", "FAIL", "t", "i"]);
        // The log has no status column: its rows are all SUCCESS.
        let (sql, binds) = page_sql("job_logs", "*", &f, None, 2);
        assert!(!sql.contains("status"), "{sql}");
        assert_eq!(binds, ["p", "router_setup"]);
    }
}
