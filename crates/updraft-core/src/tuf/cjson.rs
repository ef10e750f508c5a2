//! Canonical JSON (OLPC flavour, as TUF signs it): the exact bytes signatures are made over.

use serde::Serialize;

use super::TufError;

/// Encodes `v` as OLPC canonical JSON: keys sorted by byte value, no insignificant whitespace,
/// strings NFC-normalised, only `"` and `\` escaped, and no floats (they are refused).
///
/// This is what signatures cover. It is *not* always valid JSON (control characters are
/// written raw), so it is never what we put on the wire; see [`super::to_wire`].
pub fn canonical_json<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, TufError> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    v.serialize(&mut ser).map_err(|e| TufError::CanonicalJson { reason: e.to_string() })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::ser::SerializeMap;
    use serde_json::{json, Value};

    /// A map that serialises its entries in exactly the given order, so we can feed the
    /// encoder the same object in different orders.
    struct Ordered(Vec<(String, Value)>);
    impl Serialize for Ordered {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }

    #[test]
    fn known_encodings() {
        let check = |v: Value, expected: &str| {
            assert_eq!(String::from_utf8(canonical_json(&v).unwrap()).unwrap(), expected);
        };
        check(json!({"b": 1, "a": [true, null, "x"]}), r#"{"a":[true,null,"x"],"b":1}"#);
        check(json!({"q": "say \"hi\" \\ there"}), r#"{"q":"say \"hi\" \\ there"}"#);
        // Raw control characters: canonical JSON escapes only quote and backslash.
        check(json!({"n": "a\nb"}), "{\"n\":\"a\nb\"}");
        // Keys sort by bytes, so uppercase before lowercase and "_type" after "Z".
        check(json!({"a": 1, "B": 2, "_type": 3}), r#"{"B":2,"_type":3,"a":1}"#);
        check(json!(-5), "-5");
        assert!(matches!(canonical_json(&json!({"f": 1.5})), Err(TufError::CanonicalJson { .. })));
    }

    proptest! {
        #[test]
        fn deterministic_for_reordered_maps(
            entries in proptest::collection::btree_map("[a-zA-Z_]{0,6}", (any::<i64>(), "[ -~]{0,8}"), 0..12),
            seed in any::<u64>(),
        ) {
            let pairs: Vec<(String, Value)> =
                entries.iter().map(|(k, (n, s))| (k.clone(), json!({"n": n, "s": s, "k": k}))).collect();
            let mut shuffled = pairs.clone();
            // A cheap deterministic shuffle driven by the seed.
            let len = shuffled.len();
            for i in 0..len {
                let j = ((seed.rotate_left(i as u32) ^ i as u64) % len as u64) as usize;
                shuffled.swap(i, j);
            }
            let mut reversed = pairs.clone();
            reversed.reverse();
            let a = canonical_json(&Ordered(pairs)).unwrap();
            prop_assert_eq!(&a, &canonical_json(&Ordered(shuffled)).unwrap());
            prop_assert_eq!(&a, &canonical_json(&Ordered(reversed)).unwrap());
            // And parsing it back gives the same data.
            let back: Value = serde_json::from_slice(&a).unwrap();
            prop_assert_eq!(canonical_json(&back).unwrap(), a);
        }
    }
}
