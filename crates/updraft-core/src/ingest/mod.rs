//! Crash and session ingest, the parts that need no IO: the Sentry envelope parser, the privacy
//! scrubbers, and turning SDK payloads (events, sessions, install reports) into what is kept.
//! The server feeds request bodies in; the fuzz target feeds arbitrary bytes.

pub mod envelope;
pub mod payload;
pub mod scrub;
