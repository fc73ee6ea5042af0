//! Test support for providers and for whatever drives them (behind the `test-util` feature):
//!
//! - [`conformance`]: the one suite every provider passes, against its real target, with an
//!   [`conformance::Inspector`] that looks at the target without going through the provider;
//! - [`InMemoryProvider`]: a provider whose "target" is a map, for broker tests and benchmarks;
//! - [`MemoryLedger`]: the SSH certificate ledger without the server's store;
//! - [`FaultyProvider`]: a wrapper that makes chosen operations of any provider fail, slow down
//!   or hang, for tests of retries, timeouts and the kill switch.

pub mod conformance;
mod faulty;
mod ledger;
pub mod memory;

pub use faulty::{Fault, FaultyProvider, Op};
pub use ledger::MemoryLedger;
pub use memory::InMemoryProvider;
