//! The runbook's deployment and rollback against real Docker: the whole
//! deploy, automatic rollback of an unhealthy version, failures that change
//! nothing, busy environments, rollbacks to the previous, a named or every
//! release, and a stack that docker-compose still manages afterwards.

use std::time::Duration;

use deckhand::chat::Answer;
use deckhand::flow;
use deckhand::policy::OpState;

use crate::support::demo::DemoEnv;
use crate::support::docker::eventually;
use crate::support::workspace::{console_request, stdout};

/// Runs a console script as `user` and returns what it printed.
fn console(demo: &DemoEnv, user: &str, script: &str) -> String {
    let output = demo.workspace.run(&["console", "--as", user], script);
    assert!(
        output.status.success(),
        "console failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// The last version of an operation's message in console output.
fn last_message(text: &str, op_id: i64) -> String {
    let start = text
        .rmatch_indices(&format!("[#{op_id}"))
        .map(|(index, _)| index)
        .find(|index| !text[*index..].starts_with(&format!("[#{op_id} thread]")))
        .unwrap_or_else(|| panic!("no message for #{op_id} in:\n{text}"));
    let rest = &text[start..];
    let end = rest[1..]
        .find("\n[")
        .map(|end| end + 1)
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The id of the newest operation in console output.
fn newest_op(text: &str) -> i64 {
    let pattern = regex::Regex::new(r"\[#(\d+)").expect("regex");
    pattern
        .captures_iter(text)
        .filter_map(|captures| captures[1].parse().ok())
        .max()
        .unwrap_or_else(|| panic!("no operation in:\n{text}"))
}

async fn backend_version(demo: &DemoEnv) -> String {
    let result = deckhand::probe::probe(
        &format!("{}/health", demo.staging_url(13000)),
        Duration::from_secs(5),
    )
    .await;
    result.body_excerpt
}

async fn backend_container_id(demo: &DemoEnv) -> String {
    let selector = deckhand::docker::ServiceSelector::Compose {
        project: demo.project().to_string(),
        service: "backend".to_string(),
    };
    let containers = demo.host.find_containers(&selector).await.expect("lists");
    assert_eq!(containers.len(), 1, "{containers:?}");
    containers[0].id.clone()
}

#[tokio::test]
async fn deploy_reports_each_step_and_records_the_release() {
    let demo = DemoEnv::start("deploy_reports_each_step").await;
    let text = console(&demo, "alice", "/deploy staging v2\n");
    let op_id = newest_op(&text);
    let message = last_message(&text, op_id);
    assert!(
        message.contains(&format!("✅ Deploy #{op_id} · staging ← v2 · @alice")),
        "{message}"
    );
    for step in [
        "resolve images (",
        "pull (",
        "migrate (",
        "recreate (",
        "wait healthy (",
        "smoke checks (",
        "record release (",
    ] {
        assert!(
            message.contains(&format!("✓ {step}")),
            "missing step {step} in:\n{message}"
        );
    }
    assert!(message.contains("change: backend: deckhand-demo/tasktracker-backend:v1 → deckhand-demo/tasktracker-backend:v2"), "{message}");
    assert!(
        backend_version(&demo).await.contains("v2"),
        "the backend serves v2"
    );

    let app = demo.workspace.app().await;
    let releases = app
        .store
        .releases("staging", "backend", 5)
        .await
        .expect("releases");
    assert_eq!(releases.len(), 1);
    let release = &releases[0];
    assert_eq!(release.kind, "deploy");
    assert_eq!(release.git_ref.as_deref(), Some("v2"));
    assert_eq!(
        release.image_before.as_deref(),
        Some("deckhand-demo/tasktracker-backend:v1")
    );
    assert_eq!(release.image_after, "deckhand-demo/tasktracker-backend:v2");
    assert!(
        release
            .digest_before
            .as_deref()
            .is_some_and(|digest| digest.starts_with("sha256:")),
        "{release:?}"
    );
    assert!(
        release
            .digest_after
            .as_deref()
            .is_some_and(|digest| digest.starts_with("sha256:")),
        "{release:?}"
    );
    assert_eq!(release.actor, "alice");

    let status = console(&demo, "erin", "/status staging\n");
    assert!(
        status.contains("deckhand-demo/tasktracker-backend:v2"),
        "{status}"
    );
    assert!(
        status.contains("last release r1 deploy by alice"),
        "{status}"
    );
    let health = console(&demo, "erin", "/health staging\n");
    assert!(
        health.contains("staging: all 6 services healthy"),
        "{health}"
    );
    assert!(health.contains("/health/ready 200"), "{health}");
    let logs = console(
        &demo,
        "erin",
        "/logs staging backend --tail 20 --grep listening\n",
    );
    assert!(
        logs.contains("tasktracker-backend v2 listening on port 3000"),
        "{logs}"
    );

    let text = console(
        &demo,
        "bob",
        "/service stop staging gitweb\n/health staging\n/service start staging gitweb\n/service status staging gitweb\n",
    );
    assert!(
        text.contains("✓ service action (") && text.contains("stopped gitweb (1 container(s))"),
        "{text}"
    );
    assert!(text.contains("staging: 1 unhealthy"), "{text}");
    assert!(text.contains("started gitweb (1 container(s))"), "{text}");
    assert!(text.contains("inspected gitweb (1 container(s))"), "{text}");
    assert!(
        deckhand::probe::probe(&demo.staging_url(13001), Duration::from_secs(5))
            .await
            .is_success()
    );
}

#[tokio::test]
async fn rollbacks_go_back_hold_the_environment_and_follow_releases() {
    let demo = DemoEnv::start("rollbacks_go_back").await;
    let none = console(&demo, "alice", "/rollback staging backend\n");
    assert!(
        none.contains("backend has no release recorded in staging, so there is no previous version to roll back to"),
        "{none}"
    );
    console(&demo, "alice", "/deploy staging v2\n");
    let text = console(
        &demo,
        "alice",
        "/rollback staging backend --dry-run\n/rollback staging backend\n/deploy staging develop\n",
    );
    assert!(
        text.contains("Dry run · /rollback staging backend"),
        "{text}"
    );
    assert!(text.contains("backend: deckhand-demo/tasktracker-backend:v2 → deckhand-demo/tasktracker-backend:v1 (undoing r1 (deploy by alice"), "{text}");
    assert!(text.contains("✓ hold lock ("), "{text}");
    assert!(
        text.contains("staging is locked after rollback #"),
        "the next deploy is refused: {text}"
    );
    assert!(
        backend_version(&demo).await.contains("v1"),
        "the backend serves v1 again"
    );

    let text = console(
        &demo,
        "alice",
        "/unlock staging\n/rollback staging backend to r1\n/unlock staging\n",
    );
    assert!(text.contains("backend: deckhand-demo/tasktracker-backend:v1 → deckhand-demo/tasktracker-backend:v2 (release r1 (deploy by alice))"), "{text}");
    assert!(backend_version(&demo).await.contains("v2"));

    let text = console(
        &demo,
        "alice",
        "/deploy staging develop\n/rollback staging\n/unlock staging\n/rollback staging backend to v1\n",
    );
    assert!(text.contains("backend: deckhand-demo/tasktracker-backend:develop → deckhand-demo/tasktracker-backend:v2"), "the whole last deploy is undone: {text}");
    assert!(text.contains("backend: deckhand-demo/tasktracker-backend:v2 → deckhand-demo/tasktracker-backend:v1 (tag v1)"), "{text}");
    assert!(backend_version(&demo).await.contains("v1"));
    let app = demo.workspace.app().await;
    let kinds: Vec<String> = app
        .store
        .releases("staging", "backend", 10)
        .await
        .expect("releases")
        .into_iter()
        .map(|release| release.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "rollback", "rollback", "deploy", "rollback", "rollback", "deploy"
        ]
    );
}

#[tokio::test]
async fn failed_deploys_change_nothing_or_roll_back_by_themselves() {
    let demo = DemoEnv::start("failed_deploys").await;
    let before = backend_container_id(&demo).await;

    let text = console(&demo, "alice", "/deploy staging no-such-tag\n");
    assert!(
        text.contains(
            "image \"deckhand-demo/tasktracker-backend:no-such-tag\" not found on host \"local\""
        ),
        "{text}"
    );
    assert!(text.contains("— nothing was changed"), "{text}");
    assert_eq!(
        backend_container_id(&demo).await,
        before,
        "nothing was replaced"
    );

    let text = console(&demo, "alice", "/deploy staging migrate-fails\n");
    let message = last_message(&text, newest_op(&text));
    assert!(
        message.contains(
            "failed: migrate failed: `npm run db:migrate` exited 1 in a one-off backend container"
        ),
        "{message}"
    );
    assert!(message.contains("nothing was replaced"), "{message}");
    assert!(
        message.lines().count() > 12,
        "the migration's last lines are shown: {message}"
    );
    assert_eq!(
        backend_container_id(&demo).await,
        before,
        "nothing was replaced"
    );

    let text = console(&demo, "alice", "/deploy staging unhealthy\n");
    let message = last_message(&text, newest_op(&text));
    assert!(message.contains("⚠ Deploy #"), "{message}");
    assert!(
        message.contains("failed and rolled back: wait healthy failed:"),
        "{message}"
    );
    assert!(
        message.contains("rolled back automatically:")
            && message.contains("back on deckhand-demo/tasktracker-backend:v1"),
        "{message}"
    );
    assert!(
        backend_version(&demo).await.contains("v1"),
        "the old version serves again"
    );
    assert_eq!(
        backend_container_id(&demo).await,
        before,
        "the old container is back"
    );

    let text = console(&demo, "alice", "/deploy staging crash\n");
    let message = last_message(&text, newest_op(&text));
    assert!(message.contains("exited with code 3"), "{message}");
    assert!(message.contains("rolled back automatically"), "{message}");
    assert!(backend_version(&demo).await.contains("v1"));

    let app = demo.workspace.app().await;
    assert!(
        app.store
            .releases("staging", "backend", 5)
            .await
            .expect("releases")
            .is_empty(),
        "failed deploys record no release"
    );
}

#[tokio::test]
async fn a_second_mutating_request_while_a_deploy_runs_is_busy() {
    let demo = DemoEnv::start("second_request_busy").await;
    let app = demo.app().await;
    let first = flow::handle_request(&app, console_request("alice", "/deploy staging v2")).await;
    let Answer::Accepted { op_id } = first else {
        panic!("{first:?}")
    };
    eventually(
        "the deploy to take the lock",
        Duration::from_secs(30),
        || async { app.store.lock_holder("staging").await.ok().flatten() },
    )
    .await;
    let second =
        flow::handle_request(&app, console_request("bob", "/deploy staging develop")).await;
    let Answer::Private(reply) = second else {
        panic!("{second:?}")
    };
    assert!(
        reply
            .status
            .starts_with(&format!("busy: #{op_id} deploy by alice running since ")),
        "{}",
        reply.status
    );
    app.wait_idle().await;
    let operation = app
        .store
        .operation(op_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        operation.state,
        OpState::Succeeded,
        "{:?}",
        operation.outcome
    );
}

#[test]
fn an_unreachable_docker_host_changes_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let workspace = crate::support::workspace::Workspace::with_config(|text| {
        text.replace(
            "docker = \"unix:///var/run/docker.sock\"\ntimeout = \"30s\"",
            &format!("docker = \"unix:///var/run/docker.sock\"\ntimeout = \"30s\"\n\n[hosts.far]\ndocker = \"tcp://127.0.0.1:{port}\"\ntimeout = \"5s\""),
        )
        .replacen("host = \"local\"", "host = \"far\"", 1)
    });
    let output = workspace.run(
        &["console", "--as", "alice"],
        "/deploy staging v2\n/status staging\n",
    );
    let text = stdout(&output);
    assert!(
        text.contains(&format!("staging: Docker host tcp://127.0.0.1:{port} unreachable (connection refused) — nothing was changed")),
        "{text}"
    );
}

#[tokio::test]
async fn docker_compose_still_manages_a_stack_deckhand_redeployed() {
    let demo = DemoEnv::start_compose("compose_still_manages").await;
    let text = console(&demo, "alice", "/deploy staging v2\n");
    assert!(
        last_message(&text, newest_op(&text)).contains("✅ Deploy #"),
        "{text}"
    );
    let listed = demo.compose(&["ps"]).await;
    let backend_line = listed
        .lines()
        .find(|line| line.contains("_backend_1"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(backend_line.contains("Up"), "{listed}");
    let ids = demo.compose(&["ps", "-q", "backend"]).await;
    assert_eq!(
        ids.trim(),
        backend_container_id(&demo).await,
        "compose sees the new container"
    );

    let text = console(&demo, "alice", "/rollback staging backend\n");
    assert!(
        last_message(&text, newest_op(&text)).contains("✅ Rollback #"),
        "{text}"
    );
    demo.compose(&["stop", "backend"]).await;
    let stopped = demo.compose(&["ps"]).await;
    assert!(
        stopped
            .lines()
            .any(|line| line.contains("_backend_1") && line.contains("Exit")),
        "{stopped}"
    );
    demo.compose(&["start", "backend"]).await;
    let ids = demo.compose(&["ps", "-q", "backend"]).await;
    assert_eq!(ids.trim(), backend_container_id(&demo).await);
}

#[tokio::test]
async fn the_database_is_backed_up_rolled_back_and_restored() {
    let demo = DemoEnv::start("database_backup_restore").await;
    console(&demo, "alice", "/deploy staging v2\n");
    let text = console(&demo, "alice", "/rollback-db staging\n");
    let op_id = newest_op(&text);
    assert!(
        last_message(&text, op_id).contains("⚠ warning: data loss may occur"),
        "{text}"
    );
    let text = console(
        &demo,
        "carol",
        &format!(":approve {op_id}\n:as dave\n:approve {op_id}\n"),
    );
    let message = last_message(&text, op_id);
    assert!(message.contains("✅ Rollback-db #"), "{message}");
    assert!(message.contains("✓ back up database ("), "{message}");
    assert!(
        message.contains("✓ check database (") && message.contains("SELECT 1 answered"),
        "{message}"
    );
    let backups: Vec<String> = std::fs::read_dir(demo.backup_dir.path())
        .expect("backup folder")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let dump = std::fs::read_to_string(demo.backup_dir.path().join(&backups[0])).expect("dump");
    assert!(dump.contains("CREATE TABLE"), "a real pg_dump");

    let missing = console(&demo, "carol", "/restore-db staging nothing-here.sql\n");
    assert!(
        missing.contains("no backup named \"nothing-here.sql\""),
        "{missing}"
    );
    let text = console(
        &demo,
        "carol",
        &format!("/restore-db staging {}\n", backups[0]),
    );
    let op_id = newest_op(&text);
    assert!(
        last_message(&text, op_id)
            .contains("data loss: everything written since the backup is lost"),
        "{text}"
    );
    let text = console(
        &demo,
        "dave",
        &format!(":approve {op_id}\n:as frank\n:approve {op_id}\n"),
    );
    let message = last_message(&text, op_id);
    assert!(message.contains("✅ Restore-db #"), "{message}");
    assert!(
        message.contains(&format!("restored {}", backups[0])),
        "{message}"
    );
    let tasks = reqwest_get(&format!("{}/api/v1/tasks", demo.staging_url(13000))).await;
    assert!(
        tasks.contains("200"),
        "the restored tables serve the backend again: {tasks}"
    );
}

async fn reqwest_get(url: &str) -> String {
    let result = deckhand::probe::probe(url, Duration::from_secs(5)).await;
    format!("{:?} {}", result.status, result.body_excerpt)
}

#[tokio::test]
async fn a_replicated_service_is_replaced_one_replica_at_a_time() {
    let commands = crate::support::workspace::CommandsCopy::edited("deploy.toml", |text| {
        text.replace(
            "  { service = \"backend\", path = \"/health\", status = 200, contains = \"ok\" },\n",
            "",
        )
    });
    let commands_dir = commands.path().display().to_string();
    let demo = DemoEnv::start_custom(
        "replicated_service",
        |stack| {
            let backend = stack.services.iter_mut().find(|service| service.name == "backend").expect("backend");
            backend.replicas = 2;
            backend.ports.clear();
        },
        |text| {
            let shipped = crate::support::workspace::repo_root().join("commands").display().to_string();
            text.replace(&shipped, &commands_dir).replacen(
                "image = \"deckhand-demo/tasktracker-backend:{ref}\"\nurl = \"http://127.0.0.1:13000\"\nhealth = [\"/health\", \"/health/ready\", \"/health/live\"]",
                "image = \"deckhand-demo/tasktracker-backend:{ref}\"",
                1,
            )
        },
    )
    .await;
    let text = console(
        &demo,
        "alice",
        "/deploy staging v2 --dry-run\n/deploy staging v2\n",
    );
    assert!(text.contains("(2 replicas, one at a time)"), "{text}");
    let message = last_message(&text, newest_op(&text));
    assert!(message.contains("✅ Deploy #"), "{message}");
    assert!(
        message.contains("backend: 2 container(s) on deckhand-demo/tasktracker-backend:v2"),
        "{message}"
    );
    let selector = deckhand::docker::ServiceSelector::Compose {
        project: demo.project().to_string(),
        service: "backend".to_string(),
    };
    let containers = demo.host.find_containers(&selector).await.expect("lists");
    assert_eq!(containers.len(), 2);
    assert!(containers.iter().all(|container| container.image_reference
        == "deckhand-demo/tasktracker-backend:v2"
        && container.state.running));
    let nginx = deckhand::probe::probe(
        &format!("{}/health", demo.staging_url(18080)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        nginx.is_success(),
        "nginx still reaches the backend: {}",
        nginx.describe()
    );
}

/// Leaves the store as a crash during a deploy's recreate step would: the
/// operation running, its step journaled, its lock held, and its owner's
/// lease lapsed (the owner is dead).
async fn crashed_deploy(app: &deckhand::app::App) -> i64 {
    let plan = deckhand::plan::Plan {
        changes: vec![deckhand::plan::Change {
            service: "backend".to_string(),
            from_image: Some("deckhand-demo/tasktracker-backend:v1".to_string()),
            from_digest: None,
            to_image: "deckhand-demo/tasktracker-backend:v2".to_string(),
            to_digest: None,
            replicas: 1,
            note: None,
        }],
        ..Default::default()
    };
    let now = app.now();
    let op_id = app
        .store
        .insert_operation(
            &deckhand::store::NewOperation {
                command: "deploy".to_string(),
                env: Some("staging".to_string()),
                command_line: "/deploy staging v2".to_string(),
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
        .start_step(op_id, 3, "recreate", "recreate", now)
        .await
        .expect("journal");
    assert_eq!(
        app.store
            .try_lock("staging", op_id, "deploy", "alice", now)
            .await
            .expect("lock"),
        None
    );
    op_id
}

#[tokio::test]
async fn after_a_crash_each_service_runs_the_old_or_the_new_version_never_neither() {
    let demo = DemoEnv::start("crash_recovery").await;
    let app = demo.workspace.app().await;
    let selector = deckhand::docker::ServiceSelector::Compose {
        project: demo.project().to_string(),
        service: "backend".to_string(),
    };

    // Replaced but not committed: the new container is healthy, so it stays.
    let old = demo
        .host
        .find_containers(&selector)
        .await
        .expect("lists")
        .remove(0);
    demo.host
        .recreate(&old, "deckhand-demo/tasktracker-backend:v2")
        .await
        .expect("recreates");
    let op_id = crashed_deploy(&app).await;
    flow::recover_interrupted(&app).await;
    let operation = app
        .store
        .operation(op_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(operation.state, OpState::Interrupted);
    let outcome = operation.outcome.unwrap_or_default();
    assert!(
        outcome.starts_with("Deckhand stopped during step 4 (recreate)"),
        "{outcome}"
    );
    assert!(outcome.contains("kept on the new version"), "{outcome}");
    assert_eq!(
        app.store.lock_holder("staging").await.expect("lock"),
        None,
        "the lock is released"
    );
    assert!(
        demo.host
            .find_leftovers(&selector)
            .await
            .expect("lists")
            .is_empty()
    );
    assert!(backend_version(&demo).await.contains("v2"));

    // Stopped and set aside, but the new container never started: the old one returns.
    let current = demo
        .host
        .find_containers(&selector)
        .await
        .expect("lists")
        .remove(0);
    let recreated = demo
        .host
        .recreate(&current, "deckhand-demo/tasktracker-backend:v1")
        .await
        .expect("recreates");
    demo.host
        .remove(&recreated.new_id)
        .await
        .expect("removes the new container");
    let op_id = crashed_deploy(&app).await;
    flow::recover_interrupted(&app).await;
    let outcome = app
        .store
        .operation(op_id)
        .await
        .expect("read")
        .expect("exists")
        .outcome
        .unwrap_or_default();
    assert!(
        outcome.contains("restored to the previous version"),
        "{outcome}"
    );
    eventually(
        "the previous backend to serve again",
        Duration::from_secs(60),
        || async { backend_version(&demo).await.contains("v2").then_some(()) },
    )
    .await;
    let entries = app
        .store
        .audit_entries(Some("staging"), 10)
        .await
        .expect("audit");
    assert!(
        entries
            .iter()
            .any(|entry| entry.entry.op_id == op_id && entry.entry.outcome == "interrupted"),
        "audited"
    );
}
