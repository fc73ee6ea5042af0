//! A requester's OpenSSH public key line, as `SshProvider::parse_public_key` reads and vets it
//! (key types, RSA size, not the CA's own key), and, for a key it accepts, a certificate issued
//! for it (`issue_credentials`), which must parse back and certify that same key.
#![no_main]

use std::{collections::BTreeMap, sync::Arc, sync::OnceLock, time::Duration};

use brevet_core::{Binding, PrincipalId, ProfileName, ResourceId};
use brevet_providers::ssh::{SshConfig, SshHost, SshProfile, SshProvider};
use brevet_providers::testing::MemoryLedger;
use brevet_providers::{CredentialInput, OpContext, Provider};
use libfuzzer_sys::fuzz_target;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{Certificate, PrivateKey};

struct Fixture {
    provider: SshProvider,
    ledger: Arc<MemoryLedger>,
    runtime: tokio::runtime::Runtime,
    binding: Binding,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = PrivateKey::new(
            KeypairData::Ed25519(Ed25519Keypair::from_seed(&[7; 32])),
            "fuzz-ca",
        )
        .unwrap();
        let profile = ProfileName::parse("ssh.login").unwrap();
        let config = SshConfig {
            ca_key_file: "unused".into(),
            krl_file: None,
            backdate: Duration::from_secs(60),
            krl_margin: Duration::from_secs(300),
            profiles: BTreeMap::from([(
                profile.clone(),
                SshProfile {
                    principals: vec!["ops".into()],
                    permit_pty: true,
                    port_forwarding: false,
                    agent_forwarding: false,
                    x11_forwarding: false,
                    force_command: Some("/usr/bin/true".into()),
                    source_address: Some("10.0.0.0/8".into()),
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
        Fixture {
            provider: SshProvider::new("ssh", config, ca, ledger.clone()),
            ledger,
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            binding: Binding {
                principal: PrincipalId::parse("dave").unwrap(),
                resource: ResourceId::parse("ssh:box").unwrap(),
                profile,
            },
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    let Ok(key) = f.provider.parse_public_key(line) else {
        return;
    };
    let input = CredentialInput {
        grant_id: "g1".into(),
        public_key: Some(line.to_owned()),
    };
    let expires_at = chrono::Utc::now() + chrono::Duration::hours(1);
    let issued = f.runtime.block_on(f.provider.issue_credentials(
        &OpContext::other(),
        &f.binding,
        expires_at,
        &input,
    ));
    // The ledger only keeps what the KRL needs; nothing here is revoked, so start afresh.
    f.ledger.records().clear();
    let credential = issued.expect("an accepted key gets a certificate");
    let cert = Certificate::from_openssh(credential.secret.expose())
        .expect("the issued certificate parses");
    assert_eq!(
        cert.public_key(),
        key.key_data(),
        "the certificate is for the key given"
    );
});
