//! What was actually used: IAM Access Advisor (`aws iam get-service-last-accessed-details`,
//! per principal, services) and CloudTrail (`{"Records": […]}` log files or `aws cloudtrail
//! lookup-events` output, actions). Either turns "holds" into "holds and does not use".

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::{read_value, typed, AnalyzeError, Input};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LastAccessed {
    job_status: String,
    #[serde(default)]
    job_completion_date: Option<String>,
    services_last_accessed: Vec<ServiceAccess>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceAccess {
    service_namespace: String,
    #[serde(default)]
    last_authenticated: Option<String>,
}

/// Per principal ARN: what it used, and how the data was gathered.
#[derive(Debug, Default)]
pub struct Activity {
    /// Principal ARN → services (Access Advisor) used in the window.
    pub services: BTreeMap<String, BTreeSet<String>>,
    /// Principal ARN → actions (CloudTrail) seen, lowercased `svc:action`.
    pub actions: BTreeMap<String, BTreeSet<String>>,
    /// Principals Access Advisor reported on (used something or not).
    pub covered: BTreeSet<String>,
    pub window: String,
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%:z"))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

pub fn last_accessed(
    activity: &mut Activity,
    arn: &str,
    input: Input<'_>,
    days: u32,
    max: u64,
) -> Result<(), AnalyzeError> {
    let (file, value) = read_value(input, max)?;
    if value.get("ServicesLastAccessed").is_none() {
        return Err(AnalyzeError::WrongFormat {
            file,
            expected: "Access Advisor output",
            found: "JSON without ServicesLastAccessed".into(),
            hint: "Give `aws iam get-service-last-accessed-details --job-id ID` output (after `generate-service-last-accessed-details --arn ARN`), as ARN=FILE.",
        });
    }
    let la: LastAccessed = typed(&file, value)?;
    if la.job_status != "COMPLETED" {
        return Err(AnalyzeError::Invalid {
            file,
            reason: format!(
                "the Access Advisor job is {}, not COMPLETED: wait for it and export again",
                la.job_status
            ),
        });
    }
    let end = la
        .job_completion_date
        .as_deref()
        .and_then(parse_time)
        .unwrap_or_else(Utc::now);
    let start = end
        .checked_sub_signed(Duration::days(i64::from(days)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    activity.window = format!("{days} days to {}", end.format("%Y-%m-%d"));
    let used = activity.services.entry(arn.to_string()).or_default();
    activity.covered.insert(arn.to_string());
    for s in la.services_last_accessed {
        if s.last_authenticated
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|t| t >= start)
        {
            used.insert(s.service_namespace.to_ascii_lowercase());
        }
    }
    Ok(())
}

/// Event sources whose prefix is not the IAM service prefix.
fn service_prefix(event_source: &str) -> String {
    let host = event_source.trim_end_matches(".amazonaws.com");
    match host {
        "monitoring" => "cloudwatch".into(),
        "email" => "ses".into(),
        "elasticloadbalancing" => "elasticloadbalancing".into(),
        other => other.to_string(),
    }
}

/// Lambda logs versioned API names (`ListFunctions20150331`, `GetFunction20150331v2`); the IAM
/// action has no version.
fn action_name(event: &str) -> &str {
    let base = match event.rfind('v') {
        Some(i)
            if i > 8
                && event[i + 1..].chars().all(|c| c.is_ascii_digit())
                && !event[i + 1..].is_empty() =>
        {
            &event[..i]
        }
        _ => event,
    };
    let digits = base
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 8 && base.len() > 8 {
        &base[..base.len() - 8]
    } else {
        event
    }
}

/// CloudTrail logs API operations; a few are authorized under another IAM action's name (the
/// service authorization reference says which). Without this, a policy whose `s3:ListBucket`
/// is used every day through `ListObjectsV2` would be called unused.
const AUTHORIZED_AS: &[(&str, &str, &[&str])] = &[
    ("s3", "ListObjects", &["s3:ListBucket"]),
    ("s3", "ListObjectsV2", &["s3:ListBucket"]),
    ("s3", "HeadBucket", &["s3:ListBucket"]),
    ("s3", "HeadObject", &["s3:GetObject"]),
    ("s3", "GetObjectAttributes", &["s3:GetObject"]),
    ("s3", "ListObjectVersions", &["s3:ListBucketVersions"]),
    (
        "s3",
        "ListMultipartUploads",
        &["s3:ListBucketMultipartUploads"],
    ),
    ("s3", "CreateMultipartUpload", &["s3:PutObject"]),
    ("s3", "UploadPart", &["s3:PutObject"]),
    ("s3", "CompleteMultipartUpload", &["s3:PutObject"]),
    ("s3", "UploadPartCopy", &["s3:PutObject", "s3:GetObject"]),
    ("s3", "CopyObject", &["s3:PutObject", "s3:GetObject"]),
    ("s3", "DeleteObjects", &["s3:DeleteObject"]),
    (
        "s3",
        "PutBucketLifecycle",
        &["s3:PutLifecycleConfiguration"],
    ),
    (
        "s3",
        "PutBucketLifecycleConfiguration",
        &["s3:PutLifecycleConfiguration"],
    ),
    (
        "s3",
        "GetBucketLifecycle",
        &["s3:GetLifecycleConfiguration"],
    ),
    (
        "s3",
        "GetBucketLifecycleConfiguration",
        &["s3:GetLifecycleConfiguration"],
    ),
    ("lambda", "Invoke", &["lambda:InvokeFunction"]),
];

/// The IAM actions (lower-cased) a CloudTrail event was authorized as.
fn iam_actions(service: &str, event: &str) -> Vec<String> {
    let name = action_name(event);
    match AUTHORIZED_AS
        .iter()
        .find(|(s, e, _)| *s == service && *e == name)
    {
        Some((_, _, actions)) => actions.iter().map(|a| a.to_ascii_lowercase()).collect(),
        None => vec![format!("{service}:{name}").to_ascii_lowercase()],
    }
}

pub fn cloudtrail(activity: &mut Activity, input: Input<'_>, max: u64) -> Result<(), AnalyzeError> {
    let (file, value) = read_value(input, max)?;
    let records: Vec<serde_json::Value> = if let Some(r) =
        value.get("Records").and_then(|r| r.as_array())
    {
        r.clone()
    } else if let Some(e) = value.get("Events").and_then(|r| r.as_array()) {
        e.iter()
            .filter_map(|ev| {
                ev.get("CloudTrailEvent")
                    .and_then(|c| c.as_str())
                    .and_then(|c| serde_json::from_str(c).ok())
            })
            .collect()
    } else {
        return Err(AnalyzeError::WrongFormat {
            file,
            expected: "a CloudTrail export",
            found: "JSON without Records or Events".into(),
            hint: "Give CloudTrail log files ({\"Records\": […]}, gunzipped) or `aws cloudtrail lookup-events` output.",
        });
    };
    let (mut first, mut last): (Option<String>, Option<String>) = (None, None);
    for r in records {
        let who = r
            .pointer("/userIdentity/sessionContext/sessionIssuer/arn")
            .or_else(|| r.pointer("/userIdentity/arn"))
            .and_then(|v| v.as_str());
        let (Some(who), Some(src), Some(name)) = (
            who,
            r.get("eventSource").and_then(|v| v.as_str()),
            r.get("eventName").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        if r.get("errorCode").is_some_and(|e| {
            e.as_str()
                .is_some_and(|e| e.contains("AccessDenied") || e.contains("Unauthorized"))
        }) {
            continue; // a denied call is not a use
        }
        let used = activity.actions.entry(who.to_string()).or_default();
        for action in iam_actions(&service_prefix(src), name) {
            used.insert(action);
        }
        if let Some(t) = r.get("eventTime").and_then(|v| v.as_str()) {
            if first.as_deref().is_none_or(|f| t < f) {
                first = Some(t.to_string());
            }
            if last.as_deref().is_none_or(|l| t > l) {
                last = Some(t.to_string());
            }
        }
    }
    if let (Some(a), Some(b)) = (first, last) {
        // Times come from the file: cut by characters, never inside one.
        let day = |t: &str| t.chars().take(10).collect::<String>();
        activity.window = format!("CloudTrail {} … {}", day(&a), day(&b));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn events_authorized_under_another_name_count_for_that_action() {
        assert_eq!(super::iam_actions("s3", "ListObjectsV2"), ["s3:listbucket"]);
        assert_eq!(
            super::iam_actions("s3", "CopyObject"),
            ["s3:putobject", "s3:getobject"]
        );
        assert_eq!(
            super::iam_actions("lambda", "Invoke"),
            ["lambda:invokefunction"]
        );
        assert_eq!(
            super::iam_actions("ec2", "RunInstances"),
            ["ec2:runinstances"]
        );
        assert_eq!(
            super::iam_actions("lambda", "GetFunction20150331v2"),
            ["lambda:getfunction"]
        );
        // Every mapped action is one the catalog knows.
        let cat = brevet_catalog::Catalog::embedded().unwrap();
        for (_, _, actions) in super::AUTHORIZED_AS {
            for a in *actions {
                assert!(
                    cat.permission_index(brevet_catalog::Cloud::Aws, a)
                        .is_some(),
                    "{a} is not an AWS action"
                );
            }
        }
    }

    #[test]
    fn versioned_event_names_lose_their_version() {
        assert_eq!(super::action_name("ListFunctions20150331"), "ListFunctions");
        assert_eq!(super::action_name("GetFunction20150331v2"), "GetFunction");
        assert_eq!(super::action_name("GetObject"), "GetObject");
        assert_eq!(super::action_name("Describe2"), "Describe2");
    }
}
