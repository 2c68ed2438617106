//! Read-only reports: `/health` (per service: container state, Docker
//! health, restarts, each endpoint with status and latency) and `/status`
//! (services, images, uptime, last release, holds, running operation).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::config::Environment;
use crate::docker::{ContainerInfo, DockerHost};
use crate::exec::{ExecError, OperationInput, busy_message, held_message};
use crate::probe;

use super::StepOutcome;
use super::deploy::environment;
use crate::docker::ServiceSelector;

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `/health ENV`: one compact table.
///
/// # Errors
/// An unreachable host.
pub async fn health(app: &App, input: &OperationInput<'_>) -> Result<StepOutcome, ExecError> {
    let environment = environment(input)?;
    let host = app.hosts.get(environment.name.as_str()).await?;
    let mut rows = vec![format!(
        "{:<10} {:<9} {:<10} {:>8}  {}",
        "service", "state", "health", "restarts", "endpoints"
    )];
    let mut unhealthy = 0;
    for service in environment.services.values() {
        let containers = host
            .find_containers(&ServiceSelector::from(&service.selector))
            .await
            .map_err(|error| ExecError::Failed(error.to_string()))?;
        let endpoints = probe_endpoints(service).await;
        let endpoints_ok = endpoints.iter().all(|(ok, _)| *ok);
        let endpoint_text = if endpoints.is_empty() {
            "—".to_string()
        } else {
            endpoints
                .iter()
                .map(|(_, text)| text.as_str())
                .collect::<Vec<_>>()
                .join(" · ")
        };
        if containers.is_empty() {
            unhealthy += 1;
            rows.push(format!(
                "{:<10} {:<9} {:<10} {:>8}  {}",
                service.name, "missing", "—", "—", endpoint_text
            ));
            continue;
        }
        for container in &containers {
            let healthy = container.state.running
                && container.health.status.to_string() != "unhealthy"
                && endpoints_ok;
            if !healthy {
                unhealthy += 1;
            }
            let name = if containers.len() > 1 {
                container.name.clone()
            } else {
                service.name.to_string()
            };
            let health = if container.state.running {
                container.health.status.to_string()
            } else {
                "—".to_string()
            };
            rows.push(format!(
                "{:<10} {:<9} {:<10} {:>8}  {}",
                name,
                container_state(container),
                health,
                container.state.restart_count,
                endpoint_text
            ));
        }
    }
    let summary = if unhealthy == 0 {
        format!(
            "{}: all {} services healthy",
            environment.name,
            environment.services.len()
        )
    } else {
        format!("{}: {unhealthy} unhealthy", environment.name)
    };
    Ok(StepOutcome {
        summary,
        output: rows,
    })
}

fn container_state(container: &ContainerInfo) -> String {
    match (container.state.running, container.state.exit_code) {
        (true, _) => "running".to_string(),
        (false, Some(code)) => format!("exit {code}"),
        (false, None) => container.state.status.clone(),
    }
}

async fn probe_endpoints(service: &crate::config::Service) -> Vec<(bool, String)> {
    let Some(base) = &service.url else {
        return Vec::new();
    };
    // At once: a slow endpoint should not add its timeout to the others'.
    futures_util::future::join_all(service.health.iter().map(|path| async move {
        let result = probe::probe(&format!("{base}{path}"), PROBE_TIMEOUT).await;
        (result.is_success(), format!("{path} {}", result.describe()))
    }))
    .await
}

/// `/status [ENV]`: what runs where.
///
/// # Errors
/// The store failing; an unreachable host is reported in the table.
pub async fn status(app: &App, input: &OperationInput<'_>) -> Result<StepOutcome, ExecError> {
    let environments: Vec<&Environment> = match input.env {
        Some(environment) => vec![environment],
        None => app.config.environments.values().collect(),
    };
    let now = app.now();
    let mut output = Vec::new();
    for environment in &environments {
        output.extend(status_of(app, environment, now).await?);
    }
    let summary = match input.env {
        Some(environment) => format!("status of {}", environment.name),
        None => format!("status of {} environments", environments.len()),
    };
    Ok(StepOutcome { summary, output })
}

async fn status_of(
    app: &App,
    environment: &Environment,
    now: DateTime<Utc>,
) -> Result<Vec<String>, ExecError> {
    let env = environment.name.as_str();
    let mut lines = vec![format!("{env} (host {})", environment.host.name)];
    if let Some(holder) = app.store.lock_holder(env).await? {
        lines.push(format!("  {}", busy_message(&holder)));
    }
    if let Some(hold) = app.store.hold(env, now).await? {
        lines.push(format!("  🔒 {}", held_message(&hold)));
    }
    let host = match app.hosts.get(env).await {
        Ok(host) => host,
        Err(error) => {
            lines.push(format!("  {error}"));
            return Ok(lines);
        }
    };
    for service in environment.services.values() {
        lines.push(service_line(app, &host, environment, service, now).await?);
    }
    Ok(lines)
}

async fn service_line(
    app: &App,
    host: &DockerHost,
    environment: &Environment,
    service: &crate::config::Service,
    now: DateTime<Utc>,
) -> Result<String, ExecError> {
    let containers = host
        .find_containers(&ServiceSelector::from(&service.selector))
        .await
        .unwrap_or_default();
    let running = containers
        .iter()
        .filter(|container| container.state.running)
        .count();
    let image = containers
        .first()
        .map(|container| container.image_reference.clone())
        .unwrap_or_else(|| "—".to_string());
    let uptime = containers
        .iter()
        .filter(|container| container.state.running)
        .filter_map(|container| container.state.started_at)
        .min()
        .map(|started| format!("up {}", since(started, now)))
        .unwrap_or_else(|| "down".to_string());
    let release = app
        .store
        .releases(environment.name.as_str(), service.name.as_str(), 1)
        .await?
        .into_iter()
        .next()
        .map(|release| {
            format!(
                "last release r{} {} by {} {} ago",
                release.id,
                release.kind,
                release.actor,
                since(release.created_at, now)
            )
        })
        .unwrap_or_else(|| "no release recorded".to_string());
    Ok(format!(
        "  {:<9} {}/{} running  {:<34} {:<12} {release}",
        service.name,
        running,
        containers.len(),
        image,
        uptime
    ))
}

fn since(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - then).num_seconds().max(0);
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m", seconds / 60),
        3600..=172_799 => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
        _ => format!("{}d", seconds / 86_400),
    }
}
