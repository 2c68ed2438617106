//! Runbook "Redis Connection Issues": `redis-cli ping` in each Redis container.

use std::time::Instant;

use futures_util::future::join_all;

use crate::config::ServiceKind;
use crate::docker::DockerError;

use super::{Check, Finding, ServiceContainers, Subject, first_line, seconds};

/// `PING` in every Redis service.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let caches: Vec<&ServiceContainers<'_>> = subject.of_kind(ServiceKind::Redis).collect();
    if caches.is_empty() {
        return Finding::ok(Check::Redis, "no Redis service in this environment");
    }
    let outcomes = join_all(caches.iter().map(|entry| ping(subject, entry))).await;
    let evidence: Vec<String> = outcomes.iter().map(|(_, line, _)| line.clone()).collect();
    let failing: Vec<&(bool, String, String)> = outcomes.iter().filter(|(ok, _, _)| !ok).collect();
    let finding = match failing.first() {
        None => Finding::ok(Check::Redis, evidence.join("; ")),
        Some((_, _, fix)) => {
            let lines: Vec<&str> = failing.iter().map(|(_, line, _)| line.as_str()).collect();
            Finding::fail(Check::Redis, lines.join("; ")).with_fix(Some(fix.clone()))
        }
    };
    finding.with_evidence(evidence)
}

/// Whether it answered, the line for the report, and the restart command.
async fn ping(subject: &Subject<'_>, entry: &ServiceContainers<'_>) -> (bool, String, String) {
    let service = entry.service;
    let restart = subject.restart_command(service);
    let container = match entry.running_container() {
        Ok(container) => container,
        Err(line) => return (false, line, restart),
    };
    let started = Instant::now();
    match subject.exec(container, &["redis-cli", "ping"]).await {
        Ok(output) if output.exit_code == 0 && output.stdout_text().trim() == "PONG" => (
            true,
            format!(
                "{}: PONG in {} ms",
                service.name,
                started.elapsed().as_millis()
            ),
            restart,
        ),
        Ok(output) => (
            false,
            format!("{}: PING failed: {}", service.name, first_line(&output)),
            restart,
        ),
        Err(DockerError::Timeout { after, .. }) => (
            false,
            format!("{}: PING timed out after {}", service.name, seconds(after)),
            restart,
        ),
        Err(error) => (
            false,
            format!("{}: cannot run redis-cli: {}", service.name, error.chain()),
            restart,
        ),
    }
}
