use chrono::{DateTime, Utc};

pub use brevet_config::SecretText;

/// What a requester receives once: how to use their access.
#[derive(Debug, Clone)]
pub struct Credential {
    /// e.g. `postgres_connection_string`.
    pub kind: &'static str,
    pub secret: SecretText,
    /// Non-secret details worth showing (user name, host, database).
    pub details: serde_json::Value,
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = SecretText::new("hunter2".into());
        assert!(!format!("{s:?}{s}").contains("hunter2"));
        let c = Credential {
            kind: "k",
            secret: s,
            details: serde_json::json!({}),
            expires_at: Utc::now(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
