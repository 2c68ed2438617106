//! Incidents in the request flow: a PagerDuty incident for a mapped service becomes a
//! `/diagnose ENV` operation requested by `pagerduty` in the mapped channel, so every
//! adapter posts and edits its report like any other operation's message. Its status
//! changes (acknowledged, resolved) edit that message's header.
//!
//! PagerDuty is not a person and holds no role: a verified webhook is its authority, so
//! policy is not consulted, and only the read-only `diagnose` command is ever started
//! this way.

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::audit::{AuditContext, AuditEvent};
use crate::config::PagerDutyService;
use crate::events::{self, Change};
use crate::exec::{self, OperationInput};
use crate::names::PAGERDUTY_REQUESTER;
use crate::parse::{ParseError, parse_action};
use crate::policy::OpState;
use crate::store::{IncidentRecord, NewOperation, StoreError};

use super::DeliveryKey;

/// A new incident, as the webhook described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    /// PagerDuty's incident id.
    pub incident_id: String,
    /// The incident number people see.
    pub number: Option<i64>,
    /// Its title.
    pub title: String,
    /// Its page in PagerDuty.
    pub html_url: String,
    /// Its status, normally `triggered`.
    pub status: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
}

/// Why an incident could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// `/diagnose ENV` is not a valid request with the current commands and config.
    #[error("cannot start \"/diagnose {env}\" for the incident: {source}")]
    Request {
        /// The mapped environment.
        env: String,
        /// What the parser said.
        #[source]
        source: ParseError,
    },
    /// The diagnosis could not be planned.
    #[error("cannot plan the diagnosis of {env}: {reason}")]
    Plan {
        /// The mapped environment.
        env: String,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates the diagnose operation answering a new incident in the mapped channel and
/// records the incident, in one change with its audit entry and the deliveries that
/// carried it; the caller runs the operation. `None` when this incident was answered
/// before (a redelivered trigger).
///
/// # Errors
/// When `/diagnose ENV` cannot be requested (no such command) or the store fails.
pub async fn open_incident(
    app: &App,
    mapping: &PagerDutyService,
    service_id: &str,
    incident: &NewIncident,
    deliveries: &[DeliveryKey],
) -> Result<Option<i64>, IncidentError> {
    if app.store.incident(&incident.incident_id).await?.is_some() {
        return Ok(None);
    }
    let env = mapping.environment.to_string();
    let text = format!("/diagnose {env}");
    let action = parse_action(&text, &app.catalog, &app.config).map_err(|source| {
        IncidentError::Request {
            env: env.clone(),
            source,
        }
    })?;
    let Some(spec) = app.catalog.get(action.command.as_str()) else {
        return Err(IncidentError::Plan {
            env,
            reason: "the diagnose command is not declared".to_string(),
        });
    };
    let input = OperationInput {
        action: &action,
        spec,
        env: app.config.environment(&env),
        requester: PAGERDUTY_REQUESTER,
    };
    let plan = exec::plan(app, &input)
        .await
        .map_err(|error| IncidentError::Plan {
            env: env.clone(),
            reason: error.to_string(),
        })?;
    let mut change = Change::begin(app).await?;
    let now = change.now();
    let op_id = change
        .insert_operation(&NewOperation {
            command: spec.name.to_string(),
            env: Some(env.clone()),
            command_line: action.to_command_line(spec),
            params_hash: action.params_hash(),
            plan: plan.to_json(),
            requester: PAGERDUTY_REQUESTER.to_string(),
            requester_id: None,
            requester_os: None,
            platform: mapping.platform,
            channel: mapping.channel.clone(),
            state: OpState::Approved,
            approvals_needed: 0,
            approver_roles: Vec::new(),
            created_at: now,
            expires_at: None,
        })
        .await?;
    let record = IncidentRecord {
        incident_id: incident.incident_id.clone(),
        op_id,
        env: env.clone(),
        service_id: service_id.to_string(),
        number: incident.number,
        title: incident.title.clone(),
        html_url: incident.html_url.clone(),
        status: incident.status.clone(),
        status_by: None,
        created_at: incident.created_at,
        updated_at: incident.created_at,
    };
    if !change.tx().insert_incident(&record).await? {
        // Another delivery of the same trigger won the race; nothing of
        // this change happens.
        return Ok(None);
    }
    let context = AuditContext {
        actor: PAGERDUTY_REQUESTER.to_string(),
        platform: mapping.platform,
        channel: mapping.channel.clone(),
        command: spec.name.to_string(),
        env,
        op_id,
    };
    change
        .record(
            &context,
            AuditEvent::Requested {
                approvals_needed: 0,
            },
        )
        .await?;
    for delivery in deliveries {
        change
            .tx()
            .complete_delivery(delivery.as_str(), now)
            .await?;
    }
    change.commit().await?;
    Ok(Some(op_id))
}

/// Records an incident's new status and edits its message's header. Returns the
/// operation whose message changed; `None` for an incident Deckhand did not answer, or
/// a status change older than the one recorded.
///
/// # Errors
/// When the store fails.
pub async fn update_incident(
    app: &App,
    incident_id: &str,
    status: &str,
    status_by: Option<&str>,
    at: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    let Some(incident) = app.store.incident(incident_id).await? else {
        return Ok(None);
    };
    if !app
        .store
        .update_incident_status(incident_id, status, status_by, at)
        .await?
    {
        return Ok(None);
    }
    tracing::info!(
        op_id = incident.op_id,
        incident = incident_id,
        status,
        "incident status changed"
    );
    events::publish(app, incident.op_id).await;
    Ok(Some(incident.op_id))
}
