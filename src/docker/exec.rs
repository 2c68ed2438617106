//! Running a command inside a running container (`docker exec`), optionally feeding it
//! standard input, as the runbook's `psql`, `redis-cli` and `nginx -s reload` steps do.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::error::DockerError;
use super::host::DockerHost;

/// A command to run in a container.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Exec {
    /// The program and its arguments; no shell is involved unless this names one.
    pub cmd: Vec<String>,
    /// Extra environment variables, `(name, value)`. Values may be secrets and are never
    /// logged.
    pub env: Vec<(String, String)>,
    /// Bytes written to the command's standard input, which is then closed.
    pub stdin: Option<Vec<u8>>,
    /// Time allowed for the whole command.
    pub timeout: Duration,
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env_names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        formatter
            .debug_struct("Exec")
            .field("cmd", &self.cmd)
            .field("env", &env_names)
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What an exec'd command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The command's exit code.
    pub exit_code: i64,
    /// Everything it wrote to standard output.
    pub stdout: Vec<u8>,
    /// Everything it wrote to standard error.
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Standard output as text, invalid UTF-8 replaced.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text, invalid UTF-8 replaced.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl DockerHost {
    /// Runs a command in a running container and collects its output and exit code.
    ///
    /// # Errors
    ///
    /// [`DockerError::Timeout`] when it runs longer than `exec.timeout`; API failures, e.g.
    /// the container is not running.
    pub async fn exec(&self, container: &str, exec: Exec) -> Result<ExecOutput, DockerError> {
        let program = exec.cmd.first().cloned().unwrap_or_default();
        let action = format!("running \"{program}\" in \"{container}\"");
        let options = CreateExecOptions {
            cmd: Some(exec.cmd.clone()),
            env: Some(
                exec.env
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect(),
            ),
            attach_stdin: Some(exec.stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = self
            .call(
                action.clone(),
                self.client().create_exec(container, options),
            )
            .await?;
        let (stdout, stderr) = self
            .call_within(
                action.clone(),
                exec.timeout,
                self.run_attached(&created.id, exec.stdin),
            )
            .await?;
        let inspected = self
            .call(action, self.client().inspect_exec(&created.id))
            .await?;
        Ok(ExecOutput {
            exit_code: inspected.exit_code.unwrap_or(-1),
            stdout,
            stderr,
        })
    }

    /// Starts an exec, feeds its stdin while collecting its output, until it exits.
    async fn run_attached(
        &self,
        exec_id: &str,
        stdin: Option<Vec<u8>>,
    ) -> Result<(Vec<u8>, Vec<u8>), bollard::errors::Error> {
        let started = self.client().start_exec(exec_id, None).await?;
        let StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        // Writing and reading run together: a command that answers while it reads would
        // otherwise fill its output pipe and stall on a large input.
        let feed = async move {
            let Some(bytes) = stdin else {
                return Ok(());
            };
            input.write_all(&bytes).await?;
            input.flush().await?;
            // Closing our side tells the engine to close the command's stdin.
            input.shutdown().await
        };
        let collect = async move {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            while let Some(chunk) = output.next().await {
                match chunk? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        stdout.extend_from_slice(&message);
                    }
                    LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                    LogOutput::StdIn { .. } => {}
                }
            }
            Ok::<_, bollard::errors::Error>((stdout, stderr))
        };
        let (fed, collected) = tokio::join!(feed, collect);
        // A command that exits without reading its input breaks the pipe; its output and
        // exit code still tell the story, so a failed write is not an error of its own.
        if let Err(error) = fed {
            tracing::debug!(host = %self.name(), error = %error, "exec stdin not fully written");
        }
        collected
    }
}
