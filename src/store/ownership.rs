//! Who runs which operation: a process instance owns the operations it
//! accepted or took over, and renews their leases while it lives. Another
//! process takes over an operation only once its lease has expired, by a
//! compare-and-set on the owner and lease it saw. Also the message outbox
//! of the store: which operations changed since their message was last
//! published (`dirty`), so the owner publishes changes that other replicas
//! made.

use chrono::{DateTime, Utc};

use super::operations::read_operation;
use super::{Lease, OperationRecord, Store, StoreError, column, query_error, to_text};
use crate::names::Platform;

/// An operation whose message is behind its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The operation.
    pub op_id: i64,
    /// The revision to publish.
    pub revision: i64,
}

/// States in which an operation has an owner that matters.
const LIVE_STATES: &str = "('pending', 'approved', 'running')";

impl Store {
    /// Renews every lease `owner` holds on a live operation until `until`.
    /// Returns how many it renewed.
    ///
    /// # Errors
    /// When the store cannot be reached; the caller's leases then run out.
    pub async fn renew_leases(&self, owner: &str, until: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE operations SET lease_until = $1 WHERE owner = $2 AND state IN {LIVE_STATES}"
        )))
        .bind(to_text(until))
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query_error("renewing leases"))?;
        Ok(result.rows_affected())
    }

    /// Hands over the operations `owner` still waits for (pending, approved
    /// and not started) at a clean shutdown: their leases end now, so the
    /// next process takes them over at once.
    ///
    /// # Errors
    /// When the store cannot be reached; the leases then lapse by themselves.
    pub async fn release_leases(&self, owner: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "UPDATE operations SET lease_until = $1 WHERE owner = $2 AND state IN ('pending', 'approved')",
        )
        .bind(to_text(now))
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query_error("handing over operations"))?;
        Ok(result.rows_affected())
    }

    /// Live operations whose owner's lease has expired (or that have no
    /// owner), oldest first.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn expired_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM operations WHERE state IN {LIVE_STATES} AND (owner IS NULL OR lease_until IS NULL OR lease_until < $1) ORDER BY id",
            super::operations::COLUMNS
        )))
        .bind(to_text(now))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("looking for expired leases"))?;
        rows.iter().map(read_operation).collect()
    }

    /// Takes an operation over from the owner and lease `seen` (as read),
    /// only if nobody renewed or took it meanwhile. Returns whether it is
    /// now `lease`'s.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn take_over(
        &self,
        seen: &OperationRecord,
        lease: &Lease,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE operations SET owner = $1, lease_until = $2, revision = revision + 1, dirty = 1 \
             WHERE id = $3 AND state = $4 AND COALESCE(owner, '') = $5 AND COALESCE(lease_until, '') = $6",
        )
        .bind(&lease.owner)
        .bind(to_text(lease.until))
        .bind(seen.id)
        .bind(seen.state.as_str())
        .bind(seen.owner.clone().unwrap_or_default())
        .bind(seen.lease_until.map(to_text).unwrap_or_default())
        .execute(&self.pool)
        .await
        .map_err(query_error("taking an operation over"))?;
        Ok(result.rows_affected() == 1)
    }

    /// Live operations `owner` holds, oldest first.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn owned_operations(&self, owner: &str) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM operations WHERE owner = $1 AND state IN {LIVE_STATES} ORDER BY id",
            super::operations::COLUMNS
        )))
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("listing owned operations"))?;
        rows.iter().map(read_operation).collect()
    }

    /// Operations whose message is behind their state and that `owner` must
    /// publish: its own, and those whose owner's lease has expired.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn unpublished(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        platforms: &[Platform],
    ) -> Result<Vec<(OperationRecord, i64)>, StoreError> {
        if platforms.is_empty() {
            return Ok(Vec::new());
        }
        // Only platforms this process can post to: a change nobody here can
        // show waits for a process that can.
        let names: Vec<String> = platforms
            .iter()
            .map(|platform| format!("'{}'", platform.as_str()))
            .collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM operations WHERE dirty = 1 AND platform IN ({}) AND (owner = $1 OR owner IS NULL OR lease_until IS NULL OR lease_until < $2) ORDER BY id LIMIT 200",
            super::operations::COLUMNS,
            names.join(", ")
        )))
        .bind(owner)
        .bind(to_text(now))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("looking for unpublished changes"))?;
        rows.iter()
            .map(|row| Ok((read_operation(row)?, column(row, "revision")?)))
            .collect()
    }

    /// Records that the message shows `published.revision`; a newer change
    /// keeps the operation dirty.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn mark_published(&self, published: &Published) -> Result<(), StoreError> {
        sqlx::query("UPDATE operations SET dirty = 0 WHERE id = $1 AND revision = $2")
            .bind(published.op_id)
            .bind(published.revision)
            .execute(&self.pool)
            .await
            .map_err(query_error("recording a published message"))?;
        Ok(())
    }
}
