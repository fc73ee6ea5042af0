//! The operation context every provider call is given: what Brevet is doing (activate, revoke,
//! reconcile …) for which request, and where the provider records the calls it makes to its
//! target. The broker writes the records into the audit event of the step that made them, so the
//! log shows which target calls each decision caused — with the target's own request ids where it
//! gives them (AWS), and never a secret.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;

/// What Brevet is doing when it calls a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Making access exist (`ensure`), or bringing its expiry in line with the grants that hold it.
    Activate,
    /// Handing out a credential for an active grant.
    IssueCredentials,
    /// Lengthening access for an approved extension.
    Extend,
    /// Taking access away and reading the target back.
    Revoke,
    /// Undoing what an activation or an issuance made that must not stay.
    Rollback,
    /// The kill switch: ending live sessions, then revoking.
    Kill,
    /// Finding and removing access that no grant covers.
    Reconcile,
    /// Anything else (tests, start-up).
    Other,
}

/// How one target call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Ok,
    /// The target's error code (e.g. `NoSuchEntity`, `42501`) or `unreachable`.
    Error(String),
}

/// One call a provider made to its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// The target's name for the call, e.g. `CreateRole`, `DROP ROLE`.
    pub call: String,
    /// What it acted on: a role name, an ARN, a certificate serial. Never a secret.
    pub target: String,
    /// The target's own id for the call (AWS's request id), when it gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub outcome: CallOutcome,
    pub duration_ms: u64,
}

/// Given to every provider call. Cheap to make; one per step of an operation.
#[derive(Debug)]
pub struct OpContext {
    operation: Operation,
    request_id: Option<String>,
    reason: Option<String>,
    calls: Mutex<Vec<CallRecord>>,
}

impl OpContext {
    /// A context for `operation` on behalf of Brevet request `request_id` (none for the
    /// reconciler, which acts for no request).
    pub fn new(operation: Operation, request_id: Option<String>) -> Self {
        Self {
            operation,
            request_id,
            reason: None,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The same context with the reason given for the operation (the requester's justification,
    /// or why access is being revoked), for targets that record a reason with a change (GCP's
    /// `x-goog-request-reason`).
    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason.filter(|r| !r.trim().is_empty());
        self
    }

    /// Why the operation is done, if a reason was given.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// A context for tests and one-off calls.
    pub fn other() -> Self {
        Self::new(Operation::Other, None)
    }

    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The Brevet request this call serves, if any.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Records one target call.
    pub fn record(&self, call: CallRecord) {
        tracing::debug!(operation = ?self.operation, request = ?self.request_id, call = %call.call, target = %call.target, outcome = ?call.outcome, "provider call");
        self.lock().push(call);
    }

    /// Starts timing a call; `finish` records it.
    pub fn start(&self, call: impl Into<String>, target: impl Into<String>) -> PendingCall<'_> {
        PendingCall {
            cx: self,
            call: call.into(),
            target: target.into(),
            started: Instant::now(),
        }
    }

    /// Runs one target operation (`call` on `target`), timed, and records it with its outcome
    /// (the error's class on failure), for targets without request ids of their own.
    pub async fn recorded<T>(
        &self,
        call: &str,
        target: &str,
        fut: impl std::future::Future<Output = Result<T, crate::ProviderError>>,
    ) -> Result<T, crate::ProviderError> {
        let pending = self.start(call, target);
        let r = fut.await;
        pending.finish(
            match &r {
                Ok(_) => CallOutcome::Ok,
                Err(e) => CallOutcome::Error(e.class().into()),
            },
            None,
        );
        r
    }

    /// Takes the calls recorded so far (the next step starts with none).
    pub fn take_calls(&self) -> Vec<CallRecord> {
        std::mem::take(&mut *self.lock())
    }

    /// Whether a recorded call matches.
    pub fn has_call(&self, f: impl Fn(&CallRecord) -> bool) -> bool {
        self.lock().iter().any(f)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CallRecord>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A call being timed.
pub struct PendingCall<'a> {
    cx: &'a OpContext,
    call: String,
    target: String,
    started: Instant,
}

impl PendingCall<'_> {
    /// Records the call with its outcome and the target's request id.
    pub fn finish(self, outcome: CallOutcome, request_id: Option<&str>) {
        let elapsed: Duration = self.started.elapsed();
        self.cx.record(CallRecord {
            call: self.call,
            target: self.target,
            request_id: request_id.map(str::to_owned),
            outcome,
            duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_kept_in_order_taken_once_and_serialised_without_empty_ids() {
        let cx = OpContext::new(Operation::Revoke, Some("r-1".into()));
        cx.start("DeleteRole", "brevet-abc")
            .finish(CallOutcome::Ok, Some("req-1"));
        cx.start("DeleteRole", "brevet-abc")
            .finish(CallOutcome::Error("NoSuchEntity".into()), None);
        assert!(cx.has_call(|c| c.outcome == CallOutcome::Error("NoSuchEntity".into())));
        let v = serde_json::to_value(cx.take_calls()).unwrap();
        assert_eq!(v[0]["call"], "DeleteRole");
        assert_eq!(v[0]["request_id"], "req-1");
        assert_eq!(v[0]["outcome"], "ok");
        assert_eq!(v[1]["outcome"]["error"], "NoSuchEntity");
        assert!(v[1].get("request_id").is_none());
        assert!(cx.take_calls().is_empty());
        assert_eq!(cx.request_id(), Some("r-1"));
        assert_eq!(cx.operation(), Operation::Revoke);
    }
}
