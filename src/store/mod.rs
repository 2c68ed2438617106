//! Deckhand's store, through sqlx: a SQLite file by default, PostgreSQL when
//! the URL says so — the same code path and the same migrations for both
//! (sqlx's Any driver; portable SQL, `$N` placeholders, times as RFC 3339
//! text). Only this module contains SQL. It keeps operations with their step
//! journal and chat messages, approvals, releases, environment locks and
//! holds, delivery dedupe, PagerDuty incidents, and the hash-chained audit log; what those mean
//! is decided elsewhere.

mod audit_log;
mod incidents;
mod locks;
mod operations;
mod releases;

use std::sync::Once;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor};

pub use audit_log::{AuditEntry, AuditHead, EntryMac, NewAuditEntry};
pub use incidents::IncidentRecord;
pub use locks::{Hold, HoldKind, LockHolder};
pub use operations::{NewOperation, OperationRecord, StepRecord};
pub use releases::{NewRelease, Release};

/// A store failure. Mutating commands fail closed on any of these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("cannot reach the store at {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations could not be applied.
    #[error("cannot apply the store's migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("store query failed while {doing}")]
    Query {
        /// What Deckhand was doing.
        doing: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value could not be read back.
    #[error("stored {what} is unreadable: \"{value}\"")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// Wraps a sqlx error with what we were doing.
fn query_error(doing: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { doing, source }
}

/// A connection pool to the store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

static INSTALL_DRIVERS: Once = Once::new();

impl Store {
    /// Opens the store (creating a SQLite file on first run) and applies
    /// migrations.
    ///
    /// # Errors
    /// When the database cannot be reached or migrated.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);
        let is_sqlite = url.starts_with("sqlite:");
        if let Some(path) = sqlite_file(url)
            && let Some(parent) = std::path::Path::new(&path).parent()
        {
            let _ = std::fs::create_dir_all(parent);
        }
        let options = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |connection, _meta| {
                Box::pin(async move {
                    if is_sqlite {
                        connection.execute("PRAGMA journal_mode = WAL").await?;
                        connection.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            });
        let pool = options
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: crate::config::redact_url(url),
                source,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(StoreError::Migrate)?;
        Ok(Store { pool })
    }

    /// Checks that the store answers, for `/health/ready` and before
    /// mutating commands.
    ///
    /// # Errors
    /// When it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_error("checking the store"))?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The next value of a named counter (operation ids, release ids).
    async fn next_id(&self, counter: &'static str) -> Result<i64, StoreError> {
        let value: i64 = sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value",
        )
        .bind(counter)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("allocating an id"))?;
        Ok(value)
    }

    /// Records a delivery key; returns false when it was seen before, so a
    /// redelivered event takes effect once.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn first_delivery(&self, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO deliveries (delivery_key, seen_at) VALUES ($1, $2) ON CONFLICT (delivery_key) DO NOTHING",
        )
        .bind(key)
        .bind(to_text(now))
        .execute(&self.pool)
        .await
        .map_err(query_error("recording a delivery"))?;
        Ok(result.rows_affected() == 1)
    }

    /// The pool, for tests that tamper with rows on purpose.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The file path of a `sqlite://` URL, if it names a file.
fn sqlite_file(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// A time as stored: RFC 3339, UTC, milliseconds, sortable as text.
pub fn to_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads a stored time.
fn from_text(what: &'static str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt {
            what,
            value: text.to_string(),
        })
}

fn optional_time(
    what: &'static str,
    text: Option<String>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.map(|text| from_text(what, &text)).transpose()
}

/// Reads a column, mapping a decode failure to a store error.
fn column<T>(row: &AnyRow, name: &'static str) -> Result<T, StoreError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get(name).map_err(query_error("reading a row"))
}
