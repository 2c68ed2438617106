//! Deckhand.
//!
//! - [`docker`]: the Docker Engine layer (hosts, discovery, images, recreate, health,
//!   exec, logs, diagnostics) and the example stack's images and compose-like bring-up.
//! - [`probe`]: HTTP probes and smoke checks of service endpoints.

pub mod docker;
pub mod probe;
