//! The two-level cache of list pages and the main page (SPEC section 4, "Caching").
//!
//! What is cached is the encoded protobuf answer, so a cached answer is byte for byte the
//! answer the database would give at the same catalog version. Level 1 is in-process (moka,
//! bounded in bytes, short ttl); level 2 is the shared key-value store (ttl), so a page one
//! replica computed serves every other replica. Concurrent misses of one key on one replica
//! wait for a single load (moka's coalescing), so a version bump does not stampede the database.
//!
//! Keys are `v<version>:<canonical request>` (level 2: under `catalog:cache:`). The canonical
//! request is built from the validated, normalised [`ItemSearch`] — trimmed and lower-cased
//! keyword, swapped price bounds, default sort, page and size filled in — so every spelling of
//! one search shares one entry, whichever route it came by.
//!
//! Invalidation is by version: a counter `catalog:cache:version` in the key-value store,
//! incremented after every committed change an answer depends on (item create, update,
//! delete, import, sales). Entries of older versions are never read again and age out. Each
//! replica keeps the version it last read and rereads it at most `version_check_ms` after
//! (one request does, the others keep the value meanwhile); its own bumps apply at once.
//! So a change made on one replica is visible on every replica within `version_check_ms` plus
//! one key-value round trip (bounded by `kv_timeout_ms`). `docs/catalog.md` has the reasoning
//! and the failure cases.
//!
//! The version counter never goes backwards, even if the store loses it (Redis restarted or
//! evicted it): a lost counter is started again at the current Unix time in microseconds (or
//! just above the highest version this replica has seen, if that is higher), far above any
//! count of bumps, so a version number is never reused for other data.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::future::Cache;

use crate::config::CacheConfig;
use crate::domain::ItemSearch;
use crate::kv::CatalogKv;
use crate::store::StoreError;

/// The key of the catalog version counter (under the catalog's `catalog:` prefix).
const VERSION_KEY: &str = "cache:version";

/// Versions below this are a counter that was lost and restarted from 0 (see the module doc);
/// it is 2020-09-13 in Unix microseconds, below any clock this code will run under.
const VERSION_FLOOR: i64 = 1_600_000_000_000_000;

/// The cache of encoded answers; cheap to clone, clones share both levels.
#[derive(Clone)]
pub struct ResponseCache {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: bool,
    local: Cache<String, Bytes>,
    kv: CatalogKv,
    shared_ttl: Duration,
    version: VersionClock,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ResponseCache")
            .field("enabled", &self.inner.enabled)
            .field("local_entries", &self.inner.local.entry_count())
            .finish_non_exhaustive()
    }
}

/// Why a load through the cache failed: the database's error, shared with every caller that
/// waited for the same load.
pub type LoadError = Arc<StoreError>;

impl ResponseCache {
    pub fn new(config: &CacheConfig, kv: CatalogKv) -> ResponseCache {
        let local = Cache::builder()
            .max_capacity(config.local_max_bytes)
            // Weighed by what they hold: a 100-row page costs more than a 1-row one.
            .weigher(|key: &String, value: &Bytes| {
                u32::try_from(key.len() + value.len()).unwrap_or(u32::MAX)
            })
            .time_to_live(config.local_ttl())
            .build();
        ResponseCache {
            inner: Arc::new(Inner {
                enabled: config.enabled,
                local,
                kv,
                shared_ttl: config.shared_ttl(),
                version: VersionClock::new(config.version_check()),
            }),
        }
    }

    /// The encoded answer for `key`: from level 1, else level 2, else `load` (whose answer
    /// then fills both). Only successful answers are cached. When the cache is disabled or the
    /// catalog version has never been readable, `load` answers every time.
    pub async fn get_or_load<F, Fut>(&self, key: &str, load: F) -> Result<Bytes, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, StoreError>>,
    {
        let inner = &self.inner;
        let version = if inner.enabled {
            inner.version.current(&inner.kv).await
        } else {
            None
        };
        let Some(version) = version else {
            metrics::counter!("catalog_cache_bypass_total").increment(1);
            return load().await.map(Bytes::from).map_err(Arc::new);
        };
        let local_key = format!("v{version}:{key}");
        let entry = inner
            .local
            .entry(local_key)
            .or_try_insert_with(async {
                metrics::counter!("catalog_cache_requests_total", "level" => "local", "result" => "miss")
                    .increment(1);
                let shared_key = format!("cache:v{version}:{key}");
                let kv = &inner.kv;
                if let Some(Some(bytes)) = kv.soft("cache_get", kv.store().get(&shared_key)).await {
                    metrics::counter!("catalog_cache_requests_total", "level" => "shared", "result" => "hit")
                        .increment(1);
                    return Ok(Bytes::from(bytes));
                }
                metrics::counter!("catalog_cache_requests_total", "level" => "shared", "result" => "miss")
                    .increment(1);
                let bytes = Bytes::from(load().await?);
                let ttl = Some(inner.shared_ttl);
                kv.soft("cache_set", kv.store().set(&shared_key, &bytes, ttl))
                    .await;
                Ok::<_, StoreError>(bytes)
            })
            .await?;
        if !entry.is_fresh() {
            metrics::counter!("catalog_cache_requests_total", "level" => "local", "result" => "hit")
                .increment(1);
        }
        Ok(entry.into_value())
    }

    /// [`get_or_load`](Self::get_or_load) for a protobuf message: `load` answers the message,
    /// the cache keeps its encoding. A cached value that does not decode (it cannot, unless the
    /// store was written by something else) is logged and answered from `load` instead.
    pub async fn get_or_load_message<M, F, Fut>(&self, key: &str, load: F) -> Result<M, LoadError>
    where
        M: prost::Message + Default,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<M, StoreError>>,
    {
        let bytes = self
            .get_or_load(key, || async { Ok(load().await?.encode_to_vec()) })
            .await?;
        match M::decode(bytes) {
            Ok(message) => Ok(message),
            Err(error) => {
                metrics::counter!("catalog_cache_undecodable_total").increment(1);
                tracing::error!(key, %error, "cached answer does not decode; answering from the database");
                load().await.map_err(Arc::new)
            }
        }
    }

    /// Makes every cached answer stale: call after each committed change an answer depends on.
    /// This replica sees the change at once, the others within the bound in the module doc.
    /// Never fails: when the store cannot be reached, this replica drops its level 1 and
    /// retries the bump on a later request (see `docs/catalog.md`).
    pub async fn invalidate(&self) {
        let inner = &self.inner;
        if !inner.enabled {
            return;
        }
        inner.version.bump(&inner.kv, &inner.local).await;
    }

    /// The version this replica uses now, reading it when due (`None`: never readable).
    pub async fn version(&self) -> Option<u64> {
        self.inner.version.current(&self.inner.kv).await
    }
}

/// The key of a search's answer: every field of the normalised search, strings quoted (JSON)
/// so no keyword can forge another search's key. The keyword is lower-cased because the store
/// matches it case-insensitively (`store::contains_pattern` lower-cases it first): `Omega`
/// and `omega` are one search. The brand is an exact match and stays as given.
pub fn search_key(search: &ItemSearch) -> String {
    fn quoted(text: Option<&str>) -> String {
        text.map_or_else(
            || "-".to_owned(),
            |text| serde_json::Value::from(text).to_string(),
        )
    }
    fn bound(value: Option<i64>) -> String {
        value.map_or_else(|| "-".to_owned(), |value| value.to_string())
    }
    let keyword = search.keyword.as_deref().map(str::to_lowercase);
    format!(
        "search:q={}:c={}:b={}:min={}:max={}:sale={}:sort={}:page={}:size={}",
        quoted(keyword.as_deref()),
        search.category.map_or("-", |category| category.code()),
        quoted(search.brand.as_deref()),
        bound(search.price_range.0),
        bound(search.price_range.1),
        u8::from(search.on_sale),
        search.sort.code(),
        search.page.page,
        search.page.size,
    )
}

/// The key of the main page's answer.
pub const MAIN_PAGE_KEY: &str = "main";

/// The catalog version as this replica knows it.
struct VersionClock {
    check_every: Duration,
    state: Mutex<VersionState>,
}

#[derive(Default)]
struct VersionState {
    /// The last version read or bumped; `None` until the store first answered.
    version: Option<u64>,
    /// When `version` was last confirmed by the store.
    checked_at: Option<Instant>,
    /// One request rereads at a time; the others use `version` meanwhile.
    refreshing: bool,
    /// A bump the store did not take yet (it was failing): applied by the next reread.
    pending_bump: bool,
}

impl VersionClock {
    fn new(check_every: Duration) -> VersionClock {
        VersionClock {
            check_every,
            state: Mutex::new(VersionState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, VersionState> {
        // Every update below is a plain assignment: a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The version to use now; rereads it first when the last read is older than
    /// `check_every` and no other request is rereading.
    async fn current(&self, kv: &CatalogKv) -> Option<u64> {
        let pending_bump = {
            let mut state = self.state();
            let due = state
                .checked_at
                .is_none_or(|at| at.elapsed() >= self.check_every);
            if !due || state.refreshing {
                return state.version;
            }
            state.refreshing = true;
            state.pending_bump
        };
        let known = self.state().version;
        let read = if pending_bump {
            bump_version(kv, known).await
        } else {
            read_version(kv, known).await
        };
        let mut state = self.state();
        state.refreshing = false;
        if let Some(read) = read {
            // `max`: a reread that started before this replica's own bump must not undo it.
            state.version = Some(state.version.map_or(read, |known| known.max(read)));
            state.checked_at = Some(Instant::now());
            if pending_bump {
                state.pending_bump = false;
            }
        }
        state.version
    }

    async fn bump(&self, kv: &CatalogKv, local: &Cache<String, Bytes>) {
        let known = self.state().version;
        match bump_version(kv, known).await {
            Some(bumped) => {
                let mut state = self.state();
                state.version = Some(state.version.map_or(bumped, |known| known.max(bumped)));
                state.checked_at = Some(Instant::now());
            }
            None => {
                // The other replicas cannot read the version either while the store fails
                // (they keep their level 1, whose ttl bounds their staleness); this replica
                // forgets its own level 1 so its next answers show the change.
                self.state().pending_bump = true;
                local.invalidate_all();
                tracing::warn!(
                    "catalog version not bumped: the change shows on other replicas once the store is back"
                );
            }
        }
    }
}

/// Reads the shared version, starting the counter again (see [`restart_value`]) if it is
/// absent.
async fn read_version(kv: &CatalogKv, known: Option<u64>) -> Option<u64> {
    let store = kv.store();
    let version = kv.soft("version_read", store.counter(VERSION_KEY)).await?;
    if version >= VERSION_FLOOR {
        return u64::try_from(version).ok();
    }
    // Absent (0) or restarted by an INCR after a loss: start it again above every version
    // handed out before. Whoever gets there first sets it; the others read theirs.
    let restart = restart_value(known).to_string();
    kv.soft(
        "version_init",
        store.set_if_absent(VERSION_KEY, restart.as_bytes(), None),
    )
    .await?;
    let version = kv.soft("version_read", store.counter(VERSION_KEY)).await?;
    if version < VERSION_FLOOR {
        // Someone's INCR recreated it from 0 between our two calls: jump it.
        let jumped = kv
            .soft(
                "version_bump",
                store.increment(VERSION_KEY, restart_value(known)),
            )
            .await?;
        return u64::try_from(jumped).ok();
    }
    u64::try_from(version).ok()
}

/// Increments the shared version; a counter that had been lost jumps above the floor.
async fn bump_version(kv: &CatalogKv, known: Option<u64>) -> Option<u64> {
    let store = kv.store();
    let mut version = kv
        .soft("version_bump", store.increment(VERSION_KEY, 1))
        .await?;
    if version < VERSION_FLOOR {
        version = kv
            .soft(
                "version_bump",
                store.increment(VERSION_KEY, restart_value(known)),
            )
            .await?;
    }
    u64::try_from(version).ok()
}

/// Where a lost counter starts again: the current Unix time in microseconds (bumps never
/// outpace it), or above the highest version this replica has seen if that is higher.
fn restart_value(known: Option<u64>) -> i64 {
    let now = chrono::Utc::now().timestamp_micros();
    let above_known = known.map_or(0, |known| i64::try_from(known).unwrap_or(i64::MAX - 1) + 1);
    now.max(above_known)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Category, ItemSort, PageRequest};
    use pillivery_platform::kv::KeyValueStore;

    fn search() -> ItemSearch {
        ItemSearch {
            keyword: Some("Omega 3".into()),
            category: Some(Category::Eye),
            brand: Some("종근당".into()),
            price_range: (Some(1_000), Some(20_000)),
            on_sale: true,
            sort: ItemSort::PriceLow,
            page: PageRequest { page: 2, size: 30 },
        }
    }

    #[test]
    fn keys_name_every_field_and_fold_the_keyword_case() {
        assert_eq!(
            search_key(&search()),
            r#"search:q="omega 3":c=EYE:b="종근당":min=1000:max=20000:sale=1:sort=PRICE_L:page=2:size=30"#
        );
        assert_eq!(
            search_key(&ItemSearch::default()),
            "search:q=-:c=-:b=-:min=-:max=-:sale=0:sort=SALES:page=1:size=20"
        );
        let mut upper = search();
        upper.keyword = Some("OMEGA 3".into());
        assert_eq!(search_key(&upper), search_key(&search()));
    }

    #[test]
    fn different_searches_have_different_keys() {
        let base = search();
        let variants: Vec<ItemSearch> = vec![
            ItemSearch {
                keyword: None,
                ..base.clone()
            },
            ItemSearch {
                category: None,
                ..base.clone()
            },
            ItemSearch {
                brand: Some("종근당 ".into()),
                ..base.clone()
            },
            ItemSearch {
                price_range: (Some(1_000), None),
                ..base.clone()
            },
            ItemSearch {
                price_range: (None, Some(20_000)),
                ..base.clone()
            },
            ItemSearch {
                on_sale: false,
                ..base.clone()
            },
            ItemSearch {
                sort: ItemSort::PriceHigh,
                ..base.clone()
            },
            ItemSearch {
                page: PageRequest { page: 3, size: 30 },
                ..base.clone()
            },
            ItemSearch {
                page: PageRequest { page: 2, size: 20 },
                ..base.clone()
            },
            // A keyword that spells another search's key parts stays one quoted string.
            ItemSearch {
                keyword: Some(r#"omega 3":c=EYE"#.into()),
                ..base.clone()
            },
        ];
        let mut keys: Vec<String> = variants.iter().map(search_key).collect();
        keys.push(search_key(&base));
        let count = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), count, "{keys:#?}");
    }

    fn cache(kv: &CatalogKv) -> ResponseCache {
        ResponseCache::new(&CacheConfig::default(), kv.clone())
    }

    #[tokio::test]
    async fn a_lost_version_counter_restarts_above_every_earlier_version() {
        let kv = CatalogKv::new(&KeyValueStore::in_memory());
        let cache = cache(&kv);
        let first = cache.version().await.expect("a version");
        assert!(first >= VERSION_FLOOR as u64, "{first}");
        cache.invalidate().await;
        let bumped = cache.version().await.expect("a version");
        assert_eq!(bumped, first + 1);
        // The store loses the counter, and a bump recreates it from 0.
        kv.store().delete(VERSION_KEY).await.unwrap();
        cache.invalidate().await;
        let after = cache.version().await.expect("a version");
        assert!(after > bumped, "{after} after {bumped}");
        // Lost again, and a reader finds it absent: it starts above too.
        kv.store().delete(VERSION_KEY).await.unwrap();
        let other = ResponseCache::new(&CacheConfig::default(), kv.clone());
        let restarted = other.version().await.expect("a version");
        assert!(restarted >= VERSION_FLOOR as u64, "{restarted}");
        // This replica rereads after `version_check_ms` and never goes below what it knew.
        assert!(cache.version().await.expect("a version") >= after);
    }

    #[tokio::test]
    async fn answers_are_loaded_once_per_version_and_shared_between_replicas() {
        let kv = CatalogKv::new(&KeyValueStore::in_memory());
        let (one, two) = (cache(&kv), cache(&kv));
        let loads = std::sync::atomic::AtomicU32::new(0);
        let load = || async {
            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(b"answer".to_vec())
        };
        assert_eq!(one.get_or_load("k", load).await.unwrap(), &b"answer"[..]);
        assert_eq!(one.get_or_load("k", load).await.unwrap(), &b"answer"[..]);
        // The second replica finds it in level 2.
        assert_eq!(two.get_or_load("k", load).await.unwrap(), &b"answer"[..]);
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        one.invalidate().await;
        assert_eq!(one.get_or_load("k", load).await.unwrap(), &b"answer"[..]);
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let kv = CatalogKv::new(&KeyValueStore::in_memory());
        let cache = cache(&kv);
        let failed = cache
            .get_or_load("k", || async {
                Err(StoreError::Database(sea_orm::DbErr::Custom("down".into())))
            })
            .await;
        assert!(failed.is_err());
        let answer = cache
            .get_or_load("k", || async { Ok(b"fine".to_vec()) })
            .await
            .unwrap();
        assert_eq!(answer, &b"fine"[..]);
    }
}
