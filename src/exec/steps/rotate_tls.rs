//! `/rotate ssl ENV` in journaled stages: a new self-signed certificate made
//! with openssl in the proxy's container (`make`), the current files kept as
//! `.previous` (`backup`), the new ones moved in (`install`), `nginx -t`,
//! then `nginx -s reload` and the served certificate checked to be the new
//! one (`reload`). On failure, and after a crash, the result is one of two:
//! the new certificate verified as served, or the previous files back (and
//! loaded).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Environment, TlsRotation};
use crate::docker::{DockerHost, Exec, ExecOutput};
use crate::exec::ExecError;
use crate::store::StepIntent;

use super::deploy::{containers_of, service};
use super::journal::{Journal, read_data};
use super::rotate::ROTATION_SUB_STEP;
use super::{Progress, StepOutcome};

/// The intent kind of a certificate rotation.
pub const KIND: &str = "rotate_certificate";

const EXEC_LIMIT: Duration = Duration::from_secs(60);

/// What the intent records: where the files are and which certificate is
/// the new one (a fingerprint is public).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    service: String,
    container: String,
    dir: String,
    common_name: String,
    new_fingerprint: Option<String>,
}

impl Record {
    fn cert(&self) -> String {
        format!("{}/cert.pem", self.dir)
    }

    fn key(&self) -> String {
        format!("{}/key.pem", self.dir)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Make,
    Backup,
    Install,
    Reload,
    Done,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Make => "make",
            Stage::Backup => "backup",
            Stage::Install => "install",
            Stage::Reload => "reload",
            Stage::Done => "done",
        }
    }
}

/// A certificate rotation, stage by stage.
pub struct CertificateRotation<'a> {
    host: DockerHost,
    journal: Journal,
    config: &'a TlsRotation,
    record: Record,
    stage: Stage,
}

impl<'a> CertificateRotation<'a> {
    /// Finds the running proxy; changes nothing.
    ///
    /// # Errors
    /// The proxy is not running.
    pub async fn begin(
        environment: &'a Environment,
        host: DockerHost,
        journal: Journal,
        config: &'a TlsRotation,
    ) -> Result<CertificateRotation<'a>, ExecError> {
        let proxy = service(environment, config.service.as_str())?;
        let container = containers_of(&host, environment, proxy)
            .await?
            .into_iter()
            .find(|container| container.state.running)
            .ok_or_else(|| ExecError::Failed(format!("{} is not running", config.service)))?;
        Ok(CertificateRotation {
            host,
            journal,
            config,
            record: Record {
                service: config.service.to_string(),
                container: container.id,
                dir: config.dir.clone(),
                common_name: config.common_name.clone(),
                new_fingerprint: None,
            },
            stage: Stage::Make,
        })
    }

    /// Runs the next stage (journaled first).
    ///
    /// # Errors
    /// A failed stage, after the previous files were put back (and loaded).
    pub async fn advance(&mut self) -> Result<Progress, ExecError> {
        match self.run_stage().await {
            Ok(progress) => Ok(progress),
            Err(error) => {
                let restored = if self.stage >= Stage::Install {
                    restore_previous(&self.host, &self.record).await
                } else {
                    remove_next(&self.host, &self.record).await;
                    Ok(())
                };
                self.journal.clear(ROTATION_SUB_STEP).await;
                Err(ExecError::Failed(match restored {
                    Ok(()) => format!("{error}; the previous certificate was put back"),
                    Err(restore) => format!(
                        "{error}; putting the previous certificate back failed too: {restore} — check {} now",
                        self.record.service
                    ),
                }))
            }
        }
    }

    async fn run_stage(&mut self) -> Result<Progress, ExecError> {
        let (host, id) = (&self.host, self.record.container.clone());
        let (cert, key) = (self.record.cert(), self.record.key());
        let stage = self.stage;
        if stage != Stage::Done {
            self.journal
                .write(ROTATION_SUB_STEP, KIND, stage.as_str(), &self.record, None)
                .await?;
        }
        match stage {
            Stage::Make => {
                let days = self.config.days.to_string();
                let subject = format!("/CN={}", self.config.common_name);
                // Clients match host names against subjectAltName only, never the CN.
                let alt_name = match self.config.common_name.parse::<std::net::IpAddr>() {
                    Ok(_) => format!("subjectAltName=IP:{}", self.config.common_name),
                    Err(_) => format!("subjectAltName=DNS:{}", self.config.common_name),
                };
                run_ok(
                    host,
                    &id,
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
                let fingerprint = fingerprint_of(host, &id, &format!("{cert}.next")).await?;
                self.record.new_fingerprint = Some(fingerprint);
                self.stage = Stage::Backup;
                Ok(Progress::Stage("new certificate made".to_string()))
            }
            Stage::Backup => {
                for file in [&cert, &key] {
                    run_ok(
                        host,
                        &id,
                        "keeping the previous certificate",
                        &["cp", "-p", file, &format!("{file}.previous")],
                    )
                    .await?;
                }
                self.stage = Stage::Install;
                Ok(Progress::Stage("previous certificate kept".to_string()))
            }
            Stage::Install => {
                for file in [&cert, &key] {
                    run_ok(
                        host,
                        &id,
                        "installing the new certificate",
                        &["mv", "-f", &format!("{file}.next"), file],
                    )
                    .await?;
                }
                run_ok(host, &id, "nginx -t", &["nginx", "-t"]).await?;
                self.stage = Stage::Reload;
                Ok(Progress::Stage("new certificate installed".to_string()))
            }
            Stage::Reload => {
                run_ok(host, &id, "nginx -s reload", &["nginx", "-s", "reload"]).await?;
                let expected = self.record.new_fingerprint.clone().unwrap_or_default();
                let served =
                    served_fingerprint(host, &id, &self.config.common_name, &expected).await;
                if served.trim() != expected.trim() {
                    return Err(ExecError::Failed(format!(
                        "{} still serves another certificate after the reload ({})",
                        self.config.service,
                        served.trim()
                    )));
                }
                self.stage = Stage::Done;
                Ok(Progress::Stage("reloaded and verified".to_string()))
            }
            Stage::Done => {
                let until = run_ok(
                    host,
                    &id,
                    "reading the expiry",
                    &["openssl", "x509", "-in", &cert, "-noout", "-enddate"],
                )
                .await
                .unwrap_or_default();
                self.journal.clear(ROTATION_SUB_STEP).await;
                let fingerprint = self.record.new_fingerprint.clone().unwrap_or_default();
                Ok(Progress::Done(StepOutcome::summary(format!(
                    "{} serves a new certificate for CN={} ({}, {})",
                    self.config.service,
                    self.config.common_name,
                    until.trim().replace("notAfter=", "valid until "),
                    fingerprint
                        .trim()
                        .replace("sha256 Fingerprint=", "SHA-256 ")
                ))))
            }
        }
    }
}

/// Settles an interrupted certificate rotation: before the install nothing
/// was changed (the unused new files are removed); from the install on,
/// the new certificate stays only if it is verified as served, otherwise the
/// previous files come back and are loaded.
///
/// # Errors
/// An unreadable intent, or the proxy not answering.
pub(crate) async fn settle(host: &DockerHost, intent: &StepIntent) -> Result<String, String> {
    let record: Record = read_data(intent)?;
    match intent.stage.as_str() {
        "make" | "backup" => {
            remove_next(host, &record).await;
            Ok(format!(
                "TLS rotation undone: {} keeps the previous certificate",
                record.service
            ))
        }
        _ => {
            let expected = record.new_fingerprint.clone().unwrap_or_default();
            let served =
                served_fingerprint(host, &record.container, &record.common_name, &expected).await;
            let on_disk = fingerprint_of(host, &record.container, &record.cert())
                .await
                .unwrap_or_default();
            if !expected.is_empty()
                && served.trim() == expected.trim()
                && on_disk.trim() == expected.trim()
            {
                return Ok(format!(
                    "TLS rotation finished: {} serves the new certificate (verified)",
                    record.service
                ));
            }
            restore_previous(host, &record)
                .await
                .map_err(|error| format!("TLS rotation could not be undone: {error}"))?;
            Ok(format!(
                "TLS rotation undone: {} serves the previous certificate again",
                record.service
            ))
        }
    }
}

/// Puts the `.previous` files back (when there), checks and reloads.
async fn restore_previous(host: &DockerHost, record: &Record) -> Result<(), ExecError> {
    for file in [record.cert(), record.key()] {
        let previous = format!("{file}.previous");
        if run_in(host, &record.container, &["test", "-f", &previous])
            .await?
            .exit_code
            == 0
        {
            run_ok(
                host,
                &record.container,
                "restoring the previous certificate",
                &["cp", "-p", &previous, &file],
            )
            .await?;
        }
    }
    remove_next(host, record).await;
    run_ok(host, &record.container, "nginx -t", &["nginx", "-t"]).await?;
    run_ok(
        host,
        &record.container,
        "nginx -s reload",
        &["nginx", "-s", "reload"],
    )
    .await?;
    Ok(())
}

/// Removes unused `.next` files; a failure leaves only unused files.
async fn remove_next(host: &DockerHost, record: &Record) {
    let cert = format!("{}.next", record.cert());
    let key = format!("{}.next", record.key());
    let _ = run_in(host, &record.container, &["rm", "-f", &cert, &key]).await;
}

async fn fingerprint_of(
    host: &DockerHost,
    container: &str,
    file: &str,
) -> Result<String, ExecError> {
    run_ok(
        host,
        container,
        "reading the certificate",
        &[
            "openssl",
            "x509",
            "-in",
            file,
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    )
    .await
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
