//! Compatible feeds, tested with each ecosystem's real client against a live server: Tauri's
//! updater core (`cargo-packager-updater`), electron-updater (npm, driven from Node without
//! Electron), Velopack's `UpdateManager`, and the Sparkle appcast through a real XML parser
//! with every `edSignature` checked. One client id gets the same answer from every feed and
//! from `/v1/update`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use ed25519_dalek::Verifier;

use crate::harness::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// This machine's Tauri/Updraft architecture name (what the real clients send).
fn arch() -> &'static str {
    std::env::consts::ARCH
}

pub(crate) fn linux() -> String {
    format!("linux-{}", arch())
}

/// Publishes one release with several artifacts (PLATFORM, FILENAME, BYTES) and extra flags.
pub(crate) fn publish_files(
    server: &Server,
    dir: &Path,
    version: &str,
    files: &[(&str, &str, &[u8])],
    extra: &[&str],
) -> serde_json::Value {
    let mut args: Vec<String> = ["release", "publish", "demo", version, "--channel", "stable", "--json"].map(String::from).to_vec();
    for (platform, name, data) in files {
        let sub = dir.join(format!("{version}-{platform}"));
        std::fs::create_dir_all(&sub).unwrap();
        let path = sub.join(name);
        std::fs::write(&path, data).unwrap();
        args.push("--artifact".into());
        args.push(format!("{platform}={}", path.display()));
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    server.cli(&refs).ok().json()
}

fn get(http: &reqwest::blocking::Client, url: &str) -> reqwest::blocking::Response {
    http.get(url).send().unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

#[test]
fn tauri_updater_checks_downloads_and_verifies_minisign() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let old = bytes(1000, 1);
    let new = bytes(700_000, 2);
    publish_files(&server, dir.path(), "1.0.0", &[(&linux(), "demo.AppImage.tar.gz", &old)], &[]);
    publish_files(&server, dir.path(), "1.1.0", &[(&linux(), "demo.AppImage.tar.gz", &new)], &["--notes", "Faster"]);

    // The public key as Tauri's config takes it: base64 of the minisign public key file.
    let http = http();
    let pubkey = get(&http, &server.url("/compat/tauri/demo/minisign.pub")).text().unwrap();
    let key_file = String::from_utf8(B64.decode(pubkey.trim()).unwrap()).unwrap();
    assert!(key_file.starts_with("untrusted comment: minisign public key "), "{key_file}");

    let updater = |current: &str, endpoint: &str| {
        let config = cargo_packager_updater::Config {
            endpoints: vec![url::Url::parse(&server.url(endpoint)).unwrap()],
            pubkey: pubkey.trim().to_owned(),
            windows: None,
        };
        cargo_packager_updater::UpdaterBuilder::new(current.parse().unwrap(), config)
            .executable_path(dir.path().join("demo.AppImage"))
            .build()
            .unwrap()
    };
    let dynamic = "/compat/tauri/demo/stable/{{target}}/{{arch}}/{{current_version}}";
    let update = updater("1.0.0", dynamic).check().expect("check").expect("an update for 1.0.0");
    assert_eq!(update.version, "1.1.0");
    assert_eq!(update.body.as_deref(), Some("Faster"));
    let downloaded = update.download().expect("download and minisign verification");
    assert_eq!(downloaded, new);
    // The trusted comment names the version.
    let sig = String::from_utf8(B64.decode(&update.signature).unwrap()).unwrap();
    assert!(sig.contains("trusted comment: ") && sig.contains("version:1.1.0"), "{sig}");

    // Up to date: the endpoint answers 204 and the client reports no update.
    assert!(updater("1.1.0", dynamic).check().expect("check").is_none());
    let r = get(&http, &server.url(&format!("/compat/tauri/demo/stable/linux/{}/1.1.0", arch())));
    assert_eq!(r.status(), 204);

    // The static latest.json works with the same client (platforms map, `format` field).
    let from_static = updater("1.0.0", "/compat/tauri/demo/stable/latest.json").check().expect("check").expect("update");
    assert_eq!(from_static.version, "1.1.0");
    assert_eq!(from_static.download().expect("verified"), new);
    let doc: serde_json::Value = get(&http, &server.url("/compat/tauri/demo/stable/latest.json")).json().unwrap();
    assert!(doc["platforms"][format!("linux-{}", arch())]["signature"].is_string(), "{doc}");
    assert_eq!(doc["platforms"][format!("linux-{}", arch())]["format"], "appimage");

    // A tampered artifact (same length, one byte changed in storage) is rejected.
    crate::backend::Storage::of(&data).corrupt_blob(&sha256_hex(&new), 1234);
    let err = update.download().expect_err("a tampered artifact must fail minisign verification");
    assert!(err.to_string().to_lowercase().contains("signature"), "{err}");
}

#[test]
fn velopack_update_manager_checks_and_downloads() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let full = bytes(300_000, 3);
    publish_files(&server, dir.path(), "1.1.0", &[(&linux(), "demo-1.1.0-full.nupkg", &full)], &["--notes", "Velopack notes"]);
    // 0 %: listed for nobody, so the client sees 1.1.0 as the newest.
    publish_files(&server, dir.path(), "1.2.0", &[(&linux(), "demo-1.2.0-full.nupkg", &bytes(5000, 4))], &["--rollout", "0"]);

    // An "installed" Velopack app: a manifest, a packages directory and its staging id.
    let root = dir.path().join("installed");
    let current = root.join("current");
    let packages = root.join("packages");
    std::fs::create_dir_all(&current).unwrap();
    std::fs::create_dir_all(&packages).unwrap();
    std::fs::write(root.join("Update"), b"").unwrap();
    std::fs::write(
        current.join("sq.version"),
        "<?xml version=\"1.0\"?><package><metadata><id>demo</id><version>1.0.0</version><title>Demo</title>\
         <channel>linux</channel><mainExe>demo</mainExe></metadata></package>",
    )
    .unwrap();
    std::fs::write(packages.join(".betaId"), "5d1a8a3e-7d55-4c59-9a5e-6d1c2b3a4f50").unwrap();
    let locator = velopack::locator::VelopackLocatorConfig {
        RootAppDir: root.clone(),
        UpdateExePath: root.join("Update"),
        PackagesDir: packages.clone(),
        ManifestPath: current.join("sq.version"),
        CurrentBinaryDir: current.clone(),
        IsPortable: false,
    };
    let source = velopack::sources::HttpSource::new(server.url("/compat/velopack/demo"));
    let um = velopack::UpdateManager::new(source, None, Some(locator)).expect("update manager");
    let info = match um.check_for_updates().expect("check") {
        velopack::UpdateCheck::UpdateAvailable(info) => info,
        _ => panic!("1.1.0 should be offered to 1.0.0"),
    };
    assert_eq!(info.TargetFullRelease.Version, "1.1.0");
    assert_eq!(info.TargetFullRelease.NotesMarkdown, "Velopack notes");
    assert_eq!(info.TargetFullRelease.SHA256.to_lowercase(), sha256_hex(&full));
    um.download_updates(&info, None).expect("download (size and SHA-1 verified by Velopack)");
    assert_eq!(std::fs::read(packages.join("demo-1.1.0-full.nupkg")).unwrap(), full);

    // The feed itself: Assets with the documented fields, and the SHA-256 Velopack records.
    let http = http();
    let feed: serde_json::Value =
        get(&http, &server.url("/compat/velopack/demo/releases.linux.json?localVersion=1.0.0&id=demo&stagingId=x")).json().unwrap();
    let asset = &feed["Assets"][0];
    for field in ["PackageId", "Version", "Type", "FileName", "SHA1", "SHA256", "Size", "NotesMarkdown"] {
        assert!(!asset[field].is_null(), "{field} missing: {feed}");
    }
    assert_eq!(asset["Type"], "Full");
    assert_eq!(feed["Assets"].as_array().unwrap().len(), 1, "the 0% release is listed for nobody: {feed}");
}

#[test]
fn sparkle_appcast_is_namespaced_xml_and_every_signature_verifies() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let a = bytes(200_000, 5);
    let b = bytes(123_457, 6);
    publish_files(&server, dir.path(), "1.0.0", &[("darwin-universal", "Demo-1.0.0.zip", &a)], &[]);
    publish_files(
        &server,
        dir.path(),
        "1.1.0",
        &[("darwin-universal", "Demo-1.1.0.zip", &b)],
        &["--min-system-version", "11.0", "--critical", "--notes", "Fixes <b>&</b> more", "--rollout", "50"],
    );
    let http = http();
    let key = B64.decode(get(&http, &server.url("/compat/sparkle/demo/ed25519.pub")).text().unwrap().trim()).unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key.try_into().unwrap()).unwrap();
    // Without a client id only the fully rolled-out 1.0.0 is listed; a client admitted to the
    // 50 % rollout sees both (a feed stops at its newest full release, so two items need one
    // partial release above it).
    let only_full = get(&http, &server.url("/compat/sparkle/demo/stable/appcast.xml")).text().unwrap();
    assert_eq!(only_full.matches("<item>").count(), 1, "{only_full}");
    let xml = (0..64)
        .map(|i| {
            http.get(server.url("/compat/sparkle/demo/stable/appcast.xml")).header("x-updraft-client", format!("c{i}")).send().unwrap()
        })
        .map(|r| {
            assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/rss+xml"));
            r.text().unwrap()
        })
        .find(|x| x.matches("<item>").count() == 2)
        .expect("about half of 64 clients are admitted to a 50 % rollout");

    // Walk it with a namespace-aware parser: items, their Sparkle elements and enclosures.
    const NS: &str = "http://www.andymatuschak.org/xml-namespaces/sparkle";
    #[derive(Default, Debug)]
    struct Item {
        version: String,
        short: String,
        min_os: Option<String>,
        critical: bool,
        pub_date: String,
        url: String,
        length: u64,
        signature: String,
    }
    let mut items: Vec<Item> = Vec::new();
    let mut path: Vec<(Option<String>, String)> = Vec::new();
    for event in xml::reader::EventReader::from_str(&xml) {
        match event.expect("well-formed XML") {
            xml::reader::XmlEvent::StartElement { name, attributes, .. } => {
                if name.local_name == "item" {
                    items.push(Item::default());
                }
                if name.namespace.as_deref() == Some(NS) && name.local_name == "criticalUpdate" {
                    items.last_mut().unwrap().critical = true;
                }
                if name.local_name == "enclosure" {
                    let item = items.last_mut().unwrap();
                    for attr in attributes {
                        match (attr.name.namespace.as_deref(), attr.name.local_name.as_str()) {
                            (None, "url") => item.url = attr.value,
                            (None, "length") => item.length = attr.value.parse().unwrap(),
                            (Some(NS), "edSignature") => item.signature = attr.value,
                            _ => {}
                        }
                    }
                }
                path.push((name.namespace, name.local_name));
            }
            xml::reader::XmlEvent::Characters(text) => {
                let Some(item) = items.last_mut() else { continue };
                match path.last().map(|(ns, n)| (ns.as_deref(), n.as_str())) {
                    Some((Some(NS), "version")) => item.version = text,
                    Some((Some(NS), "shortVersionString")) => item.short = text,
                    Some((Some(NS), "minimumSystemVersion")) => item.min_os = Some(text),
                    Some((_, "pubDate")) => item.pub_date = text,
                    _ => {}
                }
            }
            xml::reader::XmlEvent::EndElement { .. } => {
                path.pop();
            }
            _ => {}
        }
    }
    assert_eq!(items.len(), 2, "{xml}");
    assert_eq!((items[0].version.as_str(), items[0].short.as_str()), ("1.1.0", "1.1.0"));
    assert_eq!(items[0].min_os.as_deref(), Some("11.0"));
    assert!(items[0].critical && !items[1].critical);
    assert_eq!(items[1].version, "1.0.0");
    for item in &items {
        time::OffsetDateTime::parse(&item.pub_date, &time::format_description::well_known::Rfc2822).expect("RFC 2822 pubDate");
        let body = get(&http, &item.url).bytes().unwrap();
        assert_eq!(body.len() as u64, item.length);
        let sig = ed25519_dalek::Signature::from_slice(&B64.decode(&item.signature).unwrap()).unwrap();
        key.verify(&body, &sig).unwrap_or_else(|_| panic!("edSignature of {} does not verify", item.version));
        let mut tampered = body.to_vec();
        tampered[0] ^= 1;
        assert!(key.verify(&tampered, &sig).is_err());
    }
}

/// Installs the committed electron-updater (package-lock.json) and driver into a cache directory
/// once. The directory is named by the hash of every file copied in, so a changed driver gets a
/// new one, and it is built aside and renamed into place: tests running in parallel processes
/// never see (or run node on) a half-installed or half-copied directory.
fn electron_updater_dir() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/electron");
    let files = ["package.json", "package-lock.json", "check.js"];
    let mut all = Vec::new();
    for f in files {
        all.extend(std::fs::read(src.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")));
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cache = tmp.join(format!("electron-compat-{}", &sha256_hex(&all)[..12]));
    if cache.join("node_modules/electron-updater").is_dir() {
        return cache;
    }
    let staging = tempfile::tempdir_in(tmp).expect("staging dir");
    for f in files {
        std::fs::copy(src.join(f), staging.path().join(f)).unwrap();
    }
    let out = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(staging.path())
        .env("ELECTRON_SKIP_BINARY_DOWNLOAD", "1")
        .output()
        .expect("npm (Node.js) is needed for the electron-updater test");
    assert!(out.status.success(), "npm ci failed: {}", String::from_utf8_lossy(&out.stderr));
    // Another process may have won the race; its directory is as good as ours.
    let staged = staging.keep();
    if std::fs::rename(&staged, &cache).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    assert!(cache.join("node_modules/electron-updater").is_dir(), "electron-updater not installed in {}", cache.display());
    cache
}

fn electron_check(dir: &Path, feed: &str, current: &str, staging_id: &str, work: &str) -> serde_json::Value {
    electron_run(dir, feed, current, staging_id, work, None)
}

fn electron_run(dir: &Path, feed: &str, current: &str, staging_id: &str, work: &str, old_installer: Option<&Path>) -> serde_json::Value {
    let work = dir.join(work);
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new("node")
        .arg("check.js")
        .args([feed, current, staging_id])
        .arg(&work)
        .args(old_installer)
        .current_dir(electron_updater_dir())
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn electron_updater_finds_downloads_and_verifies_sha512_and_honours_the_rollout() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let app_image = bytes(400_000, 7);
    let blockmap = bytes(321, 8);
    let blockmap_path = dir.path().join("Demo-1.1.0.AppImage.blockmap");
    std::fs::write(&blockmap_path, &blockmap).unwrap();
    let file_flag = format!("{}={}", linux(), blockmap_path.display());
    let rel = publish_files(
        &server,
        dir.path(),
        "1.1.0",
        &[(&linux(), "Demo-1.1.0.AppImage", &app_image)],
        &["--rollout", "0", "--file", &file_flag, "--notes", "electron notes"],
    );
    assert_eq!(rel["files"][0]["filename"], "Demo-1.1.0.AppImage.blockmap");
    let feed = server.url("/compat/electron/demo/stable/");
    let id = "6c8f1f0e-3b1a-4e51-8f4a-2a9d3c1b7e11";

    // 0 %: electron-updater is told the release is not for it.
    let at0 = electron_check(dir.path(), &feed, "1.0.0", id, "w0");
    assert_eq!(at0["available"], false, "{at0}");
    assert!(at0["error"].is_null(), "{at0}");

    // 100 %: found, downloaded, sha512-verified by electron-updater.
    server.cli(&["rollout", "set", "demo", "1.1.0", "--percent", "100"]).ok();
    let at100 = electron_check(dir.path(), &feed, "1.0.0", id, "w100");
    assert_eq!(at100["available"], true, "{at100}");
    assert_eq!(at100["version"], "1.1.0");
    assert!(at100["error"].is_null(), "{at100}");
    assert_eq!(std::fs::read(at100["file"].as_str().unwrap()).unwrap(), app_image);

    // The channel file has what the issue lists; the blockmap is served next to the artifact,
    // with single and multiple ranges (differential downloads).
    let http = http();
    let yml = get(&http, &server.url(&format!("/compat/electron/demo/stable/latest-linux{}.yml", electron_suffix()))).text().unwrap();
    for key in [
        "version: ",
        "files:",
        "  - url: ",
        "    sha512: ",
        "    size: ",
        "path: ",
        "sha512: ",
        "releaseDate: ",
        "releaseNotes: ",
        "stagingPercentage: ",
    ] {
        assert!(yml.contains(key), "{key:?} missing from {yml}");
    }
    let url = yml.lines().find_map(|l| l.strip_prefix("path: ")).unwrap().trim_matches('"').to_owned();
    let bm = get(&http, &format!("{url}.blockmap"));
    assert_eq!(bm.status(), 200);
    assert_eq!(bm.bytes().unwrap().as_ref(), blockmap.as_slice());
    let part = http.get(&url).header("range", "bytes=10-19").send().unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap().as_ref(), &app_image[10..20]);
    let multi = http.get(&url).header("range", "bytes=0-3, 100-103").send().unwrap();
    assert_eq!(multi.status(), 206);
    assert!(multi.headers()["content-type"].to_str().unwrap().starts_with("multipart/byteranges"));
    let body = multi.bytes().unwrap();
    assert!(body.windows(4).any(|w| w == &app_image[100..104]));
}

#[test]
fn electron_updater_downloads_differentially_with_blockmaps_and_multi_range_requests() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    // Two installers that share most of their blocks.
    let old = bytes(400_000, 31);
    let mut new = old.clone();
    for b in &mut new[100_000..140_000] {
        *b ^= 0x33;
    }
    for b in &mut new[300_000..310_000] {
        *b ^= 0x44;
    }
    for (version, body) in [("1.0.0", &old), ("1.1.0", &new)] {
        let name = format!("Demo-Setup-{version}.exe");
        let sub = dir.path().join(version);
        std::fs::create_dir_all(&sub).unwrap();
        let exe = sub.join(&name);
        std::fs::write(&exe, body).unwrap();
        let map = sub.join(format!("{name}.blockmap"));
        let made = Command::new("node").arg("check.js").arg("--blockmap").arg(&exe).arg(&map).current_dir(electron_updater_dir()).status();
        assert!(made.unwrap().success());
        let (a, f) = (format!("windows-x86_64={}", exe.display()), format!("windows-x86_64={}", map.display()));
        server.cli(&["release", "publish", "demo", version, "--channel", "stable", "--artifact", &a, "--file", &f]).ok();
    }
    let old_installer = dir.path().join("1.0.0/Demo-Setup-1.0.0.exe");
    let feed = server.url("/compat/electron/demo/stable/");
    let got = electron_run(dir.path(), &feed, "1.0.0", "0b6d2f4e-1c3a-4d5e-8f70-9a1b2c3d4e5f", "diff", Some(&old_installer));
    assert_eq!(got["available"], true, "{got}");
    assert!(got["error"].is_null(), "{got}");
    assert_eq!(std::fs::read(got["file"].as_str().unwrap()).unwrap(), new, "the rebuilt installer is the new one");
    // Only the changed blocks were fetched, several ranges per request.
    let ranges: Vec<&str> = got["ranges"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(ranges.iter().any(|r| r.starts_with("bytes=") && r.contains(',')), "no multi-range request: {got}");
    assert_eq!(got["fullDownloads"], 0, "electron-updater fell back to a full download: {got}");
}

/// electron-updater's Linux channel-file suffix for this machine's architecture.
fn electron_suffix() -> &'static str {
    match arch() {
        "x86_64" => "",
        "aarch64" => "-arm64",
        _ => "-unsupported",
    }
}

/// What each feed offers one client (installed 1.0.0), as a version or `None`.
pub(crate) struct Answers {
    pub v1: Option<String>,
    pub tauri: Option<String>,
    pub electron: Option<String>,
    pub velopack: Option<String>,
    pub sparkle: Option<String>,
}

pub(crate) fn answers(server: &Server, http: &reqwest::blocking::Client, id: &str) -> Answers {
    let version_of = |r: reqwest::blocking::Response| -> Option<String> {
        match r.status().as_u16() {
            200 => Some(r.json::<serde_json::Value>().unwrap()["version"].as_str().unwrap().to_owned()),
            204 => None,
            s => panic!("status {s}"),
        }
    };
    let newer = |v: &str| (semver::Version::parse(v).unwrap() > semver::Version::new(1, 0, 0)).then(|| v.to_owned());
    let v1 = version_of(get(http, &server.url(&format!("/v1/update/demo/stable/{}?current=1.0.0&client={id}", linux()))));
    let tauri = version_of(
        http.get(server.url(&format!("/compat/tauri/demo/stable/linux/{}/1.0.0", arch()))).header("x-updraft-client", id).send().unwrap(),
    );
    let yml = http
        .get(server.url(&format!("/compat/electron/demo/stable/latest-linux{}.yml", electron_suffix())))
        .header("x-user-staging-id", id)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let field = |k: &str| yml.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().trim_matches('"').to_owned();
    let electron = (field("stagingPercentage: ") == "100").then(|| field("version: ")).and_then(|v| newer(&v));
    let feed: serde_json::Value =
        get(http, &server.url(&format!("/compat/velopack/demo/releases.linux.json?localVersion=1.0.0&id=demo&stagingId={id}")))
            .json()
            .unwrap();
    let velopack = feed["Assets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["Type"] == "Full")
        .map(|a| semver::Version::parse(a["Version"].as_str().unwrap()).unwrap())
        .max()
        .and_then(|v| newer(&v.to_string()));
    let xml = get(http, &server.url(&format!("/compat/sparkle/demo/stable/appcast.xml?client={id}"))).text().unwrap();
    let sparkle = xml.split("<sparkle:version>").nth(1).map(|s| s.split('<').next().unwrap().to_owned()).and_then(|v| newer(&v));
    Answers { v1, tauri, electron, velopack, sparkle }
}

#[test]
fn one_client_id_gets_the_same_answer_from_every_feed() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let files = |seed: u64| {
        [(linux(), "demo.AppImage".to_owned(), bytes(3000, seed)), ("darwin-universal".into(), "Demo.zip".into(), bytes(3000, seed + 1))]
    };
    for (version, seed, rollout) in [("1.0.0", 10, "100"), ("1.1.0", 20, "100"), ("1.2.0", 30, "37")] {
        let f = files(seed);
        let refs: Vec<(&str, &str, &[u8])> = f.iter().map(|(p, n, b)| (p.as_str(), n.as_str(), b.as_slice())).collect();
        publish_files(&server, dir.path(), version, &refs, &["--rollout", rollout]);
    }
    let http = http();
    let ids: Vec<String> = (0..300u32).map(|i| format!("{:08x}-0000-4000-8000-{:012x}", i.wrapping_mul(2_654_435_761), i)).collect();
    let mut newest = 0;
    for id in &ids {
        let a = answers(&server, &http, id);
        assert!(a.v1.is_some(), "1.1.0 is at 100 %: every client is offered at least that");
        assert_eq!(a.tauri, a.v1, "tauri vs /v1/update for {id}");
        assert_eq!(a.electron, a.v1, "electron vs /v1/update for {id}");
        assert_eq!(a.velopack, a.v1, "velopack vs /v1/update for {id}");
        assert_eq!(a.sparkle, a.v1, "sparkle vs /v1/update for {id}");
        newest += usize::from(a.v1.as_deref() == Some("1.2.0"));
    }
    assert!((70..=155).contains(&newest), "37 % of 300 should be about 111, got {newest}");

    // A yank reaches every feed: 1.2.0 is gone everywhere, 1.1.0 is the answer for everyone.
    server.cli(&["release", "yank", "demo", "1.2.0"]).ok();
    for id in ids.iter().take(40) {
        let a = answers(&server, &http, id);
        for (name, got) in [("v1", a.v1), ("tauri", a.tauri), ("electron", a.electron), ("velopack", a.velopack), ("sparkle", a.sparkle)] {
            assert_eq!(got.as_deref(), Some("1.1.0"), "{name} for {id} after the yank");
        }
    }
}

#[test]
fn bad_compat_requests_get_stable_codes() {
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    publish_files(&server, dir.path(), "1.0.0", &[(&linux(), "demo.AppImage", &bytes(100, 1))], &[]);
    let http = http();
    let arch = arch();
    for (path, status, code) in [
        (format!("/compat/tauri/demo/stable/linux/{arch}/not-a-version"), 400, "invalid_version"),
        (format!("/compat/tauri/demo/stable/plan9/{arch}/1.0.0"), 400, "invalid_target"),
        ("/compat/tauri/demo/stable/linux/mips/1.0.0".into(), 400, "invalid_arch"),
        (format!("/compat/tauri/demo/stable/linux/{arch}/1.0.0?bundle_type=zip"), 400, "invalid_bundle_type"),
        (format!("/compat/tauri/demo/stable/linux/{arch}/1.0.0?client=bad%20id"), 400, "invalid_client_id"),
        (format!("/compat/tauri/nope/stable/linux/{arch}/1.0.0"), 404, "app_not_found"),
        ("/compat/tauri/demo/beta/latest.json".into(), 404, "channel_not_found"),
        ("/compat/electron/demo/stable/latest.json".into(), 404, "file_not_found"),
        ("/compat/velopack/demo/nothing.nupkg".into(), 404, "file_not_found"),
        ("/compat/sparkle/demo/stable/appcast.xml?platform=plan9".into(), 400, "invalid_platform"),
        ("/compat/files/demo/1.0.0/linux-x86_64/other.bin".into(), 404, "file_not_found"),
    ] {
        let r = get(&http, &server.url(&path));
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
    // Extra files must belong to an artifact's platform; min_system_version must be numbers.
    let extra = dir.path().join("x.blockmap");
    std::fs::write(&extra, b"x").unwrap();
    let art = dir.path().join("a.bin");
    std::fs::write(&art, b"a").unwrap();
    let artifact = format!("{}={}", linux(), art.display());
    let stray = format!("windows-x86_64={}", extra.display());
    let out = server.cli(&["release", "publish", "demo", "2.0.0", "--channel", "stable", "--artifact", &artifact, "--file", &stray]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("file_without_artifact"), "{out:?}");
    let out = server.cli(&[
        "release",
        "publish",
        "demo",
        "2.0.0",
        "--channel",
        "stable",
        "--artifact",
        &artifact,
        "--min-system-version",
        "eleven",
    ]);
    assert!(out.stderr.contains("invalid_min_system_version"), "{out:?}");
}

/// A developer's own minisign key, as `tauri signer generate` makes: (public key file, signer).
fn developer_minisign(seed: u8) -> (String, impl Fn(&[u8], &str) -> String) {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let id = [seed, 1, 2, 3, 4, 5, 6, 7];
    let mut pk = b"Ed".to_vec();
    pk.extend_from_slice(&id);
    pk.extend_from_slice(key.verifying_key().as_bytes());
    let public = format!("untrusted comment: minisign public key\n{}\n", B64.encode(pk));
    let sign = move |data: &[u8], comment: &str| {
        use blake2::Digest;
        let sig = key.sign(&blake2::Blake2b512::digest(data)).to_bytes();
        let mut bin = b"ED".to_vec();
        bin.extend_from_slice(&id);
        bin.extend_from_slice(&sig);
        let global = key.sign(&[&sig[..], comment.as_bytes()].concat()).to_bytes();
        let file = format!("untrusted comment: signature\n{}\ntrusted comment: {comment}\n{}\n", B64.encode(bin), B64.encode(global));
        B64.encode(file) // what Tauri's bundler writes to X.sig
    };
    (public, sign)
}

#[test]
fn apps_that_keep_their_own_keys_get_their_own_signatures_served() {
    use ed25519_dalek::Signer;
    let (dir, data) = scratch();
    let server = Server::start(&data);
    server.cli(&["app", "create", "demo"]).ok();
    let (public, sign) = developer_minisign(9);
    let sparkle_key = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let app_image = bytes(50_000, 21);
    let zip = bytes(40_000, 22);
    let write = |name: &str, body: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let sig = write("demo.AppImage.sig", sign(&app_image, "timestamp:1\tfile:demo.AppImage").as_bytes());
    let edsig = write(
        "Demo.zip.edsig",
        format!("sparkle:edSignature=\"{}\" length=\"{}\"\n", B64.encode(sparkle_key.sign(&zip).to_bytes()), zip.len()).as_bytes(),
    );
    let flags = [format!("{}={sig}", linux()), format!("darwin-universal={edsig}")];
    publish_files(
        &server,
        dir.path(),
        "1.1.0",
        &[(&linux(), "demo.AppImage", &app_image), ("darwin-universal", "Demo.zip", &zip)],
        &["--file", &flags[0], "--file", &flags[1]],
    );

    // The unchanged Tauri app trusts its developer's key, and Updraft serves that signature.
    let config = cargo_packager_updater::Config {
        endpoints: vec![url::Url::parse(&server.url("/compat/tauri/demo/stable/{{target}}/{{arch}}/{{current_version}}")).unwrap()],
        pubkey: B64.encode(&public),
        windows: None,
    };
    let updater = cargo_packager_updater::UpdaterBuilder::new("1.0.0".parse().unwrap(), config)
        .executable_path(dir.path().join("demo.AppImage"))
        .build()
        .unwrap();
    let update = updater.check().expect("check").expect("update");
    assert_eq!(update.download().expect("verified with the developer's key"), app_image);

    // The unchanged Sparkle app's SUPublicEDKey verifies the appcast's edSignature.
    let xml = get(&http(), &server.url("/compat/sparkle/demo/stable/appcast.xml")).text().unwrap();
    let served = xml.split("sparkle:edSignature=\"").nth(1).unwrap().split('"').next().unwrap();
    let served = ed25519_dalek::Signature::from_slice(&B64.decode(served).unwrap()).unwrap();
    sparkle_key.verifying_key().verify(&zip, &served).expect("the developer's Sparkle key verifies the archive");

    // Something that is not a signature file is refused, and nothing is published.
    let junk = write("other.AppImage.sig", b"not a signature");
    let art = write("other.AppImage", b"x");
    let (a, f) = (format!("{}={art}", linux()), format!("{}={junk}", linux()));
    let out = server.cli(&["release", "publish", "demo", "2.0.0", "--channel", "stable", "--artifact", &a, "--file", &f]);
    assert!(out.stderr.contains("invalid_signature_file"), "{out:?}");
    assert_eq!(server.cli(&["release", "list", "demo", "--json"]).ok().json()["releases"].as_array().unwrap().len(), 1);
}
