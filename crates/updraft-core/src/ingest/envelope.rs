//! Sentry envelopes: a JSON header line, then items, each a JSON header line and a payload of
//! `length` bytes (followed by an optional newline) or, without `length`, up to the next newline
//! or the end. Parsing borrows from the input and never allocates per payload byte; every
//! length is checked against what is left, so a lying `length` is an error, not a panic.

use serde::Deserialize;

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeLimits {
    pub max_items: usize,
    /// Largest item payload (an event, a session batch).
    pub max_item_bytes: usize,
}

impl Default for EnvelopeLimits {
    fn default() -> Self {
        Self { max_items: 100, max_item_bytes: 1024 * 1024 }
    }
}

/// The envelope header fields Updraft uses; others are ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct EnvelopeHeader {
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub dsn: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct ItemHeaderRaw {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    length: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    /// `event`, `session`, `sessions`, `updraft_install`, or anything else (skipped by callers).
    pub ty: String,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub header: EnvelopeHeader,
    pub items: Vec<Item<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the envelope is empty")]
    Empty,
    #[error("the envelope header is not a JSON object")]
    BadHeader,
    #[error("item {index}: the item header is not a JSON object with a string \"type\"")]
    BadItemHeader { index: usize },
    #[error("item {index}: declared length {declared} but only {available} bytes follow")]
    LengthExceedsBody { index: usize, declared: u64, available: usize },
    #[error("item {index}: payload of {declared} bytes is not followed by a newline")]
    MissingNewline { index: usize, declared: u64 },
    #[error("item {index}: {size} bytes exceeds the per-item limit of {limit}")]
    ItemTooLarge { index: usize, size: u64, limit: usize },
    #[error("more than {limit} items")]
    TooManyItems { limit: usize },
}

impl EnvelopeError {
    /// A stable snake_case code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "envelope_empty",
            Self::BadHeader => "envelope_header_invalid",
            Self::BadItemHeader { .. } => "envelope_item_header_invalid",
            Self::LengthExceedsBody { .. } => "envelope_length_mismatch",
            Self::MissingNewline { .. } => "envelope_length_mismatch",
            Self::ItemTooLarge { .. } => "event_too_large",
            Self::TooManyItems { .. } => "envelope_too_many_items",
        }
    }
}

/// Splits off one line (without its `\n`); the rest starts after the newline.
fn line(buf: &[u8]) -> (&[u8], &[u8]) {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) => (&buf[..i], &buf[i + 1..]),
        None => (buf, &[]),
    }
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

pub fn parse(buf: &[u8], limits: EnvelopeLimits) -> Result<Envelope<'_>, EnvelopeError> {
    let (head, mut rest) = line(buf);
    let head = trim_cr(head);
    if head.iter().all(u8::is_ascii_whitespace) {
        return Err(if buf.is_empty() { EnvelopeError::Empty } else { EnvelopeError::BadHeader });
    }
    let header: EnvelopeHeader = match serde_json::from_slice::<serde_json::Value>(head) {
        Ok(v @ serde_json::Value::Object(_)) => serde_json::from_value(v).map_err(|_| EnvelopeError::BadHeader)?,
        _ => return Err(EnvelopeError::BadHeader),
    };
    let mut items = Vec::new();
    loop {
        // Blank lines between items (and a trailing newline) are allowed.
        while let Some(r) = rest.strip_prefix(b"\n").or_else(|| rest.strip_prefix(b"\r\n")) {
            rest = r;
        }
        if rest.is_empty() {
            break;
        }
        let index = items.len();
        if index >= limits.max_items {
            return Err(EnvelopeError::TooManyItems { limit: limits.max_items });
        }
        let (ih, after) = line(rest);
        let ih: ItemHeaderRaw = serde_json::from_slice(trim_cr(ih)).map_err(|_| EnvelopeError::BadItemHeader { index })?;
        let payload;
        match ih.length {
            Some(declared) => {
                if declared > limits.max_item_bytes as u64 {
                    return Err(EnvelopeError::ItemTooLarge { index, size: declared, limit: limits.max_item_bytes });
                }
                let n = declared as usize;
                if n > after.len() {
                    return Err(EnvelopeError::LengthExceedsBody { index, declared, available: after.len() });
                }
                payload = &after[..n];
                let tail = &after[n..];
                rest = if tail.is_empty() {
                    tail
                } else if let Some(t) = tail.strip_prefix(b"\n").or_else(|| tail.strip_prefix(b"\r\n")) {
                    t
                } else {
                    return Err(EnvelopeError::MissingNewline { index, declared });
                };
            }
            None => {
                let (p, r) = line(after);
                payload = trim_cr(p);
                if payload.len() > limits.max_item_bytes {
                    return Err(EnvelopeError::ItemTooLarge { index, size: payload.len() as u64, limit: limits.max_item_bytes });
                }
                rest = r;
            }
        }
        items.push(Item { ty: ih.ty, payload });
    }
    Ok(Envelope { header, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(b: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
        parse(b, EnvelopeLimits::default())
    }

    #[test]
    fn parses_length_prefixed_and_newline_terminated_items() {
        let body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://k@h/1\"}\n\
{\"type\":\"attachment\",\"length\":10}\n\xef\xbb\xbfHello\r\n\n\
{\"type\":\"event\",\"length\":41}\n{\"message\":\"hello world\",\"level\":\"error\"}\n\
{\"type\":\"session\"}\n{\"sid\":\"x\"}\n";
        let e = p(body).unwrap();
        assert_eq!(e.header.dsn.as_deref(), Some("https://k@h/1"));
        assert_eq!(e.items.len(), 3);
        assert_eq!(e.items[0].payload, b"\xef\xbb\xbfHello\r\n");
        assert_eq!(e.items[1].ty, "event");
        assert_eq!(e.items[1].payload, b"{\"message\":\"hello world\",\"level\":\"error\"}");
        assert_eq!(e.items[2].payload, b"{\"sid\":\"x\"}");
        // No trailing newline, header only, and a zero-length item.
        assert_eq!(p(b"{}").unwrap().items.len(), 0);
        let e = p(b"{}\n{\"type\":\"x\",\"length\":0}").unwrap();
        assert_eq!(e.items[0].payload, b"");
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert_eq!(p(b""), Err(EnvelopeError::Empty));
        assert_eq!(p(b"not json\n"), Err(EnvelopeError::BadHeader));
        assert_eq!(p(b"[1,2]\n"), Err(EnvelopeError::BadHeader));
        assert_eq!(p(b"{}\n{\"length\":2}\nab"), Err(EnvelopeError::BadItemHeader { index: 0 }));
        assert_eq!(
            p(b"{}\n{\"type\":\"event\",\"length\":100}\n{}"),
            Err(EnvelopeError::LengthExceedsBody { index: 0, declared: 100, available: 2 })
        );
        assert_eq!(p(b"{}\n{\"type\":\"event\",\"length\":1}\n{}\n"), Err(EnvelopeError::MissingNewline { index: 0, declared: 1 }));
        let huge = format!("{{}}\n{{\"type\":\"event\",\"length\":{}}}\n", u64::MAX);
        assert!(matches!(p(huge.as_bytes()), Err(EnvelopeError::ItemTooLarge { .. })));
        let many = format!("{{}}\n{}", "{\"type\":\"x\",\"length\":0}\n\n".repeat(101));
        assert_eq!(p(many.as_bytes()), Err(EnvelopeError::TooManyItems { limit: 100 }));
    }
    // The invariants of the cargo-fuzz target `fuzz/fuzz_targets/envelope.rs`, run on every
    // test run (not coverage-guided, but never skipped).
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn item_strategy() -> impl Strategy<Value = (String, Vec<u8>, bool)> {
            ("[a-z_]{1,12}", proptest::collection::vec(any::<u8>(), 0..200), any::<bool>()).prop_map(|(ty, payload, with_length)| {
                // Without a `length`, a payload ends at the first newline: keep those single-line.
                let payload = if with_length {
                    payload
                } else {
                    let mut p: Vec<u8> = payload.into_iter().filter(|&b| b != b'\n').collect();
                    while p.last() == Some(&b'\r') {
                        p.pop();
                    }
                    p
                };
                (ty, payload, with_length)
            })
        }

        fn write(items: &[(String, Vec<u8>, bool)], lie: Option<(usize, u64)>) -> Vec<u8> {
            let mut body = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n".to_vec();
            for (i, (ty, payload, with_length)) in items.iter().enumerate() {
                let extra = lie.filter(|(at, _)| *at == i).map_or(0, |(_, by)| by);
                let header = if *with_length || extra > 0 {
                    format!("{{\"type\":\"{ty}\",\"length\":{}}}\n", payload.len() as u64 + extra)
                } else {
                    format!("{{\"type\":\"{ty}\"}}\n")
                };
                body.extend_from_slice(header.as_bytes());
                body.extend_from_slice(payload);
                body.push(b'\n');
            }
            body
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic_and_payloads_stay_inside(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
                let limits = EnvelopeLimits { max_items: 8, max_item_bytes: 256 };
                if let Ok(env) = parse(&data, limits) {
                    let range = data.as_ptr_range();
                    prop_assert!(env.items.len() <= limits.max_items);
                    for item in &env.items {
                        let p = item.payload.as_ptr_range();
                        prop_assert!(item.payload.is_empty() || (p.start >= range.start && p.end <= range.end));
                        prop_assert!(item.payload.len() <= limits.max_item_bytes);
                    }
                }
                if let Ok(s) = std::str::from_utf8(&data) {
                    if let Some(once) = crate::ingest::scrub::scrub_str(s) {
                        prop_assert_eq!(crate::ingest::scrub::scrub_str(&once), None, "scrubbing twice changed {:?}", once);
                    }
                }
            }

            #[test]
            fn written_envelopes_parse_back_item_for_item(items in proptest::collection::vec(item_strategy(), 0..6)) {
                let body = write(&items, None);
                let env = p(&body).expect("a well-formed envelope parses");
                prop_assert_eq!(env.items.len(), items.len());
                for (got, (ty, payload, _)) in env.items.iter().zip(&items) {
                    prop_assert_eq!(&got.ty, ty);
                    prop_assert_eq!(got.payload, payload.as_slice());
                }
            }

            #[test]
            fn a_lying_length_never_yields_the_items_written(
                items in proptest::collection::vec(item_strategy(), 1..6),
                at in any::<prop::sample::Index>(),
                by in 1u64..400,
            ) {
                let at = at.index(items.len());
                let body = write(&items, Some((at, by)));
                if let Ok(env) = p(&body) {
                    let same = env.items.len() == items.len()
                        && env.items.iter().zip(&items).all(|(g, (ty, payload, _))| &g.ty == ty && g.payload == payload.as_slice());
                    prop_assert!(!same, "a length {by} bytes too long went unnoticed");
                }
            }
        }
    }
}
