//! A neutral `Reply` as a Slack message: Block Kit blocks plus the plain
//! `text` Slack shows in notifications and where blocks cannot be shown.
//! Pure, so every operation state's JSON is snapshot-tested against golden
//! files under `tests/fixtures/golden/slack/`.
//!
//! Layout: a section with the tone mark, the title in bold and the status
//! line; the fields (plan, approvals, expiry) as `*name:* value` lines; the
//! steps with their marks and durations; free lines in a code block; and
//! the Approve / Reject buttons, whose values come from
//! `ButtonAction::to_value`. Everything from outside Deckhand is escaped, and
//! every text is clipped to Slack's 3000-character limit per section.

use slack_morphism::prelude as sm;

use crate::chat::text::{self, step_mark, tone_mark};
use crate::chat::{ButtonAction, Reply, StepLine};

/// `block_id` of the actions block under approval requests.
pub const APPROVAL_BLOCK_ID: &str = "deckhand_approval";
/// `action_id` of the Approve button.
pub const APPROVE_ACTION_ID: &str = "deckhand_approve";
/// `action_id` of the Reject button.
pub const REJECT_ACTION_ID: &str = "deckhand_reject";

/// Slack's limit on a section's text.
const SECTION_LIMIT: usize = 3000;

/// The message for a reply.
pub fn render(reply: &Reply) -> sm::SlackMessageContent {
    let mut blocks: Vec<sm::SlackBlock> = vec![section(&format!(
        "{} *{}*{}",
        tone_mark(reply.tone),
        escape(&reply.title),
        if reply.status.is_empty() {
            String::new()
        } else {
            format!("\n{}", escape(&reply.status))
        }
    ))];
    if !reply.fields.is_empty() {
        let lines: Vec<String> = reply
            .fields
            .iter()
            .map(|(name, value)| format!("*{}:* {}", escape(name), escape(value)))
            .collect();
        blocks.push(section(&lines.join("\n")));
    }
    if !reply.steps.is_empty() {
        let lines: Vec<String> = reply.steps.iter().map(step_line).collect();
        blocks.push(section(&lines.join("\n")));
    }
    if !reply.lines.is_empty() {
        blocks.push(section(&code_block(&reply.lines)));
    }
    if !reply.buttons.is_empty() {
        blocks.push(buttons(reply));
    }
    sm::SlackMessageContent::new()
        .with_text(fallback_text(reply))
        .with_blocks(blocks)
}

/// The plain text Slack shows in notifications: the reply without its
/// buttons, which only work as blocks.
fn fallback_text(reply: &Reply) -> String {
    let without_buttons = Reply {
        buttons: Vec::new(),
        ..reply.clone()
    };
    clip(&escape(&text::render(&without_buttons)), SECTION_LIMIT)
}

/// A message of one plain line (feedback on approvals, audit lines).
pub fn render_text(line: &str) -> sm::SlackMessageContent {
    sm::SlackMessageContent::new().with_text(clip(&escape(line), SECTION_LIMIT))
}

/// A detail posted in an operation's thread: its first line as a heading,
/// the rest (command output, say) in a code block.
pub fn render_detail(text: &str) -> sm::SlackMessageContent {
    let mut lines = text.lines();
    let heading = escape(lines.next().unwrap_or_default());
    let rest: Vec<String> = lines.map(str::to_string).collect();
    let body = if rest.is_empty() {
        heading
    } else {
        format!("*{heading}*\n{}", code_block(&rest))
    };
    sm::SlackMessageContent::new()
        .with_text(clip(&escape(text), SECTION_LIMIT))
        .with_blocks(vec![section(&body)])
}

/// Escapes the three characters Slack's mrkdwn treats as markup.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn section(text: &str) -> sm::SlackBlock {
    sm::SlackBlock::Section(
        sm::SlackSectionBlock::new().with_text(sm::SlackBlockText::MarkDown(
            sm::SlackBlockMarkDownText::new(clip(text, SECTION_LIMIT)),
        )),
    )
}

fn step_line(step: &StepLine) -> String {
    let mut line = format!("{} {}", step_mark(step.status), escape(&step.title));
    if let Some(elapsed) = &step.elapsed {
        line.push_str(&format!(" _({})_", escape(elapsed)));
    }
    if !step.detail.is_empty() {
        line.push_str(&format!(" — {}", escape(&step.detail)));
    }
    line
}

/// Free lines in a code block, keeping as many whole lines as fit and
/// saying how many were left out.
fn code_block(lines: &[String]) -> String {
    let budget = SECTION_LIMIT - 64;
    let mut kept = Vec::new();
    let mut used = 0;
    for line in lines {
        let line = escape(line);
        if used + line.len() + 1 > budget {
            break;
        }
        used += line.len() + 1;
        kept.push(line);
    }
    let left_out = lines.len() - kept.len();
    let mut block = format!("```\n{}\n```", kept.join("\n"));
    if left_out > 0 {
        block.push_str(&format!("\n_… {left_out} more line(s) not shown_"));
    }
    block
}

fn buttons(reply: &Reply) -> sm::SlackBlock {
    let elements = reply
        .buttons
        .iter()
        .map(|button| {
            let (action_id, style) = match button.action {
                ButtonAction::Approve { .. } => {
                    (APPROVE_ACTION_ID, sm::SlackBlockButtonStyle::Primary)
                }
                ButtonAction::Reject { .. } => {
                    (REJECT_ACTION_ID, sm::SlackBlockButtonStyle::Danger)
                }
            };
            sm::SlackActionBlockElement::Button(
                sm::SlackBlockButtonElement::new(sm::SlackBlockPlainTextOnly::from(
                    button.label.clone(),
                ))
                .with_action_id(sm::SlackActionId::new(action_id.to_string()))
                .with_value(button.action.to_value())
                .with_style(style),
            )
        })
        .collect();
    sm::SlackBlock::Actions(
        sm::SlackActionsBlock::new(elements)
            .with_block_id(sm::SlackBlockId::new(APPROVAL_BLOCK_ID.to_string())),
    )
}

/// At most `limit` bytes of `text`, cut at a character boundary, with `…`
/// when something was cut.
fn clip(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::chat::{Button, StepStatus, Tone};

    /// Compares the rendered JSON with `tests/fixtures/golden/slack/NAME.json`;
    /// `DECKHAND_BLESS=1 cargo test --lib chat::slack` rewrites the files.
    fn check(name: &str, reply: &Reply) {
        let rendered = serde_json::to_string_pretty(&render(reply)).expect("blocks serialize");
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/golden/slack")
            .join(format!("{name}.json"));
        if std::env::var_os("DECKHAND_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().expect("golden folder")).expect("create folder");
            std::fs::write(&path, format!("{rendered}\n")).expect("write golden file");
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "{}: {error}; run DECKHAND_BLESS=1 cargo test --lib chat::slack::render to create it",
                path.display()
            )
        });
        assert_eq!(
            rendered,
            golden.trim_end(),
            "{name}: the Slack JSON changed; if intended, bless it with DECKHAND_BLESS=1"
        );
    }

    fn step(title: &str, status: StepStatus, elapsed: Option<&str>, detail: &str) -> StepLine {
        StepLine::sample(title, status, elapsed, detail)
    }

    fn deploy_steps(last: StepStatus) -> Vec<StepLine> {
        vec![
            step(
                "resolve images",
                StepStatus::Ok,
                Some("0.1s"),
                "backend → deckhand-demo/backend:develop",
            ),
            step("pull", StepStatus::Ok, Some("2.3s"), "1 image"),
            step("migrate", last, None, ""),
            step("recreate", StepStatus::Pending, None, ""),
        ]
    }

    #[test]
    fn pending_approval_has_plan_approvers_expiry_and_buttons() {
        let mut reply = Reply::new(
            "Rollback #7 · production backend · @alice",
            Tone::Waiting,
            "awaiting approval: 0 of 1 from role deployers (not @alice) · expires 10:31 UTC · react ✅ to approve, ❌ to reject",
        );
        reply.fields = vec![(
            "change".to_string(),
            "backend: deckhand-demo/backend:v2 → deckhand-demo/backend:v1 (release r3, deployed 2 h ago by bob)".to_string(),
        )];
        reply.buttons = vec![
            Button {
                label: "Approve".to_string(),
                action: ButtonAction::Approve {
                    op_id: 7,
                    params_hash: "3f2a9c".to_string(),
                },
            },
            Button {
                label: "Reject".to_string(),
                action: ButtonAction::Reject { op_id: 7 },
            },
        ];
        check("pending", &reply);
    }

    #[test]
    fn running_shows_each_step_with_status_and_duration() {
        let mut reply = Reply::new(
            "Deploy #42 · staging ← develop · @alice",
            Tone::Working,
            "running step 3 of 4: migrate",
        );
        reply.fields = vec![("approved by".to_string(), "@bob".to_string())];
        reply.steps = deploy_steps(StepStatus::Running);
        check("running", &reply);
    }

    #[test]
    fn succeeded_reads_as_done() {
        let mut reply = Reply::new(
            "Deploy #42 · staging ← develop · @alice",
            Tone::Success,
            "succeeded: done in 14.2s",
        );
        reply.steps = deploy_steps(StepStatus::Ok)
            .into_iter()
            .map(|mut line| {
                line.status = StepStatus::Ok;
                line.elapsed.get_or_insert_with(|| "1.0s".to_string());
                line
            })
            .collect();
        check("succeeded", &reply);
    }

    #[test]
    fn failed_shows_the_failing_step_and_its_lines_escaped() {
        let mut reply = Reply::new(
            "Deploy #43 · staging ← feature/x · @alice",
            Tone::Failure,
            "failed: step 3 (migrate) exited 1",
        );
        let mut steps = deploy_steps(StepStatus::Failed);
        steps[3].status = StepStatus::Skipped;
        reply.steps = steps;
        reply.lines = vec![
            "> npm run db:migrate".to_string(),
            "error: relation \"tasks\" already exists & <cannot> continue".to_string(),
        ];
        check("failed", &reply);
    }

    #[test]
    fn refusal_is_title_status_and_usage() {
        let mut reply = Reply::new(
            "/deploy refused",
            Tone::Failure,
            "unknown environment \"stagin\"; known: production, staging",
        );
        reply.lines = vec!["usage: /deploy <env> <ref> [--dry-run]".to_string()];
        check("refusal", &reply);
    }

    #[test]
    fn long_output_is_clipped_to_slack_limits_at_line_boundaries() {
        let mut reply = Reply::new("Logs #9 · staging backend · @erin", Tone::Info, "");
        reply.lines = (0..500)
            .map(|n| format!("line {n:04} of the log"))
            .collect();
        let content = render(&reply);
        let json = serde_json::to_value(&content).expect("serializes");
        let code = json["blocks"][1]["text"]["text"]
            .as_str()
            .expect("a code section");
        assert!(code.len() <= SECTION_LIMIT, "{}", code.len());
        assert!(code.ends_with("more line(s) not shown_"), "{code}");
        assert!(json["text"].as_str().expect("text").len() <= SECTION_LIMIT);
    }

    #[test]
    fn escape_and_clip_cases() {
        let cases = [
            ("a & b", "a &amp; b"),
            ("<@U123> <!channel>", "&lt;@U123&gt; &lt;!channel&gt;"),
            ("plain", "plain"),
        ];
        for (input, expected) in cases {
            assert_eq!(escape(input), expected, "{input}");
        }
        assert_eq!(clip("ααααα", 6), "α…");
        assert_eq!(clip("short", 6), "short");
    }
}
