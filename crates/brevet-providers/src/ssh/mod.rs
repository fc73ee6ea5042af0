//! SSH: a short-lived OpenSSH user certificate per grant, signed by Brevet's CA, naming the
//! requester, allowing only the profile's principals, valid for the grant's window. Revocation
//! puts the certificates' serials into a KRL that sshd reads (`RevokedKeys`), so early revocation
//! and the kill switch block certificates before they expire; expiry is enforced by sshd itself.

mod ca;
pub mod krl;
mod ledger;
mod settings;

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use brevet_core::{Binding, Evidence, ProfileName, ResourceId};
use chrono::{DateTime, Utc};
use rand::Rng;
use ssh_key::{certificate, Algorithm, HashAlg, PrivateKey, PublicKey};

pub use ca::load_or_create_ca;
pub use ledger::{CertificateLedger, IssuedCertificate, StateLedger};
pub use settings::Kind;

use crate::{
    Credential, CredentialInput, OpContext, OwnedAccess, Provider, ProviderError, SecretText,
};

/// What a profile allows in its certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshProfile {
    /// Valid principals (the remote user names, or names an `AuthorizedPrincipalsFile` maps).
    pub principals: Vec<String>,
    pub permit_pty: bool,
    pub port_forwarding: bool,
    pub agent_forwarding: bool,
    pub x11_forwarding: bool,
    /// `force-command` critical option.
    pub force_command: Option<String>,
    /// `source-address` critical option (comma-separated CIDRs).
    pub source_address: Option<String>,
}

/// One host (or host group behind one address) that certificates are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHost {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Where the CA's private key lives (created with mode 0600 on first start).
    pub ca_key_file: PathBuf,
    /// Where to write the KRL for sshd's `RevokedKeys` (also served at `/v1/ssh/krl`).
    pub krl_file: Option<PathBuf>,
    /// Certificates start this much before issue, for clock skew.
    pub backdate: Duration,
    /// Revoked serials stay in the KRL this long past their certificate's expiry, so a host whose
    /// clock lags Brevet's does not accept an early-revoked certificate again.
    pub krl_margin: Duration,
    pub profiles: BTreeMap<ProfileName, SshProfile>,
    pub resources: BTreeMap<String, SshHost>,
}

pub struct SshProvider {
    name: String,
    config: SshConfig,
    ca: PrivateKey,
    ca_public: PublicKey,
    ledger: Arc<dyn CertificateLedger>,
    krl_write: tokio::sync::Mutex<()>,
    /// The KRL as last built, served at `/v1/ssh/krl` without a store read per GET.
    krl_cache: std::sync::Mutex<Option<(std::time::Instant, Vec<u8>)>>,
}

/// How long a served KRL may be reused before it is rebuilt: revocations made here rebuild it at
/// once; this bounds how late one made by another replica (or an expiry) shows.
const KRL_CACHE_FOR: Duration = Duration::from_secs(5);

fn ledger_err(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Target(format!("certificate ledger: {e}"))
}

impl SshProvider {
    pub fn new(
        name: &str,
        config: SshConfig,
        ca: PrivateKey,
        ledger: Arc<dyn CertificateLedger>,
    ) -> Self {
        let ca_public = ca.public_key().clone();
        Self {
            name: name.to_owned(),
            config,
            ca,
            ca_public,
            ledger,
            krl_write: tokio::sync::Mutex::new(()),
            krl_cache: std::sync::Mutex::new(None),
        }
    }

    /// The line operators put in sshd's `TrustedUserCAKeys`.
    pub fn ca_public_line(&self) -> String {
        let mut k = self.ca_public.clone();
        k.set_comment(format!("brevet-ssh-ca-{}", self.name));
        k.to_openssh().unwrap_or_default()
    }

    fn ca_blob(&self) -> Vec<u8> {
        self.ca_public.to_bytes().unwrap_or_default()
    }

    fn margin(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.krl_margin).unwrap_or_default()
    }

    /// The current KRL, built from the ledger: every revoked certificate that has not expired
    /// more than the skew margin ago.
    pub async fn krl(&self) -> Result<Vec<u8>, ProviderError> {
        let now = Utc::now();
        let certs = self
            .ledger
            .unexpired(&self.name, now - self.margin())
            .await?;
        let serials: Vec<u64> = certs
            .iter()
            .filter(|c| c.revoked_at.is_some())
            .map(|c| c.serial)
            .collect();
        let version = now.timestamp_millis().max(0) as u64;
        Ok(krl::encode(
            &self.ca_blob(),
            &serials,
            version,
            now.timestamp().max(0) as u64,
            "brevet",
        ))
    }

    /// The KRL to serve at `/v1/ssh/krl`: the cached one while fresh, else rebuilt, so a flood
    /// of GETs costs at most one ledger read per [`KRL_CACHE_FOR`].
    pub async fn served_krl(&self) -> Result<Vec<u8>, ProviderError> {
        if let Some(bytes) = self.fresh_krl() {
            return Ok(bytes);
        }
        let _guard = self.krl_write.lock().await;
        // Whoever held the lock before us may just have rebuilt it: the GETs that queued behind
        // one rebuild share it instead of each reading the ledger again.
        if let Some(bytes) = self.fresh_krl() {
            return Ok(bytes);
        }
        self.rebuild_krl().await
    }

    fn fresh_krl(&self) -> Option<Vec<u8>> {
        match &*self.krl_cache.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, bytes)) if at.elapsed() < KRL_CACHE_FOR => Some(bytes.clone()),
            _ => None,
        }
    }

    async fn rebuild_krl(&self) -> Result<Vec<u8>, ProviderError> {
        let bytes = self.krl().await?;
        *self.krl_cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), bytes.clone()));
        Ok(bytes)
    }

    /// Rebuilds the KRL after a change: the served copy, and the file (atomically: temp file,
    /// then rename) if one is configured.
    /// What KRL calls act on, for call records: the file sshd reads, or the served KRL.
    fn krl_target(&self) -> String {
        match &self.config.krl_file {
            Some(f) => f.display().to_string(),
            None => format!("/v1/providers/{}/krl", self.name),
        }
    }

    pub async fn write_krl(&self) -> Result<(), ProviderError> {
        let _guard = self.krl_write.lock().await;
        let bytes = self.rebuild_krl().await?;
        let Some(path) = &self.config.krl_file else {
            return Ok(());
        };
        let tmp = path.with_extension("krl.tmp");
        std::fs::write(&tmp, &bytes)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| ProviderError::Target(format!("cannot write KRL {}: {e}", path.display())))
    }

    /// What sshd sees: the KRL file when configured, else the served KRL.
    async fn read_back_krl(&self) -> Result<(Vec<u8>, String), ProviderError> {
        match &self.config.krl_file {
            Some(p) => std::fs::read(p)
                .map(|b| (b, p.display().to_string()))
                .map_err(|e| {
                    ProviderError::Target(format!("cannot read KRL {}: {e}", p.display()))
                }),
            None => Ok((self.krl().await?, "/v1/ssh/krl".into())),
        }
    }

    fn profile(&self, p: &ProfileName) -> Result<&SshProfile, ProviderError> {
        crate::profile_of(&self.name, &self.config.profiles, p)
    }

    fn host(&self, b: &Binding) -> Result<&SshHost, ProviderError> {
        self.config
            .resources
            .get(b.resource.name())
            .ok_or_else(|| ProviderError::UnknownResource(b.resource.to_string()))
    }

    /// Parses and vets a requester's public key.
    pub fn parse_public_key(&self, line: &str) -> Result<PublicKey, ProviderError> {
        let key = PublicKey::from_openssh(line.trim()).map_err(|e| {
            ProviderError::BadInput(format!(
                "the public key is not an OpenSSH public key line ({e}); pass the contents of e.g. ~/.ssh/id_ed25519.pub"
            ))
        })?;
        match key.algorithm() {
            Algorithm::Ed25519
            | Algorithm::Ecdsa { .. }
            | Algorithm::SkEd25519
            | Algorithm::SkEcdsaSha2NistP256 => {}
            Algorithm::Rsa { .. } => {
                if let ssh_key::public::KeyData::Rsa(rsa) = key.key_data() {
                    if rsa.n.as_positive_bytes().map_or(0, |b| b.len() * 8) < 3072 {
                        return Err(ProviderError::BadInput(
                            "RSA keys shorter than 3072 bits are not signed; use ed25519".into(),
                        ));
                    }
                }
            }
            other => {
                return Err(ProviderError::BadInput(format!(
                    "key type {} is not supported; use ed25519 (ssh-keygen -t ed25519)",
                    other.as_str()
                )))
            }
        }
        if key.key_data() == self.ca_public.key_data() {
            return Err(ProviderError::BadInput(
                "refusing to sign the CA's own key".into(),
            ));
        }
        Ok(key)
    }
}

#[async_trait]
impl Provider for SshProvider {
    fn kind(&self) -> &'static str {
        "ssh"
    }

    fn profiles(&self) -> Vec<ProfileName> {
        self.config.profiles.keys().cloned().collect()
    }

    fn grants_preview(&self, resource: &ResourceId, profile: &ProfileName) -> Vec<String> {
        let (Some(p), Some(h)) = (
            self.config.profiles.get(profile),
            self.config.resources.get(resource.name()),
        ) else {
            return Vec::new();
        };
        let on = |b: bool| if b { "allowed" } else { "not allowed" };
        let mut lines = vec![
            format!(
                "an SSH certificate for {} on {}:{}",
                p.principals.join(", "),
                h.host,
                h.port
            ),
            format!(
                "terminal {}, port forwarding {}, agent forwarding {}",
                on(p.permit_pty),
                on(p.port_forwarding),
                on(p.agent_forwarding)
            ),
        ];
        if let Some(c) = &p.force_command {
            lines.push(format!("only the command `{c}`"));
        }
        lines
    }

    fn credential_input(&self) -> crate::CredentialInputKind {
        crate::CredentialInputKind::PublicKey
    }

    async fn on_start(&self) -> Result<(), ProviderError> {
        self.write_krl().await
    }

    fn documents(&self) -> &'static [crate::Document] {
        &[
            crate::Document {
                name: "ca",
                content_type: "text/plain",
                description: "the user CA's OpenSSH public key line, for sshd's TrustedUserCAKeys",
            },
            crate::Document {
                name: "krl",
                content_type: "application/octet-stream",
                description: "the OpenSSH KRL of revoked certificates, for sshd's RevokedKeys",
            },
        ]
    }

    async fn document(&self, name: &str) -> Result<Option<Vec<u8>>, ProviderError> {
        match name {
            "ca" => Ok(Some(format!("{}\n", self.ca_public_line()).into_bytes())),
            "krl" => self.served_krl().await.map(Some),
            _ => Ok(None),
        }
    }

    fn check_credential_input(
        &self,
        binding: &Binding,
        input: &CredentialInput,
    ) -> Result<(), ProviderError> {
        self.profile(&binding.profile)?;
        let line = input.public_key.as_deref().ok_or_else(|| {
            ProviderError::BadInput(
                "an SSH grant needs your public key: pass --public-key FILE (or use `brevet ssh`)"
                    .into(),
            )
        })?;
        self.parse_public_key(line).map(|_| ())
    }

    /// Nothing exists on the hosts until a certificate is signed; this only checks the binding.
    async fn ensure(
        &self,
        _cx: &OpContext,
        binding: &Binding,
        _expires_at: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        self.profile(&binding.profile)?;
        self.host(binding)?;
        Ok(())
    }

    async fn issue_credentials(
        &self,
        cx: &OpContext,
        binding: &Binding,
        expires_at: DateTime<Utc>,
        input: &CredentialInput,
    ) -> Result<Credential, ProviderError> {
        let profile = self.profile(&binding.profile)?;
        let host = self.host(binding)?;
        let line = input.public_key.as_deref().ok_or_else(|| {
            ProviderError::BadInput(
                "an SSH grant needs your public key: pass --public-key FILE (or use `brevet ssh`)"
                    .into(),
            )
        })?;
        let key = self.parse_public_key(line)?;
        let now = Utc::now();
        let valid_after = (now
            - chrono::Duration::from_std(self.config.backdate).unwrap_or_default())
        .timestamp()
        .max(0) as u64;
        let valid_before = expires_at.timestamp().max(0) as u64;
        if valid_before <= now.timestamp() as u64 {
            return Err(ProviderError::BadInput(
                "the grant has already expired".into(),
            ));
        }
        // Random serials (never 0, which a KRL cannot name), kept below 2^63 for the store.
        let serial: u64 = rand::thread_rng().gen_range(1..=i64::MAX as u64);
        let key_id = format!("brevet:{}:{}", input.grant_id, binding.principal);
        let bad =
            |e: ssh_key::Error| ProviderError::Target(format!("cannot build certificate: {e}"));
        let mut b = certificate::Builder::new_with_random_nonce(
            &mut rand::rngs::OsRng,
            key.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(bad)?;
        b.serial(serial).map_err(bad)?;
        b.key_id(key_id.clone()).map_err(bad)?;
        b.cert_type(certificate::CertType::User).map_err(bad)?;
        for p in &profile.principals {
            b.valid_principal(p.clone()).map_err(bad)?;
        }
        for (on, name) in [
            (profile.permit_pty, "permit-pty"),
            (profile.port_forwarding, "permit-port-forwarding"),
            (profile.agent_forwarding, "permit-agent-forwarding"),
            (profile.x11_forwarding, "permit-X11-forwarding"),
        ] {
            if on {
                b.extension(name, "").map_err(bad)?;
            }
        }
        if let Some(cmd) = &profile.force_command {
            b.critical_option("force-command", cmd.clone())
                .map_err(bad)?;
        }
        if let Some(src) = &profile.source_address {
            b.critical_option("source-address", src.clone())
                .map_err(bad)?;
        }
        b.comment(key_id.clone()).map_err(bad)?;
        let cert = b.sign(&self.ca).map_err(bad)?;
        // Recorded before it is handed out, so it can always be revoked.
        self.ledger
            .record(&IssuedCertificate {
                provider: self.name.clone(),
                serial,
                binding_key: binding.key(),
                grant_id: input.grant_id.clone(),
                key_id: key_id.clone(),
                valid_before: expires_at,
                revoked_at: None,
            })
            .await?;
        // A fresh certificate replaces the binding's earlier ones, as the trait promises: they
        // go into the KRL before this one is handed out, so re-issuing never multiplies
        // concurrently valid certificates.
        let superseded: Vec<u64> = self
            .ledger
            .of_binding(&self.name, &binding.key())
            .await?
            .into_iter()
            .filter(|c| c.serial != serial && c.revoked_at.is_none() && c.valid_before > now)
            .map(|c| c.serial)
            .collect();
        for s in &superseded {
            self.ledger.revoke_serial(&self.name, *s, now).await?;
        }
        if !superseded.is_empty() {
            cx.recorded("write KRL", &self.krl_target(), self.write_krl())
                .await?;
        }
        let text = cert.to_openssh().map_err(bad)?;
        Ok(Credential {
            kind: crate::CredentialKind::SshCertificate,
            secret: SecretText::new(text),
            details: serde_json::json!(brevet_wire::SshCertificateDetails {
                serial: serial.to_string(),
                key_id,
                principals: profile.principals.clone(),
                valid_after,
                valid_before,
                host: host.host.clone(),
                port: host.port,
                ca_fingerprint: self.ca_public.fingerprint(HashAlg::Sha256).to_string(),
                superseded_serials: superseded.iter().map(u64::to_string).collect(),
            }),
            expires_at,
        })
    }

    async fn revoke(&self, cx: &OpContext, binding: &Binding) -> Result<(), ProviderError> {
        self.ledger
            .revoke_binding(&self.name, &binding.key(), Utc::now())
            .await?;
        cx.recorded("write KRL", &self.krl_target(), self.write_krl())
            .await
    }

    async fn verify_revoked(
        &self,
        cx: &OpContext,
        binding: &Binding,
    ) -> Result<Evidence, ProviderError> {
        let now = Utc::now();
        let certs = self.ledger.of_binding(&self.name, &binding.key()).await?;
        // Within the skew margin a certificate may still be accepted by a host whose clock lags.
        let live: Vec<&IssuedCertificate> = certs
            .iter()
            .filter(|c| c.valid_before + self.margin() > now)
            .collect();
        let (krl, source) = cx
            .recorded("read KRL", &self.krl_target(), self.read_back_krl())
            .await?;
        let listed: HashSet<u64> = krl::revoked_serials(&krl, &self.ca_blob())
            .map_err(ledger_err)?
            .into_iter()
            .collect();
        let missing: Vec<String> = live
            .iter()
            .filter(|c| !listed.contains(&c.serial))
            .map(|c| c.serial.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(ProviderError::StillPresent(format!(
                "certificates {} are unexpired and not in the KRL ({source})",
                missing.join(", ")
            )));
        }
        Ok(Evidence {
            checked_at: now,
            observation: serde_json::json!({
                "provider": self.name,
                "check": "unexpired certificate serials of the binding are listed in the KRL sshd reads",
                "krl": source,
                "serials_in_krl": live.iter().map(|c| c.serial.to_string()).collect::<Vec<_>>(),
                "serials_expired": certs.iter().filter(|c| c.valid_before + self.margin() <= now).map(|c| c.serial.to_string()).collect::<Vec<_>>(),
                "krl_margin_seconds": self.config.krl_margin.as_secs(),
            }),
        })
    }

    async fn list_owned(&self, _cx: &OpContext) -> Result<Vec<OwnedAccess>, ProviderError> {
        let certs = self.ledger.unexpired(&self.name, Utc::now()).await?;
        Ok(certs
            .into_iter()
            .filter(|c| c.revoked_at.is_none())
            .map(|c| OwnedAccess {
                native_id: c.serial.to_string(),
                binding_key: Some(c.binding_key),
            })
            .collect())
    }

    async fn remove_owned(
        &self,
        cx: &OpContext,
        owned: &OwnedAccess,
    ) -> Result<Evidence, ProviderError> {
        let serial: u64 = owned
            .native_id
            .parse()
            .map_err(|_| ProviderError::Config(format!("`{}` is not a serial", owned.native_id)))?;
        self.ledger
            .revoke_serial(&self.name, serial, Utc::now())
            .await?;
        cx.recorded("write KRL", &self.krl_target(), self.write_krl())
            .await?;
        let (krl, source) = cx
            .recorded("read KRL", &self.krl_target(), self.read_back_krl())
            .await?;
        let listed = krl::revoked_serials(&krl, &self.ca_blob()).map_err(ledger_err)?;
        if !listed.contains(&serial) {
            return Err(ProviderError::StillPresent(format!(
                "serial {serial} is not in the KRL ({source})"
            )));
        }
        Ok(Evidence {
            checked_at: Utc::now(),
            observation: serde_json::json!({"serial": owned.native_id, "krl": source, "in_krl": true}),
        })
    }

    /// Established SSH sessions live on the hosts; Brevet cannot end them from here. The KRL
    /// refuses every new login with the certificate at once.
    async fn terminate_sessions(
        &self,
        _cx: &OpContext,
        _binding: &Binding,
    ) -> Result<u64, ProviderError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use brevet_core::{PrincipalId, ResourceId};
    use ssh_key::PrivateKey;

    use super::*;
    use crate::testing::MemoryLedger;

    fn provider(margin: Duration) -> (SshProvider, Arc<MemoryLedger>) {
        let ca = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        let profile = ProfileName::parse("ssh.login").unwrap();
        let config = SshConfig {
            ca_key_file: "unused".into(),
            krl_file: None,
            backdate: Duration::from_secs(60),
            krl_margin: margin,
            profiles: BTreeMap::from([(
                profile,
                SshProfile {
                    principals: vec!["ops".into()],
                    permit_pty: true,
                    port_forwarding: false,
                    agent_forwarding: false,
                    x11_forwarding: false,
                    force_command: None,
                    source_address: None,
                },
            )]),
            resources: BTreeMap::from([(
                "box".to_string(),
                SshHost {
                    host: "127.0.0.1".into(),
                    port: 22,
                },
            )]),
        };
        let ledger = Arc::new(MemoryLedger::default());
        (SshProvider::new("ssh", config, ca, ledger.clone()), ledger)
    }

    fn binding() -> Binding {
        Binding {
            principal: PrincipalId::parse("dave").unwrap(),
            resource: ResourceId::parse("ssh:box").unwrap(),
            profile: ProfileName::parse("ssh.login").unwrap(),
        }
    }

    fn input() -> CredentialInput {
        let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
        CredentialInput {
            grant_id: "g1".into(),
            public_key: Some(key.public_key().to_openssh().unwrap()),
        }
    }

    async fn krl_serials(p: &SshProvider) -> Vec<u64> {
        krl::revoked_serials(&p.krl().await.unwrap(), &p.ca_blob()).unwrap()
    }

    fn serial_of(c: &Credential) -> u64 {
        c.details["serial"].as_str().unwrap().parse().unwrap()
    }

    /// Issue #9 item 11 (review finding 14): on 879dbb0 every re-issue minted another
    /// certificate valid until the grant's end and left the earlier ones valid, although the
    /// trait says earlier credentials stop working.
    #[tokio::test]
    async fn a_reissued_certificate_revokes_the_earlier_ones() {
        let (p, _) = provider(Duration::from_secs(600));
        let expires = Utc::now() + chrono::Duration::hours(1);
        let first = p
            .issue_credentials(&crate::OpContext::other(), &binding(), expires, &input())
            .await
            .unwrap();
        assert!(krl_serials(&p).await.is_empty());
        let second = p
            .issue_credentials(&crate::OpContext::other(), &binding(), expires, &input())
            .await
            .unwrap();
        assert_eq!(krl_serials(&p).await, vec![serial_of(&first)]);
        assert_eq!(
            second.details["superseded_serials"],
            serde_json::json!([serial_of(&first).to_string()])
        );
        // The served copy is rebuilt on the change, not left stale for its cache time.
        let served = krl::revoked_serials(&p.served_krl().await.unwrap(), &p.ca_blob()).unwrap();
        assert_eq!(served, vec![serial_of(&first)]);
    }

    /// Issue #9 item 11 (review finding 14): on 879dbb0 a revoked serial left the KRL the instant
    /// its certificate expired by Brevet's clock, so a host whose clock lags accepted it again.
    #[tokio::test]
    async fn revoked_serials_stay_in_the_krl_for_the_skew_margin() {
        for (margin, listed) in [(Duration::from_secs(600), true), (Duration::ZERO, false)] {
            let (p, ledger) = provider(margin);
            let expires = Utc::now() + chrono::Duration::hours(1);
            let c = p
                .issue_credentials(&crate::OpContext::other(), &binding(), expires, &input())
                .await
                .unwrap();
            p.revoke(&crate::OpContext::other(), &binding())
                .await
                .unwrap();
            // Its validity ended a minute ago (by Brevet's clock).
            for cert in ledger.records().iter_mut() {
                cert.valid_before = Utc::now() - chrono::Duration::minutes(1);
            }
            let serials = krl_serials(&p).await;
            assert_eq!(
                serials.contains(&serial_of(&c)),
                listed,
                "margin {margin:?}: {serials:?}"
            );
        }
    }
}
