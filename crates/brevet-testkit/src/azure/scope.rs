//! ARM scopes (`/`, management groups, subscriptions, resource groups, resources) and the
//! hierarchy they hang in. Path segments are case-insensitive, as in ARM; the stand-in answers
//! with the spelling a management group, subscription or resource group was registered with.

use std::collections::BTreeMap;

use super::error::ArmError;

/// A parsed scope. Names keep the caller's spelling until [`Hierarchy::resolve`] replaces them
/// with the registered one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Root,
    ManagementGroup(String),
    Subscription(String),
    ResourceGroup {
        subscription: String,
        group: String,
    },
    /// `path`: `providers/Microsoft.Storage/storageAccounts/sa1[/type/name…]`, as written.
    Resource {
        subscription: String,
        group: String,
        path: String,
    },
}

fn is(segment: &str, word: &str) -> bool {
    segment.eq_ignore_ascii_case(word)
}

impl Scope {
    /// From the path segments before `providers/Microsoft.Authorization/…`.
    pub fn parse(segments: &[&str]) -> Option<Scope> {
        match segments {
            [] => Some(Scope::Root),
            [p, ns, mgs, mg]
                if is(p, "providers")
                    && is(ns, "Microsoft.Management")
                    && is(mgs, "managementGroups") =>
            {
                Some(Scope::ManagementGroup((*mg).to_owned()))
            }
            [s, sub] if is(s, "subscriptions") => Some(Scope::Subscription((*sub).to_owned())),
            [s, sub, r, rg] if is(s, "subscriptions") && is(r, "resourceGroups") => {
                Some(Scope::ResourceGroup {
                    subscription: (*sub).to_owned(),
                    group: (*rg).to_owned(),
                })
            }
            // providers/{namespace}/{type}/{name}[/{type}/{name}…]
            [s, sub, r, rg, p, ns, rest @ ..]
                if is(s, "subscriptions")
                    && is(r, "resourceGroups")
                    && is(p, "providers")
                    && ns.contains('.')
                    && !rest.is_empty()
                    && rest.len() % 2 == 0 =>
            {
                Some(Scope::Resource {
                    subscription: (*sub).to_owned(),
                    group: (*rg).to_owned(),
                    path: format!("providers/{ns}/{}", rest.join("/")),
                })
            }
            _ => None,
        }
    }

    /// From a scope string (`/subscriptions/S/resourceGroups/rg`).
    pub fn parse_str(s: &str) -> Option<Scope> {
        let segments: Vec<&str> = s.split('/').filter(|x| !x.is_empty()).collect();
        if segments.iter().any(|x| x.trim().is_empty()) {
            return None;
        }
        Scope::parse(&segments)
    }

    /// ARM's id of the scope: `/`, `/subscriptions/S`, …
    pub fn id(&self) -> String {
        match self {
            Scope::Root => "/".to_owned(),
            Scope::ManagementGroup(mg) => {
                format!("/providers/Microsoft.Management/managementGroups/{mg}")
            }
            Scope::Subscription(s) => format!("/subscriptions/{s}"),
            Scope::ResourceGroup {
                subscription,
                group,
            } => {
                format!("/subscriptions/{subscription}/resourceGroups/{group}")
            }
            Scope::Resource {
                subscription,
                group,
                path,
            } => format!("/subscriptions/{subscription}/resourceGroups/{group}/{path}"),
        }
    }

    /// What goes before `/providers/Microsoft.Authorization/…` (empty at the root).
    pub fn prefix(&self) -> String {
        match self {
            Scope::Root => String::new(),
            _ => self.id(),
        }
    }

    /// The id in lower case: scopes compare case-insensitively.
    pub fn key(&self) -> String {
        self.id().to_ascii_lowercase()
    }

    pub fn subscription(&self) -> Option<&str> {
        match self {
            Scope::Subscription(s)
            | Scope::ResourceGroup {
                subscription: s, ..
            }
            | Scope::Resource {
                subscription: s, ..
            } => Some(s),
            _ => None,
        }
    }

    /// PIM's `expandedProperties.scope.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Root => "root",
            Scope::ManagementGroup(_) => "managementgroup",
            Scope::Subscription(_) => "subscription",
            Scope::ResourceGroup { .. } => "resourcegroup",
            Scope::Resource { .. } => "resource",
        }
    }

    /// The last name in the scope (PIM's `displayName`).
    pub fn display_name(&self) -> String {
        match self {
            Scope::Root => "Tenant Root".to_owned(),
            Scope::ManagementGroup(n)
            | Scope::Subscription(n)
            | Scope::ResourceGroup { group: n, .. } => n.clone(),
            Scope::Resource { path, .. } => path.rsplit('/').next().unwrap_or_default().to_owned(),
        }
    }
}

/// The registered management groups, subscriptions and resource groups.
#[derive(Default)]
pub(crate) struct Hierarchy {
    /// lower id → (id, parent management group's lower id)
    management_groups: BTreeMap<String, (String, Option<String>)>,
    /// lower id → (id, management group's lower id)
    subscriptions: BTreeMap<String, (String, Option<String>)>,
    /// (lower subscription, lower name) → name
    resource_groups: BTreeMap<(String, String), String>,
}

impl Hierarchy {
    pub fn add_management_group(&mut self, id: &str, parent: Option<&str>) -> Result<(), String> {
        if id.is_empty() || id.contains('/') {
            return Err(format!("not a management group id: {id:?}"));
        }
        let parent = match parent {
            None => None,
            Some(p) => {
                let key = p.to_ascii_lowercase();
                if !self.management_groups.contains_key(&key) {
                    return Err(format!("no management group {p}"));
                }
                if key == id.to_ascii_lowercase() {
                    return Err(format!("management group {id} cannot be its own parent"));
                }
                Some(key)
            }
        };
        self.management_groups
            .insert(id.to_ascii_lowercase(), (id.to_owned(), parent));
        Ok(())
    }

    pub fn add_subscription(
        &mut self,
        id: &str,
        management_group: Option<&str>,
    ) -> Result<(), String> {
        if id.is_empty() || id.contains('/') {
            return Err(format!("not a subscription id: {id:?}"));
        }
        let mg = match management_group {
            None => None,
            Some(m) => {
                let key = m.to_ascii_lowercase();
                if !self.management_groups.contains_key(&key) {
                    return Err(format!("no management group {m}"));
                }
                Some(key)
            }
        };
        self.subscriptions
            .insert(id.to_ascii_lowercase(), (id.to_owned(), mg));
        Ok(())
    }

    pub fn add_resource_group(&mut self, subscription: &str, name: &str) -> Result<(), String> {
        let sub = subscription.to_ascii_lowercase();
        if !self.subscriptions.contains_key(&sub) {
            return Err(format!("no subscription {subscription}"));
        }
        if name.is_empty() || name.contains('/') || name.len() > 90 {
            return Err(format!("not a resource group name: {name:?}"));
        }
        self.resource_groups
            .insert((sub, name.to_ascii_lowercase()), name.to_owned());
        Ok(())
    }

    fn subscription(&self, id: &str) -> Result<&(String, Option<String>), ArmError> {
        self.subscriptions
            .get(&id.to_ascii_lowercase())
            .ok_or_else(|| {
                ArmError::not_found(
                    "SubscriptionNotFound",
                    format!("The subscription '{id}' could not be found."),
                )
            })
    }

    fn resource_group(&self, subscription: &str, group: &str) -> Result<&String, ArmError> {
        self.resource_groups
            .get(&(
                subscription.to_ascii_lowercase(),
                group.to_ascii_lowercase(),
            ))
            .ok_or_else(|| {
                ArmError::not_found(
                    "ResourceGroupNotFound",
                    format!("Resource group '{group}' could not be found."),
                )
            })
    }

    /// The scope with registered spellings; 404 when its subscription, resource group or
    /// management group does not exist (resources below a resource group need no registration).
    pub fn resolve(&self, scope: &Scope) -> Result<Scope, ArmError> {
        Ok(match scope {
            Scope::Root => Scope::Root,
            Scope::ManagementGroup(mg) => Scope::ManagementGroup(
                self.management_groups
                    .get(&mg.to_ascii_lowercase())
                    .map(|(id, _)| id.clone())
                    .ok_or_else(|| {
                        ArmError::not_found(
                            "ManagementGroupNotFound",
                            format!("The management group '{mg}' could not be found."),
                        )
                    })?,
            ),
            Scope::Subscription(s) => Scope::Subscription(self.subscription(s)?.0.clone()),
            Scope::ResourceGroup {
                subscription,
                group,
            } => {
                let s = self.subscription(subscription)?.0.clone();
                Scope::ResourceGroup {
                    group: self.resource_group(&s, group)?.clone(),
                    subscription: s,
                }
            }
            Scope::Resource {
                subscription,
                group,
                path,
            } => {
                let s = self.subscription(subscription)?.0.clone();
                Scope::Resource {
                    group: self.resource_group(&s, group)?.clone(),
                    subscription: s,
                    path: path.clone(),
                }
            }
        })
    }

    /// `scope` itself, then each scope above it up to the root `/`.
    pub fn ancestors(&self, scope: &Scope) -> Vec<Scope> {
        let mut out = vec![scope.clone()];
        let mut mg = match scope {
            Scope::Root => return out,
            Scope::ManagementGroup(m) => self
                .management_groups
                .get(&m.to_ascii_lowercase())
                .and_then(|(_, p)| p.clone()),
            Scope::Resource {
                subscription,
                group,
                path,
            } => {
                // Parent resources: `providers/ns/t1/n1/t2/n2` → `providers/ns/t1/n1`.
                let parts: Vec<&str> = path.split('/').collect();
                let mut len = parts.len().saturating_sub(2);
                while len >= 4 {
                    out.push(Scope::Resource {
                        subscription: subscription.clone(),
                        group: group.clone(),
                        path: parts[..len].join("/"),
                    });
                    len -= 2;
                }
                out.push(Scope::ResourceGroup {
                    subscription: subscription.clone(),
                    group: group.clone(),
                });
                out.push(Scope::Subscription(subscription.clone()));
                self.subscriptions
                    .get(&subscription.to_ascii_lowercase())
                    .and_then(|(_, m)| m.clone())
            }
            Scope::ResourceGroup { subscription, .. } => {
                out.push(Scope::Subscription(subscription.clone()));
                self.subscriptions
                    .get(&subscription.to_ascii_lowercase())
                    .and_then(|(_, m)| m.clone())
            }
            Scope::Subscription(s) => self
                .subscriptions
                .get(&s.to_ascii_lowercase())
                .and_then(|(_, m)| m.clone()),
        };
        // The parent links form a tree (a parent must exist before its child), but stop anyway
        // after as many steps as there are groups.
        for _ in 0..=self.management_groups.len() {
            let Some(key) = mg else { break };
            let Some((id, parent)) = self.management_groups.get(&key) else {
                break;
            };
            out.push(Scope::ManagementGroup(id.clone()));
            mg = parent.clone();
        }
        out.push(Scope::Root);
        out
    }

    /// Whether `inner` is `outer` or lies below it.
    pub fn is_within(&self, inner: &Scope, outer: &Scope) -> bool {
        let key = outer.key();
        self.ancestors(inner).iter().any(|a| a.key() == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_case_insensitively_and_walk_up_to_the_root() {
        let mut h = Hierarchy::default();
        h.add_management_group("root-mg", None).unwrap();
        h.add_management_group("mg1", Some("root-mg")).unwrap();
        h.add_subscription("S1", Some("mg1")).unwrap();
        h.add_resource_group("s1", "Rg1").unwrap();
        let raw = Scope::parse_str(
            "/SUBSCRIPTIONS/s1/resourcegroups/rg1/providers/Microsoft.Storage/storageAccounts/sa1/blobServices/default",
        )
        .unwrap();
        let scope = h.resolve(&raw).unwrap();
        assert_eq!(
            scope.id(),
            "/subscriptions/S1/resourceGroups/Rg1/providers/Microsoft.Storage/storageAccounts/sa1/blobServices/default"
        );
        let ids: Vec<String> = h.ancestors(&scope).iter().map(Scope::id).collect();
        assert_eq!(
            ids,
            [
                scope.id().as_str(),
                "/subscriptions/S1/resourceGroups/Rg1/providers/Microsoft.Storage/storageAccounts/sa1",
                "/subscriptions/S1/resourceGroups/Rg1",
                "/subscriptions/S1",
                "/providers/Microsoft.Management/managementGroups/mg1",
                "/providers/Microsoft.Management/managementGroups/root-mg",
                "/"
            ]
        );
        assert!(Scope::parse_str(
            "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Storage"
        )
        .is_none());
        assert!(Scope::parse_str("/foo/bar").is_none());
        assert_eq!(
            h.resolve(&Scope::parse_str("/subscriptions/s2").unwrap())
                .unwrap_err()
                .code,
            "SubscriptionNotFound"
        );
        assert_eq!(
            h.resolve(&Scope::parse_str("/subscriptions/s1/resourceGroups/nope").unwrap())
                .unwrap_err()
                .code,
            "ResourceGroupNotFound"
        );
    }
}
