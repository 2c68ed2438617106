//! Runbook "Disk Space Issues": `docker system df` (images, containers, volumes, build
//! cache, and what removing the unused ones would free) and the host's free space as the
//! Docker host sees it: `df` inside a running container reports the filesystem that holds
//! Docker's data, which is the one that fills up.

use crate::docker::{ContainerInfo, DiskUsage, UsageSummary};

use super::{Check, Finding, Status, Subject, format_bytes};

/// The host's disk as `df -Pk /` in a container reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HostDisk {
    used_bytes: u64,
    available_bytes: u64,
}

impl HostDisk {
    fn percent_used(self) -> f64 {
        let total = self.used_bytes + self.available_bytes;
        if total == 0 {
            return 0.0;
        }
        self.used_bytes as f64 * 100.0 / total as f64
    }
}

/// Docker's disk usage and the host's free space against the thresholds.
pub async fn check(subject: &Subject<'_>) -> Finding {
    let thresholds = subject.environment.diagnose.disk;
    let cleanup = Some(format!("/cleanup {}", subject.env()));
    let probe = subject.running().map(|(_, container)| container).next();
    let (usage, host_disk) = tokio::join!(subject.host.disk_usage(), host_disk(subject, probe));
    let mut evidence = Vec::new();
    let reclaimable = match &usage {
        Ok(usage) => {
            evidence.extend(describe_usage(usage));
            reclaimable_total(usage)
        }
        Err(error) => {
            evidence.push(format!("docker disk usage unavailable: {error}"));
            0
        }
    };
    let finding = match host_disk {
        Ok(disk) => {
            let percent = disk.percent_used();
            evidence.push(format!(
                "host disk (df in {}): {} free of {} ({percent:.0}% used)",
                probe
                    .map(|container| container.name.as_str())
                    .unwrap_or("?"),
                format_bytes(disk.available_bytes),
                format_bytes(disk.used_bytes + disk.available_bytes)
            ));
            let status = Status::of_percent(percent, thresholds);
            Finding::new(
                Check::Disk,
                status,
                format!(
                    "{percent:.0}% of the host's disk used, {} free; {} reclaimable",
                    format_bytes(disk.available_bytes),
                    format_bytes(reclaimable)
                ),
            )
        }
        Err(reason) => {
            evidence.push(format!("host free space unknown: {reason}"));
            match &usage {
                Ok(_) => Finding::ok(
                    Check::Disk,
                    format!(
                        "{} reclaimable; the host's free space is unknown",
                        format_bytes(reclaimable)
                    ),
                ),
                Err(error) => Finding::new(
                    Check::Disk,
                    Status::Warn,
                    format!("cannot read disk usage: {error}"),
                ),
            }
        }
    };
    finding.with_fix(cleanup).with_evidence(evidence)
}

async fn host_disk(
    subject: &Subject<'_>,
    probe: Option<&ContainerInfo>,
) -> Result<HostDisk, String> {
    let container = probe.ok_or("no running container to run df in")?;
    let mut output = subject
        .exec(container, &["df", "-Pk", "/"])
        .await
        .map_err(|error| error.to_string())?;
    // Images built from scratch with a bare busybox have no df link, only the applet.
    if matches!(output.exit_code, 126 | 127) {
        output = subject
            .exec(container, &["busybox", "df", "-Pk", "/"])
            .await
            .map_err(|error| error.to_string())?;
    }
    if output.exit_code != 0 {
        return Err(format!(
            "df exited with code {} in {}",
            output.exit_code, container.name
        ));
    }
    parse_df(&output.stdout_text()).ok_or_else(|| "df printed no usage line".to_string())
}

/// Reads POSIX `df -Pk` output: a header, then `fs blocks used available capacity mount`.
fn parse_df(text: &str) -> Option<HostDisk> {
    let line = text.lines().nth(1)?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let used: u64 = fields.get(2)?.parse().ok()?;
    let available: u64 = fields.get(3)?.parse().ok()?;
    Some(HostDisk {
        used_bytes: used * 1024,
        available_bytes: available * 1024,
    })
}

fn describe_usage(usage: &DiskUsage) -> Vec<String> {
    let mut lines = vec![
        describe_summary("images", &usage.images),
        describe_summary("containers", &usage.containers),
        describe_summary("volumes", &usage.volumes),
    ];
    match &usage.build_cache {
        Some(cache) => lines.push(describe_summary("build cache", cache)),
        None => lines.push("build cache: not reported by this engine".to_string()),
    }
    lines
}

/// `images: 34 (12 in use), 15.2 GiB, 3.1 GiB reclaimable`.
fn describe_summary(what: &str, summary: &UsageSummary) -> String {
    let mut line = format!(
        "{what}: {} ({} in use)",
        summary.total_count, summary.active_count
    );
    if let Some(size) = summary.size_bytes {
        line.push_str(&format!(", {}", format_bytes(size)));
    }
    if let Some(reclaimable) = summary.reclaimable_bytes {
        line.push_str(&format!(", {} reclaimable", format_bytes(reclaimable)));
    }
    line
}

fn reclaimable_total(usage: &DiskUsage) -> u64 {
    [
        Some(&usage.images),
        Some(&usage.containers),
        Some(&usage.volumes),
        usage.build_cache.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|summary| summary.reclaimable_bytes)
    .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_output_is_read_from_its_second_line() {
        let busybox = "Filesystem           1024-blocks    Used Available Capacity Mounted on\noverlay              102687672  53256680  44172152  55% /\n";
        let disk = parse_df(busybox).expect("a usage line");
        assert_eq!(disk.used_bytes, 53_256_680 * 1024);
        assert_eq!(disk.available_bytes, 44_172_152 * 1024);
        assert_eq!(format!("{:.0}", disk.percent_used()), "55");
        assert_eq!(parse_df("Filesystem 1024-blocks Used\n"), None);
    }
}
