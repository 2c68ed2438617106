//! The console adapter: the whole product in a terminal, without a chat
//! platform. Lines starting with `/` are slash commands from the current
//! user; `:as USER`, `:approve N`, `:reject N`, `:withdraw N` and `:quit`
//! drive the rest. Every message Deckhand would post, and every edit of it,
//! is printed as plain text. Like every adapter it only translates.
//!
//! The console is the operating-system user running it, mapped to a person
//! through `[[users]] console = "…"`; acting as someone else (`--as`,
//! `:as`) needs `[console] impersonation = true`, and every audit entry
//! names the operating-system user either way.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::app::App;
use crate::chat::text::render;
use crate::chat::{Answer, Outbound, Reply, Request, Subscription, Tone};
use crate::flow::{self, Feedback, Sender};
use crate::names::Platform;

/// The console's one channel.
pub const CHANNEL: &str = "console";

/// Reads commands from `input` until it ends or `:quit`, printing every
/// message to `output`; then waits for running operations to finish and
/// prints their last messages.
///
/// # Errors
/// When reading input or writing output fails.
pub async fn run<R, W>(
    app: Arc<App>,
    input: R,
    output: &mut W,
    operator: &Operator,
    prompt: bool,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: Write,
{
    let mut console = Console {
        app: Arc::clone(&app),
        user: operator.acting_as.clone(),
        os_user: operator.os_user.clone(),
        posted: BTreeSet::new(),
        outbound: app.outbox.subscribe(Platform::Console),
        prompt,
    };
    console.greet(output)?;
    let mut lines = input.lines();
    loop {
        console.show_prompt(output)?;
        let line = tokio::select! {
            line = lines.next_line() => line?,
            Some(message) = console.outbound.recv() => {
                console.print_outbound(output, message)?;
                continue;
            }
        };
        let Some(line) = line else { break };
        if !console.handle_line(output, line.trim()).await? {
            break;
        }
        if !console.prompt {
            // Piped input runs like a script: each line's operation ends
            // (or waits for approval) before the next line is read.
            console.settle(output).await?;
        }
        console.drain(output)?;
    }
    console.finish(output).await
}

/// Who is at the console: the operating-system user running it, and the
/// console name they act as (their own unless config allows impersonation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The operating-system user.
    pub os_user: String,
    /// The console name acted as.
    pub acting_as: String,
}

/// Why the console cannot act as someone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    /// `--as` or `:as` while impersonation is off.
    #[error(
        "cannot act as \"{requested}\": [console] impersonation is off, so the console acts as the operating-system user running it ({os_user}, mapped through [[users]] console = \"{os_user}\")"
    )]
    ImpersonationOff {
        /// Who was asked for.
        requested: String,
        /// The operating-system user.
        os_user: String,
    },
}

impl Operator {
    /// The operator for `os_user`, acting as `requested` when given; that
    /// needs `[console] impersonation = true` unless it is themselves.
    ///
    /// # Errors
    /// `ImpersonationOff` when impersonation is needed and off.
    pub fn new(
        app: &App,
        os_user: &str,
        requested: Option<&str>,
    ) -> Result<Operator, ConsoleError> {
        let acting_as = match requested {
            Some(requested) if requested != os_user => {
                if !app.config.trust.console.impersonation {
                    return Err(ConsoleError::ImpersonationOff {
                        requested: requested.to_string(),
                        os_user: os_user.to_string(),
                    });
                }
                requested
            }
            _ => os_user,
        };
        Ok(Operator {
            os_user: os_user.to_string(),
            acting_as: acting_as.to_string(),
        })
    }
}

struct Console {
    app: Arc<App>,
    user: String,
    os_user: String,
    posted: BTreeSet<i64>,
    outbound: Subscription,
    prompt: bool,
}

impl Console {
    fn greet<W: Write>(&self, output: &mut W) -> std::io::Result<()> {
        if self.prompt {
            writeln!(
                output,
                "Deckhand console — you are {} (os:{}). Type /help, or :as USER, :approve N, :reject N, :withdraw N, :wait, :quit.",
                self.sender().name(),
                self.os_user
            )?;
        }
        Ok(())
    }

    fn show_prompt<W: Write>(&self, output: &mut W) -> std::io::Result<()> {
        if self.prompt {
            write!(output, "{}> ", self.user)?;
            output.flush()?;
        }
        Ok(())
    }

    /// Handles one line; returns false to stop.
    async fn handle_line<W: Write>(&mut self, output: &mut W, line: &str) -> std::io::Result<bool> {
        if line.is_empty() {
            return Ok(true);
        }
        if line.starts_with('/') {
            let request = Request {
                platform: Platform::Console,
                user_id: self.user.clone(),
                channel: CHANNEL.to_string(),
                text: line.to_string(),
                delivery_id: None,
                groups: Vec::new(),
            };
            let answer = flow::handle_request_from(&self.app, &self.sender(), &request)
                .await
                .redacted();
            self.drain(output)?;
            if let Answer::Private(reply) = answer {
                writeln!(output, "[only you] {}", render(&reply))?;
            }
            return Ok(true);
        }
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let argument = words.next();
        let extra = words.next();
        match (verb, argument, extra) {
            (":quit" | ":q", None, None) => return Ok(false),
            (":wait", None, None) => self.settle(output).await?,
            (":as", Some(user), None) => self.switch_user(output, user)?,
            (":approve" | ":reject" | ":withdraw", Some(op_id), None) => {
                let feedback = self.decide(verb, op_id).await;
                self.drain(output)?;
                let mark = if feedback.applied { "✓" } else { "✗" };
                writeln!(output, "[only you] {mark} {}", feedback.text)?;
            }
            _ => {
                let reply = Reply::new(
                    "Not understood",
                    Tone::Failure,
                    format!(
                        "\"{line}\": lines start with / (a command) or are :as USER, :approve N, :reject N, :withdraw N, :wait, :quit"
                    ),
                );
                writeln!(output, "[only you] {}", render(&reply))?;
            }
        }
        Ok(true)
    }

    /// The person at the console, as the flow knows them.
    fn sender(&self) -> Sender {
        Sender::console(&self.app, &self.user, &self.os_user)
    }

    fn switch_user<W: Write>(&mut self, output: &mut W, user: &str) -> std::io::Result<()> {
        match Operator::new(&self.app, &self.os_user, Some(user)) {
            Ok(operator) => self.user = operator.acting_as,
            Err(error) => return writeln!(output, "[only you] ✗ {error}"),
        }
        match self.app.config.user_by_platform_id(Platform::Console, user) {
            Some(known) => {
                let roles: Vec<&str> = known.roles.iter().map(|role| role.as_str()).collect();
                writeln!(
                    output,
                    "[only you] you are now {} (roles: {})",
                    known.name,
                    roles.join(", ")
                )
            }
            None => writeln!(
                output,
                "[only you] you are now {user}, whom config does not know: only read-only commands are open to you"
            ),
        }
    }

    async fn decide(&self, verb: &str, op_id: &str) -> Feedback {
        let Some(op_id) = op_id
            .trim_start_matches('#')
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
        else {
            return Feedback {
                applied: false,
                text: format!("\"{op_id}\" is not an operation number such as 42"),
            };
        };
        let sender = self.sender();
        match verb {
            ":approve" => flow::approve(&self.app, &sender, op_id, None).await,
            ":reject" => flow::reject(&self.app, &sender, op_id).await,
            _ => flow::withdraw(&self.app, &sender, op_id).await,
        }
    }

    fn print_outbound<W: Write>(
        &mut self,
        output: &mut W,
        message: Outbound,
    ) -> std::io::Result<()> {
        match message {
            Outbound::Operation { op_id, reply, .. } => {
                let label = if self.posted.insert(op_id) {
                    format!("[#{op_id}]")
                } else {
                    format!("[#{op_id} edited]")
                };
                writeln!(output, "{label} {}", render(&reply))
            }
            Outbound::Detail { op_id, text, .. } => {
                writeln!(output, "[#{op_id} thread] {}", text.replace('\n', "\n    "))
            }
            Outbound::Ephemeral { reply, .. } => writeln!(output, "[only you] {}", render(&reply)),
            Outbound::Audit { .. } => Ok(()),
        }
    }

    /// Prints every message already queued.
    fn drain<W: Write>(&mut self, output: &mut W) -> std::io::Result<()> {
        while let Ok(message) = self.outbound.try_recv() {
            self.print_outbound(output, message)?;
        }
        output.flush()
    }

    /// Waits for running operations, printing their messages meanwhile.
    async fn finish<W: Write>(&mut self, output: &mut W) -> std::io::Result<()> {
        self.settle(output).await
    }

    /// Waits until no operation runs, printing messages meanwhile.
    async fn settle<W: Write>(&mut self, output: &mut W) -> std::io::Result<()> {
        let app = Arc::clone(&self.app);
        let idle = app.wait_idle();
        tokio::pin!(idle);
        loop {
            tokio::select! {
                () = &mut idle => break,
                Some(message) = self.outbound.recv() => self.print_outbound(output, message)?,
            }
        }
        self.drain(output)
    }
}
