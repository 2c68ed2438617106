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

/// Property tests of what the endpoint decodes once the signature check let
/// a body through: any bytes become an interaction or a refusal without a
/// panic, and the documented interactions decode.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/discord")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// What the endpoint does with a verified body, short of handling it.
    fn decode(body: &[u8]) -> Option<dc::Interaction> {
        let payload = serde_json::from_slice::<Value>(body).ok()?;
        if payload["type"].as_u64() == Some(1) {
            return None;
        }
        serde_json::from_value::<dc::Interaction>(payload).ok()
    }

    const INTERACTIONS: [&str; 5] = [
        "interaction_command_deploy.json",
        "interaction_command_rollback.json",
        "interaction_command_health.json",
        "interaction_command_rotate.json",
        "interaction_component_button_approve.json",
    ];

    #[test]
    fn the_documented_interactions_decode() {
        for name in INTERACTIONS {
            assert!(decode(&fixture(name)).is_some(), "{name}");
        }
    }

    /// A documented interaction with one value replaced by another JSON value.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let originals: Vec<Value> = INTERACTIONS
            .iter()
            .map(|name| serde_json::from_slice(&fixture(name)).expect("JSON"))
            .collect();
        let replacement = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
            Just(serde_json::json!({})),
            Just(serde_json::json!([{}])),
        ];
        (
            0..originals.len(),
            proptest::sample::select(vec![
                "/type",
                "/id",
                "/token",
                "/data",
                "/data/name",
                "/data/options",
                "/data/options/0/value",
                "/data/options/0/type",
                "/data/custom_id",
                "/member",
                "/member/user/id",
                "/channel_id",
                "/guild_id",
            ]),
            replacement,
        )
            .prop_map(move |(which, pointer, value)| {
                let mut changed = originals[which].clone();
                if let Some(slot) = changed.pointer_mut(pointer) {
                    *slot = value;
                }
                serde_json::to_vec(&changed).unwrap_or_default()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_body_decodes_or_is_refused_without_panicking(
            body in prop_oneof![proptest::collection::vec(any::<u8>(), 0..400), mutated()]
        ) {
            let _ = decode(&body);
        }
    }
}
