//! Brevet's domain core: the vocabulary (principals, resources, access profiles, durations), the
//! request/grant state machine and its time semantics, and approval tallying.
//!
//! This crate performs no I/O and has no async runtime: every decision here can be unit-tested with
//! plain values. The edges (store, providers, server) act on what this crate decides.

mod approval;
mod duration;
mod error;
mod ids;
mod names;
mod request;

pub use approval::{check_can_decide, tally, Approval, ApprovalDecision, Tally};
pub use duration::GrantDuration;
pub use error::CoreError;
pub use ids::RequestId;
pub use names::{Binding, PrincipalId, ProfileName, ProviderName, ResourceId};
pub use request::{
    Evidence, NewRequest, Principal, Request, RequestKind, RequestState, RevokeBackoff, Role,
    Transition, Window,
};
