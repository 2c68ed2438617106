//! Change notifications between replicas sharing PostgreSQL: every
//! committed `Tx` that changed an operation sends `NOTIFY deckhand_ops`, and
//! each process listens, so an approval given through one replica wakes the
//! operation's owner at once instead of at its next poll. SQLite has no such
//! feed; its single process (or a console beside it) polls.

use sqlx::postgres::PgListener;

use super::{Store, StoreError, query_error};

/// The channel operation changes are announced on.
pub(super) const CHANNEL: &str = "deckhand_ops";

/// A live subscription to operation changes.
#[derive(Debug)]
pub struct ChangeFeed {
    listener: PgListener,
}

impl ChangeFeed {
    /// Waits for the next change notification. After a lost connection the
    /// listener reconnects by itself; changes missed meanwhile are found by
    /// the poll that runs anyway.
    ///
    /// # Errors
    /// When the connection fails and cannot be re-established.
    pub async fn next(&mut self) -> Result<(), StoreError> {
        self.listener
            .recv()
            .await
            .map(|_| ())
            .map_err(query_error("waiting for operation changes"))
    }
}

impl Store {
    /// A change feed, on PostgreSQL; `None` on SQLite.
    ///
    /// # Errors
    /// When the listening connection cannot be opened.
    pub async fn change_feed(&self) -> Result<Option<ChangeFeed>, StoreError> {
        if !self.is_postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(self.url.expose())
            .await
            .map_err(query_error("opening the change feed"))?;
        listener
            .listen(CHANNEL)
            .await
            .map_err(query_error("listening for operation changes"))?;
        Ok(Some(ChangeFeed { listener }))
    }
}
