//! The events platform end to end: outbox → relay → bus → consumer with inbox and dead letters,
//! on the real databases and buses, with faults injected where the design says it must hold.
//!
//! Every test runs on SQLite and, when `PILLIVERY_TEST_POSTGRES_URL` / `_MYSQL_URL` name them,
//! PostgreSQL and MySQL; each database with the in-process bus and, when
//! `PILLIVERY_TEST_REDIS_URL` names one, Redis Streams (under a key prefix of its own, removed
//! afterwards). The effect a consumer applies is a counter per key in a small `effects` table;
//! "exactly once" means every counter equals the sum of the amounts its events carried, while
//! the bus demonstrably delivered some events more than once.
//!
//! Faults come from a wrapper around the real bus ([`FaultyBus`]): a publish that reaches the
//! bus but whose answer is lost and whose relay then dies, a consumer that dies after its
//! effect and before its acknowledgement, and a bus that loses all its data mid-stream (Redis:
//! the test's own stream and epoch keys deleted; in-process: the bus replaced by an empty one).
//! Nothing polls on a fixed sleep: every wait is `eventually` with a deadline.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use pillivery_platform::events::dead_letters::{DeadLetterQuery, ReplayOutcome};
use pillivery_platform::events::{
    BusBackend, BusError, Consumer, Delivery, EventBus, EventEnvelope, EventHandler, EventsConfig,
    HandlerError, InboxScope, NewEvent, Relay, RelayWaker, admin_routes, outbox,
};
use pillivery_platform::kv::KeyValueStore;
use pillivery_platform::shutdown::Shutdown;
use pillivery_testkit::{Backend, TestDatabase, eventually};
use rand::Rng;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tokio::task::JoinHandle;

const STREAM: &str = "order";
const GROUP: &str = "catalog";
const EVENT_TYPE: &str = "Added";
const DEADLINE: Duration = Duration::from_secs(90);
const POISON: &str = "poison";

struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        pillivery_platform::events::migration::migrations()
    }
}

// ---------------------------------------------------------------------------------------------
// The bus wrapper that injects faults and counts deliveries.

#[derive(Default)]
struct FaultyBus {
    inner: RwLock<Option<Arc<dyn BusBackend>>>,
    /// Deliveries (reads and claims) per event id.
    deliveries: Mutex<HashMap<String, u32>>,
    /// Entry id → event id, to name the event behind an acknowledgement.
    entries: Mutex<HashMap<(String, String), String>>,
    /// Publishes still to "lose their answer": they reach the bus, then report failure and stop
    /// the relay (`relay_to_kill`), as a relay dying between publish and mark would.
    lose_publish_answers: AtomicU32,
    relay_to_kill: Mutex<Option<Shutdown>>,
    /// Event ids whose publish answer was lost.
    lost_answers: Mutex<Vec<String>>,
    /// Acknowledgements to let pass before the consumer (`consumer_to_kill`) dies at the next.
    acks_before_crash: Mutex<Option<u32>>,
    consumer_to_kill: Mutex<Option<Shutdown>>,
    /// The event whose acknowledgement the crash swallowed.
    crashed_before_ack: Mutex<Option<String>>,
}

impl FaultyBus {
    fn over(inner: Arc<dyn BusBackend>) -> Arc<Self> {
        let bus = FaultyBus::default();
        *bus.inner.write().unwrap() = Some(inner);
        Arc::new(bus)
    }

    fn inner(&self) -> Arc<dyn BusBackend> {
        self.inner.read().unwrap().clone().expect("an inner bus")
    }

    fn replace_inner(&self, inner: Arc<dyn BusBackend>) {
        *self.inner.write().unwrap() = Some(inner);
    }

    fn seen(&self, deliveries: &[Delivery]) {
        let mut counts = self.deliveries.lock().unwrap();
        let mut entries = self.entries.lock().unwrap();
        for delivery in deliveries {
            if let Ok(event) = &delivery.event {
                *counts.entry(event.event_id.clone()).or_default() += 1;
                entries.insert(
                    (delivery.stream.clone(), delivery.entry_id.clone()),
                    event.event_id.clone(),
                );
            }
        }
    }

    fn delivered(&self, event_id: &str) -> u32 {
        self.deliveries
            .lock()
            .unwrap()
            .get(event_id)
            .copied()
            .unwrap_or(0)
    }

    fn redelivered(&self) -> usize {
        self.deliveries
            .lock()
            .unwrap()
            .values()
            .filter(|count| **count > 1)
            .count()
    }
}

#[async_trait::async_trait]
impl BusBackend for FaultyBus {
    async fn publish(&self, stream: &str, events: &[EventEnvelope]) -> Result<(), BusError> {
        self.inner().publish(stream, events).await?;
        let lose = self
            .lose_publish_answers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if lose {
            self.lost_answers
                .lock()
                .unwrap()
                .extend(events.iter().map(|event| event.event_id.clone()));
            if let Some(relay) = self.relay_to_kill.lock().unwrap().take() {
                relay.trigger();
            }
            return Err(BusError::Unavailable("the answer was lost".into()));
        }
        Ok(())
    }

    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), BusError> {
        self.inner().ensure_group(stream, group).await
    }

    async fn read(
        &self,
        group: &str,
        consumer: &str,
        streams: &[String],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError> {
        let deliveries = self
            .inner()
            .read(group, consumer, streams, count, block)
            .await?;
        self.seen(&deliveries);
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
        let deliveries = self
            .inner()
            .claim(stream, group, consumer, min_idle, count)
            .await?;
        self.seen(&deliveries);
        Ok(deliveries)
    }

    async fn touch(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        entry_id: &str,
    ) -> Result<(), BusError> {
        self.inner().touch(stream, group, consumer, entry_id).await
    }

    async fn ack(&self, stream: &str, group: &str, entry_ids: &[String]) -> Result<(), BusError> {
        let crash = {
            let mut left = self.acks_before_crash.lock().unwrap();
            match left.as_mut() {
                Some(0) => {
                    *left = None;
                    true
                }
                Some(count) => {
                    *count -= 1;
                    false
                }
                None => false,
            }
        };
        if crash {
            let event = self
                .entries
                .lock()
                .unwrap()
                .get(&(stream.to_owned(), entry_ids[0].clone()))
                .cloned();
            *self.crashed_before_ack.lock().unwrap() = event;
            if let Some(consumer) = self.consumer_to_kill.lock().unwrap().take() {
                consumer.trigger();
            }
            return Err(BusError::Unavailable("the consumer died".into()));
        }
        self.inner().ack(stream, group, entry_ids).await
    }

    async fn remove_consumer(
        &self,
        streams: &[String],
        group: &str,
        consumer: &str,
    ) -> Result<(), BusError> {
        self.inner().remove_consumer(streams, group, consumer).await
    }

    async fn has_epoch(&self, stream: &str) -> Result<bool, BusError> {
        self.inner().has_epoch(stream).await
    }

    async fn set_epoch(&self, stream: &str) -> Result<(), BusError> {
        self.inner().set_epoch(stream).await
    }
}

// ---------------------------------------------------------------------------------------------
// The consumer's effect: a counter per key, plus what the tests want to observe.

#[derive(Default)]
struct Ledger {
    /// While set, events of key `poison` fail (retryably).
    poisoned: AtomicBool,
    /// (aggregate, sequence number) of each applied event, in the order they were applied.
    applied: Mutex<Vec<(String, i64)>>,
    /// The trace id each handled event ran under.
    trace_ids: Mutex<HashMap<String, String>>,
}

#[derive(Clone)]
struct LedgerHandler(Arc<Ledger>);

/// `key:amount:sequence`.
fn payload(key: &str, amount: i64, sequence: i64) -> Vec<u8> {
    format!("{key}:{amount}:{sequence}").into_bytes()
}

fn parse(payload: &[u8]) -> Option<(String, i64, i64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(':');
    let key = parts.next()?.to_owned();
    let amount = parts.next()?.parse().ok()?;
    let sequence = parts.next()?.parse().ok()?;
    Some((key, amount, sequence))
}

#[async_trait::async_trait]
impl EventHandler for LedgerHandler {
    fn wants(&self, event_type: &str) -> bool {
        event_type == EVENT_TYPE
    }

    async fn handle(&self, event: &EventEnvelope, scope: &InboxScope) -> Result<(), HandlerError> {
        let (key, amount, sequence) = parse(&event.payload)
            .ok_or_else(|| HandlerError::Permanent("the payload does not decode".into()))?;
        if key == POISON && self.0.poisoned.load(Ordering::Acquire) {
            return Err(HandlerError::Retryable("the poison key is refused".into()));
        }
        self.0.trace_ids.lock().unwrap().insert(
            event.event_id.clone(),
            pillivery_platform::telemetry::trace_id_of(&tracing::Span::current()),
        );
        let Some(transaction) = scope.begin().await? else {
            return Ok(());
        };
        let updated = transaction
            .execute_raw(statement(
                transaction.get_database_backend(),
                "UPDATE effects SET total = total + ? WHERE k = ?",
                vec![amount.into(), key.clone().into()],
            ))
            .await?;
        if updated.rows_affected() != 1 {
            return Err(HandlerError::Permanent(format!("no effect row for {key}")));
        }
        transaction.commit().await?;
        self.0.applied.lock().unwrap().push((key, sequence));
        Ok(())
    }
}

/// `?` placeholders, numbered for PostgreSQL.
fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        let mut numbered = String::new();
        let mut index = 0;
        for character in sql.chars() {
            if character == '?' {
                index += 1;
                numbered.push_str(&format!("${index}"));
            } else {
                numbered.push(character);
            }
        }
        numbered
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

// ---------------------------------------------------------------------------------------------
// One database × one bus.

#[derive(Clone, Copy, Debug, PartialEq)]
enum BusKind {
    Memory,
    Redis,
}

fn cases() -> Vec<(Backend, BusKind)> {
    let mut buses = vec![BusKind::Memory];
    if pillivery_testkit::redis_url().is_some() {
        buses.push(BusKind::Redis);
    }
    pillivery_testkit::backends()
        .into_iter()
        .flat_map(|backend| buses.iter().map(move |bus| (backend.clone(), *bus)))
        .collect()
}

struct Setup {
    label: String,
    database: TestDatabase,
    db: DatabaseConnection,
    config: EventsConfig,
    bus_kind: BusKind,
    faulty: Arc<FaultyBus>,
    bus: EventBus,
    locks: KeyValueStore,
    ledger: Arc<Ledger>,
}

impl Setup {
    async fn new(backend: &Backend, bus_kind: BusKind, keys: &[String]) -> Setup {
        let label = format!("{}+{bus_kind:?}", backend.name());
        let database = TestDatabase::fresh(backend).await;
        let db = database.connect().await;
        Migrator::up(&db, None).await.expect("event migrations");
        db.execute_unprepared(
            "CREATE TABLE effects (k VARCHAR(64) PRIMARY KEY, total BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        for key in keys.iter().map(String::as_str).chain([POISON]) {
            db.execute_raw(statement(
                db.get_database_backend(),
                "INSERT INTO effects (k, total) VALUES (?, 0)",
                vec![key.into()],
            ))
            .await
            .unwrap();
        }
        let mut config = EventsConfig {
            stream_prefix: format!("pillivery-test:{}", uuid::Uuid::new_v4().simple()),
            relay_batch_size: 50,
            relay_poll_interval_ms: 50,
            relay_lock_ttl_ms: 2_000,
            redis_op_timeout_ms: 1_000,
            consumer_batch_size: 16,
            consumer_block_ms: 50,
            visibility_timeout_ms: 500,
            max_attempts: 3,
            backoff_base_ms: 5,
            backoff_max_ms: 50,
            ..EventsConfig::default()
        };
        let (inner, locks) = match bus_kind {
            BusKind::Memory => (
                EventBus::in_memory(&config),
                KeyValueStore::in_memory().with_prefix(&config.stream_prefix),
            ),
            BusKind::Redis => {
                config.bus_url = pillivery_testkit::redis_url().expect("a Redis URL");
                let bus = EventBus::connect(&config)
                    .await
                    .expect("the Redis named by PILLIVERY_TEST_REDIS_URL");
                let locks = pillivery_testkit::redis_store()
                    .await
                    .expect("a Redis store");
                (bus, locks)
            }
        };
        config.validate().expect("a valid test config");
        let faulty = FaultyBus::over(inner.backend().clone());
        let bus = EventBus::from_backend(faulty.clone());
        Setup {
            label,
            database,
            db,
            config,
            bus_kind,
            faulty,
            bus,
            locks,
            ledger: Arc::new(Ledger::default()),
        }
    }

    fn relay(&self) -> (RelayWaker, Shutdown, JoinHandle<()>) {
        let relay = Relay::new(
            STREAM,
            self.db.clone(),
            self.bus.clone(),
            self.locks.clone(),
            &self.config,
        );
        let waker = relay.waker();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(relay.run(shutdown.clone()));
        (waker, shutdown, task)
    }

    fn consumer(&self) -> Consumer {
        Consumer::new(
            GROUP,
            &[STREAM],
            self.db.clone(),
            self.bus.clone(),
            LedgerHandler(self.ledger.clone()),
            &self.config,
        )
    }

    fn start_consumer(&self) -> (Shutdown, JoinHandle<()>) {
        let shutdown = Shutdown::new();
        let task = tokio::spawn(self.consumer().run(shutdown.clone()));
        (shutdown, task)
    }

    /// The bus loses everything, as a Redis without persistence does when it restarts.
    async fn lose_bus_data(&self) {
        match self.bus_kind {
            BusKind::Memory => self
                .faulty
                .replace_inner(EventBus::in_memory(&self.config).backend().clone()),
            BusKind::Redis => delete_redis_keys(&self.config).await,
        }
    }

    async fn totals(&self) -> BTreeMap<String, i64> {
        let rows = self
            .db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT k, total FROM effects",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                (
                    row.try_get::<String>("", "k").unwrap(),
                    row.try_get::<i64>("", "total").unwrap(),
                )
            })
            .filter(|(_, total)| *total != 0)
            .collect()
    }

    async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    async fn applied_count(&self) -> i64 {
        self.count("SELECT COUNT(*) AS n FROM inbox_events").await
    }

    async fn unpublished_count(&self) -> i64 {
        self.count("SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL")
            .await
    }

    /// Waits until `events` are all applied.
    async fn wait_applied(&self, events: usize) {
        eventually(
            &format!("{} events applied on {}", events, self.label),
            DEADLINE,
            || async { (self.applied_count().await >= events as i64).then_some(()) },
        )
        .await;
    }

    async fn remove(self) {
        if self.bus_kind == BusKind::Redis {
            delete_redis_keys(&self.config).await;
        }
        let _ = self.db.close().await;
        self.database.remove().await;
    }
}

/// Deletes the test's own streams and epoch markers (never anything outside its prefix).
async fn delete_redis_keys(config: &EventsConfig) {
    let client = redis::Client::open(config.bus_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", config.stream_prefix))
        .query_async(&mut connection)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
    }
}

async fn stop(shutdown: Shutdown, task: JoinHandle<()>) {
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the task stops on shutdown")
        .expect("the task did not panic");
}

/// An event to produce: key (= aggregate), amount, sequence number within its key.
type Planned = (String, i64, i64);

fn random_events(count: usize, keys: &[String]) -> Vec<Planned> {
    let mut rng = rand::rng();
    let mut sequences: HashMap<String, i64> = HashMap::new();
    (0..count)
        .map(|_| {
            let key = keys[rng.random_range(0..keys.len())].clone();
            let sequence = sequences.entry(key.clone()).or_default();
            *sequence += 1;
            (key, rng.random_range(1..=1_000), *sequence)
        })
        .collect()
}

fn expected_totals(events: &[Planned]) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for (key, amount, _) in events {
        *totals.entry(key.clone()).or_default() += amount;
    }
    totals
}

/// Writes `events` to the outbox, a few per transaction as services do, waking the relays
/// after each commit.
async fn produce(db: &DatabaseConnection, wakers: &[RelayWaker], events: &[Planned]) {
    for chunk in events.chunks(4) {
        let transaction = db.begin().await.unwrap();
        for (key, amount, sequence) in chunk {
            outbox::append(
                &transaction,
                STREAM,
                NewEvent::new(EVENT_TYPE, key.clone(), payload(key, *amount, *sequence)),
            )
            .await
            .unwrap();
        }
        transaction.commit().await.unwrap();
        for waker in wakers {
            waker.wake();
        }
    }
}

fn keys(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("item-{index}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// 1 000 events with random keys and amounts, two relays racing for the lease and two consumers
/// sharing the group: every counter ends at the sum of its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_random_events_are_applied_exactly_once() {
    let keys = keys(20);
    for (backend, bus) in cases() {
        let setup = Setup::new(&backend, bus, &keys).await;
        let events = random_events(1_000, &keys);
        let (first_waker, first_relay, first_task) = setup.relay();
        let (second_waker, second_relay, second_task) = setup.relay();
        let (first_consumer, first_consumer_task) = setup.start_consumer();
        let (second_consumer, second_consumer_task) = setup.start_consumer();

        produce(&setup.db, &[first_waker, second_waker], &events).await;
        setup.wait_applied(events.len()).await;

        stop(first_relay, first_task).await;
        stop(second_relay, second_task).await;
        stop(first_consumer, first_consumer_task).await;
        stop(second_consumer, second_consumer_task).await;
        assert_eq!(
            setup.totals().await,
            expected_totals(&events),
            "{}",
            setup.label
        );
        assert_eq!(setup.applied_count().await, 1_000, "{}", setup.label);
        assert_eq!(setup.unpublished_count().await, 0, "{}", setup.label);
        assert_eq!(
            setup.ledger.applied.lock().unwrap().len(),
            1_000,
            "{}",
            setup.label
        );
        setup.remove().await;
    }
}

/// The relay publishes a batch and dies before marking it published; a new relay publishes the
/// batch again, and the consumer applies each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_dying_between_publish_and_mark_publishes_again_without_double_effects() {
    let keys = keys(10);
    for (backend, bus) in cases() {
        let setup = Setup::new(&backend, bus, &keys).await;
        let events = random_events(300, &keys);
        let (consumer, consumer_task) = setup.start_consumer();

        let (waker, relay, relay_task) = setup.relay();
        *setup.faulty.relay_to_kill.lock().unwrap() = Some(relay.clone());
        setup
            .faulty
            .lose_publish_answers
            .store(1, Ordering::Release);
        produce(&setup.db, &[waker], &events[..100]).await;
        tokio::time::timeout(Duration::from_secs(30), relay_task)
            .await
            .expect("the relay dies after the lost answer")
            .unwrap();
        let lost = setup.faulty.lost_answers.lock().unwrap().clone();
        assert!(!lost.is_empty(), "{}", setup.label);
        // The rows were published but not marked.
        assert!(
            setup.unpublished_count().await >= lost.len() as i64,
            "{}",
            setup.label
        );

        let (waker, relay, relay_task) = setup.relay();
        produce(&setup.db, &[waker], &events[100..]).await;
        setup.wait_applied(events.len()).await;
        eventually(
            &format!("the lost batch delivered twice on {}", setup.label),
            DEADLINE,
            || async {
                lost.iter()
                    .all(|id| setup.faulty.delivered(id) >= 2)
                    .then_some(())
            },
        )
        .await;

        stop(relay, relay_task).await;
        stop(consumer, consumer_task).await;
        assert_eq!(
            setup.totals().await,
            expected_totals(&events),
            "{}",
            setup.label
        );
        assert_eq!(setup.applied_count().await, 300, "{}", setup.label);
        assert_eq!(setup.unpublished_count().await, 0, "{}", setup.label);
        setup.remove().await;
    }
}

/// A consumer commits its effect and dies before acknowledging; after the visibility timeout a
/// new consumer claims the entry, recognises it and applies nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_dying_before_its_ack_has_the_entry_claimed_and_applied_once() {
    let keys = keys(10);
    for (backend, bus) in cases() {
        let setup = Setup::new(&backend, bus, &keys).await;
        let events = random_events(200, &keys);
        let (waker, relay, relay_task) = setup.relay();
        let (consumer, consumer_task) = setup.start_consumer();
        *setup.faulty.consumer_to_kill.lock().unwrap() = Some(consumer.clone());
        *setup.faulty.acks_before_crash.lock().unwrap() = Some(40);

        produce(&setup.db, std::slice::from_ref(&waker), &events).await;
        tokio::time::timeout(Duration::from_secs(60), consumer_task)
            .await
            .expect("the consumer dies at its 41st ack")
            .unwrap();
        let crashed = setup
            .faulty
            .crashed_before_ack
            .lock()
            .unwrap()
            .clone()
            .expect("an event whose ack was swallowed");
        assert_eq!(setup.faulty.delivered(&crashed), 1, "{}", setup.label);

        let (consumer, consumer_task) = setup.start_consumer();
        setup.wait_applied(events.len()).await;
        eventually(
            &format!("the unacknowledged entry claimed on {}", setup.label),
            DEADLINE,
            || async { (setup.faulty.delivered(&crashed) >= 2).then_some(()) },
        )
        .await;

        stop(relay, relay_task).await;
        stop(consumer, consumer_task).await;
        assert_eq!(
            setup.totals().await,
            expected_totals(&events),
            "{}",
            setup.label
        );
        assert_eq!(setup.applied_count().await, 200, "{}", setup.label);
        let applied_crashed = setup.ledger.applied.lock().unwrap().len();
        assert_eq!(applied_crashed, 200, "{}", setup.label);
        setup.remove().await;
    }
}

/// The bus loses its streams, groups and epoch markers mid-stream (a Redis restart without
/// persistence): the relay notices, republishes its retention window, the consumer recreates
/// its group, and every effect still happens exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bus_losing_its_data_mid_stream_loses_no_event_and_doubles_none() {
    let keys = keys(10);
    for (backend, bus) in cases() {
        let setup = Setup::new(&backend, bus, &keys).await;
        let events = random_events(300, &keys);
        let (waker, relay, relay_task) = setup.relay();
        let (consumer, consumer_task) = setup.start_consumer();

        produce(&setup.db, std::slice::from_ref(&waker), &events[..150]).await;
        eventually(
            &format!("some events applied on {}", setup.label),
            DEADLINE,
            || async { (setup.applied_count().await >= 50).then_some(()) },
        )
        .await;
        setup.lose_bus_data().await;
        produce(&setup.db, std::slice::from_ref(&waker), &events[150..]).await;

        setup.wait_applied(events.len()).await;
        // Events applied before the loss come round again with the republished window.
        eventually(
            &format!("the republished window delivered on {}", setup.label),
            DEADLINE,
            || async { (setup.faulty.redelivered() >= 50).then_some(()) },
        )
        .await;

        stop(relay, relay_task).await;
        stop(consumer, consumer_task).await;
        assert_eq!(
            setup.totals().await,
            expected_totals(&events),
            "{}",
            setup.label
        );
        assert_eq!(setup.applied_count().await, 300, "{}", setup.label);
        assert_eq!(
            setup.ledger.applied.lock().unwrap().len(),
            300,
            "{}",
            setup.label
        );
        setup.remove().await;
    }
}

/// An event that keeps failing, and one that can never work, land in the dead letters with
/// their reasons without stalling the stream; after the fix, the admin call replays the first
/// (applied once) and reports the second failing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_events_are_dead_lettered_and_replayed_through_the_admin_port() {
    let keys = keys(5);
    for (backend, bus) in cases() {
        let setup = Setup::new(&backend, bus, &keys).await;
        setup.ledger.poisoned.store(true, Ordering::Release);
        let events = random_events(40, &keys);
        let (waker, relay, relay_task) = setup.relay();
        let consumer = setup.consumer();
        let dead_letters = consumer.dead_letters();
        let consumer_shutdown = Shutdown::new();
        let consumer_task = tokio::spawn(consumer.run(consumer_shutdown.clone()));

        produce(&setup.db, std::slice::from_ref(&waker), &events[..20]).await;
        let poison = vec![(POISON.to_owned(), 777, 1)];
        produce(&setup.db, std::slice::from_ref(&waker), &poison).await;
        let transaction = setup.db.begin().await.unwrap();
        let garbage = outbox::append(
            &transaction,
            STREAM,
            NewEvent::new(EVENT_TYPE, "item-0", b"not a payload".to_vec()),
        )
        .await
        .unwrap();
        // An event type nobody wants is acknowledged and skipped.
        outbox::append(
            &transaction,
            STREAM,
            NewEvent::new("SomethingElse", "item-0", payload("item-0", 5, 1)),
        )
        .await
        .unwrap();
        transaction.commit().await.unwrap();
        waker.wake();
        produce(&setup.db, std::slice::from_ref(&waker), &events[20..]).await;

        // Skipped and dead-lettered events get no inbox row: 40 applied.
        setup.wait_applied(events.len()).await;
        let waiting = eventually(
            &format!("two dead letters on {}", setup.label),
            DEADLINE,
            || async {
                let letters = dead_letters
                    .list(&DeadLetterQuery {
                        limit: 10,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                (letters.len() == 2).then_some(letters)
            },
        )
        .await;
        let poisoned = waiting
            .iter()
            .find(|letter| letter.event.aggregate_id == POISON)
            .expect("the poison event");
        assert_eq!(poisoned.attempts, 3, "{}", setup.label);
        assert!(
            poisoned.reason.contains("gave up after 3 attempts")
                && poisoned.reason.contains("the poison key is refused"),
            "{}: {}",
            setup.label,
            poisoned.reason
        );
        assert_eq!(poisoned.consumer, GROUP);
        assert_eq!(poisoned.stream, STREAM);
        let undecodable = waiting
            .iter()
            .find(|letter| letter.event.event_id == garbage.event_id)
            .expect("the undecodable event");
        assert_eq!(undecodable.attempts, 1, "{}", setup.label);
        assert_eq!(undecodable.reason, "the payload does not decode");
        assert_eq!(undecodable.event, garbage, "{}", setup.label);
        assert_eq!(
            setup.totals().await,
            expected_totals(&events),
            "{}",
            setup.label
        );

        // The operator fixes the cause and replays through the admin port.
        let host = pillivery_platform::server::ServiceHost::bind(
            "events-test",
            &pillivery_platform::server::ServerConfig::loopback(),
        )
        .await
        .unwrap()
        .with_admin_routes(admin_routes(dead_letters.clone()));
        let admin = format!("http://{}", host.admin_addr());
        let http = pillivery_testkit::http_client();
        let listed: serde_json::Value = http
            .get(format!("{admin}/admin/events/dead-letters"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            listed["deadLetters"].as_array().unwrap().len(),
            2,
            "{listed}"
        );
        assert_eq!(listed["deadLetters"][0]["consumer"], GROUP);

        setup.ledger.poisoned.store(false, Ordering::Release);
        let replay = |id: i64| {
            let http = http.clone();
            let url = format!("{admin}/admin/events/dead-letters/{id}/replay");
            async move {
                let response = http.post(url).send().await.unwrap();
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                (status, body)
            }
        };
        let (status, body) = replay(poisoned.id).await;
        assert_eq!(
            (status, body["outcome"].as_str()),
            (200, Some("applied")),
            "{body}"
        );
        let (status, _) = replay(poisoned.id).await;
        assert_eq!(status, 409, "a replayed dead letter is not replayed twice");
        let (status, body) = replay(undecodable.id).await;
        assert_eq!(
            (status, body["outcome"].as_str()),
            (422, Some("failed")),
            "{body}"
        );
        assert_eq!(replay(999_999).await.0, 404);

        let mut expected = expected_totals(&events);
        expected.insert(POISON.to_owned(), 777);
        assert_eq!(setup.totals().await, expected, "{}", setup.label);
        // Replaying everything waiting touches only the undecodable one, which fails again.
        let outcomes = dead_letters.replay_waiting(10).await.unwrap();
        assert_eq!(outcomes.len(), 1, "only the undecodable one still waits");
        assert_eq!(outcomes[0].0, undecodable.id);
        assert!(
            matches!(&outcomes[0].1, Ok(ReplayOutcome::Failed { reason }) if reason.contains("does not decode")),
            "{:?}",
            outcomes[0].1
        );
        let still_waiting = dead_letters
            .list(&DeadLetterQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(still_waiting.len(), 1);
        assert_eq!(still_waiting[0].attempts, 3, "1 attempt + 2 failed replays");
        assert!(still_waiting[0].reason.starts_with("replay failed"));

        stop(relay, relay_task).await;
        stop(consumer_shutdown, consumer_task).await;
        assert_eq!(setup.totals().await, expected, "{}", setup.label);
        drop(host);
        setup.remove().await;
    }
}

/// Events of one aggregate are applied in the order they were written, even when a batch is
/// published twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_of_one_aggregate_are_applied_in_order() {
    let keys = keys(4);
    for (backend, bus) in cases() {
        let setup = Setup::new(&backend, bus, &keys).await;
        let events = random_events(400, &keys);
        let (consumer, consumer_task) = setup.start_consumer();
        let (waker, relay, relay_task) = setup.relay();
        // One lost answer: that batch is published twice, interleaved with nothing else. The
        // relay stays alive here (no relay to kill) and retries the batch.
        setup
            .faulty
            .lose_publish_answers
            .store(1, Ordering::Release);
        produce(&setup.db, std::slice::from_ref(&waker), &events).await;
        setup.wait_applied(events.len()).await;
        stop(relay, relay_task).await;
        stop(consumer, consumer_task).await;

        let applied = setup.ledger.applied.lock().unwrap().clone();
        assert_eq!(applied.len(), events.len(), "{}", setup.label);
        for key in &keys {
            let sequence: Vec<i64> = applied
                .iter()
                .filter(|(aggregate, _)| aggregate == key)
                .map(|(_, sequence)| *sequence)
                .collect();
            let expected: Vec<i64> = (1..=sequence.len() as i64).collect();
            assert_eq!(sequence, expected, "{} {key}", setup.label);
        }
        assert!(setup.faulty.redelivered() > 0, "{}", setup.label);
        assert_eq!(
            setup.totals().await,
            expected_totals(&events),
            "{}",
            setup.label
        );
        setup.remove().await;
    }
}

/// The trace of the transaction that wrote an event continues in the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_carry_the_writers_trace_to_the_consumer() {
    let _telemetry = pillivery_platform::telemetry::init(
        "events-test",
        &pillivery_platform::telemetry::TelemetryConfig {
            log_level: "off".into(),
            ..Default::default()
        },
    );
    let keys = keys(2);
    for (backend, bus) in cases() {
        let setup = Setup::new(&backend, bus, &keys).await;
        let (waker, relay, relay_task) = setup.relay();
        let (consumer, consumer_task) = setup.start_consumer();

        let span = tracing::info_span!("checkout");
        let trace_id = pillivery_platform::telemetry::trace_id_of(&span);
        assert_eq!(trace_id.len(), 32, "tracing is installed");
        let envelope = {
            let transaction = setup.db.begin().await.unwrap();
            let envelope = {
                use tracing::Instrument;
                outbox::append(
                    &transaction,
                    STREAM,
                    NewEvent::new(EVENT_TYPE, "item-0", payload("item-0", 1, 1)),
                )
                .instrument(span.clone())
                .await
                .unwrap()
            };
            transaction.commit().await.unwrap();
            envelope
        };
        waker.wake();
        let traceparent = envelope.traceparent.clone().expect("a traceparent");
        assert!(traceparent.contains(&trace_id), "{traceparent}");
        assert_eq!(envelope.event_id.len(), 36);
        assert_eq!(
            uuid::Uuid::parse_str(&envelope.event_id)
                .unwrap()
                .get_version_num(),
            7
        );

        setup.wait_applied(1).await;
        let seen = setup
            .ledger
            .trace_ids
            .lock()
            .unwrap()
            .get(&envelope.event_id)
            .cloned();
        assert_eq!(seen.as_deref(), Some(trace_id.as_str()), "{}", setup.label);
        stop(relay, relay_task).await;
        stop(consumer, consumer_task).await;
        setup.remove().await;
    }
}

/// A standby relay publishes nothing while another holds the lease, and takes over when it
/// stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_relay_per_service_is_active_and_a_standby_takes_over() {
    let keys = keys(2);
    let setup = Setup::new(&Backend::Sqlite, BusKind::Memory, &keys).await;
    let lease = setup
        .locks
        .try_lock(&format!("relay:{STREAM}"), Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the lease is free");
    let (waker, relay, relay_task) = setup.relay();
    let (consumer, consumer_task) = setup.start_consumer();
    let events = random_events(10, &keys);
    produce(&setup.db, std::slice::from_ref(&waker), &events).await;
    // While someone else holds the lease, the relay stands by. An absence cannot be polled
    // for: give the standby six of its 50 ms polls, then check nothing was published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(setup.unpublished_count().await, 10);
    lease.release().await.unwrap();
    setup.wait_applied(events.len()).await;
    stop(relay, relay_task).await;
    stop(consumer, consumer_task).await;
    assert_eq!(setup.totals().await, expected_totals(&events));
    setup.remove().await;
}
