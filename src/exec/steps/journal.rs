//! Where a step journals its intents: one handle per operation step, which
//! writes an intent (the stage about to run, with what recovery needs)
//! before each change to a target, and clears it once that change is
//! settled. The rows live in the store's `step_intents`; their meaning is
//! here and in `exec::recovery`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exec::ExecError;
use crate::store::{StepIntent, Store};

/// One operation step's journal.
#[derive(Debug, Clone)]
pub struct Journal {
    store: Store,
    op_id: i64,
    step_idx: i64,
}

impl Journal {
    /// The journal of step `step_idx` of operation `op_id`.
    pub fn new(store: &Store, op_id: i64, step_idx: i64) -> Journal {
        Journal {
            store: store.clone(),
            op_id,
            step_idx,
        }
    }

    /// The operation.
    pub fn op_id(&self) -> i64 {
        self.op_id
    }

    /// Writes an intent before its stage runs. `data` must hold no secret;
    /// secrets go sealed into `sealed`.
    ///
    /// # Errors
    /// When the store cannot be reached: the stage must then not run.
    pub async fn write<T: Serialize>(
        &self,
        sub_step: &str,
        kind: &str,
        stage: &str,
        data: &T,
        sealed: Option<String>,
    ) -> Result<(), ExecError> {
        let data = serde_json::to_string(data)
            .map_err(|error| ExecError::Failed(format!("cannot journal {sub_step}: {error}")))?;
        self.store
            .journal_intent(&StepIntent {
                op_id: self.op_id,
                step_idx: self.step_idx,
                sub_step: sub_step.to_string(),
                kind: kind.to_string(),
                stage: stage.to_string(),
                data,
                sealed,
                updated_at: chrono::Utc::now(),
            })
            .await?;
        Ok(())
    }

    /// Removes a settled intent. A failure is logged: the intent is then
    /// settled again by recovery, which is harmless.
    pub async fn clear(&self, sub_step: &str) {
        if let Err(error) = self
            .store
            .clear_intent(self.op_id, self.step_idx, sub_step)
            .await
        {
            tracing::warn!(op_id = self.op_id, sub_step, error = %error, "cannot clear a settled intent");
        }
    }

    /// What a sealed secret of `sub_step` is bound to, so it opens only for
    /// the journal entry it was written for.
    pub fn seal_context(&self, sub_step: &str) -> String {
        seal_context(self.op_id, self.step_idx, sub_step)
    }
}

/// The binding of a sealed secret to its journal entry.
pub fn seal_context(op_id: i64, step_idx: i64, sub_step: &str) -> String {
    format!("deckhand intent v1/{op_id}/{step_idx}/{sub_step}")
}

/// Reads an intent's data back.
///
/// # Errors
/// When it is not what `kind` wrote.
pub fn read_data<T: DeserializeOwned>(intent: &StepIntent) -> Result<T, String> {
    serde_json::from_str(&intent.data)
        .map_err(|error| format!("unreadable journal entry \"{}\": {error}", intent.sub_step))
}
