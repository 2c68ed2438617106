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

/// Property tests of the webhook decoder: any bytes decode or are refused
/// without a panic, and PagerDuty's documented payloads decode.
#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pagerduty")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    #[test]
    fn the_documented_payloads_decode() {
        for name in [
            "incident_triggered.json",
            "incident_acknowledged.json",
            "incident_resolved.json",
            "incident_priority_updated_doc_example.json",
        ] {
            let webhook: RawWebhook = serde_json::from_slice(&fixture(name))
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            assert!(webhook.event.event_type.starts_with("incident."), "{name}");
        }
    }

    /// A documented payload with one value replaced by another JSON value.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let original: serde_json::Value =
            serde_json::from_slice(&fixture("incident_triggered.json")).expect("JSON");
        let replacement = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            "\\PC{0,20}".prop_map(serde_json::Value::from),
            Just(serde_json::json!({})),
            Just(serde_json::json!([])),
        ];
        (
            proptest::sample::select(vec![
                "/event",
                "/event/id",
                "/event/event_type",
                "/event/data",
                "/event/data/id",
                "/event/data/service",
                "/event/data/number",
                "/event/agent",
                "/event/occurred_at",
            ]),
            replacement,
        )
            .prop_map(move |(pointer, value)| {
                let mut changed = original.clone();
                if let Some(slot) = changed.pointer_mut(pointer) {
                    *slot = value;
                }
                serde_json::to_vec(&changed).unwrap_or_default()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_body_decodes_or_is_refused_without_panicking(
            body in prop_oneof![proptest::collection::vec(any::<u8>(), 0..400), mutated()]
        ) {
            let _ = serde_json::from_slice::<RawWebhook>(&body);
        }
    }
}
