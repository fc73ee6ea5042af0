//! SARIF 2.1.0 (OASIS), as code-scanning tools read it: one rule per category, one result per
//! finding, the finding id as a partial fingerprint so tools track it across runs.

use serde_json::{json, Value};

use crate::report::{Category, Report, Severity};

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

pub fn render(r: &Report, inputs: &[String]) -> String {
    let rules: Vec<Value> = Category::ALL
        .iter()
        .map(|c| {
            json!({
                "id": c.as_str(),
                "name": c.title(),
                "shortDescription": {"text": c.title()},
                "fullDescription": {"text": crate::classify::explain(*c, brevet_catalog::Cloud::Aws)},
                "defaultConfiguration": {"level": level(c.severity())},
            })
        })
        .collect();
    let artifact = inputs
        .first()
        .cloned()
        .unwrap_or_else(|| "iam-export.json".into());
    let results: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            let rule_index = Category::ALL.iter().position(|c| *c == f.category).unwrap_or(0);
            json!({
                "ruleId": f.category.as_str(),
                "ruleIndex": rule_index,
                "level": level(f.severity),
                "message": {"text": format!("{} — {} Permissions: {}. Principals: {}.", f.title, f.detail, f.permissions.join(", "), if f.principals.is_empty() { "none".to_string() } else { f.principals.join(", ") })},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": artifact}},
                    "logicalLocations": [{"name": f.policy, "fullyQualifiedName": f.policy, "kind": "resource"}],
                }],
                "partialFingerprints": {"brevetFindingId/v1": f.id},
                "properties": {
                    "cloud": f.cloud.as_str(),
                    "severity": f.severity.as_str(),
                    "permissions": f.permissions,
                    "resources": f.resources,
                    "principals": f.principals,
                    "conditional": f.conditional,
                },
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "brevet analyze", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
            "artifacts": inputs.iter().map(|i| json!({"location": {"uri": i}})).collect::<Vec<_>>(),
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&doc).expect("plain data") + "\n"
}
