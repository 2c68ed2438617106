//! Socket Mode: Slack hands out a WebSocket URL (`apps.connections.open`
//! with the app-level token) and pushes slash commands, events and clicks
//! over it as envelopes, each to be acknowledged within 3 seconds.
//!
//! slack-morphism's listener does the connecting, pinging and reconnecting:
//! on a `disconnect` envelope it opens a fresh connection at once, and on a
//! dropped socket it reconnects, retrying every `RECONNECT_BACKOFF` while
//! Slack cannot be reached. It acknowledges an envelope only after our
//! callback returns, and its callbacks are plain `fn` pointers, so each
//! callback here only reads the adapter's context from the listener's user
//! state, spawns the real work (`inbound`) and returns. Slash commands are
//! acknowledged without a payload; their answers follow separately.
//!
//! A replayed envelope carries the same payload, so the flow's dedupe on the
//! command's trigger_id and the event's event_id makes it take effect once.

use std::sync::Arc;

use slack_morphism::prelude as sm;

use super::Context;
use super::inbound::{self, Inbound};
use crate::names::Platform;
use crate::secret::Secret;

/// Seconds between attempts to reach Slack while it cannot be reached.
const RECONNECT_BACKOFF_SECS: u64 = 5;

/// A running Socket Mode connection.
pub struct SocketMode {
    listener: sm::SlackClientSocketModeListener<sm::SlackClientHyperHttpsConnector>,
}

impl std::fmt::Debug for SocketMode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SocketMode")
    }
}

/// The callback ran; the envelope is acknowledged without a payload.
///
/// slack-morphism turns a command callback's `Ok(response)` into an ack
/// carrying that response as a message; an answer that follows later needs
/// a bare ack, which its error path sends when our error handler says 200.
#[derive(Debug, thiserror::Error)]
#[error("acknowledged; the answer follows separately")]
struct AckWithoutPayload;

/// Connects and starts receiving envelopes.
///
/// # Errors
/// When the app-level token cannot be registered with the listener.
pub async fn start(
    context: Arc<Context>,
    client: Arc<sm::SlackHyperClient>,
    app_token: &Secret,
) -> Result<SocketMode, sm::errors::SlackClientError> {
    context.app.set_connected(Platform::Slack, false);
    let environment = Arc::new(
        sm::SlackClientEventsListenerEnvironment::new(client)
            .with_error_handler(on_error)
            .with_user_state(context),
    );
    let callbacks = sm::SlackSocketModeListenerCallbacks::new()
        .with_hello_events(on_hello)
        .with_command_events(on_command)
        .with_push_events(on_push_event)
        .with_interaction_events(on_interaction);
    // One connection: Slack holds envelopes while it is being replaced and
    // redelivers what was not acknowledged, and dedupe makes that safe.
    let config = sm::SlackClientSocketModeConfig::new()
        .with_max_connections_count(1)
        .with_reconnect_timeout_in_seconds(RECONNECT_BACKOFF_SECS);
    let listener = sm::SlackClientSocketModeListener::new(&config, environment, callbacks);
    let token = sm::SlackApiToken::new(sm::SlackApiTokenValue::new(app_token.expose().to_string()));
    listener.listen_for(&token).await?;
    listener.start().await;
    Ok(SocketMode { listener })
}

impl SocketMode {
    /// Closes the connection.
    pub async fn shutdown(&self) {
        self.listener.shutdown().await;
    }
}

async fn context_of(state: &sm::SlackClientEventsUserState) -> Option<Arc<Context>> {
    state.read().await.get_user_state::<Arc<Context>>().cloned()
}

/// Slack's `hello`: the connection is up. Generic over the event because
/// slack-morphism does not export the hello event's type by any path.
async fn on_hello<HelloEvent>(
    _event: HelloEvent,
    _client: Arc<sm::SlackHyperClient>,
    state: sm::SlackClientEventsUserState,
) {
    if let Some(context) = context_of(&state).await {
        tracing::info!(platform = "slack", "socket mode connected");
        context.app.set_connected(Platform::Slack, true);
    }
}

async fn on_command(
    event: sm::SlackCommandEvent,
    _client: Arc<sm::SlackHyperClient>,
    state: sm::SlackClientEventsUserState,
) -> sm::UserCallbackResult<sm::SlackCommandEventResponse> {
    if let Some(context) = context_of(&state).await {
        inbound::spawn(context, Inbound::Command(Box::new(event)));
    }
    Err(Box::new(AckWithoutPayload))
}

async fn on_push_event(
    event: sm::SlackPushEventCallback,
    _client: Arc<sm::SlackHyperClient>,
    state: sm::SlackClientEventsUserState,
) -> sm::UserCallbackResult<()> {
    if let Some(context) = context_of(&state).await {
        inbound::spawn(context, Inbound::Event(Box::new(event)));
    }
    Ok(())
}

async fn on_interaction(
    event: sm::SlackInteractionEvent,
    _client: Arc<sm::SlackHyperClient>,
    state: sm::SlackClientEventsUserState,
) -> sm::UserCallbackResult<sm::SlackInteractionResponse> {
    if let Some(context) = context_of(&state).await {
        inbound::spawn(context, Inbound::Interaction(Box::new(event)));
    }
    Ok(sm::SlackInteractionResponse::Empty)
}

/// Decides the ack after a callback error and hears about socket
/// failures. Always a 2xx: an envelope Deckhand could not use would fail
/// the same way when redelivered.
fn on_error(
    error: Box<dyn std::error::Error + Send + Sync + 'static>,
    _client: Arc<sm::SlackHyperClient>,
    state: sm::SlackClientEventsUserState,
) -> sm::HttpStatusCode {
    if error.downcast_ref::<AckWithoutPayload>().is_some() {
        return sm::HttpStatusCode::OK;
    }
    let socket_failed = matches!(
        error.downcast_ref::<sm::errors::SlackClientError>(),
        Some(sm::errors::SlackClientError::SocketModeProtocolError(_))
    );
    if socket_failed {
        tracing::warn!(platform = "slack", error = %error, "socket mode connection failed; reconnecting");
        // The handler is a plain fn, so it cannot await the state's lock;
        // nothing writes the state after start, so try_read succeeds.
        if let Ok(storage) = state.try_read()
            && let Some(context) = storage.get_user_state::<Arc<Context>>()
        {
            context.app.set_connected(Platform::Slack, false);
        }
    } else {
        tracing::warn!(platform = "slack", error = %error, "socket mode envelope could not be used");
    }
    sm::HttpStatusCode::OK
}
