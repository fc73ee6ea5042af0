//! Parsed names. Each type can only be built by parsing, so holding one means it is well-formed.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{invalid, CoreError};

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Who a principal is: a user id from the authenticator (`alice`, `alice@example.com`).
/// Case-insensitive, like the e-mail addresses and user names identity providers issue: kept in
/// lower case, so `Mallory@Corp.com` typed into the kill switch is the `mallory@corp.com` who
/// signed in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalId(String);

impl PrincipalId {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
        if ok {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(invalid(
                "principal id",
                s,
                "use 1-128 characters from letters, digits and . _ - @ +",
            ))
        }
    }
}
string_newtype!(PrincipalId);

/// A provider instance name from the config, e.g. `postgres` or `orders-db`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderName(String);

impl ProviderName {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "provider name",
                s,
                "use 1-64 lowercase letters, digits, - or _, starting with a letter",
            ))
        }
    }
}
string_newtype!(ProviderName);

/// A resource: `<provider>:<identifier>`, e.g. `postgres:orders-prod`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

impl ResourceId {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let Some((provider, name)) = s.split_once(':') else {
            return Err(invalid(
                "resource",
                s,
                "expected `<provider>:<name>`, for example `postgres:orders-prod`",
            ));
        };
        ProviderName::parse(provider).map_err(|_| {
            invalid(
                "resource",
                s,
                format!(
                    "`{provider}` is not a valid provider name (lowercase letters, digits, - or _)"
                ),
            )
        })?;
        let ok = !name.is_empty()
            && name.len() <= 200
            && name.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@')
            });
        if !ok {
            return Err(invalid(
                "resource",
                s,
                "the part after `:` must be 1-200 characters from letters, digits and . _ - / : @",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn provider(&self) -> ProviderName {
        // Proven by `parse`: the prefix before the first ':' is a valid provider name.
        ProviderName(
            self.0
                .split_once(':')
                .map(|(p, _)| p)
                .unwrap_or_default()
                .to_owned(),
        )
    }

    pub fn name(&self) -> &str {
        self.0.split_once(':').map(|(_, n)| n).unwrap_or_default()
    }
}
string_newtype!(ResourceId);

/// A provider-neutral access profile such as `db.read`, `ssh.login` or `aws.s3-read`. Each provider
/// maps the profiles it supports to its own privileges.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileName(String);

impl ProfileName {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let segment_ok = |seg: &str| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if s.len() <= 64 && s.contains('.') && s.split('.').all(segment_ok) {
            Ok(Self(s.to_owned()))
        } else {
            Err(invalid(
                "access profile",
                s,
                "expected dotted lowercase words such as `db.read` or `ssh.login`",
            ))
        }
    }
}
string_newtype!(ProfileName);

/// What a provider materialises: one principal's profile on one resource. Overlapping grants
/// share a binding, and the binding is only removed when the last grant holding it ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Binding {
    pub principal: PrincipalId,
    pub resource: ResourceId,
    pub profile: ProfileName,
}

impl Binding {
    /// A stable key for storage and for provider-side names (no separator can appear in a part).
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.principal, self.resource, self.profile)
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} on {}",
            self.principal, self.profile, self.resource
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_parts() {
        let r = ResourceId::parse("postgres:orders-prod").unwrap();
        assert_eq!(r.provider().as_str(), "postgres");
        assert_eq!(r.name(), "orders-prod");
    }

    #[test]
    fn bad_names_are_refused_with_a_hint() {
        let e = ResourceId::parse("orders").unwrap_err().to_string();
        assert!(e.contains("<provider>:<name>"), "{e}");
        assert!(ResourceId::parse("Postgres:x").is_err());
        assert!(ResourceId::parse("pg:").is_err());
        assert!(ResourceId::parse("pg:a b").is_err());
        assert!(ProfileName::parse("db").is_err());
        assert!(ProfileName::parse("DB.read").is_err());
        assert!(ProfileName::parse("db..read").is_err());
        assert!(ProfileName::parse("aws.s3-read").is_ok());
        assert!(PrincipalId::parse("alice@example.com").is_ok());
        assert_eq!(
            PrincipalId::parse("Mallory@Corp.com").unwrap(),
            PrincipalId::parse("mallory@corp.com").unwrap(),
            "principal ids are case-insensitive"
        );
        assert!(PrincipalId::parse("alice|x").is_err());
        assert!(PrincipalId::parse("").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsed_resources_round_trip(s in "[a-z][a-z0-9_-]{0,10}:[A-Za-z0-9._/-]{1,30}") {
            let r = ResourceId::parse(&s).unwrap();
            proptest::prop_assert_eq!(format!("{}:{}", r.provider(), r.name()), s);
        }

        #[test]
        fn binding_keys_are_injective(a in "[a-z]{1,5}", b in "[a-z]{1,5}") {
            // `|` cannot appear in any part, so different bindings never share a key.
            let p1 = PrincipalId::parse(&a).unwrap();
            let p2 = PrincipalId::parse(&b).unwrap();
            let r = ResourceId::parse("pg:x").unwrap();
            let pr = ProfileName::parse("db.read").unwrap();
            let k1 = Binding { principal: p1.clone(), resource: r.clone(), profile: pr.clone() }.key();
            let k2 = Binding { principal: p2.clone(), resource: r, profile: pr }.key();
            proptest::prop_assert_eq!(k1 == k2, p1 == p2);
        }
    }
}
