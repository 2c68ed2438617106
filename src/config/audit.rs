//! `[audit]` → `AuditSettings`: which environment variables hold the audit
//! chain's HMAC keys and the checkpoint signing key, the public keys whose
//! checkpoints `deckhand audit verify` trusts, where checkpoints are
//! appended, and how often checkpoints and refusal summaries go out. Key
//! values never enter config; the `audit` module reads them when the app
//! opens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawAudit;
use super::{check_duration, normalize};
use crate::problem::{KeyPath, Problems, Source};

/// Default variable of the chain's HMAC key.
pub const DEFAULT_AUDIT_KEY_ENV: &str = "DECKHAND_AUDIT_KEY";
/// Default variable of the chain keys used before the last rotation.
pub const DEFAULT_PREVIOUS_KEYS_ENV: &str = "DECKHAND_AUDIT_KEY_PREVIOUS";
/// Default variable of the checkpoint signing seed.
pub const DEFAULT_CHECKPOINT_KEY_ENV: &str = "DECKHAND_CHECKPOINT_KEY";

/// The longest `checkpoint_every`: the design promises a checkpoint at least hourly.
const MAX_CHECKPOINT_EVERY: Duration = Duration::from_secs(3600);

/// `[audit]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Variable with the chain's HMAC key.
    pub key_env: String,
    /// Variable with earlier chain keys (separated by commas or spaces).
    pub previous_keys_env: String,
    /// Variable with the Ed25519 seed that signs checkpoints.
    pub checkpoint_key_env: String,
    /// Trusted checkpoint public keys, 64 lowercase hex digits each; each
    /// is a valid Ed25519 point.
    pub checkpoint_public_keys: Vec<String>,
    /// File checkpoints are appended to, absolute.
    pub checkpoint_file: Option<PathBuf>,
    /// How often a checkpoint is published besides after each operation.
    pub checkpoint_every: Duration,
    /// How long refusals of people with no role are gathered per environment.
    pub refusal_summary_every: Duration,
}

impl Default for AuditSettings {
    fn default() -> AuditSettings {
        AuditSettings {
            key_env: DEFAULT_AUDIT_KEY_ENV.to_string(),
            previous_keys_env: DEFAULT_PREVIOUS_KEYS_ENV.to_string(),
            checkpoint_key_env: DEFAULT_CHECKPOINT_KEY_ENV.to_string(),
            checkpoint_public_keys: Vec::new(),
            checkpoint_file: None,
            checkpoint_every: MAX_CHECKPOINT_EVERY,
            refusal_summary_every: Duration::from_secs(60),
        }
    }
}

/// Validates `[audit]`; `base_dir` is the config file's folder.
pub(super) fn check_audit(
    source: &Source,
    raw: &RawAudit,
    base_dir: &Path,
    problems: &mut Problems,
) -> AuditSettings {
    let key = KeyPath::root().key("audit");
    let defaults = AuditSettings::default();
    let variable = |name: &str, value: &Option<String>, default: &str, problems: &mut Problems| {
        let value = value.clone().unwrap_or_else(|| default.to_string());
        if !is_variable_name(&value) {
            problems.0.push(source.problem(
                &key.key(name),
                format!(
                    "\"{value}\" is not an environment variable name (letters, digits and _, not starting with a digit)"
                ),
            ));
        }
        value
    };
    let key_env = variable("key_env", &raw.key_env, &defaults.key_env, problems);
    let previous_keys_env = variable(
        "previous_keys_env",
        &raw.previous_keys_env,
        &defaults.previous_keys_env,
        problems,
    );
    let checkpoint_key_env = variable(
        "checkpoint_key_env",
        &raw.checkpoint_key_env,
        &defaults.checkpoint_key_env,
        problems,
    );
    if key_env == checkpoint_key_env || previous_keys_env == checkpoint_key_env {
        problems.0.push(source.problem(
            &key.key("checkpoint_key_env"),
            format!(
                "\"{checkpoint_key_env}\" also holds a chain key; the checkpoint key must be a separate secret"
            ),
        ));
    }
    if key_env == previous_keys_env {
        problems.0.push(source.problem(
            &key.key("previous_keys_env"),
            format!(
                "\"{previous_keys_env}\" is also key_env; previous keys need their own variable"
            ),
        ));
    }
    let checkpoint_public_keys = raw
        .checkpoint_public_keys
        .iter()
        .enumerate()
        .filter_map(|(key_idx, public_key)| {
            let normalized = public_key.trim().to_ascii_lowercase();
            if is_public_key(&normalized) {
                return Some(normalized);
            }
            problems.0.push(source.problem(
                &key.key("checkpoint_public_keys").index(key_idx),
                format!(
                    "\"{public_key}\" is not an Ed25519 public key (64 hex digits, as `deckhand audit pubkey` prints it)"
                ),
            ));
            None
        })
        .collect();
    let checkpoint_file = raw
        .checkpoint_file
        .as_deref()
        .map(|file| normalize(&base_dir.join(file)));
    let checkpoint_every = check_at_most_an_hour(
        source,
        &key.key("checkpoint_every"),
        raw.checkpoint_every.as_deref(),
        defaults.checkpoint_every,
        problems,
    );
    let refusal_summary_every = check_at_most_an_hour(
        source,
        &key.key("refusal_summary_every"),
        raw.refusal_summary_every.as_deref(),
        defaults.refusal_summary_every,
        problems,
    );
    AuditSettings {
        key_env,
        previous_keys_env,
        checkpoint_key_env,
        checkpoint_public_keys,
        checkpoint_file,
        checkpoint_every,
        refusal_summary_every,
    }
}

fn check_at_most_an_hour(
    source: &Source,
    key: &KeyPath,
    text: Option<&str>,
    default: Duration,
    problems: &mut Problems,
) -> Duration {
    let duration = check_duration(source, key, text, default, problems).unwrap_or(default);
    if duration > MAX_CHECKPOINT_EVERY {
        problems.0.push(source.problem(
            key,
            format!(
                "\"{}\" is longer than an hour; the audit promises at least one each hour",
                text.unwrap_or_default()
            ),
        ));
    }
    duration
}

fn is_variable_name(name: &str) -> bool {
    let mut characters = name.chars();
    matches!(characters.next(), Some(first) if first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

fn is_public_key(text: &str) -> bool {
    let Ok(bytes) = hex::decode(text) else {
        return false;
    };
    let Ok(bytes) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        return false;
    };
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[store]
url = "sqlite://deckhand.db"

[hosts.local]
docker = "unix:///var/run/docker.sock"

[environments.staging]
host = "local"
"#;

    /// Validates BASE plus `audit` and compares every problem line, or the
    /// settings as `Debug` when there is none.
    fn check(audit: &str, expected: &[&str]) -> Option<AuditSettings> {
        let text = format!("{BASE}\n[audit]\n{audit}\n");
        let source = Source::new(Path::new("config/deckhand.toml"), text.clone());
        match super::super::Config::from_source(&source) {
            Ok(config) => {
                assert!(expected.is_empty(), "expected problems for:\n{text}");
                Some(config.audit)
            }
            Err(problems) => {
                let actual: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
                assert_eq!(actual, expected, "config:\n{text}");
                None
            }
        }
    }

    #[test]
    fn defaults_name_the_documented_variables() {
        let settings = check("", &[]).expect("valid");
        assert_eq!(settings.key_env, "DECKHAND_AUDIT_KEY");
        assert_eq!(settings.previous_keys_env, "DECKHAND_AUDIT_KEY_PREVIOUS");
        assert_eq!(settings.checkpoint_key_env, "DECKHAND_CHECKPOINT_KEY");
        assert_eq!(settings.checkpoint_every, Duration::from_secs(3600));
        assert_eq!(settings.refusal_summary_every, Duration::from_secs(60));
        assert_eq!(settings.checkpoint_file, None);
    }

    #[test]
    fn checkpoint_file_is_resolved_against_the_config_folder() {
        let settings = check("checkpoint_file = \"../audit/checkpoints.log\"", &[]).expect("valid");
        let file = settings.checkpoint_file.expect("a file");
        assert!(file.is_absolute(), "{file:?}");
        assert!(file.ends_with("audit/checkpoints.log"), "{file:?}");
    }

    #[test]
    fn bad_values_are_named_with_their_key() {
        check(
            "key_env = \"AUDIT KEY\"\ncheckpoint_public_keys = [\"abc\", \"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c\"]\ncheckpoint_every = \"2h\"\nrefusal_summary_every = \"soon\"",
            &[
                "config/deckhand.toml:12: audit.key_env: \"AUDIT KEY\" is not an environment variable name (letters, digits and _, not starting with a digit)",
                "config/deckhand.toml:13: audit.checkpoint_public_keys[0]: \"abc\" is not an Ed25519 public key (64 hex digits, as `deckhand audit pubkey` prints it)",
                "config/deckhand.toml:14: audit.checkpoint_every: \"2h\" is longer than an hour; the audit promises at least one each hour",
                "config/deckhand.toml:15: audit.refusal_summary_every: \"soon\" is not a duration such as \"30s\" or \"5m\"",
            ],
        );
    }

    #[test]
    fn the_checkpoint_key_cannot_share_a_variable_with_a_chain_key() {
        check(
            "checkpoint_key_env = \"DECKHAND_AUDIT_KEY\"",
            &[
                "config/deckhand.toml:12: audit.checkpoint_key_env: \"DECKHAND_AUDIT_KEY\" also holds a chain key; the checkpoint key must be a separate secret",
            ],
        );
    }
}
