//! The Slack app manifest (`config/slack-app-manifest.yml`), generated from
//! the command catalog so the slash commands Slack offers are exactly the
//! ones `commands/` declares, with their summaries and usage. A unit test
//! keeps the shipped file equal to what this renders.
//!
//! The manifest asks for the scopes Deckhand uses and no more: `commands`
//! (slash commands), `chat:write` (post, edit and ephemeral messages),
//! `reactions:read` (the `reaction_added` / `reaction_removed` events) and
//! `usergroups:read` (`usergroups.users.list`, for roles granted to user
//! groups). It enables interactivity (the Approve / Reject buttons) and
//! Socket Mode; HTTP mode is the same app with Socket Mode off and the
//! request URLs set, as the README describes.

use crate::catalog::Catalog;

/// The bot scopes Deckhand needs.
pub const BOT_SCOPES: [&str; 4] = [
    "chat:write",
    "commands",
    "reactions:read",
    "usergroups:read",
];

/// The events Deckhand subscribes to.
pub const BOT_EVENTS: [&str; 2] = ["reaction_added", "reaction_removed"];

/// The manifest as YAML text.
pub fn render(catalog: &Catalog) -> String {
    let mut yaml = String::from(
        "# Slack app manifest for Deckhand, generated from commands/*.toml.\n\
         # Create the app at https://api.slack.com/apps → Create New App → From a manifest.\n\
         # Regenerate after changing commands/: DECKHAND_BLESS=1 cargo test --lib chat::slack::manifest\n\
         display_information:\n  \
           name: Deckhand\n  \
           description: \"The operations runbook as chat commands, gated by approvals and audited\"\n  \
           background_color: \"#1d3557\"\n\
         features:\n  \
           bot_user:\n    \
             display_name: deckhand\n    \
             always_online: true\n  \
           slash_commands:\n",
    );
    for spec in catalog.commands() {
        let command = format!("/{}", spec.name);
        let usage = spec.usage();
        let hint = usage
            .strip_prefix(&command)
            .map(str::trim)
            .unwrap_or_default();
        yaml.push_str(&format!("    - command: {}\n", quote(&command)));
        yaml.push_str(&format!("      description: {}\n", quote(&spec.summary)));
        if !hint.is_empty() {
            yaml.push_str(&format!("      usage_hint: {}\n", quote(hint)));
        }
        yaml.push_str("      should_escape: false\n");
    }
    yaml.push_str("oauth_config:\n  scopes:\n    bot:\n");
    for scope in BOT_SCOPES {
        yaml.push_str(&format!("      - {scope}\n"));
    }
    yaml.push_str("settings:\n  event_subscriptions:\n    bot_events:\n");
    for event in BOT_EVENTS {
        yaml.push_str(&format!("      - {event}\n"));
    }
    yaml.push_str(
        "  interactivity:\n    \
           is_enabled: true\n  \
         org_deploy_enabled: false\n  \
         socket_mode_enabled: true\n  \
         token_rotation_enabled: false\n",
    );
    yaml
}

/// A YAML double-quoted scalar.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    #[test]
    fn shipped_manifest_matches_the_commands() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config =
            Config::load(&root.join("config/deckhand.toml")).expect("shipped config is valid");
        let catalog = Catalog::load(&config).expect("shipped commands are valid");
        let rendered = render(&catalog);
        let path = root.join("config/slack-app-manifest.yml");
        if std::env::var_os("DECKHAND_BLESS").is_some() {
            std::fs::write(&path, &rendered).expect("write the manifest");
        }
        let shipped = std::fs::read_to_string(&path).expect("config/slack-app-manifest.yml");
        assert_eq!(
            shipped, rendered,
            "config/slack-app-manifest.yml is out of date with commands/; regenerate it with DECKHAND_BLESS=1 cargo test --lib chat::slack::manifest"
        );
        for spec in catalog.commands() {
            assert!(
                shipped.contains(&format!("- command: \"/{}\"\n", spec.name)),
                "/{} is missing from the manifest",
                spec.name
            );
        }
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote(r#"say "hi" \o/"#), r#""say \"hi\" \\o/""#);
    }
}
