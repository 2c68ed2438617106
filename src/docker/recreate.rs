//! Replacing one container with one on a new image, keeping everything else about it.
//!
//! A replacement runs in explicit stages — stop the old container (its published ports
//! would clash otherwise), rename it to `<name>.deckhand-old`, create the new container
//! under the name, connect it to its other networks, start it — so the executor can journal
//! each stage before it runs and recovery can settle a replacement interrupted at any of
//! them ([`DockerHost::settle_replacement`]). The old container is kept until the caller
//! either commits (removes it) or reverts (removes the new one and brings the old one
//! back). Replicated services are replaced one container at a time by the caller; this
//! module handles one container and knows nothing about health gates or releases.

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
pub(super) const DEFAULT_STOP_GRACE_SECS: i64 = 10;

/// Extra time the stop call is given beyond the container's own grace period: after the
/// grace period Docker kills the container, which takes a moment too.
const STOP_MARGIN: Duration = Duration::from_secs(15);

/// The stages of one replacement, in the order they run. A journal records the stage
/// about to run, so after a crash the stage names what may have been half done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReplaceStage {
    /// Stopping the old container; it still has its name.
    Stop,
    /// Renaming the stopped old container to `<name>.deckhand-old`.
    Rename,
    /// Creating the new container under the name.
    Create,
    /// Connecting the new container to its further networks.
    Connect,
    /// Starting the new container.
    Start,
    /// The new container was started; the old one waits, stopped, for commit or revert.
    Started,
    /// Removing the old container: the new one stays.
    Commit,
    /// Removing the new container and bringing the old one back.
    Revert,
}

impl ReplaceStage {
    /// Every stage, in order.
    pub const ALL: [ReplaceStage; 8] = [
        ReplaceStage::Stop,
        ReplaceStage::Rename,
        ReplaceStage::Create,
        ReplaceStage::Connect,
        ReplaceStage::Start,
        ReplaceStage::Started,
        ReplaceStage::Commit,
        ReplaceStage::Revert,
    ];

    /// The stage's name as journaled, e.g. `stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplaceStage::Stop => "stop",
            ReplaceStage::Rename => "rename",
            ReplaceStage::Create => "create",
            ReplaceStage::Connect => "connect",
            ReplaceStage::Start => "start",
            ReplaceStage::Started => "started",
            ReplaceStage::Commit => "commit",
            ReplaceStage::Revert => "revert",
        }
    }

    /// The stage a journaled name stands for.
    pub fn from_name(name: &str) -> Option<ReplaceStage> {
        ReplaceStage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == name)
    }

    /// What the stage does, for error messages.
    fn doing(self) -> &'static str {
        match self {
            ReplaceStage::Stop => "stopping the old container",
            ReplaceStage::Rename => "renaming the old container",
            ReplaceStage::Create => "creating the new container",
            ReplaceStage::Connect => "connecting the new container to its networks",
            ReplaceStage::Start => "starting the new container",
            ReplaceStage::Started => "waiting for commit or revert",
            ReplaceStage::Commit => "removing the old container",
            ReplaceStage::Revert => "bringing the old container back",
        }
    }
}

/// What a journal needs to know about one replacement to finish or undo it after a crash:
/// plain data, no secrets (the new container's environment is not part of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacementState {
    /// The container's name, carried by the old container until the rename and by the
    /// new one from its creation.
    pub name: String,
    /// Id of the old container.
    pub old_id: String,
    /// The old container's temporary name, `<name>.deckhand-old`.
    pub old_name: String,
    /// Whether the old container was running, and so must run again if it comes back.
    pub old_was_running: bool,
    /// The old container's stop grace period, in seconds.
    pub stop_grace_secs: i64,
    /// The image the new container is created from.
    pub new_image: String,
    /// Id of the new container, once created.
    pub new_id: Option<String>,
    /// The stage about to run, or [`ReplaceStage::Started`] when all have run.
    pub stage: ReplaceStage,
}

/// A replacement being carried out one stage at a time: [`Replacement::advance`] runs the
/// next stage. Dropping it between stages leaves Docker exactly as that stage left it,
/// which is what a crash does; [`DockerHost::settle_replacement`] settles that.
pub struct Replacement {
    state: ReplacementState,
    body: Option<ContainerCreateBody>,
    plan: NetworkPlan,
    started: Instant,
}

impl std::fmt::Debug for Replacement {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The create body holds the container's environment, which may hold secrets.
        formatter
            .debug_struct("Replacement")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Replacement {
    /// Where the replacement stands: the stage [`Replacement::advance`] runs next.
    pub fn state(&self) -> &ReplacementState {
        &self.state
    }

    /// Whether every stage has run: the new container was started.
    pub fn is_started(&self) -> bool {
        self.state.stage == ReplaceStage::Started
    }

    /// Runs the next stage. When a stage after the stop fails, the old container is
    /// restored (renamed back and started again if it was running) before the error is
    /// returned; when the stop itself fails, Deckhand waits for the old container to stop
    /// and starts it again.
    ///
    /// # Errors
    ///
    /// [`DockerError::RecreateFailed`] when a stage failed and the old container was
    /// restored; [`DockerError::RestoreFailed`] when restoring failed too.
    pub async fn advance(&mut self, host: &DockerHost) -> Result<(), DockerError> {
        let stage = self.state.stage;
        let outcome = match stage {
            ReplaceStage::Stop => {
                host.stop_with_grace(&self.state.old_id, self.state.stop_grace_secs)
                    .await
            }
            ReplaceStage::Rename => host.rename(&self.state.old_id, &self.state.old_name).await,
            ReplaceStage::Create => {
                let body = self.body.take().unwrap_or_default();
                match host.create_named(&self.state.name, body).await {
                    Ok(new_id) => {
                        self.state.new_id = Some(new_id);
                        Ok(())
                    }
                    // A create that timed out may still have made the container; it now
                    // carries the name and is ours to remove.
                    Err(error @ DockerError::Timeout { .. }) => {
                        self.state.new_id = host
                            .inspect_if_exists(&self.state.name)
                            .await
                            .ok()
                            .flatten()
                            .map(|container| container.id)
                            .filter(|id| *id != self.state.old_id);
                        Err(error)
                    }
                    Err(error) => Err(error),
                }
            }
            ReplaceStage::Connect => match &self.state.new_id {
                Some(new_id) => host.connect_networks(new_id, &self.plan.extra).await,
                None => Ok(()),
            },
            ReplaceStage::Start => match &self.state.new_id {
                Some(new_id) => host.start(new_id).await,
                None => Ok(()),
            },
            ReplaceStage::Started | ReplaceStage::Commit | ReplaceStage::Revert => return Ok(()),
        };
        match outcome {
            Ok(()) => {
                self.state.stage = next_stage(stage);
                if self.state.stage == ReplaceStage::Started {
                    tracing::info!(
                        host = %host.name(),
                        service = %self.state.name,
                        image = %self.state.new_image,
                        elapsed_ms = self.started.elapsed().as_millis() as u64,
                        "container replaced"
                    );
                }
                Ok(())
            }
            Err(failure) => {
                let restored = host.undo_replacement(&self.state).await;
                Err(match restored {
                    Ok(()) => DockerError::RecreateFailed {
                        container: self.state.name.clone(),
                        host: host.name().to_string(),
                        stage: stage.doing().to_string(),
                        source: Box::new(failure),
                    },
                    Err(restore_error) => DockerError::RestoreFailed {
                        container: self.state.name.clone(),
                        host: host.name().to_string(),
                        stage: stage.doing().to_string(),
                        failure: failure.chain(),
                        restore_failure: restore_error.chain(),
                    },
                })
            }
        }
    }

    /// The finished replacement, for commit or revert.
    pub fn finish(self) -> Recreated {
        Recreated {
            name: self.state.name,
            new_id: self.state.new_id.unwrap_or_default(),
            old_id: self.state.old_id,
            old_name: self.state.old_name,
            old_was_running: self.state.old_was_running,
            new_image: self.state.new_image,
            stop_grace_secs: self.state.stop_grace_secs,
        }
    }
}

fn next_stage(stage: ReplaceStage) -> ReplaceStage {
    match stage {
        ReplaceStage::Stop => ReplaceStage::Rename,
        ReplaceStage::Rename => ReplaceStage::Create,
        ReplaceStage::Create => ReplaceStage::Connect,
        ReplaceStage::Connect => ReplaceStage::Start,
        other => ReplaceStage::Started.max(other),
    }
}

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
    /// The old container's stop grace period, in seconds.
    pub stop_grace_secs: i64,
}

impl Recreated {
    /// The journal's view of this replacement at `stage` (commit or revert, usually).
    pub fn state(&self, stage: ReplaceStage) -> ReplacementState {
        ReplacementState {
            name: self.name.clone(),
            old_id: self.old_id.clone(),
            old_name: self.old_name.clone(),
            old_was_running: self.old_was_running,
            stop_grace_secs: self.stop_grace_secs,
            new_image: self.new_image.clone(),
            new_id: Some(self.new_id.clone()),
            stage,
        }
    }

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

impl DockerHost {
    /// Replaces `old` with a container from `new_image` that keeps everything else: env,
    /// explicit cmd and entrypoint, mounts and volumes, networks with aliases, published
    /// ports, labels (compose's included), restart policy, healthcheck, user and working
    /// dir. Values the old container inherited from its image are left for the new image
    /// to supply. Runs every stage of [`DockerHost::prepare_replacement`] at once.
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
        let mut replacement = self
            .prepare_replacement(old, new_image, env_overrides)
            .await?;
        while !replacement.is_started() {
            replacement.advance(self).await?;
        }
        Ok(replacement.finish())
    }

    /// Checks that `old` can be replaced by a container from `new_image` (with `env_overrides`
    /// applied, see [`DockerHost::recreate_with_env`]) and works out the new container,
    /// without changing anything. The stages then run one at a time through
    /// [`Replacement::advance`].
    ///
    /// # Errors
    ///
    /// [`DockerError::ImageMissing`], [`DockerError::UnfinishedReplacement`] (a
    /// `.deckhand-old` container is still there), an auto-removing container, or API
    /// failures; nothing was changed.
    pub async fn prepare_replacement(
        &self,
        old: &ContainerInfo,
        new_image: &str,
        env_overrides: &[(String, String)],
    ) -> Result<Replacement, DockerError> {
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
        Ok(Replacement {
            state: ReplacementState {
                name,
                old_id: old.id.clone(),
                old_name,
                old_was_running: old.state.running,
                stop_grace_secs: stop_grace_of(&raw),
                new_image: new_image.to_string(),
                new_id: None,
                stage: ReplaceStage::Stop,
            },
            body: Some(body),
            plan,
            started,
        })
    }

    /// Undoes a failed stage of a replacement in this process: the new container (if one
    /// was created) is removed, the old one gets its name back and runs again if it ran.
    /// A failed stop may still be under way in Docker, so the old container is first
    /// allowed to finish stopping.
    async fn undo_replacement(&self, state: &ReplacementState) -> Result<(), DockerError> {
        if let Some(new_id) = &state.new_id {
            self.remove(new_id).await?;
        }
        if state.stage >= ReplaceStage::Create {
            self.rename(&state.old_id, &state.name).await?;
        }
        if state.old_was_running {
            if state.stage == ReplaceStage::Stop {
                self.wait_stopped(&state.old_id, state.stop_grace_secs)
                    .await?;
            }
            self.start(&state.old_id).await?;
        }
        Ok(())
    }

    /// Waits until a container whose stop may be under way is no longer running, for at
    /// most its grace period plus the host's time limit.
    pub(super) async fn wait_stopped(
        &self,
        container: &str,
        grace_secs: i64,
    ) -> Result<(), DockerError> {
        let deadline = Instant::now() + self.stop_limit(grace_secs) + Duration::from_secs(1);
        loop {
            let running = self
                .inspect_if_exists(container)
                .await?
                .is_some_and(|info| info.state.running);
            if !running || Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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

    pub(super) async fn rename(&self, container: &str, new_name: &str) -> Result<(), DockerError> {
        let options = RenameContainerOptionsBuilder::default()
            .name(new_name)
            .build();
        self.call(
            format!("renaming container \"{container}\" to \"{new_name}\""),
            self.client().rename_container(container, options),
        )
        .await
    }

    /// Stops a container, allowing it `grace_secs` before Docker kills it. The call waits
    /// for the whole grace period: both its own limit and the client's wait for the
    /// engine's answer cover the grace period plus a margin, so a container that takes its
    /// time (say `stop_grace_period: 45s` on a host with a 30 s limit) is stopped, not
    /// abandoned mid-stop.
    pub(super) async fn stop_with_grace(
        &self,
        container: &str,
        grace_secs: i64,
    ) -> Result<(), DockerError> {
        let options = StopContainerOptionsBuilder::default()
            .t(i32::try_from(grace_secs).unwrap_or(i32::MAX))
            .build();
        let limit = self.stop_limit(grace_secs);
        self.call_within(
            format!("stopping container \"{container}\""),
            limit,
            self.client_for_long_call(limit)
                .stop_container(container, Some(options)),
        )
        .await
    }

    /// How long a stop with `grace_secs` may take: the grace period, the kill after it,
    /// and the host's ordinary time limit for the call itself.
    pub(super) fn stop_limit(&self, grace_secs: i64) -> Duration {
        self.timeout() + Duration::from_secs(grace_secs.unsigned_abs()) + STOP_MARGIN
    }
}

/// A container's own stop grace period (`stop_grace_period` in compose, `--stop-timeout`),
/// or Docker's default.
pub(super) fn stop_grace_of(raw: &ContainerInspectResponse) -> i64 {
    raw.config
        .as_ref()
        .and_then(|config| config.stop_timeout)
        .unwrap_or(DEFAULT_STOP_GRACE_SECS)
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
