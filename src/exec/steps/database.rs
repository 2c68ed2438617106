//! The runbook's Database Rollback: a backup first (`pg_dump` through exec
//! in the database container, stored in the environment's backup folder on
//! the Docker host), the restore from a named backup, and the `SELECT 1`
//! check.
//!
//! A restore never loads into the live database: the dump goes into a new
//! database (`load`), which then takes the live one's name in one
//! transaction (`swap`, the live one renamed aside), and the old data is
//! dropped only after that (`drop_old`). Each stage is journaled first, so a
//! crash leaves either the old data intact (the half-loaded copy is dropped)
//! or the restored data in place.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::config::{Database, Environment, Service};
use crate::docker::{ContainerInfo, DockerHost, Exec};
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;
use crate::store::StepIntent;

use super::deploy::{containers_of, environment, service};
use super::journal::{Journal, read_data};
use super::{Progress, StepOutcome};

/// The intent kind of a restore.
pub const RESTORE_KIND: &str = "restore_database";
const RESTORE_SUB_STEP: &str = "restore";
/// Attempts at the swap, which needs the live database free of sessions.
const SWAP_ATTEMPTS: usize = 10;

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
    target_in(app, environment(input)?, service_name).await
}

async fn target_in<'a>(
    app: &App,
    environment: &'a Environment,
    service_name: &str,
) -> Result<Target<'a>, ExecError> {
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
    plan.steps.push(format!(
        "load {backup} into a new database beside {}",
        target.database.name
    ));
    plan.steps.push(format!(
        "close the connections to {0} and swap the restored copy in under its name; the previous data is dropped after the swap",
        target.database.name
    ));
    plan.checks
        .push(format!("{service_name} answers SELECT 1 afterwards"));
    Ok(())
}

/// Restores the named backup, stage by stage.
///
/// # Errors
/// No such backup, or a stage failing (the live database is then as it was).
pub async fn restore(
    app: &App,
    input: &OperationInput<'_>,
    journal: Journal,
    service_name: &str,
) -> Result<StepOutcome, ExecError> {
    let backup = input.action.args.text("backup").unwrap_or_default();
    let mut stages =
        RestoreStages::begin(app, environment(input)?, journal, service_name, backup).await?;
    loop {
        if let Progress::Done(outcome) = stages.advance().await? {
            return Ok(outcome);
        }
    }
}

/// What the restore's intent records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RestoreRecord {
    service: String,
    database: String,
    /// The database the dump is loaded into.
    scratch: String,
    /// The name the live database gets during the swap.
    aside: String,
    backup: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestoreStage {
    Load,
    Swap,
    DropOld,
    Done,
}

impl RestoreStage {
    fn as_str(self) -> &'static str {
        match self {
            RestoreStage::Load => "load",
            RestoreStage::Swap => "swap",
            RestoreStage::DropOld => "drop_old",
            RestoreStage::Done => "done",
        }
    }
}

/// A restore, stage by stage: load into a copy, swap, drop the old data.
pub struct RestoreStages<'a> {
    target: Target<'a>,
    journal: Journal,
    record: RestoreRecord,
    dump: Vec<u8>,
    stage: RestoreStage,
}

impl<'a> RestoreStages<'a> {
    /// Reads the backup; changes nothing.
    ///
    /// # Errors
    /// No backup folder, no such backup, or the database not running.
    pub async fn begin(
        app: &App,
        environment: &'a Environment,
        journal: Journal,
        service_name: &str,
        backup: &str,
    ) -> Result<RestoreStages<'a>, ExecError> {
        let target = target_in(app, environment, service_name).await?;
        let folder = backup_dir(target.environment)?;
        check_database_name(&target.database.name)?;
        let dump = target
            .host
            .read_host_file(&target.container.image_reference, folder, backup)
            .await
            .map_err(|error| ExecError::Failed(format!("reading backup \"{backup}\": {error}")))?;
        let op_id = journal.op_id();
        let name = &target.database.name;
        let record = RestoreRecord {
            service: service_name.to_string(),
            database: name.clone(),
            scratch: derived_name(name, &format!("_restore_op{op_id}")),
            aside: derived_name(name, &format!("_before_op{op_id}")),
            backup: backup.to_string(),
        };
        Ok(RestoreStages {
            target,
            journal,
            record,
            dump,
            stage: RestoreStage::Load,
        })
    }

    /// Runs the next stage (journaled first).
    ///
    /// # Errors
    /// A failed stage; before the swap the half-loaded copy is dropped and
    /// the live database is untouched.
    pub async fn advance(&mut self) -> Result<Progress, ExecError> {
        let stage = self.stage;
        if stage != RestoreStage::Done {
            self.journal
                .write(
                    RESTORE_SUB_STEP,
                    RESTORE_KIND,
                    stage.as_str(),
                    &self.record,
                    None,
                )
                .await?;
        }
        let record = &self.record;
        match stage {
            RestoreStage::Load => {
                let prepared = maintenance_sql(
                    &self.target,
                    &format!(
                        "DROP DATABASE IF EXISTS \"{0}\" WITH (FORCE);\nCREATE DATABASE \"{0}\" TEMPLATE template0;\n",
                        record.scratch
                    ),
                )
                .await;
                let loaded = match prepared {
                    Ok(_) => self.load().await,
                    Err(error) => Err(error),
                };
                if let Err(error) = loaded {
                    let _ = maintenance_sql(&self.target, &drop_sql(&record.scratch)).await;
                    self.journal.clear(RESTORE_SUB_STEP).await;
                    return Err(ExecError::Failed(format!(
                        "{error}; {} was not changed",
                        record.database
                    )));
                }
                self.stage = RestoreStage::Swap;
                Ok(Progress::Stage(format!(
                    "{} loaded beside {}",
                    record.backup, record.database
                )))
            }
            RestoreStage::Swap => {
                if let Err(error) = self.swap().await {
                    let _ = maintenance_sql(&self.target, &drop_sql(&record.scratch)).await;
                    self.journal.clear(RESTORE_SUB_STEP).await;
                    return Err(ExecError::Failed(format!(
                        "{error}; {} was not changed",
                        record.database
                    )));
                }
                self.stage = RestoreStage::DropOld;
                Ok(Progress::Stage(format!(
                    "restored copy swapped in as {}",
                    record.database
                )))
            }
            RestoreStage::DropOld => {
                maintenance_sql(&self.target, &drop_sql(&record.aside)).await?;
                self.stage = RestoreStage::Done;
                Ok(Progress::Stage("previous data dropped".to_string()))
            }
            RestoreStage::Done => {
                self.journal.clear(RESTORE_SUB_STEP).await;
                Ok(Progress::Done(StepOutcome::summary(format!(
                    "restored {} ({} KB) into {}",
                    record.backup,
                    self.dump.len().div_ceil(1024),
                    record.database
                ))))
            }
        }
    }

    async fn load(&self) -> Result<(), ExecError> {
        let loaded = self
            .target
            .host
            .exec(
                &self.target.container.id,
                Exec {
                    cmd: vec![
                        "psql".to_string(),
                        "-U".to_string(),
                        self.target.database.user.clone(),
                        "-d".to_string(),
                        self.record.scratch.clone(),
                        "-v".to_string(),
                        "ON_ERROR_STOP=1".to_string(),
                        "-q".to_string(),
                    ],
                    env: Vec::new(),
                    stdin: Some(self.dump.clone()),
                    timeout: DUMP_TIMEOUT,
                },
            )
            .await
            .map_err(|error| ExecError::Failed(error.to_string()))?;
        if loaded.exit_code != 0 {
            return Err(ExecError::Failed(format!(
                "loading {} failed (psql exited {}): {}",
                self.record.backup,
                loaded.exit_code,
                crate::secret::redact(loaded.stderr_text().trim())
            )));
        }
        // The copy belongs to whoever owned the live database.
        maintenance_sql(
            &self.target,
            &format!(
                "DO $deckhand$ BEGIN EXECUTE format('ALTER DATABASE %I OWNER TO %I', '{}', (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{}')); END $deckhand$;\n",
                self.record.scratch, self.record.database
            ),
        )
        .await?;
        Ok(())
    }

    /// Closes the sessions of the live database and renames both databases
    /// in one transaction; sessions reconnecting in between make a rename
    /// fail, so it is tried again.
    async fn swap(&self) -> Result<(), ExecError> {
        let record = &self.record;
        let script = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname IN ('{0}', '{1}') AND pid <> pg_backend_pid();\nBEGIN;\nALTER DATABASE \"{0}\" RENAME TO \"{2}\";\nALTER DATABASE \"{1}\" RENAME TO \"{0}\";\nCOMMIT;\n",
            record.database, record.scratch, record.aside
        );
        let mut last = None;
        for _attempt in 0..SWAP_ATTEMPTS {
            match maintenance_sql(&self.target, &script).await {
                Ok(_) => return Ok(()),
                Err(error) => last = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(last.unwrap_or_else(|| ExecError::Failed("the swap did not run".to_string())))
    }
}

/// Settles an interrupted restore: before the swap, the half-loaded copy is
/// dropped and the live data stays; once swapped (the live database was
/// renamed aside), the restored data stays and the old copy is dropped.
///
/// # Errors
/// An unreadable intent, or the database not answering.
pub(crate) async fn settle_restore(
    host: &DockerHost,
    environment: &Environment,
    intent: &StepIntent,
) -> Result<String, String> {
    let record: RestoreRecord = read_data(intent)?;
    let service = service(environment, &record.service).map_err(|error| error.to_string())?;
    let database = service
        .database
        .as_ref()
        .ok_or_else(|| format!("{} is not a PostgreSQL service", record.service))?;
    let container = containers_of(host, environment, service)
        .await
        .map_err(|error| error.to_string())?
        .into_iter()
        .find(|container| container.state.running)
        .ok_or_else(|| {
            format!(
                "{} is not running, so the restore cannot be settled yet",
                record.service
            )
        })?;
    let target = Target {
        environment,
        service,
        database,
        host: host.clone(),
        container,
    };
    let swapped = match intent.stage.as_str() {
        "load" => false,
        "swap" => {
            let aside = maintenance_sql(
                &target,
                &format!(
                    "SELECT count(*) FROM pg_database WHERE datname = '{}';\n",
                    record.aside
                ),
            )
            .await
            .map_err(|error| error.to_string())?;
            aside.trim() != "0"
        }
        _ => true,
    };
    let leftover = if swapped {
        &record.aside
    } else {
        &record.scratch
    };
    maintenance_sql(&target, &drop_sql(leftover))
        .await
        .map_err(|error| error.to_string())?;
    Ok(if swapped {
        format!(
            "restore finished: {} holds {} and its previous data was dropped",
            record.database, record.backup
        )
    } else {
        format!(
            "restore undone: {} keeps its previous data; the half-loaded copy was dropped",
            record.database
        )
    })
}

fn drop_sql(database: &str) -> String {
    format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE);\n")
}

/// `name` with `suffix`, within PostgreSQL's 63-character limit.
fn derived_name(name: &str, suffix: &str) -> String {
    let keep = 63usize.saturating_sub(suffix.len()).min(name.len());
    format!("{}{suffix}", &name[..keep])
}

/// Database names Deckhand writes into SQL: plain identifiers only.
fn check_database_name(name: &str) -> Result<(), ExecError> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '_' || character == '-'
        });
    if plain {
        Ok(())
    } else {
        Err(ExecError::Failed(format!(
            "database name \"{name}\" has characters Deckhand does not put into SQL; nothing was changed"
        )))
    }
}

/// Runs SQL against the server's maintenance database (never the one being
/// restored, which must be free of sessions to be renamed); returns stdout.
async fn maintenance_sql(target: &Target<'_>, script: &str) -> Result<String, ExecError> {
    let maintenance = if target.database.name == "postgres" {
        "template1"
    } else {
        "postgres"
    };
    let output = target
        .host
        .exec(
            &target.container.id,
            Exec {
                cmd: vec![
                    "psql".to_string(),
                    "-U".to_string(),
                    target.database.user.clone(),
                    "-d".to_string(),
                    maintenance.to_string(),
                    "-v".to_string(),
                    "ON_ERROR_STOP=1".to_string(),
                    "-qtA".to_string(),
                ],
                env: Vec::new(),
                stdin: Some(script.as_bytes().to_vec()),
                timeout: DUMP_TIMEOUT,
            },
        )
        .await
        .map_err(|error| ExecError::Failed(error.to_string()))?;
    if output.exit_code != 0 {
        return Err(ExecError::Failed(format!(
            "psql failed: {}",
            crate::secret::redact(output.stderr_text().trim())
        )));
    }
    Ok(output.stdout_text())
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
