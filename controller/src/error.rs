//! Errors: the store's typed errors and the domain's errors.
//!
//! A [`DomainError`] carries a class (not found, conflict, forbidden, ...) and Neutron's
//! exception name; the HTTP layer alone turns the class into a status code and renders
//! `{"NeutronError": {"type", "message", "detail"}}` (the shape the openstack CLI and
//! openstacksdk parse). Nothing here knows about HTTP.

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
    /// A rule the store enforces inside its transaction (not found, in use, address taken,
    /// pool exhausted, over quota).
    #[error("{0}")]
    Rule(#[from] DomainError),
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

/// What kind of failure a [`DomainError`] is: the HTTP edge maps each class to its status
/// code (`api::error`), nothing below it knows about HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request is malformed or breaks a rule (400).
    BadRequest,
    /// No or unknown credential (401).
    Unauthenticated,
    /// The policy forbids it for the caller (403).
    Forbidden,
    /// The object does not exist or is hidden from the caller (404).
    NotFound,
    /// The method is not served on that path (405).
    MethodNotAllowed,
    /// The object's state or a concurrent change conflicts; or a pool/quota is exhausted (409).
    Conflict,
    /// `If-Match` named another revision (412).
    PreconditionFailed,
    /// The body is larger than the limit (413).
    TooLarge,
    /// Semantically invalid input where Tricircle answers 422.
    Unprocessable,
    /// A per-caller limit (long-polls) is reached (429).
    TooManyRequests,
    /// The client did not send the request (its body) in time (408).
    RequestTimeout,
    /// A dependency (the database) is unreachable (503).
    Unavailable,
    /// A bug or a corrupt store (500).
    Internal,
}

/// Neutron type of a lost compare-and-set race ([`DomainError::revision_changed`]).
pub const REVISION_CHANGED: &str = "RevisionChanged";

/// A domain error: a class (the edge turns it into a status code), Neutron's exception name
/// (`NetworkNotFound`, `OverQuota`, ...) and a message naming the field or object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class:?} {kind}: {message}")]
pub struct DomainError {
    /// What kind of failure.
    pub class: ErrorClass,
    /// Neutron's exception name.
    pub kind: &'static str,
    /// Human-readable message naming the field or object.
    pub message: String,
}

impl DomainError {
    /// Any error with an explicit class and Neutron type.
    pub fn new(class: ErrorClass, kind: &'static str, message: impl Into<String>) -> Self {
        DomainError {
            class,
            kind,
            message: message.into(),
        }
    }
    /// 400 with Neutron's generic bad-request type.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::BadRequest, "HTTPBadRequest", message)
    }
    /// 400 for an attribute with an invalid value, naming it.
    pub fn invalid_input(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorClass::BadRequest,
            "InvalidInput",
            format!("Invalid input for {field}. Reason: {reason}."),
        )
    }
    /// 401: no or unknown token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Unauthenticated, "NotAuthenticated", message)
    }
    /// 403: the policy forbids this for the caller's roles.
    pub fn forbidden(action: &str) -> Self {
        Self::new(
            ErrorClass::Forbidden,
            "PolicyNotAuthorized",
            format!("({action}) is disallowed by policy"),
        )
    }
    /// 404 for a typed object (`Network`, `Subnet`, `Port`, `Pod`).
    pub fn not_found(what: &'static str, kind: &'static str, id: &str) -> Self {
        Self::new(
            ErrorClass::NotFound,
            kind,
            format!("{what} {id} could not be found."),
        )
    }
    /// 404 for an unknown URL.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            ErrorClass::NotFound,
            "HTTPNotFound",
            format!("The resource could not be found: {}", path.escape_debug()),
        )
    }
    /// 409 with a specific Neutron type.
    pub fn conflict(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Conflict, kind, message)
    }
    /// 500 without leaking internals beyond a short message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Internal, "HTTPInternalServerError", message)
    }
    /// The object changed since the caller read it (a concurrent update won).
    pub fn revision_changed(what: &str, id: &str, current: i64) -> Self {
        Self::new(
            ErrorClass::PreconditionFailed,
            REVISION_CHANGED,
            format!("{what} {id} changed concurrently (now at revision {current})"),
        )
    }
    /// `If-Match: revision_number=N` named another revision than the object's.
    pub fn revision_mismatch(expected: i64, current: i64) -> Self {
        Self::new(
            ErrorClass::PreconditionFailed,
            "RevisionNumberConstraintFailed",
            format!("Constrained to {expected}, but current revision is {current}"),
        )
    }
    /// Whether this is a lost compare-and-set race (worth re-reading and retrying).
    pub fn is_revision_changed(&self) -> bool {
        self.kind == REVISION_CHANGED
    }
    /// Whether this is a "not found".
    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// The JSON body Neutron sends for this error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"NeutronError": {"type": self.kind, "message": self.message, "detail": ""}})
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rule(a) => a,
            StoreError::Db {
                source: sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
                ref op,
            } => {
                tracing::error!(error = %e, "database unreachable");
                DomainError::new(
                    ErrorClass::Unavailable,
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
                DomainError::conflict(
                    "Conflict",
                    format!("a concurrent change conflicted while {op}; retry"),
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                DomainError::internal(format!("store failure: {other}"))
            }
        }
    }
}
