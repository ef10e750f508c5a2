//! End-to-end tests: the real `updraft` binary on random loopback ports, driven through its
//! CLI and HTTP, with real SQLite and real files. One test binary for the crate keeps link
//! time down.

mod auth_matrix;
mod backend;
mod backup;
mod bad_input;
mod client;
mod compat;
mod crash;
mod harness;
mod health;
mod ingest;
mod interop;
mod keys;
mod publish;
mod rollout;
mod scale;
mod security;
mod simulation;
mod slo;
