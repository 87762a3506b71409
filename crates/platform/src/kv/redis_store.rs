//! The Redis backend: commands over a [`ConnectionManager`] (one multiplexed connection that
//! reconnects by itself) and locks through rslock's Redlock `LockManager`.
//!
//! Every call is bounded by the store's operation timeout, whatever the driver's own timeouts
//! say, so a slow or partitioned Redis costs a request at most that long. Multi-step operations
//! (rate limiter, HyperLogLog and set with expiry) are Lua scripts so that no crash or concurrent caller
//! can observe them half done.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};

use super::{KvError, RateDecision};

/// Lower bound of the connect deadline: a TCP and HELLO round trip must have a fair chance even
/// when the operation timeout is tuned very low. An unreachable host (refused) fails at once.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// INCR, and start the window on the first hit. The `PTTL < 0` branch also repairs a counter
/// left without expiry (by a manual SET, say), which would otherwise block its key for good;
/// it works on Redis versions before `PEXPIRE … NX` (7.0).
const RATE_LIMIT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// PFADD, and give the key its ttl only if it has none, so the ttl counts from the first
/// member (see `KeyValueStore::hll_add`).
const HLL_ADD_SCRIPT: &str = r"
local changed = redis.call('PFADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return changed
";

/// SADD, and give the key its ttl only if it has none (as for HyperLogLogs).
const SET_ADD_SCRIPT: &str = r"
local added = redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return added
";

#[derive(Clone)]
pub(crate) struct RedisStore {
    connection: ConnectionManager,
    locks: rslock::LockManager,
    op_timeout: Duration,
    scripts: Arc<Scripts>,
}

/// Scripts hash their source once here; invocations then send EVALSHA and fall back to EVAL
/// only the first time a server has not seen them.
struct Scripts {
    rate_limit: Script,
    hll_add: Script,
    set_add: Script,
}

impl RedisStore {
    pub(crate) async fn connect(url: &str, op_timeout: Duration) -> Result<Self, KvError> {
        // Never echo the URL: it may carry a password.
        let client = redis::Client::open(url)
            .map_err(|error| KvError::Unavailable(format!("invalid Redis URL: {error}")))?;
        let connect_timeout = op_timeout.max(MIN_CONNECT_TIMEOUT);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(op_timeout))
            // A handful of quick reconnect attempts; beyond that callers see errors and their
            // own retry/breaker policy decides.
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(1));
        let connection = tokio::time::timeout(connect_timeout, async {
            let mut connection = ConnectionManager::new_with_config(client.clone(), config).await?;
            // Authentication and ACL problems surface here rather than on the first request.
            redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await?;
            Ok::<_, RedisError>(connection)
        })
        .await
        .map_err(|_| {
            KvError::Unavailable(format!(
                "could not connect to Redis within {connect_timeout:?}"
            ))
        })?
        .map_err(|error| KvError::Unavailable(format!("could not connect to Redis: {error}")))?;

        // `LockManager::new` unwraps `Client::open`; hand it the client we already validated.
        let mut locks = rslock::LockManager::from_clients(vec![client]);
        // `try_lock` is one attempt: waiting for a lock is the caller's decision. (A zero retry
        // delay would make rslock's jitter range empty, hence 1 ms, never used with 1 attempt.)
        locks.set_retry(1, Duration::from_millis(1));

        Ok(Self {
            connection,
            locks,
            op_timeout,
            scripts: Arc::new(Scripts {
                rate_limit: Script::new(RATE_LIMIT_SCRIPT),
                hll_add: Script::new(HLL_ADD_SCRIPT),
                set_add: Script::new(SET_ADD_SCRIPT),
            }),
        })
    }

    /// Runs one Redis exchange under the operation deadline.
    async fn bounded<T>(
        &self,
        exchange: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, KvError> {
        match tokio::time::timeout(self.op_timeout, exchange).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) if error.is_timeout() => Err(KvError::Timeout),
            Ok(Err(error)) => Err(KvError::Unavailable(error.to_string())),
            Err(_) => Err(KvError::Timeout),
        }
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let mut connection = self.connection.clone();
        self.bounded(redis::cmd("GET").arg(key).query_async(&mut connection))
            .await
    }

    pub(crate) async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("SET");
        command.arg(key).arg(value);
        if let Some(ttl) = ttl {
            command.arg("PX").arg(millis(ttl));
        }
        self.bounded(command.query_async::<()>(&mut connection))
            .await
    }

    pub(crate) async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("SET");
        command.arg(key).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            command.arg("PX").arg(millis(ttl));
        }
        // OK when set, nil when the key already existed.
        let reply: Value = self.bounded(command.query_async(&mut connection)).await?;
        Ok(!matches!(reply, Value::Nil))
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        self.bounded(
            redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut connection),
        )
        .await
    }

    pub(crate) async fn increment(&self, key: &str, by: i64) -> Result<i64, KvError> {
        let mut connection = self.connection.clone();
        self.bounded(
            redis::cmd("INCRBY")
                .arg(key)
                .arg(by)
                .query_async(&mut connection),
        )
        .await
    }

    pub(crate) async fn counter(&self, key: &str) -> Result<i64, KvError> {
        let mut connection = self.connection.clone();
        let value: Option<i64> = self
            .bounded(redis::cmd("GET").arg(key).query_async(&mut connection))
            .await?;
        Ok(value.unwrap_or(0))
    }

    pub(crate) async fn hll_add(
        &self,
        key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let mut connection = self.connection.clone();
        let changed: i64 = match ttl {
            None => {
                self.bounded(
                    redis::cmd("PFADD")
                        .arg(key)
                        .arg(member)
                        .query_async(&mut connection),
                )
                .await?
            }
            Some(ttl) => {
                self.bounded(async {
                    self.scripts
                        .hll_add
                        .key(key)
                        .arg(member)
                        .arg(millis(ttl))
                        .invoke_async(&mut connection)
                        .await
                })
                .await?
            }
        };
        Ok(changed == 1)
    }

    pub(crate) async fn hll_count(&self, key: &str) -> Result<u64, KvError> {
        let mut connection = self.connection.clone();
        self.bounded(redis::cmd("PFCOUNT").arg(key).query_async(&mut connection))
            .await
    }

    pub(crate) async fn set_add(
        &self,
        key: &str,
        member: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let mut connection = self.connection.clone();
        let added: i64 = match ttl {
            None => {
                self.bounded(
                    redis::cmd("SADD")
                        .arg(key)
                        .arg(member)
                        .query_async(&mut connection),
                )
                .await?
            }
            Some(ttl) => {
                self.bounded(async {
                    self.scripts
                        .set_add
                        .key(key)
                        .arg(member)
                        .arg(millis(ttl))
                        .invoke_async(&mut connection)
                        .await
                })
                .await?
            }
        };
        Ok(added == 1)
    }

    pub(crate) async fn set_members(&self, key: &str) -> Result<Vec<String>, KvError> {
        let mut connection = self.connection.clone();
        self.bounded(redis::cmd("SMEMBERS").arg(key).query_async(&mut connection))
            .await
    }

    pub(crate) async fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, KvError> {
        let mut connection = self.connection.clone();
        let (count, ttl_millis): (i64, i64) = self
            .bounded(async {
                self.scripts
                    .rate_limit
                    .key(key)
                    .arg(millis(window))
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        let until_reset = Duration::from_millis(u64::try_from(ttl_millis).unwrap_or(0));
        Ok(RateDecision::from_count(count, limit, until_reset))
    }

    /// One Redlock attempt. `Ok(None)` means someone else holds the resource.
    pub(crate) async fn try_lock(
        &self,
        resource: &str,
        ttl: Duration,
    ) -> Result<Option<rslock::Lock>, KvError> {
        let attempt =
            tokio::time::timeout(self.op_timeout, self.locks.lock(resource.as_bytes(), ttl))
                .await
                .map_err(|_| KvError::Timeout)?;
        match attempt {
            Ok(lock) => Ok(Some(lock)),
            // rslock reports "held by someone else" and "could not reach Redis" alike; a PING
            // tells them apart so an outage is not mistaken for contention.
            Err(rslock::LockError::Unavailable) => {
                self.ping().await?;
                Ok(None)
            }
            // Acquiring took longer than the lock would live: not a usable lock.
            Err(rslock::LockError::TtlExceeded) => Err(KvError::Timeout),
            Err(error) => Err(KvError::Unavailable(error.to_string())),
        }
    }

    /// Best-effort release, as in Redlock: rslock does not report whether the delete reached
    /// Redis; if it did not, the key expires at its ttl.
    pub(crate) async fn unlock(&self, lock: &rslock::Lock) -> Result<(), KvError> {
        tokio::time::timeout(self.op_timeout, self.locks.unlock(lock))
            .await
            .map_err(|_| KvError::Timeout)
    }

    /// Restarts the lock's ttl if this token still holds it; `Ok(None)` when it no longer does.
    pub(crate) async fn extend_lock(
        &self,
        lock: &rslock::Lock,
        ttl: Duration,
    ) -> Result<Option<rslock::Lock>, KvError> {
        let attempt = tokio::time::timeout(self.op_timeout, self.locks.extend(lock, ttl))
            .await
            .map_err(|_| KvError::Timeout)?;
        match attempt {
            Ok(extended) => Ok(Some(extended)),
            Err(rslock::LockError::Unavailable) => {
                self.ping().await?;
                Ok(None)
            }
            Err(rslock::LockError::TtlExceeded) => Err(KvError::Timeout),
            Err(error) => Err(KvError::Unavailable(error.to_string())),
        }
    }

    async fn ping(&self) -> Result<(), KvError> {
        let mut connection = self.connection.clone();
        self.bounded(redis::cmd("PING").query_async::<()>(&mut connection))
            .await
    }
}

/// Redis rejects a zero expiry, and sub-millisecond ttls would otherwise round to it: round up
/// to whole milliseconds, at least one.
fn millis(duration: Duration) -> u64 {
    let millis = duration.as_nanos().div_ceil(1_000_000).max(1);
    u64::try_from(millis).unwrap_or(u64::MAX)
}
