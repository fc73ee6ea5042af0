//! [`TestConfig`]: a Brevet config written the way an operator writes one (TOML, read by the real
//! parser), with the parts a test varies named: server settings, principals and their tokens,
//! providers injected by name, resources and the policy.

use std::{path::Path, sync::Arc};

use brevet_config::{ConfigError, ProviderTables};
use brevet_providers::{
    registry::{self, BuildContext, ProviderKind, ProviderSetup},
    Provider, ProviderError,
};

/// The `kind` of an injected provider's `[providers.NAME]` table.
pub const INJECTED_KIND: &str = "memory";

/// A config for [`super::TestApp`], rendered to TOML and parsed by [`crate::Config`]'s own parser.
/// The harness adds `[store]` and `[policy]` itself.
#[derive(Clone)]
pub struct TestConfig {
    server: String,
    principals: String,
    providers: Vec<(String, Arc<dyn Provider>)>,
    /// Lines added to an injected provider's table (`revoke_rate = 5`), by name.
    provider_lines: Vec<(String, String)>,
    resources: String,
    extra: String,
    pub(super) policy: String,
}

impl TestConfig {
    /// A config whose only policy file holds `policy` (Cedar, with Brevet's annotations).
    pub fn new(policy: &str) -> Self {
        Self {
            server: String::new(),
            principals: String::new(),
            providers: Vec::new(),
            provider_lines: Vec::new(),
            resources: String::new(),
            extra: String::new(),
            policy: policy.to_owned(),
        }
    }

    /// Lines for `[server]`, e.g. `approve_within = "2s"`.
    pub fn server(mut self, lines: &str) -> Self {
        self.server.push_str(lines);
        self.server.push('\n');
        self
    }

    /// A `[[principals]]` entry that signs in with API token `token`.
    pub fn principal(mut self, id: &str, groups: &[&str], roles: &[&str], token: &str) -> Self {
        let list = |items: &[&str]| {
            items
                .iter()
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        self.principals.push_str(&format!(
            "[[principals]]\nid = {id:?}\ngroups = [{}]\nroles = [{}]\ntoken_sha256 = \"{}\"\n\n",
            list(groups),
            list(roles),
            hex::encode(crate::auth::hash_token(token)),
        ));
        self
    }

    /// `[providers.NAME]` of kind [`INJECTED_KIND`]: the server gets `provider` itself (an
    /// `InMemoryProvider`, say, or a `FaultyProvider` around one), so the test can inspect it.
    pub fn provider(mut self, name: &str, provider: Arc<dyn Provider>) -> Self {
        self.providers.push((name.to_owned(), provider));
        self
    }

    /// Lines for the `[providers.NAME]` table of an injected provider — the settings every
    /// provider takes, e.g. `revoke_rate = 5`.
    pub fn provider_settings(mut self, name: &str, lines: &str) -> Self {
        self.provider_lines
            .push((name.to_owned(), lines.to_owned()));
        self
    }

    /// A `[resources."ID"]` entry with no fields (injected providers take none).
    pub fn resource(mut self, id: &str) -> Self {
        self.resources.push_str(&format!("[resources.{id:?}]\n\n"));
        self
    }

    /// TOML appended as written (more tables, `[notify]`, resources with tags …).
    pub fn toml(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }

    /// The config file's text, with the store at `store_url` and the policy in `policy.cedar`.
    pub fn render(&self, store_url: &str) -> String {
        let providers: String = self
            .providers
            .iter()
            .map(|(name, _)| {
                let lines: String = self
                    .provider_lines
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, l)| format!("{l}\n"))
                    .collect();
                format!("[providers.{name}]\nkind = \"{INJECTED_KIND}\"\n{lines}\n")
            })
            .collect();
        format!(
            "[server]\n{server}\n[store]\nurl = {store_url:?}\n\n[policy]\nfiles = [\"policy.cedar\"]\n\n{principals}{providers}{resources}{extra}",
            server = self.server,
            principals = self.principals,
            resources = self.resources,
            extra = self.extra,
        )
    }

    /// The provider kinds this config may name: the built-in ones and the injected one.
    pub(super) fn kinds(&self) -> Vec<Box<dyn ProviderKind>> {
        let mut kinds = registry::builtin();
        kinds.push(Box::new(Injected {
            providers: self.providers.clone(),
        }));
        kinds
    }

    /// Writes `brevet.toml` and `policy.cedar` into `dir`; returns the config's path and text.
    pub(super) fn write(
        &self,
        dir: &Path,
        store_url: &str,
    ) -> std::io::Result<(std::path::PathBuf, String)> {
        std::fs::write(dir.join("policy.cedar"), &self.policy)?;
        let path = dir.join("brevet.toml");
        let text = self.render(store_url);
        std::fs::write(&path, &text)?;
        Ok((path, text))
    }
}

/// The provider kind that hands out the providers a test injected, by instance name.
struct Injected {
    providers: Vec<(String, Arc<dyn Provider>)>,
}

/// An injected provider's tables hold nothing of their own.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

impl ProviderKind for Injected {
    fn kind(&self) -> &'static str {
        INJECTED_KIND
    }

    fn parse(&self, tables: &ProviderTables) -> Result<Arc<dyn ProviderSetup>, ConfigError> {
        tables.parse::<NoSettings>()?;
        tables.parse_resources::<NoSettings>()?;
        let provider = self
            .providers
            .iter()
            .find(|(name, _)| *name == tables.name)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| {
                brevet_config::field(
                    tables.at("kind"),
                    "no provider was injected under this name; give one with TestConfig::provider",
                )
            })?;
        Ok(Arc::new(InjectedSetup(provider)))
    }
}

struct InjectedSetup(Arc<dyn Provider>);

impl std::fmt::Debug for InjectedSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InjectedSetup({})", self.0.kind())
    }
}

#[async_trait::async_trait]
impl ProviderSetup for InjectedSetup {
    async fn build(&self, _: BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(self.0.clone())
    }
}
