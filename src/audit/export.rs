//! `deckhand audit export --format jsonl`: one JSON object per entry, for
//! SIEM ingestion. The object's field names are a contract (documented in
//! the README) kept apart from the store's row type, and each line carries
//! everything needed to recompute its MAC, so an exported log can be
//! verified away from the store (`from_jsonl_line` reads a line back).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;
use crate::store::{AuditEntry, NewAuditEntry};

/// One exported entry. Field names and meanings are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When, RFC 3339 UTC with milliseconds, exactly as chained.
    pub at: String,
    /// Who acted: a Deckhand user name, `platform:id`, or `deckhand`.
    pub actor: String,
    /// `slack`, `discord` or `console`.
    pub platform: String,
    /// The channel.
    pub channel: String,
    /// The command, or empty.
    pub command: String,
    /// The environment, or empty.
    pub env: String,
    /// The operation, or 0.
    pub op_id: i64,
    /// What happened: `requested`, `approved`, `step-ok`, `refused`, …
    pub event: String,
    /// How it came out.
    pub outcome: String,
    /// Detail, never a secret.
    pub detail: String,
    /// The previous entry's MAC (`genesis` for the first).
    pub prev_mac: String,
    /// This entry's MAC, lowercase hex.
    pub mac: String,
    /// `hmac-sha256` (keyed) or `sha256` (unkeyed).
    pub mac_alg: String,
    /// The HMAC key's id, empty when unkeyed.
    pub key_id: String,
}

/// A line that is not an exported entry.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Not JSON of the exported shape.
    #[error("not an exported audit entry")]
    Shape(#[source] serde_json::Error),
    /// The time field cannot be read.
    #[error("entry {seq}: \"{at}\" is not an RFC 3339 time")]
    Time {
        /// The entry.
        seq: i64,
        /// The value.
        at: String,
    },
    /// `--since` is neither a time nor a duration.
    #[error(
        "--since \"{0}\" is neither an RFC 3339 time (2026-11-28T17:00:00Z) nor a duration (90m, 24h, 7d)"
    )]
    Since(String),
}

/// One entry as one line of JSON, without a newline.
pub fn to_jsonl_line(stored: &AuditEntry) -> String {
    let entry = &stored.entry;
    let exported = ExportedEntry {
        seq: stored.seq,
        at: crate::store::to_text(entry.at),
        actor: entry.actor.clone(),
        platform: entry.platform.clone(),
        channel: entry.channel.clone(),
        command: entry.command.clone(),
        env: entry.env.clone(),
        op_id: entry.op_id,
        event: entry.event.clone(),
        outcome: entry.outcome.clone(),
        detail: entry.detail.clone(),
        prev_mac: stored.prev_hash.clone(),
        mac: stored.hash.clone(),
        mac_alg: stored.mac_alg.clone(),
        key_id: stored.key_id.clone(),
    };
    serde_json::to_string(&exported).expect("an exported entry holds only strings and integers")
}

/// Reads an exported line back into the entry it came from.
///
/// # Errors
/// When the line is not an exported entry.
pub fn from_jsonl_line(line: &str) -> Result<AuditEntry, ExportError> {
    let exported: ExportedEntry = serde_json::from_str(line).map_err(ExportError::Shape)?;
    let at = DateTime::parse_from_rfc3339(&exported.at)
        .map_err(|_| ExportError::Time {
            seq: exported.seq,
            at: exported.at.clone(),
        })?
        .with_timezone(&Utc);
    Ok(AuditEntry {
        seq: exported.seq,
        entry: NewAuditEntry {
            at,
            actor: exported.actor,
            platform: exported.platform,
            channel: exported.channel,
            command: exported.command,
            env: exported.env,
            op_id: exported.op_id,
            event: exported.event,
            outcome: exported.outcome,
            detail: exported.detail,
        },
        prev_hash: exported.prev_mac,
        hash: exported.mac,
        mac_alg: exported.mac_alg,
        key_id: exported.key_id,
    })
}

/// Reads `--since`: an RFC 3339 time, or a duration back from `now`.
///
/// # Errors
/// When it is neither.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ExportError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    parse_duration(text)
        .and_then(|duration| chrono::Duration::from_std(duration).ok())
        .and_then(|duration| now.checked_sub_signed(duration))
        .ok_or_else(|| ExportError::Since(text.to_string()))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn sample() -> AuditEntry {
        AuditEntry {
            seq: 7,
            entry: NewAuditEntry {
                at: Utc
                    .with_ymd_and_hms(2026, 11, 28, 17, 0, 0)
                    .single()
                    .expect("valid time"),
                actor: "alice".to_string(),
                platform: "slack".to_string(),
                channel: "C0DEPLOYS".to_string(),
                command: "deploy".to_string(),
                env: "staging".to_string(),
                op_id: 42,
                event: "requested".to_string(),
                outcome: "pending".to_string(),
                detail: "needs 1 approval(s) \"quoted\"".to_string(),
            },
            prev_hash: "a".repeat(64),
            hash: "b".repeat(64),
            mac_alg: "hmac-sha256".to_string(),
            key_id: "1a2b3c4d".to_string(),
        }
    }

    #[test]
    fn the_line_has_the_documented_fields_and_reads_back() {
        let line = to_jsonl_line(&sample());
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        assert_eq!(
            line,
            format!(
                r#"{{"seq":7,"at":"2026-11-28T17:00:00.000Z","actor":"alice","platform":"slack","channel":"C0DEPLOYS","command":"deploy","env":"staging","op_id":42,"event":"requested","outcome":"pending","detail":"needs 1 approval(s) \"quoted\"","prev_mac":"{a}","mac":"{b}","mac_alg":"hmac-sha256","key_id":"1a2b3c4d"}}"#
            )
        );
        assert_eq!(from_jsonl_line(&line).expect("reads back"), sample());
    }

    #[test]
    fn since_takes_a_time_or_a_duration() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 28, 17, 0, 0)
            .single()
            .expect("valid time");
        assert_eq!(
            parse_since("2026-11-27T17:00:00Z", now).expect("time"),
            now - chrono::Duration::days(1)
        );
        assert_eq!(
            parse_since("1d", now).expect("duration"),
            now - chrono::Duration::days(1)
        );
        assert_eq!(
            parse_since("yesterday", now)
                .expect_err("neither")
                .to_string(),
            "--since \"yesterday\" is neither an RFC 3339 time (2026-11-28T17:00:00Z) nor a duration (90m, 24h, 7d)"
        );
    }
}
