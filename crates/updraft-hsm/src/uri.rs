//! RFC 7512 `pkcs11:` URIs, the subset Updraft uses to name one ed25519 key in one token:
//! path attributes `token`, `serial`, `slot-id`, `object` (the key's label), `id` and
//! `type`; query attributes `module-path`, `pin-source` and `pin-value`. Anything else is
//! refused rather than ignored, so a typo cannot silently match another key.

use std::fmt;
use std::path::PathBuf;

use crate::HsmError;

/// A parsed `pkcs11:` URI. `Display` never prints `pin-value`.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub serial: Option<String>,
    pub slot_id: Option<u64>,
    /// The key's label (`CKA_LABEL`).
    pub object: Option<String>,
    /// The key's `CKA_ID` bytes.
    pub id: Option<Vec<u8>>,
    pub module_path: Option<PathBuf>,
    /// `pin-source`: a file holding the PIN.
    pub pin_source: Option<PathBuf>,
    pin_value: Option<String>,
}

impl Pkcs11Uri {
    pub fn parse(uri: &str) -> Result<Pkcs11Uri, HsmError> {
        let bad = |reason: String| HsmError::InvalidUri { reason };
        let rest = uri.strip_prefix("pkcs11:").ok_or_else(|| bad("must start with \"pkcs11:\"".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut u = Pkcs11Uri {
            token: None,
            serial: None,
            slot_id: None,
            object: None,
            id: None,
            module_path: None,
            pin_source: None,
            pin_value: None,
        };
        let attrs = path.split(';').filter(|a| !a.is_empty()).map(|a| (a, false));
        let query_attrs = query.split('&').filter(|a| !a.is_empty()).map(|a| (a, true));
        for (attr, in_query) in attrs.chain(query_attrs) {
            let (name, raw) = attr.split_once('=').ok_or_else(|| bad(format!("attribute {name:?} has no value", name = short(attr))))?;
            let bytes = pct_decode(raw).ok_or_else(|| bad(format!("attribute {name:?} is not properly percent-encoded")))?;
            let text = || String::from_utf8(bytes.clone()).map_err(|_| bad(format!("attribute {name:?} is not UTF-8")));
            let dup = |set: bool| if set { Err(bad(format!("attribute {name:?} is given twice"))) } else { Ok(()) };
            match (name, in_query) {
                ("token", false) => {
                    dup(u.token.is_some())?;
                    u.token = Some(text()?);
                }
                ("serial", false) => {
                    dup(u.serial.is_some())?;
                    u.serial = Some(text()?);
                }
                ("slot-id", false) => {
                    dup(u.slot_id.is_some())?;
                    u.slot_id = Some(text()?.parse().map_err(|_| bad("slot-id must be a number".into()))?);
                }
                ("object", false) => {
                    dup(u.object.is_some())?;
                    u.object = Some(text()?);
                }
                ("id", false) => {
                    dup(u.id.is_some())?;
                    u.id = Some(bytes);
                }
                ("type", false) => {
                    // Updraft always signs with the private key and reads the public one.
                    let t = text()?;
                    if !matches!(t.as_str(), "private" | "public") {
                        return Err(bad(format!("type {t:?} does not name a key (private or public)")));
                    }
                }
                ("module-path", true) => {
                    dup(u.module_path.is_some())?;
                    u.module_path = Some(PathBuf::from(text()?));
                }
                ("pin-source", true) => {
                    dup(u.pin_source.is_some())?;
                    let t = text()?;
                    u.pin_source = Some(PathBuf::from(t.strip_prefix("file:").unwrap_or(&t)));
                }
                ("pin-value", true) => {
                    dup(u.pin_value.is_some())?;
                    u.pin_value = Some(text()?);
                }
                _ => return Err(bad(format!("unsupported attribute {:?}", short(name)))),
            }
        }
        if u.object.is_none() && u.id.is_none() {
            return Err(bad("name the key with object=LABEL or id=%xx…".into()));
        }
        Ok(u)
    }

    pub(crate) fn pin_value(&self) -> Option<&str> {
        self.pin_value.as_deref()
    }
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

fn pct_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn pct_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl fmt::Display for Pkcs11Uri {
    /// The URI without its PIN: safe for logs and answers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::from("pkcs11:");
        let mut path = Vec::new();
        let mut push = |name: &str, v: &[u8]| {
            let mut a = format!("{name}=");
            pct_encode(v, &mut a);
            path.push(a);
        };
        if let Some(t) = &self.token {
            push("token", t.as_bytes());
        }
        if let Some(t) = &self.serial {
            push("serial", t.as_bytes());
        }
        if let Some(t) = self.slot_id {
            push("slot-id", t.to_string().as_bytes());
        }
        if let Some(t) = &self.object {
            push("object", t.as_bytes());
        }
        if let Some(t) = &self.id {
            push("id", t);
        }
        s.push_str(&path.join(";"));
        let mut query = Vec::new();
        if let Some(p) = &self.module_path {
            let mut a = String::from("module-path=");
            pct_encode(p.to_string_lossy().as_bytes(), &mut a);
            query.push(a);
        }
        if let Some(p) = &self.pin_source {
            let mut a = String::from("pin-source=");
            pct_encode(p.to_string_lossy().as_bytes(), &mut a);
            query.push(a);
        }
        if !query.is_empty() {
            s.push('?');
            s.push_str(&query.join("&"));
        }
        f.write_str(&s)
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc7512_examples_and_hides_the_pin() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=Updraft%20Keys;object=targets-1;id=%01%02;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("Updraft Keys"));
        assert_eq!(u.object.as_deref(), Some("targets-1"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(u.module_path, Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")));
        assert_eq!(u.pin_value(), Some("1234"));
        let shown = u.to_string();
        assert!(!shown.contains("1234"), "{shown}");
        assert_eq!(shown, "pkcs11:token=Updraft%20Keys;object=targets-1;id=%01%02?module-path=%2Fusr%2Flib%2Fsofthsm%2Flibsofthsm2.so");
        assert_eq!(Pkcs11Uri::parse(&shown).unwrap().object, u.object, "display round-trips (without the PIN)");
        let p = Pkcs11Uri::parse("pkcs11:object=a?pin-source=file:/run/pin").unwrap();
        assert_eq!(p.pin_source, Some(PathBuf::from("/run/pin")));
    }

    proptest::proptest! {
        /// Printing and parsing again gives the same key name, whatever bytes the attributes
        /// hold (percent-encoding round-trips), and parsing never panics on arbitrary input.
        #[test]
        fn display_round_trips(
            token in proptest::option::of("[ -~]{1,12}"),
            object in "[ -~\u{e9}]{1,16}",
            id in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 1..8)),
            slot in proptest::option::of(0u64..1000),
            junk in "[ -~]{0,40}",
        ) {
            let u = Pkcs11Uri { token, serial: None, slot_id: slot, object: Some(object), id, module_path: None, pin_source: None, pin_value: None };
            let back = Pkcs11Uri::parse(&u.to_string()).unwrap();
            proptest::prop_assert_eq!(back, u);
            let _ = Pkcs11Uri::parse(&format!("pkcs11:{junk}"));
        }
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            "pkcs12:object=a",
            "pkcs11:token=t",
            "pkcs11:object=a;object=b",
            "pkcs11:object=a;colour=red",
            "pkcs11:object=%zz",
            "pkcs11:object=a;slot-id=x",
            "pkcs11:object=a;type=cert",
            "pkcs11:object",
            "pkcs11:object=a?module-name=x",
        ] {
            assert!(Pkcs11Uri::parse(bad).is_err(), "{bad}");
        }
    }
}
