//! A request, from text to stored operation: parse, policy, environment
//! gate, plan, then one change that stores the operation with its
//! `requested` audit entry and marks its delivery handled. A refused
//! request changes nothing but its audit entry.

use std::sync::Arc;

use crate::app::App;
use crate::audit::{AuditContext, AuditEvent};
use crate::chat::{Answer, Reply, Tone};
use crate::events::{self, Change};
use crate::exec::{self, OperationInput};
use crate::message;
use crate::parse::{ParseError, parse_action};
use crate::policy::{self, OpState};
use crate::store::{NewOperation, StoreError};

use super::{DeliveryKey, Sender};

/// Handles a request's text. `Err` carries the answer when nothing could be
/// recorded (the store is unreachable), so the caller releases the
/// delivery for a retry.
pub(super) async fn handle(
    app: &Arc<App>,
    sender: &Sender,
    text: &str,
    delivery: Option<&DeliveryKey>,
) -> Result<Answer, Answer> {
    match accept(app, sender, text, delivery).await {
        Ok(answer) => Ok(answer),
        Err(Refusal::Refused(refused)) => {
            let mut reply = refused.to_reply();
            match audit_refusal(app, sender, &refused, delivery).await {
                Ok(()) => Ok(Answer::Private(reply)),
                Err(error) => {
                    reply.lines.push(format!(
                        "(this refusal could not be written to the audit trail: {error})"
                    ));
                    Err(Answer::Private(reply))
                }
            }
        }
        Err(Refusal::Unrecorded(error)) => Err(Answer::Private(store_unavailable(&error))),
    }
}

/// The answer when the store cannot record a request: nothing happened.
pub(super) fn store_unavailable(error: &StoreError) -> Reply {
    Reply::new(
        "Request not recorded",
        Tone::Failure,
        format!(
            "Deckhand cannot write to its store or audit trail right now, so nothing was done; try again in a moment ({error})"
        ),
    )
}

/// Why a request did not become an operation.
enum Refusal {
    /// Refused: the requester is told why, and the refusal is audited.
    Refused(RefusedRequest),
    /// The store could not record it.
    Unrecorded(StoreError),
}

impl From<RefusedRequest> for Refusal {
    fn from(refused: RefusedRequest) -> Refusal {
        Refusal::Refused(refused)
    }
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Refusal {
        Refusal::Unrecorded(error)
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
    delivery: Option<&DeliveryKey>,
) -> Result<Answer, Refusal> {
    let now = app.now();
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
        exec::check_gate(app, spec, env.as_str(), grant.on_busy, now)
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
        let mut change = Change::begin(app).await?;
        change
            .record(
                &context_of_sender(sender, &command, &env_text, 0),
                AuditEvent::DryRun,
            )
            .await?;
        complete(&mut change, delivery).await?;
        change.commit().await?;
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
        params_hash: plan.bind(&action.params_hash()),
        plan: plan.to_json(),
        requester: requester.clone(),
        requester_id: Some(sender.user_id.clone()),
        requester_os: sender.os_user.clone(),
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
    let mut change = Change::begin(app).await?;
    let op_id = change.insert_operation(&new_operation).await?;
    change
        .record(
            &context_of_sender(sender, &command, &env_text, op_id),
            AuditEvent::Requested {
                approvals_needed: grant.approvals,
            },
        )
        .await?;
    complete(&mut change, delivery).await?;
    change.commit().await?;
    if !needs_approval {
        let runner = Arc::clone(app);
        app.spawn(exec::run_operation(runner, op_id));
    }
    Ok(Answer::Accepted { op_id })
}

/// Marks the delivery handled in the change that is its effect.
async fn complete(
    change: &mut Change<'_>,
    delivery: Option<&DeliveryKey>,
) -> Result<(), StoreError> {
    if let Some(key) = delivery {
        let now = change.now();
        change.tx().complete_delivery(key.as_str(), now).await?;
    }
    Ok(())
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

/// Audits a refusal and marks its delivery handled, together.
async fn audit_refusal(
    app: &App,
    sender: &Sender,
    refused: &RefusedRequest,
    delivery: Option<&DeliveryKey>,
) -> Result<(), StoreError> {
    let mut change = Change::begin(app).await?;
    change
        .record(
            &context_of_sender(sender, &refused.command, &refused.env, 0),
            AuditEvent::Refused {
                reason: refused.message.clone(),
                requester_has_role: sender
                    .user
                    .as_ref()
                    .is_some_and(|user| !user.roles.is_empty()),
            },
        )
        .await?;
    complete(&mut change, delivery).await?;
    change.commit().await
}

fn context_of_sender(sender: &Sender, command: &str, env: &str, op_id: i64) -> AuditContext {
    AuditContext {
        actor: sender.actor(),
        platform: sender.platform,
        channel: sender.channel.clone(),
        command: command.to_string(),
        env: env.to_string(),
        op_id,
    }
}

/// Records one event that belongs to no change of an operation (a hold
/// lapsed); a store failure is logged.
pub(super) async fn record_alone(app: &App, context: &AuditContext, event: AuditEvent) {
    if let Err(error) = events::record(app, context, event).await {
        tracing::error!(error = %error, op_id = context.op_id, "cannot write audit entry");
    }
}
