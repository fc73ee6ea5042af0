//! `[providers.NAME]` with `kind = "azure"`, and its resources' tables: parsed here, with errors
//! named by their full path. Built-in roles and every operation are checked against the catalog;
//! neutral profiles are compiled for each resource's scope at load.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use brevet_catalog::{compile::Target, Cloud, Language, Plane};
use brevet_config::{field, ConfigError, ProviderTables, SecretRef};
use brevet_core::ProfileName;
use serde::Deserialize;

use super::{
    AzureConfig, AzureCredentials, AzureIdentity, AzureMode, AzureProfile, AzureProvider,
    CustomSet, Grants,
};
use crate::{
    registry::{BuildContext, ProviderKind, ProviderSetup},
    Provider, ProviderError,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    tenant_id: String,
    #[serde(default)]
    credentials: Option<RawCredentials>,
    endpoint: Option<String>,
    #[serde(default)]
    identities: BTreeMap<String, RawIdentity>,
    profiles: BTreeMap<String, RawProfile>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCredentials {
    Named(String),
    Secret {
        client_id: String,
        client_secret: SecretRef,
    },
    Token {
        access_token: SecretRef,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    object_id: String,
    #[serde(rename = "type", default = "user")]
    principal_type: String,
}

fn user() -> String {
    "User".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default = "assignment")]
    mode: String,
    /// A built-in role by name (`Storage Blob Data Reader`) or an existing role definition id.
    role: Option<String>,
    /// A neutral profile compiled into a custom role per scope.
    access: Option<String>,
    /// Or the operations of a custom role, control and data plane as the catalog classes them.
    #[serde(default)]
    permissions: Vec<String>,
}

fn assignment() -> String {
    "assignment".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    scope: String,
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A scope Brevet assigns at: a management group, a subscription, a resource group or one
/// resource in it.
fn check_scope(s: &str) -> Result<(), String> {
    let lower = s.to_ascii_lowercase();
    let parts: Vec<&str> = lower.trim_end_matches('/').split('/').collect();
    let ok = match parts.as_slice() {
        ["", "providers", "microsoft.management", "managementgroups", mg] => !mg.is_empty(),
        ["", "subscriptions", sub] => is_guid(sub),
        ["", "subscriptions", sub, "resourcegroups", rg] => is_guid(sub) && !rg.is_empty(),
        ["", "subscriptions", sub, "resourcegroups", rg, "providers", ns, rest @ ..] => {
            is_guid(sub)
                && !rg.is_empty()
                && !ns.is_empty()
                && rest.len() >= 2
                && rest.len() % 2 == 0
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a scope Brevet assigns at; write /subscriptions/GUID, \
             /subscriptions/GUID/resourceGroups/NAME, a resource id under a resource group, or \
             /providers/Microsoft.Management/managementGroups/ID (never the tenant root `/`)"
        ))
    }
}

pub fn parse(t: &ProviderTables) -> Result<AzureConfig, ConfigError> {
    let raw: Raw = t.parse()?;
    if !is_guid(&raw.tenant_id) {
        return Err(field(
            t.at("tenant_id"),
            "a tenant id is a GUID (Entra ID → Overview → Tenant ID)",
        ));
    }
    let credentials = match raw.credentials {
        None => AzureCredentials::ManagedIdentity,
        Some(RawCredentials::Named(n)) => match n.as_str() {
            "managed_identity" => AzureCredentials::ManagedIdentity,
            "workload_identity" => AzureCredentials::WorkloadIdentity,
            other => {
                return Err(field(
                    t.at("credentials"),
                    format!(
                        "`{other}` is not a credential source; use \"managed_identity\", \"workload_identity\", \
                         {{ client_id = \"…\", client_secret = {{ env = \"…\" }} }} or {{ access_token = {{ env = \"…\" }} }}"
                    ),
                ))
            }
        },
        Some(RawCredentials::Secret { client_id, client_secret }) => AzureCredentials::ClientSecret {
            client_id,
            secret: client_secret.resolve(&t.at("credentials.client_secret"), &t.base)?,
        },
        Some(RawCredentials::Token { access_token }) => AzureCredentials::AccessToken(
            access_token.resolve(&t.at("credentials.access_token"), &t.base)?,
        ),
    };
    if let Some(e) = &raw.endpoint {
        if !(e.starts_with("https://") || e.starts_with("http://")) {
            return Err(field(
                t.at("endpoint"),
                "an endpoint is a URL such as https://management.azure.com",
            ));
        }
    }
    let mut resources = BTreeMap::new();
    for (id, r) in t.parse_resources::<RawResource>()? {
        check_scope(&r.scope).map_err(|e| field(format!("{}.scope", t.resource_at(&id)), e))?;
        resources.insert(id, r.scope.trim_end_matches('/').to_owned());
    }
    let mut identities = BTreeMap::new();
    for (who, ri) in raw.identities {
        if !is_guid(&ri.object_id) {
            return Err(field(
                t.at(&format!("identities.{who}.object_id")),
                "an Entra object id is a GUID (Entra ID → Users → the user → Object ID)",
            ));
        }
        if !["User", "Group", "ServicePrincipal"].contains(&ri.principal_type.as_str()) {
            return Err(field(
                t.at(&format!("identities.{who}.type")),
                format!(
                    "`{}` is not a principal type; use User, Group or ServicePrincipal",
                    ri.principal_type
                ),
            ));
        }
        identities.insert(
            who,
            AzureIdentity {
                object_id: ri.object_id.to_ascii_lowercase(),
                principal_type: ri.principal_type,
            },
        );
    }
    let language = t.language()?;
    let mut profiles = BTreeMap::new();
    for (p, rp) in raw.profiles {
        let pat = |f: &str| t.at(&format!("profiles.\"{p}\".{f}"));
        let pn = ProfileName::parse(&p)
            .map_err(|e| field(t.at(&format!("profiles.\"{p}\"")), e.to_string()))?;
        let mode = match rp.mode.as_str() {
            "assignment" => AzureMode::Assignment,
            "pim" => AzureMode::Pim,
            other => {
                return Err(field(
                    pat("mode"),
                    format!("`{other}` is not a mode; use assignment or pim"),
                ))
            }
        };
        let given = [
            rp.role.is_some(),
            rp.access.is_some(),
            !rp.permissions.is_empty(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(field(
                t.at(&format!("profiles.\"{p}\"")),
                "give exactly one of `role` (a built-in role, e.g. \"Reader\"), `access` (a neutral \
                 profile) or `permissions` (a custom role of these operations)",
            ));
        }
        let grants = if let Some(role) = rp.role {
            Grants::BuiltIn(builtin_role(&language, &role).map_err(|e| field(pat("role"), e))?)
        } else {
            let mut per = BTreeMap::new();
            for (id, scope) in &resources {
                let (actions, data_actions) = if let Some(access) = &rp.access {
                    let profile = language
                        .profile(access)
                        .map_err(|e| field(pat("access"), e))?;
                    let compiled = language
                        .compile(
                            profile,
                            &Target::Azure {
                                scope: scope.clone(),
                            },
                        )
                        .map_err(|e| {
                            field(
                                pat("access"),
                                format!("`{access}` for resource `{}`: {e}", t.resource_at(id)),
                            )
                        })?;
                    for w in &compiled.warnings {
                        tracing::warn!(provider = %t.name, access, resource = %id, "{w}");
                    }
                    split(&language, compiled.names(&language.catalog.get()))
                } else {
                    for (i, op) in rp.permissions.iter().enumerate() {
                        let at = pat(&format!("permissions[{i}]"));
                        if op.contains('*') {
                            return Err(field(at, "list exact operations (`brevet catalog search --cloud azure` finds them)"));
                        }
                        let checked = language
                            .check(Cloud::Azure, op)
                            .map_err(|e| field(at.clone(), e.to_string()))?;
                        for w in checked.warnings {
                            tracing::warn!(provider = %t.name, profile = %pn, "{w}");
                        }
                    }
                    let names: Vec<&str> = rp.permissions.iter().map(String::as_str).collect();
                    split(&language, names)
                };
                if actions.is_empty() && data_actions.is_empty() {
                    return Err(field(
                        pat(if rp.access.is_some() {
                            "access"
                        } else {
                            "permissions"
                        }),
                        format!("grants nothing at resource `{}`", t.resource_at(id)),
                    ));
                }
                if !data_actions.is_empty()
                    && scope
                        .to_ascii_lowercase()
                        .starts_with("/providers/microsoft.management/")
                {
                    return Err(field(
                        pat(if rp.access.is_some() { "access" } else { "permissions" }),
                        format!(
                            "resource `{}` is a management group, and Azure refuses data actions in a role \
                             assignable there; use a subscription or resource group scope",
                            t.resource_at(id)
                        ),
                    ));
                }
                per.insert(
                    id.clone(),
                    CustomSet {
                        actions,
                        data_actions,
                    },
                );
            }
            Grants::Custom(per)
        };
        profiles.insert(pn, AzureProfile { mode, grants });
    }
    Ok(AzureConfig {
        tenant_id: raw.tenant_id,
        credentials,
        endpoint: raw.endpoint,
        profiles,
        resources,
        identities,
    })
}

/// Control and data operations apart, as the catalog classes them, sorted and deduplicated.
fn split<'a>(
    language: &Language,
    names: impl IntoIterator<Item = &'a str>,
) -> (Vec<String>, Vec<String>) {
    let (mut control, mut data) = (Vec::new(), Vec::new());
    let catalog = language.catalog.get();
    for n in names {
        match catalog.permission(Cloud::Azure, n).map(|p| p.plane) {
            Some(Plane::Data) => data.push(n.to_owned()),
            _ => control.push(n.to_owned()),
        }
    }
    for v in [&mut control, &mut data] {
        v.sort_by_key(|s| s.to_ascii_lowercase());
        v.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    }
    (control, data)
}

/// A built-in role by name, as its GUID; or a role definition id given as is.
fn builtin_role(language: &Language, role: &str) -> Result<(String, String), String> {
    if let Some(guid) = role
        .rsplit('/')
        .next()
        .filter(|g| role.contains("/roleDefinitions/") && is_guid(g))
    {
        return Ok((role.to_owned(), guid.to_ascii_lowercase()));
    }
    let catalog = language.catalog.get();
    let found = catalog.roles().iter().find(|r| {
        r.cloud == Cloud::Azure
            && (r.name.eq_ignore_ascii_case(role) || r.title.eq_ignore_ascii_case(role))
    });
    match found {
        Some(r) if ["Owner", "Contributor", "User Access Administrator", "Role Based Access Control Administrator"]
            .contains(&r.name.as_str()) =>
        {
            Err(format!(
                "`{}` lets its holder change who may do what (or everything): it is not a task-sized grant; \
                 use a narrower built-in role or a neutral profile (`access`)",
                r.name
            ))
        }
        Some(r) => Ok((r.name.clone(), r.title.to_ascii_lowercase())),
        None => Err(format!(
            "`{role}` is not an Azure built-in role in Brevet's catalog; `brevet catalog search --cloud azure` \
             finds roles, or give a role definition id (/providers/Microsoft.Authorization/roleDefinitions/GUID)"
        )),
    }
}

pub struct Kind;

#[derive(Debug)]
struct Setup(AzureConfig);

impl ProviderKind for Kind {
    fn kind(&self) -> &'static str {
        "azure"
    }
    fn parse(&self, tables: &ProviderTables) -> Result<Arc<dyn ProviderSetup>, ConfigError> {
        Ok(Arc::new(Setup(parse(tables)?)))
    }
}

#[async_trait]
impl ProviderSetup for Setup {
    async fn build(&self, cx: BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(
            AzureProvider::new(&cx.name, self.0.clone()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "tenant_id = \"11111111-1111-1111-1111-111111111111\"\ncredentials = { access_token = \"not-a-secret-in-tests\" }\n";
    const RG: &str =
        "scope = \"/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg1\"";

    fn tables(provider: &str, resources: &[(&str, &str)]) -> ProviderTables {
        ProviderTables::from_toml("azure", &format!("{TENANT}{provider}"), resources).unwrap()
    }

    #[test]
    fn a_valid_instance_parses() {
        let c = parse(&tables(
            "[identities.alice]\nobject_id = \"33333333-3333-3333-3333-333333333333\"\n\
             [profiles.\"az.read\"]\nrole = \"Storage Blob Data Reader\"\n\
             [profiles.\"az.ops\"]\nmode = \"pim\"\npermissions = [\"Microsoft.Storage/storageAccounts/read\", \"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read\"]",
            &[("rg1", RG)],
        ))
        .unwrap();
        let ops = &c.profiles[&ProfileName::parse("az.ops").unwrap()];
        assert_eq!(ops.mode, AzureMode::Pim);
        let Grants::Custom(per) = &ops.grants else {
            panic!()
        };
        assert_eq!(
            per["rg1"].actions,
            ["Microsoft.Storage/storageAccounts/read"]
        );
        assert_eq!(
            per["rg1"].data_actions,
            ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"]
        );
        let Grants::BuiltIn((name, guid)) =
            &c.profiles[&ProfileName::parse("az.read").unwrap()].grants
        else {
            panic!()
        };
        assert_eq!(name, "Storage Blob Data Reader");
        assert!(is_guid(guid));
        assert_eq!(c.identities["alice"].principal_type, "User");
    }

    #[test]
    fn bad_config_is_refused_by_path() {
        let view = "[profiles.\"az.x\"]\nrole = \"Reader\"";
        let rg = [("rg1", RG)];
        for (provider, resources, path, words) in [
            ("[profiles.\"az.x\"]\nrole = \"Owner\"", &rg[..], "profiles.\"az.x\".role", "not a task-sized grant"),
            ("[profiles.\"az.x\"]\nrole = \"Raeder\"", &rg[..], "profiles.\"az.x\".role", "not an Azure built-in role"),
            ("[profiles.\"az.x\"]\npermissions = [\"Microsoft.Storage/storageAccounts/reed\"]", &rg[..], "profiles.\"az.x\".permissions[0]", "reed"),
            ("[profiles.\"az.x\"]\nmode = \"forever\"\nrole = \"Reader\"", &rg[..], "profiles.\"az.x\".mode", "assignment or pim"),
            ("[profiles.\"az.x\"]\nrole = \"Reader\"\naccess = \"x\"", &rg[..], "profiles.\"az.x\"", "exactly one of"),
            ("[profiles.\"az.x\"]\npermissions = [\"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read\"]", &[("mg", "scope = \"/providers/Microsoft.Management/managementGroups/mg1\"")][..], "profiles.\"az.x\".permissions", "management group"),
            (view, &[("root", "scope = \"/\"")][..], "resources.\"azure:root\".scope", "never the tenant root"),
            (view, &[("bad", "scope = \"/subscriptions/nope\"")][..], "resources.\"azure:bad\".scope", "not a scope"),
            (&format!("[identities.alice]\nobject_id = \"alice@example.com\"\n{view}"), &rg[..], "identities.alice.object_id", "GUID"),
            (&format!("[identities.alice]\nobject_id = \"33333333-3333-3333-3333-333333333333\"\ntype = \"Robot\"\n{view}"), &rg[..], "identities.alice.type", "User, Group or ServicePrincipal"),
        ] {
            let e = parse(&tables(provider, resources)).unwrap_err().to_string();
            assert!(e.contains(path) && e.contains(words), "{path} / {words}: {e}");
        }
        let e = parse(
            &ProviderTables::from_toml("azure", &format!("tenant_id = \"x\"\n{view}"), &rg)
                .unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("tenant_id") && e.contains("GUID"), "{e}");
    }
}
