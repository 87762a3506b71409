//! The relay: moves a service's outbox rows onto the bus, in id order, at least once.
//!
//! One relay task runs in every replica of a producing service, but only the holder of the
//! Redlock lease `relay:<service>` works; the others wait and take over when the lease lapses.
//! The lock only saves duplicate work: correctness never depends on it, because publishing a row
//! twice is harmless (every consumer's inbox recognises the event id).
//!
//! A round: read up to `relay_batch_size` unpublished rows by ascending id, publish them (one
//! pipeline per stream, in id order), then mark them published. A crash between publish and
//! mark publishes those rows again next round: at least once. The relay runs again at once
//! when [`RelayWaker::wake`] is called (the service does so after committing an event), when a
//! round filled its batch, and otherwise every `relay_poll_interval_ms`.
//!
//! Redis here keeps nothing on disk. Before publishing to a stream, and once per poll interval,
//! the relay checks the stream's epoch marker on the bus; when it is missing (first publish
//! ever, a Redis restart, an in-process bus after a process restart) the bus may have lost
//! entries nobody consumed yet, so every row published within the retention window is made
//! unpublished again and goes out anew, in id order. Rows stay in the outbox for that window
//! and are pruned after it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

use super::bus::{BusError, EventBus};
use super::config::EventsConfig;
use super::outbox::{self, Pending};
use crate::kv::{KeyValueStore, LockGuard};
use crate::shutdown::{Shutdown, Tasks};

/// Rows deleted per statement when pruning; the relay loops while there is more.
const PRUNE_BATCH: u64 = 1_000;

/// Publishes one service's outbox to the bus; see the module documentation.
pub struct Relay {
    service: String,
    db: DatabaseConnection,
    bus: EventBus,
    locks: KeyValueStore,
    config: EventsConfig,
    wake: Arc<Notify>,
}

/// Wakes a relay so it publishes what was just committed without waiting for its poll interval.
/// Cheap to clone; a wake while the relay is busy is remembered, never lost.
#[derive(Clone, Debug)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("{0}")]
    Bus(#[from] BusError),
}

impl Relay {
    /// A relay for `service`'s outbox (`db`), publishing to `bus`, electing itself through
    /// `locks` (the service's key-value store: Redis when replicas must agree).
    pub fn new(
        service: &str,
        db: DatabaseConnection,
        bus: EventBus,
        locks: KeyValueStore,
        config: &EventsConfig,
    ) -> Self {
        Self {
            service: service.to_owned(),
            db,
            bus,
            locks,
            config: config.clone(),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The handle the service calls after committing a transaction that appended events.
    pub fn waker(&self) -> RelayWaker {
        RelayWaker(self.wake.clone())
    }

    /// Runs the relay on `tasks` until `shutdown`; returns its waker.
    pub fn spawn(self, tasks: &Tasks, shutdown: &Shutdown) -> RelayWaker {
        let waker = self.waker();
        tasks.spawn(self.run(shutdown.clone()));
        waker
    }

    /// Runs until `shutdown`: waits for the lease, publishes while holding it, releases it.
    pub async fn run(self, shutdown: Shutdown) {
        let span = tracing::info_span!("events.relay", service = %self.service);
        self.run_until(shutdown).instrument(span).await
    }

    async fn run_until(self, shutdown: Shutdown) {
        let resource = format!("relay:{}", self.service);
        let mut state = Leadership::default();
        while !shutdown.is_triggered() {
            let lock = match self.locks.try_lock(&resource, self.config.lock_ttl()).await {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    // A standby: look again within a poll interval, so a lapsed lease is taken
                    // over quickly.
                    self.pause(&shutdown, self.config.poll_interval()).await;
                    continue;
                }
                Err(error) => {
                    // Without the lock store the relay could still publish safely, but every
                    // replica would; wait for the store instead, as publishing is not urgent
                    // enough to duplicate the work of the whole fleet.
                    tracing::warn!(%error, "relay lock unavailable");
                    self.pause(&shutdown, self.config.poll_interval()).await;
                    continue;
                }
            };
            tracing::info!("relay active");
            let lock = self.lead(lock, &shutdown, &mut state).await;
            if let Some(lock) = lock
                && let Err(error) = lock.release().await
            {
                tracing::warn!(%error, "relay lock release failed; it expires by itself");
            }
        }
    }

    /// Publishes while the lease holds; returns the lock if it should be released.
    async fn lead(
        &self,
        mut lock: LockGuard,
        shutdown: &Shutdown,
        state: &mut Leadership,
    ) -> Option<LockGuard> {
        let ttl = self.config.lock_ttl();
        let mut extended_at = Instant::now();
        let mut failures = 0u32;
        // Epochs are checked afresh by every new leader.
        state.epoch_checked_at = None;
        loop {
            if shutdown.is_triggered() {
                return Some(lock);
            }
            if extended_at.elapsed() >= ttl / 3 {
                match lock.extend(ttl).await {
                    Ok(true) => extended_at = Instant::now(),
                    Ok(false) => {
                        tracing::warn!("relay lease lost; standing by");
                        return None;
                    }
                    Err(error) => {
                        // The lease may still be ours until its ttl; keep working until then.
                        tracing::warn!(%error, "relay lease extension failed");
                        if extended_at.elapsed() >= ttl {
                            return None;
                        }
                    }
                }
            }
            match self.round(state).await {
                Ok(full) => {
                    failures = 0;
                    if !full {
                        self.idle(state).await;
                        self.wait_for_work(shutdown).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "relay round failed; retrying");
                    let delay = self.config.backoff().delay(failures);
                    failures = failures.saturating_add(1);
                    // Never sleep past the lease.
                    self.pause(shutdown, delay.min(ttl / 3)).await;
                }
            }
        }
    }

    /// One batch: publish the oldest unpublished rows and mark them. True if the batch was full
    /// (more may be waiting).
    async fn round(&self, state: &mut Leadership) -> Result<bool, RoundError> {
        let epochs_due = state
            .epoch_checked_at
            .is_none_or(|checked| checked.elapsed() >= self.config.poll_interval());
        if epochs_due {
            if state.known_streams.is_empty() {
                state.known_streams.extend(outbox::streams(&self.db).await?);
            }
            let known: Vec<String> = state.known_streams.iter().cloned().collect();
            for stream in &known {
                self.check_epoch(stream).await?;
            }
            state.epoch_checked_at = Some(Instant::now());
        }
        let batch = outbox::unpublished(&self.db, u64::from(self.config.relay_batch_size)).await?;
        if batch.is_empty() {
            return Ok(false);
        }
        let mut new_stream = false;
        for row in &batch {
            if !state.known_streams.contains(&row.stream) {
                state.known_streams.insert(row.stream.clone());
                new_stream |= self.check_epoch(&row.stream).await?;
            }
        }
        if new_stream {
            // Rows were made unpublished again: read the batch afresh, in id order.
            return Ok(true);
        }
        self.publish(&batch).await?;
        let ids: Vec<i64> = batch.iter().map(|row| row.id).collect();
        outbox::mark_published(&self.db, &ids).await?;
        Ok(batch.len() >= self.config.relay_batch_size as usize)
    }

    /// Publishes `batch` grouped by stream, each group in id order.
    async fn publish(&self, batch: &[Pending]) -> Result<(), BusError> {
        let mut streams: Vec<&str> = Vec::new();
        for row in batch {
            if !streams.contains(&row.stream.as_str()) {
                streams.push(&row.stream);
            }
        }
        for stream in streams {
            let events: Vec<_> = batch
                .iter()
                .filter(|row| row.stream == stream)
                .map(|row| row.envelope.clone())
                .collect();
            self.bus.backend().publish(stream, &events).await?;
            metrics::counter!("pillivery_events_published_total", "stream" => stream.to_owned())
                .increment(events.len() as u64);
        }
        Ok(())
    }

    /// When `stream`'s epoch marker is missing, republishes the retention window and sets the
    /// marker; true if it was missing. The rows are reset before the marker is set, so a crash
    /// in between only repeats the reset.
    async fn check_epoch(&self, stream: &str) -> Result<bool, RoundError> {
        if self.bus.backend().has_epoch(stream).await? {
            return Ok(false);
        }
        let since = Utc::now() - self.config.retention();
        let republished = outbox::unpublish_since(&self.db, stream, since).await?;
        self.bus.backend().set_epoch(stream).await?;
        if republished > 0 {
            tracing::warn!(
                stream,
                republished,
                "the bus lost its data (restart?); republishing the retention window"
            );
            metrics::counter!("pillivery_events_republished_total", "stream" => stream.to_owned())
                .increment(republished);
        }
        Ok(true)
    }

    /// Between busy periods: refresh the backlog gauges and prune old rows when due.
    async fn idle(&self, state: &mut Leadership) {
        let gauges_due = state
            .gauged_at
            .is_none_or(|gauged| gauged.elapsed() >= self.config.poll_interval());
        if gauges_due {
            state.gauged_at = Some(Instant::now());
            self.refresh_gauges().await;
        }
        self.prune_if_due(state).await;
    }

    /// The backlog gauges, refreshed at most once per poll interval: under load the relay idles
    /// after every wake, and two extra queries per commit would cost more than they tell.
    async fn refresh_gauges(&self) {
        match outbox::backlog(&self.db).await {
            Ok((count, oldest)) => {
                let lag = oldest.map_or(0.0, |oldest| {
                    (Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
                });
                metrics::gauge!("pillivery_events_outbox_unpublished", "service" => self.service.clone())
                    .set(count as f64);
                metrics::gauge!("pillivery_events_outbox_lag_seconds", "service" => self.service.clone())
                    .set(lag);
            }
            Err(error) => tracing::warn!(%error, "reading the outbox backlog failed"),
        }
    }

    async fn prune_if_due(&self, state: &mut Leadership) {
        let due = state
            .pruned_at
            .is_none_or(|pruned| pruned.elapsed() >= self.config.prune_interval());
        if !due {
            return;
        }
        state.pruned_at = Some(Instant::now());
        let before = Utc::now() - self.config.retention();
        loop {
            match outbox::prune(&self.db, before, PRUNE_BATCH).await {
                Ok(deleted) if deleted >= PRUNE_BATCH => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "pruning the outbox failed");
                    break;
                }
            }
        }
    }

    async fn wait_for_work(&self, shutdown: &Shutdown) {
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep(self.config.poll_interval()) => {}
            () = shutdown.wait() => {}
        }
    }

    async fn pause(&self, shutdown: &Shutdown, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.wait() => {}
        }
    }
}

/// What a relay remembers across rounds.
#[derive(Default)]
struct Leadership {
    /// Streams this outbox has published to; their epochs are checked every poll interval.
    known_streams: BTreeSet<String>,
    epoch_checked_at: Option<Instant>,
    gauged_at: Option<Instant>,
    pruned_at: Option<Instant>,
}
