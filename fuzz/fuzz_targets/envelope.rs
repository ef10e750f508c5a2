//! The Sentry envelope parser and what follows it (payload processing and scrubbing) on
//! arbitrary bytes: never a panic, every item payload inside the input, and scrubbing is
//! idempotent (scrubbed text needs no second pass).
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_core::ingest::{envelope, payload, scrub};

fuzz_target!(|data: &[u8]| {
    let limits = envelope::EnvelopeLimits { max_items: 100, max_item_bytes: 64 * 1024 };
    if let Ok(env) = envelope::parse(data, limits) {
        let range = data.as_ptr_range();
        for item in &env.items {
            let p = item.payload.as_ptr_range();
            assert!(item.payload.is_empty() || (p.start >= range.start && p.end <= range.end), "payload outside the input");
            assert!(item.payload.len() <= limits.max_item_bytes);
            match item.ty.as_str() {
                "event" => {
                    if let Ok(ev) = payload::process_event(item.payload, "salt", env.header.event_id.as_deref(), 1_700_000_000) {
                        assert_eq!(ev.event_id.len(), 32);
                        let _: serde_json::Value = serde_json::from_str(&ev.body).expect("stored body is JSON");
                    }
                }
                "session" => {
                    let _ = payload::process_session(item.payload, "salt", 1_700_000_000);
                }
                "sessions" => {
                    let _ = payload::process_sessions(item.payload, "salt", 1_700_000_000);
                }
                "updraft_install" => {
                    let _ = payload::process_install(item.payload, "salt");
                }
                _ => {}
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(once) = scrub::scrub_str(s) {
            assert_eq!(scrub::scrub_str(&once), None, "scrubbing twice changed {once:?}");
        }
    }
});
