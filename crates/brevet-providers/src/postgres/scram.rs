//! SCRAM-SHA-256 password verifiers (RFC 5802 / RFC 7677), computed here so that the plaintext
//! password is never sent to the target server, where `log_statement` could record it. This is what
//! `psql`'s `\password` does; no maintained crate exposes just the verifier, hence these few lines.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const ITERATIONS: u32 = 4096;

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// The verifier PostgreSQL stores in `pg_authid.rolpassword` for `password` with `salt`.
pub fn verifier(password: &str, salt: &[u8; 16]) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, ITERATIONS, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_has_postgres_shape() {
        let v = verifier("pencil", &[7u8; 16]);
        assert!(v.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(v.matches('$').count(), 2);
        assert!(!v.contains("pencil"));
        assert_ne!(
            v,
            verifier("pencil", &[8u8; 16]),
            "salt must change the verifier"
        );
    }
}
