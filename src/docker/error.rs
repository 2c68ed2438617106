//! The one error type of the Docker layer.
//!
//! Messages are written for the on-call engineer: lower case, values quoted, no trailing
//! period, and the Docker host named. Foreign errors are boxed as the `source` so that no
//! bollard type leaks through this enum.

use std::time::Duration;

/// A foreign error kept as the cause of a [`DockerError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while talking to a Docker host.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The host could not be reached at all; nothing was sent to it.
    #[error("Docker host {endpoint} unreachable ({reason})")]
    Unreachable {
        /// The endpoint as configured, e.g. `tcp://10.0.0.5:2376`.
        endpoint: String,
        /// What the connection attempt ran into, e.g. `connection refused`.
        reason: String,
    },

    /// The configured endpoint cannot be used as written.
    #[error("invalid Docker endpoint \"{endpoint}\": {reason}")]
    InvalidEndpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },

    /// The request needs something this build of Deckhand does not have.
    #[error("{what} is not supported: {reason}")]
    Unsupported {
        /// What was asked for.
        what: String,
        /// Why it is missing and what to use instead.
        reason: String,
    },

    /// A Docker call did not finish within its time limit.
    #[error("{action} on host \"{host}\" timed out after {}s", after.as_secs())]
    Timeout {
        /// What Deckhand was doing, e.g. `stopping "web-1"`.
        action: String,
        /// The host's configured name.
        host: String,
        /// The limit that ran out.
        after: Duration,
    },

    /// The Docker API answered with an error.
    #[error("{action} on host \"{host}\"")]
    Api {
        /// What Deckhand was doing, e.g. `pulling "backend:v2"`.
        action: String,
        /// The host's configured name.
        host: String,
        /// The error from the Docker client.
        #[source]
        source: BoxError,
    },

    /// No container has this name or id.
    #[error("container \"{container}\" not found on host \"{host}\"")]
    ContainerNotFound {
        /// The name or id that was looked up.
        container: String,
        /// The host's configured name.
        host: String,
    },

    /// The image is not on the host and pulling it failed.
    #[error("image \"{reference}\" not found on host \"{host}\" and could not be pulled: {reason}")]
    ImageNotFound {
        /// The image reference, e.g. `ghcr.io/org/backend:v2`.
        reference: String,
        /// The host's configured name.
        host: String,
        /// Why the pull failed, as the registry or engine put it.
        reason: String,
    },

    /// The image is not on the host (and no pull was attempted).
    #[error("image \"{reference}\" not found on host \"{host}\"")]
    ImageMissing {
        /// The image reference.
        reference: String,
        /// The host's configured name.
        host: String,
    },

    /// An image build or import failed.
    #[error("building image \"{image}\" on host \"{host}\": {message}")]
    Build {
        /// The tag being built.
        image: String,
        /// The host's configured name.
        host: String,
        /// The builder's error and the last lines of its output.
        message: String,
    },

    /// A local file needed for an image build could not be read or made.
    #[error("{action} \"{path}\"")]
    File {
        /// What Deckhand was doing, e.g. `reading the rootfs tarball`.
        action: String,
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A container did not become ready (running, and healthy if it has a healthcheck).
    #[error("container \"{container}\" on host \"{host}\" did not become healthy: {outcome}")]
    NotHealthy {
        /// The container's name.
        container: String,
        /// The host's configured name.
        host: String,
        /// How the wait ended, with the last log lines.
        outcome: String,
    },

    /// A replacement was asked for while an earlier one is neither committed nor reverted.
    #[error(
        "cannot replace \"{container}\" on host \"{host}\": \"{leftover}\" from an unfinished replacement exists; commit or revert that replacement first"
    )]
    UnfinishedReplacement {
        /// The container's name.
        container: String,
        /// The old container kept by the earlier replacement.
        leftover: String,
        /// The host's configured name.
        host: String,
    },

    /// Replacing a container failed and the old container is running again.
    #[error(
        "replacing \"{container}\" on host \"{host}\" failed while {stage}; the old container was restored"
    )]
    RecreateFailed {
        /// The container's name.
        container: String,
        /// The host's configured name.
        host: String,
        /// The step that failed, e.g. `starting the new container`.
        stage: String,
        /// What went wrong in that step.
        #[source]
        source: Box<DockerError>,
    },

    /// Replacing a container failed and restoring the old one failed too.
    #[error(
        "replacing \"{container}\" on host \"{host}\" failed while {stage} ({failure}), and restoring the old container failed: {restore_failure}"
    )]
    RestoreFailed {
        /// The container's name.
        container: String,
        /// The host's configured name.
        host: String,
        /// The step that failed.
        stage: String,
        /// What went wrong in that step, with its causes.
        failure: String,
        /// What went wrong while restoring, with its causes.
        restore_failure: String,
    },
}

impl DockerError {
    /// Renders the error with all its causes, `outer: inner: innermost`.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            text.push_str(": ");
            text.push_str(&error.to_string());
            cause = error.source();
        }
        text
    }
}
