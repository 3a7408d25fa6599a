//! Tricircle's asynchronous job API (`tricircle/api/controllers/job.py`), admin only: list
//! (filters `project_id`, `type`, `status`; active jobs first, then the log), show, schemas,
//! create (queue a job for a resource of a project, which re-syncs it), redo and delete.
//!
//! Where crosspod differs from Tricircle, on purpose: the admin sees every project's jobs
//! (Tricircle silently replaced the `project_id` filter by the caller's own project); a job
//! keeps its id when it moves to the log, so a job followed by id reads SUCCESS at the end
//! instead of vanishing; a next link is given only when there is a next page.

use serde_json::{Map, Value};

use super::admin_query::{self, AdminQuery};
use super::policy::{self, Target};
use crate::auth::Identity;
use crate::core::Core;
use crate::error::{DomainError, StoreError};
use crate::store::jobs::{Job, JobFilter, JobMarker, JobState, JobType};

/// Filters `/v1.0/jobs` supports (Tricircle's `JOB_LIST_SUPPORTED_FILTERS`).
pub const FILTERS: &[&str] = &["project_id", "type", "status"];

/// One page of jobs.
#[derive(Debug, Clone)]
pub struct Page {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// The query as understood (for the next link).
    pub query: AdminQuery,
    /// The marker of the next page, when there is one.
    pub next: Option<String>,
}

fn admin(who: &Identity, action: &str) -> Result<(), DomainError> {
    policy::enforce(who, action, &Target::default())
}

/// `GET /v1.0/jobs` (and `/v1.0/jobs/detail`).
pub async fn list(
    core: &Core,
    who: &Identity,
    params: &[(String, String)],
) -> Result<Page, DomainError> {
    admin(who, "admin_api:jobs:list")?;
    let query = admin_query::parse(params, FILTERS)?;
    let marker = match &query.marker {
        None => None,
        Some(m) => match core.store.get_job(m).await {
            Ok(j) => Some(JobMarker::of(&j)),
            Err(StoreError::Rule(e)) if e.is_not_found() => {
                return Err(DomainError::bad_request(format!("Invalid marker: {m}")))
            }
            Err(e) => return Err(e.into()),
        },
    };
    // An unknown type or status matches nothing (Tricircle: "for invalid filtering value,
    // an empty set will be returned").
    let f = &query.filters;
    let kind = f.get("type").map(|t| JobType::parse(t));
    let status = f.get("status").map(|s| JobState::parse(s));
    if matches!(kind, Some(None)) || matches!(status, Some(None)) {
        return Ok(Page {
            jobs: Vec::new(),
            query,
            next: None,
        });
    }
    let filter = JobFilter {
        project_id: f.get("project_id").cloned(),
        kind: kind.flatten(),
        status: status.flatten(),
    };
    let mut jobs = core
        .store
        .list_jobs(&filter, marker.as_ref(), query.limit + 1)
        .await?;
    let next = if jobs.len() > query.limit {
        jobs.truncate(query.limit);
        jobs.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(Page { jobs, query, next })
}

/// `GET /v1.0/jobs/{id}`: an active job or one from the log.
pub async fn show(core: &Core, who: &Identity, id: &str) -> Result<Job, DomainError> {
    admin(who, "admin_api:jobs:list")?;
    Ok(core.store.get_job(id).await?)
}

/// `GET /v1.0/jobs/schemas`: each job type with the keys of its `resource`.
pub fn schemas(who: &Identity) -> Result<Vec<(JobType, &'static [&'static str])>, DomainError> {
    admin(who, "admin_api:jobs:schema_list")?;
    Ok(JobType::ALL
        .into_iter()
        .map(|t| (t, t.resource_keys()))
        .collect())
}

fn text_field(body: &Map<String, Value>, field: &str) -> Result<String, DomainError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(DomainError::bad_request(format!(
            "{field} isn't provided in request body"
        ))),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(DomainError::bad_request(format!("{field} can't be empty")))
        }
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(_) => Err(DomainError::invalid_input(field, "it must be a string")),
    }
}

/// `POST /v1.0/jobs` (`{"job": {"type", "project_id", "resource": {...}}}`): validates as
/// Tricircle (a known type, exactly its resource keys, a resource of that project — 404 when
/// it does not exist), then queues the job and has the realizer re-read the resource from the
/// store, make what it misses and re-plan its nodes; the job then waits for the agents.
pub async fn create(
    core: &Core,
    who: &Identity,
    body: &Map<String, Value>,
) -> Result<Job, DomainError> {
    admin(who, "admin_api:jobs:create")?;
    if let Some(k) = body
        .keys()
        .find(|k| !["type", "project_id", "resource"].contains(&k.as_str()))
    {
        return Err(DomainError::bad_request(format!(
            "Unrecognized attribute '{k}' in the job; expected type, project_id and resource"
        )));
    }
    let kind = text_field(body, "type")?;
    let project_id = text_field(body, "project_id")?;
    let Some(kind) = JobType::parse(&kind) else {
        return Err(DomainError::bad_request(format!(
            "There is no such job type: {kind}"
        )));
    };
    let resource = match body.get("resource") {
        None | Some(Value::Null) => {
            return Err(DomainError::bad_request(
                "Failed to create job, because the resource is not specified",
            ))
        }
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(DomainError::invalid_input(
                "resource",
                "it must be an object of the job type's resource keys",
            ))
        }
    };
    let keys = kind.resource_keys();
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !resource.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(DomainError::bad_request(format!(
            "Some required fields are not specified: {}",
            missing.join(", ")
        )));
    }
    let redundant: Vec<&str> = resource
        .keys()
        .map(String::as_str)
        .filter(|k| !keys.contains(k))
        .collect();
    if !redundant.is_empty() {
        return Err(DomainError::bad_request(format!(
            "Some fields are redundant: {}",
            redundant.join(", ")
        )));
    }
    // Every type's resource is one router so far.
    let router_id = match resource.get("router_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(DomainError::invalid_input(
                "resource.router_id",
                "it must be a router's id",
            ))
        }
    };
    let router = core.store.get_router(&router_id).await?;
    if router.project_id != project_id {
        return Err(DomainError::bad_request(format!(
            "router {router_id} doesn't belong to the project {project_id}"
        )));
    }
    let held = held_ports(core, &router.id).await?;
    let job = core
        .store
        .resync_job(kind, &router.id, &router.project_id, &held)
        .await?;
    core.realizer.kick();
    tracing::info!(job = %job.id, kind = kind.as_str(), router = %router.id, by = %who.project_id, "job queued by an administrator");
    Ok(job)
}

/// The ports the realizer holds for router `id`: a re-sync re-reads them too, so one the store
/// lost behind the realizer's back (a row deleted by hand) leaves the intent as well.
async fn held_ports(core: &Core, id: &str) -> Result<Vec<String>, DomainError> {
    let intent = core.realizer.intent_read(core).await?;
    Ok(intent.ports_of(id).map(|p| p.id.clone()).collect())
}

fn from_log(id: &str) -> DomainError {
    DomainError::bad_request(format!("Job {id} is from job log"))
}

/// `PUT /v1.0/jobs/{id}`: redo a NEW or FAIL job now (its router re-read as on create); a
/// RUNNING job or one in the log is refused, as Tricircle does.
pub async fn redo(core: &Core, who: &Identity, id: &str) -> Result<Job, DomainError> {
    admin(who, "admin_api:jobs:redo")?;
    let refusal = |j: &Job| match j.status {
        JobState::Success => Some(from_log(id)),
        JobState::Running => Some(DomainError::bad_request(format!(
            "Can't redo job {id} which is running"
        ))),
        JobState::New | JobState::Fail => None,
    };
    let j = core.store.get_job(id).await?;
    if let Some(e) = refusal(&j) {
        return Err(e);
    }
    let held = held_ports(core, &j.resource_id).await?;
    match core.store.redo_job(id, &held).await? {
        Some(j) => {
            core.realizer.kick();
            tracing::info!(job = %id, router = %j.resource_id, "job redone by an administrator");
            Ok(j)
        }
        // It moved meanwhile: say where it is now.
        None => {
            let j = core.store.get_job(id).await?;
            Err(refusal(&j).unwrap_or_else(|| {
                DomainError::conflict("Conflict", format!("job {id} changed concurrently; retry"))
            }))
        }
    }
}

/// `DELETE /v1.0/jobs/{id}`: a NEW or FAIL job; a RUNNING job or one in the log is refused,
/// as Tricircle does.
pub async fn delete(core: &Core, who: &Identity, id: &str) -> Result<(), DomainError> {
    admin(who, "admin_api:jobs:delete")?;
    let refusal = |j: &Job| match j.status {
        JobState::Success => Some(from_log(id)),
        JobState::Running => Some(DomainError::bad_request(format!(
            "Failed to delete the running job {id}"
        ))),
        JobState::New | JobState::Fail => None,
    };
    let j = core.store.get_job(id).await?;
    if let Some(e) = refusal(&j) {
        return Err(e);
    }
    if core.store.delete_job(id).await? {
        tracing::info!(job = %id, router = %j.resource_id, "job deleted by an administrator");
        return Ok(());
    }
    let j = core.store.get_job(id).await?;
    Err(refusal(&j).unwrap_or_else(|| {
        DomainError::conflict("Conflict", format!("job {id} changed concurrently; retry"))
    }))
}
