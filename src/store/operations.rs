//! Operations, their step journal, their chat messages and their approvals.
//! Writes are functions over one connection, so the same SQL serves a
//! single statement on the pool and a step of a `Tx` (store::transaction),
//! where a change and its audit entry commit together.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::{
    Lease, Store, StoreError, column, from_text, next_id, optional_time, query_error, to_text,
};
use crate::names::{Platform, RoleName, UserName};
use crate::policy::{ApprovalRecord, ApprovalView, OpState};

/// An operation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRecord {
    /// The `#42` people see.
    pub id: i64,
    /// The command name.
    pub command: String,
    /// The environment, if the command has one.
    pub env: Option<String>,
    /// The canonical request, parsed again on load.
    pub command_line: String,
    /// Hash of the exact parameters approvals bind to.
    pub params_hash: String,
    /// The plan shown to the requester and approvers (JSON).
    pub plan: String,
    /// Who asked: a Deckhand user name.
    pub requester: String,
    /// Their account on `platform` (the console: the console name they
    /// acted as); `None` for rows older than accounts.
    pub requester_id: Option<String>,
    /// The operating-system user behind a console request.
    pub requester_os: Option<String>,
    /// Where they asked from.
    pub platform: Platform,
    /// The channel the operation's message lives in.
    pub channel: String,
    /// Its state.
    pub state: OpState,
    /// Approvals needed.
    pub approvals_needed: u32,
    /// Roles that may approve.
    pub approver_roles: Vec<RoleName>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When the approval request expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// One line saying how it ended.
    pub outcome: Option<String>,
    /// The process instance that runs it or waits for it, if any.
    pub owner: Option<String>,
    /// Until when the owner's lease holds.
    pub lease_until: Option<DateTime<Utc>>,
    /// Bumped by every change to what its message shows.
    pub revision: i64,
    /// Since when it waits for its environment (`on_busy = "queue"`).
    pub queued_at: Option<DateTime<Utc>>,
}

impl OperationRecord {
    /// What policy needs of this operation and its approvals; who is
    /// listed and whose approvals lapsed are the caller's to fill in.
    pub fn approval_view<'a>(&'a self, approvals: &'a [ApprovalRecord]) -> ApprovalView<'a> {
        ApprovalView {
            op_id: self.id,
            state: self.state,
            requester: &self.requester,
            params_hash: &self.params_hash,
            expires_at: self.expires_at,
            needed: self.approvals_needed,
            approver_roles: &self.approver_roles,
            approvals,
            queued: self.queued_at.is_some(),
            requester_platform: self.platform,
            // Callers that check approvals set these from config and from
            // the approvers' roles now.
            requester_listed: true,
            lapsed: &[],
            unlisted_approvers: false,
        }
    }
}

/// An operation to insert; the id is allocated by the store.
#[derive(Debug, Clone)]
pub struct NewOperation {
    /// The command name.
    pub command: String,
    /// The environment.
    pub env: Option<String>,
    /// The canonical request.
    pub command_line: String,
    /// Hash of its exact parameters.
    pub params_hash: String,
    /// The plan (JSON).
    pub plan: String,
    /// Who asked.
    pub requester: String,
    /// Their account on `platform`; `None` for PagerDuty.
    pub requester_id: Option<String>,
    /// The operating-system user behind a console request.
    pub requester_os: Option<String>,
    /// From where.
    pub platform: Platform,
    /// The channel.
    pub channel: String,
    /// Initial state: pending, or approved when no approval is needed.
    pub state: OpState,
    /// Approvals needed.
    pub approvals_needed: u32,
    /// Roles that may approve.
    pub approver_roles: Vec<RoleName>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When the request expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An approval to record.
#[derive(Debug, Clone, Copy)]
pub struct NewApproval<'a> {
    /// The person.
    pub approver: &'a UserName,
    /// Their account on `platform`.
    pub account: &'a str,
    /// Where they approved from.
    pub platform: Platform,
    /// The parameters hash they approved.
    pub params_hash: &'a str,
}

/// One journaled step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Position in the command's steps.
    pub idx: i64,
    /// The step kind.
    pub kind: String,
    /// The title shown.
    pub title: String,
    /// `running`, `ok`, `failed` or `skipped`.
    pub state: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// What it reported.
    pub detail: String,
}

macro_rules! operation_columns {
    () => {
        "id, command, env, command_line, params_hash, plan, requester, platform, channel, state, approvals_needed, approver_roles, created_at, expires_at, started_at, finished_at, outcome, owner, lease_until, revision, queued_at, requester_id, requester_os"
    };
}

/// The columns `read_operation` reads, for queries built at run time.
pub(super) const COLUMNS: &str = operation_columns!();

pub(super) fn read_operation(row: &AnyRow) -> Result<OperationRecord, StoreError> {
    let platform: String = column(row, "platform")?;
    let state: String = column(row, "state")?;
    let approvals_needed: i64 = column(row, "approvals_needed")?;
    let approver_roles: String = column(row, "approver_roles")?;
    let created_at: String = column(row, "created_at")?;
    Ok(OperationRecord {
        id: column(row, "id")?,
        command: column(row, "command")?,
        env: column(row, "env")?,
        command_line: column(row, "command_line")?,
        params_hash: column(row, "params_hash")?,
        plan: column(row, "plan")?,
        requester: column(row, "requester")?,
        requester_id: column(row, "requester_id")?,
        requester_os: column(row, "requester_os")?,
        platform: Platform::from_name(&platform).ok_or(StoreError::Corrupt {
            what: "platform",
            value: platform.clone(),
        })?,
        channel: column(row, "channel")?,
        state: OpState::from_name(&state).ok_or(StoreError::Corrupt {
            what: "operation state",
            value: state.clone(),
        })?,
        approvals_needed: u32::try_from(approvals_needed).unwrap_or(u32::MAX),
        approver_roles: approver_roles
            .split(',')
            .filter(|role| !role.is_empty())
            .map(RoleName::new)
            .collect(),
        created_at: from_text("created_at", &created_at)?,
        expires_at: optional_time("expires_at", column(row, "expires_at")?)?,
        started_at: optional_time("started_at", column(row, "started_at")?)?,
        finished_at: optional_time("finished_at", column(row, "finished_at")?)?,
        outcome: column(row, "outcome")?,
        owner: column(row, "owner")?,
        lease_until: optional_time("lease_until", column(row, "lease_until")?)?,
        revision: column(row, "revision")?,
        queued_at: optional_time("queued_at", column(row, "queued_at")?)?,
    })
}

/// Inserts an operation owned by `lease` and returns its id.
pub(super) async fn insert(
    connection: &mut AnyConnection,
    operation: &NewOperation,
    lease: &Lease,
) -> Result<i64, StoreError> {
    let id = next_id(connection, "operation").await?;
    let roles: Vec<&str> = operation
        .approver_roles
        .iter()
        .map(RoleName::as_str)
        .collect();
    sqlx::query(
        "INSERT INTO operations (id, command, env, command_line, params_hash, plan, requester, platform, channel, state, approvals_needed, approver_roles, created_at, expires_at, owner, lease_until, revision, dirty, requester_id, requester_os) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 1, 1, $17, $18)",
    )
    .bind(id)
    .bind(&operation.command)
    .bind(operation.env.as_deref())
    .bind(&operation.command_line)
    .bind(&operation.params_hash)
    .bind(&operation.plan)
    .bind(&operation.requester)
    .bind(operation.platform.as_str())
    .bind(&operation.channel)
    .bind(operation.state.as_str())
    .bind(i64::from(operation.approvals_needed))
    .bind(roles.join(","))
    .bind(to_text(operation.created_at))
    .bind(operation.expires_at.map(to_text))
    .bind(&lease.owner)
    .bind(to_text(lease.until))
    .bind(operation.requester_id.as_deref())
    .bind(operation.requester_os.as_deref())
    .execute(&mut *connection)
    .await
    .map_err(query_error("recording an operation"))?;
    Ok(id)
}

/// Bumps an operation's revision and reads it back: inside a transaction
/// this takes the operation's row lock first, so every change to one
/// operation is serialised against every other (a withdrawal against the
/// approval that would start it, two replicas against each other).
pub(super) async fn lock(
    connection: &mut AnyConnection,
    id: i64,
) -> Result<Option<OperationRecord>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE operations SET revision = revision + 1, dirty = 1 WHERE id = $1 RETURNING ",
        operation_columns!()
    ))
    .bind(id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(query_error("reading an operation"))?;
    row.as_ref().map(read_operation).transpose()
}

/// Moves an operation to `to` only if it is in `from`: a compare-and-set.
pub(super) async fn set_state(
    connection: &mut AnyConnection,
    id: i64,
    from: OpState,
    to: OpState,
    now: DateTime<Utc>,
    outcome: Option<&str>,
) -> Result<bool, StoreError> {
    let (started, finished) = match to {
        OpState::Running => (Some(to_text(now)), None),
        state if state.is_final() => (None, Some(to_text(now))),
        _ => (None, None),
    };
    let result = sqlx::query(
        "UPDATE operations SET state = $1, started_at = COALESCE($2, started_at), finished_at = COALESCE($3, finished_at), outcome = COALESCE($4, outcome), \
         queued_at = CASE WHEN $1 = 'approved' THEN queued_at ELSE NULL END, revision = revision + 1, dirty = 1 \
         WHERE id = $5 AND state = $6",
    )
    .bind(to.as_str())
    .bind(started)
    .bind(finished)
    .bind(outcome)
    .bind(id)
    .bind(from.as_str())
    .execute(&mut *connection)
    .await
    .map_err(query_error("changing an operation's state"))?;
    Ok(result.rows_affected() == 1)
}

/// Gives an operation to a new owner.
pub(super) async fn set_owner(
    connection: &mut AnyConnection,
    id: i64,
    lease: &Lease,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE operations SET owner = $1, lease_until = $2 WHERE id = $3")
        .bind(&lease.owner)
        .bind(to_text(lease.until))
        .bind(id)
        .execute(&mut *connection)
        .await
        .map_err(query_error("giving an operation a new owner"))?;
    Ok(())
}

/// Marks an approved operation as waiting for its environment, once.
pub(super) async fn set_queued(
    connection: &mut AnyConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE operations SET queued_at = COALESCE(queued_at, $1) WHERE id = $2 AND state = 'approved'",
    )
    .bind(to_text(now))
    .bind(id)
    .execute(&mut *connection)
    .await
    .map_err(query_error("queueing an operation"))?;
    Ok(())
}

/// Journals a step before it runs.
pub(super) async fn start_step(
    connection: &mut AnyConnection,
    op_id: i64,
    idx: i64,
    kind: &str,
    title: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO operation_steps (op_id, idx, kind, title, state, started_at, detail) VALUES ($1, $2, $3, $4, 'running', $5, '')",
    )
    .bind(op_id)
    .bind(idx)
    .bind(kind)
    .bind(title)
    .bind(to_text(now))
    .execute(&mut *connection)
    .await
    .map_err(query_error("journaling a step"))?;
    Ok(())
}

/// Records how a step ended.
pub(super) async fn finish_step(
    connection: &mut AnyConnection,
    op_id: i64,
    idx: i64,
    state: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE operation_steps SET state = $1, detail = $2, finished_at = $3 WHERE op_id = $4 AND idx = $5",
    )
    .bind(state)
    .bind(detail)
    .bind(to_text(now))
    .bind(op_id)
    .bind(idx)
    .execute(&mut *connection)
    .await
    .map_err(query_error("journaling a step"))?;
    Ok(())
}

/// Records (or renews) an approval.
pub(super) async fn add_approval(
    connection: &mut AnyConnection,
    op_id: i64,
    approval: &NewApproval<'_>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO approvals (op_id, approver, params_hash, platform, created_at, approver_id) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (op_id, approver) DO UPDATE SET params_hash = $3, platform = $4, created_at = $5, withdrawn_at = NULL, approver_id = $6",
    )
    .bind(op_id)
    .bind(approval.approver.as_str())
    .bind(approval.params_hash)
    .bind(approval.platform.as_str())
    .bind(to_text(now))
    .bind(approval.account)
    .execute(&mut *connection)
    .await
    .map_err(query_error("recording an approval"))?;
    Ok(())
}

/// Withdraws an approval; false when there was none to withdraw.
pub(super) async fn withdraw_approval(
    connection: &mut AnyConnection,
    op_id: i64,
    approver: &UserName,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE approvals SET withdrawn_at = $1 WHERE op_id = $2 AND approver = $3 AND withdrawn_at IS NULL",
    )
    .bind(to_text(now))
    .bind(op_id)
    .bind(approver.as_str())
    .execute(&mut *connection)
    .await
    .map_err(query_error("withdrawing an approval"))?;
    Ok(result.rows_affected() == 1)
}

/// An operation's approvals, oldest first.
pub(super) async fn approvals(
    connection: &mut AnyConnection,
    op_id: i64,
) -> Result<Vec<ApprovalRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT approver, params_hash, withdrawn_at, platform, approver_id FROM approvals WHERE op_id = $1 ORDER BY created_at, approver",
    )
    .bind(op_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(query_error("reading approvals"))?;
    rows.iter()
        .map(|row| {
            let approver: String = column(row, "approver")?;
            let withdrawn_at: Option<String> = column(row, "withdrawn_at")?;
            let platform: String = column(row, "platform")?;
            Ok(ApprovalRecord {
                approver: UserName::new(approver),
                params_hash: column(row, "params_hash")?,
                withdrawn: withdrawn_at.is_some(),
                platform: Platform::from_name(&platform).ok_or(StoreError::Corrupt {
                    what: "platform",
                    value: platform.clone(),
                })?,
                account: column(row, "approver_id")?,
            })
        })
        .collect()
}

impl Store {
    /// Inserts an operation owned by `lease` and returns its id (outside a
    /// transaction; the request flow inserts through a `Tx` with its audit
    /// entry).
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn insert_operation(
        &self,
        operation: &NewOperation,
        lease: &Lease,
    ) -> Result<i64, StoreError> {
        let mut connection = self.connection().await?;
        insert(&mut connection, operation, lease).await
    }

    /// One operation.
    ///
    /// # Errors
    /// When the store cannot be reached or the row is unreadable.
    pub async fn operation(&self, id: i64) -> Result<Option<OperationRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            operation_columns!(),
            " FROM operations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("reading an operation"))?;
        row.as_ref().map(read_operation).transpose()
    }

    /// Operations in a state, oldest first.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn operations_in_state(
        &self,
        state: OpState,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            operation_columns!(),
            " FROM operations WHERE state = $1 ORDER BY id"
        ))
        .bind(state.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("listing operations"))?;
        rows.iter().map(read_operation).collect()
    }

    /// The newest operations of an environment (or all), newest first.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn recent_operations(
        &self,
        env: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = match env {
            Some(env) => sqlx::query(concat!(
                "SELECT ",
                operation_columns!(),
                " FROM operations WHERE env = $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(env)
            .bind(limit),
            None => sqlx::query(concat!(
                "SELECT ",
                operation_columns!(),
                " FROM operations ORDER BY id DESC LIMIT $1"
            ))
            .bind(limit),
        }
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("listing operations"))?;
        rows.iter().map(read_operation).collect()
    }

    /// Moves an operation to `to` only if it is in `from` — a
    /// compare-and-set, so two replicas (or a click racing the expiry) never
    /// both win. Returns whether this call made the change. Outside a
    /// transaction, so without an audit entry: the request flow changes
    /// states through a `Tx`.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn transition(
        &self,
        id: i64,
        from: OpState,
        to: OpState,
        now: DateTime<Utc>,
        outcome: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection().await?;
        set_state(&mut connection, id, from, to, now, outcome).await
    }

    /// Replaces the stored plan (once the executor resolved it further).
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn set_plan(&self, id: i64, plan: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE operations SET plan = $1, revision = revision + 1, dirty = 1 WHERE id = $2",
        )
        .bind(plan)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("saving a plan"))?;
        Ok(())
    }

    /// Journals a step (outside a transaction).
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn start_step(
        &self,
        op_id: i64,
        idx: i64,
        kind: &str,
        title: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        start_step(&mut connection, op_id, idx, kind, title, now).await
    }

    /// An operation's journal, in order.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn steps(&self, op_id: i64) -> Result<Vec<StepRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT idx, kind, title, state, started_at, finished_at, detail FROM operation_steps WHERE op_id = $1 ORDER BY idx",
        )
        .bind(op_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading a journal"))?;
        rows.iter()
            .map(|row| {
                let started_at: String = column(row, "started_at")?;
                Ok(StepRecord {
                    idx: column(row, "idx")?,
                    kind: column(row, "kind")?,
                    title: column(row, "title")?,
                    state: column(row, "state")?,
                    started_at: from_text("started_at", &started_at)?,
                    finished_at: optional_time("finished_at", column(row, "finished_at")?)?,
                    detail: column(row, "detail")?,
                })
            })
            .collect()
    }

    /// Remembers the chat message that shows an operation on a platform.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn set_message(
        &self,
        op_id: i64,
        platform: Platform,
        channel: &str,
        message_ref: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO operation_messages (op_id, platform, channel, message_ref) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (op_id, platform) DO UPDATE SET channel = $3, message_ref = $4",
        )
        .bind(op_id)
        .bind(platform.as_str())
        .bind(channel)
        .bind(message_ref)
        .execute(&self.pool)
        .await
        .map_err(query_error("remembering a message"))?;
        Ok(())
    }

    /// The chat message of an operation on a platform: (channel, message ref).
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn message_of(
        &self,
        op_id: i64,
        platform: Platform,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT channel, message_ref FROM operation_messages WHERE op_id = $1 AND platform = $2")
            .bind(op_id)
            .bind(platform.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("finding a message"))?;
        row.map(|row| Ok((column(&row, "channel")?, column(&row, "message_ref")?)))
            .transpose()
    }

    /// The operation a chat message shows, if any: how a reaction is
    /// matched to what it approves.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn operation_of_message(
        &self,
        platform: Platform,
        channel: &str,
        message_ref: &str,
    ) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT op_id FROM operation_messages WHERE platform = $1 AND channel = $2 AND message_ref = $3",
        )
        .bind(platform.as_str())
        .bind(channel)
        .bind(message_ref)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("finding an operation by message"))
    }

    /// An operation's approvals, oldest first.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn approvals(&self, op_id: i64) -> Result<Vec<ApprovalRecord>, StoreError> {
        let mut connection = self.connection().await?;
        approvals(&mut connection, op_id).await
    }
}
