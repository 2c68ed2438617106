//! `[pagerduty]` → `PagerDutySettings`: the variable holding the webhook
//! signing secret, the REST API for incident notes, and which PagerDuty
//! services map to which environment and channel. Secrets are named by
//! environment variable and read when `serve` starts, never stored here.

use std::collections::{BTreeMap, BTreeSet};

use super::raw::{RawPagerDuty, RawPagerDutyService};
use super::{Environment, check_base_url, check_platform_id, join_names};
use crate::names::{EnvName, Platform};
use crate::problem::{KeyPath, Problems, Source};

/// `[pagerduty]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagerDutySettings {
    /// Variable with the webhook subscription's signing secret.
    pub secret_env: String,
    /// REST API base URL, without a trailing `/`.
    pub api_url: String,
    /// Notes on incidents, when configured.
    pub notes: Option<NoteSettings>,
    /// Mapped PagerDuty services.
    pub services: Vec<PagerDutyService>,
}

/// What adding notes needs. Present only when `add_notes = true`, which
/// validation allows only with a token variable and a sender email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSettings {
    /// Variable with the REST API key.
    pub api_token_env: String,
    /// The PagerDuty user's email, sent as `From`.
    pub from_email: String,
}

/// One mapped PagerDuty service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagerDutyService {
    /// PagerDuty's service id, e.g. `PBACKND`.
    pub id: String,
    /// The environment diagnosed for its incidents.
    pub environment: EnvName,
    /// Where the report is posted.
    pub platform: Platform,
    /// The channel on that platform.
    pub channel: String,
}

impl PagerDutySettings {
    /// The mapping of a PagerDuty service id, if it is mapped.
    pub fn service(&self, id: &str) -> Option<&PagerDutyService> {
        self.services.iter().find(|service| service.id == id)
    }
}

/// Validates `[pagerduty]` against the environments.
pub(super) fn check_pagerduty(
    source: &Source,
    raw: &RawPagerDuty,
    environments: &BTreeMap<EnvName, Environment>,
    env_names: &[String],
    problems: &mut Problems,
) -> Option<PagerDutySettings> {
    let key = KeyPath::root().key("pagerduty");
    let before = problems.0.len();
    if raw.secret_env.trim().is_empty() {
        problems.0.push(source.problem(
            &key.key("secret_env"),
            "name the environment variable that holds the webhook signing secret",
        ));
    }
    let api_url = raw
        .api_url
        .clone()
        .unwrap_or_else(|| "https://api.pagerduty.com".to_string());
    check_base_url(source, &key.key("api_url"), &api_url, problems);
    let notes = match (raw.add_notes, &raw.api_token_env, &raw.from_email) {
        (false, _, _) => None,
        (true, Some(api_token_env), Some(from_email)) if from_email.contains('@') => {
            Some(NoteSettings {
                api_token_env: api_token_env.clone(),
                from_email: from_email.clone(),
            })
        }
        (true, Some(_), Some(from_email)) => {
            problems.0.push(source.problem(
                &key.key("from_email"),
                format!("\"{from_email}\" is not an email address"),
            ));
            None
        }
        (true, _, _) => {
            problems.0.push(source.problem(
                &key.key("add_notes"),
                "add_notes needs api_token_env (the variable with the REST API key) and from_email (the PagerDuty user notes are written as)",
            ));
            None
        }
    };
    let mut seen = BTreeSet::new();
    let services = raw
        .services
        .iter()
        .enumerate()
        .filter_map(|(service_idx, service)| {
            let service_key = key.key("services").index(service_idx);
            if !seen.insert(service.id.clone()) {
                problems.0.push(source.problem(
                    &service_key.key("id"),
                    format!("PagerDuty service \"{}\" is mapped twice", service.id),
                ));
                return None;
            }
            check_service(
                source,
                &service_key,
                service,
                environments,
                env_names,
                problems,
            )
        })
        .collect();
    (problems.0.len() == before).then(|| PagerDutySettings {
        secret_env: raw.secret_env.clone(),
        api_url: api_url.trim_end_matches('/').to_string(),
        notes,
        services,
    })
}

fn check_service(
    source: &Source,
    key: &KeyPath,
    raw: &RawPagerDutyService,
    environments: &BTreeMap<EnvName, Environment>,
    env_names: &[String],
    problems: &mut Problems,
) -> Option<PagerDutyService> {
    let before = problems.0.len();
    let id_ok = raw.id.len() >= 2
        && raw
            .id
            .chars()
            .all(|character| character.is_ascii_uppercase() || character.is_ascii_digit());
    if !id_ok {
        problems.0.push(source.problem(
            &key.key("id"),
            format!(
                "\"{}\" is not a PagerDuty service id (upper-case letters and digits, such as \"PBACKND\")",
                raw.id
            ),
        ));
    }
    let environment = environments.get(raw.environment.as_str());
    if environment.is_none() && !env_names.contains(&raw.environment) {
        problems.0.push(source.problem(
            &key.key("environment"),
            format!(
                "no environment named \"{}\" (defined: {})",
                raw.environment,
                join_names(env_names.iter().map(String::as_str))
            ),
        ));
    }
    let platform = Platform::from_name(&raw.platform);
    match platform {
        None => problems.0.push(source.problem(
            &key.key("platform"),
            format!(
                "unknown platform \"{}\" (known: slack, discord, console)",
                raw.platform
            ),
        )),
        Some(platform) => {
            if let Some(message) = check_platform_id(platform, &raw.channel) {
                problems
                    .0
                    .push(source.problem(&key.key("channel"), message));
            }
        }
    }
    if problems.0.len() > before {
        return None;
    }
    Some(PagerDutyService {
        id: raw.id.clone(),
        // A declared environment that failed validation was reported already.
        environment: environment?.name.clone(),
        platform: platform?,
        channel: raw.channel.clone(),
    })
}
