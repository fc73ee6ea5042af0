//! The `brevet` binary end to end, in one test binary (one link, one shared set of helpers): only
//! what the binary alone shows — the CLI against a running server, crash recovery, the browser
//! portal, real PostgreSQL, sshd, moto and SMTP. Behaviour that needs no process boundary is
//! tested in process in the crates themselves.

mod common;
mod config;
mod notify_support;

mod analyzer;
mod audit;
mod aws;
mod azure;
mod bad_input;
mod catalog;
mod chaos;
mod crash;
mod flow;
mod gcp;
mod kill;
mod notify;
mod openapi;
// Built with `--features otlp` (scripts/test does).
#[cfg(feature = "otlp")]
mod otlp;
mod portal;
mod postgres;
mod provider_faults;
mod replicas;
mod resilience;
mod rules;
mod ssh;
