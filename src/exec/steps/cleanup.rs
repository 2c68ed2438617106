//! `/cleanup ENV`: the runbook's disk clean-up, limited to what is safe. The plan lists
//! the environment's stopped containers and the host's dangling images with their sizes;
//! running them removes what is still stopped or dangling then. Running containers and
//! volumes are never removed, and an image a recorded release ran before or after is
//! kept, since a rollback may return to it.

use std::collections::BTreeSet;

use crate::app::App;
use crate::config::{Environment, Selector};
use crate::diagnose::format_bytes;
use crate::docker::{ContainerScope, DanglingImage, DockerHost, StoppedContainer};
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;

use super::StepOutcome;

/// How many recent releases' images cleanup keeps.
const PROTECTED_RELEASES: i64 = 200;

/// Plan lines for removing stopped containers.
///
/// # Errors
/// When the Docker host cannot be reached.
pub async fn describe_containers(
    app: &App,
    input: &OperationInput<'_>,
    plan: &mut Plan,
) -> Result<(), ExecError> {
    let (environment, host) = target(app, input).await?;
    let stopped = list_stopped(&host, environment).await?;
    if stopped.is_empty() {
        plan.steps
            .push(format!("no stopped containers in {}", environment.name));
        return Ok(());
    }
    let names: Vec<String> = stopped.iter().map(describe_container).collect();
    plan.steps.push(format!(
        "remove {} stopped container(s) of {} ({}): {}",
        stopped.len(),
        environment.name,
        format_bytes(
            stopped
                .iter()
                .filter_map(|container| container.size_bytes)
                .sum()
        ),
        names.join(", ")
    ));
    plan.notes
        .push("running containers and volumes are never removed".to_string());
    Ok(())
}

/// Removes the environment's stopped containers.
///
/// # Errors
/// When the Docker host cannot be reached.
pub async fn prune_containers(
    app: &App,
    input: &OperationInput<'_>,
) -> Result<StepOutcome, ExecError> {
    let (environment, host) = target(app, input).await?;
    let stopped = list_stopped(&host, environment).await?;
    let mut output = Vec::new();
    let mut freed = 0;
    let mut n_removed = 0;
    for container in &stopped {
        match host.remove_stopped_container(&container.id).await {
            Ok(()) => {
                n_removed += 1;
                freed += container.size_bytes.unwrap_or(0);
                output.push(format!("removed {}", describe_container(container)));
            }
            Err(error) => output.push(format!("kept {}: {}", container.name, error.chain())),
        }
    }
    Ok(StepOutcome {
        summary: format!(
            "removed {n_removed} of {} stopped container(s), freed {}",
            stopped.len(),
            format_bytes(freed)
        ),
        output,
    })
}

/// Plan lines for removing dangling images.
///
/// # Errors
/// When the Docker host or the store cannot be reached.
pub async fn describe_images(
    app: &App,
    input: &OperationInput<'_>,
    plan: &mut Plan,
) -> Result<(), ExecError> {
    let (environment, host) = target(app, input).await?;
    let (removable, kept) = list_dangling(app, &host, environment).await?;
    if removable.is_empty() {
        plan.steps
            .push(format!("no dangling images on host {}", host.name()));
    } else {
        plan.steps.push(format!(
            "remove {} dangling image(s){} on host {} ({})",
            removable.len(),
            environment
                .cleanup_image_label
                .as_ref()
                .map(|label| format!(" labelled {label}"))
                .unwrap_or_default(),
            host.name(),
            format_bytes(removable.iter().map(|image| image.size_bytes).sum())
        ));
    }
    if !kept.is_empty() {
        plan.notes.push(format!(
            "keeps {} dangling image(s) a recorded release may roll back to",
            kept.len()
        ));
    }
    Ok(())
}

/// Removes dangling images no recorded release needs.
///
/// # Errors
/// When the Docker host or the store cannot be reached.
pub async fn prune_images(app: &App, input: &OperationInput<'_>) -> Result<StepOutcome, ExecError> {
    let (environment, host) = target(app, input).await?;
    let (removable, kept) = list_dangling(app, &host, environment).await?;
    let mut output = Vec::new();
    let mut freed = 0;
    let mut n_removed = 0;
    for image in &removable {
        match host.remove_unused_image(&image.id).await {
            Ok(()) => {
                n_removed += 1;
                freed += image.size_bytes;
                output.push(format!(
                    "removed {} ({})",
                    short_id(&image.id),
                    format_bytes(image.size_bytes)
                ));
            }
            Err(error) => output.push(format!("kept {}: {}", short_id(&image.id), error.chain())),
        }
    }
    for image in &kept {
        output.push(format!(
            "kept {}: a recorded release ran it",
            short_id(&image.id)
        ));
    }
    Ok(StepOutcome {
        summary: format!(
            "removed {n_removed} of {} dangling image(s), freed {}",
            removable.len(),
            format_bytes(freed)
        ),
        output,
    })
}

async fn target<'a>(
    app: &App,
    input: &OperationInput<'a>,
) -> Result<(&'a Environment, DockerHost), ExecError> {
    let environment = super::deploy::environment(input)?;
    let host = app.hosts.get(environment.name.as_str()).await?;
    Ok((environment, host))
}

async fn list_stopped(
    host: &DockerHost,
    environment: &Environment,
) -> Result<Vec<StoppedContainer>, ExecError> {
    let scope = ContainerScope {
        compose_project: environment.compose_project.clone(),
        container_names: environment
            .services
            .values()
            .filter_map(|service| match &service.selector {
                Selector::Container(name) => Some(name.clone()),
                Selector::Compose { .. } => None,
            })
            .collect(),
    };
    host.stopped_containers(&scope)
        .await
        .map_err(|error| ExecError::Failed(error.chain()))
}

/// Dangling images split into removable ones and those a recorded release ran.
async fn list_dangling(
    app: &App,
    host: &DockerHost,
    environment: &Environment,
) -> Result<(Vec<DanglingImage>, Vec<DanglingImage>), ExecError> {
    let protected: BTreeSet<String> = app.store.recent_release_digests(PROTECTED_RELEASES).await?;
    let dangling = host
        .dangling_images(environment.cleanup_image_label.as_deref())
        .await
        .map_err(|error| ExecError::Failed(error.chain()))?;
    Ok(dangling.into_iter().partition(|image| {
        !protected.contains(&image.id)
            && !image
                .digests
                .iter()
                .any(|digest| protected.contains(digest))
    }))
}

/// `deckhand-demo_backend_run_1 (exited, 12 MiB)`.
fn describe_container(container: &StoppedContainer) -> String {
    match container.size_bytes {
        Some(size) => format!(
            "{} ({}, {})",
            container.name,
            container.state,
            format_bytes(size)
        ),
        None => format!("{} ({})", container.name, container.state),
    }
}

/// `sha256:0123456789ab`.
fn short_id(id: &str) -> &str {
    id.get(..19).unwrap_or(id)
}
