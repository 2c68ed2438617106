//! Secret hygiene and bounded queues (issue 11, items 4–6): `/logs` of a real
//! container whose log holds secrets shows none of them and `--grep` cannot
//! find them one character at a time; the outbox redacts what it carries and
//! a subscriber that never reads holds a bounded backlog that still ends
//! with each operation's final state.

use std::sync::Arc;

use deckhand::app::App;
use deckhand::chat::queue::{DETAIL_LIMIT, TOTAL_LIMIT};
use deckhand::chat::{Answer, Outbound, Reply, Request, Tone};
use deckhand::flow;
use deckhand::names::Platform;
use deckhand::secret::Secret;

use crate::support::docker::{TestDocker, busybox_body, eventually};
use crate::support::workspace::{Workspace, repo_root};

/// A workspace whose staging environment has one service, `app`, the
/// container `container`, and only read-only commands.
struct LogsWorkspace {
    workspace: Workspace,
    _commands: tempfile::TempDir,
}

fn logs_workspace(container: &str) -> LogsWorkspace {
    let commands = tempfile::tempdir().expect("a commands folder");
    // The commands people without a role may run must exist, so they come along.
    for file in [
        "logs.toml",
        "help.toml",
        "status.toml",
        "health.toml",
        "diagnose.toml",
    ] {
        std::fs::copy(
            repo_root().join("commands").join(file),
            commands.path().join(file),
        )
        .expect("copying a command file");
    }
    let shipped_commands = repo_root().join("commands").display().to_string();
    let folder = commands.path().display().to_string();
    let staging = format!(
        "[environments.staging]\nhost = \"local\"\n\n[environments.staging.services.app]\ncontainer = \"{container}\"\n"
    );
    let workspace = Workspace::with_config(move |text| {
        let text = text.replace(&shipped_commands, &folder);
        let start = text
            .find("[environments.staging]")
            .expect("a staging section");
        let end = text
            .find("[environments.production]")
            .expect("a production section");
        format!("{}{staging}\n{}", &text[..start], &text[end..])
    });
    LogsWorkspace {
        workspace,
        _commands: commands,
    }
}

/// Runs `text` as `user` on the console and returns its journal text.
async fn run(app: &Arc<App>, user: &str, text: &str) -> String {
    let answer = flow::handle_request(
        app,
        Request {
            platform: Platform::Console,
            user_id: user.to_string(),
            channel: "console".to_string(),
            text: text.to_string(),
            delivery_id: None,
            groups: Vec::new(),
        },
    )
    .await;
    app.wait_idle().await;
    let Answer::Accepted { op_id } = answer else {
        panic!("{text} was not accepted: {answer:?}");
    };
    let steps = app.store.steps(op_id).await.expect("the journal");
    let step = steps.first().expect("the logs step ran");
    assert_eq!(step.state, "ok", "{}", step.detail);
    step.detail.clone()
}

/// The log: a registered secret, a PostgreSQL statement with a new password
/// (issue 11 item 4), a key=value password, and ordinary lines.
const SCRIPT: &str = "echo 'starting with token registered-log-secret-0042'; \
     echo \"LOG:  statement: ALTER USER app WITH PASSWORD 'Rotated-Pw-9731'\"; \
     echo 'DB_PASSWORD=Plain-Pw-5520 loaded'; \
     echo 'listening on :3000'; \
     sleep 3600";

#[tokio::test]
async fn logs_never_show_secrets_and_grep_cannot_find_them() {
    let docker = TestDocker::start("secrets_logs_grep").await;
    let name = docker.unique("app");
    docker.run(&name, busybox_body(SCRIPT)).await;
    // The value reaches Deckhand as a secret would (from its environment, a
    // rotation), which registers it.
    let _registered = Secret::new("registered-log-secret-0042");
    let workspace = logs_workspace(&name);
    let app = workspace.workspace.app().await;

    let everything = eventually("the container logged its lines", DEADLINE, || {
        let app = Arc::clone(&app);
        async move {
            let journal = run(&app, "alice", "/logs staging app").await;
            journal.contains("listening on :3000").then_some(journal)
        }
    })
    .await;
    for secret in [
        "registered-log-secret-0042",
        "Rotated-Pw-9731",
        "Plain-Pw-5520",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} shown in:\n{everything}"
        );
    }
    assert!(
        everything.contains("starting with token [redacted]"),
        "{everything}"
    );
    assert!(
        everything.contains("ALTER USER app WITH PASSWORD '[redacted]'"),
        "{everything}"
    );
    assert!(
        everything.contains("DB_PASSWORD=[redacted] loaded"),
        "{everything}"
    );

    // Guessing a secret's first characters finds nothing: no line, no count.
    for guess in ["registered-log-secret-0", "Rotated-P", "Plain-Pw-55"] {
        let found = run(&app, "alice", &format!("/logs staging app --grep {guess}")).await;
        assert_eq!(found, "0 line(s) of app", "--grep {guess}");
    }
    // The words around a secret still find their line, redacted.
    let found = run(&app, "alice", "/logs staging app --grep DB_PASSWORD").await;
    assert_eq!(found, "1 line(s) of app\nDB_PASSWORD=[redacted] loaded");
}

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

fn operation(op_id: i64, status: &str) -> Outbound {
    Outbound::Operation {
        op_id,
        platform: Platform::Console,
        channel: "console".to_string(),
        reply: Reply::new(format!("Deploy #{op_id}"), Tone::Working, status),
    }
}

#[tokio::test]
async fn a_subscriber_that_never_reads_holds_a_bounded_backlog_ending_in_final_states() {
    let workspace = Workspace::shipped();
    let app = workspace.app().await;
    let mut stalled = app.outbox.subscribe(Platform::Console);
    for round in 0..20_000_i64 {
        let op_id = round % 40;
        app.outbox.send(operation(op_id, &format!("step {round}")));
        app.outbox.send(Outbound::Detail {
            op_id,
            platform: Platform::Console,
            channel: "console".to_string(),
            text: format!("output line {round}"),
        });
        app.outbox.send(Outbound::Audit {
            platform: Platform::Console,
            channel: "audit".to_string(),
            text: format!("audit entry {round}"),
        });
    }
    let (waiting, dropped) = app.outbox.backlog(Platform::Console);
    // Forty operation states, at most the total limit of other messages,
    // and one note per operation's details and for the audit channel.
    assert!(waiting <= 40 + TOTAL_LIMIT + 41, "{waiting} messages wait");
    assert!(dropped >= 40_000 - TOTAL_LIMIT as u64, "{dropped} dropped");

    let mut finals = std::collections::BTreeMap::new();
    let mut notes = Vec::new();
    let mut details = 0;
    while let Ok(message) = stalled.try_recv() {
        match message {
            Outbound::Operation { op_id, reply, .. } => {
                assert!(
                    finals.insert(op_id, reply.status).is_none(),
                    "one state per operation"
                );
            }
            Outbound::Detail { text, .. } | Outbound::Audit { text, .. }
                if text.starts_with("… ") =>
            {
                notes.push(text)
            }
            Outbound::Detail { .. } => details += 1,
            _ => {}
        }
    }
    for op_id in 0..40 {
        assert_eq!(
            finals.get(&op_id).map(String::as_str),
            Some(format!("step {}", 19_960 + op_id).as_str()),
            "operation {op_id} ends in its final state"
        );
    }
    assert!(details <= 40 * DETAIL_LIMIT, "{details}");
    assert!(
        notes
            .iter()
            .any(|note| note.contains("audit line(s) not posted here")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn the_outbox_redacts_every_text_it_carries() {
    let workspace = Workspace::shipped();
    let app = workspace.app().await;
    let mut subscription = app.outbox.subscribe(Platform::Console);
    let generated = Secret::new("outbox-generated-secret-7781");
    let mut reply = Reply::new(
        format!("Rotate #1 · {}", generated.expose()),
        Tone::Success,
        "done; password is hunter2hunter2",
    );
    reply
        .lines
        .push("ALTER USER app PASSWORD 'x-y-z-123'".to_string());
    reply
        .fields
        .push(("url".to_string(), "postgres://app:a/b@db/app".to_string()));
    app.outbox.send(Outbound::Operation {
        op_id: 1,
        platform: Platform::Console,
        channel: "console".to_string(),
        reply,
    });
    app.outbox.send(Outbound::Audit {
        platform: Platform::Console,
        channel: "audit".to_string(),
        text: format!("rotated to {}", generated.expose()),
    });
    let Ok(Outbound::Operation { reply, .. }) = subscription.try_recv() else {
        panic!("the operation's message");
    };
    assert_eq!(reply.title, "Rotate #1 · [redacted]");
    assert_eq!(reply.status, "done; password is [redacted]");
    assert_eq!(reply.lines, ["ALTER USER app PASSWORD '[redacted]'"]);
    assert_eq!(reply.fields[0].1, "postgres://app:[redacted]@db/app");
    let Ok(Outbound::Audit { text, .. }) = subscription.try_recv() else {
        panic!("the audit line");
    };
    assert_eq!(text, "rotated to [redacted]");
}

/// The value of the registry password variable the config names: read and
/// registered when the config loads.
const REGISTRY_PASSWORD: &str = "Reg1stry-Pass-7788";

/// The binary's console, with a registry password in its
/// environment, never shows it: not in a refusal that quotes what was
/// typed, not in an accepted operation's messages, not in its log.
#[test]
fn the_console_never_echoes_a_secret_from_its_environment() {
    let workspace = Workspace::with_config(|text| {
        text.replace(
            "[environments.staging]\n",
            "[environments.staging]\nregistry = { username_env = \"DECKHAND_TEST_REGISTRY_USER\", password_env = \"DECKHAND_TEST_REGISTRY_PASSWORD\" }\n",
        )
    });
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["console", "--config"])
        .arg(workspace.config_path())
        .env_remove("DECKHAND_CONFIG")
        .env_remove("DECKHAND_USER")
        .env("RUST_LOG", "debug")
        .env("DECKHAND_TEST_REGISTRY_USER", "deploy-bot")
        .env("DECKHAND_TEST_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            stdin.write_all(
                format!(
                    "/deploy staging {REGISTRY_PASSWORD}!\n/logs staging backend --grep {REGISTRY_PASSWORD}\n"
                )
                .as_bytes(),
            )?;
            drop(stdin);
            child.wait_with_output()
        })
        .expect("deckhand console runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("\"[redacted]!\" is not a valid <ref>"),
        "the refusal names what was typed, redacted:\n{stdout}"
    );
    assert!(!stdout.contains(REGISTRY_PASSWORD), "{stdout}");
    assert!(!stderr.contains(REGISTRY_PASSWORD), "{stderr}");
}
