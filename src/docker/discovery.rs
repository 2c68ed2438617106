//! Finding a service's containers and describing them in our own terms.
//!
//! Owns [`ServiceSelector`] (compose labels or a container name) and [`ContainerInfo`], the
//! inspected view every other part of Deckhand reads. It does not change containers.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use chrono::{DateTime, Utc};

use super::error::DockerError;
use super::host::DockerHost;
use super::{LABEL_CONTAINER_NUMBER, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE};

/// How a service's containers are found on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceSelector {
    /// Containers labelled by docker-compose with this project and service.
    Compose {
        /// `com.docker.compose.project`, e.g. `tasktracker`.
        project: String,
        /// `com.docker.compose.service`, e.g. `backend`.
        service: String,
    },
    /// The one container with this name.
    Container {
        /// The container's name, without the leading `/`.
        name: String,
    },
}

impl From<&crate::config::Selector> for ServiceSelector {
    /// How the Docker layer finds the containers of a configured service.
    fn from(selector: &crate::config::Selector) -> ServiceSelector {
        match selector {
            crate::config::Selector::Compose { project, service } => ServiceSelector::Compose {
                project: project.clone(),
                service: service.clone(),
            },
            crate::config::Selector::Container(name) => {
                ServiceSelector::Container { name: name.clone() }
            }
        }
    }
}

impl std::fmt::Display for ServiceSelector {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceSelector::Compose { project, service } => {
                write!(
                    formatter,
                    "compose service \"{service}\" of project \"{project}\""
                )
            }
            ServiceSelector::Container { name } => write!(formatter, "container \"{name}\""),
        }
    }
}

/// One container as inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// The image reference the container was created from, e.g. `backend:v1`.
    pub image_reference: String,
    /// The id of the image the container runs (`sha256:...`).
    pub image_id: String,
    /// The registry digest of that image (`repo@sha256:...`), when it came from a registry.
    pub image_digest: Option<String>,
    /// Run state.
    pub state: ContainerState,
    /// Docker healthcheck state.
    pub health: Health,
    /// All labels, including those inherited from the image.
    pub labels: BTreeMap<String, String>,
    /// Ports published on the host.
    pub ports: Vec<PublishedPort>,
    /// Networks the container is attached to.
    pub networks: Vec<NetworkAttachment>,
}

/// A container's run state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Docker's status word: `created`, `running`, `restarting`, `exited`, ...
    pub status: String,
    /// Whether the main process is running.
    pub running: bool,
    /// Exit code of the last run, when it has exited.
    pub exit_code: Option<i64>,
    /// Whether the kernel killed it for running out of memory.
    pub oom_killed: bool,
    /// How many times Docker restarted it under its restart policy.
    pub restart_count: u64,
    /// When it last started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it last stopped.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The state of a container's Docker healthcheck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Current verdict.
    pub status: HealthStatus,
    /// Output of the most recent probe, trimmed.
    pub last_output: Option<String>,
    /// Consecutive failed probes.
    pub failing_streak: u64,
}

/// Docker's healthcheck verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// The container has no healthcheck.
    None,
    /// Checks have not passed yet.
    Starting,
    /// The last checks passed.
    Healthy,
    /// The checks failed `retries` times in a row.
    Unhealthy,
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            HealthStatus::None => "none",
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        })
    }
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublishedPort {
    /// Port inside the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Host address it is bound to, e.g. `127.0.0.1` or `0.0.0.0`.
    pub host_ip: String,
    /// Port on the host.
    pub host_port: u16,
}

/// A container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAttachment {
    /// Network name.
    pub network: String,
    /// IPv4 address on that network, when running.
    pub ip_address: Option<String>,
    /// DNS aliases on that network.
    pub aliases: Vec<String>,
}

impl DockerHost {
    /// All containers of a service, stopped ones included, ordered by replica number then
    /// name. One-off containers (`docker-compose run`, Deckhand's `run_once`) and old
    /// containers kept during a replacement are left out.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn find_containers(
        &self,
        selector: &ServiceSelector,
    ) -> Result<Vec<ContainerInfo>, DockerError> {
        let mut containers = Vec::new();
        for id in self.container_ids(selector).await? {
            // A container can disappear between listing and inspecting it.
            if let Some(info) = self.inspect_if_exists(&id).await?
                && !is_oneoff(&info)
                && !info.name.ends_with(super::OLD_CONTAINER_SUFFIX)
            {
                containers.push(info);
            }
        }
        containers.sort_by_key(|info| (replica_number(info), info.name.clone()));
        Ok(containers)
    }

    /// Old containers a replacement left behind (named `<name>.deckhand-old`), for example
    /// after Deckhand was interrupted between replacing and committing.
    ///
    /// # Errors
    ///
    /// Connection and API failures.
    pub async fn find_leftovers(
        &self,
        selector: &ServiceSelector,
    ) -> Result<Vec<ContainerInfo>, DockerError> {
        let leftover_selector = match selector {
            ServiceSelector::Container { name } => ServiceSelector::Container {
                name: format!("{name}{}", super::OLD_CONTAINER_SUFFIX),
            },
            compose => compose.clone(),
        };
        let mut leftovers = Vec::new();
        for id in self.container_ids(&leftover_selector).await? {
            if let Some(info) = self.inspect_if_exists(&id).await?
                && info.name.ends_with(super::OLD_CONTAINER_SUFFIX)
            {
                leftovers.push(info);
            }
        }
        Ok(leftovers)
    }

    /// A container's environment variables, as `NAME` → value. They may hold
    /// secrets: callers wrap what they keep in `Secret` and never log it.
    ///
    /// # Errors
    ///
    /// When the container cannot be inspected.
    pub async fn env_of(&self, container: &str) -> Result<BTreeMap<String, String>, DockerError> {
        let raw = self.inspect_raw(container).await?;
        Ok(raw
            .config
            .and_then(|config| config.env)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|pair| {
                pair.split_once('=')
                    .map(|(name, value)| (name.to_string(), value.to_string()))
            })
            .collect())
    }

    /// Inspects one container by name or id.
    ///
    /// # Errors
    ///
    /// [`DockerError::ContainerNotFound`] when there is no such container.
    pub async fn inspect(&self, container: &str) -> Result<ContainerInfo, DockerError> {
        self.inspect_if_exists(container)
            .await?
            .ok_or_else(|| DockerError::ContainerNotFound {
                container: container.to_string(),
                host: self.name().to_string(),
            })
    }

    /// Inspects one container, `None` when it does not exist.
    pub(super) async fn inspect_if_exists(
        &self,
        container: &str,
    ) -> Result<Option<ContainerInfo>, DockerError> {
        let Some(raw) = self.inspect_raw_if_exists(container).await? else {
            return Ok(None);
        };
        let image_digest = match raw.image.as_deref() {
            Some(image_id) => self
                .image_info(image_id)
                .await?
                .and_then(|info| info.digest),
            None => None,
        };
        Ok(Some(container_info_from(raw, image_digest)))
    }

    /// The raw inspect response, for the modules that recreate containers from it.
    pub(super) async fn inspect_raw(
        &self,
        container: &str,
    ) -> Result<ContainerInspectResponse, DockerError> {
        self.inspect_raw_if_exists(container)
            .await?
            .ok_or_else(|| DockerError::ContainerNotFound {
                container: container.to_string(),
                host: self.name().to_string(),
            })
    }

    async fn inspect_raw_if_exists(
        &self,
        container: &str,
    ) -> Result<Option<ContainerInspectResponse>, DockerError> {
        let inspected = self
            .call(
                format!("inspecting container \"{container}\""),
                self.client()
                    .inspect_container(container, None::<InspectContainerOptions>),
            )
            .await;
        match inspected {
            Ok(raw) => Ok(Some(raw)),
            Err(error) if DockerHost::is_not_found(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Ids of the containers a selector matches, before filtering.
    async fn container_ids(&self, selector: &ServiceSelector) -> Result<Vec<String>, DockerError> {
        let name = match selector {
            ServiceSelector::Container { name } => return Ok(vec![name.clone()]),
            ServiceSelector::Compose { project, service } => (project, service),
        };
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_PROJECT}={}", name.0),
                format!("{LABEL_SERVICE}={}", name.1),
            ],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .call(
                format!("listing containers of {selector}"),
                self.client().list_containers(Some(options)),
            )
            .await?;
        Ok(summaries
            .into_iter()
            .filter_map(|summary| summary.id)
            .collect())
    }
}

/// Converts an inspect response into our view.
pub(super) fn container_info_from(
    raw: ContainerInspectResponse,
    image_digest: Option<String>,
) -> ContainerInfo {
    let config = raw.config.unwrap_or_default();
    let state = raw.state.unwrap_or_default();
    let network_settings = raw.network_settings.unwrap_or_default();
    let health = state.health.clone().unwrap_or_default();
    ContainerInfo {
        id: raw.id.unwrap_or_default(),
        name: raw
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image_reference: config.image.unwrap_or_default(),
        image_id: raw.image.unwrap_or_default(),
        image_digest,
        state: ContainerState {
            status: state
                .status
                .map(|status| status.to_string())
                .unwrap_or_default(),
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            restart_count: raw
                .restart_count
                .and_then(|count| u64::try_from(count).ok())
                .unwrap_or(0),
            started_at: parse_docker_time(state.started_at.as_deref()),
            finished_at: parse_docker_time(state.finished_at.as_deref()),
        },
        health: Health {
            status: match health.status {
                Some(HealthStatusEnum::STARTING) => HealthStatus::Starting,
                Some(HealthStatusEnum::HEALTHY) => HealthStatus::Healthy,
                Some(HealthStatusEnum::UNHEALTHY) => HealthStatus::Unhealthy,
                _ => HealthStatus::None,
            },
            last_output: health
                .log
                .and_then(|log| log.into_iter().last())
                .and_then(|result| result.output)
                .map(|output| output.trim().to_string()),
            failing_streak: health
                .failing_streak
                .and_then(|streak| u64::try_from(streak).ok())
                .unwrap_or(0),
        },
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        ports: published_ports(network_settings.ports.unwrap_or_default()),
        networks: network_attachments(network_settings.networks.unwrap_or_default()),
    }
}

fn published_ports(ports: bollard::models::PortMap) -> Vec<PublishedPort> {
    let mut published = Vec::new();
    for (container_port, bindings) in ports {
        let (port, protocol) = container_port
            .split_once('/')
            .unwrap_or((container_port.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for binding in bindings.unwrap_or_default() {
            let host_port = binding.host_port.as_deref().and_then(|p| p.parse().ok());
            if let Some(host_port) = host_port {
                published.push(PublishedPort {
                    container_port,
                    protocol: protocol.to_string(),
                    host_ip: binding.host_ip.unwrap_or_default(),
                    host_port,
                });
            }
        }
    }
    published.sort();
    published
}

fn network_attachments(
    networks: HashMap<String, bollard::models::EndpointSettings>,
) -> Vec<NetworkAttachment> {
    let mut attachments: Vec<NetworkAttachment> = networks
        .into_iter()
        .map(|(network, endpoint)| NetworkAttachment {
            network,
            ip_address: endpoint.ip_address.filter(|address| !address.is_empty()),
            aliases: endpoint.aliases.unwrap_or_default(),
        })
        .collect();
    attachments.sort_by(|left, right| left.network.cmp(&right.network));
    attachments
}

/// Docker writes `0001-01-01T00:00:00Z` for "never"; that becomes `None`.
fn parse_docker_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text?)
        .ok()?
        .with_timezone(&Utc);
    (parsed.timestamp() > 0).then_some(parsed)
}

fn is_oneoff(info: &ContainerInfo) -> bool {
    info.labels
        .get(LABEL_ONEOFF)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

fn replica_number(info: &ContainerInfo) -> u32 {
    info.labels
        .get(LABEL_CONTAINER_NUMBER)
        .and_then(|number| number.parse().ok())
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_is_none() {
        assert_eq!(parse_docker_time(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(parse_docker_time(None), None);
        let parsed = parse_docker_time(Some("2024-01-15T10:30:00.123456789Z"));
        assert_eq!(
            parsed.map(|time| time.to_rfc3339()),
            Some("2024-01-15T10:30:00.123456789+00:00".to_string())
        );
    }

    #[test]
    fn ports_without_host_binding_are_not_published() {
        let ports = bollard::models::PortMap::from([
            (
                "3000/tcp".to_string(),
                Some(vec![bollard::models::PortBinding {
                    host_ip: Some("127.0.0.1".to_string()),
                    host_port: Some("13000".to_string()),
                }]),
            ),
            ("9000/tcp".to_string(), None),
        ]);
        assert_eq!(
            published_ports(ports),
            vec![PublishedPort {
                container_port: 3000,
                protocol: "tcp".to_string(),
                host_ip: "127.0.0.1".to_string(),
                host_port: 13000,
            }]
        );
    }
}
