//! Updraft's domain: validated names, version ordering, rollout buckets and the TUF metadata
//! model. This crate does no IO (no files, sockets or clock): every input, including the current
//! time and randomness, is passed in, so everything here is deterministic and cannot fail for
//! outside reasons.
//!
//! ```
//! use updraft_core::{AppId, Percent, Version, rollout};
//! let app: AppId = "my-app".parse().unwrap();
//! let v: Version = "1.4.0-beta.2".parse().unwrap();
//! assert!(v < "1.4.0".parse::<Version>().unwrap());
//! let admitted = rollout::admits(&app, "salt", "client-1", Percent::from_basis_points(1000).unwrap());
//! # let _ = admitted;
//! ```

pub mod audit;
pub mod health;
pub mod ids;
pub mod ingest;
pub mod rollout;
pub mod tuf;
pub mod version;

pub use ids::{AppId, Channel, InvalidName, Platform};
pub use rollout::Percent;
pub use version::Version;
