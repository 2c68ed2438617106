//! Deckhand's store, through sqlx: a SQLite file by default, PostgreSQL when
//! the URL says so — the same code path and the same migrations for both
//! (sqlx's Any driver; portable SQL, `$N` placeholders, times as RFC 3339
//! text). Only this module contains SQL. It keeps operations with their step
//! journal and chat messages, approvals, releases, environment locks and
//! holds, delivery dedupe, PagerDuty incidents, and the hash-chained audit log; what those mean
//! is decided elsewhere.

mod audit_log;
mod deliveries;
mod incidents;
mod intents;
mod locks;
mod notify;
mod operations;
mod ownership;
mod releases;
mod transaction;

use std::sync::Once;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};

pub use audit_log::{AuditEntry, AuditHead, ChainMac, EntryMac, NewAuditEntry};
pub use deliveries::DeliveryClaim;
pub use incidents::IncidentRecord;
pub use intents::StepIntent;
pub use locks::{Hold, HoldKind, LockHolder, LockOutcome};
pub use notify::ChangeFeed;
pub use operations::{NewApproval, NewOperation, OperationRecord, StepRecord};
pub use ownership::Published;
pub use releases::{NewRelease, Release};
pub use transaction::Tx;

/// Who owns an operation and until when: a process instance's lease,
/// renewed while it lives. Only an expired lease is taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The owning process instance.
    pub owner: String,
    /// When the lease lapses unless renewed.
    pub until: DateTime<Utc>,
}

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
    /// The audit chain is keyed and this process has no key: appending
    /// unkeyed would break the chain, so nothing is written.
    #[error(
        "the audit trail is keyed but this process has no audit key (DECKHAND_AUDIT_KEY), so it cannot write to it"
    )]
    AuditKeyMissing,
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
    /// The URL, for the PostgreSQL change feed (LISTEN needs its own
    /// connection). Never printed: it may hold a password.
    url: crate::secret::Secret,
    is_postgres: bool,
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
        Ok(Store {
            pool,
            url: crate::secret::Secret::new(url),
            is_postgres: url.starts_with("postgres"),
        })
    }

    /// Whether the store is PostgreSQL (several replicas may share it).
    pub fn is_postgres(&self) -> bool {
        self.is_postgres
    }

    /// One connection from the pool, for a single write outside a `Tx`.
    async fn connection(&self) -> Result<PoolConnection<Any>, StoreError> {
        self.pool
            .acquire()
            .await
            .map_err(query_error("taking a store connection"))
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

    /// The pool, for tests that tamper with rows on purpose.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The next value of a named counter (operation ids, release ids). Inside a
/// transaction the counter's row stays locked until it commits.
async fn next_id(connection: &mut AnyConnection, counter: &'static str) -> Result<i64, StoreError> {
    sqlx::query_scalar("UPDATE counters SET value = value + 1 WHERE name = $1 RETURNING value")
        .bind(counter)
        .fetch_one(&mut *connection)
        .await
        .map_err(query_error("allocating an id"))
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
