//! `App`: the long-lived services every request uses — config, catalog,
//! store, outbox, Docker hosts — behind one `Arc`, plus the tracker of
//! running operation tasks and the shutdown signal. Per-operation data
//! never lives here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use crate::audit::{KeyError, Trail};
use crate::catalog::Catalog;
use crate::chat::Outbox;
use crate::config::Config;
use crate::exec::hosts::Hosts;
use crate::metrics::Metrics;
use crate::names::Platform;
use crate::store::{Store, StoreError};

/// Everything long-lived.
#[derive(Debug)]
pub struct App {
    /// Validated config.
    pub config: Config,
    /// Validated commands.
    pub catalog: Catalog,
    /// The store.
    pub store: Store,
    /// Where messages for chat platforms go.
    pub outbox: Outbox,
    /// Docker host connections, by environment.
    pub hosts: Hosts,
    /// Counters for `/health/metrics`.
    pub metrics: Metrics,
    /// The audit keys and pending refusal summaries.
    pub audit: Trail,
    tasks: Tasks,
    shutdown: watch::Sender<bool>,
}

impl App {
    /// Reads the audit keys, opens the store (running migrations) and
    /// builds the app. Background work starts with `flow::start_background`.
    ///
    /// # Errors
    /// When an audit key is unusable or the store cannot be opened.
    pub async fn open(config: Config, catalog: Catalog) -> Result<Arc<App>, OpenError> {
        let audit = Trail::from_env(&config.audit)?;
        let store = Store::open(&config.store_url).await?;
        let hosts = Hosts::new(&config);
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(App {
            config,
            catalog,
            store,
            outbox: Outbox::default(),
            hosts,
            metrics: Metrics::default(),
            audit,
            tasks: Tasks::default(),
            shutdown,
        }))
    }

    /// The current time. The one clock of the request flow; `parse` and
    /// `policy` never read it themselves.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// Runs `work` as a tracked task, so shutdown and the console can wait
    /// for running operations.
    pub fn spawn<F>(self: &Arc<Self>, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.running.fetch_add(1, Ordering::SeqCst);
        let app = Arc::clone(self);
        tokio::spawn(async move {
            work.await;
            if app.tasks.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                app.tasks.idle.notify_waiters();
            }
        });
    }

    /// Waits until no tracked task runs.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.tasks.idle.notified();
            if self.tasks.running.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Records whether a chat platform's connection is up.
    pub fn set_connected(&self, platform: Platform, connected: bool) {
        self.metrics.set(
            "deckhand_chat_connected",
            ("platform", platform.as_str()),
            i64::from(connected),
        );
    }

    /// Chat connections that adapters reported, and whether each is up.
    pub fn connections(&self) -> Vec<(Platform, bool)> {
        [Platform::Slack, Platform::Discord]
            .into_iter()
            .filter_map(|platform| {
                self.metrics
                    .gauge("deckhand_chat_connected", ("platform", platform.as_str()))
                    .map(|value| (platform, value == 1))
            })
            .collect()
    }

    /// Asks every task to stop at its next safe point.
    pub fn request_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Whether shutdown was requested.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that changes when shutdown is requested.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// Why the app could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An audit key is set but unusable.
    #[error(transparent)]
    AuditKey(#[from] KeyError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Default)]
struct Tasks {
    running: AtomicUsize,
    idle: Notify,
}
