//! The Docker layer against the real local dockerd: connecting, discovery, recreate and
//! revert, one-off runs, health waits, exec, logs, diagnostics, and compatibility with
//! stacks that docker-compose (v1) manages.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, NetworkConnectRequest,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use deckhand::docker::stack::{
    self, Dependency, DependencyCondition, PortSpec, Restart, ServiceSpec, StackSpec, VolumePolicy,
};
use deckhand::docker::{
    ContainerInfo, DockerError, DockerHost, Exec, HealthOutcome, HealthStatus, HostSpec, LogQuery,
    LogStream, PullOutcome, RunOnce, ServiceSelector, TlsFiles,
};
use deckhand::probe;

use crate::support::docker::{TestDocker, busybox_body, docker_compose, eventually, local_spec};

const V1: &str = "deckhand-demo/tasktracker-backend:v1";
const V2: &str = "deckhand-demo/tasktracker-backend:v2";
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// A backend container publishing port 3000 on a free 127.0.0.1 port.
fn backend_body(image: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "3000/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".to_string()),
                    host_port: Some(String::new()),
                }]),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The host port a container publishes for `container_port`.
fn published_port(info: &ContainerInfo, container_port: u16) -> u16 {
    info.ports
        .iter()
        .find(|port| port.container_port == container_port)
        .unwrap_or_else(|| panic!("{} publishes {container_port}: {:?}", info.name, info.ports))
        .host_port
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a local port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

#[tokio::test]
async fn connect_negotiates_the_api_version() {
    let _docker = TestDocker::start("connect_negotiates_the_api_version").await;
    let host = DockerHost::connect(&local_spec()).await.expect("connects");
    // This machine's engine is 20.10 (API 1.41) and refuses bollard's default 1.53.
    assert_eq!(host.api_version(), "1.41");
    host.ping().await.expect("pings");
    let api_time = host.api_time();
    assert_eq!(
        api_time.calls, 3,
        "version, ping and ping were measured: {api_time:?}"
    );
    assert!(api_time.total > Duration::ZERO);
    let clone = host.clone();
    clone.ping().await.expect("pings");
    assert_eq!(host.api_time().calls, 4, "clones share the clock");
}

#[tokio::test]
async fn an_unreachable_tcp_host_says_so() {
    let port = closed_port();
    let spec = HostSpec {
        name: "prod-1".to_string(),
        endpoint: format!("tcp://127.0.0.1:{port}"),
        tls: None,
        ssh_key: None,
        timeout: Duration::from_secs(5),
    };
    let error = DockerHost::connect(&spec)
        .await
        .expect_err("nothing listens there");
    assert_eq!(
        error.to_string(),
        format!("Docker host tcp://127.0.0.1:{port} unreachable (connection refused)")
    );
}

#[tokio::test]
async fn ssh_endpoints_reach_the_engine_through_openssh() {
    let docker = TestDocker::start("ssh_endpoints_reach_the_engine").await;
    let name = docker.unique("seen-over-ssh");
    docker
        .run(
            &name,
            bollard::models::ContainerCreateBody {
                image: Some("deckhand-demo/ide:v1".to_string()),
                ..Default::default()
            },
        )
        .await;
    let sshd = crate::support::sshd::TestSshd::start();
    let spec = HostSpec {
        name: "over-ssh".to_string(),
        endpoint: sshd.endpoint(),
        tls: None,
        ssh_key: Some(sshd.client_key.clone()),
        timeout: Duration::from_secs(20),
    };
    let host = DockerHost::connect(&spec)
        .await
        .expect("connects through sshd and `docker system dial-stdio`");
    assert_eq!(host.api_version(), "1.41", "negotiated like a local engine");
    let seen = host
        .inspect(&name)
        .await
        .expect("the container started here is seen over SSH");
    assert_eq!(seen.name, name);

    let stranger = tempfile::tempdir().expect("a temporary folder");
    let other_key = stranger.path().join("other_key");
    crate::support::sshd::keygen(&other_key);
    let refused = HostSpec {
        ssh_key: Some(other_key),
        ..spec
    };
    let error = DockerHost::connect(&refused)
        .await
        .expect_err("a key sshd does not accept is refused");
    let message = error.to_string();
    assert!(
        message.starts_with("Docker host ssh://root@127.0.0.22 unreachable (")
            && message.contains("Permission denied (publickey)"),
        "{message}"
    );
}

#[tokio::test]
async fn tls_endpoints_present_the_client_certificate() {
    let endpoint = fake_tls_docker::start().await;
    let spec = HostSpec {
        name: "tls".to_string(),
        endpoint: format!("tcp://127.0.0.1:{}", endpoint.port),
        tls: Some(TlsFiles {
            ca: endpoint.files.join("ca.pem"),
            cert: endpoint.files.join("cert.pem"),
            key: endpoint.files.join("key.pem"),
        }),
        ssh_key: None,
        timeout: Duration::from_secs(5),
    };
    let host = DockerHost::connect(&spec)
        .await
        .expect("connects over TLS with a client certificate");
    assert_eq!(host.api_version(), "1.41");
    assert!(
        endpoint.client_certificates_seen() >= 2,
        "every request presented the client certificate"
    );

    let without_client_certificate = HostSpec {
        tls: Some(TlsFiles {
            cert: endpoint.files.join("other-cert.pem"),
            key: endpoint.files.join("other-key.pem"),
            ..spec.tls.clone().expect("set above")
        }),
        ..spec
    };
    let error = DockerHost::connect(&without_client_certificate)
        .await
        .expect_err("a certificate from another CA is refused");
    let expected = format!(
        "Docker host tcp://127.0.0.1:{} unreachable (TLS handshake failed: ",
        endpoint.port
    );
    assert!(
        error.to_string().starts_with(&expected),
        "{}",
        error.chain()
    );
}

#[tokio::test]
async fn a_missing_image_that_cannot_be_pulled_is_not_found() {
    let docker = TestDocker::start("a_missing_image_that_cannot_be_pulled_is_not_found").await;
    let missing = "deckhand-test/no-such-image:v9";
    assert!(!docker.host.image_exists(missing).await.expect("inspects"));
    let error = docker
        .host
        .pull(missing, None)
        .await
        .expect_err("no registry is reachable");
    assert!(
        matches!(error, DockerError::ImageNotFound { .. }),
        "{error:?}"
    );
    let prefix =
        format!("image \"{missing}\" not found on host \"local\" and could not be pulled: ");
    let message = error.to_string();
    assert!(
        message.starts_with(&prefix) && message.len() > prefix.len(),
        "{message}"
    );
    let digest_error = docker
        .host
        .image_digest(missing)
        .await
        .expect_err("no such image");
    assert_eq!(
        digest_error.to_string(),
        format!("image \"{missing}\" not found on host \"local\"")
    );

    assert_eq!(
        docker.host.pull(V1, None).await.expect("present"),
        PullOutcome::AlreadyPresent
    );

    let tagged = format!("deckhand-test/tagged:{}", docker.unique("tag"));
    docker.host.tag_image(V1, &tagged).await.expect("tags");
    let tagged_info = docker.host.image_info(&tagged).await.expect("inspects");
    let v1_info = docker.host.image_info(V1).await.expect("inspects");
    assert_eq!(tagged_info.map(|info| info.id), v1_info.map(|info| info.id));
    docker
        .raw
        .remove_image(
            &tagged,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .expect("untagging");
    assert_eq!(
        docker.host.image_digest(V1).await.expect("present"),
        None,
        "built locally"
    );
}

#[tokio::test]
async fn discovery_finds_every_replica_and_compose_lists_the_stack() {
    let docker =
        TestDocker::start("discovery_finds_every_replica_and_compose_lists_the_stack").await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let spec = test_stack(&docker, directory.path().join("compose.yml"), 2);
    std::fs::write(&spec.compose_file, spec.to_compose_yaml()).expect("writing the compose file");
    stack::up(&docker.host, &spec)
        .await
        .expect("stack comes up");

    // A one-off container of the same service must not count as a replica.
    let mut oneoff = busybox_body("sleep 300");
    oneoff.labels = Some(HashMap::from([
        (
            "com.docker.compose.project".to_string(),
            spec.project.clone(),
        ),
        (
            "com.docker.compose.service".to_string(),
            "backend".to_string(),
        ),
        ("com.docker.compose.oneoff".to_string(), "True".to_string()),
    ]));
    docker.run(&docker.unique("oneoff"), oneoff).await;

    let selector = ServiceSelector::Compose {
        project: spec.project.clone(),
        service: "backend".to_string(),
    };
    let replicas = docker.host.find_containers(&selector).await.expect("lists");
    let names: Vec<&str> = replicas.iter().map(|info| info.name.as_str()).collect();
    assert_eq!(
        names,
        [
            spec.container_name("backend", 1),
            spec.container_name("backend", 2)
        ]
    );
    let first = &replicas[0];
    assert_eq!(first.image_reference, V1);
    assert!(first.image_id.starts_with("sha256:"));
    assert!(first.state.running);
    assert_eq!(first.state.status, "running");
    assert_eq!(first.networks.len(), 1);
    assert_eq!(first.networks[0].network, spec.network_name());
    assert!(first.networks[0].aliases.contains(&"backend".to_string()));
    assert_eq!(first.ports[0].host_ip, "127.0.0.1");

    let by_name = ServiceSelector::Container {
        name: spec.container_name("gitweb", 1),
    };
    assert_eq!(
        docker
            .host
            .find_containers(&by_name)
            .await
            .expect("lists")
            .len(),
        1
    );
    let nobody = ServiceSelector::Container {
        name: docker.unique("absent"),
    };
    assert!(
        docker
            .host
            .find_containers(&nobody)
            .await
            .expect("lists")
            .is_empty()
    );

    let compose_file = spec.compose_file.display().to_string();
    let compose = ["-p", spec.project.as_str(), "-f", compose_file.as_str()];
    let listed = docker_compose(&[&compose[..], &["ps"]].concat()).await;
    for name in [
        spec.container_name("backend", 1),
        spec.container_name("backend", 2),
        spec.container_name("gitweb", 1),
    ] {
        let line = listed
            .lines()
            .find(|line| line.starts_with(&name))
            .unwrap_or_else(|| panic!("docker-compose ps lists {name}:\n{listed}"));
        assert!(line.contains(" Up"), "{line}");
    }
    docker_compose(&[&compose[..], &["stop", "gitweb"]].concat()).await;
    let gitweb = docker
        .host
        .inspect(&spec.container_name("gitweb", 1))
        .await
        .expect("exists");
    assert!(
        !gitweb.state.running,
        "docker-compose stop reached our container"
    );

    stack::down(&docker.host, &spec, VolumePolicy::Remove)
        .await
        .expect("stack goes down");
    assert!(
        docker
            .host
            .find_containers(&selector)
            .await
            .expect("lists")
            .is_empty()
    );
}

#[tokio::test]
async fn recreate_keeps_everything_but_the_image() {
    let docker = TestDocker::start("recreate_keeps_everything_but_the_image").await;
    let primary = docker.network("primary").await;
    let extra = docker.network("extra").await;
    let data = docker.volume("data").await;
    let config_directory = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(config_directory.path().join("app.conf"), "mode=test\n")
        .expect("writing config");
    let name = docker.unique("backend");
    let healthcheck = HealthConfig {
        test: Some(strings(&[
            "CMD-SHELL",
            "curl -fsS http://127.0.0.1:3000/health/live || exit 1",
        ])),
        interval: Some(1_000_000_000),
        timeout: Some(3_000_000_000),
        retries: Some(3),
        start_period: Some(0),
        start_interval: None,
    };
    let mut body = backend_body(V1);
    body.env = Some(strings(&[
        "DATABASE_URL=postgres://db:5432/app",
        "JWT_SECRET=s3cret",
    ]));
    body.cmd = Some(strings(&["/app/server.sh"]));
    body.user = Some("nobody".to_string());
    body.working_dir = Some("/tmp".to_string());
    body.volumes = Some(strings(&["/cache"]));
    body.healthcheck = Some(healthcheck.clone());
    body.labels = Some(HashMap::from([
        ("com.docker.compose.project".to_string(), "shop".to_string()),
        (
            "com.docker.compose.service".to_string(),
            "backend".to_string(),
        ),
        (
            "com.docker.compose.container-number".to_string(),
            "1".to_string(),
        ),
        ("team".to_string(), "payments".to_string()),
    ]));
    let host_config = body.host_config.get_or_insert_with(HostConfig::default);
    host_config.binds = Some(vec![
        format!("{data}:/data"),
        format!("{}:/config:ro", config_directory.path().display()),
    ]);
    host_config.restart_policy = Some(RestartPolicy {
        name: Some(RestartPolicyNameEnum::ON_FAILURE),
        maximum_retry_count: Some(3),
    });
    host_config.network_mode = Some(primary.clone());
    body.networking_config = Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            primary.clone(),
            EndpointSettings {
                aliases: Some(strings(&["api", "backend"])),
                ..Default::default()
            },
        )])),
    });
    let old_id = docker.run(&name, body).await;
    docker
        .raw
        .connect_network(
            &extra,
            NetworkConnectRequest {
                container: old_id.clone(),
                endpoint_config: Some(EndpointSettings {
                    aliases: Some(strings(&["api-extra"])),
                    ..Default::default()
                }),
            },
        )
        .await
        .expect("connecting the extra network");
    // The container's user (nobody) cannot write to fresh volumes; root prepares them.
    docker
        .exec_as_root(
            &old_id,
            &[
                "sh",
                "-c",
                "echo kept > /cache/marker && echo kept > /data/marker",
            ],
        )
        .await;

    let before = docker.inspect(&old_id).await;
    let old = docker.host.inspect(&name).await.expect("inspects");
    let recreated = docker.host.recreate(&old, V2).await.expect("recreates");
    assert_eq!(recreated.old_id, old_id);
    assert_eq!(recreated.name, name);
    assert!(
        docker.exists(&format!("{name}.deckhand-old")).await,
        "old container kept until commit"
    );
    let after = docker.inspect(&name).await;
    let (before_config, after_config) = (
        before.config.clone().expect("config"),
        after.config.clone().expect("config"),
    );
    let (before_host, after_host) = (
        before.host_config.clone().expect("host config"),
        after.host_config.clone().expect("host config"),
    );

    assert_ne!(after.id, before.id);
    assert_eq!(after_config.image.as_deref(), Some(V2));
    let env = after_config.env.clone().expect("env");
    for expected in [
        "DATABASE_URL=postgres://db:5432/app",
        "JWT_SECRET=s3cret",
        "APP_VERSION=v2",
    ] {
        assert!(env.contains(&expected.to_string()), "{expected} in {env:?}");
    }
    assert!(
        !env.contains(&"APP_VERSION=v1".to_string()),
        "the new image's default wins: {env:?}"
    );
    assert_eq!(after_config.cmd, before_config.cmd);
    assert_eq!(after_config.user.as_deref(), Some("nobody"));
    assert_eq!(after_config.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(after_config.healthcheck, before_config.healthcheck);
    assert_eq!(
        after_config.healthcheck.and_then(|check| check.test),
        healthcheck.test,
        "the container's own healthcheck, not the image's"
    );
    let without_image_label = |labels: HashMap<String, String>| {
        labels
            .into_iter()
            .filter(|(key, _)| key != "deckhand.context-hash")
            .collect::<HashMap<_, _>>()
    };
    assert_eq!(
        without_image_label(after_config.labels.clone().expect("labels")),
        without_image_label(before_config.labels.clone().expect("labels"))
    );
    let new_id = after.id.clone().expect("id");
    assert_eq!(
        after_config.hostname.as_deref(),
        Some(&new_id[..12]),
        "hostname is not the old id"
    );
    assert_eq!(after_host.port_bindings, before_host.port_bindings);
    assert_eq!(after_host.restart_policy, before_host.restart_policy);
    assert_eq!(after_host.network_mode.as_deref(), Some(primary.as_str()));
    let before_binds = before_host.binds.clone().expect("binds");
    let after_binds = after_host.binds.clone().expect("binds");
    for bind in &before_binds {
        assert!(after_binds.contains(bind), "{bind} kept in {after_binds:?}");
    }
    let anonymous = |mounts: &Option<Vec<bollard::models::MountPoint>>| {
        mounts
            .iter()
            .flatten()
            .find(|mount| mount.destination.as_deref() == Some("/cache"))
            .and_then(|mount| mount.name.clone())
    };
    assert_eq!(
        anonymous(&after.mounts),
        anonymous(&before.mounts),
        "the anonymous volume is reused"
    );
    let networks = after
        .network_settings
        .clone()
        .and_then(|settings| settings.networks)
        .expect("networks");
    let aliases = |network: &str| {
        networks
            .get(network)
            .and_then(|endpoint| endpoint.aliases.clone())
            .unwrap_or_default()
    };
    assert!(
        aliases(&primary).contains(&"api".to_string())
            && aliases(&primary).contains(&"backend".to_string()),
        "{:?}",
        aliases(&primary)
    );
    assert!(
        aliases(&extra).contains(&"api-extra".to_string()),
        "{:?}",
        aliases(&extra)
    );
    assert!(
        !aliases(&primary).contains(&old_id[..12].to_string()),
        "the old short id is not carried"
    );

    let markers = docker
        .host
        .exec(
            &name,
            Exec {
                cmd: strings(&["cat", "/cache/marker", "/data/marker", "/config/app.conf"]),
                env: Vec::new(),
                stdin: None,
                timeout: Duration::from_secs(10),
            },
        )
        .await
        .expect("exec runs");
    assert_eq!(markers.stdout_text(), "kept\nkept\nmode=test\n");

    let outcome = docker
        .host
        .wait_healthy(&name, HEALTH_TIMEOUT)
        .await
        .expect("waits");
    assert!(
        matches!(
            outcome,
            HealthOutcome::Ready {
                health: HealthStatus::Healthy,
                ..
            }
        ),
        "{outcome}"
    );
    let port = published_port(&docker.host.inspect(&name).await.expect("inspects"), 3000);
    let smoke = probe::smoke(
        &format!("http://127.0.0.1:{port}/health"),
        200,
        Some("\"version\":\"v2\""),
        Duration::from_secs(5),
    )
    .await;
    assert!(smoke.passed(), "{smoke:?}");

    recreated.commit(&docker.host).await.expect("commits");
    assert!(
        !docker.exists(&old_id).await,
        "commit removes the old container"
    );
    assert!(docker.exists(&name).await);
}

#[tokio::test]
async fn recreate_then_revert_brings_the_old_container_back() {
    let docker = TestDocker::start("recreate_then_revert_brings_the_old_container_back").await;
    let name = docker.unique("backend");
    let old_id = docker.run(&name, backend_body(V1)).await;
    let old = docker.host.inspect(&name).await.expect("inspects");

    let recreated = docker.host.recreate(&old, V2).await.expect("recreates");
    let second = docker
        .host
        .recreate(&docker.host.inspect(&name).await.expect("inspects"), V1)
        .await;
    assert!(
        matches!(second, Err(DockerError::UnfinishedReplacement { .. })),
        "{second:?}"
    );
    let new = docker.host.inspect(&name).await.expect("inspects");
    assert_eq!(new.image_reference, V2);
    let by_name = ServiceSelector::Container { name: name.clone() };
    let leftovers = docker.host.find_leftovers(&by_name).await.expect("lists");
    assert_eq!(
        leftovers
            .iter()
            .map(|info| info.id.as_str())
            .collect::<Vec<_>>(),
        [old_id.as_str()],
        "the old container waits as a leftover until commit or revert"
    );
    let current = docker.host.find_containers(&by_name).await.expect("lists");
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].id, recreated.new_id);

    recreated.revert(&docker.host).await.expect("reverts");
    assert!(
        !docker.exists(&recreated.new_id).await,
        "the new container is gone"
    );
    let back = docker.host.inspect(&name).await.expect("inspects");
    assert_eq!(back.id, old_id);
    assert_eq!(back.image_reference, V1);
    let outcome = docker
        .host
        .wait_healthy(&name, HEALTH_TIMEOUT)
        .await
        .expect("waits");
    assert!(outcome.is_ready(), "{outcome}");
    let port = published_port(&back, 3000);
    let health = probe::wait_until(
        &format!("http://127.0.0.1:{port}/health"),
        200,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        health.body_excerpt.contains("\"version\":\"v1\""),
        "{health:?}"
    );

    let missing = docker
        .host
        .recreate(&back, "deckhand-test/no-such-image:v9")
        .await;
    assert!(
        matches!(missing, Err(DockerError::ImageMissing { .. })),
        "{missing:?}"
    );
    assert!(
        docker
            .host
            .inspect(&name)
            .await
            .expect("inspects")
            .state
            .running,
        "nothing was changed"
    );
}

#[tokio::test]
async fn run_once_reports_the_exit_code_and_last_lines_and_cleans_up() {
    let docker =
        TestDocker::start("run_once_reports_the_exit_code_and_last_lines_and_cleans_up").await;
    let network = docker.network("net").await;
    let name = docker.unique("backend");
    let mut body = backend_body(V1);
    body.env = Some(strings(&["FOO=bar"]));
    body.host_config
        .get_or_insert_with(HostConfig::default)
        .network_mode = Some(network.clone());
    docker.run(&name, body).await;
    let like = docker.host.inspect(&name).await.expect("inspects");

    // Docker copies stdout and stderr separately, so their relative order holds only
    // when one pauses before the other writes.
    let script = "for i in $(seq 1 30); do echo line $i; done; sleep 0.5; \
                  echo \"FOO=$FOO APP_VERSION=$APP_VERSION net=$(hostname -i | wc -w)\" >&2; exit 7";
    let output = docker
        .host
        .run_once(RunOnce {
            image: V2.to_string(),
            like: &like,
            cmd: strings(&["sh", "-c", script]),
            timeout: Duration::from_secs(60),
        })
        .await
        .expect("runs");
    assert_eq!(output.exit_code, 7);
    assert_eq!(output.last_lines.len(), 20, "{:?}", output.last_lines);
    assert_eq!(output.last_lines[0], "line 12");
    assert_eq!(output.last_lines[19], "FOO=bar APP_VERSION=v2 net=1");
    assert!(
        docker
            .containers_labelled("deckhand.run-once", &name)
            .await
            .is_empty(),
        "removed after the run"
    );

    let timed_out = docker
        .host
        .run_once(RunOnce {
            image: V2.to_string(),
            like: &like,
            cmd: strings(&["sleep", "30"]),
            timeout: Duration::from_secs(1),
        })
        .await;
    assert!(
        matches!(timed_out, Err(DockerError::Timeout { .. })),
        "{timed_out:?}"
    );
    assert!(
        docker
            .containers_labelled("deckhand.run-once", &name)
            .await
            .is_empty(),
        "removed after a timeout"
    );
}

#[tokio::test]
async fn wait_healthy_tells_ready_unhealthy_and_crashed_apart() {
    let docker = TestDocker::start("wait_healthy_tells_ready_unhealthy_and_crashed_apart").await;
    let healthy = docker.unique("healthy");
    let unhealthy = docker.unique("unhealthy");
    let crashing = docker.unique("crash");
    docker.run(&healthy, backend_body(V1)).await;
    docker
        .run(
            &unhealthy,
            backend_body("deckhand-demo/tasktracker-backend:unhealthy"),
        )
        .await;
    docker
        .run(
            &crashing,
            backend_body("deckhand-demo/tasktracker-backend:crash"),
        )
        .await;
    let no_healthcheck = docker.unique("plain");
    let mut plain = busybox_body("sleep 300");
    plain.healthcheck = Some(HealthConfig {
        test: Some(strings(&["NONE"])),
        ..Default::default()
    });
    docker.run(&no_healthcheck, plain).await;

    let (ready, sick, crashed, plain) = tokio::join!(
        docker.host.wait_healthy(&healthy, HEALTH_TIMEOUT),
        docker.host.wait_healthy(&unhealthy, HEALTH_TIMEOUT),
        docker.host.wait_healthy(&crashing, HEALTH_TIMEOUT),
        docker.host.wait_healthy(&no_healthcheck, HEALTH_TIMEOUT),
    );
    match ready.expect("waits") {
        HealthOutcome::Ready { health, .. } => assert_eq!(health, HealthStatus::Healthy),
        other => panic!("expected ready, got {other}"),
    }
    match sick.expect("waits") {
        HealthOutcome::Unhealthy {
            last_output,
            last_lines,
            ..
        } => {
            assert!(
                last_output.as_deref().unwrap_or("").contains("500"),
                "{last_output:?}"
            );
            assert!(
                last_lines
                    .iter()
                    .any(|line| line.contains("ERROR GET /health")),
                "{last_lines:?}"
            );
        }
        other => panic!("expected unhealthy, got {other}"),
    }
    match crashed.expect("waits") {
        HealthOutcome::Exited {
            exit_code,
            oom_killed,
            last_lines,
        } => {
            assert_eq!(exit_code, Some(3));
            assert!(!oom_killed);
            assert!(
                last_lines
                    .iter()
                    .any(|line| line.contains("Cannot find module")),
                "{last_lines:?}"
            );
        }
        other => panic!("expected exited, got {other}"),
    }
    match plain.expect("waits") {
        HealthOutcome::Ready { health, .. } => assert_eq!(health, HealthStatus::None),
        other => panic!("expected ready, got {other}"),
    }
    let info = docker.host.inspect(&unhealthy).await.expect("inspects");
    assert_eq!(info.health.status, HealthStatus::Unhealthy);
    assert!(info.health.failing_streak >= 3);
}

#[tokio::test]
async fn exec_returns_output_and_exit_code_and_feeds_stdin() {
    let docker = TestDocker::start("exec_returns_output_and_exit_code_and_feeds_stdin").await;
    let name = docker.unique("backend");
    docker.run(&name, backend_body(V1)).await;
    let output = docker
        .host
        .exec(
            &name,
            Exec {
                cmd: strings(&["sh", "-c", "cat; echo \"to stderr $GREETING\" >&2; exit 4"]),
                env: vec![("GREETING".to_string(), "hi".to_string())],
                stdin: Some(b"hello from stdin\n".to_vec()),
                timeout: Duration::from_secs(10),
            },
        )
        .await
        .expect("exec runs");
    assert_eq!(output.exit_code, 4);
    assert_eq!(output.stdout_text(), "hello from stdin\n");
    assert_eq!(output.stderr_text(), "to stderr hi\n");

    // A dump-sized input is written while the output is read.
    let dump = vec![b'x'; 4 << 20];
    let counted = docker
        .host
        .exec(
            &name,
            Exec {
                cmd: strings(&["sh", "-c", "wc -c; cat /etc/os-release | head -1"]),
                env: Vec::new(),
                stdin: Some(dump),
                timeout: Duration::from_secs(30),
            },
        )
        .await
        .expect("exec runs");
    assert_eq!(counted.exit_code, 0);
    assert!(
        counted.stdout_text().starts_with("4194304\n"),
        "{}",
        counted.stdout_text()
    );

    let slow = docker
        .host
        .exec(
            &name,
            Exec {
                cmd: strings(&["sleep", "10"]),
                env: Vec::new(),
                stdin: None,
                timeout: Duration::from_millis(500),
            },
        )
        .await;
    assert!(matches!(slow, Err(DockerError::Timeout { .. })), "{slow:?}");
}

#[tokio::test]
async fn logs_honour_tail_and_since() {
    let docker = TestDocker::start("logs_honour_tail_and_since").await;
    let name = docker.unique("talker");
    docker
        .run(
            &name,
            busybox_body("echo early; echo second; sleep 2; echo late >&2; sleep 300"),
        )
        .await;
    let lines = eventually("the late line", Duration::from_secs(20), || async {
        let lines = docker.host.logs(&name, LogQuery::default()).await.ok()?;
        lines
            .iter()
            .any(|line| line.text == "late")
            .then_some(lines)
    })
    .await;
    let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
    assert_eq!(texts, ["early", "second", "late"]);
    assert_eq!(lines[2].stream, LogStream::Stderr);

    let tail = docker
        .host
        .logs(
            &name,
            LogQuery {
                tail: Some(1),
                since: None,
            },
        )
        .await
        .expect("reads");
    assert_eq!(
        tail.iter()
            .map(|line| line.text.as_str())
            .collect::<Vec<_>>(),
        ["late"]
    );

    let early = lines[1].timestamp.expect("lines are timestamped");
    let since = early + chrono::Duration::seconds(1);
    let recent = docker
        .host
        .logs(
            &name,
            LogQuery {
                tail: None,
                since: Some(since),
            },
        )
        .await
        .expect("reads");
    assert_eq!(
        recent
            .iter()
            .map(|line| line.text.as_str())
            .collect::<Vec<_>>(),
        ["late"]
    );
}

#[tokio::test]
async fn diagnostics_report_memory_networks_and_disk_usage() {
    let docker = TestDocker::start("diagnostics_report_memory_networks_and_disk_usage").await;
    let network = docker.network("net").await;
    let name = docker.unique("backend");
    let mut body = backend_body(V1);
    body.host_config
        .get_or_insert_with(HostConfig::default)
        .network_mode = Some(network.clone());
    docker.run(&name, body).await;

    let memory = docker.host.stats_memory(&name).await.expect("reads stats");
    assert!(memory.used_bytes > 0, "{memory:?}");
    assert!(memory.limit_bytes >= memory.used_bytes, "{memory:?}");
    assert!(memory.percent() > 0.0 && memory.percent() < 100.0);

    let networks = docker.host.list_networks().await.expect("lists");
    let ours = networks
        .iter()
        .find(|info| info.name == network)
        .expect("our network is listed");
    assert_eq!(ours.driver, "bridge");
    assert_eq!(
        ours.containers
            .iter()
            .map(|member| member.name.as_str())
            .collect::<Vec<_>>(),
        [name.as_str()]
    );
    assert!(ours.containers[0].ipv4_address.contains('/'));

    let usage = docker.host.disk_usage().await.expect("reads");
    assert!(usage.images.total_count >= 12, "{usage:?}");
    assert!(usage.images.active_count >= 1, "{usage:?}");
    assert!(usage.images.size_bytes.unwrap_or(0) > usage.images.reclaimable_bytes.unwrap_or(0));
    assert!(
        usage.containers.total_count >= 1 && usage.containers.active_count >= 1,
        "{usage:?}"
    );
    assert!(usage.volumes.total_count >= usage.volumes.active_count);

    docker.host.stop(&name).await.expect("stops");
    assert!(
        !docker
            .host
            .inspect(&name)
            .await
            .expect("inspects")
            .state
            .running
    );
    docker.host.start(&name).await.expect("starts");
    docker.host.restart(&name).await.expect("restarts");
    assert!(
        docker
            .host
            .inspect(&name)
            .await
            .expect("inspects")
            .state
            .running
    );
    docker.host.remove(&name).await.expect("removes");
    docker
        .host
        .remove(&name)
        .await
        .expect("removing twice is fine");
    assert!(matches!(
        docker.host.inspect(&name).await,
        Err(DockerError::ContainerNotFound { .. })
    ));
}

#[tokio::test]
async fn a_compose_managed_service_survives_recreate() {
    let docker = TestDocker::start("a_compose_managed_service_survives_recreate").await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let spec = test_stack(&docker, directory.path().join("compose.yml"), 1);
    std::fs::write(&spec.compose_file, spec.to_compose_yaml()).expect("writing the compose file");
    let compose_file = spec.compose_file.display().to_string();
    let compose = ["-p", spec.project.as_str(), "-f", compose_file.as_str()];
    docker_compose(&[&compose[..], &["up", "-d"]].concat()).await;

    let selector = ServiceSelector::Compose {
        project: spec.project.clone(),
        service: "backend".to_string(),
    };
    let found = docker.host.find_containers(&selector).await.expect("lists");
    assert_eq!(found.len(), 1, "{found:?}");
    let recreated = docker
        .host
        .recreate(&found[0], V2)
        .await
        .expect("recreates");
    let outcome = docker
        .host
        .wait_healthy(&recreated.new_id, HEALTH_TIMEOUT)
        .await
        .expect("waits");
    assert!(outcome.is_ready(), "{outcome}");
    recreated.commit(&docker.host).await.expect("commits");

    let listed = docker_compose(&[&compose[..], &["ps"]].concat()).await;
    let line = listed
        .lines()
        .find(|line| line.starts_with(&spec.container_name("backend", 1)))
        .unwrap_or_else(|| panic!("docker-compose ps lists the recreated backend:\n{listed}"));
    assert!(line.contains(" Up"), "{line}");
    let ids = docker_compose(&[&compose[..], &["ps", "-q", "backend"]].concat()).await;
    assert_eq!(ids.trim(), recreated.new_id);

    docker_compose(&[&compose[..], &["stop", "backend"]].concat()).await;
    assert!(
        !docker
            .host
            .inspect(&recreated.new_id)
            .await
            .expect("inspects")
            .state
            .running
    );
    docker_compose(&[&compose[..], &["start", "backend"]].concat()).await;
    let restarted = docker
        .host
        .inspect(&recreated.new_id)
        .await
        .expect("inspects");
    assert!(restarted.state.running);
    assert_eq!(restarted.image_reference, V2);

    docker_compose(&[&compose[..], &["down", "-v"]].concat()).await;
    assert!(
        docker
            .host
            .find_containers(&selector)
            .await
            .expect("lists")
            .is_empty()
    );
}

#[tokio::test]
async fn the_demo_stack_serves_through_nginx_and_migrates() {
    let docker = TestDocker::start("the_demo_stack_serves_through_nginx_and_migrates").await;
    let compose_file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docker/compose.yml");
    let mut spec = StackSpec::demo(compose_file);
    spec.project = docker.unique("demo");
    spec.labels = docker.labels().into_iter().collect();
    for service in &mut spec.services {
        for port in &mut service.ports {
            port.host_port = None;
        }
    }
    stack::up(&docker.host, &spec)
        .await
        .expect("the demo stack comes up");
    let service = |name: &str| ServiceSelector::Compose {
        project: spec.project.clone(),
        service: name.to_string(),
    };
    let backend = docker
        .host
        .find_containers(&service("backend"))
        .await
        .expect("lists")
        .remove(0);
    let nginx = docker
        .host
        .find_containers(&service("nginx"))
        .await
        .expect("lists")
        .remove(0);
    for container in [&backend, &nginx] {
        let outcome = docker
            .host
            .wait_healthy(&container.id, HEALTH_TIMEOUT)
            .await
            .expect("waits");
        assert!(outcome.is_ready(), "{}: {outcome}", container.name);
    }

    let migrated = docker
        .host
        .run_once(RunOnce {
            image: V1.to_string(),
            like: &backend,
            cmd: strings(&["npm", "run", "db:migrate"]),
            timeout: Duration::from_secs(60),
        })
        .await
        .expect("runs");
    assert_eq!(migrated.exit_code, 0, "{:?}", migrated.last_lines);
    assert_eq!(
        migrated.last_lines.last().map(String::as_str),
        Some("Batch 1 run: 20240101000000_create_tasks")
    );

    let nginx_port = published_port(&nginx, 80);
    let through_nginx = probe::smoke(
        &format!("http://127.0.0.1:{nginx_port}/api/v1/tasks"),
        200,
        Some("Try /deploy staging develop"),
        Duration::from_secs(5),
    )
    .await;
    assert!(through_nginx.passed(), "{through_nginx:?}");
    let backend_port = published_port(&backend, 3000);
    let ready = probe::smoke(
        &format!("http://127.0.0.1:{backend_port}/health/ready"),
        200,
        Some("{\"database\":\"ok\",\"redis\":\"ok\"}"),
        Duration::from_secs(5),
    )
    .await;
    assert!(ready.passed(), "{ready:?}");

    let failed = docker
        .host
        .run_once(RunOnce {
            image: "deckhand-demo/tasktracker-backend:migrate-fails".to_string(),
            like: &backend,
            cmd: strings(&["npm", "run", "db:migrate"]),
            timeout: Duration::from_secs(60),
        })
        .await
        .expect("runs");
    assert_eq!(failed.exit_code, 1);
    assert!(
        failed
            .last_lines
            .iter()
            .any(|line| line.contains("relation \"users\" does not exist")),
        "{:?}",
        failed.last_lines
    );
    assert!(
        failed
            .last_lines
            .iter()
            .any(|line| line.starts_with("Migration failed: batch 2")),
        "{:?}",
        failed.last_lines
    );

    let postgres = docker
        .host
        .find_containers(&service("postgres"))
        .await
        .expect("lists")
        .remove(0);
    let select = docker
        .host
        .exec(
            &postgres.id,
            Exec {
                cmd: strings(&[
                    "psql",
                    "-U",
                    "tasktracker",
                    "-d",
                    "tasktracker",
                    "-Atc",
                    "SELECT count(*) FROM knex_migrations",
                ]),
                env: Vec::new(),
                stdin: None,
                timeout: Duration::from_secs(10),
            },
        )
        .await
        .expect("exec runs");
    assert_eq!(
        select.stdout_text(),
        "1\n",
        "the failed batch left nothing behind: {}",
        select.stderr_text()
    );

    stack::down(&docker.host, &spec, VolumePolicy::Remove)
        .await
        .expect("stack goes down");
}

/// A small stack for compose tests: `replicas` backends and a git web browser, on free
/// ports, labelled as this test's.
fn test_stack(docker: &TestDocker, compose_file: PathBuf, replicas: u32) -> StackSpec {
    let any_port = |container_port| PortSpec {
        host_ip: "127.0.0.1".to_string(),
        host_port: None,
        container_port,
    };
    StackSpec {
        project: docker.unique("stack"),
        compose_file,
        labels: docker.labels().into_iter().collect(),
        volumes: Vec::new(),
        services: vec![
            ServiceSpec {
                name: "backend".to_string(),
                image: V1.to_string(),
                command: Vec::new(),
                environment: vec![("JWT_SECRET".to_string(), "test-$ecret".to_string())],
                ports: vec![any_port(3000)],
                volumes: Vec::new(),
                depends_on: Vec::new(),
                restart: Restart::UnlessStopped,
                replicas,
            },
            ServiceSpec {
                name: "gitweb".to_string(),
                image: "deckhand-demo/gitweb:v1".to_string(),
                command: Vec::new(),
                environment: Vec::new(),
                ports: vec![any_port(3001)],
                volumes: Vec::new(),
                depends_on: vec![Dependency {
                    service: "backend".to_string(),
                    condition: DependencyCondition::Healthy,
                }],
                restart: Restart::No,
                replicas: 1,
            },
        ],
    }
}

/// A TLS endpoint that demands a client certificate from its CA and answers the two
/// requests `DockerHost::connect` makes, like a TLS-protected engine.
mod fake_tls_docker {
    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    pub struct Endpoint {
        pub port: u16,
        pub files: PathBuf,
        _directory: tempfile::TempDir,
        seen: Arc<AtomicUsize>,
    }

    impl Endpoint {
        pub fn client_certificates_seen(&self) -> usize {
            self.seen.load(Ordering::SeqCst)
        }
    }

    pub async fn start() -> Endpoint {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let files = directory.path().to_path_buf();
        let ca_key = KeyPair::generate().expect("generating a key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("self-signing the CA");
        let server_key = KeyPair::generate().expect("generating a key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("server params")
            .signed_by(&server_key, &ca, &ca_key)
            .expect("signing the server certificate");
        let client_key = KeyPair::generate().expect("generating a key");
        let client = CertificateParams::new(vec!["deckhand".to_string()])
            .expect("client params")
            .signed_by(&client_key, &ca, &ca_key)
            .expect("signing the client certificate");
        let other_key = KeyPair::generate().expect("generating a key");
        let other = CertificateParams::new(vec!["stranger".to_string()])
            .expect("params")
            .self_signed(&other_key)
            .expect("self-signing");
        for (name, contents) in [
            ("ca.pem", ca.pem()),
            ("cert.pem", client.pem()),
            ("key.pem", client_key.serialize_pem()),
            ("other-cert.pem", other.pem()),
            ("other-key.pem", other_key.serialize_pem()),
        ] {
            std::fs::write(files.join(name), contents).expect("writing a PEM file");
        }

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("adding the CA");
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .expect("a client verifier");
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    vec![server.der().clone(), ca.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
                )
                .expect("a server config"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a local port");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = config.clone();
                let counter = counter.clone();
                std::thread::spawn(move || serve(stream, config, &counter));
            }
        });
        Endpoint {
            port,
            files,
            _directory: directory,
            seen,
        }
    }

    fn serve(stream: std::net::TcpStream, config: Arc<rustls::ServerConfig>, seen: &AtomicUsize) {
        let Ok(connection) = rustls::ServerConnection::new(config) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(connection, stream);
        let mut reader = BufReader::new(&mut tls);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return; // The handshake failed: no or a foreign client certificate.
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                break;
            }
        }
        let presented: Option<&[CertificateDer<'_>]> = tls.conn.peer_certificates();
        if presented.is_some_and(|chain| !chain.is_empty()) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        let body = if request_line.contains("/version") {
            r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#
        } else {
            "OK"
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tls.write_all(response.as_bytes());
        let _ = tls.flush();
        tls.conn.send_close_notify();
        let _ = tls.flush();
    }
}

/// A service with `stop_grace_period: 45s` whose process ignores the stop signal, on a
/// host whose API time limit is 5 s: the stop takes the whole 45 s, and the replacement
/// still completes instead of giving up mid-stop (which left the service down once
/// dockerd finished the stop).
#[tokio::test]
async fn a_stop_grace_period_longer_than_the_host_timeout_is_waited_out() {
    let docker = TestDocker::start("slow_stop_grace").await;
    let name = docker.unique("slow-stop");
    let mut body = backend_body(V1);
    // PID 1 ignores a signal it has no handler for, so Docker must wait out the grace
    // period and then kill it.
    body.stop_signal = Some("SIGUSR1".to_string());
    body.stop_timeout = Some(45);
    docker.run(&name, body).await;
    let host = DockerHost::connect(&HostSpec {
        timeout: Duration::from_secs(5),
        ..local_spec()
    })
    .await
    .expect("connects");
    let old = host.inspect(&name).await.expect("inspects");
    let recreated = host
        .recreate(&old, V2)
        .await
        .unwrap_or_else(|error| panic!("the replacement completes: {}", error.chain()));
    let new = host.inspect(&name).await.expect("inspects");
    assert_eq!(new.id, recreated.new_id);
    assert!(new.state.running, "the new container runs");
    assert_eq!(new.image_reference, V2);
    let old_after = host.inspect(&recreated.old_id).await.expect("kept aside");
    assert!(!old_after.state.running, "the old container stopped");
    assert_eq!(
        old_after.state.exit_code,
        Some(137),
        "Docker killed it only after its grace period"
    );
}
