//! The in-process backend: one `HashMap` behind a `std::sync::Mutex`, for the embedded
//! one-process fleet and for tests that run without Redis.
//!
//! It keeps Redis's semantics where a caller could tell the difference: expiry is exact (checked
//! on every read), counters, byte values, sketches and sets live under the same key space, `set`
//! replaces any kind of value, the rate limiter's window starts at the first hit, and a lock is only released
//! or extended with the random token it was taken with. The mutex is never held across an
//! `.await` (there is none inside), so it cannot stall the runtime beyond a map operation.
//!
//! Every operation takes the current time from its caller, so expiry can be tested by moving a
//! clock rather than by sleeping.
//!
//! Expired entries are dropped when read and, so that keys nobody reads again do not pile up, by
//! a sweep over the whole map every [`SWEEP_EVERY_WRITES`] writes.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::hyperloglog::HyperLogLog;
use super::{KvError, RateDecision};

/// How many writes between two sweeps. A sweep is O(keys); at this rate it costs well under a
/// microsecond per write for the key counts the embedded mode sees.
const SWEEP_EVERY_WRITES: u32 = 1024;

#[derive(Default)]
pub(crate) struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    writes_since_sweep: u32,
}

struct Entry {
    value: Value,
    /// `tokio::time::Instant`, so tests of services that pause tokio's clock also move expiry.
    expires_at: Option<Instant>,
}

/// Values are typed so a counter is an integer and a sketch is a sketch, not bytes to reparse.
enum Value {
    Bytes(Vec<u8>),
    Counter(i64),
    Sketch(Box<HyperLogLog>),
    Set(HashSet<String>),
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

fn wrong_kind(key: &str, expected: &str) -> KvError {
    // Mirrors Redis's WRONGTYPE / "not an integer" errors: a caller mixed kinds under one key.
    KvError::Unavailable(format!("key {key:?} does not hold {expected}"))
}

impl State {
    /// The live entry under `key`, dropping it first if it has expired.
    fn live_entry(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self
            .entries
            .get(key)
            .is_some_and(|entry| !entry.is_live(now))
        {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    fn note_write(&mut self, now: Instant) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY_WRITES {
            self.writes_since_sweep = 0;
            self.entries.retain(|_, entry| entry.is_live(now));
        }
    }
}

impl MemoryStore {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code path panics half-way through an update, so a poisoned map is still consistent;
        // keep serving rather than turning one panic into a dead store.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, now: Instant, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let mut state = self.state();
        match state.live_entry(key, now).map(|entry| &entry.value) {
            None => Ok(None),
            Some(Value::Bytes(bytes)) => Ok(Some(bytes.clone())),
            // Redis stores counters as decimal strings, so GET on a counter returns its digits.
            Some(Value::Counter(count)) => Ok(Some(count.to_string().into_bytes())),
            Some(Value::Sketch(_) | Value::Set(_)) => Err(wrong_kind(key, "a byte value")),
        }
    }

    pub(crate) fn set(&self, now: Instant, key: &str, value: &[u8], ttl: Option<Duration>) {
        let mut state = self.state();
        state.entries.insert(
            key.to_owned(),
            Entry {
                value: Value::Bytes(value.to_vec()),
                expires_at: ttl.map(|ttl| now + ttl),
            },
        );
        state.note_write(now);
    }

    pub(crate) fn set_if_absent(
        &self,
        now: Instant,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> bool {
        let mut state = self.state();
        if state.live_entry(key, now).is_some() {
            return false;
        }
        state.entries.insert(
            key.to_owned(),
            Entry {
                value: Value::Bytes(value.to_vec()),
                expires_at: ttl.map(|ttl| now + ttl),
            },
        );
        state.note_write(now);
        true
    }

    pub(crate) fn delete(&self, key: &str) {
        self.state().entries.remove(key);
    }

    pub(crate) fn increment(&self, now: Instant, key: &str, by: i64) -> Result<i64, KvError> {
        let mut state = self.state();
        let new_value = match state.live_entry(key, now) {
            None => {
                state.entries.insert(
                    key.to_owned(),
                    Entry {
                        value: Value::Counter(by),
                        expires_at: None,
                    },
                );
                by
            }
            // Like INCRBY, an existing counter keeps its expiry.
            Some(entry) => {
                let current = match &entry.value {
                    Value::Counter(count) => *count,
                    Value::Bytes(bytes) => parse_counter(key, bytes)?,
                    Value::Sketch(_) | Value::Set(_) => return Err(wrong_kind(key, "an integer")),
                };
                let new_value = current.checked_add(by).ok_or_else(|| {
                    KvError::Unavailable(format!("incrementing {key:?} would overflow"))
                })?;
                entry.value = Value::Counter(new_value);
                new_value
            }
        };
        state.note_write(now);
        Ok(new_value)
    }

    pub(crate) fn counter(&self, now: Instant, key: &str) -> Result<i64, KvError> {
        let mut state = self.state();
        match state.live_entry(key, now).map(|entry| &entry.value) {
            None => Ok(0),
            Some(Value::Counter(count)) => Ok(*count),
            Some(Value::Bytes(bytes)) => parse_counter(key, bytes),
            Some(Value::Sketch(_) | Value::Set(_)) => Err(wrong_kind(key, "an integer")),
        }
    }

    pub(crate) fn hll_add(
        &self,
        now: Instant,
        key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let mut state = self.state();
        let changed = match state.live_entry(key, now) {
            None => {
                let mut sketch = Box::new(HyperLogLog::new());
                sketch.add(member.as_bytes());
                state.entries.insert(
                    key.to_owned(),
                    Entry {
                        value: Value::Sketch(sketch),
                        expires_at: ttl.map(|ttl| now + ttl),
                    },
                );
                // Creating the key is a change even if the member hashed to rank 0 nowhere: this
                // is what PFADD reports for a new key.
                true
            }
            Some(entry) => {
                let Value::Sketch(sketch) = &mut entry.value else {
                    return Err(wrong_kind(key, "a HyperLogLog"));
                };
                let changed = sketch.add(member.as_bytes());
                // The ttl applies from the first member; later adds do not push it back, so a
                // "visitors of the day" key dies a fixed time after the day began.
                if entry.expires_at.is_none() {
                    entry.expires_at = ttl.map(|ttl| now + ttl);
                }
                changed
            }
        };
        state.note_write(now);
        Ok(changed)
    }

    pub(crate) fn hll_count(&self, now: Instant, key: &str) -> Result<u64, KvError> {
        let mut state = self.state();
        match state.live_entry(key, now).map(|entry| &entry.value) {
            None => Ok(0),
            Some(Value::Sketch(sketch)) => Ok(sketch.count()),
            Some(_) => Err(wrong_kind(key, "a HyperLogLog")),
        }
    }

    pub(crate) fn set_add(
        &self,
        now: Instant,
        key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let mut state = self.state();
        let added = match state.live_entry(key, now) {
            None => {
                state.entries.insert(
                    key.to_owned(),
                    Entry {
                        value: Value::Set(HashSet::from([member.to_owned()])),
                        expires_at: ttl.map(|ttl| now + ttl),
                    },
                );
                true
            }
            Some(entry) => {
                let Value::Set(members) = &mut entry.value else {
                    return Err(wrong_kind(key, "a set"));
                };
                let added = members.insert(member.to_owned());
                // As for sketches: the ttl counts from the first member.
                if entry.expires_at.is_none() {
                    entry.expires_at = ttl.map(|ttl| now + ttl);
                }
                added
            }
        };
        state.note_write(now);
        Ok(added)
    }

    pub(crate) fn set_members(&self, now: Instant, key: &str) -> Result<Vec<String>, KvError> {
        let mut state = self.state();
        match state.live_entry(key, now).map(|entry| &entry.value) {
            None => Ok(Vec::new()),
            Some(Value::Set(members)) => Ok(members.iter().cloned().collect()),
            Some(_) => Err(wrong_kind(key, "a set")),
        }
    }

    pub(crate) fn rate_limit(
        &self,
        now: Instant,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, KvError> {
        let mut state = self.state();
        let (count, expires_at) = match state.live_entry(key, now) {
            // The window starts with its first hit (INCR then PEXPIRE when the key is new).
            None => {
                let expires_at = now + window;
                state.entries.insert(
                    key.to_owned(),
                    Entry {
                        value: Value::Counter(1),
                        expires_at: Some(expires_at),
                    },
                );
                (1, expires_at)
            }
            Some(entry) => {
                let current = match &entry.value {
                    Value::Counter(count) => *count,
                    Value::Bytes(bytes) => parse_counter(key, bytes)?,
                    Value::Sketch(_) | Value::Set(_) => return Err(wrong_kind(key, "an integer")),
                };
                let count = current.saturating_add(1);
                entry.value = Value::Counter(count);
                // A counter that somehow has no expiry would block forever; give it one window.
                let expires_at = *entry.expires_at.get_or_insert(now + window);
                (count, expires_at)
            }
        };
        state.note_write(now);
        Ok(RateDecision::from_count(
            count,
            limit,
            expires_at.saturating_duration_since(now),
        ))
    }

    /// Takes the lock entry at `key` with `token` unless a live one exists.
    pub(crate) fn try_lock(&self, now: Instant, key: &str, token: &[u8], ttl: Duration) -> bool {
        self.set_if_absent(now, key, token, Some(ttl))
    }

    /// Deletes the lock entry only if it still holds `token` (the Redlock release script).
    pub(crate) fn unlock(&self, now: Instant, key: &str, token: &[u8]) -> bool {
        let mut state = self.state();
        let owned = matches!(
            state.live_entry(key, now).map(|entry| &entry.value),
            Some(Value::Bytes(held)) if held == token
        );
        if owned {
            state.entries.remove(key);
        }
        owned
    }

    /// Restarts the lock's ttl from now, only if it still holds `token`.
    pub(crate) fn extend_lock(&self, now: Instant, key: &str, token: &[u8], ttl: Duration) -> bool {
        let mut state = self.state();
        match state.live_entry(key, now) {
            Some(entry) if matches!(&entry.value, Value::Bytes(held) if held == token) => {
                entry.expires_at = Some(now + ttl);
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    fn entry_count(&self) -> usize {
        self.state().entries.len()
    }
}

fn parse_counter(key: &str, bytes: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| wrong_kind(key, "an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Time is a parameter, so these tests move the clock instead of sleeping.
    fn later(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn sweep_drops_expired_keys_nobody_reads() {
        let store = MemoryStore::new();
        let start = Instant::now();
        for index in 0..100 {
            store.set(
                start,
                &format!("short-{index}"),
                b"x",
                Some(Duration::from_secs(1)),
            );
        }
        for index in 0..SWEEP_EVERY_WRITES {
            store.set(later(start, 2), &format!("long-{index}"), b"x", None);
        }
        assert_eq!(store.entry_count(), SWEEP_EVERY_WRITES as usize);
    }

    #[test]
    fn expiry_is_exact_on_read() {
        let store = MemoryStore::new();
        let start = Instant::now();
        store.set(start, "k", b"v", Some(Duration::from_secs(10)));
        let just_before = start + Duration::from_secs(10) - Duration::from_nanos(1);
        assert_eq!(
            store.get(just_before, "k").ok().flatten(),
            Some(b"v".to_vec())
        );
        assert_eq!(store.get(later(start, 10), "k").ok().flatten(), None);
    }

    #[test]
    fn counter_keeps_its_expiry_when_incremented() {
        let store = MemoryStore::new();
        let start = Instant::now();
        store.set(start, "hits", b"41", Some(Duration::from_secs(10)));
        assert_eq!(store.increment(later(start, 5), "hits", 1).ok(), Some(42));
        assert_eq!(store.counter(later(start, 11), "hits").ok(), Some(0));
    }

    #[test]
    fn hll_ttl_counts_from_the_first_member() {
        let store = MemoryStore::new();
        let start = Instant::now();
        let ttl = Some(Duration::from_secs(10));
        assert_eq!(store.hll_add(start, "day", "a", ttl).ok(), Some(true));
        assert_eq!(
            store.hll_add(later(start, 9), "day", "b", ttl).ok(),
            Some(true)
        );
        assert_eq!(store.hll_count(later(start, 9), "day").ok(), Some(2));
        assert_eq!(store.hll_count(later(start, 10), "day").ok(), Some(0));
    }

    #[test]
    fn rate_window_starts_at_the_first_hit_and_reports_the_wait() {
        let store = MemoryStore::new();
        let start = Instant::now();
        let window = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(
                store
                    .rate_limit(start, "ip", 3, window)
                    .is_ok_and(|d| d.allowed)
            );
        }
        let denied = store.rate_limit(later(start, 20), "ip", 3, window).ok();
        assert_eq!(
            denied,
            Some(RateDecision {
                allowed: false,
                remaining: 0,
                retry_after: Duration::from_secs(40)
            })
        );
        let fresh = store.rate_limit(later(start, 60), "ip", 3, window).ok();
        assert_eq!(fresh.map(|d| (d.allowed, d.remaining)), Some((true, 2)));
    }

    #[test]
    fn lock_is_owned_by_its_token_and_expires() {
        let store = MemoryStore::new();
        let start = Instant::now();
        let ttl = Duration::from_secs(5);
        assert!(store.try_lock(start, "job", b"first", ttl));
        assert!(!store.try_lock(start, "job", b"second", ttl));
        assert!(!store.unlock(start, "job", b"second"));
        assert!(!store.extend_lock(start, "job", b"second", ttl));
        assert!(store.extend_lock(later(start, 4), "job", b"first", ttl));
        assert!(!store.try_lock(later(start, 8), "job", b"second", ttl));
        assert!(store.try_lock(later(start, 9), "job", b"second", ttl));
        assert!(!store.unlock(later(start, 9), "job", b"first"));
        assert!(store.unlock(later(start, 9), "job", b"second"));
    }

    #[test]
    fn kinds_are_not_mixed_silently() {
        let store = MemoryStore::new();
        let now = Instant::now();
        store.set(now, "name", b"not a number", None);
        assert!(store.increment(now, "name", 1).is_err());
        assert!(store.hll_add(now, "name", "visitor", None).is_err());
        assert_eq!(store.hll_add(now, "visitors", "v", None).ok(), Some(true));
        assert!(store.get(now, "visitors").is_err());
        assert!(store.counter(now, "visitors").is_err());
    }

    #[test]
    fn set_ttl_counts_from_the_first_member_and_sets_are_not_other_kinds() {
        let store = MemoryStore::new();
        let start = Instant::now();
        let ttl = Some(Duration::from_secs(10));
        assert_eq!(store.set_add(start, "items", "1", ttl).ok(), Some(true));
        assert_eq!(
            store.set_add(later(start, 9), "items", "1", ttl).ok(),
            Some(false)
        );
        assert_eq!(
            store.set_add(later(start, 9), "items", "2", ttl).ok(),
            Some(true)
        );
        let mut members = store
            .set_members(later(start, 9), "items")
            .unwrap_or_default();
        members.sort();
        assert_eq!(members, ["1", "2"]);
        assert!(store.get(later(start, 9), "items").is_err());
        assert!(store.increment(later(start, 9), "items", 1).is_err());
        assert!(store.hll_count(later(start, 9), "items").is_err());
        assert_eq!(
            store.set_members(later(start, 10), "items").ok(),
            Some(Vec::new())
        );
        store.set(start, "bytes", b"x", None);
        assert!(store.set_add(start, "bytes", "1", None).is_err());
        assert!(store.set_members(start, "bytes").is_err());
    }

    #[test]
    fn counter_reads_back_as_decimal_bytes() {
        let store = MemoryStore::new();
        let now = Instant::now();
        assert_eq!(store.increment(now, "n", -7).ok(), Some(-7));
        assert_eq!(store.get(now, "n").ok().flatten(), Some(b"-7".to_vec()));
    }

    #[test]
    fn increment_overflow_is_an_error_not_a_wrap() {
        let store = MemoryStore::new();
        let now = Instant::now();
        assert_eq!(store.increment(now, "n", i64::MAX).ok(), Some(i64::MAX));
        assert!(store.increment(now, "n", 1).is_err());
        assert_eq!(store.counter(now, "n").ok(), Some(i64::MAX));
    }
}
