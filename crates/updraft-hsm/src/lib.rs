//! Signing keys in an HSM, reached over PKCS#11 and named by RFC 7512 `pkcs11:` URIs.
//! [`Pkcs11Signer`] implements `updraft_core::tuf::Signer`, so TUF code signs with an HSM key
//! exactly as with a key file; the private key never leaves the token (it is generated there
//! with `CKA_SENSITIVE` on and `CKA_EXTRACTABLE` off).
//!
//! The PKCS#11 module is loaded at run time (`module-path` in the URI, or
//! [`Defaults::module`]); nothing C is linked at build time. Tested against SoftHSM2.
//!
//! ```no_run
//! use updraft_core::tuf::Signer;
//! use updraft_hsm::{Defaults, Pkcs11Signer};
//! let defaults = Defaults { module: Some("/usr/lib/softhsm/libsofthsm2.so".into()), pin: Some("1234".into()) };
//! let key = Pkcs11Signer::generate("pkcs11:token=updraft;object=targets-1", &defaults)?;
//! let sig = key.sign(b"canonical json").expect("the token signs");
//! assert!(key.public_key().verify(b"canonical json", &hex::encode(sig)));
//! # Ok::<(), updraft_hsm::HsmError>(())
//! ```

mod uri;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use updraft_core::tuf::{Key, Signer, TufError};

pub use uri::Pkcs11Uri;

/// Where to find the module and the PIN when a URI does not say.
#[derive(Clone, Default)]
pub struct Defaults {
    pub module: Option<PathBuf>,
    pub pin: Option<String>,
}

impl fmt::Debug for Defaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Defaults").field("module", &self.module).field("pin", &self.pin.as_ref().map(|_| "<set>")).finish()
    }
}

/// Why an HSM key could not be used. Messages name the URI without its PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    #[error("invalid pkcs11 URI: {reason}")]
    InvalidUri { reason: String },
    #[error("no PKCS#11 module: give module-path in the URI or set UPDRAFT_PKCS11_MODULE")]
    NoModule,
    #[error("cannot load PKCS#11 module {}: {reason}", path.display())]
    Module { path: PathBuf, reason: String },
    #[error("no PIN for {uri}: give pin-source in the URI or set UPDRAFT_PKCS11_PIN")]
    NoPin { uri: String },
    #[error("cannot read the PIN file {}: {reason}", path.display())]
    PinSource { path: PathBuf, reason: String },
    #[error("no token matches {uri}")]
    NoToken { uri: String },
    #[error("{found} ed25519 private keys match {uri}; exactly one must")]
    KeyNotUnique { uri: String, found: usize },
    #[error("a key named by {uri} exists already")]
    KeyExists { uri: String },
    #[error("PKCS#11 {op} failed for {uri}: {reason}")]
    Pkcs11 { op: &'static str, uri: String, reason: String },
    #[error("the public key of {uri} is not an ed25519 key")]
    NotEd25519 { uri: String },
}

impl HsmError {
    /// A stable snake_case name for this kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            HsmError::InvalidUri { .. } => "invalid_pkcs11_uri",
            HsmError::NoModule | HsmError::Module { .. } => "pkcs11_module",
            HsmError::NoPin { .. } | HsmError::PinSource { .. } => "pkcs11_pin",
            HsmError::NoToken { .. } => "pkcs11_no_token",
            HsmError::KeyNotUnique { .. } => "pkcs11_key_not_found",
            HsmError::KeyExists { .. } => "pkcs11_key_exists",
            HsmError::Pkcs11 { .. } => "pkcs11_failed",
            HsmError::NotEd25519 { .. } => "pkcs11_not_ed25519",
        }
    }
}

/// One loaded module per path: PKCS#11 allows one `C_Initialize` per process.
fn module(path: &Path) -> Result<Pkcs11, HsmError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = modules.get(path) {
        return Ok(m.clone());
    }
    let err = |reason: String| HsmError::Module { path: path.to_owned(), reason };
    let ctx = Pkcs11::new(path).map_err(|e| err(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(err(e.to_string())),
    }
    modules.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

/// Everything needed to reach one key: the module, the token's slot and the PIN.
struct Target {
    uri: Pkcs11Uri,
    ctx: Pkcs11,
    slot: Slot,
    pin: String,
}

impl Target {
    fn resolve(uri: &str, defaults: &Defaults) -> Result<Target, HsmError> {
        let uri = Pkcs11Uri::parse(uri)?;
        let shown = uri.to_string();
        let module_path = uri.module_path.clone().or_else(|| defaults.module.clone()).ok_or(HsmError::NoModule)?;
        let pin = match (uri.pin_value(), &uri.pin_source, &defaults.pin) {
            (Some(p), _, _) => p.to_owned(),
            (None, Some(path), _) => std::fs::read_to_string(path)
                .map_err(|e| HsmError::PinSource { path: path.clone(), reason: e.kind().to_string() })?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, None, Some(p)) => p.clone(),
            (None, None, None) => return Err(HsmError::NoPin { uri: shown }),
        };
        let ctx = module(&module_path)?;
        let p11 = |op: &'static str| {
            let shown = shown.clone();
            move |e: cryptoki::error::Error| HsmError::Pkcs11 { op, uri: shown, reason: e.to_string() }
        };
        let mut chosen = None;
        for slot in ctx.get_slots_with_token().map_err(p11("C_GetSlotList"))? {
            if uri.slot_id.is_some_and(|id| id != slot.id()) {
                continue;
            }
            let info = ctx.get_token_info(slot).map_err(p11("C_GetTokenInfo"))?;
            if uri.token.as_deref().is_some_and(|t| t != info.label().trim_end())
                || uri.serial.as_deref().is_some_and(|s| s != info.serial_number().trim_end())
            {
                continue;
            }
            chosen = Some(slot);
            break;
        }
        let slot = chosen.ok_or(HsmError::NoToken { uri: shown })?;
        Ok(Target { uri, ctx, slot, pin })
    }

    fn err(&self, op: &'static str) -> impl Fn(cryptoki::error::Error) -> HsmError + '_ {
        move |e| HsmError::Pkcs11 { op, uri: self.uri.to_string(), reason: e.to_string() }
    }

    fn session(&self, rw: bool) -> Result<Session, HsmError> {
        let session = if rw { self.ctx.open_rw_session(self.slot) } else { self.ctx.open_ro_session(self.slot) }
            .map_err(self.err("C_OpenSession"))?;
        match session.login(UserType::User, Some(&AuthPin::new(self.pin.clone().into()))) {
            Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(self.err("C_Login")(e)),
        }
    }

    fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut t = vec![Attribute::Class(class), Attribute::KeyType(KeyType::EC_EDWARDS)];
        if let Some(label) = &self.uri.object {
            t.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.uri.id {
            t.push(Attribute::Id(id.clone()));
        }
        t
    }

    fn find_one(&self, session: &Session, class: ObjectClass) -> Result<ObjectHandle, HsmError> {
        let found = session.find_objects(&self.template(class)).map_err(self.err("C_FindObjects"))?;
        match found.as_slice() {
            [one] => Ok(*one),
            _ => Err(HsmError::KeyNotUnique { uri: self.uri.to_string(), found: found.len() }),
        }
    }

    fn public_key(&self, session: &Session) -> Result<Key, HsmError> {
        let public = self.find_one(session, ObjectClass::PUBLIC_KEY)?;
        let attrs = session.get_attributes(public, &[AttributeType::EcPoint]).map_err(self.err("C_GetAttributeValue"))?;
        let point = attrs.into_iter().find_map(|a| if let Attribute::EcPoint(p) = a { Some(p) } else { None });
        let raw = point.and_then(|p| ed25519_point(&p)).ok_or_else(|| HsmError::NotEd25519 { uri: self.uri.to_string() })?;
        let key = Key::ed25519(raw);
        key.check().map_err(|_| HsmError::NotEd25519 { uri: self.uri.to_string() })?;
        Ok(key)
    }
}

/// `CKA_EC_POINT` of an Edwards key: the 32 raw bytes, DER-wrapped as an OCTET STRING by
/// most tokens (SoftHSM2 included) and bare by some.
fn ed25519_point(p: &[u8]) -> Option<[u8; 32]> {
    match p {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        raw if raw.len() == 32 => raw.try_into().ok(),
        _ => None,
    }
}

/// An ed25519 key in an HSM. Holds one logged-in session; if it breaks (the HSM restarted),
/// the next signature opens a new one.
pub struct Pkcs11Signer {
    target: Target,
    public: Key,
    session: Mutex<Option<(Session, ObjectHandle)>>,
}

impl Pkcs11Signer {
    /// Opens the existing key `uri` names (its private and public halves must both be found,
    /// exactly once each).
    pub fn open(uri: &str, defaults: &Defaults) -> Result<Pkcs11Signer, HsmError> {
        let target = Target::resolve(uri, defaults)?;
        let session = target.session(false)?;
        let public = target.public_key(&session)?;
        let private = target.find_one(&session, ObjectClass::PRIVATE_KEY)?;
        Ok(Pkcs11Signer { target, public, session: Mutex::new(Some((session, private))) })
    }

    /// Generates a new ed25519 key pair inside the token, labelled and identified as `uri`
    /// says (a random `CKA_ID` when the URI gives none). Refuses if such a key exists.
    pub fn generate(uri: &str, defaults: &Defaults) -> Result<Pkcs11Signer, HsmError> {
        let mut target = Target::resolve(uri, defaults)?;
        let session = target.session(true)?;
        // Any key the URI as given would match (by label or id) makes the name ambiguous.
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            if !session.find_objects(&target.template(class)).map_err(target.err("C_FindObjects"))?.is_empty() {
                return Err(HsmError::KeyExists { uri: target.uri.to_string() });
            }
        }
        if target.uri.id.is_none() {
            let mut id = vec![0u8; 16];
            getrandom::getrandom(&mut id).map_err(|e| HsmError::Pkcs11 {
                op: "random id",
                uri: target.uri.to_string(),
                reason: e.to_string(),
            })?;
            target.uri.id = Some(id);
        }
        // DER of the ed25519 OID 1.3.101.112 (RFC 8410), the curve name PKCS#11 3.0 asks for.
        const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
        let mut public_t = target.template(ObjectClass::PUBLIC_KEY);
        public_t.retain(|a| !matches!(a, Attribute::Class(_) | Attribute::KeyType(_)));
        public_t.extend([Attribute::Token(true), Attribute::Verify(true), Attribute::EcParams(ED25519_OID.to_vec())]);
        let mut private_t = target.template(ObjectClass::PRIVATE_KEY);
        private_t.retain(|a| !matches!(a, Attribute::Class(_) | Attribute::KeyType(_)));
        private_t.extend([
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sign(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ]);
        session.generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public_t, &private_t).map_err(target.err("C_GenerateKeyPair"))?;
        let public = target.public_key(&session)?;
        let private = target.find_one(&session, ObjectClass::PRIVATE_KEY)?;
        Ok(Pkcs11Signer { target, public, session: Mutex::new(Some((session, private))) })
    }

    /// The URI of this key, without any PIN, with its `id` filled in when it was generated.
    pub fn uri(&self) -> String {
        self.target.uri.to_string()
    }

    fn sign_once(&self, slot: &mut Option<(Session, ObjectHandle)>, msg: &[u8]) -> Result<Vec<u8>, HsmError> {
        if slot.is_none() {
            let session = self.target.session(false)?;
            let private = self.target.find_one(&session, ObjectClass::PRIVATE_KEY)?;
            *slot = Some((session, private));
        }
        let (session, private) = slot.as_ref().expect("just set");
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        session.sign(&mechanism, *private, msg).map_err(self.target.err("C_Sign"))
    }
}

impl Signer for Pkcs11Signer {
    fn public_key(&self) -> Key {
        self.public.clone()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, TufError> {
        let mut slot = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let sig = match self.sign_once(&mut slot, msg) {
            Ok(sig) => sig,
            Err(_) => {
                // One retry on a fresh session: tokens drop sessions when they restart.
                *slot = None;
                self.sign_once(&mut slot, msg).map_err(|e| TufError::Signing { reason: e.to_string() })?
            }
        };
        // Never hand out a signature the key does not verify (a token with a different curve
        // or a broken mechanism would otherwise produce metadata nobody accepts).
        if !self.public.verify(msg, &hex::encode(&sig)) {
            return Err(TufError::Signing { reason: format!("{} produced a signature that does not verify", self.uri()) });
        }
        Ok(sig)
    }
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer").field("uri", &self.uri()).field("key_id", &self.public.key_id()).finish_non_exhaustive()
    }
}
