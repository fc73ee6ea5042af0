//! A provider whose target is a map in memory: a binding's access exists while its entry does,
//! with the expiry `ensure` gave it recorded (what a target that enforces expiry would hold; a
//! credential is issued only until then). Each credential is a random token; only the latest one
//! issued for a binding works. It passes the
//! conformance suite like the real providers, so broker tests built on it test the real contract.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use brevet_core::{Binding, Evidence, ProfileName};
use chrono::{DateTime, Utc};
use rand::RngCore;

use crate::{
    Credential, CredentialInput, OpContext, OwnedAccess, Provider, ProviderError, SecretText,
};

/// What the map holds for one binding.
#[derive(Debug, Clone)]
pub struct Entry {
    pub expires_at: DateTime<Utc>,
    /// The one credential that works now, if any was issued.
    pub credential: Option<String>,
    /// Made by the provider (`true`) or planted by a test as a look-alike (`false`).
    pub ours: bool,
}

/// The map itself, shared with tests that inspect it (see [`InMemoryProvider::target`]).
pub type Target = Arc<Mutex<HashMap<String, Entry>>>;

/// An in-memory provider offering the given profiles (default: `db.read`).
pub struct InMemoryProvider {
    target: Target,
    profiles: Vec<ProfileName>,
}

impl Default for InMemoryProvider {
    fn default() -> Self {
        Self::with_profiles(&["db.read"])
    }
}

impl InMemoryProvider {
    pub fn with_profiles(profiles: &[&str]) -> Self {
        Self {
            target: Target::default(),
            profiles: profiles
                .iter()
                .map(|p| ProfileName::parse(p).expect("a valid profile name"))
                .collect(),
        }
    }

    /// The map, for an inspector: what is on the "target", seen without the provider.
    pub fn target(&self) -> Target {
        self.target.clone()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.target.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_profile(&self, b: &Binding) -> Result<(), ProviderError> {
        if self.profiles.contains(&b.profile) {
            return Ok(());
        }
        Err(ProviderError::UnknownProfile {
            provider: "memory".into(),
            profile: b.profile.to_string(),
            offered: self
                .profiles
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[async_trait]
impl Provider for InMemoryProvider {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn profiles(&self) -> Vec<ProfileName> {
        self.profiles.clone()
    }

    async fn ensure(
        &self,
        _cx: &OpContext,
        b: &Binding,
        until: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        self.check_profile(b)?;
        let mut map = self.map();
        let entry = map.entry(b.key()).or_insert(Entry {
            expires_at: until,
            credential: None,
            ours: true,
        });
        if !entry.ours {
            // Someone else's, with this binding's name: never adopted.
            return Err(ProviderError::Target(format!(
                "{} exists on the target and was not made by this provider",
                b.key()
            )));
        }
        entry.expires_at = until;
        Ok(())
    }

    async fn issue_credentials(
        &self,
        _cx: &OpContext,
        b: &Binding,
        until: DateTime<Utc>,
        _: &CredentialInput,
    ) -> Result<Credential, ProviderError> {
        let mut raw = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let mut map = self.map();
        let entry = map
            .get_mut(&b.key())
            .filter(|e| e.ours)
            .ok_or_else(|| ProviderError::Target(format!("{} has no access to issue for", b)))?;
        entry.credential = Some(token.clone());
        Ok(Credential {
            kind: crate::CredentialKind::Opaque,
            secret: SecretText::new(token),
            details: serde_json::json!({"binding": b.key()}),
            expires_at: until.min(entry.expires_at),
        })
    }

    async fn revoke(&self, _cx: &OpContext, b: &Binding) -> Result<(), ProviderError> {
        let mut map = self.map();
        if map.get(&b.key()).is_some_and(|e| e.ours) {
            map.remove(&b.key());
        }
        Ok(())
    }

    async fn verify_revoked(
        &self,
        _cx: &OpContext,
        b: &Binding,
    ) -> Result<Evidence, ProviderError> {
        if self.map().get(&b.key()).is_some_and(|e| e.ours) {
            return Err(ProviderError::StillPresent(b.key()));
        }
        Ok(Evidence {
            checked_at: Utc::now(),
            observation: serde_json::json!({"provider": "memory", "present": false}),
        })
    }

    async fn list_owned(&self, _cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError> {
        Ok(self
            .map()
            .iter()
            .filter(|(_, e)| e.ours)
            .map(|(k, _)| OwnedAccess {
                native_id: k.clone(),
                binding_key: Some(k.clone()),
            })
            .collect())
    }

    async fn remove_owned(
        &self,
        _cx: &OpContext,
        o: &OwnedAccess,
    ) -> Result<Evidence, ProviderError> {
        let mut map = self.map();
        match map.get(&o.native_id) {
            Some(e) if !e.ours => {
                return Err(ProviderError::Config(format!(
                    "refusing to remove `{}`: not made by this provider",
                    o.native_id
                )))
            }
            _ => map.remove(&o.native_id),
        };
        Ok(Evidence {
            checked_at: Utc::now(),
            observation: serde_json::json!({"removed": o.native_id}),
        })
    }

    async fn terminate_sessions(&self, _cx: &OpContext, _: &Binding) -> Result<u64, ProviderError> {
        Ok(0)
    }
}
