//! `[providers.NAME]` with `kind = "aws"`, and its resources' tables: parsed here, with errors
//! named by their full path.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use brevet_config::{duration_literal, field, ConfigDuration, ConfigError, ProviderTables};
use brevet_core::ProfileName;
use serde::Deserialize;

use brevet_catalog::{compile::Target, Cloud, Language};

use super::{
    client::INLINE_POLICY_LIMIT, Arn, AwsConfig, AwsIdentity, AwsMode, AwsProfile, AwsProvider,
    AwsResource, IamAction, Scoped,
};
use crate::{
    registry::{BuildContext, ProviderKind, ProviderSetup},
    Provider, ProviderError,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    region: String,
    endpoint_url: Option<String>,
    #[serde(default = "prefix")]
    role_prefix: String,
    #[serde(default = "path")]
    role_path: String,
    #[serde(default = "max_session")]
    max_session_duration: ConfigDuration,
    #[serde(default)]
    allow_wildcards: bool,
    /// Replaced by the built-in catalog; kept only to say so.
    action_catalog: Option<PathBuf>,
    sensitive_actions: Option<PathBuf>,
    #[serde(default)]
    identities: BTreeMap<String, RawIdentity>,
    profiles: BTreeMap<String, RawProfile>,
}

fn prefix() -> String {
    "brevet-".into()
}
fn path() -> String {
    "/brevet/".into()
}
fn max_session() -> ConfigDuration {
    duration_literal("1h")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    arn: Option<String>,
    identity_center_user_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    mode: String,
    #[serde(default)]
    actions: Vec<String>,
    /// A neutral access profile (`[access."NAME"]`) compiled for each resource, instead of
    /// `actions`.
    access: Option<String>,
    base_role_arn: Option<String>,
    instance_arn: Option<String>,
    permission_set_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    account: String,
    #[serde(default)]
    arns: Vec<String>,
}

/// Parses and checks one instance's tables.
pub fn parse(t: &ProviderTables) -> Result<AwsConfig, ConfigError> {
    let raw: Raw = t.parse()?;
    let max = raw.max_session_duration.0;
    if !(3600..=43_200).contains(&max.as_secs()) {
        return Err(field(t.at("max_session_duration"), "IAM allows 1h to 12h"));
    }
    let prefix_ok = !raw.role_prefix.is_empty()
        && raw.role_prefix.len() <= 40
        && raw
            .role_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if !prefix_ok {
        return Err(field(
            t.at("role_prefix"),
            "use up to 40 characters from letters, digits and +=,.@_-",
        ));
    }
    if !(raw.role_path.starts_with('/') && raw.role_path.ends_with('/')) {
        return Err(field(
            t.at("role_path"),
            "an IAM path starts and ends with `/`, e.g. \"/brevet/\"",
        ));
    }
    for (key, set) in [
        ("action_catalog", raw.action_catalog.is_some()),
        ("sensitive_actions", raw.sensitive_actions.is_some()),
    ] {
        if set {
            return Err(field(
                t.at(key),
                "is no longer needed: every action is checked against Brevet's built-in catalog, \
                 sensitive ones included; remove it (for newer data, `brevet catalog refresh` \
                 and `[catalog] file`)",
            ));
        }
    }
    let language = t.language()?;
    let resources = parse_resources(t)?;
    let mut profiles = BTreeMap::new();
    for (p, rp) in raw.profiles {
        let pat = |f: &str| t.at(&format!("profiles.\"{p}\".{f}"));
        let pn = ProfileName::parse(&p)
            .map_err(|e| field(t.at(&format!("profiles.\"{p}\"")), e.to_string()))?;
        let mut actions = Vec::new();
        for (i, a) in rp.actions.iter().enumerate() {
            let at = pat(&format!("actions[{i}]"));
            let action = IamAction::parse(a).map_err(|e| field(at.clone(), e))?;
            if action.is_wildcard() && !raw.allow_wildcards {
                return Err(field(
                    at,
                    format!("`{action}` is a wildcard; list the exact actions, or set allow_wildcards = true"),
                ));
            }
            let checked = language
                .check(Cloud::Aws, &action.to_string())
                .map_err(|e| field(at.clone(), e.to_string()))?;
            for warning in checked.warnings {
                tracing::warn!(provider = %t.name, profile = %pn, "{warning}");
            }
            actions.push(action);
        }
        let mode = match rp.mode.as_str() {
            "role" => AwsMode::Role,
            "session" => AwsMode::Session {
                base_role_arn: Arn::parse(rp.base_role_arn.as_deref().ok_or_else(|| {
                    field(
                        pat("base_role_arn"),
                        "session mode needs the base role to assume",
                    )
                })?)
                .map_err(|e| field(pat("base_role_arn"), e))?,
            },
            "identity_center" => AwsMode::IdentityCenter {
                instance_arn: rp.instance_arn.ok_or_else(|| {
                    field(
                        pat("instance_arn"),
                        "identity_center mode needs the instance ARN",
                    )
                })?,
                permission_set_arn: rp.permission_set_arn.ok_or_else(|| {
                    field(
                        pat("permission_set_arn"),
                        "identity_center mode needs the permission set ARN",
                    )
                })?,
            },
            other => {
                return Err(field(
                    pat("mode"),
                    format!("`{other}` is not a mode; use role, session or identity_center"),
                ))
            }
        };
        let compiled = match &rp.access {
            None => None,
            Some(_) if !actions.is_empty() => {
                return Err(field(
                    pat("access"),
                    "give either `actions` or `access`, not both",
                ))
            }
            Some(_) if matches!(mode, AwsMode::IdentityCenter { .. }) => {
                return Err(field(
                    pat("access"),
                    "identity_center mode grants its permission set; `access` does not apply",
                ))
            }
            Some(name) => Some(compile_access(
                t,
                &language,
                &pat("access"),
                name,
                &resources,
            )?),
        };
        if !matches!(mode, AwsMode::IdentityCenter { .. })
            && actions.is_empty()
            && compiled.is_none()
        {
            return Err(field(
                pat("actions"),
                "list the IAM actions this profile allows, e.g. [\"s3:GetObject\"], or name a neutral profile with `access = \"…\"`",
            ));
        }
        let profile = AwsProfile {
            mode,
            actions,
            compiled,
        };
        check_policy_sizes(
            &profile,
            &resources,
            &pat(if rp.access.is_some() {
                "access"
            } else {
                "actions"
            }),
        )?;
        profiles.insert(pn, profile);
    }
    let mut identities = BTreeMap::new();
    for (who, ri) in raw.identities {
        let arn = ri
            .arn
            .as_deref()
            .map(Arn::parse)
            .transpose()
            .map_err(|e| field(t.at(&format!("identities.{who}.arn")), e))?;
        identities.insert(
            who,
            AwsIdentity {
                arn,
                identity_center_user_id: ri.identity_center_user_id,
            },
        );
    }
    let config = AwsConfig {
        region: raw.region,
        endpoint_url: raw.endpoint_url,
        role_prefix: raw.role_prefix,
        role_path: raw.role_path,
        max_session_duration: max,
        profiles,
        resources,
        identities,
    };
    config
        .check_identity_center_unambiguous(&t.name)
        .map_err(|(at, why)| field(at, why))?;
    Ok(config)
}

/// The provider's resources, by id.
fn parse_resources(t: &ProviderTables) -> Result<BTreeMap<String, AwsResource>, ConfigError> {
    let mut resources = BTreeMap::new();
    for (id, r) in t.parse_resources::<RawResource>()? {
        let rat = t.resource_at(&id);
        if r.account.len() != 12 || !r.account.chars().all(|c| c.is_ascii_digit()) {
            return Err(field(
                format!("{rat}.account"),
                "an AWS account id is 12 digits",
            ));
        }
        let mut arns = Vec::new();
        for (i, a) in r.arns.iter().enumerate() {
            let at = format!("{rat}.arns[{i}]");
            let arn = Arn::parse(a).map_err(|e| field(at.clone(), e))?;
            if !arn.account().is_empty() && arn.account() != r.account {
                return Err(field(
                    at,
                    format!("`{a}` is in account {}, not {}", arn.account(), r.account),
                ));
            }
            arns.push(arn);
        }
        resources.insert(
            id,
            AwsResource {
                account: r.account,
                arns,
            },
        );
    }
    Ok(resources)
}

/// Compiles neutral profile `name` for every resource that lists ARNs: per resource, the
/// statements of its grant policy.
fn compile_access(
    t: &ProviderTables,
    language: &Language,
    at: &str,
    name: &str,
    resources: &BTreeMap<String, AwsResource>,
) -> Result<BTreeMap<String, Vec<Scoped>>, ConfigError> {
    let profile = language.profile(name).map_err(|e| field(at, e))?;
    let mut out = BTreeMap::new();
    for (id, res) in resources.iter().filter(|(_, r)| !r.arns.is_empty()) {
        let target = Target::Aws {
            arns: res.arns.iter().map(|a| a.as_str().to_owned()).collect(),
        };
        let compiled = language.compile(profile, &target).map_err(|e| {
            field(
                at,
                format!("`{name}` for resource `{}`: {e}", t.resource_at(id)),
            )
        })?;
        for w in &compiled.warnings {
            tracing::warn!(provider = %t.name, access = name, resource = %id, "{w}");
        }
        let statements = compiled.document["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Scoped {
                actions: strings(&s["Action"]),
                resources: strings(&s["Resource"]),
            })
            .collect();
        out.insert(id.clone(), statements);
    }
    Ok(out)
}

/// AWS's limits on the policy a grant writes: a role's inline policies, and an STS session
/// policy (plain text). A profile whose policy for some resource is over it would fail at every
/// activation; it is refused at start instead, naming the resource.
const SESSION_POLICY_LIMIT: usize = 2_048;

fn check_policy_sizes(
    profile: &AwsProfile,
    resources: &BTreeMap<String, AwsResource>,
    at: &str,
) -> Result<(), ConfigError> {
    let limit = match profile.mode {
        AwsMode::Role => INLINE_POLICY_LIMIT,
        AwsMode::Session { .. } => SESSION_POLICY_LIMIT,
        AwsMode::IdentityCenter { .. } => return Ok(()),
    };
    for (id, res) in resources.iter().filter(|(_, r)| !r.arns.is_empty()) {
        let statements = profile.statements(id, res);
        // Any expiry: the document's length does not depend on the date.
        let doc = super::documents::grant_policy(&statements, chrono::Utc::now()).to_string();
        if doc.len() > limit {
            return Err(field(
                at,
                format!(
                    "for resource `{id}` the grant's policy is {} characters, over AWS's limit of {limit} for this mode; grant fewer actions (or narrow the profile), or split it in two",
                    doc.len()
                ),
            ));
        }
    }
    Ok(())
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect()
}

/// `kind = "aws"`.
pub struct Kind;

#[derive(Debug)]
struct Setup(AwsConfig);

impl ProviderKind for Kind {
    fn kind(&self) -> &'static str {
        "aws"
    }
    fn parse(&self, tables: &ProviderTables) -> Result<Arc<dyn ProviderSetup>, ConfigError> {
        Ok(Arc::new(Setup(parse(tables)?)))
    }
}

#[async_trait]
impl ProviderSetup for Setup {
    async fn build(&self, cx: BuildContext) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(AwsProvider::new(&cx.name, self.0.clone()).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(provider: &str, resources: &[(&str, &str)]) -> ProviderTables {
        ProviderTables::from_toml("aws", provider, resources).unwrap()
    }

    const PROFILE: &str = "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"s3:GetObject\"]";

    #[test]
    fn a_valid_instance_parses() {
        let c = parse(&tables(
            PROFILE,
            &[(
                "bucket",
                "account = \"123456789012\"\narns = [\"arn:aws:s3:::b\"]",
            )],
        ))
        .unwrap();
        assert_eq!(c.role_prefix, "brevet-");
        assert_eq!(c.resources["bucket"].arns.len(), 1);
    }

    /// Config errors for the AWS provider, by the full path of the field (these were tested only
    /// by spawning the binary before the provider parsed its own tables).
    #[test]
    fn errors_name_the_field_by_its_full_path() {
        for (provider, resources, at, says) in [
            (
                "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"s3:GetObject\", \"s3:*\"]",
                vec![],
                "providers.aws.profiles.\"aws.read\".actions[1]",
                "wildcard",
            ),
            (
                "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"nonsense\"]",
                vec![],
                "providers.aws.profiles.\"aws.read\".actions[0]",
                "",
            ),
            (
                "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"sudo\"",
                vec![],
                "providers.aws.profiles.\"aws.read\".mode",
                "not a mode",
            ),
            (
                "region = \"us-east-1\"\nmax_session_duration = \"13h\"\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"s3:GetObject\"]",
                vec![],
                "providers.aws.max_session_duration",
                "1h to 12h",
            ),
            (
                PROFILE,
                vec![("bucket", "account = \"1234\"")],
                "resources.\"aws:bucket\".account",
                "12 digits",
            ),
            (
                PROFILE,
                vec![(
                    "bucket",
                    "account = \"123456789012\"\narns = [\"arn:aws:iam::210987654321:role/x\"]",
                )],
                "resources.\"aws:bucket\".arns[0]",
                "is in account 210987654321",
            ),
            (
                "region = \"us-east-1\"\nregionn = \"x\"\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"s3:GetObject\"]",
                vec![],
                "providers.aws.regionn",
                "unknown field `regionn`",
            ),
            // Every action is checked against the built-in catalog (879dbb0 did so only when
            // `action_catalog` pointed at a copy of it).
            (
                "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"s3:GetObjekt\"]",
                vec![],
                "providers.aws.profiles.\"aws.read\".actions[0]",
                "`s3:GetObjekt` is not in the aws permission catalog (did you mean `s3:GetObject`?)",
            ),
            (
                "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"nosuchsvc:Get\"]",
                vec![],
                "providers.aws.profiles.\"aws.read\".actions[0]",
                "`nosuchsvc:Get` is not in the aws permission catalog",
            ),
            (
                "region = \"us-east-1\"\nallow_wildcards = true\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"s3:Gett*\"]",
                vec![],
                "providers.aws.profiles.\"aws.read\".actions[0]",
                "`s3:Gett*` matches no aws permission",
            ),
            (
                "region = \"us-east-1\"\naction_catalog = \"/opt/iam-data\"\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"s3:GetObject\"]",
                vec![],
                "providers.aws.action_catalog",
                "built-in catalog",
            ),
            (
                "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"role\"\naccess = \"storage.read\"",
                vec![],
                "providers.aws.profiles.\"aws.read\".access",
                "no access profile `storage.read`",
            ),
            (
                "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"role\"\nactions = [\"s3:GetObject\"]\naccess = \"storage.read\"",
                vec![],
                "providers.aws.profiles.\"aws.read\".access",
                "either `actions` or `access`",
            ),
        ] {
            let e = parse(&tables(provider, &resources)).unwrap_err().to_string();
            assert!(e.contains(&format!("`{at}`")) && e.contains(says), "{at}: {e}");
        }
    }

    fn with_language(mut t: ProviderTables, access: &str) -> ProviderTables {
        #[derive(serde::Deserialize)]
        struct File {
            access: BTreeMap<String, brevet_catalog::profile::ProfileSpec>,
        }
        let file: File = toml::from_str(access).unwrap();
        let builtin = Language::builtin().unwrap();
        let profiles = file
            .access
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    brevet_catalog::profile::Profile::parse(n, s).unwrap(),
                )
            })
            .collect();
        t.access = Some(Arc::new(Language {
            profiles,
            ..builtin
        }));
        t
    }

    /// A session policy is plain text of at most 2,048 characters at AWS: a profile over it is
    /// refused at start, not at every activation.
    #[test]
    fn a_policy_over_awss_limit_is_refused_at_start() {
        let catalog = brevet_catalog::Catalog::embedded().unwrap();
        let actions: Vec<String> = catalog
            .expand(Cloud::Aws, "s3:Get*")
            .iter()
            .map(|&i| format!("\"{}\"", catalog.permissions()[i as usize].name))
            .collect();
        let provider = |mode: &str| {
            format!(
                "region = \"us-east-1\"\n[profiles.\"aws.wide\"]\n{mode}\nactions = [{}]",
                actions.join(", ")
            )
        };
        let bucket = [(
            "bucket",
            "account = \"123456789012\"\narns = [\"arn:aws:s3:::b\", \"arn:aws:s3:::b/*\"]",
        )];
        let e = parse(&tables(
            &provider(
                "mode = \"session\"\nbase_role_arn = \"arn:aws:iam::123456789012:role/base\"",
            ),
            &bucket,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("providers.aws.profiles.\"aws.wide\".actions")
                && e.contains("for resource `bucket`")
                && e.contains("limit of 2048"),
            "{e}"
        );
        // The same list fits a role's inline policy.
        assert!(parse(&tables(&provider("mode = \"role\""), &bucket)).is_ok());
    }

    const STORAGE_READ: &str = "[access.\"storage.read\"]\nkind = \"object-storage\"\nverbs = [\"read\", \"list\"]\nplane = \"data\"";

    /// A neutral profile compiles per resource: each action only on the ARNs of its own type.
    #[test]
    fn an_access_profile_compiles_for_each_resource() {
        let t = with_language(
            tables(
                "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"role\"\naccess = \"storage.read\"",
                &[
                    ("logs", "account = \"123456789012\"\narns = [\"arn:aws:s3:::logs\", \"arn:aws:s3:::logs/*\"]"),
                    ("nothing", "account = \"123456789012\""),
                ],
            ),
            STORAGE_READ,
        );
        let c = parse(&t).unwrap();
        let p = &c.profiles[&ProfileName::parse("aws.read").unwrap()];
        let st = p.statements("logs", &c.resources["logs"]);
        let on = |action: &str| {
            st.iter()
                .find(|s| s.actions.iter().any(|a| a == action))
                .map(|s| s.resources.clone())
                .unwrap_or_else(|| panic!("{action} not granted: {st:?}"))
        };
        assert_eq!(on("s3:GetObject"), ["arn:aws:s3:::logs/*"]);
        assert_eq!(on("s3:ListBucket"), ["arn:aws:s3:::logs"]);
        assert!(st
            .iter()
            .all(|s| !s.actions.iter().any(|a| a.starts_with("s3:Put"))));
        // A resource without ARNs gets nothing (the grant is refused before anything is made).
        assert!(p.statements("nothing", &c.resources["nothing"]).is_empty());
        // An explicit action list is allowed on every ARN, as before.
        let c = parse(&tables(
            PROFILE,
            &[(
                "logs",
                "account = \"123456789012\"\narns = [\"arn:aws:s3:::logs/*\"]",
            )],
        ))
        .unwrap();
        let p = &c.profiles[&ProfileName::parse("aws.read").unwrap()];
        assert_eq!(
            p.statements("logs", &c.resources["logs"]),
            vec![Scoped {
                actions: vec!["s3:GetObject".into()],
                resources: vec!["arn:aws:s3:::logs/*".into()],
            }]
        );
        // A resource whose ARNs no selected action fits is refused at load, naming both.
        let t = with_language(
            tables(
                "region = \"us-east-1\"\n[profiles.\"aws.read\"]\nmode = \"role\"\naccess = \"storage.read\"",
                &[("role", "account = \"123456789012\"\narns = [\"arn:aws:iam::123456789012:role/x\"]")],
            ),
            STORAGE_READ,
        );
        let e = parse(&t).unwrap_err().to_string();
        assert!(
            e.contains("providers.aws.profiles.\"aws.read\".access")
                && e.contains("resources.\"aws:role\"")
                && e.contains("compiles to no aws permission"),
            "{e}"
        );
    }
}
