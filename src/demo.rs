//! `deckhand demo`: the example environments in local Docker, so a newcomer
//! can try every command in minutes without a registry or chat tokens. It
//! builds the images that are missing (a Debian rootfs with PostgreSQL,
//! Redis and nginx, and busybox stand-ins for the backend, Web IDE and git
//! web browser), brings up the staging stack (compose project
//! `deckhand-demo`, as `docker/compose.yml` describes it) and a
//! production-shaped copy (`deckhand-prod`, host ports + 10000), all
//! through the Docker API. The shipped config points at exactly these.

use std::path::Path;

use crate::config::Config;
use crate::docker::images::{ImageSet, ensure_images};
use crate::docker::stack::{self, StackSpec, VolumePolicy};
use crate::docker::{DockerError, DockerHost, HostSpec};

/// Compose project of the demo's production environment.
pub const PRODUCTION_PROJECT: &str = "deckhand-prod";
/// How far the production stack's host ports are shifted.
pub const PRODUCTION_PORT_OFFSET: u16 = 10_000;

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The config has no environment on a Docker host to use.
    #[error(
        "the config has no environment named \"staging\"; deckhand demo works with config/deckhand.toml as shipped"
    )]
    NoStaging,
    /// Docker failed.
    #[error("{doing}: {source}")]
    Docker {
        /// What the demo was doing.
        doing: &'static str,
        /// Why.
        #[source]
        source: DockerError,
    },
}

/// The two demo stacks, as `docker/compose.yml` (next to the config's
/// folder) describes staging.
pub fn stacks(config: &Config) -> Vec<StackSpec> {
    let root = config
        .file
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let staging = StackSpec::demo(root.join("docker/compose.yml"));
    let production = staging
        .clone()
        .relocated(PRODUCTION_PROJECT, |port| port + PRODUCTION_PORT_OFFSET);
    vec![staging, production]
}

async fn local_host(config: &Config) -> Result<DockerHost, DemoError> {
    let environment = config.environment("staging").ok_or(DemoError::NoStaging)?;
    let spec = HostSpec {
        name: environment.host.name.clone(),
        endpoint: environment.host.endpoint.clone(),
        tls: None,
        ssh_key: None,
        timeout: environment.host.timeout,
    };
    DockerHost::connect(&spec)
        .await
        .map_err(|source| DemoError::Docker {
            doing: "connecting to the local Docker engine",
            source,
        })
}

/// Builds missing images and brings both stacks up; `report` hears what
/// happens, a line at a time.
///
/// # Errors
/// When Docker cannot build or start something.
pub async fn up(config: &Config, mut report: impl FnMut(String)) -> Result<(), DemoError> {
    let host = local_host(config).await?;
    report("checking the demo images (the first run builds them: about two minutes)".to_string());
    let ensured = ensure_images(&host, &ImageSet::everything())
        .await
        .map_err(|source| DemoError::Docker {
            doing: "building the demo images",
            source,
        })?;
    for image in ensured {
        if image.outcome != crate::docker::images::EnsureOutcome::AlreadyPresent {
            report(format!(
                "  made {} in {}",
                image.reference,
                crate::duration::format_elapsed(image.elapsed)
            ));
        }
    }
    for spec in stacks(config) {
        report(format!(
            "bringing up {} (waits until healthy)",
            spec.project
        ));
        stack::up(&host, &spec)
            .await
            .map_err(|source| DemoError::Docker {
                doing: "bringing up a demo stack",
                source,
            })?;
        migrate(&host, &spec).await?;
    }
    Ok(())
}

/// Applies the backend's migrations, as the runbook's first deploy would,
/// so a fresh demo serves its API; already applied ones are skipped.
async fn migrate(host: &DockerHost, spec: &StackSpec) -> Result<(), DemoError> {
    let selector = crate::docker::ServiceSelector::Compose {
        project: spec.project.clone(),
        service: "backend".to_string(),
    };
    let containers = host
        .find_containers(&selector)
        .await
        .map_err(|source| DemoError::Docker {
            doing: "finding the demo backend",
            source,
        })?;
    let Some(backend) = containers.first() else {
        return Ok(());
    };
    let output = host
        .run_once(crate::docker::RunOnce {
            image: backend.image_reference.clone(),
            like: backend,
            cmd: vec!["npm".into(), "run".into(), "db:migrate".into()],
            timeout: std::time::Duration::from_secs(120),
        })
        .await
        .map_err(|source| DemoError::Docker {
            doing: "migrating the demo database",
            source,
        })?;
    if output.exit_code != 0 {
        tracing::warn!(project = %spec.project, exit_code = output.exit_code, "demo migration failed");
    }
    Ok(())
}

/// Removes both stacks and their volumes.
///
/// # Errors
/// When Docker fails.
pub async fn down(config: &Config) -> Result<(), DemoError> {
    let host = local_host(config).await?;
    for spec in stacks(config) {
        stack::down(&host, &spec, VolumePolicy::Remove)
            .await
            .map_err(|source| DemoError::Docker {
                doing: "removing a demo stack",
                source,
            })?;
    }
    Ok(())
}
