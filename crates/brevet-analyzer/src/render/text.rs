use std::fmt::Write;

use super::short;
use crate::report::{Category, Report};

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let clouds: Vec<&str> = r.clouds.iter().map(|c| c.as_str()).collect();
    let _ = writeln!(
        o,
        "Brevet identity analysis — {} — {} principal(s) in {}",
        clouds.join(", "),
        r.principals.len(),
        r.scopes.join(", ")
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Findings by category{}:",
        if r.excluded > 0 {
            format!(" ({} excluded by the exclusions file)", r.excluded)
        } else {
            String::new()
        }
    );
    for (c, n) in r.counts() {
        if n > 0 {
            let principals: std::collections::BTreeSet<&str> = r
                .findings
                .iter()
                .filter(|f| f.category == c)
                .flat_map(|f| f.principals.iter().map(String::as_str))
                .collect();
            let _ = writeln!(
                o,
                "  {:<28} {:>5} finding(s), {:>5} principal(s)",
                c.title(),
                n,
                principals.len()
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Admin-equivalent principals ({}):", r.admins.len());
    for a in &r.admins {
        match r.admin_reasons.get(a) {
            Some(why) => {
                let _ = writeln!(o, "  {a}: {why}");
            }
            None => {
                let _ = writeln!(o, "  {a}");
            }
        }
    }
    if !r.paths.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Escalation paths to admin ({}):", r.paths.len());
        for p in &r.paths {
            let mut line = short(r, &p.principal);
            for &e in &p.edges {
                let edge = &r.edges[e];
                let _ = write!(line, " —[{}]→ {}", edge.via, short(r, &edge.to));
            }
            let _ = writeln!(o, "  {line}");
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Riskiest principals:");
    for s in r.principal_scores.iter().take(15) {
        let parts: Vec<String> = s
            .parts
            .iter()
            .take(4)
            .map(|(n, w)| format!("{w} +{n}"))
            .collect();
        let _ = writeln!(
            o,
            "  {:>4}  {}  ({})",
            s.score,
            short(r, &s.subject),
            parts.join("; ")
        );
    }
    if !r.scope_scores.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Scopes:");
        for s in &r.scope_scores {
            let _ = writeln!(
                o,
                "  {:>5}  {}  ({} principal(s) at risk)",
                s.score,
                s.subject,
                s.parts.len()
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "Findings:");
    for f in &r.findings {
        let who = match f.principals.len() {
            0 => "no principal".to_string(),
            1 => short(r, &f.principals[0]),
            n => format!("{} principals", n),
        };
        let _ = writeln!(
            o,
            "  [{:<8}] {:<27} {}  — {}{}",
            f.severity.as_str(),
            f.category.title(),
            f.title,
            who,
            if f.conditional { " (conditional)" } else { "" }
        );
    }
    let proposals = r.standing.iter().filter(|s| s.proposal.is_some()).count();
    let _ = writeln!(o);
    let _ = writeln!(o, "Standing privilege: {} grant(s) of sensitive access held permanently; {} with a proposed just-in-time replacement.", r.standing.len(), proposals);
    for s in &r.standing {
        let usage = match &s.usage {
            Some(u) if u.unused_entirely => format!(", unused in {}", u.window),
            Some(u) => format!(", {} unused in {}", u.unused.len(), u.window),
            None => String::new(),
        };
        let _ = writeln!(
            o,
            "  {} holds {} ({}{}){}{}",
            short(r, &s.principal),
            s.policy.rsplit('/').next().unwrap_or(&s.policy),
            s.via,
            if s.admin_equivalent {
                ", admin-equivalent"
            } else {
                ""
            },
            usage,
            if s.proposal.is_none() {
                " — no proposal: a workload identity (rights-size it), or denied elsewhere"
            } else {
                ""
            }
        );
    }
    if !r.proposed_config.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "Proposed Brevet config (paste into the config; the provider tables must exist):"
        );
        let _ = writeln!(o);
        o.push_str(&r.proposed_config);
        let _ = writeln!(o);
        let _ = writeln!(o, "Proposed Cedar policies (add to a policy file):");
        let _ = writeln!(o);
        o.push_str(&r.proposed_cedar);
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "Warnings:");
        for w in &r.warnings {
            let _ = writeln!(o, "  {}: {}", w.file, w.message);
        }
    }
    let _ = Category::ALL;
    o
}
