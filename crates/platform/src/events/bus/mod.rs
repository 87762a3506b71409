//! The event bus: append-only streams read by consumer groups, with Redis Streams semantics.
//!
//! [`EventBus`] is a cloneable handle over a [`BusBackend`]: Redis Streams in production, or the
//! in-process bus of the embedded fleet (where all services of the process must share one
//! instance: build it once and hand out clones). Both behave alike:
//!
//! - [`publish`](BusBackend::publish) appends entries to a stream, trimming it to about
//!   `max_stream_length` entries so memory stays bounded.
//! - A consumer group reads each entry once ([`read`](BusBackend::read)); a read entry is
//!   *pending* for the consumer that got it until [`ack`](BusBackend::ack)ed. A consumer that dies
//!   leaves its entries pending; once idle for the visibility timeout, another consumer takes
//!   them over with [`claim`](BusBackend::claim), and their delivery count goes up.
//! - Reading or claiming with a group that does not exist (never created, or lost with a Redis
//!   restart) fails with [`BusError::NoGroup`]; [`ensure_group`](BusBackend::ensure_group)
//!   creates the group (and the stream) reading from the beginning.
//! - An *epoch* marker per stream tells the relay whether the bus still holds what was
//!   published: Redis keeps nothing on disk here, so after a restart the marker is gone along
//!   with the streams.
//!
//! The trait is public so that tests can wrap a real backend to inject faults (a publish whose
//! answer is lost, a consumer that dies before its ack) without mocking Redis.

mod memory;
mod redis;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::EventEnvelope;
use super::config::EventsConfig;

/// Why a bus operation failed.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The consumer group does not exist on this stream (lost with a Redis restart, or never
    /// created); create it with `ensure_group` and try again.
    #[error("consumer group `{group}` does not exist on stream `{stream}`")]
    NoGroup { stream: String, group: String },
    /// Redis could not be reached, refused the command or did not answer in time.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// One entry handed to a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The stream's logical name (`order`), without the key prefix.
    pub stream: String,
    /// The bus's id of the entry (`<ms>-<seq>`), used to acknowledge it.
    pub entry_id: String,
    /// How many times the entry has been delivered to the group, this time included.
    pub deliveries: u64,
    /// The event, or why the entry could not be decoded (not written by a relay).
    pub event: Result<EventEnvelope, String>,
}

/// What a bus does; see the module documentation for the semantics both backends share.
/// Stream names are logical (`order`); a backend adds its key prefix.
#[async_trait::async_trait]
pub trait BusBackend: Send + Sync + 'static {
    /// Appends `events` to `stream`, in order.
    async fn publish(&self, stream: &str, events: &[EventEnvelope]) -> Result<(), BusError>;

    /// Creates `group` on `stream` (and the stream), reading from its first entry; an existing
    /// group is left as it is.
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), BusError>;

    /// Up to `count` entries never delivered to `group`, from any of `streams`, now pending for
    /// `consumer`. Waits up to `block` for the first one; empty when none came.
    async fn read(
        &self,
        group: &str,
        consumer: &str,
        streams: &[String],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Takes over up to `count` entries of `stream` pending in `group` for longer than
    /// `min_idle` (whoever holds them), oldest first; each one's delivery count goes up.
    async fn claim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError>;

    /// Resets the idle time of a pending entry `consumer` is still working on, so nobody claims
    /// it while its handler retries.
    async fn touch(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        entry_id: &str,
    ) -> Result<(), BusError>;

    /// Acknowledges entries: they leave the group's pending list for good.
    async fn ack(&self, stream: &str, group: &str, entry_ids: &[String]) -> Result<(), BusError>;

    /// Forgets `consumer` in `group` on each of `streams` if it holds no pending entries (a
    /// consumer stopping for good), so the group's consumer list does not grow with every
    /// restart. Entries still pending keep it listed until they are claimed.
    async fn remove_consumer(
        &self,
        streams: &[String],
        group: &str,
        consumer: &str,
    ) -> Result<(), BusError> {
        // The in-process bus keeps no consumer list: nothing to forget.
        let _ = (streams, group, consumer);
        Ok(())
    }

    /// Whether `stream`'s epoch marker exists, i.e. the bus has not lost its data since
    /// [`set_epoch`](Self::set_epoch).
    async fn has_epoch(&self, stream: &str) -> Result<bool, BusError>;

    /// Sets `stream`'s epoch marker.
    async fn set_epoch(&self, stream: &str) -> Result<(), BusError>;
}

/// A handle to the event bus; cheap to clone, clones share the backend.
#[derive(Clone)]
pub struct EventBus {
    backend: Arc<dyn BusBackend>,
    kind: &'static str,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("EventBus")
            .field("backend", &self.kind)
            .finish()
    }
}

impl EventBus {
    /// A fresh in-process bus trimming each stream to about `config.max_stream_length` entries.
    /// Every call makes an independent bus: the embedded fleet makes one and gives every
    /// service a clone.
    pub fn in_memory(config: &EventsConfig) -> Self {
        Self {
            backend: Arc::new(memory::MemoryBus::new(config.max_stream_length)),
            kind: "memory",
        }
    }

    /// The bus `config.bus_url` names: a fresh in-process bus for `memory`, or Redis, which is
    /// pinged so that a misconfigured service stops at startup.
    pub async fn connect(config: &EventsConfig) -> Result<Self, BusError> {
        if config.is_memory_bus() {
            return Ok(Self::in_memory(config));
        }
        Ok(Self {
            backend: Arc::new(redis::RedisBus::connect(config).await?),
            kind: "redis",
        })
    }

    /// A bus over any backend, e.g. a test's fault-injecting wrapper around a real one.
    pub fn from_backend(backend: Arc<dyn BusBackend>) -> Self {
        Self {
            backend,
            kind: "custom",
        }
    }

    /// The backend, for the relay and consumers (and wrappers).
    pub fn backend(&self) -> &Arc<dyn BusBackend> {
        &self.backend
    }
}

/// The fields of a stream entry, in the order they are written. Redis field names are
/// short: they are repeated in every entry.
pub(crate) const FIELD_EVENT_ID: &str = "id";
pub(crate) const FIELD_TYPE: &str = "type";
pub(crate) const FIELD_AGGREGATE: &str = "agg";
pub(crate) const FIELD_OCCURRED_AT: &str = "at";
pub(crate) const FIELD_TRACEPARENT: &str = "tp";
pub(crate) const FIELD_PAYLOAD: &str = "data";

/// The entry fields of `event` (the occurrence time as microseconds since the epoch).
pub(crate) fn encode(event: &EventEnvelope) -> Vec<(&'static str, Vec<u8>)> {
    let mut fields = vec![
        (FIELD_EVENT_ID, event.event_id.clone().into_bytes()),
        (FIELD_TYPE, event.event_type.clone().into_bytes()),
        (FIELD_AGGREGATE, event.aggregate_id.clone().into_bytes()),
        (
            FIELD_OCCURRED_AT,
            event
                .occurred_at
                .timestamp_micros()
                .to_string()
                .into_bytes(),
        ),
    ];
    if let Some(traceparent) = &event.traceparent {
        fields.push((FIELD_TRACEPARENT, traceparent.clone().into_bytes()));
    }
    fields.push((FIELD_PAYLOAD, event.payload.clone()));
    fields
}

/// The event in an entry's fields, or what is wrong with them.
pub(crate) fn decode(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<EventEnvelope, String> {
    let mut event_id = None;
    let mut event_type = None;
    let mut aggregate_id = None;
    let mut occurred_at = None;
    let mut traceparent = None;
    let mut payload = None;
    let text = |value: Vec<u8>, name: &str| {
        String::from_utf8(value).map_err(|_| format!("field `{name}` is not UTF-8"))
    };
    for (name, value) in fields {
        match std::str::from_utf8(&name).unwrap_or_default() {
            FIELD_EVENT_ID => event_id = Some(text(value, FIELD_EVENT_ID)?),
            FIELD_TYPE => event_type = Some(text(value, FIELD_TYPE)?),
            FIELD_AGGREGATE => aggregate_id = Some(text(value, FIELD_AGGREGATE)?),
            FIELD_OCCURRED_AT => {
                let micros: i64 = text(value, FIELD_OCCURRED_AT)?
                    .parse()
                    .map_err(|_| "field `at` is not a number".to_owned())?;
                occurred_at = Some(
                    Utc.timestamp_micros(micros)
                        .single()
                        .ok_or_else(|| "field `at` is out of range".to_owned())?,
                );
            }
            FIELD_TRACEPARENT => traceparent = Some(text(value, FIELD_TRACEPARENT)?),
            FIELD_PAYLOAD => payload = Some(value),
            // Unknown fields are a newer producer's additions; an older consumer ignores them.
            _ => {}
        }
    }
    let missing = |name: &str| format!("field `{name}` is missing");
    Ok(EventEnvelope {
        event_id: event_id.ok_or_else(|| missing(FIELD_EVENT_ID))?,
        event_type: event_type.ok_or_else(|| missing(FIELD_TYPE))?,
        aggregate_id: aggregate_id.ok_or_else(|| missing(FIELD_AGGREGATE))?,
        occurred_at: occurred_at.ok_or_else(|| missing(FIELD_OCCURRED_AT))?,
        traceparent,
        payload: payload.ok_or_else(|| missing(FIELD_PAYLOAD))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(fields: Vec<(&'static str, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .into_iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), value))
            .collect()
    }

    #[test]
    fn entries_round_trip_with_and_without_a_trace() {
        let mut event = EventEnvelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            event_type: "OrderPaid".into(),
            aggregate_id: "42".into(),
            occurred_at: Utc.timestamp_micros(1_764_547_200_123_456).unwrap(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            payload: vec![0, 159, 146, 150, 255],
        };
        assert_eq!(decode(owned(encode(&event))), Ok(event.clone()));
        event.traceparent = None;
        assert_eq!(decode(owned(encode(&event))), Ok(event));
    }

    #[test]
    fn foreign_entries_say_what_is_wrong() {
        let error = decode(vec![(b"id".to_vec(), b"x".to_vec())]).unwrap_err();
        assert!(error.contains("`type`"), "{error}");
        let mut fields = owned(encode(&EventEnvelope {
            event_id: "x".into(),
            event_type: "T".into(),
            aggregate_id: "a".into(),
            occurred_at: Utc::now(),
            traceparent: None,
            payload: vec![],
        }));
        fields[3].1 = b"yesterday".to_vec();
        assert!(decode(fields).unwrap_err().contains("`at`"));
    }
}
