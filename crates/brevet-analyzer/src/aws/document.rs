//! IAM policy documents: parsed as AWS writes them, and compiled against the action catalog into
//! permission sets (wildcards and `NotAction` expanded).

use std::collections::HashMap;

use brevet_catalog::{Catalog, Cloud};
use serde::{Deserialize, Deserializer};

use crate::permset::PermSet;

#[derive(Debug, Clone, Deserialize)]
pub struct PolicyDocument {
    #[serde(rename = "Statement", deserialize_with = "one_or_many")]
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub effect: Effect,
    #[serde(default, deserialize_with = "opt_one_or_many")]
    pub action: Option<Vec<String>>,
    #[serde(default, deserialize_with = "opt_one_or_many")]
    pub not_action: Option<Vec<String>>,
    #[serde(default, deserialize_with = "opt_one_or_many")]
    pub resource: Option<Vec<String>>,
    #[serde(default, deserialize_with = "opt_one_or_many")]
    pub not_resource: Option<Vec<String>>,
    /// Trust policies: who may assume. `"*"` or `{"AWS": …, "Service": …, "Federated": …}`.
    #[serde(default)]
    pub principal: Option<PrincipalSpec>,
    #[serde(default)]
    pub condition: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub enum PrincipalSpec {
    /// `"Principal": "*"`. (`{"AWS": "*"}` stays in `aws`: it names every account's principals,
    /// which each still need their own identity policy to allow the call.)
    Everyone,
    Typed {
        aws: Vec<String>,
        service: Vec<String>,
        federated: Vec<String>,
    },
}

impl<'de> Deserialize<'de> for PrincipalSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Map(HashMap<String, OneOrMany>),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) if s == "*" => Ok(PrincipalSpec::Everyone),
            Raw::Text(s) => Err(D::Error::custom(format!(
                "Principal `{s}`: a string Principal can only be \"*\"; write {{\"AWS\": \"{s}\"}}"
            ))),
            Raw::Map(mut m) => {
                let mut take = |k: &str| m.remove(k).map(|v| v.0).unwrap_or_default();
                let aws = take("AWS");
                let service = take("Service");
                let federated = take("Federated");
                Ok(PrincipalSpec::Typed {
                    aws,
                    service,
                    federated,
                })
            }
        }
    }
}

/// A string or a list of strings, as IAM allows for most fields.
#[derive(Debug, Clone, Default)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(OneOrMany(match Raw::deserialize(d)? {
            Raw::One(s) => vec![s],
            Raw::Many(v) => v,
        }))
    }
}

/// One item or a list. Read through a JSON value, so an error inside an item (a bad Effect)
/// keeps its message instead of becoming "did not match any variant".
fn one_or_many<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    use serde::de::Error;
    let v = serde_json::Value::deserialize(d)?;
    let items = match v {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value(item)
                .map_err(|e| D::Error::custom(format!("Statement[{i}]: {e}")))
        })
        .collect()
}

fn opt_one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Some(OneOrMany::deserialize(d)?.0))
}

/// Where a statement applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resources {
    /// `"Resource": "*"` (or an ARN pattern that is all wildcards).
    Any,
    /// Specific ARNs or patterns.
    Listed(Vec<String>),
    /// `NotResource`: everything except these — as good as `*` for risk.
    Except(Vec<String>),
}

impl Resources {
    /// Unconstrained: applies to every resource an action can name.
    pub fn is_unconstrained(&self) -> bool {
        !matches!(self, Resources::Listed(_))
    }
}

fn is_star_arn(r: &str) -> bool {
    r == "*"
        || r.split(':')
            .all(|part| part.chars().all(|c| c == '*') || part == "arn")
}

/// A statement compiled against the catalog.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub effect: Effect,
    pub actions: PermSet,
    /// `NotAction`: the set is "everything but" the patterns.
    pub not_action: bool,
    /// The patterns as written.
    pub patterns: Vec<String>,
    pub resources: Resources,
    pub conditional: bool,
}

/// Expands patterns against the catalog, remembering each pattern (policies repeat them).
pub struct Expander<'c> {
    pub catalog: &'c Catalog,
    cache: HashMap<String, PermSet>,
    /// Patterns that matched nothing in the catalog (typos, retired or newer actions).
    pub unknown: Vec<String>,
    all: Option<PermSet>,
}

impl<'c> Expander<'c> {
    pub fn new(catalog: &'c Catalog) -> Expander<'c> {
        Expander {
            catalog,
            cache: HashMap::new(),
            unknown: Vec::new(),
            all: None,
        }
    }

    pub fn universe(&self) -> usize {
        self.catalog.permissions().len()
    }

    /// Every AWS action.
    pub fn all(&mut self) -> &PermSet {
        if self.all.is_none() {
            let mut s = PermSet::new(self.universe());
            for (i, p) in self.catalog.permissions().iter().enumerate() {
                if p.cloud == Cloud::Aws {
                    s.insert(i as u32);
                }
            }
            self.all = Some(s);
        }
        self.all.as_ref().expect("set above")
    }

    pub fn pattern(&mut self, cloud: Cloud, pattern: &str) -> &PermSet {
        let key = format!("{}\u{0}{}", cloud.as_str(), pattern.to_ascii_lowercase());
        if !self.cache.contains_key(&key) {
            let mut s = PermSet::new(self.universe());
            let hits = self.catalog.expand(cloud, pattern.trim());
            if hits.is_empty() {
                self.unknown.push(pattern.to_string());
            }
            for i in hits {
                s.insert(i);
            }
            self.cache.insert(key.clone(), s);
        }
        &self.cache[&key]
    }

    pub fn patterns(&mut self, cloud: Cloud, patterns: &[String]) -> PermSet {
        let mut s = PermSet::new(self.universe());
        for p in patterns {
            // An exact name is one bit: set it, rather than cache a whole set for it.
            if !brevet_catalog::Pattern::is_wildcard(p.trim()) {
                match self.catalog.permission_index(cloud, p.trim()) {
                    Some(i) => s.insert(i),
                    None => self.unknown.push(p.to_string()),
                }
                continue;
            }
            s.union_with(self.pattern(cloud, p));
        }
        s
    }

    pub fn compile(&mut self, st: &Statement) -> Compiled {
        let (patterns, not_action) = match (&st.action, &st.not_action) {
            (Some(a), _) => (a.clone(), false),
            (None, Some(n)) => (n.clone(), true),
            (None, None) => (Vec::new(), false),
        };
        let actions = if not_action {
            let mut all = self.all().clone();
            all.difference_with(&self.patterns(Cloud::Aws, &patterns));
            all
        } else {
            self.patterns(Cloud::Aws, &patterns)
        };
        let resources = match (&st.resource, &st.not_resource) {
            (Some(r), _) if r.iter().any(|r| is_star_arn(r)) => Resources::Any,
            (Some(r), _) => Resources::Listed(r.clone()),
            (None, Some(n)) => Resources::Except(n.clone()),
            // A trust policy has neither.
            (None, None) => Resources::Any,
        };
        Compiled {
            effect: st.effect,
            actions,
            not_action,
            patterns,
            resources,
            conditional: st
                .condition
                .as_ref()
                .is_some_and(|c| c.as_object().is_none_or(|o| !o.is_empty())),
        }
    }
}
