//! The SSH provider's certificate ledger, kept in Brevet's store.

use async_trait::async_trait;
use brevet_providers::{
    ssh::{CertificateLedger, IssuedCertificate},
    ProviderError,
};
use brevet_store::{CertificateRecord, Store};
use chrono::{DateTime, Utc};

pub struct StoreLedger(pub Store);

fn err(e: brevet_store::StoreError) -> ProviderError {
    ProviderError::Target(format!("certificate ledger: {e}"))
}

fn to_issued(c: CertificateRecord) -> IssuedCertificate {
    IssuedCertificate {
        provider: c.provider,
        serial: c.serial,
        binding_key: c.binding,
        grant_id: c.grant_id,
        key_id: c.key_id,
        valid_before: c.valid_before,
        revoked_at: c.revoked_at,
    }
}

#[async_trait]
impl CertificateLedger for StoreLedger {
    async fn record(&self, c: &IssuedCertificate) -> Result<(), ProviderError> {
        self.0
            .record_certificate(&CertificateRecord {
                provider: c.provider.clone(),
                serial: c.serial,
                binding: c.binding_key.clone(),
                grant_id: c.grant_id.clone(),
                key_id: c.key_id.clone(),
                valid_before: c.valid_before,
                revoked_at: None,
            })
            .await
            .map_err(err)
    }

    async fn revoke_binding(
        &self,
        provider: &str,
        binding_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        self.0
            .revoke_certificates_of(provider, binding_key, at)
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn revoke_serial(
        &self,
        provider: &str,
        serial: u64,
        at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        self.0
            .revoke_certificate(provider, serial, at)
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn unexpired(
        &self,
        provider: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<IssuedCertificate>, ProviderError> {
        Ok(self
            .0
            .unexpired_certificates(provider, now)
            .await
            .map_err(err)?
            .into_iter()
            .map(to_issued)
            .collect())
    }

    async fn of_binding(
        &self,
        provider: &str,
        binding_key: &str,
    ) -> Result<Vec<IssuedCertificate>, ProviderError> {
        Ok(self
            .0
            .certificates_of(provider, binding_key)
            .await
            .map_err(err)?
            .into_iter()
            .map(to_issued)
            .collect())
    }
}
