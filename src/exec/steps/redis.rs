//! `/redis flush ENV`: the runbook's "Clear Redis cache if corrupted"
//! (`redis-cli FLUSHALL` in the Redis container). The plan says how many keys it would
//! clear; the command file's warning and its policy make sure someone else agrees first.

use crate::docker::ServiceSelector;
use std::time::Duration;

use crate::app::App;
use crate::docker::{ContainerInfo, DockerHost, Exec};
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;

use super::StepOutcome;

/// Time `redis-cli` may take.
const REDIS_CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Plan line for a flush: the container and how many keys it holds now.
///
/// # Errors
/// When the Docker host cannot be reached or Redis does not run.
pub async fn describe_flush(
    app: &App,
    input: &OperationInput<'_>,
    service: &str,
    plan: &mut Plan,
) -> Result<(), ExecError> {
    let (host, container) = redis_container(app, input, service).await?;
    let keys = count_keys(&host, &container).await?;
    plan.steps.push(format!(
        "FLUSHALL in {} ({}): clears {keys} key(s) in every database",
        service, container.name
    ));
    Ok(())
}

/// Runs `FLUSHALL`.
///
/// # Errors
/// When Redis does not run or does not answer `OK`.
pub async fn flush(
    app: &App,
    input: &OperationInput<'_>,
    service: &str,
) -> Result<StepOutcome, ExecError> {
    let (host, container) = redis_container(app, input, service).await?;
    let before = count_keys(&host, &container).await?;
    let output = redis_cli(&host, &container, &["FLUSHALL"]).await?;
    if output.trim() != "OK" {
        return Err(ExecError::Failed(format!(
            "FLUSHALL in {} answered \"{}\"",
            container.name,
            crate::secret::redact(output.trim())
        )));
    }
    let after = count_keys(&host, &container).await?;
    Ok(StepOutcome::summary(format!(
        "flushed {}: {before} key(s) before, {after} after",
        container.name
    )))
}

async fn redis_container(
    app: &App,
    input: &OperationInput<'_>,
    service: &str,
) -> Result<(DockerHost, ContainerInfo), ExecError> {
    let environment = super::deploy::environment(input)?;
    let service_spec = super::deploy::service(environment, service)?;
    let host = app.hosts.get(environment.name.as_str()).await?;
    let containers = host
        .find_containers(&ServiceSelector::from(&service_spec.selector))
        .await
        .map_err(|error| ExecError::Failed(error.chain()))?;
    let container = containers
        .into_iter()
        .find(|container| container.state.running)
        .ok_or_else(|| {
            ExecError::Failed(format!(
                "{service} has no running container in {}; /service start {} {service} first",
                environment.name, environment.name
            ))
        })?;
    Ok((host, container))
}

/// Keys in every database, from `INFO keyspace` (`db0:keys=12,expires=0,avg_ttl=0`).
async fn count_keys(host: &DockerHost, container: &ContainerInfo) -> Result<u64, ExecError> {
    let info = redis_cli(host, container, &["INFO", "keyspace"]).await?;
    Ok(parse_key_count(&info))
}

fn parse_key_count(info: &str) -> u64 {
    info.lines()
        .filter(|line| line.starts_with("db"))
        .filter_map(|line| {
            line.split_once(':')?
                .1
                .split(',')
                .find_map(|pair| pair.strip_prefix("keys="))?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn redis_cli(
    host: &DockerHost,
    container: &ContainerInfo,
    args: &[&str],
) -> Result<String, ExecError> {
    let mut cmd = vec!["redis-cli".to_string()];
    cmd.extend(args.iter().map(|arg| arg.to_string()));
    let exec = Exec {
        cmd,
        timeout: REDIS_CLI_TIMEOUT,
        ..Exec::default()
    };
    let output = host
        .exec(&container.id, exec)
        .await
        .map_err(|error| ExecError::Failed(error.chain()))?;
    if output.exit_code != 0 {
        let text = output.stderr_text();
        let reason = text
            .lines()
            .chain(output.stdout_text().lines())
            .find(|line| !line.trim().is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("exit code {}", output.exit_code));
        return Err(ExecError::Failed(format!(
            "redis-cli {} in {} failed: {}",
            args.join(" "),
            container.name,
            crate::secret::redact(&reason)
        )));
    }
    Ok(output.stdout_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_database_are_counted() {
        let info =
            "# Keyspace\r\ndb0:keys=12,expires=0,avg_ttl=0\r\ndb3:keys=5,expires=1,avg_ttl=10\r\n";
        assert_eq!(parse_key_count(info), 17);
        assert_eq!(parse_key_count("# Keyspace\r\n"), 0);
    }
}
