//! The Redis Streams backend: one stream key per producing service, consumer groups per
//! consuming service.
//!
//! Commands go over one [`ConnectionManager`] (multiplexed, reconnecting), bounded by the
//! operation timeout. The blocking `XREADGROUP … BLOCK` is the exception: Redis answers the
//! commands of one connection in order, so a blocked read would hold up every other command on
//! a shared connection. Reads therefore take a connection from a small pool of their own, and a
//! read that timed out or was cancelled drops its connection rather than hand a still-blocked
//! one to the next reader.
//!
//! Keys: stream `order` is `<prefix>:order`, its epoch marker `<prefix>:order:epoch`. The epoch
//! marker has no expiry; it disappears only with Redis's data (a restart of a Redis that keeps
//! nothing on disk, a flush), which is exactly what the relay needs to detect.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Value};

use super::{BusBackend, BusError, Delivery, decode, encode};
use crate::events::EventEnvelope;
use crate::events::config::EventsConfig;

/// Lower bound of the connect deadline, as for the key-value store.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle read connections kept for reuse; more concurrent readers open (and close) their own.
const MAX_IDLE_READERS: usize = 8;
/// `XAUTOCLAIM` scans a bounded slice of the pending list per call; this many calls at most.
const MAX_CLAIM_PAGES: usize = 10;

pub(crate) struct RedisBus {
    client: redis::Client,
    connection: ConnectionManager,
    readers: Mutex<Vec<ConnectionManager>>,
    prefix: String,
    max_length: u64,
    op_timeout: Duration,
}

impl RedisBus {
    pub(crate) async fn connect(config: &EventsConfig) -> Result<Self, BusError> {
        // Never echo the URL: it may carry a password.
        let client = redis::Client::open(config.bus_url.as_str())
            .map_err(|error| BusError::Unavailable(format!("invalid Redis URL: {error}")))?;
        let op_timeout = config.redis_op_timeout();
        let connection = open(&client, op_timeout).await?;
        Ok(Self {
            client,
            connection,
            readers: Mutex::new(Vec::new()),
            prefix: config.stream_prefix.clone(),
            max_length: config.max_stream_length,
            op_timeout,
        })
    }

    fn stream_key(&self, stream: &str) -> String {
        format!("{}:{stream}", self.prefix)
    }

    fn epoch_key(&self, stream: &str) -> String {
        format!("{}:{stream}:epoch", self.prefix)
    }

    /// Runs one exchange on the shared connection under the operation deadline.
    async fn bounded<T>(
        &self,
        exchange: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, BusError> {
        match tokio::time::timeout(self.op_timeout, exchange).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(BusError::Unavailable("Redis did not answer in time".into())),
        }
    }

    fn take_reader(&self) -> Option<ConnectionManager> {
        self.readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }

    fn return_reader(&self, connection: ConnectionManager) {
        let mut readers = self
            .readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if readers.len() < MAX_IDLE_READERS {
            readers.push(connection);
        }
    }

    /// The delivery counts of `entry_ids` (all pending for `consumer`), by id.
    async fn delivery_counts(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        entry_ids: &[String],
    ) -> Result<Vec<(String, u64)>, BusError> {
        let (Some(first), Some(last)) = (entry_ids.first(), entry_ids.last()) else {
            return Ok(Vec::new());
        };
        let mut connection = self.connection.clone();
        let reply: Value = self
            .bounded(
                redis::cmd("XPENDING")
                    .arg(key)
                    .arg(group)
                    .arg(first)
                    .arg(last)
                    .arg(entry_ids.len())
                    .arg(consumer)
                    .query_async(&mut connection),
            )
            .await?;
        let mut counts = Vec::new();
        for row in items(reply) {
            let fields = items(row);
            if let (Some(id), Some(count)) = (fields.first(), fields.get(3)) {
                counts.push((text(id), integer(count).max(1)));
            }
        }
        Ok(counts)
    }
}

async fn open(client: &redis::Client, op_timeout: Duration) -> Result<ConnectionManager, BusError> {
    let connect_timeout = op_timeout.max(MIN_CONNECT_TIMEOUT);
    // No response timeout of the driver's own: every call is bounded by the caller (the
    // operation timeout, or a read's block time plus it).
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(None)
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(1));
    tokio::time::timeout(connect_timeout, async {
        let mut connection = ConnectionManager::new_with_config(client.clone(), config).await?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await?;
        Ok::<_, RedisError>(connection)
    })
    .await
    .map_err(|_| {
        BusError::Unavailable(format!(
            "could not connect to Redis within {connect_timeout:?}"
        ))
    })?
    .map_err(|error| BusError::Unavailable(format!("could not connect to Redis: {error}")))
}

fn unavailable(error: RedisError) -> BusError {
    BusError::Unavailable(error.to_string())
}

fn is_no_group(error: &RedisError) -> bool {
    error.code() == Some("NOGROUP")
}

/// The elements of an array-like reply (RESP2 arrays, RESP3 sets and maps flattened).
fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(values) | Value::Set(values) => values,
        Value::Map(pairs) => pairs
            .into_iter()
            .flat_map(|(key, value)| [key, value])
            .collect(),
        Value::Attribute { data, .. } => items(*data),
        _ => Vec::new(),
    }
}

fn bytes(value: Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes,
        Value::SimpleString(text) => text.into_bytes(),
        Value::VerbatimString { text, .. } => text.into_bytes(),
        Value::Int(number) => number.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn text(value: &Value) -> String {
    String::from_utf8_lossy(&bytes(value.clone())).into_owned()
}

fn integer(value: &Value) -> u64 {
    match value {
        Value::Int(number) => u64::try_from(*number).unwrap_or(0),
        other => text(other).parse().unwrap_or(0),
    }
}

/// `[id, [field, value, …]]` entries → (id, event); a `nil` field list is an entry trimmed
/// while pending.
fn entries(value: Value) -> Vec<(String, Result<EventEnvelope, String>)> {
    items(value)
        .into_iter()
        .filter_map(|entry| {
            let mut parts = items(entry).into_iter();
            let id = text(&parts.next()?);
            let fields = parts.next().unwrap_or(Value::Nil);
            if matches!(fields, Value::Nil) {
                return Some((id, Err("the entry was trimmed from the stream".to_owned())));
            }
            let mut flat = items(fields).into_iter();
            let mut pairs = Vec::new();
            while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                pairs.push((bytes(name), bytes(value)));
            }
            Some((id, decode(pairs)))
        })
        .collect()
}

#[async_trait::async_trait]
impl BusBackend for RedisBus {
    async fn publish(&self, stream: &str, events: &[EventEnvelope]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let key = self.stream_key(stream);
        // One round trip; a pipeline keeps the order of its commands.
        let mut pipeline = redis::pipe();
        for event in events {
            let command = pipeline
                .cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_length)
                .arg("*");
            for (name, value) in encode(event) {
                command.arg(name).arg(value);
            }
            command.ignore();
        }
        let mut connection = self.connection.clone();
        self.bounded(pipeline.query_async::<()>(&mut connection))
            .await
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), BusError> {
        let mut connection = self.connection.clone();
        let created = tokio::time::timeout(
            self.op_timeout,
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.stream_key(stream))
                .arg(group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async::<()>(&mut connection),
        )
        .await
        .map_err(|_| BusError::Unavailable("Redis did not answer in time".into()))?;
        match created {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn read(
        &self,
        group: &str,
        consumer: &str,
        streams: &[String],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = match self.take_reader() {
            Some(connection) => connection,
            None => open(&self.client, self.op_timeout).await?,
        };
        // BLOCK 0 would wait forever.
        let block_ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS");
        for stream in streams {
            command.arg(self.stream_key(stream));
        }
        for _ in streams {
            command.arg(">");
        }
        let reply = tokio::time::timeout(
            block + self.op_timeout,
            command.query_async::<Value>(&mut connection),
        )
        .await;
        let reply = match reply {
            Err(_) => {
                // The connection may still be blocked server-side: do not reuse it.
                return Err(BusError::Unavailable(
                    "Redis did not answer a read in time".into(),
                ));
            }
            Ok(Err(error)) if is_no_group(&error) => {
                self.return_reader(connection);
                return Err(BusError::NoGroup {
                    stream: streams.join(","),
                    group: group.to_owned(),
                });
            }
            Ok(Err(error)) => return Err(unavailable(error)),
            Ok(Ok(reply)) => reply,
        };
        self.return_reader(connection);
        let mut deliveries = Vec::new();
        let mut parts = items(reply).into_iter();
        while let Some(first) = parts.next() {
            // RESP2: [[key, entries], …]; RESP3: a map key → entries, flattened by `items`.
            let (key, stream_entries) = match first {
                Value::Array(_) => {
                    let mut pair = items(first).into_iter();
                    (
                        pair.next().unwrap_or(Value::Nil),
                        pair.next().unwrap_or(Value::Nil),
                    )
                }
                key => (key, parts.next().unwrap_or(Value::Nil)),
            };
            let key = text(&key);
            let Some(stream) = streams.iter().find(|stream| self.stream_key(stream) == key) else {
                continue;
            };
            for (entry_id, event) in entries(stream_entries) {
                deliveries.push(Delivery {
                    stream: stream.clone(),
                    entry_id,
                    deliveries: 1,
                    event,
                });
            }
        }
        Ok(deliveries)
    }

    async fn claim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let key = self.stream_key(stream);
        let min_idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut claimed = Vec::new();
        let mut cursor = "0-0".to_owned();
        for _ in 0..MAX_CLAIM_PAGES {
            let mut connection = self.connection.clone();
            let reply = tokio::time::timeout(
                self.op_timeout,
                redis::cmd("XAUTOCLAIM")
                    .arg(&key)
                    .arg(group)
                    .arg(consumer)
                    .arg(min_idle_ms)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(count.saturating_sub(claimed.len()).max(1))
                    .query_async::<Value>(&mut connection),
            )
            .await
            .map_err(|_| BusError::Unavailable("Redis did not answer in time".into()))?;
            let reply = match reply {
                Ok(reply) => reply,
                Err(error) if is_no_group(&error) => {
                    return Err(BusError::NoGroup {
                        stream: stream.to_owned(),
                        group: group.to_owned(),
                    });
                }
                Err(error) => return Err(unavailable(error)),
            };
            // [next cursor, entries, deleted ids]: deleted (trimmed) entries have already
            // been removed from the pending list by Redis.
            let mut parts = items(reply).into_iter();
            cursor = parts.next().map(|value| text(&value)).unwrap_or_default();
            claimed.extend(entries(parts.next().unwrap_or(Value::Nil)));
            if claimed.len() >= count || cursor == "0-0" || cursor.is_empty() {
                break;
            }
        }
        let ids: Vec<String> = claimed.iter().map(|(id, _)| id.clone()).collect();
        let counts = self.delivery_counts(&key, group, consumer, &ids).await?;
        Ok(claimed
            .into_iter()
            .map(|(entry_id, event)| {
                let deliveries = counts
                    .iter()
                    .find(|(id, _)| *id == entry_id)
                    .map_or(2, |(_, count)| *count);
                Delivery {
                    stream: stream.to_owned(),
                    entry_id,
                    deliveries,
                    event,
                }
            })
            .collect())
    }

    async fn touch(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        entry_id: &str,
    ) -> Result<(), BusError> {
        let mut connection = self.connection.clone();
        // XCLAIM with min-idle 0 and JUSTID: resets the idle time without counting a delivery.
        self.bounded(
            redis::cmd("XCLAIM")
                .arg(self.stream_key(stream))
                .arg(group)
                .arg(consumer)
                .arg(0)
                .arg(entry_id)
                .arg("JUSTID")
                .query_async::<Value>(&mut connection),
        )
        .await
        .map(drop)
    }

    async fn ack(&self, stream: &str, group: &str, entry_ids: &[String]) -> Result<(), BusError> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        self.bounded(
            redis::cmd("XACK")
                .arg(self.stream_key(stream))
                .arg(group)
                .arg(entry_ids)
                .query_async::<i64>(&mut connection),
        )
        .await
        .map(drop)
    }

    async fn remove_consumer(
        &self,
        streams: &[String],
        group: &str,
        consumer: &str,
    ) -> Result<(), BusError> {
        for stream in streams {
            let key = self.stream_key(stream);
            let mut connection = self.connection.clone();
            let pending: Value = self
                .bounded(
                    redis::cmd("XPENDING")
                        .arg(&key)
                        .arg(group)
                        .arg("-")
                        .arg("+")
                        .arg(1)
                        .arg(consumer)
                        .query_async(&mut connection),
                )
                .await?;
            // DELCONSUMER drops the consumer's pending entries with it: only when it has none.
            // The consumer no longer reads, so none can arrive in between.
            if items(pending).is_empty() {
                self.bounded(
                    redis::cmd("XGROUP")
                        .arg("DELCONSUMER")
                        .arg(&key)
                        .arg(group)
                        .arg(consumer)
                        .query_async::<i64>(&mut connection),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn has_epoch(&self, stream: &str) -> Result<bool, BusError> {
        let mut connection = self.connection.clone();
        self.bounded(
            redis::cmd("EXISTS")
                .arg(self.epoch_key(stream))
                .query_async::<i64>(&mut connection),
        )
        .await
        .map(|found| found > 0)
    }

    async fn set_epoch(&self, stream: &str) -> Result<(), BusError> {
        let mut connection = self.connection.clone();
        self.bounded(
            redis::cmd("SET")
                .arg(self.epoch_key(stream))
                .arg(chrono::Utc::now().to_rfc3339())
                .query_async::<()>(&mut connection),
        )
        .await
    }
}
