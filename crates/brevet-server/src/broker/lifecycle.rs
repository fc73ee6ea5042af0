use std::future::Future;

use brevet_audit::EventKind;
use brevet_core::{
    Evidence, GrantDuration, Principal, Request, RequestId, RequestKind, RequestState, Role,
};
use brevet_providers::{
    CallOutcome, Credential, CredentialInput, OpContext, Operation, ProviderError,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use tracing::Instrument;

use brevet_store::{Hold, Step, StoreError, Unlocked};

use super::{
    audit_data::event,
    binding_lock::{busy_binding, wait_for_binding, HeldBindingLock},
    decide::AccessAsk,
    Broker, BrokerError, Failpoint,
};

/// How many times a throttled or conflicting provider call is made within one step.
const IN_STEP_ATTEMPTS: u32 = 3;

/// The calls recorded in `cx` since last taken, for an audit event.
pub(crate) fn calls(cx: &OpContext) -> serde_json::Value {
    json!(cx.take_calls())
}

/// An activation's outcome and, when one was asked for, the credential or why none was issued.
type IssuedActivation = (Request, Option<Result<Credential, BrokerError>>);

/// An activated grant and its one-time credential.
pub struct Activated {
    pub request: Request,
    pub credential: Credential,
}

impl Broker {
    /// A provider call's context for one step of an operation on `r`.
    pub(crate) fn op_cx(operation: Operation, r: &Request) -> OpContext {
        let reason = match operation {
            Operation::Revoke | Operation::Kill | Operation::Rollback => {
                r.revoke_reason.clone().or_else(|| r.reason.clone())
            }
            _ => r.reason.clone(),
        };
        OpContext::new(operation, Some(r.id.to_string())).with_reason(reason)
    }

    /// Runs one provider call (`call`, e.g. `revoke`), bounded by the configured timeout, and
    /// records it in `cx` (the target calls it made are recorded there by the provider). A
    /// throttled or conflicting call is tried again within the same budget (every provider call
    /// is idempotent); an unreachable target or access still present is left to the scheduler's
    /// backoff, and a permanent refusal is returned at once.
    pub(crate) async fn bounded<T, Fut>(
        &self,
        cx: &OpContext,
        r: &Request,
        call: &str,
        mut make: impl FnMut() -> Fut,
    ) -> Result<T, BrokerError>
    where
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let provider = r.resource.provider().to_string();
        let name = format!("provider.{call}");
        let span = tracing::info_span!(
            "provider_call",
            grant_id = %r.id,
            provider = %provider,
            call,
            outcome = tracing::field::Empty
        );
        let attempts = async {
            let mut delay = std::time::Duration::from_millis(100);
            let mut attempt = 1;
            loop {
                let pending = cx.start(name.as_str(), r.resource.as_str());
                let started = std::time::Instant::now();
                let out = make().await;
                crate::telemetry::provider_call(
                    &provider,
                    call,
                    match &out {
                        Ok(_) => "ok",
                        Err(e) => e.class(),
                    },
                    started.elapsed(),
                );
                pending.finish(
                    match &out {
                        Ok(_) => CallOutcome::Ok,
                        Err(e) => CallOutcome::Error(e.class().into()),
                    },
                    None,
                );
                match out {
                    Err(ProviderError::Throttled(_) | ProviderError::Conflict(_))
                        if attempt < IN_STEP_ATTEMPTS =>
                    {
                        let jitter = rand::random::<u64>() % (delay.as_millis() as u64 / 2 + 1);
                        crate::telemetry::provider_retry(&provider, call);
                        tokio::time::sleep(delay + std::time::Duration::from_millis(jitter)).await;
                        delay *= 4;
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        };
        let out = tokio::time::timeout(self.settings.provider_timeout, attempts)
            .instrument(span.clone())
            .await;
        span.record(
            "outcome",
            match &out {
                Ok(Ok(_)) => "ok",
                Ok(Err(e)) => e.class(),
                Err(_) => "timeout",
            },
        );
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(ProviderError::BadInput(m))) => Err(BrokerError::BadInput(m)),
            Ok(Err(source)) => Err(BrokerError::Provider { provider, source }),
            Err(_) => {
                crate::telemetry::provider_call(
                    &provider,
                    call,
                    "timeout",
                    self.settings.provider_timeout,
                );
                cx.record(brevet_providers::CallRecord {
                    call: name,
                    target: r.resource.to_string(),
                    request_id: None,
                    outcome: CallOutcome::Error("timeout".into()),
                    duration_ms: u64::try_from(self.settings.provider_timeout.as_millis())
                        .unwrap_or(u64::MAX),
                });
                Err(BrokerError::ProviderTimeout(provider))
            }
        }
    }

    /// Holds the first step that reaches `point` until the returned handle releases it (for
    /// tests in this process; see [`FailpointHold`]).
    #[doc(hidden)]
    pub fn hold_at(&self, point: Failpoint) -> super::FailpointHold {
        let state = std::sync::Arc::new(super::HeldState::default());
        *self.held.lock().expect("not poisoned") = Some((point, state.clone()));
        super::FailpointHold(state)
    }

    pub(crate) async fn hang_at(&self, point: Failpoint) {
        let held = {
            let mut held = self.held.lock().expect("not poisoned");
            match held.as_ref() {
                Some((p, _)) if *p == point => held.take().map(|(_, state)| state),
                _ => None,
            }
        };
        if let Some(state) = held {
            state.reached.notify_one();
            state.go.notified().await;
        }
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
    /// the target's own expiry set, issues the one-time credential, and records the outcome.
    ///
    /// Two store transactions: the intent (with the request's lease and the binding's lock taken
    /// in it), and the outcome (with the credential's audit event, both given back in it). The
    /// credential is issued before the outcome is recorded and returned only once it is, so a
    /// revocation or kill switch (which wait for the lease) covers whatever was issued.
    #[tracing::instrument(name = "activate", skip_all, fields(grant_id = %id))]
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
        // The kill switch is checked by the intent's own write (`unless_locked`), not read
        // beforehand: a lock committed between such a read and the intent could not stop it.
        let input = CredentialInput {
            grant_id: id.to_string(),
            public_key,
        };
        // Refuse bad credential input before anything is granted.
        self.check_input(&r, &input).await?;
        let (started, provider) = (std::time::Instant::now(), r.resource.provider().to_string());
        let activated = async {
            self.hang_at(Failpoint::BeforeIntent).await;
            let (r, expires_at, mut lock) = self.write_intent(r, caller).await?;
            self.hang_at(Failpoint::AfterIntent).await;
            let actor = r.requester.to_string();
            let lease_owner = lock.owner().to_owned();
            let finished = self
                .complete_activation_held(
                    r,
                    expires_at,
                    &actor,
                    &mut lock,
                    Some((&lease_owner, &input)),
                )
                .await;
            lock.release().await;
            if finished.is_err() {
                // Nothing is left for this operation to do; a step that failed before giving the
                // lease back leaves the grant to the scheduler only if it is mid-activation.
                let _ = self.store.release(id, &lease_owner).await;
            }
            let (request, credential) = finished?;
            Ok(Activated {
                request,
                credential: credential
                    .ok_or_else(|| BrokerError::Conflict("no credential was issued".into()))??,
            })
        }
        .await;
        crate::telemetry::activation(&provider, activated.is_ok(), started.elapsed());
        activated
    }

    /// The intent, durable before any provider call: the request goes `activating`, its lease
    /// and its binding's lock are taken, in one transaction. A binding busy with another
    /// operation is waited for (up to `server.provider_timeout`), with nothing written meanwhile.
    async fn write_intent(
        &self,
        mut r: Request,
        caller: &Principal,
    ) -> Result<(Request, DateTime<Utc>, HeldBindingLock), BrokerError> {
        let everyone_lock_binds = !self.spared_by_everyone_lock(caller);
        let owner = self.operation_owner();
        let deadline = tokio::time::Instant::now() + self.settings.provider_timeout;
        loop {
            let now = Utc::now();
            let window = r.start_activation(now)?;
            let audit = vec![event(
                EventKind::ActivationStarted,
                r.requester.as_str(),
                &r,
                json!({"replica": self.replica}),
            )];
            let mut lock = HeldBindingLock::new(self, &r, owner.clone());
            let wakeup = lock.wakeup();
            let given_back = wakeup.notified();
            let (store, lease, step_owner, request) = (
                self.store.clone(),
                self.settings.lease,
                owner.clone(),
                r.clone(),
            );
            let written = lock
                .write(async move {
                    let hold = Hold::Take {
                        owner: &step_owner,
                        now,
                        lease,
                    };
                    store
                        .write_step(Step {
                            request: &request,
                            lease: hold,
                            binding_lock: hold,
                            audit,
                            unless_locked: Some(Unlocked {
                                principal: request.requester.as_str(),
                                everyone_lock_binds,
                            }),
                        })
                        .await
                })
                .await;
            match written {
                Ok(stored) => return Ok((stored, window.expires_at, lock)),
                Err(StoreError::Busy(what)) if what.starts_with("binding") => {
                    lock.not_taken();
                    if tokio::time::Instant::now() >= deadline {
                        return Err(busy_binding(&r));
                    }
                    wait_for_binding(given_back).await;
                    r = self.get(r.id).await?;
                }
                Err(StoreError::Locked(kill)) => {
                    lock.not_taken();
                    // The lock the write saw: the same answer as any locked caller's.
                    return Err(Self::locked(&kill, &caller.id, "requester"));
                }
                Err(StoreError::Busy(_)) => {
                    lock.not_taken();
                    return Err(BrokerError::Conflict(format!(
                        "request {} is being processed; retry in a moment",
                        r.id
                    )));
                }
                // The copy read earlier is stale (decided, cancelled, activated meanwhile): read
                // it again; its state then says whether activating still makes sense.
                Err(StoreError::Conflict(_)) if tokio::time::Instant::now() < deadline => {
                    lock.not_taken();
                    r = self.get(r.id).await?;
                }
                Err(e) => {
                    lock.not_taken();
                    return Err(e.into());
                }
            }
        }
    }

    /// Second half of activation, used by the scheduler to resume an intent after a crash.
    pub(crate) async fn complete_activation(
        &self,
        r: Request,
        expires_at: DateTime<Utc>,
        actor: &str,
    ) -> Result<Request, BrokerError> {
        let mut lock = self.lock_binding(&r).await?;
        let out = self
            .complete_activation_held(r, expires_at, actor, &mut lock, None)
            .await;
        lock.release().await;
        Ok(out?.0)
    }

    /// Has the provider create the access (with the target's expiry covering every holder),
    /// then records the outcome, giving back the binding's lock in the same transaction. With
    /// `issue` (the lease owner and the credential input), the credential is issued first and
    /// audited with the outcome, and the lease is given back there too; a credential that could
    /// not be issued is returned as the inner error (the grant is active; it can be asked for
    /// again).
    async fn complete_activation_held(
        &self,
        mut r: Request,
        expires_at: DateTime<Utc>,
        actor: &str,
        lock: &mut HeldBindingLock,
        issue: Option<(&str, &CredentialInput)>,
    ) -> Result<IssuedActivation, BrokerError> {
        let provider = self.provider_for(&r.resource)?.clone();
        let (holders, latest) = self.holders_expiry(&r).await?;
        let until = latest.map_or(expires_at, |l| l.max(expires_at));
        let binding = r.binding();
        let lease = issue.map_or(Hold::Keep, |(owner, _)| Hold::Release { owner });
        let cx = Self::op_cx(Operation::Activate, &r);
        match self
            .bounded(&cx, &r, "ensure", || provider.ensure(&cx, &binding, until))
            .await
        {
            Ok(()) => {
                self.hang_at(Failpoint::AfterProviderGrant).await;
                r.activation_succeeded()?;
                let ensure_calls = calls(&cx);
                let mut audit = vec![event(
                    EventKind::GrantActivated,
                    actor,
                    &r,
                    json!({"target_expiry": until, "shared_with": holders, "provider_calls": ensure_calls}),
                )];
                let mut credential = None;
                let mut issue_calls = json!([]);
                if let Some((_, input)) = issue {
                    self.hang_at(Failpoint::BeforeIssue).await;
                    let issued = self
                        .bounded(&cx, &r, "issue_credentials", || {
                            provider.issue_credentials(&cx, &binding, expires_at, input)
                        })
                        .await;
                    let calls = calls(&cx);
                    issue_calls.clone_from(&calls);
                    audit.push(match &issued {
                        // The secret itself is never stored or logged; only that one was issued.
                        Ok(c) => event(
                            EventKind::CredentialsIssued,
                            r.requester.as_str(),
                            &r,
                            json!({"credential_kind": c.kind, "details": c.details, "provider_calls": calls}),
                        ),
                        Err(e) => event(
                            EventKind::CredentialsRefused,
                            r.requester.as_str(),
                            &r,
                            json!({"error": e.to_string(), "provider_calls": calls}),
                        ),
                    });
                    credential = Some(issued);
                }
                let stored = match self.write_outcome(&r, lease, lock, audit).await {
                    Ok(stored) => stored,
                    Err(e @ StoreError::Conflict(_)) => match credential {
                        // This operation's lease ran out under a slow provider and another took
                        // the grant over; what was just minted is settled with the grant as it
                        // is now (its access and these calls audited either way).
                        Some(Ok(minted)) => {
                            let calls = json!({"ensure": ensure_calls, "issue": issue_calls});
                            return self.settle_minted(&r, minted, lock, calls).await;
                        }
                        _ => return Err(e.into()),
                    },
                    Err(e) => return Err(e.into()),
                };
                tracing::info!(grant_id = %stored.id, expires_at = %expires_at, "grant active");
                crate::telemetry::granted(
                    stored.resource.provider().as_str(),
                    stored.created_at,
                    Utc::now(),
                );
                Ok((stored, credential))
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
                    match self
                        .bounded(&cx, &r, "revoke", || provider.revoke(&cx, &binding))
                        .await
                    {
                        Ok(()) => self
                            .bounded(&cx, &r, "verify_revoked", || {
                                provider.verify_revoked(&cx, &binding)
                            })
                            .await
                            .err(),
                        Err(undo) => Some(undo),
                    }
                } else {
                    None
                };
                let calls = calls(&cx);
                match rollback {
                    None => {
                        r.activation_failed(e.to_string())?;
                        let audit = vec![event(
                            EventKind::ActivationFailed,
                            actor,
                            &r,
                            json!({"error": e.to_string(), "provider_calls": calls}),
                        )];
                        self.write_outcome(&r, lease, lock, audit)
                            .await
                            .map_err(BrokerError::from)?;
                    }
                    Some(undo) => {
                        let why = format!("{e}; removing what it created failed too: {undo}");
                        r.activation_abandoned(
                            Utc::now(),
                            why.clone(),
                            self.settings.revoke_backoff,
                            rand::random::<f64>(),
                        )?;
                        let audit = vec![event(
                            EventKind::ActivationFailed,
                            actor,
                            &r,
                            json!({"error": e.to_string(), "rollback_error": undo.to_string(), "removal_retried": true, "next_attempt_at": r.next_attempt_at, "provider_calls": calls}),
                        )];
                        self.write_outcome(&r, lease, lock, audit)
                            .await
                            .map_err(BrokerError::from)?;
                        tracing::warn!(grant_id = %r.id, error = %why, "activation abandoned; removal will be retried");
                    }
                }
                Err(e)
            }
        }
    }

    /// Writes an activation's outcome, giving back the binding's lock (and, per `lease`, the
    /// request's lease) in the same transaction.
    async fn write_outcome(
        &self,
        r: &Request,
        lease: Hold<'_>,
        lock: &mut HeldBindingLock,
        audit: Vec<brevet_audit::AuditDraft>,
    ) -> Result<Request, StoreError> {
        let (store, request, lock_owner) = (self.store.clone(), r.clone(), lock.owner().to_owned());
        let lease_owner = match lease {
            Hold::Release { owner } => Some(owner.to_owned()),
            _ => None,
        };
        let stored = lock
            .write(async move {
                store
                    .write_step(Step {
                        request: &request,
                        lease: lease_owner
                            .as_deref()
                            .map_or(Hold::Keep, |owner| Hold::Release { owner }),
                        binding_lock: Hold::Release { owner: &lock_owner },
                        audit,
                        unless_locked: None,
                    })
                    .await
            })
            .await?;
        lock.released_by_step();
        Ok(stored)
    }

    /// A credential was minted, then the outcome could not be written: the grant was taken over
    /// meanwhile. If the grant is active now (the scheduler resumed this very activation), the
    /// credential is covered by it and is handed out; otherwise what the binding has is revoked —
    /// under a fresh binding lock, and only if no other grant holds the binding — because the
    /// revocation that took the grant over may have run before the credential existed.
    async fn settle_minted(
        &self,
        r: &Request,
        minted: Credential,
        lock: &mut HeldBindingLock,
        minting: serde_json::Value,
    ) -> Result<IssuedActivation, BrokerError> {
        // This operation's lock ran out with its lease; give back whatever is still ours.
        lock.release().await;
        let now = self.get(r.id).await?;
        let provider = self.provider_for(&r.resource)?.clone();
        if now.state == RequestState::Active {
            let audit = event(
                EventKind::CredentialsIssued,
                r.requester.as_str(),
                &now,
                json!({"credential_kind": minted.kind, "details": minted.details, "provider_calls": minting, "activated_by": "the resumed activation"}),
            );
            self.store.append_audit(vec![audit]).await?;
            return Ok((now, Some(Ok(minted))));
        }
        let details = minted.details.clone();
        drop(minted);
        let binding = r.binding();
        let cx = Self::op_cx(Operation::Rollback, r);
        let revoked = self
            .with_binding_lock(r, async {
                let (holders, _) = self.holders_expiry(r).await?;
                if holders.is_empty() {
                    self.bounded(&cx, r, "revoke", || provider.revoke(&cx, &binding))
                        .await?;
                }
                Ok(())
            })
            .await;
        let audit = event(
            EventKind::CredentialsRefused,
            r.requester.as_str(),
            r,
            json!({"refusal": format!("the grant became {} while its credential was issued", now.state), "credential_revoked": revoked.is_ok(), "details": details, "provider_calls": {"minting": minting, "revoking": calls(&cx)}}),
        );
        self.store.append_audit(vec![audit]).await?;
        // If this revoke failed, the reconciler removes what no grant covers.
        revoked?;
        Err(BrokerError::Conflict(format!(
            "grant {} is {} now; the credential issued meanwhile was revoked",
            r.id, now.state
        )))
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
        let cx = Self::op_cx(Operation::Rollback, r);
        let revoked = self
            .with_binding_lock(r, async {
                let (holders, _) = self.holders_expiry(r).await?;
                if holders.is_empty() {
                    self.bounded(&cx, r, "revoke", || provider.revoke(&cx, &binding))
                        .await?;
                }
                Ok(())
            })
            .await;
        let audit = event(
            EventKind::CredentialsRefused,
            r.requester.as_str(),
            r,
            json!({"refusal": format!("the grant became {} while its credential was issued", now.state), "credential_revoked": revoked.is_ok(), "provider_calls": calls(&cx)}),
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
        let cx = Self::op_cx(Operation::IssueCredentials, r);
        let binding = r.binding();
        let issued = self
            .bounded(&cx, r, "issue_credentials", || {
                provider.issue_credentials(&cx, &binding, expires_at, input)
            })
            .await;
        let credential = match issued {
            Ok(c) => c,
            Err(e) => {
                // The calls that failed are this step's, so they are audited with it.
                let audit = event(
                    EventKind::CredentialsRefused,
                    r.requester.as_str(),
                    r,
                    json!({"error": e.to_string(), "provider_calls": calls(&cx)}),
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
            json!({"credential_kind": credential.kind, "details": credential.details, "provider_calls": calls(&cx)}),
        );
        self.store.append_audit(vec![audit]).await?;
        Ok(credential)
    }

    /// Issues a fresh credential for an active grant (the earlier one stops working).
    #[tracing::instrument(name = "credentials", skip_all, fields(grant_id = %id))]
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
        .await;
        self.store.release(id, &owner).await?;
        result
    }

    /// Ends a grant early: its owner or an admin. Revocation runs now and, if it fails, keeps
    /// being retried by the scheduler. Three commits: the start (with the request's lease taken
    /// in it), the binding's lock, and the outcome (giving both back).
    #[tracing::instrument(name = "revoke", skip_all, fields(grant_id = %id))]
    pub async fn revoke(
        &self,
        caller: &Principal,
        id: RequestId,
        reason: Option<String>,
    ) -> Result<Request, BrokerError> {
        let mut r = self.get_visible(caller, id).await?;
        if r.requester != caller.id && !caller.has_role(Role::Admin) {
            return Err(BrokerError::Forbidden(
                "only the grant's owner or an admin can revoke it".into(),
            ));
        }
        // It goes into the audit log, notifications and terminals: plain text, bounded.
        let reason = super::decide::clean(&reason, "reason", 2000)?;
        let owner = self.operation_owner();
        let reason = reason.unwrap_or_else(|| format!("revoked by {}", caller.id));
        let result = async {
            let mut attempts = 0;
            let r = loop {
                let now = Utc::now();
                let mut next = r.clone();
                next.start_revocation(now, &reason)?;
                let audit = vec![event(
                    EventKind::RevocationStarted,
                    caller.id.as_str(),
                    &next,
                    json!({"why": reason}),
                )];
                let step = Step {
                    request: &next,
                    lease: Hold::Take {
                        owner: &owner,
                        now,
                        lease: self.settings.lease,
                    },
                    binding_lock: Hold::Keep,
                    audit,
                    unless_locked: None,
                };
                match self.store.write_step(step).await {
                    Ok(r) => break r,
                    Err(StoreError::Busy(_)) => {
                        return Err(BrokerError::Conflict(format!(
                            "grant {id} is being processed; retry in a moment"
                        )))
                    }
                    // Changed since it was read (extended, say): read it again and retry.
                    Err(StoreError::Conflict(_)) if attempts < 3 => {
                        attempts += 1;
                        r = self.get(id).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            self.finish_revocation(r, caller.id.as_str(), Some(&owner))
                .await
        }
        .await;
        if result.is_err() {
            // Given back by the outcome's step when there was one; a no-op if never taken.
            self.store.release(id, &owner).await?;
        }
        result
    }

    /// Removes the access (unless another grant still holds the binding), reads the target back,
    /// and records the evidence; on failure records it for a retry with backoff. The outcome's
    /// step gives back the binding's lock and, with `lease_owner`, the request's lease.
    #[tracing::instrument(name = "revocation", skip_all, fields(grant_id = %r.id))]
    pub(crate) async fn finish_revocation(
        &self,
        mut r: Request,
        actor: &str,
        lease_owner: Option<&str>,
    ) -> Result<Request, BrokerError> {
        self.hang_at(Failpoint::AfterRevokeIntent).await;
        let provider = self.provider_for(&r.resource)?.clone();
        let binding = r.binding();
        let cx = Self::op_cx(Operation::Revoke, &r);
        let started = std::time::Instant::now();
        // Under the binding lock: the holder check and the provider work are one step, so an
        // activation or another revocation of the same binding cannot slip in between.
        let (outcome, mut lock): (Result<Evidence, BrokerError>, _) = match self
            .lock_binding(&r)
            .await
        {
            Err(e) => (Err(e), None),
            Ok(lock) => {
                let outcome = async {
                        let (holders, latest) = self.holders_expiry(&r).await?;
                        if let Some(latest) = latest {
                            // Reference counting: another active grant covers this binding, so
                            // the access stays, with the target's own expiry brought back to
                            // that grant's end.
                            self.bounded(&cx, &r, "ensure", || {
                                provider.ensure(&cx, &binding, latest)
                            })
                            .await?;
                            return Ok(Evidence {
                                checked_at: Utc::now(),
                                observation: json!({"binding_still_held_by": holders, "target_expiry": latest, "access_removed": false}),
                            });
                        }
                        self.bounded(&cx, &r, "revoke", || provider.revoke(&cx, &binding))
                            .await?;
                        self.hang_at(Failpoint::AfterProviderRevoke).await;
                        self.bounded(&cx, &r, "verify_revoked", || {
                            provider.verify_revoked(&cx, &binding)
                        })
                        .await
                    }
                    .await;
                (outcome, Some(lock))
            }
        };
        let audit = match &outcome {
            Ok(evidence) => {
                r.revocation_verified(Utc::now(), evidence.clone())?;
                vec![event(
                    EventKind::GrantRevoked,
                    actor,
                    &r,
                    json!({"evidence": evidence, "provider_calls": calls(&cx)}),
                )]
            }
            Err(e) => {
                // Retried by the scheduler with backoff either way (access must not outlive the
                // grant); a permanent failure is said so at once, in the grant's error, the
                // audit event and the log, so an operator can fix its cause.
                // Bad input cannot get better by itself either (a principal whose identity was
                // removed from the config while they held a grant, say).
                let retryable = !matches!(e, BrokerError::BadInput(_))
                    && !matches!(e, BrokerError::Provider { source, .. } if !source.is_retryable());
                let error = if retryable {
                    e.to_string()
                } else {
                    format!("{e} (permanent: retrying will not help until its cause is fixed)")
                };
                if !retryable {
                    tracing::error!(grant_id = %r.id, error = %e, "revocation failed permanently; access remains until its cause is fixed");
                }
                r.revocation_failed(
                    Utc::now(),
                    error.clone(),
                    self.settings.revoke_backoff,
                    rand::random::<f64>(),
                )?;
                vec![event(
                    EventKind::RevocationFailed,
                    actor,
                    &r,
                    json!({"error": error, "retryable": retryable, "attempts": r.attempts, "next_attempt_at": r.next_attempt_at, "provider_calls": calls(&cx)}),
                )]
            }
        };
        let lease = lease_owner.map_or(Hold::Keep, |owner| Hold::Release { owner });
        let stored = match lock.as_mut() {
            Some(lock) => self
                .write_outcome(&r, lease, lock, audit)
                .await
                .map_err(BrokerError::from)?,
            None => {
                self.store
                    .write_step(Step {
                        request: &r,
                        lease,
                        binding_lock: Hold::Keep,
                        audit,
                        unless_locked: None,
                    })
                    .await?
            }
        };
        if let Some(mut lock) = lock {
            lock.release().await;
        }
        crate::telemetry::revocation(
            stored.resource.provider().as_str(),
            outcome.is_ok(),
            started.elapsed(),
            stored.window.map(|w| w.expires_at),
            Utc::now(),
        );
        match outcome {
            Ok(_) => tracing::info!(grant_id = %stored.id, "grant revoked and verified"),
            Err(e) => {
                tracing::warn!(grant_id = %stored.id, attempts = stored.attempts, error = %e, "revocation failed; will retry")
            }
        }
        Ok(stored)
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
    #[tracing::instrument(name = "extend", skip_all, fields(grant_id = %parent_id, extension_id = %ext.id))]
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
        let cx = Self::op_cx(Operation::Extend, &parent);
        let binding = parent.binding();
        self.bounded(&cx, &parent, "ensure", || {
            provider.ensure(&cx, &binding, until)
        })
        .await?;
        let audit = vec![event(
            EventKind::GrantExtended,
            ext.requester.as_str(),
            &parent,
            json!({"extension_request": ext.id, "by": by, "target_expiry": until, "provider_calls": calls(&cx)}),
        )];
        Ok(self.store.update_request(&parent, audit).await?)
    }
}
