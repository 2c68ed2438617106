//! The request flow, once for every platform: a `Request` becomes an
//! `Action` (parse), is checked (policy, environment gate), planned, stored
//! as an operation, waits for approvals when policy asks, and runs. Also
//! approvals, rejections and withdrawals from any platform, expiry, and
//! recovery after a crash. Adapters call these functions and render what
//! comes back; this module never calls into an adapter.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::audit::{self, AuditContext, AuditEvent};
use crate::chat::{Answer, Outbound, Reply, Request, Tone};
use crate::config::User;
use crate::exec::{self, OperationInput, Plan};
use crate::message;
use crate::names::{Platform, UserName};
use crate::parse::{ParseError, parse_action};
use crate::policy::{self, ApprovalView, OpState, Refusal};
use crate::store::{NewOperation, OperationRecord};

mod incident;

pub use incident::{
    IncidentError, NewIncident, PAGERDUTY_REQUESTER, open_incident, update_incident,
};

/// Who sent something, as far as config knows them.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The platform.
    pub platform: Platform,
    /// Their platform id.
    pub user_id: String,
    /// The channel they wrote in.
    pub channel: String,
    /// Their config entry, if any.
    pub user: Option<User>,
}

impl Sender {
    /// Looks a platform user up in config.
    pub fn identify(app: &App, platform: Platform, user_id: &str, channel: &str) -> Sender {
        Sender {
            platform,
            user_id: user_id.to_string(),
            channel: channel.to_string(),
            user: app.config.user_by_platform_id(platform, user_id).cloned(),
        }
    }

    /// Adds the roles config maps to the person's platform groups. Someone
    /// config does not list by id but who is in a mapped group becomes a
    /// person named by their platform id, holding those roles.
    pub fn with_groups(mut self, app: &App, groups: &[String]) -> Sender {
        let group_roles = app.config.roles_of_groups(self.platform, groups);
        if group_roles.is_empty() {
            return self;
        }
        let user = self.user.get_or_insert_with(|| User {
            name: UserName::new(format!("{}:{}", self.platform, self.user_id)),
            roles: Vec::new(),
            console: None,
            slack: None,
            discord: None,
        });
        for role in group_roles {
            if !user.roles.contains(&role) {
                user.roles.push(role);
            }
        }
        self
    }

    /// Their name in messages and the audit log: the config name, or the
    /// platform id for people config does not know.
    pub fn name(&self) -> String {
        match &self.user {
            Some(user) => user.name.to_string(),
            None => format!("{}:{}", self.platform, self.user_id),
        }
    }
}

/// Handles one request and answers at once; the operation's own message
/// follows through the outbox.
pub async fn handle_request(app: &Arc<App>, request: Request) -> Answer {
    let now = app.now();
    if let Some(delivery_id) = &request.delivery_id
        && !is_first_delivery(app, request.platform, delivery_id).await
    {
        return Answer::Duplicate;
    }
    let sender = Sender::identify(app, request.platform, &request.user_id, &request.channel)
        .with_groups(app, &request.groups);
    match accept(app, &sender, &request.text, now).await {
        Ok(answer) => answer,
        Err(refusal) => {
            audit_refusal(app, &sender, &refusal, now).await;
            Answer::Private(refusal.to_reply())
        }
    }
}

/// Records a platform delivery (a Slack event id, a button click's trigger
/// id, a gateway interaction id); false when it was seen before, so a
/// redelivered event takes effect once. Requests are deduplicated by
/// `handle_request` itself; adapters call this for reactions and clicks.
/// When the store cannot record it, the delivery counts as first: a lost
/// dedupe record must not lose the person's action.
pub async fn is_first_delivery(app: &App, platform: Platform, delivery_id: &str) -> bool {
    let key = format!("{platform}:{delivery_id}");
    match app.store.first_delivery(&key, app.now()).await {
        Ok(first) => first,
        Err(error) => {
            tracing::warn!(error = %error, %platform, "cannot record delivery; continuing without dedupe");
            true
        }
    }
}

/// A refused request: what to tell the requester and what to audit.
#[derive(Debug)]
struct RefusedRequest {
    command: String,
    env: String,
    title: String,
    message: String,
    tone: Tone,
}

impl RefusedRequest {
    fn to_reply(&self) -> Reply {
        let mut lines = self.message.lines().map(str::to_string);
        let mut reply = Reply::new(
            self.title.clone(),
            self.tone,
            lines.next().unwrap_or_default(),
        );
        reply.lines = lines.collect();
        reply
    }
}

fn refusal(command: &str, env: &str, message: impl Into<String>) -> RefusedRequest {
    RefusedRequest {
        command: command.to_string(),
        env: env.to_string(),
        title: if command.is_empty() {
            "Request refused".to_string()
        } else {
            format!("/{command} refused")
        },
        message: message.into(),
        tone: Tone::Failure,
    }
}

async fn accept(
    app: &Arc<App>,
    sender: &Sender,
    text: &str,
    now: DateTime<Utc>,
) -> Result<Answer, RefusedRequest> {
    let action = parse_action(text, &app.catalog, &app.config)
        .map_err(|error| parse_refusal(app, text, &error))?;
    let spec = app
        .catalog
        .get(action.command.as_str())
        .ok_or_else(|| refusal("", "", "unknown command"))?;
    let command = spec.name.to_string();
    let env_text = action
        .env
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let grant = policy::check_request(spec, action.env.as_ref(), sender.user.as_ref(), &app.config)
        .map_err(|error| refusal(&command, &env_text, error.to_string()))?;
    if spec.mutating
        && let Some(env) = &action.env
    {
        exec::check_gate(app, spec, env.as_str(), now)
            .await
            .map_err(|gate| refusal(&command, &env_text, gate.message()))?;
    }
    let requester = sender.name();
    let environment = action
        .env
        .as_ref()
        .and_then(|env| app.config.environment(env.as_str()));
    let input = OperationInput {
        action: &action,
        spec,
        env: environment,
        requester: &requester,
    };
    let plan = exec::plan(app, &input)
        .await
        .map_err(|error| refusal(&command, &env_text, error.to_string()))?;
    let command_line = action.to_command_line(spec);
    if action.dry_run {
        let context = context_of_sender(sender, &command, &env_text, 0);
        record_audit(app, &context, AuditEvent::DryRun, now).await;
        return Ok(Answer::Private(message::dry_run_reply(
            &command_line,
            &plan,
        )));
    }
    let needs_approval = grant.approvals > 0;
    let expires_at = needs_approval
        .then(|| {
            chrono::Duration::from_std(grant.expires)
                .ok()
                .map(|expiry| now + expiry)
        })
        .flatten();
    let new_operation = NewOperation {
        command: command.clone(),
        env: action.env.as_ref().map(ToString::to_string),
        command_line,
        params_hash: action.params_hash(),
        plan: plan.to_json(),
        requester: requester.clone(),
        platform: sender.platform,
        channel: sender.channel.clone(),
        state: if needs_approval {
            OpState::Pending
        } else {
            OpState::Approved
        },
        approvals_needed: grant.approvals,
        approver_roles: grant.approvers.clone(),
        created_at: now,
        expires_at,
    };
    let op_id = app
        .store
        .insert_operation(&new_operation)
        .await
        .map_err(|error| {
            refusal(
                &command,
                &env_text,
                format!("cannot record the operation, so nothing was run: {error}"),
            )
        })?;
    let context = context_of_sender(sender, &command, &env_text, op_id);
    record_audit(
        app,
        &context,
        AuditEvent::Requested {
            approvals_needed: grant.approvals,
        },
        now,
    )
    .await;
    if spec.mutating {
        // A read-only report appears when it starts running; a queued
        // state would only be noise.
        publish_operation(app, op_id).await;
    }
    if !needs_approval {
        let runner = Arc::clone(app);
        app.spawn(exec::run_operation(runner, op_id));
    }
    Ok(Answer::Accepted { op_id })
}

fn parse_refusal(app: &App, text: &str, error: &ParseError) -> RefusedRequest {
    let command = text
        .split_whitespace()
        .next()
        .and_then(|word| word.strip_prefix('/'))
        .filter(|name| app.catalog.get(name).is_some())
        .unwrap_or_default();
    let mut refused = refusal(command, "", error.to_string());
    if let ParseError::UsageRequested { .. } = error {
        refused.title = format!("/{command} usage");
        refused.tone = Tone::Info;
    }
    refused
}

async fn audit_refusal(app: &App, sender: &Sender, refused: &RefusedRequest, now: DateTime<Utc>) {
    let context = context_of_sender(sender, &refused.command, &refused.env, 0);
    record_audit(
        app,
        &context,
        AuditEvent::Refused {
            reason: refused.message.clone(),
            requester_has_role: sender
                .user
                .as_ref()
                .is_some_and(|user| !user.roles.is_empty()),
        },
        now,
    )
    .await;
}

fn context_of_sender(sender: &Sender, command: &str, env: &str, op_id: i64) -> AuditContext {
    AuditContext {
        actor: sender.name(),
        platform: sender.platform,
        channel: sender.channel.clone(),
        command: command.to_string(),
        env: env.to_string(),
        op_id,
    }
}

/// Records an audit event; a store failure is logged, never hidden.
async fn record_audit(app: &App, context: &AuditContext, event: AuditEvent, now: DateTime<Utc>) {
    if let Err(error) = audit::record(app, context, event, now).await {
        tracing::error!(error = %error, op_id = context.op_id, "cannot write audit entry");
    }
}

/// Records an audit event about an operation, acted on by `actor`.
pub async fn audit_operation(
    app: &App,
    operation: &OperationRecord,
    actor: &str,
    event: AuditEvent,
) {
    let context = AuditContext {
        actor: actor.to_string(),
        platform: operation.platform,
        channel: operation.channel.clone(),
        command: operation.command.clone(),
        env: operation.env.clone().unwrap_or_default(),
        op_id: operation.id,
    };
    record_audit(app, &context, event, app.now()).await;
}

/// Posts or edits the operation's message with its current state.
pub async fn publish_operation(app: &App, op_id: i64) {
    let loaded = async {
        let Some(operation) = app.store.operation(op_id).await? else {
            return Ok(None);
        };
        let steps = app.store.steps(op_id).await?;
        let approvals = app.store.approvals(op_id).await?;
        // Only PagerDuty's own operations answer an incident; the others
        // need not ask the store on every update.
        let incident = if operation.requester == PAGERDUTY_REQUESTER {
            app.store.incident_of_operation(op_id).await?
        } else {
            None
        };
        Ok::<_, crate::store::StoreError>(Some((operation, steps, approvals, incident)))
    }
    .await;
    match loaded {
        Ok(Some((operation, steps, approvals, incident))) => {
            let spec = app.catalog.get(&operation.command);
            let reply = message::operation_reply(&message::OperationView {
                operation: &operation,
                spec,
                plan: &Plan::from_json(&operation.plan),
                steps: &steps,
                approvals: &approvals,
                incident: incident.as_ref(),
            });
            app.outbox.send(Outbound::Operation {
                op_id,
                platform: operation.platform,
                channel: operation.channel.clone(),
                reply,
            });
        }
        Ok(None) => {}
        Err(error) => tracing::error!(op_id, error = %error, "cannot load operation to publish"),
    }
}

/// The answer to an approval, rejection or withdrawal, for the person who
/// gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// Whether it changed anything.
    pub applied: bool,
    /// What to tell them.
    pub text: String,
}

impl Feedback {
    fn applied(text: impl Into<String>) -> Feedback {
        Feedback {
            applied: true,
            text: text.into(),
        }
    }

    fn refused(text: impl Into<String>) -> Feedback {
        Feedback {
            applied: false,
            text: text.into(),
        }
    }
}

/// Loads what policy needs about an operation.
async fn load_for_approval(
    app: &App,
    op_id: i64,
) -> Result<(OperationRecord, Vec<policy::ApprovalRecord>), Feedback> {
    let operation = match app.store.operation(op_id).await {
        Ok(Some(operation)) => operation,
        Ok(None) => return Err(Feedback::refused(format!("there is no operation #{op_id}"))),
        Err(error) => return Err(Feedback::refused(format!("cannot read #{op_id}: {error}"))),
    };
    let approvals =
        app.store.approvals(op_id).await.map_err(|error| {
            Feedback::refused(format!("cannot read #{op_id}'s approvals: {error}"))
        })?;
    Ok((operation, approvals))
}

/// What policy needs of a stored operation and its approvals.
pub fn approval_view<'a>(
    operation: &'a OperationRecord,
    approvals: &'a [policy::ApprovalRecord],
) -> ApprovalView<'a> {
    ApprovalView {
        op_id: operation.id,
        state: operation.state,
        requester: &operation.requester,
        params_hash: &operation.params_hash,
        expires_at: operation.expires_at,
        needed: operation.approvals_needed,
        approver_roles: &operation.approver_roles,
        approvals,
    }
}

/// Approves an operation. `presented_hash` is the parameters hash the
/// approver saw (a button carries it); `None` means the operation's
/// message itself (a reaction), which shows exactly its parameters.
pub async fn approve(
    app: &Arc<App>,
    sender: &Sender,
    op_id: i64,
    presented_hash: Option<&str>,
) -> Feedback {
    let (operation, approvals) = match load_for_approval(app, op_id).await {
        Ok(loaded) => loaded,
        Err(feedback) => return feedback,
    };
    let now = app.now();
    let hash = presented_hash.unwrap_or(&operation.params_hash).to_string();
    if let Err(error) = policy::check_approval(
        &approval_view(&operation, &approvals),
        sender.user.as_ref(),
        &hash,
        now,
    ) {
        return Feedback::refused(error.to_string());
    }
    let Some(approver) = &sender.user else {
        return Feedback::refused("you have no role in Deckhand");
    };
    if let Err(error) = app
        .store
        .add_approval(op_id, &approver.name, &hash, sender.platform, now)
        .await
    {
        return Feedback::refused(format!("cannot record your approval: {error}"));
    }
    let approvals = match app.store.approvals(op_id).await {
        Ok(approvals) => approvals,
        Err(error) => {
            return Feedback::refused(format!("cannot read #{op_id}'s approvals: {error}"));
        }
    };
    let current = approval_view(&operation, &approvals);
    let (have, need) = (current.count(), current.needed);
    audit_operation(
        app,
        &operation,
        &approver.name.to_string(),
        AuditEvent::Approved {
            approver: approver.name.to_string(),
            have,
            need,
        },
    )
    .await;
    if current.is_approved() {
        match app
            .store
            .transition(op_id, OpState::Pending, OpState::Approved, now, None)
            .await
        {
            Ok(true) => {
                publish_operation(app, op_id).await;
                let runner = Arc::clone(app);
                app.spawn(exec::run_operation(runner, op_id));
                return Feedback::applied(format!("you approved #{op_id}; it starts now"));
            }
            Ok(false) => {}
            Err(error) => return Feedback::refused(format!("cannot start #{op_id}: {error}")),
        }
    }
    publish_operation(app, op_id).await;
    Feedback::applied(format!(
        "you approved #{op_id} ({have} of {need} approvals)"
    ))
}

/// Rejects an operation (an approver), or cancels it (its requester).
pub async fn reject(app: &Arc<App>, sender: &Sender, op_id: i64) -> Feedback {
    let (operation, approvals) = match load_for_approval(app, op_id).await {
        Ok(loaded) => loaded,
        Err(feedback) => return feedback,
    };
    let now = app.now();
    let refusal = match policy::check_rejection(
        &approval_view(&operation, &approvals),
        sender.user.as_ref(),
        now,
    ) {
        Ok(refusal) => refusal,
        Err(error) => return Feedback::refused(error.to_string()),
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
    let outcome = format!("{} by {name}", state);
    match app
        .store
        .transition(op_id, OpState::Pending, state, now, Some(&outcome))
        .await
    {
        Ok(true) => {
            audit_operation(app, &operation, &name, event).await;
            publish_operation(app, op_id).await;
            Feedback::applied(text)
        }
        Ok(false) => Feedback::refused(format!("#{op_id} is no longer waiting for approval")),
        Err(error) => Feedback::refused(format!("cannot reject #{op_id}: {error}")),
    }
}

/// Withdraws the sender's approval while the operation still waits.
pub async fn withdraw(app: &Arc<App>, sender: &Sender, op_id: i64) -> Feedback {
    let (operation, approvals) = match load_for_approval(app, op_id).await {
        Ok(loaded) => loaded,
        Err(feedback) => return feedback,
    };
    let Some(user) = &sender.user else {
        return Feedback::refused(format!("you have no approval of #{op_id} to withdraw"));
    };
    if let Err(error) = policy::check_withdrawal(&approval_view(&operation, &approvals), user) {
        return Feedback::refused(error.to_string());
    }
    match app
        .store
        .withdraw_approval(op_id, &user.name, app.now())
        .await
    {
        Ok(true) => {
            audit_operation(
                app,
                &operation,
                user.name.as_str(),
                AuditEvent::ApprovalWithdrawn {
                    approver: user.name.to_string(),
                },
            )
            .await;
            publish_operation(app, op_id).await;
            Feedback::applied(format!("you withdrew your approval of #{op_id}"))
        }
        Ok(false) => Feedback::refused(format!("you have no approval of #{op_id} to withdraw")),
        Err(error) => Feedback::refused(format!("cannot withdraw: {error}")),
    }
}

/// Expires pending operations whose time is up and releases lapsed holds.
pub async fn expire_due(app: &App) {
    let now = app.now();
    match app.store.operations_in_state(OpState::Pending).await {
        Ok(pending) => {
            for operation in pending {
                let due = operation.expires_at.is_some_and(|at| at <= now);
                if !due {
                    continue;
                }
                let outcome = format!(
                    "expired at {} UTC without enough approvals",
                    now.format("%H:%M")
                );
                if let Ok(true) = app
                    .store
                    .transition(
                        operation.id,
                        OpState::Pending,
                        OpState::Expired,
                        now,
                        Some(&outcome),
                    )
                    .await
                {
                    audit_operation(app, &operation, "deckhand", AuditEvent::Expired).await;
                    publish_operation(app, operation.id).await;
                }
            }
        }
        Err(error) => tracing::warn!(error = %error, "cannot check for expired requests"),
    }
    match app.store.drop_lapsed_holds(now).await {
        Ok(lapsed) => {
            for hold in lapsed {
                let context = AuditContext {
                    actor: "deckhand".to_string(),
                    platform: Platform::Console,
                    channel: String::new(),
                    command: "lock".to_string(),
                    env: hold.env.clone(),
                    op_id: hold.op_id.unwrap_or_default(),
                };
                let reason = format!("hold by {}: \"{}\"", hold.holder, hold.reason);
                record_audit(app, &context, AuditEvent::HoldLapsed { reason }, now).await;
            }
        }
        Err(error) => tracing::warn!(error = %error, "cannot release lapsed holds"),
    }
}

/// Marks operations that were running (or approved but not started) when
/// Deckhand stopped as interrupted, releases their locks, and reports them
/// in their channels.
pub async fn recover_interrupted(app: &App) {
    let now = app.now();
    for state in [OpState::Running, OpState::Approved] {
        let operations = match app.store.operations_in_state(state).await {
            Ok(operations) => operations,
            Err(error) => {
                tracing::error!(error = %error, "cannot look for interrupted operations");
                return;
            }
        };
        for operation in operations {
            let steps = app.store.steps(operation.id).await.unwrap_or_default();
            let mut outcome = match steps
                .iter()
                .rev()
                .find(|step| step.state == "running")
                .or(steps.last())
            {
                Some(step) => format!(
                    "Deckhand stopped during step {} ({}); check the environment, then request it again",
                    step.idx + 1,
                    step.title
                ),
                None => "Deckhand stopped before it started; request it again".to_string(),
            };
            if state == OpState::Running
                && let Some(environment) = operation
                    .env
                    .as_deref()
                    .and_then(|env| app.config.environment(env))
            {
                let settled =
                    exec::settle_leftovers(app, environment, &Plan::from_json(&operation.plan))
                        .await;
                if !settled.is_empty() {
                    outcome.push_str(&format!("; {}", settled.join("; ")));
                }
            }
            if let Ok(true) = app
                .store
                .transition(
                    operation.id,
                    state,
                    OpState::Interrupted,
                    now,
                    Some(&outcome),
                )
                .await
            {
                if let Some(env) = &operation.env {
                    let _ = app.store.unlock(env, operation.id).await;
                }
                audit_operation(
                    app,
                    &operation,
                    "deckhand",
                    AuditEvent::Finished {
                        state: OpState::Interrupted,
                        summary: outcome,
                    },
                )
                .await;
                publish_operation(app, operation.id).await;
            }
        }
    }
}

/// Starts the background work: recovery now, then expiry every second,
/// audit checkpoints and refusal summaries until shutdown.
pub async fn start_background(app: &Arc<App>) {
    recover_interrupted(app).await;
    tokio::spawn(audit::run_checkpoints(
        Arc::clone(app),
        app.shutdown_signal(),
    ));
    tokio::spawn(audit::run_refusal_summaries(
        Arc::clone(app),
        app.shutdown_signal(),
    ));
    let sweeper = Arc::clone(app);
    let mut shutdown = app.shutdown_signal();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = ticker.tick() => expire_due(&sweeper).await,
                _ = shutdown.changed() => return,
            }
        }
    });
}
