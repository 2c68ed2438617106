//! `DemoEnv`: an isolated copy of the demo stack for one test — its own
//! compose project, free 127.0.0.1 ports, its own backup folder — and a
//! workspace whose `staging` (and, when asked, `production`) environment
//! points at it. Everything is labelled with the test's name and removed
//! when the `DemoEnv` is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;

use deckhand::app::App;
use deckhand::demo::PRODUCTION_PORT_OFFSET;
use deckhand::docker::DockerHost;
use deckhand::docker::stack::{self, StackSpec, VolumePolicy};

use super::docker::{RUN_LABEL, TEST_LABEL, demo_images, local_spec};
use super::workspace::{Workspace, repo_root};

/// An isolated demo environment.
pub struct DemoEnv {
    /// The workspace whose config points at the stacks.
    pub workspace: Workspace,
    /// The staging stack (and the production one, when started).
    pub stacks: Vec<StackSpec>,
    /// Shipped host port → this copy's host port, per stack.
    pub ports: Vec<BTreeMap<u16, u16>>,
    /// Where backups of staging go.
    pub backup_dir: tempfile::TempDir,
    /// Deckhand's handle on the local Docker engine.
    pub host: DockerHost,
    /// The compose file, when the stack was brought up by docker-compose.
    pub compose_file: Option<tempfile::NamedTempFile>,
}

/// How the staging copy is brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BringUp {
    /// Through Deckhand's Docker layer (`stack::up`).
    Api,
    /// Through the docker-compose v1 CLI, from a generated compose file.
    Compose,
}

impl DemoEnv {
    /// Staging only, with the shipped config.
    pub async fn start(test_name: &str) -> DemoEnv {
        DemoEnv::start_with(test_name, false, |text| text).await
    }

    /// Staging only, brought up by the docker-compose CLI.
    pub async fn start_compose(test_name: &str) -> DemoEnv {
        DemoEnv::start_full(test_name, false, BringUp::Compose, |text| text).await
    }

    /// Staging, and production too when `with_production`, with the config
    /// text edited by `edit` after it is pointed at the copies.
    pub async fn start_with(
        test_name: &str,
        with_production: bool,
        edit: impl FnOnce(String) -> String,
    ) -> DemoEnv {
        DemoEnv::start_full(test_name, with_production, BringUp::Api, edit).await
    }

    /// Staging only, with the stack changed by `change_stack` (say, more
    /// replicas) and the config text by `edit`.
    pub async fn start_custom(
        test_name: &str,
        change_stack: impl FnOnce(&mut StackSpec),
        edit: impl FnOnce(String) -> String,
    ) -> DemoEnv {
        DemoEnv::start_inner(test_name, false, BringUp::Api, change_stack, edit).await
    }

    async fn start_full(
        test_name: &str,
        with_production: bool,
        bring_up: BringUp,
        edit: impl FnOnce(String) -> String,
    ) -> DemoEnv {
        DemoEnv::start_inner(test_name, with_production, bring_up, |_| {}, edit).await
    }

    async fn start_inner(
        test_name: &str,
        with_production: bool,
        bring_up: BringUp,
        change_stack: impl FnOnce(&mut StackSpec),
        edit: impl FnOnce(String) -> String,
    ) -> DemoEnv {
        demo_images().await;
        let host = DockerHost::connect(&local_spec())
            .await
            .expect("the local dockerd answers");
        let run = format!("{}-{}", std::process::id(), unique_number());
        let mut base = StackSpec::demo(repo_root().join("docker/compose.yml"));
        change_stack(&mut base);
        let mut shipped = vec![(base.clone(), 0u16, "deckhand-demo")];
        if with_production {
            shipped.push((base, PRODUCTION_PORT_OFFSET, "deckhand-prod"));
        }
        let mut stacks = Vec::new();
        let mut ports = Vec::new();
        let mut compose_file = None;
        for (stack_idx, (spec, offset, _)) in shipped.iter().enumerate() {
            let mut mapping = BTreeMap::new();
            let project = format!("dht{stack_idx}-{}-{run}", short(test_name));
            let mut relocated = spec.clone().relocated(&project, |port| {
                let free = free_port();
                mapping.insert(port + offset, free);
                free
            });
            relocated
                .labels
                .insert(TEST_LABEL.to_string(), test_name.to_string());
            relocated.labels.insert(RUN_LABEL.to_string(), run.clone());
            if bring_up == BringUp::Compose && stack_idx == 0 {
                let file = tempfile::Builder::new()
                    .suffix(".yml")
                    .tempfile()
                    .expect("compose file");
                relocated.compose_file = file.path().to_path_buf();
                std::fs::write(file.path(), relocated.to_compose_yaml())
                    .expect("write compose file");
                let path = file.path().display().to_string();
                super::docker::docker_compose(&["-p", &project, "-f", &path, "up", "-d"]).await;
                compose_file = Some(file);
            } else {
                stack::up(&host, &relocated)
                    .await
                    .unwrap_or_else(|error| panic!("bringing up {project}: {}", error.chain()));
            }
            stacks.push(relocated);
            ports.push(mapping);
        }
        let backup_dir = tempfile::tempdir().expect("backup folder");
        let projects: Vec<(String, String)> = shipped
            .iter()
            .zip(&stacks)
            .map(|((_, _, shipped_project), stack)| {
                (shipped_project.to_string(), stack.project.clone())
            })
            .collect();
        let port_maps = ports.clone();
        let backups = backup_dir.path().display().to_string();
        let workspace = Workspace::with_config(|text| {
            let mut text = text.replace("/var/backups/deckhand/staging", &backups);
            for (shipped_project, project) in &projects {
                text = text.replace(
                    &format!("compose_project = \"{shipped_project}\""),
                    &format!("compose_project = \"{project}\""),
                );
            }
            for mapping in &port_maps {
                for (from, to) in mapping {
                    text =
                        text.replace(&format!("127.0.0.1:{from}\""), &format!("127.0.0.1:{to}\""));
                }
            }
            edit(text)
        });
        // A started nginx may still be making its first certificate; tests
        // begin once every stack's proxy answers (it starts serving only
        // after its entrypoint made the certificate).
        for (mapping, (_, offset, _)) in ports.iter().zip(&shipped) {
            let url = format!("http://127.0.0.1:{}/health", mapping[&(18080 + offset)]);
            super::docker::eventually(
                "the demo's nginx to answer",
                std::time::Duration::from_secs(120),
                || {
                    let url = url.clone();
                    async move {
                        deckhand::probe::probe(&url, std::time::Duration::from_secs(5))
                            .await
                            .is_success()
                            .then_some(())
                    }
                },
            )
            .await;
        }
        DemoEnv {
            workspace,
            stacks,
            ports,
            backup_dir,
            host,
            compose_file,
        }
    }

    /// Runs docker-compose on the staging copy (compose mode only).
    pub async fn compose(&self, args: &[&str]) -> String {
        let file = self
            .compose_file
            .as_ref()
            .expect("started with start_compose");
        let path = file.path().display().to_string();
        let mut all = vec!["-p", self.project(), "-f", &path];
        all.extend_from_slice(args);
        super::docker::docker_compose(&all).await
    }

    /// Opens the app in-process, with background work started.
    pub async fn app(&self) -> Arc<App> {
        let app = self.workspace.app().await;
        deckhand::flow::start_background(&app).await;
        app
    }

    /// The staging copy's URL for a shipped host port (13000 = backend).
    pub fn staging_url(&self, shipped_port: u16) -> String {
        format!("http://127.0.0.1:{}", self.ports[0][&shipped_port])
    }

    /// The staging compose project.
    pub fn project(&self) -> &str {
        &self.stacks[0].project
    }
}

impl Drop for DemoEnv {
    fn drop(&mut self) {
        let stacks = std::mem::take(&mut self.stacks);
        let host = self.host.clone();
        // Drop cannot await; tear down on a thread with its own runtime so
        // it works whether or not the test's runtime is still alive.
        let teardown = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for spec in &stacks {
                    if let Err(error) = stack::down(&host, spec, VolumePolicy::Remove).await {
                        eprintln!("removing {}: {}", spec.project, error.chain());
                    }
                }
            });
        });
        let _ = teardown.join();
    }
}

fn short(test_name: &str) -> String {
    test_name
        .chars()
        .filter(|character| character.is_ascii_alphanumeric())
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase()
}

fn unique_number() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A port nothing listens on right now. Ports handed out are remembered so
/// two stacks of one test run never get the same one.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mut given = GIVEN.lock().expect("port list");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
