use crate::RequestState;

/// Errors of the domain core. Each message says what is wrong and, where it can, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("invalid {what} `{input}`: {why}")]
    Invalid {
        what: &'static str,
        input: String,
        why: String,
    },
    #[error("cannot {action} a request that is {state}{hint}")]
    BadTransition {
        action: &'static str,
        state: RequestState,
        hint: String,
    },
    #[error("self-approval is never allowed: `{0}` requested this access, so someone else must approve it")]
    SelfApproval(String),
    #[error("`{0}` has already recorded a decision on this request")]
    AlreadyDecided(String),
}

pub(crate) fn invalid(what: &'static str, input: &str, why: impl Into<String>) -> CoreError {
    CoreError::Invalid {
        what,
        input: input.chars().take(200).collect(),
        why: why.into(),
    }
}
