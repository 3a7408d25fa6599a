//! The store: every resource and allocation, in SQLite (default, a WAL file) or PostgreSQL
//! (several controllers on one database). Both go through sqlx's `Any` driver with one SQL
//! dialect, so the API code never knows which backend it talks to.
//!
//! Concurrency: allocations insert with `ON CONFLICT DO NOTHING` under the tables' unique
//! keys and retry with another candidate when they lose, so two controllers never hand out
//! the same VLAN, IP or MAC. On SQLite, writers in one process are serialised by a mutex
//! (SQLite has one writer anyway) and other processes wait on the busy timeout.

mod bridge;
pub mod changes;
mod dhcp;
pub mod failover;
pub mod jobs;
pub mod l3;
mod migrations;
pub mod model;
mod networks;
mod pods;
pub(crate) mod ports;
pub mod quotas;
pub mod security_groups;
pub mod subnetpools;
mod subnets;
pub mod tags;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row};

pub use model::*;
pub use quotas::{QuotaDefaults, QuotaResource};
pub use security_groups::{NewSecurityGroup, SecurityGroup, SecurityGroupRule};
pub use tags::{TagChange, Tagged};

use crate::error::StoreError;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// The controller's persistent state.
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    write_lock: tokio::sync::Mutex<()>,
    /// Bumped after each local commit that logged a change (wakes the local realizer).
    committed: tokio::sync::watch::Sender<u64>,
    /// Limits of projects without their own ([`Store::with_quota_defaults`]).
    quota_defaults: QuotaDefaults,
    /// The VNIs VxLAN networks get ([`Store::with_vni_ranges`]).
    vni_ranges: crate::vlan_pool::VniRanges,
}

/// A write transaction (holding the in-process writer lock on SQLite). Objects it
/// [`touch`](WriteTx::touch)es are appended to the change log at commit.
pub(crate) struct WriteTx<'a> {
    pub(crate) tx: sqlx::Transaction<'static, Any>,
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
    touched: Vec<(changes::ChangeKind, String)>,
    backend: Backend,
    logged: bool,
    committed: &'a tokio::sync::watch::Sender<u64>,
}

impl WriteTx<'_> {
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        self.write_changes().await?;
        let logged = self.logged;
        let committed = self.committed;
        self.tx.commit().await.map_err(StoreError::db("commit"))?;
        if logged {
            committed.send_modify(|n| *n += 1);
        }
        Ok(())
    }
}

impl Store {
    /// Connect to `url` (`sqlite:///path` or `postgres://...`) and run the migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err(StoreError::BadUrl { url: url.into() });
            }
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() {
                    let _ = std::fs::create_dir_all(parent);
                }
            }
            let full = if url.contains("mode=") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, full)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::BadUrl { url: url.into() });
        };
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(StoreError::db("parsing the database URL"))?;
        let pool = match backend {
            Backend::Sqlite => {
                // An in-memory database lives and dies with its one connection: keep it
                // forever.
                let memory = url.contains(":memory:");
                AnyPoolOptions::new()
                    .max_connections(if memory { 1 } else { 4 })
                    .min_connections(u32::from(memory))
                    .idle_timeout((!memory).then_some(Duration::from_secs(600)))
                    .max_lifetime((!memory).then_some(Duration::from_secs(1800)))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
            }
        }
        .map_err(StoreError::db(format!(
            "connecting to the {backend:?} database"
        )))?;
        let store = Store {
            pool,
            backend,
            write_lock: tokio::sync::Mutex::new(()),
            committed: tokio::sync::watch::Sender::new(0),
            quota_defaults: QuotaDefaults::default(),
            vni_ranges: crate::vlan_pool::VniRanges::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool (for later modules that add their own tables).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Close every connection (tests drop their PostgreSQL database afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn begin_write(&self) -> Result<WriteTx<'_>, StoreError> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        };
        let tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::db("beginning a transaction"))?;
        Ok(WriteTx {
            tx,
            _guard: guard,
            touched: Vec::new(),
            backend: self.backend,
            logged: false,
            committed: &self.committed,
        })
    }

    /// Apply pending migrations (idempotent; concurrent starts on PostgreSQL serialise on an
    /// advisory lock).
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut w = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(727274)")
                .execute(&mut *w.tx)
                .await
                .map_err(StoreError::db("locking for migrations"))?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&mut *w.tx)
        .await
        .map_err(StoreError::db("creating schema_migrations"))?;
        let rows = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *w.tx)
            .await
            .map_err(StoreError::db("reading schema_migrations"))?;
        let done: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get::<i64, _>(0).unwrap_or(-1))
            .collect();
        for (version, name, sql) in migrations::MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            let serial = match self.backend {
                Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
                Backend::Postgres => "BIGSERIAL PRIMARY KEY",
            };
            let sql = sql.replace("{SERIAL}", serial);
            for stmt in migrations::statements(&sql) {
                sqlx::query(stmt)
                    .execute(&mut *w.tx)
                    .await
                    .map_err(StoreError::db(format!("migration {version} ({name})")))?;
            }
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(name.to_string())
            .bind(now())
            .execute(&mut *w.tx)
            .await
            .map_err(StoreError::db("recording a migration"))?;
            tracing::info!(version, name, "migration applied");
        }
        w.commit().await
    }
}

/// Run `$op` again (up to 5 times) when PostgreSQL reports a deadlock or serialization failure.
macro_rules! retrying {
    ($op:expr) => {{
        let mut attempt = 0u32;
        loop {
            match $op.await {
                Err(e) if e.is_retryable() && attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "retrying a transaction");
                    tokio::time::sleep(std::time::Duration::from_millis(5 * attempt as u64)).await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use retrying;

/// Current UTC time as Neutron prints it (`2026-01-02T03:04:05Z`).
pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Format seconds since the epoch as RFC 3339 UTC.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp as [`format_utc`] writes it.
pub fn parse_utc(ts: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> { ts.get(r)?.parse().ok() };
    if ts.len() != 20 || !ts.ends_with('Z') {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days-from-civil (Howard Hinnant's algorithm), the inverse of format_utc.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Seconds since `ts` (an RFC 3339 UTC timestamp); `None` when unreadable.
pub fn age_secs(ts: &str) -> Option<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(now.saturating_sub(parse_utc(ts)?))
}

/// The error of a revision-conditioned update that matched no row: the object is gone
/// (`not_found`), or another request changed it since it was read (the caller re-reads and
/// re-applies its change, or answers 412 when the client named the revision).
pub(crate) async fn missed_update(
    w: &mut WriteTx<'_>,
    table: &'static str,
    id: &str,
    not_found: crate::error::DomainError,
) -> StoreError {
    let sql = format!("SELECT revision_number FROM {table} WHERE id = $1");
    match sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *w.tx)
        .await
    {
        Ok(Some(row)) => crate::error::DomainError::revision_changed(
            table,
            id,
            row.try_get::<i64, _>(0).unwrap_or(-1),
        )
        .into(),
        Ok(None) => not_found.into(),
        Err(e) => StoreError::db(format!("reading the revision of {table} {id}"))(e),
    }
}

/// A random 64-bit value (from a v4 UUID) for candidate spreading.
pub(crate) fn entropy() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

pub(crate) fn col_s(row: &AnyRow, col: &'static str) -> Result<String, StoreError> {
    row.try_get::<String, _>(col)
        .map_err(|e| StoreError::Corrupt {
            column: col,
            object: "row".into(),
            detail: e.to_string(),
        })
}

pub(crate) fn col_os(row: &AnyRow, col: &'static str) -> Result<Option<String>, StoreError> {
    row.try_get::<Option<String>, _>(col)
        .map_err(|e| StoreError::Corrupt {
            column: col,
            object: "row".into(),
            detail: e.to_string(),
        })
}

pub(crate) fn col_i(row: &AnyRow, col: &'static str) -> Result<i64, StoreError> {
    row.try_get::<i64, _>(col).map_err(|e| StoreError::Corrupt {
        column: col,
        object: "row".into(),
        detail: e.to_string(),
    })
}

pub(crate) fn col_oi(row: &AnyRow, col: &'static str) -> Result<Option<i64>, StoreError> {
    row.try_get::<Option<i64>, _>(col)
        .map_err(|e| StoreError::Corrupt {
            column: col,
            object: "row".into(),
            detail: e.to_string(),
        })
}

pub(crate) fn col_b(row: &AnyRow, col: &'static str) -> Result<bool, StoreError> {
    Ok(col_i(row, col)? != 0)
}

pub(crate) fn col_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &'static str,
) -> Result<T, StoreError> {
    let s = col_s(row, col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt {
        column: col,
        object: "row".into(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::format_utc(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for t in [
            0,
            59,
            86_399,
            951_782_400,
            1_709_251_199,
            1_795_000_000,
            4_102_444_800,
        ] {
            assert_eq!(super::parse_utc(&super::format_utc(t)), Some(t), "{t}");
        }
        assert_eq!(super::parse_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(super::parse_utc("yesterday"), None);
        assert!(super::age_secs(&super::now()).is_some_and(|a| a <= 1));
    }
}
