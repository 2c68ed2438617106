//! Settling what an interrupted process left on a host: a replacement stopped at any of
//! its stages (see [`super::recreate`]), and labelled containers that must not outlive
//! the work that made them (one-off containers). Recovery decides, from its journal, which
//! way a replacement goes; this module carries that out against what Docker shows now, and
//! every function here may run twice without harm.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::OLD_CONTAINER_SUFFIX;
use super::discovery::ContainerInfo;
use super::error::DockerError;
use super::host::DockerHost;
use super::recreate::{DEFAULT_STOP_GRACE_SECS, ReplaceStage, ReplacementState};

/// Which way to settle an interrupted replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleChoice {
    /// Keep the new container if it runs and becomes healthy within the limit, otherwise
    /// bring the old one back.
    KeepNewIfHealthy(Duration),
    /// Keep the new container (started if need be): the change was already decided.
    KeepNew,
    /// Bring the old container back, whatever the new one does.
    RestoreOld,
}

/// What recovery did with a replacement an interrupted run left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftoverOutcome {
    /// The new container runs (healthy when that was asked): it stays, the old one is
    /// removed.
    KeptNew {
        /// The container's name.
        name: String,
    },
    /// The new container was missing, not started or not healthy: the old one is back.
    RestoredOld {
        /// The container's name.
        name: String,
    },
    /// Neither container exists any more; nothing could be done.
    Gone {
        /// The container's name.
        name: String,
    },
}

impl LeftoverOutcome {
    /// Whether the new container stayed.
    pub fn kept_new(&self) -> bool {
        matches!(self, LeftoverOutcome::KeptNew { .. })
    }
}

impl std::fmt::Display for LeftoverOutcome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeftoverOutcome::KeptNew { name } => {
                write!(formatter, "{name} kept on the new version")
            }
            LeftoverOutcome::RestoredOld { name } => {
                write!(formatter, "{name} restored to the previous version")
            }
            LeftoverOutcome::Gone { name } => write!(
                formatter,
                "{name}: neither the previous nor the new container exists any more"
            ),
        }
    }
}

impl DockerHost {
    /// Settles a replacement that stopped at `state.stage`, so the service runs either the
    /// new container or the old one, never neither:
    ///
    /// - the old container is gone (the commit removed it): the new one stays and runs;
    /// - [`SettleChoice::KeepNew`], or a new container that was started and becomes
    ///   healthy under [`SettleChoice::KeepNewIfHealthy`]: the new one stays, the old one is
    ///   removed;
    /// - otherwise the new container (if any) is removed, the old one gets its name back and
    ///   runs again if it ran. When the stop was the interrupted stage, Docker may still be
    ///   stopping the old container (a stop outlives the client that sent it), so the stop
    ///   is completed first and the container started afterwards.
    ///
    /// Running it again on a settled replacement changes nothing.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn settle_replacement(
        &self,
        state: &ReplacementState,
        choice: SettleChoice,
    ) -> Result<LeftoverOutcome, DockerError> {
        let name = state.name.clone();
        let old = self.inspect_if_exists(&state.old_id).await?;
        let new = self.new_container_of(state).await?;
        let Some(old) = old else {
            return match new {
                Some(new) => {
                    if !new.state.running {
                        self.start(&new.id).await?;
                    }
                    Ok(LeftoverOutcome::KeptNew { name })
                }
                None => Ok(LeftoverOutcome::Gone { name }),
            };
        };
        let keep = match (&new, choice) {
            (None, _) | (Some(_), SettleChoice::RestoreOld) => false,
            (Some(_), SettleChoice::KeepNew) => true,
            (Some(new), SettleChoice::KeepNewIfHealthy(limit)) => {
                // A container that was created but never started was not part of the
                // service yet; only a started one gets its chance.
                let was_started = new.state.running || new.state.started_at.is_some();
                was_started && self.wait_healthy(&new.id, limit).await?.is_ready()
            }
        };
        if let (true, Some(new)) = (keep, &new) {
            if !new.state.running {
                self.start(&new.id).await?;
            }
            self.remove(&old.id).await?;
            tracing::info!(host = %self.name(), service = %name, "interrupted replacement kept");
            return Ok(LeftoverOutcome::KeptNew { name });
        }
        if let Some(new) = &new {
            self.remove(&new.id).await?;
        }
        if old.name != name {
            self.rename(&old.id, &name).await?;
        }
        if state.old_was_running {
            if old.state.running && state.stage == ReplaceStage::Stop {
                self.stop_with_grace(&old.id, state.stop_grace_secs).await?;
            }
            self.start(&old.id).await?;
        }
        tracing::info!(host = %self.name(), service = %name, "interrupted replacement reverted");
        Ok(LeftoverOutcome::RestoredOld { name })
    }

    /// Settles a `<name>.deckhand-old` container found without a journal (left by a
    /// Deckhand that journaled no stages): a new container that becomes healthy within
    /// `limit` stays, otherwise the old one comes back.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn settle_leftover(
        &self,
        leftover: &ContainerInfo,
        limit: Duration,
    ) -> Result<LeftoverOutcome, DockerError> {
        let name = leftover
            .name
            .strip_suffix(OLD_CONTAINER_SUFFIX)
            .unwrap_or(&leftover.name)
            .to_string();
        let state = ReplacementState {
            old_name: leftover.name.clone(),
            name,
            old_id: leftover.id.clone(),
            old_was_running: true,
            stop_grace_secs: DEFAULT_STOP_GRACE_SECS,
            new_image: String::new(),
            new_id: None,
            stage: ReplaceStage::Started,
        };
        self.settle_replacement(&state, SettleChoice::KeepNewIfHealthy(limit))
            .await
    }

    /// Removes every container, running or not, that carries the label `key=value`;
    /// returns the names removed. For containers that must not outlive the work that
    /// made them, such as one-off containers of an interrupted operation.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn remove_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .call(
                format!("listing containers labelled {key}={value}"),
                self.client().list_containers(Some(options)),
            )
            .await?;
        let mut removed = Vec::new();
        for summary in summaries {
            let Some(id) = summary.id else { continue };
            self.remove(&id).await?;
            let name = summary
                .names
                .and_then(|names| names.into_iter().next())
                .map(|name| name.trim_start_matches('/').to_string())
                .unwrap_or(id);
            removed.push(name);
        }
        Ok(removed)
    }

    /// The new container of a replacement: by its id once journaled, else the container
    /// now carrying the name if it is not the old one.
    async fn new_container_of(
        &self,
        state: &ReplacementState,
    ) -> Result<Option<ContainerInfo>, DockerError> {
        if let Some(new_id) = &state.new_id
            && let Some(found) = self.inspect_if_exists(new_id).await?
        {
            return Ok(Some(found));
        }
        Ok(self
            .inspect_if_exists(&state.name)
            .await?
            .filter(|found| found.id != state.old_id))
    }
}
