//! Signing in: turning a verified identity into a session (portal cookie or CLI bearer token),
//! and signing out. The same rules whatever the method: a locked principal cannot sign in, roles
//! and groups from the config add to those from the identity provider, every sign-in and
//! sign-out is audited.

use std::collections::BTreeSet;

use brevet_audit::{AuditDraft, EventKind};
use brevet_core::{Principal, PrincipalId};
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::{
    auth::{hash_token, new_session_token},
    broker::{Broker, BrokerError},
};

/// Where a session is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Browser,
    Cli,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Cli => "cli",
        }
    }
}

/// A new session: the token (shown once, to its owner) and what it carries.
pub struct NewSession {
    pub token: String,
    pub principal: Principal,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Adds what the config says about a principal (groups, roles) to what sign-in established.
pub fn with_config(broker: &Broker, mut p: Principal) -> Principal {
    if let Some(c) = broker.principal_config(&p.id) {
        c.add_to(&mut p);
    }
    p
}

/// The principal of a stored session, as of now. The session keeps what sign-in proved (the
/// identity provider's groups and roles; nothing for a token sign-in); the config is added on
/// every request, so a role taken away in the config is gone as soon as the server runs with
/// that config, not when the session ends.
pub fn principal_of(broker: &Broker, s: &brevet_store::SessionRecord) -> Option<Principal> {
    let stored = Principal {
        id: PrincipalId::parse(&s.principal).ok()?,
        groups: s.groups.clone(),
        roles: s.roles.iter().filter_map(|r| r.parse().ok()).collect(),
    };
    Some(with_config(broker, stored))
}

/// Starts a session for `identity` after it proved who it is by `method`. The session stores
/// the identity as proved (the identity provider's groups and roles; none for a token sign-in);
/// the config's view of the principal is added on every request (`principal_of`).
pub async fn start(
    broker: &Broker,
    identity: Principal,
    kind: SessionKind,
    method: &str,
) -> Result<NewSession, BrokerError> {
    let principal = with_config(broker, identity.clone());
    if let Some(lock) = broker.lock_for_principal(&principal).await? {
        return Err(BrokerError::Forbidden(format!(
            "`{}` is locked by the kill switch ({}); an admin must unlock them first",
            principal.id, lock.reason
        )));
    }
    let (token, id_hash) = new_session_token();
    let csrf = hex::encode(rand::random::<[u8; 32]>());
    let now = Utc::now();
    let expires_at = now
        + chrono::Duration::from_std(broker.settings().session_ttl)
            .unwrap_or(chrono::Duration::hours(8));
    let role_names: BTreeSet<String> = crate::auth::role_names(&principal);
    let record = brevet_store::SessionRecord {
        id_hash: id_hash.clone(),
        principal: principal.id.to_string(),
        groups: identity.groups.clone(),
        roles: crate::auth::role_names(&identity),
        csrf: csrf.clone(),
        kind: kind.as_str().into(),
        created_at: now,
        expires_at,
    };
    let audit = AuditDraft::new(
        EventKind::SessionStarted,
        principal.id.as_str(),
        None,
        json!({
            "method": method,
            "session": kind.as_str(),
            // A short, non-secret handle so sign-out can be matched to sign-in in the log.
            "session_ref": &id_hash[..12],
            "groups": principal.groups,
            "roles": role_names,
            "expires_at": expires_at,
        }),
    );
    broker.store().create_session(&record, vec![audit]).await?;
    tracing::info!(principal = %principal.id, method, session = kind.as_str(), "signed in");
    Ok(NewSession {
        token,
        principal,
        csrf,
        expires_at,
    })
}

/// Ends the session whose token is `token`; returns whether there was one.
pub async fn end(broker: &Broker, token: &str, who: &PrincipalId) -> Result<bool, BrokerError> {
    let id_hash = hex::encode(hash_token(token));
    let audit = AuditDraft::new(
        EventKind::SessionEnded,
        who.as_str(),
        None,
        json!({"reason": "signed out", "session_ref": &id_hash[..12]}),
    );
    Ok(broker.store().end_session(&id_hash, vec![audit]).await?)
}
