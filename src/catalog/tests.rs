use std::path::Path;

use super::*;
use crate::config::Config;
use crate::problem::Source;

fn shipped_config() -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Config::load(&root.join("config/deckhand.toml")).expect("shipped config is valid")
}

/// The shipped config without the commands it opens to people without a
/// role, which a one-file catalog does not have.
fn config_for_one_file() -> Config {
    Config {
        unmapped_may_run: Vec::new(),
        ..shipped_config()
    }
}

const DEPLOY: &str = r#"name = "deploy"
summary = "deploy"
mutating = true

[[args]]
name = "env"
rule = "environment"
help = "where"

[[args]]
name = "ref"
rule = "regex"
pattern = "^[a-z]+$"
means = "letters"
help = "what"

[policy.default]
request = ["developers"]

[[steps]]
step = "resolve_images"
services = ["backend"]

[[steps]]
step = "recreate"
"#;

/// Loads `text` as commands/deploy.toml against the shipped config and
/// compares every problem line, or `ok`.
fn check(text: &str, expected: &[&str]) {
    let config = config_for_one_file();
    let source = Source::new(Path::new("commands/deploy.toml"), text.to_string());
    let actual: Vec<String> = match Catalog::from_sources(&config, &[source]) {
        Ok(catalog) => vec![format!("ok {}", catalog.len())],
        Err(problems) => problems.0.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(actual, expected, "command file:\n{text}");
}

#[test]
fn shipped_commands_load_and_cover_the_runbook() {
    let config = shipped_config();
    let catalog = Catalog::load(&config).expect("shipped commands are valid");
    for name in [
        "deploy",
        "rollback",
        "rollback-db",
        "restore-db",
        "rotate",
        "health",
        "diagnose",
        "status",
        "logs",
        "service",
        "help",
        "lock",
        "unlock",
    ] {
        assert!(catalog.get(name).is_some(), "/{name} is shipped");
    }
    let deploy = catalog.get("deploy").expect("deploy");
    assert_eq!(deploy.usage(), "/deploy <env> <ref> [--dry-run]");
    let production = deploy
        .policy_for(Some(&config.environments["production"].name))
        .expect("policy");
    assert_eq!(production.approvals, 1);
    let rollback_db = catalog.get("rollback-db").expect("rollback-db");
    assert_eq!(
        rollback_db.policy_for(None).map(|rule| rule.approvals),
        Some(2)
    );
}

#[test]
fn accepts_a_valid_command() {
    check(DEPLOY, &["ok 1"]);
}

#[test]
fn reports_unknown_keys_and_bad_steps() {
    check(
        &DEPLOY.replace("mutating = true", "mutating = true\nmutatin = false"),
        &[
            "commands/deploy.toml:4: unknown field `mutatin`, expected one of `name`, `summary`, `mutating`, `allowed_during_hold`, `rollback_on_failure`, `warning`, `examples`, `args`, `policy`, `steps`",
        ],
    );
    check(
        &DEPLOY.replace("step = \"recreate\"", "step = \"recreat\""),
        &[
            "commands/deploy.toml:25: unknown variant `recreat`, expected one of `resolve_images`, `resolve_rollback`, `pull`, `run_once`, `recreate`, `wait_healthy`, `smoke`, `record_release`, `hold_lock`, `backup_database`, `restore_database`, `check_database`, `service_action`, `health_report`, `status_report`, `logs`, `help`, `lock`, `unlock`, `diagnose`, `rotate`, `prune_containers`, `prune_images`, `flush_redis`",
        ],
    );
    check(
        &DEPLOY.replace(
            "step = \"recreate\"",
            "step = \"wait_healthy\"\ntimeout = \"soon\"",
        ),
        &["commands/deploy.toml:20: \"soon\" is not a duration such as \"90s\", \"10m\" or \"2h\""],
    );
}

#[test]
fn reports_bad_rules() {
    check(
        &DEPLOY.replace("pattern = \"^[a-z]+$\"", "pattern = \"^[a-z+$\""),
        &[
            "commands/deploy.toml:13: args[1].pattern: bad regex \"^[a-z+$\": error: unclosed character class",
        ],
    );
    check(
        &DEPLOY.replace("pattern = \"^[a-z]+$\"", "pattern = \"[a-z]+\""),
        &[
            "commands/deploy.toml:13: args[1].pattern: pattern \"[a-z]+\" must be anchored: start with ^ and end with $",
        ],
    );
    check(
        &DEPLOY.replace("rule = \"environment\"", "rule = \"env\""),
        &[
            "commands/deploy.toml:7: args[0].rule: unknown rule \"env\" (known: environment, service, command, enum, regex, integer, duration)",
            "commands/deploy.toml:20: steps[0]: step resolve_images needs an environment argument",
            "commands/deploy.toml:24: steps[1]: step recreate needs an environment argument",
        ],
    );
}

#[test]
fn reports_policies_naming_undefined_roles_and_environments() {
    check(
        &DEPLOY.replace(
            "[policy.default]\nrequest = [\"developers\"]",
            "[policy.default]\nrequest = [\"developers\", \"admins\"]\n\n[policy.prod]\nrequest = [\"deployers\"]\napprovals = 1",
        ),
        &[
            "commands/deploy.toml:18: policy.default.request[1]: no role named \"admins\" (defined: dba, deployers, developers, oncall)",
            "commands/deploy.toml:20: policy.prod: no environment named \"prod\" (defined: production, staging; or use \"default\")",
            "commands/deploy.toml:22: policy.prod.approvals: approvals are required but no approvers roles are named",
        ],
    );
}

#[test]
fn reports_steps_naming_undefined_services() {
    check(
        &DEPLOY.replace("services = [\"backend\"]", "services = [\"frontend\"]"),
        &[
            "commands/deploy.toml:20: steps[0]: step resolve_images names service \"frontend\", which environment \"production\" does not define (defined: backend, gitweb, ide, nginx, postgres, redis)",
            "commands/deploy.toml:20: steps[0]: step resolve_images names service \"frontend\", which environment \"staging\" does not define (defined: backend, gitweb, ide, nginx, postgres, redis)",
        ],
    );
    check(
        &DEPLOY.replace("services = [\"backend\"]", "services = [\"postgres\"]"),
        &[
            "commands/deploy.toml:20: steps[0]: service \"postgres\" of environment \"production\" has no image template to deploy",
            "commands/deploy.toml:20: steps[0]: service \"postgres\" of environment \"staging\" has no image template to deploy",
        ],
    );
}

#[test]
fn reports_steps_missing_their_arguments_and_mutation_mismatches() {
    check(
        &DEPLOY.replace("name = \"ref\"", "name = \"git_ref\""),
        &[
            "commands/deploy.toml:20: steps[0]: step resolve_images needs an argument named \"ref\" with rule \"regex\"",
        ],
    );
    check(
        &DEPLOY.replace("mutating = true", "mutating = false"),
        &[
            "commands/deploy.toml:24: steps[1]: step recreate changes things, so the command must say mutating = true",
        ],
    );
    check(
        &DEPLOY.replace("name = \"deploy\"", "name = \"ship\""),
        &["commands/deploy.toml:1: name: command \"ship\" must live in a file named ship.toml"],
    );
}
