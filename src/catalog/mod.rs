//! `commands/*.toml` → a validated `Catalog` of `CommandSpec`s: each chat
//! command's arguments with their rules, its policy per environment and its
//! runbook steps. Loading resolves every file against `Config` (regexes
//! compiled and anchored, roles, environments and services checked) and
//! reports the problems of all files together. Parsing chat text against the
//! catalog is `parse`'s job; running steps is `exec`'s.

mod raw;
pub mod step;

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use crate::config::{Config, ServiceKind, join_names};
use crate::duration::parse_duration;
use crate::names::{CommandName, EnvName, RoleName, is_plain_name};
use crate::problem::{KeyPath, Problem, Problems, Source};

pub use raw::CommandFile;
pub use step::{ArgNeed, SmokeCheck, Step};

/// Default time an approval request waits.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(30 * 60);

/// Every command, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    commands: BTreeMap<CommandName, CommandSpec>,
}

/// One validated chat command.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Its name, without `/`.
    pub name: CommandName,
    /// One line for `/help`.
    pub summary: String,
    /// Whether it changes anything.
    pub mutating: bool,
    /// Whether it may run while the environment is held.
    pub allowed_during_hold: bool,
    /// Whether a failure after the first replacement rolls back by itself.
    pub rollback_on_failure: bool,
    /// Warning shown with its plan and approval requests.
    pub warning: Option<String>,
    /// Example invocations.
    pub examples: Vec<String>,
    /// Arguments, in typing order.
    pub args: Vec<ArgSpec>,
    /// Policy for named environments.
    pub policy_by_env: BTreeMap<EnvName, PolicyRule>,
    /// Policy for environments not named, and for calls without an environment.
    pub policy_default: Option<PolicyRule>,
    /// The runbook steps.
    pub steps: Vec<Step>,
}

/// One argument of a command.
#[derive(Debug, Clone)]
pub struct ArgSpec {
    /// Its name.
    pub name: String,
    /// What it means.
    pub help: String,
    /// How it is given.
    pub position: ArgPosition,
    /// Whether it must be given.
    pub required: bool,
    /// Its rule.
    pub rule: Rule,
    /// Value used when it is optional and absent.
    pub default: Option<String>,
}

impl ArgSpec {
    /// Whether the argument is a switch: a flag whose only allowed value is
    /// its own name, given as just `--name` (`--new-user`).
    pub fn is_switch(&self) -> bool {
        self.position == ArgPosition::Flag
            && matches!(&self.rule, Rule::Enum(values) if values.len() == 1 && values[0] == self.name)
    }
}

/// How an argument is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgPosition {
    /// By position, in declared order.
    Positional,
    /// As `--name value`.
    Flag,
    /// As `KEYWORD value`.
    Keyword(String),
}

/// The kind of a rule, without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// An environment name.
    Environment,
    /// A service of the environment.
    Service,
    /// A command name.
    Command,
    /// One of a list.
    Enum,
    /// An anchored regex.
    Regex,
    /// An integer in a range.
    Integer,
    /// A duration such as `10m`.
    Duration,
}

impl RuleKind {
    /// The kind as written in command files.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Environment => "environment",
            RuleKind::Service => "service",
            RuleKind::Command => "command",
            RuleKind::Enum => "enum",
            RuleKind::Regex => "regex",
            RuleKind::Integer => "integer",
            RuleKind::Duration => "duration",
        }
    }
}

/// The rule a value must satisfy.
#[derive(Debug, Clone)]
pub enum Rule {
    /// An environment declared in config.
    Environment,
    /// A service of the request's environment.
    Service,
    /// A command of the catalog.
    Command,
    /// One of these values.
    Enum(Vec<String>),
    /// A match of this anchored regex, described in words.
    Regex {
        /// The compiled, anchored pattern.
        regex: Regex,
        /// The pattern in words.
        means: String,
    },
    /// An integer within bounds.
    Integer {
        /// Smallest accepted.
        min: i64,
        /// Largest accepted.
        max: i64,
    },
    /// A duration up to a bound.
    Duration {
        /// Longest accepted.
        max: Duration,
    },
}

impl Rule {
    /// The rule's kind.
    pub fn kind(&self) -> RuleKind {
        match self {
            Rule::Environment => RuleKind::Environment,
            Rule::Service => RuleKind::Service,
            Rule::Command => RuleKind::Command,
            Rule::Enum(_) => RuleKind::Enum,
            Rule::Regex { .. } => RuleKind::Regex,
            Rule::Integer { .. } => RuleKind::Integer,
            Rule::Duration { .. } => RuleKind::Duration,
        }
    }
}

/// Who may request a command in an environment and what approval it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    /// Roles that may request.
    pub request: Vec<RoleRef>,
    /// Approvals needed.
    pub approvals: u32,
    /// Roles whose members may approve.
    pub approvers: Vec<RoleName>,
    /// How long a request waits for approval.
    pub expires: Duration,
    /// What an approved operation does when its environment is busy.
    pub on_busy: OnBusy,
}

/// What an approved operation does when another one runs in its
/// environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnBusy {
    /// Refuse it with who is busy since when (the default).
    #[default]
    Refuse,
    /// Wait in order until the environment is free; cancellable meanwhile.
    Queue,
}

/// A role in a policy: a named role, or anyone who holds any role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleRef {
    /// Any person mapped to at least one role.
    Anyone,
    /// Members of this role.
    Role(RoleName),
}

impl std::fmt::Display for RoleRef {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoleRef::Anyone => formatter.write_str("anyone"),
            RoleRef::Role(role) => write!(formatter, "{role}"),
        }
    }
}

impl Catalog {
    /// Loads every `*.toml` in the config's commands folder.
    ///
    /// # Errors
    /// Every problem of every file, each with file and line.
    pub fn load(config: &Config) -> Result<Catalog, Problems> {
        let directory = &config.commands_dir;
        let entries = std::fs::read_dir(directory).map_err(|error| {
            Problems(vec![Problem {
                file: directory.clone(),
                line: None,
                key: String::new(),
                message: format!("cannot read the commands folder: {error}"),
            }])
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "toml")
            })
            .collect();
        paths.sort();
        let mut sources = Vec::new();
        let mut problems = Problems::default();
        for path in paths {
            match std::fs::read_to_string(&path) {
                Ok(text) => sources.push(Source::new(&path, text)),
                Err(error) => problems.0.push(Problem {
                    file: path.clone(),
                    line: None,
                    key: String::new(),
                    message: format!("cannot read: {error}"),
                }),
            }
        }
        match Catalog::from_sources(config, &sources) {
            Ok(catalog) if problems.is_empty() => Ok(catalog),
            Ok(_) => Err(problems),
            Err(more) => {
                problems.extend(more);
                Err(problems)
            }
        }
    }

    /// Validates command files that were already read.
    ///
    /// # Errors
    /// Every problem of every file.
    pub fn from_sources(config: &Config, sources: &[Source]) -> Result<Catalog, Problems> {
        let mut problems = Problems::default();
        let mut commands = BTreeMap::new();
        for source in sources {
            let file: CommandFile = match toml::from_str(source.text()) {
                Ok(file) => file,
                Err(error) => {
                    problems.0.push(source.problem_from_toml(&error));
                    continue;
                }
            };
            if let Some(spec) = check_command(config, source, file, &mut problems) {
                if commands.contains_key(&spec.name) {
                    problems.0.push(source.problem(
                        &KeyPath::root().key("name"),
                        format!("command \"{}\" is declared twice", spec.name),
                    ));
                }
                commands.insert(spec.name.clone(), spec);
            }
        }
        if sources.is_empty() {
            problems.0.push(Problem {
                file: config.commands_dir.clone(),
                line: None,
                key: String::new(),
                message: "no command files (*.toml) found".to_string(),
            });
        }
        let catalog = Catalog { commands };
        check_cross_references(config, &catalog, sources, &mut problems);
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems)
        }
    }

    /// The command of that name.
    pub fn get(&self, name: &str) -> Option<&CommandSpec> {
        self.commands.get(name)
    }

    /// Every command, by name.
    pub fn commands(&self) -> impl Iterator<Item = &CommandSpec> {
        self.commands.values()
    }

    /// How many commands there are.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

impl CommandSpec {
    /// The policy that applies in an environment (or without one).
    pub fn policy_for(&self, env: Option<&EnvName>) -> Option<&PolicyRule> {
        env.and_then(|env| self.policy_by_env.get(env))
            .or(self.policy_default.as_ref())
    }

    /// The argument holding the environment, if the command has one.
    pub fn environment_arg(&self) -> Option<&ArgSpec> {
        self.args
            .iter()
            .find(|arg| matches!(arg.rule, Rule::Environment))
    }

    /// One-line usage: `/deploy <env> <ref> [--dry-run]`.
    pub fn usage(&self) -> String {
        let mut parts = vec![format!("/{}", self.name)];
        for arg in &self.args {
            let shown = match &arg.position {
                ArgPosition::Positional => match &arg.rule {
                    Rule::Enum(values) if values.len() <= 4 => values.join("|"),
                    _ => format!("<{}>", arg.name),
                },
                ArgPosition::Flag if arg.is_switch() => format!("--{}", arg.name),
                ArgPosition::Flag => format!("--{} <{}>", arg.name, arg.name),
                ArgPosition::Keyword(keyword) => format!("{keyword} <{}>", arg.name),
            };
            parts.push(if arg.required {
                shown
            } else {
                format!("[{shown}]")
            });
        }
        if self.mutating {
            parts.push("[--dry-run]".to_string());
        }
        parts.join(" ")
    }

    /// Usage with one line per argument, for `/help deploy` and for a
    /// command typed without its arguments.
    pub fn help_text(&self, config: &Config) -> String {
        let mut lines = vec![format!("{} — {}", self.usage(), self.summary)];
        for arg in &self.args {
            lines.push(format!(
                "  {:<9} {}: {}",
                arg.name,
                arg.help,
                describe_rule(&arg.rule, config)
            ));
        }
        if self.mutating {
            lines.push("  --dry-run show the plan and change nothing".to_string());
        }
        if let Some(warning) = &self.warning {
            lines.push(format!("  ⚠ {warning}"));
        }
        for example in &self.examples {
            lines.push(format!("  e.g. {example}"));
        }
        lines.join("\n")
    }
}

/// A rule in words, as shown in help and in errors.
pub fn describe_rule(rule: &Rule, config: &Config) -> String {
    match rule {
        Rule::Environment => format!(
            "one of {}",
            join_names(config.environments.keys().map(EnvName::as_str))
        ),
        Rule::Service => "a service of the environment".to_string(),
        Rule::Command => "a command name".to_string(),
        Rule::Enum(values) => format!("one of {}", values.join(", ")),
        Rule::Regex { means, .. } => means.clone(),
        Rule::Integer { min, max } => format!("a whole number from {min} to {max}"),
        Rule::Duration { max } => format!(
            "a duration such as 10m or 2h, at most {}",
            crate::duration::format_duration(*max)
        ),
    }
}

fn check_command(
    config: &Config,
    source: &Source,
    file: CommandFile,
    problems: &mut Problems,
) -> Option<CommandSpec> {
    let before = problems.0.len();
    let root = KeyPath::root();
    let stem = source
        .path()
        .file_stem()
        .map(|stem| stem.to_string_lossy().to_string())
        .unwrap_or_default();
    if !is_plain_name(&file.name) {
        problems.0.push(source.problem(
            &root.key("name"),
            format!(
                "\"{}\" is not a usable command name (lower-case letters, digits, - and _)",
                file.name
            ),
        ));
    } else if file.name != stem {
        problems.0.push(source.problem(
            &root.key("name"),
            format!(
                "command \"{}\" must live in a file named {}.toml",
                file.name, file.name
            ),
        ));
    }
    let args = check_args(config, source, &file, problems);
    let (policy_default, policy_by_env) = check_policy(config, source, &file, problems);
    check_steps(config, source, &file, &args, problems);
    if file.mutating && !file.steps.iter().any(Step::is_mutating) {
        problems.0.push(source.problem(
            &root.key("mutating"),
            "the command is marked mutating but none of its steps changes anything",
        ));
    }
    if !file.mutating
        && let Some((step_idx, step)) = file
            .steps
            .iter()
            .enumerate()
            .find(|(_, step)| step.is_mutating())
    {
        problems.0.push(source.problem(
            &root.key("steps").index(step_idx),
            format!(
                "step {} changes things, so the command must say mutating = true",
                step.kind()
            ),
        ));
    }
    if problems.0.len() > before {
        return None;
    }
    Some(CommandSpec {
        name: CommandName::new(file.name),
        summary: file.summary,
        mutating: file.mutating,
        allowed_during_hold: file.allowed_during_hold,
        rollback_on_failure: file.rollback_on_failure,
        warning: file.warning,
        examples: file.examples,
        args,
        policy_by_env,
        policy_default,
        steps: file.steps,
    })
}

fn check_args(
    config: &Config,
    source: &Source,
    file: &CommandFile,
    problems: &mut Problems,
) -> Vec<ArgSpec> {
    let mut args: Vec<ArgSpec> = Vec::new();
    let mut seen_optional_positional = false;
    for (arg_idx, raw_arg) in file.args.iter().enumerate() {
        let key = KeyPath::root().key("args").index(arg_idx);
        if !is_plain_name(&raw_arg.name) || raw_arg.name == "dry-run" {
            problems.0.push(source.problem(
                &key.key("name"),
                format!("\"{}\" is not a usable argument name", raw_arg.name),
            ));
            continue;
        }
        if args.iter().any(|arg| arg.name == raw_arg.name) {
            problems.0.push(source.problem(
                &key.key("name"),
                format!("argument \"{}\" is declared twice", raw_arg.name),
            ));
            continue;
        }
        let Some(rule) = check_rule(source, &key, raw_arg, problems) else {
            continue;
        };
        let required = raw_arg.required.unwrap_or(true);
        let position = match (&raw_arg.keyword, raw_arg.flag) {
            (Some(_), true) => {
                problems.0.push(source.problem(
                    &key.key("keyword"),
                    "an argument is either a flag or introduced by a keyword, not both",
                ));
                continue;
            }
            (Some(keyword), false) => ArgPosition::Keyword(keyword.clone()),
            (None, true) => ArgPosition::Flag,
            (None, false) => ArgPosition::Positional,
        };
        if position == ArgPosition::Positional {
            if required && seen_optional_positional {
                problems.0.push(source.problem(
                    &key.key("required"),
                    "a required positional argument cannot follow an optional one",
                ));
            }
            seen_optional_positional |= !required;
        }
        if required && raw_arg.default.is_some() {
            problems.0.push(source.problem(
                &key.key("default"),
                "a required argument cannot have a default; set required = false",
            ));
        }
        args.push(ArgSpec {
            name: raw_arg.name.clone(),
            help: raw_arg.help.clone(),
            position,
            required,
            rule,
            default: raw_arg.default.clone(),
        });
    }
    let environment_args = args
        .iter()
        .filter(|arg| matches!(arg.rule, Rule::Environment))
        .count();
    if environment_args > 1 {
        problems.0.push(source.problem(
            &KeyPath::root().key("args"),
            "a command takes at most one environment argument",
        ));
    }
    if args.iter().any(|arg| matches!(arg.rule, Rule::Service)) && environment_args == 0 {
        problems.0.push(source.problem(
            &KeyPath::root().key("args"),
            "a service argument needs an environment argument to resolve it",
        ));
    }
    let _ = config;
    args
}

fn check_rule(
    source: &Source,
    key: &KeyPath,
    raw_arg: &raw::RawArg,
    problems: &mut Problems,
) -> Option<Rule> {
    let mut misplaced = Vec::new();
    let mut only = |field: &'static str, present: bool, allowed: bool| {
        if present && !allowed {
            misplaced.push(field);
        }
    };
    let rule_name = raw_arg.rule.as_str();
    only("values", raw_arg.values.is_some(), rule_name == "enum");
    only("pattern", raw_arg.pattern.is_some(), rule_name == "regex");
    only("means", raw_arg.means.is_some(), rule_name == "regex");
    only("min", raw_arg.min.is_some(), rule_name == "integer");
    only(
        "max",
        raw_arg.max.is_some(),
        rule_name == "integer" || rule_name == "duration",
    );
    for field in misplaced {
        problems.0.push(source.problem(
            &key.key(field),
            format!("{field} does not apply to rule \"{rule_name}\""),
        ));
    }
    let rule = match rule_name {
        "environment" => Rule::Environment,
        "service" => Rule::Service,
        "command" => Rule::Command,
        "enum" => match &raw_arg.values {
            Some(values) if !values.is_empty() => {
                if let Some(bad) = values.iter().find(|value| !is_enum_value(value)) {
                    problems.0.push(source.problem(
                        &key.key("values"),
                        format!("enum value \"{bad}\" must be lower-case letters, digits, - and _"),
                    ));
                    return None;
                }
                Rule::Enum(values.clone())
            }
            _ => {
                problems.0.push(
                    source.problem(&key.key("rule"), "rule \"enum\" needs values = [\"…\", …]"),
                );
                return None;
            }
        },
        "regex" => check_regex_rule(source, key, raw_arg, problems)?,
        "integer" => {
            let min = raw_arg.min.unwrap_or(0);
            let max = match &raw_arg.max {
                None => i64::MAX,
                Some(toml::Value::Integer(max)) => *max,
                Some(_) => {
                    problems
                        .0
                        .push(source.problem(&key.key("max"), "max must be a whole number"));
                    return None;
                }
            };
            if min > max {
                problems
                    .0
                    .push(source.problem(&key.key("min"), format!("min {min} is above max {max}")));
                return None;
            }
            Rule::Integer { min, max }
        }
        "duration" => {
            let max = match &raw_arg.max {
                None => Duration::from_secs(365 * 86_400),
                Some(toml::Value::String(text)) => match parse_duration(text) {
                    Some(max) => max,
                    None => {
                        problems.0.push(source.problem(
                            &key.key("max"),
                            format!("\"{text}\" is not a duration such as \"7d\""),
                        ));
                        return None;
                    }
                },
                Some(_) => {
                    problems.0.push(
                        source.problem(&key.key("max"), "max must be a duration such as \"7d\""),
                    );
                    return None;
                }
            };
            Rule::Duration { max }
        }
        other => {
            problems.0.push(source.problem(
                &key.key("rule"),
                format!(
                    "unknown rule \"{other}\" (known: environment, service, command, enum, regex, integer, duration)"
                ),
            ));
            return None;
        }
    };
    Some(rule)
}

fn check_regex_rule(
    source: &Source,
    key: &KeyPath,
    raw_arg: &raw::RawArg,
    problems: &mut Problems,
) -> Option<Rule> {
    let Some(pattern) = &raw_arg.pattern else {
        problems
            .0
            .push(source.problem(&key.key("rule"), "rule \"regex\" needs a pattern"));
        return None;
    };
    if !pattern.starts_with('^') || !pattern.ends_with('$') {
        problems.0.push(source.problem(
            &key.key("pattern"),
            format!("pattern \"{pattern}\" must be anchored: start with ^ and end with $"),
        ));
        return None;
    }
    let Some(means) = &raw_arg.means else {
        problems.0.push(source.problem(
            &key.key("pattern"),
            "a regex rule needs means = \"…\" to explain it to people in words",
        ));
        return None;
    };
    match Regex::new(pattern) {
        Ok(regex) => Some(Rule::Regex {
            regex,
            means: means.clone(),
        }),
        Err(error) => {
            let detail = error
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string();
            problems.0.push(source.problem(
                &key.key("pattern"),
                format!("bad regex \"{pattern}\": {detail}"),
            ));
            None
        }
    }
}

fn is_enum_value(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with('-')
        && value.chars().all(|character| {
            character.is_ascii_lowercase()
                || character.is_ascii_digit()
                || character == '-'
                || character == '_'
        })
}

type Policies = (Option<PolicyRule>, BTreeMap<EnvName, PolicyRule>);

fn check_policy(
    config: &Config,
    source: &Source,
    file: &CommandFile,
    problems: &mut Problems,
) -> Policies {
    let mut by_env = BTreeMap::new();
    let mut default = None;
    let known_roles = join_names(config.roles.keys().map(RoleName::as_str));
    let known_envs = join_names(config.environments.keys().map(EnvName::as_str));
    if file.policy.is_empty() {
        problems.0.push(source.problem(
            &KeyPath::root(),
            "no policy: add [policy.default] or [policy.ENVIRONMENT] saying who may run it",
        ));
    }
    for (scope, raw_policy) in &file.policy {
        let key = KeyPath::root().key("policy").key(scope);
        let before = problems.0.len();
        if scope != "default" && !config.environments.contains_key(scope.as_str()) {
            problems.0.push(source.problem(
                &key,
                format!(
                    "no environment named \"{scope}\" (defined: {known_envs}; or use \"default\")"
                ),
            ));
        }
        let mut request = Vec::new();
        for (role_idx, role) in raw_policy.request.iter().enumerate() {
            if role == "anyone" {
                request.push(RoleRef::Anyone);
            } else if config.roles.contains_key(role.as_str()) {
                request.push(RoleRef::Role(RoleName::new(role.clone())));
            } else {
                problems.0.push(source.problem(
                    &key.key("request").index(role_idx),
                    format!("no role named \"{role}\" (defined: {known_roles})"),
                ));
            }
        }
        let mut approvers = Vec::new();
        for (role_idx, role) in raw_policy.approvers.iter().enumerate() {
            if config.roles.contains_key(role.as_str()) {
                approvers.push(RoleName::new(role.clone()));
            } else {
                problems.0.push(source.problem(
                    &key.key("approvers").index(role_idx),
                    format!("no role named \"{role}\" (defined: {known_roles})"),
                ));
            }
        }
        if raw_policy.approvals > 0 && raw_policy.approvers.is_empty() {
            problems.0.push(source.problem(
                &key.key("approvals"),
                "approvals are required but no approvers roles are named",
            ));
        }
        if raw_policy.approvals > 0 && !file.mutating {
            problems.0.push(source.problem(
                &key.key("approvals"),
                "only mutating commands can require approvals",
            ));
        }
        let expires = match raw_policy.expires.as_deref() {
            None => DEFAULT_EXPIRY,
            Some(text) => match parse_duration(text) {
                Some(expires) if !expires.is_zero() => expires,
                _ => {
                    problems.0.push(source.problem(
                        &key.key("expires"),
                        format!("\"{text}\" is not a duration such as \"30m\""),
                    ));
                    DEFAULT_EXPIRY
                }
            },
        };
        let on_busy = match raw_policy.on_busy.as_deref() {
            None | Some("refuse") => OnBusy::Refuse,
            Some("queue") if file.mutating => OnBusy::Queue,
            Some("queue") => {
                problems.0.push(source.problem(
                    &key.key("on_busy"),
                    "only mutating commands wait for their environment; read-only ones never queue",
                ));
                OnBusy::Refuse
            }
            Some(other) => {
                problems.0.push(source.problem(
                    &key.key("on_busy"),
                    format!("\"{other}\" is not \"refuse\" or \"queue\""),
                ));
                OnBusy::Refuse
            }
        };
        if problems.0.len() > before {
            continue;
        }
        let rule = PolicyRule {
            request,
            approvals: raw_policy.approvals,
            approvers,
            expires,
            on_busy,
        };
        if scope == "default" {
            default = Some(rule);
        } else {
            by_env.insert(EnvName::new(scope.clone()), rule);
        }
    }
    (default, by_env)
}

fn check_steps(
    config: &Config,
    source: &Source,
    file: &CommandFile,
    args: &[ArgSpec],
    problems: &mut Problems,
) {
    let has_environment = args.iter().any(|arg| matches!(arg.rule, Rule::Environment));
    let environment_required = args
        .iter()
        .any(|arg| matches!(arg.rule, Rule::Environment) && arg.required);
    for (step_idx, step) in file.steps.iter().enumerate() {
        let key = KeyPath::root().key("steps").index(step_idx);
        if step.needs_environment() && !has_environment {
            problems.0.push(source.problem(
                &key,
                format!("step {} needs an environment argument", step.kind()),
            ));
        }
        if step.is_mutating() && has_environment && !environment_required {
            problems.0.push(source.problem(
                &key,
                format!(
                    "step {} changes things, so the environment argument must be required",
                    step.kind()
                ),
            ));
        }
        for need in step.arg_needs() {
            let declared = file.args.iter().any(|arg| arg.name == need.name);
            match args.iter().find(|arg| arg.name == need.name) {
                // Declared but rejected: that problem is reported already.
                None if declared => {}
                None if need.required => problems.0.push(source.problem(
                    &key,
                    format!(
                        "step {} needs an argument named \"{}\" with rule \"{}\"",
                        step.kind(),
                        need.name,
                        need.rule.as_str()
                    ),
                )),
                None => {}
                Some(arg) if arg.rule.kind() != need.rule => problems.0.push(source.problem(
                    &key,
                    format!(
                        "step {} needs argument \"{}\" to have rule \"{}\", not \"{}\"",
                        step.kind(),
                        need.name,
                        need.rule.as_str(),
                        arg.rule.kind().as_str()
                    ),
                )),
                Some(arg) if need.required && !arg.required => problems.0.push(source.problem(
                    &key,
                    format!(
                        "step {} needs argument \"{}\" to be required",
                        step.kind(),
                        need.name
                    ),
                )),
                Some(_) => {}
            }
        }
        check_step_services(config, source, &key, step, problems);
        check_step_parameters(source, &key, step, problems);
    }
}

/// Every service a step names must exist in every environment, since the
/// command can be asked for in any of them.
fn check_step_services(
    config: &Config,
    source: &Source,
    key: &KeyPath,
    step: &Step,
    problems: &mut Problems,
) {
    for service in step.named_services() {
        for environment in config.environments.values() {
            if !environment.services.contains_key(service) {
                problems.0.push(source.problem(
                    key,
                    format!(
                        "step {} names service \"{service}\", which environment \"{}\" does not define (defined: {})",
                        step.kind(),
                        environment.name,
                        join_names(environment.services.keys().map(|name| name.as_str()))
                    ),
                ));
                continue;
            }
            let service_spec = &environment.services[service];
            let problem = match step {
                Step::ResolveImages { .. } if service_spec.image_template.is_none() => {
                    Some(format!(
                        "service \"{service}\" of environment \"{}\" has no image template to deploy",
                        environment.name
                    ))
                }
                Step::BackupDatabase { .. }
                | Step::RestoreDatabase { .. }
                | Step::CheckDatabase { .. }
                    if service_spec.database.is_none() =>
                {
                    Some(format!(
                        "service \"{service}\" of environment \"{}\" is not a postgres service with a database",
                        environment.name
                    ))
                }
                Step::FlushRedis { .. } if service_spec.kind != ServiceKind::Redis => {
                    Some(format!(
                        "service \"{service}\" of environment \"{}\" is not a redis service",
                        environment.name
                    ))
                }
                Step::Smoke { .. } if service_spec.url.is_none() => Some(format!(
                    "service \"{service}\" of environment \"{}\" has no url for smoke checks",
                    environment.name
                )),
                _ => None,
            };
            if let Some(message) = problem {
                problems.0.push(source.problem(key, message));
            }
        }
    }
}

fn check_step_parameters(source: &Source, key: &KeyPath, step: &Step, problems: &mut Problems) {
    match step {
        Step::RunOnce { command, .. } if command.is_empty() => {
            problems
                .0
                .push(source.problem(&key.key("command"), "command must not be empty"));
        }
        Step::ResolveImages { services } if services.is_empty() => {
            problems
                .0
                .push(source.problem(&key.key("services"), "name at least one service"));
        }
        Step::Smoke { checks } => {
            for (check_idx, check) in checks.iter().enumerate() {
                if !check.path.starts_with('/') {
                    problems.0.push(source.problem(
                        &key.key("checks").index(check_idx).key("path"),
                        format!("path \"{}\" must start with /", check.path),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn check_cross_references(
    config: &Config,
    catalog: &Catalog,
    sources: &[Source],
    problems: &mut Problems,
) {
    for name in &config.unmapped_may_run {
        let message = match catalog.get(name) {
            None if catalog.is_empty() => continue,
            None => format!(
                "no command named \"{name}\" (known: {})",
                join_names(catalog.commands.keys().map(CommandName::as_str))
            ),
            Some(spec) if spec.mutating => format!(
                "\"{name}\" changes things; people without a role may run only read-only commands"
            ),
            Some(_) => continue,
        };
        let source = Source::new(
            &config.file,
            std::fs::read_to_string(&config.file).unwrap_or_default(),
        );
        problems.0.push(source.problem(
            &KeyPath::root().key("access").key("unmapped_may_run"),
            message,
        ));
    }
    let _ = sources;
}

#[cfg(test)]
mod tests;
