//! Runbook "Database Connection Issues": `psql -c "SELECT 1"` through each PostgreSQL
//! container, as `docker-compose exec postgres psql -U tasktracker -d tasktracker` does,
//! with psql's own words when it fails ("password authentication failed", refused,
//! timeout).

use std::time::Instant;

use futures_util::future::join_all;

use crate::config::ServiceKind;
use crate::docker::{DockerError, Exec};

use super::{Check, Finding, ServiceContainers, Subject, first_line, seconds};

/// One database's verdict: ok or not, the line for the summary, the fix.
struct Outcome {
    ok: bool,
    line: String,
    fix: Option<String>,
}

/// `SELECT 1` in every PostgreSQL service.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let databases: Vec<&ServiceContainers<'_>> = subject.of_kind(ServiceKind::Postgres).collect();
    if databases.is_empty() {
        return Finding::ok(Check::Database, "no PostgreSQL service in this environment");
    }
    let outcomes = join_all(databases.iter().map(|entry| select_one(subject, entry))).await;
    let evidence: Vec<String> = outcomes
        .iter()
        .map(|outcome| outcome.line.clone())
        .collect();
    let failing: Vec<&Outcome> = outcomes.iter().filter(|outcome| !outcome.ok).collect();
    let finding = match failing.first() {
        None => Finding::ok(Check::Database, evidence.join("; ")),
        Some(first) => {
            let lines: Vec<&str> = failing
                .iter()
                .map(|outcome| outcome.line.as_str())
                .collect();
            Finding::fail(Check::Database, lines.join("; ")).with_fix(first.fix.clone())
        }
    };
    finding.with_evidence(evidence)
}

async fn select_one(subject: &Subject<'_>, entry: &ServiceContainers<'_>) -> Outcome {
    let service = entry.service;
    let restart = Some(subject.restart_command(service));
    let Some(database) = &service.database else {
        return Outcome {
            ok: true,
            line: format!("{}: no database configured", service.name),
            fix: None,
        };
    };
    let container = match entry.running_container() {
        Ok(container) => container,
        Err(line) => {
            return Outcome {
                ok: false,
                line,
                fix: restart,
            };
        }
    };
    let limit = subject.command_limit();
    let exec = Exec {
        cmd: [
            "psql",
            "-U",
            &database.user,
            "-d",
            &database.name,
            "-tAc",
            "SELECT 1",
        ]
        .iter()
        .map(|word| word.to_string())
        .collect(),
        env: vec![(
            "PGCONNECT_TIMEOUT".to_string(),
            limit.as_secs().max(1).to_string(),
        )],
        stdin: None,
        timeout: limit,
    };
    let started = Instant::now();
    let output = subject.host.exec(&container.id, exec).await;
    let elapsed_ms = started.elapsed().as_millis();
    match output {
        Ok(output) if output.exit_code == 0 && output.stdout_text().trim() == "1" => Outcome {
            ok: true,
            line: format!(
                "{}: SELECT 1 as {} on {} ok in {elapsed_ms} ms",
                service.name, database.user, database.name
            ),
            fix: None,
        },
        Ok(output) => {
            let reason = first_line(&output);
            let fix = if reason.contains("password authentication failed") {
                Some(format!("/rotate db-password {}", subject.env()))
            } else {
                restart
            };
            Outcome {
                ok: false,
                line: format!("{}: SELECT 1 failed: {reason}", service.name),
                fix,
            }
        }
        Err(DockerError::Timeout { after, .. }) => Outcome {
            ok: false,
            line: format!(
                "{}: SELECT 1 timed out after {}",
                service.name,
                seconds(after)
            ),
            fix: restart,
        },
        Err(error) => Outcome {
            ok: false,
            line: format!("{}: cannot run psql: {}", service.name, error.chain()),
            fix: restart,
        },
    }
}
