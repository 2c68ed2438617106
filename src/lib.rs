//! Deckhand: the platform's operations runbook as chat commands.
//!
//! A request flows one way through these modules:
//!
//! - `chat` — adapters (console; Slack in `chat::slack`; Discord in
//!   `chat::discord`) turn platform events into a neutral `Request` and render
//!   neutral `Reply`s back.
//! - `parse` — `Request` text → `Action`, checked against the `catalog`
//!   (commands/*.toml) and `config` (config/deckhand.toml).
//! - `policy` — who may request, who must approve; pure, no IO.
//!   `identity` — which person a platform account is, and the roles it
//!   holds now (platform groups looked up again when they matter).
//! - `flow` — the request flow itself: operations, approvals, expiry, and
//!   the background work of every process (leases, takeover, recovery).
//! - `exec` — environment locks, the step runner and the step kinds; it
//!   writes what happens through `events` and never calls the flow.
//! - `events` — the one place where what happens to an operation becomes
//!   its audit entry (in the same transaction as the change), its message
//!   and its metrics; `plan` and `message` are what it shows.
//! - `store` — operations, approvals, releases, locks, dedupe and the
//!   `audit` log (keyed chain, signed checkpoints), through sqlx (SQLite or
//!   PostgreSQL).
//!
//! - `docker` — the Docker Engine layer through bollard (the only module
//!   naming bollard); `probe` — HTTP probes and smoke checks.
//! - `diagnose` — the runbook's "Common Issues" checks behind `/diagnose`;
//!   `pagerduty` — incidents from PagerDuty webhooks answered with a
//!   diagnostic report, and notes back on the incident.
//!
//! Supporting modules: `names` (typed names), `problem` (file:line problems),
//! `duration`, `secret`.

pub mod app;
pub mod audit;
pub mod catalog;
pub mod chat;
pub mod config;
pub mod demo;
pub mod diagnose;
pub mod docker;
pub mod duration;
pub mod events;
pub mod exec;
pub mod flow;
pub mod http;
pub mod identity;
pub mod message;
pub mod metrics;
pub mod names;
pub mod pagerduty;
pub mod parse;
pub mod plan;
pub mod policy;
pub mod probe;
pub mod problem;
pub mod secret;
pub mod store;
pub mod verify;
