//! Delivery dedupe that neither loses nor repeats: a platform delivery (a
//! Slack event id, a Discord interaction id, a PagerDuty webhook id) is
//! claimed while it is handled, marked done in the same transaction as its
//! effect (`Tx::complete_delivery`), and released when handling fails, so
//! the platform's retry is handled instead of being answered "duplicate".
//! A claim whose handler died lapses after its time.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use super::{Store, StoreError, query_error, to_text};

/// What claiming a delivery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryClaim {
    /// Nobody handled it yet; the caller handles it now.
    Fresh,
    /// It was handled already.
    Done,
    /// Another handler is on it right now.
    InProgress,
}

/// Marks a claimed (or unseen) delivery as handled.
pub(super) async fn complete(
    connection: &mut AnyConnection,
    key: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO deliveries (delivery_key, seen_at, state) VALUES ($1, $2, 'done') \
         ON CONFLICT (delivery_key) DO UPDATE SET state = 'done', claimed_until = NULL",
    )
    .bind(key)
    .bind(to_text(now))
    .execute(&mut *connection)
    .await
    .map_err(query_error("recording a delivery"))?;
    Ok(())
}

impl Store {
    /// Claims a delivery for `hold` (how long a handler may take before its
    /// claim lapses).
    ///
    /// # Errors
    /// When the store cannot be reached: the caller must answer so that the
    /// platform retries, never handle the delivery unrecorded.
    pub async fn claim_delivery(
        &self,
        key: &str,
        now: DateTime<Utc>,
        hold: chrono::Duration,
    ) -> Result<DeliveryClaim, StoreError> {
        let mut connection = self.connection().await?;
        let until = to_text(now + hold);
        let claimed = sqlx::query(
            "INSERT INTO deliveries (delivery_key, seen_at, state, claimed_until) VALUES ($1, $2, 'claimed', $3) \
             ON CONFLICT (delivery_key) DO UPDATE SET claimed_until = $3, seen_at = $2 \
             WHERE deliveries.state = 'claimed' AND deliveries.claimed_until < $2",
        )
        .bind(key)
        .bind(to_text(now))
        .bind(&until)
        .execute(&mut *connection)
        .await
        .map_err(query_error("claiming a delivery"))?;
        if claimed.rows_affected() == 1 {
            return Ok(DeliveryClaim::Fresh);
        }
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM deliveries WHERE delivery_key = $1")
                .bind(key)
                .fetch_optional(&mut *connection)
                .await
                .map_err(query_error("reading a delivery"))?;
        Ok(match state.as_deref() {
            Some("claimed") => DeliveryClaim::InProgress,
            _ => DeliveryClaim::Done,
        })
    }

    /// Marks a delivery handled (for effects that are not one `Tx`).
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn complete_delivery(&self, key: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        complete(&mut connection, key, now).await
    }

    /// Gives a claim back after handling failed, so a retry is handled.
    ///
    /// # Errors
    /// When the store cannot be reached; the claim then lapses by itself.
    pub async fn release_delivery(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM deliveries WHERE delivery_key = $1 AND state = 'claimed'")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(query_error("releasing a delivery"))?;
        Ok(())
    }

    /// Forgets deliveries seen before `before` (platforms stop retrying
    /// long before), so the table does not grow without bound. Returns how
    /// many were removed.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn prune_deliveries(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM deliveries WHERE seen_at < $1 AND state = 'done'")
            .bind(to_text(before))
            .execute(&self.pool)
            .await
            .map_err(query_error("pruning deliveries"))?;
        Ok(result.rows_affected())
    }

    /// Records a delivery as handled at once; false when it was seen before.
    /// For deliveries whose effect is idempotent or not stored (a reaction
    /// answered in chat); everything else claims and completes.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn first_delivery(&self, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO deliveries (delivery_key, seen_at, state) VALUES ($1, $2, 'done') ON CONFLICT (delivery_key) DO NOTHING",
        )
        .bind(key)
        .bind(to_text(now))
        .execute(&self.pool)
        .await
        .map_err(query_error("recording a delivery"))?;
        Ok(result.rows_affected() == 1)
    }
}
