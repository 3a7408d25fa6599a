//! The domain layer: one module per Neutron resource holding that resource's rules, and
//! [`policy`] holding who may do what. HTTP handlers parse a request, call one function here
//! and render its result; the realizer and the store below know nothing of either.
//!
//! Updates change only the fields a request names: each is a read, the rules, and a write
//! conditioned on the revision read ([`with_retry`] re-runs it when a concurrent update won);
//! a client's `If-Match: revision_number=N` turns that race into 412 instead.

pub mod address_scopes;
pub mod admin_query;
pub mod agents;
pub mod failover;
pub mod floatingips;
pub mod jobs;
pub mod networks;
pub mod policy;
pub mod ports;
pub mod quotas;
pub mod routers;
pub mod routings;
pub mod security_groups;
pub mod subnetpools;
pub mod subnets;
pub mod tags;

use crate::error::DomainError;

/// How many times an update re-reads and re-applies itself after losing a race.
const UPDATE_ATTEMPTS: usize = 8;

/// Runs `attempt` (read, rules, revision-conditioned write) until it does not lose a race
/// with a concurrent update; with `if_match` the first lost race is the client's 412.
pub(crate) async fn with_retry<T, F, Fut>(
    if_match: Option<i64>,
    mut attempt: F,
) -> Result<T, DomainError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DomainError>>,
{
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if e.is_revision_changed() => {
                n += 1;
                if let Some(expected) = if_match {
                    return Err(DomainError::revision_mismatch(expected, expected + 1));
                }
                if n >= UPDATE_ATTEMPTS {
                    return Err(DomainError::conflict(
                        "Conflict",
                        format!("{} after {n} attempts; retry", e.message),
                    ));
                }
                tracing::debug!(attempt = n, error = %e.message, "update lost a race; re-reading");
            }
            other => return other,
        }
    }
}

/// 412 when the client named a revision (`If-Match`) other than the object's.
pub(crate) fn check_if_match(if_match: Option<i64>, current: i64) -> Result<(), DomainError> {
    match if_match {
        Some(expected) if expected != current => {
            Err(DomainError::revision_mismatch(expected, current))
        }
        _ => Ok(()),
    }
}

/// The 409 a request gets when an allocation it needs failed: the pool's own Neutron type
/// (`BridgeSubnetsExhausted`, `NoNetworkAvailable`, ...) and what could not be allocated for
/// which object.
pub(crate) fn allocation_refused(
    object: &str,
    failed: Option<(planner::AllocationKey, DomainError)>,
) -> Result<(), DomainError> {
    match failed {
        None => Ok(()),
        Some((key, e)) => Err(DomainError::conflict(
            if e.class == crate::error::ErrorClass::Internal {
                "AllocationFailed"
            } else {
                e.kind
            },
            format!("{object}: could not allocate {key:?}: {}", e.message),
        )),
    }
}
