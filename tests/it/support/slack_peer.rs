//! A local Slack: the Web API methods Deckhand uses under `{base}/api/{method}`,
//! `response_url` endpoints under `{base}/response/{id}`, and a Socket Mode
//! WebSocket at the URL `apps.connections.open` hands out.
//!
//! Replies are shaped like the fixtures in `tests/fixtures/slack/`
//! (`web_chat_postMessage_response.json`, `web_rate_limited_429.json`,
//! `socket_mode_hello.json`, ...): HTTP 200 with `{"ok":false,"error":...}` for
//! API errors, HTTP 429 with `Retry-After` when rate limited, and
//! `application/json; charset=utf-8` bodies. Requests may be JSON (what
//! slack-morphism sends), forms, or query strings, as Slack accepts all three.
//!
//! Also here: [`signed_post`] and its variants, which sign HTTP-mode requests
//! the way Slack does, for sending to a Deckhand URL.
//!
//! Not modelled: channels and membership (any channel id is accepted), threads
//! beyond recording `thread_ts`, and Slack's own rate limiting (script it).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

use super::{
    Journal, PeerServer, RecordedRequest, ScriptBook, fixture_json, lock, now_unix, random_hex,
    wait_for,
};

/// The bot token the peer accepts for Web API methods (from the fixtures).
pub const SLACK_BOT_TOKEN: &str = "xoxb-0000000000-0000000000000-FAKEfakeFAKEfakeFAKEfake";
/// The app-level token the peer accepts for `apps.connections.open`.
pub const SLACK_APP_TOKEN: &str = "xapp-1-A0CHATOPS1-0000000000000-FAKEfakeFAKEfakeFAKEfake";
/// The bot's user id, as in the fixtures.
pub const SLACK_BOT_USER: &str = "U0CHATBOT1";
/// The bot id, as in the fixtures.
pub const SLACK_BOT_ID: &str = "B0CHATBOT1";
/// The app id, as in the fixtures.
pub const SLACK_APP_ID: &str = "A0CHATOPS1";
/// The workspace id, as in the fixtures.
pub const SLACK_TEAM_ID: &str = "T0ACME0001";

/// A reply the test queues for the next calls to one Web API method.
#[derive(Debug, Clone, PartialEq)]
pub enum SlackReply {
    /// HTTP 429, `Retry-After: {secs}`, body `{"ok":false,"error":"ratelimited"}`.
    RateLimited {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// HTTP 200 with `{"ok":false,"error":code}`, e.g. `cant_update_message`.
    Error(String),
    /// Any status and JSON body.
    Raw {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: Value,
    },
}

/// A message as the peer stores it: every version in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    /// Channel id.
    pub channel: String,
    /// Message timestamp (its id).
    pub ts: String,
    /// Parent message, for thread replies.
    pub thread_ts: Option<String>,
    /// Author: [`SLACK_BOT_USER`] for messages the bot posted.
    pub user: String,
    /// Each version's content (`text`, `blocks`, `attachments` as sent; an
    /// update keeps fields it does not replace), oldest first.
    pub history: Vec<Value>,
    /// Reaction names the bot added, in order.
    pub reactions: Vec<String>,
}

impl SlackMessage {
    /// The current content.
    pub fn latest(&self) -> &Value {
        self.history
            .last()
            .expect("a message has at least one version")
    }

    /// The current `text`, or "" when the message has none.
    pub fn text(&self) -> &str {
        self.latest()["text"].as_str().unwrap_or_default()
    }

    /// The `text` of every version, oldest first.
    pub fn texts(&self) -> Vec<String> {
        self.history
            .iter()
            .map(|version| version["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// The running local Slack. Dropping it stops the server.
pub struct SlackPeer {
    state: Arc<SlackState>,
    server: PeerServer,
}

impl SlackPeer {
    /// Starts a peer on `127.0.0.1:0` that accepts [`SLACK_BOT_TOKEN`] and
    /// [`SLACK_APP_TOKEN`].
    pub async fn start() -> Self {
        let mut state_slot = None;
        let server = PeerServer::start_with(|addr| {
            let state = Arc::new(SlackState::new(format!("ws://{addr}")));
            state_slot = Some(Arc::clone(&state));
            router(state)
        })
        .await;
        let state = state_slot.expect("start_with builds the router before returning");
        Self { state, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.http_url()
    }

    /// `http://127.0.0.1:PORT/api`, for `with_slack_api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.server.http_url())
    }

    /// A `response_url` on this peer; posts to it are kept under `id`.
    pub fn response_url(&self, id: &str) -> String {
        format!("{}/response/{id}", self.server.http_url())
    }

    // Recording.

    /// Every HTTP request received (API calls and response_url posts), in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }

    /// The calls to one Web API method, e.g. `chat.update`, in order.
    pub fn calls_to(&self, method: &str) -> Vec<RecordedRequest> {
        let path = format!("/api/{method}");
        self.requests()
            .into_iter()
            .filter(|request| request.path == path)
            .collect()
    }

    /// The merged parameters (query, form or JSON) of each call to `method`.
    pub fn params_of(&self, method: &str) -> Vec<Value> {
        self.calls_to(method).iter().map(request_params).collect()
    }

    /// Bodies posted to the response_url `id`, in order.
    pub fn response_posts(&self, id: &str) -> Vec<Value> {
        let path = format!("/response/{id}");
        self.requests()
            .into_iter()
            .filter(|request| request.path == path)
            .map(|request| request.body)
            .collect()
    }

    /// The message `ts` in `channel`, with its edit history.
    pub fn message(&self, channel: &str, ts: &str) -> Option<SlackMessage> {
        let world = lock(&self.state.world);
        world
            .messages
            .iter()
            .find(|message| message.channel == channel && message.ts == ts)
            .cloned()
    }

    /// Every message in `channel`, in posting order.
    pub fn messages_in(&self, channel: &str) -> Vec<SlackMessage> {
        let world = lock(&self.state.world);
        world
            .messages
            .iter()
            .filter(|message| message.channel == channel)
            .cloned()
            .collect()
    }

    /// Ephemeral messages posted with chat.postEphemeral (their parameters), in order.
    pub fn ephemerals(&self) -> Vec<Value> {
        self.params_of("chat.postEphemeral")
    }

    // World setup.

    /// Makes `usergroups.users.list` answer `users` for `usergroup`.
    pub fn set_usergroup(&self, usergroup: &str, users: &[&str]) {
        let members = users.iter().map(|user| user.to_string()).collect();
        lock(&self.state.world)
            .usergroups
            .insert(usergroup.to_string(), members);
    }

    /// Adds a message written by a person, so the bot can react to it; returns its ts.
    pub fn seed_message(&self, channel: &str, user: &str, text: &str) -> String {
        let mut world = lock(&self.state.world);
        let ts = world.next_ts();
        world.messages.push(SlackMessage {
            channel: channel.to_string(),
            ts: ts.clone(),
            thread_ts: None,
            user: user.to_string(),
            history: vec![json!({ "text": text })],
            reactions: Vec::new(),
        });
        ts
    }

    // Scripting.

    /// The next `times` calls to `method` get `reply` instead of the normal answer
    /// (and change nothing).
    pub fn script(&self, method: &str, times: usize, reply: SlackReply) {
        let path = format!("/api/{method}");
        self.state
            .scripts
            .push(move |request| request.path == path, times, reply);
    }

    // Waiting.

    /// Waits until `method` has been called `n` times; returns those calls.
    pub async fn wait_for_calls(
        &self,
        method: &str,
        n: usize,
        deadline: Duration,
    ) -> Vec<RecordedRequest> {
        wait_for(&format!("{n} call(s) to {method}"), deadline, || {
            let calls = self.calls_to(method);
            (calls.len() >= n).then_some(calls)
        })
        .await
    }

    /// Waits until some message in `channel` satisfies `predicate`; returns it.
    pub async fn wait_for_message(
        &self,
        channel: &str,
        deadline: Duration,
        predicate: impl Fn(&SlackMessage) -> bool,
    ) -> SlackMessage {
        wait_for(
            &format!("a matching message in {channel}"),
            deadline,
            || {
                self.messages_in(channel)
                    .into_iter()
                    .find(|message| predicate(message))
            },
        )
        .await
    }

    /// Waits until `n` bodies were posted to response_url `id`; returns them.
    pub async fn wait_for_response_posts(
        &self,
        id: &str,
        n: usize,
        deadline: Duration,
    ) -> Vec<Value> {
        wait_for(
            &format!("{n} post(s) to response_url {id}"),
            deadline,
            || {
                let posts = self.response_posts(id);
                (posts.len() >= n).then_some(posts)
            },
        )
        .await
    }

    // Socket Mode.

    /// WebSocket connections accepted so far (including closed ones).
    pub fn connection_count(&self) -> usize {
        lock(&self.state.sockets).len()
    }

    /// WebSocket connections currently open.
    pub fn open_connection_count(&self) -> usize {
        lock(&self.state.sockets)
            .iter()
            .filter(|socket| socket.open)
            .count()
    }

    /// Waits until `n` connections have been accepted in total.
    pub async fn wait_for_connections(&self, n: usize, deadline: Duration) {
        wait_for(&format!("{n} Socket Mode connection(s)"), deadline, || {
            (self.connection_count() >= n).then_some(())
        })
        .await
    }

    /// Sends a raw frame to the newest open connection.
    pub fn push_frame(&self, frame: Value) {
        self.send_to_newest(SocketCommand::Frame(frame.to_string()));
    }

    /// Sends a `slash_commands` envelope (accepts_response_payload true)
    /// carrying `payload`; returns its envelope_id.
    pub fn push_slash_command(&self, payload: Value) -> String {
        self.push_envelope(
            "slash_commands",
            payload,
            json!({ "accepts_response_payload": true }),
        )
    }

    /// Sends an `events_api` envelope carrying an `event_callback` payload;
    /// returns its envelope_id.
    pub fn push_events_api(&self, payload: Value) -> String {
        let extra =
            json!({ "accepts_response_payload": false, "retry_attempt": 0, "retry_reason": "" });
        self.push_envelope("events_api", payload, extra)
    }

    /// Sends an `interactive` envelope (e.g. block_actions); returns its envelope_id.
    pub fn push_interactive(&self, payload: Value) -> String {
        self.push_envelope(
            "interactive",
            payload,
            json!({ "accepts_response_payload": false }),
        )
    }

    /// Sends a `disconnect` frame, as Slack does before rotating a connection.
    pub fn push_disconnect(&self, reason: &str) {
        let mut frame = fixture_json("slack/socket_mode_disconnect.json");
        frame["reason"] = json!(reason);
        self.push_frame(frame);
    }

    /// Drops the newest open connection without a close frame.
    pub fn drop_socket(&self) {
        self.send_to_newest(SocketCommand::Drop);
    }

    /// Every frame the client sent, parsed, in order.
    pub fn client_frames(&self) -> Vec<Value> {
        self.state.client_frames.all()
    }

    /// The acks received (frames with an `envelope_id`), in order.
    pub fn acks(&self) -> Vec<Value> {
        self.client_frames()
            .into_iter()
            .filter(|frame| frame.get("envelope_id").is_some())
            .collect()
    }

    /// Waits for the ack of `envelope_id`; returns it.
    pub async fn wait_for_ack(&self, envelope_id: &str, deadline: Duration) -> Value {
        wait_for(
            &format!("the ack of envelope {envelope_id}"),
            deadline,
            || {
                self.acks()
                    .into_iter()
                    .find(|ack| ack["envelope_id"] == envelope_id)
            },
        )
        .await
    }

    fn push_envelope(&self, kind: &str, payload: Value, extra: Value) -> String {
        let envelope_id = new_envelope_id();
        let mut envelope = json!({ "envelope_id": envelope_id, "payload": payload, "type": kind });
        if let (Some(envelope), Value::Object(extra)) = (envelope.as_object_mut(), extra) {
            envelope.extend(extra);
        }
        self.push_frame(envelope);
        envelope_id
    }

    fn send_to_newest(&self, command: SocketCommand) {
        let sockets = lock(&self.state.sockets);
        let socket = sockets
            .iter()
            .rev()
            .find(|socket| socket.open)
            .expect("a Socket Mode connection is open (wait_for_connections first)");
        socket
            .outbound
            .send(command)
            .expect("an open connection's task is receiving");
    }
}

// Signing HTTP-mode requests.

/// Slack's v0 signature: `v0=` + hex HMAC-SHA256(secret, `v0:{timestamp}:{body}`).
pub fn slack_signature(signing_secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(signing_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body` to `url` signed with `signing_secret` at `timestamp`, as Slack
/// does. Pass an old timestamp for a stale request.
pub async fn signed_post(
    url: &str,
    signing_secret: &str,
    body: &[u8],
    content_type: &str,
    timestamp: i64,
) -> reqwest::Response {
    let signature = slack_signature(signing_secret, timestamp, body);
    post_with_signature(url, body, content_type, &timestamp.to_string(), &signature).await
}

/// A correctly signed request whose timestamp is ten minutes old.
pub async fn stale_post(
    url: &str,
    signing_secret: &str,
    body: &[u8],
    content_type: &str,
) -> reqwest::Response {
    signed_post(url, signing_secret, body, content_type, now_unix() - 600).await
}

/// A request signed with a secret that is not Deckhand's.
pub async fn forged_post(
    url: &str,
    body: &[u8],
    content_type: &str,
    timestamp: i64,
) -> reqwest::Response {
    signed_post(
        url,
        "forged-signing-secret-0000000000",
        body,
        content_type,
        timestamp,
    )
    .await
}

/// Signs `signed_body` but sends `sent_body`: a body altered after signing.
pub async fn altered_post(
    url: &str,
    signing_secret: &str,
    signed_body: &[u8],
    sent_body: &[u8],
    content_type: &str,
) -> reqwest::Response {
    let timestamp = now_unix();
    let signature = slack_signature(signing_secret, timestamp, signed_body);
    post_with_signature(
        url,
        sent_body,
        content_type,
        &timestamp.to_string(),
        &signature,
    )
    .await
}

/// POSTs with exactly the given signature headers (for malformed variants).
pub async fn post_with_signature(
    url: &str,
    body: &[u8],
    content_type: &str,
    timestamp: &str,
    signature: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header(header::CONTENT_TYPE, content_type)
        .header("X-Slack-Request-Timestamp", timestamp)
        .header("X-Slack-Signature", signature)
        .body(body.to_vec())
        .send()
        .await
        .unwrap_or_else(|error| panic!("posting to {url}: {error}"))
}

// The server side.

struct SlackState {
    ws_base: String,
    requests: Journal<RecordedRequest>,
    scripts: ScriptBook<SlackReply>,
    world: Mutex<SlackWorld>,
    sockets: Mutex<Vec<SocketConnection>>,
    client_frames: Journal<Value>,
}

impl SlackState {
    fn new(ws_base: String) -> Self {
        Self {
            ws_base,
            requests: Journal::default(),
            scripts: ScriptBook::default(),
            world: Mutex::new(SlackWorld::default()),
            sockets: Mutex::new(Vec::new()),
            client_frames: Journal::default(),
        }
    }
}

#[derive(Default)]
struct SlackWorld {
    n_ts_issued: u64,
    messages: Vec<SlackMessage>,
    usergroups: HashMap<String, Vec<String>>,
    tickets: HashSet<String>,
}

impl SlackWorld {
    /// A fresh, increasing message ts in Slack's `seconds.micros` form.
    fn next_ts(&mut self) -> String {
        self.n_ts_issued += 1;
        format!("{}.{:06}", now_unix(), self.n_ts_issued)
    }
}

struct SocketConnection {
    outbound: mpsc::UnboundedSender<SocketCommand>,
    open: bool,
}

enum SocketCommand {
    Frame(String),
    Drop,
}

/// A Web API answer: status, extra headers, JSON body.
struct ApiAnswer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

impl ApiAnswer {
    fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            headers: Vec::new(),
            body,
        }
    }

    fn error(code: &str) -> Self {
        Self::ok(json!({ "ok": false, "error": code }))
    }
}

impl IntoResponse for ApiAnswer {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            self.body.to_string(),
        )
            .into_response();
        for (name, value) in self.headers {
            let value = value.parse().expect("peer header values are ASCII");
            response.headers_mut().insert(name, value);
        }
        response
    }
}

fn router(state: Arc<SlackState>) -> Router {
    Router::new()
        .route("/api/{method}", any(api_call))
        .route("/response/{id}", any(response_url_post))
        .route("/link", get(socket_mode))
        .route("/link/", get(socket_mode))
        .with_state(state)
}

async fn api_call(
    State(state): State<Arc<SlackState>>,
    Path(api_method): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiAnswer {
    let mut request = RecordedRequest::new(&method, &uri, &headers, &body);
    let answer = match state.scripts.take(&request) {
        Some(reply) => scripted_answer(reply),
        None => {
            let params = request_params(&request);
            match check_token(&api_method, &request, &params) {
                Err(code) => ApiAnswer::error(code),
                Ok(()) => answer_method(&state, &api_method, &params),
            }
        }
    };
    request.status = answer.status.as_u16();
    state.requests.push(request);
    answer
}

fn scripted_answer(reply: SlackReply) -> ApiAnswer {
    match reply {
        SlackReply::RateLimited { retry_after_secs } => {
            let fixture = fixture_json("slack/web_rate_limited_429.json");
            ApiAnswer {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers: vec![("retry-after", retry_after_secs.to_string())],
                body: fixture["body"].clone(),
            }
        }
        SlackReply::Error(code) => ApiAnswer::error(&code),
        SlackReply::Raw { status, body } => ApiAnswer {
            status: StatusCode::from_u16(status).expect("scripted statuses are valid"),
            headers: Vec::new(),
            body,
        },
    }
}

/// Slack takes the token from `Authorization: Bearer` or, for forms, a `token`
/// parameter. Socket Mode's `apps.connections.open` needs the app-level token.
fn check_token(
    api_method: &str,
    request: &RecordedRequest,
    params: &Value,
) -> Result<(), &'static str> {
    let presented = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .or_else(|| params["token"].as_str());
    let expected = if api_method == "apps.connections.open" {
        SLACK_APP_TOKEN
    } else {
        SLACK_BOT_TOKEN
    };
    match presented {
        None => Err("not_authed"),
        Some(token) if token == expected => Ok(()),
        Some(_) => Err("invalid_auth"),
    }
}

fn answer_method(state: &SlackState, api_method: &str, params: &Value) -> ApiAnswer {
    match api_method {
        "auth.test" => ApiAnswer::ok(json!({
            "ok": true,
            "url": "https://acme-eng.slack.com/",
            "team": "Acme Engineering",
            "user": "deckhand",
            "team_id": SLACK_TEAM_ID,
            "user_id": SLACK_BOT_USER,
            "bot_id": SLACK_BOT_ID,
            "is_enterprise_install": false
        })),
        "chat.postMessage" => post_message(state, params),
        "chat.update" => update_message(state, params),
        "chat.postEphemeral" => post_ephemeral(state, params),
        "reactions.add" => add_reaction(state, params),
        "usergroups.users.list" => list_usergroup(state, params),
        "apps.connections.open" => open_connection(state),
        _ => ApiAnswer::error("unknown_method"),
    }
}

fn post_message(state: &SlackState, params: &Value) -> ApiAnswer {
    let Some(channel) = params["channel"].as_str() else {
        return ApiAnswer::error("channel_not_found");
    };
    let content = message_content(params);
    if content.as_object().is_none_or(Map::is_empty) {
        return ApiAnswer::error("no_text");
    }
    let mut world = lock(&state.world);
    let ts = world.next_ts();
    let thread_ts = params["thread_ts"].as_str().map(str::to_string);
    world.messages.push(SlackMessage {
        channel: channel.to_string(),
        ts: ts.clone(),
        thread_ts: thread_ts.clone(),
        user: SLACK_BOT_USER.to_string(),
        history: vec![content.clone()],
        reactions: Vec::new(),
    });
    let mut message = json!({
        "type": "message",
        "subtype": "bot_message",
        "text": content["text"].as_str().unwrap_or_default(),
        "ts": ts,
        "bot_id": SLACK_BOT_ID,
        "app_id": SLACK_APP_ID,
        "user": SLACK_BOT_USER,
        "team": SLACK_TEAM_ID,
    });
    for key in ["blocks", "attachments"] {
        if let Some(value) = content.get(key) {
            message[key] = value.clone();
        }
    }
    if let Some(thread_ts) = thread_ts {
        message["thread_ts"] = json!(thread_ts);
    }
    ApiAnswer::ok(json!({ "ok": true, "channel": channel, "ts": ts, "message": message }))
}

fn update_message(state: &SlackState, params: &Value) -> ApiAnswer {
    let (Some(channel), Some(ts)) = (params["channel"].as_str(), params["ts"].as_str()) else {
        return ApiAnswer::error("message_not_found");
    };
    let mut world = lock(&state.world);
    let Some(message) = world
        .messages
        .iter_mut()
        .find(|message| message.channel == channel && message.ts == ts)
    else {
        return ApiAnswer::error("message_not_found");
    };
    if message.user != SLACK_BOT_USER {
        return ApiAnswer::error("cant_update_message");
    }
    let mut version = message.latest().clone();
    if let (Some(version), Value::Object(changes)) =
        (version.as_object_mut(), message_content(params))
    {
        version.extend(changes);
    }
    message.history.push(version.clone());
    let text = version["text"].as_str().unwrap_or_default();
    let mut reply_message = json!({ "text": text, "user": SLACK_BOT_USER });
    if let Some(blocks) = version.get("blocks") {
        reply_message["blocks"] = blocks.clone();
    }
    ApiAnswer::ok(
        json!({ "ok": true, "channel": channel, "ts": ts, "text": text, "message": reply_message }),
    )
}

fn post_ephemeral(state: &SlackState, params: &Value) -> ApiAnswer {
    if params["channel"].as_str().is_none() {
        return ApiAnswer::error("channel_not_found");
    }
    if params["user"].as_str().is_none() {
        return ApiAnswer::error("user_not_in_channel");
    }
    let message_ts = lock(&state.world).next_ts();
    ApiAnswer::ok(json!({ "ok": true, "message_ts": message_ts }))
}

fn add_reaction(state: &SlackState, params: &Value) -> ApiAnswer {
    let (Some(channel), Some(ts), Some(name)) = (
        params["channel"].as_str(),
        params["timestamp"].as_str(),
        params["name"].as_str(),
    ) else {
        return ApiAnswer::error("invalid_arguments");
    };
    let mut world = lock(&state.world);
    let Some(message) = world
        .messages
        .iter_mut()
        .find(|message| message.channel == channel && message.ts == ts)
    else {
        return ApiAnswer::error("message_not_found");
    };
    if message.reactions.iter().any(|reaction| reaction == name) {
        return ApiAnswer::error("already_reacted");
    }
    message.reactions.push(name.to_string());
    ApiAnswer::ok(json!({ "ok": true }))
}

fn list_usergroup(state: &SlackState, params: &Value) -> ApiAnswer {
    let Some(usergroup) = params["usergroup"].as_str() else {
        return ApiAnswer::error("invalid_arguments");
    };
    match lock(&state.world).usergroups.get(usergroup) {
        Some(users) => ApiAnswer::ok(json!({ "ok": true, "users": users })),
        None => ApiAnswer::error("no_such_subteam"),
    }
}

fn open_connection(state: &SlackState) -> ApiAnswer {
    let ticket = new_envelope_id();
    lock(&state.world).tickets.insert(ticket.clone());
    let url = format!(
        "{}/link/?ticket={ticket}&app_id={SLACK_APP_ID}",
        state.ws_base
    );
    ApiAnswer::ok(json!({ "ok": true, "url": url }))
}

/// The content fields of a post or update.
fn message_content(params: &Value) -> Value {
    let content: Map<String, Value> = ["text", "blocks", "attachments"]
        .into_iter()
        .filter_map(|key| {
            params
                .get(key)
                .map(|value| (key.to_string(), value.clone()))
        })
        .collect();
    Value::Object(content)
}

/// Query, form and JSON parameters merged into one object. In forms and query
/// strings Slack takes `blocks` and `attachments` as JSON text; they are parsed
/// so that every encoding records the same shape.
fn request_params(request: &RecordedRequest) -> Value {
    let mut params: Map<String, Value> = request
        .query
        .iter()
        .map(|(key, value)| (key.clone(), Value::String(value.clone())))
        .collect();
    if let Value::Object(body) = &request.body {
        params.extend(body.clone());
    }
    for key in ["blocks", "attachments"] {
        let parsed = params
            .get(key)
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str::<Value>(text).ok());
        if let Some(parsed) = parsed {
            params.insert(key.to_string(), parsed);
        }
    }
    Value::Object(params)
}

async fn response_url_post(
    State(state): State<Arc<SlackState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiAnswer {
    let mut request = RecordedRequest::new(&method, &uri, &headers, &body);
    // Interactivity responses may arrive as a form with one `payload` field.
    let payload = request.body["payload"]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok());
    if let Some(payload) = payload {
        request.body = payload;
    }
    request.status = 200;
    state.requests.push(request);
    ApiAnswer::ok(json!({ "ok": true }))
}

#[derive(serde::Deserialize)]
struct LinkQuery {
    ticket: Option<String>,
}

async fn socket_mode(
    State(state): State<Arc<SlackState>>,
    Query(query): Query<LinkQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Tickets from apps.connections.open are single use, as Slack's are.
    let ticket_valid = query
        .ticket
        .is_some_and(|ticket| lock(&state.world).tickets.remove(&ticket));
    if !ticket_valid {
        return (StatusCode::UNAUTHORIZED, "invalid or reused ticket").into_response();
    }
    upgrade.on_upgrade(move |socket| serve_socket(state, socket))
}

async fn serve_socket(state: Arc<SlackState>, mut socket: WebSocket) {
    let (outbound, mut commands) = mpsc::unbounded_channel();
    let (connection_idx, n_open) = {
        let mut sockets = lock(&state.sockets);
        sockets.push(SocketConnection {
            outbound,
            open: true,
        });
        (
            sockets.len() - 1,
            sockets.iter().filter(|socket| socket.open).count(),
        )
    };
    let mut hello = fixture_json("slack/socket_mode_hello.json");
    hello["num_connections"] = json!(n_open);
    hello["debug_info"]["host"] = json!(format!("applink-peer-{connection_idx}"));
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok()
    {
        relay_frames(&state, &mut socket, &mut commands).await;
    }
    lock(&state.sockets)[connection_idx].open = false;
}

/// Forwards test commands to the client and records what the client sends,
/// until either side ends the connection.
async fn relay_frames(
    state: &SlackState,
    socket: &mut WebSocket,
    commands: &mut mpsc::UnboundedReceiver<SocketCommand>,
) {
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(SocketCommand::Frame(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(SocketCommand::Drop) | None => return,
            },
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    let frame = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|_| Value::String(text.as_str().to_string()));
                    state.client_frames.push(frame);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// An id shaped like Slack's envelope ids (a UUID).
fn new_envelope_id() -> String {
    let hex = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
