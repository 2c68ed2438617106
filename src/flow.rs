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
use crate::chat::{Answer, Request};
use crate::config::User;
use crate::names::{Platform, UserName};
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
    /// Their platform id.
    pub user_id: String,
    /// The channel they wrote in.
    pub channel: String,
    /// Their config entry, if any.
    pub user: Option<User>,
}

impl Sender {
    /// Looks a platform user up in config.
    pub fn identify(app: &App, platform: Platform, user_id: &str, channel: &str) -> Sender {
        Sender {
            platform,
            user_id: user_id.to_string(),
            channel: channel.to_string(),
            user: app.config.user_by_platform_id(platform, user_id).cloned(),
        }
    }

    /// Adds the roles config maps to the person's platform groups. Someone
    /// config does not list by id but who is in a mapped group becomes a
    /// person named by their platform id, holding those roles.
    pub fn with_groups(mut self, app: &App, groups: &[String]) -> Sender {
        let group_roles = app.config.roles_of_groups(self.platform, groups);
        if group_roles.is_empty() {
            return self;
        }
        let user = self.user.get_or_insert_with(|| User {
            name: UserName::new(format!("{}:{}", self.platform, self.user_id)),
            roles: Vec::new(),
            console: None,
            slack: None,
            discord: None,
        });
        for role in group_roles {
            if !user.roles.contains(&role) {
                user.roles.push(role);
            }
        }
        self
    }

    /// Their name in messages and the audit log: the config name, or the
    /// platform id for people config does not know.
    pub fn name(&self) -> String {
        match &self.user {
            Some(user) => user.name.to_string(),
            None => format!("{}:{}", self.platform, self.user_id),
        }
    }
}

/// Handles one request and answers at once; the operation's own message
/// follows through the outbox. A redelivered request is answered
/// `Duplicate` and does nothing; when the store cannot record it, the
/// answer says so and nothing happened (the delivery can be retried).
pub async fn handle_request(app: &Arc<App>, request: Request) -> Answer {
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
    let sender = Sender::identify(app, request.platform, &request.user_id, &request.channel)
        .with_groups(app, &request.groups);
    let handled = request::handle(app, &sender, &request.text, delivery.as_ref()).await;
    if let (Err(_), Some(key)) = (&handled, delivery) {
        release_delivery(app, key).await;
    }
    match handled {
        Ok(answer) | Err(answer) => answer,
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
