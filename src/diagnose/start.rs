//! Runbook "Service Won't Start": every service's containers with state, exit code,
//! restart count and OOM kills, and the last error lines of those that are down.

use futures_util::future::join_all;

use crate::config::Service;
use crate::docker::{ContainerInfo, HealthStatus, LogQuery};

use super::{Check, Finding, Status, Subject, describe_state};

/// How many log lines are read from a failing container, and how many are quoted.
const LOG_LINES_READ: usize = 50;
const LOG_LINES_QUOTED: usize = 5;

/// What is wrong with one container, if anything.
enum Verdict {
    Fine,
    Suspect(String),
    Down(String),
}

/// Checks that every service has a running container that is not crash-looping.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let mut evidence = Vec::new();
    let mut down: Vec<(&Service, Option<&ContainerInfo>, String)> = Vec::new();
    let mut suspect: Vec<(&Service, String)> = Vec::new();
    let mut n_running = 0;
    for entry in &subject.services {
        let service = entry.service;
        let containers = match &entry.containers {
            Ok(containers) if containers.is_empty() => {
                evidence.push(format!("{}: no container", service.name));
                down.push((service, None, "no container".to_string()));
                continue;
            }
            Ok(containers) => containers,
            Err(error) => {
                evidence.push(format!("{}: {error}", service.name));
                down.push((service, None, error.clone()));
                continue;
            }
        };
        for container in containers {
            evidence.push(format!("{}: {}", container.name, describe(container)));
            match verdict(container) {
                Verdict::Fine => n_running += 1,
                Verdict::Suspect(reason) => {
                    n_running += 1;
                    suspect.push((service, format!("{}: {reason}", container.name)));
                }
                Verdict::Down(reason) => down.push((
                    service,
                    Some(container),
                    format!("{}: {reason}", container.name),
                )),
            }
        }
    }
    let quoted = join_all(
        down.iter()
            .filter_map(|(_, container, _)| *container)
            .map(|container| error_lines(subject, container)),
    )
    .await;
    evidence.extend(quoted.into_iter().flatten());
    let finding = match (down.first(), suspect.first()) {
        (Some((service, _, _)), _) => {
            let reasons: Vec<&str> = down.iter().map(|(_, _, reason)| reason.as_str()).collect();
            Finding::fail(Check::Start, reasons.join("; "))
                .with_fix(Some(subject.restart_command(service)))
        }
        (None, Some((service, _))) => {
            let reasons: Vec<&str> = suspect.iter().map(|(_, reason)| reason.as_str()).collect();
            Finding::new(Check::Start, Status::Warn, reasons.join("; "))
                .with_fix(Some(subject.restart_command(service)))
        }
        (None, None) => Finding::ok(
            Check::Start,
            format!(
                "{} services running ({n_running} containers)",
                subject.services.len()
            ),
        ),
    };
    finding.with_evidence(evidence)
}

fn verdict(container: &ContainerInfo) -> Verdict {
    let state = &container.state;
    if state.oom_killed {
        return Verdict::Down(format!("OOM-killed ({})", describe_state(container)));
    }
    if state.status == "restarting" {
        return Verdict::Down(format!(
            "crash-looping, restarted {} times, last exit code {}",
            state.restart_count,
            state.exit_code.unwrap_or_default()
        ));
    }
    if !state.running {
        return Verdict::Down(describe_state(container));
    }
    if container.health.status == HealthStatus::Unhealthy {
        return Verdict::Suspect(format!(
            "running but unhealthy ({} failed healthchecks)",
            container.health.failing_streak
        ));
    }
    if state.restart_count > 0 {
        return Verdict::Suspect(format!(
            "restarted {} times by Docker after exiting",
            state.restart_count
        ));
    }
    Verdict::Fine
}

/// `running, healthy, 0 restarts, up since 09:12 UTC`.
fn describe(container: &ContainerInfo) -> String {
    let state = &container.state;
    let mut parts = vec![describe_state(container)];
    // Docker keeps the last verdict of a stopped container's healthcheck; it says nothing.
    if state.running && container.health.status != HealthStatus::None {
        parts.push(container.health.status.to_string());
    }
    parts.push(format!("{} restarts", state.restart_count));
    if state.oom_killed {
        parts.push("OOM-killed".to_string());
    }
    match (state.running, state.started_at, state.finished_at) {
        (true, Some(started), _) => parts.push(format!("up since {}", started.format("%H:%M UTC"))),
        (false, _, Some(finished)) => {
            parts.push(format!("stopped at {}", finished.format("%H:%M UTC")))
        }
        _ => {}
    }
    parts.join(", ")
}

/// The last error-looking lines of a container's log (else its last lines), redacted.
async fn error_lines(subject: &Subject<'_>, container: &ContainerInfo) -> Vec<String> {
    let query = LogQuery {
        tail: Some(LOG_LINES_READ),
        since: None,
    };
    let lines = match subject.host.logs(&container.id, query).await {
        Ok(lines) => lines,
        Err(error) => return vec![format!("{}: cannot read logs: {error}", container.name)],
    };
    let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
    let errors: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|text| looks_like_an_error(text))
        .collect();
    let chosen = if errors.is_empty() { texts } else { errors };
    let skip = chosen.len().saturating_sub(LOG_LINES_QUOTED);
    chosen
        .into_iter()
        .skip(skip)
        .map(|text| format!("{} log: {}", container.name, crate::secret::redact(text)))
        .collect()
}

fn looks_like_an_error(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "error",
        "fatal",
        "panic",
        "exception",
        "cannot",
        "failed",
        "refused",
        "denied",
        "killed",
        "exited",
    ]
    .iter()
    .any(|word| lower.contains(word))
}
