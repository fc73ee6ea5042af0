//! Policy as code with Cedar: who may request which access profile on which resource, within
//! which limits, and who may approve. Every decision carries a [`Trace`] naming the policies that
//! produced it, for the audit log. Evaluation errors deny: policy fails closed.

mod engine;
mod limits;

pub use engine::{
    ApproveQuery, PolicyEngine, PolicySource, RequestDecision, RequestQuery, ResourceFacts,
    Subject, Trace,
};
pub use limits::{Defaults, RuleLimits};

/// The Cedar schema policies are written against.
pub const SCHEMA: &str = include_str!("schema.cedarschema");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file `{file}` does not parse: {message}")]
    Parse { file: String, message: String },
    #[error("policy `{id}` is invalid against Brevet's schema: {message}")]
    Invalid { id: String, message: String },
    #[error("policy `{id}` has a bad annotation @{key}(\"{value}\"): {why}")]
    Annotation {
        id: String,
        key: String,
        value: String,
        why: String,
    },
    #[error("two policies share the id `{0}`: give each an @id(\"…\") of its own")]
    DuplicateId(String),
    #[error("internal policy error: {0}")]
    Internal(String),
}
