//! How fast `deckhand serve` acknowledges Slack slash commands in HTTP
//! mode under a burst: 500 signed `/help` requests sent at once, each on its
//! own connection, the latency of each from sending to the complete 200.
//! Slack allows 3000 ms; the target is p99 under 50 ms.
//!
//! The floor is measured in the same run on the same machine: the loopback
//! TCP round trip (one byte each way), and the same burst against
//! `/health/live`, an endpoint that does nothing, so what the acknowledgement
//! itself costs (signature check, form parsing, spawning the work) is the
//! difference between the two bursts. Each burst runs twice: on connections
//! opened beforehand (Slack keeps its connections alive) and on connections
//! opened by the request (so connecting is part of the latency). The client
//! writes raw HTTP/1.1 to spend as little of the shared CPU as it can.
//!
//! Deckhand runs as the real binary with a temporary config whose `[slack]`
//! section points its Web API at a stub in this process (the operation
//! messages the 500 `/help` commands post go there). Run with
//! `cargo bench --bench slack_ack`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const BURST: usize = 500;
const MEASURED_BURSTS: usize = 3;
const SIGNING_SECRET: &str = "bench-signing-secret-0000000000000";
const BOT_TOKEN: &str = "xoxb-bench-0000000000-FAKE";

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let stub = SlackStub::start().await;
    let folder = tempfile::tempdir().expect("a temporary folder");
    let listen = free_address();
    let config = write_config(folder.path(), listen, stub.address);
    let mut deckhand = Deckhand::spawn(&config);
    wait_until_live(&format!("http://{listen}"), &mut deckhand).await;

    let loopback = loopback_round_trips(2000);
    // Warm up the store and caches.
    burst(listen, Target::Help, Connections::New).await;
    stub.wait_for_messages(BURST).await;

    let plan = [
        (Target::Health, Connections::Open),
        (Target::Help, Connections::Open),
        (Target::Health, Connections::New),
        (Target::Help, Connections::New),
    ];
    let mut rows: Vec<(&str, Vec<Duration>)> = vec![
        ("GET /health/live, open connections (floor)", Vec::new()),
        ("signed /help, open connections", Vec::new()),
        ("GET /health/live, new connections (floor)", Vec::new()),
        ("signed /help, new connections", Vec::new()),
    ];
    let mut n_commands = BURST;
    for _ in 0..MEASURED_BURSTS {
        for (row, (target, connections)) in plan.into_iter().enumerate() {
            rows[row].1.extend(burst(listen, target, connections).await);
            if let Target::Help = target {
                // Each burst starts on an idle Deckhand: the previous burst's
                // operations have all posted their messages.
                n_commands += BURST;
                stub.wait_for_messages(n_commands).await;
            }
        }
    }
    deckhand.stop();

    println!(
        "slack_ack: bursts of {BURST} concurrent requests, {MEASURED_BURSTS} bursts per row, {} CPUs, load average {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load_average()
    );
    println!("{:<46} {:>10} {:>10} {:>10}", "", "p50", "p99", "max");
    report("loopback TCP round trip (1 byte, serial)", &loopback);
    for (what, latencies) in &rows {
        report(what, latencies);
    }
    let p99 = percentile(&rows[1].1, 99.0);
    println!(
        "target p99 < 50 ms on open connections: {}",
        if p99 < Duration::from_millis(50) {
            "met"
        } else {
            "MISSED"
        }
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

#[derive(Clone, Copy)]
enum Target {
    Health,
    Help,
}

/// Whether each request's connection is open before the burst (as over
/// Slack's keep-alive connections) or opened as part of the request.
#[derive(Clone, Copy)]
enum Connections {
    Open,
    New,
}

/// Sends `BURST` requests at once, each on its own connection, written as
/// raw HTTP/1.1 so the client spends as little CPU as possible; returns each
/// request's latency (connecting, when `New`, to the end of the answer).
async fn burst(server: SocketAddr, target: Target, connections: Connections) -> Vec<Duration> {
    let start = Arc::new(tokio::sync::Barrier::new(BURST));
    let mut tasks = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        let request = match target {
            Target::Health => health_request(server),
            Target::Help => signed_help(server),
        };
        let open = match connections {
            Connections::Open => Some(connect(server).await),
            Connections::New => None,
        };
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let sent = Instant::now();
            let mut stream = match open {
                Some(stream) => stream,
                None => connect(server).await,
            };
            let status = round_trip(&mut stream, &request).await;
            let latency = sent.elapsed();
            assert_eq!(status, 200, "deckhand answered {status}");
            latency
        }));
    }
    let mut latencies = Vec::with_capacity(BURST);
    for task in tasks {
        latencies.push(task.await.expect("the request task finishes"));
    }
    latencies
}

async fn connect(server: SocketAddr) -> tokio::net::TcpStream {
    let stream = tokio::net::TcpStream::connect(server)
        .await
        .expect("deckhand accepts");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Writes one request and reads its answer; returns the status.
async fn round_trip(stream: &mut tokio::net::TcpStream, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.expect("write the request");
    let mut received = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.expect("read the answer");
        assert!(n > 0, "deckhand closed the connection mid-answer");
        received.extend_from_slice(&chunk[..n]);
        if let Some(head_end) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
            let body_length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if received.len() >= head_end + 4 + body_length {
                return head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|status| status.parse().ok())
                    .unwrap_or(0);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn health_request(server: SocketAddr) -> Vec<u8> {
    format!("GET /health/live HTTP/1.1\r\nHost: {server}\r\n\r\n").into_bytes()
}

fn signed_help(server: SocketAddr) -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let trigger = format!("{n}.{}.bench", std::process::id());
    let body = serde_urlencoded::to_string([
        ("team_id", "T0BENCH01"),
        ("channel_id", "C0BENCH01"),
        ("user_id", "U0ALICE01"),
        ("command", "/help"),
        ("text", ""),
        ("response_url", "http://127.0.0.1:9/unused"),
        ("trigger_id", trigger.as_str()),
    ])
    .expect("a form encodes");
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
        .to_string();
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(SIGNING_SECRET.as_bytes()).expect("any key");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let signature = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
    format!(
        "POST /slack/commands HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Slack-Request-Timestamp: {timestamp}\r\nX-Slack-Signature: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serial one-byte round trips through a loopback echo server.
fn loopback_round_trips(n: usize) -> Vec<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let echo = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut byte = [0u8; 1];
        while stream.read_exact(&mut byte).is_ok() {
            if stream.write_all(&byte).is_err() {
                break;
            }
        }
    });
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut byte = [7u8; 1];
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = Instant::now();
        stream.write_all(&byte).expect("write");
        stream.read_exact(&mut byte).expect("read");
        latencies.push(sent.elapsed());
    }
    drop(stream);
    let _ = echo.join();
    latencies
}

fn report(what: &str, latencies: &[Duration]) {
    let max = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "{what:<46} {:>10} {:>10} {:>10}",
        show(percentile(latencies, 50.0)),
        show(percentile(latencies, 99.0)),
        show(max)
    );
}

fn show(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}

fn percentile(latencies: &[Duration], percent: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A Web API stand-in that says yes to everything Deckhand calls and
/// counts the messages posted.
struct SlackStub {
    address: SocketAddr,
    n_posted: Arc<AtomicU64>,
}

impl SlackStub {
    async fn start() -> SlackStub {
        use axum::extract::{Path, State};
        use axum::routing::any;
        let n_posted = Arc::new(AtomicU64::new(0));
        let router = axum::Router::new()
            .route(
                "/api/{method}",
                any(
                    |State(n_posted): State<Arc<AtomicU64>>, Path(method): Path<String>| async move {
                        let n = if method == "chat.postMessage" {
                            n_posted.fetch_add(1, Ordering::SeqCst) + 1
                        } else {
                            0
                        };
                        let ts = format!("1800000000.{n:06}");
                        axum::Json(serde_json::json!({
                            "ok": true,
                            "channel": "C0BENCH01",
                            "ts": ts,
                            "message": { "ts": ts, "text": "" },
                            "user_id": "U0BOTBENCH",
                            "team_id": "T0BENCH01",
                            "team": "bench",
                            "user": "deckhand",
                            "url": "https://bench.slack.com/",
                            "users": []
                        }))
                    },
                ),
            )
            .with_state(Arc::clone(&n_posted));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stub");
        let address = listener.local_addr().expect("stub address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        SlackStub { address, n_posted }
    }

    /// Waits until `n` messages were posted in all.
    async fn wait_for_messages(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.n_posted.load(Ordering::SeqCst) < n as u64 {
            assert!(
                Instant::now() < deadline,
                "deckhand posted {} of {n} messages",
                self.n_posted.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The shipped config with its own store, listener and `[slack]` in HTTP
/// mode, and environments that name no running stack (`/help` needs none).
fn write_config(folder: &Path, listen: SocketAddr, stub: SocketAddr) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shipped =
        std::fs::read_to_string(root.join("config/deckhand.toml")).expect("the shipped config");
    let text = shipped
        .replace(
            "commands = \"../commands\"",
            &format!("commands = \"{}\"", root.join("commands").display()),
        )
        .replace(
            "url = \"sqlite://../deckhand.db\"",
            "url = \"sqlite://deckhand.db\"",
        )
        .replace(
            "listen = \"127.0.0.1:8088\"",
            &format!("listen = \"{listen}\""),
        )
        .replace("deckhand-demo\"", "deckhand-bench-absent\"")
        .replace("deckhand-prod\"", "deckhand-bench-absent-prod\"");
    let text = format!(
        "{text}\n[slack]\nmode = \"http\"\nbot_token_env = \"DECKHAND_BENCH_SLACK_BOT\"\nsigning_secret_env = \"DECKHAND_BENCH_SLACK_SIGNING\"\napi_url = \"http://{stub}/api\"\n"
    );
    std::fs::create_dir_all(folder.join("config")).expect("config folder");
    let path = folder.join("config/deckhand.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// The `deckhand serve` child process; stopped with SIGTERM.
struct Deckhand {
    child: Child,
}

impl Deckhand {
    fn spawn(config: &Path) -> Deckhand {
        let child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("DECKHAND_BENCH_SLACK_BOT", BOT_TOKEN)
            .env("DECKHAND_BENCH_SLACK_SIGNING", SIGNING_SECRET)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("deckhand starts");
        Deckhand { child }
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Deckhand {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn wait_until_live(base: &str, deckhand: &mut Deckhand) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = deckhand.child.try_wait() {
            panic!("deckhand serve exited early: {status}");
        }
        if let Ok(response) = reqwest::get(format!("{base}/health/live")).await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "deckhand did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
