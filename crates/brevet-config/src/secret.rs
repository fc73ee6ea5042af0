//! Secrets in the config: referenced, never written in the file.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{field, ConfigError};

/// Secret text whose `Debug` and `Display` never show the value. Reading it takes an explicit
/// call to [`SecretText::expose`], which is easy to find in review.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    pub fn new(s: String) -> Self {
        Self(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(***)")
    }
}

impl fmt::Display for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from. Secrets never sit in the config file itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretRef {
    Env {
        env: String,
    },
    File {
        file: PathBuf,
    },
    /// Allowed only for values that contain no secret (e.g. a URL without a password).
    Plain(String),
}

impl SecretRef {
    /// The secret's value; `name` is the field's full path, for the error.
    pub fn resolve(&self, name: &str, base: &Path) -> Result<SecretText, ConfigError> {
        match self {
            SecretRef::Env { env } => std::env::var(env).map(SecretText::new).map_err(|_| {
                field(name, format!("environment variable `{env}` is not set; export it, or use {{ file = \"PATH\" }}"))
            }),
            SecretRef::File { file } => {
                let path = base.join(file);
                check_private(&path).map_err(|m| field(name, m))?;
                std::fs::read_to_string(&path)
                    .map(|s| SecretText::new(s.trim().to_owned()))
                    .map_err(|e| field(name, format!("cannot read secret file {}: {e}", path.display())))
            }
            SecretRef::Plain(s) => {
                if url_has_password(s) {
                    return Err(field(
                        name,
                        "contains a password; keep secrets out of the config file with { env = \"VAR\" } or { file = \"PATH\" }",
                    ));
                }
                Ok(SecretText::new(s.clone()))
            }
        }
    }
}

fn url_has_password(s: &str) -> bool {
    let Some((_, rest)) = s.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || s.contains("password=")
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "secret file {} is readable by group or others; run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = SecretText::new("hunter2".into());
        assert!(!format!("{s:?}{s}").contains("hunter2"));
    }

    #[test]
    fn plain_passwords_and_loose_files_are_refused_naming_the_field() {
        let e = SecretRef::Plain("postgres://u:pw@db/x".into())
            .resolve("providers.pg.admin_url", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("providers.pg.admin_url") && e.contains("password"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = SecretRef::File { file: file.clone() }
                .resolve("f", dir.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }
}
