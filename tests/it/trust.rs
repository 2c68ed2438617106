//! Approvals bound to what runs: the plan pins each image tag to what it
//! pointed at when the request was made, the approval covers that, and a
//! tag moved before the operation starts stops it with nothing changed.
//! (Identity, console, Discord replay and workspace tests live with their
//! adapters: `slack`, `discord`, `console`, `approvals`.)

use deckhand::chat::Answer;
use deckhand::flow::{self, Sender};
use deckhand::names::Platform;
use deckhand::plan::Plan;
use deckhand::policy::OpState;

use crate::support::demo::DemoEnv;
use crate::support::docker::{eventually, remove_tag};
use crate::support::workspace::{CommandsCopy, console_request, repo_root};

const BACKEND: &str = "deckhand-demo/tasktracker-backend";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moved_after_approval_stops_the_deploy_before_anything_changes() {
    // Staging deploys need one approval here, as production's do.
    let commands = CommandsCopy::edited("deploy.toml", |text| {
        text.replace(
            "[policy.default]\nrequest = [\"developers\", \"deployers\"]",
            "[policy.default]\nrequest = [\"developers\", \"deployers\"]\napprovals = 1\napprovers = [\"deployers\"]",
        )
    });
    let folder = commands.path().display().to_string();
    let shipped = repo_root().join("commands").display().to_string();
    let demo = DemoEnv::start_with("trust_moved_tag", false, |text| {
        text.replace(&shipped, &folder)
    })
    .await;
    let tag = format!("trust-{}", std::process::id());
    let reference = format!("{BACKEND}:{tag}");
    demo.host
        .tag_image(&format!("{BACKEND}:v2"), &reference)
        .await
        .expect("tag v2");
    let v2 = demo
        .host
        .image_info(&reference)
        .await
        .expect("inspect")
        .expect("tagged");

    let app = demo.workspace.app().await;
    flow::start_background(&app).await;
    let answer = flow::handle_request(
        &app,
        console_request("alice", &format!("/deploy staging {tag}")),
    )
    .await;
    let Answer::Accepted { op_id } = answer else {
        panic!("expected acceptance, got {answer:?}");
    };
    let operation = app
        .store
        .operation(op_id)
        .await
        .expect("read")
        .expect("exists");
    let plan = Plan::from_json(&operation.plan);
    assert_eq!(
        plan.changes[0].to_digest.as_deref(),
        Some(v2.id.as_str()),
        "the plan pins the image"
    );
    let before = plan.changes[0].from_digest.clone();

    // The tag is moved to another image while the request waits.
    demo.host
        .tag_image(&format!("{BACKEND}:v1"), &reference)
        .await
        .expect("retag to v1");
    let bob = Sender::identify(&app, Platform::Console, "bob", "console");
    let approved = flow::approve(&app, &bob, op_id, None).await;
    assert!(approved.applied, "{}", approved.text);
    let ended = eventually(
        "the deploy to end",
        std::time::Duration::from_secs(120),
        || async {
            let operation = app
                .store
                .operation(op_id)
                .await
                .expect("read")
                .expect("exists");
            operation.state.is_final().then_some(operation)
        },
    )
    .await;
    remove_tag(&reference).await;
    assert_eq!(ended.state, OpState::Failed);
    let outcome = ended.outcome.unwrap_or_default();
    let expected = format!(
        "backend: {reference} now points to {}, not {} as approved; nothing was changed — request it again so the image it names now can be approved",
        deckhand::plan::short_digest(
            &demo
                .host
                .image_info(&format!("{BACKEND}:v1"))
                .await
                .expect("inspect")
                .expect("v1")
                .id
        ),
        deckhand::plan::short_digest(&v2.id)
    );
    assert!(outcome.contains(&expected), "{outcome}");
    let steps = app.store.steps(op_id).await.expect("journal");
    assert_eq!(
        steps.len(),
        1,
        "it stopped at resolving the images: {steps:?}"
    );
    let service = &app.config.environment("staging").expect("staging").services["backend"];
    let containers = demo
        .host
        .find_containers(&deckhand::docker::ServiceSelector::from(&service.selector))
        .await
        .expect("backend runs");
    let running = containers[0]
        .image_digest
        .clone()
        .unwrap_or_else(|| containers[0].image_id.clone());
    assert_eq!(Some(running), before, "the backend still runs what it ran");
}
