//! The permission catalogs of AWS, GCP and Azure in one model: every permission a cloud knows
//! (AWS actions, GCP permissions, Azure operations), with its access level, neutral verb class,
//! plane and sensitivity tags; every precut role (AWS managed policies, GCP predefined roles,
//! Azure built-in roles) expanded to those permissions; and search over all of it.
//!
//! A compact snapshot built from the clouds' published dumps ships inside the binary
//! ([`Catalog::embedded`]); `brevet catalog refresh` builds a newer one ([`refresh`]) and the
//! config may point at it ([`SharedCatalog::load_file`]). This crate does no I/O beyond loading.

pub mod compile;
mod glob;
pub mod kinds;
mod language;
pub mod model;
pub mod profile;
pub mod refresh;
pub mod search;
mod shared;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

pub use glob::Pattern;
pub use language::{Checked, Language};
pub use model::*;
pub use search::{Hit, IndexData, Query};
pub use shared::SharedCatalog;

/// The snapshot format's version; a snapshot of another version is refused with the fix.
const FORMAT: u32 = 2;

/// The snapshot shipped with this build (see `scripts/catalog-snapshot`).
static EMBEDDED: &[u8] = include_bytes!("../data/catalog.bin");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog source {path}: {reason}")]
    Source { path: PathBuf, reason: String },
    #[error("no catalog source given: name at least one of --aws DIR, --gcp DIR, --azure FILE")]
    NoSources,
    #[error("catalog snapshot {origin}: {reason}; rebuild it with `brevet catalog refresh` from this version of Brevet")]
    Snapshot { origin: String, reason: String },
    #[error("{reason}")]
    Embedded { reason: String },
    #[error("catalog snapshot {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// What a snapshot holds, as stored (postcard, LZ4-compressed: it decompresses several times
/// faster than gzip, which would take most of the start-up budget on its own).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    /// Where each cloud's part came from, with its licence (printed by `brevet catalog refresh`).
    pub sources: Vec<String>,
    pub permissions: Vec<Permission>,
    pub resource_types: Vec<ResourceType>,
    /// AWS condition keys, each once.
    pub condition_keys: Vec<String>,
    pub roles: Vec<Role>,
    /// The search index over the names above, built when the snapshot is.
    pub index: Option<IndexData>,
}

impl Snapshot {
    /// Builds the search index into the snapshot (`catalog refresh` does this before writing).
    pub fn index(&mut self) {
        self.index = None;
        self.index = Some(search::Index::build(self).to_data());
    }

    /// The compressed bytes of this snapshot.
    pub fn encode(&self) -> Vec<u8> {
        let mut snap = self.clone();
        snap.format = FORMAT;
        let raw = postcard::to_stdvec(&snap).expect("a snapshot serializes");
        lz4_flex::compress_prepend_size(&raw)
    }

    fn decode(bytes: &[u8], origin: &str) -> Result<Snapshot, CatalogError> {
        let err = |reason: String| CatalogError::Snapshot {
            origin: origin.to_owned(),
            reason,
        };
        let raw = lz4_flex::decompress_size_prepended(bytes)
            .map_err(|e| err(format!("not a compressed snapshot ({e})")))?;
        // The format comes first, so a snapshot of another version is named as such rather than
        // failing somewhere in its middle.
        let (format, _) = postcard::take_from_bytes::<u32>(&raw)
            .map_err(|e| err(format!("not a snapshot ({e})")))?;
        if format != FORMAT {
            return Err(err(format!(
                "format {format} (this Brevet reads format {FORMAT})"
            )));
        }
        let snap: Snapshot =
            postcard::from_bytes(&raw).map_err(|e| err(format!("not a snapshot ({e})")))?;
        Ok(snap)
    }
}

/// 46,000 names hashed at first use: a fast non-cryptographic hasher (the keys are the
/// catalog's own, not attacker-chosen).
type FastMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

#[derive(Debug)]
struct Lookups {
    /// Lower-cased name → permission, per cloud (AWS and Azure names are case-insensitive; GCP's
    /// are checked for exact case after the lookup).
    by_name: FastMap<(Cloud, String), u32>,
    roles_by_name: FastMap<(Cloud, String), u32>,
    /// Service (`s3`, `storage`, `microsoft.storage`) → its permissions.
    by_service: FastMap<(Cloud, String), Vec<u32>>,
    /// AWS service → its resource types.
    types_by_service: FastMap<String, Vec<u32>>,
}

/// The catalogs, loaded, with lookups by name.
pub struct Catalog {
    snap: Snapshot,
    lookups: OnceLock<Lookups>,
    /// Permission → the roles holding it, built on first use.
    holders: OnceLock<Vec<Vec<u32>>>,
    index: OnceLock<search::Index>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("permissions", &self.snap.permissions.len())
            .field("roles", &self.snap.roles.len())
            .field("sources", &self.snap.sources)
            .finish()
    }
}

impl Catalog {
    /// The snapshot built into this binary, decoded once per process and shared (for as long
    /// as nobody releases it: see [`SharedCatalog`]).
    pub fn embedded() -> Result<Arc<Catalog>, CatalogError> {
        Ok(SharedCatalog::embedded()?.get())
    }

    /// Decodes the embedded snapshot afresh (what a start costs; for the benchmark).
    pub fn decode_embedded() -> Result<Catalog, CatalogError> {
        Ok(Catalog::new(Snapshot::decode(
            EMBEDDED,
            "built into brevet",
        )?))
    }

    pub fn new(mut snap: Snapshot) -> Catalog {
        let index = OnceLock::new();
        if let Some(i) = snap
            .index
            .take()
            .and_then(|d| search::Index::from_data(d, &snap))
        {
            let _ = index.set(i);
        }
        Catalog {
            snap,
            lookups: OnceLock::new(),
            holders: OnceLock::new(),
            index,
        }
    }

    /// The name lookups, built on first use (a `catalog search` needs none of them).
    fn lookups(&self) -> &Lookups {
        self.lookups.get_or_init(|| {
            let snap = &self.snap;
            let mut by_service: FastMap<(Cloud, String), Vec<u32>> = FastMap::default();
            for (i, p) in snap.permissions.iter().enumerate() {
                by_service
                    .entry((p.cloud, p.service().to_ascii_lowercase()))
                    .or_default()
                    .push(i as u32);
            }
            let by_name = snap
                .permissions
                .iter()
                .enumerate()
                .map(|(i, p)| ((p.cloud, p.name.to_ascii_lowercase()), i as u32))
                .collect();
            let roles_by_name = snap
                .roles
                .iter()
                .enumerate()
                .flat_map(|(i, r)| {
                    [
                        ((r.cloud, r.name.to_ascii_lowercase()), i as u32),
                        ((r.cloud, r.title.to_ascii_lowercase()), i as u32),
                    ]
                })
                .collect();
            let mut types_by_service: FastMap<String, Vec<u32>> = FastMap::default();
            for (i, t) in snap.resource_types.iter().enumerate() {
                types_by_service
                    .entry(t.service.to_ascii_lowercase())
                    .or_default()
                    .push(i as u32);
            }
            Lookups {
                by_name,
                roles_by_name,
                by_service,
                types_by_service,
            }
        })
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    pub fn permissions(&self) -> &[Permission] {
        &self.snap.permissions
    }

    pub fn roles(&self) -> &[Role] {
        &self.snap.roles
    }

    pub fn resource_types(&self) -> &[ResourceType] {
        &self.snap.resource_types
    }

    /// The condition keys of a permission, by name.
    pub fn condition_keys<'a>(&'a self, p: &'a Permission) -> impl Iterator<Item = &'a str> + 'a {
        p.condition_keys
            .iter()
            .filter_map(|&i| self.snap.condition_keys.get(i as usize).map(String::as_str))
    }

    /// Which clouds this catalog covers.
    pub fn clouds(&self) -> Vec<Cloud> {
        let mut c: Vec<Cloud> = self.snap.permissions.iter().map(|p| p.cloud).collect();
        c.sort();
        c.dedup();
        c
    }

    pub fn permission(&self, cloud: Cloud, name: &str) -> Option<&Permission> {
        self.permission_index(cloud, name)
            .map(|i| &self.snap.permissions[i as usize])
    }

    pub fn permission_index(&self, cloud: Cloud, name: &str) -> Option<u32> {
        self.lookups()
            .by_name
            .get(&(cloud, name.to_ascii_lowercase()))
            .copied()
            .filter(|&i| {
                // GCP and Okta permissions are case-sensitive: `storage.objects.Get` is not one.
                cloud.case_insensitive() || self.snap.permissions[i as usize].name == name
            })
    }

    /// A role by name or title (`roles/storage.objectViewer`, `AmazonS3ReadOnlyAccess`, its full
    /// ARN, `Storage Blob Data Reader`).
    pub fn role(&self, cloud: Cloud, name: &str) -> Option<&Role> {
        self.lookups()
            .roles_by_name
            .get(&(cloud, name.to_ascii_lowercase()))
            .map(|&i| &self.snap.roles[i as usize])
    }

    /// The permissions of `cloud` a pattern names (`s3:Get*`, `Microsoft.Storage/*/read`), in
    /// catalog order; a name without wildcards gives at most itself.
    pub fn expand(&self, cloud: Cloud, pattern: &str) -> Vec<u32> {
        if !Pattern::is_wildcard(pattern) {
            return self.permission_index(cloud, pattern).into_iter().collect();
        }
        if cloud == Cloud::Azure && pattern.contains("/*/") {
            let ps = Pattern::azure(pattern);
            return self
                .snap
                .permissions
                .iter()
                .enumerate()
                .filter(|(_, perm)| perm.cloud == cloud && ps.iter().any(|p| p.matches(&perm.name)))
                .map(|(i, _)| i as u32)
                .collect();
        }
        let p = Pattern::new(pattern, cloud.case_insensitive());
        let sep = match cloud {
            Cloud::Aws => ':',
            Cloud::Gcp | Cloud::Okta => '.',
            Cloud::Azure => '/',
        };
        let service = pattern.split(sep).next().unwrap_or_default();
        if pattern.contains(sep) && !Pattern::is_wildcard(service) {
            return self
                .in_service(cloud, service)
                .iter()
                .copied()
                .filter(|&i| p.matches(&self.snap.permissions[i as usize].name))
                .collect();
        }
        self.snap
            .permissions
            .iter()
            .enumerate()
            .filter(|(_, perm)| perm.cloud == cloud && p.matches(&perm.name))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// The AWS resource types of one service (`s3`), in catalog order.
    pub fn resource_types_of(&self, service: &str) -> &[u32] {
        self.lookups()
            .types_by_service
            .get(&service.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The permissions of one service (`s3`, `storage`, `Microsoft.Storage`), in catalog order.
    pub fn in_service(&self, cloud: Cloud, service: &str) -> &[u32] {
        self.lookups()
            .by_service
            .get(&(cloud, service.to_ascii_lowercase()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The precut roles that hold permission `index`, smallest first.
    pub fn roles_holding(&self, index: u32) -> Vec<&Role> {
        let holders = self.holders.get_or_init(|| {
            let mut h = vec![Vec::new(); self.snap.permissions.len()];
            for (ri, r) in self.snap.roles.iter().enumerate() {
                for &p in &r.permissions {
                    h[p as usize].push(ri as u32);
                }
            }
            h
        });
        let mut roles: Vec<&Role> = holders[index as usize]
            .iter()
            .map(|&r| &self.snap.roles[r as usize])
            .collect();
        roles.sort_by_key(|r| (r.permissions.len(), r.name.clone()));
        roles
    }

    /// Ranked, typo-tolerant search over permission and role names (and AWS descriptions'
    /// words are not searched: names are what people type).
    pub fn search(&self, query: &Query) -> Vec<Hit> {
        self.index
            .get_or_init(|| search::Index::build(&self.snap))
            .search(&self.snap, query)
    }
}
