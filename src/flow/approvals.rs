//! Approvals, rejections and withdrawals, from any platform. Each is one
//! change that first takes the operation's row lock, then checks policy
//! against what the store holds at that moment, writes, and records its
//! audit entry. So a withdrawal racing the last approval loses cleanly
//! ("too late: #N already started") or wins cleanly (the operation keeps
//! waiting), across replicas too. An approved operation starts in the
//! process that owns it: here, or in the owner's background loop.
//!
//! Approvals are counted by person: the roles of everyone who approved are
//! looked up again (platform groups change) before each approval is
//! counted, and an approver who lost the role no longer counts. The console
//! acts only on operations requested from the console unless config allows
//! more (`[console] cross_platform`).

use std::sync::Arc;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::events::Change;
use crate::exec;
use crate::identity;
use crate::names::UserName;
use crate::policy::{self, ApprovalView, OpState, Refusal};
use crate::store::{NewApproval, OperationRecord, StoreError};

use super::{Feedback, Sender};

/// Approves an operation. `presented_hash` is the parameters hash the
/// approver saw (a button carries it); `None` means the operation's
/// message itself (a reaction), which shows exactly its parameters.
pub async fn approve(
    app: &Arc<App>,
    sender: &Sender,
    op_id: i64,
    presented_hash: Option<&str>,
) -> Feedback {
    match try_approve(app, sender, op_id, presented_hash).await {
        Ok(Approval::Refused(feedback)) => feedback,
        Ok(Approval::Counted { have, need, lapsed }) => Feedback::applied(format!(
            "you approved #{op_id} ({have} of {need} approvals){}",
            lapsed_text(&lapsed)
        )),
        Ok(Approval::Complete { runs_here }) => {
            if runs_here {
                let runner = Arc::clone(app);
                app.spawn(exec::run_operation(runner, op_id));
            }
            Feedback::applied(format!("you approved #{op_id}; it starts now"))
        }
        Err(error) => Feedback::refused(format!(
            "cannot record your approval, so nothing changed: {error}"
        )),
    }
}

enum Approval {
    Refused(Feedback),
    Counted {
        have: u32,
        need: u32,
        lapsed: Vec<UserName>,
    },
    Complete {
        runs_here: bool,
    },
}

/// `; bob's approval no longer counts: bob no longer holds role deployers`.
fn lapsed_text(lapsed: &[UserName]) -> String {
    match lapsed {
        [] => String::new(),
        [one] => {
            format!("; {one}'s approval no longer counts: {one} no longer holds an approver role")
        }
        many => format!(
            "; the approvals of {} no longer count: they no longer hold an approver role",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What policy needs to judge approvals of `operation`: who is listed, and
/// whose approvals lapsed.
fn view_of<'a>(
    app: &App,
    operation: &'a OperationRecord,
    approvals: &'a [policy::ApprovalRecord],
    lapsed: &'a [UserName],
) -> ApprovalView<'a> {
    ApprovalView {
        requester_listed: identity::is_requester_listed(&app.config, operation),
        lapsed,
        unlisted_approvers: app.config.trust.unlisted_approvers,
        ..operation.approval_view(approvals)
    }
}

/// Whether the sender may act on the operation from where they are.
fn check_reach(app: &App, sender: &Sender, operation: &OperationRecord) -> Result<(), Feedback> {
    policy::check_reach(
        operation.id,
        operation.platform,
        sender.platform,
        app.config.trust.console.cross_platform,
    )
    .map_err(|error| Feedback::refused(error.to_string()))
}

async fn try_approve(
    app: &App,
    sender: &Sender,
    op_id: i64,
    presented_hash: Option<&str>,
) -> Result<Approval, StoreError> {
    // The earlier approvers' roles are looked up before the change: that
    // may ask the platform, which must not happen under the row lock.
    let Some(before) = app.store.operation(op_id).await? else {
        return Ok(Approval::Refused(no_such_operation(op_id)));
    };
    let earlier = app.store.approvals(op_id).await?;
    let mut lapsed = identity::lapsed_approvers(app, &earlier, &before.approver_roles).await;
    if let Some(user) = &sender.user {
        lapsed.retain(|name| *name != user.name);
    }
    let mut change = Change::begin(app).await?;
    let now = change.now();
    let Some(operation) = change.lock(op_id).await? else {
        return Ok(Approval::Refused(no_such_operation(op_id)));
    };
    if let Err(refused) = check_reach(app, sender, &operation) {
        return Ok(Approval::Refused(refused));
    }
    let approvals = change.tx().approvals(op_id).await?;
    let hash = presented_hash.unwrap_or(&operation.params_hash).to_string();
    if let Err(error) = policy::check_approval(
        &view_of(app, &operation, &approvals, &lapsed),
        sender.approver(),
        &hash,
        now,
    ) {
        return Ok(Approval::Refused(Feedback::refused(error.to_string())));
    }
    let Some(approver) = &sender.user else {
        return Ok(Approval::Refused(Feedback::refused(
            "you have no role in Deckhand",
        )));
    };
    let new_approval = NewApproval {
        approver: &approver.name,
        account: &sender.user_id,
        platform: sender.platform,
        params_hash: &hash,
    };
    change.tx().add_approval(op_id, &new_approval, now).await?;
    let approvals = change.tx().approvals(op_id).await?;
    let view = view_of(app, &operation, &approvals, &lapsed);
    let (have, need, complete_now) = (view.count(), view.needed, view.is_approved());
    lapsed.retain(|name| {
        approvals
            .iter()
            .any(|approval| approval.approver == *name && !approval.withdrawn)
    });
    change
        .record_for(
            &operation,
            &sender.actor(),
            AuditEvent::Approved {
                approver: approver.name.to_string(),
                have,
                need,
            },
        )
        .await?;
    let complete = complete_now
        && change
            .tx()
            .set_state(op_id, OpState::Pending, OpState::Approved, now, None)
            .await?;
    change.commit().await?;
    if !complete {
        return Ok(Approval::Counted { have, need, lapsed });
    }
    // The owner runs it; another replica's background loop is woken by the
    // change feed (or its next poll).
    let runs_here = operation.owner.as_deref() == Some(app.instance.as_str());
    Ok(Approval::Complete { runs_here })
}

/// Rejects an operation (an approver), or cancels it (its requester);
/// also calls off an approved operation waiting in its environment's queue.
pub async fn reject(app: &Arc<App>, sender: &Sender, op_id: i64) -> Feedback {
    match try_reject(app, sender, op_id).await {
        Ok(feedback) => feedback,
        Err(error) => Feedback::refused(format!(
            "cannot record your rejection, so nothing changed: {error}"
        )),
    }
}

async fn try_reject(app: &App, sender: &Sender, op_id: i64) -> Result<Feedback, StoreError> {
    let mut change = Change::begin(app).await?;
    let now = change.now();
    let Some(operation) = change.lock(op_id).await? else {
        return Ok(no_such_operation(op_id));
    };
    if let Err(refused) = check_reach(app, sender, &operation) {
        return Ok(refused);
    }
    let approvals = change.tx().approvals(op_id).await?;
    let refusal = match policy::check_rejection(
        &operation.approval_view(&approvals),
        sender.user.as_ref(),
        now,
    ) {
        Ok(refusal) => refusal,
        Err(error) => return Ok(Feedback::refused(error.to_string())),
    };
    let name = sender.name();
    let (state, event, text) = match refusal {
        Refusal::Rejected => (
            OpState::Rejected,
            AuditEvent::Rejected { by: name.clone() },
            format!("you rejected #{op_id}; it will not run"),
        ),
        Refusal::Cancelled => (
            OpState::Cancelled,
            AuditEvent::Cancelled { by: name.clone() },
            format!("you cancelled #{op_id}; it will not run"),
        ),
    };
    let outcome = format!("{state} by {name}");
    if !change
        .tx()
        .set_state(op_id, operation.state, state, now, Some(&outcome))
        .await?
    {
        return Ok(Feedback::refused(format!("#{op_id} is no longer waiting")));
    }
    change
        .record_for(&operation, &sender.actor(), event)
        .await?;
    change.commit().await?;
    Ok(Feedback::applied(text))
}

/// Withdraws the sender's approval while the operation still waits.
pub async fn withdraw(app: &Arc<App>, sender: &Sender, op_id: i64) -> Feedback {
    match try_withdraw(app, sender, op_id).await {
        Ok(feedback) => feedback,
        Err(error) => Feedback::refused(format!(
            "cannot record your withdrawal, so nothing changed: {error}"
        )),
    }
}

async fn try_withdraw(app: &App, sender: &Sender, op_id: i64) -> Result<Feedback, StoreError> {
    let Some(user) = &sender.user else {
        return Ok(Feedback::refused(format!(
            "you have no approval of #{op_id} to withdraw"
        )));
    };
    let mut change = Change::begin(app).await?;
    let now = change.now();
    let Some(operation) = change.lock(op_id).await? else {
        return Ok(no_such_operation(op_id));
    };
    if let Err(refused) = check_reach(app, sender, &operation) {
        return Ok(refused);
    }
    let approvals = change.tx().approvals(op_id).await?;
    if let Err(error) = policy::check_withdrawal(&operation.approval_view(&approvals), user) {
        return Ok(Feedback::refused(error.to_string()));
    }
    if !change
        .tx()
        .withdraw_approval(op_id, &user.name, now)
        .await?
    {
        return Ok(Feedback::refused(format!(
            "you have no approval of #{op_id} to withdraw"
        )));
    }
    change
        .record_for(
            &operation,
            &sender.actor(),
            AuditEvent::ApprovalWithdrawn {
                approver: user.name.to_string(),
            },
        )
        .await?;
    change.commit().await?;
    Ok(Feedback::applied(format!(
        "you withdrew your approval of #{op_id}"
    )))
}

fn no_such_operation(op_id: i64) -> Feedback {
    Feedback::refused(format!("there is no operation #{op_id}"))
}
