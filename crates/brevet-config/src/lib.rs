//! What every part of Brevet's one TOML config shares, so each part — the server's sections and
//! each provider's folder — parses its own tables the same way:
//! - [`ConfigError`]: every error names the field by its full dotted path and says how to fix it;
//! - [`parse_toml`] / [`parse_table`]: serde with the path of the field an error is about;
//! - [`SecretRef`]: `{ env = "VAR" }` / `{ file = "PATH" }` (0600 checked); secrets never sit in
//!   the file;
//! - [`ConfigDuration`], [`DurationOrZero`], [`DurationOrOff`]: durations as text, zero refused
//!   unless the field says it makes sense;
//! - [`ProviderTables`]: the tables of one provider instance, generic keys removed, for its
//!   folder to parse; [`RevokeRate`]: `revoke_rate`/`revoke_burst`, one of those generic keys.
//!
//! No I/O beyond reading a secret file; no knowledge of any provider.

mod duration;
mod rate;
mod secret;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

pub use duration::{duration_literal, ConfigDuration, DurationOrOff, DurationOrZero};
pub use rate::RevokeRate;
pub use secret::{SecretRef, SecretText};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Syntax { path: String, message: String },
    #[error("config field `{field}`: {message}")]
    Field { field: String, message: String },
}

/// An error about one field, named by its full dotted path.
pub fn field(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// `prefix` then the path as TOML writes keys: bare where it can, quoted where a key holds a
/// dot or other characters (`profiles."aws.read".actions[2]`).
fn joined(prefix: &str, path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = prefix.to_owned();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out += &format!("[{index}]"),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out += key;
                } else {
                    out += &format!("\"{key}\"");
                }
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// Parses TOML text into `T`; an error names the dotted path of the field it is about
/// (`prefix.key.sub`), beside TOML's own line, column and snippet. An error about the text as a
/// whole has an empty field name.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
        ConfigError::Field {
            field: joined(prefix, e.path()),
            message: e.into_inner().to_string(),
        }
    })
}

/// Parses an already-read table into `T`; an error names the full dotted path under `prefix`
/// (e.g. `providers.aws.profiles."aws.read".actions[2]`).
pub fn parse_table<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        ConfigError::Field {
            field: joined(prefix, e.path()),
            message: e.into_inner().to_string(),
        }
    })
}

/// One provider instance's part of the config: its `[providers.NAME]` table without `kind`,
/// `revoke_rate` and `revoke_burst`, and the tables of its resources (`[resources."NAME:ID"]`,
/// by ID) without `tags` — the keys the server reads for every provider — for the provider's
/// own folder to parse.
#[derive(Debug, Clone)]
pub struct ProviderTables {
    pub name: String,
    pub table: toml::Table,
    pub resources: BTreeMap<String, toml::Table>,
    /// The config file's directory: relative paths in the tables are relative to it.
    pub base: PathBuf,
    /// The permission catalog and the deployment's neutral access profiles, for providers that
    /// compile profiles through them (`None`: the built-in catalog, no profiles).
    pub access: Option<std::sync::Arc<brevet_catalog::Language>>,
}

impl ProviderTables {
    /// The catalog and profiles to check and compile against.
    pub fn language(&self) -> Result<std::sync::Arc<brevet_catalog::Language>, ConfigError> {
        match &self.access {
            Some(l) => Ok(l.clone()),
            None => brevet_catalog::Language::builtin()
                .map(std::sync::Arc::new)
                .map_err(|e| field("catalog", e.to_string())),
        }
    }

    /// From TOML text: the provider's table and each resource's (by ID), relative paths taken
    /// from the current directory — for a provider's config tests and tools.
    pub fn from_toml(
        name: &str,
        table: &str,
        resources: &[(&str, &str)],
    ) -> Result<Self, toml::de::Error> {
        Ok(Self {
            name: name.to_owned(),
            table: toml::from_str(table)?,
            resources: resources
                .iter()
                .map(|(id, t)| Ok((id.to_string(), toml::from_str(t)?)))
                .collect::<Result<_, toml::de::Error>>()?,
            base: ".".into(),
            access: None,
        })
    }

    /// `providers.NAME.<field>`.
    pub fn at(&self, field: &str) -> String {
        format!("providers.{}.{field}", self.name)
    }

    /// `resources."NAME:ID"`.
    pub fn resource_at(&self, id: &str) -> String {
        format!("resources.\"{}:{id}\"", self.name)
    }

    /// The provider's table as `T` (`deny_unknown_fields` types name the stray key).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        parse_table(&self.table, &format!("providers.{}", self.name))
    }

    /// Each resource's table as `T`, by resource id.
    pub fn parse_resources<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<BTreeMap<String, T>, ConfigError> {
        self.resources
            .iter()
            .map(|(id, t)| Ok((id.clone(), parse_table(t, &self.resource_at(id))?)))
            .collect()
    }

    /// A path from the config, relative to the config file's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        self.base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Profile {
        actions: Vec<ConfigDuration>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        profiles: BTreeMap<String, Profile>,
    }

    #[test]
    fn errors_carry_the_full_dotted_path() {
        let t: toml::Table =
            toml::from_str("[profiles.\"aws.read\"]\nactions = [\"1s\", \"2s\", \"soon\"]")
                .unwrap();
        let e = parse_table::<Raw>(&t, "providers.aws")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`providers.aws.profiles.\"aws.read\".actions[2]`") && e.contains("`soon`"),
            "{e}"
        );
        let t: toml::Table = toml::from_str("profile = 1").unwrap();
        let e = parse_table::<Raw>(&t, "providers.aws")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `profile`"), "{e}");
    }
}
