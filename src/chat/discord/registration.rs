//! Registers the application commands at start-up: in each configured
//! guild (available at once), or globally when none is configured. What
//! Discord has is read first (GET …/commands) and compared with the
//! declarations; only a difference leads to a bulk overwrite (PUT), so a
//! restart does not touch unchanged commands.

use serde_json::Value;
use serenity::http as dh;
use serenity::model::id::GuildId;

use super::Discord;
use super::commands::{self, CommandDeclaration};
use super::rest::RestError;

/// Where commands are registered.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Global,
    Guild(GuildId),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Global => formatter.write_str("global"),
            Scope::Guild(guild_id) => write!(formatter, "guild {guild_id}"),
        }
    }
}

/// Registers every command where config says; returns whether all
/// registrations are in place. Failures are logged here.
pub(super) async fn register(discord: &Discord) -> bool {
    let declared = commands::declarations(&discord.app.catalog, &discord.app.config);
    let mut scopes = Vec::new();
    for guild in &discord.settings.guild_ids {
        match guild.parse::<GuildId>() {
            Ok(guild_id) => scopes.push(Scope::Guild(guild_id)),
            Err(_) => {
                tracing::error!(platform = "discord", guild = %guild, "not a guild id; commands are not registered there");
            }
        }
    }
    if discord.settings.guild_ids.is_empty() {
        scopes.push(Scope::Global);
    }
    let mut all_in_place = true;
    for scope in scopes {
        match register_in(discord, scope, &declared).await {
            Ok(true) => {
                tracing::info!(platform = "discord", scope = %scope, commands = declared.len(), "registered application commands")
            }
            Ok(false) => {
                tracing::info!(platform = "discord", scope = %scope, "application commands unchanged")
            }
            Err(error) => {
                all_in_place = false;
                tracing::error!(platform = "discord", scope = %scope, error = %error, "cannot register application commands");
            }
        }
    }
    all_in_place
}

/// Returns whether it had to overwrite.
async fn register_in(
    discord: &Discord,
    scope: Scope,
    declared: &[CommandDeclaration],
) -> Result<bool, RestError> {
    let application_id = discord.application_id;
    let route = match scope {
        Scope::Global => dh::Route::Commands { application_id },
        Scope::Guild(guild_id) => dh::Route::GuildCommands {
            application_id,
            guild_id,
        },
    };
    let registered = discord
        .rest
        .send_retrying(dh::LightMethod::Get, route, None)
        .await?;
    let registered = registered
        .as_ref()
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if commands::is_registered(declared, &registered) {
        return Ok(false);
    }
    let body = Value::Array(declared.iter().map(CommandDeclaration::to_json).collect());
    discord
        .rest
        .send_retrying(dh::LightMethod::Put, route, Some(&body))
        .await?;
    Ok(true)
}
