//! Journaled replacement of one container: before each stage of the Docker
//! layer's [`Replacement`] (stop, rename, create, connect, start) and before
//! the commit or revert that ends it, the stage and what recovery needs are
//! journaled. Recovery ([`settle`]) then settles a replacement interrupted at
//! any stage, so the service runs either the old or the new container.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::docker::{
    ContainerInfo, DockerHost, LeftoverOutcome, Recreated, ReplaceStage, Replacement,
    ReplacementState, SettleChoice,
};
use crate::exec::ExecError;
use crate::store::StepIntent;

use super::journal::{Journal, read_data};

/// The intent kind of a replacement.
pub const KIND: &str = "replace";

/// How long recovery gives a new container to become healthy before the old one
/// comes back.
pub const SETTLE_HEALTH_LIMIT: Duration = Duration::from_secs(60);

/// What a replacement's intent holds: everything but the new container's
/// configuration (whose environment may hold secrets), which recovery never
/// needs: it keeps a started new container or brings the old one back.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    service: String,
    name: String,
    old_id: String,
    old_name: String,
    old_was_running: bool,
    stop_grace_secs: i64,
    new_image: String,
    new_id: Option<String>,
}

impl Record {
    fn of(service: &str, state: &ReplacementState) -> Record {
        Record {
            service: service.to_string(),
            name: state.name.clone(),
            old_id: state.old_id.clone(),
            old_name: state.old_name.clone(),
            old_was_running: state.old_was_running,
            stop_grace_secs: state.stop_grace_secs,
            new_image: state.new_image.clone(),
            new_id: state.new_id.clone(),
        }
    }

    fn state(self, stage: ReplaceStage) -> ReplacementState {
        ReplacementState {
            name: self.name,
            old_id: self.old_id,
            old_name: self.old_name,
            old_was_running: self.old_was_running,
            stop_grace_secs: self.stop_grace_secs,
            new_image: self.new_image,
            new_id: self.new_id,
            stage,
        }
    }
}

/// The sub-step name of a container's replacement.
pub fn sub_step_of(container: &str) -> String {
    format!("replace {container}")
}

/// A replacement under way, journaled stage by stage.
#[derive(Debug)]
pub struct StagedReplacement {
    journal: Journal,
    service: String,
    sub_step: String,
    inner: Box<Replacement>,
}

impl StagedReplacement {
    /// Works out the replacement of `container` (a container of `service`)
    /// by one from `new_image` with `env_overrides`; changes nothing.
    ///
    /// # Errors
    /// Why it cannot be replaced (missing image, an unfinished earlier
    /// replacement, an unreachable host); nothing was changed.
    pub async fn prepare(
        journal: &Journal,
        host: &DockerHost,
        service: &str,
        container: &ContainerInfo,
        new_image: &str,
        env_overrides: &[(String, String)],
    ) -> Result<StagedReplacement, ExecError> {
        let inner = host
            .prepare_replacement(container, new_image, env_overrides)
            .await
            .map_err(|error| ExecError::Failed(format!("replacing {}: {error}", container.name)))?;
        Ok(StagedReplacement {
            journal: journal.clone(),
            service: service.to_string(),
            sub_step: sub_step_of(&container.name),
            inner: Box::new(inner),
        })
    }

    /// Whether every stage ran: the new container was started.
    pub fn is_started(&self) -> bool {
        self.inner.is_started()
    }

    /// The stage [`StagedReplacement::advance`] runs next.
    pub fn stage(&self) -> ReplaceStage {
        self.inner.state().stage
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.inner.state().name
    }

    /// Journals the next stage, then runs it. A failed stage restores the old
    /// container before the error is returned (see [`Replacement::advance`]).
    ///
    /// # Errors
    /// The store or the stage failed.
    pub async fn advance(&mut self, host: &DockerHost) -> Result<(), ExecError> {
        let state = self.inner.state().clone();
        self.journal
            .write(
                &self.sub_step,
                KIND,
                state.stage.as_str(),
                &Record::of(&self.service, &state),
                None,
            )
            .await?;
        match self.inner.advance(host).await {
            Ok(()) => {
                if self.inner.is_started() {
                    let state = self.inner.state();
                    self.journal
                        .write(
                            &self.sub_step,
                            KIND,
                            ReplaceStage::Started.as_str(),
                            &Record::of(&self.service, state),
                            None,
                        )
                        .await?;
                }
                Ok(())
            }
            Err(error) => {
                // A failed stage restored the old container; only a failed
                // restore leaves something for recovery to settle.
                if matches!(error, crate::docker::DockerError::RecreateFailed { .. }) {
                    self.journal.clear(&self.sub_step).await;
                }
                Err(ExecError::Failed(format!(
                    "replacing {}: {error}",
                    self.inner.state().name
                )))
            }
        }
    }

    /// The started replacement, revertible until committed.
    pub fn finish(self) -> Replaced {
        Replaced {
            service: self.service,
            sub_step: self.sub_step,
            journal: self.journal,
            recreated: self.inner.finish(),
        }
    }
}

/// A container replaced by an operation, revertible until committed.
#[derive(Debug, Clone)]
pub struct Replaced {
    /// The service.
    pub service: String,
    /// How to commit or revert it.
    pub recreated: Recreated,
    sub_step: String,
    journal: Journal,
}

impl Replaced {
    /// Keeps the new container: journals the commit, removes the old one,
    /// clears the intent.
    ///
    /// # Errors
    /// The store or Docker failed; the new container runs either way.
    pub async fn commit(&self, host: &DockerHost) -> Result<(), String> {
        self.journal_stage(ReplaceStage::Commit)
            .await
            .map_err(|error| error.to_string())?;
        self.recreated
            .commit(host)
            .await
            .map_err(|error| error.to_string())?;
        self.journal.clear(&self.sub_step).await;
        Ok(())
    }

    /// Brings the old container back: journals the revert, reverts, clears
    /// the intent.
    ///
    /// # Errors
    /// The store or Docker failed.
    pub async fn revert(&self, host: &DockerHost) -> Result<(), String> {
        self.journal_stage(ReplaceStage::Revert)
            .await
            .map_err(|error| error.to_string())?;
        self.recreated
            .revert(host)
            .await
            .map_err(|error| error.to_string())?;
        self.journal.clear(&self.sub_step).await;
        Ok(())
    }

    async fn journal_stage(&self, stage: ReplaceStage) -> Result<(), ExecError> {
        self.journal
            .write(
                &self.sub_step,
                KIND,
                stage.as_str(),
                &Record::of(&self.service, &self.recreated.state(stage)),
                None,
            )
            .await
    }
}

/// The stage a replacement intent was at.
pub fn stage_of(intent: &StepIntent) -> Option<ReplaceStage> {
    ReplaceStage::from_name(&intent.stage)
}

/// Settles one interrupted replacement: `choice` decides, except that an
/// interrupted commit is finished and an interrupted revert completed.
///
/// # Errors
/// An unreadable intent, or Docker failing.
pub async fn settle(
    host: &DockerHost,
    intent: &StepIntent,
    choice: SettleChoice,
) -> Result<LeftoverOutcome, String> {
    let record: Record = read_data(intent)?;
    let stage = stage_of(intent).unwrap_or(ReplaceStage::Stop);
    let choice = match stage {
        ReplaceStage::Commit => SettleChoice::KeepNew,
        ReplaceStage::Revert => SettleChoice::RestoreOld,
        _ => choice,
    };
    let name = record.name.clone();
    host.settle_replacement(&record.state(stage), choice)
        .await
        .map_err(|error| format!("could not settle {name}: {error}"))
}

/// Whether a replacement intent's new container was started and is healthy
/// now (within `limit`), for group decisions such as a rotation's.
pub async fn started_and_healthy(host: &DockerHost, intent: &StepIntent, limit: Duration) -> bool {
    let Ok(record) = read_data::<Record>(intent) else {
        return false;
    };
    let started = matches!(
        stage_of(intent),
        Some(ReplaceStage::Started | ReplaceStage::Commit)
    );
    let Some(new_id) = record.new_id.filter(|_| started) else {
        return false;
    };
    matches!(host.wait_healthy(&new_id, limit).await, Ok(outcome) if outcome.is_ready())
}
