//! Interactions and reactions, from the gateway or the HTTP endpoint.
//!
//! Every interaction is answered within Discord's 3 seconds. A command is
//! written out as its command line and handed to `flow::handle_request`;
//! if the flow answers within [`ANSWER_WITHIN`], Discord gets the fitting
//! response at once (deferred for an accepted operation, whose message the
//! outbound worker then edits; ephemeral for usage and refusals). If not,
//! the interaction is deferred first and the answer follows. Buttons go to
//! `approval::on_button` and are answered privately; reactions go to
//! `approval::on_reaction`, and since Discord has no private messages
//! outside interactions, a refusal is a reply that mentions only the
//! reactor.
//!
//! Every interaction takes effect once: commands and button presses are
//! claimed by their interaction id through the store, so a replayed press
//! (the gateway resuming, a captured HTTP delivery) changes nothing. Only
//! the guilds `[discord] guild_ids` lists are served; anything from another
//! guild, or outside one, is refused with an audit entry and nothing else.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use serenity::all as dc;
use serenity::http as dh;
use tokio::time::Instant;

use super::commands::{self, OptionValue};
use super::rest::RestError;
use super::{Discord, InteractionRef, render};
use crate::chat::{Answer, Reply, Request, Tone, approval};
use crate::flow::{self, Delivery, Feedback, Sender};
use crate::names::Platform;
use crate::secret::Secret;

/// How long the flow may take before the interaction is deferred: Discord
/// allows 3 s for the first response, and the callback itself takes time.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Handles one interaction.
pub(super) async fn on_interaction(
    discord: &Arc<Discord>,
    interaction: dc::Interaction,
    received: Instant,
) {
    match interaction {
        dc::Interaction::Command(command) if !serves(discord, command.guild_id) => {
            let sender = stranger(discord, &command.user.id, &command.channel_id);
            refuse_interaction(discord, command.id, &command.token, &sender).await;
        }
        dc::Interaction::Component(component) if !serves(discord, component.guild_id) => {
            let sender = stranger(discord, &component.user.id, &component.channel_id);
            refuse_interaction(discord, component.id, &component.token, &sender).await;
        }
        dc::Interaction::Command(command) => on_command(discord, command, received).await,
        dc::Interaction::Component(component) => on_component(discord, component).await,
        dc::Interaction::Ping(ping) => {
            respond(discord, ping.id, &ping.token, &render::pong()).await;
        }
        dc::Interaction::Autocomplete(autocomplete) => {
            not_handled(
                discord,
                autocomplete.id,
                &autocomplete.token,
                "autocomplete",
            )
            .await;
        }
        dc::Interaction::Modal(modal) => {
            not_handled(discord, modal.id, &modal.token, "forms").await;
        }
        _ => tracing::warn!(
            platform = "discord",
            "ignored an interaction of a kind serenity does not know"
        ),
    }
}

/// What someone outside the served guilds is told.
const STRANGER: &str =
    "this Deckhand serves only the Discord servers its config lists; nothing was done";

/// Whether config serves the guild an event came from (every guild when
/// `[discord] guild_ids` is empty; never outside a guild then).
fn serves(discord: &Discord, guild_id: Option<dc::GuildId>) -> bool {
    let served = &discord.settings.guild_ids;
    if served.is_empty() {
        return true;
    }
    guild_id.is_some_and(|guild_id| served.contains(&guild_id.to_string()))
}

/// Someone writing from outside the served guilds, as the audit names them.
fn stranger(discord: &Discord, user_id: &dc::UserId, channel_id: &dc::ChannelId) -> Sender {
    Sender::identify(
        &discord.app,
        Platform::Discord,
        &user_id.to_string(),
        &channel_id.to_string(),
    )
}

/// Refuses an interaction from outside the served guilds, privately, with
/// an audit entry; nothing else happens.
async fn refuse_interaction(
    discord: &Discord,
    id: dc::InteractionId,
    token: &str,
    sender: &Sender,
) {
    tracing::warn!(
        platform = "discord",
        "refused an interaction from a guild config does not serve"
    );
    let feedback = flow::refuse_stranger(&discord.app, sender, STRANGER).await;
    let body = render::feedback_response(&feedback.text, false);
    respond(discord, id, token, &body).await;
}

/// What a person reads when handling their interaction failed inside
/// Deckhand (the cause is in the log).
const INTERNAL_FAILURE: &str =
    "Deckhand could not handle this; the cause is in its log (look for platform=discord)";

fn internal_failure() -> Reply {
    Reply::new("Request failed", Tone::Failure, INTERNAL_FAILURE)
}

/// Answers, privately, an interaction of a kind Deckhand does not use.
async fn not_handled(discord: &Discord, id: dc::InteractionId, token: &str, what: &str) {
    let reply = Reply::new(
        "Not handled",
        Tone::Failure,
        format!("Deckhand does not use {what}; type a slash command"),
    );
    respond(discord, id, token, &render::ephemeral_response(&reply)).await;
}

async fn on_command(discord: &Arc<Discord>, command: dc::CommandInteraction, received: Instant) {
    let app = &discord.app;
    let name = command.data.name.clone();
    let channel = command.channel_id.to_string();
    let user_id = command.user.id.to_string();
    let groups = discord.interactions.groups_of(
        &user_id,
        command.guild_id.map(|guild_id| guild_id.to_string()),
        member_roles(command.member.as_deref()),
        discord.settings.role_ttl,
    );
    let interaction = InteractionRef {
        token: Secret::short_lived(command.token.clone()),
        received,
        guild_id: command.guild_id.map(|guild_id| guild_id.to_string()),
    };
    let lifetime = discord.options.interaction_token_use;
    discord
        .interactions
        .note_latest(&user_id, &channel, interaction.clone(), lifetime);
    let options: Vec<(String, OptionValue)> = command
        .data
        .options
        .iter()
        .map(|option| (option.name.clone(), option_value(&option.value)))
        .collect();
    let text = match commands::command_line(&name, app.catalog.get(&name), &options) {
        Ok(text) => text,
        Err(message) => {
            let mut reply = Reply::new(format!("/{name} refused"), Tone::Failure, message);
            if let Some(spec) = app.catalog.get(&name) {
                reply.lines = vec![format!("usage: {}", spec.usage())];
            }
            respond(
                discord,
                command.id,
                &command.token,
                &render::ephemeral_response(&reply),
            )
            .await;
            return;
        }
    };
    let request = Request {
        platform: Platform::Discord,
        user_id,
        channel: channel.clone(),
        text,
        delivery_id: Some(command.id.to_string()),
        groups,
    };
    let in_flight = discord.interactions.enter(&channel);
    let flow_app = Arc::clone(app);
    let answer =
        answer_within(async move { flow::handle_request(&flow_app, request).await.redacted() })
            .await;
    match answer {
        Answered::Now(Answer::Accepted { op_id }) => {
            if respond(discord, command.id, &command.token, &render::deferred()).await {
                discord.interactions.set_for_op(op_id, interaction);
            }
        }
        Answered::Now(Answer::Private(reply)) => {
            respond(
                discord,
                command.id,
                &command.token,
                &render::ephemeral_response(&reply),
            )
            .await;
        }
        Answered::Now(Answer::Duplicate) => {
            tracing::debug!(
                platform = "discord",
                "a redelivered interaction; already handled"
            );
        }
        Answered::Later(pending) => {
            let deferred = respond(discord, command.id, &command.token, &render::deferred()).await;
            match finish(pending).await {
                Some(Answer::Accepted { op_id }) if deferred => {
                    discord.interactions.set_for_op(op_id, interaction)
                }
                Some(Answer::Accepted { .. }) => {}
                Some(Answer::Private(reply)) => {
                    let token = command.token.as_str();
                    send(
                        discord,
                        followup_route(discord, token),
                        &render::ephemeral_message(&reply),
                    )
                    .await;
                    delete_original(discord, token).await;
                }
                Some(Answer::Duplicate) => delete_original(discord, &command.token).await,
                None => {
                    let body = render::ephemeral_message(&internal_failure());
                    send(discord, followup_route(discord, &command.token), &body).await;
                    delete_original(discord, &command.token).await;
                }
            }
        }
        Answered::Failed => {
            let body = render::ephemeral_response(&internal_failure());
            respond(discord, command.id, &command.token, &body).await;
        }
    }
    drop(in_flight);
}

async fn on_component(discord: &Arc<Discord>, component: dc::ComponentInteraction) {
    let app = Arc::clone(&discord.app);
    // A press takes effect once, however often it is delivered.
    let key = match flow::claim_delivery(
        &app,
        Platform::Discord.as_str(),
        &component.id.to_string(),
    )
    .await
    {
        Ok(Delivery::Fresh(key)) => key,
        Ok(Delivery::Duplicate) => {
            tracing::info!(
                platform = "discord",
                "a replayed button press ignored; it was handled already"
            );
            return;
        }
        Err(error) => {
            tracing::error!(platform = "discord", error = %error, "cannot record a button press");
            let body = render::feedback_response(
                "Deckhand cannot write to its store right now, so that did nothing; try again in a moment",
                false,
            );
            respond(discord, component.id, &component.token, &body).await;
            return;
        }
    };
    on_press(discord, component).await;
    flow::complete_delivery(&app, key).await;
}

async fn on_press(discord: &Arc<Discord>, component: dc::ComponentInteraction) {
    let app = Arc::clone(&discord.app);
    let user_id = component.user.id.to_string();
    let groups = discord.interactions.groups_of(
        &user_id,
        component.guild_id.map(|guild_id| guild_id.to_string()),
        component.member.as_ref().map(roles_of),
        discord.settings.role_ttl,
    );
    let sender = Sender::identify(
        &app,
        Platform::Discord,
        &user_id,
        &component.channel_id.to_string(),
    )
    .with_groups(&app, &groups);
    let value = component.data.custom_id.clone();
    let answer =
        answer_within(async move { approval::on_button(&app, &sender, &value).await }).await;
    match answer {
        Answered::Now(feedback) => {
            let body = render::feedback_response(&feedback.text, feedback.applied);
            respond(discord, component.id, &component.token, &body).await;
        }
        Answered::Failed => {
            let body = render::feedback_response(INTERNAL_FAILURE, false);
            respond(discord, component.id, &component.token, &body).await;
        }
        Answered::Later(pending) => {
            respond(
                discord,
                component.id,
                &component.token,
                &render::deferred_ephemeral(),
            )
            .await;
            let feedback = finish(pending).await.unwrap_or_else(|| Feedback {
                applied: false,
                text: INTERNAL_FAILURE.to_string(),
            });
            let body = render::feedback_message(&feedback.text, feedback.applied);
            let route = dh::Route::WebhookOriginalInteractionResponse {
                application_id: discord.application_id,
                token: &component.token,
            };
            if let Err(error) = discord
                .rest
                .send_retrying(dh::LightMethod::Patch, route, Some(&body))
                .await
            {
                tracing::error!(platform = "discord", error = %error, "cannot answer a button press");
            }
        }
    }
}

/// Handles a reaction added to or removed from a message.
pub(super) async fn on_reaction(discord: &Arc<Discord>, reaction: &dc::Reaction, added: bool) {
    let Some(user_id) = reaction.user_id.map(|user_id| user_id.to_string()) else {
        return;
    };
    if discord.is_own_user(&user_id) {
        return;
    }
    // Only Deckhand's own messages can be approval requests; ✅ on anyone
    // else's message is none of its business.
    if let Some(author) = reaction.message_author_id
        && !discord.is_own_user(&author.to_string())
    {
        return;
    }
    let emoji = match &reaction.emoji {
        dc::ReactionType::Unicode(character) => character.clone(),
        dc::ReactionType::Custom {
            name: Some(name), ..
        } => name.clone(),
        _ => return,
    };
    let app = &discord.app;
    let channel = reaction.channel_id.to_string();
    let message_id = reaction.message_id.to_string();
    let feedback = if serves(discord, reaction.guild_id) {
        let groups = discord.interactions.groups_of(
            &user_id,
            reaction.guild_id.map(|guild_id| guild_id.to_string()),
            reaction.member.as_ref().map(roles_of),
            discord.settings.role_ttl,
        );
        let sender =
            Sender::identify(app, Platform::Discord, &user_id, &channel).with_groups(app, &groups);
        approval::on_reaction(app, &sender, &message_id, &emoji, added).await
    } else if approval::decision_for(app, &emoji).is_some() {
        let sender = Sender::identify(app, Platform::Discord, &user_id, &channel);
        Some(flow::refuse_stranger(app, &sender, STRANGER).await)
    } else {
        None
    };
    let Some(feedback) = feedback else {
        return;
    };
    if feedback.applied || !added {
        return;
    }
    let body = render::reaction_refusal(&user_id, &message_id, &feedback.text);
    let route = dh::Route::ChannelMessages {
        channel_id: reaction.channel_id,
    };
    send(discord, route, &body).await;
}

/// The flow's answer, now or later.
enum Answered<T> {
    Now(T),
    Later(tokio::task::JoinHandle<T>),
    Failed,
}

/// Runs `work` as its own task and waits [`ANSWER_WITHIN`] for it.
async fn answer_within<T, F>(work: F) -> Answered<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let mut task = tokio::spawn(work);
    match tokio::time::timeout(ANSWER_WITHIN, &mut task).await {
        Ok(Ok(answer)) => Answered::Now(answer),
        Ok(Err(error)) => {
            tracing::error!(platform = "discord", error = %error, "handling an interaction failed");
            Answered::Failed
        }
        Err(_) => Answered::Later(task),
    }
}

/// The answer of work that took longer than [`ANSWER_WITHIN`]; `None` if
/// it panicked or the runtime is shutting down (logged here).
async fn finish<T>(task: tokio::task::JoinHandle<T>) -> Option<T> {
    match task.await {
        Ok(answer) => Some(answer),
        Err(error) => {
            tracing::error!(platform = "discord", error = %error, "handling an interaction failed");
            None
        }
    }
}

/// Sends an interaction's first response; returns whether Discord took it.
async fn respond(
    discord: &Discord,
    interaction_id: dc::InteractionId,
    token: &str,
    body: &Value,
) -> bool {
    let route = dh::Route::InteractionResponse {
        interaction_id,
        token,
    };
    match discord
        .rest
        .send_retrying(dh::LightMethod::Post, route, Some(body))
        .await
    {
        Ok(_) => true,
        Err(error) => {
            tracing::error!(platform = "discord", error = %error, "cannot answer an interaction");
            false
        }
    }
}

fn followup_route<'a>(discord: &Discord, token: &'a str) -> dh::Route<'a> {
    dh::Route::WebhookFollowupMessages {
        application_id: discord.application_id,
        token,
    }
}

async fn send(discord: &Discord, route: dh::Route<'_>, body: &Value) {
    if let Err(error) = discord
        .rest
        .send_retrying(dh::LightMethod::Post, route, Some(body))
        .await
    {
        tracing::error!(platform = "discord", error = %error, "cannot send a message");
    }
}

/// Removes the "thinking…" of an interaction deferred in public whose
/// answer turned out to be private.
async fn delete_original(discord: &Discord, token: &str) {
    let route = dh::Route::WebhookOriginalInteractionResponse {
        application_id: discord.application_id,
        token,
    };
    let result: Result<Option<Value>, RestError> = discord
        .rest
        .send_retrying(dh::LightMethod::Delete, route, None)
        .await;
    if let Err(error) = result {
        tracing::warn!(platform = "discord", error = %error, "cannot remove a deferred response");
    }
}

fn option_value(value: &dc::CommandDataOptionValue) -> OptionValue {
    match value {
        dc::CommandDataOptionValue::String(text) => OptionValue::Text(text.clone()),
        dc::CommandDataOptionValue::Integer(number) => OptionValue::Integer(*number),
        dc::CommandDataOptionValue::Boolean(flag) => OptionValue::Boolean(*flag),
        _ => OptionValue::Unsupported,
    }
}

fn member_roles(member: Option<&dc::Member>) -> Option<Vec<String>> {
    member.map(roles_of)
}

fn roles_of(member: &dc::Member) -> Vec<String> {
    member.roles.iter().map(ToString::to_string).collect()
}
