//! The runbook's "Common Issues and Resolution" as checks: each is a typed unit that
//! looks at one thing (a service that won't start, the database, Redis, memory, disk,
//! TLS certificates, the proxy behind a 502, migrations, the network, health endpoints,
//! the last deploy) and returns a [`Finding`]: ok, warn or fail, the evidence it saw, and
//! the Deckhand command that fits when it fails.
//!
//! Checks run in parallel, each under its own time limit; one that hangs becomes a
//! "timed out after 5 s" finding and never holds the report back. The containers of
//! every service are found once, before the checks, and shared by them.
//!
//! This module reads and never changes anything (the migration status command runs in
//! a one-off container that is removed afterwards). It knows nothing about chat or
//! operations: `exec::steps::diagnose` runs it for `/diagnose` and for PagerDuty
//! incidents and turns the [`Report`] into the operation's message.

mod context;
mod database;
mod disk;
mod health;
mod memory;
mod migrations;
mod network;
mod proxy;
mod redis;
mod report;
mod start;
mod tls;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use crate::config::{Environment, Service, ServiceKind};
use crate::docker::{ContainerInfo, DockerHost, Exec, ExecOutput, ServiceSelector};
use crate::store::Store;

pub use report::{Finding, Report, Status};
pub use tls::{CertificateFacts, inspect_certificate};

/// One diagnostic check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// Service won't start: state, exit code, restarts, OOM kills, last error lines.
    Start,
    /// Database connection: `SELECT 1` through the database container.
    Database,
    /// Redis connection: `PING`.
    Redis,
    /// High memory: usage per container against its limit.
    Memory,
    /// Disk space: Docker's disk usage and the host's free space.
    Disk,
    /// TLS certificates of the public endpoints: expiry and host name.
    Tls,
    /// 502 Bad Gateway: `nginx -t` and whether the proxy reaches its upstreams.
    Proxy,
    /// Migration failures: the migration status command.
    Migrations,
    /// Network issues: networks, members, and name resolution between services.
    Network,
    /// Health endpoints with status and latency.
    Health,
    /// The last deploy and rollback, and whether the incident followed one.
    Context,
}

impl Check {
    /// Every check, in report order for equal status.
    pub const ALL: [Check; 11] = [
        Check::Start,
        Check::Health,
        Check::Database,
        Check::Redis,
        Check::Proxy,
        Check::Memory,
        Check::Disk,
        Check::Tls,
        Check::Migrations,
        Check::Network,
        Check::Context,
    ];

    /// The check's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Check::Start => "start",
            Check::Database => "database",
            Check::Redis => "redis",
            Check::Memory => "memory",
            Check::Disk => "disk",
            Check::Tls => "tls",
            Check::Proxy => "proxy",
            Check::Migrations => "migrations",
            Check::Network => "network",
            Check::Health => "health",
            Check::Context => "context",
        }
    }
}

/// A symptom `/diagnose ENV SYMPTOM` narrows the checks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symptom {
    /// A service won't start.
    Start,
    /// Database connection errors.
    Db,
    /// Redis connection errors.
    Redis,
    /// High memory use or OOM kills.
    Memory,
    /// No space left on device.
    Disk,
    /// Certificate errors.
    Ssl,
    /// 502 Bad Gateway.
    BadGateway,
    /// Migration failures.
    Migrations,
    /// Services cannot reach each other.
    Network,
}

impl Symptom {
    /// Reads a symptom as `commands/diagnose.toml` lists them.
    pub fn from_name(name: &str) -> Option<Symptom> {
        Some(match name {
            "start" => Symptom::Start,
            "db" => Symptom::Db,
            "redis" => Symptom::Redis,
            "memory" => Symptom::Memory,
            "disk" => Symptom::Disk,
            "ssl" => Symptom::Ssl,
            "502" => Symptom::BadGateway,
            "migrations" => Symptom::Migrations,
            "network" => Symptom::Network,
            _ => return None,
        })
    }

    /// The checks for this symptom, after the runbook's resolution steps.
    pub fn checks(self) -> &'static [Check] {
        match self {
            Symptom::Start => &[Check::Start, Check::Context],
            Symptom::Db => &[Check::Database, Check::Start],
            Symptom::Redis => &[Check::Redis],
            Symptom::Memory => &[Check::Memory, Check::Start],
            Symptom::Disk => &[Check::Disk],
            Symptom::Ssl => &[Check::Tls],
            Symptom::BadGateway => &[Check::Proxy, Check::Health, Check::Start, Check::Context],
            Symptom::Migrations => &[Check::Migrations, Check::Database],
            Symptom::Network => &[Check::Network],
        }
    }
}

/// What the checks look at: one environment on its Docker host, with the containers of
/// each service found beforehand.
#[derive(Debug)]
pub struct Subject<'a> {
    /// The environment's Docker host.
    pub host: DockerHost,
    /// The environment.
    pub environment: &'a Environment,
    /// The store, for the last deploys.
    pub store: &'a Store,
    /// The clock reading the report is made at.
    pub now: DateTime<Utc>,
    /// When the incident being diagnosed started; `now` when nobody said.
    pub incident_started: Option<DateTime<Utc>>,
    /// Every service with its containers.
    pub services: Vec<ServiceContainers<'a>>,
}

/// A service and what discovery found of it.
#[derive(Debug)]
pub struct ServiceContainers<'a> {
    /// The service as configured.
    pub service: &'a Service,
    /// Its containers, or why they could not be listed.
    pub containers: Result<Vec<ContainerInfo>, String>,
}

/// Finds the containers of every service of the environment, all services at once,
/// each under the environment's check time limit.
pub async fn discover<'a>(
    host: &DockerHost,
    environment: &'a Environment,
) -> Vec<ServiceContainers<'a>> {
    let limit = environment.diagnose.timeout;
    join_all(environment.services.values().map(|service| async move {
        let selector = ServiceSelector::from(&service.selector);
        let containers = match tokio::time::timeout(limit, host.find_containers(&selector)).await {
            Ok(Ok(containers)) => Ok(containers),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "listing its containers timed out after {}",
                seconds(limit)
            )),
        };
        ServiceContainers {
            service,
            containers,
        }
    }))
    .await
}

/// Runs the checks all at once, each under its own time limit.
pub async fn run(subject: &Subject<'_>, checks: &[Check]) -> Report {
    let started = Instant::now();
    let findings = join_all(checks.iter().map(|check| run_limited(subject, *check))).await;
    Report::new(findings, started.elapsed())
}

/// Runs the checks one after another; the same findings as [`run`], for comparing
/// their speed.
pub async fn run_one_by_one(subject: &Subject<'_>, checks: &[Check]) -> Report {
    let started = Instant::now();
    let mut findings = Vec::with_capacity(checks.len());
    for check in checks {
        findings.push(run_limited(subject, *check).await);
    }
    Report::new(findings, started.elapsed())
}

async fn run_limited(subject: &Subject<'_>, check: Check) -> Finding {
    let limit = limit_of(subject.environment, check);
    let started = Instant::now();
    let finding = match tokio::time::timeout(limit, run_check(subject, check)).await {
        Ok(finding) => finding,
        Err(_) => Finding::fail(check, format!("timed out after {}", seconds(limit))),
    };
    tracing::debug!(
        check = check.name(),
        status = finding.status.name(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "diagnostic check"
    );
    finding.took(started.elapsed())
}

/// The time limit of one check: the environment's, longer for the migration command
/// whose one-off container also has to start.
fn limit_of(environment: &Environment, check: Check) -> Duration {
    match (&environment.diagnose.migrations, check) {
        (Some(migrations), Check::Migrations) => migrations.timeout + Duration::from_secs(2),
        _ => environment.diagnose.timeout,
    }
}

async fn run_check(subject: &Subject<'_>, check: Check) -> Finding {
    match check {
        Check::Start => start::check(subject).await,
        Check::Database => database::check(subject).await,
        Check::Redis => redis::check(subject).await,
        Check::Memory => memory::check(subject).await,
        Check::Disk => disk::check(subject).await,
        Check::Tls => tls::check(subject).await,
        Check::Proxy => proxy::check(subject).await,
        Check::Migrations => migrations::check(subject).await,
        Check::Network => network::check(subject).await,
        Check::Health => health::check(subject).await,
        Check::Context => context::check(subject).await,
    }
}

impl Subject<'_> {
    /// The environment's name.
    pub fn env(&self) -> &str {
        self.environment.name.as_str()
    }

    /// `/service restart ENV SERVICE`, the runbook's first resort.
    pub fn restart_command(&self, service: &Service) -> String {
        format!("/service restart {} {}", self.env(), service.name)
    }

    /// Services of a kind with their running containers (services without one are
    /// included with none, so checks can report them).
    fn of_kind(&self, kind: ServiceKind) -> impl Iterator<Item = &ServiceContainers<'_>> {
        self.services
            .iter()
            .filter(move |entry| entry.service.kind == kind)
    }

    /// Every running container, with its service.
    fn running(&self) -> impl Iterator<Item = (&Service, &ContainerInfo)> {
        self.services.iter().flat_map(|entry| {
            entry
                .containers
                .iter()
                .flatten()
                .filter(|container| container.state.running)
                .map(move |container| (entry.service, container))
        })
    }

    /// The time limit for one command inside a check, leaving the check time to report
    /// the command's own timeout.
    fn command_limit(&self) -> Duration {
        self.environment.diagnose.timeout.mul_f32(0.8)
    }

    /// Runs a command in a container under the check's command limit.
    async fn exec(
        &self,
        container: &ContainerInfo,
        cmd: &[&str],
    ) -> Result<ExecOutput, crate::docker::DockerError> {
        self.host
            .exec(
                &container.id,
                Exec {
                    cmd: cmd.iter().map(|word| word.to_string()).collect(),
                    timeout: self.command_limit(),
                    ..Exec::default()
                },
            )
            .await
    }
}

impl ServiceContainers<'_> {
    /// The first running container, or a line saying why there is none.
    fn running_container(&self) -> Result<&ContainerInfo, String> {
        let name = &self.service.name;
        let containers = self
            .containers
            .as_ref()
            .map_err(|error| format!("{name}: {error}"))?;
        if let Some(running) = containers.iter().find(|container| container.state.running) {
            return Ok(running);
        }
        Err(match containers.first() {
            None => format!("{name}: no container"),
            Some(container) => format!("{name}: not running ({})", describe_state(container)),
        })
    }
}

/// `exited (code 3)`, `restarting (code 1)`, `created`.
fn describe_state(container: &ContainerInfo) -> String {
    let state = &container.state;
    match state.exit_code {
        Some(code) if !state.running && state.status != "created" => {
            format!("{}, exit code {code}", state.status)
        }
        _ => state.status.clone(),
    }
}

/// The first non-empty line of a command's error output (else its output), secrets
/// redacted, for a one-line reason.
fn first_line(output: &ExecOutput) -> String {
    let stderr = output.stderr_text();
    let stdout = output.stdout_text();
    let line = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("no output");
    crate::secret::redact(line)
}

/// `5 s`, `1.5 s`.
fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if (secs - secs.round()).abs() < 0.05 {
        format!("{} s", secs.round())
    } else {
        format!("{secs:.1} s")
    }
}

/// A size as people read it: `512 MiB`, `1.4 GiB`.
pub fn format_bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_seconds_read_naturally() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1536, "1.5 KiB"),
            (512 * 1024 * 1024, "512 MiB"),
            (3 * 1024 * 1024 * 1024 / 2, "1.5 GiB"),
        ];
        for (count, expected) in cases {
            assert_eq!(format_bytes(count), expected);
        }
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn every_symptom_of_the_command_file_has_checks() {
        for name in [
            "start",
            "db",
            "redis",
            "memory",
            "disk",
            "ssl",
            "502",
            "migrations",
            "network",
        ] {
            let symptom = Symptom::from_name(name).expect("a symptom the command file lists");
            assert!(!symptom.checks().is_empty(), "{name}");
        }
        assert_eq!(Symptom::from_name("dns"), None);
    }
}
