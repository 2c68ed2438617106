//! Operation events, one way. Whatever happens to an operation — the flow
//! accepting, approving or expiring it, the executor starting a step or
//! finishing — is written as a `Change`: the store writes and their
//! `AuditEvent`s commit in one transaction, so nothing happens without its
//! audit entry (the audit trail fails closed). After the commit this is the
//! one place that turns events into log lines, metrics, audit-channel posts
//! and the operation's message. Changes made by another replica arrive here
//! too, from the store (`publish_pending`): the owner of an operation
//! publishes its message, so edits from several replicas never race.
//!
//! The executor and the flow call into this module; it never calls back
//! into them.

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::audit::{self, AuditContext, AuditEvent};
use crate::chat::Outbound;
use crate::message::{self, OperationView};
use crate::names::PAGERDUTY_REQUESTER;
use crate::plan::Plan;
use crate::store::{
    AuditEntry, LockHolder, NewOperation, OperationRecord, Published, StoreError, Tx,
};

/// Store writes and the events they record, committed together.
#[derive(Debug)]
pub struct Change<'a> {
    app: &'a App,
    tx: Tx,
    now: DateTime<Utc>,
    audited: Vec<(AuditEntry, bool)>,
    touched: Vec<i64>,
}

impl<'a> Change<'a> {
    /// Opens a change.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn begin(app: &'a App) -> Result<Change<'a>, StoreError> {
        Ok(Change {
            app,
            tx: app.store.begin().await?,
            now: app.now(),
            audited: Vec::new(),
            touched: Vec::new(),
        })
    }

    /// The time this change happens at.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// The transaction, for the writes themselves.
    pub fn tx(&mut self) -> &mut Tx {
        &mut self.tx
    }

    /// Locks and reads an operation; its message is republished after the
    /// commit.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn lock(&mut self, op_id: i64) -> Result<Option<OperationRecord>, StoreError> {
        let operation = self.tx.lock_operation(op_id).await?;
        if operation.is_some() {
            self.touch(op_id);
        }
        Ok(operation)
    }

    /// Inserts an operation owned by this process.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn insert_operation(&mut self, operation: &NewOperation) -> Result<i64, StoreError> {
        let op_id = self
            .tx
            .insert_operation(operation, &self.app.lease())
            .await?;
        self.touch(op_id);
        Ok(op_id)
    }

    /// Republishes an operation's message after the commit.
    pub fn touch(&mut self, op_id: i64) {
        if !self.touched.contains(&op_id) {
            self.touched.push(op_id);
        }
    }

    /// Records an event in the audit chain, inside this change.
    ///
    /// # Errors
    /// When the entry cannot be written; the whole change then fails.
    pub async fn record(
        &mut self,
        context: &AuditContext,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        let entry = audit::entry_of(context, &event, self.now);
        let seal = audit::seal(&self.app.audit.keys);
        let stored = self.tx.append_audit(&entry, &seal).await?;
        self.audited.push((stored, audit::is_summarized(&event)));
        Ok(())
    }

    /// Records an event about an operation, acted on by `actor`.
    ///
    /// # Errors
    /// When the entry cannot be written.
    pub async fn record_for(
        &mut self,
        operation: &OperationRecord,
        actor: &str,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        self.record(&context_of(operation, actor), event).await
    }

    /// Commits, then logs, counts and posts every recorded event and
    /// republishes every touched operation's message.
    ///
    /// # Errors
    /// When the commit fails: then nothing of the change happened.
    pub async fn commit(self) -> Result<(), StoreError> {
        let Change {
            app,
            tx,
            audited,
            touched,
            ..
        } = self;
        tx.commit().await?;
        for (stored, summarized) in &audited {
            announce(app, stored, *summarized);
        }
        // Every finished operation is witnessed outside the store.
        if audited
            .iter()
            .any(|(stored, _)| stored.entry.event == "finished")
            && let Err(error) = audit::publish_checkpoint(app).await
        {
            tracing::warn!(error = %error, "cannot publish an audit checkpoint");
        }
        for op_id in touched {
            publish(app, op_id).await;
        }
        Ok(())
    }
}

/// The audit context of an operation, acted on by `actor`.
pub fn context_of(operation: &OperationRecord, actor: &str) -> AuditContext {
    // Whatever the requester of a console operation does is written with
    // the operating-system user who ran the console.
    let os_user = operation
        .requester_os
        .as_deref()
        .filter(|_| actor == operation.requester);
    AuditContext {
        actor: crate::identity::actor_label(actor, os_user),
        platform: operation.platform,
        channel: operation.channel.clone(),
        command: operation.command.clone(),
        env: operation.env.clone().unwrap_or_default(),
        op_id: operation.id,
    }
}

/// Records one event on its own (a refusal, a hold that lapsed).
///
/// # Errors
/// When the entry cannot be written.
pub async fn record(
    app: &App,
    context: &AuditContext,
    event: AuditEvent,
) -> Result<(), StoreError> {
    let mut change = Change::begin(app).await?;
    change.record(context, event).await?;
    change.commit().await
}

/// After the commit: the log line, the metric and the audit-channel posts
/// of one entry (or its place in the periodic summary, for refusals of
/// people with no role). Audit entries never hold secrets.
fn announce(app: &App, stored: &AuditEntry, summarized: bool) {
    let entry = &stored.entry;
    tracing::info!(
        op_id = entry.op_id,
        command = %entry.command,
        env = %entry.env,
        user = %entry.actor,
        platform = %entry.platform,
        event = %entry.event,
        outcome = %entry.outcome,
        "audit"
    );
    app.metrics
        .count("deckhand_audit_events_total", ("event", &entry.event));
    if let Some(environment) = app.config.environment(&entry.env) {
        if summarized && !environment.audit_channels.is_empty() {
            app.audit.refusals.add(&entry.env, &entry.actor, entry.at);
            return;
        }
        for (platform, channel) in &environment.audit_channels {
            app.outbox.send(Outbound::Audit {
                platform: *platform,
                channel: channel.clone(),
                text: audit::format_entry(stored),
            });
        }
    }
}

/// Posts or edits an operation's message with its current state, when this
/// process is the one to publish it: its owner, or anyone once the owner's
/// lease has lapsed, and only with an adapter for its platform. Otherwise
/// the change waits in the store (`dirty`) for the process that is.
pub async fn publish(app: &App, op_id: i64) {
    let operation = match app.store.operation(op_id).await {
        Ok(Some(operation)) => operation,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(op_id, error = %error, "cannot load operation to publish");
            return;
        }
    };
    publish_record(app, operation).await;
}

/// Publishes every change this process must publish that is not shown yet:
/// its own operations changed by another replica, and those of owners whose
/// lease lapsed.
pub async fn publish_pending(app: &App) {
    let platforms = app.outbox.platforms();
    match app
        .store
        .unpublished(&app.instance, app.now(), &platforms)
        .await
    {
        Ok(pending) => {
            for (operation, _) in pending {
                publish_record(app, operation).await;
            }
        }
        Err(error) => tracing::warn!(error = %error, "cannot look for unpublished changes"),
    }
}

async fn publish_record(app: &App, operation: OperationRecord) {
    if !may_publish(app, &operation) {
        return;
    }
    // A read-only report appears when it starts running; a queued state
    // would only be noise.
    let read_only = app
        .catalog
        .get(&operation.command)
        .is_some_and(|spec| !spec.mutating);
    if read_only && operation.state == crate::policy::OpState::Approved {
        return;
    }
    let op_id = operation.id;
    let loaded = async {
        let steps = app.store.steps(op_id).await?;
        let approvals = app.store.approvals(op_id).await?;
        // Only PagerDuty's own operations answer an incident; the others
        // need not ask the store on every update.
        let incident = if operation.requester == PAGERDUTY_REQUESTER {
            app.store.incident_of_operation(op_id).await?
        } else {
            None
        };
        let queued_behind = queued_behind(app, &operation).await?;
        Ok::<_, StoreError>((steps, approvals, incident, queued_behind))
    }
    .await;
    let (steps, approvals, incident, queued_behind) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(op_id, error = %error, "cannot load operation to publish");
            return;
        }
    };
    let reply = message::operation_reply(&OperationView {
        operation: &operation,
        spec: app.catalog.get(&operation.command),
        plan: &Plan::from_json(&operation.plan),
        steps: &steps,
        approvals: &approvals,
        incident: incident.as_ref(),
        queued_behind: queued_behind.as_ref(),
    });
    app.outbox.send(Outbound::Operation {
        op_id,
        platform: operation.platform,
        channel: operation.channel.clone(),
        reply,
    });
    let published = Published {
        op_id,
        revision: operation.revision,
    };
    if let Err(error) = app.store.mark_published(&published).await {
        tracing::warn!(op_id, error = %error, "cannot record the published message");
    }
}

fn may_publish(app: &App, operation: &OperationRecord) -> bool {
    if !app.outbox.has_subscriber(operation.platform) {
        return false;
    }
    match &operation.owner {
        Some(owner) if *owner != app.instance => {
            operation.lease_until.is_none_or(|until| until <= app.now())
        }
        _ => true,
    }
}

/// What a queued operation waits for: the operation holding its
/// environment, or the older queued one that goes first.
async fn queued_behind(
    app: &App,
    operation: &OperationRecord,
) -> Result<Option<LockHolder>, StoreError> {
    let (Some(_), Some(env)) = (operation.queued_at, &operation.env) else {
        return Ok(None);
    };
    if let Some(holder) = app.store.lock_holder(env).await?
        && holder.op_id != operation.id
    {
        return Ok(Some(holder));
    }
    app.store
        .first_in_queue(env)
        .await
        .map(|first| first.filter(|first| first.op_id != operation.id))
}

/// Posts a step's output under the operation's message (a thread on
/// Slack): migration output, report rows.
pub fn detail(app: &App, operation: &OperationRecord, title: &str, output: &[String]) {
    if output.is_empty() {
        return;
    }
    app.outbox.send(Outbound::Detail {
        op_id: operation.id,
        platform: operation.platform,
        channel: operation.channel.clone(),
        text: format!("{title}:\n{}", output.join("\n")),
    });
}
