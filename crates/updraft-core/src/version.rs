//! Release versions: SemVer 2.0, ordered by SemVer precedence. Build metadata (`+build.5`) is
//! kept but, as the spec says, ignored for ordering; two versions differing only in it are
//! equal, so a repository cannot hold both.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A SemVer 2.0 version.
#[derive(Debug, Clone, Serialize)]
#[serde(into = "String")]
pub struct Version(semver::Version);

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {value:?}: {reason}")]
pub struct InvalidVersion {
    pub value: String,
    pub reason: String,
}

impl Version {
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self(semver::Version::new(major, minor, patch))
    }
    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }
}

impl FromStr for Version {
    type Err = InvalidVersion;
    fn from_str(s: &str) -> Result<Self, InvalidVersion> {
        let err = |reason: String| InvalidVersion { value: s.chars().take(80).collect(), reason };
        if s.len() > 128 {
            return Err(err("must be at most 128 characters".into()));
        }
        // SemVer 2.0 has no leading 'v' and no surrounding whitespace; the semver crate agrees.
        semver::Version::parse(s).map(Self).map_err(|e| err(format!("not SemVer 2.0 ({e})")))
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<Version> for String {
    fn from(v: Version) -> String {
        v.to_string()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // semver::Version's Ord breaks ties on build metadata; SemVer precedence does not.
        self.0.cmp_precedence(&other.0)
    }
}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn precedence_follows_semver_spec() {
        // The example chain from semver.org §11.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
            "10.0.0",
        ];
        for w in chain.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1.0.0+build.1"), v("1.0.0+build.2"));
    }

    #[test]
    fn rejects_non_semver() {
        for bad in ["", "1", "1.0", "v1.0.0", " 1.0.0", "1.0.0-", "01.0.0", "1.0.0-01", "latest"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn ordering_is_total_and_consistent(
            a in (0u64..5, 0u64..5, 0u64..5, proptest::option::of("[a-z]{1,3}(\\.[1-9][0-9]?)?")),
            b in (0u64..5, 0u64..5, 0u64..5, proptest::option::of("[a-z]{1,3}(\\.[1-9][0-9]?)?")),
        ) {
            let mk = |(x, y, z, pre): (u64, u64, u64, Option<String>)| {
                let s = match pre { Some(p) => format!("{x}.{y}.{z}-{p}"), None => format!("{x}.{y}.{z}") };
                v(&s)
            };
            let (va, vb) = (mk(a.clone()), mk(b.clone()));
            prop_assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
            // The numeric core dominates; a pre-release sorts below its release.
            if (a.0, a.1, a.2) != (b.0, b.1, b.2) {
                prop_assert_eq!(va.cmp(&vb), (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
            } else if a.3.is_some() && b.3.is_none() {
                prop_assert!(va < vb);
            }
            // Display round-trips.
            prop_assert_eq!(v(&va.to_string()), va);
        }
    }
}
