//! Who may request a command where, who must approve it, and the operation
//! state machine. Pure: no IO and no clock — callers pass `now` — so every
//! rule is tested with plain values.
//!
//! Rules kept here: default deny (people without a role run only the
//! read-only commands config allows); an approver is never the requester,
//! holds an approver role, counts once, and approves one operation with its
//! exact parameters (by hash); approvals can be withdrawn until the
//! operation starts; expired, rejected or cancelled operations never run.
//! People are compared as people, not accounts: an account config knows
//! only through a platform group may request but not approve (unless config
//! opts in), an approver must be someone config can tell apart from the
//! requester, and approvals count only while the approver holds the role.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::catalog::{CommandSpec, OnBusy, RoleRef};
use crate::config::{Config, User};
use crate::names::{EnvName, Platform, RoleName, UserName};

/// Where an operation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpState {
    /// Waiting for approvals.
    Pending,
    /// Approved (or needing none), about to run.
    Approved,
    /// Rejected by an approver.
    Rejected,
    /// Not approved in time.
    Expired,
    /// Withdrawn by the requester.
    Cancelled,
    /// Running its steps.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed and nothing needed undoing, or undoing failed.
    Failed,
    /// A step failed and the previous version was restored.
    RolledBack,
    /// Deckhand stopped while it ran.
    Interrupted,
}

impl OpState {
    /// Every state, for parsing stored values.
    pub const ALL: [OpState; 10] = [
        OpState::Pending,
        OpState::Approved,
        OpState::Rejected,
        OpState::Expired,
        OpState::Cancelled,
        OpState::Running,
        OpState::Succeeded,
        OpState::Failed,
        OpState::RolledBack,
        OpState::Interrupted,
    ];

    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Pending => "pending",
            OpState::Approved => "approved",
            OpState::Rejected => "rejected",
            OpState::Expired => "expired",
            OpState::Cancelled => "cancelled",
            OpState::Running => "running",
            OpState::Succeeded => "succeeded",
            OpState::Failed => "failed",
            OpState::RolledBack => "rolled-back",
            OpState::Interrupted => "interrupted",
        }
    }

    /// Reads a stored state.
    pub fn from_name(name: &str) -> Option<OpState> {
        OpState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// Whether nothing more will happen to the operation.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OpState::Rejected
                | OpState::Expired
                | OpState::Cancelled
                | OpState::Succeeded
                | OpState::Failed
                | OpState::RolledBack
                | OpState::Interrupted
        )
    }

    /// Whether it was approved and has run or runs: its approvals can no
    /// longer be withdrawn.
    pub fn has_started(self) -> bool {
        matches!(
            self,
            OpState::Approved
                | OpState::Running
                | OpState::Succeeded
                | OpState::Failed
                | OpState::RolledBack
                | OpState::Interrupted
        )
    }

    /// Whether the state machine allows going from `self` to `next`:
    /// pending → approved | rejected | expired | cancelled → running →
    /// succeeded | failed | rolled-back | interrupted.
    pub fn can_become(self, next: OpState) -> bool {
        use OpState::*;
        matches!(
            (self, next),
            (Pending, Approved | Rejected | Expired | Cancelled)
                | (
                    Approved,
                    Running | Cancelled | Rejected | Failed | Interrupted
                )
                | (Running, Succeeded | Failed | RolledBack | Interrupted)
        )
    }
}

impl fmt::Display for OpState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// What a permitted request needs before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Approvals needed; zero runs at once.
    pub approvals: u32,
    /// Roles whose members may approve.
    pub approvers: Vec<RoleName>,
    /// How long the request waits for them.
    pub expires: std::time::Duration,
    /// What it does when its environment is busy.
    pub on_busy: OnBusy,
}

/// A refusal by policy. Each message says who may do it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The person maps to no role and the command is not open to them.
    NoRole {
        /// Commands they may run.
        allowed: Vec<String>,
    },
    /// No policy covers the command in this environment.
    NotAllowedHere {
        /// The command.
        command: String,
        /// The environment, if any.
        env: Option<String>,
    },
    /// The person lacks every role that may request.
    NeedRoleToRequest {
        /// The command.
        command: String,
        /// The environment, if any.
        env: Option<String>,
        /// Roles that may.
        roles: Vec<String>,
    },
    /// The operation no longer waits for approval.
    NotPending {
        /// The operation.
        op_id: i64,
        /// Its state.
        state: OpState,
    },
    /// A withdrawal that came after the operation started.
    AlreadyStarted {
        /// The operation.
        op_id: i64,
    },
    /// The request expired.
    Expired {
        /// The operation.
        op_id: i64,
        /// When it expired.
        at: DateTime<Utc>,
    },
    /// The requester tried to approve their own request.
    SelfApproval {
        /// The operation.
        op_id: i64,
        /// Roles that may approve.
        roles: Vec<String>,
    },
    /// The person lacks an approver role.
    NeedRoleToApprove {
        /// The operation.
        op_id: i64,
        /// Roles that may approve.
        roles: Vec<String>,
    },
    /// The person lacks an approver role to reject.
    NeedRoleToReject {
        /// The operation.
        op_id: i64,
        /// Roles that may reject.
        roles: Vec<String>,
    },
    /// The approval was given for other parameters.
    ChangedParameters {
        /// The operation.
        op_id: i64,
    },
    /// The person approved already.
    AlreadyApproved {
        /// The operation.
        op_id: i64,
        /// Approvals counted so far.
        have: u32,
        /// Approvals needed.
        need: u32,
    },
    /// A withdrawal when the person has no approval to withdraw.
    NothingToWithdraw {
        /// The operation.
        op_id: i64,
    },
    /// The approver's account is known only through a platform group.
    UnlistedApprover {
        /// The operation.
        op_id: i64,
        /// The approver's platform.
        platform: Platform,
    },
    /// The requester's account is known only through a platform group,
    /// and config lists no account of the approver on that platform, so it
    /// cannot tell the two apart.
    IndistinctFromRequester {
        /// The operation.
        op_id: i64,
        /// The requester's name.
        requester: String,
        /// The requester's platform.
        platform: Platform,
    },
    /// The console acts only on operations requested from the console.
    OtherPlatform {
        /// The operation.
        op_id: i64,
        /// Where it was requested.
        platform: Platform,
    },
}

fn roles_text(roles: &[String]) -> String {
    match roles {
        [] => "none".to_string(),
        [one] => format!("role {one}"),
        many => format!(
            "role {} or {}",
            many[..many.len() - 1].join(", "),
            many[many.len() - 1]
        ),
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::NoRole { allowed } if allowed.is_empty() => write!(
                formatter,
                "you have no role in Deckhand, so you may not run anything; ask an admin to add you to config/deckhand.toml"
            ),
            PolicyError::NoRole { allowed } => write!(
                formatter,
                "you have no role in Deckhand, so you may run only {}; ask an admin to add you to config/deckhand.toml",
                allowed
                    .iter()
                    .map(|name| format!("/{name}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            PolicyError::NotAllowedHere {
                command,
                env: Some(env),
            } => write!(
                formatter,
                "/{command} has no policy for {env}, so nobody may run it there"
            ),
            PolicyError::NotAllowedHere { command, env: None } => write!(
                formatter,
                "/{command} needs an environment, so nobody may run it without one"
            ),
            PolicyError::NeedRoleToRequest {
                command,
                env: Some(env),
                roles,
            } => write!(
                formatter,
                "you need {} to run /{command} in {env}",
                roles_text(roles)
            ),
            PolicyError::NeedRoleToRequest {
                command,
                env: None,
                roles,
            } => write!(
                formatter,
                "you need {} to run /{command}",
                roles_text(roles)
            ),
            PolicyError::NotPending { op_id, state } => write!(
                formatter,
                "#{op_id} is not waiting for approval: it is {state}"
            ),
            PolicyError::AlreadyStarted { op_id } => {
                write!(formatter, "too late: #{op_id} already started")
            }
            PolicyError::Expired { op_id, at } => write!(
                formatter,
                "#{op_id} expired at {} UTC and will not run; request it again",
                at.format("%H:%M")
            ),
            PolicyError::SelfApproval { op_id, roles } => write!(
                formatter,
                "you requested #{op_id}, so you cannot approve it; someone else with {} must",
                roles_text(roles)
            ),
            PolicyError::NeedRoleToApprove { op_id, roles } => write!(
                formatter,
                "you need {} to approve #{op_id}",
                roles_text(roles)
            ),
            PolicyError::NeedRoleToReject { op_id, roles } => write!(
                formatter,
                "you need {} to reject #{op_id}",
                roles_text(roles)
            ),
            PolicyError::ChangedParameters { op_id } => write!(
                formatter,
                "that approval was for other parameters than #{op_id} has; nothing was approved"
            ),
            PolicyError::AlreadyApproved { op_id, have, need } => write!(
                formatter,
                "you already approved #{op_id}; one person counts once ({have} of {need} approvals)"
            ),
            PolicyError::NothingToWithdraw { op_id } => {
                write!(formatter, "you have no approval of #{op_id} to withdraw")
            }
            PolicyError::UnlistedApprover { op_id, platform } => write!(
                formatter,
                "you hold your role only through a {platform} group and config does not list your {platform} account, so you may request but not approve #{op_id}; ask an admin to add your {platform} id to [[users]] in config/deckhand.toml"
            ),
            PolicyError::IndistinctFromRequester {
                op_id,
                requester,
                platform,
            } => write!(
                formatter,
                "#{op_id} was requested by {requester}, a {platform} account config does not list, and config lists no {platform} account of yours, so it cannot tell you from the requester; someone listed with a {platform} id must approve"
            ),
            PolicyError::OtherPlatform { op_id, platform } => write!(
                formatter,
                "#{op_id} was requested from {platform}; the console acts only on operations requested from the console ([console] cross_platform is off)"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Whether `requester` may request `spec` in `env`, and what it then needs.
/// `requester` is `None` for people config does not know.
///
/// # Errors
/// A `PolicyError` saying which role is needed.
pub fn check_request(
    spec: &CommandSpec,
    env: Option<&EnvName>,
    requester: Option<&User>,
    config: &Config,
) -> Result<Grant, PolicyError> {
    let roles = requester.map(|user| user.roles.as_slice()).unwrap_or(&[]);
    if roles.is_empty() {
        let open = !spec.mutating
            && config
                .unmapped_may_run
                .iter()
                .any(|name| name == spec.name.as_str());
        return if open {
            Ok(Grant {
                approvals: 0,
                approvers: Vec::new(),
                expires: crate::catalog::DEFAULT_EXPIRY,
                on_busy: OnBusy::Refuse,
            })
        } else {
            Err(PolicyError::NoRole {
                allowed: config.unmapped_may_run.clone(),
            })
        };
    }
    let Some(rule) = spec.policy_for(env) else {
        return Err(PolicyError::NotAllowedHere {
            command: spec.name.to_string(),
            env: env.map(ToString::to_string),
        });
    };
    let permitted = rule.request.iter().any(|role_ref| match role_ref {
        RoleRef::Anyone => true,
        RoleRef::Role(role) => roles.contains(role),
    });
    if !permitted {
        return Err(PolicyError::NeedRoleToRequest {
            command: spec.name.to_string(),
            env: env.map(ToString::to_string),
            roles: rule.request.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(Grant {
        approvals: rule.approvals,
        approvers: rule.approvers.clone(),
        expires: rule.expires,
        on_busy: rule.on_busy,
    })
}

/// One approval as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRecord {
    /// Who approved.
    pub approver: UserName,
    /// The parameters hash they approved.
    pub params_hash: String,
    /// Whether they withdrew it.
    pub withdrawn: bool,
    /// Where they approved from.
    pub platform: Platform,
    /// Their account there; `None` for approvals older than accounts.
    pub account: Option<String>,
}

/// What policy needs to know about an operation awaiting approval.
#[derive(Debug, Clone)]
pub struct ApprovalView<'a> {
    /// The operation.
    pub op_id: i64,
    /// Its state.
    pub state: OpState,
    /// Who asked for it.
    pub requester: &'a str,
    /// Hash of its exact parameters.
    pub params_hash: &'a str,
    /// When it expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Approvals needed.
    pub needed: u32,
    /// Roles whose members may approve.
    pub approver_roles: &'a [RoleName],
    /// Approvals given so far.
    pub approvals: &'a [ApprovalRecord],
    /// Whether it is approved and waits in its environment's queue.
    pub queued: bool,
    /// Where it was requested.
    pub requester_platform: Platform,
    /// Whether config lists the requester's account; an account known only
    /// through a platform group cannot be told apart from an approver's
    /// other accounts unless config lists the approver on that platform.
    pub requester_listed: bool,
    /// Approvers who no longer hold an approver role: their approvals no
    /// longer count.
    pub lapsed: &'a [UserName],
    /// Whether accounts known only through a platform group may approve.
    pub unlisted_approvers: bool,
}

/// Someone approving: the person and how config knows their account.
#[derive(Debug, Clone, Copy)]
pub struct Approver<'a> {
    /// The person, with the roles they hold now.
    pub user: &'a User,
    /// The platform they approve from.
    pub platform: Platform,
    /// Whether `[[users]]` lists their account on that platform.
    pub listed: bool,
}

impl ApprovalView<'_> {
    /// Approvals that count: distinct people, not withdrawn, for these exact
    /// parameters.
    pub fn count(&self) -> u32 {
        let mut counted: Vec<&UserName> = Vec::new();
        for approval in self.approvals {
            let counts = !approval.withdrawn
                && approval.params_hash == self.params_hash
                && approval.approver.as_str() != self.requester
                && !self.lapsed.contains(&approval.approver)
                && !counted.contains(&&approval.approver);
            if counts {
                counted.push(&approval.approver);
            }
        }
        u32::try_from(counted.len()).unwrap_or(u32::MAX)
    }

    /// Whether enough approvals are in.
    pub fn is_approved(&self) -> bool {
        self.count() >= self.needed
    }

    fn roles(&self) -> Vec<String> {
        self.approver_roles
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn check_open(&self, now: DateTime<Utc>) -> Result<(), PolicyError> {
        if self.state != OpState::Pending {
            return Err(PolicyError::NotPending {
                op_id: self.op_id,
                state: self.state,
            });
        }
        match self.expires_at {
            Some(at) if now >= at => Err(PolicyError::Expired {
                op_id: self.op_id,
                at,
            }),
            _ => Ok(()),
        }
    }

    fn holds_approver_role(&self, user: &User) -> bool {
        user.roles
            .iter()
            .any(|role| self.approver_roles.contains(role))
    }
}

/// Whether `approver` may approve the operation with `presented_hash`.
///
/// # Errors
/// Why not: not pending, expired, own request, missing role, other
/// parameters, or approved already.
pub fn check_approval(
    view: &ApprovalView<'_>,
    approver: Option<Approver<'_>>,
    presented_hash: &str,
    now: DateTime<Utc>,
) -> Result<(), PolicyError> {
    view.check_open(now)?;
    let Some(Approver {
        user: approver,
        platform,
        listed,
    }) = approver
    else {
        return Err(PolicyError::NeedRoleToApprove {
            op_id: view.op_id,
            roles: view.roles(),
        });
    };
    if approver.name.as_str() == view.requester {
        return Err(PolicyError::SelfApproval {
            op_id: view.op_id,
            roles: view.roles(),
        });
    }
    if !view.holds_approver_role(approver) {
        return Err(PolicyError::NeedRoleToApprove {
            op_id: view.op_id,
            roles: view.roles(),
        });
    }
    if !listed && !view.unlisted_approvers {
        return Err(PolicyError::UnlistedApprover {
            op_id: view.op_id,
            platform,
        });
    }
    if !view.requester_listed
        && !view.unlisted_approvers
        && approver.id_on(view.requester_platform).is_none()
    {
        return Err(PolicyError::IndistinctFromRequester {
            op_id: view.op_id,
            requester: view.requester.to_string(),
            platform: view.requester_platform,
        });
    }
    if presented_hash != view.params_hash {
        return Err(PolicyError::ChangedParameters { op_id: view.op_id });
    }
    let already = view.approvals.iter().any(|approval| {
        approval.approver == approver.name
            && !approval.withdrawn
            && approval.params_hash == view.params_hash
    });
    if already {
        return Err(PolicyError::AlreadyApproved {
            op_id: view.op_id,
            have: view.count(),
            need: view.needed,
        });
    }
    Ok(())
}

/// Whether someone acting from `acting_from` may approve, reject or
/// withdraw on an operation requested from `requested_on`: the console acts
/// on other platforms' operations only when config allows it.
///
/// # Errors
/// `OtherPlatform` when it may not.
pub fn check_reach(
    op_id: i64,
    requested_on: Platform,
    acting_from: Platform,
    console_cross_platform: bool,
) -> Result<(), PolicyError> {
    if acting_from == Platform::Console
        && requested_on != Platform::Console
        && !console_cross_platform
    {
        return Err(PolicyError::OtherPlatform {
            op_id,
            platform: requested_on,
        });
    }
    Ok(())
}

/// Whether the person holds one of `roles`.
pub fn holds_any_role(user: &User, roles: &[RoleName]) -> bool {
    user.roles.iter().any(|role| roles.contains(role))
}

/// What a rejection by this person means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An approver rejected it.
    Rejected,
    /// The requester withdrew their own request.
    Cancelled,
}

/// Whether `user` may reject the operation: an approver rejects, the
/// requester cancels.
///
/// # Errors
/// Why not: not pending, expired, or missing role.
pub fn check_rejection(
    view: &ApprovalView<'_>,
    user: Option<&User>,
    now: DateTime<Utc>,
) -> Result<Refusal, PolicyError> {
    // A queued operation is approved already; it can still be called off
    // until it starts, and no expiry applies to it.
    if !(view.state == OpState::Approved && view.queued) {
        view.check_open(now)?;
    }
    match user {
        Some(user) if user.name.as_str() == view.requester => Ok(Refusal::Cancelled),
        Some(user) if view.holds_approver_role(user) => Ok(Refusal::Rejected),
        _ => Err(PolicyError::NeedRoleToReject {
            op_id: view.op_id,
            roles: view.roles(),
        }),
    }
}

/// Whether `user` may withdraw their approval: only while the operation
/// still waits, and only an approval they gave.
///
/// # Errors
/// Why not.
pub fn check_withdrawal(view: &ApprovalView<'_>, user: &User) -> Result<(), PolicyError> {
    if view.state.has_started() {
        return Err(PolicyError::AlreadyStarted { op_id: view.op_id });
    }
    if view.state != OpState::Pending {
        return Err(PolicyError::NotPending {
            op_id: view.op_id,
            state: view.state,
        });
    }
    let has_approval = view
        .approvals
        .iter()
        .any(|approval| approval.approver == user.name && !approval.withdrawn);
    if has_approval {
        Ok(())
    } else {
        Err(PolicyError::NothingToWithdraw { op_id: view.op_id })
    }
}

#[cfg(test)]
mod tests;
