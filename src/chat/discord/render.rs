//! `Reply` → Discord message JSON: one embed coloured by tone (title, status,
//! steps with status and duration, fields, report lines) plus an action row
//! of buttons. Pure, and every body the adapter sends is built here, so the
//! wire format is snapshot-tested (`snapshots/*.json`).
//!
//! Everything Deckhand posts carries `allowed_mentions` so that text from
//! commands or logs can never ping `@everyone`; only a message addressed to
//! one person mentions that person.

use serde_json::{Value, json};

use crate::chat::{Button, ButtonAction, Reply, StepStatus, Tone};

/// Interaction callback type PONG.
const PONG: u8 = 1;
/// Interaction callback type CHANNEL_MESSAGE_WITH_SOURCE.
const CHANNEL_MESSAGE: u8 = 4;
/// Interaction callback type DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE.
const DEFERRED_CHANNEL_MESSAGE: u8 = 5;
/// Message flag EPHEMERAL: only the person who interacted sees it.
pub const EPHEMERAL: u64 = 1 << 6;

/// Discord's limits, in characters.
const MAX_CONTENT: usize = 2000;
const MAX_TITLE: usize = 256;
const MAX_DESCRIPTION: usize = 4096;
const MAX_FIELDS: usize = 25;
const MAX_FIELD_NAME: usize = 256;
const MAX_FIELD_VALUE: usize = 1024;

/// The message showing an operation, for posting and for every edit. It
/// always carries `components`, so an edit removes buttons that no longer
/// apply, and an empty `content`, so an edit replaces "thinking…".
pub fn operation_message(reply: &Reply) -> Value {
    json!({
        "content": "",
        "embeds": [embed(reply)],
        "components": components(&reply.buttons),
        "allowed_mentions": no_mentions(),
    })
}

/// The answer to PING on the interactions endpoint.
pub fn pong() -> Value {
    json!({ "type": PONG })
}

/// "Deckhand is thinking…": the interaction is acknowledged and its
/// original response is edited later.
pub fn deferred() -> Value {
    json!({ "type": DEFERRED_CHANNEL_MESSAGE })
}

/// The same, but only the person who interacted sees the answer.
pub fn deferred_ephemeral() -> Value {
    json!({ "type": DEFERRED_CHANNEL_MESSAGE, "data": { "flags": EPHEMERAL } })
}

/// An immediate answer only the requester sees (usage, refusals, dry runs).
pub fn ephemeral_response(reply: &Reply) -> Value {
    json!({ "type": CHANNEL_MESSAGE, "data": ephemeral_message(reply) })
}

/// A message only the person who interacted sees, as a follow-up body.
pub fn ephemeral_message(reply: &Reply) -> Value {
    json!({
        "content": "",
        "embeds": [embed(reply)],
        "components": [],
        "flags": EPHEMERAL,
        "allowed_mentions": no_mentions(),
    })
}

/// The answer to a button press, only for the presser.
pub fn feedback_response(text: &str, applied: bool) -> Value {
    json!({ "type": CHANNEL_MESSAGE, "data": feedback_message(text, applied) })
}

/// The same as the body of an edit or follow-up.
pub fn feedback_message(text: &str, applied: bool) -> Value {
    json!({
        "content": feedback_text(text, applied),
        "flags": EPHEMERAL,
        "allowed_mentions": no_mentions(),
    })
}

/// A public answer to someone whose reaction did not count (Discord has no
/// ephemeral messages outside interactions): a reply to the reacted message
/// that mentions only them.
pub fn reaction_refusal(user_id: &str, message_id: &str, text: &str) -> Value {
    json!({
        "content": truncate(&format!("<@{user_id}> {}", feedback_text(text, false)), MAX_CONTENT),
        "message_reference": { "message_id": message_id, "fail_if_not_exists": false },
        "allowed_mentions": { "parse": [], "users": [user_id] },
    })
}

/// A message for one person where no interaction lets Deckhand whisper:
/// it mentions them and shows the reply.
pub fn addressed_message(user_id: &str, reply: &Reply) -> Value {
    json!({
        "content": format!("<@{user_id}>"),
        "embeds": [embed(reply)],
        "components": [],
        "allowed_mentions": { "parse": [], "users": [user_id] },
    })
}

/// A step's output under the operation's message: its title, then the
/// output as a code block, cut to fit. `reply_to` makes it a reply to the
/// operation's channel message.
pub fn detail_message(text: &str, reply_to: Option<&str>) -> Value {
    let (title, output) = text.split_once('\n').unwrap_or((text, ""));
    let heading = format!("**{}**", escape_markdown(title));
    let content = if output.trim().is_empty() {
        truncate(&heading, MAX_CONTENT)
    } else {
        let room = MAX_CONTENT.saturating_sub(heading.chars().count() + "\n```\n\n```".len());
        format!("{heading}\n```\n{}\n```", code_block_text(output, room))
    };
    let mut body = json!({ "content": content, "allowed_mentions": no_mentions() });
    if let Some(message_id) = reply_to {
        body["message_reference"] =
            json!({ "message_id": message_id, "fail_if_not_exists": false });
    }
    body
}

/// A line for an audit channel.
pub fn audit_message(text: &str) -> Value {
    json!({
        "content": truncate(&escape_markdown(text), MAX_CONTENT),
        "allowed_mentions": no_mentions(),
    })
}

/// What the interaction's original response becomes once Deckhand moved
/// the operation to a channel message (interaction tokens last 15 minutes).
pub fn continued_message(reply: &Reply, link: &str) -> Value {
    let pointer = Reply::new(
        reply.title.clone(),
        Tone::Info,
        format!("continued in a channel message: {link}"),
    );
    json!({
        "content": "",
        "embeds": [embed(&pointer)],
        "components": [],
        "allowed_mentions": no_mentions(),
    })
}

/// The embed colour of a tone.
pub fn tone_colour(tone: Tone) -> u32 {
    match tone {
        Tone::Info => 0x5865F2,
        Tone::Waiting => 0xFEE75C,
        Tone::Working => 0x3498DB,
        Tone::Success => 0x57F287,
        Tone::Warning => 0xE67E22,
        Tone::Failure => 0xED4245,
    }
}

/// The mark in front of a step line.
pub fn step_mark(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "⬜",
        StepStatus::Running => "🔄",
        StepStatus::Ok => "✅",
        StepStatus::Failed => "❌",
        StepStatus::Skipped => "⏭️",
    }
}

fn embed(reply: &Reply) -> Value {
    let fields: Vec<Value> = reply
        .fields
        .iter()
        .take(MAX_FIELDS)
        .map(|(name, value)| {
            let value = if value.trim().is_empty() {
                "—".to_string()
            } else {
                escape_markdown(value)
            };
            json!({
                "name": truncate(&escape_markdown(name), MAX_FIELD_NAME),
                "value": truncate(&value, MAX_FIELD_VALUE),
                "inline": false,
            })
        })
        .collect();
    let mut embed = json!({
        "title": truncate(&escape_markdown(&reply.title), MAX_TITLE),
        "color": tone_colour(reply.tone),
        "description": description(reply),
    });
    if !fields.is_empty() {
        embed["fields"] = Value::Array(fields);
    }
    embed
}

/// Status line, step lines, then report lines as a code block; the code
/// block is what gets cut when it does not fit.
fn description(reply: &Reply) -> String {
    let mut parts = Vec::new();
    if !reply.status.is_empty() {
        parts.push(escape_markdown(&reply.status));
    }
    if !reply.steps.is_empty() {
        let steps: Vec<String> = reply
            .steps
            .iter()
            .map(|step| {
                let mut line = format!(
                    "{} {}",
                    step_mark(step.status),
                    escape_markdown(&step.title)
                );
                if let Some(elapsed) = &step.elapsed {
                    line.push_str(&format!(" ({elapsed})"));
                }
                if !step.detail.is_empty() {
                    line.push_str(&format!(" — {}", escape_markdown(&step.detail)));
                }
                line
            })
            .collect();
        parts.push(steps.join("\n"));
    }
    let head = truncate(&parts.join("\n\n"), MAX_DESCRIPTION);
    if reply.lines.is_empty() {
        return head;
    }
    let used = head.chars().count() + "\n\n```\n\n```".len();
    let room = MAX_DESCRIPTION.saturating_sub(used);
    if room < 40 {
        return head;
    }
    let block = format!(
        "```\n{}\n```",
        code_block_text(&reply.lines.join("\n"), room)
    );
    if head.is_empty() {
        block
    } else {
        format!("{head}\n\n{block}")
    }
}

/// Text for inside a code block: no fence can close it early, and it is cut
/// at a line boundary with a note when longer than `room` characters.
fn code_block_text(text: &str, room: usize) -> String {
    let text = text.replace("```", "`\u{200b}``");
    if text.chars().count() <= room {
        return text;
    }
    let note = "… (cut to fit Discord's message size)";
    let budget = room.saturating_sub(note.chars().count() + 1);
    let mut kept = String::new();
    for line in text.lines() {
        if kept.chars().count() + line.chars().count() + 1 > budget {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    if kept.is_empty() {
        kept = text.chars().take(budget).collect();
        kept.push('\n');
    }
    format!("{kept}{note}")
}

fn components(buttons: &[Button]) -> Value {
    if buttons.is_empty() {
        return json!([]);
    }
    let buttons: Vec<Value> = buttons
        .iter()
        .take(5)
        .map(|button| {
            let style = match button.action {
                ButtonAction::Approve { .. } => 3,
                ButtonAction::Reject { .. } => 4,
            };
            json!({
                "type": 2,
                "style": style,
                "label": truncate(&button.label, 80),
                "custom_id": button.action.to_value(),
            })
        })
        .collect();
    json!([{ "type": 1, "components": buttons }])
}

fn feedback_text(text: &str, applied: bool) -> String {
    let mark = if applied { "✅" } else { "⛔" };
    truncate(&format!("{mark} {}", escape_markdown(text)), MAX_CONTENT)
}

fn no_mentions() -> Value {
    json!({ "parse": [] })
}

/// Escapes Discord markdown so names and values show as typed
/// (`feature/x_y` stays as is rather than turning italic).
pub fn escape_markdown(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for (line_idx, line) in text.split('\n').enumerate() {
        if line_idx > 0 {
            escaped.push('\n');
        }
        if line.starts_with(['#', '>', '-']) {
            escaped.push('\\');
        }
        for character in line.chars() {
            if matches!(character, '\\' | '*' | '_' | '~' | '`' | '|') {
                escaped.push('\\');
            }
            escaped.push(character);
        }
    }
    escaped
}

/// Cuts `text` to `max` characters, ending with "…" when cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::StepLine;
    use std::path::PathBuf;

    /// Compares `actual` with `snapshots/NAME.json`; with
    /// `UPDATE_SNAPSHOTS=1` it writes the file instead.
    fn check(name: &str, actual: &Value) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/chat/discord/snapshots")
            .join(format!("{name}.json"));
        let pretty = serde_json::to_string_pretty(actual).expect("JSON values serialize") + "\n";
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().expect("a folder")).expect("snapshot folder");
            std::fs::write(&path, &pretty).expect("write snapshot");
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "reading {}: {error} (UPDATE_SNAPSHOTS=1 writes it)",
                path.display()
            )
        });
        assert_eq!(
            pretty, expected,
            "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it)"
        );
    }

    fn step(title: &str, status: StepStatus, elapsed: Option<&str>, detail: &str) -> StepLine {
        StepLine::sample(title, status, elapsed, detail)
    }

    fn deploy(tone: Tone, status: &str, steps: Vec<StepLine>) -> Reply {
        let mut reply = Reply::new("Deploy #42 · staging ← develop · @alice", tone, status);
        reply.fields = vec![(
            "backend".to_string(),
            "deckhand-demo/backend:v1 → deckhand-demo/backend:develop".to_string(),
        )];
        reply.steps = steps;
        reply
    }

    fn deploy_steps(statuses: [StepStatus; 4]) -> Vec<StepLine> {
        let titles = ["pull", "migrate", "recreate", "wait healthy"];
        titles
            .iter()
            .zip(statuses)
            .map(|(title, status)| {
                let elapsed =
                    matches!(status, StepStatus::Ok | StepStatus::Failed).then_some("1.2s");
                step(title, status, elapsed, "")
            })
            .collect()
    }

    #[test]
    fn operation_states_render_as_snapshots() {
        use StepStatus::{Failed, Ok, Pending, Running, Skipped};
        let queued = deploy(Tone::Working, "queued", deploy_steps([Pending; 4]));
        let running = deploy(
            Tone::Working,
            "running step 2 of 4: migrate",
            deploy_steps([Ok, Running, Pending, Pending]),
        );
        let succeeded = deploy(
            Tone::Success,
            "succeeded: backend runs develop",
            deploy_steps([Ok, Ok, Ok, Ok]),
        );
        let mut failed = deploy(
            Tone::Failure,
            "failed: migrate exited with 1",
            deploy_steps([Ok, Failed, Skipped, Skipped]),
        );
        failed.steps[1].detail = "exit code 1".to_string();
        failed.lines = vec!["Error: relation \"tasks\" already exists".to_string()];
        let mut awaiting = Reply::new(
            "Rollback #43 · production backend · @alice",
            Tone::Waiting,
            "awaiting approval: 0 of 1 from role deployers (not @alice) · expires 10:31 UTC · react ✅ to approve, ❌ to reject",
        );
        awaiting.buttons = vec![
            Button {
                label: "Approve".to_string(),
                action: ButtonAction::Approve {
                    op_id: 43,
                    params_hash: "9f2c".repeat(16),
                },
            },
            Button {
                label: "Reject".to_string(),
                action: ButtonAction::Reject { op_id: 43 },
            },
        ];
        let rejected = Reply::new(
            "Rollback #43 · production backend · @alice",
            Tone::Failure,
            "rejected by bob — nothing was run",
        );
        for (name, reply) in [
            ("operation_queued", &queued),
            ("operation_running", &running),
            ("operation_succeeded", &succeeded),
            ("operation_failed", &failed),
            ("operation_awaiting_approval", &awaiting),
            ("operation_rejected", &rejected),
        ] {
            check(name, &operation_message(reply));
        }
    }

    #[test]
    fn private_answers_render_as_snapshots() {
        let mut usage = Reply::new("/deploy usage", Tone::Info, "/deploy ENV REF [--dry-run]");
        usage.lines = vec![
            "ENV: where to deploy — one of production, staging".to_string(),
            "REF: branch, tag or commit to deploy".to_string(),
        ];
        check("ephemeral_usage", &ephemeral_response(&usage));
        check(
            "feedback_refused",
            &feedback_response("you cannot approve your own request #43", false),
        );
        check(
            "reaction_refusal",
            &reaction_refusal(
                "100000000000000001",
                "1174110679859331999",
                "you cannot approve your own request #43",
            ),
        );
        check(
            "detail",
            &detail_message(
                "migrate:\n== 20240101 create_tasks: migrated ==",
                Some("1174110679859331999"),
            ),
        );
        check(
            "audit",
            &audit_message("10:31 deploy #42 staging by alice: requested"),
        );
        check("deferred", &deferred());
        check("pong", &pong());
    }

    #[test]
    fn markdown_in_values_is_escaped() {
        assert_eq!(
            escape_markdown("feature/x_y *bold*"),
            "feature/x\\_y \\*bold\\*"
        );
        assert_eq!(
            escape_markdown("# heading\n> quote"),
            "\\# heading\n\\> quote"
        );
    }

    #[test]
    fn long_reports_are_cut_at_a_line_with_a_note() {
        let mut report = Reply::new(
            "Logs #7 · staging backend · @erin",
            Tone::Success,
            "succeeded",
        );
        report.lines = (0..2000).map(|line| format!("line {line} ```")).collect();
        let message = operation_message(&report);
        let description = message["embeds"][0]["description"]
            .as_str()
            .expect("a description");
        assert!(
            description.chars().count() <= MAX_DESCRIPTION,
            "{}",
            description.len()
        );
        assert!(
            description.ends_with("… (cut to fit Discord's message size)\n```"),
            "{description}"
        );
        assert_eq!(
            description.matches("```").count(),
            2,
            "fences inside the report are broken up"
        );
    }

    #[test]
    fn long_details_fit_in_one_message() {
        let output: Vec<String> = (0..500).map(|line| format!("output line {line}")).collect();
        let message = detail_message(&format!("logs:\n{}", output.join("\n")), None);
        let content = message["content"].as_str().expect("content");
        assert!(content.chars().count() <= MAX_CONTENT);
        assert!(content.starts_with("**logs:**\n```\noutput line 0\n"));
        assert!(content.ends_with("… (cut to fit Discord's message size)\n```"));
        assert!(message.get("message_reference").is_none());
    }
}
