//! Chat text → a typed `Action`, or a `ParseError` a person can act on.
//!
//! Input is checked as a whole first (empty, too long, control characters,
//! characters outside plain ASCII), then split into words with quotes, then
//! matched against the command's declared arguments in order; every value
//! is checked against its rule before any `Action` exists. After this module,
//! no code reads raw user text. It performs no IO and reads no clock.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::catalog::{ArgPosition, ArgSpec, Catalog, CommandSpec, Rule, describe_rule};
use crate::config::Config;
use crate::duration::{format_duration, parse_duration};
use crate::names::{CommandName, EnvName, ServiceName};

/// Longest accepted input, in characters.
pub const MAX_INPUT_CHARS: usize = 1000;

/// Characters that mean something to a shell. No rule accepts them, and a
/// value containing one gets an answer that says so plainly.
const SHELL_SYNTAX: &[char] = &[';', '|', '&', '$', '`', '<', '>', '\\'];

/// A request that passed every rule: the command, its environment and its
/// typed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The command.
    pub command: CommandName,
    /// The environment, when the command takes one and it was given.
    pub env: Option<EnvName>,
    /// Every argument that was given or has a default, by declared name.
    pub args: Args,
    /// `--dry-run`: show the plan, change nothing.
    pub dry_run: bool,
}

/// Typed argument values by declared name. Only the parser builds one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args(BTreeMap<String, ArgValue>);

/// One checked argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// An environment of config.
    Environment(EnvName),
    /// A service of the environment.
    Service(ServiceName),
    /// A command of the catalog.
    Command(CommandName),
    /// One of an enum's values.
    Choice(String),
    /// Text that matched its anchored regex.
    Text(String),
    /// An integer within its bounds.
    Integer(i64),
    /// A duration within its bound.
    Duration(Duration),
}

impl ArgValue {
    /// The value as it would be typed again.
    pub fn to_text(&self) -> String {
        match self {
            ArgValue::Environment(env) => env.to_string(),
            ArgValue::Service(service) => service.to_string(),
            ArgValue::Command(command) => command.to_string(),
            ArgValue::Choice(text) | ArgValue::Text(text) => text.clone(),
            ArgValue::Integer(number) => number.to_string(),
            ArgValue::Duration(duration) => format_duration(*duration),
        }
    }
}

impl Args {
    /// The value of an argument, if given.
    pub fn get(&self, name: &str) -> Option<&ArgValue> {
        self.0.get(name)
    }

    /// A service argument.
    pub fn service(&self, name: &str) -> Option<&ServiceName> {
        match self.0.get(name) {
            Some(ArgValue::Service(service)) => Some(service),
            _ => None,
        }
    }

    /// A text or choice argument.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(ArgValue::Text(text) | ArgValue::Choice(text)) => Some(text),
            _ => None,
        }
    }

    /// A command argument.
    pub fn command(&self, name: &str) -> Option<&CommandName> {
        match self.0.get(name) {
            Some(ArgValue::Command(command)) => Some(command),
            _ => None,
        }
    }

    /// An integer argument.
    pub fn integer(&self, name: &str) -> Option<i64> {
        match self.0.get(name) {
            Some(ArgValue::Integer(number)) => Some(*number),
            _ => None,
        }
    }

    /// A duration argument.
    pub fn duration(&self, name: &str) -> Option<Duration> {
        match self.0.get(name) {
            Some(ArgValue::Duration(duration)) => Some(*duration),
            _ => None,
        }
    }

    /// Every argument, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ArgValue)> {
        self.0.iter()
    }
}

impl Action {
    /// The request written out canonically, in declared argument order, so
    /// that parsing it again gives the same action: `/deploy staging develop`.
    pub fn to_command_line(&self, spec: &CommandSpec) -> String {
        let mut words = vec![format!("/{}", self.command)];
        for arg in &spec.args {
            let Some(value) = self.args.get(&arg.name) else {
                continue;
            };
            let text = quote_if_needed(&value.to_text());
            match &arg.position {
                ArgPosition::Positional => words.push(text),
                ArgPosition::Flag if arg.is_switch() => words.push(format!("--{}", arg.name)),
                ArgPosition::Flag => words.push(format!("--{} {text}", arg.name)),
                ArgPosition::Keyword(keyword) => words.push(format!("{keyword} {text}")),
            }
        }
        if self.dry_run {
            words.push("--dry-run".to_string());
        }
        words.join(" ")
    }

    /// A hash of the exact parameters: the command, environment and every
    /// argument. An approval binds to it, so an approval given for one set of
    /// parameters never counts for another.
    pub fn params_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.command.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(
            self.env
                .as_ref()
                .map(EnvName::as_str)
                .unwrap_or("")
                .as_bytes(),
        );
        for (name, value) in self.args.iter() {
            hasher.update([0]);
            hasher.update(name.as_bytes());
            hasher.update([b'=']);
            hasher.update(value.to_text().as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

fn quote_if_needed(text: &str) -> String {
    if text.is_empty() || text.contains(' ') {
        format!("\"{text}\"")
    } else {
        text.to_string()
    }
}

/// Why a request was refused. Each message says what was wrong, what is
/// accepted and what to try; it is shown to the requester as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but whitespace.
    Empty,
    /// Longer than `MAX_INPUT_CHARS`.
    TooLong {
        /// Characters given.
        chars: usize,
    },
    /// A control character, including line breaks.
    ControlCharacter {
        /// The character.
        character: char,
    },
    /// A typographic quote or dash, as chat clients substitute them.
    Typographic {
        /// The character.
        character: char,
    },
    /// A character outside plain ASCII, such as a Cyrillic look-alike.
    NonAscii {
        /// The word that holds it.
        word: String,
        /// The character.
        character: char,
    },
    /// A quote that is never closed.
    UnbalancedQuote {
        /// The quote character.
        quote: char,
        /// 1-based character position where it opened.
        position: usize,
    },
    /// The input does not start with `/command`.
    NotACommand,
    /// No command of that name.
    UnknownCommand {
        /// What was typed.
        name: String,
        /// The closest known command, if any is close.
        suggestion: Option<String>,
    },
    /// A command that needs arguments was given none: the answer is its usage.
    UsageRequested {
        /// Help text generated from the declaration.
        help: String,
    },
    /// A required argument is missing.
    MissingArgument {
        /// The argument.
        arg: String,
        /// What it must be.
        expected: String,
        /// The command's usage.
        usage: String,
    },
    /// More words than the command takes.
    TooManyArguments {
        /// The first extra word.
        extra: String,
        /// The command's usage.
        usage: String,
    },
    /// A `--flag` the command does not declare.
    UnknownFlag {
        /// The flag as typed.
        flag: String,
        /// The command.
        command: String,
        /// Flags it accepts.
        accepted: Vec<String>,
    },
    /// A flag without its value.
    FlagWithoutValue {
        /// The flag.
        flag: String,
    },
    /// The same argument given twice.
    Repeated {
        /// The argument.
        arg: String,
    },
    /// A value that starts with `-` where no flag is expected.
    LooksLikeFlag {
        /// The word.
        word: String,
    },
    /// A value containing shell syntax.
    ShellSyntax {
        /// The argument.
        arg: String,
        /// The value.
        value: String,
        /// The shell character found.
        character: char,
        /// What the argument must be.
        expected: String,
    },
    /// No environment of that name.
    UnknownEnvironment {
        /// What was typed.
        name: String,
        /// Known environments.
        known: Vec<String>,
    },
    /// No service of that name in the environment.
    UnknownService {
        /// What was typed.
        name: String,
        /// The environment.
        env: String,
        /// Its services.
        known: Vec<String>,
    },
    /// A value that does not satisfy its rule.
    Invalid {
        /// The argument.
        arg: String,
        /// The value.
        value: String,
        /// What the argument must be.
        expected: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(
                formatter,
                "empty command; type /help to see what Deckhand can do"
            ),
            ParseError::TooLong { chars } => write!(
                formatter,
                "input is {chars} characters long; the limit is {MAX_INPUT_CHARS}"
            ),
            ParseError::ControlCharacter {
                character: '\n' | '\r',
            } => {
                write!(
                    formatter,
                    "input contains a line break; a command is a single line"
                )
            }
            ParseError::ControlCharacter { character } => write!(
                formatter,
                "input contains a control character ({}); remove it and try again",
                code_point(*character)
            ),
            ParseError::Typographic {
                character: character @ ('\u{2013}' | '\u{2014}'),
            } => write!(
                formatter,
                "input contains the dash {character} ({}); write flags with two plain hyphens, as in --dry-run",
                code_point(*character)
            ),
            ParseError::Typographic { character } => write!(
                formatter,
                "input contains the typographic quote {character} ({}); use plain \" or ' quotes",
                code_point(*character)
            ),
            ParseError::NonAscii { word, character } => write!(
                formatter,
                "\"{word}\" contains \"{character}\" ({}), which is not plain ASCII; look-alike characters are not accepted, retype it with plain letters",
                code_point(*character)
            ),
            ParseError::UnbalancedQuote { quote, position } => write!(
                formatter,
                "unbalanced quotes: the {quote} at character {position} is never closed"
            ),
            ParseError::NotACommand => write!(
                formatter,
                "commands start with /, as in /deploy staging develop; type /help for the list"
            ),
            ParseError::UnknownCommand {
                name,
                suggestion: Some(suggestion),
            } => write!(
                formatter,
                "unknown command /{name}; did you mean /{suggestion}?"
            ),
            ParseError::UnknownCommand {
                name,
                suggestion: None,
            } => write!(
                formatter,
                "unknown command /{name}; type /help for the list"
            ),
            ParseError::UsageRequested { help } => write!(formatter, "{help}"),
            ParseError::MissingArgument {
                arg,
                expected,
                usage,
            } => write!(formatter, "missing <{arg}>: {expected}\nusage: {usage}"),
            ParseError::TooManyArguments { extra, usage } => write!(
                formatter,
                "too many arguments: \"{extra}\" is not expected\nusage: {usage}"
            ),
            ParseError::UnknownFlag {
                flag,
                command,
                accepted,
            } if accepted.is_empty() => {
                write!(formatter, "unknown flag {flag}; /{command} takes no flags")
            }
            ParseError::UnknownFlag {
                flag,
                command,
                accepted,
            } => write!(
                formatter,
                "unknown flag {flag}; /{command} accepts {}",
                accepted.join(", ")
            ),
            ParseError::FlagWithoutValue { flag } => {
                write!(formatter, "{flag} needs a value, as in {flag} VALUE")
            }
            ParseError::Repeated { arg } => write!(formatter, "<{arg}> is given twice"),
            ParseError::LooksLikeFlag { word } => write!(
                formatter,
                "\"{word}\" looks like a flag; values may not start with -"
            ),
            ParseError::ShellSyntax {
                arg,
                value,
                character,
                expected,
            } => write!(
                formatter,
                "<{arg}> \"{value}\" contains {character}, which is shell syntax and never accepted; <{arg}> must be {expected}"
            ),
            ParseError::UnknownEnvironment { name, known } => write!(
                formatter,
                "unknown environment \"{name}\"; known: {}",
                known.join(", ")
            ),
            ParseError::UnknownService { name, env, known } => write!(
                formatter,
                "unknown service \"{name}\" in {env}; known: {}",
                known.join(", ")
            ),
            ParseError::Invalid {
                arg,
                value,
                expected,
            } => write!(
                formatter,
                "\"{value}\" is not a valid <{arg}>: it must be {expected}"
            ),
        }
    }
}

impl std::error::Error for ParseError {}

fn code_point(character: char) -> String {
    format!("U+{:04X}", u32::from(character))
}

/// Parses one request against the catalog and config.
///
/// # Errors
/// The first thing wrong with the input, in the order a person would fix it.
pub fn parse_action(text: &str, catalog: &Catalog, config: &Config) -> Result<Action, ParseError> {
    check_characters(text)?;
    let words = split_words(text)?;
    let Some((first, rest)) = words.split_first() else {
        return Err(ParseError::Empty);
    };
    let name = match first.text.strip_prefix('/') {
        Some(name) if !first.quoted => name,
        _ => return Err(ParseError::NotACommand),
    };
    let Some(spec) = catalog.get(name) else {
        return Err(ParseError::UnknownCommand {
            name: name.to_string(),
            suggestion: closest(name, catalog.commands().map(|spec| spec.name.as_str())),
        });
    };
    if rest.is_empty() && spec.args.iter().any(|arg| arg.required) {
        return Err(ParseError::UsageRequested {
            help: spec.help_text(config),
        });
    }
    let assigned = assign_words(spec, rest, config)?;
    check_values(spec, assigned, catalog, config)
}

/// Checks the input as a whole, before it is split.
fn check_characters(text: &str) -> Result<(), ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let chars = text.chars().count();
    if chars > MAX_INPUT_CHARS {
        return Err(ParseError::TooLong { chars });
    }
    if let Some(character) = text.chars().find(|character| character.is_control()) {
        return Err(ParseError::ControlCharacter { character });
    }
    if let Some(character) = text.chars().find(|character| {
        matches!(
            character,
            '\u{2018}'
                | '\u{2019}'
                | '\u{201A}'
                | '\u{201B}'
                | '\u{201C}'
                | '\u{201D}'
                | '\u{201E}'
                | '\u{2013}'
                | '\u{2014}'
        )
    }) {
        return Err(ParseError::Typographic { character });
    }
    if let Some(word) = text.split(' ').find(|word| !word.is_ascii()) {
        let character = word
            .chars()
            .find(|character| !character.is_ascii())
            .unwrap_or('?');
        return Err(ParseError::NonAscii {
            word: word.to_string(),
            character,
        });
    }
    Ok(())
}

/// One word of input, after quotes are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    text: String,
    /// Whether any part of it was quoted; a quoted word is never a flag,
    /// a keyword or the command.
    quoted: bool,
}

/// Splits on spaces; single or double quotes group words, as in a shell but
/// with no escapes and no expansion of any kind.
fn split_words(text: &str) -> Result<Vec<Word>, ParseError> {
    let mut words = Vec::new();
    let mut current: Option<Word> = None;
    let mut open_quote: Option<(char, usize)> = None;
    for (char_idx, character) in text.chars().enumerate() {
        match (open_quote, character) {
            (Some((quote, _)), _) if character == quote => open_quote = None,
            (Some(_), _) => current.get_or_insert_with(empty_word).text.push(character),
            (None, '"' | '\'') => {
                open_quote = Some((character, char_idx + 1));
                current.get_or_insert_with(empty_word).quoted = true;
            }
            (None, ' ') => words.extend(current.take()),
            (None, _) => current.get_or_insert_with(empty_word).text.push(character),
        }
    }
    if let Some((quote, position)) = open_quote {
        return Err(ParseError::UnbalancedQuote { quote, position });
    }
    words.extend(current);
    Ok(words)
}

fn empty_word() -> Word {
    Word {
        text: String::new(),
        quoted: false,
    }
}

/// Words matched to declared arguments, not yet checked against rules.
struct Assigned<'a> {
    values: Vec<(&'a ArgSpec, String)>,
    dry_run: bool,
}

fn assign_words<'a>(
    spec: &'a CommandSpec,
    words: &[Word],
    config: &Config,
) -> Result<Assigned<'a>, ParseError> {
    let mut values: Vec<(&ArgSpec, String)> = Vec::new();
    let mut dry_run = false;
    let mut positionals = spec
        .args
        .iter()
        .filter(|arg| arg.position == ArgPosition::Positional);
    let mut remaining = words.iter();
    while let Some(word) = remaining.next() {
        if !word.quoted && word.text.starts_with("--") {
            let (flag, inline_value) = match word.text.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_string())),
                None => (word.text.as_str(), None),
            };
            if flag == "--dry-run" && spec.mutating && inline_value.is_none() {
                dry_run = true;
                continue;
            }
            let Some(arg) = spec
                .args
                .iter()
                .find(|arg| arg.position == ArgPosition::Flag && format!("--{}", arg.name) == flag)
            else {
                return Err(unknown_flag(spec, flag));
            };
            let value = match inline_value {
                Some(value) => value,
                // A switch takes no value (`--new-user`); its name may follow
                // it as the value, as Discord's options write it back.
                None if arg.is_switch() => {
                    if remaining
                        .clone()
                        .next()
                        .is_some_and(|next| !next.quoted && next.text == arg.name)
                    {
                        remaining.next();
                    }
                    arg.name.clone()
                }
                None => remaining
                    .next()
                    .map(|next| next.text.clone())
                    .ok_or_else(|| ParseError::FlagWithoutValue {
                        flag: flag.to_string(),
                    })?,
            };
            push_value(&mut values, arg, value, config)?;
            continue;
        }
        let keyword_arg = spec.args.iter().find(|arg| {
            !word.quoted
                && matches!(&arg.position, ArgPosition::Keyword(keyword) if *keyword == word.text)
        });
        if let Some(arg) = keyword_arg {
            let value = remaining
                .next()
                .map(|next| next.text.clone())
                .ok_or_else(|| ParseError::MissingArgument {
                    arg: arg.name.clone(),
                    expected: arg.help.clone(),
                    usage: spec.usage(),
                })?;
            push_value(&mut values, arg, value, config)?;
            continue;
        }
        if word.text.starts_with('-') {
            return Err(ParseError::LooksLikeFlag {
                word: word.text.clone(),
            });
        }
        match positionals.next() {
            Some(arg) => push_value(&mut values, arg, word.text.clone(), config)?,
            None => {
                return Err(ParseError::TooManyArguments {
                    extra: word.text.clone(),
                    usage: spec.usage(),
                });
            }
        }
    }
    Ok(Assigned { values, dry_run })
}

fn push_value<'a>(
    values: &mut Vec<(&'a ArgSpec, String)>,
    arg: &'a ArgSpec,
    value: String,
    config: &Config,
) -> Result<(), ParseError> {
    check_shell_syntax(arg, &value, config)?;
    if values.iter().any(|(given, _)| given.name == arg.name) {
        return Err(ParseError::Repeated {
            arg: arg.name.clone(),
        });
    }
    values.push((arg, value));
    Ok(())
}

fn unknown_flag(spec: &CommandSpec, flag: &str) -> ParseError {
    let mut accepted: Vec<String> = spec
        .args
        .iter()
        .filter(|arg| arg.position == ArgPosition::Flag)
        .map(|arg| format!("--{}", arg.name))
        .collect();
    if spec.mutating {
        accepted.push("--dry-run".to_string());
    }
    ParseError::UnknownFlag {
        flag: flag.to_string(),
        command: spec.name.to_string(),
        accepted,
    }
}

/// Checks every value against its rule, the environment first since
/// services are resolved in it, then the rest in declared order.
fn check_values(
    spec: &CommandSpec,
    assigned: Assigned<'_>,
    catalog: &Catalog,
    config: &Config,
) -> Result<Action, ParseError> {
    let mut given: BTreeMap<&str, &str> = BTreeMap::new();
    for (arg, value) in &assigned.values {
        given.insert(arg.name.as_str(), value.as_str());
    }
    let mut ordered: Vec<&ArgSpec> = spec.args.iter().collect();
    ordered.sort_by_key(|arg| !matches!(arg.rule, Rule::Environment));
    let mut args = BTreeMap::new();
    let mut env: Option<EnvName> = None;
    for arg in ordered {
        let value = match (given.get(arg.name.as_str()), &arg.default) {
            (Some(value), _) => (*value).to_string(),
            (None, Some(default)) => default.clone(),
            (None, None) if arg.required => {
                return Err(ParseError::MissingArgument {
                    arg: arg.name.clone(),
                    expected: format!("{} ({})", arg.help, describe_rule(&arg.rule, config)),
                    usage: spec.usage(),
                });
            }
            (None, None) => continue,
        };
        let checked = check_value(arg, &value, env.as_ref(), catalog, config)?;
        if let ArgValue::Environment(name) = &checked {
            env = Some(name.clone());
        }
        args.insert(arg.name.clone(), checked);
    }
    Ok(Action {
        command: spec.name.clone(),
        env,
        args: Args(args),
        dry_run: assigned.dry_run,
    })
}

fn check_value(
    arg: &ArgSpec,
    value: &str,
    env: Option<&EnvName>,
    catalog: &Catalog,
    config: &Config,
) -> Result<ArgValue, ParseError> {
    let invalid = || ParseError::Invalid {
        arg: arg.name.clone(),
        value: value.to_string(),
        expected: describe_rule(&arg.rule, config),
    };
    check_shell_syntax(arg, value, config)?;
    match &arg.rule {
        Rule::Environment => match config.environments.get(value) {
            Some(environment) => Ok(ArgValue::Environment(environment.name.clone())),
            None => Err(ParseError::UnknownEnvironment {
                name: value.to_string(),
                known: config
                    .environments
                    .keys()
                    .map(ToString::to_string)
                    .collect(),
            }),
        },
        Rule::Service => {
            let environment = env.and_then(|env| config.environments.get(env.as_str()));
            let Some(environment) = environment else {
                return Err(invalid());
            };
            match environment.services.get(value) {
                Some(service) => Ok(ArgValue::Service(service.name.clone())),
                None => Err(ParseError::UnknownService {
                    name: value.to_string(),
                    env: environment.name.to_string(),
                    known: environment
                        .services
                        .keys()
                        .map(ToString::to_string)
                        .collect(),
                }),
            }
        }
        Rule::Command => match catalog.get(value) {
            Some(spec) => Ok(ArgValue::Command(spec.name.clone())),
            None => Err(ParseError::UnknownCommand {
                name: value.to_string(),
                suggestion: closest(value, catalog.commands().map(|spec| spec.name.as_str())),
            }),
        },
        Rule::Enum(values) if values.iter().any(|allowed| allowed == value) => {
            Ok(ArgValue::Choice(value.to_string()))
        }
        Rule::Enum(_) => Err(invalid()),
        Rule::Regex { regex, .. } if regex.is_match(value) => Ok(ArgValue::Text(value.to_string())),
        Rule::Regex { .. } => Err(invalid()),
        Rule::Integer { min, max } => match value.parse::<i64>() {
            Ok(number) if (*min..=*max).contains(&number) && !value.starts_with('+') => {
                Ok(ArgValue::Integer(number))
            }
            _ => Err(invalid()),
        },
        Rule::Duration { max } => match parse_duration(value) {
            Some(duration) if !duration.is_zero() && duration <= *max => {
                Ok(ArgValue::Duration(duration))
            }
            _ => Err(invalid()),
        },
    }
}

/// Refuses a value containing shell syntax, as soon as it is matched to
/// its argument, so the answer names the real problem.
fn check_shell_syntax(arg: &ArgSpec, value: &str, config: &Config) -> Result<(), ParseError> {
    match value
        .chars()
        .find(|character| SHELL_SYNTAX.contains(character))
    {
        Some(character) => Err(ParseError::ShellSyntax {
            arg: arg.name.clone(),
            value: value.to_string(),
            character,
            expected: describe_rule(&arg.rule, config),
        }),
        None => Ok(()),
    }
}

/// The known name closest to `typed`, if it is close enough to be a typo:
/// at most two edits (a swap of neighbours counts as one), and fewer edits
/// than the name has letters.
pub fn closest<'a>(typed: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    known
        .map(|name| (edit_distance(typed, name), name))
        .filter(|(distance, name)| *distance <= 2 && *distance < name.len().min(typed.len().max(1)))
        .min()
        .map(|(_, name)| name.to_string())
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of adjacent characters each cost one.
fn edit_distance(left: &str, right: &str) -> usize {
    let left: Vec<char> = left.chars().collect();
    let right: Vec<char> = right.chars().collect();
    let mut table = vec![vec![0usize; right.len() + 1]; left.len() + 1];
    for (row_idx, row) in table.iter_mut().enumerate() {
        row[0] = row_idx;
    }
    for (col_idx, cell) in table[0].iter_mut().enumerate() {
        *cell = col_idx;
    }
    for row_idx in 1..=left.len() {
        for col_idx in 1..=right.len() {
            let cost = usize::from(left[row_idx - 1] != right[col_idx - 1]);
            let mut best = (table[row_idx - 1][col_idx] + 1)
                .min(table[row_idx][col_idx - 1] + 1)
                .min(table[row_idx - 1][col_idx - 1] + cost);
            if row_idx > 1
                && col_idx > 1
                && left[row_idx - 1] == right[col_idx - 2]
                && left[row_idx - 2] == right[col_idx - 1]
            {
                best = best.min(table[row_idx - 2][col_idx - 2] + 1);
            }
            table[row_idx][col_idx] = best;
        }
    }
    table[left.len()][right.len()]
}

#[cfg(test)]
mod tests;
