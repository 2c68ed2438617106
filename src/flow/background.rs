//! What every process does in the background while it runs (`serve`, the
//! console, the demo): renews the leases of the operations it owns,
//! publishes changes other replicas made to its operations, starts its
//! approved operations (approved elsewhere, or taken over), takes over
//! operations whose owner's lease lapsed (settling a running one to the
//! old or the new version, marking it interrupted and releasing its lock),
//! expires requests nobody approved in time, audits holds that lapse, and
//! forgets old deliveries. On PostgreSQL the change feed wakes it at once;
//! otherwise it polls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::audit::{self, AuditContext, AuditEvent};
use crate::events::{self, Change};
use crate::exec;
use crate::names::{DECKHAND_ACTOR, Platform};
use crate::policy::OpState;
use crate::store::{OperationRecord, StoreError};

use super::request::record_alone;

/// How often the loop looks for work when nothing wakes it.
const POLL: Duration = Duration::from_millis(250);
/// How often orphans, expired requests and lapsed holds are swept (expired
/// leases are looked for at every poll, so a takeover follows a lapse
/// closely).
const SWEEP: Duration = Duration::from_secs(1);
/// How often what earlier recoveries could not settle is tried again.
const RESETTLE: Duration = Duration::from_secs(30);
/// How often old deliveries are forgotten.
const PRUNE: Duration = Duration::from_secs(3600);

/// Starts the background work: recovery now (operations whose owner's lease
/// lapsed are taken over), then the loop until shutdown.
pub async fn start_background(app: &Arc<App>) {
    sweep_once(app).await;
    tokio::spawn(audit::run_checkpoints(
        Arc::clone(app),
        app.shutdown_signal(),
    ));
    tokio::spawn(audit::run_refusal_summaries(
        Arc::clone(app),
        app.shutdown_signal(),
    ));
    if let Some(feed) = open_feed(app).await {
        let listener = Arc::clone(app);
        let mut shutdown = app.shutdown_signal();
        tokio::spawn(async move {
            let mut feed = feed;
            loop {
                tokio::select! {
                    changed = feed.next() => {
                        if let Err(error) = changed {
                            tracing::warn!(error = %error, "the change feed failed; polling meanwhile");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        listener.wake.notify_one();
                    }
                    _ = shutdown.changed() => return,
                }
            }
        });
    }
    let looping = Arc::clone(app);
    tokio::spawn(async move { run_loop(looping).await });
}

/// Takes over what a previous process left (operations whose owner's lease
/// lapsed) and does one round of the background work. Called at start.
pub async fn recover_interrupted(app: &Arc<App>) {
    sweep_once(app).await;
}

/// One round of everything the loop does.
pub async fn sweep_once(app: &Arc<App>) {
    renew(app).await;
    take_over_expired(app).await;
    settle_own_orphans(app).await;
    start_owned_approved(app).await;
    expire_due(app).await;
    lapse_holds(app).await;
    settle_leftover_intents(app).await;
    events::publish_pending(app).await;
}

async fn open_feed(app: &App) -> Option<crate::store::ChangeFeed> {
    match app.store.change_feed().await {
        Ok(feed) => feed,
        Err(error) => {
            tracing::warn!(error = %error, "cannot listen for changes from other replicas; polling instead");
            None
        }
    }
}

async fn run_loop(app: Arc<App>) {
    let mut shutdown = app.shutdown_signal();
    let renew_every = app.config.operations.lease_renew;
    let (mut renewed, mut swept, mut pruned) = (Instant::now(), Instant::now(), Instant::now());
    let mut resettled = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = app.wake.notified() => app.freed.notify_waiters(),
            _ = shutdown.changed() => break,
        }
        if renewed.elapsed() >= renew_every {
            renew(&app).await;
            renewed = Instant::now();
        }
        events::publish_pending(&app).await;
        take_over_expired(&app).await;
        start_owned_approved(&app).await;
        if swept.elapsed() >= SWEEP {
            settle_own_orphans(&app).await;
            expire_due(&app).await;
            lapse_holds(&app).await;
            swept = Instant::now();
        }
        if resettled.elapsed() >= RESETTLE {
            settle_leftover_intents(&app).await;
            resettled = Instant::now();
        }
        if pruned.elapsed() >= PRUNE {
            prune_deliveries(&app).await;
            pruned = Instant::now();
        }
    }
    // Keep renewing while running operations reach a step boundary.
    while app.has_local_runs() {
        renew(&app).await;
        tokio::time::sleep(renew_every).await;
    }
}

async fn renew(app: &App) {
    let until = app.lease().until;
    match app.store.renew_leases(&app.instance, until).await {
        Ok(_) => app.leases_renewed(),
        Err(error) => tracing::warn!(error = %error, "cannot renew leases"),
    }
}

/// Takes over live operations whose owner's lease lapsed. A pending one
/// keeps waiting under this process, an approved one starts here, a
/// running one is settled and marked interrupted.
async fn take_over_expired(app: &Arc<App>) {
    if !app.holds_leases() {
        // This process cannot renew either: it is the store that is gone.
        return;
    }
    let expired = match app.store.expired_leases(app.now()).await {
        Ok(expired) => expired,
        Err(error) => {
            tracing::warn!(error = %error, "cannot look for expired leases");
            return;
        }
    };
    for seen in expired {
        match take_over(app, &seen).await {
            Ok(true) => {
                tracing::warn!(
                    op_id = seen.id,
                    state = %seen.state,
                    from = seen.owner.as_deref().unwrap_or("nobody"),
                    "took over an operation whose owner's lease lapsed"
                );
                if seen.state == OpState::Running {
                    exec::settle_orphan(app, &seen).await;
                }
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(op_id = seen.id, error = %error, "cannot take an operation over")
            }
        }
    }
}

/// Makes `seen` this process's, if it is still as it was seen.
async fn take_over(app: &App, seen: &OperationRecord) -> Result<bool, StoreError> {
    let mut change = Change::begin(app).await?;
    let Some(current) = change.lock(seen.id).await? else {
        return Ok(false);
    };
    let lapsed = current.lease_until.is_none_or(|until| until < change.now());
    if current.state != seen.state || current.owner != seen.owner || !lapsed {
        return Ok(false);
    }
    let lease = app.lease();
    change.tx().set_owner(seen.id, &lease).await?;
    change
        .record_for(
            &current,
            DECKHAND_ACTOR,
            AuditEvent::TakenOver {
                from: current
                    .owner
                    .clone()
                    .unwrap_or_else(|| "nobody".to_string()),
                to: lease.owner.clone(),
            },
        )
        .await?;
    change.commit().await?;
    Ok(true)
}

/// Running operations this process owns that none of its tasks runs any
/// more (a task panicked, or gave up while the store was unreachable).
async fn settle_own_orphans(app: &App) {
    let Ok(owned) = app.store.owned_operations(&app.instance).await else {
        return;
    };
    for operation in owned {
        if operation.state == OpState::Running && !app.is_local(operation.id) {
            exec::settle_orphan(app, &operation).await;
        }
    }
}

/// Finished operations whose recovery left something unsettled (a host
/// that did not answer then): settled again by their owner, or by whoever
/// takes them over once its lease lapsed, so a half-done replacement never
/// stays behind to block the next one.
async fn settle_leftover_intents(app: &App) {
    if !app.holds_leases() {
        return;
    }
    let Ok(op_ids) = app.store.finished_with_intents().await else {
        return;
    };
    for op_id in op_ids {
        let Ok(Some(operation)) = app.store.operation(op_id).await else {
            continue;
        };
        let mine = operation.owner.as_deref() == Some(app.instance.as_str());
        if !mine && !take_over_finished(app, &operation).await {
            continue;
        }
        let lines = exec::settle_interrupted(app, &operation).await;
        if !lines.is_empty() {
            tracing::warn!(op_id, settled = %lines.join("; "), "settled what an earlier recovery left");
        }
    }
}

/// Makes a finished operation this process's, once its owner's lease lapsed.
async fn take_over_finished(app: &App, operation: &OperationRecord) -> bool {
    let lapsed = operation.lease_until.is_none_or(|until| until < app.now());
    lapsed
        && app
            .store
            .take_over(operation, &app.lease())
            .await
            .unwrap_or(false)
}

/// Approved operations this process owns that none of its tasks runs:
/// approved through another replica, or taken over.
async fn start_owned_approved(app: &Arc<App>) {
    if app.is_shutting_down() {
        return;
    }
    let Ok(owned) = app.store.owned_operations(&app.instance).await else {
        return;
    };
    for operation in owned {
        if operation.state == OpState::Approved && !app.is_local(operation.id) {
            let runner = Arc::clone(app);
            app.spawn(exec::run_operation(runner, operation.id));
        }
    }
}

/// Expires pending operations whose time is up.
pub async fn expire_due(app: &App) {
    let now = app.now();
    let pending = match app.store.operations_in_state(OpState::Pending).await {
        Ok(pending) => pending,
        Err(error) => {
            tracing::warn!(error = %error, "cannot check for expired requests");
            return;
        }
    };
    for operation in pending {
        if operation.expires_at.is_some_and(|at| at <= now)
            && let Err(error) = expire(app, operation.id).await
        {
            tracing::warn!(op_id = operation.id, error = %error, "cannot expire a request");
        }
    }
}

async fn expire(app: &App, op_id: i64) -> Result<(), StoreError> {
    let mut change = Change::begin(app).await?;
    let now = change.now();
    let Some(operation) = change.lock(op_id).await? else {
        return Ok(());
    };
    if operation.state != OpState::Pending || operation.expires_at.is_none_or(|at| at > now) {
        return Ok(());
    }
    let outcome = format!(
        "expired at {} UTC without enough approvals",
        now.format("%H:%M")
    );
    change
        .tx()
        .set_state(
            op_id,
            OpState::Pending,
            OpState::Expired,
            now,
            Some(&outcome),
        )
        .await?;
    change
        .record_for(&operation, DECKHAND_ACTOR, AuditEvent::Expired)
        .await?;
    change.commit().await
}

/// Releases holds whose time is up and audits each.
async fn lapse_holds(app: &App) {
    match app.store.drop_lapsed_holds(app.now()).await {
        Ok(lapsed) => {
            for hold in lapsed {
                let context = AuditContext {
                    actor: DECKHAND_ACTOR.to_string(),
                    platform: Platform::Console,
                    channel: String::new(),
                    command: "lock".to_string(),
                    env: hold.env.clone(),
                    op_id: hold.op_id.unwrap_or_default(),
                };
                let reason = format!("hold by {}: \"{}\"", hold.holder, hold.reason);
                record_alone(app, &context, AuditEvent::HoldLapsed { reason }).await;
            }
        }
        Err(error) => tracing::warn!(error = %error, "cannot release lapsed holds"),
    }
}

async fn prune_deliveries(app: &App) {
    let retention = chrono::Duration::from_std(app.config.operations.delivery_retention)
        .unwrap_or_else(|_| chrono::Duration::days(7));
    match app.store.prune_deliveries(app.now() - retention).await {
        Ok(0) => {}
        Ok(removed) => tracing::info!(removed, "forgot old deliveries"),
        Err(error) => tracing::warn!(error = %error, "cannot prune old deliveries"),
    }
}

/// Stops this process's work cleanly: asks running operations to stop at
/// their next step boundary, waits for them up to the shutdown grace, then
/// hands the operations it still waits for (pending, queued) to whoever
/// starts next. An operation still running after the grace keeps its lease
/// until it lapses and is then recovered like after a crash.
pub async fn shut_down(app: &Arc<App>) {
    app.request_shutdown();
    let grace = app.config.operations.shutdown_grace;
    if tokio::time::timeout(grace, app.wait_idle()).await.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "operations still running after the shutdown grace; they are recovered when their lease lapses"
        );
    }
    if let Err(error) = app.store.release_leases(&app.instance, app.now()).await {
        tracing::warn!(error = %error, "cannot hand over waiting operations; their leases lapse");
    }
}
