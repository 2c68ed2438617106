use std::path::Path;

use super::*;
use crate::problem::Source;

const VALID: &str = r#"
[store]
url = "sqlite://deckhand.db"

[roles.developers]
[roles.deployers]

[[users]]
name = "alice"
roles = ["developers"]
console = "alice"
slack = "U0ALICE01"

[hosts.local]
docker = "unix:///var/run/docker.sock"

[environments.staging]
host = "local"
compose_project = "demo"

[environments.staging.services.backend]
image = "demo/backend:{ref}"
url = "http://127.0.0.1:13000"
health = ["/health"]
"#;

/// Validates `text` as config/deckhand.toml and compares every problem
/// line, or `ok` with the number of environments.
fn check(text: &str, expected: &[&str]) {
    let source = Source::new(Path::new("config/deckhand.toml"), text.to_string());
    let actual: Vec<String> = match Config::from_source(&source) {
        Ok(config) => vec![format!("ok {}", config.environments.len())],
        Err(problems) => problems.0.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(actual, expected, "config:\n{text}");
}

#[test]
fn accepts_a_valid_config() {
    check(VALID, &["ok 1"]);
}

#[test]
fn reports_syntax_and_unknown_keys_with_lines() {
    check(
        &VALID.replace("[hosts.local]", "[hosts.local]\ndocker_host = \"x\""),
        &[
            "config/deckhand.toml:15: unknown field `docker_host`, expected one of `docker`, `tls`, `ssh_key`, `timeout`",
        ],
    );
    check(
        &VALID.replace("url = \"sqlite://deckhand.db\"", "url = sqlite"),
        &["config/deckhand.toml:3: invalid string\nexpected `\"`, `'`"],
    );
}

#[test]
fn reports_every_broken_reference() {
    let broken = VALID
        .replace(
            "roles = [\"developers\"]",
            "roles = [\"developers\", \"admins\"]",
        )
        .replace("host = \"local\"", "host = \"stg-1\"")
        .replace(
            "image = \"demo/backend:{ref}\"",
            "image = \"demo/backend:latest\"",
        )
        .replace("health = [\"/health\"]", "health = [\"health\"]")
        .replace("slack = \"U0ALICE01\"", "slack = \"alice\"");
    check(
        &broken,
        &[
            "config/deckhand.toml:10: users[0].roles[1]: no role named \"admins\" (defined: deployers, developers)",
            "config/deckhand.toml:12: users[0].slack: \"alice\" is not a Slack id (upper-case letters and digits, such as \"U024BE7LH\" or \"C0123ABCD\")",
            "config/deckhand.toml:18: environments.staging.host: no Docker host named \"stg-1\" (defined: local)",
            "config/deckhand.toml:22: environments.staging.services.backend.image: image template \"demo/backend:latest\" has no {ref} placeholder",
            "config/deckhand.toml:24: environments.staging.services.backend.health[0]: health path \"health\" must start with /",
        ],
    );
}

#[test]
fn reports_an_environment_without_a_host() {
    check(
        &VALID.replace("host = \"local\"\n", ""),
        &[
            "config/deckhand.toml:17: environments.staging: environment \"staging\" has no Docker host; add host = \"NAME\" (defined: local)",
        ],
    );
}

#[test]
fn reports_bad_hosts_and_store() {
    let broken = VALID
        .replace(
            "docker = \"unix:///var/run/docker.sock\"",
            "docker = \"docker.example:2375\"\ntimeout = \"soon\"",
        )
        .replace("url = \"sqlite://deckhand.db\"", "url = \"mysql://db\"");
    check(
        &broken,
        &[
            "config/deckhand.toml:3: store.url: \"mysql://db\" is not a store URL; use sqlite://PATH or postgres://USER@HOST/DB",
            "config/deckhand.toml:15: hosts.local.docker: \"docker.example:2375\" is not a Docker host address; use unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST",
        ],
    );
}

#[test]
fn ssh_hosts_take_a_key_and_refuse_other_ports() {
    let ssh = VALID.replace(
        "docker = \"unix:///var/run/docker.sock\"",
        "docker = \"ssh://deploy@docker.example\"\nssh_key = \"keys/deploy\"",
    );
    let source = Source::new(Path::new("/srv/deckhand/config/deckhand.toml"), ssh.clone());
    let config = Config::from_source(&source).expect("valid");
    assert_eq!(
        config.environments["staging"].host.ssh_key.as_deref(),
        Some(Path::new("/srv/deckhand/config/keys/deploy"))
    );
    check(
        &ssh.replace("deploy@docker.example", "deploy@docker.example:2222"),
        &[
            "config/deckhand.toml:15: hosts.local.docker: port 2222 cannot be used here: the SSH transport reaches port 22 only; give the host a `Host` entry with `Port 2222` in ~/.ssh/config and use ssh://USER@THAT-ALIAS",
        ],
    );
    check(
        &VALID.replace(
            "docker = \"unix:///var/run/docker.sock\"",
            "docker = \"unix:///var/run/docker.sock\"\nssh_key = \"keys/deploy\"",
        ),
        &["config/deckhand.toml:16: hosts.local.ssh_key: an SSH key applies only to ssh:// hosts"],
    );
}

#[test]
fn never_shows_a_store_password() {
    let text = VALID.replace(
        "url = \"sqlite://deckhand.db\"",
        "url = \"mongodb://deckhand:hunter2@db/x\"",
    );
    let source = Source::new(Path::new("config/deckhand.toml"), text);
    let problems = Config::from_source(&source).expect_err("not a store URL");
    let shown = problems.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
}

#[test]
fn resolves_relative_paths_against_the_config_folder() {
    let source = Source::new(
        Path::new("/srv/deckhand/config/deckhand.toml"),
        VALID.replace("sqlite://deckhand.db", "sqlite://../var/deckhand.db"),
    );
    let config = Config::from_source(&source).expect("valid");
    assert_eq!(
        config.store_url,
        "sqlite:///srv/deckhand/var/deckhand.db?mode=rwc"
    );
    assert_eq!(config.commands_dir, Path::new("/srv/deckhand/commands"));
}

#[test]
fn slack_http_mode_needs_the_listener() {
    let http = "\n[slack]\nmode = \"http\"\nbot_token_env = \"SLACK_BOT_TOKEN\"\nsigning_secret_env = \"SLACK_SIGNING_SECRET\"\n";
    let text = format!("{VALID}{http}");
    let lines = text.lines().count();
    check(
        &text,
        &[&format!(
            "config/deckhand.toml:{}: slack.mode: http mode needs [server] listen: Slack posts commands, clicks and events to Deckhand's listener",
            lines - 2
        )],
    );
    check(
        &format!("{VALID}\n[server]\nlisten = \"127.0.0.1:0\"\n{http}"),
        &["ok 1"],
    );
}

const INCIDENTS: &str = r#"
[server]
listen = "127.0.0.1:0"

[environments.staging.diagnose]
timeout = "3s"
memory_warn_percent = 70
tls = ["api.example.com:443", { connect = "127.0.0.1:18443", name = "localhost" }]
proxy_upstreams = ["backend"]
migrations = { service = "backend", command = ["npm", "run", "db:status"] }

[pagerduty]
secret_env = "PD_SECRET"
add_notes = true
api_token_env = "PD_TOKEN"
from_email = "deckhand@example.com"

[[pagerduty.services]]
id = "PBACKND"
environment = "staging"
platform = "slack"
channel = "C0INCIDENT"
"#;

#[test]
fn reads_diagnose_and_pagerduty_settings() {
    let source = Source::new(
        Path::new("config/deckhand.toml"),
        format!("{VALID}{INCIDENTS}"),
    );
    let config = Config::from_source(&source).expect("valid");
    let diagnose = &config.environments["staging"].diagnose;
    assert_eq!(diagnose.timeout, Duration::from_secs(3));
    assert_eq!(diagnose.memory.warn_percent, 70);
    assert_eq!(diagnose.memory.fail_percent, 95);
    assert_eq!(
        diagnose.tls,
        [
            TlsEndpoint {
                connect: "api.example.com:443".to_string(),
                name: "api.example.com".to_string(),
            },
            TlsEndpoint {
                connect: "127.0.0.1:18443".to_string(),
                name: "localhost".to_string(),
            },
        ]
    );
    assert_eq!(
        diagnose.migrations.as_ref().map(|m| m.command.join(" ")),
        Some("npm run db:status".to_string())
    );
    let pagerduty = config.pagerduty.expect("a pagerduty section");
    assert_eq!(pagerduty.api_url, "https://api.pagerduty.com");
    let service = pagerduty.service("PBACKND").expect("mapped");
    assert_eq!(service.environment.as_str(), "staging");
    assert_eq!(service.platform, Platform::Slack);
    assert!(pagerduty.service("PUNKNWN").is_none());
    assert_eq!(
        pagerduty.notes.map(|notes| notes.api_token_env),
        Some("PD_TOKEN".to_string())
    );
}

#[test]
fn reports_bad_diagnose_and_pagerduty_settings() {
    let broken = INCIDENTS
        .replace("memory_warn_percent = 70", "memory_warn_percent = 99")
        .replace("\"api.example.com:443\"", "\"api.example.com\"")
        .replace(
            "proxy_upstreams = [\"backend\"]",
            "proxy_upstreams = [\"frontend\"]",
        )
        .replace(
            "service = \"backend\", command",
            "service = \"backend\", timeout = \"later\", command",
        )
        .replace("from_email = \"deckhand@example.com\"\n", "")
        .replace("environment = \"staging\"", "environment = \"qa\"")
        .replace("channel = \"C0INCIDENT\"", "channel = \"#incidents\"");
    check(
        &format!("{VALID}{broken}"),
        &[
            "config/deckhand.toml:31: environments.staging.diagnose.memory_warn_percent: memory_warn_percent (99) must be below memory_fail_percent (95)",
            "config/deckhand.toml:32: environments.staging.diagnose.tls[0]: \"api.example.com\" is not a host and port such as \"api.example.com:443\"",
            "config/deckhand.toml:33: environments.staging.diagnose.proxy_upstreams[0]: no service named \"frontend\" in this environment (defined: backend)",
            "config/deckhand.toml:34: environments.staging.diagnose.migrations.timeout: \"later\" is not a duration such as \"30s\" or \"5m\"",
            "config/deckhand.toml:38: pagerduty.add_notes: add_notes needs api_token_env (the variable with the REST API key) and from_email (the PagerDuty user notes are written as)",
            "config/deckhand.toml:43: pagerduty.services[0].environment: no environment named \"qa\" (defined: staging)",
            "config/deckhand.toml:45: pagerduty.services[0].channel: \"#incidents\" is not a Slack id (upper-case letters and digits, such as \"U024BE7LH\" or \"C0123ABCD\")",
        ],
    );
    check(
        &format!(
            "{VALID}{}",
            INCIDENTS.replace("[server]\nlisten = \"127.0.0.1:0\"\n", "")
        ),
        &[
            "config/deckhand.toml:34: pagerduty: PagerDuty webhooks arrive on Deckhand's listener; set server.listen",
        ],
    );
}

#[test]
fn one_platform_id_belongs_to_one_person() {
    let bob = "[[users]]\nname = \"bob\"\nroles = [\"deployers\"]\n";
    let cases = [
        (
            "slack = \"U0ALICE01\"\n",
            "config/deckhand.toml:17: users[1].slack: slack \"U0ALICE01\" is already given to another user",
        ),
        (
            "console = \"alice\"\n",
            "config/deckhand.toml:17: users[1].console: console \"alice\" is already given to another user",
        ),
    ];
    for (identity, expected) in cases {
        let text = VALID.replace("[hosts.local]", &format!("{bob}{identity}\n[hosts.local]"));
        check(&text, &[expected]);
    }
    check(
        &VALID.replace("name = \"alice\"", "name = \"pagerduty\""),
        &[
            "config/deckhand.toml:9: users[0].name: \"pagerduty\" is the name Deckhand itself acts under in the audit trail; choose another",
        ],
    );
}

#[test]
fn slack_teams_and_discord_role_expiry_are_checked() {
    let slack = "[slack]\nmode = \"socket\"\nbot_token_env = \"B\"\napp_token_env = \"A\"\nteam_ids = [\"T0WORK\", \"not-a-team\"]\n";
    check(
        &format!("{VALID}{slack}"),
        &[
            "config/deckhand.toml:29: slack.team_ids[1]: \"not-a-team\" is not a Slack id (upper-case letters and digits, such as \"U024BE7LH\" or \"C0123ABCD\")",
        ],
    );
    let discord = "[discord]\ntoken_env = \"D\"\napplication_id = \"100000000000000099\"\nrole_ttl = \"soon\"\n";
    check(
        &format!("{VALID}{discord}"),
        &[
            "config/deckhand.toml:28: discord.role_ttl: \"soon\" is not a duration such as \"30s\" or \"5m\"",
        ],
    );
}

#[test]
fn check_warns_about_identities_it_cannot_tie_to_a_person() {
    let load = |text: &str| {
        Config::from_source(&Source::new(
            Path::new("config/deckhand.toml"),
            text.to_string(),
        ))
        .expect("valid config")
    };
    assert_eq!(load(VALID).trust_warnings(), Vec::<String>::new());
    let grouped = VALID.replace(
        "[roles.deployers]",
        "[roles.deployers]\nslack_usergroups = [\"S0DEPLOY\"]",
    );
    assert_eq!(
        load(&grouped).trust_warnings(),
        [
            "people who hold role deployers only through a Slack user group or Discord role, without a [[users]] entry for that account, may request but not approve: config cannot tell whether such an account is the requester's own; list approvers in [[users]] with their slack and discord ids"
        ]
    );
    let opted_in = format!(
        "{}\n[console]\nimpersonation = true\n",
        grouped.replace(
            "[roles.developers]",
            "[approvals]\nunlisted_approvers = true\n\n[roles.developers]"
        )
    );
    let warnings = load(&opted_in).trust_warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("[approvals] unlisted_approvers = true: people who hold role deployers only through a Slack user group or Discord role"), "{warnings:?}");
    assert!(
        warnings[1].starts_with("[console] impersonation = true: whoever runs deckhand console"),
        "{warnings:?}"
    );
}
