//! Deckhand's integration tests: one binary, one module per area, sharing
//! `support`. Run one area with `cargo test --test it console::`.

mod support;

mod approvals;
mod audit_chain;
mod check;
mod console;
mod serve;
