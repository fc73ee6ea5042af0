//! A certificate ledger in memory, with the store's semantics (per provider name), for SSH
//! provider tests that run without the server's store.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    ssh::{CertificateLedger, IssuedCertificate},
    ProviderError,
};

#[derive(Default)]
pub struct MemoryLedger(Mutex<Vec<IssuedCertificate>>);

impl MemoryLedger {
    /// Every record, for a test that changes them (an expiry moved into the past, say).
    pub fn records(&self) -> std::sync::MutexGuard<'_, Vec<IssuedCertificate>> {
        self.all()
    }

    fn all(&self) -> std::sync::MutexGuard<'_, Vec<IssuedCertificate>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl CertificateLedger for MemoryLedger {
    async fn record(&self, c: &IssuedCertificate) -> Result<(), ProviderError> {
        self.all().push(c.clone());
        Ok(())
    }
    async fn revoke_binding(
        &self,
        provider: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        for c in self.all().iter_mut() {
            if c.provider == provider && c.binding_key == key && c.revoked_at.is_none() {
                c.revoked_at = Some(at);
            }
        }
        Ok(())
    }
    async fn revoke_serial(
        &self,
        provider: &str,
        serial: u64,
        at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        for c in self.all().iter_mut() {
            if c.provider == provider && c.serial == serial && c.revoked_at.is_none() {
                c.revoked_at = Some(at);
            }
        }
        Ok(())
    }
    async fn unexpired(
        &self,
        provider: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<IssuedCertificate>, ProviderError> {
        Ok(self
            .all()
            .iter()
            .filter(|c| c.provider == provider && c.valid_before > now)
            .cloned()
            .collect())
    }
    async fn of_binding(
        &self,
        provider: &str,
        key: &str,
    ) -> Result<Vec<IssuedCertificate>, ProviderError> {
        Ok(self
            .all()
            .iter()
            .filter(|c| c.provider == provider && c.binding_key == key)
            .cloned()
            .collect())
    }
}
