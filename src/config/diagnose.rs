//! `[environments.NAME.diagnose]` → `DiagnoseSettings`: check timeouts,
//! memory, disk and certificate thresholds, the public TLS endpoints, the
//! proxy's upstreams, the migration status command and the window in which
//! a deploy is suspected of causing an incident. Every key has a default, so
//! an environment without the table is diagnosed with sensible thresholds.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::{RawDiagnose, RawMigrations, RawTlsEndpoint};
use super::{Service, ServiceKind};
use crate::names::ServiceName;
use crate::problem::{KeyPath, Problems, Source};

/// How an environment is diagnosed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnoseSettings {
    /// Time each check may take before it is reported as timed out.
    pub timeout: Duration,
    /// Memory thresholds, percent of each container's limit.
    pub memory: Thresholds,
    /// Disk thresholds, percent of the Docker host's disk in use.
    pub disk: Thresholds,
    /// A certificate expiring within this many days warns.
    pub tls_warn_days: u32,
    /// A certificate expiring within this many days fails.
    pub tls_fail_days: u32,
    /// Public TLS endpoints whose certificates are checked.
    pub tls: Vec<TlsEndpoint>,
    /// Services the proxy forwards to; `None` means every app service with
    /// health paths.
    pub proxy_upstreams: Option<Vec<ServiceName>>,
    /// The migration status command, when the environment declares one.
    pub migrations: Option<MigrationStatus>,
    /// An incident starting this soon after a deploy or rollback points at it.
    pub recent_deploy_window: Duration,
}

/// Warn and fail levels, in percent. Validation guarantees `warn < fail <= 100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// At or above this, the check warns.
    pub warn_percent: u8,
    /// At or above this, the check fails.
    pub fail_percent: u8,
}

/// A public TLS endpoint: where to connect and which name to expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsEndpoint {
    /// `host:port` to connect to.
    pub connect: String,
    /// The host name the certificate must be valid for (also sent as SNI).
    pub name: String,
}

/// The runbook's `docker-compose run --rm backend npm run db:status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Whose image, environment and networks the one-off container takes.
    pub service: ServiceName,
    /// Argument vector.
    pub command: Vec<String>,
    /// Time it may take.
    pub timeout: Duration,
}

impl Default for DiagnoseSettings {
    fn default() -> DiagnoseSettings {
        DiagnoseSettings {
            timeout: Duration::from_secs(5),
            memory: Thresholds {
                warn_percent: 80,
                fail_percent: 95,
            },
            disk: Thresholds {
                warn_percent: 80,
                fail_percent: 90,
            },
            tls_warn_days: 30,
            tls_fail_days: 7,
            tls: Vec::new(),
            proxy_upstreams: None,
            migrations: None,
            recent_deploy_window: Duration::from_secs(30 * 60),
        }
    }
}

/// Validates an environment's `diagnose` table against its services.
pub(super) fn check_diagnose(
    source: &Source,
    env_key: &KeyPath,
    raw: Option<&RawDiagnose>,
    services: &BTreeMap<ServiceName, Service>,
    problems: &mut Problems,
) -> DiagnoseSettings {
    let defaults = DiagnoseSettings::default();
    let Some(raw) = raw else {
        return defaults;
    };
    let key = env_key.key("diagnose");
    let mut duration_at = |name: &str, text: Option<&str>, default: Duration| {
        super::check_duration(source, &key.key(name), text, default, problems).unwrap_or(default)
    };
    let timeout = duration_at("timeout", raw.timeout.as_deref(), defaults.timeout);
    let recent_deploy_window = duration_at(
        "recent_deploy_window",
        raw.recent_deploy_window.as_deref(),
        defaults.recent_deploy_window,
    );
    let memory = check_thresholds(
        source,
        &key,
        ("memory_warn_percent", raw.memory_warn_percent),
        ("memory_fail_percent", raw.memory_fail_percent),
        defaults.memory,
        problems,
    );
    let disk = check_thresholds(
        source,
        &key,
        ("disk_warn_percent", raw.disk_warn_percent),
        ("disk_fail_percent", raw.disk_fail_percent),
        defaults.disk,
        problems,
    );
    let tls_warn_days = raw.tls_warn_days.unwrap_or(defaults.tls_warn_days);
    let tls_fail_days = raw.tls_fail_days.unwrap_or(defaults.tls_fail_days);
    if tls_fail_days > tls_warn_days {
        problems.0.push(source.problem(
            &key.key("tls_fail_days"),
            format!(
                "tls_fail_days ({tls_fail_days}) must not be more than tls_warn_days ({tls_warn_days})"
            ),
        ));
    }
    let tls = raw
        .tls
        .iter()
        .enumerate()
        .filter_map(|(endpoint_idx, endpoint)| {
            check_tls_endpoint(
                source,
                &key.key("tls").index(endpoint_idx),
                endpoint,
                problems,
            )
        })
        .collect();
    let proxy_upstreams = raw.proxy_upstreams.as_ref().map(|upstreams| {
        check_upstreams(
            source,
            &key.key("proxy_upstreams"),
            upstreams,
            services,
            problems,
        )
    });
    let migrations = raw.migrations.as_ref().and_then(|migrations| {
        check_migrations(
            source,
            &key.key("migrations"),
            migrations,
            services,
            problems,
        )
    });
    DiagnoseSettings {
        timeout,
        memory,
        disk,
        tls_warn_days,
        tls_fail_days,
        tls,
        proxy_upstreams,
        migrations,
        recent_deploy_window,
    }
}

fn check_thresholds(
    source: &Source,
    key: &KeyPath,
    (warn_key, warn): (&str, Option<u8>),
    (fail_key, fail): (&str, Option<u8>),
    defaults: Thresholds,
    problems: &mut Problems,
) -> Thresholds {
    let warn_percent = warn.unwrap_or(defaults.warn_percent);
    let fail_percent = fail.unwrap_or(defaults.fail_percent);
    let mut valid = true;
    for (name, value) in [(warn_key, warn_percent), (fail_key, fail_percent)] {
        if value == 0 || value > 100 {
            problems.0.push(source.problem(
                &key.key(name),
                format!("{value} is not a percentage from 1 to 100"),
            ));
            valid = false;
        }
    }
    if valid && warn_percent >= fail_percent {
        problems.0.push(source.problem(
            &key.key(warn_key),
            format!("{warn_key} ({warn_percent}) must be below {fail_key} ({fail_percent})"),
        ));
    }
    Thresholds {
        warn_percent,
        fail_percent,
    }
}

fn check_tls_endpoint(
    source: &Source,
    key: &KeyPath,
    raw: &RawTlsEndpoint,
    problems: &mut Problems,
) -> Option<TlsEndpoint> {
    let (connect, name) = match raw {
        RawTlsEndpoint::Address(address) => {
            let host = address.rsplit_once(':').map(|(host, _)| host);
            (address.clone(), host.unwrap_or_default().to_string())
        }
        RawTlsEndpoint::Split { connect, name } => (connect.clone(), name.clone()),
    };
    let port_ok = connect
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        problems.0.push(source.problem(
            key,
            format!("\"{connect}\" is not a host and port such as \"api.example.com:443\""),
        ));
        return None;
    }
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || ".-".contains(character));
    if !name_ok {
        problems.0.push(source.problem(
            key,
            format!("\"{name}\" is not a host name such as \"api.example.com\""),
        ));
        return None;
    }
    Some(TlsEndpoint { connect, name })
}

fn check_upstreams(
    source: &Source,
    key: &KeyPath,
    upstreams: &[String],
    services: &BTreeMap<ServiceName, Service>,
    problems: &mut Problems,
) -> Vec<ServiceName> {
    let mut checked = Vec::new();
    for (upstream_idx, upstream) in upstreams.iter().enumerate() {
        let path = key.index(upstream_idx);
        match super::known_service(source, &path, upstream, services, problems) {
            Some(service) if service.kind == ServiceKind::Nginx => {
                problems.0.push(source.problem(
                    &path,
                    format!("\"{upstream}\" is the proxy itself, not one of its upstreams"),
                ));
            }
            Some(service) => checked.push(service.name.clone()),
            None => {}
        }
    }
    checked
}

fn check_migrations(
    source: &Source,
    key: &KeyPath,
    raw: &RawMigrations,
    services: &BTreeMap<ServiceName, Service>,
    problems: &mut Problems,
) -> Option<MigrationStatus> {
    let before = problems.0.len();
    let service = super::known_service(
        source,
        &key.key("service"),
        &raw.service,
        services,
        problems,
    )
    .map(|service| service.name.clone());
    if raw.command.is_empty() {
        problems
            .0
            .push(source.problem(&key.key("command"), "command must not be empty"));
    }
    let timeout = super::check_duration(
        source,
        &key.key("timeout"),
        raw.timeout.as_deref(),
        Duration::from_secs(30),
        problems,
    )
    .unwrap_or(Duration::from_secs(30));
    if problems.0.len() > before {
        return None;
    }
    Some(MigrationStatus {
        service: service?,
        command: raw.command.clone(),
        timeout,
    })
}
