//! Refusals of people with no role, gathered per environment: each is
//! still one audit entry in the store, but the audit channel gets at most
//! one summary line per environment per `[audit] refusal_summary_every`
//! instead of one line each, so junk from strangers cannot flood it.
//! Refusals of people who hold a role are posted one by one, as before;
//! deciding which is which is the caller's (the flow knows the sender).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::app::App;
use crate::chat::Outbound;
use crate::duration::format_duration;

/// At most this many people are named in one summary line.
const MAX_NAMED: usize = 10;

/// Refusals gathered per environment, waiting for their summary.
#[derive(Debug, Default)]
pub struct RefusalDigest {
    batches: Mutex<BTreeMap<String, Batch>>,
}

#[derive(Debug)]
struct Batch {
    opened_at: DateTime<Utc>,
    by_actor: BTreeMap<String, u32>,
}

impl RefusalDigest {
    /// Counts one refusal of `actor` in `env`.
    pub fn add(&self, env: &str, actor: &str, now: DateTime<Utc>) {
        let mut batches = self
            .batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let batch = batches.entry(env.to_string()).or_insert_with(|| Batch {
            opened_at: now,
            by_actor: BTreeMap::new(),
        });
        *batch.by_actor.entry(actor.to_string()).or_default() += 1;
    }

    /// Takes the batches opened at least `window` before `now` (all of them
    /// when `window` is `None`), as summary lines by environment.
    pub fn take_due(&self, now: DateTime<Utc>, window: Option<Duration>) -> Vec<(String, String)> {
        let mut batches = self
            .batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due: Vec<String> = batches
            .iter()
            .filter(|(_, batch)| match window {
                None => true,
                Some(window) => chrono::Duration::from_std(window)
                    .map(|window| now >= batch.opened_at + window)
                    .unwrap_or(true),
            })
            .map(|(env, _)| env.clone())
            .collect();
        due.into_iter()
            .filter_map(|env| {
                let batch = batches.remove(&env)?;
                let text = summary_line(&env, &batch.by_actor, window);
                Some((env, text))
            })
            .collect()
    }
}

/// Posts due summaries every second until shutdown, then the rest.
pub async fn run_refusal_summaries(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let window = app.config.audit.refusal_summary_every;
    let mut ticker = tokio::time::interval(Duration::from_secs(1).min(window));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => post_summaries(&app, Some(window)),
            _ = shutdown.changed() => {
                post_summaries(&app, None);
                return;
            }
        }
    }
}

/// Posts the summaries that are due (all with `window` `None`).
pub fn post_summaries(app: &App, window: Option<Duration>) {
    for (env, text) in app.audit.refusals.take_due(app.now(), window) {
        let Some(environment) = app.config.environment(&env) else {
            continue;
        };
        for (platform, channel) in &environment.audit_channels {
            app.outbox.send(Outbound::Audit {
                platform: *platform,
                channel: channel.clone(),
                text: text.clone(),
            });
        }
    }
}

/// `12 requests refused in staging from people with no role in the last 1m: slack:U1 ×10, slack:U2 ×2`
fn summary_line(env: &str, by_actor: &BTreeMap<String, u32>, window: Option<Duration>) -> String {
    let total: u32 = by_actor.values().sum();
    let mut actors: Vec<(&String, &u32)> = by_actor.iter().collect();
    actors.sort_by(|left, right| right.1.cmp(left.1).then(left.0.cmp(right.0)));
    let mut named: Vec<String> = actors
        .iter()
        .take(MAX_NAMED)
        .map(|(actor, count)| format!("{actor} ×{count}"))
        .collect();
    if actors.len() > MAX_NAMED {
        named.push(format!("and {} more", actors.len() - MAX_NAMED));
    }
    let requests = if total == 1 { "request" } else { "requests" };
    let period = match window {
        Some(window) => format!("in the last {}", format_duration(window)),
        None => "before shutdown".to_string(),
    };
    format!(
        "{total} {requests} refused in {env} from people with no role {period}: {}",
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 17, 0, second)
            .single()
            .expect("valid time")
    }

    #[test]
    fn one_line_per_environment_once_the_window_has_passed() {
        let digest = RefusalDigest::default();
        let minute = Some(Duration::from_secs(60));
        for _ in 0..10 {
            digest.add("staging", "slack:U123", at(0));
        }
        digest.add("staging", "discord:456", at(5));
        digest.add("staging", "discord:456", at(6));
        digest.add("production", "slack:U9", at(30));
        assert_eq!(digest.take_due(at(59), minute), Vec::new());
        let minute_later = at(0) + chrono::Duration::seconds(60);
        assert_eq!(
            digest.take_due(minute_later, minute),
            vec![(
                "staging".to_string(),
                "12 requests refused in staging from people with no role in the last 1m: slack:U123 ×10, discord:456 ×2".to_string()
            )]
        );
        assert_eq!(digest.take_due(minute_later, minute), Vec::new());
        assert_eq!(
            digest.take_due(minute_later, None),
            vec![(
                "production".to_string(),
                "1 request refused in production from people with no role before shutdown: slack:U9 ×1".to_string()
            )]
        );
    }

    #[test]
    fn a_long_list_names_the_most_frequent() {
        let digest = RefusalDigest::default();
        for person in 0..12 {
            for _ in 0..=person {
                digest.add("staging", &format!("slack:U{person:02}"), at(0));
            }
        }
        let lines = digest.take_due(at(0), None);
        assert_eq!(
            lines[0].1,
            "78 requests refused in staging from people with no role before shutdown: slack:U11 ×12, slack:U10 ×11, slack:U09 ×10, slack:U08 ×9, slack:U07 ×8, slack:U06 ×7, slack:U05 ×6, slack:U04 ×5, slack:U03 ×4, slack:U02 ×3, and 2 more"
        );
    }
}
