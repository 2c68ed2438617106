//! Step kinds: one function per `Step` variant to describe it in a plan and
//! one to run it, dispatched by a single `match` each. A `RunContext`
//! carries what one operation's steps share — the plan as resolved so far
//! and the containers replaced so far, which stay revertible until the
//! operation succeeds — and nothing long-lived.
//!
//! Steps that change a target (recreate, run_once, the rotations, restore,
//! service actions) run as journaled stages: before each change an intent
//! is written (`journal`), so `exec::recovery` can settle the step after a
//! crash at any stage. `staged` runs such a step one stage at a time.

mod cleanup;
pub(crate) mod database;
mod deploy;
mod diagnose;
mod help;
mod holds;
pub(crate) mod journal;
mod logs;
pub(crate) mod one_off;
mod recreate;
mod redis;
pub(crate) mod replace;
mod report;
mod rollback;
pub(crate) mod rotate;
pub(crate) mod rotate_db;
pub(crate) mod rotate_tls;
mod scram;
pub(crate) mod sealed;
pub(crate) mod service;
pub(crate) mod staged;

use std::sync::Arc;

use crate::app::App;
use crate::catalog::Step;
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;
use crate::policy::OpState;
use crate::store::OperationRecord;

use journal::Journal;
use replace::Replaced;

/// What one stage of a staged step did: a stage ran (named), or the step is
/// done with its outcome.
#[derive(Debug)]
pub enum Progress<T = StepOutcome> {
    /// A stage ran; more follow.
    Stage(String),
    /// The step ended.
    Done(T),
}

/// What a step reports: one summary line, and output lines (report rows,
/// the tail of a failed migration) shown in the message or its thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutcome {
    /// One line.
    pub summary: String,
    /// Further lines.
    pub output: Vec<String>,
}

impl StepOutcome {
    /// A summary without output.
    pub fn summary(summary: impl Into<String>) -> StepOutcome {
        StepOutcome {
            summary: summary.into(),
            output: Vec::new(),
        }
    }

    /// The text journaled for the step: the summary, then the output.
    pub fn journal_text(&self) -> String {
        let mut text = self.summary.clone();
        for line in &self.output {
            text.push('\n');
            text.push_str(line);
        }
        text
    }
}

/// What one operation's steps share while it runs.
pub struct RunContext<'a> {
    app: &'a Arc<App>,
    operation: &'a OperationRecord,
    input: &'a OperationInput<'a>,
    /// The plan, as stored with the operation and refined by resolve steps.
    plan: Plan,
    /// Containers replaced so far, revertible until the operation succeeds.
    replaced: Vec<Replaced>,
    /// The position of the step running now, for its journal.
    step_idx: i64,
}

impl<'a> RunContext<'a> {
    /// A context for an operation about to run its steps.
    pub fn new(
        app: &'a Arc<App>,
        operation: &'a OperationRecord,
        input: &'a OperationInput<'a>,
    ) -> RunContext<'a> {
        RunContext {
            app,
            operation,
            input,
            plan: Plan::from_json(&operation.plan),
            replaced: Vec::new(),
            step_idx: 0,
        }
    }

    /// The running step's journal.
    fn journal(&self) -> Journal {
        Journal::new(&self.app.store, self.operation.id, self.step_idx)
    }

    /// Runs one step.
    ///
    /// # Errors
    /// Why the step failed, fit for chat.
    pub async fn run(&mut self, step: &Step) -> Result<StepOutcome, ExecError> {
        // The runner passes the command's own steps, in order; their
        // position keys the journal.
        let position = self
            .input
            .spec
            .steps
            .iter()
            .position(|candidate| std::ptr::eq(candidate, step));
        self.step_idx = position
            .and_then(|idx| i64::try_from(idx).ok())
            .unwrap_or(self.step_idx);
        let (app, input, op_id) = (self.app, self.input, self.operation.id);
        match step {
            Step::ResolveImages { .. } | Step::ResolveRollback {} => self.resolve_images().await,
            Step::Pull {} => self.pull().await,
            Step::RunOnce {
                service,
                command,
                timeout,
                ..
            } => self.run_once(service, command, *timeout).await,
            Step::Recreate {} => self.recreate().await,
            Step::WaitHealthy { timeout } => self.wait_healthy(*timeout).await,
            Step::Smoke { checks } => self.smoke(checks).await,
            Step::RecordRelease {} => self.record_release().await,
            Step::HoldLock {} => holds::hold_after_rollback(app, self.operation, input).await,
            Step::BackupDatabase { service } => database::backup(app, input, op_id, service).await,
            Step::RestoreDatabase { service } => {
                database::restore(app, input, self.journal(), service).await
            }
            Step::CheckDatabase { service } => database::check(app, input, service).await,
            Step::ServiceAction {} => service::run(app, input, self.journal()).await,
            Step::HealthReport {} => report::health(app, input).await,
            Step::StatusReport {} => report::status(app, input).await,
            Step::Logs {} => logs::run(app, input).await,
            Step::Help {} => Ok(help::run(app, input)),
            Step::Lock {} => holds::lock(app, self.operation, input).await,
            Step::Unlock {} => holds::unlock(app, self.operation, input).await,
            Step::Diagnose {} => diagnose::run(app, self.operation, input).await,
            Step::PruneContainers {} => cleanup::prune_containers(app, input).await,
            Step::PruneImages {} => cleanup::prune_images(app, input).await,
            Step::FlushRedis { service } => redis::flush(app, input, service).await,
            Step::Rotate {} => self.rotate().await,
        }
    }

    /// After a failed step: restores what was replaced when the command
    /// asks for that, and says so; returns the final state and summary.
    pub async fn recover(&mut self, failure: String) -> (OpState, String) {
        if !self.has_replacements() {
            return (OpState::Failed, failure);
        }
        if !self.input.spec.rollback_on_failure {
            let kept = self.commit_replacements().await;
            let mut summary = format!("{failure}; the new containers were left running");
            for problem in kept {
                summary.push_str(&format!("; {problem}"));
            }
            return (OpState::Failed, summary);
        }
        match self.revert_replacements().await {
            Ok(restored) => (
                OpState::RolledBack,
                format!("{failure}; rolled back automatically: {restored}"),
            ),
            Err(error) => (
                OpState::Failed,
                format!(
                    "{failure}; the automatic rollback failed too: {error} — check the environment now"
                ),
            ),
        }
    }

    /// After every step succeeded: removes the previous containers kept for
    /// rollback, and sums up.
    pub async fn succeed(&mut self, elapsed: String) -> String {
        let problems = self.commit_replacements().await;
        let mut summary = match self.plan.changes.as_slice() {
            [] => format!("done in {elapsed}"),
            changes => format!(
                "{} in {elapsed}",
                changes
                    .iter()
                    .map(|change| format!("{} on {}", change.service, change.to_image))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        for problem in problems {
            summary.push_str(&format!("; {problem}"));
        }
        summary
    }
}

/// Adds what a step will do to the plan, without changing anything.
///
/// # Errors
/// When the plan cannot be made.
pub async fn describe(
    app: &App,
    input: &OperationInput<'_>,
    step: &Step,
    plan: &mut Plan,
) -> Result<(), ExecError> {
    match step {
        Step::ResolveImages { services } => {
            deploy::describe_resolve_images(app, input, services, plan).await?
        }
        Step::ResolveRollback {} => rollback::describe(app, input, plan).await?,
        Step::Pull {}
        | Step::RunOnce { .. }
        | Step::Recreate {}
        | Step::WaitHealthy { .. }
        | Step::Smoke { .. }
        | Step::RecordRelease {} => deploy::describe(step, input, plan),
        Step::BackupDatabase { service } => database::describe_backup(input, service, plan),
        Step::RestoreDatabase { service } => {
            database::describe_restore(app, input, service, plan).await?
        }
        Step::ServiceAction {} => service::describe(input, plan),
        Step::Rotate {} => rotate::describe(input, plan)?,
        Step::Lock {} => holds::describe_lock(input, plan),
        Step::Unlock {} => holds::describe_unlock(app, input, plan).await?,
        Step::HoldLock {} => holds::describe_hold_after_rollback(input, plan),
        Step::PruneContainers {} => cleanup::describe_containers(app, input, plan).await?,
        Step::PruneImages {} => cleanup::describe_images(app, input, plan).await?,
        Step::FlushRedis { service } => redis::describe_flush(app, input, service, plan).await?,
        other => plan.steps.push(other.title()),
    }
    Ok(())
}
