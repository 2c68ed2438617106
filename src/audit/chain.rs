//! The chain rule and its verifier. Each entry's MAC covers the previous
//! entry's MAC and every field of the entry. With a key it is HMAC-SHA256
//! and also covers the algorithm and key id, so an entry cannot be
//! relabelled; without one it is the plain SHA-256 of 0001 (`sha256`),
//! which anyone can recompute. Once the chain is keyed, an unkeyed entry
//! after a keyed one can only be a re-chain, and is named as one.
//! `verify_chain` walks the entries in order and names the first problem;
//! what a checkpoint adds is `checkpoint`'s business.

use std::collections::BTreeSet;
use std::fmt;

use hmac::Mac;
use sha2::{Digest, Sha256};

use super::keys::{Keys, MacKey};
use crate::store::{AuditEntry, EntryMac, NewAuditEntry};

/// `mac_alg` of keyed entries.
pub const KEYED: &str = "hmac-sha256";
/// `mac_alg` of unkeyed entries.
pub const UNKEYED: &str = "sha256";
/// The previous MAC of the first entry.
pub const GENESIS: &str = "genesis";

/// Separates keyed MACs from any other use of the key.
const KEYED_DOMAIN: &str = "deckhand audit entry v1";

/// The unkeyed chain rule (0001's): the SHA-256 of the previous MAC and
/// every field of the entry, each length-prefixed so no two entries hash
/// alike. Kept unchanged so entries written before keys still verify.
pub fn chain_hash(prev_hash: &str, entry: &NewAuditEntry) -> String {
    let mut hasher = Sha256::new();
    for field in entry_fields(prev_hash, entry) {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The keyed chain rule: HMAC-SHA256 under `key` of a domain tag, the
/// algorithm, the key id, the previous MAC and every field of the entry,
/// each length-prefixed.
pub fn keyed_mac(key: &MacKey, prev_hash: &str, entry: &NewAuditEntry) -> String {
    let mut mac = key.hmac();
    let header = [KEYED_DOMAIN, KEYED, key.id()].map(str::to_string);
    for field in header.into_iter().chain(entry_fields(prev_hash, entry)) {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// The MAC of a new entry under the current key, or unkeyed without one:
/// what `Store::append_audit` is given.
pub fn seal<'k>(keys: &'k Keys) -> impl Fn(&str, &NewAuditEntry) -> EntryMac + Send + Sync + 'k {
    move |prev_hash, entry| match &keys.current {
        Some(key) => EntryMac {
            mac_alg: KEYED.to_string(),
            key_id: key.id().to_string(),
            mac: keyed_mac(key, prev_hash, entry),
        },
        None => EntryMac {
            mac_alg: UNKEYED.to_string(),
            key_id: String::new(),
            mac: chain_hash(prev_hash, entry),
        },
    }
}

fn entry_fields(prev_hash: &str, entry: &NewAuditEntry) -> [String; 11] {
    [
        prev_hash.to_string(),
        crate::store::to_text(entry.at),
        entry.actor.clone(),
        entry.platform.clone(),
        entry.channel.clone(),
        entry.command.clone(),
        entry.env.clone(),
        entry.op_id.to_string(),
        entry.event.clone(),
        entry.outcome.clone(),
        entry.detail.clone(),
    ]
}

/// What is wrong with the chain, naming the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// An entry's contents do not match its MAC, and the chain after it is
    /// intact: the entry was edited.
    Altered {
        /// The entry.
        seq: i64,
    },
    /// An entry and the ones after it carry MACs no key given made: the
    /// chain was recomputed from here without the key.
    RechainedWithoutKey {
        /// The first entry recomputed.
        seq: i64,
    },
    /// An entry is chained with plain SHA-256 where the chain is keyed.
    RechainedUnkeyed {
        /// The entry.
        seq: i64,
        /// Why it must be keyed.
        reason: UnkeyedReason,
    },
    /// An entry names a key verify was not given.
    UnknownKey {
        /// The entry.
        seq: i64,
        /// The key id it names.
        key_id: String,
        /// Ids of the keys verify has.
        known: Vec<String>,
    },
    /// An entry names a MAC algorithm Deckhand never writes.
    UnknownAlgorithm {
        /// The entry.
        seq: i64,
        /// The algorithm it names.
        mac_alg: String,
    },
    /// An entry is gone.
    Deleted {
        /// The missing entry.
        seq: i64,
        /// The entry found in its place, or `None` when the newest is gone.
        found: Option<i64>,
    },
    /// An entry does not follow the one before it.
    OutOfPlace {
        /// The entry.
        seq: i64,
    },
}

/// Why an entry chained with plain SHA-256 gives itself away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnkeyedReason {
    /// It is marked unkeyed but follows keyed entries.
    AfterKeyed {
        /// The newest keyed entry before it.
        keyed: i64,
    },
    /// It is marked keyed but its MAC is the unkeyed hash.
    MarkedKeyed,
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainProblem::Altered { seq } => write!(
                formatter,
                "audit entry {seq} was altered: its contents do not match its MAC"
            ),
            ChainProblem::RechainedWithoutKey { seq } => write!(
                formatter,
                "audit entry {seq} and the entries after it were re-chained without the key: their MACs were not made with any key given"
            ),
            ChainProblem::RechainedUnkeyed {
                seq,
                reason: UnkeyedReason::AfterKeyed { keyed },
            } => write!(
                formatter,
                "audit entry {seq} was re-chained with the old unkeyed method: it is plain SHA-256 but entry {keyed} before it is keyed"
            ),
            ChainProblem::RechainedUnkeyed {
                seq,
                reason: UnkeyedReason::MarkedKeyed,
            } => write!(
                formatter,
                "audit entry {seq} was re-chained with the old unkeyed method: it is marked keyed but its MAC is plain SHA-256"
            ),
            ChainProblem::UnknownKey { seq, key_id, known } => write!(
                formatter,
                "audit entry {seq} is keyed with key {key_id}, which verify was not given (given: {}): it was re-chained with another key, or the key it was made with is missing from DECKHAND_AUDIT_KEY_PREVIOUS",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            ChainProblem::UnknownAlgorithm { seq, mac_alg } => write!(
                formatter,
                "audit entry {seq} names MAC algorithm \"{mac_alg}\", which Deckhand never writes (known: {KEYED}, {UNKEYED})"
            ),
            ChainProblem::Deleted {
                seq,
                found: Some(found),
            } => write!(
                formatter,
                "audit entry {seq} was deleted: entry {found} follows entry {}",
                seq - 1
            ),
            ChainProblem::Deleted { seq, found: None } => write!(
                formatter,
                "audit entry {seq} was deleted: the chain head records it but the log ends at entry {}",
                seq - 1
            ),
            ChainProblem::OutOfPlace { seq } => write!(
                formatter,
                "audit entry {seq} is out of place: it does not follow entry {} (entries were reordered or rewritten)",
                seq - 1
            ),
        }
    }
}

/// What a walk of an intact chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Entries checked.
    pub n_entries: usize,
    /// The newest unkeyed entry (unkeyed entries can only come first), or 0.
    pub unkeyed_through: i64,
    /// Ids of the keys that keyed entries, oldest first.
    pub key_ids: Vec<String>,
}

/// Walks the chain in order against the head the store records.
///
/// # Errors
/// The first entry that was altered, re-chained, deleted or reordered.
pub fn verify_chain(
    entries: &[AuditEntry],
    head_seq: i64,
    head_hash: &str,
    keys: &Keys,
) -> Result<ChainReport, ChainProblem> {
    let mut prev_hash = GENESIS.to_string();
    let mut expected_seq = 1;
    let mut newest_keyed = None;
    let mut unkeyed_through = 0;
    let mut key_ids = Vec::new();
    let mut seen_ids = BTreeSet::new();
    for (entry_idx, stored) in entries.iter().enumerate() {
        check_mac(stored, newest_keyed, keys)
            .map_err(|problem| rechained_from(problem, entries.get(entry_idx + 1), stored, keys))?;
        if stored.seq != expected_seq {
            return Err(ChainProblem::Deleted {
                seq: expected_seq,
                found: Some(stored.seq),
            });
        }
        if stored.prev_hash != prev_hash {
            return Err(ChainProblem::OutOfPlace { seq: stored.seq });
        }
        if stored.mac_alg == KEYED {
            newest_keyed = Some(stored.seq);
            if seen_ids.insert(stored.key_id.clone()) {
                key_ids.push(stored.key_id.clone());
            }
        } else {
            unkeyed_through = stored.seq;
        }
        prev_hash = stored.hash.clone();
        expected_seq += 1;
    }
    if head_seq >= expected_seq {
        return Err(ChainProblem::Deleted {
            seq: expected_seq,
            found: None,
        });
    }
    if head_hash != prev_hash {
        return Err(ChainProblem::Altered {
            seq: expected_seq - 1,
        });
    }
    Ok(ChainReport {
        n_entries: entries.len(),
        unkeyed_through,
        key_ids,
    })
}

/// Checks one entry's own MAC.
fn check_mac(
    stored: &AuditEntry,
    newest_keyed: Option<i64>,
    keys: &Keys,
) -> Result<(), ChainProblem> {
    let seq = stored.seq;
    match stored.mac_alg.as_str() {
        UNKEYED => {
            if let Some(keyed) = newest_keyed {
                return Err(ChainProblem::RechainedUnkeyed {
                    seq,
                    reason: UnkeyedReason::AfterKeyed { keyed },
                });
            }
            if !stored.key_id.is_empty()
                || chain_hash(&stored.prev_hash, &stored.entry) != stored.hash
            {
                return Err(ChainProblem::Altered { seq });
            }
            Ok(())
        }
        KEYED => {
            let key = keys
                .mac_key(&stored.key_id)
                .ok_or_else(|| ChainProblem::UnknownKey {
                    seq,
                    key_id: stored.key_id.clone(),
                    known: keys.mac_key_ids().into_iter().map(str::to_string).collect(),
                })?;
            if keyed_mac(key, &stored.prev_hash, &stored.entry) == stored.hash {
                return Ok(());
            }
            if chain_hash(&stored.prev_hash, &stored.entry) == stored.hash {
                return Err(ChainProblem::RechainedUnkeyed {
                    seq,
                    reason: UnkeyedReason::MarkedKeyed,
                });
            }
            Err(ChainProblem::Altered { seq })
        }
        other => Err(ChainProblem::UnknownAlgorithm {
            seq,
            mac_alg: other.to_string(),
        }),
    }
}

/// An entry whose MAC is wrong was either edited (the next entry still
/// links to its old MAC and verifies) or recomputed with a wrong key along
/// with the rest of the chain (the next entry links to the new MAC and does
/// not verify either).
fn rechained_from(
    problem: ChainProblem,
    next: Option<&AuditEntry>,
    stored: &AuditEntry,
    keys: &Keys,
) -> ChainProblem {
    let ChainProblem::Altered { seq } = problem else {
        return problem;
    };
    let Some(next) = next else {
        return problem;
    };
    let next_is_bad = match check_mac(next, None, keys) {
        Err(ChainProblem::Altered { .. }) => true,
        Err(_) | Ok(()) => false,
    };
    if next.prev_hash == stored.hash && next_is_bad {
        ChainProblem::RechainedWithoutKey { seq }
    } else {
        problem
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::secret::Secret;

    fn key(text: &str) -> MacKey {
        MacKey::new("TEST_KEY", Secret::new(text.repeat(32))).expect("long enough")
    }

    fn keys(current: Option<&str>, previous: &[&str]) -> Keys {
        Keys {
            current: current.map(key),
            previous: previous.iter().copied().map(key).collect(),
            checkpoint: None,
        }
    }

    fn entry(actor: &str) -> NewAuditEntry {
        NewAuditEntry {
            at: Utc
                .with_ymd_and_hms(2026, 11, 28, 17, 0, 0)
                .single()
                .expect("valid time"),
            actor: actor.to_string(),
            platform: "console".to_string(),
            channel: "console".to_string(),
            command: "deploy".to_string(),
            env: "staging".to_string(),
            op_id: 42,
            event: "requested".to_string(),
            outcome: "pending".to_string(),
            detail: "needs 1 approval(s)".to_string(),
        }
    }

    /// Appends `actors` to `chain` sealed with `keys`, as the store does.
    fn append(chain: &mut Vec<AuditEntry>, keys: &Keys, actors: &[&str]) {
        let chain_mac = seal(keys);
        for actor in actors {
            let prev_hash = chain
                .last()
                .map_or(GENESIS.to_string(), |last| last.hash.clone());
            let new_entry = entry(actor);
            let EntryMac {
                mac_alg,
                key_id,
                mac,
            } = chain_mac(&prev_hash, &new_entry);
            chain.push(AuditEntry {
                seq: chain.len() as i64 + 1,
                entry: new_entry,
                prev_hash,
                hash: mac,
                mac_alg,
                key_id,
            });
        }
    }

    fn verify(chain: &[AuditEntry], keys: &Keys) -> Result<ChainReport, String> {
        let head = chain.last().map_or((0, GENESIS.to_string()), |last| {
            (last.seq, last.hash.clone())
        });
        verify_chain(chain, head.0, &head.1, keys).map_err(|problem| problem.to_string())
    }

    #[test]
    fn the_unkeyed_rule_is_unchanged_from_0001() {
        // The SHA-256 of the length-prefixed fields, computed independently:
        // logs written before keys must keep verifying.
        assert_eq!(
            chain_hash(GENESIS, &entry("alice")),
            "28b2909a54132e1ce2bb00a0a046c1da0ec93de0436c07799e803c2626647b7a"
        );
    }

    #[test]
    fn the_keyed_mac_depends_on_the_key_and_every_field() {
        let first = key("a");
        let second = key("b");
        let base = keyed_mac(&first, GENESIS, &entry("alice"));
        assert_eq!(base.len(), 64);
        assert_ne!(base, keyed_mac(&second, GENESIS, &entry("alice")));
        assert_ne!(base, keyed_mac(&first, "other", &entry("alice")));
        assert_ne!(base, keyed_mac(&first, GENESIS, &entry("mallory")));
        assert_ne!(base, chain_hash(GENESIS, &entry("alice")));
        // Moving bytes between fields changes it: fields are length-prefixed.
        let mut shifted = entry("alice");
        shifted.actor = "alic".to_string();
        shifted.platform = "econsole".to_string();
        assert_ne!(base, keyed_mac(&first, GENESIS, &shifted));
    }

    #[test]
    fn seal_marks_each_entry_keyed_or_not() {
        let keyed = seal(&keys(Some("a"), &[]))(GENESIS, &entry("alice"));
        assert_eq!(keyed.mac_alg, "hmac-sha256");
        assert_eq!(keyed.key_id, key("a").id());
        let unkeyed = seal(&keys(None, &[]))(GENESIS, &entry("alice"));
        assert_eq!(unkeyed.mac_alg, "sha256");
        assert_eq!(unkeyed.key_id, "");
        assert_eq!(unkeyed.mac, chain_hash(GENESIS, &entry("alice")));
    }

    #[test]
    fn an_intact_chain_reports_its_unkeyed_prefix_and_keys() {
        let mut chain = Vec::new();
        append(&mut chain, &keys(None, &[]), &["a", "b"]);
        append(&mut chain, &keys(Some("k1"), &[]), &["c"]);
        append(&mut chain, &keys(Some("k2"), &[]), &["d"]);
        let report = verify(&chain, &keys(Some("k2"), &["k1"])).expect("intact");
        assert_eq!(
            report,
            ChainReport {
                n_entries: 4,
                unkeyed_through: 2,
                key_ids: vec![key("k1").id().to_string(), key("k2").id().to_string()],
            }
        );
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let held = keys(Some("k"), &[]);
        let mut chain = Vec::new();
        append(&mut chain, &held, &["a", "b", "c", "d"]);

        let mut edited = chain.clone();
        edited[1].entry.actor = "mallory".to_string();
        assert_eq!(
            verify(&edited, &held),
            Err("audit entry 2 was altered: its contents do not match its MAC".to_string())
        );

        let mut rechained = chain[..1].to_vec();
        append(
            &mut rechained,
            &keys(Some("guess"), &[]),
            &["mallory", "c", "d"],
        );
        for stored in &mut rechained[1..] {
            stored.key_id = key("k").id().to_string();
        }
        assert_eq!(
            verify(&rechained, &held),
            Err("audit entry 2 and the entries after it were re-chained without the key: their MACs were not made with any key given".to_string())
        );

        let mut downgraded = chain[..1].to_vec();
        append(&mut downgraded, &keys(None, &[]), &["mallory", "c", "d"]);
        assert_eq!(
            verify(&downgraded, &held),
            Err("audit entry 2 was re-chained with the old unkeyed method: it is plain SHA-256 but entry 1 before it is keyed".to_string())
        );

        let mut relabelled = downgraded.clone();
        for stored in &mut relabelled[1..] {
            stored.mac_alg = KEYED.to_string();
            stored.key_id = key("k").id().to_string();
        }
        assert_eq!(
            verify(&relabelled, &held),
            Err("audit entry 2 was re-chained with the old unkeyed method: it is marked keyed but its MAC is plain SHA-256".to_string())
        );

        let mut foreign = chain[..1].to_vec();
        append(&mut foreign, &keys(Some("mine"), &[]), &["mallory"]);
        assert_eq!(
            verify(&foreign, &held),
            Err(format!(
                "audit entry 2 is keyed with key {}, which verify was not given (given: {}): it was re-chained with another key, or the key it was made with is missing from DECKHAND_AUDIT_KEY_PREVIOUS",
                key("mine").id(),
                key("k").id()
            ))
        );

        let mut swapped = chain.clone();
        swapped.swap(1, 2);
        swapped[1].seq = 2;
        swapped[2].seq = 3;
        assert_eq!(
            verify(&swapped, &held),
            Err("audit entry 2 is out of place: it does not follow entry 1 (entries were reordered or rewritten)".to_string())
        );

        let mut strange = chain.clone();
        strange[0].mac_alg = "md5".to_string();
        assert_eq!(
            verify(&strange, &held),
            Err("audit entry 1 names MAC algorithm \"md5\", which Deckhand never writes (known: hmac-sha256, sha256)".to_string())
        );
    }

    #[test]
    fn keyed_entries_need_their_key() {
        let mut chain = Vec::new();
        append(&mut chain, &keys(Some("k1"), &[]), &["a"]);
        append(&mut chain, &keys(Some("k2"), &[]), &["b"]);
        assert!(verify(&chain, &keys(Some("k2"), &["k1"])).is_ok());
        assert_eq!(
            verify(&chain, &keys(Some("k2"), &[])),
            Err(format!(
                "audit entry 1 is keyed with key {}, which verify was not given (given: {}): it was re-chained with another key, or the key it was made with is missing from DECKHAND_AUDIT_KEY_PREVIOUS",
                key("k1").id(),
                key("k2").id()
            ))
        );
    }
}
