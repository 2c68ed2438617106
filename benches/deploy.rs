//! Deploy benchmark (issue 3): time from `/deploy staging v2` to "all
//! services healthy on the new image" through Deckhand, against the
//! runbook's docker-compose path for the same change on the same stack —
//! `docker-compose run --rm backend npm run db:migrate`, `docker-compose up
//! -d`, then polling until the backend runs the new image and `/health`
//! answers 200 with the new version (the runbook's `curl …/health`) —
//! measured in alternating rounds in one run. Deckhand's deploy ends later
//! in its own terms: the container's healthcheck passes, all three health
//! endpoints answer and the smoke checks pass. Also Deckhand's overhead
//! above the Docker API calls it made.
//!
//! Run: `cargo bench --bench deploy` (needs dockerd; builds the demo images
//! on first use). Rounds: `DECKHAND_BENCH_ROUNDS` (default 5).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use deckhand::chat::Answer;
use deckhand::docker::ServiceSelector;
use deckhand::policy::OpState;

use support::demo::DemoEnv;

const V1: &str = "deckhand-demo/tasktracker-backend:v1";
const V2: &str = "deckhand-demo/tasktracker-backend:v2";

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(bench());
}

struct Round {
    compose: Duration,
    deckhand: Duration,
    api: Duration,
}

async fn bench() {
    let rounds: usize = std::env::var("DECKHAND_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(7);
    let demo = DemoEnv::start_compose("bench_deploy").await;
    let app = demo.workspace.app().await;
    let mut results = Vec::new();
    for round in 0..rounds {
        set_compose_image(&demo, V1);
        demo.compose(&["up", "-d"]).await;
        wait_backend(&demo, "v1").await;

        set_compose_image(&demo, V2);
        let started = Instant::now();
        demo.compose(&["run", "--rm", "backend", "npm", "run", "db:migrate"])
            .await;
        demo.compose(&["up", "-d"]).await;
        wait_backend(&demo, "v2").await;
        let compose = started.elapsed();

        set_compose_image(&demo, V1);
        demo.compose(&["up", "-d"]).await;
        wait_backend(&demo, "v1").await;

        let host = app.hosts.get("staging").await.expect("host");
        let api_before = host.api_time().total;
        let started = Instant::now();
        let answer = deckhand::flow::handle_request(
            &app,
            support::workspace::console_request("alice", "/deploy staging v2"),
        )
        .await;
        let Answer::Accepted { op_id } = answer else {
            panic!("deploy refused: {answer:?}");
        };
        app.wait_idle().await;
        let deckhand = started.elapsed();
        let api = host.api_time().total - api_before;
        let operation = app
            .store
            .operation(op_id)
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(
            operation.state,
            OpState::Succeeded,
            "{:?}",
            operation.outcome
        );
        let steps = app.store.steps(op_id).await.expect("journal");
        let waiting = steps
            .iter()
            .filter(|step| step.kind == "wait_healthy")
            .filter_map(|step| {
                step.finished_at
                    .map(|finished| (finished - step.started_at).to_std().unwrap_or_default())
            })
            .sum();
        eprintln!(
            "round {}: compose {} ms, deckhand {} ms (docker api {} ms, waiting for health {} ms)",
            round + 1,
            compose.as_millis(),
            deckhand.as_millis(),
            api.as_millis(),
            Duration::as_millis(&waiting)
        );
        results.push(Round {
            compose,
            deckhand,
            api,
        });
    }
    report(&results);
}

fn report(results: &[Round]) {
    let median = |mut values: Vec<Duration>| {
        values.sort();
        values[values.len() / 2]
    };
    let compose = median(results.iter().map(|round| round.compose).collect());
    let deckhand = median(results.iter().map(|round| round.deckhand).collect());
    // Each round measures both paths back to back, so the ratio of a round
    // is robust to load that drifts between rounds; report their median.
    let mut ratios: Vec<f64> = results
        .iter()
        .map(|round| round.deckhand.as_secs_f64() / round.compose.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    let overheads: Vec<f64> = results
        .iter()
        .map(|round| {
            round.deckhand.saturating_sub(round.api).as_secs_f64() / round.deckhand.as_secs_f64()
        })
        .collect();
    let mut sorted = overheads.clone();
    sorted.sort_by(f64::total_cmp);
    let overhead = sorted[sorted.len() / 2];
    println!("deploy benchmark, {} rounds (medians)", results.len());
    println!(
        "  docker-compose path (run migrate, up -d, poll /health for the new version): {} ms",
        compose.as_millis()
    );
    println!(
        "  deckhand /deploy (pull, migrate, recreate, wait healthy, smoke, record): {} ms",
        deckhand.as_millis()
    );
    println!(
        "  ratio deckhand / compose, median of the rounds' ratios: {ratio:.2} (target ≤ 0.60)"
    );
    println!(
        "  deckhand time outside its Docker API calls (an upper bound on its overhead: it also holds HTTP probes and poll intervals): {:.1}% (target < 10%)",
        overhead * 100.0
    );
}

fn set_compose_image(demo: &DemoEnv, image: &str) {
    let file = demo.compose_file.as_ref().expect("compose mode").path();
    let text = std::fs::read_to_string(file).expect("compose file");
    let changed = text.replace(V1, image).replace(V2, image);
    std::fs::write(file, changed).expect("write compose file");
}

/// Polls until the backend container runs and `/health` answers with `version`.
async fn wait_backend(demo: &DemoEnv, version: &str) {
    let selector = ServiceSelector::Compose {
        project: demo.project().to_string(),
        service: "backend".to_string(),
    };
    let url = format!("{}/health", demo.staging_url(13000));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "backend never became healthy on {version}"
        );
        let healthy = demo
            .host
            .find_containers(&selector)
            .await
            .map(|containers| {
                !containers.is_empty() && containers.iter().all(|container| container.state.running)
            })
            .unwrap_or(false);
        if healthy {
            let probe = deckhand::probe::probe(&url, Duration::from_secs(2)).await;
            if probe.is_success() && probe.body_excerpt.contains(version) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
