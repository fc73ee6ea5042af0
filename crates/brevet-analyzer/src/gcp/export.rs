//! The GCP exports the analyzer reads, told apart by shape:
//! - `gcloud projects|folders|organizations get-iam-policy ID --format=json`: one policy; its
//!   resource is named by the caller (`projects/acme-prod=policy.json` on the command line);
//! - `gcloud projects get-ancestors-iam-policy ID --format=json`: a list of `{id, type, policy}`
//!   from the project up to the organisation — the hierarchy comes with it;
//! - `gcloud asset search-all-iam-policies --scope=… --format=json`: a list of `{resource,
//!   project, folders, organization, policy}` — every resource's policy with its ancestors;
//! - `gcloud iam roles list|describe --format=json` (custom roles; `list` omits the permissions
//!   unless `--view=FULL`, and then the analyzer says so).

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Policy {
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Deserialize)]
pub struct Binding {
    pub role: String,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub condition: Option<Condition>,
}

#[derive(Debug, Deserialize)]
pub struct Condition {
    #[serde(default)]
    pub expression: String,
    #[serde(default)]
    pub title: String,
}

#[derive(Debug, Deserialize)]
pub struct Ancestor {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub policy: Policy,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetPolicy {
    pub resource: String,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub folders: Vec<String>,
    #[serde(default)]
    pub organization: Option<String>,
    pub policy: Policy,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomRole {
    pub name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub included_permissions: Option<Vec<String>>,
    #[serde(default)]
    pub deleted: bool,
}

/// What one file turned out to be.
pub enum Export {
    Policy(Policy),
    Ancestors(Vec<Ancestor>),
    Assets(Vec<AssetPolicy>),
    Roles(Vec<CustomRole>),
}

/// Tells the formats apart by their keys, then reads the file as that format (so errors name
/// the field of the format it is).
pub fn detect(value: &serde_json::Value) -> Result<&'static str, String> {
    use serde_json::Value;
    let first_keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().take(6).cloned().collect())
            .unwrap_or_default()
    };
    match value {
        Value::Object(o) if o.contains_key("bindings") || o.contains_key("etag") => Ok("policy"),
        Value::Object(o)
            if o.contains_key("includedPermissions")
                || o.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.contains("/roles/")) =>
        {
            Ok("role")
        }
        Value::Array(items) if items.is_empty() => Ok("empty"),
        Value::Array(items) => {
            let o = &items[0];
            if o.get("policy").is_some() && o.get("type").is_some() && o.get("id").is_some() {
                Ok("ancestors")
            } else if o.get("policy").is_some() && o.get("resource").is_some() {
                Ok("assets")
            } else if o
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.contains("roles/"))
            {
                Ok("roles")
            } else {
                Err(format!(
                    "a list whose first item has keys {:?}",
                    first_keys(o)
                ))
            }
        }
        Value::Object(_) => Err(format!("an object with keys {:?}", first_keys(value))),
        other => Err(format!(
            "a JSON {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                _ => "value",
            }
        )),
    }
}
