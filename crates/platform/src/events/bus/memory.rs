//! The in-process bus of the embedded fleet: Redis Streams' consumer-group semantics over a map
//! guarded by one mutex.
//!
//! Each stream is a bounded queue of entries with increasing sequence numbers (ids `0-<seq>`).
//! Each group remembers the last sequence it handed out and a pending list (entry → consumer,
//! delivery time, delivery count), exactly the state Redis keeps, so the consumer code cannot
//! tell the backends apart. The mutex is only ever held for map updates, never across an
//! `.await`; blocked readers wait on a [`Notify`] that every publish wakes.
//!
//! Nothing survives the process: after a restart the epoch markers are gone too, and the relay
//! republishes its retention window, exactly as after a Redis restart.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{BusBackend, BusError, Delivery};
use crate::events::EventEnvelope;

pub(crate) struct MemoryBus {
    max_length: usize,
    state: Mutex<State>,
    published: Notify,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, Stream>,
    epochs: HashSet<String>,
}

#[derive(Default)]
struct Stream {
    /// Oldest first; sequence numbers strictly increase.
    entries: VecDeque<(u64, EventEnvelope)>,
    last_sequence: u64,
    groups: HashMap<String, Group>,
}

#[derive(Default)]
struct Group {
    /// The highest sequence handed out to this group (its "last delivered id").
    last_delivered: u64,
    pending: BTreeMap<u64, PendingEntry>,
}

struct PendingEntry {
    consumer: String,
    delivered_at: Instant,
    deliveries: u64,
}

fn entry_id(sequence: u64) -> String {
    format!("0-{sequence}")
}

fn sequence_of(entry_id: &str) -> Option<u64> {
    entry_id.strip_prefix("0-")?.parse().ok()
}

fn no_group(stream: &str, group: &str) -> BusError {
    BusError::NoGroup {
        stream: stream.to_owned(),
        group: group.to_owned(),
    }
}

impl MemoryBus {
    pub(crate) fn new(max_length: u64) -> Self {
        Self {
            max_length: usize::try_from(max_length).unwrap_or(usize::MAX).max(1),
            state: Mutex::new(State::default()),
            published: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent before it can panic (no user code
        // runs under the lock), so a poisoned lock still guards valid state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands out up to `count` new entries of `streams` to `consumer`; `Err` if a group is
    /// missing.
    fn take_new(
        &self,
        group: &str,
        consumer: &str,
        streams: &[String],
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut deliveries = Vec::new();
        for name in streams {
            let stream = state
                .streams
                .get_mut(name)
                .ok_or_else(|| no_group(name, group))?;
            let Stream {
                entries, groups, ..
            } = stream;
            let group_state = groups.get_mut(group).ok_or_else(|| no_group(name, group))?;
            let first =
                entries.partition_point(|(sequence, _)| *sequence <= group_state.last_delivered);
            for (sequence, event) in entries.iter().skip(first) {
                if deliveries.len() >= count {
                    break;
                }
                group_state.last_delivered = *sequence;
                group_state.pending.insert(
                    *sequence,
                    PendingEntry {
                        consumer: consumer.to_owned(),
                        delivered_at: now,
                        deliveries: 1,
                    },
                );
                deliveries.push(Delivery {
                    stream: name.clone(),
                    entry_id: entry_id(*sequence),
                    deliveries: 1,
                    event: Ok(event.clone()),
                });
            }
        }
        Ok(deliveries)
    }
}

#[async_trait::async_trait]
impl BusBackend for MemoryBus {
    async fn publish(&self, stream: &str, events: &[EventEnvelope]) -> Result<(), BusError> {
        {
            let mut state = self.lock();
            let stream = state.streams.entry(stream.to_owned()).or_default();
            for event in events {
                stream.last_sequence += 1;
                let sequence = stream.last_sequence;
                stream.entries.push_back((sequence, event.clone()));
            }
            // Like `MAXLEN`: the oldest entries go, read or not. Pending entries that lose their
            // entry are dropped when claimed, as Redis does.
            while stream.entries.len() > self.max_length {
                stream.entries.pop_front();
            }
        }
        self.published.notify_waiters();
        Ok(())
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), BusError> {
        let mut state = self.lock();
        state
            .streams
            .entry(stream.to_owned())
            .or_default()
            .groups
            .entry(group.to_owned())
            .or_default();
        Ok(())
    }

    async fn read(
        &self,
        group: &str,
        consumer: &str,
        streams: &[String],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let deadline = Instant::now() + block;
        loop {
            // Registered before looking, so a publish between the look and the wait still
            // wakes this reader.
            let published = self.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let deliveries = self.take_new(group, consumer, streams, count.max(1))?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
            if tokio::time::timeout_at(deadline, published).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn claim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError> {
        let now = Instant::now();
        let mut state = self.lock();
        let stream_state = state
            .streams
            .get_mut(stream)
            .ok_or_else(|| no_group(stream, group))?;
        let Stream {
            entries, groups, ..
        } = stream_state;
        let entries = &*entries;
        let group_state = groups
            .get_mut(group)
            .ok_or_else(|| no_group(stream, group))?;
        let mut deliveries = Vec::new();
        let mut trimmed = Vec::new();
        for (sequence, pending) in group_state.pending.iter_mut() {
            if deliveries.len() >= count {
                break;
            }
            if now.saturating_duration_since(pending.delivered_at) < min_idle {
                continue;
            }
            let index = entries.binary_search_by_key(sequence, |(entry, _)| *entry);
            let Ok(index) = index else {
                trimmed.push(*sequence);
                continue;
            };
            pending.consumer = consumer.to_owned();
            pending.delivered_at = now;
            pending.deliveries += 1;
            deliveries.push(Delivery {
                stream: stream.to_owned(),
                entry_id: entry_id(*sequence),
                deliveries: pending.deliveries,
                event: Ok(entries[index].1.clone()),
            });
        }
        for sequence in trimmed {
            group_state.pending.remove(&sequence);
        }
        Ok(deliveries)
    }

    async fn touch(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        entry_id: &str,
    ) -> Result<(), BusError> {
        let Some(sequence) = sequence_of(entry_id) else {
            return Ok(());
        };
        let mut state = self.lock();
        let pending = state
            .streams
            .get_mut(stream)
            .and_then(|stream| stream.groups.get_mut(group))
            .ok_or_else(|| no_group(stream, group))?
            .pending
            .get_mut(&sequence);
        if let Some(pending) = pending {
            pending.consumer = consumer.to_owned();
            pending.delivered_at = Instant::now();
        }
        Ok(())
    }

    async fn ack(&self, stream: &str, group: &str, entry_ids: &[String]) -> Result<(), BusError> {
        let mut state = self.lock();
        // Like XACK: acknowledging in a missing group or stream changes nothing.
        if let Some(group) = state
            .streams
            .get_mut(stream)
            .and_then(|stream| stream.groups.get_mut(group))
        {
            for sequence in entry_ids.iter().filter_map(|id| sequence_of(id)) {
                group.pending.remove(&sequence);
            }
        }
        Ok(())
    }

    async fn has_epoch(&self, stream: &str) -> Result<bool, BusError> {
        Ok(self.lock().epochs.contains(stream))
    }

    async fn set_epoch(&self, stream: &str) -> Result<(), BusError> {
        self.lock().epochs.insert(stream.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event(n: u32) -> EventEnvelope {
        EventEnvelope {
            event_id: format!("e{n}"),
            event_type: "T".into(),
            aggregate_id: "a".into(),
            occurred_at: Utc::now(),
            traceparent: None,
            payload: vec![],
        }
    }

    fn ids(deliveries: &[Delivery]) -> Vec<String> {
        deliveries
            .iter()
            .map(|delivery| delivery.event.as_ref().unwrap().event_id.clone())
            .collect()
    }

    const NOW: Duration = Duration::ZERO;

    #[tokio::test]
    async fn groups_read_each_entry_once_and_independently() {
        let bus = MemoryBus::new(100);
        let streams = vec!["s".to_owned()];
        assert!(matches!(
            bus.read("g", "c", &streams, 10, NOW).await,
            Err(BusError::NoGroup { .. })
        ));
        bus.ensure_group("s", "g").await.unwrap();
        bus.ensure_group("s", "h").await.unwrap();
        bus.publish("s", &[event(1), event(2), event(3)])
            .await
            .unwrap();
        let first = bus.read("g", "c", &streams, 2, NOW).await.unwrap();
        assert_eq!(ids(&first), ["e1", "e2"]);
        assert_eq!(
            ids(&bus.read("g", "c", &streams, 10, NOW).await.unwrap()),
            ["e3"]
        );
        assert!(
            bus.read("g", "c", &streams, 10, NOW)
                .await
                .unwrap()
                .is_empty()
        );
        // Another group starts from the beginning.
        assert_eq!(
            ids(&bus.read("h", "c", &streams, 10, NOW).await.unwrap()),
            ["e1", "e2", "e3"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unacknowledged_entries_are_claimed_after_the_visibility_timeout() {
        let bus = MemoryBus::new(100);
        let streams = vec!["s".to_owned()];
        bus.ensure_group("s", "g").await.unwrap();
        bus.publish("s", &[event(1), event(2)]).await.unwrap();
        let read = bus.read("g", "dead", &streams, 10, NOW).await.unwrap();
        bus.ack("s", "g", &[read[1].entry_id.clone()])
            .await
            .unwrap();
        let visibility = Duration::from_secs(30);
        assert!(
            bus.claim("s", "g", "b", visibility, 10)
                .await
                .unwrap()
                .is_empty()
        );
        tokio::time::advance(visibility).await;
        let claimed = bus.claim("s", "g", "b", visibility, 10).await.unwrap();
        assert_eq!(ids(&claimed), ["e1"]);
        assert_eq!(claimed[0].deliveries, 2);
        // Touching keeps a slow handler's entry from being claimed again.
        tokio::time::advance(visibility / 2).await;
        bus.touch("s", "g", "b", &claimed[0].entry_id)
            .await
            .unwrap();
        tokio::time::advance(visibility / 2).await;
        assert!(
            bus.claim("s", "g", "c", visibility, 10)
                .await
                .unwrap()
                .is_empty()
        );
        bus.ack("s", "g", &[claimed[0].entry_id.clone()])
            .await
            .unwrap();
        tokio::time::advance(visibility).await;
        assert!(
            bus.claim("s", "g", "c", visibility, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn streams_stay_bounded_and_trimmed_pending_entries_vanish() {
        let bus = MemoryBus::new(3);
        let streams = vec!["s".to_owned()];
        bus.ensure_group("s", "g").await.unwrap();
        bus.publish("s", &[event(1)]).await.unwrap();
        bus.read("g", "c", &streams, 10, NOW).await.unwrap();
        bus.publish("s", &[event(2), event(3), event(4), event(5)])
            .await
            .unwrap();
        assert_eq!(bus.lock().streams["s"].entries.len(), 3);
        assert!(bus.claim("s", "g", "c", NOW, 10).await.unwrap().is_empty());
        assert!(bus.lock().streams["s"].groups["g"].pending.is_empty());
        assert_eq!(
            ids(&bus.read("g", "c", &streams, 10, NOW).await.unwrap()),
            ["e3", "e4", "e5"]
        );
    }

    #[tokio::test]
    async fn a_blocked_read_wakes_on_publish() {
        let bus = std::sync::Arc::new(MemoryBus::new(100));
        bus.ensure_group("s", "g").await.unwrap();
        let reader = {
            let bus = bus.clone();
            tokio::spawn(async move {
                bus.read("g", "c", &["s".to_owned()], 10, Duration::from_secs(30))
                    .await
            })
        };
        tokio::task::yield_now().await;
        bus.publish("s", &[event(1)]).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("woken long before the block time")
            .unwrap()
            .unwrap();
        assert_eq!(ids(&read), ["e1"]);
        assert!(bus.has_epoch("s").await.is_ok_and(|present| !present));
        bus.set_epoch("s").await.unwrap();
        assert!(bus.has_epoch("s").await.unwrap());
    }
}
