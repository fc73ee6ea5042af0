//! Answers about the permission catalogs and neutral access profiles (`/v1/catalog/…`,
//! `/v1/profiles/…`), written the same way offline (`--config`) and by the server.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One search result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogHit {
    /// `permission` or `role`.
    pub entry: String,
    /// `aws`, `gcp` or `azure`.
    pub cloud: String,
    pub name: String,
    /// Access level (permissions) or title (roles).
    pub detail: String,
    /// Sensitivity tags (`privilege-escalation`, `credential-exposure`, `data-access`,
    /// `resource-exposure`).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A permission or a precut role, whole.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "entry", rename_all = "lowercase")]
pub enum CatalogEntry {
    Permission(PermissionView),
    Role(RoleView),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PermissionView {
    pub cloud: String,
    pub name: String,
    pub service: String,
    /// `List`, `Read`, `Write`, `Tagging`, `Permissions management`.
    pub access: String,
    /// The neutral verb class: list, read, write, delete, tag, admin.
    pub verb: String,
    /// Azure: `control` (an action) or `data` (a data action). AWS and GCP do not say; a
    /// profile's resource kind decides there.
    #[serde(default)]
    pub plane: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// AWS: resource types with their ARN templates (`object: arn:${Partition}:s3:::…`).
    #[serde(default)]
    pub resource_types: Vec<String>,
    #[serde(default)]
    pub dependent_actions: Vec<String>,
    #[serde(default)]
    pub condition_keys: Vec<String>,
    /// GCP: `project` (a project custom role may hold it) or `organization`.
    #[serde(default)]
    pub custom_role_level: Option<String>,
    /// The precut roles that hold it, smallest first (at most 10), and how many there are.
    #[serde(default)]
    pub held_by: Vec<RoleRef>,
    pub held_by_count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleRef {
    pub name: String,
    pub title: String,
    /// How many permissions the role holds.
    pub size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleView {
    pub cloud: String,
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub stage: String,
    /// How many permissions it holds, expanded.
    pub size: usize,
    /// The permissions as its source writes them (wildcards; `-` marks an exclusion).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Its sensitive permissions (at most 20).
    #[serde(default)]
    pub sensitive: Vec<String>,
}

/// A neutral profile compiled for one cloud and resource.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CompiledProfile {
    pub profile: String,
    pub cloud: String,
    /// The ARNs, GCP scope or Azure scope it was compiled for.
    pub target: String,
    pub permissions: Vec<String>,
    /// The native document: an IAM policy, `{role, binding}` for GCP, an Azure role definition.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The precut roles that would also cover the task, smallest first.
    #[serde(default)]
    pub compared: Vec<Comparison>,
}

/// The compiled set beside a precut role.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Comparison {
    pub role: String,
    pub title: String,
    /// Permissions the role holds.
    pub role_size: usize,
    /// Permissions the compiled profile holds.
    pub compiled_size: usize,
    /// Whether every compiled permission is in the role.
    pub covers: bool,
}

/// A profile in plain words, per cloud.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProfileExplanation {
    pub profile: String,
    pub summary: String,
    pub clouds: Vec<CloudExplanation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloudExplanation {
    pub cloud: String,
    /// What it was compiled against to explain it (an example resource of the kind).
    pub example_target: String,
    /// The compiled permissions, or why the profile does not compile for this cloud.
    pub compiled: Option<CompiledProfile>,
    pub error: Option<String>,
}

/// `POST /v1/profiles/{name}/compile`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompileBody {
    /// AWS ARNs, a GCP scope (and optionally the resource's full name), or an Azure scope.
    pub resource: Vec<String>,
}
