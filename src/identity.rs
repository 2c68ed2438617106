//! One person, one identity: which configured person a platform account is,
//! whether config lists that account (or only knows it through a Slack user
//! group or a Discord guild role), and what roles it holds now.
//!
//! Roles that come from platform groups change without Deckhand hearing of
//! it, so they are looked up again when they matter: when an approval is
//! counted and when an operation starts. Adapters register where their
//! platform's group memberships come from (`Directory::register`); the flow
//! and the executor ask the directory, never an adapter. Deciding what a
//! role allows is `policy`'s business, not this module's.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::app::App;
use crate::config::{Config, User};
use crate::names::{PAGERDUTY_REQUESTER, Platform, RoleName, UserName};
use crate::policy::ApprovalRecord;
use crate::store::OperationRecord;

/// A future of a person's platform groups.
pub type GroupsFuture<'a> = Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>>;

/// Where a platform's group memberships come from (Slack user groups,
/// Discord guild roles), each with its own cache and expiry.
pub trait Memberships: Send + Sync + fmt::Debug {
    /// The configured groups `user_id` belongs to now, as far as the
    /// platform can tell; none when it cannot be asked and nothing fresh
    /// enough is known.
    fn groups_of<'a>(&'a self, user_id: &'a str) -> GroupsFuture<'a>;
}

/// The group sources adapters registered, by platform.
#[derive(Debug, Default)]
pub struct Directory {
    sources: Mutex<HashMap<Platform, Arc<dyn Memberships>>>,
}

impl Directory {
    /// Registers the group source of a platform (its adapter does, at start).
    pub fn register(&self, platform: Platform, source: Arc<dyn Memberships>) {
        self.sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(platform, source);
    }

    /// The groups of `user_id` on `platform` now; none when no adapter of
    /// that platform runs in this process.
    pub async fn groups_of(&self, platform: Platform, user_id: &str) -> Vec<String> {
        let source = self
            .sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&platform)
            .cloned();
        match source {
            Some(source) => source.groups_of(user_id).await,
            None => Vec::new(),
        }
    }
}

/// A platform account as config knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The person: their `[[users]]` entry with the roles their groups add,
    /// or, for an account config does not list but whose groups map to
    /// roles, a person named `platform:id`. `None` for anyone else.
    pub user: Option<User>,
    /// Whether `[[users]]` lists this account; false for identities that
    /// come only from a user group or a guild role.
    pub listed: bool,
}

/// Who `user_id` on `platform` is, given the platform groups they are in.
pub fn identify(config: &Config, platform: Platform, user_id: &str, groups: &[String]) -> Identity {
    let listed = config.user_by_platform_id(platform, user_id).cloned();
    let is_listed = listed.is_some();
    let group_roles = config.roles_of_groups(platform, groups);
    let user = match listed {
        Some(user) => Some(with_roles(user, group_roles)),
        None if group_roles.is_empty() => None,
        None => Some(with_roles(
            User {
                name: unlisted_name(platform, user_id),
                roles: Vec::new(),
                console: None,
                slack: None,
                discord: None,
            },
            group_roles,
        )),
    };
    Identity {
        user,
        listed: is_listed,
    }
}

/// Who `user_id` on `platform` is now, asking the platform for their groups.
pub async fn identify_now(app: &App, platform: Platform, user_id: &str) -> Identity {
    let groups = app.directory.groups_of(platform, user_id).await;
    identify(&app.config, platform, user_id, &groups)
}

/// How the audit trail names someone: the person, and for the console the
/// operating-system user who ran it (`alice (os:root)`).
pub fn actor_label(name: &str, os_user: Option<&str>) -> String {
    match os_user {
        Some(os_user) => format!("{name} (os:{os_user})"),
        None => name.to_string(),
    }
}

/// The name of a person config knows only through a platform group.
pub fn unlisted_name(platform: Platform, user_id: &str) -> UserName {
    UserName::new(format!("{platform}:{user_id}"))
}

/// The operation's requester as they are now: `None` when they hold no
/// role any more (or config no longer knows them). Operations PagerDuty
/// requested are not a person's and are not looked up.
pub async fn requester_now(app: &App, operation: &OperationRecord) -> Option<User> {
    let identity = match &operation.requester_id {
        Some(user_id) => identify_now(app, operation.platform, user_id).await,
        // Operations stored before accounts were recorded name the person.
        None => Identity {
            user: app.config.user_named(&operation.requester).cloned(),
            listed: true,
        },
    };
    identity
        .user
        .filter(|user| user.name.as_str() == operation.requester)
}

/// Whether the operation's requester is a person config lists (so their
/// other accounts can be told apart from an approver's).
pub fn is_requester_listed(config: &Config, operation: &OperationRecord) -> bool {
    match &operation.requester_id {
        Some(user_id) => config
            .user_by_platform_id(operation.platform, user_id)
            .is_some(),
        None => true,
    }
}

/// Whether an operation was requested by a person (not by PagerDuty).
pub fn has_personal_requester(operation: &OperationRecord) -> bool {
    operation.requester != PAGERDUTY_REQUESTER
}

/// Approvers whose approvals no longer count because they hold none of
/// `approver_roles` now (or config no longer maps their account to them).
/// Withdrawn approvals are skipped.
pub async fn lapsed_approvers(
    app: &App,
    approvals: &[ApprovalRecord],
    approver_roles: &[RoleName],
) -> Vec<UserName> {
    let mut lapsed = Vec::new();
    for approval in approvals.iter().filter(|approval| !approval.withdrawn) {
        let now = match &approval.account {
            Some(user_id) => identify_now(app, approval.platform, user_id).await.user,
            None => app.config.user_named(approval.approver.as_str()).cloned(),
        };
        let holds = now.is_some_and(|user| {
            user.name == approval.approver
                && user.roles.iter().any(|role| approver_roles.contains(role))
        });
        if !holds && !lapsed.contains(&approval.approver) {
            lapsed.push(approval.approver.clone());
        }
    }
    lapsed
}

/// Why the operating-system user running Deckhand cannot be named.
#[derive(Debug, thiserror::Error)]
pub enum OsUserError {
    /// The passwd database has no entry for the user id.
    #[error(
        "the operating-system user id {uid} has no passwd entry, so the console cannot tell who is using it"
    )]
    NoEntry {
        /// The user id.
        uid: u32,
    },
    /// Looking the entry up failed.
    #[error("cannot look up the passwd entry of user id {uid}: {source}")]
    Lookup {
        /// The user id.
        uid: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The name of the operating-system user running this process: its real
/// user id (`getuid`) looked up in the passwd database. Environment
/// variables such as `USER` are not trusted: anyone can set them.
///
/// # Errors
/// When the user id has no passwd entry or the lookup fails.
pub fn os_user() -> Result<String, OsUserError> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    passwd_name(uid)
}

fn passwd_name(uid: libc::uid_t) -> Result<String, OsUserError> {
    let mut buffer: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: every pointer refers to memory owned by this frame and
        // `buffer.len()` is its true length; getpwuid_r writes only there,
        // and `entry` is read only when `found` points at it.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let code = unsafe {
            libc::getpwuid_r(
                uid,
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if code == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        if code != 0 {
            return Err(OsUserError::Lookup {
                uid,
                source: std::io::Error::from_raw_os_error(code),
            });
        }
        if found.is_null() || entry.pw_name.is_null() {
            return Err(OsUserError::NoEntry { uid });
        }
        // SAFETY: pw_name points at a NUL-terminated string in `buffer`,
        // which lives until the end of this function.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
        return Ok(name.to_string_lossy().into_owned());
    }
}

fn with_roles(mut user: User, roles: Vec<RoleName>) -> User {
    for role in roles {
        if !user.roles.contains(&role) {
            user.roles.push(role);
        }
    }
    user
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::problem::Source;

    fn config() -> Config {
        let text = r#"
[store]
url = "sqlite://:memory:"
[roles.deployers]
slack_usergroups = ["S0DEPLOY"]
discord_roles = ["200000000000000001"]
[[users]]
name = "alice"
roles = ["deployers"]
slack = "U0ALICE01"
[hosts.local]
docker = "unix:///var/run/docker.sock"
[environments.staging]
host = "local"
"#;
        Config::from_source(&Source::new(Path::new("deckhand.toml"), text.to_string()))
            .expect("valid config")
    }

    fn check(platform: Platform, user_id: &str, groups: &[&str], expected: (Option<&str>, bool)) {
        let groups: Vec<String> = groups.iter().map(|group| group.to_string()).collect();
        let identity = identify(&config(), platform, user_id, &groups);
        let name = identity.user.as_ref().map(|user| user.name.to_string());
        assert_eq!(
            (name.as_deref(), identity.listed),
            expected,
            "{platform}:{user_id} in {groups:?}"
        );
    }

    #[test]
    fn the_superuser_is_root_in_passwd() {
        assert_eq!(passwd_name(0).expect("uid 0 has an entry"), "root");
        assert!(matches!(
            passwd_name(4_000_000_000),
            Err(OsUserError::NoEntry { .. })
        ));
    }

    #[test]
    fn accounts_are_people_only_where_config_lists_them() {
        check(Platform::Slack, "U0ALICE01", &[], (Some("alice"), true));
        check(
            Platform::Slack,
            "U0ALICE01",
            &["S0DEPLOY"],
            (Some("alice"), true),
        );
        check(
            Platform::Slack,
            "U0GROUP01",
            &["S0DEPLOY"],
            (Some("slack:U0GROUP01"), false),
        );
        check(
            Platform::Discord,
            "100000000000000009",
            &["200000000000000001"],
            (Some("discord:100000000000000009"), false),
        );
        check(Platform::Slack, "U0NOBODY1", &["S0OTHER"], (None, false));
        check(Platform::Discord, "100000000000000001", &[], (None, false));
    }
}
