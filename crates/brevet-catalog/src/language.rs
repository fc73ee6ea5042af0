//! The catalog in use with a deployment's neutral profiles and what it forbids: what a provider
//! compiles its profiles through, and checks native permission lists against.

use std::collections::BTreeMap;

use crate::compile::{compile, expand_named, CompileError, Compiled, Target};
use crate::profile::{Forbidden, Profile};
use crate::{CatalogError, Cloud, SharedCatalog};

pub struct Language {
    /// Decoded while in use (`catalog.get()`); a server may release it when idle.
    pub catalog: SharedCatalog,
    pub profiles: BTreeMap<String, Profile>,
    pub forbidden: Forbidden,
}

impl std::fmt::Debug for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Language")
            .field("catalog", &self.catalog)
            .field("profiles", &self.profiles.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A native permission list checked against the catalog.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// What each entry names (a wildcard: all it matches), in catalog order.
    pub permissions: Vec<u32>,
    /// Sensitive permissions among them, one line each.
    pub warnings: Vec<String>,
}

impl Language {
    /// The built-in catalog with no profiles (what a provider's own tests get).
    pub fn builtin() -> Result<Language, CatalogError> {
        Ok(Language {
            catalog: SharedCatalog::embedded()?,
            profiles: BTreeMap::new(),
            forbidden: Forbidden::default(),
        })
    }

    /// Profile `name`, or an error listing the ones there are.
    pub fn profile(&self, name: &str) -> Result<&Profile, String> {
        self.profiles.get(name).ok_or_else(|| {
            format!(
                "no access profile `{name}`; {}",
                if self.profiles.is_empty() {
                    "define it under [access.\"NAME\"] (templates: examples/access-profiles.toml)"
                        .to_owned()
                } else {
                    format!(
                        "the config defines: {}",
                        self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            )
        })
    }

    pub fn compile(&self, profile: &Profile, target: &Target) -> Result<Compiled, CompileError> {
        compile(&self.catalog.get(), profile, target, self.forbidden)
    }

    /// Checks one native permission (or, where `wildcards` is allowed, pattern) the way compiled
    /// ones are: it must be in the catalog, and hold no forbidden tag.
    pub fn check(&self, cloud: Cloud, name: &str) -> Result<Checked, CompileError> {
        let catalog = self.catalog.get();
        let permissions = expand_named(&catalog, cloud, name)?;
        let mut warnings = Vec::new();
        for &i in &permissions {
            let p = &catalog.permissions()[i as usize];
            crate::compile::check_forbidden(p, self.forbidden)?;
            if p.tags.is_dangerous() {
                warnings.push(format!(
                    "`{}` can escalate privileges or expose credentials ({}); grant it only with strong approvals",
                    p.name,
                    p.tags.names().join(", ")
                ));
            }
        }
        Ok(Checked {
            permissions,
            warnings,
        })
    }
}
