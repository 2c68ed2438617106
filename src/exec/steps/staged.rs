//! Running one mutating step of an operation one journaled stage at a time,
//! from outside the runner: the same stage machines the runner uses
//! (`recreate`, `run_once`, the rotations, `restore_database`,
//! `service_action`), started from the operation as stored. Each
//! [`StagedStep::advance`] journals and runs one stage; dropping the
//! `StagedStep` leaves the journal and the target exactly as that stage
//! left them, which is what a crash leaves for `exec::recovery`.

use std::time::Duration;

use crate::app::App;
use crate::catalog::Step;
use crate::exec::{ExecError, Plan};
use crate::parse::parse_action;
use crate::store::OperationRecord;

use super::Progress;
use super::database::RestoreStages;
use super::journal::Journal;
use super::one_off::OneOffStages;
use super::recreate::RecreateStages;
use super::rotate::Rotation;
use super::service::ServiceStages;

/// Default limit of a one-off container, as the runner's.
const RUN_ONCE_TIMEOUT: Duration = Duration::from_secs(300);

/// A step under way, stage by stage.
pub struct StagedStep<'a> {
    stages: Stages<'a>,
}

enum Stages<'a> {
    Recreate(Box<RecreateStages<'a>>),
    OneOff(OneOffStages<'a>),
    Rotation(Box<Rotation<'a>>),
    Restore(Box<RestoreStages<'a>>),
    Service(ServiceStages),
}

impl<'a> StagedStep<'a> {
    /// Step `step_idx` of `operation` (a running operation, as stored),
    /// ready to run its first stage; nothing is changed yet.
    ///
    /// # Errors
    /// The operation no longer parses, the step is not one that changes a
    /// target in stages, or what it needs cannot be found.
    pub async fn begin(
        app: &'a App,
        operation: &OperationRecord,
        step_idx: usize,
    ) -> Result<StagedStep<'a>, ExecError> {
        let action =
            parse_action(&operation.command_line, &app.catalog, &app.config).map_err(|error| {
                ExecError::Failed(format!("the request is no longer valid: {error}"))
            })?;
        let spec = app
            .catalog
            .get(action.command.as_str())
            .ok_or_else(|| ExecError::Failed(format!("no command /{}", action.command)))?;
        let step = spec.steps.get(step_idx).ok_or_else(|| {
            ExecError::Failed(format!("/{} has no step {}", spec.name, step_idx + 1))
        })?;
        let environment = action
            .env
            .as_ref()
            .and_then(|env| app.config.environment(env.as_str()))
            .ok_or_else(|| ExecError::Failed("this step needs an environment".to_string()))?;
        let host = app.hosts.get(environment.name.as_str()).await?;
        let journal = Journal::new(
            &app.store,
            operation.id,
            i64::try_from(step_idx).unwrap_or(i64::MAX),
        );
        let changes = Plan::from_json(&operation.plan).changes;
        let text = |name: &str| action.args.text(name).unwrap_or_default().to_string();
        let stages = match step {
            Step::Recreate {} => Stages::Recreate(Box::new(RecreateStages::new(
                environment,
                host,
                journal,
                changes,
            ))),
            Step::RunOnce {
                service,
                command,
                timeout,
                ..
            } => Stages::OneOff(OneOffStages::new(
                environment,
                host,
                journal,
                &changes,
                service,
                command,
                timeout.unwrap_or(RUN_ONCE_TIMEOUT),
            )),
            Step::Rotate {} => Stages::Rotation(Box::new(
                Rotation::begin(
                    environment,
                    host,
                    journal,
                    &text("secret"),
                    action.args.text("new-user").is_some(),
                )
                .await?,
            )),
            Step::RestoreDatabase { service } => Stages::Restore(Box::new(
                RestoreStages::begin(app, environment, journal, service, &text("backup")).await?,
            )),
            Step::ServiceAction {} => {
                let service_name = action
                    .args
                    .service("service")
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let service = super::deploy::service(environment, &service_name)?;
                let containers = super::deploy::containers_of(&host, environment, service).await?;
                Stages::Service(ServiceStages::new(
                    host,
                    journal,
                    &service_name,
                    &text("action"),
                    &containers,
                ))
            }
            other => {
                return Err(ExecError::Failed(format!(
                    "step {} ({}) does not change a target in stages",
                    step_idx + 1,
                    other.kind()
                )));
            }
        };
        Ok(StagedStep { stages })
    }

    /// Journals and runs the next stage; once the step is done, its summary.
    ///
    /// # Errors
    /// As the step itself: a failed stage, undone as far as the step undoes
    /// its own failures.
    pub async fn advance(&mut self) -> Result<Progress<String>, ExecError> {
        Ok(match &mut self.stages {
            Stages::Recreate(stages) => summary(stages.advance().await?),
            Stages::Rotation(stages) => summary(stages.advance().await?),
            Stages::Restore(stages) => summary(stages.advance().await?),
            Stages::OneOff(stages) => match stages.advance().await? {
                Progress::Stage(stage) => Progress::Stage(stage),
                Progress::Done(outcome) => {
                    Progress::Done(outcome.failure.unwrap_or(outcome.outcome.summary))
                }
            },
            Stages::Service(stages) => match stages.advance().await? {
                Progress::Stage(stage) => Progress::Stage(stage),
                Progress::Done(()) => Progress::Done("done".to_string()),
            },
        })
    }
}

fn summary(progress: Progress) -> Progress<String> {
    match progress {
        Progress::Stage(stage) => Progress::Stage(stage),
        Progress::Done(outcome) => Progress::Done(outcome.summary),
    }
}
