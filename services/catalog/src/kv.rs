//! The catalog's handle on the shared key-value store: its keys under `catalog:`, and a gate
//! that keeps a failing store off the hot path.
//!
//! The cache and the view counter both stand on the key-value store, and neither may fail a
//! request because of it (SPEC: the store is a cache, the database is the truth). A failed or
//! timed-out operation closes the [`gate`](KvGate) for [`RETRY_AFTER`]: meanwhile the hot
//! path skips the store at once instead of paying the operation timeout on every request, and
//! after that one call probes it again. Every failure is counted
//! (`catalog_kv_errors_total{op}`) and skipped calls too (`catalog_kv_skipped_total`); the
//! switch between working and failing is logged once each way.
//!
//! [`CatalogKv::soft`] is for the hot path (failures become `None`); the fold task, whose
//! correctness depends on seeing the store's answer, uses the store directly and treats a
//! failure as an error ([`CatalogKv::store`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pillivery_platform::kv::{KeyValueStore, KvError};

/// How long the hot path leaves a failing store alone before probing it again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The catalog's view of the key-value store; cheap to clone.
#[derive(Clone, Debug)]
pub struct CatalogKv {
    store: KeyValueStore,
    gate: Arc<KvGate>,
}

impl CatalogKv {
    /// `store` as given by the configuration or the fleet; the catalog's keys go under a
    /// `catalog` segment of its prefix, so services sharing one store never collide.
    pub fn new(store: &KeyValueStore) -> CatalogKv {
        CatalogKv {
            store: store.with_prefix("catalog"),
            gate: Arc::new(KvGate::new()),
        }
    }

    /// The namespaced store, for callers that need every error (the fold).
    pub fn store(&self) -> &KeyValueStore {
        &self.store
    }

    /// Runs `operation` unless the gate is closed; `None` when skipped or failed (then counted
    /// and, on the first failure of a streak, logged).
    pub async fn soft<T>(
        &self,
        op: &'static str,
        operation: impl Future<Output = Result<T, KvError>>,
    ) -> Option<T> {
        if !self.gate.allows() {
            metrics::counter!("catalog_kv_skipped_total", "op" => op).increment(1);
            return None;
        }
        match operation.await {
            Ok(value) => {
                if self.gate.succeeded() {
                    tracing::info!(op, "key-value store answers again");
                }
                Some(value)
            }
            Err(error) => {
                self.failed(op, &error);
                None
            }
        }
    }

    /// Records a failure seen outside [`soft`](Self::soft), so the hot path backs off too.
    pub fn failed(&self, op: &'static str, error: &KvError) {
        metrics::counter!("catalog_kv_errors_total", "op" => op).increment(1);
        if self.gate.failed() {
            tracing::warn!(op, %error, "key-value store failing: serving from the database");
        } else {
            tracing::debug!(op, %error, "key-value store still failing");
        }
    }
}

/// Open (calls go through) until a failure; then closed for [`RETRY_AFTER`], after which the
/// first caller probes while the others keep skipping, until a call succeeds.
#[derive(Debug)]
struct KvGate {
    /// When the gate was made: instants below are milliseconds since then.
    epoch: Instant,
    /// 0: open. Otherwise the millisecond (since `epoch`, plus one so it is never 0) before
    /// which calls are skipped.
    closed_until: AtomicU64,
}

impl KvGate {
    fn new() -> KvGate {
        KvGate {
            epoch: Instant::now(),
            closed_until: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn allows(&self) -> bool {
        let until = self.closed_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now();
        if now < until {
            return false;
        }
        // One probe per window: whoever moves the deadline on is the probe.
        let next = now + RETRY_AFTER.as_millis() as u64;
        self.closed_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Opens the gate; true if it was closed (the store is back).
    fn succeeded(&self) -> bool {
        self.closed_until.swap(0, Ordering::AcqRel) != 0
    }

    /// Closes the gate for [`RETRY_AFTER`]; true if it was open (a new failure streak).
    fn failed(&self) -> bool {
        let until = self.now() + RETRY_AFTER.as_millis() as u64;
        self.closed_until.swap(until, Ordering::AcqRel) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_closes_the_gate_and_one_probe_passes_after_the_wait() {
        let gate = KvGate::new();
        assert!(gate.allows());
        assert!(gate.failed(), "first failure of a streak");
        assert!(!gate.failed(), "second failure of the same streak");
        assert!(!gate.allows());
        // Pretend the wait is over: exactly one caller probes.
        gate.closed_until.store(1, Ordering::Release);
        assert!(gate.allows());
        assert!(
            !gate.allows(),
            "a second caller does not probe in the same window"
        );
        assert!(gate.succeeded());
        assert!(!gate.succeeded());
        assert!(gate.allows());
    }

    #[tokio::test]
    async fn soft_calls_answer_none_on_failure_and_skip_while_closed() {
        let kv = CatalogKv::new(&KeyValueStore::in_memory());
        let stored = kv
            .soft("set", kv.store().set("k", b"v", None))
            .await
            .is_some();
        assert!(stored);
        // A counter read of text fails like a broken store would.
        assert_eq!(kv.soft("counter", kv.store().counter("k")).await, None);
        // Closed: even a call that would succeed is skipped.
        assert_eq!(kv.soft("get", kv.store().get("k")).await, None);
    }
}
