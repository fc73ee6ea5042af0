//! Single sign-on with OpenID Connect: authorization code + PKCE for the portal, device
//! authorization (RFC 8628) for the CLI, performed by the server on the CLI's behalf so the CLI
//! needs nothing but Brevet's URL. ID tokens are verified by the `openidconnect` crate
//! (signature against the issuer's JWKS, issuer, audience, expiry, nonce).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    str::FromStr,
    time::{Duration, Instant},
};

use base64::Engine;
use brevet_core::{PrincipalId, Role};
use brevet_providers::SecretText;
use openidconnect::{
    core::{CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata},
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
};
use serde::Deserialize;
use tokio::sync::RwLock;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// `[oidc]` in the config, validated.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretText,
    pub scopes: Vec<String>,
    /// The ID-token claim that names the Brevet principal (`email`, `preferred_username`…).
    pub principal_claim: String,
    /// The ID-token claim that lists the user's groups (fed to Cedar as `User in Group`).
    pub groups_claim: String,
    /// Groups whose members get a Brevet role (everyone who signs in is a requester).
    pub role_groups: BTreeMap<Role, BTreeSet<String>>,
    /// Text on the sign-in button ("Sign in with Okta").
    pub button: String,
    /// When not empty, only principals whose e-mail domain (after `@`) is listed may sign in. For
    /// Google, which signs in any Google account, this is what keeps strangers out.
    pub allowed_domains: BTreeSet<String>,
    /// With `principal_claim = "email"`, sign-in needs `email_verified: true` in the ID token.
    /// Off only for providers that never send the claim but vouch for addresses otherwise.
    pub require_verified_email: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider at {issuer} cannot be reached or answered badly: {message}")]
    Provider { issuer: String, message: String },
    #[error("sign-in failed: {0}")]
    Rejected(String),
    #[error("this sign-in has expired or was already used; start again")]
    UnknownFlow,
    #[error("too many sign-ins are being started right now; try again in a minute")]
    Busy,
}

/// How many sign-ins (browser or device) one client address may start per minute. Starting one
/// needs no credentials, stores a row and, for the device flow, calls the identity provider, so
/// it is bounded per client — a person signing in stays far below this, and one noisy client
/// cannot lock everyone else out.
const SIGN_INS_PER_CLIENT_PER_MINUTE: u32 = 20;

/// How many the whole server starts per minute: a backstop for the store and the identity
/// provider against many addresses at once.
const SIGN_INS_PER_MINUTE: u32 = 6000;

/// Sign-in starts, per client address and in all.
type StartLimiter = crate::limits::WindowLimiter<IpAddr>;

fn start_limiter() -> StartLimiter {
    crate::limits::WindowLimiter::new(crate::limits::Limits {
        per_key_per_minute: SIGN_INS_PER_CLIENT_PER_MINUTE,
        total_per_minute: SIGN_INS_PER_MINUTE,
        // Beyond that, new addresses wait for the next window (memory stays bounded).
        tracked_keys: 50_000,
    })
}

/// Who the identity provider says signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub principal: PrincipalId,
    pub groups: BTreeSet<String>,
    pub roles: BTreeSet<Role>,
}

/// The start of a browser sign-in: where to send the browser and the state to bind to it.
pub struct BrowserStart {
    pub redirect: String,
    pub state: String,
    pub verifier: String,
    pub nonce: String,
}

/// The start of a device sign-in, as the identity provider answered it.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceStart {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

/// One poll of a device sign-in.
pub enum DevicePoll {
    Pending,
    SlowDown,
    Done(Identity),
}

struct Discovered {
    client: Client,
    token_endpoint: String,
    device_endpoint: Option<String>,
    fetched: Instant,
}

pub struct Oidc {
    config: OidcConfig,
    redirect_uri: String,
    http: openidconnect::reqwest::Client,
    discovered: RwLock<Option<Discovered>>,
    starts: StartLimiter,
}

/// Keys rotate; discovery (with the JWKS) is refreshed this often, and at once when a token's
/// signature does not verify.
const REDISCOVER: Duration = Duration::from_secs(3600);

#[derive(Deserialize)]
struct ExtraMetadata {
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn form_encode(s: &str) -> String {
    openidconnect::url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Oidc {
    pub fn new(config: OidcConfig, public_url: &str) -> Result<Self, OidcError> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // The token endpoint must not redirect (SSRF); see the openidconnect docs.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| OidcError::Provider {
                issuer: config.issuer.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            redirect_uri: format!("{public_url}/auth/oidc/callback"),
            config,
            http,
            discovered: RwLock::new(None),
            starts: start_limiter(),
        })
    }

    pub fn button(&self) -> &str {
        &self.config.button
    }

    fn provider_error(&self, message: impl std::fmt::Display) -> OidcError {
        OidcError::Provider {
            issuer: self.config.issuer.clone(),
            message: message.to_string(),
        }
    }

    async fn discover(&self, force: bool) -> Result<(), OidcError> {
        if !force {
            if let Some(d) = self.discovered.read().await.as_ref() {
                if d.fetched.elapsed() < REDISCOVER {
                    return Ok(());
                }
            }
        }
        let issuer =
            IssuerUrl::new(self.config.issuer.clone()).map_err(|e| self.provider_error(e))?;
        let meta = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| self.provider_error(format!("discovery: {e}")))?;
        // The device endpoint is not part of the core metadata type; read it from the same document.
        let extra: ExtraMetadata = self
            .http
            .get(format!(
                "{}/.well-known/openid-configuration",
                self.config.issuer.trim_end_matches('/')
            ))
            .send()
            .await
            .map_err(|e| self.provider_error(e))?
            .json()
            .await
            .map_err(|e| self.provider_error(e))?;
        let token_endpoint = extra
            .token_endpoint
            .ok_or_else(|| self.provider_error("discovery names no token_endpoint"))?;
        let client = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_uri.clone()).map_err(|e| self.provider_error(e))?,
        );
        *self.discovered.write().await = Some(Discovered {
            client,
            token_endpoint,
            device_endpoint: extra.device_authorization_endpoint,
            fetched: Instant::now(),
        });
        Ok(())
    }

    /// Builds the authorization URL (code flow, PKCE S256, nonce).
    pub async fn start_browser(&self, client: IpAddr) -> Result<BrowserStart, OidcError> {
        if !self.starts.admit(client) {
            return Err(OidcError::Busy);
        }
        self.discover(false).await?;
        let guard = self.discovered.read().await;
        let d = guard
            .as_ref()
            .ok_or_else(|| self.provider_error("not discovered"))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in self.config.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(BrowserStart {
            redirect: url.to_string(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token with the nonce.
    pub async fn finish_browser(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Identity, OidcError> {
        self.discover(false).await?;
        let jwt = {
            let guard = self.discovered.read().await;
            let d = guard
                .as_ref()
                .ok_or_else(|| self.provider_error("not discovered"))?;
            let token = d
                .client
                .exchange_code(AuthorizationCode::new(code.to_owned()))
                .map_err(|e| self.provider_error(e))?
                .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
                .request_async(&self.http)
                .await
                .map_err(|e| OidcError::Rejected(format!("the code was not accepted: {e}")))?;
            token
                .id_token()
                .ok_or_else(|| OidcError::Rejected("the provider sent no ID token".into()))?
                .to_string()
        };
        self.verify(&jwt, Some(nonce)).await
    }

    /// A form POST to one of the provider's endpoints, authenticated as Brevet's client
    /// (`client_secret_basic`: id and secret form-encoded, RFC 6749 §2.3.1).
    ///
    /// The device flow is written here rather than with `openidconnect`'s device API because
    /// that API polls in a loop until the user finishes; the server instead answers each of the
    /// CLI's polls with one token request, keeping only the device code between them.
    async fn client_post(
        &self,
        endpoint: String,
        body: String,
    ) -> Result<openidconnect::reqwest::Response, OidcError> {
        self.http
            .post(endpoint)
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.config.client_secret.expose())),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| self.provider_error(e))
    }

    /// Asks the provider for a device code (the CLI shows the user code and the URL).
    pub async fn start_device(&self, client: IpAddr) -> Result<DeviceStart, OidcError> {
        if !self.starts.admit(client) {
            return Err(OidcError::Busy);
        }
        self.discover(false).await?;
        let endpoint = {
            let guard = self.discovered.read().await;
            guard.as_ref().and_then(|d| d.device_endpoint.clone())
        }
        .ok_or_else(|| {
            self.provider_error(
                "the provider offers no device authorization endpoint; enable the device flow for Brevet's client, or sign in through the portal",
            )
        })?;
        let scope = self.config.scopes.join(" ");
        let body = format!(
            "client_id={}&scope={}",
            form_encode(&self.config.client_id),
            form_encode(&scope)
        );
        let resp = self.client_post(endpoint, body).await?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.provider_error(e))?;
        if !status.is_success() {
            return Err(self.provider_error(format!(
                "device authorization answered {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        serde_json::from_str(&text).map_err(|e| self.provider_error(e))
    }

    /// Polls the token endpoint once for a device sign-in.
    pub async fn poll_device(&self, device_code: &str) -> Result<DevicePoll, OidcError> {
        self.discover(false).await?;
        let endpoint = {
            let guard = self.discovered.read().await;
            guard.as_ref().map(|d| d.token_endpoint.clone())
        }
        .ok_or_else(|| self.provider_error("not discovered"))?;
        let body = format!(
            "grant_type={}&device_code={}&client_id={}",
            form_encode("urn:ietf:params:oauth:grant-type:device_code"),
            form_encode(device_code),
            form_encode(&self.config.client_id)
        );
        let resp = self.client_post(endpoint, body).await?;
        let answer: TokenAnswer = resp.json().await.map_err(|e| self.provider_error(e))?;
        match (answer.id_token, answer.error.as_deref()) {
            (Some(jwt), None) => Ok(DevicePoll::Done(self.verify(&jwt, None).await?)),
            (_, Some("authorization_pending")) => Ok(DevicePoll::Pending),
            (_, Some("slow_down")) => Ok(DevicePoll::SlowDown),
            (_, Some(e)) => Err(OidcError::Rejected(format!(
                "{e}{}",
                answer
                    .error_description
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ))),
            (None, None) => Err(OidcError::Rejected(
                "the provider sent no ID token; make sure the `openid` scope is allowed".into(),
            )),
        }
    }

    /// Verifies an ID token (retrying once with fresh keys) and maps it to an identity.
    async fn verify(&self, jwt: &str, nonce: Option<&str>) -> Result<Identity, OidcError> {
        let token = CoreIdToken::from_str(jwt)
            .map_err(|e| OidcError::Rejected(format!("malformed ID token: {e}")))?;
        let check = |d: &Discovered| -> Result<(), String> {
            let verifier = d.client.id_token_verifier();
            let result = match nonce {
                Some(n) => token
                    .claims(&verifier, &Nonce::new(n.to_owned()))
                    .map(|_| ()),
                // Device sign-ins send no nonce; the code was bound to this server by the
                // device code, which only it holds.
                None => token
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map(|_| ()),
            };
            result.map_err(|e| e.to_string())
        };
        let first = {
            let guard = self.discovered.read().await;
            guard.as_ref().map(check)
        };
        match first {
            Some(Ok(())) => {}
            _ => {
                self.discover(true).await?;
                let guard = self.discovered.read().await;
                let d = guard
                    .as_ref()
                    .ok_or_else(|| self.provider_error("not discovered"))?;
                check(d).map_err(|e| OidcError::Rejected(format!("ID token refused: {e}")))?;
            }
        }
        // The signature, issuer, audience, expiry and nonce are verified above; the claims we
        // map (any claim name the config chooses, and groups) are read from the same payload.
        self.identity(&id_token_payload(jwt)?)
    }

    /// Maps an ID token's claims to who signed in. The fuzz target's entry point
    /// (`fuzz/fuzz_targets/oidc_claims.rs`); the server calls it only on verified claims.
    #[doc(hidden)]
    pub fn identity(&self, claims: &serde_json::Value) -> Result<Identity, OidcError> {
        let c = &self.config;
        let raw = claims
            .get(&c.principal_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                OidcError::Rejected(format!(
                    "the ID token has no `{}` claim; ask for a scope that includes it, or set oidc.principal_claim",
                    c.principal_claim
                ))
            })?;
        // An address the provider has not verified names nobody: refuse it rather than let a
        // self-registered account claim someone's principal.
        if c.principal_claim == "email" && c.require_verified_email {
            // `true`, or the string "true" some providers send; anything else is not verified.
            let verified = match claims.get("email_verified") {
                Some(serde_json::Value::Bool(b)) => *b,
                Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
                _ => false,
            };
            if !verified {
                return Err(OidcError::Rejected(
                    "the identity provider does not say this e-mail address is verified (`email_verified` is missing or false); verify it there, name principals by another claim (oidc.principal_claim), or — only if the provider vouches for addresses without the claim — set oidc.require_verified_email = false".into(),
                ));
            }
        }
        // `parse` checks for ASCII first and only then folds case: Unicode lowercasing before
        // the check would turn U+212A KELVIN SIGN into `k` and let one identity pose as another.
        let principal = PrincipalId::parse(raw)
            .map_err(|e| OidcError::Rejected(format!("claim `{}`: {e}", c.principal_claim)))?;
        if !c.allowed_domains.is_empty() {
            let domain = principal.as_str().rsplit_once('@').map(|(_, d)| d);
            if !domain.is_some_and(|d| c.allowed_domains.contains(d)) {
                return Err(OidcError::Rejected(format!(
                    "`{principal}` is not in an allowed domain ({}); sign in with your work account",
                    c.allowed_domains.iter().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let groups: BTreeSet<String> = match claims.get(&c.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(s)) => BTreeSet::from([s.clone()]),
            _ => BTreeSet::new(),
        };
        let mut roles = BTreeSet::from([Role::Requester]);
        for (role, members) in &c.role_groups {
            if !members.is_disjoint(&groups) {
                roles.insert(*role);
            }
        }
        Ok(Identity {
            principal,
            groups,
            roles,
        })
    }
}

/// The claims in a compact JWT's payload (its second part), read without verifying anything:
/// the caller verifies the token first. Public for the fuzz target (`oidc_claims`).
#[doc(hidden)]
pub fn id_token_payload(jwt: &str) -> Result<serde_json::Value, OidcError> {
    jwt.split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .ok_or_else(|| OidcError::Rejected("unreadable ID token payload".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oidc(allowed: &[&str]) -> Oidc {
        Oidc::new(
            OidcConfig {
                issuer: "http://127.0.0.1:1".into(),
                client_id: "brevet".into(),
                client_secret: SecretText::new("s".into()),
                scopes: vec!["openid".into()],
                principal_claim: "email".into(),
                groups_claim: "groups".into(),
                role_groups: BTreeMap::from([(Role::Approver, BTreeSet::from(["leads".into()]))]),
                button: "Sign in".into(),
                allowed_domains: allowed.iter().map(|d| d.to_string()).collect(),
                require_verified_email: true,
            },
            "http://127.0.0.1:2",
        )
        .unwrap()
    }

    #[test]
    fn sign_in_starts_are_bounded_per_client_and_in_all() {
        let l = start_limiter();
        let noisy: IpAddr = "203.0.113.7".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..SIGN_INS_PER_CLIENT_PER_MINUTE {
            assert!(l.admit(noisy));
        }
        assert!(!l.admit(noisy), "one client is bounded");
        assert!(l.admit(other), "and does not lock anyone else out");
        // A new window admits again.
        l.expire_window();
        assert!(l.admit(noisy));
        // Many clients together meet the server-wide bound.
        let mut admitted = 1;
        for i in 0..u32::MAX {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let mut any = false;
            for _ in 0..SIGN_INS_PER_CLIENT_PER_MINUTE {
                if l.admit(ip) {
                    admitted += 1;
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        assert_eq!(admitted, SIGN_INS_PER_MINUTE);
        assert!(!l.admit(other));
    }

    /// Issue #9 item 11 (review finding 13): on 879dbb0 the claim was lowercased with Unicode
    /// rules before the ASCII check, so `\u{212A}ate@example.com` (KELVIN SIGN) became
    /// `kate@example.com`, someone else's principal.
    #[test]
    fn a_claim_that_folds_into_another_identity_is_refused() {
        let o = oidc(&[]);
        let e = o
            .identity(&json!({"email": "\u{212A}ate@example.com", "email_verified": true}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("principal id"), "{e}");
        let kate = o
            .identity(&json!({"email": "Kate@Example.com", "email_verified": true}))
            .unwrap();
        assert_eq!(kate.principal.as_str(), "kate@example.com");
    }

    #[test]
    fn identity_takes_principal_groups_and_roles_from_claims() {
        let id = oidc(&[])
            .identity(&json!({"email": "Alice@Example.com", "email_verified": true, "groups": ["leads", "dba"]}))
            .unwrap();
        assert_eq!(id.principal.as_str(), "alice@example.com");
        assert_eq!(id.groups, BTreeSet::from(["dba".into(), "leads".into()]));
        assert_eq!(id.roles, BTreeSet::from([Role::Requester, Role::Approver]));
        // A single group as a string, and no groups at all.
        let id = oidc(&[])
            .identity(&json!({"email": "b@example.com", "email_verified": "true", "groups": "dba"}))
            .unwrap();
        assert_eq!(id.roles, BTreeSet::from([Role::Requester]));
        assert_eq!(id.groups.len(), 1);
    }

    #[test]
    fn unverified_missing_or_foreign_addresses_are_refused() {
        let e = oidc(&[])
            .identity(&json!({"email": "alice@example.com", "email_verified": false}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is verified"), "{e}");
        // A missing claim is not a verified address either, unless the operator says so.
        assert!(oidc(&[])
            .identity(&json!({"email": "alice@example.com"}))
            .is_err());
        let mut lenient = oidc(&[]);
        lenient.config.require_verified_email = false;
        assert!(lenient
            .identity(&json!({"email": "alice@example.com"}))
            .is_ok());
        let e = oidc(&[])
            .identity(&json!({"sub": "123"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `email` claim"), "{e}");
        let only = oidc(&["example.com"]);
        assert!(only
            .identity(&json!({"email": "alice@example.com", "email_verified": true}))
            .is_ok());
        let e = only
            .identity(&json!({"email": "mallory@example.com.evil.test", "email_verified": true}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in an allowed domain"), "{e}");
        assert!(only
            .identity(&json!({"email": "mallory@gmail.com", "email_verified": true}))
            .is_err());
    }
}
