//! Deckhand's integration tests: one binary, one module per area, shared `support`.
//! They run against the real local dockerd (see `support::docker`).

mod docker_layer;
mod support;
