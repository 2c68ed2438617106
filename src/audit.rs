//! The audit trail. Each state transition is one `AuditEvent`; `entry_of`
//! makes its entry, which `events` writes in the same transaction as the
//! transition (hash-chained, in the store) and then posts to the
//! environment's audit channels and logs. `verify_chain` walks the
//! chain and names the first entry that was altered, deleted or reordered.
//! Audit entries never hold secrets: events carry only names, states and
//! short reasons.

use std::fmt;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::names::Platform;
use crate::policy::OpState;
use crate::store::{AuditEntry, NewAuditEntry};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    /// A request was refused before any operation existed.
    Refused {
        /// Why, as the requester read it.
        reason: String,
    },
    /// A dry run showed its plan.
    DryRun,
    /// An operation was requested.
    Requested {
        /// Approvals it needs.
        approvals_needed: u32,
    },
    /// Someone approved.
    Approved {
        /// Who.
        approver: String,
        /// Approvals counted now.
        have: u32,
        /// Approvals needed.
        need: u32,
    },
    /// Someone withdrew their approval.
    ApprovalWithdrawn {
        /// Who.
        approver: String,
    },
    /// An approver rejected it.
    Rejected {
        /// Who.
        by: String,
    },
    /// The requester withdrew it.
    Cancelled {
        /// Who.
        by: String,
    },
    /// Nobody approved it in time.
    Expired,
    /// It waits in its environment's queue.
    Queued {
        /// The operation it waits behind.
        behind: i64,
    },
    /// Another process took it over after its owner's lease lapsed.
    TakenOver {
        /// The process that owned it.
        from: String,
        /// The process that owns it now.
        to: String,
    },
    /// It started running.
    Started,
    /// A step succeeded.
    StepSucceeded {
        /// Step position.
        idx: usize,
        /// Step title.
        title: String,
        /// Duration in milliseconds.
        elapsed_ms: u128,
    },
    /// A step failed.
    StepFailed {
        /// Step position.
        idx: usize,
        /// Step title.
        title: String,
        /// Why, without secrets.
        error: String,
    },
    /// It ended.
    Finished {
        /// Final state.
        state: OpState,
        /// One line.
        summary: String,
    },
    /// A hold was placed on the environment.
    Held {
        /// Why.
        reason: String,
    },
    /// A hold was released.
    Released {
        /// What was released.
        reason: String,
    },
    /// A hold lapsed at its expiry.
    HoldLapsed {
        /// What lapsed.
        reason: String,
    },
}

impl AuditEvent {
    /// The event name, as stored: `requested`, `step-ok`, …
    pub fn name(&self) -> &'static str {
        match self {
            AuditEvent::Refused { .. } => "refused",
            AuditEvent::DryRun => "dry-run",
            AuditEvent::Requested { .. } => "requested",
            AuditEvent::Approved { .. } => "approved",
            AuditEvent::ApprovalWithdrawn { .. } => "approval-withdrawn",
            AuditEvent::Rejected { .. } => "rejected",
            AuditEvent::Cancelled { .. } => "cancelled",
            AuditEvent::Expired => "expired",
            AuditEvent::Queued { .. } => "queued",
            AuditEvent::TakenOver { .. } => "taken-over",
            AuditEvent::Started => "started",
            AuditEvent::StepSucceeded { .. } => "step-ok",
            AuditEvent::StepFailed { .. } => "step-failed",
            AuditEvent::Finished { .. } => "finished",
            AuditEvent::Held { .. } => "held",
            AuditEvent::Released { .. } => "released",
            AuditEvent::HoldLapsed { .. } => "hold-lapsed",
        }
    }

    fn outcome_and_detail(&self) -> (String, String) {
        match self {
            AuditEvent::Refused { reason } => ("refused".into(), first_line(reason)),
            AuditEvent::DryRun => ("no change".into(), String::new()),
            AuditEvent::Requested {
                approvals_needed: 0,
            } => ("approved".into(), "no approval needed".into()),
            AuditEvent::Requested { approvals_needed } => (
                "pending".into(),
                format!("needs {approvals_needed} approval(s)"),
            ),
            AuditEvent::Approved {
                approver,
                have,
                need,
            } => (
                if have >= need {
                    "approved".into()
                } else {
                    "pending".into()
                },
                format!("by {approver} ({have} of {need})"),
            ),
            AuditEvent::ApprovalWithdrawn { approver } => {
                ("pending".into(), format!("by {approver}"))
            }
            AuditEvent::Rejected { by } => ("rejected".into(), format!("by {by}")),
            AuditEvent::Cancelled { by } => ("cancelled".into(), format!("by {by}")),
            AuditEvent::Expired => ("expired".into(), "not approved in time".into()),
            AuditEvent::Queued { behind } => ("queued".into(), format!("behind #{behind}")),
            AuditEvent::TakenOver { from, to } => {
                ("taken over".into(), format!("from {from} by {to}"))
            }
            AuditEvent::Started => ("running".into(), String::new()),
            AuditEvent::StepSucceeded {
                idx,
                title,
                elapsed_ms,
            } => (
                "ok".into(),
                format!("step {} {title} ({elapsed_ms} ms)", idx + 1),
            ),
            AuditEvent::StepFailed { idx, title, error } => (
                "failed".into(),
                format!("step {} {title}: {}", idx + 1, first_line(error)),
            ),
            AuditEvent::Finished { state, summary } => (state.to_string(), first_line(summary)),
            AuditEvent::Held { reason } => ("held".into(), reason.clone()),
            AuditEvent::Released { reason } => ("released".into(), reason.clone()),
            AuditEvent::HoldLapsed { reason } => ("released".into(), reason.clone()),
        }
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    crate::secret::redact(line).chars().take(300).collect()
}

/// Who, where, and on what an event happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    /// Who acted: a Deckhand user name, a platform id, or `deckhand`.
    pub actor: String,
    /// Where from.
    pub platform: Platform,
    /// Which channel.
    pub channel: String,
    /// The command, or empty.
    pub command: String,
    /// The environment, or empty.
    pub env: String,
    /// The operation, or 0.
    pub op_id: i64,
}

/// The entry an event makes: who, where and on what it happened, its
/// outcome and a short detail. Writing it (inside the change it records)
/// and announcing it are `events`' job.
pub fn entry_of(context: &AuditContext, event: &AuditEvent, now: DateTime<Utc>) -> NewAuditEntry {
    let (outcome, detail) = event.outcome_and_detail();
    NewAuditEntry {
        at: now,
        actor: context.actor.clone(),
        platform: context.platform.to_string(),
        channel: context.channel.clone(),
        command: context.command.clone(),
        env: context.env.clone(),
        op_id: context.op_id,
        event: event.name().to_string(),
        outcome,
        detail,
    }
}

/// One entry as a line, for audit channels and `deckhand audit list`.
pub fn format_entry(stored: &AuditEntry) -> String {
    let entry = &stored.entry;
    let mut line = format!(
        "{} #{} {} {}",
        entry.at.format("%Y-%m-%d %H:%M:%SZ"),
        stored.seq,
        entry.actor,
        entry.event,
    );
    if !entry.command.is_empty() {
        line.push_str(&format!(" /{}", entry.command));
    }
    if !entry.env.is_empty() {
        line.push_str(&format!(" {}", entry.env));
    }
    if entry.op_id != 0 {
        line.push_str(&format!(" op #{}", entry.op_id));
    }
    line.push_str(&format!(" → {}", entry.outcome));
    if !entry.detail.is_empty() {
        line.push_str(&format!(" ({})", entry.detail));
    }
    line.push_str(&format!(" [{} {}]", entry.platform, entry.channel));
    line
}

/// The chain rule: an entry's hash covers the previous hash and every field
/// of the entry, each separated so that no two entries hash alike.
pub fn chain_hash(prev_hash: &str, entry: &NewAuditEntry) -> String {
    let mut hasher = Sha256::new();
    let fields = [
        prev_hash.to_string(),
        crate::store::to_text(entry.at),
        entry.actor.clone(),
        entry.platform.clone(),
        entry.channel.clone(),
        entry.command.clone(),
        entry.env.clone(),
        entry.op_id.to_string(),
        entry.event.clone(),
        entry.outcome.clone(),
        entry.detail.clone(),
    ];
    for field in fields {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// What is wrong with the chain, naming the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// An entry's contents do not match its hash.
    Altered {
        /// The entry.
        seq: i64,
    },
    /// An entry is gone.
    Deleted {
        /// The missing entry.
        seq: i64,
        /// The entry found in its place, or `None` when the newest is gone.
        found: Option<i64>,
    },
    /// An entry does not follow the one before it.
    OutOfPlace {
        /// The entry.
        seq: i64,
    },
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainProblem::Altered { seq } => write!(
                formatter,
                "audit entry {seq} was altered: its contents do not match its hash"
            ),
            ChainProblem::Deleted {
                seq,
                found: Some(found),
            } => write!(
                formatter,
                "audit entry {seq} was deleted: entry {found} follows entry {}",
                seq - 1
            ),
            ChainProblem::Deleted { seq, found: None } => write!(
                formatter,
                "audit entry {seq} was deleted: the chain head records it but the log ends at entry {}",
                seq - 1
            ),
            ChainProblem::OutOfPlace { seq } => write!(
                formatter,
                "audit entry {seq} is out of place: it does not follow entry {} (entries were reordered or rewritten)",
                seq - 1
            ),
        }
    }
}

/// Walks the chain in order; returns how many entries it checked.
///
/// # Errors
/// The first entry that was altered, deleted or reordered.
pub fn verify_chain(
    entries: &[AuditEntry],
    head_seq: i64,
    head_hash: &str,
) -> Result<usize, ChainProblem> {
    let mut prev_hash = "genesis".to_string();
    let mut expected_seq = 1;
    for stored in entries {
        if chain_hash(&stored.prev_hash, &stored.entry) != stored.hash {
            return Err(ChainProblem::Altered { seq: stored.seq });
        }
        if stored.seq != expected_seq {
            return Err(ChainProblem::Deleted {
                seq: expected_seq,
                found: Some(stored.seq),
            });
        }
        if stored.prev_hash != prev_hash {
            return Err(ChainProblem::OutOfPlace { seq: stored.seq });
        }
        prev_hash = stored.hash.clone();
        expected_seq += 1;
    }
    if head_seq >= expected_seq {
        return Err(ChainProblem::Deleted {
            seq: expected_seq,
            found: None,
        });
    }
    if head_hash != prev_hash {
        return Err(ChainProblem::Altered {
            seq: expected_seq - 1,
        });
    }
    Ok(entries.len())
}
