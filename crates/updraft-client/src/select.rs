//! Choosing the update from verified targets metadata. Pure: the decision depends only on
//! signed metadata and this client's identity, never on what a server's API says.

use updraft_core::tuf::{TargetCustom, TargetFile, Targets};
use updraft_core::{rollout, AppId, Channel, Platform, Version};

/// What this client runs and follows.
#[derive(Debug, Clone)]
pub(crate) struct Want<'a> {
    pub app: &'a AppId,
    pub channel: &'a Channel,
    pub platform: &'a Platform,
    pub current: &'a Version,
    pub client_id: &'a str,
}

/// A target chosen for this client.
#[derive(Debug, Clone)]
pub(crate) struct Chosen<'a> {
    pub path: &'a str,
    pub file: &'a TargetFile,
    pub custom: TargetCustom,
}

/// The highest version offered to this client: same app, channel and platform, newer than
/// what it runs, not paused, and inside the rollout share for this client's bucket. A lower
/// version qualifies only as a downgrade: when its *signed* `custom.downgrade_from` names the
/// version this client runs (it was yanked); an upgrade, when there is one, still wins. Entries
/// whose `custom` is not Updraft's, or disagrees with the path, are skipped. With several
/// files for one version and platform, the first path in sorted order wins.
pub(crate) fn choose<'a>(targets: &'a Targets, want: &Want<'_>) -> Option<Chosen<'a>> {
    let mut best: Option<Chosen<'a>> = None;
    for (path, file) in &targets.targets {
        let custom = match TargetCustom::from_target(path, file) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(target_path = %path, error = %e, "skipping target");
                continue;
            }
        };
        if !is_sha256_hex(&file.hashes.sha256) {
            // It goes into a URL path; a signed but odd value must not reach it.
            tracing::debug!(target_path = %path, "skipping target with malformed sha256");
            continue;
        }
        let downgrade = custom.version < *want.current && custom.downgrade_from.iter().any(|v| v == want.current);
        if &custom.app != want.app
            || &custom.channel != want.channel
            || &custom.platform != want.platform
            || (custom.version <= *want.current && !downgrade)
            || custom.rollout.paused
        {
            continue;
        }
        let Some(share) = custom.rollout.percent() else { continue };
        if !rollout::admits(want.app, &custom.rollout.salt, want.client_id, share) {
            continue;
        }
        if best.as_ref().is_none_or(|b| custom.version > b.custom.version) {
            best = Some(Chosen { path, file, custom });
        }
    }
    best
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use updraft_core::tuf::RolloutCustom;

    fn entry(targets: &mut Targets, app: &str, channel: &str, version: &str, platform: &str, bp: u32, paused: bool) {
        let custom = TargetCustom {
            app: app.parse().unwrap(),
            channel: channel.parse().unwrap(),
            version: version.parse().unwrap(),
            platform: platform.parse().unwrap(),
            notes: None,
            pub_date: "2030-01-01T00:00:00Z".into(),
            rollout: RolloutCustom { basis_points: bp, salt: format!("salt-{version}"), paused },
            downgrade_from: vec![],
        };
        let path = format!("{version}/{platform}/app-{app}.bin");
        targets.targets.insert(path, TargetFile::new(1, "a".repeat(64), Some(custom.to_value())));
    }

    fn check(targets: &Targets, current: &str, expected: Option<&str>) {
        let (app, channel, platform) = ("demo".parse().unwrap(), "stable".parse().unwrap(), "linux-x86_64".parse().unwrap());
        let current = current.parse().unwrap();
        let want = Want { app: &app, channel: &channel, platform: &platform, current: &current, client_id: "client-1" };
        let got = choose(targets, &want).map(|c| c.custom.version.to_string());
        assert_eq!(got.as_deref(), expected);
    }

    #[test]
    fn picks_highest_admissible_version() {
        let mut t = Targets::new(1, datetime!(2040-01-01 0:00 UTC));
        entry(&mut t, "demo", "stable", "1.1.0", "linux-x86_64", 10_000, false);
        entry(&mut t, "demo", "stable", "1.2.0", "linux-x86_64", 10_000, false);
        entry(&mut t, "other", "stable", "9.0.0", "linux-x86_64", 10_000, false);
        entry(&mut t, "demo", "beta", "2.0.0-beta.1", "linux-x86_64", 10_000, false);
        entry(&mut t, "demo", "stable", "3.0.0", "darwin-aarch64", 10_000, false);
        entry(&mut t, "demo", "stable", "4.0.0", "linux-x86_64", 10_000, true);
        entry(&mut t, "demo", "stable", "5.0.0", "linux-x86_64", 0, false);
        check(&t, "1.0.0", Some("1.2.0"));
        check(&t, "1.2.0", None);
        check(&t, "1.1.5", Some("1.2.0"));
        // A custom that disagrees with its path is ignored.
        let mut bad = Targets::new(1, datetime!(2040-01-01 0:00 UTC));
        entry(&mut bad, "demo", "stable", "1.3.0", "linux-x86_64", 10_000, false);
        let (_, file) = bad.targets.pop_first().unwrap();
        bad.targets.insert("1.4.0/linux-x86_64/app.bin".into(), file);
        check(&bad, "1.0.0", None);
        // And so is a malformed hash.
        let mut odd = Targets::new(1, datetime!(2040-01-01 0:00 UTC));
        entry(&mut odd, "demo", "stable", "1.3.0", "linux-x86_64", 10_000, false);
        odd.targets.values_mut().for_each(|f| f.hashes.sha256 = "../../x".into());
        check(&odd, "1.0.0", None);
    }

    #[test]
    fn a_lower_version_only_when_signed_metadata_names_the_running_one() {
        let mut t = Targets::new(1, datetime!(2040-01-01 0:00 UTC));
        entry(&mut t, "demo", "stable", "1.0.0", "linux-x86_64", 10_000, false);
        check(&t, "2.0.0", None); // lower, and no downgrade offer: never
        let offer = |t: &mut Targets, from: &[&str]| {
            for f in t.targets.values_mut() {
                f.custom.as_mut().unwrap()["downgrade_from"] = serde_json::json!(from);
            }
        };
        offer(&mut t, &["2.0.0"]);
        check(&t, "2.0.0", Some("1.0.0"));
        check(&t, "2.0.0+build.7", Some("1.0.0")); // the same release
        check(&t, "2.1.0", None); // only clients on the yanked version
        check(&t, "0.9.0", Some("1.0.0")); // an ordinary upgrade for older clients
                                           // An upgrade beats a downgrade.
        entry(&mut t, "demo", "stable", "2.0.1", "linux-x86_64", 10_000, false);
        check(&t, "2.0.0", Some("2.0.1"));
    }

    #[test]
    fn partial_rollout_follows_the_shared_bucket_function() {
        let app: AppId = "demo".parse().unwrap();
        let bucket = rollout::bucket(&app, "salt-1.1.0", "client-1");
        let mut t = Targets::new(1, datetime!(2040-01-01 0:00 UTC));
        entry(&mut t, "demo", "stable", "1.1.0", "linux-x86_64", bucket + 1, false);
        check(&t, "1.0.0", Some("1.1.0"));
        let mut t = Targets::new(1, datetime!(2040-01-01 0:00 UTC));
        entry(&mut t, "demo", "stable", "1.1.0", "linux-x86_64", bucket, false);
        check(&t, "1.0.0", None);
    }
}
