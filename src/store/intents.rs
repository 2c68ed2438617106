//! The intent journal: what a step is about to do to a target, and what is
//! needed to finish or undo it, written before it acts and removed once the
//! sub-step is settled. What the rows mean is the executor's business
//! (`exec::recovery`); this module only keeps them.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

use super::{Store, StoreError, column, from_text, query_error, to_text};

/// One journaled intent.
#[derive(Clone, PartialEq, Eq)]
pub struct StepIntent {
    /// The operation.
    pub op_id: i64,
    /// The step's position in its command.
    pub step_idx: i64,
    /// Which part of the step, e.g. `replace backend-1`; unique within the step.
    pub sub_step: String,
    /// What kind of change, e.g. `replace`, `run_once`, `db_password`.
    pub kind: String,
    /// The stage about to run.
    pub stage: String,
    /// What recovery needs, as JSON; never a secret.
    pub data: String,
    /// Secrets recovery needs, encrypted with the state key; never plaintext.
    pub sealed: Option<String>,
    /// When it was written.
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for StepIntent {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StepIntent")
            .field("op_id", &self.op_id)
            .field("step_idx", &self.step_idx)
            .field("sub_step", &self.sub_step)
            .field("kind", &self.kind)
            .field("stage", &self.stage)
            .field("data", &self.data)
            .field("sealed", &self.sealed.as_ref().map(|_| "[sealed]"))
            .finish()
    }
}

fn read_intent(row: &AnyRow) -> Result<StepIntent, StoreError> {
    let updated_at: String = column(row, "updated_at")?;
    Ok(StepIntent {
        op_id: column(row, "op_id")?,
        step_idx: column(row, "step_idx")?,
        sub_step: column(row, "sub_step")?,
        kind: column(row, "kind")?,
        stage: column(row, "stage")?,
        data: column(row, "data")?,
        sealed: column(row, "sealed")?,
        updated_at: from_text("updated_at", &updated_at)?,
    })
}

impl Store {
    /// Writes (or moves on) an intent, before the stage it names runs.
    ///
    /// # Errors
    /// When the store cannot be reached; the caller must then not act.
    pub async fn journal_intent(&self, intent: &StepIntent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO step_intents (op_id, step_idx, sub_step, kind, stage, data, sealed, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (op_id, step_idx, sub_step) DO UPDATE SET kind = $4, stage = $5, data = $6, sealed = $7, updated_at = $8",
        )
        .bind(intent.op_id)
        .bind(intent.step_idx)
        .bind(&intent.sub_step)
        .bind(&intent.kind)
        .bind(&intent.stage)
        .bind(&intent.data)
        .bind(intent.sealed.as_deref())
        .bind(to_text(intent.updated_at))
        .execute(&self.pool)
        .await
        .map_err(query_error("journaling an intent"))?;
        Ok(())
    }

    /// An operation's open intents, in the order they were first written
    /// (by step, then sub-step).
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn intents(&self, op_id: i64) -> Result<Vec<StepIntent>, StoreError> {
        let rows = sqlx::query(
            "SELECT op_id, step_idx, sub_step, kind, stage, data, sealed, updated_at FROM step_intents \
             WHERE op_id = $1 ORDER BY step_idx, sub_step",
        )
        .bind(op_id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("reading intents"))?;
        rows.iter().map(read_intent).collect()
    }

    /// Finished operations that still have open intents: a recovery that
    /// could not settle everything (a host that did not answer), to be
    /// settled again later.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn finished_with_intents(&self) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT DISTINCT step_intents.op_id FROM step_intents JOIN operations ON operations.id = step_intents.op_id \
             WHERE operations.state NOT IN ('pending', 'approved', 'running') ORDER BY step_intents.op_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("looking for unsettled intents"))
    }

    /// Removes one settled intent.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn clear_intent(
        &self,
        op_id: i64,
        step_idx: i64,
        sub_step: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM step_intents WHERE op_id = $1 AND step_idx = $2 AND sub_step = $3",
        )
        .bind(op_id)
        .bind(step_idx)
        .bind(sub_step)
        .execute(&self.pool)
        .await
        .map_err(query_error("clearing an intent"))?;
        Ok(())
    }

    /// Removes every intent of an operation.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn clear_intents(&self, op_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM step_intents WHERE op_id = $1")
            .bind(op_id)
            .execute(&self.pool)
            .await
            .map_err(query_error("clearing intents"))?;
        Ok(())
    }
}
