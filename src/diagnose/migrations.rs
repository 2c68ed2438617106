//! Runbook "Migration Failures": the configured status command (`npm run db:status`) in a
//! one-off container of the service's current image, removed afterwards, as
//! `docker-compose run --rm backend npm run db:status` does.

use crate::docker::{DockerError, RunOnce};

use super::{Check, Finding, Status, Subject, seconds};

/// Runs the migration status command and reads its verdict.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let Some(migrations) = &subject.environment.diagnose.migrations else {
        return Finding::ok(
            Check::Migrations,
            "no migration status command configured (diagnose.migrations)",
        );
    };
    let Some(entry) = subject
        .services
        .iter()
        .find(|entry| entry.service.name == migrations.service)
    else {
        return Finding::fail(
            Check::Migrations,
            format!("service {} is not in this environment", migrations.service),
        );
    };
    let containers = match &entry.containers {
        Ok(containers) => containers,
        Err(error) => {
            return Finding::fail(
                Check::Migrations,
                format!("{}: {error}", migrations.service),
            );
        }
    };
    let Some(like) = containers
        .iter()
        .find(|container| container.state.running)
        .or(containers.first())
    else {
        return Finding::fail(
            Check::Migrations,
            format!(
                "{}: no container to take the image from",
                migrations.service
            ),
        );
    };
    let command = migrations.command.join(" ");
    let request = RunOnce {
        image: like.image_id.clone(),
        like,
        cmd: migrations.command.clone(),
        timeout: migrations.timeout,
    };
    let output = match subject.host.run_once(request).await {
        Ok(output) => output,
        Err(DockerError::Timeout { after, .. }) => {
            return Finding::fail(
                Check::Migrations,
                format!("{command} timed out after {}", seconds(after)),
            );
        }
        Err(error) => {
            return Finding::fail(
                Check::Migrations,
                format!("cannot run {command}: {}", error.chain()),
            );
        }
    };
    let evidence: Vec<String> = output
        .last_lines
        .iter()
        .map(|line| crate::secret::redact(line))
        .collect();
    let finding = if output.exit_code != 0 {
        let reason = evidence
            .iter()
            .rev()
            .find(|line| !line.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| "no output".to_string());
        let fix = evidence
            .iter()
            .any(|line| line.to_ascii_lowercase().contains("migration failed"))
            .then(|| format!("/rollback-db {}", subject.env()));
        Finding::fail(
            Check::Migrations,
            format!("{command} exited with code {}: {reason}", output.exit_code),
        )
        .with_fix(fix)
    } else {
        let pending = count_starting(&evidence, "pending");
        let unknown = count_starting(&evidence, "unknown");
        match (pending, unknown) {
            (0, 0) => Finding::ok(
                Check::Migrations,
                format!(
                    "{command}: {} applied, none pending",
                    count_starting(&evidence, "applied")
                ),
            ),
            _ => Finding::new(
                Check::Migrations,
                Status::Warn,
                format!("{command}: {pending} pending, {unknown} applied by another version"),
            ),
        }
    };
    finding.with_evidence(evidence)
}

/// Lines whose first word is `word`, as knex-style status commands print them.
fn count_starting(lines: &[String], word: &str) -> usize {
    lines
        .iter()
        .filter(|line| line.split_whitespace().next() == Some(word))
        .count()
}
