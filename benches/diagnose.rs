//! The full diagnostic report of an environment of 30 containers, checks in parallel
//! against the same checks one after another, in the same run.
//!
//! Brings up a compose-labelled stack of 30 small busybox containers (the demo's `ide`
//! image) across seven services on its own network, one of them with a published health
//! endpoint, diagnoses it `ROUNDS` times each way, prints the medians and their ratio, and
//! removes the stack. Run with `cargo bench --bench diagnose`; needs a local dockerd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use deckhand::config::Config;
use deckhand::diagnose::{self, Check, Subject};
use deckhand::docker::images::{DemoImage, ImageSet, ensure_images};
use deckhand::docker::stack::{self, PortSpec, Restart, ServiceSpec, StackSpec, VolumePolicy};
use deckhand::docker::{DockerHost, HostSpec};
use deckhand::problem::Source;
use deckhand::store::Store;

/// How many reports are made each way.
const ROUNDS: usize = 5;
/// Services and their replicas: 30 containers.
const SERVICES: [(&str, u32); 7] = [
    ("front", 1),
    ("web", 5),
    ("api", 5),
    ("worker", 5),
    ("jobs", 5),
    ("cache", 5),
    ("admin", 4),
];

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let host = DockerHost::connect(&HostSpec {
        name: "local".to_string(),
        endpoint: "unix:///var/run/docker.sock".to_string(),
        tls: None,
        ssh_key: None,
        timeout: Duration::from_secs(30),
    })
    .await
    .expect("the local dockerd answers (start it with `nohup dockerd &`)");
    ensure_images(&host, &ImageSet::with_images(vec![DemoImage::Ide]))
        .await
        .expect("the busybox image builds");
    let front_port = free_port();
    let spec = stack_spec(front_port);
    let _ = stack::down(&host, &spec, VolumePolicy::Remove).await;
    let started = Instant::now();
    stack::up(&host, &spec)
        .await
        .expect("the bench stack comes up");
    eprintln!(
        "stack of {} containers up in {} ms",
        SERVICES.iter().map(|(_, replicas)| replicas).sum::<u32>(),
        started.elapsed().as_millis()
    );
    let folder = tempfile::tempdir().expect("a temporary folder");
    let config = config(folder.path(), &spec.project, front_port);
    let environment = config.environment("bench").expect("the bench environment");
    // A file, not `sqlite::memory:`: every pooled connection would get its own empty
    // in-memory database.
    let store_url = format!(
        "sqlite://{}?mode=rwc",
        folder.path().join("bench.db").display()
    );
    let store = Store::open(&store_url).await.expect("a store");

    let mut parallel = Vec::new();
    let mut one_by_one = Vec::new();
    let mut discovery = Vec::new();
    let mut last_report = None;
    for _round in 0..ROUNDS {
        let started = Instant::now();
        let services = diagnose::discover(&host, environment).await;
        discovery.push(started.elapsed());
        let subject = Subject {
            host: host.clone(),
            environment,
            store: &store,
            now: chrono::Utc::now(),
            incident_started: None,
            services,
        };
        let report = diagnose::run(&subject, &Check::ALL).await;
        parallel.push(started.elapsed());
        let sequential = diagnose::run_one_by_one(&subject, &Check::ALL).await;
        one_by_one.push(discovery.last().copied().unwrap_or_default() + sequential.elapsed);
        last_report = Some(report);
    }
    stack::down(&host, &spec, VolumePolicy::Remove)
        .await
        .expect("the bench stack is removed");

    let discovery = median(&mut discovery);
    let parallel = median(&mut parallel);
    let one_by_one = median(&mut one_by_one);
    if let Some(report) = last_report {
        println!("report: {}", report.headline());
        for line in report.lines() {
            println!("  {line}");
        }
        for finding in &report.findings {
            println!(
                "  {:<10} {:>5} ms",
                finding.check.name(),
                finding.elapsed.as_millis()
            );
        }
    }
    println!("30 containers, {ROUNDS} rounds, medians:");
    println!(
        "  finding the containers      {:>6} ms",
        discovery.as_millis()
    );
    println!(
        "  full report, in parallel    {:>6} ms",
        parallel.as_millis()
    );
    println!(
        "  full report, one by one     {:>6} ms",
        one_by_one.as_millis()
    );
    println!(
        "  one by one / parallel       {:>6.1}x",
        one_by_one.as_secs_f64() / parallel.as_secs_f64()
    );
    println!(
        "  under 2 s in parallel: {}",
        if parallel < Duration::from_secs(2) {
            "yes"
        } else {
            "NO"
        }
    );
}

fn stack_spec(front_port: u16) -> StackSpec {
    let project = format!("dh-bench-{}", std::process::id());
    StackSpec {
        project,
        compose_file: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docker/compose.yml"),
        labels: BTreeMap::from([("deckhand.bench".to_string(), "diagnose".to_string())]),
        volumes: Vec::new(),
        services: SERVICES
            .iter()
            .map(|(name, replicas)| ServiceSpec {
                name: name.to_string(),
                image: "deckhand-demo/ide:v1".to_string(),
                command: Vec::new(),
                environment: Vec::new(),
                ports: if *name == "front" {
                    vec![PortSpec {
                        host_ip: "127.0.0.1".to_string(),
                        host_port: Some(front_port),
                        container_port: 8080,
                    }]
                } else {
                    Vec::new()
                },
                volumes: Vec::new(),
                depends_on: Vec::new(),
                restart: Restart::No,
                replicas: *replicas,
            })
            .collect(),
    }
}

fn config(folder: &Path, project: &str, front_port: u16) -> Config {
    let mut text = format!(
        r#"
[store]
url = "sqlite://deckhand.db"

[hosts.local]
docker = "unix:///var/run/docker.sock"

[environments.bench]
host = "local"
compose_project = "{project}"

[environments.bench.services.front]
url = "http://127.0.0.1:{front_port}"
health = ["/healthz"]
"#
    );
    for (name, _) in SERVICES.iter().skip(1) {
        text.push_str(&format!("\n[environments.bench.services.{name}]\n"));
    }
    let path = folder.join("deckhand.toml");
    Config::from_source(&Source::new(&path, text)).expect("the bench config is valid")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free local port")
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
