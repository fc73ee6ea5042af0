//! Single sign-on claim mapping: an ID token's claims to a Brevet principal, groups and roles
//! (`Oidc::identity`), under three configurations (e-mail with verification and an allowed
//! domain; e-mail without; `preferred_username`). The first byte picks the configuration and
//! whether the rest is the claims JSON or a compact JWT, which is then read as `verify` reads it
//! (`CoreIdToken` parse, then the payload) — without the signature check, which the fuzzer cannot
//! pass. An identity that comes out must follow from the claims and the configuration.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::OnceLock;

use brevet_core::{PrincipalId, Role};
use brevet_providers::SecretText;
use brevet_server::oidc::{id_token_payload, Oidc, OidcConfig};
use libfuzzer_sys::fuzz_target;
use openidconnect::core::CoreIdToken;
use serde_json::Value;

fn config(principal_claim: &str, allowed: &[&str], require_verified_email: bool) -> OidcConfig {
    OidcConfig {
        issuer: "https://idp.example.com".into(),
        client_id: "brevet".into(),
        client_secret: SecretText::new("s".into()),
        scopes: vec!["openid".into(), "email".into()],
        principal_claim: principal_claim.into(),
        groups_claim: "groups".into(),
        role_groups: BTreeMap::from([
            (Role::Approver, BTreeSet::from(["leads".into()])),
            (
                Role::Admin,
                BTreeSet::from(["brevet-admins".into(), "root".into()]),
            ),
        ]),
        button: "Sign in".into(),
        allowed_domains: allowed.iter().map(|d| d.to_string()).collect(),
        require_verified_email,
    }
}

fn clients() -> &'static [Oidc; 3] {
    static C: OnceLock<[Oidc; 3]> = OnceLock::new();
    C.get_or_init(|| {
        let public_url = "https://brevet.example.com";
        [
            Oidc::new(config("email", &["example.com"], true), public_url).unwrap(),
            Oidc::new(config("email", &[], false), public_url).unwrap(),
            Oidc::new(config("preferred_username", &[], true), public_url).unwrap(),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let claims = if which & 0x80 == 0 {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return;
        };
        v
    } else {
        let _ = CoreIdToken::from_str(text);
        let Ok(v) = id_token_payload(text) else {
            return;
        };
        v
    };
    let index = usize::from(which & 0x7f) % 3;
    let Ok(id) = clients()[index].identity(&claims) else {
        return;
    };

    let claim = if index == 2 {
        "preferred_username"
    } else {
        "email"
    };
    let raw = claims[claim]
        .as_str()
        .expect("the principal comes from the claim");
    assert_eq!(
        Ok(&id.principal),
        PrincipalId::parse(raw).as_ref().map_err(|_| ())
    );
    if index == 0 {
        assert!(
            matches!(&claims["email_verified"], Value::Bool(true))
                || claims["email_verified"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("true")),
            "an unverified address signed in"
        );
        assert!(
            id.principal.as_str().ends_with("@example.com"),
            "`{}` is outside the allowed domain",
            id.principal
        );
    }
    assert!(id.roles.contains(&Role::Requester));
    assert_eq!(
        id.roles.contains(&Role::Approver),
        id.groups.contains("leads")
    );
    assert_eq!(
        id.roles.contains(&Role::Admin),
        id.groups.contains("brevet-admins") || id.groups.contains("root")
    );
});
