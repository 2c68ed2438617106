//! The audit trail's two secrets, read from the environment variables
//! `[audit]` names: the chain's HMAC key (plus the keys it replaced, for
//! verifying older entries) and the Ed25519 seed that signs checkpoints.
//! Both are held so that no `Debug` or `Display` shows them; a key is
//! named by its id (the first 8 hex digits of the SHA-256 of the key, or of
//! the public key for checkpoints), which is safe to print. This module
//! does not decide how entries are chained; `chain` does.

use std::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit};
use sha2::{Digest, Sha256};

use crate::config::AuditSettings;
use crate::secret::Secret;

/// The shortest chain key accepted, in bytes: `deckhand audit keygen` makes 64.
pub const MIN_KEY_LEN: usize = 32;

/// A key that cannot be used, named by its variable; never its value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// A chain key shorter than `MIN_KEY_LEN`.
    #[error(
        "{variable} is too short to key the audit chain: {length} bytes, at least {MIN_KEY_LEN} (make one with `deckhand audit keygen`)"
    )]
    TooShort {
        /// The variable.
        variable: String,
        /// The key's length in bytes.
        length: usize,
    },
    /// A checkpoint key that is not a 32-byte seed.
    #[error(
        "{variable} is not an Ed25519 seed: expected 32 bytes as 64 hex digits or base64 (make one with `deckhand audit keygen`)"
    )]
    NotASeed {
        /// The variable.
        variable: String,
    },
}

/// An HMAC-SHA256 key of the chain.
#[derive(Clone)]
pub struct MacKey {
    /// `key_id(secret)`, computed once.
    id: String,
    secret: Secret,
}

impl MacKey {
    /// Wraps a key read from `variable`.
    ///
    /// # Errors
    /// When the key is shorter than `MIN_KEY_LEN` bytes.
    pub fn new(variable: &str, secret: Secret) -> Result<MacKey, KeyError> {
        let length = secret.expose().len();
        if length < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                variable: variable.to_string(),
                length,
            });
        }
        Ok(MacKey {
            id: key_id(secret.expose().as_bytes()),
            secret,
        })
    }

    /// The key's id, recorded with every entry it keys.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fresh HMAC-SHA256 instance under this key.
    pub(super) fn hmac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length")
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "MacKey({})", self.id)
    }
}

/// The Ed25519 key that signs checkpoints.
#[derive(Clone)]
pub struct CheckpointKey {
    /// `key_id` of the public key, computed once.
    id: String,
    signing: SigningKey,
}

impl CheckpointKey {
    /// Reads a 32-byte seed written as 64 hex digits or base64 (standard or
    /// URL-safe, padded or not).
    ///
    /// # Errors
    /// When `secret` is neither.
    pub fn from_seed_text(variable: &str, secret: &Secret) -> Result<CheckpointKey, KeyError> {
        let seed = decode_seed(secret.expose().trim()).ok_or_else(|| KeyError::NotASeed {
            variable: variable.to_string(),
        })?;
        Ok(CheckpointKey::from_seed(&seed))
    }

    /// The key of a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> CheckpointKey {
        let signing = SigningKey::from_bytes(seed);
        CheckpointKey {
            id: public_key_id(&signing.verifying_key()),
            signing,
        }
    }

    /// The public key's id, written into every checkpoint.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key, for `[audit] checkpoint_public_keys`.
    pub fn public_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as 64 hex digits.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key().as_bytes())
    }

    pub(super) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "CheckpointKey({})", self.id)
    }
}

/// The keys this process holds.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Keys new entries; `None` means the unkeyed SHA-256 chain.
    pub current: Option<MacKey>,
    /// Keys of earlier entries, for verifying only.
    pub previous: Vec<MacKey>,
    /// Signs checkpoints; `None` means none are published.
    pub checkpoint: Option<CheckpointKey>,
}

impl Keys {
    /// Reads the keys from the variables `settings` names. Unset or blank
    /// variables mean no key.
    ///
    /// # Errors
    /// The first key that is set but unusable.
    pub fn from_env(settings: &AuditSettings) -> Result<Keys, KeyError> {
        let current = Secret::from_env(&settings.key_env)
            .map(|secret| MacKey::new(&settings.key_env, Secret::new(secret.expose().trim())))
            .transpose()?;
        let previous = match Secret::from_env(&settings.previous_keys_env) {
            Some(list) => split_key_list(&list)
                .map(|secret| MacKey::new(&settings.previous_keys_env, secret))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let checkpoint = Secret::from_env(&settings.checkpoint_key_env)
            .map(|secret| CheckpointKey::from_seed_text(&settings.checkpoint_key_env, &secret))
            .transpose()?;
        Ok(Keys {
            current,
            previous,
            checkpoint,
        })
    }

    /// The chain key with this id, current or previous.
    pub fn mac_key(&self, id: &str) -> Option<&MacKey> {
        self.current
            .iter()
            .chain(self.previous.iter())
            .find(|key| key.id() == id)
    }

    /// Ids of every chain key held, current first.
    pub fn mac_key_ids(&self) -> Vec<&str> {
        self.current
            .iter()
            .chain(self.previous.iter())
            .map(MacKey::id)
            .collect()
    }

    /// What running with these keys costs, for `deckhand check`: one line
    /// per missing or unpublished key.
    pub fn warnings(&self, settings: &AuditSettings) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.current.is_none() {
            warnings.push(format!(
                "{} is not set: audit entries are chained with plain SHA-256, so anyone who can write the store can edit entries and recompute the chain unnoticed",
                settings.key_env
            ));
        }
        match &self.checkpoint {
            None => warnings.push(format!(
                "{} is not set: no signed checkpoints are published, so anyone who can write the store can delete the newest audit entries (and move the head back) unnoticed",
                settings.checkpoint_key_env
            )),
            Some(key) if !settings.checkpoint_public_keys.contains(&key.public_key_hex()) => {
                warnings.push(format!(
                    "the public key of {} (id {}) is not in [audit] checkpoint_public_keys, so `deckhand audit verify` elsewhere cannot check its checkpoints; add \"{}\"",
                    settings.checkpoint_key_env,
                    key.id(),
                    key.public_key_hex()
                ));
            }
            Some(_) => {}
        }
        warnings
    }
}

/// The id of a chain key: the first 8 hex digits of its SHA-256.
pub fn key_id(key: &[u8]) -> String {
    hex::encode(Sha256::digest(key))[..8].to_string()
}

/// The id of a checkpoint public key: the first 8 hex digits of the SHA-256
/// of its 32 bytes.
pub fn public_key_id(public_key: &VerifyingKey) -> String {
    key_id(public_key.as_bytes())
}

/// New random keys as `deckhand audit keygen` prints them: a chain key (64
/// hex digits) and a checkpoint seed (64 hex digits).
pub fn generate() -> (Secret, Secret) {
    let chain_key: [u8; 32] = rand::random();
    let seed: [u8; 32] = rand::random();
    (
        Secret::new(hex::encode(chain_key)),
        Secret::new(hex::encode(seed)),
    )
}

/// Splits a list of previous keys on commas and whitespace.
fn split_key_list(list: &Secret) -> impl Iterator<Item = Secret> + '_ {
    list.expose()
        .split(|character: char| character == ',' || character.is_whitespace())
        .filter(|key| !key.is_empty())
        .map(Secret::new)
}

fn decode_seed(text: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let bytes = if text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        hex::decode(text).ok()?
    } else {
        engines.iter().find_map(|engine| engine.decode(text).ok())?
    };
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

    #[test]
    fn a_seed_reads_as_hex_or_base64_and_nothing_else() {
        let from_hex = CheckpointKey::from_seed_text("V", &Secret::new(SEED_HEX)).expect("hex");
        // RFC 8032, test 1: this seed's public key.
        assert_eq!(
            from_hex.public_key_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        use base64::Engine;
        let seed = hex::decode(SEED_HEX).expect("hex");
        for text in [
            base64::engine::general_purpose::STANDARD.encode(&seed),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&seed),
        ] {
            let key = CheckpointKey::from_seed_text("V", &Secret::new(text)).expect("base64");
            assert_eq!(key.id(), from_hex.id());
        }
        for bad in ["", "abc", &SEED_HEX[..62], "zz".repeat(32).as_str()] {
            assert_eq!(
                CheckpointKey::from_seed_text("DECKHAND_CHECKPOINT_KEY", &Secret::new(bad))
                    .map(|key| key.id().to_string()),
                Err(KeyError::NotASeed {
                    variable: "DECKHAND_CHECKPOINT_KEY".to_string()
                })
            );
        }
    }

    #[test]
    fn key_errors_never_show_the_key() {
        let error = MacKey::new("DECKHAND_AUDIT_KEY", Secret::new("hunter2")).expect_err("short");
        assert_eq!(
            error.to_string(),
            "DECKHAND_AUDIT_KEY is too short to key the audit chain: 7 bytes, at least 32 (make one with `deckhand audit keygen`)"
        );
        let key = MacKey::new("V", Secret::new("k".repeat(40))).expect("long enough");
        assert_eq!(format!("{key:?}"), format!("MacKey({})", key.id()));
        assert!(!format!("{key:?}").contains("kkkk"));
        let checkpoint = CheckpointKey::from_seed_text("V", &Secret::new(SEED_HEX)).expect("hex");
        assert!(!format!("{checkpoint:?}").contains(&SEED_HEX[..16]));
    }

    #[test]
    fn key_ids_are_the_first_eight_hex_digits_of_the_sha256() {
        // SHA-256("abc") = ba7816bf…
        assert_eq!(key_id(b"abc"), "ba7816bf");
    }

    #[test]
    fn previous_keys_split_on_commas_and_spaces() {
        let keys: Vec<String> = split_key_list(&Secret::new(" one,two  three,\nfour "))
            .map(|secret| secret.expose().to_string())
            .collect();
        assert_eq!(keys, ["one", "two", "three", "four"]);
    }
}
