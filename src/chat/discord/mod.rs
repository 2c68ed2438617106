//! The Discord adapter, with serenity: application commands registered from
//! the catalog, interactions from the gateway or the signed HTTP endpoint,
//! deferred responses edited as operations move, approvals by button and
//! by ✅/❌ reaction, and the audit channel.
//!
//! Like every adapter it only translates: interactions become a `Request`
//! for `flow::handle_request`, buttons and reactions go to `chat::approval`,
//! and `Outbound` messages (coalesced by `chat::progress`) become REST calls.
//!
//! - `commands`: declarations of the application commands, and an
//!   interaction's options back to a command line.
//! - `registration`: compare with what Discord has, overwrite if different.
//! - `gateway`: serenity's client (intents GUILDS | GUILD_MESSAGE_REACTIONS).
//! - `endpoint`: `POST /discord/interactions` on Deckhand's listener.
//! - `inbound`: interactions and reactions, from either transport.
//! - `outbound`: one worker per operation message, 429-safe, moving to a
//!   channel message before the interaction token expires.
//! - `render`: every JSON body, pure and snapshot-tested.
//! - `rest`: REST calls through serenity's `Http`.
//!
//! Not here: parsing, policy, approvals, dedupe and audit (they live once,
//! in `flow`, `policy` and `chat::approval`).

pub mod commands;
mod endpoint;
mod gateway;
mod inbound;
mod members;
mod outbound;
mod registration;
pub mod render;
mod rest;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serenity::model::id::ApplicationId;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::app::App;
use crate::chat::progress;
use crate::config::{DiscordMode, DiscordSettings};
use crate::names::Platform;
use crate::secret::Secret;

pub use endpoint::{INTERACTIONS_PATH, routes};
pub use rest::RestError;

/// Discord's interaction tokens last 15 minutes; Deckhand moves a running
/// operation to a channel message one minute before that.
pub const INTERACTION_TOKEN_USE: Duration = Duration::from_secs(14 * 60);
/// How long Discord accepts an interaction token.
const INTERACTION_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// At most one edit of an operation's message per this interval.
pub const EDIT_INTERVAL: Duration = Duration::from_secs(1);

/// How the adapter runs: the bot token and its timings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bot token.
    pub token: Secret,
    /// How long an interaction's token is used for edits before the
    /// operation continues in a channel message.
    pub interaction_token_use: Duration,
    /// At most one edit of an operation's message per this interval.
    pub edit_interval: Duration,
}

impl Options {
    /// The standard timings with this token.
    pub fn with_token(token: Secret) -> Options {
        Options {
            token,
            interaction_token_use: INTERACTION_TOKEN_USE,
            edit_interval: EDIT_INTERVAL,
        }
    }

    /// Reads the bot token from the environment variable `[discord]` names.
    ///
    /// # Errors
    /// When the variable is unset or empty.
    pub fn from_env(settings: &DiscordSettings) -> Result<Options, DiscordError> {
        Secret::from_env(&settings.token_env)
            .map(Options::with_token)
            .ok_or_else(|| DiscordError::MissingToken(settings.token_env.clone()))
    }
}

/// Why the adapter cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    /// The config has no `[discord]` section.
    #[error("the config has no [discord] section")]
    NotConfigured,
    /// The token variable is not set.
    #[error("environment variable \"{0}\" (named by [discord] token_env) holds no bot token")]
    MissingToken(String),
    /// The application id is not a snowflake.
    #[error("[discord] application_id \"{0}\" is not a Discord id")]
    BadApplicationId(String),
    /// Serenity could not build the gateway client.
    #[error("building the Discord gateway client: {0}")]
    Gateway(String),
}

/// The running adapter, shared by its tasks and the HTTP endpoint.
#[derive(Debug)]
pub struct Discord {
    app: Arc<App>,
    settings: DiscordSettings,
    options: Options,
    application_id: ApplicationId,
    rest: rest::Rest,
    interactions: Interactions,
    /// The bot's user id once READY told it; reactions by it are ignored.
    bot_user_id: OnceLock<String>,
}

/// Starts the adapter: registers the application commands (when they
/// changed), connects the gateway in gateway mode, and delivers the
/// outbox's Discord messages until the process ends. In http mode mount
/// [`routes`] on the listener.
///
/// # Errors
/// When `[discord]` is missing or the gateway client cannot be built.
/// Registration failures are logged, not fatal: Discord keeps the commands
/// registered before.
pub async fn start(app: &Arc<App>, options: Options) -> Result<Arc<Discord>, DiscordError> {
    let settings = app
        .config
        .discord
        .clone()
        .ok_or(DiscordError::NotConfigured)?;
    let application_id: ApplicationId = settings
        .application_id
        .parse()
        .map_err(|_| DiscordError::BadApplicationId(settings.application_id.clone()))?;
    let http = rest::build_http(&settings.api_url, &options.token, application_id);
    let (http, gateway_client) = match settings.mode {
        DiscordMode::Gateway => {
            let (client, events) = gateway::build_client(http).await?;
            (Arc::clone(&client.http), Some((client, events)))
        }
        DiscordMode::Http => (Arc::new(http), None),
    };
    let rest = rest::Rest::new(http, &settings.api_url, &options.token);
    let discord = Arc::new(Discord {
        app: Arc::clone(app),
        settings,
        options,
        application_id,
        rest,
        interactions: Interactions::default(),
        bot_user_id: OnceLock::new(),
    });
    app.directory
        .register(Platform::Discord, Arc::new(members::Members::new(&discord)));
    let registered = registration::register(&discord).await;
    let outbox = app.outbox.subscribe(Platform::Discord);
    outbound::spawn(
        Arc::clone(&discord),
        progress::coalesce(outbox, discord.options.edit_interval),
    );
    match gateway_client {
        Some((client, events)) => gateway::run(Arc::clone(&discord), client, events),
        None => app.set_connected(Platform::Discord, registered),
    }
    Ok(discord)
}

impl Discord {
    fn is_own_user(&self, user_id: &str) -> bool {
        self.bot_user_id.get().map(String::as_str) == Some(user_id)
            || self.settings.application_id == user_id
    }
}

/// An interaction whose token may still be used to edit its original
/// response and send follow-ups.
#[derive(Debug, Clone)]
struct InteractionRef {
    /// The interaction token: a credential for 15 minutes.
    token: Secret,
    /// When Deckhand received it.
    received: Instant,
    /// Its guild, for message links.
    guild_id: Option<String>,
}

/// What the adapter knows about interactions in flight and recent: which
/// operation each accepted interaction shows, the newest interaction per
/// person and channel (for private messages), and requests still being
/// answered per channel, so an operation's first message waits until its
/// interaction is known.
#[derive(Debug, Default)]
struct Interactions {
    by_op: Mutex<HashMap<i64, InteractionRef>>,
    latest: Mutex<HashMap<(String, String), InteractionRef>>,
    groups: Mutex<HashMap<String, SeenRoles>>,
    in_flight: Mutex<HashMap<String, usize>>,
    settled: Notify,
}

/// A person's guild roles as an event (or a member lookup) showed them.
#[derive(Debug, Clone)]
struct SeenRoles {
    roles: Vec<String>,
    guild_id: Option<String>,
    at: Instant,
}

/// A request being answered in a channel; dropping it marks it answered.
struct InFlight<'a> {
    interactions: &'a Interactions,
    channel: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.interactions.in_flight.lock()
            && let Some(count) = in_flight.get_mut(&self.channel)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&self.channel);
            }
        }
        self.interactions.settled.notify_waiters();
    }
}

impl Interactions {
    fn enter(&self, channel: &str) -> InFlight<'_> {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            *in_flight.entry(channel.to_string()).or_default() += 1;
        }
        InFlight {
            interactions: self,
            channel: channel.to_string(),
        }
    }

    /// Waits (at most `limit`) until no request in `channel` is being answered.
    async fn wait_settled(&self, channel: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.settled.notified();
            let busy = self
                .in_flight
                .lock()
                .map(|in_flight| in_flight.contains_key(channel))
                .unwrap_or(false);
            if !busy {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    fn set_for_op(&self, op_id: i64, interaction: InteractionRef) {
        if let Ok(mut by_op) = self.by_op.lock() {
            // An operation whose message never came leaves its entry; the
            // token is useless after 15 minutes anyway.
            by_op.retain(|_, known| known.received.elapsed() < INTERACTION_TOKEN_LIFETIME);
            by_op.insert(op_id, interaction);
        }
    }

    fn take_for_op(&self, op_id: i64) -> Option<InteractionRef> {
        self.by_op.lock().ok()?.remove(&op_id)
    }

    fn note_latest(
        &self,
        user_id: &str,
        channel: &str,
        interaction: InteractionRef,
        lifetime: Duration,
    ) {
        if let Ok(mut latest) = self.latest.lock() {
            latest.retain(|_, known| known.received.elapsed() < lifetime);
            latest.insert((user_id.to_string(), channel.to_string()), interaction);
        }
    }

    fn latest_for(
        &self,
        user_id: &str,
        channel: &str,
        lifetime: Duration,
    ) -> Option<InteractionRef> {
        let latest = self.latest.lock().ok()?;
        latest
            .get(&(user_id.to_string(), channel.to_string()))
            .filter(|known| known.received.elapsed() < lifetime)
            .cloned()
    }

    /// The person's guild roles: those the event carries, remembered for
    /// `ttl` for events that carry none (a reaction's removal has no
    /// member); after that they are not believed (`[discord] role_ttl`).
    fn groups_of(
        &self,
        user_id: &str,
        guild_id: Option<String>,
        seen: Option<Vec<String>>,
        ttl: Duration,
    ) -> Vec<String> {
        match seen {
            Some(roles) => {
                self.remember_roles(user_id, guild_id, roles.clone());
                roles
            }
            None => self
                .fresh_roles(user_id, ttl)
                .map(|seen| seen.roles)
                .unwrap_or_default(),
        }
    }

    fn remember_roles(&self, user_id: &str, guild_id: Option<String>, roles: Vec<String>) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.insert(
                user_id.to_string(),
                SeenRoles {
                    roles,
                    guild_id,
                    at: Instant::now(),
                },
            );
        }
    }

    /// What was seen of the person's roles within `ttl`, if anything.
    fn fresh_roles(&self, user_id: &str, ttl: Duration) -> Option<SeenRoles> {
        let groups = self.groups.lock().ok()?;
        groups
            .get(user_id)
            .filter(|seen| seen.at.elapsed() < ttl)
            .cloned()
    }

    /// The guild the person was last seen in, however long ago.
    fn last_guild(&self, user_id: &str) -> Option<String> {
        let groups = self.groups.lock().ok()?;
        groups.get(user_id).and_then(|seen| seen.guild_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_guild_roles_expire_after_role_ttl() {
        let interactions = Interactions::default();
        let seen = vec!["1174111938150531079".to_string()];
        let guild = Some("1174110260428931074".to_string());
        let ttl = Duration::from_secs(300);
        assert_eq!(
            interactions.groups_of("1", guild.clone(), Some(seen.clone()), ttl),
            seen
        );
        assert_eq!(interactions.groups_of("1", None, None, ttl), seen);
        assert_eq!(
            interactions.groups_of("1", None, None, Duration::ZERO),
            Vec::<String>::new(),
            "roles seen longer ago than role_ttl are not believed"
        );
        assert_eq!(interactions.last_guild("1"), guild);
    }
}
