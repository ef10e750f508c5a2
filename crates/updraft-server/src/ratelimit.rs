//! Token-bucket rate limits, keyed by API token or client address. Buckets live in sharded
//! maps so concurrent requests rarely contend; idle buckets are swept. A refusal carries how
//! long to wait, which becomes `Retry-After` on the `429`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// One limit: `rate` requests per second on average, bursts up to `burst`.
pub struct Limiter<K> {
    rate: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<K, Bucket>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `None` when `rate` is 0: no limit.
    pub fn new(rate: f64, burst: f64) -> Option<Self> {
        (rate > 0.0).then(|| Limiter {
            rate,
            burst: burst.max(1.0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        })
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = shard.lock().expect("rate limit shard");
        let b = map.entry(key.clone()).or_insert(Bucket { tokens: self.burst, last: now });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }

    /// Drops buckets that have refilled completely: they hold no information.
    pub fn sweep(&self, now: Instant) {
        let full_after = Duration::from_secs_f64(self.burst / self.rate);
        for shard in &self.shards {
            shard.lock().expect("rate limit shard").retain(|_, b| now.saturating_duration_since(b.last) < full_after);
        }
    }
}

/// The server's limits.
pub struct Limits {
    /// Public API, per client address.
    pub public: Option<Limiter<IpAddr>>,
    /// Admin API, per token.
    pub admin: Option<Limiter<String>>,
    /// Failed authentications, per client address (a brute-force guard).
    pub auth_failures: Option<Limiter<IpAddr>>,
}

impl Limits {
    pub fn sweep(&self) {
        let now = Instant::now();
        if let Some(l) = &self.public {
            l.sweep(now);
        }
        if let Some(l) = &self.admin {
            l.sweep(now);
        }
        if let Some(l) = &self.auth_failures {
            l.sweep(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let l = Limiter::new(10.0, 3.0).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(&"k", t0).is_ok());
        }
        let wait = l.check(&"k", t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(l.check(&"other", t0).is_ok(), "keys are independent");
        assert!(l.check(&"k", t0 + Duration::from_millis(100)).is_ok(), "refilled at the rate");
        l.sweep(t0 + Duration::from_secs(10));
        assert!(l.shards.iter().all(|s| s.lock().unwrap().is_empty()));
        assert!(Limiter::<u8>::new(0.0, 10.0).is_none());
    }
}
