//! The audit log is hash-chained: `deckhand audit verify` names the first
//! entry that was altered, deleted or reordered by hand.

use crate::support::workspace::{Workspace, stdout};

/// A workspace with a few audit entries.
async fn workspace_with_entries() -> Workspace {
    let workspace = Workspace::shipped();
    let output = workspace.run(
        &["console", "--as", "alice"],
        "/help\n/deplyo\n/lock staging \"freeze\"\n/unlock staging\n",
    );
    assert!(output.status.success());
    let verify = workspace.run(&["audit", "verify"], "");
    assert!(stdout(&verify).starts_with("ok: "), "{}", stdout(&verify));
    workspace
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

fn verify(workspace: &Workspace) -> (String, Option<i32>) {
    let output = workspace.run(&["audit", "verify"], "");
    (stdout(&output), output.status.code())
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
        verify(&workspace),
        (
            "audit entry 3 was altered: its contents do not match its hash\n".to_string(),
            Some(1)
        )
    );
}

#[tokio::test]
async fn a_deleted_entry_is_named() {
    let workspace = workspace_with_entries().await;
    tamper(&workspace, &["DELETE FROM audit_log WHERE seq = 4"]).await;
    assert_eq!(
        verify(&workspace),
        (
            "audit entry 4 was deleted: entry 5 follows entry 3\n".to_string(),
            Some(1)
        )
    );
}

#[tokio::test]
async fn deleting_the_newest_entry_is_detected() {
    let workspace = workspace_with_entries().await;
    let app = workspace.app().await;
    let (entries, _, _) = app.store.audit_chain().await.expect("chain");
    app.store.close().await;
    let last = entries.last().expect("entries").seq;
    tamper(
        &workspace,
        &[&format!("DELETE FROM audit_log WHERE seq = {last}")],
    )
    .await;
    assert_eq!(
        verify(&workspace),
        (
            format!(
                "audit entry {last} was deleted: the chain head records it but the log ends at entry {}\n",
                last - 1
            ),
            Some(1)
        )
    );
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
    assert_eq!(
        verify(&workspace),
        (
            "audit entry 2 is out of place: it does not follow entry 1 (entries were reordered or rewritten)\n".to_string(),
            Some(1)
        )
    );
}

#[tokio::test]
async fn a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link() {
    let workspace = workspace_with_entries().await;
    let app = workspace.app().await;
    let (entries, _, _) = app.store.audit_chain().await.expect("chain");
    let mut forged = entries[2].entry.clone();
    forged.actor = "mallory".to_string();
    let forged_hash = deckhand::audit::chain_hash(&entries[2].prev_hash, &forged);
    app.store.close().await;
    tamper(
        &workspace,
        &[&format!(
            "UPDATE audit_log SET actor = 'mallory', hash = '{forged_hash}' WHERE seq = 3"
        )],
    )
    .await;
    assert_eq!(
        verify(&workspace),
        (
            "audit entry 4 is out of place: it does not follow entry 3 (entries were reordered or rewritten)\n".to_string(),
            Some(1)
        )
    );
}
