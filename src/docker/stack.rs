//! A compose-shaped stack brought up and down through the Engine API, labelled the way
//! docker-compose v1 labels what it creates, so `docker-compose -p <project> -f
//! docker/compose.yml ps | stop | start` manage it afterwards.
//!
//! [`StackSpec`] is the one description of the example stack: [`StackSpec::demo`] is what
//! `deckhand demo` runs, and [`StackSpec::to_compose_yaml`] renders the equivalent compose
//! file (`docker/compose.yml` is that rendering, checked by a test). This module does not
//! build images ([`super::images`] does) and does not compute compose's `config-hash`, so a
//! later `docker-compose up` recreates the containers once.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};

use super::error::DockerError;
use super::host::DockerHost;
use super::{LABEL_CONTAINER_NUMBER, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE};

/// The compose version whose labels the stack imitates.
const COMPOSE_VERSION: &str = "1.29.2";
/// Time a dependency gets to become healthy (postgres initialises its data on first start).
const DEPENDENCY_TIMEOUT: Duration = Duration::from_secs(180);
/// The compose network every service joins.
const DEFAULT_NETWORK: &str = "default";

/// A stack: services on one network, with named volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSpec {
    /// Compose project name; containers are named `<project>_<service>_<n>`.
    pub project: String,
    /// The compose file this stack corresponds to, recorded in compose's labels.
    pub compose_file: PathBuf,
    /// Labels put on every container, network and volume of the stack.
    pub labels: BTreeMap<String, String>,
    /// Named volumes, created as `<project>_<name>`.
    pub volumes: Vec<String>,
    /// Services, in any order; dependencies decide the start order.
    pub services: Vec<ServiceSpec>,
}

/// One service of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Service name, also its DNS name on the stack's network.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Command; the image's when empty.
    pub command: Vec<String>,
    /// Environment, `(name, value)`.
    pub environment: Vec<(String, String)>,
    /// Published ports.
    pub ports: Vec<PortSpec>,
    /// Named volumes mounted into the container.
    pub volumes: Vec<VolumeMount>,
    /// Services that must be up first.
    pub depends_on: Vec<Dependency>,
    /// Restart policy.
    pub restart: Restart,
    /// Number of containers.
    pub replicas: u32,
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Host address, e.g. `127.0.0.1`.
    pub host_ip: String,
    /// Host port; Docker picks a free one when `None`.
    pub host_port: Option<u16>,
    /// Port inside the container (TCP).
    pub container_port: u16,
}

/// A named volume mounted into a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The volume's name in the stack (without the project prefix).
    pub volume: String,
    /// Mount point in the container.
    pub target: String,
}

/// A service another one waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The service waited for.
    pub service: String,
    /// What it must reach first.
    pub condition: DependencyCondition,
}

/// compose's `depends_on` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyCondition {
    /// Its containers have started.
    Started,
    /// Its containers are healthy.
    Healthy,
}

/// compose's `restart` policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Never restart.
    No,
    /// Restart unless stopped by hand.
    UnlessStopped,
    /// Always restart.
    Always,
}

/// What [`down`] does with the stack's named volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumePolicy {
    /// Keep them, with their data (`docker-compose down`).
    Keep,
    /// Remove them too (`docker-compose down -v`).
    Remove,
}

impl StackSpec {
    /// The example environment of the runbook: postgres, redis, the backend (v1), nginx
    /// in front of it, the Web IDE and the git web browser, published on 127.0.0.1 only.
    /// `compose_file` is where `docker/compose.yml` lives on this machine.
    pub fn demo(compose_file: PathBuf) -> StackSpec {
        let database_password = "tasktracker-demo-password";
        let pairs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        };
        let service = |name: &str, image: &str| ServiceSpec {
            name: name.to_string(),
            image: image.to_string(),
            command: Vec::new(),
            environment: Vec::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            depends_on: Vec::new(),
            restart: Restart::UnlessStopped,
            replicas: 1,
        };
        let local = |host_port: u16, container_port: u16| PortSpec {
            host_ip: "127.0.0.1".to_string(),
            host_port: Some(host_port),
            container_port,
        };
        let mount = |volume: &str, target: &str| VolumeMount {
            volume: volume.to_string(),
            target: target.to_string(),
        };
        let after = |service: &str, condition| Dependency {
            service: service.to_string(),
            condition,
        };
        StackSpec {
            project: "deckhand-demo".to_string(),
            compose_file,
            labels: BTreeMap::new(),
            volumes: vec!["postgres_data".to_string(), "nginx_ssl".to_string()],
            services: vec![
                ServiceSpec {
                    environment: pairs(&[
                        ("POSTGRES_USER", "tasktracker"),
                        ("POSTGRES_PASSWORD", database_password),
                        ("POSTGRES_DB", "tasktracker"),
                    ]),
                    ports: vec![local(15432, 5432)],
                    volumes: vec![mount("postgres_data", "/var/lib/postgresql/data")],
                    ..service("postgres", "deckhand-demo/postgres:15")
                },
                ServiceSpec {
                    ports: vec![local(16379, 6379)],
                    ..service("redis", "deckhand-demo/redis:7")
                },
                ServiceSpec {
                    environment: pairs(&[
                        (
                            "DATABASE_URL",
                            "postgres://tasktracker:tasktracker-demo-password@postgres:5432/tasktracker",
                        ),
                        ("REDIS_URL", "redis://redis:6379"),
                        ("JWT_SECRET", "deckhand-demo-jwt-secret"),
                        ("NODE_ENV", "staging"),
                    ]),
                    ports: vec![local(13000, 3000)],
                    depends_on: vec![
                        after("postgres", DependencyCondition::Healthy),
                        after("redis", DependencyCondition::Healthy),
                    ],
                    ..service("backend", "deckhand-demo/tasktracker-backend:v1")
                },
                ServiceSpec {
                    environment: pairs(&[("SERVER_NAME", "localhost"), ("SSL_DAYS", "30")]),
                    ports: vec![local(18080, 80), local(18443, 443)],
                    volumes: vec![mount("nginx_ssl", "/etc/nginx/ssl")],
                    depends_on: vec![after("backend", DependencyCondition::Started)],
                    ..service("nginx", "deckhand-demo/nginx:bookworm")
                },
                ServiceSpec {
                    environment: pairs(&[("PASSWORD", "admin")]),
                    ports: vec![local(18081, 8080)],
                    ..service("ide", "deckhand-demo/ide:v1")
                },
                ServiceSpec {
                    ports: vec![local(13001, 3001)],
                    ..service("gitweb", "deckhand-demo/gitweb:v1")
                },
            ],
        }
    }

    /// The same stack under another compose project, with every published
    /// host port mapped through `port_for`: a second environment on the same
    /// host (the demo's production), or an isolated copy for a test.
    pub fn relocated(mut self, project: &str, mut port_for: impl FnMut(u16) -> u16) -> StackSpec {
        self.project = project.to_string();
        for service in &mut self.services {
            for port in &mut service.ports {
                port.host_port = port.host_port.map(&mut port_for);
            }
        }
        self
    }

    /// The name of a service's `number`th container, as docker-compose v1 names it.
    pub fn container_name(&self, service: &str, number: u32) -> String {
        format!("{}_{service}_{number}", self.project)
    }

    /// The stack's network name.
    pub fn network_name(&self) -> String {
        format!("{}_{DEFAULT_NETWORK}", self.project)
    }

    /// A named volume's name on the host.
    pub fn volume_name(&self, volume: &str) -> String {
        format!("{}_{volume}", self.project)
    }

    /// Renders the compose file (format 2.4, docker-compose v1) equivalent to this spec.
    pub fn to_compose_yaml(&self) -> String {
        let mut yaml = String::new();
        yaml.push_str(
            "# The example stack of `deckhand demo`, for docker-compose v1 (file format 2.4).\n\
             # Generated from StackSpec::demo in src/docker/stack.rs; a unit test checks that\n\
             # they agree (DECKHAND_WRITE_COMPOSE=1 cargo test compose_file rewrites this file).\n\
             # Images are built locally by src/docker/images.rs (`deckhand demo` does it).\n",
        );
        yaml.push_str("version: \"2.4\"\nservices:\n");
        for service in &self.services {
            render_service(&mut yaml, service, &self.labels);
        }
        if !self.volumes.is_empty() {
            yaml.push_str("volumes:\n");
            for volume in &self.volumes {
                render_labelled_object(&mut yaml, volume, &self.labels);
            }
        }
        yaml.push_str("networks:\n");
        render_labelled_object(&mut yaml, DEFAULT_NETWORK, &self.labels);
        yaml
    }
}

/// Creates the stack's network, volumes and containers that do not exist yet and starts
/// its containers, dependencies first, waiting for those others need healthy. Existing
/// containers are started, not changed.
///
/// # Errors
///
/// API failures, and [`DockerError::NotHealthy`] when a dependency does not become
/// healthy.
pub async fn up(host: &DockerHost, spec: &StackSpec) -> Result<(), DockerError> {
    ensure_network(host, spec).await?;
    for volume in &spec.volumes {
        let mut labels = spec.labels.clone();
        labels.insert(LABEL_PROJECT.to_string(), spec.project.clone());
        labels.insert("com.docker.compose.volume".to_string(), volume.clone());
        labels.insert(
            "com.docker.compose.version".to_string(),
            COMPOSE_VERSION.to_string(),
        );
        let request = VolumeCreateRequest {
            name: Some(spec.volume_name(volume)),
            labels: Some(labels.into_iter().collect()),
            ..Default::default()
        };
        host.call(
            format!("creating volume \"{}\"", spec.volume_name(volume)),
            host.client().create_volume(request),
        )
        .await?;
    }
    for service in start_order(&spec.services) {
        start_service(host, spec, service).await?;
        if is_awaited_healthy(spec, &service.name) {
            for number in 1..=service.replicas {
                let container = spec.container_name(&service.name, number);
                let outcome = host.wait_healthy(&container, DEPENDENCY_TIMEOUT).await?;
                if !outcome.is_ready() {
                    return Err(DockerError::NotHealthy {
                        container,
                        host: host.name().to_string(),
                        outcome: outcome.to_string(),
                    });
                }
            }
        }
    }
    tracing::info!(host = %host.name(), project = %spec.project, "stack is up");
    Ok(())
}

/// Removes every container of the stack's project (one-off ones included), its network,
/// and with [`VolumePolicy::Remove`] its volumes.
///
/// # Errors
///
/// API failures.
pub async fn down(
    host: &DockerHost,
    spec: &StackSpec,
    volumes: VolumePolicy,
) -> Result<(), DockerError> {
    let project_filter =
        HashMap::from([("label", vec![format!("{LABEL_PROJECT}={}", spec.project)])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&project_filter)
        .build();
    let containers = host
        .call(
            format!("listing containers of project \"{}\"", spec.project),
            host.client().list_containers(Some(options)),
        )
        .await?;
    for container in containers.into_iter().filter_map(|summary| summary.id) {
        host.remove(&container).await?;
    }
    let network = spec.network_name();
    let removed = host
        .call(
            format!("removing network \"{network}\""),
            host.client().remove_network(&network),
        )
        .await;
    match removed {
        Err(error) if !DockerHost::is_not_found(&error) => return Err(error),
        _ => {}
    }
    if volumes == VolumePolicy::Remove {
        let options = ListVolumesOptionsBuilder::default()
            .filters(&project_filter)
            .build();
        let listed = host
            .call("listing volumes", host.client().list_volumes(Some(options)))
            .await?;
        for volume in listed.volumes.unwrap_or_default() {
            host.call(
                format!("removing volume \"{}\"", volume.name),
                host.client().remove_volume(
                    &volume.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                ),
            )
            .await?;
        }
    }
    tracing::info!(host = %host.name(), project = %spec.project, "stack is down");
    Ok(())
}

async fn ensure_network(host: &DockerHost, spec: &StackSpec) -> Result<(), DockerError> {
    let network = spec.network_name();
    let inspected = host
        .call(
            format!("inspecting network \"{network}\""),
            host.client().inspect_network(&network, None),
        )
        .await;
    match inspected {
        Ok(_) => return Ok(()),
        Err(error) if !DockerHost::is_not_found(&error) => return Err(error),
        Err(_) => {}
    }
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_PROJECT.to_string(), spec.project.clone());
    labels.insert(
        "com.docker.compose.network".to_string(),
        DEFAULT_NETWORK.to_string(),
    );
    labels.insert(
        "com.docker.compose.version".to_string(),
        COMPOSE_VERSION.to_string(),
    );
    let request = NetworkCreateRequest {
        name: network.clone(),
        driver: Some("bridge".to_string()),
        labels: Some(labels.into_iter().collect()),
        ..Default::default()
    };
    host.call(
        format!("creating network \"{network}\""),
        host.client().create_network(request),
    )
    .await
    .map(|_| ())
}

/// Creates (when missing) and starts each replica of a service.
async fn start_service(
    host: &DockerHost,
    spec: &StackSpec,
    service: &ServiceSpec,
) -> Result<(), DockerError> {
    for number in 1..=service.replicas {
        let name = spec.container_name(&service.name, number);
        let exists = match host.inspect(&name).await {
            Ok(_) => true,
            Err(DockerError::ContainerNotFound { .. }) => false,
            Err(error) => return Err(error),
        };
        if !exists {
            host.create_named(&name, container_body(spec, service, number))
                .await?;
        }
        host.start(&name).await?;
    }
    Ok(())
}

/// The create request for one replica, with docker-compose v1's labels.
fn container_body(spec: &StackSpec, service: &ServiceSpec, number: u32) -> ContainerCreateBody {
    let working_dir = spec
        .compose_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut labels = spec.labels.clone();
    labels.extend([
        (LABEL_PROJECT.to_string(), spec.project.clone()),
        (LABEL_SERVICE.to_string(), service.name.clone()),
        (LABEL_CONTAINER_NUMBER.to_string(), number.to_string()),
        (LABEL_ONEOFF.to_string(), "False".to_string()),
        (
            "com.docker.compose.version".to_string(),
            COMPOSE_VERSION.to_string(),
        ),
        (
            "com.docker.compose.project.config_files".to_string(),
            spec.compose_file.display().to_string(),
        ),
        (
            "com.docker.compose.project.working_dir".to_string(),
            working_dir.display().to_string(),
        ),
    ]);
    let port_bindings = service
        .ports
        .iter()
        .map(|port| {
            let binding = PortBinding {
                host_ip: Some(port.host_ip.clone()),
                host_port: Some(port.host_port.map(|p| p.to_string()).unwrap_or_default()),
            };
            (format!("{}/tcp", port.container_port), Some(vec![binding]))
        })
        .collect();
    let restart = match service.restart {
        Restart::No => RestartPolicyNameEnum::NO,
        Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        Restart::Always => RestartPolicyNameEnum::ALWAYS,
    };
    let network = spec.network_name();
    ContainerCreateBody {
        image: Some(service.image.clone()),
        cmd: (!service.command.is_empty()).then(|| service.command.clone()),
        env: Some(
            service
                .environment
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
        ),
        labels: Some(labels.into_iter().collect()),
        exposed_ports: Some(
            service
                .ports
                .iter()
                .map(|port| format!("{}/tcp", port.container_port))
                .collect(),
        ),
        host_config: Some(HostConfig {
            binds: Some(
                service
                    .volumes
                    .iter()
                    .map(|mount| format!("{}:{}:rw", spec.volume_name(&mount.volume), mount.target))
                    .collect(),
            ),
            port_bindings: Some(port_bindings),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            network_mode: Some(network.clone()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network,
                EndpointSettings {
                    aliases: Some(vec![service.name.clone()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// Services ordered so each comes after what it depends on; a service naming an unknown
/// or cyclic dependency keeps its place at the end.
fn start_order(services: &[ServiceSpec]) -> Vec<&ServiceSpec> {
    let mut ordered: Vec<&ServiceSpec> = Vec::new();
    let mut remaining: Vec<&ServiceSpec> = services.iter().collect();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|service| {
            service.depends_on.iter().all(|dependency| {
                ordered.iter().any(|done| done.name == dependency.service)
                    || !services
                        .iter()
                        .any(|known| known.name == dependency.service)
            })
        });
        let next = remaining.remove(ready.unwrap_or(0));
        ordered.push(next);
    }
    ordered
}

fn is_awaited_healthy(spec: &StackSpec, service: &str) -> bool {
    spec.services.iter().any(|other| {
        other.depends_on.iter().any(|dependency| {
            dependency.service == service && dependency.condition == DependencyCondition::Healthy
        })
    })
}

fn render_service(yaml: &mut String, service: &ServiceSpec, labels: &BTreeMap<String, String>) {
    let _ = writeln!(yaml, "  {}:", service.name);
    let _ = writeln!(yaml, "    image: {}", quoted(&service.image));
    if !service.command.is_empty() {
        let words: Vec<String> = service.command.iter().map(|word| quoted(word)).collect();
        let _ = writeln!(yaml, "    command: [{}]", words.join(", "));
    }
    if !service.environment.is_empty() {
        yaml.push_str("    environment:\n");
        for (name, value) in &service.environment {
            let _ = writeln!(yaml, "      {name}: {}", quoted(value));
        }
    }
    if !service.ports.is_empty() {
        yaml.push_str("    ports:\n");
        for port in &service.ports {
            let host_port = port.host_port.map(|p| p.to_string()).unwrap_or_default();
            let published = format!("{}:{host_port}:{}", port.host_ip, port.container_port);
            let _ = writeln!(yaml, "      - {}", quoted(&published));
        }
    }
    if !service.volumes.is_empty() {
        yaml.push_str("    volumes:\n");
        for mount in &service.volumes {
            let _ = writeln!(
                yaml,
                "      - {}",
                quoted(&format!("{}:{}", mount.volume, mount.target))
            );
        }
    }
    if !service.depends_on.is_empty() {
        yaml.push_str("    depends_on:\n");
        for dependency in &service.depends_on {
            let condition = match dependency.condition {
                DependencyCondition::Started => "service_started",
                DependencyCondition::Healthy => "service_healthy",
            };
            let _ = writeln!(
                yaml,
                "      {}:\n        condition: {condition}",
                dependency.service
            );
        }
    }
    let restart = match service.restart {
        Restart::No => "\"no\"",
        Restart::UnlessStopped => "unless-stopped",
        Restart::Always => "always",
    };
    let _ = writeln!(yaml, "    restart: {restart}");
    if service.replicas != 1 {
        let _ = writeln!(yaml, "    scale: {}", service.replicas);
    }
    render_labels(yaml, labels, "    ");
}

fn render_labelled_object(yaml: &mut String, name: &str, labels: &BTreeMap<String, String>) {
    if labels.is_empty() {
        let _ = writeln!(yaml, "  {name}: {{}}");
    } else {
        let _ = writeln!(yaml, "  {name}:");
        render_labels(yaml, labels, "    ");
    }
}

fn render_labels(yaml: &mut String, labels: &BTreeMap<String, String>, indent: &str) {
    if labels.is_empty() {
        return;
    }
    let _ = writeln!(yaml, "{indent}labels:");
    for (name, value) in labels {
        let _ = writeln!(yaml, "{indent}  {}: {}", quoted(name), quoted(value));
    }
}

/// A double-quoted YAML scalar; `$` is doubled because compose interpolates variables.
fn quoted(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "$$");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPOSE_FILE: &str = include_str!("../../docker/compose.yml");

    #[test]
    fn compose_file_matches_the_demo_spec() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/compose.yml");
        let rendered = StackSpec::demo(path.clone()).to_compose_yaml();
        if std::env::var_os("DECKHAND_WRITE_COMPOSE").is_some() {
            std::fs::write(&path, &rendered).expect("docker/compose.yml is writable in a checkout");
            return;
        }
        assert_eq!(
            rendered, COMPOSE_FILE,
            "docker/compose.yml differs from StackSpec::demo; \
             run DECKHAND_WRITE_COMPOSE=1 cargo test compose_file to rewrite it"
        );
    }

    #[test]
    fn dependencies_start_first() {
        let spec = StackSpec::demo(PathBuf::from("/x/compose.yml"));
        let order: Vec<&str> = start_order(&spec.services)
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        assert_eq!(
            order,
            ["postgres", "redis", "backend", "nginx", "ide", "gitweb"]
        );
        assert!(is_awaited_healthy(&spec, "postgres"));
        assert!(!is_awaited_healthy(&spec, "backend"));
    }

    #[test]
    fn quoting_escapes_compose_interpolation() {
        assert_eq!(quoted("pa$s\"w"), "\"pa$$s\\\"w\"");
    }
}
