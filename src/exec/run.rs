//! The runner: takes an approved operation to its end. It starts it (taking
//! the environment's lock, or waiting in the environment's queue when the
//! command says `on_busy = "queue"`), journals each step before it runs and
//! records each step's end — every write in one `events::Change` with its
//! audit entry, so when the audit trail cannot be written the operation
//! stops at the next step boundary — rolls back when it must, and records
//! the outcome. It runs only while this process holds the operation's
//! lease: a process that loses its leases abandons the operation at once,
//! leaving it to the process that takes it over. A panic inside an
//! operation ends it as failed and releases its lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::app::{App, panic_text};
use crate::audit::AuditEvent;
use crate::catalog::{CommandSpec, OnBusy, Step};
use crate::duration::format_elapsed;
use crate::events::{self, Change};
use crate::identity;
use crate::names::DECKHAND_ACTOR;
use crate::parse::{Action, parse_action};
use crate::policy::{self, OpState};
use crate::store::{LockOutcome, OperationRecord, StoreError};

use super::steps::{self, StepOutcome};
use super::{OperationInput, busy_message, held_message};

/// How often a queued operation looks at its environment again, besides
/// being woken when an operation of this process ends.
const QUEUE_POLL: Duration = Duration::from_millis(500);
/// The longest wait between attempts to record an outcome the store did
/// not take.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(30);

/// Runs an approved operation to its end. Does nothing when a task of this
/// process runs it already, or when it is not this process's to run.
pub async fn run_operation(app: Arc<App>, op_id: i64) {
    let operation = match app.store.operation(op_id).await {
        Ok(Some(operation)) => operation,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(op_id, error = %error, "cannot load operation to run");
            return;
        }
    };
    contain(&app, &operation, run_to_end(&app, &operation)).await;
}

/// Runs `work` as the task of `operation` in this process: marked as
/// running here (nothing else of this process runs it meanwhile), inside
/// the operation's span, and with a panic contained — the operation then
/// ends as failed ("internal error, see Deckhand's logs"), with what it
/// left in its environment settled and its lock released.
pub async fn contain(
    app: &Arc<App>,
    operation: &OperationRecord,
    work: impl std::future::Future<Output = ()>,
) {
    let op_id = operation.id;
    let Some(local) = app.claim_local(op_id) else {
        return;
    };
    let span = tracing::info_span!(
        "op",
        op_id,
        command = %operation.command,
        env = operation.env.as_deref().unwrap_or(""),
        user = %operation.requester,
        platform = %operation.platform
    );
    let run = std::panic::AssertUnwindSafe(work).catch_unwind();
    if let Err(panic) = tracing::Instrument::instrument(run, span.clone()).await {
        tracing::error!(parent: &span, error = %panic_text(&*panic), "the operation panicked");
        let why = format!("internal error, see Deckhand's logs for operation #{op_id}");
        let ending = end_abandoned(app, op_id, OpState::Failed, &why);
        tracing::Instrument::instrument(ending, span).await;
    }
    drop(local);
}

/// Ends an operation this process owns but no task of it runs any more (its
/// task panicked or was abandoned), or one it took over after its owner's
/// lease lapsed: settles the target to the old or the new version, marks
/// the operation `interrupted` in its message, and releases its lock.
/// Returns whether this call ended it.
pub async fn settle_orphan(app: &App, operation: &OperationRecord) -> bool {
    let steps = app.store.steps(operation.id).await.unwrap_or_default();
    let outcome = match steps
        .iter()
        .rev()
        .find(|step| step.state == "running")
        .or(steps.last())
    {
        Some(step) => format!(
            "Deckhand stopped during step {} ({}); check the environment, then request it again",
            step.idx + 1,
            step.title
        ),
        None => "Deckhand stopped before it started; request it again".to_string(),
    };
    end_abandoned(app, operation.id, OpState::Interrupted, &outcome).await
}

/// Settles what a running operation left behind and moves it to `state`.
async fn end_abandoned(app: &App, op_id: i64, state: OpState, why: &str) -> bool {
    let Ok(Some(operation)) = app.store.operation(op_id).await else {
        return false;
    };
    if operation.state.is_final() || operation.owner.as_deref() != Some(app.instance.as_str()) {
        return false;
    }
    let mut outcome = why.to_string();
    if operation.state == OpState::Running {
        let settled = super::settle_interrupted(app, &operation).await;
        if !settled.is_empty() {
            outcome.push_str(&format!("; {}", settled.join("; ")));
        }
    }
    let from = operation.state;
    let result = async {
        let mut change = Change::begin(app).await?;
        let Some(current) = change.lock(op_id).await? else {
            return Ok(false);
        };
        if current.state != from || current.owner.as_deref() != Some(app.instance.as_str()) {
            return Ok(false);
        }
        let now = change.now();
        change
            .tx()
            .set_state(op_id, from, state, now, Some(&outcome))
            .await?;
        if let Some(env) = &current.env {
            change.tx().release_lock(env, op_id).await?;
        }
        change
            .record_for(
                &current,
                DECKHAND_ACTOR,
                AuditEvent::Finished {
                    state,
                    summary: outcome.clone(),
                },
            )
            .await?;
        change.commit().await?;
        Ok::<_, StoreError>(true)
    }
    .await;
    match result {
        Ok(ended) => ended,
        Err(error) => {
            tracing::error!(op_id, error = %error, "cannot record the end of an abandoned operation; trying again later");
            false
        }
    }
}

/// How a run ended.
enum Ended {
    /// With this state and summary, to be recorded.
    Finished(OpState, String),
    /// Not ours any more (lease lost, taken over): leave it as it is.
    Abandoned,
}

async fn run_to_end(app: &Arc<App>, operation: &OperationRecord) {
    let op_id = operation.id;
    let action = match parse_action(&operation.command_line, &app.catalog, &app.config) {
        Ok(action) => action,
        Err(error) => {
            let reason = format!("the request is no longer valid: {error}");
            record_end(
                app,
                operation,
                None,
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
    let locked_env = env
        .filter(|_| spec.mutating)
        .map(|environment| environment.name.to_string());
    let on_busy = spec
        .policy_for(action.env.as_ref())
        .map(|rule| rule.on_busy)
        .unwrap_or_default();
    let gate = StartGate {
        spec,
        action: &action,
        env: locked_env.as_deref(),
        on_busy,
    };
    let Some(started) = start(app, operation, &gate).await else {
        return;
    };
    let input = OperationInput {
        action: &action,
        spec,
        env,
        requester: &started.requester,
    };
    match run_steps(app, &started, &input).await {
        Ended::Finished(state, summary) => {
            record_end(
                app,
                &started,
                locked_env.as_deref(),
                OpState::Running,
                state,
                &summary,
            )
            .await;
        }
        Ended::Abandoned => {
            tracing::warn!(
                op_id,
                "operation abandoned: this process no longer holds its lease"
            );
        }
    }
}

/// What one attempt to start came to.
enum Start {
    /// It runs now.
    Running(Box<OperationRecord>),
    /// Its environment is busy and it waits in the queue.
    Waiting,
    /// It ended before starting (busy, held) or is not ours to run.
    Over,
}

/// What starting an operation checks: its command, the environment whose
/// lock it takes, and what it does when that is busy.
struct StartGate<'a> {
    spec: &'a CommandSpec,
    action: &'a Action,
    env: Option<&'a str>,
    on_busy: OnBusy,
}

/// Moves the operation from approved to running, taking its environment's
/// lock; waits in the queue while the environment is busy, if the command
/// says so. Policy is checked again first: a requester who may no longer
/// request it, or approvals that no longer count, cancel it. `None` when it
/// did not start.
async fn start(
    app: &Arc<App>,
    operation: &OperationRecord,
    gate: &StartGate<'_>,
) -> Option<OperationRecord> {
    let mut backoff = Duration::from_millis(250);
    loop {
        if app.is_shutting_down() || !app.holds_leases() {
            return None;
        }
        let attempt = match standing(app, operation, gate).await {
            Ok(lapsed) => try_start(app, operation, gate, lapsed.as_deref()).await,
            Err(error) => Err(error),
        };
        match attempt {
            Ok(Start::Running(started)) => return Some(*started),
            Ok(Start::Over) => return None,
            Ok(Start::Waiting) => {
                let mut shutdown = app.shutdown_signal();
                tokio::select! {
                    () = app.freed.notified() => {}
                    () = tokio::time::sleep(QUEUE_POLL) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(error) => {
                // Fail closed: nothing starts unrecorded. The operation stays
                // approved and starts once the store answers again.
                tracing::error!(error = %error, "cannot start the operation; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECORD_RETRY_MAX);
            }
        }
    }
}

/// Whether the operation may still start as policy stands now: `Some`
/// reason to cancel it when its requester may no longer request it or its
/// approvals no longer suffice (roles from platform groups change).
///
/// # Errors
/// When the approvals cannot be read.
async fn standing(
    app: &App,
    operation: &OperationRecord,
    gate: &StartGate<'_>,
) -> Result<Option<String>, StoreError> {
    if !identity::has_personal_requester(operation) {
        return Ok(None);
    }
    let requester = identity::requester_now(app, operation).await;
    if policy::check_request(
        gate.spec,
        gate.action.env.as_ref(),
        requester.as_ref(),
        &app.config,
    )
    .is_err()
    {
        return Ok(Some(lapsed_requester(operation, gate)));
    }
    if operation.approvals_needed == 0 {
        return Ok(None);
    }
    let approvals = app.store.approvals(operation.id).await?;
    let lapsed = identity::lapsed_approvers(app, &approvals, &operation.approver_roles).await;
    let view = policy::ApprovalView {
        lapsed: &lapsed,
        ..operation.approval_view(&approvals)
    };
    if view.is_approved() {
        return Ok(None);
    }
    let names: Vec<String> = lapsed.iter().map(ToString::to_string).collect();
    Ok(Some(format!(
        "cancelled before it started: the approval of {} no longer counts (no longer holds an approver role), so it has {} of {} approvals; nothing was run — request it again",
        names.join(", "),
        view.count(),
        view.needed
    )))
}

/// Why an operation whose requester lost the role is cancelled.
fn lapsed_requester(operation: &OperationRecord, gate: &StartGate<'_>) -> String {
    let roles: Vec<String> = gate
        .spec
        .policy_for(gate.action.env.as_ref())
        .map(|rule| rule.request.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let place = gate
        .action
        .env
        .as_ref()
        .map(|env| format!(" in {env}"))
        .unwrap_or_default();
    format!(
        "cancelled before it started: {} no longer holds role {} needed to request /{}{place}; nothing was run",
        operation.requester,
        roles.join(" or "),
        operation.command
    )
}

async fn try_start(
    app: &App,
    operation: &OperationRecord,
    gate: &StartGate<'_>,
    cancel: Option<&str>,
) -> Result<Start, StoreError> {
    let (spec, env, on_busy) = (gate.spec, gate.env, gate.on_busy);
    let op_id = operation.id;
    let mut change = Change::begin(app).await?;
    let now = change.now();
    let Some(current) = change.lock(op_id).await? else {
        return Ok(Start::Over);
    };
    if current.state != OpState::Approved || current.owner.as_deref() != Some(app.instance.as_str())
    {
        return Ok(Start::Over);
    }
    if let Some(reason) = cancel {
        end_before_start(change, &current, OpState::Cancelled, reason).await?;
        return Ok(Start::Over);
    }
    if let Some(env) = env {
        let outcome = change
            .tx()
            .take_lock(env, op_id, &current.command, &current.requester, now)
            .await?;
        let busy = match outcome {
            LockOutcome::Taken => None,
            LockOutcome::Held(holder) | LockOutcome::Behind(holder) => Some(holder),
        };
        if let Some(holder) = busy {
            if on_busy == OnBusy::Queue {
                if current.queued_at.is_some() {
                    // Still waiting; nothing new to record.
                    return Ok(Start::Waiting);
                }
                change.tx().set_queued(op_id, now).await?;
                change
                    .record_for(
                        &current,
                        DECKHAND_ACTOR,
                        AuditEvent::Queued {
                            behind: holder.op_id,
                        },
                    )
                    .await?;
                change.commit().await?;
                return Ok(Start::Waiting);
            }
            end_before_start(change, &current, OpState::Failed, &busy_message(&holder)).await?;
            return Ok(Start::Over);
        }
        if !spec.allowed_during_hold
            && let Some(hold) = change.tx().hold(env, now).await?
        {
            change.tx().release_lock(env, op_id).await?;
            end_before_start(change, &current, OpState::Failed, &held_message(&hold)).await?;
            return Ok(Start::Over);
        }
    }
    change
        .tx()
        .set_state(op_id, OpState::Approved, OpState::Running, now, None)
        .await?;
    change
        .record_for(&current, &current.requester, AuditEvent::Started)
        .await?;
    change.commit().await?;
    let mut started = current;
    started.state = OpState::Running;
    Ok(Start::Running(Box::new(started)))
}

/// Ends an approved operation that cannot start, in the change that found
/// out: failed when busy (and not queueing) or held, cancelled when policy
/// no longer allows it.
async fn end_before_start(
    mut change: Change<'_>,
    operation: &OperationRecord,
    state: OpState,
    reason: &str,
) -> Result<(), StoreError> {
    let now = change.now();
    change
        .tx()
        .set_state(operation.id, OpState::Approved, state, now, Some(reason))
        .await?;
    change
        .record_for(
            operation,
            DECKHAND_ACTOR,
            AuditEvent::Finished {
                state,
                summary: reason.to_string(),
            },
        )
        .await?;
    change.commit().await
}

/// Runs every step; returns how it ended.
async fn run_steps(
    app: &Arc<App>,
    operation: &OperationRecord,
    input: &OperationInput<'_>,
) -> Ended {
    let started = Instant::now();
    let mut context = steps::RunContext::new(app, operation, input);
    for (step_idx, step) in input.spec.steps.iter().enumerate() {
        if app.is_shutting_down() {
            let stopped = format!(
                "Deckhand stopped before step {} ({})",
                step_idx + 1,
                step.title()
            );
            let (_, summary) = context.recover(stopped).await;
            return Ended::Finished(OpState::Interrupted, summary);
        }
        if !app.holds_leases() {
            return Ended::Abandoned;
        }
        let idx = i64::try_from(step_idx).unwrap_or(i64::MAX);
        match journal_start(app, operation, idx, step).await {
            Ok(true) => {}
            Ok(false) => return Ended::Abandoned,
            Err(error) => {
                let failure = format!(
                    "cannot journal step {} ({error}), so it did not run",
                    step_idx + 1
                );
                let (state, summary) = context.recover(failure).await;
                return Ended::Finished(state, summary);
            }
        }
        let step_started = Instant::now();
        let span = tracing::info_span!("step", idx = step_idx, kind = step.kind());
        let result = tokio::select! {
            result = tracing::Instrument::instrument(context.run(step), span) => result,
            () = app.leases_lost() => return Ended::Abandoned,
        };
        let elapsed = step_started.elapsed();
        match result {
            Ok(outcome) => {
                let event = AuditEvent::StepSucceeded {
                    idx: step_idx,
                    title: step.title(),
                    elapsed_ms: elapsed.as_millis(),
                };
                if let Err(error) = journal_end(app, operation, idx, "ok", &outcome, event).await {
                    let failure = format!(
                        "the audit trail cannot be written ({error}), so Deckhand stopped after step {} ({})",
                        step_idx + 1,
                        step.title()
                    );
                    let (_, summary) = context.recover(failure).await;
                    return Ended::Finished(OpState::Failed, summary);
                }
                if input.spec.mutating {
                    events::detail(app, operation, &step.title(), &outcome.output);
                }
            }
            Err(error) => {
                let message = error.to_string();
                let event = AuditEvent::StepFailed {
                    idx: step_idx,
                    title: step.title(),
                    error: message.clone(),
                };
                let outcome = StepOutcome::summary(message.clone());
                if let Err(journal_error) =
                    journal_end(app, operation, idx, "failed", &outcome, event).await
                {
                    tracing::error!(error = %journal_error, "cannot journal a failed step");
                }
                let failure = format!("{} failed: {message}", step.title());
                let (state, summary) = context.recover(failure).await;
                return Ended::Finished(state, summary);
            }
        }
    }
    let summary = context.succeed(format_elapsed(started.elapsed())).await;
    Ended::Finished(OpState::Succeeded, summary)
}

/// Journals a step before it runs; false when the operation is no longer
/// this process's running operation.
async fn journal_start(
    app: &App,
    operation: &OperationRecord,
    idx: i64,
    step: &Step,
) -> Result<bool, StoreError> {
    let mut change = Change::begin(app).await?;
    let now = change.now();
    let Some(current) = change.lock(operation.id).await? else {
        return Ok(false);
    };
    if current.state != OpState::Running || current.owner.as_deref() != Some(app.instance.as_str())
    {
        return Ok(false);
    }
    change
        .tx()
        .start_step(operation.id, idx, step.kind(), &step.title(), now)
        .await?;
    change.commit().await?;
    Ok(true)
}

/// Records a step's end with its audit entry.
async fn journal_end(
    app: &App,
    operation: &OperationRecord,
    idx: i64,
    state: &str,
    outcome: &StepOutcome,
    event: AuditEvent,
) -> Result<(), StoreError> {
    let mut change = Change::begin(app).await?;
    let now = change.now();
    change.lock(operation.id).await?;
    change
        .tx()
        .finish_step(
            operation.id,
            idx,
            state,
            &crate::secret::redact(&outcome.journal_text()),
            now,
        )
        .await?;
    change.record_for(operation, DECKHAND_ACTOR, event).await?;
    change.commit().await
}

/// Records how the operation ended and releases its environment's lock, in
/// one change. Until that is recorded the lock stays held (the audit trail
/// fails closed), so this retries with backoff, unless this process shuts
/// down or loses its lease: the operation is then settled by whoever takes
/// it over.
async fn record_end(
    app: &App,
    operation: &OperationRecord,
    env: Option<&str>,
    from: OpState,
    to: OpState,
    summary: &str,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match try_record_end(app, operation, env, from, to, summary).await {
            Ok(()) => return,
            Err(error) => {
                tracing::error!(error = %error, "cannot record the end of the operation; its environment stays locked until it is recorded");
                if !app.holds_leases() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECORD_RETRY_MAX);
            }
        }
    }
}

async fn try_record_end(
    app: &App,
    operation: &OperationRecord,
    env: Option<&str>,
    from: OpState,
    to: OpState,
    summary: &str,
) -> Result<(), StoreError> {
    let mut change = Change::begin(app).await?;
    let now = change.now();
    let Some(current) = change.lock(operation.id).await? else {
        return Ok(());
    };
    if current.state != from {
        return Ok(());
    }
    change
        .tx()
        .set_state(operation.id, from, to, now, Some(summary))
        .await?;
    if let Some(env) = env {
        change.tx().release_lock(env, operation.id).await?;
    }
    change
        .record_for(
            &current,
            DECKHAND_ACTOR,
            AuditEvent::Finished {
                state: to,
                summary: summary.to_string(),
            },
        )
        .await?;
    change.commit().await
}
