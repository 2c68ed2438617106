//! Signed checkpoints of the chain head: one line of text that witnesses,
//! outside the store, that entry `seq` had MAC `mac` at time `at`:
//!
//! ```text
//! deckhand-checkpoint v1 seq=42 mac=<64 hex> at=2026-11-28T17:00:00.000Z key=<8 hex> sig=<128 hex>
//! ```
//!
//! `key` is the id of the Ed25519 public key (first 8 hex digits of the
//! SHA-256 of its 32 bytes) and `sig` signs every byte of the line before
//! ` sig=`. Every character is plain in Slack and Discord markdown (the
//! signature is hex, not base64, whose `_` and `-` chat would escape), so
//! the line survives being posted and copied back. Deckhand publishes one after every finished operation and on a
//! timer, to each audit channel and optionally to an append-only file;
//! `deckhand audit verify --checkpoint` holds the store to the newest one,
//! which is how deleting the newest entries (and moving the head back) is
//! caught. This module does not walk the chain; `chain` does.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::AuditError;
use super::keys::{CheckpointKey, public_key_id};
use crate::app::App;
use crate::chat::Outbound;
use crate::store::AuditEntry;

/// How every checkpoint line starts.
pub const CHECKPOINT_PREFIX: &str = "deckhand-checkpoint v1";

/// What marks a checkpoint line of any version in surrounding text.
const MARK: &str = "deckhand-checkpoint ";

/// A parsed or freshly signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The head entry's seq.
    pub seq: i64,
    /// The head entry's MAC.
    pub mac: String,
    /// When the head was read.
    pub at: DateTime<Utc>,
    /// Id of the signing key's public key.
    pub key_id: String,
    /// Exactly the bytes the signature covers (the line before ` sig=`).
    signed_text: String,
    signature: Signature,
}

impl Checkpoint {
    /// Signs the head `seq`/`mac` as of `at`.
    pub fn sign(seq: i64, mac: &str, at: DateTime<Utc>, key: &CheckpointKey) -> Checkpoint {
        let signed_text = format!(
            "{CHECKPOINT_PREFIX} seq={seq} mac={mac} at={} key={}",
            crate::store::to_text(at),
            key.id()
        );
        let signature = key.signing_key().sign(signed_text.as_bytes());
        Checkpoint {
            seq,
            mac: mac.to_string(),
            at,
            key_id: key.id().to_string(),
            signed_text,
            signature,
        }
    }

    /// The one line to publish.
    pub fn to_line(&self) -> String {
        format!(
            "{} sig={}",
            self.signed_text,
            hex::encode(self.signature.to_bytes())
        )
    }

    /// Reads the checkpoint in `text`: a line as published, or any text
    /// holding one (a pasted chat message, say).
    ///
    /// # Errors
    /// When `text` holds no well-formed checkpoint line.
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let start = text
            .find(MARK)
            .ok_or_else(|| malformed("it does not contain \"deckhand-checkpoint\""))?;
        let line = text[start..].lines().next().unwrap_or_default();
        let line =
            line.trim_end_matches(|character: char| character.is_whitespace() || character == '`');
        let (signed_text, signature) = line
            .rsplit_once(" sig=")
            .ok_or_else(|| malformed("it has no sig="))?;
        let tokens: Vec<&str> = signed_text.split(' ').collect();
        let [_, version, seq, mac, at, key_id] = tokens.as_slice() else {
            return Err(malformed("it does not have the six fields before sig="));
        };
        if *version != "v1" {
            return Err(malformed(&format!(
                "version \"{version}\" is not one this Deckhand reads (v1)"
            )));
        }
        let seq = field(seq, "seq")?
            .parse::<i64>()
            .ok()
            .filter(|seq| *seq > 0)
            .ok_or_else(|| malformed("seq is not a positive number"))?;
        let mac = field(mac, "mac")?;
        if mac.len() != 64
            || !mac
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(malformed("mac is not 64 lowercase hex digits"));
        }
        let at = DateTime::parse_from_rfc3339(field(at, "at")?)
            .map_err(|_| malformed("at is not an RFC 3339 time"))?
            .with_timezone(&Utc);
        let key_id = field(key_id, "key")?;
        let signature = hex::decode(signature)
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes.as_slice()).ok())
            .ok_or_else(|| malformed("sig is not a 64-byte signature in hex"))?;
        Ok(Checkpoint {
            seq,
            mac: mac.to_string(),
            at,
            key_id: key_id.to_string(),
            signed_text: signed_text.to_string(),
            signature: Signature::from_bytes(&signature),
        })
    }

    /// Checks the signature against the trusted public keys.
    ///
    /// # Errors
    /// When no trusted key has this id, or the signature does not verify.
    pub fn check_signature(&self, trusted: &[VerifyingKey]) -> Result<(), CheckpointProblem> {
        let key = trusted
            .iter()
            .find(|key| public_key_id(key) == self.key_id)
            .ok_or_else(|| CheckpointProblem::UnknownSigner {
                key_id: self.key_id.clone(),
                known: trusted.iter().map(public_key_id).collect(),
            })?;
        key.verify_strict(self.signed_text.as_bytes(), &self.signature)
            .map_err(|_| CheckpointProblem::BadSignature {
                key_id: self.key_id.clone(),
            })
    }

    /// Holds the chain to this checkpoint: the entry it names must exist
    /// and carry its MAC. Returns how many entries are newer.
    ///
    /// # Errors
    /// When the entry is gone (the newest entries were deleted) or differs
    /// (the chain up to it was rewritten).
    pub fn check_entries(&self, entries: &[AuditEntry]) -> Result<i64, CheckpointProblem> {
        let log_ends = entries.last().map_or(0, |stored| stored.seq);
        match entries.iter().find(|stored| stored.seq == self.seq) {
            None if log_ends < self.seq => Err(CheckpointProblem::Deleted {
                first: log_ends + 1,
                seq: self.seq,
                at: self.at,
            }),
            None => Err(CheckpointProblem::Rewritten {
                seq: self.seq,
                at: self.at,
            }),
            Some(stored) if stored.hash != self.mac => Err(CheckpointProblem::Rewritten {
                seq: self.seq,
                at: self.at,
            }),
            Some(_) => Ok(log_ends - self.seq),
        }
    }
}

/// A checkpoint argument that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// Not a checkpoint line.
    #[error(
        "not a checkpoint: {reason} (expected `deckhand-checkpoint v1 seq=N mac=HEX at=TIME key=ID sig=SIGNATURE`)"
    )]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// A checkpoint file without any checkpoint line.
    #[error("{path} holds no checkpoint line")]
    EmptyFile {
        /// The file.
        path: String,
    },
    /// A file that cannot be read.
    #[error("cannot read the checkpoint file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What a checkpoint proves wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointProblem {
    /// Signed by a key verify does not trust.
    UnknownSigner {
        /// The key id in the line.
        key_id: String,
        /// Ids of the trusted keys.
        known: Vec<String>,
    },
    /// The signature does not verify.
    BadSignature {
        /// The key id in the line.
        key_id: String,
    },
    /// The log ends before the checkpointed entry.
    Deleted {
        /// The first missing entry.
        first: i64,
        /// The entry the checkpoint records.
        seq: i64,
        /// When the checkpoint was made.
        at: DateTime<Utc>,
    },
    /// The checkpointed entry has another MAC.
    Rewritten {
        /// The entry the checkpoint records.
        seq: i64,
        /// When the checkpoint was made.
        at: DateTime<Utc>,
    },
}

impl fmt::Display for CheckpointProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointProblem::UnknownSigner { key_id, known } => write!(
                formatter,
                "the checkpoint is signed by key {key_id}, which is not trusted (trusted: {}); add its public key to [audit] checkpoint_public_keys",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            CheckpointProblem::BadSignature { key_id } => write!(
                formatter,
                "the checkpoint's signature does not verify under key {key_id}: the line was altered or forged"
            ),
            CheckpointProblem::Deleted { first, seq, at } => {
                let entries = if first == seq {
                    format!("audit entry {first} was")
                } else {
                    format!("audit entries {first} to {seq} were")
                };
                write!(
                    formatter,
                    "{entries} deleted: the checkpoint of {} records entry {seq} but the log ends at entry {}",
                    at.format("%Y-%m-%d %H:%M:%SZ"),
                    first - 1
                )
            }
            CheckpointProblem::Rewritten { seq, at } => write!(
                formatter,
                "audit entry {seq} does not match the checkpoint of {}: the chain up to it was rewritten, or entries after it were deleted and replaced",
                at.format("%Y-%m-%d %H:%M:%SZ")
            ),
        }
    }
}

/// Reads `--checkpoint ARG`: a checkpoint line (anything holding
/// `deckhand-checkpoint`) or a file whose newest checkpoint line counts.
///
/// # Errors
/// When the file cannot be read or holds no well-formed checkpoint.
pub fn read_checkpoint_argument(argument: &str) -> Result<Checkpoint, CheckpointError> {
    if argument.contains(MARK) {
        return Checkpoint::parse(argument);
    }
    let path = Path::new(argument);
    let text = std::fs::read_to_string(path).map_err(|error| CheckpointError::Unreadable {
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    let newest = text
        .lines()
        .rev()
        .find(|line| line.contains(MARK))
        .ok_or_else(|| CheckpointError::EmptyFile {
            path: path.display().to_string(),
        })?;
    Checkpoint::parse(newest)
}

/// Signs the current chain head and publishes it: to every audit channel
/// (through the outbox, like audit lines) and appended to `[audit]
/// checkpoint_file` when one is set. The flow calls this when an operation
/// finishes; `run_checkpoints` calls it on a timer. Returns `None` when
/// there is nothing to publish: no checkpoint key, or an empty log.
///
/// # Errors
/// When the head cannot be read or the file cannot be appended to (the
/// channels were posted to already).
pub async fn publish_checkpoint(app: &App) -> Result<Option<Checkpoint>, AuditError> {
    let Some(key) = &app.audit.keys.checkpoint else {
        return Ok(None);
    };
    let head = app.store.audit_head().await?;
    if head.seq == 0 {
        return Ok(None);
    }
    let checkpoint = Checkpoint::sign(head.seq, &head.hash, app.now(), key);
    let line = checkpoint.to_line();
    for (platform, channel) in super::audit_channels(app) {
        app.outbox.send(Outbound::Audit {
            platform,
            channel,
            text: line.clone(),
        });
    }
    if let Some(path) = &app.config.audit.checkpoint_file {
        append_line(path, &line)
            .await
            .map_err(|source| AuditError::CheckpointFile {
                path: path.display().to_string(),
                source,
            })?;
    }
    app.metrics
        .count("deckhand_audit_checkpoints_total", ("key", key.id()));
    tracing::info!(
        seq = checkpoint.seq,
        key = key.id(),
        "audit checkpoint published"
    );
    Ok(Some(checkpoint))
}

/// Publishes a checkpoint at start and then every `[audit]
/// checkpoint_every` (at most an hour) until shutdown. Does nothing
/// without a checkpoint key (`deckhand check` warns about that).
pub async fn run_checkpoints(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    if app.audit.keys.checkpoint.is_none() {
        return;
    }
    let mut ticker = tokio::time::interval(app.config.audit.checkpoint_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(error) = publish_checkpoint(&app).await {
            tracing::error!(error = %error, "cannot publish an audit checkpoint");
        }
    }
}

/// Appends one line in one write, so lines from several processes do not
/// interleave (the file is opened for appending).
async fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    file.write_all(format!("{line}\n").as_bytes()).await?;
    file.flush().await
}

fn field<'t>(token: &'t str, name: &str) -> Result<&'t str, CheckpointError> {
    token
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or_else(|| malformed(&format!("expected {name}= in \"{token}\"")))
}

fn malformed(reason: &str) -> CheckpointError {
    CheckpointError::Malformed {
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const MAC: &str = "28b2909a54132e1ce2bb00a0a046c1da0ec93de0436c07799e803c2626647b7a";

    fn key() -> CheckpointKey {
        CheckpointKey::from_seed(&[7; 32])
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 17, 0, 0)
            .single()
            .expect("valid time")
    }

    fn signed() -> Checkpoint {
        Checkpoint::sign(42, MAC, at(), &key())
    }

    /// Parses `line` and checks it against the test key: `ok` or the
    /// exact message a user reads.
    fn check(line: &str, expected: &str) {
        let actual = match Checkpoint::parse(line) {
            Err(error) => error.to_string(),
            Ok(checkpoint) => match checkpoint.check_signature(&[key().public_key()]) {
                Ok(()) => "ok".to_string(),
                Err(problem) => problem.to_string(),
            },
        };
        assert_eq!(actual, expected, "line: {line}");
    }

    #[test]
    fn a_checkpoint_is_one_line_that_reads_back_as_signed() {
        let line = signed().to_line();
        let expected_start = format!(
            "deckhand-checkpoint v1 seq=42 mac={MAC} at=2026-11-28T17:00:00.000Z key={} sig=",
            key().id()
        );
        assert!(line.starts_with(&expected_start), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(Checkpoint::parse(&line), Ok(signed()));
        check(&line, "ok");
        // Pasted from a chat message, with quotes around it.
        check(&format!("audit: `{line}` \nnext line"), "ok");
    }

    #[test]
    fn any_change_to_the_line_breaks_the_signature() {
        let line = signed().to_line();
        let bad_signature = format!(
            "the checkpoint's signature does not verify under key {}: the line was altered or forged",
            key().id()
        );
        check(&line.replace("seq=42", "seq=41"), &bad_signature);
        check(&line.replace("17:00:00", "18:00:00"), &bad_signature);
        let (head, signature) = line.rsplit_once("sig=").expect("sig");
        let mut flipped = signature.to_string().into_bytes();
        flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        check(&format!("{head}sig={flipped}"), &bad_signature);
        let other = CheckpointKey::from_seed(&[8; 32]);
        let foreign = Checkpoint::sign(42, MAC, at(), &other).to_line();
        check(
            &foreign,
            &format!(
                "the checkpoint is signed by key {}, which is not trusted (trusted: {}); add its public key to [audit] checkpoint_public_keys",
                other.id(),
                key().id()
            ),
        );
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let line = signed().to_line();
        let expected =
            "(expected `deckhand-checkpoint v1 seq=N mac=HEX at=TIME key=ID sig=SIGNATURE`)";
        for (text, reason) in [
            ("hello", "it does not contain \"deckhand-checkpoint\""),
            ("deckhand-checkpoint v1 seq=1", "it has no sig="),
            (
                &line.replace(" v1 ", " v2 "),
                "version \"v2\" is not one this Deckhand reads (v1)",
            ),
            (
                &line.replace("seq=42", "seq=-1"),
                "seq is not a positive number",
            ),
            (
                &line.replace(MAC, &MAC.to_uppercase()),
                "mac is not 64 lowercase hex digits",
            ),
            (
                &line.replace("at=2026", "when=2026"),
                "expected at= in \"when=2026-11-28T17:00:00.000Z\"",
            ),
            (
                &format!("{}sig=abc", line.rsplit_once("sig=").expect("sig").0),
                "sig is not a 64-byte signature in hex",
            ),
        ] {
            check(text, &format!("not a checkpoint: {reason} {expected}"));
        }
    }

    fn entries(macs: &[&str]) -> Vec<AuditEntry> {
        macs.iter()
            .enumerate()
            .map(|(entry_idx, mac)| AuditEntry {
                seq: entry_idx as i64 + 1,
                entry: crate::store::NewAuditEntry {
                    at: at(),
                    actor: String::new(),
                    platform: String::new(),
                    channel: String::new(),
                    command: String::new(),
                    env: String::new(),
                    op_id: 0,
                    event: String::new(),
                    outcome: String::new(),
                    detail: String::new(),
                },
                prev_hash: String::new(),
                hash: mac.to_string(),
                mac_alg: String::new(),
                key_id: String::new(),
            })
            .collect()
    }

    #[test]
    fn the_checkpoint_holds_the_log_to_its_entry() {
        let checkpoint = Checkpoint::sign(3, MAC, at(), &key());
        assert_eq!(checkpoint.check_entries(&entries(&["a", "b", MAC])), Ok(0));
        assert_eq!(
            checkpoint.check_entries(&entries(&["a", "b", MAC, "d"])),
            Ok(1)
        );
        let problem = |entries: Vec<AuditEntry>| {
            checkpoint
                .check_entries(&entries)
                .expect_err("a problem")
                .to_string()
        };
        assert_eq!(
            problem(entries(&["a"])),
            "audit entries 2 to 3 were deleted: the checkpoint of 2026-11-28 17:00:00Z records entry 3 but the log ends at entry 1"
        );
        assert_eq!(
            problem(entries(&["a", "b"])),
            "audit entry 3 was deleted: the checkpoint of 2026-11-28 17:00:00Z records entry 3 but the log ends at entry 2"
        );
        assert_eq!(
            problem(entries(&["a", "b", "c"])),
            "audit entry 3 does not match the checkpoint of 2026-11-28 17:00:00Z: the chain up to it was rewritten, or entries after it were deleted and replaced"
        );
    }

    #[test]
    fn a_file_counts_its_newest_line() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("checkpoints.log");
        let older = Checkpoint::sign(1, MAC, at(), &key()).to_line();
        let newer = signed().to_line();
        std::fs::write(&path, format!("{older}\n{newer}\n\n")).expect("write");
        let path_text = path.display().to_string();
        assert_eq!(read_checkpoint_argument(&path_text), Ok(signed()));
        std::fs::write(&path, "").expect("write");
        assert_eq!(
            read_checkpoint_argument(&path_text).map_err(|error| error.to_string()),
            Err(format!("{path_text} holds no checkpoint line"))
        );
    }
}
