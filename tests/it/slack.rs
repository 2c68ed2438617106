//! The Slack adapter end to end against the local Slack peer: Deckhand is
//! pointed at it by configuration alone (`[slack] api_url`), its tokens are
//! handed over in a `SlackTokens`, and HTTP mode is served on 127.0.0.1:0.
//! Covered: acknowledgement and private answers, one channel message per
//! operation edited as it moves, audit posts, approval by reaction and by
//! button (and refusals that change nothing), rejection, withdrawal,
//! expiry, signature refusals, duplicate deliveries, rate limits, user
//! groups, and Socket Mode reconnects in the middle of an operation.

use std::sync::Arc;
use std::time::Duration;

use deckhand::app::App;
use deckhand::chat::slack::{self, SlackAdapter, SlackTokens};
use deckhand::flow;
use deckhand::policy::OpState;
use deckhand::secret::Secret;
use serde_json::{Value, json};

use crate::support::demo::DemoEnv;
use crate::support::pagerduty_peer::signed_webhook;
use crate::support::slack_peer::{
    SLACK_APP_TOKEN, SLACK_BOT_TOKEN, SlackMessage, SlackPeer, SlackReply, altered_post,
    forged_post, signed_post, stale_post,
};
use crate::support::workspace::{CommandsCopy, Workspace};
use crate::support::{
    DEADLINE, PeerServer, fixture_bytes, fixture_json, now_unix, random_hex, wait_for,
};

pub(crate) const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub(crate) const CHANNEL: &str = "C0DEPLOYS1";
const AUDIT_CHANNEL: &str = "C0AUDIT001";
pub(crate) const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

// Config ids of the shipped users.
pub(crate) const ALICE: &str = "U0ALICE01";
pub(crate) const BOB: &str = "U0BOB0001";
const CAROL: &str = "U0CAROL01";
const DAVE: &str = "U0DAVE001";
const ERIN: &str = "U0ERIN001";
const FRANK: &str = "U0FRANK01";
/// Not in config; holds `dba` through the user group `S0DBA00001`.
const GRACE: &str = "U0GRACE01";
const DBA_GROUP: &str = "S0DBA00001";

/// Which transport a test drives.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Http,
    Socket,
}

/// Deckhand with its Slack adapter, connected to a local Slack peer.
struct Harness {
    peer: SlackPeer,
    app: Arc<App>,
    adapter: Option<SlackAdapter>,
    /// Deckhand's listener, in HTTP mode.
    server: Option<PeerServer>,
    /// The demo stack, for tests against real Docker.
    demo: Option<DemoEnv>,
    _workspace: Option<Workspace>,
    _commands: Option<CommandsCopy>,
}

impl Harness {
    async fn start(mode: Mode) -> Harness {
        Harness::start_with(mode, None).await
    }

    /// Starts with the shipped commands, or with `commands` (an edited copy),
    /// in environments whose stacks do not exist.
    async fn start_with(mode: Mode, commands: Option<CommandsCopy>) -> Harness {
        let peer = SlackPeer::start().await;
        let api_url = peer.api_url();
        let edit = move |text: String| isolated_slack_config(text, mode, &api_url);
        let workspace = match &commands {
            Some(commands) => {
                let folder = commands.path().display().to_string();
                Workspace::with_config(|text| {
                    let shipped = crate::support::workspace::repo_root()
                        .join("commands")
                        .display()
                        .to_string();
                    edit(text.replace(&shipped, &folder))
                })
            }
            None => Workspace::with_config(edit),
        };
        let app = workspace.app().await;
        let mut harness = Harness::connect(mode, peer, app).await;
        harness._workspace = Some(workspace);
        harness._commands = commands;
        harness
    }

    /// Starts like [`Harness::start`] with the finished config passed
    /// through `edit`.
    async fn start_edited(mode: Mode, edit: impl FnOnce(String) -> String) -> Harness {
        let peer = SlackPeer::start().await;
        let api_url = peer.api_url();
        let workspace =
            Workspace::with_config(move |text| edit(isolated_slack_config(text, mode, &api_url)));
        let app = workspace.app().await;
        let mut harness = Harness::connect(mode, peer, app).await;
        harness._workspace = Some(workspace);
        harness
    }

    /// Starts like [`Harness::start`] with `extra` appended to the config.
    async fn start_extended(mode: Mode, extra: String) -> Harness {
        let peer = SlackPeer::start().await;
        let api_url = peer.api_url();
        let workspace = Workspace::with_config(move |text| {
            format!("{}\n{extra}", isolated_slack_config(text, mode, &api_url))
        });
        let app = workspace.app().await;
        let mut harness = Harness::connect(mode, peer, app).await;
        harness._workspace = Some(workspace);
        harness
    }

    /// Starts against an isolated copy of the demo stack in real Docker
    /// (staging, and production too when `with_production`).
    async fn start_demo(mode: Mode, test_name: &str, with_production: bool) -> Harness {
        let peer = SlackPeer::start().await;
        let api_url = peer.api_url();
        let demo = DemoEnv::start_with(test_name, with_production, |text| {
            slack_config(text, mode, &api_url)
        })
        .await;
        let app = demo.workspace.app().await;
        let mut harness = Harness::connect(mode, peer, app).await;
        harness.demo = Some(demo);
        harness
    }

    async fn connect(mode: Mode, peer: SlackPeer, app: Arc<App>) -> Harness {
        peer.set_usergroup(DBA_GROUP, &[GRACE]);
        let tokens = SlackTokens {
            bot_token: Secret::new(SLACK_BOT_TOKEN),
            app_token: Some(Secret::new(SLACK_APP_TOKEN)),
            signing_secret: Some(Secret::new(SIGNING_SECRET)),
        };
        let adapter = slack::start(&app, tokens)
            .await
            .expect("the adapter starts against the peer");
        flow::start_background(&app).await;
        let server = match mode {
            Mode::Http => {
                let router = deckhand::http::router(Arc::clone(&app)).merge(adapter.routes());
                Some(PeerServer::start(router).await)
            }
            Mode::Socket => {
                peer.wait_for_connections(1, DEADLINE).await;
                None
            }
        };
        Harness {
            peer,
            app,
            adapter: Some(adapter),
            server,
            demo: None,
            _workspace: None,
            _commands: None,
        }
    }

    fn url(&self, path: &str) -> String {
        let server = self.server.as_ref().expect("HTTP mode");
        format!("{}{path}", server.http_url())
    }

    /// A signed slash command over HTTP; returns the response_url id.
    async fn command(&self, user: &str, line: &str) -> String {
        let (response_id, body) = self.command_body(user, line, &random_hex(8));
        let response = signed_post(
            &self.url(slack::COMMANDS_PATH),
            SIGNING_SECRET,
            body.as_bytes(),
            FORM,
            now_unix(),
        )
        .await;
        assert_eq!(response.status(), 200, "the command is acknowledged");
        assert_eq!(
            response.text().await.expect("a body"),
            "",
            "acknowledged without a message; the answer follows"
        );
        response_id
    }

    /// A slash command form with its trigger id; returns (response id, body).
    fn command_body(&self, user: &str, line: &str, trigger: &str) -> (String, String) {
        let (command, text) = line.split_once(' ').unwrap_or((line, ""));
        let response_id = format!("cmd-{trigger}");
        let body = serde_urlencoded::to_string([
            ("token", "xQ9fZ2sLkPz7Wm4RtY6uVb3N"),
            ("team_id", "T0ACME0001"),
            ("team_domain", "acme-eng"),
            ("channel_id", CHANNEL),
            ("channel_name", "deploys"),
            ("user_id", user),
            ("user_name", user),
            ("command", command),
            ("text", text),
            ("api_app_id", "A0CHATOPS1"),
            ("is_enterprise_install", "false"),
            ("response_url", &self.peer.response_url(&response_id)),
            ("trigger_id", &format!("1.2.{trigger}")),
        ])
        .expect("a form encodes");
        (response_id, body)
    }

    /// A slash command through the Socket Mode connection; returns the
    /// response_url id after the envelope's ack.
    async fn socket_command(&self, user: &str, line: &str) -> String {
        let (command, text) = line.split_once(' ').unwrap_or((line, ""));
        let trigger = random_hex(8);
        let response_id = format!("cmd-{trigger}");
        let mut payload =
            fixture_json("slack/socket_mode_envelope_slash_commands.json")["payload"].clone();
        payload["user_id"] = json!(user);
        payload["command"] = json!(command);
        payload["text"] = json!(text);
        payload["response_url"] = json!(self.peer.response_url(&response_id));
        payload["trigger_id"] = json!(format!("1.2.{trigger}"));
        let envelope_id = self.peer.push_slash_command(payload);
        let ack = self.peer.wait_for_ack(&envelope_id, DEADLINE).await;
        assert_eq!(
            ack,
            json!({ "envelope_id": envelope_id }),
            "a bare ack; the answer follows separately"
        );
        response_id
    }

    /// A reaction event, over HTTP (signed) or the socket.
    async fn react(&self, mode: Mode, event: &Value) {
        match mode {
            Mode::Http => {
                let response = signed_post(
                    &self.url(slack::EVENTS_PATH),
                    SIGNING_SECRET,
                    event.to_string().as_bytes(),
                    JSON,
                    now_unix(),
                )
                .await;
                assert_eq!(response.status(), 200);
            }
            Mode::Socket => {
                let envelope_id = self.peer.push_events_api(event.clone());
                self.peer.wait_for_ack(&envelope_id, DEADLINE).await;
            }
        }
    }

    /// A fresh reaction event (`reaction_added` or `reaction_removed`) by
    /// `user` on the message at `ts`, delivered like [`Harness::react`].
    async fn reaction(&self, mode: Mode, kind: &str, user: &str, emoji: &str, ts: &str) {
        self.react(
            mode,
            &reaction_event(kind, user, emoji, ts, &new_event_id()),
        )
        .await;
    }

    /// `user` puts ✅ on the message at `ts`, over HTTP.
    async fn check_mark(&self, user: &str, ts: &str) {
        self.reaction(Mode::Http, "reaction_added", user, "white_check_mark", ts)
            .await;
    }

    /// A button click over HTTP.
    async fn click(&self, user: &str, message: &SlackMessage, action_id: &str) {
        let payload = click_payload(user, message, action_id);
        let body = serde_urlencoded::to_string([("payload", payload.to_string())])
            .expect("a form encodes");
        let response = signed_post(
            &self.url(slack::INTERACTIONS_PATH),
            SIGNING_SECRET,
            body.as_bytes(),
            FORM,
            now_unix(),
        )
        .await;
        assert_eq!(response.status(), 200);
    }

    /// The bot's message of the n-th operation in the channel (1-based).
    async fn operation_message(&self, nth: usize) -> SlackMessage {
        wait_for(
            &format!("operation message {nth} in {CHANNEL}"),
            DEADLINE,
            || {
                self.top_level_messages()
                    .into_iter()
                    .filter(|message| message.thread_ts.is_none())
                    .nth(nth - 1)
            },
        )
        .await
    }

    fn top_level_messages(&self) -> Vec<SlackMessage> {
        self.peer
            .messages_in(CHANNEL)
            .into_iter()
            .filter(|message| message.thread_ts.is_none())
            .collect()
    }

    /// Waits until the message `ts` reads `needle` in its latest version.
    async fn wait_for_text(&self, ts: &str, needle: &str) -> SlackMessage {
        self.wait_for_text_within(ts, needle, DEADLINE).await
    }

    /// Like `wait_for_text`, for operations that take a while (real Docker).
    async fn wait_for_text_within(&self, ts: &str, needle: &str, within: Duration) -> SlackMessage {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = self.peer.message(CHANNEL, ts);
            if let Some(message) = &message
                && message.text().contains(needle)
            {
                return message.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for message {ts} to read \"{needle}\"; it reads:\n{}",
                message
                    .map(|message| message.text().to_string())
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for an ephemeral message to `user` containing `needle`.
    async fn wait_for_ephemeral(&self, user: &str, needle: &str) -> Value {
        wait_for(
            &format!("an ephemeral to {user} reading \"{needle}\""),
            DEADLINE,
            || {
                self.peer.ephemerals().into_iter().find(|params| {
                    params["user"] == user
                        && params["text"]
                            .as_str()
                            .is_some_and(|text| text.contains(needle))
                })
            },
        )
        .await
    }

    async fn state_of(&self, op_id: i64) -> OpState {
        self.app
            .store
            .operation(op_id)
            .await
            .expect("the store answers")
            .expect("the operation exists")
            .state
    }

    async fn wait_for_state(&self, op_id: i64, wanted: &[OpState]) -> OpState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let state = self.state_of(op_id).await;
            if wanted.contains(&state) {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "#{op_id} stayed {state:?}, wanted one of {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn n_operations(&self) -> usize {
        self.app
            .store
            .recent_operations(None, 100)
            .await
            .expect("the store answers")
            .len()
    }

    /// Waits until every message handed to the adapter has been delivered.
    async fn settle(&self) {
        self.app.wait_idle().await;
        let adapter = self.adapter.as_ref().expect("running");
        wait_for("slack deliveries to settle", DEADLINE, || {
            adapter.is_idle().then_some(())
        })
        .await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.app.request_shutdown();
    }
}

/// The shipped config plus `[slack]`, an audit channel for staging, and the
/// `dba` role granted to a Slack user group. Its environments name compose
/// projects that do not exist, so an operation that gets to run fails at
/// its first Docker step and never touches a stack someone else runs.
fn isolated_slack_config(text: String, mode: Mode, api_url: &str) -> String {
    let text = text
        .replace(
            "compose_project = \"deckhand-demo\"",
            "compose_project = \"deckhand-slack-test-absent\"",
        )
        .replace(
            "compose_project = \"deckhand-prod\"",
            "compose_project = \"deckhand-slack-test-absent-prod\"",
        )
        .replace(
            "/var/backups/deckhand/",
            "/nonexistent/deckhand-slack-test/",
        );
    slack_config(text, mode, api_url)
}

/// The config `text` plus `[slack]` pointing at the peer, an audit channel
/// for staging, and the `dba` role granted to a Slack user group.
pub(crate) fn slack_config(text: String, mode: Mode, api_url: &str) -> String {
    let mode_lines = match mode {
        Mode::Http => {
            "mode = \"http\"\nsigning_secret_env = \"DECKHAND_TEST_SLACK_SIGNING_UNUSED\""
        }
        Mode::Socket => "mode = \"socket\"\napp_token_env = \"DECKHAND_TEST_SLACK_APP_UNUSED\"",
    };
    let text = text.replace(
        "[roles.dba]\n",
        &format!("[roles.dba]\nslack_usergroups = [\"{DBA_GROUP}\"]\n"),
    );
    format!(
        "{text}\n[environments.staging.audit]\nslack = \"{AUDIT_CHANNEL}\"\n\n[slack]\n{mode_lines}\nbot_token_env = \"DECKHAND_TEST_SLACK_BOT_UNUSED\"\napi_url = \"{api_url}\"\nusergroup_ttl = \"1m\"\n"
    )
}

/// A `reaction_added` / `reaction_removed` event_callback from the fixture.
fn reaction_event(kind: &str, user: &str, emoji: &str, ts: &str, event_id: &str) -> Value {
    let mut event = fixture_json("slack/event_reaction_added.json");
    event["event"]["type"] = json!(kind);
    event["event"]["user"] = json!(user);
    event["event"]["reaction"] = json!(emoji);
    event["event"]["item"]["channel"] = json!(CHANNEL);
    event["event"]["item"]["ts"] = json!(ts);
    event["event_id"] = json!(event_id);
    event
}

fn new_event_id() -> String {
    format!("Ev{}", random_hex(6).to_uppercase())
}

/// A block_actions payload from the fixture: `user` clicks the button
/// `action_id` of `message`, carrying the value Deckhand rendered.
pub(crate) fn click_payload(user: &str, message: &SlackMessage, action_id: &str) -> Value {
    let button = message.latest()["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|block| block["type"] == "actions")
        .flat_map(|block| block["elements"].as_array().cloned().unwrap_or_default())
        .find(|element| element["action_id"] == action_id)
        .unwrap_or_else(|| panic!("the message has a {action_id} button: {}", message.latest()));
    let mut payload = fixture_json("slack/interaction_block_actions_approve.json");
    payload["user"]["id"] = json!(user);
    payload["container"]["message_ts"] = json!(message.ts);
    payload["channel"]["id"] = json!(CHANNEL);
    payload["message"]["ts"] = json!(message.ts);
    payload["trigger_id"] = json!(format!("9.9.{}", random_hex(8)));
    payload["actions"][0]["action_id"] = json!(action_id);
    payload["actions"][0]["value"] = button["value"].clone();
    payload
}

/// The operation id in a message title such as `Rollback-db #3 · …`.
pub(crate) fn op_id_of(message: &SlackMessage) -> i64 {
    let text = message.texts().join("\n");
    let after = text
        .split('#')
        .nth(1)
        .unwrap_or_else(|| panic!("no #id in {text}"));
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("an operation number")
}

/// The status words of every version of a message, in order.
fn statuses(message: &SlackMessage) -> Vec<String> {
    message
        .texts()
        .iter()
        .map(|text| {
            text.lines()
                .nth(1)
                .unwrap_or_default()
                .trim()
                .split([':', ' '])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn bad_input_gets_a_private_answer_with_usage_and_changes_nothing() {
    let harness = Harness::start(Mode::Http).await;
    let response_id = harness.command(ALICE, "/deploy").await;
    let posts = harness
        .peer
        .wait_for_response_posts(&response_id, 1, DEADLINE)
        .await;
    let text = posts[0]["text"].as_str().expect("a text fallback");
    assert!(text.contains("/deploy usage"), "{text}");
    assert!(
        text.contains("/deploy &lt;env&gt; &lt;ref&gt;"),
        "usage, escaped for Slack's mrkdwn: {text}"
    );
    assert!(
        posts[0]["blocks"].is_array(),
        "the answer is rendered as blocks"
    );

    let response_id = harness.command(ALICE, "/deplyo staging develop").await;
    let posts = harness
        .peer
        .wait_for_response_posts(&response_id, 1, DEADLINE)
        .await;
    assert!(
        posts[0]["text"]
            .as_str()
            .is_some_and(|text| text.contains("/deploy")),
        "{}",
        posts[0]
    );
    harness.settle().await;
    assert_eq!(harness.n_operations().await, 0);
    assert!(
        harness.peer.calls_to("chat.postMessage").is_empty(),
        "nothing is posted in the channel"
    );
}

#[tokio::test]
async fn an_operation_is_one_message_edited_to_its_end_with_audit_posts() {
    let harness = Harness::start(Mode::Http).await;
    harness
        .command(ALICE, "/lock staging \"release freeze\" --for 1h")
        .await;
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    harness.wait_for_state(op_id, &[OpState::Succeeded]).await;
    let message = harness.wait_for_text(&message.ts, "succeeded").await;
    harness.settle().await;
    let message = harness
        .peer
        .message(CHANNEL, &message.ts)
        .expect("still there");
    let seen = statuses(&message);
    assert_eq!(
        seen.last().map(String::as_str),
        Some("succeeded"),
        "{seen:?}"
    );
    let order = ["queued", "running", "succeeded"];
    let ranks: Vec<usize> = seen
        .iter()
        .map(|status| {
            order
                .iter()
                .position(|known| known == status)
                .unwrap_or_else(|| panic!("unexpected status {status} in {seen:?}"))
        })
        .collect();
    assert!(
        ranks.windows(2).all(|pair| pair[0] <= pair[1]),
        "edits arrive in order: {seen:?}"
    );
    assert_eq!(
        harness.top_level_messages().len(),
        1,
        "one message for the operation"
    );
    assert_eq!(
        harness
            .app
            .store
            .message_of(op_id, deckhand::names::Platform::Slack)
            .await
            .expect("store"),
        Some((CHANNEL.to_string(), message.ts.clone())),
        "the message is remembered for reactions"
    );
    let audit = harness.peer.messages_in(AUDIT_CHANNEL);
    let audit_texts: Vec<String> = audit.iter().map(|line| line.text().to_string()).collect();
    assert!(
        audit_texts.iter().any(|text| text.contains("requested"))
            && audit_texts.iter().any(|text| text.contains("succeeded")),
        "every audit entry of staging is posted to its audit channel: {audit_texts:?}"
    );

    harness.command(ALICE, "/unlock staging").await;
    let second = harness.operation_message(2).await;
    harness.wait_for_text(&second.ts, "succeeded").await;
}

#[tokio::test]
async fn reactions_from_an_approver_approve_and_the_requesters_own_change_nothing() {
    let harness = Harness::start(Mode::Http).await;
    harness.command(CAROL, "/rollback-db staging").await;
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    let pending = harness
        .wait_for_text(&message.ts, "awaiting approval")
        .await;
    let blocks = pending.latest()["blocks"].to_string();
    assert!(
        blocks.contains("deckhand_approve") && blocks.contains("deckhand_reject"),
        "{blocks}"
    );
    assert!(
        pending.text().contains("0 of 2 from role dba (not @carol)"),
        "{}",
        pending.text()
    );
    assert!(pending.text().contains("expires"), "{}", pending.text());

    // The requester's own ✅ is answered and changes nothing.
    let n_versions = pending.history.len();
    harness.check_mark(CAROL, &message.ts).await;
    harness.wait_for_ephemeral(CAROL, "✗").await;
    harness.settle().await;
    assert_eq!(harness.state_of(op_id).await, OpState::Pending);
    assert_eq!(
        harness
            .peer
            .message(CHANNEL, &message.ts)
            .map(|m| m.history.len()),
        Some(n_versions),
        "the message is not edited"
    );

    // Someone without the role: answered, nothing changes.
    harness.check_mark(ERIN, &message.ts).await;
    harness.wait_for_ephemeral(ERIN, "✗").await;
    assert_eq!(harness.state_of(op_id).await, OpState::Pending);

    // A ✅ on some other message is answered and approves nothing.
    let other_ts = harness.peer.seed_message(CHANNEL, ALICE, "lunch?");
    harness.check_mark(DAVE, &other_ts).await;
    harness
        .wait_for_ephemeral(DAVE, "not an approval request")
        .await;

    // An approver's ✅ counts and the message says who approved.
    harness.check_mark(DAVE, &message.ts).await;
    harness.wait_for_ephemeral(DAVE, "you approved").await;
    let approved = harness
        .wait_for_text(&message.ts, "approved by: @dave")
        .await;
    assert!(approved.text().contains("1 of 2"), "{}", approved.text());
    assert_eq!(harness.state_of(op_id).await, OpState::Pending);

    // A user group member config does not list holds the role through the
    // group, but config cannot tell whether that account is carol's own:
    // they may request, not approve.
    harness.check_mark(GRACE, &message.ts).await;
    harness
        .wait_for_ephemeral(
            GRACE,
            "✗ you hold your role only through a slack group and config does not list your slack account",
        )
        .await;
    assert_eq!(harness.state_of(op_id).await, OpState::Pending);

    // The second approval comes from someone config lists.
    harness.check_mark(FRANK, &message.ts).await;
    harness.wait_for_ephemeral(FRANK, "it starts now").await;
    let state = harness
        .wait_for_state(
            op_id,
            &[
                OpState::Running,
                OpState::Succeeded,
                OpState::Failed,
                OpState::RolledBack,
            ],
        )
        .await;
    assert_ne!(state, OpState::Pending);
    let started = harness.wait_for_text(&message.ts, "@frank").await;
    assert!(
        !started.latest()["blocks"]
            .to_string()
            .contains("deckhand_approve"),
        "no buttons once approved"
    );
    assert!(
        !harness.peer.calls_to("usergroups.users.list").is_empty(),
        "memberships come from usergroups.users.list"
    );
}

#[tokio::test]
async fn a_cross_reaction_rejects_and_removing_a_check_withdraws() {
    let harness = Harness::start(Mode::Http).await;
    harness.command(CAROL, "/rollback-db staging").await;
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    harness
        .wait_for_text(&message.ts, "awaiting approval")
        .await;

    harness.check_mark(DAVE, &message.ts).await;
    harness
        .wait_for_text(&message.ts, "approved by: @dave")
        .await;
    harness
        .reaction(
            Mode::Http,
            "reaction_removed",
            DAVE,
            "white_check_mark",
            &message.ts,
        )
        .await;
    harness.wait_for_ephemeral(DAVE, "you withdrew").await;
    let withdrawn = harness.wait_for_text(&message.ts, "0 of 2").await;
    assert!(
        !withdrawn.text().contains("approved by"),
        "{}",
        withdrawn.text()
    );

    harness
        .reaction(Mode::Http, "reaction_added", DAVE, "x", &message.ts)
        .await;
    harness.wait_for_ephemeral(DAVE, "you rejected").await;
    assert_eq!(harness.state_of(op_id).await, OpState::Rejected);
    let rejected = harness.wait_for_text(&message.ts, "nothing was run").await;
    assert!(
        !rejected.latest()["blocks"]
            .to_string()
            .contains("deckhand_approve"),
        "no buttons once rejected"
    );
    // A late ✅ is answered and changes nothing.
    harness.check_mark(BOB, &message.ts).await;
    harness.wait_for_ephemeral(BOB, "✗").await;
    assert_eq!(harness.state_of(op_id).await, OpState::Rejected);
}

#[tokio::test]
async fn buttons_approve_for_approvers_and_are_refused_for_others() {
    let harness = Harness::start(Mode::Http).await;
    harness.command(CAROL, "/rollback-db staging").await;
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    let pending = harness
        .wait_for_text(&message.ts, "awaiting approval")
        .await;

    harness.click(CAROL, &pending, "deckhand_approve").await;
    harness.wait_for_ephemeral(CAROL, "✗").await;
    harness.click(ERIN, &pending, "deckhand_approve").await;
    harness.wait_for_ephemeral(ERIN, "✗").await;
    assert_eq!(harness.state_of(op_id).await, OpState::Pending);

    harness.click(DAVE, &pending, "deckhand_approve").await;
    harness.wait_for_ephemeral(DAVE, "you approved").await;
    harness
        .wait_for_text(&message.ts, "approved by: @dave")
        .await;

    harness.click(CAROL, &pending, "deckhand_reject").await;
    harness.wait_for_ephemeral(CAROL, "you cancelled").await;
    assert_eq!(harness.state_of(op_id).await, OpState::Cancelled);
    harness.wait_for_text(&message.ts, "nothing was run").await;
}

#[tokio::test]
async fn an_expired_request_says_so_and_late_approvals_change_nothing() {
    let commands = CommandsCopy::edited("rollback-db.toml", |text| {
        text.replace("expires = \"1h\"", "expires = \"1s\"")
    });
    let harness = Harness::start_with(Mode::Http, Some(commands)).await;
    harness.command(CAROL, "/rollback-db staging").await;
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    let pending = harness
        .wait_for_text(&message.ts, "awaiting approval")
        .await;
    harness.wait_for_state(op_id, &[OpState::Expired]).await;
    let expired = harness.wait_for_text(&message.ts, "expired").await;
    assert!(
        expired.text().contains("nothing was run"),
        "{}",
        expired.text()
    );
    assert!(
        !expired.latest()["blocks"]
            .to_string()
            .contains("deckhand_approve")
    );

    harness.click(DAVE, &pending, "deckhand_approve").await;
    harness.wait_for_ephemeral(DAVE, "✗").await;
    harness.check_mark(DAVE, &message.ts).await;
    wait_for("two refusals for dave", DEADLINE, || {
        (harness
            .peer
            .ephemerals()
            .iter()
            .filter(|params| params["user"] == DAVE)
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    assert_eq!(harness.state_of(op_id).await, OpState::Expired);
}

#[tokio::test]
async fn forged_stale_and_altered_requests_get_401_and_change_nothing() {
    let harness = Harness::start(Mode::Http).await;
    let (_, command) = harness.command_body(ALICE, "/lock staging \"forged\"", "forged");
    let reaction = reaction_event(
        "reaction_added",
        DAVE,
        "white_check_mark",
        "1.1",
        "EvFORGED",
    )
    .to_string();
    let click = serde_urlencoded::to_string([(
        "payload",
        fixture_json("slack/interaction_block_actions_approve.json").to_string(),
    )])
    .expect("a form encodes");
    let cases = [
        (slack::COMMANDS_PATH, command.clone(), FORM),
        (slack::EVENTS_PATH, reaction.clone(), JSON),
        (slack::INTERACTIONS_PATH, click.clone(), FORM),
    ];
    let n_calls_before = harness.peer.requests().len();
    for (path, body, content_type) in &cases {
        let url = harness.url(path);
        let forged = forged_post(&url, body.as_bytes(), content_type, now_unix()).await;
        assert_eq!(forged.status(), 401, "forged {path}");
        let stale = stale_post(&url, SIGNING_SECRET, body.as_bytes(), content_type).await;
        assert_eq!(stale.status(), 401, "stale {path}");
        let altered_body = body
            .replace("staging", "production")
            .replace("DAVE", "ALICE");
        let altered = altered_post(
            &url,
            SIGNING_SECRET,
            body.as_bytes(),
            format!("{altered_body} ").as_bytes(),
            content_type,
        )
        .await;
        assert_eq!(altered.status(), 401, "altered {path}");
        let unsigned = reqwest::Client::new()
            .post(&url)
            .header("content-type", *content_type)
            .body(body.clone())
            .send()
            .await
            .expect("deckhand answers");
        assert_eq!(unsigned.status(), 401, "unsigned {path}");
    }
    // The url_verification handshake is signed too, and answered once verified.
    let challenge = fixture_json("slack/event_url_verification.json");
    let answered = signed_post(
        &harness.url(slack::EVENTS_PATH),
        SIGNING_SECRET,
        challenge.to_string().as_bytes(),
        JSON,
        now_unix(),
    )
    .await;
    assert_eq!(answered.status(), 200);
    let answer: Value = answered.json().await.expect("JSON");
    assert_eq!(answer["challenge"], challenge["challenge"]);
    let forged = forged_post(
        &harness.url(slack::EVENTS_PATH),
        challenge.to_string().as_bytes(),
        JSON,
        now_unix(),
    )
    .await;
    assert_eq!(forged.status(), 401);

    harness.settle().await;
    assert_eq!(harness.n_operations().await, 0, "no operation was created");
    assert_eq!(
        harness.peer.requests().len(),
        n_calls_before,
        "nothing was posted to Slack"
    );
    let entries = harness
        .app
        .store
        .audit_entries(None, 10)
        .await
        .expect("audit log");
    assert!(entries.is_empty(), "nothing was audited: {entries:?}");
}

#[tokio::test]
async fn redelivered_commands_events_and_clicks_take_effect_once() {
    let harness = Harness::start(Mode::Http).await;
    let (_, body) = harness.command_body(CAROL, "/rollback-db staging", "same-trigger");
    for _ in 0..2 {
        let response = signed_post(
            &harness.url(slack::COMMANDS_PATH),
            SIGNING_SECRET,
            body.as_bytes(),
            FORM,
            now_unix(),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    harness
        .wait_for_text(&message.ts, "awaiting approval")
        .await;

    let event = reaction_event(
        "reaction_added",
        DAVE,
        "white_check_mark",
        &message.ts,
        "EvSAME0001",
    );
    harness.react(Mode::Http, &event).await;
    // Slack's retry of the same event carries X-Slack-Retry-Num.
    let timestamp = now_unix();
    let signature = crate::support::slack_peer::slack_signature(
        SIGNING_SECRET,
        timestamp,
        event.to_string().as_bytes(),
    );
    let retried = reqwest::Client::new()
        .post(harness.url(slack::EVENTS_PATH))
        .header("content-type", JSON)
        .header("X-Slack-Request-Timestamp", timestamp.to_string())
        .header("X-Slack-Signature", signature)
        .header("X-Slack-Retry-Num", "1")
        .header("X-Slack-Retry-Reason", "http_timeout")
        .body(event.to_string())
        .send()
        .await
        .expect("deckhand answers");
    assert_eq!(retried.status(), 200, "a retry is acknowledged");
    harness
        .wait_for_text(&message.ts, "approved by: @dave")
        .await;
    harness.settle().await;
    assert_eq!(
        harness.n_operations().await,
        1,
        "one operation for one command"
    );
    let dave_feedback = harness
        .peer
        .ephemerals()
        .into_iter()
        .filter(|params| params["user"] == DAVE)
        .count();
    assert_eq!(dave_feedback, 1, "the event took effect once");
    let approvals = harness.app.store.approvals(op_id).await.expect("store");
    assert_eq!(approvals.len(), 1);
    assert_eq!(harness.top_level_messages().len(), 1);
}

#[tokio::test]
async fn a_rate_limited_edit_waits_for_retry_after_and_still_lands() {
    let harness = Harness::start(Mode::Http).await;
    harness.command(CAROL, "/rollback-db staging").await;
    let message = harness.operation_message(1).await;
    harness
        .wait_for_text(&message.ts, "awaiting approval")
        .await;
    harness.settle().await;
    harness.peer.script(
        "chat.update",
        1,
        SlackReply::RateLimited {
            retry_after_secs: 1,
        },
    );
    harness.peer.script(
        "chat.postEphemeral",
        1,
        SlackReply::Error("internal_error".to_string()),
    );
    harness.check_mark(DAVE, &message.ts).await;
    harness
        .wait_for_text(&message.ts, "approved by: @dave")
        .await;
    harness.wait_for_ephemeral(DAVE, "you approved").await;
    let statuses: Vec<u16> = harness
        .peer
        .calls_to("chat.update")
        .iter()
        .map(|call| call.status)
        .collect();
    assert_eq!(statuses.first(), Some(&429), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    let ephemeral_statuses: Vec<u16> = harness
        .peer
        .calls_to("chat.postEphemeral")
        .iter()
        .map(|call| call.status)
        .collect();
    assert_eq!(ephemeral_statuses, [200, 200], "internal_error is retried");

    // Slack failing for longer than one call's retries: the lane keeps the
    // edit and delivers it once Slack answers again.
    harness.peer.script(
        "chat.update",
        8,
        SlackReply::Raw {
            status: 503,
            body: json!({ "ok": false, "error": "service_unavailable" }),
        },
    );
    harness
        .reaction(
            Mode::Http,
            "reaction_removed",
            DAVE,
            "white_check_mark",
            &message.ts,
        )
        .await;
    harness
        .wait_for_text_within(&message.ts, "0 of 2", Duration::from_secs(30))
        .await;
    let n_unavailable = harness
        .peer
        .calls_to("chat.update")
        .iter()
        .filter(|call| call.status == 503)
        .count();
    assert_eq!(n_unavailable, 8, "every failed edit was tried again");
}

#[tokio::test]
async fn socket_mode_survives_disconnects_in_the_middle_of_an_operation() {
    let harness = Harness::start(Mode::Socket).await;
    let response_id = harness.socket_command(ALICE, "/deploy").await;
    let posts = harness
        .peer
        .wait_for_response_posts(&response_id, 1, DEADLINE)
        .await;
    assert!(
        posts[0]["text"]
            .as_str()
            .is_some_and(|text| text.contains("usage"))
    );

    harness.socket_command(CAROL, "/rollback-db staging").await;
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    harness
        .wait_for_text(&message.ts, "awaiting approval")
        .await;

    // Slack rotates the connection: Deckhand reconnects and carries on.
    harness.peer.push_disconnect("refresh_requested");
    harness.peer.wait_for_connections(2, DEADLINE).await;
    let event = reaction_event(
        "reaction_added",
        DAVE,
        "white_check_mark",
        &message.ts,
        &new_event_id(),
    );
    harness.react(Mode::Socket, &event).await;
    harness
        .wait_for_text(&message.ts, "approved by: @dave")
        .await;

    // The socket drops without a close frame; a replayed envelope after the
    // reconnect takes effect once.
    harness.peer.drop_socket();
    harness
        .peer
        .wait_for_connections(3, Duration::from_secs(20))
        .await;
    harness.react(Mode::Socket, &event).await;
    let frank = reaction_event(
        "reaction_added",
        FRANK,
        "white_check_mark",
        &message.ts,
        &new_event_id(),
    );
    harness.react(Mode::Socket, &frank).await;
    harness.wait_for_ephemeral(FRANK, "it starts now").await;
    harness
        .wait_for_state(
            op_id,
            &[
                OpState::Running,
                OpState::Succeeded,
                OpState::Failed,
                OpState::RolledBack,
            ],
        )
        .await;
    harness
        .wait_for_state(
            op_id,
            &[OpState::Succeeded, OpState::Failed, OpState::RolledBack],
        )
        .await;
    harness.settle().await;
    let last = harness
        .peer
        .message(CHANNEL, &message.ts)
        .expect("the message");
    let final_state = harness.state_of(op_id).await;
    let final_word = if final_state == OpState::Succeeded {
        "succeeded"
    } else {
        "failed"
    };
    assert!(
        last.text()
            .lines()
            .nth(1)
            .is_some_and(|status| status.contains(final_word)),
        "the last edit shows the final state {final_state:?}: {}",
        last.text()
    );
    assert_eq!(
        harness
            .peer
            .ephemerals()
            .iter()
            .filter(|params| params["user"] == DAVE)
            .count(),
        1,
        "the replayed reaction took effect once"
    );
    let app = Arc::clone(&harness.app);
    assert_eq!(
        app.connections(),
        [(deckhand::names::Platform::Slack, true)],
        "readiness reports the Slack connection"
    );
}

/// How long a deploy or rollback against real Docker may take in a test.
const DOCKER_DEADLINE: Duration = Duration::from_secs(180);

#[tokio::test]
async fn a_signed_deploy_command_edits_one_message_through_every_step_to_success() {
    let harness = Harness::start_demo(Mode::Http, "slack_deploy_message", false).await;
    harness.command(ALICE, "/deploy staging v2").await;
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    let done = harness
        .wait_for_text_within(&message.ts, "succeeded", DOCKER_DEADLINE)
        .await;
    assert_eq!(harness.state_of(op_id).await, OpState::Succeeded);
    let text = done.text().to_string();
    assert!(
        text.starts_with(&format!("✅ Deploy #{op_id} · staging ← v2 · @alice")),
        "{text}"
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
            text.contains(&format!("✓ {step}")),
            "missing {step}: {text}"
        );
    }
    harness.settle().await;
    let message = harness.peer.message(CHANNEL, &message.ts).expect("kept");
    let seen = statuses(&message);
    assert!(
        seen.len() >= 3,
        "the message was edited as the deploy moved: {seen:?}"
    );
    assert_eq!(seen.first().map(String::as_str), Some("queued"), "{seen:?}");
    assert_eq!(
        seen.last().map(String::as_str),
        Some("succeeded"),
        "{seen:?}"
    );
    let step_numbers: Vec<usize> = message
        .texts()
        .iter()
        .filter_map(|text| {
            let status = text.lines().nth(1)?.trim();
            let rest = status.strip_prefix("running step ")?;
            rest.split(' ').next()?.parse().ok()
        })
        .collect();
    assert!(
        !step_numbers.is_empty() && step_numbers.windows(2).all(|pair| pair[0] <= pair[1]),
        "running steps only move forward: {seen:?} {step_numbers:?}"
    );
    assert_eq!(
        harness.top_level_messages().len(),
        1,
        "one message for the deploy"
    );
    let demo = harness.demo.as_ref().expect("demo stack");
    let health = deckhand::probe::probe(
        &format!("{}/health", demo.staging_url(13000)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        health.body_excerpt.contains("v2"),
        "{}",
        health.body_excerpt
    );
    let audit: Vec<String> = harness
        .peer
        .messages_in(AUDIT_CHANNEL)
        .iter()
        .map(|line| line.text().to_string())
        .collect();
    assert!(
        audit.iter().any(|line| line.contains("succeeded")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_production_rollback_waits_for_an_approvers_reaction_not_the_requesters() {
    let harness = Harness::start_demo(Mode::Http, "slack_prod_rollback", true).await;
    // A release to roll back: production needs one approval for a deploy too.
    harness.command(ALICE, "/deploy production v2").await;
    let deploy = harness.operation_message(1).await;
    let deploy_id = op_id_of(&deploy);
    let pending = harness.wait_for_text(&deploy.ts, "awaiting approval").await;
    harness.click(BOB, &pending, "deckhand_approve").await;
    harness.wait_for_ephemeral(BOB, "it starts now").await;
    harness
        .wait_for_text_within(&deploy.ts, "succeeded", DOCKER_DEADLINE)
        .await;
    assert_eq!(harness.state_of(deploy_id).await, OpState::Succeeded);

    harness.command(ALICE, "/rollback production backend").await;
    let rollback = harness.operation_message(2).await;
    let rollback_id = op_id_of(&rollback);
    let pending = harness
        .wait_for_text(&rollback.ts, "awaiting approval")
        .await;
    let text = pending.text().to_string();
    assert!(
        text.contains("0 of 1 from role deployers (not @alice)") && text.contains("expires"),
        "who may approve, how many, until when: {text}"
    );
    assert!(
        text.contains(
            "backend: deckhand-demo/tasktracker-backend:v2 → deckhand-demo/tasktracker-backend:v1"
        ),
        "the plan, from what to what: {text}"
    );

    harness.check_mark(ALICE, &rollback.ts).await;
    harness.wait_for_ephemeral(ALICE, "✗").await;
    harness.settle().await;
    assert_eq!(harness.state_of(rollback_id).await, OpState::Pending);

    harness.check_mark(BOB, &rollback.ts).await;
    harness
        .wait_for_ephemeral(BOB, &format!("you approved #{rollback_id}"))
        .await;
    let done = harness
        .wait_for_text_within(&rollback.ts, "succeeded", DOCKER_DEADLINE)
        .await;
    assert!(done.text().contains("approved by: @bob"), "{}", done.text());
    assert_eq!(harness.state_of(rollback_id).await, OpState::Succeeded);
    let demo = harness.demo.as_ref().expect("demo stack");
    let production_backend = format!("http://127.0.0.1:{}/health", demo.ports[1][&23000]);
    let health = deckhand::probe::probe(&production_backend, Duration::from_secs(5)).await;
    assert!(
        health.body_excerpt.contains("v1"),
        "{}",
        health.body_excerpt
    );
}

#[tokio::test]
async fn a_pagerduty_incident_is_reported_in_its_slack_channel_with_a_header_that_follows_it() {
    const PAGERDUTY_SECRET: &str = "pd-webhook-secret-for-slack-tests";
    let harness = Harness::start_extended(
        Mode::Http,
        format!(
            "[pagerduty]\nsecret_env = \"DECKHAND_TEST_PAGERDUTY_SECRET_UNUSED\"\n\n\
             [[pagerduty.services]]\nid = \"PBACKND\"\nenvironment = \"staging\"\n\
             platform = \"slack\"\nchannel = \"{CHANNEL}\"\n"
        ),
    )
    .await;
    // The same values `Connection::from_env` would read from the variable.
    let connection = deckhand::pagerduty::Connection {
        secret: Secret::new(PAGERDUTY_SECRET),
        notes: None,
    };
    let webhooks = PeerServer::start(deckhand::http::pagerduty::router(
        Arc::clone(&harness.app),
        connection,
    ))
    .await;
    let url = format!("{}/pagerduty/webhook", webhooks.http_url());

    let (response, _) = signed_webhook(
        &url,
        PAGERDUTY_SECRET,
        &fixture_bytes("pagerduty/incident_triggered.json"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let report = harness.operation_message(1).await;
    let title = "Incident #4217 · triggered · [production] backend health check failing";
    let report = harness.wait_for_text(&report.ts, title).await;
    let blocks = report.latest()["blocks"].to_string();
    assert!(blocks.contains(title), "{blocks}");
    assert!(
        blocks.contains("https://acme.pagerduty.com/incidents/Q1CHATOPS01AB"),
        "{blocks}"
    );

    let (response, _) = signed_webhook(
        &url,
        PAGERDUTY_SECRET,
        &fixture_bytes("pagerduty/incident_acknowledged.json"),
    )
    .await;
    assert_eq!(response.status(), 200);
    harness
        .wait_for_text(&report.ts, "Incident #4217 · acknowledged by Alice Example")
        .await;
    assert_eq!(
        harness.top_level_messages().len(),
        1,
        "the header is edited in place, not posted again"
    );
}

/// grace, listed in config with her Slack account but holding `dba` only
/// through the user group, whose memberships are believed for one second.
fn with_listed_grace(text: String) -> String {
    text.replace("usergroup_ttl = \"1m\"", "usergroup_ttl = \"1s\"")
        .replace(
            "[hosts.local]",
            &format!("[[users]]\nname = \"grace\"\nslack = \"{GRACE}\"\n\n[hosts.local]"),
        )
}

impl Harness {
    /// Takes `user` out of the dba user group and waits until Deckhand's
    /// cached membership lapses.
    async fn leave_dba_group(&self, user: &str) {
        self.peer.set_usergroup(DBA_GROUP, &[]);
        crate::support::docker::eventually("the group membership to lapse", DEADLINE, || async {
            self.app
                .directory
                .groups_of(deckhand::names::Platform::Slack, user)
                .await
                .is_empty()
                .then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn an_approver_who_lost_the_role_no_longer_counts_and_is_told_so() {
    let harness = Harness::start_edited(Mode::Http, with_listed_grace).await;
    harness.command(CAROL, "/rollback-db staging").await;
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    harness
        .wait_for_text(&message.ts, "awaiting approval")
        .await;
    harness.check_mark(GRACE, &message.ts).await;
    harness
        .wait_for_ephemeral(GRACE, &format!("you approved #{op_id} (1 of 2 approvals)"))
        .await;

    harness.leave_dba_group(GRACE).await;
    harness.check_mark(DAVE, &message.ts).await;
    harness
        .wait_for_ephemeral(
            DAVE,
            &format!("you approved #{op_id} (1 of 2 approvals); grace's approval no longer counts: grace no longer holds an approver role"),
        )
        .await;
    assert_eq!(harness.state_of(op_id).await, OpState::Pending);
}

#[tokio::test]
async fn a_requester_who_lost_the_role_gets_the_operation_cancelled_when_it_starts() {
    let harness = Harness::start_edited(Mode::Http, with_listed_grace).await;
    harness.command(GRACE, "/rollback-db staging").await;
    let message = harness.operation_message(1).await;
    let op_id = op_id_of(&message);
    harness
        .wait_for_text(&message.ts, "awaiting approval")
        .await;
    harness.check_mark(DAVE, &message.ts).await;
    harness.wait_for_ephemeral(DAVE, "you approved").await;

    harness.leave_dba_group(GRACE).await;
    harness.check_mark(FRANK, &message.ts).await;
    harness.wait_for_ephemeral(FRANK, "it starts now").await;
    assert_eq!(
        harness.wait_for_state(op_id, &[OpState::Cancelled]).await,
        OpState::Cancelled
    );
    let operation = harness
        .app
        .store
        .operation(op_id)
        .await
        .expect("the store answers")
        .expect("the operation exists");
    assert_eq!(
        operation.outcome.as_deref(),
        Some(
            "cancelled before it started: grace no longer holds role dba or deployers needed to request /rollback-db in staging; nothing was run"
        )
    );
    assert_eq!(operation.started_at, None, "it never ran");
    assert!(
        harness
            .app
            .store
            .steps(op_id)
            .await
            .expect("journal")
            .is_empty()
    );
}

#[tokio::test]
async fn requests_from_a_workspace_config_does_not_serve_are_refused_and_audited() {
    let harness = Harness::start_edited(Mode::Http, |text| {
        text.replace(
            "usergroup_ttl = \"1m\"",
            "usergroup_ttl = \"1m\"\nteam_ids = [\"T0ELSEWHERE\"]",
        )
    })
    .await;
    let response_id = harness.command(ALICE, "/lock staging \"freeze\"").await;
    let answers = harness
        .peer
        .wait_for_response_posts(&response_id, 1, DEADLINE)
        .await;
    assert!(
        answers[0].to_string().contains(
            "this Deckhand serves only the Slack workspaces its config lists; nothing was done"
        ),
        "{}",
        answers[0]
    );
    let ts = harness.peer.seed_message(CHANNEL, ALICE, "an old message");
    harness.check_mark(DAVE, &ts).await;
    harness
        .wait_for_ephemeral(DAVE, "serves only the Slack workspaces its config lists")
        .await;
    harness.settle().await;
    assert_eq!(harness.n_operations().await, 0, "nothing happened");
    let audit = harness
        .app
        .store
        .audit_entries(None, 10)
        .await
        .expect("audit");
    let refusals: Vec<(&str, &str)> = audit
        .iter()
        .map(|stored| (stored.entry.actor.as_str(), stored.entry.event.as_str()))
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals.contains(&("alice", "refused")), "{refusals:?}");
    assert!(refusals.contains(&("dave", "refused")), "{refusals:?}");
}

/// While Slack fails, what waits for it is bounded (issue 11, item 6): an
/// operation's newest state, at most `DETAIL_LIMIT` detail lines and
/// `AUDIT_LIMIT` audit lines, the rest counted into a note; once Slack
/// answers, the final state lands.
#[tokio::test]
async fn a_stalled_slack_holds_bounded_queues_and_still_gets_the_final_state() {
    use deckhand::chat::queue::{AUDIT_LIMIT, DETAIL_LIMIT};
    use deckhand::chat::{Outbound, Reply, Tone};
    use deckhand::names::Platform;

    let harness = Harness::start(Mode::Http).await;
    harness.peer.script(
        "chat.postMessage",
        2,
        SlackReply::Raw {
            status: 503,
            body: json!({ "ok": false, "error": "service_unavailable" }),
        },
    );
    let op_id = 990_001;
    let operation = |status: &str| Outbound::Operation {
        op_id,
        platform: Platform::Slack,
        channel: CHANNEL.to_string(),
        reply: Reply::new("Deploy #990001", Tone::Working, status),
    };
    harness.app.outbox.send(operation("step 1 of 2"));
    for line in 0..2_000 {
        harness.app.outbox.send(Outbound::Detail {
            op_id,
            platform: Platform::Slack,
            channel: CHANNEL.to_string(),
            text: format!("output line {line}"),
        });
        harness.app.outbox.send(Outbound::Audit {
            platform: Platform::Slack,
            channel: AUDIT_CHANNEL.to_string(),
            text: format!("audit line {line}"),
        });
    }
    harness.app.outbox.send(operation("finished in 2 s"));

    let notes_posted = |channel: &str, needle: &str| {
        harness
            .peer
            .messages_in(channel)
            .iter()
            .any(|message| message.latest().to_string().contains(needle))
    };
    wait_for(
        "both notes of dropped lines",
        Duration::from_secs(60),
        || {
            (notes_posted(CHANNEL, "more line(s) of output not posted")
                && notes_posted(AUDIT_CHANNEL, "audit line(s) not posted here"))
            .then_some(())
        },
    )
    .await;
    harness.settle().await;

    let posted = |channel: &str, needle: &str| {
        harness
            .peer
            .messages_in(channel)
            .iter()
            .filter(|message| message.latest().to_string().contains(needle))
            .count()
    };
    let details = posted(CHANNEL, "output line ");
    let audits = posted(AUDIT_CHANNEL, "audit line ");
    assert!(details <= DETAIL_LIMIT + 1, "{details} detail lines posted");
    assert!(audits <= AUDIT_LIMIT + 1, "{audits} audit lines posted");
    let operation_messages: Vec<_> = harness
        .peer
        .messages_in(CHANNEL)
        .into_iter()
        .filter(|message| message.latest().to_string().contains("Deploy #990001"))
        .collect();
    assert_eq!(operation_messages.len(), 1, "one message for the operation");
    assert!(
        operation_messages[0]
            .latest()
            .to_string()
            .contains("finished in 2 s"),
        "the final state landed: {:?}",
        operation_messages[0].latest()
    );
}
