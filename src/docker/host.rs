//! Connecting to a Docker host and making calls to it.
//!
//! Owns the endpoint schemes Deckhand accepts, API version negotiation, the time limit on
//! every call and the shared clock of time spent inside Docker. It does not know what the
//! calls are for; the sibling modules build on [`DockerHost::call`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;

use super::error::DockerError;

/// How to reach one Docker host, as the configuration describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The host's name in Deckhand's configuration, used in messages and logs.
    pub name: String,
    /// `unix:///var/run/docker.sock`, `tcp://host:port` or `ssh://user@host`.
    pub endpoint: String,
    /// Client certificates for `tcp://` endpoints that require TLS.
    pub tls: Option<TlsFiles>,
    /// Private key for `ssh://` endpoints; without one, ssh's own configuration decides.
    pub ssh_key: Option<PathBuf>,
    /// Time limit for each Docker API call.
    pub timeout: Duration,
}

/// PEM files for a TLS-protected Docker endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the daemon's certificate.
    pub ca: PathBuf,
    /// The client certificate.
    pub cert: PathBuf,
    /// The client certificate's private key.
    pub key: PathBuf,
}

/// Wall time spent inside Docker API calls, summed over all clones of a [`DockerHost`].
/// Calls made concurrently each count their full duration, and a streamed response (a
/// pull, a build, a one-off container's wait) counts as one call lasting until its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApiTime {
    /// Total time between sending each request and finishing with its response.
    pub total: Duration,
    /// Number of calls measured.
    pub calls: u64,
}

/// A connected Docker host. Cloning is cheap and clones share the connection settings and
/// the [`ApiTime`] clock.
#[derive(Clone)]
pub struct DockerHost {
    docker: Docker,
    name: Arc<str>,
    endpoint: Arc<str>,
    api_version: Arc<str>,
    timeout: Duration,
    clock: Arc<ApiClock>,
}

impl std::fmt::Debug for DockerHost {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DockerHost")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl DockerHost {
    /// Connects to the host, negotiates the API version down to what the engine supports
    /// and checks that it answers a ping.
    ///
    /// # Errors
    ///
    /// [`DockerError::Unreachable`] when nothing answers (for `ssh://`, also when the SSH
    /// session cannot be opened), [`DockerError::InvalidEndpoint`] for an endpoint or TLS
    /// file that cannot be used.
    pub async fn connect(spec: &HostSpec) -> Result<DockerHost, DockerError> {
        let started = Instant::now();
        let docker = client_for(spec)?;
        let unnegotiated = DockerHost {
            docker: docker.clone(),
            name: Arc::from(spec.name.as_str()),
            endpoint: Arc::from(spec.endpoint.as_str()),
            api_version: Arc::from(""),
            timeout: spec.timeout,
            clock: Arc::new(ApiClock::default()),
        };
        let negotiated = unnegotiated
            .call("negotiating the API version", docker.negotiate_version())
            .await
            .map_err(|error| unnegotiated.unreachable_on_timeout(error))?;
        let version = negotiated.client_version();
        let host = DockerHost {
            docker: negotiated,
            api_version: Arc::from(format!(
                "{}.{}",
                version.major_version, version.minor_version
            )),
            ..unnegotiated
        };
        host.ping()
            .await
            .map_err(|error| host.unreachable_on_timeout(error))?;
        tracing::info!(
            host = %host.name,
            endpoint = %host.endpoint,
            api_version = %host.api_version,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "connected to Docker host"
        );
        Ok(host)
    }

    /// Checks that the engine answers.
    ///
    /// # Errors
    ///
    /// [`DockerError::Unreachable`] or [`DockerError::Timeout`] when it does not.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.call("pinging", self.docker.ping()).await.map(|_| ())
    }

    /// The host's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoint as configured.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The API version agreed with the engine, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The time limit applied to ordinary calls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Time spent inside Docker API calls so far, across all clones of this handle.
    pub fn api_time(&self) -> ApiTime {
        ApiTime {
            total: Duration::from_nanos(self.clock.nanos.load(Ordering::Relaxed)),
            calls: self.clock.calls.load(Ordering::Relaxed),
        }
    }

    /// The bollard client for ordinary calls.
    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    /// A bollard client whose own response-header timeout allows `limit`, for builds,
    /// imports and pulls where the engine reads a large body before it answers.
    pub(super) fn client_for_long_call(&self, limit: Duration) -> Docker {
        self.docker.clone().with_timeout(limit)
    }

    /// Runs one Docker call under the host's time limit and measures it.
    pub(super) async fn call<T>(
        &self,
        action: impl Into<String>,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        self.call_within(action, self.timeout, call).await
    }

    /// Runs one Docker call (or the consumption of one response stream) under `limit` and
    /// measures it.
    pub(super) async fn call_within<T>(
        &self,
        action: impl Into<String>,
        limit: Duration,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        let action = action.into();
        let started = Instant::now();
        let outcome = tokio::time::timeout(limit, call).await;
        let elapsed = started.elapsed();
        self.clock.record(elapsed);
        tracing::trace!(
            host = %self.name,
            action = %action,
            elapsed_ms = elapsed.as_millis() as u64,
            "docker call"
        );
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.classify(action, error)),
            Err(_elapsed) => Err(DockerError::Timeout {
                action,
                host: self.name.to_string(),
                after: limit,
            }),
        }
    }

    /// Turns a bollard error into ours: connection failures become
    /// [`DockerError::Unreachable`], everything else keeps the action as context.
    pub(super) fn classify(&self, action: String, error: bollard::errors::Error) -> DockerError {
        use bollard::errors::Error as Bollard;
        match &error {
            Bollard::HyperLegacyError { err } if err.is_connect() => DockerError::Unreachable {
                endpoint: self.endpoint.to_string(),
                reason: innermost_reason(&error),
            },
            // With TLS 1.3 a refused client certificate surfaces on the first request, not
            // while connecting; it still means this host cannot be used.
            Bollard::HyperLegacyError { .. } if has_tls_cause(&error) => DockerError::Unreachable {
                endpoint: self.endpoint.to_string(),
                reason: format!("TLS handshake failed: {}", innermost_reason(&error)),
            },
            Bollard::SocketNotFoundError(path) => DockerError::Unreachable {
                endpoint: self.endpoint.to_string(),
                reason: format!("no socket at {path}"),
            },
            Bollard::RequestTimeoutError => DockerError::Timeout {
                action,
                host: self.name.to_string(),
                after: self.timeout,
            },
            _ => DockerError::Api {
                action,
                host: self.name.to_string(),
                source: Box::new(error),
            },
        }
    }

    /// True when the error is the engine saying "no such object".
    pub(super) fn is_not_found(error: &DockerError) -> bool {
        let DockerError::Api { source, .. } = error else {
            return false;
        };
        matches!(
            source.downcast_ref::<bollard::errors::Error>(),
            Some(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }

    /// The engine's own message when the error came from the engine, else the chain.
    pub(super) fn engine_message(error: &DockerError) -> String {
        if let DockerError::Api { source, .. } = error {
            match source.downcast_ref::<bollard::errors::Error>() {
                Some(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                    return message.clone();
                }
                Some(bollard::errors::Error::DockerStreamError { error }) => return error.clone(),
                _ => {}
            }
        }
        error.chain()
    }

    /// While connecting, a host that does not answer in time is unreachable, not slow.
    fn unreachable_on_timeout(&self, error: DockerError) -> DockerError {
        match error {
            DockerError::Timeout { after, .. } => DockerError::Unreachable {
                endpoint: self.endpoint.to_string(),
                reason: format!("no answer within {}s", after.as_secs_f32()),
            },
            other => other,
        }
    }
}

/// Builds the bollard client for the endpoint's scheme, without contacting the host.
fn client_for(spec: &HostSpec) -> Result<Docker, DockerError> {
    let invalid = |reason: String| DockerError::InvalidEndpoint {
        endpoint: spec.endpoint.clone(),
        reason,
    };
    // bollard's own timeout covers only the wait for response headers; every call is also
    // wrapped in tokio::time::timeout by `call_within`.
    let header_timeout = spec.timeout.as_secs().max(1);
    let version = bollard::API_DEFAULT_VERSION;
    let (scheme, rest) = spec
        .endpoint
        .split_once("://")
        .ok_or_else(|| invalid("expected unix://, tcp:// or ssh://".to_string()))?;
    let result = match (scheme, &spec.tls) {
        ("unix", _) => Docker::connect_with_unix(&spec.endpoint, header_timeout, version),
        ("tcp" | "http", None) => Docker::connect_with_http(rest, header_timeout, version),
        ("tcp" | "https", Some(tls)) => {
            Docker::connect_with_ssl(rest, &tls.key, &tls.cert, &tls.ca, header_timeout, version)
        }
        ("https", None) => {
            return Err(invalid(
                "https:// needs TLS client files (ca, cert, key)".to_string(),
            ));
        }
        // bollard runs `docker system dial-stdio` on the host over an OpenSSH session
        // (the system's ssh client, in batch mode: keys or agent, never a password
        // prompt; a host seen for the first time is added to known_hosts, a changed
        // host key is refused).
        ("ssh", None) => Docker::connect_with_ssh(
            &spec.endpoint,
            header_timeout,
            version,
            spec.ssh_key
                .as_ref()
                .map(|path| path.to_string_lossy().into_owned()),
        ),
        ("ssh", Some(_)) => {
            return Err(invalid(
                "TLS client files apply only to tcp:// endpoints".to_string(),
            ));
        }
        (other, _) => {
            return Err(invalid(format!(
                "unknown scheme \"{other}\"; expected unix://, tcp:// or ssh://"
            )));
        }
    };
    result.map_err(|error| match error {
        bollard::errors::Error::SocketNotFoundError(path) => DockerError::Unreachable {
            endpoint: spec.endpoint.clone(),
            reason: format!("no socket at {path}"),
        },
        other => invalid(innermost_reason(&other)),
    })
}

/// Whether a TLS error is among the causes.
fn has_tls_cause(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if current.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // io::Error's source() skips the error it wraps, so look inside explicitly.
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// The deepest cause's message, lower-cased and without the `(os error N)` suffix, e.g.
/// `connection refused`.
fn innermost_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    let text = innermost.to_string();
    let text = match text.find(" (os error") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    };
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_lowercase().chain(characters).collect(),
        None => "no reason given".to_string(),
    }
}

/// Shared counters behind [`DockerHost::api_time`].
#[derive(Debug, Default)]
struct ApiClock {
    nanos: AtomicU64,
    calls: AtomicU64,
}

impl ApiClock {
    fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoint: &str) -> HostSpec {
        HostSpec {
            name: "test".to_string(),
            endpoint: endpoint.to_string(),
            tls: None,
            ssh_key: None,
            timeout: Duration::from_secs(5),
        }
    }

    fn check_refused(endpoint: &str, expected: &str) {
        let error = client_for(&spec(endpoint)).expect_err("endpoint must be refused");
        assert_eq!(error.to_string(), expected);
    }

    #[test]
    fn refuses_unusable_endpoints() {
        check_refused(
            "ftp://x",
            "invalid Docker endpoint \"ftp://x\": unknown scheme \"ftp\"; expected unix://, tcp:// or ssh://",
        );
        check_refused(
            "10.0.0.5:2376",
            "invalid Docker endpoint \"10.0.0.5:2376\": expected unix://, tcp:// or ssh://",
        );
        check_refused(
            "unix:///nonexistent/docker.sock",
            "Docker host unix:///nonexistent/docker.sock unreachable (no socket at /nonexistent/docker.sock)",
        );
    }

    #[test]
    fn reason_is_the_innermost_cause_in_lower_case() {
        let error = std::io::Error::from_raw_os_error(111);
        assert_eq!(innermost_reason(&error), "connection refused");
    }
}
