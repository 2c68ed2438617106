//! The runbook's Staging Deployment as steps: resolve the ref to images,
//! pull what is missing, run the migration in a one-off container, replace
//! each service's containers one at a time keeping everything else, wait
//! until healthy, smoke-check, record the release. Replacements stay
//! revertible until the operation succeeds, so a failure after the first
//! replacement restores the previous containers.

use std::time::Duration;

use crate::catalog::SmokeCheck;
use crate::config::{Environment, Service};
use crate::docker::{ContainerInfo, DockerHost, HealthOutcome, RegistryAuth, ServiceSelector};
use crate::duration::format_elapsed;
use crate::exec::{ExecError, OperationInput};
use crate::plan::{Change, Plan};
use crate::probe;
use crate::store::NewRelease;

use super::one_off::OneOffStages;
use super::recreate::RecreateStages;
use super::{Progress, RunContext, StepOutcome};

/// Default limit of a one-off container.
const RUN_ONCE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default limit of waiting until healthy.
pub(super) const WAIT_HEALTHY_TIMEOUT: Duration = Duration::from_secs(120);
/// Limit of each HTTP probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment of an operation; steps that reach here need one.
pub fn environment<'a>(input: &OperationInput<'a>) -> Result<&'a Environment, ExecError> {
    input
        .env
        .ok_or_else(|| ExecError::Failed("this step needs an environment".to_string()))
}

/// A service of the environment; catalog validation guarantees it exists.
pub fn service<'a>(environment: &'a Environment, name: &str) -> Result<&'a Service, ExecError> {
    environment.services.get(name).ok_or_else(|| {
        ExecError::Failed(format!(
            "environment \"{}\" has no service \"{name}\"",
            environment.name
        ))
    })
}

/// The `service` argument of a request, resolved in its environment.
pub fn service_arg<'a>(
    input: &OperationInput<'a>,
) -> Result<(&'a Environment, &'a Service), ExecError> {
    let environment = environment(input)?;
    let name = input
        .action
        .args
        .service("service")
        .ok_or_else(|| ExecError::Failed("name a service".to_string()))?;
    Ok((environment, service(environment, name.as_str())?))
}

/// A service's containers, or an error saying none were found.
pub async fn containers_of(
    host: &DockerHost,
    environment: &Environment,
    service: &Service,
) -> Result<Vec<ContainerInfo>, ExecError> {
    let selector = ServiceSelector::from(&service.selector);
    let containers = host
        .find_containers(&selector)
        .await
        .map_err(|error| ExecError::Failed(format!("finding {}: {error}", service.name)))?;
    if containers.is_empty() {
        return Err(ExecError::Failed(format!(
            "{}: no containers of {} ({selector}) on host {}",
            environment.name, service.name, environment.host.name
        )));
    }
    Ok(containers)
}

/// The image a service's template gives for a ref or tag.
pub fn image_for(service: &Service, tag: &str) -> Result<String, ExecError> {
    service
        .image_template
        .as_ref()
        .map(|template| template.replace("{ref}", tag))
        .ok_or_else(|| {
            ExecError::Failed(format!(
                "service \"{}\" has no image template",
                service.name
            ))
        })
}

/// The change of one service to `to_image`, from what its containers run now.
pub fn change_of(
    service: &Service,
    containers: &[ContainerInfo],
    to_image: String,
    note: Option<String>,
) -> Change {
    let first = containers.first();
    Change {
        service: service.name.to_string(),
        from_image: first.map(|container| container.image_reference.clone()),
        from_digest: first.map(|container| {
            container
                .image_digest
                .clone()
                .unwrap_or_else(|| container.image_id.clone())
        }),
        to_image,
        to_digest: None,
        replicas: containers.len(),
        note,
    }
}

/// What `image` points at on the host now: its registry digest, or the
/// image id of a locally built image; `None` when the host lacks it.
///
/// # Errors
/// When the host cannot be asked.
pub async fn image_digest(host: &DockerHost, image: &str) -> Result<Option<String>, ExecError> {
    let info = host
        .image_info(image)
        .await
        .map_err(|error| ExecError::Failed(format!("inspecting {image}: {error}")))?;
    Ok(info.map(|info| info.digest.unwrap_or(info.id)))
}

/// Plans `resolve_images`: each service from what runs now to the ref's image.
///
/// # Errors
/// An unreachable host, or a service with no containers.
pub async fn describe_resolve_images(
    app: &crate::app::App,
    input: &OperationInput<'_>,
    services: &[String],
    plan: &mut Plan,
) -> Result<(), ExecError> {
    let environment = environment(input)?;
    let git_ref = input
        .action
        .args
        .text("ref")
        .unwrap_or_default()
        .to_string();
    let host = app.hosts.get(environment.name.as_str()).await?;
    for name in services {
        let service = service(environment, name)?;
        let containers = containers_of(&host, environment, service).await?;
        let to_image = image_for(service, &git_ref)?;
        let to_digest = image_digest(&host, &to_image).await?;
        if to_digest.is_none() {
            plan.notes.push(format!(
                "{to_image} is not on the host yet: it is pulled at run time, and the approval covers the tag, not an image"
            ));
        }
        let mut change = change_of(service, &containers, to_image, None);
        change.to_digest = to_digest;
        plan.changes.push(change);
    }
    plan.git_ref = Some(git_ref);
    plan.steps.push("resolve the ref to images".to_string());
    Ok(())
}

/// Plans the other deploy steps: one line each, plus the checks that gate it.
pub fn describe(step: &crate::catalog::Step, input: &OperationInput<'_>, plan: &mut Plan) {
    use crate::catalog::Step;
    let environment = input.env;
    match step {
        Step::Pull {} => plan.steps.push("pull the images the host does not have".to_string()),
        Step::RunOnce { service, command, .. } => {
            plan.steps.push(format!("run `{}` in a one-off {service} container on its new image", command.join(" ")));
            plan.checks.push(format!("`{}` exits 0, or nothing is replaced", command.join(" ")));
        }
        Step::Recreate {} => plan.steps.push("replace each service's containers on the new image, one at a time, keeping everything else".to_string()),
        Step::WaitHealthy { timeout } => {
            let limit = timeout.unwrap_or(WAIT_HEALTHY_TIMEOUT);
            for change in &plan.changes.clone() {
                let endpoints = environment
                    .and_then(|environment| environment.services.get(change.service.as_str()))
                    .map(|service| service.health.join(", "))
                    .filter(|paths| !paths.is_empty())
                    .map(|paths| format!(" and {paths} answer 2xx"))
                    .unwrap_or_default();
                plan.checks.push(format!(
                    "{} running and healthy by its Docker healthcheck{endpoints} within {}",
                    change.service,
                    crate::duration::format_duration(limit)
                ));
            }
            plan.steps.push("wait until healthy".to_string());
        }
        Step::Smoke { checks } => {
            for check in checks {
                let fragment = check.contains.as_ref().map(|text| format!(" containing \"{text}\"")).unwrap_or_default();
                plan.checks.push(format!("smoke: GET {}{} → {}{fragment}", check.service, check.path, check.status));
            }
            plan.steps.push("smoke checks".to_string());
        }
        Step::RecordRelease {} => plan.steps.push("record the release (images and digests before and after)".to_string()),
        other => plan.steps.push(other.title()),
    }
}

impl RunContext<'_> {
    async fn host(&self) -> Result<DockerHost, ExecError> {
        let environment = environment(self.input)?;
        self.app.hosts.get(environment.name.as_str()).await
    }

    /// `resolve_images` at run time: the plan is what was approved; this
    /// reports it and notes drift since then. A tag that points at another
    /// image than the approved one stops the operation before anything
    /// changes: approvers approved that image, not whatever the tag names.
    pub async fn resolve_images(&mut self) -> Result<StepOutcome, ExecError> {
        let environment = environment(self.input)?;
        let host = self.host().await?;
        let mut output = Vec::new();
        for change in &mut self.plan.changes {
            if let Some(approved) = &change.to_digest {
                let now = image_digest(&host, &change.to_image).await?;
                if now.as_ref() != Some(approved) {
                    return Err(ExecError::Failed(moved_tag(
                        change,
                        approved,
                        now.as_deref(),
                    )));
                }
            }
            let service = service(environment, &change.service)?;
            let containers = containers_of(&host, environment, service).await?;
            let now_running = containers
                .first()
                .map(|container| container.image_reference.clone());
            if now_running != change.from_image {
                output.push(format!(
                    "{}: runs {} now, not {} as planned; rollback returns to what runs now",
                    change.service,
                    now_running.as_deref().unwrap_or("nothing"),
                    change.from_image.as_deref().unwrap_or("nothing"),
                ));
                let to_digest = change.to_digest.take();
                *change = change_of(
                    service,
                    &containers,
                    change.to_image.clone(),
                    change.note.clone(),
                );
                change.to_digest = to_digest;
            }
        }
        let summary = self
            .plan
            .changes
            .iter()
            .map(Change::describe)
            .collect::<Vec<_>>()
            .join("; ");
        Ok(StepOutcome { summary, output })
    }

    /// `pull`: every planned image the host does not have.
    pub async fn pull(&mut self) -> Result<StepOutcome, ExecError> {
        let environment = environment(self.input)?;
        let host = self.host().await?;
        let auth = registry_auth(environment);
        let mut parts = Vec::new();
        for change in &self.plan.changes {
            let outcome = host
                .pull(&change.to_image, auth.as_ref())
                .await
                .map_err(|error| ExecError::Failed(format!("{error} — nothing was changed")))?;
            parts.push(format!("{}: {}", change.to_image, pull_word(&outcome)));
        }
        Ok(StepOutcome::summary(parts.join("; ")))
    }

    /// `run_once`: a one-off container from the service's planned image,
    /// labelled with a journaled token so recovery removes it if Deckhand
    /// dies while it runs.
    pub async fn run_once(
        &mut self,
        service_name: &str,
        command: &[String],
        timeout: Option<Duration>,
    ) -> Result<StepOutcome, ExecError> {
        let environment = environment(self.input)?;
        let host = self.host().await?;
        let mut stages = OneOffStages::new(
            environment,
            host,
            self.journal(),
            &self.plan.changes,
            service_name,
            command,
            timeout.unwrap_or(RUN_ONCE_TIMEOUT),
        );
        let outcome = loop {
            if let Progress::Done(outcome) = stages.advance().await? {
                break outcome;
            }
        };
        if let Some(failure) = outcome.failure {
            let replaced = if self.replaced.is_empty() {
                "; nothing was replaced"
            } else {
                ""
            };
            let mut message = format!("{failure}{replaced}");
            for line in &outcome.outcome.output {
                message.push('\n');
                message.push_str(line);
            }
            return Err(ExecError::Failed(message));
        }
        Ok(outcome.outcome)
    }

    /// `recreate`: each planned service's containers on the new image, one
    /// replica at a time, each stage journaled; a replica must be healthy
    /// before the next goes.
    pub async fn recreate(&mut self) -> Result<StepOutcome, ExecError> {
        let environment = environment(self.input)?;
        let host = self.host().await?;
        let mut stages =
            RecreateStages::new(environment, host, self.journal(), self.plan.changes.clone());
        let result = loop {
            match stages.advance().await {
                Ok(Progress::Done(outcome)) => break Ok(outcome),
                Ok(Progress::Stage(_)) => {}
                Err(error) => break Err(error),
            }
        };
        self.replaced.extend(stages.take_replaced());
        result
    }

    /// `wait_healthy`: every replaced container running and healthy, then
    /// every health endpoint of the changed services answering 2xx.
    pub async fn wait_healthy(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<StepOutcome, ExecError> {
        let environment = environment(self.input)?;
        let host = self.host().await?;
        let limit = timeout.unwrap_or(WAIT_HEALTHY_TIMEOUT);
        let started = std::time::Instant::now();
        let mut output = Vec::new();
        for replaced in &self.replaced {
            let outcome = wait_container_healthy(&host, &replaced.recreated.name, limit).await?;
            output.push(format!("{}: {outcome}", replaced.recreated.name));
        }
        for change in &self.plan.changes {
            let service = service(environment, &change.service)?;
            let remaining = limit.saturating_sub(started.elapsed()).max(PROBE_TIMEOUT);
            for line in wait_endpoints(service, remaining).await? {
                output.push(line);
            }
        }
        Ok(StepOutcome {
            summary: format!("healthy after {}", format_elapsed(started.elapsed())),
            output,
        })
    }

    /// `smoke`: each request answers the expected status and fragment.
    pub async fn smoke(&mut self, checks: &[SmokeCheck]) -> Result<StepOutcome, ExecError> {
        let environment = environment(self.input)?;
        let mut output = Vec::new();
        for check in checks {
            let service = service(environment, &check.service)?;
            let base = service.url.as_deref().unwrap_or_default();
            let url = format!("{base}{}", check.path);
            let result =
                probe::smoke(&url, check.status, check.contains.as_deref(), PROBE_TIMEOUT).await;
            if let Some(reason) = result.failure {
                return Err(ExecError::Failed(format!(
                    "smoke check {} {} failed: {reason}",
                    check.service, check.path
                )));
            }
            output.push(format!(
                "{} {}: {}",
                check.service,
                check.path,
                result.probe.describe()
            ));
        }
        Ok(StepOutcome {
            summary: format!("{} check(s) passed", checks.len()),
            output,
        })
    }

    /// `record_release`: one release per changed service.
    pub async fn record_release(&mut self) -> Result<StepOutcome, ExecError> {
        let environment = environment(self.input)?;
        let host = self.host().await?;
        let kind = if self.input.spec.name.as_str() == "deploy" {
            "deploy"
        } else {
            "rollback"
        };
        let mut ids = Vec::new();
        for change in &self.plan.changes {
            // Locally built images have no registry digest; their id pins
            // them just as exactly.
            let digest_after = host
                .image_info(&change.to_image)
                .await
                .ok()
                .flatten()
                .map(|info| info.digest.unwrap_or(info.id));
            let release = NewRelease {
                env: environment.name.to_string(),
                service: change.service.clone(),
                op_id: self.operation.id,
                kind: kind.to_string(),
                git_ref: self.plan.git_ref.clone(),
                image_before: change.from_image.clone(),
                digest_before: change.from_digest.clone(),
                image_after: change.to_image.clone(),
                digest_after,
                actor: self.input.requester.to_string(),
                created_at: self.app.now(),
            };
            let id = self.app.store.insert_release(&release).await?;
            ids.push(format!("r{id} ({})", change.service));
        }
        Ok(StepOutcome::summary(format!("recorded {}", ids.join(", "))))
    }

    /// After success: removes the previous containers kept for rollback.
    pub async fn commit_replacements(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let Ok(host) = self.host().await else {
            return problems;
        };
        for replaced in self.replaced.drain(..) {
            if let Err(error) = replaced.commit(&host).await {
                problems.push(format!(
                    "could not remove the previous {} container: {error}",
                    replaced.service
                ));
            }
        }
        problems
    }

    /// After a failure: restores every replaced container, newest first,
    /// and checks the restored ones run again.
    pub async fn revert_replacements(&mut self) -> Result<String, String> {
        let host = self.host().await.map_err(|error| error.to_string())?;
        let mut restored = Vec::new();
        while let Some(replaced) = self.replaced.pop() {
            replaced
                .revert(&host)
                .await
                .map_err(|error| format!("restoring {}: {error}", replaced.recreated.name))?;
            let health =
                wait_container_healthy(&host, &replaced.recreated.name, WAIT_HEALTHY_TIMEOUT)
                    .await
                    .map(|outcome| outcome.to_string())
                    .unwrap_or_else(|error| format!("not healthy: {error}"));
            let image = self
                .plan
                .changes
                .iter()
                .find(|change| change.service == replaced.service)
                .and_then(|change| change.from_image.clone())
                .unwrap_or_default();
            restored.push(format!(
                "{} back on {image} ({health})",
                replaced.recreated.name
            ));
        }
        Ok(restored.join("; "))
    }

    /// Whether anything was replaced that a failure must restore.
    pub fn has_replacements(&self) -> bool {
        !self.replaced.is_empty()
    }
}

/// Why an operation stops when a tag moved after it was approved.
fn moved_tag(change: &Change, approved: &str, now: Option<&str>) -> String {
    let now = match now {
        Some(now) => format!("now points to {}", crate::plan::short_digest(now)),
        None => "is no longer on the host".to_string(),
    };
    format!(
        "{}: {} {now}, not {} as approved; nothing was changed — request it again so the image it names now can be approved",
        change.service,
        change.to_image,
        crate::plan::short_digest(approved)
    )
}

fn pull_word(outcome: &crate::docker::PullOutcome) -> &'static str {
    match outcome {
        crate::docker::PullOutcome::AlreadyPresent => "present",
        crate::docker::PullOutcome::Pulled => "pulled",
    }
}

/// Registry credentials from the environment variables config names.
fn registry_auth(environment: &Environment) -> Option<RegistryAuth> {
    let registry = environment.registry.as_ref()?;
    let username = std::env::var(&registry.username_env).ok()?;
    let password = std::env::var(&registry.password_env).ok()?;
    Some(RegistryAuth::new(username, password, String::new()))
}

/// Waits for one container; an unhealthy or exited one is an error with
/// its exit code and last log lines.
pub(super) async fn wait_container_healthy(
    host: &DockerHost,
    container: &str,
    limit: Duration,
) -> Result<String, ExecError> {
    let outcome = host
        .wait_healthy(container, limit)
        .await
        .map_err(|error| ExecError::Failed(error.to_string()))?;
    match outcome {
        HealthOutcome::Ready { elapsed, health } => Ok(format!(
            "running, health {health}, after {}",
            format_elapsed(elapsed)
        )),
        HealthOutcome::Unhealthy {
            elapsed,
            last_output,
            last_lines,
        } => Err(failure_with_lines(
            format!(
                "{container} became unhealthy after {}: {}",
                format_elapsed(elapsed),
                last_output.unwrap_or_default().trim()
            ),
            &last_lines,
        )),
        HealthOutcome::Exited {
            exit_code,
            oom_killed,
            last_lines,
        } => Err(failure_with_lines(
            format!(
                "{container} exited with code {}{}",
                exit_code
                    .map(|code| code.to_string())
                    .unwrap_or_else(|| "?".to_string()),
                if oom_killed {
                    " (killed: out of memory)"
                } else {
                    ""
                }
            ),
            &last_lines,
        )),
        HealthOutcome::TimedOut {
            after,
            status,
            health,
            last_output,
        } => Err(ExecError::Failed(format!(
            "{container} not healthy within {}: {status}, health {health}{}",
            crate::duration::format_duration(after),
            last_output
                .map(|output| format!(" ({})", output.trim()))
                .unwrap_or_default()
        ))),
    }
}

fn failure_with_lines(message: String, lines: &[String]) -> ExecError {
    let mut text = message;
    for line in lines {
        text.push('\n');
        text.push_str(&crate::secret::redact(line));
    }
    ExecError::Failed(text)
}

/// Polls a service's health endpoints until each answers 2xx.
pub(super) async fn wait_endpoints(
    service: &Service,
    limit: Duration,
) -> Result<Vec<String>, ExecError> {
    let Some(base) = &service.url else {
        return Ok(Vec::new());
    };
    let deadline = tokio::time::Instant::now() + limit;
    let mut lines = Vec::new();
    for path in &service.health {
        let url = format!("{base}{path}");
        loop {
            let result = probe::probe(&url, PROBE_TIMEOUT).await;
            if result.is_success() {
                lines.push(format!("{} {path}: {}", service.name, result.describe()));
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ExecError::Failed(format!(
                    "{} {path} did not answer 2xx within {}: {}",
                    service.name,
                    crate::duration::format_duration(limit),
                    result.describe()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(lines)
}
