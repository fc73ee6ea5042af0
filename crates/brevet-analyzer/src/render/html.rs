//! The shareable report: one HTML file, inline CSS and SVG, no script, nothing fetched.

use std::fmt::Write;

use super::short;
use super::svg::{esc, graph_svg, summary_svg};
use crate::report::{Category, Report};

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#111;padding:0 1rem}h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.3rem .5rem;text-align:left;vertical-align:top}.sev{font-weight:600;text-transform:uppercase;font-size:.75rem}.critical{color:#b3261e}.high{color:#e8710a}.medium{color:#a07800}.low{color:#5f8dd3}pre{background:#f6f6f6;padding:.8rem;overflow:auto;font-size:12px}.graph-box{overflow:auto;border:1px solid #ddd}details summary{cursor:pointer}.muted{color:#666}";

pub fn render(r: &Report, inputs: &[String]) -> String {
    let mut o = String::new();
    let clouds: Vec<&str> = r.clouds.iter().map(|c| c.as_str()).collect();
    let _ = write!(o, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Brevet identity analysis</title><style>{STYLE}</style></head><body>");
    let _ = write!(o, "<h1>Brevet identity analysis</h1><p class=\"muted\">{} — {} principal(s) — {} — from {}</p>", esc(&clouds.join(", ")), r.principals.len(), esc(&r.scopes.join(", ")), esc(&inputs.join(", ")));
    let _ = write!(o, "<h2>Summary</h2>{}", summary_svg(r));
    let _ = write!(o, "<p>{} admin-equivalent principal(s), {} with a path to admin, {} standing grant(s) of sensitive access{}.</p>", r.admins.len(), r.paths.len(), r.standing.len(), if r.excluded > 0 { format!(", {} finding(s) excluded", r.excluded) } else { String::new() });
    let _ = write!(o, "<h2>Risk scores</h2><table><thead><tr><th>Score</th><th>Principal</th><th>Made of</th></tr></thead><tbody>");
    for s in r.principal_scores.iter().take(50) {
        let parts: Vec<String> = s
            .parts
            .iter()
            .map(|(n, w)| format!("{} +{n}", esc(w)))
            .collect();
        let _ = write!(
            o,
            "<tr><td>{}</td><td title=\"{}\">{}</td><td>{}</td></tr>",
            s.score,
            esc(&s.subject),
            esc(&short(r, &s.subject)),
            parts.join("; ")
        );
    }
    o.push_str("</tbody></table>");
    if !r.scope_scores.is_empty() {
        o.push_str("<table><thead><tr><th>Score</th><th>Account / project / subscription</th><th>Principals at risk</th></tr></thead><tbody>");
        for s in &r.scope_scores {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                s.score,
                esc(&s.subject),
                s.parts.len()
            );
        }
        o.push_str("</tbody></table>");
    }
    let _ = write!(
        o,
        "<h2>Escalation graph</h2><div class=\"graph-box\">{}</div>",
        graph_svg(r, 80, None)
    );
    if !r.paths.is_empty() {
        o.push_str("<details><summary>Paths</summary><ul>");
        for p in &r.paths {
            let mut line = esc(&short(r, &p.principal));
            for &e in &p.edges {
                let _ = write!(
                    line,
                    " —[{}]→ {}",
                    esc(&r.edges[e].via),
                    esc(&short(r, &r.edges[e].to))
                );
            }
            let _ = write!(o, "<li>{line}</li>");
        }
        o.push_str("</ul></details>");
    }
    o.push_str("<h2>Findings</h2>");
    for c in Category::ALL {
        let fs: Vec<_> = r.findings.iter().filter(|f| f.category == c).collect();
        if fs.is_empty() {
            continue;
        }
        let _ = write!(o, "<details open id=\"cat-{}\"><summary><strong>{}</strong> ({})</summary><table><thead><tr><th>Severity</th><th>Finding</th><th>Principals</th><th>Permissions</th></tr></thead><tbody>", c.as_str(), esc(c.title()), fs.len());
        for f in fs {
            let who: Vec<String> = f
                .principals
                .iter()
                .take(10)
                .map(|p| esc(&short(r, p)))
                .collect();
            let more = if f.principals.len() > 10 {
                format!(" … +{}", f.principals.len() - 10)
            } else {
                String::new()
            };
            let perms: Vec<String> = f.permissions.iter().take(12).map(|p| esc(p)).collect();
            let _ = write!(o, "<tr id=\"f-{}\"><td class=\"sev {}\">{}</td><td><details><summary>{}</summary><p>{}</p><p class=\"muted\">{}{}</p></details></td><td>{}{}</td><td><code>{}</code>{}</td></tr>", esc(&f.id), f.severity.as_str(), f.severity.as_str(), esc(&f.title), esc(&f.detail), esc(&f.policy), if f.conditional { " — conditional" } else { "" }, who.join(", "), more, perms.join("</code> <code>"), if f.permissions.len() > 12 { " …" } else { "" });
        }
        o.push_str("</tbody></table></details>");
    }
    o.push_str("<h2>Standing privilege and proposed replacements</h2>");
    if r.standing.is_empty() {
        o.push_str("<p>No sensitive access is held permanently.</p>");
    } else {
        o.push_str("<table><thead><tr><th>Principal</th><th>Holds</th><th>How</th><th>Usage</th><th>Replacement</th></tr></thead><tbody>");
        for s in &r.standing {
            let usage = match &s.usage {
                Some(u) if u.unused_entirely => format!("unused ({})", esc(&u.window)),
                Some(u) => format!(
                    "{} used, {} unused ({})",
                    u.used.len(),
                    u.unused.len(),
                    esc(&u.window)
                ),
                None => "no activity data".into(),
            };
            let repl = match &s.proposal {
                Some(p) => format!("profile <code>{}</code>", esc(&p.profile)),
                None => {
                    "none: a workload identity (rights-size it), or nothing usable today".into()
                }
            };
            let _ = write!(
                o,
                "<tr><td title=\"{}\">{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.principal),
                esc(&short(r, &s.principal)),
                esc(s.policy.rsplit('/').next().unwrap_or(&s.policy)),
                if s.admin_equivalent {
                    " <span class=\"sev critical\">admin</span>"
                } else {
                    ""
                },
                esc(&s.via),
                usage,
                repl
            );
        }
        o.push_str("</tbody></table>");
    }
    if !r.proposed_config.is_empty() {
        let _ = write!(o, "<h3>Brevet config</h3><pre class=\"proposal-config\">{}</pre><h3>Cedar</h3><pre class=\"proposal-cedar\">{}</pre>", esc(&r.proposed_config), esc(&r.proposed_cedar));
    }
    if !r.warnings.is_empty() {
        o.push_str("<h2>Warnings</h2><ul>");
        for w in &r.warnings {
            let _ = write!(o, "<li>{}: {}</li>", esc(&w.file), esc(&w.message));
        }
        o.push_str("</ul>");
    }
    o.push_str("</body></html>\n");
    o
}
