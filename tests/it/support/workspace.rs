//! A workspace: a temporary folder holding a copy of the shipped config
//! (with its store inside the folder and the repository's commands), so a
//! test runs Deckhand exactly as shipped without touching anything else.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use deckhand::app::App;
use deckhand::catalog::Catalog;
use deckhand::config::Config;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary Deckhand installation.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// The shipped config, with the store in the workspace.
    pub fn shipped() -> Workspace {
        Workspace::with_config(|text| text)
    }

    /// The shipped config after `edit`, with the store in the workspace and
    /// console impersonation allowed (unless `edit` wrote a `[console]`).
    pub fn with_config(edit: impl FnOnce(String) -> String) -> Workspace {
        let dir = tempfile::tempdir().expect("temporary folder");
        let shipped = std::fs::read_to_string(repo_root().join("config/deckhand.toml"))
            .expect("shipped config");
        let commands = repo_root().join("commands");
        let text = shipped
            .replace(
                "commands = \"../commands\"",
                &format!("commands = \"{}\"", commands.display()),
            )
            .replace(
                "url = \"sqlite://../deckhand.db\"",
                "url = \"sqlite://deckhand.db\"",
            );
        std::fs::create_dir_all(dir.path().join("config")).expect("config folder");
        // Tests act as several people from one console (`--as`, `:as`),
        // which the shipped config does not allow.
        let mut text = edit(text);
        if !text.lines().any(|line| line.trim() == "[console]") {
            text.push_str("\n[console]\nimpersonation = true\n");
        }
        std::fs::write(dir.path().join("config/deckhand.toml"), text).expect("write config");
        Workspace { dir }
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config/deckhand.toml")
    }

    /// Runs `deckhand ARGS --config <this config>`, feeding `stdin`.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        self.run_with_env(args, stdin, &[])
    }

    /// Runs like `run` with these environment variables set. The audit key
    /// variables of the test's own environment are never passed on, so a
    /// developer's shell cannot change what a test sees.
    pub fn run_with_env(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deckhand"));
        command
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .env_remove("DECKHAND_CONFIG")
            .env_remove("DECKHAND_USER")
            .env_remove("RUST_LOG")
            .env_remove("DECKHAND_AUDIT_KEY")
            .env_remove("DECKHAND_AUDIT_KEY_PREVIOUS")
            .env_remove("DECKHAND_CHECKPOINT_KEY")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("deckhand starts");
        let mut input = child.stdin.take().expect("stdin is piped");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        child.wait_with_output().expect("deckhand runs")
    }

    /// The folder holding `config/` and the store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Opens the app in-process against this workspace.
    pub async fn app(&self) -> Arc<App> {
        let config = Config::load(&self.config_path()).expect("config is valid");
        let catalog = Catalog::load(&config).expect("commands are valid");
        App::open(config, catalog).await.expect("store opens")
    }
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A copy of the shipped commands folder, edited, for tests that need a
/// different policy (a short expiry, say).
pub struct CommandsCopy {
    dir: tempfile::TempDir,
}

impl CommandsCopy {
    /// Copies the shipped commands and applies `edit` to one file.
    pub fn edited(file: &str, edit: impl FnOnce(String) -> String) -> CommandsCopy {
        let dir = tempfile::tempdir().expect("temporary folder");
        for entry in std::fs::read_dir(repo_root().join("commands")).expect("commands folder") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, dir.path().join(path.file_name().expect("file name")))
                .expect("copy");
        }
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).expect("command file");
        std::fs::write(&path, edit(text)).expect("write command file");
        CommandsCopy { dir }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A workspace whose config uses these commands.
    pub fn workspace(&self) -> Workspace {
        self.workspace_with(|text| text)
    }

    /// A workspace whose config uses these commands, edited by `edit`.
    pub fn workspace_with(&self, edit: impl FnOnce(String) -> String) -> Workspace {
        let folder = self.path().display().to_string();
        Workspace::with_config(|text| {
            let shipped = repo_root().join("commands").display().to_string();
            edit(text.replace(&shipped, &folder))
        })
    }
}

/// A slash command typed in the console by `user`.
pub fn console_request(user: &str, text: &str) -> deckhand::chat::Request {
    deckhand::chat::Request {
        platform: deckhand::names::Platform::Console,
        user_id: user.to_string(),
        channel: "console".to_string(),
        text: text.to_string(),
        delivery_id: None,
        groups: Vec::new(),
    }
}
