//! `[providers.NAME]` with `kind = "postgres"`, and its resources' tables: parsed here, with
//! errors named by their full path.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use brevet_config::{field, ConfigError, ProviderTables, SecretRef};
use brevet_core::ProfileName;
use serde::Deserialize;

use super::{OnRevokeObjects, PgResource, PostgresConfig, PostgresProvider, Privilege};
use crate::{
    registry::{BuildContext, ProviderKind, ProviderSetup},
    Provider, ProviderError,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    admin_url: SecretRef,
    #[serde(default = "prefix")]
    role_prefix: String,
    connect_host: Option<String>,
    connect_port: Option<u16>,
    #[serde(default)]
    profiles: BTreeMap<String, Privilege>,
    #[serde(default = "limit")]
    connection_limit: i32,
    #[serde(default)]
    on_revoke_objects: OnRevokeObjects,
    inert_owner: Option<String>,
}

fn prefix() -> String {
    "brevet_".into()
}
fn limit() -> i32 {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    database: String,
    #[serde(default = "public")]
    schemas: Vec<String>,
}

fn public() -> Vec<String> {
    vec!["public".into()]
}

/// Parses and checks one instance's tables.
pub fn parse(t: &ProviderTables) -> Result<PostgresConfig, ConfigError> {
    let raw: Raw = t.parse()?;
    let ok_prefix = raw.role_prefix.len() >= 3
        && raw.role_prefix.len() <= 30
        && raw
            .role_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok_prefix {
        return Err(field(
            t.at("role_prefix"),
            "use 3-30 lowercase letters, digits or _ (e.g. \"brevet_\")",
        ));
    }
    let mut profiles = PostgresConfig::default_profiles();
    if !raw.profiles.is_empty() {
        profiles.clear();
        for (p, v) in raw.profiles {
            let pn = ProfileName::parse(&p)
                .map_err(|e| field(t.at(&format!("profiles.\"{p}\"")), e.to_string()))?;
            profiles.insert(pn, v);
        }
    }
    let resources = t
        .parse_resources::<RawResource>()?
        .into_iter()
        .map(|(id, r)| {
            (
                id,
                PgResource {
                    database: r.database,
                    schemas: r.schemas,
                },
            )
        })
        .collect();
    Ok(PostgresConfig {
        admin_url: raw.admin_url.resolve(&t.at("admin_url"), &t.base)?,
        role_prefix: raw.role_prefix,
        connect_host: raw.connect_host,
        connect_port: raw.connect_port,
        profiles,
        resources,
        connection_limit: raw.connection_limit,
        on_revoke_objects: raw.on_revoke_objects,
        inert_owner: raw.inert_owner,
    })
}

/// `kind = "postgres"`.
pub struct Kind;

#[derive(Debug)]
struct Setup(PostgresConfig);

impl ProviderKind for Kind {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn parse(&self, tables: &ProviderTables) -> Result<Arc<dyn ProviderSetup>, ConfigError> {
        let config = parse(tables)?;
        // The checks that need the whole config (the prefix against the admin login) run now,
        // at load, not when the server starts.
        PostgresProvider::new(&tables.name, config.clone())
            .map_err(|e| field(tables.at("role_prefix"), e.to_string()))?;
        Ok(Arc::new(Setup(config)))
    }
}

#[async_trait]
impl ProviderSetup for Setup {
    async fn build(&self, cx: BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(PostgresProvider::new(&cx.name, self.0.clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(provider: &str, resources: &[(&str, &str)]) -> ProviderTables {
        ProviderTables::from_toml("pg", provider, resources).unwrap()
    }

    #[test]
    fn a_valid_instance_parses_with_defaults() {
        let c = parse(&tables(
            "admin_url = \"postgres://brevet@db/postgres\"",
            &[("orders", "database = \"orders\"")],
        ))
        .unwrap();
        assert_eq!(c.role_prefix, "brevet_");
        assert_eq!(c.resources["orders"].schemas, vec!["public"]);
        assert_eq!(c.profiles.len(), 3);
    }

    #[test]
    fn errors_name_the_field_by_its_full_path() {
        for (provider, resources, at, says) in [
            (
                "admin_url = \"postgres://brevet@db/postgres\"\nrole_prefix = \"X\"",
                vec![],
                "providers.pg.role_prefix",
                "3-30 lowercase",
            ),
            (
                "admin_url = \"postgres://brevet:pw@db/postgres\"",
                vec![],
                "providers.pg.admin_url",
                "contains a password",
            ),
            (
                "admin_url = \"postgres://brevet@db/postgres\"\nprofiles = { \"db.read\" = \"everything\" }",
                vec![],
                "providers.pg.profiles.\"db.read\"",
                "unknown variant",
            ),
            (
                "admin_url = \"postgres://brevet@db/postgres\"\nadmin_urll = 1",
                vec![],
                "providers.pg.admin_urll",
                "unknown field `admin_urll`",
            ),
            (
                "admin_url = \"postgres://brevet@db/postgres\"",
                vec![("orders", "database = \"orders\"\nschema = [\"x\"]")],
                "resources.\"pg:orders\".schema",
                "unknown field `schema`",
            ),
        ] {
            let e = parse(&tables(provider, &resources)).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`{at}`")) && e.contains(says),
                "{at}: {e}"
            );
        }
    }

    #[test]
    fn a_prefix_covering_the_admin_login_is_refused_at_load() {
        let e = Kind
            .parse(&tables(
                "admin_url = \"postgres://brevet_admin@db/postgres\"",
                &[],
            ))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("providers.pg.role_prefix") && e.contains("brevet_admin"),
            "{e}"
        );
    }
}
