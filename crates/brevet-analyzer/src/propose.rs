//! Shared pieces of proposed just-in-time replacements: names Brevet accepts and the Cedar
//! `permit` that makes a principal eligible.

/// A lowercase name of `[a-z0-9-]` (Brevet profile segments, resource names), at most `max`.
pub fn slug(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.trim_end_matches('-').chars().take(max).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() || !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert(0, 'x');
    }
    out
}

/// A Brevet principal id for a cloud identity: the e-mail or user name, lowercased, limited
/// to the characters Brevet accepts.
pub fn principal_id(name: &str) -> String {
    let id: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if id.is_empty() {
        "unnamed".into()
    } else {
        id
    }
}

/// TOML string literal.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// TOML array of strings, one per line when long.
pub fn toml_list(items: &[String]) -> String {
    if items.len() <= 3 {
        return format!(
            "[{}]",
            items
                .iter()
                .map(|s| toml_str(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut out = String::from("[\n");
    for i in items {
        out.push_str("  ");
        out.push_str(&toml_str(i));
        out.push_str(",\n");
    }
    out.push(']');
    out
}

/// Six hex characters that tell apart things whose readable names collide (two inline policies
/// called `s3`, resource groups called `prod` in two subscriptions).
pub fn short_hash(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..3])
}

/// A name from an export, safe inside a TOML or Cedar comment: no line breaks or other control
/// characters (a crafted role name must not start a table of its own).
pub fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A proposal that needs a person's decision before it grants anything: every line commented.
pub fn commented(text: &str, marker: &str) -> String {
    text.lines().map(|l| format!("{marker} {l}\n")).collect()
}

/// The Cedar policy making `principal` eligible for `profile` on `resource`: admin-equivalent
/// access gets one approval and an hour; other sensitive access four hours without approval
/// but with a reason.
pub fn cedar_permit(principal: &str, resource: &str, profile: &str, admin: bool) -> String {
    let (duration, approvals) = if admin { ("1h", "1") } else { ("4h", "0") };
    // Slugs can collide (long profile names cut the principal short): the hash keeps ids apart.
    let id = format!(
        "jit-{}-{}",
        slug(&format!("{profile}-{principal}"), 50),
        short_hash(&[profile, principal, resource])
    );
    format!(
        "@id({id:?})\n@max_duration({duration:?})\n@approvals({approvals:?})\n@require_reason(\"true\")\npermit (principal == User::{principal:?}, action == Action::\"request\", resource == Resource::{resource:?})\nwhen {{ context.profile == {profile:?} }};\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_brevet_names() {
        assert_eq!(
            slug("AWSReservedSSO_Admin_0ace", 40),
            "awsreservedsso-admin-0ace"
        );
        assert_eq!(slug("123-team", 40), "x123-team");
        assert_eq!(slug("--", 40), "x");
        assert_eq!(slug("abc---def", 5), "abc-d");
        assert_eq!(principal_id("Alice@Example.com"), "alice@example.com");
        assert_eq!(principal_id("a b/c"), "a-b-c");
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_str("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}

/// Splits a proposal's snippet into what is the grant's own (its identity table, and comments
/// before the first other table) and the shared rest (the profile and resource tables).
pub fn split_identity(config: &str) -> (String, String) {
    let (mut own, mut shared) = (String::new(), String::new());
    let mut in_identity = false;
    let mut seen_table = false;
    for line in config.lines() {
        let t = line.trim();
        if t.starts_with('[') && !line.starts_with(' ') && !t.starts_with("[\"") {
            in_identity = t.ends_with(".identities]");
            seen_table |= !in_identity;
        }
        let target = if in_identity || !seen_table {
            &mut own
        } else {
            &mut shared
        };
        target.push_str(line);
        target.push('\n');
    }
    (own, shared)
}

/// Merges proposal snippets into one config: tables with the same header are written once,
/// their lines de-duplicated (two users holding one policy share its profile and resource).
pub fn merge_configs<'a>(configs: impl IntoIterator<Item = &'a str>) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut tables: std::collections::HashMap<String, Vec<String>> =
        std::collections::HashMap::new();
    let mut loose: Vec<String> = Vec::new();
    for c in configs {
        let mut header: Option<String> = None;
        let mut skipping = false;
        for line in c.lines() {
            let t = line.trim();
            if t.starts_with('[')
                && t.ends_with(']')
                && !line.starts_with(' ')
                && !t.starts_with("[\"")
            {
                header = Some(t.to_string());
                skipping = false;
                if !tables.contains_key(t) {
                    order.push(t.to_string());
                    tables.insert(t.to_string(), Vec::new());
                }
                continue;
            }
            if t.is_empty() {
                continue;
            }
            let Some(h) = &header else {
                if !loose.iter().any(|l| l == line) {
                    loose.push(line.to_string());
                }
                continue;
            };
            let lines = tables.get_mut(h).expect("inserted with its header");
            let is_key =
                !line.starts_with(' ') && !t.starts_with('#') && t != "]" && t.contains(" = ");
            if is_key {
                let key = t.split(" = ").next().unwrap_or(t);
                skipping = lines
                    .iter()
                    .any(|l| !l.starts_with(' ') && l.split(" = ").next() == Some(key));
                if !skipping {
                    lines.push(line.to_string());
                }
            } else if t.starts_with('#') {
                if !lines.iter().any(|l| l == line) {
                    lines.push(line.to_string());
                }
            } else if !skipping {
                lines.push(line.to_string());
            }
        }
    }
    let mut out = String::new();
    for l in loose {
        out.push_str(&l);
        out.push('\n');
    }
    for h in order {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&h);
        out.push('\n');
        for l in &tables[&h] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    #[test]
    fn same_tables_merge_and_keys_keep_the_first() {
        let a = "[providers.aws.identities]\n\"a\" = { arn = \"x\" }\n\n[providers.aws.profiles.\"aws.p\"]\nmode = \"role\"\nactions = [\n  \"s3:GetObject\",\n  \"s3:PutObject\",\n  \"s3:ListBucket\",\n  \"s3:DeleteObject\",\n]\n";
        let b = "[providers.aws.identities]\n\"b\" = { arn = \"y\" }\n\n[providers.aws.profiles.\"aws.p\"]\nmode = \"role\"\nactions = [\n  \"s3:GetObject\",\n  \"s3:PutObject\",\n  \"s3:ListBucket\",\n  \"s3:DeleteObject\",\n]\n";
        let m = merge_configs([a, b]);
        assert_eq!(m.matches("[providers.aws.identities]").count(), 1, "{m}");
        assert!(m.contains("\"a\" = ") && m.contains("\"b\" = "), "{m}");
        assert_eq!(m.matches("actions = [").count(), 1, "{m}");
        assert_eq!(m.matches("s3:DeleteObject").count(), 1, "{m}");
    }
}
