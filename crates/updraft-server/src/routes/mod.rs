//! HTTP handlers: `public` for installed clients and probes, `admin` for operators.

pub mod admin;
pub mod keys;
pub mod public;
pub mod rollouts;
