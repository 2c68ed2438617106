//! The audit log's rows. Appending takes the chain head in the same
//! transaction as the insert (a row lock on PostgreSQL, the write lock on
//! SQLite), so entries from several replicas still form one chain. What the
//! chain means (how an entry's MAC is made, with which key) and checking it
//! is `audit`'s job; this module only stores what `audit` computed.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::{Store, StoreError, column, from_text, query_error, to_text};

/// An entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who acted (a Deckhand user name, a platform id, or `deckhand`).
    pub actor: String,
    /// Where from.
    pub platform: String,
    /// Which channel.
    pub channel: String,
    /// The command.
    pub command: String,
    /// The environment, or empty.
    pub env: String,
    /// The operation, or 0.
    pub op_id: i64,
    /// What happened: requested, approved, started, step-ok, …
    pub event: String,
    /// How it came out.
    pub outcome: String,
    /// Detail, never a secret.
    pub detail: String,
}

/// An entry's MAC as `audit` computed it, with how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMac {
    /// `hmac-sha256` (keyed) or `sha256` (the unkeyed chain).
    pub mac_alg: String,
    /// The HMAC key's id; empty when unkeyed.
    pub key_id: String,
    /// The MAC, lowercase hex.
    pub mac: String,
}

/// A stored entry with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The entry's contents.
    pub entry: NewAuditEntry,
    /// The previous entry's MAC (`genesis` for the first).
    pub prev_hash: String,
    /// This entry's MAC (HMAC-SHA256 when keyed, SHA-256 otherwise).
    pub hash: String,
    /// `hmac-sha256` or `sha256`.
    pub mac_alg: String,
    /// The HMAC key's id; empty when unkeyed.
    pub key_id: String,
}

/// The newest entry as `audit_head` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// Its position; 0 when the log is empty.
    pub seq: i64,
    /// Its MAC; `genesis` when the log is empty.
    pub hash: String,
}

macro_rules! audit_columns {
    () => {
        "seq, at, actor, platform, channel, command, env, op_id, event, outcome, detail, prev_hash, hash, mac_alg, key_id"
    };
}

fn read_entry(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let at: String = column(row, "at")?;
    Ok(AuditEntry {
        seq: column(row, "seq")?,
        entry: NewAuditEntry {
            at: from_text("audit time", &at)?,
            actor: column(row, "actor")?,
            platform: column(row, "platform")?,
            channel: column(row, "channel")?,
            command: column(row, "command")?,
            env: column(row, "env")?,
            op_id: column(row, "op_id")?,
            event: column(row, "event")?,
            outcome: column(row, "outcome")?,
            detail: column(row, "detail")?,
        },
        prev_hash: column(row, "prev_hash")?,
        hash: column(row, "hash")?,
        mac_alg: column(row, "mac_alg")?,
        key_id: column(row, "key_id")?,
    })
}

/// How an entry's MAC is computed from the previous MAC and the entry.
pub type ChainMac<'k> = dyn Fn(&str, &NewAuditEntry) -> EntryMac + Send + Sync + 'k;

/// Appends an entry: bumps the chain head (the row lock on PostgreSQL, the
/// write lock on SQLite, held until the caller's transaction commits, so
/// entries from several replicas still form one chain), inserts the entry
/// chained to the previous one, and moves the head. A process without the
/// chain key cannot append after keyed entries: that would break the chain
/// for everyone, so it fails (closed) instead.
pub(super) async fn append(
    connection: &mut AnyConnection,
    entry: &NewAuditEntry,
    chain_mac: &ChainMac<'_>,
) -> Result<AuditEntry, StoreError> {
    let head = sqlx::query(
        "UPDATE audit_head SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq, last_hash",
    )
    .fetch_one(&mut *connection)
    .await
    .map_err(query_error("reading the audit chain head"))?;
    let seq: i64 = column(&head, "last_seq")?;
    let prev_hash: String = column(&head, "last_hash")?;
    let EntryMac {
        mac_alg,
        key_id,
        mac: hash,
    } = chain_mac(&prev_hash, entry);
    if key_id.is_empty() {
        let previous_key: Option<String> =
            sqlx::query_scalar("SELECT key_id FROM audit_log WHERE seq = $1")
                .bind(seq - 1)
                .fetch_optional(&mut *connection)
                .await
                .map_err(query_error("reading the audit chain head"))?;
        if previous_key.is_some_and(|key_id| !key_id.is_empty()) {
            return Err(StoreError::AuditKeyMissing);
        }
    }
    sqlx::query(concat!(
        "INSERT INTO audit_log (",
        audit_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(seq)
    .bind(to_text(entry.at))
    .bind(&entry.actor)
    .bind(&entry.platform)
    .bind(&entry.channel)
    .bind(&entry.command)
    .bind(&entry.env)
    .bind(entry.op_id)
    .bind(&entry.event)
    .bind(&entry.outcome)
    .bind(&entry.detail)
    .bind(&prev_hash)
    .bind(&hash)
    .bind(&mac_alg)
    .bind(&key_id)
    .execute(&mut *connection)
    .await
    .map_err(query_error("appending an audit entry"))?;
    sqlx::query("UPDATE audit_head SET last_hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(&mut *connection)
        .await
        .map_err(query_error("moving the audit chain head"))?;
    Ok(AuditEntry {
        seq,
        entry: entry.clone(),
        prev_hash,
        hash,
        mac_alg,
        key_id,
    })
}

impl Store {
    /// Appends an entry in a transaction of its own; `chain_mac` computes
    /// its MAC from the previous entry's MAC and its contents (`audit`
    /// passes a closure holding the key). Changes to operations append
    /// inside their own `Tx`.
    ///
    /// # Errors
    /// When the store cannot be reached, or when the chain is keyed and
    /// `chain_mac` is not.
    pub async fn append_audit(
        &self,
        entry: &NewAuditEntry,
        chain_mac: &ChainMac<'_>,
    ) -> Result<AuditEntry, StoreError> {
        let mut transaction = self.begin().await?;
        let stored = transaction.append_audit(entry, chain_mac).await?;
        transaction.commit().await?;
        Ok(stored)
    }

    /// The newest entries, optionally of one environment, newest first.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn audit_entries(
        &self,
        env: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = match env {
            Some(env) => sqlx::query(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log WHERE env = $1 ORDER BY seq DESC LIMIT $2"
            ))
            .bind(env)
            .bind(limit),
            None => sqlx::query(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log ORDER BY seq DESC LIMIT $1"
            ))
            .bind(limit),
        }
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading the audit log"))?;
        rows.iter().map(read_entry).collect()
    }

    /// Entries made at or after `since`, in chain order.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn audit_entries_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_log WHERE at >= $1 ORDER BY seq"
        ))
        .bind(to_text(since))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading the audit log"))?;
        rows.iter().map(read_entry).collect()
    }

    /// The chain head: the newest entry's seq and MAC.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        let head = sqlx::query("SELECT last_seq, last_hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("reading the audit chain head"))?;
        Ok(AuditHead {
            seq: column(&head, "last_seq")?,
            hash: column(&head, "last_hash")?,
        })
    }

    /// Every entry in chain order, and the chain head (last seq and hash).
    /// An append that commits between reading the entries and the head
    /// would make the head look ahead of the log, so that case is read
    /// again (a few times) before it is returned as it is.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn audit_chain(&self) -> Result<(Vec<AuditEntry>, i64, String), StoreError> {
        let mut attempts_left = 3;
        loop {
            let rows = sqlx::query(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log ORDER BY seq"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("reading the audit log"))?;
            let entries = rows.iter().map(read_entry).collect::<Result<Vec<_>, _>>()?;
            let head = self.audit_head().await?;
            let last_seq = entries.last().map_or(0, |stored| stored.seq);
            attempts_left -= 1;
            if head.seq <= last_seq || attempts_left == 0 {
                return Ok((entries, head.seq, head.hash));
            }
        }
    }
}
