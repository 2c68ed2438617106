//! Names that cross the whole request flow: environments, services, roles,
//! commands and users. Each is a newtype so that an environment name can
//! never be passed where a service name belongs, and so that a value of
//! these types has always been checked against config or the catalog: they
//! are built only inside this crate, by the loaders and the parser.

use std::fmt;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Builds the name; only loaders and the parser call this, after
            /// checking the value against what config declares.
            pub(crate) fn new(value: impl Into<String>) -> $name {
                $name(value.into())
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.pad(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// An environment declared in config (`staging`, `production`).
    EnvName
);
name_type!(
    /// A service of an environment (`backend`, `postgres`, `ide`).
    ServiceName
);
name_type!(
    /// A role declared in config (`developers`, `deployers`, `dba`).
    RoleName
);
name_type!(
    /// A chat command declared in `commands/` (`deploy`, `rollback`).
    CommandName
);
name_type!(
    /// A person, by the name config gives them (`alice`), independent of platform.
    UserName
);

/// Whether `name` is a plain identifier usable as an environment, service,
/// role or command name: lower-case ASCII letters, digits and `-`/`_`,
/// starting with a letter, at most 40 characters.
pub fn is_plain_name(name: &str) -> bool {
    let mut characters = name.chars();
    let starts_with_letter = characters
        .next()
        .is_some_and(|first| first.is_ascii_lowercase());
    starts_with_letter
        && name.len() <= 40
        && characters.all(|character| {
            character.is_ascii_lowercase()
                || character.is_ascii_digit()
                || character == '-'
                || character == '_'
        })
}

/// The chat platform a request came from or a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    /// `deckhand console`.
    Console,
    /// Slack, over Socket Mode or the Events API.
    Slack,
    /// Discord, over the gateway or the interactions endpoint.
    Discord,
}

impl Platform {
    /// The platform's name as stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Console => "console",
            Platform::Slack => "slack",
            Platform::Discord => "discord",
        }
    }

    /// Reads a stored platform name.
    pub fn from_name(name: &str) -> Option<Platform> {
        match name {
            "console" => Some(Platform::Console),
            "slack" => Some(Platform::Slack),
            "discord" => Some(Platform::Discord),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The requester (and audit actor) of operations a PagerDuty incident
/// starts: PagerDuty is not a person, and a verified webhook is its
/// authority.
pub const PAGERDUTY_REQUESTER: &str = "pagerduty";

/// The audit actor of what Deckhand does by itself (a step, an expiry, a
/// recovery).
pub const DECKHAND_ACTOR: &str = "deckhand";
