//! The runbook's Database Rollback: a backup first (`pg_dump` through exec
//! in the database container, stored in the environment's backup folder on
//! the Docker host), the restore from a named backup (restart the database
//! to drop its connections, load the dump, which drops and recreates what
//! it holds), and the `SELECT 1` check.

use std::time::Duration;

use crate::app::App;
use crate::config::{Database, Environment, Service};
use crate::docker::{ContainerInfo, DockerHost, Exec};
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;

use super::StepOutcome;
use super::deploy::{containers_of, environment, service};

const DUMP_TIMEOUT: Duration = Duration::from_secs(600);
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

struct Target<'a> {
    environment: &'a Environment,
    service: &'a Service,
    database: &'a Database,
    host: DockerHost,
    container: ContainerInfo,
}

async fn target<'a>(
    app: &App,
    input: &OperationInput<'a>,
    service_name: &str,
) -> Result<Target<'a>, ExecError> {
    let environment = environment(input)?;
    let service = service(environment, service_name)?;
    let database = service
        .database
        .as_ref()
        .ok_or_else(|| ExecError::Failed(format!("{service_name} is not a PostgreSQL service")))?;
    let host = app.hosts.get(environment.name.as_str()).await?;
    let containers = containers_of(&host, environment, service).await?;
    let container = containers
        .into_iter()
        .find(|container| container.state.running)
        .ok_or_else(|| {
            ExecError::Failed(format!(
                "{service_name} is not running in {}",
                environment.name
            ))
        })?;
    Ok(Target {
        environment,
        service,
        database,
        host,
        container,
    })
}

/// Runs a PostgreSQL client program in the database container as the
/// configured user, against the configured database.
async fn run_client(
    target: &Target<'_>,
    program: &str,
    extra: &[&str],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<crate::docker::ExecOutput, ExecError> {
    let mut cmd = vec![
        program.to_string(),
        "-U".to_string(),
        target.database.user.clone(),
        "-d".to_string(),
        target.database.name.clone(),
    ];
    cmd.extend(extra.iter().map(|argument| argument.to_string()));
    target
        .host
        .exec(
            &target.container.id,
            Exec {
                cmd,
                env: Vec::new(),
                stdin,
                timeout,
            },
        )
        .await
        .map_err(|error| ExecError::Failed(error.to_string()))
}

fn backup_dir(environment: &Environment) -> Result<&str, ExecError> {
    environment.backup_dir.as_deref().ok_or_else(|| {
        ExecError::Failed(format!(
            "environment \"{}\" has no backup_dir in config, so no backup can be taken or restored",
            environment.name
        ))
    })
}

/// Plan lines for a backup.
pub fn describe_backup(input: &OperationInput<'_>, service_name: &str, plan: &mut Plan) {
    let folder = input
        .env
        .and_then(|environment| environment.backup_dir.clone())
        .unwrap_or_else(|| "(no backup_dir configured)".to_string());
    plan.steps.push(format!(
        "back up {service_name} with pg_dump into {folder} on the Docker host"
    ));
    plan.checks
        .push("the backup succeeds, or nothing else runs".to_string());
}

/// Backs the database up.
///
/// # Errors
/// No backup folder, the database not running, or `pg_dump` failing.
pub async fn backup(
    app: &App,
    input: &OperationInput<'_>,
    op_id: i64,
    service_name: &str,
) -> Result<StepOutcome, ExecError> {
    let target = target(app, input, service_name).await?;
    let folder = backup_dir(target.environment)?;
    let dump = run_client(
        &target,
        "pg_dump",
        &["--clean", "--if-exists", "--no-owner"],
        None,
        DUMP_TIMEOUT,
    )
    .await?;
    if dump.exit_code != 0 {
        return Err(ExecError::Failed(format!(
            "pg_dump exited {}: {}",
            dump.exit_code,
            crate::secret::redact(dump.stderr_text().trim())
        )));
    }
    let name = format!(
        "{}-{}-op{op_id}.sql",
        target.service.name,
        app.now().format("%Y%m%dT%H%M%SZ")
    );
    target
        .host
        .write_host_file(
            &target.container.image_reference,
            folder,
            &name,
            &dump.stdout,
        )
        .await
        .map_err(|error| ExecError::Failed(format!("storing the backup: {error}")))?;
    Ok(StepOutcome::summary(format!(
        "{name} ({} KB) in {folder}; restore it with /restore-db {} {name}",
        dump.stdout.len().div_ceil(1024),
        target.environment.name
    )))
}

/// Plan lines for a restore; checks the backup exists.
///
/// # Errors
/// No such backup, or an unreachable host.
pub async fn describe_restore(
    app: &App,
    input: &OperationInput<'_>,
    service_name: &str,
    plan: &mut Plan,
) -> Result<(), ExecError> {
    let target = target(app, input, service_name).await?;
    let folder = backup_dir(target.environment)?;
    let backup = input.action.args.text("backup").unwrap_or_default();
    let known = target
        .host
        .list_host_files(&target.container.image_reference, folder)
        .await
        .map_err(|error| ExecError::Failed(format!("listing backups: {error}")))?;
    if !known.iter().any(|name| name == backup) {
        let newest: Vec<&str> = known.iter().rev().take(5).map(String::as_str).collect();
        return Err(ExecError::Failed(format!(
            "no backup named \"{backup}\" in {folder} on {}; newest: {}",
            target.environment.host.name,
            if newest.is_empty() {
                "none".to_string()
            } else {
                newest.join(", ")
            }
        )));
    }
    plan.steps
        .push(format!("restart {service_name} to drop its connections"));
    plan.steps.push(format!(
        "load {backup} into {} (drops and recreates its tables)",
        target.database.name
    ));
    plan.checks
        .push(format!("{service_name} answers SELECT 1 afterwards"));
    Ok(())
}

/// Restores the named backup.
///
/// # Errors
/// No such backup, the database not coming back, or `psql` failing.
pub async fn restore(
    app: &App,
    input: &OperationInput<'_>,
    service_name: &str,
) -> Result<StepOutcome, ExecError> {
    let target = target(app, input, service_name).await?;
    let folder = backup_dir(target.environment)?;
    let backup = input.action.args.text("backup").unwrap_or_default();
    let dump = target
        .host
        .read_host_file(&target.container.image_reference, folder, backup)
        .await
        .map_err(|error| ExecError::Failed(format!("reading backup \"{backup}\": {error}")))?;
    target
        .host
        .stop(&target.container.id)
        .await
        .map_err(|error| ExecError::Failed(format!("stopping {service_name}: {error}")))?;
    target
        .host
        .start(&target.container.id)
        .await
        .map_err(|error| ExecError::Failed(format!("starting {service_name}: {error}")))?;
    let outcome = target
        .host
        .wait_healthy(&target.container.id, Duration::from_secs(120))
        .await
        .map_err(|error| ExecError::Failed(error.to_string()))?;
    if !outcome.is_ready() {
        return Err(ExecError::Failed(format!(
            "{service_name} did not come back after the restart: {outcome:?}"
        )));
    }
    let loaded = run_client(
        &target,
        "psql",
        &["-v", "ON_ERROR_STOP=1", "-q"],
        Some(dump.clone()),
        DUMP_TIMEOUT,
    )
    .await?;
    if loaded.exit_code != 0 {
        return Err(ExecError::Failed(format!(
            "loading {backup} failed (psql exited {}): {}",
            loaded.exit_code,
            crate::secret::redact(loaded.stderr_text().trim())
        )));
    }
    Ok(StepOutcome::summary(format!(
        "restored {backup} ({} KB) into {}",
        dump.len().div_ceil(1024),
        target.database.name
    )))
}

/// `SELECT 1` through the database container.
///
/// # Errors
/// The database not answering, with psql's error text.
pub async fn check(
    app: &App,
    input: &OperationInput<'_>,
    service_name: &str,
) -> Result<StepOutcome, ExecError> {
    let target = target(app, input, service_name).await?;
    let started = std::time::Instant::now();
    let answer = run_client(&target, "psql", &["-tAc", "SELECT 1"], None, CHECK_TIMEOUT).await?;
    if answer.exit_code != 0 || answer.stdout_text().trim() != "1" {
        return Err(ExecError::Failed(format!(
            "SELECT 1 failed: {}",
            crate::secret::redact(answer.stderr_text().trim())
        )));
    }
    Ok(StepOutcome::summary(format!(
        "SELECT 1 answered in {}",
        crate::duration::format_elapsed(started.elapsed())
    )))
}
