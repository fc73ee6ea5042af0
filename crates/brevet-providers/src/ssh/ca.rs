use std::{io::Write, path::Path};

use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::ProviderError;

/// Loads the CA key, or creates an Ed25519 one (mode 0600) if the file does not exist. A key file
/// readable by group or others is refused: whoever reads it can mint access to every host.
pub fn load_or_create_ca(path: &Path) -> Result<(PrivateKey, bool), ProviderError> {
    let cfg = |m: String| ProviderError::Config(m);
    if path.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| cfg(format!("{}: {e}", path.display())))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(cfg(format!(
                    "SSH CA key {} is readable by group or others (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )));
            }
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| cfg(format!("cannot read SSH CA key {}: {e}", path.display())))?;
        let key = PrivateKey::from_openssh(text.trim()).map_err(|e| {
            cfg(format!(
                "SSH CA key {} is not an unencrypted OpenSSH private key: {e}",
                path.display()
            ))
        })?;
        return Ok((key, false));
    }
    let key = PrivateKey::random(&mut rand::rngs::OsRng, Algorithm::Ed25519)
        .map_err(|e| cfg(format!("cannot generate the SSH CA key: {e}")))?;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| cfg(e.to_string()))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| cfg(format!("cannot create SSH CA key {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(|e| cfg(e.to_string()))?;
    Ok((key, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_then_loads_and_refuses_loose_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca");
        let (k1, created) = load_or_create_ca(&p).unwrap();
        assert!(created);
        let (k2, created) = load_or_create_ca(&p).unwrap();
        assert!(!created);
        assert_eq!(k1.public_key(), k2.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_or_create_ca(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }
}
