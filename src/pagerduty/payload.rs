//! The serialized shape of a PagerDuty v3 webhook (`{"event": {…}}`), a contract with
//! PagerDuty kept apart from what Deckhand makes of it. Only the fields Deckhand reads
//! are declared; PagerDuty adds fields freely, so unknown ones are ignored.

use serde::Deserialize;

/// The whole body.
#[derive(Debug, Deserialize)]
pub struct RawWebhook {
    /// The one event a v3 delivery carries.
    pub event: RawEvent,
}

/// `event`.
#[derive(Debug, Deserialize)]
pub struct RawEvent {
    /// Unique per event, stable across redeliveries.
    pub id: String,
    /// e.g. `incident.triggered`.
    pub event_type: String,
    /// e.g. `incident`.
    pub resource_type: Option<String>,
    /// When it happened, RFC 3339.
    pub occurred_at: Option<String>,
    /// Who caused it.
    pub agent: Option<RawReference>,
    /// The resource; an incident for `incident.*` events.
    pub data: Option<RawIncident>,
}

/// `event.data` of an incident event.
#[derive(Debug, Deserialize)]
pub struct RawIncident {
    /// Incident id, e.g. `Q1CHATOPS01AB`.
    pub id: String,
    /// The number people see.
    pub number: Option<i64>,
    /// `triggered`, `acknowledged` or `resolved`.
    pub status: Option<String>,
    /// Its title.
    pub title: Option<String>,
    /// Its page.
    pub html_url: Option<String>,
    /// When it was created, RFC 3339.
    pub created_at: Option<String>,
    /// The service it was raised on.
    pub service: Option<RawReference>,
}

/// A reference to another PagerDuty object.
#[derive(Debug, Deserialize)]
pub struct RawReference {
    /// Its id.
    pub id: String,
    /// Its name.
    pub summary: Option<String>,
}
