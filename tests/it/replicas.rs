//! Several `deckhand serve` replicas on one PostgreSQL, as child processes,
//! behind one Slack app in HTTP mode (the local Slack peer), deploying a
//! real demo stack: a command delivered to both replicas runs once; an
//! approval given through one replica starts the operation on the replica
//! that owns it; when that owner is killed with SIGKILL in the middle of a
//! deploy, the other takes the operation over once its lease lapses,
//! reports the interruption in the operation's own message, leaves the
//! backend on the new version and releases the lock; the audit chain that
//! both wrote stays one chain.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deckhand::app::App;
use deckhand::policy::OpState;
use deckhand::store::OperationRecord;

use crate::slack::{
    ALICE, BOB, CHANNEL, FORM, Mode, SIGNING_SECRET, click_payload, op_id_of, slack_config,
};
use crate::support::demo::DemoEnv;
use crate::support::docker::{TestDocker, eventually, start_postgres};
use crate::support::slack_peer::{SLACK_BOT_TOKEN, SlackPeer, signed_post};
use crate::support::workspace::{CommandsCopy, repo_root, stdout};
use crate::support::{now_unix, random_hex};

/// A replica: `deckhand serve` on its own port.
struct Replica {
    child: Option<Child>,
    port: u16,
}

impl Replica {
    async fn start(config: &std::path::Path) -> Replica {
        let text = std::fs::read_to_string(config).expect("config");
        let port = text
            .lines()
            .find_map(|line| line.strip_prefix("listen = \"127.0.0.1:"))
            .and_then(|rest| rest.trim_end_matches('"').parse().ok())
            .expect("a listen port");
        let mut child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
            .args(["serve", "--config"])
            .arg(config)
            .env("DECKHAND_TEST_SLACK_SIGNING_UNUSED", SIGNING_SECRET)
            .env("DECKHAND_TEST_SLACK_BOT_UNUSED", SLACK_BOT_TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let stderr = child.stderr.take().expect("stderr");
        // The local Slack peer runs on this test's runtime: wait without
        // blocking it, or serve's first Slack call would never be answered.
        let (lines, mut heard) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut seen = Vec::new();
        let listening = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = heard.recv().await {
                if line.contains("listening") {
                    return true;
                }
                seen.push(line);
            }
            false
        })
        .await;
        assert!(
            matches!(listening, Ok(true)),
            "serve did not start listening:\n{}",
            seen.join("\n")
        );
        Replica {
            child: Some(child),
            port,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Whether `operation` is owned by this replica's process.
    fn owns(&self, operation: &OperationRecord) -> bool {
        operation
            .owner
            .as_deref()
            .is_some_and(|owner| owner.contains(&format!(":{}:", self.pid())))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A signed slash command with a given trigger id (the delivery id).
fn command_body(peer: &SlackPeer, user: &str, line: &str, trigger: &str) -> String {
    let (command, text) = line.split_once(' ').unwrap_or((line, ""));
    serde_urlencoded::to_string([
        ("token", "xQ9fZ2sLkPz7Wm4RtY6uVb3N"),
        ("team_id", "T0ACME0001"),
        ("channel_id", CHANNEL),
        ("user_id", user),
        ("command", command),
        ("text", text),
        (
            "response_url",
            &peer.response_url(&format!("cmd-{trigger}")),
        ),
        ("trigger_id", &format!("1.2.{trigger}")),
    ])
    .expect("a form encodes")
}

async fn post_command(replica: &Replica, body: &str) {
    let response = signed_post(
        &replica.url("/slack/commands"),
        SIGNING_SECRET,
        body.as_bytes(),
        FORM,
        now_unix(),
    )
    .await;
    assert_eq!(response.status(), 200, "acknowledged");
}

async fn newest(app: &App, command: &str) -> Option<OperationRecord> {
    app.store
        .recent_operations(None, 50)
        .await
        .ok()?
        .into_iter()
        .find(|operation| operation.command == command)
}

#[tokio::test]
async fn replicas_on_postgres_run_each_command_once_hand_approvals_over_and_take_over_a_dead_owner()
{
    let docker = TestDocker::start("replicas_store").await;
    let store_url = start_postgres(&docker).await;
    let peer = SlackPeer::start().await;
    let api_url = peer.api_url();
    let commands = CommandsCopy::edited("deploy.toml", |text| {
        text.replace(
            "[[steps]]\nstep = \"wait_healthy\"",
            "[[steps]]\nstep = \"run_once\"\ntitle = \"soak\"\nservice = \"backend\"\ncommand = [\"sleep\", \"8\"]\n\n[[steps]]\nstep = \"wait_healthy\"",
        )
    });
    let folder = commands.path().display().to_string();
    let shipped = repo_root().join("commands").display().to_string();
    let (port_a, port_b) = (free_port(), free_port());
    let demo = DemoEnv::start_with("replicas", true, |text| {
        let text = slack_config(text.replace(&shipped, &folder), Mode::Http, &api_url);
        let text = text
            .replace(
                "url = \"sqlite://deckhand.db\"",
                &format!("url = \"{store_url}\""),
            )
            .replace(
                "listen = \"127.0.0.1:8088\"",
                &format!("listen = \"127.0.0.1:{port_a}\""),
            );
        format!("{text}\n[operations]\nlease_renew = \"250ms\"\nlease_expiry = \"3s\"\n")
    })
    .await;
    let config_a = demo.workspace.config_path();
    let config_b = config_a.with_file_name("replica-b.toml");
    let text_b = std::fs::read_to_string(&config_a).expect("config").replace(
        &format!("127.0.0.1:{port_a}"),
        &format!("127.0.0.1:{port_b}"),
    );
    std::fs::write(&config_b, text_b).expect("second config");
    let app = demo.workspace.app().await;
    let mut replica_a = Replica::start(&config_a).await;
    let replica_b = Replica::start(&config_b).await;

    // The same delivery reaches both replicas (a retry through another
    // replica): it runs once.
    let body = command_body(
        &peer,
        ALICE,
        "/lock staging \"replica test\"",
        &random_hex(8),
    );
    tokio::join!(
        post_command(&replica_a, &body),
        post_command(&replica_b, &body)
    );
    let lock = eventually("the lock to be placed", Duration::from_secs(30), || async {
        newest(&app, "lock")
            .await
            .filter(|operation| operation.state == OpState::Succeeded)
    })
    .await;
    let locks = app
        .store
        .recent_operations(Some("staging"), 50)
        .await
        .expect("operations")
        .into_iter()
        .filter(|operation| operation.command == "lock")
        .count();
    assert_eq!(locks, 1, "one operation for one delivery, {lock:?}");
    app.store
        .release_hold("staging", app.now())
        .await
        .expect("released");

    // Requested through A, approved through B: A, the owner, runs it.
    post_command(
        &replica_a,
        &command_body(&peer, ALICE, "/deploy production v2", &random_hex(8)),
    )
    .await;
    let pending = eventually(
        "the request to wait for approval",
        Duration::from_secs(60),
        || async {
            newest(&app, "deploy")
                .await
                .filter(|operation| operation.state == OpState::Pending)
        },
    )
    .await;
    assert!(replica_a.owns(&pending), "{:?}", pending.owner);
    let message = peer
        .wait_for_message(CHANNEL, Duration::from_secs(30), |message| {
            message.thread_ts.is_none()
                && op_id_of(message) == pending.id
                && message.texts().join("\n").contains("awaiting approval")
        })
        .await;
    let click = click_payload(BOB, &message, "deckhand_approve");
    let click_body =
        serde_urlencoded::to_string([("payload", click.to_string())]).expect("a form encodes");
    let response = signed_post(
        &replica_b.url("/slack/interactions"),
        SIGNING_SECRET,
        click_body.as_bytes(),
        FORM,
        now_unix(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let deployed = eventually(
        "the approved deploy to finish",
        Duration::from_secs(180),
        || async {
            let operation = app.store.operation(pending.id).await.ok()??;
            operation.state.is_final().then_some(operation)
        },
    )
    .await;
    assert_eq!(deployed.state, OpState::Succeeded, "{:?}", deployed.outcome);
    assert!(
        replica_a.owns(&deployed),
        "the owner ran it: {:?}",
        deployed.owner
    );

    // A dies in the middle of a deploy; B takes it over after the lease.
    post_command(
        &replica_a,
        &command_body(&peer, ALICE, "/deploy staging v2", &random_hex(8)),
    )
    .await;
    let running = eventually("the deploy to soak", Duration::from_secs(120), || async {
        let operation = newest(&app, "deploy").await?;
        let steps = app.store.steps(operation.id).await.ok()?;
        let soaking = steps
            .iter()
            .any(|step| step.title == "soak" && step.state == "running");
        (operation.env.as_deref() == Some("staging") && soaking).then_some(operation)
    })
    .await;
    assert!(replica_a.owns(&running));
    replica_a.kill();
    let last_lease = app
        .store
        .operation(running.id)
        .await
        .expect("the store answers")
        .and_then(|operation| operation.lease_until)
        .expect("a lease");
    let taken = eventually(
        "B to take the deploy over",
        Duration::from_secs(60),
        || async {
            let operation = app.store.operation(running.id).await.ok()??;
            operation.state.is_final().then_some(operation)
        },
    )
    .await;
    assert_eq!(taken.state, OpState::Interrupted, "{:?}", taken.outcome);
    assert!(replica_b.owns(&taken), "{:?}", taken.owner);
    let taken_over_at = app
        .store
        .audit_entries(Some("staging"), 100)
        .await
        .expect("audit")
        .into_iter()
        .find(|entry| entry.entry.op_id == running.id && entry.entry.event == "taken-over")
        .expect("the takeover is audited")
        .entry
        .at;
    assert!(
        taken_over_at >= last_lease,
        "not before the dead owner's lease lapsed: {taken_over_at} < {last_lease}"
    );
    let outcome = taken.outcome.clone().unwrap_or_default();
    assert!(outcome.contains("kept on the new version"), "{outcome}");
    assert_eq!(app.store.lock_holder("staging").await.expect("lock"), None);
    peer.wait_for_message(CHANNEL, Duration::from_secs(30), |message| {
        message.thread_ts.is_none()
            && op_id_of(message) == running.id
            && message.texts().join("\n").contains("interrupted")
    })
    .await;
    let probe = deckhand::probe::probe(
        &format!("{}/health", demo.staging_url(13000)),
        Duration::from_secs(5),
    )
    .await;
    assert!(probe.body_excerpt.contains("v2"), "{}", probe.describe());

    // Two writers, one chain.
    drop(replica_b);
    let verified = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["audit", "verify", "--config"])
        .arg(&config_a)
        .output()
        .expect("audit verify runs");
    assert!(verified.status.success(), "{}", stdout(&verified));
    drop(docker);
}
