//! `/service start|stop|restart|status ENV SERVICE`: the lifecycle of any
//! declared service, such as the runbook's Web IDE and git web browser.
//!
//! Each container's action is journaled before it runs, a restart as a stop
//! and then a start, so recovery settles an interrupted action to a stated
//! state: a start or restart ends with the container running (a restart
//! interrupted after its stop starts it again), a stop with it stopped.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::docker::{DockerHost, ServiceSelector};
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;
use crate::store::StepIntent;

use super::StepOutcome;
use super::deploy::{containers_of, service_arg};
use super::journal::{Journal, read_data};

/// The intent kind of a service action.
pub const KIND: &str = "service_action";

/// What a service action's intent records, per container.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    service: String,
    action: String,
    container: String,
    name: String,
}

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
pub async fn run(
    app: &App,
    input: &OperationInput<'_>,
    journal: Journal,
) -> Result<StepOutcome, ExecError> {
    let (environment, service) = service_arg(input)?;
    let service_name = &service.name;
    let action = input.action.args.text("action").unwrap_or("status");
    let host = app.hosts.get(environment.name.as_str()).await?;
    let containers = containers_of(&host, environment, service).await?;
    let mut stages = ServiceStages::new(
        host.clone(),
        journal,
        service_name.as_str(),
        action,
        &containers,
    );
    while let super::Progress::Stage(_) = stages.advance().await? {}
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

/// A service action, one container and one Docker call at a time, each
/// journaled first.
pub struct ServiceStages {
    host: DockerHost,
    journal: Journal,
    service: String,
    action: String,
    containers: Vec<(String, String)>,
    next: usize,
    stopped: bool,
}

impl ServiceStages {
    /// `action` (`start`, `stop` or `restart`; anything else does nothing)
    /// on `containers` of `service`.
    pub fn new(
        host: DockerHost,
        journal: Journal,
        service: &str,
        action: &str,
        containers: &[crate::docker::ContainerInfo],
    ) -> ServiceStages {
        let acts = matches!(action, "start" | "stop" | "restart");
        ServiceStages {
            host,
            journal,
            service: service.to_string(),
            action: action.to_string(),
            containers: containers
                .iter()
                .filter(|_| acts)
                .map(|container| (container.id.clone(), container.name.clone()))
                .collect(),
            next: 0,
            stopped: false,
        }
    }

    /// Runs the next stop or start (journaled first).
    ///
    /// # Errors
    /// The store or Docker failed.
    pub async fn advance(&mut self) -> Result<super::Progress<()>, ExecError> {
        let Some((id, name)) = self.containers.get(self.next).cloned() else {
            return Ok(super::Progress::Done(()));
        };
        let action = self.action.clone();
        let sub_step = format!("{action} {name}");
        let record = Record {
            service: self.service.clone(),
            action: action.clone(),
            container: id.clone(),
            name: name.clone(),
        };
        let failed = |error: crate::docker::DockerError| {
            ExecError::Failed(format!("{action} {name}: {error}"))
        };
        if action != "start" && !self.stopped {
            self.journal
                .write(&sub_step, KIND, "stop", &record, None)
                .await?;
            self.host.stop(&id).await.map_err(failed)?;
            self.stopped = true;
            if action == "stop" {
                self.journal.clear(&sub_step).await;
                self.next += 1;
                self.stopped = false;
            }
            return Ok(super::Progress::Stage(format!("{name} stopped")));
        }
        self.journal
            .write(&sub_step, KIND, "start", &record, None)
            .await?;
        self.host.start(&id).await.map_err(failed)?;
        self.journal.clear(&sub_step).await;
        self.next += 1;
        self.stopped = false;
        Ok(super::Progress::Stage(format!("{name} started")))
    }
}

/// Settles an interrupted service action on one container: a stop is
/// finished; a start is done; a restart interrupted at its stop is finished
/// (Docker may still be stopping the container) and the container started.
///
/// # Errors
/// An unreadable intent, or Docker failing.
pub(crate) async fn settle(host: &DockerHost, intent: &StepIntent) -> Result<String, String> {
    let record: Record = read_data(intent)?;
    let failed =
        |error: crate::docker::DockerError| format!("could not settle {}: {error}", record.name);
    if intent.stage == "stop" {
        host.stop(&record.container).await.map_err(failed)?;
    }
    if record.action == "stop" {
        return Ok(format!(
            "{} stopped (the interrupted /service stop was finished)",
            record.name
        ));
    }
    host.start(&record.container).await.map_err(failed)?;
    Ok(format!(
        "{} running again (the interrupted /service {} was finished)",
        record.name, record.action
    ))
}
