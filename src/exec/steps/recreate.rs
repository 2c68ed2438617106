//! The `recreate` step as journaled stages: each planned service's
//! containers, one replica at a time, each replacement stage (stop, rename,
//! create, connect, start) journaled before it runs. [`RecreateStages`] runs
//! one stage per [`RecreateStages::advance`], so the step can be carried out,
//! or abandoned as a crash would, at any stage.

use std::collections::VecDeque;

use crate::config::Environment;
use crate::docker::{ContainerInfo, DockerHost};
use crate::exec::ExecError;
use crate::plan::Change;

use super::deploy::{WAIT_HEALTHY_TIMEOUT, containers_of, service, wait_container_healthy};
use super::journal::Journal;
use super::replace::{Replaced, StagedReplacement};
use super::{Progress, StepOutcome};

/// The replacements of a `recreate` step, stage by stage.
pub struct RecreateStages<'a> {
    environment: &'a Environment,
    host: DockerHost,
    journal: Journal,
    changes: VecDeque<Change>,
    /// The change whose containers are being replaced.
    current_change: Option<Change>,
    /// Its containers not replaced yet.
    pending: VecDeque<ContainerInfo>,
    /// The replacement under way.
    current: Option<StagedReplacement>,
    replaced: Vec<Replaced>,
    parts: Vec<String>,
}

impl<'a> RecreateStages<'a> {
    /// The replacements `changes` call for, none started yet.
    pub fn new(
        environment: &'a Environment,
        host: DockerHost,
        journal: Journal,
        changes: Vec<Change>,
    ) -> RecreateStages<'a> {
        RecreateStages {
            environment,
            host,
            journal,
            changes: changes.into(),
            current_change: None,
            pending: VecDeque::new(),
            current: None,
            replaced: Vec::new(),
            parts: Vec::new(),
        }
    }

    /// Runs the next stage of the next replacement (journaled first); after
    /// the last one, the step's outcome.
    ///
    /// # Errors
    /// A failed stage (its container is restored by then) or a replica that
    /// is not healthy before the next one goes; what was replaced before
    /// stays revertible through [`RecreateStages::take_replaced`].
    pub async fn advance(&mut self) -> Result<Progress, ExecError> {
        loop {
            if let Some(current) = self.current.as_mut() {
                let label = format!("{}: {}", current.name(), current.stage().as_str());
                current.advance(&self.host).await?;
                if current.is_started()
                    && let Some(started) = self.current.take()
                {
                    let replaced = started.finish();
                    let name = replaced.recreated.name.clone();
                    self.replaced.push(replaced);
                    if !self.pending.is_empty() {
                        wait_container_healthy(&self.host, &name, WAIT_HEALTHY_TIMEOUT).await?;
                    }
                }
                return Ok(Progress::Stage(label));
            }
            if let (Some(container), Some(change)) =
                (self.pending.pop_front(), self.current_change.as_ref())
            {
                self.current = Some(
                    StagedReplacement::prepare(
                        &self.journal,
                        &self.host,
                        &change.service,
                        &container,
                        &change.to_image,
                        &[],
                    )
                    .await?,
                );
                continue;
            }
            if let Some(change) = self.current_change.take() {
                self.parts.push(format!(
                    "{}: {} container(s) on {}",
                    change.service, change.replicas, change.to_image
                ));
            }
            let Some(mut change) = self.changes.pop_front() else {
                return Ok(Progress::Done(StepOutcome::summary(self.parts.join("; "))));
            };
            let service = service(self.environment, &change.service)?;
            let containers = containers_of(&self.host, self.environment, service).await?;
            change.replicas = containers.len();
            self.pending = containers.into();
            self.current_change = Some(change);
        }
    }

    /// The containers replaced so far, for the operation to commit or revert.
    pub fn take_replaced(&mut self) -> Vec<Replaced> {
        std::mem::take(&mut self.replaced)
    }
}
