//! The kill switch: lock a principal (or everyone), cancel what they asked for, revoke every grant
//! they hold on every provider in parallel, and report what really took effect.

use std::time::{Duration, Instant};

use brevet_audit::{AuditDraft, EventKind};
use brevet_core::{Principal, PrincipalId, Request, RequestState, Role};
use brevet_store::{PrincipalLock, RequestFilter};
use chrono::Utc;

use serde_json::json;
use tracing::Instrument;

use super::{audit_data::event, Broker, BrokerError};

#[derive(Debug, Clone)]
pub enum KillTarget {
    Principal(PrincipalId),
    /// Everyone but admins.
    Everyone,
}

impl KillTarget {
    fn key(&self) -> String {
        match self {
            Self::Principal(p) => p.to_string(),
            Self::Everyone => "*".into(),
        }
    }
}

pub use brevet_wire::{KillOutcome, KillReport};

const LIVE: [RequestState; 6] = [
    RequestState::Pending,
    RequestState::Approved,
    RequestState::Activating,
    RequestState::Active,
    RequestState::Revoking,
    RequestState::RevokeFailed,
];

/// How many requests the kill switch lists and acts on at once.
const KILL_PAGE: i64 = 1000;

impl Broker {
    /// Is `who` (known only by id: a request's requester) locked by the kill switch? Their
    /// roles are the config's.
    pub async fn lock_for(&self, who: &PrincipalId) -> Result<Option<PrincipalLock>, BrokerError> {
        let admin = self
            .principals
            .get(who)
            .is_some_and(|p| p.roles.contains(&Role::Admin));
        self.lock_applying(who, admin).await
    }

    /// The lock that binds `who`, whose roles are known (a caller, a sign-in): an admin by SSO
    /// group is spared by the everyone-lock exactly like an admin in the config.
    pub async fn lock_for_principal(
        &self,
        who: &Principal,
    ) -> Result<Option<PrincipalLock>, BrokerError> {
        self.lock_applying(&who.id, self.spared_by_everyone_lock(who))
            .await
    }

    /// Whether the everyone-lock spares `who`: an admin, by role or by the config.
    pub(crate) fn spared_by_everyone_lock(&self, who: &Principal) -> bool {
        who.has_role(Role::Admin)
            || self
                .principals
                .get(&who.id)
                .is_some_and(|p| p.roles.contains(&Role::Admin))
    }

    /// A lock on the principal by name always binds them; the everyone-lock binds all but
    /// admins, so that someone can lift it. Both are read, so one can never hide the other.
    async fn lock_applying(
        &self,
        who: &PrincipalId,
        admin: bool,
    ) -> Result<Option<PrincipalLock>, BrokerError> {
        Ok(self.store.locks_on(who.as_str()).await?.binding(!admin))
    }

    /// Refuses anything by a locked caller (whose roles are known: an admin by SSO group is
    /// spared by the everyone-lock like a configured one).
    pub(crate) async fn ensure_caller_unlocked(
        &self,
        caller: &Principal,
        role: &str,
    ) -> Result<(), BrokerError> {
        let lock = self.lock_for_principal(caller).await?;
        Self::refuse_if_locked(lock, &caller.id, role)
    }

    /// Refuses anything for a locked principal known only by id (a request's requester).
    pub(crate) async fn ensure_unlocked(
        &self,
        who: &PrincipalId,
        role: &str,
    ) -> Result<(), BrokerError> {
        let lock = self.lock_for(who).await?;
        Self::refuse_if_locked(lock, who, role)
    }

    fn refuse_if_locked(
        lock: Option<PrincipalLock>,
        who: &PrincipalId,
        role: &str,
    ) -> Result<(), BrokerError> {
        match lock {
            Some(l) => Err(Self::locked(&l, who, role)),
            None => Ok(()),
        }
    }

    /// The refusal of anything by `who`, whom the kill switch's lock `l` binds.
    pub(crate) fn locked(l: &PrincipalLock, who: &PrincipalId, role: &str) -> BrokerError {
        BrokerError::Forbidden(format!(
            "{role} `{who}` is locked by the kill switch ({}, by {}); an admin must run `brevet unlock {}` first",
            l.reason, l.locked_by, l.principal
        ))
    }

    #[tracing::instrument(name = "kill_switch", skip_all, fields(principal = %target.key()))]
    pub async fn kill(
        &self,
        caller: &Principal,
        target: KillTarget,
        reason: String,
    ) -> Result<KillReport, BrokerError> {
        let started = Instant::now();
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(BrokerError::BadInput(
                "the kill switch needs a reason (--reason \"…\")".into(),
            ));
        }
        let key = target.key();
        let lock = PrincipalLock {
            principal: key.clone(),
            reason: reason.clone(),
            locked_by: caller.id.to_string(),
            locked_at: Utc::now(),
        };
        let audit = AuditDraft::new(
            EventKind::PrincipalLocked,
            caller.id.as_str(),
            None,
            json!({"principal": key, "reason": reason}),
        );
        self.store.lock_principal(&lock, vec![audit]).await?;
        tracing::warn!(target = %key, by = %caller.id, %reason, "kill switch engaged");
        // Sign the person out everywhere; the lock already refuses them, this ends their sessions.
        // Everyone means everyone but admins (and the caller), so someone can still undo it.
        let mut spare: Vec<String> = Vec::new();
        if matches!(target, KillTarget::Everyone) {
            for p in self.principals.values() {
                // An admin locked by name stays cut off: the everyone-lock spares only the free.
                if p.roles.contains(&Role::Admin) && self.lock_for(&p.id).await?.is_none() {
                    spare.push(p.id.to_string());
                }
            }
            spare.push(caller.id.to_string());
        }
        let sessions_ended = self.store.end_sessions_of(&key, &spare).await?;

        let why = format!("kill switch by {}: {reason}", caller.id);
        let mut cancelled = Vec::new();
        let mut outcomes = Vec::new();
        // Page by page (newest first, each page after the last one's cursor), so everyone's
        // grants are reached however many there are, with one page in memory at a time.
        let mut after = None;
        loop {
            let filter = RequestFilter {
                requester: match &target {
                    KillTarget::Principal(p) => Some(p.clone()),
                    KillTarget::Everyone => None,
                },
                states: LIVE.to_vec(),
                limit: Some(KILL_PAGE),
                after: after.take(),
            };
            let mut affected = self.store.list_requests(&filter).await?;
            let Some(last) = affected.last() else { break };
            let more = affected.len() as i64 == KILL_PAGE;
            after = Some(brevet_store::PageCursor::new(
                last.created_at,
                last.id.to_string(),
            ));
            if matches!(target, KillTarget::Everyone) {
                affected.retain(|r| spare.iter().all(|s| s != r.requester.as_str()));
            }
            let mut grants = Vec::new();
            for r in affected {
                match r.state {
                    RequestState::Pending | RequestState::Approved => {
                        if self
                            .cancel_for_kill(r.clone(), &why, caller.id.as_str())
                            .await
                            .is_ok()
                        {
                            cancelled.push(r.id.to_string());
                        }
                    }
                    _ => grants.push(r),
                }
            }
            outcomes.extend(self.kill_grants(grants, &why, caller).await);
            if !more {
                break;
            }
        }
        let (outcomes, calls): (Vec<KillOutcome>, Vec<_>) = outcomes.into_iter().unzip();
        let calls: serde_json::Map<String, serde_json::Value> = calls
            .into_iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(id, c)| (id, json!(c)))
            .collect();
        let report = KillReport {
            target: key,
            reason,
            revoked: outcomes.iter().filter(|o| o.outcome == "revoked").count(),
            retrying: outcomes
                .iter()
                .filter(|o| o.outcome != "revoked" && o.outcome != "cancelled")
                .count(),
            grants: outcomes,
            cancelled_requests: cancelled,
            sessions_ended,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        let mut data = json!(report);
        data["provider_calls"] = json!(calls);
        let audit = AuditDraft::new(EventKind::KillSwitch, caller.id.as_str(), None, data);
        self.store.append_audit(vec![audit]).await?;
        Ok(report)
    }

    /// Revokes one page of the kill switch's grants at once (each bounded, so one slow or dead
    /// provider holds up nobody), cutting their live sessions first; returns each outcome with
    /// the provider calls made for it.
    async fn kill_grants(
        &self,
        grants: Vec<Request>,
        why: &str,
        caller: &Principal,
    ) -> Vec<(KillOutcome, (String, Vec<brevet_providers::CallRecord>))> {
        let why = why.to_owned();
        // Every grant at once; each is bounded, so one slow or dead provider holds up nobody.
        let bound = self.settings.provider_timeout * 3 + Duration::from_secs(1);
        futures::future::join_all(grants.into_iter().map(|r| {
            let why = why.clone();
            async move {
                let t = Instant::now();
                let base = KillOutcome {
                    grant_id: r.id.to_string(),
                    principal: r.requester.to_string(),
                    resource: r.resource.to_string(),
                    profile: r.profile.to_string(),
                    outcome: String::new(),
                    error: None,
                    evidence: None,
                    sessions_terminated: 0,
                    elapsed_ms: 0,
                };
                let mut o = base;
                // Cut live sessions first, so they end even if the revocation itself must retry.
                // The calls are audited in the kill switch's event, by grant; the revocation's
                // own event records its calls.
                let cx = Self::op_cx(brevet_providers::Operation::Kill, &r);
                if let Ok(provider) = self.provider_for(&r.resource) {
                    let ended = tokio::time::timeout(
                        self.settings.provider_timeout,
                        provider.terminate_sessions(&cx, &r.binding()),
                    )
                    .instrument(tracing::info_span!("terminate_sessions", grant_id = %r.id))
                    .await;
                    if let Ok(Ok(n)) = ended {
                        o.sessions_terminated = n;
                    }
                }
                let result =
                    tokio::time::timeout(bound, self.kill_grant(r, &why, caller.id.as_str())).await;
                match result {
                    Ok(Ok(done)) if done.state == RequestState::Revoked => {
                        o.outcome = "revoked".into();
                        o.evidence = done.evidence.map(|e| json!(e));
                    }
                    Ok(Ok(done)) if done.state == RequestState::Activating => {
                        o.outcome = "pending_activation".into();
                    }
                    Ok(Ok(done)) if done.state == RequestState::Cancelled => {
                        o.outcome = "cancelled".into();
                    }
                    Ok(Ok(done)) => {
                        o.outcome = "retrying".into();
                        o.error = Some(done.last_error.unwrap_or_else(|| {
                            format!("still {}; the scheduler keeps retrying", done.state)
                        }));
                    }
                    Ok(Err(e)) => {
                        o.outcome = "retrying".into();
                        o.error = Some(e.to_string());
                    }
                    Err(_) => {
                        o.outcome = "retrying".into();
                        o.error = Some(format!(
                            "no answer within {}s; the scheduler keeps retrying",
                            bound.as_secs()
                        ));
                    }
                }
                o.elapsed_ms = t.elapsed().as_millis() as u64;
                let calls = (o.grant_id.clone(), cx.take_calls());
                (o, calls)
            }
        }))
        .await
    }

    async fn cancel_for_kill(&self, r: Request, why: &str, actor: &str) -> Result<(), BrokerError> {
        let mut r = r;
        for _ in 0..3 {
            r.cancel()?;
            let audit = vec![event(
                EventKind::RequestCancelled,
                actor,
                &r,
                json!({"why": why}),
            )];
            match self.store.update_request(&r, audit).await {
                Ok(_) => return Ok(()),
                Err(brevet_store::StoreError::Conflict(_)) => r = self.get(r.id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BrokerError::Conflict(format!(
            "request {} kept changing",
            r.id
        )))
    }

    /// Revokes one grant for the kill switch (or the locked-principal sweep).
    #[tracing::instrument(name = "kill_grant", skip_all, fields(grant_id = %r.id))]
    pub(crate) async fn kill_grant(
        &self,
        r: Request,
        why: &str,
        actor: &str,
    ) -> Result<Request, BrokerError> {
        let id = r.id;
        let owner = self.operation_owner();
        // Someone else (the scheduler, another replica) may be working on it right now: wait for
        // their outcome rather than report a guess. The caller bounds the wait.
        while !self
            .store
            .claim(id, &owner, Utc::now(), self.settings.lease)
            .await?
        {
            let now = self.get(id).await?;
            if matches!(
                now.state,
                RequestState::Revoked | RequestState::RevokeFailed
            ) {
                return Ok(now);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // An activation finishing at this moment (its outcome written just before this reads
        // or writes) shows as a conflict: read the grant again and act on what it is now.
        let mut attempts = 0;
        let result = loop {
            match self.kill_step(id, why, actor).await {
                Err(BrokerError::Conflict(_)) if attempts < 3 => attempts += 1,
                other => break other,
            }
        };
        self.store.release(id, &owner).await?;
        result
    }

    /// One attempt of [`Self::kill_grant`]'s work, holding the request's lease.
    async fn kill_step(
        &self,
        id: brevet_core::RequestId,
        why: &str,
        actor: &str,
    ) -> Result<Request, BrokerError> {
        let mut r = self.get(id).await?;
        match r.state {
            RequestState::Active => {
                r.start_revocation(Utc::now(), why)?;
                let audit = vec![event(
                    EventKind::RevocationStarted,
                    actor,
                    &r,
                    json!({"why": why}),
                )];
                let r = self.store.update_request(&r, audit).await?;
                self.finish_revocation(r, actor, None).await
            }
            RequestState::Revoking | RequestState::RevokeFailed => {
                self.finish_revocation(r, actor, None).await
            }
            // An activation whose process died (its lease ran out): end it and remove
            // whatever it may have created, rather than let the scheduler finish it.
            RequestState::Activating => self.abandon_activation(r, why, actor).await,
            // An activation that failed and rolled back while we waited: nothing to revoke,
            // and nobody may activate it now.
            RequestState::Pending | RequestState::Approved => {
                r.cancel()?;
                let audit = vec![event(
                    EventKind::RequestCancelled,
                    actor,
                    &r,
                    json!({"why": why}),
                )];
                Ok(self.store.update_request(&r, audit).await?)
            }
            _ => Ok(r),
        }
    }

    /// Ends an interrupted activation of a locked principal and removes what it may have
    /// created (the caller holds the request's lease).
    pub(crate) async fn abandon_activation(
        &self,
        mut r: Request,
        why: &str,
        actor: &str,
    ) -> Result<Request, BrokerError> {
        r.activation_abandoned(
            Utc::now(),
            why.to_owned(),
            self.settings.revoke_backoff,
            rand::random::<f64>(),
        )?;
        let audit = vec![event(
            EventKind::ActivationFailed,
            actor,
            &r,
            json!({"error": why, "removal_retried": true}),
        )];
        let r = self.store.update_request(&r, audit).await?;
        self.finish_revocation(r, actor, None).await
    }

    /// Scheduler backstop: no locked principal keeps access, even one whose activation landed
    /// after the kill switch listed their grants.
    pub(crate) async fn sweep_locked(&self) -> Result<usize, BrokerError> {
        let locks = self.store.locks().await?;
        if locks.is_empty() {
            return Ok(0);
        }
        // Only the locked principals' grants — everyone's under the everyone-lock — page by
        // page, so a locked principal's grant is found however many others hold grants.
        let requesters: Vec<Option<PrincipalId>> = if locks.iter().any(|l| l.principal == "*") {
            vec![None]
        } else {
            locks
                .iter()
                .filter_map(|l| PrincipalId::parse(&l.principal).ok())
                .map(Some)
                .collect()
        };
        let mut n = 0;
        for requester in requesters {
            let mut after = None;
            loop {
                let filter = RequestFilter {
                    requester: requester.clone(),
                    states: vec![RequestState::Active],
                    limit: Some(KILL_PAGE),
                    after: after.take(),
                };
                let page = self.store.list_requests(&filter).await?;
                let Some(last) = page.last() else { break };
                let more = page.len() as i64 == KILL_PAGE;
                after = Some(brevet_store::PageCursor::new(
                    last.created_at,
                    last.id.to_string(),
                ));
                for r in page {
                    if let Some(l) = self.lock_for(&r.requester).await? {
                        let why = format!("kill switch by {}: {}", l.locked_by, l.reason);
                        self.kill_grant(r, &why, "system").await?;
                        n += 1;
                    }
                }
                if !more {
                    break;
                }
            }
        }
        Ok(n)
    }

    pub async fn unlock(&self, caller: &Principal, principal: &str) -> Result<bool, BrokerError> {
        // Locks are kept under the parsed (lower-case) id; `*` is the everyone-lock.
        let principal = principal.trim();
        let principal = match principal {
            "*" => "*".to_owned(),
            p => PrincipalId::parse(p)
                .map_err(|e| BrokerError::BadInput(e.to_string()))?
                .to_string(),
        };
        let principal = principal.as_str();
        let audit = AuditDraft::new(
            EventKind::PrincipalUnlocked,
            caller.id.as_str(),
            None,
            json!({"principal": principal}),
        );
        Ok(self.store.unlock_principal(principal, vec![audit]).await?)
    }

    pub async fn locks(&self) -> Result<Vec<PrincipalLock>, BrokerError> {
        Ok(self.store.locks().await?)
    }
}
