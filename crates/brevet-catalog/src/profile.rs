//! Neutral access profiles: verb classes on a resource kind, in one plane, with per-cloud
//! additions and removals for what the classes cannot say; parsed from config (`[access."NAME"]`)
//! into a [`Profile`] whose parts are all known.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::kinds::{self, Kind};
use crate::model::{Cloud, Plane, Tags, Verb};

/// A profile as written in config.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default)]
    pub description: String,
    /// A resource kind (`object-storage`, `secret`, …).
    pub kind: String,
    /// Verb classes: `list`, `read`, `write`, `delete`, `tag`, `admin`.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// `control`, `data` or `both`; required when the kind has a data plane in some cloud.
    #[serde(default)]
    pub plane: Option<String>,
    #[serde(default)]
    pub aws: Adjust,
    #[serde(default)]
    pub gcp: Adjust,
    #[serde(default)]
    pub azure: Adjust,
    #[serde(default)]
    pub okta: Adjust,
}

/// Native permissions added to or removed from what the verb classes select, for one cloud.
/// Wildcards are expanded from the catalog.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
    /// Azure only: more scopes the role definition may be assigned at (besides the resource's),
    /// e.g. a management group. Azure refuses data actions in a role assignable at one.
    #[serde(default)]
    pub assignable_scopes: Vec<String>,
}

/// A profile whose kind, verbs and plane are known.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub kind: &'static Kind,
    pub verbs: BTreeSet<Verb>,
    pub planes: BTreeSet<Plane>,
    pub aws: Adjust,
    pub gcp: Adjust,
    pub azure: Adjust,
    pub okta: Adjust,
}

/// What is wrong with a profile as written, and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown resource kind `{kind}`; Brevet knows: {known}")]
    UnknownKind { kind: String, known: String },
    #[error("unknown verb `{verb}`; write some of: list, read, write, delete, tag, admin")]
    UnknownVerb { verb: String },
    #[error("unknown plane `{plane}`; write `control`, `data` or `both`")]
    UnknownPlane { plane: String },
    #[error("kind `{kind}` has a data plane: say `plane = \"data\"` (what it holds), `\"control\"` (its configuration) or `\"both\"`")]
    PlaneNeeded { kind: String },
    #[error("the profile grants nothing: give `verbs`, or `add` permissions for a cloud")]
    Empty,
    #[error(
        "`{0}.assignable_scopes` is Azure's (a role definition's assignable scopes); remove it"
    )]
    ScopesNotAzure(&'static str),
}

impl Profile {
    pub fn parse(name: &str, spec: &ProfileSpec) -> Result<Profile, ProfileError> {
        let kind = kinds::kind(&spec.kind).ok_or_else(|| ProfileError::UnknownKind {
            kind: spec.kind.clone(),
            known: kinds::names().join(", "),
        })?;
        let verbs = spec
            .verbs
            .iter()
            .map(|v| Verb::parse(v).ok_or_else(|| ProfileError::UnknownVerb { verb: v.clone() }))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let has_data = Cloud::ALL
            .iter()
            .filter_map(|c| kind.native(*c))
            .any(|n| !n.data.is_empty() || !n.data_extra.is_empty());
        let planes: BTreeSet<Plane> = match spec.plane.as_deref() {
            Some("control") => [Plane::Control].into(),
            Some("data") => [Plane::Data].into(),
            Some("both") => [Plane::Control, Plane::Data].into(),
            Some(other) => {
                return Err(ProfileError::UnknownPlane {
                    plane: other.to_owned(),
                })
            }
            None if has_data && !verbs.is_empty() => {
                return Err(ProfileError::PlaneNeeded {
                    kind: kind.name.to_owned(),
                })
            }
            None => [Plane::Control].into(),
        };
        for (cloud, a) in [("aws", &spec.aws), ("gcp", &spec.gcp), ("okta", &spec.okta)] {
            if !a.assignable_scopes.is_empty() {
                return Err(ProfileError::ScopesNotAzure(cloud));
            }
        }
        let adds = [&spec.aws, &spec.gcp, &spec.azure, &spec.okta]
            .iter()
            .any(|a| !a.add.is_empty());
        if verbs.is_empty() && !adds {
            return Err(ProfileError::Empty);
        }
        Ok(Profile {
            name: name.to_owned(),
            description: spec.description.clone(),
            kind,
            verbs,
            planes,
            aws: spec.aws.clone(),
            gcp: spec.gcp.clone(),
            azure: spec.azure.clone(),
            okta: spec.okta.clone(),
        })
    }

    pub fn adjust(&self, cloud: Cloud) -> &Adjust {
        match cloud {
            Cloud::Aws => &self.aws,
            Cloud::Gcp => &self.gcp,
            Cloud::Azure => &self.azure,
            Cloud::Okta => &self.okta,
        }
    }
}

/// Which sensitive permissions a deployment refuses outright (`[catalog] forbid = [...]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Forbidden(pub Tags);
