//! The serialized shape of a file in `commands/`: one chat command with its
//! arguments, policy per environment and runbook steps. Unknown keys are
//! refused so a typo is reported by `deckhand check`, not ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::step::Step;

/// One command file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFile {
    /// The chat command, without `/`; must match the file name.
    pub name: String,
    /// One line for `/help`.
    pub summary: String,
    /// Whether the command changes anything (then it takes `--dry-run`,
    /// locks its environment and is refused to people without a role).
    #[serde(default)]
    pub mutating: bool,
    /// Whether it may run while the environment is held by a person's
    /// `/lock` or after a rollback (rollbacks and `/unlock` may).
    #[serde(default)]
    pub allowed_during_hold: bool,
    /// Whether a failure after the first replacement restores the previous
    /// images automatically.
    #[serde(default)]
    pub rollback_on_failure: bool,
    /// A warning shown with the plan and in approval requests.
    pub warning: Option<String>,
    /// Example invocations for `/help`.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Arguments in the order they are typed.
    #[serde(default)]
    pub args: Vec<RawArg>,
    /// Policy by environment name, with `default` for the others.
    #[serde(default)]
    pub policy: BTreeMap<String, RawPolicy>,
    /// The runbook steps, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// `[[args]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArg {
    /// Name shown in usage as `<name>` and used by steps.
    pub name: String,
    /// `environment`, `service`, `command`, `enum`, `regex`, `integer` or `duration`.
    pub rule: String,
    /// What the argument means, for `/help`.
    pub help: String,
    /// Whether it must be given; default true.
    pub required: Option<bool>,
    /// Given as `--name value` instead of by position.
    #[serde(default)]
    pub flag: bool,
    /// Given as `KEYWORD value` (e.g. `to v1.4.2`) instead of by position.
    pub keyword: Option<String>,
    /// Allowed values, for `rule = "enum"`.
    pub values: Option<Vec<String>>,
    /// Anchored regular expression, for `rule = "regex"`.
    pub pattern: Option<String>,
    /// The pattern in words, shown when a value does not match.
    pub means: Option<String>,
    /// Smallest value, for `rule = "integer"`.
    pub min: Option<i64>,
    /// Largest value, for `rule = "integer"`; for `rule = "duration"`, a
    /// duration such as `"7d"`.
    pub max: Option<toml::Value>,
    /// Value used when an optional argument is not given.
    pub default: Option<String>,
}

/// `[policy.ENV]` or `[policy.default]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Roles that may request; `anyone` means any person with a role.
    pub request: Vec<String>,
    /// Approvals needed before it runs; default 0.
    #[serde(default)]
    pub approvals: u32,
    /// Roles whose members may approve.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// How long a request waits for approval; default `30m`.
    pub expires: Option<String>,
    /// When the environment is busy with another operation: `refuse` (the
    /// default) or `queue` (wait in order for it).
    pub on_busy: Option<String>,
}
