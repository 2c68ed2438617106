//! Property tests over everything Deckhand reads from outside: the command
//! parser, the three signature verifiers (`signatures`), the config and
//! command-file loaders, and the redactor. Case counts are bounded so the whole set runs in seconds inside
//! `cargo test`; `cargo bench --bench fuzz` runs the same properties longer
//! (`DECKHAND_FUZZ_CASES` sets the count here too).
//!
//! The redactor's property sits next to it in `src/secret/tests.rs`, and the
//! Slack, Discord and PagerDuty payload decoders' next to each decoder (they
//! are private to their adapters); Discord's typed options are fuzzed here.

use std::path::Path;

use deckhand::catalog::Catalog;
use deckhand::chat::discord::commands::{OptionValue, command_line};
use deckhand::config::Config;
use deckhand::problem::Source;
use deckhand::secret::{Secret, redact, redact_lines};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

use crate::support::workspace::repo_root;

mod signatures;

use signatures::{
    discord_signatures_hold, pagerduty_signatures_hold, signed_random_bodies_verify,
    slack_signatures_hold,
};

/// A property and how many cases `cargo test` runs of it; read by the bench.
#[allow(dead_code)]
pub struct Property {
    /// What it checks.
    pub name: &'static str,
    /// Runs it for this many cases; panics with the shrunk failure.
    pub run: fn(u32),
    /// Cases in `cargo test`.
    pub cases: u32,
}

/// Every property of this module, for `benches/fuzz.rs` (the integration
/// tests run each through its own `#[test]`).
#[allow(dead_code)]
pub const PROPERTIES: &[Property] = &[
    Property {
        name: "parser",
        run: parser_never_panics_nor_accepts_shell_syntax,
        cases: PARSER_CASES,
    },
    Property {
        name: "discord options",
        run: discord_options_reach_the_parser_safely,
        cases: OPTION_CASES,
    },
    Property {
        name: "slack signatures",
        run: slack_signatures_hold,
        cases: MUTATION_CASES,
    },
    Property {
        name: "discord signatures",
        run: discord_signatures_hold,
        cases: MUTATION_CASES,
    },
    Property {
        name: "pagerduty signatures",
        run: pagerduty_signatures_hold,
        cases: MUTATION_CASES,
    },
    Property {
        name: "signed random bodies",
        run: signed_random_bodies_verify,
        cases: SIGNED_CASES,
    },
    Property {
        name: "config loader",
        run: config_loader_locates_every_problem,
        cases: CONFIG_CASES,
    },
    Property {
        name: "command-file loader",
        run: command_loader_locates_every_problem,
        cases: COMMAND_CASES,
    },
    Property {
        name: "redactor",
        run: registered_secrets_never_survive,
        cases: REDACTOR_CASES,
    },
];

const PARSER_CASES: u32 = 1500;
const OPTION_CASES: u32 = 1000;
const MUTATION_CASES: u32 = 400;
const SIGNED_CASES: u32 = 300;
const CONFIG_CASES: u32 = 300;
const COMMAND_CASES: u32 = 200;
const REDACTOR_CASES: u32 = 300;

/// Cases per property in `cargo test`: the default, or `DECKHAND_FUZZ_CASES`.
/// (The bench gives its own counts.)
#[allow(dead_code)]
fn cases(default: u32) -> u32 {
    std::env::var("DECKHAND_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

fn shipped() -> (Config, Catalog) {
    let config = Config::load(&repo_root().join("config/deckhand.toml")).expect("shipped config");
    let catalog = Catalog::load(&config).expect("shipped commands");
    (config, catalog)
}

/// Characters a shell would act on; none may reach an accepted argument.
const SHELL_SYNTAX: &[char] = &[';', '|', '&', '$', '`', '<', '>', '\\', '\n', '\r'];

/// Words the commands take, shell fragments, and noise.
fn token() -> impl Strategy<Value = String> {
    let words = [
        "staging",
        "production",
        "backend",
        "postgres",
        "develop",
        "v2",
        "v1.4.1",
        "r12",
        "to",
        "jwt",
        "db-password",
        "ssl",
        "restart",
        "--tail",
        "5",
        "--since",
        "10m",
        "--grep",
        "error",
        "--for",
        "2h",
        "--dry-run",
        "\"release freeze\"",
        "'single quoted'",
        ";rm -rf /",
        "$(id)",
        "`id`",
        "a|b",
        "a&&b",
        ">x",
        "<x",
        "a\\b",
        "\"unbalanced",
        "stаging",
        "\u{2014}force",
    ];
    prop_oneof![
        4 => proptest::sample::select(words.to_vec()).prop_map(str::to_string),
        1 => "[ -~]{0,12}",
        1 => "\\PC{0,8}",
    ]
}

fn command_text(names: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (
            proptest::sample::select(names),
            proptest::collection::vec(token(), 0..7)
        )
            .prop_map(|(name, tokens)| format!("/{name} {}", tokens.join(" "))),
        1 => "\\PC{0,120}",
        1 => any::<String>(),
    ]
}

#[test]
fn the_parser_never_panics_and_accepts_no_shell_syntax() {
    parser_never_panics_nor_accepts_shell_syntax(cases(PARSER_CASES));
}

/// See [`the_parser_never_panics_and_accepts_no_shell_syntax`].
pub fn parser_never_panics_nor_accepts_shell_syntax(cases: u32) {
    let (config, catalog) = shipped();
    let names: Vec<String> = catalog
        .commands()
        .map(|spec| spec.name.to_string())
        .collect();
    let mut runner = runner(cases);
    let accepted = std::cell::Cell::new(0_u32);
    runner
        .run(&command_text(names), |text| {
            if let Ok(action) = deckhand::parse::parse_action(&text, &catalog, &config) {
                accepted.set(accepted.get() + 1);
                for (name, value) in action.args.iter() {
                    let value = value.to_text();
                    prop_assert!(
                        !value.contains(SHELL_SYNTAX) && !value.chars().any(char::is_control),
                        "{text:?} was accepted with {name} = {value:?}"
                    );
                }
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert!(
        accepted.get() > 0,
        "the generator reaches accepted commands too"
    );
}

/// A file's text changed line by line: lines dropped, doubled, swapped for
/// noise, or with a character replaced.
fn edited(text: &'static str) -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = text.lines().collect();
    let count = lines.len();
    proptest::collection::vec((0..count, 0_u8..5, "\\PC{0,12}", any::<usize>()), 1..6).prop_map(
        move |edits| {
            let mut lines: Vec<String> = lines.iter().map(|line| line.to_string()).collect();
            for (line, kind, noise, at) in edits {
                let index = line % lines.len().max(1);
                match kind {
                    0 if !lines.is_empty() => {
                        lines.remove(index);
                    }
                    1 if !lines.is_empty() => {
                        let copy = lines[index].clone();
                        lines.insert(index, copy);
                    }
                    2 if !lines.is_empty() => lines[index] = noise,
                    3 if !lines.is_empty() => {
                        let chars: Vec<char> = lines[index].chars().collect();
                        let position = at % chars.len().max(1);
                        let mut changed: String = chars.iter().take(position).collect();
                        changed.push_str(&noise);
                        changed.extend(chars.iter().skip(position + 1));
                        lines[index] = changed;
                    }
                    _ => lines.insert(index, noise),
                }
            }
            lines.join("\n")
        },
    )
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn config_input() -> impl Strategy<Value = String> {
    let shipped =
        std::fs::read_to_string(repo_root().join("config/deckhand.toml")).expect("shipped config");
    prop_oneof![
        4 => edited(leak(shipped)),
        1 => "\\PC{0,300}",
        1 => any::<String>(),
    ]
}

#[test]
fn the_config_loader_never_panics_and_every_problem_names_file_and_line() {
    config_loader_locates_every_problem(cases(CONFIG_CASES));
}

/// See [`the_config_loader_never_panics_and_every_problem_names_file_and_line`].
pub fn config_loader_locates_every_problem(cases: u32) {
    let path = Path::new("config/deckhand.toml");
    let mut runner = runner(cases);
    runner
        .run(&config_input(), |text| {
            let source = Source::new(path, text.clone());
            if let Err(problems) = Config::from_source(&source) {
                prop_assert!(!problems.is_empty());
                for problem in &problems.0 {
                    prop_assert_eq!(problem.file.as_path(), path);
                    prop_assert!(problem.line.is_some(), "no line in {problem} for:\n{text}");
                    prop_assert!(problem.to_string().starts_with("config/deckhand.toml:"));
                }
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

#[test]
fn the_command_file_loader_never_panics_and_every_problem_names_file_and_line() {
    command_loader_locates_every_problem(cases(COMMAND_CASES));
}

/// See [`the_command_file_loader_never_panics_and_every_problem_names_file_and_line`].
pub fn command_loader_locates_every_problem(cases: u32) {
    let (config, _) = shipped();
    let folder = repo_root().join("commands");
    let mut files: Vec<(String, &'static str)> = std::fs::read_dir(&folder)
        .expect("commands folder")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        })
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a command file");
            (path.display().to_string(), leak(text))
        })
        .collect();
    files.sort();
    let count = files.len();
    let strategy = (0..count, 0..count).prop_flat_map(move |(first, second)| {
        let (first_text, second_text) = (files[first].1, files[second].1);
        let names = (files[first].0.clone(), files[second].0.clone());
        (
            Just(names),
            prop_oneof![4 => edited(first_text), 1 => "\\PC{0,200}"],
            edited(second_text),
        )
    });
    let mut runner = runner(cases);
    runner
        .run(&strategy, |((first, second), first_text, second_text)| {
            let sources = [
                Source::new(Path::new(&first), first_text),
                Source::new(Path::new(&format!("{second}.copy")), second_text),
            ];
            if let Err(problems) = Catalog::from_sources(&config, &sources) {
                for problem in &problems.0 {
                    prop_assert!(problem.line.is_some(), "no line in {problem}");
                    // Cross-references (`access.unmapped_may_run`) point at the config file.
                    let named = [sources[0].path(), sources[1].path(), config.file.as_path()];
                    prop_assert!(named.contains(&problem.file.as_path()), "{problem}");
                }
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

fn option_value() -> impl Strategy<Value = OptionValue> {
    prop_oneof![
        4 => token().prop_map(OptionValue::Text),
        1 => "\\PC{0,20}".prop_map(OptionValue::Text),
        1 => any::<i64>().prop_map(OptionValue::Integer),
        1 => any::<bool>().prop_map(OptionValue::Boolean),
        1 => Just(OptionValue::Unsupported),
    ]
}

/// Discord sends typed options, which Deckhand writes as a command line for
/// the parser: whatever the options hold, that never panics and what the
/// parser then accepts holds no shell syntax.
#[test]
fn discord_options_become_command_lines_the_parser_judges() {
    discord_options_reach_the_parser_safely(cases(OPTION_CASES));
}

/// See [`discord_options_become_command_lines_the_parser_judges`].
pub fn discord_options_reach_the_parser_safely(cases: u32) {
    let (config, catalog) = shipped();
    let specs: Vec<(String, Vec<String>)> = catalog
        .commands()
        .map(|spec| {
            let mut names: Vec<String> = spec.args.iter().map(|arg| arg.name.clone()).collect();
            names.push("dry-run".to_string());
            names.push("unknown".to_string());
            (spec.name.to_string(), names)
        })
        .collect();
    let strategy = proptest::sample::select(specs).prop_flat_map(|(name, option_names)| {
        (
            Just(name),
            proptest::collection::vec(
                (proptest::sample::select(option_names), option_value()),
                0..5,
            ),
        )
    });
    let mut runner = runner(cases);
    runner
        .run(&strategy, |(name, options)| {
            let spec = catalog.get(&name);
            if let Ok(line) = command_line(&name, spec, &options)
                && let Ok(action) = deckhand::parse::parse_action(&line, &catalog, &config)
            {
                for (_, value) in action.args.iter() {
                    let value = value.to_text();
                    prop_assert!(!value.contains(SHELL_SYNTAX), "{line:?} gave {value:?}");
                }
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// Text around a secret: anything printable, newlines and the characters
/// that delimit URLs, JSON and SQL.
fn surrounding() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~\n\t\u{e9}\u{2014}]{0,40}").expect("a valid strategy")
}

/// A secret: what Deckhand generates (URL-safe base64) or someone chose
/// (any printable ASCII, including `/`, `@`, quotes and spaces).
fn secret_value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex("[A-Za-z0-9_-]{16,64}").expect("a valid strategy"),
        proptest::string::string_regex("[!-~][ -~]{8,30}[!-~]").expect("a valid strategy"),
    ]
}

/// How the secret is embedded: as is, percent-encoded in a URL, JSON-escaped,
/// repeated, at line boundaries.
fn embedded(value: &str, form: u8) -> String {
    match form % 5 {
        0 => value.to_string(),
        1 => format!("postgres://app:{}@db:5432/app", percent(value)),
        2 => serde_json::to_string(value).unwrap_or_default(),
        3 => format!("{value}\n{value}{value}"),
        _ => format!("\n{value}\n"),
    }
}

fn percent(value: &str) -> String {
    value
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

#[test]
fn a_registered_secret_never_survives_any_surrounding_text() {
    registered_secrets_never_survive(cases(REDACTOR_CASES));
}

/// See [`a_registered_secret_never_survives_any_surrounding_text`]: as is,
/// several times, at line boundaries, percent-encoded in a URL, escaped in
/// JSON; through `redact` and through `redact_lines`.
pub fn registered_secrets_never_survive(cases: u32) {
    let strategy = (secret_value(), surrounding(), surrounding(), any::<u8>());
    let mut runner = runner(cases);
    runner
        .run(&strategy, |(value, before, after, form)| {
            let secret = Secret::new(value.clone());
            let text = format!("{before}{}{after}", embedded(secret.expose(), form));
            let redacted = redact(&text);
            prop_assert!(
                !redacted.contains(&value),
                "{value:?} survived in {redacted:?}"
            );
            prop_assert!(
                !redacted.contains(&percent(&value)),
                "encoded {value:?} survived in {redacted:?}"
            );
            for line in redact_lines(text.lines()) {
                prop_assert!(
                    !line.contains(&value),
                    "{value:?} survived in line {line:?}"
                );
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}
