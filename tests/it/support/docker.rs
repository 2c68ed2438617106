//! Real-Docker fixtures: a connected local host, per-test labels and names, cleanup of
//! everything a test created (on drop, and of stale leftovers at start), the demo images
//! built once per run, and raw inspection for before/after comparisons.
//!
//! Everything a test creates carries `deckhand.test=<test name>` and
//! `deckhand.test.run=<unique run id>`; cleanup removes by the run label, and the sweep at
//! start removes objects of the same test older than ten minutes (a crashed earlier run),
//! leaving concurrent runs alone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    StartContainerOptions,
};
use deckhand::docker::images::{ImageSet, ensure_images};
use deckhand::docker::{DockerHost, HostSpec};
use deckhand::store::Store;
use futures_util::StreamExt;
use tokio::sync::OnceCell;

/// Label naming the test that created an object.
pub const TEST_LABEL: &str = "deckhand.test";
/// Label naming the run of that test, unique per process and test.
pub const RUN_LABEL: &str = "deckhand.test.run";
/// Leftovers of the same test older than this are swept at start.
const STALE_AFTER: Duration = Duration::from_secs(600);

/// The local engine as Deckhand's configuration would describe it.
pub fn local_spec() -> HostSpec {
    HostSpec {
        name: "local".to_string(),
        endpoint: "unix:///var/run/docker.sock".to_string(),
        tls: None,
        ssh_key: None,
        timeout: Duration::from_secs(30),
    }
}

/// A test's view of Docker: Deckhand's handle, a raw client for fixtures and inspection,
/// and the labels that tie what it creates to it.
pub struct TestDocker {
    pub host: DockerHost,
    pub raw: Docker,
    pub test_name: String,
    pub run_id: String,
    counter: AtomicU32,
}

impl TestDocker {
    /// Connects, sweeps stale leftovers of this test and makes sure the demo images exist.
    pub async fn start(test_name: &str) -> TestDocker {
        let host = DockerHost::connect(&local_spec())
            .await
            .expect("the local dockerd answers (start it with `nohup dockerd &`)");
        let raw = raw_client();
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let run_id = format!(
            "{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        sweep(
            &raw,
            &format!("{TEST_LABEL}={test_name}"),
            Some(STALE_AFTER),
        )
        .await;
        demo_images().await;
        TestDocker {
            host,
            raw,
            test_name: test_name.to_string(),
            run_id,
            counter: AtomicU32::new(0),
        }
    }

    /// The labels every object of this test carries.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (TEST_LABEL.to_string(), self.test_name.clone()),
            (RUN_LABEL.to_string(), self.run_id.clone()),
        ])
    }

    /// A name no other test or run uses, e.g. `dh-backend-4242-0-1`.
    pub fn unique(&self, prefix: &str) -> String {
        let number = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("dh-{prefix}-{}-{number}", self.run_id)
    }

    /// Creates and starts a labelled container; returns its id.
    pub async fn run(&self, name: &str, mut body: ContainerCreateBody) -> String {
        let mut labels = body.labels.take().unwrap_or_default();
        labels.extend(self.labels());
        body.labels = Some(labels);
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .raw
            .create_container(Some(options), body)
            .await
            .unwrap_or_else(|error| panic!("creating test container {name}: {error}"));
        self.raw
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .unwrap_or_else(|error| panic!("starting test container {name}: {error}"));
        created.id
    }

    /// Creates a labelled network; returns its name.
    pub async fn network(&self, prefix: &str) -> String {
        let name = self.unique(prefix);
        self.raw
            .create_network(bollard::models::NetworkCreateRequest {
                name: name.clone(),
                labels: Some(self.labels()),
                ..Default::default()
            })
            .await
            .expect("creating a test network");
        name
    }

    /// Creates a labelled volume; returns its name.
    pub async fn volume(&self, prefix: &str) -> String {
        let name = self.unique(prefix);
        self.raw
            .create_volume(bollard::models::VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(self.labels()),
                ..Default::default()
            })
            .await
            .expect("creating a test volume");
        name
    }

    /// Runs a command as root in a container and waits for it; panics when it fails.
    pub async fn exec_as_root(&self, container: &str, cmd: &[&str]) {
        let created = self
            .raw
            .create_exec(
                container,
                bollard::exec::CreateExecOptions {
                    cmd: Some(cmd.iter().map(|word| word.to_string()).collect()),
                    user: Some("root".to_string()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .expect("creating an exec");
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
            .raw
            .start_exec(&created.id, None)
            .await
            .expect("starting an exec")
        {
            while output.next().await.is_some() {}
        }
        let inspected = self
            .raw
            .inspect_exec(&created.id)
            .await
            .expect("inspecting an exec");
        assert_eq!(
            inspected.exit_code,
            Some(0),
            "{cmd:?} as root in {container}"
        );
    }

    /// The raw inspect response of a container.
    pub async fn inspect(&self, container: &str) -> ContainerInspectResponse {
        self.raw
            .inspect_container(container, None)
            .await
            .unwrap_or_else(|error| panic!("inspecting {container}: {error}"))
    }

    /// Whether a container by this name or id exists.
    pub async fn exists(&self, container: &str) -> bool {
        self.raw.inspect_container(container, None).await.is_ok()
    }

    /// Ids of this run's containers carrying a label `key=value`.
    pub async fn containers_labelled(&self, key: &str, value: &str) -> Vec<String> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{RUN_LABEL}={}", self.run_id),
                format!("{key}={value}"),
            ],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.raw
            .list_containers(Some(options))
            .await
            .expect("listing containers")
            .into_iter()
            .filter_map(|summary| summary.id)
            .collect()
    }
}

impl Drop for TestDocker {
    fn drop(&mut self) {
        let selector = format!("{RUN_LABEL}={}", self.run_id);
        // Drop cannot await; a separate thread with its own runtime does the removal.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a cleanup runtime");
            runtime.block_on(sweep(&raw_client(), &selector, None));
        });
        let _ = cleanup.join();
    }
}

/// A container body running the ide image (busybox on scratch) with a shell command.
pub fn busybox_body(script: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some("deckhand-demo/ide:v1".to_string()),
        cmd: Some(vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            script.to_string(),
        ]),
        host_config: Some(HostConfig::default()),
        ..Default::default()
    }
}

/// Builds every demo image once per test run (they are then reused by tag, also by later
/// runs).
pub async fn demo_images() {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let host = DockerHost::connect(&local_spec())
                .await
                .expect("the local dockerd answers");
            let started = Instant::now();
            let ensured = ensure_images(&host, &ImageSet::everything())
                .await
                .unwrap_or_else(|error| panic!("building the demo images: {}", error.chain()));
            let built: Vec<_> = ensured
                .iter()
                .filter(|image| {
                    image.outcome != deckhand::docker::images::EnsureOutcome::AlreadyPresent
                })
                .map(|image| format!("{} ({} ms)", image.reference, image.elapsed.as_millis()))
                .collect();
            if !built.is_empty() {
                eprintln!(
                    "demo images made in {} ms: {}",
                    started.elapsed().as_millis(),
                    built.join(", ")
                );
            }
        })
        .await;
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `docker-compose` (v1) with fixed arguments and returns its stdout; panics with its
/// stderr when it fails.
pub async fn docker_compose(args: &[&str]) -> String {
    let output = tokio::process::Command::new("docker-compose")
        .args(args)
        .output()
        .await
        .expect("docker-compose (v1) is installed");
    assert!(
        output.status.success(),
        "docker-compose {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Removes an image tag a test made (the image stays while other tags name it).
pub async fn remove_tag(reference: &str) {
    let options = bollard::query_parameters::RemoveImageOptionsBuilder::default()
        .noprune(true)
        .build();
    let _ = raw_client()
        .remove_image(reference, Some(options), None)
        .await;
}

fn raw_client() -> Docker {
    // The test's own client also talks API 1.41 here; bollard's default 1.53 is refused.
    Docker::connect_with_unix(
        "/var/run/docker.sock",
        60,
        &bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        },
    )
    .expect("the local Docker socket exists")
}

/// Removes containers, then networks and volumes, matching a label selector; with
/// `older_than`, only objects created before that long ago.
async fn sweep(raw: &Docker, selector: &str, older_than: Option<Duration>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs() as i64)
        .unwrap_or(0);
    let cutoff = older_than.map_or(i64::MAX, |age| now - age.as_secs() as i64);
    let filters = HashMap::from([("label", vec![selector.to_string()])]);
    let containers = raw
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    // Anonymous volumes a replacement re-attached by name carry no labels; they are found
    // through the containers that mount them.
    let mut mounted_volumes = Vec::new();
    for container in containers {
        if container.created.unwrap_or(0) <= cutoff {
            mounted_volumes.extend(
                container
                    .mounts
                    .iter()
                    .flatten()
                    .filter_map(|mount| mount.name.clone()),
            );
            if let Some(id) = container.id {
                let options = RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build();
                let _ = raw.remove_container(&id, Some(options)).await;
            }
        }
    }
    for volume in mounted_volumes {
        // Still in use by something else, or already gone: either way, leave it.
        let _ = raw
            .remove_volume(
                &volume,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await;
    }
    let networks = raw
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    for network in networks {
        let created = network.created.map(|time| time.timestamp()).unwrap_or(0);
        if created <= cutoff
            && let Some(id) = network.id
        {
            let _ = raw.remove_network(&id).await;
        }
    }
    let volumes = raw
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map(|listed| listed.volumes.unwrap_or_default())
        .unwrap_or_default();
    for volume in volumes {
        let created = volume.created_at.map(|time| time.timestamp()).unwrap_or(0);
        if created <= cutoff {
            let _ = raw
                .remove_volume(
                    &volume.name,
                    Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
                )
                .await;
        }
    }
}

/// A PostgreSQL 15 container for a test; returns its URL once it answers.
pub async fn start_postgres(docker: &TestDocker) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let body = ContainerCreateBody {
        image: Some("deckhand-demo/postgres:15".to_string()),
        env: Some(vec![
            "POSTGRES_USER=deckhand".to_string(),
            "POSTGRES_PASSWORD=store-test".to_string(),
            "POSTGRES_DB=deckhand".to_string(),
        ]),
        host_config: Some(HostConfig {
            port_bindings: Some(
                [(
                    "5432/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".to_string()),
                        host_port: Some(port.to_string()),
                    }]),
                )]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker.run(&docker.unique("store-postgres"), body).await;
    let url = format!("postgres://deckhand:store-test@127.0.0.1:{port}/deckhand");
    eventually(
        "PostgreSQL to accept connections",
        Duration::from_secs(120),
        || {
            let url = url.clone();
            async move {
                match Store::open(&url).await {
                    Ok(store) => {
                        store.close().await;
                        Some(())
                    }
                    Err(_) => None,
                }
            }
        },
    )
    .await;
    url
}
