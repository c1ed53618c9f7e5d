//! Replay protection: remembers each (AccessKeyId, nonce) until its request's timestamp can no
//! longer pass the skew check, in a memory with a hard capacity.

use chrono::{DateTime, Duration, Utc};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Mutex;

const SHARDS: usize = 16;

#[derive(Debug, PartialEq, Eq)]
pub enum NonceError {
    /// Seen before within the window.
    Used,
    /// The memory is full of live nonces; refusing is safer than forgetting one.
    Full,
}

pub struct NonceCache {
    shards: Vec<Mutex<Shard>>,
    /// Keyed hashing: nonces are client-chosen, so an attacker must not be able to aim at
    /// collisions. A 64-bit fingerprint makes an accidental clash negligible.
    hasher: RandomState,
    skew: Duration,
    capacity_per_shard: usize,
}

#[derive(Default)]
struct Shard {
    seen: HashSet<u64>,
    /// Fingerprints grouped by the minute after which they may be forgotten.
    expiry: BTreeMap<i64, Vec<u64>>,
}

impl NonceCache {
    pub fn new(skew: Duration, capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            skew,
            capacity_per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Records the nonce, or reports that it was used. `request_time` is the signed timestamp,
    /// already checked to be within the skew of `now`; the nonce is kept until that timestamp
    /// itself expires, so a replay can never outlive its memory.
    pub fn check_and_insert(
        &self,
        access_key_id: &str,
        nonce: &str,
        request_time: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), NonceError> {
        let fingerprint = self.hasher.hash_one((access_key_id, nonce));
        let shard = &self.shards[(fingerprint as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        shard.forget_before(now.timestamp().div_euclid(60));
        if shard.seen.contains(&fingerprint) {
            return Err(NonceError::Used);
        }
        if shard.seen.len() >= self.capacity_per_shard {
            return Err(NonceError::Full);
        }
        // Round the expiry up to the next minute so it is never forgotten early.
        let forget_after = (request_time + self.skew).timestamp().div_euclid(60) + 1;
        shard.seen.insert(fingerprint);
        shard
            .expiry
            .entry(forget_after)
            .or_default()
            .push(fingerprint);
        Ok(())
    }

    /// How many nonces are remembered now (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).seen.len())
            .sum()
    }
}

impl Shard {
    fn forget_before(&mut self, minute: i64) {
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() >= minute {
                break;
            }
            for fingerprint in entry.remove() {
                self.seen.remove(&fingerprint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_nonce_is_refused_the_second_time_and_per_key() {
        let cache = NonceCache::new(Duration::minutes(15), 100);
        assert_eq!(cache.check_and_insert("k", "n", t(0), t(0)), Ok(()));
        assert_eq!(
            cache.check_and_insert("k", "n", t(0), t(1)),
            Err(NonceError::Used)
        );
        assert_eq!(cache.check_and_insert("other", "n", t(0), t(1)), Ok(()));
    }

    #[test]
    fn a_nonce_is_remembered_while_its_timestamp_is_acceptable() {
        let cache = NonceCache::new(Duration::minutes(15), 100);
        // Timestamp 15 minutes in the future: acceptable until t+30 min.
        cache.check_and_insert("k", "n", t(900), t(0)).unwrap();
        assert_eq!(
            cache.check_and_insert("k", "n", t(900), t(1799)),
            Err(NonceError::Used)
        );
        // Long after, the timestamp would fail the skew check anyway; the memory is freed.
        cache.check_and_insert("k", "n", t(2000), t(2000)).unwrap();
        assert_eq!(cache.remembered(), 1);
    }

    #[test]
    fn memory_is_bounded_and_full_refuses() {
        let cache = NonceCache::new(Duration::minutes(15), 32);
        let mut refused = 0;
        for i in 0..1000 {
            if cache.check_and_insert("k", &i.to_string(), t(0), t(0)) == Err(NonceError::Full) {
                refused += 1;
            }
        }
        assert!(cache.remembered() <= 32, "{}", cache.remembered());
        assert!(refused >= 1000 - 32);
        // Once those expire there is room again.
        cache
            .check_and_insert("k", "late", t(3600), t(3600))
            .unwrap();
    }
}
