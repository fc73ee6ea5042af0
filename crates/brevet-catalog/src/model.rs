//! What the catalogs hold: permissions (AWS actions, GCP permissions, Azure operations), precut
//! roles (AWS managed policies, GCP predefined roles, Azure built-in roles) and AWS resource types.

use serde::{Deserialize, Serialize};

/// The clouds Brevet has catalogs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
    /// Okta's admin permissions (custom admin roles, resource sets): a SaaS, in the same model.
    Okta,
}

impl Cloud {
    pub const ALL: [Cloud; 4] = [Cloud::Aws, Cloud::Gcp, Cloud::Azure, Cloud::Okta];

    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
            Cloud::Okta => "okta",
        }
    }

    /// Whether the cloud compares permission names without case (AWS, Azure).
    pub fn case_insensitive(self) -> bool {
        matches!(self, Cloud::Aws | Cloud::Azure)
    }

    /// Parses `aws`, `gcp`, `azure` or `okta`.
    pub fn parse(s: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The AWS Service Authorization Reference access level; GCP permissions and Azure operations
/// are given the level their verb implies, so one filter works for every cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Access {
    List,
    Read,
    Write,
    Tagging,
    PermissionsManagement,
}

impl Access {
    pub const ALL: [Access; 5] = [
        Access::List,
        Access::Read,
        Access::Write,
        Access::Tagging,
        Access::PermissionsManagement,
    ];

    /// The name AWS uses (`Permissions management`).
    pub fn label(self) -> &'static str {
        match self {
            Access::List => "List",
            Access::Read => "Read",
            Access::Write => "Write",
            Access::Tagging => "Tagging",
            Access::PermissionsManagement => "Permissions management",
        }
    }

    /// The short name used on the command line (`permissions-management`).
    pub fn flag(self) -> &'static str {
        match self {
            Access::List => "list",
            Access::Read => "read",
            Access::Write => "write",
            Access::Tagging => "tagging",
            Access::PermissionsManagement => "permissions-management",
        }
    }

    /// Parses a flag name or AWS label, case-insensitively.
    pub fn parse(s: &str) -> Option<Access> {
        let s = s.to_ascii_lowercase().replace([' ', '_'], "-");
        Access::ALL
            .into_iter()
            .find(|a| a.flag() == s || (s == "tag" && *a == Access::Tagging))
    }
}

/// The neutral verb classes a profile is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    List,
    Read,
    Write,
    Delete,
    Tag,
    /// Permissions management: changing who may do what (IAM policies, role assignments).
    Admin,
}

impl Verb {
    pub const ALL: [Verb; 6] = [
        Verb::List,
        Verb::Read,
        Verb::Write,
        Verb::Delete,
        Verb::Tag,
        Verb::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Read => "read",
            Verb::Write => "write",
            Verb::Delete => "delete",
            Verb::Tag => "tag",
            Verb::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Control plane (configuring a resource) or data plane (what it holds). Only Azure says so for
/// every operation (`actions` vs `dataActions`); for AWS and GCP the resource kinds decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    Control,
    Data,
}

impl Plane {
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Control => "control",
            Plane::Data => "data",
        }
    }
}

/// Sensitivity tags, from the published lists of privilege-escalation, credential-exposure,
/// data-access and resource-exposure permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tags(u8);

impl Tags {
    pub const PRIV_ESC: Tags = Tags(1);
    pub const CREDENTIAL_EXPOSURE: Tags = Tags(2);
    pub const DATA_ACCESS: Tags = Tags(4);
    pub const RESOURCE_EXPOSURE: Tags = Tags(8);
    const NAMES: [(Tags, &'static str); 4] = [
        (Tags::PRIV_ESC, "privilege-escalation"),
        (Tags::CREDENTIAL_EXPOSURE, "credential-exposure"),
        (Tags::DATA_ACCESS, "data-access"),
        (Tags::RESOURCE_EXPOSURE, "resource-exposure"),
    ];

    pub fn contains(self, other: Tags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn insert(&mut self, other: Tags) {
        self.0 |= other.0;
    }
    /// Tags that can hand the grantee more than the grant: escalation or exposed credentials.
    pub fn is_dangerous(self) -> bool {
        self.contains(Tags::PRIV_ESC) || self.contains(Tags::CREDENTIAL_EXPOSURE)
    }
    pub fn names(self) -> Vec<&'static str> {
        Tags::NAMES
            .iter()
            .filter(|(t, _)| self.contains(*t))
            .map(|(_, n)| *n)
            .collect()
    }
    /// Parses one tag name (`privilege-escalation`, or the source's `PrivEsc`).
    pub fn parse(s: &str) -> Option<Tags> {
        match s {
            "PrivEsc" => Some(Tags::PRIV_ESC),
            "CredentialExposure" => Some(Tags::CREDENTIAL_EXPOSURE),
            "DataAccess" => Some(Tags::DATA_ACCESS),
            "ResourceExposure" => Some(Tags::RESOURCE_EXPOSURE),
            _ => Tags::NAMES.iter().find(|(_, n)| *n == s).map(|(t, _)| *t),
        }
    }
}

/// Where a GCP permission may be granted through a custom role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GcpLevel {
    /// Usable in a project-level (and organisation-level) custom role.
    Project,
    /// Only meaningful at the organisation (or folder/billing account) level: a project custom
    /// role cannot hold it.
    Organization,
}

/// One permission: an AWS action (`s3:GetObject`), a GCP permission (`storage.objects.get`) or an
/// Azure operation (`Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Permission {
    pub cloud: Cloud,
    /// As the cloud writes it.
    pub name: String,
    pub access: Access,
    pub verb: Verb,
    pub plane: Plane,
    pub tags: Tags,
    /// AWS's description; empty where the source has none.
    pub description: String,
    /// AWS: the resource types it acts on (indices into [`crate::Catalog::resource_types`]),
    /// `required` as AWS marks it.
    pub resource_types: Vec<ResourceUse>,
    /// AWS: actions the caller also needs for this one to succeed.
    pub dependent: Vec<String>,
    /// AWS: condition keys the action supports.
    /// Indices into [`crate::Snapshot::condition_keys`] (a few thousand keys shared by 22,000
    /// actions: stored once, so loading allocates far less).
    pub condition_keys: Vec<u32>,
    /// GCP only.
    pub gcp_level: Option<GcpLevel>,
}

impl Permission {
    /// The service part: `s3`, `storage`, `Microsoft.Storage`.
    pub fn service(&self) -> &str {
        let sep = match self.cloud {
            Cloud::Aws => ':',
            Cloud::Gcp | Cloud::Okta => '.',
            Cloud::Azure => '/',
        };
        self.name.split(sep).next().unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUse {
    pub resource_type: u32,
    pub required: bool,
}

/// An AWS resource type with its ARN template (`arn:${Partition}:s3:::${BucketName}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceType {
    pub service: String,
    pub name: String,
    pub arn: String,
}

/// A precut role: an AWS managed policy, a GCP predefined role, an Azure built-in role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub cloud: Cloud,
    /// `arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess`, `roles/storage.objectViewer`, the
    /// Azure role's name (`Storage Blob Data Reader`).
    pub name: String,
    /// Title or short name (`AmazonS3ReadOnlyAccess`, `Storage Object Viewer`, the Azure id).
    pub title: String,
    pub description: String,
    /// What it allows, expanded against the catalog: indices into [`crate::Catalog::permissions`].
    pub permissions: Vec<u32>,
    /// The patterns as the source writes them (wildcards, `notActions` shown with a `-`).
    pub patterns: Vec<String>,
    /// GCP launch stage (`GA`, `BETA`, `DEPRECATED`), AWS/Azure: empty.
    pub stage: String,
}
