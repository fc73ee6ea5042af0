use chrono::{DateTime, Utc};

pub use brevet_config::SecretText;

/// What a requester receives once: how to use their access.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The secret's format, which tells clients what to do with it.
    pub kind: brevet_wire::CredentialKind,
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
            kind: brevet_wire::CredentialKind::Opaque,
            secret: s,
            details: serde_json::json!({}),
            expires_at: Utc::now(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
