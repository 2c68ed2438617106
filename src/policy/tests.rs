use std::path::Path;

use chrono::{Duration, TimeZone, Utc};

use super::*;
use crate::catalog::Catalog;
use crate::config::Config;

fn shipped() -> (Config, Catalog) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("config/deckhand.toml")).expect("shipped config is valid");
    let catalog = Catalog::load(&config).expect("shipped commands are valid");
    (config, catalog)
}

/// Runs `check_request` and renders the grant or the refusal as text.
fn check_request_case(command: &str, env: Option<&str>, user: Option<&str>, expected: &str) {
    let (config, catalog) = shipped();
    let spec = catalog.get(command).expect("command exists");
    let env = env.map(|name| config.environments[name].name.clone());
    let user = user.and_then(|name| config.user_named(name));
    let actual = match check_request(spec, env.as_ref(), user, &config) {
        Ok(grant) => format!(
            "ok approvals={} approvers={} expires={}",
            grant.approvals,
            grant
                .approvers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            crate::duration::format_duration(grant.expires)
        ),
        Err(error) => error.to_string(),
    };
    assert_eq!(actual, expected, "/{command} {env:?} by {user:?}");
}

#[test]
fn request_matrix() {
    let cases = [
        (
            "deploy",
            Some("staging"),
            Some("erin"),
            "ok approvals=0 approvers= expires=30m",
        ),
        (
            "deploy",
            Some("production"),
            Some("erin"),
            "you need role deployers to run /deploy in production",
        ),
        (
            "deploy",
            Some("production"),
            Some("alice"),
            "ok approvals=1 approvers=deployers expires=30m",
        ),
        (
            "rollback-db",
            Some("staging"),
            Some("carol"),
            "ok approvals=2 approvers=dba expires=1h",
        ),
        (
            "rollback-db",
            Some("production"),
            Some("erin"),
            "you need role dba or deployers to run /rollback-db in production",
        ),
        (
            "restore-db",
            Some("staging"),
            Some("alice"),
            "you need role dba to run /restore-db in staging",
        ),
        (
            "status",
            None,
            None,
            "ok approvals=0 approvers= expires=30m",
        ),
        (
            "health",
            Some("production"),
            None,
            "ok approvals=0 approvers= expires=30m",
        ),
        (
            "logs",
            Some("staging"),
            None,
            "you have no role in Deckhand, so you may run only /help, /status, /health; ask an admin to add you to config/deckhand.toml",
        ),
        (
            "deploy",
            Some("staging"),
            None,
            "you have no role in Deckhand, so you may run only /help, /status, /health; ask an admin to add you to config/deckhand.toml",
        ),
        (
            "logs",
            Some("staging"),
            Some("erin"),
            "ok approvals=0 approvers= expires=30m",
        ),
        (
            "service",
            Some("production"),
            Some("erin"),
            "you need role oncall or deployers to run /service in production",
        ),
    ];
    for (command, env, user, expected) in cases {
        check_request_case(command, env, user, expected);
    }
}

fn user(config: &Config, name: &str) -> User {
    config.user_named(name).expect("user exists").clone()
}

fn record(approver: &str, hash: &str, withdrawn: bool) -> ApprovalRecord {
    ApprovalRecord {
        approver: UserName::new(approver),
        params_hash: hash.to_string(),
        withdrawn,
        platform: Platform::Slack,
        account: None,
    }
}

#[test]
fn approval_matrix() {
    let (config, _) = shipped();
    let now = Utc
        .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .single()
        .expect("valid time");
    let roles = [RoleName::new("deployers")];
    let approvals = [record("bob", "h1", false)];
    let base = ApprovalView {
        op_id: 42,
        state: OpState::Pending,
        requester: "alice",
        params_hash: "h1",
        expires_at: Some(now + Duration::minutes(30)),
        needed: 2,
        approver_roles: &roles,
        approvals: &[],
        queued: false,
        requester_platform: Platform::Slack,
        requester_listed: true,
        lapsed: &[],
        unlisted_approvers: false,
    };
    let check = |view: &ApprovalView<'_>, who: Option<&str>, hash: &str, at, expected: &str| {
        let approver = who.map(|name| user(&config, name));
        let approver = approver.as_ref().map(|user| Approver {
            user,
            platform: Platform::Slack,
            listed: true,
        });
        let actual = match check_approval(view, approver, hash, at) {
            Ok(()) => "ok".to_string(),
            Err(error) => error.to_string(),
        };
        assert_eq!(actual, expected, "approval by {who:?}");
    };
    check(&base, Some("bob"), "h1", now, "ok");
    check(
        &base,
        Some("alice"),
        "h1",
        now,
        "you requested #42, so you cannot approve it; someone else with role deployers must",
    );
    check(
        &base,
        Some("erin"),
        "h1",
        now,
        "you need role deployers to approve #42",
    );
    check(
        &base,
        None,
        "h1",
        now,
        "you need role deployers to approve #42",
    );
    check(
        &base,
        Some("bob"),
        "h2",
        now,
        "that approval was for other parameters than #42 has; nothing was approved",
    );
    check(
        &base,
        Some("bob"),
        "h1",
        now + Duration::minutes(30),
        "#42 expired at 10:30 UTC and will not run; request it again",
    );
    let with_bob = ApprovalView {
        approvals: &approvals,
        ..base.clone()
    };
    check(
        &with_bob,
        Some("bob"),
        "h1",
        now,
        "you already approved #42; one person counts once (1 of 2 approvals)",
    );
    let running = ApprovalView {
        state: OpState::Running,
        ..base.clone()
    };
    check(
        &running,
        Some("bob"),
        "h1",
        now,
        "#42 is not waiting for approval: it is running",
    );
}

/// Approvals by people config cannot tell apart from the requester.
#[test]
fn unlisted_accounts_may_not_approve_unless_config_opts_in() {
    let (config, _) = shipped();
    let now = Utc
        .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .single()
        .expect("valid time");
    let roles = [RoleName::new("deployers")];
    let listed_requester = ApprovalView {
        op_id: 5,
        state: OpState::Pending,
        requester: "alice",
        params_hash: "h1",
        expires_at: None,
        needed: 1,
        approver_roles: &roles,
        approvals: &[],
        queued: false,
        requester_platform: Platform::Slack,
        requester_listed: true,
        lapsed: &[],
        unlisted_approvers: false,
    };
    let unlisted_requester = ApprovalView {
        requester: "slack:U0GROUP01",
        requester_listed: false,
        ..listed_requester.clone()
    };
    let group_member = User {
        name: UserName::new("discord:100000000000000009"),
        roles: vec![RoleName::new("deployers")],
        console: None,
        slack: None,
        discord: None,
    };
    let bob = user(&config, "bob");
    let bob_without_slack = User {
        slack: None,
        ..bob.clone()
    };
    let cases: [(&ApprovalView<'_>, &User, Platform, bool, &str); 5] = [
        (&listed_requester, &bob, Platform::Discord, true, "ok"),
        (
            &listed_requester,
            &group_member,
            Platform::Discord,
            false,
            "you hold your role only through a discord group and config does not list your discord account, so you may request but not approve #5; ask an admin to add your discord id to [[users]] in config/deckhand.toml",
        ),
        (&unlisted_requester, &bob, Platform::Discord, true, "ok"),
        (
            &unlisted_requester,
            &bob_without_slack,
            Platform::Discord,
            true,
            "#5 was requested by slack:U0GROUP01, a slack account config does not list, and config lists no slack account of yours, so it cannot tell you from the requester; someone listed with a slack id must approve",
        ),
        (
            &ApprovalView {
                unlisted_approvers: true,
                ..listed_requester.clone()
            },
            &group_member,
            Platform::Discord,
            false,
            "ok",
        ),
    ];
    for (view, approver, platform, listed, expected) in cases {
        let approver = Approver {
            user: approver,
            platform,
            listed,
        };
        let actual = match check_approval(view, Some(approver), "h1", now) {
            Ok(()) => "ok".to_string(),
            Err(error) => error.to_string(),
        };
        assert_eq!(actual, expected, "{} approving", approver.user.name);
    }
}

#[test]
fn the_console_acts_on_other_platforms_operations_only_when_allowed() {
    let cases = [
        (Platform::Console, Platform::Console, false, "ok"),
        (Platform::Slack, Platform::Slack, false, "ok"),
        (Platform::Console, Platform::Slack, false, "ok"),
        (
            Platform::Slack,
            Platform::Console,
            false,
            "#3 was requested from slack; the console acts only on operations requested from the console ([console] cross_platform is off)",
        ),
        (Platform::Slack, Platform::Console, true, "ok"),
    ];
    for (requested_on, acting_from, allowed, expected) in cases {
        let actual = match check_reach(3, requested_on, acting_from, allowed) {
            Ok(()) => "ok".to_string(),
            Err(error) => error.to_string(),
        };
        assert_eq!(
            actual, expected,
            "{requested_on} acted on from {acting_from}"
        );
    }
}

#[test]
fn counts_distinct_current_approvals_for_the_exact_parameters() {
    let roles = [RoleName::new("dba")];
    let approvals = [
        record("carol", "h1", false),
        record("carol", "h1", false),
        record("dave", "h1", true),
        record("bob", "h0", false),
        record("alice", "h1", false),
    ];
    let view = ApprovalView {
        op_id: 7,
        state: OpState::Pending,
        requester: "alice",
        params_hash: "h1",
        expires_at: None,
        needed: 2,
        approver_roles: &roles,
        approvals: &approvals,
        queued: false,
        requester_platform: Platform::Slack,
        requester_listed: true,
        lapsed: &[],
        unlisted_approvers: false,
    };
    assert_eq!(
        view.count(),
        1,
        "carol once; dave withdrew; bob approved other parameters; alice is the requester"
    );
    assert!(!view.is_approved());
    let lapsed = [UserName::new("carol")];
    let carol_lost_the_role = ApprovalView {
        lapsed: &lapsed,
        ..view
    };
    assert_eq!(
        carol_lost_the_role.count(),
        0,
        "an approver who lost the role no longer counts"
    );
}

#[test]
fn rejection_and_withdrawal() {
    let (config, _) = shipped();
    let now = Utc
        .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .single()
        .expect("valid time");
    let roles = [RoleName::new("deployers")];
    let approvals = [record("bob", "h1", false)];
    let view = ApprovalView {
        op_id: 9,
        state: OpState::Pending,
        requester: "alice",
        params_hash: "h1",
        expires_at: None,
        needed: 1,
        approver_roles: &roles,
        approvals: &approvals,
        queued: false,
        requester_platform: Platform::Slack,
        requester_listed: true,
        lapsed: &[],
        unlisted_approvers: false,
    };
    assert_eq!(
        check_rejection(&view, Some(&user(&config, "bob")), now),
        Ok(Refusal::Rejected)
    );
    assert_eq!(
        check_rejection(&view, Some(&user(&config, "alice")), now),
        Ok(Refusal::Cancelled)
    );
    assert_eq!(
        check_rejection(&view, Some(&user(&config, "erin")), now)
            .map_err(|error| error.to_string()),
        Err("you need role deployers to reject #9".to_string())
    );
    assert_eq!(check_withdrawal(&view, &user(&config, "bob")), Ok(()));
    assert_eq!(
        check_withdrawal(&view, &user(&config, "carol")).map_err(|error| error.to_string()),
        Err("you have no approval of #9 to withdraw".to_string())
    );
    let started = ApprovalView {
        state: OpState::Running,
        ..view
    };
    assert_eq!(
        check_withdrawal(&started, &user(&config, "bob")).map_err(|error| error.to_string()),
        Err("too late: #9 already started".to_string())
    );
    let expired = ApprovalView {
        state: OpState::Expired,
        ..view.clone()
    };
    assert_eq!(
        check_withdrawal(&expired, &user(&config, "bob")).map_err(|error| error.to_string()),
        Err("#9 is not waiting for approval: it is expired".to_string())
    );
    let queued = ApprovalView {
        state: OpState::Approved,
        queued: true,
        ..view
    };
    assert_eq!(
        check_rejection(&queued, Some(&user(&config, "alice")), now),
        Ok(Refusal::Cancelled),
        "the requester calls a queued operation off"
    );
    assert_eq!(
        check_rejection(&queued, Some(&user(&config, "bob")), now),
        Ok(Refusal::Rejected),
        "an approver can still reject a queued operation"
    );
}

#[test]
fn state_machine_allows_only_documented_transitions() {
    use OpState::*;
    let allowed = [
        (Pending, Approved),
        (Pending, Rejected),
        (Pending, Expired),
        (Pending, Cancelled),
        (Approved, Running),
        (Approved, Cancelled),
        (Approved, Rejected),
        (Running, Succeeded),
        (Running, Failed),
        (Running, RolledBack),
        (Running, Interrupted),
    ];
    for (from, to) in allowed {
        assert!(from.can_become(to), "{from} → {to}");
    }
    let refused = [
        (Expired, Running),
        (Rejected, Running),
        (Cancelled, Running),
        (Pending, Running),
        (Succeeded, Running),
        (Running, Pending),
        (Failed, Succeeded),
    ];
    for (from, to) in refused {
        assert!(!from.can_become(to), "{from} → {to}");
    }
    for state in OpState::ALL {
        assert_eq!(OpState::from_name(state.as_str()), Some(state));
    }
}
