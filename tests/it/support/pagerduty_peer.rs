//! A local PagerDuty REST API (`POST {base}/incidents/{id}/notes`) and a
//! sender of signed v3 webhooks.
//!
//! The REST side checks what PagerDuty's REST API v2 requires of a write:
//! `Authorization: Token token=<key>` and a `From` header with a user's email.
//! Errors use PagerDuty's `{"error":{"message":…,"code":…}}` shape; the codes
//! follow PagerDuty's published error-code list (there is no fixture for
//! them). Webhooks carry the headers of real deliveries (`tests/fixtures/README.md`):
//! `X-PagerDuty-Signature: v1=<hex>`, `X-Webhook-Id`, `X-Webhook-Subscription`,
//! `User-Agent: PagerDuty-Webhook/V3.0`.
//!
//! Not modelled: incidents themselves (any id is accepted) and other endpoints.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Journal, PeerServer, RecordedRequest, ScriptBook, lock, random_hex, wait_for};

/// The REST API key the peer accepts. TEST-ONLY.
pub const PAGERDUTY_API_TOKEN: &str = "u+FAKEfakeFAKEfake00";
/// The email of the only user the peer knows (for the `From` header).
pub const PAGERDUTY_FROM_EMAIL: &str = "deckhand@acme.example";
/// The webhook subscription id sent in `X-Webhook-Subscription`.
pub const PAGERDUTY_SUBSCRIPTION_ID: &str = "PSUBDECK1";

/// A reply the test queues for the next note requests.
#[derive(Debug, Clone, PartialEq)]
pub enum PagerDutyReply {
    /// HTTP 429 with PagerDuty's rate-limit error body.
    RateLimited,
    /// Any status and JSON body.
    Raw {
        /// HTTP status.
        status: u16,
        /// JSON body.
        body: Value,
    },
}

/// A note the peer stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentNote {
    /// The incident id from the path.
    pub incident_id: String,
    /// The `From` header.
    pub from: String,
    /// `note.content`.
    pub content: String,
}

/// The running local PagerDuty. Dropping it stops the server.
pub struct PagerDutyPeer {
    state: Arc<PagerDutyState>,
    server: PeerServer,
}

impl PagerDutyPeer {
    /// Starts a peer on `127.0.0.1:0` accepting [`PAGERDUTY_API_TOKEN`] from
    /// [`PAGERDUTY_FROM_EMAIL`].
    pub async fn start() -> Self {
        let state = Arc::new(PagerDutyState::default());
        let router = Router::new()
            .fallback(rest_request)
            .with_state(Arc::clone(&state));
        let server = PeerServer::start(router).await;
        Self { state, server }
    }

    /// `http://127.0.0.1:PORT`, standing in for `https://api.pagerduty.com`.
    pub fn base_url(&self) -> String {
        self.server.http_url()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.all()
    }

    /// Notes stored for `incident_id`, in order.
    pub fn notes(&self, incident_id: &str) -> Vec<IncidentNote> {
        lock(&self.state.notes)
            .iter()
            .filter(|note| note.incident_id == incident_id)
            .cloned()
            .collect()
    }

    /// The next `times` note requests get `reply` (and store nothing).
    pub fn script(&self, times: usize, reply: PagerDutyReply) {
        self.state.scripts.push(|_| true, times, reply);
    }

    /// Waits until `incident_id` has `n` notes; returns them.
    pub async fn wait_for_notes(
        &self,
        incident_id: &str,
        n: usize,
        deadline: Duration,
    ) -> Vec<IncidentNote> {
        wait_for(
            &format!("{n} note(s) on incident {incident_id}"),
            deadline,
            || {
                let notes = self.notes(incident_id);
                (notes.len() >= n).then_some(notes)
            },
        )
        .await
    }
}

/// PagerDuty's v3 signature for `body`: `v1=` + hex HMAC-SHA256(secret, body).
pub fn pagerduty_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends a v3 webhook to `url` as PagerDuty does, with a fresh `X-Webhook-Id`;
/// returns the response and the id used.
pub async fn signed_webhook(url: &str, secret: &str, body: &[u8]) -> (reqwest::Response, String) {
    let webhook_id = random_hex(16);
    let response = webhook_with(url, body, &pagerduty_signature(secret, body), &webhook_id).await;
    (response, webhook_id)
}

/// Sends a webhook with exactly this signature header and webhook id (for
/// redeliveries, rotated secrets, or forged signatures).
pub async fn webhook_with(
    url: &str,
    body: &[u8],
    signature_header: &str,
    webhook_id: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "PagerDuty-Webhook/V3.0")
        .header("X-PagerDuty-Signature", signature_header)
        .header("X-Webhook-Id", webhook_id)
        .header("X-Webhook-Subscription", PAGERDUTY_SUBSCRIPTION_ID)
        .body(body.to_vec())
        .send()
        .await
        .unwrap_or_else(|error| panic!("posting the webhook to {url}: {error}"))
}

#[derive(Default)]
struct PagerDutyState {
    requests: Journal<RecordedRequest>,
    scripts: ScriptBook<PagerDutyReply>,
    notes: Mutex<Vec<IncidentNote>>,
}

struct RestAnswer {
    status: StatusCode,
    body: Value,
}

impl RestAnswer {
    fn error(status: StatusCode, code: u64, message: &str, errors: &[&str]) -> Self {
        Self {
            status,
            body: json!({ "error": { "message": message, "code": code, "errors": errors } }),
        }
    }
}

impl IntoResponse for RestAnswer {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body.to_string(),
        )
            .into_response()
    }
}

async fn rest_request(
    State(state): State<Arc<PagerDutyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> RestAnswer {
    let mut request = RecordedRequest::new(&method, &uri, &headers, &body);
    let answer = match state.scripts.take(&request) {
        Some(PagerDutyReply::RateLimited) => RestAnswer::error(
            StatusCode::TOO_MANY_REQUESTS,
            2020,
            "Rate Limit Exceeded",
            &[],
        ),
        Some(PagerDutyReply::Raw { status, body }) => RestAnswer {
            status: StatusCode::from_u16(status).expect("scripted statuses are valid"),
            body,
        },
        None => answer(&state, &request),
    };
    request.status = answer.status.as_u16();
    state.requests.push(request);
    answer
}

fn answer(state: &PagerDutyState, request: &RecordedRequest) -> RestAnswer {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let ["incidents", incident_id, "notes"] = segments.as_slice() else {
        return RestAnswer::error(StatusCode::NOT_FOUND, 2100, "Not Found", &[]);
    };
    if request.method != "POST" {
        return RestAnswer::error(StatusCode::NOT_FOUND, 2100, "Not Found", &[]);
    }
    if request.header("authorization") != Some(&format!("Token token={PAGERDUTY_API_TOKEN}")) {
        return RestAnswer::error(StatusCode::UNAUTHORIZED, 2006, "Authentication failed", &[]);
    }
    let Some(from) = request.header("from") else {
        return RestAnswer::error(
            StatusCode::BAD_REQUEST,
            2001,
            "Invalid Input Provided",
            &["The From header is required for this request"],
        );
    };
    if from != PAGERDUTY_FROM_EMAIL {
        return RestAnswer::error(
            StatusCode::BAD_REQUEST,
            2001,
            "Invalid Input Provided",
            &["Requester User Not Found"],
        );
    }
    let Some(content) = request.body["note"]["content"].as_str() else {
        return RestAnswer::error(
            StatusCode::BAD_REQUEST,
            2001,
            "Invalid Input Provided",
            &["Note content is required"],
        );
    };
    lock(&state.notes).push(IncidentNote {
        incident_id: incident_id.to_string(),
        from: from.to_string(),
        content: content.to_string(),
    });
    RestAnswer {
        status: StatusCode::CREATED,
        body: json!({
            "note": {
                "id": format!("PN{}", random_hex(3).to_uppercase()),
                "user": {
                    "id": "PDECKHD",
                    "type": "user_reference",
                    "summary": "Deckhand",
                    "self": "https://api.pagerduty.com/users/PDECKHD",
                    "html_url": "https://acme.pagerduty.com/users/PDECKHD"
                },
                "channel": { "summary": "The PagerDuty website or APIs" },
                "content": content,
                "created_at": chrono::Utc::now().to_rfc3339()
            }
        }),
    }
}
