//! The request flow in-process: expiry, the environment gate (busy and
//! fail-closed), approval binding, and redelivery dedupe.

use std::time::Duration;

use deckhand::chat::Answer;
use deckhand::flow::{self, Sender};
use deckhand::names::Platform;
use deckhand::policy::OpState;

use crate::support::workspace::{CommandsCopy, Workspace, console_request};

fn refusal_text(answer: &Answer) -> String {
    match answer {
        Answer::Private(reply) => {
            let mut text = reply.status.clone();
            for line in &reply.lines {
                text.push('\n');
                text.push_str(line);
            }
            text
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Polls until `condition` holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn an_unapproved_request_expires_and_never_runs() {
    let commands = CommandsCopy::edited("rollback-db.toml", |text| {
        text.replace("expires = \"1h\"", "expires = \"1s\"")
    });
    let workspace = commands.workspace();
    let app = workspace.app().await;
    flow::start_background(&app).await;
    let answer = flow::handle_request(&app, console_request("carol", "/rollback-db staging")).await;
    let Answer::Accepted { op_id } = answer else {
        panic!("expected acceptance, got {answer:?}");
    };
    eventually("expiry", || async {
        app.store
            .operation(op_id)
            .await
            .expect("read")
            .expect("exists")
            .state
            == OpState::Expired
    })
    .await;
    let dave = Sender::identify(&app, Platform::Console, "dave", "console");
    let feedback = flow::approve(&app, &dave, op_id, None).await;
    assert!(!feedback.applied);
    assert_eq!(
        feedback.text,
        format!("#{op_id} is not waiting for approval: it is expired")
    );
    let operation = app
        .store
        .operation(op_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(operation.state, OpState::Expired);
    assert_eq!(
        operation.started_at, None,
        "an expired operation never runs"
    );
    assert!(app.store.steps(op_id).await.expect("journal").is_empty());
}

#[tokio::test]
async fn an_approval_for_other_parameters_does_not_count() {
    let workspace = Workspace::shipped();
    let app = workspace.app().await;
    let answer = flow::handle_request(&app, console_request("carol", "/rollback-db staging")).await;
    let Answer::Accepted { op_id } = answer else {
        panic!("expected acceptance, got {answer:?}");
    };
    let dave = Sender::identify(&app, Platform::Console, "dave", "console");
    let feedback = flow::approve(&app, &dave, op_id, Some("0123abcd")).await;
    assert_eq!(
        (feedback.applied, feedback.text),
        (
            false,
            format!(
                "that approval was for other parameters than #{op_id} has; nothing was approved"
            )
        )
    );
    assert!(
        app.store
            .approvals(op_id)
            .await
            .expect("approvals")
            .is_empty()
    );
    let withdrawn = flow::withdraw(&app, &dave, op_id).await;
    assert_eq!(
        withdrawn.text,
        format!("you have no approval of #{op_id} to withdraw")
    );
    let approved = flow::approve(&app, &dave, op_id, None).await;
    assert!(approved.applied, "{}", approved.text);
    let withdrawn = flow::withdraw(&app, &dave, op_id).await;
    assert_eq!(
        withdrawn.text,
        format!("you withdrew your approval of #{op_id}")
    );
    let operation = app
        .store
        .operation(op_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        operation.state,
        OpState::Pending,
        "a withdrawn approval no longer counts"
    );
}

#[tokio::test]
async fn a_second_mutating_request_gets_busy() {
    let workspace = Workspace::shipped();
    let app = workspace.app().await;
    let now = app.now();
    let holder = app
        .store
        .try_lock("staging", 99, "deploy", "alice", now)
        .await
        .expect("lock");
    assert_eq!(holder, None);
    let answer =
        flow::handle_request(&app, console_request("bob", "/lock staging \"freeze\"")).await;
    assert_eq!(
        refusal_text(&answer),
        format!(
            "busy: #99 deploy by alice running since {} UTC",
            now.format("%H:%M")
        )
    );
    let read_only = flow::handle_request(&app, console_request("bob", "/help")).await;
    assert!(
        matches!(read_only, Answer::Accepted { .. }),
        "read-only commands are not blocked: {read_only:?}"
    );
    app.store.unlock("staging", 99).await.expect("unlock");
    let answer =
        flow::handle_request(&app, console_request("bob", "/lock staging \"freeze\"")).await;
    assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
    app.wait_idle().await;
}

#[tokio::test]
async fn mutating_commands_fail_closed_when_the_store_is_unreachable() {
    let workspace = Workspace::shipped();
    let app = workspace.app().await;
    app.store.close().await;
    let answer =
        flow::handle_request(&app, console_request("bob", "/lock staging \"freeze\"")).await;
    let text = refusal_text(&answer);
    assert!(
        text.starts_with("cannot check staging's lock because the store is unreachable; mutating commands are refused until it is back"),
        "{text}"
    );
}

#[tokio::test]
async fn a_redelivered_request_takes_effect_once() {
    let workspace = Workspace::shipped();
    let app = workspace.app().await;
    let mut request = console_request("alice", "/lock staging \"freeze\"");
    request.platform = Platform::Slack;
    request.user_id = "U0ALICE01".to_string();
    request.delivery_id = Some("Ev0123".to_string());
    let first = flow::handle_request(&app, request.clone()).await;
    assert!(matches!(first, Answer::Accepted { .. }), "{first:?}");
    let second = flow::handle_request(&app, request).await;
    assert_eq!(second, Answer::Duplicate);
    app.wait_idle().await;
    let locks = app
        .store
        .recent_operations(Some("staging"), 10)
        .await
        .expect("operations");
    assert_eq!(locks.len(), 1);
}

#[tokio::test]
async fn rejected_requests_are_audited_without_an_operation() {
    let workspace = Workspace::shipped();
    let app = workspace.app().await;
    let answer =
        flow::handle_request(&app, console_request("mallory", "/deploy staging $(id)")).await;
    assert_eq!(
        refusal_text(&answer),
        "<ref> \"$(id)\" contains $, which is shell syntax and never accepted; <ref> must be a git ref: letters, digits and . _ / - (1 to 100 characters, starting with a letter or digit)"
    );
    assert!(
        app.store
            .recent_operations(None, 10)
            .await
            .expect("operations")
            .is_empty()
    );
    assert_eq!(app.store.lock_holder("staging").await.expect("lock"), None);
    let entries = app.store.audit_entries(None, 10).await.expect("audit");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entry.event, "refused");
    assert_eq!(entries[0].entry.actor, "console:mallory");
    assert_eq!(entries[0].entry.command, "deploy");
}

#[tokio::test]
async fn a_hold_lapses_at_its_expiry_and_the_lapse_is_audited() {
    let workspace = Workspace::shipped();
    let app = workspace.app().await;
    flow::start_background(&app).await;
    let answer = flow::handle_request(
        &app,
        console_request("alice", "/lock staging \"short freeze\" --for 1s"),
    )
    .await;
    assert!(matches!(answer, Answer::Accepted { .. }), "{answer:?}");
    app.wait_idle().await;
    eventually("the hold to lapse", || async {
        app.store
            .hold("staging", app.now())
            .await
            .expect("hold")
            .is_none()
    })
    .await;
    eventually("the lapse to be audited", || async {
        app.store
            .audit_entries(Some("staging"), 20)
            .await
            .expect("audit")
            .iter()
            .any(|entry| {
                entry.entry.event == "hold-lapsed" && entry.entry.detail.contains("short freeze")
            })
    })
    .await;
    let answer = flow::handle_request(
        &app,
        console_request("alice", "/lock staging \"next freeze\""),
    )
    .await;
    assert!(
        matches!(answer, Answer::Accepted { .. }),
        "a lapsed hold no longer blocks: {answer:?}"
    );
    app.wait_idle().await;
}

/// alice is listed with her Slack account only; her Discord account holds
/// `dba` through a guild role. Config cannot tell that account is hers, so
/// it may request but not approve: she cannot approve her own Slack request
/// from Discord.
#[tokio::test]
async fn one_person_cannot_approve_their_own_request_from_another_platform() {
    let workspace = Workspace::with_config(|text| {
        text.replace("discord = \"100000000000000001\"\n", "")
            .replace("slack = \"U0DAVE001\"\n", "")
            .replace(
                "[roles.dba]\n",
                "[roles.dba]\ndiscord_roles = [\"200000000000000001\"]\n",
            )
            .replace(
                "[roles.deployers]\n",
                "[roles.deployers]\nslack_usergroups = [\"S0DEPLOY01\"]\n",
            )
    });
    let app = workspace.app().await;
    let request = deckhand::chat::Request {
        platform: Platform::Slack,
        user_id: "U0ALICE01".to_string(),
        channel: "C0DEPLOYS1".to_string(),
        text: "/rollback-db staging".to_string(),
        delivery_id: None,
        groups: Vec::new(),
    };
    let Answer::Accepted { op_id } = flow::handle_request(&app, request).await else {
        panic!("alice may request a database rollback");
    };
    let alice_on_discord = Sender::identify(&app, Platform::Discord, "100000000000000001", "1")
        .with_groups(&app, &["200000000000000001".to_string()]);
    let feedback = flow::approve(&app, &alice_on_discord, op_id, None).await;
    assert_eq!(
        (feedback.applied, feedback.text.as_str()),
        (
            false,
            format!("you hold your role only through a discord group and config does not list your discord account, so you may request but not approve #{op_id}; ask an admin to add your discord id to [[users]] in config/deckhand.toml").as_str()
        )
    );

    // The other way round: someone known on Slack only through a user group
    // requests, and an approver config lists without a Slack account cannot
    // be told apart from them.
    let request = deckhand::chat::Request {
        platform: Platform::Slack,
        user_id: "U0GROUP01".to_string(),
        channel: "C0DEPLOYS1".to_string(),
        text: "/rollback-db staging".to_string(),
        delivery_id: None,
        groups: vec!["S0DEPLOY01".to_string()],
    };
    let Answer::Accepted { op_id: second } = flow::handle_request(&app, request).await else {
        panic!("a deployer by user group may request");
    };
    let dave_on_discord = Sender::identify(&app, Platform::Discord, "100000000000000004", "1");
    let feedback = flow::approve(&app, &dave_on_discord, second, None).await;
    assert_eq!(
        (feedback.applied, feedback.text),
        (
            false,
            format!(
                "#{second} was requested by slack:U0GROUP01, a slack account config does not list, and config lists no slack account of yours, so it cannot tell you from the requester; someone listed with a slack id must approve"
            )
        )
    );
    let frank_on_slack = Sender::identify(&app, Platform::Slack, "U0FRANK01", "C0DEPLOYS1");
    let feedback = flow::approve(&app, &frank_on_slack, second, None).await;
    assert_eq!(
        (feedback.applied, feedback.text),
        (true, format!("you approved #{second} (1 of 2 approvals)"))
    );
    assert_eq!(
        app.store.approvals(op_id).await.expect("approvals").len(),
        0,
        "nothing was counted for alice's own request"
    );
}
