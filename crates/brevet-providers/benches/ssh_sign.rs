//! SSH certificates signed per second: the full `issue_credentials` path (parse and vet the
//! requester's key, build and sign an Ed25519 user certificate, record it in the ledger), with an
//! in-memory ledger so the number is the signing cost. Also: encoding a KRL of 10,000 serials.
//! `cargo bench -p brevet-providers --bench ssh_sign`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use brevet_core::{Binding, PrincipalId, ProfileName, ResourceId};
use brevet_providers::{
    ssh::{krl, CertificateLedger, IssuedCertificate, SshConfig, SshHost, SshProfile, SshProvider},
    CredentialInput, Provider, ProviderError,
};
use chrono::{DateTime, Utc};
use ssh_key::{Algorithm, PrivateKey};

#[derive(Default)]
struct MemoryLedger(Mutex<Vec<IssuedCertificate>>);

#[async_trait]
impl CertificateLedger for MemoryLedger {
    async fn record(&self, c: &IssuedCertificate) -> Result<(), ProviderError> {
        self.0.lock().unwrap().push(c.clone());
        Ok(())
    }
    async fn revoke_binding(
        &self,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn revoke_serial(&self, _: &str, _: u64, _: DateTime<Utc>) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn unexpired(
        &self,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<Vec<IssuedCertificate>, ProviderError> {
        Ok(vec![])
    }
    async fn of_binding(&self, _: &str, _: &str) -> Result<Vec<IssuedCertificate>, ProviderError> {
        Ok(vec![])
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
    let profile = ProfileName::parse("ssh.login").unwrap();
    let config = SshConfig {
        ca_key_file: "unused".into(),
        krl_file: None,
        backdate: Duration::from_secs(60),
        krl_margin: Duration::from_secs(600),
        profiles: BTreeMap::from([(
            profile.clone(),
            SshProfile {
                principals: vec!["deploy".into()],
                permit_pty: true,
                port_forwarding: false,
                agent_forwarding: false,
                x11_forwarding: false,
                force_command: None,
                source_address: None,
            },
        )]),
        resources: BTreeMap::from([(
            "web-1".to_string(),
            SshHost {
                host: "10.0.0.1".into(),
                port: 22,
            },
        )]),
    };
    let provider = SshProvider::new("ssh", config, ca, Arc::new(MemoryLedger::default()));
    let user_key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519).unwrap();
    let input = CredentialInput {
        grant_id: "bench".into(),
        public_key: Some(user_key.public_key().to_openssh().unwrap()),
    };
    let binding = Binding {
        principal: PrincipalId::parse("alice").unwrap(),
        resource: ResourceId::parse("ssh:web-1").unwrap(),
        profile,
    };
    let expires = Utc::now() + chrono::Duration::hours(1);
    rt.block_on(async {
        for _ in 0..50 {
            provider.issue_credentials(&brevet_providers::OpContext::other(), &binding, expires, &input).await.unwrap();
        }
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs(3) {
            provider.issue_credentials(&brevet_providers::OpContext::other(), &binding, expires, &input).await.unwrap();
            n += 1;
        }
        let secs = t.elapsed().as_secs_f64();
        println!("ssh certificates signed: {n} in {secs:.2} s = {:.0} per second ({:.1} µs each, one core)", n as f64 / secs, secs * 1e6 / n as f64);
    });
    let serials: Vec<u64> = (1..=10_000).collect();
    let t = Instant::now();
    let bytes = krl::encode(b"ca-key-blob", &serials, 1, 1, "bench");
    println!(
        "KRL with 10,000 serials: {} bytes, encoded in {:.2} ms",
        bytes.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
}
