//! Shared test support: workspaces with their own config and store, and
//! the `deckhand` binary.

pub mod workspace;
