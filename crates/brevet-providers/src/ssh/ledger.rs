use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ProviderError;

/// A certificate Brevet signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub provider: String,
    pub serial: u64,
    pub binding_key: String,
    pub grant_id: String,
    pub key_id: String,
    pub valid_before: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Durable record of issued and revoked certificates: the KRL is rebuilt from it, so early
/// revocation survives restarts. Implemented by the server over its store.
#[async_trait]
pub trait CertificateLedger: Send + Sync {
    async fn record(&self, cert: &IssuedCertificate) -> Result<(), ProviderError>;
    /// Marks every certificate of the binding revoked.
    async fn revoke_binding(
        &self,
        provider: &str,
        binding_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ProviderError>;
    async fn revoke_serial(
        &self,
        provider: &str,
        serial: u64,
        at: DateTime<Utc>,
    ) -> Result<(), ProviderError>;
    /// Certificates of the provider that are still within their validity (`valid_before > now`).
    async fn unexpired(
        &self,
        provider: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<IssuedCertificate>, ProviderError>;
    async fn of_binding(
        &self,
        provider: &str,
        binding_key: &str,
    ) -> Result<Vec<IssuedCertificate>, ProviderError>;
}
