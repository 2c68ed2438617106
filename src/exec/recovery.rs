//! Settling an interrupted operation from its intent journal: every change a
//! step had begun (a container replacement, a one-off container, a rotation,
//! a restore, a service action) is finished or undone, so the target runs
//! the old or the new version, never neither, and nothing is left behind.
//!
//! [`settle_interrupted`] is the one entry point; whoever takes over an
//! interrupted operation calls it once (or twice: settling a settled
//! operation changes nothing). It touches only its operation's intents and
//! what they name. [`StagedStep`] runs a step one journaled stage at a time,
//! as the runner does.

use std::collections::BTreeMap;

use crate::app::App;
use crate::config::Environment;
use crate::docker::{DockerHost, ServiceSelector, SettleChoice};
use crate::exec::Plan;
use crate::store::{OperationRecord, StepIntent};

use super::steps::replace::SETTLE_HEALTH_LIMIT;
use super::steps::{database, one_off, replace, rotate, rotate_db, rotate_tls, service};

pub use super::steps::Progress;
pub use super::steps::sealed::{STATE_KEY_VARIABLE, StateKey, StateKeyError};
pub use super::steps::staged::StagedStep;

/// Settles what an interrupted operation left in its environment, from its
/// intent journal; returns one line per thing settled, e.g. "backend-1
/// restored to the previous version". Settled intents are removed, so a
/// second call finds nothing to do; intents that cannot be settled yet (the
/// host unreachable, the state key missing) stay and are reported.
pub async fn settle_interrupted(app: &App, operation: &OperationRecord) -> Vec<String> {
    let Some(environment) = operation
        .env
        .as_deref()
        .and_then(|env| app.config.environment(env))
    else {
        return Vec::new();
    };
    let intents = match app.store.intents(operation.id).await {
        Ok(intents) => intents,
        Err(error) => {
            return vec![format!(
                "could not read the journal of #{}: {error}",
                operation.id
            )];
        }
    };
    if intents.is_empty() {
        return settle_unjournaled(app, environment, &Plan::from_json(&operation.plan)).await;
    }
    let host = match app.hosts.get(environment.name.as_str()).await {
        Ok(host) => host,
        Err(error) => return vec![format!("could not settle the interrupted steps: {error}")],
    };
    let mut by_step: BTreeMap<i64, Vec<StepIntent>> = BTreeMap::new();
    for intent in intents {
        by_step.entry(intent.step_idx).or_default().push(intent);
    }
    let mut lines = Vec::new();
    for (step_idx, step_intents) in by_step {
        let (step_lines, settled) = settle_step(&host, environment, &step_intents).await;
        lines.extend(step_lines);
        for intent in settled {
            if let Err(error) = app
                .store
                .clear_intent(operation.id, step_idx, &intent.sub_step)
                .await
            {
                tracing::warn!(op_id = operation.id, error = %error, "cannot clear a settled intent");
            }
        }
    }
    lines
}

/// Settles one step's intents; returns the lines and the intents settled.
async fn settle_step<'i>(
    host: &DockerHost,
    environment: &Environment,
    intents: &'i [StepIntent],
) -> (Vec<String>, Vec<&'i StepIntent>) {
    let rotation = intents.iter().find(|intent| {
        intent.sub_step == rotate::ROTATION_SUB_STEP
            && matches!(intent.kind.as_str(), rotate::JWT_KIND | rotate_db::KIND)
    });
    let replacements: Vec<&StepIntent> = intents
        .iter()
        .filter(|intent| intent.kind == replace::KIND)
        .collect();
    if let Some(rotation) = rotation {
        let (lines, settled) = if rotation.kind == rotate::JWT_KIND {
            (
                rotate::settle_jwt(host, rotation, &replacements).await,
                true,
            )
        } else {
            rotate_db::settle(host, environment, rotation, &replacements).await
        };
        let done = if settled {
            intents.iter().collect()
        } else {
            Vec::new()
        };
        return (lines, done);
    }
    let mut lines = Vec::new();
    let mut settled = Vec::new();
    for intent in intents {
        let result = match intent.kind.as_str() {
            replace::KIND => replace::settle(
                host,
                intent,
                SettleChoice::KeepNewIfHealthy(SETTLE_HEALTH_LIMIT),
            )
            .await
            .map(|outcome| vec![outcome.to_string()]),
            one_off::KIND => one_off::settle(host, intent).await,
            rotate_tls::KIND => rotate_tls::settle(host, intent)
                .await
                .map(|line| vec![line]),
            database::RESTORE_KIND => database::settle_restore(host, environment, intent)
                .await
                .map(|line| vec![line]),
            service::KIND => service::settle(host, intent).await.map(|line| vec![line]),
            other => Err(format!(
                "unknown journal entry \"{}\" ({other}) left as it is",
                intent.sub_step
            )),
        };
        match result {
            Ok(settled_lines) => {
                lines.extend(settled_lines);
                settled.push(intent);
            }
            Err(error) => lines.push(error),
        }
    }
    (lines, settled)
}

/// An operation with no journal (run by a Deckhand that journaled no
/// stages): the planned services' `.deckhand-old` containers are settled,
/// a healthy new container staying.
async fn settle_unjournaled(app: &App, environment: &Environment, plan: &Plan) -> Vec<String> {
    if plan.changes.is_empty() {
        return Vec::new();
    }
    let host = match app.hosts.get(environment.name.as_str()).await {
        Ok(host) => host,
        Err(error) => {
            return vec![format!(
                "could not check for unfinished replacements: {error}"
            )];
        }
    };
    let mut lines = Vec::new();
    for change in &plan.changes {
        let Some(service) = environment.services.get(change.service.as_str()) else {
            continue;
        };
        let leftovers = match host
            .find_leftovers(&ServiceSelector::from(&service.selector))
            .await
        {
            Ok(leftovers) => leftovers,
            Err(error) => {
                lines.push(format!("could not check {}: {error}", service.name));
                continue;
            }
        };
        for leftover in leftovers {
            match host.settle_leftover(&leftover, SETTLE_HEALTH_LIMIT).await {
                Ok(outcome) => lines.push(outcome.to_string()),
                Err(error) => lines.push(format!("could not settle {}: {error}", leftover.name)),
            }
        }
    }
    lines
}
