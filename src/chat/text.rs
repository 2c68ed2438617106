//! Renders a `Reply` as plain text: for the console, audit channel lines and
//! logs. Pure, so its output is tested exactly.

use super::{ButtonAction, Reply, StepStatus, Tone};

/// The reply as plain text lines, without a trailing newline.
pub fn render(reply: &Reply) -> String {
    let mut lines = vec![format!("{} {}", tone_mark(reply.tone), reply.title)];
    if !reply.status.is_empty() {
        lines.push(format!("  {}", reply.status));
    }
    for (name, value) in &reply.fields {
        lines.push(format!("  {name}: {value}"));
    }
    for step in &reply.steps {
        let mut line = format!("  {} {}", step_mark(step.status), step.title);
        if let Some(elapsed) = &step.elapsed {
            line.push_str(&format!(" ({elapsed})"));
        }
        if !step.detail.is_empty() {
            line.push_str(&format!(" — {}", step.detail));
        }
        lines.push(line);
    }
    for line in &reply.lines {
        lines.push(format!("  {line}"));
    }
    if !reply.buttons.is_empty() {
        let buttons: Vec<String> = reply
            .buttons
            .iter()
            .map(|button| match &button.action {
                ButtonAction::Approve { op_id, .. } => {
                    format!("[{}: :approve {op_id}]", button.label)
                }
                ButtonAction::Reject { op_id } => format!("[{}: :reject {op_id}]", button.label),
            })
            .collect();
        lines.push(format!("  {}", buttons.join(" ")));
    }
    lines.join("\n")
}

/// A one-character mark for a tone.
pub fn tone_mark(tone: Tone) -> &'static str {
    match tone {
        Tone::Info => "ℹ",
        Tone::Waiting => "⏳",
        Tone::Working => "▶",
        Tone::Success => "✅",
        Tone::Warning => "⚠",
        Tone::Failure => "❌",
    }
}

/// A one-character mark for a step status.
pub fn step_mark(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "·",
        StepStatus::Running => "…",
        StepStatus::Ok => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Skipped => "-",
    }
}
