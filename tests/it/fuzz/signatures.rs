//! The Slack, Discord and PagerDuty signature checks: every documented and
//! computed vector verifies as signed; no changed byte, appended byte or
//! flipped signature bit ever does; random bodies signed with the right
//! secret always do.

use deckhand::verify::{self, ReplayWindow};
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use serde_json::Value;
use sha2::Sha256;

use super::runner;
use crate::support::fixture_json;

/// One signed request from `signatures.json`.
#[derive(Debug, Clone)]
struct Signed {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// How a signed request is changed: a body byte, a header byte, bytes
/// added to the body, or one bit of the signature.
#[derive(Debug, Clone)]
enum Mutation {
    Body { at: usize, xor: u8 },
    Header { header: usize, at: usize, xor: u8 },
    Append(Vec<u8>),
    SignatureBit { bit: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255_u8).prop_map(|(at, xor)| Mutation::Body { at, xor }),
        (any::<usize>(), any::<usize>(), 1..=255_u8)
            .prop_map(|(header, at, xor)| Mutation::Header { header, at, xor }),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
        any::<usize>().prop_map(|bit| Mutation::SignatureBit { bit }),
    ]
}

impl Signed {
    /// The request changed by `mutation`; the signature header is named
    /// `signature_header` and holds hex after `prefix`.
    fn mutated(&self, mutation: &Mutation, signature_header: &str, prefix: &str) -> Signed {
        let mut changed = self.clone();
        match mutation {
            Mutation::Body { at, xor } => {
                let index = at % changed.body.len();
                changed.body[index] ^= xor;
            }
            Mutation::Header { header, at, xor } => {
                let index = header % changed.headers.len();
                let mut bytes = changed.headers[index].1.clone().into_bytes();
                let position = at % bytes.len();
                bytes[position] ^= xor;
                changed.headers[index].1 = String::from_utf8_lossy(&bytes).into_owned();
            }
            Mutation::Append(extra) => changed.body.extend_from_slice(extra),
            Mutation::SignatureBit { bit } => {
                let (_, value) = changed
                    .headers
                    .iter_mut()
                    .find(|(name, _)| name == signature_header)
                    .expect("the signature header");
                let mut digest = hex::decode(&value[prefix.len()..]).expect("hex signature");
                let index = bit % (digest.len() * 8);
                digest[index / 8] ^= 1 << (index % 8);
                *value = format!("{prefix}{}", hex::encode(digest));
            }
        }
        changed
    }

    /// Whether the change can leave the request as valid as it was: a
    /// header byte changed to the other case of a hex digit, which hex
    /// decoding reads the same.
    fn same_meaning(&self, other: &Signed) -> bool {
        self.body == other.body
            && self
                .headers
                .iter()
                .zip(&other.headers)
                .all(|((_, left), (_, right))| left.eq_ignore_ascii_case(right))
            && self.headers != other.headers
    }
}

fn vectors(platform: &str) -> Vec<Value> {
    fixture_json("signatures.json")[platform]["computed_vectors"]
        .as_array()
        .expect("computed vectors")
        .clone()
}

fn signed_of(vector: &Value) -> Signed {
    let headers = vector["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().expect("text").to_string()))
        .collect();
    Signed {
        headers,
        body: vector["body"].as_str().expect("body").as_bytes().to_vec(),
    }
}

/// Checks that every vector verifies as signed, and that no mutation of it
/// does (unless it kept the meaning).
fn check_mutations(
    cases: u32,
    platform: &str,
    signature_header: &str,
    prefix: &str,
    verify: impl Fn(&Value, &Signed) -> bool,
) {
    for vector in vectors(platform) {
        let signed = signed_of(&vector);
        assert!(
            verify(&vector, &signed),
            "{platform} vector {}",
            vector["name"]
        );
        let mut runner = runner(cases);
        runner
            .run(&mutation(), |mutation| {
                let changed = signed.mutated(&mutation, signature_header, prefix);
                if !signed.same_meaning(&changed) {
                    prop_assert!(
                        !verify(&vector, &changed),
                        "{platform} {} verified after {mutation:?}",
                        vector["name"]
                    );
                }
                Ok(())
            })
            .unwrap_or_else(|failure| panic!("{failure}"));
    }
}

#[test]
fn slack_signatures_verify_only_as_signed() {
    slack_signatures_hold(super::cases(super::MUTATION_CASES));
}

/// See [`slack_signatures_verify_only_as_signed`].
pub fn slack_signatures_hold(cases: u32) {
    check_mutations(
        cases,
        "slack",
        verify::SLACK_SIGNATURE_HEADER,
        "v0=",
        |vector, signed| {
            let now = vector["verify_at_unix"].as_i64().expect("verify_at_unix");
            let secret = vector["signing_secret"].as_str().expect("secret");
            verify::verify_slack(
                &signed.headers,
                signed.body.as_slice(),
                secret.as_bytes(),
                now,
            )
            .is_ok()
        },
    );
}

#[test]
fn discord_signatures_verify_only_as_signed() {
    discord_signatures_hold(super::cases(super::MUTATION_CASES));
}

/// See [`discord_signatures_verify_only_as_signed`].
pub fn discord_signatures_hold(cases: u32) {
    let public_key = fixture_json("signatures.json")["discord"]["test_keypair"]["public_key_hex"]
        .as_str()
        .expect("public key")
        .to_string();
    check_mutations(
        cases,
        "discord",
        verify::DISCORD_SIGNATURE_HEADER,
        "",
        |vector, signed| {
            let now = vector["timestamp"]
                .as_str()
                .and_then(|timestamp| timestamp.parse().ok())
                .expect("timestamp");
            verify::verify_discord_within(
                &signed.headers,
                signed.body.as_slice(),
                &public_key,
                ReplayWindow {
                    now,
                    max_skew_secs: 300,
                },
            )
            .is_ok()
        },
    );
}

#[test]
fn pagerduty_signatures_verify_only_as_signed() {
    pagerduty_signatures_hold(super::cases(super::MUTATION_CASES));
}

/// See [`pagerduty_signatures_verify_only_as_signed`].
pub fn pagerduty_signatures_hold(cases: u32) {
    check_mutations(
        cases,
        "pagerduty",
        verify::PAGERDUTY_SIGNATURE_HEADER,
        "v1=",
        |vector, signed| {
            let secret = vector["secret"].as_str().expect("secret");
            verify::verify_pagerduty(&signed.headers, signed.body.as_slice(), secret.as_bytes())
                .is_ok()
        },
    );
}

#[test]
fn random_bodies_signed_with_the_right_secret_always_verify() {
    signed_random_bodies_verify(super::cases(super::SIGNED_CASES));
}

/// See [`random_bodies_signed_with_the_right_secret_always_verify`].
pub fn signed_random_bodies_verify(cases: u32) {
    let mut runner = runner(cases);
    runner
        .run(
            &(
                proptest::collection::vec(any::<u8>(), 0..512),
                1_000_000_000_i64..4_000_000_000,
            ),
            |(body, now)| {
                let secret = b"a-signing-secret-for-the-fuzzer";
                let timestamp = now.to_string();
                let mut slack = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
                slack.update(format!("v0:{timestamp}:").as_bytes());
                slack.update(&body);
                let headers = vec![
                    ("X-Slack-Request-Timestamp".to_string(), timestamp),
                    (
                        "X-Slack-Signature".to_string(),
                        format!("v0={}", hex::encode(slack.finalize().into_bytes())),
                    ),
                ];
                prop_assert!(verify::verify_slack(&headers, body.as_slice(), secret, now).is_ok());
                let mut pagerduty = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
                pagerduty.update(&body);
                let headers = vec![(
                    "X-PagerDuty-Signature".to_string(),
                    format!(
                        "v1=00, v1={}",
                        hex::encode(pagerduty.finalize().into_bytes())
                    ),
                )];
                prop_assert!(verify::verify_pagerduty(&headers, body.as_slice(), secret).is_ok());
                Ok(())
            },
        )
        .unwrap_or_else(|failure| panic!("{failure}"));
}
