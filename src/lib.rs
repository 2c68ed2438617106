//! Deckhand.

pub mod verify;
