use std::collections::BTreeMap;

use brevet_core::ProfileName;

use crate::SecretText;

/// Privilege levels a PostgreSQL profile maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    /// `SELECT` on tables and sequences of the schemas.
    Read,
    /// Read plus `INSERT`, `UPDATE`, `DELETE`, and sequence `USAGE`.
    Write,
    /// All privileges on tables and sequences, and `CREATE` on the schemas.
    Owner,
}

/// What revocation does with objects the grant role made (tables, functions, triggers …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRevokeObjects {
    /// `DROP OWNED … CASCADE` in every database where the role owns something: nothing the
    /// grantee wrote survives the grant, so nothing of theirs can run later as someone else.
    #[default]
    Drop,
    /// Keep the objects, quarantined: owned by the inert `NOLOGIN` role, every privilege on them
    /// revoked (PUBLIC included), `SECURITY DEFINER` turned off, and trigger functions dropped
    /// with their triggers. For grantees whose tables must outlive the grant.
    KeepInert,
}

/// One database Brevet can grant access to.
#[derive(Debug, Clone)]
pub struct PgResource {
    pub database: String,
    pub schemas: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// URL of an administrative login on the target cluster (needs CREATEROLE and the right to
    /// grant on the resources' schemas; it does not need to be a superuser: docs/postgres.md).
    pub admin_url: SecretText,
    /// Prefix of every role Brevet creates; roles with it are Brevet's to reconcile.
    pub role_prefix: String,
    /// Host and port written into connection strings for requesters (default: the admin URL's).
    pub connect_host: Option<String>,
    pub connect_port: Option<u16>,
    pub profiles: BTreeMap<ProfileName, Privilege>,
    pub resources: BTreeMap<String, PgResource>,
    /// `CONNECTION LIMIT` of each granted role.
    pub connection_limit: i32,
    /// What revocation does with objects the grant role made.
    pub on_revoke_objects: OnRevokeObjects,
    /// The `NOLOGIN` role that receives kept objects under `keep_inert` (default
    /// `<role_prefix>inert`); Brevet creates it if missing and never reconciles it.
    pub inert_owner: Option<String>,
}

impl PostgresConfig {
    /// The built-in mapping of the provider-neutral database profiles.
    pub fn default_profiles() -> BTreeMap<ProfileName, Privilege> {
        [
            ("db.read", Privilege::Read),
            ("db.write", Privilege::Write),
            ("db.owner", Privilege::Owner),
        ]
        .into_iter()
        .filter_map(|(p, v)| ProfileName::parse(p).ok().map(|p| (p, v)))
        .collect()
    }
}

/// Quotes an SQL identifier (doubling embedded quotes), so names from the config are never code.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
