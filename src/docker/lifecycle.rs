//! Starting, stopping, restarting and removing single containers (the runbook's
//! `/service restart` and the cleanup steps). Replacing containers is `recreate`'s job.

use bollard::query_parameters::{
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StartContainerOptions,
};

use super::error::DockerError;
use super::host::DockerHost;
use super::recreate::stop_grace_of;

impl DockerHost {
    /// Starts a container; one that is already running stays as it is.
    ///
    /// # Errors
    ///
    /// API failures, e.g. the container's process cannot be started.
    pub async fn start(&self, container: &str) -> Result<(), DockerError> {
        self.call(
            format!("starting container \"{container}\""),
            self.client()
                .start_container(container, None::<StartContainerOptions>),
        )
        .await
    }

    /// Stops a container, allowing it its own stop grace period (`stop_grace_period`,
    /// `--stop-timeout`; Docker's 10 s when it sets none) before Docker kills it. The call
    /// waits for the whole grace period.
    ///
    /// # Errors
    ///
    /// API failures.
    pub async fn stop(&self, container: &str) -> Result<(), DockerError> {
        let grace = self.stop_grace(container).await?;
        self.stop_with_grace(container, grace).await
    }

    /// Restarts a container with the same grace period as [`DockerHost::stop`].
    ///
    /// # Errors
    ///
    /// API failures.
    pub async fn restart(&self, container: &str) -> Result<(), DockerError> {
        let grace = self.stop_grace(container).await?;
        let options = RestartContainerOptionsBuilder::default()
            .t(i32::try_from(grace).unwrap_or(i32::MAX))
            .build();
        let limit = self.stop_limit(grace);
        self.call_within(
            format!("restarting container \"{container}\""),
            limit,
            self.client_for_long_call(limit)
                .restart_container(container, Some(options)),
        )
        .await
    }

    /// A container's stop grace period in seconds.
    ///
    /// # Errors
    ///
    /// When the container cannot be inspected.
    pub async fn stop_grace(&self, container: &str) -> Result<i64, DockerError> {
        Ok(stop_grace_of(&self.inspect_raw(container).await?))
    }

    /// Removes a container, running or not. Its named and anonymous volumes are kept. A
    /// container that is already gone is not an error.
    ///
    /// # Errors
    ///
    /// API failures.
    pub async fn remove(&self, container: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let removed = self
            .call(
                format!("removing container \"{container}\""),
                self.client().remove_container(container, Some(options)),
            )
            .await;
        match removed {
            Err(error) if DockerHost::is_not_found(&error) => Ok(()),
            other => other,
        }
    }
}
