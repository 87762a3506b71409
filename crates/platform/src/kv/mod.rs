//! The key-value store every service uses for short-lived shared state: a cache, counters,
//! HyperLogLog unique counts (visitors per item per day), sets of strings (which items were
//! visited on a day), a fixed-window rate limiter (logins per IP and e-mail) and a lease-style
//! lock (one scheduler instance bills a subscription).
//!
//! [`KeyValueStore`] is one cloneable handle over either Redis (production, shared by every
//! replica) or an in-process map (the embedded one-process fleet and tests without Redis). The
//! backend is an enum chosen at construction, so callers never see which one they have and the
//! calls stay plain `async fn`s without boxing.
//!
//! Keys are namespaced: a store built with prefix `p` stores key `k` as `p:k`, and
//! [`KeyValueStore::with_prefix`] nests a further segment. Lock resources live under
//! `<prefix>:lock:<resource>` so a lock never collides with a cache key of the same name.
//!
//! Nothing here is durable: treat every value as a cache that may vanish (Redis eviction or
//! restart, process restart in memory mode). Anything that must survive belongs in the database.

mod hyperloglog;
mod memory;
mod redis_store;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use memory::MemoryStore;
use redis_store::RedisStore;

/// Why a key-value operation failed. Callers usually degrade (skip the cache, allow the request)
/// on either; the cause is for logs.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Redis could not be reached, refused the command, or a key holds a different kind of value
    /// than the operation expects (a caller mixing a counter and a HyperLogLog under one key).
    #[error("key-value store unavailable: {0}")]
    Unavailable(String),
    /// The operation did not finish within the store's operation timeout.
    #[error("key-value store timed out")]
    Timeout,
}

/// The outcome of one [`KeyValueStore::rate_limit`] hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether this hit is within the limit.
    pub allowed: bool,
    /// Hits still allowed in the current window after this one.
    pub remaining: u32,
    /// When denied, how long until the window resets (the `Retry-After` to send); zero when
    /// allowed.
    pub retry_after: Duration,
}

impl RateDecision {
    /// Decides from the window's hit count (this hit included) and the time until it resets.
    fn from_count(count: i64, limit: u32, until_reset: Duration) -> Self {
        let allowed = count <= i64::from(limit);
        let remaining = u32::try_from(i64::from(limit).saturating_sub(count).max(0)).unwrap_or(0);
        Self {
            allowed,
            remaining,
            retry_after: if allowed { Duration::ZERO } else { until_reset },
        }
    }
}

/// A handle to the key-value store; cheap to clone, all clones share one backend.
#[derive(Clone)]
pub struct KeyValueStore {
    backend: Backend,
    /// Either empty or ending with `:`, so a key is simply appended.
    prefix: String,
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<MemoryStore>),
    Redis(RedisStore),
}

impl fmt::Debug for KeyValueStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        };
        formatter
            .debug_struct("KeyValueStore")
            .field("backend", &backend)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl KeyValueStore {
    /// A fresh in-process store. Each call makes an independent store; clones share it.
    pub fn in_memory() -> Self {
        Self {
            backend: Backend::Memory(Arc::new(MemoryStore::new())),
            prefix: String::new(),
        }
    }

    /// Connects to Redis at `url` (`redis://[user:password@]host:port[/db]`, or `rediss://`).
    ///
    /// Fails within `max(op_timeout, 1 s)` if Redis is unreachable, so a misconfigured service
    /// stops at startup instead of on its first request. Afterwards the connection reconnects by
    /// itself and every operation is bounded by `op_timeout` ([`KvError::Timeout`]).
    /// `key_prefix` (may be empty) namespaces every key, e.g. by service or environment.
    pub async fn connect_redis(
        url: &str,
        key_prefix: &str,
        op_timeout: Duration,
    ) -> Result<Self, KvError> {
        let store = Self {
            backend: Backend::Redis(RedisStore::connect(url, op_timeout).await?),
            prefix: String::new(),
        };
        Ok(store.with_prefix(key_prefix))
    }

    /// The same store seen through a further namespace: keys become `<current prefix><prefix>:`.
    /// An empty `prefix` returns the same view. Tests use a unique prefix each so they can run in
    /// parallel against one Redis.
    pub fn with_prefix(&self, prefix: &str) -> Self {
        let mut nested = self.clone();
        if !prefix.is_empty() {
            nested.prefix = format!("{}{prefix}:", self.prefix);
        }
        nested
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value under `key`, or `None` if absent or expired. A counter reads back as its decimal
    /// digits, as in Redis.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => store.get(Instant::now(), &key),
            Backend::Redis(store) => store.get(&key).await,
        }
    }

    /// Stores `value` under `key`, replacing whatever was there, expiring after `ttl` if given.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => {
                store.set(Instant::now(), &key, value, ttl);
                Ok(())
            }
            Backend::Redis(store) => store.set(&key, value, ttl).await,
        }
    }

    /// Stores `value` only if `key` is absent (`SET NX`); true if it was stored. The building
    /// block for idempotency keys and one-time tokens.
    pub async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => Ok(store.set_if_absent(Instant::now(), &key, value, ttl)),
            Backend::Redis(store) => store.set_if_absent(&key, value, ttl).await,
        }
    }

    /// Removes `key` of any kind; absent keys are fine.
    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => {
                store.delete(&key);
                Ok(())
            }
            Backend::Redis(store) => store.delete(&key).await,
        }
    }

    /// Adds `by` (may be negative) to the counter at `key`, starting from 0, and returns the new
    /// value (`INCRBY`). Atomic across all clients; an existing expiry is kept.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => store.increment(Instant::now(), &key, by),
            Backend::Redis(store) => store.increment(&key, by).await,
        }
    }

    /// The counter at `key`; 0 when absent.
    pub async fn counter(&self, key: &str) -> Result<i64, KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => store.counter(Instant::now(), &key),
            Backend::Redis(store) => store.counter(&key).await,
        }
    }

    /// Adds `member` to the HyperLogLog at `key` (`PFADD`); true if the estimate may have
    /// changed (always true when the key is created). `ttl` applies only when the key has no
    /// expiry yet, i.e. it counts from the first member and later adds do not extend it — a
    /// per-day key lives a fixed time.
    pub async fn hll_add(
        &self,
        key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => store.hll_add(Instant::now(), &key, member, ttl),
            Backend::Redis(store) => store.hll_add(&key, member, ttl).await,
        }
    }

    /// The estimated number of distinct members added to `key` (`PFCOUNT`); 0 when absent.
    /// Both backends use 16 384 registers: standard error ≈ 0.81 %.
    pub async fn hll_count(&self, key: &str) -> Result<u64, KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => store.hll_count(Instant::now(), &key),
            Backend::Redis(store) => store.hll_count(&key).await,
        }
    }

    /// Adds `member` to the set of strings at `key` (`SADD`); true if it was not there yet.
    /// `ttl` applies only when the key has no expiry yet, as for [`hll_add`](Self::hll_add):
    /// it counts from the first member.
    pub async fn set_add(
        &self,
        key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => store.set_add(Instant::now(), &key, member, ttl),
            Backend::Redis(store) => store.set_add(&key, member, ttl).await,
        }
    }

    /// Every member of the set at `key` (`SMEMBERS`), in no particular order; empty when absent.
    /// The whole set comes back in one answer: meant for sets of thousands, not millions.
    pub async fn set_members(&self, key: &str) -> Result<Vec<String>, KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => store.set_members(Instant::now(), &key),
            Backend::Redis(store) => store.set_members(&key).await,
        }
    }

    /// Counts one hit against `key` in a fixed window of `window` that starts at the window's
    /// first hit, and allows at most `limit` hits per window. Atomic across all clients (a Lua
    /// script on Redis). Denied hits still count, so hammering does not shorten the wait.
    pub async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, KvError> {
        let key = self.key(key);
        match &self.backend {
            Backend::Memory(store) => store.rate_limit(Instant::now(), &key, limit, window),
            Backend::Redis(store) => store.rate_limit(&key, limit, window).await,
        }
    }

    /// Tries once to take the lock on `resource` for `ttl`; `None` if someone else holds it.
    ///
    /// The lock is a lease: it ends at `ttl` whether or not it is released, so work under it
    /// must finish (or [`LockGuard::extend`]) in time. On Redis this is Redlock via rslock with a
    /// random token per acquisition; in memory the same semantics hold within the process.
    pub async fn try_lock(
        &self,
        resource: &str,
        ttl: Duration,
    ) -> Result<Option<LockGuard>, KvError> {
        let key = self.key(&format!("lock:{resource}"));
        match &self.backend {
            Backend::Memory(store) => {
                let token = rand::random::<u128>().to_be_bytes().to_vec();
                Ok(store
                    .try_lock(Instant::now(), &key, &token, ttl)
                    .then(|| LockGuard {
                        held: HeldLock::Memory {
                            store: Arc::clone(store),
                            key,
                            token,
                        },
                    }))
            }
            Backend::Redis(store) => Ok(store.try_lock(&key, ttl).await?.map(|lock| LockGuard {
                held: HeldLock::Redis {
                    store: store.clone(),
                    lock,
                },
            })),
        }
    }
}

/// A lock taken with [`KeyValueStore::try_lock`].
///
/// Dropping the guard without [`release`](Self::release) does **not** free the lock (there is no
/// async drop): it simply expires at its ttl. Release explicitly when done so others need not
/// wait. Only this guard's random token can release or extend the lock, so a guard whose lock
/// already expired and was taken by someone else cannot free theirs.
#[must_use = "dropping a LockGuard keeps the lock until its ttl; call release().await"]
pub struct LockGuard {
    held: HeldLock,
}

enum HeldLock {
    Memory {
        store: Arc<MemoryStore>,
        key: String,
        token: Vec<u8>,
    },
    Redis {
        store: RedisStore,
        lock: rslock::Lock,
    },
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a capability: keep it out of logs.
        let key = match &self.held {
            HeldLock::Memory { key, .. } => key.clone(),
            HeldLock::Redis { lock, .. } => String::from_utf8_lossy(&lock.resource).into_owned(),
        };
        formatter
            .debug_struct("LockGuard")
            .field("key", &key)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// Frees the lock if this guard still holds it; a lock that already expired (and may belong
    /// to someone else now) is left alone. On Redis this is best effort, as in Redlock: if the
    /// delete does not reach Redis the lock expires at its ttl.
    pub async fn release(self) -> Result<(), KvError> {
        match self.held {
            HeldLock::Memory { store, key, token } => {
                store.unlock(Instant::now(), &key, &token);
                Ok(())
            }
            HeldLock::Redis { store, lock } => store.unlock(&lock).await,
        }
    }

    /// Restarts the lock's lifetime at `ttl` from now; false if the lock had already expired
    /// (or was taken over), in which case the work it protected must be considered unprotected.
    pub async fn extend(&mut self, ttl: Duration) -> Result<bool, KvError> {
        match &mut self.held {
            HeldLock::Memory { store, key, token } => {
                Ok(store.extend_lock(Instant::now(), key, token, ttl))
            }
            HeldLock::Redis { store, lock } => match store.extend_lock(lock, ttl).await? {
                Some(extended) => {
                    *lock = extended;
                    Ok(true)
                }
                None => Ok(false),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_decision_counts_down_then_denies_with_the_reset_time() {
        let reset = Duration::from_secs(30);
        assert_eq!(
            RateDecision::from_count(1, 2, reset),
            RateDecision {
                allowed: true,
                remaining: 1,
                retry_after: Duration::ZERO
            }
        );
        assert_eq!(
            RateDecision::from_count(2, 2, reset),
            RateDecision {
                allowed: true,
                remaining: 0,
                retry_after: Duration::ZERO
            }
        );
        assert_eq!(
            RateDecision::from_count(3, 2, reset),
            RateDecision {
                allowed: false,
                remaining: 0,
                retry_after: reset
            }
        );
        assert!(!RateDecision::from_count(1, 0, reset).allowed);
    }

    /// The stores the set tests run on: in-process always, Redis when
    /// `PILLIVERY_TEST_REDIS_URL` names one (then an unusable Redis fails the test). Each gets
    /// a fresh prefix so parallel tests and earlier runs do not see each other's keys.
    async fn every_backend() -> Vec<KeyValueStore> {
        let prefix = format!("kv-unit-{:032x}", rand::random::<u128>());
        let mut stores = vec![KeyValueStore::in_memory().with_prefix(&prefix)];
        if let Some(url) = std::env::var("PILLIVERY_TEST_REDIS_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
        {
            let redis =
                KeyValueStore::connect_redis(&url, "pillivery-test", Duration::from_secs(2))
                    .await
                    .unwrap_or_else(|error| {
                        panic!("PILLIVERY_TEST_REDIS_URL is unusable: {error}")
                    });
            stores.push(redis.with_prefix(&prefix));
        }
        stores
    }

    fn sorted(mut members: Vec<String>) -> Vec<String> {
        members.sort();
        members
    }

    #[tokio::test]
    async fn sets_collect_distinct_members() {
        for store in every_backend().await {
            let ttl = Some(Duration::from_secs(60));
            assert_eq!(
                store.set_members("day").await.unwrap(),
                Vec::<String>::new()
            );
            assert!(store.set_add("day", "7", ttl).await.unwrap());
            assert!(store.set_add("day", "42", ttl).await.unwrap());
            assert!(!store.set_add("day", "7", ttl).await.unwrap(), "{store:?}");
            assert_eq!(sorted(store.set_members("day").await.unwrap()), ["42", "7"]);
            // Without a ttl the set simply stays.
            assert!(store.set_add("kept", "x", None).await.unwrap());
            assert_eq!(store.set_members("kept").await.unwrap(), ["x"]);
            store.delete("day").await.unwrap();
            store.delete("kept").await.unwrap();
            assert_eq!(
                store.set_members("day").await.unwrap(),
                Vec::<String>::new()
            );
        }
    }

    #[tokio::test]
    async fn concurrent_set_adds_lose_nothing() {
        for store in every_backend().await {
            let mut tasks = tokio::task::JoinSet::new();
            for member in 0..200 {
                let store = store.clone();
                tasks.spawn(async move {
                    store
                        .set_add(
                            "visited",
                            &member.to_string(),
                            Some(Duration::from_secs(60)),
                        )
                        .await
                });
            }
            while let Some(joined) = tasks.join_next().await {
                assert!(joined.unwrap().unwrap(), "every member is new once");
            }
            let members = store.set_members("visited").await.unwrap();
            let mut numbers: Vec<u32> = members.iter().map(|m| m.parse().unwrap()).collect();
            numbers.sort_unstable();
            assert_eq!(numbers, (0..200).collect::<Vec<u32>>(), "{store:?}");
            store.delete("visited").await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_set_expires_a_fixed_time_after_its_first_member() {
        for store in every_backend().await {
            let ttl = Some(Duration::from_millis(300));
            assert!(store.set_add("short", "a", ttl).await.unwrap());
            assert_eq!(store.set_members("short").await.unwrap(), ["a"]);
            // Later adds do not push the expiry back: poll with a deadline while adding.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut expired = false;
            while Instant::now() < deadline {
                let members = store.set_members("short").await.unwrap();
                if members.is_empty() {
                    expired = true;
                    break;
                }
                store.set_add("short", "b", ttl).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(expired, "a set outlived its ttl on {store:?}");
        }
    }

    #[tokio::test]
    async fn sets_do_not_mix_with_other_kinds() {
        for store in every_backend().await {
            store.set("text", b"v", None).await.unwrap();
            assert!(store.set_add("text", "m", None).await.is_err());
            assert!(store.set_members("text").await.is_err());
            store.set_add("members", "m", None).await.unwrap();
            assert!(store.get("members").await.is_err());
            assert!(store.increment("members", 1).await.is_err());
            assert!(store.hll_add("members", "m", None).await.is_err());
            store.delete("text").await.unwrap();
            store.delete("members").await.unwrap();
        }
    }

    #[test]
    fn prefixes_nest_and_an_empty_one_adds_nothing() {
        let store = KeyValueStore::in_memory();
        assert_eq!(store.key("k"), "k");
        let service = store.with_prefix("catalog");
        assert_eq!(service.key("k"), "catalog:k");
        assert_eq!(service.with_prefix("test").key("k"), "catalog:test:k");
        assert_eq!(service.with_prefix("").key("k"), "catalog:k");
    }
}
