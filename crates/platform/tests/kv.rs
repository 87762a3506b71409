//! Behaviour of `KeyValueStore`, written once and run against every backend: the in-process
//! store always, and Redis when `PILLIVERY_TEST_REDIS_URL` names one (for example
//! `redis://127.0.0.1:6379`). With the variable set, an unreachable Redis fails the Redis variant
//! of every test loudly; it is never skipped silently.
//!
//! Each test works under its own random prefix, so the tests run in parallel on one Redis and
//! leave nothing behind but keys that expire. Time-dependent checks use short ttls and poll
//! with a deadline instead of sleeping for a fixed time.

use std::future::Future;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use pillivery_platform::kv::{KeyValueStore, KvError, LockGuard, RateDecision};
use tokio::task::JoinSet;
use uuid::Uuid;

const REDIS_URL_VARIABLE: &str = "PILLIVERY_TEST_REDIS_URL";
/// How long a poll may wait for something that should happen after a ttl of a few hundred ms.
const POLL_DEADLINE: Duration = Duration::from_secs(5);
const SHORT_TTL: Duration = Duration::from_millis(300);

fn memory_store() -> KeyValueStore {
    KeyValueStore::in_memory().with_prefix(&Uuid::new_v4().to_string())
}

/// The Redis store named by the environment, or `None` when the variable is unset or empty.
async fn redis_store() -> Option<KeyValueStore> {
    let url = std::env::var(REDIS_URL_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty())?;
    match KeyValueStore::connect_redis(&url, "pillivery-test", Duration::from_secs(2)).await {
        Ok(store) => Some(store.with_prefix(&Uuid::new_v4().to_string())),
        // The URL may hold a password, so only the variable's name goes into the message.
        Err(error) => panic!("{REDIS_URL_VARIABLE} is set but that Redis is not usable: {error}"),
    }
}

/// Polls `condition` every 10 ms until it holds or `POLL_DEADLINE` passes; true if it held.
async fn eventually<F, Fut>(mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + POLL_DEADLINE;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `try_lock` until it grants the lock or `POLL_DEADLINE` passes.
async fn lock_within_deadline(
    store: &KeyValueStore,
    resource: &str,
    ttl: Duration,
) -> Option<LockGuard> {
    let deadline = Instant::now() + POLL_DEADLINE;
    loop {
        if let Some(guard) = store.try_lock(resource, ttl).await.expect("try_lock") {
            return Some(guard);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Generates, for each behaviour `fn name(store)`, a test `memory::name` and a test
/// `redis::name`; the latter only reports that it did not run when no Redis is configured.
macro_rules! on_every_backend {
    ($($behaviour:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    super::$behaviour(super::memory_store()).await;
                }
            )*
        }

        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() {
                    match super::redis_store().await {
                        Some(store) => super::$behaviour(store).await,
                        None => eprintln!(
                            "{} is not set: Redis variant not run",
                            super::REDIS_URL_VARIABLE
                        ),
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    get_returns_what_set_stored,
    values_expire_after_their_ttl,
    set_without_ttl_clears_an_earlier_ttl,
    set_if_absent_stores_only_once,
    delete_removes_any_key_and_tolerates_absent_ones,
    concurrent_increments_are_exact,
    counter_is_zero_when_absent_and_reads_as_digits,
    hll_estimates_distinct_members_within_two_percent,
    hll_key_expires_after_its_ttl,
    rate_limit_enforces_the_limit_exactly_and_resets,
    rate_limit_is_exact_under_concurrency,
    lock_is_exclusive_until_released,
    lock_expires_at_its_ttl_without_release,
    stale_owner_can_neither_release_nor_extend_a_lock_taken_over,
    extend_keeps_a_lock_past_its_first_ttl,
    prefixes_isolate_and_clones_share,
);

async fn get_returns_what_set_stored(store: KeyValueStore) {
    assert_eq!(store.get("product:1").await.expect("get"), None);

    // Binary values survive untouched, including zero bytes and invalid UTF-8.
    let value = [0_u8, 159, 146, 150, 0, 255];
    store.set("product:1", &value, None).await.expect("set");
    assert_eq!(
        store.get("product:1").await.expect("get"),
        Some(value.to_vec())
    );

    store
        .set("product:1", b"replaced", None)
        .await
        .expect("set");
    assert_eq!(
        store.get("product:1").await.expect("get"),
        Some(b"replaced".to_vec())
    );

    store.set("empty", b"", None).await.expect("set");
    assert_eq!(store.get("empty").await.expect("get"), Some(Vec::new()));

    store.delete("product:1").await.expect("delete");
    store.delete("empty").await.expect("delete");
}

async fn values_expire_after_their_ttl(store: KeyValueStore) {
    store
        .set("session", b"short", Some(SHORT_TTL))
        .await
        .expect("set");
    store
        .set("profile", b"long", Some(Duration::from_secs(60)))
        .await
        .expect("set");
    assert_eq!(
        store.get("session").await.expect("get"),
        Some(b"short".to_vec())
    );

    let expired = eventually(|| async { store.get("session").await.expect("get").is_none() }).await;
    assert!(
        expired,
        "a {SHORT_TTL:?} value was still there after {POLL_DEADLINE:?}"
    );
    assert_eq!(
        store.get("profile").await.expect("get"),
        Some(b"long".to_vec())
    );
    store.delete("profile").await.expect("delete");
}

async fn set_without_ttl_clears_an_earlier_ttl(store: KeyValueStore) {
    store
        .set("kept", b"first", Some(SHORT_TTL))
        .await
        .expect("set");
    store.set("kept", b"second", None).await.expect("set");
    // A sibling with the same ttl tells us when the first ttl would have passed.
    store
        .set("witness", b"x", Some(SHORT_TTL))
        .await
        .expect("set");
    let witness_gone =
        eventually(|| async { store.get("witness").await.expect("get").is_none() }).await;
    assert!(witness_gone, "witness did not expire");
    assert_eq!(
        store.get("kept").await.expect("get"),
        Some(b"second".to_vec())
    );
    store.delete("kept").await.expect("delete");
}

async fn set_if_absent_stores_only_once(store: KeyValueStore) {
    assert!(
        store
            .set_if_absent("idem", b"first", None)
            .await
            .expect("nx")
    );
    assert!(
        !store
            .set_if_absent("idem", b"second", None)
            .await
            .expect("nx")
    );
    assert_eq!(
        store.get("idem").await.expect("get"),
        Some(b"first".to_vec())
    );

    store.delete("idem").await.expect("delete");
    assert!(
        store
            .set_if_absent("idem", b"third", Some(SHORT_TTL))
            .await
            .expect("nx")
    );
    assert!(
        !store
            .set_if_absent("idem", b"fourth", Some(SHORT_TTL))
            .await
            .expect("nx")
    );

    // Once the ttl has passed the key counts as absent again.
    let free_again = eventually(|| async {
        store
            .set_if_absent("idem", b"fifth", Some(SHORT_TTL))
            .await
            .expect("nx")
    })
    .await;
    assert!(free_again, "set_if_absent never succeeded after the ttl");
    assert_eq!(
        store.get("idem").await.expect("get"),
        Some(b"fifth".to_vec())
    );
}

async fn delete_removes_any_key_and_tolerates_absent_ones(store: KeyValueStore) {
    store.delete("never-written").await.expect("delete absent");

    store.set("bytes", b"v", None).await.expect("set");
    store.increment("count", 3).await.expect("increment");
    store.hll_add("visitors", "a", None).await.expect("hll_add");
    for key in ["bytes", "count", "visitors"] {
        store.delete(key).await.expect("delete");
    }
    assert_eq!(store.get("bytes").await.expect("get"), None);
    assert_eq!(store.counter("count").await.expect("counter"), 0);
    assert_eq!(store.hll_count("visitors").await.expect("hll_count"), 0);
}

async fn concurrent_increments_are_exact(store: KeyValueStore) {
    let mut tasks = JoinSet::new();
    for task in 0..50_i64 {
        let store = store.clone();
        // Mixed steps (1 and 2) so a lost update cannot hide behind a coincidence.
        tasks.spawn(async move { store.increment("orders", 1 + task % 2).await });
    }
    let mut seen = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        seen.push(joined.expect("task").expect("increment"));
    }
    let expected_total = 25 + 25 * 2;
    assert_eq!(
        store.counter("orders").await.expect("counter"),
        expected_total
    );
    // Every increment returned a distinct intermediate value and the largest is the total.
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 50);
    assert_eq!(seen.last().copied(), Some(expected_total));

    assert_eq!(store.increment("orders", -75).await.expect("decrement"), 0);
    store.delete("orders").await.expect("delete");
}

async fn counter_is_zero_when_absent_and_reads_as_digits(store: KeyValueStore) {
    assert_eq!(store.counter("stock").await.expect("counter"), 0);
    assert_eq!(store.increment("stock", -4).await.expect("increment"), -4);
    assert_eq!(store.counter("stock").await.expect("counter"), -4);
    assert_eq!(store.get("stock").await.expect("get"), Some(b"-4".to_vec()));

    // A counter can start from a value written with `set`, as in Redis.
    store.set("stock", b"10", None).await.expect("set");
    assert_eq!(store.increment("stock", 5).await.expect("increment"), 15);

    // Text is not a counter: an error, never a silent 0 or a reset.
    store.set("name", b"vitamin-c", None).await.expect("set");
    let error = store
        .increment("name", 1)
        .await
        .expect_err("increment of text");
    assert!(matches!(error, KvError::Unavailable(_)), "{error:?}");
    assert_eq!(
        store.get("name").await.expect("get"),
        Some(b"vitamin-c".to_vec())
    );

    store.delete("stock").await.expect("delete");
    store.delete("name").await.expect("delete");
}

async fn hll_estimates_distinct_members_within_two_percent(store: KeyValueStore) {
    const MEMBERS: u64 = 10_000;
    const WRITERS: u64 = 10;
    let ttl = Some(Duration::from_secs(60));
    assert_eq!(store.hll_count("views").await.expect("hll_count"), 0);

    let mut tasks = JoinSet::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.spawn(async move {
            for member in (writer..MEMBERS).step_by(WRITERS as usize) {
                store
                    .hll_add("views", &format!("visitor-{member}"), ttl)
                    .await
                    .expect("hll_add");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("writer task");
    }

    let estimate = store.hll_count("views").await.expect("hll_count");
    let error = (estimate as f64 - MEMBERS as f64).abs() / MEMBERS as f64;
    assert!(
        error < 0.02,
        "estimate {estimate} for {MEMBERS}: error {error:.4}"
    );

    // Visitors seen before never change the sketch.
    for member in 0..1_000 {
        let changed = store
            .hll_add("views", &format!("visitor-{member}"), ttl)
            .await
            .expect("hll_add");
        assert!(!changed, "duplicate visitor-{member} changed the sketch");
    }
    assert_eq!(store.hll_count("views").await.expect("hll_count"), estimate);

    // A new key reports a change for its first member.
    assert!(
        store
            .hll_add("other", "someone", ttl)
            .await
            .expect("hll_add")
    );
    assert_eq!(store.hll_count("other").await.expect("hll_count"), 1);
}

async fn hll_key_expires_after_its_ttl(store: KeyValueStore) {
    store
        .hll_add("today", "visitor", Some(SHORT_TTL))
        .await
        .expect("hll_add");
    assert_eq!(store.hll_count("today").await.expect("hll_count"), 1);
    let expired =
        eventually(|| async { store.hll_count("today").await.expect("hll_count") == 0 }).await;
    assert!(expired, "HyperLogLog key outlived its ttl");
}

async fn rate_limit_enforces_the_limit_exactly_and_resets(store: KeyValueStore) {
    let window = Duration::from_millis(500);
    let limit = 5;
    for expected_remaining in (0..limit).rev() {
        let decision = store
            .rate_limit("login:203.0.113.7", limit, window)
            .await
            .expect("rate_limit");
        assert_eq!(
            decision,
            RateDecision {
                allowed: true,
                remaining: expected_remaining,
                retry_after: Duration::ZERO,
            }
        );
    }
    let denied = store
        .rate_limit("login:203.0.113.7", limit, window)
        .await
        .expect("rate_limit");
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    assert!(
        denied.retry_after > Duration::ZERO && denied.retry_after <= window,
        "retry_after {:?}",
        denied.retry_after
    );

    // Other keys have their own window.
    let other = store
        .rate_limit("login:198.51.100.1", limit, window)
        .await
        .expect("rate_limit");
    assert!(other.allowed);

    // After the window a fresh one starts with the full allowance.
    let reset = eventually(|| async {
        store
            .rate_limit("login:203.0.113.7", limit, window)
            .await
            .expect("rate_limit")
            .allowed
    })
    .await;
    assert!(reset, "the window never reset");
    let next = store
        .rate_limit("login:203.0.113.7", limit, window)
        .await
        .expect("rate_limit");
    assert_eq!(next.remaining, limit - 2);
}

async fn rate_limit_is_exact_under_concurrency(store: KeyValueStore) {
    let limit = 10;
    let mut tasks = JoinSet::new();
    for _ in 0..40 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .rate_limit("login:alice@example.com", limit, Duration::from_secs(60))
                .await
        });
    }
    let mut allowed = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.expect("task").expect("rate_limit").allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, limit);
    store
        .delete("login:alice@example.com")
        .await
        .expect("delete");
}

async fn lock_is_exclusive_until_released(store: KeyValueStore) {
    let ttl = Duration::from_secs(30);
    let first = store
        .try_lock("billing:sub-42", ttl)
        .await
        .expect("try_lock")
        .expect("a free lock is granted");
    assert!(
        store
            .try_lock("billing:sub-42", ttl)
            .await
            .expect("try_lock")
            .is_none()
    );
    // Another resource is independent, and so is a plain key with the same name.
    let other = store
        .try_lock("billing:sub-43", ttl)
        .await
        .expect("try_lock")
        .expect("another resource is free");
    assert!(
        store
            .set_if_absent("billing:sub-42", b"x", None)
            .await
            .expect("nx")
    );

    first.release().await.expect("release");
    let again = store
        .try_lock("billing:sub-42", ttl)
        .await
        .expect("try_lock")
        .expect("granted after release");
    again.release().await.expect("release");
    other.release().await.expect("release");
    store.delete("billing:sub-42").await.expect("delete");
}

async fn lock_expires_at_its_ttl_without_release(store: KeyValueStore) {
    let guard = store
        .try_lock("report", SHORT_TTL)
        .await
        .expect("try_lock")
        .expect("a free lock is granted");
    // Dropping does not release: the lock stays held until its ttl passes.
    drop(guard);
    assert!(
        store
            .try_lock("report", SHORT_TTL)
            .await
            .expect("try_lock")
            .is_none()
    );

    let successor = lock_within_deadline(&store, "report", Duration::from_secs(30))
        .await
        .expect("the lock was never free after its ttl");
    successor.release().await.expect("release");
}

async fn stale_owner_can_neither_release_nor_extend_a_lock_taken_over(store: KeyValueStore) {
    let mut stale = store
        .try_lock("renewal", SHORT_TTL)
        .await
        .expect("try_lock")
        .expect("a free lock is granted");

    let current = lock_within_deadline(&store, "renewal", Duration::from_secs(30))
        .await
        .expect("the lock was never free after its ttl");

    assert!(
        !stale.extend(Duration::from_secs(30)).await.expect("extend"),
        "an expired guard extended someone else's lock"
    );
    stale.release().await.expect("release by stale owner");
    assert!(
        store
            .try_lock("renewal", Duration::from_secs(30))
            .await
            .expect("try_lock")
            .is_none(),
        "a stale owner's release freed the current holder's lock"
    );
    current.release().await.expect("release");
}

async fn extend_keeps_a_lock_past_its_first_ttl(store: KeyValueStore) {
    let mut extended = store
        .try_lock("extended", SHORT_TTL)
        .await
        .expect("try_lock")
        .expect("a free lock is granted");
    let witness = store
        .try_lock("witness", SHORT_TTL)
        .await
        .expect("try_lock")
        .expect("a free lock is granted");
    drop(witness);
    assert!(
        extended
            .extend(Duration::from_secs(30))
            .await
            .expect("extend")
    );

    // Once the witness (same first ttl) is free again, the original ttl has passed.
    let witness_again = lock_within_deadline(&store, "witness", SHORT_TTL)
        .await
        .expect("the witness lock never expired");
    assert!(
        store
            .try_lock("extended", SHORT_TTL)
            .await
            .expect("try_lock")
            .is_none(),
        "the extended lock expired at its first ttl"
    );
    extended.release().await.expect("release");
    witness_again.release().await.expect("release");
}

async fn prefixes_isolate_and_clones_share(store: KeyValueStore) {
    let catalog = store.with_prefix("catalog");
    let order = store.with_prefix("order");
    catalog.set("k", b"catalog", None).await.expect("set");
    assert_eq!(order.get("k").await.expect("get"), None);
    assert_eq!(store.get("k").await.expect("get"), None);
    // The nested prefix is just a longer key in the parent's namespace.
    assert_eq!(
        store.get("catalog:k").await.expect("get"),
        Some(b"catalog".to_vec())
    );
    assert_eq!(
        catalog.clone().get("k").await.expect("get"),
        Some(b"catalog".to_vec())
    );

    let lock = catalog
        .try_lock("job", Duration::from_secs(30))
        .await
        .expect("try_lock")
        .expect("free");
    let other = order
        .try_lock("job", Duration::from_secs(30))
        .await
        .expect("try_lock")
        .expect("same resource under another prefix is free");
    lock.release().await.expect("release");
    other.release().await.expect("release");
    catalog.delete("k").await.expect("delete");
}

// ---- Redis connection handling that needs no real Redis ----

#[tokio::test]
async fn connect_fails_fast_when_nothing_listens() {
    // Bind then drop a listener: its port is now (almost certainly) closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let started = Instant::now();
    let result = KeyValueStore::connect_redis(
        &format!("redis://127.0.0.1:{port}"),
        "test",
        Duration::from_millis(200),
    )
    .await;
    assert!(matches!(result, Err(KvError::Unavailable(_))), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connect_rejects_an_invalid_url() {
    let result =
        KeyValueStore::connect_redis("not-a-url", "test", Duration::from_millis(200)).await;
    assert!(matches!(result, Err(KvError::Unavailable(_))), "{result:?}");
}

#[tokio::test]
async fn connect_is_bounded_when_the_server_never_answers() {
    let address = spawn_fake_redis(|_| false);
    let started = Instant::now();
    let result = KeyValueStore::connect_redis(
        &format!("redis://{address}"),
        "",
        Duration::from_millis(200),
    )
    .await;
    assert!(result.is_err(), "connected to a server that never answers");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_operation_has_a_deadline() {
    // The server answers the handshake and PING but never a GET, like a Redis that hangs.
    let address = spawn_fake_redis(|command| !command.eq_ignore_ascii_case("GET"));
    let store = KeyValueStore::connect_redis(
        &format!("redis://{address}"),
        "",
        Duration::from_millis(200),
    )
    .await
    .expect("the fake server answers the handshake");
    let started = Instant::now();
    let result = store.get("anything").await;
    assert!(matches!(result, Err(KvError::Timeout)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

/// A minimal RESP server on a random port: it replies `+OK` to every command for which
/// `answers(command name)` is true and stays silent otherwise. Plain threads and blocking std
/// sockets keep it independent of the runtime under test; they end with the test process.
fn spawn_fake_redis(answers: fn(&str) -> bool) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(socket) = socket else { return };
            std::thread::spawn(move || {
                let Ok(mut writer) = socket.try_clone() else {
                    return;
                };
                let mut reader = std::io::BufReader::new(socket);
                while let Some(command) = read_command(&mut reader) {
                    if answers(&command) && writer.write_all(b"+OK\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// Reads one RESP array of bulk strings and returns its first element (the command name).
fn read_command(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|read| *read > 0)?;
    let parts: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut name = None;
    for _ in 0..parts {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let length: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut bulk = vec![0; length + 2];
        reader.read_exact(&mut bulk).ok()?;
        bulk.truncate(length);
        name.get_or_insert_with(|| String::from_utf8_lossy(&bulk).into_owned());
    }
    name
}
