//! `/logs ENV SERVICE [--tail N] [--since 10m] [--grep TEXT]`: the tail of a
//! service's logs with secrets redacted, truncated with a note when long.
//! `--grep` filters the redacted text, so neither the lines shown nor their
//! count reveal anything about a redacted value.

use crate::app::App;
use crate::docker::LogQuery;
use crate::exec::{ExecError, OperationInput};

use super::StepOutcome;
use super::deploy::{containers_of, service_arg};

/// Most lines shown in chat.
const MAX_LINES: usize = 60;
/// Most characters shown in chat.
const MAX_CHARS: usize = 3500;

/// Reads, filters, redacts and truncates.
///
/// # Errors
/// An unreachable host or a service without containers.
pub async fn run(app: &App, input: &OperationInput<'_>) -> Result<StepOutcome, ExecError> {
    let (environment, service) = service_arg(input)?;
    let service_name = &service.name;
    let host = app.hosts.get(environment.name.as_str()).await?;
    let containers = containers_of(&host, environment, service).await?;
    let tail = input
        .action
        .args
        .integer("tail")
        .and_then(|tail| usize::try_from(tail).ok());
    let since = input
        .action
        .args
        .duration("since")
        .and_then(|duration| chrono::Duration::from_std(duration).ok())
        .map(|duration| app.now() - duration);
    let grep = input.action.args.text("grep");
    let mut lines = Vec::new();
    for container in &containers {
        let logged = host
            .logs(&container.id, LogQuery { tail, since })
            .await
            .map_err(|error| ExecError::Failed(error.to_string()))?;
        // Redact first, then filter: a filter on the raw text would say
        // whether a secret contains what was typed, one guess at a time.
        let redacted = crate::secret::redact_lines(logged.iter().map(|line| line.text.as_str()));
        for text in redacted {
            if grep.is_some_and(|needle| !text.contains(needle)) {
                continue;
            }
            let prefix = if containers.len() > 1 {
                format!("{} | ", container.name)
            } else {
                String::new()
            };
            lines.push(format!("{prefix}{text}"));
        }
    }
    let total = lines.len();
    let shown = truncate(lines);
    let mut summary = format!("{} line(s) of {}", total, service_name);
    if shown.len() < total {
        summary.push_str(&format!(
            "; showing the last {} — {} more not shown, narrow with --tail, --since or --grep",
            shown.len(),
            total - shown.len()
        ));
    }
    Ok(StepOutcome {
        summary,
        output: shown,
    })
}

/// Keeps the newest lines within the line and character limits.
fn truncate(lines: Vec<String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut chars = 0;
    for line in lines.into_iter().rev() {
        let line: String = line.chars().take(300).collect();
        chars += line.len() + 1;
        if kept.len() == MAX_LINES || chars > MAX_CHARS {
            break;
        }
        kept.push(line);
    }
    kept.reverse();
    kept
}
