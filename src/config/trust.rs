//! Who config trusts to be whom: `[approvals] unlisted_approvers` and
//! `[console]` (impersonation, acting on other platforms' operations), and
//! the warnings `deckhand check` prints about identities config cannot tie
//! to one person. Which platform ids belong to which person is `[[users]]`,
//! checked in `config`; applying these settings is `flow`'s and `policy`'s.

use super::Config;
use super::raw::RawConfig;

/// Names Deckhand itself acts under in the audit trail and on operations;
/// no person may be called that.
pub const RESERVED_USER_NAMES: [&str; 2] = [
    crate::names::DECKHAND_ACTOR,
    crate::names::PAGERDUTY_REQUESTER,
];

/// The trust settings, validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustSettings {
    /// Whether people known only through a Slack user group or a Discord
    /// guild role may approve.
    pub unlisted_approvers: bool,
    /// What the console may do.
    pub console: ConsoleSettings,
}

/// `[console]`, validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// Whether `--as` / `:as` may act as another configured person.
    pub impersonation: bool,
    /// Whether the console may approve, reject or withdraw operations
    /// requested from another platform.
    pub cross_platform: bool,
}

pub(super) fn trust_settings(raw: &RawConfig) -> TrustSettings {
    TrustSettings {
        unlisted_approvers: raw.approvals.unlisted_approvers,
        console: ConsoleSettings {
            impersonation: raw.console.impersonation,
            cross_platform: raw.console.cross_platform,
        },
    }
}

impl Config {
    /// What `deckhand check` warns about who is whom: identities config
    /// cannot tie to one person, an impersonating console, and platforms
    /// that serve every workspace or guild.
    pub fn trust_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let grouped: Vec<String> = self
            .roles
            .iter()
            .filter(|(_, role)| !role.slack_usergroups.is_empty() || !role.discord_roles.is_empty())
            .map(|(name, _)| name.to_string())
            .collect();
        if !grouped.is_empty() {
            let roles = grouped.join(", ");
            warnings.push(if self.trust.unlisted_approvers {
                format!(
                    "[approvals] unlisted_approvers = true: people who hold role {roles} only through a Slack user group or Discord role, without a [[users]] entry for that account, may approve; config cannot tell whether such an account is the requester's own, so one person could approve their own request from another platform"
                )
            } else {
                format!(
                    "people who hold role {roles} only through a Slack user group or Discord role, without a [[users]] entry for that account, may request but not approve: config cannot tell whether such an account is the requester's own; list approvers in [[users]] with their slack and discord ids"
                )
            });
        }
        if self.trust.console.impersonation {
            warnings.push(
                "[console] impersonation = true: whoever runs deckhand console against this store may act as any configured person with --as or :as (the audit names the operating-system user); keep it for demos and tests".to_string(),
            );
        }
        if self.trust.console.cross_platform {
            warnings.push(
                "[console] cross_platform = true: the console may approve, reject and withdraw operations requested from Slack and Discord".to_string(),
            );
        }
        if let Some(slack) = &self.slack
            && slack.team_ids.is_empty()
        {
            warnings.push(
                "[slack] team_ids is empty: requests from every Slack workspace that reaches Deckhand are served; list your workspace ids".to_string(),
            );
        }
        if let Some(discord) = &self.discord
            && discord.guild_ids.is_empty()
        {
            warnings.push(
                "[discord] guild_ids is empty: interactions from every Discord guild the application is in are served; list your guild ids".to_string(),
            );
        }
        warnings
    }
}
