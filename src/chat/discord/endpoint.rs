//! The HTTP interactions endpoint, `POST /discord/interactions` on
//! Deckhand's listener: Discord's alternative to receiving interactions
//! over the gateway.
//!
//! The Ed25519 signature is checked with the application's public key
//! before anything else reads the body, and its timestamp must lie within
//! five minutes of now either way; a bad or missing signature, or a stale
//! or future timestamp, gets 401 and changes nothing. PING is answered with PONG in the HTTP response.
//! Every other interaction is answered 202 at once and handled exactly as
//! one from the gateway: its response goes to the callback endpoint, so the
//! deferred response is in place before the first edit.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use serenity::all as dc;
use tokio::time::Instant;

use super::{Discord, inbound, render};
use crate::verify::{ReplayWindow, SLACK_MAX_SKEW_SECS, verify_discord_within};

/// Where Discord's "Interactions Endpoint URL" points, on the listener.
pub const INTERACTIONS_PATH: &str = "/discord/interactions";

/// The endpoint's route, when `[discord]` has a public key; empty otherwise.
pub fn routes(discord: &Arc<Discord>) -> Router {
    if discord.settings.public_key.is_none() {
        return Router::new();
    }
    Router::new()
        .route(INTERACTIONS_PATH, post(interactions))
        .with_state(Arc::clone(discord))
}

async fn interactions(
    State(discord): State<Arc<Discord>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Instant::now();
    let Some(public_key) = discord.settings.public_key.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Discord documents no replay window; Deckhand keeps Slack's five
    // minutes both ways, PING included, and dedupes on the interaction id.
    let window = ReplayWindow {
        now: discord.app.now().timestamp(),
        max_skew_secs: SLACK_MAX_SKEW_SECS,
    };
    let verified = match verify_discord_within(&headers, body, public_key, window) {
        Ok(verified) => verified,
        Err(error) => {
            tracing::warn!(platform = "discord", error = %error, "refused an unverified interaction");
            return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
        }
    };
    let parsed = verified.try_map(|body| serde_json::from_slice::<Value>(&body));
    let Ok(payload) = parsed.map(|verified| verified.into_inner()) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    if payload["type"].as_u64() == Some(1) {
        return axum::Json(render::pong()).into_response();
    }
    let interaction = match serde_json::from_value::<dc::Interaction>(payload) {
        Ok(interaction) => interaction,
        Err(error) => {
            tracing::warn!(platform = "discord", error = %error, "cannot read an interaction");
            return (
                StatusCode::BAD_REQUEST,
                "not an interaction Deckhand can read",
            )
                .into_response();
        }
    };
    tokio::spawn(async move {
        inbound::on_interaction(&discord, interaction, received).await;
    });
    StatusCode::ACCEPTED.into_response()
}
