//! PagerDuty v3 webhooks on `POST /pagerduty/webhook`: a triggered incident of a mapped
//! service gets one diagnostic report in its channel (the console platform here), whose
//! header follows acknowledge and resolve; the report's summary becomes a note on the
//! incident (`PagerDutyPeer`); redeliveries do nothing twice; an unmapped service is
//! answered 200 with nothing posted; a missing or wrong signature gets 401 and changes
//! nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deckhand::app::App;
use deckhand::chat::{Outbound, Reply};
use deckhand::names::Platform;
use deckhand::pagerduty::{Connection, NoteClient};
use deckhand::secret::Secret;
use serde_json::Value;

use crate::diagnose::{FaultWorkspace, workspace_with_staging};
use crate::support::docker::TestDocker;
use crate::support::pagerduty_peer::{
    PAGERDUTY_API_TOKEN, PAGERDUTY_FROM_EMAIL, PagerDutyPeer, pagerduty_signature, signed_webhook,
    webhook_with,
};
use crate::support::{DEADLINE, fixture_bytes, fixture_json, wait_for};

/// The webhook subscription's signing secret. TEST-ONLY.
const SECRET: &str = "pd-webhook-secret-for-tests";
/// The incident of the fixtures.
const INCIDENT: &str = "Q1CHATOPS01AB";

/// Deckhand serving the webhook, with what it posted on the console platform.
struct Incidents {
    app: Arc<App>,
    url: String,
    posted: Arc<Mutex<Vec<Outbound>>>,
    _workspace: FaultWorkspace,
}

impl Incidents {
    /// Serves the webhook for a staging environment shaped by `staging`, mapping
    /// `PBACKND` to it on the console, with notes going to `peer`.
    async fn start(staging: &str, peer: &PagerDutyPeer) -> Incidents {
        let pagerduty = format!(
            r#"
[pagerduty]
secret_env = "DECKHAND_TEST_PAGERDUTY_SECRET"
api_url = "{}"
add_notes = true
api_token_env = "DECKHAND_TEST_PAGERDUTY_TOKEN"
from_email = "{PAGERDUTY_FROM_EMAIL}"

[[pagerduty.services]]
id = "PBACKND"
environment = "staging"
platform = "console"
channel = "console"
"#,
            peer.base_url()
        );
        let workspace = workspace_with_staging(&format!("{staging}\n{pagerduty}"));
        let app = workspace.app().await;
        deckhand::flow::start_background(&app).await;
        let settings = app.config.pagerduty.clone().expect("a pagerduty section");
        // The same values `Connection::from_env` would read from the variables.
        let connection = Connection {
            secret: Secret::new(SECRET),
            notes: Some(NoteClient::new(
                &settings.api_url,
                Secret::new(PAGERDUTY_API_TOKEN),
                PAGERDUTY_FROM_EMAIL,
            )),
        };
        let posted = Arc::new(Mutex::new(Vec::new()));
        let mut outbound = app.outbox.subscribe(Platform::Console);
        let collected = Arc::clone(&posted);
        tokio::spawn(async move {
            while let Some(message) = outbound.recv().await {
                collected.lock().expect("the message list").push(message);
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let port = listener.local_addr().expect("an address").port();
        let router = deckhand::http::pagerduty::router(Arc::clone(&app), connection);
        tokio::spawn(deckhand::http::serve(
            listener,
            router,
            std::future::pending(),
        ));
        Incidents {
            app,
            url: format!("http://127.0.0.1:{port}/pagerduty/webhook"),
            posted,
            _workspace: workspace,
        }
    }

    /// Every version of an operation's message posted so far.
    fn messages_of(&self, op_id: i64) -> Vec<Reply> {
        self.posted
            .lock()
            .expect("the message list")
            .iter()
            .filter_map(|message| match message {
                Outbound::Operation {
                    op_id: of, reply, ..
                } if *of == op_id => Some(reply.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits for a version of the operation's message that `accept` likes.
    async fn wait_for_message(
        &self,
        op_id: i64,
        what: &str,
        accept: impl Fn(&Reply) -> bool,
    ) -> Reply {
        wait_for(what, Duration::from_secs(60), || {
            self.messages_of(op_id)
                .into_iter()
                .rev()
                .find(|reply| accept(reply))
        })
        .await
    }

    async fn operations(&self) -> usize {
        self.app
            .store
            .recent_operations(None, 100)
            .await
            .expect("the store")
            .len()
    }
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn a_triggered_incident_gets_one_report_whose_header_follows_acknowledge_and_resolve() {
    let docker = TestDocker::start("pagerduty_incident_report").await;
    let redis = docker.unique("redis");
    docker
        .run(
            &redis,
            bollard::models::ContainerCreateBody {
                image: Some("deckhand-demo/redis:7".to_string()),
                ..Default::default()
            },
        )
        .await;
    let peer = PagerDutyPeer::start().await;
    let incidents = Incidents::start(
        &format!(
            "[environments.staging]\nhost = \"local\"\n\n[environments.staging.services.redis]\ncontainer = \"{redis}\"\nkind = \"redis\"\n"
        ),
        &peer,
    )
    .await;
    let triggered = fixture_bytes("pagerduty/incident_triggered.json");

    let (response, webhook_id) = signed_webhook(&incidents.url, SECRET, &triggered).await;
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("diagnosing")),
        "{body}"
    );
    let op_id = body["operation"].as_i64().expect("an operation id");

    let report = incidents
        .wait_for_message(op_id, "the finished report", |reply| {
            reply.status.starts_with("succeeded")
        })
        .await;
    assert_eq!(
        report.title,
        "🚨 Incident #4217 · triggered · [production] backend health check failing (5xx rate 7.3%)"
    );
    assert_eq!(
        report.fields[..2],
        [
            (
                "incident".to_string(),
                "https://acme.pagerduty.com/incidents/Q1CHATOPS01AB".to_string()
            ),
            (
                "diagnosis".to_string(),
                format!("Diagnose #{op_id} · staging · @pagerduty")
            ),
        ]
    );
    assert!(
        report
            .lines
            .iter()
            .any(|line| line.starts_with("✓ redis: redis: PONG in ")),
        "{report:#?}"
    );

    let notes = peer.wait_for_notes(INCIDENT, 1, DEADLINE).await;
    assert_eq!(notes[0].from, PAGERDUTY_FROM_EMAIL);
    assert!(
        notes[0].content.starts_with(&format!(
            "Deckhand diagnosis #{op_id} of staging: 0 failing, "
        )),
        "{}",
        notes[0].content
    );
    assert!(
        notes[0].content.contains("\n✓ redis: redis: PONG in "),
        "{}",
        notes[0].content
    );

    // The same delivery again, and the same event under a new webhook id: nothing new.
    let signature = pagerduty_signature(SECRET, &triggered);
    let again = webhook_with(&incidents.url, &triggered, &signature, &webhook_id).await;
    assert_eq!(json_of(again).await.1["status"], "duplicate");
    let (redelivered, _) = signed_webhook(&incidents.url, SECRET, &triggered).await;
    assert_eq!(json_of(redelivered).await.1["status"], "duplicate");
    incidents.app.wait_idle().await;
    assert_eq!(incidents.operations().await, 1, "one report");
    assert_eq!(peer.notes(INCIDENT).len(), 1, "one note");

    let (acknowledged, _) = signed_webhook(
        &incidents.url,
        SECRET,
        &fixture_bytes("pagerduty/incident_acknowledged.json"),
    )
    .await;
    let (status, body) = json_of(acknowledged).await;
    assert_eq!(
        (status, &body["operation"]),
        (200, &Value::from(op_id)),
        "{body}"
    );
    incidents
        .wait_for_message(op_id, "the acknowledged header", |reply| {
            reply.title
                == "👀 Incident #4217 · acknowledged by Alice Example · [production] backend health check failing (5xx rate 7.3%)"
        })
        .await;

    let (resolved, _) = signed_webhook(
        &incidents.url,
        SECRET,
        &fixture_bytes("pagerduty/incident_resolved.json"),
    )
    .await;
    assert_eq!(json_of(resolved).await.1["status"], "updated");
    let last = incidents
        .wait_for_message(op_id, "the resolved header", |reply| {
            reply
                .title
                .starts_with("✅ Incident #4217 · resolved by Alice Example · ")
        })
        .await;
    assert_eq!(last.lines, report.lines, "only the header changed");
    assert_eq!(incidents.operations().await, 1);
    drop(docker);
}

#[tokio::test]
async fn an_unmapped_service_is_answered_200_and_nothing_is_posted() {
    let peer = PagerDutyPeer::start().await;
    let incidents = Incidents::start("[environments.staging]\nhost = \"local\"\n", &peer).await;
    let mut payload = fixture_json("pagerduty/incident_triggered.json");
    payload["event"]["data"]["service"]["id"] = Value::from("PUNMAPD");
    let body = serde_json::to_vec(&payload).expect("JSON");
    let (response, _) = signed_webhook(&incidents.url, SECRET, &body).await;
    let (status, answer) = json_of(response).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        serde_json::json!({"status": "ignored", "reason": "service PUNMAPD is not mapped"})
    );
    incidents.app.wait_idle().await;
    assert_eq!(incidents.operations().await, 0);
    assert!(
        incidents
            .posted
            .lock()
            .expect("the message list")
            .is_empty()
    );
    assert!(peer.requests().is_empty(), "no note");
}

#[tokio::test]
async fn a_missing_or_wrong_signature_gets_401_and_changes_nothing() {
    let peer = PagerDutyPeer::start().await;
    let incidents = Incidents::start("[environments.staging]\nhost = \"local\"\n", &peer).await;
    let triggered = fixture_bytes("pagerduty/incident_triggered.json");

    let forged = pagerduty_signature("not-the-secret", &triggered);
    let response = webhook_with(&incidents.url, &triggered, &forged, "W-forged").await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, 401);
    assert_eq!(body, "bad signature in \"X-PagerDuty-Signature\"");

    let unsigned = reqwest::Client::new()
        .post(&incidents.url)
        .header("Content-Type", "application/json")
        .header("X-Webhook-Id", "W-unsigned")
        .body(triggered.clone())
        .send()
        .await
        .expect("the request is sent");
    let (status, body) = json_of(unsigned).await;
    assert_eq!(status, 401);
    assert_eq!(body, "missing header \"X-PagerDuty-Signature\"");

    // A rotated secret: the old signature first, then the current one.
    let rotating = format!("{forged}, {}", pagerduty_signature(SECRET, &triggered));
    assert_eq!(incidents.operations().await, 0, "nothing was recorded");
    let accepted = webhook_with(&incidents.url, &triggered, &rotating, "W-forged").await;
    let (status, body) = json_of(accepted).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("diagnosing")),
        "the refused deliveries left no trace: {body}"
    );
    incidents.app.wait_idle().await;
    assert_eq!(incidents.operations().await, 1);
}

/// Makes every insert into `table` fail, as a store that refuses writes would.
async fn break_inserts(app: &App, table: &str) {
    let trigger = format!(
        "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
    );
    sqlx::query(sqlx::AssertSqlSafe(trigger))
        .execute(app.store.pool())
        .await
        .expect("the trigger is created");
}

async fn repair_inserts(app: &App, table: &str) {
    let drop = format!("DROP TRIGGER refuse_{table}");
    sqlx::query(sqlx::AssertSqlSafe(drop))
        .execute(app.store.pool())
        .await
        .expect("the trigger is dropped");
}

/// Incidents on a staging whose Redis does not exist (the report fails its
/// checks; these tests are about deliveries).
async fn incidents_without_docker() -> (PagerDutyPeer, Incidents) {
    let peer = PagerDutyPeer::start().await;
    let incidents = Incidents::start(
        "[environments.staging]\nhost = \"local\"\n\n[environments.staging.services.redis]\ncontainer = \"deckhand-test-no-such-redis\"\nkind = \"redis\"\n",
        &peer,
    )
    .await;
    (peer, incidents)
}

#[tokio::test]
async fn a_delivery_whose_handling_fails_is_handled_on_pagerdutys_retry() {
    let (_peer, incidents) = incidents_without_docker().await;
    let triggered = fixture_bytes("pagerduty/incident_triggered.json");
    let signature = pagerduty_signature(SECRET, &triggered);
    let webhook_id = "01FAILSONCE0000000000000000";

    // Handling fails after the delivery was seen: 500, so PagerDuty retries,
    // and nothing of it stays.
    break_inserts(&incidents.app, "incidents").await;
    let failed = webhook_with(&incidents.url, &triggered, &signature, webhook_id).await;
    assert_eq!(failed.status().as_u16(), 500);
    assert_eq!(incidents.operations().await, 0, "nothing was created");

    // PagerDuty's retry of the same delivery is handled, not called a duplicate.
    repair_inserts(&incidents.app, "incidents").await;
    let retried = webhook_with(&incidents.url, &triggered, &signature, webhook_id).await;
    let (status, body) = json_of(retried).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &Value::from("diagnosing")),
        "{body}"
    );
    let again = webhook_with(&incidents.url, &triggered, &signature, webhook_id).await;
    assert_eq!(json_of(again).await.1["status"], "duplicate");
    incidents.app.wait_idle().await;
    assert_eq!(incidents.operations().await, 1, "one report");
}

#[tokio::test]
async fn a_store_outage_during_delivery_is_answered_500_and_the_retry_is_handled() {
    let (_peer, incidents) = incidents_without_docker().await;
    let triggered = fixture_bytes("pagerduty/incident_triggered.json");
    let signature = pagerduty_signature(SECRET, &triggered);
    let webhook_id = "01STOREDOWN000000000000000";

    // The store cannot even record that the delivery arrived: never handled
    // unrecorded, never dropped silently.
    break_inserts(&incidents.app, "deliveries").await;
    let refused = webhook_with(&incidents.url, &triggered, &signature, webhook_id).await;
    assert_eq!(refused.status().as_u16(), 500);
    assert_eq!(incidents.operations().await, 0);

    repair_inserts(&incidents.app, "deliveries").await;
    let retried = webhook_with(&incidents.url, &triggered, &signature, webhook_id).await;
    assert_eq!(json_of(retried).await.1["status"], "diagnosing");
    incidents.app.wait_idle().await;
    assert_eq!(incidents.operations().await, 1, "handled exactly once");
}
