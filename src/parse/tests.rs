use std::path::Path;

use super::*;
use crate::catalog::Catalog;
use crate::config::Config;

fn shipped() -> (Config, Catalog) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("config/deckhand.toml")).expect("shipped config is valid");
    let catalog = Catalog::load(&config).expect("shipped commands are valid");
    (config, catalog)
}

/// Parses `input` and compares the canonical command line of the action, or
/// the exact error text the requester would read.
fn check(input: &str, expected: &str) {
    let (config, catalog) = shipped();
    let actual = match parse_action(input, &catalog, &config) {
        Ok(action) => {
            let spec = catalog
                .get(action.command.as_str())
                .expect("parsed command exists");
            format!("ok {}", action.to_command_line(spec))
        }
        Err(error) => error.to_string(),
    };
    assert_eq!(actual, expected, "input: {input:?}");
}

#[test]
fn accepts_valid_requests() {
    let cases = [
        ("/deploy staging develop", "ok /deploy staging develop"),
        (
            "  /deploy   staging  develop  ",
            "ok /deploy staging develop",
        ),
        (
            "/deploy production release/1.4.2 --dry-run",
            "ok /deploy production release/1.4.2 --dry-run",
        ),
        ("/deploy staging 'develop'", "ok /deploy staging develop"),
        ("/rollback staging", "ok /rollback staging"),
        ("/rollback staging backend", "ok /rollback staging backend"),
        (
            "/rollback staging backend to v1.4.1",
            "ok /rollback staging backend to v1.4.1",
        ),
        ("/rollback staging to r12", "ok /rollback staging to r12"),
        (
            "/logs staging backend",
            "ok /logs staging backend --tail 100",
        ),
        (
            "/logs staging backend --tail 50 --since 10m --grep \"connection refused\"",
            "ok /logs staging backend --tail 50 --since 10m --grep \"connection refused\"",
        ),
        (
            "/logs staging backend --tail=20",
            "ok /logs staging backend --tail 20",
        ),
        (
            "/service restart staging ide",
            "ok /service restart staging ide",
        ),
        ("/rotate jwt staging", "ok /rotate jwt staging"),
        ("/status", "ok /status"),
        ("/help", "ok /help"),
        ("/help deploy", "ok /help deploy"),
        (
            "/lock production \"release freeze until Monday\" --for 2h",
            "ok /lock production \"release freeze until Monday\" --for 2h",
        ),
        ("/diagnose staging 502", "ok /diagnose staging 502"),
        (
            "/restore-db staging postgres-20261128T093000Z-op12.sql",
            "ok /restore-db staging postgres-20261128T093000Z-op12.sql",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn refuses_malformed_input_with_exact_messages() {
    let long_input = format!("/deploy staging {}", "a".repeat(1000));
    let cases: Vec<(&str, String)> = vec![
        ("", "empty command; type /help to see what Deckhand can do".into()),
        ("   ", "empty command; type /help to see what Deckhand can do".into()),
        (long_input.as_str(), "input is 1016 characters long; the limit is 1000".into()),
        ("/deploy staging dev\u{7}elop", "input contains a control character (U+0007); remove it and try again".into()),
        ("/deploy staging\ndevelop", "input contains a line break; a command is a single line".into()),
        ("/deploy staging develop\t", "input contains a control character (U+0009); remove it and try again".into()),
        ("/deploy st\u{0430}ging develop", "\"st\u{0430}ging\" contains \"\u{0430}\" (U+0430), which is not plain ASCII; look-alike characters are not accepted, retype it with plain letters".into()),
        ("/deploy staging d\u{0435}velop", "\"d\u{0435}velop\" contains \"\u{0435}\" (U+0435), which is not plain ASCII; look-alike characters are not accepted, retype it with plain letters".into()),
        ("/lock staging \u{201C}freeze\u{201D}", "input contains the typographic quote \u{201C} (U+201C); use plain \" or ' quotes".into()),
        ("/deploy staging develop \u{2014}dry-run", "input contains the dash \u{2014} (U+2014); write flags with two plain hyphens, as in --dry-run".into()),
        ("/deploy staging \"develop", "unbalanced quotes: the \" at character 17 is never closed".into()),
        ("/lock staging 'freeze", "unbalanced quotes: the ' at character 15 is never closed".into()),
        ("deploy staging develop", "commands start with /, as in /deploy staging develop; type /help for the list".into()),
        ("\"/deploy\" staging develop", "commands start with /, as in /deploy staging develop; type /help for the list".into()),
    ];
    for (input, expected) in cases {
        check(input, &expected);
    }
}

#[test]
fn refuses_unknown_commands_and_arguments() {
    let cases = [
        (
            "/deplyo staging develop",
            "unknown command /deplyo; did you mean /deploy?",
        ),
        (
            "/rolback staging",
            "unknown command /rolback; did you mean /rollback?",
        ),
        (
            "/frobnicate",
            "unknown command /frobnicate; type /help for the list",
        ),
        (
            "/help deplyo",
            "unknown command /deplyo; did you mean /deploy?",
        ),
        (
            "/deploy staging",
            "missing <ref>: branch, tag or commit to deploy (a git ref: letters, digits and . _ / - (1 to 100 characters, starting with a letter or digit))\nusage: /deploy <env> <ref> [--dry-run]",
        ),
        (
            "/deploy stagin develop",
            "unknown environment \"stagin\"; known: production, staging",
        ),
        (
            "/logs staging backnd",
            "unknown service \"backnd\" in staging; known: backend, gitweb, ide, nginx, postgres, redis",
        ),
        (
            "/deploy staging develop extra",
            "too many arguments: \"extra\" is not expected\nusage: /deploy <env> <ref> [--dry-run]",
        ),
        (
            "/deploy staging develop --force",
            "unknown flag --force; /deploy accepts --dry-run",
        ),
        (
            "/status --dry-run",
            "unknown flag --dry-run; /status takes no flags",
        ),
        (
            "/logs staging backend --tail",
            "--tail needs a value, as in --tail VALUE",
        ),
        (
            "/logs staging backend --tail 5 --tail 6",
            "<tail> is given twice",
        ),
        (
            "/logs staging backend --tail 0",
            "\"0\" is not a valid <tail>: it must be a whole number from 1 to 1000",
        ),
        (
            "/logs staging backend --tail many",
            "\"many\" is not a valid <tail>: it must be a whole number from 1 to 1000",
        ),
        (
            "/logs staging backend --since 30d",
            "\"30d\" is not a valid <since>: it must be a duration such as 10m or 2h, at most 7d",
        ),
        (
            "/service reboot staging ide",
            "\"reboot\" is not a valid <action>: it must be one of start, stop, restart, status",
        ),
        (
            "/deploy staging feature_x!",
            "\"feature_x!\" is not a valid <ref>: it must be a git ref: letters, digits and . _ / - (1 to 100 characters, starting with a letter or digit)",
        ),
        (
            "/deploy staging ''",
            "\"\" is not a valid <ref>: it must be a git ref: letters, digits and . _ / - (1 to 100 characters, starting with a letter or digit)",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn refuses_injection_attempts() {
    let git_ref = "a git ref: letters, digits and . _ / - (1 to 100 characters, starting with a letter or digit)";
    let cases: Vec<(&str, String)> = vec![
        ("/deploy staging 'develop; rm -rf /'", format!("<ref> \"develop; rm -rf /\" contains ;, which is shell syntax and never accepted; <ref> must be {git_ref}")),
        ("/deploy staging develop; rm -rf /", format!("<ref> \"develop;\" contains ;, which is shell syntax and never accepted; <ref> must be {git_ref}")),
        ("/deploy staging $(id)", format!("<ref> \"$(id)\" contains $, which is shell syntax and never accepted; <ref> must be {git_ref}")),
        ("/deploy staging `id`", format!("<ref> \"`id`\" contains `, which is shell syntax and never accepted; <ref> must be {git_ref}")),
        ("/deploy staging develop|cat", format!("<ref> \"develop|cat\" contains |, which is shell syntax and never accepted; <ref> must be {git_ref}")),
        ("/deploy 'staging && id' develop", "<env> \"staging && id\" contains &, which is shell syntax and never accepted; <env> must be one of production, staging".to_string()),
        ("/deploy staging --upload-pack=touch", "unknown flag --upload-pack; /deploy accepts --dry-run".to_string()),
        ("/deploy staging -rf", "\"-rf\" looks like a flag; values may not start with -".to_string()),
        ("/deploy staging \"--dry-run\"", "\"--dry-run\" looks like a flag; values may not start with -".to_string()),
        ("/deploy staging ../../etc", format!("\"../../etc\" is not a valid <ref>: it must be {git_ref}")),
    ];
    for (input, expected) in cases {
        check(input, &expected);
    }
}

#[test]
fn a_command_without_arguments_answers_with_its_usage() {
    let (config, catalog) = shipped();
    let error = parse_action("/deploy", &catalog, &config).expect_err("deploy needs arguments");
    let text = error.to_string();
    assert!(
        text.starts_with("/deploy <env> <ref> [--dry-run] — deploy a git ref"),
        "{text}"
    );
    assert!(
        text.contains("  env       where to deploy: one of production, staging"),
        "{text}"
    );
    assert!(
        text.contains("  --dry-run show the plan and change nothing"),
        "{text}"
    );
}

#[test]
fn params_hash_binds_every_parameter() {
    let (config, catalog) = shipped();
    let hash = |input: &str| {
        parse_action(input, &catalog, &config)
            .expect("valid input")
            .params_hash()
    };
    assert_eq!(
        hash("/deploy staging develop"),
        hash("/deploy  staging 'develop'")
    );
    assert_ne!(
        hash("/deploy staging develop"),
        hash("/deploy staging main")
    );
    assert_ne!(
        hash("/deploy staging develop"),
        hash("/deploy production develop")
    );
    assert_ne!(
        hash("/rollback staging backend"),
        hash("/rollback staging backend to v1")
    );
}

#[test]
fn suggests_only_close_names() {
    let known = ["deploy", "rollback", "status", "logs"];
    assert_eq!(closest("deplyo", known.into_iter()), Some("deploy".into()));
    assert_eq!(closest("log", known.into_iter()), Some("logs".into()));
    assert_eq!(closest("xyz", known.into_iter()), None);
    assert_eq!(closest("", known.into_iter()), None);
}

#[test]
fn a_switch_flag_takes_no_value() {
    let cases = [
        (
            "/rotate db-password staging --new-user",
            "ok /rotate db-password staging --new-user",
        ),
        // As Discord's options write it back: the switch's name as its value.
        (
            "/rotate db-password staging --new-user new-user",
            "ok /rotate db-password staging --new-user",
        ),
        (
            "/rotate db-password staging --new-user --dry-run",
            "ok /rotate db-password staging --new-user --dry-run",
        ),
        (
            "/rotate db-password staging",
            "ok /rotate db-password staging",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}
