//! Step kinds: one function per `Step` variant to describe it in a plan and
//! one to run it, dispatched by a single `match` each. A `RunContext`
//! carries what one operation's steps share (the plan as resolved so far,
//! what was replaced, for automatic rollback) and nothing long-lived.

mod cleanup;
mod diagnose;
mod help;
mod holds;
mod redis;

use std::sync::Arc;

use crate::app::App;
use crate::catalog::Step;
use crate::chat::Outbound;
use crate::exec::{ExecError, OperationInput, Plan};
use crate::policy::OpState;
use crate::store::OperationRecord;

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
        }
    }

    /// The title of a step as shown in progress messages.
    pub fn step_title(&self, step: &Step) -> String {
        step.title()
    }

    /// Runs one step.
    ///
    /// # Errors
    /// Why the step failed, fit for chat.
    pub async fn run(&mut self, step_idx: usize, step: &Step) -> Result<StepOutcome, ExecError> {
        let _ = step_idx;
        match step {
            Step::Help {} => Ok(help::run(self.app, self.input)),
            Step::Lock {} => holds::lock(self.app, self.operation, self.input).await,
            Step::Unlock {} => holds::unlock(self.app, self.operation, self.input).await,
            Step::HoldLock {} => {
                holds::hold_after_rollback(self.app, self.operation, self.input).await
            }
            Step::Diagnose {} => diagnose::run(self.app, self.operation, self.input).await,
            Step::PruneContainers {} => cleanup::prune_containers(self.app, self.input).await,
            Step::PruneImages {} => cleanup::prune_images(self.app, self.input).await,
            Step::FlushRedis { service } => redis::flush(self.app, self.input, service).await,
            other => Err(ExecError::Failed(format!(
                "step {} needs the Docker executor, which this build does not have yet",
                other.kind()
            ))),
        }
    }

    /// Posts a step's output under the operation's message.
    pub fn post_details(&self, title: &str, output: &[String]) {
        if output.is_empty() || !self.input.spec.mutating {
            return;
        }
        let text = format!("{title}:\n{}", output.join("\n"));
        self.app.outbox.send(Outbound::Detail {
            op_id: self.operation.id,
            platform: self.operation.platform,
            channel: self.operation.channel.clone(),
            text,
        });
    }

    /// After a failed step: the final state and summary.
    pub async fn recover(&mut self, failure: String) -> (OpState, String) {
        (OpState::Failed, failure)
    }

    /// The summary of a run whose steps all succeeded.
    pub fn success_summary(&self, elapsed: String) -> String {
        let _ = &self.plan;
        format!("done in {elapsed}")
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
