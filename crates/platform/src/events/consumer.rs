//! Consumers: read a group's entries from one or more streams and apply each event exactly once.
//!
//! A [`Consumer`] is one task per consuming service (its group, e.g. `catalog`) in each replica,
//! handling entries one at a time in stream order. For each entry:
//!
//! 1. skip (and acknowledge) events the [`EventHandler`] does not want, events already in the
//!    inbox, and events already waiting in the dead letters;
//! 2. call the handler with an [`InboxScope`]: the handler opens its transaction with
//!    [`InboxScope::begin`], which inserts the `(consumer, event_id)` inbox row first, writes its
//!    effect, and commits. A second delivery of the event finds the row (or waits on it and then
//!    finds it) and gets `None`: the effect happens once. A handler with nothing to write may
//!    just return `Ok`; the consumer then records the inbox row itself;
//! 3. on [`HandlerError::Retryable`], retry with jittered exponential backoff up to
//!    `max_attempts`, keeping the entry claimed meanwhile; on [`HandlerError::Permanent`], after
//!    the last attempt, or when the handler panics, write the event to `dead_letters` with the
//!    reason;
//! 4. acknowledge the entry.
//!
//! A consumer that dies between its effect and its acknowledgement leaves the entry pending;
//! after `visibility_timeout_ms` another consumer of the group claims it, finds the inbox row
//! and acknowledges it. An entry delivered more than `max_deliveries` times (consumers keep
//! dying on it) goes to the dead letters without another attempt. Database or bus outages are
//! not the event's fault: those steps are retried with backoff until they work or the process
//! stops, and never dead-letter an event.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use futures::FutureExt;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QuerySelect, SqlErr, TransactionTrait,
};
use tokio::time::Instant;
use tracing::Instrument;

use super::EventEnvelope;
use super::bus::{BusError, Delivery, EventBus};
use super::config::EventsConfig;
use super::dead_letters::{self, DeadLetters};
use super::entity::inbox_event;
use crate::shutdown::{Shutdown, Tasks};

/// Inbox rows deleted per statement when pruning.
const PRUNE_BATCH: u64 = 1_000;

/// Why a handler could not apply an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (a database hiccup, a neighbour briefly down): retried with backoff.
    #[error("{0}")]
    Retryable(String),
    /// Will never work as it is (a payload that does not decode, a reference to nothing):
    /// dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

impl From<DbErr> for HandlerError {
    /// Database errors are retried: most are transient (a lost connection, a deadlock, a busy
    /// SQLite), and one that is not still ends in the dead letters after `max_attempts`.
    fn from(error: DbErr) -> Self {
        HandlerError::Retryable(format!("database: {error}"))
    }
}

/// What a consuming service does with events.
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Which event types this consumer wants; others are acknowledged and skipped.
    fn wants(&self, event_type: &str) -> bool;

    /// Applies `event`. Write the effect in the transaction from [`InboxScope::begin`] and
    /// commit it; when `begin` answers `None` the event was applied before: return `Ok`. Calls
    /// to the outside world (a payment provider) come before `begin`, never inside the
    /// transaction.
    async fn handle(&self, event: &EventEnvelope, scope: &InboxScope) -> Result<(), HandlerError>;
}

/// The inbox of one event for one consumer: the handler's way into a transaction that also
/// records the event as processed.
pub struct InboxScope {
    db: DatabaseConnection,
    consumer: String,
    event_id: String,
    begun: AtomicBool,
}

impl InboxScope {
    /// A scope for `event_id` as seen by `consumer`. The consumer makes these; services make
    /// them only to test their handlers directly.
    pub fn new(db: DatabaseConnection, consumer: &str, event_id: &str) -> Self {
        Self {
            db,
            consumer: consumer.to_owned(),
            event_id: event_id.to_owned(),
            begun: AtomicBool::new(false),
        }
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// Begins a transaction and records the event in the inbox inside it; `None` when the event
    /// was already processed (nothing to do). Commit the transaction with the effect; dropping
    /// it rolls back both. Once per scope: a second call is an error (it would wait on the
    /// first transaction's own inbox row).
    pub async fn begin(&self) -> Result<Option<DatabaseTransaction>, DbErr> {
        if self.begun.swap(true, Ordering::AcqRel) {
            return Err(DbErr::Custom(
                "InboxScope::begin called twice for one event".into(),
            ));
        }
        let transaction = self.db.begin().await?;
        match insert_inbox_row(&transaction, &self.consumer, &self.event_id).await {
            Ok(()) => Ok(Some(transaction)),
            // Processed before (or just now by another consumer, whose commit this insert
            // waited for). The transaction is dropped, which rolls it back; PostgreSQL has
            // aborted it anyway.
            Err(error) if is_unique_violation(&error) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn was_begun(&self) -> bool {
        self.begun.load(Ordering::Acquire)
    }
}

pub(crate) fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

async fn insert_inbox_row(
    conn: &impl sea_orm::ConnectionTrait,
    consumer: &str,
    event_id: &str,
) -> Result<(), DbErr> {
    let row = inbox_event::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(event_id.to_owned()),
        processed_at: Set(Utc::now().trunc_subsecs(6)),
    };
    inbox_event::Entity::insert(row)
        .exec_without_returning(conn)
        .await
        .map(drop)
}

pub(crate) async fn inbox_contains(
    db: &DatabaseConnection,
    consumer: &str,
    event_id: &str,
) -> Result<bool, DbErr> {
    Ok(
        inbox_event::Entity::find_by_id((consumer.to_owned(), event_id.to_owned()))
            .one(db)
            .await?
            .is_some(),
    )
}

/// How one attempt at an event ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The effect was written now.
    Now,
    /// The inbox already had the event.
    Before,
}

/// A handler together with what it needs to run one attempt; shared by the consumer and
/// dead-letter replay.
#[derive(Clone)]
pub(crate) struct Handling {
    pub db: DatabaseConnection,
    pub consumer: String,
    pub handler: Arc<dyn EventHandler>,
}

impl Handling {
    /// One attempt: the handler, then the inbox row if the handler did not write it.
    pub(crate) async fn attempt(&self, event: &EventEnvelope) -> Result<Applied, HandlerError> {
        let scope = InboxScope::new(self.db.clone(), &self.consumer, &event.event_id);
        let outcome = AssertUnwindSafe(self.handler.handle(event, &scope))
            .catch_unwind()
            .await;
        match outcome {
            Err(panic) => Err(HandlerError::Permanent(format!(
                "the handler panicked: {}",
                panic_message(panic.as_ref())
            ))),
            Ok(Err(error)) => Err(error),
            Ok(Ok(())) if scope.was_begun() => {
                // The handler committed its transaction (with the inbox row) or found the event
                // processed; if the row is missing it dropped the transaction instead, and its
                // effect is gone with it.
                if inbox_contains(&self.db, &self.consumer, &event.event_id).await? {
                    Ok(Applied::Now)
                } else {
                    Err(HandlerError::Retryable(
                        "the handler returned Ok without committing its inbox transaction".into(),
                    ))
                }
            }
            Ok(Ok(())) => match insert_inbox_row(&self.db, &self.consumer, &event.event_id).await {
                Ok(()) => Ok(Applied::Now),
                Err(error) if is_unique_violation(&error) => Ok(Applied::Before),
                Err(error) => Err(error.into()),
            },
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// One consumer task of a group; see the module documentation.
pub struct Consumer {
    handling: Handling,
    /// This task's name in the group: the group plus a random suffix, new for every start, so
    /// a restarted process never mistakes a dead predecessor's entries for its own.
    name: String,
    streams: Vec<String>,
    bus: EventBus,
    config: EventsConfig,
}

impl Consumer {
    /// A consumer of `streams` (producing services, e.g. `["order"]`) in group `group` (the
    /// consuming service, e.g. `catalog`), keeping its inbox and dead letters in `db`.
    pub fn new(
        group: &str,
        streams: &[&str],
        db: DatabaseConnection,
        bus: EventBus,
        handler: impl EventHandler,
        config: &EventsConfig,
    ) -> Self {
        Self::with_shared_handler(group, streams, db, bus, Arc::new(handler), config)
    }

    /// As [`new`](Self::new), with a handler the service keeps a reference to.
    pub fn with_shared_handler(
        group: &str,
        streams: &[&str],
        db: DatabaseConnection,
        bus: EventBus,
        handler: Arc<dyn EventHandler>,
        config: &EventsConfig,
    ) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Self {
            handling: Handling {
                db,
                consumer: group.to_owned(),
                handler,
            },
            name: format!("{group}-{}", &suffix[..12]),
            streams: streams.iter().map(|stream| (*stream).to_owned()).collect(),
            bus,
            config: config.clone(),
        }
    }

    /// The dead letters of this consumer, with its handler for replays (for
    /// [`admin_routes`](super::admin_routes)).
    pub fn dead_letters(&self) -> DeadLetters {
        DeadLetters::new(self.handling.db.clone())
            .with_handler(&self.handling.consumer, self.handling.handler.clone())
    }

    /// Runs the consumer on `tasks` until `shutdown`.
    pub fn spawn(self, tasks: &Tasks, shutdown: &Shutdown) {
        tasks.spawn(self.run(shutdown.clone()));
    }

    /// Runs until `shutdown`. The event being handled when it fires is finished (or left
    /// pending for redelivery), never half applied.
    pub async fn run(self, shutdown: Shutdown) {
        let span = tracing::info_span!(
            "events.consumer",
            consumer = %self.handling.consumer,
            name = %self.name,
        );
        Running {
            consumer: &self,
            shutdown: &shutdown,
        }
        .run()
        .instrument(span)
        .await
    }
}

/// A consumer while it runs, with the shutdown it watches.
struct Running<'a> {
    consumer: &'a Consumer,
    shutdown: &'a Shutdown,
}

impl Running<'_> {
    fn group(&self) -> &str {
        &self.consumer.handling.consumer
    }

    fn config(&self) -> &EventsConfig {
        &self.consumer.config
    }

    async fn run(&self) {
        if self.ensure_groups().await.is_none() {
            return;
        }
        self.consume().await;
        // Best effort: a consumer left listed only costs a line in `XINFO CONSUMERS`.
        let removed = self
            .consumer
            .bus
            .backend()
            .remove_consumer(&self.consumer.streams, self.group(), &self.consumer.name)
            .await;
        if let Err(error) = removed {
            tracing::debug!(%error, "could not remove the consumer from its group");
        }
    }

    async fn consume(&self) {
        // Claim at once: entries left pending by a predecessor that died go first.
        let mut claimed_at: Option<Instant> = None;
        let mut pruned_at: Option<Instant> = None;
        let claim_every = (self.config().visibility_timeout() / 2).max(Duration::from_millis(10));
        let mut failures = 0u32;
        while !self.shutdown.is_triggered() {
            if pruned_at.is_none_or(|pruned| pruned.elapsed() >= self.config().prune_interval()) {
                pruned_at = Some(Instant::now());
                self.prune_inbox().await;
            }
            let deliveries = if claimed_at.is_none_or(|claimed| claimed.elapsed() >= claim_every) {
                claimed_at = Some(Instant::now());
                self.claim_stale().await
            } else {
                Ok(Vec::new())
            };
            let deliveries = match deliveries {
                Ok(deliveries) if !deliveries.is_empty() => Ok(deliveries),
                Ok(_) => self.read_new().await,
                Err(error) => Err(error),
            };
            match deliveries {
                Ok(deliveries) => {
                    failures = 0;
                    for delivery in deliveries {
                        if self.shutdown.is_triggered() {
                            // Unhandled entries stay pending and are claimed after the
                            // visibility timeout by whoever runs next.
                            return;
                        }
                        self.process(delivery).await;
                    }
                }
                Err(BusError::NoGroup { stream, .. }) => {
                    // Redis lost the group (a restart): recreate it from the stream's start;
                    // the relay republishes what was lost, and the inbox drops what was seen.
                    tracing::warn!(%stream, "consumer group missing; recreating it");
                    if self.ensure_groups().await.is_none() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "reading from the bus failed; retrying");
                    let delay = self.config().backoff().delay(failures);
                    failures = failures.saturating_add(1);
                    self.pause(delay).await;
                }
            }
        }
    }

    /// Creates the group on every stream, retrying until it works; `None` on shutdown.
    async fn ensure_groups(&self) -> Option<()> {
        let bus = self.consumer.bus.backend();
        for stream in &self.consumer.streams {
            self.persist("creating the consumer group", || {
                bus.ensure_group(stream, self.group())
            })
            .await?;
        }
        Some(())
    }

    async fn claim_stale(&self) -> Result<Vec<Delivery>, BusError> {
        let mut all = Vec::new();
        for stream in &self.consumer.streams {
            let claimed = self
                .consumer
                .bus
                .backend()
                .claim(
                    stream,
                    self.group(),
                    &self.consumer.name,
                    self.config().visibility_timeout(),
                    self.config().consumer_batch_size as usize,
                )
                .await?;
            if !claimed.is_empty() {
                tracing::info!(%stream, claimed = claimed.len(), "claimed entries a consumer left pending");
            }
            all.extend(claimed);
        }
        Ok(all)
    }

    async fn read_new(&self) -> Result<Vec<Delivery>, BusError> {
        let read = self.consumer.bus.backend().read(
            self.group(),
            &self.consumer.name,
            &self.consumer.streams,
            self.config().consumer_batch_size as usize,
            self.config().block(),
        );
        tokio::select! {
            read = read => read,
            () = self.shutdown.wait() => Ok(Vec::new()),
        }
    }

    /// Handles one entry to its end: skipped, applied or dead-lettered, then acknowledged.
    /// Returns early without acknowledging only on shutdown.
    async fn process(&self, delivery: Delivery) {
        let event = match &delivery.event {
            Ok(event) => event,
            Err(problem) => {
                // Not written by a relay; nothing could ever handle it, and keeping it pending
                // would have it claimed forever.
                tracing::error!(stream = %delivery.stream, entry = %delivery.entry_id, %problem, "dropping an undecodable entry");
                self.count(&delivery.stream, "malformed");
                self.ack(&delivery).await;
                return;
            }
        };
        let span = tracing::info_span!(
            "events.consume",
            consumer = %self.group(),
            stream = %delivery.stream,
            event_id = %event.event_id,
            event_type = %event.event_type,
            aggregate_id = %event.aggregate_id,
            deliveries = delivery.deliveries,
            trace_id = tracing::field::Empty,
        );
        if let Some(traceparent) = &event.traceparent {
            let carrier = HashMap::from([("traceparent".to_owned(), traceparent.clone())]);
            crate::telemetry::continue_trace(&span, &carrier);
        }
        self.process_event(&delivery, event).instrument(span).await
    }

    async fn process_event(&self, delivery: &Delivery, event: &EventEnvelope) {
        let stream = &delivery.stream;
        if !self.consumer.handling.handler.wants(&event.event_type) {
            self.count(stream, "skipped");
            self.ack(delivery).await;
            return;
        }
        let db = &self.consumer.handling.db;
        let settled = self
            .persist("checking the inbox", || async {
                Ok::<_, DbErr>(
                    inbox_contains(db, self.group(), &event.event_id).await?
                        || dead_letters::is_waiting(db, self.group(), &event.event_id).await?,
                )
            })
            .await;
        match settled {
            None => return,
            Some(true) => {
                tracing::debug!("already processed or dead-lettered; acknowledging");
                self.count(stream, "duplicate");
                self.ack(delivery).await;
                return;
            }
            Some(false) => {}
        }
        if delivery.deliveries > u64::from(self.config().max_deliveries) {
            let reason = format!(
                "delivered {} times without being acknowledged: consumers died while handling it",
                delivery.deliveries
            );
            self.dead_letter(delivery, event, &reason, 0).await;
            return;
        }
        let max_attempts = self.config().max_attempts.max(1);
        let mut attempt = 1u32;
        loop {
            match self.consumer.handling.attempt(event).await {
                Ok(applied) => {
                    self.count(
                        stream,
                        if applied == Applied::Now {
                            "applied"
                        } else {
                            "duplicate"
                        },
                    );
                    self.ack(delivery).await;
                    return;
                }
                Err(HandlerError::Permanent(reason)) => {
                    tracing::warn!(%reason, attempt, "event failed permanently");
                    self.dead_letter(delivery, event, &reason, attempt).await;
                    return;
                }
                Err(HandlerError::Retryable(reason)) if attempt >= max_attempts => {
                    tracing::warn!(%reason, attempt, "event failed on its last attempt");
                    let reason = format!("gave up after {attempt} attempts: {reason}");
                    self.dead_letter(delivery, event, &reason, attempt).await;
                    return;
                }
                Err(HandlerError::Retryable(reason)) => {
                    tracing::info!(%reason, attempt, "event failed; retrying");
                    metrics::counter!("pillivery_events_retried_total", "consumer" => self.group().to_owned(), "stream" => stream.clone())
                        .increment(1);
                    self.pause(self.config().backoff().delay(attempt - 1)).await;
                    if self.shutdown.is_triggered() {
                        return;
                    }
                    // Still ours: keep the entry from being claimed by another consumer while
                    // this one retries. A failure only risks a harmless parallel attempt.
                    let _ = self
                        .consumer
                        .bus
                        .backend()
                        .touch(
                            stream,
                            self.group(),
                            &self.consumer.name,
                            &delivery.entry_id,
                        )
                        .await;
                    attempt += 1;
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        event: &EventEnvelope,
        reason: &str,
        attempts: u32,
    ) {
        let db = &self.consumer.handling.db;
        let recorded = self
            .persist("writing a dead letter", || {
                dead_letters::record(db, self.group(), &delivery.stream, event, reason, attempts)
            })
            .await;
        if recorded.is_none() {
            return;
        }
        tracing::error!(%reason, attempts, "event dead-lettered");
        metrics::counter!("pillivery_events_dead_lettered_total", "consumer" => self.group().to_owned(), "stream" => delivery.stream.clone())
            .increment(1);
        self.count(&delivery.stream, "dead_lettered");
        self.ack(delivery).await;
    }

    async fn ack(&self, delivery: &Delivery) {
        let bus = self.consumer.bus.backend();
        let ids = [delivery.entry_id.clone()];
        // On shutdown the entry stays pending; its redelivery is recognised by the inbox.
        let _ = self
            .persist("acknowledging", || {
                bus.ack(&delivery.stream, self.group(), &ids)
            })
            .await;
    }

    fn count(&self, stream: &str, outcome: &'static str) {
        metrics::counter!(
            "pillivery_events_consumed_total",
            "consumer" => self.group().to_owned(),
            "stream" => stream.to_owned(),
            "outcome" => outcome,
        )
        .increment(1);
    }

    async fn prune_inbox(&self) {
        let before = Utc::now() - self.config().inbox_retention();
        let db = &self.consumer.handling.db;
        loop {
            let pruned = async {
                let ids: Vec<String> = inbox_event::Entity::find()
                    .select_only()
                    .column(inbox_event::Column::EventId)
                    .filter(inbox_event::Column::Consumer.eq(self.group()))
                    .filter(inbox_event::Column::ProcessedAt.lt(before))
                    .limit(PRUNE_BATCH)
                    .into_tuple::<String>()
                    .all(db)
                    .await?;
                if ids.is_empty() {
                    return Ok::<u64, DbErr>(0);
                }
                let deleted = inbox_event::Entity::delete_many()
                    .filter(inbox_event::Column::Consumer.eq(self.group()))
                    .filter(inbox_event::Column::EventId.is_in(ids))
                    .exec(db)
                    .await?;
                Ok(deleted.rows_affected)
            }
            .await;
            match pruned {
                Ok(deleted) if deleted >= PRUNE_BATCH => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "pruning the inbox failed");
                    break;
                }
            }
        }
    }

    /// Runs `step` until it succeeds, backing off between failures; `None` on shutdown. For
    /// infrastructure steps (database, bus), whose failure says nothing about the event.
    async fn persist<T, E, F, Fut>(&self, what: &str, mut step: F) -> Option<T>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut failures = 0u32;
        loop {
            if failures > 0 && self.shutdown.is_triggered() {
                return None;
            }
            match step().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    tracing::warn!(%error, failures, "{what} failed; retrying");
                    let delay = self.config().backoff().delay(failures);
                    failures = failures.saturating_add(1);
                    self.pause(delay).await;
                }
            }
        }
    }

    async fn pause(&self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.shutdown.wait() => {}
        }
    }
}
