use std::io::Write;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;

#[test]
fn secret_never_formats_its_value() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret}"), "[redacted]");
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
    assert_eq!(secret.expose(), "hunter2");
}

fn check(input: &str, expected: &str) {
    assert_eq!(redact(input), expected, "input {input:?}");
}

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
        check(input, expected);
    }
}

#[test]
fn redacts_the_patterns_issue_11_names() {
    let cases = [
        // PostgreSQL logs the statement as sent (log_statement = ddl, pgaudit, errors).
        (
            "LOG:  statement: ALTER USER tasktracker WITH PASSWORD 'n3w-Pa''ss word'",
            "LOG:  statement: ALTER USER tasktracker WITH PASSWORD '[redacted]'",
        ),
        (
            "ERROR: syntax error; STATEMENT: CREATE ROLE app LOGIN ENCRYPTED password 'x y z';",
            "ERROR: syntax error; STATEMENT: CREATE ROLE app LOGIN ENCRYPTED password '[redacted]';",
        ),
        (
            "alter role app password $$dollar quoted$$ valid until 'infinity'",
            "alter role app password '[redacted]' valid until 'infinity'",
        ),
        (
            "STATEMENT: ALTER USER app PASSWORD 'cut off by the log line limit",
            "STATEMENT: ALTER USER app PASSWORD '[redacted]'",
        ),
        (
            "GET / HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNzd29yZA==\r\n",
            "GET / HTTP/1.1\r\nAuthorization: Basic [redacted]\r\n",
        ),
        (
            "curl -H 'authorization: basic dXNlcjpwYXNz' http://x",
            "curl -H 'authorization: basic [redacted]' http://x",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nxyz\n-----END RSA PRIVATE KEY-----\nnext",
            "-----BEGIN RSA PRIVATE KEY-----[redacted]-----END RSA PRIVATE KEY-----\nnext",
        ),
        (
            "key: -----BEGIN PRIVATE KEY-----MIIEvQIBADANBg",
            "key: -----BEGIN PRIVATE KEY-----[redacted]-----END PRIVATE KEY-----",
        ),
        (
            "the admin password is Tr0ub4dor&3, keep it safe",
            "the admin password is [redacted] keep it safe",
        ),
        (
            "Password is: \"correct horse battery\"",
            "Password is: \"[redacted]\"",
        ),
        (
            "connecting to postgres://u:a/b@host:5432/db",
            "connecting to postgres://u:[redacted]@host:5432/db",
        ),
        (
            "redis://:p@ss/w0rd@cache:6379",
            "redis://:[redacted]@cache:6379",
        ),
        (
            "password=\"two words\" next",
            "password=\"[redacted]\" next",
        ),
        ("bot token xoxb-1234-5678-abcdefgh", "bot token [redacted]"),
        ("password: hunter2", "password: [redacted]"),
        ("Password: Hunter", "Password: [redacted]"),
        ("api_key: abcdef", "api_key: [redacted]"),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn leaves_ordinary_text_and_local_urls_alone() {
    let untouched = [
        "GET http://127.0.0.1:13000/api/v10/users/@me 200",
        "http://localhost:8080/path@v2 answered",
        "basic checks passed; 3 tokens left",
        "postgres://tasktracker@postgres:5432/tasktracker",
        "set the password with /rotate db-password staging",
        "db-password failed; the old password was restored",
        "the token is about to expire.",
        "rotate a secret: the database password, the JWT secret or the TLS certificate",
        "secret    which secret: one of db-password, jwt, ssl",
        "new JWT secret in JWT_SECRET: 1 backend container(s) replaced one at a time",
    ];
    for text in untouched {
        check(text, text);
    }
}

#[test]
fn registered_values_are_replaced_in_any_form() {
    let secret = Secret::new("gen/+Secret value=42");
    let cases = [
        (
            "JWT_SECRET set to gen/+Secret value=42.",
            "JWT_SECRET set to [redacted].",
        ),
        (
            "url https://app:gen%2F%2BSecret%20value%3D42@x/y",
            "url https://app:[redacted]@x/y",
        ),
        (
            "{\"v\":\"gen\\/+Secret value=42\"}",
            "{\"v\":\"[redacted]\"}",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
    assert_eq!(secret.expose(), "gen/+Secret value=42");
}

#[test]
fn multi_line_private_keys_are_hidden_line_by_line() {
    let lines = [
        "starting",
        "-----BEGIN EC PRIVATE KEY-----",
        "MHcCAQEEIBkg4LVWM9nuwNSk3yEJBdWgm1Fvm",
        "AwEHoUQDQgAE",
        "-----END EC PRIVATE KEY-----",
        "listening on :3000",
    ];
    assert_eq!(
        redact_lines(lines),
        vec![
            "starting",
            "-----BEGIN EC PRIVATE KEY-----[redacted]-----END EC PRIVATE KEY-----",
            "[redacted]",
            "[redacted]",
            "[redacted]-----END EC PRIVATE KEY-----",
            "listening on :3000",
        ]
    );
}

#[test]
fn the_log_writer_redacts_each_event() {
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let output = Shared::default();
    let sink = output.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(RedactingMakeWriter::new(move || sink.clone()))
        .with_ansi(false)
        .finish();
    let token = Secret::new("writer-test-token-0123456789");
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(error = %format!("auth failed for {}", token.expose()), "cannot connect");
        tracing::info!(url = "postgres://u:pw/x@db/app", "store");
    });
    let logged =
        String::from_utf8(output.0.lock().expect("not poisoned").clone()).expect("utf-8 log");
    assert!(logged.contains("auth failed for [redacted]"), "{logged}");
    assert!(
        logged.contains("postgres://u:[redacted]@db/app"),
        "{logged}"
    );
    assert!(!logged.contains("writer-test-token"), "{logged}");
    assert!(!logged.contains("pw/x"), "{logged}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Redaction never panics and is stable: redacting twice changes nothing more.
    #[test]
    fn redaction_is_idempotent(text in "\\PC{0,200}") {
        let once = redact(&text);
        prop_assert_eq!(redact(&once), once.clone());
    }
}
