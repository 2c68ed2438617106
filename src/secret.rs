//! The `Secret` newtype: every token, signing key and generated password is
//! held in one, so it cannot reach chat, logs, audit entries or errors by
//! accident. It deliberately has no `Serialize`, and its `Debug` and
//! `Display` print `[redacted]`; reading the value takes `expose()`, which is
//! easy to grep for.

use std::fmt;

/// A value that must never be shown: tokens, signing secrets, passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2");
    }
}
