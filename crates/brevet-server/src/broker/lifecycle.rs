use std::future::Future;

use brevet_audit::EventKind;
use brevet_core::{
    Evidence, GrantDuration, Principal, Request, RequestId, RequestKind, RequestState, Role,
};
use brevet_providers::{Credential, CredentialInput, ProviderError};
use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

use super::{audit_data::event, decide::AccessAsk, Broker, BrokerError, Failpoint};

/// A binding lock this operation holds or is taking. Released when the work ends; if the
/// operation is dropped first (a client hung up, a caller's timeout ran out), the release is
/// spawned from `Drop`, so the next operation on the binding does not wait for the lease to run
/// out. Each attempt to take the lock runs on its own task, so a dropped caller cannot leave a
/// half-sent attempt that lands after the release: the release waits for it.
struct HeldBindingLock {
    store: brevet_store::Store,
    key: String,
    owner: String,
    in_flight: Option<tokio::task::JoinHandle<Result<bool, brevet_store::StoreError>>>,
    released: bool,
}

impl HeldBindingLock {
    async fn try_take(&mut self, lease: std::time::Duration) -> Result<bool, BrokerError> {
        let (store, key, owner) = (self.store.clone(), self.key.clone(), self.owner.clone());
        let attempt = self.in_flight.insert(tokio::spawn(async move {
            store.lock_binding(&key, &owner, Utc::now(), lease).await
        }));
        let taken = attempt.await;
        self.in_flight = None;
        match taken {
            Ok(result) => Ok(result?),
            Err(e) => Err(BrokerError::Conflict(format!(
                "taking the lock on {} failed ({e}); retry in a moment",
                self.key
            ))),
        }
    }

    async fn release(&mut self) {
        // Marked released only once done: a caller dropped during the release leaves it to Drop.
        // If it fails, the lock's lease runs out on its own.
        if let Err(e) = self.store.unlock_binding(&self.key, &self.owner).await {
            tracing::warn!(error = %e, "could not release binding lock");
        }
        self.released = true;
    }
}

impl Drop for HeldBindingLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (store, key, owner) = (self.store.clone(), self.key.clone(), self.owner.clone());
        let in_flight = self.in_flight.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(attempt) = in_flight {
                    let _ = attempt.await;
                }
                // The owner is this operation's alone: this deletes nothing if it never got it.
                if let Err(e) = store.unlock_binding(&key, &owner).await {
                    tracing::warn!(error = %e, "could not release an abandoned binding lock");
                }
            });
        }
    }
}

/// An activated grant and its one-time credential.
pub struct Activated {
    pub request: Request,
    pub credential: Credential,
}

impl Broker {
    /// Runs one provider call bounded by the configured timeout.
    pub(crate) async fn bounded<T>(
        &self,
        r: &Request,
        fut: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, BrokerError> {
        let provider = r.resource.provider().to_string();
        match tokio::time::timeout(self.settings.provider_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(ProviderError::BadInput(m))) => Err(BrokerError::BadInput(m)),
            Ok(Err(source)) => Err(BrokerError::Provider { provider, source }),
            Err(_) => Err(BrokerError::ProviderTimeout(provider)),
        }
    }

    /// Runs `work` holding the binding's lock, so provider work on one binding (activation,
    /// revocation, extension of overlapping grants) never interleaves, across replicas too.
    pub(crate) async fn with_binding_lock<T>(
        &self,
        r: &Request,
        work: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        // One owner per operation, never per request: two operations on one grant (two extension
        // approvals, say) must not both hold the lock at once.
        let mut held = HeldBindingLock {
            store: self.store.clone(),
            key: r.binding().key(),
            owner: self.operation_owner(),
            in_flight: None,
            released: false,
        };
        let deadline = tokio::time::Instant::now() + self.settings.provider_timeout;
        while !held.try_take(self.settings.lease).await? {
            if tokio::time::Instant::now() >= deadline {
                held.released = true;
                return Err(BrokerError::Conflict(format!(
                    "another operation on {} is in progress; retry in a moment",
                    r.binding()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let out = work.await;
        held.release().await;
        out
    }

    pub(crate) async fn hang_at(&self, point: Failpoint) {
        if self.failpoint != Some(point) {
            return;
        }
        match &self.failpoint_while {
            None => {
                tracing::warn!(?point, "failpoint reached: hanging until killed");
                std::future::pending::<()>().await;
            }
            // Held only while the test's file exists, so a test can pause one step and race it.
            Some(file) if file.exists() => {
                tracing::warn!(?point, "failpoint reached: holding while the file exists");
                while file.exists() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                tracing::warn!(?point, "failpoint released");
            }
            Some(_) => {}
        }
    }

    /// The latest expiry among other grants whose access is in place on the same binding (the
    /// reference count). Read under the binding lock, so it cannot change before it is acted on.
    async fn holders_expiry(
        &self,
        r: &Request,
    ) -> Result<(Vec<RequestId>, Option<DateTime<Utc>>), BrokerError> {
        let holders = self.store.holders(&r.binding().key(), r.id).await?;
        let latest = holders
            .iter()
            .filter_map(|h| h.window.map(|w| w.expires_at))
            .max();
        Ok((holders.iter().map(|h| h.id).collect(), latest))
    }

    /// Activates an approved request: writes the intent, has the provider create the access with
    /// the target's own expiry set, records the outcome, and issues the one-time credential.
    pub async fn activate(
        &self,
        caller: &Principal,
        id: RequestId,
        public_key: Option<String>,
    ) -> Result<Activated, BrokerError> {
        let r = self.get_visible(caller, id).await?;
        if r.requester != caller.id {
            return Err(BrokerError::Forbidden(
                "only the requester can activate their access".into(),
            ));
        }
        self.ensure_caller_unlocked(caller, "requester").await?;
        let input = CredentialInput {
            grant_id: id.to_string(),
            public_key,
        };
        // Refuse bad credential input before anything is granted.
        self.check_input(&r, &input).await?;
        let owner = self.operation_owner();
        if !self
            .store
            .claim(id, &owner, Utc::now(), self.settings.lease)
            .await?
        {
            return Err(BrokerError::Conflict(format!(
                "request {id} is being processed; retry in a moment"
            )));
        }
        // The credential is issued under the same lease, so a revocation or the kill switch
        // (which claim the request first) waits for it and then covers it.
        let result = async {
            let request = self.activate_claimed(r).await?;
            let credential = self.issue_covered(&request, &input).await?;
            Ok(Activated {
                request,
                credential,
            })
        }
        .instrument(tracing::info_span!("activate", grant_id = %id))
        .await;
        self.store.release(id, &owner).await?;
        result
    }

    async fn activate_claimed(&self, mut r: Request) -> Result<Request, BrokerError> {
        // Re-read under the lease: the copy we were handed may be stale.
        if let Some(fresh) = self.store.get_request(r.id).await? {
            r = fresh;
        }
        let window = r.start_activation(Utc::now())?;
        let actor = r.requester.to_string();
        let audit = vec![event(
            EventKind::ActivationStarted,
            &actor,
            &r,
            json!({"replica": self.replica}),
        )];
        let r = self.store.update_request(&r, audit).await?;
        self.hang_at(Failpoint::AfterIntent).await;
        self.complete_activation(r, window.expires_at, &actor).await
    }

    /// Second half of activation, also used to resume an intent after a crash.
    pub(crate) async fn complete_activation(
        &self,
        r: Request,
        expires_at: DateTime<Utc>,
        actor: &str,
    ) -> Result<Request, BrokerError> {
        let locked = r.clone();
        self.with_binding_lock(
            &locked,
            self.complete_activation_locked(r, expires_at, actor),
        )
        .await
    }

    async fn complete_activation_locked(
        &self,
        mut r: Request,
        expires_at: DateTime<Utc>,
        actor: &str,
    ) -> Result<Request, BrokerError> {
        let provider = self.provider_for(&r.resource)?.clone();
        let (holders, latest) = self.holders_expiry(&r).await?;
        let until = latest.map_or(expires_at, |l| l.max(expires_at));
        let binding = r.binding();
        match self.bounded(&r, provider.ensure(&binding, until)).await {
            Ok(()) => {
                self.hang_at(Failpoint::AfterProviderGrant).await;
                r.activation_succeeded()?;
                let audit = vec![event(
                    EventKind::GrantActivated,
                    actor,
                    &r,
                    json!({"target_expiry": until, "shared_with": holders, "provider_calls": provider.take_call_log(&binding)}),
                )];
                let stored = self.store.update_request(&r, audit).await?;
                tracing::info!(grant_id = %stored.id, expires_at = %expires_at, "grant active");
                Ok(stored)
            }
            Err(e) => {
                // Undo whatever part was created, unless another grant holds the binding. If the
                // undo fails too, access may exist that nothing covers: the grant ends and the
                // removal is retried by the scheduler like a failed revocation, never dropped.
                //
                // The undo is read back like a revocation: a part that may still appear (an
                // asynchronous creation whose answer never came) fails the check, so the grant
                // ends in the retried state instead of going back to `approved` with it.
                let rollback = if holders.is_empty() {
                    match self.bounded(&r, provider.revoke(&binding)).await {
                        Ok(()) => self
                            .bounded(&r, provider.verify_revoked(&binding))
                            .await
                            .err(),
                        Err(undo) => Some(undo),
                    }
                } else {
                    None
                };
                let calls = provider.take_call_log(&binding);
                match rollback {
                    None => {
                        r.activation_failed(e.to_string())?;
                        let audit = vec![event(
                            EventKind::ActivationFailed,
                            actor,
                            &r,
                            json!({"error": e.to_string(), "provider_calls": calls}),
                        )];
                        self.store.update_request(&r, audit).await?;
                    }
                    Some(undo) => {
                        let why = format!("{e}; removing what it created failed too: {undo}");
                        r.activation_abandoned(Utc::now(), why.clone(), rand::random::<f64>())?;
                        let audit = vec![event(
                            EventKind::ActivationFailed,
                            actor,
                            &r,
                            json!({"error": e.to_string(), "rollback_error": undo.to_string(), "removal_retried": true, "next_attempt_at": r.next_attempt_at, "provider_calls": calls}),
                        )];
                        self.store.update_request(&r, audit).await?;
                        tracing::warn!(grant_id = %r.id, error = %why, "activation abandoned; removal will be retried");
                    }
                }
                Err(e)
            }
        }
    }

    /// Checks credential input with the provider; a refusal is audited and changes nothing else.
    async fn check_input(&self, r: &Request, input: &CredentialInput) -> Result<(), BrokerError> {
        let provider = self.provider_for(&r.resource)?.clone();
        if let Err(e) = provider.check_credential_input(&r.binding(), input) {
            let audit = event(
                EventKind::CredentialsRefused,
                r.requester.as_str(),
                r,
                json!({"refusal": e.to_string()}),
            );
            self.store.append_audit(vec![audit]).await?;
            return Err(match e {
                ProviderError::BadInput(m) => BrokerError::BadInput(m),
                other => BrokerError::Provider {
                    provider: r.resource.provider().to_string(),
                    source: other,
                },
            });
        }
        Ok(())
    }

    /// Issues a credential for a grant whose lease the caller holds, then checks the grant is
    /// still active: if it ended meanwhile (the lease ran out under a slow provider), what was
    /// just minted is revoked at once, since the revocation that ended it may not cover it.
    async fn issue_covered(
        &self,
        r: &Request,
        input: &CredentialInput,
    ) -> Result<Credential, BrokerError> {
        self.hang_at(Failpoint::BeforeIssue).await;
        let credential = self.issue(r, input).await?;
        let now = self.get(r.id).await?;
        if now.state == RequestState::Active {
            return Ok(credential);
        }
        drop(credential);
        let provider = self.provider_for(&r.resource)?.clone();
        let binding = r.binding();
        let revoked = self
            .with_binding_lock(r, async {
                let (holders, _) = self.holders_expiry(r).await?;
                if holders.is_empty() {
                    self.bounded(r, provider.revoke(&binding)).await?;
                }
                Ok(())
            })
            .await;
        let audit = event(
            EventKind::CredentialsRefused,
            r.requester.as_str(),
            r,
            json!({"refusal": format!("the grant became {} while its credential was issued", now.state), "credential_revoked": revoked.is_ok(), "provider_calls": provider.take_call_log(&binding)}),
        );
        self.store.append_audit(vec![audit]).await?;
        revoked?;
        Err(BrokerError::Conflict(format!(
            "grant {} is {} now; the credential issued meanwhile was revoked",
            r.id, now.state
        )))
    }

    async fn issue(&self, r: &Request, input: &CredentialInput) -> Result<Credential, BrokerError> {
        let provider = self.provider_for(&r.resource)?.clone();
        let expires_at = r.window.map(|w| w.expires_at).unwrap_or_else(Utc::now);
        let issued = self
            .bounded(
                r,
                provider.issue_credentials(&r.binding(), expires_at, input),
            )
            .await;
        let credential = match issued {
            Ok(c) => c,
            Err(e) => {
                // The calls that failed are this step's, so they are audited with it.
                let audit = event(
                    EventKind::CredentialsRefused,
                    r.requester.as_str(),
                    r,
                    json!({"error": e.to_string(), "provider_calls": provider.take_call_log(&r.binding())}),
                );
                self.store.append_audit(vec![audit]).await?;
                return Err(e);
            }
        };
        // The secret itself is never stored or logged; only the fact that one was issued.
        let audit = event(
            EventKind::CredentialsIssued,
            r.requester.as_str(),
            r,
            json!({"credential_kind": credential.kind, "details": credential.details, "provider_calls": provider.take_call_log(&r.binding())}),
        );
        self.store.append_audit(vec![audit]).await?;
        Ok(credential)
    }

    /// Issues a fresh credential for an active grant (the earlier one stops working).
    pub async fn reissue(
        &self,
        caller: &Principal,
        id: RequestId,
        public_key: Option<String>,
    ) -> Result<Credential, BrokerError> {
        let r = self.get_visible(caller, id).await?;
        if r.requester != caller.id {
            return Err(BrokerError::Forbidden(
                "only the grant's owner can get its credentials".into(),
            ));
        }
        self.ensure_caller_unlocked(caller, "requester").await?;
        let input = CredentialInput {
            grant_id: id.to_string(),
            public_key,
        };
        self.check_input(&r, &input).await?;
        // Under the request's lease, like activation: a revocation claims it first and so
        // either runs before (and this refuses) or after (and covers what this issues).
        let owner = self.operation_owner();
        if !self
            .store
            .claim(id, &owner, Utc::now(), self.settings.lease)
            .await?
        {
            return Err(BrokerError::Conflict(format!(
                "grant {id} is being processed; retry in a moment"
            )));
        }
        let result = async {
            let r = self.get(id).await?;
            if r.state != RequestState::Active {
                return Err(BrokerError::Conflict(format!(
                    "grant {id} is {}, not active",
                    r.state
                )));
            }
            self.issue_covered(&r, &input).await
        }
        .instrument(tracing::info_span!("credentials", grant_id = %id))
        .await;
        self.store.release(id, &owner).await?;
        result
    }

    /// Ends a grant early: its owner or an admin. Revocation runs now and, if it fails, keeps
    /// being retried by the scheduler.
    pub async fn revoke(
        &self,
        caller: &Principal,
        id: RequestId,
        reason: Option<String>,
    ) -> Result<Request, BrokerError> {
        let r = self.get_visible(caller, id).await?;
        if r.requester != caller.id && !caller.has_role(Role::Admin) {
            return Err(BrokerError::Forbidden(
                "only the grant's owner or an admin can revoke it".into(),
            ));
        }
        // It goes into the audit log, notifications and terminals: plain text, bounded.
        let reason = super::decide::clean(&reason, "reason", 2000)?;
        let owner = self.operation_owner();
        if !self
            .store
            .claim(id, &owner, Utc::now(), self.settings.lease)
            .await?
        {
            return Err(BrokerError::Conflict(format!(
                "grant {id} is being processed; retry in a moment"
            )));
        }
        let reason = reason.unwrap_or_else(|| format!("revoked by {}", caller.id));
        let result = async {
            let mut r = self.get(id).await?;
            r.start_revocation(Utc::now(), &reason)?;
            let audit = vec![event(
                EventKind::RevocationStarted,
                caller.id.as_str(),
                &r,
                json!({"why": reason}),
            )];
            let r = self.store.update_request(&r, audit).await?;
            self.finish_revocation(r, caller.id.as_str()).await
        }
        .instrument(tracing::info_span!("revoke", grant_id = %id))
        .await;
        self.store.release(id, &owner).await?;
        result
    }

    /// Removes the access (unless another grant still holds the binding), reads the target back,
    /// and records the evidence; on failure records it for a retry with backoff.
    pub(crate) async fn finish_revocation(
        &self,
        mut r: Request,
        actor: &str,
    ) -> Result<Request, BrokerError> {
        let provider = self.provider_for(&r.resource)?.clone();
        let binding = r.binding();
        // Under the binding lock: the holder check and the provider work are one step, so an
        // activation or another revocation of the same binding cannot slip in between.
        let locked = r.clone();
        let outcome: Result<Evidence, BrokerError> = self.with_binding_lock(&locked, async {
            let (holders, latest) = self.holders_expiry(&r).await?;
            if let Some(latest) = latest {
                // Reference counting: another active grant covers this binding, so the access
                // stays, with the target's own expiry brought back to that grant's end.
                self.bounded(&r, provider.ensure(&binding, latest)).await?;
                return Ok(Evidence {
                    checked_at: Utc::now(),
                    observation: json!({"binding_still_held_by": holders, "target_expiry": latest, "access_removed": false}),
                });
            }
            self.bounded(&r, provider.revoke(&binding)).await?;
            self.bounded(&r, provider.verify_revoked(&binding)).await
        })
        .await;
        match outcome {
            Ok(evidence) => {
                r.revocation_verified(Utc::now(), evidence.clone())?;
                let audit = vec![event(
                    EventKind::GrantRevoked,
                    actor,
                    &r,
                    json!({"evidence": evidence, "provider_calls": provider.take_call_log(&binding)}),
                )];
                let stored = self.store.update_request(&r, audit).await?;
                tracing::info!(grant_id = %stored.id, "grant revoked and verified");
                Ok(stored)
            }
            Err(e) => {
                r.revocation_failed(Utc::now(), e.to_string(), rand::random::<f64>())?;
                let audit = vec![event(
                    EventKind::RevocationFailed,
                    actor,
                    &r,
                    json!({"error": e.to_string(), "attempts": r.attempts, "next_attempt_at": r.next_attempt_at, "provider_calls": provider.take_call_log(&binding)}),
                )];
                let stored = self.store.update_request(&r, audit).await?;
                tracing::warn!(grant_id = %stored.id, attempts = stored.attempts, error = %e, "revocation failed; will retry");
                Ok(stored)
            }
        }
    }

    /// Asks to lengthen an active grant. The extension passes policy again (as an extension) and
    /// needs the approvals that policy sets; it is applied as soon as it is approved.
    pub async fn extend(
        &self,
        caller: &Principal,
        id: RequestId,
        duration: String,
    ) -> Result<Request, BrokerError> {
        let parent = self.get_visible(caller, id).await?;
        if parent.requester != caller.id {
            return Err(BrokerError::Forbidden(
                "only the grant's owner can extend it".into(),
            ));
        }
        if parent.state != RequestState::Active {
            return Err(BrokerError::Conflict(format!(
                "grant {id} is {}; only active grants can be extended",
                parent.state
            )));
        }
        if parent.extensions_applied >= parent.max_extensions {
            return Err(BrokerError::Conflict(format!(
                "grant {id} has used all {} extensions its policy allows; make a new request",
                parent.max_extensions
            )));
        }
        let ask = AccessAsk {
            resource: parent.resource.to_string(),
            profile: parent.profile.to_string(),
            duration,
            reason: parent.reason.clone(),
            ticket: parent.ticket.clone(),
        };
        self.create_kind(caller, ask, RequestKind::Extension { parent: id })
            .await
    }

    /// Applies an approved extension to its grant: target first, then the record, so a failure in
    /// between can only make access end earlier, never later.
    pub(crate) async fn apply_extension(
        &self,
        parent_id: RequestId,
        ext: &Request,
    ) -> Result<Request, BrokerError> {
        let parent = self.get(parent_id).await?;
        self.with_binding_lock(&parent.clone(), self.apply_extension_locked(parent_id, ext))
            .await
    }

    async fn apply_extension_locked(
        &self,
        parent_id: RequestId,
        ext: &Request,
    ) -> Result<Request, BrokerError> {
        // Re-read under the lock: an expiry may have started meanwhile.
        let mut parent = self.get(parent_id).await?;
        let by: GrantDuration = ext.duration;
        // Once per extension request (the grant records which it applied): two approvals racing,
        // or one whose caller gave up between extending and recording, extend it once.
        let Some(window) = parent.extend(by, ext.id)? else {
            return Ok(parent);
        };
        let provider = self.provider_for(&parent.resource)?.clone();
        // The target's expiry covers every grant holding the binding, not only this one: an
        // extension of the shorter of two overlapping grants must not cut the longer one short.
        let (_, latest) = self.holders_expiry(&parent).await?;
        let until = latest.map_or(window.expires_at, |l| l.max(window.expires_at));
        self.bounded(&parent, provider.ensure(&parent.binding(), until))
            .await?;
        let audit = vec![event(
            EventKind::GrantExtended,
            ext.requester.as_str(),
            &parent,
            json!({"extension_request": ext.id, "by": by, "target_expiry": until, "provider_calls": provider.take_call_log(&parent.binding())}),
        )];
        Ok(self.store.update_request(&parent, audit).await?)
    }
}
