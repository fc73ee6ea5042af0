//! Request bodies: the CLI writes them, the server reads them and refuses unknown fields.

use serde::{Deserialize, Serialize};
use utoipa::{
    openapi::schema::{
        AdditionalProperties, AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
    },
    openapi::RefOr,
    ToSchema,
};

// The `pattern`s below say in the OpenAPI document what the server's parsers accept, so a client
// (or a schema-driven test) can tell a valid body from one that will be refused. Free text
// (reasons, comments, tickets) is trimmed of Unicode white space and must then hold no control
// character; lengths count characters. Names follow `brevet_core::names`.

/// `PrincipalId::parse`: 1-128 letters, digits and `. _ - @ +`.
const PRINCIPAL_PATTERN: &str = "^[A-Za-z0-9._@+-]{1,128}$";
/// Not empty once trimmed of Unicode white space (what `str::trim` removes).
const NON_BLANK_PATTERN: &str =
    "[^\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Access profile, e.g. `db.read`.
    #[schema(
        max_length = 64,
        pattern = "^[a-z0-9_-]+(\\.[a-z0-9_-]+)+$",
        example = "db.read"
    )]
    pub profile: String,
    /// Resource id, e.g. `postgres:orders-prod`.
    #[schema(
        pattern = "^[a-z][a-z0-9_-]{0,63}:[A-Za-z0-9._/:@-]{1,200}$",
        example = "postgres:orders-prod"
    )]
    pub resource: String,
    /// How long access lasts once activated, e.g. `30m`, `1h` or `1h 30m`: between 1s and 31 days, and within what policy and the provider allow.
    #[schema(min_length = 1, example = "30m")]
    pub duration: String,
    /// Why; plain text, at most 2000 characters. Policy may require one.
    #[schema(
        max_length = 2000,
        pattern = "^[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\u0000-\\u001f\\u007f-\\u009f]*[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    pub reason: Option<String>,
    /// A ticket reference; plain text, at most 200 characters.
    #[schema(
        max_length = 200,
        pattern = "^[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\u0000-\\u001f\\u007f-\\u009f]*[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    pub ticket: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Plain text, at most 2000 characters.
    #[schema(
        max_length = 2000,
        pattern = "^[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\u0000-\\u001f\\u007f-\\u009f]*[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// Plain text, at most 2000 characters.
    #[schema(
        max_length = 2000,
        pattern = "^[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\u0000-\\u001f\\u007f-\\u009f]*[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer, e.g. `30m`. Between 1s and 31 days, and within what policy and the provider allow.
    #[schema(min_length = 1, example = "30m")]
    pub duration: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestBody {
    /// Evaluate as this principal (admins only; default: the caller).
    #[schema(pattern = "^[A-Za-z0-9._@+-]{1,128}$")]
    pub principal: Option<String>,
    /// Groups to evaluate with (admins only; default: the principal's configured groups).
    pub groups: Option<Vec<String>>,
    #[schema(
        max_length = 64,
        pattern = "^[a-z0-9_-]+(\\.[a-z0-9_-]+)+$",
        example = "db.read"
    )]
    pub profile: String,
    #[schema(
        pattern = "^[a-z][a-z0-9_-]{0,63}:[A-Za-z0-9._/:@-]{1,200}$",
        example = "postgres:orders-prod"
    )]
    pub resource: String,
    /// How long access lasts once activated, e.g. `30m`, `1h` or `1h 30m`: between 1s and 31 days, and within what policy and the provider allow.
    #[schema(min_length = 1, example = "30m")]
    pub duration: String,
    /// Why; plain text, at most 2000 characters. Policy may require one.
    #[schema(
        max_length = 2000,
        pattern = "^[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\u0000-\\u001f\\u007f-\\u009f]*[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    pub reason: Option<String>,
    #[schema(
        max_length = 200,
        pattern = "^[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*[^\\u0000-\\u001f\\u007f-\\u009f]*[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$"
    )]
    pub ticket: Option<String>,
}

/// Exactly one target: `principal`, or `all: true` (the schema below says so with `oneOf`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    /// The principal to cut off; omit and set `all` to cut off everyone but admins.
    pub principal: Option<String>,
    #[serde(default)]
    pub all: bool,
    pub reason: String,
}

// Written by hand because the derive cannot say "exactly one target", which the server enforces.
impl utoipa::PartialSchema for KillBody {
    fn schema() -> RefOr<Schema> {
        let fields = ObjectBuilder::new()
            .property(
                "principal",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .pattern(Some(PRINCIPAL_PATTERN))
                    .description(Some(
                        "The principal to cut off; omit and set `all` to cut off everyone but admins.",
                    )),
            )
            .property(
                "all",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .default(Some(false.into())),
            )
            .property(
                "reason",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(NON_BLANK_PATTERN))
                    .description(Some("Why; required, not blank.")),
            )
            .required("reason")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let one_principal = ObjectBuilder::new()
            .property("principal", ObjectBuilder::new().schema_type(Type::String))
            .property("all", ObjectBuilder::new().enum_values(Some([false])))
            .required("principal");
        let everyone = ObjectBuilder::new()
            .property("principal", ObjectBuilder::new().schema_type(Type::Null))
            .property("all", ObjectBuilder::new().enum_values(Some([true])))
            .required("all");
        AllOfBuilder::new()
            .item(fields)
            .item(OneOfBuilder::new().item(one_principal).item(everyone))
            .into()
    }
}

impl ToSchema for KillBody {}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockBody {
    /// The principal to unlock, or `*` to lift an everyone-lock.
    #[schema(
        pattern = "^[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*(\\*|[A-Za-z0-9._@+-]{1,128})[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$",
        example = "alice"
    )]
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
    /// The `login_id` that `POST /v1/login/device` answered.
    pub login_id: String,
}
