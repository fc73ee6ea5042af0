//! The one TOML config file: typed, loaded once, validated at start. Every error names the field
//! and says how to fix it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use brevet_core::{GrantDuration, PrincipalId, ProviderName, ResourceId, Role};
use brevet_providers::registry::{self, ProviderSetup};
use serde::Deserialize;

use brevet_config::{duration_literal, ConfigDuration, DurationOrOff, DurationOrZero};
pub use brevet_config::{field, parse_toml, ConfigError, RevokeRate, SecretRef, SecretText};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    store: RawStore,
    policy: RawPolicy,
    #[serde(default)]
    principals: Vec<RawPrincipal>,
    #[serde(default)]
    providers: BTreeMap<String, toml::Table>,
    #[serde(default)]
    resources: BTreeMap<String, toml::Table>,
    #[serde(default)]
    notify: crate::notify::RawNotify,
    #[serde(default)]
    oidc: Option<RawOidc>,
    #[serde(default)]
    audit: crate::audit_anchor::RawAudit,
    #[serde(default)]
    catalog: crate::access::RawCatalog,
    /// Neutral access profiles, compiled per cloud through the catalog.
    #[serde(default)]
    access: BTreeMap<String, brevet_catalog::profile::ProfileSpec>,
    /// IAM exports for the identity analyzer's portal pages.
    #[serde(default)]
    analyzer: crate::analyzer::RawAnalyzer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    client_secret: SecretRef,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    principal_claim: Option<String>,
    #[serde(default)]
    groups_claim: Option<String>,
    /// Role name → the groups whose members get it.
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    button: Option<String>,
    #[serde(default)]
    allowed_domains: Vec<String>,
    #[serde(default = "yes")]
    require_verified_email: bool,
}

fn yes() -> bool {
    true
}

fn parse_oidc(raw: &RawOidc, base: &Path) -> Result<crate::oidc::OidcConfig, ConfigError> {
    let issuer = raw.issuer.trim_end_matches('/').to_owned();
    let local = issuer.starts_with("http://127.0.0.1") || issuer.starts_with("http://localhost");
    if !(issuer.starts_with("https://") || local) {
        return Err(field(
            "oidc.issuer",
            format!(
                "`{}` must be an https:// URL (plain http is allowed only on localhost)",
                raw.issuer
            ),
        ));
    }
    if raw.client_id.trim().is_empty() {
        return Err(field(
            "oidc.client_id",
            "must not be empty; copy it from the identity provider's app registration",
        ));
    }
    let client_secret = raw.client_secret.resolve("oidc.client_secret", base)?;
    let mut scopes = raw
        .scopes
        .clone()
        .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let mut role_groups = BTreeMap::new();
    for (role, groups) in &raw.roles {
        let r: Role = role.parse().map_err(|e: brevet_core::CoreError| {
            field(format!("oidc.roles.{role}"), e.to_string())
        })?;
        role_groups.insert(r, groups.iter().cloned().collect());
    }
    let mut allowed_domains = BTreeSet::new();
    for d in &raw.allowed_domains {
        let d = d.trim().trim_start_matches('@').to_lowercase();
        if d.is_empty() || !d.contains('.') || d.contains(['@', '/', ' ']) {
            return Err(field(
                "oidc.allowed_domains",
                format!("`{d}` is not a domain; write it like \"example.com\""),
            ));
        }
        allowed_domains.insert(d);
    }
    Ok(crate::oidc::OidcConfig {
        issuer,
        client_id: raw.client_id.clone(),
        client_secret,
        scopes,
        principal_claim: raw
            .principal_claim
            .clone()
            .unwrap_or_else(|| "email".into()),
        groups_claim: raw.groups_claim.clone().unwrap_or_else(|| "groups".into()),
        role_groups,
        button: raw
            .button
            .clone()
            .unwrap_or_else(|| "Sign in with SSO".into()),
        allowed_domains,
        require_verified_email: raw.require_verified_email,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_approve_within")]
    approve_within: ConfigDuration,
    #[serde(default = "default_activate_within")]
    activate_within: ConfigDuration,
    #[serde(default = "default_tick")]
    tick: ConfigDuration,
    #[serde(default = "default_lease")]
    lease: ConfigDuration,
    #[serde(default = "default_reconcile")]
    reconcile_every: DurationOrOff,
    #[serde(default = "default_provider_timeout")]
    provider_timeout: ConfigDuration,
    /// The longest wait between two attempts at a failed revocation (before jitter).
    #[serde(default = "default_revoke_retry_max")]
    revoke_retry_max: ConfigDuration,
    /// The address people reach Brevet at (links in notifications, OIDC redirect URI).
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default = "default_session_ttl")]
    session_ttl: ConfigDuration,
    /// Behind a reverse proxy: the header it puts the client's address in.
    #[serde(default)]
    client_ip_header: Option<String>,
    /// Requests (and extension requests) one principal may create per minute.
    #[serde(default = "default_requests_per_minute")]
    requests_per_minute: u32,
    /// A token `/metrics` requires (`Authorization: Bearer …`); without it `/metrics` is open.
    #[serde(default)]
    metrics_token: Option<SecretRef>,
    /// API requests served at once; more wait up to `admission_wait`, then get 503.
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default = "default_admission_wait")]
    admission_wait: DurationOrZero,
}

fn default_max_in_flight() -> usize {
    64
}
fn default_admission_wait() -> DurationOrZero {
    DurationOrZero(Duration::from_millis(100))
}

fn default_requests_per_minute() -> u32 {
    60
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_approve_within() -> ConfigDuration {
    duration_literal("24h")
}
fn default_activate_within() -> ConfigDuration {
    duration_literal("8h")
}
fn default_tick() -> ConfigDuration {
    duration_literal("1s")
}
fn default_lease() -> ConfigDuration {
    duration_literal("90s")
}
fn default_reconcile() -> DurationOrOff {
    DurationOrOff(Some(Duration::from_secs(60)))
}
fn default_provider_timeout() -> ConfigDuration {
    duration_literal("20s")
}
fn default_revoke_retry_max() -> ConfigDuration {
    duration_literal("5m")
}
fn default_session_ttl() -> ConfigDuration {
    duration_literal("8h")
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            approve_within: default_approve_within(),
            activate_within: default_activate_within(),
            tick: default_tick(),
            lease: default_lease(),
            reconcile_every: default_reconcile(),
            provider_timeout: default_provider_timeout(),
            revoke_retry_max: default_revoke_retry_max(),
            public_url: None,
            session_ttl: default_session_ttl(),
            client_ip_header: None,
            requests_per_minute: default_requests_per_minute(),
            metrics_token: None,
            max_in_flight: default_max_in_flight(),
            admission_wait: default_admission_wait(),
        }
    }
}

fn parse_public_url(u: &str) -> Result<String, ConfigError> {
    let trimmed = u.trim_end_matches('/');
    let ok = (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
        && !trimmed.contains(['?', '#', ' '])
        && trimmed.split("://").nth(1).is_some_and(|h| !h.is_empty());
    if !ok {
        return Err(field(
            "server.public_url",
            format!("`{u}` is not a URL; write it like \"https://brevet.example.com\""),
        ));
    }
    Ok(trimmed.to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: SecretRef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    files: Vec<PathBuf>,
    #[serde(default)]
    default_max_duration: Option<String>,
    #[serde(default)]
    default_approvals: Option<u32>,
    #[serde(default)]
    require_reason: Option<bool>,
    #[serde(default)]
    default_max_extensions: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    id: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// Hex SHA-256 of the principal's API token (`brevet token new` prints both).
    token_sha256: Option<String>,
    /// Slack member id (`U…`) for approvals in Slack and direct messages.
    slack_user: Option<String>,
    /// Email address for notifications (approvers without Slack get pending requests by email).
    email: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub approve_within: Duration,
    pub activate_within: Duration,
    pub tick: Duration,
    pub lease: Duration,
    /// How often the reconciler runs; `None` when the config turns it off.
    pub reconcile_every: Option<Duration>,
    pub provider_timeout: Duration,
    /// How failed revocations are retried: waits of 2 s, 4 s, 8 s … capped at
    /// `server.revoke_retry_max`, plus up to 20 % jitter. A revocation whose target recovers is
    /// confirmed at most `revoke_backoff.longest()` + a tick + its calls (each bounded by
    /// `provider_timeout`) after its last failure: the retry bound.
    pub revoke_backoff: brevet_core::RevokeBackoff,
    /// Where people reach Brevet, without a trailing slash (`http://<listen>` when not set).
    pub public_url: String,
    /// How long a portal or CLI login session lasts.
    pub session_ttl: Duration,
    /// The header a reverse proxy in front puts the client's address in (`X-Forwarded-For`:
    /// its last entry); without it, the connection's peer address. Per-client limits use it.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Requests one principal may create per minute (each attempt is audited and may notify).
    pub requests_per_minute: u32,
    /// SHA-256 of the token `/metrics` requires, if one is configured.
    pub metrics_token_sha256: Option<[u8; 32]>,
    /// Admission control: API requests served at once, and how long one more may wait for a
    /// turn before it is refused with 503 and `Retry-After` (past capacity the excess is
    /// refused fast instead of queueing for minutes). Health, metrics and the kill switch are
    /// never held back.
    pub max_in_flight: usize,
    pub admission_wait: Duration,
}

impl ServerSettings {
    /// Whether cookies must carry `Secure` (the portal is served over HTTPS).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

#[derive(Debug, Clone)]
pub struct PrincipalConfig {
    pub id: PrincipalId,
    pub groups: BTreeSet<String>,
    pub roles: BTreeSet<Role>,
    pub token_sha256: Option<[u8; 32]>,
    pub slack_user: Option<String>,
    pub email: Option<String>,
}

impl PrincipalConfig {
    /// The principal as the config alone describes it.
    pub fn principal(&self) -> brevet_core::Principal {
        let mut p = brevet_core::Principal {
            id: self.id.clone(),
            groups: BTreeSet::new(),
            roles: BTreeSet::new(),
        };
        self.add_to(&mut p);
        p
    }

    /// Adds what the config says (groups, roles) to what sign-in established.
    pub fn add_to(&self, p: &mut brevet_core::Principal) {
        p.groups.extend(self.groups.iter().cloned());
        p.roles.extend(self.roles.iter().copied());
    }
}

/// One `[providers.NAME]` instance: its kind, what that kind parsed from its tables, and the
/// settings every provider takes.
#[derive(Debug, Clone)]
pub struct ConfiguredProvider {
    pub kind: &'static str,
    pub setup: std::sync::Arc<dyn ProviderSetup>,
    /// `revoke_rate` / `revoke_burst`: how fast the scheduler may revoke here (`None`: as fast
    /// as it can).
    pub revoke_rate: Option<RevokeRate>,
}

#[derive(Debug, Clone)]
pub struct ResourceConfig {
    pub id: ResourceId,
    pub kind: &'static str,
    pub tags: BTreeMap<String, String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub server: ServerSettings,
    pub store_url: SecretText,
    pub policy_files: Vec<(String, String)>,
    pub policy_defaults: brevet_policy::Defaults,
    pub principals: Vec<PrincipalConfig>,
    pub providers: BTreeMap<ProviderName, ConfiguredProvider>,
    pub resources: BTreeMap<ResourceId, ResourceConfig>,
    pub notify: crate::notify::NotifySettings,
    /// Single sign-on; without it only API tokens sign in.
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// `[audit]`: the checkpoint signing key and where checkpoints are kept.
    pub audit: crate::audit_anchor::AuditSettings,
    /// The permission catalog and the neutral access profiles.
    pub access: crate::access::AccessLanguage,
    /// `[analyzer]`: the IAM exports the portal's analyzer pages read.
    pub analyzer: crate::analyzer::AnalyzerSettings,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_kinds(text, path, registry::builtin())
    }

    /// [`Config::parse`] with the provider kinds `[providers.NAME] kind = "…"` may name given
    /// (the test harness adds one that hands out in-memory providers).
    pub fn parse_with_kinds(
        text: &str,
        path: &Path,
        kinds: Vec<Box<dyn registry::ProviderKind>>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_toml(text, "").map_err(|e| match e {
            ConfigError::Field { field, message } if field.is_empty() => ConfigError::Syntax {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let s = &raw.server;
        let mut server = ServerSettings {
            listen: s.listen.parse().map_err(|_| {
                field(
                    "server.listen",
                    format!(
                        "`{}` is not an address; write it like \"127.0.0.1:8080\"",
                        s.listen
                    ),
                )
            })?,
            approve_within: s.approve_within.0,
            activate_within: s.activate_within.0,
            tick: s.tick.0.max(Duration::from_millis(50)),
            lease: s.lease.0,
            reconcile_every: s.reconcile_every.0,
            provider_timeout: s.provider_timeout.0,
            revoke_backoff: brevet_core::RevokeBackoff {
                max: s.revoke_retry_max.0,
            },
            public_url: String::new(),
            session_ttl: s.session_ttl.0,
            client_ip_header: s
                .client_ip_header
                .as_deref()
                .map(|h| {
                    axum::http::HeaderName::from_bytes(h.trim().as_bytes()).map_err(|_| {
                        field(
                            "server.client_ip_header",
                            format!(
                                "`{h}` is not a header name; write it like \"x-forwarded-for\""
                            ),
                        )
                    })
                })
                .transpose()?,
            requests_per_minute: match s.requests_per_minute {
                0 => {
                    return Err(field(
                        "server.requests_per_minute",
                        "must be at least 1 (it bounds how many requests one principal may create per minute)",
                    ))
                }
                n => n,
            },
            metrics_token_sha256: None,
            max_in_flight: match s.max_in_flight {
                0 => {
                    return Err(field(
                        "server.max_in_flight",
                        "must be at least 1 (it is how many API requests are served at once)",
                    ))
                }
                n => n,
            },
            admission_wait: s.admission_wait.0,
        };
        if let Some(t) = &s.metrics_token {
            let token = t.resolve("server.metrics_token", &base)?;
            if token.expose().len() < 16 {
                return Err(field(
                    "server.metrics_token",
                    "is shorter than 16 characters; use a long random value (`brevet token new` makes one)",
                ));
            }
            server.metrics_token_sha256 = Some(crate::auth::hash_token(token.expose()));
        }
        server.public_url = match &s.public_url {
            Some(u) => parse_public_url(u)?,
            None => format!("http://{}", server.listen),
        };
        if server.lease < server.provider_timeout * 3 {
            return Err(field(
                "server.lease",
                format!(
                    "must be at least three times server.provider_timeout ({}): one piece of work makes up to three provider calls, and its lease must not run out while they are still allowed to run",
                    humantime::format_duration(server.provider_timeout)
                ),
            ));
        }
        let store_url = raw.store.url.resolve("store.url", &base)?;

        let mut policy_defaults = brevet_policy::Defaults::default();
        if let Some(m) = &raw.policy.default_max_duration {
            policy_defaults.max_duration = GrantDuration::parse(m)
                .map_err(|e| field("policy.default_max_duration", e.to_string()))?;
        }
        if let Some(n) = raw.policy.default_approvals {
            policy_defaults.approvals = n;
        }
        if let Some(b) = raw.policy.require_reason {
            policy_defaults.require_reason = b;
        }
        if let Some(n) = raw.policy.default_max_extensions {
            policy_defaults.max_extensions = n;
        }
        if raw.policy.files.is_empty() {
            return Err(field("policy.files", "list at least one Cedar policy file"));
        }
        let mut policy_files = Vec::new();
        for f in &raw.policy.files {
            let p = base.join(f);
            let text = std::fs::read_to_string(&p)
                .map_err(|e| field("policy.files", format!("cannot read {}: {e}", p.display())))?;
            policy_files.push((f.display().to_string(), text));
        }

        let mut principals = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, p) in raw.principals.iter().enumerate() {
            let at = |f: &str| format!("principals[{i}].{f}");
            let id = PrincipalId::parse(&p.id).map_err(|e| field(at("id"), e.to_string()))?;
            if !seen.insert(id.clone()) {
                return Err(field(
                    at("id"),
                    format!("`{id}` is listed twice; merge the entries"),
                ));
            }
            let roles = p
                .roles
                .iter()
                .map(|r| r.parse::<Role>())
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|e| field(at("roles"), e.to_string()))?;
            let token_sha256 = p
                .token_sha256
                .as_deref()
                .map(|h| {
                    hex::decode(h)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| {
                            field(
                                at("token_sha256"),
                                "must be 64 hex characters; `brevet token new` prints one",
                            )
                        })
                })
                .transpose()?;
            let (slack_user, email) =
                crate::notify::parse_contact(p.slack_user.as_deref(), p.email.as_deref(), &at)?;
            principals.push(PrincipalConfig {
                id,
                groups: p.groups.iter().cloned().collect(),
                roles,
                token_sha256,
                slack_user,
                email,
            });
        }

        // The catalog and the neutral profiles first: providers compile through them.
        let access = crate::access::AccessLanguage::load(&raw.catalog, &raw.access, &base)?;

        // Each provider's folder parses its own tables; only `kind` (which folder), the
        // revocation rate limit (the scheduler's, the same for every kind) and a resource's
        // `tags` (which Cedar sees for every provider) are read here.
        let mut providers = BTreeMap::new();
        for (name, table) in &raw.providers {
            let pname = ProviderName::parse(name)
                .map_err(|e| field(format!("providers.{name}"), e.to_string()))?;
            let mut table = table.clone();
            let kind = match table.remove("kind") {
                Some(toml::Value::String(k)) => k,
                _ => {
                    return Err(field(
                        format!("providers.{name}.kind"),
                        format!(
                            "missing; set kind = \"…\" to one of: {}",
                            kinds
                                .iter()
                                .map(|k| k.kind())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ))
                }
            };
            let revoke_rate = RevokeRate::take(&mut table, &format!("providers.{name}"))?;
            let resources = raw
                .resources
                .iter()
                .filter_map(|(id, t)| {
                    id.split_once(':').filter(|(p, _)| p == name).map(|(_, n)| {
                        let mut t = t.clone();
                        t.remove("tags");
                        (n.to_owned(), t)
                    })
                })
                .collect();
            let tables = brevet_config::ProviderTables {
                name: name.clone(),
                table,
                resources,
                base: base.clone(),
                access: Some(access.language.clone()),
            };
            let kind = registry::lookup(&kinds, &kind, &format!("providers.{name}.kind"))?;
            providers.insert(
                pname,
                ConfiguredProvider {
                    kind: kind.kind(),
                    setup: kind.parse(&tables)?,
                    revoke_rate,
                },
            );
        }

        let mut resources = BTreeMap::new();
        for (id, table) in &raw.resources {
            let rid = ResourceId::parse(id)
                .map_err(|e| field(format!("resources.\"{id}\""), e.to_string()))?;
            let Some(provider) = providers.get(&rid.provider()) else {
                return Err(field(
                    format!("resources.\"{id}\""),
                    format!(
                        "no provider `{}` is configured; add [providers.{}] or use one of: {}",
                        rid.provider(),
                        rid.provider(),
                        providers
                            .keys()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            let tags = match table.get("tags") {
                None => BTreeMap::new(),
                Some(t) => t.clone().try_into().map_err(|_| {
                    field(
                        format!("resources.\"{id}\".tags"),
                        "must be a table of strings, e.g. { env = \"prod\" }",
                    )
                })?,
            };
            let kind = provider.kind;
            resources.insert(
                rid.clone(),
                ResourceConfig {
                    id: rid,
                    kind,
                    tags,
                },
            );
        }

        let audit =
            crate::audit_anchor::AuditSettings::parse(&raw.audit, &base, store_url.expose())?;
        Ok(Self {
            analyzer: crate::analyzer::AnalyzerSettings::parse(&raw.analyzer, &base)?,
            audit,
            access,
            path: path.to_path_buf(),
            server,
            store_url,
            policy_files,
            policy_defaults,
            principals,
            providers,
            resources,
            notify: crate::notify::NotifySettings::parse(&raw.notify, &base)?,
            oidc: raw
                .oidc
                .as_ref()
                .map(|o| parse_oidc(o, &base))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.cedar"),
            "permit (principal, action, resource);",
        )
        .unwrap();
        let text =
            format!("[store]\nurl = \"sqlite://x.db\"\n[policy]\nfiles = [\"p.cedar\"]\n{extra}");
        Config::parse(&text, &dir.path().join("brevet.toml"))
    }

    #[test]
    fn minimal_config_loads() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    }

    /// Issue #9 item 9: on 879dbb0 `reconcile_every = "0s"` was accepted and panicked the
    /// scheduler task; every zero duration is refused now, and "off" is the explicit way out.
    #[test]
    fn durations_are_never_zero_and_the_reconciler_can_be_off() {
        for field in [
            "reconcile_every",
            "tick",
            "lease",
            "provider_timeout",
            "revoke_retry_max",
            "session_ttl",
            "approve_within",
        ] {
            let e = parse(&format!("[server]\n{field} = \"0s\""))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("`server.{field}`")) && e.contains("is zero"),
                "{field}: {e}"
            );
        }
        assert_eq!(
            parse("[server]\nreconcile_every = \"off\"")
                .unwrap()
                .server
                .reconcile_every,
            None
        );
        assert_eq!(
            parse("").unwrap().server.reconcile_every,
            Some(Duration::from_secs(60))
        );
        let e = parse("[server]\nrequests_per_minute = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.requests_per_minute"), "{e}");
    }

    /// `revoke_rate` and `revoke_burst` are the server's, for every kind of provider: read here,
    /// taken out before the provider's own parser (which refuses keys it does not know) sees
    /// the table, and refused with the field named when they make no sense.
    #[test]
    fn every_provider_takes_a_revocation_rate_limit() {
        let pg = "[providers.pg]\nkind = \"postgres\"\nadmin_url = \"postgres://brevet@127.0.0.1/postgres\"\n";
        let c = parse(pg).unwrap();
        let name = ProviderName::parse("pg").unwrap();
        assert_eq!(
            c.providers[&name].revoke_rate, None,
            "not limited unless asked"
        );
        let c = parse(&format!("{pg}revoke_rate = 50\nrevoke_burst = 10")).unwrap();
        let rate = c.providers[&name].revoke_rate.unwrap();
        assert_eq!((rate.per_second(), rate.burst()), (50.0, 10));
        let c = parse(&format!("{pg}revoke_rate = 2.5")).unwrap();
        let rate = c.providers[&name].revoke_rate;
        assert_eq!(rate.map(|r| (r.per_second(), r.burst())), Some((2.5, 3)));
        for (bad, field) in [
            ("revoke_rate = 0", "providers.pg.revoke_rate"),
            ("revoke_rate = \"fast\"", "providers.pg.revoke_rate"),
            (
                "revoke_rate = 5\nrevoke_burst = 0",
                "providers.pg.revoke_burst",
            ),
            ("revoke_burst = 3", "providers.pg.revoke_burst"),
        ] {
            let e = parse(&format!("{pg}{bad}")).unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("[server]\nlisten = \"nowhere\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.listen"), "{e}");
        let oidc = "[oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"b\"\nclient_secret = { env = \"PATH\" }\n";
        let e = parse(&format!("{oidc}allowed_domains = [\"example\"]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("oidc.allowed_domains"), "{e}");
        let e = parse(&oidc.replace("https://idp", "http://idp"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("oidc.issuer"), "{e}");
        assert!(parse(&format!("{oidc}allowed_domains = [\"@Example.com\"]")).is_ok());
        let e = parse("[server]\nlistn = \"x\"").unwrap_err().to_string();
        assert!(e.contains("unknown field `listn`"), "{e}");
        let e = parse("[resources.\"pg:db\"]\ndatabase = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no provider `pg`"), "{e}");
        let e =
            parse("[providers.pg]\nkind = \"postgres\"\nadmin_url = \"postgres://u:secret@h/db\"")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("contains a password") && !e.contains("secret@"),
            "{e}"
        );
        let e = parse(
            "[providers.pg]\nkind = \"postgres\"\nadmin_url = { env = \"BREVET_NOPE_UNSET\" }",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("BREVET_NOPE_UNSET"), "{e}");
        let e = parse("[[principals]]\nid = \"a\"\nroles = [\"boss\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("principals[0].roles"), "{e}");
        let e = parse("[[principals]]\nid = \"a\"\ntoken_sha256 = \"abc\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("64 hex"), "{e}");
    }
}
