//! Operations that survive a second process, a dead owner, a panic and a
//! race: leases and takeover (real `deckhand console` processes on one
//! SQLite store, real Docker), the queue, the withdraw/approve race, a
//! contained panic, and a store whose audit trail cannot be written.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deckhand::app::App;
use deckhand::chat::{Answer, Outbound, Reply};
use deckhand::flow::{self, Sender};
use deckhand::names::Platform;
use deckhand::policy::OpState;
use deckhand::store::OperationRecord;

use crate::support::demo::DemoEnv;
use crate::support::docker::eventually;
use crate::support::workspace::{CommandsCopy, Workspace, console_request, stdout};
use crate::support::{DEADLINE, wait_for};

/// Leases short enough that a takeover happens within a test.
const SHORT_LEASES: &str = "\n[operations]\nlease_renew = \"250ms\"\nlease_expiry = \"3s\"\n";

/// The shipped deploy with a slow step after the replacement (a one-off
/// container on the new image that sleeps), so a test can act while a
/// deploy is in the middle of its run.
fn slow_deploy() -> CommandsCopy {
    CommandsCopy::edited("deploy.toml", |text| {
        text.replace(
            "[[steps]]\nstep = \"wait_healthy\"",
            "[[steps]]\nstep = \"run_once\"\ntitle = \"soak\"\nservice = \"backend\"\ncommand = [\"sleep\", \"8\"]\n\n[[steps]]\nstep = \"wait_healthy\"",
        )
    })
}

/// A demo environment whose config uses `commands` and `extra`.
async fn demo_with(test_name: &str, commands: &CommandsCopy, extra: &str) -> DemoEnv {
    let folder = commands.path().display().to_string();
    let shipped = crate::support::workspace::repo_root()
        .join("commands")
        .display()
        .to_string();
    DemoEnv::start_with(test_name, false, |text| {
        format!("{}{extra}", text.replace(&shipped, &folder))
    })
    .await
}

/// A `deckhand console` child whose standard input stays open, so it keeps
/// running (and renewing its leases) until the test closes it or kills it.
struct Console {
    child: Child,
}

impl Console {
    fn start(workspace: &Workspace, user: &str, first_line: &str) -> Console {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
            .args(["console", "--as", user, "--config"])
            .arg(workspace.config_path())
            .env_remove("DECKHAND_CONFIG")
            .env_remove("DECKHAND_USER")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("deckhand console starts");
        let stdin = child.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{first_line}").expect("write a command");
        stdin.flush().expect("flush");
        Console { child }
    }

    /// Closes its input; it finishes what runs and exits.
    fn finish(mut self) -> String {
        drop(self.child.stdin.take());
        let output = self.child.wait_with_output().expect("console exits");
        assert!(output.status.success(), "{output:?}");
        stdout(&output)
    }

    /// SIGKILL: no clean-up of any kind.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

async fn operation(app: &App, op_id: i64) -> OperationRecord {
    app.store
        .operation(op_id)
        .await
        .expect("the store answers")
        .expect("the operation exists")
}

/// Waits for the newest operation of `env` to reach a running step whose
/// title is `step`; returns it.
async fn running_step(app: &App, env: &str, step: &str) -> OperationRecord {
    eventually(
        &format!("an operation running its {step} step"),
        Duration::from_secs(120),
        || async {
            let newest = app
                .store
                .recent_operations(Some(env), 1)
                .await
                .ok()?
                .pop()?;
            let steps = app.store.steps(newest.id).await.ok()?;
            let running = steps
                .iter()
                .any(|journaled| journaled.title == step && journaled.state == "running");
            (newest.state == OpState::Running && running).then_some(newest)
        },
    )
    .await
}

async fn backend_answers(demo: &DemoEnv) -> String {
    eventually(
        "the backend to answer its health check",
        Duration::from_secs(60),
        || async {
            let result = deckhand::probe::probe(
                &format!("{}/health", demo.staging_url(13000)),
                Duration::from_secs(5),
            )
            .await;
            result.is_success().then_some(result.body_excerpt)
        },
    )
    .await
}

#[tokio::test]
async fn a_console_started_beside_a_running_deploy_leaves_it_alone() {
    let commands = slow_deploy();
    let demo = demo_with("console_beside_deploy", &commands, "").await;
    let app = demo.workspace.app().await;
    let deploying = Console::start(&demo.workspace, "alice", "/deploy staging v2");
    let running = running_step(&app, "staging", "soak").await;

    // A second process on the same store while the first one's deploy runs:
    // its recovery must not touch an operation whose owner is alive.
    let beside = demo
        .workspace
        .run(&["console", "--as", "bob"], "/status staging\n");
    assert!(beside.status.success(), "{beside:?}");
    let status = stdout(&beside);
    assert!(!status.contains("interrupted"), "{status}");

    let output = deploying.finish();
    assert!(output.contains("succeeded"), "{output}");
    let finished = operation(&app, running.id).await;
    assert_eq!(finished.state, OpState::Succeeded, "{:?}", finished.outcome);
    let entries = app.store.audit_entries(None, 100).await.expect("audit");
    assert!(
        !entries
            .iter()
            .any(|entry| entry.entry.event == "taken-over" || entry.entry.outcome == "interrupted"),
        "nothing was taken over"
    );
    assert!(backend_answers(&demo).await.contains("v2"));
}

#[tokio::test]
async fn a_killed_owner_is_taken_over_only_after_its_lease_lapses() {
    let commands = slow_deploy();
    let demo = demo_with("killed_owner", &commands, SHORT_LEASES).await;
    let app = demo.workspace.app().await;
    let owner = Console::start(&demo.workspace, "alice", "/deploy staging v2");
    let running = running_step(&app, "staging", "soak").await;
    owner.kill();

    // The owner is dead but nobody knows yet: the operation is untouched
    // until its lease lapses.
    let before = operation(&app, running.id).await;
    assert_eq!(before.state, OpState::Running);
    assert_eq!(before.owner, running.owner);
    let lapsed_at = before.lease_until.expect("a lease");
    eventually("the lease to lapse", Duration::from_secs(30), || async {
        (chrono::Utc::now() > lapsed_at).then_some(())
    })
    .await;

    // The next process takes it over, settles the backend on the old or the
    // new version, reports the interruption and releases the lock.
    let next = demo.workspace.run(&["console", "--as", "bob"], ":wait\n");
    assert!(next.status.success(), "{next:?}");
    let taken = operation(&app, running.id).await;
    assert_eq!(taken.state, OpState::Interrupted, "{:?}", taken.outcome);
    let outcome = taken.outcome.unwrap_or_default();
    assert!(
        outcome.starts_with("Deckhand stopped during step"),
        "{outcome}"
    );
    assert_ne!(taken.owner, running.owner, "another process owns it now");
    assert_eq!(app.store.lock_holder("staging").await.expect("lock"), None);
    assert!(outcome.contains("kept on the new version"), "{outcome}");
    assert!(backend_answers(&demo).await.contains("v2"));
    let entries = app.store.audit_entries(None, 200).await.expect("audit");
    let of_op: Vec<&str> = entries
        .iter()
        .filter(|entry| entry.entry.op_id == running.id)
        .map(|entry| entry.entry.event.as_str())
        .collect();
    assert!(of_op.contains(&"taken-over"), "{of_op:?}");
    assert!(of_op.contains(&"finished"), "{of_op:?}");

    // And the environment works again.
    let again = demo
        .workspace
        .run(&["console", "--as", "alice"], "/deploy staging v1\n");
    assert!(stdout(&again).contains("succeeded"), "{}", stdout(&again));
}

/// What the console platform was sent, collected.
fn collect(app: &Arc<App>) -> Arc<Mutex<Vec<Outbound>>> {
    let posted = Arc::new(Mutex::new(Vec::new()));
    let mut outbound = app.outbox.subscribe(Platform::Console);
    let collected = Arc::clone(&posted);
    tokio::spawn(async move {
        while let Some(message) = outbound.recv().await {
            collected.lock().expect("the message list").push(message);
        }
    });
    posted
}

fn latest_message(posted: &Mutex<Vec<Outbound>>, op_id: i64) -> Option<Reply> {
    posted
        .lock()
        .expect("the message list")
        .iter()
        .rev()
        .find_map(|message| match message {
            Outbound::Operation {
                op_id: of, reply, ..
            } if *of == op_id => Some(reply.clone()),
            _ => None,
        })
}

fn accepted(answer: &Answer) -> i64 {
    match answer {
        Answer::Accepted { op_id } => *op_id,
        other => panic!("not accepted: {other:?}"),
    }
}

#[tokio::test]
async fn a_busy_environment_queues_operations_in_order_and_a_queued_one_can_be_called_off() {
    let commands = CommandsCopy::edited("lock.toml", |text| {
        text.replace(
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]",
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]\non_busy = \"queue\"",
        )
    });
    let workspace = commands.workspace();
    let app = workspace.app().await;
    flow::start_background(&app).await;
    let posted = collect(&app);
    // Someone else's deploy holds staging.
    let now = app.now();
    assert_eq!(
        app.store
            .try_lock("staging", 4242, "deploy", "erin", now)
            .await
            .expect("lock"),
        None
    );

    let first = accepted(
        &flow::handle_request(&app, console_request("bob", "/lock staging \"first\"")).await,
    );
    let second = accepted(
        &flow::handle_request(&app, console_request("carol", "/lock staging \"second\"")).await,
    );
    let queued = wait_for("the first request to queue", DEADLINE, || {
        latest_message(&posted, first).filter(|reply| reply.status.starts_with("queued behind"))
    })
    .await;
    assert!(
        queued
            .status
            .starts_with("queued behind #4242 (deploy by erin)"),
        "{}",
        queued.status
    );
    let waiting = wait_for("the second request to queue", DEADLINE, || {
        latest_message(&posted, second).filter(|reply| reply.status.starts_with("queued behind"))
    })
    .await;
    assert!(
        waiting.status.starts_with("queued behind #4242"),
        "{}",
        waiting.status
    );

    // The second is called off by its requester while it waits.
    let carol = Sender::identify(&app, Platform::Console, "carol", "console");
    let cancelled = flow::reject(&app, &carol, second).await;
    assert!(cancelled.applied, "{}", cancelled.text);
    assert_eq!(operation(&app, second).await.state, OpState::Cancelled);

    // The environment frees up: the first runs, the cancelled one never does.
    app.store.unlock("staging", 4242).await.expect("unlock");
    let done = eventually("the queued request to run", DEADLINE, || async {
        let record = operation(&app, first).await;
        record.state.is_final().then_some(record)
    })
    .await;
    assert_eq!(done.state, OpState::Succeeded, "{:?}", done.outcome);
    assert_eq!(operation(&app, second).await.state, OpState::Cancelled);
    let hold = app
        .store
        .hold("staging", app.now())
        .await
        .expect("hold")
        .expect("held");
    assert_eq!(hold.reason, "first");
    let events: Vec<(i64, String)> = app
        .store
        .audit_entries(Some("staging"), 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|entry| (entry.entry.op_id, entry.entry.event))
        .collect();
    assert!(
        events.contains(&(first, "queued".to_string())),
        "{events:?}"
    );
    assert!(
        events.contains(&(second, "cancelled".to_string())),
        "{events:?}"
    );
    app.wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawal_racing_the_last_approval_loses_or_wins_cleanly() {
    let commands = CommandsCopy::edited("lock.toml", |text| {
        text.replace(
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]",
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]\napprovals = 2\napprovers = [\"deployers\", \"oncall\"]",
        )
    });
    let workspace = commands.workspace();
    let app = workspace.app().await;
    let bob = Sender::identify(&app, Platform::Console, "bob", "console");
    let dave = Sender::identify(&app, Platform::Console, "dave", "console");
    let (mut withdrawn_first, mut approved_first) = (0, 0);
    for round in 0..12 {
        let op_id = accepted(
            &flow::handle_request(
                &app,
                console_request("alice", &format!("/lock staging \"round {round}\"")),
            )
            .await,
        );
        let first = flow::approve(&app, &bob, op_id, None).await;
        assert!(first.applied, "{}", first.text);
        let (withdrawal, approval) = {
            let (app_w, app_a) = (Arc::clone(&app), Arc::clone(&app));
            let (bob, dave) = (bob.clone(), dave.clone());
            let withdrawing =
                tokio::spawn(async move { flow::withdraw(&app_w, &bob, op_id).await });
            let approving =
                tokio::spawn(async move { flow::approve(&app_a, &dave, op_id, None).await });
            (
                withdrawing.await.expect("withdraws"),
                approving.await.expect("approves"),
            )
        };
        app.wait_idle().await;
        let state = operation(&app, op_id).await.state;
        if withdrawal.applied {
            // The withdrawal won: dave's approval is the only one left.
            withdrawn_first += 1;
            assert_eq!(
                withdrawal.text,
                format!("you withdrew your approval of #{op_id}")
            );
            assert_eq!(
                approval.text,
                format!("you approved #{op_id} (1 of 2 approvals)")
            );
            assert_eq!(state, OpState::Pending);
        } else {
            // The approval won: the operation started, the withdrawal is late.
            approved_first += 1;
            assert_eq!(
                withdrawal.text,
                format!("too late: #{op_id} already started")
            );
            assert_eq!(
                approval.text,
                format!("you approved #{op_id}; it starts now")
            );
            assert!(state.has_started(), "{state}");
        }
        app.store
            .release_hold("staging", app.now())
            .await
            .expect("release the hold");
        let alice = Sender::identify(&app, Platform::Console, "alice", "console");
        if state == OpState::Pending {
            flow::reject(&app, &alice, op_id).await;
        }
    }
    assert_eq!(withdrawn_first + approved_first, 12);
}

#[tokio::test]
async fn a_panicking_operation_fails_releases_its_lock_and_lets_shutdown_finish() {
    let workspace = Workspace::shipped();
    let app = workspace.app().await;
    let op_id = accepted(
        &flow::handle_request(&app, console_request("bob", "/lock staging \"panic test\"")).await,
    );
    app.wait_idle().await;
    app.store
        .release_hold("staging", app.now())
        .await
        .expect("release");
    // An operation that holds its environment's lock when its task panics.
    let now = app.now();
    sqlx::query("UPDATE operations SET state = 'running', owner = $1 WHERE id = $2")
        .bind(&app.instance)
        .bind(op_id)
        .execute(app.store.pool())
        .await
        .expect("running again");
    assert_eq!(
        app.store
            .try_lock("staging", op_id, "lock", "bob", now)
            .await
            .expect("lock"),
        None
    );
    let record = operation(&app, op_id).await;
    let task_app = Arc::clone(&app);
    app.spawn(async move {
        deckhand::exec::contain(&task_app, &record, async {
            panic!("a bug in a step");
        })
        .await;
    });
    // wait_idle returns: the panicked task counted down.
    tokio::time::timeout(Duration::from_secs(60), app.wait_idle())
        .await
        .expect("wait_idle returns after a panic");
    let failed = operation(&app, op_id).await;
    assert_eq!(failed.state, OpState::Failed);
    assert_eq!(
        failed.outcome.as_deref(),
        Some(format!("internal error, see Deckhand's logs for operation #{op_id}").as_str())
    );
    assert_eq!(app.store.lock_holder("staging").await.expect("lock"), None);
    // A plain task that panics counts down too.
    app.spawn(async { panic!("a bug elsewhere") });
    tokio::time::timeout(Duration::from_secs(60), app.wait_idle())
        .await
        .expect("wait_idle returns after a panic");
}

#[tokio::test]
async fn no_operation_changes_state_when_its_audit_entry_cannot_be_written() {
    let commands = CommandsCopy::edited("lock.toml", |text| {
        text.replace(
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]",
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]\napprovals = 1\napprovers = [\"deployers\"]",
        )
    });
    let workspace = commands.workspace();
    let app = workspace.app().await;
    sqlx::query(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'forced failure'); END",
    )
    .execute(app.store.pool())
    .await
    .expect("trigger");
    let answer =
        flow::handle_request(&app, console_request("bob", "/lock staging \"freeze\"")).await;
    let Answer::Private(reply) = answer else {
        panic!("refused: {answer:?}")
    };
    assert_eq!(reply.title, "Request not recorded");
    assert!(
        reply.status.starts_with(
            "Deckhand cannot write to its store or audit trail right now, so nothing was done"
        ),
        "{}",
        reply.status
    );
    assert!(
        app.store
            .recent_operations(None, 10)
            .await
            .expect("operations")
            .is_empty(),
        "no operation without its audit entry"
    );
    assert_eq!(
        app.store.hold("staging", app.now()).await.expect("hold"),
        None
    );

    // An operation that waits for approval cannot be approved unaudited either.
    sqlx::query("DROP TRIGGER refuse_audit")
        .execute(app.store.pool())
        .await
        .expect("drop");
    let op_id = accepted(
        &flow::handle_request(&app, console_request("alice", "/lock staging \"freeze\"")).await,
    );
    sqlx::query(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'forced failure'); END",
    )
    .execute(app.store.pool())
    .await
    .expect("trigger");
    let bob = Sender::identify(&app, Platform::Console, "bob", "console");
    let approval = flow::approve(&app, &bob, op_id, None).await;
    assert!(!approval.applied);
    assert!(
        approval
            .text
            .starts_with("cannot record your approval, so nothing changed"),
        "{}",
        approval.text
    );
    assert_eq!(operation(&app, op_id).await.state, OpState::Pending);
    assert!(
        app.store
            .approvals(op_id)
            .await
            .expect("approvals")
            .is_empty()
    );
}

#[tokio::test]
async fn an_operation_owned_by_a_live_process_is_never_taken_over() {
    let commands = CommandsCopy::edited("lock.toml", |text| {
        text.replace(
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]",
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]\napprovals = 1\napprovers = [\"deployers\"]",
        )
    });
    let workspace = commands.workspace_with(|text| format!("{text}{SHORT_LEASES}"));
    let first = workspace.app().await;
    let op_id = accepted(
        &flow::handle_request(&first, console_request("alice", "/lock staging \"freeze\"")).await,
    );
    flow::start_background(&first).await;
    let second = workspace.app().await;
    flow::start_background(&second).await;
    // Several lease periods pass; the first keeps renewing, so the second
    // never takes it over.
    let renewed_from = operation(&first, op_id).await.lease_until;
    eventually("a few renewals", Duration::from_secs(30), || async {
        let now = operation(&first, op_id).await.lease_until;
        (now > renewed_from.map(|at| at + chrono::Duration::seconds(2))).then_some(())
    })
    .await;
    assert_eq!(
        operation(&second, op_id).await.owner.as_deref(),
        Some(first.instance.as_str())
    );
    // When the first stops cleanly it hands the waiting request over at once.
    flow::shut_down(&first).await;
    let taken = eventually("the second to take it over", DEADLINE, || async {
        let record = operation(&second, op_id).await;
        (record.owner.as_deref() == Some(second.instance.as_str())).then_some(record)
    })
    .await;
    assert_eq!(
        taken.state,
        OpState::Pending,
        "it keeps waiting for approval"
    );
}
