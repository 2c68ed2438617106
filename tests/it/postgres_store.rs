//! The store on PostgreSQL: the same code path and the same migrations as
//! SQLite, against a real PostgreSQL 15 (the demo's image, in a labelled
//! container): operations, approvals, locks, holds, releases, dedupe and
//! the audit chain, driven through the request flow and the binary.

use chrono::Utc;
use deckhand::chat::Answer;
use deckhand::flow::{self, Sender};
use deckhand::names::Platform;
use deckhand::policy::OpState;
use deckhand::store::NewRelease;

use crate::support::docker::{TestDocker, start_postgres};
use crate::support::workspace::{Workspace, console_request, stdout};

#[tokio::test]
async fn the_store_works_the_same_on_postgresql() {
    let docker = TestDocker::start("the_store_works_the_same_on_postgresql").await;
    let url = start_postgres(&docker).await;
    let workspace = Workspace::with_config(|text| {
        text.replace(
            "url = \"sqlite://deckhand.db\"",
            &format!("url = \"{url}\""),
        )
    });
    let app = workspace.app().await;

    let answer = flow::handle_request(&app, console_request("carol", "/rollback-db staging")).await;
    let Answer::Accepted { op_id } = answer else {
        panic!("{answer:?}")
    };
    let dave = Sender::identify(&app, Platform::Console, "dave", "console");
    let first = flow::approve(&app, &dave, op_id, None).await;
    assert_eq!(
        first.text,
        format!("you approved #{op_id} (1 of 2 approvals)")
    );
    let again = flow::approve(&app, &dave, op_id, None).await;
    assert!(
        again.text.starts_with("you already approved"),
        "{}",
        again.text
    );
    let carol = Sender::identify(&app, Platform::Console, "carol", "console");
    let cancelled = flow::reject(&app, &carol, op_id).await;
    assert!(cancelled.applied, "{}", cancelled.text);
    assert_eq!(
        app.store
            .operation(op_id)
            .await
            .expect("read")
            .expect("exists")
            .state,
        OpState::Cancelled
    );

    let now = Utc::now();
    assert_eq!(
        app.store
            .try_lock("staging", 500, "deploy", "alice", now)
            .await
            .expect("lock"),
        None
    );
    let holder = app
        .store
        .try_lock("staging", 501, "deploy", "bob", now)
        .await
        .expect("lock")
        .expect("held");
    assert_eq!(holder.op_id, 500);
    let busy = flow::handle_request(&app, console_request("bob", "/lock staging \"freeze\"")).await;
    let Answer::Private(reply) = busy else {
        panic!("{busy:?}")
    };
    assert!(
        reply.status.starts_with("busy: #500 deploy by alice"),
        "{}",
        reply.status
    );
    app.store.unlock("staging", 500).await.expect("unlock");

    assert!(
        app.store
            .first_delivery("slack:Ev1", now)
            .await
            .expect("dedupe")
    );
    assert!(
        !app.store
            .first_delivery("slack:Ev1", now)
            .await
            .expect("dedupe")
    );

    let release = NewRelease {
        env: "staging".to_string(),
        service: "backend".to_string(),
        op_id: 7,
        kind: "deploy".to_string(),
        git_ref: Some("v2".to_string()),
        image_before: Some("backend:v1".to_string()),
        digest_before: None,
        image_after: "backend:v2".to_string(),
        digest_after: Some("sha256:abc".to_string()),
        actor: "alice".to_string(),
        created_at: now,
    };
    let id = app.store.insert_release(&release).await.expect("release");
    let stored = app
        .store
        .releases("staging", "backend", 5)
        .await
        .expect("releases");
    assert_eq!(
        (stored.len(), stored[0].id, stored[0].image_after.as_str()),
        (1, id, "backend:v2")
    );
    app.store.close().await;

    let output = workspace.run(
        &["console", "--as", "alice"],
        "/lock staging \"freeze\" --for 1h\n/deploy staging v2\n/unlock staging\n",
    );
    let text = stdout(&output);
    assert!(text.contains("staging is locked by alice since"), "{text}");
    assert!(text.contains("staging is unlocked"), "{text}");
    let verify = workspace.run(&["audit", "verify"], "");
    assert!(stdout(&verify).starts_with("ok: "), "{}", stdout(&verify));
    assert!(verify.status.success());
}
