use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use brevet_core::{GrantDuration, PrincipalId, ProfileName, ResourceId};
use cedar_policy::{
    Authorizer, Context, Decision, Effect, Entities, EntityUid, Policy, PolicyId, PolicySet,
    Request, Schema, ValidationMode, Validator,
};
use serde::Serialize;
use serde_json::json;

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
}

/// Brevet's schema and a validator for it, built once per process: the schema is fixed at
/// compile time, and parsing it cost more than the rest of loading a typical policy set
/// (every config check and every policy reload went through it).
struct Checked {
    schema: Schema,
    validator: Validator,
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
            })
        })
        .as_ref()
        .map_err(|e| PolicyError::Internal(format!("Brevet's Cedar schema does not load: {e}")))
}

fn uid(ty: &str, id: &str) -> Result<EntityUid, PolicyError> {
    EntityUid::from_json(json!({"type": ty, "id": id}))
        .map_err(|e| PolicyError::Internal(e.to_string()))
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
        })
    }

    pub fn policy_count(&self) -> usize {
        self.set.policies().count()
    }

    fn entities(
        &self,
        users: &[Subject<'_>],
        r: &ResourceFacts<'_>,
    ) -> Result<Entities, PolicyError> {
        let mut list = Vec::new();
        let mut groups = BTreeSet::new();
        for u in users {
            groups.extend(u.groups.iter().cloned());
            let parents: Vec<_> = u
                .groups
                .iter()
                .map(|g| json!({"type": "Group", "id": g}))
                .collect();
            list.push(json!({"uid": {"type": "User", "id": u.id.as_str()}, "attrs": {}, "parents": parents}));
        }
        for g in groups {
            list.push(json!({"uid": {"type": "Group", "id": g}, "attrs": {}, "parents": []}));
        }
        list.push(json!({
            "uid": {"type": "Resource", "id": r.id.as_str()},
            "attrs": {"provider": r.id.provider().as_str(), "kind": r.kind, "name": r.id.name()},
            "parents": [],
            "tags": r.tags,
        }));
        Entities::from_json_value(json!(list), Some(self.schema))
            .map_err(|e| PolicyError::Internal(e.to_string()))
    }

    fn authorize(
        &self,
        action: &'static str,
        principal: &PrincipalId,
        resource: &ResourceId,
        context: serde_json::Value,
        entities: &Entities,
    ) -> Result<(Decision, Trace), PolicyError> {
        let action_uid = uid("Action", action)?;
        let context = Context::from_json_value(context, Some((self.schema, &action_uid)))
            .map_err(|e| PolicyError::Internal(e.to_string()))?;
        let request = Request::new(
            uid("User", principal.as_str())?,
            action_uid,
            uid("Resource", resource.as_str())?,
            context,
            Some(self.schema),
        )
        .map_err(|e| PolicyError::Internal(e.to_string()))?;
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
        let context = json!({
            "profile": q.profile.as_str(),
            "duration_seconds": q.duration.as_std().as_secs(),
            "has_reason": q.reason.is_some_and(|r| !r.trim().is_empty()),
            "has_ticket": q.ticket.is_some_and(|t| !t.trim().is_empty()),
            "extension": q.extension,
        });
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
            let context = json!({
                "profile": q.profile.as_str(),
                "requester": {"__entity": {"type": "User", "id": q.requester.id.as_str()}},
                "duration_seconds": q.duration.as_std().as_secs(),
            });
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

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
