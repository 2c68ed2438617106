//! `deckhand serve`: starts, opens and migrates the store, answers its
//! health endpoints, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::workspace::Workspace;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

#[test]
fn serve_answers_health_and_stops_on_sigterm() {
    let port = free_port();
    let workspace = Workspace::with_config(|text| {
        text.replace(
            "listen = \"127.0.0.1:8088\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["serve", "--config"])
        .arg(workspace.config_path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "serve did not start listening");
        let line = lines
            .next()
            .expect("serve is running")
            .expect("read stderr");
        if line.contains("listening") {
            break;
        }
    }
    let health = get(port, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let live = get(port, "/health/live");
    assert!(live.contains("{\"status\":\"alive\"}"), "{live}");
    let ready = get(port, "/health/ready");
    assert!(ready.contains("\"store\":\"ok\""), "{ready}");
    let metrics = get(port, "/health/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        workspace
            .config_path()
            .with_file_name("deckhand.db")
            .exists(),
        "the store was created"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("serve exits");
    assert!(exit.success(), "serve exits 0 on SIGTERM: {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|line| line.contains("stopped")), "{rest:?}");
}
