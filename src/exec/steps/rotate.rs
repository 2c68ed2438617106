//! The runbook's Secret Rotation as one step, `/rotate jwt|db-password|ssl
//! ENV`, each rotation a sequence of journaled stages that recovery can
//! settle after a crash at any of them. A new secret is generated here, held
//! in `Secret`, and only ever leaves Deckhand as a container's environment
//! variable (or sealed in the journal, see `sealed`) — never in argv, SQL,
//! chat, logs, audit or errors.
//!
//! - `jwt` (here): the consumer's containers are recreated with the new
//!   value, one replica at a time, each healthy before the next; a crash
//!   settles all replicas the same way (all new, or all back on the old
//!   secret), and leaves no `.deckhand-old` container behind.
//! - `db-password` (`rotate_db`): a SCRAM verifier, a new role with
//!   `--new-user`, the consumer moved over, verified, then committed.
//! - `ssl` (`rotate_tls`): a new certificate swapped in and verified as
//!   served, or the old files back.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::{EnvSecret, Environment};
use crate::docker::{ContainerInfo, DockerHost, SettleChoice};
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;
use crate::secret::Secret;
use crate::store::StepIntent;

use super::deploy::{containers_of, environment, service, wait_container_healthy, wait_endpoints};
use super::journal::{Journal, read_data};
use super::replace::{self, Replaced, StagedReplacement};
use super::rotate_db::DbPasswordRotation;
use super::rotate_tls::CertificateRotation;
use super::sealed::StateKey;
use super::{Progress, RunContext, StepOutcome};

/// How long each replaced container may take to become healthy.
pub(super) const HEALTH_LIMIT: Duration = Duration::from_secs(120);

/// The intent kind of a JWT rotation.
pub const JWT_KIND: &str = "rotate_jwt";

/// The sub-step of a rotation's own intent (its replacements have theirs).
pub const ROTATION_SUB_STEP: &str = "rotation";

fn which<'a>(input: &OperationInput<'a>) -> &'a str {
    input.action.args.text("secret").unwrap_or_default()
}

fn new_user(input: &OperationInput<'_>) -> bool {
    input.action.args.text("new-user").is_some()
}

fn not_configured(environment: &Environment, secret: &str) -> ExecError {
    ExecError::Failed(format!(
        "{} says nothing about where the {secret} secret lives; add [environments.{}.rotation.{secret}] to config/deckhand.toml",
        environment.name, environment.name
    ))
}

/// Plan lines for a rotation.
///
/// # Errors
/// When the environment does not configure that secret.
pub fn describe(input: &OperationInput<'_>, plan: &mut Plan) -> Result<(), ExecError> {
    let environment = environment(input)?;
    let rotation = &environment.rotation;
    if new_user(input) && which(input) != "db-password" {
        return Err(ExecError::Failed(
            "--new-user applies only to /rotate db-password".to_string(),
        ));
    }
    match which(input) {
        "jwt" => {
            let jwt = rotation
                .jwt
                .as_ref()
                .ok_or_else(|| not_configured(environment, "jwt"))?;
            plan.steps
                .push("generate a new JWT secret (never shown)".to_string());
            plan.steps.push(format!(
                "recreate every {} container with the new {}, one at a time, each healthy before the next",
                jwt.service, jwt.env
            ));
            plan.checks.push(format!(
                "{} healthy and its health endpoints answering after each replacement",
                jwt.service
            ));
        }
        "db-password" => {
            let db = rotation
                .db_password
                .as_ref()
                .ok_or_else(|| not_configured(environment, "db-password"))?;
            if new_user(input) {
                plan.steps.push(format!(
                    "create a new database role in {} with the consumer's role's grants and a new password (never shown, sent only as a SCRAM verifier)",
                    db.database
                ));
            } else {
                plan.steps.push(format!(
                    "set a new password (never shown, sent only as a SCRAM verifier) for the consumer's database role in {}",
                    db.database
                ));
            }
            plan.steps.push(format!(
                "recreate every {} container with the new password in {}, one at a time",
                db.consumer.service, db.consumer.env
            ));
            plan.checks.push(format!(
                "{} healthy and ready (its readiness checks the database)",
                db.consumer.service
            ));
            if new_user(input) {
                plan.steps.push(
                    "hand the old role's objects to the new role and drop the old role, only after the consumer is ready".to_string(),
                );
            }
            plan.notes.push(
                "on failure the old credential and the old containers come back; after a crash recovery finishes or undoes the rotation".to_string(),
            );
            if let Err(error) = StateKey::from_env() {
                return Err(ExecError::Failed(format!(
                    "the database password was not rotated, because {error} — nothing was changed"
                )));
            }
        }
        "ssl" => {
            let ssl = rotation
                .ssl
                .as_ref()
                .ok_or_else(|| not_configured(environment, "ssl"))?;
            plan.steps.push(format!(
                "make a new certificate for CN={} valid {} days in {}:{}",
                ssl.common_name, ssl.days, ssl.service, ssl.dir
            ));
            plan.steps.push(format!(
                "check the config with nginx -t, then reload {} without downtime",
                ssl.service
            ));
            plan.checks
                .push(format!("{} serves the new certificate", ssl.service));
        }
        other => {
            return Err(ExecError::Failed(format!(
                "there is no secret \"{other}\" to rotate"
            )));
        }
    }
    Ok(())
}

/// A new random secret: 48 bytes, URL-safe base64 (safe in URLs and SQL
/// string literals alike).
pub(super) fn generate() -> Secret {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Which rotation a step runs, with what it needs.
pub enum Rotation<'a> {
    /// `/rotate jwt`.
    Jwt(JwtRotation<'a>),
    /// `/rotate db-password [--new-user]`.
    DbPassword(Box<DbPasswordRotation<'a>>),
    /// `/rotate ssl`.
    Certificate(CertificateRotation<'a>),
}

impl<'a> Rotation<'a> {
    /// Works out the rotation `secret` names in `environment`; changes
    /// nothing.
    ///
    /// # Errors
    /// The secret is not configured, the state key is missing (db-password),
    /// or the target cannot be found.
    pub async fn begin(
        environment: &'a Environment,
        host: DockerHost,
        journal: Journal,
        secret: &str,
        new_user: bool,
    ) -> Result<Rotation<'a>, ExecError> {
        let rotation = &environment.rotation;
        match secret {
            "jwt" => {
                let jwt = rotation
                    .jwt
                    .as_ref()
                    .ok_or_else(|| not_configured(environment, "jwt"))?;
                Ok(Rotation::Jwt(
                    JwtRotation::begin(environment, host, journal, jwt).await?,
                ))
            }
            "db-password" => {
                let db = rotation
                    .db_password
                    .as_ref()
                    .ok_or_else(|| not_configured(environment, "db-password"))?;
                let key = StateKey::from_env().map_err(|error| {
                    ExecError::Failed(format!(
                        "the database password was not rotated, because {error} — nothing was changed"
                    ))
                })?;
                Ok(Rotation::DbPassword(Box::new(
                    DbPasswordRotation::begin(environment, host, journal, db, new_user, key)
                        .await?,
                )))
            }
            "ssl" => {
                let ssl = rotation
                    .ssl
                    .as_ref()
                    .ok_or_else(|| not_configured(environment, "ssl"))?;
                Ok(Rotation::Certificate(
                    CertificateRotation::begin(environment, host, journal, ssl).await?,
                ))
            }
            other => Err(ExecError::Failed(format!(
                "there is no secret \"{other}\" to rotate"
            ))),
        }
    }

    /// Runs the next stage (journaled first).
    ///
    /// # Errors
    /// A failed stage, after the rotation was undone (and says so).
    pub async fn advance(&mut self) -> Result<Progress, ExecError> {
        match self {
            Rotation::Jwt(rotation) => rotation.advance().await,
            Rotation::DbPassword(rotation) => rotation.advance().await,
            Rotation::Certificate(rotation) => rotation.advance().await,
        }
    }
}

impl RunContext<'_> {
    /// Runs the rotation the `secret` argument names, stage by stage.
    pub async fn rotate(&mut self) -> Result<StepOutcome, ExecError> {
        let environment = environment(self.input)?;
        let host = self.app.hosts.get(environment.name.as_str()).await?;
        let mut rotation = Rotation::begin(
            environment,
            host,
            self.journal(),
            which(self.input),
            new_user(self.input),
        )
        .await?;
        loop {
            if let Progress::Done(outcome) = rotation.advance().await? {
                return Ok(outcome);
            }
        }
    }
}

/// Replacing every container of a service with the same image and some
/// environment variables set to new values, one at a time, each healthy
/// before the next, then the service's health endpoints answering: the
/// rolling restart the JWT and database rotations share. Each replacement is
/// journaled; the rotation decides when they are committed or reverted.
pub(super) struct Roll<'a> {
    environment: &'a Environment,
    service: String,
    overrides: Vec<(String, String)>,
    pending: VecDeque<ContainerInfo>,
    current: Option<StagedReplacement>,
    replaced: Vec<Replaced>,
    /// How many containers the roll replaces.
    pub total: usize,
}

impl std::fmt::Debug for Roll<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Roll")
            .field("service", &self.service)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl<'a> Roll<'a> {
    /// A roll of `target`'s service with `value` in its variable.
    pub async fn new(
        environment: &'a Environment,
        host: &DockerHost,
        target: &EnvSecret,
        value: &Secret,
    ) -> Result<Roll<'a>, ExecError> {
        let service = service(environment, target.service.as_str())?;
        let containers = containers_of(host, environment, service).await?;
        Ok(Roll {
            environment,
            service: service.name.to_string(),
            overrides: vec![(target.env.clone(), value.expose().to_string())],
            total: containers.len(),
            pending: containers.into(),
            current: None,
            replaced: Vec::new(),
        })
    }

    /// Runs the next replacement stage; `true` once every container was
    /// replaced, healthy, and the service's endpoints answer.
    pub async fn advance(
        &mut self,
        host: &DockerHost,
        journal: &Journal,
    ) -> Result<bool, ExecError> {
        if let Some(current) = self.current.as_mut() {
            current.advance(host).await?;
            if current.is_started()
                && let Some(started) = self.current.take()
            {
                let replaced = started.finish();
                let name = replaced.recreated.name.clone();
                self.replaced.push(replaced);
                wait_container_healthy(host, &name, HEALTH_LIMIT).await?;
            }
            return Ok(false);
        }
        if let Some(container) = self.pending.pop_front() {
            let mut replacement = StagedReplacement::prepare(
                journal,
                host,
                &self.service,
                &container,
                &container.image_reference,
                &self.overrides,
            )
            .await?;
            replacement.advance(host).await?;
            self.current = Some(replacement);
            return Ok(false);
        }
        let service = service(self.environment, &self.service)?;
        wait_endpoints(service, HEALTH_LIMIT).await?;
        Ok(true)
    }

    /// Keeps every new container.
    pub async fn commit(&mut self, host: &DockerHost) -> Vec<String> {
        let mut problems = Vec::new();
        for replaced in self.replaced.drain(..) {
            if let Err(error) = replaced.commit(host).await {
                problems.push(format!(
                    "could not remove the previous {}: {error}",
                    replaced.recreated.name
                ));
            }
        }
        problems
    }

    /// Brings every old container back, newest first; returns what could
    /// not be restored.
    pub async fn revert(&mut self, host: &DockerHost) -> Vec<String> {
        let mut problems = Vec::new();
        while let Some(replaced) = self.replaced.pop() {
            if let Err(error) = replaced.revert(host).await {
                problems.push(format!("restoring {}: {error}", replaced.recreated.name));
            }
        }
        problems
    }
}

/// What a rolling rotation's own intent records.
#[derive(Debug, Serialize, Deserialize)]
struct JwtRecord {
    service: String,
    containers: usize,
}

/// `/rotate jwt`, stage by stage: the consumer rolled onto a new secret,
/// then committed; on failure every old container comes back.
pub struct JwtRotation<'a> {
    host: DockerHost,
    journal: Journal,
    target: &'a EnvSecret,
    roll: Roll<'a>,
    journaled: bool,
}

impl<'a> JwtRotation<'a> {
    async fn begin(
        environment: &'a Environment,
        host: DockerHost,
        journal: Journal,
        target: &'a EnvSecret,
    ) -> Result<JwtRotation<'a>, ExecError> {
        let secret = generate();
        let roll = Roll::new(environment, &host, target, &secret).await?;
        Ok(JwtRotation {
            host,
            journal,
            target,
            roll,
            journaled: false,
        })
    }

    async fn advance(&mut self) -> Result<Progress, ExecError> {
        if !self.journaled {
            self.journal
                .write(
                    ROTATION_SUB_STEP,
                    JWT_KIND,
                    "roll",
                    &JwtRecord {
                        service: self.target.service.to_string(),
                        containers: self.roll.total,
                    },
                    None,
                )
                .await?;
            self.journaled = true;
        }
        match self.roll.advance(&self.host, &self.journal).await {
            Ok(false) => Ok(Progress::Stage(format!("rolling {}", self.target.service))),
            Ok(true) => {
                self.journal
                    .write(
                        ROTATION_SUB_STEP,
                        JWT_KIND,
                        "commit",
                        &JwtRecord {
                            service: self.target.service.to_string(),
                            containers: self.roll.total,
                        },
                        None,
                    )
                    .await?;
                let problems = self.roll.commit(&self.host).await;
                self.journal.clear(ROTATION_SUB_STEP).await;
                let mut summary = format!(
                    "new JWT secret in {}: {} {} container(s) replaced one at a time; users log in again",
                    self.target.env, self.roll.total, self.target.service
                );
                for problem in problems {
                    summary.push_str(&format!("; {problem}"));
                }
                Ok(Progress::Done(StepOutcome::summary(summary)))
            }
            Err(error) => {
                let problems = self.roll.revert(&self.host).await;
                self.journal.clear(ROTATION_SUB_STEP).await;
                Err(ExecError::Failed(undone_message(
                    &error,
                    "the previous containers and JWT secret are back",
                    &problems,
                )))
            }
        }
    }
}

/// `{error}; {what is back}`, or what could not be restored.
pub(super) fn undone_message(error: &ExecError, restored: &str, problems: &[String]) -> String {
    if problems.is_empty() {
        format!("{error}; {restored}")
    } else {
        format!(
            "{error}; restoring failed too: {} — check the environment now",
            problems.join("; ")
        )
    }
}

/// Settles an interrupted rolling rotation's replacements the same way:
/// all on the new value when the roll reached every container and each is
/// healthy (or the commit had begun), otherwise all back on the old value.
/// Returns one line per container, and whether the new value stayed.
pub(crate) async fn settle_roll(
    host: &DockerHost,
    replacements: &[&StepIntent],
    containers: usize,
    committing: bool,
) -> (Vec<String>, bool) {
    let mut keep = committing;
    if !keep && replacements.len() == containers && containers > 0 {
        keep = true;
        for intent in replacements {
            if !replace::started_and_healthy(host, intent, replace::SETTLE_HEALTH_LIMIT).await {
                keep = false;
                break;
            }
        }
    }
    let choice = if keep {
        SettleChoice::KeepNew
    } else {
        SettleChoice::RestoreOld
    };
    let mut lines = Vec::new();
    for intent in replacements.iter().rev() {
        match replace::settle(host, intent, choice).await {
            Ok(outcome) => lines.push(outcome.to_string()),
            Err(error) => lines.push(error),
        }
    }
    (lines, keep)
}

/// Settles an interrupted `/rotate jwt`: every replica on the new secret,
/// or every replica back on the old one.
pub(crate) async fn settle_jwt(
    host: &DockerHost,
    rotation: &StepIntent,
    replacements: &[&StepIntent],
) -> Vec<String> {
    let record: JwtRecord = match read_data(rotation) {
        Ok(record) => record,
        Err(error) => return vec![error],
    };
    let (mut lines, kept) = settle_roll(
        host,
        replacements,
        record.containers,
        rotation.stage == "commit",
    )
    .await;
    lines.insert(
        0,
        if kept {
            format!(
                "JWT rotation finished: every {} container runs on the new secret",
                record.service
            )
        } else {
            format!(
                "JWT rotation undone: every {} container runs on the previous secret",
                record.service
            )
        },
    );
    lines
}
