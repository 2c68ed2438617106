//! The closed set of runbook step kinds a command file may use, each with its
//! typed parameters. A new step kind is a new variant here plus its function
//! in `exec/steps/`; the compiler then points at every `match` to update.
//! Steps never hold free-form command strings that reach a shell: commands
//! run in containers are argument vectors passed to the Docker API.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::RuleKind;

/// One step of a command, as declared in its file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Resolves the `ref` argument to an image per service with the
    /// environment's image templates; the plan shows current → new.
    ResolveImages {
        /// Services to deploy.
        services: Vec<String>,
    },
    /// Resolves what a rollback returns to: the previous release of the
    /// `service` argument (all services of the last deploy when absent), or
    /// the tag or release id given as `target`.
    ResolveRollback {},
    /// Pulls every planned image the host does not have.
    Pull {},
    /// Runs a one-off container from the service's planned (or current)
    /// image, with its environment and networks; a non-zero exit stops the
    /// operation before anything is replaced.
    RunOnce {
        /// Whose image, env and networks to use.
        service: String,
        /// Argument vector, e.g. `["npm", "run", "db:migrate"]`.
        command: Vec<String>,
        /// Step title in messages; default `run <command>`.
        title: Option<String>,
        /// Limit; default 5 minutes.
        #[serde(default, deserialize_with = "optional_duration")]
        timeout: Option<Duration>,
    },
    /// Replaces each planned service's containers with the new image,
    /// keeping everything else, one replica at a time.
    Recreate {},
    /// Waits until every planned service is running, healthy by its Docker
    /// healthcheck, and answers its configured health endpoints.
    WaitHealthy {
        /// Limit; default 2 minutes.
        #[serde(default, deserialize_with = "optional_duration")]
        timeout: Option<Duration>,
    },
    /// HTTP requests with an expected status and body fragment.
    Smoke {
        /// The requests.
        checks: Vec<SmokeCheck>,
    },
    /// Records the release (images and digests before and after).
    RecordRelease {},
    /// Leaves the environment locked after a rollback so the next deploy
    /// cannot silently undo it, when the environment asks for that.
    HoldLock {},
    /// Dumps the service's database with `pg_dump` into the backup folder.
    BackupDatabase {
        /// The PostgreSQL service.
        service: String,
    },
    /// Restores the backup named by the `backup` argument: stops the
    /// database, resets its data, starts it and loads the dump.
    RestoreDatabase {
        /// The PostgreSQL service.
        service: String,
    },
    /// `SELECT 1` through the database container.
    CheckDatabase {
        /// The PostgreSQL service.
        service: String,
    },
    /// Starts, stops, restarts or reports the `service` argument, by the
    /// `action` argument.
    ServiceAction {},
    /// Per service: state, Docker health, restarts, endpoints with latency.
    HealthReport {},
    /// Services, images, uptime, last release, locks.
    StatusReport {},
    /// Tail of the `service` argument's logs, secrets redacted.
    Logs {},
    /// Usage of every command, or of the `command` argument.
    Help {},
    /// Holds the environment with the `reason` argument, for the `for` argument.
    Lock {},
    /// Releases a person's hold or a post-rollback hold.
    Unlock {},
    /// Runs the runbook's diagnostic checks, for the `symptom` argument.
    Diagnose {},
    /// Rotates the secret named by the `secret` argument.
    Rotate {},
    /// Removes the environment's stopped containers (never running ones, never
    /// volumes); the plan lists them with their sizes.
    PruneContainers {},
    /// Removes dangling images no container uses and no recorded release
    /// needs; the plan lists them with their sizes.
    PruneImages {},
    /// `FLUSHALL` in the Redis service: clears every cache.
    FlushRedis {
        /// The Redis service.
        service: String,
    },
}

/// One smoke-check request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    /// Service whose URL the path is appended to.
    pub service: String,
    /// Path, starting with `/`.
    pub path: String,
    /// Expected HTTP status; default 200.
    #[serde(default = "default_status")]
    pub status: u16,
    /// A fragment the body must contain.
    pub contains: Option<String>,
}

fn default_status() -> u16 {
    200
}

/// An argument a step reads, which its command must declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgNeed {
    /// The argument's name.
    pub name: &'static str,
    /// The rule it must have.
    pub rule: RuleKind,
    /// Whether the command must make it required.
    pub required: bool,
}

const fn need(name: &'static str, rule: RuleKind, required: bool) -> ArgNeed {
    ArgNeed {
        name,
        rule,
        required,
    }
}

impl Step {
    /// The kind as written in files, e.g. `wait_healthy`.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::ResolveImages { .. } => "resolve_images",
            Step::ResolveRollback {} => "resolve_rollback",
            Step::Pull {} => "pull",
            Step::RunOnce { .. } => "run_once",
            Step::Recreate {} => "recreate",
            Step::WaitHealthy { .. } => "wait_healthy",
            Step::Smoke { .. } => "smoke",
            Step::RecordRelease {} => "record_release",
            Step::HoldLock {} => "hold_lock",
            Step::BackupDatabase { .. } => "backup_database",
            Step::RestoreDatabase { .. } => "restore_database",
            Step::CheckDatabase { .. } => "check_database",
            Step::ServiceAction {} => "service_action",
            Step::HealthReport {} => "health_report",
            Step::StatusReport {} => "status_report",
            Step::Logs {} => "logs",
            Step::Help {} => "help",
            Step::Lock {} => "lock",
            Step::Unlock {} => "unlock",
            Step::Diagnose {} => "diagnose",
            Step::Rotate {} => "rotate",
            Step::PruneContainers {} => "prune_containers",
            Step::PruneImages {} => "prune_images",
            Step::FlushRedis { .. } => "flush_redis",
        }
    }

    /// The title shown in progress messages.
    pub fn title(&self) -> String {
        match self {
            Step::ResolveImages { .. } => "resolve images".to_string(),
            Step::ResolveRollback {} => "resolve rollback target".to_string(),
            Step::RunOnce { title, command, .. } => title
                .clone()
                .unwrap_or_else(|| format!("run {}", command.join(" "))),
            Step::WaitHealthy { .. } => "wait healthy".to_string(),
            Step::Smoke { .. } => "smoke checks".to_string(),
            Step::RecordRelease {} => "record release".to_string(),
            Step::HoldLock {} => "hold lock".to_string(),
            Step::BackupDatabase { .. } => "back up database".to_string(),
            Step::RestoreDatabase { .. } => "restore database".to_string(),
            Step::CheckDatabase { .. } => "check database".to_string(),
            Step::PruneContainers {} => "remove stopped containers".to_string(),
            Step::PruneImages {} => "remove dangling images".to_string(),
            Step::FlushRedis { .. } => "flush redis".to_string(),
            other => other.kind().replace('_', " "),
        }
    }

    /// Whether the step changes anything on a host or in the store's locks.
    pub fn is_mutating(&self) -> bool {
        matches!(
            self,
            Step::Pull {}
                | Step::RunOnce { .. }
                | Step::Recreate {}
                | Step::RecordRelease {}
                | Step::HoldLock {}
                | Step::BackupDatabase { .. }
                | Step::RestoreDatabase { .. }
                | Step::ServiceAction {}
                | Step::Lock {}
                | Step::Unlock {}
                | Step::Rotate {}
                | Step::PruneContainers {}
                | Step::PruneImages {}
                | Step::FlushRedis { .. }
        )
    }

    /// Services the step names in its parameters.
    pub fn named_services(&self) -> Vec<&str> {
        match self {
            Step::ResolveImages { services } => services.iter().map(String::as_str).collect(),
            Step::RunOnce { service, .. }
            | Step::BackupDatabase { service }
            | Step::RestoreDatabase { service }
            | Step::CheckDatabase { service }
            | Step::FlushRedis { service } => vec![service.as_str()],
            Step::Smoke { checks } => checks.iter().map(|check| check.service.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// Arguments the step reads, which its command must declare.
    pub fn arg_needs(&self) -> &'static [ArgNeed] {
        const REF: &[ArgNeed] = &[need("ref", RuleKind::Regex, true)];
        const ROLLBACK: &[ArgNeed] = &[
            need("service", RuleKind::Service, false),
            need("target", RuleKind::Regex, false),
        ];
        const RESTORE: &[ArgNeed] = &[need("backup", RuleKind::Regex, true)];
        const SERVICE_ACTION: &[ArgNeed] = &[
            need("action", RuleKind::Enum, true),
            need("service", RuleKind::Service, true),
        ];
        const LOGS: &[ArgNeed] = &[
            need("service", RuleKind::Service, true),
            need("tail", RuleKind::Integer, false),
            need("since", RuleKind::Duration, false),
            need("grep", RuleKind::Regex, false),
        ];
        const HELP: &[ArgNeed] = &[need("command", RuleKind::Command, false)];
        const LOCK: &[ArgNeed] = &[
            need("reason", RuleKind::Regex, true),
            need("for", RuleKind::Duration, false),
        ];
        const DIAGNOSE: &[ArgNeed] = &[need("symptom", RuleKind::Enum, false)];
        const ROTATE: &[ArgNeed] = &[need("secret", RuleKind::Enum, true)];
        match self {
            Step::ResolveImages { .. } => REF,
            Step::ResolveRollback {} => ROLLBACK,
            Step::RestoreDatabase { .. } => RESTORE,
            Step::ServiceAction {} => SERVICE_ACTION,
            Step::Logs {} => LOGS,
            Step::Help {} => HELP,
            Step::Lock {} => LOCK,
            Step::Diagnose {} => DIAGNOSE,
            Step::Rotate {} => ROTATE,
            _ => &[],
        }
    }

    /// Whether the step needs an environment argument.
    pub fn needs_environment(&self) -> bool {
        !matches!(self, Step::Help {})
    }
}

fn optional_duration<'de, D>(deserializer: D) -> Result<Option<Duration>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    crate::duration::parse_duration(&text)
        .filter(|duration| !duration.is_zero())
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "\"{text}\" is not a duration such as \"90s\", \"10m\" or \"2h\""
            ))
        })
}
