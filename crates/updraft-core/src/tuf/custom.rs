//! Updraft's own target conventions: the typed `custom` object our client decides on, and
//! target paths `{version}/{platform}/{filename}`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{TargetFile, TufError};
use crate::ids::check_filename;
use crate::{AppId, Channel, Percent, Platform, Version};

/// What Updraft puts in a target's `custom`. Signed by the targets role, so a mirror can
/// neither widen nor narrow a rollout.
///
/// Canonical JSON has no floats, so the rollout share is carried as integer basis points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCustom {
    pub app: AppId,
    pub channel: Channel,
    pub version: Version,
    pub platform: Platform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// RFC 3339 publication time.
    pub pub_date: String,
    pub rollout: RolloutCustom,
    /// Yanked versions whose clients are offered this (lower) release as a downgrade. Our
    /// client takes a lower version only when the signed metadata lists its own version here,
    /// so nobody but the targets role can push a downgrade.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downgrade_from: Vec<Version>,
}

/// The rollout state of a release at the time targets was signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutCustom {
    /// Share of clients offered the release, 0..=10000.
    pub basis_points: u32,
    /// Per-release salt for [`crate::rollout::bucket`].
    pub salt: String,
    pub paused: bool,
}

impl RolloutCustom {
    /// The share, or `None` when `basis_points` is out of range (such a target is invalid).
    pub fn percent(&self) -> Option<Percent> {
        Percent::from_basis_points(self.basis_points).ok()
    }
}

impl TargetCustom {
    /// Parses a target's `custom` as Updraft's, checking that it agrees with the target path
    /// (so a signed entry cannot say one version in `custom` and ship another in the path).
    pub fn from_target(path: &str, file: &TargetFile) -> Result<Self, TufError> {
        let bad = |reason: String| TufError::InvalidTargetCustom { path: path.chars().take(200).collect(), reason };
        let value = file.custom.as_ref().ok_or_else(|| bad("no custom data".into()))?;
        let custom: TargetCustom = serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
        if custom.rollout.basis_points > crate::rollout::BUCKETS {
            return Err(bad(format!("rollout basis_points {} > 10000", custom.rollout.basis_points)));
        }
        let tp = TargetPath::parse(path)?;
        if tp.version != custom.version.to_string() || tp.platform != custom.platform {
            return Err(bad(format!("custom says {}/{} but path is {path}", custom.version, custom.platform)));
        }
        Ok(custom)
    }

    pub fn to_value(&self) -> serde_json::Value {
        // Cannot fail: only strings, integers and booleans.
        serde_json::to_value(self).expect("TargetCustom is always serialisable")
    }
}

/// A validated Updraft target path: `{version}/{platform}/{filename}`. Each part is checked
/// so the path is safe to put in a URL or under a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPath {
    /// The version exactly as written in the path (SemVer, including any build metadata).
    pub version: String,
    pub platform: Platform,
    pub filename: String,
}

impl TargetPath {
    pub fn new(version: &Version, platform: &Platform, filename: &str) -> Result<Self, TufError> {
        let path = format!("{version}/{platform}/{filename}");
        check_filename(filename).map_err(|e| TufError::InvalidTargetPath { path, reason: e.to_string() })?;
        Ok(TargetPath { version: version.to_string(), platform: platform.clone(), filename: filename.to_owned() })
    }

    pub fn parse(path: &str) -> Result<Self, TufError> {
        let bad = |reason: String| TufError::InvalidTargetPath { path: path.chars().take(200).collect(), reason };
        let mut parts = path.split('/');
        let (Some(v), Some(p), Some(f), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad("must be {version}/{platform}/{filename}".into()));
        };
        let version: Version = v.parse().map_err(|e: crate::version::InvalidVersion| bad(e.to_string()))?;
        let platform: Platform = p.parse().map_err(|e: crate::InvalidName| bad(e.to_string()))?;
        check_filename(f).map_err(|e| bad(e.to_string()))?;
        // Re-printing must give the same text: no second spelling of one target.
        if version.to_string() != v {
            return Err(bad("version is not in its normal form".into()));
        }
        Ok(TargetPath { version: v.to_owned(), platform, filename: f.to_owned() })
    }

    /// The file's name on the server under consistent snapshots:
    /// `{version}/{platform}/{sha256}.{filename}` (spec 5.7.3), relative to `/tuf/{app}/targets/`.
    pub fn consistent_name(&self, sha256_hex: &str) -> String {
        format!("{}/{}/{sha256_hex}.{}", self.version, self.platform, self.filename)
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.version, self.platform, self.filename)
    }
}

/// For any target path `dir/name`, its consistent-snapshot name `dir/{sha256}.name`
/// (spec 5.7.3: the hash prefixes the file name, not the directory).
pub fn consistent_target_name(target_path: &str, sha256_hex: &str) -> String {
    match target_path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{sha256_hex}.{name}"),
        None => format!("{sha256_hex}.{target_path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn custom() -> TargetCustom {
        TargetCustom {
            app: "demo".parse().unwrap(),
            channel: "stable".parse().unwrap(),
            version: "1.2.0".parse().unwrap(),
            platform: "linux-x86_64".parse().unwrap(),
            notes: Some("fixes".into()),
            pub_date: "2030-01-02T03:04:05Z".into(),
            rollout: RolloutCustom { basis_points: 2550, salt: "s1".into(), paused: false },
            downgrade_from: vec![],
        }
    }

    #[test]
    fn wire_shape() {
        assert_eq!(
            custom().to_value(),
            json!({
                "app": "demo", "channel": "stable", "version": "1.2.0", "platform": "linux-x86_64",
                "notes": "fixes", "pub_date": "2030-01-02T03:04:05Z",
                "rollout": {"basis_points": 2550, "salt": "s1", "paused": false}
            })
        );
    }

    #[test]
    fn custom_must_agree_with_path() {
        let file = TargetFile::new(3, "ab", Some(custom().to_value()));
        assert_eq!(TargetCustom::from_target("1.2.0/linux-x86_64/app.tar.gz", &file).unwrap(), custom());
        for bad in ["1.3.0/linux-x86_64/app.tar.gz", "1.2.0/darwin-aarch64/app", "app", "1.2.0/linux-x86_64/../x"] {
            assert!(TargetCustom::from_target(bad, &file).is_err(), "{bad}");
        }
        let mut c = custom().to_value();
        c["rollout"]["basis_points"] = json!(10001);
        assert!(TargetCustom::from_target("1.2.0/linux-x86_64/a", &TargetFile::new(3, "ab", Some(c))).is_err());
        assert!(TargetCustom::from_target("1.2.0/linux-x86_64/a", &TargetFile::new(3, "ab", None)).is_err());
    }

    #[test]
    fn target_paths() {
        let tp = TargetPath::parse("1.2.0-rc.1/linux-x86_64-appimage/App.AppImage").unwrap();
        assert_eq!(tp.to_string(), "1.2.0-rc.1/linux-x86_64-appimage/App.AppImage");
        assert_eq!(tp.consistent_name("abcd"), "1.2.0-rc.1/linux-x86_64-appimage/abcd.App.AppImage");
        assert_eq!(consistent_target_name("a/b/c.bin", "ff"), "a/b/ff.c.bin");
        assert_eq!(consistent_target_name("c.bin", "ff"), "ff.c.bin");
        for bad in [
            "",
            "1.2.0/linux-x86_64",
            "1.2.0/linux-x86_64/a/b",
            "v1.2.0/linux-x86_64/a",
            "1.2.0/linux/a",
            "1.2.0/linux-x86_64/.a",
            "1.2.0/linux-x86_64/",
        ] {
            assert!(TargetPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
