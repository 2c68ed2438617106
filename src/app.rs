//! `App`: the long-lived services every request uses — config, catalog,
//! store, outbox, Docker hosts — behind one `Arc`, plus what this process
//! is to the others sharing the store (its instance id and the health of
//! its leases), the tracker of running tasks and the shutdown signal.
//! Per-operation data never lives here.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::{Notify, watch};

use crate::audit::{KeyError, Trail};
use crate::catalog::Catalog;
use crate::chat::Outbox;
use crate::config::Config;
use crate::exec::hosts::Hosts;
use crate::identity::Directory;
use crate::metrics::Metrics;
use crate::names::Platform;
use crate::store::{Lease, Store, StoreError};

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
    /// Where platform group memberships come from, registered by adapters.
    pub directory: Directory,
    /// This process among those sharing the store: the owner name of the
    /// operations it runs (`host:pid:random`).
    pub instance: String,
    /// Wakes the background loop early: another replica changed an
    /// operation (PostgreSQL's change feed).
    pub wake: Notify,
    /// Wakes operations queued in this process: an operation of it ended,
    /// or another replica changed something.
    pub freed: Notify,
    leases: LeaseHealth,
    active: Mutex<HashSet<i64>>,
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
        let expiry = config.operations.lease_expiry;
        Ok(Arc::new(App {
            config,
            catalog,
            store,
            outbox: Outbox::default(),
            hosts,
            metrics: Metrics::default(),
            audit,
            directory: Directory::default(),
            instance: instance_name(),
            wake: Notify::new(),
            freed: Notify::new(),
            leases: LeaseHealth::new(expiry),
            active: Mutex::new(HashSet::new()),
            tasks: Tasks::default(),
            shutdown,
        }))
    }

    /// The current time. The one clock of the request flow; `parse` and
    /// `policy` never read it themselves.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// A fresh lease of this process, from now until the lease expiry.
    pub fn lease(&self) -> Lease {
        let expiry = chrono::Duration::from_std(self.config.operations.lease_expiry)
            .unwrap_or_else(|_| chrono::Duration::seconds(15));
        Lease {
            owner: self.instance.clone(),
            until: self.now() + expiry,
        }
    }

    /// Records a successful renewal of this process's leases.
    pub fn leases_renewed(&self) {
        self.leases.renewed();
    }

    /// Whether this process can still count on its leases: the last
    /// renewal is recent enough that no other process may have taken its
    /// operations over. Running operations stop when this turns false.
    pub fn holds_leases(&self) -> bool {
        self.leases.holds()
    }

    /// Resolves once this process can no longer count on its leases.
    pub async fn leases_lost(&self) {
        loop {
            match self.leases.remaining() {
                Some(remaining) => tokio::time::sleep(remaining).await,
                None => return,
            }
        }
    }

    /// Marks an operation as running (or queued) in this process; `None`
    /// when a task of this process has it already. The mark goes when the
    /// guard drops.
    pub fn claim_local(self: &Arc<Self>, op_id: i64) -> Option<LocalRun> {
        let mut active = self
            .active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        active.insert(op_id).then(|| LocalRun {
            app: Arc::clone(self),
            op_id,
        })
    }

    /// Whether any task of this process runs (or queues) an operation.
    pub fn has_local_runs(&self) -> bool {
        !self
            .active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_empty()
    }

    /// Whether a task of this process has the operation.
    pub fn is_local(&self, op_id: i64) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&op_id)
    }

    /// Runs `work` as a tracked task, so shutdown and the console can wait
    /// for running operations. A panic inside it is caught and logged; the
    /// task still counts down, so `wait_idle` never waits for a dead task.
    pub fn spawn<F>(self: &Arc<Self>, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.running.fetch_add(1, Ordering::SeqCst);
        let done = TaskDone {
            app: Arc::clone(self),
        };
        tokio::spawn(async move {
            if let Err(panic) = std::panic::AssertUnwindSafe(work).catch_unwind().await {
                tracing::error!(error = %panic_text(&panic), "a task panicked");
            }
            drop(done);
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

/// An operation's mark as running in this process; removed on drop, even
/// when the task that holds it panics.
#[derive(Debug)]
pub struct LocalRun {
    app: Arc<App>,
    op_id: i64,
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        self.app
            .active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.op_id);
        // The environment may be free for a queued operation now.
        self.app.freed.notify_waiters();
    }
}

/// The text of a caught panic, for the log.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
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

/// Counts a tracked task down when it ends, however it ends.
struct TaskDone {
    app: Arc<App>,
}

impl Drop for TaskDone {
    fn drop(&mut self) {
        if self.app.tasks.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.app.tasks.idle.notify_waiters();
        }
    }
}

/// How fresh this process's leases are. A renewal succeeds at `renewed`;
/// leases are safe to count on for `expiry` minus a margin after that.
#[derive(Debug)]
struct LeaseHealth {
    renewed: Mutex<Instant>,
    trusted_for: std::time::Duration,
}

impl LeaseHealth {
    fn new(expiry: std::time::Duration) -> LeaseHealth {
        LeaseHealth {
            renewed: Mutex::new(Instant::now()),
            // Stop a little before anyone else may take over.
            trusted_for: expiry.mul_f64(0.8),
        }
    }

    fn renewed(&self) {
        *self
            .renewed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    fn remaining(&self) -> Option<std::time::Duration> {
        let renewed = *self
            .renewed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.trusted_for
            .checked_sub(renewed.elapsed())
            .filter(|left| !left.is_zero())
    }

    fn holds(&self) -> bool {
        self.remaining().is_some()
    }
}

/// `host:pid:random`, unique among processes sharing a store and readable
/// in logs.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "deckhand".to_string());
    let random: u32 = rand::random();
    format!("{host}:{}:{random:08x}", std::process::id())
}
