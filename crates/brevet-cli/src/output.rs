//! Human-readable rendering of API answers.

use brevet_core::RequestState;
use brevet_wire::{CredentialView, DeliveryView, KillReport, LockView, RequestView};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::ssh::Kept;

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn request_line(r: &RequestView) -> String {
    let mut line = format!(
        "{}  {:<13} {} {} on {}  for {}",
        r.id,
        r.state.as_str(),
        r.requester,
        r.profile,
        r.resource,
        r.duration
    );
    if r.state == RequestState::Pending {
        line += &format!("  approvals {}/{}", r.approvals.len(), r.approvals_required);
    }
    if let Some(exp) = &r.expires_at {
        line += &format!("  expires {}", time(exp));
    }
    if matches!(r.state, RequestState::Revoking | RequestState::RevokeFailed) && r.attempts > 0 {
        // A revocation being retried: how often it failed, and when it is tried next.
        line += &format!(
            "  revocation attempts {}, next {}",
            r.attempts,
            r.next_attempt_at.as_ref().map_or("-".into(), time)
        );
    }
    if let Some(e) = &r.last_error {
        line += &format!("  last error: {e}");
    }
    line
}

pub fn request_list(rows: &[RequestView]) -> String {
    if rows.is_empty() {
        "nothing to show".into()
    } else {
        rows.iter().map(request_line).collect::<Vec<_>>().join("\n")
    }
}

pub fn request_detail(r: &RequestView) -> String {
    let mut out = request_line(r);
    if let Some(reason) = &r.reason {
        out += &format!("\n  reason: {reason}");
    }
    out += &format!("\n  policy: {}", r.policy);
    if let Some(ev) = r.evidence.as_ref().filter(|e| !e.is_null()) {
        out += &format!("\n  revocation evidence: {ev}");
    }
    out
}

pub fn credential(c: &CredentialView) -> String {
    format!(
        "credential ({}), valid until {} — shown once, Brevet does not keep it:\n{}",
        c.kind,
        time(&c.expires_at),
        c.secret
    )
}

pub fn kill_report(v: &KillReport) -> String {
    let mut out = format!(
        "kill switch on `{}` ({}): {} revoked, {} still retrying, {} requests cancelled, in {} ms",
        v.target,
        v.reason,
        v.revoked,
        v.retrying,
        v.cancelled_requests.len(),
        v.elapsed_ms
    );
    for g in &v.grants {
        out += &format!(
            "\n  {}  {:<18} {} {} on {}  ({} ms){}",
            g.grant_id,
            g.outcome,
            g.principal,
            g.profile,
            g.resource,
            g.elapsed_ms,
            g.error
                .as_ref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        );
    }
    out
}

pub fn locks(rows: &[LockView]) -> String {
    if rows.is_empty() {
        return "no locks".into();
    }
    rows.iter()
        .map(|l| {
            format!(
                "{}  locked by {} at {}: {}",
                l.principal,
                l.locked_by,
                time(&l.locked_at),
                l.reason
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn ssh_cert(v: &Kept) -> String {
    format!(
        "certificate for {user}@{host}:{port} (principals {principals}), valid until {until}\n  key:  {key}\n  cert: {cert}\nconnect with: ssh -i {key} -o CertificateFile={cert} -p {port} {user}@{host}",
        user = v.user,
        host = v.host,
        port = v.port,
        principals = v.principals.join(","),
        until = time(&v.expires_at),
        key = v.key.display(),
        cert = v.cert.display(),
    )
}

/// A table of notification deliveries.
pub fn deliveries(rows: &[DeliveryView]) -> String {
    if rows.is_empty() {
        return "no deliveries".into();
    }
    let mut out = format!(
        "{:<36}  {:<16} {:<20} {:<9} {:>8}  {}",
        "ID", "SUBSCRIBER", "EVENT", "STATE", "ATTEMPTS", "LAST ERROR / NEXT ATTEMPT"
    );
    for d in rows {
        let detail = match (d.state.as_str(), &d.last_error) {
            ("pending", e) => format!(
                "{}next {}",
                e.as_ref().map(|e| format!("{e}; ")).unwrap_or_default(),
                d.next_attempt_at.as_ref().map_or("-".into(), time)
            ),
            (_, Some(e)) => e.clone(),
            _ => String::new(),
        };
        out += &format!(
            "\n{:<36}  {:<16} {:<20} {:<9} {:>8}  {}",
            d.id, d.subscriber, d.event_type, d.state, d.attempts, detail
        );
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn catalog_hits(hits: &[brevet_wire::CatalogHit]) -> String {
    if hits.is_empty() {
        return "nothing matches; try fewer or shorter words".into();
    }
    hits.iter()
        .map(|h| {
            let tags = if h.tags.is_empty() {
                String::new()
            } else {
                format!("  [{}]", h.tags.join(", "))
            };
            format!(
                "{:<5} {:<10} {}  ({}){tags}",
                h.cloud, h.entry, h.name, h.detail
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn catalog_entry(e: &brevet_wire::CatalogEntry) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    match e {
        brevet_wire::CatalogEntry::Permission(p) => {
            let _ = writeln!(
                s,
                "{} ({} permission, service {})",
                p.name, p.cloud, p.service
            );
            let plane = p
                .plane
                .as_deref()
                .map(|x| format!(", {x} plane"))
                .unwrap_or_default();
            let _ = writeln!(s, "access: {} (verb class {}{plane})", p.access, p.verb);
            if !p.description.is_empty() {
                let _ = writeln!(s, "{}", p.description);
            }
            if !p.tags.is_empty() {
                let _ = writeln!(s, "sensitive: {}", p.tags.join(", "));
            }
            if let Some(l) = &p.custom_role_level {
                let _ = writeln!(s, "custom roles: {l} level");
            }
            for r in &p.resource_types {
                let _ = writeln!(s, "resource type: {r}");
            }
            if !p.dependent_actions.is_empty() {
                let _ = writeln!(s, "also needs: {}", p.dependent_actions.join(", "));
            }
            if !p.condition_keys.is_empty() {
                let _ = writeln!(s, "condition keys: {}", p.condition_keys.join(", "));
            }
            let _ = writeln!(
                s,
                "held by {} precut roles, smallest first:",
                p.held_by_count
            );
            for r in &p.held_by {
                let _ = writeln!(s, "  {} ({}, {} permissions)", r.name, r.title, r.size);
            }
        }
        brevet_wire::CatalogEntry::Role(r) => {
            let _ = writeln!(s, "{} ({} precut role: {})", r.name, r.cloud, r.title);
            if !r.description.is_empty() {
                let _ = writeln!(s, "{}", r.description);
            }
            if !r.stage.is_empty() {
                let _ = writeln!(s, "stage: {}", r.stage);
            }
            let _ = writeln!(s, "{} permissions", r.size);
            if !r.patterns.is_empty() {
                let _ = writeln!(s, "as written: {}", r.patterns.join(", "));
            }
            if !r.sensitive.is_empty() {
                let _ = writeln!(s, "sensitive: {}", r.sensitive.join(", "));
            }
        }
    }
    s.trim_end().to_owned()
}

pub fn compiled_profile(c: &brevet_wire::CompiledProfile) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "{} on {} ({}): {} permissions\n",
        c.profile,
        c.target,
        c.cloud,
        c.permissions.len()
    );
    let _ = writeln!(
        s,
        "{}",
        serde_json::to_string_pretty(&c.document).unwrap_or_default()
    );
    for w in &c.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for r in &c.compared {
        let _ = writeln!(
            s,
            "instead of {} ({}): {} permissions, {:.1}x what the task needs",
            r.role,
            r.title,
            r.role_size,
            r.role_size as f64 / r.compiled_size.max(1) as f64
        );
    }
    s.trim_end().to_owned()
}

pub fn profile_explanation(e: &brevet_wire::ProfileExplanation) -> String {
    use std::fmt::Write;
    let mut s = format!("{}\n", e.summary);
    for c in &e.clouds {
        let _ = writeln!(s, "\n{} (for example on {}):", c.cloud, c.example_target);
        match (&c.compiled, &c.error) {
            (Some(p), _) => {
                let _ = writeln!(
                    s,
                    "  {} permissions: {}",
                    p.permissions.len(),
                    p.permissions.join(", ")
                );
                for w in &p.warnings {
                    let _ = writeln!(s, "  warning: {w}");
                }
                match p.compared.first() {
                    Some(r) => {
                        let _ = writeln!(
                            s,
                            "  the smallest precut role that covers it is {} ({} permissions; the profile grants {})",
                            r.role, r.role_size, r.compiled_size
                        );
                    }
                    None => {
                        let _ = writeln!(s, "  no precut role covers exactly this task");
                    }
                }
            }
            (None, Some(err)) => {
                let _ = writeln!(s, "  does not compile: {err}");
            }
            (None, None) => {}
        }
    }
    s.trim_end().to_owned()
}
