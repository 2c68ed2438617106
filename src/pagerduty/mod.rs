//! PagerDuty: v3 webhooks in, incident notes out.
//!
//! A verified webhook (the HTTP layer checks `X-PagerDuty-Signature` before anything
//! else) is deduplicated on its `X-Webhook-Id` and its event id, then read:
//! `incident.triggered` for a mapped service opens a diagnose operation in the mapped
//! channel (`flow::open_incident`) and runs it; `incident.acknowledged`, `.resolved` and
//! `.reopened` update the header of that operation's message; anything else, and
//! incidents of unmapped services, are logged and answered without effect.
//!
//! With `add_notes`, the report's summary is added to the incident as a note through
//! PagerDuty's REST API once the diagnosis finishes. This module reads no request
//! headers itself and names no web framework; `http::pagerduty` does that.

mod notes;
mod payload;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::app::App;
use crate::config::PagerDutySettings;
use crate::exec;
use crate::flow::{self, Delivery, DeliveryKey, IncidentError, NewIncident};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::verify::Verified;

pub use notes::NoteClient;
use payload::{RawEvent, RawIncident, RawWebhook};

/// What PagerDuty needs at run time: the signing secret and, for notes, the REST
/// client. Read from the environment variables config names.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The webhook subscription's signing secret.
    pub secret: Secret,
    /// The REST client for notes, when `add_notes` is on.
    pub notes: Option<NoteClient>,
}

/// Why PagerDuty could not be set up, or a webhook not handled.
#[derive(Debug, thiserror::Error)]
pub enum PagerDutyError {
    /// An environment variable config names is unset or empty.
    #[error("environment variable {variable} ({key}) is not set")]
    MissingVariable {
        /// The variable.
        variable: String,
        /// The config key naming it.
        key: &'static str,
    },
    /// The body is not a v3 webhook.
    #[error("not a PagerDuty v3 webhook: {0}")]
    BadPayload(String),
    /// The incident could not be answered.
    #[error(transparent)]
    Incident(#[from] IncidentError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A note could not be added.
    #[error("adding a note to incident {incident}: {reason}")]
    Note {
        /// The incident id.
        incident: String,
        /// What PagerDuty or the connection said.
        reason: String,
    },
}

/// What a webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A diagnosis started for a new incident.
    Opened {
        /// The diagnose operation.
        op_id: i64,
    },
    /// The header of an incident's report changed.
    Updated {
        /// The diagnose operation.
        op_id: i64,
    },
    /// Seen before; nothing happened again.
    Duplicate,
    /// An incident of a service no `[[pagerduty.services]]` maps; nothing posted.
    Unmapped {
        /// The PagerDuty service id.
        service_id: String,
    },
    /// An event Deckhand does not act on, or about an incident it did not answer.
    Ignored {
        /// The event type.
        event_type: String,
    },
}

impl Connection {
    /// Reads the secret (and the REST API key, with notes) from the environment.
    ///
    /// # Errors
    /// When a variable config names is unset or empty.
    pub fn from_env(settings: &PagerDutySettings) -> Result<Connection, PagerDutyError> {
        let secret = read_variable(&settings.secret_env, "pagerduty.secret_env")?;
        let notes = match &settings.notes {
            Some(notes) => {
                let token = read_variable(&notes.api_token_env, "pagerduty.api_token_env")?;
                Some(NoteClient::new(&settings.api_url, token, &notes.from_email))
            }
            None => None,
        };
        Ok(Connection { secret, notes })
    }
}

fn read_variable(variable: &str, key: &'static str) -> Result<Secret, PagerDutyError> {
    Secret::from_env(variable).ok_or_else(|| PagerDutyError::MissingVariable {
        variable: variable.to_string(),
        key,
    })
}

/// Handles one verified webhook. A started diagnosis runs in the background; this
/// returns as soon as it is recorded, well within PagerDuty's delivery timeout.
///
/// # Errors
/// A body that is not a v3 webhook, or a store failure.
pub async fn handle_webhook(
    app: &Arc<App>,
    connection: &Connection,
    body: Verified<bytes::Bytes>,
    webhook_id: Option<&str>,
) -> Result<WebhookOutcome, PagerDutyError> {
    let webhook: RawWebhook = serde_json::from_slice(body.as_ref())
        .map_err(|error| PagerDutyError::BadPayload(error.to_string()))?;
    let event = webhook.event;
    let Some(keys) = claim(app, webhook_id, &event.id).await? else {
        tracing::info!(event_id = %event.id, event_type = %event.event_type, "duplicate PagerDuty webhook ignored");
        return Ok(WebhookOutcome::Duplicate);
    };
    let handled = handle_event(app, connection, &event, &keys).await;
    for key in keys {
        // Handled: remembered, so a redelivery does nothing. Failed: given
        // back, so PagerDuty's retry (after our 5xx) is handled.
        match &handled {
            Ok(_) => flow::complete_delivery(app, key).await,
            Err(_) => flow::release_delivery(app, key).await,
        }
    }
    handled
}

async fn handle_event(
    app: &Arc<App>,
    connection: &Connection,
    event: &RawEvent,
    keys: &[DeliveryKey],
) -> Result<WebhookOutcome, PagerDutyError> {
    let ignored = || WebhookOutcome::Ignored {
        event_type: event.event_type.clone(),
    };
    let Some(incident) = event
        .data
        .as_ref()
        .filter(|_| event.resource_type.as_deref().unwrap_or("incident") == "incident")
    else {
        return Ok(ignored());
    };
    let status = match event.event_type.as_str() {
        "incident.triggered" => return open(app, connection, event, incident, keys).await,
        "incident.acknowledged" => "acknowledged",
        "incident.resolved" => "resolved",
        "incident.reopened" => "triggered",
        other => {
            tracing::debug!(event_type = other, "PagerDuty event not acted on");
            return Ok(ignored());
        }
    };
    let by = event
        .agent
        .as_ref()
        .and_then(|agent| agent.summary.as_deref());
    let at = parse_time(event.occurred_at.as_deref()).unwrap_or_else(|| app.now());
    match flow::update_incident(app, &incident.id, status, by, at).await? {
        Some(op_id) => Ok(WebhookOutcome::Updated { op_id }),
        None => Ok(ignored()),
    }
}

/// Claims the delivery under its webhook id and its event id; `None` when
/// either was handled before (or is being handled).
///
/// # Errors
/// When the store cannot be reached: the webhook is answered 500, so
/// PagerDuty retries, and nothing is handled unrecorded.
async fn claim(
    app: &App,
    webhook_id: Option<&str>,
    event_id: &str,
) -> Result<Option<Vec<DeliveryKey>>, StoreError> {
    let mut ids = vec![format!("event:{event_id}")];
    if let Some(webhook_id) = webhook_id {
        ids.push(format!("webhook:{webhook_id}"));
    }
    let mut keys = Vec::new();
    for id in ids {
        match flow::claim_delivery(app, "pagerduty", &id).await {
            Ok(Delivery::Fresh(key)) => keys.push(key),
            Ok(Delivery::Duplicate) => {
                for key in keys {
                    flow::release_delivery(app, key).await;
                }
                return Ok(None);
            }
            Err(error) => {
                for key in keys {
                    flow::release_delivery(app, key).await;
                }
                return Err(error);
            }
        }
    }
    Ok(Some(keys))
}

async fn open(
    app: &Arc<App>,
    connection: &Connection,
    event: &RawEvent,
    incident: &RawIncident,
    keys: &[DeliveryKey],
) -> Result<WebhookOutcome, PagerDutyError> {
    let service_id = incident
        .service
        .as_ref()
        .map(|service| service.id.clone())
        .unwrap_or_default();
    let mapping = app
        .config
        .pagerduty
        .as_ref()
        .and_then(|settings| settings.service(&service_id));
    let Some(mapping) = mapping else {
        tracing::info!(
            service_id = %service_id,
            incident = %incident.id,
            "PagerDuty incident for an unmapped service; nothing posted"
        );
        return Ok(WebhookOutcome::Unmapped { service_id });
    };
    let new_incident = NewIncident {
        incident_id: incident.id.clone(),
        number: incident.number,
        title: incident
            .title
            .clone()
            .unwrap_or_else(|| format!("incident {}", incident.id)),
        html_url: incident.html_url.clone().unwrap_or_default(),
        status: incident
            .status
            .clone()
            .unwrap_or_else(|| "triggered".to_string()),
        created_at: parse_time(incident.created_at.as_deref())
            .or_else(|| parse_time(event.occurred_at.as_deref()))
            .unwrap_or_else(|| app.now()),
    };
    let Some(op_id) = flow::open_incident(app, mapping, &service_id, &new_incident, keys).await?
    else {
        return Ok(WebhookOutcome::Duplicate);
    };
    tracing::info!(
        op_id,
        incident = %incident.id,
        env = %mapping.environment,
        platform = %mapping.platform,
        "PagerDuty incident: diagnosis started"
    );
    let runner = Arc::clone(app);
    let notes = connection.notes.clone();
    let incident_id = incident.id.clone();
    app.spawn(async move {
        exec::run_operation(Arc::clone(&runner), op_id).await;
        if let Some(notes) = notes {
            note_report(&runner, &notes, op_id, &incident_id).await;
        }
    });
    Ok(WebhookOutcome::Opened { op_id })
}

/// Adds the finished report's summary as a note on the incident; a failure is logged,
/// since the report itself is already in the channel.
async fn note_report(app: &App, notes: &NoteClient, op_id: i64, incident_id: &str) {
    let content = match report_summary(app, op_id).await {
        Ok(content) => content,
        Err(error) => {
            tracing::error!(op_id, error = %error, "cannot read the report for the incident note");
            return;
        }
    };
    match notes.add_note(incident_id, &content).await {
        Ok(()) => tracing::info!(
            op_id,
            incident = incident_id,
            "report added to the incident as a note"
        ),
        Err(error) => {
            tracing::error!(op_id, incident = incident_id, error = %error, "cannot add the report as an incident note")
        }
    }
}

/// `Deckhand diagnosis #5 of staging: 2 failing, …` and one line per check.
async fn report_summary(app: &App, op_id: i64) -> Result<String, StoreError> {
    let operation = app.store.operation(op_id).await?;
    let steps = app.store.steps(op_id).await?;
    let env = operation
        .as_ref()
        .and_then(|operation| operation.env.clone())
        .unwrap_or_default();
    let mut text = format!("Deckhand diagnosis #{op_id} of {env}: ");
    match steps.iter().find(|step| step.kind == "diagnose") {
        Some(step) if step.state == "ok" => text.push_str(&step.detail),
        Some(step) => text.push_str(&format!("the diagnosis failed: {}", step.detail)),
        None => text.push_str(
            operation
                .and_then(|operation| operation.outcome)
                .as_deref()
                .unwrap_or("no report"),
        ),
    }
    Ok(text)
}

fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}
