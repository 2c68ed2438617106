//! A local Discord: the REST routes Deckhand uses under `{base}/api/v10/…`
//! (where serenity sends them with `HttpBuilder::proxy(base)`), and a gateway
//! WebSocket that `GET /gateway` points at.
//!
//! REST replies follow Discord's shapes: message objects like the one inside
//! `tests/fixtures/discord/interaction_component_button_approve.json`, 204 for
//! callbacks and reactions, `{"message":…,"code":…}` errors, and 429 with
//! `retry_after` plus `Retry-After`/`X-RateLimit-*` headers when scripted.
//!
//! The gateway speaks JSON text frames (serenity asks for zlib with
//! `compress: true` in IDENTIFY but also reads text): op 10 HELLO, op 2
//! IDENTIFY → op 0 READY (`gateway_ready.json`, `resume_gateway_url` pointing
//! back here), op 1 → op 11, op 6 RESUME → missed dispatches then RESUMED.
//! Tests dispatch events with increasing `s`, and can send op 7 / op 9, close
//! or drop the socket.
//!
//! Also here: [`sign_interaction`], which signs an HTTP interaction with the
//! test keypair from `signatures.json`.
//!
//! Not modelled: guilds, channels and permissions (any id is accepted), and
//! Discord's own rate limiting (script it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    Journal, PeerServer, RecordedRequest, ScriptBook, fixture_json, lock, random_hex, wait_for,
};

/// The bot token the peer accepts (sent as `Authorization: Bot …`).
pub const DISCORD_BOT_TOKEN: &str =
    "MTE3NDEwOTg0MDk5ODUzMTA3Mw.Gfake0.FAKEfakeFAKEfakeFAKEfakeFAKEfake000000";
/// The application (and bot user) id, as in the fixtures.
pub const DISCORD_APPLICATION_ID: u64 = 1174109840998531073;
/// The guild id used by the fixtures.
pub const DISCORD_GUILD_ID: u64 = 1174110260428931074;
/// The channel id used by the fixtures.
pub const DISCORD_CHANNEL_ID: u64 = 1174110679859331075;
/// The test application's public key (`signatures.json`, discord.test_keypair).
pub const DISCORD_PUBLIC_KEY_HEX: &str =
    "c64e424c2052e7be6a2e2cf9246b3db7a10cf573d63b402fad57bd26cac2a28b";
/// The matching private key seed. TEST-ONLY.
pub const DISCORD_PRIVATE_SEED_HEX: &str =
    "ac1e5c8f0e74e891a9a7d7b0fd2bf7bb561b886e91467a34583c4166a096119d";
/// The heartbeat interval HELLO announces: short, so tests see heartbeats quickly.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1000;

/// Discord's epoch (2015-01-01) in unix milliseconds, for snowflakes.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// A reply the test queues for matching REST requests.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscordReply {
    /// HTTP 429 with `{"message":"You are being rate limited.","retry_after":…,"global":…}`
    /// and the `Retry-After` and `X-RateLimit-*` headers.
    RateLimited {
        /// Seconds to wait (fractional, as Discord sends it).
        retry_after_secs: f64,
        /// Whether this is the global limit.
        global: bool,
    },
    /// A JSON error `{"message":…,"code":…}` with `status`.
    Error {
        /// HTTP status.
        status: u16,
        /// Discord's JSON error code, e.g. 10008 for Unknown Message.
        code: u64,
        /// Its message.
        message: String,
    },
}

/// Where a stored message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOrigin {
    /// `POST /channels/{id}/messages`, or seeded by the test.
    Channel,
    /// The original response of the interaction with this token.
    Original {
        /// The interaction token.
        token: String,
    },
    /// A follow-up to the interaction with this token.
    Followup {
        /// The interaction token.
        token: String,
    },
}

/// A message as the peer stores it: every version in order, and the bot's reactions.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordMessage {
    /// Snowflake id.
    pub id: String,
    /// Channel id.
    pub channel_id: String,
    /// How it was created.
    pub origin: MessageOrigin,
    /// Each version's fields as sent (`content`, `embeds`, `components`,
    /// `flags`; an edit keeps fields it does not replace), oldest first.
    pub history: Vec<Value>,
    /// Emoji the bot currently has on it (unicode, or `name:id` for custom).
    pub reactions: Vec<String>,
}

impl DiscordMessage {
    /// The current fields.
    pub fn latest(&self) -> &Value {
        self.history
            .last()
            .expect("a message has at least one version")
    }

    /// The current `content`, or "" when it has none.
    pub fn content(&self) -> &str {
        self.latest()["content"].as_str().unwrap_or_default()
    }

    /// The `content` of every version, oldest first.
    pub fn contents(&self) -> Vec<String> {
        self.history
            .iter()
            .map(|version| version["content"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// One POST to `/interactions/{id}/{token}/callback`.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionCallback {
    /// The interaction id from the path.
    pub interaction_id: String,
    /// The interaction token from the path.
    pub token: String,
    /// The body: `{"type":…, "data":…}`.
    pub body: Value,
}

/// The running local Discord (REST and gateway). Dropping it stops both.
pub struct DiscordPeer {
    state: Arc<DiscordState>,
    rest: PeerServer,
    gateway: PeerServer,
}

impl DiscordPeer {
    /// Starts the REST server and the gateway on two `127.0.0.1:0` listeners.
    pub async fn start() -> Self {
        // The gateway listens first so that the REST state can hand out its URL;
        // its handler finds the shared state through this slot once REST is up.
        let gateway_state = Arc::new(Mutex::new(None::<Arc<DiscordState>>));
        let gateway_slot = Arc::clone(&gateway_state);
        let gateway = PeerServer::start(
            Router::new()
                .route("/", get(gateway_upgrade))
                .with_state(gateway_slot),
        )
        .await;
        let mut state_slot = None;
        let gateway_url = gateway.ws_url();
        let rest = PeerServer::start_with(|_| {
            let state = Arc::new(DiscordState::new(gateway_url));
            state_slot = Some(Arc::clone(&state));
            Router::new().fallback(rest_request).with_state(state)
        })
        .await;
        let state = state_slot.expect("start_with builds the router before returning");
        *lock(&gateway_state) = Some(Arc::clone(&state));
        Self {
            state,
            rest,
            gateway,
        }
    }

    /// `http://127.0.0.1:PORT`: pass to `HttpBuilder::proxy`.
    pub fn base_url(&self) -> String {
        self.rest.http_url()
    }

    /// `http://127.0.0.1:PORT/api/v10`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v10", self.rest.http_url())
    }

    /// `ws://127.0.0.1:PORT` of the gateway, as `GET /gateway` returns it.
    pub fn gateway_url(&self) -> String {
        self.gateway.ws_url()
    }

    // REST recording.

    /// Every REST request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }

    /// REST requests with this method whose path contains `path_fragment`.
    pub fn requests_matching(&self, method: &str, path_fragment: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == method && request.path.contains(path_fragment))
            .collect()
    }

    /// Registered global commands, as the peer returns them (with ids).
    pub fn global_commands(&self) -> Vec<Value> {
        lock(&self.state.world).global_commands.clone()
    }

    /// Registered commands of one guild.
    pub fn guild_commands(&self, guild_id: u64) -> Vec<Value> {
        let world = lock(&self.state.world);
        world
            .guild_commands
            .iter()
            .find(|(guild, _)| *guild == guild_id.to_string())
            .map(|(_, commands)| commands.clone())
            .unwrap_or_default()
    }

    /// Every interaction callback, in order.
    pub fn interaction_callbacks(&self) -> Vec<InteractionCallback> {
        lock(&self.state.world).callbacks.clone()
    }

    /// The original response of the interaction with `token`, with its edits.
    pub fn original_response(&self, token: &str) -> Option<DiscordMessage> {
        let origin = MessageOrigin::Original {
            token: token.to_string(),
        };
        self.messages()
            .into_iter()
            .find(|message| message.origin == origin)
    }

    /// Follow-ups to the interaction with `token`, in order.
    pub fn followups(&self, token: &str) -> Vec<DiscordMessage> {
        let origin = MessageOrigin::Followup {
            token: token.to_string(),
        };
        self.messages()
            .into_iter()
            .filter(|message| message.origin == origin)
            .collect()
    }

    /// Every stored message (channel messages, originals, follow-ups) in creation order.
    pub fn messages(&self) -> Vec<DiscordMessage> {
        lock(&self.state.world).messages.clone()
    }

    /// One message by id.
    pub fn message(&self, message_id: &str) -> Option<DiscordMessage> {
        self.messages()
            .into_iter()
            .find(|message| message.id == message_id)
    }

    /// Adds a message written by a person, so the bot can react to it; returns its id.
    pub fn seed_message(&self, channel_id: u64, content: &str) -> String {
        let mut world = lock(&self.state.world);
        let id = world.snowflake();
        world.messages.push(DiscordMessage {
            id: id.clone(),
            channel_id: channel_id.to_string(),
            origin: MessageOrigin::Channel,
            history: vec![json!({ "content": content })],
            reactions: Vec::new(),
        });
        id
    }

    // REST scripting and waiting.

    /// The next `times` requests with `method` whose path contains
    /// `path_fragment` get `reply` (and change nothing).
    pub fn script(&self, method: &str, path_fragment: &str, times: usize, reply: DiscordReply) {
        let (method, fragment) = (method.to_string(), path_fragment.to_string());
        self.state.scripts.push(
            move |request| request.method == method && request.path.contains(&fragment),
            times,
            reply,
        );
    }

    /// Waits for `n` requests matching `method` and `path_fragment`; returns them.
    pub async fn wait_for_requests(
        &self,
        method: &str,
        path_fragment: &str,
        n: usize,
        deadline: Duration,
    ) -> Vec<RecordedRequest> {
        wait_for(
            &format!("{n} {method} request(s) to *{path_fragment}*"),
            deadline,
            || {
                let found = self.requests_matching(method, path_fragment);
                (found.len() >= n).then_some(found)
            },
        )
        .await
    }

    /// Waits until the original response for `token` has `n_versions` versions.
    pub async fn wait_for_original(
        &self,
        token: &str,
        n_versions: usize,
        deadline: Duration,
    ) -> DiscordMessage {
        wait_for(
            &format!("{n_versions} version(s) of the original response"),
            deadline,
            || {
                self.original_response(token)
                    .filter(|message| message.history.len() >= n_versions)
            },
        )
        .await
    }

    // Gateway recording.

    /// Gateway connections accepted so far (including closed ones).
    pub fn connection_count(&self) -> usize {
        lock(&self.state.gateway).connections.len()
    }

    /// Every frame the client sent on any connection, parsed, in order.
    pub fn client_frames(&self) -> Vec<Value> {
        self.state.client_frames.all()
    }

    /// The `d` of every op 2 IDENTIFY, in order.
    pub fn identifies(&self) -> Vec<Value> {
        self.frames_with_op(2)
    }

    /// The `d` of every op 6 RESUME, in order.
    pub fn resumes(&self) -> Vec<Value> {
        self.frames_with_op(6)
    }

    /// The `d` (last sequence) of every op 1 heartbeat, in order.
    pub fn heartbeats(&self) -> Vec<Value> {
        self.frames_with_op(1)
    }

    /// Waits for the `n`th IDENTIFY; returns its `d`.
    pub async fn wait_for_identify(&self, n: usize, deadline: Duration) -> Value {
        wait_for(&format!("IDENTIFY #{n}"), deadline, || {
            self.identifies().get(n - 1).cloned()
        })
        .await
    }

    /// Waits for the `n`th RESUME; returns its `d`.
    pub async fn wait_for_resume(&self, n: usize, deadline: Duration) -> Value {
        wait_for(&format!("RESUME #{n}"), deadline, || {
            self.resumes().get(n - 1).cloned()
        })
        .await
    }

    /// Waits until `n` heartbeats were received.
    pub async fn wait_for_heartbeats(&self, n: usize, deadline: Duration) {
        wait_for(&format!("{n} heartbeat(s)"), deadline, || {
            (self.heartbeats().len() >= n).then_some(())
        })
        .await
    }

    /// Waits until an open connection is identified or resumed, so dispatches reach it.
    pub async fn wait_for_session(&self, deadline: Duration) {
        wait_for("an identified gateway connection", deadline, || {
            lock(&self.state.gateway)
                .live_session_connection()
                .map(|_| ())
        })
        .await
    }

    // Gateway pushes.

    /// Dispatches event `t` with data `d` (op 0, next `s`) to the live session;
    /// returns the sequence number. Without an open connection the event
    /// waits in the session for a RESUME.
    pub fn dispatch(&self, event_name: &str, data: Value) -> u64 {
        let mut gateway = lock(&self.state.gateway);
        let frame = gateway.log_dispatch(event_name, data);
        let seq = frame["s"].as_u64().expect("logged dispatches carry s");
        if let Some(connection) = gateway.live_session_connection() {
            // A connection that closed meanwhile simply misses it; RESUME replays it.
            let _ = connection
                .outbound
                .send(GatewayCommand::Frame(frame.to_string()));
        }
        seq
    }

    /// Dispatches the `t` and `d` of a gateway fixture, e.g.
    /// `discord/gateway_interaction_create.json`, with a fresh `s`.
    pub fn dispatch_fixture(&self, relative: &str) -> u64 {
        let fixture = fixture_json(relative);
        let event_name = fixture["t"]
            .as_str()
            .expect("gateway fixtures name their event")
            .to_string();
        self.dispatch(&event_name, fixture["d"].clone())
    }

    /// Logs a dispatch in the session without sending it: a frame lost on the
    /// wire, which a RESUME must replay.
    pub fn dispatch_lost(&self, event_name: &str, data: Value) -> u64 {
        let mut gateway = lock(&self.state.gateway);
        let frame = gateway.log_dispatch(event_name, data);
        frame["s"].as_u64().expect("logged dispatches carry s")
    }

    /// Sends op 7 RECONNECT to the newest open connection.
    pub fn send_reconnect(&self) {
        self.send_to_newest(GatewayCommand::Frame(
            fixture_json("discord/gateway_reconnect.json").to_string(),
        ));
    }

    /// Sends op 9 INVALID_SESSION; when not resumable the session is forgotten.
    pub fn send_invalid_session(&self, resumable: bool) {
        if !resumable {
            lock(&self.state.gateway).session = None;
        }
        let frame = json!({ "op": 9, "d": resumable });
        self.send_to_newest(GatewayCommand::Frame(frame.to_string()));
    }

    /// Closes the newest open connection with a close frame (e.g. 4000).
    pub fn close_socket(&self, code: u16, reason: &str) {
        self.send_to_newest(GatewayCommand::Close(code, reason.to_string()));
    }

    /// Drops the newest open connection without a close frame.
    pub fn drop_socket(&self) {
        self.send_to_newest(GatewayCommand::Drop);
    }

    /// Stops (or resumes) answering heartbeats with op 11, to simulate a zombie connection.
    pub fn set_heartbeat_acks(&self, enabled: bool) {
        lock(&self.state.gateway).ack_heartbeats = enabled;
    }

    fn frames_with_op(&self, op: u64) -> Vec<Value> {
        self.client_frames()
            .into_iter()
            .filter(|frame| frame["op"].as_u64() == Some(op))
            .map(|frame| frame["d"].clone())
            .collect()
    }

    fn send_to_newest(&self, command: GatewayCommand) {
        let gateway = lock(&self.state.gateway);
        let connection = gateway
            .connections
            .iter()
            .rev()
            .find(|connection| connection.open)
            .expect("a gateway connection is open (wait_for_session first)");
        connection
            .outbound
            .send(command)
            .expect("an open connection's task is receiving");
    }
}

/// Signs an HTTP interaction as Discord does: hex Ed25519 over
/// `timestamp ‖ body` with the key whose 32-byte seed is `secret_seed_hex`.
/// Send the result as `X-Signature-Ed25519` and the timestamp as `X-Signature-Timestamp`.
pub fn sign_interaction(secret_seed_hex: &str, timestamp: &str, body: &[u8]) -> String {
    let seed: [u8; 32] = hex::decode(secret_seed_hex)
        .expect("the seed is hex")
        .try_into()
        .expect("the seed is 32 bytes");
    let key = SigningKey::from_bytes(&seed);
    let message = [timestamp.as_bytes(), body].concat();
    hex::encode(key.sign(&message).to_bytes())
}

// The REST side.

struct DiscordState {
    gateway_url: String,
    requests: Journal<RecordedRequest>,
    scripts: ScriptBook<DiscordReply>,
    world: Mutex<DiscordWorld>,
    gateway: Mutex<GatewayState>,
    client_frames: Journal<Value>,
}

impl DiscordState {
    fn new(gateway_url: String) -> Self {
        Self {
            gateway_url,
            requests: Journal::default(),
            scripts: ScriptBook::default(),
            world: Mutex::new(DiscordWorld::default()),
            gateway: Mutex::new(GatewayState {
                connections: Vec::new(),
                session: None,
                ack_heartbeats: true,
            }),
            client_frames: Journal::default(),
        }
    }
}

#[derive(Default)]
struct DiscordWorld {
    global_commands: Vec<Value>,
    guild_commands: Vec<(String, Vec<Value>)>,
    callbacks: Vec<InteractionCallback>,
    messages: Vec<DiscordMessage>,
}

static SNOWFLAKE_INCREMENT: AtomicU64 = AtomicU64::new(0);

impl DiscordWorld {
    /// A fresh snowflake: milliseconds since Discord's epoch, shifted, plus an increment.
    fn snowflake(&self) -> String {
        let now_ms =
            u64::try_from(chrono::Utc::now().timestamp_millis()).expect("the clock is after 1970");
        let increment = SNOWFLAKE_INCREMENT.fetch_add(1, Ordering::Relaxed) & 0xfff;
        (((now_ms - DISCORD_EPOCH_MS) << 22) | increment).to_string()
    }

    fn message_mut(&mut self, message_id: &str) -> Option<&mut DiscordMessage> {
        self.messages
            .iter_mut()
            .find(|message| message.id == message_id)
    }
}

/// A REST answer: status, extra headers, optional JSON body.
struct RestAnswer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl RestAnswer {
    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            headers: Vec::new(),
            body: None,
        }
    }

    fn error(status: StatusCode, code: u64, message: &str) -> Self {
        Self::json(status, json!({ "message": message, "code": code }))
    }

    fn unknown_message() -> Self {
        Self::error(StatusCode::NOT_FOUND, 10008, "Unknown Message")
    }
}

impl IntoResponse for RestAnswer {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (
                self.status,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response(),
            None => self.status.into_response(),
        };
        for (name, value) in self.headers {
            let value = value.parse().expect("peer header values are ASCII");
            response.headers_mut().insert(name, value);
        }
        response
    }
}

async fn rest_request(
    State(state): State<Arc<DiscordState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> RestAnswer {
    let mut request = RecordedRequest::new(&method, &uri, &headers, &body);
    let answer = match state.scripts.take(&request) {
        Some(reply) => scripted_answer(reply),
        None => route(&state, &request),
    };
    request.status = answer.status.as_u16();
    state.requests.push(request);
    answer
}

fn scripted_answer(reply: DiscordReply) -> RestAnswer {
    match reply {
        DiscordReply::RateLimited {
            retry_after_secs,
            global,
        } => {
            let reset_at = chrono::Utc::now().timestamp_millis() as f64 / 1000.0 + retry_after_secs;
            let mut headers = vec![
                ("retry-after", format!("{}", retry_after_secs.ceil())),
                ("x-ratelimit-limit", "5".to_string()),
                ("x-ratelimit-remaining", "0".to_string()),
                ("x-ratelimit-reset", format!("{reset_at:.3}")),
                ("x-ratelimit-reset-after", format!("{retry_after_secs:.3}")),
                ("x-ratelimit-bucket", "d1scord0peer0bucket".to_string()),
                (
                    "x-ratelimit-scope",
                    if global { "global" } else { "user" }.to_string(),
                ),
            ];
            if global {
                headers.push(("x-ratelimit-global", "true".to_string()));
            }
            RestAnswer {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers,
                body: Some(json!({
                    "message": "You are being rate limited.",
                    "retry_after": retry_after_secs,
                    "global": global
                })),
            }
        }
        DiscordReply::Error {
            status,
            code,
            message,
        } => RestAnswer::error(
            StatusCode::from_u16(status).expect("scripted statuses are valid"),
            code,
            &message,
        ),
    }
}

/// Dispatches one REST request by method and path segments.
fn route(state: &DiscordState, request: &RecordedRequest) -> RestAnswer {
    let Some(rest) = request.path.strip_prefix("/api/v10/") else {
        return RestAnswer::error(StatusCode::NOT_FOUND, 0, "404: Not Found");
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let method = request.method.as_str();
    // Interaction callbacks and webhooks authenticate with the interaction
    // token in the path; every other route needs the bot token.
    let token_in_path = matches!(segments.first(), Some(&"interactions") | Some(&"webhooks"));
    if !token_in_path && !is_bot_authorized(request) {
        return RestAnswer::error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let app = DISCORD_APPLICATION_ID.to_string();
    match (method, segments.as_slice()) {
        ("GET", ["gateway"]) => {
            RestAnswer::json(StatusCode::OK, json!({ "url": state.gateway_url }))
        }
        ("GET", ["gateway", "bot"]) => {
            RestAnswer::json(StatusCode::OK, bot_gateway(&state.gateway_url))
        }
        ("GET", ["users", "@me"]) => RestAnswer::json(StatusCode::OK, bot_user(true)),
        ("GET", ["oauth2", "applications", "@me"]) => {
            RestAnswer::json(StatusCode::OK, application_info())
        }
        (_, ["applications", app_id, ..]) if *app_id != app => {
            RestAnswer::error(StatusCode::NOT_FOUND, 10002, "Unknown Application")
        }
        ("PUT", ["applications", _, "commands"]) => overwrite_commands(state, None, &request.body),
        ("GET", ["applications", _, "commands"]) => {
            RestAnswer::json(StatusCode::OK, json!(lock(&state.world).global_commands))
        }
        ("PUT", ["applications", _, "guilds", guild, "commands"]) => {
            overwrite_commands(state, Some(guild), &request.body)
        }
        ("GET", ["applications", _, "guilds", guild, "commands"]) => {
            let world = lock(&state.world);
            let commands = world
                .guild_commands
                .iter()
                .find(|(id, _)| id == guild)
                .map(|(_, commands)| commands.clone())
                .unwrap_or_default();
            RestAnswer::json(StatusCode::OK, json!(commands))
        }
        ("POST", ["interactions", interaction_id, token, "callback"]) => {
            interaction_callback(state, interaction_id, token, &request.body)
        }
        ("PATCH", ["webhooks", app_id, token, "messages", "@original"]) if *app_id == app => {
            edit_original(state, token, &request.body)
        }
        ("POST", ["webhooks", app_id, token]) if *app_id == app => {
            create_followup(state, token, &request.body)
        }
        ("PATCH", ["webhooks", app_id, token, "messages", message_id]) if *app_id == app => {
            edit_followup(state, token, message_id, &request.body)
        }
        ("POST", ["channels", channel_id, "messages"]) => {
            create_channel_message(state, channel_id, &request.body)
        }
        ("PATCH", ["channels", channel_id, "messages", message_id]) => {
            edit_channel_message(state, channel_id, message_id, &request.body)
        }
        (
            "PUT",
            [
                "channels",
                channel_id,
                "messages",
                message_id,
                "reactions",
                emoji,
                "@me",
            ],
        ) => set_reaction(state, channel_id, message_id, emoji, true),
        (
            "DELETE",
            [
                "channels",
                channel_id,
                "messages",
                message_id,
                "reactions",
                emoji,
                "@me",
            ],
        ) => set_reaction(state, channel_id, message_id, emoji, false),
        _ => RestAnswer::error(StatusCode::NOT_FOUND, 0, "404: Not Found"),
    }
}

fn is_bot_authorized(request: &RecordedRequest) -> bool {
    request.header("authorization") == Some(&format!("Bot {DISCORD_BOT_TOKEN}"))
}

fn bot_gateway(gateway_url: &str) -> Value {
    json!({
        "url": gateway_url,
        "shards": 1,
        "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1 }
    })
}

/// The bot user from `gateway_ready.json`; `/users/@me` adds the private fields.
fn bot_user(with_private_fields: bool) -> Value {
    let mut user = fixture_json("discord/gateway_ready.json")["d"]["user"].clone();
    if !with_private_fields && let Some(fields) = user.as_object_mut() {
        for key in ["verified", "mfa_enabled", "email", "flags"] {
            fields.remove(key);
        }
    }
    user
}

fn application_info() -> Value {
    json!({
        "id": DISCORD_APPLICATION_ID.to_string(),
        "name": "chatops-bot",
        "icon": null,
        "description": "Deckhand test application",
        "bot_public": false,
        "bot_require_code_grant": false,
        "owner": bot_user(false),
        "verify_key": DISCORD_PUBLIC_KEY_HEX,
        "team": null,
        "flags": 0
    })
}

/// Bulk overwrite: the list becomes exactly `body`; a command keeps its id
/// when its name was already registered, as Discord does.
fn overwrite_commands(state: &DiscordState, guild: Option<&str>, body: &Value) -> RestAnswer {
    let Some(requested) = body.as_array() else {
        return RestAnswer::error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    };
    let mut world = lock(&state.world);
    let previous = match guild {
        None => world.global_commands.clone(),
        Some(guild) => world
            .guild_commands
            .iter()
            .find(|(id, _)| id == guild)
            .map(|(_, commands)| commands.clone())
            .unwrap_or_default(),
    };
    let mut registered = Vec::new();
    for command in requested {
        let kept_id = previous
            .iter()
            .find(|old| old["name"] == command["name"])
            .map(|old| old["id"].clone());
        let id = kept_id.unwrap_or_else(|| json!(world.snowflake()));
        let mut stored = json!({
            "id": id,
            "type": 1,
            "application_id": DISCORD_APPLICATION_ID.to_string(),
            "name": "",
            "description": "",
            "options": [],
            "default_member_permissions": null,
            "dm_permission": true,
            "nsfw": false,
            "version": world.snowflake(),
        });
        if let (Some(stored), Some(fields)) = (stored.as_object_mut(), command.as_object()) {
            for (key, value) in fields {
                if key != "id" {
                    stored.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(guild) = guild {
            stored["guild_id"] = json!(guild);
        }
        registered.push(stored);
    }
    match guild {
        None => world.global_commands = registered.clone(),
        Some(guild) => {
            world.guild_commands.retain(|(id, _)| id != guild);
            world
                .guild_commands
                .push((guild.to_string(), registered.clone()));
        }
    }
    RestAnswer::json(StatusCode::OK, json!(registered))
}

/// Callback types 4 (message) and 7 (update) set the original's content; 5
/// (deferred) creates an empty original showing "thinking"; each interaction
/// can be acknowledged once.
fn interaction_callback(
    state: &DiscordState,
    interaction_id: &str,
    token: &str,
    body: &Value,
) -> RestAnswer {
    let mut world = lock(&state.world);
    if world
        .callbacks
        .iter()
        .any(|callback| callback.interaction_id == interaction_id)
    {
        return RestAnswer::error(
            StatusCode::BAD_REQUEST,
            40060,
            "Interaction has already been acknowledged.",
        );
    }
    world.callbacks.push(InteractionCallback {
        interaction_id: interaction_id.to_string(),
        token: token.to_string(),
        body: body.clone(),
    });
    let content = match body["type"].as_u64() {
        Some(4) | Some(7) => Some(body["data"].clone()),
        Some(5) => Some(json!({ "content": "", "flags": body["data"]["flags"].clone() })),
        _ => None,
    };
    if let Some(content) = content {
        let id = world.snowflake();
        let channel_id = lock(&state.gateway).interaction_channel(token);
        world.messages.push(DiscordMessage {
            id,
            channel_id,
            origin: MessageOrigin::Original {
                token: token.to_string(),
            },
            history: vec![content],
            reactions: Vec::new(),
        });
    }
    RestAnswer::no_content()
}

fn edit_original(state: &DiscordState, token: &str, body: &Value) -> RestAnswer {
    let origin = MessageOrigin::Original {
        token: token.to_string(),
    };
    let mut world = lock(&state.world);
    if let Some(message) = world
        .messages
        .iter_mut()
        .find(|message| message.origin == origin)
    {
        push_version(message, body);
        return RestAnswer::json(StatusCode::OK, message_object(message));
    }
    // An interaction dispatched through this gateway must be acknowledged
    // before its original can be edited. For interactions the peer never saw
    // (HTTP interactions answered inline) it cannot know, so it accepts.
    if lock(&state.gateway).knows_interaction(token) {
        return RestAnswer::error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
    }
    let id = world.snowflake();
    let message = DiscordMessage {
        id,
        channel_id: DISCORD_CHANNEL_ID.to_string(),
        origin,
        history: vec![body.clone()],
        reactions: Vec::new(),
    };
    let reply = message_object(&message);
    world.messages.push(message);
    RestAnswer::json(StatusCode::OK, reply)
}

fn create_followup(state: &DiscordState, token: &str, body: &Value) -> RestAnswer {
    let channel_id = lock(&state.gateway).interaction_channel(token);
    let mut world = lock(&state.world);
    let message = DiscordMessage {
        id: world.snowflake(),
        channel_id,
        origin: MessageOrigin::Followup {
            token: token.to_string(),
        },
        history: vec![body.clone()],
        reactions: Vec::new(),
    };
    let reply = message_object(&message);
    world.messages.push(message);
    RestAnswer::json(StatusCode::OK, reply)
}

fn edit_followup(state: &DiscordState, token: &str, message_id: &str, body: &Value) -> RestAnswer {
    let origin = MessageOrigin::Followup {
        token: token.to_string(),
    };
    let mut world = lock(&state.world);
    match world
        .message_mut(message_id)
        .filter(|message| message.origin == origin)
    {
        Some(message) => {
            push_version(message, body);
            RestAnswer::json(StatusCode::OK, message_object(message))
        }
        None => RestAnswer::unknown_message(),
    }
}

fn create_channel_message(state: &DiscordState, channel_id: &str, body: &Value) -> RestAnswer {
    let has_content = ["content", "embeds", "components", "sticker_ids", "poll"]
        .iter()
        .any(|key| {
            body.get(key)
                .is_some_and(|value| !value.is_null() && value != "" && value != &json!([]))
        });
    if !has_content {
        return RestAnswer::error(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        );
    }
    let mut world = lock(&state.world);
    let message = DiscordMessage {
        id: world.snowflake(),
        channel_id: channel_id.to_string(),
        origin: MessageOrigin::Channel,
        history: vec![body.clone()],
        reactions: Vec::new(),
    };
    let reply = message_object(&message);
    world.messages.push(message);
    RestAnswer::json(StatusCode::OK, reply)
}

fn edit_channel_message(
    state: &DiscordState,
    channel_id: &str,
    message_id: &str,
    body: &Value,
) -> RestAnswer {
    let mut world = lock(&state.world);
    match world
        .message_mut(message_id)
        .filter(|message| message.channel_id == channel_id)
    {
        Some(message) => {
            push_version(message, body);
            RestAnswer::json(StatusCode::OK, message_object(message))
        }
        None => RestAnswer::unknown_message(),
    }
}

fn set_reaction(
    state: &DiscordState,
    channel_id: &str,
    message_id: &str,
    emoji: &str,
    present: bool,
) -> RestAnswer {
    let mut world = lock(&state.world);
    let Some(message) = world
        .message_mut(message_id)
        .filter(|message| message.channel_id == channel_id)
    else {
        return RestAnswer::unknown_message();
    };
    let already = message.reactions.iter().any(|reaction| reaction == emoji);
    if present && !already {
        message.reactions.push(emoji.to_string());
    }
    if !present {
        message.reactions.retain(|reaction| reaction != emoji);
    }
    RestAnswer::no_content()
}

/// Appends a version: the previous fields with those in `changes` replaced.
fn push_version(message: &mut DiscordMessage, changes: &Value) {
    let mut version = message.latest().clone();
    if let (Some(version), Some(changes)) = (version.as_object_mut(), changes.as_object()) {
        version.extend(changes.clone());
    }
    message.history.push(version);
}

/// A full Discord message object, as REST returns it.
fn message_object(message: &DiscordMessage) -> Value {
    let latest = message.latest();
    let (kind, webhook_id) = match message.origin {
        MessageOrigin::Channel => (0, None),
        MessageOrigin::Original { .. } => (20, Some(DISCORD_APPLICATION_ID.to_string())),
        MessageOrigin::Followup { .. } => (19, Some(DISCORD_APPLICATION_ID.to_string())),
    };
    let edited = (message.history.len() > 1).then(|| chrono::Utc::now().to_rfc3339());
    let mut object = json!({
        "id": message.id,
        "channel_id": message.channel_id,
        "type": kind,
        "content": latest["content"].as_str().unwrap_or_default(),
        "author": bot_user(false),
        "application_id": DISCORD_APPLICATION_ID.to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "edited_timestamp": edited,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": latest.get("embeds").cloned().unwrap_or_else(|| json!([])),
        "pinned": false,
        "flags": latest.get("flags").and_then(Value::as_u64).unwrap_or(0),
        "components": latest.get("components").cloned().unwrap_or_else(|| json!([])),
    });
    if let Some(webhook_id) = webhook_id {
        object["webhook_id"] = json!(webhook_id);
    }
    object
}

// The gateway side.

struct GatewayState {
    connections: Vec<GatewayConnection>,
    session: Option<GatewaySession>,
    ack_heartbeats: bool,
}

struct GatewayConnection {
    outbound: mpsc::UnboundedSender<GatewayCommand>,
    open: bool,
    /// Identified or resumed: dispatches may be sent to it.
    in_session: bool,
}

struct GatewaySession {
    id: String,
    /// Every dispatch of the session (READY included), for replay on RESUME.
    log: Vec<Value>,
}

enum GatewayCommand {
    Frame(String),
    Close(u16, String),
    Drop,
}

impl GatewayState {
    fn live_session_connection(&self) -> Option<&GatewayConnection> {
        self.connections
            .iter()
            .rev()
            .find(|connection| connection.open && connection.in_session)
    }

    /// Appends a dispatch with the next sequence number and returns the frame.
    fn log_dispatch(&mut self, event_name: &str, data: Value) -> Value {
        let session = self
            .session
            .as_mut()
            .expect("a gateway session exists (wait_for_session first)");
        let seq = session.log.len() as u64 + 1;
        let frame = json!({ "op": 0, "s": seq, "t": event_name, "d": data });
        session.log.push(frame.clone());
        frame
    }

    fn dispatched_interaction(&self, token: &str) -> Option<&Value> {
        self.session
            .as_ref()?
            .log
            .iter()
            .find(|frame| frame["t"] == "INTERACTION_CREATE" && frame["d"]["token"] == token)
    }

    fn knows_interaction(&self, token: &str) -> bool {
        self.dispatched_interaction(token).is_some()
    }

    /// The channel of an interaction dispatched here, else the fixtures' channel.
    fn interaction_channel(&self, token: &str) -> String {
        self.dispatched_interaction(token)
            .and_then(|frame| frame["d"]["channel_id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| DISCORD_CHANNEL_ID.to_string())
    }
}

async fn gateway_upgrade(
    State(slot): State<Arc<Mutex<Option<Arc<DiscordState>>>>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(state) = lock(&slot).clone() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    upgrade.on_upgrade(move |socket| serve_gateway(state, socket))
}

async fn serve_gateway(state: Arc<DiscordState>, mut socket: WebSocket) {
    let (outbound, mut commands) = mpsc::unbounded_channel();
    let connection_idx = {
        let mut gateway = lock(&state.gateway);
        gateway.connections.push(GatewayConnection {
            outbound,
            open: true,
            in_session: false,
        });
        gateway.connections.len() - 1
    };
    let mut hello = fixture_json("discord/gateway_hello.json");
    hello["d"]["heartbeat_interval"] = json!(HEARTBEAT_INTERVAL_MS);
    if socket.send(text_frame(&hello)).await.is_ok() {
        run_gateway_connection(&state, connection_idx, &mut socket, &mut commands).await;
    }
    let mut gateway = lock(&state.gateway);
    gateway.connections[connection_idx].open = false;
    gateway.connections[connection_idx].in_session = false;
}

async fn run_gateway_connection(
    state: &DiscordState,
    connection_idx: usize,
    socket: &mut WebSocket,
    commands: &mut mpsc::UnboundedReceiver<GatewayCommand>,
) {
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(GatewayCommand::Frame(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(GatewayCommand::Close(code, reason)) => {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                Some(GatewayCommand::Drop) | None => return,
            },
            received = socket.recv() => match received {
                Some(Ok(Message::Text(text))) => {
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                        let frame = CloseFrame { code: 4002, reason: "Error while decoding payload.".into() };
                        let _ = socket.send(Message::Close(Some(frame))).await;
                        return;
                    };
                    state.client_frames.push(frame.clone());
                    for reply in answer_client_frame(state, connection_idx, &frame) {
                        if socket.send(reply).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// What the gateway answers to one client frame.
fn answer_client_frame(state: &DiscordState, connection_idx: usize, frame: &Value) -> Vec<Message> {
    let mut gateway = lock(&state.gateway);
    match frame["op"].as_u64() {
        Some(1) if gateway.ack_heartbeats => vec![text_frame(&fixture_json(
            "discord/gateway_heartbeat_ack.json",
        ))],
        Some(2) => {
            let token = frame["d"]["token"].as_str().unwrap_or_default();
            if token.trim_start_matches("Bot ") != DISCORD_BOT_TOKEN {
                let close = CloseFrame {
                    code: 4004,
                    reason: "Authentication failed.".into(),
                };
                return vec![Message::Close(Some(close))];
            }
            let mut ready = fixture_json("discord/gateway_ready.json");
            let session_id = random_hex(16);
            ready["d"]["session_id"] = json!(session_id);
            ready["d"]["resume_gateway_url"] = json!(state.gateway_url);
            if let Some(shard) = frame["d"].get("shard") {
                ready["d"]["shard"] = shard.clone();
            }
            ready["s"] = json!(1);
            gateway.session = Some(GatewaySession {
                id: session_id,
                log: vec![ready.clone()],
            });
            gateway.connections[connection_idx].in_session = true;
            vec![text_frame(&ready)]
        }
        Some(6) => {
            let resumable = gateway
                .session
                .as_ref()
                .is_some_and(|session| frame["d"]["session_id"] == session.id.as_str());
            if !resumable {
                return vec![text_frame(&json!({ "op": 9, "d": false }))];
            }
            let last_seen = frame["d"]["seq"].as_u64().unwrap_or(0);
            let session = gateway.session.as_ref().expect("checked resumable above");
            let mut replies: Vec<Message> = session
                .log
                .iter()
                .filter(|logged| logged["s"].as_u64().is_some_and(|seq| seq > last_seen))
                .map(text_frame)
                .collect();
            // Discord ends the replay with RESUMED; its `d` carries only a trace.
            let resumed =
                gateway.log_dispatch("RESUMED", json!({ "_trace": ["[\"discord-peer\"]"] }));
            replies.push(text_frame(&resumed));
            gateway.connections[connection_idx].in_session = true;
            replies
        }
        _ => Vec::new(),
    }
}

fn text_frame(value: &Value) -> Message {
    Message::Text(value.to_string().into())
}
