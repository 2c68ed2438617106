//! The neutral chat model every adapter translates to and from: a `Request`
//! in, `Reply`s out. Platform crates appear only in adapter submodules; the
//! request flow sends `Outbound` messages through the `Outbox` and never
//! calls into an adapter, and an adapter only translates. The outbox
//! redacts every message and bounds what waits for each adapter.

pub mod approval;
pub mod console;
pub mod discord;
pub mod progress;
pub mod queue;
pub mod slack;
pub mod text;

use std::sync::{Arc, Mutex};

use crate::names::Platform;
use crate::secret::redact;
use queue::Mailbox;

/// A slash command as an adapter received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where it came from.
    pub platform: Platform,
    /// The person's id on that platform.
    pub user_id: String,
    /// The channel it was typed in.
    pub channel: String,
    /// The whole command line, starting with `/`.
    pub text: String,
    /// The platform's delivery id, for redelivery dedupe.
    pub delivery_id: Option<String>,
    /// Platform groups the person belongs to (Slack user groups, Discord
    /// guild roles), which config may map to roles.
    pub groups: Vec<String>,
}

/// How a reply reads at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Neutral information.
    Info,
    /// Waiting for something (approval, queue).
    Waiting,
    /// In progress.
    Working,
    /// Succeeded.
    Success,
    /// Needs attention but is not a failure.
    Warning,
    /// Failed or refused.
    Failure,
}

/// One step line of an operation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLine {
    /// The step's title.
    pub title: String,
    /// Where it is.
    pub status: StepStatus,
    /// How long it took, once done.
    pub elapsed: Option<String>,
    /// What it reported, one line.
    pub detail: String,
}

#[cfg(test)]
impl StepLine {
    /// A step line for the renderers' tests.
    pub(crate) fn sample(
        title: &str,
        status: StepStatus,
        elapsed: Option<&str>,
        detail: &str,
    ) -> StepLine {
        StepLine {
            title: title.to_string(),
            status,
            elapsed: elapsed.map(str::to_string),
            detail: detail.to_string(),
        }
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Running now.
    Running,
    /// Succeeded.
    Ok,
    /// Failed.
    Failed,
    /// Not run.
    Skipped,
}

impl StepStatus {
    /// The status as stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }

    /// Reads a journaled status.
    pub fn from_name(name: &str) -> StepStatus {
        match name {
            "running" => StepStatus::Running,
            "ok" => StepStatus::Ok,
            "failed" => StepStatus::Failed,
            "skipped" => StepStatus::Skipped,
            _ => StepStatus::Pending,
        }
    }
}

/// A button under a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    /// Label shown.
    pub label: String,
    /// What pressing it does.
    pub action: ButtonAction,
}

/// What a button does. The parameters hash travels with it, so a click
/// approves exactly the parameters the clicker saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonAction {
    /// Approve an operation with these parameters.
    Approve {
        /// The operation.
        op_id: i64,
        /// Its parameters hash.
        params_hash: String,
    },
    /// Reject an operation.
    Reject {
        /// The operation.
        op_id: i64,
    },
}

impl ButtonAction {
    /// The action as a button value: `approve:42:HASH` or `reject:42`.
    pub fn to_value(&self) -> String {
        match self {
            ButtonAction::Approve { op_id, params_hash } => {
                format!("approve:{op_id}:{params_hash}")
            }
            ButtonAction::Reject { op_id } => format!("reject:{op_id}"),
        }
    }

    /// Reads a button value; `None` for anything that is not ours.
    pub fn from_value(value: &str) -> Option<ButtonAction> {
        let mut parts = value.splitn(3, ':');
        match (
            parts.next()?,
            parts.next()?.parse::<i64>().ok()?,
            parts.next(),
        ) {
            ("approve", op_id, Some(hash)) if !hash.is_empty() => Some(ButtonAction::Approve {
                op_id,
                params_hash: hash.to_string(),
            }),
            ("reject", op_id, None) => Some(ButtonAction::Reject { op_id }),
            _ => None,
        }
    }
}

/// A message in neutral form; each adapter renders it for its platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// First line: `Deploy #42 · staging ← develop · @alice`.
    pub title: String,
    /// How it reads at a glance.
    pub tone: Tone,
    /// Status line under the title.
    pub status: String,
    /// Named values (plan entries, approvals, expiry).
    pub fields: Vec<(String, String)>,
    /// Free lines (report rows, usage, log lines).
    pub lines: Vec<String>,
    /// Step lines, for operations.
    pub steps: Vec<StepLine>,
    /// Buttons, for approval requests.
    pub buttons: Vec<Button>,
}

impl Reply {
    /// A reply with a title, tone and status line only.
    pub fn new(title: impl Into<String>, tone: Tone, status: impl Into<String>) -> Reply {
        Reply {
            title: title.into(),
            tone,
            status: status.into(),
            fields: Vec::new(),
            lines: Vec::new(),
            steps: Vec::new(),
            buttons: Vec::new(),
        }
    }
}

/// What the flow sends to adapters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Post, or edit if already posted, the one message that shows an
    /// operation in its channel.
    Operation {
        /// The operation.
        op_id: i64,
        /// Platform of the channel.
        platform: Platform,
        /// The channel.
        channel: String,
        /// The message.
        reply: Reply,
    },
    /// A detail line under the operation's message (a thread on Slack).
    Detail {
        /// The operation.
        op_id: i64,
        /// Platform of the channel.
        platform: Platform,
        /// The channel.
        channel: String,
        /// The text.
        text: String,
    },
    /// A message only one person sees (errors, refusals, dry runs).
    Ephemeral {
        /// Platform.
        platform: Platform,
        /// The channel.
        channel: String,
        /// The person.
        user_id: String,
        /// The message.
        reply: Reply,
    },
    /// A line for an environment's audit channel.
    Audit {
        /// Platform.
        platform: Platform,
        /// The audit channel.
        channel: String,
        /// The line.
        text: String,
    },
}

impl Outbound {
    /// The platform the message goes to.
    pub fn platform(&self) -> Platform {
        match self {
            Outbound::Operation { platform, .. }
            | Outbound::Detail { platform, .. }
            | Outbound::Ephemeral { platform, .. }
            | Outbound::Audit { platform, .. } => *platform,
        }
    }
}

/// Routes outbound messages to the adapter of their platform. An adapter
/// subscribes once; messages for a platform nobody subscribed to are
/// dropped (that platform is not configured).
///
/// Every text of every message is redacted here, the one choke point
/// between the flow and chat. Each subscription is bounded: an adapter
/// that falls behind finds only the newest state of each operation's
/// message, and at most a limit of details, audit lines and private
/// messages with a note of how many were dropped (`queue`).
#[derive(Debug, Default)]
pub struct Outbox {
    subscribers: Mutex<Vec<(Platform, Arc<Mailbox>)>>,
}

/// An adapter's end of the outbox: its platform's messages, in order,
/// bounded as [`Outbox`] says. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    mailbox: Arc<Mailbox>,
}

/// Why [`Subscription::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing is waiting now.
    #[error("no message is waiting")]
    Empty,
    /// The outbox is gone and nothing is waiting.
    #[error("the outbox is closed")]
    Closed,
}

impl Outbox {
    /// Subscribes an adapter to its platform's messages.
    pub fn subscribe(&self, platform: Platform) -> Subscription {
        let mailbox = Mailbox::new();
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push((platform, Arc::clone(&mailbox)));
        }
        Subscription { mailbox }
    }

    /// Whether an adapter of that platform is listening.
    pub fn has_subscriber(&self, platform: Platform) -> bool {
        self.subscribers
            .lock()
            .map(|subscribers| {
                subscribers
                    .iter()
                    .any(|(subscribed, mailbox)| *subscribed == platform && !mailbox.is_closed())
            })
            .unwrap_or(false)
    }

    /// The platforms an adapter listens for.
    pub fn platforms(&self) -> Vec<Platform> {
        let mut platforms: Vec<Platform> = self
            .subscribers
            .lock()
            .map(|subscribers| {
                subscribers
                    .iter()
                    .filter(|(_, mailbox)| !mailbox.is_closed())
                    .map(|(platform, _)| *platform)
                    .collect()
            })
            .unwrap_or_default();
        platforms.sort_by_key(|platform| platform.as_str());
        platforms.dedup();
        platforms
    }

    /// Sends a message, redacted, to its platform's adapters.
    pub fn send(&self, message: Outbound) {
        let platform = message.platform();
        let message = message.redacted();
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.retain(|(_, mailbox)| !mailbox.is_closed());
            for (subscribed, mailbox) in subscribers.iter() {
                if *subscribed == platform {
                    mailbox.push(message.clone());
                }
            }
        }
    }

    /// How many messages wait for that platform's adapters, and how many
    /// their subscriptions dropped so far.
    pub fn backlog(&self, platform: Platform) -> (usize, u64) {
        self.subscribers
            .lock()
            .map(|subscribers| {
                subscribers
                    .iter()
                    .filter(|(subscribed, _)| *subscribed == platform)
                    .fold((0, 0), |(waiting, dropped), (_, mailbox)| {
                        (waiting + mailbox.len(), dropped + mailbox.dropped_total())
                    })
            })
            .unwrap_or((0, 0))
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if let Ok(subscribers) = self.subscribers.lock() {
            for (_, mailbox) in subscribers.iter() {
                mailbox.close();
            }
        }
    }
}

impl Subscription {
    /// A subscription fed by hand: a stage between the outbox and an
    /// adapter pushes into the mailbox and closes it when it stops.
    pub fn pair() -> (Arc<Mailbox>, Subscription) {
        let mailbox = Mailbox::new();
        (Arc::clone(&mailbox), Subscription { mailbox })
    }

    /// The next message, waiting for one; `None` once the outbox is gone
    /// and everything was read.
    pub async fn recv(&mut self) -> Option<Outbound> {
        self.mailbox.pop().await
    }

    /// The next message if one is waiting.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when nothing waits, [`TryRecvError::Closed`]
    /// when nothing waits and the outbox is gone.
    pub fn try_recv(&mut self) -> Result<Outbound, TryRecvError> {
        match self.mailbox.try_pop() {
            Some(message) => Ok(message),
            None if self.mailbox.is_closed() => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

impl Outbound {
    /// The message with every text it carries redacted.
    pub fn redacted(self) -> Outbound {
        match self {
            Outbound::Operation {
                op_id,
                platform,
                channel,
                reply,
            } => Outbound::Operation {
                op_id,
                platform,
                channel,
                reply: reply.redacted(),
            },
            Outbound::Detail {
                op_id,
                platform,
                channel,
                text,
            } => Outbound::Detail {
                op_id,
                platform,
                channel,
                text: redact(&text),
            },
            Outbound::Ephemeral {
                platform,
                channel,
                user_id,
                reply,
            } => Outbound::Ephemeral {
                platform,
                channel,
                user_id,
                reply: reply.redacted(),
            },
            Outbound::Audit {
                platform,
                channel,
                text,
            } => Outbound::Audit {
                platform,
                channel,
                text: redact(&text),
            },
        }
    }
}

impl Reply {
    /// The reply with every text redacted: title, status, fields, lines and
    /// step lines. Button values carry ids and hashes, never text.
    pub fn redacted(self) -> Reply {
        Reply {
            title: redact(&self.title),
            tone: self.tone,
            status: redact(&self.status),
            fields: self
                .fields
                .into_iter()
                .map(|(name, value)| (redact(&name), redact(&value)))
                .collect(),
            lines: self.lines.iter().map(|line| redact(line)).collect(),
            steps: self
                .steps
                .into_iter()
                .map(|step| StepLine {
                    title: redact(&step.title),
                    status: step.status,
                    elapsed: step.elapsed,
                    detail: redact(&step.detail),
                })
                .collect(),
            buttons: self
                .buttons
                .into_iter()
                .map(|button| Button {
                    label: redact(&button.label),
                    action: button.action,
                })
                .collect(),
        }
    }
}

/// The answer to a request, given at once (within Slack's 3 seconds):
/// accepted, or refused with what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted as an operation; its message follows in the channel.
    Accepted {
        /// The operation.
        op_id: i64,
    },
    /// Shown only to the requester: a dry run's plan, usage, a refusal.
    Private(Reply),
    /// A redelivery of something already handled; nothing happens.
    Duplicate,
}

impl Answer {
    /// The answer with its private reply redacted: adapters send it
    /// straight back to the requester, past the outbox.
    pub fn redacted(self) -> Answer {
        match self {
            Answer::Private(reply) => Answer::Private(reply.redacted()),
            other => other,
        }
    }
}
