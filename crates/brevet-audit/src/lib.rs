//! The tamper-evident audit log: events chained by SHA-256, verification, and exporters.
//!
//! Each event's hash covers its own fields and the previous event's hash, so editing, deleting or
//! reordering any event breaks the chain from that point on. Truncating the tail is detected
//! against the stored head (sequence + hash); anchoring that head outside the database (for
//! example by exporting regularly) protects against an attacker who can rewrite the head too.
//!
//! This crate does no I/O of its own: the store appends and reads, this crate seals and checks.

mod event;
mod export;
mod verify;

pub use event::{AuditDraft, AuditEvent, EventKind, GENESIS_HASH};
pub use export::{csv_header, write_csv_row, ExportFormat};
pub use verify::{Problem, Verifier, VerifyReport};
