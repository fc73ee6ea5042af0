//! What an analysis finds, the same shape for every cloud: principals, findings, the escalation
//! graph and its shortest paths, standing privilege with proposed replacements, and risk scores.

use std::sync::Arc;

use serde::Serialize;

pub use brevet_catalog::Cloud;

/// Who holds access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    Group,
    Role,
    ServiceAccount,
    /// Azure: an application's service principal.
    ServicePrincipal,
    /// Azure: a managed identity (system- or user-assigned).
    ManagedIdentity,
    /// GCP: `domain:`, `allUsers`, `allAuthenticatedUsers`, principal sets.
    Collective,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Group => "group",
            PrincipalKind::Role => "role",
            PrincipalKind::ServiceAccount => "service_account",
            PrincipalKind::ServicePrincipal => "service_principal",
            PrincipalKind::ManagedIdentity => "managed_identity",
            PrincipalKind::Collective => "collective",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The cloud's own identifier: an ARN, a GCP member (`user:a@x.com`), an Azure object id.
    pub id: String,
    pub kind: PrincipalKind,
    /// What people call it: the user/role name, the e-mail, the Azure display name.
    pub name: String,
    /// The account, project or subscription it belongs to (where known).
    pub scope: String,
    /// A machine identity (a role only services assume, a service account, a managed identity):
    /// rights-size it, but it is not a just-in-time candidate — nobody requests access for it.
    pub workload: bool,
}

/// Risk categories, at least as fine as cloudsplaining's, for every cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Can do anything, or can give itself anything (`*:*`, Owner, `setIamPolicy` on the org).
    AdminEquivalent,
    PrivilegeEscalation,
    /// Can change who may reach a resource (resource policies, ACLs, sharing, IAM bindings).
    ResourceExposure,
    DataExfiltration,
    CredentialsExposure,
    /// Unconstrained write access: can change infrastructure.
    InfrastructureModification,
    /// Every action of a service (`s3:*`), or NotAction allowing nearly everything.
    ServiceWildcard,
    /// Granted to everyone (GCP `allUsers`/`allAuthenticatedUsers`, an AWS role anyone may
    /// assume).
    PublicAccess,
    /// AWS: a role another account's principals may assume.
    CrossAccountTrust,
    /// AWS: a role compute services (EC2, ECS tasks, EKS, Lambda) assume: whoever runs code
    /// there holds it.
    ComputeTrust,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::AdminEquivalent,
        Category::PrivilegeEscalation,
        Category::ResourceExposure,
        Category::DataExfiltration,
        Category::CredentialsExposure,
        Category::InfrastructureModification,
        Category::ServiceWildcard,
        Category::PublicAccess,
        Category::CrossAccountTrust,
        Category::ComputeTrust,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::AdminEquivalent => "admin_equivalent",
            Category::PrivilegeEscalation => "privilege_escalation",
            Category::ResourceExposure => "resource_exposure",
            Category::DataExfiltration => "data_exfiltration",
            Category::CredentialsExposure => "credentials_exposure",
            Category::InfrastructureModification => "infrastructure_modification",
            Category::ServiceWildcard => "service_wildcard",
            Category::PublicAccess => "public_access",
            Category::CrossAccountTrust => "cross_account_trust",
            Category::ComputeTrust => "compute_trust",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Category::AdminEquivalent => "Admin-equivalent",
            Category::PrivilegeEscalation => "Privilege escalation",
            Category::ResourceExposure => "Resource exposure",
            Category::DataExfiltration => "Data exfiltration",
            Category::CredentialsExposure => "Credentials exposure",
            Category::InfrastructureModification => "Infrastructure modification",
            Category::ServiceWildcard => "Service-wide wildcard",
            Category::PublicAccess => "Public access",
            Category::CrossAccountTrust => "Cross-account trust",
            Category::ComputeTrust => "Assumable by compute",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The base severity of the category; the finding may raise it (unconditioned, broad).
    pub fn severity(self) -> Severity {
        match self {
            Category::AdminEquivalent | Category::PublicAccess => Severity::Critical,
            Category::PrivilegeEscalation | Category::CredentialsExposure => Severity::High,
            Category::ResourceExposure | Category::DataExfiltration => Severity::Medium,
            Category::CrossAccountTrust => Severity::Medium,
            Category::InfrastructureModification
            | Category::ServiceWildcard
            | Category::ComputeTrust => Severity::Low,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    /// `low`, `medium`, `high` or `critical`.
    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Points toward a risk score.
    pub fn weight(self) -> u32 {
        match self {
            Severity::Low => 1,
            Severity::Medium => 3,
            Severity::High => 8,
            Severity::Critical => 20,
        }
    }
}

/// One risky thing a policy/role allows, with what allows it and who holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable across runs on the same input (a hash of cloud, category, policy and permissions).
    pub id: String,
    pub cloud: Cloud,
    pub category: Category,
    pub severity: Severity,
    /// The policy, role or role definition behind it (`arn:aws:iam::1:policy/x`, `roles/owner`,
    /// `Contributor`), or the principal's inline policy as `principal/inline-name`.
    pub policy: String,
    /// Short human line: "iam:CreatePolicyVersion allows rewriting any managed policy".
    pub title: String,
    /// The permissions behind the finding, as the cloud names them (expanded from wildcards).
    pub permissions: Vec<String>,
    /// Where they apply: `*`, ARNs, GCP resource names, Azure scopes.
    pub resources: Vec<String>,
    /// Principals holding it (ids), directly or through a group or inheritance.
    pub principals: Vec<String>,
    /// Set when a condition limits the grant (the finding may then not be exploitable).
    pub conditional: bool,
    /// Why it is risky, in a sentence or two.
    pub detail: String,
}

/// "`from` can become or act as `to`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// Shared with the other edges of the same principal (a graph can have a million edges;
    /// each holds three pointers, not three copies).
    pub from: Arc<str>,
    pub to: Arc<str>,
    /// A short tag: `sts:AssumeRole`, `iam:CreateAccessKey`, `actAs`, `roleAssignments/write`.
    pub via: Arc<str>,
    /// What this edge adds to the sentence [`Report::edge_kinds`] gives for its `via`; empty
    /// when nothing (a million-edge graph should not repeat a million sentences).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Only when a policy condition holds (the analysis cannot know the request's context).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub conditional: bool,
}

/// The shortest way from a principal to an admin-equivalent one.
#[derive(Debug, Clone, Serialize)]
pub struct EscalationPath {
    pub principal: String,
    /// The admin-equivalent principal reached.
    pub admin: String,
    /// Indices into [`Report::edges`], in order.
    pub edges: Vec<usize>,
}

/// A permanent grant of admin-equivalent or sensitive access, and what to do instead.
#[derive(Debug, Clone, Serialize)]
pub struct StandingGrant {
    pub principal: String,
    /// The policy or role granting it, and how (`direct`, `group NAME`, `inherited from folders/1`).
    pub policy: String,
    pub via: String,
    pub scope: String,
    pub severity: Severity,
    pub admin_equivalent: bool,
    /// The sensitive permissions it carries (tagged or in a finding), capped for display.
    pub sensitive: Vec<String>,
    /// From last-accessed data, when supplied.
    pub usage: Option<Usage>,
    /// None for workload identities (rights-size them; nobody requests access for a machine).
    pub proposal: Option<Proposal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// The window the data covers, as the export says (`2026-09-01 … 2026-12-01`) or the
    /// number of days.
    pub window: String,
    /// Services or permissions used in the window.
    pub used: Vec<String>,
    /// Services or permissions granted but unused in the window.
    pub unused: Vec<String>,
    /// Nothing at all used in the window.
    pub unused_entirely: bool,
}

/// A Brevet profile and Cedar policy that make a standing grant eligible-only.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    /// The profile name (`aws.alice-admin`).
    pub profile: String,
    /// What this grant adds to the Brevet config: the identity (the profile and resource it
    /// uses are in [`Report::profiles`], shared by every grant of the same policy).
    pub config: String,
    /// The Cedar `permit` that makes the principal eligible (with approval for admin access).
    pub cedar: String,
    /// Permissions kept in the profile and removed by rights-sizing (unused in the window);
    /// the first 50 of each, the counts in full.
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub kept_count: usize,
    pub removed_count: usize,
}

/// A proposed profile with its resource, as TOML, once per profile.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileProposal {
    pub profile: String,
    pub config: String,
}

/// A principal's or a scope's risk score and what it is made of.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub subject: String,
    pub score: u32,
    /// `(points, why)`, largest first.
    pub parts: Vec<(u32, String)>,
}

/// Something in the input the analysis could not use fully (a custom role without its
/// permissions, a policy the export does not contain, an unknown action).
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    pub file: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub clouds: Vec<Cloud>,
    /// The accounts, projects/folders/organisations or subscriptions covered.
    pub scopes: Vec<String>,
    pub principals: Vec<Principal>,
    pub findings: Vec<Finding>,
    pub edges: Vec<Edge>,
    /// `via` → what an edge of that kind means.
    pub edge_kinds: std::collections::BTreeMap<String, String>,
    /// Admin-equivalent principals.
    pub admins: Vec<String>,
    /// Why each admin-equivalent principal is one, where the analysis can say more than its
    /// findings do (AWS: the self-modifying call, or the principal it can act as and empower).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub admin_reasons: std::collections::BTreeMap<String, String>,
    pub paths: Vec<EscalationPath>,
    pub standing: Vec<StandingGrant>,
    pub principal_scores: Vec<Score>,
    pub scope_scores: Vec<Score>,
    pub warnings: Vec<Warning>,
    /// Findings dropped by the exclusions file, counted so nothing disappears silently.
    pub excluded: usize,
    /// The proposed profiles (with their resources), each once.
    pub profiles: Vec<ProfileProposal>,
    /// Every proposal's config, merged into one paste-ready block.
    pub proposed_config: String,
    /// Every proposal's Cedar policy.
    pub proposed_cedar: String,
}

impl Report {
    pub fn principal(&self, id: &str) -> Option<&Principal> {
        self.principals.iter().find(|p| p.id == id)
    }

    /// Findings per category, in `Category::ALL` order.
    pub fn counts(&self) -> Vec<(Category, usize)> {
        Category::ALL
            .into_iter()
            .map(|c| (c, self.findings.iter().filter(|f| f.category == c).count()))
            .collect()
    }
}

/// A stable id for a finding.
pub(crate) fn finding_id(
    cloud: Cloud,
    category: Category,
    policy: &str,
    perms: &[String],
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [cloud.as_str(), category.as_str(), policy] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for p in perms {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..6])
}

impl Edge {
    /// The full sentence: the kind's meaning, or this edge's own.
    pub fn sentence<'a>(&'a self, report: &'a Report) -> &'a str {
        if self.reason.is_empty() {
            report
                .edge_kinds
                .get(&*self.via)
                .map(String::as_str)
                .unwrap_or("")
        } else {
            &self.reason
        }
    }
}
