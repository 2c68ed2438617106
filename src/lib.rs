//! Deckhand.
