//! `/rotate db-password ENV [--new-user]` in journaled stages, so that at
//! every instant the consumer has, or recovery can give it, a working
//! credential:
//!
//! 1. `credential`: the intent is journaled with the old and new passwords
//!    sealed under `DECKHAND_STATE_KEY`; then either the role's password is
//!    set (`ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'`, a verifier computed
//!    here, so the plaintext is in no SQL and no database log), or with
//!    `--new-user` a new role is created with the old role's attributes and
//!    memberships and made a member of the old role, so both log in and the
//!    new one can do all the old one can.
//! 2. `roll`: the consumer's containers recreated with the new connection
//!    URL, one at a time, each healthy, then its readiness endpoints.
//! 3. `finalize` (`--new-user`): the old role's objects handed to the new
//!    role, its other grants copied, and the old role dropped — only now.
//! 4. `commit`: the previous containers removed.
//!
//! A failure before `finalize` undoes everything (old containers, old
//! password, new role dropped). Recovery after a crash finishes the rotation
//! when the consumer already runs healthy on the new credential (or the
//! finalize had begun), and otherwise undoes it — and says which.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Database, DbPassword, Environment};
use crate::docker::{DockerHost, Exec};
use crate::exec::ExecError;
use crate::secret::Secret;
use crate::store::StepIntent;

use super::deploy::{containers_of, service};
use super::journal::{Journal, read_data, seal_context};
use super::rotate::{ROTATION_SUB_STEP, Roll, generate, settle_roll, undone_message};
use super::scram;
use super::sealed::StateKey;
use super::{Progress, StepOutcome};

/// The intent kind of a database password rotation.
pub const KIND: &str = "rotate_db_password";

const EXEC_LIMIT: Duration = Duration::from_secs(60);

/// What the rotation's intent records; the passwords are sealed apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// The PostgreSQL service.
    database_service: String,
    /// The consumer service and its variable.
    consumer: String,
    variable: String,
    /// Its containers.
    containers: usize,
    /// The role the consumer logged in as.
    old_role: String,
    /// The role it moves to (the same one without `--new-user`).
    new_role: String,
    new_user: bool,
}

/// The sealed part: both passwords.
#[derive(Serialize, Deserialize)]
struct Passwords {
    old: String,
    new: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Credential,
    Roll,
    Finalize,
    Commit,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Credential => "credential",
            Stage::Roll => "roll",
            Stage::Finalize => "finalize",
            Stage::Commit => "commit",
        }
    }
}

/// A database password rotation, stage by stage.
pub struct DbPasswordRotation<'a> {
    host: DockerHost,
    journal: Journal,
    key: StateKey,
    database: &'a Database,
    database_container: String,
    record: Record,
    old_password: Secret,
    new_password: Secret,
    roll: Roll<'a>,
    stage: Stage,
    credential_set: bool,
}

impl<'a> DbPasswordRotation<'a> {
    /// Works out the rotation: the consumer's current URL, its role and
    /// password, a new password (and role); changes nothing.
    ///
    /// # Errors
    /// The database or consumer cannot be found, the URL cannot be read, or
    /// `--new-user` would drop the role Deckhand itself uses.
    pub async fn begin(
        environment: &'a Environment,
        host: DockerHost,
        journal: Journal,
        config: &'a DbPassword,
        new_user: bool,
        key: StateKey,
    ) -> Result<DbPasswordRotation<'a>, ExecError> {
        let database_service = service(environment, config.database.as_str())?;
        let database = database_service.database.as_ref().ok_or_else(|| {
            ExecError::Failed(format!("{} is not a postgres service", config.database))
        })?;
        let database_container =
            running_container(&host, environment, config.database.as_str()).await?;
        let consumer = service(environment, config.consumer.service.as_str())?;
        let consumer_containers = containers_of(&host, environment, consumer).await?;
        let current = host
            .env_of(&consumer_containers[0].id)
            .await
            .map_err(|error| ExecError::Failed(error.to_string()))?
            .remove(&config.consumer.env)
            .map(Secret::new)
            .ok_or_else(|| {
                ExecError::Failed(format!(
                    "{} has no {} to update",
                    config.consumer.service, config.consumer.env
                ))
            })?;
        let mut url = url::Url::parse(current.expose()).map_err(|_| {
            ExecError::Failed(format!(
                "{} of {} is not a connection URL",
                config.consumer.env, config.consumer.service
            ))
        })?;
        let old_role = url.username().to_string();
        check_role_name(&old_role, &config.consumer.env)?;
        let old_password = Secret::new(url.password().unwrap_or_default());
        let new_password = generate();
        let new_role = if new_user {
            if old_role == database.user {
                return Err(ExecError::Failed(format!(
                    "--new-user would drop the role {old_role}, which is also the role Deckhand administers {} with (database.user in config); give the application its own role, or rotate its password without --new-user — nothing was changed",
                    config.database
                )));
            }
            successor_role(&old_role, journal.op_id())
        } else {
            old_role.clone()
        };
        url.set_username(&new_role).map_err(|()| {
            ExecError::Failed(format!("cannot put a user into {}", config.consumer.env))
        })?;
        url.set_password(Some(new_password.expose()))
            .map_err(|()| {
                ExecError::Failed(format!(
                    "cannot put a password into {}",
                    config.consumer.env
                ))
            })?;
        let new_url = Secret::new(url.to_string());
        let roll = Roll::new(environment, &host, &config.consumer, &new_url).await?;
        Ok(DbPasswordRotation {
            record: Record {
                database_service: config.database.to_string(),
                consumer: config.consumer.service.to_string(),
                variable: config.consumer.env.clone(),
                containers: roll.total,
                old_role,
                new_role,
                new_user,
            },
            host,
            journal,
            key,
            database,
            database_container,
            old_password,
            new_password,
            roll,
            stage: Stage::Credential,
            credential_set: false,
        })
    }

    /// Runs the next stage (journaled first).
    ///
    /// # Errors
    /// A failed stage; before `finalize` the rotation was undone by then.
    pub async fn advance(&mut self) -> Result<Progress, ExecError> {
        let result = self.run_stage().await;
        match result {
            Ok(progress) => Ok(progress),
            Err(error) if matches!(self.stage, Stage::Credential | Stage::Roll) => {
                let mut problems = self.roll.revert(&self.host).await;
                if self.credential_set
                    && let Err(restore) = self.undo_credential().await
                {
                    problems.push(restore.to_string());
                }
                if problems.is_empty() {
                    self.journal.clear(ROTATION_SUB_STEP).await;
                }
                let restored = if self.record.new_user {
                    format!(
                        "the new role was dropped and {} is back on {}",
                        self.record.consumer, self.record.old_role
                    )
                } else {
                    format!(
                        "the old password and the previous {} containers are back",
                        self.record.consumer
                    )
                };
                Err(ExecError::Failed(undone_message(
                    &error, &restored, &problems,
                )))
            }
            Err(error) => Err(ExecError::Failed(format!(
                "{error}; {} already runs on the new credential",
                self.record.consumer
            ))),
        }
    }

    async fn run_stage(&mut self) -> Result<Progress, ExecError> {
        match self.stage {
            Stage::Credential => {
                self.write_intent(Stage::Credential).await?;
                self.credential_set = true;
                let script = if self.record.new_user {
                    create_role_sql(
                        &self.record.old_role,
                        &self.record.new_role,
                        &scram::verifier(&self.new_password),
                    )
                } else {
                    set_password_sql(&self.record.old_role, &scram::verifier(&self.new_password))
                };
                psql(&self.host, &self.database_container, self.database, &script).await?;
                self.stage = Stage::Roll;
                self.write_intent(Stage::Roll).await?;
                Ok(Progress::Stage(
                    if self.record.new_user {
                        "new role created"
                    } else {
                        "password set"
                    }
                    .to_string(),
                ))
            }
            Stage::Roll => {
                if self.roll.advance(&self.host, &self.journal).await? {
                    self.stage = if self.record.new_user {
                        Stage::Finalize
                    } else {
                        Stage::Commit
                    };
                }
                Ok(Progress::Stage(format!("rolling {}", self.record.consumer)))
            }
            Stage::Finalize => {
                self.write_intent(Stage::Finalize).await?;
                psql(
                    &self.host,
                    &self.database_container,
                    self.database,
                    &finalize_sql(&self.record.old_role, &self.record.new_role),
                )
                .await
                .map_err(|error| {
                    ExecError::Failed(format!(
                        "dropping the old role {}: {error}",
                        self.record.old_role
                    ))
                })?;
                self.stage = Stage::Commit;
                Ok(Progress::Stage(format!(
                    "dropped role {}",
                    self.record.old_role
                )))
            }
            Stage::Commit => {
                self.write_intent(Stage::Commit).await?;
                let problems = self.roll.commit(&self.host).await;
                self.journal.clear(ROTATION_SUB_STEP).await;
                let mut summary = if self.record.new_user {
                    format!(
                        "{} moved to the new role {} with a new password; the old role {} was dropped; it is ready",
                        self.record.consumer, self.record.new_role, self.record.old_role
                    )
                } else {
                    format!(
                        "new password for {} in {}; {} reconnected with it and is ready",
                        self.record.old_role, self.record.database_service, self.record.consumer
                    )
                };
                for problem in problems {
                    summary.push_str(&format!("; {problem}"));
                }
                Ok(Progress::Done(StepOutcome::summary(summary)))
            }
        }
    }

    async fn write_intent(&self, stage: Stage) -> Result<(), ExecError> {
        let passwords = Passwords {
            old: self.old_password.expose().to_string(),
            new: self.new_password.expose().to_string(),
        };
        let plaintext = serde_json::to_vec(&passwords).unwrap_or_default();
        let sealed = self
            .key
            .seal(&plaintext, &self.journal.seal_context(ROTATION_SUB_STEP));
        self.journal
            .write(
                ROTATION_SUB_STEP,
                KIND,
                stage.as_str(),
                &self.record,
                Some(sealed),
            )
            .await
    }

    async fn undo_credential(&self) -> Result<(), ExecError> {
        let script = if self.record.new_user {
            drop_new_role_sql(&self.record.old_role, &self.record.new_role)
        } else {
            set_password_sql(&self.record.old_role, &scram::verifier(&self.old_password))
        };
        psql(&self.host, &self.database_container, self.database, &script).await
    }
}

/// Settles an interrupted rotation: finishes it (the consumer runs healthy
/// on the new credential, or the finalize had begun) or undoes it.
/// Returns the lines to report and whether the intents are settled (not
/// when the state key is missing: then a later start with the key can).
pub(crate) async fn settle(
    host: &DockerHost,
    environment: &Environment,
    rotation: &StepIntent,
    replacements: &[&StepIntent],
) -> (Vec<String>, bool) {
    let record: Record = match read_data(rotation) {
        Ok(record) => record,
        Err(error) => return (vec![error], false),
    };
    let passwords = match open_passwords(rotation) {
        Ok(passwords) => passwords,
        Err(error) => {
            return (
                vec![format!(
                    "the interrupted database password rotation cannot be settled: {error}"
                )],
                false,
            );
        }
    };
    let target = async {
        let database_service = service(environment, &record.database_service)?;
        let database = database_service.database.as_ref().ok_or_else(|| {
            ExecError::Failed(format!(
                "{} is not a postgres service",
                record.database_service
            ))
        })?;
        let container = running_container(host, environment, &record.database_service).await?;
        Ok::<_, ExecError>((database, container))
    }
    .await;
    let (database, container) = match target {
        Ok(target) => target,
        Err(error) => {
            return (
                vec![format!(
                    "the interrupted database password rotation cannot be settled yet: {error}"
                )],
                false,
            );
        }
    };
    let forward = matches!(rotation.stage.as_str(), "finalize" | "commit");
    let (mut lines, kept) = settle_roll(host, replacements, record.containers, forward).await;
    let credential = if kept {
        // The new role exists from the credential stage on (and the roll
        // could only be kept after it), so finishing sets its password again
        // and hands over the old role, both harmless when already done.
        let verifier = scram::verifier(&Secret::new(passwords.new.clone()));
        let mut script = set_password_sql(&record.new_role, &verifier);
        if record.new_user {
            script.push_str(&finalize_sql(&record.old_role, &record.new_role));
        }
        psql(host, &container, database, &script).await
    } else {
        let script = if record.new_user {
            drop_new_role_sql(&record.old_role, &record.new_role)
        } else {
            set_password_sql(
                &record.old_role,
                &scram::verifier(&Secret::new(passwords.old.clone())),
            )
        };
        psql(host, &container, database, &script).await
    };
    let headline = match (&credential, kept, record.new_user) {
        (Err(error), _, _) => format!(
            "the interrupted database password rotation could not set the database role: {error}"
        ),
        (Ok(()), true, false) => format!(
            "database password rotation finished: {} runs on the new password",
            record.consumer
        ),
        (Ok(()), true, true) => format!(
            "database password rotation finished: {} runs as the new role {}; the old role {} was dropped",
            record.consumer, record.new_role, record.old_role
        ),
        (Ok(()), false, false) => format!(
            "database password rotation undone: the old password is back and {} runs on it",
            record.consumer
        ),
        (Ok(()), false, true) => format!(
            "database password rotation undone: the new role was dropped and {} runs as {} again",
            record.consumer, record.old_role
        ),
    };
    lines.insert(0, headline);
    (lines, credential.is_ok())
}

fn open_passwords(rotation: &StepIntent) -> Result<Passwords, String> {
    let key = StateKey::from_env().map_err(|error| error.to_string())?;
    let sealed = rotation
        .sealed
        .as_deref()
        .ok_or_else(|| "its journal entry holds no sealed passwords".to_string())?;
    let plaintext = key
        .open(
            sealed,
            &seal_context(rotation.op_id, rotation.step_idx, &rotation.sub_step),
        )
        .map_err(|error| error.to_string())?;
    serde_json::from_slice(&plaintext)
        .map_err(|_| "its sealed passwords are unreadable".to_string())
}

/// The running container of a service.
async fn running_container(
    host: &DockerHost,
    environment: &Environment,
    service_name: &str,
) -> Result<String, ExecError> {
    let service = service(environment, service_name)?;
    containers_of(host, environment, service)
        .await?
        .into_iter()
        .find(|container| container.state.running)
        .map(|container| container.id)
        .ok_or_else(|| ExecError::Failed(format!("{service_name} is not running")))
}

/// Role names Deckhand writes into SQL: plain identifiers only.
fn check_role_name(role: &str, variable: &str) -> Result<(), ExecError> {
    let plain = !role.is_empty()
        && role.len() <= 63
        && role
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && role
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_');
    if plain {
        Ok(())
    } else {
        Err(ExecError::Failed(format!(
            "the user in {variable} is not a plain role name (letters, digits and _), so Deckhand does not rotate it — nothing was changed"
        )))
    }
}

/// The role that follows `role` in a `--new-user` rotation by operation
/// `op_id`: `app` → `app_op42`, `app_op42` → `app_op57`.
fn successor_role(role: &str, op_id: i64) -> String {
    let base = match role.rsplit_once("_op") {
        Some((base, number))
            if !base.is_empty() && number.chars().all(|digit| digit.is_ascii_digit()) =>
        {
            base
        }
        _ => role,
    };
    let suffix = format!("_op{op_id}");
    let keep = 63usize.saturating_sub(suffix.len()).min(base.len());
    format!("{}{suffix}", &base[..keep])
}

/// Sets a role's password to a SCRAM verifier: no plaintext in the SQL.
fn set_password_sql(role: &str, verifier: &str) -> String {
    format!("ALTER ROLE \"{role}\" PASSWORD '{verifier}';\n")
}

/// Creates (or completes) the successor role: the old role's attributes and
/// memberships, membership of the old role itself (so it has everything the
/// old role has while both exist), and the new password as a verifier.
/// Running it twice is harmless.
fn create_role_sql(old: &str, new: &str, verifier: &str) -> String {
    format!(
        r#"DO $deckhand$
DECLARE
  source pg_roles%ROWTYPE;
  membership record;
BEGIN
  SELECT * INTO source FROM pg_roles WHERE rolname = '{old}';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'role {old} does not exist';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{new}') THEN
    EXECUTE 'CREATE ROLE "{new}" LOGIN';
  END IF;
  IF source.rolsuper THEN EXECUTE 'ALTER ROLE "{new}" SUPERUSER'; END IF;
  IF source.rolcreatedb THEN EXECUTE 'ALTER ROLE "{new}" CREATEDB'; END IF;
  IF source.rolcreaterole THEN EXECUTE 'ALTER ROLE "{new}" CREATEROLE'; END IF;
  IF source.rolreplication THEN EXECUTE 'ALTER ROLE "{new}" REPLICATION'; END IF;
  IF source.rolbypassrls THEN EXECUTE 'ALTER ROLE "{new}" BYPASSRLS'; END IF;
  EXECUTE format('ALTER ROLE "{new}" CONNECTION LIMIT %s', source.rolconnlimit);
  FOR membership IN
    SELECT granted.rolname FROM pg_auth_members member
      JOIN pg_roles granted ON granted.oid = member.roleid
      WHERE member.member = source.oid
  LOOP
    EXECUTE format('GRANT %I TO "{new}"', membership.rolname);
  END LOOP;
END
$deckhand$;
GRANT "{old}" TO "{new}";
ALTER ROLE "{new}" LOGIN PASSWORD '{verifier}';
"#
    )
}

/// After the consumer runs as the new role: the old role's objects and
/// grants go to the new role, and the old role is dropped. Running it again
/// once the old role is gone does nothing.
fn finalize_sql(old: &str, new: &str) -> String {
    format!(
        r#"DO $deckhand$
DECLARE
  grant_row record;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{old}') THEN
    RETURN;
  END IF;
  EXECUTE 'REASSIGN OWNED BY "{old}" TO "{new}"';
  FOR grant_row IN
    SELECT acl.privilege_type, class.oid::regclass::text AS object, class.relkind
      FROM pg_class class, aclexplode(class.relacl) acl
      WHERE acl.grantee = (SELECT oid FROM pg_roles WHERE rolname = '{old}')
  LOOP
    EXECUTE format('GRANT %s ON %s %s TO "{new}"', grant_row.privilege_type,
      CASE WHEN grant_row.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, grant_row.object);
  END LOOP;
  FOR grant_row IN
    SELECT acl.privilege_type, quote_ident(space.nspname) AS object
      FROM pg_namespace space, aclexplode(space.nspacl) acl
      WHERE acl.grantee = (SELECT oid FROM pg_roles WHERE rolname = '{old}')
  LOOP
    EXECUTE format('GRANT %s ON SCHEMA %s TO "{new}"', grant_row.privilege_type, grant_row.object);
  END LOOP;
  FOR grant_row IN
    SELECT acl.privilege_type FROM pg_database base, aclexplode(base.datacl) acl
      WHERE base.datname = current_database()
        AND acl.grantee = (SELECT oid FROM pg_roles WHERE rolname = '{old}')
  LOOP
    EXECUTE format('GRANT %s ON DATABASE %I TO "{new}"', grant_row.privilege_type, current_database());
  END LOOP;
  EXECUTE 'REVOKE "{old}" FROM "{new}"';
  EXECUTE 'DROP OWNED BY "{old}"';
  EXECUTE 'DROP ROLE "{old}"';
END
$deckhand$;
"#
    )
}

/// Undoes a `--new-user` rotation before its finalize: whatever the new role
/// made goes back to the old role, and the new role is dropped.
fn drop_new_role_sql(old: &str, new: &str) -> String {
    format!(
        r#"DO $deckhand$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{new}') THEN
    RETURN;
  END IF;
  PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{new}';
  EXECUTE 'REASSIGN OWNED BY "{new}" TO "{old}"';
  EXECUTE 'DROP OWNED BY "{new}"';
  EXECUTE 'DROP ROLE "{new}"';
END
$deckhand$;
"#
    )
}

/// Runs SQL through psql in the database container as the configured user,
/// the statements on stdin (never in argv). Holds no plaintext password:
/// passwords only ever reach SQL as SCRAM verifiers.
async fn psql(
    host: &DockerHost,
    container: &str,
    database: &Database,
    script: &str,
) -> Result<(), ExecError> {
    let output = host
        .exec(
            container,
            Exec {
                cmd: vec![
                    "psql".into(),
                    "-U".into(),
                    database.user.clone(),
                    "-d".into(),
                    database.name.clone(),
                    "-v".into(),
                    "ON_ERROR_STOP=1".into(),
                    "-q".into(),
                ],
                env: Vec::new(),
                stdin: Some(script.as_bytes().to_vec()),
                timeout: EXEC_LIMIT,
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_roles_do_not_pile_up_suffixes() {
        assert_eq!(successor_role("app", 42), "app_op42");
        assert_eq!(successor_role("app_op42", 57), "app_op57");
        assert_eq!(successor_role("shop_operator", 3), "shop_operator_op3");
        assert_eq!(successor_role(&"a".repeat(63), 7).len(), 63);
    }

    #[test]
    fn only_plain_role_names_reach_sql() {
        assert!(check_role_name("tasktracker_app", "DATABASE_URL").is_ok());
        for bad in ["", "9lives", "app\"; DROP ROLE x; --", "app-1", "änne"] {
            assert!(check_role_name(bad, "DATABASE_URL").is_err(), "{bad}");
        }
    }

    #[test]
    fn password_sql_holds_a_verifier_not_the_password() {
        let password = Secret::new("hunter2-hunter2");
        let sql = set_password_sql("app", &scram::verifier(&password));
        assert!(sql.starts_with("ALTER ROLE \"app\" PASSWORD 'SCRAM-SHA-256$4096:"));
        assert!(!sql.contains(password.expose()));
    }
}
