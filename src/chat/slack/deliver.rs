//! Delivers the flow's outbound messages to Slack, after
//! `chat::progress::coalesce` has cut operation edits to about one a second.
//!
//! Messages travel in lanes: one per operation (its channel message, posted
//! once and then edited, and the thread of details under it), one per audit
//! channel, one per person for ephemeral messages. A lane delivers in order
//! and one thing at a time, so an edit never overtakes the first post and a
//! detail always finds the message it belongs under; different lanes do not
//! wait for each other, so a rate-limited edit does not hold up an audit line.
//!
//! Nothing is lost to a temporary failure: a lane whose call failed keeps
//! its work and tries again with backoff, and for an operation only the
//! newest version of the message is kept, so the latest edit is the one that
//! eventually lands. Lanes are bounded like the outbox (`chat::queue`): while
//! Slack is stalled, a lane keeps at most its limit of details, audit lines
//! or private messages and counts the rest into one note. Permanent failures (`channel_not_found`,
//! `not_in_channel`, ...) are logged with the method and Slack's error code
//! and dropped, since no retry can fix them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::Context;
use super::render::{render, render_detail, render_text};
use super::web::WebError;
use crate::chat::{Outbound, Reply, Subscription};
use crate::chat::{approval, queue};
use crate::names::Platform;

/// The first wait before a lane retries failed work; it doubles per failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between retries.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// The running delivery: lanes and their jobs.
#[derive(Debug)]
pub struct Delivery {
    lanes: Mutex<HashMap<LaneKey, Lane>>,
    /// When the flow last handed over a message.
    last_received: Mutex<Option<Instant>>,
}

/// Passes the flow's messages on, noting when the last one came, so
/// `is_idle` knows whether the coalescer may still hold an edit.
pub fn tap(context: Arc<Context>, mut outbound: Subscription) -> Subscription {
    let (sender, receiver) = Subscription::pair();
    tokio::spawn(async move {
        while let Some(message) = outbound.recv().await {
            if let Ok(mut last_received) = context.delivery.last_received.lock() {
                *last_received = Some(Instant::now());
            }
            if !sender.push(message) {
                return;
            }
        }
        sender.close();
    });
    receiver
}

/// Starts delivering what `outbound` carries.
pub fn start(context: Arc<Context>, mut outbound: Subscription) {
    tokio::spawn(async move {
        while let Some(message) = outbound.recv().await {
            enqueue(&context, message);
        }
    });
}

impl Delivery {
    /// No lanes yet.
    pub fn new() -> Delivery {
        Delivery {
            lanes: Mutex::new(HashMap::new()),
            last_received: Mutex::new(None),
        }
    }

    /// Whether nothing arrived for longer than `quiet` and every lane has
    /// delivered everything it was given.
    pub fn is_idle(&self, quiet: Duration) -> bool {
        let quiet_enough = self
            .last_received
            .lock()
            .map(|last| last.is_none_or(|at| at.elapsed() > quiet))
            .unwrap_or(true);
        quiet_enough
            && self
                .lanes
                .lock()
                .map(|lanes| lanes.is_empty())
                .unwrap_or(true)
    }
}

impl Default for Delivery {
    fn default() -> Delivery {
        Delivery::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LaneKey {
    Operation(i64),
    Audit(String),
    Person { channel: String, user_id: String },
}

#[derive(Debug, Default)]
struct Lane {
    /// The newest version of the operation's message not yet delivered.
    edit: Option<(String, Reply)>,
    /// Other messages, in order.
    queue: VecDeque<Item>,
    /// The operation's message, once known: (channel, ts).
    message: Option<(String, String)>,
    /// Whether a job is delivering this lane; it removes the lane when done.
    running: bool,
    /// Messages dropped because the lane was full, and the last of them,
    /// which the note that counts them is addressed like.
    dropped: Option<(usize, Item)>,
}

#[derive(Debug, Clone)]
enum Item {
    Detail {
        channel: String,
        text: String,
    },
    Audit {
        channel: String,
        text: String,
    },
    Ephemeral {
        channel: String,
        user_id: String,
        reply: Reply,
    },
}

/// What a job takes from its lane in one go.
struct Work {
    edit: Option<(String, Reply)>,
    items: VecDeque<Item>,
    message: Option<(String, String)>,
}

/// What is left when delivery failed part way, and whether to retry it.
struct Leftover {
    edit: Option<(String, Reply)>,
    items: VecDeque<Item>,
}

fn enqueue(context: &Arc<Context>, message: Outbound) {
    let (key, edit, item) = match message {
        Outbound::Operation {
            op_id,
            channel,
            reply,
            ..
        } => (LaneKey::Operation(op_id), Some((channel, reply)), None),
        Outbound::Detail {
            op_id,
            channel,
            text,
            ..
        } => (
            LaneKey::Operation(op_id),
            None,
            Some(Item::Detail { channel, text }),
        ),
        Outbound::Audit { channel, text, .. } => (
            LaneKey::Audit(channel.clone()),
            None,
            Some(Item::Audit { channel, text }),
        ),
        Outbound::Ephemeral {
            channel,
            user_id,
            reply,
            ..
        } => (
            LaneKey::Person {
                channel: channel.clone(),
                user_id: user_id.clone(),
            },
            None,
            Some(Item::Ephemeral {
                channel,
                user_id,
                reply,
            }),
        ),
    };
    let start_job = {
        let Ok(mut lanes) = context.delivery.lanes.lock() else {
            return;
        };
        let queued: usize = lanes.values().map(|lane| lane.queue.len()).sum();
        let lane = lanes.entry(key.clone()).or_default();
        if edit.is_some() {
            lane.edit = edit;
        }
        if let Some(item) = item {
            lane.push(&key, item, queued);
        }
        !std::mem::replace(&mut lane.running, true)
    };
    if start_job {
        tokio::spawn(run_lane(Arc::clone(context), key));
    }
}

/// Delivers a lane until it is empty, then removes it.
async fn run_lane(context: Arc<Context>, key: LaneKey) {
    let mut retry = FIRST_RETRY;
    while let Some(work) = take_work(&context, &key) {
        match deliver(&context, &key, work).await {
            None => retry = FIRST_RETRY,
            Some(leftover) => {
                put_back(&context, &key, leftover);
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

impl Lane {
    /// Queues `item` unless the lane (or all lanes together, `queued`
    /// items) is full; then it is counted for a note instead.
    fn push(&mut self, key: &LaneKey, item: Item, queued: usize) {
        let limit = match key {
            LaneKey::Operation(_) => queue::DETAIL_LIMIT,
            LaneKey::Audit(_) => queue::AUDIT_LIMIT,
            LaneKey::Person { .. } => queue::EPHEMERAL_LIMIT,
        };
        if self.queue.len() < limit && queued < queue::TOTAL_LIMIT {
            self.queue.push_back(item);
            return;
        }
        let dropped = self.dropped.take().map_or(0, |(count, _)| count) + 1;
        if dropped == 1 {
            tracing::warn!(
                platform = "slack",
                "Slack is not keeping up; dropping messages beyond the queue's limit"
            );
        }
        self.dropped = Some((dropped, item));
    }
}

/// The item that says how many like `last` were dropped.
fn drop_note(dropped: usize, last: Item) -> Item {
    match last {
        Item::Detail { channel, .. } => Item::Detail {
            channel,
            text: format!("… {dropped} more line(s) of output not posted: chat could not keep up"),
        },
        Item::Audit { channel, .. } => Item::Audit {
            channel,
            text: format!(
                "… {dropped} audit line(s) not posted here: chat could not keep up; `deckhand audit list` has every entry"
            ),
        },
        Item::Ephemeral {
            channel, user_id, ..
        } => Item::Ephemeral {
            channel,
            user_id,
            reply: Reply::new(
                "Deckhand",
                crate::chat::Tone::Warning,
                format!("… {dropped} message(s) to you not posted: chat could not keep up"),
            ),
        },
    }
}

fn take_work(context: &Context, key: &LaneKey) -> Option<Work> {
    let mut lanes = context.delivery.lanes.lock().ok()?;
    let lane = lanes.get_mut(key)?;
    if lane.edit.is_none() && lane.queue.is_empty() && lane.dropped.is_none() {
        lanes.remove(key);
        return None;
    }
    let mut items = std::mem::take(&mut lane.queue);
    if let Some((dropped, last)) = lane.dropped.take() {
        items.push_back(drop_note(dropped, last));
    }
    Some(Work {
        edit: lane.edit.take(),
        items,
        message: lane.message.clone(),
    })
}

/// Returns failed work to the front of its lane, unless a newer version of
/// the message arrived meanwhile (then that one goes instead).
fn put_back(context: &Context, key: &LaneKey, leftover: Leftover) {
    let Ok(mut lanes) = context.delivery.lanes.lock() else {
        return;
    };
    let lane = lanes.entry(key.clone()).or_default();
    if lane.edit.is_none() {
        lane.edit = leftover.edit;
    }
    for item in leftover.items.into_iter().rev() {
        lane.queue.push_front(item);
    }
}

fn remember_in_lane(context: &Context, key: &LaneKey, message: (String, String)) {
    if let Ok(mut lanes) = context.delivery.lanes.lock()
        && let Some(lane) = lanes.get_mut(key)
    {
        lane.message = Some(message);
    }
}

/// Delivers one batch; returns what must be tried again.
async fn deliver(context: &Context, key: &LaneKey, mut work: Work) -> Option<Leftover> {
    let op_id = match key {
        LaneKey::Operation(op_id) => Some(*op_id),
        _ => None,
    };
    if let Some(op_id) = op_id
        && work.message.is_none()
    {
        work.message = stored_message(context, op_id).await;
    }
    if let (Some(op_id), Some((channel, reply))) = (op_id, work.edit.take()) {
        match show_operation(context, op_id, &channel, &reply, work.message.as_ref()).await {
            Ok(message) => {
                remember_in_lane(context, key, message.clone());
                work.message = Some(message);
            }
            Err(error) if error.is_retryable() => {
                return Some(Leftover {
                    edit: Some((channel, reply)),
                    items: work.items,
                });
            }
            Err(error) => {
                tracing::error!(op_id, platform = "slack", method = error.method(), code = %error.code(), error = %error, "cannot show the operation in Slack; dropping this version");
            }
        }
    }
    while let Some(item) = work.items.pop_front() {
        let thread_ts = work.message.as_ref().map(|(_, ts)| ts.as_str());
        if let Err(error) = deliver_item(context, &item, op_id, thread_ts).await {
            if error.is_retryable() {
                work.items.push_front(item);
                return Some(Leftover {
                    edit: None,
                    items: work.items,
                });
            }
            tracing::error!(op_id = op_id.unwrap_or_default(), platform = "slack", method = error.method(), code = %error.code(), error = %error, "cannot deliver a Slack message; dropping it");
        }
    }
    None
}

/// The operation's message as remembered by the store (after a restart,
/// say), so it is edited rather than posted again.
async fn stored_message(context: &Context, op_id: i64) -> Option<(String, String)> {
    match context.app.store.message_of(op_id, Platform::Slack).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(op_id, error = %error, "cannot look up the operation's Slack message");
            None
        }
    }
}

/// Posts the operation's message, or edits it when it exists; returns
/// (channel, ts).
async fn show_operation(
    context: &Context,
    op_id: i64,
    channel: &str,
    reply: &Reply,
    posted: Option<&(String, String)>,
) -> Result<(String, String), WebError> {
    let content = render(reply);
    if let Some((posted_channel, ts)) = posted {
        match context
            .web
            .update_message(posted_channel, ts, &content)
            .await
        {
            Ok(()) => return Ok((posted_channel.clone(), ts.clone())),
            // Someone deleted the message: post it again, so the operation
            // stays visible and reactions have something to land on.
            Err(WebError::Api { code, .. }) if code == "message_not_found" => {
                tracing::warn!(
                    op_id,
                    "the operation's Slack message is gone; posting it again"
                );
            }
            Err(error) => return Err(error),
        }
    }
    let ts = context.web.post_message(channel, &content, None).await?;
    approval::remember_message(&context.app, op_id, Platform::Slack, channel, &ts).await;
    Ok((channel.to_string(), ts))
}

async fn deliver_item(
    context: &Context,
    item: &Item,
    op_id: Option<i64>,
    thread_ts: Option<&str>,
) -> Result<(), WebError> {
    match item {
        Item::Detail { channel, text } => {
            let text = match (thread_ts, op_id) {
                (Some(_), _) | (None, None) => text.clone(),
                // No message to thread under (it could not be posted): say
                // which operation the detail belongs to.
                (None, Some(op_id)) => format!("#{op_id} · {text}"),
            };
            context
                .web
                .post_message(channel, &render_detail(&text), thread_ts)
                .await
                .map(|_| ())
        }
        Item::Audit { channel, text } => context
            .web
            .post_message(channel, &render_text(text), None)
            .await
            .map(|_| ()),
        Item::Ephemeral {
            channel,
            user_id,
            reply,
        } => {
            context
                .web
                .post_ephemeral(channel, user_id, &render(reply))
                .await
        }
    }
}
