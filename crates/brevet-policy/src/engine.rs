use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use brevet_core::{GrantDuration, PrincipalId, ProfileName, ResourceId};
use cedar_policy::{
    Authorizer, Context, Decision, Effect, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Policy, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use serde::Serialize;

use crate::{Defaults, PolicyError, RuleLimits, SCHEMA};

/// Built in and always present: nobody approves their own request, whatever else policy says.
const BUILTIN: &str = r#"
@id("builtin:no-self-approval")
forbid (principal, action == Action::"approve", resource)
when { principal == context.requester };
"#;

/// A policy file's name (for error messages and default ids) and text.
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// The caller as policy sees them.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub id: &'a PrincipalId,
    pub groups: &'a BTreeSet<String>,
}

/// What policy knows about a resource (from the config).
#[derive(Debug, Clone, Copy)]
pub struct ResourceFacts<'a> {
    pub id: &'a ResourceId,
    pub kind: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

pub struct RequestQuery<'a> {
    pub principal: Subject<'a>,
    pub resource: ResourceFacts<'a>,
    pub profile: &'a ProfileName,
    pub duration: GrantDuration,
    pub reason: Option<&'a str>,
    pub ticket: Option<&'a str>,
    pub extension: bool,
}

pub struct ApproveQuery<'a> {
    pub approver: Subject<'a>,
    pub requester: Subject<'a>,
    pub resource: ResourceFacts<'a>,
    pub profile: &'a ProfileName,
    pub duration: GrantDuration,
}

/// Why a decision came out as it did: stored with the audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    pub action: &'static str,
    pub decision: &'static str,
    /// Policies that made Cedar's decision (satisfied permits on allow, forbids on deny).
    pub determining_policies: Vec<String>,
    /// The permit whose limits were applied.
    pub selected_policy: Option<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RequestDecision {
    Allow {
        policy: String,
        limits: RuleLimits,
        trace: Trace,
    },
    Deny {
        reason: String,
        trace: Trace,
    },
}

impl RequestDecision {
    pub fn trace(&self) -> &Trace {
        match self {
            Self::Allow { trace, .. } | Self::Deny { trace, .. } => trace,
        }
    }
}

pub struct PolicyEngine {
    set: PolicySet,
    schema: &'static Schema,
    limits: HashMap<String, RuleLimits>,
    authorizer: Authorizer,
    names: &'static Names,
}

/// The schema's entity types and actions, parsed once: every decision names them.
struct Names {
    user: EntityTypeName,
    group: EntityTypeName,
    resource: EntityTypeName,
    request: EntityUid,
    approve: EntityUid,
}

impl Names {
    fn new() -> Result<Self, String> {
        let ty = |name: &str| name.parse::<EntityTypeName>().map_err(|e| e.to_string());
        let action = ty("Action")?;
        let act = |id: &str| EntityUid::from_type_name_and_id(action.clone(), EntityId::new(id));
        Ok(Self {
            user: ty("User")?,
            group: ty("Group")?,
            resource: ty("Resource")?,
            request: act("request"),
            approve: act("approve"),
        })
    }

    fn action(&self, action: &str) -> Result<&EntityUid, PolicyError> {
        match action {
            "request" => Ok(&self.request),
            "approve" => Ok(&self.approve),
            other => Err(PolicyError::Internal(format!(
                "no action `{other}` in the schema"
            ))),
        }
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// Brevet's schema and a validator for it, built once per process: the schema is fixed at
/// compile time, and parsing it cost more than the rest of loading a typical policy set
/// (every config check and every policy reload went through it).
struct Checked {
    schema: Schema,
    validator: Validator,
    names: Names,
}

fn checked() -> Result<&'static Checked, PolicyError> {
    static CHECKED: OnceLock<Result<Checked, String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let (schema, _warnings) =
                Schema::from_cedarschema_str(SCHEMA).map_err(|e| e.to_string())?;
            Ok(Checked {
                validator: Validator::new(schema.clone()),
                schema,
                names: Names::new()?,
            })
        })
        .as_ref()
        .map_err(|e| PolicyError::Internal(format!("Brevet's Cedar schema does not load: {e}")))
}

fn internal(e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Internal(e.to_string())
}

impl PolicyEngine {
    /// Parses, names and validates every policy, and reads each permit's limits. Any problem is an
    /// error naming the file or policy, so a bad policy stops the server from starting.
    pub fn load(sources: &[PolicySource], defaults: Defaults) -> Result<Self, PolicyError> {
        let checked = checked()?;
        let mut set = PolicySet::new();
        let mut limits = HashMap::new();
        let builtin = PolicySource {
            name: "builtin".into(),
            text: BUILTIN.into(),
        };
        for src in std::iter::once(&builtin).chain(sources) {
            let parsed: PolicySet =
                src.text
                    .parse()
                    .map_err(|e: cedar_policy::ParseErrors| PolicyError::Parse {
                        file: src.name.clone(),
                        message: e.to_string(),
                    })?;
            for (n, p) in parsed.policies().enumerate() {
                let id = p
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{}#{n}", src.name));
                let policy: Policy = p.new_id(PolicyId::new(&id));
                if p.effect() == Effect::Permit {
                    limits.insert(
                        id.clone(),
                        RuleLimits::from_annotations(&id, p.annotations(), &defaults)?,
                    );
                }
                set.add(policy)
                    .map_err(|_| PolicyError::DuplicateId(id.clone()))?;
            }
        }
        let result = checked.validator.validate(&set, ValidationMode::Strict);
        if let Some(e) = result.validation_errors().next() {
            return Err(PolicyError::Invalid {
                id: e.policy_id().to_string(),
                message: e.to_string(),
            });
        }
        Ok(Self {
            set,
            schema: &checked.schema,
            limits,
            authorizer: Authorizer::new(),
            names: &checked.names,
        })
    }

    pub fn policy_count(&self) -> usize {
        self.set.policies().count()
    }

    /// The users (with their groups) and the resource a decision is about, built as Cedar
    /// values directly (no JSON round trip: this runs for every request and approval) and
    /// checked against the schema.
    fn entities(
        &self,
        users: &[Subject<'_>],
        r: &ResourceFacts<'_>,
    ) -> Result<Entities, PolicyError> {
        let n = self.names;
        let mut list = Vec::new();
        let mut groups = BTreeSet::new();
        for u in users {
            groups.extend(u.groups.iter().map(String::as_str));
            let parents = u.groups.iter().map(|g| Names::uid(&n.group, g));
            list.push(Entity::new_no_attrs(
                Names::uid(&n.user, u.id.as_str()),
                parents.collect(),
            ));
        }
        for g in groups {
            list.push(Entity::new_no_attrs(
                Names::uid(&n.group, g),
                Default::default(),
            ));
        }
        let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
        list.push(
            Entity::new_with_tags(
                Names::uid(&n.resource, r.id.as_str()),
                [
                    ("provider".to_owned(), string(r.id.provider().as_str())),
                    ("kind".to_owned(), string(r.kind)),
                    ("name".to_owned(), string(r.id.name())),
                ],
                [],
                r.tags.iter().map(|(k, v)| (k.clone(), string(v))),
            )
            .map_err(internal)?,
        );
        Entities::from_entities(list, Some(self.schema)).map_err(internal)
    }

    fn authorize(
        &self,
        action: &'static str,
        principal: &PrincipalId,
        resource: &ResourceId,
        context: Vec<(&'static str, RestrictedExpression)>,
        entities: &Entities,
    ) -> Result<(Decision, Trace), PolicyError> {
        let n = self.names;
        let context = Context::from_pairs(context.into_iter().map(|(k, v)| (k.to_owned(), v)))
            .map_err(internal)?;
        // With the schema, the request is validated as the JSON context used to be: the
        // principal's and resource's types and the context's shape for this action.
        let request = Request::new(
            Names::uid(&n.user, principal.as_str()),
            n.action(action)?.clone(),
            Names::uid(&n.resource, resource.as_str()),
            context,
            Some(self.schema),
        )
        .map_err(internal)?;
        let response = self.authorizer.is_authorized(&request, &self.set, entities);
        let mut determining: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|p| p.to_string())
            .collect();
        determining.sort();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        // Fail closed: if any policy could not be evaluated, the answer is no.
        let decision = if errors.is_empty() {
            response.decision()
        } else {
            Decision::Deny
        };
        let trace = Trace {
            action,
            decision: if decision == Decision::Allow {
                "allow"
            } else {
                "deny"
            },
            determining_policies: determining,
            selected_policy: None,
            errors,
        };
        Ok((decision, trace))
    }

    /// Decides a request, choosing among the permits that allow it the one whose limits the request
    /// meets with the fewest approvals. A denial explains which limit was missed and how to fix it.
    pub fn evaluate_request(&self, q: &RequestQuery<'_>) -> RequestDecision {
        match self.try_evaluate_request(q) {
            Ok(d) => d,
            Err(e) => RequestDecision::Deny {
                reason: format!("policy could not be evaluated, so the request is refused: {e}"),
                trace: Trace {
                    action: "request",
                    decision: "deny",
                    determining_policies: vec![],
                    selected_policy: None,
                    errors: vec![e.to_string()],
                },
            },
        }
    }

    fn try_evaluate_request(&self, q: &RequestQuery<'_>) -> Result<RequestDecision, PolicyError> {
        let entities = self.entities(&[q.principal], &q.resource)?;
        let context = vec![
            (
                "profile",
                RestrictedExpression::new_string(q.profile.as_str().to_owned()),
            ),
            ("duration_seconds", seconds(q.duration)?),
            (
                "has_reason",
                RestrictedExpression::new_bool(q.reason.is_some_and(|r| !r.trim().is_empty())),
            ),
            (
                "has_ticket",
                RestrictedExpression::new_bool(q.ticket.is_some_and(|t| !t.trim().is_empty())),
            ),
            ("extension", RestrictedExpression::new_bool(q.extension)),
        ];
        let (decision, mut trace) =
            self.authorize("request", q.principal.id, q.resource.id, context, &entities)?;
        if decision == Decision::Deny {
            let reason = if !trace.errors.is_empty() {
                format!(
                    "policy evaluation failed, so the request is refused: {}",
                    trace.errors.join("; ")
                )
            } else if trace.determining_policies.is_empty() {
                format!(
                    "no policy allows `{}` to request `{}` on `{}`; ask an administrator for a policy, or check the profile and resource names",
                    q.principal.id, q.profile, q.resource.id
                )
            } else {
                format!(
                    "forbidden by policy {}",
                    trace.determining_policies.join(", ")
                )
            };
            return Ok(RequestDecision::Deny { reason, trace });
        }
        let mut misses = Vec::new();
        let mut best: Option<(&String, &RuleLimits)> = None;
        for id in &trace.determining_policies {
            let Some(l) = self.limits.get(id) else {
                continue;
            };
            let has_reason = q.reason.is_some_and(|r| !r.trim().is_empty());
            let has_ticket = q.ticket.is_some_and(|t| !t.trim().is_empty());
            if q.duration > l.max_duration {
                misses.push(format!(
                    "duration {} is over the {} maximum set by policy `{id}`; ask for {} or less",
                    q.duration, l.max_duration, l.max_duration
                ));
            } else if l.require_reason && !has_reason {
                misses.push(format!(
                    "policy `{id}` requires a reason; add --reason \"why you need access\""
                ));
            } else if l.require_ticket && !has_ticket {
                misses.push(format!("policy `{id}` requires a ticket; add --ticket ID"));
            } else if best.is_none_or(|(_, b)| l.approvals < b.approvals) {
                best = Some((id, l));
            }
        }
        Ok(match best {
            Some((id, limits)) => {
                trace.selected_policy = Some(id.clone());
                RequestDecision::Allow {
                    policy: id.clone(),
                    limits: limits.clone(),
                    trace,
                }
            }
            None => {
                trace.decision = "deny";
                RequestDecision::Deny {
                    reason: misses.join("; "),
                    trace,
                }
            }
        })
    }

    /// May `approver` decide on this request? Errors deny.
    pub fn may_approve(&self, q: &ApproveQuery<'_>) -> (bool, Trace) {
        let attempt = || -> Result<(bool, Trace), PolicyError> {
            let entities = self.entities(&[q.approver, q.requester], &q.resource)?;
            let context = vec![
                (
                    "profile",
                    RestrictedExpression::new_string(q.profile.as_str().to_owned()),
                ),
                (
                    "requester",
                    RestrictedExpression::new_entity_uid(Names::uid(
                        &self.names.user,
                        q.requester.id.as_str(),
                    )),
                ),
                ("duration_seconds", seconds(q.duration)?),
            ];
            let (decision, trace) =
                self.authorize("approve", q.approver.id, q.resource.id, context, &entities)?;
            Ok((decision == Decision::Allow, trace))
        };
        attempt().unwrap_or_else(|e| {
            (
                false,
                Trace {
                    action: "approve",
                    decision: "deny",
                    determining_policies: vec![],
                    selected_policy: None,
                    errors: vec![e.to_string()],
                },
            )
        })
    }
}

/// A duration as Cedar's `Long` (seconds).
fn seconds(d: GrantDuration) -> Result<RestrictedExpression, PolicyError> {
    i64::try_from(d.as_std().as_secs())
        .map(RestrictedExpression::new_long)
        .map_err(|_| PolicyError::Internal(format!("duration {d} is too long for policy")))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
