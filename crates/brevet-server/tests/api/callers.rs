//! What the API's and the portal's authorization matrices share: the nine kinds of caller, the
//! rules a route states in terms of them, the app they run on, and the requests and grant the
//! rows act on.

use std::sync::Arc;

use brevet_server::testing::{InMemoryProvider, TestApp, TestConfig, TestStore};
use brevet_wire::KillBody;

use crate::world::*;

pub const MALLORY: &str = "test-mallory-token";
pub const ROOT: &str = "test-root-token";
pub const FRANK: &str = "test-frank-token";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    Nobody,
    /// A bearer token, or a session cookie, that is not one.
    BadCredential,
    /// The requester whose request and grant the row acts on.
    Owner,
    /// Another requester.
    OtherRequester,
    /// An approver that policy lets decide the owner's request.
    ApproverAllowed,
    /// An approver that policy does not let decide it.
    ApproverNotAllowed,
    Admin,
    /// A requester locked by the kill switch.
    LockedPrincipal,
    /// An admin locked by name.
    LockedAdmin,
}

pub const EVERYONE: [Who; 9] = [
    Who::Nobody,
    Who::BadCredential,
    Who::Owner,
    Who::OtherRequester,
    Who::ApproverAllowed,
    Who::ApproverNotAllowed,
    Who::Admin,
    Who::LockedPrincipal,
    Who::LockedAdmin,
];

impl Who {
    /// The caller's API token (`BadCredential`: one that is no token).
    pub fn token(self) -> Option<&'static str> {
        match self {
            Who::Nobody => None,
            Who::BadCredential => Some("not-a-token"),
            Who::Owner => Some(ALICE),
            Who::OtherRequester => Some(DAVE),
            Who::ApproverAllowed => Some(BOB),
            Who::ApproverNotAllowed => Some(FRANK),
            Who::Admin => Some(ADMIN),
            Who::LockedPrincipal => Some(MALLORY),
            Who::LockedAdmin => Some(ROOT),
        }
    }
}

/// Who a route lets in.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// No credential needed (health, documents hosts fetch, the sign-in start).
    Public,
    /// Any signed-in, unlocked principal (answers about themselves).
    Principal,
    /// Principals with the requester role.
    Requester,
    /// Requesters, and admins, who may look (the portal's request form).
    RequesterOrAdmin,
    /// The request's owner, approvers policy lets decide it, and admins (reading one request).
    OwnerApproverAdmin,
    /// Only approvers policy lets decide the request (never its owner).
    DecidingApprover,
    /// Approvers and admins (the approvals inbox).
    ApproverOrAdmin,
    /// The request's owner and admins.
    OwnerOrAdmin,
    /// Only the request's owner.
    Owner,
    /// Admins.
    Admin,
}

impl Rule {
    pub fn allows(self, who: Who) -> bool {
        use Who::*;
        match self {
            Rule::Public => true,
            Rule::Principal => matches!(
                who,
                Owner | OtherRequester | ApproverAllowed | ApproverNotAllowed | Admin
            ),
            Rule::Requester => matches!(who, Owner | OtherRequester | ApproverAllowed),
            Rule::RequesterOrAdmin => {
                matches!(who, Owner | OtherRequester | ApproverAllowed | Admin)
            }
            Rule::OwnerApproverAdmin => matches!(who, Owner | ApproverAllowed | Admin),
            Rule::DecidingApprover => matches!(who, ApproverAllowed),
            Rule::ApproverOrAdmin => matches!(who, ApproverAllowed | ApproverNotAllowed | Admin),
            Rule::OwnerOrAdmin => matches!(who, Owner | Admin),
            Rule::Owner => matches!(who, Owner),
            Rule::Admin => matches!(who, Admin),
        }
    }

    /// The callers in the order a row should try them: those it lets in last, so a state change
    /// they cause (an approval, a revocation) does not change what the others are told.
    pub fn callers(self) -> Vec<Who> {
        let mut callers = EVERYONE.to_vec();
        callers.sort_by_key(|w| self.allows(*w));
        callers
    }
}

/// The app both matrices run on: the world's policy, one principal per kind of caller, and the
/// in-memory provider on `mem:orders`.
pub async fn matrix_app() -> TestApp {
    let target = Arc::new(InMemoryProvider::with_profiles(&["db.read"]));
    let config = TestConfig::new(POLICY)
        .principal("alice", &["dba"], &["requester"], ALICE)
        .principal("bob", &["dba", "leads"], &["requester", "approver"], BOB)
        .principal("frank", &[], &["approver"], FRANK)
        .principal("admin", &[], &["admin"], ADMIN)
        .principal("dave", &["dba", "oncall"], &["requester"], DAVE)
        .principal("mallory", &["dba"], &["requester"], MALLORY)
        .principal("root", &[], &["admin"], ROOT)
        .provider("mem", target)
        .resource(ORDERS)
        .toml(&format!("[analyzer]\nazure = {:?}\n", azure_exports()));
    TestApp::start(config, TestStore::Sqlite).await.unwrap()
}

/// What the rows act on: the owner's pending request (for decisions), an approved one (to
/// activate) and an active grant.
/// The Azure fixture exports of the identity analyzer (its portal pages read them).
pub fn azure_exports() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../brevet-analyzer/tests/fixtures/azure");
    [
        "role-assignments.json",
        "role-definitions.json",
        "identities.json",
    ]
    .iter()
    .map(|f| dir.join(f).display().to_string())
    .collect()
}

pub struct Objects {
    /// A finding of the analyzer's report on [`azure_exports`].
    pub finding: String,
    pub pending: String,
    pub to_activate: String,
    pub grant: String,
}

impl Objects {
    pub async fn create(app: &TestApp) -> Objects {
        let asked = || ask("db.read", ORDERS, "10m", Some("matrix"));
        let pending = app.create_request(ALICE, &asked()).await.unwrap().id;
        let to_activate = app.create_request(ALICE, &asked()).await.unwrap().id;
        app.approve(BOB, &to_activate, None).await.unwrap();
        let granted = app.create_request(ALICE, &asked()).await.unwrap().id;
        app.approve(BOB, &granted, None).await.unwrap();
        let grant = app.activate(ALICE, &granted).await.unwrap().grant.id;
        let inputs = azure_exports()
            .iter()
            .map(|p| brevet_analyzer::Input::new(p.clone(), std::fs::File::open(p).unwrap()))
            .collect();
        let report = brevet_analyzer::azure::analyze(
            &brevet_catalog::Catalog::embedded().unwrap(),
            inputs,
            &Default::default(),
        )
        .unwrap();
        Objects {
            finding: report.findings[0].id.clone(),
            pending,
            to_activate,
            grant,
        }
    }

    /// The id a row's `{id}` stands for: the grant on grant routes, the approved request on
    /// activation, else the pending one.
    pub fn id_for(&self, path: &str) -> &str {
        if path.starts_with("/analyzer/findings/") {
            &self.finding
        } else if path.contains("/grants/{id}") {
            &self.grant
        } else if path.ends_with("/{id}/activate") {
            &self.to_activate
        } else {
            &self.pending
        }
    }
}

/// Locks mallory and root by name with the kill switch.
pub async fn lock_mallory_and_root(app: &TestApp) {
    for who in ["mallory", "root"] {
        app.kill(
            ADMIN,
            &KillBody {
                principal: Some(who.into()),
                all: false,
                reason: "matrix".into(),
            },
        )
        .await
        .unwrap();
    }
}
