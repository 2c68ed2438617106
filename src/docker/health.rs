//! Waiting for a container to be up: running and, when it has a Docker healthcheck,
//! healthy. Probing HTTP endpoints is `crate::probe`'s job; the executor combines both.

use std::time::{Duration, Instant};

use super::discovery::{ContainerInfo, HealthStatus, container_info_from};
use super::error::DockerError;
use super::host::DockerHost;

/// How often the container is inspected while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How a wait for health ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthOutcome {
    /// Running, and healthy if it has a healthcheck (`health` is then `Healthy`, else
    /// `None`).
    Ready {
        /// Time from the start of the wait.
        elapsed: Duration,
        /// The healthcheck verdict.
        health: HealthStatus,
    },
    /// Docker marked it unhealthy.
    Unhealthy {
        /// Time from the start of the wait.
        elapsed: Duration,
        /// Output of the last healthcheck probe.
        last_output: Option<String>,
        /// The container's last log lines.
        last_lines: Vec<String>,
    },
    /// The container stopped, or was restarted by its restart policy, while we waited.
    Exited {
        /// Exit code of the main process.
        exit_code: Option<i64>,
        /// Whether the kernel killed it for memory.
        oom_killed: bool,
        /// The container's last log lines.
        last_lines: Vec<String>,
    },
    /// Neither ready nor failed when the time was up.
    TimedOut {
        /// The limit that ran out.
        after: Duration,
        /// Docker's status word at the end.
        status: String,
        /// The healthcheck verdict at the end.
        health: HealthStatus,
        /// Output of the last healthcheck probe.
        last_output: Option<String>,
    },
}

impl HealthOutcome {
    /// True for [`HealthOutcome::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, HealthOutcome::Ready { .. })
    }
}

/// A one-line summary, e.g. `exited with code 3; last lines: ...`.
impl std::fmt::Display for HealthOutcome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthOutcome::Ready { elapsed, health } => {
                write!(
                    formatter,
                    "ready after {} ms (health {health})",
                    elapsed.as_millis()
                )
            }
            HealthOutcome::Unhealthy {
                last_output,
                last_lines,
                ..
            } => write!(
                formatter,
                "unhealthy; last check: \"{}\"; last lines: {}",
                last_output.as_deref().unwrap_or(""),
                last_lines.join(" | ")
            ),
            HealthOutcome::Exited {
                exit_code,
                oom_killed,
                last_lines,
            } => {
                match exit_code {
                    Some(code) => write!(formatter, "exited with code {code}")?,
                    None => formatter.write_str("exited")?,
                }
                if *oom_killed {
                    formatter.write_str(" (out of memory)")?;
                }
                write!(formatter, "; last lines: {}", last_lines.join(" | "))
            }
            HealthOutcome::TimedOut {
                after,
                status,
                health,
                ..
            } => write!(
                formatter,
                "not ready after {}s (status {status}, health {health})",
                after.as_secs()
            ),
        }
    }
}

impl DockerHost {
    /// Polls a container until it is running and healthy (or just running, without a
    /// healthcheck), until it fails, or until `timeout`.
    ///
    /// # Errors
    ///
    /// Only when Docker itself cannot be asked; an unhealthy, crashed or slow container is
    /// an outcome, not an error.
    pub async fn wait_healthy(
        &self,
        container: &str,
        timeout: Duration,
    ) -> Result<HealthOutcome, DockerError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let raw = self.inspect_raw(container).await?;
        let check = healthcheck_command(&raw);
        let first = container_info_from(raw, None);
        let restarts_at_start = first.state.restart_count;
        let mut info = first;
        loop {
            if let Some(outcome) = self
                .verdict(container, &info, restarts_at_start, started)
                .await?
            {
                return Ok(outcome);
            }
            if let Some(check) = &check
                && info.state.running
                && info.health.status == HealthStatus::Starting
                && self.passes(container, check).await
            {
                return Ok(HealthOutcome::Ready {
                    elapsed: started.elapsed(),
                    health: HealthStatus::Healthy,
                });
            }
            if Instant::now() + POLL_INTERVAL > deadline {
                return Ok(HealthOutcome::TimedOut {
                    after: timeout,
                    status: info.state.status,
                    health: info.health.status,
                    last_output: info.health.last_output,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
            info = self.poll(container).await?;
        }
    }

    /// Runs the container's own healthcheck test once, through exec. Docker
    /// runs the first scheduled check only `interval` after the start; running
    /// the same test at once ends the wait as soon as the service is really
    /// healthy. A failing run is not a verdict: Docker's retries decide that.
    async fn passes(&self, container: &str, check: &HealthcheckCommand) -> bool {
        let exec = super::exec::Exec {
            cmd: check.cmd.clone(),
            env: Vec::new(),
            stdin: None,
            timeout: check.timeout,
        };
        matches!(self.exec(container, exec).await, Ok(output) if output.exit_code == 0)
    }

    async fn poll(&self, container: &str) -> Result<ContainerInfo, DockerError> {
        let raw = self.inspect_raw(container).await?;
        Ok(container_info_from(raw, None))
    }

    /// The outcome this inspection settles, if any.
    async fn verdict(
        &self,
        container: &str,
        info: &ContainerInfo,
        restarts_at_start: u64,
        started: Instant,
    ) -> Result<Option<HealthOutcome>, DockerError> {
        let has_stopped = !info.state.running && info.state.finished_at.is_some();
        let was_restarted = info.state.restart_count > restarts_at_start;
        if has_stopped || was_restarted || info.state.status == "restarting" {
            return Ok(Some(HealthOutcome::Exited {
                exit_code: info.state.exit_code,
                oom_killed: info.state.oom_killed,
                last_lines: self.last_lines_or_why(container).await,
            }));
        }
        let outcome = match (info.state.running, info.health.status) {
            (true, status @ (HealthStatus::None | HealthStatus::Healthy)) => {
                Some(HealthOutcome::Ready {
                    elapsed: started.elapsed(),
                    health: status,
                })
            }
            (true, HealthStatus::Unhealthy) => Some(HealthOutcome::Unhealthy {
                elapsed: started.elapsed(),
                last_output: info.health.last_output.clone(),
                last_lines: self.last_lines_or_why(container).await,
            }),
            _ => None,
        };
        Ok(outcome)
    }
}

/// A container's healthcheck test as an argument vector for exec.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HealthcheckCommand {
    cmd: Vec<String>,
    timeout: Duration,
}

/// The healthcheck the container was created with (its image's, unless
/// overridden): `CMD` runs as is, `CMD-SHELL` through the image's `/bin/sh`,
/// exactly as Docker runs it; `NONE` or no test means none.
fn healthcheck_command(
    raw: &bollard::models::ContainerInspectResponse,
) -> Option<HealthcheckCommand> {
    let healthcheck = raw.config.as_ref()?.healthcheck.as_ref()?;
    let test = healthcheck.test.as_ref()?;
    let (kind, rest) = test.split_first()?;
    let cmd = match kind.as_str() {
        "CMD" if !rest.is_empty() => rest.to_vec(),
        "CMD-SHELL" if rest.len() == 1 => {
            vec!["/bin/sh".to_string(), "-c".to_string(), rest[0].clone()]
        }
        _ => return None,
    };
    let timeout = healthcheck
        .timeout
        .filter(|nanos| *nanos > 0)
        .map(|nanos| Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
        .unwrap_or(Duration::from_secs(30));
    Some(HealthcheckCommand { cmd, timeout })
}
