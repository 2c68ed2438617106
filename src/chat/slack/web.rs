//! The Slack Web API methods Deckhand calls, through slack-morphism's hyper
//! client, with Slack's rate limits honoured: a 429 blocks that method for
//! every caller until its `Retry-After` has passed, and the call is tried
//! again. Other failures are logged once here with the method and Slack's
//! error code, and retried when a retry can help (a 5xx, a dropped
//! connection, Slack's `internal_error`); permanent ones (`channel_not_found`,
//! `invalid_auth`, ...) come back at once as [`WebError`].
//!
//! What this module does not do: decide what to post (the delivery lanes in
//! `deliver` do) or keep retrying forever (the lanes re-queue what must not
//! be lost).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude as sm;
use tokio::time::Instant;

use crate::secret::Secret;

/// How many times one call is tried before its failure is returned.
const MAX_ATTEMPTS: u32 = 5;
/// The wait after a 429 that came without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The first wait after a retryable failure; it doubles per attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// A Web API call that failed for good (after the retries that made sense).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebError {
    /// Slack answered `{"ok": false, "error": code}`.
    #[error("slack {method} failed: \"{code}\"")]
    Api {
        /// The method, e.g. `chat.update`.
        method: &'static str,
        /// Slack's error code.
        code: String,
    },
    /// Slack kept answering 429.
    #[error("slack {method} stayed rate limited")]
    RateLimited {
        /// The method.
        method: &'static str,
    },
    /// An HTTP status other than 200 and 429.
    #[error("slack {method} answered HTTP {status}")]
    Http {
        /// The method.
        method: &'static str,
        /// The status.
        status: u16,
    },
    /// The request did not get an answer, or the answer was unreadable.
    #[error("slack {method} could not be reached: {detail}")]
    Transport {
        /// The method.
        method: &'static str,
        /// What went wrong.
        detail: String,
    },
}

impl WebError {
    /// Whether trying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            WebError::Api { code, .. } => is_retryable_code(code),
            WebError::RateLimited { .. } | WebError::Transport { .. } => true,
            WebError::Http { status, .. } => *status >= 500,
        }
    }

    /// The method that failed.
    pub fn method(&self) -> &'static str {
        match self {
            WebError::Api { method, .. }
            | WebError::RateLimited { method }
            | WebError::Http { method, .. }
            | WebError::Transport { method, .. } => method,
        }
    }

    /// Slack's error code, or a short name of the failure.
    pub fn code(&self) -> String {
        match self {
            WebError::Api { code, .. } => code.clone(),
            WebError::RateLimited { .. } => "ratelimited".to_string(),
            WebError::Http { status, .. } => format!("http_{status}"),
            WebError::Transport { .. } => "transport".to_string(),
        }
    }
}

/// Slack's error codes that mean "try again later".
fn is_retryable_code(code: &str) -> bool {
    matches!(
        code,
        "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
            | "ratelimited"
            | "rate_limited"
            | "team_added_to_org"
    )
}

/// The bot's session with the Web API. Cheap to clone.
#[derive(Clone)]
pub struct Web {
    client: Arc<sm::SlackHyperClient>,
    token: sm::SlackApiToken,
    gate: Arc<RateGate>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Web { token: [redacted] }")
    }
}

impl Web {
    /// A session with the bot token.
    pub fn new(client: Arc<sm::SlackHyperClient>, bot_token: &Secret) -> Web {
        let token =
            sm::SlackApiToken::new(sm::SlackApiTokenValue::new(bot_token.expose().to_string()));
        Web {
            client,
            token,
            gate: Arc::new(RateGate::default()),
        }
    }

    /// `auth.test`: the bot's own user id.
    ///
    /// # Errors
    /// When the token is refused or Slack cannot be reached.
    pub async fn auth_test(&self) -> Result<String, WebError> {
        let answer = self
            .call("auth.test", || async {
                self.client.open_session(&self.token).auth_test().await
            })
            .await?;
        Ok(answer.user_id.to_string())
    }

    /// `chat.postMessage`; returns the new message's ts.
    ///
    /// # Errors
    /// When Slack refuses the message or cannot be reached.
    pub async fn post_message(
        &self,
        channel: &str,
        content: &sm::SlackMessageContent,
        thread_ts: Option<&str>,
    ) -> Result<String, WebError> {
        let request = sm::SlackApiChatPostMessageRequest::new(channel.into(), content.clone())
            .opt_thread_ts(thread_ts.map(|ts| sm::SlackTs::new(ts.to_string())));
        let answer = self
            .call("chat.postMessage", || async {
                self.client
                    .open_session(&self.token)
                    .chat_post_message(&request)
                    .await
            })
            .await?;
        Ok(answer.ts.to_string())
    }

    /// `chat.update` of a message the bot posted.
    ///
    /// # Errors
    /// When Slack refuses the edit or cannot be reached.
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        content: &sm::SlackMessageContent,
    ) -> Result<(), WebError> {
        let request = sm::SlackApiChatUpdateRequest::new(
            channel.into(),
            content.clone(),
            sm::SlackTs::new(ts.to_string()),
        );
        self.call("chat.update", || async {
            self.client
                .open_session(&self.token)
                .chat_update(&request)
                .await
        })
        .await?;
        Ok(())
    }

    /// `chat.postEphemeral`: a message only `user` sees.
    ///
    /// # Errors
    /// When Slack refuses it (the bot is not in the channel, say).
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        content: &sm::SlackMessageContent,
    ) -> Result<(), WebError> {
        let request =
            sm::SlackApiChatPostEphemeralRequest::new(channel.into(), user.into(), content.clone());
        self.call("chat.postEphemeral", || async {
            self.client
                .open_session(&self.token)
                .chat_post_ephemeral(&request)
                .await
        })
        .await?;
        Ok(())
    }

    /// Posts to a command's `response_url`; Slack shows it to the person
    /// who typed the command only (ephemeral is the default there).
    ///
    /// # Errors
    /// When the URL refuses it (expired, say) or cannot be reached.
    pub async fn respond(
        &self,
        response_url: &sm::SlackResponseUrl,
        content: &sm::SlackMessageContent,
    ) -> Result<(), WebError> {
        let request = sm::SlackApiPostWebhookMessageRequest::new(content.clone());
        self.call("response_url", || async {
            self.client.respond_to_event(response_url, &request).await
        })
        .await?;
        Ok(())
    }

    /// `usergroups.users.list`: the members of a user group.
    ///
    /// # Errors
    /// When the group is unknown or Slack cannot be reached.
    pub async fn usergroup_members(&self, usergroup: &str) -> Result<Vec<String>, WebError> {
        let request = sm::SlackApiUserGroupsUsersListRequest::new(sm::SlackUserGroupId::new(
            usergroup.to_string(),
        ));
        let answer = self
            .call("usergroups.users.list", || async {
                self.client
                    .open_session(&self.token)
                    .usergroups_users_list(&request)
                    .await
            })
            .await?;
        Ok(answer.users.iter().map(ToString::to_string).collect())
    }

    /// Runs one call, waiting out rate limits and retrying what may
    /// succeed on a later try.
    async fn call<T, F, Fut>(&self, method: &'static str, attempt: F) -> Result<T, WebError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SlackClientError>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut n_attempts = 0;
        loop {
            self.gate.wait(method).await;
            n_attempts += 1;
            let error = match attempt().await {
                Ok(answer) => return Ok(answer),
                Err(SlackClientError::RateLimitError(limited)) => {
                    let retry_after = limited.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                    tracing::warn!(
                        method,
                        retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
                        "slack rate limited the call; waiting as Retry-After asks"
                    );
                    self.gate.block(method, retry_after);
                    if n_attempts < MAX_ATTEMPTS * 2 {
                        continue;
                    }
                    WebError::RateLimited { method }
                }
                Err(other) => to_web_error(method, other),
            };
            if !error.is_retryable() || n_attempts >= MAX_ATTEMPTS {
                tracing::warn!(method, code = %error.code(), error = %error, "slack call failed");
                return Err(error);
            }
            tracing::info!(method, code = %error.code(), error = %error, "slack call failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
}

/// Our error for slack-morphism's, keeping what helps an operator and
/// nothing that could hold a token.
fn to_web_error(method: &'static str, error: SlackClientError) -> WebError {
    match error {
        SlackClientError::ApiError(api) => WebError::Api {
            method,
            code: api.code,
        },
        SlackClientError::HttpError(http) => WebError::Http {
            method,
            status: http.status_code.as_u16(),
        },
        SlackClientError::RateLimitError(_) => WebError::RateLimited { method },
        SlackClientError::HttpProtocolError(_)
        | SlackClientError::EndOfStream(_)
        | SlackClientError::SocketModeProtocolError(_)
        | SlackClientError::SystemError(_)
        | SlackClientError::ProtocolError(_) => WebError::Transport {
            method,
            detail: transport_detail(&error),
        },
    }
}

fn transport_detail(error: &SlackClientError) -> String {
    match error {
        SlackClientError::ProtocolError(_) => "unreadable answer".to_string(),
        SlackClientError::HttpProtocolError(_) => "connection failed".to_string(),
        SlackClientError::EndOfStream(_) => "connection closed".to_string(),
        _ => "client error".to_string(),
    }
}

/// Per-method "not before" times set by 429 answers, shared by every
/// caller so one rate limit pauses that method everywhere.
#[derive(Debug, Default)]
struct RateGate {
    blocked_until: Mutex<HashMap<&'static str, Instant>>,
}

impl RateGate {
    async fn wait(&self, method: &'static str) {
        if let Some(until) = self.not_before(method)
            && until > Instant::now()
        {
            tokio::time::sleep_until(until).await;
        }
    }

    fn not_before(&self, method: &'static str) -> Option<Instant> {
        self.blocked_until
            .lock()
            .ok()
            .and_then(|blocked| blocked.get(method).copied())
    }

    fn block(&self, method: &'static str, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        if let Ok(mut blocked) = self.blocked_until.lock() {
            let entry = blocked.entry(method).or_insert(until);
            if *entry < until {
                *entry = until;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_failures_are_the_temporary_ones() {
        let cases = [
            (
                WebError::Api {
                    method: "chat.update",
                    code: "internal_error".to_string(),
                },
                true,
            ),
            (
                WebError::Api {
                    method: "chat.update",
                    code: "channel_not_found".to_string(),
                },
                false,
            ),
            (
                WebError::Api {
                    method: "chat.update",
                    code: "invalid_auth".to_string(),
                },
                false,
            ),
            (
                WebError::Http {
                    method: "chat.update",
                    status: 503,
                },
                true,
            ),
            (
                WebError::Http {
                    method: "chat.update",
                    status: 404,
                },
                false,
            ),
            (
                WebError::Transport {
                    method: "chat.update",
                    detail: "connection failed".to_string(),
                },
                true,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.is_retryable(), expected, "{error}");
        }
    }

    #[test]
    fn a_rate_limit_pauses_its_method_only_and_keeps_the_later_time() {
        let gate = RateGate::default();
        let now = Instant::now();
        gate.block("chat.update", Duration::from_secs(30));
        gate.block("chat.update", Duration::from_secs(1));
        assert_eq!(gate.not_before("chat.postMessage"), None);
        let until = gate
            .not_before("chat.update")
            .expect("chat.update is blocked");
        assert!(until >= now + Duration::from_secs(30));
    }
}
