use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;

use crate::{millis, Store, StoreError};

/// A signed SSH certificate as recorded (mirrors the provider's ledger type; the store does not
/// depend on providers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub provider: String,
    pub serial: u64,
    pub binding: String,
    pub grant_id: String,
    pub key_id: String,
    pub valid_before: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<CertificateRecord, StoreError> {
    let serial: i64 = r.try_get(1)?;
    let revoked: Option<i64> = r.try_get(6)?;
    Ok(CertificateRecord {
        provider: r.try_get(0)?,
        serial: serial as u64,
        binding: r.try_get(2)?,
        grant_id: r.try_get(3)?,
        key_id: r.try_get(4)?,
        valid_before: at(r.try_get(5)?),
        revoked_at: revoked.map(at),
    })
}

const COLUMNS: &str = "provider, serial, binding, grant_id, key_id, valid_before, revoked_at";

impl Store {
    pub async fn record_certificate(&self, c: &CertificateRecord) -> Result<(), StoreError> {
        let serial =
            i64::try_from(c.serial).map_err(|_| StoreError::Corrupt("serial above 2^63".into()))?;
        sqlx::query(&format!(
            "INSERT INTO ssh_certificates ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL)"
        ))
        .bind(&c.provider)
        .bind(serial)
        .bind(&c.binding)
        .bind(&c.grant_id)
        .bind(&c.key_id)
        .bind(millis(c.valid_before))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn revoke_certificates_of(
        &self,
        provider: &str,
        binding: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query("UPDATE ssh_certificates SET revoked_at = $1 WHERE provider = $2 AND binding = $3 AND revoked_at IS NULL")
            .bind(millis(now))
            .bind(provider)
            .bind(binding)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn revoke_certificate(
        &self,
        provider: &str,
        serial: u64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query("UPDATE ssh_certificates SET revoked_at = $1 WHERE provider = $2 AND serial = $3 AND revoked_at IS NULL")
            .bind(millis(now))
            .bind(provider)
            .bind(serial as i64)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn unexpired_certificates(
        &self,
        provider: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM ssh_certificates WHERE provider = $1 AND valid_before > $2 ORDER BY serial"))
            .bind(provider)
            .bind(millis(now))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn certificates_of(
        &self,
        provider: &str,
        binding: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM ssh_certificates WHERE provider = $1 AND binding = $2 ORDER BY serial"))
            .bind(provider)
            .bind(binding)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(from_row).collect()
    }
}
