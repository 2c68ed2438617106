//! Context for the on-call engineer: the environment's last deploy and last rollback,
//! who made them and when, and whether the incident started soon after one, in which
//! case rolling back is the first thing to consider.

use chrono::{DateTime, Utc};

use crate::store::{Release, StoreError};

use super::{Check, Finding, Status, Subject};

/// The newest change of one kind: its operation, releases and time.
struct LastChange {
    op_id: i64,
    releases: Vec<Release>,
    at: DateTime<Utc>,
}

/// The last deploy and rollback, and whether the incident followed one closely.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let (deploy, rollback) = tokio::join!(
        last_change(subject, "deploy"),
        last_change(subject, "rollback")
    );
    let (deploy, rollback) = match (deploy, rollback) {
        (Ok(deploy), Ok(rollback)) => (deploy, rollback),
        (Err(error), _) | (_, Err(error)) => {
            return Finding::new(
                Check::Context,
                Status::Warn,
                format!("cannot read the release history: {error}"),
            );
        }
    };
    let started = subject.incident_started.unwrap_or(subject.now);
    let window = chrono::Duration::from_std(subject.environment.diagnose.recent_deploy_window)
        .unwrap_or(chrono::Duration::MAX);
    let evidence = vec![
        describe("deploy", deploy.as_ref(), started),
        describe("rollback", rollback.as_ref(), started),
    ];
    let newest = [("deploy", &deploy), ("rollback", &rollback)]
        .into_iter()
        .filter_map(|(kind, change)| change.as_ref().map(|change| (kind, change)))
        .max_by_key(|(_, change)| change.at);
    let finding = match newest {
        Some((kind, change)) if change.at <= started && started - change.at <= window => {
            let minutes = (started - change.at).num_minutes();
            let who = change
                .releases
                .first()
                .map(|release| release.actor.as_str())
                .unwrap_or("someone");
            let summary = format!(
                "started {minutes} min after {kind} #{} by {who}",
                change.op_id
            );
            let fix = (kind == "deploy").then(|| rollback_command(subject, change));
            Finding::new(Check::Context, Status::Warn, summary).with_fix(fix)
        }
        Some((kind, change)) => Finding::ok(
            Check::Context,
            format!(
                "last {kind} #{} at {}, not within {} min before",
                change.op_id,
                change.at.format("%Y-%m-%d %H:%M UTC"),
                window.num_minutes()
            ),
        ),
        None => Finding::ok(Check::Context, "no deploy or rollback recorded"),
    };
    finding.with_evidence(evidence)
}

async fn last_change(subject: &Subject<'_>, kind: &str) -> Result<Option<LastChange>, StoreError> {
    let Some(op_id) = subject
        .store
        .last_release_operation(subject.env(), kind)
        .await?
    else {
        return Ok(None);
    };
    let releases = subject.store.releases_of_operation(op_id).await?;
    let Some(at) = releases.iter().map(|release| release.created_at).max() else {
        return Ok(None);
    };
    Ok(Some(LastChange {
        op_id,
        releases,
        at,
    }))
}

/// `/rollback ENV SERVICE` for a one-service deploy, `/rollback ENV` for several.
fn rollback_command(subject: &Subject<'_>, change: &LastChange) -> String {
    match change.releases.as_slice() {
        [release] => format!("/rollback {} {}", subject.env(), release.service),
        _ => format!("/rollback {}", subject.env()),
    }
}

/// `last deploy: #12 by alice at 09:10 UTC, backend → …:v2 (develop), 8 min before`.
fn describe(kind: &str, change: Option<&LastChange>, started: DateTime<Utc>) -> String {
    let Some(change) = change else {
        return format!("last {kind}: none recorded");
    };
    let who = change
        .releases
        .first()
        .map(|release| release.actor.as_str())
        .unwrap_or("someone");
    let services: Vec<String> = change
        .releases
        .iter()
        .map(|release| {
            let git_ref = release
                .git_ref
                .as_deref()
                .map(|git_ref| format!(" ({git_ref})"))
                .unwrap_or_default();
            format!("{} → {}{git_ref}", release.service, release.image_after)
        })
        .collect();
    let relative = if change.at <= started {
        format!("{} min before", (started - change.at).num_minutes())
    } else {
        format!("{} min after", (change.at - started).num_minutes())
    };
    format!(
        "last {kind}: #{} by {who} at {}, {}, {relative}",
        change.op_id,
        change.at.format("%Y-%m-%d %H:%M UTC"),
        services.join(", ")
    )
}
