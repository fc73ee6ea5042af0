//! The account as the analysis sees it: policies compiled against the catalog, and principals
//! (users, groups, roles) pointing at them.

use std::collections::{BTreeSet, HashMap};

use brevet_catalog::{Access, Catalog, Cloud};

use super::document::{Compiled, Effect, Expander, PolicyDocument, PrincipalSpec, Resources};
use super::export::{AttachedPolicy, AuthorizationDetails, Boundary, InlinePolicy};
use super::lists::MODIFY_ALSO;
use crate::permset::PermSet;
use crate::report::Warning;
use crate::Exclusions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
    Role,
}

pub struct Policy {
    /// Managed: the ARN. Inline: `<principal ARN>:inline/<name>`.
    pub id: String,
    pub name: String,
    pub aws_managed: bool,
    pub statements: Vec<Compiled>,
    pub facts: Facts,
    /// Excluded by name, or a service-linked role's policy.
    pub excluded: bool,
}

/// What a policy allows on its own, the way the risk categories need it.
pub struct Facts {
    /// Allowed without condition, on every resource the action can name (restrictable actions
    /// on `*`, and actions that only ever take `*` whatever the statement's Resource), less
    /// what the same policy denies without condition on `*`.
    pub unconstrained: PermSet,
    /// Literal action names the catalog does not know, lowercased (allowed without condition,
    /// so counted whatever the Resource: an unknown action cannot be told apart).
    pub literal: BTreeSet<String>,
    /// Permissions-management actions on `*` without condition, less unconditional denies.
    pub permissions_management: PermSet,
    /// Write, permissions-management and tagging actions on `*` (plus the data-copying reads),
    /// less unconditional denies.
    pub modify: PermSet,
    /// Services granted whole (`svc:*`), `*` for all.
    pub service_wildcards: BTreeSet<String>,
    /// Unconditional deny on `*` within the policy.
    pub denied: PermSet,
    /// Everything any Allow statement names, whatever its resource or condition.
    pub mentioned: PermSet,
    /// Condition-limited Allow statements exist.
    pub has_conditional: bool,
}

pub struct Node {
    pub arn: String,
    pub name: String,
    pub kind: Kind,
    pub account: String,
    /// Its own policies (inline and attached), indices into `Model::policies`.
    pub policies: Vec<usize>,
    /// Groups (users) — indices into `Model::nodes`.
    pub groups: Vec<usize>,
    /// Members (groups) — indices into `Model::nodes`.
    pub members: Vec<usize>,
    pub boundary: Option<usize>,
    pub trust: Option<PolicyDocument>,
    pub excluded: bool,
    /// Roles: `RoleLastUsed` as exported — `Some(None)` means AWS saw no use in its tracking
    /// window (400 days).
    pub last_used: Option<Option<String>>,
}

impl Node {
    /// Whether only AWS services may assume it (no people): a workload identity.
    pub fn workload(&self) -> bool {
        match (&self.kind, &self.trust) {
            (Kind::Role, Some(t)) => !t.statements.iter().any(|s| {
                s.effect == Effect::Allow
                    && match &s.principal {
                        Some(PrincipalSpec::Everyone) => true,
                        Some(PrincipalSpec::Typed { aws, federated, .. }) => {
                            !aws.is_empty() || !federated.is_empty()
                        }
                        None => false,
                    }
            }),
            (Kind::Role, None) => true,
            _ => false,
        }
    }
}

pub struct Model {
    pub policies: Vec<Policy>,
    pub nodes: Vec<Node>,
    pub accounts: BTreeSet<String>,
}

/// `arn:aws:iam::123456789012:user/x` → `123456789012`.
pub fn account_of(arn: &str) -> String {
    arn.split(':').nth(4).unwrap_or("").to_string()
}

/// Compiles policies as principals name them: each managed policy once, each inline policy of
/// its principal, and AWS-managed policies the export leaves out from the catalog's copy.
struct Builder<'a> {
    catalog: &'a Catalog,
    exclusions: &'a Exclusions,
    ex: Expander<'a>,
    policies: Vec<Policy>,
    by_arn: HashMap<String, usize>,
    warnings: &'a mut Vec<Warning>,
}

impl<'a> Builder<'a> {
    fn compile(
        &mut self,
        id: String,
        name: String,
        aws_managed: bool,
        doc: &PolicyDocument,
        excluded: bool,
    ) -> usize {
        let statements: Vec<Compiled> = doc.statements.iter().map(|s| self.ex.compile(s)).collect();
        let facts = facts(self.catalog, &mut self.ex, doc, &statements);
        self.policies.push(Policy {
            id,
            name,
            aws_managed,
            statements,
            facts,
            excluded,
        });
        self.policies.len() - 1
    }

    /// A managed policy by ARN: the export's, or an AWS-managed one from the catalog's copy.
    fn resolve(&mut self, arn: &str, name: &str, file: &str) -> Option<usize> {
        if let Some(&i) = self.by_arn.get(arn) {
            return Some(i);
        }
        let role = self.catalog.role(Cloud::Aws, arn)?;
        let doc: PolicyDocument = serde_json::from_value(serde_json::json!({
            "Statement": [{"Effect": "Allow", "Action": role.patterns.iter().filter(|p| !p.starts_with('-')).collect::<Vec<_>>(), "Resource": "*"}]
        }))
        .ok()?;
        self.warnings.push(Warning { file: file.to_string(), message: format!("{arn} is attached but not in the export; used the catalog's copy (its Resource constraints, if any, are not known)") });
        let excluded =
            self.exclusions.excludes_policy(arn) || self.exclusions.excludes_policy(name);
        let i = self.compile(arn.to_string(), name.to_string(), true, &doc, excluded);
        self.by_arn.insert(arn.to_string(), i);
        Some(i)
    }

    /// A principal's own policies: its inline ones (excluded by name, or all of them when
    /// `all_excluded`), then the managed ones attached to it.
    #[allow(clippy::too_many_arguments)]
    fn own(
        &mut self,
        file: &str,
        what: &str,
        name: &str,
        arn: &str,
        inline: &[InlinePolicy],
        attached: &[AttachedPolicy],
        all_excluded: bool,
    ) -> Vec<usize> {
        let mut own = Vec::new();
        for ip in inline {
            let excluded = self.exclusions.excludes_policy(&ip.policy_name) || all_excluded;
            own.push(self.compile(
                format!("{arn}:inline/{}", ip.policy_name),
                ip.policy_name.clone(),
                false,
                &ip.policy_document.0,
                excluded,
            ));
        }
        for ap in attached {
            match self.resolve(&ap.policy_arn, &ap.policy_name, file) {
                Some(i) => own.push(i),
                None => self.warnings.push(Warning { file: file.to_string(), message: format!("{what} {name} has {} attached, which is neither in the export nor an AWS-managed policy Brevet knows; its permissions are not counted", ap.policy_arn) }),
            }
        }
        own
    }

    fn boundary(&mut self, b: Option<&Boundary>, file: &str) -> Option<usize> {
        let arn = &b?.permissions_boundary_arn;
        self.resolve(arn, arn.rsplit('/').next().unwrap_or(""), file)
    }
}

pub fn build(
    catalog: &Catalog,
    exports: Vec<(String, AuthorizationDetails)>,
    exclusions: &Exclusions,
    warnings: &mut Vec<Warning>,
) -> Model {
    let mut b = Builder {
        catalog,
        exclusions,
        ex: Expander::new(catalog),
        policies: Vec::new(),
        by_arn: HashMap::new(),
        warnings,
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut accounts = BTreeSet::new();

    for (file, export) in &exports {
        if export.is_truncated {
            b.warnings.push(Warning { file: file.clone(), message: "the export says IsTruncated: true — it holds only the first page; export with the AWS CLI, which fetches every page".into() });
        }
        for p in export.policies.iter().flatten() {
            let Some(doc) = p.default_document() else {
                b.warnings.push(Warning {
                    file: file.clone(),
                    message: format!(
                        "policy {} has no default version in the export; skipped",
                        p.arn
                    ),
                });
                continue;
            };
            let sl = p.arn.contains("/aws-service-role/") || p.arn.contains("/service-role/");
            let excluded = exclusions.excludes_policy(&p.arn)
                || exclusions.excludes_policy(&p.policy_name)
                || (sl && !exclusions.service_linked_roles);
            let i = b.compile(
                p.arn.clone(),
                p.policy_name.clone(),
                p.is_aws_managed(),
                doc,
                excluded,
            );
            b.by_arn.entry(p.arn.clone()).or_insert(i);
        }
    }

    let mut group_index: HashMap<(String, String), usize> = HashMap::new();
    for (file, export) in &exports {
        for g in export.group_detail_list.iter().flatten() {
            let account = account_of(&g.arn);
            accounts.insert(account.clone());
            let own = b.own(
                file,
                "group",
                &g.group_name,
                &g.arn,
                &g.group_policy_list,
                &g.attached_managed_policies,
                false,
            );
            group_index.insert((account.clone(), g.group_name.clone()), nodes.len());
            nodes.push(Node {
                arn: g.arn.clone(),
                name: g.group_name.clone(),
                kind: Kind::Group,
                account,
                policies: own,
                groups: vec![],
                members: vec![],
                boundary: None,
                trust: None,
                excluded: exclusions.excludes_principal(&g.arn),
                last_used: None,
            });
        }
    }
    for (file, export) in &exports {
        for u in export.user_detail_list.iter().flatten() {
            let account = account_of(&u.arn);
            accounts.insert(account.clone());
            let own = b.own(
                file,
                "user",
                &u.user_name,
                &u.arn,
                &u.user_policy_list,
                &u.attached_managed_policies,
                false,
            );
            let boundary = b.boundary(u.permissions_boundary.as_ref(), file);
            let me = nodes.len();
            let mut groups = Vec::new();
            for gname in &u.group_list {
                match group_index.get(&(account.clone(), gname.clone())) {
                    Some(&gi) => groups.push(gi),
                    None => b.warnings.push(Warning { file: file.clone(), message: format!("user {} is in group {gname}, which the export does not contain; its policies are not counted", u.user_name) }),
                }
            }
            for &gi in &groups {
                nodes[gi].members.push(me);
            }
            nodes.push(Node {
                arn: u.arn.clone(),
                name: u.user_name.clone(),
                kind: Kind::User,
                account,
                policies: own,
                groups,
                members: vec![],
                boundary,
                trust: None,
                excluded: exclusions.excludes_principal(&u.arn),
                last_used: None,
            });
        }
        for r in export.role_detail_list.iter().flatten() {
            let account = account_of(&r.arn);
            accounts.insert(account.clone());
            let service_linked = r.path.starts_with("/aws-service-role/")
                || r.arn.contains(":role/aws-service-role/");
            let own = b.own(
                file,
                "role",
                &r.role_name,
                &r.arn,
                &r.role_policy_list,
                &r.attached_managed_policies,
                service_linked && !exclusions.service_linked_roles,
            );
            let boundary = b.boundary(r.permissions_boundary.as_ref(), file);
            nodes.push(Node {
                arn: r.arn.clone(),
                name: r.role_name.clone(),
                kind: Kind::Role,
                account,
                policies: own,
                groups: vec![],
                members: vec![],
                boundary,
                trust: r.assume_role_policy_document.as_ref().map(|d| d.0.clone()),
                excluded: exclusions.excludes_principal(&r.arn)
                    || (service_linked && !exclusions.service_linked_roles),
                last_used: r.role_last_used.as_ref().map(|l| l.last_used_date.clone()),
            });
        }
    }
    if !b.ex.unknown.is_empty() {
        let mut u = b.ex.unknown.clone();
        u.sort();
        u.dedup();
        let shown: Vec<_> = u.iter().take(20).cloned().collect();
        b.warnings.push(Warning { file: "(aws)".into(), message: format!("{} action name(s) or pattern(s) match nothing in the AWS catalog (typos, retired or newer than Brevet's catalog): {}{}", u.len(), shown.join(", "), if u.len() > 20 { ", …" } else { "" }) });
    }
    Model {
        policies: b.policies,
        nodes,
        accounts,
    }
}

fn facts(
    catalog: &Catalog,
    ex: &mut Expander,
    doc: &PolicyDocument,
    statements: &[Compiled],
) -> Facts {
    let n = ex.universe();
    let perms = catalog.permissions();
    let mut f = Facts {
        unconstrained: PermSet::new(n),
        literal: BTreeSet::new(),
        permissions_management: PermSet::new(n),
        modify: PermSet::new(n),
        service_wildcards: BTreeSet::new(),
        denied: PermSet::new(n),
        mentioned: PermSet::new(n),
        has_conditional: false,
    };
    let also: Vec<u32> = MODIFY_ALSO
        .iter()
        .filter_map(|a| catalog.permission_index(Cloud::Aws, a))
        .collect();
    for (raw, st) in doc.statements.iter().zip(statements) {
        match st.effect {
            Effect::Deny => {
                if !st.conditional && st.resources == Resources::Any {
                    f.denied.union_with(&st.actions);
                }
            }
            Effect::Allow => {
                f.mentioned.union_with(&st.actions);
                if st.conditional {
                    f.has_conditional = true;
                    continue;
                }
                let broad = st.resources.is_unconstrained();
                for i in st.actions.iter() {
                    let p = &perms[i as usize];
                    let restrictable = !p.resource_types.is_empty();
                    if !restrictable || broad {
                        f.unconstrained.insert(i);
                    }
                    if restrictable && broad {
                        match p.access {
                            Access::PermissionsManagement => {
                                f.permissions_management.insert(i);
                                f.modify.insert(i);
                            }
                            Access::Write | Access::Tagging => f.modify.insert(i),
                            _ => {}
                        }
                    }
                }
                if broad {
                    for &a in &also {
                        if st.actions.contains(a) {
                            f.modify.insert(a);
                        }
                    }
                }
                if !st.not_action {
                    for a in &st.patterns {
                        let a = a.trim();
                        if a == "*" {
                            f.service_wildcards.insert("*".into());
                        } else if let Some((svc, "*")) = a.split_once(':') {
                            f.service_wildcards.insert(svc.to_ascii_lowercase());
                        } else if !a.contains('*')
                            && !a.contains('?')
                            && catalog.permission_index(Cloud::Aws, a).is_none()
                        {
                            f.literal.insert(a.to_ascii_lowercase());
                        }
                    }
                }
                let _ = raw;
            }
        }
    }
    f.unconstrained.difference_with(&f.denied);
    f.permissions_management.difference_with(&f.denied);
    f.modify.difference_with(&f.denied);
    // A service whose every action is denied is not granted whole.
    let denied = f.denied.clone();
    f.service_wildcards.retain(|svc| {
        if svc == "*" {
            return !ex.all().iter().all(|i| denied.contains(i));
        }
        let all = catalog.in_service(Cloud::Aws, svc);
        all.is_empty() || !all.iter().all(|&i| denied.contains(i))
    });
    f
}
