//! The one message that shows an operation, built as a neutral `Reply`
//! from its stored state: title, state line, plan, approvals, steps with
//! status and duration, result, and for a diagnosis that answers a PagerDuty
//! incident, the incident's header (title, status, link). Pure, so every
//! state's text is tested; the adapters render it for their platforms.

use chrono::{DateTime, Utc};

use crate::catalog::CommandSpec;
use crate::chat::{Button, ButtonAction, Reply, StepLine, StepStatus, Tone};
use crate::duration::format_elapsed;
use crate::plan::Plan;
use crate::policy::{ApprovalRecord, OpState};
use crate::store::{IncidentRecord, LockHolder, OperationRecord, StepRecord};

/// Everything the message shows.
#[derive(Debug)]
pub struct OperationView<'a> {
    /// The operation.
    pub operation: &'a OperationRecord,
    /// Its command, if still declared.
    pub spec: Option<&'a CommandSpec>,
    /// Its plan.
    pub plan: &'a Plan,
    /// Its journal.
    pub steps: &'a [StepRecord],
    /// Its approvals.
    pub approvals: &'a [ApprovalRecord],
    /// The PagerDuty incident it answers, if any.
    pub incident: Option<&'a IncidentRecord>,
    /// What it waits behind, when it is queued for its environment.
    pub queued_behind: Option<&'a LockHolder>,
}

/// The operation's message.
pub fn operation_reply(view: &OperationView<'_>) -> Reply {
    let operation = view.operation;
    let mut reply = Reply::new(
        title(operation, view.plan),
        tone(operation.state),
        status(view),
    );
    let read_only = view.spec.is_some_and(|spec| !spec.mutating);
    if !read_only {
        reply.fields.extend(view.plan.lines());
    }
    let approved_by: Vec<String> = view
        .approvals
        .iter()
        .filter(|approval| !approval.withdrawn && approval.params_hash == operation.params_hash)
        .map(|approval| format!("@{}", approval.approver))
        .collect();
    if !approved_by.is_empty() {
        reply
            .fields
            .push(("approved by".to_string(), approved_by.join(", ")));
    }
    reply.steps = step_lines(view);
    if read_only {
        reply.steps.clear();
        reply.lines = report_lines(view.steps);
    } else if let Some(failed) = view.steps.iter().find(|step| step.state == "failed") {
        reply.lines = failed.detail.lines().skip(1).map(str::to_string).collect();
    }
    if let Some(incident) = view.incident {
        show_incident(&mut reply, incident);
    }
    if operation.state == OpState::Approved && operation.queued_at.is_some() {
        reply.buttons = vec![Button {
            label: "Cancel".to_string(),
            action: ButtonAction::Reject {
                op_id: operation.id,
            },
        }];
    }
    if operation.state == OpState::Pending {
        reply.buttons = vec![
            Button {
                label: "Approve".to_string(),
                action: ButtonAction::Approve {
                    op_id: operation.id,
                    params_hash: operation.params_hash.clone(),
                },
            },
            Button {
                label: "Reject".to_string(),
                action: ButtonAction::Reject {
                    op_id: operation.id,
                },
            },
        ];
    }
    reply
}

/// Puts the incident in the header: its number, status and title lead, the
/// link and the diagnosis follow as the first fields. Acknowledging or
/// resolving the incident changes only this header.
fn show_incident(reply: &mut Reply, incident: &IncidentRecord) {
    let (mark, status) = match (incident.status.as_str(), &incident.status_by) {
        ("resolved", Some(by)) => ("✅", format!("resolved by {by}")),
        ("acknowledged", Some(by)) => ("👀", format!("acknowledged by {by}")),
        ("resolved", None) => ("✅", "resolved".to_string()),
        (other, _) => ("🚨", other.to_string()),
    };
    let number = incident
        .number
        .map(|number| format!(" #{number}"))
        .unwrap_or_default();
    let diagnosis = std::mem::replace(
        &mut reply.title,
        format!("{mark} Incident{number} · {status} · {}", incident.title),
    );
    reply.fields.splice(
        0..0,
        [
            ("incident".to_string(), incident.html_url.clone()),
            ("diagnosis".to_string(), diagnosis),
        ],
    );
}

/// The plan of a dry run, for the requester only.
pub fn dry_run_reply(command_line: &str, plan: &Plan) -> Reply {
    let mut reply = Reply::new(
        format!("Dry run · {command_line}"),
        Tone::Info,
        "nothing was changed; this is what would happen",
    );
    reply.fields = plan.lines();
    reply.lines = plan
        .steps
        .iter()
        .enumerate()
        .map(|(step_idx, step)| format!("{}. {step}", step_idx + 1))
        .collect();
    reply
}

fn title(operation: &OperationRecord, plan: &Plan) -> String {
    let mut name = operation.command.clone();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let arguments: Vec<&str> = operation.command_line.split(' ').skip(1).collect();
    let target = match (&operation.env, &plan.git_ref) {
        (Some(env), Some(git_ref)) => format!("{env} ← {git_ref}"),
        _ => arguments.join(" "),
    };
    if target.is_empty() {
        format!("{name} #{} · @{}", operation.id, operation.requester)
    } else {
        format!(
            "{name} #{} · {target} · @{}",
            operation.id, operation.requester
        )
    }
}

fn tone(state: OpState) -> Tone {
    match state {
        OpState::Pending => Tone::Waiting,
        OpState::Approved | OpState::Running => Tone::Working,
        OpState::Succeeded => Tone::Success,
        OpState::RolledBack | OpState::Interrupted | OpState::Expired | OpState::Cancelled => {
            Tone::Warning
        }
        OpState::Rejected | OpState::Failed => Tone::Failure,
    }
}

fn at(time: Option<DateTime<Utc>>) -> String {
    time.map(|time| format!("{} UTC", time.format("%H:%M")))
        .unwrap_or_else(|| "—".to_string())
}

fn status(view: &OperationView<'_>) -> String {
    let operation = view.operation;
    let outcome = operation.outcome.clone().unwrap_or_default();
    match operation.state {
        OpState::Pending => {
            let approval = operation.approval_view(view.approvals);
            let roles: Vec<&str> = operation
                .approver_roles
                .iter()
                .map(|role| role.as_str())
                .collect();
            format!(
                "awaiting approval: {} of {} from role {} (not @{}) · expires {} · react ✅ to approve, ❌ to reject",
                approval.count(),
                operation.approvals_needed,
                roles.join(" or "),
                operation.requester,
                at(operation.expires_at)
            )
        }
        OpState::Approved => match view.queued_behind {
            Some(holder) => format!(
                "queued behind #{} ({} by {}) · react ❌ or press Reject to call it off",
                holder.op_id, holder.command, holder.holder
            ),
            None => "queued".to_string(),
        },
        OpState::Running => match view.steps.iter().rev().find(|step| step.state == "running") {
            Some(step) => format!(
                "running step {} of {}: {}",
                step.idx + 1,
                view.spec
                    .map(|spec| spec.steps.len())
                    .unwrap_or(view.steps.len()),
                step.title
            ),
            None => "running".to_string(),
        },
        OpState::Succeeded => format!("succeeded: {outcome}"),
        OpState::Failed => format!("failed: {outcome}"),
        OpState::RolledBack => format!("failed and rolled back: {outcome}"),
        OpState::Interrupted => format!("interrupted: {outcome}"),
        OpState::Rejected | OpState::Cancelled => format!("{outcome} — nothing was run"),
        OpState::Expired => format!("{outcome} — nothing was run"),
    }
}

fn step_lines(view: &OperationView<'_>) -> Vec<StepLine> {
    let titles: Vec<String> = match view.spec {
        Some(spec) => spec.steps.iter().map(|step| step.title()).collect(),
        None => view.steps.iter().map(|step| step.title.clone()).collect(),
    };
    let finished = view.operation.state.is_final();
    titles
        .into_iter()
        .enumerate()
        .map(|(step_idx, title)| {
            match view
                .steps
                .iter()
                .find(|step| usize::try_from(step.idx).ok() == Some(step_idx))
            {
                Some(step) => StepLine {
                    title: step.title.clone(),
                    status: StepStatus::from_name(&step.state),
                    elapsed: step.finished_at.map(|finished_at| {
                        format_elapsed((finished_at - step.started_at).to_std().unwrap_or_default())
                    }),
                    detail: step.detail.lines().next().unwrap_or_default().to_string(),
                },
                None => StepLine {
                    title,
                    status: if finished {
                        StepStatus::Skipped
                    } else {
                        StepStatus::Pending
                    },
                    elapsed: None,
                    detail: String::new(),
                },
            }
        })
        .collect()
}

/// A read-only command's report: every step's summary and output.
fn report_lines(steps: &[StepRecord]) -> Vec<String> {
    steps
        .iter()
        .flat_map(|step| step.detail.lines().map(str::to_string))
        .collect()
}
