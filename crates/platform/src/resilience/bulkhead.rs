//! A concurrency limit per downstream, so one slow service holds at most its own share of the
//! caller's capacity and routes that do not use it stay fast.
//!
//! Callers beyond the limit wait in line (fairly, first come first served) for at most
//! `max_wait`, then are turned away: a short queue absorbs bursts, a long one would only turn
//! a slow downstream into slow callers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The concurrency limit for one downstream. Cheap to clone; clones share the limit.
#[derive(Clone)]
pub struct Bulkhead {
    /// `Arc<str>` so metric labels and permits share it without allocating.
    name: Arc<str>,
    semaphore: Arc<Semaphore>,
    max_concurrent: usize,
    max_wait: Duration,
}

/// No slot became free within the bulkhead's `max_wait`.
#[derive(Debug, thiserror::Error)]
#[error("bulkhead `{name}` is full")]
pub struct BulkheadFull {
    pub name: String,
}

impl Bulkhead {
    /// At most `max_concurrent` calls at once (clamped to what a semaphore can count); a
    /// caller waits at most `max_wait` for a slot, and a zero `max_wait` never waits.
    pub fn new(name: impl Into<String>, max_concurrent: usize, max_wait: Duration) -> Self {
        let name: Arc<str> = Arc::from(name.into());
        let max_concurrent = max_concurrent.min(Semaphore::MAX_PERMITS);
        // Registered now so the gauge reads 0 rather than being absent before the first call.
        metrics::gauge!("pillivery_bulkhead_in_flight", "bulkhead" => name.clone()).increment(0.0);
        Bulkhead {
            name,
            semaphore: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            max_wait,
        }
    }

    /// A slot for one call, held until the permit is dropped.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        // The semaphore is fair, so this fast path cannot jump ahead of queued callers.
        let permit = match Arc::clone(&self.semaphore).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if self.max_wait.is_zero() => None,
            Err(_) => {
                tokio::time::timeout(self.max_wait, Arc::clone(&self.semaphore).acquire_owned())
                    .await
                    .ok()
                    // The semaphore is never closed, so the inner error cannot happen.
                    .and_then(Result::ok)
            }
        };
        match permit {
            Some(permit) => {
                metrics::gauge!("pillivery_bulkhead_in_flight", "bulkhead" => self.name.clone())
                    .increment(1.0);
                Ok(BulkheadPermit {
                    _slot: permit,
                    name: Arc::clone(&self.name),
                })
            }
            None => {
                metrics::counter!("pillivery_bulkhead_rejected_total", "bulkhead" => self.name.clone())
                    .increment(1);
                Err(BulkheadFull {
                    name: self.name.to_string(),
                })
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    /// Calls holding a slot right now.
    pub fn in_flight(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.semaphore.available_permits())
    }
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("max_concurrent", &self.max_concurrent)
            .field("in_flight", &self.in_flight())
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

/// One call's slot in a [`Bulkhead`]; dropping it frees the slot.
#[must_use = "the slot is freed as soon as the permit is dropped"]
pub struct BulkheadPermit {
    _slot: OwnedSemaphorePermit,
    name: Arc<str>,
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        metrics::gauge!("pillivery_bulkhead_in_flight", "bulkhead" => self.name.clone())
            .decrement(1.0);
    }
}

impl fmt::Debug for BulkheadPermit {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("BulkheadPermit")
            .field("bulkhead", &self.name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_up_to_the_limit_and_rejects_at_once_without_a_queue() {
        let bulkhead = Bulkhead::new("catalog", 2, Duration::ZERO);
        let first = bulkhead.acquire().await.expect("first slot");
        let _second = bulkhead.acquire().await.expect("second slot");
        assert_eq!(bulkhead.in_flight(), 2);

        let full = bulkhead.acquire().await.expect_err("no third slot");
        assert_eq!(full.name, "catalog");
        assert_eq!(full.to_string(), "bulkhead `catalog` is full");

        drop(first);
        assert_eq!(bulkhead.in_flight(), 1);
        let _third = bulkhead.acquire().await.expect("a freed slot");
        assert_eq!(bulkhead.in_flight(), 2);
    }

    #[tokio::test]
    async fn waits_at_most_max_wait_then_rejects() {
        let max_wait = Duration::from_millis(30);
        let bulkhead = Bulkhead::new("payment", 1, max_wait);
        let _held = bulkhead.acquire().await.expect("the only slot");

        let started = tokio::time::Instant::now();
        assert!(bulkhead.acquire().await.is_err());
        // A timer never fires early, so this lower bound holds on any machine.
        assert!(started.elapsed() >= max_wait, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_waiting_caller_gets_the_next_free_slot() {
        let bulkhead = Bulkhead::new("order", 1, Duration::from_secs(60));
        let held = bulkhead.acquire().await.expect("the only slot");
        let waiter = tokio::spawn({
            let bulkhead = bulkhead.clone();
            async move { bulkhead.acquire().await.map(drop) }
        });
        // Let the waiter queue up before the slot is freed.
        while Arc::strong_count(&bulkhead.semaphore) < 3 {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        drop(held);
        waiter
            .await
            .expect("waiter task")
            .expect("the waiter should get the freed slot");
        assert_eq!(bulkhead.in_flight(), 0);
    }

    #[test]
    fn the_in_flight_gauge_follows_permits() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        metrics::with_local_recorder(&recorder, || {
            let bulkhead = Bulkhead::new("metered", 1, Duration::ZERO);
            let held = runtime.block_on(bulkhead.acquire()).expect("slot");
            assert!(runtime.block_on(bulkhead.acquire()).is_err());
            let rendered = handle.render();
            for line in [
                r#"pillivery_bulkhead_in_flight{bulkhead="metered"} 1"#,
                r#"pillivery_bulkhead_rejected_total{bulkhead="metered"} 1"#,
            ] {
                assert!(rendered.contains(line), "missing {line} in\n{rendered}");
            }
            drop(held);
            assert!(
                handle
                    .render()
                    .contains(r#"pillivery_bulkhead_in_flight{bulkhead="metered"} 0"#)
            );
        });
    }
}
