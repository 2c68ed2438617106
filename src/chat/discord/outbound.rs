//! Delivers the outbox's Discord messages.
//!
//! Each operation's message has its own worker, so one operation waiting
//! out a 429 never delays another, and a worker always sends the newest
//! state it holds: a 429 on an edit is retried after `Retry-After` with
//! whatever is newest by then, so the final state is never lost. What waits
//! is bounded (`chat::queue`): per worker the newest state and a limited
//! number of details, a limited number of audit lines per channel and of
//! private messages per person, each with a counted note of what was
//! dropped, so a stalled Discord does not grow memory without bound.
//!
//! Where the message lives: an operation requested by slash command is
//! shown in the interaction's original response (the deferred "thinking…"
//! edited into the operation's embed). Interaction tokens die after 15
//! minutes, so before that an operation that is still going is moved to a
//! regular channel message (the original then points to it). Operations
//! without a live interaction (after a restart) use the message remembered
//! in the store, or a new channel message. Every first message is
//! remembered with `approval::remember_message`, so reactions on it count.
//!
//! Step output (`Detail`) becomes a follow-up of the interaction or a
//! reply to the channel message; audit lines go, in order, to the audit
//! channel; private messages use the person's newest interaction token when
//! there is one, and otherwise mention them in the channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use serenity::http as dh;
use serenity::model::id::{ChannelId, MessageId};
use tokio::time::Instant;

use super::rest::{Rest, RestError, wait_before_retry};
use super::{Discord, InteractionRef, render};
use crate::chat::queue::{self, Mailbox};
use crate::chat::{Outbound, Reply, Subscription, approval};
use crate::names::Platform;

/// How long a worker waits for the interaction that requested its
/// operation to be answered before choosing where to post. Requests are
/// answered within seconds; this only bounds a flow that hangs.
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// A worker with nothing to do and no interaction token to watch stops
/// after this long; a later message starts a new one.
const IDLE_STOP: Duration = Duration::from_secs(10 * 60);
/// Attempts for failures other than 429 (which is retried until it passes).
const ATTEMPTS: u32 = 5;

/// Most private messages being sent at once; more wait in a bounded queue.
const PRIVATE_SENDS: usize = 8;

/// Starts delivering `outbound` (already coalesced) until it closes.
pub(super) fn spawn(discord: Arc<Discord>, mut outbound: Subscription) {
    tokio::spawn(async move {
        let mut workers: HashMap<i64, Arc<Mailbox>> = HashMap::new();
        let audit = spawn_audit(Arc::clone(&discord));
        let private = spawn_private(Arc::clone(&discord));
        while let Some(message) = outbound.recv().await {
            match &message {
                Outbound::Operation { op_id, channel, .. }
                | Outbound::Detail { op_id, channel, .. } => {
                    let (op_id, channel) = (*op_id, channel.clone());
                    hand_to_worker(&discord, &mut workers, op_id, &channel, message);
                }
                Outbound::Ephemeral { .. } => {
                    private.push(message);
                }
                Outbound::Audit { .. } => {
                    audit.push(message);
                }
            }
        }
    });
}

/// Gives an operation's message or detail to its worker, starting one when
/// there is none (or the last one stopped).
fn hand_to_worker(
    discord: &Arc<Discord>,
    workers: &mut HashMap<i64, Arc<Mailbox>>,
    op_id: i64,
    channel: &str,
    message: Outbound,
) {
    workers.retain(|_, inbox| !inbox.is_closed());
    if let Some(inbox) = workers.get(&op_id)
        && inbox.push(message.clone())
    {
        return;
    }
    let inbox = Mailbox::new();
    inbox.push(message);
    workers.insert(op_id, Arc::clone(&inbox));
    let worker = Worker {
        discord: Arc::clone(discord),
        op_id,
        channel: channel.to_string(),
        inbox,
        target: Target::Unresolved,
        shown: None,
        reacted: false,
    };
    tokio::spawn(worker.run());
}

/// Where an operation's message is.
enum Target {
    /// Not decided yet.
    Unresolved,
    /// The original response of the interaction that requested it.
    Interaction {
        interaction: InteractionRef,
        message: Option<MessageRef>,
    },
    /// A channel message.
    Channel(MessageRef),
    /// Nowhere yet: the next version is posted to the channel.
    New,
}

#[derive(Debug, Clone)]
struct MessageRef {
    channel_id: String,
    message_id: String,
}

/// Work collected while the worker was busy: only the newest reply counts,
/// details are kept in order up to a limit, and the rest are counted.
#[derive(Default)]
struct Batch {
    reply: Option<Reply>,
    details: Vec<String>,
    dropped: usize,
}

impl Batch {
    fn add(&mut self, message: Outbound) {
        match message {
            Outbound::Operation { reply, .. } => self.reply = Some(reply),
            Outbound::Detail { text, .. } if self.details.len() < queue::DETAIL_LIMIT => {
                self.details.push(text);
            }
            Outbound::Detail { .. } => self.dropped += 1,
            Outbound::Ephemeral { .. } | Outbound::Audit { .. } => {}
        }
    }

    /// The details to post, with a note of how many were dropped.
    fn take_details(&mut self) -> Vec<String> {
        let mut details = std::mem::take(&mut self.details);
        let dropped = std::mem::take(&mut self.dropped);
        if dropped > 0 {
            details.push(format!(
                "… {dropped} more line(s) of output not posted: chat could not keep up"
            ));
        }
        details
    }
}

struct Worker {
    discord: Arc<Discord>,
    op_id: i64,
    channel: String,
    /// Bounded: the newest state and a limited number of details wait.
    inbox: Arc<Mailbox>,
    target: Target,
    /// The newest version shown, for moving it to a channel message.
    shown: Option<Reply>,
    /// Whether Deckhand's ✅/❌ are on the current message.
    reacted: bool,
}

impl Worker {
    async fn run(mut self) {
        loop {
            let token_deadline = self.token_deadline();
            let far = Instant::now() + IDLE_STOP;
            let inbox = Arc::clone(&self.inbox);
            let work = tokio::select! {
                work = inbox.pop() => match work {
                    Some(work) => work,
                    None => return,
                },
                () = tokio::time::sleep_until(token_deadline.unwrap_or(far)), if token_deadline.is_some() => {
                    self.leave_interaction().await;
                    continue;
                }
                () = tokio::time::sleep(IDLE_STOP), if token_deadline.is_none() => {
                    if self.inbox.close_if_empty() {
                        return;
                    }
                    continue;
                }
            };
            let mut batch = Batch::default();
            batch.add(work);
            while let Some(work) = self.inbox.try_pop() {
                batch.add(work);
            }
            if let Some(reply) = batch.reply.take() {
                self.show(reply, &mut batch).await;
            }
            for text in batch.take_details() {
                self.post_detail(&text).await;
            }
        }
    }

    fn token_deadline(&self) -> Option<Instant> {
        match &self.target {
            Target::Interaction { interaction, .. } => {
                Some(interaction.received + self.discord.options.interaction_token_use)
            }
            _ => None,
        }
    }

    /// Shows `reply`, retrying until it (or a newer version that arrives
    /// meanwhile) is shown: 429s after `Retry-After` for as long as they
    /// last, other passing failures a few times.
    async fn show(&mut self, mut reply: Reply, batch: &mut Batch) {
        if let Target::Unresolved = self.target {
            self.target = self.resolve().await;
        }
        let mut attempt = 1;
        loop {
            let error = match self.try_show(&reply).await {
                Ok(()) => {
                    self.shown = Some(reply);
                    return;
                }
                Err(error) => error,
            };
            if error.is_gone() && !matches!(self.target, Target::New) {
                tracing::warn!(platform = "discord", op_id = self.op_id, error = %error, "the operation's message is gone; posting a new one");
                self.target = Target::New;
                continue;
            }
            let limited = matches!(error, RestError::RateLimited { .. });
            if !(limited || error.is_transient() && attempt < ATTEMPTS) {
                tracing::error!(platform = "discord", op_id = self.op_id, error = %error, "cannot show the operation's state");
                return;
            }
            tracing::warn!(platform = "discord", op_id = self.op_id, error = %error, "retrying the operation's message");
            let wake = Instant::now() + wait_before_retry(&error, attempt);
            loop {
                match tokio::time::timeout_at(wake, self.inbox.pop()).await {
                    Ok(Some(work)) => batch.add(work),
                    Ok(None) => {
                        tokio::time::sleep_until(wake).await;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if let Some(newer) = batch.reply.take() {
                reply = newer;
            }
            attempt += 1;
        }
    }

    /// Where this operation's message is: its interaction's original
    /// response, else the message the store remembers, else a new one.
    async fn resolve(&self) -> Target {
        let interactions = &self.discord.interactions;
        interactions.wait_settled(&self.channel, SETTLE_WAIT).await;
        if let Some(interaction) = interactions.take_for_op(self.op_id)
            && interaction.received.elapsed() < self.discord.options.interaction_token_use
        {
            return Target::Interaction {
                interaction,
                message: None,
            };
        }
        match self
            .discord
            .app
            .store
            .message_of(self.op_id, Platform::Discord)
            .await
        {
            Ok(Some((channel_id, message_id))) => Target::Channel(MessageRef {
                channel_id,
                message_id,
            }),
            Ok(None) => Target::New,
            Err(error) => {
                tracing::warn!(platform = "discord", op_id = self.op_id, error = %error, "cannot look up the operation's message; posting a new one");
                Target::New
            }
        }
    }

    async fn try_show(&mut self, reply: &Reply) -> Result<(), RestError> {
        let body = render::operation_message(reply);
        let rest = &self.discord.rest;
        let application_id = self.discord.application_id;
        let message = match &mut self.target {
            Target::Interaction {
                interaction,
                message,
            } => {
                let route = dh::Route::WebhookOriginalInteractionResponse {
                    application_id,
                    token: interaction.token.expose(),
                };
                let answer = rest
                    .send(dh::LightMethod::Patch, route, Some(&body))
                    .await?;
                if message.is_none() {
                    let posted = message_ref(answer.as_ref())?;
                    *message = Some(posted.clone());
                    remember(&self.discord, self.op_id, &posted).await;
                }
                message.clone()
            }
            Target::Channel(message) => {
                let route = dh::Route::ChannelMessage {
                    channel_id: snowflake(&message.channel_id)?,
                    message_id: snowflake(&message.message_id)?,
                };
                rest.send(dh::LightMethod::Patch, route, Some(&body))
                    .await?;
                Some(message.clone())
            }
            Target::New | Target::Unresolved => {
                let posted = self.post_new(&body).await?;
                self.target = Target::Channel(posted.clone());
                Some(posted)
            }
        };
        if !reply.buttons.is_empty()
            && !self.reacted
            && let Some(message) = message
        {
            self.reacted = true;
            add_approval_reactions(&self.discord, &message).await;
        }
        Ok(())
    }

    async fn post_new(&mut self, body: &Value) -> Result<MessageRef, RestError> {
        let route = dh::Route::ChannelMessages {
            channel_id: snowflake(&self.channel)?,
        };
        let answer = self
            .discord
            .rest
            .send(dh::LightMethod::Post, route, Some(body))
            .await?;
        let posted = message_ref(answer.as_ref())?;
        self.reacted = false;
        remember(&self.discord, self.op_id, &posted).await;
        Ok(posted)
    }

    /// The interaction token is about to expire. A finished operation stays
    /// where it is; one still going continues in a channel message, and the
    /// original response points to it.
    async fn leave_interaction(&mut self) {
        let Target::Interaction {
            interaction,
            message,
        } = std::mem::replace(&mut self.target, Target::Unresolved)
        else {
            return;
        };
        let finished = matches!(
            self.discord.app.store.operation(self.op_id).await,
            Ok(Some(operation)) if operation.state.is_final()
        );
        let (Some(shown), false) = (self.shown.clone(), finished) else {
            self.target = message.map_or(Target::New, Target::Channel);
            return;
        };
        let mut batch = Batch::default();
        self.target = Target::New;
        self.show(shown.clone(), &mut batch).await;
        let Target::Channel(moved) = &self.target else {
            return;
        };
        let link = format!(
            "https://discord.com/channels/{}/{}/{}",
            interaction.guild_id.as_deref().unwrap_or("@me"),
            moved.channel_id,
            moved.message_id
        );
        let route = dh::Route::WebhookOriginalInteractionResponse {
            application_id: self.discord.application_id,
            token: interaction.token.expose(),
        };
        let pointer = render::continued_message(&shown, &link);
        if let Err(error) = self
            .discord
            .rest
            .send(dh::LightMethod::Patch, route, Some(&pointer))
            .await
        {
            tracing::warn!(platform = "discord", op_id = self.op_id, error = %error, "cannot point the interaction's response to the channel message");
        }
        tracing::info!(
            platform = "discord",
            op_id = self.op_id,
            "operation continues in a channel message"
        );
        for text in batch.take_details() {
            self.post_detail(&text).await;
        }
        if let Some(newer) = batch.reply.take() {
            self.show(newer, &mut Batch::default()).await;
        }
    }

    /// Step output: a follow-up of the interaction, or a reply to the
    /// channel message.
    async fn post_detail(&self, text: &str) {
        let rest = &self.discord.rest;
        let result = match &self.target {
            Target::Interaction { interaction, .. } => {
                let route = dh::Route::WebhookFollowupMessages {
                    application_id: self.discord.application_id,
                    token: interaction.token.expose(),
                };
                rest.send_retrying(
                    dh::LightMethod::Post,
                    route,
                    Some(&render::detail_message(text, None)),
                )
                .await
            }
            Target::Channel(message) => {
                let body = render::detail_message(text, Some(&message.message_id));
                post_in_channel(rest, &message.channel_id, &body).await
            }
            Target::New | Target::Unresolved => {
                post_in_channel(rest, &self.channel, &render::detail_message(text, None)).await
            }
        };
        if let Err(error) = result {
            tracing::error!(platform = "discord", op_id = self.op_id, error = %error, "cannot post a step's output");
        }
    }
}

/// Remembers which message shows the operation, so reactions on it count.
async fn remember(discord: &Discord, op_id: i64, message: &MessageRef) {
    approval::remember_message(
        &discord.app,
        op_id,
        Platform::Discord,
        &message.channel_id,
        &message.message_id,
    )
    .await;
}

/// Puts the approve and reject emoji under an approval request, so people
/// can click them.
async fn add_approval_reactions(discord: &Discord, message: &MessageRef) {
    let (Ok(channel_id), Ok(message_id)) = (
        snowflake::<ChannelId>(&message.channel_id),
        snowflake::<MessageId>(&message.message_id),
    ) else {
        return;
    };
    let configured = &discord.app.config.approval_emoji;
    for name in [&configured.approve, &configured.reject] {
        let Some(character) = reaction_character(name) else {
            continue;
        };
        let route = dh::Route::ChannelMessageReactionMe {
            channel_id,
            message_id,
            reaction: &character,
        };
        if let Err(error) = discord
            .rest
            .send_retrying(dh::LightMethod::Put, route, None)
            .await
        {
            tracing::warn!(platform = "discord", error = %error, "cannot add an approval reaction");
        }
    }
}

/// The character Discord uses for a configured approval emoji (a Slack
/// name such as `white_check_mark`, or the character itself).
fn reaction_character(configured: &str) -> Option<String> {
    if !configured.is_ascii() {
        return Some(configured.to_string());
    }
    approval::emoji_character(configured).map(str::to_string)
}

/// A private message: a follow-up only they see while their newest
/// interaction's token lives, else a channel message that mentions them.
async fn send_private(discord: &Discord, channel: &str, user_id: &str, reply: &Reply) {
    let lifetime = discord.options.interaction_token_use;
    let result = match discord.interactions.latest_for(user_id, channel, lifetime) {
        Some(interaction) => {
            let route = dh::Route::WebhookFollowupMessages {
                application_id: discord.application_id,
                token: interaction.token.expose(),
            };
            discord
                .rest
                .send_retrying(
                    dh::LightMethod::Post,
                    route,
                    Some(&render::ephemeral_message(reply)),
                )
                .await
        }
        None => {
            let body = render::addressed_message(user_id, reply);
            post_in_channel(&discord.rest, channel, &body).await
        }
    };
    if let Err(error) = result {
        tracing::error!(platform = "discord", error = %error, "cannot send a private message");
    }
}

/// Posts audit lines one at a time, so they keep their order. Lines wait
/// in a bounded queue; beyond its limit they are counted into one note.
fn spawn_audit(discord: Arc<Discord>) -> Arc<Mailbox> {
    let lines = Mailbox::new();
    let waiting = Arc::clone(&lines);
    tokio::spawn(async move {
        while let Some(message) = waiting.pop().await {
            let Outbound::Audit { channel, text, .. } = message else {
                continue;
            };
            let result =
                post_in_channel(&discord.rest, &channel, &render::audit_message(&text)).await;
            if let Err(error) = result {
                tracing::error!(platform = "discord", channel = %channel, error = %error, "cannot post to the audit channel");
            }
        }
    });
    lines
}

/// Sends private messages, at most [`PRIVATE_SENDS`] at once; the rest
/// wait in a bounded queue (a few per person, then a counted note).
fn spawn_private(discord: Arc<Discord>) -> Arc<Mailbox> {
    let messages = Mailbox::new();
    let waiting = Arc::clone(&messages);
    tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(PRIVATE_SENDS));
        while let Some(message) = waiting.pop().await {
            let Outbound::Ephemeral {
                channel,
                user_id,
                reply,
                ..
            } = message
            else {
                continue;
            };
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let discord = Arc::clone(&discord);
            tokio::spawn(async move {
                send_private(&discord, &channel, &user_id, &reply).await;
                drop(permit);
            });
        }
    });
    messages
}

/// The id and channel of a message object Discord returned.
fn message_ref(answer: Option<&Value>) -> Result<MessageRef, RestError> {
    let answer =
        answer.ok_or_else(|| RestError::Decode("no message object in the answer".to_string()))?;
    match (answer["id"].as_str(), answer["channel_id"].as_str()) {
        (Some(message_id), Some(channel_id)) => Ok(MessageRef {
            channel_id: channel_id.to_string(),
            message_id: message_id.to_string(),
        }),
        _ => Err(RestError::Decode(
            "the message object has no id or channel_id".to_string(),
        )),
    }
}

/// Posts `body` as a new message in `channel`, retrying after rate limits.
async fn post_in_channel(
    rest: &Rest,
    channel: &str,
    body: &Value,
) -> Result<Option<Value>, RestError> {
    let route = dh::Route::ChannelMessages {
        channel_id: snowflake::<ChannelId>(channel)?,
    };
    rest.send_retrying(dh::LightMethod::Post, route, Some(body))
        .await
}

fn snowflake<T: std::str::FromStr>(text: &str) -> Result<T, RestError> {
    text.parse()
        .map_err(|_| RestError::Decode(format!("\"{text}\" is not a Discord id")))
}
