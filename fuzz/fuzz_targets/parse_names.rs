//! Fuzzes every parser of names that come from outside: versions, app ids, channels,
//! platforms, file names, rollout percentages. None may panic, and each must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_core::{AppId, Channel, Percent, Platform, Version};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(v) = s.parse::<Version>() {
        let again: Version = v.to_string().parse().expect("a parsed version reparses");
        assert_eq!(again, v);
        assert_eq!(v.cmp(&again), std::cmp::Ordering::Equal);
    }
    if let Ok(a) = s.parse::<AppId>() {
        assert_eq!(a.as_str(), s);
        assert!(a.as_str().len() <= 63);
    }
    let _ = s.parse::<Channel>();
    if let Ok(p) = s.parse::<Platform>() {
        assert!(updraft_core::ids::KNOWN_OS.contains(&p.os()));
        assert!(updraft_core::ids::KNOWN_ARCH.contains(&p.arch()));
    }
    if updraft_core::ids::check_filename(s).is_ok() {
        assert!(!s.contains('/') && !s.contains('\\') && !s.starts_with('.'));
    }
    if let Ok(p) = s.parse::<Percent>() {
        assert!(p.basis_points() <= 10_000);
        assert_eq!(p.to_string().parse::<Percent>().expect("display reparses"), p);
    }
});
