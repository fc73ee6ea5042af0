//! Errors in Google's JSON shape (`{"error":{"code","message","status","errors":[…]}}`), as the
//! Google API clients parse them.

use serde_json::{json, Value};

/// One refusal of the stand-in: the HTTP status, Google's canonical status name and the
/// `errors[].reason` Google puts next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(
        code: u16,
        status: &'static str,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            status,
            reason,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", "badRequest", message)
    }

    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(400, "FAILED_PRECONDITION", "failedPrecondition", message)
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(403, "PERMISSION_DENIED", "forbidden", message)
    }

    /// Google answers a missing project/folder/organization as it answers one the caller may not
    /// see, so the existence of resources does not leak.
    pub fn no_permission() -> Self {
        Self::denied("The caller does not have permission")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", "notFound", message)
    }

    /// cloud-contracts §1.1: the exact text of a stale-etag setIamPolicy.
    pub fn concurrent_change() -> Self {
        Self::new(
            409,
            "ABORTED",
            "aborted",
            "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
        )
    }

    pub fn aborted(message: impl Into<String>) -> Self {
        Self::new(409, "ABORTED", "aborted", message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(409, "ALREADY_EXISTS", "alreadyExists", message)
    }

    /// Cloud Storage's answer to a stale etag (an `If-Match`-style precondition).
    pub fn precondition_failed() -> Self {
        Self::new(
            412,
            "FAILED_PRECONDITION",
            "conditionNotMet",
            "Precondition Failed",
        )
    }

    pub fn exhausted(message: impl Into<String>) -> Self {
        Self::new(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", message)
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "code": self.code,
            "message": self.message,
            "status": self.status,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        }})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.status, self.message)
    }
}
