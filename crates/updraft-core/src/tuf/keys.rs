//! Keys, key ids, signatures and the `Signer` seam (in-memory ed25519 today; HSM later).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{canonical_json, TufError};

/// The only key type and scheme Updraft signs and verifies with.
pub const ED25519: &str = "ed25519";

/// A key id: lowercase hex of SHA-256 over the key's canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = TufError;
    fn from_str(s: &str) -> Result<Self, TufError> {
        // Lowercase hex only: two spellings of one id must not name two entries.
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(TufError::InvalidKey {
                reason: format!("key id {:?} is not 1 to 128 lowercase hex digits", s.chars().take(80).collect::<String>()),
            });
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A public key as the spec writes it:
/// `{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"<hex>"}}`.
///
/// `keytype` and `scheme` are plain strings so that a root listing keys of other types still
/// parses; such keys simply never verify anything here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
}

/// The public part of a key. Private material never appears in metadata.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyVal {
    pub public: String,
}

impl Key {
    /// An ed25519 public key from its 32 raw bytes.
    pub fn ed25519(public: [u8; 32]) -> Self {
        Key { keytype: ED25519.into(), scheme: ED25519.into(), keyval: KeyVal { public: hex::encode(public) } }
    }

    /// `hex(sha256(canonical_json(self)))`, the id the spec gives this key.
    pub fn key_id(&self) -> KeyId {
        // Cannot fail: the key is three strings, written to a Vec.
        let bytes = canonical_json(self).expect("a key is always encodable");
        KeyId(hex::encode(Sha256::digest(bytes)))
    }

    /// The ed25519 verifying key, if this is a well-formed ed25519 key.
    fn ed25519_key(&self) -> Result<ed25519_dalek::VerifyingKey, TufError> {
        if self.keytype != ED25519 || self.scheme != ED25519 {
            return Err(TufError::InvalidKey { reason: format!("unsupported key type {:?} / scheme {:?}", self.keytype, self.scheme) });
        }
        let raw: [u8; 32] = hex::decode(&self.keyval.public)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| TufError::InvalidKey { reason: "ed25519 public key must be 64 hex digits".into() })?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| TufError::InvalidKey { reason: "not a valid ed25519 point".into() })
    }

    /// Checks `sig_hex` over `msg` with this key. Strict ed25519 verification: rejects
    /// non-canonical and small-order encodings, so one signature has one valid form.
    pub fn verify(&self, msg: &[u8], sig_hex: &str) -> bool {
        let Ok(key) = self.ed25519_key() else { return false };
        let Some(sig) = hex::decode(sig_hex).ok().and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok()) else {
            return false;
        };
        key.verify_strict(msg, &sig).is_ok()
    }

    /// Refuses anything but a well-formed ed25519 public key.
    pub fn check(&self) -> Result<(), TufError> {
        self.ed25519_key().map(|_| ())
    }

    /// The raw public key bytes when this is a valid ed25519 key; used to count distinct keys
    /// even if a root lists one key under two ids.
    pub(crate) fn identity(&self) -> Option<[u8; 32]> {
        self.ed25519_key().ok().map(|k| k.to_bytes())
    }
}

/// One signature on a metadata document: `{"keyid": "<hex>", "sig": "<hex>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: KeyId,
    pub sig: String,
}

/// Something that can sign with one key. The seam where an HSM (PKCS#11), a KMS or a
/// threshold-signing ceremony plugs in; metadata code only ever sees this trait.
pub trait Signer: Send + Sync {
    /// The public key; its [`Key::key_id`] is the `keyid` put on signatures.
    fn public_key(&self) -> Key;
    /// Signs `msg` (canonical JSON of a `signed` object) and returns the raw signature bytes.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, TufError>;
}

/// An ed25519 key held in memory. The secret is wiped when dropped (ed25519-dalek's
/// `zeroize` feature) and never printed.
pub struct Ed25519Signer {
    key: ed25519_dalek::SigningKey,
}

impl Ed25519Signer {
    /// From a 32-byte ed25519 seed (the RFC 8032 private key). The caller owns the seed's
    /// randomness; this crate has none.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut seed = seed;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        // Best effort: wipe our copy of the seed; the caller's copy is theirs to wipe.
        // `black_box` keeps the compiler from dropping the store as dead.
        seed.fill(0);
        std::hint::black_box(&seed);
        Self { key }
    }

    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }
}

impl Signer for Ed25519Signer {
    fn public_key(&self) -> Key {
        Key::ed25519(self.key.verifying_key().to_bytes())
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, TufError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the public identity: secret material must never reach logs.
        f.debug_struct("Ed25519Signer").field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032 §7.1, TEST 1.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const SIG_EMPTY: &str =
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn signer() -> Ed25519Signer {
        Ed25519Signer::from_seed(hex::decode(SEED).unwrap().try_into().unwrap())
    }

    #[test]
    fn rfc8032_known_answer() {
        let s = signer();
        assert_eq!(s.public_key().keyval.public, PUBLIC);
        assert_eq!(hex::encode(s.sign(b"").unwrap()), SIG_EMPTY);
        assert!(s.public_key().verify(b"", SIG_EMPTY));
        assert!(!s.public_key().verify(b"x", SIG_EMPTY));
        assert!(!s.public_key().verify(b"", "zz"));
    }

    #[test]
    fn key_id_is_sha256_of_canonical_key() {
        // Computed independently: sha256 of the literal bytes
        // {"keytype":"ed25519","keyval":{"public":"d75a…511a"},"scheme":"ed25519"}.
        let key = signer().public_key();
        assert_eq!(
            String::from_utf8(canonical_json(&key).unwrap()).unwrap(),
            format!(r#"{{"keytype":"ed25519","keyval":{{"public":"{PUBLIC}"}},"scheme":"ed25519"}}"#)
        );
        assert_eq!(key.key_id().as_str(), "74c181c7ad8a0855d4b55e44d2ba87aabdddb196832571f15f92fece332e4916");
    }

    #[test]
    fn debug_hides_secret() {
        let dbg = format!("{:?}", signer());
        assert!(!dbg.contains(SEED) && !dbg.to_lowercase().contains(&SEED[..16]), "{dbg}");
        assert!(dbg.contains("74c181c7"), "{dbg}");
    }

    #[test]
    fn key_ids_are_lowercase_hex() {
        assert!("ab12".parse::<KeyId>().is_ok());
        for bad in ["", "AB12", "xyz", "../a"] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad:?}");
        }
        let wrong_type = Key { keytype: "rsa".into(), ..signer().public_key() };
        assert!(!wrong_type.verify(b"", SIG_EMPTY));
    }
}
