//! Crash safety against real Docker and real PostgreSQL: a real operation's
//! step is driven one journaled stage at a time (`exec::recovery::StagedStep`,
//! the machine the runner itself uses) up to stage k and then abandoned, as a
//! kill -9 would leave it — journal and Docker as they are. Recovery
//! (`exec::settle_interrupted`) must then leave the target on the old or the
//! new version, healthy, with nothing left behind, settling twice must be
//! harmless, and later work must succeed. One test kills the real binary with
//! SIGKILL in the middle of a slow stop and lets a second start recover.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use deckhand::app::App;
use deckhand::docker::{DockerHost, Exec, ServiceSelector};
use deckhand::exec::recovery::{Progress, StagedStep};
use deckhand::exec::settle_interrupted;
use deckhand::plan::{Change, Plan};
use deckhand::policy::OpState;
use deckhand::store::{NewOperation, OperationRecord};

use crate::support::demo::DemoEnv;
use crate::support::docker::{TestDocker, eventually};
use crate::support::workspace::{CommandsCopy, stdout};

const V1: &str = "deckhand-demo/tasktracker-backend:v1";
const V2: &str = "deckhand-demo/tasktracker-backend:v2";

/// The state key every in-process test uses; the same value everywhere, so
/// setting it from several tests at once is harmless.
pub const STATE_KEY: &str = "q3Zc8tWZ2n1s0fJmR3l8o7mC2q9v4xY6b1kP0aT5uE8=";

pub fn set_state_key() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        // SAFETY: every caller sets the same value before reading it, and no
        // test removes it from this process.
        unsafe { std::env::set_var("DECKHAND_STATE_KEY", STATE_KEY) };
    });
}

/// A running operation as the runner would have stored it.
pub async fn running_operation(app: &App, command_line: &str, plan: &Plan) -> OperationRecord {
    let command = command_line
        .trim_start_matches('/')
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    let now = app.now();
    let op_id = app
        .store
        .insert_operation(
            &NewOperation {
                command: command.clone(),
                env: Some("staging".to_string()),
                command_line: command_line.to_string(),
                params_hash: "h".to_string(),
                plan: plan.to_json(),
                requester: "alice".to_string(),
                requester_id: None,
                requester_os: None,
                platform: deckhand::names::Platform::Console,
                channel: "console".to_string(),
                state: OpState::Running,
                approvals_needed: 0,
                approver_roles: Vec::new(),
                created_at: now,
                expires_at: None,
            },
            &deckhand::store::Lease {
                owner: "a-process-that-died".to_string(),
                until: now - chrono::Duration::seconds(1),
            },
        )
        .await
        .expect("operation");
    app.store
        .operation(op_id)
        .await
        .expect("reads")
        .expect("exists")
}

/// Runs `stages` stages of step `step_idx` and abandons the step there;
/// returns whether the step finished within them.
pub async fn run_stages(
    app: &App,
    operation: &OperationRecord,
    step_idx: usize,
    stages: usize,
) -> Result<bool, String> {
    let mut step = StagedStep::begin(app, operation, step_idx)
        .await
        .map_err(|error| error.to_string())?;
    for _ in 0..stages {
        match step.advance().await.map_err(|error| error.to_string())? {
            Progress::Stage(_) => {}
            Progress::Done(_) => return Ok(true),
        }
    }
    Ok(false)
}

/// Runs a step to its end; returns its summary.
pub async fn run_to_end(app: &App, operation: &OperationRecord, step_idx: usize) -> String {
    let mut step = StagedStep::begin(app, operation, step_idx)
        .await
        .unwrap_or_else(|error| panic!("step {step_idx} begins: {error}"));
    loop {
        match step.advance().await {
            Ok(Progress::Stage(_)) => {}
            Ok(Progress::Done(summary)) => return summary,
            Err(error) => panic!("step {step_idx} failed: {error}"),
        }
    }
}

/// Settles, checks that the journal is empty afterwards and that settling
/// again does nothing; returns the first call's lines.
pub async fn settle_twice(app: &App, operation: &OperationRecord) -> Vec<String> {
    let lines = settle_interrupted(app, operation).await;
    assert_eq!(
        app.store.intents(operation.id).await.expect("journal"),
        Vec::new(),
        "every intent settled: {lines:?}"
    );
    let again = settle_interrupted(app, operation).await;
    assert!(
        again.is_empty(),
        "settling twice changes nothing: {again:?}"
    );
    lines
}

fn backend_selector(demo: &DemoEnv) -> ServiceSelector {
    ServiceSelector::Compose {
        project: demo.project().to_string(),
        service: "backend".to_string(),
    }
}

/// The backend's one container, which must run and be healthy; no
/// `.deckhand-old` container may be left. Returns its image.
async fn backend_settled(demo: &DemoEnv) -> String {
    let selector = backend_selector(demo);
    let containers = demo.host.find_containers(&selector).await.expect("lists");
    assert_eq!(containers.len(), 1, "one backend container: {containers:?}");
    assert!(
        demo.host
            .find_leftovers(&selector)
            .await
            .expect("lists")
            .is_empty(),
        "no .deckhand-old container left"
    );
    let outcome = demo
        .host
        .wait_healthy(&containers[0].id, Duration::from_secs(60))
        .await
        .expect("waits");
    assert!(outcome.is_ready(), "the backend runs healthy: {outcome}");
    containers[0].image_reference.clone()
}

fn change(from: &str, to: &str) -> Plan {
    Plan {
        changes: vec![Change {
            service: "backend".to_string(),
            from_image: Some(from.to_string()),
            from_digest: None,
            to_image: to.to_string(),
            to_digest: None,
            replicas: 1,
            note: None,
        }],
        ..Default::default()
    }
}

/// The deploy's `recreate` is step 4 (index 3) of commands/deploy.toml.
const RECREATE_STEP: usize = 3;

#[tokio::test]
async fn a_replacement_killed_at_any_stage_leaves_the_old_or_the_new_version_running() {
    let demo = DemoEnv::start("crash_replace").await;
    let app = demo.workspace.app().await;
    let mut running = V1.to_string();
    // 0: nothing done yet; 1: old stopped; 2: renamed aside; 3: new created;
    // 4: new connected; 5: new started.
    for stages in 0..=5 {
        let target = if running == V1 { V2 } else { V1 };
        let operation = running_operation(
            &app,
            &format!("/deploy staging {}", &target[target.len() - 2..]),
            &change(&running, target),
        )
        .await;
        let finished = run_stages(&app, &operation, RECREATE_STEP, stages)
            .await
            .expect("stages run");
        assert!(!finished, "a replacement has more than {stages} stages");
        let lines = settle_twice(&app, &operation).await;
        let now = backend_settled(&demo).await;
        if stages < 5 {
            assert_eq!(
                now, running,
                "before the start the old version stays ({stages} stages)"
            );
            if stages > 0 {
                assert!(
                    lines
                        .iter()
                        .any(|line| line.ends_with("restored to the previous version")),
                    "{stages} stages: {lines:?}"
                );
            }
        } else {
            assert_eq!(now, target, "a started, healthy new version stays");
            assert!(
                lines
                    .iter()
                    .any(|line| line.ends_with("kept on the new version")),
                "{lines:?}"
            );
        }
        running = now;
    }
    // Later deploys work: a whole replacement, then its commit.
    let target = if running == V1 { V2 } else { V1 };
    let operation = running_operation(&app, "/deploy staging v1", &change(&running, target)).await;
    let summary = run_to_end(&app, &operation, RECREATE_STEP).await;
    assert!(summary.contains("1 container(s)"), "{summary}");
    let lines = settle_twice(&app, &operation).await;
    assert!(
        lines
            .iter()
            .any(|line| line.ends_with("kept on the new version")),
        "{lines:?}"
    );
    assert_eq!(backend_settled(&demo).await, target);
}

#[tokio::test]
async fn what_a_recovery_could_not_settle_is_settled_by_a_later_sweep() {
    let demo = DemoEnv::start("crash_resettle").await;
    let app = demo.workspace.app().await;
    let operation = running_operation(&app, "/deploy staging v2", &change(V1, V2)).await;
    // Stopped and renamed aside, then the process died; the recovery that
    // marked it interrupted could not reach the host, so its intent stayed.
    assert!(
        !run_stages(&app, &operation, RECREATE_STEP, 2)
            .await
            .expect("stages run")
    );
    sqlx::query("UPDATE operations SET state = 'interrupted' WHERE id = $1")
        .bind(operation.id)
        .execute(app.store.pool())
        .await
        .expect("finished");
    assert_eq!(
        app.store.finished_with_intents().await.expect("store"),
        vec![operation.id]
    );
    // The next sweep of any process settles it: the old version runs again
    // and nothing is left to block the next replacement.
    deckhand::flow::sweep_once(&app).await;
    assert!(
        app.store
            .intents(operation.id)
            .await
            .expect("journal")
            .is_empty()
    );
    assert_eq!(backend_settled(&demo).await, V1);
    let next = running_operation(&app, "/deploy staging v2", &change(V1, V2)).await;
    let summary = run_to_end(&app, &next, RECREATE_STEP).await;
    assert!(summary.contains("1 container(s)"), "{summary}");
}

#[tokio::test]
async fn the_one_off_container_of_an_interrupted_migration_is_removed() {
    let demo = DemoEnv::start("crash_oneoff").await;
    let app = demo.workspace.app().await;
    let operation = running_operation(&app, "/deploy staging v2", &change(V1, V2)).await;
    // The deploy's migrate is step 3 (index 2): started, then abandoned.
    assert!(!run_stages(&app, &operation, 2, 1).await.expect("starts"));
    let intents = app.store.intents(operation.id).await.expect("journal");
    let data = intents
        .iter()
        .find(|intent| intent.kind == "run_once")
        .map(|intent| intent.data.clone())
        .expect("the one-off container is journaled before it is created");
    let record: serde_json::Value = serde_json::from_str(&data).expect("json");
    let label = format!(
        "deckhand.one-off={}",
        record["token"].as_str().expect("a token")
    );
    let one_offs = || async {
        let listed = demo
            .host
            .find_containers(&ServiceSelector::Compose {
                project: demo.project().to_string(),
                service: "backend".to_string(),
            })
            .await
            .expect("lists");
        listed.len()
    };
    assert_eq!(
        one_offs().await,
        1,
        "the one-off container is not a replica"
    );
    let labelled = labelled_containers(&label).await;
    assert_eq!(labelled.len(), 1, "the one-off container exists: {label}");

    let lines = settle_twice(&app, &operation).await;
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("one-off container") && line.ends_with("removed")),
        "{lines:?}"
    );
    assert!(labelled_containers(&label).await.is_empty());
    assert_eq!(backend_settled(&demo).await, V1);
}

/// Containers carrying a label (`key=value`), by name.
async fn labelled_containers(label: &str) -> Vec<String> {
    let raw = bollard::Docker::connect_with_unix(
        "/var/run/docker.sock",
        30,
        &bollard::ClientVersion {
            major_version: 1,
            minor_version: 41,
        },
    )
    .expect("socket");
    let filters = HashMap::from([("label", vec![label.to_string()])]);
    raw.list_containers(Some(
        bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build(),
    ))
    .await
    .expect("lists")
    .into_iter()
    .flat_map(|summary| summary.names.unwrap_or_default())
    .collect()
}

async fn backend_env(demo: &DemoEnv, name: &str) -> String {
    let containers = demo
        .host
        .find_containers(&backend_selector(demo))
        .await
        .expect("lists");
    demo.host
        .env_of(&containers[0].id)
        .await
        .expect("env")
        .remove(name)
        .unwrap_or_else(|| panic!("backend has no {name}"))
}

/// Waits until the backend says its database connection works.
async fn backend_ready(demo: &DemoEnv) {
    let url = format!("{}/health/ready", demo.staging_url(13000));
    eventually(
        "the backend to reach its database",
        Duration::from_secs(30),
        || {
            let url = url.clone();
            async move {
                let probe = deckhand::probe::probe(&url, Duration::from_secs(5)).await;
                probe
                    .body_excerpt
                    .contains("\"database\":\"ok\"")
                    .then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn rotations_of_the_jwt_secret_and_the_database_password_killed_midway_finish_or_undo() {
    set_state_key();
    let demo = DemoEnv::start("crash_rotate").await;
    let app = demo.workspace.app().await;

    // JWT: abandoned with the old container renamed aside, then with the new
    // one started. All replicas end on one secret; no .deckhand-old remains.
    let original_jwt = backend_env(&demo, "JWT_SECRET").await;
    let operation = running_operation(&app, "/rotate jwt staging", &Plan::default()).await;
    assert!(!run_stages(&app, &operation, 0, 2).await.expect("stages"));
    let lines = settle_twice(&app, &operation).await;
    assert!(lines[0].starts_with("JWT rotation undone"), "{lines:?}");
    backend_settled(&demo).await;
    assert_eq!(backend_env(&demo, "JWT_SECRET").await, original_jwt);

    let operation = running_operation(&app, "/rotate jwt staging", &Plan::default()).await;
    assert!(!run_stages(&app, &operation, 0, 5).await.expect("stages"));
    let lines = settle_twice(&app, &operation).await;
    assert!(lines[0].starts_with("JWT rotation finished"), "{lines:?}");
    backend_settled(&demo).await;
    let rotated_jwt = backend_env(&demo, "JWT_SECRET").await;
    assert_ne!(rotated_jwt, original_jwt);
    // Later recreates of the service work: a whole rotation.
    let operation = running_operation(&app, "/rotate jwt staging", &Plan::default()).await;
    let summary = run_to_end(&app, &operation, 0).await;
    assert!(
        summary.starts_with("new JWT secret in JWT_SECRET"),
        "{summary}"
    );
    assert_ne!(backend_env(&demo, "JWT_SECRET").await, rotated_jwt);

    // Database password: 1 stage = new password set, consumer not moved;
    // 3 = the consumer's old container renamed aside (the service down);
    // 6 = the consumer's new container started and healthy.
    let original_url = backend_env(&demo, "DATABASE_URL").await;
    for (stages, finished) in [(1, false), (3, false), (6, true)] {
        let before = backend_env(&demo, "DATABASE_URL").await;
        let operation =
            running_operation(&app, "/rotate db-password staging", &Plan::default()).await;
        assert!(
            !run_stages(&app, &operation, 0, stages)
                .await
                .expect("stages")
        );
        let intents = app.store.intents(operation.id).await.expect("journal");
        let rotation = intents
            .iter()
            .find(|intent| intent.kind == "rotate_db_password")
            .expect("the rotation is journaled");
        assert!(rotation.sealed.is_some(), "the passwords are sealed");
        let old_password = url::Url::parse(&before)
            .expect("url")
            .password()
            .expect("password")
            .to_string();
        for intent in &intents {
            assert!(
                !intent.data.contains(&old_password),
                "no plaintext in the journal"
            );
            assert!(
                !intent
                    .sealed
                    .clone()
                    .unwrap_or_default()
                    .contains(&old_password),
                "sealed, not plaintext"
            );
        }
        let lines = settle_twice(&app, &operation).await;
        backend_settled(&demo).await;
        backend_ready(&demo).await;
        let after = backend_env(&demo, "DATABASE_URL").await;
        if finished {
            assert!(
                lines[0].starts_with("database password rotation finished"),
                "{lines:?}"
            );
            assert_ne!(after, before, "the consumer runs on the new password");
            let new_password = url::Url::parse(&after)
                .expect("url")
                .password()
                .expect("password")
                .to_string();
            let store = std::fs::read(demo.workspace.config_path().with_file_name("deckhand.db"))
                .expect("the store file");
            assert!(
                !String::from_utf8_lossy(&store).contains(&new_password),
                "the new password is nowhere in the store"
            );
        } else {
            assert!(
                lines[0].starts_with("database password rotation undone"),
                "{lines:?}"
            );
            assert_eq!(after, before, "the consumer is back on the old password");
        }
    }
    assert_ne!(backend_env(&demo, "DATABASE_URL").await, original_url);
}

/// Runs a command as root in a container; returns its stdout.
async fn exec_sql(host: &DockerHost, container: &str, database: &str, sql: &str) -> String {
    let output = host
        .exec(
            container,
            Exec {
                cmd: vec![
                    "psql".into(),
                    "-U".into(),
                    "tasktracker".into(),
                    "-d".into(),
                    database.into(),
                    "-v".into(),
                    "ON_ERROR_STOP=1".into(),
                    "-qtAc".into(),
                    sql.into(),
                ],
                env: Vec::new(),
                stdin: None,
                timeout: Duration::from_secs(30),
            },
        )
        .await
        .expect("psql runs");
    assert_eq!(output.exit_code, 0, "{sql}: {}", output.stderr_text());
    output.stdout_text().trim().to_string()
}

async fn container_of(demo: &DemoEnv, service: &str) -> String {
    demo.host
        .find_containers(&ServiceSelector::Compose {
            project: demo.project().to_string(),
            service: service.to_string(),
        })
        .await
        .expect("lists")
        .remove(0)
        .id
}

async fn served_names(demo: &DemoEnv) -> Vec<String> {
    deckhand::diagnose::inspect_certificate(
        &deckhand::config::TlsEndpoint {
            connect: demo
                .staging_url(18443)
                .trim_start_matches("http://")
                .to_string(),
            name: "localhost".to_string(),
        },
        Duration::from_secs(5),
    )
    .await
    .expect("nginx serves a certificate")
    .dns_names
}

#[tokio::test]
async fn certificate_restore_and_service_steps_killed_midway_settle_to_a_stated_state() {
    let demo = DemoEnv::start("crash_settle").await;
    let app = demo.workspace.app().await;

    // TLS: installed but not loaded → the previous files come back; loaded
    // and verified → the new certificate stays. The demo's certificate names
    // no subjectAltName; a rotated one names localhost.
    assert!(served_names(&demo).await.is_empty());
    let operation = running_operation(&app, "/rotate ssl staging", &Plan::default()).await;
    assert!(!run_stages(&app, &operation, 0, 3).await.expect("stages"));
    let lines = settle_twice(&app, &operation).await;
    assert_eq!(
        lines,
        ["TLS rotation undone: nginx serves the previous certificate again"]
    );
    assert!(
        served_names(&demo).await.is_empty(),
        "the previous certificate is served"
    );
    let operation = running_operation(&app, "/rotate ssl staging", &Plan::default()).await;
    assert!(!run_stages(&app, &operation, 0, 4).await.expect("stages"));
    let lines = settle_twice(&app, &operation).await;
    assert_eq!(
        lines,
        ["TLS rotation finished: nginx serves the new certificate (verified)"]
    );
    assert_eq!(served_names(&demo).await, ["localhost"]);

    // restore-db: loaded beside the live database → the live data stays;
    // swapped in → the restored data stays. Nothing is left beside it.
    std::fs::write(
        demo.backup_dir.path().join("marker.sql"),
        "CREATE TABLE restored_marker (id int);\nINSERT INTO restored_marker VALUES (42);\n",
    )
    .expect("a backup");
    let postgres = container_of(&demo, "postgres").await;
    let marker = "SELECT to_regclass('restored_marker') IS NOT NULL";
    let copies = "SELECT count(*) FROM pg_database WHERE datname LIKE 'tasktracker_%'";
    let operation =
        running_operation(&app, "/restore-db staging marker.sql", &Plan::default()).await;
    assert!(!run_stages(&app, &operation, 0, 1).await.expect("stages"));
    let lines = settle_twice(&app, &operation).await;
    assert!(
        lines[0].starts_with("restore undone: tasktracker keeps its previous data"),
        "{lines:?}"
    );
    assert_eq!(
        exec_sql(&demo.host, &postgres, "tasktracker", marker).await,
        "f"
    );
    assert_eq!(
        exec_sql(&demo.host, &postgres, "postgres", copies).await,
        "0"
    );
    let operation =
        running_operation(&app, "/restore-db staging marker.sql", &Plan::default()).await;
    assert!(!run_stages(&app, &operation, 0, 2).await.expect("stages"));
    let lines = settle_twice(&app, &operation).await;
    assert!(
        lines[0].starts_with("restore finished: tasktracker holds marker.sql"),
        "{lines:?}"
    );
    assert_eq!(
        exec_sql(&demo.host, &postgres, "tasktracker", marker).await,
        "t"
    );
    assert_eq!(
        exec_sql(&demo.host, &postgres, "postgres", copies).await,
        "0"
    );

    // /service restart interrupted after its stop: the container runs again.
    let operation = running_operation(&app, "/service restart staging ide", &Plan::default()).await;
    assert!(!run_stages(&app, &operation, 0, 1).await.expect("stages"));
    let ide = container_of(&demo, "ide").await;
    assert!(
        !demo
            .host
            .inspect(&ide)
            .await
            .expect("inspects")
            .state
            .running
    );
    let lines = settle_twice(&app, &operation).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].ends_with("running again (the interrupted /service restart was finished)"));
    assert!(
        demo.host
            .inspect(&ide)
            .await
            .expect("inspects")
            .state
            .running
    );
}

/// The real binary, SIGKILLed while Docker is stopping the old container
/// (its process ignores the stop signal, so the stop takes its whole grace
/// period and outlives the killed client); a second start recovers: the old
/// version runs again, nothing is left behind, and the next deploy works.
#[tokio::test]
async fn a_deckhand_killed_during_a_slow_stop_recovers_on_its_next_start() {
    use futures_util::StreamExt;

    let docker = TestDocker::start("crash_e2e").await;
    let name = docker.unique("web");
    let mut body = crate::support::docker::busybox_body("unused");
    body.image = Some(V1.to_string());
    body.cmd = None;
    // PID 1 has no handler for SIGUSR1, so it ignores it: Docker waits out
    // the grace period, then kills.
    body.stop_signal = Some("SIGUSR1".to_string());
    body.stop_timeout = Some(10);
    let id = docker.run(&name, body).await;
    assert!(
        docker
            .host
            .wait_healthy(&id, Duration::from_secs(60))
            .await
            .expect("waits")
            .is_ready()
    );

    // A deploy of just this container: resolve, pull, recreate, wait healthy, record.
    let commands = CommandsCopy::edited("deploy.toml", |text| {
        let cut = text
            .find("[[steps]]\nstep = \"run_once\"")
            .expect("migrate step");
        let recreate = text
            .find("[[steps]]\nstep = \"recreate\"")
            .expect("recreate step");
        let smoke = text
            .find("[[steps]]\nstep = \"smoke\"")
            .expect("smoke step");
        let record = text
            .find("[[steps]]\nstep = \"record_release\"")
            .expect("record step");
        format!(
            "{}{}{}",
            &text[..cut],
            &text[recreate..smoke],
            &text[record..]
        )
    });
    let workspace = crate::support::workspace::Workspace::with_config(|text| {
        let shipped = crate::support::workspace::repo_root().join("commands");
        text.replace(
            &shipped.display().to_string(),
            &commands.path().display().to_string(),
        )
        .replace(
            "[environments.staging.services.backend]\nimage = \"deckhand-demo/tasktracker-backend:{ref}\"\nurl = \"http://127.0.0.1:13000\"\nhealth = [\"/health\", \"/health/ready\", \"/health/live\"]",
            &format!("[environments.staging.services.backend]\nimage = \"deckhand-demo/tasktracker-backend:{{ref}}\"\ncontainer = \"{name}\""),
        ) + "\n[operations]\nlease_renew = \"250ms\"\nlease_expiry = \"3s\"\n"
    });

    let mut events = docker.raw.events(Some(
        bollard::query_parameters::EventsOptionsBuilder::default()
            .filters(&HashMap::from([
                ("container", vec![id.clone()]),
                ("event", vec!["kill".to_string()]),
            ]))
            .build(),
    ));
    let mut first = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["console", "--as", "alice", "--config"])
        .arg(workspace.config_path())
        .env_remove("DECKHAND_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("deckhand starts");
    first
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"/deploy staging v2\n")
        .expect("writes");
    // Docker reports the stop signal as a kill event the moment it is sent.
    let sent = tokio::time::timeout(Duration::from_secs(120), events.next())
        .await
        .expect("the deploy stops the old container");
    assert!(sent.is_some_and(|event| event.is_ok()), "a kill event");
    first.kill().expect("SIGKILL");
    let _ = first.wait();
    assert!(
        docker.exists(&name).await,
        "the old container still has its name"
    );

    // Once the dead owner's lease lapses, the next start recovers before it
    // reads its first command.
    let app = workspace.app().await;
    let lease = app
        .store
        .operation(1)
        .await
        .expect("reads")
        .expect("exists")
        .lease_until
        .expect("a lease");
    eventually(
        "the dead owner's lease to lapse",
        Duration::from_secs(30),
        || async { (chrono::Utc::now() > lease).then_some(()) },
    )
    .await;
    let second = workspace.run(&["console", "--as", "alice"], "");
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let operation = app
        .store
        .operation(1)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(operation.state, OpState::Interrupted);
    let outcome = operation.outcome.clone().unwrap_or_default();
    assert!(
        outcome.contains("restored to the previous version"),
        "{outcome}"
    );
    assert!(app.store.intents(1).await.expect("journal").is_empty());
    let container = docker
        .host
        .inspect(&name)
        .await
        .expect("the service exists");
    assert_eq!(container.image_reference, V1);
    assert!(
        docker
            .host
            .wait_healthy(&container.id, Duration::from_secs(60))
            .await
            .expect("waits")
            .is_ready(),
        "the old version runs again"
    );
    assert!(!docker.exists(&format!("{name}.deckhand-old")).await);

    // And the next deploy works.
    let third = workspace.run(&["console", "--as", "alice"], "/deploy staging v2\n");
    let text = stdout(&third);
    let deployed = eventually("the deploy to finish", Duration::from_secs(5), || {
        let app = Arc::clone(&app);
        async move {
            let operation = app.store.operation(2).await.ok().flatten()?;
            (operation.state != OpState::Running).then_some(operation)
        }
    })
    .await;
    assert_eq!(deployed.state, OpState::Succeeded, "{text}");
    assert_eq!(
        docker
            .host
            .inspect(&name)
            .await
            .expect("inspects")
            .image_reference,
        V2
    );
}
