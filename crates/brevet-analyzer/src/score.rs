//! Risk scores: per principal and per account/project/subscription, each with the parts it is
//! made of, so the number can be argued with.
//!
//! A principal scores, for each category it has findings in, the weight of the worst finding's
//! severity (critical 20, high 8, medium 3, low 1) — one per category, so a hundred low findings
//! do not outweigh one admin grant; 50 if it is admin-equivalent; 30 ÷ path length if it can
//! reach an admin through the escalation graph. A scope scores the sum of the scores of the
//! principals with findings there.

use std::collections::{BTreeMap, HashMap};

use crate::report::{Category, Report, Score, Severity};

pub fn score(report: &mut Report) {
    let by_id: HashMap<&str, &crate::report::Principal> = report
        .principals
        .iter()
        .map(|p| (p.id.as_str(), p))
        .collect();
    let admins: std::collections::HashSet<&str> =
        report.admins.iter().map(String::as_str).collect();
    let path_of: HashMap<&str, &crate::report::EscalationPath> = report
        .paths
        .iter()
        .map(|p| (p.principal.as_str(), p))
        .collect();
    let mut per_principal: BTreeMap<&str, BTreeMap<Category, (Severity, usize)>> = BTreeMap::new();
    let mut scopes_of: HashMap<&str, Vec<String>> = HashMap::new();
    for f in &report.findings {
        for p in &f.principals {
            let e = per_principal
                .entry(p.as_str())
                .or_default()
                .entry(f.category)
                .or_insert((f.severity, 0));
            e.0 = e.0.max(f.severity);
            e.1 += 1;
            let principal_scope = by_id.get(p.as_str()).map(|x| x.scope.clone());
            scopes_of
                .entry(p.as_str())
                .or_default()
                .extend(
                    f.resources
                        .iter()
                        .map(|r| match (r.as_str(), &principal_scope) {
                            // `*` is "everything the principal's account holds".
                            ("*", Some(s)) => s.clone(),
                            _ => scope_of(r),
                        }),
                );
        }
    }
    let mut scores = Vec::new();
    for (p, cats) in &per_principal {
        let mut parts: Vec<(u32, String)> = cats
            .iter()
            .map(|(c, (s, n))| {
                (
                    s.weight(),
                    format!(
                        "{} ({}, {n} finding{})",
                        c.title(),
                        s.as_str(),
                        if *n == 1 { "" } else { "s" }
                    ),
                )
            })
            .collect();
        if admins.contains(p) {
            parts.push((50, "admin-equivalent".into()));
        }
        if let Some(path) = path_of.get(p) {
            let n = path.edges.len().max(1) as u32;
            parts.push((
                30 / n,
                format!(
                    "reaches admin {} in {n} step{}",
                    path.admin,
                    if n == 1 { "" } else { "s" }
                ),
            ));
        }
        parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scores.push(Score {
            subject: p.to_string(),
            score: parts.iter().map(|x| x.0).sum(),
            parts,
        });
    }
    // Principals that reach an admin but hold nothing risky themselves still score.
    for path in &report.paths {
        if !scores.iter().any(|s| s.subject == path.principal) {
            let n = path.edges.len().max(1) as u32;
            scores.push(Score {
                subject: path.principal.clone(),
                score: 30 / n,
                parts: vec![(
                    30 / n,
                    format!(
                        "reaches admin {} in {n} step{}",
                        path.admin,
                        if n == 1 { "" } else { "s" }
                    ),
                )],
            });
        }
    }
    scores.sort_by(|a, b| b.score.cmp(&a.score).then(a.subject.cmp(&b.subject)));

    let mut per_scope: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
    for s in &scores {
        let mut scopes = scopes_of
            .get(s.subject.as_str())
            .cloned()
            .unwrap_or_default();
        if scopes.is_empty() {
            if let Some(p) = by_id.get(s.subject.as_str()) {
                scopes.push(p.scope.clone());
            }
        }
        scopes.sort();
        scopes.dedup();
        for sc in scopes {
            per_scope
                .entry(sc)
                .or_default()
                .push((s.score, s.subject.clone()));
        }
    }
    let mut scope_scores: Vec<Score> = per_scope
        .into_iter()
        .map(|(subject, mut parts)| {
            parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            Score {
                subject,
                score: parts.iter().map(|x| x.0).sum(),
                parts,
            }
        })
        .collect();
    scope_scores.sort_by(|a, b| b.score.cmp(&a.score).then(a.subject.cmp(&b.subject)));
    drop((by_id, admins, path_of));
    report.principal_scores = scores;
    report.scope_scores = scope_scores;
}

/// The account, project or subscription a resource is in.
pub fn scope_of(resource: &str) -> String {
    if let Some(rest) = resource.strip_prefix("arn:") {
        // arn:partition:service:region:account:…
        let account = rest.split(':').nth(3).unwrap_or("");
        return if account.is_empty() || account == "*" {
            "aws".into()
        } else {
            format!("aws account {account}")
        };
    }
    if resource.starts_with("/subscriptions/") {
        return resource.split('/').take(3).collect::<Vec<_>>().join("/");
    }
    if resource == "/" || resource.starts_with("/providers/Microsoft.Management") {
        return resource.to_string();
    }
    for p in ["projects/", "folders/", "organizations/"] {
        if let Some(rest) = resource.strip_prefix(p) {
            return format!("{p}{}", rest.split('/').next().unwrap_or(rest));
        }
    }
    resource.to_string()
}
