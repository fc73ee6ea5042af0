use std::collections::BTreeSet;

use brevet_audit::{AuditDraft, EventKind};
use brevet_core::{
    check_can_decide, tally, Approval, ApprovalDecision, GrantDuration, NewRequest, Principal,
    Request, RequestId, RequestKind, RequestState, Tally,
};
use brevet_policy::{ApproveQuery, RequestDecision, RequestQuery, Subject};
use chrono::Utc;
use serde_json::json;
use tracing::Instrument;

use super::{audit_data::event, Broker, BrokerError};

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct AccessAsk {
    pub resource: String,
    pub profile: String,
    pub duration: String,
    pub reason: Option<String>,
    pub ticket: Option<String>,
}

pub(crate) fn clean(
    s: &Option<String>,
    what: &str,
    max: usize,
) -> Result<Option<String>, BrokerError> {
    // The limit counts characters of the text as sent, as the OpenAPI document's `maxLength`
    // does (it counted UTF-8 bytes after trimming, refusing 1001 `é`s as "longer than 2000").
    if s.as_deref().is_some_and(|t| t.chars().count() > max) {
        return Err(BrokerError::BadInput(format!(
            "{what} is longer than {max} characters; shorten it"
        )));
    }
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().any(|c| c.is_control()) => Err(BrokerError::BadInput(format!(
            "{what} contains control characters; use plain text"
        ))),
        Some(t) => Ok(Some(t.to_owned())),
    }
}

impl Broker {
    /// Evaluates an ask against policy without creating anything (the dry run behind `policy test`).
    pub fn evaluate(
        &self,
        who: Subject<'_>,
        ask: &AccessAsk,
        extension: bool,
    ) -> Result<RequestDecision, BrokerError> {
        let (rc, profile) = self.resolve(&ask.resource, &ask.profile)?;
        let duration = GrantDuration::parse(&ask.duration)?;
        if let Some(max) = self.provider_for(&rc.id)?.max_grant_duration(&profile) {
            if duration.as_std() > max {
                return Err(BrokerError::BadInput(format!(
                    "{duration} is longer than `{}` can grant `{profile}` for ({}); ask for {} or less",
                    rc.id,
                    humantime::format_duration(max),
                    humantime::format_duration(max)
                )));
            }
        }
        let reason = clean(&ask.reason, "reason", 2000)?;
        let ticket = clean(&ask.ticket, "ticket", 200)?;
        Ok(self.policy.evaluate_request(&RequestQuery {
            principal: who,
            resource: self.facts(rc),
            profile: &profile,
            duration,
            reason: reason.as_deref(),
            ticket: ticket.as_deref(),
            extension,
        }))
    }

    /// Creates a request if policy allows it. A policy refusal is audited; nothing else changes.
    pub async fn create(&self, caller: &Principal, ask: AccessAsk) -> Result<Request, BrokerError> {
        self.create_kind(caller, ask, RequestKind::Access).await
    }

    pub(crate) async fn create_kind(
        &self,
        caller: &Principal,
        ask: AccessAsk,
        kind: RequestKind,
    ) -> Result<Request, BrokerError> {
        // The grant id is known once policy has allowed the request; a refusal has none.
        let span = tracing::info_span!("create_request", grant_id = tracing::field::Empty);
        self.create_checked(caller, ask, kind)
            .instrument(span)
            .await
    }

    async fn create_checked(
        &self,
        caller: &Principal,
        ask: AccessAsk,
        kind: RequestKind,
    ) -> Result<Request, BrokerError> {
        self.ensure_caller_unlocked(caller, "requester").await?;
        // Every attempt counts, refused ones too: each is audited and may notify approvers.
        if !self.request_limiter.admit(caller.id.clone()) {
            return Err(BrokerError::RateLimited(format!(
                "`{}` has created {} requests in the last minute, the most `server.requests_per_minute` allows; wait a minute",
                caller.id,
                self.request_limiter.limits().per_key_per_minute
            )));
        }
        let who = Subject {
            id: &caller.id,
            groups: &caller.groups,
        };
        let extension = matches!(kind, RequestKind::Extension { .. });
        let decision = self.evaluate(who, &ask, extension)?;
        let (rc, profile) = self.resolve(&ask.resource, &ask.profile)?;
        let trace = serde_json::to_value(decision.trace()).unwrap_or_default();
        let (policy, limits) = match decision {
            RequestDecision::Allow { policy, limits, .. } => (policy, limits),
            RequestDecision::Deny { reason, .. } => {
                let refusal = AuditDraft::new(
                    EventKind::RequestRefused,
                    caller.id.as_str(),
                    None,
                    json!({
                        "requester": caller.id, "resource": rc.id, "profile": profile,
                        "duration": ask.duration, "reason": ask.reason, "extension": extension,
                        "refusal": reason, "trace": trace,
                    }),
                );
                // Fail closed: if even the refusal cannot be recorded, report a storage failure.
                self.store.append_audit(vec![refusal]).await?;
                return Err(BrokerError::PolicyDenied { reason, trace });
            }
        };
        let now = Utc::now();
        let mut r = Request::new(
            NewRequest {
                kind,
                requester: caller.id.clone(),
                resource: rc.id.clone(),
                profile,
                duration: GrantDuration::parse(&ask.duration)?,
                reason: clean(&ask.reason, "reason", 2000)?,
                ticket: clean(&ask.ticket, "ticket", 200)?,
                approvals_required: limits.approvals,
                policy_rule: policy,
                max_extensions: limits.max_extensions,
                approve_within: self.settings.approve_within,
                activate_within: self.settings.activate_within,
            },
            now,
        );
        r.requester_groups = caller.groups.clone();
        tracing::Span::current().record("grant_id", tracing::field::display(r.id));
        let mut audit = vec![event(
            EventKind::RequestCreated,
            caller.id.as_str(),
            &r,
            json!({"trace": trace}),
        )];
        if r.state == RequestState::Approved {
            audit.push(event(
                EventKind::RequestApproved,
                "system",
                &r,
                json!({"auto_approved_by_policy": r.policy_rule}),
            ));
        }
        // An approved extension is applied before it is recorded, so `approved` always means
        // applied: if the provider cannot extend, the caller gets the error and nothing is stored.
        if let (RequestKind::Extension { parent }, RequestState::Approved) = (&r.kind, r.state) {
            self.apply_extension(*parent, &r).await?;
        }
        let stored = self.store.insert_request(&r, audit).await?;
        tracing::info!(request_id = %stored.id, requester = %stored.requester, resource = %stored.resource, profile = %stored.profile, state = %stored.state, "request created");
        Ok(stored)
    }

    /// Records an approver's decision. Self-approval is refused whatever policy says; the approver
    /// must be allowed by the `approve` policies; N-of-M counts distinct approvers.
    #[tracing::instrument(name = "decide", skip_all, fields(grant_id = %id))]
    pub async fn decide(
        &self,
        caller: &Principal,
        id: RequestId,
        decision: ApprovalDecision,
        comment: Option<String>,
    ) -> Result<Request, BrokerError> {
        let mut r = self.get_visible(caller, id).await?;
        if r.requester == caller.id {
            return Err(brevet_core::CoreError::SelfApproval(caller.id.to_string()).into());
        }
        // Who may decide comes first: a caller policy does not let decide this request is refused
        // whatever state it is in, and learns nothing more about it.
        let (allowed, trace) = self.approve_policy(caller, &r)?;
        if !allowed {
            return Err(BrokerError::PolicyDenied {
                reason: format!(
                    "`{}` may not approve `{}` on `{}`",
                    caller.id, r.profile, r.resource
                ),
                trace,
            });
        }
        if r.state != RequestState::Pending {
            return Err(BrokerError::Conflict(format!(
                "request {id} is {}, not pending; nothing to decide",
                r.state
            )));
        }
        r.ensure_decidable(Utc::now())?;
        self.ensure_caller_unlocked(caller, "approver").await?;
        self.ensure_unlocked(&r.requester, "requester").await?;
        let comment = clean(&comment, "comment", 2000)?;
        let mut approvals = self.store.approvals(id).await?;
        check_can_decide(&r.requester, &caller.id, &approvals)?;
        let approval = Approval {
            approver: caller.id.clone(),
            decision,
            comment,
            at: Utc::now(),
        };
        approvals.push(approval.clone());
        let t = tally(&r.requester, &approvals, r.approvals_required);
        let progress = json!({
            "approver": caller.id, "decision": decision, "comment": approval.comment, "trace": trace,
            "approvals": approvals.iter().filter(|a| a.decision == ApprovalDecision::Approve).map(|a| a.approver.as_str()).collect::<Vec<_>>(),
        });
        let mut audit = vec![event(
            EventKind::ApprovalRecorded,
            caller.id.as_str(),
            &r,
            progress,
        )];
        match t {
            Tally::Approved => {
                r.approve(Utc::now(), self.settings.activate_within)?;
                audit.push(event(
                    EventKind::RequestApproved,
                    caller.id.as_str(),
                    &r,
                    json!({}),
                ));
            }
            Tally::Denied { by } => {
                r.deny()?;
                audit.push(event(EventKind::RequestDenied, by.as_str(), &r, json!({})));
            }
            Tally::Pending { .. } => {}
        }
        if let (RequestKind::Extension { parent }, RequestState::Approved) = (&r.kind, r.state) {
            self.apply_extension(*parent, &r).await?;
        }
        let stored = self
            .store
            .record_decision(&r, &approval, audit)
            .await
            .map_err(|e| match e {
                brevet_store::StoreError::AlreadyDecided(who) => {
                    BrokerError::Conflict(format!("`{who}` has already decided on this request"))
                }
                brevet_store::StoreError::Conflict(_) => {
                    BrokerError::Conflict("the request changed at the same time; retry".into())
                }
                other => other.into(),
            })?;
        Ok(stored)
    }

    /// The requester withdraws a request that has not been activated.
    /// What Cedar says about `caller` approving `r`, with the decision trace.
    fn approve_policy(
        &self,
        caller: &Principal,
        r: &Request,
    ) -> Result<(bool, serde_json::Value), BrokerError> {
        let rc = self.resources.get(&r.resource).ok_or_else(|| {
            BrokerError::Conflict(format!("resource `{}` is no longer configured", r.resource))
        })?;
        let empty = BTreeSet::new();
        let (allowed, trace) = self.policy.may_approve(&ApproveQuery {
            approver: Subject {
                id: &caller.id,
                groups: &caller.groups,
            },
            requester: if r.requester_groups.is_empty() {
                self.subject_of(&r.requester, &empty)
            } else {
                Subject {
                    id: &r.requester,
                    groups: &r.requester_groups,
                }
            },
            resource: self.facts(rc),
            profile: &r.profile,
            duration: r.duration,
        });
        Ok((allowed, serde_json::to_value(&trace).unwrap_or_default()))
    }

    /// Whether `caller` may decide `r` at all (not their own, and approval policy permits): what
    /// an approver's inbox shows. `decide` checks this and more (state, locks, repeat votes).
    pub fn may_approve(&self, caller: &Principal, r: &Request) -> bool {
        r.requester != caller.id
            && self
                .approve_policy(caller, r)
                .is_ok_and(|(allowed, _)| allowed)
    }

    #[tracing::instrument(name = "cancel", skip_all, fields(grant_id = %id))]
    pub async fn cancel(&self, caller: &Principal, id: RequestId) -> Result<Request, BrokerError> {
        let mut r = self.get_visible(caller, id).await?;
        if r.requester != caller.id {
            return Err(BrokerError::Forbidden(
                "only the requester can cancel a request".into(),
            ));
        }
        r.cancel()?;
        let audit = vec![event(
            EventKind::RequestCancelled,
            caller.id.as_str(),
            &r,
            json!({}),
        )];
        Ok(self.store.update_request(&r, audit).await?)
    }
}

pub use brevet_wire::Eligible;

impl Broker {
    /// What `who` may ask for: every configured resource and profile that some policy permits
    /// (probed with the shortest duration and a reason and ticket present, so conditions on
    /// those do not hide an option; the real request is evaluated again in full).
    pub fn eligible(&self, who: &Principal) -> Vec<Eligible> {
        let mut out = Vec::new();
        for rc in self.resources.values() {
            let Ok(provider) = self.provider_for(&rc.id) else {
                continue;
            };
            for profile in provider.profiles() {
                let ask = AccessAsk {
                    resource: rc.id.to_string(),
                    profile: profile.to_string(),
                    duration: "1m".into(),
                    reason: Some("eligibility probe".into()),
                    ticket: Some("PROBE-1".into()),
                };
                let subject = Subject {
                    id: &who.id,
                    groups: &who.groups,
                };
                if let Ok(RequestDecision::Allow { limits, .. }) =
                    self.evaluate(subject, &ask, false)
                {
                    out.push(Eligible {
                        resource: rc.id.to_string(),
                        profile: profile.to_string(),
                        max_duration: limits.max_duration.to_string(),
                        approvals: limits.approvals,
                        require_reason: limits.require_reason,
                        require_ticket: limits.require_ticket,
                        max_extensions: limits.max_extensions,
                        credential_input: provider.credential_input(),
                        grants: provider.grants_preview(&rc.id, &profile),
                    });
                }
            }
        }
        out
    }
}
