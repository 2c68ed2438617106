//! `deckhand console` end to end through piped stdin: policy refusals,
//! holds, approvals by the right people only, and a clean exit.

use crate::support::workspace::{Workspace, stdout};

#[test]
fn console_runs_a_script_of_requests_and_approvals() {
    let workspace = Workspace::shipped();
    let script = "\
/deploy production develop
/lock staging \"release freeze until Monday\" --for 2h
/deploy staging develop
/deploy staging 'develop; rm -rf /'
/deplyo staging develop
:as carol
/rollback-db staging
:approve 2
:as erin
:approve 2
:as dave
:approve 2
:approve 2
:as alice
:reject 2
:as carol
:reject 2
:as bob
/unlock staging
:approve nine
:dance
";
    let output = workspace.run(&["console", "--as", "erin"], script);
    let text = stdout(&output);
    let expected = [
        "[only you] ❌ /deploy refused\n  you need role deployers to run /deploy in production",
        "[#1 edited] ✅ Lock #1 · staging \"release freeze until Monday\" --for 2h · @erin",
        "[only you] ❌ /deploy refused\n  staging is locked by erin since ",
        "[only you] ❌ /deploy refused\n  <ref> \"develop; rm -rf /\" contains ;, which is shell syntax and never accepted",
        "[only you] ❌ Request refused\n  unknown command /deplyo; did you mean /deploy?",
        "[#2] ⏳ Rollback-db #2 · staging · @carol\n  awaiting approval: 0 of 2 from role dba (not @carol)",
        "⚠ warning: data loss may occur: the last migration is reverted (a backup is taken first)",
        "[Approve: :approve 2] [Reject: :reject 2]",
        "[only you] ✗ you requested #2, so you cannot approve it; someone else with role dba must",
        "[only you] ✗ you need role dba to approve #2",
        "[#2 edited] ⏳ Rollback-db #2 · staging · @carol\n  awaiting approval: 1 of 2 from role dba (not @carol)",
        "approved by: @dave",
        "[only you] ✓ you approved #2 (1 of 2 approvals)",
        "[only you] ✗ you already approved #2; one person counts once (1 of 2 approvals)",
        "[only you] ✗ you need role dba to reject #2",
        "[#2 edited] ⚠ Rollback-db #2 · staging · @carol\n  cancelled by carol — nothing was run",
        "[only you] ✓ you cancelled #2; it will not run",
        "[only you] ✗ \"nine\" is not an operation number such as 42",
        "[only you] ❌ Not understood\n  \":dance\": lines start with / (a command)",
    ];
    for fragment in expected {
        assert!(text.contains(fragment), "missing {fragment:?} in:\n{text}");
    }
    assert!(output.status.success(), "console exits 0:\n{text}");
}

#[test]
fn holds_refuse_deploys_until_unlocked() {
    let workspace = Workspace::shipped();
    let script = "\
/lock staging \"release freeze\" --for 2h
/deploy staging develop --dry-run
/unlock staging
/unlock staging
";
    let output = workspace.run(&["console", "--as", "alice"], script);
    let text = stdout(&output);
    let expected = [
        "✓ lock (",
        "staging is locked until ",
        "[only you] ❌ /deploy refused\n  staging is locked by alice since ",
        ": \"release freeze\"; /unlock staging to release it",
        "✓ unlock (",
        "staging is unlocked (released hold by alice: \"release freeze\")",
        "failed: unlock failed: staging is not locked; nothing to release",
    ];
    for fragment in expected {
        assert!(text.contains(fragment), "missing {fragment:?} in:\n{text}");
    }
    let audit = workspace.run(&["audit", "list", "--env", "staging"], "");
    let audit = stdout(&audit);
    let me = os_user();
    for event in [
        format!("alice (os:{me}) held /lock staging"),
        format!("alice (os:{me}) refused /deploy staging"),
        format!("alice (os:{me}) released /unlock staging"),
    ] {
        assert!(audit.contains(&event), "missing {event:?} in:\n{audit}");
    }
    let verify = workspace.run(&["audit", "verify"], "");
    assert!(stdout(&verify).starts_with("ok: "), "{}", stdout(&verify));
}

/// The operating-system user running the tests, as the console sees it.
fn os_user() -> String {
    deckhand::identity::os_user().expect("the test user has a passwd entry")
}

#[test]
fn the_console_is_the_os_user_and_acts_as_others_only_when_config_allows() {
    let me = os_user();
    let workspace = Workspace::with_config(|text| {
        format!(
            "{}\n[console]\nimpersonation = false\n",
            text.replace("console = \"alice\"", &format!("console = \"{me}\""))
        )
    });
    let output = workspace.run(&["console"], "/lock staging \"freeze\" --for 1h\n:as bob\n");
    let text = stdout(&output);
    for fragment in [
        "✅ Lock #1 · staging freeze --for 1h · @alice",
        &format!(
            "[only you] ✗ cannot act as \"bob\": [console] impersonation is off, so the console acts as the operating-system user running it ({me}, mapped through [[users]] console = \"{me}\")"
        ),
    ] {
        assert!(text.contains(fragment), "missing {fragment:?} in:\n{text}");
    }
    let refused = workspace.run(&["console", "--as", "bob"], "/unlock staging\n");
    assert!(!refused.status.success(), "--as is refused");
    let errors = String::from_utf8_lossy(&refused.stderr);
    assert!(
        errors.contains("cannot act as \"bob\": [console] impersonation is off"),
        "{errors}"
    );
    let audit = stdout(&workspace.run(&["audit", "list"], ""));
    assert!(
        audit.contains(&format!("alice (os:{me}) held /lock staging")),
        "{audit}"
    );
    assert!(
        !audit.contains("released"),
        "bob unlocked nothing:\n{audit}"
    );
}

#[test]
fn an_impersonating_console_names_the_os_user_in_every_audit_entry() {
    let me = os_user();
    let workspace = Workspace::shipped();
    let script = "/rollback-db staging\n:as dave\n:approve 1\n:withdraw 1\n:as frank\n:reject 1\n";
    let output = workspace.run(&["console", "--as", "carol"], script);
    assert!(output.status.success(), "{}", stdout(&output));
    let audit = stdout(&workspace.run(&["audit", "list"], ""));
    for entry in [
        format!("carol (os:{me}) requested /rollback-db staging op #1"),
        format!("dave (os:{me}) approved /rollback-db staging op #1"),
        format!("dave (os:{me}) approval-withdrawn /rollback-db staging op #1"),
        format!("frank (os:{me}) rejected /rollback-db staging op #1"),
    ] {
        assert!(audit.contains(&entry), "missing {entry:?} in:\n{audit}");
    }
}

#[tokio::test]
async fn the_console_acts_on_slack_operations_only_when_config_allows() {
    let request = deckhand::chat::Request {
        platform: deckhand::names::Platform::Slack,
        user_id: "U0CAROL01".to_string(),
        channel: "C0DEPLOYS1".to_string(),
        text: "/rollback-db staging".to_string(),
        delivery_id: None,
        groups: Vec::new(),
    };
    for (cross_platform, expected) in [
        (
            false,
            "[only you] ✗ #1 was requested from slack; the console acts only on operations requested from the console ([console] cross_platform is off)",
        ),
        (true, "[only you] ✓ you approved #1 (1 of 2 approvals)"),
    ] {
        let workspace = Workspace::with_config(|text| {
            format!("{text}\n[console]\nimpersonation = true\ncross_platform = {cross_platform}\n")
        });
        let app = workspace.app().await;
        let answer = deckhand::flow::handle_request(&app, request.clone()).await;
        assert_eq!(answer, deckhand::chat::Answer::Accepted { op_id: 1 });
        app.store.close().await;
        let output = workspace.run(&["console", "--as", "dave"], ":approve 1\n");
        let text = stdout(&output);
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        let app = workspace.app().await;
        let approvals = app.store.approvals(1).await.expect("the store answers");
        assert_eq!(
            approvals.len(),
            usize::from(cross_platform),
            "{approvals:?}"
        );
    }
}
