//! Holds on an environment: a person's `/lock` and `/unlock`, and the hold a
//! rollback leaves so the next deploy cannot silently undo it.

use crate::app::App;
use crate::audit::AuditEvent;
use crate::duration::format_duration;
use crate::events;
use crate::exec::{ExecError, OperationInput, held_message};
use crate::plan::Plan;
use crate::store::{Hold, HoldKind, OperationRecord};

use super::StepOutcome;

fn env_name(input: &OperationInput<'_>) -> Result<String, ExecError> {
    super::deploy::environment(input).map(|environment| environment.name.to_string())
}

/// Plan line for `/lock`.
pub fn describe_lock(input: &OperationInput<'_>, plan: &mut Plan) {
    let env = input
        .env
        .map(|environment| environment.name.to_string())
        .unwrap_or_default();
    let reason = input.action.args.text("reason").unwrap_or_default();
    let until = input
        .action
        .args
        .duration("for")
        .map(|duration| format!(" for {}", format_duration(duration)))
        .unwrap_or_else(|| " until /unlock".to_string());
    plan.steps.push(format!("hold {env}: \"{reason}\"{until}"));
}

/// Places a person's hold.
///
/// # Errors
/// When the environment is held already or the store fails.
pub async fn lock(
    app: &App,
    operation: &OperationRecord,
    input: &OperationInput<'_>,
) -> Result<StepOutcome, ExecError> {
    let env = env_name(input)?;
    let now = app.now();
    let reason = input
        .action
        .args
        .text("reason")
        .unwrap_or_default()
        .to_string();
    let expires_at = input
        .action
        .args
        .duration("for")
        .and_then(|duration| chrono::Duration::from_std(duration).ok())
        .map(|duration| now + duration);
    let hold = Hold {
        env: env.clone(),
        kind: HoldKind::Person,
        holder: input.requester.to_string(),
        reason: reason.clone(),
        op_id: Some(operation.id),
        created_at: now,
        expires_at,
    };
    if let Some(existing) = app.store.place_hold(&hold, now).await? {
        return Err(ExecError::Failed(format!(
            "already held: {}",
            held_message(&existing)
        )));
    }
    events::record(
        app,
        &events::context_of(operation, input.requester),
        AuditEvent::Held {
            reason: reason.clone(),
        },
    )
    .await?;
    let until = expires_at
        .map(|at| format!(" until {} UTC", at.format("%a %H:%M")))
        .unwrap_or_else(|| " until /unlock".to_string());
    Ok(StepOutcome::summary(format!(
        "{env} is locked{until}: \"{reason}\""
    )))
}

/// Plan line for `/unlock`.
///
/// # Errors
/// When the store fails.
pub async fn describe_unlock(
    app: &App,
    input: &OperationInput<'_>,
    plan: &mut Plan,
) -> Result<(), ExecError> {
    let env = env_name(input)?;
    match app.store.hold(&env, app.now()).await? {
        Some(hold) => plan
            .steps
            .push(format!("release the hold: {}", held_message(&hold))),
        None => plan
            .steps
            .push(format!("{env} is not held; nothing to release")),
    }
    Ok(())
}

/// Releases the hold.
///
/// # Errors
/// When nothing is held or the store fails.
pub async fn unlock(
    app: &App,
    operation: &OperationRecord,
    input: &OperationInput<'_>,
) -> Result<StepOutcome, ExecError> {
    let env = env_name(input)?;
    match app.store.release_hold(&env, app.now()).await? {
        Some(hold) => {
            let reason = format!("hold by {}: \"{}\"", hold.holder, hold.reason);
            events::record(
                app,
                &events::context_of(operation, input.requester),
                AuditEvent::Released {
                    reason: reason.clone(),
                },
            )
            .await?;
            Ok(StepOutcome::summary(format!(
                "{env} is unlocked (released {reason})"
            )))
        }
        None => Err(ExecError::Failed(format!(
            "{env} is not locked; nothing to release"
        ))),
    }
}

/// Plan line for the hold a rollback leaves.
pub fn describe_hold_after_rollback(input: &OperationInput<'_>, plan: &mut Plan) {
    if let Some(environment) = input.env
        && environment.lock_after_rollback
    {
        plan.notes.push(format!(
            "leaves {} locked against deploys afterwards; /unlock {} when ready",
            environment.name, environment.name
        ));
    }
}

/// Leaves the environment held after a rollback, when it asks for that.
///
/// # Errors
/// When the store fails.
pub async fn hold_after_rollback(
    app: &App,
    operation: &OperationRecord,
    input: &OperationInput<'_>,
) -> Result<StepOutcome, ExecError> {
    let Some(environment) = input
        .env
        .filter(|environment| environment.lock_after_rollback)
    else {
        return Ok(StepOutcome::summary(
            "no hold: the environment does not ask for one",
        ));
    };
    let env = environment.name.to_string();
    let now = app.now();
    let reason = format!(
        "rolled back by #{}; deploys wait until /unlock {env}",
        operation.id
    );
    let hold = Hold {
        env: env.clone(),
        kind: HoldKind::Rollback,
        holder: input.requester.to_string(),
        reason: reason.clone(),
        op_id: Some(operation.id),
        created_at: now,
        expires_at: None,
    };
    match app.store.place_hold(&hold, now).await? {
        None => {
            events::record(
                app,
                &events::context_of(operation, input.requester),
                AuditEvent::Held { reason },
            )
            .await?;
            Ok(StepOutcome::summary(format!(
                "{env} stays locked against deploys until /unlock {env}"
            )))
        }
        Some(existing) => Ok(StepOutcome::summary(format!(
            "{env} was already held ({}); the hold stays",
            existing.reason
        ))),
    }
}
