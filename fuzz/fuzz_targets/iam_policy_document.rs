//! Cloud IAM documents as the providers read, check and edit them. The first byte picks:
//! - an AWS, GCP or Azure provider's config tables (TOML: `provider`, `resources.ID`, and
//!   neutral `access."NAME"` profiles), parsed by the provider's `Kind::parse`, which checks
//!   actions, ARNs, scopes and roles against the catalog, compiles the profiles into IAM
//!   policies, GCP custom roles and Azure role definitions, and refuses what is over AWS's size
//!   limits;
//! - an IAM Identity Center permission set's inline policy as AWS returns it, with a user id and
//!   the permission set's `SessionDuration` (ISO 8601), edited to deny that user's sessions
//!   (`permission_set_policy_with_deny`): the result must fit the limit, deny the user from the
//!   revocation on, and keep the permission set's own statements as they were;
//! - an inline policy read back from a role (`revocation_obsolete_at`, `permission_set_deny_for`);
//! - a GCP allow policy as `getIamPolicy` returns it: Google's limits (`check_limits`), Brevet's
//!   bindings in it, and Brevet's edits, after which the policy must hold exactly the grant (or,
//!   removed, none of it), and which refuse an answer that is not a JSON object;
//! - an Azure role assignment (or an ARM list of them) and whether it is Brevet's (`owner_of`).
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use brevet_catalog::profile::{Forbidden, Profile, ProfileSpec};
use brevet_catalog::{Catalog, Language};
use brevet_config::ProviderTables;
use brevet_providers::aws::fuzzing as aws;
use brevet_providers::gcp::policy as gcp;
use brevet_providers::registry::ProviderKind;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-02T12:00:00.250Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[derive(Deserialize)]
struct Tables {
    provider: toml::Table,
    #[serde(default)]
    resources: BTreeMap<String, toml::Table>,
    #[serde(default)]
    access: BTreeMap<String, ProfileSpec>,
}

fn provider_config(which: u8, text: &str) {
    let Ok(input) = toml::from_str::<Tables>(text) else {
        return;
    };
    let profiles = input
        .access
        .iter()
        .filter_map(|(name, spec)| Some((name.clone(), Profile::parse(name, spec).ok()?)))
        .collect();
    let language = Language {
        catalog: Catalog::embedded().expect("the built-in catalog decodes"),
        profiles,
        forbidden: Forbidden::default(),
    };
    let tables = ProviderTables {
        name: "cloud".into(),
        table: input.provider,
        resources: input.resources,
        base: "/nonexistent".into(),
        access: Some(Arc::new(language)),
    };
    let _ = match which % 3 {
        0 => brevet_providers::aws::Kind.parse(&tables),
        1 => brevet_providers::gcp::Kind.parse(&tables),
        _ => brevet_providers::azure::Kind.parse(&tables),
    };
}

fn statements(doc: &Value) -> Vec<Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// The statements that are not one of Brevet's session denies.
fn their_statements(doc: &Value) -> Vec<Value> {
    statements(doc)
        .into_iter()
        .filter(|st| {
            !(st["Sid"]
                .as_str()
                .is_some_and(|s| s.starts_with("BrevetRevokeSessions"))
                && st["Effect"] == "Deny")
        })
        .collect()
}

fn permission_set(text: &str) {
    let mut lines = text.splitn(4, '\n');
    let user = lines.next().unwrap_or_default();
    // What Identity Center says, or the longest session when it says nothing readable.
    let session = aws::iso_duration(lines.next().unwrap_or_default())
        .unwrap_or_else(|| chrono::Duration::hours(12));
    let limit = lines
        .next()
        .and_then(|l| l.trim().parse::<usize>().ok())
        .map_or(aws::INLINE_POLICY_LIMIT, |n| {
            n % (2 * aws::INLINE_POLICY_LIMIT)
        });
    let existing = lines.next().unwrap_or_default();
    let at = now();
    let Ok((doc, _scope)) =
        aws::permission_set_policy_with_deny(existing, user, at, session, limit)
    else {
        return;
    };
    assert!(aws::policy_size(&doc) <= limit, "over the limit: {doc}");
    let (t, _) = aws::permission_set_deny_for(&doc, user).expect("the user's sessions are denied");
    assert!(t >= aws::revocation_instant(at), "denied from {t} only");
    let before: Value = if existing.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(existing).unwrap()
    };
    assert_eq!(
        their_statements(&doc),
        their_statements(&before),
        "the permission set's own statements changed"
    );
}

fn read_back(text: &str) {
    let _ = aws::iso_duration(text);
    let Ok(doc) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let _ = aws::revocation_obsolete_at(&doc);
    let _ = aws::permission_set_deny_for(&doc, "u-1");
    let _ = aws::policy_size(&doc);
}

fn gcp_policy(text: &str) {
    let Ok(policy) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let _ = gcp::check_limits(&policy);
    for (_, b) in gcp::ours(&policy) {
        let _ = gcp::expiry_of(b);
    }
    let grant = gcp::Grant {
        role: "roles/storage.objectViewer".into(),
        member: "user:dave@example.com".into(),
        binding_key: "dave|gcp:logs|storage.read".into(),
        expires_at: now() + chrono::Duration::hours(1),
        note: "request r1".into(),
    };
    let key = grant.binding_key.as_str();
    // Only an object is an allow policy; anything else is refused, never edited.
    let Ok(removed) = gcp::edited(&policy, key, None) else {
        assert!(!policy.is_object());
        return;
    };
    assert!(
        !gcp::ours(&removed).iter().any(|(k, _)| k == key),
        "the grant's binding survived its removal"
    );
    if !gcp::holds(&policy, &grant) {
        let granted = gcp::edited(&policy, key, Some(&grant)).expect("an object is edited");
        assert!(
            gcp::holds(&granted, &grant),
            "the edit does not hold the grant"
        );
        let _ = gcp::check_limits(&granted);
    }
}

fn azure_assignments(text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let _ = brevet_providers::azure::fuzzing::owner_of(&v);
    for a in v["value"].as_array().into_iter().flatten() {
        let _ = brevet_providers::azure::fuzzing::owner_of(a);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 5 {
        0 => provider_config(which / 5, text),
        1 => permission_set(text),
        2 => read_back(text),
        3 => gcp_policy(text),
        _ => azure_assignments(text),
    }
});
