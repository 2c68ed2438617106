//! The audit trail. Each state transition is one `AuditEvent`; `entry_of`
//! makes its entry, which `events` writes in the same transaction as the
//! transition (chained with a keyed MAC, `seal`) and then posts to the
//! environment's audit channels and logs.
//! Audit entries never hold secrets: events carry only names, states and
//! short reasons.
//!
//! The parts: `keys` reads the chain key and the checkpoint key from the
//! environment; `chain` is the chain rule and its verifier; `checkpoint`
//! signs and publishes the chain head outside the store; `verify` turns
//! both into what `deckhand audit verify` says; `export` is the JSONL
//! contract for SIEMs; `refusals` gathers refusals of people with no role
//! into one audit-channel line per environment and window.

mod chain;
mod checkpoint;
mod export;
mod keys;
mod refusals;
mod verify;

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::config::AuditSettings;
use crate::names::Platform;
use crate::policy::OpState;
use crate::store::{AuditEntry, NewAuditEntry, StoreError};

pub use chain::{
    ChainProblem, ChainReport, GENESIS, KEYED, UNKEYED, UnkeyedReason, chain_hash, keyed_mac, seal,
    verify_chain,
};
pub use checkpoint::{
    CHECKPOINT_PREFIX, Checkpoint, CheckpointError, CheckpointProblem, publish_checkpoint,
    read_checkpoint_argument, run_checkpoints,
};
pub use export::{ExportError, ExportedEntry, from_jsonl_line, parse_since, to_jsonl_line};
pub use keys::{CheckpointKey, KeyError, Keys, MIN_KEY_LEN, MacKey, generate, key_id};
pub use refusals::{RefusalDigest, post_summaries, run_refusal_summaries};
pub use verify::{StoredChain, Verification, trusted_checkpoint_keys, verify_trail};

/// The audit trail's long-lived state: the keys this process holds and the
/// refusal summaries being gathered. Lives in `App`.
#[derive(Debug)]
pub struct Trail {
    /// Chain and checkpoint keys.
    pub keys: Keys,
    /// Refusals of people with no role, waiting for their summary line.
    pub refusals: RefusalDigest,
}

impl Trail {
    /// Reads the keys `settings` names from the environment.
    ///
    /// # Errors
    /// When a key is set but unusable (too short, not a seed).
    pub fn from_env(settings: &AuditSettings) -> Result<Trail, KeyError> {
        Ok(Trail {
            keys: Keys::from_env(settings)?,
            refusals: RefusalDigest::default(),
        })
    }
}

/// Why a checkpoint could not be published.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The checkpoint file could not be appended to.
    #[error("cannot append the audit checkpoint to {path}")]
    CheckpointFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    /// A request was refused before any operation existed.
    Refused {
        /// Why, as the requester read it.
        reason: String,
        /// Whether the requester holds any role. Refusals of people with
        /// none reach the audit channel only as a periodic summary.
        requester_has_role: bool,
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
            AuditEvent::Refused { reason, .. } => ("refused".into(), first_line(reason)),
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
/// outcome and a short detail. Writing it (inside the change it records,
/// MAC-chained with `seal`) and announcing it are `events`' job.
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

/// Whether an event reaches the audit channel only in the periodic
/// summary: a refusal of someone with no role (strangers must not be able
/// to flood the channel; each refusal is still its own stored entry).
pub fn is_summarized(event: &AuditEvent) -> bool {
    matches!(
        event,
        AuditEvent::Refused {
            requester_has_role: false,
            ..
        }
    )
}

/// Every audit channel of every environment, each once.
fn audit_channels(app: &App) -> std::collections::BTreeSet<(Platform, String)> {
    app.config
        .environments
        .values()
        .flat_map(|environment| {
            environment
                .audit_channels
                .iter()
                .map(|(platform, channel)| (*platform, channel.clone()))
        })
        .collect()
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
