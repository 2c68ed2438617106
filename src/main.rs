//! The `deckhand` binary: `check`, `console`, `serve`, `audit`. The only
//! place `anyhow` appears; errors are printed once, here, and mapped to an
//! exit code.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use deckhand::app::App;
use deckhand::catalog::Catalog;
use deckhand::config::{Config, DEFAULT_CONFIG_PATH};
use deckhand::problem::Problems;
use deckhand::{audit, chat, flow};

/// Deckhand: the operations runbook as chat commands, gated by approvals
/// and written to an audit trail.
#[derive(Debug, Parser)]
#[command(name = "deckhand", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate config/deckhand.toml and every commands/*.toml; print every problem with file and line.
    Check(ConfigArg),
    /// The whole product in a terminal, as the operating-system user running it: type /commands, :approve N, :reject N, :quit.
    Console {
        #[command(flatten)]
        config: ConfigArg,
        /// Act as this console name instead of yourself (needs [console] impersonation = true).
        #[arg(long = "as")]
        user: Option<String>,
    },
    /// Build the example images, bring up the demo stacks in local Docker and open the console.
    Demo {
        #[command(flatten)]
        config: ConfigArg,
        /// Act as this console user (the demo allows impersonation).
        #[arg(long = "as", default_value = "alice")]
        user: String,
        /// Remove the demo stacks and their volumes instead.
        #[arg(long)]
        down: bool,
    },
    /// Run the bot: open the store, run migrations, serve until SIGTERM or SIGINT.
    Serve(ConfigArg),
    /// Read and verify the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// List the newest audit entries.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only entries of this environment.
        #[arg(long)]
        env: Option<String>,
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Check every MAC, the chain and a checkpoint; exit 1 naming what was altered, re-chained, deleted or reordered.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// The newest checkpoint: a file of published checkpoint lines (its newest counts), or one pasted line.
        #[arg(long, value_name = "FILE|LINE")]
        checkpoint: Option<String>,
    },
    /// Print entries as JSON lines for a SIEM: seq, fields, prev MAC, MAC and key id.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Only entries at or after this RFC 3339 time, or this long ago (24h, 7d).
        #[arg(long, value_name = "RFC3339|DURATION")]
        since: Option<String>,
    },
    /// Sign the chain head now: print the checkpoint line and append it to checkpoint_file (serve posts its own to the audit channels).
    Checkpoint(ConfigArg),
    /// Print a new chain key and checkpoint key (for the environment) and the checkpoint public key (for config).
    Keygen,
    /// Print the public key of the checkpoint key in the environment, for [audit] checkpoint_public_keys.
    Pubkey(ConfigArg),
}

/// Formats of `deckhand audit export`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// Path of the config file.
    #[arg(long, env = "DECKHAND_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.command);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", deckhand::secret::redact(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(command: &Command) {
    let default = match command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    // Serenity narrates every gateway step at info; its warnings suffice.
    let default = format!("{default},serenity=warn");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Every log line passes through redaction, whatever code wrote it.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(deckhand::secret::RedactingMakeWriter::new(std::io::stderr))
        .init();
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(arg) => Ok(check(&arg.config)),
        Command::Console { config, user } => {
            console(&config.config, user.as_deref(), Impersonation::AsConfigured).await
        }
        Command::Serve(arg) => serve(&arg.config).await,
        Command::Demo { config, user, down } => demo(&config.config, &user, down).await,
        Command::Audit { command } => match command {
            AuditCommand::List { config, env, limit } => {
                audit_list(&config.config, env.as_deref(), limit).await
            }
            AuditCommand::Verify { config, checkpoint } => {
                audit_verify(&config.config, checkpoint.as_deref()).await
            }
            AuditCommand::Export {
                config,
                format: ExportFormat::Jsonl,
                since,
            } => audit_export(&config.config, since.as_deref()).await,
            AuditCommand::Checkpoint(arg) => audit_checkpoint(&arg.config).await,
            AuditCommand::Keygen => Ok(audit_keygen()),
            AuditCommand::Pubkey(arg) => audit_pubkey(&arg.config),
        },
    }
}

/// Loads config and commands, or every problem with them.
fn load(path: &Path) -> Result<(Config, Catalog), Problems> {
    let config = Config::load(path)?;
    let catalog = Catalog::load(&config)?;
    Ok((config, catalog))
}

fn load_or_report(path: &Path) -> anyhow::Result<(Config, Catalog)> {
    load(path).map_err(|problems| anyhow::anyhow!("the configuration has problems:\n{problems}"))
}

fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok((config, catalog)) => {
            // Key problems and warnings concern the environment, not the
            // files, so they go to stderr beside the verdict on the files.
            match audit::Keys::from_env(&config.audit) {
                Ok(keys) => {
                    for warning in keys.warnings(&config.audit) {
                        eprintln!("warning: {warning}");
                    }
                }
                Err(error) => {
                    println!("{error}");
                    println!("1 problem(s) found");
                    return ExitCode::FAILURE;
                }
            }
            for warning in config.trust_warnings() {
                eprintln!("warning: {warning}");
            }
            println!(
                "ok: {} commands, {} environments",
                catalog.len(),
                config.environments.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print!("{problems}");
            println!("{} problem(s) found", problems.0.len());
            ExitCode::FAILURE
        }
    }
}

async fn open(path: &Path) -> anyhow::Result<Arc<App>> {
    let (config, catalog) = load_or_report(path)?;
    // Both kinds of error say what failed (an audit key, the store).
    let app = App::open(config, catalog)
        .await
        .map_err(anyhow::Error::from)?;
    Ok(app)
}

/// Whether the console may act as others: as config says, or always (the
/// demo, a local trial whose people are all made up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impersonation {
    AsConfigured,
    Allowed,
}

async fn console(
    path: &Path,
    user: Option<&str>,
    impersonation: Impersonation,
) -> anyhow::Result<ExitCode> {
    let (mut config, catalog) = load_or_report(path)?;
    if impersonation == Impersonation::Allowed {
        config.trust.console.impersonation = true;
    }
    let os_user = deckhand::identity::os_user()?;
    let app = App::open(config, catalog)
        .await
        .map_err(anyhow::Error::from)?;
    let operator = match chat::console::Operator::new(&app, &os_user, user) {
        Ok(operator) => operator,
        Err(error) => {
            app.store.close().await;
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    flow::start_background(&app).await;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let interactive = std::io::stdin().is_terminal();
    let mut stdout = std::io::stdout();
    chat::console::run(Arc::clone(&app), stdin, &mut stdout, &operator, interactive)
        .await
        .context("console input or output failed")?;
    flow::shut_down(&app).await;
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn demo(path: &Path, user: &str, down: bool) -> anyhow::Result<ExitCode> {
    let (config, _) = load_or_report(path)?;
    if down {
        deckhand::demo::down(&config)
            .await
            .context("removing the demo")?;
        println!("the demo stacks are removed");
        return Ok(ExitCode::SUCCESS);
    }
    deckhand::demo::up(&config, |line| println!("{line}"))
        .await
        .context("starting the demo")?;
    println!(
        "ready: staging is compose project deckhand-demo (nginx on http://127.0.0.1:18080), production is deckhand-prod (:28080)"
    );
    println!(
        "try: /status · /deploy staging v2 · /health staging · /rollback staging backend · :as bob · /deploy production v2"
    );
    console(path, Some(user), Impersonation::Allowed).await
}

async fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let app = open(path).await?;
    // Adapters subscribe before recovery publishes interrupted operations.
    let slack = start_slack(&app).await?;
    let discord = match &app.config.discord {
        Some(settings) => {
            let options = chat::discord::Options::from_env(settings)?;
            Some(chat::discord::start(&app, options).await?)
        }
        None => None,
    };
    flow::start_background(&app).await;
    let (stop_listener, listener_stopped) = tokio::sync::oneshot::channel::<()>();
    let listener_task = match app.config.listen {
        Some(address) => {
            let listener =
                deckhand::http::bind(address).with_context(|| format!("listening on {address}"))?;
            let bound = listener
                .local_addr()
                .context("reading the listener address")?;
            tracing::info!(address = %bound, "listening");
            let mut router = deckhand::http::router(Arc::clone(&app));
            if let Some(slack) = &slack {
                router = router.merge(slack.routes());
            }
            if let Some(settings) = &app.config.pagerduty {
                let connection = deckhand::pagerduty::Connection::from_env(settings)?;
                router = router.merge(deckhand::http::pagerduty::router(
                    Arc::clone(&app),
                    connection,
                ));
            }
            if let Some(discord) = &discord {
                router = router.merge(chat::discord::routes(discord));
            }
            let shutdown = async move {
                let _ = listener_stopped.await;
            };
            Some(tokio::spawn(deckhand::http::serve(
                listener, router, shutdown,
            )))
        }
        None => None,
    };
    tracing::info!(
        environments = app.config.environments.len(),
        commands = app.catalog.len(),
        "deckhand serving"
    );
    wait_for_signal().await?;
    tracing::info!("shutting down: waiting for running operations to reach a step boundary");
    flow::shut_down(&app).await;
    if let Some(slack) = slack {
        slack.shutdown(std::time::Duration::from_secs(10)).await;
    }
    let _ = stop_listener.send(());
    if let Some(task) = listener_task {
        task.await
            .context("the listener task failed")?
            .context("the listener failed")?;
    }
    app.store.close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The Slack adapter, when config has `[slack]`, with its tokens read from
/// the environment variables config names.
async fn start_slack(app: &Arc<App>) -> anyhow::Result<Option<chat::slack::SlackAdapter>> {
    let Some(settings) = &app.config.slack else {
        return Ok(None);
    };
    let tokens =
        chat::slack::SlackTokens::from_env(settings).context("reading the Slack tokens")?;
    let adapter = chat::slack::start(app, tokens)
        .await
        .context("starting the Slack adapter")?;
    Ok(Some(adapter))
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

async fn audit_list(path: &Path, env: Option<&str>, limit: i64) -> anyhow::Result<ExitCode> {
    let app = open(path).await?;
    let entries = app
        .store
        .audit_entries(env, limit.max(1))
        .await
        .context("reading the audit log")?;
    for entry in entries.iter().rev() {
        println!("{}", audit::format_entry(entry));
    }
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn audit_verify(path: &Path, checkpoint: Option<&str>) -> anyhow::Result<ExitCode> {
    let checkpoint = match checkpoint.map(audit::read_checkpoint_argument).transpose() {
        Ok(checkpoint) => checkpoint,
        Err(error) => {
            println!("{error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let app = open(path).await?;
    let (entries, head_seq, head_hash) = app
        .store
        .audit_chain()
        .await
        .context("reading the audit log")?;
    app.store.close().await;
    let trusted = audit::trusted_checkpoint_keys(&app.config.audit, &app.audit.keys);
    let chain = audit::StoredChain {
        entries: &entries,
        head_seq,
        head_hash: &head_hash,
    };
    let verification = audit::verify_trail(chain, &app.audit.keys, checkpoint.as_ref(), &trusted);
    for line in &verification.lines {
        println!("{line}");
    }
    Ok(if verification.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn audit_export(path: &Path, since: Option<&str>) -> anyhow::Result<ExitCode> {
    let since = match since.map(|text| audit::parse_since(text, chrono::Utc::now())) {
        Some(Ok(since)) => Some(since),
        Some(Err(error)) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
        None => None,
    };
    let app = open(path).await?;
    let entries = match since {
        Some(since) => app.store.audit_entries_since(since).await,
        None => app.store.audit_chain().await.map(|(entries, _, _)| entries),
    }
    .context("reading the audit log")?;
    app.store.close().await;
    let mut stdout = std::io::stdout().lock();
    for entry in &entries {
        writeln!(stdout, "{}", audit::to_jsonl_line(entry)).context("writing the export")?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit_checkpoint(path: &Path) -> anyhow::Result<ExitCode> {
    let app = open(path).await?;
    if app.audit.keys.checkpoint.is_none() {
        app.store.close().await;
        eprintln!(
            "error: {} is not set, so there is nothing to sign checkpoints with (make a key with `deckhand audit keygen`)",
            app.config.audit.checkpoint_key_env
        );
        return Ok(ExitCode::FAILURE);
    }
    let published = audit::publish_checkpoint(&app).await;
    app.store.close().await;
    match published.context("publishing the checkpoint")? {
        Some(checkpoint) => println!("{}", checkpoint.to_line()),
        None => println!("the audit log is empty; there is no head to sign yet"),
    }
    Ok(ExitCode::SUCCESS)
}

fn audit_keygen() -> ExitCode {
    let (chain_key, seed) = audit::generate();
    let public_key = match audit::CheckpointKey::from_seed_text("the new seed", &seed) {
        Ok(key) => key.public_key_hex(),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("# Keep these two in your secret store and give them to every Deckhand process.");
    println!("DECKHAND_AUDIT_KEY={}", chain_key.expose());
    println!("DECKHAND_CHECKPOINT_KEY={}", seed.expose());
    println!("# Public: put this in config/deckhand.toml wherever `deckhand audit verify` runs.");
    println!("# [audit]");
    println!("# checkpoint_public_keys = [\"{public_key}\"]");
    ExitCode::SUCCESS
}

fn audit_pubkey(path: &Path) -> anyhow::Result<ExitCode> {
    let (config, _) = load_or_report(path)?;
    let keys = audit::Keys::from_env(&config.audit)?;
    let Some(key) = keys.checkpoint else {
        eprintln!(
            "error: {} is not set; make a key with `deckhand audit keygen`",
            config.audit.checkpoint_key_env
        );
        return Ok(ExitCode::FAILURE);
    };
    println!("{}", key.public_key_hex());
    eprintln!(
        "key id {}: add it to [audit] checkpoint_public_keys",
        key.id()
    );
    Ok(ExitCode::SUCCESS)
}
