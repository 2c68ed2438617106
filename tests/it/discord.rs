//! The Discord adapter against the local Discord peer, pointed at it by
//! configuration alone (`[discord] api_url`): command registration,
//! interactions over serenity's gateway connection and over the signed HTTP
//! endpoint, real Docker deploys and rollbacks edited into the original
//! response, approvals by reaction and button, 429s, token expiry, the
//! audit channel, and `deckhand serve` wiring it all up.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deckhand::app::App;
use deckhand::chat::discord::commands::{self, CommandDeclaration};
use deckhand::chat::discord::{self, Options};
use deckhand::chat::{Answer, Request};
use deckhand::flow;
use deckhand::names::Platform;
use deckhand::policy::OpState;
use deckhand::secret::Secret;
use serde_json::{Value, json};

use crate::support::demo::DemoEnv;
use crate::support::discord_peer::{
    DISCORD_APPLICATION_ID, DISCORD_BOT_TOKEN, DISCORD_CHANNEL_ID, DISCORD_GUILD_ID,
    DISCORD_PRIVATE_SEED_HEX, DISCORD_PUBLIC_KEY_HEX, DiscordMessage, DiscordPeer, DiscordReply,
    sign_interaction,
};
use crate::support::workspace::{Workspace, repo_root};
use crate::support::{DEADLINE, fixture_json, now_unix, wait_for};

/// Long enough for a real deploy or rollback on the demo stack.
const DOCKER_DEADLINE: Duration = Duration::from_secs(240);

/// The environment variable `[discord] token_env` names in these tests.
const TOKEN_ENV: &str = "DECKHAND_TEST_DISCORD_TOKEN";

/// A Discord user as the tests use them.
struct Person {
    id: &'static str,
    name: &'static str,
    roles: &'static [&'static str],
}

/// The fixtures' alice: developers and deployers in config.
const ALICE: Person = Person {
    id: "1174111099289731076",
    name: "alice",
    roles: &[],
};
/// The fixtures' bob: deployers and oncall.
const BOB: Person = Person {
    id: "1174111518720131077",
    name: "bob",
    roles: &[],
};
/// carol: dba and developers.
const CAROL: Person = Person {
    id: "1174111518720131080",
    name: "carol",
    roles: &[],
};
/// erin: developers only (the shipped id).
const ERIN: Person = Person {
    id: "100000000000000005",
    name: "erin",
    roles: &[],
};
/// A guild role config maps to `dba`.
const DBA_ROLE: &str = "1174111938150531079";
/// Someone config does not list, who holds the guild role mapped to `dba`.
const GUILD_DBA: Person = Person {
    id: "1174111518720131082",
    name: "frank",
    roles: &[DBA_ROLE],
};
/// The audit channel configured for staging.
const AUDIT_CHANNEL: &str = "1174110679859331099";

/// The shipped config with the fixtures' people, a guild role for `dba`,
/// an audit channel for staging and a `[discord]` section pointing at `peer`.
fn configure(text: String, peer: &DiscordPeer, mode: &str) -> String {
    // Outside a DemoEnv nothing may touch a stack someone runs with the
    // shipped names: point those environments at projects that do not exist.
    let text = text
        .replace(
            "compose_project = \"deckhand-demo\"",
            "compose_project = \"deckhand-discord-test-absent\"",
        )
        .replace(
            "compose_project = \"deckhand-prod\"",
            "compose_project = \"deckhand-discord-test-absent-prod\"",
        )
        .replace(
            "discord = \"100000000000000001\"",
            &format!("discord = \"{}\"", ALICE.id),
        )
        .replace(
            "discord = \"100000000000000002\"",
            &format!("discord = \"{}\"", BOB.id),
        )
        .replace(
            "discord = \"100000000000000003\"",
            &format!("discord = \"{}\"", CAROL.id),
        )
        .replace(
            "[roles.dba]\n",
            &format!("[roles.dba]\ndiscord_roles = [\"{DBA_ROLE}\"]\n"),
        );
    format!(
        "{text}\n[environments.staging.audit]\ndiscord = \"{AUDIT_CHANNEL}\"\n\n\
         [discord]\nmode = \"{mode}\"\ntoken_env = \"{TOKEN_ENV}\"\n\
         application_id = \"{DISCORD_APPLICATION_ID}\"\npublic_key = \"{DISCORD_PUBLIC_KEY_HEX}\"\n\
         guild_ids = [\"{DISCORD_GUILD_ID}\"]\napi_url = \"{}\"\n",
        peer.base_url()
    )
}

/// Deckhand with its Discord adapter running in-process, and its listener
/// (health routes plus the interactions endpoint) on `127.0.0.1:0`.
struct Bot {
    app: Arc<App>,
    listener_url: String,
}

impl Bot {
    async fn start(workspace: &Workspace) -> Bot {
        Bot::start_with(
            workspace,
            Options::with_token(Secret::new(DISCORD_BOT_TOKEN)),
        )
        .await
    }

    async fn start_with(workspace: &Workspace, options: Options) -> Bot {
        let app = workspace.app().await;
        flow::start_background(&app).await;
        let discord = discord::start(&app, options)
            .await
            .expect("the Discord adapter starts");
        let router = deckhand::http::router(Arc::clone(&app)).merge(discord::routes(&discord));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the listener");
        let listener_url = format!(
            "http://{}",
            listener.local_addr().expect("listener address")
        );
        tokio::spawn(deckhand::http::serve(
            listener,
            router,
            std::future::pending::<()>(),
        ));
        Bot { app, listener_url }
    }

    fn interactions_url(&self) -> String {
        format!("{}{}", self.listener_url, discord::INTERACTIONS_PATH)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh snowflake-shaped id.
fn next_id() -> String {
    (1_576_175_826_632_835_072u64 + NEXT_ID.fetch_add(1, Ordering::Relaxed)).to_string()
}

/// A slash command interaction by `person`, from the `/deploy` fixture.
fn command(name: &str, options: &[(&str, Value)], person: &Person) -> Value {
    let mut interaction = fixture_json("discord/interaction_command_deploy.json");
    interaction["id"] = json!(next_id());
    interaction["token"] = json!(format!("interaction-token-{}", next_id()));
    interaction["data"]["name"] = json!(name);
    interaction["data"]["options"] = options
        .iter()
        .map(|(option, value)| {
            let kind = match value {
                Value::Bool(_) => 5,
                Value::Number(_) => 4,
                _ => 3,
            };
            json!({ "type": kind, "name": option, "value": value })
        })
        .collect();
    set_member(&mut interaction["member"], person);
    interaction
}

/// A button press by `person` on `message_id`, from the button fixture.
fn button(custom_id: &str, message_id: &str, person: &Person) -> Value {
    let mut interaction = fixture_json("discord/interaction_component_button_approve.json");
    interaction["id"] = json!(next_id());
    interaction["token"] = json!(format!("button-token-{}", next_id()));
    interaction["data"]["custom_id"] = json!(custom_id);
    interaction["message"]["id"] = json!(message_id);
    set_member(&mut interaction["member"], person);
    interaction
}

/// A reaction by `person`, from the gateway fixture.
fn reaction(message_id: &str, emoji: &str, person: &Person) -> Value {
    let mut event = fixture_json("discord/gateway_message_reaction_add.json")["d"].clone();
    event["user_id"] = json!(person.id);
    event["message_id"] = json!(message_id);
    event["emoji"] = json!({ "id": null, "name": emoji });
    set_member(&mut event["member"], person);
    event
}

/// A reaction's removal (Discord sends no member with it).
fn reaction_removal(message_id: &str, emoji: &str, person: &Person) -> Value {
    json!({
        "user_id": person.id,
        "channel_id": DISCORD_CHANNEL_ID.to_string(),
        "message_id": message_id,
        "guild_id": DISCORD_GUILD_ID.to_string(),
        "emoji": { "id": null, "name": emoji },
        "burst": false,
        "type": 0,
    })
}

fn set_member(member: &mut Value, person: &Person) {
    member["user"]["id"] = json!(person.id);
    member["user"]["username"] = json!(person.name);
    member["user"]["global_name"] = json!(person.name);
    member["roles"] = json!(person.roles);
}

fn token_of(interaction: &Value) -> String {
    interaction["token"]
        .as_str()
        .expect("interactions have a token")
        .to_string()
}

/// POSTs `body` to the endpoint, signed with the test key unless `signature` is given.
async fn post_interaction(url: &str, body: &[u8], signature: Option<&str>) -> reqwest::Response {
    let timestamp = now_unix().to_string();
    let signed = sign_interaction(DISCORD_PRIVATE_SEED_HEX, &timestamp, body);
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("X-Signature-Ed25519", signature.unwrap_or(&signed))
        .header("X-Signature-Timestamp", timestamp)
        .body(body.to_vec())
        .send()
        .await
        .expect("the endpoint answers")
}

fn embed(version: &Value) -> &Value {
    &version["embeds"][0]
}

/// The status line (first line of the embed's description) of each
/// version after the deferred one, with repeats removed.
fn statuses(message: &DiscordMessage) -> Vec<String> {
    let mut statuses: Vec<String> = Vec::new();
    for version in message.history.iter().skip(1) {
        let status = embed(version)["description"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        if statuses.last() != Some(&status) {
            statuses.push(status);
        }
    }
    statuses
}

fn description(version: &Value) -> String {
    embed(version)["description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the interaction's original response reads `prefix…`.
async fn wait_for_status(
    peer: &DiscordPeer,
    token: &str,
    prefix: &str,
    deadline: Duration,
) -> DiscordMessage {
    wait_for(
        &format!("the original response to read \"{prefix}…\""),
        deadline,
        || {
            peer.original_response(token)
                .filter(|message| description(message.latest()).starts_with(prefix))
        },
    )
    .await
}

async fn op_id_of_message(app: &App, message_id: &str) -> i64 {
    // The message is remembered right after Discord answers the edit.
    crate::support::docker::eventually(
        "the message to be remembered as the operation's",
        DEADLINE,
        || async {
            app.store
                .operation_of_message(
                    Platform::Discord,
                    &DISCORD_CHANNEL_ID.to_string(),
                    message_id,
                )
                .await
                .expect("the store answers")
        },
    )
    .await
}

async fn state_of(app: &App, op_id: i64) -> OpState {
    app.store
        .operation(op_id)
        .await
        .expect("the store answers")
        .expect("the operation exists")
        .state
}

/// Checks an operation's message history: the deferred response first,
/// then queued, running steps in order, and `last`.
fn check_lifecycle(message: &DiscordMessage, last: &str) {
    assert_eq!(
        message.history[0]["content"], "",
        "the deferred response comes first"
    );
    let statuses = statuses(message);
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("queued"),
        "{statuses:#?}"
    );
    assert!(
        statuses
            .last()
            .is_some_and(|status| status.starts_with(last)),
        "{statuses:#?}"
    );
    let steps: Vec<usize> = statuses
        .iter()
        .filter_map(|status| status.strip_prefix("running step "))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        steps.windows(2).all(|pair| pair[0] <= pair[1]),
        "steps move forward: {statuses:#?}"
    );
}

// End to end with real Docker.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_from_a_gateway_interaction_edits_the_original_response_until_success() {
    let peer = DiscordPeer::start().await;
    let demo = DemoEnv::start_with("discord_gateway_deploy", false, |text| {
        configure(text, &peer, "gateway")
    })
    .await;
    let bot = Bot::start(&demo.workspace).await;
    let identify = peer.wait_for_identify(1, DEADLINE).await;
    assert_eq!(
        identify["intents"],
        json!(1 | (1 << 10)),
        "GUILDS | GUILD_MESSAGE_REACTIONS and no more"
    );
    peer.wait_for_session(DEADLINE).await;

    let interaction = command(
        "deploy",
        &[("env", json!("staging")), ("ref", json!("develop"))],
        &ALICE,
    );
    let token = token_of(&interaction);
    peer.dispatch("INTERACTION_CREATE", interaction);
    let message = wait_for_status(&peer, &token, "succeeded", DOCKER_DEADLINE).await;
    check_lifecycle(&message, "succeeded");
    assert_eq!(peer.interaction_callbacks()[0].body, json!({ "type": 5 }));
    let last = message.latest();
    assert!(
        embed(last)["title"]
            .as_str()
            .is_some_and(|title| title.starts_with("Deploy #")
                && title.ends_with("· staging ← develop · @alice")),
        "{last:#}"
    );
    assert_eq!(embed(last)["color"], json!(0x57F287));
    assert!(description(last).contains("✅ pull ("), "{last:#}");
    assert_eq!(last["components"], json!([]));

    let op_id = op_id_of_message(&bot.app, &message.id).await;
    assert_eq!(state_of(&bot.app, op_id).await, OpState::Succeeded);
    let followups = peer.followups(&token);
    assert!(
        followups
            .iter()
            .any(|followup| followup.content().starts_with("**migrate")),
        "step output follows up the interaction: {:#?}",
        followups
            .iter()
            .map(DiscordMessage::content)
            .collect::<Vec<_>>()
    );
    let health = deckhand::probe::probe(
        &format!("{}/health", demo.staging_url(13000)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        health.body_excerpt.contains("develop"),
        "the backend runs develop: {}",
        health.body_excerpt
    );
    let audit: Vec<String> = wait_for(
        "the audit channel to show the finished deploy",
        DEADLINE,
        || {
            let lines: Vec<String> = peer
                .messages()
                .iter()
                .filter(|message| message.channel_id == AUDIT_CHANNEL)
                .map(|message| message.content().to_string())
                .collect();
            lines
                .iter()
                .any(|line| line.contains("succeeded"))
                .then_some(lines)
        },
    )
    .await;
    assert!(
        audit.iter().any(|line| line.contains("requested")),
        "{audit:#?}"
    );
    assert!(
        audit.iter().all(|line| line.contains(&format!("#{op_id}"))),
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_through_the_signed_http_endpoint_edits_the_original_response_until_success() {
    let peer = DiscordPeer::start().await;
    let demo = DemoEnv::start_with("discord_http_deploy", false, |text| {
        configure(text, &peer, "http")
    })
    .await;
    let bot = Bot::start(&demo.workspace).await;
    let interaction = command(
        "deploy",
        &[("env", json!("staging")), ("ref", json!("develop"))],
        &ALICE,
    );
    let token = token_of(&interaction);
    let body = serde_json::to_vec(&interaction).expect("JSON");
    let response = post_interaction(&bot.interactions_url(), &body, None).await;
    assert_eq!(
        response.status().as_u16(),
        202,
        "answered at once; the response goes to the callback"
    );

    let message = wait_for_status(&peer, &token, "succeeded", DOCKER_DEADLINE).await;
    check_lifecycle(&message, "succeeded");
    let callbacks = peer.interaction_callbacks();
    assert_eq!(callbacks.len(), 1);
    assert_eq!(
        (callbacks[0].token.as_str(), &callbacks[0].body),
        (token.as_str(), &json!({ "type": 5 }))
    );
    assert_eq!(
        peer.connection_count(),
        0,
        "http mode opens no gateway connection"
    );
    let op_id = op_id_of_message(&bot.app, &message.id).await;
    assert_eq!(state_of(&bot.app, op_id).await, OpState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_is_approved_by_a_reaction_from_an_approver_and_not_from_the_requester() {
    let peer = DiscordPeer::start().await;
    // Staging rollbacks need one deployer's approval in this test.
    let commands_copy = crate::support::workspace::CommandsCopy::edited("rollback.toml", |text| {
        text.replace(
            "[policy.default]\nrequest = [\"developers\", \"deployers\"]\n",
            "[policy.default]\nrequest = [\"developers\", \"deployers\"]\napprovals = 1\napprovers = [\"deployers\"]\n",
        )
    });
    let shipped_commands = repo_root().join("commands").display().to_string();
    let copied_commands = commands_copy.path().display().to_string();
    let demo = DemoEnv::start_with("discord_reaction_rollback", false, |text| {
        configure(
            text.replace(&shipped_commands, &copied_commands),
            &peer,
            "gateway",
        )
    })
    .await;
    let bot = Bot::start(&demo.workspace).await;
    peer.wait_for_session(DEADLINE).await;
    let deploy = flow::handle_request(
        &bot.app,
        Request {
            platform: Platform::Console,
            user_id: "alice".to_string(),
            channel: "console".to_string(),
            text: "/deploy staging develop".to_string(),
            delivery_id: None,
            groups: Vec::new(),
        },
    )
    .await;
    let Answer::Accepted { op_id: deploy_id } = deploy else {
        panic!("the deploy is accepted: {deploy:?}");
    };
    crate::support::docker::eventually("the deploy", DOCKER_DEADLINE, || {
        let app = Arc::clone(&bot.app);
        async move { (state_of(&app, deploy_id).await == OpState::Succeeded).then_some(()) }
    })
    .await;

    let interaction = command(
        "rollback",
        &[("env", json!("staging")), ("service", json!("backend"))],
        &ALICE,
    );
    let token = token_of(&interaction);
    peer.dispatch("INTERACTION_CREATE", interaction);
    let pending = wait_for_status(&peer, &token, "awaiting approval", DEADLINE).await;
    let buttons = &pending.latest()["components"][0]["components"];
    assert_eq!(buttons[0]["label"], "Approve");
    let op_id = op_id_of_message(&bot.app, &pending.id).await;
    wait_for("Deckhand's ✅ and ❌ under the request", DEADLINE, || {
        peer.message(&pending.id)
            .filter(|message| message.reactions == ["✅", "❌"])
    })
    .await;

    peer.dispatch("MESSAGE_REACTION_ADD", reaction(&pending.id, "✅", &ALICE));
    let refusal = wait_for("the refusal addressed to the requester", DEADLINE, || {
        peer.messages().into_iter().find(|message| {
            message.channel_id == DISCORD_CHANNEL_ID.to_string()
                && message
                    .content()
                    .starts_with(&format!("<@{}> ⛔", ALICE.id))
        })
    })
    .await;
    assert!(
        refusal.content().contains("request"),
        "{}",
        refusal.content()
    );
    assert_eq!(
        refusal.latest()["allowed_mentions"],
        json!({ "parse": [], "users": [ALICE.id] })
    );
    assert_eq!(
        state_of(&bot.app, op_id).await,
        OpState::Pending,
        "the requester's ✅ does not count"
    );

    peer.dispatch("MESSAGE_REACTION_ADD", reaction(&pending.id, "✅", &BOB));
    let message = wait_for_status(&peer, &token, "succeeded", DOCKER_DEADLINE).await;
    let last = message.latest();
    assert_eq!(last["components"], json!([]), "no buttons once decided");
    assert!(
        embed(last)["fields"].as_array().is_some_and(|fields| fields
            .iter()
            .any(|field| field["name"] == "approved by" && field["value"] == "@bob")),
        "{last:#}"
    );
    assert_eq!(state_of(&bot.app, op_id).await, OpState::Succeeded);
    let health = deckhand::probe::probe(
        &format!("{}/health", demo.staging_url(13000)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        !health.body_excerpt.contains("develop"),
        "develop was rolled back: {}",
        health.body_excerpt
    );
}

// Without Docker: approvals, the endpoint, registration, limits.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_rules_hold_for_buttons_reactions_and_guild_roles() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "gateway"));
    let bot = Bot::start(&workspace).await;
    peer.wait_for_session(DEADLINE).await;
    // /rollback-db needs two approvals from dba; alice (a deployer) asks.
    let interaction = command("rollback-db", &[("env", json!("staging"))], &ALICE);
    let token = token_of(&interaction);
    peer.dispatch("INTERACTION_CREATE", interaction);
    let pending = wait_for_status(&peer, &token, "awaiting approval: 0 of 2", DEADLINE).await;
    let op_id = op_id_of_message(&bot.app, &pending.id).await;
    let approve = pending.latest()["components"][0]["components"][0]["custom_id"]
        .as_str()
        .expect("an Approve button")
        .to_string();
    assert!(
        approve.starts_with(&format!("approve:{op_id}:")),
        "{approve}"
    );
    let reject = format!("reject:{op_id}");

    // The requester's button press is refused, privately.
    let press = button(&approve, &pending.id, &ALICE);
    peer.dispatch("INTERACTION_CREATE", press.clone());
    let answer = wait_for("the answer to alice's press", DEADLINE, || {
        peer.interaction_callbacks()
            .into_iter()
            .find(|callback| callback.token == token_of(&press))
    })
    .await;
    assert_eq!(answer.body["type"], 4);
    assert_eq!(answer.body["data"]["flags"], 64, "only alice sees it");
    assert!(
        answer.body["data"]["content"]
            .as_str()
            .is_some_and(|text| text.starts_with("⛔")),
        "{:#}",
        answer.body
    );

    // carol approves with ✅, then withdraws it by removing the reaction.
    peer.dispatch("MESSAGE_REACTION_ADD", reaction(&pending.id, "✅", &CAROL));
    wait_for_status(&peer, &token, "awaiting approval: 1 of 2", DEADLINE).await;
    peer.dispatch(
        "MESSAGE_REACTION_REMOVE",
        reaction_removal(&pending.id, "✅", &CAROL),
    );
    wait_for_status(&peer, &token, "awaiting approval: 0 of 2", DEADLINE).await;

    // ✅ on a message someone else wrote is ignored, with no answer.
    let chatter = peer.seed_message(DISCORD_CHANNEL_ID, "lunch?");
    let mut on_chatter = reaction(&chatter, "✅", &CAROL);
    on_chatter["message_author_id"] = json!(ALICE.id);
    peer.dispatch("MESSAGE_REACTION_ADD", on_chatter);

    // bob holds no dba role: his ✅ is refused, in a reply to him.
    peer.dispatch("MESSAGE_REACTION_ADD", reaction(&pending.id, "✅", &BOB));
    let wrong_role = wait_for("the refusal addressed to bob", DEADLINE, || {
        peer.messages()
            .into_iter()
            .find(|message| message.content().starts_with(&format!("<@{}> ⛔", BOB.id)))
    })
    .await;
    assert!(
        wrong_role.content().contains("dba"),
        "{}",
        wrong_role.content()
    );
    assert_eq!(
        wrong_role.latest()["message_reference"]["message_id"],
        json!(pending.id)
    );

    // ✅ on one of Deckhand's messages that is no approval request says so.
    let other = peer.seed_message(DISCORD_CHANNEL_ID, "an audit line");
    peer.dispatch("MESSAGE_REACTION_ADD", reaction(&other, "✅", &ERIN));
    let not_a_request = wait_for("the answer to erin", DEADLINE, || {
        peer.messages()
            .into_iter()
            .find(|message| message.content().starts_with(&format!("<@{}> ⛔", ERIN.id)))
    })
    .await;
    assert!(
        not_a_request.content().contains("not an approval request"),
        "{}",
        not_a_request.content()
    );

    // Someone config does not list, holding the guild role mapped to dba:
    // config cannot tell whether that account is alice's own, so the press
    // is refused and nothing is counted.
    let frank_press = button(&approve, &pending.id, &GUILD_DBA);
    peer.dispatch("INTERACTION_CREATE", frank_press.clone());
    let answer = wait_for("the answer to frank's press", DEADLINE, || {
        peer.interaction_callbacks()
            .into_iter()
            .find(|callback| callback.token == token_of(&frank_press))
    })
    .await;
    assert_eq!(answer.body["data"]["flags"], 64);
    assert!(
        answer.body["data"]["content"].as_str().is_some_and(|text| text.contains(
            "you hold your role only through a discord group and config does not list your discord account, so you may request but not approve"
        )),
        "{:#}",
        answer.body
    );
    assert!(
        bot.app
            .store
            .approvals(op_id)
            .await
            .expect("the store answers")
            .iter()
            .all(|approval| approval.withdrawn),
        "nothing was counted"
    );

    // A rejection by an approver ends it; the buttons go.
    let reject_press = button(&reject, &pending.id, &CAROL);
    peer.dispatch("INTERACTION_CREATE", reject_press);
    let rejected = wait_for_status(&peer, &token, "rejected by carol", DEADLINE).await;
    assert_eq!(rejected.latest()["components"], json!([]));
    assert_eq!(state_of(&bot.app, op_id).await, OpState::Rejected);
    let answered_chatter = peer
        .messages()
        .iter()
        .any(|message| message.content().contains(&format!("<@{}>", CAROL.id)));
    assert!(
        !answered_chatter,
        "reactions on other people's messages get no answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_shows_it_and_refuses_late_approvals() {
    let peer = DiscordPeer::start().await;
    let commands_copy =
        crate::support::workspace::CommandsCopy::edited("rollback-db.toml", |text| {
            text.replace("expires = \"1h\"", "expires = \"2s\"")
        });
    let shipped_commands = repo_root().join("commands").display().to_string();
    let copied_commands = commands_copy.path().display().to_string();
    let workspace = Workspace::with_config(|text| {
        configure(
            text.replace(&shipped_commands, &copied_commands),
            &peer,
            "gateway",
        )
    });
    let bot = Bot::start(&workspace).await;
    peer.wait_for_session(DEADLINE).await;
    let interaction = command("rollback-db", &[("env", json!("staging"))], &ALICE);
    let token = token_of(&interaction);
    peer.dispatch("INTERACTION_CREATE", interaction);
    let pending = wait_for_status(&peer, &token, "awaiting approval", DEADLINE).await;
    let op_id = op_id_of_message(&bot.app, &pending.id).await;
    let expired = wait_for_status(&peer, &token, "expired", DEADLINE).await;
    assert_eq!(
        expired.latest()["components"],
        json!([]),
        "no buttons on an expired request"
    );
    assert_eq!(state_of(&bot.app, op_id).await, OpState::Expired);
    peer.dispatch("MESSAGE_REACTION_ADD", reaction(&pending.id, "✅", &CAROL));
    let late = wait_for("the refusal of the late approval", DEADLINE, || {
        peer.messages().into_iter().find(|message| {
            message
                .content()
                .starts_with(&format!("<@{}> ⛔", CAROL.id))
        })
    })
    .await;
    assert!(late.content().contains("expired"), "{}", late.content());
    assert_eq!(state_of(&bot.app, op_id).await, OpState::Expired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_resume_a_lost_reaction_counts_once_and_a_replayed_interaction_runs_once() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "gateway"));
    let bot = Bot::start(&workspace).await;
    peer.wait_for_session(DEADLINE).await;
    wait_for("the connection to count as up", DEADLINE, || {
        bot.app
            .connections()
            .contains(&(Platform::Discord, true))
            .then_some(())
    })
    .await;
    let interaction = command("rollback-db", &[("env", json!("staging"))], &ALICE);
    let token = token_of(&interaction);
    peer.dispatch("INTERACTION_CREATE", interaction.clone());
    let pending = wait_for_status(&peer, &token, "awaiting approval: 0 of 2", DEADLINE).await;
    op_id_of_message(&bot.app, &pending.id).await;

    // A reaction lost on the wire comes back with the RESUME after op 7.
    peer.dispatch_lost("MESSAGE_REACTION_ADD", reaction(&pending.id, "✅", &CAROL));
    peer.send_reconnect();
    let resume = peer.wait_for_resume(1, DEADLINE).await;
    assert_eq!(
        resume["seq"],
        json!(2),
        "resumed after the interaction it saw"
    );
    wait_for_status(&peer, &token, "awaiting approval: 1 of 2", DEADLINE).await;

    // After a dropped socket the session resumes again; the same
    // interaction delivered again (a replay) creates nothing, and a
    // rejection through the resumed session still counts.
    peer.drop_socket();
    peer.wait_for_resume(2, DEADLINE).await;
    peer.dispatch("INTERACTION_CREATE", interaction);
    peer.dispatch(
        "MESSAGE_REACTION_ADD",
        reaction(&pending.id, "❌", &GUILD_DBA),
    );
    wait_for_status(&peer, &token, "rejected by discord:", DEADLINE).await;
    let operations = bot
        .app
        .store
        .recent_operations(None, 10)
        .await
        .expect("the store answers");
    assert_eq!(
        operations.len(),
        1,
        "the replayed interaction created nothing: {operations:?}"
    );
    let callbacks: Vec<_> = peer
        .interaction_callbacks()
        .into_iter()
        .filter(|callback| callback.token == token)
        .collect();
    assert_eq!(callbacks.len(), 1, "and was not answered twice");
    assert_eq!(
        peer.identifies().len(),
        1,
        "resumed, never identified again"
    );
}

#[tokio::test]
async fn the_endpoint_answers_ping_and_refuses_bad_signatures_without_changing_anything() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "http"));
    let bot = Bot::start(&workspace).await;
    let url = bot.interactions_url();

    let ping = serde_json::to_vec(&fixture_json("discord/interaction_ping.json")).expect("JSON");
    let pong = post_interaction(&url, &ping, None).await;
    assert_eq!(pong.status().as_u16(), 200);
    assert_eq!(
        pong.json::<Value>().await.expect("JSON"),
        json!({ "type": 1 })
    );

    let interaction = command(
        "lock",
        &[("env", json!("staging")), ("reason", json!("freeze"))],
        &ALICE,
    );
    let body = serde_json::to_vec(&interaction).expect("JSON");
    let timestamp = now_unix().to_string();
    let for_other_body = sign_interaction(DISCORD_PRIVATE_SEED_HEX, &timestamp, b"{}");
    let forged = [
        Some("0".repeat(128)),
        Some("not hex".to_string()),
        Some(for_other_body),
    ];
    for signature in forged {
        let response = post_interaction(&url, &body, signature.as_deref()).await;
        assert_eq!(response.status().as_u16(), 401, "signature {signature:?}");
    }
    let unsigned = reqwest::Client::new()
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .expect("the endpoint answers");
    assert_eq!(unsigned.status().as_u16(), 401);

    assert!(
        peer.interaction_callbacks().is_empty(),
        "no interaction was answered"
    );
    let operations = bot
        .app
        .store
        .recent_operations(None, 10)
        .await
        .expect("the store answers");
    assert!(
        operations.is_empty(),
        "no operation was created: {operations:?}"
    );
    let audit = bot
        .app
        .store
        .audit_entries(None, 10)
        .await
        .expect("the store answers");
    assert!(audit.is_empty(), "nothing was audited: {audit:?}");
    assert!(
        bot.app
            .store
            .hold("staging", bot.app.now())
            .await
            .expect("the store answers")
            .is_none()
    );
}

#[tokio::test]
async fn bad_input_gets_a_private_answer_with_usage() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "http"));
    let bot = Bot::start(&workspace).await;
    let url = bot.interactions_url();
    let cases = [
        (
            command(
                "deploy",
                &[("env", json!("staging")), ("ref", json!("bad;ref"))],
                &ALICE,
            ),
            "/deploy refused",
        ),
        (
            command("deploy", &[("environment", json!("staging"))], &ALICE),
            "/deploy refused",
        ),
        (
            command(
                "deploy",
                &[("env", json!("production")), ("ref", json!("v2"))],
                &CAROL,
            ),
            "/deploy refused",
        ),
    ];
    for (interaction, title) in cases {
        let body = serde_json::to_vec(&interaction).expect("JSON");
        assert_eq!(
            post_interaction(&url, &body, None).await.status().as_u16(),
            202
        );
        let token = token_of(&interaction);
        let callback = wait_for("the private answer", DEADLINE, || {
            peer.interaction_callbacks()
                .into_iter()
                .find(|callback| callback.token == token)
        })
        .await;
        assert_eq!(callback.body["type"], 4, "{:#}", callback.body);
        assert_eq!(
            callback.body["data"]["flags"], 64,
            "only the requester sees it"
        );
        let answer = &callback.body["data"]["embeds"][0];
        assert_eq!(answer["title"], title, "{answer:#}");
        assert_eq!(answer["color"], json!(0xED4245));
    }
    let unknown = &peer.interaction_callbacks()[1].body["data"]["embeds"][0];
    assert!(
        format!("{unknown:#}").contains("usage: /deploy"),
        "an unknown option is answered with the usage: {unknown:#}"
    );
    assert!(
        bot.app
            .store
            .recent_operations(None, 10)
            .await
            .expect("the store answers")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_edit_does_not_lose_the_final_state() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "gateway"));
    let _bot = Bot::start(&workspace).await;
    peer.wait_for_session(DEADLINE).await;
    peer.script(
        "PATCH",
        "/messages/@original",
        2,
        DiscordReply::RateLimited {
            retry_after_secs: 1.5,
            global: false,
        },
    );
    let interaction = command(
        "lock",
        &[
            ("env", json!("staging")),
            ("reason", json!("release freeze")),
        ],
        &ALICE,
    );
    let token = token_of(&interaction);
    peer.dispatch("INTERACTION_CREATE", interaction);
    let message = wait_for_status(&peer, &token, "succeeded", DEADLINE).await;
    let edits = peer.requests_matching("PATCH", &format!("/{token}/messages/@original"));
    let statuses: Vec<u16> = edits.iter().map(|edit| edit.status).collect();
    assert_eq!(&statuses[..2], [429, 429], "{statuses:?}");
    assert!(
        statuses[2..].iter().all(|status| *status == 200),
        "{statuses:?}"
    );
    assert!(
        embed(message.latest())["title"]
            .as_str()
            .is_some_and(|title| title.contains("staging")),
        "{:#}",
        message.latest()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_moves_to_a_channel_message_before_its_interaction_token_expires() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "gateway"));
    let options = Options {
        interaction_token_use: Duration::from_secs(2),
        ..Options::with_token(Secret::new(DISCORD_BOT_TOKEN))
    };
    let bot = Bot::start_with(&workspace, options).await;
    peer.wait_for_session(DEADLINE).await;
    let interaction = command("rollback-db", &[("env", json!("staging"))], &ALICE);
    let token = token_of(&interaction);
    peer.dispatch("INTERACTION_CREATE", interaction);
    let original = wait_for_status(&peer, &token, "awaiting approval", DEADLINE).await;
    let op_id = op_id_of_message(&bot.app, &original.id).await;

    let pointer = wait_for_status(&peer, &token, "continued in a channel message", DEADLINE).await;
    assert_eq!(
        pointer.latest()["components"],
        json!([]),
        "the old buttons go"
    );
    let (channel, moved_id) = bot
        .app
        .store
        .message_of(op_id, Platform::Discord)
        .await
        .expect("the store answers")
        .expect("a message is remembered");
    assert_eq!(channel, DISCORD_CHANNEL_ID.to_string());
    assert_ne!(moved_id, original.id);
    assert!(
        description(pointer.latest()).contains(&moved_id),
        "the original links to it"
    );
    let moved = peer.message(&moved_id).expect("the channel message exists");
    assert!(description(moved.latest()).starts_with("awaiting approval: 0 of 2"));

    peer.dispatch("MESSAGE_REACTION_ADD", reaction(&moved_id, "✅", &CAROL));
    wait_for(
        "the channel message to show carol's approval",
        DEADLINE,
        || {
            peer.message(&moved_id).filter(|message| {
                description(message.latest()).starts_with("awaiting approval: 1 of 2")
            })
        },
    )
    .await;
    let edits_after_expiry = peer
        .requests_matching("PATCH", &format!("/{token}/messages/@original"))
        .into_iter()
        .filter(|request| request.body.to_string().contains("1 of 2"))
        .count();
    assert_eq!(
        edits_after_expiry, 0,
        "nothing more goes to the expired token"
    );
}

#[tokio::test]
async fn commands_are_registered_as_declared_and_only_when_they_changed() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "http"));
    let first = Bot::start(&workspace).await;
    let declared = commands::declarations(&first.app.catalog, &first.app.config);
    let registered = peer.guild_commands(DISCORD_GUILD_ID);
    assert_eq!(registered.len(), declared.len());
    for declaration in &declared {
        let sent = declaration.to_json();
        let stored = registered
            .iter()
            .find(|command| command["name"] == sent["name"])
            .unwrap_or_else(|| panic!("/{} is registered", declaration.name));
        for field in ["description", "options", "type"] {
            assert_eq!(stored[field], sent[field], "/{} {field}", declaration.name);
        }
        assert_eq!(&CommandDeclaration::from_json(stored), declaration);
    }
    let deploy = registered
        .iter()
        .find(|command| command["name"] == "deploy")
        .expect("deploy");
    assert_eq!(
        deploy["options"][0]["choices"],
        json!([
            { "name": "production", "value": "production" },
            { "name": "staging", "value": "staging" },
        ])
    );
    assert_eq!(peer.requests_matching("PUT", "/commands").len(), 1);

    let _second = Bot::start(&workspace).await;
    assert_eq!(
        peer.requests_matching("GET", "/commands").len(),
        2,
        "the second start compares"
    );
    assert_eq!(
        peer.requests_matching("PUT", "/commands").len(),
        1,
        "and does not register again"
    );

    let without_guilds = Workspace::with_config(|text| {
        configure(text, &peer, "http")
            .replace(&format!("guild_ids = [\"{DISCORD_GUILD_ID}\"]\n"), "")
    });
    let _global = Bot::start(&without_guilds).await;
    let global = peer.global_commands();
    assert_eq!(
        global.len(),
        declared.len(),
        "no guild configured: registered globally"
    );
    assert!(commands::is_registered(&declared, &global));
}

#[tokio::test]
async fn serve_connects_the_gateway_registers_commands_and_mounts_the_endpoint() {
    let peer = DiscordPeer::start().await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let workspace = Workspace::with_config(|text| {
        configure(text, &peer, "gateway").replace(
            "listen = \"127.0.0.1:8088\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
    });
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["serve", "--config"])
        .arg(workspace.config_path())
        .env(TOKEN_ENV, DISCORD_BOT_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    let identify = peer.wait_for_identify(1, DEADLINE).await;
    assert_eq!(identify["intents"], json!(1025));
    assert_eq!(
        identify["token"]
            .as_str()
            .map(|token| token.trim_start_matches("Bot ")),
        Some(DISCORD_BOT_TOKEN)
    );
    peer.wait_for_session(DEADLINE).await;
    assert!(
        !peer.guild_commands(DISCORD_GUILD_ID).is_empty(),
        "commands are registered"
    );

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}{}", discord::INTERACTIONS_PATH);
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(response) = client.post(&url).body("{}").send().await {
            answered = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answered,
        Some(401),
        "the endpoint is mounted and refuses unsigned requests"
    );
    let ready = wait_for_ready_body(&client, port).await;
    assert!(ready.contains("\"chat:discord\":\"ok\""), "{ready}");

    let pid = child.id().expect("serve runs").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("serve stops")
        .expect("serve exits");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use tokio::io::AsyncReadExt as _;
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    assert!(
        exit.success(),
        "serve exits 0 on SIGTERM: {exit:?}\n{stderr}"
    );
    assert!(
        !stderr.contains(DISCORD_BOT_TOKEN),
        "the token never reaches the log"
    );
    let _ = std::io::stderr().flush();
}

/// `/health/ready`'s body once the Discord connection reports in.
async fn wait_for_ready_body(client: &reqwest::Client, port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/health/ready");
    for _ in 0..100 {
        if let Ok(response) = client.get(&url).send().await
            && let Ok(body) = response.text().await
            && body.contains("chat:discord")
        {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/health/ready never listed chat:discord");
}

/// POSTs `body` signed with the test key at `timestamp` (unix seconds).
async fn post_signed_at(url: &str, body: &[u8], timestamp: i64) -> reqwest::Response {
    let timestamp = timestamp.to_string();
    let signature = sign_interaction(DISCORD_PRIVATE_SEED_HEX, &timestamp, body);
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("X-Signature-Ed25519", signature)
        .header("X-Signature-Timestamp", timestamp)
        .body(body.to_vec())
        .send()
        .await
        .expect("the endpoint answers")
}

#[tokio::test]
async fn the_endpoint_refuses_genuine_interactions_older_or_newer_than_five_minutes() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "http"));
    let bot = Bot::start(&workspace).await;
    let url = bot.interactions_url();
    let ping = serde_json::to_vec(&fixture_json("discord/interaction_ping.json")).expect("JSON");
    let now = now_unix();
    for (timestamp, status) in [
        // Margins of a minute: the endpoint reads its own clock later.
        (now - 365 * 24 * 3600, 401),
        (now - 360, 401),
        (now + 360, 401),
        (now + 365 * 24 * 3600, 401),
        (now - 240, 200),
        (now + 240, 200),
    ] {
        let response = post_signed_at(&url, &ping, timestamp).await;
        assert_eq!(
            response.status().as_u16(),
            status,
            "a PING signed {} s from now",
            timestamp - now
        );
    }
    let lock = command(
        "lock",
        &[("env", json!("staging")), ("reason", json!("freeze"))],
        &ALICE,
    );
    let body = serde_json::to_vec(&lock).expect("JSON");
    let stale = post_signed_at(&url, &body, now - 3600).await;
    assert_eq!(stale.status().as_u16(), 401);
    assert!(
        peer.interaction_callbacks().is_empty(),
        "nothing was answered"
    );
    let operations = bot
        .app
        .store
        .recent_operations(None, 10)
        .await
        .expect("the store answers");
    assert!(operations.is_empty(), "nothing happened: {operations:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_approve_press_changes_nothing_after_its_author_withdrew() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "http"));
    let bot = Bot::start(&workspace).await;
    let url = bot.interactions_url();
    let request = command("rollback-db", &[("env", json!("staging"))], &ALICE);
    let token = token_of(&request);
    let body = serde_json::to_vec(&request).expect("JSON");
    assert_eq!(
        post_interaction(&url, &body, None).await.status().as_u16(),
        202
    );
    let pending = wait_for_status(&peer, &token, "awaiting approval: 0 of 2", DEADLINE).await;
    let op_id = op_id_of_message(&bot.app, &pending.id).await;
    let approve = pending.latest()["components"][0]["components"][0]["custom_id"]
        .as_str()
        .expect("an Approve button")
        .to_string();

    // carol presses Approve; someone captures the signed delivery.
    let press = serde_json::to_vec(&button(&approve, &pending.id, &CAROL)).expect("JSON");
    let pressed_at = now_unix();
    assert_eq!(
        post_signed_at(&url, &press, pressed_at)
            .await
            .status()
            .as_u16(),
        202
    );
    wait_for_status(&peer, &token, "awaiting approval: 1 of 2", DEADLINE).await;

    // carol withdraws her approval.
    let carol = flow::Sender::identify(
        &bot.app,
        Platform::Discord,
        CAROL.id,
        &DISCORD_CHANNEL_ID.to_string(),
    );
    let withdrawn = flow::withdraw(&bot.app, &carol, op_id).await;
    assert!(withdrawn.applied, "{}", withdrawn.text);
    wait_for_status(&peer, &token, "awaiting approval: 0 of 2", DEADLINE).await;

    // The captured press, replayed within the window, is taken as a
    // delivery but changes nothing and gets no answer.
    let n_callbacks = peer.interaction_callbacks().len();
    assert_eq!(
        post_signed_at(&url, &press, pressed_at)
            .await
            .status()
            .as_u16(),
        202
    );
    // dave presses afterwards: his press counts on its own.
    let dave = Person {
        id: "100000000000000004",
        name: "dave",
        roles: &[],
    };
    let dave_press = button(&approve, &pending.id, &dave);
    let dave_token = token_of(&dave_press);
    let dave_body = serde_json::to_vec(&dave_press).expect("JSON");
    assert_eq!(
        post_interaction(&url, &dave_body, None)
            .await
            .status()
            .as_u16(),
        202
    );
    wait_for("the answer to dave's press", DEADLINE, || {
        peer.interaction_callbacks()
            .into_iter()
            .find(|callback| callback.token == dave_token)
    })
    .await;
    wait_for_status(&peer, &token, "awaiting approval: 1 of 2", DEADLINE).await;
    let approvals = bot.app.store.approvals(op_id).await.expect("approvals");
    let live: Vec<&str> = approvals
        .iter()
        .filter(|approval| !approval.withdrawn)
        .map(|approval| approval.approver.as_str())
        .collect();
    assert_eq!(
        live,
        ["dave"],
        "carol's replayed press did not approve again"
    );
    assert_eq!(state_of(&bot.app, op_id).await, OpState::Pending);
    let audit = bot.app.store.audit_entries(None, 100).await.expect("audit");
    let carol_approvals = audit
        .iter()
        .filter(|stored| stored.entry.actor == "carol" && stored.entry.event == "approved")
        .count();
    assert_eq!(
        carol_approvals, 1,
        "the replay was not audited as an approval"
    );
    assert_eq!(
        peer.interaction_callbacks().len(),
        n_callbacks + 1,
        "the replay got no answer; dave's press did"
    );
}

#[tokio::test]
async fn interactions_from_a_guild_config_does_not_serve_are_refused_and_audited() {
    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "http"));
    let bot = Bot::start(&workspace).await;
    let url = bot.interactions_url();
    let mut lock = command(
        "lock",
        &[("env", json!("staging")), ("reason", json!("freeze"))],
        &ALICE,
    );
    lock["guild_id"] = json!("1999999999999999999");
    let token = token_of(&lock);
    let body = serde_json::to_vec(&lock).expect("JSON");
    assert_eq!(
        post_interaction(&url, &body, None).await.status().as_u16(),
        202
    );
    let answer = wait_for("the refusal", DEADLINE, || {
        peer.interaction_callbacks()
            .into_iter()
            .find(|callback| callback.token == token)
    })
    .await;
    assert_eq!(answer.body["data"]["flags"], 64, "only the sender sees it");
    assert!(
        answer.body["data"]["content"]
            .as_str()
            .is_some_and(|text| text.contains(
                "this Deckhand serves only the Discord servers its config lists; nothing was done"
            )),
        "{:#}",
        answer.body
    );
    let audit = bot.app.store.audit_entries(None, 10).await.expect("audit");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (audit[0].entry.event.as_str(), audit[0].entry.actor.as_str()),
        ("refused", "alice")
    );
    let operations = bot
        .app
        .store
        .recent_operations(None, 10)
        .await
        .expect("the store answers");
    assert!(
        operations.is_empty(),
        "nothing else happened: {operations:?}"
    );
    assert!(
        bot.app
            .store
            .hold("staging", bot.app.now())
            .await
            .expect("the store answers")
            .is_none()
    );
}

/// While Discord rate-limits, what waits for it is bounded (issue 11, item
/// 6): an operation's newest state, at most `DETAIL_LIMIT` detail lines and
/// `AUDIT_LIMIT` audit lines, the rest counted into a note; once Discord
/// answers, the final state lands.
#[tokio::test]
async fn a_stalled_discord_holds_bounded_queues_and_still_gets_the_final_state() {
    use deckhand::chat::queue::{AUDIT_LIMIT, DETAIL_LIMIT};
    use deckhand::chat::{Outbound, Reply, Tone};
    use deckhand::names::Platform;

    let peer = DiscordPeer::start().await;
    let workspace = Workspace::with_config(|text| configure(text, &peer, "http"));
    let bot = Bot::start(&workspace).await;
    peer.script(
        "POST",
        "/messages",
        2,
        DiscordReply::RateLimited {
            retry_after_secs: 1.0,
            global: false,
        },
    );
    let op_id = 990_002;
    let operation = |status: &str| Outbound::Operation {
        op_id,
        platform: Platform::Discord,
        channel: DISCORD_CHANNEL_ID.to_string(),
        reply: Reply::new("Deploy #990002", Tone::Working, status),
    };
    bot.app.outbox.send(operation("step 1 of 2"));
    for line in 0..2_000 {
        bot.app.outbox.send(Outbound::Detail {
            op_id,
            platform: Platform::Discord,
            channel: DISCORD_CHANNEL_ID.to_string(),
            text: format!("output line {line}"),
        });
        bot.app.outbox.send(Outbound::Audit {
            platform: Platform::Discord,
            channel: AUDIT_CHANNEL.to_string(),
            text: format!("audit line {line}"),
        });
    }
    bot.app.outbox.send(operation("finished in 2 s"));

    let posted = |needle: &str| {
        peer.messages()
            .iter()
            .filter(|message| message.latest().to_string().contains(needle))
            .count()
    };
    wait_for(
        "both notes of dropped lines",
        Duration::from_secs(60),
        || {
            (posted("more line(s) of output not posted") == 1
                && posted("audit line(s) not posted here") == 1
                && posted("finished in 2 s") == 1)
                .then_some(())
        },
    )
    .await;
    let details = posted("output line ");
    let audits = posted("audit line ");
    assert!(details <= DETAIL_LIMIT + 1, "{details} detail lines posted");
    assert!(audits <= AUDIT_LIMIT + 1, "{audits} audit lines posted");
    assert_eq!(posted("Deploy #990002"), 1, "one message for the operation");
}
