//! The `deckhand` binary: `check`, `console`, `serve`, `audit`. The only
//! place `anyhow` appears; errors are printed once, here, and mapped to an
//! exit code.

use std::io::IsTerminal;
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
    /// The whole product in a terminal: type /commands, :as USER, :approve N, :reject N, :quit.
    Console {
        #[command(flatten)]
        config: ConfigArg,
        /// Act as this console user (see [[users]] console = …).
        #[arg(long = "as", env = "DECKHAND_USER", default_value = "alice")]
        user: String,
    },
    /// Build the example images, bring up the demo stacks in local Docker and open the console.
    Demo {
        #[command(flatten)]
        config: ConfigArg,
        /// Act as this console user.
        #[arg(long = "as", env = "DECKHAND_USER", default_value = "alice")]
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
    /// Walk the hash chain; exit 1 naming the first entry altered, deleted or reordered.
    Verify(ConfigArg),
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
        Command::Console { config, user } => console(&config.config, &user).await,
        Command::Serve(arg) => serve(&arg.config).await,
        Command::Demo { config, user, down } => demo(&config.config, &user, down).await,
        Command::Audit { command } => match command {
            AuditCommand::List { config, env, limit } => {
                audit_list(&config.config, env.as_deref(), limit).await
            }
            AuditCommand::Verify(arg) => audit_verify(&arg.config).await,
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
    let app = App::open(config, catalog)
        .await
        .context("opening the store")?;
    Ok(app)
}

async fn console(path: &Path, user: &str) -> anyhow::Result<ExitCode> {
    let app = open(path).await?;
    flow::start_background(&app).await;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let interactive = std::io::stdin().is_terminal();
    let mut stdout = std::io::stdout();
    chat::console::run(Arc::clone(&app), stdin, &mut stdout, user, interactive)
        .await
        .context("console input or output failed")?;
    app.request_shutdown();
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
    console(path, user).await
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
    app.request_shutdown();
    app.wait_idle().await;
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

async fn audit_verify(path: &Path) -> anyhow::Result<ExitCode> {
    let app = open(path).await?;
    let (entries, head_seq, head_hash) = app
        .store
        .audit_chain()
        .await
        .context("reading the audit log")?;
    app.store.close().await;
    match audit::verify_chain(&entries, head_seq, &head_hash) {
        Ok(count) => {
            println!("ok: {count} audit entries, hash chain intact");
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            println!("{problem}");
            Ok(ExitCode::FAILURE)
        }
    }
}
