//! The Docker Engine layer: everything Deckhand does to a Docker host goes through here.
//!
//! This module owns the connection to each host (API version negotiation, timeouts, the
//! time spent inside Docker calls), service discovery by compose labels or container name,
//! images (inspect, pull, tag), container replacement in journaled stages with commit/revert
//! and the settling of replacements an interrupted process left behind, one-off
//! containers, health waits, exec, logs, stats and the host-wide views an incident report
//! needs (networks, disk usage). [`images`] builds the example stack's images and [`stack`]
//! brings that stack up the way docker-compose would.
//!
//! It is the only place that names bollard types: callers see our own plain structs and
//! enums, and one error type, [`DockerError`]. It deliberately knows nothing about
//! environments, releases, policy or chat; the executor composes these calls into runbook
//! steps. It never spawns the docker CLI and never builds a shell command from input.

#![warn(missing_docs)]

mod diagnostics;
mod discovery;
mod error;
mod exec;
mod files;
mod health;
mod host;
mod image;
pub mod images;
mod lifecycle;
mod logs;
mod overrides;
mod prune;
mod recreate;
mod run_once;
mod settle;
pub mod stack;

pub use diagnostics::{DiskUsage, MemoryUsage, NetworkInfo, NetworkMember, UsageSummary};
pub use discovery::{
    ContainerInfo, ContainerState, Health, HealthStatus, NetworkAttachment, PublishedPort,
    ServiceSelector,
};
pub use error::DockerError;
pub use exec::{Exec, ExecOutput};
pub use health::HealthOutcome;
pub use host::{ApiTime, DockerHost, HostSpec, TlsFiles};
pub use image::{ImageInfo, PullOutcome, RegistryAuth};
pub use logs::{LogLine, LogQuery, LogStream};
pub use prune::{ContainerScope, DanglingImage, StoppedContainer};
pub use recreate::{Recreated, ReplaceStage, Replacement, ReplacementState};
pub use run_once::{OneOff, RunOnce, RunOutput};
pub use settle::{LeftoverOutcome, SettleChoice};

/// Label docker-compose puts on every container it manages, naming the project.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
/// Label docker-compose puts on every container it manages, naming the service.
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
/// Label docker-compose sets to `True` on `docker-compose run` containers.
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
/// Label docker-compose uses to number the replicas of a service.
pub const LABEL_CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
/// Suffix given to a container's name while its replacement is on probation.
pub const OLD_CONTAINER_SUFFIX: &str = ".deckhand-old";
