//! Deckhand's own HTTP listener: `/health`, `/health/live`, `/health/ready`
//! (store, Docker hosts, chat connections) and `/health/metrics`. Webhook
//! endpoints of the chat and PagerDuty adapters are merged into the same
//! router by `serve`. Only this module and adapters' HTTP parts name axum.

mod headers;
pub mod pagerduty;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::App;

/// The health and metrics routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/metrics", get(metrics))
        .with_state(app)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let now = app.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    axum::Json(json!({"status": "ok", "timestamp": now})).into_response()
}

async fn live() -> Response {
    axum::Json(json!({"status": "alive"})).into_response()
}

/// Ready when the store answers, every environment's Docker host answers,
/// and every configured chat connection is up.
async fn ready(State(app): State<Arc<App>>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let store = tokio::time::timeout(Duration::from_secs(3), app.store.ping()).await;
    let store_ok = matches!(store, Ok(Ok(())));
    ready &= store_ok;
    checks.insert(
        "store".into(),
        json!(if store_ok { "ok" } else { "unreachable" }),
    );
    for (env, status) in app.hosts.check_all(Duration::from_secs(3)).await {
        ready &= status == "ok";
        checks.insert(format!("docker:{env}"), json!(status));
    }
    for (platform, connected) in app.connections() {
        ready &= connected;
        checks.insert(
            format!("chat:{platform}"),
            json!(if connected { "ok" } else { "disconnected" }),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if ready { "ready" } else { "not ready" }, "checks": checks});
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// Connections waiting to be accepted. The standard library's 128 is too few
/// for a burst of webhooks (500 slash commands at once): the kernel drops the
/// rest of the handshakes and each retries a second later.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `address` with room for [`LISTEN_BACKLOG`] pending connections.
///
/// # Errors
/// When the address cannot be bound (in use, not local, no permission).
pub fn bind(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `shutdown` resolves.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
