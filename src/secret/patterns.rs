//! Redaction by pattern: what looks like a secret in free text even when
//! Deckhand never registered the value (a password in a container's log,
//! a key a service printed). The second line of defence after redaction by
//! value; each pattern keeps the words around the secret so the line still
//! reads.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::{Captures, Regex};

use super::registry::REDACTED;

/// Replaces every secret-looking value in `text`.
pub fn replace_patterns(text: &str) -> Cow<'_, str> {
    let mut redacted = Cow::Borrowed(text);
    for pattern in patterns() {
        if let Cow::Owned(replaced) = pattern.apply(&redacted) {
            redacted = Cow::Owned(replaced);
        }
    }
    redacted
}

/// The line that opens a PEM private key block, as its own line or inside
/// one: `-----BEGIN RSA PRIVATE KEY-----`.
pub fn opens_private_key(line: &str) -> bool {
    pem_begin().is_match(line)
}

/// The line that closes a PEM private key block.
pub fn closes_private_key(line: &str) -> bool {
    pem_end().is_match(line)
}

/// How a match is replaced.
type Replace = fn(&Captures<'_>) -> String;

struct Pattern {
    regex: Regex,
    replace: Replace,
}

impl Pattern {
    fn apply<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.regex
            .replace_all(text, |captures: &Captures<'_>| (self.replace)(captures))
    }
}

/// The text before the secret, then `[redacted]`.
fn keep_prefix(captures: &Captures<'_>) -> String {
    format!("{}{REDACTED}", &captures["prefix"])
}

/// The text before the secret, then `[redacted]` in the quotes it had.
fn keep_prefix_and_quotes(captures: &Captures<'_>) -> String {
    let value = &captures["value"];
    let quote = match value.chars().next() {
        Some(first @ ('"' | '\'')) if value.len() > 1 && value.ends_with(first) => {
            first.to_string()
        }
        _ => String::new(),
    };
    format!("{}{quote}{REDACTED}{quote}", &captures["prefix"])
}

/// A `key=value` pair's value replaced, unless a colon introduces prose:
/// a short unquoted value ("JWT_SECRET: 1 container replaced", "tokens: 5")
/// or a plain word after a plain word ("which secret: one of jwt, ssl").
fn key_value(captures: &Captures<'_>) -> String {
    let plain_word = |text: &str| text.chars().all(|character| character.is_ascii_lowercase());
    let value = &captures["value"];
    let quoted = value.starts_with('"') || value.starts_with('\'');
    let prose = &captures["separator"] == ":"
        && !quoted
        && (value.chars().count() < 6
            || plain_word(&captures["key"]) && value.chars().all(char::is_alphabetic));
    if prose {
        return captures[0].to_string();
    }
    keep_prefix_and_quotes(captures)
}

/// A URL's password replaced, unless what looked like `user:password@` is
/// `host:port/path@…` (Discord's `/users/@me` behind a local port, say).
fn url_password(captures: &Captures<'_>) -> String {
    let user = &captures["user"];
    let password = &captures["password"];
    let user_is_host = user == "localhost" || user.contains('.');
    let port_digits = password.bytes().take_while(u8::is_ascii_digit).count();
    let is_port = (1..=5).contains(&port_digits) && password[port_digits..].starts_with('/');
    if user_is_host && is_port {
        return captures[0].to_string();
    }
    format!("{}{REDACTED}@", &captures["prefix"])
}

/// A private key block kept as its armour lines, its body gone.
fn keep_armour(captures: &Captures<'_>) -> String {
    let kind = &captures["kind"];
    format!("-----BEGIN {kind}PRIVATE KEY-----{REDACTED}-----END {kind}PRIVATE KEY-----")
}

fn patterns() -> &'static [Pattern] {
    static PATTERNS: OnceLock<Vec<Pattern>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let sources: [(&str, Replace); 10] = [
            // PEM private keys, whole blocks (an unterminated block to the end).
            (
                r"(?s)-----BEGIN (?P<kind>[A-Z0-9 ]*?)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*?PRIVATE KEY-----|\z)",
                keep_armour,
            ),
            // scheme://user:password@host, the password possibly holding `/` or `@`.
            (
                r#"(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://(?P<user>[^\s:/@"'<>]*):)(?P<password>[^\s"'<>]*)@"#,
                url_password,
            ),
            // ALTER/CREATE ROLE … PASSWORD 'x' (also E'x', $$x$$), as PostgreSQL logs it;
            // an unterminated literal to the end of the text.
            (
                r"(?i)(?P<prefix>\bpassword\s+)(?:E?'(?:[^']|'')*(?:'|\z)|\$\$.*?(?:\$\$|\z))",
                |captures| format!("{}'{REDACTED}'", &captures["prefix"]),
            ),
            // "password is hunter2", "the token was: 'abc'"; an unquoted value
            // needs a digit or symbol, so "the old password was restored" stays.
            (
                r#"(?i)(?P<prefix>\b(?:password|passphrase|passwd|secret|token)\s+(?:is|was)\s*:?\s*)(?P<value>"[^"]*"|'[^']*'|[^\s"']*[0-9@#$%^&*_+=~/\\-][^\s"']*)"#,
                keep_prefix_and_quotes,
            ),
            // Authorization: Basic dXNlcjpwYXNz (any scheme: Basic, Bearer, Bot, Token)
            (
                r#"(?i)(?P<prefix>\b(?:proxy-)?authorization"?\s*[:=]\s*"?\s*(?:(?:basic|bearer|bot|token|digest)\s+)?)[^\s"',;]+"#,
                keep_prefix,
            ),
            // KEY=value, "key": "value", key: 'a b' where the key names a secret
            (
                r#"(?i)(?P<prefix>(?P<key>[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key|credential)[A-Za-z0-9_.-]*)["']?\s*(?P<separator>[=:])\s*)(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s",;]+)"#,
                key_value,
            ),
            // Bearer xyz, outside an Authorization header
            (
                r"(?i)(?P<prefix>\bbearer\s+)[A-Za-z0-9._~+/=-]+",
                keep_prefix,
            ),
            // Basic credentials quoted outside a header: "Basic dXNlcjpwYXNz"
            (
                r"(?P<prefix>\bBasic\s+)[A-Za-z0-9+/]{8,}={0,2}",
                keep_prefix,
            ),
            // JSON Web Tokens
            (
                r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
                |_| REDACTED.to_string(),
            ),
            // Slack tokens: xoxb-…, xoxp-…, xapp-…
            (
                r"\b(?:xox[abeoprs]|xapp)-[A-Za-z0-9-]{8,}",
                |_| REDACTED.to_string(),
            ),
        ];
        sources
            .into_iter()
            .filter_map(|(source, replace)| {
                Regex::new(source)
                    .ok()
                    .map(|regex| Pattern { regex, replace })
            })
            .collect()
    })
}

fn pem_begin() -> &'static Regex {
    static BEGIN: OnceLock<Regex> = OnceLock::new();
    BEGIN.get_or_init(|| {
        Regex::new(r"-----BEGIN [A-Z0-9 ]*?PRIVATE KEY-----").expect("a fixed, valid pattern")
    })
}

fn pem_end() -> &'static Regex {
    static END: OnceLock<Regex> = OnceLock::new();
    END.get_or_init(|| {
        Regex::new(r"-----END [A-Z0-9 ]*?PRIVATE KEY-----").expect("a fixed, valid pattern")
    })
}
