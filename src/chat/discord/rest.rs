//! Discord's REST API as the adapter uses it: a JSON body in, a JSON body
//! (or nothing) out, and errors that say whether to wait and retry.
//!
//! Against `https://discord.com` every call goes through serenity's `Http`
//! and its ratelimiter, which waits out 429s itself. Serenity applies a
//! base-URL override only with its ratelimiter disabled, so with any other
//! `api_url` (a proxy, the local peer in tests) calls are built by serenity
//! and sent here with our own client, and a 429 comes back as
//! [`RestError::RateLimited`] with Discord's `Retry-After`: callers retry
//! after it (see [`Rest::send_retrying`] and the operation workers).
//!
//! Interaction tokens travel in URL paths, so no error text here ever
//! includes a URL.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use serenity::http as dh;
use serenity::model::id::ApplicationId;

use crate::secret::Secret;

/// Discord's API host; any other `api_url` disables serenity's ratelimiter.
pub const DISCORD_BASE_URL: &str = "https://discord.com";

/// How often a failing call is tried in all, when the failure may pass.
const ATTEMPTS: u32 = 5;

/// Why a REST call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestError {
    /// HTTP 429: try again after this long.
    #[error("rate limited by Discord for {retry_after:?}")]
    RateLimited {
        /// Discord's `Retry-After`.
        retry_after: Duration,
    },
    /// Discord refused the call.
    #[error("Discord answered {status} (code {code}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Discord's JSON error code (0 when there was none).
        code: i64,
        /// Discord's message.
        message: String,
    },
    /// The call did not get an answer.
    #[error("cannot reach Discord: {0}")]
    Transport(String),
    /// The answer was not the JSON Discord documents.
    #[error("unreadable answer from Discord: {0}")]
    Decode(String),
}

impl RestError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RestError::RateLimited { .. } | RestError::Transport(_) => true,
            RestError::Rejected { status, .. } => *status >= 500,
            RestError::Decode(_) => false,
        }
    }

    /// Whether the interaction token or webhook is no longer valid (Discord
    /// codes 10015 Unknown Webhook, 50027 Invalid Webhook Token, 10062
    /// Unknown Interaction), or the message is gone (10008).
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            RestError::Rejected {
                code: 10008 | 10015 | 10062 | 50027,
                ..
            } | RestError::Rejected {
                status: 401 | 404,
                ..
            }
        )
    }
}

/// The REST client: serenity's `Http`, plus our own sender when serenity's
/// ratelimiter is off.
#[derive(Debug)]
pub struct Rest {
    http: Arc<dh::Http>,
    direct: Option<Direct>,
}

/// Sends serenity-built requests without serenity's ratelimiter, so a 429's
/// `Retry-After` reaches the caller.
struct Direct {
    client: reqwest::Client,
    base_url: String,
    authorization: Secret,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Direct")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Builds serenity's `Http` for `api_url`: with its ratelimiter for
/// Discord itself, proxied and without it for any other base URL.
pub fn build_http(api_url: &str, token: &Secret, application_id: ApplicationId) -> dh::Http {
    let builder = dh::HttpBuilder::new(token.expose()).application_id(application_id);
    if api_url == DISCORD_BASE_URL {
        builder.build()
    } else {
        builder.proxy(api_url).ratelimiter_disabled(true).build()
    }
}

impl Rest {
    /// Wraps the `Http` that [`build_http`] made (shared with the gateway
    /// client, so both use one set of rate-limit buckets).
    pub fn new(http: Arc<dh::Http>, api_url: &str, token: &Secret) -> Rest {
        let direct = (api_url != DISCORD_BASE_URL).then(|| Direct {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            base_url: api_url.trim_end_matches('/').to_string(),
            authorization: Secret::new(format!(
                "Bot {}",
                token.expose().trim().trim_start_matches("Bot ")
            )),
        });
        Rest { http, direct }
    }

    /// One call. `Ok(None)` when Discord answered without a body (204).
    ///
    /// # Errors
    /// See [`RestError`].
    pub async fn send(
        &self,
        method: dh::LightMethod,
        route: dh::Route<'_>,
        body: Option<&Value>,
    ) -> Result<Option<Value>, RestError> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|error| RestError::Decode(error.to_string()))?;
        let request = dh::Request::new(route, method).body(bytes);
        let response = match &self.direct {
            Some(direct) => {
                let built = request
                    .build(
                        &direct.client,
                        direct.authorization.expose(),
                        Some(&direct.base_url),
                    )
                    .map_err(|error| RestError::Transport(describe_serenity_error(&error)))?
                    .build()
                    .map_err(|error| RestError::Transport(error.without_url().to_string()))?;
                direct
                    .client
                    .execute(built)
                    .await
                    .map_err(|error| RestError::Transport(error.without_url().to_string()))?
            }
            None => self.http.request(request).await.map_err(from_serenity)?,
        };
        read_response(response).await
    }

    /// [`Rest::send`], waiting out 429s (after `Retry-After`) and retrying
    /// other passing failures a few times with backoff.
    ///
    /// # Errors
    /// The last failure, once it is not passing or the attempts are used up.
    pub async fn send_retrying(
        &self,
        method: dh::LightMethod,
        route: dh::Route<'_>,
        body: Option<&Value>,
    ) -> Result<Option<Value>, RestError> {
        let mut attempt = 1;
        loop {
            match self.send(method, route, body).await {
                Err(error) if error.is_transient() && attempt < ATTEMPTS => {
                    tokio::time::sleep(wait_before_retry(&error, attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// How long to wait before trying again: Discord's `Retry-After` for a
/// 429, else 0.5 s doubling.
pub fn wait_before_retry(error: &RestError, attempt: u32) -> Duration {
    match error {
        RestError::RateLimited { retry_after } => *retry_after,
        _ => Duration::from_millis(500) * 2u32.saturating_pow(attempt.saturating_sub(1)),
    }
}

async fn read_response(response: reqwest::Response) -> Result<Option<Value>, RestError> {
    let status = response.status();
    let retry_after_header = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<f64>().ok());
    let bytes = response
        .bytes()
        .await
        .map_err(|error| RestError::Transport(error.without_url().to_string()))?;
    let body: Option<Value> =
        if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).map_err(|error| {
                RestError::Decode(format!("status {}: {error}", status.as_u16()))
            })?)
        };
    if status.is_success() {
        return Ok(body);
    }
    if status.as_u16() == 429 {
        let seconds = body
            .as_ref()
            .and_then(|body| body["retry_after"].as_f64())
            .or(retry_after_header)
            .unwrap_or(1.0);
        return Err(RestError::RateLimited {
            retry_after: Duration::from_secs_f64(seconds.clamp(0.0, 3600.0)),
        });
    }
    let body = body.unwrap_or(Value::Null);
    Err(RestError::Rejected {
        status: status.as_u16(),
        code: body["code"].as_i64().unwrap_or(0),
        message: body["message"].as_str().unwrap_or("no message").to_string(),
    })
}

fn from_serenity(error: serenity::Error) -> RestError {
    match &error {
        serenity::Error::Http(dh::HttpError::UnsuccessfulRequest(response)) => {
            let status = response.status_code.as_u16();
            if status == 429 {
                // Serenity's ratelimiter waits these out itself; one that
                // still surfaces gets a short pause.
                RestError::RateLimited {
                    retry_after: Duration::from_secs(1),
                }
            } else {
                RestError::Rejected {
                    status,
                    code: i64::try_from(response.error.code).unwrap_or(0),
                    message: response.error.message.clone(),
                }
            }
        }
        _ => RestError::Transport(describe_serenity_error(&error)),
    }
}

/// A serenity error as text without the URL (which may hold an interaction
/// token).
fn describe_serenity_error(error: &serenity::Error) -> String {
    match error {
        serenity::Error::Http(dh::HttpError::Request(request_error)) => {
            let mut text = request_error.to_string();
            if let Some(url) = request_error.url() {
                text = text.replace(url.as_str(), "[url]");
            }
            text
        }
        serenity::Error::Http(dh::HttpError::UnsuccessfulRequest(response)) => format!(
            "status {}: {}",
            response.status_code.as_u16(),
            response.error.message
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_for_retry_after_or_back_off() {
        let limited = RestError::RateLimited {
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(wait_before_retry(&limited, 3), Duration::from_millis(1500));
        let down = RestError::Rejected {
            status: 502,
            code: 0,
            message: "Bad Gateway".to_string(),
        };
        assert!(down.is_transient());
        assert_eq!(wait_before_retry(&down, 1), Duration::from_millis(500));
        assert_eq!(wait_before_retry(&down, 3), Duration::from_secs(2));
        let unknown = RestError::Rejected {
            status: 404,
            code: 10015,
            message: "Unknown Webhook".to_string(),
        };
        assert!(!unknown.is_transient());
        assert!(unknown.is_gone());
    }
}
