//! The `[notify]` section of the config and the notification contacts of principals: typed and
//! validated at start, with errors that name the field.

use std::{collections::BTreeSet, path::Path, time::Duration};

use brevet_providers::SecretText;
use serde::Deserialize;

use super::event::EventFilter;
use brevet_config::{duration_literal, field, ConfigDuration, ConfigError, SecretRef};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    retry_base: Option<ConfigDuration>,
    max_retry_delay: Option<ConfigDuration>,
    max_attempts: Option<u32>,
    attempt_timeout: Option<ConfigDuration>,
    poll_every: Option<ConfigDuration>,
    expiry_warning: Option<ConfigDuration>,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    slack: Option<RawSlack>,
    email: Option<RawEmail>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    url: String,
    events: Vec<String>,
    secret: SecretRef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    bot_token: SecretRef,
    signing_secret: SecretRef,
    approver_channel: String,
    #[serde(default = "default_slack_api")]
    api_base: String,
    /// The workspace (team) id clicks must come from, e.g. "T0123ABCD".
    #[serde(default)]
    team_id: Option<String>,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    smtp_url: SecretRef,
    from: String,
}

/// How failed deliveries are retried: exponential backoff from `base`, capped at `max_delay`,
/// with jitter, at most `max_attempts` attempts in all.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    pub events: EventFilter,
    pub secret: SecretText,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub bot_token: SecretText,
    pub signing_secret: SecretText,
    pub approver_channel: String,
    /// Without a trailing slash.
    pub api_base: String,
    /// When set, clicks from any other Slack workspace are refused (an app installed in several
    /// workspaces shares its signing secret, and user ids are only unique within one).
    pub team_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `smtp://host:25`, `smtp://host:587?tls=required`, `smtps://user:pass@host` (a secret when
    /// it holds a password).
    pub smtp_url: SecretText,
    pub from: lettre::message::Mailbox,
}

/// The validated `[notify]` section.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub retry: RetryPolicy,
    /// Bound on one attempt (HTTP request or SMTP conversation).
    pub attempt_timeout: Duration,
    /// How often the dispatcher and the workers look for new work.
    pub poll_every: Duration,
    /// How long before a grant ends its requester is told it is ending.
    pub expiry_warning: Duration,
    pub webhooks: Vec<WebhookConfig>,
    pub slack: Option<SlackConfig>,
    pub email: Option<EmailConfig>,
}

impl NotifySettings {
    /// Is anything configured to receive notifications?
    pub fn any(&self) -> bool {
        !self.webhooks.is_empty() || self.slack.is_some() || self.email.is_some()
    }

    pub(crate) fn parse(raw: &RawNotify, base: &Path) -> Result<Self, ConfigError> {
        let retry = RetryPolicy {
            base: raw.retry_base.unwrap_or(duration_literal("2s")).0,
            max_delay: raw.max_retry_delay.unwrap_or(duration_literal("10m")).0,
            max_attempts: raw.max_attempts.unwrap_or(8),
        };
        if retry.base < Duration::from_millis(10) {
            return Err(field("notify.retry_base", "must be at least 10ms"));
        }
        if !(1..=50).contains(&retry.max_attempts) {
            return Err(field("notify.max_attempts", "must be between 1 and 50"));
        }
        let attempt_timeout = raw.attempt_timeout.unwrap_or(duration_literal("10s")).0;
        if attempt_timeout < Duration::from_millis(100)
            || attempt_timeout > Duration::from_secs(120)
        {
            return Err(field(
                "notify.attempt_timeout",
                "must be between 100ms and 2m",
            ));
        }
        let mut names = BTreeSet::new();
        let mut webhooks = Vec::new();
        for (i, w) in raw.webhooks.iter().enumerate() {
            let at = |f: &str| format!("notify.webhooks[{i}].{f}");
            let ok_name = !w.name.is_empty()
                && w.name.len() <= 64
                && w.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_name {
                return Err(field(
                    at("name"),
                    "use 1-64 letters, digits, - or _ (e.g. \"siem\")",
                ));
            }
            if !names.insert(w.name.clone()) {
                return Err(field(
                    at("name"),
                    format!("`{}` is used twice; names must be unique", w.name),
                ));
            }
            let url = reqwest::Url::parse(&w.url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| {
                    field(
                        at("url"),
                        format!(
                            "`{}` is not an http(s) URL; write it like \"https://hooks.example.com/brevet\"",
                            w.url
                        ),
                    )
                })?;
            if !url.password().unwrap_or("").is_empty() {
                return Err(field(
                    at("url"),
                    "contains a password; webhooks are authenticated by their signature secret",
                ));
            }
            let events = EventFilter::parse(&w.events).map_err(|m| field(at("events"), m))?;
            let secret = w.secret.resolve(&at("secret"), base)?;
            if secret.expose().len() < 16 {
                return Err(field(
                    at("secret"),
                    "is shorter than 16 characters; use a long random value (e.g. `openssl rand -hex 32`)",
                ));
            }
            webhooks.push(WebhookConfig {
                name: w.name.clone(),
                url: url.to_string(),
                events,
                secret,
            });
        }
        let slack = raw
            .slack
            .as_ref()
            .map(|s| -> Result<SlackConfig, ConfigError> {
                let channel_ok = !s.approver_channel.is_empty()
                    && s.approver_channel.len() <= 80
                    && s.approver_channel
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !channel_ok {
                    return Err(field(
                        "notify.slack.approver_channel",
                        "use the channel's id, e.g. \"C0123456789\" (channel details → About)",
                    ));
                }
                let api_base = s.api_base.trim_end_matches('/').to_owned();
                if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
                    return Err(field(
                        "notify.slack.api_base",
                        "must be an http(s) URL such as \"https://slack.com/api\"",
                    ));
                }
                Ok(SlackConfig {
                    bot_token: s.bot_token.resolve("notify.slack.bot_token", base)?,
                    signing_secret: s
                        .signing_secret
                        .resolve("notify.slack.signing_secret", base)?,
                    approver_channel: s.approver_channel.clone(),
                    api_base,
                    team_id: match s.team_id.as_deref().map(str::trim) {
                        None => None,
                        Some(t)
                            if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
                        {
                            Some(t.to_owned())
                        }
                        Some(_) => {
                            return Err(field(
                                "notify.slack.team_id",
                                "use the workspace's id, e.g. \"T0123ABCD\" (workspace settings, or the \"team\" in an app's OAuth answer)",
                            ))
                        }
                    },
                })
            })
            .transpose()?;
        let email = raw
            .email
            .as_ref()
            .map(|e| -> Result<EmailConfig, ConfigError> {
                let from = e.from.parse().map_err(|err| {
                    field(
                        "notify.email.from",
                        format!("`{}` is not an address ({err}); write it like \"Brevet <brevet@example.com>\"", e.from),
                    )
                })?;
                let smtp_url = e.smtp_url.resolve("notify.email.smtp_url", base)?;
                if !(smtp_url.expose().starts_with("smtp://")
                    || smtp_url.expose().starts_with("smtps://"))
                {
                    return Err(field(
                        "notify.email.smtp_url",
                        "must start with smtp:// or smtps://, e.g. \"smtp://mail.example.com:587?tls=required\"",
                    ));
                }
                Ok(EmailConfig { smtp_url, from })
            })
            .transpose()?;
        Ok(Self {
            retry,
            attempt_timeout,
            poll_every: raw
                .poll_every
                .unwrap_or(duration_literal("1s"))
                .0
                .max(Duration::from_millis(50)),
            expiry_warning: raw.expiry_warning.unwrap_or(duration_literal("10m")).0,
            webhooks,
            slack,
            email,
        })
    }
}

/// A principal's notification contacts, checked: a Slack member id (`U…` or `W…`) and an email
/// address.
pub(crate) fn parse_contact(
    slack_user: Option<&str>,
    email: Option<&str>,
    at: &dyn Fn(&str) -> String,
) -> Result<(Option<String>, Option<String>), ConfigError> {
    if let Some(u) = slack_user {
        let ok = u.len() >= 2
            && u.len() <= 32
            && (u.starts_with('U') || u.starts_with('W'))
            && u.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !ok {
            return Err(field(
                at("slack_user"),
                format!("`{u}` is not a Slack member id; copy it from the profile (⋮ → Copy member ID), e.g. \"U0123ABCD\""),
            ));
        }
    }
    if let Some(e) = email {
        if e.parse::<lettre::Address>().is_err() {
            return Err(field(at("email"), format!("`{e}` is not an email address")));
        }
    }
    Ok((slack_user.map(str::to_owned), email.map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<NotifySettings, ConfigError> {
        let raw: RawNotify = crate::config::parse_toml(toml_text, "notify")?;
        NotifySettings::parse(&raw, Path::new("."))
    }

    #[test]
    fn defaults_and_errors_name_the_field() {
        let s = parse("").unwrap();
        assert!(!s.any());
        assert_eq!(s.retry.max_attempts, 8);
        assert_eq!(s.expiry_warning, Duration::from_secs(600));

        std::env::set_var("BREVET_TEST_HOOK_SECRET", "0123456789abcdef0123");
        let ok = parse(
            "[[webhooks]]\nname = \"siem\"\nurl = \"https://h.example/x\"\nevents = [\"request.created\", \"grant.expiring\"]\nsecret = { env = \"BREVET_TEST_HOOK_SECRET\" }",
        )
        .unwrap();
        assert!(ok.any());
        assert!(
            !format!("{ok:?}").contains("0123456789abcdef0123"),
            "secrets stay hidden"
        );

        let e = parse("[[webhooks]]\nname = \"a\"\nurl = \"https://h.example/x\"\nevents = [\"request.creatd\"]\nsecret = { env = \"BREVET_TEST_HOOK_SECRET\" }")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("notify.webhooks[0].events") && e.contains("request.created"),
            "{e}"
        );
        let e = parse("[[webhooks]]\nname = \"a\"\nurl = \"ftp://h\"\nevents = [\"*\"]\nsecret = { env = \"BREVET_TEST_HOOK_SECRET\" }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("notify.webhooks[0].url"), "{e}");
        let e = parse("[email]\nsmtp_url = \"smtp://localhost\"\nfrom = \"not an address\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("notify.email.from"), "{e}");
        let e = parse("max_attempts = 0").unwrap_err().to_string();
        assert!(e.contains("notify.max_attempts"), "{e}");

        std::env::set_var("BREVET_TEST_SLACK_BOT", "xoxb-test");
        let slack = |team: &str| {
            parse(&format!(
                "[slack]\nbot_token = {{ env = \"BREVET_TEST_SLACK_BOT\" }}\nsigning_secret = {{ env = \"BREVET_TEST_HOOK_SECRET\" }}\napprover_channel = \"C0123\"\n{team}"
            ))
        };
        assert_eq!(slack("").unwrap().slack.unwrap().team_id, None);
        assert_eq!(
            slack("team_id = \"T0123ABCD\"")
                .unwrap()
                .slack
                .unwrap()
                .team_id,
            Some("T0123ABCD".to_owned())
        );
        let e = slack("team_id = \"my workspace\"").unwrap_err().to_string();
        assert!(
            e.contains("notify.slack.team_id") && e.contains("T0123ABCD"),
            "{e}"
        );
    }

    #[test]
    fn contacts_are_checked() {
        let at = |f: &str| format!("principals[0].{f}");
        assert!(parse_contact(Some("U0123ABC"), Some("a@example.com"), &at).is_ok());
        let e = parse_contact(Some("alice"), None, &at)
            .unwrap_err()
            .to_string();
        assert!(e.contains("principals[0].slack_user"), "{e}");
        let e = parse_contact(None, Some("nope"), &at)
            .unwrap_err()
            .to_string();
        assert!(e.contains("principals[0].email"), "{e}");
    }
}
