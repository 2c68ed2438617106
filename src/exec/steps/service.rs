//! `/service start|stop|restart|status ENV SERVICE`: the lifecycle of any
//! declared service, such as the runbook's Web IDE and git web browser.

use crate::docker::ServiceSelector;
use std::time::Duration;

use crate::app::App;
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;

use super::StepOutcome;
use super::deploy::{containers_of, service_arg};

/// Plan line for a service action.
pub fn describe(input: &OperationInput<'_>, plan: &mut Plan) {
    let action = input.action.args.text("action").unwrap_or_default();
    let service = input
        .action
        .args
        .service("service")
        .map(ToString::to_string)
        .unwrap_or_default();
    plan.steps
        .push(format!("{action} every container of {service}"));
}

/// Runs the action on every container of the service.
///
/// # Errors
/// An unreachable host, no containers, or a Docker failure.
pub async fn run(app: &App, input: &OperationInput<'_>) -> Result<StepOutcome, ExecError> {
    let (environment, service) = service_arg(input)?;
    let service_name = &service.name;
    let action = input.action.args.text("action").unwrap_or("status");
    let host = app.hosts.get(environment.name.as_str()).await?;
    let containers = containers_of(&host, environment, service).await?;
    for container in &containers {
        let result = match action {
            "start" => host.start(&container.id).await,
            "stop" => host.stop(&container.id).await,
            "restart" => host.restart(&container.id).await,
            _ => Ok(()),
        };
        result
            .map_err(|error| ExecError::Failed(format!("{action} {}: {error}", container.name)))?;
    }
    if action == "start" || action == "restart" {
        for container in &containers {
            let outcome = host
                .wait_healthy(&container.id, Duration::from_secs(60))
                .await
                .map_err(|error| ExecError::Failed(error.to_string()))?;
            if !outcome.is_ready() {
                return Err(ExecError::Failed(format!(
                    "{} did not come up healthy: {outcome:?}",
                    container.name
                )));
            }
        }
    }
    let mut output = Vec::new();
    for container in host
        .find_containers(&ServiceSelector::from(&service.selector))
        .await
        .unwrap_or_default()
    {
        output.push(format!(
            "{}: {} (health {}, restarts {}, image {})",
            container.name,
            container.state.status,
            container.health.status,
            container.state.restart_count,
            container.image_reference
        ));
    }
    let verb = match action {
        "start" => "started",
        "stop" => "stopped",
        "restart" => "restarted",
        _ => "inspected",
    };
    Ok(StepOutcome {
        summary: format!("{verb} {service_name} ({} container(s))", containers.len()),
        output,
    })
}
