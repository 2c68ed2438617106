//! Shared integration-test support: workspaces (a copy of the shipped config
//! with its own store) and the `deckhand` binary; local peers that speak Slack's, Discord's
//! and PagerDuty's documented wire formats, fixture loading, and polling.
//!
//! Each peer listens on `127.0.0.1:0` inside the test's tokio runtime, records
//! every request it receives in order, lets the test script replies, and lets
//! the test push events to the connected client. Peers follow the fixture files
//! under `tests/fixtures/` (the platforms' documented shapes), not whatever
//! Deckhand happens to send. Tests wait for conditions with [`wait_for`] and a
//! deadline, never with bare sleeps.
//!

#![allow(dead_code)] // Each test module uses a different part of the support API.

pub mod demo;
pub mod discord_peer;
pub mod docker;
pub mod pagerduty_peer;
pub mod slack_peer;
pub mod sshd;
pub mod workspace;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::Value;

/// How long tests wait for a peer-side condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often [`wait_for`] re-checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Absolute path of a file under `tests/fixtures/`.
pub fn fixture_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// The exact bytes of a fixture file, e.g. `slack/slash_command_deploy.form`.
pub fn fixture_bytes(relative: &str) -> Vec<u8> {
    let path = fixture_path(relative);
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("reading fixture {}: {error}", path.display()))
}

/// A JSON fixture, parsed.
pub fn fixture_json(relative: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(relative))
        .unwrap_or_else(|error| panic!("parsing fixture {relative}: {error}"))
}

/// The current unix time in seconds, for signing requests.
pub fn now_unix() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the test machine's clock is after 1970");
    i64::try_from(since_epoch.as_secs()).expect("unix seconds fit in i64")
}

/// Polls `probe` until it returns `Some`, or panics naming `what` once
/// `deadline` has passed.
pub async fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe() {
            return found;
        }
        if started.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// One HTTP request as a peer received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Upper-case HTTP method.
    pub method: String,
    /// Percent-decoded path, e.g. `/api/v10/channels/1/messages/2/reactions/✅/@me`.
    pub path: String,
    /// Query parameters in the order sent.
    pub query: Vec<(String, String)>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed by content type: JSON as sent, a form as an object of
    /// strings, other text as a string, nothing as `null`.
    pub body: Value,
    /// The body bytes exactly as received.
    pub raw_body: Vec<u8>,
    /// The status the peer answered with.
    pub status: u16,
}

impl RecordedRequest {
    fn new(method: &Method, uri: &Uri, headers: &HeaderMap, raw_body: &Bytes) -> Self {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let content_type = headers
            .iter()
            .find(|(name, _)| name == "content-type")
            .map(|(_, value)| value.clone());
        Self {
            method: method.as_str().to_string(),
            path: percent_decode(uri.path()),
            query: uri
                .query()
                .map(|query| {
                    url::form_urlencoded::parse(query.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default(),
            body: parse_body(content_type.as_deref(), raw_body),
            raw_body: raw_body.to_vec(),
            headers,
            status: 0,
        }
    }

    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Parses a request body the way the platforms do: by content type.
fn parse_body(content_type: Option<&str>, raw_body: &[u8]) -> Value {
    if raw_body.is_empty() {
        return Value::Null;
    }
    let mime = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match mime.as_str() {
        "application/x-www-form-urlencoded" => Value::Object(
            url::form_urlencoded::parse(raw_body)
                .into_owned()
                .map(|(key, value)| (key, Value::String(value)))
                .collect(),
        ),
        _ => serde_json::from_slice(raw_body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw_body).into_owned())),
    }
}

/// Decodes `%XX` escapes in a URL path; invalid escapes are kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        let escaped = (bytes[idx] == b'%')
            .then(|| bytes.get(idx + 1..idx + 3))
            .flatten()
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                idx += 3;
            }
            None => {
                decoded.push(bytes[idx]);
                idx += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// An append-only, shareable list: what a peer saw, in order.
#[derive(Debug)]
pub struct Journal<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Journal<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Default for Journal<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T: Clone> Journal<T> {
    /// Appends one entry and returns its index.
    pub fn push(&self, entry: T) -> usize {
        let mut entries = lock(&self.0);
        entries.push(entry);
        entries.len() - 1
    }

    /// A copy of every entry so far.
    pub fn all(&self) -> Vec<T> {
        lock(&self.0).clone()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Replies a test has queued for requests that match a predicate. Each entry
/// answers `remaining` matching requests and is then used up; the earliest
/// queued matching entry wins.
pub struct ScriptBook<R> {
    entries: Mutex<Vec<ScriptEntry<R>>>,
}

struct ScriptEntry<R> {
    applies_to: Box<dyn Fn(&RecordedRequest) -> bool + Send + Sync>,
    remaining: usize,
    reply: R,
}

impl<R> Default for ScriptBook<R> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<R: Clone> ScriptBook<R> {
    /// Queues `reply` for the next `times` requests accepted by `applies_to`.
    pub fn push(
        &self,
        applies_to: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static,
        times: usize,
        reply: R,
    ) {
        lock(&self.entries).push(ScriptEntry {
            applies_to: Box::new(applies_to),
            remaining: times,
            reply,
        });
    }

    /// Takes the scripted reply for `request`, if one is queued.
    pub fn take(&self, request: &RecordedRequest) -> Option<R> {
        let mut entries = lock(&self.entries);
        let entry = entries
            .iter_mut()
            .find(|entry| entry.remaining > 0 && (entry.applies_to)(request))?;
        entry.remaining -= 1;
        Some(entry.reply.clone())
    }
}

/// A running local server; the task stops when this is dropped.
#[derive(Debug)]
pub struct PeerServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl PeerServer {
    /// Serves `router` on a fresh `127.0.0.1:0` listener.
    pub async fn start(router: Router) -> Self {
        Self::start_with(|_| router).await
    }

    /// Binds a fresh `127.0.0.1:0` listener, then serves the router that
    /// `build` makes for that address (for peers whose replies contain their
    /// own URL).
    pub async fn start_with(build: impl FnOnce(SocketAddr) -> Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0 succeeds on the test machine");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let router = build(addr);
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the peer server runs until the test ends");
        });
        Self { addr, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A random lower-case hex string of `n_bytes` bytes.
pub fn random_hex(n_bytes: usize) -> String {
    (0..n_bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Locks a peer's state. A poisoned lock means a peer task panicked, which
/// already failed the test, so recovering the data is fine.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
