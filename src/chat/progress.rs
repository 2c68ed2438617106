//! Coalesces edits of operation messages so long operations do not trip
//! platform rate limits: the first version of a message goes out at once,
//! then at most one edit per interval carries the newest content, and the
//! last version is always delivered. Other messages pass straight through.
//! Shared by every adapter that edits messages. Its output is bounded like
//! the outbox (`chat::queue`), so a slow adapter behind it holds no more.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::queue::Mailbox;
use super::{Outbound, Subscription};

/// Reads `input` and forwards to the returned subscription, coalescing
/// edits of each operation's message to at most one per `interval`.
pub fn coalesce(mut input: Subscription, interval: Duration) -> Subscription {
    let (output, receiver) = Subscription::pair();
    tokio::spawn(async move {
        run(&mut input, interval, &output).await;
        output.close();
    });
    receiver
}

async fn run(input: &mut Subscription, interval: Duration, output: &Mailbox) {
    {
        let mut last_sent: HashMap<i64, Instant> = HashMap::new();
        let mut pending: HashMap<i64, Outbound> = HashMap::new();
        loop {
            let next_due = pending
                .keys()
                .filter_map(|op_id| last_sent.get(op_id).map(|sent| *sent + interval))
                .min();
            let message = match next_due {
                Some(due) => tokio::select! {
                    message = input.recv() => message,
                    () = tokio::time::sleep_until(due) => {
                        flush_due(&mut pending, &mut last_sent, interval, output);
                        continue;
                    }
                },
                None => input.recv().await,
            };
            let Some(message) = message else { break };
            let op_id = match &message {
                Outbound::Operation { op_id, .. } => *op_id,
                _ => {
                    if !output.push(message) {
                        return;
                    }
                    continue;
                }
            };
            let now = Instant::now();
            let may_send = last_sent
                .get(&op_id)
                .is_none_or(|sent| now >= *sent + interval);
            if may_send {
                pending.remove(&op_id);
                last_sent.insert(op_id, now);
                if !output.push(message) {
                    return;
                }
            } else {
                pending.insert(op_id, message);
            }
        }
        for (_, message) in pending.drain() {
            output.push(message);
        }
    }
}

fn flush_due(
    pending: &mut HashMap<i64, Outbound>,
    last_sent: &mut HashMap<i64, Instant>,
    interval: Duration,
    output: &Mailbox,
) {
    let now = Instant::now();
    let due: Vec<i64> = pending
        .keys()
        .copied()
        .filter(|op_id| {
            last_sent
                .get(op_id)
                .is_none_or(|sent| now >= *sent + interval)
        })
        .collect();
    for op_id in due {
        if let Some(message) = pending.remove(&op_id) {
            last_sent.insert(op_id, now);
            output.push(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Reply, Tone};
    use crate::names::Platform;

    fn edit(op_id: i64, status: &str) -> Outbound {
        Outbound::Operation {
            op_id,
            platform: Platform::Slack,
            channel: "C1".to_string(),
            reply: Reply::new("t", Tone::Working, status),
        }
    }

    fn status_of(message: &Outbound) -> String {
        match message {
            Outbound::Operation { op_id, reply, .. } => format!("{op_id}:{}", reply.status),
            other => format!("{other:?}"),
        }
    }

    /// Waits until the coalescer has read everything given to it.
    async fn until_read(input: &Mailbox) {
        while !input.is_empty() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn sends_first_and_last_and_at_most_one_per_interval() {
        let (input, receiver) = Subscription::pair();
        let mut output = coalesce(receiver, Duration::from_millis(300));
        input.push(edit(7, "step 1"));
        until_read(&input).await;
        for step in 2..=5 {
            input.push(edit(7, &format!("step {step}")));
        }
        input.push(edit(8, "other op"));
        assert_eq!(status_of(&output.recv().await.expect("first")), "7:step 1");
        assert_eq!(
            status_of(&output.recv().await.expect("other op at once")),
            "8:other op"
        );
        let started = Instant::now();
        assert_eq!(
            status_of(&output.recv().await.expect("latest after interval")),
            "7:step 5"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "waited for the interval"
        );
        input.push(edit(7, "done"));
        input.close();
        assert_eq!(
            status_of(&output.recv().await.expect("final state is delivered")),
            "7:done"
        );
        assert!(output.recv().await.is_none());
    }
}
