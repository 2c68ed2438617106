//! SCRAM-SHA-256 password verifiers (RFC 5802, RFC 7677), the form in which
//! PostgreSQL 10+ stores passwords. Deckhand sends `ALTER ROLE … PASSWORD
//! 'SCRAM-SHA-256$…'`: PostgreSQL stores a verifier given in that form as it
//! is, so the plaintext password never appears in SQL, and so never in the
//! database's statement log.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// PostgreSQL's default iteration count.
const ITERATIONS: u32 = 4096;
/// Salt length, as PostgreSQL uses.
const SALT_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// The verifier of `password` with a fresh random salt:
/// `SCRAM-SHA-256$4096:salt$StoredKey:ServerKey`, each part base64.
///
/// PostgreSQL prepares passwords with SASLprep, which leaves ASCII
/// unchanged; Deckhand's generated passwords are ASCII, and other passwords
/// are used as their UTF-8 bytes, as PostgreSQL does when SASLprep does not
/// apply.
pub fn verifier(password: &Secret) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    verifier_with(password.expose().as_bytes(), &salt, ITERATIONS)
}

fn verifier_with(password: &[u8], salt: &[u8], iterations: u32) -> String {
    let salted = salted_password(password, salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    let base64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        base64.encode(salt),
        base64.encode(stored_key),
        base64.encode(server_key)
    )
}

/// `Hi(password, salt, i)`: PBKDF2-HMAC-SHA256 with one output block, which
/// is all SCRAM-SHA-256 needs.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = Vec::with_capacity(salt.len() + 4);
    first.extend_from_slice(salt);
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut previous = hmac(password, &first);
    let mut result = previous;
    for _ in 1..iterations {
        previous = hmac(password, &previous);
        for (out, byte) in result.iter_mut().zip(previous) {
            *out ^= byte;
        }
    }
    result
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return [0u8; 32];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_matches_an_independent_computation() {
        // Computed with Python's hashlib.pbkdf2_hmac and hmac for the same inputs.
        assert_eq!(
            verifier_with(b"pencil", b"0123456789abcdef", 4096),
            "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$nQpbZ77WudtqufPwikHXGRt6g2QJ4zns8bZLw273DRM=:jn2amWP1q1h+jgjy0YTO14S6/F02SV7taipOeB7ef20="
        );
    }

    #[test]
    fn verifier_never_holds_the_password_and_salts_differ() {
        let password = Secret::new("correct-horse-battery-staple");
        let first = verifier(&password);
        let second = verifier(&password);
        assert!(first.starts_with("SCRAM-SHA-256$4096:"), "{first}");
        assert!(!first.contains(password.expose()));
        assert_ne!(first, second, "each verifier has its own salt");
    }
}
