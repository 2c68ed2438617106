//! `config/deckhand.toml` → a validated `Config`: environments and their
//! Docker hosts and services, roles and the people who hold them, the store
//! and the listener. Validation checks every cross-reference and reports
//! every problem with its file and line before anything connects anywhere.
//! Command files are the catalog's business, not this module's.

mod audit;
mod diagnose;
mod pagerduty;
mod raw;
mod secrets;
mod trust;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::parse_duration;
use crate::names::{EnvName, Platform, RoleName, ServiceName, UserName, is_plain_name};
use crate::problem::{KeyPath, Problems, Source};

pub use audit::AuditSettings;
pub use diagnose::{DiagnoseSettings, MigrationStatus, Thresholds, TlsEndpoint};
pub use pagerduty::{NoteSettings, PagerDutyService, PagerDutySettings};
pub use raw::RawConfig;
pub use trust::{ConsoleSettings, RESERVED_USER_NAMES, TrustSettings};

/// Default location of the config file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/deckhand.toml";

/// The validated configuration. Code past start-up never re-checks what
/// this type guarantees: every role a user holds exists, every environment
/// has a Docker host, every service can be found. Its `Debug` never shows
/// the store URL's password.
#[derive(Clone)]
pub struct Config {
    /// The config file this came from.
    pub file: PathBuf,
    /// The folder of command files.
    pub commands_dir: PathBuf,
    /// Store URL with relative SQLite paths made absolute.
    pub store_url: String,
    /// Deckhand's HTTP listener, if one is configured.
    pub listen: Option<SocketAddr>,
    /// Commands people who map to no role may run; the catalog checks that
    /// each exists and is read-only.
    pub unmapped_may_run: Vec<String>,
    /// Reaction names that approve and reject.
    pub approval_emoji: ApprovalEmoji,
    /// Leases of running operations and the shutdown grace.
    pub operations: OperationSettings,
    /// Roles, by name, with their descriptions and platform groups.
    pub roles: BTreeMap<RoleName, Role>,
    /// People who may use Deckhand.
    pub users: Vec<User>,
    /// Environments, by name.
    pub environments: BTreeMap<EnvName, Environment>,
    /// The Slack app, if configured.
    pub slack: Option<SlackSettings>,
    /// The Discord application, if configured.
    pub discord: Option<DiscordSettings>,
    /// PagerDuty webhooks and notes, if configured.
    pub pagerduty: Option<PagerDutySettings>,
    /// The audit chain's key variables, checkpoints and refusal summaries.
    pub audit: AuditSettings,
    /// Who may approve without a `[[users]]` entry, and what the console may do.
    pub trust: TrustSettings,
}

/// `[operations]`, validated: how a process owns the operations it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationSettings {
    /// How often leases are renewed.
    pub lease_renew: Duration,
    /// How long a lease holds without renewal.
    pub lease_expiry: Duration,
    /// How long shutdown waits for running operations.
    pub shutdown_grace: Duration,
    /// How long delivery ids are remembered.
    pub delivery_retention: Duration,
}

impl Default for OperationSettings {
    fn default() -> OperationSettings {
        OperationSettings {
            lease_renew: Duration::from_secs(2),
            lease_expiry: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(120),
            delivery_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A role and the platform groups whose members hold it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Role {
    /// What it is for.
    pub description: String,
    /// Slack user group ids.
    pub slack_usergroups: Vec<String>,
    /// Discord guild role ids.
    pub discord_roles: Vec<String>,
}

/// How Deckhand reaches Slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    /// Socket Mode over a WebSocket Slack hands out.
    Socket,
    /// The HTTP Events API on Deckhand's listener.
    Http,
}

/// `[slack]`, validated. Tokens are named by environment variable and
/// read when the adapter starts, so they never sit in config files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackSettings {
    /// Socket or HTTP.
    pub mode: SlackMode,
    /// Variable with the bot token.
    pub bot_token_env: String,
    /// Variable with the app-level token (socket mode).
    pub app_token_env: Option<String>,
    /// Variable with the signing secret (http mode).
    pub signing_secret_env: Option<String>,
    /// Web API base URL.
    pub api_url: String,
    /// How long user group memberships are cached.
    pub usergroup_ttl: Duration,
    /// Workspaces served; every workspace when empty.
    pub team_ids: Vec<String>,
}

/// How Deckhand reaches Discord.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscordMode {
    /// The gateway WebSocket.
    Gateway,
    /// The HTTP interactions endpoint on Deckhand's listener.
    Http,
}

/// `[discord]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordSettings {
    /// Gateway or HTTP interactions.
    pub mode: DiscordMode,
    /// Variable with the bot token.
    pub token_env: String,
    /// The application id.
    pub application_id: String,
    /// The application's public key (hex), for the interactions endpoint.
    pub public_key: Option<String>,
    /// Guilds to register commands in.
    pub guild_ids: Vec<String>,
    /// REST base URL.
    pub api_url: String,
    /// How long a person's guild roles are believed without a fresh look.
    pub role_ttl: Duration,
}

/// Reactions that approve and reject an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalEmoji {
    /// Approves, e.g. `white_check_mark` (✅).
    pub approve: String,
    /// Rejects, e.g. `x` (❌).
    pub reject: String,
}

/// A person and their identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Name used in messages and the audit log.
    pub name: UserName,
    /// Roles held.
    pub roles: Vec<RoleName>,
    /// Console name.
    pub console: Option<String>,
    /// Slack user id.
    pub slack: Option<String>,
    /// Discord user id.
    pub discord: Option<String>,
}

impl User {
    /// The person's id on a platform, if they have one there.
    pub fn id_on(&self, platform: Platform) -> Option<&str> {
        match platform {
            Platform::Console => self.console.as_deref(),
            Platform::Slack => self.slack.as_deref(),
            Platform::Discord => self.discord.as_deref(),
        }
    }
}

/// A Docker host as config declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Name in `[hosts]`.
    pub name: String,
    /// `unix://…`, `tcp://…` or `ssh://…`.
    pub endpoint: String,
    /// Client certificate files for TLS.
    pub tls: Option<TlsFiles>,
    /// Private key for `ssh://`, resolved against the config file's folder.
    pub ssh_key: Option<PathBuf>,
    /// Timeout of each Docker API call.
    pub timeout: Duration,
}

/// TLS client certificate files, resolved against the config file's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate.
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: PathBuf,
    /// Client key.
    pub key: PathBuf,
}

/// An environment: a Docker host and the services on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Its name.
    pub name: EnvName,
    /// What it is, for `/help` and `/status`.
    pub description: Option<String>,
    /// The Docker host.
    pub host: Host,
    /// Compose project whose labels identify services.
    pub compose_project: Option<String>,
    /// Whether a rollback leaves the environment locked.
    pub lock_after_rollback: bool,
    /// Folder on the Docker host for database backups.
    pub backup_dir: Option<String>,
    /// Registry credentials by environment variable name.
    pub registry: Option<RegistryCredentialsEnv>,
    /// Audit channel per platform.
    pub audit_channels: BTreeMap<Platform, String>,
    /// Services, by name.
    pub services: BTreeMap<ServiceName, Service>,
    /// How `/diagnose` checks it.
    pub diagnose: DiagnoseSettings,
    /// Only dangling images with this label (`key` or `key=value`) are removed by
    /// `/cleanup`; all of the host's when `None`.
    pub cleanup_image_label: Option<String>,
    /// Where `/rotate` finds each secret.
    pub rotation: Rotation,
}

/// Where each rotatable secret lives in an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// The JWT signing secret.
    pub jwt: Option<EnvSecret>,
    /// The database password.
    pub db_password: Option<DbPassword>,
    /// The TLS certificate.
    pub ssl: Option<TlsRotation>,
}

/// A secret held in an environment variable of a service's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSecret {
    /// The service.
    pub service: ServiceName,
    /// The variable.
    pub env: String,
}

/// The database password and its consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPassword {
    /// The PostgreSQL service.
    pub database: ServiceName,
    /// The consumer and its connection URL variable.
    pub consumer: EnvSecret,
}

/// The certificate a proxy serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRotation {
    /// The proxy service.
    pub service: ServiceName,
    /// Folder of `cert.pem` and `key.pem` in its container.
    pub dir: String,
    /// Common name of new certificates.
    pub common_name: String,
    /// Validity of new certificates, in days.
    pub days: u32,
}

/// Names of the environment variables that hold registry credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCredentialsEnv {
    /// Variable with the user name.
    pub username_env: String,
    /// Variable with the password or token.
    pub password_env: String,
}

/// How a service's containers are found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// By compose labels: project and service.
    Compose {
        /// `com.docker.compose.project`.
        project: String,
        /// `com.docker.compose.service`.
        service: String,
    },
    /// By container name.
    Container(String),
}

/// What a service is, for diagnostics and database steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// An application (the default).
    App,
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
    /// nginx reverse proxy.
    Nginx,
    /// Anything else.
    Other,
}

/// A service of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name.
    pub name: ServiceName,
    /// How its containers are found.
    pub selector: Selector,
    /// Image template with `{ref}`; services without one cannot be deployed.
    pub image_template: Option<String>,
    /// Base URL of its HTTP endpoints as Deckhand reaches them.
    pub url: Option<String>,
    /// Health endpoint paths.
    pub health: Vec<String>,
    /// What it is.
    pub kind: ServiceKind,
    /// Database user and name, for PostgreSQL services.
    pub database: Option<Database>,
}

/// A PostgreSQL database's user and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// User.
    pub user: String,
    /// Database name.
    pub name: String,
}

impl Config {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// Every problem found, each with file and line.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            Problems(vec![crate::problem::Problem {
                file: path.to_path_buf(),
                line: None,
                key: String::new(),
                message: format!("cannot read the config file: {error}"),
            }])
        })?;
        Config::from_source(&Source::new(path, text))
    }

    /// Validates config text that was already read.
    ///
    /// # Errors
    /// Every problem found, each with file and line.
    pub fn from_source(source: &Source) -> Result<Config, Problems> {
        let raw: RawConfig = toml::from_str(source.text())
            .map_err(|error| Problems(vec![source.problem_from_toml(&error)]))?;
        validate(source, raw)
    }

    /// The environment of that name.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.get(name)
    }

    /// The person with this id on this platform.
    pub fn user_by_platform_id(&self, platform: Platform, id: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|user| user.id_on(platform) == Some(id))
    }

    /// Roles whose platform groups include one of `groups` (Slack user
    /// group ids, Discord guild role ids).
    pub fn roles_of_groups(&self, platform: Platform, groups: &[String]) -> Vec<RoleName> {
        self.roles
            .iter()
            .filter(|(_, role)| {
                let role_groups = match platform {
                    Platform::Slack => &role.slack_usergroups,
                    Platform::Discord => &role.discord_roles,
                    Platform::Console => return false,
                };
                role_groups.iter().any(|group| groups.contains(group))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The person with this Deckhand name.
    pub fn user_named(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|user| user.name.as_str() == name)
    }
}

fn validate(source: &Source, raw: RawConfig) -> Result<Config, Problems> {
    let mut problems = Problems::default();
    let root = KeyPath::root();
    let base_dir = absolute_folder_of(source.path());

    let store_url = resolve_store_url(&raw.store.url, &base_dir).unwrap_or_else(|message| {
        problems
            .0
            .push(source.problem(&root.key("store").key("url"), message));
        String::new()
    });
    let listen = raw.server.listen.as_deref().and_then(|listen| {
        listen
            .parse::<SocketAddr>()
            .map_err(|_| {
                problems.0.push(source.problem(
                    &root.key("server").key("listen"),
                    format!("\"{listen}\" is not an address and port such as \"127.0.0.1:8088\""),
                ))
            })
            .ok()
    });

    let operations = check_operations(source, &raw.operations, &mut problems);
    let roles = check_roles(source, &raw, &mut problems);
    let users = check_users(source, &raw, &roles, &mut problems);
    let hosts = check_hosts(source, &raw, &base_dir, &mut problems);
    let environments = check_environments(source, &raw, &hosts, &mut problems);
    let slack = raw
        .slack
        .as_ref()
        .and_then(|slack| check_slack(source, slack, &mut problems));
    if let Some(settings) = &slack
        && settings.mode == SlackMode::Http
        && raw.server.listen.is_none()
    {
        problems.0.push(source.problem(
            &root.key("slack").key("mode"),
            "http mode needs [server] listen: Slack posts commands, clicks and events to Deckhand's listener",
        ));
    }
    let discord = raw
        .discord
        .as_ref()
        .and_then(|discord| check_discord(source, discord, &mut problems));

    let env_names: Vec<String> = raw.environments.keys().cloned().collect();
    if raw.pagerduty.is_some() && raw.server.listen.is_none() {
        problems.0.push(source.problem(
            &root.key("pagerduty"),
            "PagerDuty webhooks arrive on Deckhand's listener; set server.listen",
        ));
    }
    let pagerduty = raw.pagerduty.as_ref().and_then(|pagerduty| {
        pagerduty::check_pagerduty(source, pagerduty, &environments, &env_names, &mut problems)
    });
    let commands_dir = normalize(&base_dir.join(raw.commands.as_deref().unwrap_or("../commands")));
    let audit = audit::check_audit(source, &raw.audit, &base_dir, &mut problems);
    let trust = trust::trust_settings(&raw);
    if !problems.is_empty() {
        return Err(problems);
    }
    let config = Config {
        file: source.path().to_path_buf(),
        commands_dir,
        store_url,
        listen,
        unmapped_may_run: raw.access.unmapped_may_run,
        approval_emoji: ApprovalEmoji {
            approve: raw
                .approvals
                .approve_emoji
                .unwrap_or_else(|| "white_check_mark".to_string()),
            reject: raw
                .approvals
                .reject_emoji
                .unwrap_or_else(|| "x".to_string()),
        },
        operations,
        roles,
        users,
        environments,
        slack,
        discord,
        pagerduty,
        audit,
        trust,
    };
    secrets::register(&config);
    Ok(config)
}

fn check_operations(
    source: &Source,
    raw: &raw::RawOperations,
    problems: &mut Problems,
) -> OperationSettings {
    let key = KeyPath::root().key("operations");
    let defaults = OperationSettings::default();
    let mut duration = |name: &str, text: Option<&String>, default: Duration| {
        check_duration(
            source,
            &key.key(name),
            text.map(String::as_str),
            default,
            problems,
        )
        .unwrap_or(default)
    };
    let settings = OperationSettings {
        lease_renew: duration(
            "lease_renew",
            raw.lease_renew.as_ref(),
            defaults.lease_renew,
        ),
        lease_expiry: duration(
            "lease_expiry",
            raw.lease_expiry.as_ref(),
            defaults.lease_expiry,
        ),
        shutdown_grace: duration(
            "shutdown_grace",
            raw.shutdown_grace.as_ref(),
            defaults.shutdown_grace,
        ),
        delivery_retention: duration(
            "delivery_retention",
            raw.delivery_retention.as_ref(),
            defaults.delivery_retention,
        ),
    };
    if settings.lease_expiry < settings.lease_renew * 2 {
        problems.0.push(source.problem(
            &key.key("lease_expiry"),
            format!(
                "{} must be at least twice lease_renew ({}), or a live owner could lose its operations between two renewals",
                crate::duration::format_duration(settings.lease_expiry),
                crate::duration::format_duration(settings.lease_renew)
            ),
        ));
    }
    settings
}

fn check_slack(
    source: &Source,
    raw: &raw::RawSlack,
    problems: &mut Problems,
) -> Option<SlackSettings> {
    let key = KeyPath::root().key("slack");
    let before = problems.0.len();
    let mode = match raw.mode.as_deref().unwrap_or("socket") {
        "socket" => SlackMode::Socket,
        "http" => SlackMode::Http,
        other => {
            problems.0.push(source.problem(
                &key.key("mode"),
                format!("unknown mode \"{other}\" (known: socket, http)"),
            ));
            SlackMode::Socket
        }
    };
    if mode == SlackMode::Socket && raw.app_token_env.is_none() {
        problems.0.push(source.problem(
            &key,
            "socket mode needs app_token_env naming the variable that holds the xapp- token",
        ));
    }
    if mode == SlackMode::Http && raw.signing_secret_env.is_none() {
        problems.0.push(source.problem(
            &key,
            "http mode needs signing_secret_env naming the variable that holds the signing secret",
        ));
    }
    let usergroup_ttl = check_duration(
        source,
        &key.key("usergroup_ttl"),
        raw.usergroup_ttl.as_deref(),
        Duration::from_secs(300),
        problems,
    )
    .unwrap_or(Duration::from_secs(300));
    let api_url = raw
        .api_url
        .clone()
        .unwrap_or_else(|| "https://slack.com/api".to_string());
    check_base_url(source, &key.key("api_url"), &api_url, problems);
    for (team_idx, team) in raw.team_ids.iter().enumerate() {
        if let Some(message) = check_platform_id(Platform::Slack, team) {
            problems
                .0
                .push(source.problem(&key.key("team_ids").index(team_idx), message));
        }
    }
    (problems.0.len() == before).then(|| SlackSettings {
        mode,
        bot_token_env: raw.bot_token_env.clone(),
        app_token_env: raw.app_token_env.clone(),
        signing_secret_env: raw.signing_secret_env.clone(),
        api_url: api_url.trim_end_matches('/').to_string(),
        usergroup_ttl,
        team_ids: raw.team_ids.clone(),
    })
}

fn check_discord(
    source: &Source,
    raw: &raw::RawDiscord,
    problems: &mut Problems,
) -> Option<DiscordSettings> {
    let key = KeyPath::root().key("discord");
    let before = problems.0.len();
    let mode = match raw.mode.as_deref().unwrap_or("gateway") {
        "gateway" => DiscordMode::Gateway,
        "http" => DiscordMode::Http,
        other => {
            problems.0.push(source.problem(
                &key.key("mode"),
                format!("unknown mode \"{other}\" (known: gateway, http)"),
            ));
            DiscordMode::Gateway
        }
    };
    if let Some(message) = check_platform_id(Platform::Discord, &raw.application_id) {
        problems
            .0
            .push(source.problem(&key.key("application_id"), message));
    }
    for (guild_idx, guild) in raw.guild_ids.iter().enumerate() {
        if let Some(message) = check_platform_id(Platform::Discord, guild) {
            problems
                .0
                .push(source.problem(&key.key("guild_ids").index(guild_idx), message));
        }
    }
    match &raw.public_key {
        Some(public_key) if public_key.len() != 64 || hex::decode(public_key).is_err() => {
            problems.0.push(source.problem(
                &key.key("public_key"),
                "the public key must be 64 hex characters, as the Developer Portal shows it",
            ));
        }
        None if mode == DiscordMode::Http => problems
            .0
            .push(source.problem(&key, "http mode needs public_key to verify interactions")),
        _ => {}
    }
    let api_url = raw
        .api_url
        .clone()
        .unwrap_or_else(|| "https://discord.com".to_string());
    check_base_url(source, &key.key("api_url"), &api_url, problems);
    let role_ttl = check_duration(
        source,
        &key.key("role_ttl"),
        raw.role_ttl.as_deref(),
        Duration::from_secs(300),
        problems,
    )
    .unwrap_or(Duration::from_secs(300));
    (problems.0.len() == before).then(|| DiscordSettings {
        mode,
        token_env: raw.token_env.clone(),
        application_id: raw.application_id.clone(),
        public_key: raw.public_key.clone(),
        guild_ids: raw.guild_ids.clone(),
        api_url: api_url.trim_end_matches('/').to_string(),
        role_ttl,
    })
}

/// The environment's service `name`; a problem at `key` when it has none.
fn known_service<'s>(
    source: &Source,
    key: &KeyPath,
    name: &str,
    services: &'s BTreeMap<ServiceName, Service>,
    problems: &mut Problems,
) -> Option<&'s Service> {
    let found = services.get(name);
    if found.is_none() {
        problems.0.push(source.problem(
            key,
            format!(
                "no service named \"{name}\" in this environment (defined: {})",
                join_names(services.keys().map(ServiceName::as_str))
            ),
        ));
    }
    found
}

/// The positive duration `text` at `key`, or `default` when there is none.
/// A value that is not one is recorded as a problem and gives `None`.
fn check_duration(
    source: &Source,
    key: &KeyPath,
    text: Option<&str>,
    default: Duration,
    problems: &mut Problems,
) -> Option<Duration> {
    let Some(text) = text else {
        return Some(default);
    };
    match parse_duration(text) {
        Some(duration) if !duration.is_zero() => Some(duration),
        _ => {
            problems.0.push(source.problem(
                key,
                format!("\"{text}\" is not a duration such as \"30s\" or \"5m\""),
            ));
            None
        }
    }
}

fn check_base_url(source: &Source, key: &KeyPath, url: &str, problems: &mut Problems) {
    let ok = matches!(url::Url::parse(url), Ok(parsed) if parsed.scheme() == "http" || parsed.scheme() == "https");
    if !ok {
        problems
            .0
            .push(source.problem(key, format!("\"{url}\" is not an http:// or https:// URL")));
    }
}

/// The absolute folder of a file, for resolving paths relative to it.
fn absolute_folder_of(file: &Path) -> PathBuf {
    let folder = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let folder = if folder.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        folder
    };
    std::fs::canonicalize(&folder)
        .or_else(|_| std::path::absolute(&folder))
        .unwrap_or(folder)
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other.as_os_str()),
        }
    }
    normalized
}

/// Makes a relative `sqlite://` path absolute against the config folder and
/// asks SQLite to create the file on first run.
fn resolve_store_url(url: &str, base_dir: &Path) -> Result<String, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_string());
    }
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Err(format!(
            "\"{}\" is not a store URL; use sqlite://PATH or postgres://USER@HOST/DB",
            redact_url(url)
        ));
    };
    if rest == ":memory:" {
        return Ok("sqlite::memory:".to_string());
    }
    let (path_part, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path_part.is_empty() {
        return Err("sqlite:// needs a file path, such as sqlite://../deckhand.db".to_string());
    }
    let path = Path::new(path_part);
    let absolute = normalize(&base_dir.join(path));
    let query = if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        query.to_string()
    };
    Ok(format!("sqlite://{}?{query}", absolute.display()))
}

/// Hides the password of a URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    crate::secret::redact(url)
}

fn check_roles(
    source: &Source,
    raw: &RawConfig,
    problems: &mut Problems,
) -> BTreeMap<RoleName, Role> {
    let mut roles = BTreeMap::new();
    for (name, role) in &raw.roles {
        if !is_plain_name(name) || name == "anyone" {
            problems.0.push(source.problem(
                &KeyPath::root().key("roles").key(name),
                format!(
                    "\"{name}\" is not a usable role name (lower-case letters, digits, - and _; \"anyone\" is reserved)"
                ),
            ));
            continue;
        }
        let key = KeyPath::root().key("roles").key(name);
        for (group_idx, group) in role.slack_usergroups.iter().enumerate() {
            if let Some(message) = check_platform_id(Platform::Slack, group) {
                problems
                    .0
                    .push(source.problem(&key.key("slack_usergroups").index(group_idx), message));
            }
        }
        for (group_idx, group) in role.discord_roles.iter().enumerate() {
            if let Some(message) = check_platform_id(Platform::Discord, group) {
                problems
                    .0
                    .push(source.problem(&key.key("discord_roles").index(group_idx), message));
            }
        }
        roles.insert(
            RoleName::new(name.clone()),
            Role {
                description: role.description.clone().unwrap_or_default(),
                slack_usergroups: role.slack_usergroups.clone(),
                discord_roles: role.discord_roles.clone(),
            },
        );
    }
    roles
}

fn check_users(
    source: &Source,
    raw: &RawConfig,
    roles: &BTreeMap<RoleName, Role>,
    problems: &mut Problems,
) -> Vec<User> {
    let mut users = Vec::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let known_roles = join_names(roles.keys().map(RoleName::as_str));
    for (user_idx, raw_user) in raw.users.iter().enumerate() {
        let key = KeyPath::root().key("users").index(user_idx);
        let mut user_ok = true;
        if !is_plain_name(&raw_user.name) {
            problems.0.push(source.problem(
                &key.key("name"),
                format!(
                    "\"{}\" is not a usable user name (lower-case letters, digits, - and _)",
                    raw_user.name
                ),
            ));
            user_ok = false;
        }
        if RESERVED_USER_NAMES.contains(&raw_user.name.as_str()) {
            problems.0.push(source.problem(
                &key.key("name"),
                format!(
                    "\"{}\" is the name Deckhand itself acts under in the audit trail; choose another",
                    raw_user.name
                ),
            ));
            user_ok = false;
        }
        for (role_idx, role) in raw_user.roles.iter().enumerate() {
            if !roles.contains_key(role.as_str()) {
                problems.0.push(source.problem(
                    &key.key("roles").index(role_idx),
                    format!("no role named \"{role}\" (defined: {known_roles})"),
                ));
                user_ok = false;
            }
        }
        let identities = [
            ("name", Some(&raw_user.name), None),
            ("console", raw_user.console.as_ref(), None),
            ("slack", raw_user.slack.as_ref(), Some(Platform::Slack)),
            (
                "discord",
                raw_user.discord.as_ref(),
                Some(Platform::Discord),
            ),
        ];
        for (field, value, platform) in identities {
            let Some(value) = value else { continue };
            if let Some(message) = platform.and_then(|platform| check_platform_id(platform, value))
            {
                problems.0.push(source.problem(&key.key(field), message));
                user_ok = false;
            }
            if !seen.insert((field.to_string(), value.clone())) {
                problems.0.push(source.problem(
                    &key.key(field),
                    format!("{field} \"{value}\" is already given to another user"),
                ));
                user_ok = false;
            }
        }
        if user_ok {
            users.push(User {
                name: UserName::new(raw_user.name.clone()),
                roles: raw_user
                    .roles
                    .iter()
                    .map(|role| RoleName::new(role.clone()))
                    .collect(),
                console: raw_user.console.clone(),
                slack: raw_user.slack.clone(),
                discord: raw_user.discord.clone(),
            });
        }
    }
    users
}

/// Checks the shape of a platform's user or channel id.
fn check_platform_id(platform: Platform, id: &str) -> Option<String> {
    let ok = match platform {
        Platform::Slack => {
            id.len() >= 3
                && id.len() <= 24
                && id
                    .chars()
                    .all(|character| character.is_ascii_uppercase() || character.is_ascii_digit())
        }
        Platform::Discord => {
            (17..=20).contains(&id.len()) && id.chars().all(|character| character.is_ascii_digit())
        }
        Platform::Console => true,
    };
    (!ok).then(|| match platform {
        Platform::Slack => format!(
            "\"{id}\" is not a Slack id (upper-case letters and digits, such as \"U024BE7LH\" or \"C0123ABCD\")"
        ),
        _ => format!("\"{id}\" is not a Discord id (a snowflake of 17 to 20 digits)"),
    })
}

fn check_hosts(
    source: &Source,
    raw: &RawConfig,
    base_dir: &Path,
    problems: &mut Problems,
) -> BTreeMap<String, Host> {
    let mut hosts = BTreeMap::new();
    for (name, raw_host) in &raw.hosts {
        let key = KeyPath::root().key("hosts").key(name);
        let scheme_ok = ["unix://", "tcp://", "ssh://", "http://", "https://"]
            .iter()
            .any(|scheme| raw_host.docker.starts_with(scheme));
        if !scheme_ok {
            problems.0.push(source.problem(
                &key.key("docker"),
                format!(
                    "\"{}\" is not a Docker host address; use unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST",
                    raw_host.docker
                ),
            ));
            continue;
        }
        if raw_host.tls.is_some() && !raw_host.docker.starts_with("tcp://") {
            problems.0.push(source.problem(
                &key.key("tls"),
                "TLS client certificates apply only to tcp:// hosts",
            ));
            continue;
        }
        if let Some(destination) = raw_host.docker.strip_prefix("ssh://")
            && let Some((_, port)) = destination.rsplit_once(':')
            && port != "22"
        {
            problems.0.push(source.problem(
                &key.key("docker"),
                format!(
                    "port {port} cannot be used here: the SSH transport reaches port 22 only; \
                     give the host a `Host` entry with `Port {port}` in ~/.ssh/config and use ssh://USER@THAT-ALIAS"
                ),
            ));
            continue;
        }
        if raw_host.ssh_key.is_some() && !raw_host.docker.starts_with("ssh://") {
            problems.0.push(source.problem(
                &key.key("ssh_key"),
                "an SSH key applies only to ssh:// hosts",
            ));
            continue;
        }
        let Some(timeout) = check_duration(
            source,
            &key.key("timeout"),
            raw_host.timeout.as_deref(),
            Duration::from_secs(30),
            problems,
        ) else {
            continue;
        };
        hosts.insert(
            name.clone(),
            Host {
                name: name.clone(),
                endpoint: raw_host.docker.clone(),
                tls: raw_host.tls.as_ref().map(|tls| TlsFiles {
                    ca: normalize(&base_dir.join(&tls.ca)),
                    cert: normalize(&base_dir.join(&tls.cert)),
                    key: normalize(&base_dir.join(&tls.key)),
                }),
                ssh_key: raw_host
                    .ssh_key
                    .as_ref()
                    .map(|path| normalize(&base_dir.join(path))),
                timeout,
            },
        );
    }
    hosts
}

fn check_environments(
    source: &Source,
    raw: &RawConfig,
    hosts: &BTreeMap<String, Host>,
    problems: &mut Problems,
) -> BTreeMap<EnvName, Environment> {
    let mut environments = BTreeMap::new();
    let known_hosts = join_names(raw.hosts.keys().map(String::as_str));
    if raw.environments.is_empty() {
        problems.0.push(source.problem(
            &KeyPath::root(),
            "no environments are defined; add at least one [environments.NAME]",
        ));
    }
    for (name, raw_environment) in &raw.environments {
        let key = KeyPath::root().key("environments").key(name);
        if !is_plain_name(name) || name == "default" {
            problems.0.push(source.problem(
                &key,
                format!(
                    "\"{name}\" is not a usable environment name (lower-case letters, digits, - and _; \"default\" is reserved)"
                ),
            ));
            continue;
        }
        let host = match raw_environment.host.as_deref() {
            None => {
                problems.0.push(source.problem(
                    &key,
                    format!(
                        "environment \"{name}\" has no Docker host; add host = \"NAME\" (defined: {known_hosts})"
                    ),
                ));
                None
            }
            Some(host_name) => match (raw.hosts.contains_key(host_name), hosts.get(host_name)) {
                (false, _) => {
                    problems.0.push(source.problem(
                        &key.key("host"),
                        format!("no Docker host named \"{host_name}\" (defined: {known_hosts})"),
                    ));
                    None
                }
                // The host itself is broken and was reported already.
                (true, host) => host.cloned(),
            },
        };
        let services = check_services(source, &key, raw_environment, problems);
        let rotation = check_rotation(source, &key, &raw_environment.rotation, &services, problems);
        let audit_channels = check_audit_channels(source, &key, raw_environment, problems);
        let cleanup_image_label = raw_environment
            .cleanup
            .as_ref()
            .and_then(|cleanup| cleanup.image_label.clone());
        if let Some(label) = &cleanup_image_label
            && (label.is_empty() || label.starts_with('=') || label.contains(char::is_whitespace))
        {
            problems.0.push(source.problem(
                &key.key("cleanup").key("image_label"),
                format!("\"{label}\" is not a label such as \"com.example.team\" or \"com.example.team=web\""),
            ));
        }
        let diagnose = diagnose::check_diagnose(
            source,
            &key,
            raw_environment.diagnose.as_ref(),
            &services,
            problems,
        );
        if let Some(host) = host {
            environments.insert(
                EnvName::new(name.clone()),
                Environment {
                    name: EnvName::new(name.clone()),
                    description: raw_environment.description.clone(),
                    host,
                    compose_project: raw_environment.compose_project.clone(),
                    lock_after_rollback: raw_environment.lock_after_rollback.unwrap_or(true),
                    backup_dir: raw_environment.backup_dir.clone(),
                    registry: raw_environment.registry.as_ref().map(|registry| {
                        RegistryCredentialsEnv {
                            username_env: registry.username_env.clone(),
                            password_env: registry.password_env.clone(),
                        }
                    }),
                    audit_channels,
                    services,
                    diagnose,
                    cleanup_image_label,
                    rotation,
                },
            );
        }
    }
    environments
}

fn check_rotation(
    source: &Source,
    env_key: &KeyPath,
    raw: &raw::RawRotation,
    services: &BTreeMap<ServiceName, Service>,
    problems: &mut Problems,
) -> Rotation {
    let key = env_key.key("rotation");
    let mut service = |path: KeyPath, name: &str| -> Option<ServiceName> {
        known_service(source, &path, name, services, problems).map(|service| service.name.clone())
    };
    let jwt = raw.jwt.as_ref().and_then(|jwt| {
        Some(EnvSecret {
            service: service(key.key("jwt").key("service"), &jwt.service)?,
            env: jwt.env.clone(),
        })
    });
    let db_password = raw.db_password.as_ref().and_then(|db| {
        let database = service(key.key("db-password").key("database"), &db.database);
        let consumer = service(key.key("db-password").key("service"), &db.service);
        Some(DbPassword {
            database: database?,
            consumer: EnvSecret {
                service: consumer?,
                env: db.env.clone(),
            },
        })
    });
    let ssl = raw.ssl.as_ref().and_then(|ssl| {
        Some(TlsRotation {
            service: service(key.key("ssl").key("service"), &ssl.service)?,
            dir: ssl
                .dir
                .clone()
                .unwrap_or_else(|| "/etc/nginx/ssl".to_string()),
            common_name: ssl
                .common_name
                .clone()
                .unwrap_or_else(|| "localhost".to_string()),
            days: ssl.days.unwrap_or(90),
        })
    });
    let env_names = [
        raw.jwt.as_ref().map(|jwt| ("jwt", jwt.env.as_str())),
        raw.db_password
            .as_ref()
            .map(|db| ("db-password", db.env.as_str())),
    ];
    for (secret, name) in env_names.into_iter().flatten() {
        let plain = !name.is_empty()
            && name.chars().all(|character| {
                character.is_ascii_uppercase() || character.is_ascii_digit() || character == '_'
            });
        if !plain {
            problems.0.push(source.problem(
                &key.key(secret).key("env"),
                format!("\"{name}\" is not an environment variable name (upper-case letters, digits and _)"),
            ));
        }
    }
    if let Some(db) = &db_password
        && services
            .get(db.database.as_str())
            .and_then(|service| service.database.as_ref())
            .is_none()
    {
        problems.0.push(source.problem(
            &key.key("db-password").key("database"),
            format!(
                "service \"{}\" is not a postgres service with a database",
                db.database
            ),
        ));
    }
    if let Some(ssl) = &ssl {
        let safe = |text: &str, extra: &[char]| {
            !text.is_empty()
                && text.chars().all(|character| {
                    character.is_ascii_alphanumeric() || extra.contains(&character)
                })
        };
        if !ssl.dir.starts_with('/') || !safe(&ssl.dir, &['/', '.', '_', '-']) {
            problems.0.push(source.problem(
                &key.key("ssl").key("dir"),
                format!("\"{}\" is not an absolute plain path", ssl.dir),
            ));
        }
        if !safe(&ssl.common_name, &['.', '-']) {
            problems.0.push(source.problem(
                &key.key("ssl").key("common_name"),
                format!("\"{}\" is not a host name", ssl.common_name),
            ));
        }
    }
    Rotation {
        jwt,
        db_password,
        ssl,
    }
}

fn check_audit_channels(
    source: &Source,
    key: &KeyPath,
    raw_environment: &raw::RawEnvironment,
    problems: &mut Problems,
) -> BTreeMap<Platform, String> {
    let mut channels = BTreeMap::new();
    let declared = [
        (Platform::Slack, raw_environment.audit.slack.as_ref()),
        (Platform::Discord, raw_environment.audit.discord.as_ref()),
    ];
    for (platform, channel) in declared {
        let Some(channel) = channel else { continue };
        match check_platform_id(platform, channel) {
            Some(message) => problems
                .0
                .push(source.problem(&key.key("audit").key(platform.as_str()), message)),
            None => {
                channels.insert(platform, channel.clone());
            }
        }
    }
    channels
}

fn check_services(
    source: &Source,
    env_key: &KeyPath,
    raw_environment: &raw::RawEnvironment,
    problems: &mut Problems,
) -> BTreeMap<ServiceName, Service> {
    let mut services = BTreeMap::new();
    for (name, raw_service) in &raw_environment.services {
        let key = env_key.key("services").key(name);
        let before = problems.0.len();
        if !is_plain_name(name) {
            problems.0.push(source.problem(
                &key,
                format!(
                    "\"{name}\" is not a usable service name (lower-case letters, digits, - and _)"
                ),
            ));
            continue;
        }
        let selector = match (&raw_service.container, &raw_environment.compose_project) {
            (Some(container), _) => Some(Selector::Container(container.clone())),
            (None, Some(project)) => Some(Selector::Compose {
                project: project.clone(),
                service: raw_service
                    .compose_service
                    .clone()
                    .unwrap_or_else(|| name.clone()),
            }),
            (None, None) => {
                problems.0.push(source.problem(
                    &key,
                    "service has no container name and its environment has no compose_project; set one of them",
                ));
                None
            }
        };
        if raw_service.container.is_some() && raw_service.compose_service.is_some() {
            problems.0.push(source.problem(
                &key.key("compose_service"),
                "set either container or compose_service, not both",
            ));
        }
        if let Some(template) = &raw_service.image
            && !template.contains("{ref}")
        {
            problems.0.push(source.problem(
                &key.key("image"),
                format!("image template \"{template}\" has no {{ref}} placeholder"),
            ));
        }
        if let Some(url) = &raw_service.url
            && !matches!(url::Url::parse(url), Ok(parsed) if parsed.scheme() == "http" || parsed.scheme() == "https")
        {
            problems.0.push(source.problem(
                &key.key("url"),
                format!("\"{url}\" is not an http:// or https:// URL"),
            ));
        }
        for (path_idx, path) in raw_service.health.iter().enumerate() {
            if !path.starts_with('/') {
                problems.0.push(source.problem(
                    &key.key("health").index(path_idx),
                    format!("health path \"{path}\" must start with /"),
                ));
            }
        }
        if !raw_service.health.is_empty() && raw_service.url.is_none() {
            problems.0.push(source.problem(
                &key.key("health"),
                "health paths need the service's url to probe them",
            ));
        }
        let kind = match raw_service.kind.as_deref().unwrap_or("app") {
            "app" => ServiceKind::App,
            "postgres" => ServiceKind::Postgres,
            "redis" => ServiceKind::Redis,
            "nginx" => ServiceKind::Nginx,
            "other" => ServiceKind::Other,
            other => {
                problems.0.push(source.problem(
                    &key.key("kind"),
                    format!("unknown kind \"{other}\" (known: app, postgres, redis, nginx, other)"),
                ));
                ServiceKind::Other
            }
        };
        if let Some(database) = &raw_service.database
            && !is_sql_identifier(&database.user)
        {
            problems.0.push(source.problem(
                &key.key("database").key("user"),
                format!(
                    "\"{}\" is not a plain database user name (lower-case letters, digits and _)",
                    database.user
                ),
            ));
        }
        if kind == ServiceKind::Postgres && raw_service.database.is_none() {
            problems.0.push(source.problem(
                &key,
                "a postgres service needs database = { user = \"…\", name = \"…\" }",
            ));
        }
        if problems.0.len() > before {
            continue;
        }
        if let Some(selector) = selector {
            services.insert(
                ServiceName::new(name.clone()),
                Service {
                    name: ServiceName::new(name.clone()),
                    selector,
                    image_template: raw_service.image.clone(),
                    url: raw_service
                        .url
                        .as_ref()
                        .map(|url| url.trim_end_matches('/').to_string()),
                    health: raw_service.health.clone(),
                    kind,
                    database: raw_service.database.as_ref().map(|database| Database {
                        user: database.user.clone(),
                        name: database.name.clone(),
                    }),
                },
            );
        }
    }
    services
}

/// Whether a name can stand in SQL unquoted: lower-case letters, digits and
/// `_`, not starting with a digit.
pub fn is_sql_identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && name.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
        })
}

/// Joins names for "defined: a, b" lists; says "none" for an empty list.
pub fn join_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests;
