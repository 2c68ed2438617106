//! What Slack sends, translated into the request flow, the same for Socket
//! Mode and the HTTP endpoints: a slash command becomes a `Request` (with
//! the person's user groups); a ✅ / ❌ reaction added or removed goes to
//! `chat::approval::on_reaction`; an Approve / Reject click goes to
//! `chat::approval::on_button`. What the flow answers goes back to the person
//! only: a command's private answer through its `response_url` (falling back
//! to `chat.postEphemeral`), feedback on reactions and clicks through
//! `chat.postEphemeral`.
//!
//! Each function here may take seconds (planning talks to Docker, group
//! lookups talk to Slack), so the transports acknowledge first and hand the
//! delivery to [`spawn`], which works on it in a tracked task once the
//! deliveries of a burst have been acknowledged (a short lull) and with a
//! bounded number in flight, so a burst of commands never delays its own
//! acknowledgements. Parsing, policy, approvals and dedupe are the flow's;
//! this module only translates.
//!
//! Only the workspaces `[slack] team_ids` lists are served: a command, event
//! or click from any other is refused with an audit entry, and nothing else
//! happens.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use slack_morphism::prelude as sm;
use tokio::time::Instant;

use super::Context;
use super::render::{render, render_text};
use crate::chat::{Answer, Reply, Request, approval};
use crate::flow::{self, Delivery, Feedback, Sender};
use crate::names::Platform;

/// How many inbound deliveries are worked on at once. A burst of commands
/// is acknowledged at once and then queues here, so the work (the store
/// serializes its writes anyway) does not starve the acknowledgements of
/// CPU, and a burst cannot open more store connections than the pool has.
pub const MAX_IN_FLIGHT: usize = 8;

/// Something Slack delivered, to be worked on after it was acknowledged.
#[derive(Debug)]
pub enum Inbound {
    /// A slash command.
    Command(Box<sm::SlackCommandEvent>),
    /// An Events API callback.
    Event(Box<sm::SlackPushEventCallback>),
    /// A click.
    Interaction(Box<sm::SlackInteractionEvent>),
}

/// How long deliveries must have stopped arriving before work on them
/// starts: the acknowledgements of a burst go out first.
pub const LULL: Duration = Duration::from_millis(20);
/// The longest work waits for a lull, so steady traffic cannot starve it.
pub const MAX_WAIT_FOR_LULL: Duration = Duration::from_millis(200);

/// Works on `inbound` in a tracked task, at most [`MAX_IN_FLIGHT`] at once,
/// once deliveries pause for [`LULL`] (or after [`MAX_WAIT_FOR_LULL`]).
pub fn spawn(context: Arc<Context>, inbound: Inbound) {
    context.lull.note_arrival();
    let app = Arc::clone(&context.app);
    app.spawn(async move {
        // The permit first: the deliveries beyond it wait in the semaphore's
        // queue without waking, and only those holding one watch for the lull.
        let Ok(_permit) = context.in_flight.acquire().await else {
            return;
        };
        context.lull.wait(LULL, MAX_WAIT_FOR_LULL).await;
        if !serves(&context, team_of(&inbound)) {
            refuse_stranger(&context, inbound).await;
            return;
        }
        match inbound {
            Inbound::Command(event) => command(&context, *event).await,
            Inbound::Event(event) => push_event(&context, *event).await,
            Inbound::Interaction(event) => interaction(&context, *event).await,
        }
    });
}

/// What someone outside the served workspaces is told.
const STRANGER: &str =
    "this Deckhand serves only the Slack workspaces its config lists; nothing was done";

/// The workspace a delivery came from.
fn team_of(inbound: &Inbound) -> String {
    match inbound {
        Inbound::Command(event) => event.team_id.to_string(),
        Inbound::Event(event) => event.team_id.to_string(),
        Inbound::Interaction(event) => match event.as_ref() {
            sm::SlackInteractionEvent::BlockActions(actions) => actions.team.id.to_string(),
            // Deckhand uses no other kind; their teams are not looked at.
            _ => String::new(),
        },
    }
}

/// Whether config serves the workspace (every one when `team_ids` is empty).
fn serves(context: &Context, team_id: String) -> bool {
    let served = context
        .app
        .config
        .slack
        .as_ref()
        .map(|slack| slack.team_ids.as_slice())
        .unwrap_or_default();
    served.is_empty() || served.contains(&team_id)
}

/// Refuses a delivery from a workspace config does not serve: an audit
/// entry and an answer to the person, nothing else.
async fn refuse_stranger(context: &Context, inbound: Inbound) {
    tracing::warn!(
        platform = "slack",
        "refused a request from a workspace config does not serve"
    );
    let (user_id, channel, response_url) = match inbound {
        Inbound::Command(event) => (
            event.user_id.to_string(),
            event.channel_id.to_string(),
            Some(event.response_url.clone()),
        ),
        Inbound::Event(event) => match event.event {
            sm::SlackEventCallbackBody::ReactionAdded(added) => (
                added.user.to_string(),
                reaction_channel(&added.item).unwrap_or_default(),
                None,
            ),
            _ => return,
        },
        Inbound::Interaction(event) => match *event {
            sm::SlackInteractionEvent::BlockActions(actions) => (
                actions
                    .user
                    .as_ref()
                    .map(|user| user.id.to_string())
                    .unwrap_or_default(),
                actions
                    .channel
                    .as_ref()
                    .map(|channel| channel.id.to_string())
                    .unwrap_or_default(),
                actions.response_url.clone(),
            ),
            _ => return,
        },
    };
    let sender = Sender::identify(&context.app, Platform::Slack, &user_id, &channel);
    let feedback = flow::refuse_stranger(&context.app, &sender, STRANGER).await;
    match response_url {
        Some(response_url) => {
            let reply = Reply::new("Request refused", crate::chat::Tone::Failure, feedback.text);
            answer_command(context, &response_url, &channel, &user_id, &reply).await;
        }
        None if !channel.is_empty() => tell(context, &channel, &user_id, &feedback).await,
        None => {}
    }
}

fn reaction_channel(item: &sm::SlackReactionsItem) -> Option<String> {
    match item {
        sm::SlackReactionsItem::Message(message) => {
            message.origin.channel.as_ref().map(ToString::to_string)
        }
        _ => None,
    }
}

/// A slash command: runs it through the flow and answers privately when
/// the flow answers privately (usage, refusals, dry runs).
async fn command(context: &Context, event: sm::SlackCommandEvent) {
    let user_id = event.user_id.to_string();
    let channel = event.channel_id.to_string();
    let text = command_line(event.command.as_ref(), event.text.as_deref());
    let groups = context.groups.of_user(&context.web, &user_id).await;
    let request = Request {
        platform: Platform::Slack,
        user_id: user_id.clone(),
        channel: channel.clone(),
        text,
        delivery_id: Some(format!("command:{}", event.trigger_id)),
        groups,
    };
    match flow::handle_request(&context.app, request).await.redacted() {
        Answer::Accepted { op_id } => {
            tracing::debug!(op_id, platform = "slack", "slash command accepted");
        }
        Answer::Private(reply) => {
            answer_command(context, &event.response_url, &channel, &user_id, &reply).await;
        }
        Answer::Duplicate => {
            tracing::info!(
                platform = "slack",
                "redelivered slash command ignored; it was handled already"
            );
        }
    }
}

/// An Events API callback: reactions on operation messages.
async fn push_event(context: &Context, event: sm::SlackPushEventCallback) {
    let delivery_id = format!("event:{}", event.event_id);
    let reaction = match event.event {
        sm::SlackEventCallbackBody::ReactionAdded(added) => Reaction {
            user_id: added.user.to_string(),
            emoji: added.reaction.to_string(),
            item: added.item,
            added: true,
        },
        sm::SlackEventCallbackBody::ReactionRemoved(removed) => Reaction {
            user_id: removed.user.to_string(),
            emoji: removed.reaction.to_string(),
            item: removed.item,
            added: false,
        },
        _ => {
            tracing::debug!(platform = "slack", "event of a kind Deckhand does not use");
            return;
        }
    };
    if approval::decision_for(&context.app, &reaction.emoji).is_none()
        || context.bot_user_id.as_deref() == Some(reaction.user_id.as_str())
    {
        return;
    }
    match flow::claim_delivery(&context.app, Platform::Slack.as_str(), &delivery_id).await {
        Ok(Delivery::Fresh(key)) => {
            on_reaction(context, reaction).await;
            flow::complete_delivery(&context.app, key).await;
        }
        Ok(Delivery::Duplicate) => tracing::info!(
            platform = "slack",
            event_id = %event.event_id,
            "redelivered event ignored; it took effect already"
        ),
        Err(error) => {
            tracing::error!(platform = "slack", error = %error, "cannot record a reaction; telling the person");
            let channel = match &reaction.item {
                sm::SlackReactionsItem::Message(message) => {
                    message.origin.channel.as_ref().map(ToString::to_string)
                }
                _ => None,
            };
            if let Some(channel) = channel {
                let feedback = store_unreachable();
                tell(context, &channel, &reaction.user_id, &feedback).await;
            }
        }
    }
}

/// An interaction: Approve / Reject clicks.
async fn interaction(context: &Context, event: sm::SlackInteractionEvent) {
    let sm::SlackInteractionEvent::BlockActions(block_actions) = event else {
        tracing::debug!(
            platform = "slack",
            "interaction of a kind Deckhand does not use"
        );
        return;
    };
    let Some(user_id) = block_actions.user.as_ref().map(|user| user.id.to_string()) else {
        return;
    };
    let channel = block_actions
        .channel
        .as_ref()
        .map(|channel| channel.id.to_string())
        .or_else(|| match &block_actions.container {
            sm::SlackInteractionActionContainer::Message(message) => {
                message.channel_id.as_ref().map(ToString::to_string)
            }
            _ => None,
        });
    let Some(channel) = channel else {
        return;
    };
    let delivery_id = format!("action:{}", block_actions.trigger_id);
    let key = match flow::claim_delivery(&context.app, Platform::Slack.as_str(), &delivery_id).await
    {
        Ok(Delivery::Fresh(key)) => key,
        Ok(Delivery::Duplicate) => {
            tracing::info!(
                platform = "slack",
                "redelivered click ignored; it took effect already"
            );
            return;
        }
        Err(error) => {
            tracing::error!(platform = "slack", error = %error, "cannot record a click; telling the person");
            tell(context, &channel, &user_id, &store_unreachable()).await;
            return;
        }
    };
    let sender = sender(context, &user_id, &channel).await;
    for action in block_actions.actions.unwrap_or_default() {
        let Some(value) = action.value else { continue };
        let feedback = approval::on_button(&context.app, &sender, &value).await;
        tell(context, &channel, &user_id, &feedback).await;
    }
    flow::complete_delivery(&context.app, key).await;
}

/// What a person is told when Deckhand cannot record what they did.
fn store_unreachable() -> Feedback {
    Feedback {
        applied: false,
        text: "Deckhand cannot write to its store right now, so that did nothing; try again in a moment".to_string(),
    }
}

/// When the last delivery arrived, so work can wait for a pause in a burst.
#[derive(Debug)]
pub struct Lull {
    last_arrival: Mutex<Instant>,
}

impl Lull {
    /// No delivery yet.
    pub fn new() -> Lull {
        Lull {
            last_arrival: Mutex::new(Instant::now()),
        }
    }

    fn note_arrival(&self) {
        if let Ok(mut last_arrival) = self.last_arrival.lock() {
            *last_arrival = Instant::now();
        }
    }

    /// Waits until nothing arrived for `lull`, or `at_most` has passed.
    async fn wait(&self, lull: Duration, at_most: Duration) {
        let give_up = Instant::now() + at_most;
        loop {
            let quiet_for = self
                .last_arrival
                .lock()
                .map(|last_arrival| last_arrival.elapsed())
                .unwrap_or(lull);
            let now = Instant::now();
            if quiet_for >= lull || now >= give_up {
                return;
            }
            tokio::time::sleep_until((now + (lull - quiet_for)).min(give_up)).await;
        }
    }
}

impl Default for Lull {
    fn default() -> Lull {
        Lull::new()
    }
}

struct Reaction {
    user_id: String,
    emoji: String,
    item: sm::SlackReactionsItem,
    added: bool,
}

async fn on_reaction(context: &Context, reaction: Reaction) {
    let sm::SlackReactionsItem::Message(message) = &reaction.item else {
        return;
    };
    let Some(channel) = message.origin.channel.as_ref().map(ToString::to_string) else {
        return;
    };
    let ts = message.origin.ts.to_string();
    let sender = sender(context, &reaction.user_id, &channel).await;
    let feedback =
        approval::on_reaction(&context.app, &sender, &ts, &reaction.emoji, reaction.added).await;
    if let Some(feedback) = feedback {
        tell(context, &channel, &reaction.user_id, &feedback).await;
    }
}

/// The person as the flow knows them: by user id, plus their groups.
async fn sender(context: &Context, user_id: &str, channel: &str) -> Sender {
    let groups = context.groups.of_user(&context.web, user_id).await;
    Sender::identify(&context.app, Platform::Slack, user_id, channel)
        .with_groups(&context.app, &groups)
}

/// Feedback on an approval, rejection or withdrawal, to that person only.
async fn tell(context: &Context, channel: &str, user_id: &str, feedback: &Feedback) {
    let mark = if feedback.applied { "✓" } else { "✗" };
    let content = render_text(&format!("{mark} {}", feedback.text));
    if let Err(error) = context.web.post_ephemeral(channel, user_id, &content).await {
        tracing::warn!(platform = "slack", method = error.method(), code = %error.code(), error = %error, "cannot tell the person what their approval did");
    }
}

/// A command's private answer: through its response_url, which works in
/// any channel; `chat.postEphemeral` when that fails.
async fn answer_command(
    context: &Context,
    response_url: &sm::SlackResponseUrl,
    channel: &str,
    user_id: &str,
    reply: &Reply,
) {
    let content = render(reply);
    let Err(first) = context.web.respond(response_url, &content).await else {
        return;
    };
    if let Err(second) = context.web.post_ephemeral(channel, user_id, &content).await {
        tracing::error!(platform = "slack", code = %second.code(), error = %second, response_url_error = %first, "cannot give the requester their answer");
    }
}

/// `/deploy` and `staging develop` → `/deploy staging develop`.
fn command_line(command: &str, text: Option<&str>) -> String {
    let command = if command.starts_with('/') {
        command.to_string()
    } else {
        format!("/{command}")
    };
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => format!("{command} {text}"),
        None => command,
    }
}

#[cfg(test)]
mod tests {
    use super::command_line;

    #[test]
    fn command_lines_join_command_and_text() {
        let cases = [
            (
                "/deploy",
                Some("staging develop"),
                "/deploy staging develop",
            ),
            ("/deploy", Some("  staging  "), "/deploy staging"),
            ("/help", Some(""), "/help"),
            ("/help", None, "/help"),
            ("status", None, "/status"),
        ];
        for (command, text, expected) in cases {
            assert_eq!(command_line(command, text), expected);
        }
    }
}
