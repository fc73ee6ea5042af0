//! `aws iam get-account-authorization-details` as AWS writes it (the CLI and boto3 decode the
//! URL-encoded policy documents; the raw API leaves them encoded: both are read). Unknown fields
//! are ignored: AWS adds fields, and refusing them would break on the next CLI release.

use serde::{Deserialize, Deserializer};

use super::document::PolicyDocument;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthorizationDetails {
    pub user_detail_list: Option<Vec<UserDetail>>,
    pub group_detail_list: Option<Vec<GroupDetail>>,
    pub role_detail_list: Option<Vec<RoleDetail>>,
    pub policies: Option<Vec<ManagedPolicy>>,
    #[serde(default)]
    pub is_truncated: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserDetail {
    pub user_name: String,
    pub arn: String,
    #[serde(default)]
    pub group_list: Vec<String>,
    #[serde(default)]
    pub attached_managed_policies: Vec<AttachedPolicy>,
    #[serde(default)]
    pub user_policy_list: Vec<InlinePolicy>,
    pub permissions_boundary: Option<Boundary>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupDetail {
    pub group_name: String,
    pub arn: String,
    #[serde(default)]
    pub attached_managed_policies: Vec<AttachedPolicy>,
    #[serde(default)]
    pub group_policy_list: Vec<InlinePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoleDetail {
    pub role_name: String,
    pub arn: String,
    #[serde(default)]
    pub path: String,
    pub assume_role_policy_document: Option<Document>,
    #[serde(default)]
    pub attached_managed_policies: Vec<AttachedPolicy>,
    #[serde(default)]
    pub role_policy_list: Vec<InlinePolicy>,
    pub permissions_boundary: Option<Boundary>,
    pub role_last_used: Option<RoleLastUsed>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoleLastUsed {
    pub last_used_date: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedPolicy {
    pub policy_name: String,
    pub policy_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InlinePolicy {
    pub policy_name: String,
    pub policy_document: Document,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Boundary {
    pub permissions_boundary_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagedPolicy {
    pub policy_name: String,
    pub arn: String,
    pub default_version_id: Option<String>,
    #[serde(default)]
    pub policy_version_list: Vec<PolicyVersion>,
}

impl ManagedPolicy {
    /// The document in force: the default version.
    pub fn default_document(&self) -> Option<&PolicyDocument> {
        self.policy_version_list
            .iter()
            .find(|v| {
                v.is_default_version
                    || self.default_version_id.as_deref() == Some(v.version_id.as_str())
            })
            .or(self.policy_version_list.first())
            .map(|v| &v.document.0)
    }

    pub fn is_aws_managed(&self) -> bool {
        self.arn.starts_with("arn:aws:iam::aws:policy/") || self.arn.contains(":iam::aws:policy/")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyVersion {
    pub document: Document,
    #[serde(default)]
    pub version_id: String,
    #[serde(default)]
    pub is_default_version: bool,
}

/// A policy document, given inline as JSON or as the API's URL-encoded JSON string.
#[derive(Debug)]
pub struct Document(pub PolicyDocument);

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Json(serde_json::Value),
        }
        let value = match Raw::deserialize(d)? {
            Raw::Json(v) => v,
            Raw::Text(s) => {
                let decoded = percent_encoding::percent_decode_str(&s)
                    .decode_utf8()
                    .map_err(|e| D::Error::custom(format!("policy document is not UTF-8: {e}")))?;
                serde_json::from_str(&decoded).map_err(|e| {
                    D::Error::custom(format!("policy document string is not a JSON policy: {e}"))
                })?
            }
        };
        serde_json::from_value(value)
            .map(Document)
            .map_err(|e| D::Error::custom(format!("policy document: {e}")))
    }
}
