//! Starting, stopping, restarting and removing single containers (the runbook's
//! `/service restart` and the cleanup steps). Replacing containers is `recreate`'s job.

use std::time::Duration;

use bollard::query_parameters::{
    RemoveContainerOptionsBuilder, RestartContainerOptionsBuilder, StartContainerOptions,
};

use super::error::DockerError;
use super::host::DockerHost;

/// Grace period before Docker kills a container that ignores SIGTERM, as `docker stop`.
const STOP_GRACE_SECS: i64 = 10;

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

    /// Stops a container, killing it after 10 s if it ignores SIGTERM.
    ///
    /// # Errors
    ///
    /// API failures.
    pub async fn stop(&self, container: &str) -> Result<(), DockerError> {
        self.stop_with_grace(container, STOP_GRACE_SECS).await
    }

    /// Restarts a container with the same 10 s grace period as [`DockerHost::stop`].
    ///
    /// # Errors
    ///
    /// API failures.
    pub async fn restart(&self, container: &str) -> Result<(), DockerError> {
        let options = RestartContainerOptionsBuilder::default()
            .t(STOP_GRACE_SECS as i32)
            .build();
        let limit = self.timeout() + Duration::from_secs(STOP_GRACE_SECS as u64);
        self.call_within(
            format!("restarting container \"{container}\""),
            limit,
            self.client().restart_container(container, Some(options)),
        )
        .await
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
