//! PagerDuty REST API v2: `POST {api_url}/incidents/{id}/notes`, authenticated with
//! `Authorization: Token token=<key>` and written as the user named by `From`.

use std::time::Duration;

use serde_json::json;

use crate::secret::Secret;

use super::PagerDutyError;

/// How long one REST call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error body a message quotes.
const ERROR_EXCERPT_CHARS: usize = 200;

/// A client for incident notes. `Debug` shows no key.
#[derive(Debug, Clone)]
pub struct NoteClient {
    api_url: String,
    token: Secret,
    from_email: String,
    http: reqwest::Client,
}

impl NoteClient {
    /// A client for `api_url` (e.g. `https://api.pagerduty.com`) writing as `from_email`.
    pub fn new(api_url: &str, token: Secret, from_email: &str) -> NoteClient {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("deckhand/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        NoteClient {
            api_url: api_url.trim_end_matches('/').to_string(),
            token,
            from_email: from_email.to_string(),
            http,
        }
    }

    /// Adds a note to an incident.
    ///
    /// # Errors
    /// When PagerDuty cannot be reached or refuses the note.
    pub async fn add_note(&self, incident_id: &str, content: &str) -> Result<(), PagerDutyError> {
        let failed = |reason: String| PagerDutyError::Note {
            incident: incident_id.to_string(),
            reason,
        };
        let mut url = url::Url::parse(&self.api_url)
            .map_err(|error| failed(format!("api_url is not a URL: {error}")))?;
        url.path_segments_mut()
            .map_err(|()| failed("api_url cannot take a path".to_string()))?
            .pop_if_empty()
            .extend(["incidents", incident_id, "notes"]);
        let response = self
            .http
            .post(url)
            .header(
                "Authorization",
                format!("Token token={}", self.token.expose()),
            )
            .header("From", &self.from_email)
            .header("Accept", "application/vnd.pagerduty+json;version=2")
            .json(&json!({ "note": { "content": content } }))
            .send()
            .await
            .map_err(|error| failed(without_url(&error)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|value| {
                let error = &value["error"];
                let message = error["message"].as_str()?.to_string();
                let details: Vec<&str> = error["errors"]
                    .as_array()
                    .map(|errors| errors.iter().filter_map(|detail| detail.as_str()).collect())
                    .unwrap_or_default();
                Some(if details.is_empty() {
                    message
                } else {
                    format!("{message}: {}", details.join("; "))
                })
            })
            .unwrap_or_else(|| body.chars().take(ERROR_EXCERPT_CHARS).collect());
        Err(failed(format!("HTTP {}: {message}", status.as_u16())))
    }
}

/// reqwest's error text without the URL, which is ours and adds nothing.
fn without_url(error: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    if error.is_timeout() {
        "timed out".to_string()
    } else {
        innermost.to_string()
    }
}
