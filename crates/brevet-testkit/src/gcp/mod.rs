//! A contract-faithful STAND-IN for the Google Cloud IAM APIs Brevet's GCP provider calls.
//!
//! No GCP IAM emulator exists (google-cloud-cli ships emulators for Bigtable, Datastore,
//! Firestore, Pub/Sub and Spanner only; `shared/cloud-contracts.md` §1.5), so this is Brevet's
//! own implementation, written from the published contracts:
//!
//! - the discovery documents `cloudresourcemanager.v1`, `cloudresourcemanager.v3`, `iam.v1` and
//!   `storage.v1` shipped in google-api-python-client 2.202.0
//!   (`googleapiclient/discovery_cache/documents/`): paths, request and response field names;
//! - Google's allow-policy, IAM Conditions, limits and custom-role pages and the error texts
//!   users quote from real responses, as collected in `shared/cloud-contracts.md` §1.1–§1.3.
//!
//! One loopback port serves, at Google's paths: Resource Manager v1 and v3 get/set/
//! testIamPermissions for projects, folders and organizations and `projects.get`; IAM v1 custom
//! roles of projects and organizations (create, get, list, patch, delete, undelete) and
//! predefined roles (`GET /v1/roles/…`, from Brevet's catalog); Cloud Storage bucket IAM
//! (`/storage/v1/b/{bucket}/iam`, `…/iam/testPermissions`) and `buckets.get`; and an OAuth2
//! JWT-bearer token endpoint `POST /token` that does NOT check the assertion's signature.
//! Point Google's Python client at it with `client_options={"api_endpoint": url}` (for Storage
//! `url + "/storage/v1/"`: the client replaces rootUrl *and* servicePath with the endpoint), and
//! gcloud with `CLOUDSDK_API_ENDPOINT_OVERRIDES_{CLOUDRESOURCEMANAGER,IAM}=url/`.
//!
//! Callers: `Authorization: Bearer member:<member>` (see [`FakeGcp::token_for`]) makes a call
//! act as that member; testIamPermissions answers for it (no token: nothing held). Other calls
//! are not authorized unless [`FakeGcp::enforce_callers`] is on.
//!
//! Behaviour it keeps faithfully: etags that change on every write (valid base64), stale etag →
//! 409 ABORTED (Storage: 412), a set WITHOUT etag overwrites (Google's real, dangerous
//! behaviour: a v1 write then loses every condition), the version-3 rules and the
//! `_withcond_<hash>` downgrade, the policy limits with Google's messages, custom-role quota
//! (deleted roles count until purged), soft delete / 7-day undelete / purge that removes the
//! role's bindings / 37-day id embargo, inheritance bucket → project → folders → organization,
//! and CEL conditions evaluated at a controllable clock (`request.time`, `resource.name`,
//! `resource.type`, `resource.service`; an evaluation error grants nothing).
//!
//! What it deliberately leaves out: group membership (a `group:` member matches only that exact
//! principal), deny policies, PAB, org policies, audit logs, propagation delay (changes apply at
//! once), service accounts and their keys (the token endpoint trusts any assertion),
//! `queryTestablePermissions` and `roles.list` of predefined roles, object/managed-folder IAM,
//! request quotas, pagination of anything but `roles.list`, and message texts Google has not
//! been seen to send (those name the rule in Google's style, but are not verbatim). Only a
//! sample of "not supported in custom roles" permissions is known (`roles.rs`). A role missing
//! from Brevet's catalog does not exist here.
//!
//! Controls for a shell (`cargo run -p brevet-testkit --bin fake-gcp`), all JSON:
//! `GET /_fake/clock`, `POST /_fake/clock {"now"}`, `POST /_fake/advance {"seconds"}`,
//! `POST /_fake/organizations {"id"}`, `/_fake/folders {"id","parent"}`,
//! `/_fake/projects {"id","parent"?}`, `/_fake/buckets {"name","project"}`,
//! `POST /_fake/interfere {"resource","writes"}`, `POST /_fake/role-quota {"quota"}`,
//! `POST /_fake/enforce-callers {"on"}`, `GET /_fake/policy?resource=NAME`,
//! `POST /_fake/test-permissions {"member","resource","permissions"}`, `GET /_fake/requests`.

mod condition;
mod control;
mod error;
mod http;
mod iam;
mod policy;
mod roles;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

use self::{http::lock, iam::Kind};

/// One API call the stand-in answered (control calls under `/_fake/` are not recorded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recorded {
    pub method: String,
    /// Percent-decoded (`/v1/projects/p1:setIamPolicy`).
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
    /// The `x-goog-request-reason` header (jit-access puts the justification there).
    pub reason: Option<String>,
    pub status: u16,
}

/// The stand-in, serving on its own thread and tokio runtime until dropped.
pub struct FakeGcp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    state: http::Shared,
    _server: crate::serve::Served,
}

impl FakeGcp {
    /// On a free loopback port.
    pub fn start() -> FakeGcp {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).expect("start the GCP stand-in")
    }

    /// On `addr` (the `fake-gcp` binary's `--port`).
    pub fn start_on(addr: SocketAddr) -> std::io::Result<FakeGcp> {
        let catalog = brevet_catalog::Catalog::embedded().map_err(std::io::Error::other)?;
        let state: http::Shared = Arc::new(Mutex::new(iam::Iam::new(catalog)));
        let server = crate::serve::Served::start("fake-gcp", addr, http::router(state.clone()))?;
        Ok(FakeGcp {
            url: server.url.clone(),
            state,
            _server: server,
        })
    }

    fn add(&self, kind: Kind, id: &str, parent: Option<&str>) {
        if let Err(e) = lock(&self.state).add(kind, id, parent) {
            panic!("FakeGcp: cannot add {kind:?} {id}: {e}");
        }
    }

    pub fn add_organization(&self, id: &str) {
        self.add(Kind::Organization, id, None);
    }

    /// `parent`: `organizations/1` or `folders/2`.
    pub fn add_folder(&self, id: &str, parent: &str) {
        self.add(Kind::Folder, id, Some(parent));
    }

    /// `parent`: `folders/10`, `organizations/1` or none.
    pub fn add_project(&self, id: &str, parent: Option<&str>) {
        self.add(Kind::Project, id, parent);
    }

    /// A bucket of project `project` (an id, `p1`), with the policy Cloud Storage gives a new
    /// bucket (the project's owners/editors/viewers through the legacy bucket roles).
    pub fn add_bucket(&self, name: &str, project: &str) {
        let project = if project.starts_with("projects/") {
            project.to_owned()
        } else {
            format!("projects/{project}")
        };
        self.add(Kind::Bucket, name, Some(&project));
    }

    /// The clock conditions and role lifecycles follow; starts at the real time.
    pub fn now(&self) -> DateTime<Utc> {
        lock(&self.state).now
    }

    pub fn set_now(&self, t: DateTime<Utc>) {
        lock(&self.state).now = t;
    }

    pub fn advance(&self, d: Duration) {
        let mut iam = lock(&self.state);
        iam.now += d;
    }

    /// The next `writes` setIamPolicy calls on `resource` each find that a concurrent writer changed the
    /// policy after the caller read it: the stand-in itself adds a binding
    /// {role:"roles/viewer" (for buckets "roles/storage.objectViewer"), members:["user:racer-<n>@example.com"]}
    /// (a real write: new etag) just before handling the set, so a set carrying the old etag fails
    /// (409 ABORTED for Resource Manager; 412 for Storage) and the racer's bindings must survive a correct retry.
    pub fn interfere(&self, resource: &str, writes: u32) {
        let mut iam = lock(&self.state);
        let name = iam.resolve(resource).unwrap_or_else(|| resource.to_owned());
        iam.interfere(&name, writes);
    }

    /// Custom roles allowed per project and per organization (default 300).
    pub fn set_role_quota(&self, n: usize) {
        lock(&self.state).roles.quota = n;
    }

    /// With `on`, admin calls (get/setIamPolicy, roles.*, projects.get, buckets.get) need the
    /// caller to hold the permission Google checks for them, in the stand-in's own policies.
    pub fn enforce_callers(&self, on: bool) {
        lock(&self.state).enforce_callers = on;
    }

    /// The stored policy as getIamPolicy returns it at version 3. Panics on an unknown resource.
    pub fn policy(&self, resource: &str) -> Value {
        let mut iam = lock(&self.state);
        let name = iam.resolve(resource).unwrap_or_else(|| resource.to_owned());
        iam.get_policy(&name, 3)
            .unwrap_or_else(|e| panic!("FakeGcp::policy({resource}): {e}"))
    }

    /// Replaces the stored policy without any check (a seed); gives it a new etag.
    pub fn set_policy(&self, resource: &str, policy: Value) {
        let policy = serde_json::from_value(policy)
            .unwrap_or_else(|e| panic!("FakeGcp::set_policy: not a policy: {e}"));
        let mut iam = lock(&self.state);
        let name = iam.resolve(resource).unwrap_or_else(|| resource.to_owned());
        if let Err(e) = iam.seed_policy(&name, policy) {
            panic!("FakeGcp::set_policy({resource}): {e}");
        }
    }

    /// The custom roles of `parent` (`projects/p1`, `organizations/1`), deleted ones included
    /// until purged, in the FULL view.
    pub fn roles(&self, parent: &str) -> Vec<Value> {
        let mut iam = lock(&self.state);
        iam.settle();
        let parent = iam.resolve(parent).unwrap_or_else(|| parent.to_owned());
        iam.roles
            .of_parent(&parent)
            .map(|r| r.to_json(true))
            .collect()
    }

    /// The same engine as testIamPermissions over HTTP: which of `permissions` `member` holds on `resource`
    /// now (inherited bindings from ancestors included, conditions evaluated at the fake clock).
    pub fn test_permissions(
        &self,
        member: &str,
        resource: &str,
        permissions: &[&str],
    ) -> Vec<String> {
        let mut iam = lock(&self.state);
        let Some(name) = iam.resolve(resource) else {
            return Vec::new();
        };
        let permissions: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
        iam.test_permissions(Some(member), &name, &permissions)
    }

    /// Every API call so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The bearer token that makes calls act as `member` (`user:a@example.com` →
    /// `member:user:a@example.com`).
    pub fn token_for(member: &str) -> String {
        format!("member:{member}")
    }

    /// Writes a service-account key file for `serviceAccount:brevet@p1.iam.gserviceaccount.com`
    /// into `dir` (a fresh RSA key from `ssh-keygen`) whose `token_uri` is this stand-in's
    /// `/token`: a client signs in as it would against Google (a signed JWT traded for an
    /// access token). Returns the file's path.
    pub fn write_key_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let key = dir.join("brevet-sa-rsa");
        let out = std::process::Command::new("ssh-keygen")
            .args([
                "-q", "-t", "rsa", "-b", "2048", "-m", "PKCS8", "-N", "", "-f",
            ])
            .arg(&key)
            .output()
            .expect("run ssh-keygen");
        assert!(
            out.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc = serde_json::json!({
            "type": "service_account",
            "project_id": "p1",
            "private_key_id": "k1",
            "private_key": std::fs::read_to_string(&key).expect("read the key"),
            "client_email": BREVET_SERVICE_ACCOUNT,
            "client_id": "1",
            "token_uri": format!("{}/token", self.url),
        });
        let path = dir.join("brevet-sa.json");
        std::fs::write(&path, doc.to_string()).expect("write the key file");
        path
    }
}

/// The service account [`FakeGcp::write_key_file`]'s key file signs in as.
pub const BREVET_SERVICE_ACCOUNT: &str = "brevet@p1.iam.gserviceaccount.com";
