//! IAM Conditions: CEL expressions checked when a policy is set and evaluated when access is
//! tested, with `request.time` at the stand-in's clock (so expiry is testable) and `resource.name`
//! the tested resource's full name.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// cloud-contracts §1.2: "logic operators in one condition expression: 12".
pub(crate) const MAX_LOGICAL_OPERATORS: usize = 12;
/// Not a Google limit: the CEL parser recurses per nesting level, and no input may crash the
/// stand-in, so absurdly deep nesting is refused before parsing.
const MAX_NESTING: usize = 64;

/// Why a condition expression cannot be set.
pub(crate) fn check(expression: &str) -> Result<(), String> {
    let operators = logical_operators(expression);
    if operators > MAX_LOGICAL_OPERATORS {
        return Err(format!(
            "The condition expression has {operators} logical operators; the maximum allowed is {MAX_LOGICAL_OPERATORS}."
        ));
    }
    if nesting(expression) > MAX_NESTING {
        return Err(format!(
            "Condition expression is nested more than {MAX_NESTING} levels deep."
        ));
    }
    compile(expression)
        .map(|_| ())
        .map_err(|e| format!("Condition expression failed to parse: {e}"))
}

fn compile(expression: &str) -> Result<cel::Program, String> {
    // The parser is third-party code fed with untrusted input: a panic in it must become a
    // refusal, not a dead server thread.
    std::panic::catch_unwind(|| cel::Program::compile(expression))
        .map_err(|_| "the expression could not be parsed".to_owned())?
        .map_err(|e| e.to_string().trim().to_owned())
}

/// Whether `expression` holds at `now` for `resource_name`. Any error (unknown attribute, wrong
/// type, parse failure) means false: a condition that cannot be evaluated grants nothing.
pub(crate) fn holds(expression: &str, now: DateTime<Utc>, resource_name: &str) -> bool {
    if nesting(expression) > MAX_NESTING {
        return false;
    }
    let Ok(program) = compile(expression) else {
        return false;
    };
    let resource_type = resource_type(resource_name);
    let outcome = std::panic::catch_unwind(|| {
        let mut context = cel::Context::default();
        let request: HashMap<&str, cel::Value> =
            HashMap::from([("time", cel::Value::Timestamp(now.fixed_offset()))]);
        let resource: HashMap<&str, cel::Value> = HashMap::from([
            ("name", cel::Value::from(resource_name)),
            ("type", cel::Value::from(resource_type.0)),
            ("service", cel::Value::from(resource_type.1)),
        ]);
        context.add_variable_from_value("request", request);
        context.add_variable_from_value("resource", resource);
        program.execute(&context)
    });
    matches!(outcome, Ok(Ok(cel::Value::Bool(true))))
}

/// `resource.type` and `resource.service` as Google documents them for the resources the
/// stand-in knows.
fn resource_type(name: &str) -> (&'static str, &'static str) {
    if name.contains("/buckets/") {
        ("storage.googleapis.com/Bucket", "storage.googleapis.com")
    } else if name.starts_with("projects/") {
        (
            "cloudresourcemanager.googleapis.com/Project",
            "cloudresourcemanager.googleapis.com",
        )
    } else if name.starts_with("folders/") {
        (
            "cloudresourcemanager.googleapis.com/Folder",
            "cloudresourcemanager.googleapis.com",
        )
    } else {
        (
            "cloudresourcemanager.googleapis.com/Organization",
            "cloudresourcemanager.googleapis.com",
        )
    }
}

/// `&&`, `||` and `!` outside string literals (Google counts these as the logic operators).
fn logical_operators(expression: &str) -> usize {
    let mut count = 0;
    let mut chars = code_chars(expression).peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' | '|' if chars.peek() == Some(&c) => {
                chars.next();
                count += 1;
            }
            '!' if chars.peek() != Some(&'=') => count += 1,
            _ => {}
        }
    }
    count
}

fn nesting(expression: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in code_chars(expression) {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The characters of `expression` outside '…' and "…" literals (escapes honoured).
fn code_chars(expression: &str) -> impl Iterator<Item = char> + '_ {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    expression.chars().filter(move |&c| match quote {
        Some(q) => {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            false
        }
        None if c == '"' || c == '\'' => {
            quote = Some(c);
            false
        }
        None => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_condition_follows_the_clock() {
        let e = r#"request.time < timestamp("2030-01-01T00:00:00Z")"#;
        let before = "2029-12-31T23:59:59Z".parse().unwrap();
        let after = "2030-01-01T00:00:00Z".parse().unwrap();
        assert!(holds(e, before, "projects/p1"));
        assert!(!holds(e, after, "projects/p1"));
    }

    #[test]
    fn jit_access_window_and_resource_name() {
        let e = r#"(request.time >= timestamp("2026-12-01T10:00:00Z") && request.time < timestamp("2026-12-01T12:00:00Z"))"#;
        assert!(check(e).is_ok());
        assert!(holds(
            e,
            "2026-12-01T11:00:00Z".parse().unwrap(),
            "projects/p1"
        ));
        assert!(!holds(
            e,
            "2026-12-01T09:00:00Z".parse().unwrap(),
            "projects/p1"
        ));
        let r = r#"resource.name.startsWith("projects/_/buckets/b1")"#;
        assert!(holds(r, Utc::now(), "projects/_/buckets/b1"));
        assert!(!holds(r, Utc::now(), "projects/p1"));
    }

    #[test]
    fn refusals_and_fail_closed() {
        assert!(check("request.time <").is_err());
        let many = vec!["true"; 14].join(" && ");
        assert!(check(&many).unwrap_err().contains("13 logical operators"));
        assert_eq!(logical_operators(r#"!a && "x && y" != 'z || w'"#), 2);
        assert!(check(&"(".repeat(10_000)).is_err());
        // Evaluation errors (unknown attributes, non-boolean results) grant nothing.
        assert!(!holds("request.nothing == 1", Utc::now(), "projects/p1"));
        assert!(!holds("1", Utc::now(), "projects/p1"));
        assert!(!holds(
            "has({}.jitAccessConstraint)",
            Utc::now(),
            "projects/p1"
        ));
    }
}
