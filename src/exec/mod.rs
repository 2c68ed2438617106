//! Running operations: the environment gate (one mutating operation per
//! environment, holds), planning (what would change, for `--dry-run` and
//! approval requests), and the runner (`run`) that journals each step
//! before it runs, reports progress, and rolls back by itself when a deploy
//! fails after replacing something. Step kinds live in `steps`. What
//! happens is written through `events`; this module never calls the flow
//! or renders messages.

pub mod hosts;
pub mod recovery;
mod run;
mod steps;

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::catalog::{CommandSpec, OnBusy};
use crate::config::Environment;
use crate::parse::Action;
use crate::plan::Plan;
use crate::store::{Hold, HoldKind, StoreError};

pub use recovery::settle_interrupted;
pub use run::{contain, run_operation, settle_orphan};

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
    on_busy: OnBusy,
    now: DateTime<Utc>,
) -> Result<(), GateRefusal> {
    let store_down = |error: StoreError| {
        GateRefusal::StoreDown(format!(
            "cannot check {env}'s lock because the store is unreachable; mutating commands are refused until it is back ({error})"
        ))
    };
    if on_busy == OnBusy::Refuse
        && let Some(holder) = app.store.lock_holder(env).await.map_err(store_down)?
    {
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
