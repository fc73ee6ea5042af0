//! Human-readable rendering of API answers.

use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

pub fn request_line(r: &Value) -> String {
    let mut line = format!(
        "{}  {:<13} {} {} on {}  for {}",
        s(&r["id"]),
        s(&r["state"]),
        s(&r["requester"]),
        s(&r["profile"]),
        s(&r["resource"]),
        s(&r["duration"])
    );
    if r["state"] == "pending" {
        let have = r["approvals"].as_array().map_or(0, |a| a.len());
        line += &format!("  approvals {}/{}", have, r["approvals_required"]);
    }
    if let Some(exp) = r["expires_at"].as_str() {
        line += &format!("  expires {exp}");
    }
    if let Some(e) = r["last_error"].as_str() {
        line += &format!("  last error: {e}");
    }
    line
}

pub fn request_detail(r: &Value) -> String {
    let mut out = request_line(r);
    if let Some(reason) = r["reason"].as_str() {
        out += &format!("\n  reason: {reason}");
    }
    out += &format!("\n  policy: {}", s(&r["policy"]));
    if let Some(ev) = r.get("evidence").filter(|e| !e.is_null()) {
        out += &format!("\n  revocation evidence: {ev}");
    }
    out
}

pub fn credential(c: &Value) -> String {
    format!(
        "credential ({}), valid until {} — shown once, Brevet does not keep it:\n{}",
        s(&c["kind"]),
        s(&c["expires_at"]),
        s(&c["secret"])
    )
}

pub fn kill_report(v: &Value) -> String {
    let mut out = format!(
        "kill switch on `{}` ({}): {} revoked, {} still retrying, {} requests cancelled, in {} ms",
        s(&v["target"]),
        s(&v["reason"]),
        v["revoked"],
        v["retrying"],
        v["cancelled_requests"].as_array().map_or(0, |a| a.len()),
        v["elapsed_ms"]
    );
    for g in v["grants"].as_array().into_iter().flatten() {
        out += &format!(
            "\n  {}  {:<18} {} {} on {}  ({} ms){}",
            s(&g["grant_id"]),
            s(&g["outcome"]),
            s(&g["principal"]),
            s(&g["profile"]),
            s(&g["resource"]),
            g["elapsed_ms"],
            g["error"]
                .as_str()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        );
    }
    out
}

pub fn ssh_cert(v: &Value) -> String {
    format!(
        "certificate for {user}@{host}:{port} (principals {principals}), valid until {until}\n  key:  {key}\n  cert: {cert}\nconnect with: ssh -i {key} -o CertificateFile={cert} -p {port} {user}@{host}",
        user = s(&v["user"]),
        host = s(&v["host"]),
        port = v["port"],
        principals = v["principals"],
        until = s(&v["expires_at"]),
        key = s(&v["key"]),
        cert = s(&v["cert"]),
    )
}

/// A table of notification deliveries.
pub fn deliveries(v: &Value) -> String {
    let rows = v.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "no deliveries".into();
    }
    let mut out = format!(
        "{:<36}  {:<16} {:<20} {:<9} {:>8}  {}",
        "ID", "SUBSCRIBER", "EVENT", "STATE", "ATTEMPTS", "LAST ERROR / NEXT ATTEMPT"
    );
    for d in &rows {
        let detail = match (d["state"].as_str(), d["last_error"].as_str()) {
            (Some("pending"), e) => format!(
                "{}next {}",
                e.map(|e| format!("{e}; ")).unwrap_or_default(),
                s(&d["next_attempt_at"])
            ),
            (_, Some(e)) => e.to_owned(),
            _ => String::new(),
        };
        out += &format!(
            "\n{:<36}  {:<16} {:<20} {:<9} {:>8}  {}",
            s(&d["id"]),
            s(&d["subscriber"]),
            s(&d["event_type"]),
            s(&d["state"]),
            d["attempts"],
            detail
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
