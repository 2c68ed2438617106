//! The `run_once` step (the migration's one-off container) as journaled
//! stages: before the container is created, an intent names the label it will
//! carry (a fresh token), so recovery can remove it if Deckhand dies while it
//! runs; the container is removed and the intent cleared when it ends.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Environment;
use crate::docker::{DockerHost, OneOff, RunOnce};
use crate::exec::ExecError;
use crate::plan::Change;
use crate::store::StepIntent;

use super::deploy::{containers_of, service};
use super::journal::{Journal, read_data};
use super::{Progress, StepOutcome};

/// The intent kind of a one-off container.
pub const KIND: &str = "run_once";

/// The label that ties a one-off container to its journal entry.
pub const LABEL: &str = "deckhand.one-off";

/// What the intent holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    service: String,
    token: String,
}

/// How a one-off command ended: its outcome, and why the step fails if it
/// exited non-zero.
#[derive(Debug)]
pub struct OneOffOutcome {
    /// Summary and its last lines (redacted).
    pub outcome: StepOutcome,
    /// Set when the command exited non-zero.
    pub failure: Option<String>,
}

/// A `run_once` step, stage by stage: start, then wait for the end.
pub struct OneOffStages<'a> {
    environment: &'a Environment,
    host: DockerHost,
    journal: Journal,
    service: String,
    image: Option<String>,
    command: Vec<String>,
    timeout: Duration,
    started: Option<(OneOff, String)>,
}

impl<'a> OneOffStages<'a> {
    /// The one-off run of `command` in a container of `service`, on the
    /// image `changes` plan for it (else the image it runs now).
    pub fn new(
        environment: &'a Environment,
        host: DockerHost,
        journal: Journal,
        changes: &[Change],
        service: &str,
        command: &[String],
        timeout: Duration,
    ) -> OneOffStages<'a> {
        OneOffStages {
            environment,
            host,
            journal,
            service: service.to_string(),
            image: changes
                .iter()
                .find(|change| change.service == service)
                .map(|change| change.to_image.clone()),
            command: command.to_vec(),
            timeout,
            started: None,
        }
    }

    /// Starts the labelled container (journaled first), or, once started,
    /// waits for it to exit and removes it.
    ///
    /// # Errors
    /// The store or Docker failed, or the command ran too long.
    pub async fn advance(&mut self) -> Result<Progress<OneOffOutcome>, ExecError> {
        let sub_step = format!("one-off {}", self.service);
        if let Some((one_off, image)) = self.started.take() {
            let output = one_off
                .finish(&self.host)
                .await
                .map_err(|error| ExecError::Failed(error.to_string()));
            self.journal.clear(&sub_step).await;
            let output = output?;
            let lines: Vec<String> = output
                .last_lines
                .iter()
                .map(|line| crate::secret::redact(line))
                .collect();
            let command = self.command.join(" ");
            let failure = (output.exit_code != 0).then(|| {
                format!(
                    "`{command}` exited {} in a one-off {} container ({image})",
                    output.exit_code, self.service
                )
            });
            return Ok(Progress::Done(OneOffOutcome {
                outcome: StepOutcome {
                    summary: format!("`{command}` exited 0 ({image})"),
                    output: lines,
                },
                failure,
            }));
        }
        let service = service(self.environment, &self.service)?;
        let containers = containers_of(&self.host, self.environment, service).await?;
        let like = &containers[0];
        let image = self
            .image
            .clone()
            .unwrap_or_else(|| like.image_reference.clone());
        let token = format!("op{}-{:016x}", self.journal.op_id(), rand::random::<u64>());
        self.journal
            .write(
                &sub_step,
                KIND,
                "run",
                &Record {
                    service: self.service.clone(),
                    token: token.clone(),
                },
                None,
            )
            .await?;
        let started = self
            .host
            .start_one_off(
                RunOnce {
                    image: image.clone(),
                    like,
                    cmd: self.command.clone(),
                    timeout: self.timeout,
                },
                &[(LABEL.to_string(), token)],
            )
            .await;
        let one_off = match started {
            Ok(one_off) => one_off,
            Err(error) => {
                self.journal.clear(&sub_step).await;
                return Err(ExecError::Failed(error.to_string()));
            }
        };
        self.started = Some((one_off, image));
        Ok(Progress::Stage(format!("one-off {} started", self.service)))
    }
}

/// Removes the one-off container of an interrupted `run_once`.
///
/// # Errors
/// An unreadable intent, or Docker failing.
pub async fn settle(host: &DockerHost, intent: &StepIntent) -> Result<Vec<String>, String> {
    let record: Record = read_data(intent)?;
    let removed = host
        .remove_labelled(LABEL, &record.token)
        .await
        .map_err(|error| {
            format!(
                "could not remove the one-off {} container: {error}",
                record.service
            )
        })?;
    Ok(removed
        .into_iter()
        .map(|name| format!("one-off container {name} removed"))
        .collect())
}
