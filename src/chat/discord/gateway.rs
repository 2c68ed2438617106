//! The gateway connection, through serenity's client: intents GUILDS and
//! GUILD_MESSAGE_REACTIONS and nothing more (interactions arrive without
//! an intent; message content is never needed). Serenity heartbeats,
//! resumes after a drop or op 7, and identifies again after an invalid
//! session; the gateway URL comes from `GET /gateway` on `api_url`.
//!
//! Serenity's caveats, found against the local peer: it ignores READY's
//! `resume_gateway_url` (it resumes on the URL it first got), and it waits
//! up to 5 s before identifying again.
//!
//! The event handler only forwards events; `inbound` handles them, each in
//! its own task so a slow one never holds up the next.

use std::sync::Arc;

use serenity::all as dc;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Discord, DiscordError, inbound};
use crate::names::Platform;

/// The only intents Deckhand asks for.
pub fn intents() -> dc::GatewayIntents {
    dc::GatewayIntents::GUILDS | dc::GatewayIntents::GUILD_MESSAGE_REACTIONS
}

/// What the handler forwards.
pub(super) enum GatewayEvent {
    Interaction(Box<dc::Interaction>, Instant),
    Reaction {
        reaction: Box<dc::Reaction>,
        added: bool,
    },
    Ready {
        bot_user_id: String,
    },
    Connected(bool),
}

struct Handler {
    events: mpsc::UnboundedSender<GatewayEvent>,
}

impl Handler {
    fn forward(&self, event: GatewayEvent) {
        // The receiver lives as long as the adapter; after that nothing listens.
        let _ = self.events.send(event);
    }
}

#[serenity::async_trait]
impl dc::EventHandler for Handler {
    async fn ready(&self, _context: dc::Context, ready: dc::Ready) {
        tracing::info!(platform = "discord", user = %ready.user.name, "gateway ready");
        self.forward(GatewayEvent::Ready {
            bot_user_id: ready.user.id.to_string(),
        });
        self.forward(GatewayEvent::Connected(true));
    }

    async fn resume(&self, _context: dc::Context, _resumed: dc::ResumedEvent) {
        tracing::info!(platform = "discord", "gateway session resumed");
        self.forward(GatewayEvent::Connected(true));
    }

    async fn shard_stage_update(&self, _context: dc::Context, update: dc::ShardStageUpdateEvent) {
        let connected = update.new == dc::ConnectionStage::Connected;
        if !connected {
            tracing::info!(platform = "discord", stage = %update.new, "gateway not connected");
        }
        self.forward(GatewayEvent::Connected(connected));
    }

    async fn interaction_create(&self, _context: dc::Context, interaction: dc::Interaction) {
        self.forward(GatewayEvent::Interaction(
            Box::new(interaction),
            Instant::now(),
        ));
    }

    async fn reaction_add(&self, _context: dc::Context, reaction: dc::Reaction) {
        self.forward(GatewayEvent::Reaction {
            reaction: Box::new(reaction),
            added: true,
        });
    }

    async fn reaction_remove(&self, _context: dc::Context, reaction: dc::Reaction) {
        self.forward(GatewayEvent::Reaction {
            reaction: Box::new(reaction),
            added: false,
        });
    }
}

/// Builds serenity's client (this asks `GET /gateway` for the URL) and the
/// receiver of its events.
pub(super) async fn build_client(
    http: dc::Http,
) -> Result<(dc::Client, mpsc::UnboundedReceiver<GatewayEvent>), DiscordError> {
    let (events, receiver) = mpsc::unbounded_channel();
    let client = dc::ClientBuilder::new_with_http(http, intents())
        .event_handler(Handler { events })
        .await
        .map_err(|error| DiscordError::Gateway(error.to_string()))?;
    Ok((client, receiver))
}

/// Runs the client until shutdown, and handles its events.
pub(super) fn run(
    discord: Arc<Discord>,
    mut client: dc::Client,
    mut events: mpsc::UnboundedReceiver<GatewayEvent>,
) {
    let shard_manager = Arc::clone(&client.shard_manager);
    let app = Arc::clone(&discord.app);
    tokio::spawn(async move {
        if let Err(error) = client.start().await {
            tracing::error!(platform = "discord", error = %error, "the gateway connection ended");
        }
        app.set_connected(Platform::Discord, false);
    });
    let mut shutdown = discord.app.shutdown_signal();
    tokio::spawn(async move {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        shard_manager.shutdown_all().await;
    });
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                GatewayEvent::Interaction(interaction, received) => {
                    let discord = Arc::clone(&discord);
                    tokio::spawn(async move {
                        inbound::on_interaction(&discord, *interaction, received).await;
                    });
                }
                GatewayEvent::Reaction { reaction, added } => {
                    let discord = Arc::clone(&discord);
                    tokio::spawn(async move {
                        inbound::on_reaction(&discord, &reaction, added).await;
                    });
                }
                GatewayEvent::Ready { bot_user_id } => {
                    let _ = discord.bot_user_id.set(bot_user_id);
                }
                GatewayEvent::Connected(connected) => {
                    discord.app.set_connected(Platform::Discord, connected);
                }
            }
        }
    });
}
