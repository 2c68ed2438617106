//! Signature checks for inbound webhooks: Slack v0, Discord Ed25519 and
//! PagerDuty v3.
//!
//! Every inbound request is checked here before anything else reads it. A
//! successful check returns [`Verified<T>`], which only this module can build,
//! so a handler that takes `Verified<Bytes>` cannot be reached with a forged or
//! stale body by mistake.
//!
//! The checks are pure: no IO and no clock reads. The caller passes the
//! request's headers (through [`RequestHeaders`]), the raw body exactly as it
//! arrived, the secret or public key, and `now` in unix seconds. The body is
//! never parsed or re-serialized before it is verified, because the platforms
//! sign the bytes they sent (Slack escapes `/` as `\/` in some payloads, and
//! form field order is unspecified).
//!
//! Secrets are borrowed for the duration of one call. They never appear in a
//! [`VerifyError`], and this module logs nothing.
//!
//! What this module deliberately does not do: parse payloads, answer
//! `url_verification` or PING, or deduplicate retries. Those happen after
//! verification, in the handlers.

use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

/// Slack's replay window: a request whose timestamp is more than this many
/// seconds from now is refused (Slack's "more than five minutes").
pub const SLACK_MAX_SKEW_SECS: u64 = 300;

/// Header carrying the unix timestamp Slack signed.
pub const SLACK_TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";
/// Header carrying Slack's `v0=<hex>` signature.
pub const SLACK_SIGNATURE_HEADER: &str = "X-Slack-Signature";
/// Header carrying Discord's hex Ed25519 signature.
pub const DISCORD_SIGNATURE_HEADER: &str = "X-Signature-Ed25519";
/// Header carrying the timestamp Discord prepended to the body before signing.
pub const DISCORD_TIMESTAMP_HEADER: &str = "X-Signature-Timestamp";
/// Header carrying PagerDuty's `v1=<hex>[,v1=<hex>…]` signatures.
pub const PAGERDUTY_SIGNATURE_HEADER: &str = "X-PagerDuty-Signature";

/// A value that passed a signature check.
///
/// Only this module constructs it, so requiring `Verified<T>` in a function
/// signature proves that the check ran. [`Verified::map`] and
/// [`Verified::try_map`] keep the proof while parsing the verified bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    /// Private so that nothing outside this module can claim a value was verified.
    inner: T,
}

impl<T> Verified<T> {
    /// Gives up the proof and returns the verified value.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// Transforms the verified value, typically parsing the raw body, keeping
    /// the proof that its source was verified.
    pub fn map<U>(self, transform: impl FnOnce(T) -> U) -> Verified<U> {
        Verified {
            inner: transform(self.inner),
        }
    }

    /// Like [`Verified::map`] for a transformation that can fail, such as
    /// deserializing the body.
    ///
    /// # Errors
    ///
    /// Returns the transformation's error unchanged.
    pub fn try_map<U, E>(
        self,
        transform: impl FnOnce(T) -> Result<U, E>,
    ) -> Result<Verified<U>, E> {
        transform(self.inner).map(|inner| Verified { inner })
    }
}

impl<T> AsRef<T> for Verified<T> {
    fn as_ref(&self) -> &T {
        &self.inner
    }
}

/// Why a request was refused. The messages name the header and the problem;
/// they never contain a secret, a key or the signature value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent.
    #[error("missing header \"{0}\"")]
    MissingHeader(&'static str),
    /// A header is present but cannot be read.
    #[error("malformed header \"{header}\": {problem}")]
    MalformedHeader {
        /// The header's name.
        header: &'static str,
        /// What is wrong with its value.
        problem: &'static str,
    },
    /// The signed timestamp is too far from the caller's clock.
    #[error("stale timestamp: {skew_secs} s from now, more than the {max_skew_secs} s allowed")]
    StaleTimestamp {
        /// Absolute distance between the signed timestamp and `now`.
        skew_secs: u64,
        /// The allowed distance.
        max_skew_secs: u64,
    },
    /// The signature is well formed but does not match the body.
    #[error("bad signature in \"{0}\"")]
    BadSignature(&'static str),
    /// The configured Discord public key is not a valid hex Ed25519 key.
    #[error("configured Discord public key is not a valid hex Ed25519 key")]
    MalformedPublicKey,
}

/// Read access to a request's headers.
///
/// Implemented for slices of name/value pairs; the HTTP layer implements it for
/// its own header map so that this module stays free of web framework types.
pub trait RequestHeaders {
    /// The value of the first header called `name`, compared ASCII
    /// case-insensitively, or `None`.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl<K: AsRef<str>, V: AsRef<[u8]>> RequestHeaders for [(K, V)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(key, _)| key.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> RequestHeaders for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

/// A replay window for platforms that do not define one (Discord): refuse a
/// timestamp more than `max_skew_secs` away from `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The caller's clock, unix seconds.
    pub now: i64,
    /// The largest accepted distance between the signed timestamp and `now`.
    pub max_skew_secs: u64,
}

/// Checks a Slack request signed with the v0 scheme: `X-Slack-Signature` must
/// be `v0=` + hex HMAC-SHA256(signing secret, `v0:{timestamp}:{body}`), and
/// `X-Slack-Request-Timestamp` within [`SLACK_MAX_SKEW_SECS`] of `now`.
///
/// # Errors
///
/// Missing or unreadable headers, a stale timestamp (checked before the
/// signature), or a signature that does not match.
pub fn verify_slack<B: AsRef<[u8]>>(
    headers: &(impl RequestHeaders + ?Sized),
    body: B,
    signing_secret: &[u8],
    now: i64,
) -> Result<Verified<B>, VerifyError> {
    let timestamp_text = header_text(headers, SLACK_TIMESTAMP_HEADER)?;
    let timestamp = parse_unix_seconds(timestamp_text, SLACK_TIMESTAMP_HEADER)?;
    check_replay_window(
        timestamp,
        ReplayWindow {
            now,
            max_skew_secs: SLACK_MAX_SKEW_SECS,
        },
    )?;
    let signature_text = header_text(headers, SLACK_SIGNATURE_HEADER)?;
    let signature_hex = signature_text
        .strip_prefix("v0=")
        .ok_or(VerifyError::MalformedHeader {
            header: SLACK_SIGNATURE_HEADER,
            problem: "expected the v0= scheme",
        })?;
    let claimed = decode_hex_digest(signature_hex).ok_or(VerifyError::MalformedHeader {
        header: SLACK_SIGNATURE_HEADER,
        problem: "expected 64 hex digits after v0=",
    })?;
    let mut mac = hmac_sha256(signing_secret);
    mac.update(b"v0:");
    mac.update(timestamp_text.as_bytes());
    mac.update(b":");
    mac.update(body.as_ref());
    let expected = mac.finalize().into_bytes();
    if bool::from(expected.as_slice().ct_eq(&claimed)) {
        Ok(Verified { inner: body })
    } else {
        Err(VerifyError::BadSignature(SLACK_SIGNATURE_HEADER))
    }
}

/// Checks a Discord interaction: `X-Signature-Ed25519` must be a valid Ed25519
/// signature of `X-Signature-Timestamp ‖ body` under the application's hex
/// public key. Discord documents no replay window, so the timestamp's age is
/// not checked; see [`verify_discord_within`].
///
/// # Errors
///
/// Missing or malformed headers, a malformed public key, or a signature that
/// does not verify. Malformed input is an error, never a panic.
pub fn verify_discord<B: AsRef<[u8]>>(
    headers: &(impl RequestHeaders + ?Sized),
    body: B,
    public_key_hex: &str,
) -> Result<Verified<B>, VerifyError> {
    let key = parse_discord_public_key(public_key_hex)?;
    let timestamp = header_text(headers, DISCORD_TIMESTAMP_HEADER)?;
    let signature_text = header_text(headers, DISCORD_SIGNATURE_HEADER)?;
    let signature_bytes: [u8; 64] = hex::decode(signature_text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(VerifyError::MalformedHeader {
            header: DISCORD_SIGNATURE_HEADER,
            problem: "expected 128 hex digits",
        })?;
    let signature = Signature::from_bytes(&signature_bytes);
    let mut message = Vec::with_capacity(timestamp.len() + body.as_ref().len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body.as_ref());
    // verify_strict refuses small-order keys and non-canonical signatures, as
    // libsodium (which Discord's own examples use) does.
    key.verify_strict(&message, &signature)
        .map_err(|_| VerifyError::BadSignature(DISCORD_SIGNATURE_HEADER))?;
    Ok(Verified { inner: body })
}

/// [`verify_discord`] plus a replay window of our own choosing: the
/// `X-Signature-Timestamp` must be unix seconds within `window` of its `now`.
///
/// # Errors
///
/// Everything [`verify_discord`] refuses, plus a timestamp that is not an
/// integer or lies outside the window. The signature is checked first, so a
/// stale error means the request was genuine but old.
pub fn verify_discord_within<B: AsRef<[u8]>>(
    headers: &(impl RequestHeaders + ?Sized),
    body: B,
    public_key_hex: &str,
    window: ReplayWindow,
) -> Result<Verified<B>, VerifyError> {
    let verified = verify_discord(headers, body, public_key_hex)?;
    let timestamp_text = header_text(headers, DISCORD_TIMESTAMP_HEADER)?;
    let timestamp = parse_unix_seconds(timestamp_text, DISCORD_TIMESTAMP_HEADER)?;
    check_replay_window(timestamp, window)?;
    Ok(verified)
}

/// Checks a PagerDuty v3 webhook: `X-PagerDuty-Signature` holds one or more
/// comma-separated `v1=<hex>` entries (several while a secret is rotated), and
/// at least one must equal hex HMAC-SHA256(secret, body). Spaces around
/// entries are tolerated and entries of other schemes are ignored. PagerDuty
/// signs no timestamp, so there is no replay window; deduplicate on
/// `X-Webhook-Id` instead.
///
/// # Errors
///
/// A missing header, a header with no readable `v1` entry, or no matching entry.
pub fn verify_pagerduty<B: AsRef<[u8]>>(
    headers: &(impl RequestHeaders + ?Sized),
    body: B,
    secret: &[u8],
) -> Result<Verified<B>, VerifyError> {
    let header = header_text(headers, PAGERDUTY_SIGNATURE_HEADER)?;
    let candidates: Vec<[u8; 32]> = header
        .split(',')
        .filter_map(|entry| entry.trim().strip_prefix("v1="))
        .filter_map(decode_hex_digest)
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::MalformedHeader {
            header: PAGERDUTY_SIGNATURE_HEADER,
            problem: "no v1=<64 hex digits> entry",
        });
    }
    let mut mac = hmac_sha256(secret);
    mac.update(body.as_ref());
    let expected = mac.finalize().into_bytes();
    // Compare against every candidate without stopping early, so timing does
    // not reveal which entry matched.
    let any_match = candidates.iter().fold(Choice::from(0), |found, candidate| {
        found | expected.as_slice().ct_eq(candidate)
    });
    if bool::from(any_match) {
        Ok(Verified { inner: body })
    } else {
        Err(VerifyError::BadSignature(PAGERDUTY_SIGNATURE_HEADER))
    }
}

fn header_text<'h>(
    headers: &'h (impl RequestHeaders + ?Sized),
    name: &'static str,
) -> Result<&'h str, VerifyError> {
    let raw = headers
        .header(name)
        .ok_or(VerifyError::MissingHeader(name))?;
    std::str::from_utf8(raw).map_err(|_| VerifyError::MalformedHeader {
        header: name,
        problem: "not UTF-8",
    })
}

fn parse_unix_seconds(text: &str, header: &'static str) -> Result<i64, VerifyError> {
    text.parse().map_err(|_| VerifyError::MalformedHeader {
        header,
        problem: "expected unix seconds",
    })
}

fn check_replay_window(timestamp: i64, window: ReplayWindow) -> Result<(), VerifyError> {
    let skew_secs = window.now.abs_diff(timestamp);
    if skew_secs > window.max_skew_secs {
        return Err(VerifyError::StaleTimestamp {
            skew_secs,
            max_skew_secs: window.max_skew_secs,
        });
    }
    Ok(())
}

fn decode_hex_digest(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

fn parse_discord_public_key(public_key_hex: &str) -> Result<VerifyingKey, VerifyError> {
    let bytes: [u8; 32] = hex::decode(public_key_hex.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(VerifyError::MalformedPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| VerifyError::MalformedPublicKey)
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

#[cfg(test)]
mod tests {
    //! Every vector in `tests/fixtures/signatures.json`, plus tampered copies
    //! of each, goes through one `check` helper.

    use super::*;
    use serde_json::Value;

    /// Which verifier a case runs, with its key material and clock.
    enum Scheme {
        Slack {
            secret: String,
            now: i64,
        },
        Discord {
            public_key_hex: String,
        },
        DiscordWithin {
            public_key_hex: String,
            window: ReplayWindow,
        },
        PagerDuty {
            secret: String,
        },
    }

    impl Scheme {
        fn secret_text(&self) -> &str {
            match self {
                Scheme::Slack { secret, .. } | Scheme::PagerDuty { secret } => secret,
                Scheme::Discord { public_key_hex }
                | Scheme::DiscordWithin { public_key_hex, .. } => public_key_hex,
            }
        }
    }

    struct Case {
        name: String,
        scheme: Scheme,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// `Ok(())` or the exact error text.
        expected: Result<(), String>,
    }

    fn check(case: &Case) {
        let headers = case.headers.as_slice();
        let body = case.body.clone();
        let outcome = match &case.scheme {
            Scheme::Slack { secret, now } => verify_slack(headers, body, secret.as_bytes(), *now),
            Scheme::Discord { public_key_hex } => verify_discord(headers, body, public_key_hex),
            Scheme::DiscordWithin {
                public_key_hex,
                window,
            } => verify_discord_within(headers, body, public_key_hex, *window),
            Scheme::PagerDuty { secret } => verify_pagerduty(headers, body, secret.as_bytes()),
        };
        let outcome = outcome
            .map(|verified| {
                assert_eq!(
                    verified.into_inner(),
                    case.body,
                    "{}: body changed",
                    case.name
                )
            })
            .map_err(|error| error.to_string());
        assert_eq!(outcome, case.expected, "case {}", case.name);
        let secret = case.scheme.secret_text();
        if let Err(message) = &outcome
            && !secret.is_empty()
        {
            assert!(
                !message.contains(secret),
                "{}: error text echoes the secret",
                case.name
            );
        }
    }

    #[test]
    fn every_vector_and_its_tampered_copies() {
        let vectors = load_json("signatures.json");
        let mut cases = Vec::new();
        cases.extend(slack_cases(&vectors["slack"]));
        cases.extend(discord_cases(&vectors["discord"]));
        cases.extend(pagerduty_cases(&vectors["pagerduty"]));
        // 4 Slack, 3 Discord and 3 PagerDuty vectors, each with its tampered copies.
        assert!(cases.len() > 80, "only {} cases", cases.len());
        for case in &cases {
            check(case);
        }
    }

    #[test]
    fn fixture_files_match_the_signed_bodies() {
        let vectors = load_json("signatures.json");
        let mut all = vec![&vectors["slack"]["documented_vector"]];
        for platform in ["slack", "discord", "pagerduty"] {
            all.extend(array(&vectors[platform]["computed_vectors"]));
        }
        for vector in all {
            let body = text(&vector["body"]);
            if let Some(file) = vector["body_file"].as_str() {
                assert_eq!(
                    load_bytes(file),
                    body.as_bytes(),
                    "{file} differs from its vector"
                );
            }
            if let Some(file) = vector["body_file_semantic"].as_str() {
                let signed: Value = serde_json::from_str(body).expect("signed JSON bodies parse");
                assert_eq!(load_json(file), signed, "{file} differs from its vector");
            }
        }
    }

    #[test]
    fn verified_values_keep_their_proof_through_parsing() {
        let headers = [(
            PAGERDUTY_SIGNATURE_HEADER,
            pagerduty_signature(b"k", br#"{"a":1}"#),
        )];
        let verified =
            verify_pagerduty(&headers[..], br#"{"a":1}"#.to_vec(), b"k").expect("signed with k");
        let parsed: Verified<Value> = verified
            .try_map(|bytes| serde_json::from_slice(&bytes))
            .expect("the body is JSON");
        assert_eq!(parsed.as_ref()["a"], 1);
        assert_eq!(parsed.map(|value| value["a"].clone()).into_inner(), 1);
    }

    fn slack_cases(slack: &Value) -> Vec<Case> {
        let documented = &slack["documented_vector"];
        let mut vectors = vec![(
            "slack documented".to_string(),
            text(&documented["signing_secret"]).to_string(),
            text(&documented["timestamp"]).to_string(),
            text(&documented["expected_signature"]).to_string(),
            load_bytes(text(&documented["body_file"])),
            documented["verify_at_unix"]
                .as_i64()
                .expect("verify_at_unix is a number"),
        )];
        for vector in array(&slack["computed_vectors"]) {
            vectors.push((
                format!("slack {}", text(&vector["name"])),
                text(&vector["signing_secret"]).to_string(),
                text(&vector["timestamp"]).to_string(),
                text(&vector["expected_signature"]).to_string(),
                text(&vector["body"]).as_bytes().to_vec(),
                vector["verify_at_unix"]
                    .as_i64()
                    .expect("verify_at_unix is a number"),
            ));
        }
        let mut cases = Vec::new();
        for (name, secret, timestamp, signature, body, now) in vectors {
            let ts: i64 = timestamp.parse().expect("vector timestamps are integers");
            let good_headers = vec![
                (SLACK_TIMESTAMP_HEADER.to_string(), timestamp.clone()),
                (SLACK_SIGNATURE_HEADER.to_string(), signature.clone()),
            ];
            let slack_case = |suffix: &str,
                              secret: &str,
                              now: i64,
                              headers: Vec<(String, String)>,
                              body: &[u8],
                              expected: Result<(), &str>| Case {
                name: format!("{name}: {suffix}"),
                scheme: Scheme::Slack {
                    secret: secret.to_string(),
                    now,
                },
                headers,
                body: body.to_vec(),
                expected: expected.map_err(str::to_string),
            };
            let bad = Err("bad signature in \"X-Slack-Signature\"");
            cases.push(slack_case(
                "as documented",
                &secret,
                now,
                good_headers.clone(),
                &body,
                Ok(()),
            ));
            cases.push(slack_case(
                "at the timestamp itself",
                &secret,
                ts,
                good_headers.clone(),
                &body,
                Ok(()),
            ));
            cases.push(slack_case(
                "300 s late",
                &secret,
                ts + 300,
                good_headers.clone(),
                &body,
                Ok(()),
            ));
            cases.push(slack_case(
                "300 s early",
                &secret,
                ts - 300,
                good_headers.clone(),
                &body,
                Ok(()),
            ));
            cases.push(slack_case(
                "301 s late",
                &secret,
                ts + 301,
                good_headers.clone(),
                &body,
                Err("stale timestamp: 301 s from now, more than the 300 s allowed"),
            ));
            cases.push(slack_case(
                "an hour early",
                &secret,
                ts - 3600,
                good_headers.clone(),
                &body,
                Err("stale timestamp: 3600 s from now, more than the 300 s allowed"),
            ));
            cases.push(slack_case(
                "lower-case header names",
                &secret,
                now,
                lower_case_names(&good_headers),
                &body,
                Ok(()),
            ));
            cases.push(slack_case(
                "body altered after signing",
                &secret,
                now,
                good_headers.clone(),
                &altered(&body),
                bad,
            ));
            cases.push(slack_case(
                "body with a trailing newline",
                &secret,
                now,
                good_headers.clone(),
                &[&body[..], b"\n"].concat(),
                bad,
            ));
            cases.push(slack_case(
                "timestamp shifted by one second",
                &secret,
                now,
                with_header(&good_headers, SLACK_TIMESTAMP_HEADER, &(ts + 1).to_string()),
                &body,
                bad,
            ));
            cases.push(slack_case(
                "wrong secret",
                "not-the-signing-secret",
                now,
                good_headers.clone(),
                &body,
                bad,
            ));
            cases.push(slack_case(
                "signature hex in upper case",
                &secret,
                now,
                with_header(
                    &good_headers,
                    SLACK_SIGNATURE_HEADER,
                    &format!("v0={}", signature[3..].to_uppercase()),
                ),
                &body,
                Ok(()),
            ));
            cases.push(slack_case(
                "missing timestamp",
                &secret,
                now,
                without_header(&good_headers, SLACK_TIMESTAMP_HEADER),
                &body,
                Err("missing header \"X-Slack-Request-Timestamp\""),
            ));
            cases.push(slack_case(
                "missing signature",
                &secret,
                now,
                without_header(&good_headers, SLACK_SIGNATURE_HEADER),
                &body,
                Err("missing header \"X-Slack-Signature\""),
            ));
            cases.push(slack_case(
                "timestamp not a number",
                &secret,
                now,
                with_header(&good_headers, SLACK_TIMESTAMP_HEADER, "yesterday"),
                &body,
                Err("malformed header \"X-Slack-Request-Timestamp\": expected unix seconds"),
            ));
            cases.push(slack_case(
                "unknown scheme",
                &secret,
                now,
                with_header(
                    &good_headers,
                    SLACK_SIGNATURE_HEADER,
                    &signature.replacen("v0=", "v1=", 1),
                ),
                &body,
                Err("malformed header \"X-Slack-Signature\": expected the v0= scheme"),
            ));
            cases.push(slack_case(
                "truncated signature",
                &secret,
                now,
                with_header(
                    &good_headers,
                    SLACK_SIGNATURE_HEADER,
                    &signature[..signature.len() - 2],
                ),
                &body,
                Err("malformed header \"X-Slack-Signature\": expected 64 hex digits after v0="),
            ));
        }
        cases
    }

    fn discord_cases(discord: &Value) -> Vec<Case> {
        let public_key_hex = text(&discord["test_keypair"]["public_key_hex"]).to_string();
        let vectors = array(&discord["computed_vectors"]);
        let mut cases = Vec::new();
        for (idx, vector) in vectors.iter().enumerate() {
            let name = format!("discord {}", text(&vector["name"]));
            let timestamp = text(&vector["headers"][DISCORD_TIMESTAMP_HEADER]).to_string();
            let signature = text(&vector["headers"][DISCORD_SIGNATURE_HEADER]).to_string();
            assert_eq!(
                signature,
                text(&vector["signature_hex"]),
                "{name}: header and signature_hex differ"
            );
            let body = text(&vector["body"]).as_bytes().to_vec();
            let ts: i64 = timestamp.parse().expect("vector timestamps are integers");
            let good_headers = vec![
                (DISCORD_SIGNATURE_HEADER.to_string(), signature.clone()),
                (DISCORD_TIMESTAMP_HEADER.to_string(), timestamp.clone()),
            ];
            let other_signature = text(&vectors[(idx + 1) % vectors.len()]["signature_hex"]);
            let discord_case = |suffix: &str,
                                headers: Vec<(String, String)>,
                                body: &[u8],
                                expected: Result<(), &str>| Case {
                name: format!("{name}: {suffix}"),
                scheme: Scheme::Discord {
                    public_key_hex: public_key_hex.clone(),
                },
                headers,
                body: body.to_vec(),
                expected: expected.map_err(str::to_string),
            };
            let within = |suffix: &str, now: i64, expected: Result<(), &str>| Case {
                name: format!("{name}: {suffix}"),
                scheme: Scheme::DiscordWithin {
                    public_key_hex: public_key_hex.clone(),
                    window: ReplayWindow {
                        now,
                        max_skew_secs: 300,
                    },
                },
                headers: good_headers.clone(),
                body: body.clone(),
                expected: expected.map_err(str::to_string),
            };
            let bad = Err("bad signature in \"X-Signature-Ed25519\"");
            cases.push(discord_case(
                "as signed",
                good_headers.clone(),
                &body,
                Ok(()),
            ));
            cases.push(discord_case(
                "lower-case header names",
                lower_case_names(&good_headers),
                &body,
                Ok(()),
            ));
            cases.push(discord_case(
                "body altered after signing",
                good_headers.clone(),
                &altered(&body),
                bad,
            ));
            cases.push(discord_case(
                "timestamp shifted by one second",
                with_header(
                    &good_headers,
                    DISCORD_TIMESTAMP_HEADER,
                    &(ts + 1).to_string(),
                ),
                &body,
                bad,
            ));
            cases.push(discord_case(
                "another request's signature",
                with_header(&good_headers, DISCORD_SIGNATURE_HEADER, other_signature),
                &body,
                bad,
            ));
            cases.push(discord_case(
                "signature not hex",
                with_header(&good_headers, DISCORD_SIGNATURE_HEADER, &"zz".repeat(64)),
                &body,
                Err("malformed header \"X-Signature-Ed25519\": expected 128 hex digits"),
            ));
            cases.push(discord_case(
                "signature too short",
                with_header(&good_headers, DISCORD_SIGNATURE_HEADER, &signature[..126]),
                &body,
                Err("malformed header \"X-Signature-Ed25519\": expected 128 hex digits"),
            ));
            cases.push(discord_case(
                "missing signature",
                without_header(&good_headers, DISCORD_SIGNATURE_HEADER),
                &body,
                Err("missing header \"X-Signature-Ed25519\""),
            ));
            cases.push(discord_case(
                "missing timestamp",
                without_header(&good_headers, DISCORD_TIMESTAMP_HEADER),
                &body,
                Err("missing header \"X-Signature-Timestamp\""),
            ));
            for (suffix, bad_key) in [
                ("key not hex", "not a key".to_string()),
                ("key too short", public_key_hex[..62].to_string()),
                ("key empty", String::new()),
            ] {
                cases.push(Case {
                    name: format!("{name}: {suffix}"),
                    scheme: Scheme::Discord {
                        public_key_hex: bad_key,
                    },
                    headers: good_headers.clone(),
                    body: body.clone(),
                    expected: Err(
                        "configured Discord public key is not a valid hex Ed25519 key".to_string(),
                    ),
                });
            }
            cases.push(within("inside our window", ts + 300, Ok(())));
            cases.push(within(
                "outside our window",
                ts + 301,
                Err("stale timestamp: 301 s from now, more than the 300 s allowed"),
            ));
        }
        cases
    }

    fn pagerduty_cases(pagerduty: &Value) -> Vec<Case> {
        let documented = &pagerduty["documented_vector"];
        let mut vectors = vec![(
            "pagerduty documented".to_string(),
            text(&documented["secret"]).to_string(),
            text(&documented["X-PagerDuty-Signature"]).to_string(),
            text(&documented["body"]).as_bytes().to_vec(),
        )];
        for vector in array(&pagerduty["computed_vectors"]) {
            vectors.push((
                format!("pagerduty {}", text(&vector["name"])),
                text(&vector["secret"]).to_string(),
                text(&vector["expected_signature"]).to_string(),
                text(&vector["body"]).as_bytes().to_vec(),
            ));
        }
        let mismatch = text(&documented["mismatch_example_from_same_test"]).to_string();
        let docs_example = text(&pagerduty["algorithm"]["header_example_from_docs"]).to_string();
        let mut cases = Vec::new();
        for (name, secret, signature, body) in vectors {
            let pagerduty_case =
                |suffix: &str,
                 secret: &str,
                 header: Option<&str>,
                 body: &[u8],
                 expected: Result<(), &str>| Case {
                    name: format!("{name}: {suffix}"),
                    scheme: Scheme::PagerDuty {
                        secret: secret.to_string(),
                    },
                    headers: header
                        .map(|value| {
                            vec![(PAGERDUTY_SIGNATURE_HEADER.to_string(), value.to_string())]
                        })
                        .unwrap_or_default(),
                    body: body.to_vec(),
                    expected: expected.map_err(str::to_string),
                };
            let bad = Err("bad signature in \"X-PagerDuty-Signature\"");
            let malformed =
                Err("malformed header \"X-PagerDuty-Signature\": no v1=<64 hex digits> entry");
            cases.push(pagerduty_case(
                "as signed",
                &secret,
                Some(&signature),
                &body,
                Ok(()),
            ));
            cases.push(pagerduty_case(
                "the test's mismatching signature",
                &secret,
                Some(&mismatch),
                &body,
                bad,
            ));
            cases.push(pagerduty_case(
                "the docs' rotation example",
                &secret,
                Some(&docs_example),
                &body,
                bad,
            ));
            cases.push(pagerduty_case(
                "several, only the second matches",
                &secret,
                Some(&format!("{mismatch},{signature}")),
                &body,
                Ok(()),
            ));
            cases.push(pagerduty_case(
                "several with spaces after commas",
                &secret,
                Some(&format!("{mismatch}, {signature} , {mismatch}")),
                &body,
                Ok(()),
            ));
            cases.push(pagerduty_case(
                "other schemes are ignored",
                &secret,
                Some(&format!("v0={}, v2=abc,{signature}", &signature[3..])),
                &body,
                Ok(()),
            ));
            cases.push(pagerduty_case(
                "a correct digest under another scheme",
                &secret,
                Some(&format!("v2={}", &signature[3..])),
                &body,
                malformed,
            ));
            cases.push(pagerduty_case(
                "an unreadable v1 next to a good one",
                &secret,
                Some(&format!("v1=nothex,{signature}")),
                &body,
                Ok(()),
            ));
            cases.push(pagerduty_case(
                "empty header",
                &secret,
                Some(""),
                &body,
                malformed,
            ));
            cases.push(pagerduty_case(
                "wrong secret",
                "not-the-secret",
                Some(&signature),
                &body,
                bad,
            ));
            cases.push(pagerduty_case(
                "body altered after signing",
                &secret,
                Some(&signature),
                &altered(&body),
                bad,
            ));
            cases.push(pagerduty_case(
                "missing header",
                &secret,
                None,
                &body,
                Err("missing header \"X-PagerDuty-Signature\""),
            ));
        }
        cases
    }

    fn pagerduty_signature(secret: &[u8], body: &[u8]) -> String {
        let mut mac = hmac_sha256(secret);
        mac.update(body);
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Changes one byte in the middle, keeping the length.
    fn altered(body: &[u8]) -> Vec<u8> {
        let mut copy = body.to_vec();
        let middle = copy.len() / 2;
        copy[middle] = if copy[middle] == b'x' { b'y' } else { b'x' };
        copy
    }

    fn with_header(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(key, old)| {
                (
                    key.clone(),
                    if key == name {
                        value.to_string()
                    } else {
                        old.clone()
                    },
                )
            })
            .collect()
    }

    fn without_header(headers: &[(String, String)], name: &str) -> Vec<(String, String)> {
        headers
            .iter()
            .filter(|(key, _)| key != name)
            .cloned()
            .collect()
    }

    fn lower_case_names(headers: &[(String, String)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(key, value)| (key.to_lowercase(), value.clone()))
            .collect()
    }

    fn text(value: &Value) -> &str {
        value
            .as_str()
            .unwrap_or_else(|| panic!("expected a string in signatures.json, got {value}"))
    }

    fn array(value: &Value) -> &Vec<Value> {
        value
            .as_array()
            .unwrap_or_else(|| panic!("expected an array in signatures.json, got {value}"))
    }

    fn load_bytes(relative: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{relative}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|error| panic!("reading fixture {path}: {error}"))
    }

    fn load_json(relative: &str) -> Value {
        serde_json::from_slice(&load_bytes(relative))
            .unwrap_or_else(|error| panic!("parsing fixture {relative}: {error}"))
    }
}
