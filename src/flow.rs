//! The request flow, once for every platform: a `Request` becomes an
//! `Action` (parse), is checked (policy, environment gate), planned, stored
//! as an operation, waits for approvals when policy asks, and runs. Also
//! approvals, rejections and withdrawals from any platform, and the
//! background work of every process (`background`): leases, takeover of
//! operations whose owner died, expiry. Adapters call these functions and
//! render what comes back; this module never calls into an adapter, and
//! every change it makes goes through `events`.

mod approvals;
mod background;
mod incident;
mod request;

use std::sync::Arc;

use crate::app::App;
use crate::audit::{AuditContext, AuditEvent};
use crate::chat::{Answer, Request};
use crate::config::User;
use crate::events;
use crate::identity;
use crate::names::Platform;
use crate::policy;
use crate::store::{DeliveryClaim, StoreError};

pub use approvals::{approve, reject, withdraw};
pub use background::{recover_interrupted, shut_down, start_background, sweep_once};
pub use incident::{IncidentError, NewIncident, open_incident, update_incident};

/// How long a handler may hold a delivery's claim before another delivery
/// of it may be handled (its handler is presumed dead).
const DELIVERY_CLAIM: chrono::Duration = chrono::Duration::seconds(60);

/// Who sent something, as far as config knows them.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The platform.
    pub platform: Platform,
    /// Their platform id (on the console: the console name they act as).
    pub user_id: String,
    /// The channel they wrote in.
    pub channel: String,
    /// The person, with the roles their groups add, if config knows them.
    pub user: Option<User>,
    /// Whether `[[users]]` lists this account (not only a group of it).
    pub listed: bool,
    /// The operating-system user running the console, for console senders.
    pub os_user: Option<String>,
}

impl Sender {
    /// Looks a platform user up in config.
    pub fn identify(app: &App, platform: Platform, user_id: &str, channel: &str) -> Sender {
        let identity = identity::identify(&app.config, platform, user_id, &[]);
        Sender {
            platform,
            user_id: user_id.to_string(),
            channel: channel.to_string(),
            user: identity.user,
            listed: identity.listed,
            os_user: None,
        }
    }

    /// Someone at the console: acting as console name `console_name`, run
    /// by operating-system user `os_user`.
    pub fn console(app: &App, console_name: &str, os_user: &str) -> Sender {
        Sender {
            os_user: Some(os_user.to_string()),
            ..Sender::identify(
                app,
                Platform::Console,
                console_name,
                crate::chat::console::CHANNEL,
            )
        }
    }

    /// Adds the roles config maps to the person's platform groups. Someone
    /// config does not list by id but who is in a mapped group becomes a
    /// person named by their platform id, holding those roles (and may
    /// request, but not approve: config cannot tell who they are).
    pub fn with_groups(mut self, app: &App, groups: &[String]) -> Sender {
        let identity = identity::identify(&app.config, self.platform, &self.user_id, groups);
        self.user = identity.user;
        self.listed = identity.listed;
        self
    }

    /// Their name in messages: the config name, or the platform id for
    /// people config does not know.
    pub fn name(&self) -> String {
        match &self.user {
            Some(user) => user.name.to_string(),
            None => identity::unlisted_name(self.platform, &self.user_id).to_string(),
        }
    }

    /// Their name in the audit trail: on the console, with the
    /// operating-system user (`alice (os:root)`).
    pub fn actor(&self) -> String {
        identity::actor_label(&self.name(), self.os_user.as_deref())
    }

    /// The sender as an approver, when config knows them.
    pub fn approver(&self) -> Option<policy::Approver<'_>> {
        self.user.as_ref().map(|user| policy::Approver {
            user,
            platform: self.platform,
            listed: self.listed,
        })
    }
}

/// Handles one request and answers at once; the operation's own message
/// follows through the outbox. A redelivered request is answered
/// `Duplicate` and does nothing; when the store cannot record it, the
/// answer says so and nothing happened (the delivery can be retried).
pub async fn handle_request(app: &Arc<App>, request: Request) -> Answer {
    let sender = Sender::identify(app, request.platform, &request.user_id, &request.channel)
        .with_groups(app, &request.groups);
    handle_request_from(app, &sender, &request).await
}

/// Handles a request from a sender the adapter identified itself (the
/// console, which knows its operating-system user); otherwise as
/// [`handle_request`].
pub async fn handle_request_from(app: &Arc<App>, sender: &Sender, request: &Request) -> Answer {
    let delivery = match &request.delivery_id {
        Some(delivery_id) => {
            match claim_delivery(app, request.platform.as_str(), delivery_id).await {
                Ok(Delivery::Fresh(key)) => Some(key),
                Ok(Delivery::Duplicate) => return Answer::Duplicate,
                Err(error) => return Answer::Private(request::store_unavailable(&error)),
            }
        }
        None => None,
    };
    let handled = request::handle(app, sender, &request.text, delivery.as_ref()).await;
    if let (Err(_), Some(key)) = (&handled, delivery) {
        release_delivery(app, key).await;
    }
    match handled {
        Ok(answer) | Err(answer) => answer,
    }
}

/// Refuses someone writing from a Slack workspace or Discord guild config
/// does not serve: nothing happens but the audit entry, and the answer says
/// so (and whether even the audit entry could not be written).
pub async fn refuse_stranger(app: &App, sender: &Sender, reason: &str) -> Feedback {
    let context = AuditContext {
        actor: sender.actor(),
        platform: sender.platform,
        channel: sender.channel.clone(),
        command: String::new(),
        env: String::new(),
        op_id: 0,
    };
    let event = AuditEvent::Refused {
        reason: reason.to_string(),
        requester_has_role: false,
    };
    match events::record(app, &context, event).await {
        Ok(()) => Feedback::refused(reason),
        Err(error) => Feedback::refused(format!(
            "{reason} (this refusal could not be written to the audit trail: {error})"
        )),
    }
}

/// A platform delivery this process claimed and is handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey(String);

impl DeliveryKey {
    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What claiming a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Handle it, then `complete_delivery` (or release it on failure).
    Fresh(DeliveryKey),
    /// It was handled already, or is being handled right now.
    Duplicate,
}

/// Claims a delivery from `source` (`slack`, `discord`, `pagerduty`: a
/// Slack event id, a button click's trigger id, a gateway interaction id,
/// a webhook id) so it takes effect once.
///
/// # Errors
/// When the store cannot be reached: the delivery must not be handled, and
/// the platform should retry (answer 5xx) or the person be told.
pub async fn claim_delivery(
    app: &App,
    source: &str,
    delivery_id: &str,
) -> Result<Delivery, StoreError> {
    let key = format!("{source}:{delivery_id}");
    match app
        .store
        .claim_delivery(&key, app.now(), DELIVERY_CLAIM)
        .await?
    {
        DeliveryClaim::Fresh => Ok(Delivery::Fresh(DeliveryKey(key))),
        DeliveryClaim::Done | DeliveryClaim::InProgress => Ok(Delivery::Duplicate),
    }
}

/// Marks a claimed delivery handled. When the store does not take it, the
/// claim lapses and a redelivery is handled again; the actions delivered
/// this way (approvals, reactions) are idempotent.
pub async fn complete_delivery(app: &App, key: DeliveryKey) {
    if let Err(error) = app.store.complete_delivery(&key.0, app.now()).await {
        tracing::warn!(error = %error, "cannot mark a delivery handled; its claim lapses");
    }
}

/// Gives a claim back after handling failed, so the platform's retry is
/// handled instead of being answered as a duplicate.
pub async fn release_delivery(app: &App, key: DeliveryKey) {
    if let Err(error) = app.store.release_delivery(&key.0).await {
        tracing::warn!(error = %error, "cannot release a delivery; its claim lapses");
    }
}

/// The answer to an approval, rejection or withdrawal, for the person who
/// gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// Whether it changed anything.
    pub applied: bool,
    /// What to tell them.
    pub text: String,
}

impl Feedback {
    fn applied(text: impl Into<String>) -> Feedback {
        Feedback {
            applied: true,
            text: text.into(),
        }
    }

    fn refused(text: impl Into<String>) -> Feedback {
        Feedback {
            applied: false,
            text: text.into(),
        }
    }
}
