//! The provider contract as one suite, run by every provider against its real target (or the
//! closest stand-in there is), as Teleport's backends run one compliance suite. What it checks:
//!
//! 1. `revoke` of access that never existed succeeds, and `verify_revoked` then gives evidence;
//! 2. `ensure` is idempotent and safe to run twice at once; the target (seen by the inspector,
//!    not by the provider) then has the access, with the expiry `ensure` was given where the
//!    target enforces expiry itself, and a later `ensure` moves that expiry;
//! 3. `issue_credentials` after `ensure` gives a credential that ends no later than asked, that
//!    works, and that stops working when a newer one is issued;
//! 4. `verify_revoked` refuses (`StillPresent`) while the access exists;
//! 5. `list_owned` reports the access under its binding, and never something that only looks
//!    like the provider's (a look-alike the inspector planted);
//! 6. `revoke` removes the access — seen by the inspector, the credential stops working — and
//!    is idempotent, and leaves another binding's access alone; `verify_revoked` gives evidence;
//! 7. `remove_owned` removes an orphan, and refuses to touch the look-alike;
//! 8. every call answers within [`CALL_BOUND`].
//!
//! A check that fails panics with the check's number and what was seen. The suite is shown to
//! catch a provider whose `revoke` leaves the access in place (this module's tests).

use std::{future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use brevet_core::Binding;
use chrono::{DateTime, Utc};

use crate::{Credential, CredentialInput, OpContext, OwnedAccess, Provider, ProviderError};

/// How long any one provider call may take in the suite.
pub const CALL_BOUND: Duration = Duration::from_secs(60);

/// Looks at the target without going through the provider under test: its own client (psql,
/// the AWS CLI, `ssh-keygen`), so the suite cannot be fooled by a provider that agrees with
/// itself.
#[async_trait]
pub trait Inspector: Send + Sync {
    /// Whether the binding's access exists on the target now. `credential` is the latest one
    /// issued for it, for targets where the access is the credential itself (certificates).
    async fn present(&self, binding: &Binding, credential: Option<&Credential>) -> bool;

    /// The expiry the target itself enforces for the binding's access, if it keeps one
    /// (`credential`: the latest one issued, for targets where the access is the credential).
    async fn enforced_expiry(
        &self,
        binding: &Binding,
        credential: Option<&Credential>,
    ) -> Option<DateTime<Utc>>;

    /// Whether a credential works against the target (`None`: this target cannot tell, e.g. it
    /// needs the requester's own identity).
    async fn credential_works(&self, credential: &Credential) -> Option<bool>;

    /// Plants something beside the provider's access that looks like it but is not the
    /// provider's (a role with the prefix and no marker, say); returns its native id.
    async fn plant_lookalike(&self) -> String;

    /// Whether the look-alike is still there.
    async fn lookalike_present(&self, native_id: &str) -> bool;
}

/// What the suite works with: two bindings the provider can grant (different principals, so
/// neither covers the other) and the credential input a requester would send.
pub struct Fixture {
    pub binding: Binding,
    pub other: Binding,
    pub input: CredentialInput,
    /// Whether the target enforces the expiry itself (`VALID UNTIL`, a policy condition, a
    /// certificate's validity): then the inspector's `enforced_expiry` is checked.
    pub enforces_expiry: bool,
    /// Whether the access is the credential itself (certificates): then `present` is asked
    /// with the latest credential, and `ensure` alone creates nothing to see.
    pub access_is_credential: bool,
    /// Whether `list_owned` can report the binding's access (false where nothing per grant is
    /// left on the target to list, as AWS session mode, whose access is the STS session itself):
    /// then checks 5 and 7 ask only that nothing is reported and no look-alike is taken.
    pub lists_access: bool,
}

async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CALL_BOUND, fut).await {
        Ok(v) => v,
        Err(_) => panic!("check 8: {what} did not answer within {CALL_BOUND:?}"),
    }
}

fn near(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    // Targets keep whole seconds (PostgreSQL's VALID UNTIL, IAM's date conditions).
    (a - b).num_milliseconds().abs() <= 1_500
}

/// What the suite could check: an inspector that cannot tell whether a credential works (the
/// target needs the requester's own identity, or trusts every local login) skips those checks,
/// and the caller can insist they ran.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Whether the credential checks of 3 and 6 (newest works, earlier and revoked do not) ran.
    pub credentials_checked: bool,
    /// Whether the target's own expiry was compared with what `ensure` asked for.
    pub expiry_checked: bool,
}

/// Runs the suite against `provider`. Use a fresh provider instance and fresh bindings: the
/// suite leaves nothing behind it created, but expects to start from nothing.
pub async fn run(
    provider: Arc<dyn Provider>,
    inspector: Arc<dyn Inspector>,
    fx: Fixture,
) -> Report {
    let cx = OpContext::other();
    let mut report = Report {
        expiry_checked: fx.enforces_expiry,
        ..Report::default()
    };
    let p = provider.as_ref();
    let b = &fx.binding;

    // 1. Absent is success.
    bounded("revoke", p.revoke(&cx, b))
        .await
        .unwrap_or_else(|e| panic!("check 1: revoking access that never existed failed: {e}"));
    bounded("verify_revoked", p.verify_revoked(&cx, b))
        .await
        .unwrap_or_else(|e| panic!("check 1: nothing granted, yet verify_revoked says: {e}"));

    // 2. ensure: idempotent, concurrent-safe, expiry passed to the target.
    let t1 = (Utc::now() + chrono::Duration::minutes(30))
        .with_timezone(&Utc)
        .trunc_subsecs_to_seconds();
    let (r1, r2) = bounded("ensure ×2", async {
        tokio::join!(p.ensure(&cx, b, t1), p.ensure(&cx, b, t1))
    })
    .await;
    r1.unwrap_or_else(|e| panic!("check 2: ensure failed: {e}"));
    r2.unwrap_or_else(|e| panic!("check 2: a concurrent second ensure failed: {e}"));
    bounded("ensure (again)", p.ensure(&cx, b, t1))
        .await
        .unwrap_or_else(|e| panic!("check 2: ensure is not idempotent: {e}"));
    if !fx.access_is_credential {
        assert!(
            inspector.present(b, None).await,
            "check 2: after ensure the target shows no access for {b}"
        );
    }
    if fx.enforces_expiry && !fx.access_is_credential {
        let seen = inspector.enforced_expiry(b, None).await;
        assert!(
            seen.is_some_and(|s| near(s, t1)),
            "check 2: the target enforces {seen:?}, ensure asked for {t1}"
        );
    }
    let t2 = t1 + chrono::Duration::minutes(10);
    bounded("ensure (later expiry)", p.ensure(&cx, b, t2))
        .await
        .unwrap_or_else(|e| panic!("check 2: ensure with a later expiry failed: {e}"));
    if fx.enforces_expiry && !fx.access_is_credential {
        let seen = inspector.enforced_expiry(b, None).await;
        assert!(
            seen.is_some_and(|s| near(s, t2)),
            "check 2: after a second ensure the target enforces {seen:?}, not {t2}"
        );
    }

    // 3. Credentials: bounded by the window; the newest works, the one before does not.
    let first = bounded(
        "issue_credentials",
        p.issue_credentials(&cx, b, t2, &fx.input),
    )
    .await
    .unwrap_or_else(|e| panic!("check 3: issue_credentials after ensure failed: {e}"));
    assert!(
        first.expires_at <= t2 + chrono::Duration::seconds(1),
        "check 3: the credential ends at {}, after the grant's {t2}",
        first.expires_at
    );
    if fx.enforces_expiry && fx.access_is_credential {
        let seen = inspector.enforced_expiry(b, Some(&first)).await;
        assert!(
            seen.is_some_and(|s| s <= t2 + chrono::Duration::seconds(1)),
            "check 3: the credential's enforced end {seen:?} is after the grant's {t2}"
        );
    }
    if let Some(works) = inspector.credential_works(&first).await {
        assert!(works, "check 3: a freshly issued credential does not work");
        report.credentials_checked = true;
    }
    let second = bounded(
        "issue_credentials (again)",
        p.issue_credentials(&cx, b, t2, &fx.input),
    )
    .await
    .unwrap_or_else(|e| panic!("check 3: issuing a second credential failed: {e}"));
    if let Some(works) = inspector.credential_works(&second).await {
        assert!(works, "check 3: the newest credential does not work");
    }
    if let Some(works) = inspector.credential_works(&first).await {
        assert!(
            !works,
            "check 3: an earlier credential still works after a newer one was issued"
        );
    }
    assert!(
        inspector.present(b, Some(&second)).await,
        "check 3: the target shows no access for {b} after credentials were issued"
    );

    // 4. verify_revoked refuses while the access exists.
    match bounded("verify_revoked (present)", p.verify_revoked(&cx, b)).await {
        Err(ProviderError::StillPresent(_)) => {}
        other => panic!("check 4: verify_revoked with the access in place gave {other:?}"),
    }

    // 5. list_owned: the access under its binding; never a look-alike.
    let lookalike = inspector.plant_lookalike().await;
    let owned = bounded("list_owned", p.list_owned(&cx))
        .await
        .unwrap_or_else(|e| panic!("check 5: list_owned failed: {e}"));
    assert_eq!(
        owned
            .iter()
            .any(|o| o.binding_key.as_deref() == Some(&b.key())),
        fx.lists_access,
        "check 5: list_owned and {b}'s access: {owned:?}"
    );
    assert!(
        !owned.iter().any(|o| o.native_id == lookalike),
        "check 5: list_owned reports the look-alike `{lookalike}` as the provider's: {owned:?}"
    );

    // 6. revoke: gone (as the target sees it), idempotent, the other binding untouched.
    bounded("ensure (other)", p.ensure(&cx, &fx.other, t2))
        .await
        .unwrap_or_else(|e| panic!("check 6: ensure for a second binding failed: {e}"));
    let other_credential = bounded(
        "issue_credentials (other)",
        p.issue_credentials(&cx, &fx.other, t2, &fx.input),
    )
    .await
    .unwrap_or_else(|e| panic!("check 6: issuing for a second binding failed: {e}"));
    bounded("revoke", p.revoke(&cx, b))
        .await
        .unwrap_or_else(|e| panic!("check 6: revoke failed: {e}"));
    bounded("revoke (again)", p.revoke(&cx, b))
        .await
        .unwrap_or_else(|e| panic!("check 6: a second revoke failed: {e}"));
    bounded("verify_revoked", p.verify_revoked(&cx, b))
        .await
        .unwrap_or_else(|e| panic!("check 6: verify_revoked after revoke: {e}"));
    assert!(
        !inspector.present(b, Some(&second)).await,
        "check 6: after revoke the target still shows access for {b}"
    );
    if let Some(works) = inspector.credential_works(&second).await {
        assert!(!works, "check 6: the credential still works after revoke");
    }
    assert!(
        inspector.present(&fx.other, Some(&other_credential)).await,
        "check 6: revoking {b} removed {}'s access too",
        fx.other
    );

    // 7. remove_owned: the orphan goes; the look-alike stays, and is refused if named.
    let owned = bounded("list_owned", p.list_owned(&cx))
        .await
        .unwrap_or_else(|e| panic!("check 7: list_owned failed: {e}"));
    let orphans: Vec<&OwnedAccess> = owned
        .iter()
        .filter(|o| o.binding_key.as_deref() == Some(&fx.other.key()))
        .collect();
    assert_eq!(
        !orphans.is_empty(),
        fx.lists_access,
        "check 7: list_owned and {}'s access: {owned:?}",
        fx.other
    );
    for o in orphans {
        bounded("remove_owned", p.remove_owned(&cx, o))
            .await
            .unwrap_or_else(|e| panic!("check 7: remove_owned({}) failed: {e}", o.native_id));
    }
    if !fx.lists_access {
        // Nothing to reconcile: the other binding's access ends by revocation.
        bounded("revoke (other)", p.revoke(&cx, &fx.other))
            .await
            .unwrap_or_else(|e| panic!("check 7: revoking the second binding failed: {e}"));
    }
    assert!(
        !inspector.present(&fx.other, Some(&other_credential)).await,
        "check 7: remove_owned left {}'s access in place",
        fx.other
    );
    let forged = OwnedAccess {
        native_id: lookalike.clone(),
        binding_key: Some(fx.other.key()),
    };
    let _ = bounded("remove_owned (look-alike)", p.remove_owned(&cx, &forged)).await;
    assert!(
        inspector.lookalike_present(&lookalike).await,
        "check 7: remove_owned removed the look-alike `{lookalike}`, which is not the provider's"
    );
    eprintln!("conformance: {} passed all checks; {report:?}", p.kind());
    report
}

trait TruncSeconds {
    fn trunc_subsecs_to_seconds(self) -> Self;
}

impl TruncSeconds for DateTime<Utc> {
    fn trunc_subsecs_to_seconds(self) -> Self {
        use chrono::SubsecRound;
        self.trunc_subsecs(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::InMemoryProvider;

    /// Looks at the in-memory provider's map directly.
    struct MapInspector(crate::testing::memory::Target);

    #[async_trait]
    impl Inspector for MapInspector {
        async fn present(&self, b: &Binding, _: Option<&Credential>) -> bool {
            let map = self.0.lock().unwrap();
            map.get(&b.key()).is_some_and(|e| e.ours)
        }
        async fn enforced_expiry(
            &self,
            b: &Binding,
            _: Option<&Credential>,
        ) -> Option<DateTime<Utc>> {
            self.0.lock().unwrap().get(&b.key()).map(|e| e.expires_at)
        }
        async fn credential_works(&self, c: &Credential) -> Option<bool> {
            let key = c.details["binding"].as_str()?.to_owned();
            let map = self.0.lock().unwrap();
            Some(
                map.get(&key)
                    .and_then(|e| e.credential.as_deref())
                    .is_some_and(|t| t == c.secret.expose()),
            )
        }
        async fn plant_lookalike(&self) -> String {
            let id = "someone-else|memory:db0|db.read".to_owned();
            self.0.lock().unwrap().insert(
                id.clone(),
                crate::testing::memory::Entry {
                    expires_at: Utc::now(),
                    credential: None,
                    ours: false,
                },
            );
            id
        }
        async fn lookalike_present(&self, id: &str) -> bool {
            self.0.lock().unwrap().contains_key(id)
        }
    }

    fn binding(who: &str) -> Binding {
        Binding {
            principal: brevet_core::PrincipalId::parse(who).unwrap(),
            resource: brevet_core::ResourceId::parse("memory:db0").unwrap(),
            profile: brevet_core::ProfileName::parse("db.read").unwrap(),
        }
    }

    fn fixture() -> Fixture {
        Fixture {
            binding: binding("alice"),
            other: binding("bob"),
            input: CredentialInput::default(),
            enforces_expiry: true,
            access_is_credential: false,
            lists_access: true,
        }
    }

    #[tokio::test]
    async fn the_in_memory_provider_passes() {
        let p = InMemoryProvider::default();
        let inspector = Arc::new(MapInspector(p.target()));
        let report = run(Arc::new(p), inspector, fixture()).await;
        assert_eq!(
            report,
            Report {
                credentials_checked: true,
                expiry_checked: true
            }
        );
    }

    /// A provider that keeps its own record honestly but never touches the target: its
    /// `verify_revoked` believes its record. Only the inspector, looking at the target, can
    /// catch it — and must.
    struct ForgetfulRevoke {
        inner: InMemoryProvider,
        revoked: std::sync::Mutex<std::collections::HashSet<String>>,
    }

    #[async_trait]
    impl Provider for ForgetfulRevoke {
        fn kind(&self) -> &'static str {
            "forgetful"
        }
        fn profiles(&self) -> Vec<brevet_core::ProfileName> {
            self.inner.profiles()
        }
        async fn ensure(
            &self,
            cx: &OpContext,
            b: &Binding,
            t: DateTime<Utc>,
        ) -> Result<(), ProviderError> {
            self.revoked.lock().unwrap().remove(&b.key());
            self.inner.ensure(cx, b, t).await
        }
        async fn issue_credentials(
            &self,
            cx: &OpContext,
            b: &Binding,
            t: DateTime<Utc>,
            i: &CredentialInput,
        ) -> Result<Credential, ProviderError> {
            self.inner.issue_credentials(cx, b, t, i).await
        }
        async fn revoke(&self, _cx: &OpContext, b: &Binding) -> Result<(), ProviderError> {
            self.revoked.lock().unwrap().insert(b.key());
            Ok(())
        }
        async fn verify_revoked(
            &self,
            cx: &OpContext,
            b: &Binding,
        ) -> Result<brevet_core::Evidence, ProviderError> {
            let present = self.inner.verify_revoked(cx, b).await.is_err();
            if present && !self.revoked.lock().unwrap().contains(&b.key()) {
                return Err(ProviderError::StillPresent(b.key()));
            }
            Ok(brevet_core::Evidence {
                checked_at: Utc::now(),
                observation: serde_json::json!({"recorded_revoked": true}),
            })
        }
        async fn list_owned(&self, cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError> {
            self.inner.list_owned(cx).await
        }
        async fn remove_owned(
            &self,
            cx: &OpContext,
            o: &OwnedAccess,
        ) -> Result<brevet_core::Evidence, ProviderError> {
            self.inner.remove_owned(cx, o).await
        }
        async fn terminate_sessions(
            &self,
            _cx: &OpContext,
            _: &Binding,
        ) -> Result<u64, ProviderError> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn a_provider_that_believes_its_own_record_instead_of_the_target_fails_the_suite() {
        let p = ForgetfulRevoke {
            inner: InMemoryProvider::default(),
            revoked: Default::default(),
        };
        let inspector = Arc::new(MapInspector(p.inner.target()));
        let outcome = tokio::spawn(run(Arc::new(p), inspector, fixture())).await;
        let panic = outcome.expect_err("the suite passed a provider that leaves access in place");
        let message = panic
            .into_panic()
            .downcast::<String>()
            .map(|s| *s)
            .unwrap_or_default();
        assert!(
            message.starts_with("check 6: after revoke the target still shows access"),
            "{message}"
        );
    }

    /// A provider whose `revoke` says yes and does nothing: the suite must catch it.
    struct LeakyRevoke(InMemoryProvider);

    #[async_trait]
    impl Provider for LeakyRevoke {
        fn kind(&self) -> &'static str {
            "leaky"
        }
        fn profiles(&self) -> Vec<brevet_core::ProfileName> {
            self.0.profiles()
        }
        async fn ensure(
            &self,
            cx: &OpContext,
            b: &Binding,
            t: DateTime<Utc>,
        ) -> Result<(), ProviderError> {
            self.0.ensure(cx, b, t).await
        }
        async fn issue_credentials(
            &self,
            cx: &OpContext,
            b: &Binding,
            t: DateTime<Utc>,
            i: &CredentialInput,
        ) -> Result<Credential, ProviderError> {
            self.0.issue_credentials(cx, b, t, i).await
        }
        async fn revoke(&self, _cx: &OpContext, _: &Binding) -> Result<(), ProviderError> {
            Ok(())
        }
        async fn verify_revoked(
            &self,
            _cx: &OpContext,
            _: &Binding,
        ) -> Result<brevet_core::Evidence, ProviderError> {
            Ok(brevet_core::Evidence {
                checked_at: Utc::now(),
                observation: serde_json::json!({"trust": "me"}),
            })
        }
        async fn list_owned(&self, cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError> {
            self.0.list_owned(cx).await
        }
        async fn remove_owned(
            &self,
            cx: &OpContext,
            o: &OwnedAccess,
        ) -> Result<brevet_core::Evidence, ProviderError> {
            self.0.remove_owned(cx, o).await
        }
        async fn terminate_sessions(
            &self,
            _cx: &OpContext,
            _: &Binding,
        ) -> Result<u64, ProviderError> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn a_provider_whose_revoke_leaves_access_fails_the_suite() {
        let p = LeakyRevoke(InMemoryProvider::default());
        let inspector = Arc::new(MapInspector(p.0.target()));
        let outcome = tokio::spawn(run(Arc::new(p), inspector, fixture())).await;
        let panic = outcome.expect_err("the suite passed a provider that never revokes");
        let message = panic
            .into_panic()
            .downcast::<String>()
            .map(|s| *s)
            .unwrap_or_default();
        assert!(message.starts_with("check 4"), "{message}");
    }
}
