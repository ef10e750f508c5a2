//! Against a real SoftHSM2 token (Debian package `softhsm2`; `scripts/ensure-packages.sh`
//! installs it). No mocks: keys are generated in the token, signatures made by it and
//! verified with updraft-core's ed25519 verification.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use updraft_core::tuf::{self, Signer};
use updraft_hsm::{Defaults, Pkcs11Signer};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";

/// Every token a test of this binary uses. SoftHSM2 sees only the tokens that exist when the
/// module is initialized, so all are created up front, one per test.
const TOKENS: [&str; 3] = ["gen", "errs", "wrong-pin"];

/// One SoftHSM configuration per test process (the module reads it once, at load), with a
/// fresh token per test.
fn softhsm_conf() -> &'static Path {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM2 is not installed ({MODULE} is missing): run scripts/ensure-packages.sh (apt-get install softhsm2)"
        );
        let dir = tempfile::tempdir().unwrap().keep();
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()))
            .unwrap();
        for label in TOKENS {
            init_token(&conf, label);
        }
        // Set once, before any thread of this process loads the module.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        conf
    })
}

fn new_token(label: &str) {
    assert!(TOKENS.contains(&label), "add {label:?} to TOKENS");
    softhsm_conf();
}

fn init_token(conf: &Path, label: &str) {
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "5678"])
        .env("SOFTHSM2_CONF", conf)
        .output()
        .expect("softhsm2-util runs (scripts/ensure-packages.sh installs it)");
    assert!(out.status.success(), "softhsm2-util --init-token: {}", String::from_utf8_lossy(&out.stderr));
}

fn defaults() -> Defaults {
    Defaults { module: Some(MODULE.into()), pin: Some(PIN.into()) }
}

#[test]
fn generated_key_signs_tuf_metadata_that_verifies() {
    new_token("gen");
    let key = Pkcs11Signer::generate("pkcs11:token=gen;object=targets-1", &defaults()).unwrap();
    let msg = b"{\"_type\":\"targets\"}";
    let sig = key.sign(msg).unwrap();
    assert_eq!(sig.len(), 64);
    assert!(key.public_key().verify(msg, &hex::encode(&sig)));
    assert!(!key.public_key().verify(b"other", &hex::encode(&sig)));
    // Opened again by its URI (which now carries the generated CKA_ID): the same key.
    let again = Pkcs11Signer::open(&key.uri(), &defaults()).unwrap();
    assert_eq!(again.public_key(), key.public_key());
    let again_by_label = Pkcs11Signer::open("pkcs11:token=gen;object=targets-1", &defaults()).unwrap();
    assert_eq!(again_by_label.public_key().key_id(), key.public_key().key_id());

    // Signing whole metadata through the Signer seam, and the client-side check of it.
    let mut t = tuf::Targets::new(1, time::OffsetDateTime::now_utc() + time::Duration::days(1));
    t.targets.insert("1.0.0/linux-x86_64/a".into(), tuf::TargetFile::new(1, tuf::sha256_hex(b"a"), None));
    let wire = tuf::to_wire(&tuf::sign(t, &[&again]).unwrap()).unwrap();
    let role = tuf::RoleKeys { keyids: vec![key.public_key().key_id()], threshold: 1 };
    let keys = [(key.public_key().key_id(), key.public_key())].into_iter().collect();
    tuf::parse_verified::<tuf::Targets>(&wire, &role, &keys).unwrap();
}

#[test]
fn existing_labels_wrong_pins_and_missing_keys_are_clear_errors() {
    new_token("errs");
    Pkcs11Signer::generate("pkcs11:token=errs;object=k", &defaults()).unwrap();
    let err = Pkcs11Signer::generate("pkcs11:token=errs;object=k", &defaults()).unwrap_err();
    assert_eq!(err.code(), "pkcs11_key_exists", "{err}");
    let err = Pkcs11Signer::open("pkcs11:token=errs;object=nope", &defaults()).unwrap_err();
    assert_eq!(err.code(), "pkcs11_key_not_found", "{err}");
    let err = Pkcs11Signer::open("pkcs11:token=no-such-token;object=k", &defaults()).unwrap_err();
    assert_eq!(err.code(), "pkcs11_no_token", "{err}");
    // A wrong PIN, on a token this process has not logged in to yet (PKCS#11 logins are
    // per application, so a second login on "errs" would not be checked).
    new_token("wrong-pin");
    let err = Pkcs11Signer::open("pkcs11:token=wrong-pin;object=k?pin-value=0000", &defaults()).unwrap_err();
    assert_eq!(err.code(), "pkcs11_failed", "{err}");
    assert!(err.to_string().contains("C_Login") && !err.to_string().contains("0000"), "the PIN never appears in errors: {err}");
    let err = Pkcs11Signer::open("pkcs11:token=errs;object=k", &Defaults { module: Some(MODULE.into()), pin: None }).unwrap_err();
    assert_eq!(err.code(), "pkcs11_pin", "{err}");
    // A PIN file works (RFC 7512 pin-source).
    let pin_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pin_file.path(), format!("{PIN}\n")).unwrap();
    let uri = format!("pkcs11:token=errs;object=k?pin-source=file:{}", pin_file.path().display());
    Pkcs11Signer::open(&uri, &Defaults { module: Some(MODULE.into()), pin: None }).unwrap();
    let dbg = format!("{:?}", Pkcs11Signer::open("pkcs11:token=errs;object=k?pin-value=1234", &defaults()).unwrap());
    assert!(!dbg.contains("1234"), "{dbg}");
}
