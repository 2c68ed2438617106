//! HTTP mode: Slack's slash-command, interactivity and Events API
//! endpoints on `deckhand serve`'s listener — `/slack/commands`,
//! `/slack/interactions` and `/slack/events`.
//!
//! Every request is checked with `verify::verify_slack` (v0 signature over
//! the raw body, 5-minute window, constant-time compare) before anything
//! else reads it; a forged, stale or altered request gets 401 and changes
//! nothing. (slack-morphism's own middleware would answer 400.) Then the
//! request is acknowledged at once — Slack allows 3 seconds — and the work
//! runs in a spawned task (`inbound`). `url_verification` is answered with its
//! challenge; `X-Slack-Retry-Num` redeliveries are acknowledged and take
//! effect once through the flow's dedupe on event_id.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use slack_morphism::prelude as sm;

use super::Context;
use super::inbound::{self, Inbound};
use crate::secret::Secret;
use crate::verify::{self, Verified};

/// Path of the slash-command endpoint.
pub const COMMANDS_PATH: &str = "/slack/commands";
/// Path of the interactivity endpoint.
pub const INTERACTIONS_PATH: &str = "/slack/interactions";
/// Path of the Events API endpoint.
pub const EVENTS_PATH: &str = "/slack/events";

/// The three endpoints, checking signatures with `signing_secret`.
pub fn routes(context: Arc<Context>, signing_secret: Secret) -> Router {
    let state = Arc::new(Endpoints {
        context,
        signing_secret,
    });
    Router::new()
        .route(COMMANDS_PATH, post(commands))
        .route(INTERACTIONS_PATH, post(interactions))
        .route(EVENTS_PATH, post(events))
        .with_state(state)
}

struct Endpoints {
    context: Arc<Context>,
    signing_secret: Secret,
}

/// A request body whose Slack signature checked out: the extractor every
/// handler takes, so nothing reads a request before it is verified.
struct Signed(Verified<Bytes>);

impl FromRequest<Arc<Endpoints>> for Signed {
    type Rejection = Response;

    async fn from_request(
        request: Request,
        endpoints: &Arc<Endpoints>,
    ) -> Result<Signed, Response> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, endpoints)
            .await
            .map_err(IntoResponse::into_response)?;
        let now = endpoints.context.app.now().timestamp();
        let secret = endpoints.signing_secret.expose().as_bytes();
        match verify::verify_slack(&headers, body, secret, now) {
            Ok(verified) => Ok(Signed(verified)),
            Err(error) => {
                endpoints.context.app.metrics.count(
                    "deckhand_slack_requests_refused_total",
                    ("reason", reason_of(&error)),
                );
                tracing::warn!(platform = "slack", error = %error, "refused an unverified slack request");
                Err((StatusCode::UNAUTHORIZED, format!("refused: {error}")).into_response())
            }
        }
    }
}

impl Endpoints {
    /// Acknowledges a verified delivery with an empty 200 and works on it
    /// after the answer has gone out.
    fn accept(&self, inbound: Inbound) -> Response {
        inbound::spawn(Arc::clone(&self.context), inbound);
        StatusCode::OK.into_response()
    }
}

fn reason_of(error: &verify::VerifyError) -> &'static str {
    match error {
        verify::VerifyError::StaleTimestamp { .. } => "stale",
        verify::VerifyError::BadSignature(_) => "signature",
        _ => "headers",
    }
}

async fn commands(State(endpoints): State<Arc<Endpoints>>, Signed(verified): Signed) -> Response {
    let form = form_fields(verified.as_ref());
    if field(&form, "ssl_check") == Some("1") {
        return StatusCode::OK.into_response();
    }
    match command_event(&form) {
        Ok(event) => {
            // An empty 200 acknowledges without a message; the answer
            // follows through the response_url or the channel.
            endpoints.accept(Inbound::Command(Box::new(event)))
        }
        Err(missing) => bad_request(&format!(
            "cannot read the slash command: missing \"{missing}\""
        )),
    }
}

async fn interactions(
    State(endpoints): State<Arc<Endpoints>>,
    Signed(verified): Signed,
) -> Response {
    let form = form_fields(verified.as_ref());
    let Some(payload) = field(&form, "payload") else {
        return bad_request("cannot read the interaction: missing \"payload\"");
    };
    match serde_json::from_str::<sm::SlackInteractionEvent>(payload) {
        Ok(event) => endpoints.accept(Inbound::Interaction(Box::new(event))),
        Err(error) => bad_request(&format!("cannot read the interaction: {error}")),
    }
}

async fn events(
    State(endpoints): State<Arc<Endpoints>>,
    headers: HeaderMap,
    Signed(verified): Signed,
) -> Response {
    let event = match serde_json::from_slice::<sm::SlackPushEvent>(verified.as_ref()) {
        Ok(event) => event,
        Err(error) => return bad_request(&format!("cannot read the event: {error}")),
    };
    match event {
        sm::SlackPushEvent::UrlVerification(verification) => {
            axum::Json(serde_json::json!({ "challenge": verification.challenge })).into_response()
        }
        sm::SlackPushEvent::EventCallback(callback) => {
            if let Some(retry) = headers.get("x-slack-retry-num") {
                tracing::info!(
                    platform = "slack",
                    event_id = %callback.event_id,
                    retry_num = %String::from_utf8_lossy(retry.as_bytes()),
                    "slack redelivered an event"
                );
            }
            endpoints.accept(Inbound::Event(Box::new(callback)))
        }
        sm::SlackPushEvent::AppRateLimited(limited) => {
            tracing::warn!(
                platform = "slack",
                minute = ?limited.minute_rate_limited,
                "slack dropped events: the app went over the Events API rate limit"
            );
            StatusCode::OK.into_response()
        }
    }
}

fn bad_request(message: &str) -> Response {
    tracing::warn!(
        platform = "slack",
        error = message,
        "unusable slack request"
    );
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The slash command in a form body; the name of the first missing field
/// otherwise.
fn command_event(form: &[(String, String)]) -> Result<sm::SlackCommandEvent, &'static str> {
    let required = |name: &'static str| field(form, name).ok_or(name);
    let response_url = url::Url::parse(required("response_url")?).map_err(|_| "response_url")?;
    Ok(sm::SlackCommandEvent::new(
        required("team_id")?.into(),
        required("channel_id")?.into(),
        required("user_id")?.into(),
        required("command")?.into(),
        response_url.into(),
        required("trigger_id")?.into(),
    )
    .opt_text(field(form, "text").map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Vec<(String, String)> {
        form_fields(body.as_bytes())
    }

    #[test]
    fn command_forms_become_events_or_name_what_is_missing() {
        let body = "team_id=T1&channel_id=C1&user_id=U1&command=%2Fdeploy&text=staging+develop&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1&trigger_id=1.2.3";
        let event = command_event(&form(body)).expect("a full form reads");
        assert_eq!(event.command.to_string(), "/deploy");
        assert_eq!(event.text.as_deref(), Some("staging develop"));
        assert_eq!(event.trigger_id.to_string(), "1.2.3");
        let cases = [
            ("team_id=T1", "response_url"),
            (
                "response_url=https%3A%2F%2Fx&channel_id=C1&user_id=U1&command=%2Fx&trigger_id=1",
                "team_id",
            ),
            (
                "response_url=not-a-url&team_id=T1&channel_id=C1&user_id=U1&command=%2Fx&trigger_id=1",
                "response_url",
            ),
        ];
        for (body, missing) in cases {
            assert_eq!(command_event(&form(body)).err(), Some(missing), "{body}");
        }
    }
}

/// Property tests of what the endpoints decode, after the signature check
/// let a body through: form fields, slash commands, interaction payloads
/// and Events API envelopes never panic on any bytes, and the documented
/// payloads decode.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/slack")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// A fixture with bytes changed, cut or added.
    fn mutated(name: &'static str) -> impl Strategy<Value = Vec<u8>> {
        let original = fixture(name);
        proptest::collection::vec((any::<usize>(), any::<u8>(), 0_u8..3), 1..8).prop_map(
            move |edits| {
                let mut bytes = original.clone();
                for (at, byte, kind) in edits {
                    let index = at % bytes.len().max(1);
                    match kind {
                        0 if !bytes.is_empty() => bytes[index] = byte,
                        1 => bytes.truncate(index),
                        _ => bytes.insert(index.min(bytes.len()), byte),
                    }
                }
                bytes
            },
        )
    }

    fn decode_everything(body: &[u8]) {
        let form = form_fields(body);
        let _ = command_event(&form);
        if let Some(payload) = field(&form, "payload") {
            let _ = serde_json::from_str::<sm::SlackInteractionEvent>(payload);
        }
        let _ = serde_json::from_slice::<sm::SlackPushEvent>(body);
    }

    #[test]
    fn the_documented_payloads_decode() {
        for name in [
            "slash_command_deploy.form",
            "slash_command_rollback.form",
            "slash_command_deploy_enterprise.form",
        ] {
            let form = form_fields(&fixture(name));
            assert!(command_event(&form).is_ok(), "{name}");
        }
        let form = form_fields(&fixture("interaction_block_actions_approve.form"));
        let payload = field(&form, "payload").expect("a payload field");
        assert!(serde_json::from_str::<sm::SlackInteractionEvent>(payload).is_ok());
        for name in ["event_reaction_added.json", "event_url_verification.json"] {
            assert!(
                serde_json::from_slice::<sm::SlackPushEvent>(&fixture(name)).is_ok(),
                "{name}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_body_decodes_or_is_refused_without_panicking(
            body in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..400),
                mutated("slash_command_deploy.form"),
                mutated("interaction_block_actions_approve.form"),
                mutated("event_reaction_added.json"),
            ]
        ) {
            decode_everything(&body);
        }
    }
}
