//! Item views (SPEC section 4, "Counters"): unique visitors per item per business day,
//! counted in HyperLogLog sketches of the key-value store and folded into `items.views`.
//!
//! Counting. Item detail adds the client's address to the sketch `views:<day>:<item id>` of
//! today's business date (`business_time_zone`), and, when that changed the sketch (a new
//! visitor; always for the day's first), the item id to the set `views:<day>:items`, which is
//! how the fold finds the day's items without scanning keys. No database write: the cost of
//! a view is two or three key-value round trips.
//!
//! Showing. `views` = the stored total + the estimate of every day not folded into it yet:
//! the days after `items.views_folded_through` (read with the item's row, so no extra query),
//! not before the item was created, within the retention window. Normally that is today, and
//! yesterday until it is folded. The sketches of those days are counted side by side.
//!
//! Folding. A tracked task, every `fold_interval_ms`, takes the Redlock `views-fold` (one
//! replica folds at a time) and folds each finished day (ended at least `fold_grace_ms` ago)
//! of the retention window, oldest first: for every item of the day's set, its estimate goes
//! into `items.views` in the same transaction as an `item_view_folds` row (item, day) whose
//! primary key guards against a second fold of the same day by a racing replica or a retry
//! after a crash; `views_folded_through` moves to that day in the same transaction. Then
//! every other item is marked folded through that day too (nobody viewed it), and a marker in
//! the store saves later runs the work. A failure stops the run before any later day, so a
//! day is never marked over an item whose views were not folded.
//!
//! Monotone: the stored total only ever grows (`views = views + n`), and what is shown moves
//! from "stored + sketch" to "stored + folded sketch" atomically per item, because the row read
//! tells which days are folded. The sketch of a finished day no longer changes, so the two
//! agree. See `docs/catalog.md` for the bounds and the failure cases.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use futures::StreamExt;
use pillivery_platform::kv::{KvError, LockGuard};
use pillivery_platform::shutdown::Shutdown;
use pillivery_platform::time::{BusinessCalendar, SharedClock};

use crate::config::ViewsConfig;
use crate::kv::CatalogKv;
use crate::store::{CatalogStore, ItemRecord, StoreError};

/// The lock resource that lets one replica fold at a time.
const FOLD_LOCK: &str = "views-fold";

/// How long the fold lock lives without an extension; the fold extends it after each batch.
const FOLD_LOCK_TTL: Duration = Duration::from_secs(120);

/// Items folded per database transaction.
const FOLD_BATCH: usize = 500;

/// Sketches counted concurrently while folding.
const FOLD_CONCURRENT_COUNTS: usize = 32;

/// Counts views and folds them; cheap to clone.
#[derive(Clone, Debug)]
pub struct ViewCounter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kv: CatalogKv,
    store: CatalogStore,
    calendar: BusinessCalendar,
    clock: SharedClock,
    config: ViewsConfig,
}

/// Why a fold run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error("key-value store: {0}")]
    KeyValue(#[from] KvError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one fold run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoldReport {
    /// The days folded by this run (already folded days are not listed).
    pub days: Vec<NaiveDate>,
    /// (item, day) pairs this run added to the stored totals.
    pub items: u64,
    /// Views this run added to the stored totals.
    pub views: u64,
}

impl ViewCounter {
    pub fn new(
        kv: CatalogKv,
        store: CatalogStore,
        calendar: BusinessCalendar,
        clock: SharedClock,
        config: ViewsConfig,
    ) -> ViewCounter {
        ViewCounter {
            inner: Arc::new(Inner {
                kv,
                store,
                calendar,
                clock,
                config,
            }),
        }
    }

    /// How long a day's keys live: the retention window plus one day, counted from the first
    /// view of the day, so a sketch outlives every day the fold may still pick it up.
    fn key_ttl(&self) -> Duration {
        Duration::from_secs(86_400 * (u64::from(self.inner.config.retention_days) + 1))
    }

    /// Counts a view of `item` by `visitor` (the client's address) and answers the item's
    /// views including it. Never fails: a failing key-value store leaves the view uncounted
    /// and shows the stored total plus what could be read.
    pub async fn record(&self, item: &ItemRecord, visitor: &str) -> i64 {
        let inner = &self.inner;
        let today = inner.calendar.date_of(inner.clock.now());
        let days = self.unfolded_days(item, today);
        let ttl = Some(self.key_ttl());
        let kv = &inner.kv;
        let store = kv.store();
        let today_sketch = sketch_key(today, item.item_id);
        let add_today = async {
            let changed = kv
                .soft("view_add", store.hll_add(&today_sketch, visitor, ttl))
                .await;
            if changed == Some(true) {
                // The first visitor of the day always changes the sketch, so the item is in
                // the day's set unless this call fails; then the next new visitor adds it.
                let member = item.item_id.to_string();
                kv.soft(
                    "view_index",
                    store.set_add(&day_items_key(today), &member, ttl),
                )
                .await;
            }
            if !days.contains(&today) {
                return 0;
            }
            kv.soft("view_count", store.hll_count(&today_sketch))
                .await
                .unwrap_or(0)
        };
        let earlier_days = futures::future::join_all(
            days.iter()
                .filter(|day| **day != today)
                .map(|day| self.estimate(*day, item.item_id)),
        );
        let (today_views, earlier) = tokio::join!(add_today, earlier_days);
        metrics::counter!("catalog_views_recorded_total").increment(1);
        let not_folded: u64 = earlier.into_iter().sum::<u64>() + today_views;
        item.views
            .saturating_add(i64::try_from(not_folded).unwrap_or(i64::MAX))
    }

    async fn estimate(&self, day: NaiveDate, item_id: i64) -> u64 {
        let kv = &self.inner.kv;
        kv.soft(
            "view_count",
            kv.store().hll_count(&sketch_key(day, item_id)),
        )
        .await
        .unwrap_or(0)
    }

    /// The days whose views are not in `item.views` yet, oldest first, ending with `today`.
    fn unfolded_days(&self, item: &ItemRecord, today: NaiveDate) -> Vec<NaiveDate> {
        let retention = u64::from(self.inner.config.retention_days);
        let window_start = today
            .checked_sub_days(Days::new(retention - 1))
            .unwrap_or(today);
        let created = self.inner.calendar.date_of(item.created_at);
        let after_fold = item
            .views_folded_through
            .and_then(|day| day.succ_opt())
            .unwrap_or(NaiveDate::MIN);
        // A creation "after today" is clock skew between replicas: the item exists today.
        let first = window_start.max(created.min(today)).max(after_fold);
        // Empty when today itself is folded (only if clocks disagree by more than the grace).
        first.iter_days().take_while(|day| *day <= today).collect()
    }

    /// Folds every finished day that is due, unless another replica holds the fold lock.
    /// `Ok(None)`: someone else is folding.
    pub async fn fold_if_free(&self) -> Result<Option<FoldReport>, FoldError> {
        let store = self.inner.kv.store();
        let Some(mut lock) = store.try_lock(FOLD_LOCK, FOLD_LOCK_TTL).await? else {
            return Ok(None);
        };
        let report = self.fold_due(Some(&mut lock)).await;
        if let Err(error) = lock.release().await {
            // It expires at its ttl anyway.
            tracing::debug!(%error, "fold lock not released");
        }
        report.map(Some)
    }

    /// Folds every finished day of the retention window that is not marked folded yet,
    /// oldest first, stopping at the first failure. Safe without the lock (the fold table
    /// guards each item and day); `lock`, when held, is extended as the work goes on.
    pub async fn fold_due(
        &self,
        mut lock: Option<&mut LockGuard>,
    ) -> Result<FoldReport, FoldError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let today = inner.calendar.date_of(now);
        let retention = u64::from(inner.config.retention_days);
        let mut report = FoldReport::default();
        let first = today
            .checked_sub_days(Days::new(retention - 1))
            .unwrap_or(today);
        for day in first.iter_days().take_while(|day| *day < today) {
            let ended = day
                .succ_opt()
                .map_or(now, |next| inner.calendar.start_of(next));
            if now < ended + inner.config.fold_grace() {
                // Days are in order: no later day has ended either.
                break;
            }
            let store = inner.kv.store();
            if store.get(&folded_marker_key(day)).await?.is_some() {
                continue;
            }
            let (items, views) = self.fold_day(day, now, lock.as_deref_mut()).await?;
            inner.store.mark_views_folded_through(day).await?;
            store
                .set(&folded_marker_key(day), b"1", Some(self.key_ttl()))
                .await?;
            tracing::info!(%day, items, views, "views folded");
            metrics::counter!("catalog_views_folded_items_total").increment(items);
            report.days.push(day);
            report.items += items;
            report.views += views;
        }
        Ok(report)
    }

    /// Folds one day's sketches; answers the (item, day) pairs and views added by this call.
    async fn fold_day(
        &self,
        day: NaiveDate,
        now: DateTime<Utc>,
        mut lock: Option<&mut LockGuard>,
    ) -> Result<(u64, u64), FoldError> {
        let inner = &self.inner;
        let store = inner.kv.store();
        let mut item_ids: Vec<i64> = store
            .set_members(&day_items_key(day))
            .await?
            .iter()
            .filter_map(|member| member.parse().ok())
            .collect();
        item_ids.sort_unstable();
        let (mut items, mut views) = (0, 0);
        for batch in item_ids.chunks(FOLD_BATCH) {
            let folded: HashSet<i64> = inner.store.folded_items(day, batch).await?;
            let todo: Vec<i64> = batch
                .iter()
                .copied()
                .filter(|item_id| !folded.contains(item_id))
                .collect();
            let counts: Vec<Result<(i64, u64), KvError>> = futures::stream::iter(todo)
                .map(|item_id| async move {
                    let count = store.hll_count(&sketch_key(day, item_id)).await?;
                    Ok((item_id, count))
                })
                .buffered(FOLD_CONCURRENT_COUNTS)
                .collect()
                .await;
            let mut counts_to_fold = Vec::with_capacity(counts.len());
            for count in counts {
                let (item_id, count) = count?;
                // An absent sketch (count 0) adds nothing; the day's mark covers the item.
                if count > 0 {
                    counts_to_fold.push((item_id, i64::try_from(count).unwrap_or(i64::MAX)));
                }
            }
            if inner.store.fold_views(day, &counts_to_fold, now).await? {
                items += counts_to_fold.len() as u64;
                views += counts_to_fold
                    .iter()
                    .map(|(_, count)| *count as u64)
                    .sum::<u64>();
            } else {
                // Another replica folded some of these meanwhile: one by one, so each item
                // is folded by exactly one of us.
                for &(item_id, count) in &counts_to_fold {
                    if inner
                        .store
                        .fold_views(day, &[(item_id, count)], now)
                        .await?
                    {
                        items += 1;
                        views += count as u64;
                    }
                }
            }
            if let Some(lock) = lock.as_deref_mut()
                && !lock.extend(FOLD_LOCK_TTL).await?
            {
                // Correctness does not need the lock (the fold table does); carry on.
                tracing::warn!(%day, "fold lock lost mid-way; another replica may fold too");
            }
        }
        Ok((items, views))
    }

    /// Folds due days every `fold_interval_ms` until `shutdown`; a fold in progress is
    /// abandoned at shutdown (its open transaction rolls back, the next run redoes it).
    pub async fn run_folds(self, shutdown: Shutdown) {
        let every = self.inner.config.fold_interval();
        // The first fold waits one interval: a starting service (and a test) is not met by a
        // burst of writes, which SQLite would make other writers retry.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                _ = ticker.tick() => {}
            }
            let outcome = tokio::select! {
                () = shutdown.wait() => return,
                outcome = self.fold_if_free() => outcome,
            };
            match outcome {
                Ok(Some(report)) if !report.days.is_empty() => {
                    metrics::counter!("catalog_views_fold_runs_total", "outcome" => "folded")
                        .increment(1);
                }
                Ok(Some(_)) => {
                    metrics::counter!("catalog_views_fold_runs_total", "outcome" => "nothing_due")
                        .increment(1);
                }
                Ok(None) => {
                    metrics::counter!("catalog_views_fold_runs_total", "outcome" => "locked")
                        .increment(1);
                }
                Err(error) => {
                    metrics::counter!("catalog_views_fold_runs_total", "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(%error, "views fold failed; retried next interval");
                }
            }
        }
    }
}

/// The sketch of one item's visitors on one business day.
pub fn sketch_key(day: NaiveDate, item_id: i64) -> String {
    format!("views:{day}:{item_id}")
}

/// The set of items with a sketch for `day`.
pub fn day_items_key(day: NaiveDate) -> String {
    format!("views:{day}:items")
}

/// Set once every item of `day` is folded.
fn folded_marker_key(day: NaiveDate) -> String {
    format!("views:{day}:folded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pillivery_platform::kv::KeyValueStore;
    use pillivery_platform::time::ManualClock;

    #[test]
    fn keys_carry_the_day_and_the_item() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert_eq!(sketch_key(day, 42), "views:2026-11-24:42");
        assert_eq!(day_items_key(day), "views:2026-11-24:items");
        assert_eq!(folded_marker_key(day), "views:2026-11-24:folded");
    }

    async fn counter(clock: &ManualClock) -> ViewCounter {
        // Only `unfolded_days` is exercised here: no query reaches the database.
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        ViewCounter::new(
            CatalogKv::new(&KeyValueStore::in_memory()),
            CatalogStore::new(db),
            BusinessCalendar::default(),
            Arc::new(clock.clone()),
            ViewsConfig::default(),
        )
    }

    fn item(created_at: DateTime<Utc>, folded: Option<NaiveDate>) -> ItemRecord {
        let mut item = crate::store::tests_support::blank_item();
        item.created_at = created_at;
        item.views_folded_through = folded;
        item
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn unfolded_days_run_from_the_day_after_the_fold_to_today() {
        // 2026-11-24 01:00 in Seoul is still the 23rd in UTC.
        let now: DateTime<Utc> = "2026-11-23T16:00:00Z".parse().unwrap();
        let clock = ManualClock::starting_at(now);
        let views = counter(&clock).await;
        let today = views.inner.calendar.date_of(now);
        assert_eq!(today, date("2026-11-24"));
        let old: DateTime<Utc> = "2020-01-01T00:00:00Z".parse().unwrap();
        let table = [
            // Folded through yesterday: today only.
            (old, Some(date("2026-11-23")), vec!["2026-11-24"]),
            // Yesterday not folded yet: yesterday and today.
            (
                old,
                Some(date("2026-11-22")),
                vec!["2026-11-23", "2026-11-24"],
            ),
            // Never folded: the whole retention window (7 days).
            (
                old,
                None,
                vec![
                    "2026-11-18",
                    "2026-11-19",
                    "2026-11-20",
                    "2026-11-21",
                    "2026-11-22",
                    "2026-11-23",
                    "2026-11-24",
                ],
            ),
            // Created today (Seoul), never folded: today only.
            (
                "2026-11-23T15:30:00Z".parse().unwrap(),
                None,
                vec!["2026-11-24"],
            ),
            // Folded through today already (clocks disagree): nothing is added twice.
            (old, Some(date("2026-11-24")), vec![]),
            // Created "tomorrow" by a replica whose clock runs ahead: today.
            (
                "2026-11-24T16:00:00Z".parse().unwrap(),
                None,
                vec!["2026-11-24"],
            ),
        ];
        for (created, folded, expected) in table {
            let days: Vec<String> = views
                .unfolded_days(&item(created, folded), today)
                .iter()
                .map(NaiveDate::to_string)
                .collect();
            assert_eq!(days, expected, "created {created}, folded {folded:?}");
        }
    }
}
