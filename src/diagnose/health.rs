//! Runbook "Health Check Endpoints": every configured health path of every service
//! (`/health`, `/health/ready`, `/health/live`), with status and latency.

use futures_util::future::join_all;

use crate::config::Service;
use crate::probe::{ProbeResult, probe};

use super::{Check, Finding, Subject};

/// Probes every health endpoint at once.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let limit = subject.command_limit();
    let endpoints: Vec<(&Service, String)> = subject
        .services
        .iter()
        .filter_map(|entry| {
            let base = entry.service.url.as_deref()?;
            Some(
                entry
                    .service
                    .health
                    .iter()
                    .map(move |path| (entry.service, format!("{base}{path}"))),
            )
        })
        .flatten()
        .collect();
    if endpoints.is_empty() {
        return Finding::ok(Check::Health, "no health endpoints configured");
    }
    let results = join_all(endpoints.iter().map(|(_, url)| probe(url, limit))).await;
    let evidence: Vec<String> = endpoints
        .iter()
        .zip(&results)
        .map(|((service, _), result)| format!("{}: {}", service.name, describe(result)))
        .collect();
    let failing: Vec<(&Service, &ProbeResult)> = endpoints
        .iter()
        .zip(&results)
        .filter(|(_, result)| !result.is_success())
        .map(|((service, _), result)| (*service, result))
        .collect();
    let finding = match failing.first() {
        None => {
            let slowest = results
                .iter()
                .max_by_key(|result| result.latency)
                .map(|result| format!("; slowest {}", describe(result)))
                .unwrap_or_default();
            Finding::ok(
                Check::Health,
                format!("{} endpoint(s) answer{slowest}", results.len()),
            )
        }
        Some((service, _)) => {
            let lines: Vec<String> = failing
                .iter()
                .map(|(service, result)| format!("{} {}", service.name, describe(result)))
                .collect();
            Finding::fail(Check::Health, lines.join("; "))
                .with_fix(Some(subject.restart_command(service)))
        }
    };
    finding.with_evidence(evidence)
}

/// `http://…/health 200 in 12 ms`, or the reason nothing came back.
fn describe(result: &ProbeResult) -> String {
    let latency = result.latency.as_millis();
    match (result.status, &result.error) {
        (Some(status), None) => format!("{} {status} in {latency} ms", result.url),
        (Some(status), Some(error)) => format!("{} {status}, {error}", result.url),
        (None, Some(error)) => format!("{} {error} after {latency} ms", result.url),
        (None, None) => format!("{} no answer", result.url),
    }
}
