//! `POST /pagerduty/webhook`: PagerDuty v3 webhooks. The signature is checked before
//! anything else reads the request: a missing or wrong `X-PagerDuty-Signature` gets 401
//! and changes nothing. Verified deliveries go to `pagerduty::handle_webhook`; the
//! answer is 200 for everything it accepted or chose to ignore (an unmapped service, a
//! duplicate), 400 for a body that is not a webhook, and 500 when the store fails, so
//! PagerDuty retries.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::app::App;
use crate::pagerduty::{self, Connection, PagerDutyError, WebhookOutcome};
use crate::verify::verify_pagerduty;

/// The path PagerDuty's webhook subscription points at.
pub const WEBHOOK_PATH: &str = "/pagerduty/webhook";

/// What the handler needs.
struct WebhookState {
    app: Arc<App>,
    connection: Connection,
}

/// The webhook route, to merge into `http::router`.
pub fn router(app: Arc<App>, connection: Connection) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(webhook))
        .with_state(Arc::new(WebhookState { app, connection }))
}

async fn webhook(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verified =
        match verify_pagerduty(&headers, body, state.connection.secret.expose().as_bytes()) {
            Ok(verified) => verified,
            Err(error) => {
                tracing::warn!(error = %error, "PagerDuty webhook refused");
                return (StatusCode::UNAUTHORIZED, error.to_string()).into_response();
            }
        };
    let webhook_id = headers
        .get("X-Webhook-Id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty());
    match pagerduty::handle_webhook(&state.app, &state.connection, verified, webhook_id).await {
        Ok(outcome) => (StatusCode::OK, axum::Json(describe(&outcome))).into_response(),
        Err(PagerDutyError::BadPayload(reason)) => {
            tracing::warn!(error = %reason, "PagerDuty webhook unreadable");
            (
                StatusCode::BAD_REQUEST,
                format!("not a PagerDuty v3 webhook: {reason}"),
            )
                .into_response()
        }
        Err(error) => {
            tracing::error!(error = %error, "PagerDuty webhook failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the webhook could not be handled; see Deckhand's log",
            )
                .into_response()
        }
    }
}

fn describe(outcome: &WebhookOutcome) -> serde_json::Value {
    match outcome {
        WebhookOutcome::Opened { op_id } => json!({"status": "diagnosing", "operation": op_id}),
        WebhookOutcome::Updated { op_id } => json!({"status": "updated", "operation": op_id}),
        WebhookOutcome::Duplicate => json!({"status": "duplicate"}),
        WebhookOutcome::Unmapped { service_id } => {
            json!({"status": "ignored", "reason": format!("service {service_id} is not mapped")})
        }
        WebhookOutcome::Ignored { event_type } => {
            json!({"status": "ignored", "reason": format!("{event_type} is not acted on")})
        }
    }
}
