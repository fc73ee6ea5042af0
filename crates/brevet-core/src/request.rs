//! The request → grant lifecycle.
//!
//! ```text
//! pending ──approve (N of M)──▶ approved ──activate──▶ activating ──provider ok──▶ active
//!    │ deny / approve-by passed / cancel   │ activate-by passed / cancel   │ provider failed → approved
//!    ▼                                     ▼                                        │ expiry / revoke
//! denied · expired · cancelled          expired · cancelled                        ▼
//!                                                   revoked ◀──verified── revoking ──failed──▶ revoke_failed
//!                                                                           ▲                       │
//!                                                                           └──────retry (backoff)──┘
//! ```
//! `activating` is the durable intent: it is written before any provider is called, so a restart
//! (or another replica) can resume it. Duration starts when access is actually granted.
//! Extension requests use the same machine but stop at `approved`, which means "applied".

use std::{collections::BTreeSet, fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    error::{invalid, CoreError},
    Binding, GrantDuration, PrincipalId, ProfileName, RequestId, ResourceId,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
    Activating,
    Active,
    Revoking,
    Revoked,
    RevokeFailed,
}

impl RequestState {
    pub const ALL: [RequestState; 10] = [
        Self::Pending,
        Self::Approved,
        Self::Denied,
        Self::Expired,
        Self::Cancelled,
        Self::Activating,
        Self::Active,
        Self::Revoking,
        Self::Revoked,
        Self::RevokeFailed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Activating => "activating",
            Self::Active => "active",
            Self::Revoking => "revoking",
            Self::Revoked => "revoked",
            Self::RevokeFailed => "revoke_failed",
        }
    }

    /// States in which a provider may hold (or be about to hold) access for this request.
    pub fn holds_access(&self) -> bool {
        matches!(self, Self::Activating | Self::Active)
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Denied | Self::Expired | Self::Cancelled | Self::Revoked
        )
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| invalid("request state", s, "unknown state"))
    }
}

/// Events that move a request through its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Approve,
    Deny,
    Cancel,
    ApproveDeadlinePassed,
    ActivateDeadlinePassed,
    StartActivation,
    ActivationSucceeded,
    ActivationFailed,
    /// The activation failed and what it had created could not be removed: the grant ends, and
    /// the removal is retried like a failed revocation.
    ActivationAbandoned,
    StartRevocation,
    RevocationVerified,
    RevocationFailed,
}

impl Transition {
    fn verb(&self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Cancel => "cancel",
            Self::ApproveDeadlinePassed => "expire (approve-by passed)",
            Self::ActivateDeadlinePassed => "expire (activate-by passed)",
            Self::StartActivation => "activate",
            Self::ActivationSucceeded => "complete activation of",
            Self::ActivationFailed => "fail activation of",
            Self::ActivationAbandoned => "abandon activation of",
            Self::StartRevocation => "revoke",
            Self::RevocationVerified => "complete revocation of",
            Self::RevocationFailed => "fail revocation of",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RequestKind {
    Access,
    /// Lengthens an active grant; applied when approved.
    Extension {
        parent: RequestId,
    },
}

/// When access was actually granted and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub granted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What a provider observed when it read the target back after revoking: the proof that access ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub checked_at: DateTime<Utc>,
    /// What the check looked at and what it found, in the provider's words.
    pub observation: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Requester,
    Approver,
    Admin,
}

impl FromStr for Role {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "requester" => Ok(Self::Requester),
            "approver" => Ok(Self::Approver),
            "admin" => Ok(Self::Admin),
            _ => Err(invalid("role", s, "use requester, approver or admin")),
        }
    }
}

/// An authenticated caller: who they are, their groups (feeding policy) and their API roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: PrincipalId,
    pub groups: BTreeSet<String>,
    pub roles: BTreeSet<Role>,
}

impl Principal {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: RequestId,
    pub kind: RequestKind,
    pub requester: PrincipalId,
    /// The requester's groups when they asked (from the config or their sign-in), so approval
    /// policies about the requester see the same groups as the request policy did.
    #[serde(default)]
    pub requester_groups: std::collections::BTreeSet<String>,
    pub resource: ResourceId,
    pub profile: ProfileName,
    pub duration: GrantDuration,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub state: RequestState,
    /// Approvals needed, from the policy rule that allowed the request (0 = auto-approved).
    pub approvals_required: u32,
    /// Id of the Cedar policy whose limits govern this request.
    pub policy_rule: String,
    pub max_extensions: u32,
    pub extensions_applied: u32,
    /// The extension requests already applied to this grant, so none is applied twice (two
    /// approvals racing, or an approval abandoned between extending and recording). Requests
    /// stored before this list existed have only the count above.
    #[serde(default)]
    pub applied_extensions: Vec<RequestId>,
    pub created_at: DateTime<Utc>,
    pub approve_by: DateTime<Utc>,
    pub activate_by: Option<DateTime<Utc>>,
    pub window: Option<Window>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
    pub evidence: Option<Evidence>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Optimistic-concurrency version, bumped by the store on every write.
    pub version: i64,
}

/// Inputs for a new request, after policy has allowed it.
pub struct NewRequest {
    pub kind: RequestKind,
    pub requester: PrincipalId,
    pub resource: ResourceId,
    pub profile: ProfileName,
    pub duration: GrantDuration,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    pub approvals_required: u32,
    pub policy_rule: String,
    pub max_extensions: u32,
    pub approve_within: Duration,
    pub activate_within: Duration,
}

impl Request {
    pub fn new(n: NewRequest, now: DateTime<Utc>) -> Self {
        let approve_by = now
            + chrono::Duration::from_std(n.approve_within).unwrap_or(chrono::Duration::hours(24));
        let mut r = Self {
            id: RequestId::new(),
            kind: n.kind,
            requester: n.requester,
            requester_groups: Default::default(),
            resource: n.resource,
            profile: n.profile,
            duration: n.duration,
            reason: n.reason,
            ticket: n.ticket,
            state: RequestState::Pending,
            approvals_required: n.approvals_required,
            policy_rule: n.policy_rule,
            max_extensions: n.max_extensions,
            extensions_applied: 0,
            applied_extensions: Vec::new(),
            created_at: now,
            approve_by,
            activate_by: None,
            window: None,
            revoked_at: None,
            revoke_reason: None,
            evidence: None,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            version: 0,
        };
        if r.approvals_required == 0 {
            r.mark_approved(now, n.activate_within);
        }
        r
    }

    /// Whether approvers' decisions can have been recorded for this request. Decisions are
    /// taken only while a request is pending, and one that needs no approval is approved as it
    /// is created, so it never has any; the store refuses to record one for it. Readers of a
    /// request (the API's view of it) skip reading decisions that cannot exist.
    pub fn awaited_approval(&self) -> bool {
        self.approvals_required > 0
    }

    pub fn binding(&self) -> Binding {
        Binding {
            principal: self.requester.clone(),
            resource: self.resource.clone(),
            profile: self.profile.clone(),
        }
    }

    /// The pure state function: which state an event leads to, or why it cannot happen.
    pub fn next_state(&self, t: Transition) -> Result<RequestState, CoreError> {
        use RequestState as S;
        use Transition as T;
        let extension = matches!(self.kind, RequestKind::Extension { .. });
        let next = match (self.state, t) {
            (S::Pending, T::Approve) => Some(S::Approved),
            (S::Pending, T::Deny) => Some(S::Denied),
            (S::Pending, T::ApproveDeadlinePassed) => Some(S::Expired),
            (S::Pending, T::Cancel) => Some(S::Cancelled),
            (S::Approved, T::Cancel) if !extension => Some(S::Cancelled),
            (S::Approved, T::ActivateDeadlinePassed) if !extension => Some(S::Expired),
            (S::Approved, T::StartActivation) if !extension => Some(S::Activating),
            (S::Activating, T::ActivationSucceeded) => Some(S::Active),
            (S::Activating, T::ActivationFailed) => Some(S::Approved),
            (S::Activating, T::ActivationAbandoned) => Some(S::RevokeFailed),
            (S::Active, T::StartRevocation) => Some(S::Revoking),
            (S::Revoking | S::RevokeFailed, T::RevocationVerified) => Some(S::Revoked),
            (S::Revoking | S::RevokeFailed, T::RevocationFailed) => Some(S::RevokeFailed),
            _ => None,
        };
        next.ok_or_else(|| CoreError::BadTransition {
            action: t.verb(),
            state: self.state,
            hint: match self.state {
                S::Pending if t == T::StartActivation => {
                    "; it still needs approval (see `brevet requests --pending`)".into()
                }
                S::Active if t == T::StartActivation => "; it is already active".into(),
                s if s.is_terminal() => "; it has ended, so make a new request".into(),
                _ => String::new(),
            },
        })
    }

    fn apply(&mut self, t: Transition) -> Result<(), CoreError> {
        self.state = self.next_state(t)?;
        Ok(())
    }

    fn mark_approved(&mut self, now: DateTime<Utc>, activate_within: Duration) {
        self.state = RequestState::Approved;
        if matches!(self.kind, RequestKind::Access) {
            self.activate_by = Some(
                now + chrono::Duration::from_std(activate_within)
                    .unwrap_or(chrono::Duration::hours(24)),
            );
        }
    }

    pub fn approve(
        &mut self,
        now: DateTime<Utc>,
        activate_within: Duration,
    ) -> Result<(), CoreError> {
        self.next_state(Transition::Approve)?;
        self.mark_approved(now, activate_within);
        Ok(())
    }

    /// Whether an approver may still decide: pending, and before its approve-by deadline. The
    /// deadline holds at decision time, not only when the scheduler gets round to expiring it.
    pub fn ensure_decidable(&self, now: DateTime<Utc>) -> Result<(), CoreError> {
        self.next_state(Transition::Approve)?;
        if now >= self.approve_by {
            return Err(CoreError::BadTransition {
                action: "decide on",
                state: self.state,
                hint: format!(
                    "; its approve-by deadline {} has passed, so the requester must ask again",
                    self.approve_by
                ),
            });
        }
        Ok(())
    }

    pub fn deny(&mut self) -> Result<(), CoreError> {
        self.apply(Transition::Deny)
    }

    pub fn cancel(&mut self) -> Result<(), CoreError> {
        self.apply(Transition::Cancel)
    }

    /// Expires a request whose approve-by or activate-by deadline has passed.
    pub fn expire_deadline(&mut self, now: DateTime<Utc>) -> Result<(), CoreError> {
        match self.state {
            RequestState::Pending if now >= self.approve_by => {
                self.apply(Transition::ApproveDeadlinePassed)
            }
            RequestState::Approved if self.activate_by.is_some_and(|t| now >= t) => {
                self.apply(Transition::ActivateDeadlinePassed)
            }
            _ => Err(CoreError::BadTransition {
                action: "expire",
                state: self.state,
                hint: "; no deadline has passed".into(),
            }),
        }
    }

    /// Writes the intent: the grant window is fixed now, before any provider is called.
    pub fn start_activation(&mut self, now: DateTime<Utc>) -> Result<Window, CoreError> {
        if let Some(by) = self.activate_by {
            if now >= by {
                return Err(CoreError::BadTransition {
                    action: "activate",
                    state: self.state,
                    hint: format!(
                        "; its activate-by deadline {by} has passed, so make a new request"
                    ),
                });
            }
        }
        self.apply(Transition::StartActivation)?;
        let window = Window {
            granted_at: now,
            expires_at: now + self.duration.as_chrono(),
        };
        self.window = Some(window);
        self.last_error = None;
        Ok(window)
    }

    pub fn activation_succeeded(&mut self) -> Result<(), CoreError> {
        self.apply(Transition::ActivationSucceeded)
    }

    pub fn activation_failed(&mut self, error: String) -> Result<(), CoreError> {
        self.apply(Transition::ActivationFailed)?;
        self.window = None;
        self.last_error = Some(error);
        Ok(())
    }

    /// The activation failed and its rollback failed too, so access may exist that nothing
    /// covers: the grant ends here and its removal is retried with backoff until verified, like a
    /// failed revocation (never forgotten, visible as overdue).
    pub fn activation_abandoned(
        &mut self,
        now: DateTime<Utc>,
        error: String,
        backoff: RevokeBackoff,
        jitter: f64,
    ) -> Result<(), CoreError> {
        self.apply(Transition::ActivationAbandoned)?;
        self.revoke_reason = Some(format!("activation failed: {error}"));
        self.attempts += 1;
        self.last_error = Some(error);
        self.next_attempt_at = Some(backoff.next_attempt(now, self.attempts, jitter));
        Ok(())
    }

    /// Starts revocation. Expiry, an early revoke and the kill switch all come through here.
    pub fn start_revocation(&mut self, now: DateTime<Utc>, reason: &str) -> Result<(), CoreError> {
        self.apply(Transition::StartRevocation)?;
        self.revoke_reason = Some(reason.to_owned());
        self.next_attempt_at = Some(now);
        Ok(())
    }

    pub fn revocation_verified(
        &mut self,
        now: DateTime<Utc>,
        evidence: Evidence,
    ) -> Result<(), CoreError> {
        self.apply(Transition::RevocationVerified)?;
        self.revoked_at = Some(now);
        self.evidence = Some(evidence);
        self.next_attempt_at = None;
        self.last_error = None;
        Ok(())
    }

    /// Records a failed revocation attempt; it will be retried with backoff, never forgotten.
    pub fn revocation_failed(
        &mut self,
        now: DateTime<Utc>,
        error: String,
        backoff: RevokeBackoff,
        jitter: f64,
    ) -> Result<(), CoreError> {
        self.apply(Transition::RevocationFailed)?;
        self.attempts += 1;
        self.last_error = Some(error);
        self.next_attempt_at = Some(backoff.next_attempt(now, self.attempts, jitter));
        Ok(())
    }

    /// Lengthens an active grant by the approved extension request `extension`; `None` when
    /// that extension was applied already (nothing changes then).
    pub fn extend(
        &mut self,
        by: GrantDuration,
        extension: RequestId,
    ) -> Result<Option<Window>, CoreError> {
        if self.applied_extensions.contains(&extension) {
            return Ok(None);
        }
        let (RequestState::Active, Some(w)) = (self.state, self.window) else {
            return Err(CoreError::BadTransition {
                action: "extend",
                state: self.state,
                hint: "; only active grants can be extended".into(),
            });
        };
        if self.extensions_applied >= self.max_extensions {
            return Err(CoreError::BadTransition {
                action: "extend",
                state: self.state,
                hint: format!(
                    "; it has used all {} extensions its policy allows",
                    self.max_extensions
                ),
            });
        }
        let w = Window {
            granted_at: w.granted_at,
            expires_at: w.expires_at + by.as_chrono(),
        };
        self.window = Some(w);
        self.extensions_applied += 1;
        self.applied_extensions.push(extension);
        Ok(Some(w))
    }

    /// When the scheduler next has work for this request (a deadline, expiry or retry), if ever.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.state {
            RequestState::Pending => Some(self.approve_by),
            RequestState::Approved => self.activate_by,
            // An intent is resumable at once; the store's lease keeps the owner from being raced.
            RequestState::Activating => Some(self.window.map_or(self.created_at, |w| w.granted_at)),
            RequestState::Active => self.window.map(|w| w.expires_at),
            RequestState::Revoking | RequestState::RevokeFailed => {
                Some(self.next_attempt_at.unwrap_or(self.created_at))
            }
            RequestState::Denied
            | RequestState::Expired
            | RequestState::Cancelled
            | RequestState::Revoked => None,
        }
    }

    /// A revocation that has failed, or is past its grant's expiry by more than `grace`.
    pub fn is_overdue(&self, now: DateTime<Utc>, grace: chrono::Duration) -> bool {
        self.state == RequestState::RevokeFailed
            || (self.state == RequestState::Revoking
                && self.window.is_some_and(|w| now > w.expires_at + grace))
    }
}

/// Exponential backoff for revocation retries: 2 s, 4 s, 8 s … each wait capped at `max`
/// (`server.revoke_retry_max`, 5 minutes unless configured), with up to 20 % jitter on top so
/// that grants that failed together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokeBackoff {
    pub max: Duration,
}

impl Default for RevokeBackoff {
    fn default() -> Self {
        Self {
            max: Duration::from_secs(300),
        }
    }
}

impl RevokeBackoff {
    /// The wait after the `attempts`-th failure (`jitter` in 0..1, supplied by the caller so this
    /// stays deterministic in tests).
    pub fn wait(&self, attempts: u32, jitter: f64) -> Duration {
        let base = Duration::from_secs(2u64.saturating_pow(attempts.min(16))).min(self.max);
        base.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0))
    }

    /// The longest wait between two attempts: `max` with the most jitter.
    pub fn longest(&self) -> Duration {
        self.max.mul_f64(1.2)
    }

    fn next_attempt(&self, now: DateTime<Utc>, attempts: u32, jitter: f64) -> DateTime<Utc> {
        now + chrono::Duration::from_std(self.wait(attempts, jitter))
            .unwrap_or(chrono::Duration::minutes(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(approvals: u32) -> Request {
        Request::new(
            NewRequest {
                kind: RequestKind::Access,
                requester: PrincipalId::parse("alice").unwrap(),
                resource: ResourceId::parse("postgres:orders").unwrap(),
                profile: ProfileName::parse("db.read").unwrap(),
                duration: GrantDuration::parse("1h").unwrap(),
                reason: Some("patch".into()),
                ticket: None,
                approvals_required: approvals,
                policy_rule: "p".into(),
                max_extensions: 1,
                approve_within: Duration::from_secs(600),
                activate_within: Duration::from_secs(600),
            },
            Utc::now(),
        )
    }

    #[test]
    fn auto_approved_requests_skip_pending() {
        assert_eq!(req(0).state, RequestState::Approved);
        assert_eq!(req(1).state, RequestState::Pending);
        assert!(req(1).awaited_approval());
        assert!(!req(0).awaited_approval(), "approved as it was created");
    }

    #[test]
    fn duration_starts_at_activation_not_request() {
        let mut r = req(0);
        let later = r.created_at + chrono::Duration::minutes(5);
        let w = r.start_activation(later).unwrap();
        assert_eq!(w.granted_at, later);
        assert_eq!(w.expires_at, later + chrono::Duration::hours(1));
    }

    #[test]
    fn deadlines_expire_requests() {
        let mut r = req(1);
        assert!(r.expire_deadline(r.created_at).is_err());
        let after = r.approve_by + chrono::Duration::seconds(1);
        r.expire_deadline(after).unwrap();
        assert_eq!(r.state, RequestState::Expired);

        let mut r = req(0);
        let late = r.activate_by.unwrap();
        assert!(
            r.start_activation(late).is_err(),
            "activate-by is a hard deadline"
        );
        r.expire_deadline(late).unwrap();
        assert_eq!(r.state, RequestState::Expired);
    }

    /// Issue #9 item 11 (review finding 15): on 879dbb0 `approve_by` was enforced only by the
    /// scheduler expiring the request, so with the scheduler behind or stuck a request past its
    /// deadline could still be approved.
    #[test]
    fn the_approve_by_deadline_holds_at_decision_time() {
        let r = req(1);
        assert!(r.ensure_decidable(r.created_at).is_ok());
        let late = r.approve_by;
        let e = r.ensure_decidable(late).unwrap_err().to_string();
        assert!(e.contains("approve-by deadline"), "{e}");
        assert!(
            req(0).ensure_decidable(Utc::now()).is_err(),
            "approved: nothing to decide"
        );
    }

    #[test]
    fn pending_cannot_be_activated_with_a_hint() {
        let mut r = req(2);
        let e = r.start_activation(Utc::now()).unwrap_err().to_string();
        assert!(e.contains("needs approval"), "{e}");
    }

    #[test]
    fn failed_revocations_are_retried_with_growing_backoff() {
        let mut r = req(0);
        let now = Utc::now();
        r.start_activation(now).unwrap();
        r.activation_succeeded().unwrap();
        r.start_revocation(now, "expired").unwrap();
        r.revocation_failed(now, "boom".into(), RevokeBackoff::default(), 0.0)
            .unwrap();
        assert_eq!(r.state, RequestState::RevokeFailed);
        assert_eq!(r.next_attempt_at, Some(now + chrono::Duration::seconds(2)));
        r.revocation_failed(now, "boom".into(), RevokeBackoff::default(), 0.0)
            .unwrap();
        assert_eq!(r.next_attempt_at, Some(now + chrono::Duration::seconds(4)));
        assert!(r.is_overdue(now, chrono::Duration::zero()));
        let ev = Evidence {
            checked_at: now,
            observation: serde_json::json!({"role": "absent"}),
        };
        r.revocation_verified(now, ev).unwrap();
        assert_eq!(r.state, RequestState::Revoked);
        assert_eq!(r.due_at(), None);
    }

    #[test]
    fn an_abandoned_activation_ends_the_grant_and_retries_the_removal() {
        let mut r = req(0);
        let now = Utc::now();
        r.start_activation(now).unwrap();
        r.activation_abandoned(
            now,
            "rollback timed out".into(),
            RevokeBackoff::default(),
            0.0,
        )
        .unwrap();
        assert_eq!(r.state, RequestState::RevokeFailed);
        assert_eq!(r.due_at(), Some(now + chrono::Duration::seconds(2)));
        assert!(r.is_overdue(now, chrono::Duration::zero()));
        assert!(
            r.start_activation(now).is_err(),
            "it cannot be activated again"
        );
        let ev = Evidence {
            checked_at: now,
            observation: serde_json::json!({"role": "absent"}),
        };
        r.revocation_verified(now, ev).unwrap();
        assert_eq!(r.state, RequestState::Revoked);
    }

    #[test]
    fn extensions_are_bounded() {
        let mut r = req(0);
        r.start_activation(Utc::now()).unwrap();
        r.activation_succeeded().unwrap();
        let before = r.window.unwrap().expires_at;
        let (first, second) = (RequestId::new(), RequestId::new());
        let w = r
            .extend(GrantDuration::parse("30m").unwrap(), first)
            .unwrap()
            .unwrap();
        assert_eq!(w.expires_at, before + chrono::Duration::minutes(30));
        // The same extension again changes nothing, and does not count.
        assert_eq!(
            r.extend(GrantDuration::parse("30m").unwrap(), first),
            Ok(None)
        );
        assert_eq!(r.window.unwrap().expires_at, w.expires_at);
        assert_eq!(r.extensions_applied, 1);
        let e = r
            .extend(GrantDuration::parse("30m").unwrap(), second)
            .unwrap_err()
            .to_string();
        assert!(e.contains("all 1 extensions"), "{e}");
    }

    #[test]
    fn backoff_is_capped() {
        let backoff = RevokeBackoff::default();
        assert_eq!(backoff.wait(1, 0.0), Duration::from_secs(2));
        assert_eq!(backoff.wait(30, 0.0), Duration::from_secs(300));
        assert_eq!(backoff.wait(30, 1.0), Duration::from_secs(360));
        assert_eq!(backoff.longest(), Duration::from_secs(360));
        // A configured cap below the first step caps that too.
        let short = RevokeBackoff {
            max: Duration::from_millis(1500),
        };
        assert_eq!(short.wait(1, 0.0), Duration::from_millis(1500));
        assert_eq!(short.wait(9, 1.0), Duration::from_millis(1800));
        assert_eq!(short.longest(), Duration::from_millis(1800));
    }

    fn any_transition() -> impl Strategy<Value = Transition> {
        prop_oneof![
            Just(Transition::Approve),
            Just(Transition::Deny),
            Just(Transition::Cancel),
            Just(Transition::ApproveDeadlinePassed),
            Just(Transition::ActivateDeadlinePassed),
            Just(Transition::StartActivation),
            Just(Transition::ActivationSucceeded),
            Just(Transition::ActivationFailed),
            Just(Transition::ActivationAbandoned),
            Just(Transition::StartRevocation),
            Just(Transition::RevocationVerified),
            Just(Transition::RevocationFailed),
        ]
    }

    proptest! {
        /// Whatever sequence of events arrives: terminal states never change, access is only held
        /// after approval, and nothing reaches `revoked` without passing through revocation.
        #[test]
        fn state_machine_invariants(events in proptest::collection::vec(any_transition(), 0..40)) {
            let mut r = req(1);
            let mut was_approved = false;
            let mut passed_revoking = false;
            for t in events {
                let before = r.state;
                if let Ok(next) = r.next_state(t) {
                    prop_assert!(!before.is_terminal(), "{before} -> {next}");
                    r.state = next;
                    was_approved |= next == RequestState::Approved;
                    // Revocation states: a revocation, or the removal an abandoned activation owes.
                    passed_revoking |= matches!(next, RequestState::Revoking | RequestState::RevokeFailed);
                    if next.holds_access() { prop_assert!(was_approved); }
                    if next == RequestState::Revoked { prop_assert!(passed_revoking); }
                }
            }
        }
    }
}
