//! Application commands: what Deckhand declares to Discord for each command
//! of the catalog (typed options: environments, services, commands and
//! enums as choices, integers with their bounds, regex and duration
//! arguments as strings whose description states the rule), and the way
//! back: an interaction's options written out as the command line the flow
//! parses (`/deploy staging develop`).
//!
//! Discord only offers what the declarations allow; the flow still checks
//! every value against its rule, so a stale registration can never let
//! something through. Registration itself (compare, then overwrite) is in
//! `registration`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::catalog::{ArgPosition, ArgSpec, Catalog, CommandSpec, Rule, describe_rule};
use crate::config::Config;

use super::render::truncate;

/// Discord's limit on choices per option.
const MAX_CHOICES: usize = 25;
/// Discord's limit on descriptions, in characters.
const MAX_DESCRIPTION: usize = 100;
/// The option every mutating command gets, for `--dry-run`.
pub const DRY_RUN_OPTION: &str = "dry-run";

/// One application command as Deckhand declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDeclaration {
    /// The command name, without `/`.
    pub name: String,
    /// One line shown in Discord's command picker.
    pub description: String,
    /// Its options, required ones first (Discord's rule).
    pub options: Vec<OptionDeclaration>,
}

/// One option of an application command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDeclaration {
    /// Discord's option type.
    pub kind: OptionKind,
    /// The argument's name.
    pub name: String,
    /// Its help, with the rule when Discord cannot enforce it.
    pub description: String,
    /// Whether it must be given.
    pub required: bool,
    /// Values to pick from (name and value are the same).
    pub choices: Vec<String>,
    /// Smallest integer accepted.
    pub min: Option<i64>,
    /// Largest integer accepted.
    pub max: Option<i64>,
}

/// Discord's application command option types that Deckhand uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// STRING (3).
    String,
    /// INTEGER (4).
    Integer,
    /// BOOLEAN (5).
    Boolean,
    /// Any other type, as registered by someone else.
    Other(u8),
}

impl OptionKind {
    /// The type number on the wire.
    pub fn to_number(self) -> u8 {
        match self {
            OptionKind::String => 3,
            OptionKind::Integer => 4,
            OptionKind::Boolean => 5,
            OptionKind::Other(number) => number,
        }
    }

    /// Reads a type number.
    pub fn from_number(number: u8) -> OptionKind {
        match number {
            3 => OptionKind::String,
            4 => OptionKind::Integer,
            5 => OptionKind::Boolean,
            other => OptionKind::Other(other),
        }
    }
}

/// A value of an interaction's option.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// A string option.
    Text(String),
    /// An integer option.
    Integer(i64),
    /// A boolean option.
    Boolean(bool),
    /// Any other kind, which Deckhand never declares.
    Unsupported,
}

/// The declarations of every command of the catalog, sorted by name.
pub fn declarations(catalog: &Catalog, config: &Config) -> Vec<CommandDeclaration> {
    let command_names: Vec<String> = catalog
        .commands()
        .map(|spec| spec.name.to_string())
        .collect();
    let mut declarations: Vec<CommandDeclaration> = catalog
        .commands()
        .map(|spec| declaration(spec, config, &command_names))
        .collect();
    declarations.sort_by(|left, right| left.name.cmp(&right.name));
    declarations
}

fn declaration(
    spec: &CommandSpec,
    config: &Config,
    command_names: &[String],
) -> CommandDeclaration {
    let mut options: Vec<OptionDeclaration> = spec
        .args
        .iter()
        .map(|arg| option(arg, config, command_names))
        .collect();
    if spec.mutating {
        options.push(OptionDeclaration {
            kind: OptionKind::Boolean,
            name: DRY_RUN_OPTION.to_string(),
            description: "show the plan only; nothing is changed".to_string(),
            required: false,
            choices: Vec::new(),
            min: None,
            max: None,
        });
    }
    // Discord refuses a required option after an optional one.
    options.sort_by_key(|option| !option.required);
    CommandDeclaration {
        name: spec.name.to_string(),
        description: truncate(&spec.summary, MAX_DESCRIPTION),
        options,
    }
}

fn option(arg: &ArgSpec, config: &Config, command_names: &[String]) -> OptionDeclaration {
    let choices: Vec<String> = match &arg.rule {
        Rule::Environment => config
            .environments
            .keys()
            .map(ToString::to_string)
            .collect(),
        Rule::Service => config
            .environments
            .values()
            .flat_map(|environment| environment.services.keys().map(ToString::to_string))
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect(),
        Rule::Command => command_names.to_vec(),
        Rule::Enum(values) => values.clone(),
        Rule::Regex { .. } | Rule::Integer { .. } | Rule::Duration { .. } => Vec::new(),
    };
    let fits = !choices.is_empty()
        && choices.len() <= MAX_CHOICES
        && choices.iter().all(|choice| choice.chars().count() <= 100);
    let (kind, min, max) = match &arg.rule {
        Rule::Integer { min, max } => (OptionKind::Integer, Some(*min), Some(*max)),
        _ => (OptionKind::String, None, None),
    };
    // The description carries the rule whenever Discord cannot show or
    // enforce it: regexes, durations, and lists too long for choices.
    let states_rule = match &arg.rule {
        Rule::Regex { .. } | Rule::Duration { .. } => true,
        Rule::Integer { .. } => false,
        _ => !fits,
    };
    let description = if states_rule {
        format!("{} — {}", arg.help, describe_rule(&arg.rule, config))
    } else {
        arg.help.clone()
    };
    OptionDeclaration {
        kind,
        name: arg.name.clone(),
        description: truncate(&description, MAX_DESCRIPTION),
        required: arg.required,
        choices: if fits { choices } else { Vec::new() },
        min,
        max,
    }
}

impl CommandDeclaration {
    /// The declaration as Discord's JSON (an element of the bulk overwrite).
    pub fn to_json(&self) -> Value {
        let options: Vec<Value> = self
            .options
            .iter()
            .map(OptionDeclaration::to_json)
            .collect();
        json!({
            "name": self.name,
            "type": 1,
            "description": self.description,
            "options": options,
        })
    }

    /// Reads a command as Discord returns it (GET …/commands), keeping only
    /// what Deckhand declares, so a declaration and its registration compare
    /// equal exactly when nothing needs registering.
    pub fn from_json(command: &Value) -> CommandDeclaration {
        let options = command["options"]
            .as_array()
            .map(|options| options.iter().map(OptionDeclaration::from_json).collect())
            .unwrap_or_default();
        CommandDeclaration {
            name: text(&command["name"]),
            description: text(&command["description"]),
            options,
        }
    }
}

impl OptionDeclaration {
    fn to_json(&self) -> Value {
        let mut option = json!({
            "type": self.kind.to_number(),
            "name": self.name,
            "description": self.description,
            "required": self.required,
        });
        if !self.choices.is_empty() {
            option["choices"] = self
                .choices
                .iter()
                .map(|choice| json!({ "name": choice, "value": choice }))
                .collect();
        }
        if let Some(min) = self.min {
            option["min_value"] = json!(min);
        }
        if let Some(max) = self.max {
            option["max_value"] = json!(max);
        }
        option
    }

    fn from_json(option: &Value) -> OptionDeclaration {
        let kind = option["type"]
            .as_u64()
            .and_then(|number| u8::try_from(number).ok())
            .map(OptionKind::from_number)
            .unwrap_or(OptionKind::Other(0));
        // A choice whose name differs from its value was not declared by
        // Deckhand; keeping both makes the comparison fail, as it should.
        let choices = option["choices"]
            .as_array()
            .map(|choices| {
                choices
                    .iter()
                    .map(|choice| {
                        let (name, value) = (text(&choice["name"]), text(&choice["value"]));
                        if name == value {
                            name
                        } else {
                            format!("{name}={value}")
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        OptionDeclaration {
            kind,
            name: text(&option["name"]),
            description: text(&option["description"]),
            required: option["required"].as_bool().unwrap_or(false),
            choices,
            min: option["min_value"].as_i64(),
            max: option["max_value"].as_i64(),
        }
    }
}

/// Whether `registered` (as Discord returns it) already matches
/// `declared`, in any order of commands.
pub fn is_registered(declared: &[CommandDeclaration], registered: &[Value]) -> bool {
    let mut registered: Vec<CommandDeclaration> = registered
        .iter()
        .map(CommandDeclaration::from_json)
        .collect();
    registered.sort_by(|left, right| left.name.cmp(&right.name));
    let mut declared = declared.to_vec();
    declared.sort_by(|left, right| left.name.cmp(&right.name));
    registered == declared
}

/// Writes an interaction's options as the command line the flow parses:
/// positional arguments in declared order, `--flag value`, `KEYWORD value`,
/// `--dry-run`, with quotes where a value needs them. `spec` is `None` for
/// a command the catalog no longer has; the flow then answers it.
///
/// # Errors
/// A message for the requester when the options cannot be written as a
/// command line (an option the command does not have, a gap in the
/// positional arguments, a value with both kinds of quote).
pub fn command_line(
    name: &str,
    spec: Option<&CommandSpec>,
    options: &[(String, OptionValue)],
) -> Result<String, String> {
    let mut words = vec![format!("/{name}")];
    let Some(spec) = spec else {
        return Ok(words.remove(0));
    };
    for (option_name, _) in options {
        let known =
            option_name == DRY_RUN_OPTION || spec.args.iter().any(|arg| arg.name == *option_name);
        if !known {
            return Err(format!(
                "/{name} has no option \"{option_name}\"; Discord may still show an older version of the command, which Deckhand re-registers when it starts"
            ));
        }
    }
    let value_of = |arg: &ArgSpec| {
        options
            .iter()
            .find(|(option_name, _)| *option_name == arg.name)
            .map(|(_, value)| value)
    };
    let keywords: Vec<&str> = spec
        .args
        .iter()
        .filter_map(|arg| match &arg.position {
            ArgPosition::Keyword(keyword) => Some(keyword.as_str()),
            _ => None,
        })
        .collect();
    let positionals: Vec<&ArgSpec> = spec
        .args
        .iter()
        .filter(|arg| arg.position == ArgPosition::Positional)
        .collect();
    let last_given = positionals.iter().rposition(|arg| value_of(arg).is_some());
    for (arg_idx, arg) in positionals.iter().enumerate() {
        if last_given.is_none_or(|last| arg_idx > last) {
            break;
        }
        let word = match (value_of(arg), &arg.default) {
            (Some(value), _) => word_of(arg, value, &keywords)?,
            (None, Some(default)) => quote(default, &keywords)?,
            (None, None) => {
                let later = positionals[last_given.unwrap_or(arg_idx)];
                return Err(format!(
                    "give \"{}\" too when you give \"{}\" (they are taken in order)",
                    arg.name, later.name
                ));
            }
        };
        words.push(word);
    }
    for arg in &spec.args {
        let Some(value) = value_of(arg) else { continue };
        match &arg.position {
            ArgPosition::Positional => {}
            ArgPosition::Flag => words.push(format!(
                "--{} {}",
                arg.name,
                word_of(arg, value, &keywords)?
            )),
            ArgPosition::Keyword(keyword) => {
                words.push(format!("{keyword} {}", word_of(arg, value, &keywords)?))
            }
        }
    }
    let dry_run = options.iter().any(|(option_name, value)| {
        option_name == DRY_RUN_OPTION && *value == OptionValue::Boolean(true)
    });
    if dry_run {
        words.push("--dry-run".to_string());
    }
    Ok(words.join(" "))
}

fn word_of(arg: &ArgSpec, value: &OptionValue, keywords: &[&str]) -> Result<String, String> {
    match value {
        OptionValue::Text(text) => quote(text, keywords),
        OptionValue::Integer(number) => Ok(number.to_string()),
        OptionValue::Boolean(flag) => Ok(flag.to_string()),
        OptionValue::Unsupported => Err(format!(
            "option \"{}\" has a type Deckhand does not declare; Discord may still show an older version of the command",
            arg.name
        )),
    }
}

/// Quotes a value when the parser would otherwise read it as something
/// else: empty, with spaces or quotes, starting with `-`, or a keyword.
fn quote(text: &str, keywords: &[&str]) -> Result<String, String> {
    let plain = !text.is_empty()
        && !text.contains([' ', '"', '\''])
        && !text.starts_with('-')
        && !keywords.contains(&text);
    if plain {
        Ok(text.to_string())
    } else if !text.contains('"') {
        Ok(format!("\"{text}\""))
    } else if !text.contains('\'') {
        Ok(format!("'{text}'"))
    } else {
        Err(format!(
            "{text:?} contains both ' and \", which no argument accepts"
        ))
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::config::Config;
    use std::path::PathBuf;

    fn shipped() -> (Config, Catalog) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let config =
            Config::load(&root.join("config/deckhand.toml")).expect("shipped config loads");
        let catalog = Catalog::load(&config).expect("shipped commands load");
        (config, catalog)
    }

    fn text_option(name: &str, value: &str) -> (String, OptionValue) {
        (name.to_string(), OptionValue::Text(value.to_string()))
    }

    #[test]
    fn shipped_commands_declare_typed_options() {
        let (config, catalog) = shipped();
        let declared = declarations(&catalog, &config);
        assert_eq!(declared.len(), catalog.len());
        let deploy = declared
            .iter()
            .find(|command| command.name == "deploy")
            .expect("deploy");
        assert_eq!(
            deploy.to_json(),
            json!({
                "name": "deploy",
                "type": 1,
                "description": "deploy a git ref of the application to an environment",
                "options": [
                    { "type": 3, "name": "env", "description": "where to deploy", "required": true,
                      "choices": [{ "name": "production", "value": "production" }, { "name": "staging", "value": "staging" }] },
                    { "type": 3, "name": "ref", "required": true,
                      "description": "branch, tag or commit to deploy — a git ref: letters, digits and . _ / - (1 to 100 characters, star…" },
                    { "type": 5, "name": "dry-run", "description": "show the plan only; nothing is changed", "required": false },
                ],
            })
        );
        let logs = declared
            .iter()
            .find(|command| command.name == "logs")
            .expect("logs");
        let tail = logs
            .options
            .iter()
            .find(|option| option.name == "tail")
            .expect("tail");
        assert_eq!(
            (tail.kind, tail.min, tail.max),
            (OptionKind::Integer, Some(1), Some(1000))
        );
        let since = logs
            .options
            .iter()
            .find(|option| option.name == "since")
            .expect("since");
        assert_eq!(since.kind, OptionKind::String);
        assert!(
            since.description.contains("a duration such as 10m"),
            "{}",
            since.description
        );
        let service = logs
            .options
            .iter()
            .find(|option| option.name == "service")
            .expect("service");
        assert!(service.choices.contains(&"backend".to_string()));
        let action = &declared
            .iter()
            .find(|command| command.name == "service")
            .expect("service")
            .options[0];
        assert_eq!(action.choices, ["start", "stop", "restart", "status"]);
        for command in &declared {
            let first_optional = command.options.iter().position(|option| !option.required);
            let last_required = command.options.iter().rposition(|option| option.required);
            assert!(
                first_optional.is_none()
                    || last_required.is_none_or(|last| last < first_optional.unwrap_or(0)),
                "/{}: required options come first",
                command.name
            );
            assert!(command.description.chars().count() <= MAX_DESCRIPTION);
        }
    }

    #[test]
    fn a_registration_matches_its_declarations_in_any_order() {
        let (config, catalog) = shipped();
        let declared = declarations(&catalog, &config);
        let mut registered: Vec<Value> = declared
            .iter()
            .map(|command| {
                let mut json = command.to_json();
                json["id"] = json!("1174109840998531999");
                json["version"] = json!("1174109840998532000");
                json["default_member_permissions"] = Value::Null;
                json
            })
            .collect();
        registered.reverse();
        assert!(is_registered(&declared, &registered));
        registered[0]["options"][0]["description"] = json!("changed");
        assert!(!is_registered(&declared, &registered));
        registered.remove(0);
        assert!(!is_registered(&declared, &registered));
        assert!(!is_registered(&declared, &[]));
    }

    #[test]
    fn options_become_the_command_line_the_parser_reads() {
        let (_, catalog) = shipped();
        type Case = (
            &'static str,
            Vec<(String, OptionValue)>,
            Result<&'static str, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "deploy",
                vec![text_option("env", "staging"), text_option("ref", "develop")],
                Ok("/deploy staging develop"),
            ),
            (
                "deploy",
                vec![
                    text_option("ref", "v1.4.2"),
                    text_option("env", "production"),
                    ("dry-run".to_string(), OptionValue::Boolean(true)),
                ],
                Ok("/deploy production v1.4.2 --dry-run"),
            ),
            (
                "lock",
                vec![
                    text_option("env", "production"),
                    text_option("reason", "release freeze"),
                    text_option("for", "2d"),
                ],
                Ok("/lock production \"release freeze\" --for 2d"),
            ),
            (
                "lock",
                vec![
                    text_option("env", "staging"),
                    text_option("reason", "it's \"odd\""),
                ],
                Err("contains both"),
            ),
            (
                "logs",
                vec![
                    text_option("env", "staging"),
                    text_option("service", "backend"),
                    ("tail".to_string(), OptionValue::Integer(50)),
                ],
                Ok("/logs staging backend --tail 50"),
            ),
            (
                "rollback",
                vec![
                    text_option("env", "production"),
                    text_option("target", "to"),
                ],
                Ok("/rollback production to \"to\""),
            ),
            (
                "rollback",
                vec![text_option("env", "staging"), text_option("service", "-x")],
                Ok("/rollback staging \"-x\""),
            ),
            ("help", vec![], Ok("/help")),
            (
                "deploy",
                vec![text_option("environment", "staging")],
                Err("/deploy has no option \"environment\""),
            ),
            ("gone", vec![text_option("env", "staging")], Ok("/gone")),
        ];
        for (name, options, expected) in cases {
            let actual = command_line(name, catalog.get(name), &options);
            match (&actual, expected) {
                (Ok(line), Ok(expected)) => assert_eq!(line, expected),
                (Err(message), Err(expected)) => assert!(message.contains(expected), "{message}"),
                _ => panic!("/{name} {options:?}: got {actual:?}, expected {expected:?}"),
            }
        }
    }
}
