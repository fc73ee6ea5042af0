//! Signed checkpoints: the chain's head (`seq`, `hash`) signed with a key that is not in the
//! database, so that someone who can write to the database cannot shorten or rewrite the log
//! behind a checkpoint without it being noticed.
//!
//! The signature is Ed25519 rather than an HMAC: checking an HMAC needs the same secret that
//! makes one, so every auditor, SIEM or webhook receiver that checks checkpoints could also forge
//! them. With Ed25519 they need only the public key, and only the Brevet server holds the private
//! one.

use std::{fmt, str::FromStr};

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::verify::Anchor;

/// Domain separation: a checkpoint signature can never be mistaken for a signature over
/// anything else made with the same key.
const CONTEXT: &str = "brevet-audit-checkpoint-v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("{what} is not an Ed25519 {kind}: it must be 64 hex characters{hint}")]
    BadKey {
        what: String,
        kind: &'static str,
        hint: &'static str,
    },
    #[error("the checkpoint for event {seq} was signed by key {signed_by}, not by the expected key {expected}")]
    OtherKey {
        seq: i64,
        signed_by: String,
        expected: String,
    },
    #[error("the checkpoint for event {seq} has an invalid signature: it was not made by key {key} (forged or altered checkpoint)")]
    BadSignature { seq: i64, key: String },
}

/// The private half, held by the server only. `Debug` shows the public key, never the secret.
pub struct CheckpointKey(SigningKey);

impl CheckpointKey {
    /// From 32 random bytes (the caller supplies randomness: this crate does no I/O).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// From its text form: the 32-byte seed in hex (`openssl rand -hex 32` makes one).
    pub fn from_hex(text: &str, what: &str) -> Result<Self, CheckpointError> {
        let seed = decode32(text).ok_or_else(|| CheckpointError::BadKey {
            what: what.to_owned(),
            kind: "private key",
            hint: " (make one with `openssl rand -hex 32`)",
        })?;
        Ok(Self::from_seed(seed))
    }

    /// The text form written to a generated key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `hash` as the chain's state at event `seq`.
    pub fn sign(&self, seq: i64, hash: &str, at: DateTime<Utc>) -> Checkpoint {
        let signed_at = at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let signature = self.0.sign(&message(seq, hash, &signed_at));
        Checkpoint {
            seq,
            hash: hash.to_owned(),
            signed_at,
            public_key: self.public_key().to_string(),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey(public {})", self.public_key())
    }
}

/// The public half, which verifiers pin. Written as 64 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn parse(text: &str, what: &str) -> Result<Self, CheckpointError> {
        let bad = || CheckpointError::BadKey {
            what: what.to_owned(),
            kind: "public key",
            hint: " (`brevet audit checkpoint` prints the server's)",
        };
        let bytes = decode32(text).ok_or_else(bad)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| bad())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl FromStr for PublicKey {
    type Err = CheckpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s, "the public key")
    }
}

fn decode32(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}

fn message(seq: i64, hash: &str, signed_at: &str) -> Vec<u8> {
    format!("{CONTEXT}\n{seq}\n{hash}\n{signed_at}").into_bytes()
}

/// A signed statement "the audit log's event `seq` has hash `hash`", as published to the log
/// output, to webhooks (`audit.checkpoint`) and at `GET /v1/audit/checkpoint`. Unknown fields are
/// ignored when reading one, so a webhook body can be checked as it was received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// RFC 3339 UTC, microseconds; signed as this exact text.
    pub signed_at: String,
    /// The signer's public key (hex), to tell keys apart. Not trusted: verify against a key you
    /// pinned.
    pub public_key: String,
    /// Ed25519 signature (hex) over `brevet-audit-checkpoint-v1\n{seq}\n{hash}\n{signed_at}`.
    pub signature: String,
}

impl Checkpoint {
    /// Checks the signature against `key`.
    pub fn verify(&self, key: &PublicKey) -> Result<(), CheckpointError> {
        let expected = key.to_string();
        if !self.public_key.eq_ignore_ascii_case(&expected) {
            return Err(CheckpointError::OtherKey {
                seq: self.seq,
                signed_by: self.public_key.clone(),
                expected,
            });
        }
        let bad = || CheckpointError::BadSignature {
            seq: self.seq,
            key: expected.clone(),
        };
        let bytes = hex::decode(&self.signature).map_err(|_| bad())?;
        let signature = Signature::from_slice(&bytes).map_err(|_| bad())?;
        key.0
            .verify_strict(&message(self.seq, &self.hash, &self.signed_at), &signature)
            .map_err(|_| bad())
    }

    /// What a verifier holds the chain to: event `seq` must exist and have `hash`.
    pub fn anchor(&self) -> Anchor {
        Anchor {
            seq: self.seq,
            hash: self.hash.clone(),
            source: format!("the checkpoint signed at {}", self.signed_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CheckpointKey {
        CheckpointKey::from_seed([n; 32])
    }

    #[test]
    fn a_checkpoint_verifies_with_its_key_only() {
        let k = key(1);
        let cp = k.sign(7, &"ab".repeat(32), Utc::now());
        cp.verify(&k.public_key()).unwrap();
        assert!(matches!(
            cp.verify(&key(2).public_key()),
            Err(CheckpointError::OtherKey { .. })
        ));
        let text = serde_json::to_string(&cp).unwrap();
        let back: Checkpoint = serde_json::from_str(&text).unwrap();
        back.verify(&k.public_key()).unwrap();
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let k = key(1);
        let cp = k.sign(7, &"ab".repeat(32), Utc::now());
        let pk = k.public_key();
        let mut seq = cp.clone();
        seq.seq = 6;
        let mut hash = cp.clone();
        hash.hash = "cd".repeat(32);
        let mut at = cp.clone();
        at.signed_at = "2020-01-01T00:00:00.000000Z".into();
        let mut sig = cp.clone();
        sig.signature = "00".repeat(64);
        let mut junk = cp.clone();
        junk.signature = "not hex".into();
        // Re-labelled with another key's public key: still must be that key's signature.
        let mut relabelled = key(2).sign(7, &cp.hash, Utc::now());
        relabelled.public_key = cp.public_key.clone();
        for bad in [seq, hash, at, sig, junk, relabelled] {
            assert!(
                matches!(bad.verify(&pk), Err(CheckpointError::BadSignature { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_parse_from_hex_and_never_print_the_secret() {
        let k = CheckpointKey::from_hex(&"11".repeat(32), "audit.signing_key").unwrap();
        assert_eq!(k.to_hex(), "11".repeat(32));
        assert!(!format!("{k:?}").contains(&"11".repeat(32)));
        let e = CheckpointKey::from_hex("short", "audit.signing_key").unwrap_err();
        assert!(e.to_string().contains("64 hex characters"), "{e}");
        let pk = k.public_key().to_string();
        assert_eq!(
            PublicKey::parse(&pk, "--public-key").unwrap(),
            k.public_key()
        );
        assert!(PublicKey::parse("zz", "--public-key").is_err());
    }
}
