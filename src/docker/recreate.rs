//! Replacing one container with one on a new image, keeping everything else about it.
//!
//! The old container is stopped (its published ports would clash otherwise), renamed to
//! `<name>.deckhand-old` and kept until the caller either commits (removes it) or reverts
//! (removes the new one and brings the old one back). Replicated services are replaced one
//! container at a time by the caller; this module handles one container and knows nothing
//! about health gates or releases.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ImageConfig, NetworkConnectRequest,
    NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};

use super::OLD_CONTAINER_SUFFIX;
use super::discovery::ContainerInfo;
use super::error::DockerError;
use super::host::DockerHost;
use super::overrides::{NetworkPlan, explicit_config, network_plan, volume_binds_to_keep};

/// Grace period Docker gives a container to stop when its config sets none.
const DEFAULT_STOP_GRACE_SECS: i64 = 10;

/// A replacement in progress: the new container runs under the original name and the old
/// one waits, stopped, as `<name>.deckhand-old`. Plain data, so the executor can journal it
/// and finish the replacement after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recreated {
    /// The container's name, now carried by the new container.
    pub name: String,
    /// Id of the new container.
    pub new_id: String,
    /// Id of the old container.
    pub old_id: String,
    /// The old container's temporary name.
    pub old_name: String,
    /// Whether the old container was running, and so must run again on revert.
    pub old_was_running: bool,
    /// The image the new container was created from.
    pub new_image: String,
}

impl Recreated {
    /// Keeps the new container and removes the old one. Its anonymous volumes stay: the new
    /// container uses them.
    ///
    /// # Errors
    ///
    /// API failures; the new container keeps running either way.
    pub async fn commit(&self, host: &DockerHost) -> Result<(), DockerError> {
        host.remove(&self.old_id).await?;
        tracing::info!(host = %host.name(), service = %self.name, "replacement committed");
        Ok(())
    }

    /// Removes the new container, gives the old one its name back and starts it again if
    /// it was running.
    ///
    /// # Errors
    ///
    /// API failures, naming the step that failed.
    pub async fn revert(&self, host: &DockerHost) -> Result<(), DockerError> {
        host.remove(&self.new_id).await?;
        host.rename(&self.old_id, &self.name).await?;
        if self.old_was_running {
            host.start(&self.old_id).await?;
        }
        tracing::info!(host = %host.name(), service = %self.name, "replacement reverted");
        Ok(())
    }
}

/// What recovery did with a replacement an interrupted run left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftoverOutcome {
    /// The new container runs healthy: it stays, the old one is removed.
    KeptNew {
        /// The container's name.
        name: String,
    },
    /// The new container was missing or not healthy: the old one is back.
    RestoredOld {
        /// The container's name.
        name: String,
    },
}

impl std::fmt::Display for LeftoverOutcome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeftoverOutcome::KeptNew { name } => {
                write!(formatter, "{name} kept on the new version")
            }
            LeftoverOutcome::RestoredOld { name } => {
                write!(formatter, "{name} restored to the previous version")
            }
        }
    }
}

impl DockerHost {
    /// Settles a replacement an interrupted run left behind (`<name>.deckhand-old`),
    /// so the service runs either the new version or the old one, never neither: a
    /// new container that becomes healthy within `limit` stays, otherwise the old one
    /// comes back.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn settle_leftover(
        &self,
        leftover: &ContainerInfo,
        limit: Duration,
    ) -> Result<LeftoverOutcome, DockerError> {
        let name = leftover
            .name
            .strip_suffix(OLD_CONTAINER_SUFFIX)
            .unwrap_or(&leftover.name)
            .to_string();
        let current = match self.inspect(&name).await {
            Ok(current) => Some(current),
            Err(DockerError::ContainerNotFound { .. }) => None,
            Err(other) => return Err(other),
        };
        if let Some(current) = &current
            && self.wait_healthy(&current.id, limit).await?.is_ready()
        {
            self.remove(&leftover.id).await?;
            return Ok(LeftoverOutcome::KeptNew { name });
        }
        if let Some(current) = current {
            self.remove(&current.id).await?;
        }
        self.rename(&leftover.id, &name).await?;
        self.start(&leftover.id).await?;
        Ok(LeftoverOutcome::RestoredOld { name })
    }

    /// Replaces `old` with a container from `new_image` that keeps everything else: env,
    /// explicit cmd and entrypoint, mounts and volumes, networks with aliases, published
    /// ports, labels (compose's included), restart policy, healthcheck, user and working
    /// dir. Values the old container inherited from its image are left for the new image
    /// to supply.
    ///
    /// # Errors
    ///
    /// [`DockerError::ImageMissing`] before anything changed;
    /// [`DockerError::RecreateFailed`] when a step failed and the old container was
    /// restored; [`DockerError::RestoreFailed`] when restoring failed too.
    pub async fn recreate(
        &self,
        old: &ContainerInfo,
        new_image: &str,
    ) -> Result<Recreated, DockerError> {
        self.recreate_with_env(old, new_image, &[]).await
    }

    /// Like [`DockerHost::recreate`], with some environment variables set to
    /// new values (a rotated secret): each `NAME` given replaces or adds
    /// `NAME=value`, everything else is kept. The values never reach logs.
    ///
    /// # Errors
    ///
    /// As [`DockerHost::recreate`].
    pub async fn recreate_with_env(
        &self,
        old: &ContainerInfo,
        new_image: &str,
        env_overrides: &[(String, String)],
    ) -> Result<Recreated, DockerError> {
        let started = Instant::now();
        let raw = self.inspect_raw(&old.id).await?;
        let name = old.name.clone();
        let old_name = format!("{name}{OLD_CONTAINER_SUFFIX}");
        self.check_no_unfinished_replacement(&name, &old_name)
            .await?;
        let removes_itself = raw
            .host_config
            .as_ref()
            .and_then(|host_config| host_config.auto_remove)
            .unwrap_or(false);
        if removes_itself {
            // Stopping it would delete it, leaving nothing to revert to.
            return Err(DockerError::Unsupported {
                what: format!("replacing \"{name}\""),
                reason: "it was created with --rm (auto-remove), so it cannot be kept for a revert"
                    .to_string(),
            });
        }
        if !self.image_exists(new_image).await? {
            return Err(DockerError::ImageMissing {
                reference: new_image.to_string(),
                host: self.name().to_string(),
            });
        }
        let old_image_config = self
            .image_config(raw.image.as_deref().unwrap_or_default())
            .await?;
        let plan = network_plan(&raw);
        let mut body = replacement_body(&raw, &old_image_config, new_image, &plan);
        apply_env_overrides(&mut body, env_overrides);
        let old_was_running = old.state.running;
        let stop_grace = raw
            .config
            .as_ref()
            .and_then(|config| config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_GRACE_SECS);

        self.stop_with_grace(&old.id, stop_grace).await?;
        let mut progress = Progress::default();
        let replaced = self
            .replace_stopped(&old.id, &name, &old_name, body, &plan, &mut progress)
            .await;
        match replaced {
            Ok(new_id) => {
                tracing::info!(
                    host = %self.name(),
                    service = %name,
                    image = %new_image,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "container replaced"
                );
                Ok(Recreated {
                    name,
                    new_id,
                    old_id: old.id.clone(),
                    old_name,
                    old_was_running,
                    new_image: new_image.to_string(),
                })
            }
            Err((stage, failure)) => {
                let restored = self
                    .restore(&old.id, &name, old_was_running, &progress)
                    .await;
                Err(match restored {
                    Ok(()) => DockerError::RecreateFailed {
                        container: name,
                        host: self.name().to_string(),
                        stage: stage.to_string(),
                        source: Box::new(failure),
                    },
                    Err(restore_error) => DockerError::RestoreFailed {
                        container: name,
                        host: self.name().to_string(),
                        stage: stage.to_string(),
                        failure: failure.chain(),
                        restore_failure: restore_error.chain(),
                    },
                })
            }
        }
    }

    /// Renames, creates, connects and starts; records what it did so a failure can be
    /// undone.
    async fn replace_stopped(
        &self,
        old_id: &str,
        name: &str,
        old_name: &str,
        body: ContainerCreateBody,
        plan: &NetworkPlan,
        progress: &mut Progress,
    ) -> Result<String, (&'static str, DockerError)> {
        let stage = "renaming the old container";
        self.rename(old_id, old_name)
            .await
            .map_err(|error| (stage, error))?;
        progress.renamed = true;
        let stage = "creating the new container";
        let new_id = self
            .create_named(name, body)
            .await
            .map_err(|error| (stage, error))?;
        progress.new_id = Some(new_id.clone());
        let stage = "connecting the new container to its networks";
        self.connect_networks(&new_id, &plan.extra)
            .await
            .map_err(|error| (stage, error))?;
        let stage = "starting the new container";
        self.start(&new_id).await.map_err(|error| (stage, error))?;
        Ok(new_id)
    }

    /// Undoes a failed replacement as far as it got.
    async fn restore(
        &self,
        old_id: &str,
        name: &str,
        old_was_running: bool,
        progress: &Progress,
    ) -> Result<(), DockerError> {
        if let Some(new_id) = &progress.new_id {
            self.remove(new_id).await?;
        }
        if progress.renamed {
            self.rename(old_id, name).await?;
        }
        if old_was_running {
            self.start(old_id).await?;
        }
        Ok(())
    }

    async fn check_no_unfinished_replacement(
        &self,
        name: &str,
        old_name: &str,
    ) -> Result<(), DockerError> {
        match self.inspect_raw(old_name).await {
            Ok(_) => Err(DockerError::UnfinishedReplacement {
                container: name.to_string(),
                leftover: old_name.to_string(),
                host: self.name().to_string(),
            }),
            Err(DockerError::ContainerNotFound { .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// The image's own config, for telling inherited values from explicit ones.
    pub(super) async fn image_config(&self, image: &str) -> Result<ImageConfig, DockerError> {
        let inspected = self
            .call(
                format!("inspecting image \"{image}\""),
                self.client().inspect_image(image),
            )
            .await?;
        Ok(inspected.config.unwrap_or_default())
    }

    pub(super) async fn create_named(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .call(
                format!("creating container \"{name}\""),
                self.client().create_container(Some(options), body),
            )
            .await?;
        Ok(created.id)
    }

    pub(super) async fn connect_networks(
        &self,
        container: &str,
        networks: &[(String, bollard::models::EndpointSettings)],
    ) -> Result<(), DockerError> {
        for (network, endpoint) in networks {
            let request = NetworkConnectRequest {
                container: container.to_string(),
                endpoint_config: Some(endpoint.clone()),
            };
            self.call(
                format!("connecting \"{container}\" to network \"{network}\""),
                self.client().connect_network(network, request),
            )
            .await?;
        }
        Ok(())
    }

    async fn rename(&self, container: &str, new_name: &str) -> Result<(), DockerError> {
        let options = RenameContainerOptionsBuilder::default()
            .name(new_name)
            .build();
        self.call(
            format!("renaming container \"{container}\" to \"{new_name}\""),
            self.client().rename_container(container, options),
        )
        .await
    }

    /// Stops a container, allowing it `grace_secs` before Docker kills it.
    pub(super) async fn stop_with_grace(
        &self,
        container: &str,
        grace_secs: i64,
    ) -> Result<(), DockerError> {
        let options = StopContainerOptionsBuilder::default()
            .t(i32::try_from(grace_secs).unwrap_or(i32::MAX))
            .build();
        let limit = self.timeout() + Duration::from_secs(grace_secs.unsigned_abs());
        self.call_within(
            format!("stopping container \"{container}\""),
            limit,
            self.client().stop_container(container, Some(options)),
        )
        .await
    }
}

/// How far a replacement got, for undoing it.
#[derive(Debug, Default)]
struct Progress {
    renamed: bool,
    new_id: Option<String>,
}

/// The create request for the replacement: the old container's explicit config on the new
/// image, its host config, and its primary network.
/// Replaces or adds `NAME=value` for each override.
fn apply_env_overrides(body: &mut ContainerCreateBody, overrides: &[(String, String)]) {
    if overrides.is_empty() {
        return;
    }
    let env = body.env.get_or_insert_with(Vec::new);
    for (name, value) in overrides {
        let prefix = format!("{name}=");
        env.retain(|pair| !pair.starts_with(&prefix));
        env.push(format!("{name}={value}"));
    }
}

/// docker-compose decides whether a container matches its file by the
/// `config-hash` label. A container now running another image no longer
/// matches the file, so its hash must not claim to: it is marked, and the
/// next `docker-compose up` reconciles the service with the file, as it
/// would after any change made outside compose.
fn compose_labels_for(
    mut labels: std::collections::HashMap<String, String>,
    new_image: &str,
) -> std::collections::HashMap<String, String> {
    if let Some(hash) = labels.get_mut(LABEL_CONFIG_HASH) {
        *hash = format!("deckhand:{new_image}");
    }
    labels
}

/// The label docker-compose compares with its file to decide whether to
/// recreate a container.
const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";

fn replacement_body(
    raw: &ContainerInspectResponse,
    old_image_config: &ImageConfig,
    new_image: &str,
    plan: &NetworkPlan,
) -> ContainerCreateBody {
    let config = raw.config.clone().unwrap_or_default();
    let explicit = explicit_config(&config, old_image_config);
    let mut host_config = raw.host_config.clone().unwrap_or_default();
    let volume_binds = volume_binds_to_keep(raw);
    if !volume_binds.is_empty() {
        host_config
            .binds
            .get_or_insert_with(Vec::new)
            .extend(volume_binds);
    }
    let container_id = raw.id.as_deref().unwrap_or_default();
    // Docker defaults the hostname to the short container id; a copied one would name the
    // old container.
    let hostname = config
        .hostname
        .filter(|hostname| !hostname.is_empty() && !container_id.starts_with(hostname.as_str()));
    ContainerCreateBody {
        hostname,
        domainname: config.domainname,
        user: explicit.user,
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        exposed_ports: some_if_any(explicit.exposed_ports),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        env: some_if_any(explicit.env),
        cmd: explicit.cmd,
        healthcheck: explicit.healthcheck,
        image: Some(new_image.to_string()),
        volumes: some_if_any(explicit.volumes),
        working_dir: explicit.working_dir,
        entrypoint: explicit.entrypoint,
        network_disabled: config.network_disabled,
        labels: Some(compose_labels_for(explicit.labels, new_image)),
        stop_signal: explicit.stop_signal,
        stop_timeout: config.stop_timeout,
        host_config: Some(host_config),
        networking_config: plan
            .primary
            .clone()
            .map(|(network, endpoint)| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network, endpoint)])),
            }),
        ..Default::default()
    }
}

fn some_if_any(items: Vec<String>) -> Option<Vec<String>> {
    (!items.is_empty()).then_some(items)
}
