//! The audit log's hash chain. Each event's hash covers the previous event's hash and every
//! field of the event, length-prefixed, so changing, removing or reordering any event breaks
//! every link after it. Shared by the store (which writes the chain) and `updraft audit verify`
//! (which recomputes it).

use sha2::{Digest, Sha256};

/// The hash that precedes the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of one event, as stored.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub at: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub app: Option<&'a str>,
    pub detail: &'a str,
    pub request_id: Option<&'a str>,
}

/// The chain link for an event after `prev_hash`.
pub fn chain_hash(prev_hash: &str, e: &EventFields<'_>) -> String {
    let mut h = Sha256::new();
    for part in [prev_hash, e.at, e.actor, e.action, e.app.unwrap_or(""), e.detail, e.request_id.unwrap_or("")] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The event's `prev_hash` is not the previous event's hash (an event was removed or reordered).
    Link { seq: i64 },
    /// The event's hash does not match its fields (the event was edited).
    Hash { seq: i64 },
}

/// Verifies `(seq, prev_hash, hash, fields)` events in order, starting after `start_hash`.
pub fn verify_chain<'a>(
    start_hash: &str,
    events: impl IntoIterator<Item = (i64, &'a str, &'a str, EventFields<'a>)>,
) -> Result<String, ChainBreak> {
    let mut prev = start_hash.to_owned();
    for (seq, prev_hash, hash, fields) in events {
        if prev_hash != prev {
            return Err(ChainBreak::Link { seq });
        }
        if chain_hash(prev_hash, &fields) != hash {
            return Err(ChainBreak::Hash { seq });
        }
        prev = hash.to_owned();
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_detects_edits_and_removals() {
        let f = |action: &'static str| EventFields { at: "t", actor: "a", action, app: None, detail: "{}", request_id: None };
        let h1 = chain_hash(GENESIS, &f("one"));
        let h2 = chain_hash(&h1, &f("two"));
        let h3 = chain_hash(&h2, &f("three"));
        let ok =
            vec![(1, GENESIS, h1.as_str(), f("one")), (2, h1.as_str(), h2.as_str(), f("two")), (3, h2.as_str(), h3.as_str(), f("three"))];
        assert_eq!(verify_chain(GENESIS, ok.clone()), Ok(h3.clone()));
        let mut edited = ok.clone();
        edited[1].3 = f("TWO");
        assert_eq!(verify_chain(GENESIS, edited), Err(ChainBreak::Hash { seq: 2 }));
        let removed = vec![ok[0], ok[2]];
        assert_eq!(verify_chain(GENESIS, removed), Err(ChainBreak::Link { seq: 3 }));
        // A field boundary shift is not a collision.
        let a = EventFields { at: "ab", actor: "c", ..f("x") };
        let b = EventFields { at: "a", actor: "bc", ..f("x") };
        assert_ne!(chain_hash(GENESIS, &a), chain_hash(GENESIS, &b));
    }
}
