//! The tamper-evident audit log: events chained by SHA-256, verification, and exporters.
//!
//! Each event's hash covers its own fields and the previous event's hash, so editing, deleting or
//! reordering any event breaks the chain from that point on. Truncating the tail is detected
//! against the stored head (sequence + hash). The head sits in the same database, so against
//! someone who can rewrite it too the chain is anchored outside the database: the server signs
//! the head (`checkpoint.rs`, Ed25519) and publishes the checkpoint, and verification holds the
//! chain to the latest one ([`Anchor`]).
//!
//! This crate does no I/O of its own: the store appends and reads, this crate seals and checks.

mod checkpoint;
mod event;
mod export;
mod verify;

pub use checkpoint::{Checkpoint, CheckpointError, CheckpointKey, PublicKey};
pub use event::{AuditDraft, AuditEvent, EventKind, GENESIS_HASH};
pub use export::{csv_header, write_csv_row, ExportFormat};
pub use verify::{Anchor, Problem, Verifier, VerifyReport};
