//! What config knows about secrets: where they are (environment variables
//! it names, the store URL's password) and that they never print. After
//! validation every such value is registered for redaction by value, and
//! `Config`'s `Debug` shows the store URL without its password.
//!
//! This module reads the variables only to register their values; the
//! adapters read them again, as `Secret`s, when they start.

use std::fmt;

use super::Config;
use crate::secret::Secret;

/// Registers every secret the config points to: the values of the
/// variables it names for tokens, signing secrets and registry passwords,
/// and the password of a PostgreSQL store URL.
pub(super) fn register(config: &Config) {
    for variable in secret_variables(config) {
        // Making the Secret registers the value; it is not kept here.
        let _ = Secret::from_env(variable);
    }
    if let Ok(url) = url::Url::parse(&config.store_url)
        && let Some(password) = url.password()
    {
        let _ = Secret::new(password);
        if let Ok(decoded) = percent_decoded(password) {
            let _ = Secret::new(decoded);
        }
    }
}

/// The names of the environment variables holding secrets.
fn secret_variables(config: &Config) -> Vec<&str> {
    let mut variables = Vec::new();
    if let Some(slack) = &config.slack {
        variables.push(slack.bot_token_env.as_str());
        variables.extend(slack.app_token_env.as_deref());
        variables.extend(slack.signing_secret_env.as_deref());
    }
    if let Some(discord) = &config.discord {
        variables.push(discord.token_env.as_str());
    }
    if let Some(pagerduty) = &config.pagerduty {
        variables.push(pagerduty.secret_env.as_str());
        if let Some(notes) = &pagerduty.notes {
            variables.push(notes.api_token_env.as_str());
        }
    }
    for environment in config.environments.values() {
        if let Some(registry) = &environment.registry {
            variables.push(registry.password_env.as_str());
        }
    }
    variables
}

fn percent_decoded(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 3)
            .filter(|_| bytes[index] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded)
}

/// Like the derived `Debug`, but the store URL shows without its password.
impl fmt::Debug for Config {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Config")
            .field("file", &self.file)
            .field("commands_dir", &self.commands_dir)
            .field("store_url", &crate::secret::redact(&self.store_url))
            .field("listen", &self.listen)
            .field("unmapped_may_run", &self.unmapped_may_run)
            .field("approval_emoji", &self.approval_emoji)
            .field("roles", &self.roles)
            .field("users", &self.users)
            .field("environments", &self.environments)
            .field("slack", &self.slack)
            .field("discord", &self.discord)
            .field("pagerduty", &self.pagerduty)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::problem::Source;

    use super::*;

    const CONFIG: &str = r#"
[store]
url = "postgres://deckhand:Sup3r%2FS3cret-pw@db.internal:5432/deckhand"

[roles.developers]

[hosts.local]
docker = "unix:///var/run/docker.sock"

[environments.staging]
host = "local"
compose_project = "demo"
registry = { username_env = "DECKHAND_NO_SUCH_USER", password_env = "PATH" }

[environments.staging.services.backend]
image = "demo/backend:{ref}"
"#;

    fn loaded() -> Config {
        let source = Source::new(Path::new("config/deckhand.toml"), CONFIG.to_string());
        Config::from_source(&source).expect("a valid config")
    }

    #[test]
    fn debug_never_shows_the_store_password() {
        let shown = format!("{:?}", loaded());
        assert!(!shown.contains("Sup3r"), "{shown}");
        assert!(
            shown.contains("postgres://deckhand:[redacted]@db.internal:5432/deckhand"),
            "{shown}"
        );
    }

    #[test]
    fn loading_registers_the_secrets_it_points_to() {
        let config = loaded();
        assert!(
            config.store_url.contains("Sup3r"),
            "the store still connects with it"
        );
        let decoded = crate::secret::redact("password rejected: Sup3r/S3cret-pw");
        assert_eq!(decoded, "password rejected: [redacted]");
        // The registry password variable names PATH here, a variable every process has.
        let path = std::env::var("PATH").expect("PATH is set");
        assert_eq!(
            crate::secret::redact(&format!("pulling with {path}")),
            "pulling with [redacted]"
        );
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decoded("a%2Fb%zz%4").as_deref(), Ok("a/b%zz%4"));
    }
}
