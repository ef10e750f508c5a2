//! Rollout buckets. A client's bucket for a release is a pure function of
//! (app, release salt, client id): the server and our client compute it with this one function,
//! so they always agree, and since admission is `bucket < share`, raising the share never takes
//! an offer away from a client that had it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppId;

/// Number of buckets; a share of 1 basis point admits exactly one of them.
pub const BUCKETS: u32 = 10_000;

/// A rollout share, 0–100 % with two decimals, held exactly as basis points (0–10 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rollout percentage {0:?}: must be a number from 0 to 100 with at most two decimals")]
pub struct InvalidPercent(pub String);

impl Percent {
    pub const ZERO: Percent = Percent(0);
    pub const FULL: Percent = Percent(BUCKETS);

    pub fn from_basis_points(bp: u32) -> Result<Self, InvalidPercent> {
        if bp > BUCKETS {
            return Err(InvalidPercent(bp.to_string()));
        }
        Ok(Self(bp))
    }
    pub fn basis_points(self) -> u32 {
        self.0
    }
    /// From a JSON number. Accepts at most two decimals (10.25 yes, 10.255 no).
    pub fn from_f64(x: f64) -> Result<Self, InvalidPercent> {
        let scaled = x * 100.0;
        let rounded = scaled.round();
        if !x.is_finite() || !(0.0..=100.0).contains(&x) || (scaled - rounded).abs() > 1e-6 {
            return Err(InvalidPercent(x.to_string()));
        }
        Ok(Self(rounded as u32))
    }
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl FromStr for Percent {
    type Err = InvalidPercent;
    fn from_str(s: &str) -> Result<Self, InvalidPercent> {
        let bad = || InvalidPercent(s.chars().take(40).collect());
        let s2 = s.trim_end_matches('%');
        let (int, frac) = s2.split_once('.').unwrap_or((s2, ""));
        if int.is_empty()
            || int.len() > 3
            || frac.len() > 2
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (s2.contains('.') && frac.is_empty())
        {
            return Err(bad());
        }
        let int: u32 = int.parse().map_err(|_| bad())?;
        let frac: u32 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
        Self::from_basis_points(int * 100 + frac).map_err(|_| bad())
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(100) {
            write!(f, "{}", self.0 / 100)
        } else {
            write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
        }
    }
}

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Integers where possible, so canonical JSON (which has no floats) can carry it.
        if self.0.is_multiple_of(100) {
            s.serialize_u32(self.0 / 100)
        } else {
            s.serialize_f64(self.as_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = f64::deserialize(d)?;
        Percent::from_f64(x).map_err(serde::de::Error::custom)
    }
}

/// The client's bucket, `0..BUCKETS`, for a release identified by its salt.
pub fn bucket(app: &AppId, salt: &str, client_id: &str) -> u32 {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different triples hash the same input.
    for part in [b"updraft-rollout-v1".as_slice(), app.as_str().as_bytes(), salt.as_bytes(), client_id.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let d = h.finalize();
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (n % u64::from(BUCKETS)) as u32
}

/// Whether a rollout at `share` offers the release to this client.
pub fn admits(app: &AppId, salt: &str, client_id: &str, share: Percent) -> bool {
    share == Percent::FULL || bucket(app, salt, client_id) < share.basis_points()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percent_parsing() {
        for (s, bp) in [("0", 0), ("10", 1000), ("10.5", 1050), ("10.25", 1025), ("100", 10000), ("0.01", 1), ("50%", 5000)] {
            assert_eq!(s.parse::<Percent>().unwrap().basis_points(), bp, "{s}");
        }
        for bad in ["", "-1", "100.01", "101", "10.255", "abc", "1e2", "10.", ".5", "NaN"] {
            assert!(bad.parse::<Percent>().is_err(), "{bad:?}");
        }
        assert_eq!(Percent::from_f64(12.34).unwrap().basis_points(), 1234);
        assert!(Percent::from_f64(12.345).is_err());
        assert!(Percent::from_f64(f64::NAN).is_err());
        assert_eq!(Percent::from_basis_points(1050).unwrap().to_string(), "10.50");
        assert_eq!(serde_json::to_string(&Percent::from_basis_points(5000).unwrap()).unwrap(), "50");
    }

    #[test]
    fn bucket_is_stable() {
        // Pinned values: the server and every deployed client must agree forever.
        let app: AppId = "demo".parse().unwrap();
        let b = bucket(&app, "salt", "client-1");
        assert_eq!(b, bucket(&app, "salt", "client-1"));
        assert!(b < BUCKETS);
        assert_ne!(bucket(&app, "salt", "client-1"), bucket(&app, "salt2", "client-1"));
    }

    #[test]
    fn shares_are_close_to_requested() {
        let app: AppId = "demo".parse().unwrap();
        let n = 20_000;
        let admitted = (0..n).filter(|i| admits(&app, "s", &format!("c{i}"), Percent::from_basis_points(1000).unwrap())).count();
        let share = admitted as f64 / n as f64;
        assert!((0.09..0.11).contains(&share), "{share}");
    }

    proptest! {
        #[test]
        fn raising_the_share_never_withdraws(client in "[a-z0-9-]{1,36}", salt in "[a-f0-9]{8}", lo in 0u32..=10000, hi in 0u32..=10000) {
            let app: AppId = "demo".parse().unwrap();
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let (lo, hi) = (Percent::from_basis_points(lo).unwrap(), Percent::from_basis_points(hi).unwrap());
            if admits(&app, &salt, &client, lo) {
                prop_assert!(admits(&app, &salt, &client, hi));
            }
            prop_assert!(admits(&app, &salt, &client, Percent::FULL));
            prop_assert!(!admits(&app, &salt, &client, Percent::ZERO));
        }
    }
}
