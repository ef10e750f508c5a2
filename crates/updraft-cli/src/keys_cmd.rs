//! `updraft keys …`: TUF key management. `list`, `rotate`, `root export` and `root import`
//! call the server's admin API; `generate` and `root sign` work on local files (or an HSM)
//! with no server at all, so the root ceremony can run on an offline machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use updraft_core::tuf::{self, Ed25519Signer, Key, Signer};

use crate::exit::{coded, FAILURE, OK, REFUSED, UNREACHABLE};

/// Exit code for a usage mistake (bad flag values).
const USAGE: i32 = 2;
/// Exit code for a document that does not verify.
use crate::exit::VERIFY;

#[derive(Args, Clone)]
pub struct Server {
    /// Server base URL.
    #[arg(long, env = "UPDRAFT_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Admin API token.
    #[arg(long, env = "UPDRAFT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Show each role's keys, threshold, where each key is held, and metadata expiry.
    #[command(after_help = "Example:\n  updraft keys list my-app")]
    List {
        app: String,
        #[command(flatten)]
        conn: Server,
    },
    /// Replace a role's keys in a new root version (signed by the old and new root keys).
    #[command(
        after_help = "Examples:\n  updraft keys rotate my-app --role timestamp\n  updraft keys rotate my-app --role targets --generate 3 --threshold 2\n  updraft keys rotate my-app --role targets --pkcs11 'pkcs11:token=updraft;object=targets-2'\n\nClients follow the rotation through the chain of root versions. Rotating timestamp or snapshot\nkeys makes clients drop their cached timestamp and snapshot (TUF fast-forward recovery)."
    )]
    Rotate(RotateArgs),
    /// Create a signing key: a key file (FILE, 0600; FILE.pub holds the public key) or a key
    /// inside an HSM. Needs no server.
    #[command(
        after_help = "Examples:\n  updraft keys generate --out root-a.key          # encrypted when UPDRAFT_KEY_PASSPHRASE is set\n  updraft keys generate --pkcs11 'pkcs11:token=updraft;object=targets-2' --public-out targets-2.pub"
    )]
    Generate {
        /// Key file to create (never overwritten).
        #[arg(long, conflicts_with = "pkcs11", required_unless_present = "pkcs11")]
        out: Option<PathBuf>,
        /// Generate the key inside this HSM token (RFC 7512 URI).
        #[arg(long)]
        pkcs11: Option<String>,
        /// Where to write the public key (default: OUT.pub).
        #[arg(long)]
        public_out: Option<PathBuf>,
    },
    /// The offline root ceremony: export the next root, sign it offline, import it.
    #[command(subcommand)]
    Root(RootCmd),
}

#[derive(Args)]
pub struct RotateArgs {
    app: String,
    /// root, targets, snapshot or timestamp.
    #[arg(long)]
    role: String,
    /// How many of the role's keys must sign [default: the current threshold].
    #[arg(long)]
    threshold: Option<u32>,
    /// How many new key files the server generates [default: 1 unless --pkcs11 or --public-key is given].
    #[arg(long)]
    generate: Option<u32>,
    /// An HSM key to use (RFC 7512 URI; repeat for several).
    #[arg(long)]
    pkcs11: Vec<String>,
    /// A public key whose private half stays offline (root role; repeat for several).
    #[arg(long = "public-key", value_name = "FILE")]
    public_keys: Vec<PathBuf>,
    #[command(flatten)]
    conn: Server,
}

#[derive(Subcommand)]
pub enum RootCmd {
    /// Write the unsigned next root version, with the key changes given.
    #[command(
        after_help = "Example (move the root keys offline, 2 of 2):\n  updraft keys root export my-app --keys root=root-a.key.pub --keys root=root-b.key.pub \\\n      --threshold root=2 --out 2.root.json"
    )]
    Export {
        app: String,
        /// ROLE=PUBLIC-KEY-FILE: the role's new keys (repeat; all given for a role replace its keys).
        #[arg(long = "keys", value_name = "ROLE=FILE")]
        keys: Vec<String>,
        /// ROLE: the server generates a new key file for this online role.
        #[arg(long = "generate", value_name = "ROLE")]
        generate: Vec<String>,
        /// ROLE=N: the role's new threshold.
        #[arg(long = "threshold", value_name = "ROLE=N")]
        thresholds: Vec<String>,
        /// Where to write the unsigned root.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        conn: Server,
    },
    /// Add one signature to a root document. Works anywhere: no server is contacted.
    #[command(
        after_help = "Examples:\n  updraft keys root sign 2.root.json --key root-a.key\n  updraft keys root sign 2.root.json --key 'pkcs11:token=offline-root;object=root-a'"
    )]
    Sign {
        file: PathBuf,
        /// An Updraft key file, or an HSM key as an RFC 7512 `pkcs11:` URI.
        #[arg(long)]
        key: String,
    },
    /// Publish a signed root (the server adds its own root keys' signatures and checks the
    /// thresholds exactly as clients will).
    #[command(after_help = "Example:\n  updraft keys root import my-app 2.root.json")]
    Import {
        app: String,
        file: PathBuf,
        #[command(flatten)]
        conn: Server,
    },
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(conn: &Server) -> anyhow::Result<Api> {
        let token = conn.token.clone().ok_or_else(|| coded(USAGE, "no token: pass --token or set UPDRAFT_TOKEN"))?;
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build().context("cannot build the HTTP client")?;
        Ok(Api { http, base: conn.server.trim_end_matches('/').to_owned(), token })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}/v1/admin{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| coded(UNREACHABLE, format!("cannot reach {}: {}", self.base, e.without_url())))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let code = value["error"]["code"].as_str().unwrap_or("unknown");
        let message = value["error"]["message"].as_str().unwrap_or("no details");
        let exit = if status.is_server_error() { UNREACHABLE } else { REFUSED };
        Err(coded(exit, format!("the server refused: {message} ({code}, HTTP {})", status.as_u16())))
    }
}

fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn read_public_key(path: &Path) -> anyhow::Result<Key> {
    let raw = std::fs::read(path).map_err(|e| coded(USAGE, format!("cannot read public key {}: {e}", path.display())))?;
    let key: Key = serde_json::from_slice(&raw)
        .map_err(|e| coded(USAGE, format!("{} is not a TUF public key ({{\"keytype\",\"scheme\",\"keyval\"}}): {e}", path.display())))?;
    key.check().map_err(|e| coded(USAGE, format!("{}: {e}", path.display())))?;
    Ok(key)
}

fn role_eq(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    let (r, v) = s.split_once('=').ok_or_else(|| coded(USAGE, format!("{what} {s:?}: expected ROLE=VALUE")))?;
    Ok((r.to_owned(), v.to_owned()))
}

fn print_keys(v: &Value) -> String {
    let mut out = format!("{} root version {}\n", v["app"].as_str().unwrap_or(""), v["root_version"]);
    for role in ["root", "targets", "snapshot", "timestamp"] {
        let r = &v["roles"][role];
        out.push_str(&format!(
            "{role:10} threshold {} of {}  v{} expires {}{}\n",
            r["threshold"],
            r["keys"].as_array().map_or(0, Vec::len),
            r["version"],
            r["expires"].as_str().unwrap_or(""),
            if r["online"] == json!(true) { "" } else { "  (keys offline: sign with the root ceremony)" }
        ));
        for k in r["keys"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    {} {} {}\n",
                k["keyid"].as_str().unwrap_or(""),
                k["location"].as_str().unwrap_or(""),
                k["uri"].as_str().unwrap_or("")
            ));
        }
    }
    for (name, label) in [("added_keys", "added"), ("retired_keys", "retired")] {
        for k in v[name].as_array().into_iter().flatten() {
            out.push_str(&format!("{label} key {}\n", k.as_str().unwrap_or("")));
        }
    }
    out.trim_end().to_owned()
}

fn print(json_out: bool, v: &Value) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!("{}", print_keys(v));
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).with_context(|| format!("cannot write {}", path.display()))
}

fn hsm_defaults() -> updraft_hsm::Defaults {
    updraft_hsm::Defaults {
        module: std::env::var_os("UPDRAFT_PKCS11_MODULE").filter(|m| !m.is_empty()).map(PathBuf::from),
        pin: std::env::var("UPDRAFT_PKCS11_PIN").ok().filter(|p| !p.is_empty()),
    }
}

fn passphrase() -> Option<String> {
    std::env::var("UPDRAFT_KEY_PASSPHRASE").ok().filter(|p| !p.is_empty())
}

/// A signer for `--key`: a key file, or an HSM key by URI.
fn open_signer(key: &str) -> anyhow::Result<Box<dyn Signer>> {
    if key.starts_with("pkcs11:") {
        let s = updraft_hsm::Pkcs11Signer::open(key, &hsm_defaults()).map_err(|e| coded(FAILURE, format!("{e} ({})", e.code())))?;
        return Ok(Box::new(s));
    }
    let seed = updraft_store::keys::read_key(Path::new(key), passphrase().as_deref()).map_err(|e| coded(FAILURE, e.to_string()))?;
    Ok(Box::new(Ed25519Signer::from_seed(seed)))
}

pub async fn run(cmd: KeysCmd) -> anyhow::Result<i32> {
    match cmd {
        KeysCmd::List { app, conn } => {
            let v = Api::new(&conn)?.call(reqwest::Method::GET, &format!("/apps/{}/keys", seg(&app)), None).await?;
            print(conn.json, &v);
        }
        KeysCmd::Rotate(a) => {
            let public_keys = a.public_keys.iter().map(|p| read_public_key(p)).collect::<anyhow::Result<Vec<_>>>()?;
            let generate = a.generate.unwrap_or(if a.pkcs11.is_empty() && public_keys.is_empty() { 1 } else { 0 });
            let mut body = json!({ "role": a.role, "generate": generate, "pkcs11": a.pkcs11, "public_keys": public_keys });
            if let Some(t) = a.threshold {
                body["threshold"] = json!(t);
            }
            let v = Api::new(&a.conn)?.call(reqwest::Method::POST, &format!("/apps/{}/keys/rotate", seg(&a.app)), Some(&body)).await?;
            print(a.conn.json, &v);
        }
        KeysCmd::Generate { out, pkcs11, public_out } => {
            let (public, where_) = match (&out, &pkcs11) {
                (Some(out), None) => {
                    // Absolute, so the directory that gets synced after the write is named.
                    let out = &std::path::absolute(out).with_context(|| format!("bad path {}", out.display()))?;
                    let mut seed = [0u8; 32];
                    getrandom::getrandom(&mut seed)
                        .map_err(|e| coded(FAILURE, format!("the operating system's random source failed: {e}")))?;
                    let signer = Ed25519Signer::from_seed(seed);
                    let res = updraft_store::keys::write_key(out, &seed, passphrase().as_deref());
                    seed.fill(0);
                    res.map_err(|e| coded(FAILURE, e.to_string()))?;
                    (signer.public_key(), out.display().to_string())
                }
                (None, Some(uri)) => {
                    let s = updraft_hsm::Pkcs11Signer::generate(uri, &hsm_defaults())
                        .map_err(|e| coded(FAILURE, format!("{e} ({})", e.code())))?;
                    (s.public_key(), s.uri())
                }
                _ => return Err(coded(USAGE, "give --out FILE or --pkcs11 URI")),
            };
            let pub_path = public_out.or_else(|| out.as_ref().map(|o| PathBuf::from(format!("{}.pub", o.display()))));
            if let Some(p) = &pub_path {
                write_atomic(p, &serde_json::to_vec_pretty(&public)?)?;
            }
            println!("created key {} at {where_}", public.key_id());
            if let Some(p) = pub_path {
                println!("public key: {}", p.display());
            }
        }
        KeysCmd::Root(RootCmd::Export { app, keys, generate, thresholds, out, conn }) => {
            let mut by_role: std::collections::BTreeMap<String, Vec<Key>> = Default::default();
            for k in &keys {
                let (role, file) = role_eq(k, "--keys")?;
                by_role.entry(role).or_default().push(read_public_key(Path::new(&file))?);
            }
            let mut ts = serde_json::Map::new();
            for t in &thresholds {
                let (role, n) = role_eq(t, "--threshold")?;
                let n: u32 = n.parse().map_err(|_| coded(USAGE, format!("--threshold {t:?}: N must be a whole number")))?;
                ts.insert(role, json!(n));
            }
            let body = json!({ "keys": by_role, "generate": generate, "thresholds": ts });
            let v = Api::new(&conn)?.call(reqwest::Method::POST, &format!("/apps/{}/keys/root/export", seg(&app)), Some(&body)).await?;
            write_atomic(&out, &serde_json::to_vec_pretty(&v)?)?;
            println!(
                "wrote unsigned root version {} to {}; sign it with `updraft keys root sign {} --key KEY` for each root key, then `updraft keys root import {app} {}`",
                v["signed"]["version"],
                out.display(),
                out.display(),
                out.display()
            );
        }
        KeysCmd::Root(RootCmd::Sign { file, key }) => {
            let raw = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut doc: Value = serde_json::from_slice(&raw).map_err(|e| coded(VERIFY, format!("{} is not JSON: {e}", file.display())))?;
            if doc["signed"]["_type"] != json!("root") {
                return Err(coded(VERIFY, format!("{} is not a root metadata document", file.display())));
            }
            let signer = open_signer(&key)?;
            let keyid = tuf::add_signature(&mut doc, signer.as_ref()).map_err(|e| coded(VERIFY, format!("{e} ({})", e.code())))?;
            write_atomic(&file, &serde_json::to_vec_pretty(&doc)?)?;
            let listed = doc["signed"]["roles"]["root"]["keyids"].as_array().is_some_and(|ids| ids.iter().any(|i| i == keyid.as_str()));
            println!(
                "signed {} (root version {}) with key {keyid}; {} signature(s) now",
                file.display(),
                doc["signed"]["version"],
                doc["signatures"].as_array().map_or(0, Vec::len)
            );
            if !listed {
                println!("note: this key is not a root key of the new version (right if it is one of the previous root's keys)");
            }
        }
        KeysCmd::Root(RootCmd::Import { app, file, conn }) => {
            let raw = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let doc: Value = serde_json::from_slice(&raw).map_err(|e| coded(USAGE, format!("{} is not JSON: {e}", file.display())))?;
            let v = Api::new(&conn)?.call(reqwest::Method::POST, &format!("/apps/{}/keys/root/import", seg(&app)), Some(&doc)).await?;
            print(conn.json, &v);
        }
    }
    Ok(OK)
}
