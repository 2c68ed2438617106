//! The serialized shape of `config/deckhand.toml`. This is a contract with
//! operators' files, kept apart from the validated `Config`: every struct
//! refuses unknown keys so a typo is reported, not ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Folder of the command files, relative to this file; default `../commands`.
    pub commands: Option<String>,
    /// Where operations, approvals, releases and the audit log are kept.
    pub store: RawStore,
    /// Deckhand's own HTTP listener.
    #[serde(default)]
    pub server: RawServer,
    /// What people who map to no role may do.
    #[serde(default)]
    pub access: RawAccess,
    /// Approval behaviour shared by every platform.
    #[serde(default)]
    pub approvals: RawApprovals,
    /// What the console may do and as whom.
    #[serde(default)]
    pub console: RawConsole,
    /// How running operations are owned, renewed and taken over.
    #[serde(default)]
    pub operations: RawOperations,
    /// Roles, by name.
    #[serde(default)]
    pub roles: BTreeMap<String, RawRole>,
    /// People and their identities on each platform.
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// Docker hosts, by name.
    #[serde(default)]
    pub hosts: BTreeMap<String, RawHost>,
    /// Environments, by name.
    #[serde(default)]
    pub environments: BTreeMap<String, RawEnvironment>,
    /// The Slack app, when Deckhand is connected to Slack.
    pub slack: Option<RawSlack>,
    /// The Discord application, when Deckhand is connected to Discord.
    pub discord: Option<RawDiscord>,
    /// PagerDuty webhooks and incident notes, when Deckhand answers incidents.
    pub pagerduty: Option<RawPagerDuty>,
    /// The audit chain's keys, checkpoints and refusal summaries.
    #[serde(default)]
    pub audit: RawAudit,
}

/// `[audit]`. Keys are named by environment variable, never written here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Variable holding the chain's HMAC key; default `DECKHAND_AUDIT_KEY`.
    pub key_env: Option<String>,
    /// Variable holding earlier chain keys, for verifying entries made before
    /// a rotation; default `DECKHAND_AUDIT_KEY_PREVIOUS`.
    pub previous_keys_env: Option<String>,
    /// Variable holding the Ed25519 seed that signs checkpoints; default
    /// `DECKHAND_CHECKPOINT_KEY`.
    pub checkpoint_key_env: Option<String>,
    /// Public keys (64 hex digits) whose checkpoints `audit verify` trusts.
    #[serde(default)]
    pub checkpoint_public_keys: Vec<String>,
    /// A file every checkpoint is appended to, relative to this file.
    pub checkpoint_file: Option<String>,
    /// How often a checkpoint is published besides after each operation;
    /// default and most `1h`.
    pub checkpoint_every: Option<String>,
    /// How long refusals of people with no role are gathered into one line
    /// of the audit channel; default `1m`.
    pub refusal_summary_every: Option<String>,
}

/// `[pagerduty]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPagerDuty {
    /// Environment variable holding the webhook subscription's signing secret.
    pub secret_env: String,
    /// REST API base URL; default `https://api.pagerduty.com`.
    pub api_url: Option<String>,
    /// Environment variable holding the REST API key, for notes.
    pub api_token_env: Option<String>,
    /// Email of the PagerDuty user notes are written as (the `From` header).
    pub from_email: Option<String>,
    /// Whether the report's summary is added as a note on the incident.
    #[serde(default)]
    pub add_notes: bool,
    /// PagerDuty services Deckhand answers, and where it posts for each.
    #[serde(default)]
    pub services: Vec<RawPagerDutyService>,
}

/// `[[pagerduty.services]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPagerDutyService {
    /// The PagerDuty service id, e.g. `PBACKND`.
    pub id: String,
    /// The environment whose diagnostics run for its incidents.
    pub environment: String,
    /// `slack`, `discord` or `console`.
    pub platform: String,
    /// The channel the report is posted in.
    pub channel: String,
}

/// `[slack]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    /// `socket` (default; no public URL needed) or `http` (Events API).
    pub mode: Option<String>,
    /// Environment variable holding the bot token (`xoxb-…`).
    pub bot_token_env: String,
    /// Environment variable holding the app-level token (`xapp-…`), for socket mode.
    pub app_token_env: Option<String>,
    /// Environment variable holding the signing secret, for http mode.
    pub signing_secret_env: Option<String>,
    /// Web API base URL; default `https://slack.com/api`.
    pub api_url: Option<String>,
    /// How long user group memberships are cached; default `5m`.
    pub usergroup_ttl: Option<String>,
    /// Workspaces (`T…` ids) whose requests are served; every workspace's
    /// when empty.
    #[serde(default)]
    pub team_ids: Vec<String>,
}

/// `[discord]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscord {
    /// `gateway` (default) or `http` (interactions endpoint).
    pub mode: Option<String>,
    /// Environment variable holding the bot token.
    pub token_env: String,
    /// The application id (a snowflake).
    pub application_id: String,
    /// The application's public key (hex), for the interactions endpoint.
    pub public_key: Option<String>,
    /// Guilds to register commands in (instant); global registration when empty.
    #[serde(default)]
    pub guild_ids: Vec<String>,
    /// REST base URL; default `https://discord.com`.
    pub api_url: Option<String>,
    /// How long a person's guild roles are believed without a fresh look;
    /// default `5m`.
    pub role_ttl: Option<String>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite://path` (relative to this file) or `postgres://…`.
    pub url: String,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address of the HTTP listener (health, metrics, webhooks).
    pub listen: Option<String>,
}

/// `[operations]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperations {
    /// How often a process renews the leases of the operations it owns; default 2s.
    pub lease_renew: Option<String>,
    /// How long a lease holds without renewal before another process may take the
    /// operation over; default 15s.
    pub lease_expiry: Option<String>,
    /// How long `serve` waits on SIGTERM for running operations to reach a step
    /// boundary before it exits and leaves them to recovery; default 2m.
    pub shutdown_grace: Option<String>,
    /// How long delivery ids are remembered for dedupe; default 7d.
    pub delivery_retention: Option<String>,
}

/// `[access]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    /// Read-only commands that people who map to no role may run.
    #[serde(default)]
    pub unmapped_may_run: Vec<String>,
}

/// `[approvals]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// Reaction that approves (Slack emoji name); default `white_check_mark`.
    pub approve_emoji: Option<String>,
    /// Reaction that rejects; default `x`.
    pub reject_emoji: Option<String>,
    /// Whether people known only through a Slack user group or a Discord
    /// guild role (not listed in `[[users]]` for that platform) may approve;
    /// default false, since config cannot tell whether such an account
    /// belongs to the requester.
    #[serde(default)]
    pub unlisted_approvers: bool,
}

/// `[console]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// Whether `--as` and `:as` may act as another configured person;
    /// default false (the console is the operating-system user running it).
    #[serde(default)]
    pub impersonation: bool,
    /// Whether the console may approve, reject or withdraw operations
    /// requested from Slack or Discord; default false.
    #[serde(default)]
    pub cross_platform: bool,
}

/// `[roles.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    /// What the role is for.
    pub description: Option<String>,
    /// Slack user groups (`S…` ids) whose members hold this role.
    #[serde(default)]
    pub slack_usergroups: Vec<String>,
    /// Discord guild role ids whose members hold this role.
    #[serde(default)]
    pub discord_roles: Vec<String>,
}

/// `[[users]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// The person's name in Deckhand (messages, audit).
    pub name: String,
    /// Roles the person holds.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The operating-system user name the console runs as for this person.
    pub console: Option<String>,
    /// Slack user id (`U…`).
    pub slack: Option<String>,
    /// Discord user id (a snowflake).
    pub discord: Option<String>,
}

/// `[hosts.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    /// `unix:///var/run/docker.sock`, `tcp://host:2376` or `ssh://user@host`.
    pub docker: String,
    /// TLS client certificate files for `tcp://`.
    pub tls: Option<RawTls>,
    /// Private key file for `ssh://` (else ssh's own defaults and agent).
    pub ssh_key: Option<String>,
    /// Timeout of each Docker API call; default `30s`.
    pub timeout: Option<String>,
}

/// `[hosts.NAME.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// CA certificate (PEM).
    pub ca: String,
    /// Client certificate (PEM).
    pub cert: String,
    /// Client key (PEM).
    pub key: String,
}

/// `[environments.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironment {
    /// What the environment is.
    pub description: Option<String>,
    /// Name of the Docker host in `[hosts]`.
    pub host: Option<String>,
    /// Compose project whose labels identify the services.
    pub compose_project: Option<String>,
    /// Whether a rollback leaves the environment locked; default true.
    pub lock_after_rollback: Option<bool>,
    /// Folder on the Docker host for database backups.
    pub backup_dir: Option<String>,
    /// Registry credentials, by environment variable names.
    pub registry: Option<RawRegistry>,
    /// Audit channel per platform.
    #[serde(default)]
    pub audit: RawAuditChannels,
    /// Services, by name.
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    /// What `/diagnose` checks and its thresholds.
    pub diagnose: Option<RawDiagnose>,
    /// What `/cleanup` may remove besides the environment's stopped containers.
    pub cleanup: Option<RawCleanup>,
    /// Where `/rotate` finds each secret.
    #[serde(default)]
    pub rotation: RawRotation,
}

/// `[environments.NAME.rotation]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotation {
    /// The JWT signing secret: an environment variable of a service.
    pub jwt: Option<RawEnvSecret>,
    /// The database password: the database service, and the consumer whose
    /// connection URL holds it.
    #[serde(rename = "db-password")]
    pub db_password: Option<RawDbPassword>,
    /// The TLS certificate a proxy serves.
    pub ssl: Option<RawTlsRotation>,
}

/// `rotation.jwt`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvSecret {
    /// The service whose containers read it.
    pub service: String,
    /// The environment variable.
    pub env: String,
}

/// `rotation.db-password`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDbPassword {
    /// The PostgreSQL service.
    pub database: String,
    /// The service that connects to it.
    pub service: String,
    /// The consumer's variable holding `postgres://user:password@…`.
    pub env: String,
}

/// `rotation.ssl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsRotation {
    /// The proxy service serving the certificate (nginx).
    pub service: String,
    /// Folder of `cert.pem` and `key.pem` in its container; default `/etc/nginx/ssl`.
    pub dir: Option<String>,
    /// The certificate's common name; default `localhost`.
    pub common_name: Option<String>,
    /// Validity in days; default 90.
    pub days: Option<u32>,
}

/// `[environments.NAME.cleanup]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCleanup {
    /// Remove only dangling images with this label (`key` or `key=value`); every dangling
    /// image of the host when absent.
    pub image_label: Option<String>,
}

/// `[environments.NAME.diagnose]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiagnose {
    /// Time each check may take; default `5s`.
    pub timeout: Option<String>,
    /// Memory use (percent of the limit) that warns; default 80.
    pub memory_warn_percent: Option<u8>,
    /// Memory use that fails; default 95.
    pub memory_fail_percent: Option<u8>,
    /// Disk use (percent of the Docker host's disk) that warns; default 80.
    pub disk_warn_percent: Option<u8>,
    /// Disk use that fails; default 90.
    pub disk_fail_percent: Option<u8>,
    /// A certificate expiring within this many days warns; default 30.
    pub tls_warn_days: Option<u32>,
    /// A certificate expiring within this many days fails; default 7.
    pub tls_fail_days: Option<u32>,
    /// Public TLS endpoints: `"host:port"`, or `{ connect = "ip:port", name = "host" }`.
    #[serde(default)]
    pub tls: Vec<RawTlsEndpoint>,
    /// Services the proxy forwards to; default every app service with health paths.
    pub proxy_upstreams: Option<Vec<String>>,
    /// The migration status command.
    pub migrations: Option<RawMigrations>,
    /// An incident starting this soon after a deploy or rollback points at it; default `30m`.
    pub recent_deploy_window: Option<String>,
}

/// One public TLS endpoint.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTlsEndpoint {
    /// `"api.example.com:443"`: connect there and expect that name.
    Address(String),
    /// Connect to one address, expect another name (SNI and host name check).
    Split {
        /// `host:port` to connect to.
        connect: String,
        /// The host name the certificate must be valid for.
        name: String,
    },
}

/// `[environments.NAME.diagnose.migrations]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMigrations {
    /// The service whose image and settings the one-off container takes.
    pub service: String,
    /// Argument vector, e.g. `["npm", "run", "db:status"]`.
    pub command: Vec<String>,
    /// Time it may take; default `30s`.
    pub timeout: Option<String>,
}

/// `[environments.NAME.registry]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    /// Environment variable holding the registry user name.
    pub username_env: String,
    /// Environment variable holding the registry password or token.
    pub password_env: String,
}

/// `[environments.NAME.audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuditChannels {
    /// Slack channel id (`C…`).
    pub slack: Option<String>,
    /// Discord channel id.
    pub discord: Option<String>,
}

/// `[environments.ENV.services.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Compose service name, when it differs from the key.
    pub compose_service: Option<String>,
    /// Plain container name, for services not started by compose.
    pub container: Option<String>,
    /// Image template with `{ref}`, for services that can be deployed.
    pub image: Option<String>,
    /// Base URL where the service's HTTP endpoints are reachable from Deckhand.
    pub url: Option<String>,
    /// HTTP health endpoint paths probed after a deploy and by `/health`.
    #[serde(default)]
    pub health: Vec<String>,
    /// `app`, `postgres`, `redis`, `nginx` or `other`; default `app`.
    pub kind: Option<String>,
    /// Database user and name, for `kind = "postgres"`.
    pub database: Option<RawDatabase>,
}

/// `[environments.ENV.services.NAME.database]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// Database user for `pg_dump`, `psql` and `SELECT 1`.
    pub user: String,
    /// Database name.
    pub name: String,
}
