//! The state key: secrets a step needs to finish or undo its change after a
//! crash (a database rotation's passwords) are journaled only sealed with
//! ChaCha20-Poly1305 under the key in `DECKHAND_STATE_KEY`, bound to the
//! journal entry they belong to. Without the key there is nothing to seal
//! with, and such steps refuse to start.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;

/// The environment variable that holds the key.
pub const STATE_KEY_VARIABLE: &str = "DECKHAND_STATE_KEY";

/// Why the state key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateKeyError {
    /// The variable is unset or blank.
    #[error(
        "{STATE_KEY_VARIABLE} is not set; Deckhand keeps the secrets it needs to finish this change after a crash only encrypted with that key: set it to 32 random bytes in base64 (openssl rand -base64 32) for every Deckhand process and start again"
    )]
    Missing,
    /// The value is not 32 bytes in base64 or hex.
    #[error(
        "{STATE_KEY_VARIABLE} must be 32 random bytes in base64 (openssl rand -base64 32) or 64 hex digits"
    )]
    Malformed,
    /// A sealed value does not open with this key.
    #[error(
        "a sealed secret in the journal does not open with {STATE_KEY_VARIABLE} (another key, or altered)"
    )]
    WrongKey,
}

/// The key secrets are sealed with.
pub struct StateKey {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("StateKey([redacted])")
    }
}

impl StateKey {
    /// The key from `DECKHAND_STATE_KEY`.
    ///
    /// # Errors
    /// When it is unset or not 32 bytes.
    pub fn from_env() -> Result<StateKey, StateKeyError> {
        let value = std::env::var(STATE_KEY_VARIABLE).unwrap_or_default();
        StateKey::parse(&value)
    }

    /// A key from its text: 32 bytes in base64 (standard or URL-safe, padded
    /// or not) or 64 hex digits.
    ///
    /// # Errors
    /// When it is blank or not 32 bytes.
    pub fn parse(text: &str) -> Result<StateKey, StateKeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(StateKeyError::Missing);
        }
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let bytes = (text.len() == 64)
            .then(|| hex::decode(text).ok())
            .flatten()
            .or_else(|| engines.iter().find_map(|engine| engine.decode(text).ok()))
            .filter(|bytes| bytes.len() == 32)
            .ok_or(StateKeyError::Malformed)?;
        let cipher =
            ChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| StateKeyError::Malformed)?;
        Ok(StateKey { cipher })
    }

    /// Seals `plaintext`, bound to `context` (the journal entry it belongs
    /// to): base64 of a random nonce and the ciphertext.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // Encryption into a Vec fails only for messages beyond the cipher's
        // limit (256 GiB), far above a few passwords.
        let ciphertext = self
            .cipher
            .encrypt(&Nonce::from(nonce), payload)
            .unwrap_or_default();
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }

    /// Opens what [`StateKey::seal`] made for the same `context`.
    ///
    /// # Errors
    /// Another key, another context, or altered text.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, StateKeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| StateKeyError::WrongKey)?;
        if bytes.len() < 12 {
            return Err(StateKeyError::WrongKey);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| StateKeyError::WrongKey)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| StateKeyError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "q3Zc8tWZ2n1s0fJmR3l8o7mC2q9v4xY6b1kP0aT5uE8=";

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let key = StateKey::parse(KEY).expect("a 32-byte key");
        let sealed = key.seal(b"new-password", "op 4 step 0 rotate");
        assert!(!sealed.contains("new-password"));
        assert_eq!(
            key.open(&sealed, "op 4 step 0 rotate").expect("opens"),
            b"new-password"
        );
        assert_eq!(
            key.open(&sealed, "op 5 step 0 rotate"),
            Err(StateKeyError::WrongKey)
        );
        let other = StateKey::parse(&"ab".repeat(32)).expect("hex key");
        assert_eq!(
            other.open(&sealed, "op 4 step 0 rotate"),
            Err(StateKeyError::WrongKey)
        );
        assert_ne!(key.seal(b"x", "c"), key.seal(b"x", "c"), "fresh nonces");
    }

    #[test]
    fn keys_that_are_not_32_bytes_are_refused_with_how_to_make_one() {
        assert_eq!(StateKey::parse("  ").err(), Some(StateKeyError::Missing));
        assert_eq!(
            StateKey::parse("too-short").err(),
            Some(StateKeyError::Malformed)
        );
        assert!(
            StateKeyError::Missing
                .to_string()
                .contains("openssl rand -base64 32")
        );
    }
}
