//! Runbook "High Memory Usage": memory per running container against its limit (the host's
//! memory when it has none), as `docker stats` shows it, and containers the kernel killed
//! for running out of memory.

use futures_util::future::join_all;

use crate::config::Service;
use crate::docker::{ContainerInfo, MemoryUsage};

use super::{Check, Finding, Status, Subject, format_bytes};

/// Memory of every running container against the environment's thresholds.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let thresholds = subject.environment.diagnose.memory;
    let running: Vec<(&Service, &ContainerInfo)> = subject.running().collect();
    let samples = join_all(
        running
            .iter()
            .map(|(_, container)| subject.host.stats_memory(&container.id)),
    )
    .await;
    let mut evidence = Vec::new();
    let mut worst: Option<(f64, &Service, &ContainerInfo, MemoryUsage)> = None;
    for ((service, container), sample) in running.iter().zip(samples) {
        match sample {
            Ok(usage) => {
                let percent = usage.percent();
                evidence.push(format!(
                    "{}: {} of {} ({percent:.1}%)",
                    container.name,
                    format_bytes(usage.used_bytes),
                    format_bytes(usage.limit_bytes)
                ));
                if worst.is_none_or(|(highest, ..)| percent > highest) {
                    worst = Some((percent, service, container, usage));
                }
            }
            Err(error) => evidence.push(format!("{}: no stats: {error}", container.name)),
        }
    }
    let killed: Vec<(&Service, &ContainerInfo)> = subject
        .services
        .iter()
        .flat_map(|entry| {
            entry
                .containers
                .iter()
                .flatten()
                .filter(|container| container.state.oom_killed)
                .map(move |container| (entry.service, container))
        })
        .collect();
    for (_, container) in &killed {
        evidence.push(format!(
            "{}: OOM-killed ({})",
            container.name, container.state.status
        ));
    }
    let finding = if let Some((service, container)) = killed.first() {
        Finding::fail(Check::Memory, format!("{} was OOM-killed", container.name))
            .with_fix(Some(subject.restart_command(service)))
    } else if let Some((percent, service, container, usage)) = worst {
        let status = Status::of_percent(percent, thresholds);
        let summary = match status {
            Status::Ok => format!(
                "highest {} at {percent:.0}% of its limit (warn at {}%)",
                container.name, thresholds.warn_percent
            ),
            _ => format!(
                "{} uses {} of {} ({percent:.0}%, {} at {}%)",
                container.name,
                format_bytes(usage.used_bytes),
                format_bytes(usage.limit_bytes),
                if status == Status::Fail {
                    "fail"
                } else {
                    "warn"
                },
                if status == Status::Fail {
                    thresholds.fail_percent
                } else {
                    thresholds.warn_percent
                }
            ),
        };
        Finding::new(Check::Memory, status, summary)
            .with_fix(Some(subject.restart_command(service)))
    } else {
        Finding::ok(Check::Memory, "no running container to measure")
    };
    finding.with_evidence(evidence)
}
