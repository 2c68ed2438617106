//! Bounded queues of outbound messages, for the outbox and the adapters'
//! own delivery queues, so a slow or stalled platform never grows memory
//! without bound.
//!
//! What is kept when a consumer falls behind:
//! - an operation's message: only its newest state, in the place its first
//!   state took, so the final state is always delivered and delivered once;
//! - detail lines, audit lines and private messages: up to a limit per
//!   operation, audit channel or person (and a limit over all of them);
//!   what does not fit is counted, and the consumer gets one note saying
//!   how many were dropped, where the dropped messages would have been.
//!
//! The queue does not deliver anything, wait, or know about platforms.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Outbound, Reply, Tone};
use crate::names::Platform;

/// Most detail lines of one operation waiting at once.
pub const DETAIL_LIMIT: usize = 100;
/// Most lines waiting for one audit channel.
pub const AUDIT_LIMIT: usize = 200;
/// Most private messages waiting for one person.
pub const EPHEMERAL_LIMIT: usize = 10;
/// Most messages other than operation states waiting in one queue.
pub const TOTAL_LIMIT: usize = 2000;

/// Outbound messages waiting, bounded as the module describes.
#[derive(Debug, Default)]
pub struct OutboundQueue {
    next_seq: u64,
    /// Everything waiting, in delivery order.
    order: BTreeMap<u64, Slot>,
    /// The newest state of each operation waiting, and its place in `order`.
    operations: HashMap<i64, (u64, Outbound)>,
    /// Waiting messages per key, against the per-key limits.
    counts: HashMap<Key, usize>,
    /// Messages other than operation states waiting.
    others: usize,
    /// Notes of dropped messages not yet taken: their place and count.
    notes: HashMap<Key, (u64, usize, Outbound)>,
    /// Messages dropped since the queue was made, for metrics and tests.
    dropped_total: u64,
}

#[derive(Debug)]
enum Slot {
    Operation(i64),
    Message(Key, Box<Outbound>),
    Note(Key),
}

/// What a limit counts: one operation's details, one audit channel, one
/// person's private messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Detail(i64),
    Audit(Platform, String),
    Person(Platform, String, String),
}

impl OutboundQueue {
    /// An empty queue.
    pub fn new() -> OutboundQueue {
        OutboundQueue::default()
    }

    /// Adds a message: an operation's state replaces the one waiting; any
    /// other message waits, or is counted as dropped when its limit is
    /// reached.
    pub fn push(&mut self, message: Outbound) {
        let (key, limit) = match &message {
            Outbound::Operation { op_id, .. } => {
                self.push_operation(*op_id, message);
                return;
            }
            Outbound::Detail { op_id, .. } => (Key::Detail(*op_id), DETAIL_LIMIT),
            Outbound::Audit {
                platform, channel, ..
            } => (Key::Audit(*platform, channel.clone()), AUDIT_LIMIT),
            Outbound::Ephemeral {
                platform,
                channel,
                user_id,
                ..
            } => (
                Key::Person(*platform, channel.clone(), user_id.clone()),
                EPHEMERAL_LIMIT,
            ),
        };
        let waiting = self.counts.get(&key).copied().unwrap_or(0);
        if waiting >= limit || self.others >= TOTAL_LIMIT {
            self.drop_message(key, &message);
            return;
        }
        self.counts.insert(key.clone(), waiting + 1);
        self.others += 1;
        let seq = self.take_seq();
        self.order
            .insert(seq, Slot::Message(key, Box::new(message)));
    }

    /// The next message in delivery order.
    pub fn pop(&mut self) -> Option<Outbound> {
        let (_, slot) = self.order.pop_first()?;
        match slot {
            Slot::Operation(op_id) => self.operations.remove(&op_id).map(|(_, message)| message),
            Slot::Message(key, message) => {
                self.others = self.others.saturating_sub(1);
                if let Some(count) = self.counts.get_mut(&key) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.counts.remove(&key);
                    }
                }
                Some(*message)
            }
            Slot::Note(key) => self
                .notes
                .remove(&key)
                .map(|(_, dropped, template)| note(template, dropped)),
        }
    }

    /// How many messages (and notes) are waiting.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// How many messages this queue has dropped since it was made.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    fn push_operation(&mut self, op_id: i64, message: Outbound) {
        if let Some((_, waiting)) = self.operations.get_mut(&op_id) {
            *waiting = message;
            return;
        }
        let seq = self.take_seq();
        self.operations.insert(op_id, (seq, message));
        self.order.insert(seq, Slot::Operation(op_id));
    }

    fn drop_message(&mut self, key: Key, message: &Outbound) {
        self.dropped_total += 1;
        if let Some((_, dropped, _)) = self.notes.get_mut(&key) {
            *dropped += 1;
            return;
        }
        let seq = self.take_seq();
        self.notes.insert(key.clone(), (seq, 1, message.clone()));
        self.order.insert(seq, Slot::Note(key));
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }
}

/// The note that stands for `dropped` messages like `template`.
fn note(template: Outbound, dropped: usize) -> Outbound {
    match template {
        Outbound::Detail {
            op_id,
            platform,
            channel,
            ..
        } => Outbound::Detail {
            op_id,
            platform,
            channel,
            text: format!("… {dropped} more line(s) of output not posted: chat could not keep up"),
        },
        Outbound::Audit {
            platform, channel, ..
        } => Outbound::Audit {
            platform,
            channel,
            text: format!(
                "… {dropped} audit line(s) not posted here: chat could not keep up; `deckhand audit list` has every entry"
            ),
        },
        Outbound::Ephemeral {
            platform,
            channel,
            user_id,
            ..
        } => Outbound::Ephemeral {
            platform,
            channel,
            user_id,
            reply: Reply::new(
                "Deckhand",
                Tone::Warning,
                format!("… {dropped} message(s) to you not posted: chat could not keep up"),
            ),
        },
        operation @ Outbound::Operation { .. } => operation,
    }
}

/// A queue shared between producers and one consumer that waits for
/// messages. Closing and pushing are decided under one lock, so a message
/// is either taken by the consumer or refused, never left behind.
#[derive(Debug, Default)]
pub struct Mailbox {
    state: Mutex<MailboxState>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct MailboxState {
    queue: OutboundQueue,
    closed: bool,
}

impl Mailbox {
    /// An empty, open mailbox.
    pub fn new() -> Arc<Mailbox> {
        Arc::new(Mailbox::default())
    }

    /// Adds a message and wakes the consumer; `false` (and nothing added)
    /// once the mailbox is closed.
    pub fn push(&self, message: Outbound) -> bool {
        let accepted = match self.state.lock() {
            Ok(mut state) if !state.closed => {
                state.queue.push(message);
                true
            }
            _ => false,
        };
        if accepted {
            self.ready.notify_one();
        }
        accepted
    }

    /// The next message without waiting.
    pub fn try_pop(&self) -> Option<Outbound> {
        self.state.lock().ok()?.queue.pop()
    }

    /// The next message, waiting for one; `None` once the mailbox is
    /// closed and empty.
    pub async fn pop(&self) -> Option<Outbound> {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.state.lock().ok()?;
                if let Some(message) = state.queue.pop() {
                    return Some(message);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Stops accepting messages; the consumer still gets what is waiting.
    pub fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.ready.notify_one();
    }

    /// Closes the mailbox if nothing is waiting, for a consumer that wants
    /// to stop; `false` (and still open) when something arrived.
    pub fn close_if_empty(&self) -> bool {
        match self.state.lock() {
            Ok(mut state) if state.queue.is_empty() => {
                state.closed = true;
                true
            }
            Ok(_) => false,
            Err(_) => true,
        }
    }

    /// Whether it was closed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().map(|state| state.closed).unwrap_or(true)
    }

    /// How many messages are waiting.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .map(|state| state.queue.len())
            .unwrap_or(0)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many messages were dropped since it was made.
    pub fn dropped_total(&self) -> u64 {
        self.state
            .lock()
            .map(|state| state.queue.dropped_total())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(op_id: i64, status: &str) -> Outbound {
        Outbound::Operation {
            op_id,
            platform: Platform::Slack,
            channel: "C1".to_string(),
            reply: Reply::new("op", Tone::Working, status),
        }
    }

    fn detail(op_id: i64, text: &str) -> Outbound {
        Outbound::Detail {
            op_id,
            platform: Platform::Slack,
            channel: "C1".to_string(),
            text: text.to_string(),
        }
    }

    fn audit(text: &str) -> Outbound {
        Outbound::Audit {
            platform: Platform::Slack,
            channel: "CAUDIT".to_string(),
            text: text.to_string(),
        }
    }

    fn shown(message: &Outbound) -> String {
        match message {
            Outbound::Operation { op_id, reply, .. } => format!("op {op_id}: {}", reply.status),
            Outbound::Detail { op_id, text, .. } => format!("detail {op_id}: {text}"),
            Outbound::Audit { text, .. } => format!("audit: {text}"),
            Outbound::Ephemeral { user_id, reply, .. } => format!("to {user_id}: {}", reply.status),
        }
    }

    fn drain(queue: &mut OutboundQueue) -> Vec<String> {
        std::iter::from_fn(|| queue.pop())
            .map(|message| shown(&message))
            .collect()
    }

    #[test]
    fn the_newest_state_of_an_operation_wins_in_its_first_place() {
        let mut queue = OutboundQueue::new();
        queue.push(operation(7, "pull"));
        queue.push(detail(7, "pulled"));
        queue.push(operation(8, "waiting"));
        queue.push(operation(7, "succeeded"));
        assert_eq!(
            drain(&mut queue),
            ["op 7: succeeded", "detail 7: pulled", "op 8: waiting"]
        );
    }

    #[test]
    fn details_beyond_the_limit_become_one_counted_note() {
        let mut queue = OutboundQueue::new();
        for line in 0..DETAIL_LIMIT + 25 {
            queue.push(detail(7, &format!("line {line}")));
        }
        queue.push(operation(7, "done"));
        assert_eq!(queue.len(), DETAIL_LIMIT + 2);
        let drained = drain(&mut queue);
        assert_eq!(drained[0], "detail 7: line 0");
        assert_eq!(
            drained[DETAIL_LIMIT],
            "detail 7: … 25 more line(s) of output not posted: chat could not keep up"
        );
        assert_eq!(drained[DETAIL_LIMIT + 1], "op 7: done");
        assert_eq!(queue.dropped_total(), 25);
    }

    #[test]
    fn a_consumer_that_never_reads_holds_a_bounded_queue() {
        let mut queue = OutboundQueue::new();
        for round in 0..10_000 {
            queue.push(operation(round % 50, &format!("state {round}")));
            queue.push(detail(round % 50, "output"));
            queue.push(audit("entry"));
        }
        assert!(queue.len() <= 50 + TOTAL_LIMIT + 51, "{}", queue.len());
        let drained = drain(&mut queue);
        for op_id in 0..50 {
            let last = 9_950 + op_id;
            assert!(
                drained.contains(&format!("op {op_id}: state {last}")),
                "op {op_id} ends with its final state"
            );
        }
        assert!(drained.iter().any(|line| line.starts_with("audit: … ")));
    }
}
