//! Approvals given in chat, the same on every platform: a reaction with the
//! approve emoji approves, removing it withdraws, the reject emoji rejects;
//! an Approve or Reject button carries the operation and its parameters
//! hash. Reactions on messages that are not approval requests are ignored
//! unless they use one of the two emoji, which are then answered.

use std::sync::Arc;

use crate::app::App;
use crate::chat::ButtonAction;
use crate::flow::{self, Feedback, Sender};
use crate::names::Platform;

/// What a reaction means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve.
    Approve,
    /// Reject.
    Reject,
}

/// Whether a reaction is the approve or reject emoji. Slack reports emoji
/// by name (`white_check_mark`), Discord by the character (`✅`); both are
/// recognised for the configured names.
pub fn decision_for(app: &App, emoji: &str) -> Option<Decision> {
    let emoji = emoji.trim_matches(':');
    let matches =
        |configured: &str| emoji == configured || emoji_character(configured) == Some(emoji);
    if matches(&app.config.approval_emoji.approve) {
        Some(Decision::Approve)
    } else if matches(&app.config.approval_emoji.reject) {
        Some(Decision::Reject)
    } else {
        None
    }
}

/// The character of a Slack emoji name, for the names people choose for
/// approvals (Discord reacts with the character).
pub fn emoji_character(name: &str) -> Option<&'static str> {
    Some(match name {
        "white_check_mark" => "✅",
        "heavy_check_mark" => "✔️",
        "ballot_box_with_check" => "☑️",
        "+1" | "thumbsup" => "👍",
        "x" => "❌",
        "no_entry" => "⛔",
        "no_entry_sign" => "🚫",
        "-1" | "thumbsdown" => "👎",
        "octagonal_sign" => "🛑",
        _ => return None,
    })
}

/// A reaction added to or removed from a message. Returns what to tell the
/// person, or `None` when the reaction is not about approvals at all.
pub async fn on_reaction(
    app: &Arc<App>,
    sender: &Sender,
    message_ref: &str,
    emoji: &str,
    added: bool,
) -> Option<Feedback> {
    let decision = decision_for(app, emoji)?;
    let op_id = match app
        .store
        .operation_of_message(sender.platform, &sender.channel, message_ref)
        .await
    {
        Ok(Some(op_id)) => op_id,
        Ok(None) => {
            return Some(Feedback {
                applied: false,
                text:
                    "that message is not an approval request; react on the operation's own message"
                        .to_string(),
            });
        }
        Err(error) => {
            return Some(Feedback {
                applied: false,
                text: format!("cannot look the message up: {error}"),
            });
        }
    };
    Some(match (decision, added) {
        (Decision::Approve, true) => flow::approve(app, sender, op_id, None).await,
        (Decision::Approve, false) => flow::withdraw(app, sender, op_id).await,
        (Decision::Reject, true) => flow::reject(app, sender, op_id).await,
        (Decision::Reject, false) => return None,
    })
}

/// A button click, with the button's value.
pub async fn on_button(app: &Arc<App>, sender: &Sender, value: &str) -> Feedback {
    match ButtonAction::from_value(value) {
        Some(ButtonAction::Approve { op_id, params_hash }) => {
            flow::approve(app, sender, op_id, Some(&params_hash)).await
        }
        Some(ButtonAction::Reject { op_id }) => flow::reject(app, sender, op_id).await,
        None => Feedback {
            applied: false,
            text: "that button is not one of Deckhand's".to_string(),
        },
    }
}

/// Remembers which platform message shows an operation, so reactions on
/// it can be recognised.
pub async fn remember_message(
    app: &App,
    op_id: i64,
    platform: Platform,
    channel: &str,
    message_ref: &str,
) {
    if let Err(error) = app
        .store
        .set_message(op_id, platform, channel, message_ref)
        .await
    {
        tracing::error!(op_id, error = %error, "cannot remember the operation's message; reactions on it will not count");
    }
}
