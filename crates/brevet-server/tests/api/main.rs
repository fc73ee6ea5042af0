//! The API and broker in process (`brevet_server::testing::TestApp`): behaviour seen through the
//! HTTP API that needs no process boundary, on a SQLite store and, when `BREVET_TEST_PG_URL` is
//! set, on PostgreSQL too, with an in-memory provider standing in for the target. What only the
//! binary shows (CLI output and exit codes, crashes, real targets) stays in `brevet-cli`'s e2e.

mod callers;
mod world;

mod access;
mod analyzer_upload;
mod authz_matrix;
mod bad_input;
mod kill_race;
mod metrics;
mod openapi;
mod paging;
mod portal_matrix;
mod provider_errors;
mod provider_faults;
mod revoke_rate;
mod rules;
