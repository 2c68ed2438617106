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
    for event in [
        "alice held /lock staging",
        "alice refused /deploy staging",
        "alice released /unlock staging",
    ] {
        assert!(audit.contains(event), "missing {event:?} in:\n{audit}");
    }
    let verify = workspace.run(&["audit", "verify"], "");
    assert!(stdout(&verify).starts_with("ok: "), "{}", stdout(&verify));
}
