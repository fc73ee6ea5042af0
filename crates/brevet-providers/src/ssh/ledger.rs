use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ProviderError;

/// A certificate Brevet signed. Stored as JSON in the provider's state (the store's one-time
/// import of the old `ssh_certificates` rows writes these same field names).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
/// revocation survives restarts. [`StateLedger`] keeps it in the provider's state in Brevet's
/// store; tests use an in-memory one.
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

/// The ledger in the provider's state: one entry per certificate under `cert/<serial>` (20
/// digits, so keys sort by serial), kept a week past the certificate's end — longer than any KRL
/// margin — then purged.
pub struct StateLedger(pub std::sync::Arc<dyn crate::state::ProviderState>);

const KEEP_PAST_EXPIRY: chrono::Duration = chrono::Duration::days(7);

fn cert_key(serial: u64) -> String {
    format!("cert/{serial:020}")
}

fn decode(v: &serde_json::Value) -> Result<IssuedCertificate, ProviderError> {
    serde_json::from_value(v.clone()).map_err(|e| {
        ProviderError::Target(format!("certificate ledger: a record is unreadable: {e}"))
    })
}

impl StateLedger {
    async fn all(&self) -> Result<Vec<(IssuedCertificate, i64)>, ProviderError> {
        self.0
            .list("cert/")
            .await?
            .iter()
            .map(|(_, s)| Ok((decode(&s.value)?, s.version)))
            .collect()
    }

    /// Marks one record revoked, retrying if another writer got there first.
    async fn mark_revoked(&self, serial: u64, at: DateTime<Utc>) -> Result<(), ProviderError> {
        for _ in 0..10 {
            let Some(stored) = self.0.get(&cert_key(serial)).await? else {
                return Ok(());
            };
            let mut cert = decode(&stored.value)?;
            if cert.revoked_at.is_some() {
                return Ok(());
            }
            cert.revoked_at = Some(at);
            let value = serde_json::to_value(&cert)
                .map_err(|e| ProviderError::Target(format!("certificate ledger: {e}")))?;
            if self
                .0
                .put(
                    &cert_key(serial),
                    &value,
                    stored.expires_at,
                    Some(stored.version),
                )
                .await?
            {
                return Ok(());
            }
        }
        Err(ProviderError::Unreachable(format!(
            "certificate ledger: serial {serial} kept changing while it was being revoked; retry"
        )))
    }
}

#[async_trait]
impl CertificateLedger for StateLedger {
    async fn record(&self, cert: &IssuedCertificate) -> Result<(), ProviderError> {
        let value = serde_json::to_value(cert)
            .map_err(|e| ProviderError::Target(format!("certificate ledger: {e}")))?;
        let written = self
            .0
            .put(
                &cert_key(cert.serial),
                &value,
                Some(cert.valid_before + KEEP_PAST_EXPIRY),
                None,
            )
            .await?;
        if !written {
            // Serials are random 63-bit numbers: a collision is astronomically unlikely, and
            // refusing keeps an earlier record (maybe revoked) from being overwritten.
            return Err(ProviderError::Target(format!(
                "certificate ledger: serial {} is already recorded",
                cert.serial
            )));
        }
        Ok(())
    }

    async fn revoke_binding(
        &self,
        _provider: &str,
        binding_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        for (cert, _) in self.all().await? {
            if cert.binding_key == binding_key && cert.revoked_at.is_none() {
                self.mark_revoked(cert.serial, at).await?;
            }
        }
        Ok(())
    }

    async fn revoke_serial(
        &self,
        _provider: &str,
        serial: u64,
        at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        self.mark_revoked(serial, at).await
    }

    async fn unexpired(
        &self,
        _provider: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<IssuedCertificate>, ProviderError> {
        Ok(self
            .all()
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| c.valid_before > now)
            .collect())
    }

    async fn of_binding(
        &self,
        _provider: &str,
        binding_key: &str,
    ) -> Result<Vec<IssuedCertificate>, ProviderError> {
        Ok(self
            .all()
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| c.binding_key == binding_key)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{state::ProviderState, testing::MemoryState};

    /// The store's one-time import writes records as this JSON (brevet-store `state.rs`): the
    /// ledger must read them, and revoke them, like its own.
    #[tokio::test]
    async fn records_imported_from_the_old_table_are_read_and_revoked() {
        let state = Arc::new(MemoryState::default());
        let until = Utc::now() + chrono::Duration::hours(1);
        let imported = serde_json::json!({
            "provider": "ssh", "serial": 42u64, "binding_key": "alice|ssh:box|ssh.login",
            "grant_id": "g1", "key_id": "k1",
            "valid_before": until.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "revoked_at": null,
        });
        assert!(state
            .put(&cert_key(42), &imported, None, None)
            .await
            .unwrap());
        let ledger = StateLedger(state);
        let of = ledger
            .of_binding("ssh", "alice|ssh:box|ssh.login")
            .await
            .unwrap();
        assert_eq!(of.len(), 1);
        assert_eq!(of[0].serial, 42);
        ledger.revoke_serial("ssh", 42, Utc::now()).await.unwrap();
        let now = ledger.unexpired("ssh", Utc::now()).await.unwrap();
        assert!(now[0].revoked_at.is_some());
        // A second record with the same serial is refused, never overwriting the first.
        let mut again = now[0].clone();
        again.revoked_at = None;
        assert!(ledger.record(&again).await.is_err());
        assert!(ledger.unexpired("ssh", Utc::now()).await.unwrap()[0]
            .revoked_at
            .is_some());
    }
}
