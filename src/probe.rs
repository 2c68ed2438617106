//! HTTP probes of service endpoints: the runbook's `curl .../health` checks, smoke tests
//! after a deploy, and the endpoint half of "wait until healthy".
//!
//! A probe never fails as a Rust error: an unreachable endpoint, a timeout or a wrong
//! status is a [`ProbeResult`] the caller reports. This module knows HTTP only; Docker's
//! own healthchecks are `docker::DockerHost::wait_healthy`'s business.

#![warn(missing_docs)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How much of a response body a result keeps.
const BODY_EXCERPT_CHARS: usize = 200;
/// Pause between attempts in [`wait_until`].
const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// What one request to an endpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The URL probed.
    pub url: String,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Time until the whole response (or the failure) arrived.
    pub latency: Duration,
    /// The start of the body, whitespace collapsed.
    pub body_excerpt: String,
    /// Why no usable response arrived (connection refused, timeout, ...).
    pub error: Option<String>,
}

impl ProbeResult {
    /// True when a response with a 2xx status arrived.
    pub fn is_success(&self) -> bool {
        self.status
            .is_some_and(|status| (200..300).contains(&status))
    }

    /// One short line: `200 12ms`, or the error.
    pub fn describe(&self) -> String {
        let latency = crate::duration::format_elapsed(self.latency);
        match (self.status, &self.error) {
            (Some(status), _) => format!("{status} {latency}"),
            (None, Some(error)) => format!("unreachable: {error}"),
            (None, None) => format!("no answer after {latency}"),
        }
    }
}

/// A smoke check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeResult {
    /// The request and what came back.
    pub probe: ProbeResult,
    /// Why the check failed; `None` when it passed.
    pub failure: Option<String>,
}

impl SmokeResult {
    /// True when status and body were as expected.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Sends one GET and reports what came back.
pub async fn probe(url: &str, timeout: Duration) -> ProbeResult {
    fetch(url, timeout).await.0
}

/// Probes once and checks the status and, when given, that the body contains a fragment
/// (e.g. `"version":"v2"`).
pub async fn smoke(
    url: &str,
    expected_status: u16,
    expected_fragment: Option<&str>,
    timeout: Duration,
) -> SmokeResult {
    let (probe, body) = fetch(url, timeout).await;
    let failure = match (&probe.error, probe.status) {
        (Some(error), _) => Some(error.clone()),
        (None, Some(status)) if status != expected_status => {
            Some(format!("expected status {expected_status}, got {status}"))
        }
        _ => expected_fragment
            .filter(|fragment| !body.contains(fragment))
            .map(|fragment| format!("response does not contain \"{fragment}\"")),
    };
    SmokeResult { probe, failure }
}

/// Probes until the endpoint answers `expected_status` or `timeout` passes; returns the
/// last result either way.
pub async fn wait_until(url: &str, expected_status: u16, timeout: Duration) -> ProbeResult {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt_timeout = remaining.clamp(Duration::from_millis(100), Duration::from_secs(5));
        let result = probe(url, attempt_timeout).await;
        if result.status == Some(expected_status) || Instant::now() + RETRY_INTERVAL >= deadline {
            return result;
        }
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

/// One GET: the result, and the whole body for checks that need more than the excerpt.
async fn fetch(url: &str, timeout: Duration) -> (ProbeResult, String) {
    let started = Instant::now();
    let response = client().get(url).timeout(timeout).send().await;
    let (status, body, error) = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.text().await {
                Ok(body) => (Some(status), body, None),
                Err(error) => (Some(status), String::new(), Some(describe(&error))),
            }
        }
        Err(error) => (None, String::new(), Some(describe(&error))),
    };
    let latency = started.elapsed();
    tracing::debug!(
        url,
        status,
        elapsed_ms = latency.as_millis() as u64,
        "probed"
    );
    let result = ProbeResult {
        url: url.to_string(),
        status,
        latency,
        body_excerpt: excerpt(&body),
        error,
    };
    (result, body)
}

/// One client for all probes: connection setup and TLS roots are loaded once.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent(concat!("deckhand-probe/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    })
}

/// A short, lower-case reason from reqwest's error chain, e.g.
/// `connection refused` or `timed out`.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_string();
    }
    let mut innermost: &dyn std::error::Error = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    let text = innermost.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => "request failed".to_string(),
    }
}

fn excerpt(body: &str) -> String {
    let collapsed = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_collapsed() {
        assert_eq!(
            excerpt("{\n  \"status\": \"ok\"\n}"),
            "{ \"status\": \"ok\" }"
        );
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), BODY_EXCERPT_CHARS + 1);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_result_not_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a local port");
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        drop(listener);
        let result = probe(
            &format!("http://127.0.0.1:{port}/health"),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(result.status, None);
        assert_eq!(result.error.as_deref(), Some("connection refused"));
        assert!(!result.is_success());
    }
}
