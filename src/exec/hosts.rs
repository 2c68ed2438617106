//! Docker host handles per environment, connected on first use and reused.
//! A host that cannot be reached gives an error naming the environment and
//! the host, before anything is changed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::config::{Config, Host};
use crate::docker::{DockerError, DockerHost, HostSpec, TlsFiles};
use crate::exec::ExecError;

/// The Docker hosts of every environment.
#[derive(Debug)]
pub struct Hosts {
    by_env: BTreeMap<String, HostSpec>,
    connected: tokio::sync::Mutex<HashMap<String, DockerHost>>,
}

impl Hosts {
    /// Hosts as config declares them; nothing connects yet.
    pub fn new(config: &Config) -> Hosts {
        Hosts {
            by_env: config
                .environments
                .values()
                .map(|environment| (environment.name.to_string(), spec_of(&environment.host)))
                .collect(),
            connected: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The connected host of an environment, connecting on first use.
    ///
    /// # Errors
    /// `HostUnreachable` naming the environment and host.
    pub async fn get(&self, env: &str) -> Result<DockerHost, ExecError> {
        let Some(spec) = self.by_env.get(env) else {
            return Err(ExecError::Failed(format!("no environment named \"{env}\"")));
        };
        let mut connected = self.connected.lock().await;
        if let Some(host) = connected.get(env) {
            return Ok(host.clone());
        }
        // The lock is held across the connect so that concurrent operations
        // of one environment share a single connection attempt.
        let host = DockerHost::connect(spec)
            .await
            .map_err(|error| unreachable(env, spec, &error))?;
        connected.insert(env.to_string(), host.clone());
        Ok(host)
    }

    /// Pings every environment's host; `ok` or why not, per environment.
    pub async fn check_all(&self, timeout: Duration) -> Vec<(String, String)> {
        let mut results = Vec::new();
        for env in self.by_env.keys() {
            let status = match tokio::time::timeout(timeout, self.ping(env)).await {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {}s", timeout.as_secs()),
            };
            results.push((env.clone(), status));
        }
        results
    }

    async fn ping(&self, env: &str) -> Result<(), ExecError> {
        let host = self.get(env).await?;
        host.ping()
            .await
            .map_err(|error| match self.by_env.get(env) {
                Some(spec) => unreachable(env, spec, &error),
                None => ExecError::Failed(error.to_string()),
            })
    }
}

fn spec_of(host: &Host) -> HostSpec {
    HostSpec {
        name: host.name.clone(),
        endpoint: host.endpoint.clone(),
        tls: host.tls.as_ref().map(|tls| TlsFiles {
            ca: tls.ca.clone(),
            cert: tls.cert.clone(),
            key: tls.key.clone(),
        }),
        ssh_key: host.ssh_key.clone(),
        timeout: host.timeout,
    }
}

fn unreachable(env: &str, spec: &HostSpec, error: &DockerError) -> ExecError {
    let reason = match error {
        DockerError::Unreachable { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    ExecError::HostUnreachable {
        env: env.to_string(),
        endpoint: spec.endpoint.clone(),
        reason,
    }
}
