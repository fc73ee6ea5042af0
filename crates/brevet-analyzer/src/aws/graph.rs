//! Who can become whom, and who is admin-equivalent — the questions PMapper answers, with a
//! policy evaluator over the compiled statements: explicit deny wins, an allow is needed, a
//! permissions boundary must allow too; `NotAction`/`NotResource` are complements; resource
//! patterns match without case, `*` crossing `:` and `/`, `${aws:username}` filled in.
//! Statements with conditions count (the edge notes it): the analysis cannot know the request's
//! context, and missing a real path is worse than showing a guarded one.

use brevet_catalog::{Catalog, Cloud, Pattern};

use super::document::{Compiled, Effect, PolicyDocument, PrincipalSpec, Resources};
use super::model::{Kind, Model};
use crate::permset::PermSet;
use crate::report::Edge;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    No,
    /// Allowed only when a condition holds.
    IfCondition,
    Yes,
}

pub struct Evaluator<'m> {
    catalog: &'m Catalog,
    model: &'m Model,
    /// Per node: every action any of its Allow statements names (a cheap first test).
    mentioned: Vec<PermSet>,
    /// Per node: its policies and its groups' (computed once: checks run millions of times).
    policies: Vec<Vec<usize>>,
    /// Action name → catalog index, for the fixed names the graph asks about.
    actions: std::cell::RefCell<std::collections::HashMap<&'static str, Option<u32>>>,
}

fn resource_matches(pattern: &str, resource: &str, username: &str) -> bool {
    let p = if pattern.contains("${") {
        let mut s = pattern.replace("${aws:username}", username);
        // Other policy variables are unknown here: any value.
        while let (Some(a), Some(b)) = (s.find("${"), s.find('}')) {
            if b < a {
                break;
            }
            s.replace_range(a..=b, "*");
        }
        s
    } else {
        pattern.to_string()
    };
    Pattern::new(&p, true).matches(resource)
}

fn statement_matches(st: &Compiled, action: u32, resource: &str, username: &str) -> bool {
    if !st.actions.contains(action) {
        return false;
    }
    match &st.resources {
        Resources::Any => true,
        Resources::Listed(v) => v.iter().any(|p| resource_matches(p, resource, username)),
        Resources::Except(v) => !v.iter().any(|p| resource_matches(p, resource, username)),
    }
}

impl<'m> Evaluator<'m> {
    pub fn new(catalog: &'m Catalog, model: &'m Model) -> Evaluator<'m> {
        let universe = catalog.permissions().len();
        let policies: Vec<Vec<usize>> = (0..model.nodes.len())
            .map(|i| Self::policies_of(model, i))
            .collect();
        let mentioned = policies
            .iter()
            .map(|pols| {
                let mut s = PermSet::new(universe);
                for &p in pols {
                    s.union_with(&model.policies[p].facts.mentioned);
                }
                s
            })
            .collect();
        Evaluator {
            catalog,
            model,
            mentioned,
            policies,
            actions: Default::default(),
        }
    }

    fn policies_of(model: &Model, node: usize) -> Vec<usize> {
        let n = &model.nodes[node];
        let mut v = n.policies.clone();
        for &g in &n.groups {
            v.extend(model.nodes[g].policies.iter().copied());
        }
        v
    }

    pub fn action(&self, name: &'static str) -> Option<u32> {
        *self
            .actions
            .borrow_mut()
            .entry(name)
            .or_insert_with(|| self.catalog.permission_index(Cloud::Aws, name))
    }

    /// Whether any of the node's Allow statements names `action` at all (no resource or
    /// condition considered): when not, no check for it can pass.
    pub fn mentions(&self, node: usize, action: &'static str) -> bool {
        self.action(action)
            .is_some_and(|a| self.mentioned[node].contains(a))
    }

    /// Whether `node`'s identity policies (its own and its groups'), within its permissions
    /// boundary, allow `action` on `resource`.
    pub fn check(&self, node: usize, action: &'static str, resource: &str) -> Verdict {
        let Some(a) = self.action(action) else {
            return Verdict::No;
        };
        if !self.mentioned[node].contains(a) {
            return Verdict::No;
        }
        let n = &self.model.nodes[node];
        let user = if n.kind == Kind::User {
            n.name.as_str()
        } else {
            ""
        };
        let mut verdict = Verdict::No;
        for &p in &self.policies[node] {
            for st in &self.model.policies[p].statements {
                if !statement_matches(st, a, resource, user) {
                    continue;
                }
                match (st.effect, st.conditional) {
                    (Effect::Deny, false) => return Verdict::No,
                    (Effect::Deny, true) => {}
                    (Effect::Allow, false) => verdict = Verdict::Yes,
                    (Effect::Allow, true) => verdict = verdict.max(Verdict::IfCondition),
                }
            }
        }
        if verdict == Verdict::No {
            return verdict;
        }
        if let Some(b) = n.boundary {
            let mut allowed = Verdict::No;
            for st in &self.model.policies[b].statements {
                if !statement_matches(st, a, resource, user) {
                    continue;
                }
                match (st.effect, st.conditional) {
                    (Effect::Deny, false) => return Verdict::No,
                    (Effect::Deny, true) => {}
                    (Effect::Allow, false) => allowed = Verdict::Yes,
                    (Effect::Allow, true) => allowed = allowed.max(Verdict::IfCondition),
                }
            }
            verdict = verdict.min(allowed);
        }
        verdict
    }

    /// Whether the identity policies deny `action` on `resource` outright.
    fn denies(&self, node: usize, action: &'static str, resource: &str) -> bool {
        let Some(a) = self.action(action) else {
            return false;
        };
        let n = &self.model.nodes[node];
        let user = if n.kind == Kind::User {
            n.name.as_str()
        } else {
            ""
        };
        self.policies[node].iter().any(|&p| {
            self.model.policies[p].statements.iter().any(|st| {
                st.effect == Effect::Deny
                    && !st.conditional
                    && statement_matches(st, a, resource, user)
            })
        })
    }
}

/// How a role's trust policy treats a would-be assumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    No,
    /// Names the principal itself (or `"*"`): no identity permission needed in its account.
    Direct {
        conditional: bool,
    },
    /// Names its account (root, account id, `{"AWS": "*"}`): its own policies must allow.
    Account {
        conditional: bool,
    },
}

fn assume_actions(s: &super::document::Statement) -> bool {
    match (&s.action, &s.not_action) {
        (Some(a), _) => a.iter().any(|x| {
            let x = x.to_ascii_lowercase();
            x == "*" || x == "sts:*" || x == "sts:assumerole" || x == "sts:assume*"
        }),
        (None, Some(n)) => !n.iter().any(|x| {
            let x = x.to_ascii_lowercase();
            x == "*" || x == "sts:*" || x == "sts:assumerole"
        }),
        _ => false,
    }
}

/// Strongest first: naming the principal without condition beats naming its account.
fn rank(t: Trust) -> u8 {
    match t {
        Trust::No => 0,
        Trust::Account { conditional: true } => 1,
        Trust::Direct { conditional: true } => 2,
        Trust::Account { conditional: false } => 3,
        Trust::Direct { conditional: false } => 4,
    }
}

fn trust_for(trust: &PolicyDocument, arn: &str, account: &str) -> Trust {
    let root = format!("arn:aws:iam::{account}:root");
    let mut best = Trust::No;
    for s in &trust.statements {
        if !assume_actions(s) {
            continue;
        }
        let conditional = s
            .condition
            .as_ref()
            .is_some_and(|c| c.as_object().is_none_or(|o| !o.is_empty()));
        let m = match &s.principal {
            Some(PrincipalSpec::Everyone) => Trust::Direct { conditional },
            Some(PrincipalSpec::Typed { aws, .. }) => {
                if aws.iter().any(|a| a == arn) {
                    Trust::Direct { conditional }
                } else if aws.iter().any(|a| a == "*" || *a == root || a == account) {
                    Trust::Account { conditional }
                } else {
                    Trust::No
                }
            }
            None => Trust::No,
        };
        if m == Trust::No {
            continue;
        }
        if s.effect == Effect::Deny {
            if !conditional {
                return Trust::No;
            }
            continue;
        }
        if rank(m) > rank(best) {
            best = m;
        }
    }
    best
}

/// Whether the trust policy lets AWS service `svc` assume the role (and how).
fn trusts_service(trust: &PolicyDocument, svc: &str) -> Option<bool> {
    let mut out: Option<bool> = None;
    for s in &trust.statements {
        if !assume_actions(s) {
            continue;
        }
        let names = match &s.principal {
            Some(PrincipalSpec::Everyone) => true,
            Some(PrincipalSpec::Typed { service, .. }) => service.iter().any(|x| x == svc),
            None => false,
        };
        if !names {
            continue;
        }
        let conditional = s
            .condition
            .as_ref()
            .is_some_and(|c| c.as_object().is_none_or(|o| !o.is_empty()));
        if s.effect == Effect::Deny {
            if !conditional {
                return None;
            }
            continue;
        }
        out = Some(out.unwrap_or(true) && conditional);
    }
    out
}

/// Groups whose members are admin-equivalent through the group's own policies: they let a
/// member rewrite its own permissions (or the group's).
pub fn admin_groups(ev: &Evaluator, model: &Model) -> Vec<usize> {
    (0..model.nodes.len())
        .filter(|&g| {
            let n = &model.nodes[g];
            if n.kind != Kind::Group || n.excluded {
                return false;
            }
            // Any member: a user of the group's account no policy names.
            let member = format!("arn:aws:iam::{}:user/brevet-analyzer-any-member", n.account);
            let ok = |action: &'static str, res: &str| ev.check(g, action, res) != Verdict::No;
            ok("iam:PutUserPolicy", &member)
                || ok("iam:AttachUserPolicy", &member)
                || ok("iam:PutGroupPolicy", &n.arn)
                || ok("iam:AttachGroupPolicy", &n.arn)
                || (ok("iam:CreateRole", "*")
                    && (ok("iam:AttachRolePolicy", "*") || ok("iam:PutRolePolicy", "*")))
        })
        .collect()
}

/// How `src` could give principal `dst` any permission: an inline or attached policy on it,
/// or (a user) membership of a group in `admin_groups`. PMapper has no such check; AWS allows
/// each of these calls to anyone whose policies allow it on `dst`.
pub fn can_empower(
    ev: &Evaluator,
    model: &Model,
    admin_groups: &[usize],
    src: usize,
    dst: usize,
) -> Option<String> {
    let d = &model.nodes[dst];
    if d.account != model.nodes[src].account {
        return None;
    }
    let ok = |action: &'static str, res: &str| ev.check(src, action, res) != Verdict::No;
    let (put, attach) = match d.kind {
        Kind::User => ("iam:PutUserPolicy", "iam:AttachUserPolicy"),
        Kind::Role => ("iam:PutRolePolicy", "iam:AttachRolePolicy"),
        Kind::Group => return None,
    };
    for action in [put, attach] {
        if ok(action, &d.arn) {
            return Some(action.to_string());
        }
    }
    if d.kind == Kind::User {
        for &g in admin_groups {
            let gn = &model.nodes[g];
            if gn.account == d.account && ok("iam:AddUserToGroup", &gn.arn) {
                return Some(format!("iam:AddUserToGroup into {}", gn.name));
            }
        }
    }
    None
}

/// Admin-equivalent: can rewrite its own permissions — an inline policy on itself, attaching
/// a policy to itself, creating a role it attaches anything to, a new version of a
/// customer-managed policy it holds, joining a group whose policies make it admin, or (users)
/// the same through a group it is in.
pub fn is_admin(
    ev: &Evaluator,
    model: &Model,
    admin_groups: &[usize],
    node: usize,
) -> Option<String> {
    let n = &model.nodes[node];
    let ok = |action: &'static str, res: &str| ev.check(node, action, res) != Verdict::No;
    let (put, attach) = match n.kind {
        Kind::User => ("iam:PutUserPolicy", "iam:AttachUserPolicy"),
        Kind::Role => ("iam:PutRolePolicy", "iam:AttachRolePolicy"),
        Kind::Group => return None,
    };
    if ok(put, &n.arn) {
        return Some(format!("{put} on itself"));
    }
    if ok(attach, &n.arn) {
        return Some(format!("{attach} on itself"));
    }
    if ok("iam:CreateRole", "*")
        && (ok("iam:AttachRolePolicy", "*") || ok("iam:PutRolePolicy", "*"))
    {
        return Some("iam:CreateRole with a policy it chooses".into());
    }
    for &p in &n.policies {
        let pol = &model.policies[p];
        if !pol.aws_managed
            && !pol.id.contains(":inline/")
            && ok("iam:CreatePolicyVersion", &pol.id)
        {
            return Some(format!(
                "iam:CreatePolicyVersion on its own policy {}",
                pol.name
            ));
        }
    }
    if n.kind == Kind::User {
        for &g in admin_groups {
            let gn = &model.nodes[g];
            if gn.account == n.account
                && !n.groups.contains(&g)
                && ok("iam:AddUserToGroup", &gn.arn)
            {
                return Some(format!(
                    "iam:AddUserToGroup: can join {}, whose policies make it admin",
                    gn.name
                ));
            }
        }
        for &g in &n.groups {
            let garn = &model.nodes[g].arn;
            if ok("iam:PutGroupPolicy", garn) || ok("iam:AttachGroupPolicy", garn) {
                return Some(format!(
                    "can change the policies of its group {}",
                    model.nodes[g].name
                ));
            }
            for &p in &model.nodes[g].policies {
                let pol = &model.policies[p];
                if !pol.aws_managed
                    && !pol.id.contains(":inline/")
                    && ok("iam:CreatePolicyVersion", &pol.id)
                {
                    return Some(format!(
                        "iam:CreatePolicyVersion on its group's policy {}",
                        pol.name
                    ));
                }
            }
        }
    }
    None
}

/// Services that run code as a role passed to them: (service principal, what else is needed
/// besides iam:PassRole — any one of the alternatives, each a list all needed, on `*`).
const PASS_ROLE_TO: &[(&str, &[&[&str]])] = &[
    (
        "ec2.amazonaws.com",
        &[
            &["ec2:RunInstances"],
            &[
                "autoscaling:CreateAutoScalingGroup",
                "autoscaling:CreateLaunchConfiguration",
            ],
        ],
    ),
    ("lambda.amazonaws.com", &[&["lambda:CreateFunction"]]),
    (
        "cloudformation.amazonaws.com",
        &[&["cloudformation:CreateStack"]],
    ),
    (
        "codebuild.amazonaws.com",
        &[
            &["codebuild:CreateProject", "codebuild:StartBuild"],
            &["codebuild:CreateProject", "codebuild:StartBuildBatch"],
        ],
    ),
    (
        "sagemaker.amazonaws.com",
        &[
            &["sagemaker:CreateNotebookInstance"],
            &["sagemaker:CreateTrainingJob"],
            &["sagemaker:CreateProcessingJob"],
        ],
    ),
    (
        "glue.amazonaws.com",
        &[
            &["glue:CreateDevEndpoint"],
            &["glue:CreateJob", "glue:StartJobRun"],
        ],
    ),
    (
        "ecs-tasks.amazonaws.com",
        &[
            &["ecs:RegisterTaskDefinition", "ecs:RunTask"],
            &["ecs:RegisterTaskDefinition", "ecs:CreateService"],
        ],
    ),
];

/// What a role's trust policy names, for a fast first test of every would-be assumer.
struct TrustSummary {
    /// Principal ARNs named exactly.
    named: std::collections::HashSet<String>,
    /// `"Principal": "*"`.
    everyone: bool,
    /// Accounts named (root, bare id), and `*` for `{"AWS": "*"}`.
    accounts: std::collections::HashSet<String>,
    /// The pass-role services it trusts (index into PASS_ROLE_TO, conditional).
    services: Vec<(usize, bool)>,
    /// EC2 may assume it and it may open an SSM channel: code on an instance runs with it.
    ssm: bool,
}

fn summarize(ev: &Evaluator, model: &Model, di: usize) -> Option<TrustSummary> {
    let dst = &model.nodes[di];
    let trust = dst.trust.as_ref()?;
    let mut t = TrustSummary {
        named: Default::default(),
        everyone: false,
        accounts: Default::default(),
        services: Vec::new(),
        ssm: false,
    };
    for st in &trust.statements {
        match &st.principal {
            Some(PrincipalSpec::Everyone) => t.everyone = true,
            Some(PrincipalSpec::Typed { aws, .. }) => {
                for a in aws {
                    if a == "*" {
                        t.accounts.insert("*".into());
                    } else if let Some(acct) = a
                        .strip_prefix("arn:aws:iam::")
                        .and_then(|r| r.strip_suffix(":root"))
                    {
                        t.accounts.insert(acct.to_string());
                    } else if a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()) {
                        t.accounts.insert(a.clone());
                    } else {
                        t.named.insert(a.clone());
                    }
                }
            }
            None => {}
        }
    }
    for (i, (svc, _)) in PASS_ROLE_TO.iter().enumerate() {
        if let Some(c) = trusts_service(trust, svc) {
            t.services.push((i, c));
        }
    }
    t.ssm = trusts_service(trust, "ec2.amazonaws.com").is_some()
        && ev.check(di, "ssmmessages:CreateControlChannel", "*") != Verdict::No;
    Some(t)
}

/// The edges, and the sentence for each kind of edge (see [`crate::graph::EdgeKinds`]).
pub fn edges(
    ev: &Evaluator,
    model: &Model,
    admins: &[bool],
    max_edges: usize,
) -> Result<(Vec<Edge>, std::collections::BTreeMap<String, String>), crate::AnalyzeError> {
    let mut out = Vec::new();
    let mut kinds = crate::graph::EdgeKinds::default();
    // Every node's ARN and every kind's tag once; edges share them.
    let ids: Vec<std::sync::Arc<str>> = model.nodes.iter().map(|n| n.arn.as_str().into()).collect();
    // Accounts as numbers: compared for every pair of principals.
    let account_no: Vec<usize> = model
        .nodes
        .iter()
        .map(|n| {
            model
                .accounts
                .iter()
                .position(|a| *a == n.account)
                .unwrap_or(usize::MAX)
        })
        .collect();
    let mut tags: Vec<(&'static str, std::sync::Arc<str>)> = Vec::new();
    let cond = |v: Verdict| {
        if v == Verdict::IfCondition {
            crate::graph::CONDITION
        } else {
            ""
        }
    };
    let trusts: Vec<Option<TrustSummary>> = (0..model.nodes.len())
        .map(|di| {
            if model.nodes[di].kind == Kind::Role && !model.nodes[di].excluded {
                summarize(ev, model, di)
            } else {
                None
            }
        })
        .collect();
    // Roles that name a principal directly or trust everyone: the only edges a principal with
    // no relevant permission at all can have.
    let mut naming: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    let mut open_to_all: Vec<usize> = Vec::new();
    for (di, t) in trusts.iter().enumerate() {
        let Some(t) = t else { continue };
        for n in &t.named {
            naming.entry(n.as_str()).or_default().push(di);
        }
        if t.everyone {
            open_to_all.push(di);
        }
    }
    let all: Vec<usize> = (0..model.nodes.len()).collect();
    for (si, src) in model.nodes.iter().enumerate() {
        if src.kind == Kind::Group || admins[si] || src.excluded {
            continue;
        }
        let m_keys = ev.mentions(si, "iam:CreateAccessKey");
        let m_login =
            ev.mentions(si, "iam:CreateLoginProfile") || ev.mentions(si, "iam:UpdateLoginProfile");
        let m_trust = ev.mentions(si, "iam:UpdateAssumeRolePolicy");
        let m_assume = ev.mentions(si, "sts:AssumeRole");
        let m_pass = ev.mentions(si, "iam:PassRole");
        let m_ssm = ev.mentions(si, "ssm:SendCommand") || ev.mentions(si, "ssm:StartSession");
        let candidates: Vec<usize> = if m_keys || m_login || m_trust || m_assume || m_pass || m_ssm
        {
            all.clone()
        } else {
            let mut v: Vec<usize> = naming.get(src.arn.as_str()).cloned().unwrap_or_default();
            v.extend(open_to_all.iter().copied());
            v.sort_unstable();
            v.dedup();
            v
        };
        if out.len() > max_edges {
            return Err(crate::AnalyzeError::TooManyEdges { limit: max_edges });
        }
        for di in candidates {
            let dst = &model.nodes[di];
            if di == si || dst.kind == Kind::Group || dst.excluded {
                continue;
            }
            let mut push = |via: &'static str, reason: String| {
                let via = match tags.iter().find(|(t, _)| *t == via) {
                    Some((_, a)) => a.clone(),
                    None => {
                        let a: std::sync::Arc<str> = via.into();
                        tags.push((via, a.clone()));
                        a
                    }
                };
                let mut e = Edge {
                    from: ids[si].clone(),
                    to: ids[di].clone(),
                    via,
                    reason: String::new(),
                    conditional: false,
                };
                kinds.settle(&mut e, reason);
                out.push(e);
            };
            let same_account = account_no[si] == account_no[di];
            match dst.kind {
                Kind::User if same_account => {
                    if m_keys {
                        let v = ev.check(si, "iam:CreateAccessKey", &dst.arn);
                        if v != Verdict::No {
                            push(
                                "iam:CreateAccessKey",
                                format!(
                                    "can create access keys for the user and sign in as it{}",
                                    cond(v)
                                ),
                            );
                        }
                    }
                    // The export does not say which users have a password: either call
                    // works for some user, so either is an edge.
                    if m_login {
                        for action in ["iam:CreateLoginProfile", "iam:UpdateLoginProfile"] {
                            let v = ev.check(si, action, &dst.arn);
                            if v != Verdict::No {
                                push(action, format!("can set the user's console password ({action}) and sign in as it{}", cond(v)));
                                break;
                            }
                        }
                    }
                }
                Kind::Role => {
                    if same_account && m_trust {
                        let v = ev.check(si, "iam:UpdateAssumeRolePolicy", &dst.arn);
                        if v != Verdict::No {
                            push(
                                "iam:UpdateAssumeRolePolicy",
                                format!(
                                    "can rewrite the role's trust policy to let itself assume it{}",
                                    cond(v)
                                ),
                            );
                        }
                    }
                    let (Some(trust), Some(t)) = (&dst.trust, &trusts[di]) else {
                        continue;
                    };
                    let maybe = t.everyone
                        || t.named.contains(&src.arn)
                        || (m_assume
                            && (t.accounts.contains("*") || t.accounts.contains(&src.account)));
                    if maybe {
                        match trust_for(trust, &src.arn, &src.account) {
                            // Within the account, a trust naming the principal suffices; across
                            // accounts the caller's own policies must allow the call too.
                            Trust::Direct { conditional } if same_account => {
                                if !ev.denies(si, "sts:AssumeRole", &dst.arn) {
                                    push(
                                        "sts:AssumeRole",
                                        format!(
                                            "the role's trust policy names it{}",
                                            cond(if conditional {
                                                Verdict::IfCondition
                                            } else {
                                                Verdict::Yes
                                            })
                                        ),
                                    );
                                }
                            }
                            Trust::Direct { conditional } | Trust::Account { conditional } => {
                                let v = ev.check(si, "sts:AssumeRole", &dst.arn);
                                if v != Verdict::No {
                                    let v = if conditional { Verdict::IfCondition } else { v };
                                    push("sts:AssumeRole", format!("the role's trust policy admits it and its own policies allow sts:AssumeRole on it{}", cond(v)));
                                }
                            }
                            Trust::No => {}
                        }
                    }
                    if !same_account {
                        continue;
                    }
                    if m_pass && !t.services.is_empty() {
                        let pass = ev.check(si, "iam:PassRole", &dst.arn);
                        if pass != Verdict::No {
                            for &(i, tc) in &t.services {
                                let (svc, alternatives) = PASS_ROLE_TO[i];
                                for alt in alternatives.iter() {
                                    let v = alt
                                        .iter()
                                        .map(|a| ev.check(si, a, "*"))
                                        .min()
                                        .unwrap_or(Verdict::No);
                                    if v != Verdict::No {
                                        push(alt[0], format!("can pass the role to {} ({}) and run code as it{}{}", svc.trim_end_matches(".amazonaws.com"), alt.join(" + "), cond(v.min(pass)), if tc { "; the role's trust has a condition" } else { "" }));
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    // Code already running on EC2 with the role: reach it through SSM.
                    if m_ssm && t.ssm {
                        let v = ev.check(si, "ssm:SendCommand", "*").max(ev.check(
                            si,
                            "ssm:StartSession",
                            "*",
                        ));
                        if v != Verdict::No {
                            push("ssm:SendCommand", format!("can run commands (SSM) on EC2 instances that may run with the role{}", cond(v)));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if out.len() > max_edges {
        return Err(crate::AnalyzeError::TooManyEdges { limit: max_edges });
    }
    Ok((out, kinds.into_sentences()))
}
