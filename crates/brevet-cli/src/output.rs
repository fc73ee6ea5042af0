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
