//! Errors: the store's typed errors and the API's Neutron-shaped error responses.
//!
//! Every API error renders as `{"NeutronError": {"type", "message", "detail"}}` (the shape the
//! openstack CLI and openstacksdk parse) with the status code Neutron uses for that case.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A failure in the store (database) layer, naming what failed and on which object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one we understand.
    #[error("unsupported database URL {url:?}: use sqlite:///path or postgres://...")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
    /// Connecting or running a statement failed.
    #[error("database error while {op}: {source}")]
    Db {
        /// What the store was doing.
        op: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value could not be decoded (corrupt row or a schema mismatch).
    #[error("stored value {column} of {object} is invalid: {detail}")]
    Corrupt {
        /// Column name.
        column: &'static str,
        /// Row identity.
        object: String,
        /// What is wrong.
        detail: String,
    },
    /// A request-level failure that the API maps to a status code (not found, conflict, ...).
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl StoreError {
    /// Wrap a driver error with what the store was doing.
    pub fn db(op: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
        let op = op.into();
        move |source| StoreError::Db { op, source }
    }

    /// True for transient failures worth retrying: PostgreSQL deadlocks and serialization
    /// failures, and SQLite's "database is locked" (a deferred transaction that read before
    /// another connection wrote cannot take the write lock: SQLITE_BUSY(_SNAPSHOT), which the
    /// busy timeout does not wait out).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Db {
                source: sqlx::Error::Database(e),
                ..
            } => matches!(
                e.code().as_deref(),
                Some("40001") | Some("40P01") | Some("5") | Some("517") | Some("6")
            ),
            _ => false,
        }
    }

    /// True when the error is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db { source: sqlx::Error::Database(e), .. } if e.is_unique_violation())
    }

    /// True when the error is a foreign-key violation (something still refers to the row).
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(self, StoreError::Db { source: sqlx::Error::Database(e), .. } if e.is_foreign_key_violation())
    }
}

/// An error answered to an API client, in Neutron's shape.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Neutron's exception name (`NetworkNotFound`, `IpAddressAlreadyAllocated`, ...).
    pub kind: &'static str,
    /// Human-readable message naming the field or object.
    pub message: String,
}

impl ApiError {
    /// Any error with an explicit status and type.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }
    /// 400 with Neutron's generic bad-request type.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "HTTPBadRequest", message)
    }
    /// 400 for an attribute with an invalid value, naming it.
    pub fn invalid_input(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            format!("Invalid input for {field}. Reason: {reason}."),
        )
    }
    /// 401: no or unknown token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "NotAuthenticated", message)
    }
    /// 403: the policy forbids this for the caller's roles.
    pub fn forbidden(action: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "PolicyNotAuthorized",
            format!("({action}) is disallowed by policy"),
        )
    }
    /// 404 for a typed object (`Network`, `Subnet`, `Port`, `Pod`).
    pub fn not_found(what: &'static str, kind: &'static str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            kind,
            format!("{what} {id} could not be found."),
        )
    }
    /// 404 for an unknown URL.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "HTTPNotFound",
            format!("The resource could not be found: {path}"),
        )
    }
    /// 409 with a specific Neutron type.
    pub fn conflict(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, message)
    }
    /// 500 without leaking internals beyond a short message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "HTTPInternalServerError",
            message,
        )
    }

    /// The JSON body Neutron sends for this error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"NeutronError": {"type": self.kind, "message": self.message, "detail": ""}})
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Api(a) => a,
            StoreError::Db {
                source: sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
                ref op,
            } => {
                tracing::error!(error = %e, "database unreachable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    format!("the database is unreachable while {op}; retry later"),
                )
            }
            // Constraint violations that no handler turned into a specific error are races
            // with a concurrent change (a parent deleted, a value taken): a conflict, not a bug.
            ref e @ StoreError::Db { ref op, .. }
                if e.is_foreign_key_violation() || e.is_unique_violation() =>
            {
                tracing::warn!(error = %e, "constraint violation from a concurrent change");
                ApiError::conflict(
                    "Conflict",
                    format!("a concurrent change conflicted while {op}; retry"),
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal(format!("store failure: {other}"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}
