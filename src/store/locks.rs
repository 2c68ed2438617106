//! Environment locks (one running mutating operation per environment) and
//! holds (a person's `/lock`, or the hold a rollback leaves). The lock is a
//! row whose primary key is the environment, so taking it is one atomic
//! insert on SQLite and PostgreSQL alike, shared by every replica.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::{Store, StoreError, column, from_text, optional_time, query_error, to_text};

/// Who holds an environment's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The running operation.
    pub op_id: i64,
    /// Its command.
    pub command: String,
    /// Who requested it.
    pub holder: String,
    /// Since when.
    pub acquired_at: DateTime<Utc>,
}

/// Why an environment is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    /// A person's `/lock`.
    Person,
    /// Left by a rollback so the next deploy cannot silently undo it.
    Rollback,
}

impl HoldKind {
    fn as_str(self) -> &'static str {
        match self {
            HoldKind::Person => "person",
            HoldKind::Rollback => "rollback",
        }
    }
}

/// A hold on an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The environment.
    pub env: String,
    /// Why.
    pub kind: HoldKind,
    /// Who placed it.
    pub holder: String,
    /// The reason given.
    pub reason: String,
    /// The operation that placed it.
    pub op_id: Option<i64>,
    /// Since when.
    pub created_at: DateTime<Utc>,
    /// When it lapses by itself.
    pub expires_at: Option<DateTime<Utc>>,
}

fn read_hold(row: &AnyRow) -> Result<Hold, StoreError> {
    let kind: String = column(row, "kind")?;
    let created_at: String = column(row, "created_at")?;
    Ok(Hold {
        env: column(row, "env")?,
        kind: match kind.as_str() {
            "person" => HoldKind::Person,
            "rollback" => HoldKind::Rollback,
            _ => {
                return Err(StoreError::Corrupt {
                    what: "hold kind",
                    value: kind,
                });
            }
        },
        holder: column(row, "holder")?,
        reason: column(row, "reason")?,
        op_id: column(row, "op_id")?,
        created_at: from_text("created_at", &created_at)?,
        expires_at: optional_time("expires_at", column(row, "expires_at")?)?,
    })
}

/// What taking an environment's lock came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// The operation holds the lock now (or held it already: a process
    /// that took over an approved operation finds its lock).
    Taken,
    /// Another operation holds it.
    Held(LockHolder),
    /// The environment is free, but an older operation waits in its queue
    /// and goes first.
    Behind(LockHolder),
}

/// Takes an environment's lock for an operation, unless another operation
/// holds it or an older queued operation waits for it.
pub(super) async fn take(
    connection: &mut AnyConnection,
    env: &str,
    op_id: i64,
    command: &str,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<LockOutcome, StoreError> {
    for _attempt in 0..3 {
        // The insert is a SELECT with a WHERE, so SQLite's upsert parses it.
        let inserted = sqlx::query(
            "INSERT INTO environment_locks (env, op_id, command, holder, acquired_at) \
             SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM operations WHERE env = $1 AND state = 'approved' AND queued_at IS NOT NULL AND id < $2) \
             ON CONFLICT (env) DO NOTHING",
        )
        .bind(env)
        .bind(op_id)
        .bind(command)
        .bind(holder)
        .bind(to_text(now))
        .execute(&mut *connection)
        .await
        .map_err(query_error("taking an environment lock"))?;
        if inserted.rows_affected() == 1 {
            return Ok(LockOutcome::Taken);
        }
        if let Some(current) = holder_of(connection, env).await? {
            if current.op_id == op_id {
                return Ok(LockOutcome::Taken);
            }
            return Ok(LockOutcome::Held(current));
        }
        if let Some(first) = first_queued(connection, env, op_id).await? {
            return Ok(LockOutcome::Behind(first));
        }
        // The holder released it between the insert and the read; try again.
    }
    match holder_of(connection, env).await? {
        Some(current) => Ok(LockOutcome::Held(current)),
        None => Ok(LockOutcome::Taken),
    }
}

/// Releases the lock an operation holds.
pub(super) async fn release(
    connection: &mut AnyConnection,
    env: &str,
    op_id: i64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM environment_locks WHERE env = $1 AND op_id = $2")
        .bind(env)
        .bind(op_id)
        .execute(&mut *connection)
        .await
        .map_err(query_error("releasing an environment lock"))?;
    Ok(())
}

/// The hold on an environment, if any and not lapsed.
pub(super) async fn hold_on(
    connection: &mut AnyConnection,
    env: &str,
    now: DateTime<Utc>,
) -> Result<Option<Hold>, StoreError> {
    let row = sqlx::query(
        "SELECT env, kind, holder, reason, op_id, created_at, expires_at FROM environment_holds \
         WHERE env = $1 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(env)
    .bind(to_text(now))
    .fetch_optional(&mut *connection)
    .await
    .map_err(query_error("reading a hold"))?;
    row.as_ref().map(read_hold).transpose()
}

async fn holder_of(
    connection: &mut AnyConnection,
    env: &str,
) -> Result<Option<LockHolder>, StoreError> {
    let row = sqlx::query(
        "SELECT op_id, command, holder, acquired_at FROM environment_locks WHERE env = $1",
    )
    .bind(env)
    .fetch_optional(&mut *connection)
    .await
    .map_err(query_error("reading an environment lock"))?;
    row.map(|row| {
        let acquired_at: String = column(&row, "acquired_at")?;
        Ok(LockHolder {
            op_id: column(&row, "op_id")?,
            command: column(&row, "command")?,
            holder: column(&row, "holder")?,
            acquired_at: from_text("acquired_at", &acquired_at)?,
        })
    })
    .transpose()
}

/// The oldest operation queued for an environment before `op_id`.
async fn first_queued(
    connection: &mut AnyConnection,
    env: &str,
    op_id: i64,
) -> Result<Option<LockHolder>, StoreError> {
    let row = sqlx::query(
        "SELECT id, command, requester, queued_at FROM operations WHERE env = $1 AND state = 'approved' AND queued_at IS NOT NULL AND id < $2 ORDER BY id LIMIT 1",
    )
    .bind(env)
    .bind(op_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(query_error("reading an environment's queue"))?;
    row.map(|row| {
        let queued_at: String = column(&row, "queued_at")?;
        Ok(LockHolder {
            op_id: column(&row, "id")?,
            command: column(&row, "command")?,
            holder: column(&row, "requester")?,
            acquired_at: from_text("queued_at", &queued_at)?,
        })
    })
    .transpose()
}

impl Store {
    /// Takes an environment's lock for an operation (outside a
    /// transaction). Returns the current holder instead when someone else
    /// has it.
    ///
    /// # Errors
    /// When the store cannot be reached: callers fail closed.
    pub async fn try_lock(
        &self,
        env: &str,
        op_id: i64,
        command: &str,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<LockHolder>, StoreError> {
        let mut connection = self.connection().await?;
        Ok(
            match take(&mut connection, env, op_id, command, holder, now).await? {
                LockOutcome::Taken => None,
                LockOutcome::Held(holder) | LockOutcome::Behind(holder) => Some(holder),
            },
        )
    }

    /// Who holds an environment's lock, if anyone.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn lock_holder(&self, env: &str) -> Result<Option<LockHolder>, StoreError> {
        let mut connection = self.connection().await?;
        holder_of(&mut connection, env).await
    }

    /// The oldest operation waiting in an environment's queue, if any.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn first_in_queue(&self, env: &str) -> Result<Option<LockHolder>, StoreError> {
        let mut connection = self.connection().await?;
        first_queued(&mut connection, env, i64::MAX).await
    }

    /// Releases the lock an operation holds.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn unlock(&self, env: &str, op_id: i64) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        release(&mut connection, env, op_id).await
    }

    /// Places a hold unless one exists; returns the existing hold instead.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn place_hold(
        &self,
        hold: &Hold,
        now: DateTime<Utc>,
    ) -> Result<Option<Hold>, StoreError> {
        if let Some(existing) = self.hold(&hold.env, now).await? {
            return Ok(Some(existing));
        }
        let inserted = sqlx::query(
            "INSERT INTO environment_holds (env, kind, holder, reason, op_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (env) DO UPDATE SET kind = $2, holder = $3, reason = $4, op_id = $5, created_at = $6, expires_at = $7 \
             WHERE environment_holds.expires_at IS NOT NULL AND environment_holds.expires_at <= $8",
        )
        .bind(&hold.env)
        .bind(hold.kind.as_str())
        .bind(&hold.holder)
        .bind(&hold.reason)
        .bind(hold.op_id)
        .bind(to_text(hold.created_at))
        .bind(hold.expires_at.map(to_text))
        .bind(to_text(now))
        .execute(&self.pool)
        .await
        .map_err(query_error("placing a hold"))?;
        if inserted.rows_affected() == 1 {
            Ok(None)
        } else {
            self.hold(&hold.env, now).await
        }
    }

    /// The hold on an environment, if any and not lapsed. Lapsed holds are
    /// left for `drop_lapsed_holds`, whose caller audits each lapse.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn hold(&self, env: &str, now: DateTime<Utc>) -> Result<Option<Hold>, StoreError> {
        let mut connection = self.connection().await?;
        hold_on(&mut connection, env, now).await
    }

    /// Every current hold.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn holds(&self, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(
            "SELECT env, kind, holder, reason, op_id, created_at, expires_at FROM environment_holds \
             WHERE expires_at IS NULL OR expires_at > $1 ORDER BY env",
        )
        .bind(to_text(now))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading holds"))?;
        rows.iter().map(read_hold).collect()
    }

    /// Removes the hold on an environment and returns it.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn release_hold(
        &self,
        env: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Hold>, StoreError> {
        let existing = self.hold(env, now).await?;
        if existing.is_some() {
            sqlx::query("DELETE FROM environment_holds WHERE env = $1 AND (expires_at IS NULL OR expires_at > $2)")
                .bind(env)
                .bind(to_text(now))
                .execute(&self.pool)
                .await
                .map_err(query_error("releasing a hold"))?;
        }
        Ok(existing)
    }

    /// Removes holds whose time is up and returns them, so their lapse can
    /// be audited.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn drop_lapsed_holds(&self, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(
            "DELETE FROM environment_holds WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING env, kind, holder, reason, op_id, created_at, expires_at",
        )
        .bind(to_text(now))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("dropping lapsed holds"))?;
        rows.iter().map(read_hold).collect()
    }
}
