//! Server-rendered pictures: the escalation graph (principals on a path to admin, laid out by
//! distance from admin) and the risk summary chart. Plain SVG: no script, so it renders under
//! a strict Content-Security-Policy and in a mailed report alike.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::short;
use crate::report::{Category, Report, Severity};

/// Percent-encodes everything but unreserved characters (a principal id in a query string).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#b3261e",
        Severity::High => "#e8710a",
        Severity::Medium => "#f2b705",
        Severity::Low => "#5f8dd3",
    }
}

/// Findings per category as horizontal bars, coloured by the worst severity in each.
pub fn summary_svg(r: &Report) -> String {
    let rows: Vec<(Category, usize, Severity)> = r
        .counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| {
            (
                c,
                n,
                r.findings
                    .iter()
                    .filter(|f| f.category == c)
                    .map(|f| f.severity)
                    .max()
                    .unwrap_or(Severity::Low),
            )
        })
        .collect();
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let h = 26 * rows.len().max(1) + 10;
    let mut o = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"summary\" role=\"img\" aria-label=\"Findings by category\" width=\"560\" height=\"{h}\" viewBox=\"0 0 560 {h}\">");
    for (i, (c, n, s)) in rows.iter().enumerate() {
        let y = 5 + i * 26;
        let w = (*n as f64 / max as f64 * 300.0).max(2.0);
        let _ = write!(
            o,
            "<g class=\"bar\" data-category=\"{}\"><text x=\"0\" y=\"{}\" font-size=\"13\">{}</text><rect x=\"200\" y=\"{}\" width=\"{w:.0}\" height=\"18\" fill=\"{}\"><title>{} {}: {n}</title></rect><text x=\"{}\" y=\"{}\" font-size=\"13\">{n}</text></g>",
            c.as_str(),
            y + 14,
            esc(c.title()),
            y,
            color(*s),
            esc(c.title()),
            s.as_str(),
            205.0 + w,
            y + 14
        );
    }
    o.push_str("</svg>");
    o
}

/// The escalation graph: every principal with a path to admin, and the admins they reach.
/// Columns by distance (admins on the right), at most `limit` paths (the shortest first).
/// `link`, when given, makes each principal a link to `link` + its id (URL-encoded): the portal
/// opens the findings of the principal clicked.
pub fn graph_svg(r: &Report, limit: usize, link: Option<&str>) -> String {
    let mut dist: BTreeMap<&str, usize> = BTreeMap::new();
    let mut edges: BTreeSet<usize> = BTreeSet::new();
    let mut paths: Vec<&crate::report::EscalationPath> = r.paths.iter().collect();
    paths.sort_by_key(|p| (p.edges.len(), p.principal.clone()));
    for p in paths.iter().take(limit) {
        let n = p.edges.len();
        for (k, &e) in p.edges.iter().enumerate() {
            let from = &*r.edges[e].from;
            let d = dist.entry(from).or_insert(n - k);
            *d = (*d).min(n - k);
            edges.insert(e);
        }
        dist.insert(p.admin.as_str(), 0);
    }
    if dist.is_empty() {
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"graph\" width=\"400\" height=\"40\"><text x=\"0\" y=\"24\" font-size=\"14\">No escalation paths to admin.</text></svg>".into();
    }
    let maxd = dist.values().copied().max().unwrap_or(0);
    let mut columns: Vec<Vec<&str>> = vec![Vec::new(); maxd + 1];
    for (n, d) in &dist {
        columns[*d].push(n);
    }
    let (cw, rh, nw) = (260usize, 34usize, 200usize);
    let rows = columns.iter().map(Vec::len).max().unwrap_or(1);
    let width = cw * (maxd + 1) + 20;
    let height = rh * rows + 40;
    let mut pos: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (d, col) in columns.iter().enumerate() {
        for (i, n) in col.iter().enumerate() {
            pos.insert(n, (10 + (maxd - d) * cw, 20 + i * rh));
        }
    }
    let mut o = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"graph\" role=\"img\" aria-label=\"Escalation paths to admin\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\"><defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#666\"/></marker></defs>");
    for &e in &edges {
        let edge = &r.edges[e];
        let (Some(&(x1, y1)), Some(&(x2, y2))) = (pos.get(&*edge.from), pos.get(&*edge.to)) else {
            continue;
        };
        let _ = write!(
            o,
            "<g class=\"edge\" data-from=\"{}\" data-to=\"{}\"><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#666\" stroke-width=\"1.4\" marker-end=\"url(#arrow)\"><title>{}: {}</title></line></g>",
            esc(&edge.from),
            esc(&edge.to),
            x1 + nw,
            y1 + 12,
            x2,
            y2 + 12,
            esc(&edge.via),
            esc(edge.sentence(r))
        );
    }
    for (n, (x, y)) in &pos {
        let admin = dist.get(n) == Some(&0);
        let label = short(r, n);
        let label = if label.chars().count() > 28 {
            format!("{}…", label.chars().take(27).collect::<String>())
        } else {
            label
        };
        if let Some(prefix) = link {
            let _ = write!(o, "<a href=\"{}{}\">", esc(prefix), esc(&url_encode(n)));
        }
        let _ = write!(
            o,
            "<g class=\"node{}\" data-principal=\"{}\"><rect x=\"{x}\" y=\"{y}\" width=\"{nw}\" height=\"24\" rx=\"5\" fill=\"{}\" stroke=\"#333\"><title>{}</title></rect><text x=\"{}\" y=\"{}\" font-size=\"12\" fill=\"{}\">{}</text></g>",
            if admin { " admin" } else { "" },
            esc(n),
            if admin { "#b3261e" } else { "#f4f4f4" },
            esc(n),
            x + 8,
            y + 16,
            if admin { "#fff" } else { "#111" },
            esc(&label)
        );
        if link.is_some() {
            o.push_str("</a>");
        }
    }
    o.push_str("</svg>");
    o
}
