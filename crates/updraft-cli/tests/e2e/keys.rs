//! Key management against the real binary: rotation of every role with thresholds, followed by
//! clients that pinned root version 1; the offline root ceremony (export, sign with no server,
//! import); HSM keys in a real SoftHSM2 token. Secrets never show in answers, logs or audit.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::*;

/// `updraft client check` for app `demo` on stable/linux-x86_64 from 1.0.0, pinned to the
/// root the app shipped with (version 1), keeping its state in `state`.
fn client_check(server: &Server, trust: &Path, state: &Path) -> Out {
    demo_client(server, trust, state, "check", "1.0.0", &["--json"])
}

/// The pinned root: a copy of the trust file taken at app creation.
fn pin(server: &Server, dir: &Path) -> PathBuf {
    let trust = dir.join("pinned.root.json");
    std::fs::copy(server.data.join("trust/demo.root.json"), &trust).unwrap();
    trust
}

fn offered(out: &Out) -> String {
    assert_eq!(out.code, 0, "{out:?}");
    out.json()["update"]["version"].as_str().unwrap().to_owned()
}

/// Runs the binary with no server configuration at all (an offline machine).
fn offline(args: &[&str], dir: &Path) -> Out {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("UPDRAFT_SERVER")
        .env_remove("UPDRAFT_TOKEN")
        .env_remove("UPDRAFT_KEY_PASSPHRASE")
        // Nothing listens here: any attempt to reach a server would fail the command.
        .env("UPDRAFT_SERVER", "http://127.0.0.1:9")
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every private seed under the app's key directory (plain key files only).
fn key_secrets(data: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data.join("keys/demo")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "key") {
            let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            out.push(v["material"].as_str().unwrap().to_owned());
        }
    }
    out
}

fn assert_no_secrets(haystacks: &[&str], secrets: &[String]) {
    for s in secrets {
        for h in haystacks {
            assert!(!h.contains(s.as_str()), "key material leaked");
        }
    }
}

#[test]
fn every_role_rotates_and_clients_pinned_to_v1_follow() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &bytes(5000, 1), &[]);
    let trust = pin(&server, dir.path());
    let early = dir.path().join("early-state");
    assert_eq!(offered(&client_check(&server, &trust, &early)), "1.1.0");
    let secrets_before = key_secrets(&data);

    let keys = server.cli(&["keys", "list", "demo", "--json"]).ok().json();
    assert_eq!(keys["root_version"], 1);
    for role in ["root", "targets", "snapshot", "timestamp"] {
        assert_eq!(keys["roles"][role]["threshold"], 1, "{keys}");
        assert_eq!(keys["roles"][role]["keys"][0]["location"], "file");
        assert_eq!(keys["roles"][role]["online"], true);
    }
    let old_targets_key = keys["roles"]["targets"]["keys"][0]["keyid"].as_str().unwrap().to_owned();

    let v = server.cli(&["keys", "rotate", "demo", "--role", "root", "--json"]).ok().json();
    assert_eq!(v["root_version"], 2);
    assert_eq!((v["added_keys"].as_array().unwrap().len(), v["retired_keys"].as_array().unwrap().len()), (1, 1));
    server.cli(&["keys", "rotate", "demo", "--role", "timestamp"]).ok();
    let v = server.cli(&["keys", "rotate", "demo", "--role", "targets", "--generate", "3", "--threshold", "2", "--json"]).ok().json();
    assert_eq!(v["root_version"], 4);
    assert_eq!(v["roles"]["targets"]["threshold"], 2);
    assert_eq!(v["roles"]["targets"]["keys"].as_array().unwrap().len(), 3);
    assert_eq!(v["retired_keys"], serde_json::json!([old_targets_key]));
    let v = server.cli(&["keys", "rotate", "demo", "--role", "snapshot", "--json"]).ok().json();
    assert_eq!(v["root_version"], 5);

    // A threshold the keys cannot meet is refused, and nothing changes.
    let out = server.cli(&["keys", "rotate", "demo", "--role", "root", "--generate", "1", "--threshold", "2"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("invalid_threshold"), "{out:?}");
    assert_eq!(server.cli(&["keys", "list", "demo", "--json"]).ok().json()["root_version"], 5);

    publish(&server, dir.path(), "demo", "1.2.0", "linux-x86_64", &bytes(6000, 2), &[]);
    // The client that saw root v1 and cached v1-era timestamp/snapshot walks 2..5.
    assert_eq!(offered(&client_check(&server, &trust, &early)), "1.2.0");
    for v in 2..=5 {
        assert!(early.join(format!("tuf/demo/{v}.root.json")).exists(), "root v{v} followed");
    }
    // A brand-new install that ships root v1 does too.
    assert_eq!(offered(&client_check(&server, &trust, &dir.path().join("fresh-state"))), "1.2.0");
    // Every root version stays served.
    let http = http();
    for v in 1..=5 {
        assert_eq!(http.get(server.url(&format!("/tuf/demo/metadata/{v}.root.json"))).send().unwrap().status(), 200);
    }

    // Retired keys are gone from disk; what remains is exactly the keys the root lists, 0600.
    let listed = server.cli(&["keys", "list", "demo", "--json"]).ok();
    let n_keys: usize =
        ["root", "targets", "snapshot", "timestamp"].iter().map(|r| listed.json()["roles"][r]["keys"].as_array().unwrap().len()).sum();
    let files: Vec<_> = std::fs::read_dir(data.join("keys/demo")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), n_keys, "{files:?}");
    for f in &files {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{f:?}");
    }

    // No key material, old or new, in answers, the audit log or the server log.
    let audit = http.get(server.url("/v1/admin/audit?limit=1000")).bearer_auth(TOKEN).send().unwrap().text().unwrap();
    assert!(audit.contains("keys.rotate"), "{audit}");
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    let mut secrets = secrets_before;
    secrets.extend(key_secrets(&data));
    assert_no_secrets(&[&audit, &log, &listed.stdout], &secrets);
}

#[test]
fn offline_root_ceremony_signs_without_a_server() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &bytes(5000, 3), &[]);
    let trust = pin(&server, dir.path());
    let early = dir.path().join("early-state");
    assert_eq!(offered(&client_check(&server, &trust, &early)), "1.1.0");

    // On the offline machine: two root keys.
    let vault = dir.path().join("vault");
    std::fs::create_dir_all(&vault).unwrap();
    for k in ["root-a.key", "root-b.key"] {
        let out = offline(&["keys", "generate", "--out", k], &vault);
        assert_eq!(out.code, 0, "{out:?}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(vault.join(k)).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Online: the unsigned next root moves the root role to them, 2 of 2.
    let next = dir.path().join("2.root.json");
    let (a_pub, b_pub) =
        (format!("root={}", vault.join("root-a.key.pub").display()), format!("root={}", vault.join("root-b.key.pub").display()));
    server
        .cli(&[
            "keys",
            "root",
            "export",
            "demo",
            "--keys",
            &a_pub,
            "--keys",
            &b_pub,
            "--threshold",
            "root=2",
            "--out",
            next.to_str().unwrap(),
        ])
        .ok();
    let exported: Value = serde_json::from_slice(&std::fs::read(&next).unwrap()).unwrap();
    assert_eq!(exported["signatures"], serde_json::json!([]));
    assert_eq!(exported["signed"]["version"], 2);

    let import = |file: &Path| server.cli(&["keys", "root", "import", "demo", file.to_str().unwrap(), "--json"]);
    // Unsigned by the new keys: refused (the server's own old root key alone is not enough).
    let out = import(&next);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("threshold_not_met"), "{out:?}");
    // One of two: still refused.
    let sign = |file: &Path, key: &str| {
        let out = offline(&["keys", "root", "sign", file.to_str().unwrap(), "--key", vault.join(key).to_str().unwrap()], &vault);
        assert_eq!(out.code, 0, "{out:?}");
    };
    sign(&next, "root-a.key");
    assert_eq!(import(&next).code, 6);
    // An edit after signing breaks the signatures it had.
    sign(&next, "root-b.key");
    let mut tampered: Value = serde_json::from_slice(&std::fs::read(&next).unwrap()).unwrap();
    tampered["signed"]["roles"]["timestamp"]["threshold"] = serde_json::json!(1u32);
    tampered["signed"]["expires"] = serde_json::json!("2099-01-01T00:00:00Z");
    let bad = dir.path().join("tampered.json");
    std::fs::write(&bad, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let out = import(&bad);
    assert_eq!(out.code, 6, "{out:?}");
    // Both signatures: published.
    let v = import(&next).ok().json();
    assert_eq!(v["root_version"], 2);
    assert_eq!(v["roles"]["root"]["threshold"], 2);
    assert_eq!(v["roles"]["root"]["online"], false);
    assert!(v["roles"]["root"]["keys"].as_array().unwrap().iter().all(|k| k["location"] == "offline"), "{v}");
    // The same document twice is not a new version.
    assert_eq!(import(&next).code, 6);

    // With the root offline, an online rotation cannot happen...
    let out = server.cli(&["keys", "rotate", "demo", "--role", "timestamp"]);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("root_keys_offline"), "{out:?}");
    // ...so it goes through the ceremony: the server makes the new timestamp key, the vault signs.
    let third = dir.path().join("3.root.json");
    server.cli(&["keys", "root", "export", "demo", "--generate", "timestamp", "--out", third.to_str().unwrap()]).ok();
    sign(&third, "root-a.key");
    sign(&third, "root-b.key");
    let v = import(&third).ok().json();
    assert_eq!(v["root_version"], 3);
    assert_eq!(v["roles"]["timestamp"]["online"], true);

    publish(&server, dir.path(), "demo", "1.2.0", "linux-x86_64", &bytes(6000, 4), &[]);
    assert_eq!(offered(&client_check(&server, &trust, &early)), "1.2.0");
    assert_eq!(offered(&client_check(&server, &trust, &dir.path().join("fresh"))), "1.2.0");

    // Garbage and wrong-version documents are refused with clear codes.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, b"{\"signatures\": [], \"signed\": {\"_type\": \"targets\"}}").unwrap();
    let out = import(&junk);
    assert!(out.code == 6 && out.stderr.contains("invalid_root"), "{out:?}");
    let out = offline(&["keys", "root", "sign", junk.to_str().unwrap(), "--key", vault.join("root-a.key").to_str().unwrap()], &vault);
    assert_eq!(out.code, 4, "{out:?}");
}

const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const HSM_PIN: &str = "81726354";

/// A SoftHSM2 configuration with one initialized token, `updraft-e2e`, in `dir`. Fails (does
/// not skip) when SoftHSM2 is missing.
fn softhsm(dir: &Path) -> PathBuf {
    assert!(
        Path::new(SOFTHSM_MODULE).exists(),
        "SoftHSM2 is not installed ({SOFTHSM_MODULE} is missing): run scripts/ensure-packages.sh (apt-get install softhsm2)"
    );
    let tokens = dir.join("softhsm-tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display())).unwrap();
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "updraft-e2e", "--pin", HSM_PIN, "--so-pin", "99999999"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util runs (scripts/ensure-packages.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    conf
}

fn hsm_env(conf: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("SOFTHSM2_CONF", conf.display().to_string()),
        ("UPDRAFT_PKCS11_MODULE", SOFTHSM_MODULE.into()),
        ("UPDRAFT_PKCS11_PIN", HSM_PIN.into()),
    ]
}

fn cli_env(server: &Server, env: &[(&'static str, String)], args: &[&str]) -> Out {
    let out = Command::new(bin())
        .args(args)
        .env("UPDRAFT_SERVER", &server.url)
        .env("UPDRAFT_TOKEN", TOKEN)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn targets_signed_in_softhsm_verify_for_clients_across_restarts() {
    let (dir, data) = scratch();
    let conf = softhsm(dir.path());
    let env = hsm_env(&conf);
    let server = Server::start_with(&data, Opts { env: env.clone() });
    server.cli(&["app", "create", "demo"]).ok();
    let trust = pin(&server, dir.path());

    // The key is generated inside the token; only its public half ever leaves it.
    let uri = "pkcs11:token=updraft-e2e;object=targets-hsm";
    let out = cli_env(&server, &env, &["keys", "generate", "--pkcs11", uri, "--public-out", dir.path().join("t.pub").to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let v = cli_env(&server, &env, &["keys", "rotate", "demo", "--role", "targets", "--pkcs11", uri, "--json"]).ok().json();
    let targets = &v["roles"]["targets"]["keys"];
    assert_eq!(targets.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(targets[0]["location"], "pkcs11");
    assert!(targets[0]["uri"].as_str().unwrap().starts_with("pkcs11:token=updraft-e2e;object=targets-hsm"), "{v}");
    let public: Value = serde_json::from_slice(&std::fs::read(dir.path().join("t.pub")).unwrap()).unwrap();
    assert_eq!(v["added_keys"][0].as_str().unwrap().len(), 64);

    publish(&server, dir.path(), "demo", "1.1.0", "linux-x86_64", &bytes(5000, 5), &[]);
    let state = dir.path().join("state");
    assert_eq!(offered(&client_check(&server, &trust, &state)), "1.1.0");
    // The targets metadata clients verified was signed by the HSM key.
    let targets_doc: Value =
        serde_json::from_str(&http().get(server.url("/tuf/demo/metadata/3.targets.json")).send().unwrap().text().unwrap()).unwrap();
    let hsm_keyid = v["added_keys"][0].as_str().unwrap();
    assert_eq!(targets_doc["signatures"][0]["keyid"], hsm_keyid, "{targets_doc}");
    assert_eq!(public["keyval"]["public"].as_str().unwrap().len(), 64);

    // After a restart the server finds the key again through its reference.
    drop(server);
    let server = Server::start_with(&data, Opts { env: env.clone() });
    publish(&server, dir.path(), "demo", "1.2.0", "linux-x86_64", &bytes(5000, 6), &[]);
    assert_eq!(offered(&client_check(&server, &trust, &state)), "1.2.0");

    // The PIN is nowhere: answers, the key reference, the audit log, the server log.
    let listed = server.cli(&["keys", "list", "demo", "--json"]).ok().stdout;
    let audit = http().get(server.url("/v1/admin/audit?limit=1000")).bearer_auth(TOKEN).send().unwrap().text().unwrap();
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    let refs: Vec<String> = std::fs::read_dir(data.join("keys/demo"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter(|t| t.contains("pkcs11:"))
        .collect();
    assert_eq!(refs.len(), 1);
    for e in std::fs::read_dir(data.join("keys/demo")).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let p = e.unwrap().path();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{p:?}");
    }
    for h in [&listed, &audit, &log, &refs[0]] {
        assert!(!h.contains(HSM_PIN), "the PIN leaked");
    }

    // The offline root can live in an HSM too: the ceremony signs with a `pkcs11:` key, and
    // the server never holds a reference to it.
    let root_pub = dir.path().join("root-hsm.pub");
    let out = cli_env(
        &server,
        &env,
        &["keys", "generate", "--pkcs11", "pkcs11:token=updraft-e2e;object=root-hsm", "--public-out", root_pub.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let next = dir.path().join("next.root.json");
    let keys_arg = format!("root={}", root_pub.display());
    server.cli(&["keys", "root", "export", "demo", "--keys", &keys_arg, "--out", next.to_str().unwrap()]).ok();
    let mut offline_env = env.clone();
    offline_env.push(("UPDRAFT_SERVER", "http://127.0.0.1:9".into()));
    let out = cli_env(
        &server,
        &offline_env,
        &["keys", "root", "sign", next.to_str().unwrap(), "--key", "pkcs11:token=updraft-e2e;object=root-hsm"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let v = server.cli(&["keys", "root", "import", "demo", next.to_str().unwrap(), "--json"]).ok().json();
    assert_eq!(v["roles"]["root"]["keys"][0]["location"], "offline", "{v}");
    assert_eq!(offered(&client_check(&server, &trust, &dir.path().join("after-root-move"))), "1.2.0");

    // Without the module, a clear error and exit 1.
    let bad = vec![("SOFTHSM2_CONF", conf.display().to_string()), ("UPDRAFT_PKCS11_MODULE", "/nonexistent/libpkcs11.so".to_owned())];
    let out = cli_env(&server, &bad, &["keys", "generate", "--pkcs11", "pkcs11:token=updraft-e2e;object=x?pin-value=1"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("pkcs11_module"), "{out:?}");
}

#[test]
fn bad_key_requests_get_clear_stable_errors_and_change_nothing() {
    let (_dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let http = http();
    let pubkey = serde_json::json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"}});
    let check = |path: &str, body: serde_json::Value, status: u16, code: &str| {
        let resp = http.post(server.url(&format!("/v1/admin/apps/demo/keys/{path}"))).bearer_auth(TOKEN).json(&body).send().unwrap();
        let got = resp.status().as_u16();
        let v: Value = resp.json().unwrap();
        assert_eq!((got, v["error"]["code"].as_str().unwrap_or("")), (status, code), "{path} {body}: {v}");
    };
    check("rotate", serde_json::json!({"role": "owner", "generate": 1}), 400, "invalid_role");
    check("rotate", serde_json::json!({"role": "targets"}), 400, "no_keys");
    check("rotate", serde_json::json!({"role": "targets", "generate": 1, "threshold": 0}), 400, "invalid_threshold");
    check("rotate", serde_json::json!({"role": "targets", "generate": 99}), 400, "too_many_keys");
    check("rotate", serde_json::json!({"role": "targets", "public_keys": [pubkey]}), 400, "offline_online_role");
    check(
        "rotate",
        serde_json::json!({"role": "root", "public_keys": [{"keytype": "rsa", "scheme": "x", "keyval": {"public": "00"}}]}),
        400,
        "invalid_key",
    );
    check("rotate", serde_json::json!({"role": "targets", "pkcs11": ["pkcs11:token=x"]}), 400, "invalid_pkcs11_uri");
    check("rotate", serde_json::json!({"role": "targets", "generate": 1, "colour": "red"}), 400, "invalid_body");
    check("root/export", serde_json::json!({"thresholds": {"root": 5}}), 400, "invalid_threshold");
    check("root/import", serde_json::json!({"signatures": [], "signed": {"_type": "root"}}), 400, "invalid_root");
    check("root/import", serde_json::json!([1, 2]), 400, "invalid_root");
    let resp = http
        .post(server.url("/v1/admin/apps/demo/keys/root/import"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .post(server.url("/v1/admin/apps/nope/keys/rotate"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"role": "root", "generate": 1}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
    // None of it changed anything, and no stray key files were left behind.
    let v = server.cli(&["keys", "list", "demo", "--json"]).ok().json();
    assert_eq!(v["root_version"], 1);
    assert_eq!(std::fs::read_dir(data.join("keys/demo")).unwrap().count(), 4);
}
