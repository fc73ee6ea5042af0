//! Test support for providers and for whatever drives them (behind the `test-util` feature):
//!
//! - [`conformance`]: the one suite every provider passes, against its real target, with an
//!   [`conformance::Inspector`] that looks at the target without going through the provider;
//! - [`InMemoryProvider`]: a provider whose "target" is a map, for broker tests and benchmarks;
//! - [`MemoryLedger`] and [`MemoryState`]: the SSH certificate ledger and provider state without
//!   the server's store;
//! - [`FaultyProvider`]: a wrapper that makes chosen operations of any provider fail, slow down
//!   or hang, for tests of retries, timeouts and the kill switch.

pub mod conformance;
mod faulty;
#[cfg(feature = "ssh")]
mod ledger;
pub mod memory;
mod state;

pub use faulty::{Fault, FaultyProvider, Op};
#[cfg(feature = "ssh")]
pub use ledger::MemoryLedger;
pub use memory::InMemoryProvider;
pub use state::MemoryState;
