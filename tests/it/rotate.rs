//! The runbook's secret rotation against real containers: the JWT secret
//! and the database password change, the services stay healthy, the TLS
//! certificate served changes, and no generated secret appears in chat,
//! logs or the audit trail.

use std::time::Duration;

use deckhand::docker::{DockerHost, Exec, LogQuery, ServiceSelector};
use deckhand::exec::recovery::StagedStep;
use deckhand::plan::Plan;

use crate::crash::{run_to_end, running_operation, set_state_key};
use crate::support::demo::DemoEnv;
use crate::support::docker::eventually;
use crate::support::workspace::{Workspace, stdout};

fn backend_env(env: &std::collections::BTreeMap<String, String>, name: &str) -> String {
    env.get(name)
        .cloned()
        .unwrap_or_else(|| panic!("backend has no {name}"))
}

#[tokio::test]
async fn secrets_rotate_without_ever_being_shown() {
    // The console inherits the state key the database password rotation needs.
    crate::crash::set_state_key();
    let demo = DemoEnv::start("secrets_rotate").await;
    let selector = deckhand::docker::ServiceSelector::Compose {
        project: demo.project().to_string(),
        service: "backend".to_string(),
    };
    let before = demo.host.find_containers(&selector).await.expect("lists");
    let env_before = demo.host.env_of(&before[0].id).await.expect("env");

    let request = demo.workspace.run(
        &["console", "--as", "alice"],
        "/rotate jwt staging\n/rotate db-password staging\n/rotate ssl staging\n",
    );
    let text = stdout(&request);
    let ops: Vec<i64> = regex::Regex::new(r"⏳ Rotate #(\d+)")
        .expect("regex")
        .captures_iter(&text)
        .filter_map(|captures| captures[1].parse().ok())
        .collect();
    assert_eq!(ops.len(), 3, "each rotation waits for an approver: {text}");
    let approvals: String = ops
        .iter()
        .map(|op_id| format!(":approve {op_id}\n"))
        .collect();
    let output = demo.workspace.run(&["console", "--as", "bob"], &approvals);
    let text = stdout(&output);
    assert!(
        text.contains(
            "new JWT secret in JWT_SECRET: 1 backend container(s) replaced one at a time"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "new password for tasktracker in postgres; backend reconnected with it and is ready"
        ),
        "{text}"
    );
    assert!(
        text.contains("nginx serves a new certificate for CN=localhost"),
        "{text}"
    );
    assert!(!text.contains("failed"), "{text}");

    let served = deckhand::diagnose::inspect_certificate(
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
    .expect("nginx serves the new certificate");
    assert!(
        served.matches_name && served.dns_names == ["localhost"],
        "the new certificate names localhost in subjectAltName: {served:?}"
    );
    assert!(
        (served.not_after - served.not_before).num_days() >= 89,
        "valid for the configured 90 days: {served:?}"
    );

    let after = demo.host.find_containers(&selector).await.expect("lists");
    let env_after = demo.host.env_of(&after[0].id).await.expect("env");
    let jwt = backend_env(&env_after, "JWT_SECRET");
    let database_url = backend_env(&env_after, "DATABASE_URL");
    assert_ne!(jwt, backend_env(&env_before, "JWT_SECRET"));
    assert_ne!(database_url, backend_env(&env_before, "DATABASE_URL"));
    let password = url::Url::parse(&database_url)
        .expect("url")
        .password()
        .expect("password")
        .to_string();
    assert!(password.len() >= 40);

    let ready = deckhand::probe::probe(
        &format!("{}/health/ready", demo.staging_url(13000)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        ready.is_success() && ready.body_excerpt.contains("\"database\":\"ok\""),
        "{}",
        ready.body_excerpt
    );

    let audit = stdout(&demo.workspace.run(&["audit", "list", "--limit", "200"], ""));
    let logs = String::from_utf8_lossy(&output.stderr).into_owned();
    for secret in [&jwt, &password] {
        assert!(!text.contains(secret.as_str()), "a secret reached chat");
        assert!(
            !audit.contains(secret.as_str()),
            "a secret reached the audit trail"
        );
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
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

/// psql as the database's superuser over its local socket; returns stdout.
async fn sql(host: &DockerHost, container: &str, statement: &str) -> String {
    let output = host
        .exec(
            container,
            Exec {
                cmd: [
                    "psql",
                    "-U",
                    "tasktracker",
                    "-d",
                    "tasktracker",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qtAc",
                    statement,
                ]
                .iter()
                .map(|part| part.to_string())
                .collect(),
                env: Vec::new(),
                stdin: None,
                timeout: Duration::from_secs(30),
            },
        )
        .await
        .expect("psql runs");
    assert_eq!(output.exit_code, 0, "{statement}: {}", output.stderr_text());
    output.stdout_text().trim().to_string()
}

/// Whether `user` logs in with `password` over TCP, where pg_hba asks for SCRAM.
async fn logs_in(host: &DockerHost, container: &str, user: &str, password: &str) -> bool {
    host.exec(
        container,
        Exec {
            cmd: [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                user,
                "-d",
                "tasktracker",
                "-tAc",
                "SELECT 1",
            ]
            .iter()
            .map(|part| part.to_string())
            .collect(),
            env: vec![("PGPASSWORD".to_string(), password.to_string())],
            stdin: None,
            timeout: Duration::from_secs(30),
        },
    )
    .await
    .expect("psql runs")
    .exit_code
        == 0
}

async fn backend_url(demo: &DemoEnv) -> url::Url {
    let id = container_of(demo, "backend").await;
    let env = demo.host.env_of(&id).await.expect("env");
    url::Url::parse(&backend_env(&env, "DATABASE_URL")).expect("url")
}

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
async fn the_database_password_is_sent_as_a_scram_verifier_and_never_logged() {
    set_state_key();
    let demo = DemoEnv::start("rotate_scram").await;
    let postgres = container_of(&demo, "postgres").await;
    sql(
        &demo.host,
        &postgres,
        "ALTER SYSTEM SET log_statement = 'all'",
    )
    .await;
    sql(&demo.host, &postgres, "SELECT pg_reload_conf()").await;
    let old_password = backend_url(&demo)
        .await
        .password()
        .expect("password")
        .to_string();

    let app = demo.workspace.app().await;
    let operation = running_operation(&app, "/rotate db-password staging", &Plan::default()).await;
    let summary = run_to_end(&app, &operation, 0).await;
    assert_eq!(
        summary,
        "new password for tasktracker in postgres; backend reconnected with it and is ready"
    );
    let new_password = backend_url(&demo)
        .await
        .password()
        .expect("password")
        .to_string();
    assert_ne!(new_password, old_password);
    assert!(logs_in(&demo.host, &postgres, "tasktracker", &new_password).await);
    assert!(!logs_in(&demo.host, &postgres, "tasktracker", &old_password).await);
    backend_ready(&demo).await;

    let log: String = demo
        .host
        .logs(&postgres, LogQuery::default())
        .await
        .expect("the database's log")
        .into_iter()
        .map(|line| line.text + "\n")
        .collect();
    assert!(
        log.contains("ALTER ROLE \"tasktracker\" PASSWORD 'SCRAM-SHA-256$4096:"),
        "log_statement = 'all' logged the statement, with a verifier: {log}"
    );
    assert!(
        !log.contains(&new_password),
        "the new password is not in the database's log"
    );
    let store = std::fs::read(demo.workspace.config_path().with_file_name("deckhand.db"))
        .expect("the store file");
    assert!(!String::from_utf8_lossy(&store).contains(&new_password));
    for step in app.store.steps(operation.id).await.expect("journal") {
        assert!(!step.detail.contains(&new_password));
    }
}

#[tokio::test]
async fn new_user_rotation_moves_the_consumer_to_a_new_role_and_drops_the_old_one() {
    set_state_key();
    let demo = DemoEnv::start("rotate_new_user").await;
    let app = demo.workspace.app().await;
    let postgres = container_of(&demo, "postgres").await;

    // The demo's backend logs in as the role Deckhand administers the
    // database with, which --new-user must not drop: refused, nothing changed.
    let operation = running_operation(
        &app,
        "/rotate db-password staging --new-user",
        &Plan::default(),
    )
    .await;
    let refused = StagedStep::begin(&app, &operation, 0)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        refused.starts_with("--new-user would drop the role tasktracker, which is also the role Deckhand administers postgres with"),
        "{refused}"
    );

    // Give the application its own role, owning one table and granted another.
    for statement in [
        "CREATE ROLE app LOGIN PASSWORD 'app-initial-password'",
        "CREATE TABLE app_owned (id int)",
        "ALTER TABLE app_owned OWNER TO app",
        "CREATE TABLE shared_with_app (id int)",
        "GRANT SELECT ON shared_with_app TO app",
    ] {
        sql(&demo.host, &postgres, statement).await;
    }
    let backend = demo
        .host
        .inspect(&container_of(&demo, "backend").await)
        .await
        .expect("inspects");
    let mut url = backend_url(&demo).await;
    url.set_username("app").expect("user");
    url.set_password(Some("app-initial-password"))
        .expect("password");
    demo.host
        .recreate_with_env(
            &backend,
            &backend.image_reference,
            &[("DATABASE_URL".to_string(), url.to_string())],
        )
        .await
        .expect("recreates")
        .commit(&demo.host)
        .await
        .expect("commits");
    backend_ready(&demo).await;

    let operation = running_operation(
        &app,
        "/rotate db-password staging --new-user",
        &Plan::default(),
    )
    .await;
    let new_role = format!("app_op{}", operation.id);
    let summary = run_to_end(&app, &operation, 0).await;
    assert_eq!(
        summary,
        format!(
            "backend moved to the new role {new_role} with a new password; the old role app was dropped; it is ready"
        )
    );
    let url = backend_url(&demo).await;
    assert_eq!(url.username(), new_role);
    backend_ready(&demo).await;
    assert!(
        logs_in(
            &demo.host,
            &postgres,
            &new_role,
            url.password().expect("password")
        )
        .await
    );
    assert_eq!(
        sql(
            &demo.host,
            &postgres,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'app'"
        )
        .await,
        "0"
    );
    assert_eq!(
        sql(
            &demo.host,
            &postgres,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'app_owned'"
        )
        .await,
        new_role
    );
    assert_eq!(
        sql(
            &demo.host,
            &postgres,
            &format!("SELECT has_table_privilege('{new_role}', 'shared_with_app', 'SELECT')")
        )
        .await,
        "t"
    );
}

#[test]
fn the_database_password_is_not_rotated_without_a_state_key() {
    let workspace = Workspace::shipped();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["console", "--as", "alice", "--config"])
        .arg(workspace.config_path())
        .env_remove("DECKHAND_STATE_KEY")
        .env_remove("DECKHAND_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("deckhand starts");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(b"/rotate db-password staging\n")
            .expect("writes");
    }
    let output = child.wait_with_output().expect("runs");
    let text = stdout(&output);
    assert!(
        text.contains(
            "the database password was not rotated, because DECKHAND_STATE_KEY is not set"
        ),
        "{text}"
    );
    assert!(text.contains("openssl rand -base64 32"), "{text}");
    assert!(!text.contains("[#1]"), "no operation was created: {text}");
}
