//! Running operations: the environment gate (one mutating operation per
//! environment, holds), planning (what would change, for `--dry-run` and
//! approval requests), and the runner that journals each step before it
//! runs, reports progress, and rolls back by itself when a deploy fails
//! after replacing something. Step kinds live in `steps`.

pub mod hosts;
pub mod plan;
pub mod recovery;
mod steps;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::audit::AuditEvent;
use crate::catalog::CommandSpec;
use crate::config::Environment;
use crate::duration::format_elapsed;
use crate::flow;
use crate::parse::{Action, parse_action};
use crate::policy::OpState;
use crate::store::{Hold, HoldKind, OperationRecord, StoreError};

pub use plan::{Change, Plan};
pub use recovery::settle_interrupted;

/// Why an operation (or its planning) failed. Every message is fit for
/// chat: it names what failed and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The Docker host could not be reached.
    #[error("{env}: Docker host {endpoint} unreachable ({reason}) — nothing was changed")]
    HostUnreachable {
        /// The environment.
        env: String,
        /// The host's address.
        endpoint: String,
        /// Why, in a few words.
        reason: String,
    },
    /// The store failed; mutating work fails closed.
    #[error(
        "the store is unreachable, so nothing was changed (mutating commands fail closed): {0}"
    )]
    Store(#[from] StoreError),
    /// A step failed for a reason people can act on.
    #[error("{0}")]
    Failed(String),
}

/// A refusal at the environment gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateRefusal {
    /// Another mutating operation runs.
    Busy(String),
    /// The environment is held.
    Held(String),
    /// The store cannot be reached; refuse rather than risk two runs.
    StoreDown(String),
}

impl GateRefusal {
    /// The message for the requester.
    pub fn message(&self) -> &str {
        match self {
            GateRefusal::Busy(text) | GateRefusal::Held(text) | GateRefusal::StoreDown(text) => {
                text
            }
        }
    }
}

/// Checks that a mutating command may run in `env` now: nothing else
/// running there and no hold it must respect.
///
/// # Errors
/// A refusal saying who holds what since when, or that the lock store is
/// unreachable.
pub async fn check_gate(
    app: &App,
    spec: &CommandSpec,
    env: &str,
    now: DateTime<Utc>,
) -> Result<(), GateRefusal> {
    let store_down = |error: StoreError| {
        GateRefusal::StoreDown(format!(
            "cannot check {env}'s lock because the store is unreachable; mutating commands are refused until it is back ({error})"
        ))
    };
    if let Some(holder) = app.store.lock_holder(env).await.map_err(store_down)? {
        return Err(GateRefusal::Busy(busy_message(&holder)));
    }
    if !spec.allowed_during_hold
        && let Some(hold) = app.store.hold(env, now).await.map_err(store_down)?
    {
        return Err(GateRefusal::Held(held_message(&hold)));
    }
    Ok(())
}

/// `busy: #42 deploy by alice running since 10:31 UTC`.
pub fn busy_message(holder: &crate::store::LockHolder) -> String {
    format!(
        "busy: #{} {} by {} running since {} UTC",
        holder.op_id,
        holder.command,
        holder.holder,
        holder.acquired_at.format("%H:%M")
    )
}

/// `production is locked by alice since 09:12 UTC: "release freeze" …`.
pub fn held_message(hold: &Hold) -> String {
    let until = hold
        .expires_at
        .map(|at| format!(" until {} UTC", at.format("%a %H:%M")))
        .unwrap_or_default();
    let what = match hold.kind {
        HoldKind::Person => format!("locked by {}", hold.holder),
        HoldKind::Rollback => format!(
            "locked after rollback #{} by {}",
            hold.op_id.unwrap_or_default(),
            hold.holder
        ),
    };
    format!(
        "{} is {what} since {} UTC{until}: \"{}\"; /unlock {} to release it",
        hold.env,
        hold.created_at.format("%H:%M"),
        hold.reason,
        hold.env
    )
}

/// What planning and running need besides the app.
#[derive(Debug)]
pub struct OperationInput<'a> {
    /// The parsed request.
    pub action: &'a Action,
    /// Its command.
    pub spec: &'a CommandSpec,
    /// Its environment, if any.
    pub env: Option<&'a Environment>,
    /// Who asked.
    pub requester: &'a str,
}

/// Works out what an action would do, without changing anything.
///
/// # Errors
/// When the plan cannot be made: an unreachable host, no release to roll
/// back to, an unknown image.
pub async fn plan(app: &App, input: &OperationInput<'_>) -> Result<Plan, ExecError> {
    let mut plan = Plan {
        warning: input.spec.warning.clone(),
        ..Plan::default()
    };
    for step in &input.spec.steps {
        steps::describe(app, input, step, &mut plan).await?;
    }
    Ok(plan)
}

/// Runs an approved operation to its end: takes the environment lock,
/// runs each step (journaled first), publishes progress, rolls back when
/// it must, releases the lock, and records the outcome.
pub async fn run_operation(app: Arc<App>, op_id: i64) {
    let operation = match app.store.operation(op_id).await {
        Ok(Some(operation)) => operation,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(op_id, error = %error, "cannot load operation to run");
            return;
        }
    };
    let span = tracing::info_span!(
        "op",
        op_id,
        command = %operation.command,
        env = operation.env.as_deref().unwrap_or(""),
        user = %operation.requester,
        platform = %operation.platform
    );
    tracing::Instrument::instrument(run_instrumented(app, operation), span).await;
}

async fn run_instrumented(app: Arc<App>, operation: OperationRecord) {
    let op_id = operation.id;
    let action = match parse_action(&operation.command_line, &app.catalog, &app.config) {
        Ok(action) => action,
        Err(error) => {
            let reason = format!("the request is no longer valid: {error}");
            finish(
                &app,
                &operation,
                OpState::Approved,
                OpState::Failed,
                &reason,
            )
            .await;
            return;
        }
    };
    let Some(spec) = app.catalog.get(action.command.as_str()) else {
        return;
    };
    let env = action
        .env
        .as_ref()
        .and_then(|env| app.config.environment(env.as_str()));
    let env_name = env.map(|environment| environment.name.to_string());
    if spec.mutating
        && let Some(env_name) = &env_name
        && let Err(reason) = take_lock(&app, &operation, spec, env_name).await
    {
        finish(
            &app,
            &operation,
            OpState::Approved,
            OpState::Failed,
            &reason,
        )
        .await;
        return;
    }
    let now = app.now();
    match app
        .store
        .transition(op_id, OpState::Approved, OpState::Running, now, None)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            release_lock(&app, spec, env_name.as_deref(), op_id).await;
            return;
        }
        Err(error) => {
            release_lock(&app, spec, env_name.as_deref(), op_id).await;
            tracing::error!(error = %error, "cannot start operation");
            return;
        }
    }
    flow::audit_operation(&app, &operation, &operation.requester, AuditEvent::Started).await;
    if !spec.mutating {
        flow::publish_operation(&app, op_id).await;
    }
    let input = OperationInput {
        action: &action,
        spec,
        env,
        requester: &operation.requester,
    };
    let (state, summary) = run_steps(&app, &operation, &input).await;
    release_lock(&app, spec, env_name.as_deref(), op_id).await;
    finish(&app, &operation, OpState::Running, state, &summary).await;
}

async fn take_lock(
    app: &App,
    operation: &OperationRecord,
    spec: &CommandSpec,
    env: &str,
) -> Result<(), String> {
    let now = app.now();
    match app
        .store
        .try_lock(
            env,
            operation.id,
            &operation.command,
            &operation.requester,
            now,
        )
        .await
    {
        Ok(None) => {}
        Ok(Some(holder)) => return Err(busy_message(&holder)),
        Err(error) => {
            return Err(format!(
                "cannot take {env}'s lock because the store is unreachable, so nothing was run ({error})"
            ));
        }
    }
    if !spec.allowed_during_hold {
        match app.store.hold(env, now).await {
            Ok(None) => {}
            Ok(Some(hold)) => {
                let _ = app.store.unlock(env, operation.id).await;
                return Err(held_message(&hold));
            }
            Err(error) => {
                let _ = app.store.unlock(env, operation.id).await;
                return Err(format!(
                    "cannot check {env}'s hold because the store is unreachable, so nothing was run ({error})"
                ));
            }
        }
    }
    Ok(())
}

async fn release_lock(app: &App, spec: &CommandSpec, env: Option<&str>, op_id: i64) {
    if let (true, Some(env)) = (spec.mutating, env)
        && let Err(error) = app.store.unlock(env, op_id).await
    {
        tracing::error!(error = %error, env, "cannot release environment lock; it is released at the next start");
    }
}

/// Moves the operation to its final state, audits and publishes it.
async fn finish(app: &App, operation: &OperationRecord, from: OpState, to: OpState, summary: &str) {
    let now = app.now();
    match app
        .store
        .transition(operation.id, from, to, now, Some(summary))
        .await
    {
        Ok(true) => {
            flow::audit_operation(
                app,
                operation,
                "deckhand",
                AuditEvent::Finished {
                    state: to,
                    summary: summary.to_string(),
                },
            )
            .await;
        }
        Ok(false) => {}
        Err(error) => {
            tracing::error!(op_id = operation.id, error = %error, "cannot record outcome")
        }
    }
    flow::publish_operation(app, operation.id).await;
}

/// Runs every step; returns the final state and a one-line summary.
async fn run_steps(
    app: &Arc<App>,
    operation: &OperationRecord,
    input: &OperationInput<'_>,
) -> (OpState, String) {
    let started = Instant::now();
    let mut context = steps::RunContext::new(app, operation, input);
    for (step_idx, step) in input.spec.steps.iter().enumerate() {
        if app.is_shutting_down() {
            let summary = format!(
                "Deckhand stopped before step {} ({})",
                step_idx + 1,
                step.title()
            );
            return (OpState::Interrupted, summary);
        }
        let idx = i64::try_from(step_idx).unwrap_or(i64::MAX);
        let title = step.title();
        if let Err(error) = app
            .store
            .start_step(operation.id, idx, step.kind(), &title, app.now())
            .await
        {
            return (
                OpState::Failed,
                format!("cannot journal step {}: {error}", step_idx + 1),
            );
        }
        let reports_progress = input.spec.mutating;
        if reports_progress {
            flow::publish_operation(app, operation.id).await;
        }
        let step_started = Instant::now();
        let span = tracing::info_span!("step", idx = step_idx, kind = step.kind());
        let result = tracing::Instrument::instrument(context.run(step), span).await;
        let elapsed = step_started.elapsed();
        match result {
            Ok(outcome) => {
                let detail = outcome.journal_text();
                let _ = app
                    .store
                    .finish_step(operation.id, idx, "ok", &detail, app.now())
                    .await;
                flow::audit_operation(
                    app,
                    operation,
                    "deckhand",
                    AuditEvent::StepSucceeded {
                        idx: step_idx,
                        title: title.clone(),
                        elapsed_ms: elapsed.as_millis(),
                    },
                )
                .await;
                context.post_details(&title, &outcome.output);
                if reports_progress {
                    flow::publish_operation(app, operation.id).await;
                }
            }
            Err(error) => {
                let message = error.to_string();
                let _ = app
                    .store
                    .finish_step(operation.id, idx, "failed", &message, app.now())
                    .await;
                flow::audit_operation(
                    app,
                    operation,
                    "deckhand",
                    AuditEvent::StepFailed {
                        idx: step_idx,
                        title: title.clone(),
                        error: message.clone(),
                    },
                )
                .await;
                let failure = format!("{title} failed: {message}");
                return context.recover(failure).await;
            }
        }
    }
    let summary = context.succeed(format_elapsed(started.elapsed())).await;
    (OpState::Succeeded, summary)
}
