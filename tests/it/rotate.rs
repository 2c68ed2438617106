//! The runbook's secret rotation against real containers: the JWT secret
//! and the database password change, the services stay healthy, the TLS
//! certificate served changes, and no generated secret appears in chat,
//! logs or the audit trail.

use std::time::Duration;

use crate::support::demo::DemoEnv;
use crate::support::workspace::stdout;

fn backend_env(env: &std::collections::BTreeMap<String, String>, name: &str) -> String {
    env.get(name)
        .cloned()
        .unwrap_or_else(|| panic!("backend has no {name}"))
}

#[tokio::test]
async fn secrets_rotate_without_ever_being_shown() {
    let demo = DemoEnv::start("secrets_rotate").await;
    let selector = deckhand::docker::ServiceSelector::Compose {
        project: demo.project().to_string(),
        service: "backend".to_string(),
    };
    let before = demo.host.find_containers(&selector).await.expect("lists");
    let env_before = demo.host.env_of(&before[0].id).await.expect("env");

    let request = demo.workspace.run(
        &["console", "--as", "alice"],
        "/rotate jwt staging\n/rotate db-password staging\n/rotate ssl staging\n",
    );
    let text = stdout(&request);
    let ops: Vec<i64> = regex::Regex::new(r"⏳ Rotate #(\d+)")
        .expect("regex")
        .captures_iter(&text)
        .filter_map(|captures| captures[1].parse().ok())
        .collect();
    assert_eq!(ops.len(), 3, "each rotation waits for an approver: {text}");
    let approvals: String = ops
        .iter()
        .map(|op_id| format!(":approve {op_id}\n"))
        .collect();
    let output = demo.workspace.run(&["console", "--as", "bob"], &approvals);
    let text = stdout(&output);
    assert!(
        text.contains(
            "new JWT secret in JWT_SECRET: 1 backend container(s) replaced one at a time"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "new password for tasktracker in postgres; backend reconnected with it and is ready"
        ),
        "{text}"
    );
    assert!(
        text.contains("nginx serves a new certificate for CN=localhost"),
        "{text}"
    );
    assert!(!text.contains("failed"), "{text}");

    let served = deckhand::diagnose::inspect_certificate(
        &deckhand::config::TlsEndpoint {
            connect: demo
                .staging_url(18443)
                .trim_start_matches("http://")
                .to_string(),
            name: "localhost".to_string(),
        },
        Duration::from_secs(5),
    )
    .await
    .expect("nginx serves the new certificate");
    assert!(
        served.matches_name && served.dns_names == ["localhost"],
        "the new certificate names localhost in subjectAltName: {served:?}"
    );
    assert!(
        (served.not_after - served.not_before).num_days() >= 89,
        "valid for the configured 90 days: {served:?}"
    );

    let after = demo.host.find_containers(&selector).await.expect("lists");
    let env_after = demo.host.env_of(&after[0].id).await.expect("env");
    let jwt = backend_env(&env_after, "JWT_SECRET");
    let database_url = backend_env(&env_after, "DATABASE_URL");
    assert_ne!(jwt, backend_env(&env_before, "JWT_SECRET"));
    assert_ne!(database_url, backend_env(&env_before, "DATABASE_URL"));
    let password = url::Url::parse(&database_url)
        .expect("url")
        .password()
        .expect("password")
        .to_string();
    assert!(password.len() >= 40);

    let ready = deckhand::probe::probe(
        &format!("{}/health/ready", demo.staging_url(13000)),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        ready.is_success() && ready.body_excerpt.contains("\"database\":\"ok\""),
        "{}",
        ready.body_excerpt
    );

    let audit = stdout(&demo.workspace.run(&["audit", "list", "--limit", "200"], ""));
    let logs = String::from_utf8_lossy(&output.stderr).into_owned();
    for secret in [&jwt, &password] {
        assert!(!text.contains(secret.as_str()), "a secret reached chat");
        assert!(
            !audit.contains(secret.as_str()),
            "a secret reached the audit trail"
        );
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
    }
}
