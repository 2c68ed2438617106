//! The `Secret` newtype and redaction.
//!
//! Every token, signing key and generated password is held in a `Secret`,
//! so it cannot reach chat, logs, audit entries or errors by accident. It
//! deliberately has no `Serialize`, and its `Debug` and `Display` print
//! `[redacted]`; reading the value takes `expose()`, which is easy to grep
//! for. Making a `Secret` also registers its value, so [`redact`] replaces
//! it wherever it turns up: redaction works by value (`registry`) and by
//! pattern (`patterns`), and `writer` applies it to every log line.
//!
//! Where output leaves the process, it goes through [`redact`]: the chat
//! outbox, the tracing writer, the step journal and audit details, and
//! error texts shown to people. This module does not decide what is
//! secret in structured data; holders of secrets write their own `Debug`.

mod patterns;
mod registry;
mod writer;

use std::fmt;

pub use registry::{MIN_SECRET_LEN, REDACTED, SHORT_LIVED_CAPACITY, register};
pub use writer::{RedactingMakeWriter, RedactingWriter};

/// A value that must never be shown: tokens, signing secrets, passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value and registers it for redaction for the life of
    /// the process (values shorter than [`MIN_SECRET_LEN`] are not).
    pub fn new(value: impl Into<String>) -> Secret {
        let value = value.into();
        registry::register(&value);
        Secret(value)
    }

    /// Wraps a credential that expires soon after it arrives (a Discord
    /// interaction token): registered among the most recent
    /// [`SHORT_LIVED_CAPACITY`] such values, so a steady stream of them does
    /// not grow the register without bound.
    pub fn short_lived(value: impl Into<String>) -> Secret {
        let value = value.into();
        registry::register_short_lived(&value);
        Secret(value)
    }

    /// The value of the environment variable `variable`, unless it is unset
    /// or blank (config names variables; the values never enter config).
    /// The value is registered for redaction.
    pub fn from_env(variable: &str) -> Option<Secret> {
        std::env::var(variable)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .map(Secret::new)
    }

    /// Returns the secret value. Every call site is a place where the value
    /// leaves Deckhand's protection, so keep them few and obvious.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (an unset environment variable, usually).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[redacted]")
    }
}

/// Replaces secrets in free text (log lines, command output, error texts,
/// chat messages) with `[redacted]`: first every registered value in any
/// of its forms, then what looks like a secret — `password=` style pairs,
/// passwords in URLs (also holding `/`), `PASSWORD '…'` in SQL,
/// "password is …", `Authorization:` credentials of any scheme, bearer
/// tokens, JWTs, Slack tokens and PEM private key blocks.
///
/// The journal and audit writers call this on every text they store.
pub fn redact(text: &str) -> String {
    match registry::replace_values(text) {
        Some(replaced) => patterns::replace_patterns(&replaced).into_owned(),
        None => patterns::replace_patterns(text).into_owned(),
    }
}

/// [`redact`] over consecutive lines of one stream (a container's log),
/// which also hides the body lines of a PEM private key block that spans
/// several of them.
pub fn redact_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut inside_key = false;
    let mut redacted = Vec::new();
    for line in lines {
        if inside_key {
            if patterns::closes_private_key(line) {
                inside_key = false;
                let end = line.find("-----END").unwrap_or(0);
                redacted.push(format!("{REDACTED}{}", redact(&line[end..])));
            } else {
                redacted.push(REDACTED.to_string());
            }
            continue;
        }
        let opens = patterns::opens_private_key(line) && !patterns::closes_private_key(line);
        inside_key = opens;
        redacted.push(redact(line));
    }
    redacted
}

#[cfg(test)]
mod tests;
