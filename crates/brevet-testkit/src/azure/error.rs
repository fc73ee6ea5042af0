//! Errors in ARM's shape (`{"error":{"code","message"}}`), as the Azure SDKs parse them, and
//! Entra ID's token-endpoint error shape.

use serde_json::{json, Value};

/// One refusal: the HTTP status, ARM's error code and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArmError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Set on 429s: seconds for `Retry-After`.
    pub retry_after: Option<u32>,
}

impl ArmError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn invalid_body(detail: impl std::fmt::Display) -> Self {
        Self::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{detail}'."),
        )
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    /// ARM's 403 text for a caller without the action at the scope.
    pub fn authorization_failed(caller: &str, action: &str, scope: &str) -> Self {
        Self::new(
            403,
            "AuthorizationFailed",
            format!(
                "The client '{caller}' with object id '{caller}' does not have authorization to perform action \
                 '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please \
                 refresh your credentials."
            ),
        )
    }

    pub fn throttled() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type - \
                 Write_ObservationCount. For more information, see - https://aka.ms/srpthrottlinglimits",
            )
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl std::fmt::Display for ArmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

/// Entra ID's token-endpoint refusal (`{"error","error_description","error_codes",…}`), the shape
/// azure_identity and MSAL parse.
pub(crate) fn entra_error(error: &str, aadsts: u32, description: &str) -> Value {
    json!({
        "error": error,
        "error_description": format!("AADSTS{aadsts}: {description}"),
        "error_codes": [aadsts],
        "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": "00000000-0000-0000-0000-000000000000",
        "correlation_id": "00000000-0000-0000-0000-000000000000",
        "error_uri": format!("https://login.microsoftonline.com/error?code={aadsts}"),
    })
}
