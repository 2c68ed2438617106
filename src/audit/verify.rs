//! What `deckhand audit verify` says: the chain walk and, when given, the
//! newest checkpoint, turned into lines for the operator. Every problem is
//! named; what could not be proven is said as plainly as what was.

use ed25519_dalek::VerifyingKey;

use super::chain::verify_chain;
use super::checkpoint::Checkpoint;
use super::keys::Keys;
use crate::config::AuditSettings;
use crate::store::AuditEntry;

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// `ok: …`, problems, and `not proven: …` lines, in that order.
    pub lines: Vec<String>,
    /// Whether any problem was found (exit 1).
    pub failed: bool,
}

/// The chain as read from the store, with its recorded head.
#[derive(Debug, Clone, Copy)]
pub struct StoredChain<'e> {
    /// Every entry in seq order.
    pub entries: &'e [AuditEntry],
    /// The head's seq as `audit_head` records it.
    pub head_seq: i64,
    /// The head's MAC as `audit_head` records it.
    pub head_hash: &'e str,
}

/// Public keys whose checkpoints verify trusts: `[audit]
/// checkpoint_public_keys`, plus the public half of the checkpoint key this
/// process holds, if any.
pub fn trusted_checkpoint_keys(settings: &AuditSettings, keys: &Keys) -> Vec<VerifyingKey> {
    let mut trusted: Vec<VerifyingKey> = settings
        .checkpoint_public_keys
        .iter()
        .filter_map(|text| {
            let bytes = <[u8; 32]>::try_from(hex::decode(text).ok()?.as_slice()).ok()?;
            VerifyingKey::from_bytes(&bytes).ok()
        })
        .collect();
    if let Some(key) = &keys.checkpoint
        && !trusted.contains(&key.public_key())
    {
        trusted.push(key.public_key());
    }
    trusted
}

/// Verifies the chain, then the checkpoint against it.
pub fn verify_trail(
    chain: StoredChain<'_>,
    keys: &Keys,
    checkpoint: Option<&Checkpoint>,
    trusted: &[VerifyingKey],
) -> Verification {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let mut not_proven = Vec::new();
    match verify_chain(chain.entries, chain.head_seq, chain.head_hash, keys) {
        Ok(report) => {
            lines.push(chain_summary(
                report.n_entries,
                report.unkeyed_through,
                &report.key_ids,
            ));
            if report.unkeyed_through > 0 {
                not_proven.push(format!(
                    "not proven: {} unkeyed (plain SHA-256), so anyone who could write the store could have rewritten {}",
                    span("entry", "entries", 1, report.unkeyed_through),
                    if report.unkeyed_through == 1 {
                        "it"
                    } else {
                        "them"
                    },
                ));
            }
            if keys.current.is_some()
                && chain
                    .entries
                    .last()
                    .is_some_and(|last| last.seq == report.unkeyed_through)
            {
                not_proven.push(
                    "not proven: a key is set but no entry is keyed; if Deckhand ran with the key, the whole log was re-chained without it (a checkpoint would show)".to_string(),
                );
            }
        }
        Err(problem) => problems.push(problem.to_string()),
    }
    match checkpoint {
        Some(checkpoint) => check_checkpoint(
            checkpoint,
            chain.entries,
            trusted,
            &mut lines,
            &mut problems,
            &mut not_proven,
        ),
        None => not_proven.push(
            "not proven: that no newest entries were deleted (the head is kept in the same store); give --checkpoint FILE or a published checkpoint line".to_string(),
        ),
    }
    let failed = !problems.is_empty();
    if failed {
        lines.clear();
    }
    lines.extend(problems);
    lines.extend(not_proven);
    Verification { lines, failed }
}

fn check_checkpoint(
    checkpoint: &Checkpoint,
    entries: &[AuditEntry],
    trusted: &[VerifyingKey],
    lines: &mut Vec<String>,
    problems: &mut Vec<String>,
    not_proven: &mut Vec<String>,
) {
    if let Err(problem) = checkpoint.check_signature(trusted) {
        problems.push(problem.to_string());
        return;
    }
    match checkpoint.check_entries(entries) {
        Ok(newer) => {
            lines.push(format!(
                "ok: the checkpoint of {} (entry {}, key {}) matches the log",
                checkpoint.at.format("%Y-%m-%d %H:%M:%SZ"),
                checkpoint.seq,
                checkpoint.key_id
            ));
            if newer > 0 {
                let last = checkpoint.seq + newer;
                not_proven.push(format!(
                    "not proven: that no entries after {last} were deleted; {} newer than the checkpoint",
                    span("entry", "entries", checkpoint.seq + 1, last),
                ));
            }
        }
        Err(problem) => problems.push(problem.to_string()),
    }
}

fn chain_summary(n_entries: usize, unkeyed_through: i64, key_ids: &[String]) -> String {
    let keyed = if key_ids.is_empty() {
        "none keyed".to_string()
    } else if unkeyed_through == 0 {
        format!("all keyed (keys {})", key_ids.join(", "))
    } else {
        format!(
            "entries {} to {n_entries} keyed (keys {})",
            unkeyed_through + 1,
            key_ids.join(", ")
        )
    };
    format!("ok: {n_entries} audit entries, chain intact, {keyed}")
}

/// `entry 3 is` or `entries 1 to 4 are`.
fn span(one: &str, many: &str, first: i64, last: i64) -> String {
    if first == last {
        format!("{one} {first} is")
    } else {
        format!("{many} {first} to {last} are")
    }
}
