//! `/diagnose ENV [SYMPTOM]` and the report a PagerDuty incident gets: finds the
//! environment's containers, runs the checks for the symptom (all of them without one)
//! in parallel, and reports one line per check, failures first, in the operation's
//! message; the evidence goes under it (a thread on Slack).

use std::sync::Arc;

use crate::app::App;
use crate::chat::Outbound;
use crate::diagnose::{self, Check, Subject, Symptom};
use crate::exec::{ExecError, OperationInput};
use crate::store::OperationRecord;

use super::StepOutcome;

/// Runs the diagnostic checks and reports them.
///
/// # Errors
/// When the environment's Docker host cannot be reached; failing checks are findings,
/// not errors.
pub async fn run(
    app: &Arc<App>,
    operation: &OperationRecord,
    input: &OperationInput<'_>,
) -> Result<StepOutcome, ExecError> {
    let environment = super::deploy::environment(input)?;
    let env = environment.name.as_str();
    let checks: &[Check] = match input.action.args.text("symptom") {
        Some(name) => Symptom::from_name(name)
            .map(Symptom::checks)
            .ok_or_else(|| ExecError::Failed(format!("unknown symptom \"{name}\"")))?,
        None => &Check::ALL,
    };
    let host = app.hosts.get(env).await?;
    // The incident's start, when this report answers one, dates "soon after a deploy".
    let incident_started = match app.store.incident_of_operation(operation.id).await {
        Ok(incident) => incident.map(|incident| incident.created_at),
        Err(error) => {
            tracing::warn!(op_id = operation.id, error = %error, "cannot read the incident of a diagnosis");
            None
        }
    };
    let services = diagnose::discover(&host, environment).await;
    let subject = Subject {
        host,
        environment,
        store: &app.store,
        now: app.now(),
        incident_started,
        services,
    };
    let report = diagnose::run(&subject, checks).await;
    tracing::info!(
        env,
        failing = report.count(diagnose::Status::Fail),
        warnings = report.count(diagnose::Status::Warn),
        elapsed_ms = report.elapsed.as_millis() as u64,
        "diagnosis done"
    );
    app.outbox.send(Outbound::Detail {
        op_id: operation.id,
        platform: operation.platform,
        channel: operation.channel.clone(),
        text: report.evidence_text(),
    });
    Ok(StepOutcome {
        summary: report.headline(),
        output: report.lines(),
    })
}
