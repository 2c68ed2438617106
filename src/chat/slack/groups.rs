//! Slack user group memberships, for roles that config grants to groups
//! (`[roles.NAME] slack_usergroups`). Only the groups config names are
//! looked up, through `usergroups.users.list`, and each member list is kept
//! for `[slack] usergroup_ttl` so a burst of commands costs one call per
//! group. When Slack cannot be asked, the last list known is used (and a
//! group never fetched counts as not holding the person): a Slack outage
//! should not grant roles, and should not take away roles seconds old.
//!
//! What a group means (which roles) is decided by `config` and `flow`, not here.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::Context;
use super::web::Web;
use crate::config::Config;
use crate::identity::{GroupsFuture, Memberships};

/// The cache of the configured groups' member lists.
#[derive(Debug)]
pub struct Groups {
    ttl: Duration,
    /// The user group ids some role names, in a stable order.
    usergroups: Vec<String>,
    members: Mutex<HashMap<String, Members>>,
}

#[derive(Debug, Clone)]
struct Members {
    fetched_at: Instant,
    users: HashSet<String>,
}

impl Groups {
    /// The groups config maps to roles, cached for `ttl`.
    pub fn new(config: &Config, ttl: Duration) -> Groups {
        let usergroups: BTreeSet<String> = config
            .roles
            .values()
            .flat_map(|role| role.slack_usergroups.iter().cloned())
            .collect();
        Groups {
            ttl,
            usergroups: usergroups.into_iter().collect(),
            members: Mutex::new(HashMap::new()),
        }
    }

    /// The configured groups `user_id` belongs to.
    pub async fn of_user(&self, web: &Web, user_id: &str) -> Vec<String> {
        let mut groups = Vec::new();
        for usergroup in &self.usergroups {
            if let Some(members) = self.members_of(web, usergroup).await
                && members.contains(user_id)
            {
                groups.push(usergroup.clone());
            }
        }
        groups
    }

    async fn members_of(&self, web: &Web, usergroup: &str) -> Option<HashSet<String>> {
        let cached = self
            .members
            .lock()
            .ok()
            .and_then(|members| members.get(usergroup).cloned());
        if let Some(cached) = &cached
            && cached.fetched_at.elapsed() < self.ttl
        {
            return Some(cached.users.clone());
        }
        match web.usergroup_members(usergroup).await {
            Ok(users) => {
                let users: HashSet<String> = users.into_iter().collect();
                if let Ok(mut members) = self.members.lock() {
                    members.insert(
                        usergroup.to_string(),
                        Members {
                            fetched_at: Instant::now(),
                            users: users.clone(),
                        },
                    );
                }
                Some(users)
            }
            Err(error) => {
                tracing::warn!(
                    usergroup,
                    error = %error,
                    stale = cached.is_some(),
                    "cannot list the user group's members; using what is known"
                );
                cached.map(|cached| cached.users)
            }
        }
    }
}

/// The adapter's user groups as the identity directory asks for them (an
/// approval being counted, an operation starting). Holds the adapter's
/// context weakly: the app owns the directory, and the context the app.
#[derive(Debug)]
pub(super) struct Directory {
    pub(super) context: Weak<Context>,
}

impl Memberships for Directory {
    fn groups_of<'a>(&'a self, user_id: &'a str) -> GroupsFuture<'a> {
        Box::pin(async move {
            match self.context.upgrade() {
                Some(context) => context.groups.of_user(&context.web, user_id).await,
                None => Vec::new(),
            }
        })
    }
}
