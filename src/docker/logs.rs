//! Reading a container's logs (the runbook's `docker-compose logs --tail=100`), and the
//! "last lines" that failure reports quote.

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;

use super::error::DockerError;
use super::host::DockerHost;

/// How many log lines a failure report quotes.
pub(super) const FAILURE_LOG_LINES: usize = 20;

/// Which part of a container's logs to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogQuery {
    /// Only the last this many lines; all lines when `None`.
    pub tail: Option<usize>,
    /// Only lines logged at or after this time (Docker counts whole seconds).
    pub since: Option<DateTime<Utc>>,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When Docker recorded the line.
    pub timestamp: Option<DateTime<Utc>>,
    /// The stream it was written to.
    pub stream: LogStream,
    /// The line without its newline.
    pub text: String,
}

impl DockerHost {
    /// Reads log lines of a container, oldest first.
    ///
    /// # Errors
    ///
    /// [`DockerError::Api`] when the container does not exist or its log driver cannot be
    /// read.
    pub async fn logs(
        &self,
        container: &str,
        query: LogQuery,
    ) -> Result<Vec<LogLine>, DockerError> {
        let tail = query
            .tail
            .map_or_else(|| "all".to_string(), |tail| tail.to_string());
        let since = query
            .since
            .map(|since| i32::try_from(since.timestamp()).unwrap_or(i32::MAX))
            .unwrap_or(0);
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(false)
            .tail(&tail)
            .since(since)
            .build();
        let chunks: Vec<LogOutput> = self
            .call(
                format!("reading logs of \"{container}\""),
                self.client().logs(container, Some(options)).try_collect(),
            )
            .await?;
        Ok(chunks.into_iter().flat_map(lines_of).collect())
    }

    /// The last lines of a container's stdout and stderr, text only, for failure reports.
    pub(super) async fn last_lines(&self, container: &str) -> Result<Vec<String>, DockerError> {
        let query = LogQuery {
            tail: Some(FAILURE_LOG_LINES),
            since: None,
        };
        let lines = self.logs(container, query).await?;
        Ok(lines.into_iter().map(|line| line.text).collect())
    }

    /// Like `last_lines`, for a report about something else (a health
    /// outcome): when the logs cannot be read, one line saying so instead
    /// of failing the report.
    pub(super) async fn last_lines_or_why(&self, container: &str) -> Vec<String> {
        self.last_lines(container)
            .await
            .unwrap_or_else(|error| vec![format!("(its logs could not be read: {error})")])
    }
}

/// Splits one chunk of multiplexed output into timestamped lines.
fn lines_of(chunk: LogOutput) -> Vec<LogLine> {
    let (stream, message) = match chunk {
        LogOutput::StdErr { message } => (LogStream::Stderr, message),
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (LogStream::Stdout, message)
        }
        LogOutput::StdIn { .. } => return Vec::new(),
    };
    String::from_utf8_lossy(&message)
        .lines()
        .map(|line| {
            let (timestamp, text) = split_timestamp(line);
            LogLine {
                timestamp,
                stream,
                text: text.trim_end_matches('\r').to_string(),
            }
        })
        .collect()
}

/// Docker prefixes each line with an RFC 3339 timestamp and a space when asked to.
fn split_timestamp(line: &str) -> (Option<DateTime<Utc>>, &str) {
    if let Some((prefix, rest)) = line.split_once(' ')
        && let Ok(timestamp) = DateTime::parse_from_rfc3339(prefix)
    {
        return (Some(timestamp.with_timezone(&Utc)), rest);
    }
    (None, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_split_off() {
        let chunk = LogOutput::StdErr {
            message: "2024-01-15T10:30:00.5Z error: boom\n2024-01-15T10:30:01Z next\n".into(),
        };
        let lines = lines_of(chunk);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "error: boom");
        assert_eq!(lines[0].stream, LogStream::Stderr);
        assert_eq!(
            lines[1].timestamp.map(|time| time.timestamp()),
            Some(1_705_314_601)
        );
        assert_eq!(
            split_timestamp("no timestamp here"),
            (None, "no timestamp here")
        );
    }
}
