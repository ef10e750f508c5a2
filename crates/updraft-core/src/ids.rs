//! Validated names that come from outside: app ids, channels and platforms. Each is checked once
//! at the edge and then carried as a newtype, so a raw string never reaches a path, URL or query.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an outside name was refused. `kind` is the kind of name ("app id", "channel", ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
#[non_exhaustive]
pub struct InvalidName {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// A slug: `[a-z0-9][a-z0-9-]{0,62}`.
fn check_slug(kind: &'static str, s: &str) -> Result<(), InvalidName> {
    let err = |reason| InvalidName { kind, value: s.chars().take(80).collect(), reason };
    if s.is_empty() {
        return Err(err("must not be empty"));
    }
    if s.len() > 63 {
        return Err(err("must be at most 63 characters"));
    }
    let bytes = s.as_bytes();
    if !(bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit()) {
        return Err(err("must start with a lowercase letter or digit"));
    }
    if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-') {
        return Err(err("may contain only lowercase letters, digits and '-'"));
    }
    Ok(())
}

macro_rules! slug_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, InvalidName> {
                check_slug($kind, s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

slug_type!(
    /// An app's id; each app is its own tenant and TUF repository.
    AppId,
    "app id"
);
slug_type!(
    /// A release stream a client follows: `stable`, `beta`, `nightly` or custom.
    Channel,
    "channel"
);

/// Operating systems a platform may name.
pub const KNOWN_OS: &[&str] = &["linux", "windows", "darwin", "android", "ios", "freebsd"];
/// CPU architectures a platform may name.
pub const KNOWN_ARCH: &[&str] = &["x86_64", "aarch64", "i686", "armv7", "arm64", "riscv64", "universal"];

/// `{os}-{arch}` with an optional `-{flavor}`, e.g. `linux-x86_64-appimage`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Platform(String);

impl Platform {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn os(&self) -> &str {
        self.0.split('-').next().unwrap_or_default()
    }
    pub fn arch(&self) -> &str {
        self.0.split('-').nth(1).unwrap_or_default()
    }
    pub fn flavor(&self) -> Option<&str> {
        self.0.splitn(3, '-').nth(2)
    }
}

impl FromStr for Platform {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, InvalidName> {
        let err = |reason| InvalidName { kind: "platform", value: s.chars().take(80).collect(), reason };
        let mut parts = s.splitn(3, '-');
        let os = parts.next().unwrap_or_default();
        let arch = parts.next().ok_or_else(|| err("must be {os}-{arch}[-{flavor}]"))?;
        if !KNOWN_OS.contains(&os) {
            return Err(err("unknown operating system (linux, windows, darwin, android, ios, freebsd)"));
        }
        if !KNOWN_ARCH.contains(&arch) {
            return Err(err("unknown architecture (x86_64, aarch64, i686, armv7, arm64, riscv64, universal)"));
        }
        if let Some(flavor) = parts.next() {
            check_slug("platform", flavor).map_err(|_| err("flavor must be a slug: [a-z0-9][a-z0-9-]*"))?;
            if flavor.len() > 32 {
                return Err(err("flavor must be at most 32 characters"));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file name for an artifact: no path separators, no leading dot, printable ASCII, ≤ 200 bytes.
pub fn check_filename(s: &str) -> Result<(), InvalidName> {
    let err = |reason| InvalidName { kind: "file name", value: s.chars().take(80).collect(), reason };
    if s.is_empty() || s.len() > 200 {
        return Err(err("must be 1 to 200 characters"));
    }
    if s.starts_with('.') {
        return Err(err("must not start with '.'"));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+')) {
        return Err(err("may contain only letters, digits and . - _ +"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: FromStr>(input: &str, ok: bool) {
        assert_eq!(input.parse::<T>().is_ok(), ok, "{input:?}");
    }

    #[test]
    fn app_ids() {
        for good in ["a", "my-app", "0day", &"a".repeat(63)] {
            check::<AppId>(good, true);
        }
        for bad in ["", "-a", "My-App", "a_b", "a/b", "..", &"a".repeat(64), "é"] {
            check::<AppId>(bad, false);
        }
    }

    #[test]
    fn platforms() {
        for good in ["linux-x86_64", "darwin-aarch64", "linux-x86_64-appimage", "windows-i686-nsis"] {
            check::<Platform>(good, true);
        }
        for bad in ["linux", "linux-", "plan9-x86_64", "linux-sparc", "linux-x86_64-", "linux-x86_64-A", "linux-x86_64-a/b"] {
            check::<Platform>(bad, false);
        }
        let p: Platform = "linux-x86_64-appimage".parse().unwrap();
        assert_eq!((p.os(), p.arch(), p.flavor()), ("linux", "x86_64", Some("appimage")));
    }

    #[test]
    fn filenames() {
        assert!(check_filename("app-1.0.tar.gz").is_ok());
        for bad in ["", ".hidden", "a/b", "a\\b", "a b", ".."] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
    }
}
