//! `EventsConfig`: how a service reaches the event bus and paces its relay and consumers.
//!
//! One block per service (`events.*` in its configuration); the defaults suit production, and
//! tests shorten the intervals. [`EventsConfig::validate`] rejects combinations that would make
//! the machinery misbehave (a lock that expires between two extensions, a retention the inbox
//! does not cover) before any port is bound.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::resilience::Backoff;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// `memory` (an in-process bus: one process, the embedded fleet) or `redis://…` /
    /// `rediss://…` (Redis Streams, shared by every replica of every service).
    pub bus_url: String,
    /// Prefix of every Redis key of the bus: stream `order` lives at `<prefix>:order`.
    pub stream_prefix: String,
    /// Approximate cap on entries kept per stream (`XADD MAXLEN ~`); older entries are trimmed
    /// whether or not every group has read them, so keep it above the events of a retention
    /// window.
    pub max_stream_length: u64,
    /// Every Redis command except the blocking read gives up after this long.
    pub redis_op_timeout_ms: u64,
    /// Outbox rows published per round trip.
    pub relay_batch_size: u32,
    /// The relay looks for unpublished rows at least this often even when nobody wakes it
    /// (rows committed by a replica whose wake-up went to its own, standby relay).
    pub relay_poll_interval_ms: u64,
    /// Lease of the relay lock; extended while the relay runs.
    pub relay_lock_ttl_ms: u64,
    /// Published outbox rows are kept this long, and republished after the bus lost its data
    /// (a Redis restart); older rows are deleted.
    pub retention_seconds: u64,
    /// Inbox rows (processed event ids) are kept this long; must exceed `retention_seconds` so
    /// every republished event still finds its id.
    pub inbox_retention_seconds: u64,
    /// How often the relay and the consumers delete rows past their retention.
    pub prune_interval_ms: u64,
    /// Entries a consumer reads per round trip.
    pub consumer_batch_size: u32,
    /// How long a consumer's read waits for new entries before it looks again for stale ones.
    pub consumer_block_ms: u64,
    /// An entry delivered but not acknowledged for this long (its consumer died) is claimed by
    /// another consumer of the group.
    pub visibility_timeout_ms: u64,
    /// Attempts of a handler on one delivery before the event goes to the dead letters.
    pub max_attempts: u32,
    /// Deliveries of one entry (each one a consumer that died while handling it) before the
    /// event goes to the dead letters without another attempt: it may be what kills them.
    pub max_deliveries: u32,
    /// Jittered exponential backoff between attempts (and after bus or database errors).
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            bus_url: "memory".into(),
            stream_prefix: "pillivery:events".into(),
            max_stream_length: 100_000,
            redis_op_timeout_ms: 2_000,
            relay_batch_size: 100,
            relay_poll_interval_ms: 1_000,
            relay_lock_ttl_ms: 10_000,
            retention_seconds: 86_400,
            inbox_retention_seconds: 7 * 86_400,
            prune_interval_ms: 60_000,
            consumer_batch_size: 32,
            consumer_block_ms: 2_000,
            visibility_timeout_ms: 30_000,
            max_attempts: 5,
            max_deliveries: 10,
            backoff_base_ms: 100,
            backoff_max_ms: 10_000,
        }
    }
}

impl EventsConfig {
    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.bus_url.as_str();
        if !(url == "memory" || url.starts_with("redis://") || url.starts_with("rediss://")) {
            // Only the scheme: the URL may carry a password.
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(format!(
                "events.bus_url must be `memory` or a redis:// or rediss:// URL (got `{scheme}:…`)"
            ));
        }
        if self.stream_prefix.is_empty() || self.stream_prefix.contains(char::is_whitespace) {
            return Err("events.stream_prefix must be non-empty, without spaces".into());
        }
        let positive = [
            ("max_stream_length", self.max_stream_length),
            ("redis_op_timeout_ms", self.redis_op_timeout_ms),
            ("relay_batch_size", u64::from(self.relay_batch_size)),
            ("relay_poll_interval_ms", self.relay_poll_interval_ms),
            ("relay_lock_ttl_ms", self.relay_lock_ttl_ms),
            ("retention_seconds", self.retention_seconds),
            ("prune_interval_ms", self.prune_interval_ms),
            ("consumer_batch_size", u64::from(self.consumer_batch_size)),
            ("consumer_block_ms", self.consumer_block_ms),
            ("visibility_timeout_ms", self.visibility_timeout_ms),
            ("max_attempts", u64::from(self.max_attempts)),
            ("max_deliveries", u64::from(self.max_deliveries)),
            ("backoff_max_ms", self.backoff_max_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("events.{name} must be at least 1"));
        }
        // Batches are bounded so one round trip, one transaction and one pending list stay small.
        if self.relay_batch_size > 10_000 || self.consumer_batch_size > 10_000 {
            return Err(
                "events.relay_batch_size and events.consumer_batch_size must be at most 10000"
                    .into(),
            );
        }
        // The relay extends its lease once per round, and a round waits at most one poll
        // interval (or one Redis timeout); the lease must outlive that with room to spare.
        if self.relay_lock_ttl_ms < 2 * self.relay_poll_interval_ms.max(self.redis_op_timeout_ms) {
            return Err(
                "events.relay_lock_ttl_ms must be at least twice relay_poll_interval_ms and redis_op_timeout_ms"
                    .into(),
            );
        }
        if self.inbox_retention_seconds <= self.retention_seconds {
            return Err(
                "events.inbox_retention_seconds must exceed events.retention_seconds (republished events must still be recognised)"
                    .into(),
            );
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err("events.backoff_base_ms must not exceed events.backoff_max_ms".into());
        }
        Ok(())
    }

    /// Whether this config names the in-process bus.
    pub fn is_memory_bus(&self) -> bool {
        self.bus_url == "memory"
    }

    pub(crate) fn backoff(&self) -> Backoff {
        Backoff {
            base: Duration::from_millis(self.backoff_base_ms),
            max: Duration::from_millis(self.backoff_max_ms),
        }
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.relay_poll_interval_ms)
    }

    pub(crate) fn lock_ttl(&self) -> Duration {
        Duration::from_millis(self.relay_lock_ttl_ms)
    }

    pub(crate) fn retention(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.retention_seconds).unwrap_or(i64::MAX / 1000))
    }

    pub(crate) fn inbox_retention(&self) -> chrono::Duration {
        chrono::Duration::seconds(
            i64::try_from(self.inbox_retention_seconds).unwrap_or(i64::MAX / 1000),
        )
    }

    pub(crate) fn prune_interval(&self) -> Duration {
        Duration::from_millis(self.prune_interval_ms)
    }

    pub(crate) fn block(&self) -> Duration {
        Duration::from_millis(self.consumer_block_ms)
    }

    pub(crate) fn visibility_timeout(&self) -> Duration {
        Duration::from_millis(self.visibility_timeout_ms)
    }

    pub(crate) fn redis_op_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_op_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(EventsConfig::default().validate(), Ok(()));
        assert!(EventsConfig::default().is_memory_bus());
    }

    #[test]
    fn bad_combinations_are_rejected_with_the_key_named() {
        let cases: Vec<(EventsConfig, &str)> = vec![
            (
                EventsConfig {
                    bus_url: "kafka://x".into(),
                    ..Default::default()
                },
                "bus_url",
            ),
            (
                EventsConfig {
                    stream_prefix: String::new(),
                    ..Default::default()
                },
                "stream_prefix",
            ),
            (
                EventsConfig {
                    max_attempts: 0,
                    ..Default::default()
                },
                "max_attempts",
            ),
            (
                EventsConfig {
                    relay_batch_size: 10_001,
                    ..Default::default()
                },
                "relay_batch_size",
            ),
            (
                EventsConfig {
                    relay_lock_ttl_ms: 1_500,
                    ..Default::default()
                },
                "relay_lock_ttl_ms",
            ),
            (
                EventsConfig {
                    inbox_retention_seconds: 86_400,
                    ..Default::default()
                },
                "inbox_retention_seconds",
            ),
            (
                EventsConfig {
                    backoff_base_ms: 20_000,
                    ..Default::default()
                },
                "backoff_base_ms",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().expect_err(key);
            assert!(error.contains(key), "{error}");
        }
        let redis = EventsConfig {
            bus_url: "redis://:secret@redis:6379".into(),
            ..Default::default()
        };
        assert_eq!(redis.validate(), Ok(()));
        let wrong = EventsConfig {
            bus_url: "http://:secret@x".into(),
            ..Default::default()
        };
        assert!(!wrong.validate().unwrap_err().contains("secret"));
    }
}
