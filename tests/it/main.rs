//! Deckhand's integration tests: one binary, one module per area, sharing
//! `support` (workspaces, the binary, and local Slack, Discord and PagerDuty
//! peers). Run one area with `cargo test --test it console::`.

mod support;

mod approvals;
mod audit_chain;
mod check;
mod console;
mod crash;
mod deploy;
mod diagnose;
mod discord;
mod docker_layer;
mod fuzz;
mod ownership;
mod pagerduty;
mod peers;
mod postgres_store;
mod replicas;
mod rotate;
mod secrets;
mod serve;
mod slack;
mod trust;
