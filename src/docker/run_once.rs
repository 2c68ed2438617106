//! One-off containers: the runbook's `docker-compose run --rm backend npm run db:migrate`.
//!
//! The container takes the env, networks, user and working dir of a service container
//! (what it set explicitly; the new image supplies its own defaults), is labelled one-off so
//! discovery and compose ignore it, and is always removed afterwards.

use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, NetworkingConfig};
use bollard::query_parameters::WaitContainerOptionsBuilder;
use futures_util::StreamExt;

use super::discovery::ContainerInfo;
use super::error::DockerError;
use super::host::DockerHost;
use super::overrides::{explicit_config, network_plan};
use super::{LABEL_CONTAINER_NUMBER, LABEL_ONEOFF};

/// Labels of the service container that must not be copied to a one-off container.
const LABELS_NOT_COPIED: [&str; 2] = [LABEL_CONTAINER_NUMBER, "com.docker.compose.config-hash"];

/// A one-off command in a container shaped like a service's.
#[derive(Debug, Clone)]
pub struct RunOnce<'a> {
    /// Image to run, typically the version about to be deployed.
    pub image: String,
    /// The service container whose env, networks, user and working dir to use.
    pub like: &'a ContainerInfo,
    /// Command, e.g. `["npm", "run", "db:migrate"]`.
    pub cmd: Vec<String>,
    /// Time allowed from start to exit.
    pub timeout: Duration,
}

/// How a one-off container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// Exit code of the command.
    pub exit_code: i64,
    /// The last 20 lines of its stdout and stderr.
    pub last_lines: Vec<String>,
}

/// A one-off container that was started and not yet waited for. Dropping it leaves the
/// container as it is (as a crash would); [`OneOff::finish`] waits for it and removes it.
#[derive(Debug)]
pub struct OneOff {
    id: String,
    timeout: Duration,
}

impl OneOff {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for the command to exit (within the request's timeout), collects its exit
    /// code and last lines, and removes the container, also when waiting fails.
    ///
    /// # Errors
    ///
    /// [`DockerError::Timeout`] when it runs longer than its timeout; API failures.
    pub async fn finish(self, host: &DockerHost) -> Result<RunOutput, DockerError> {
        let guard = RemoveOnDrop {
            host: host.clone(),
            container: Some(self.id.clone()),
        };
        let result = host.wait_one_off(&self.id, self.timeout).await;
        guard.remove_now().await;
        result
    }
}

impl DockerHost {
    /// Runs a command to completion in a fresh container and removes it, also when the
    /// command times out or fails.
    ///
    /// # Errors
    ///
    /// [`DockerError::Timeout`] when it runs longer than `timeout`; API failures, e.g. the
    /// image is missing.
    pub async fn run_once(&self, request: RunOnce<'_>) -> Result<RunOutput, DockerError> {
        self.run_once_labelled(request, &[]).await
    }

    /// Like [`DockerHost::run_once`], with extra labels on the container, so that whoever
    /// started it can find and remove it even if it was interrupted before it could (see
    /// [`DockerHost::remove_labelled`]).
    ///
    /// # Errors
    ///
    /// As [`DockerHost::run_once`].
    pub async fn run_once_labelled(
        &self,
        request: RunOnce<'_>,
        labels: &[(String, String)],
    ) -> Result<RunOutput, DockerError> {
        self.start_one_off(request, labels)
            .await?
            .finish(self)
            .await
    }

    /// Creates and starts the one-off container (with extra `labels`) without waiting
    /// for it; a container that cannot be started is removed again.
    ///
    /// # Errors
    ///
    /// API failures, e.g. the image is missing.
    pub async fn start_one_off(
        &self,
        request: RunOnce<'_>,
        labels: &[(String, String)],
    ) -> Result<OneOff, DockerError> {
        let name = format!("{}_run_{:08x}", request.like.name, rand::random::<u32>());
        let (mut body, extra_networks) = self.one_off_body(&request).await?;
        if let Some(body_labels) = body.labels.as_mut() {
            body_labels.extend(labels.iter().cloned());
        }
        let id = self.create_named(&name, body).await?;
        let guard = RemoveOnDrop {
            host: self.clone(),
            container: Some(id.clone()),
        };
        let started = async {
            self.connect_networks(&id, &extra_networks).await?;
            self.start(&id).await
        }
        .await;
        match started {
            Ok(()) => {
                guard.keep();
                Ok(OneOff {
                    id,
                    timeout: request.timeout,
                })
            }
            Err(error) => {
                guard.remove_now().await;
                Err(error)
            }
        }
    }

    async fn one_off_body(
        &self,
        request: &RunOnce<'_>,
    ) -> Result<
        (
            ContainerCreateBody,
            Vec<(String, bollard::models::EndpointSettings)>,
        ),
        DockerError,
    > {
        let raw = self.inspect_raw(&request.like.id).await?;
        let image_config = self
            .image_config(raw.image.as_deref().unwrap_or_default())
            .await?;
        let explicit = explicit_config(&raw.config.clone().unwrap_or_default(), &image_config);
        // A one-off container joins the service's networks without its aliases: otherwise
        // the service's DNS name would also lead to the migration container.
        let mut plan = network_plan(&raw);
        for (_, endpoint) in plan.primary.iter_mut().chain(plan.extra.iter_mut()) {
            endpoint.aliases = None;
        }
        let mut labels = explicit.labels;
        for label in LABELS_NOT_COPIED {
            labels.remove(label);
        }
        labels.insert(LABEL_ONEOFF.to_string(), "True".to_string());
        labels.insert("deckhand.run-once".to_string(), request.like.name.clone());
        let network_mode = raw
            .host_config
            .and_then(|host_config| host_config.network_mode);
        let body = ContainerCreateBody {
            image: Some(request.image.clone()),
            cmd: Some(request.cmd.clone()),
            env: Some(explicit.env),
            user: explicit.user,
            working_dir: explicit.working_dir,
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode,
                ..Default::default()
            }),
            networking_config: plan.primary.map(|(network, endpoint)| NetworkingConfig {
                endpoints_config: Some([(network, endpoint)].into_iter().collect()),
            }),
            ..Default::default()
        };
        Ok((body, plan.extra))
    }

    async fn wait_one_off(&self, id: &str, timeout: Duration) -> Result<RunOutput, DockerError> {
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        // The wait's answer carries the exit code, but bollard turns a non-zero one into an
        // error; the exit code is read from inspect below instead.
        let mut wait = self.client().wait_container(id, Some(options));
        self.call_within(
            format!("waiting for one-off container \"{id}\""),
            timeout,
            async {
                while let Some(item) = wait.next().await {
                    match item {
                        Ok(_) | Err(bollard::errors::Error::DockerContainerWaitError { .. }) => {}
                        Err(other) => return Err(other),
                    }
                }
                Ok(())
            },
        )
        .await?;
        let state = self.inspect(id).await?.state;
        Ok(RunOutput {
            exit_code: state.exit_code.unwrap_or(-1),
            last_lines: self.last_lines(id).await?,
        })
    }
}

/// Removes a one-off container even if the future running it is dropped midway.
struct RemoveOnDrop {
    host: DockerHost,
    /// `None` once removed.
    container: Option<String>,
}

impl RemoveOnDrop {
    /// Leaves the container in place.
    fn keep(mut self) {
        self.container = None;
    }

    async fn remove_now(mut self) {
        let Some(container) = self.container.take() else {
            return;
        };
        if let Err(error) = self.host.remove(&container).await {
            tracing::warn!(
                host = %self.host.name(),
                container = %container,
                error = %error.chain(),
                "could not remove one-off container"
            );
        }
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(container) = self.container.take() else {
            return;
        };
        let host = self.host.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = host.remove(&container).await;
            });
        }
    }
}
