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

    /// The value of the environment variable `variable`, unless it is unset
    /// or blank (config names variables; the values never enter config).
    pub fn from_env(variable: &str) -> Option<Secret> {
        std::env::var(variable)
            .ok()
            .filter(|value| !value.trim().is_empty())
            .map(Secret)
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

/// Replaces what looks like a secret in free text (log lines, command
/// output, error details) with `[redacted]`: values of `password=`,
/// `secret=`, `token=`, `key=` style pairs, passwords in URLs, bearer
/// tokens, and JWTs. A second line of defence: secrets are never put into
/// text on purpose.
pub fn redact(text: &str) -> String {
    let patterns = redaction_patterns();
    let mut redacted = text.to_string();
    for (pattern, replacement) in patterns {
        redacted = pattern.replace_all(&redacted, *replacement).into_owned();
    }
    redacted
}

fn redaction_patterns() -> &'static [(regex::Regex, &'static str)] {
    static PATTERNS: std::sync::OnceLock<Vec<(regex::Regex, &'static str)>> =
        std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        let sources: [(&str, &str); 4] = [
            // scheme://user:password@host
            (r"(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@", "${prefix}[redacted]@"),
            // KEY=value or "key": "value" where the key names a secret
            (
                r#"(?i)(?P<prefix>[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key|credential)[A-Za-z0-9_.-]*"?\s*[=:]\s*"?)[^\s",;]+"#,
                "${prefix}[redacted]",
            ),
            // Authorization: Bearer xyz
            (r"(?i)(?P<prefix>bearer\s+)[A-Za-z0-9._~+/=-]+", "${prefix}[redacted]"),
            // JSON Web Tokens
            (r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", "[redacted]"),
        ];
        sources
            .iter()
            .filter_map(|(pattern, replacement)| regex::Regex::new(pattern).ok().map(|regex| (regex, *replacement)))
            .collect()
    })
}

#[cfg(test)]
mod redaction_tests {
    use super::redact;

    #[test]
    fn redacts_secret_looking_values() {
        let cases = [
            (
                "DATABASE_URL=postgres://tasktracker:s3cr3t@postgres:5432/db",
                "DATABASE_URL=postgres://tasktracker:[redacted]@postgres:5432/db",
            ),
            ("JWT_SECRET=abc123 started", "JWT_SECRET=[redacted] started"),
            (
                "{\"password\": \"hunter2\"}",
                "{\"password\": \"[redacted]\"}",
            ),
            (
                "Authorization: Bearer xoxb-123-456",
                "Authorization: Bearer [redacted]",
            ),
            (
                "token eyJhbGciOi.eyJzdWIiOiIx.SflKxwRJSMeKKF2",
                "token [redacted]",
            ),
            ("GET /health 200 12ms", "GET /health 200 12ms"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "input {input:?}");
        }
    }
}
