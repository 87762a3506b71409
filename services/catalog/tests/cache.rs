//! The two-level cache of list pages and the main page, through the gRPC API.
//!
//! Equality: a catalog with the cache and one with the cache disabled run on the same
//! database; for a matrix of filters, sorts and pages their answers are the same bytes, on the
//! first (miss) and the second (hit) call. Invalidation: after each kind of change (create,
//! update, delete, import, sales) the cached catalog answers what the uncached one answers, at
//! once on the replica that made the change, and within the documented bound on a second
//! cached replica sharing the key-value store (polled with a deadline).
//!
//! Every scenario runs on SQLite with an in-process store, on PostgreSQL / MySQL when their
//! variables are set, and on SQLite with Redis when `PILLIVERY_TEST_REDIS_URL` is set.

#[macro_use]
mod common;

use std::future::Future;
use std::time::Duration;

use catalog::domain::demo;
use common::{Options, RunningCatalog, authorized};
use pillivery_platform::auth::Role;
use pillivery_platform::kv::KeyValueStore;
use pillivery_proto::catalog as pb;
use pillivery_proto::catalog::catalog_admin_service_client::CatalogAdminServiceClient;
use pillivery_proto::catalog::catalog_internal_service_client::CatalogInternalServiceClient;
use pillivery_proto::catalog::catalog_service_client::CatalogServiceClient;
use pillivery_testkit::Backend;
use prost::Message;
use tonic::transport::Channel;

/// How long a change may take to show on another replica: `cache.version_check_ms` (100 ms by
/// default) plus a key-value round trip, with plenty to spare for a loaded CI machine.
const REPLICA_DEADLINE: Duration = Duration::from_secs(10);

const SEEDED_ITEMS: usize = 60;

/// A cached catalog (`cached`), a second cached replica sharing its key-value store
/// (`replica`) and an uncached one (`truth`), all on one database with demo items, some sold.
struct App {
    cached: RunningCatalog,
    replica: RunningCatalog,
    truth: RunningCatalog,
    admin_token: String,
    /// A brand and a keyword that match some of the seeded items.
    brand: String,
    keyword: String,
}

impl App {
    fn browse(&self, catalog: &RunningCatalog) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(catalog.channel.clone())
    }

    fn admin(&self) -> CatalogAdminServiceClient<Channel> {
        CatalogAdminServiceClient::new(self.cached.channel.clone())
    }

    fn internal(&self) -> CatalogInternalServiceClient<Channel> {
        CatalogInternalServiceClient::new(self.cached.channel.clone())
    }

    async fn search(&self, catalog: &RunningCatalog, request: &pb::SearchItemsRequest) -> Vec<u8> {
        self.browse(catalog)
            .search_items(request.clone())
            .await
            .unwrap_or_else(|status| panic!("{request:?}: {status:?}"))
            .into_inner()
            .encode_to_vec()
    }

    async fn main_page(&self, catalog: &RunningCatalog) -> Vec<u8> {
        self.browse(catalog)
            .get_main_page(pb::GetMainPageRequest {})
            .await
            .unwrap()
            .into_inner()
            .encode_to_vec()
    }

    /// Asserts that the cached replica that made a change answers like the database at once,
    /// and that the other cached replica does within [`REPLICA_DEADLINE`].
    async fn assert_fresh(&self, request: &pb::SearchItemsRequest, what: &str) {
        let truth = self.search(&self.truth, request).await;
        assert_eq!(
            self.search(&self.cached, request).await,
            truth,
            "{what}: same replica"
        );
        pillivery_testkit::eventually(
            &format!("{what} on the replica"),
            REPLICA_DEADLINE,
            || async { (self.search(&self.replica, request).await == truth).then_some(()) },
        )
        .await;
        let truth = self.main_page(&self.truth).await;
        assert_eq!(
            self.main_page(&self.cached).await,
            truth,
            "{what}: main page"
        );
        pillivery_testkit::eventually(
            &format!("{what}: main page on the replica"),
            REPLICA_DEADLINE,
            || async { (self.main_page(&self.replica).await == truth).then_some(()) },
        )
        .await;
    }

    /// Reads `request` and the main page on both cached replicas, so both levels hold them.
    async fn warm(&self, request: &pb::SearchItemsRequest) {
        for catalog in [&self.cached, &self.replica] {
            self.search(catalog, request).await;
            self.main_page(catalog).await;
        }
    }
}

async fn run<F, Fut>(backend: Option<Backend>, kv: Option<KeyValueStore>, test: F)
where
    F: FnOnce(App) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = backend else { return };
    let kv = kv.unwrap_or_else(KeyValueStore::in_memory);
    let cached = RunningCatalog::start_with(
        &backend,
        Options {
            kv: Some(kv.clone()),
            ..Options::default()
        },
    )
    .await;
    let replica = cached
        .replica(Options {
            kv: Some(kv),
            ..Options::default()
        })
        .await;
    let truth = cached
        .replica(Options {
            configure: |config| config.cache.enabled = false,
            ..Options::default()
        })
        .await;
    let items = demo::demo_items(SEEDED_ITEMS);
    let store = cached.store().await;
    let ids = store.insert_items(&items).await.unwrap();
    // Sales from a few events, so the SALES order is not just the id order.
    for (index, id) in ids.iter().enumerate().step_by(3) {
        let applied = store
            .record_sales(
                &format!("seed-{index}"),
                &[(*id, 1 + (index as i64 * 7) % 11)],
            )
            .await
            .unwrap();
        assert!(applied);
    }
    let keyword: String = items[1].product_name.chars().take(2).collect();
    let app = App {
        admin_token: cached.token(1, Role::Admin),
        brand: items[0].enterprise.clone(),
        keyword,
        cached,
        replica,
        truth,
    };
    test(app).await;
}

/// Sqlite/Postgres/MySQL with an in-process store, and SQLite with Redis when configured.
macro_rules! on_every_backend_and_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::run(Some(super::Backend::Sqlite), None, super::$name).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::run(super::Backend::postgres(), None, super::$name).await
            })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::run(super::Backend::mysql(), None, super::$name).await
            })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                match pillivery_testkit::redis_store().await {
                    Some(kv) => super::run(Some(super::Backend::Sqlite), Some(kv), super::$name).await,
                    None => eprintln!("PILLIVERY_TEST_REDIS_URL is not set: Redis variant not run"),
                }
            })*
        }
    };
}

on_every_backend_and_store!(
    cached_answers_equal_uncached_ones,
    created_items_show_at_once,
    updated_items_show_at_once,
    deleted_items_disappear_at_once,
    imported_items_show_at_once,
    sales_reorder_the_lists_at_once,
    a_replica_started_after_a_change_never_sees_the_old_answer,
);

fn request() -> pb::SearchItemsRequest {
    pb::SearchItemsRequest::default()
}

/// Filters, sorts and pages: every binding's shape, equivalent spellings, edges.
fn matrix(app: &App) -> Vec<pb::SearchItemsRequest> {
    let mut requests = Vec::new();
    for sort in 0..=8 {
        requests.push(pb::SearchItemsRequest { sort, ..request() });
        requests.push(pb::SearchItemsRequest {
            sort,
            page: Some(2),
            size: Some(7),
            ..request()
        });
    }
    let filters = [
        pb::SearchItemsRequest {
            category: Some(pb::Category::Eye as i32),
            ..request()
        },
        // The legacy alias, same search.
        pb::SearchItemsRequest {
            category_name: Some(pb::Category::Eye as i32),
            ..request()
        },
        pb::SearchItemsRequest {
            keyword: Some(app.keyword.clone()),
            ..request()
        },
        // Trimmed and another case: same search, same entry.
        pb::SearchItemsRequest {
            keyword: Some(format!("  {}  ", app.keyword.to_uppercase())),
            ..request()
        },
        pb::SearchItemsRequest {
            keyword: Some("100%_없음".into()),
            ..request()
        },
        pb::SearchItemsRequest {
            brand: Some(app.brand.clone()),
            ..request()
        },
        pb::SearchItemsRequest {
            min_price: Some(10_000),
            max_price: Some(30_000),
            ..request()
        },
        // Swapped bounds: the same range.
        pb::SearchItemsRequest {
            min_price: Some(30_000),
            max_price: Some(10_000),
            ..request()
        },
        pb::SearchItemsRequest {
            min_price: Some(25_000),
            ..request()
        },
        pb::SearchItemsRequest {
            on_sale: Some(true),
            sort: 5,
            ..request()
        },
        pb::SearchItemsRequest {
            listing: "on-sale".into(),
            ..request()
        },
        pb::SearchItemsRequest {
            category: Some(pb::Category::Liver as i32),
            on_sale: Some(true),
            max_price: Some(40_000),
            sort: 4,
            size: Some(5),
            ..request()
        },
        // Explicit defaults equal omitted ones.
        pb::SearchItemsRequest {
            sort: 1,
            page: Some(1),
            size: Some(20),
            ..request()
        },
        // The last page, a page past the last, the largest page size.
        pb::SearchItemsRequest {
            page: Some(3),
            size: Some(25),
            ..request()
        },
        pb::SearchItemsRequest {
            page: Some(99),
            ..request()
        },
        pb::SearchItemsRequest {
            size: Some(100),
            sort: 2,
            ..request()
        },
    ];
    requests.extend(filters);
    requests
}

async fn cached_answers_equal_uncached_ones(app: App) {
    for request in matrix(&app) {
        let truth = app.search(&app.truth, &request).await;
        let miss = app.search(&app.cached, &request).await;
        let hit = app.search(&app.cached, &request).await;
        let shared = app.search(&app.replica, &request).await;
        assert_eq!(miss, truth, "first answer of {request:?}");
        assert_eq!(hit, truth, "cached answer of {request:?}");
        assert_eq!(shared, truth, "other replica's answer of {request:?}");
    }
    let truth = app.main_page(&app.truth).await;
    for _ in 0..2 {
        assert_eq!(app.main_page(&app.cached).await, truth);
        assert_eq!(app.main_page(&app.replica).await, truth);
    }
    // Equivalent spellings share one entry: the uppercase keyword's answer is the lower one's.
    let lower = pb::SearchItemsRequest {
        keyword: Some(app.keyword.clone()),
        ..request()
    };
    let upper = pb::SearchItemsRequest {
        keyword: Some(app.keyword.to_uppercase()),
        ..request()
    };
    assert_eq!(
        app.search(&app.cached, &lower).await,
        app.search(&app.cached, &upper).await
    );
    finish(app).await;
}

fn draft(name: &str, price: i64, rate: f64) -> pb::ItemDraft {
    pb::ItemDraft {
        product_name: Some(name.to_owned()),
        enterprise: Some("캐시테스트".to_owned()),
        thumbnail: Some(format!("https://cdn.test/{name}.jpg")),
        description_image: Some(format!("https://cdn.test/{name}-detail.jpg")),
        main_function: Some("눈 건강".to_owned()),
        base_standard: Some("루테인 20mg".to_owned()),
        intake: Some("1일 1회".to_owned()),
        serving_use: Some(String::new()),
        preserve_period: Some("서늘한 곳".to_owned()),
        distribution_period: Some("24개월".to_owned()),
        statement_number: Some("200400200001".to_owned()),
        registered_date: Some("2024-02-29".to_owned()),
        sungsang: Some("노란색".to_owned()),
        categories: vec![pb::Category::Eye as i32],
        origin_price: Some(price),
        discount_rate: Some(rate),
    }
}

/// The pages a change shows on: the default list, the category, the newest.
fn watched() -> Vec<pb::SearchItemsRequest> {
    vec![
        request(),
        pb::SearchItemsRequest {
            category: Some(pb::Category::Eye as i32),
            sort: 2,
            ..request()
        },
        pb::SearchItemsRequest {
            sort: 2,
            size: Some(5),
            ..request()
        },
        pb::SearchItemsRequest {
            sort: 5,
            on_sale: Some(true),
            ..request()
        },
    ]
}

async fn warm_all(app: &App) {
    for request in watched() {
        app.warm(&request).await;
    }
}

async fn assert_all_fresh(app: &App, what: &str) {
    for request in watched() {
        app.assert_fresh(&request, what).await;
    }
}

async fn create(app: &App, draft: pb::ItemDraft) -> pb::Item {
    app.admin()
        .create_item(authorized(
            pb::CreateItemRequest { item: Some(draft) },
            &app.admin_token,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn created_items_show_at_once(app: App) {
    warm_all(&app).await;
    let item = create(&app, draft("새로 나온 루테인", 30_000, 0.9)).await;
    assert_all_fresh(&app, "create").await;
    // The newest page really shows it (the check above is not vacuous).
    let newest = app
        .browse(&app.cached)
        .search_items(pb::SearchItemsRequest {
            sort: 2,
            ..request()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(newest.data[0].item_id, item.item_id);
    finish(app).await;
}

async fn updated_items_show_at_once(app: App) {
    let item = create(&app, draft("바뀔 상품", 30_000, 0.1)).await;
    warm_all(&app).await;
    let changes = pb::ItemDraft {
        product_name: Some("바뀐 상품".into()),
        discount_rate: Some(0.95),
        ..pb::ItemDraft::default()
    };
    app.admin()
        .update_item(authorized(
            pb::UpdateItemRequest {
                item_id: item.item_id,
                item: Some(changes),
            },
            &app.admin_token,
        ))
        .await
        .unwrap();
    assert_all_fresh(&app, "update").await;
    let on_sale = app
        .browse(&app.replica)
        .search_items(pb::SearchItemsRequest {
            sort: 5,
            on_sale: Some(true),
            ..request()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(on_sale.data[0].product_name, "바뀐 상품");
    finish(app).await;
}

async fn deleted_items_disappear_at_once(app: App) {
    let item = create(&app, draft("지울 상품", 30_000, 0.9)).await;
    warm_all(&app).await;
    app.admin()
        .delete_item(authorized(
            pb::DeleteItemRequest {
                item_id: item.item_id,
            },
            &app.admin_token,
        ))
        .await
        .unwrap();
    assert_all_fresh(&app, "delete").await;
    let newest = app
        .browse(&app.cached)
        .search_items(pb::SearchItemsRequest {
            sort: 2,
            ..request()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(newest.data.iter().all(|row| row.item_id != item.item_id));
    finish(app).await;
}

async fn imported_items_show_at_once(app: App) {
    warm_all(&app).await;
    let imported = app
        .admin()
        .import_items(authorized(
            pb::ImportItemsRequest {
                items: vec![draft("수입 1", 10_000, 0.5), draft("수입 2", 20_000, 0.97)],
            },
            &app.admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.item_ids.len(), 2);
    assert_all_fresh(&app, "import").await;
    finish(app).await;
}

async fn sales_reorder_the_lists_at_once(app: App) {
    let item = create(&app, draft("갑자기 잘 팔림", 30_000, 0.0)).await;
    warm_all(&app).await;
    let applied = app
        .internal()
        .record_sales(pb::RecordSalesRequest {
            event_id: "cache-test-sale".into(),
            lines: vec![pb::SoldQuantity {
                item_id: item.item_id,
                quantity: 10_000,
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .applied;
    assert!(applied);
    assert_all_fresh(&app, "sales").await;
    let best = app
        .browse(&app.replica)
        .get_main_page(pb::GetMainPageRequest {})
        .await
        .unwrap()
        .into_inner()
        .best_sellers;
    assert_eq!(best[0].item_id, item.item_id);
    assert_eq!(best[0].sales, 10_000);
    finish(app).await;
}

async fn a_replica_started_after_a_change_never_sees_the_old_answer(app: App) {
    warm_all(&app).await;
    create(&app, draft("늦게 온 복제본", 30_000, 0.9)).await;
    // A replica with an empty level 1 reads the version first: the old level 2 entries are
    // never its answer, not even once.
    let late = app
        .cached
        .replica(Options {
            kv: Some(app.cached.kv.clone()),
            ..Options::default()
        })
        .await;
    for request in watched() {
        assert_eq!(
            app.search(&late, &request).await,
            app.search(&app.truth, &request).await
        );
    }
    assert_eq!(app.main_page(&late).await, app.main_page(&app.truth).await);
    late.stop().await;
    finish(app).await;
}

async fn finish(app: App) {
    app.replica.stop().await;
    app.truth.stop().await;
    app.cached.stop().await;
}
