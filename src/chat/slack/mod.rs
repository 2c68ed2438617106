//! The Slack adapter, through slack-morphism: slash commands, live
//! operation messages, approvals by reaction and button, and audit posts.
//!
//! - `socket` — Socket Mode (the default; no public URL needed).
//! - `events` — HTTP mode: the slash-command, interactivity and Events API
//!   endpoints on `deckhand serve`'s listener, signature-checked first.
//! - `inbound` — what either transport received, translated into the flow.
//! - `deliver` — the flow's outbound messages, posted and edited in lanes.
//! - `web` — the Web API calls, with rate limits honoured.
//! - `render` — `Reply` → Block Kit, pure and snapshot-tested.
//! - `groups` — user group memberships for roles, cached.
//! - `manifest` — the Slack app manifest, generated from `commands/`.
//!
//! Like every adapter it only translates: parsing, policy, approvals,
//! dedupe and audit are the flow's. Only this module (and its children)
//! names slack-morphism types. Tokens come in a [`SlackTokens`], which `main`
//! builds from the environment variables config names, so tests hand them
//! over directly.

mod deliver;
mod events;
mod groups;
mod inbound;
pub mod manifest;
pub mod render;
mod socket;
mod web;

use std::sync::Arc;
use std::time::Duration;

use slack_morphism::prelude as sm;

use crate::app::App;
use crate::chat::progress;
use crate::config::{SlackMode, SlackSettings};
use crate::names::Platform;
use crate::secret::Secret;

pub use events::{COMMANDS_PATH, EVENTS_PATH, INTERACTIONS_PATH};
pub use web::WebError;

/// How often at most an operation's message is edited.
pub const EDIT_INTERVAL: Duration = Duration::from_secs(1);

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// The config has no `[slack]` section.
    #[error("the config has no [slack] section")]
    NotConfigured,
    /// A token's environment variable is not set.
    #[error("environment variable \"{var}\" ({what}) is not set or empty")]
    MissingToken {
        /// The variable config names.
        var: String,
        /// Which token it should hold.
        what: &'static str,
    },
    /// The machine's CA certificates could not be loaded.
    #[error("cannot load the CA certificates for Slack's TLS")]
    Tls(#[source] std::io::Error),
    /// Slack refused the bot token.
    #[error("slack refused the bot token from \"{var}\"")]
    BotToken {
        /// The variable it came from.
        var: String,
        /// Slack's answer.
        #[source]
        source: WebError,
    },
    /// Socket Mode could not be set up with the app-level token.
    #[error("cannot start socket mode: {detail}")]
    SocketMode {
        /// What slack-morphism said.
        detail: String,
    },
}

/// The adapter's secrets, read by `main` from the variables config names.
#[derive(Debug, Clone)]
pub struct SlackTokens {
    /// The bot token (`xoxb-…`), for the Web API.
    pub bot_token: Secret,
    /// The app-level token (`xapp-…`), for Socket Mode.
    pub app_token: Option<Secret>,
    /// The signing secret, for HTTP mode.
    pub signing_secret: Option<Secret>,
}

impl SlackTokens {
    /// Reads the tokens `settings` names from the environment; those the
    /// mode needs must be set.
    ///
    /// # Errors
    /// A variable the mode needs is unset or empty.
    pub fn from_env(settings: &SlackSettings) -> Result<SlackTokens, SlackError> {
        let read = Secret::from_env;
        let require = |var: &str, what: &'static str| {
            read(var).ok_or_else(|| SlackError::MissingToken {
                var: var.to_string(),
                what,
            })
        };
        let bot_token = require(&settings.bot_token_env, "the bot token")?;
        let app_token = match (&settings.mode, &settings.app_token_env) {
            (SlackMode::Socket, Some(var)) => Some(require(var, "the app-level token")?),
            (_, var) => var.as_deref().and_then(read),
        };
        let signing_secret = match (&settings.mode, &settings.signing_secret_env) {
            (SlackMode::Http, Some(var)) => Some(require(var, "the signing secret")?),
            (_, var) => var.as_deref().and_then(read),
        };
        Ok(SlackTokens {
            bot_token,
            app_token,
            signing_secret,
        })
    }
}

/// What inbound handlers and delivery share: long-lived, one per adapter.
#[derive(Debug)]
struct Context {
    app: Arc<App>,
    web: web::Web,
    groups: groups::Groups,
    delivery: deliver::Delivery,
    /// Permits for inbound work; see `inbound::MAX_IN_FLIGHT`.
    in_flight: tokio::sync::Semaphore,
    /// Pauses in inbound deliveries; see `inbound::LULL`.
    lull: inbound::Lull,
    /// The bot's own user id, so its own reactions are ignored.
    bot_user_id: Option<String>,
}

/// The running adapter.
#[derive(Debug)]
pub struct SlackAdapter {
    context: Arc<Context>,
    socket: Option<socket::SocketMode>,
    signing_secret: Option<Secret>,
}

/// Starts the adapter `app.config.slack` describes: checks the bot token
/// (`auth.test`), starts delivering the flow's Slack messages, and in
/// Socket Mode connects. In HTTP mode, serve [`SlackAdapter::routes`].
///
/// # Errors
/// `[slack]` is missing, a token the mode needs is missing, Slack refuses
/// the bot token, or Socket Mode cannot start.
pub async fn start(app: &Arc<App>, tokens: SlackTokens) -> Result<SlackAdapter, SlackError> {
    let Some(settings) = app.config.slack.clone() else {
        return Err(SlackError::NotConfigured);
    };
    let client = Arc::new(sm::SlackClient::new(connector(&settings)?));
    let web = web::Web::new(Arc::clone(&client), &tokens.bot_token);
    let bot_user_id = check_bot_token(&web, &settings).await?;
    let context = Arc::new(Context {
        app: Arc::clone(app),
        web,
        groups: groups::Groups::new(&app.config, settings.usergroup_ttl),
        delivery: deliver::Delivery::new(),
        in_flight: tokio::sync::Semaphore::new(inbound::MAX_IN_FLIGHT),
        lull: inbound::Lull::new(),
        bot_user_id,
    });
    app.directory.register(
        Platform::Slack,
        Arc::new(groups::Directory {
            context: Arc::downgrade(&context),
        }),
    );
    let outbound = deliver::tap(Arc::clone(&context), app.outbox.subscribe(Platform::Slack));
    deliver::start(
        Arc::clone(&context),
        progress::coalesce(outbound, EDIT_INTERVAL),
    );
    let socket = match (settings.mode, &tokens.app_token) {
        (SlackMode::Socket, Some(app_token)) => Some(
            socket::start(Arc::clone(&context), client, app_token)
                .await
                .map_err(|error| SlackError::SocketMode {
                    detail: error.to_string(),
                })?,
        ),
        (SlackMode::Socket, None) => {
            return Err(SlackError::MissingToken {
                var: settings.app_token_env.clone().unwrap_or_default(),
                what: "the app-level token",
            });
        }
        (SlackMode::Http, _) => {
            app.set_connected(Platform::Slack, true);
            None
        }
    };
    tracing::info!(platform = "slack", mode = ?settings.mode, "slack adapter started");
    Ok(SlackAdapter {
        context,
        socket,
        signing_secret: tokens.signing_secret,
    })
}

impl SlackAdapter {
    /// The HTTP-mode endpoints ([`COMMANDS_PATH`], [`INTERACTIONS_PATH`],
    /// [`EVENTS_PATH`]) to merge into the listener's router; none in Socket
    /// Mode or without a signing secret.
    pub fn routes(&self) -> axum::Router {
        match &self.signing_secret {
            Some(secret) if self.socket.is_none() => {
                events::routes(Arc::clone(&self.context), secret.clone())
            }
            _ => axum::Router::new(),
        }
    }

    /// Whether every message the flow handed to the adapter has been
    /// delivered: nothing arrived for longer than the edit interval (so no
    /// coalesced edit is still waiting) and every lane is empty.
    pub fn is_idle(&self) -> bool {
        // The margin covers the hop from the coalescer into a lane.
        self.context
            .delivery
            .is_idle(EDIT_INTERVAL + Duration::from_millis(500))
    }

    /// Closes the Socket Mode connection, then gives pending messages up to
    /// `grace` to reach Slack (the last edit of each operation included).
    pub async fn shutdown(self, grace: Duration) {
        if let Some(socket) = &self.socket {
            socket.shutdown().await;
        }
        self.context.app.set_connected(Platform::Slack, false);
        let deadline = tokio::time::Instant::now() + grace;
        while !self.is_idle() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A hyper connector for the configured API base: HTTPS only, unless the
/// base itself is plain HTTP (a local Slack stand-in).
fn connector(settings: &SlackSettings) -> Result<sm::SlackClientHyperHttpsConnector, SlackError> {
    let roots = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(SlackError::Tls)?;
    let https = if settings.api_url.starts_with("http://") {
        roots.https_or_http().enable_http1().build()
    } else {
        roots.https_only().enable_all_versions().build()
    };
    Ok(sm::SlackClientHyperConnector::with_connector(https).with_slack_api_url(&settings.api_url))
}

/// `auth.test`: a refused token stops start-up; Slack being unreachable
/// does not (deliveries retry).
async fn check_bot_token(
    web: &web::Web,
    settings: &SlackSettings,
) -> Result<Option<String>, SlackError> {
    match web.auth_test().await {
        Ok(user_id) => Ok(Some(user_id)),
        Err(error) if error.is_retryable() => {
            tracing::warn!(platform = "slack", error = %error, "cannot reach slack to check the bot token; continuing");
            Ok(None)
        }
        Err(error) => Err(SlackError::BotToken {
            var: settings.bot_token_env.clone(),
            source: error,
        }),
    }
}
