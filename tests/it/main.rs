//! Deckhand's integration tests: one binary, one module per area, and the
//! shared `support` module (local Slack, Discord and PagerDuty peers).

mod peers;
mod support;
