//! The audit trail against tampering by someone who can write the store:
//! entries are chained with a keyed MAC and the head is witnessed by signed
//! checkpoints published outside the store, so `deckhand audit verify`
//! names every edit, re-chain (unkeyed or with a guessed key), reorder and
//! deletion, the newest entries included. Also export, key rotation, the
//! warnings of `deckhand check`, and refusals of people with no role
//! reaching the audit channel as one summary line.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use deckhand::app::App;
use deckhand::audit::{self, CheckpointKey, KEYED, MacKey, UNKEYED};
use deckhand::chat::{Outbound, Request};
use deckhand::flow;
use deckhand::names::Platform;
use deckhand::secret::Secret;
use deckhand::store::{EntryMac, NewAuditEntry};

use crate::support::discord_peer::{DISCORD_APPLICATION_ID, DISCORD_BOT_TOKEN, DiscordPeer};
use crate::support::wait_for;
use crate::support::workspace::{Workspace, stdout};

/// The chain key these tests run Deckhand with.
const KEY: &str = "5f0c8e0b4d6f4a1e9b3c2d7a8e6f1b0c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a";
/// The chain key before a rotation.
const OLD_KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// What someone without the key might try.
const GUESSED_KEY: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
/// The checkpoint signing seed.
const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

/// Requests that make a handful of entries: help, a refusal, a hold and its release.
const SESSION: &str = "/help\n/deplyo\n/lock staging \"freeze\"\n/unlock staging\n";

fn mac_key(text: &str) -> MacKey {
    MacKey::new("TEST_KEY", Secret::new(text)).expect("a long enough key")
}

fn checkpoint_key() -> CheckpointKey {
    CheckpointKey::from_seed_text("TEST_SEED", &Secret::new(SEED)).expect("a seed")
}

/// The shipped config with a checkpoint file and the test seed's public
/// key trusted, so verify needs no private key.
fn audit_workspace() -> Workspace {
    let public_key = checkpoint_key().public_key_hex();
    Workspace::with_config(|text| {
        format!(
            "{text}\n[audit]\ncheckpoint_file = \"../checkpoints.log\"\ncheckpoint_public_keys = [\"{public_key}\"]\n"
        )
    })
}

/// A workspace whose log holds a few entries keyed with `KEY`.
async fn workspace_with_entries() -> Workspace {
    let workspace = audit_workspace();
    run_console(&workspace, &[("DECKHAND_AUDIT_KEY", KEY)]);
    let (text, code) = verify(&workspace, &[("DECKHAND_AUDIT_KEY", KEY)], None);
    assert!(text.starts_with("ok: "), "{text}");
    assert_eq!(code, Some(0));
    workspace
}

fn run_console(workspace: &Workspace, env: &[(&str, &str)]) {
    let output = workspace.run_with_env(&["console", "--as", "alice"], SESSION, env);
    assert!(output.status.success(), "{}", describe(&output));
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `deckhand audit verify [--checkpoint ARG]`: its stdout and exit code.
fn verify(
    workspace: &Workspace,
    env: &[(&str, &str)],
    checkpoint: Option<&str>,
) -> (String, Option<i32>) {
    let mut args = vec!["audit", "verify"];
    if let Some(checkpoint) = checkpoint {
        args.extend(["--checkpoint", checkpoint]);
    }
    let output = workspace.run_with_env(&args, "", env);
    (stdout(&output), output.status.code())
}

fn verify_keyed(workspace: &Workspace) -> (String, Option<i32>) {
    verify(workspace, &[("DECKHAND_AUDIT_KEY", KEY)], None)
}

async fn tamper(workspace: &Workspace, statements: &[&str]) {
    let app = workspace.app().await;
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(app.store.pool())
            .await
            .expect("tampering statement runs");
    }
    app.store.close().await;
}

/// What a store writer does to rewrite history: sets entry `from`'s actor
/// to mallory, recomputes the MAC of it and every later entry with
/// `chain_mac`, and moves the head along.
async fn rechain(
    workspace: &Workspace,
    from: i64,
    chain_mac: impl Fn(&str, &NewAuditEntry) -> EntryMac,
) {
    let app = workspace.app().await;
    let (entries, _, _) = app.store.audit_chain().await.expect("chain");
    let mut prev_hash = entries[from as usize - 2].hash.clone();
    for stored in &entries[from as usize - 1..] {
        let mut entry = stored.entry.clone();
        if stored.seq == from {
            entry.actor = "mallory".to_string();
        }
        let new_mac = chain_mac(&prev_hash, &entry);
        sqlx::query(
            "UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3, mac_alg = $4, key_id = $5 WHERE seq = $6",
        )
        .bind(&entry.actor)
        .bind(&prev_hash)
        .bind(&new_mac.mac)
        .bind(&new_mac.mac_alg)
        .bind(&new_mac.key_id)
        .bind(stored.seq)
        .execute(app.store.pool())
        .await
        .expect("rewrite an entry");
        prev_hash = new_mac.mac;
    }
    sqlx::query("UPDATE audit_head SET last_hash = $1 WHERE id = 1")
        .bind(&prev_hash)
        .execute(app.store.pool())
        .await
        .expect("move the head");
    app.store.close().await;
}

async fn newest_seq(workspace: &Workspace) -> i64 {
    let app = workspace.app().await;
    let head = app.store.audit_head().await.expect("head");
    app.store.close().await;
    head.seq
}

#[tokio::test]
async fn a_modified_entry_is_named() {
    let workspace = workspace_with_entries().await;
    tamper(
        &workspace,
        &["UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"],
    )
    .await;
    assert_eq!(
        verify_keyed(&workspace),
        (
            "audit entry 3 was altered: its contents do not match its MAC\n\
             not proven: that no newest entries were deleted (the head is kept in the same store); give --checkpoint FILE or a published checkpoint line\n"
                .to_string(),
            Some(1)
        )
    );
}

#[tokio::test]
async fn a_deleted_entry_is_named() {
    let workspace = workspace_with_entries().await;
    tamper(&workspace, &["DELETE FROM audit_log WHERE seq = 4"]).await;
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text.lines().next(),
        Some("audit entry 4 was deleted: entry 5 follows entry 3")
    );
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn deleting_the_newest_entry_is_detected() {
    let workspace = workspace_with_entries().await;
    let last = newest_seq(&workspace).await;
    tamper(
        &workspace,
        &[&format!("DELETE FROM audit_log WHERE seq = {last}")],
    )
    .await;
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "audit entry {last} was deleted: the chain head records it but the log ends at entry {}",
                last - 1
            )
            .as_str()
        )
    );
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn swapped_entries_are_named() {
    let workspace = workspace_with_entries().await;
    tamper(
        &workspace,
        &[
            "UPDATE audit_log SET seq = -2 WHERE seq = 2",
            "UPDATE audit_log SET seq = 2 WHERE seq = 3",
            "UPDATE audit_log SET seq = 3 WHERE seq = -2",
        ],
    )
    .await;
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text.lines().next(),
        Some(
            "audit entry 2 is out of place: it does not follow entry 1 (entries were reordered or rewritten)"
        )
    );
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn rechaining_with_the_old_unkeyed_method_is_named() {
    let workspace = workspace_with_entries().await;
    rechain(&workspace, 3, |prev_hash, entry| EntryMac {
        mac_alg: UNKEYED.to_string(),
        key_id: String::new(),
        mac: audit::chain_hash(prev_hash, entry),
    })
    .await;
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text.lines().next(),
        Some(
            "audit entry 3 was re-chained with the old unkeyed method: it is plain SHA-256 but entry 2 before it is keyed"
        )
    );
    assert_eq!(code, Some(1));

    // The same, still labelled with the real key's id.
    let workspace = workspace_with_entries().await;
    let key_id = mac_key(KEY).id().to_string();
    rechain(&workspace, 3, |prev_hash, entry| EntryMac {
        mac_alg: KEYED.to_string(),
        key_id: key_id.clone(),
        mac: audit::chain_hash(prev_hash, entry),
    })
    .await;
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text.lines().next(),
        Some(
            "audit entry 3 was re-chained with the old unkeyed method: it is marked keyed but its MAC is plain SHA-256"
        )
    );
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn rechaining_without_the_key_is_named() {
    let workspace = workspace_with_entries().await;
    let real_id = mac_key(KEY).id().to_string();
    let guessed = mac_key(GUESSED_KEY);
    rechain(&workspace, 3, |prev_hash, entry| EntryMac {
        mac_alg: KEYED.to_string(),
        key_id: real_id.clone(),
        mac: audit::keyed_mac(&guessed, prev_hash, entry),
    })
    .await;
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text.lines().next(),
        Some(
            "audit entry 3 and the entries after it were re-chained without the key: their MACs were not made with any key given"
        )
    );
    assert_eq!(code, Some(1));

    // Under the forger's own key id instead.
    let workspace = workspace_with_entries().await;
    rechain(&workspace, 3, |prev_hash, entry| EntryMac {
        mac_alg: KEYED.to_string(),
        key_id: guessed.id().to_string(),
        mac: audit::keyed_mac(&guessed, prev_hash, entry),
    })
    .await;
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "audit entry 3 is keyed with key {}, which verify was not given (given: {real_id}): it was re-chained with another key, or the key it was made with is missing from DECKHAND_AUDIT_KEY_PREVIOUS",
                guessed.id()
            )
            .as_str()
        )
    );
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn deleting_the_newest_entries_and_moving_the_head_back_is_caught_by_the_checkpoint() {
    let workspace = workspace_with_entries().await;
    let checkpointed = workspace.run_with_env(
        &["audit", "checkpoint"],
        "",
        &[
            ("DECKHAND_AUDIT_KEY", KEY),
            ("DECKHAND_CHECKPOINT_KEY", SEED),
        ],
    );
    assert!(checkpointed.status.success(), "{}", describe(&checkpointed));
    let line = stdout(&checkpointed).trim().to_string();
    let last = newest_seq(&workspace).await;
    assert!(
        line.starts_with(&format!("deckhand-checkpoint v1 seq={last} mac=")),
        "{line}"
    );
    let file = workspace.dir().join("checkpoints.log");
    assert_eq!(
        std::fs::read_to_string(&file).expect("the checkpoint file"),
        format!("{line}\n")
    );

    let app = workspace.app().await;
    let (entries, _, _) = app.store.audit_chain().await.expect("chain");
    app.store.close().await;
    let kept = &entries[entries.len() - 3];
    tamper(
        &workspace,
        &[
            &format!("DELETE FROM audit_log WHERE seq > {}", kept.seq),
            &format!(
                "UPDATE audit_head SET last_seq = {}, last_hash = '{}' WHERE id = 1",
                kept.seq, kept.hash
            ),
        ],
    )
    .await;

    // Without a checkpoint the cut cannot be seen, and verify says so.
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text,
        format!(
            "ok: {} audit entries, chain intact, all keyed (keys {})\n\
             not proven: that no newest entries were deleted (the head is kept in the same store); give --checkpoint FILE or a published checkpoint line\n",
            kept.seq,
            mac_key(KEY).id()
        )
    );
    assert_eq!(code, Some(0));

    let deleted = format!(
        "audit entries {} to {last} were deleted: the checkpoint of ",
        kept.seq + 1
    );
    let ends = format!(
        " records entry {last} but the log ends at entry {}",
        kept.seq
    );
    for checkpoint in [file.display().to_string(), format!("audit: `{line}`")] {
        let (text, code) = verify(
            &workspace,
            &[("DECKHAND_AUDIT_KEY", KEY)],
            Some(&checkpoint),
        );
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&deleted) && first.ends_with(&ends),
            "{text}"
        );
        assert_eq!(code, Some(1));
    }
}

#[tokio::test]
async fn a_checkpoint_that_matches_proves_the_log_up_to_it() {
    let workspace = workspace_with_entries().await;
    let env = [
        ("DECKHAND_AUDIT_KEY", KEY),
        ("DECKHAND_CHECKPOINT_KEY", SEED),
    ];
    let checkpointed = workspace.run_with_env(&["audit", "checkpoint"], "", &env);
    let line = stdout(&checkpointed).trim().to_string();
    let at_checkpoint = newest_seq(&workspace).await;
    run_console(&workspace, &[("DECKHAND_AUDIT_KEY", KEY)]);
    let last = newest_seq(&workspace).await;
    let (text, code) = verify(&workspace, &[("DECKHAND_AUDIT_KEY", KEY)], Some(&line));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].starts_with("ok: the checkpoint of ")
            && lines[1].ends_with(&format!(
                "(entry {at_checkpoint}, key {}) matches the log",
                checkpoint_key().id()
            )),
        "{text}"
    );
    assert_eq!(
        lines[2],
        format!(
            "not proven: that no entries after {last} were deleted; entries {} to {last} are newer than the checkpoint",
            at_checkpoint + 1
        )
    );
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn a_checkpoint_with_a_bad_signature_is_refused() {
    let workspace = workspace_with_entries().await;
    let checkpointed = workspace.run_with_env(
        &["audit", "checkpoint"],
        "",
        &[("DECKHAND_CHECKPOINT_KEY", SEED)],
    );
    let line = stdout(&checkpointed).trim().to_string();
    let last = newest_seq(&workspace).await;
    // Claiming an older head, to cover for deleted entries.
    let forged = line.replace(&format!("seq={last} "), &format!("seq={} ", last - 1));
    assert_ne!(forged, line);
    let (text, code) = verify(&workspace, &[("DECKHAND_AUDIT_KEY", KEY)], Some(&forged));
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "the checkpoint's signature does not verify under key {}: the line was altered or forged",
                checkpoint_key().id()
            )
            .as_str()
        )
    );
    assert_eq!(code, Some(1));

    // Signed with a key nobody trusts.
    let untrusted = Workspace::with_config(|text| text);
    let other_seed = "1".repeat(64);
    let other = untrusted.run_with_env(
        &["audit", "checkpoint"],
        "",
        &[("DECKHAND_CHECKPOINT_KEY", other_seed.as_str())],
    );
    assert_eq!(
        stdout(&other),
        "the audit log is empty; there is no head to sign yet\n"
    );
    run_console(&untrusted, &[]);
    let other = untrusted.run_with_env(
        &["audit", "checkpoint"],
        "",
        &[("DECKHAND_CHECKPOINT_KEY", other_seed.as_str())],
    );
    let other_line = stdout(&other).trim().to_string();
    let (text, code) = verify(
        &workspace,
        &[("DECKHAND_AUDIT_KEY", KEY)],
        Some(&other_line),
    );
    let other_id = CheckpointKey::from_seed_text("S", &Secret::new(other_seed.as_str()))
        .expect("seed")
        .id()
        .to_string();
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "the checkpoint is signed by key {other_id}, which is not trusted (trusted: {}); add its public key to [audit] checkpoint_public_keys",
                checkpoint_key().id()
            )
            .as_str()
        )
    );
    assert_eq!(code, Some(1));

    let (text, code) = verify(
        &workspace,
        &[("DECKHAND_AUDIT_KEY", KEY)],
        Some("deckhand-checkpoint v1 seq=1"),
    );
    assert_eq!(
        text,
        "not a checkpoint: it has no sig= (expected `deckhand-checkpoint v1 seq=N mac=HEX at=TIME key=ID sig=SIGNATURE`)\n"
    );
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn export_round_trips_and_verifies_away_from_the_store() {
    let workspace = workspace_with_entries().await;
    let output = workspace.run(&["audit", "export", "--format", "jsonl"], "");
    assert!(output.status.success(), "{}", describe(&output));
    let exported: Vec<_> = stdout(&output)
        .lines()
        .map(|line| audit::from_jsonl_line(line).expect("an exported entry"))
        .collect();
    let app = workspace.app().await;
    let (entries, head_seq, head_hash) = app.store.audit_chain().await.expect("chain");
    app.store.close().await;
    assert_eq!(exported, entries);
    let keys = audit::Keys {
        current: Some(mac_key(KEY)),
        ..audit::Keys::default()
    };
    let report = audit::verify_chain(&exported, head_seq, &head_hash, &keys).expect("intact");
    assert_eq!(report.n_entries, entries.len());
    let first: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().next().expect("a line")).expect("JSON");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev_mac"], "genesis");
    assert_eq!(first["mac_alg"], "hmac-sha256");
    assert_eq!(first["key_id"], mac_key(KEY).id());

    let recent = workspace.run(
        &["audit", "export", "--format", "jsonl", "--since", "1h"],
        "",
    );
    assert_eq!(stdout(&recent), stdout(&output));
    let future = workspace.run(
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
        "",
    );
    assert_eq!(stdout(&future), "");
    assert!(future.status.success());
    let bad = workspace.run(&["audit", "export", "--since", "yesterday"], "");
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr),
        "error: --since \"yesterday\" is neither an RFC 3339 time (2026-11-28T17:00:00Z) nor a duration (90m, 24h, 7d)\n"
    );
    assert_eq!(bad.status.code(), Some(1));
}

#[tokio::test]
async fn a_rotated_key_verifies_with_the_previous_one() {
    let workspace = audit_workspace();
    run_console(&workspace, &[("DECKHAND_AUDIT_KEY", OLD_KEY)]);
    let rotated_at = newest_seq(&workspace).await;
    run_console(
        &workspace,
        &[
            ("DECKHAND_AUDIT_KEY", KEY),
            ("DECKHAND_AUDIT_KEY_PREVIOUS", OLD_KEY),
        ],
    );
    let app = workspace.app().await;
    let (entries, _, _) = app.store.audit_chain().await.expect("chain");
    app.store.close().await;
    assert!(
        entries
            .iter()
            .all(|stored| stored.key_id == mac_key(OLD_KEY).id() || stored.seq > rotated_at)
    );
    assert!(
        entries
            .iter()
            .all(|stored| stored.key_id == mac_key(KEY).id() || stored.seq <= rotated_at)
    );
    let (text, code) = verify(
        &workspace,
        &[
            ("DECKHAND_AUDIT_KEY", KEY),
            ("DECKHAND_AUDIT_KEY_PREVIOUS", OLD_KEY),
        ],
        None,
    );
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "ok: {} audit entries, chain intact, all keyed (keys {}, {})",
                entries.len(),
                mac_key(OLD_KEY).id(),
                mac_key(KEY).id()
            )
            .as_str()
        )
    );
    assert_eq!(code, Some(0));
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text.lines().next(),
        Some(
            format!(
                "audit entry 1 is keyed with key {}, which verify was not given (given: {}): it was re-chained with another key, or the key it was made with is missing from DECKHAND_AUDIT_KEY_PREVIOUS",
                mac_key(OLD_KEY).id(),
                mac_key(KEY).id()
            )
            .as_str()
        )
    );
    assert_eq!(code, Some(1));
}

#[tokio::test]
async fn an_unkeyed_log_keeps_verifying_after_a_key_is_set() {
    let workspace = audit_workspace();
    run_console(&workspace, &[]);
    let unkeyed = newest_seq(&workspace).await;
    run_console(&workspace, &[("DECKHAND_AUDIT_KEY", KEY)]);
    let last = newest_seq(&workspace).await;
    let (text, code) = verify_keyed(&workspace);
    assert_eq!(
        text,
        format!(
            "ok: {last} audit entries, chain intact, entries {} to {last} keyed (keys {})\n\
             not proven: entries 1 to {unkeyed} are unkeyed (plain SHA-256), so anyone who could write the store could have rewritten them\n\
             not proven: that no newest entries were deleted (the head is kept in the same store); give --checkpoint FILE or a published checkpoint line\n",
            unkeyed + 1,
            mac_key(KEY).id()
        )
    );
    assert_eq!(code, Some(0));
}

#[test]
fn check_warns_about_missing_keys_and_refuses_bad_ones() {
    let workspace = Workspace::with_config(without_impersonation);
    let output = workspace.run(&["check"], "");
    assert_eq!(stdout(&output), "ok: 15 commands, 2 environments\n");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "warning: DECKHAND_AUDIT_KEY is not set: audit entries are chained with plain SHA-256, so anyone who can write the store can edit entries and recompute the chain unnoticed\n\
         warning: DECKHAND_CHECKPOINT_KEY is not set: no signed checkpoints are published, so anyone who can write the store can delete the newest audit entries (and move the head back) unnoticed\n"
    );
    assert!(output.status.success());

    let output = workspace.run_with_env(&["check"], "", &[("DECKHAND_AUDIT_KEY", "short")]);
    assert_eq!(
        stdout(&output),
        "DECKHAND_AUDIT_KEY is too short to key the audit chain: 5 bytes, at least 32 (make one with `deckhand audit keygen`)\n1 problem(s) found\n"
    );
    assert_eq!(output.status.code(), Some(1));
    let console = workspace.run_with_env(&["console"], "", &[("DECKHAND_AUDIT_KEY", "short")]);
    assert_eq!(console.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&console.stderr).contains("DECKHAND_AUDIT_KEY is too short"),
        "{}",
        describe(&console)
    );

    let output = workspace.run_with_env(&["check"], "", &[("DECKHAND_CHECKPOINT_KEY", "abc")]);
    assert_eq!(
        stdout(&output),
        "DECKHAND_CHECKPOINT_KEY is not an Ed25519 seed: expected 32 bytes as 64 hex digits or base64 (make one with `deckhand audit keygen`)\n1 problem(s) found\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn keygen_makes_keys_that_check_accepts_without_warnings() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["audit", "keygen"])
        .output()
        .expect("deckhand runs");
    assert!(output.status.success());
    let text = stdout(&output);
    let value_of = |prefix: &str| -> String {
        text.lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} in:\n{text}"))
            .to_string()
    };
    let chain_key = value_of("DECKHAND_AUDIT_KEY=");
    let seed = value_of("DECKHAND_CHECKPOINT_KEY=");
    let public_line = value_of("# checkpoint_public_keys = ");
    assert_ne!(chain_key, seed);
    let workspace = Workspace::with_config(|config| {
        let config = without_impersonation(config);
        format!("{config}\n[audit]\ncheckpoint_public_keys = {public_line}\n")
    });
    let env = [
        ("DECKHAND_AUDIT_KEY", chain_key.as_str()),
        ("DECKHAND_CHECKPOINT_KEY", seed.as_str()),
    ];
    let checked = workspace.run_with_env(&["check"], "", &env);
    assert_eq!(stdout(&checked), "ok: 15 commands, 2 environments\n");
    assert_eq!(String::from_utf8_lossy(&checked.stderr), "");
    let pubkey = workspace.run_with_env(&["audit", "pubkey"], "", &env);
    assert_eq!(
        format!("[\"{}\"]", stdout(&pubkey).trim()),
        public_line,
        "{}",
        describe(&pubkey)
    );
}

/// `deckhand serve` publishes a checkpoint when it starts (and on its
/// timer) to the environment's audit channel and the checkpoint file; the
/// line as posted is what verify takes.
#[tokio::test]
async fn serve_publishes_checkpoints_to_the_audit_channel_and_the_file() {
    const AUDIT_CHANNEL: &str = "1174110679859331099";
    const TOKEN_ENV: &str = "DECKHAND_TEST_DISCORD_TOKEN";
    let peer = DiscordPeer::start().await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let public_key = checkpoint_key().public_key_hex();
    let workspace = Workspace::with_config(|text| {
        format!(
            "{}\n[environments.staging.audit]\ndiscord = \"{AUDIT_CHANNEL}\"\n\n\
             [discord]\nmode = \"gateway\"\ntoken_env = \"{TOKEN_ENV}\"\n\
             application_id = \"{DISCORD_APPLICATION_ID}\"\napi_url = \"{}\"\n\n\
             [audit]\ncheckpoint_file = \"../checkpoints.log\"\ncheckpoint_public_keys = [\"{public_key}\"]\n",
            text.replace(
                "listen = \"127.0.0.1:8088\"",
                &format!("listen = \"127.0.0.1:{port}\"")
            ),
            peer.base_url()
        )
    });
    run_console(&workspace, &[("DECKHAND_AUDIT_KEY", KEY)]);
    let last = newest_seq(&workspace).await;
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["serve", "--config"])
        .arg(workspace.config_path())
        .env(TOKEN_ENV, DISCORD_BOT_TOKEN)
        .env("DECKHAND_AUDIT_KEY", KEY)
        .env("DECKHAND_CHECKPOINT_KEY", SEED)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    let posted = wait_for(
        "a checkpoint in the audit channel",
        Duration::from_secs(60),
        || {
            peer.messages()
                .iter()
                .filter(|message| message.channel_id == AUDIT_CHANNEL)
                .map(|message| message.content().to_string())
                .find(|content| content.starts_with("deckhand-checkpoint v1 "))
        },
    )
    .await;
    serve.kill().await.expect("stop serve");
    assert!(
        posted.starts_with(&format!("deckhand-checkpoint v1 seq={last} mac=")),
        "{posted}"
    );
    let file = std::fs::read_to_string(workspace.dir().join("checkpoints.log"))
        .expect("the checkpoint file");
    assert!(file.lines().any(|line| line == posted), "{file}");
    let (text, code) = verify(&workspace, &[("DECKHAND_AUDIT_KEY", KEY)], Some(&posted));
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|line| line.starts_with("ok: the checkpoint of ")),
        "{text}"
    );
    assert_eq!(code, Some(0));
}

/// Twelve refusals of two people with no role become one line in the audit
/// channel; a refused request from someone with a role is posted at once;
/// the store holds every refusal.
#[tokio::test]
async fn refusals_of_people_with_no_role_reach_the_audit_channel_as_one_summary() {
    let workspace = Workspace::with_config(|text| {
        format!(
            "{text}\n[environments.staging.audit]\nslack = \"C0AUDIT001\"\n\n\
             [environments.production.audit]\nslack = \"C0AUDIT001\"\n\n\
             [audit]\nrefusal_summary_every = \"1s\"\n"
        )
    });
    let app: Arc<App> = workspace.app().await;
    let mut audit_channel = app.outbox.subscribe(Platform::Slack);
    let request = |user: &str, text: &str| Request {
        platform: Platform::Slack,
        user_id: user.to_string(),
        channel: "C0DEPLOYS1".to_string(),
        text: text.to_string(),
        delivery_id: None,
        groups: Vec::new(),
    };
    for _ in 0..10 {
        flow::handle_request(&app, request("U0STRANGE1", "/deploy staging v2")).await;
    }
    for _ in 0..2 {
        flow::handle_request(&app, request("U0STRANGE2", "/deploy staging v2")).await;
    }
    flow::handle_request(&app, request("U0ERIN001", "/deploy production v2")).await;

    let mut lines = Vec::new();
    while let Ok(message) = audit_channel.try_recv() {
        lines.push(message);
    }
    let [Outbound::Audit { text, channel, .. }] = lines.as_slice() else {
        panic!("only erin's refusal is posted at once: {lines:#?}");
    };
    assert_eq!(channel, "C0AUDIT001");
    assert!(text.contains("erin refused /deploy production"), "{text}");

    tokio::spawn(audit::run_refusal_summaries(
        Arc::clone(&app),
        app.shutdown_signal(),
    ));
    let summary = tokio::time::timeout(Duration::from_secs(30), audit_channel.recv())
        .await
        .expect("a summary within the deadline")
        .expect("the outbox is open");
    assert_eq!(
        summary,
        Outbound::Audit {
            platform: Platform::Slack,
            channel: "C0AUDIT001".to_string(),
            text: "12 requests refused in staging from people with no role in the last 1s: slack:U0STRANGE1 ×10, slack:U0STRANGE2 ×2".to_string(),
        }
    );
    let entries = app.store.audit_entries(None, 50).await.expect("audit");
    assert_eq!(
        entries
            .iter()
            .filter(|stored| stored.entry.event == "refused")
            .count(),
        13
    );
    app.request_shutdown();
    app.store.close().await;
}

/// The shipped config with the console's impersonation off, as shipped, so
/// `check` has nothing to say about it.
fn without_impersonation(config: String) -> String {
    format!("{config}\n[console]\nimpersonation = false\n")
}
