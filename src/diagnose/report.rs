//! Findings and the report they make: failures first, one line per check, the fitting
//! command beside each failure, and the evidence kept apart for a thread.

use std::time::Duration;

use super::{Check, seconds};
use crate::config::Thresholds;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Something is broken.
    Fail,
    /// Something needs attention soon.
    Warn,
    /// Nothing found.
    Ok,
}

impl Status {
    /// A usage of `percent` against warn and fail thresholds.
    pub fn of_percent(percent: f64, thresholds: Thresholds) -> Status {
        if percent >= f64::from(thresholds.fail_percent) {
            Status::Fail
        } else if percent >= f64::from(thresholds.warn_percent) {
            Status::Warn
        } else {
            Status::Ok
        }
    }

    /// `ok`, `warn` or `fail`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// The mark at the start of a report line.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Warn => "⚠",
            Status::Fail => "✗",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The check.
    pub check: Check,
    /// Its verdict.
    pub status: Status,
    /// One line: what is wrong, or that all is well.
    pub summary: String,
    /// What it saw, one fact per line.
    pub evidence: Vec<String>,
    /// The command that fits when it is not ok, e.g. `/service restart staging backend`.
    pub fix: Option<String>,
    /// How long the check took.
    pub elapsed: Duration,
}

impl Finding {
    /// A finding with this status and summary, no evidence and no fix yet.
    pub fn new(check: Check, status: Status, summary: impl Into<String>) -> Finding {
        Finding {
            check,
            status,
            summary: summary.into(),
            evidence: Vec::new(),
            fix: None,
            elapsed: Duration::ZERO,
        }
    }

    /// An ok finding.
    pub fn ok(check: Check, summary: impl Into<String>) -> Finding {
        Finding::new(check, Status::Ok, summary)
    }

    /// A failing finding.
    pub fn fail(check: Check, summary: impl Into<String>) -> Finding {
        Finding::new(check, Status::Fail, summary)
    }

    /// The finding with its evidence.
    pub fn with_evidence(mut self, evidence: Vec<String>) -> Finding {
        self.evidence = evidence;
        self
    }

    /// The finding with the command that fits, shown only when it is not ok.
    pub fn with_fix(mut self, fix: Option<String>) -> Finding {
        self.fix = fix;
        self
    }

    /// The finding with its duration.
    pub fn took(mut self, elapsed: Duration) -> Finding {
        self.elapsed = elapsed;
        self
    }

    /// `✗ database: postgres: connection refused → /service restart staging postgres`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {}: {}",
            self.status.mark(),
            self.check.name(),
            self.summary
        );
        if let (Some(fix), false) = (&self.fix, self.status == Status::Ok) {
            line.push_str(" → ");
            line.push_str(fix);
        }
        line
    }
}

/// Every finding of one run, failures first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Findings, failures first, then warnings, then the rest, each group in check order.
    pub findings: Vec<Finding>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

impl Report {
    /// Orders the findings for reading.
    pub fn new(mut findings: Vec<Finding>, elapsed: Duration) -> Report {
        findings.sort_by_key(|finding| finding.status);
        Report { findings, elapsed }
    }

    /// How many findings have this status.
    pub fn count(&self, status: Status) -> usize {
        self.findings
            .iter()
            .filter(|finding| finding.status == status)
            .count()
    }

    /// The worst status found; ok for an empty report.
    pub fn worst(&self) -> Status {
        self.findings
            .iter()
            .map(|finding| finding.status)
            .min()
            .unwrap_or(Status::Ok)
    }

    /// `2 failing, 1 warning, 8 ok in 1.3 s`.
    pub fn headline(&self) -> String {
        let plural = |count: usize, one: &str, many: &str| {
            format!("{count} {}", if count == 1 { one } else { many })
        };
        format!(
            "{}, {}, {} ok in {}",
            plural(self.count(Status::Fail), "failing", "failing"),
            plural(self.count(Status::Warn), "warning", "warnings"),
            self.count(Status::Ok),
            seconds(self.elapsed)
        )
    }

    /// One line per check, failures first.
    pub fn lines(&self) -> Vec<String> {
        self.findings.iter().map(Finding::line).collect()
    }

    /// The commands that fit, in order and without repeats.
    pub fn fixes(&self) -> Vec<String> {
        let mut fixes: Vec<String> = Vec::new();
        for finding in &self.findings {
            if let (Some(fix), false) = (&finding.fix, finding.status == Status::Ok)
                && !fixes.contains(fix)
            {
                fixes.push(fix.clone());
            }
        }
        fixes
    }

    /// The evidence of every check, as a thread message: a heading per check, then its
    /// facts.
    pub fn evidence_text(&self) -> String {
        let mut text = String::from("evidence:");
        for finding in &self.findings {
            text.push_str(&format!(
                "\n{} {} ({} ms)",
                finding.status.mark(),
                finding.check.name(),
                finding.elapsed.as_millis()
            ));
            for fact in &finding.evidence {
                text.push_str("\n  ");
                text.push_str(fact);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report::new(
            vec![
                Finding::ok(Check::Start, "6 services running"),
                Finding::new(Check::Tls, Status::Warn, "localhost expires in 20 days")
                    .with_fix(Some("/rotate ssl staging".to_string())),
                Finding::fail(Check::Database, "postgres: connection refused")
                    .with_fix(Some("/service restart staging postgres".to_string()))
                    .with_evidence(vec!["postgres_1: running".to_string()]),
                Finding::ok(Check::Redis, "redis: PONG")
                    .with_fix(Some("/service restart staging redis".to_string())),
            ],
            Duration::from_millis(1300),
        )
    }

    #[test]
    fn failures_come_first_and_fixes_only_where_not_ok() {
        let report = report();
        assert_eq!(
            report.lines(),
            [
                "✗ database: postgres: connection refused → /service restart staging postgres",
                "⚠ tls: localhost expires in 20 days → /rotate ssl staging",
                "✓ start: 6 services running",
                "✓ redis: redis: PONG",
            ]
        );
        assert_eq!(report.headline(), "1 failing, 1 warning, 2 ok in 1.3 s");
        assert_eq!(
            report.fixes(),
            ["/service restart staging postgres", "/rotate ssl staging"]
        );
        assert_eq!(report.worst(), Status::Fail);
        assert!(
            report
                .evidence_text()
                .starts_with("evidence:\n✗ database (0 ms)\n  postgres_1: running")
        );
    }
}
