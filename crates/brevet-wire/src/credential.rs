//! What a provider hands out and what it needs from the requester, as closed types: the CLI picks
//! how to use a credential by its format, never by which provider made it.

use serde::{Deserialize, Serialize};

/// The format of a credential's secret, which tells a client what it can do with it. A provider
/// picks the format it hands out; a new provider adds a variant only when no existing format fits
/// (and then the CLI learns to use it, if it should).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A libpq connection URI (`postgres://user:password@host:port/db?sslmode=…`) for `psql` or
    /// any PostgreSQL driver.
    PostgresConnectionString,
    /// An OpenSSH user certificate (one `…-cert-v01@openssh.com` line) for the public key the
    /// requester sent; `details` holds host, port and principals.
    SshCertificate,
    /// The ARN of an AWS role made for this grant, to assume with the requester's own AWS
    /// identity; there is no secret.
    AwsRole,
    /// AWS `credential_process` JSON (Version 1: temporary access key, secret, session token and
    /// expiration), which AWS SDKs and the AWS CLI read directly.
    AwsCredentialProcess,
    /// Nothing to hand out: the requester signs in through the AWS access portal, where the
    /// account assignment now appears.
    AwsIdentityCenter,
    /// Nothing to hand out: a GCP IAM binding for the requester's own Google identity (gcloud,
    /// Application Default Credentials); `details` holds the member, role and resource.
    GcpIamBinding,
    /// Nothing to hand out: an Azure role assignment for the requester's own Entra identity (az
    /// login, the portal); `details` holds the object id, role definition and scope.
    AzureRoleAssignment,
    /// A secret with no standard format (the in-memory test provider's token); shown as is.
    Opaque,
    /// A format this client does not know (the server is newer); shown as is.
    #[serde(other)]
    Unknown,
}

impl CredentialKind {
    /// The name on the wire, e.g. `ssh_certificate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PostgresConnectionString => "postgres_connection_string",
            Self::SshCertificate => "ssh_certificate",
            Self::AwsRole => "aws_role",
            Self::AwsCredentialProcess => "aws_credential_process",
            Self::AwsIdentityCenter => "aws_identity_center",
            Self::GcpIamBinding => "gcp_iam_binding",
            Self::AzureRoleAssignment => "azure_role_assignment",
            Self::Opaque => "opaque",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a provider needs from the requester to make a credential.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CredentialInputKind {
    /// Nothing: the provider makes the credential (a password, a role to assume).
    #[default]
    None,
    /// An OpenSSH public key of the requester's, for the provider to certify (`public_key` in
    /// the activation or credentials body).
    PublicKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_their_wire_names_and_unknown_ones_are_kept_apart() {
        for k in [
            CredentialKind::PostgresConnectionString,
            CredentialKind::SshCertificate,
            CredentialKind::AwsRole,
            CredentialKind::AwsCredentialProcess,
            CredentialKind::AwsIdentityCenter,
            CredentialKind::GcpIamBinding,
            CredentialKind::AzureRoleAssignment,
            CredentialKind::Opaque,
        ] {
            let text = serde_json::to_string(&k).unwrap();
            assert_eq!(text, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<CredentialKind>(&text).unwrap(), k);
        }
        assert_eq!(
            serde_json::from_str::<CredentialKind>("\"gcp_access_token\"").unwrap(),
            CredentialKind::Unknown
        );
    }
}

/// `details` of an `ssh_certificate` credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SshCertificateDetails {
    /// The certificate's serial, as text (a u64 does not survive every JSON reader).
    pub serial: String,
    pub key_id: String,
    /// Login names the certificate is valid for; the first is the default login.
    pub principals: Vec<String>,
    /// Unix seconds.
    pub valid_after: u64,
    /// Unix seconds.
    pub valid_before: u64,
    /// The host to connect to, and its port.
    pub host: String,
    pub port: u16,
    /// SHA-256 fingerprint of the CA that signed it (what hosts trust).
    pub ca_fingerprint: String,
    /// Earlier certificates of the same grant, revoked (listed in the KRL) by this one.
    pub superseded_serials: Vec<String>,
}

/// The secret of an `aws_credential_process` credential: the JSON the AWS SDKs and CLI read from
/// a `credential_process` program (Version 1).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AwsProcessCredentials {
    /// Always 1.
    pub version: u8,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// RFC 3339, e.g. `2026-12-06T10:00:00Z`.
    pub expiration: String,
}

impl std::fmt::Debug for AwsProcessCredentials {
    /// Never prints the secret key or the session token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProcessCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn aws_process_credentials_read_the_aws_format_and_debug_hides_the_secrets() {
        let text = r#"{"Version":1,"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"s3cr3t","SessionToken":"t0ken","Expiration":"2026-12-06T10:00:00Z"}"#;
        let c: AwsProcessCredentials = serde_json::from_str(text).unwrap();
        assert_eq!(c.access_key_id, "AKIAEXAMPLE");
        assert_eq!(serde_json::to_string(&c).unwrap(), text);
        let d = format!("{c:?}");
        assert!(
            d.contains("AKIAEXAMPLE") && !d.contains("s3cr3t") && !d.contains("t0ken"),
            "{d}"
        );
    }
}
