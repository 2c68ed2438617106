//! Counters for `/health/metrics`, in Prometheus text format. Audit events
//! are counted where they are recorded; adapters report their connection
//! state here. Deliberately tiny: a map of counters and gauges, no labels
//! beyond one per series.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counters and gauges by series name (`name{label="value"}`).
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<String, u64>>,
    gauges: Mutex<BTreeMap<String, i64>>,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn count(&self, name: &str, label: (&str, &str)) {
        if let Ok(mut counters) = self.counters.lock() {
            *counters.entry(series(name, label)).or_insert(0) += 1;
        }
    }

    /// Sets a gauge.
    pub fn set(&self, name: &str, label: (&str, &str), value: i64) {
        if let Ok(mut gauges) = self.gauges.lock() {
            gauges.insert(series(name, label), value);
        }
    }

    /// A gauge's value.
    pub fn gauge(&self, name: &str, label: (&str, &str)) -> Option<i64> {
        self.gauges.lock().ok()?.get(&series(name, label)).copied()
    }

    /// Every series in Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Ok(counters) = self.counters.lock() {
            render_family(
                &mut text,
                "counter",
                counters
                    .iter()
                    .map(|(name, value)| (name, value.to_string())),
            );
        }
        if let Ok(gauges) = self.gauges.lock() {
            render_family(
                &mut text,
                "gauge",
                gauges.iter().map(|(name, value)| (name, value.to_string())),
            );
        }
        text
    }
}

fn render_family<'a>(
    text: &mut String,
    kind: &str,
    series: impl Iterator<Item = (&'a String, String)>,
) {
    let mut last_family = String::new();
    for (name, value) in series {
        let family = name.split('{').next().unwrap_or(name);
        if family != last_family {
            text.push_str(&format!("# TYPE {family} {kind}\n"));
            last_family = family.to_string();
        }
        text.push_str(&format!("{name} {value}\n"));
    }
}

fn series(name: &str, (label, value): (&str, &str)) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{name}{{{label}=\"{escaped}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics.count("deckhand_audit_events_total", ("event", "requested"));
        metrics.count("deckhand_audit_events_total", ("event", "requested"));
        metrics.count("deckhand_audit_events_total", ("event", "refused"));
        metrics.set("deckhand_chat_connected", ("platform", "slack"), 1);
        assert_eq!(
            metrics.render(),
            "# TYPE deckhand_audit_events_total counter\n\
             deckhand_audit_events_total{event=\"refused\"} 1\n\
             deckhand_audit_events_total{event=\"requested\"} 2\n\
             # TYPE deckhand_chat_connected gauge\n\
             deckhand_chat_connected{platform=\"slack\"} 1\n"
        );
    }
}
