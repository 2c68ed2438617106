//! Guild role memberships for the identity directory: when the flow or the
//! executor asks what roles someone holds now (an approval being counted,
//! an operation starting), the roles an event showed within `[discord]
//! role_ttl` are believed; older ones are fetched again from Discord
//! (`GET /guilds/{guild}/members/{user}`) in the served guilds. A person
//! Discord cannot be asked about holds no guild roles: an outage must not
//! grant roles.

use std::sync::{Arc, Weak};

use serde_json::Value;
use serenity::all as dc;
use serenity::http as dh;

use super::Discord;
use crate::identity::{GroupsFuture, Memberships};

/// The Discord adapter's member lookups. Holds the adapter weakly: the app
/// owns the directory, and the adapter owns the app.
#[derive(Debug)]
pub(super) struct Members {
    discord: Weak<Discord>,
}

impl Members {
    pub(super) fn new(discord: &Arc<Discord>) -> Members {
        Members {
            discord: Arc::downgrade(discord),
        }
    }
}

impl Memberships for Members {
    fn groups_of<'a>(&'a self, user_id: &'a str) -> GroupsFuture<'a> {
        Box::pin(async move {
            let Some(discord) = self.discord.upgrade() else {
                return Vec::new();
            };
            let ttl = discord.settings.role_ttl;
            if let Some(seen) = discord.interactions.fresh_roles(user_id, ttl) {
                return seen.roles;
            }
            let mut guilds = discord.settings.guild_ids.clone();
            if guilds.is_empty() {
                guilds.extend(discord.interactions.last_guild(user_id));
            }
            for guild_id in guilds {
                if let Some(roles) = fetch_roles(&discord, &guild_id, user_id).await {
                    discord
                        .interactions
                        .remember_roles(user_id, Some(guild_id), roles.clone());
                    return roles;
                }
            }
            Vec::new()
        })
    }
}

/// The person's roles in one guild, or `None` when they are not a member
/// or Discord cannot be asked.
async fn fetch_roles(discord: &Discord, guild_id: &str, user_id: &str) -> Option<Vec<String>> {
    let (Ok(guild), Ok(user)) = (guild_id.parse::<u64>(), user_id.parse::<u64>()) else {
        return None;
    };
    let route = dh::Route::GuildMember {
        guild_id: dc::GuildId::new(guild),
        user_id: dc::UserId::new(user),
    };
    match discord
        .rest
        .send_retrying(dh::LightMethod::Get, route, None)
        .await
    {
        Ok(Some(member)) => Some(roles_in(&member)),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(platform = "discord", error = %error, "cannot look up a member's roles; they count as holding none");
            None
        }
    }
}

fn roles_in(member: &Value) -> Vec<String> {
    member["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|role| role.as_str().map(str::to_string))
        .collect()
}
