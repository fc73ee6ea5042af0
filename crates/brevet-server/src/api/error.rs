use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};

use crate::{auth::AuthError, broker::BrokerError};

pub use brevet_wire::{ErrorBody, ErrorDetail};

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    trace: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            trace: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                trace: self.trace,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let message = e.to_string();
        match e {
            BrokerError::BadInput(_) => Self::bad_request(message),
            BrokerError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            BrokerError::Forbidden(_) => Self::forbidden(message),
            BrokerError::PolicyDenied { trace, .. } => Self {
                status: StatusCode::FORBIDDEN,
                code: "policy_denied",
                message,
                trace: Some(trace),
            },
            BrokerError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            BrokerError::RateLimited(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            }
            BrokerError::Provider { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "provider_failed", message)
            }
            BrokerError::ProviderTimeout(_) => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "provider_timeout", message)
            }
            BrokerError::Store(ref inner) => {
                tracing::error!(error = %inner, "store failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    message,
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
            _ => Self::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        Self::bad_request(format!("request body is not valid: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request(format!("query string is not valid: {}", e.body_text()))
    }
}
