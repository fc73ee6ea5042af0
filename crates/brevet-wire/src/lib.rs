//! The Brevet API's wire types: what the server writes and the CLI reads, in one place, so the two
//! cannot drift apart and neither indexes untyped JSON. Pure data (serde + OpenAPI schemas), no
//! I/O; conversions from the domain live here when they need only `brevet-core`.
//!
//! Answers tolerate fields they do not know (a newer server may add some); request bodies refuse
//! unknown fields, so a typo in a client's body is an error that names it.

mod bodies;
mod catalog;
mod credential;
mod views;

pub use bodies::*;
pub use catalog::*;
pub use credential::{
    AwsProcessCredentials, CredentialInputKind, CredentialKind, SshCertificateDetails,
};
pub use views::*;
