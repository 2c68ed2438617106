//! `Tx`: writes that commit together or not at all. A change to an
//! operation, its audit entry and the delivery that caused it are one
//! transaction, so no state changes without its audit entry (the audit
//! trail fails closed), and a delivery is marked handled only with its
//! effect. The first write to an operation (`lock_operation`) takes its row
//! lock, so changes to one operation are serialised across replicas.
//! On PostgreSQL a commit that changed an operation notifies the other
//! replicas (`notify`).

use chrono::{DateTime, Utc};
use sqlx::{Any, Transaction};

use super::{
    AuditEntry, ChainMac, IncidentRecord, Lease, LockOutcome, NewApproval, NewAuditEntry,
    NewOperation, OperationRecord, Store, StoreError, audit_log, deliveries, incidents, locks,
    notify, operations, query_error,
};
use crate::names::UserName;
use crate::policy::{ApprovalRecord, OpState};

/// An open store transaction. Dropped without `commit`, it rolls back.
pub struct Tx {
    transaction: Transaction<'static, Any>,
    is_postgres: bool,
    changed_operation: bool,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Tx")
    }
}

impl Store {
    /// Opens a transaction.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let transaction = self
            .pool
            .begin()
            .await
            .map_err(query_error("starting a transaction"))?;
        Ok(Tx {
            transaction,
            is_postgres: self.is_postgres,
            changed_operation: false,
        })
    }
}

impl Tx {
    /// Takes an operation's row lock and reads it (bumping its revision, so
    /// its message is republished).
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn lock_operation(
        &mut self,
        op_id: i64,
    ) -> Result<Option<OperationRecord>, StoreError> {
        self.changed_operation = true;
        operations::lock(&mut self.transaction, op_id).await
    }

    /// Inserts an operation owned by `lease`.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn insert_operation(
        &mut self,
        operation: &NewOperation,
        lease: &Lease,
    ) -> Result<i64, StoreError> {
        self.changed_operation = true;
        operations::insert(&mut self.transaction, operation, lease).await
    }

    /// Moves an operation from `from` to `to` (compare-and-set).
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn set_state(
        &mut self,
        op_id: i64,
        from: OpState,
        to: OpState,
        now: DateTime<Utc>,
        outcome: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.changed_operation = true;
        operations::set_state(&mut self.transaction, op_id, from, to, now, outcome).await
    }

    /// Marks an approved operation as waiting in its environment's queue.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn set_queued(&mut self, op_id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        operations::set_queued(&mut self.transaction, op_id, now).await
    }

    /// Takes an environment's lock for an operation.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn take_lock(
        &mut self,
        env: &str,
        op_id: i64,
        command: &str,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<LockOutcome, StoreError> {
        locks::take(&mut self.transaction, env, op_id, command, holder, now).await
    }

    /// The hold on an environment, if any and not lapsed.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn hold(
        &mut self,
        env: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<super::Hold>, StoreError> {
        locks::hold_on(&mut self.transaction, env, now).await
    }

    /// Releases the lock an operation holds.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn release_lock(&mut self, env: &str, op_id: i64) -> Result<(), StoreError> {
        locks::release(&mut self.transaction, env, op_id).await
    }

    /// Journals a step before it runs.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn start_step(
        &mut self,
        op_id: i64,
        idx: i64,
        kind: &str,
        title: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        operations::start_step(&mut self.transaction, op_id, idx, kind, title, now).await
    }

    /// Records how a step ended.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn finish_step(
        &mut self,
        op_id: i64,
        idx: i64,
        state: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        operations::finish_step(&mut self.transaction, op_id, idx, state, detail, now).await
    }

    /// Records (or renews) an approval.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn add_approval(
        &mut self,
        op_id: i64,
        approval: &NewApproval<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        operations::add_approval(&mut self.transaction, op_id, approval, now).await
    }

    /// Withdraws an approval; false when there was none.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn withdraw_approval(
        &mut self,
        op_id: i64,
        approver: &UserName,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        operations::withdraw_approval(&mut self.transaction, op_id, approver, now).await
    }

    /// An operation's approvals as this transaction sees them.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn approvals(&mut self, op_id: i64) -> Result<Vec<ApprovalRecord>, StoreError> {
        operations::approvals(&mut self.transaction, op_id).await
    }

    /// Appends an audit entry to the chain.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn append_audit(
        &mut self,
        entry: &NewAuditEntry,
        chain_mac: &ChainMac<'_>,
    ) -> Result<AuditEntry, StoreError> {
        audit_log::append(&mut self.transaction, entry, chain_mac).await
    }

    /// Marks a delivery handled, with this transaction's effect.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn complete_delivery(
        &mut self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        deliveries::complete(&mut self.transaction, key, now).await
    }

    /// Gives an operation to `lease`'s owner.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn set_owner(&mut self, op_id: i64, lease: &Lease) -> Result<(), StoreError> {
        operations::set_owner(&mut self.transaction, op_id, lease).await
    }

    /// Records an incident; false when it was recorded before.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn insert_incident(&mut self, incident: &IncidentRecord) -> Result<bool, StoreError> {
        incidents::insert(&mut self.transaction, incident).await
    }

    /// Commits everything, and on PostgreSQL tells the other replicas that
    /// an operation changed.
    ///
    /// # Errors
    /// When the commit fails; then nothing of it happened.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        if self.is_postgres && self.changed_operation {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(notify::CHANNEL)
                .execute(&mut *self.transaction)
                .await
                .map_err(query_error("announcing a change"))?;
        }
        self.transaction
            .commit()
            .await
            .map_err(query_error("committing a change"))
    }
}
