//! Request bodies: the CLI writes them, the server reads them and refuses unknown fields.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Access profile, e.g. `db.read`.
    pub profile: String,
    /// Resource id, e.g. `postgres:orders-prod`.
    pub resource: String,
    /// How long access lasts once activated, e.g. `30m`, `1h`.
    pub duration: String,
    pub reason: Option<String>,
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer, e.g. `30m`.
    pub duration: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestBody {
    /// Evaluate as this principal (admins only; default: the caller).
    pub principal: Option<String>,
    /// Groups to evaluate with (admins only; default: the principal's configured groups).
    pub groups: Option<Vec<String>>,
    pub profile: String,
    pub resource: String,
    pub duration: String,
    pub reason: Option<String>,
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    /// The principal to cut off; omit and set `all` to cut off everyone but admins.
    pub principal: Option<String>,
    #[serde(default)]
    pub all: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockBody {
    /// The principal to unlock, or `*` to lift an everyone-lock.
    pub principal: String,
}

/// What a provider needs to make the credential (see `CredentialInputKind`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    /// OpenSSH public key line to certify, for resources whose credential input is `public_key`.
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePollBody {
    pub login_id: String,
}
