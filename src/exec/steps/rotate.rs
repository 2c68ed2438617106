//! The runbook's Secret Rotation as one step, `/rotate jwt|db-password|ssl
//! ENV`. A new secret is generated here, held in `Secret`, and only ever
//! leaves Deckhand as a container's environment variable or on psql's
//! stdin — never in argv, chat, logs, audit or errors.
//!
//! - `jwt`: the consumer's containers are recreated with the new value, one
//!   replica at a time, each healthy before the next.
//! - `db-password`: `ALTER USER` through psql, then the consumer recreated
//!   with the new password in its connection URL and checked healthy (its
//!   readiness endpoint checks the database); on failure the old password
//!   comes back, and the runner restores the old containers.
//! - `ssl`: a new self-signed certificate made with openssl in the proxy's
//!   container, swapped in, `nginx -t`, `nginx -s reload`, and the served
//!   certificate checked to be the new one; on failure the old files return.

use std::time::Duration;

use base64::Engine;
use rand::RngCore;

use crate::config::{DbPassword, EnvSecret, Environment, TlsRotation};
use crate::docker::{DockerHost, Exec, ExecOutput};
use crate::exec::{ExecError, OperationInput};
use crate::plan::Plan;
use crate::secret::Secret;

use super::deploy::{
    Replaced, containers_of, environment, service, wait_container_healthy, wait_endpoints,
};
use super::{RunContext, StepOutcome};

const HEALTH_LIMIT: Duration = Duration::from_secs(120);
const EXEC_LIMIT: Duration = Duration::from_secs(60);

fn which<'a>(input: &OperationInput<'a>) -> &'a str {
    input.action.args.text("secret").unwrap_or_default()
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
            plan.steps.push(format!(
                "set a new password (never shown) for the database user in {} with ALTER USER",
                db.database
            ));
            plan.steps.push(format!(
                "recreate every {} container with the new password in {}, one at a time",
                db.consumer.service, db.consumer.env
            ));
            plan.checks.push(format!(
                "{} healthy and ready (its readiness checks the database)",
                db.consumer.service
            ));
            plan.notes
                .push("on failure the old password and the old containers come back".to_string());
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
fn generate() -> Secret {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl RunContext<'_> {
    /// Runs the rotation the `secret` argument names.
    pub async fn rotate(&mut self) -> Result<StepOutcome, ExecError> {
        let environment = environment(self.input)?;
        let host = self.app.hosts.get(environment.name.as_str()).await?;
        let rotation = &environment.rotation;
        match which(self.input) {
            "jwt" => {
                let jwt = rotation
                    .jwt
                    .as_ref()
                    .ok_or_else(|| not_configured(environment, "jwt"))?;
                let secret = generate();
                let replaced = self
                    .roll_with_secret(&host, environment, jwt, &secret)
                    .await?;
                Ok(StepOutcome::summary(format!(
                    "new JWT secret in {}: {replaced} {} container(s) replaced one at a time; users log in again",
                    jwt.env, jwt.service
                )))
            }
            "db-password" => {
                let db = rotation
                    .db_password
                    .as_ref()
                    .ok_or_else(|| not_configured(environment, "db-password"))?;
                self.rotate_database_password(&host, environment, db).await
            }
            "ssl" => {
                let ssl = rotation
                    .ssl
                    .as_ref()
                    .ok_or_else(|| not_configured(environment, "ssl"))?;
                rotate_certificate(&host, environment, ssl).await
            }
            other => Err(ExecError::Failed(format!(
                "there is no secret \"{other}\" to rotate"
            ))),
        }
    }

    /// Recreates every container of the secret's service with the secret's
    /// variable set to `value`, one at a time, each healthy first.
    async fn roll_with_secret(
        &mut self,
        host: &DockerHost,
        environment: &Environment,
        target: &EnvSecret,
        value: &Secret,
    ) -> Result<usize, ExecError> {
        let service = service(environment, target.service.as_str())?;
        let containers = containers_of(host, environment, service).await?;
        let overrides = [(target.env.clone(), value.expose().to_string())];
        for container in &containers {
            let recreated = host
                .recreate_with_env(container, &container.image_reference, &overrides)
                .await
                .map_err(|error| {
                    ExecError::Failed(format!("replacing {}: {error}", container.name))
                })?;
            let name = recreated.name.clone();
            self.replaced.push(Replaced {
                service: service.name.to_string(),
                recreated,
            });
            wait_container_healthy(host, &name, HEALTH_LIMIT).await?;
        }
        wait_endpoints(service, HEALTH_LIMIT).await?;
        Ok(containers.len())
    }

    async fn rotate_database_password(
        &mut self,
        host: &DockerHost,
        environment: &Environment,
        db: &DbPassword,
    ) -> Result<StepOutcome, ExecError> {
        let database_service = service(environment, db.database.as_str())?;
        let database = database_service.database.as_ref().ok_or_else(|| {
            ExecError::Failed(format!("{} is not a postgres service", db.database))
        })?;
        let database_container = containers_of(host, environment, database_service)
            .await?
            .into_iter()
            .find(|container| container.state.running)
            .ok_or_else(|| ExecError::Failed(format!("{} is not running", db.database)))?;
        let consumer = service(environment, db.consumer.service.as_str())?;
        let consumer_containers = containers_of(host, environment, consumer).await?;
        let current = host
            .env_of(&consumer_containers[0].id)
            .await
            .map_err(|error| ExecError::Failed(error.to_string()))?
            .remove(&db.consumer.env)
            .map(Secret::new)
            .ok_or_else(|| {
                ExecError::Failed(format!(
                    "{} has no {} to update",
                    db.consumer.service, db.consumer.env
                ))
            })?;
        let mut url = url::Url::parse(current.expose()).map_err(|_| {
            ExecError::Failed(format!(
                "{} of {} is not a connection URL",
                db.consumer.env, db.consumer.service
            ))
        })?;
        let old_password = Secret::new(url.password().unwrap_or_default());
        let new_password = generate();
        url.set_password(Some(new_password.expose()))
            .map_err(|()| {
                ExecError::Failed(format!("cannot put a password into {}", db.consumer.env))
            })?;
        let new_url = Secret::new(url.to_string());

        set_password(host, &database_container.id, database, &new_password).await?;
        if let Err(error) = self
            .roll_with_secret(host, environment, &db.consumer, &new_url)
            .await
        {
            let restored =
                match set_password(host, &database_container.id, database, &old_password).await {
                    Ok(()) => "the old password was restored".to_string(),
                    Err(restore) => format!("restoring the old password failed too: {restore}"),
                };
            return Err(ExecError::Failed(format!("{error}; {restored}")));
        }
        Ok(StepOutcome::summary(format!(
            "new password for {} in {}; {} reconnected with it and is ready",
            database.user, db.database, db.consumer.service
        )))
    }
}

/// `ALTER USER … WITH PASSWORD '…'` through psql, the statement on stdin so
/// the password never appears in a process list.
async fn set_password(
    host: &DockerHost,
    container: &str,
    database: &crate::config::Database,
    password: &Secret,
) -> Result<(), ExecError> {
    let literal = password.expose().replace('\'', "''");
    let statement = format!("ALTER USER {} WITH PASSWORD '{literal}';\n", database.user);
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
                stdin: Some(statement.into_bytes()),
                timeout: EXEC_LIMIT,
            },
        )
        .await
        .map_err(|error| ExecError::Failed(error.to_string()))?;
    if output.exit_code != 0 {
        return Err(ExecError::Failed(format!(
            "ALTER USER failed: {}",
            crate::secret::redact(output.stderr_text().trim())
        )));
    }
    Ok(())
}

async fn run_in(host: &DockerHost, container: &str, cmd: &[&str]) -> Result<ExecOutput, ExecError> {
    host.exec(
        container,
        Exec {
            cmd: cmd.iter().map(|part| part.to_string()).collect(),
            env: Vec::new(),
            stdin: None,
            timeout: EXEC_LIMIT,
        },
    )
    .await
    .map_err(|error| ExecError::Failed(error.to_string()))
}

async fn run_ok(
    host: &DockerHost,
    container: &str,
    what: &str,
    cmd: &[&str],
) -> Result<String, ExecError> {
    let output = run_in(host, container, cmd).await?;
    if output.exit_code != 0 {
        return Err(ExecError::Failed(format!(
            "{what} failed (exit {}): {}",
            output.exit_code,
            output.stderr_text().trim()
        )));
    }
    Ok(output.stdout_text())
}

async fn rotate_certificate(
    host: &DockerHost,
    environment: &Environment,
    ssl: &TlsRotation,
) -> Result<StepOutcome, ExecError> {
    let proxy = service(environment, ssl.service.as_str())?;
    let container = containers_of(host, environment, proxy)
        .await?
        .into_iter()
        .find(|container| container.state.running)
        .ok_or_else(|| ExecError::Failed(format!("{} is not running", ssl.service)))?;
    let id = container.id.as_str();
    let cert = format!("{}/cert.pem", ssl.dir);
    let key = format!("{}/key.pem", ssl.dir);
    let days = ssl.days.to_string();
    let subject = format!("/CN={}", ssl.common_name);
    // Clients match host names against subjectAltName only, never the CN.
    let alt_name = match ssl.common_name.parse::<std::net::IpAddr>() {
        Ok(_) => format!("subjectAltName=IP:{}", ssl.common_name),
        Err(_) => format!("subjectAltName=DNS:{}", ssl.common_name),
    };
    run_ok(
        host,
        id,
        "making the certificate",
        &[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            &days,
            "-subj",
            &subject,
            "-addext",
            &alt_name,
            "-keyout",
            &format!("{key}.next"),
            "-out",
            &format!("{cert}.next"),
        ],
    )
    .await?;
    let new_fingerprint = run_ok(
        host,
        id,
        "reading the new certificate",
        &[
            "openssl",
            "x509",
            "-in",
            &format!("{cert}.next"),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    )
    .await?;
    for file in [&cert, &key] {
        run_ok(
            host,
            id,
            "keeping the previous certificate",
            &["cp", "-p", file, &format!("{file}.previous")],
        )
        .await?;
        run_ok(
            host,
            id,
            "installing the new certificate",
            &["mv", "-f", &format!("{file}.next"), file],
        )
        .await?;
    }
    if let Err(error) = run_ok(host, id, "nginx -t", &["nginx", "-t"]).await {
        for file in [&cert, &key] {
            let _ = run_in(host, id, &["mv", "-f", &format!("{file}.previous"), file]).await;
        }
        return Err(ExecError::Failed(format!(
            "{error}; the previous certificate was put back"
        )));
    }
    run_ok(host, id, "nginx -s reload", &["nginx", "-s", "reload"]).await?;
    let served = served_fingerprint(host, id, &ssl.common_name, &new_fingerprint).await;
    if served.trim() != new_fingerprint.trim() {
        return Err(ExecError::Failed(format!(
            "{} still serves another certificate after the reload ({})",
            ssl.service,
            served.trim()
        )));
    }
    let until = run_ok(
        host,
        id,
        "reading the expiry",
        &["openssl", "x509", "-in", &cert, "-noout", "-enddate"],
    )
    .await?;
    Ok(StepOutcome::summary(format!(
        "{} serves a new certificate for CN={} ({}, {})",
        ssl.service,
        ssl.common_name,
        until.trim().replace("notAfter=", "valid until "),
        new_fingerprint
            .trim()
            .replace("sha256 Fingerprint=", "SHA-256 ")
    )))
}

/// The fingerprint of the certificate the proxy serves on 443, polled for up
/// to 10 s until it is `expected`: nginx reloads its workers asynchronously,
/// so the old certificate may be served for a moment after the reload.
async fn served_fingerprint(
    host: &DockerHost,
    container: &str,
    common_name: &str,
    expected: &str,
) -> String {
    // A fixed pipeline; the only value in it is the configured common name,
    // which config validation limits to host name characters.
    let script = format!(
        "echo | openssl s_client -connect 127.0.0.1:443 -servername {common_name} 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
    );
    let mut last = String::new();
    for _attempt in 0..40 {
        if let Ok(output) = run_in(host, container, &["sh", "-c", &script]).await {
            last = output.stdout_text();
            if last.trim() == expected.trim() {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}
