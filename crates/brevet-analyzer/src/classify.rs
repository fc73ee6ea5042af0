//! Risk categories of a permission set, from the catalog's sensitivity tags and access levels —
//! one rule for every cloud (AWS adds cloudsplaining's escalation methods in `aws/`).

use std::collections::BTreeMap;

use brevet_catalog::{Access, Catalog, Cloud, Tags};

use crate::permset::PermSet;
use crate::report::Category;

/// The permissions of `set` behind each category, by name, sorted.
pub fn classify(catalog: &Catalog, cloud: Cloud, set: &PermSet) -> BTreeMap<Category, Vec<String>> {
    let mut out: BTreeMap<Category, Vec<String>> = BTreeMap::new();
    let perms = catalog.permissions();
    for i in set.iter() {
        let p = &perms[i as usize];
        if p.cloud != cloud {
            continue;
        }
        let mut put = |c: Category| out.entry(c).or_default().push(p.name.clone());
        if p.tags.contains(Tags::PRIV_ESC) {
            put(Category::PrivilegeEscalation);
        }
        if p.tags.contains(Tags::CREDENTIAL_EXPOSURE) || reads_secrets(cloud, &p.name) {
            put(Category::CredentialsExposure);
        }
        if p.tags.contains(Tags::DATA_ACCESS) && p.access == Access::Read {
            put(Category::DataExfiltration);
        }
        if p.tags.contains(Tags::RESOURCE_EXPOSURE) || p.access == Access::PermissionsManagement {
            put(Category::ResourceExposure);
        }
        if p.access == Access::Write {
            put(Category::InfrastructureModification);
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    let wild = whole_services(catalog, cloud, set);
    if !wild.is_empty() {
        out.insert(Category::ServiceWildcard, wild);
    }
    out
}

/// Permissions that hand out secret material the published sensitivity lists leave untagged:
/// secret values, decryption, key strings.
fn reads_secrets(cloud: Cloud, name: &str) -> bool {
    match cloud {
        Cloud::Gcp => matches!(
            name,
            "secretmanager.versions.access"
                | "cloudkms.cryptoKeyVersions.useToDecrypt"
                | "storage.hmacKeys.create"
                | "apikeys.keys.getKeyString"
                | "iam.serviceAccounts.getAccessToken"
        ),
        Cloud::Azure => {
            let n = name.to_ascii_lowercase();
            n.ends_with("/secrets/getsecret/action")
                || n.ends_with("/keys/decrypt/action")
                || n.ends_with("/keys/unwrap/action")
        }
        _ => false,
    }
}

/// Services of which `set` holds every permission (at least five of them: a two-permission
/// service held whole is not a wildcard worth a finding), as `service:*`-style names.
pub fn whole_services(catalog: &Catalog, cloud: Cloud, set: &PermSet) -> Vec<String> {
    let perms = catalog.permissions();
    let mut services: Vec<&str> = set
        .iter()
        .map(|i| &perms[i as usize])
        .filter(|p| p.cloud == cloud)
        .map(|p| p.service())
        .collect();
    services.sort_unstable();
    services.dedup();
    let sep = match cloud {
        Cloud::Aws => ":",
        Cloud::Azure => "/",
        Cloud::Gcp | Cloud::Okta => ".",
    };
    services
        .into_iter()
        .filter(|s| {
            let all = catalog.in_service(cloud, s);
            all.len() >= 5 && all.iter().all(|&i| set.contains(i))
        })
        .map(|s| format!("{s}{sep}*"))
        .collect()
}

/// A one-line reason per category, for findings.
pub fn explain(category: Category, cloud: Cloud) -> &'static str {
    match (category, cloud) {
        (Category::AdminEquivalent, _) => {
            "Can do anything in scope, or can grant itself anything: the account is only as safe as this principal's credentials."
        }
        (Category::PrivilegeEscalation, _) => {
            "Can gain permissions it was not given: act as a more privileged identity, or change its own or others' permissions."
        }
        (Category::ResourceExposure, _) => {
            "Can change who may reach a resource (resource policies, IAM bindings, sharing), possibly exposing it outside the organisation."
        }
        (Category::DataExfiltration, _) => {
            "Can read sensitive data (objects, secrets' values, database contents) across every resource in scope."
        }
        (Category::CredentialsExposure, _) => {
            "Can create or read credentials (keys, tokens, passwords), which outlive any later change to the grant."
        }
        (Category::InfrastructureModification, _) => {
            "Can change or delete infrastructure without a resource constraint."
        }
        (Category::ServiceWildcard, _) => {
            "Holds every action of a service, including ones added later by the cloud."
        }
        (Category::PublicAccess, _) => {
            "Granted to everyone on the internet or every authenticated account."
        }
        (Category::CrossAccountTrust, _) => {
            "Principals of another account may assume the role: its access is only as safe as that account."
        }
        (Category::ComputeTrust, _) => {
            "Compute services assume the role: anyone who can run code there, or pass the role to new compute, acts with it."
        }
    }
}
