//! `[audit]`: where the checkpoint signing key comes from, where the latest checkpoint is kept on
//! disk, and how often the head is signed.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use brevet_audit::CheckpointKey;
use serde::Deserialize;

use brevet_config::{duration_literal, field, ConfigDuration, ConfigError, SecretRef};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// The Ed25519 private key (64 hex characters): `{ env = "VAR" }` or `{ file = "PATH" }`.
    signing_key: Option<SecretRef>,
    checkpoint_file: Option<PathBuf>,
    checkpoint_every: Option<ConfigDuration>,
}

/// Where the signing key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `audit.signing_key`, read and parsed when the config is loaded.
    Configured(Arc<CheckpointKey>),
    /// No key configured: this file, created (mode 0600) on first start.
    Generated(PathBuf),
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub signing_key: KeySource,
    /// Where the latest checkpoint is kept, outside the database.
    pub checkpoint_file: PathBuf,
    pub checkpoint_every: Duration,
}

impl AuditSettings {
    pub(crate) fn parse(raw: &RawAudit, base: &Path, store_url: &str) -> Result<Self, ConfigError> {
        let (default_key, default_checkpoint) = default_paths(store_url, base);
        let signing_key = match &raw.signing_key {
            None => KeySource::Generated(default_key),
            Some(SecretRef::Plain(_)) => {
                return Err(field(
                    "audit.signing_key",
                    "keep the key out of the config file: write { env = \"VAR\" } or { file = \"PATH\" } (a chmod 600 file holding 64 hex characters, e.g. from `openssl rand -hex 32`), or leave it out to have one generated next to the store",
                ))
            }
            Some(r) => {
                let text = r.resolve("audit.signing_key", base)?;
                let key = CheckpointKey::from_hex(text.expose(), "audit.signing_key")
                    .map_err(|e| field("audit.signing_key", e.to_string()))?;
                KeySource::Configured(Arc::new(key))
            }
        };
        let checkpoint_every = raw.checkpoint_every.unwrap_or(duration_literal("1m")).0;
        if checkpoint_every < Duration::from_secs(1) {
            return Err(field(
                "audit.checkpoint_every",
                "must be at least 1s: it is how often the log's head is signed, and 0 would never sign it",
            ));
        }
        Ok(Self {
            signing_key,
            checkpoint_file: raw
                .checkpoint_file
                .as_ref()
                .map(|p| base.join(p))
                .unwrap_or(default_checkpoint),
            checkpoint_every,
        })
    }
}

/// Next to a SQLite store file (as sqlx resolves it: relative to the working directory), or
/// next to the config file for PostgreSQL and in-memory stores.
fn default_paths(store_url: &str, base: &Path) -> (PathBuf, PathBuf) {
    let sqlite_file = store_url
        .strip_prefix("sqlite://")
        .or_else(|| store_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(""))
        .filter(|p| !p.is_empty() && !p.starts_with(":memory:"));
    match sqlite_file {
        Some(db) => (
            PathBuf::from(format!("{db}.audit-key")),
            PathBuf::from(format!("{db}.audit-checkpoint.json")),
        ),
        None => (
            base.join("brevet-audit.key"),
            base.join("brevet-audit-checkpoint.json"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str, store_url: &str) -> Result<AuditSettings, ConfigError> {
        let raw: RawAudit = crate::config::parse_toml(toml_text, "audit")?;
        AuditSettings::parse(&raw, Path::new("/etc/brevet"), store_url)
    }

    #[test]
    fn defaults_sit_next_to_the_store_and_errors_name_the_field() {
        let s = parse("", "sqlite://data/brevet.db?mode=rwc").unwrap();
        assert!(
            matches!(&s.signing_key, KeySource::Generated(p) if p == Path::new("data/brevet.db.audit-key"))
        );
        assert_eq!(
            s.checkpoint_file,
            Path::new("data/brevet.db.audit-checkpoint.json")
        );
        assert_eq!(s.checkpoint_every, Duration::from_secs(60));
        let s = parse("", "postgres://db/brevet").unwrap();
        assert!(
            matches!(&s.signing_key, KeySource::Generated(p) if p == Path::new("/etc/brevet/brevet-audit.key"))
        );

        let e = parse("signing_key = \"abc\"", "sqlite://x.db").unwrap_err();
        assert!(e.to_string().contains("audit.signing_key"), "{e}");
        std::env::set_var("BREVET_TEST_AUDIT_KEY_SHORT", "abcd");
        let e = parse(
            "signing_key = { env = \"BREVET_TEST_AUDIT_KEY_SHORT\" }",
            "sqlite://x.db",
        )
        .unwrap_err();
        assert!(e.to_string().contains("64 hex characters"), "{e}");
        std::env::set_var("BREVET_TEST_AUDIT_KEY_OK", "22".repeat(32));
        let s = parse(
            "signing_key = { env = \"BREVET_TEST_AUDIT_KEY_OK\" }",
            "sqlite://x.db",
        )
        .unwrap();
        assert!(matches!(s.signing_key, KeySource::Configured(_)));
        let e = parse("checkpoint_every = \"0s\"", "sqlite://x.db").unwrap_err();
        assert!(e.to_string().contains("audit.checkpoint_every"), "{e}");
    }
}
