//! Provider-scoped durable state: keys and JSON values per provider instance, with optional
//! expiry and a version for compare-and-set (see the `provider_state` migration).

use chrono::{DateTime, TimeZone, Utc};
use sqlx::Row;

use crate::{millis, Store, StoreError, WriteQuery};

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub key: String,
    /// JSON text.
    pub value: String,
    pub version: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn entry(r: &sqlx::any::AnyRow) -> Result<StateEntry, StoreError> {
    let expires: Option<i64> = r.try_get(3)?;
    Ok(StateEntry {
        key: r.try_get(0)?,
        value: r.try_get(1)?,
        version: r.try_get(2)?,
        expires_at: expires.map(at),
    })
}

impl Store {
    /// The entry under `key`, unless absent or expired.
    pub async fn state_get(
        &self,
        provider: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StateEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT key, value, version, expires_at FROM provider_state \
             WHERE provider = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(provider)
        .bind(key)
        .bind(millis(now))
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(entry).transpose()
    }

    /// Writes `value` under `key` if the entry's version is still `expected` (`None`: only if
    /// there is no live entry). Returns whether it wrote; `false` means someone else did first.
    pub async fn state_put(
        &self,
        provider: &str,
        key: &str,
        value: &str,
        expires_at: Option<DateTime<Utc>>,
        expected: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = match expected {
            // An expired entry counts as absent: it is replaced.
            None => {
                sqlx::query(
                    "INSERT INTO provider_state (provider, key, value, expires_at, version) \
                     VALUES ($1, $2, $3, $4, 1) \
                     ON CONFLICT (provider, key) DO UPDATE SET value = excluded.value, \
                       expires_at = excluded.expires_at, version = provider_state.version + 1 \
                     WHERE provider_state.expires_at IS NOT NULL AND provider_state.expires_at <= $5",
                )
                .bind(provider)
                .bind(key)
                .bind(value)
                .bind(expires_at.map(millis))
                .bind(millis(now))
                .run_on(self)
                .await?
            }
            Some(version) => {
                sqlx::query(
                    "UPDATE provider_state SET value = $1, expires_at = $2, version = version + 1 \
                     WHERE provider = $3 AND key = $4 AND version = $5",
                )
                .bind(value)
                .bind(expires_at.map(millis))
                .bind(provider)
                .bind(key)
                .bind(version)
                .run_on(self)
                .await?
            }
        };
        Ok(r.rows_affected() == 1)
    }

    pub async fn state_delete(&self, provider: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM provider_state WHERE provider = $1 AND key = $2")
            .bind(provider)
            .bind(key)
            .run_on(self)
            .await?;
        Ok(())
    }

    /// Live entries whose key starts with `prefix`, in key order.
    pub async fn state_list(
        &self,
        provider: &str,
        prefix: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<StateEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, value, version, expires_at FROM provider_state \
             WHERE provider = $1 AND substr(key, 1, length($2)) = $2 \
               AND (expires_at IS NULL OR expires_at > $3) ORDER BY key",
        )
        .bind(provider)
        .bind(prefix)
        .bind(millis(now))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(entry).collect()
    }

    /// Removes expired entries; returns how many.
    pub async fn purge_expired_state(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM provider_state WHERE expires_at IS NOT NULL AND expires_at <= $1",
        )
        .bind(millis(now))
        .run_on(self)
        .await?;
        Ok(r.rows_affected())
    }

    /// One-time move of SSH certificate records from their old table (before provider state
    /// existed) into the SSH provider's state, as the provider reads them: key
    /// `cert/<serial, 20 digits>`, the record as JSON, kept a week past the certificate's end.
    pub(crate) async fn import_legacy_certificates(&self) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT provider, serial, binding, grant_id, key_id, valid_before, revoked_at \
             FROM ssh_certificates",
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let rfc3339 = |ms: i64| at(ms).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        for r in &rows {
            let provider: String = r.try_get(0)?;
            let serial: i64 = r.try_get(1)?;
            let valid_before: i64 = r.try_get(5)?;
            let revoked_at: Option<i64> = r.try_get(6)?;
            let value = serde_json::json!({
                "provider": provider,
                "serial": serial as u64,
                "binding_key": r.try_get::<String, _>(2)?,
                "grant_id": r.try_get::<String, _>(3)?,
                "key_id": r.try_get::<String, _>(4)?,
                "valid_before": rfc3339(valid_before),
                "revoked_at": revoked_at.map(rfc3339),
            });
            sqlx::query(
                "INSERT INTO provider_state (provider, key, value, expires_at, version) \
                 VALUES ($1, $2, $3, $4, 1) ON CONFLICT (provider, key) DO NOTHING",
            )
            .bind(&provider)
            .bind(format!("cert/{:020}", serial as u64))
            .bind(value.to_string())
            .bind(valid_before + 7 * 24 * 3600 * 1000)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM ssh_certificates")
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(rows.len() as u64)
    }
}
