//! Replicas benchmark (issue 16), against a real PostgreSQL 15 container
//! and the real local Docker engine:
//!
//! 1. Audit appends per second: one replica on SQLite, one replica on
//!    PostgreSQL, and three replicas on one PostgreSQL at once (each replica
//!    its own `App` with its own pool and instance, four writers each), and
//!    the chain they wrote verified afterwards.
//! 2. Approval-to-start latency across replicas: a `deckhand console`
//!    process owns pending requests; this process approves them as another
//!    replica; the latency is from the approval call to the moment the
//!    owner started the operation (`started_at`). Baseline, in the same run:
//!    request and approval in one process.
//! 3. Takeover after SIGKILL: a `deckhand console` process runs a slow
//!    deploy of a demo stack and is killed; this process is the surviving
//!    replica. Reported: when the owner's lease lapsed, when the survivor
//!    owned the operation, and when the stack was settled.
//!
//! Run: `cargo bench --bench replicas` (needs dockerd; builds the demo
//! images on first use). Rounds: `DECKHAND_BENCH_ROUNDS` (default 30
//! approvals, 3 takeovers); append window `DECKHAND_BENCH_SECONDS` (5).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deckhand::app::App;
use deckhand::audit::{AuditContext, AuditEvent};
use deckhand::chat::Answer;
use deckhand::flow::{self, Sender};
use deckhand::names::Platform;
use deckhand::policy::OpState;

use support::demo::DemoEnv;
use support::docker::{TestDocker, eventually, start_postgres};
use support::workspace::{CommandsCopy, Workspace, console_request, repo_root};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

async fn bench() {
    println!("replicas benchmark — load average {}", load_average());
    let docker = TestDocker::start("bench_replicas").await;
    let postgres = start_postgres(&docker).await;
    audit_appends(&postgres).await;
    approval_latency(&postgres).await;
    takeover(&postgres).await;
    drop(docker);
}

/// A workspace on `store_url` with `extra` config and `commands`.
fn workspace_on(store_url: &str, commands: Option<&CommandsCopy>, extra: &str) -> Workspace {
    let folder = commands.map(|copy| copy.path().display().to_string());
    let shipped = repo_root().join("commands").display().to_string();
    Workspace::with_config(|text| {
        let text = match &folder {
            Some(folder) => text.replace(&shipped, folder),
            None => text,
        };
        let text = if store_url.is_empty() {
            text
        } else {
            text.replace(
                "url = \"sqlite://deckhand.db\"",
                &format!("url = \"{store_url}\""),
            )
        };
        format!("{text}{extra}")
    })
}

// 1. Audit appends.

async fn audit_appends(postgres: &str) {
    let seconds = env_number("DECKHAND_BENCH_SECONDS", 5) as u64;
    let window = Duration::from_secs(seconds);
    println!("\naudit appends ({seconds} s each, 4 writers per replica)");
    let sqlite = workspace_on("", None, "");
    let one_sqlite = appends(&[sqlite.app().await], window).await;
    let single = workspace_on(postgres, None, "");
    let one_postgres = appends(&[single.app().await], window).await;
    let spaces: Vec<Workspace> = (0..3).map(|_| workspace_on(postgres, None, "")).collect();
    let mut apps = Vec::new();
    for space in &spaces {
        apps.push(space.app().await);
    }
    let three_postgres = appends(&apps, window).await;
    println!("  SQLite, 1 replica:        {one_sqlite:>7.0} appends/s");
    println!("  PostgreSQL, 1 replica:    {one_postgres:>7.0} appends/s");
    println!(
        "  PostgreSQL, 3 replicas:   {three_postgres:>7.0} appends/s ({:.2}× one replica)",
        three_postgres / one_postgres
    );
    let verified = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["audit", "verify", "--config"])
        .arg(spaces[0].config_path())
        .output()
        .expect("audit verify runs");
    println!(
        "  chain after the three replicas wrote: {}",
        String::from_utf8_lossy(&verified.stdout)
            .lines()
            .next()
            .unwrap_or_default()
    );
    assert!(verified.status.success(), "the chain verifies");
}

async fn appends(apps: &[Arc<App>], window: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + window;
    let mut writers = Vec::new();
    for app in apps {
        for writer in 0..4 {
            let app = Arc::clone(app);
            let count = Arc::clone(&count);
            writers.push(tokio::spawn(async move {
                let context = AuditContext {
                    actor: format!("bench-{writer}"),
                    platform: Platform::Console,
                    channel: "console".to_string(),
                    command: "status".to_string(),
                    env: String::new(),
                    op_id: 0,
                };
                while Instant::now() < deadline {
                    deckhand::events::record(&app, &context, AuditEvent::DryRun)
                        .await
                        .expect("the append commits");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for writer in writers {
        writer.await.expect("the writer ends");
    }
    count.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

// 2. Approval to start.

/// `deckhand console` as another replica, fed line by line.
struct ConsoleReplica {
    child: Child,
}

impl ConsoleReplica {
    fn start(workspace: &Workspace) -> ConsoleReplica {
        let child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
            .args(["console", "--as", "alice", "--config"])
            .arg(workspace.config_path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("console starts");
        ConsoleReplica { child }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("write");
        stdin.flush().expect("flush");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ConsoleReplica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn approval_commands() -> CommandsCopy {
    CommandsCopy::edited("lock.toml", |text| {
        text.replace(
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]",
            "[policy.default]\nrequest = [\"developers\", \"deployers\", \"oncall\"]\napprovals = 1\napprovers = [\"deployers\", \"oncall\"]",
        )
    })
}

async fn approval_latency(postgres: &str) {
    let rounds = env_number("DECKHAND_BENCH_ROUNDS", 30);
    let commands = approval_commands();
    let extra = "";
    let owner_space = workspace_on(postgres, Some(&commands), extra);
    let approver_space = workspace_on(postgres, Some(&commands), extra);
    let approver = approver_space.app().await;
    flow::start_background(&approver).await;
    let mut owner = ConsoleReplica::start(&owner_space);
    let bob = Sender::identify(&approver, Platform::Console, "bob", "console");
    let mut across = Vec::new();
    let mut same = Vec::new();
    for round in 0..rounds {
        // Across replicas: the console owns it, this process approves.
        owner.type_line(&format!("/lock staging \"across {round}\""));
        let op_id = newest_pending(&approver, &format!("across {round}")).await;
        across.push(approve_and_wait(&approver, &bob, op_id).await);
        // Same process: this process requests and approves.
        let answer = flow::handle_request(
            &approver,
            console_request("alice", &format!("/lock staging \"same {round}\"")),
        )
        .await;
        let Answer::Accepted { op_id } = answer else {
            panic!("refused: {answer:?}")
        };
        same.push(approve_and_wait(&approver, &bob, op_id).await);
    }
    owner.kill();
    println!("\napproval to start ({rounds} approvals each)");
    report("  same process         ", &mut same);
    report("  across replicas      ", &mut across);
    println!(
        "  p99 across / p99 same: {:.1}× (target: across p99 < 1 s)",
        percentile(&across, 99.0).as_secs_f64() / percentile(&same, 99.0).as_secs_f64().max(1e-6)
    );
}

async fn newest_pending(app: &App, reason: &str) -> i64 {
    eventually("the request", Duration::from_secs(30), || async {
        app.store
            .recent_operations(Some("staging"), 5)
            .await
            .ok()?
            .into_iter()
            .find(|operation| {
                operation.state == OpState::Pending && operation.command_line.contains(reason)
            })
            .map(|operation| operation.id)
    })
    .await
}

/// Approves, then waits for the start; returns approval → start, and
/// clears the hold the operation leaves so the next round can run.
async fn approve_and_wait(app: &Arc<App>, approver: &Sender, op_id: i64) -> Duration {
    let approved_at = chrono::Utc::now();
    let feedback = flow::approve(app, approver, op_id, None).await;
    assert!(feedback.applied, "{}", feedback.text);
    let started_at = eventually("the start", Duration::from_secs(30), || async {
        app.store.operation(op_id).await.ok()??.started_at
    })
    .await;
    eventually("the end", Duration::from_secs(30), || async {
        app.store
            .operation(op_id)
            .await
            .ok()?
            .filter(|operation| operation.state.is_final())
    })
    .await;
    let _ = app.store.release_hold("staging", app.now()).await;
    (started_at - approved_at).to_std().unwrap_or_default()
}

// 3. Takeover.

async fn takeover(postgres: &str) {
    let rounds = env_number("DECKHAND_BENCH_TAKEOVERS", 3);
    let commands = CommandsCopy::edited("deploy.toml", |text| {
        text.replace(
            "[[steps]]\nstep = \"wait_healthy\"",
            "[[steps]]\nstep = \"run_once\"\ntitle = \"soak\"\nservice = \"backend\"\ncommand = [\"sleep\", \"30\"]\n\n[[steps]]\nstep = \"wait_healthy\"",
        )
    });
    let folder = commands.path().display().to_string();
    let shipped = repo_root().join("commands").display().to_string();
    let demo = DemoEnv::start_with("bench_takeover", false, |text| {
        format!(
            "{}\n[operations]\nlease_renew = \"1s\"\nlease_expiry = \"5s\"\n",
            text.replace(&shipped, &folder).replace(
                "url = \"sqlite://deckhand.db\"",
                &format!("url = \"{postgres}\"")
            )
        )
    })
    .await;
    let survivor = demo.workspace.app().await;
    flow::start_background(&survivor).await;
    println!("\ntakeover after SIGKILL (lease_expiry 5s, {rounds} rounds)");
    for round in 0..rounds {
        let version = if round % 2 == 0 { "v2" } else { "v1" };
        let mut owner = ConsoleReplica::start(&demo.workspace);
        owner.type_line(&format!("/deploy staging {version}"));
        let op_id = eventually("the soak step", Duration::from_secs(120), || async {
            let operation = survivor
                .store
                .recent_operations(Some("staging"), 1)
                .await
                .ok()?
                .pop()?;
            let steps = survivor.store.steps(operation.id).await.ok()?;
            steps
                .iter()
                .any(|step| step.title == "soak" && step.state == "running")
                .then_some(operation.id)
        })
        .await;
        let killed = Instant::now();
        owner.kill();
        let lease_until = survivor
            .store
            .operation(op_id)
            .await
            .expect("store")
            .expect("exists")
            .lease_until
            .expect("a lease");
        let lapses_in = (lease_until - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        let lapse = killed + lapses_in;
        loop {
            let operation = survivor
                .store
                .operation(op_id)
                .await
                .expect("store")
                .expect("exists");
            if operation.owner.as_deref() == Some(survivor.instance.as_str()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let owned = Instant::now();
        let settled = eventually("the interruption", Duration::from_secs(120), || async {
            let operation = survivor.store.operation(op_id).await.ok()??;
            operation.state.is_final().then_some(operation)
        })
        .await;
        let done = Instant::now();
        println!(
            "  round {round}: lease lapsed {:.2} s after the kill; taken over {:.0} ms after the lapse; settled ({}) {:.1} s after the kill",
            lapse.duration_since(killed).as_secs_f64(),
            owned.saturating_duration_since(lapse).as_secs_f64() * 1000.0,
            settled.state,
            done.duration_since(killed).as_secs_f64()
        );
    }
    println!("  target: taken over within lease expiry + 1 s of the kill");
}

// Reporting.

fn report(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    println!(
        "{what} p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
        percentile(latencies, 50.0).as_secs_f64() * 1000.0,
        percentile(latencies, 99.0).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
}

fn percentile(sorted: &[Duration], percent: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = sorted.to_vec();
    sorted.sort();
    let rank = ((percent / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_string())
}
