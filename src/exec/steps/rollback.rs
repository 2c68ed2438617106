//! The runbook's Rollback Procedures: where a rollback goes. One service
//! returns to the image before its latest release (so a second rollback
//! undoes the first, as `kubectl rollout undo` does), or to a named release
//! (`to r12`) or tag (`to v1.4.1`); without a service, every service of the
//! last deploy returns to where that deploy found it.

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::config::Environment;
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;
use crate::store::Release;

use super::deploy::{change_of, containers_of, environment, image_for, service};

/// Plans `resolve_rollback`: the target image of each service.
///
/// # Errors
/// Nothing to roll back to, an unknown release, or an unreachable host.
pub async fn describe(
    app: &App,
    input: &OperationInput<'_>,
    plan: &mut Plan,
) -> Result<(), ExecError> {
    let environment = environment(input)?;
    let host = app.hosts.get(environment.name.as_str()).await?;
    let target = input.action.args.text("target");
    let now = app.now();
    let targets = match (input.action.args.service("service"), target) {
        (Some(service_name), Some(target)) => {
            vec![named_target(app, environment, Some(service_name.as_str()), target).await?]
        }
        (Some(service_name), None) => {
            vec![previous_target(app, environment, service_name.as_str(), now).await?]
        }
        (None, Some(target)) if is_release_id(target) => {
            vec![named_target(app, environment, None, target).await?]
        }
        (None, target) => last_deploy_targets(app, environment, target, now).await?,
    };
    for (service_name, to_image, note) in targets {
        let service = service(environment, &service_name)?;
        let containers = containers_of(&host, environment, service).await?;
        let change = change_of(service, &containers, to_image, Some(note));
        if change.from_image.as_deref() == Some(change.to_image.as_str()) {
            return Err(ExecError::Failed(format!(
                "{service_name} already runs {} in {}; nothing to roll back",
                change.to_image, environment.name
            )));
        }
        plan.changes.push(change);
    }
    plan.steps.push("resolve what to roll back to".to_string());
    Ok(())
}

fn is_release_id(target: &str) -> bool {
    target.strip_prefix('r').is_some_and(|digits| {
        !digits.is_empty() && digits.chars().all(|digit| digit.is_ascii_digit())
    })
}

fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (now - then).num_minutes().max(0);
    match minutes {
        0 => "just now".to_string(),
        1..=59 => format!("{minutes} min ago"),
        60..=2879 => format!("{} h ago", minutes / 60),
        _ => format!("{} days ago", minutes / 1440),
    }
}

fn release_note(release: &Release, now: DateTime<Utc>) -> String {
    format!(
        "undoing r{} ({} by {}, {})",
        release.id,
        release.kind,
        release.actor,
        ago(release.created_at, now)
    )
}

async fn previous_target(
    app: &App,
    environment: &Environment,
    service: &str,
    now: DateTime<Utc>,
) -> Result<(String, String, String), ExecError> {
    let releases = app
        .store
        .releases(environment.name.as_str(), service, 1)
        .await?;
    let latest = releases.first().ok_or_else(|| {
        ExecError::Failed(format!(
            "{service} has no release recorded in {}, so there is no previous version to roll back to; name one with \"to <tag|release-id>\"",
            environment.name
        ))
    })?;
    let image = latest.image_before.clone().ok_or_else(|| {
        ExecError::Failed(format!(
            "r{} is the first release of {service} in {}; there is no previous version to roll back to",
            latest.id, environment.name
        ))
    })?;
    Ok((service.to_string(), image, release_note(latest, now)))
}

async fn named_target(
    app: &App,
    environment: &Environment,
    service: Option<&str>,
    target: &str,
) -> Result<(String, String, String), ExecError> {
    if is_release_id(target) {
        let id: i64 = target[1..]
            .parse()
            .map_err(|_| ExecError::Failed(format!("\"{target}\" is not a release id")))?;
        let release = app
            .store
            .release(id)
            .await?
            .filter(|release| release.env == environment.name.as_str())
            .ok_or_else(|| {
                ExecError::Failed(format!(
                    "there is no release {target} in {}",
                    environment.name
                ))
            })?;
        if let Some(service) = service
            && service != release.service
        {
            return Err(ExecError::Failed(format!(
                "{target} is a release of {}, not of {service}",
                release.service
            )));
        }
        let note = format!("release {target} ({} by {})", release.kind, release.actor);
        return Ok((release.service.clone(), release.image_after.clone(), note));
    }
    let Some(service_name) = service else {
        return Err(ExecError::Failed(
            "name a service to roll back to a tag".to_string(),
        ));
    };
    let image = image_for(super::deploy::service(environment, service_name)?, target)?;
    Ok((service_name.to_string(), image, format!("tag {target}")))
}

async fn last_deploy_targets(
    app: &App,
    environment: &Environment,
    tag: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String, String)>, ExecError> {
    let op_id = app
        .store
        .last_release_operation(environment.name.as_str(), "deploy")
        .await?
        .ok_or_else(|| {
            ExecError::Failed(format!(
                "no deploy is recorded in {}, so there is nothing to roll back",
                environment.name
            ))
        })?;
    let releases = app.store.releases_of_operation(op_id).await?;
    let mut targets = Vec::new();
    for release in releases {
        let image = match tag {
            Some(tag) => image_for(service(environment, &release.service)?, tag)?,
            None => release.image_before.clone().ok_or_else(|| {
                ExecError::Failed(format!(
                    "r{} is the first release of {}; nothing to roll back to",
                    release.id, release.service
                ))
            })?,
        };
        targets.push((release.service.clone(), image, release_note(&release, now)));
    }
    Ok(targets)
}
